//! The one replay of the chain: records in, per-file histories and the findings the records
//! show by themselves out. The daemon replays it at mount (and holds it against the backing
//! files and the index), verify replays it before re-hashing, and both therefore agree on what
//! a file's history is: where it began, which byte ranges are sealed with which hash, how long it
//! is retained, and how (if at all) it ended.
//!
//! Feed every decoded record, in chain order, to `History::apply`. Pure: no I/O, no clock.

use std::collections::BTreeMap;

use super::merkle;
use super::path::RelPath;
use super::record::{Archive, Payload, Record, Segment};
use super::retention::{self, Standing};
use super::segment::{next_file_hash, Hash, ZERO_HASH};
use super::store::{FileState, HoldState, IndexUpdate, Store, StoreResult};

/// A byte range of a file and the SHA-256 its bytes must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRange {
    /// The record that states it (a Seal, a Recovered, or the Truncate that kept part of a cut
    /// segment).
    pub seq: u64,
    pub start: u64,
    pub end: u64,
    pub hash: Hash,
}

/// How a file's history began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Create record: made through the mount.
    Created { seq: u64 },
    /// A Recovered record with `adopted`: found in DATA_DIR at a mount, unknown to the chain.
    Adopted { seq: u64 },
    /// A Rename record moved a history here.
    Renamed { from: RelPath, seq: u64 },
    /// No record began it (a Seal for a path never created): a finding already.
    Unknown,
}

impl Origin {
    /// The record that began the history (0 when none did).
    pub fn seq(&self) -> u64 {
        match self {
            Origin::Created { seq } | Origin::Adopted { seq } | Origin::Renamed { seq, .. } => *seq,
            Origin::Unknown => 0,
        }
    }
}

/// One file's history as the chain tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHistory {
    pub origin: Origin,
    /// The record that began this history where it first appeared (a rename keeps it), so the
    /// warnings about it can be told from those about an earlier file of the same name.
    pub began: u64,
    /// Seq of the Create (0 when adopted, renamed in from an adoption, or unknown).
    pub created_seq: u64,
    /// Ranges to re-hash, in file order; together they cover [0, sealed) unless the seals are
    /// broken (a finding).
    pub ranges: Vec<CheckedRange>,
    /// Bytes [0, sealed) are covered by seals.
    pub sealed: u64,
    pub file_hash: Hash,
    pub last_seal_seq: u64,
    pub retain_until_ns: u64,
    /// The seals stopped chaining at some record (already a finding).
    pub broken: bool,
    /// Every record that shaped this history's bytes or moved it, oldest first: its Seal,
    /// Recovered and Truncate records and the Renames that brought it to its name (a receipt
    /// carries them).
    pub records: Vec<u64>,
    /// The Archived records of its bytes (`History::archived`), oldest first.
    pub archived: Vec<u64>,
}

impl FileHistory {
    fn new(origin: Origin, created_seq: u64) -> FileHistory {
        FileHistory {
            began: origin.seq(),
            origin,
            created_seq,
            ranges: Vec::new(),
            sealed: 0,
            file_hash: ZERO_HASH,
            last_seal_seq: 0,
            retain_until_ns: 0,
            broken: false,
            records: Vec::new(),
            archived: Vec::new(),
        }
    }

    /// What the index's `files` column family must hold for this file.
    pub fn state(&self) -> FileState {
        FileState {
            sealed_size: self.sealed,
            file_hash: self.file_hash,
            created_seq: self.created_seq,
            last_seal_seq: self.last_seal_seq,
            retain_until_ns: self.retain_until_ns,
        }
    }
}

/// How the newest run before a Mount ended, which decides what its recovery may seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorRun {
    /// The chain's first Mount: a new chain (adopting existing files is what `--adopt-existing`
    /// asked for).
    None,
    /// The run before ended with an Unmount: every tail was sealed, so nothing can be found
    /// unsealed.
    Clean,
    /// The run before ended without an Unmount (a crash, kill -9, power loss).
    Unclean,
}

/// Where the chain stands between records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No Mount yet.
    Never,
    /// Mounted; `recovering` while only the mount's recovery records have followed the Mount.
    Up { prior: PriorRun, recovering: bool },
    /// After an Unmount: only admin records (holds, retention, archive and prune) may follow until
    /// the next Mount.
    Down,
}

/// Something the records themselves show is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryFinding {
    /// A Create, or a Rename onto a name, for a path whose history no Delete or Rename ended:
    /// it would erase that history.
    Recreated { path: RelPath, seq: u64, earlier: Origin },
    /// A Seal or Recovered record for a path that no Create, adoption or Rename began.
    SealWithoutOrigin { path: RelPath, seq: u64 },
    /// A Delete, Rename, Truncate or Retention for a path that has no history.
    NoHistory { path: RelPath, op: &'static str, seq: u64 },
    /// A seal does not start where the file's seals end, or its file_hash does not chain.
    SealsDoNotChain { path: RelPath, seq: u64 },
    /// A Delete, Rename or Truncate before the file's retain-until.
    ChangedBeforeExpiry { path: RelPath, op: &'static str, seq: u64, retain_until_ns: u64 },
    /// A Delete, Rename or Truncate while a legal hold covered the file.
    ChangedUnderHold { path: RelPath, op: &'static str, seq: u64, hold: RelPath },
    /// A Truncate whose kept part does not start at the start of the segment it cut.
    TruncateMisplaced { path: RelPath, seq: u64 },
    /// Bytes sealed by the recovery of a mount whose previous run ended cleanly: nothing can
    /// be unsealed after an Unmount, so they were added behind wormfs' back.
    SealedAfterCleanUnmount { path: RelPath, start: u64, end: u64, seq: u64 },
    /// A Recovered record anywhere but right after a Mount (recovery runs before serving).
    RecoveredOutsideRecovery { path: RelPath, seq: u64 },
    /// A record the daemon only writes while mounted, between an Unmount and the next Mount.
    WhileUnmounted { seq: u64, kind: &'static str },
    /// wormfs recorded that it found the file changed outside it.
    Damaged { path: RelPath, seq: u64, sealed: u64, size: u64 },
    /// An Aborted record of a record that is not the newest Delete, Rename or Truncate, or
    /// that comes after other records about its files: nothing it could undo.
    AbortedNothing { seq: u64, change: u64 },
    /// An Archived record of bytes that are not the file's sealed bytes then (another size or
    /// file_hash, or no such file): wormfs archives only what it sealed.
    ArchivedUnsealed { path: RelPath, seq: u64 },
    /// A Pruned record whose `archived` is not an Archived record of exactly those bytes.
    PrunedWithoutArchive { path: RelPath, seq: u64, archived: u64 },
}

/// An archived copy and the lock the chain requires of it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveDue {
    pub copy: ArchivedCopy,
    pub retain_until_ns: u64,
    /// The hold that covers it, if any.
    pub hold: Option<RelPath>,
}

/// A file's bytes as an Archived record put them in S3, and what the lock on them must be now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedCopy {
    /// The Archived record (its seq, and what it says: the name the file was archived under,
    /// the object, the retain-until it was put with).
    pub seq: u64,
    pub archive: Archive,
    /// The seal ranges of [0, size) at the time: what the object's bytes must hash to.
    pub ranges: Vec<CheckedRange>,
    /// Where the history it came from is now (a rename moves it); None once that history ended,
    /// when `retain_until_ns` stays what it was then.
    pub file: Option<RelPath>,
    /// The history's retain-until when it ended (while `file` is Some, the file's is used).
    pub retain_until_ns: u64,
    /// The Pruned record that deleted the local copy, if one did.
    pub pruned: Option<u64>,
}

/// Worth knowing, not proof of tampering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryWarning {
    /// A file adopted at a mount: found in DATA_DIR without a Create.
    Adopted { path: RelPath, seq: u64 },
    /// Bytes sealed by recovery after an unclean stop: they were on disk past the last seal,
    /// which a crash explains, but nothing proves they came through the mount.
    RecoveredUnproven { path: RelPath, start: u64, end: u64, seq: u64 },
}

/// A file history that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A Delete or Pruned ended it. `history` is the history it ended: a file found at the name
    /// afterwards is the deleted one (an unlink the daemon did not get to) only if it still
    /// checks against it.
    Deleted {
        seq: u64,
        history: Box<FileHistory>,
    },
    RenamedTo {
        to: RelPath,
        seq: u64,
    },
}

#[derive(Debug, Clone)]
pub struct History {
    /// The files whose history is open, by path.
    pub files: BTreeMap<RelPath, FileHistory>,
    /// The holds in force, by prefix.
    pub holds: BTreeMap<RelPath, HoldState>,
    /// Paths whose last history ended (and none began since).
    pub ended: BTreeMap<RelPath, Ended>,
    /// Renames, by new name: (old name, seq).
    pub renamed: BTreeMap<RelPath, (RelPath, u64)>,
    /// The newest Damaged record about each path since its history began: (seq, sealed, size).
    pub damage: BTreeMap<RelPath, (u64, u64, u64)>,
    pub findings: Vec<HistoryFinding>,
    pub warnings: Vec<HistoryWarning>,
    /// Every Archived record's copy, by the record's seq.
    pub archived: BTreeMap<u64, ArchivedCopy>,
    phase: Phase,
    /// The newest Delete, Rename or Truncate with what it replaced, until another record about
    /// its files (or a second Mount) follows: what an Aborted record of it puts back.
    undo: Option<Undo>,
    /// Mount records so far.
    mounts: u64,
}

/// What a Delete, Rename or Truncate changed, to put back if it is aborted.
#[derive(Debug, Clone)]
struct Undo {
    seq: u64,
    change: Payload,
    /// The Mount it came after (`History::mounts` then).
    run: u64,
    /// Every entry about its paths as it was before it.
    before: Vec<PathEntries>,
    /// The warnings before it, when a Rename or Truncate may change some (those about its
    /// paths); None otherwise, which is nearly always.
    warnings: Option<Vec<HistoryWarning>>,
}

#[derive(Debug, Clone)]
struct PathEntries {
    path: RelPath,
    file: Option<FileHistory>,
    ended: Option<Ended>,
    renamed: Option<(RelPath, u64)>,
    damage: Option<(u64, u64, u64)>,
}

/// The newest Delete, Rename or Truncate of the run before a mount, which the mount may find
/// undone on disk (the daemon stopped between recording it and doing it, or could not record
/// that it failed).
#[derive(Debug, Clone)]
pub struct LastChange<'a> {
    pub seq: u64,
    pub change: &'a Payload,
    /// The history of the file it changed (at its old name) before it.
    pub before: &'a FileHistory,
}

impl Default for History {
    fn default() -> Self {
        History {
            files: BTreeMap::new(),
            holds: BTreeMap::new(),
            ended: BTreeMap::new(),
            renamed: BTreeMap::new(),
            damage: BTreeMap::new(),
            findings: Vec::new(),
            warnings: Vec::new(),
            archived: BTreeMap::new(),
            phase: Phase::Never,
            undo: None,
            mounts: 0,
        }
    }
}

impl History {
    /// Replay every record in `store`. Records that do not decode are skipped: the daemon
    /// replays its own index to know each file's history, and verify is the one that reports
    /// damage to the chain itself.
    pub fn replay(store: &dyn Store) -> StoreResult<History> {
        Ok(Self::replay_with_tree(store, 0)?.0)
    }

    /// `replay`, also taking the Merkle frontier of records 1..=`size` in the same pass (what
    /// `merkle::repair_from` checks the stored tree against): a mount reads the chain once.
    pub fn replay_with_tree(store: &dyn Store, size: u64) -> StoreResult<(History, merkle::Frontier)> {
        let mut history = History::default();
        let mut frontier = merkle::Frontier::default();
        store.scan_records(0, &mut |seq, bytes| {
            frontier.push_record(seq, bytes, size);
            if let Ok(record) = Record::decode(bytes) {
                history.apply(record.seq(), record.fields.time_ns, &record.fields.payload);
            }
            true
        })?;
        Ok((history, frontier))
    }

    /// The changes that make the index's file and hold tables say what the chain says: a
    /// `files` or `holds` entry edited, planted or removed behind wormfs' back would otherwise
    /// steer what the daemon seals and allows. The chain is signed; the tables are a cache.
    /// A retain-until is never lowered: a Create's retention is not in its record, so the
    /// index may rightly hold a later one than the chain shows.
    pub fn repairs(&self, store: &dyn Store) -> StoreResult<Vec<IndexUpdate>> {
        let mut updates = Vec::new();
        let indexed: BTreeMap<RelPath, FileState> = store.files()?.into_iter().collect();
        for (path, h) in &self.files {
            let mut want = h.state();
            if let Some(have) = indexed.get(path) {
                want.retain_until_ns = want.retain_until_ns.max(have.retain_until_ns);
                if *have == want {
                    continue;
                }
            }
            updates.push(IndexUpdate::File(path.clone(), want));
        }
        for path in indexed.keys().filter(|p| !self.files.contains_key(*p)) {
            updates.push(IndexUpdate::RemoveFile(path.clone()));
        }
        let held: BTreeMap<RelPath, HoldState> = store.holds()?.into_iter().collect();
        for (prefix, hold) in &self.holds {
            if held.get(prefix) != Some(hold) {
                updates.push(IndexUpdate::Hold(prefix.clone(), hold.clone()));
            }
        }
        for prefix in held.keys().filter(|p| !self.holds.contains_key(*p)) {
            updates.push(IndexUpdate::RemoveHold(prefix.clone()));
        }
        Ok(updates)
    }

    /// Whether the newest run ended with an Unmount (admin records may follow it).
    pub fn closed(&self) -> bool {
        self.phase == Phase::Down
    }

    /// How a Mount made now would find the run before it.
    pub fn prior_run(&self) -> PriorRun {
        match self.phase {
            Phase::Never => PriorRun::None,
            Phase::Down => PriorRun::Clean,
            Phase::Up { .. } => PriorRun::Unclean,
        }
    }

    /// The newest Delete, Rename or Truncate since the newest Mount, if nothing about its files
    /// followed it (and no Aborted undid it).
    pub fn last_change(&self) -> Option<LastChange<'_>> {
        let undo = self.undo.as_ref().filter(|u| u.run == self.mounts)?;
        let before = undo.before.first()?.file.as_ref()?;
        Some(LastChange { seq: undo.seq, change: &undo.change, before })
    }

    /// Replay one record (the chain's records in order; undecodable ones skipped).
    pub fn apply(&mut self, seq: u64, time_ns: u64, payload: &Payload) {
        self.check_phase(seq, payload);
        // A later record about the changed files builds on the change: it can no longer be undone.
        // (A hold changes no history; an Aborted is checked below.)
        if let Some(undo) = &self.undo {
            let about = |p: &PathEntries| payload.concerns(&p.path);
            if !matches!(payload, Payload::Hold { .. } | Payload::Aborted { .. }) && undo.before.iter().any(about) {
                self.undo = None;
            }
        }
        let undo = match payload {
            Payload::Delete { path, .. } | Payload::Pruned { path, .. } | Payload::Truncate { path, .. } => {
                Some(self.entries(seq, payload, &[path]))
            }
            Payload::Rename { from, to } => Some(self.entries(seq, payload, &[from, to])),
            _ => None,
        };
        self.replay_one(seq, time_ns, payload);
        // Only a change to a history (not one with none, which is a finding) can be undone.
        if let Some(undo) = undo.filter(|u| u.before.first().is_some_and(|e| e.file.is_some())) {
            self.undo = Some(undo);
        }
    }

    /// The entries about `paths` now, to put back if record `seq` (`change`) is aborted.
    fn entries(&self, seq: u64, change: &Payload, paths: &[&RelPath]) -> Undo {
        let before = paths
            .iter()
            .map(|p| PathEntries {
                path: (*p).clone(),
                file: self.files.get(*p).cloned(),
                ended: self.ended.get(*p).cloned(),
                renamed: self.renamed.get(*p).cloned(),
                damage: self.damage.get(*p).copied(),
            })
            .collect();
        let about = |w: &HistoryWarning| {
            let (HistoryWarning::Adopted { path, .. } | HistoryWarning::RecoveredUnproven { path, .. }) = w;
            paths.contains(&path)
        };
        let touches = !matches!(change, Payload::Delete { .. }) && self.warnings.iter().any(about);
        let warnings = touches.then(|| self.warnings.clone());
        Undo { seq, change: change.clone(), run: self.mounts, before, warnings }
    }

    /// An Aborted record: the change it names goes as if it had never been recorded.
    fn abort(&mut self, seq: u64, change: u64) {
        // The run it was recorded in, or (found undone at the mount after a stop) the next one.
        let Some(undo) = self.undo.take().filter(|u| u.seq == change && u.run + 1 >= self.mounts) else {
            self.findings.push(HistoryFinding::AbortedNothing { seq, change });
            return;
        };
        fn put<V>(map: &mut BTreeMap<RelPath, V>, path: &RelPath, value: Option<V>) {
            match value {
                Some(v) => map.insert(path.clone(), v),
                None => map.remove(path),
            };
        }
        for e in undo.before {
            if let Some(h) = &e.file {
                self.copies_follow(h, Some(&e.path));
                for seq in &h.archived {
                    self.archived.get_mut(seq).expect("archived before").pruned = None;
                }
            }
            put(&mut self.files, &e.path, e.file);
            put(&mut self.ended, &e.path, e.ended);
            put(&mut self.renamed, &e.path, e.renamed);
            put(&mut self.damage, &e.path, e.damage);
        }
        if let Some(warnings) = undo.warnings {
            self.warnings = warnings;
        }
    }

    fn replay_one(&mut self, seq: u64, time_ns: u64, payload: &Payload) {
        match payload {
            Payload::Aborted { change, .. } => self.abort(seq, *change),
            Payload::Mount { .. } => {
                self.mounts += 1;
                self.phase = Phase::Up { prior: self.prior_run(), recovering: true };
            }
            Payload::Unmount => self.phase = Phase::Down,
            Payload::Create { path, .. } => self.begin(path, seq, Origin::Created { seq }, seq),
            Payload::Seal(s) => self.seal(seq, s),
            Payload::Recovered { segment, adopted } => self.recovered(seq, segment, *adopted),
            Payload::Archived(a) => {
                let Some(h) = self.files.get_mut(&a.path).filter(|h| h.sealed == a.size && h.file_hash == a.file_hash)
                else {
                    self.findings.push(HistoryFinding::ArchivedUnsealed { path: a.path.clone(), seq });
                    return;
                };
                let copy = ArchivedCopy {
                    seq,
                    archive: a.clone(),
                    ranges: h.ranges.iter().filter(|r| r.end <= a.size).cloned().collect(),
                    file: Some(a.path.clone()),
                    retain_until_ns: h.retain_until_ns,
                    pruned: None,
                };
                h.archived.push(seq);
                self.archived.insert(seq, copy);
            }
            Payload::Pruned { path, size, file_hash, archived, .. } => {
                let matches = self.archived.get(archived).is_some_and(|c| {
                    c.file.as_ref() == Some(path)
                        && c.archive.size == *size
                        && c.archive.file_hash == *file_hash
                        && c.pruned.is_none()
                });
                if !matches {
                    let archived = *archived;
                    self.findings.push(HistoryFinding::PrunedWithoutArchive { path: path.clone(), seq, archived });
                }
                if self.gated(path, "prune", seq, time_ns) {
                    if let Some(copy) = self.archived.get_mut(archived).filter(|_| matches) {
                        copy.pruned = Some(seq);
                    }
                    self.end(path, seq);
                }
            }
            Payload::Delete { path, .. } => {
                if self.gated(path, "delete", seq, time_ns) {
                    self.end(path, seq);
                }
            }
            Payload::Rename { from, to } => {
                if self.gated(from, "rename", seq, time_ns) {
                    let moved = self.files.remove(from).expect("gated found it");
                    if let Some(damage) = self.damage.remove(from) {
                        self.damage.insert(to.clone(), damage);
                    }
                    self.warnings_follow(from, to, moved.began);
                    self.ended.insert(from.clone(), Ended::RenamedTo { to: to.clone(), seq });
                    self.begin(to, seq, Origin::Renamed { from: from.clone(), seq }, moved.created_seq);
                    // The history moves whole: its seals, retention and damage follow it.
                    let origin = self.files[to].origin.clone();
                    let mut records = moved.records.clone();
                    records.push(seq);
                    self.copies_follow(&moved, Some(to));
                    self.files.insert(to.clone(), FileHistory { origin, records, ..moved });
                    self.renamed.insert(to.clone(), (from.clone(), seq));
                }
            }
            Payload::Truncate { path, new_size, kept_start, kept_hash, .. } => {
                if self.gated(path, "truncate", seq, time_ns) {
                    self.truncate(path, seq, *new_size, *kept_start, *kept_hash);
                }
            }
            Payload::Retention { path, retain_until_ns, .. } => match self.files.get_mut(path) {
                Some(h) => h.retain_until_ns = h.retain_until_ns.max(*retain_until_ns),
                None => self.findings.push(HistoryFinding::NoHistory { path: path.clone(), op: "retention", seq }),
            },
            Payload::Hold { prefix, set, reason, uid } => {
                if *set {
                    self.holds.insert(prefix.clone(), HoldState { reason: reason.clone(), uid: *uid, seq });
                } else {
                    self.holds.remove(prefix);
                }
            }
            Payload::Damaged { path, sealed, size } => {
                self.findings.push(HistoryFinding::Damaged { path: path.clone(), seq, sealed: *sealed, size: *size });
                self.damage.insert(path.clone(), (seq, *sealed, *size));
            }
            Payload::ClockJump { .. } | Payload::Access { .. } | Payload::KeyRotate { .. } => {}
        }
    }

    /// Records that only a mounted daemon writes must come between a Mount and an Unmount;
    /// recovery's records only directly after a Mount.
    fn check_phase(&mut self, seq: u64, payload: &Payload) {
        let mounted_only = !matches!(
            payload,
            Payload::Mount { .. }
                | Payload::Hold { .. }
                | Payload::Retention { .. }
                | Payload::ClockJump { .. }
                | Payload::Archived(_)
                | Payload::Pruned { .. }
        );
        if mounted_only && !matches!(self.phase, Phase::Up { .. }) {
            self.findings.push(HistoryFinding::WhileUnmounted { seq, kind: payload.kind().name() });
        }
        // Recovery writes only Recovered, Damaged and Aborted records (and a ClockJump if the
        // clock is behind, a KeyRotate at its start); anything else means serving has begun.
        if let Phase::Up { recovering: true, prior } = self.phase {
            // The mount's KeyRotate comes before recovery's records, so recovery is signed by
            // the new key and not by the one that lay on disk while wormfs was down.
            let still = matches!(
                payload,
                Payload::Recovered { .. }
                    | Payload::Damaged { .. }
                    | Payload::ClockJump { .. }
                    | Payload::KeyRotate { .. }
                    | Payload::Aborted { .. }
            );
            if !still {
                self.phase = Phase::Up { prior, recovering: false };
            }
        }
    }

    /// A history begins at `path`; one already open there is a finding (and is replaced, so
    /// the later records are checked against the history they claim to continue).
    fn begin(&mut self, path: &RelPath, seq: u64, origin: Origin, created_seq: u64) {
        if let Some(earlier) = self.files.get(path) {
            self.findings.push(HistoryFinding::Recreated { path: path.clone(), seq, earlier: earlier.origin.clone() });
        }
        self.ended.remove(path);
        self.files.insert(path.clone(), FileHistory::new(origin, created_seq));
    }

    fn seal(&mut self, seq: u64, s: &Segment) {
        if !self.files.contains_key(&s.path) {
            self.findings.push(HistoryFinding::SealWithoutOrigin { path: s.path.clone(), seq });
            self.files.insert(s.path.clone(), FileHistory::new(Origin::Unknown, 0));
        }
        self.extend(seq, s);
    }

    fn recovered(&mut self, seq: u64, s: &Segment, adopted: bool) {
        let prior = match self.phase {
            Phase::Up { prior, recovering: true } => Some(prior),
            _ => None,
        };
        let range = |path: &RelPath| (path.clone(), s.start, s.end, seq);
        match prior {
            None => self.findings.push(HistoryFinding::RecoveredOutsideRecovery { path: s.path.clone(), seq }),
            Some(PriorRun::Clean) => {
                let (path, start, end, seq) = range(&s.path);
                self.findings.push(HistoryFinding::SealedAfterCleanUnmount { path, start, end, seq });
            }
            Some(PriorRun::None | PriorRun::Unclean) if adopted => {
                self.warnings.push(HistoryWarning::Adopted { path: s.path.clone(), seq })
            }
            Some(PriorRun::Unclean) => {
                let (path, start, end, seq) = range(&s.path);
                self.warnings.push(HistoryWarning::RecoveredUnproven { path, start, end, seq });
            }
            // Not adopted on a new chain's first mount: nothing can be known yet (below).
            Some(PriorRun::None) => {}
        }
        if adopted {
            self.begin(&s.path, seq, Origin::Adopted { seq }, 0);
            self.extend(seq, s);
        } else {
            self.seal(seq, s);
        }
    }

    /// Add a sealed segment to the file's history, checking that it continues it.
    fn extend(&mut self, seq: u64, s: &Segment) {
        let h = self.files.get_mut(&s.path).expect("the caller made sure the history exists");
        let links = s.start == h.sealed
            && s.end >= s.start
            && next_file_hash(&h.file_hash, &s.segment_hash, s.end) == s.file_hash;
        if !links && !h.broken {
            self.findings.push(HistoryFinding::SealsDoNotChain { path: s.path.clone(), seq });
            h.broken = true;
        }
        h.sealed = s.end;
        h.file_hash = s.file_hash;
        h.last_seal_seq = seq;
        h.retain_until_ns = h.retain_until_ns.max(s.retain_until_ns);
        h.ranges.push(CheckedRange { seq, start: s.start, end: s.end, hash: s.segment_hash });
        h.records.push(seq);
    }

    /// The history at `path` ended (a Delete or a Pruned): its archived copies keep the
    /// retention it had.
    fn end(&mut self, path: &RelPath, seq: u64) {
        let Some(h) = self.files.remove(path) else { return };
        self.copies_follow(&h, None);
        self.damage.remove(path);
        self.ended.insert(path.clone(), Ended::Deleted { seq, history: Box::new(h) });
    }

    /// The archived copies of history `h` now belong to the file at `to` (None: to no file,
    /// with `h`'s retention as it stands).
    fn copies_follow(&mut self, h: &FileHistory, to: Option<&RelPath>) {
        for seq in &h.archived {
            let copy = self.archived.get_mut(seq).expect("a history's copies are recorded");
            copy.file = to.cloned();
            copy.retain_until_ns = h.retain_until_ns;
        }
    }

    /// Every archived copy, in record order, with the lock it must have now. (Each recorded
    /// version counts: a later record of the same key does not excuse an earlier version.)
    pub fn archive_dues(&self) -> Vec<ArchiveDue> {
        self.archived
            .values()
            .map(|copy| {
                let (retain_until_ns, hold) = self.copy_lock(copy);
                ArchiveDue { copy: copy.clone(), retain_until_ns, hold }
            })
            .collect()
    }

    /// What the lock on `copy` must be now: retained until the later of its history's
    /// retain-until and the date it was put with, and held if a hold covers its file (or, once
    /// that history ended, the name it was archived under).
    pub fn copy_lock(&self, copy: &ArchivedCopy) -> (u64, Option<RelPath>) {
        let (until, name) = match copy.file.as_ref().and_then(|f| self.files.get(f).map(|h| (h, f))) {
            Some((h, f)) => (h.retain_until_ns, f),
            None => (copy.retain_until_ns, &copy.archive.path),
        };
        let hold = retention::hold_covering(self.holds.iter(), name).map(|(prefix, _)| prefix.clone());
        (until.max(copy.archive.retain_until_ns), hold)
    }

    /// A Delete, Rename or Truncate must find a history, after its retention expired (by the
    /// record's own time, the chain's clock) and with no hold covering it: the rules the
    /// daemon applied (`retention::standing`), asked again of the record. Returns whether
    /// there is a history to change.
    fn gated(&mut self, path: &RelPath, op: &'static str, seq: u64, time_ns: u64) -> bool {
        let Some(h) = self.files.get(path) else {
            self.findings.push(HistoryFinding::NoHistory { path: path.clone(), op, seq });
            return false;
        };
        let retain_until_ns = h.retain_until_ns;
        if let Standing::Retained { .. } = retention::standing(retain_until_ns, None, false, time_ns) {
            self.findings.push(HistoryFinding::ChangedBeforeExpiry { path: path.clone(), op, seq, retain_until_ns });
        }
        if let Some((hold, _)) = retention::hold_covering(self.holds.iter(), path) {
            let hold = hold.clone();
            self.findings.push(HistoryFinding::ChangedUnderHold { path: path.clone(), op, seq, hold });
        }
        true
    }

    /// Cut the history at `new_size`: ranges wholly below it stay; the one the cut goes
    /// through is replaced by its kept part, whose hash the Truncate record carries.
    fn truncate(&mut self, path: &RelPath, seq: u64, new_size: u64, kept_start: u64, kept_hash: Hash) {
        let h = self.files.get_mut(path).expect("gated found it");
        let cut_start = h.ranges.iter().rev().find(|r| r.start < new_size).map_or(0, |r| r.start);
        let on_boundary = h.ranges.iter().any(|r| r.end == new_size) || new_size == 0;
        let expected_start = if on_boundary { new_size } else { cut_start };
        if kept_start != expected_start && !h.broken {
            self.findings.push(HistoryFinding::TruncateMisplaced { path: path.clone(), seq });
        }
        h.ranges.retain(|r| r.end <= new_size && r.end <= kept_start);
        if kept_start < new_size {
            h.ranges.push(CheckedRange { seq, start: kept_start, end: new_size, hash: kept_hash });
        }
        h.sealed = new_size;
        h.records.push(seq);
        let began = h.began;
        // A warning about bytes that were cut speaks only of the bytes that are left.
        self.warnings.retain_mut(|w| match w {
            HistoryWarning::RecoveredUnproven { path: p, start, end, seq: s } if p == path && *s >= began => {
                *end = (*end).min(new_size);
                *start < *end
            }
            _ => true,
        });
    }

    /// The warnings about the history now at `from` (recorded since it began at `began`) move
    /// with it to `to`, so each names the file where it is.
    fn warnings_follow(&mut self, from: &RelPath, to: &RelPath, began: u64) {
        for w in &mut self.warnings {
            let (HistoryWarning::Adopted { path, seq } | HistoryWarning::RecoveredUnproven { path, seq, .. }) = w;
            if path == from && *seq >= began {
                *path = to.clone();
            }
        }
    }

    /// Where a kept part of a cut would start if `path` were truncated to `new_size` now: the
    /// start of the sealed range the cut goes through, or `new_size` on a boundary. With the
    /// ranges that must still hold below it (for the daemon to check before cutting).
    pub fn cut(&self, path: &RelPath, new_size: u64) -> Option<(u64, Vec<CheckedRange>)> {
        let h = self.files.get(path)?;
        let through = h.ranges.iter().find(|r| r.start < new_size && new_size < r.end);
        let kept_start = through.map_or(new_size, |r| r.start);
        let below = h.ranges.iter().filter(|r| r.end <= new_size || Some(*r) == through).cloned().collect();
        Some((kept_start, below))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::sha256;
    use std::ffi::OsStr;

    fn p(s: &str) -> RelPath {
        RelPath::parse(OsStr::new(s)).unwrap()
    }

    /// Records built the way the ledger builds them, so a legitimate history has no findings.
    struct Chain {
        history: History,
        seq: u64,
        time: u64,
        file_hash: BTreeMap<RelPath, (u64, Hash)>,
    }

    impl Chain {
        fn new() -> Chain {
            Chain { history: History::default(), seq: 0, time: 1000, file_hash: BTreeMap::new() }
        }

        fn push(&mut self, payload: Payload) -> u64 {
            self.seq += 1;
            self.time += 10;
            self.history.apply(self.seq, self.time, &payload);
            self.seq
        }

        fn mount(&mut self) {
            self.push(Payload::Mount { software: "t".into(), key_id: [0; 8], data_dir: vec![] });
        }

        fn create(&mut self, path: &str) {
            self.file_hash.insert(p(path), (0, ZERO_HASH));
            self.push(Payload::Create { path: p(path), mode: 0o100644, uid: 0, gid: 0 });
        }

        fn segment(&mut self, path: &str, bytes: &[u8], retain_until_ns: u64) -> Segment {
            let (start, prev) = self.file_hash.get(&p(path)).copied().unwrap_or((0, ZERO_HASH));
            let end = start + bytes.len() as u64;
            let segment_hash = sha256(bytes);
            let file_hash = next_file_hash(&prev, &segment_hash, end);
            self.file_hash.insert(p(path), (end, file_hash));
            Segment { path: p(path), start, end, segment_hash, file_hash, retain_until_ns }
        }

        fn seal(&mut self, path: &str, bytes: &[u8]) -> u64 {
            let s = self.segment(path, bytes, 1100);
            self.push(Payload::Seal(s))
        }

        fn recovered(&mut self, path: &str, bytes: &[u8], adopted: bool) -> u64 {
            if adopted {
                self.file_hash.insert(p(path), (0, ZERO_HASH));
            }
            let segment = self.segment(path, bytes, 1100);
            self.push(Payload::Recovered { segment, adopted })
        }

        /// A Truncate of `path` from `old_size` to `new_size`, keeping `kept` from `kept_start`.
        fn truncate(&mut self, path: &str, old_size: u64, new_size: u64, kept_start: u64, kept: &[u8]) -> u64 {
            if let Some(state) = self.file_hash.get_mut(&p(path)) {
                state.0 = new_size;
            }
            let kept_hash = sha256(kept);
            self.push(Payload::Truncate { path: p(path), old_size, new_size, kept_start, kept_hash })
        }

        /// The ranges verify would re-hash for `path`.
        fn ranges(&self, path: &str) -> Vec<(u64, u64)> {
            self.history.files[&p(path)].ranges.iter().map(|r| (r.start, r.end)).collect()
        }

        fn findings(&self) -> &[HistoryFinding] {
            &self.history.findings
        }
    }

    impl Chain {
        /// An Archived record of `path` as it is sealed now.
        fn archived(&mut self, path: &str, key: &str) -> u64 {
            let (size, file_hash) = self.file_hash[&p(path)];
            self.push(Payload::Archived(Archive {
                path: p(path),
                size,
                file_hash,
                bucket: "b".into(),
                key: key.into(),
                version_id: "v1".into(),
                receipt_version_id: "r1".into(),
                retain_until_ns: 1100,
            }))
        }

        fn pruned(&mut self, path: &str, archived: u64) -> u64 {
            let (size, file_hash) = self.file_hash[&p(path)];
            self.push(Payload::Pruned { path: p(path), size, file_hash, retain_until_ns: 1100, archived })
        }

        fn due(&self, key: &str) -> ArchiveDue {
            self.history.archive_dues().into_iter().find(|d| d.copy.archive.key == key).expect("archived")
        }
    }

    #[test]
    fn an_archived_copy_must_be_retained_and_held_as_its_file_is_wherever_the_file_goes() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"one\n");
        let seq = c.archived("a.log", "k");
        assert_eq!(c.findings(), &[]);
        let due = c.due("k");
        assert_eq!((due.copy.seq, due.copy.archive.size, due.retain_until_ns, due.hold.clone()), (seq, 4, 1100, None));
        assert_eq!(due.copy.ranges.len(), 1);
        // Retention extended and a hold set: the object must follow.
        c.push(Payload::Retention { path: p("a.log"), retain_until_ns: 9000, uid: 0 });
        c.push(Payload::Hold { prefix: RelPath::root(), set: true, reason: "case".into(), uid: 0 });
        assert_eq!((c.due("k").retain_until_ns, c.due("k").hold), (9000, Some(RelPath::root())));
        c.push(Payload::Hold { prefix: RelPath::root(), set: false, reason: "case".into(), uid: 0 });
        // Renamed once expired: the copy follows the history to its new name.
        c.time = 10_000;
        c.push(Payload::Rename { from: p("a.log"), to: p("b.log") });
        assert_eq!(c.due("k").copy.file, Some(p("b.log")));
        c.push(Payload::Retention { path: p("b.log"), retain_until_ns: 20_000, uid: 0 });
        assert_eq!(c.due("k").retain_until_ns, 20_000);
        // Deleted: the copy keeps the retention the file had, and a hold on its archived name.
        c.time = 30_000;
        c.push(Payload::Delete { path: p("b.log"), size: 4, file_hash: [0; 32], retain_until_ns: 20_000 });
        c.push(Payload::Hold { prefix: p("a.log"), set: true, reason: "late".into(), uid: 0 });
        let due = c.due("k");
        assert_eq!((due.copy.file, due.retain_until_ns, due.hold), (None, 20_000, Some(p("a.log"))));
        assert_eq!(c.findings(), &[]);
    }

    #[test]
    fn an_archive_of_bytes_not_sealed_is_a_finding() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"one\n");
        let size = 99;
        let seq = c.push(Payload::Archived(Archive {
            path: p("a.log"),
            size,
            file_hash: [7; 32],
            bucket: "b".into(),
            key: "k".into(),
            version_id: "v".into(),
            receipt_version_id: "r".into(),
            retain_until_ns: 1100,
        }));
        assert_eq!(c.findings(), &[HistoryFinding::ArchivedUnsealed { path: p("a.log"), seq }]);
        assert!(c.history.archive_dues().is_empty());
    }

    #[test]
    fn a_prune_ends_the_history_only_as_an_archived_expired_file_and_can_be_aborted() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"one\n");
        let archived = c.archived("a.log", "k");
        c.time = 5000;
        let seq = c.pruned("a.log", archived);
        assert_eq!(c.findings(), &[]);
        assert!(!c.history.files.contains_key(&p("a.log")));
        assert!(matches!(c.history.ended.get(&p("a.log")), Some(Ended::Deleted { seq: s, .. }) if *s == seq));
        assert_eq!(c.due("k").copy.pruned, Some(seq));
        // The unlink failed: the history and the copy's link to it come back.
        c.push(Payload::Aborted { change: seq, errno: 5 });
        assert!(c.history.files.contains_key(&p("a.log")));
        assert_eq!((c.due("k").copy.pruned, c.due("k").copy.file), (None, Some(p("a.log"))));
        assert_eq!(c.findings(), &[]);

        // A prune naming a record that is no archive of it, and one before expiry.
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"one\n");
        let seq = c.pruned("a.log", 2);
        assert!(c.findings().contains(&HistoryFinding::PrunedWithoutArchive { path: p("a.log"), seq, archived: 2 }));
        assert!(c.findings().iter().any(|f| matches!(f, HistoryFinding::ChangedBeforeExpiry { op: "prune", .. })));
    }

    #[test]
    fn an_honest_history_has_no_findings() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"one\n");
        c.seal("a.log", b"two\n");
        c.push(Payload::Unmount);
        c.push(Payload::Hold { prefix: p("x"), set: true, reason: "r".into(), uid: 0 });
        c.push(Payload::Hold { prefix: p("x"), set: false, reason: "r".into(), uid: 0 });
        c.mount();
        // Past retention (1100): delete, and a new file under the same name.
        c.time = 5000;
        c.push(Payload::Delete { path: p("a.log"), size: 8, file_hash: [0; 32], retain_until_ns: 1100 });
        c.create("a.log");
        c.seal("a.log", b"new\n");
        c.push(Payload::Rename { from: p("a.log"), to: p("b.log") });
        c.push(Payload::Unmount);
        assert_eq!(c.findings(), &[]);
        assert!(c.history.closed());
        let b = &c.history.files[&p("b.log")];
        assert_eq!(b.sealed, 4);
        assert!(matches!(b.origin, Origin::Renamed { .. }));
        assert!(!c.history.files.contains_key(&p("a.log")));
        assert!(matches!(c.history.ended[&p("a.log")], Ended::RenamedTo { .. }));
    }

    #[test]
    fn a_create_over_a_live_history_is_a_finding() {
        // Attack 1: the backing file removed in DATA_DIR, then created again through the mount.
        let mut c = Chain::new();
        c.mount();
        c.create("v.log");
        c.seal("v.log", b"orig\n");
        let seq = c.push(Payload::Create { path: p("v.log"), mode: 0o100644, uid: 0, gid: 0 });
        assert_eq!(
            c.findings(),
            &[HistoryFinding::Recreated { path: p("v.log"), seq, earlier: Origin::Created { seq: 2 } }]
        );
    }

    #[test]
    fn a_rename_onto_a_live_history_is_a_finding() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.create("b.log");
        c.time = 5000;
        let seq = c.push(Payload::Rename { from: p("a.log"), to: p("b.log") });
        assert!(c
            .findings()
            .iter()
            .any(|f| matches!(f, HistoryFinding::Recreated { path, seq: s, .. } if *path == p("b.log") && *s == seq)));
    }

    #[test]
    fn recovery_after_a_clean_unmount_is_a_finding_after_a_crash_a_warning() {
        // Attack 2: bytes appended in DATA_DIR between a clean unmount and the next mount.
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"x\n");
        c.push(Payload::Unmount);
        c.mount();
        let seq = c.recovered("a.log", b"forged\n", false);
        assert_eq!(
            c.findings(),
            &[HistoryFinding::SealedAfterCleanUnmount { path: p("a.log"), start: 2, end: 9, seq }]
        );

        // After a crash (no Unmount) the same record is legitimate, but unproven.
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"x\n");
        c.mount();
        let seq = c.recovered("a.log", b"tail\n", false);
        assert_eq!(c.findings(), &[]);
        assert_eq!(
            c.history.warnings,
            vec![HistoryWarning::RecoveredUnproven { path: p("a.log"), start: 2, end: 7, seq }]
        );
    }

    #[test]
    fn a_seal_needs_an_origin() {
        // Attack 3: a planted file with a forged files-CF entry gets a Recovered, no Create.
        let mut c = Chain::new();
        c.mount();
        c.create("real.log");
        c.push(Payload::Unmount);
        c.mount();
        let seq = c.recovered("planted.log", b"evil", false);
        assert!(c.findings().contains(&HistoryFinding::SealWithoutOrigin { path: p("planted.log"), seq }));
        let seq = c.seal("other.log", b"evil");
        assert!(c.findings().contains(&HistoryFinding::SealWithoutOrigin { path: p("other.log"), seq }));
    }

    #[test]
    fn recovered_only_right_after_a_mount() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"x");
        let seq = c.recovered("a.log", b"y", false);
        assert!(c.findings().contains(&HistoryFinding::RecoveredOutsideRecovery { path: p("a.log"), seq }));
    }

    #[test]
    fn records_of_a_mounted_daemon_between_unmount_and_mount_are_findings() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.push(Payload::Unmount);
        let seq = c.seal("a.log", b"late");
        assert!(c.findings().contains(&HistoryFinding::WhileUnmounted { seq, kind: "Seal" }));
        // Admin records are fine there.
        let before = c.findings().len();
        c.push(Payload::Retention { path: p("a.log"), retain_until_ns: 9_999, uid: 0 });
        assert_eq!(c.findings().len(), before);
    }

    #[test]
    fn adoption_is_a_warning_on_a_new_chain_or_after_a_crash_and_a_finding_after_a_clean_stop() {
        let mut c = Chain::new();
        c.mount();
        let seq = c.recovered("old.log", b"found", true);
        assert_eq!(c.findings(), &[]);
        assert_eq!(c.history.warnings, vec![HistoryWarning::Adopted { path: p("old.log"), seq }]);
        assert_eq!(c.history.files[&p("old.log")].origin, Origin::Adopted { seq });

        c.push(Payload::Unmount);
        c.mount();
        let seq = c.recovered("planted.log", b"evil", true);
        assert_eq!(
            c.findings(),
            &[HistoryFinding::SealedAfterCleanUnmount { path: p("planted.log"), start: 0, end: 4, seq }]
        );
    }

    #[test]
    fn a_truncate_keeps_the_cut_segment_checkable() {
        // Attack 4: bytes after a truncate must stay checked, and so must the part kept.
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"0123456789");
        c.time = 5000;
        let seq = c.truncate("a.log", 10, 5, 0, b"01234");
        c.seal("a.log", b"abcde");
        assert_eq!(c.findings(), &[]);
        assert_eq!(c.ranges("a.log"), vec![(0, 5), (5, 10)], "the kept part and the new seal");
        assert_eq!(c.history.files[&p("a.log")].ranges[0].seq, seq);
    }

    #[test]
    fn a_truncate_on_a_boundary_keeps_whole_segments() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"01234");
        c.seal("a.log", b"56789");
        c.time = 5000;
        assert_eq!(c.history.cut(&p("a.log"), 5).map(|(start, below)| (start, below.len())), Some((5, 1)));
        assert_eq!(c.history.cut(&p("a.log"), 7).map(|(start, below)| (start, below.len())), Some((5, 2)));
        c.truncate("a.log", 10, 5, 5, b"");
        assert_eq!(c.findings(), &[]);
        assert_eq!(c.ranges("a.log"), vec![(0, 5)]);
    }

    #[test]
    fn a_misplaced_kept_part_is_a_finding() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"0123456789");
        c.time = 5000;
        let seq = c.truncate("a.log", 10, 5, 5, b"");
        assert_eq!(c.findings(), &[HistoryFinding::TruncateMisplaced { path: p("a.log"), seq }]);
    }

    #[test]
    fn gated_changes_need_a_history_expiry_and_no_hold() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"x");
        let seq = c.push(Payload::Delete { path: p("a.log"), size: 1, file_hash: [0; 32], retain_until_ns: 0 });
        assert!(matches!(c.findings(), [HistoryFinding::ChangedBeforeExpiry { seq: s, .. }] if *s == seq));
        let seq = c.push(Payload::Delete { path: p("ghost.log"), size: 1, file_hash: [0; 32], retain_until_ns: 0 });
        assert!(c.findings().contains(&HistoryFinding::NoHistory { path: p("ghost.log"), op: "delete", seq }));

        let mut c = Chain::new();
        c.mount();
        c.create("d/a.log");
        c.push(Payload::Hold { prefix: p("d"), set: true, reason: "case".into(), uid: 0 });
        c.time = 5000;
        let seq = c.push(Payload::Rename { from: p("d/a.log"), to: p("b.log") });
        assert_eq!(
            c.findings(),
            &[HistoryFinding::ChangedUnderHold { path: p("d/a.log"), op: "rename", seq, hold: p("d") }]
        );
    }

    #[test]
    fn warnings_follow_a_rename_and_shrink_with_a_truncate() {
        let mut c = Chain::new();
        c.mount();
        c.create("p.log");
        c.seal("p.log", b"sealed\n");
        c.mount(); // after a crash
        let seq = c.recovered("p.log", b"recovered tail\n", false);
        c.time = 5000;
        c.push(Payload::Rename { from: p("p.log"), to: p("q.log") });
        assert_eq!(
            c.history.warnings,
            vec![HistoryWarning::RecoveredUnproven { path: p("q.log"), start: 7, end: 22, seq }],
            "the warning names the file where it now is"
        );
        c.truncate("q.log", 22, 10, 7, b"rec");
        assert_eq!(
            c.history.warnings,
            vec![HistoryWarning::RecoveredUnproven { path: p("q.log"), start: 7, end: 10, seq }]
        );
        c.truncate("q.log", 10, 5, 0, b"seale");
        assert_eq!(c.history.warnings, vec![], "the recovered bytes are all cut away");
        assert_eq!(c.findings(), &[]);
    }

    #[test]
    fn file_state_follows_the_history() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        let seal = c.seal("a.log", b"abc");
        let h = &c.history.files[&p("a.log")];
        let state = h.state();
        assert_eq!((state.sealed_size, state.created_seq, state.last_seal_seq), (3, 2, seal));
        assert_eq!(state.retain_until_ns, 1100);
        assert_eq!(state.file_hash, c.file_hash[&p("a.log")].1);
    }

    #[test]
    fn an_aborted_change_puts_the_history_back_and_nothing_else_can_be_aborted() {
        let delete = || Payload::Delete { path: p("a.log"), size: 4, file_hash: [0; 32], retain_until_ns: 1100 };
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"one\n");
        let before = c.history.files[&p("a.log")].clone();
        c.time = 5000;
        // A delete whose unlink failed, then a rename whose rename(2) failed, each aborted.
        let seq = c.push(delete());
        assert!(!c.history.files.contains_key(&p("a.log")));
        c.push(Payload::Aborted { change: seq, errno: 5 });
        assert_eq!(c.history.files[&p("a.log")], before);
        assert!(!c.history.ended.contains_key(&p("a.log")));
        let seq = c.push(Payload::Rename { from: p("a.log"), to: p("b.log") });
        c.push(Payload::Hold { prefix: RelPath::root(), set: true, reason: "r".into(), uid: 0 }); // no history change
        c.push(Payload::Aborted { change: seq, errno: 18 });
        assert_eq!(c.history.files[&p("a.log")], before);
        assert!(!c.history.files.contains_key(&p("b.log")) && !c.history.renamed.contains_key(&p("b.log")));
        assert_eq!(c.findings(), &[]);
        c.push(Payload::Hold { prefix: RelPath::root(), set: false, reason: "r".into(), uid: 0 });

        // A delete recorded just before a crash, found undone by the next mount: fine.
        let crashed = c.push(delete());
        assert_eq!(c.history.last_change().map(|l| l.seq), Some(crashed));
        c.mount();
        c.push(Payload::Aborted { change: crashed, errno: 0 });
        assert_eq!(c.findings(), &[]);
        assert!(c.history.files.contains_key(&p("a.log")));

        // Nothing else can be aborted: a record that is no change, one already aborted, one a
        // later record built on, one from two runs ago.
        let sealed = c.seal("a.log", b"two\n");
        let again = c.push(Payload::Aborted { change: crashed, errno: 0 });
        let not_a_change = c.push(Payload::Aborted { change: sealed, errno: 0 });
        let deleted = c.push(delete());
        c.create("a.log");
        let built_on = c.push(Payload::Aborted { change: deleted, errno: 0 });
        let renamed = c.push(Payload::Rename { from: p("a.log"), to: p("c.log") });
        c.mount();
        c.mount();
        let stale = c.push(Payload::Aborted { change: renamed, errno: 0 });
        let nothing = |seq, change| HistoryFinding::AbortedNothing { seq, change };
        assert_eq!(
            c.findings(),
            &[
                nothing(again, crashed),
                nothing(not_a_change, sealed),
                nothing(built_on, deleted),
                nothing(stale, renamed)
            ]
        );
    }

    #[test]
    fn an_aborted_rename_takes_its_warnings_back_to_the_old_name() {
        let mut c = Chain::new();
        c.mount();
        c.mount(); // unclean: the first run had no Unmount
        let seq = c.recovered("a.log", b"found\n", true);
        c.time = 5000;
        let renamed = c.push(Payload::Rename { from: p("a.log"), to: p("b.log") });
        assert_eq!(c.history.warnings, [HistoryWarning::Adopted { path: p("b.log"), seq }]);
        c.push(Payload::Aborted { change: renamed, errno: 18 });
        assert_eq!(c.history.warnings, [HistoryWarning::Adopted { path: p("a.log"), seq }]);
        assert_eq!(c.findings(), &[]);
    }

    #[test]
    fn damage_recorded_by_the_daemon_is_a_finding() {
        let mut c = Chain::new();
        c.mount();
        c.create("a.log");
        c.seal("a.log", b"abc");
        let seq = c.push(Payload::Damaged { path: p("a.log"), sealed: 3, size: 9 });
        assert_eq!(c.findings(), &[HistoryFinding::Damaged { path: p("a.log"), seq, sealed: 3, size: 9 }]);
        assert_eq!(c.history.damage[&p("a.log")], (seq, 3, 9));
    }
}

//! Appending to the chain: builds each record from the head, signs it, and commits it together
//! with the file state it implies. One ledger per mounted filesystem; appends are serialised by
//! the head lock so seqs never collide.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use log::warn;

use super::chain::{key_id, sign};
use super::history::History;
use super::merkle;
use super::path::RelPath;
use super::policy::{self, HoldRefusal, Refusal};
use super::record::{Archive, Payload, Record, Segment, Unsigned};
use super::retention::{self, RetentionPolicy, Standing};
use super::segment::{next_file_hash, Hash, ZERO_HASH};
use super::space::{self, Room};
use super::store::{
    next_seq, Clock, EpochState, FileState, Head, HoldState, IndexUpdate, KeyVault, Store, StoreError, VaultError,
};
use super::sync::lock;

#[derive(Debug)]
pub enum LedgerError {
    Store(StoreError),
    /// The index is signed under another key than the one we were given.
    KeyMismatch {
        index: [u8; 8],
        ours: [u8; 8],
    },
    /// The rules refuse the change (retention, a hold, shortening a retention).
    Refused(Refusal),
    /// The rules refuse a legal-hold command.
    HoldRefused {
        prefix: RelPath,
        refusal: HoldRefusal,
    },
    /// The index has no such file (never created through wormfs, or not adopted yet).
    UnknownFile(RelPath),
    /// The path's history never ended (no Delete or Rename): it cannot begin again.
    HistoryOpen(RelPath),
    /// A seal that does not start where the file's seals end: a bug or a racing writer, never
    /// something to sign.
    SealDoesNotContinue {
        path: RelPath,
        start: u64,
        sealed: u64,
    },
    /// The next epoch's key could not be made or kept: the chain stays in its epoch.
    Rotation(VaultError),
    /// The chain is in epoch 2^64−1 (a forged index): no epoch can follow.
    EpochsExhausted,
    /// An archive of bytes that are not the file's sealed bytes now (it grew, or it is not
    /// the file that was read): wormfs records only copies of what it sealed.
    NotSealedBytes(RelPath),
    /// An archive locked for less than the file is retained.
    ArchiveExpiresFirst {
        path: RelPath,
        until_ns: u64,
        retain_until_ns: u64,
    },
    /// A prune that names no Archived record of the file's bytes as they are.
    NotArchived {
        path: RelPath,
        archived: u64,
    },
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::Store(e) => write!(f, "{e}"),
            LedgerError::KeyMismatch { index, ours } => write!(
                f,
                "the index is signed with key {} but the signing key is {}; refusing to mix keys in one chain",
                super::segment::hex(index),
                super::segment::hex(ours)
            ),
            LedgerError::Refused(r) => write!(f, "{r}"),
            LedgerError::HoldRefused { prefix, refusal } => write!(f, "{prefix}: {refusal}"),
            LedgerError::UnknownFile(p) => write!(f, "{p} is not a file in the index"),
            LedgerError::HistoryOpen(p) => {
                write!(f, "{p} has a history that never ended (its file is missing from the data directory)")
            }
            LedgerError::SealDoesNotContinue { path, start, sealed } => {
                write!(f, "{path}: a seal from byte {start} does not continue the sealed size {sealed}")
            }
            LedgerError::Rotation(e) => write!(f, "cannot rotate the signing key: {e}"),
            LedgerError::EpochsExhausted => {
                write!(f, "the chain is in the last possible key epoch (a forged index): no rotation can follow")
            }
            LedgerError::NotSealedBytes(p) => write!(f, "{p}: the archived bytes are not its sealed bytes now"),
            LedgerError::ArchiveExpiresFirst { path, until_ns, retain_until_ns } => write!(
                f,
                "{path}: an archive locked until {} would expire before the file's retention ({})",
                super::timefmt::rfc3339_ns(*until_ns),
                super::timefmt::rfc3339_ns(*retain_until_ns)
            ),
            LedgerError::NotArchived { path, archived } => {
                write!(f, "{path}: record {archived} is not an archive of its bytes as they are")
            }
        }
    }
}

impl std::error::Error for LedgerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LedgerError::Store(e) => Some(e),
            LedgerError::Rotation(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        LedgerError::Store(e)
    }
}

/// A Delete, Rename or Truncate committed before its system call, with the index changes that
/// put back what it replaced, for `Ledger::abort` when the call fails.
#[derive(Debug)]
pub struct Change {
    pub record: Record,
    undo: Vec<IndexUpdate>,
}

/// Which kind of record a seal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    /// Bytes hashed as they were written through the mount.
    Written,
    /// Bytes found on disk beyond the sealed size of a file the index knows.
    Recovered,
    /// A whole file the index did not know, found in DATA_DIR.
    Adopted,
}

pub struct Ledger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: RetentionPolicy,
    head: Mutex<ChainTime>,
    /// The newest seq committed to the store (visible, not necessarily durable).
    written: AtomicU64,
    /// Group commit: records are committed under the chain lock and made durable outside it,
    /// so one store sync covers every record committed while the previous sync ran. Every
    /// record up to this seq is durable; the lock is held through a sync.
    synced: Mutex<u64>,
    /// A sync failed: no record after it can be trusted to be durable, so none is committed.
    /// (Not under `synced`: a commit must not wait for a sync in progress.)
    sync_failed: AtomicBool,
    /// The history replayed at open, with the head it was replayed at, for the mount's
    /// recovery (`take_history`), so a mount reads the chain once.
    opening: Mutex<Option<(u64, History)>>,
}

/// What appending needs, behind one lock: the head, the key that signs the next record and its
/// epoch, and whether the system clock is currently behind the head (so a ClockJump record is
/// written once per episode, not before every record).
struct ChainTime {
    head: Option<Head>,
    /// Boxed: the key is replaced at every epoch, and the old one must not linger in a
    /// moved-from slot (dropping it wipes it).
    key: Box<SigningKey>,
    epoch: EpochState,
    clock_behind: bool,
    /// The last rotation's promotion failed (the new key may still be the staged file).
    unpromoted: bool,
}

impl fmt::Debug for ChainTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainTime").field("head", &self.head).field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("head", &self.head).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Attach to the chain in `store`, which must be empty or signed now under `key`: the
    /// key of its current epoch (`Store::epoch`), or before any rotation the key the chain was
    /// begun with. The index's Merkle tree is checked against the records (and built or
    /// rebuilt from them if it is missing or was changed).
    pub fn open(
        store: Arc<dyn Store>,
        key: impl Into<Box<SigningKey>>,
        clock: Arc<dyn Clock>,
        policy: RetentionPolicy,
    ) -> Result<Ledger, LedgerError> {
        let key: Box<SigningKey> = key.into();
        let ours = key_id(&key.verifying_key());
        let epoch = match (store.epoch()?, store.key_id()?) {
            (Some(epoch), _) => epoch,
            (None, Some(first)) => EpochState { epoch: 0, key_id: first, since_ns: 0 },
            (None, None) => {
                store.set_key_id(ours)?;
                EpochState { epoch: 0, key_id: ours, since_ns: 0 }
            }
        };
        if epoch.key_id != ours {
            return Err(LedgerError::KeyMismatch { index: epoch.key_id, ours });
        }
        let head = store.head()?;
        let size = head.map_or(0, |h| h.seq);
        // One pass over the records: the history a mount needs next, and the tree's check.
        let (history, frontier) = History::replay_with_tree(store.as_ref(), size)?;
        match merkle::repair_from(store.as_ref(), size, &frontier)? {
            merkle::TreeRepair::Sound => {}
            merkle::TreeRepair::Built => log::info!("built the chain's Merkle tree from its records"),
            merkle::TreeRepair::Rebuilt => {
                warn!("the index's Merkle tree disagreed with the records (changed outside wormfs); rebuilt it")
            }
        }
        let chain = ChainTime { head, key, epoch, clock_behind: false, unpromoted: false };
        // What the store holds now counts as written; an unsynced tail left by a killed daemon
        // is made durable by the first record's sync.
        Ok(Ledger {
            store,
            clock,
            policy,
            head: Mutex::new(chain),
            written: AtomicU64::new(size),
            opening: Mutex::new(Some((size, history))),
            synced: Mutex::new(0),
            sync_failed: AtomicBool::new(false),
        })
    }

    /// The chain's history as replayed when this ledger was opened, if nothing was appended
    /// since (else None: replay it again). Given out once.
    pub fn take_history(&self) -> Option<History> {
        let (at, history) = lock(&self.opening).take()?;
        (self.head().map_or(0, |h| h.seq) == at).then_some(history)
    }

    /// The id of the key that signs the next record.
    pub fn key_id(&self) -> [u8; 8] {
        lock(&self.head).epoch.key_id
    }

    /// The current key epoch.
    pub fn epoch(&self) -> EpochState {
        lock(&self.head).epoch
    }

    pub fn head(&self) -> Option<Head> {
        lock(&self.head).head
    }

    /// The time retention decisions use: the system clock, never earlier than the newest record.
    pub fn now(&self) -> u64 {
        let floor = lock(&self.head).head.map_or(0, |h| h.time_ns);
        retention::chain_now(self.clock.now_ns(), floor)
    }

    pub fn file(&self, path: &RelPath) -> Result<Option<FileState>, StoreError> {
        self.store.file(path)
    }

    pub fn files(&self) -> Result<Vec<(RelPath, FileState)>, StoreError> {
        self.store.files()
    }

    /// Free space where the index writes (`Store::room`).
    pub fn room(&self) -> Option<Room> {
        self.store.room()
    }

    pub fn holds(&self) -> Result<Vec<(RelPath, HoldState)>, StoreError> {
        self.store.holds()
    }

    /// The hold covering `path` (on it or on a directory above it), if any.
    pub fn hold_covering(&self, path: &RelPath) -> Result<Option<(RelPath, HoldState)>, StoreError> {
        let holds = self.store.holds()?;
        Ok(retention::hold_covering(holds.iter().map(|(p, h)| (p, h)), path).map(|(p, h)| (p.clone(), h.clone())))
    }

    /// Sign and commit the next record. `build` gets the new record's seq and time and returns
    /// its payload and the index changes to store with it (in the same atomic, synced write).
    ///
    /// `build` runs under the chain lock, and every change to the index goes through here, so
    /// what it reads from the index (a file's state, the holds) cannot change before its record
    /// is committed: read-modify-write of file state, and rule checks, belong inside it.
    fn append(
        &self,
        build: impl FnOnce(u64, u64) -> Result<(Payload, Vec<IndexUpdate>), LedgerError>,
    ) -> Result<Record, LedgerError> {
        let record = self.append_locked(&mut lock(&self.head), build)?;
        self.durable(record.seq())?;
        Ok(record)
    }

    /// Return once record `seq` and every one before it are durable. The first caller to find
    /// them not yet synced syncs the store, covering every record committed by then; callers
    /// that waited meanwhile find theirs covered and return at once.
    fn durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut synced = lock(&self.synced);
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(StoreError::SyncFailed);
        }
        if *synced >= seq {
            return Ok(());
        }
        let upto = self.written.load(Ordering::Acquire);
        match self.store.sync() {
            Ok(()) => {
                *synced = upto;
                Ok(())
            }
            Err(e) => {
                self.sync_failed.store(true, Ordering::Release);
                log::error!("{e}; the chain takes no more records until wormfs is remounted");
                Err(e)
            }
        }
    }

    fn append_locked(
        &self,
        chain: &mut ChainTime,
        build: impl FnOnce(u64, u64) -> Result<(Payload, Vec<IndexUpdate>), LedgerError>,
    ) -> Result<Record, LedgerError> {
        let floor = chain.head.map_or(0, |h| h.time_ns);
        let now = self.clock.now_ns();
        // Never go back in time: a clock set backwards must not make a record look older than
        // the one before it, nor expire retention early. Say so in the chain, once.
        if now < floor {
            if !chain.clock_behind {
                warn!(
                    "system clock is {} ms behind the newest record; using the record's time",
                    (floor - now) / 1_000_000
                );
                let jump = Payload::ClockJump { system_ns: now, floor_ns: floor };
                self.commit_locked(chain, floor, jump, Vec::new())?;
                chain.clock_behind = true;
            }
        } else {
            chain.clock_behind = false;
        }
        let time_ns = retention::chain_now(now, floor);
        let seq = next_seq(chain.head.as_ref())?;
        let (payload, updates) = build(seq, time_ns)?;
        Ok(self.commit_locked(chain, time_ns, payload, updates)?)
    }

    fn commit_locked(
        &self,
        chain: &mut ChainTime,
        time_ns: u64,
        payload: Payload,
        updates: Vec<IndexUpdate>,
    ) -> Result<Record, StoreError> {
        let seq = next_seq(chain.head.as_ref())?;
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(StoreError::SyncFailed);
        }
        // Below the store's reserve a write could meet a full disk half way (RocksDB may abort
        // the process then): refuse it whole, before anything is written.
        space::commit_room(self.store.room()).map_err(StoreError::NoSpace)?;
        let prev_hash = chain.head.map_or(ZERO_HASH, |h| h.hash);
        let record = sign(Unsigned { seq, time_ns, payload, prev_hash }, &chain.key);
        let mut updates = updates;
        updates.push(merkle::hashes_for(self.store.as_ref(), seq, &record.encode())?);
        self.store.commit(&record, &updates)?;
        self.written.store(seq, Ordering::Release);
        chain.head = Some(Head { seq, hash: record.hash, time_ns });
        Ok(record)
    }

    /// Move the signing key to a new epoch: the next key is made and kept durably by `vault`,
    /// a KeyRotate signed by the current key certifies it, and only once that record is
    /// committed does the new key sign and the old one get destroyed. `epoch_ns` is the epoch's
    /// length; the new key may sign nothing dated `2 × epoch_ns` or more after this record.
    ///
    /// All of it runs under the chain lock (about a millisecond, once an epoch): two rotations
    /// must never stage over each other's key.
    pub fn rotate(&self, vault: &dyn KeyVault, epoch_ns: u64) -> Result<Record, LedgerError> {
        let mut chain = lock(&self.head);
        // An earlier promotion failed: the current key may be the staged file, which staging
        // would destroy. Finish that first.
        if chain.unpromoted {
            vault.promote().map_err(LedgerError::Rotation)?;
            chain.unpromoted = false;
        }
        let next = vault.generate().map_err(LedgerError::Rotation)?;
        vault.stage(&next).map_err(LedgerError::Rotation)?;
        let public_key = next.verifying_key().to_bytes();
        let next_id = key_id(&next.verifying_key());
        let epoch = chain.epoch.epoch.checked_add(1).ok_or(LedgerError::EpochsExhausted)?;
        let mut new_epoch = None;
        let record = self.append_locked(&mut chain, |_, time_ns| {
            let state = EpochState { epoch, key_id: next_id, since_ns: time_ns };
            new_epoch = Some(state);
            Ok((Payload::KeyRotate { epoch, public_key, epoch_ns }, vec![IndexUpdate::Epoch(state)]))
        })?;
        // The old key is destroyed only once the record certifying the new one is durable.
        self.durable(record.seq())?;
        chain.key = next;
        chain.epoch = new_epoch.expect("the record was built");
        // The chain already names the new key: a failure here leaves the old key on disk (the
        // next rotation or mount finishes the job), never a chain signed by a key that is gone.
        if let Err(e) = vault.promote() {
            log::error!("the old signing key of epoch {} could not be destroyed: {e}", epoch - 1);
            chain.unpromoted = true;
        }
        Ok(record)
    }

    /// The Mount record; `repairs` bring the index's file and hold tables back in line with
    /// the chain (`History::repairs`), committed with it.
    pub fn mount(&self, software: &str, data_dir: &[u8], repairs: Vec<IndexUpdate>) -> Result<Record, LedgerError> {
        let payload = Payload::Mount { software: software.into(), key_id: self.key_id(), data_dir: data_dir.to_vec() };
        let mut updates = repairs;
        updates.push(IndexUpdate::DataDir(data_dir.to_vec()));
        self.append(|_, _| Ok((payload, updates)))
    }

    /// Record that `path` was found with `size` bytes where `sealed` are sealed, changed by
    /// something other than wormfs. Nothing is sealed; the file's state stays as it was.
    pub fn damaged(&self, path: &RelPath, sealed: u64, size: u64) -> Result<Record, LedgerError> {
        self.append(|_, _| Ok((Payload::Damaged { path: path.clone(), sealed, size }, Vec::new())))
    }

    pub fn unmount(&self) -> Result<Record, LedgerError> {
        self.append(|_, _| Ok((Payload::Unmount, Vec::new())))
    }

    /// A new file: recorded with an empty sealed state, retained from its creation. Refused for
    /// a path whose history is still open (its backing file vanished behind wormfs' back): a
    /// new Create would erase that history.
    pub fn create(&self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Record, LedgerError> {
        let retention = self.policy.retention_for(path);
        self.append(|seq, time_ns| {
            if self.store.file(path)?.is_some() {
                return Err(LedgerError::HistoryOpen(path.clone()));
            }
            let state = FileState {
                sealed_size: 0,
                file_hash: ZERO_HASH,
                created_seq: seq,
                last_seal_seq: 0,
                retain_until_ns: retention::retain_until(0, time_ns, retention),
            };
            Ok((Payload::Create { path: path.clone(), mode, uid, gid }, vec![IndexUpdate::File(path.clone(), state)]))
        })
    }

    /// Seal [start, end) of `path`, whose bytes hash to `segment_hash`, chaining its file_hash.
    /// `kind` says whether they were written through the mount or found on disk. Retention runs
    /// from this seal (never shortening what was already promised).
    pub fn seal(
        &self,
        path: &RelPath,
        start: u64,
        end: u64,
        segment_hash: Hash,
        kind: SealKind,
    ) -> Result<Record, LedgerError> {
        let retention = self.policy.retention_for(path);
        self.append(|seq, time_ns| {
            let before = self.store.file(path)?.unwrap_or_default();
            if before.sealed_size != start {
                return Err(LedgerError::SealDoesNotContinue { path: path.clone(), start, sealed: before.sealed_size });
            }
            let file_hash = next_file_hash(&before.file_hash, &segment_hash, end);
            let retain_until_ns = retention::retain_until(before.retain_until_ns, time_ns, retention);
            let segment = Segment { path: path.clone(), start, end, segment_hash, file_hash, retain_until_ns };
            let payload = match kind {
                SealKind::Written => Payload::Seal(segment),
                SealKind::Recovered => Payload::Recovered { segment, adopted: false },
                SealKind::Adopted => Payload::Recovered { segment, adopted: true },
            };
            let state = FileState { sealed_size: end, file_hash, last_seal_seq: seq, retain_until_ns, ..before };
            Ok((payload, vec![IndexUpdate::File(path.clone(), state)]))
        })
    }

    /// Extend `path`'s retention to `until_ns`; shortening is refused.
    pub fn extend_retention(&self, path: &RelPath, until_ns: u64, uid: u32) -> Result<Record, LedgerError> {
        self.append(|_, _| {
            let before = self.known(path)?;
            let until_ns = policy::extend_retention(before.retain_until_ns, until_ns).map_err(LedgerError::Refused)?;
            let state = FileState { retain_until_ns: until_ns, ..before };
            let payload = Payload::Retention { path: path.clone(), retain_until_ns: until_ns, uid };
            Ok((payload, vec![IndexUpdate::File(path.clone(), state)]))
        })
    }

    /// Set or clear a legal hold on a file or directory; `exists`: whether the path exists in
    /// DATA_DIR. The rules are checked under the chain lock, so two admins clearing the same
    /// hold record one Hold, and the second is told there is none.
    pub fn hold(
        &self,
        prefix: &RelPath,
        set: bool,
        reason: &str,
        uid: u32,
        exists: bool,
    ) -> Result<Record, LedgerError> {
        self.append(|seq, _| {
            let held_here = self.store.holds()?.iter().any(|(p, _)| p == prefix);
            policy::hold(set, reason, exists || prefix.is_root(), held_here)
                .map_err(|refusal| LedgerError::HoldRefused { prefix: prefix.clone(), refusal })?;
            let update = if set {
                IndexUpdate::Hold(prefix.clone(), HoldState { reason: reason.to_string(), uid, seq })
            } else {
                IndexUpdate::RemoveHold(prefix.clone())
            };
            Ok((Payload::Hold { prefix: prefix.clone(), set, reason: reason.to_string(), uid }, vec![update]))
        })
    }

    /// Record that `path` was opened for reading (the audit of who read the evidence).
    pub fn access(&self, path: &RelPath, uid: u32, pid: u32, command: &str) -> Result<Record, LedgerError> {
        let payload = Payload::Access { path: path.clone(), uid, pid, command: command.to_string() };
        self.append(|_, _| Ok((payload, Vec::new())))
    }

    /// Delete an expired file: checked and recorded before the unlink happens. `open`: whether
    /// any handle has it open (the caller holds its open gate, so that cannot change).
    pub fn delete(&self, path: &RelPath, size: u64, open: bool) -> Result<Change, LedgerError> {
        let mut undo = Vec::new();
        self.append(|_, time_ns| {
            let state = self.store.file(path)?;
            policy::unlink(&self.standing(path, state.as_ref(), open, time_ns)?).map_err(LedgerError::Refused)?;
            let state = state.ok_or_else(|| LedgerError::UnknownFile(path.clone()))?;
            let payload = Payload::Delete {
                path: path.clone(),
                size,
                file_hash: state.file_hash,
                retain_until_ns: state.retain_until_ns,
            };
            undo.push(IndexUpdate::File(path.clone(), state));
            Ok((payload, vec![IndexUpdate::RemoveFile(path.clone())]))
        })
        .map(|record| Change { record, undo })
    }

    /// Record that the file's bytes as sealed now went to S3, checked here against the index so
    /// that only sealed bytes are ever said to be archived, and never for less than the file is
    /// retained.
    pub fn archived(&self, copy: Archive) -> Result<Record, LedgerError> {
        self.append(|_, _| {
            let path = &copy.path;
            let state = self.store.file(path)?.ok_or_else(|| LedgerError::UnknownFile(path.clone()))?;
            if state.sealed_size != copy.size || state.file_hash != copy.file_hash {
                return Err(LedgerError::NotSealedBytes(path.clone()));
            }
            if copy.retain_until_ns < state.retain_until_ns {
                let (until_ns, retain_until_ns) = (copy.retain_until_ns, state.retain_until_ns);
                return Err(LedgerError::ArchiveExpiresFirst { path: path.clone(), until_ns, retain_until_ns });
            }
            Ok((Payload::Archived(copy.clone()), Vec::new()))
        })
    }

    /// Delete an expired file's local copy because record `archived` keeps its bytes in S3
    /// (the caller checked the object just before): the rules of `delete`, and the Archived
    /// record must be of exactly the bytes the file holds. Recorded before the unlink.
    pub fn prune(&self, path: &RelPath, size: u64, open: bool, archived: u64) -> Result<Change, LedgerError> {
        let copy = self.store.record_bytes(archived)?.and_then(|bytes| Record::decode(&bytes).ok());
        let mut undo = Vec::new();
        self.append(|_, time_ns| {
            let state = self.store.file(path)?;
            policy::unlink(&self.standing(path, state.as_ref(), open, time_ns)?).map_err(LedgerError::Refused)?;
            let state = state.ok_or_else(|| LedgerError::UnknownFile(path.clone()))?;
            let same = matches!(
                copy.as_ref().map(|r| &r.fields.payload),
                Some(Payload::Archived(a))
                    if a.path == *path && a.size == state.sealed_size && a.size == size && a.file_hash == state.file_hash
            );
            if !same {
                return Err(LedgerError::NotArchived { path: path.clone(), archived });
            }
            let payload = Payload::Pruned {
                path: path.clone(),
                size,
                file_hash: state.file_hash,
                retain_until_ns: state.retain_until_ns,
                archived,
            };
            undo.push(IndexUpdate::File(path.clone(), state));
            Ok((payload, vec![IndexUpdate::RemoveFile(path.clone())]))
        })
        .map(|record| Change { record, undo })
    }

    /// `change` did not happen (its system call failed with `errno`; 0: found undone at mount):
    /// an Aborted record puts the index back as it was before it.
    pub fn abort(&self, change: Change, errno: u32) -> Result<Record, LedgerError> {
        self.abort_found(change.record.seq(), errno, change.undo)
    }

    /// Abort record `seq` (found undone at mount: errno 0), restoring `undo`.
    pub fn abort_found(&self, seq: u64, errno: u32, undo: Vec<IndexUpdate>) -> Result<Record, LedgerError> {
        self.append(|_, _| Ok((Payload::Aborted { change: seq, errno }, undo)))
    }

    /// Rename an expired file: checked and recorded before it happens; its state moves to `to`.
    pub fn rename(
        &self,
        from: &RelPath,
        to: &RelPath,
        open: bool,
        target_exists: bool,
        exchange: bool,
    ) -> Result<Change, LedgerError> {
        let mut undo = Vec::new();
        self.append(|_, time_ns| {
            let state = self.store.file(from)?;
            let standing = self.standing(from, state.as_ref(), open, time_ns)?;
            // A name with an open history is taken even when its backing file is gone.
            let target_exists = target_exists || self.store.file(to)?.is_some();
            policy::rename_file(&standing, target_exists, exchange).map_err(LedgerError::Refused)?;
            let state = state.ok_or_else(|| LedgerError::UnknownFile(from.clone()))?;
            let updates = vec![IndexUpdate::RemoveFile(from.clone()), IndexUpdate::File(to.clone(), state)];
            undo = vec![IndexUpdate::RemoveFile(to.clone()), IndexUpdate::File(from.clone(), state)];
            Ok((Payload::Rename { from: from.clone(), to: to.clone() }, updates))
        })
        .map(|record| Change { record, undo })
    }

    /// Truncate: a no-op to the current size (None: nothing recorded), smaller only once expired
    /// (checked and recorded before it happens; seals restart at `new_size`), never larger.
    /// `kept` is where the part of the cut segment that stays begins, and its SHA-256.
    pub fn truncate(
        &self,
        path: &RelPath,
        old_size: u64,
        new_size: u64,
        open: bool,
        kept: (u64, Hash),
    ) -> Result<Option<Change>, LedgerError> {
        if new_size == old_size {
            return Ok(None);
        }
        let mut undo = Vec::new();
        self.append(|_, time_ns| {
            let state = self.store.file(path)?;
            let standing = self.standing(path, state.as_ref(), open, time_ns)?;
            policy::truncate(old_size, new_size, &standing).map_err(LedgerError::Refused)?;
            let state = state.ok_or_else(|| LedgerError::UnknownFile(path.clone()))?;
            let (kept_start, kept_hash) = kept;
            let payload = Payload::Truncate { path: path.clone(), old_size, new_size, kept_start, kept_hash };
            undo.push(IndexUpdate::File(path.clone(), state));
            let state = FileState { sealed_size: new_size, ..state };
            Ok((payload, vec![IndexUpdate::File(path.clone(), state)]))
        })
        .map(|record| Some(Change { record, undo }))
    }

    /// Whether a truncate would be allowed now (`truncate` checks again under the chain lock).
    pub fn check_truncate(&self, path: &RelPath, old_size: u64, new_size: u64, open: bool) -> Result<(), LedgerError> {
        let state = self.store.file(path)?;
        let standing = self.standing(path, state.as_ref(), open, self.now())?;
        policy::truncate(old_size, new_size, &standing).map_err(LedgerError::Refused)
    }

    /// The store behind the ledger (to replay the chain).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn known(&self, path: &RelPath) -> Result<FileState, LedgerError> {
        self.store.file(path)?.ok_or_else(|| LedgerError::UnknownFile(path.clone()))
    }

    /// Where a file stands at chain time `time_ns` (only called under the chain lock); None:
    /// the index has no record of it.
    fn standing(
        &self,
        path: &RelPath,
        state: Option<&FileState>,
        open: bool,
        time_ns: u64,
    ) -> Result<Standing, StoreError> {
        let Some(state) = state else { return Ok(Standing::Untracked) };
        let hold = self.hold_covering(path)?;
        let hold = hold.as_ref().map(|(prefix, h)| (prefix, h.reason.as_str()));
        Ok(retention::standing(state.retain_until_ns, hold, open, time_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chain::{ChainChecker, ChainFinding};
    use crate::core::store::SystemClock;
    use crate::index::MemoryStore;
    use std::ffi::OsStr;
    use std::sync::atomic::AtomicU8;

    /// Keys in memory: what is staged and current, what was destroyed, and a promotion that
    /// can be made to fail once.
    #[derive(Debug, Default)]
    struct MemoryVault {
        staged: Mutex<Option<SigningKey>>,
        destroyed: Mutex<Vec<SigningKey>>,
        current: Mutex<Option<SigningKey>>,
        fail_promote: AtomicBool,
        seed: AtomicU8,
    }

    impl KeyVault for MemoryVault {
        fn generate(&self) -> Result<Box<SigningKey>, VaultError> {
            Ok(Box::new(SigningKey::from_bytes(&[self.seed.fetch_add(1, Ordering::Relaxed) + 100; 32])))
        }
        fn stage(&self, next: &SigningKey) -> Result<(), VaultError> {
            *lock(&self.staged) = Some(next.clone());
            Ok(())
        }
        fn promote(&self) -> Result<(), VaultError> {
            if self.fail_promote.swap(false, Ordering::Relaxed) {
                return Err(VaultError { doing: "promote".into(), source: std::io::Error::other("injected") });
            }
            let staged = lock(&self.staged).take();
            if let Some(old) = std::mem::replace(&mut *lock(&self.current), staged) {
                lock(&self.destroyed).push(old);
            }
            Ok(())
        }
    }

    #[test]
    fn rotations_certify_each_key_and_a_failed_promotion_is_finished_first() {
        let store = Arc::new(MemoryStore::new());
        let first = SigningKey::from_bytes(&[1; 32]);
        let ledger =
            Ledger::open(store.clone(), first.clone(), Arc::new(SystemClock), RetentionPolicy::uniform(0)).unwrap();
        let vault = MemoryVault::default();
        ledger.mount("t", b"/d", Vec::new()).unwrap();
        ledger.rotate(&vault, 1_000_000_000_000).unwrap();
        assert_eq!(ledger.epoch().epoch, 1);
        assert_eq!(store.epoch().unwrap(), Some(ledger.epoch()), "the index knows the epoch");
        vault.fail_promote.store(true, Ordering::Relaxed);
        ledger.rotate(&vault, 1_000_000_000_000).unwrap();
        // Epoch 2's key is still only staged; the next rotation promotes it before staging.
        assert!(lock(&vault.staged).is_some());
        ledger.rotate(&vault, 1_000_000_000_000).unwrap();
        ledger.unmount().unwrap();
        assert_eq!(ledger.epoch().epoch, 3);
        assert_eq!(lock(&vault.destroyed).len(), 2, "epoch 1's and 2's keys are destroyed");
        assert_eq!(lock(&vault.current).as_ref().map(|k| key_id(&k.verifying_key())), Some(ledger.key_id()));

        let mut checker = ChainChecker::new(first.verifying_key());
        store
            .scan_records(0, &mut |seq, bytes| {
                checker.check(seq, bytes);
                true
            })
            .unwrap();
        let report = checker.finish();
        assert_eq!(report.findings, Vec::<ChainFinding>::new());
        assert_eq!((report.rotations, report.epoch.epoch), (3, 3));
        // Reopened under the epoch-3 key (the index says which), and never under another.
        let current = lock(&vault.current).clone().unwrap();
        assert!(Ledger::open(store.clone(), current, Arc::new(SystemClock), RetentionPolicy::uniform(0)).is_ok());
        assert!(matches!(
            Ledger::open(store, first, Arc::new(SystemClock), RetentionPolicy::uniform(0)),
            Err(LedgerError::KeyMismatch { .. })
        ));
    }

    fn open_ledger(store: &Arc<MemoryStore>) -> Arc<Ledger> {
        let key = SigningKey::from_bytes(&[1; 32]);
        Arc::new(Ledger::open(store.clone(), key, Arc::new(SystemClock), RetentionPolicy::uniform(0)).unwrap())
    }

    #[test]
    fn only_sealed_bytes_are_recorded_as_archived_and_only_archived_expired_files_are_pruned() {
        let store = Arc::new(MemoryStore::new());
        let ledger = open_ledger(&store);
        ledger.mount("t", b"/d", Vec::new()).unwrap();
        let path = RelPath::parse(OsStr::new("a.log")).unwrap();
        ledger.create(&path, libc::S_IFREG | 0o644, 0, 0).unwrap();
        let seal = ledger.seal(&path, 0, 4, crate::core::segment::sha256(b"one\n"), SealKind::Written).unwrap();
        let state = ledger.file(&path).unwrap().unwrap();
        let copy = |size: u64, until: u64| Archive {
            path: path.clone(),
            size,
            file_hash: state.file_hash,
            bucket: "b".into(),
            key: "k".into(),
            version_id: "v".into(),
            receipt_version_id: "r".into(),
            retain_until_ns: until,
        };
        assert!(matches!(ledger.archived(copy(5, u64::MAX)), Err(LedgerError::NotSealedBytes(_))));
        let short = state.retain_until_ns - 1;
        assert!(matches!(ledger.archived(copy(4, short)), Err(LedgerError::ArchiveExpiresFirst { .. })));
        let archived = ledger.archived(copy(4, state.retain_until_ns)).unwrap().seq();

        // A prune must name that record, find the file closed and expired, and under no hold.
        assert!(matches!(ledger.prune(&path, 4, false, seal.seq()), Err(LedgerError::NotArchived { .. })));
        assert!(matches!(ledger.prune(&path, 5, false, archived), Err(LedgerError::NotArchived { .. })));
        assert!(matches!(ledger.prune(&path, 4, true, archived), Err(LedgerError::Refused(_))));
        ledger.hold(&RelPath::root(), true, "case", 0, true).unwrap();
        assert!(matches!(ledger.prune(&path, 4, false, archived), Err(LedgerError::Refused(_))));
        ledger.hold(&RelPath::root(), false, "case", 0, true).unwrap();
        let head = ledger.head().unwrap().seq;
        let change = ledger.prune(&path, 4, false, archived).unwrap();
        assert_eq!(change.record.seq(), head + 1, "the refusals appended nothing");
        assert!(matches!(change.record.fields.payload, Payload::Pruned { archived: a, size: 4, .. } if a == archived));
        assert_eq!(ledger.file(&path).unwrap(), None);
    }

    #[test]
    fn records_committed_while_a_sync_runs_share_the_next_sync() {
        let store = Arc::new(MemoryStore::new());
        let ledger = open_ledger(&store);
        ledger.mount("t", b"/d", Vec::new()).unwrap();
        assert_eq!(store.syncs(), 1, "a record returns only once synced");
        store.set_sync_delay(std::time::Duration::from_millis(50));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let path = RelPath::parse(OsStr::new(&format!("f{i}"))).unwrap();
                    ledger.create(&path, libc::S_IFREG | 0o644, 0, 0).unwrap().seq()
                })
            })
            .collect();
        let seqs: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(seqs.len(), 8);
        // Eight records, each durable when its call returned, in far fewer than eight syncs:
        // the first waits out one sync, the rest are committed meanwhile and share the next.
        let syncs = store.syncs() - 1;
        assert!((1..=3).contains(&syncs), "8 records took {syncs} syncs");
    }

    #[test]
    fn after_a_failed_sync_nothing_more_is_committed() {
        let store = Arc::new(MemoryStore::new());
        let ledger = open_ledger(&store);
        ledger.mount("t", b"/d", Vec::new()).unwrap();
        store.fail_syncs(1);
        let a = RelPath::parse(OsStr::new("a")).unwrap();
        // The record is in the store but may not be on disk: the caller is told it failed.
        assert!(matches!(
            ledger.create(&a, libc::S_IFREG | 0o644, 0, 0),
            Err(LedgerError::Store(StoreError::Backend { .. }))
        ));
        let head = store.head().unwrap();
        // Later records are refused before anything is written, also once syncs work again.
        let b = RelPath::parse(OsStr::new("b")).unwrap();
        assert!(matches!(
            ledger.create(&b, libc::S_IFREG | 0o644, 0, 0),
            Err(LedgerError::Store(StoreError::SyncFailed))
        ));
        assert!(matches!(ledger.unmount(), Err(LedgerError::Store(StoreError::SyncFailed))));
        assert_eq!(store.head().unwrap(), head, "nothing committed after the failed sync");
    }
}

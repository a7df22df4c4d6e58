//! How bytes get sealed: an open file's hashed tail, and bytes that reached DATA_DIR without
//! being hashed on the way in (after an unclean stop, or written behind wormfs' back).

use std::fs::File;
use std::os::unix::fs::FileExt;

use std::collections::HashSet;
use std::sync::Mutex;

use log::{error, info, warn};

use super::backing::{DataDir, Protection};
use super::error::{io_errno, Damage, FsError, FsResult};
use super::handles::OpenFile;
use super::history::{FileHistory, History, PriorRun};
use super::ledger::{Ledger, SealKind};
use super::metrics::{Metrics, SealFailure};
use super::path::RelPath;
use super::policy::{self, AtMount};
use super::record::Payload;
use super::record::Record;
use super::segment::{Hash, SegmentHasher};
use super::store::IndexUpdate;
use super::sync::lock;

/// Why a seal is being written (for logs).
#[derive(Debug, Clone, Copy)]
pub enum SealCause {
    LastClose,
    Fsync,
    Interval,
    Unmount,
}

/// Seal an open file's unsealed bytes: make them durable first, so a seal never covers bytes a
/// crash could lose, then commit the record. The running hash is only reset once the record is
/// committed, so a failed commit can be retried by the next seal.
pub fn seal_open(
    ledger: &Ledger,
    data: &DataDir,
    metrics: &Metrics,
    damage: &DamageLog,
    state: &mut OpenFile,
    cause: SealCause,
) -> FsResult<()> {
    if state.unsealed() == 0 {
        return Ok(());
    }
    if !super::EVIDENCE {
        state.sealed = state.size;
        state.unsealed_since = None;
        return Ok(());
    }
    let started = std::time::Instant::now();
    // After a failed fdatasync the kernel may have dropped the dirty pages it could not write
    // (and a retry then succeeds without writing them): what is on disk is unknown. Those
    // bytes are never sealed; the chain says so, and the file takes no more appends.
    if let Err(errno) = data.sync_data(&state.file, &state.path) {
        let found = Damage::Unsynced { sealed: state.sealed, size: state.size, errno };
        state.abandon(found);
        metrics.seal_failed(SealFailure::Data);
        damage.record(ledger, &state.path, found)?;
        return Err(FsError::Damaged { path: state.path.clone(), damage: found });
    }
    let record = match commit_seal(ledger, damage, state) {
        Ok(record) => record,
        Err(e) => {
            metrics.seal_failed(SealFailure::of(&e));
            return Err(e);
        }
    };
    metrics.sealed(started.elapsed());
    log::debug!("sealed {} [{}, {}) as record {} ({cause:?})", state.path, state.sealed, state.size, record.seq());
    state.sealed = state.size;
    state.hasher.reset();
    state.unsealed_since = None;
    Ok(())
}

/// The seal of an open file's durable tail, unless the file is no longer the size wormfs made it.
fn commit_seal(ledger: &Ledger, damage: &DamageLog, state: &mut OpenFile) -> FsResult<Record> {
    // wormfs knows the size it wrote. A file that grew otherwise (bytes appended in DATA_DIR
    // while it was open: its append-only flag lets root with the capability do that) does not
    // hold what was hashed where the seal would say: record it, seal nothing, take no more.
    let on_disk = state.file.metadata().map_err(|e| FsError::os(&state.path, io_errno(&e)))?.len();
    if on_disk != state.size {
        let (sealed, size) = (state.sealed, on_disk);
        let found = if size > state.size { Damage::Grew { sealed, size } } else { Damage::Shrank { sealed, size } };
        damage.record(ledger, &state.path, found)?;
        state.abandon(found);
        return Err(FsError::Damaged { path: state.path.clone(), damage: found });
    }
    let segment_hash = state.hasher.hash();
    ledger
        .seal(&state.path, state.sealed, state.size, segment_hash, SealKind::Written)
        .map_err(|e| FsError::ledger(&state.path, e))
}

/// The damage already on the chain, so each finding is recorded once (per path and sizes), not at
/// every open or mount.
#[derive(Debug, Default)]
pub struct DamageLog {
    recorded: Mutex<HashSet<(RelPath, u64, u64)>>,
}

impl DamageLog {
    /// What the chain already records (its Damaged records since each history began).
    pub fn seed(&self, history: &History) {
        let mut recorded = lock(&self.recorded);
        for (path, (_, sealed, size)) in &history.damage {
            recorded.insert((path.clone(), *sealed, *size));
        }
    }

    /// Record `damage` of `path` in the chain, unless it already is. The caller reports the
    /// error it goes on to return (a request's reply logs it, recovery lists it).
    pub fn record(&self, ledger: &Ledger, path: &RelPath, damage: Damage) -> FsResult<()> {
        let Some((sealed, size)) = damage.sizes() else { return Ok(()) };
        let key = (path.clone(), sealed, size);
        // Held across the commit (nothing takes it under the chain lock), so two threads finding
        // the same damage record it once.
        let mut recorded = lock(&self.recorded);
        if recorded.contains(&key) {
            return Ok(());
        }
        // Marked recorded only once it is: one that failed (a full state disk) is tried again
        // when the file is next opened.
        let record = ledger.damaged(path, sealed, size).map_err(|e| FsError::ledger(path, e))?;
        recorded.insert(key);
        error!("{path}: {damage} (recorded as damaged, record {})", record.seq());
        Ok(())
    }
}

/// Before wormfs appends to a file it is opening for writing: the file must be exactly what
/// the chain sealed. While mounted, every byte of it came through the mount and was sealed at
/// its last close; anything else was done behind wormfs' back, is recorded as damage, and the
/// file takes no appends (reads still work). Returns the size.
pub fn catch_up(ledger: &Ledger, damage: &DamageLog, path: &RelPath, file: &File) -> FsResult<u64> {
    let size = file.metadata().map_err(|e| FsError::os(path, io_errno(&e)))?.len();
    let sealed = ledger.file(path).map_err(|e| FsError::ledger(path, e.into()))?.map(|s| s.sealed_size);
    policy::before_append(sealed, size).or_else(|found| {
        damage.record(ledger, path, found)?;
        Err(FsError::Damaged { path: path.clone(), damage: found })
    })?;
    Ok(size)
}

/// In one read of bytes [start, end): SHA-256 of [start, split) and of all of [start, end).
pub fn hash_range_split(file: &File, path: &RelPath, start: u64, split: u64, end: u64) -> FsResult<(Hash, Hash)> {
    let (mut head, mut whole) = (SegmentHasher::default(), SegmentHasher::default());
    let mut buf = vec![0u8; 1 << 20];
    let mut at = start;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => return Err(FsError::Shrank { path: path.clone(), at, end }),
            Ok(n) => {
                let bytes = &buf[..n];
                let in_head = (split.saturating_sub(at) as usize).min(n);
                head.update(&bytes[..in_head]);
                whole.update(bytes);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FsError::os(path, io_errno(&e))),
        }
    }
    Ok((head.finish(), whole.finish()))
}

/// SHA-256 of bytes [start, end) of `file`, read from disk.
pub fn hash_range(file: &File, path: &RelPath, start: u64, end: u64) -> FsResult<[u8; 32]> {
    Ok(hash_range_split(file, path, start, start, end)?.1)
}

/// What mount-time recovery found.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    pub files_checked: u64,
    /// Files whose tail was sealed, or that were adopted.
    pub recovered: u64,
    /// What was wrong, one line each (each also logged, and recorded where it can be): verify
    /// reports them; wormfs seals none of it.
    pub damaged: Vec<String>,
}

/// At mount, before serving: hold every file in DATA_DIR against its history (replayed from the
/// chain before this mount's Mount record) and do what `policy::at_mount` says. One file that
/// cannot be read, or a directory that cannot be listed, is damage to report, never a reason to
/// stop the mount.
pub fn recover(
    ledger: &Ledger,
    data: &DataDir,
    history: &History,
    damage: &DamageLog,
    adopt_existing: bool,
) -> FsResult<Recovery> {
    let prior = history.prior_run();
    let mut report = Recovery::default();
    let mut dirs = vec![RelPath::root()];
    let mut seen = HashSet::new();
    while let Some(dir) = dirs.pop() {
        let entries = match data.read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                report.damaged.push(format!("{dir}: cannot list: {}", e.desc()));
                continue;
            }
        };
        for entry in entries {
            let path = match dir.join(&entry.name) {
                Ok(path) => path,
                Err(why) => {
                    report.damaged.push(format!("{dir}: an entry named {:?} cannot be reached ({why:?})", entry.name));
                    continue;
                }
            };
            match entry.file_type {
                libc::S_IFDIR => dirs.push(path),
                libc::S_IFREG => {
                    report.files_checked += 1;
                    match recover_file(ledger, data, history, damage, prior, adopt_existing, &path) {
                        Ok(true) => report.recovered += 1,
                        Ok(false) => {}
                        Err(e) => report.damaged.push(e.to_string()),
                    }
                    seen.insert(path);
                }
                _ => {}
            }
        }
    }
    for path in history.files.keys().filter(|p| !seen.contains(*p)) {
        let e = FsError::Damaged { path: path.clone(), damage: Damage::Missing };
        warn!("{e}");
        report.damaged.push(e.to_string());
    }
    Ok(report)
}

/// At mount, before recovery: the run before may have stopped between recording a Delete,
/// Rename or Truncate and doing it, or failed to record that its system call failed. If DATA_DIR
/// shows the change undone — the file still at its old name, its old size, every sealed byte
/// hashing to its seal — an Aborted record says it did not happen (and `history` learns it).
/// Returns that record's seq.
pub fn reconcile(ledger: &Ledger, data: &DataDir, history: &mut History) -> FsResult<Option<u64>> {
    let Some(last) = history.last_change() else { return Ok(None) };
    let state = last.before.state();
    let (at, undo) = match last.change {
        Payload::Delete { path, .. } | Payload::Pruned { path, .. } | Payload::Truncate { path, .. } => {
            (path, vec![IndexUpdate::File(path.clone(), state)])
        }
        Payload::Rename { from, to } if data.stat(to) == Err(nix::errno::Errno::ENOENT) => {
            (from, vec![IndexUpdate::RemoveFile(to.clone()), IndexUpdate::File(from.clone(), state)])
        }
        _ => return Ok(None),
    };
    if last.before.broken || !holds_exactly(data, at, last.before) {
        return Ok(None);
    }
    let (seq, at) = (last.seq, at.clone());
    let record = ledger.abort_found(seq, 0, undo).map_err(|e| FsError::ledger(&at, e))?;
    warn!(
        "{at}: record {seq} ({}) did not happen before the stop; recorded as aborted (record {})",
        last.change.kind().name(),
        record.seq()
    );
    history.apply(record.seq(), record.fields.time_ns, &record.fields.payload);
    Ok(Some(record.seq()))
}

/// Whether `path` in DATA_DIR is exactly the file `before` describes: its sealed size, and every
/// sealed range hashing to its seal. A file that cannot be read is not (recovery reports it).
fn holds_exactly(data: &DataDir, path: &RelPath, before: &FileHistory) -> bool {
    let Ok(file) = data.open_file(path, false) else { return false };
    if file.metadata().map(|m| m.len()).ok() != Some(before.sealed) {
        return false;
    }
    before.ranges.iter().all(|r| hash_range(&file, path, r.start, r.end).is_ok_and(|hash| hash == r.hash))
}

/// One file at mount; Ok(true) when a Recovered record was written.
fn recover_file(
    ledger: &Ledger,
    data: &DataDir,
    history: &History,
    damage: &DamageLog,
    prior: PriorRun,
    adopt_existing: bool,
    path: &RelPath,
) -> FsResult<bool> {
    let file = data.open_file(path, false)?;
    let size = file.metadata().map_err(|e| FsError::os(path, io_errno(&e)))?.len();
    let sealed = history.files.get(path).map(|h| h.sealed);
    let tail_damaged = sealed.is_some_and(|s| history.damage.get(path).is_some_and(|(_, at, _)| *at == s));
    let (start, kind) = match policy::at_mount(prior, sealed, size, adopt_existing, tail_damaged) {
        AtMount::Nothing => {
            data.protect(path, Protection::Immutable);
            return Ok(false);
        }
        AtMount::Damaged(found) => {
            damage.record(ledger, path, found)?;
            return Err(FsError::Damaged { path: path.clone(), damage: found });
        }
        AtMount::SealTail => (sealed.unwrap_or(0), SealKind::Recovered),
        AtMount::Adopt => (0, SealKind::Adopted),
    };
    if let Err(errno) = data.sync_data(&file, path) {
        let found = Damage::Unsynced { sealed: start, size, errno };
        damage.record(ledger, path, found)?;
        return Err(FsError::Damaged { path: path.clone(), damage: found });
    }
    let segment_hash = hash_range(&file, path, start, size)?;
    let record = ledger.seal(path, start, size, segment_hash, kind).map_err(|e| FsError::ledger(path, e))?;
    data.protect(path, Protection::Immutable);
    match kind {
        SealKind::Adopted => warn!("{path}: not in the chain; adopted its {size} bytes (record {})", record.seq()),
        _ => info!("{path}: sealed {} bytes left unsealed by an unclean stop (record {})", size - start, record.seq()),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::sha256;
    use std::io::Write;

    #[test]
    fn one_read_gives_the_head_and_the_whole() {
        let mut f = tempfile::tempfile().unwrap();
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&bytes).unwrap();
        let p = RelPath::root();
        for (start, split, end) in [(0, 0, 10), (0, 10, 10), (5, 2_000_000, 3_000_000), (7, 1 << 20, 1 << 21)] {
            let (head, whole) = hash_range_split(&f, &p, start, split, end).unwrap();
            assert_eq!(head, sha256(&bytes[start as usize..split as usize]), "{start} {split} {end}");
            assert_eq!(whole, sha256(&bytes[start as usize..end as usize]));
        }
        assert!(matches!(hash_range_split(&f, &p, 0, 0, 3_000_001), Err(FsError::Shrank { .. })));
    }
}

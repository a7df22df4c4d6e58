//! How bytes get sealed: an open file's hashed tail, and bytes that reached DATA_DIR without
//! being hashed on the way in (after an unclean stop, or written behind wormfs' back).

use std::fs::File;
use std::os::unix::fs::FileExt;

use log::{info, warn};

use super::backing::DataDir;
use super::error::{io_errno, FsError, FsResult};
use super::handles::OpenFile;
use super::ledger::{Ledger, SealKind};
use super::metrics::{Metrics, SealFailure};
use super::path::RelPath;
use super::segment::SegmentHasher;

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
pub fn seal_open(ledger: &Ledger, metrics: &Metrics, state: &mut OpenFile, cause: SealCause) -> FsResult<()> {
    if state.unsealed() == 0 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let sealed = state.file.sync_data().map_err(|e| FsError::os(&state.path, io_errno(&e))).and_then(|()| {
        let segment_hash = state.hasher.clone().finish();
        ledger
            .seal(&state.path, state.sealed, state.size, segment_hash, SealKind::Written)
            .map_err(|e| FsError::ledger(&state.path, e))
    });
    let record = match sealed {
        Ok(record) => record,
        Err(e) => {
            metrics.seal_failed(SealFailure::of(&e));
            return Err(e);
        }
    };
    metrics.sealed(started.elapsed());
    log::debug!("sealed {} [{}, {}) as record {} ({cause:?})", state.path, state.sealed, state.size, record.seq());
    state.sealed = state.size;
    state.hasher = SegmentHasher::default();
    state.unsealed_since = None;
    Ok(())
}

/// What `catch_up` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// The file's size, now all sealed.
    pub size: u64,
    /// Whether a Recovered record had to be written.
    pub recovered: bool,
}

/// Bring the index up to date with a backing file before wormfs appends to it: bytes beyond the
/// sealed size are hashed from disk and sealed in a `Recovered` record (`adopted` when the
/// index did not know the file at all).
pub fn catch_up(ledger: &Ledger, path: &RelPath, file: &File) -> FsResult<CaughtUp> {
    let size = file.metadata().map_err(|e| FsError::os(path, io_errno(&e)))?.len();
    let known = ledger.file(path).map_err(|e| FsError::ledger(path, e.into()))?;
    let sealed = known.map(|s| s.sealed_size).unwrap_or(0);
    if size < sealed {
        return Err(FsError::Tampered { path: path.clone(), sealed, size });
    }
    if size == sealed && known.is_some() {
        return Ok(CaughtUp { size, recovered: false });
    }
    file.sync_data().map_err(|e| FsError::os(path, io_errno(&e)))?;
    let segment_hash = hash_range(file, path, sealed, size)?;
    let kind = if known.is_none() { SealKind::Adopted } else { SealKind::Recovered };
    let record = ledger.seal(path, sealed, size, segment_hash, kind).map_err(|e| FsError::ledger(path, e))?;
    if kind == SealKind::Adopted {
        warn!("{path}: not in the index; adopted its {size} bytes (record {})", record.seq());
    } else {
        info!("{path}: sealed {} bytes found unsealed (record {})", size - sealed, record.seq());
    }
    Ok(CaughtUp { size, recovered: true })
}

fn hash_range(file: &File, path: &RelPath, start: u64, end: u64) -> FsResult<[u8; 32]> {
    let mut hasher = SegmentHasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = start;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => return Err(FsError::Shrank { path: path.clone(), at, end }),
            Ok(n) => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FsError::os(path, io_errno(&e))),
        }
    }
    Ok(hasher.finish())
}

/// What mount-time recovery found.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    pub files_checked: u64,
    pub recovered: u64,
    /// Files the index knows that are gone from DATA_DIR, or shorter than sealed: verify's job to
    /// report; wormfs logs them and leaves them alone.
    pub damaged: Vec<String>,
}

/// At mount: seal whatever reached DATA_DIR without a seal (an unclean stop, or files placed
/// there while unmounted), walking every regular file.
pub fn recover(ledger: &Ledger, data: &DataDir) -> FsResult<Recovery> {
    let mut report = Recovery::default();
    let mut dirs = vec![RelPath::root()];
    let mut seen = std::collections::HashSet::new();
    while let Some(dir) = dirs.pop() {
        let entries = data.read_dir(&dir).map_err(|e| FsError::os(&dir, e))?;
        for entry in entries {
            let path = dir.join(&entry.name)?;
            match entry.file_type {
                libc::S_IFDIR => dirs.push(path),
                libc::S_IFREG => {
                    report.files_checked += 1;
                    let file = data.open_file(&path, false)?;
                    match catch_up(ledger, &path, &file) {
                        Ok(caught) => report.recovered += u64::from(caught.recovered),
                        Err(FsError::Tampered { path, sealed, size }) => {
                            warn!("{path}: {size} bytes on disk but {sealed} sealed: truncated outside wormfs");
                            report.damaged.push(format!("{path}: truncated to {size} of {sealed} sealed bytes"));
                        }
                        Err(e) => return Err(e),
                    }
                    seen.insert(path);
                }
                _ => {}
            }
        }
    }
    for (path, _) in ledger.files().map_err(|e| FsError::ledger(&RelPath::root(), e.into()))? {
        if !seen.contains(&path) {
            warn!("{path}: in the index but missing from the data directory");
            report.damaged.push(format!("{path}: missing"));
        }
    }
    Ok(report)
}

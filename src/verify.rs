//! The checker behind `wormfs verify` (and the tests' proof that seals hold): with the public key
//! alone, check that the chain is intact and that every sealed byte in DATA_DIR still hashes to
//! its seal. Reads the index and DATA_DIR; changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::core::chain::{ChainChecker, ChainFinding};
use crate::core::path::RelPath;
use crate::core::record::Payload;
use crate::core::segment::{next_file_hash, Hash, SegmentHasher};
use crate::core::store::{Store, StoreError};

/// Something verify found wrong: tampering or loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Chain(ChainFinding),
    /// A file's seals do not chain: a segment does not start where the last ended, or its
    /// file_hash is not SHA-256(previous ‖ segment ‖ end).
    FileChainBroken { path: RelPath, seq: u64 },
    /// The bytes in [start, end) no longer hash to the seal's segment hash.
    ContentChanged { path: RelPath, start: u64, end: u64, seq: u64 },
    /// The file is shorter than its sealed size.
    Truncated { path: RelPath, size: u64, sealed: u64 },
    /// A sealed or created file is gone, and no record explains it.
    Missing { path: RelPath },
    /// A file in DATA_DIR that no record ever created or adopted.
    Injected { path: RelPath },
    /// Bytes beyond the last seal after a clean Unmount: appended behind wormfs' back.
    AppendedAfterUnmount { path: RelPath, bytes: u64 },
}

/// Worth knowing, not proof of tampering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Bytes beyond the last seal while the chain is open (the daemon is running or stopped
    /// uncleanly; the next seal or mount recovery covers them).
    UnsealedTail { path: RelPath, bytes: u64 },
    /// A file wormfs found in DATA_DIR without having created it, and adopted.
    Adopted { path: RelPath, seq: u64 },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Chain(c) => write!(f, "chain: {c}"),
            Finding::FileChainBroken { path, seq } => write!(f, "{path}: record {seq} does not continue the file's seals"),
            Finding::ContentChanged { path, start, end, seq } => {
                write!(f, "{path}: bytes [{start}, {end}) changed since sealed (record {seq})")
            }
            Finding::Truncated { path, size, sealed } => {
                write!(f, "{path}: truncated to {size} bytes, {sealed} were sealed")
            }
            Finding::Missing { path } => write!(f, "{path}: missing, no record explains it"),
            Finding::Injected { path } => write!(f, "{path}: in the data directory but never created through wormfs"),
            Finding::AppendedAfterUnmount { path, bytes } => {
                write!(f, "{path}: {bytes} bytes appended after the clean unmount")
            }
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnsealedTail { path, bytes } => write!(f, "{path}: {bytes} bytes not sealed yet"),
            Warning::Adopted { path, seq } => write!(f, "{path}: adopted by wormfs (record {seq}), not created through it"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub records: u64,
    /// (seq, hash, time_ns) of the newest record.
    pub head: Option<(u64, Hash, u64)>,
    pub files: u64,
    pub bytes_hashed: u64,
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

#[derive(Debug)]
pub enum VerifyError {
    Store(StoreError),
    Io { path: PathBuf, err: std::io::Error },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Store(e) => write!(f, "{e}"),
            VerifyError::Io { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for VerifyError {}

/// One sealed segment as the chain states it.
#[derive(Debug, Clone)]
struct SealedSegment {
    seq: u64,
    start: u64,
    end: u64,
    segment_hash: Hash,
}

#[derive(Debug, Default)]
struct FileHistory {
    created: bool,
    adopted_at: Option<u64>,
    segments: Vec<SealedSegment>,
    /// The file's seals chain correctly up to here.
    sealed: u64,
    file_hash: Hash,
    broken: bool,
}

/// Check the chain in `store` against `key` and the files in `data_dir`.
pub fn check(store: &dyn Store, data_dir: &Path, key: VerifyingKey) -> Result<Report, VerifyError> {
    let mut checker = ChainChecker::new(key);
    let mut files: BTreeMap<RelPath, FileHistory> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    let mut last_payload_unmount = false;
    let mut head_time = 0;
    store
        .scan_records(1, &mut |stored_seq, bytes| {
            let Some(record) = checker.check(stored_seq, bytes) else { return true };
            let seq = record.seq();
            head_time = record.fields.time_ns;
            last_payload_unmount = matches!(record.fields.payload, Payload::Unmount);
            match &record.fields.payload {
                Payload::Create { path, .. } => files.entry(path.clone()).or_default().created = true,
                Payload::Seal(s) | Payload::Recovered { segment: s, .. } => {
                    let h = files.entry(s.path.clone()).or_default();
                    if let Payload::Recovered { adopted: true, .. } = record.fields.payload {
                        h.adopted_at = Some(seq);
                    }
                    let links = s.start == h.sealed
                        && s.end >= s.start
                        && next_file_hash(&h.file_hash, &s.segment_hash, s.end) == s.file_hash;
                    if !links && !h.broken {
                        findings.push(Finding::FileChainBroken { path: s.path.clone(), seq });
                        h.broken = true;
                    }
                    h.sealed = s.end;
                    h.file_hash = s.file_hash;
                    h.segments.push(SealedSegment { seq, start: s.start, end: s.end, segment_hash: s.segment_hash });
                }
                _ => {}
            }
            true
        })
        .map_err(VerifyError::Store)?;
    let chain = checker.finish();
    findings.splice(0..0, chain.findings.into_iter().map(Finding::Chain));

    let mut bytes_hashed = 0;
    for (path, history) in &files {
        if let Some(seq) = history.adopted_at {
            warnings.push(Warning::Adopted { path: path.clone(), seq });
        }
        let full = data_dir.join(path.as_os_str());
        let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&full) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                findings.push(Finding::Missing { path: path.clone() });
                continue;
            }
            Err(err) => return Err(VerifyError::Io { path: full, err }),
        };
        let size = file.metadata().map_err(|err| VerifyError::Io { path: full.clone(), err })?.len();
        let (hashed, content) = check_content(&file, path, &history.segments, size)
            .map_err(|err| VerifyError::Io { path: full.clone(), err })?;
        bytes_hashed += hashed;
        findings.extend(content);
        if size < history.sealed {
            findings.push(Finding::Truncated { path: path.clone(), size, sealed: history.sealed });
        } else if size > history.sealed {
            let bytes = size - history.sealed;
            if last_payload_unmount {
                findings.push(Finding::AppendedAfterUnmount { path: path.clone(), bytes });
            } else {
                warnings.push(Warning::UnsealedTail { path: path.clone(), bytes });
            }
        }
    }

    let on_disk = walk_files(data_dir).map_err(|(path, err)| VerifyError::Io { path, err })?;
    for path in &on_disk {
        if !files.contains_key(path) {
            findings.push(Finding::Injected { path: path.clone() });
        }
    }

    Ok(Report {
        records: chain.records,
        head: chain.head.map(|(seq, hash)| (seq, hash, head_time)),
        files: files.len() as u64,
        bytes_hashed,
        findings,
        warnings,
    })
}

/// Re-hash the file's sealed segments in one sequential read; report the first that fails.
fn check_content(
    file: &File,
    path: &RelPath,
    segments: &[SealedSegment],
    size: u64,
) -> std::io::Result<(u64, Option<Finding>)> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut at = 0u64;
    let mut hashed = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for seg in segments {
        if seg.start != at || seg.end > size {
            // A broken file chain or truncation is reported elsewhere; stop reading here.
            break;
        }
        let mut hasher = SegmentHasher::default();
        let mut left = seg.end - seg.start;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
            hashed += n as u64;
        }
        if left > 0 || hasher.finish() != seg.segment_hash {
            let finding = Finding::ContentChanged { path: path.clone(), start: seg.start, end: seg.end, seq: seg.seq };
            return Ok((hashed, Some(finding)));
        }
        at = seg.end;
    }
    Ok((hashed, None))
}

/// Every regular file under `dir`, as paths relative to it. Symlinks are not followed.
fn walk_files(dir: &Path) -> Result<BTreeSet<RelPath>, (PathBuf, std::io::Error)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), RelPath::root())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&abs).map_err(|e| (abs.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (abs.clone(), e))?;
            let kind = entry.file_type().map_err(|e| (entry.path(), e))?;
            let Ok(child) = rel.join(&entry.file_name()) else { continue };
            if kind.is_dir() {
                stack.push((entry.path(), child));
            } else if kind.is_file() {
                out.insert(child);
            }
        }
    }
    Ok(out)
}


//! `wormfs archive`: copy every sealed, closed file that is not archived yet to the bucket,
//! locked in COMPLIANCE mode until the file's retain-until (held if a hold covers it), with its
//! receipt beside it; record each upload in the chain; mirror later retention extensions and
//! holds onto the objects; and, with `prune`, delete local copies whose retention has expired
//! once their archived object has been checked.
//!
//! A run can stop anywhere and be run again: an object already in the bucket with the same
//! sealed bytes (its `wormfs-file-hash` metadata and size) is adopted, never uploaded twice;
//! a file already recorded as archived under its key is skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::s3::{s3_date, s3_date_ns, LockMode, ObjectInfo, S3Error, S3};
use super::{check_bytes, encode_path, object_key, receipt_key, Mismatch, META_FILE_HASH, META_PATH};
use crate::admin::Request;
use crate::checkpoint::{self, LogSigner};
use crate::control::{Session, SubmitError};
use crate::core::backing::{protection_of, DataDir, Protection};
use crate::core::history::{ArchiveDue, FileHistory, History};
use crate::core::path::RelPath;
use crate::core::retention;
use crate::core::segment::{hex, Hash};
use crate::core::store::{Store, StoreError};
use crate::inspect::path_text;
use crate::keys::{self, KeyError};
use crate::receipt;
use crate::state_dir::{IndexOpenError, StateDir};

/// What a run is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Key prefix in the bucket.
    pub prefix: String,
    /// Also delete local copies that are archived, checked and past their retention.
    pub prune: bool,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Wall-clock now (ns), for what has expired.
    pub now_ns: u64,
}

/// What a run did. Failures about single files do not stop the run; they are listed here.
#[derive(Debug, Default)]
pub struct Summary {
    /// (path, key, version id, adopted: found in the bucket from an earlier, interrupted run).
    pub archived: Vec<(RelPath, String, String, bool)>,
    pub bytes: u64,
    /// Objects whose retention was extended or whose legal hold changed.
    pub mirrored: Vec<String>,
    pub pruned: Vec<RelPath>,
    pub failed: Vec<(RelPath, String)>,
}

#[derive(Debug)]
pub enum ArchiveError {
    Index(IndexOpenError),
    Store(StoreError),
    Key(KeyError),
    Session(SubmitError),
    S3(S3Error),
    NeverMounted,
    DataDir {
        path: PathBuf,
        err: nix::errno::Errno,
    },
    /// The bucket cannot hold COMPLIANCE locks: archiving there would protect nothing.
    NoObjectLock(String),
    Checkpoint(String),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Index(e) => write!(f, "{e}"),
            ArchiveError::Store(e) => write!(f, "{e}"),
            ArchiveError::Key(e) => write!(f, "{e}"),
            ArchiveError::Session(e) => write!(f, "{e}"),
            ArchiveError::S3(e) => write!(f, "{e}"),
            ArchiveError::NeverMounted => write!(f, "the chain names no data directory (never mounted?)"),
            ArchiveError::DataDir { path, err } => write!(f, "{}: {err}", path.display()),
            ArchiveError::NoObjectLock(bucket) => write!(
                f,
                "bucket {bucket} does not have Object Lock enabled: its objects could be deleted, so wormfs will not archive there (create the bucket with Object Lock enabled)"
            ),
            ArchiveError::Checkpoint(e) => write!(f, "cannot sign the checkpoint the receipts prove against: {e}"),
        }
    }
}

impl std::error::Error for ArchiveError {}

/// The lock each object was last seen or set with, so a run only calls S3 for what changed.
/// Only a cache: lost or stale, the next run asks S3 (HEAD) instead.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Mirror {
    /// "key\nversion" → (retain-until ns, legal hold).
    objects: BTreeMap<String, (u64, bool)>,
}

impl Mirror {
    fn path(state: &StateDir, bucket: &str) -> PathBuf {
        state.path().join(format!("archive-{bucket}.json"))
    }

    fn load(path: &Path) -> Mirror {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn save(&self, path: &Path) {
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            log::warn!("{}: {e} (the next archive run asks S3 instead)", path.display());
        }
    }
}

/// One archive run over the chain in `state`, recording through `session`.
pub fn run(state: &StateDir, session: &Session, s3: &S3, opts: &RunOptions) -> Result<Summary, ArchiveError> {
    // While mounted the daemon owns the index: read a snapshot of it, record through it.
    let own;
    let store: &dyn Store = match session.store() {
        Some(store) => store,
        None => {
            own = state.open_index_read_only().map_err(ArchiveError::Index)?;
            &own
        }
    };
    if !s3.object_lock_enabled().map_err(ArchiveError::S3)? {
        return Err(ArchiveError::NoObjectLock(s3.bucket().to_string()));
    }
    let history = History::replay(store).map_err(ArchiveError::Store)?;
    let data_dir = store.data_dir().map_err(ArchiveError::Store)?.ok_or(ArchiveError::NeverMounted)?;
    let data_path = PathBuf::from(std::ffi::OsString::from_vec(data_dir));
    let data = DataDir::open(&data_path).map_err(|err| ArchiveError::DataDir { path: data_path.clone(), err })?;

    let mut summary = Summary::default();
    let todo = due_uploads(&history, &data, s3.bucket(), &opts.prefix);
    if !todo.is_empty() {
        let (origin, key) = keys::load_checkpoint_key(state).map_err(ArchiveError::Key)?;
        let log_key = key.verifying_key();
        let signer = LogSigner::new(origin.clone(), key);
        let cp = checkpoint::sign(store, &signer).map_err(|e| ArchiveError::Checkpoint(e.to_string()))?;
        let total: u64 = todo.iter().map(|(_, h)| h.sealed).sum();
        let bar = progress_bar(opts.progress, total);
        let run = Run {
            s3,
            data: &data,
            data_path: &data_path,
            history: &history,
            bar: &bar,
            now_ns: opts.now_ns,
            origin: &origin,
            log_key,
        };
        for &(path, h) in &todo {
            let key = object_key(&opts.prefix, path, &h.file_hash);
            bar.set_message(path_text(path));
            let receipt = || {
                receipt::make_from(store, &history, path, &cp, &signer)
                    .map(|doc| format!("{doc:#}\n").into_bytes())
                    .map_err(|e| e.to_string())
            };
            match run.archive_one(path, h, &key, receipt) {
                Ok(uploaded) => {
                    let request = Request::Archived {
                        path: path_text(path),
                        path_hex: Some(path.hex()),
                        size: h.sealed,
                        file_hash: hex(&h.file_hash),
                        bucket: s3.bucket().to_string(),
                        key: key.clone(),
                        version_id: uploaded.version_id.clone(),
                        receipt_version_id: uploaded.receipt_version_id,
                        retain_until_ns: uploaded.retain_until_ns,
                    };
                    match session.submit(&request) {
                        Ok(_) => {
                            summary.bytes += h.sealed;
                            summary.archived.push((path.clone(), key, uploaded.version_id, uploaded.adopted));
                        }
                        Err(e) => summary.failed.push((path.clone(), format!("uploaded, but not recorded: {e}"))),
                    }
                }
                Err(why) => summary.failed.push((path.clone(), why)),
            }
        }
        bar.finish_and_clear();
    }

    let dues: Vec<ArchiveDue> =
        history.archive_dues().into_iter().filter(|d| d.copy.archive.bucket == s3.bucket()).collect();
    mirror(state, s3, &dues, &mut summary);
    if opts.prune {
        prune(s3, session, &history, &data, &dues, opts.now_ns, &mut summary);
    }
    Ok(summary)
}

/// The files to upload: sealed, closed (immutable, every byte sealed), seals intact, and not
/// archived in this bucket as they are now.
fn due_uploads<'h>(
    history: &'h History,
    data: &DataDir,
    bucket: &str,
    prefix: &str,
) -> Vec<(&'h RelPath, &'h FileHistory)> {
    let archived: std::collections::BTreeSet<&str> =
        history.archived.values().filter(|c| c.archive.bucket == bucket).map(|c| c.archive.key.as_str()).collect();
    history
        .files
        .iter()
        .filter(|(path, h)| {
            h.sealed > 0 && !h.broken && !archived.contains(object_key(prefix, path, &h.file_hash).as_str())
        })
        .filter(|(path, h)| closed(data, path, h.sealed))
        .collect()
}

/// Whether the file is done being written: its size is its sealed size, and (where the data
/// filesystem has the flags) wormfs made it immutable at its last close.
fn closed(data: &DataDir, path: &RelPath, sealed: u64) -> bool {
    let Ok(file) = data.open_file(path, false) else { return false };
    let size = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    size == sealed && protection_of(&file).is_none_or(|p| p == Protection::Immutable)
}

struct Uploaded {
    version_id: String,
    receipt_version_id: String,
    retain_until_ns: u64,
    adopted: bool,
}

/// Margin past now for a lock: S3 refuses a retain-until in the past, and a file whose retention
/// has expired (a backlog, archiving turned on late) is still archived, locked this much longer.
pub const LOCK_MARGIN_NS: u64 = 24 * 3600 * 1_000_000_000;

/// What every file of a run shares.
struct Run<'a> {
    s3: &'a S3,
    data: &'a DataDir,
    data_path: &'a Path,
    history: &'a History,
    bar: &'a ProgressBar,
    now_ns: u64,
    /// The checkpoint key's origin and public half: what an adopted receipt must check with.
    origin: &'a str,
    log_key: ed25519_dalek::VerifyingKey,
}

impl Run<'_> {
    /// Upload one file and its receipt (or adopt what an interrupted run already put there).
    fn archive_one(
        &self,
        path: &RelPath,
        h: &FileHistory,
        key: &str,
        receipt: impl Fn() -> Result<Vec<u8>, String>,
    ) -> Result<Uploaded, String> {
        let s3 = self.s3;
        let retain_until_ns = h.retain_until_ns.max(self.now_ns.saturating_add(LOCK_MARGIN_NS));
        let hold = retention::hold_covering(self.history.holds.iter(), path).is_some();
        let file_hash = hex(&h.file_hash);
        let meta = [(META_FILE_HASH, file_hash.as_str()), (META_PATH, &encode_path(path))];
        // Whoever can write the bucket can plant a locked object under the key with the right
        // metadata and other bytes: adopt only a version that reads back as the sealed bytes.
        let sealed_bytes = |body: &mut dyn Read| matches!(check_bytes(body, &h.ranges, h.sealed, &|_| {}), Ok(Ok(_)));
        let (version_id, adopted) = match find_own(s3, key, &h.file_hash, &sealed_bytes)? {
            Some(found) => {
                self.extend_to(key, &found, retain_until_ns)?;
                self.bar.inc(h.sealed);
                (found.version_id, true)
            }
            None => {
                let mut file = self.data.open_file(path, false).map_err(|e| e.to_string())?;
                // First read: every byte must be what was sealed (never archive what wormfs did
                // not seal), and gives the SHA-256 the server checks the upload against.
                let sha = match check_bytes(&mut file, &h.ranges, h.sealed, &|_| {}).map_err(|e| e.to_string())? {
                    Ok(sha) => sha,
                    Err(Mismatch::Range { start, end }) => {
                        return Err(format!(
                            "bytes [{start}, {end}) are not what was sealed: not archived (run wormfs verify)"
                        ))
                    }
                    Err(m) => return Err(format!("not the sealed bytes ({m:?}): not archived (run wormfs verify)")),
                };
                file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
                let mut body = ProgressReader { inner: std::io::Read::take(file, h.sealed), bar: self.bar };
                let version = s3
                    .put_locked(key, &mut body, h.sealed, &sha, LockMode::Compliance, retain_until_ns, hold, &meta)
                    .map_err(|e| e.to_string())?;
                (version, false)
            }
        };
        // A receipt found there is adopted only if it proves this very file with this log's
        // checkpoint key, as `wormfs verify-receipt` would check it.
        let local = self.data_path.join(path.as_os_str());
        let proves_it = |body: &mut dyn Read| {
            let mut bytes = Vec::new();
            body.take(64 << 20).read_to_end(&mut bytes).is_ok()
                && receipt::check(&local, &bytes, self.origin, &self.log_key, &[]).is_ok()
        };
        let rkey = receipt_key(key);
        let receipt_version_id = match find_own(s3, &rkey, &h.file_hash, &proves_it)? {
            Some(found) => {
                self.extend_to(&rkey, &found, retain_until_ns)?;
                found.version_id
            }
            None => {
                let bytes = receipt()?;
                let sha = crate::core::segment::sha256(&bytes);
                let mut body = &bytes[..];
                let len = bytes.len() as u64;
                s3.put_locked(&rkey, &mut body, len, &sha, LockMode::Compliance, retain_until_ns, hold, &meta)
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(Uploaded { version_id, receipt_version_id, retain_until_ns: s3_date_ns(retain_until_ns), adopted })
    }

    /// An adopted version was put by a run that stopped before recording it; the file may have
    /// been retained longer since.
    fn extend_to(&self, key: &str, found: &ObjectInfo, until_ns: u64) -> Result<(), String> {
        if found.retain_until_ns.unwrap_or(0) < s3_date_ns(until_ns) {
            self.s3.put_retention(key, &found.version_id, LockMode::Compliance, until_ns).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A version of `key` that an earlier run put there for these sealed bytes: COMPLIANCE-locked,
/// `file_hash` in its metadata, and its content accepted by `accept`. Versions that cannot be
/// asked about (a planted SSE-C object answers 400 to a plain HEAD) are passed over.
fn find_own(
    s3: &S3,
    key: &str,
    file_hash: &Hash,
    accept: &dyn Fn(&mut dyn Read) -> bool,
) -> Result<Option<ObjectInfo>, String> {
    let wanted = hex(file_hash);
    let versions = s3.versions(key).map_err(|e| e.to_string())?;
    for version in versions.into_iter().filter(|v| !v.delete_marker) {
        let info = match s3.head(key, Some(&version.version_id)) {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(e @ S3Error::Refused { .. }) => {
                log::warn!("{key} version {}: {e}; passed over", version.version_id);
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        if info.meta(META_FILE_HASH) != Some(wanted.as_str()) || info.mode != Some(LockMode::Compliance) {
            continue;
        }
        let accepted = match s3.get(key, &info.version_id) {
            Ok(Some(mut body)) => accept(&mut body),
            Ok(None) | Err(S3Error::Refused { .. }) => false,
            Err(e) => return Err(e.to_string()),
        };
        if accepted {
            return Ok(Some(info));
        }
        log::warn!("{key} version {}: not what wormfs would put there; uploading anew", info.version_id);
    }
    Ok(None)
}

/// Extend retention and set or lift legal holds on archived objects (file and receipt) where the
/// chain now says otherwise than when they were last set.
fn mirror(state: &StateDir, s3: &S3, dues: &[ArchiveDue], summary: &mut Summary) {
    let cache_path = Mirror::path(state, s3.bucket());
    let mut cache = Mirror::load(&cache_path);
    for due in dues {
        let c = &due.copy;
        for (key, version) in [
            (c.archive.key.clone(), &c.archive.version_id),
            (receipt_key(&c.archive.key), &c.archive.receipt_version_id),
        ] {
            let slot = format!("{key}\n{version}");
            // Only a cache of "this object met exactly this due lock": it spares a HEAD only when
            // what is due has not changed since, so a stale or doctored entry costs a HEAD, never
            // an extension. A legal hold can be lifted by anyone the bucket lets, so a held
            // object is always asked.
            let due_until = s3_date_ns(due.retain_until_ns);
            let cached =
                cache.objects.get(&slot).filter(|(until, held)| due.hold.is_none() && *until == due_until && !held);
            let known = match cached {
                Some(seen) => Some(*seen),
                None => match s3.head(&key, Some(version)) {
                    Ok(Some(info)) => Some((info.retain_until_ns.unwrap_or(0), info.legal_hold)),
                    // Gone or unreadable: verify --archive reports it; nothing to set.
                    Ok(None) => None,
                    Err(e) => {
                        summary.failed.push((c.archive.path.clone(), format!("{key}: {e}")));
                        None
                    }
                },
            };
            let Some((until, held)) = known else { continue };
            let mut now = (until, held);
            if due_until > until {
                match s3.put_retention(&key, version, LockMode::Compliance, due.retain_until_ns) {
                    Ok(()) => {
                        now.0 = due_until;
                        summary.mirrored.push(format!("{key}: retained until {}", s3_date(due_until)));
                    }
                    Err(e) => summary.failed.push((c.archive.path.clone(), format!("{key}: {e}"))),
                }
            }
            if due.hold.is_some() != held {
                match s3.put_legal_hold(&key, version, due.hold.is_some()) {
                    Ok(()) => {
                        now.1 = due.hold.is_some();
                        let what = if now.1 { "legal hold set" } else { "legal hold cleared" };
                        summary.mirrored.push(format!("{key}: {what}"));
                    }
                    Err(e) => summary.failed.push((c.archive.path.clone(), format!("{key}: {e}"))),
                }
            }
            if now.0 >= due_until && now.1 == due.hold.is_some() {
                cache.objects.insert(slot, (due_until, now.1));
            } else {
                cache.objects.remove(&slot);
            }
        }
    }
    cache.save(&cache_path);
}

/// Delete local copies that are archived as they are, past their retention, under no hold, and
/// whose archived object checks out now (locked in COMPLIANCE at least as long, every byte as
/// sealed).
fn prune(
    s3: &S3,
    session: &Session,
    history: &History,
    data: &DataDir,
    dues: &[ArchiveDue],
    now_ns: u64,
    summary: &mut Summary,
) {
    let mut gone = std::collections::BTreeSet::new();
    for due in dues {
        let c = &due.copy;
        // A copy made under an earlier name is archived again under the file's current one
        // (another key) before that name can be pruned.
        let Some(path) = c.file.as_ref().filter(|f| **f == c.archive.path && !gone.contains(*f)) else { continue };
        let Some(h) = history.files.get(path) else { continue };
        if h.sealed != c.archive.size
            || h.file_hash != c.archive.file_hash
            || h.retain_until_ns > now_ns
            || due.hold.is_some()
        {
            continue;
        }
        if !closed(data, path, h.sealed) {
            continue;
        }
        if let Err(why) = object_holds(s3, c, h.retain_until_ns) {
            summary.failed.push((path.clone(), format!("not pruned: {why}")));
            continue;
        }
        let request = Request::Prune { path: path_text(path), path_hex: Some(path.hex()), archived: c.seq };
        match session.submit(&request) {
            Ok(_) => {
                gone.insert(path.clone());
                summary.pruned.push(path.clone());
            }
            Err(e) => summary.failed.push((path.clone(), format!("not pruned: {e}"))),
        }
    }
}

/// Whether the archived version is there, locked in COMPLIANCE until at least `until_ns`, and
/// holds exactly the archived bytes (read back in full).
fn object_holds(s3: &S3, c: &crate::core::history::ArchivedCopy, until_ns: u64) -> Result<(), String> {
    let info = s3.head(&c.archive.key, Some(&c.archive.version_id)).map_err(|e| e.to_string())?;
    let info = info.ok_or_else(|| format!("{} version {} is gone", c.archive.key, c.archive.version_id))?;
    if info.mode != Some(LockMode::Compliance) {
        return Err(format!("{} is not locked in COMPLIANCE mode", c.archive.key));
    }
    if info.retain_until_ns.unwrap_or(0) < s3_date_ns(until_ns) {
        return Err(format!("{} is locked for less than the file's retention", c.archive.key));
    }
    let mut body =
        s3.get(&c.archive.key, &c.archive.version_id).map_err(|e| e.to_string())?.ok_or("the object is gone")?;
    match check_bytes(&mut body, &c.ranges, c.archive.size, &|_| {}).map_err(|e| e.to_string())? {
        Ok(_) => Ok(()),
        Err(m) => Err(format!("{} does not hold the archived bytes ({m:?})", c.archive.key)),
    }
}

fn progress_bar(shown: bool, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if shown { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}") {
        bar.set_style(style);
    }
    bar
}

/// A reader that moves the progress bar as the upload reads it.
struct ProgressReader<'a, R> {
    inner: R,
    bar: &'a ProgressBar,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// One line per thing done or failed; the exit status: 0, or 1 if anything failed.
pub fn print_summary(s: &Summary, bucket: &str, out: &mut dyn std::io::Write) -> std::io::Result<i32> {
    for (path, key, version, adopted) in &s.archived {
        let how = if *adopted { " (found from an interrupted run)" } else { "" };
        writeln!(out, "archived {path} -> s3://{bucket}/{key} version {version}{how}")?;
    }
    for line in &s.mirrored {
        writeln!(out, "mirrored {line}")?;
    }
    for path in &s.pruned {
        writeln!(out, "pruned {path} (deleted here; the archived copy was checked first)")?;
    }
    for (path, why) in &s.failed {
        writeln!(out, "FAILED {path}: {why}")?;
    }
    writeln!(
        out,
        "{} archived ({} bytes), {} mirrored, {} pruned, {} failed",
        s.archived.len(),
        s.bytes,
        s.mirrored.len(),
        s.pruned.len(),
        s.failed.len()
    )?;
    Ok(i32::from(!s.failed.is_empty()))
}

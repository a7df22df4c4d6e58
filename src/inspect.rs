//! `wormfs log` and `wormfs status`: read-only views of the index, safe while mounted (the index
//! is opened read-only, so there is no lock fight with the daemon).

use std::fmt;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::core::path::RelPath;
use crate::core::record::{Archive, DecodeError, Payload, Record};
use crate::core::retention::{self, chain_now, hold_covering, Standing};
use crate::core::segment::hex;
use crate::core::store::{Clock, FileState, HoldState, Store, StoreError};
use crate::core::timefmt::rfc3339_ns;
use crate::index::RocksStore;
use crate::state_dir::{IndexOpenError, StateDir};

#[derive(Debug)]
pub enum InspectError {
    Index(IndexOpenError),
    Store(StoreError),
    /// A stored record does not decode.
    Corrupt {
        seq: u64,
        error: DecodeError,
    },
    Output(std::io::Error),
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InspectError::Index(e) => write!(f, "{e}"),
            InspectError::Store(e) => write!(f, "{e}"),
            InspectError::Corrupt { seq, error } => write!(f, "record {seq} is corrupt: {error}; run wormfs verify"),
            InspectError::Output(e) => write!(f, "writing output: {e}"),
        }
    }
}

impl std::error::Error for InspectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InspectError::Index(e) => Some(e),
            InspectError::Store(e) => Some(e),
            InspectError::Corrupt { error, .. } => Some(error),
            InspectError::Output(e) => Some(e),
        }
    }
}

impl From<StoreError> for InspectError {
    fn from(e: StoreError) -> Self {
        InspectError::Store(e)
    }
}

/// The index, read-only (safe beside a running daemon).
pub fn open_index_read_only(state: &StateDir) -> Result<RocksStore, InspectError> {
    state.open_index_read_only().map_err(InspectError::Index)
}

/// One record as a JSON object (the `--json` form of `wormfs log`).
pub fn record_json(r: &Record) -> Value {
    let f = &r.fields;
    let mut v = json!({
        "seq": f.seq,
        "time": rfc3339_ns(f.time_ns),
        "time_ns": f.time_ns,
        "kind": f.payload.kind().name(),
        "prev_hash": hex(&f.prev_hash),
        "hash": hex(&r.hash),
        "signature": hex(&r.signature),
    });
    let extra = match &f.payload {
        Payload::Mount { software, key_id, data_dir } => json!({
            "software": software,
            "key_id": hex(key_id),
            "data_dir": String::from_utf8_lossy(data_dir),
        }),
        Payload::Unmount => json!({}),
        Payload::Create { path, mode, uid, gid } => {
            json!({ "path": path_text(path), "mode": format!("{mode:o}"), "uid": uid, "gid": gid })
        }
        Payload::Seal(s) | Payload::Recovered { segment: s, .. } => json!({
            "path": path_text(&s.path),
            "start": s.start,
            "end": s.end,
            "segment_hash": hex(&s.segment_hash),
            "file_hash": hex(&s.file_hash),
            "retain_until": rfc3339_ns(s.retain_until_ns),
            "retain_until_ns": s.retain_until_ns,
        }),
        Payload::Delete { path, size, file_hash, retain_until_ns } => json!({
            "path": path_text(path),
            "size": size,
            "file_hash": hex(file_hash),
            "retain_until": rfc3339_ns(*retain_until_ns),
            "retain_until_ns": retain_until_ns,
        }),
        Payload::Hold { prefix, set, reason, uid } => {
            json!({ "path": path_text(prefix), "set": set, "reason": reason, "uid": uid })
        }
        Payload::Retention { path, retain_until_ns, uid } => json!({
            "path": path_text(path),
            "retain_until": rfc3339_ns(*retain_until_ns),
            "retain_until_ns": retain_until_ns,
            "uid": uid,
        }),
        Payload::Rename { from, to } => json!({ "path": path_text(from), "to": path_text(to) }),
        Payload::Truncate { path, old_size, new_size, kept_start, kept_hash } => json!({
            "path": path_text(path),
            "old_size": old_size,
            "new_size": new_size,
            "kept_start": kept_start,
            "kept_hash": hex(kept_hash),
        }),
        Payload::Damaged { path, sealed, size } => json!({ "path": path_text(path), "sealed": sealed, "size": size }),
        Payload::Aborted { change, errno } => json!({ "change": change, "errno": errno }),
        Payload::Archived(a) => json!({
            "path": path_text(&a.path),
            "size": a.size,
            "file_hash": hex(&a.file_hash),
            "bucket": a.bucket,
            "key": a.key,
            "version_id": a.version_id,
            "receipt_version_id": a.receipt_version_id,
            "retain_until": rfc3339_ns(a.retain_until_ns),
            "retain_until_ns": a.retain_until_ns,
        }),
        Payload::Pruned { path, size, file_hash, retain_until_ns, archived } => json!({
            "path": path_text(path),
            "size": size,
            "file_hash": hex(file_hash),
            "retain_until": rfc3339_ns(*retain_until_ns),
            "retain_until_ns": retain_until_ns,
            "archived": archived,
        }),
        Payload::KeyRotate { epoch, public_key, epoch_ns } => {
            json!({ "epoch": epoch, "public_key": hex(public_key), "epoch_ns": epoch_ns })
        }
        Payload::ClockJump { system_ns, floor_ns } => json!({
            "system_time": rfc3339_ns(*system_ns),
            "system_ns": system_ns,
            "floor_ns": floor_ns,
        }),
        Payload::Access { path, uid, pid, command } => {
            json!({ "path": path_text(path), "uid": uid, "pid": pid, "command": command })
        }
    };
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
        if let Payload::Recovered { adopted, .. } = f.payload {
            obj.insert("adopted".into(), json!(adopted));
        }
        if let Some(path) = f.payload.path() {
            put_hex(obj, "path", path);
        }
        if let Payload::Rename { to, .. } = &f.payload {
            put_hex(obj, "to", to);
        }
    }
    v
}

/// A path in JSON output: its exact text when it is UTF-8 (JSON escapes any control character
/// in it), otherwise the escaped form `Display` shows, with the exact bytes beside it (`put_hex`).
pub fn path_text(p: &RelPath) -> String {
    p.exact_text().unwrap_or_else(|| p.to_string())
}

/// Add `<key>_hex`, the path's exact bytes, when its text is not exact (not UTF-8).
pub fn put_hex(obj: &mut serde_json::Map<String, Value>, key: &str, p: &RelPath) {
    if p.exact_text().is_none() {
        obj.insert(format!("{key}_hex"), json!(p.hex()));
    }
}

/// One record as a line of text.
pub fn record_line(r: &Record) -> String {
    let f = &r.fields;
    let what = match &f.payload {
        Payload::Mount { software, key_id, data_dir } => {
            format!("{software} key {} data {}", hex(key_id), String::from_utf8_lossy(data_dir))
        }
        Payload::Unmount => String::new(),
        Payload::Create { path, mode, uid, gid } => format!("{path} mode {mode:o} uid {uid} gid {gid}"),
        Payload::Seal(s) => format!("{} [{}, {}) sha256 {}", s.path, s.start, s.end, hex(&s.segment_hash)),
        Payload::Recovered { segment: s, adopted } => format!(
            "{} [{}, {}) sha256 {}{}",
            s.path,
            s.start,
            s.end,
            hex(&s.segment_hash),
            if *adopted { " (adopted: unknown to the index)" } else { "" }
        ),
        Payload::Delete { path, size, retain_until_ns, .. } => {
            format!("{path} ({size} bytes, retained until {})", rfc3339_ns(*retain_until_ns))
        }
        Payload::Hold { prefix, set, reason, uid } => {
            format!("{} {prefix} by uid {uid}: {reason}", if *set { "set" } else { "cleared" })
        }
        Payload::Retention { path, retain_until_ns, uid } => {
            format!("{path} retained until {} (uid {uid})", rfc3339_ns(*retain_until_ns))
        }
        Payload::Rename { from, to } => format!("{from} -> {to}"),
        Payload::Truncate { path, old_size, new_size, kept_start, kept_hash } => {
            format!("{path} {old_size} -> {new_size} bytes (kept [{kept_start}, {new_size}) sha256 {})", hex(kept_hash))
        }
        Payload::Damaged { path, sealed, size } if size > sealed => {
            format!("{path} has bytes [{sealed}, {size}) past its seals that are not sealed (added outside wormfs, or their fdatasync failed)")
        }
        Payload::Damaged { path, sealed, size } => {
            format!("{path} cut to {size} of {sealed} sealed bytes outside wormfs")
        }
        Payload::Aborted { change, errno: 0 } => format!("record {change} did not happen (found undone at mount)"),
        Payload::Aborted { change, errno } => {
            let why = nix::errno::Errno::from_raw(*errno as i32).desc();
            format!("record {change} did not happen: {why}")
        }
        Payload::ClockJump { system_ns, floor_ns } => {
            format!("system clock {} is behind the chain's {}", rfc3339_ns(*system_ns), rfc3339_ns(*floor_ns))
        }
        Payload::Access { path, uid, pid, command } => format!("{path} read by uid {uid} pid {pid} ({command})"),
        Payload::Archived(Archive { path, size, bucket, key, version_id, retain_until_ns, .. }) => format!(
            "{path} ({size} bytes) to s3://{bucket}/{key} version {version_id}, locked until {}",
            rfc3339_ns(*retain_until_ns)
        ),
        Payload::Pruned { path, size, archived, .. } => {
            format!("{path} ({size} bytes) deleted here, kept in the archive (record {archived})")
        }
        Payload::KeyRotate { epoch, public_key, epoch_ns } => {
            format!("epoch {epoch} key {} ({} s)", hex(public_key), epoch_ns / 1_000_000_000)
        }
    };
    format!("{:>8} {} {:<9} {}", f.seq, rfc3339_ns(f.time_ns), f.payload.kind().name(), what).trim_end().to_string()
}

/// Print every record (about `only`, if given), oldest first.
pub fn log(store: &dyn Store, only: Option<&RelPath>, as_json: bool, out: &mut dyn Write) -> Result<(), InspectError> {
    let mut failure = None;
    store
        .scan_records(0, &mut |seq, bytes| {
            let record = match Record::decode(bytes) {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(InspectError::Corrupt { seq, error: e });
                    return false;
                }
            };
            if only.is_some_and(|p| !record.fields.payload.concerns(p)) {
                return true;
            }
            let line = if as_json { record_json(&record).to_string() } else { record_line(&record) };
            if let Err(e) = writeln!(out, "{line}") {
                failure = Some(InspectError::Output(e));
                return false;
            }
            true
        })
        .map_err(InspectError::Store)?;
    failure.map_or(Ok(()), Err)
}

#[derive(Debug, Clone)]
pub struct Status {
    pub head: Option<(u64, String, u64)>,
    pub data_dir: Option<String>,
    pub files: u64,
    pub sealed_bytes: u64,
    /// Bytes in DATA_DIR beyond the sealed sizes (None when DATA_DIR is not readable here).
    pub unsealed_bytes: Option<u64>,
    pub last_seal_ns: Option<u64>,
    pub mounted_cleanly_closed: bool,
    /// Legal holds in force.
    pub holds: u64,
    /// Files whose retain-until has passed (on the system clock).
    pub expired_files: u64,
    /// The key epoch the chain is in and when it began (None: never rotated, epoch 0).
    pub key_epoch: Option<(u64, u64)>,
}

/// The record stored as `seq`, if it is there and decodes.
fn record_at(store: &dyn Store, seq: u64) -> Result<Option<Record>, InspectError> {
    Ok(store.record_bytes(seq)?.and_then(|bytes| Record::decode(&bytes).ok()))
}

/// The chain at a glance. Reads the index's meta and file states and two records (the head
/// and the newest seal), never the whole chain, so it is as quick on a year of records as on
/// a day's.
pub fn status(store: &dyn Store, clock: &dyn Clock) -> Result<Status, InspectError> {
    let head = store.head()?;
    let files = store.files()?;
    let holds = store.holds()?;
    let data_dir = store.data_dir()?.map(|d| String::from_utf8_lossy(&d).into_owned());
    let head_record = match head {
        Some(h) => record_at(store, h.seq)?,
        None => None,
    };
    let last_seal_seq = files.iter().map(|(_, f)| f.last_seal_seq).max().unwrap_or(0);
    let last_seal_ns = match last_seal_seq {
        0 => None,
        seq => record_at(store, seq)?.map(|r| r.fields.time_ns),
    };
    let sealed_bytes = files.iter().map(|(_, f)| f.sealed_size).sum();
    let unsealed_bytes = data_dir.as_ref().and_then(|d| {
        let mut total = 0;
        for (path, f) in &files {
            let size = std::fs::symlink_metadata(Path::new(d).join(path.as_os_str())).ok()?.len();
            total += size.saturating_sub(f.sealed_size);
        }
        Some(total)
    });
    let now = chain_now(clock.now_ns(), head.map_or(0, |h| h.time_ns));
    let expired_files =
        files.iter().filter(|(path, f)| standing_of(path, f, &holds, now) == Standing::Expired).count() as u64;
    Ok(Status {
        holds: holds.len() as u64,
        expired_files,
        head: head.map(|h| (h.seq, hex(&h.hash), h.time_ns)),
        data_dir,
        files: files.len() as u64,
        sealed_bytes,
        unsealed_bytes,
        last_seal_ns,
        mounted_cleanly_closed: head_record.is_some_and(|r| matches!(r.fields.payload, Payload::Unmount)),
        key_epoch: store.epoch()?.map(|e| (e.epoch, e.since_ns)),
    })
}

/// Where a file stands (held, retained, expired) by the same rule the daemon applies; whether
/// it is open only the daemon knows, so it is taken as closed.
fn standing_of(path: &RelPath, state: &FileState, holds: &[(RelPath, HoldState)], now_ns: u64) -> Standing {
    let hold = hold_covering(holds.iter().map(|(p, h)| (p, h.reason.as_str())), path);
    retention::standing(state.retain_until_ns, hold, false, now_ns)
}

pub fn print_status(s: &Status, out: &mut dyn Write) -> std::io::Result<()> {
    match &s.head {
        Some((seq, hash, ns)) => {
            writeln!(out, "head:           record {seq} at {}", rfc3339_ns(*ns))?;
            writeln!(out, "head hash:      {hash}")?;
        }
        None => writeln!(out, "head:           (empty chain)")?,
    }
    writeln!(out, "data directory: {}", s.data_dir.as_deref().unwrap_or("(unknown)"))?;
    writeln!(
        out,
        "chain state:    {}",
        if s.mounted_cleanly_closed { "closed (clean unmount)" } else { "open (mounted, or stopped uncleanly)" }
    )?;
    match s.key_epoch {
        Some((epoch, since)) => writeln!(out, "key epoch:      {epoch} since {}", rfc3339_ns(since))?,
        None => writeln!(out, "key epoch:      0 (keygen's key, never rotated)")?,
    }
    writeln!(out, "files:          {} ({} past retention)", s.files, s.expired_files)?;
    writeln!(out, "legal holds:    {} (wormfs hold list)", s.holds)?;
    writeln!(out, "sealed bytes:   {}", s.sealed_bytes)?;
    match s.unsealed_bytes {
        Some(n) => writeln!(out, "unsealed bytes: {n}")?,
        None => writeln!(out, "unsealed bytes: (data directory not readable here)")?,
    }
    match s.last_seal_ns {
        Some(ns) => writeln!(out, "last seal:      {}", rfc3339_ns(ns)),
        None => writeln!(out, "last seal:      (none)"),
    }
}

/// One file as `wormfs ls` shows it.
#[derive(Debug, Clone)]
pub struct LsEntry {
    pub path: RelPath,
    /// Bytes in DATA_DIR now (None when the file is missing or DATA_DIR unreadable here).
    pub size: Option<u64>,
    pub sealed: u64,
    pub retain_until_ns: u64,
    /// Held, retained or expired, at the chain's time.
    pub standing: Standing,
}

/// Files under `prefix` with their sizes, retention and holds, as they stand at the chain's
/// time (the clock, never earlier than the newest record).
pub fn ls(
    store: &dyn Store,
    data_dir: Option<&Path>,
    prefix: &RelPath,
    clock: &dyn Clock,
) -> Result<Vec<LsEntry>, InspectError> {
    let holds = store.holds()?;
    let files = store.files()?;
    let now = chain_now(clock.now_ns(), store.head()?.map_or(0, |h| h.time_ns));
    Ok(files
        .into_iter()
        .filter(|(path, _)| path.is_under(prefix))
        .map(|(path, state)| {
            let size = data_dir.and_then(|d| std::fs::symlink_metadata(d.join(path.as_os_str())).ok()).map(|m| m.len());
            let standing = standing_of(&path, &state, &holds, now);
            LsEntry { path, size, sealed: state.sealed_size, retain_until_ns: state.retain_until_ns, standing }
        })
        .collect())
}

pub fn print_ls(entries: &[LsEntry], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{:>12} {:>12}  {:<30}  {:<8}  PATH", "SIZE", "SEALED", "RETAIN UNTIL", "STATE")?;
    for e in entries {
        let size = e.size.map_or_else(|| "missing".to_string(), |s| s.to_string());
        let (state, hold) = match &e.standing {
            Standing::Held { prefix, reason } => ("held", format!("  [hold on {prefix}: {reason}]")),
            Standing::Expired | Standing::Open => ("expired", String::new()),
            Standing::Retained { .. } | Standing::Untracked => ("retained", String::new()),
        };
        writeln!(
            out,
            "{size:>12} {:>12}  {:<30}  {state:<8}  {}{hold}",
            e.sealed,
            rfc3339_ns(e.retain_until_ns),
            e.path
        )?;
    }
    Ok(())
}

/// The holds in force, one a line.
pub fn print_holds(store: &dyn Store, out: &mut dyn Write) -> Result<(), InspectError> {
    for (prefix, hold) in store.holds()? {
        writeln!(out, "{prefix}\tset by uid {} (record {}): {}", hold.uid, hold.seq, hold.reason)
            .map_err(InspectError::Output)?;
    }
    Ok(())
}

/// The daemon's metrics file, summarised for `wormfs status` (histogram buckets left out).
pub fn print_metrics_file(path: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // Said, not skipped: an admin who moved the file (--metrics-file) needs to know where
        // status looked.
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound { "none".to_string() } else { e.to_string() };
            return writeln!(
                out,
                "metrics: {why} at {} (the daemon writes it while mounted; pass --metrics-file if it writes elsewhere)",
                path.display()
            );
        }
    };
    let age = std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    let age = age.map_or_else(|| "of unknown age".to_string(), |a| format!("written {} s ago", a.as_secs()));
    writeln!(out, "metrics (the file {}, {age}; the daemon's live figures need root while mounted):", path.display())?;
    print_metrics(&text, out)
}

/// The daemon's live metrics, as it answered on its control socket.
pub fn print_live_metrics(text: &str, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "metrics (live, from the running daemon):")?;
    print_metrics(text, out)
}

fn print_metrics(text: &str, out: &mut dyn Write) -> std::io::Result<()> {
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.contains("_bucket")) {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

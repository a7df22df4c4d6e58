//! The admin commands that change the chain (`wormfs hold`, `wormfs retention extend`, and the
//! records `wormfs archive` makes): what each does, whoever runs it — the daemon for a caller on
//! the control socket while mounted, or the CLI on the index directly when nothing is mounted.
//! Same code, same results.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::ledger::LedgerError;
use crate::core::record::Archive;
use crate::core::store::StoreError;
use crate::core::timefmt::rfc3339_ns;
use crate::core::RelPath;
use crate::core::{FsError, WormFs};

/// A change an admin asks for. Paths are as seen in the mount (`/app/x.log`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    HoldSet {
        path: String,
        reason: String,
    },
    HoldClear {
        path: String,
        reason: String,
    },
    /// Extend to an absolute time, or by a duration past the current retain-until.
    RetentionExtend {
        path: String,
        until_ns: Option<u64>,
        by_ns: Option<u64>,
    },
    /// Record an upload `wormfs archive` made; refused unless it is of the file's sealed bytes.
    Archived {
        path: String,
        /// The path's exact bytes in hex (no leading `/`), which `path` cannot carry for a name
        /// that is not UTF-8; used instead of `path` when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_hex: Option<String>,
        size: u64,
        /// Hex.
        file_hash: String,
        bucket: String,
        key: String,
        version_id: String,
        receipt_version_id: String,
        retain_until_ns: u64,
    },
    /// The daemon's live metrics (Prometheus text), for `wormfs status` while mounted. Changes
    /// nothing.
    Metrics,
    /// Delete the local copy of an expired file that Archived record `archived` keeps in S3.
    Prune {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_hex: Option<String>,
        archived: u64,
    },
}

/// The answer, as one line for the admin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    pub ok: bool,
    pub message: String,
}

#[derive(Debug)]
pub enum AdminError {
    BadPath(String),
    NotAFile(String),
    Store(StoreError),
    /// The rules refused (shortening a retention, a hold without reason or target) or the chain
    /// could not record it.
    Ledger(LedgerError),
    /// A file_hash that is not 64 hex digits.
    BadHash(String),
    /// A prune the filesystem refused or could not do.
    Fs(FsError),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::BadPath(p) => write!(f, "`{p}` is not a path inside the mount"),
            AdminError::NotAFile(p) => write!(f, "{p}: not a file wormfs has sealed"),
            AdminError::Store(e) => write!(f, "{e}"),
            AdminError::Ledger(LedgerError::UnknownFile(p)) => write!(f, "{p}: not a file wormfs has sealed"),
            AdminError::Ledger(e) => write!(f, "{e}"),
            AdminError::BadHash(h) => write!(f, "`{h}` is not a SHA-256 in hex"),
            AdminError::Fs(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Store(e) => Some(e),
            AdminError::Ledger(e) => Some(e),
            AdminError::Fs(e) => Some(e),
            _ => None,
        }
    }
}

fn mount_path(text: &str) -> Result<RelPath, AdminError> {
    RelPath::from_mount_path(text).map_err(|_| AdminError::BadPath(text.to_string()))
}

/// The path a request names: its exact bytes when it gives them in hex, else its text.
fn exact_path(text: &str, hex: Option<&str>) -> Result<RelPath, AdminError> {
    use std::os::unix::ffi::OsStrExt;
    let Some(hex) = hex else { return mount_path(text) };
    let bytes = crate::core::segment::from_hex(hex).ok_or_else(|| AdminError::BadPath(hex.to_string()))?;
    RelPath::parse(std::ffi::OsStr::from_bytes(&bytes)).map_err(|_| AdminError::BadPath(text.to_string()))
}

/// Carry out `request` for `uid` on the chain in `ledger` over `data_dir`. The rules are the
/// core's (`policy::hold`, `policy::extend_retention`); this gathers the facts they need.
pub fn execute(fs: &WormFs, data_dir: &Path, uid: u32, request: &Request) -> Result<String, AdminError> {
    let ledger = fs.ledger();
    match request {
        Request::HoldSet { path, reason } | Request::HoldClear { path, reason } => {
            let set = matches!(request, Request::HoldSet { .. });
            let prefix = mount_path(path)?;
            let exists = std::fs::symlink_metadata(data_dir.join(prefix.as_os_str())).is_ok();
            let record = ledger.hold(&prefix, set, reason, uid, exists).map_err(AdminError::Ledger)?;
            Ok(format!("{} legal hold on {prefix} (record {})", if set { "set" } else { "cleared" }, record.seq()))
        }
        Request::RetentionExtend { path, until_ns, by_ns } => {
            let file = mount_path(path)?;
            let state =
                ledger.file(&file).map_err(AdminError::Store)?.ok_or_else(|| AdminError::NotAFile(path.clone()))?;
            let requested = match (until_ns, by_ns) {
                (Some(until), _) => *until,
                (None, Some(by)) => state.retain_until_ns.saturating_add(*by),
                (None, None) => state.retain_until_ns,
            };
            let record = ledger.extend_retention(&file, requested, uid).map_err(AdminError::Ledger)?;
            Ok(format!("{file} retained until {} (record {})", rfc3339_ns(requested), record.seq()))
        }
        Request::Archived {
            path,
            path_hex,
            size,
            file_hash,
            bucket,
            key,
            version_id,
            receipt_version_id,
            retain_until_ns,
        } => {
            let file = exact_path(path, path_hex.as_deref())?;
            let file_hash = crate::core::segment::from_hex(file_hash)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| AdminError::BadHash(file_hash.clone()))?;
            let copy = Archive {
                path: file.clone(),
                size: *size,
                file_hash,
                bucket: bucket.clone(),
                key: key.clone(),
                version_id: version_id.clone(),
                receipt_version_id: receipt_version_id.clone(),
                retain_until_ns: *retain_until_ns,
            };
            let record = ledger.archived(copy).map_err(AdminError::Ledger)?;
            Ok(format!("{file} archived as s3://{bucket}/{key} version {version_id} (record {})", record.seq()))
        }
        Request::Metrics => {
            let head = ledger.head().map_or(0, |h| h.seq);
            Ok(crate::metrics::render(&fs.metrics().snapshot(), &fs.gauges(), head))
        }
        Request::Prune { path, path_hex, archived } => {
            let file = exact_path(path, path_hex.as_deref())?;
            let seq = fs.prune(&file, *archived).map_err(AdminError::Fs)?;
            Ok(format!("{file} deleted here, kept in the archive by record {archived} (record {seq})"))
        }
    }
}

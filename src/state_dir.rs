//! STATE_DIR's layout in one place: where the index, the control socket, the key files and the
//! metrics file live. Every module that touches STATE_DIR asks here, so none needs another's
//! constants (which made control, inspect and mount import each other).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::core::store::StoreError;
use crate::index::RocksStore;

/// The RocksDB index.
pub const INDEX_DIR: &str = "index";
/// The root-only unix socket admin commands use while mounted.
pub const SOCKET_FILE: &str = "control.sock";
/// The current epoch's ed25519 secret seed, hex, mode 0600 (keygen's key until the first
/// rotation; each rotation replaces it and destroys the old one).
pub const SIGNING_KEY_FILE: &str = "signing.key";
/// The next epoch's key while a rotation is under way (a crash may leave it; the next load
/// keeps whichever of the two the chain names and destroys the other).
pub const NEXT_SIGNING_KEY_FILE: &str = "signing.key.next";
/// The trust anchor: epoch 0's public key, hex, for verifiers. Never changes.
pub const PUBLIC_KEY_FILE: &str = "signing.pub";
/// The same anchor as a C2SP verifier key (`name+id+base64`).
pub const PUBLIC_VKEY_FILE: &str = "signing.vkey";
/// The checkpoint key's ed25519 secret seed, hex, mode 0600 (long-lived: witnesses pin it).
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint.key";
/// The checkpoint key as a C2SP verifier key; its name is the log's origin line.
pub const CHECKPOINT_VKEY_FILE: &str = "checkpoint.vkey";
/// The newest checkpoint the daemon signed, with the witnesses' cosignatures.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The daemon's Prometheus text file unless `--metrics-file` says otherwise.
pub const METRICS_FILE: &str = "metrics.prom";

/// A state directory, named by the path the admin gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir(PathBuf);

/// Why the index could not be opened.
#[derive(Debug)]
pub enum IndexOpenError {
    /// STATE_DIR has no index: never mounted, or the wrong directory.
    NoIndex(PathBuf),
    Store {
        path: PathBuf,
        err: StoreError,
    },
}

impl fmt::Display for IndexOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexOpenError::NoIndex(p) => {
                write!(f, "no index at {} (was this state directory ever mounted?)", p.display())
            }
            IndexOpenError::Store { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for IndexOpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IndexOpenError::NoIndex(_) => None,
            IndexOpenError::Store { err, .. } => Some(err),
        }
    }
}

/// Create `path` (and missing parents) as a directory only its owner can enter, unless it
/// exists: an existing directory keeps the mode its admin gave it.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn index(&self) -> PathBuf {
        self.0.join(INDEX_DIR)
    }

    pub fn control_socket(&self) -> PathBuf {
        self.0.join(SOCKET_FILE)
    }

    pub fn signing_key(&self) -> PathBuf {
        self.0.join(SIGNING_KEY_FILE)
    }

    pub fn next_signing_key(&self) -> PathBuf {
        self.0.join(NEXT_SIGNING_KEY_FILE)
    }

    pub fn public_key(&self) -> PathBuf {
        self.0.join(PUBLIC_KEY_FILE)
    }

    pub fn public_vkey(&self) -> PathBuf {
        self.0.join(PUBLIC_VKEY_FILE)
    }

    pub fn checkpoint_key(&self) -> PathBuf {
        self.0.join(CHECKPOINT_KEY_FILE)
    }

    pub fn checkpoint_vkey(&self) -> PathBuf {
        self.0.join(CHECKPOINT_VKEY_FILE)
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.0.join(CHECKPOINT_FILE)
    }

    pub fn metrics_file(&self) -> PathBuf {
        self.0.join(METRICS_FILE)
    }

    pub fn has_index(&self) -> bool {
        RocksStore::exists(&self.index())
    }

    /// The index, read-only: safe beside a running daemon (no lock fight), a picture of what
    /// was committed when it was opened.
    pub fn open_index_read_only(&self) -> Result<RocksStore, IndexOpenError> {
        let path = self.index();
        if !self.has_index() {
            return Err(IndexOpenError::NoIndex(path));
        }
        RocksStore::open_read_only(&path).map_err(|err| IndexOpenError::Store { path, err })
    }

    /// The index, read-write (takes RocksDB's lock: fails while a daemon holds it).
    pub fn open_index(&self) -> Result<RocksStore, IndexOpenError> {
        let path = self.index();
        if !self.has_index() {
            return Err(IndexOpenError::NoIndex(path));
        }
        RocksStore::open(&path).map_err(|err| IndexOpenError::Store { path, err })
    }
}

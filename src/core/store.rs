//! The small traits the core needs from the outside: a durable store of records and per-file
//! state, and a clock. `crate::index` implements the store on RocksDB and in memory.

use std::fmt;
use std::path::PathBuf;

use super::path::RelPath;
use super::record::Record;
use super::segment::Hash;
use super::space::{NoRoom, Room};

/// What the index knows of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileState {
    /// Bytes [0, sealed_size) are covered by seals.
    pub sealed_size: u64,
    /// `file_hash` of the newest seal (zeros before the first).
    pub file_hash: Hash,
    /// Seq of the file's Create record (0 when it was adopted by a Recovered record).
    pub created_seq: u64,
    /// Seq of the newest Seal or Recovered record (0 before the first).
    pub last_seal_seq: u64,
    /// Retained until this time (chain clock, ns): latest seal + retention, or later if extended.
    pub retain_until_ns: u64,
}

/// A legal hold on a file or directory (the root: the whole mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    pub reason: String,
    pub uid: u32,
    /// The Hold record that set it.
    pub seq: u64,
}

/// One change to the index that a record implies, applied atomically with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexUpdate {
    File(RelPath, FileState),
    RemoveFile(RelPath),
    Hold(RelPath, HoldState),
    RemoveHold(RelPath),
    /// The data directory the chain covers, as the newest Mount record names it (so the offline
    /// tools find it without scanning the chain).
    DataDir(Vec<u8>),
    /// The signing key's epoch moved on (a KeyRotate record).
    Epoch(EpochState),
    /// The Merkle tree's stored hashes the record adds (`core::merkle`), from stored-hash index
    /// `first` on.
    TreeHashes {
        first: u64,
        hashes: Vec<Hash>,
    },
}

/// Which key signs the chain now: the epoch of the newest KeyRotate (0 before the first, when
/// the key is the one `keygen` made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochState {
    pub epoch: u64,
    /// `chain::key_id` of the epoch's public key.
    pub key_id: [u8; 8],
    /// The time of the KeyRotate that began it (0 for epoch 0).
    pub since_ns: u64,
}

/// The newest record of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
    pub time_ns: u64,
}

/// The error source a backend carries along (RocksDB's own error, an I/O error).
pub type BackendSource = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
pub enum StoreError {
    /// The backend failed (I/O, a full disk, RocksDB's own error) while `doing` something.
    Backend { doing: String, source: BackendSource },
    /// Another process holds the index open for writing (a running daemon).
    Locked { source: BackendSource },
    /// The index was opened read-only; nothing can be committed through it.
    ReadOnly,
    /// A new index was asked for where one already exists.
    AlreadyExists(PathBuf),
    /// No index where one was expected.
    Missing(PathBuf),
    /// A commit whose seq does not extend the head by exactly one: a bug in the caller, never
    /// a reason to leave a gap or overwrite history.
    OutOfSequence { seq: u64, expected: u64 },
    /// The head's seq is u64::MAX: no record can follow it (a tampered or absurd head).
    SeqExhausted { head: u64 },
    /// Stored bytes that do not decode: the index was damaged or tampered with.
    Corrupt(String),
    /// Not written: the store's filesystem has less free space than it needs to write safely
    /// (`core::space`). Nothing was changed; it can be retried once there is room.
    NoSpace(NoRoom),
    /// A sync of the index failed earlier: which of its commits are durable is unknown, so it
    /// takes no more until it is reopened (a remount replays what it holds).
    SyncFailed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Backend { doing, source } => write!(f, "index error: {doing}: {source}"),
            StoreError::Locked { source } => {
                write!(f, "the index is in use by another process (is wormfs mounted?): {source}")
            }
            StoreError::ReadOnly => write!(f, "the index is open read-only"),
            StoreError::AlreadyExists(p) => write!(f, "an index already exists in {}", p.display()),
            StoreError::Missing(p) => write!(f, "no index in {}", p.display()),
            StoreError::OutOfSequence { seq, expected } => {
                write!(f, "refusing record seq {seq}: the next seq is {expected}")
            }
            StoreError::SeqExhausted { head } => {
                write!(f, "the head is record {head}: the sequence number space is exhausted")
            }
            StoreError::Corrupt(e) => write!(f, "index is corrupt: {e}"),
            StoreError::NoSpace(no) => write!(f, "no room to write the index safely: {no}"),
            StoreError::SyncFailed => write!(
                f,
                "an earlier sync of the index failed, so what it holds on disk is unknown; nothing more is committed until wormfs is remounted"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Backend { source, .. } | StoreError::Locked { source } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// The seq of the record after `head` (1 for an empty chain), or why there can be none.
pub fn next_seq(head: Option<&Head>) -> StoreResult<u64> {
    match head {
        None => Ok(1),
        Some(h) => h.seq.checked_add(1).ok_or(StoreError::SeqExhausted { head: h.seq }),
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

pub trait Store: Send + Sync {
    /// The newest record, or None for an empty chain.
    fn head(&self) -> StoreResult<Option<Head>>;

    /// The id of the key the chain is signed with, once set.
    fn key_id(&self) -> StoreResult<Option<[u8; 8]>>;

    /// Record which key signs this chain. Called once, before the first record.
    fn set_key_id(&self, key_id: [u8; 8]) -> StoreResult<()>;

    /// The data directory the newest Mount recorded (None before the first mount).
    fn data_dir(&self) -> StoreResult<Option<Vec<u8>>>;

    /// The epoch of the key that signs the chain now (None before the first rotation).
    fn epoch(&self) -> StoreResult<Option<EpochState>>;

    /// The Merkle tree's stored hashes at these stored-hash indexes (`core::merkle`); one that
    /// is not stored is `StoreError::Corrupt`.
    fn tree_hashes(&self, indexes: &[u64]) -> StoreResult<Vec<Hash>>;

    /// Store tree hashes without a record, synced: only to build the tree of an index made
    /// before wormfs kept one, or to repair one (`merkle::repair_from`).
    fn put_tree_hashes(&self, first: u64, hashes: &[Hash]) -> StoreResult<()>;

    fn file(&self, path: &RelPath) -> StoreResult<Option<FileState>>;

    /// Every file the index knows, in path order.
    fn files(&self) -> StoreResult<Vec<(RelPath, FileState)>>;

    /// Every legal hold in force, in path order.
    fn holds(&self) -> StoreResult<Vec<(RelPath, HoldState)>>;

    /// Free space where the store writes, and what it needs for itself (None: it does not
    /// write to a filesystem, or cannot tell). Asked before every commit, so it must be cheap.
    fn room(&self) -> Option<Room> {
        None
    }

    /// Append `record` (whose seq must be head + 1), move the head to it, and apply the index
    /// changes it implies — all in one atomic write, visible to every read on return and
    /// surviving the process being killed, but durable against a power cut only after `sync`.
    /// (The ledger commits under its chain lock and syncs outside it, so one sync covers every
    /// record committed by then: group commit.)
    fn commit(&self, record: &Record, updates: &[IndexUpdate]) -> StoreResult<()>;

    /// Make every commit so far durable. After a failed sync what the disk holds is unknown
    /// (as after a failed fsync of a data file): the caller must commit nothing more.
    fn sync(&self) -> StoreResult<()>;

    /// The stored records with seq >= `from`, in seq order, as (seq key, raw bytes): raw,
    /// because a checker must see exactly what is stored, damage included. `visit` returns
    /// false to stop early.
    fn scan_records(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> StoreResult<()>;

    /// The raw bytes stored as record `seq`, if any.
    fn record_bytes(&self, seq: u64) -> StoreResult<Option<Vec<u8>>> {
        let mut found = None;
        self.scan_records(seq, &mut |key, bytes| {
            if key == seq {
                found = Some(bytes.to_vec());
            }
            false
        })?;
        Ok(found)
    }
}

/// Wall-clock time as nanoseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    }
}

/// Where the daemon keeps the epoch signing key (`crate::keys` keeps it in STATE_DIR). A
/// rotation stages the next key durably, commits the KeyRotate that certifies it, then
/// promotes it, which destroys the old key: at no point is the chain signed by a key that a
/// crash could lose, and after promote no copy of the old key is left.
pub trait KeyVault: Send + Sync + fmt::Debug {
    /// A new key from the system's random source, boxed so that moving it copies a pointer
    /// (a moved-from stack slot keeps its bytes).
    fn generate(&self) -> Result<Box<ed25519_dalek::SigningKey>, VaultError>;
    /// Make `next` durable beside the current key.
    fn stage(&self, next: &ed25519_dalek::SigningKey) -> Result<(), VaultError>;
    /// The record certifying the staged key is committed: make it the current key and destroy
    /// the old one (overwritten, synced, unlinked).
    fn promote(&self) -> Result<(), VaultError>;
}

/// A key vault operation that failed, with the system's error.
#[derive(Debug)]
pub struct VaultError {
    pub doing: String,
    pub source: std::io::Error,
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.doing, self.source)
    }
}

impl std::error::Error for VaultError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

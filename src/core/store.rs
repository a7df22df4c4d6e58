//! The small traits the core needs from the outside: a durable store of records and per-file
//! state, and a clock. `crate::index` implements the store on RocksDB and in memory.

use std::fmt;

use super::path::RelPath;
use super::record::Record;
use super::segment::Hash;

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
}

/// The newest record of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
    pub time_ns: u64,
}

#[derive(Debug)]
pub enum StoreError {
    /// The backend failed (I/O, lock, RocksDB error); the text is the backend's own.
    Backend(String),
    /// Stored bytes that do not decode: the index was damaged or tampered with.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Backend(e) => write!(f, "index error: {e}"),
            StoreError::Corrupt(e) => write!(f, "index is corrupt: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

pub trait Store: Send + Sync {
    /// The newest record, or None for an empty chain.
    fn head(&self) -> StoreResult<Option<Head>>;

    /// The id of the key the chain is signed with, once set.
    fn key_id(&self) -> StoreResult<Option<[u8; 8]>>;

    /// Record which key signs this chain. Called once, before the first record.
    fn set_key_id(&self, key_id: [u8; 8]) -> StoreResult<()>;

    fn file(&self, path: &RelPath) -> StoreResult<Option<FileState>>;

    /// Every file the index knows, in path order.
    fn files(&self) -> StoreResult<Vec<(RelPath, FileState)>>;

    /// Every legal hold in force, in path order.
    fn holds(&self) -> StoreResult<Vec<(RelPath, HoldState)>>;

    /// Append `record` (whose seq must be head + 1), move the head to it, and apply the index
    /// changes it implies — all in one atomic write that is durable (synced) on return.
    fn commit(&self, record: &Record, updates: &[IndexUpdate]) -> StoreResult<()>;

    /// The stored records with seq >= `from`, in seq order, as (seq key, raw bytes): raw,
    /// because a checker must see exactly what is stored, damage included. `visit` returns
    /// false to stop early.
    fn scan_records(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> StoreResult<()>;
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

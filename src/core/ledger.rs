//! Appending to the chain: builds each record from the head, signs it, and commits it together
//! with the file state it implies. One ledger per mounted filesystem; appends are serialised by
//! the head lock so seqs never collide.

use std::fmt;
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use log::warn;

use super::chain::{key_id, sign};
use super::path::RelPath;
use super::record::{Payload, Record, Segment, Unsigned};
use super::segment::{next_file_hash, Hash, ZERO_HASH};
use super::store::{Clock, FileState, Head, Store, StoreError};
use super::sync::lock;

#[derive(Debug)]
pub enum LedgerError {
    Store(StoreError),
    /// The index is signed under another key than the one we were given.
    KeyMismatch { index: [u8; 8], ours: [u8; 8] },
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
        }
    }
}

impl std::error::Error for LedgerError {}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        LedgerError::Store(e)
    }
}

pub struct Ledger {
    store: Arc<dyn Store>,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    head: Mutex<Option<Head>>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("head", &self.head).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Attach to the chain in `store`, which must be empty or signed under `key`.
    pub fn open(store: Arc<dyn Store>, key: SigningKey, clock: Arc<dyn Clock>) -> Result<Ledger, LedgerError> {
        let ours = key_id(&key.verifying_key());
        match store.key_id()? {
            Some(index) if index != ours => return Err(LedgerError::KeyMismatch { index, ours }),
            Some(_) => {}
            None => store.set_key_id(ours)?,
        }
        let head = store.head()?;
        Ok(Ledger { store, key, clock, head: Mutex::new(head) })
    }

    pub fn key_id(&self) -> [u8; 8] {
        key_id(&self.key.verifying_key())
    }

    pub fn head(&self) -> Option<Head> {
        *lock(&self.head)
    }

    pub fn file(&self, path: &RelPath) -> Result<Option<FileState>, StoreError> {
        self.store.file(path)
    }

    pub fn files(&self) -> Result<Vec<(RelPath, FileState)>, StoreError> {
        self.store.files()
    }

    /// Sign and commit the next record. `file_update` gets the new record's seq and returns the
    /// file state to store with it (in the same atomic, synced write).
    fn append(
        &self,
        payload: Payload,
        file_update: impl FnOnce(u64) -> Option<(RelPath, FileState)>,
    ) -> Result<Record, StoreError> {
        let mut head = lock(&self.head);
        let (seq, prev_hash, floor) = match *head {
            Some(h) => (h.seq + 1, h.hash, h.time_ns),
            None => (1, ZERO_HASH, 0),
        };
        // Never go back in time: a clock set backwards must not make a record look older than
        // the one before it.
        let now = self.clock.now_ns();
        if now < floor {
            warn!("system clock is {} ms behind the newest record; using the record's time", (floor - now) / 1_000_000);
        }
        let time_ns = now.max(floor);
        let record = sign(Unsigned { seq, time_ns, payload, prev_hash }, &self.key);
        let update = file_update(seq);
        self.store.commit(&record, update.as_ref().map(|(p, s)| (p, s)))?;
        *head = Some(Head { seq, hash: record.hash, time_ns });
        Ok(record)
    }

    pub fn mount(&self, software: &str, data_dir: &[u8]) -> Result<Record, StoreError> {
        let payload = Payload::Mount { software: software.into(), key_id: self.key_id(), data_dir: data_dir.to_vec() };
        self.append(payload, |_| None)
    }

    pub fn unmount(&self) -> Result<Record, StoreError> {
        self.append(Payload::Unmount, |_| None)
    }

    /// A new file: recorded with an empty sealed state.
    pub fn create(&self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Record, StoreError> {
        let payload = Payload::Create { path: path.clone(), mode, uid, gid };
        self.append(payload, |seq| {
            Some((path.clone(), FileState { sealed_size: 0, file_hash: ZERO_HASH, created_seq: seq, last_seal_seq: 0 }))
        })
    }

    /// Seal [start, end) of `path`, whose bytes hash to `segment_hash`, chaining its file_hash.
    /// `recovered`: Some(adopted) writes a Recovered record instead of a Seal.
    pub fn seal(
        &self,
        path: &RelPath,
        start: u64,
        end: u64,
        segment_hash: Hash,
        recovered: Option<bool>,
    ) -> Result<Record, StoreError> {
        let before = self.store.file(path)?.unwrap_or_default();
        if before.sealed_size != start {
            return Err(StoreError::Backend(format!(
                "{path}: seal of [{start}, {end}) does not continue the sealed size {}",
                before.sealed_size
            )));
        }
        let file_hash = next_file_hash(&before.file_hash, &segment_hash, end);
        let segment = Segment { path: path.clone(), start, end, segment_hash, file_hash };
        let payload = match recovered {
            None => Payload::Seal(segment),
            Some(adopted) => Payload::Recovered { segment, adopted },
        };
        self.append(payload, |seq| {
            Some((path.clone(), FileState { sealed_size: end, file_hash, created_seq: before.created_seq, last_seal_seq: seq }))
        })
    }
}

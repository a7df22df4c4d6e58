//! Appending to the chain: builds each record from the head, signs it, and commits it together
//! with the file state it implies. One ledger per mounted filesystem; appends are serialised by
//! the head lock so seqs never collide.

use std::fmt;
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use log::warn;

use super::chain::{key_id, sign};
use super::path::RelPath;
use super::policy::{self, Refusal};
use super::record::{Payload, Record, Segment, Unsigned};
use super::retention::{self, RetentionPolicy, Standing};
use super::segment::{next_file_hash, Hash, ZERO_HASH};
use super::store::{Clock, FileState, Head, HoldState, IndexUpdate, Store, StoreError};
use super::sync::lock;

#[derive(Debug)]
pub enum LedgerError {
    Store(StoreError),
    /// The index is signed under another key than the one we were given.
    KeyMismatch {
        index: [u8; 8],
        ours: [u8; 8],
    },
    /// The rules refuse the change (retention, a hold, shortening a retention).
    Refused(Refusal),
    /// The index has no such file (never created through wormfs, or not adopted yet).
    UnknownFile(RelPath),
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
            LedgerError::Refused(r) => write!(f, "{r}"),
            LedgerError::UnknownFile(p) => write!(f, "{p} is not a file in the index"),
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
    policy: RetentionPolicy,
    head: Mutex<ChainTime>,
}

/// The head, and whether the system clock is currently behind it (so a ClockJump record is
/// written once per episode, not before every record).
#[derive(Debug)]
struct ChainTime {
    head: Option<Head>,
    clock_behind: bool,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("head", &self.head).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Attach to the chain in `store`, which must be empty or signed under `key`.
    pub fn open(
        store: Arc<dyn Store>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
        policy: RetentionPolicy,
    ) -> Result<Ledger, LedgerError> {
        let ours = key_id(&key.verifying_key());
        match store.key_id()? {
            Some(index) if index != ours => return Err(LedgerError::KeyMismatch { index, ours }),
            Some(_) => {}
            None => store.set_key_id(ours)?,
        }
        let head = store.head()?;
        Ok(Ledger { store, key, clock, policy, head: Mutex::new(ChainTime { head, clock_behind: false }) })
    }

    pub fn key_id(&self) -> [u8; 8] {
        key_id(&self.key.verifying_key())
    }

    pub fn head(&self) -> Option<Head> {
        lock(&self.head).head
    }

    pub fn policy(&self) -> &RetentionPolicy {
        &self.policy
    }

    /// The time retention decisions use: the system clock, but never earlier than the newest
    /// record, so setting the clock back cannot expire anything early.
    pub fn now(&self) -> u64 {
        let floor = lock(&self.head).head.map_or(0, |h| h.time_ns);
        self.clock.now_ns().max(floor)
    }

    pub fn file(&self, path: &RelPath) -> Result<Option<FileState>, StoreError> {
        self.store.file(path)
    }

    pub fn files(&self) -> Result<Vec<(RelPath, FileState)>, StoreError> {
        self.store.files()
    }

    pub fn holds(&self) -> Result<Vec<(RelPath, HoldState)>, StoreError> {
        self.store.holds()
    }

    /// The hold covering `path` (on it or on a directory above it), if any.
    pub fn hold_covering(&self, path: &RelPath) -> Result<Option<(RelPath, HoldState)>, StoreError> {
        Ok(self.store.holds()?.into_iter().find(|(prefix, _)| path.is_under(prefix)))
    }

    /// Sign and commit the next record. `build` gets the new record's seq and time and returns
    /// its payload and the index changes to store with it (in the same atomic, synced write).
    ///
    /// `build` runs under the chain lock, and every change to the index goes through here, so
    /// what it reads from the index (a file's state, the holds) cannot change before its record
    /// is committed: read-modify-write of file state, and rule checks, belong inside it.
    fn append<E: From<StoreError>>(
        &self,
        build: impl FnOnce(u64, u64) -> Result<(Payload, Vec<IndexUpdate>), E>,
    ) -> Result<Record, E> {
        let mut chain = lock(&self.head);
        let floor = chain.head.map_or(0, |h| h.time_ns);
        let now = self.clock.now_ns();
        // Never go back in time: a clock set backwards must not make a record look older than
        // the one before it, nor expire retention early. Say so in the chain, once.
        if now < floor {
            if !chain.clock_behind {
                warn!(
                    "system clock is {} ms behind the newest record; using the record's time",
                    (floor - now) / 1_000_000
                );
                let jump = Payload::ClockJump { system_ns: now, floor_ns: floor };
                self.commit_locked(&mut chain, floor, jump, Vec::new()).map_err(E::from)?;
                chain.clock_behind = true;
            }
        } else {
            chain.clock_behind = false;
        }
        let time_ns = now.max(floor);
        let seq = chain.head.map_or(1, |h| h.seq + 1);
        let (payload, updates) = build(seq, time_ns)?;
        self.commit_locked(&mut chain, time_ns, payload, updates).map_err(E::from)
    }

    fn commit_locked(
        &self,
        chain: &mut ChainTime,
        time_ns: u64,
        payload: Payload,
        updates: Vec<IndexUpdate>,
    ) -> Result<Record, StoreError> {
        let (seq, prev_hash) = chain.head.map_or((1, ZERO_HASH), |h| (h.seq + 1, h.hash));
        let record = sign(Unsigned { seq, time_ns, payload, prev_hash }, &self.key);
        self.store.commit(&record, &updates)?;
        chain.head = Some(Head { seq, hash: record.hash, time_ns });
        Ok(record)
    }

    pub fn mount(&self, software: &str, data_dir: &[u8]) -> Result<Record, StoreError> {
        let payload = Payload::Mount { software: software.into(), key_id: self.key_id(), data_dir: data_dir.to_vec() };
        self.append(|_, _| Ok::<_, StoreError>((payload, Vec::new())))
    }

    pub fn unmount(&self) -> Result<Record, StoreError> {
        self.append(|_, _| Ok::<_, StoreError>((Payload::Unmount, Vec::new())))
    }

    /// A new file: recorded with an empty sealed state, retained from its creation.
    pub fn create(&self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Record, StoreError> {
        let retention = self.policy.retention_for(path);
        self.append(|seq, time_ns| {
            let state = FileState {
                sealed_size: 0,
                file_hash: ZERO_HASH,
                created_seq: seq,
                last_seal_seq: 0,
                retain_until_ns: time_ns.saturating_add(retention),
            };
            Ok::<_, StoreError>((
                Payload::Create { path: path.clone(), mode, uid, gid },
                vec![IndexUpdate::File(path.clone(), state)],
            ))
        })
    }

    /// Seal [start, end) of `path`, whose bytes hash to `segment_hash`, chaining its file_hash.
    /// `recovered`: Some(adopted) writes a Recovered record instead of a Seal. Retention runs
    /// from this seal (never shortening what was already promised).
    pub fn seal(
        &self,
        path: &RelPath,
        start: u64,
        end: u64,
        segment_hash: Hash,
        recovered: Option<bool>,
    ) -> Result<Record, StoreError> {
        let retention = self.policy.retention_for(path);
        self.append(|seq, time_ns| {
            let before = self.store.file(path)?.unwrap_or_default();
            if before.sealed_size != start {
                return Err(StoreError::Backend(format!(
                    "{path}: seal of [{start}, {end}) does not continue the sealed size {}",
                    before.sealed_size
                )));
            }
            let file_hash = next_file_hash(&before.file_hash, &segment_hash, end);
            let retain_until_ns = before.retain_until_ns.max(time_ns.saturating_add(retention));
            let segment = Segment { path: path.clone(), start, end, segment_hash, file_hash, retain_until_ns };
            let payload = match recovered {
                None => Payload::Seal(segment),
                Some(adopted) => Payload::Recovered { segment, adopted },
            };
            let state = FileState { sealed_size: end, file_hash, last_seal_seq: seq, retain_until_ns, ..before };
            Ok((payload, vec![IndexUpdate::File(path.clone(), state)]))
        })
    }

    /// Extend `path`'s retention to `until_ns`; shortening is refused.
    pub fn extend_retention(&self, path: &RelPath, until_ns: u64, uid: u32) -> Result<Record, LedgerError> {
        self.append(|_, _| {
            let before = self.known(path)?;
            let until_ns = policy::extend_retention(before.retain_until_ns, until_ns).map_err(LedgerError::Refused)?;
            let state = FileState { retain_until_ns: until_ns, ..before };
            let payload = Payload::Retention { path: path.clone(), retain_until_ns: until_ns, uid };
            Ok((payload, vec![IndexUpdate::File(path.clone(), state)]))
        })
    }

    /// Set or clear a legal hold on a file or directory.
    pub fn hold(&self, prefix: &RelPath, set: bool, reason: &str, uid: u32) -> Result<Record, StoreError> {
        self.append(|seq, _| {
            let update = if set {
                IndexUpdate::Hold(prefix.clone(), HoldState { reason: reason.to_string(), uid, seq })
            } else {
                IndexUpdate::RemoveHold(prefix.clone())
            };
            Ok::<_, StoreError>((
                Payload::Hold { prefix: prefix.clone(), set, reason: reason.to_string(), uid },
                vec![update],
            ))
        })
    }

    /// Record that `path` was opened for reading (the audit of who read the evidence).
    pub fn access(&self, path: &RelPath, uid: u32, pid: u32, command: &str) -> Result<Record, StoreError> {
        let payload = Payload::Access { path: path.clone(), uid, pid, command: command.to_string() };
        self.append(|_, _| Ok::<_, StoreError>((payload, Vec::new())))
    }

    /// Delete an expired file: checked and recorded before the unlink happens. `open`: whether
    /// any handle has it open (the caller holds its open gate, so that cannot change).
    pub fn delete(&self, path: &RelPath, size: u64, open: bool) -> Result<Record, LedgerError> {
        self.append(|_, time_ns| {
            let state = self.known(path)?;
            policy::unlink(&self.standing(path, &state, open, time_ns)?).map_err(LedgerError::Refused)?;
            let payload = Payload::Delete {
                path: path.clone(),
                size,
                file_hash: state.file_hash,
                retain_until_ns: state.retain_until_ns,
            };
            Ok((payload, vec![IndexUpdate::RemoveFile(path.clone())]))
        })
    }

    /// Rename an expired file: checked and recorded before it happens; its state moves to `to`.
    pub fn rename(
        &self,
        from: &RelPath,
        to: &RelPath,
        open: bool,
        target_exists: bool,
        exchange: bool,
    ) -> Result<Record, LedgerError> {
        self.append(|_, time_ns| {
            let state = self.known(from)?;
            let standing = self.standing(from, &state, open, time_ns)?;
            policy::rename_file(&standing, target_exists, exchange).map_err(LedgerError::Refused)?;
            let updates = vec![IndexUpdate::RemoveFile(from.clone()), IndexUpdate::File(to.clone(), state)];
            Ok((Payload::Rename { from: from.clone(), to: to.clone() }, updates))
        })
    }

    /// Truncate: a no-op to the current size (None: nothing recorded), smaller only once expired
    /// (checked and recorded before it happens; seals restart at `new_size`), never larger.
    pub fn truncate(
        &self,
        path: &RelPath,
        old_size: u64,
        new_size: u64,
        open: bool,
    ) -> Result<Option<Record>, LedgerError> {
        if new_size == old_size {
            return Ok(None);
        }
        self.append(|_, time_ns| {
            let state = self.known(path)?;
            let standing = self.standing(path, &state, open, time_ns)?;
            policy::truncate(old_size, new_size, &standing).map_err(LedgerError::Refused)?;
            let payload = Payload::Truncate { path: path.clone(), old_size, new_size };
            let state = FileState { sealed_size: new_size, ..state };
            Ok((payload, vec![IndexUpdate::File(path.clone(), state)]))
        })
        .map(Some)
    }

    fn known(&self, path: &RelPath) -> Result<FileState, LedgerError> {
        self.store.file(path)?.ok_or_else(|| LedgerError::UnknownFile(path.clone()))
    }

    /// Where a file stands at chain time `time_ns` (only called under the chain lock).
    fn standing(&self, path: &RelPath, state: &FileState, open: bool, time_ns: u64) -> Result<Standing, StoreError> {
        let hold = self.hold_covering(path)?;
        let hold = hold.as_ref().map(|(prefix, h)| (prefix, h.reason.as_str()));
        Ok(retention::standing(state.retain_until_ns, hold, open, time_ns))
    }
}

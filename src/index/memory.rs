//! `MemoryStore`: the in-memory twin of `RocksStore`, for tests that want the core's real
//! behaviour without a disk. It keeps the rules that matter to the chain — a commit must extend
//! the head by exactly one, records come back as their raw encoded bytes — so a test that passes
//! here is not relying on leniency RocksDB would not show. Nothing survives a drop.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::core::path::RelPath;
use crate::core::record::Record;
use crate::core::segment::Hash;
use crate::core::space::Room;
use crate::core::store::{EpochState, FileState, Head, HoldState, IndexUpdate, Store, StoreError, StoreResult};

use super::check_next_seq;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Encoded bytes, not `Record`s: the tamper helpers must be able to store anything.
    records: BTreeMap<u64, Vec<u8>>,
    /// `RelPath` orders by its bytes (OsStr on Unix), the same order as RocksDB's keys.
    files: BTreeMap<RelPath, FileState>,
    /// Same order; the root (empty path) sorts first, as the empty key does in RocksDB.
    holds: BTreeMap<RelPath, HoldState>,
    head: Option<Head>,
    /// `raw_set_head_unreadable`: the head reads as corrupt, as a garbled or missing meta
    /// "head" beside records does in RocksDB.
    head_unreadable: bool,
    key_id: Option<[u8; 8]>,
    data_dir: Option<Vec<u8>>,
    epoch: Option<EpochState>,
    tree: BTreeMap<u64, Hash>,
    /// What `room` reports: tests set it to play a filling disk.
    room: Option<Room>,
    /// Commits still to fail (`fail_commits`), after `commits_before_failing` more succeed.
    failing_commits: usize,
    commits_before_failing: usize,
    /// Syncs still to fail (`fail_syncs`).
    failing_syncs: usize,
    /// Syncs done, so tests can see commits share them.
    syncs: u64,
    /// How long a sync takes (`set_sync_delay`): a slow disk, so commits pile up behind it.
    sync_delay: std::time::Duration,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Store arbitrary bytes as record `seq`, bypassing every check and leaving the head alone:
    /// how tests simulate a damaged or forged index for the chain checker.
    pub fn raw_put_record(&self, seq: u64, bytes: Vec<u8>) {
        self.lock().records.insert(seq, bytes);
    }

    /// Fail the next `n` commits with an I/O error, changing nothing: a failing state disk.
    pub fn fail_commits(&self, n: usize) {
        self.fail_commits_after(0, n);
    }

    /// Let `skip` commits succeed, then fail `n`.
    pub fn fail_commits_after(&self, skip: usize, n: usize) {
        let mut inner = self.lock();
        inner.commits_before_failing = skip;
        inner.failing_commits = n;
    }

    /// Report `room` as the free space from now on (None: no disk, the default).
    /// Fail the next `n` syncs with an I/O error (the commits before them stay visible).
    pub fn fail_syncs(&self, n: usize) {
        self.lock().failing_syncs = n;
    }

    /// Make every sync take `delay`, as on a slow disk.
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.lock().sync_delay = delay;
    }

    /// How many syncs succeeded so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    pub fn set_room(&self, room: Option<Room>) {
        self.lock().room = room;
    }

    /// Set the head to `head` without a record: what an export says the index held.
    pub fn raw_set_head(&self, head: Option<Head>) {
        let mut inner = self.lock();
        inner.head = head;
        inner.head_unreadable = false;
    }

    /// Make the head unreadable (`head` then fails as corrupt), as an export records it.
    pub fn raw_set_head_unreadable(&self) {
        self.lock().head_unreadable = true;
    }

    /// Remove record `seq` without moving the head: a gap, as a tamperer would leave it.
    pub fn raw_delete_record(&self, seq: u64) {
        self.lock().records.remove(&seq);
    }

    /// Poisoning is ignored: every mutation below finishes without a call that can panic in
    /// between, so a panic elsewhere while the lock was held cannot have left `Inner` half-updated.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn head(&self) -> StoreResult<Option<Head>> {
        let inner = self.lock();
        if inner.head_unreadable {
            return Err(StoreError::Corrupt("the head is unreadable".into()));
        }
        Ok(inner.head)
    }

    fn key_id(&self) -> StoreResult<Option<[u8; 8]>> {
        Ok(self.lock().key_id)
    }

    fn set_key_id(&self, key_id: [u8; 8]) -> StoreResult<()> {
        self.lock().key_id = Some(key_id);
        Ok(())
    }

    fn data_dir(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().data_dir.clone())
    }

    fn epoch(&self) -> StoreResult<Option<EpochState>> {
        Ok(self.lock().epoch)
    }

    fn tree_hashes(&self, indexes: &[u64]) -> StoreResult<Vec<Hash>> {
        let inner = self.lock();
        indexes
            .iter()
            .map(|i| inner.tree.get(i).copied().ok_or_else(|| StoreError::Corrupt(format!("tree hash {i} is missing"))))
            .collect()
    }

    fn put_tree_hashes(&self, first: u64, hashes: &[Hash]) -> StoreResult<()> {
        let mut inner = self.lock();
        for (i, h) in (first..).zip(hashes) {
            inner.tree.insert(i, *h);
        }
        Ok(())
    }

    fn file(&self, path: &RelPath) -> StoreResult<Option<FileState>> {
        Ok(self.lock().files.get(path).copied())
    }

    fn files(&self) -> StoreResult<Vec<(RelPath, FileState)>> {
        Ok(self.lock().files.iter().map(|(p, s)| (p.clone(), *s)).collect())
    }

    fn holds(&self) -> StoreResult<Vec<(RelPath, HoldState)>> {
        Ok(self.lock().holds.iter().map(|(p, h)| (p.clone(), h.clone())).collect())
    }

    fn room(&self) -> Option<Room> {
        self.lock().room
    }

    fn commit(&self, record: &Record, updates: &[IndexUpdate]) -> StoreResult<()> {
        // Check and apply under one lock, as RocksStore does, so racing commits cannot both
        // pass the check.
        let mut inner = self.lock();
        if inner.commits_before_failing > 0 {
            inner.commits_before_failing -= 1;
        } else if inner.failing_commits > 0 {
            inner.failing_commits -= 1;
            let source = Box::new(std::io::Error::from_raw_os_error(libc::EIO));
            return Err(StoreError::Backend { doing: "commit (a fault the test injected)".into(), source });
        }
        check_next_seq(inner.head.as_ref(), record.seq())?;
        if inner.records.contains_key(&record.seq()) {
            return Err(StoreError::Corrupt(format!("record {} is already stored past the head", record.seq())));
        }
        inner.records.insert(record.seq(), record.encode());
        inner.head = Some(Head { seq: record.seq(), hash: record.hash, time_ns: record.fields.time_ns });
        // Applied in order, like the puts and deletes of RocksStore's batch: a later update
        // of the same key wins.
        for update in updates {
            match update {
                IndexUpdate::File(path, state) => {
                    inner.files.insert(path.clone(), *state);
                }
                IndexUpdate::RemoveFile(path) => {
                    inner.files.remove(path);
                }
                IndexUpdate::Hold(path, hold) => {
                    inner.holds.insert(path.clone(), hold.clone());
                }
                IndexUpdate::RemoveHold(path) => {
                    inner.holds.remove(path);
                }
                IndexUpdate::DataDir(dir) => inner.data_dir = Some(dir.clone()),
                IndexUpdate::Epoch(epoch) => inner.epoch = Some(*epoch),
                IndexUpdate::TreeHashes { first, hashes } => {
                    for (i, h) in (*first..).zip(hashes) {
                        inner.tree.insert(i, *h);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> StoreResult<()> {
        let delay = self.lock().sync_delay;
        std::thread::sleep(delay);
        let mut inner = self.lock();
        if inner.failing_syncs > 0 {
            inner.failing_syncs -= 1;
            let source = Box::new(std::io::Error::from_raw_os_error(libc::EIO));
            return Err(StoreError::Backend { doing: "sync (a fault the test injected)".into(), source });
        }
        inner.syncs += 1;
        Ok(())
    }

    fn scan_records(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> StoreResult<()> {
        // Copy out first: `visit` may call back into the store (the lock is not re-entrant),
        // and the copy is a snapshot, like the implicit one a RocksDB iterator reads from.
        let snapshot: Vec<(u64, Vec<u8>)> =
            self.lock().records.range(from..).map(|(seq, bytes)| (*seq, bytes.clone())).collect();
        for (seq, bytes) in &snapshot {
            if !visit(*seq, bytes) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::conformance;

    #[test]
    fn memory_empty_store() {
        conformance::empty_store(&MemoryStore::new());
    }

    #[test]
    fn memory_round_trip() {
        conformance::round_trip(&MemoryStore::new());
    }

    #[test]
    fn memory_seq_gap_rejected() {
        conformance::seq_gap_rejected(&MemoryStore::new());
    }

    #[test]
    fn memory_files_in_byte_order() {
        conformance::files_in_byte_order(&MemoryStore::new());
    }

    #[test]
    fn memory_concurrent_commits_never_gap() {
        conformance::concurrent_commits_never_gap(&MemoryStore::new());
    }

    #[test]
    fn memory_scan_may_reenter_the_store() {
        conformance::scan_may_reenter_the_store(&MemoryStore::new());
    }

    #[test]
    fn memory_holds_set_list_remove() {
        conformance::holds_set_list_remove(&MemoryStore::new());
    }

    #[test]
    fn memory_remove_file() {
        conformance::remove_file(&MemoryStore::new());
    }

    #[test]
    fn memory_several_updates_in_one_commit() {
        conformance::several_updates_in_one_commit(&MemoryStore::new());
    }

    #[test]
    fn memory_retain_until_round_trip() {
        conformance::retain_until_round_trip(&MemoryStore::new());
    }

    #[test]
    fn memory_tamper_helpers_bypass_checks_and_leave_head() {
        let store = MemoryStore::new();
        for seq in 1..=3 {
            store.commit(&conformance::record(seq, crate::core::record::Payload::Unmount), &[]).unwrap();
        }
        store.raw_delete_record(2);
        store.raw_put_record(7, b"garbage".to_vec());
        let scanned = conformance::scan_all(&store, 1);
        let seqs: Vec<u64> = scanned.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, vec![1, 3, 7]);
        assert_eq!(scanned[2].1, b"garbage");
        assert_eq!(store.head().unwrap().map(|h| h.seq), Some(3));
    }
}

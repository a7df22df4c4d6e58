//! `RocksStore`: the chain's records, per-file state and legal holds in RocksDB under
//! `STATE_DIR/index`.
//!
//! Layout, one column family per kind of data so each can be scanned in its own key order:
//!
//! ```text
//! records  seq u64 BE                  → Record::encode()
//! files    RelPath bytes               → version u8 = 1 ‖ sealed_size u64 ‖ file_hash[32]
//!                                        ‖ created_seq u64 ‖ last_seal_seq u64
//!                                        ‖ retain_until_ns u64
//! holds    RelPath bytes (empty: root) → version u8 = 1 ‖ uid u32 ‖ seq u64
//!                                        ‖ reason (UTF-8, the rest of the value)
//! meta     "head"                      → seq u64 ‖ hash[32] ‖ time_ns u64
//!          "key_id"                    → 8 bytes
//!          "format"                    → u32 = 1
//!          "data_dir"                  → the data directory the newest Mount record names
//! ```
//! Integers are big-endian, so the byte order RocksDB sorts by is the numeric order.
//!
//! Every value is decoded strictly: a length or version that is not exactly what we write is
//! `StoreError::Corrupt`, because the index is evidence and must not be read charitably.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DBPinnableSlice, Options, WriteBatch, WriteOptions, DB,
};

use crate::core::path::RelPath;
use crate::core::record::Record;
use crate::core::segment::{hex, Hash};
use crate::core::space::Room;
use crate::core::store::{EpochState, FileState, Head, HoldState, IndexUpdate, Store, StoreError, StoreResult};

use super::check_next_seq;

const CF_RECORDS: &str = "records";
const CF_FILES: &str = "files";
const CF_HOLDS: &str = "holds";
const CF_META: &str = "meta";
/// The Merkle tree's stored hashes (`core::merkle`), keyed by stored-hash index (u64 BE).
/// Added after format 1 was released: created when a read-write open finds it missing.
const CF_TREE: &str = "tree";
const COLUMN_FAMILIES: [&str; 5] = [CF_RECORDS, CF_FILES, CF_HOLDS, CF_META, CF_TREE];

const META_HEAD: &[u8] = b"head";
const META_KEY_ID: &[u8] = b"key_id";
const META_FORMAT: &[u8] = b"format";
const META_DATA_DIR: &[u8] = b"data_dir";
/// The current key epoch: epoch u64 ‖ key_id[8] ‖ since_ns u64.
const META_EPOCH: &[u8] = b"epoch";
const EPOCH_LEN: usize = 8 + 8 + 8;

/// The layout above. Bumped when it changes, so an old binary refuses a newer index instead of
/// misreading it.
const INDEX_FORMAT: u32 = 1;

const FILE_STATE_VERSION: u8 = 1;
const FILE_STATE_LEN: usize = 1 + 8 + 32 + 8 + 8 + 8;
const HOLD_VERSION: u8 = 1;
/// The fixed part of a hold value; the reason follows it.
const HOLD_HEADER_LEN: usize = 1 + 4 + 8;
const HEAD_LEN: usize = 8 + 32 + 8;

pub struct RocksStore {
    db: DB,
    read_only: bool,
    /// Makes commit's read-check-write one step: two threads committing the same seq must not
    /// both pass the check (RocksDB has no compare-and-swap outside its transaction API).
    commit_lock: Mutex<()>,
}

impl fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.db.path()).field("read_only", &self.read_only).finish()
    }
}

impl RocksStore {
    /// Create a new, empty index. Refuses a directory that already holds one: a fresh chain
    /// over an old one would orphan the old records' history.
    pub fn create(index_dir: &Path) -> StoreResult<RocksStore> {
        if Self::exists(index_dir) {
            return Err(StoreError::AlreadyExists(index_dir.to_path_buf()));
        }
        require_room(index_dir.parent().unwrap_or(index_dir))?;
        let mut opts = db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Also ask RocksDB, in case another process created one since the check above.
        opts.set_error_if_exists(true);
        let db = DB::open_cf_descriptors(&opts, index_dir, cf_descriptors())
            .map_err(|e| backend(&format!("create index in {}", index_dir.display()), e))?;
        let store = RocksStore { db, read_only: false, commit_lock: Mutex::new(()) };
        // Written last: an index whose creation was interrupted has no format and `open`
        // reports it as corrupt instead of serving it as an empty chain.
        store.put_meta(META_FORMAT, &INDEX_FORMAT.to_be_bytes())?;
        Ok(store)
    }

    /// Open an existing index for reading and committing (the daemon). Takes RocksDB's lock,
    /// so a second read-write open, in this or another process, fails.
    pub fn open(index_dir: &Path) -> StoreResult<RocksStore> {
        require_existing(index_dir)?;
        require_room(index_dir)?;
        let mut opts = db_options();
        opts.create_if_missing(false);
        // An index from before the tree column family gains it here (empty; `merkle::repair_from`
        // fills it from the records).
        opts.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&opts, index_dir, cf_descriptors())
            .map_err(|e| backend(&format!("open index in {}", index_dir.display()), e))?;
        let store = RocksStore { db, read_only: false, commit_lock: Mutex::new(()) };
        store.check_format()?;
        Ok(store)
    }

    /// Open an existing index read-only (the offline tools), also while the daemon holds it
    /// read-write: a read-only open takes no lock and replays the WAL into a private memtable,
    /// so it sees every commit synced before the open — and none after it. Reopen to refresh.
    ///
    /// RocksDB does not promise this works beside a live writer (facebook/rocksdb#9967): the
    /// writer may delete a WAL or SST file (after a flush or compaction) between the reader
    /// listing and opening it, failing the open with an I/O error (facebook/rocksdb#14125).
    /// Such an error is transient — retry. Once open, reads are safe: with the default
    /// `max_open_files = -1` every SST is held open, and Unix keeps deleted open files
    /// readable. The index is small and rarely compacted, so the race is rare; a secondary
    /// instance (`open_cf_as_secondary`) would avoid it at the cost of a writable directory.
    pub fn open_read_only(index_dir: &Path) -> StoreResult<RocksStore> {
        require_existing(index_dir)?;
        // false: a live daemon always has a WAL file, and that is exactly what we must read.
        let error_if_log_file_exist = false;
        // Only the column families the index has: one made before the tree existed lacks it,
        // and a read-only open cannot create it (its tree reads then fail as corrupt).
        let present = DB::list_cf(&db_options(), index_dir).unwrap_or_default();
        let descriptors =
            cf_descriptors().into_iter().filter(|d| present.iter().any(|p| p == d.name())).collect::<Vec<_>>();
        let db = DB::open_cf_descriptors_read_only(&db_options(), index_dir, descriptors, error_if_log_file_exist)
            .map_err(|e| backend(&format!("open index in {} read-only", index_dir.display()), e))?;
        let store = RocksStore { db, read_only: true, commit_lock: Mutex::new(()) };
        store.check_format()?;
        Ok(store)
    }

    /// Whether `index_dir` holds a RocksDB database (RocksDB's own marker: the CURRENT file).
    pub fn exists(index_dir: &Path) -> bool {
        index_dir.join("CURRENT").is_file()
    }

    fn check_format(&self) -> StoreResult<()> {
        let missing = || StoreError::Corrupt("meta \"format\" is missing (was creating the index interrupted?)".into());
        let value = self.get(CF_META, META_FORMAT)?.ok_or_else(missing)?;
        let format = <[u8; 4]>::try_from(&value[..])
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::Corrupt(format!("meta \"format\" has {} bytes, expected 4", value.len())))?;
        if format != INDEX_FORMAT {
            return Err(StoreError::Corrupt(format!("index format {format} is not the supported {INDEX_FORMAT}")));
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> StoreResult<&ColumnFamily> {
        // Every store is opened with all of COLUMN_FAMILIES, so this only fails on a bug.
        self.db.cf_handle(name).ok_or_else(|| StoreError::Corrupt(format!("column family {name:?} is not open")))
    }

    fn get(&self, cf: &str, key: &[u8]) -> StoreResult<Option<DBPinnableSlice<'_>>> {
        self.db.get_pinned_cf(self.cf(cf)?, key).map_err(|e| backend(&format!("read {cf}"), e))
    }

    /// Every entry of column family `cf`, in key order, decoded strictly.
    fn scan<T>(&self, cf: &str, decode: impl Fn(&[u8], &[u8]) -> StoreResult<T>) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(cf)?);
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            out.push(decode(key, value)?);
            it.next();
        }
        it.status().map_err(|e| backend(&format!("scan {cf}"), e))?;
        Ok(out)
    }

    fn any_record(&self) -> StoreResult<bool> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_RECORDS)?);
        it.seek_to_first();
        let any = it.valid();
        it.status().map_err(|e| backend("scan records", e))?;
        Ok(any)
    }

    fn writable(&self) -> StoreResult<()> {
        if self.read_only {
            Err(StoreError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn put_meta(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        self.writable()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META)?, key, value);
        self.write_synced(batch)
    }

    fn write_synced(&self, batch: WriteBatch) -> StoreResult<()> {
        let mut opts = WriteOptions::default();
        // fsync the WAL before returning: the core acknowledges a seal to the writer only
        // after commit returns, so a power cut must not lose a commit it reported.
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| backend("write", e))
    }
}

impl Store for RocksStore {
    fn head(&self) -> StoreResult<Option<Head>> {
        match self.get(CF_META, META_HEAD)? {
            Some(v) => decode_head(&v).map(Some),
            // No head is an empty chain only if there are no records: a head removed from an
            // index that holds records would let the next commit write over record 1.
            // The head is read again after the records: the first commit may land between the
            // two reads (a batch is seen whole or not at all, so after a record, its head).
            None if self.any_record()? => match self.get(CF_META, META_HEAD)? {
                Some(v) => decode_head(&v).map(Some),
                None => Err(StoreError::Corrupt("meta \"head\" is missing but the index holds records".into())),
            },
            None => Ok(None),
        }
    }

    fn key_id(&self) -> StoreResult<Option<[u8; 8]>> {
        let Some(value) = self.get(CF_META, META_KEY_ID)? else {
            return Ok(None);
        };
        <[u8; 8]>::try_from(&value[..])
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("meta \"key_id\" has {} bytes, expected 8", value.len())))
    }

    fn set_key_id(&self, key_id: [u8; 8]) -> StoreResult<()> {
        self.put_meta(META_KEY_ID, &key_id)
    }

    fn data_dir(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.get(CF_META, META_DATA_DIR)?.map(|v| v.to_vec()))
    }

    fn epoch(&self) -> StoreResult<Option<EpochState>> {
        let Some(value) = self.get(CF_META, META_EPOCH)? else {
            return Ok(None);
        };
        if value.len() != EPOCH_LEN {
            return Err(StoreError::Corrupt(format!("meta \"epoch\" has {} bytes, expected {EPOCH_LEN}", value.len())));
        }
        let mut r = Fields(&value);
        Ok(Some(EpochState { epoch: r.u64(), key_id: r.take(), since_ns: r.u64() }))
    }

    fn tree_hashes(&self, indexes: &[u64]) -> StoreResult<Vec<Hash>> {
        let cf = self.cf(CF_TREE)?;
        let keys: Vec<[u8; 8]> = indexes.iter().map(|i| i.to_be_bytes()).collect();
        let values = self.db.batched_multi_get_cf(cf, &keys, false);
        indexes
            .iter()
            .zip(values)
            .map(|(i, value)| match value.map_err(|e| backend("read the tree", e))? {
                Some(v) => <[u8; 32]>::try_from(&v[..])
                    .map_err(|_| StoreError::Corrupt(format!("tree hash {i} has {} bytes, expected 32", v.len()))),
                None => Err(StoreError::Corrupt(format!("tree hash {i} is missing"))),
            })
            .collect()
    }

    fn put_tree_hashes(&self, first: u64, hashes: &[Hash]) -> StoreResult<()> {
        self.writable()?;
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_TREE)?;
        for (i, h) in (first..).zip(hashes) {
            batch.put_cf(cf, i.to_be_bytes(), h);
        }
        self.write_synced(batch)
    }

    fn file(&self, path: &RelPath) -> StoreResult<Option<FileState>> {
        let key = path.as_os_str().as_bytes();
        self.get(CF_FILES, key)?.map(|v| decode_file_state(key, &v)).transpose()
    }

    fn files(&self) -> StoreResult<Vec<(RelPath, FileState)>> {
        self.scan(CF_FILES, |key, value| Ok((decode_path(key)?, decode_file_state(key, value)?)))
    }

    fn holds(&self) -> StoreResult<Vec<(RelPath, HoldState)>> {
        self.scan(CF_HOLDS, |key, value| Ok((decode_hold_path(key)?, decode_hold(key, value)?)))
    }

    /// statvfs of the index directory: what this process may still write there (root may use
    /// the blocks reserved for it), and `RESERVE`.
    fn room(&self) -> Option<Room> {
        room_at(self.db.path())
    }

    fn commit(&self, record: &Record, updates: &[IndexUpdate]) -> StoreResult<()> {
        self.writable()?;
        // The guard protects no data, so a poisoned lock is as good as a clean one.
        let _guard = self.commit_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        check_next_seq(self.head()?.as_ref(), record.seq())?;
        // Never write over a stored record, whatever the head says.
        if self.get(CF_RECORDS, &record.seq().to_be_bytes())?.is_some() {
            return Err(StoreError::Corrupt(format!("record {} is already stored past the head", record.seq())));
        }

        let head = Head { seq: record.seq(), hash: record.hash, time_ns: record.fields.time_ns };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_RECORDS)?, record.seq().to_be_bytes(), record.encode());
        batch.put_cf(self.cf(CF_META)?, META_HEAD, encode_head(&head));
        // In order: RocksDB applies a batch's operations in sequence, so a later update of the
        // same key wins, as in MemoryStore.
        for update in updates {
            match update {
                IndexUpdate::File(path, state) => {
                    batch.put_cf(self.cf(CF_FILES)?, path.as_os_str().as_bytes(), encode_file_state(state))
                }
                IndexUpdate::RemoveFile(path) => batch.delete_cf(self.cf(CF_FILES)?, path.as_os_str().as_bytes()),
                IndexUpdate::Hold(path, hold) => {
                    batch.put_cf(self.cf(CF_HOLDS)?, path.as_os_str().as_bytes(), encode_hold(hold))
                }
                IndexUpdate::RemoveHold(path) => batch.delete_cf(self.cf(CF_HOLDS)?, path.as_os_str().as_bytes()),
                IndexUpdate::DataDir(dir) => batch.put_cf(self.cf(CF_META)?, META_DATA_DIR, dir),
                IndexUpdate::Epoch(epoch) => batch.put_cf(self.cf(CF_META)?, META_EPOCH, encode_epoch(epoch)),
                IndexUpdate::TreeHashes { first, hashes } => {
                    let cf = self.cf(CF_TREE)?;
                    for (i, h) in (*first..).zip(hashes) {
                        batch.put_cf(cf, i.to_be_bytes(), h);
                    }
                }
            }
        }
        // Not synced here: `sync` makes this and every other commit so far durable in one
        // fsync of the WAL. Written to the WAL file before returning, so a killed daemon
        // loses nothing; only a power cut before the sync could.
        self.db.write_opt(batch, &WriteOptions::default()).map_err(|e| backend("write", e))
    }

    fn sync(&self) -> StoreResult<()> {
        self.writable()?;
        self.db.flush_wal(true).map_err(|e| backend("sync the write-ahead log", e))
    }

    fn scan_records(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> StoreResult<()> {
        // A scan reads the records once, in order (a mount's replay, verify): read ahead, and
        // keep them out of the block cache the daemon's point reads use.
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        opts.set_readahead_size(2 << 20);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_RECORDS)?, opts);
        it.seek(from.to_be_bytes());
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let seq = <[u8; 8]>::try_from(key)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt(format!("records key {} is not 8 bytes", hex(key))))?;
            if !visit(seq, value) {
                break;
            }
            it.next();
        }
        it.status().map_err(|e| backend("scan records", e))
    }
}

/// Memtables: 4 MiB per column family, 16 MiB in all; one flush writes at most that much.
const WRITE_BUFFER: usize = 4 << 20;
const ALL_WRITE_BUFFERS: usize = 16 << 20;
/// The most one compaction reads (and so about the most it writes before it deletes its inputs).
const MAX_COMPACTION: u64 = 16 << 20;
/// Free space RocksDB must have for a flush of every memtable, a compaction, its preallocated
/// WAL and its info log, with room to spare: below it wormfs commits nothing (`core::space`),
/// because RocksDB meeting a full disk mid-write can abort the process.
pub const RESERVE: u64 = 48 << 20;

fn db_options() -> Options {
    let mut opts = Options::default();
    // Small memtables and compactions keep what RocksDB may write by itself, at any moment,
    // well inside RESERVE (the records are small: a 4 MiB memtable holds ~15,000 seals).
    opts.set_write_buffer_size(WRITE_BUFFER);
    opts.set_db_write_buffer_size(ALL_WRITE_BUFFERS);
    opts.set_max_compaction_bytes(MAX_COMPACTION);
    opts.set_target_file_size_base(MAX_COMPACTION / 2);
    opts.set_max_log_file_size(1 << 20);
    opts.set_keep_log_file_num(4);
    // Records are mostly hashes and signatures, which do not compress; storing uncompressed
    // also keeps the index readable by a RocksDB built without any compression library.
    opts.set_compression_type(DBCompressionType::None);
    opts
}

fn cf_descriptors() -> Vec<ColumnFamilyDescriptor> {
    COLUMN_FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, db_options())).collect()
}

/// RocksDB's error is kept as the source (its message names the file or lock at fault); `doing`
/// says which of our operations hit it. RocksDB reports a held lock only as an I/O error whose
/// message names the LOCK file, so that is how a second writer is told apart.
fn backend(doing: &str, e: rocksdb::Error) -> StoreError {
    if e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("lock") {
        StoreError::Locked { source: Box::new(e) }
    } else {
        StoreError::Backend { doing: doing.to_string(), source: Box::new(e) }
    }
}

/// Free space where `dir` is, as this process may use it (root may use the blocks reserved for
/// it), against `RESERVE`.
fn room_at(dir: &Path) -> Option<Room> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    let blocks = if nix::unistd::geteuid().is_root() { s.blocks_free() } else { s.blocks_available() };
    Some(Room { free: blocks.saturating_mul(s.fragment_size()), reserve: RESERVE })
}

/// Opening an index for writing writes too (a new WAL, MANIFEST and OPTIONS file), and RocksDB
/// meeting a full disk there aborts the process: refuse first, with the figures.
fn require_room(dir: &Path) -> StoreResult<()> {
    crate::core::space::commit_room(room_at(dir)).map_err(StoreError::NoSpace)
}

fn require_existing(index_dir: &Path) -> StoreResult<()> {
    if RocksStore::exists(index_dir) {
        Ok(())
    } else {
        Err(StoreError::Missing(index_dir.to_path_buf()))
    }
}

fn encode_epoch(epoch: &EpochState) -> [u8; EPOCH_LEN] {
    let mut out = [0u8; EPOCH_LEN];
    out[..8].copy_from_slice(&epoch.epoch.to_be_bytes());
    out[8..16].copy_from_slice(&epoch.key_id);
    out[16..].copy_from_slice(&epoch.since_ns.to_be_bytes());
    out
}

fn encode_head(head: &Head) -> [u8; HEAD_LEN] {
    let mut out = [0u8; HEAD_LEN];
    out[..8].copy_from_slice(&head.seq.to_be_bytes());
    out[8..40].copy_from_slice(&head.hash);
    out[40..].copy_from_slice(&head.time_ns.to_be_bytes());
    out
}

fn decode_head(value: &[u8]) -> StoreResult<Head> {
    let bytes: &[u8; HEAD_LEN] = value
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("meta \"head\" has {} bytes, expected {HEAD_LEN}", value.len())))?;
    let mut fields = Fields(bytes);
    Ok(Head { seq: fields.u64(), hash: fields.hash(), time_ns: fields.u64() })
}

fn encode_file_state(state: &FileState) -> [u8; FILE_STATE_LEN] {
    let mut out = [0u8; FILE_STATE_LEN];
    out[0] = FILE_STATE_VERSION;
    out[1..9].copy_from_slice(&state.sealed_size.to_be_bytes());
    out[9..41].copy_from_slice(&state.file_hash);
    out[41..49].copy_from_slice(&state.created_seq.to_be_bytes());
    out[49..57].copy_from_slice(&state.last_seal_seq.to_be_bytes());
    out[57..].copy_from_slice(&state.retain_until_ns.to_be_bytes());
    out
}

fn decode_file_state(key: &[u8], value: &[u8]) -> StoreResult<FileState> {
    let corrupt = |why: String| StoreError::Corrupt(format!("file state of {}: {why}", show_path_key(key)));
    let bytes: &[u8; FILE_STATE_LEN] =
        value.try_into().map_err(|_| corrupt(format!("{} bytes, expected {FILE_STATE_LEN}", value.len())))?;
    if bytes[0] != FILE_STATE_VERSION {
        return Err(corrupt(format!("unknown version {}", bytes[0])));
    }
    let mut fields = Fields(&bytes[1..]);
    Ok(FileState {
        sealed_size: fields.u64(),
        file_hash: fields.hash(),
        created_seq: fields.u64(),
        last_seal_seq: fields.u64(),
        retain_until_ns: fields.u64(),
    })
}

fn encode_hold(hold: &HoldState) -> Vec<u8> {
    let mut out = Vec::with_capacity(HOLD_HEADER_LEN + hold.reason.len());
    out.push(HOLD_VERSION);
    out.extend_from_slice(&hold.uid.to_be_bytes());
    out.extend_from_slice(&hold.seq.to_be_bytes());
    out.extend_from_slice(hold.reason.as_bytes());
    out
}

fn decode_hold(key: &[u8], value: &[u8]) -> StoreResult<HoldState> {
    let corrupt = |why: String| StoreError::Corrupt(format!("hold on {}: {why}", show_hold_key(key)));
    if value.len() < HOLD_HEADER_LEN {
        return Err(corrupt(format!("{} bytes, expected at least {HOLD_HEADER_LEN}", value.len())));
    }
    if value[0] != HOLD_VERSION {
        return Err(corrupt(format!("unknown version {}", value[0])));
    }
    let (header, reason) = value.split_at(HOLD_HEADER_LEN);
    let uid = u32::from_be_bytes(header[1..5].try_into().expect("4 bytes"));
    let seq = u64::from_be_bytes(header[5..13].try_into().expect("8 bytes"));
    let reason = std::str::from_utf8(reason).map_err(|_| corrupt("the reason is not UTF-8".into()))?;
    Ok(HoldState { reason: reason.to_owned(), uid, seq })
}

/// A holds-CF key: the empty key is the root (a hold on the whole mount), anything else must
/// be a valid path.
fn decode_hold_path(key: &[u8]) -> StoreResult<RelPath> {
    if key.is_empty() {
        return Ok(RelPath::root());
    }
    match RelPath::parse(std::ffi::OsStr::from_bytes(key)) {
        Ok(path) if !path.is_root() => Ok(path),
        _ => Err(StoreError::Corrupt(format!("holds key {} is not a valid path", show_path_key(key)))),
    }
}

fn show_hold_key(key: &[u8]) -> String {
    if key.is_empty() {
        "the root".into()
    } else {
        show_path_key(key)
    }
}

fn decode_path(key: &[u8]) -> StoreResult<RelPath> {
    match RelPath::parse(std::ffi::OsStr::from_bytes(key)) {
        Ok(path) if !path.is_root() => Ok(path),
        _ => Err(StoreError::Corrupt(format!("files key {} is not a valid path", show_path_key(key)))),
    }
}

/// A files- or holds-CF key for an error message: the path if it is text, else hex so nothing is hidden.
fn show_path_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => format!("\"/{s}\""),
        _ => format!("(hex) {}", hex(key)),
    }
}

/// Reads consecutive fixed-size fields from a slice whose length the caller has already
/// checked against the layout, so the reads below cannot run short.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let (head, rest) = self.0.split_at(N.min(self.0.len()));
        out[..head.len()].copy_from_slice(head);
        self.0 = rest;
        out
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }

    fn hash(&mut self) -> Hash {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::Payload;
    use crate::index::conformance::{self, path, record};
    use std::sync::Arc;

    /// A fresh index in a temporary STATE_DIR; keep the TempDir alive as long as the store.
    fn fresh() -> (tempfile::TempDir, RocksStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::create(&dir.path().join("index")).unwrap();
        (dir, store)
    }

    #[test]
    fn rocks_empty_store() {
        conformance::empty_store(&fresh().1);
    }

    #[test]
    fn rocks_round_trip() {
        conformance::round_trip(&fresh().1);
    }

    #[test]
    fn rocks_seq_gap_rejected() {
        conformance::seq_gap_rejected(&fresh().1);
    }

    #[test]
    fn rocks_files_in_byte_order() {
        conformance::files_in_byte_order(&fresh().1);
    }

    #[test]
    fn rocks_concurrent_commits_never_gap() {
        conformance::concurrent_commits_never_gap(&fresh().1);
    }

    #[test]
    fn rocks_scan_may_reenter_the_store() {
        conformance::scan_may_reenter_the_store(&fresh().1);
    }

    #[test]
    fn rocks_holds_set_list_remove() {
        conformance::holds_set_list_remove(&fresh().1);
    }

    #[test]
    fn rocks_remove_file() {
        conformance::remove_file(&fresh().1);
    }

    #[test]
    fn rocks_several_updates_in_one_commit() {
        conformance::several_updates_in_one_commit(&fresh().1);
    }

    #[test]
    fn rocks_retain_until_round_trip() {
        conformance::retain_until_round_trip(&fresh().1);
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RocksStore>();
    }

    #[test]
    fn reopen_keeps_everything() {
        let (dir, store) = fresh();
        conformance::round_trip(&store);
        let holds = [
            IndexUpdate::Hold(RelPath::root(), conformance::hold("all", 4)),
            IndexUpdate::Hold(path("app"), conformance::hold("app", 4)),
        ];
        store.commit(&record(4, Payload::Unmount), &holds).unwrap();
        let (head, files, records) = (store.head().unwrap(), store.files().unwrap(), conformance::scan_all(&store, 0));
        let holds = store.holds().unwrap();
        assert_eq!(holds.len(), 2);
        drop(store);
        let index = dir.path().join("index");
        for store in [RocksStore::open(&index).unwrap(), RocksStore::open_read_only(&index).unwrap()] {
            assert_eq!(store.head().unwrap(), head);
            assert_eq!(store.key_id().unwrap(), Some([4; 8]));
            assert_eq!(store.data_dir().unwrap(), Some(b"/d".to_vec()));
            assert_eq!(store.files().unwrap(), files);
            assert_eq!(store.holds().unwrap(), holds);
            assert_eq!(conformance::scan_all(&store, 0), records);
        }
    }

    #[test]
    fn create_refuses_an_existing_index() {
        let (dir, store) = fresh();
        let index = dir.path().join("index");
        assert!(RocksStore::exists(&index));
        assert!(matches!(RocksStore::create(&index), Err(StoreError::AlreadyExists(p)) if p == index));
        drop(store);
        assert!(matches!(RocksStore::create(&index), Err(StoreError::AlreadyExists(_))), "also when closed");
    }

    #[test]
    fn open_refuses_a_missing_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index");
        assert!(!RocksStore::exists(&index));
        assert!(matches!(RocksStore::open(&index), Err(StoreError::Missing(p)) if p == index));
        assert!(matches!(RocksStore::open_read_only(&index), Err(StoreError::Missing(_))));
        assert!(!index.exists(), "a failed open must not create anything");
    }

    #[test]
    fn second_read_write_open_is_refused() {
        let (dir, _store) = fresh();
        match RocksStore::open(&dir.path().join("index")) {
            Err(e @ StoreError::Locked { .. }) => {
                let source = std::error::Error::source(&e).expect("RocksDB's error is the source").to_string();
                assert!(source.contains("LOCK"), "the source names RocksDB's lock file: {source}");
            }
            other => panic!("expected a lock error, got {other:?}"),
        }
    }

    #[test]
    fn read_only_open_sees_commits_of_a_live_writer_and_refuses_writes() {
        let (dir, writer) = fresh();
        conformance::round_trip(&writer);
        // The writer stays open: its commits are only in the synced WAL and memtable, not in
        // any SST file, which is the state a mounted daemon leaves the index in.
        let reader = RocksStore::open_read_only(&dir.path().join("index")).unwrap();
        assert_eq!(reader.head().unwrap(), writer.head().unwrap());
        assert_eq!(reader.key_id().unwrap(), Some([4; 8]));
        assert_eq!(reader.files().unwrap(), writer.files().unwrap());
        assert_eq!(conformance::scan_all(&reader, 0), conformance::scan_all(&writer, 0));

        assert!(matches!(reader.commit(&record(4, Payload::Unmount), &[]), Err(StoreError::ReadOnly)));
        let updates = [
            IndexUpdate::File(path("x"), FileState::default()),
            IndexUpdate::Hold(RelPath::root(), conformance::hold("no", 4)),
        ];
        assert!(matches!(reader.commit(&record(4, Payload::Unmount), &updates), Err(StoreError::ReadOnly)));
        assert!(reader.holds().unwrap().is_empty());
        assert!(matches!(reader.set_key_id([9; 8]), Err(StoreError::ReadOnly)));

        // A read-only handle is a picture taken at open: later commits need a reopen.
        writer.commit(&record(4, Payload::Unmount), &[]).unwrap();
        assert_eq!(reader.head().unwrap().map(|h| h.seq), Some(3));
        let fresh_reader = RocksStore::open_read_only(&dir.path().join("index")).unwrap();
        assert_eq!(fresh_reader.head().unwrap().map(|h| h.seq), Some(4));
    }

    #[test]
    fn corrupt_file_state_is_reported_with_its_key() {
        let (_dir, store) = fresh();
        let files = store.cf(CF_FILES).unwrap();
        store.db.put_cf(files, b"app/bad.log", b"short").unwrap();
        let err = store.file(&path("app/bad.log")).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("/app/bad.log")), "{err}");
        assert!(matches!(store.files(), Err(StoreError::Corrupt(_))));

        let mut wrong_version = encode_file_state(&FileState::default());
        wrong_version[0] = 2;
        store.db.put_cf(files, b"app/bad.log", wrong_version).unwrap();
        assert!(matches!(store.file(&path("app/bad.log")), Err(StoreError::Corrupt(m)) if m.contains("version 2")));
    }

    #[test]
    fn corrupt_hold_is_reported_with_its_key() {
        let (_dir, store) = fresh();
        let holds = store.cf(CF_HOLDS).unwrap();
        let good = encode_hold(&conformance::hold("x", 1));
        let check = |key: &[u8], value: &[u8], want: &[&str]| {
            store.db.put_cf(holds, key, value).unwrap();
            match store.holds() {
                Err(StoreError::Corrupt(m)) => assert!(want.iter().all(|w| m.contains(w)), "{m}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
            store.db.delete_cf(holds, key).unwrap();
        };
        check(b"app/held", &good[..HOLD_HEADER_LEN - 1], &["/app/held", "12 bytes"]);
        check(b"", b"", &["the root", "0 bytes"]);
        let mut wrong_version = good.clone();
        wrong_version[0] = 2;
        check(b"app/held", &wrong_version, &["/app/held", "version 2"]);
        check(b"", &[&good[..HOLD_HEADER_LEN], &[0xff, 0xfe]].concat(), &["the root", "UTF-8"]);
        check(b"../etc", &good, &["../etc", "not a valid path"]);
        check(b"a//b", &good, &["a//b"]);
        assert!(store.holds().unwrap().is_empty());
    }

    #[test]
    fn hold_encoding_is_fixed_and_strict() {
        let hold = HoldState { reason: "audit €".into(), uid: 0x0102_0304, seq: 0x0a0b };
        let bytes = encode_hold(&hold);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..5], &0x0102_0304u32.to_be_bytes());
        assert_eq!(&bytes[5..13], &0x0a0bu64.to_be_bytes());
        assert_eq!(&bytes[13..], "audit €".as_bytes());
        assert_eq!(decode_hold(b"k", &bytes).unwrap(), hold);
        let bare = HoldState { reason: String::new(), uid: 0, seq: 0 };
        assert_eq!(encode_hold(&bare).len(), HOLD_HEADER_LEN);
        assert_eq!(decode_hold(b"", &encode_hold(&bare)).unwrap(), bare);
        assert!(decode_hold(b"k", &bytes[..12]).is_err());
    }

    #[test]
    fn root_hold_is_the_empty_key() {
        let (_dir, store) = fresh();
        store
            .commit(&record(1, Payload::Unmount), &[IndexUpdate::Hold(RelPath::root(), conformance::hold("all", 1))])
            .unwrap();
        let raw = store.db.get_cf(store.cf(CF_HOLDS).unwrap(), b"").unwrap();
        assert_eq!(raw, Some(encode_hold(&conformance::hold("all", 1))));
    }

    #[test]
    fn invalid_files_key_is_corrupt() {
        let (_dir, store) = fresh();
        let good = encode_file_state(&FileState::default());
        store.db.put_cf(store.cf(CF_FILES).unwrap(), b"../etc/passwd", good).unwrap();
        assert!(matches!(store.files(), Err(StoreError::Corrupt(m)) if m.contains("../etc/passwd")));
    }

    #[test]
    fn corrupt_meta_and_record_keys_are_reported() {
        let (_dir, store) = fresh();
        store.db.put_cf(store.cf(CF_META).unwrap(), META_HEAD, b"nope").unwrap();
        assert!(matches!(store.head(), Err(StoreError::Corrupt(_))));
        // A corrupt head also blocks commits rather than being overwritten.
        assert!(matches!(store.commit(&record(1, Payload::Unmount), &[]), Err(StoreError::Corrupt(_))));
        store.db.put_cf(store.cf(CF_META).unwrap(), META_KEY_ID, b"1234567").unwrap();
        assert!(matches!(store.key_id(), Err(StoreError::Corrupt(_))));
        store.db.put_cf(store.cf(CF_RECORDS).unwrap(), b"abc", b"x").unwrap();
        assert!(matches!(store.scan_records(0, &mut |_, _| true), Err(StoreError::Corrupt(m)) if m.contains("616263")));
    }

    #[test]
    fn a_removed_head_never_lets_a_commit_write_over_the_chain() {
        let (_dir, store) = fresh();
        conformance::round_trip(&store);
        store.db.delete_cf(store.cf(CF_META).unwrap(), META_HEAD).unwrap();
        assert!(matches!(store.head(), Err(StoreError::Corrupt(m)) if m.contains("missing")));
        let before = conformance::scan_all(&store, 0);
        assert!(matches!(store.commit(&record(1, Payload::Unmount), &[]), Err(StoreError::Corrupt(_))));
        assert_eq!(conformance::scan_all(&store, 0), before, "record 1 is untouched");
        // A head rewound below stored records: the record past it is not overwritten either.
        let head = Head { seq: 1, hash: [0; 32], time_ns: 0 };
        store.db.put_cf(store.cf(CF_META).unwrap(), META_HEAD, encode_head(&head)).unwrap();
        assert!(
            matches!(store.commit(&record(2, Payload::Unmount), &[]), Err(StoreError::Corrupt(m)) if m.contains("already stored"))
        );
        assert_eq!(conformance::scan_all(&store, 0), before);
    }

    #[test]
    fn a_head_at_the_largest_seq_refuses_records_instead_of_overflowing() {
        use crate::core::ledger::{Ledger, LedgerError};
        use crate::core::retention::RetentionPolicy;
        use crate::core::store::SystemClock;
        let (_dir, store) = fresh();
        let head = Head { seq: u64::MAX, hash: [1; 32], time_ns: 5 };
        store.db.put_cf(store.cf(CF_META).unwrap(), META_HEAD, encode_head(&head)).unwrap();
        assert!(matches!(
            store.commit(&record(1, Payload::Unmount), &[]),
            Err(StoreError::SeqExhausted { head: u64::MAX })
        ));
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let ledger = Ledger::open(Arc::new(store), key, Arc::new(SystemClock), RetentionPolicy::uniform(0)).unwrap();
        match ledger.mount("test", b"/d", Vec::new()) {
            Err(LedgerError::Store(StoreError::SeqExhausted { head: u64::MAX })) => {}
            other => panic!("expected SeqExhausted, got {other:?}"),
        }
        assert_eq!(ledger.head(), Some(head), "nothing was written");
    }

    #[test]
    fn open_refuses_an_unknown_or_missing_format() {
        let (dir, store) = fresh();
        let index = dir.path().join("index");
        store.db.put_cf(store.cf(CF_META).unwrap(), META_FORMAT, 2u32.to_be_bytes()).unwrap();
        drop(store);
        assert!(matches!(RocksStore::open(&index), Err(StoreError::Corrupt(_))));
        assert!(matches!(RocksStore::open_read_only(&index), Err(StoreError::Corrupt(_))));

        // Simulate a creation interrupted before the format was written.
        let mut opts = db_options();
        opts.create_if_missing(false);
        let db = DB::open_cf_descriptors(&opts, &index, cf_descriptors()).unwrap();
        db.delete_cf(db.cf_handle(CF_META).unwrap(), META_FORMAT).unwrap();
        drop(db);
        assert!(matches!(RocksStore::open(&index), Err(StoreError::Corrupt(m)) if m.contains("missing")));
    }

    #[test]
    fn file_state_encoding_is_fixed_and_strict() {
        let state = FileState {
            sealed_size: 0x0102,
            file_hash: [7; 32],
            created_seq: 3,
            last_seal_seq: 0x0a0b,
            retain_until_ns: 0x1122_3344_5566_7788,
        };
        let bytes = encode_file_state(&state);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..9], &0x0102u64.to_be_bytes());
        assert_eq!(&bytes[9..41], &[7; 32]);
        assert_eq!(&bytes[41..49], &3u64.to_be_bytes());
        assert_eq!(&bytes[49..57], &0x0a0bu64.to_be_bytes());
        assert_eq!(&bytes[57..65], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(bytes.len(), 65);
        assert_eq!(decode_file_state(b"k", &bytes).unwrap(), state);
        assert!(decode_file_state(b"k", &bytes[..64]).is_err());
        assert!(decode_file_state(b"k", &bytes[..57]).is_err(), "the old 57-byte layout is refused");
        assert!(decode_file_state(b"k", &[&bytes[..], &[0]].concat()).is_err());

        let head = Head { seq: 9, hash: [8; 32], time_ns: 77 };
        assert_eq!(decode_head(&encode_head(&head)).unwrap(), head);
    }
}

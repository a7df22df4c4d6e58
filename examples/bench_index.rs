//! Builds a large chain for `scripts/bench`: FILES files in DATA_DIR, each with SEALS seals of
//! SEGMENT bytes, signed and indexed exactly as a mount would (Mount, Create, Seal…, Unmount),
//! but with one store sync at the end instead of one per record, so a million records take
//! about a minute instead of hours. The result is an ordinary DATA_DIR and STATE_DIR that
//! `wormfs mount` and `wormfs verify` accept.
//!
//!     wormfs keygen --state STATE
//!     cargo run --release --example bench_index -- DATA STATE DIR FILES SEALS [SEGMENT]
//!
//! The files are DIR/f000000, DIR/f000001… inside DATA (DIR "." for DATA itself).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wormfs::core::ledger::{Ledger, SealKind};
use wormfs::core::path::RelPath;
use wormfs::core::record::Record;
use wormfs::core::retention::RetentionPolicy;
use wormfs::core::segment::Hash;
use wormfs::core::space::Room;
use wormfs::core::store::{EpochState, FileState, Head, HoldState, IndexUpdate, Store, StoreResult, SystemClock};
use wormfs::index::RocksStore;
use wormfs::keys;
use wormfs::state_dir::StateDir;

/// The real store with its per-record sync left out (the generator syncs once, at the end).
struct SyncAtEnd(RocksStore);

impl Store for SyncAtEnd {
    fn head(&self) -> StoreResult<Option<Head>> {
        self.0.head()
    }
    fn key_id(&self) -> StoreResult<Option<[u8; 8]>> {
        self.0.key_id()
    }
    fn set_key_id(&self, key_id: [u8; 8]) -> StoreResult<()> {
        self.0.set_key_id(key_id)
    }
    fn data_dir(&self) -> StoreResult<Option<Vec<u8>>> {
        self.0.data_dir()
    }
    fn epoch(&self) -> StoreResult<Option<EpochState>> {
        self.0.epoch()
    }
    fn tree_hashes(&self, indexes: &[u64]) -> StoreResult<Vec<Hash>> {
        self.0.tree_hashes(indexes)
    }
    fn put_tree_hashes(&self, first: u64, hashes: &[Hash]) -> StoreResult<()> {
        self.0.put_tree_hashes(first, hashes)
    }
    fn file(&self, path: &RelPath) -> StoreResult<Option<FileState>> {
        self.0.file(path)
    }
    fn files(&self) -> StoreResult<Vec<(RelPath, FileState)>> {
        self.0.files()
    }
    fn holds(&self) -> StoreResult<Vec<(RelPath, HoldState)>> {
        self.0.holds()
    }
    fn room(&self) -> Option<Room> {
        self.0.room()
    }
    fn commit(&self, record: &Record, updates: &[IndexUpdate]) -> StoreResult<()> {
        self.0.commit(record, updates)
    }
    fn sync(&self) -> StoreResult<()> {
        Ok(())
    }
    fn scan_records(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> StoreResult<()> {
        self.0.scan_records(from, visit)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: bench_index DATA STATE DIR FILES SEALS [SEGMENT_BYTES]");
        std::process::exit(2);
    }
    let data = PathBuf::from(&args[0]);
    let state = StateDir::new(PathBuf::from(&args[1]));
    let dir = &args[2];
    let files: u64 = args[3].parse().expect("FILES");
    let seals: u64 = args[4].parse().expect("SEALS");
    let segment: usize = args.get(5).map_or(64, |s| s.parse().expect("SEGMENT_BYTES"));
    if let Err(e) = run(&data, &state, dir, files, seals, segment) {
        eprintln!("bench_index: {e}");
        std::process::exit(1);
    }
}

fn run(
    data: &Path,
    state: &StateDir,
    dir: &str,
    files: u64,
    seals: u64,
    segment: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let parent = match dir {
        "." | "" => RelPath::root(),
        dir => RelPath::parse(OsStr::new(dir)).map_err(|e| format!("{dir}: {e:?}"))?,
    };
    std::fs::create_dir_all(data.join(dir))?;
    let store = Arc::new(SyncAtEnd(RocksStore::create(&state.index())?));
    let key = keys::load_signing(state, None)?;
    let ledger = Ledger::open(store.clone(), key, Arc::new(SystemClock), RetentionPolicy::uniform(0))?;
    let data_dir = std::fs::canonicalize(data)?;
    ledger.mount("bench_index", data_dir.as_os_str().as_encoded_bytes(), Vec::new())?;
    let line = {
        let mut l = vec![b'x'; segment.max(1) - 1];
        l.push(b'\n');
        l
    };
    let hash: Hash = Sha256::digest(&line).into();
    for f in 0..files {
        let name = format!("f{f:06}");
        let path = parent.join(OsStr::new(&name)).map_err(|e| format!("{name}: {e:?}"))?;
        let mut file = std::fs::OpenOptions::new().create_new(true).append(true).open(data.join(dir).join(&name))?;
        ledger.create(&path, libc::S_IFREG | 0o644, 0, 0)?;
        for s in 0..seals {
            file.write_all(&line)?;
            let start = s * line.len() as u64;
            ledger.seal(&path, start, start + line.len() as u64, hash, SealKind::Written)?;
        }
        file.sync_data()?;
    }
    ledger.unmount()?;
    store.0.sync()?;
    let head = store.head()?.map_or(0, |h| h.seq);
    println!("{head} records, {files} files of {} bytes", seals * line.len() as u64);
    Ok(())
}

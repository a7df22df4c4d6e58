//! The core-tier harness shared by `core_seals.rs` and `model.rs`: a [`WormFs`] driven directly
//! (no FUSE, no daemon) over a temp DATA_DIR and the in-memory index, with a fake clock, checked
//! by the same checker `wormfs verify` uses.

#![allow(dead_code)] // each test crate uses a different subset of the helpers

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ed25519_dalek::SigningKey;

use wormfs::core::backing::{BackingOp, Faults};
use wormfs::core::ledger::Ledger;
use wormfs::core::record::Record;
use wormfs::core::retention::RetentionPolicy;
use wormfs::core::store::{Clock, Store};
use wormfs::core::{Caller, WormFs};
use wormfs::index::MemoryStore;
use wormfs::verify;

/// (start, end, segment hash) of every Seal and Recovered record, in chain order.
pub fn seals(records: &[Record]) -> Vec<(u64, u64, [u8; 32])> {
    records.iter().filter_map(|r| r.fields.payload.segment().map(|s| (s.start, s.end, s.segment_hash))).collect()
}

/// SHA-256 of `bytes`.
pub fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The inode of DATA_DIR's root.
pub const ROOT: u64 = 1;

/// Root, as the caller of every operation: these tests are about the write-once rules, not
/// about permissions.
pub fn caller() -> Caller {
    Caller { uid: 0, gid: 0, tid: 1 }
}

/// A clock under the test's control: it reads `now` and then moves it on by `step`.
pub struct FakeClock {
    now: AtomicU64,
    step: u64,
}

impl FakeClock {
    /// Stands still at `start_ns` until the test moves it (forwards or back) with `set`.
    pub fn manual(start_ns: u64) -> FakeClock {
        FakeClock { now: AtomicU64::new(start_ns), step: 0 }
    }

    /// Starts at `start_ns` and moves on by 1 ns at every read, so no two records share a time.
    pub fn ticking(start_ns: u64) -> FakeClock {
        FakeClock { now: AtomicU64::new(start_ns), step: 1 }
    }

    pub fn set(&self, ns: u64) {
        self.now.store(ns, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now.fetch_add(self.step, Ordering::SeqCst)
    }
}

/// I/O errors to inject under the core: each `fail` makes the next `times` operations of one
/// kind fail with `errno`, then they work again. Every mount of a `CoreMount` uses its plan.
#[derive(Debug, Default)]
pub struct FaultPlan {
    pending: std::sync::Mutex<Vec<(BackingOp, nix::errno::Errno, usize)>>,
    /// Operations failed so far, by kind.
    pub injected: std::sync::Mutex<Vec<BackingOp>>,
}

impl FaultPlan {
    pub fn fail(&self, op: BackingOp, errno: nix::errno::Errno, times: usize) {
        self.pending.lock().unwrap().push((op, errno, times));
    }

    /// Forget the faults not injected yet.
    pub fn clear(&self) {
        self.pending.lock().unwrap().clear();
    }
}

impl Faults for FaultPlan {
    fn before(&self, op: BackingOp, _path: &wormfs::core::RelPath) -> nix::Result<()> {
        let mut pending = self.pending.lock().unwrap();
        let Some(at) = pending.iter().position(|(o, _, n)| *o == op && *n > 0) else { return Ok(()) };
        pending[at].2 -= 1;
        let errno = pending[at].1;
        self.injected.lock().unwrap().push(op);
        Err(errno)
    }
}

/// What differs between the test crates' worlds.
pub struct CoreSetup {
    /// Every byte of the ed25519 signing key's seed.
    pub key_seed: u8,
    pub clock: FakeClock,
    /// The uniform retention of every file, in ns of the fake clock.
    pub retention_ns: u64,
    /// The software named in each Mount record.
    pub software: &'static str,
}

/// A mounted core: DATA_DIR in a temp dir, the index in memory, and the key and clock that sign
/// and date its records. Survives `remount` (a restart, or a crash if nothing was shut down).
pub struct CoreMount {
    dir: tempfile::TempDir,
    pub store: Arc<MemoryStore>,
    pub clock: Arc<FakeClock>,
    pub key: SigningKey,
    retention_ns: u64,
    software: &'static str,
    pub faults: Arc<FaultPlan>,
    pub fs: WormFs,
}

impl Drop for CoreMount {
    /// The core leaves sealed files immutable (chattr +i): clear that so the temp dir can go.
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .args(["-R", "-f", "-i", "-a"])
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Clear one file's append-only and immutable flags, as root with CAP_LINUX_IMMUTABLE can
/// before tampering with it.
pub fn unprotect(path: &Path) {
    let status = std::process::Command::new("chattr").args(["-i", "-a"]).arg(path).status().unwrap();
    assert!(status.success(), "chattr -i -a {}", path.display());
}

impl CoreMount {
    /// Open a new chain over an empty DATA_DIR: the Mount record, then recovery (of nothing).
    pub fn start(setup: CoreSetup) -> CoreMount {
        let CoreSetup { key_seed, clock, retention_ns, software } = setup;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(clock);
        let key = SigningKey::from_bytes(&[key_seed; 32]);
        let faults = Arc::new(FaultPlan::default());
        let fs = mount(&dir, &store, &clock, &key, retention_ns, software, &faults);
        CoreMount { dir, store, clock, key, retention_ns, software, faults, fs }
    }

    /// Simulate a restart: a new WormFs over the same data and index (after a crash if the old
    /// one was not shut down).
    pub fn remount(&mut self) {
        self.fs = mount(&self.dir, &self.store, &self.clock, &self.key, self.retention_ns, self.software, &self.faults);
    }

    /// DATA_DIR, where the files live as plain files.
    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub fn set_clock(&self, ns: u64) {
        self.clock.set(ns);
    }

    /// Every record of the chain, decoded, oldest first.
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        self.store
            .scan_records(1, &mut |_, bytes| {
                out.push(Record::decode(bytes).unwrap());
                true
            })
            .unwrap();
        out
    }

    /// The kind of every record, oldest first.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.records().iter().map(|r| r.fields.payload.kind().name()).collect()
    }

    /// What `wormfs verify` would report, trusting this mount's key.
    pub fn check(&self) -> verify::Report {
        verify::check(self.store.as_ref(), self.data(), self.key.verifying_key()).unwrap()
    }

    /// Create `name` in the root, opened O_WRONLY|O_APPEND; returns the handle.
    pub fn create(&self, name: &str) -> u64 {
        let (_, opened) = self
            .fs
            .create(&caller(), ROOT, OsStr::new(name), libc::S_IFREG | 0o644, 0o022, libc::O_WRONLY | libc::O_APPEND)
            .unwrap();
        opened.fh
    }

    /// Append `bytes` through `fh`, all of them.
    pub fn append(&self, fh: u64, bytes: &[u8]) {
        assert_eq!(self.fs.write(fh, 0, bytes, true).unwrap() as usize, bytes.len());
    }

    /// Create `name` with `bytes`, closed (sealed), at the current fake time.
    pub fn sealed_file(&self, name: &str, bytes: &[u8]) {
        let fh = self.create(name);
        self.append(fh, bytes);
        self.fs.release(fh).unwrap();
    }
}

fn mount(
    dir: &tempfile::TempDir,
    store: &Arc<MemoryStore>,
    clock: &Arc<FakeClock>,
    key: &SigningKey,
    retention_ns: u64,
    software: &str,
    faults: &Arc<FaultPlan>,
) -> WormFs {
    let policy = RetentionPolicy::uniform(retention_ns);
    let ledger = Ledger::open(store.clone(), key.clone(), clock.clone(), policy).unwrap();
    let fs = WormFs::new(dir.path(), Arc::new(ledger)).unwrap().with_faults(faults.clone());
    fs.start(software, b"data", false).unwrap();
    fs
}

//! The sealing rules driven through the core directly (no FUSE, the in-memory index): what a
//! write, a close, an fsync, a crash and tampering each leave in the chain, checked by the same
//! checker `wormfs verify` uses.

use std::ffi::OsStr;
use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use wormfs::core::ledger::{Ledger, LedgerError};
use wormfs::core::record::{Payload, Record};
use wormfs::core::seals::SealCause;
use wormfs::core::store::{Clock, Store};
use wormfs::core::{Caller, WormFs};
use wormfs::index::MemoryStore;
use wormfs::verify::{self, Finding, Warning};

const ROOT: u64 = 1;

/// A clock the test moves by hand.
struct FakeClock(AtomicU64);

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct World {
    dir: tempfile::TempDir,
    store: Arc<MemoryStore>,
    clock: Arc<FakeClock>,
    key: SigningKey,
    fs: WormFs,
}

fn caller() -> Caller {
    Caller { uid: 0, gid: 0, pid: 1 }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(FakeClock(AtomicU64::new(1_000_000)));
        let key = SigningKey::from_bytes(&[7; 32]);
        let fs = World::mount(&dir, &store, &clock, &key);
        World { dir, store, clock, key, fs }
    }

    fn mount(dir: &tempfile::TempDir, store: &Arc<MemoryStore>, clock: &Arc<FakeClock>, key: &SigningKey) -> WormFs {
        let ledger = Ledger::open(store.clone(), key.clone(), clock.clone()).unwrap();
        ledger.mount("test", b"data").unwrap();
        let fs = WormFs::new(dir.path(), Arc::new(ledger)).unwrap();
        fs.recover().unwrap();
        fs
    }

    /// Simulate a restart: a new WormFs over the same data and index (after a crash if the old
    /// one was not shut down).
    fn remount(&mut self) {
        self.fs = World::mount(&self.dir, &self.store, &self.clock, &self.key);
    }

    fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        self.store
            .scan_records(1, &mut |_, bytes| {
                out.push(Record::decode(bytes).unwrap());
                true
            })
            .unwrap();
        out
    }

    fn check(&self) -> verify::Report {
        verify::check(self.store.as_ref(), self.dir.path(), self.key.verifying_key()).unwrap()
    }

    /// Create `name` and append each chunk, returning the open handle.
    fn create(&self, name: &str) -> u64 {
        let (_, opened) = self
            .fs
            .create(&caller(), ROOT, OsStr::new(name), libc::S_IFREG | 0o644, 0o022, libc::O_WRONLY | libc::O_APPEND)
            .unwrap();
        opened.fh
    }

    fn append(&self, fh: u64, bytes: &[u8]) {
        assert_eq!(self.fs.write(fh, 0, bytes, true).unwrap() as usize, bytes.len());
    }
}

fn seals(records: &[Record]) -> Vec<(u64, u64, [u8; 32])> {
    records
        .iter()
        .filter_map(|r| r.fields.payload.segment().map(|s| (s.start, s.end, s.segment_hash)))
        .collect()
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[test]
fn close_seals_what_was_written_and_reopen_starts_a_new_segment() {
    let w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"one\n");
    w.append(fh, b"two\n");
    assert!(seals(&w.records()).is_empty(), "nothing is sealed while the file is open");
    w.fs.release(fh).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 8, sha(b"one\ntwo\n"))]);

    let attr = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap();
    let fh = w.fs.open(attr.ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(fh, b"three\n");
    w.fs.release(fh).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 8, sha(b"one\ntwo\n")), (8, 14, sha(b"three\n"))]);
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!(report.bytes_hashed, 14);
}

#[test]
fn kinds_are_in_the_order_things_happened() {
    let w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"x");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    let kinds: Vec<_> = w.records().iter().map(|r| r.fields.payload.kind().name()).collect();
    assert_eq!(kinds, ["Mount", "Create", "Seal", "Unmount"]);
}

#[test]
fn an_unchanged_close_writes_no_seal() {
    let w = World::new();
    let fh = w.create("empty.log");
    w.fs.release(fh).unwrap();
    assert!(seals(&w.records()).is_empty());
}

#[test]
fn fsync_and_interval_seal_an_open_file() {
    let w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"abc");
    w.fs.fsync(fh, true).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 3, sha(b"abc"))]);
    w.append(fh, b"def");
    assert_eq!(w.fs.seal_open_files(SealCause::Interval), 1);
    assert_eq!(w.fs.seal_open_files(SealCause::Interval), 0, "nothing new to seal");
    assert_eq!(seals(&w.records()).last(), Some(&(3, 6, sha(b"def"))));
    w.fs.release(fh).unwrap();
    assert_eq!(seals(&w.records()).len(), 2, "close had nothing left to seal");
}

#[test]
fn a_crash_leaves_bytes_that_the_next_mount_recovers() {
    let mut w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"sealed ");
    w.fs.fsync(fh, false).unwrap();
    w.append(fh, b"unsealed");
    // Crash: no release, no shutdown.
    w.remount();
    let records = w.records();
    let last = records.last().unwrap();
    match &last.fields.payload {
        Payload::Recovered { segment, adopted } => {
            assert!(!adopted);
            assert_eq!((segment.start, segment.end), (7, 15));
            assert_eq!(segment.segment_hash, sha(b"unsealed"));
        }
        other => panic!("expected Recovered, got {other:?}"),
    }
    assert!(w.check().intact());
}

#[test]
fn a_file_placed_behind_wormfs_is_adopted_and_flagged() {
    let mut w = World::new();
    fs::write(w.dir.path().join("planted.log"), b"hello").unwrap();
    w.remount();
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
    assert!(matches!(&report.warnings[..], [Warning::Adopted { .. }]), "{:?}", report.warnings);
}

#[test]
fn tampering_with_sealed_bytes_is_found() {
    let w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"0123456789");
    w.fs.release(fh).unwrap();
    let fh = w.fs.open(w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap().ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(fh, b"abcdefghij");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    assert!(w.check().intact());

    let path = w.dir.path().join("a.log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[15] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let findings = w.check().findings;
    assert!(
        matches!(&findings[..], [Finding::ContentChanged { start: 10, end: 20, .. }]),
        "{findings:?}"
    );
}

#[test]
fn appending_behind_wormfs_after_unmount_is_found() {
    let w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"abc");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    fs::write(w.dir.path().join("a.log"), b"abcdef").unwrap();
    let findings = w.check().findings;
    assert!(matches!(&findings[..], [Finding::AppendedAfterUnmount { bytes: 3, .. }]), "{findings:?}");
}

#[test]
fn a_file_shorter_than_sealed_refuses_appends_and_is_found() {
    let w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"abcdef");
    w.fs.release(fh).unwrap();
    fs::write(w.dir.path().join("a.log"), b"abc").unwrap();
    let ino = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap().ino;
    let err = w.fs.open(ino, libc::O_WRONLY | libc::O_APPEND).unwrap_err();
    assert!(matches!(err, wormfs::core::FsError::Tampered { sealed: 6, size: 3, .. }), "{err:?}");
    assert!(w.check().findings.iter().any(|f| matches!(f, Finding::Truncated { size: 3, sealed: 6, .. })));
}

#[test]
fn the_clock_never_goes_back_in_the_chain() {
    let w = World::new();
    w.clock.0.store(5_000_000, Ordering::SeqCst);
    let fh = w.create("a.log");
    w.clock.0.store(10, Ordering::SeqCst); // set back
    w.append(fh, b"x");
    w.fs.release(fh).unwrap();
    let times: Vec<u64> = w.records().iter().map(|r| r.fields.time_ns).collect();
    assert!(times.windows(2).all(|p| p[0] <= p[1]), "{times:?}");
    assert!(w.check().intact());
}

#[test]
fn a_chain_signed_with_another_key_refuses_to_open() {
    let w = World::new();
    let other = SigningKey::from_bytes(&[8; 32]);
    let err = Ledger::open(w.store.clone(), other, w.clock.clone()).unwrap_err();
    assert!(matches!(err, LedgerError::KeyMismatch { .. }));
}

#[test]
fn removed_or_rewritten_records_are_found() {
    let w = World::new();
    let fh = w.create("a.log");
    w.append(fh, b"abc");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    let records = w.records();
    // Drop the Create record (seq 2).
    w.store.raw_delete_record(2);
    let f = w.check().findings;
    assert!(f.iter().any(|x| matches!(x, Finding::Chain(wormfs::core::chain::ChainFinding::Gap { from: 2, to: 2 }))), "{f:?}");
    w.store.raw_put_record(2, records[1].encode());
    assert!(w.check().intact());
    // Change a seal's payload and re-hash it: the signature no longer verifies.
    let mut forged = records[2].clone();
    if let Payload::Seal(s) = &mut forged.fields.payload {
        s.end += 1;
    }
    forged.hash = forged.fields.hash();
    w.store.raw_put_record(3, forged.encode());
    let f = w.check().findings;
    assert!(f.iter().any(|x| matches!(x, Finding::Chain(wormfs::core::chain::ChainFinding::BadSignature { seq: 3 }))), "{f:?}");
}

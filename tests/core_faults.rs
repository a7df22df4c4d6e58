//! A failing disk under the core (no FUSE, the in-memory index): I/O errors injected into the
//! backing file layer (`core_harness::FaultPlan`) and into the index (`MemoryStore::fail_commits`),
//! one at a time at every step of a seal, and a state disk that runs out of room. After each:
//! no byte whose close or fsync returned is lost, no byte is sealed that was not durably written,
//! and the checker `wormfs verify` uses says exactly that.

mod core_harness;

use std::ffi::OsStr;
use std::fs;

use nix::errno::Errno;

use core_harness::{caller, seals, sha, CoreMount, CoreSetup, FakeClock, ROOT};
use wormfs::core::backing::BackingOp;
use wormfs::core::ledger::LedgerError;
use wormfs::core::seals::SealCause;
use wormfs::core::space::{Room, BASE_MARGIN};
use wormfs::core::store::StoreError;
use wormfs::core::{Damage, FsError};
use wormfs::fuse::errno::to_errno;
use wormfs::verify::Finding;

const RETENTION: u64 = 1000;
const START_NS: u64 = 1_000_000;
const MIB: u64 = 1 << 20;

fn world() -> CoreMount {
    CoreMount::start(CoreSetup {
        key_seed: 9,
        clock: FakeClock::manual(START_NS),
        retention_ns: RETENTION,
        software: "test",
    })
}

/// Open `name` for appending.
fn reopen(w: &CoreMount, name: &str) -> u64 {
    let attr = w.fs.lookup(ROOT, OsStr::new(name)).unwrap();
    w.fs.open(&caller(), attr.ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh
}

/// close(2) as the kernel sends it: FLUSH (whose answer close returns), then RELEASE.
fn close(w: &CoreMount, fh: u64) -> Result<(), FsError> {
    let flushed = w.fs.flush(&caller(), fh);
    w.fs.release(fh).unwrap();
    flushed
}

fn errno(e: &FsError) -> i32 {
    to_errno(e).code()
}

#[test]
fn a_failed_fdatasync_is_never_sealed_and_the_file_takes_no_more_appends() {
    let mut w = world();
    w.sealed_file("a.log", b"sealed\n");
    let fh = reopen(&w, "a.log");
    w.append(fh, b"maybe lost\n");
    w.faults.fail(BackingOp::Sync, Errno::EIO, 1);
    let err = close(&w, fh).unwrap_err();
    assert!(matches!(err, FsError::Damaged { damage: Damage::Unsynced { sealed: 7, size: 18, .. }, .. }), "{err:?}");
    assert_eq!(errno(&err), libc::EIO, "close reports the write-back error");
    assert_eq!(w.faults.injected.lock().unwrap().as_slice(), &[BackingOp::Sync]);
    // The retry would succeed (the kernel reports a write-back error once): it must not seal.
    assert_eq!(w.fs.seal_open_files(SealCause::Interval).sealed, 0);
    assert_eq!(seals(&w.records()), vec![(0, 7, sha(b"sealed\n"))], "the unsynced bytes are not sealed");
    assert_eq!(w.kinds().last(), Some(&"Damaged"));

    // Further appends are refused with EIO, and reads still work.
    let attr = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap();
    match w.fs.open(&caller(), attr.ino, libc::O_WRONLY | libc::O_APPEND) {
        Err(e) => assert_eq!(errno(&e), libc::EIO, "{e:?}"),
        Ok(opened) => {
            let e = w.fs.write(opened.fh, 0, b"more", true).unwrap_err();
            assert_eq!(errno(&e), libc::EIO, "{e:?}");
            w.fs.release(opened.fh).unwrap();
        }
    }
    assert_eq!(fs::read(w.data().join("a.log")).unwrap(), b"sealed\nmaybe lost\n");
    let damage_records = w.kinds().iter().filter(|k| **k == "Damaged").count();
    assert_eq!(damage_records, 1, "recorded once, not at every open: {:?}", w.kinds());

    // verify names it; the sealed part still checks.
    let report = w.check();
    assert!(!report.intact());
    assert!(report.findings.iter().any(|f| f.kind() == "file.damaged"), "{:?}", report.findings);
    assert_eq!(report.bytes_hashed, 7);

    // Not even a crash and the recovery after it seal those bytes.
    w.remount();
    assert!(!w.kinds().contains(&"Recovered"), "{:?}", w.kinds());
    assert_eq!(seals(&w.records()), vec![(0, 7, sha(b"sealed\n"))]);
}

#[test]
fn a_failed_fdatasync_at_recovery_is_not_sealed_either() {
    let mut w = world();
    let fh = w.create("a.log");
    w.append(fh, b"unsealed at the crash\n");
    // Crash: the bytes are on disk, unsealed; recovery's fdatasync of them fails.
    w.faults.fail(BackingOp::Sync, Errno::EIO, 1);
    w.remount();
    assert!(seals(&w.records()).is_empty(), "{:?}", w.kinds());
    assert_eq!(w.kinds().last(), Some(&"Damaged"));
    // The next mount's fdatasync would succeed: it still does not seal them.
    w.remount();
    assert!(seals(&w.records()).is_empty(), "{:?}", w.kinds());
    assert!(w.check().findings.iter().any(|f| f.kind() == "file.damaged"));
}

#[test]
fn a_failed_write_appends_nothing_and_loses_nothing() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"first\n");
    for errno_in in [Errno::EIO, Errno::ENOSPC, Errno::EDQUOT] {
        w.faults.fail(BackingOp::Write, errno_in, 1);
        let e = w.fs.write(fh, 0, b"refused\n", true).unwrap_err();
        assert_eq!(errno(&e), errno_in as i32, "the disk's errno reaches the writer");
    }
    w.append(fh, b"second\n");
    close(&w, fh).unwrap();
    assert_eq!(fs::read(w.data().join("a.log")).unwrap(), b"first\nsecond\n");
    assert_eq!(seals(&w.records()), vec![(0, 13, sha(b"first\nsecond\n"))]);
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
}

#[test]
fn a_failed_index_write_fails_the_close_and_the_seal_is_written_later() {
    let mut w = world();
    let fh = w.create("a.log");
    w.append(fh, b"acknowledged only once sealed\n");
    // Both tries of the close fail: FLUSH's (which close(2) returns) and RELEASE's.
    w.store.fail_commits(2);
    let err = close(&w, fh).unwrap_err();
    assert!(matches!(err, FsError::Ledger { source: LedgerError::Store(StoreError::Backend { .. }), .. }), "{err:?}");
    assert_eq!(errno(&err), libc::EIO);
    assert!(seals(&w.records()).is_empty());
    // The hashed bytes wait in memory; the interval sealer writes their seal.
    assert_eq!(w.fs.seal_open_files(SealCause::Interval).sealed, 1);
    assert_eq!(seals(&w.records()), vec![(0, 30, sha(b"acknowledged only once sealed\n"))]);
    assert!(w.check().intact());

    // A failure at every later step of the next seal, then a crash: recovery seals the tail.
    let fh = reopen(&w, "a.log");
    w.append(fh, b"tail\n");
    w.store.fail_commits(usize::MAX);
    assert!(close(&w, fh).is_err());
    assert_eq!(w.fs.seal_open_files(SealCause::Interval).failed, 1);
    w.store.fail_commits(0);
    w.remount();
    let s = seals(&w.records());
    assert_eq!(s.last(), Some(&(30, 35, sha(b"tail\n"))), "{:?}", w.kinds());
    assert_eq!(w.kinds().iter().filter(|k| **k == "Recovered").count(), 1);
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
}

#[test]
fn one_fault_at_each_step_of_a_seal_never_loses_an_acknowledged_byte() {
    // The steps of a close's seal: the write before it, fdatasync, the index commit.
    for step in ["write", "sync", "commit"] {
        let mut w = world();
        w.sealed_file("a.log", b"acknowledged\n");
        let fh = reopen(&w, "a.log");
        let wrote = match step {
            "write" => {
                w.faults.fail(BackingOp::Write, Errno::EIO, 1);
                w.fs.write(fh, 0, b"next\n", true).is_ok()
            }
            _ => {
                w.append(fh, b"next\n");
                true
            }
        };
        match step {
            "sync" => w.faults.fail(BackingOp::Sync, Errno::EIO, 1),
            "commit" => w.store.fail_commits(1),
            _ => {}
        }
        let closed = close(&w, fh);
        // Then a crash, and the mount after it.
        w.remount();
        let on_disk = fs::read(w.data().join("a.log")).unwrap();
        assert!(on_disk.starts_with(b"acknowledged\n"), "{step}: acknowledged bytes lost");
        let sealed: u64 = seals(&w.records()).iter().map(|(s, e, _)| e - s).sum();
        let report = w.check();
        match (step, wrote, closed.is_ok()) {
            ("write", false, true) => {
                assert_eq!(on_disk, b"acknowledged\n");
                assert!(report.intact(), "{step}: {:?}", report.findings);
            }
            ("sync", true, false) => {
                assert_eq!(sealed, 13, "{step}: bytes whose fdatasync failed were sealed");
                assert!(report.findings.iter().any(|f| f.kind() == "file.damaged"), "{step}: {:?}", report.findings);
            }
            ("commit", true, false) => {
                // Never acknowledged, but durable: recovery seals them after the crash.
                assert_eq!(sealed, 18, "{step}");
                assert!(report.intact(), "{step}: {:?}", report.findings);
            }
            other => panic!("{step}: unexpected outcome {other:?}"),
        }
        assert!(!report.findings.iter().any(|f| matches!(f, Finding::ContentChanged { .. })), "{step}");
    }
}

#[test]
fn a_full_state_disk_refuses_new_bytes_with_enospc_and_resumes_by_itself() {
    let w = world();
    let reserve = 48 * MIB;
    let fh = w.create("a.log");
    w.append(fh, b"written before the disk filled\n");

    // Below the intake margin but above the reserve: no new bytes, no new files, but the seal of
    // what was taken is written.
    w.store.set_room(Some(Room { free: reserve + BASE_MARGIN / 2, reserve }));
    std::thread::sleep(std::time::Duration::from_millis(150)); // past the watch's cache
    let e = w.fs.write(fh, 0, b"refused\n", true).unwrap_err();
    assert!(matches!(e, FsError::NoSpace { .. }), "{e:?}");
    assert_eq!(errno(&e), libc::ENOSPC);
    let e =
        w.fs.create(&caller(), ROOT, OsStr::new("new.log"), libc::S_IFREG | 0o644, 0o022, libc::O_WRONLY).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    assert!(!w.data().join("new.log").exists(), "a refused create leaves no file");
    assert!(w.fs.gauges().state_space_short);
    assert_eq!(w.fs.metrics().snapshot().space_refusals, 2);
    // Reads go on.
    let attr = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap();
    let rh = w.fs.open(&caller(), attr.ino, libc::O_RDONLY).unwrap().fh;
    assert_eq!(w.fs.read(rh, 0, 100).unwrap(), b"written before the disk filled\n");
    w.fs.release(rh).unwrap();

    // Below the reserve: the close's seal is not written, and close says ENOSPC.
    w.store.set_room(Some(Room { free: reserve - 1, reserve }));
    let heads_before = w.records().len();
    let e = close(&w, fh).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e:?}");
    assert_eq!(w.records().len(), heads_before, "nothing is committed below the reserve");
    assert_eq!(w.fs.seal_open_files(SealCause::Interval).failed, 1);

    // Room returns: the waiting seal is written, writes and creates work again, no remount.
    w.store.set_room(Some(Room { free: 10 * reserve, reserve }));
    assert_eq!(w.fs.seal_open_files(SealCause::Interval).sealed, 1);
    assert_eq!(seals(&w.records()), vec![(0, 31, sha(b"written before the disk filled\n"))]);
    std::thread::sleep(std::time::Duration::from_millis(150));
    let fh = reopen(&w, "a.log");
    w.append(fh, b"after\n");
    close(&w, fh).unwrap();
    w.sealed_file("new.log", b"new\n");
    assert!(!w.fs.gauges().state_space_short);
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!(report.bytes_hashed, 31 + 6 + 4);
}

/// A sealed, closed file whose retention has expired (the clock moved past it).
fn expired(w: &CoreMount, name: &str, bytes: &[u8]) {
    w.sealed_file(name, bytes);
    w.set_clock(START_NS + RETENTION + 1);
}

/// The verdict, asserted clean, with the kinds of the records for the message.
fn assert_clean(w: &CoreMount, what: &str) {
    let report = w.check();
    assert!(report.intact(), "{what}: {:?}\n{:?}", report.findings, w.kinds());
}

/// `Aborted` records of the chain: (change, errno).
fn aborted(w: &CoreMount) -> Vec<(u64, u32)> {
    w.records()
        .iter()
        .filter_map(|r| match r.fields.payload {
            wormfs::core::record::Payload::Aborted { change, errno } => Some((change, errno)),
            _ => None,
        })
        .collect()
}

/// The seq of the newest record of `kind`.
fn last_seq(w: &CoreMount, kind: &str) -> u64 {
    w.records().iter().rev().find(|r| r.fields.payload.kind().name() == kind).map(|r| r.seq()).unwrap()
}

#[test]
fn a_delete_whose_unlink_fails_is_aborted_and_the_file_stays_sealed() {
    let mut w = world();
    expired(&w, "a.log", b"kept\n");
    w.faults.fail(BackingOp::Unlink, Errno::EIO, 1);
    let e = w.fs.unlink(ROOT, OsStr::new("a.log")).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    assert_eq!(fs::read(w.data().join("a.log")).unwrap(), b"kept\n");
    assert_eq!(aborted(&w), vec![(last_seq(&w, "Delete"), libc::EIO as u32)]);
    assert_clean(&w, "after the failed unlink");
    // The chain and DATA_DIR agree, now and after a restart: the file is still there, sealed.
    w.fs.shutdown().unwrap();
    w.remount();
    assert_clean(&w, "after a restart");
    assert!(!w.kinds().contains(&"Damaged"), "{:?}", w.kinds());
    let fh = reopen(&w, "a.log");
    w.append(fh, b"more\n");
    close(&w, fh).unwrap();
    w.set_clock(START_NS + 10 * RETENTION);
    w.fs.unlink(ROOT, OsStr::new("a.log")).unwrap();
    assert!(!w.data().join("a.log").exists());
    assert_clean(&w, "after the delete that worked");
}

#[test]
fn a_rename_that_fails_with_exdev_is_aborted() {
    let mut w = world();
    expired(&w, "a.log", b"kept\n");
    w.faults.fail(BackingOp::Rename, Errno::EXDEV, 1);
    let e = w.fs.rename(ROOT, OsStr::new("a.log"), ROOT, OsStr::new("b.log"), false).unwrap_err();
    assert_eq!(errno(&e), libc::EXDEV);
    assert!(w.data().join("a.log").exists() && !w.data().join("b.log").exists());
    assert_eq!(aborted(&w), vec![(last_seq(&w, "Rename"), libc::EXDEV as u32)]);
    assert_clean(&w, "after the failed rename");
    w.fs.shutdown().unwrap();
    w.remount();
    assert_clean(&w, "after a restart");
    // b.log is free, a.log keeps its seals.
    w.sealed_file("b.log", b"new\n");
    w.fs.rename(ROOT, OsStr::new("a.log"), ROOT, OsStr::new("c.log"), false).unwrap();
    assert_clean(&w, "after the rename that worked");
}

#[test]
fn a_truncate_that_fails_is_aborted_and_nothing_is_cut() {
    let mut w = world();
    expired(&w, "a.log", b"0123456789");
    w.faults.fail(BackingOp::Truncate, Errno::EIO, 1);
    let attr = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap();
    let changes = wormfs::core::AttrChanges { size: Some(4), ..Default::default() };
    let e = w.fs.setattr(&caller(), attr.ino, &changes).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    assert_eq!(fs::read(w.data().join("a.log")).unwrap(), b"0123456789");
    assert_eq!(aborted(&w), vec![(last_seq(&w, "Truncate"), libc::EIO as u32)]);
    assert_clean(&w, "after the failed truncate");
    w.fs.shutdown().unwrap();
    w.remount();
    assert_clean(&w, "after a restart");
    let attr = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap();
    w.fs.setattr(&caller(), attr.ino, &changes).unwrap();
    assert_eq!(fs::read(w.data().join("a.log")).unwrap(), b"0123");
    assert_clean(&w, "after the truncate that worked");
}

#[test]
fn a_crash_between_recording_a_change_and_making_it_is_found_at_mount() {
    for op in ["delete", "rename", "truncate"] {
        let mut w = world();
        expired(&w, "a.log", b"0123456789");
        let a = wormfs::core::RelPath::parse(OsStr::new("a.log")).unwrap();
        let b = wormfs::core::RelPath::parse(OsStr::new("b.log")).unwrap();
        // Recorded, then the daemon dies before the system call.
        let ledger = w.fs.ledger();
        let change = match op {
            "delete" => ledger.delete(&a, 10, false).unwrap().record,
            "rename" => ledger.rename(&a, &b, false, false, false).unwrap().record,
            _ => {
                let kept = (0, sha(b"0123"));
                ledger.truncate(&a, 10, 4, false, kept).unwrap().unwrap().record
            }
        };
        w.remount();
        assert_eq!(aborted(&w), vec![(change.seq(), 0)], "{op}: {:?}", w.kinds());
        assert_clean(&w, op);
        assert!(!w.kinds().contains(&"Damaged"), "{op}: {:?}", w.kinds());
        assert_eq!(fs::read(w.data().join("a.log")).unwrap(), b"0123456789");
        // And the file can still be appended to, as any sealed file.
        let fh = reopen(&w, "a.log");
        w.append(fh, b"!");
        close(&w, fh).unwrap();
        assert_clean(&w, op);
    }
}

#[test]
fn a_crash_after_the_change_was_made_is_not_undone() {
    let mut w = world();
    w.sealed_file("a.log", b"gone\n");
    expired(&w, "b.log", b"moved\n");
    w.fs.unlink(ROOT, OsStr::new("a.log")).unwrap();
    w.fs.rename(ROOT, OsStr::new("b.log"), ROOT, OsStr::new("c.log"), false).unwrap();
    w.remount();
    assert!(aborted(&w).is_empty(), "{:?}", w.kinds());
    assert_clean(&w, "after the crash");
}

#[test]
fn a_changed_file_at_the_old_name_does_not_undo_a_delete() {
    let mut w = world();
    expired(&w, "a.log", b"evidence\n");
    let a = wormfs::core::RelPath::parse(OsStr::new("a.log")).unwrap();
    w.fs.ledger().delete(&a, 9, false).unwrap();
    // Behind wormfs' back, the file's bytes change before the next mount.
    core_harness::unprotect(&w.data().join("a.log"));
    fs::write(w.data().join("a.log"), b"EVIDENCE\n").unwrap();
    w.remount();
    assert!(aborted(&w).is_empty(), "a file that is not the deleted one brings nothing back");
    // After a crash an unknown file is adopted, with a warning; the deleted history stays ended.
    let report = w.check();
    assert!(report.warnings.iter().any(|w| w.kind() == "file.adopted"), "{:?}", report.warnings);
    assert!(w.records().iter().any(|r| r.fields.payload.kind().name() == "Delete"));
}

#[test]
fn a_failed_unlink_whose_abort_cannot_be_written_is_found_at_the_next_mount() {
    let mut w = world();
    expired(&w, "a.log", b"kept\n");
    w.faults.fail(BackingOp::Unlink, Errno::EIO, 1);
    // The Delete commits; the Aborted after it does not.
    w.store.fail_commits_after(1, 1);
    assert_eq!(errno(&w.fs.unlink(ROOT, OsStr::new("a.log")).unwrap_err()), libc::EIO);
    assert!(aborted(&w).is_empty());
    w.fs.shutdown().unwrap();
    w.remount();
    assert_eq!(aborted(&w), vec![(last_seq(&w, "Delete"), 0)]);
    assert_clean(&w, "after the mount that found it");
}

#[test]
fn a_create_whose_record_cannot_be_written_leaves_no_file() {
    let w = world();
    w.store.fail_commits(1);
    let e =
        w.fs.create(&caller(), ROOT, OsStr::new("a.log"), libc::S_IFREG | 0o644, 0o022, libc::O_WRONLY).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    assert!(!w.data().join("a.log").exists(), "a file without a Create record would be damage");
    // A create that fails on the data disk leaves nothing in the chain.
    w.faults.fail(BackingOp::Create, Errno::ENOSPC, 1);
    let e =
        w.fs.create(&caller(), ROOT, OsStr::new("a.log"), libc::S_IFREG | 0o644, 0o022, libc::O_WRONLY).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    assert!(!w.kinds().contains(&"Create"), "{:?}", w.kinds());
    w.sealed_file("a.log", b"works again\n");
    assert_clean(&w, "after the failed creates");
}

#[test]
fn a_damage_record_that_cannot_be_written_is_written_at_the_next_open() {
    let mut w = world();
    w.sealed_file("a.log", b"sealed\n");
    let fh = reopen(&w, "a.log");
    w.append(fh, b"unsynced\n");
    // fdatasync fails, and so does the commit of the Damaged record that says so.
    w.faults.fail(BackingOp::Sync, Errno::EIO, 1);
    w.store.fail_commits(1);
    assert!(close(&w, fh).is_err());
    assert!(!w.kinds().contains(&"Damaged"));
    // The next open finds the file longer than sealed and records it: before any crash could
    // let recovery seal those bytes.
    let attr = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap();
    let e = w.fs.open(&caller(), attr.ino, libc::O_WRONLY | libc::O_APPEND).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    assert_eq!(w.kinds().iter().filter(|k| **k == "Damaged").count(), 1, "{:?}", w.kinds());
    w.remount();
    assert!(!w.kinds().contains(&"Recovered"), "{:?}", w.kinds());
}

/// A failed sync of the index (group commit: records are committed, then synced outside the chain
/// lock): the close that waited for it fails with EIO, nothing more is committed however long the
/// daemon runs (which of the records reached the disk is unknown), and the next mount recovers
/// from what the index holds, with every acknowledged byte sealed and verify clean.
#[test]
fn after_a_failed_index_sync_nothing_more_is_committed_until_the_remount() {
    let mut w = world();
    w.sealed_file("a.log", b"durable\n");
    let before = w.records().len();
    let fh = reopen(&w, "a.log");
    w.append(fh, b"unknown fate\n");
    w.store.fail_syncs(1);
    let err = close(&w, fh).unwrap_err();
    assert_eq!(errno(&err), libc::EIO, "{err:?}");
    // The seal was committed before the sync failed: it is in the index, not known durable.
    assert_eq!(w.records().len(), before + 1);

    // Syncs work again, but the ledger stays stopped: a create, an append's seal and the
    // interval sealer all fail, and nothing is written.
    let attr = w.fs.create(&caller(), ROOT, OsStr::new("b.log"), libc::S_IFREG | 0o644, 0, libc::O_WRONLY);
    let create_err = attr.unwrap_err();
    assert!(
        matches!(create_err, FsError::Ledger { source: LedgerError::Store(StoreError::SyncFailed), .. }),
        "{create_err:?}"
    );
    assert_eq!(errno(&create_err), libc::EIO);
    assert!(!w.data().join("b.log").exists(), "a file refused its Create record is not left behind");
    let fh = reopen(&w, "a.log");
    w.append(fh, b"after\n");
    assert!(close(&w, fh).is_err());
    assert_eq!(w.fs.seal_open_files(SealCause::Interval).failed, 1);
    assert_eq!(w.records().len(), before + 1, "nothing committed after the failed sync");

    // The remount replays what the index holds: the seal of "unknown fate" stands (here it did
    // reach the disk), the bytes after it are recovered as unsealed by an unclean stop.
    w.remount();
    let sealed: Vec<(u64, u64)> = seals(&w.records()).into_iter().map(|(s, e, _)| (s, e)).collect();
    let size = fs::metadata(w.data().join("a.log")).unwrap().len();
    assert_eq!(sealed.last().map(|s| s.1), Some(size), "every byte is sealed after the remount: {sealed:?}");
    assert!(sealed.contains(&(8, 21)), "the seal whose sync failed stays: {sealed:?}");
    assert!(w.check().intact(), "{:?}", w.check().findings);
}

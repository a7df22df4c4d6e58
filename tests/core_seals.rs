//! The sealing rules driven through the core directly (no FUSE, the in-memory index): what a
//! write, a close, an fsync, a crash and tampering each leave in the chain, checked by the same
//! checker `wormfs verify` uses.

mod core_harness;

use std::ffi::OsStr;
use std::fs;

use ed25519_dalek::SigningKey;

use core_harness::{caller, seals, sha, unprotect, CoreMount, CoreSetup, FakeClock, ROOT};
use wormfs::core::fs::Sealed;
use wormfs::core::history::{HistoryFinding, HistoryWarning};
use wormfs::core::ledger::{Ledger, LedgerError};
use wormfs::core::record::Payload;
use wormfs::core::retention::RetentionPolicy;
use wormfs::core::seals::SealCause;
use wormfs::core::store::Store;
use wormfs::core::Damage;
use wormfs::verify::{Finding, Warning};

/// Retention in these tests: 1000 ns of the fake clock.
const RETENTION: u64 = 1000;
/// Where the fake clock stands at mount; it moves only when a test sets it.
const START_NS: u64 = 1_000_000;

/// A fresh core for one test, signing with its own key and with the clock at START_NS.
fn world() -> CoreMount {
    CoreMount::start(CoreSetup {
        key_seed: 7,
        clock: FakeClock::manual(START_NS),
        retention_ns: RETENTION,
        software: "test",
    })
}

#[test]
fn close_seals_what_was_written_and_reopen_starts_a_new_segment() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"one\n");
    w.append(fh, b"two\n");
    assert!(seals(&w.records()).is_empty(), "nothing is sealed while the file is open");
    w.fs.release(fh).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 8, sha(b"one\ntwo\n"))]);

    let attr = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap();
    let fh = w.fs.open(&caller(), attr.ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(fh, b"three\n");
    w.fs.release(fh).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 8, sha(b"one\ntwo\n")), (8, 14, sha(b"three\n"))]);
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!(report.bytes_hashed, 14);
}

#[test]
fn a_close_seals_even_while_the_previous_closes_release_is_on_its_way() {
    // `echo a >> f; echo b >> f`: the kernel sends the first handle's RELEASE after close(2)
    // returned, so the second open can come first. Each close still seals its own line.
    let w = world();
    let first = w.create("f");
    w.append(first, b"a\n");
    w.fs.flush(&caller(), first).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 2, sha(b"a\n"))], "the close sealed");
    let attr = w.fs.lookup(ROOT, OsStr::new("f")).unwrap();
    let second = w.fs.open(&caller(), attr.ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(second, b"b\n");
    w.fs.flush(&caller(), second).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 2, sha(b"a\n")), (2, 4, sha(b"b\n"))], "its own seal");
    w.fs.release(first).unwrap();
    w.fs.release(second).unwrap();
    assert_eq!(seals(&w.records()).len(), 2, "nothing left for the releases");

    // A writer still in use (opened, not closed) keeps the other's close from sealing.
    let kept = w.fs.open(&caller(), attr.ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    let third = w.fs.open(&caller(), attr.ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(third, b"c\n");
    w.fs.flush(&caller(), third).unwrap();
    assert_eq!(seals(&w.records()).len(), 2, "another writer is still open");
    w.fs.release(third).unwrap();
    w.fs.release(kept).unwrap();
    assert_eq!(seals(&w.records()).len(), 3, "the last release seals");
    assert!(w.check().intact());
}

#[test]
fn kinds_are_in_the_order_things_happened() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"x");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    assert_eq!(w.kinds(), ["Mount", "Create", "Seal", "Unmount"]);
}

#[test]
fn an_unchanged_close_writes_no_seal() {
    let w = world();
    let fh = w.create("empty.log");
    w.fs.release(fh).unwrap();
    assert!(seals(&w.records()).is_empty());
}

#[test]
fn fsync_and_interval_seal_an_open_file() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"abc");
    w.fs.fsync(fh, true).unwrap();
    assert_eq!(seals(&w.records()), vec![(0, 3, sha(b"abc"))]);
    w.append(fh, b"def");
    assert_eq!(w.fs.seal_open_files(SealCause::Interval), Sealed { sealed: 1, failed: 0 });
    assert_eq!(w.fs.seal_open_files(SealCause::Interval), Sealed::default(), "nothing new to seal");
    assert_eq!(seals(&w.records()).last(), Some(&(3, 6, sha(b"def"))));
    w.fs.release(fh).unwrap();
    assert_eq!(seals(&w.records()).len(), 2, "close had nothing left to seal");
}

#[test]
fn a_crash_leaves_bytes_that_the_next_mount_recovers() {
    let mut w = world();
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
fn a_file_placed_behind_wormfs_during_a_crash_is_adopted_and_flagged() {
    let mut w = world();
    fs::write(w.data().join("planted.log"), b"hello").unwrap();
    // No shutdown: the remount follows an unclean stop, which can explain a file without its
    // Create record (a crash between the two).
    w.remount();
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
    assert!(
        matches!(&report.warnings[..], [Warning::History(HistoryWarning::Adopted { .. })]),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_file_placed_behind_wormfs_after_a_clean_unmount_is_damage_not_adopted() {
    let mut w = world();
    w.fs.shutdown().unwrap();
    fs::write(w.data().join("planted.log"), b"hello").unwrap();
    w.remount();
    assert!(w.fs.ledger().file(&wormfs::core::RelPath::parse(OsStr::new("planted.log")).unwrap()).unwrap().is_none());
    let findings = w.check().findings;
    assert!(
        findings.iter().any(|f| matches!(f, Finding::History(HistoryFinding::Damaged { sealed: 0, size: 5, .. }))),
        "{findings:?}"
    );
    assert!(findings.iter().any(|f| matches!(f, Finding::Injected { .. })), "{findings:?}");
    assert!(!w.records().iter().any(|r| matches!(r.fields.payload, Payload::Recovered { .. })), "nothing sealed");
}

#[test]
fn tampering_with_sealed_bytes_is_found() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"0123456789");
    w.fs.release(fh).unwrap();
    let fh =
        w.fs.open(&caller(), w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap().ino, libc::O_WRONLY | libc::O_APPEND)
            .unwrap()
            .fh;
    w.append(fh, b"abcdefghij");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    assert!(w.check().intact());

    let path = w.data().join("a.log");
    unprotect(&path);
    let mut bytes = fs::read(&path).unwrap();
    bytes[15] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let findings = w.check().findings;
    assert!(matches!(&findings[..], [Finding::ContentChanged { start: 10, end: 20, .. }]), "{findings:?}");
}

#[test]
fn appending_behind_wormfs_after_unmount_is_found() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"abc");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    unprotect(&w.data().join("a.log"));
    fs::write(w.data().join("a.log"), b"abcdef").unwrap();
    let findings = w.check().findings;
    assert!(matches!(&findings[..], [Finding::AppendedAfterUnmount { bytes: 3, .. }]), "{findings:?}");
}

#[test]
fn a_file_shorter_than_sealed_refuses_appends_and_is_found() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"abcdef");
    w.fs.release(fh).unwrap();
    unprotect(&w.data().join("a.log"));
    fs::write(w.data().join("a.log"), b"abc").unwrap();
    let ino = w.fs.lookup(ROOT, OsStr::new("a.log")).unwrap().ino;
    let err = w.fs.open(&caller(), ino, libc::O_WRONLY | libc::O_APPEND).unwrap_err();
    assert!(
        matches!(err, wormfs::core::FsError::Damaged { damage: Damage::Shrank { sealed: 6, size: 3 }, .. }),
        "{err:?}"
    );
    assert!(w.check().findings.iter().any(|f| matches!(f, Finding::Truncated { size: 3, sealed: 6, .. })));
}

#[test]
fn the_clock_never_goes_back_in_the_chain() {
    let w = world();
    w.set_clock(5_000_000);
    let fh = w.create("a.log");
    w.set_clock(10); // set back
    w.append(fh, b"x");
    w.fs.release(fh).unwrap();
    let times: Vec<u64> = w.records().iter().map(|r| r.fields.time_ns).collect();
    assert!(times.windows(2).all(|p| p[0] <= p[1]), "{times:?}");
    assert!(w.check().intact());
}

#[test]
fn a_chain_signed_with_another_key_refuses_to_open() {
    let w = world();
    let other = SigningKey::from_bytes(&[8; 32]);
    let err = Ledger::open(w.store.clone(), other, w.clock.clone(), RetentionPolicy::uniform(RETENTION)).unwrap_err();
    assert!(matches!(err, LedgerError::KeyMismatch { .. }));
}

#[test]
fn removed_or_rewritten_records_are_found() {
    let w = world();
    let fh = w.create("a.log");
    w.append(fh, b"abc");
    w.fs.release(fh).unwrap();
    w.fs.shutdown().unwrap();
    let records = w.records();
    // Drop the Create record (seq 2).
    w.store.raw_delete_record(2);
    let f = w.check().findings;
    assert!(
        f.iter().any(|x| matches!(x, Finding::Chain(wormfs::core::chain::ChainFinding::Gap { from: 2, to: 2 }))),
        "{f:?}"
    );
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
    assert!(
        f.iter().any(|x| matches!(x, Finding::Chain(wormfs::core::chain::ChainFinding::BadSignature { seq: 3 }))),
        "{f:?}"
    );
}

// ---- retention, holds and the clock (issue: retention and legal hold) ----

fn refused_op(err: wormfs::core::FsError) -> String {
    match err {
        wormfs::core::FsError::Refused { refusal, .. } => refusal.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn unlink_waits_for_expiry_and_is_recorded_first() {
    let w = world();
    w.sealed_file("a.log", b"evidence");
    let err = w.fs.unlink(ROOT, OsStr::new("a.log")).unwrap_err();
    assert!(refused_op(err).contains("retained until"));
    assert_eq!(fs::read(w.data().join("a.log")).unwrap(), b"evidence");

    w.set_clock(START_NS + RETENTION + 1);
    w.fs.unlink(ROOT, OsStr::new("a.log")).unwrap();
    assert!(!w.data().join("a.log").exists());
    assert_eq!(w.kinds().last(), Some(&"Delete"));
    let report = w.check();
    assert!(report.intact() && report.warnings.is_empty(), "{report:?}");
}

#[test]
fn a_hold_blocks_deletion_after_expiry_until_cleared() {
    let w = world();
    fs::create_dir(w.data().join("case")).unwrap();
    let dir = w.fs.lookup(ROOT, OsStr::new("case")).unwrap().ino;
    let (_, opened) =
        w.fs.create(&caller(), dir, OsStr::new("x.log"), libc::S_IFREG | 0o644, 0, libc::O_WRONLY).unwrap();
    w.append(opened.fh, b"held");
    w.fs.release(opened.fh).unwrap();
    let case = wormfs::core::RelPath::parse(OsStr::new("case")).unwrap();
    w.fs.ledger().hold(&case, true, "subpoena 42", 0, true).unwrap();
    w.set_clock(START_NS + RETENTION * 10);
    let err = w.fs.unlink(dir, OsStr::new("x.log")).unwrap_err();
    assert!(refused_op(err).contains("subpoena 42"));
    w.fs.ledger().hold(&case, false, "released", 0, true).unwrap();
    w.fs.unlink(dir, OsStr::new("x.log")).unwrap();
    assert!(w.check().intact());
}

#[test]
fn an_open_file_is_not_deleted() {
    let w = world();
    let fh = w.create("open.log");
    w.append(fh, b"x");
    w.fs.fsync(fh, true).unwrap();
    w.set_clock(START_NS + RETENTION * 10);
    let err = w.fs.unlink(ROOT, OsStr::new("open.log")).unwrap_err();
    assert!(refused_op(err).contains("open"));
    w.fs.release(fh).unwrap();
    w.fs.unlink(ROOT, OsStr::new("open.log")).unwrap();
}

#[test]
fn rename_after_expiry_carries_the_seals_to_the_new_name() {
    let w = world();
    w.sealed_file("old.log", b"first");
    assert!(w.fs.rename(ROOT, OsStr::new("old.log"), ROOT, OsStr::new("new.log"), false).is_err());
    w.set_clock(START_NS + RETENTION + 1);
    w.sealed_file("other.log", b"x");
    let err = w.fs.rename(ROOT, OsStr::new("old.log"), ROOT, OsStr::new("other.log"), false).unwrap_err();
    assert!(refused_op(err).contains("target exists"));
    w.fs.rename(ROOT, OsStr::new("old.log"), ROOT, OsStr::new("new.log"), false).unwrap();
    // Appends continue the file's own seal chain under its new name.
    let ino = w.fs.lookup(ROOT, OsStr::new("new.log")).unwrap().ino;
    let fh = w.fs.open(&caller(), ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(fh, b" second");
    w.fs.release(fh).unwrap();
    let report = w.check();
    assert!(report.intact() && report.warnings.is_empty(), "{report:?}");
    assert!(w.kinds().contains(&"Rename"));
}

#[test]
fn truncate_after_expiry_restarts_seals_at_the_new_size() {
    let w = world();
    w.sealed_file("t.log", b"0123456789");
    let ino = w.fs.lookup(ROOT, OsStr::new("t.log")).unwrap().ino;
    let shrink = wormfs::core::AttrChanges { size: Some(4), ..Default::default() };
    assert!(refused_op(w.fs.setattr(&caller(), ino, &shrink).unwrap_err()).contains("retained"));
    w.set_clock(START_NS + RETENTION + 1);
    let grow = wormfs::core::AttrChanges { size: Some(40), ..Default::default() };
    assert!(w.fs.setattr(&caller(), ino, &grow).is_err(), "never a hole, even after expiry");
    w.fs.setattr(&caller(), ino, &shrink).unwrap();
    assert_eq!(fs::read(w.data().join("t.log")).unwrap(), b"0123");
    let fh = w.fs.open(&caller(), ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(fh, b"abc");
    w.fs.release(fh).unwrap();
    assert_eq!(seals(&w.records()).last(), Some(&(4, 7, sha(b"abc"))));
    let report = w.check();
    assert!(report.intact(), "{report:?}");
}

#[test]
fn retention_extends_but_never_shortens() {
    let w = world();
    w.sealed_file("a.log", b"x");
    let path = wormfs::core::RelPath::parse(OsStr::new("a.log")).unwrap();
    let until = w.fs.ledger().file(&path).unwrap().unwrap().retain_until_ns;
    w.fs.ledger().extend_retention(&path, until + 5_000, 0).unwrap();
    let short = w.fs.ledger().extend_retention(&path, until, 0);
    assert!(matches!(short, Err(LedgerError::Refused(_))), "shortening is refused: {short:?}");
    w.set_clock(until + 1);
    assert!(w.fs.unlink(ROOT, OsStr::new("a.log")).is_err(), "still retained by the extension");
    w.set_clock(until + 5_001);
    w.fs.unlink(ROOT, OsStr::new("a.log")).unwrap();
}

#[test]
fn setting_the_clock_back_neither_shortens_retention_nor_goes_unrecorded() {
    let w = world();
    w.set_clock(5_000_000);
    w.sealed_file("a.log", b"x");
    w.set_clock(10); // set back
    w.sealed_file("b.log", b"y");
    w.sealed_file("c.log", b"z");
    let jumps = w.kinds().iter().filter(|k| **k == "ClockJump").count();
    assert_eq!(jumps, 1, "one ClockJump per episode: {:?}", w.kinds());
    // b.log was sealed "at" the floor, so it is retained from then, not from the clock's 10.
    let b = wormfs::core::RelPath::parse(OsStr::new("b.log")).unwrap();
    assert!(w.fs.ledger().file(&b).unwrap().unwrap().retain_until_ns >= 5_000_000 + RETENTION);
    assert!(w.fs.unlink(ROOT, OsStr::new("a.log")).is_err());
    assert!(w.check().intact());
}

#[test]
fn a_delete_record_written_early_is_a_finding() {
    // wormfs refuses to write one: only someone holding the key could, signing it by hand.
    let w = world();
    w.sealed_file("a.log", b"x");
    let path = wormfs::core::RelPath::parse(OsStr::new("a.log")).unwrap();
    assert!(matches!(w.fs.ledger().delete(&path, 1, false), Err(LedgerError::Refused(_))));
    let state = w.fs.ledger().file(&path).unwrap().unwrap();
    let head = w.store.head().unwrap().unwrap();
    let forged = wormfs::core::chain::sign(
        wormfs::core::record::Unsigned {
            seq: head.seq + 1,
            time_ns: head.time_ns,
            payload: Payload::Delete {
                path: path.clone(),
                size: 1,
                file_hash: state.file_hash,
                retain_until_ns: state.retain_until_ns,
            },
            prev_hash: head.hash,
        },
        &w.key,
    );
    w.store.commit(&forged, &[]).unwrap();
    unprotect(&w.data().join("a.log"));
    fs::remove_file(w.data().join("a.log")).unwrap();
    let f = w.check().findings;
    assert!(matches!(&f[..], [Finding::History(HistoryFinding::ChangedBeforeExpiry { op: "delete", .. })]), "{f:?}");
}

#[test]
fn a_crash_between_a_rename_record_and_the_rename_is_explained() {
    let w = world();
    w.sealed_file("old.log", b"x");
    w.set_clock(START_NS + RETENTION + 1);
    let path = |p: &str| wormfs::core::RelPath::parse(OsStr::new(p)).unwrap();
    // The record is written; the daemon dies before renameat.
    w.fs.ledger().rename(&path("old.log"), &path("new.log"), false, false, false).unwrap();
    let report = w.check();
    assert!(report.intact(), "{:?}", report.findings);
    assert!(matches!(&report.warnings[..], [Warning::RenameNotCompleted { .. }]), "{:?}", report.warnings);
}

#[test]
fn the_ledger_itself_refuses_changes_under_hold_or_while_open() {
    // The check that decides is made under the chain lock, so a hold set or a retention
    // extended between a caller's look and its change still wins.
    let w = world();
    w.sealed_file("a.log", b"x");
    w.set_clock(START_NS + RETENTION * 10);
    let path = wormfs::core::RelPath::parse(OsStr::new("a.log")).unwrap();
    w.fs.ledger().hold(&wormfs::core::RelPath::root(), true, "everything", 0, true).unwrap();
    assert!(matches!(w.fs.ledger().delete(&path, 1, false), Err(LedgerError::Refused(_))));
    let kept = (0, sha(b""));
    assert!(matches!(w.fs.ledger().truncate(&path, 1, 0, false, kept), Err(LedgerError::Refused(_))));
    w.fs.ledger().hold(&wormfs::core::RelPath::root(), false, "released", 0, true).unwrap();
    assert!(matches!(w.fs.ledger().rename(&path, &path, true, false, false), Err(LedgerError::Refused(_))), "open");
    assert!(
        matches!(w.fs.ledger().truncate(&path, 1, 1, false, kept), Ok(None)),
        "to the same size: nothing to record"
    );
    let before = w.records().len();
    w.fs.ledger().delete(&path, 1, false).unwrap();
    assert_eq!(w.records().len(), before + 1);
}

/// ftruncate through the writer's own handle after a large write (whose writeback was started in
/// 8 MiB steps) and more appends: the cut moves every mark of the open file with it.
#[test]
fn an_ftruncate_after_a_large_write_restarts_every_mark_at_the_cut() {
    let w = world();
    let fh = w.create("big.log");
    let big = vec![b'x'; 9 << 20];
    w.append(fh, &big);
    w.fs.fsync(fh, true).unwrap();
    w.set_clock(START_NS + RETENTION + 1);
    let ino = w.fs.lookup(ROOT, OsStr::new("big.log")).unwrap().ino;
    let cut = wormfs::core::AttrChanges { size: Some(1 << 20), via: Some(fh), ..Default::default() };
    w.fs.setattr(&caller(), ino, &cut).unwrap();
    w.append(fh, b"after the cut\n");
    w.fs.flush(&caller(), fh).unwrap();
    w.fs.release(fh).unwrap();
    assert_eq!(fs::metadata(w.data().join("big.log")).unwrap().len(), (1 << 20) + 14);
    assert_eq!(seals(&w.records()).last(), Some(&(1 << 20, (1 << 20) + 14, sha(b"after the cut\n"))));
    assert!(w.check().intact(), "{:?}", w.check().findings);
}

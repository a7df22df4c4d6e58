//! Test vectors for independent verifiers (README "Test vectors"): small stores under
//! `tests/vectors/NAME/` — the files (`data/`), the records as `wormfs export` writes them
//! (`records.export`) and the verdict and findings `wormfs verify` must give (`expected.json`) —
//! all trusting the key in `tests/vectors/pubkey`.
//!
//! The generator below builds each store with the real core over the in-memory index, on a
//! fake clock and a fixed key, so a store is the same bytes every time; then it damages it as
//! an intruder would: without the key (editing records, files, the head) or with it (records
//! re-signed, as someone who read the key could). What each store must give is written by hand
//! beside it, from the rules in the README, never copied from verify's output.
//!
//! Two tests: the committed vectors give `wormfs verify --export` (the real binary) their
//! expected verdicts, and the generator still makes exactly the committed vectors. With
//! `WORMFS_WRITE_VECTORS=1` the generator first rewrites `tests/vectors/` (after a change to the
//! format or to a rule; review the diff).

mod core_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use core_harness::{caller, unprotect, CoreMount, CoreSetup, FakeClock, ROOT};
use wormfs::checkpoint::{self, LogSigner};
use wormfs::core::backing::BackingOp;
use wormfs::core::chain;
use wormfs::core::fs::AttrChanges;
use wormfs::core::path::RelPath;
use wormfs::core::record::{Archive, Payload, Record, Segment, Unsigned};
use wormfs::core::segment::{hex, next_file_hash, sha256};
use wormfs::core::store::{Head, Store};

const WORMFS: &str = env!("CARGO_BIN_EXE_wormfs");
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

/// 2026-01-01T00:00:00Z: every store starts here.
const T0: u64 = 1_767_225_600_000_000_000;
const SEC: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * SEC;
/// Every store's trust anchor (epoch 0's key), and the keys later epochs rotate to.
const ANCHOR_SEED: u8 = 0x42;
const EPOCH_SEEDS: [u8; 2] = [0x43, 0x44];

fn epoch_key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&[EPOCH_SEEDS[i]; 32])
}

/// The key that signs the vectors' checkpoints (anchors), and its name (the checkpoints' origin).
const CHECKPOINT_SEED: u8 = 0x45;
const CHECKPOINT_ORIGIN: &str = "wormfs.example/vectors";

fn checkpoint_signer() -> LogSigner {
    LogSigner::new(CHECKPOINT_ORIGIN.into(), SigningKey::from_bytes(&[CHECKPOINT_SEED; 32]))
}

/// What a vector gives verify beside the records and files: an anchor (a checkpoint the auditor
/// kept) and a head written down earlier. A build sets them before it damages the store.
#[derive(Default)]
struct Extras {
    anchor: Option<Vec<u8>>,
    expect_head: Option<String>,
}

thread_local! {
    /// Set by the build of the vector being made (one thread makes them one after another).
    static EXTRAS: std::cell::RefCell<Extras> = std::cell::RefCell::new(Extras::default());
}

/// Keep the chain's checkpoint now, as an auditor would, for verify's --anchor.
fn keep_anchor(w: &CoreMount) {
    let note = checkpoint::sign(w.store.as_ref(), &checkpoint_signer()).unwrap().to_note();
    EXTRAS.with(|e| e.borrow_mut().anchor = Some(note));
}

/// Write the head down now, as a verify report prints it, for verify's --expect-head.
fn keep_head(w: &CoreMount) {
    let head = w.store.head().unwrap().unwrap();
    EXTRAS.with(|e| e.borrow_mut().expect_head = Some(format!("{}:{}", head.seq, hex(&head.hash))));
}

/// Drop the newest record and point the head at the one before, leaving a whole, shorter chain.
fn cut_last(w: &CoreMount) {
    let last = w.records().len() as u64;
    w.store.raw_delete_record(last);
    let before = Record::decode(&w.store.record_bytes(last - 1).unwrap().unwrap()).unwrap();
    w.store.raw_set_head(Some(Head { seq: last - 1, hash: before.hash, time_ns: before.fields.time_ns }));
}

// ---------------------------------------------------------------------------------------------
// Building stores
// ---------------------------------------------------------------------------------------------

fn world() -> CoreMount {
    CoreMount::start(CoreSetup {
        key_seed: ANCHOR_SEED,
        clock: FakeClock::manual(T0),
        retention_ns: DAY,
        software: "wormfs vectors",
    })
}

fn path(p: &str) -> RelPath {
    RelPath::from_mount_path(p).unwrap()
}

/// Move the fake clock `ns` on.
fn later(w: &CoreMount, ns: u64) {
    use wormfs::core::store::Clock;
    w.set_clock(w.clock.now_ns() + ns);
}

/// Create `name` in the root with `bytes`, closed (and so sealed).
fn file(w: &CoreMount, name: &str, bytes: &[u8]) {
    w.sealed_file(name, bytes);
    later(w, SEC);
}

/// Append `bytes` to the existing file `name` through a new handle, then close it.
fn append(w: &CoreMount, name: &str, bytes: &[u8]) {
    let ino = w.fs.lookup(ROOT, OsStr::new(name)).unwrap().ino;
    let fh = w.fs.open(&caller(), ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
    w.append(fh, bytes);
    w.fs.release(fh).unwrap();
    later(w, SEC);
}

/// A clean stop: seal everything, Unmount.
fn stop(w: &CoreMount) {
    w.fs.shutdown().unwrap();
    later(w, SEC);
}

/// The next run: a Mount (and recovery) over the same files and index.
fn restart(w: &mut CoreMount) {
    w.remount();
    later(w, SEC);
}

/// One file sealed in one run, cleanly stopped: the base most vectors damage.
fn one_file() -> CoreMount {
    let w = world();
    file(&w, "app.log", b"started\nrequest 1 ok\n");
    stop(&w);
    w
}

/// The records as (time, payload), for re-signing.
fn unsigned(w: &CoreMount) -> Vec<(u64, Payload)> {
    w.records().into_iter().map(|r| (r.fields.time_ns, r.fields.payload)).collect()
}

/// What someone holding the keys can do: replace the whole chain by `records`, each signed by
/// the key of its epoch (the anchor, then each KeyRotate's key) and linked to the one before,
/// with the head on the last.
fn resign(w: &CoreMount, records: Vec<(u64, Payload)>) {
    let old = w.records().len() as u64;
    for seq in 1..=old {
        w.store.raw_delete_record(seq);
    }
    let mut key = w.key.clone();
    let mut prev = [0u8; 32];
    let mut head = None;
    for (i, (time_ns, payload)) in records.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let next_key = match &payload {
            Payload::KeyRotate { public_key, .. } => Some(
                (0..EPOCH_SEEDS.len()).map(epoch_key).find(|k| k.verifying_key().as_bytes() == public_key).unwrap(),
            ),
            _ => None,
        };
        let record = chain::sign(Unsigned { seq, time_ns, payload, prev_hash: prev }, &key);
        prev = record.hash;
        head = Some(Head { seq, hash: record.hash, time_ns });
        w.store.raw_put_record(seq, record.encode());
        if let Some(k) = next_key {
            key = k;
        }
    }
    w.store.raw_set_head(head);
}

/// The chain edited by `edit`, re-signed by the intruder.
fn forge(w: &CoreMount, edit: impl FnOnce(&mut Vec<(u64, Payload)>)) {
    let mut records = unsigned(w);
    edit(&mut records);
    resign(w, records);
}

/// The position of the first record matching `pred`.
fn position(records: &[(u64, Payload)], pred: impl Fn(&Payload) -> bool) -> usize {
    records.iter().position(|(_, p)| pred(p)).expect("no such record")
}

/// A Seal of `bytes` at `start` of `p`, continuing the file_hash `previous`.
fn seal(p: &str, start: u64, bytes: &[u8], previous: [u8; 32], retain_until_ns: u64) -> Segment {
    let segment_hash = sha256(bytes);
    let end = start + bytes.len() as u64;
    Segment {
        path: path(p),
        start,
        end,
        segment_hash,
        file_hash: next_file_hash(&previous, &segment_hash, end),
        retain_until_ns,
    }
}

/// The newest Seal of `p` among `records`.
fn last_seal(records: &[(u64, Payload)], p: &str) -> Segment {
    records.iter().rev().find_map(|(_, r)| r.segment().filter(|s| s.path == path(p)).cloned()).expect("no seal")
}

/// Remove a data file behind wormfs' back.
fn remove_behind(w: &CoreMount, name: &str) {
    let p = w.data().join(name);
    unprotect(&p);
    fs::remove_file(p).unwrap();
}

/// Append `more` to a data file behind wormfs' back.
fn append_behind(w: &CoreMount, name: &str, more: &[u8]) {
    let mut bytes = fs::read(w.data().join(name)).unwrap();
    bytes.extend_from_slice(more);
    rewrite_file(w, name, &bytes);
}

/// A Delete of the file whose newest seal is `s`, as the daemon records one.
fn delete_of(s: Segment) -> Payload {
    Payload::Delete { path: s.path, size: s.end, file_hash: s.file_hash, retain_until_ns: s.retain_until_ns }
}

/// Overwrite a data file behind wormfs' back (its write-once flags cleared first, as root can).
fn rewrite_file(w: &CoreMount, name: &str, bytes: &[u8]) {
    let p = w.data().join(name);
    unprotect(&p);
    fs::write(p, bytes).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The vectors
// ---------------------------------------------------------------------------------------------

struct Vector {
    name: &'static str,
    description: &'static str,
    build: fn() -> CoreMount,
    findings: &'static [(&'static str, usize)],
    warnings: &'static [(&'static str, usize)],
}

fn vectors() -> Vec<Vector> {
    vec![
        // ---- intact ----
        Vector {
            name: "intact-one-file",
            description: "One file created, written and closed (sealed) in one run, cleanly stopped.",
            build: one_file,
            findings: &[],
            warnings: &[],
        },
        Vector {
            name: "intact-two-runs",
            description: "Two runs: a file sealed in the first and appended to (a second segment) in the second, \
                          a second file in a directory; each run ends with an Unmount.",
            build: || {
                let mut w = world();
                file(&w, "app.log", b"run 1\n");
                w.fs.mkdir(&caller(), ROOT, OsStr::new("web"), 0o755, 0o022).unwrap();
                let dir = w.fs.lookup(ROOT, OsStr::new("web")).unwrap().ino;
                let (_, opened) =
                    w.fs.create(
                        &caller(),
                        dir,
                        OsStr::new("access.log"),
                        libc::S_IFREG | 0o640,
                        0o022,
                        libc::O_WRONLY | libc::O_APPEND,
                    )
                    .unwrap();
                w.append(opened.fh, b"GET / 200\n");
                w.fs.release(opened.fh).unwrap();
                stop(&w);
                restart(&mut w);
                append(&w, "app.log", b"run 2\n");
                stop(&w);
                w
            },
            findings: &[],
            warnings: &[],
        },
        Vector {
            name: "intact-expired-changes",
            description: "After retention (1 day) expired: one file deleted, one renamed, one truncated through its \
                          segment; a legal hold set on a fourth and cleared again; a retention extended.",
            build: || {
                let w = world();
                for name in ["gone.log", "moved.log", "cut.log", "held.log"] {
                    file(&w, name, b"0123456789\n");
                }
                w.fs.ledger().hold(&path("held.log"), true, "case 7", 0, true).unwrap();
                w.fs.ledger().extend_retention(&path("held.log"), T0 + 10 * DAY, 0).unwrap();
                later(&w, 2 * DAY);
                w.fs.unlink(ROOT, OsStr::new("gone.log")).unwrap();
                w.fs.rename(ROOT, OsStr::new("moved.log"), ROOT, OsStr::new("moved.old"), false).unwrap();
                let ino = w.fs.lookup(ROOT, OsStr::new("cut.log")).unwrap().ino;
                w.fs.setattr(&caller(), ino, &AttrChanges { size: Some(4), ..AttrChanges::default() }).unwrap();
                w.fs.ledger().hold(&path("held.log"), false, "case 7 closed", 0, true).unwrap();
                stop(&w);
                w
            },
            findings: &[],
            warnings: &[],
        },
        Vector {
            name: "intact-recovered-after-crash",
            description: "A file written but not closed when the daemon died: the next Mount seals its bytes as \
                          Recovered (adopted = 0), right after the Mount. Intact, with a warning: no seal proves \
                          those bytes are the ones written before the crash.",
            build: || {
                let mut w = world();
                let fh = w.create("crash.log");
                w.append(fh, b"written before the crash\n");
                later(&w, SEC);
                restart(&mut w);
                stop(&w);
                w
            },
            findings: &[],
            warnings: &[("file.recovered_unproven", 1)],
        },
        Vector {
            name: "intact-failed-delete-aborted",
            description: "A delete of an expired file whose unlink failed (EIO): the Delete record, then an Aborted \
                          record naming it; the file is still there, with its history.",
            build: || {
                let w = world();
                file(&w, "app.log", b"kept\n");
                later(&w, 2 * DAY);
                w.faults.fail(BackingOp::Unlink, nix::errno::Errno::EIO, 1);
                assert!(w.fs.unlink(ROOT, OsStr::new("app.log")).is_err());
                stop(&w);
                w
            },
            findings: &[],
            warnings: &[],
        },
        Vector {
            name: "intact-key-rotation",
            description: "Epoch 0's key (the trust anchor) certifies epoch 1's key with a KeyRotate right after the \
                          Mount; every later record is signed by epoch 1's key.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let public_key = *epoch_key(0).verifying_key().as_bytes();
                    r.insert(1, (T0, Payload::KeyRotate { epoch: 1, public_key, epoch_ns: DAY }));
                });
                w
            },
            findings: &[],
            warnings: &[],
        },
        Vector {
            name: "intact-clock-jump-and-access",
            description: "The clock was set back an hour between two runs: the Mount after it records a ClockJump and \
                          dates records at the floor. A read of the file was audited (Access).",
            build: || {
                let mut w = one_file();
                use wormfs::core::store::Clock;
                w.set_clock(w.clock.now_ns() - 3600 * SEC);
                restart(&mut w);
                stop(&w);
                // The audited read, as `--audit-reads` records it, before that run's Unmount.
                forge(&w, |r| {
                    let at = r.len() - 1;
                    let command = "cat".to_string();
                    r.insert(at, (r[at].0, Payload::Access { path: path("app.log"), uid: 0, pid: 4242, command }));
                });
                w
            },
            findings: &[],
            warnings: &[],
        },
        Vector {
            name: "intact-archived-and-pruned",
            description: "A sealed file recorded as archived to S3 (Archived), then, after its retention, its local \
                          copy pruned (Pruned). Without --archive verify checks only what the records say of the \
                          copy; with it, it would read the copy back from the bucket.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = r.last().unwrap().0 + SEC;
                    let copy = Archive {
                        path: s.path.clone(),
                        size: s.end,
                        file_hash: s.file_hash,
                        bucket: "acme-logs".into(),
                        key: format!("web1/app.log@{}", hex(&s.file_hash)),
                        version_id: "v1".into(),
                        receipt_version_id: "r1".into(),
                        retain_until_ns: s.retain_until_ns,
                    };
                    r.push((at, Payload::Archived(copy)));
                    let archived = r.len() as u64;
                    let (path, size, file_hash, retain_until_ns) = (s.path, s.end, s.file_hash, s.retain_until_ns);
                    r.push((at + 2 * DAY, Payload::Pruned { path, size, file_hash, retain_until_ns, archived }));
                });
                remove_behind(&w, "app.log");
                w
            },
            findings: &[],
            warnings: &[],
        },
        // ---- the files changed behind wormfs' back ----
        Vector {
            name: "file-content-changed",
            description: "One sealed byte of the file changed (same size).",
            build: || {
                let w = one_file();
                rewrite_file(&w, "app.log", b"started\nrequest 1 OK\n");
                w
            },
            findings: &[("file.content_changed", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-missing",
            description: "The sealed file deleted from the data directory.",
            build: || {
                let w = one_file();
                remove_behind(&w, "app.log");
                w
            },
            findings: &[("file.missing", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-truncated",
            description: "The sealed file cut short.",
            build: || {
                let w = one_file();
                rewrite_file(&w, "app.log", b"started\n");
                w
            },
            findings: &[("file.truncated", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-appended-after-unmount",
            description: "Bytes appended to a sealed file after the clean stop (no record covers them).",
            build: || {
                let w = one_file();
                rewrite_file(&w, "app.log", b"started\nrequest 1 ok\nplanted line\n");
                w
            },
            findings: &[("file.appended_after_unmount", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-injected",
            description: "A file planted in the data directory that the chain never saw.",
            build: || {
                let w = one_file();
                fs::write(w.data().join("planted.log"), b"alibi\n").unwrap();
                w
            },
            findings: &[("file.injected", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-not-a-file",
            description: "A symlink planted in the data directory (verify never follows one).",
            build: || {
                let w = one_file();
                symlink("/etc/passwd", w.data().join("link.log")).unwrap();
                w
            },
            findings: &[("file.not_a_file", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-damaged",
            description: "Bytes appended to a sealed file while wormfs was stopped; the next Mount finds more bytes \
                          than are sealed and records it (Damaged), never sealing them.",
            build: || {
                let mut w = one_file();
                rewrite_file(&w, "app.log", b"started\nrequest 1 ok\nplanted line\n");
                restart(&mut w);
                stop(&w);
                w
            },
            findings: &[("file.damaged", 1), ("file.appended_after_unmount", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-unreadable",
            description: "The directory of a sealed file replaced by a plain file: the sealed file cannot be opened \
                          (and the plain file was never created through wormfs).",
            build: || {
                let w = world();
                w.fs.mkdir(&caller(), ROOT, OsStr::new("web"), 0o755, 0o022).unwrap();
                let dir = w.fs.lookup(ROOT, OsStr::new("web")).unwrap().ino;
                let flags = libc::O_WRONLY | libc::O_APPEND;
                let (_, opened) =
                    w.fs.create(&caller(), dir, OsStr::new("access.log"), libc::S_IFREG | 0o640, 0o022, flags).unwrap();
                w.append(opened.fh, b"GET / 200\n");
                w.fs.release(opened.fh).unwrap();
                stop(&w);
                let web = w.data().join("web");
                unprotect(&web.join("access.log"));
                fs::remove_dir_all(&web).unwrap();
                fs::write(&web, b"not a directory\n").unwrap();
                w
            },
            findings: &[("file.unreadable", 1), ("file.injected", 1)],
            warnings: &[],
        },
        // ---- against what the auditor kept: an anchor, a head ----
        Vector {
            name: "anchor-intact",
            description: "A checkpoint kept after the first run (`anchor`), and the chain grown since: it extends the \
                          anchor.",
            build: || {
                let mut w = one_file();
                keep_anchor(&w);
                restart(&mut w);
                append(&w, "app.log", b"request 2 ok\n");
                stop(&w);
                w
            },
            findings: &[],
            warnings: &[],
        },
        Vector {
            name: "anchor-behind",
            description: "The newest record dropped and the head moved back to match: the chain is whole, but shorter \
                          than the checkpoint kept (`anchor`).",
            build: || {
                let w = one_file();
                keep_anchor(&w);
                cut_last(&w);
                w
            },
            findings: &[("chain.behind_anchor", 1)],
            warnings: &[],
        },
        Vector {
            name: "anchor-forked",
            description: "After the checkpoint was kept (`anchor`), the chain re-signed with the key and one record \
                          changed (the Create's mode): every signature holds, but the chain is not the one the \
                          checkpoint commits to.",
            build: || {
                let w = one_file();
                keep_anchor(&w);
                forge(&w, |r| {
                    if let Payload::Create { mode, .. } = &mut r[1].1 {
                        *mode |= 0o002;
                    }
                });
                w
            },
            findings: &[("chain.forked_from_anchor", 1)],
            warnings: &[],
        },
        Vector {
            name: "anchor-unverified",
            description: "The checkpoint kept (`anchor`) has a changed signature: it proves nothing, and says so.",
            build: || {
                let w = one_file();
                keep_anchor(&w);
                EXTRAS.with(|e| {
                    let mut e = e.borrow_mut();
                    let note = e.anchor.as_mut().unwrap();
                    // The signature's base64 sits before the final newline.
                    let at = note.len() - 3;
                    note[at] = if note[at] == b'A' { b'B' } else { b'A' };
                });
                w
            },
            findings: &[("anchor.unverified", 1)],
            warnings: &[],
        },
        Vector {
            name: "expected-head-missing",
            description: "The head written down after the run (`expect-head`), then the newest record dropped and the \
                          head moved back to match.",
            build: || {
                let w = one_file();
                keep_head(&w);
                cut_last(&w);
                w
            },
            findings: &[("chain.expected_head_missing", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-seq-exhausted",
            description: "A record with the largest seq (2^64 - 1) appended, signed with the key: nothing can follow \
                          it, and the seqs between are missing.",
            build: || {
                let w = one_file();
                let head = w.store.head().unwrap().unwrap();
                let fields = Unsigned {
                    seq: u64::MAX,
                    time_ns: head.time_ns,
                    payload: Payload::ClockJump { system_ns: head.time_ns, floor_ns: head.time_ns },
                    prev_hash: head.hash,
                };
                let record = chain::sign(fields, &w.key);
                w.store.raw_put_record(u64::MAX, record.encode());
                w.store.raw_set_head(Some(Head { seq: u64::MAX, hash: record.hash, time_ns: head.time_ns }));
                w
            },
            findings: &[("chain.gap", 1), ("chain.seq_exhausted", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-planted-at-a-deleted-name",
            description: "An expired file deleted through wormfs, then another file written at its name behind \
                          wormfs' back: not the deleted file (a delete that did not happen), a planted one.",
            build: || {
                let w = world();
                file(&w, "app.log", b"the real log\n");
                later(&w, 2 * DAY);
                w.fs.unlink(ROOT, OsStr::new("app.log")).unwrap();
                stop(&w);
                fs::write(w.data().join("app.log"), b"the real log, rewritten\n").unwrap();
                w
            },
            findings: &[("file.injected", 1)],
            warnings: &[],
        },
        Vector {
            name: "file-moved-back-and-changed",
            description: "An expired file renamed through wormfs, then moved back to its old name behind wormfs' back \
                          and changed: not a rename that did not happen. The renamed history's file is missing and \
                          the one at the old name is planted.",
            build: || {
                let w = world();
                file(&w, "app.log", b"the real log\n");
                later(&w, 2 * DAY);
                w.fs.rename(ROOT, OsStr::new("app.log"), ROOT, OsStr::new("app.old"), false).unwrap();
                stop(&w);
                let (old, new) = (w.data().join("app.log"), w.data().join("app.old"));
                unprotect(&new);
                fs::rename(&new, &old).unwrap();
                fs::write(&old, b"the real log, changed\n").unwrap();
                w
            },
            findings: &[("file.missing", 1), ("file.injected", 1)],
            warnings: &[],
        },
        // ---- warnings: intact, but something to know ----
        Vector {
            name: "warn-unsealed-tail",
            description:
                "The daemon died with a file open: the chain has no Unmount, and bytes past the last seal are \
                          not sealed yet (the next Mount would seal them as Recovered).",
            build: || {
                let w = world();
                file(&w, "app.log", b"sealed\n");
                append(&w, "app.log", b"sealed too\n");
                let ino = w.fs.lookup(ROOT, OsStr::new("app.log")).unwrap().ino;
                let fh = w.fs.open(&caller(), ino, libc::O_WRONLY | libc::O_APPEND).unwrap().fh;
                w.append(fh, b"not sealed yet\n");
                w
            },
            findings: &[],
            warnings: &[("file.unsealed_tail", 1)],
        },
        Vector {
            name: "warn-adopted",
            description: "A new chain whose first Mount adopted a file already in the data directory \
                          (`--adopt-existing`): Recovered with adopted = 1 right after the chain's first Mount.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let bytes = b"started\nrequest 1 ok\n";
                    let segment = seal("app.log", 0, bytes, [0; 32], s.retain_until_ns);
                    let (mount, end) = (r[0].clone(), r.last().unwrap().clone());
                    *r = vec![mount.clone(), (mount.0, Payload::Recovered { segment, adopted: true }), end];
                });
                w
            },
            findings: &[],
            warnings: &[("file.adopted", 1)],
        },
        Vector {
            name: "warn-delete-not-completed",
            description: "A Delete of the expired file was recorded, then the daemon stopped before the unlink: the \
                          file is still there, intact (the next Mount would record an Aborted).",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let t = r.last().unwrap().0 + 2 * DAY;
                    *r.last_mut().unwrap() = (t, delete_of(s));
                });
                w
            },
            findings: &[],
            warnings: &[("file.delete_not_completed", 1)],
        },
        Vector {
            name: "warn-rename-not-completed",
            description: "A Rename of the expired file was recorded, then the daemon stopped before the rename: the \
                          file is still at its old name, intact.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let t = r.last().unwrap().0 + 2 * DAY;
                    *r.last_mut().unwrap() = (t, Payload::Rename { from: path("app.log"), to: path("app.old") });
                });
                w
            },
            findings: &[],
            warnings: &[("file.rename_not_completed", 1)],
        },
        Vector {
            name: "warn-stale-epoch",
            description:
                "Epochs of an hour, and the chain's newest epoch began long ago with no Unmount since: records \
                          may have been dropped from its end, or the daemon stopped uncleanly.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let public_key = *epoch_key(0).verifying_key().as_bytes();
                    r.insert(1, (T0, Payload::KeyRotate { epoch: 1, public_key, epoch_ns: 3600 * SEC }));
                    r.pop();
                });
                w
            },
            findings: &[],
            warnings: &[("chain.stale_epoch", 1)],
        },
        Vector {
            name: "forged-truncate-misplaced",
            description: "A Truncate whose kept_start is not the start of the segment the cut went through.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let t = r[at].0 + 2 * DAY;
                    let truncate = Payload::Truncate {
                        path: path("app.log"),
                        old_size: s.end,
                        new_size: 8,
                        kept_start: 3,
                        kept_hash: sha256(b"rted\n"),
                    };
                    r.insert(at, (t, truncate));
                    let n = r.len();
                    r[n - 1].0 = t;
                });
                rewrite_file(&w, "app.log", b"started\n");
                w
            },
            findings: &[("file.truncate_misplaced", 1)],
            warnings: &[],
        },
        // ---- the records changed without the key ----
        Vector {
            name: "chain-gap",
            description: "Record 3, the file's only Seal, removed from the index: a gap in the seqs, and the \
                          file's bytes are no longer covered by any seal.",
            build: || {
                let w = one_file();
                w.store.raw_delete_record(3);
                w
            },
            findings: &[("chain.gap", 1), ("file.appended_after_unmount", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-bad-hash",
            description: "A byte of a record's stored hash changed: it is not SHA-256 of the body. The signature \
                          (over the recomputed hash) and the next record's link (to the recomputed hash) still hold.",
            build: || {
                let w = one_file();
                let mut bytes = w.store.record_bytes(2).unwrap().unwrap();
                let at = bytes.len() - 64 - 1;
                bytes[at] ^= 1;
                w.store.raw_put_record(2, bytes);
                w
            },
            findings: &[("chain.bad_hash", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-bad-signature",
            description: "A byte of a record's signature changed.",
            build: || {
                let w = one_file();
                let mut bytes = w.store.record_bytes(2).unwrap().unwrap();
                let at = bytes.len() - 1;
                bytes[at] ^= 1;
                w.store.raw_put_record(2, bytes);
                w
            },
            findings: &[("chain.bad_signature", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-body-changed",
            description: "The Create's mode changed and the record's hash recomputed, without the key: the signature \
                          fails, and the next record's prev_hash no longer matches the (recomputed) hash.",
            build: || {
                let w = one_file();
                let mut record = Record::decode(&w.store.record_bytes(2).unwrap().unwrap()).unwrap();
                if let Payload::Create { mode, .. } = &mut record.fields.payload {
                    *mode |= 0o002;
                }
                record.hash = record.fields.hash();
                w.store.raw_put_record(2, record.encode());
                w
            },
            findings: &[("chain.bad_signature", 1), ("chain.broken_link", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-undecodable",
            description: "Record 2, the file's Create, replaced by bytes that do not decode: the file's seals then \
                          have no origin.",
            build: || {
                let w = one_file();
                w.store.raw_put_record(2, b"not a record".to_vec());
                w
            },
            findings: &[("chain.undecodable", 1), ("file.sealed_without_origin", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-head-mismatch",
            description: "The newest record removed: the chain is whole but ends before the head the index keeps.",
            build: || {
                let w = one_file();
                let last = w.records().len() as u64;
                w.store.raw_delete_record(last);
                w
            },
            findings: &[("chain.head_mismatch", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-misplaced",
            description: "A valid record stored under another key (seq) than its own.",
            build: || {
                let w = one_file();
                let last = w.records().len() as u64;
                let bytes = w.store.record_bytes(last).unwrap().unwrap();
                w.store.raw_delete_record(last);
                w.store.raw_put_record(last + 5, bytes);
                w
            },
            findings: &[("chain.misplaced", 1)],
            warnings: &[],
        },
        Vector {
            name: "chain-out-of-order",
            description: "A copy of the first record (the Mount) stored again after the last: under a key that is not \
                          its seq, with a seq below the one expected, and dated before the record it follows.",
            build: || {
                let w = one_file();
                let last = w.records().len() as u64;
                let first = w.store.record_bytes(1).unwrap().unwrap();
                w.store.raw_put_record(last + 1, first);
                w
            },
            findings: &[("chain.misplaced", 1), ("chain.out_of_order", 1), ("chain.time_backwards", 1)],
            warnings: &[],
        },
        // ---- the records rewritten with the key ----
        Vector {
            name: "forged-time-backwards",
            description: "The chain re-signed with the key, one record dated before the one it follows.",
            build: || {
                let w = one_file();
                forge(&w, |r| r[3].0 = r[2].0 - SEC);
                w
            },
            findings: &[("chain.time_backwards", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-sealed-without-origin",
            description: "The Create of the file removed and the chain re-signed: its seals have no history to extend.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let at = position(r, |p| matches!(p, Payload::Create { .. }));
                    r.remove(at);
                });
                w
            },
            findings: &[("file.sealed_without_origin", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-no-history",
            description: "A Retention record for a path that no record ever created.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let ghost = Payload::Retention { path: path("ghost.log"), retain_until_ns: T0 + 9 * DAY, uid: 0 };
                    r.insert(at, (r[at].0, ghost));
                });
                w
            },
            findings: &[("file.no_history", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-recreated",
            description: "A second Create of the same path inserted while its history is open: it would erase the \
                          history, so the file's sealed bytes look unsealed after it.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let at = position(r, |p| matches!(p, Payload::Create { .. }));
                    let create = r[at].clone();
                    r.insert(at + 2, (r[at + 1].0, create.1));
                });
                w
            },
            findings: &[("file.recreated", 1), ("file.appended_after_unmount", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-delete-before-expiry",
            description: "A Delete of the file dated before its retain-until, the file removed to match.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    r.insert(at, (r[at].0, delete_of(s)));
                });
                remove_behind(&w, "app.log");
                w
            },
            findings: &[("file.changed_before_expiry", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-delete-under-hold",
            description: "After expiry, a Delete of a file under a legal hold on the whole mount.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let t = r[at].0;
                    let hold =
                        Payload::Hold { prefix: RelPath::root(), set: true, reason: "litigation".into(), uid: 0 };
                    r.insert(at, (t, hold));
                    r.insert(at + 1, (t + 2 * DAY, delete_of(s)));
                    let n = r.len();
                    r[n - 1].0 = t + 2 * DAY;
                });
                remove_behind(&w, "app.log");
                w
            },
            findings: &[("file.changed_under_hold", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-record-while-unmounted",
            description: "A Seal appended after the Unmount, with no Mount between.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let t = r.last().unwrap().0;
                    r.push((t, Payload::Seal(seal("app.log", s.end, b"planted\n", s.file_hash, s.retain_until_ns))));
                });
                append_behind(&w, "app.log", b"planted\n");
                w
            },
            findings: &[("chain.record_while_unmounted", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-seals-do-not-chain",
            description: "A second segment whose start is not where the first one ended.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let t = r[at].0;
                    let gap = seal("app.log", s.end + 1, b"x\n", s.file_hash, s.retain_until_ns);
                    r.insert(at, (t, Payload::Seal(gap)));
                });
                append_behind(&w, "app.log", b"?x\n");
                w
            },
            findings: &[("file.seals_do_not_chain", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-aborted-nothing",
            description: "An Aborted record naming a record that is not a Delete, Rename or Truncate.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    r.insert(at, (r[at].0, Payload::Aborted { change: 2, errno: 5 }));
                });
                w
            },
            findings: &[("chain.aborted_nothing", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-from-the-future",
            description: "The last record dated in the year 2100.",
            build: || {
                let w = one_file();
                forge(&w, |r| r.last_mut().unwrap().0 = 4_102_444_800 * SEC);
                w
            },
            findings: &[("chain.from_the_future", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-unknown-key",
            description: "A Mount naming the id of a key that is not the current one.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    if let Payload::Mount { key_id, .. } = &mut r[0].1 {
                        *key_id = [0xee; 8];
                    }
                });
                w
            },
            findings: &[("chain.unknown_key", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-recovered-outside-recovery",
            description: "A Recovered record in the middle of a run, not right after its Mount.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let segment = seal("app.log", s.end, b"late\n", s.file_hash, s.retain_until_ns);
                    r.insert(at, (r[at].0, Payload::Recovered { segment, adopted: false }));
                });
                append_behind(&w, "app.log", b"late\n");
                w
            },
            findings: &[("chain.recovered_outside_recovery", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-sealed-after-clean-unmount",
            description: "Bytes added behind wormfs' back while it was cleanly stopped, then sealed as Recovered by a \
                          later Mount: a clean stop leaves nothing to recover.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let t = r.last().unwrap().0 + SEC;
                    let mount = r[0].1.clone();
                    r.push((t, mount));
                    let segment = seal("app.log", s.end, b"planted\n", s.file_hash, s.retain_until_ns);
                    r.push((t, Payload::Recovered { segment, adopted: false }));
                    r.push((t + SEC, Payload::Unmount));
                });
                append_behind(&w, "app.log", b"planted\n");
                w
            },
            findings: &[("file.sealed_after_clean_unmount", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-pruned-without-archive",
            description: "After expiry, a Pruned record whose `archived` names no Archived record, the file removed.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let t = r[at].0 + 2 * DAY;
                    let (path, size, file_hash, retain_until_ns) = (s.path, s.end, s.file_hash, s.retain_until_ns);
                    r.insert(at, (t, Payload::Pruned { path, size, file_hash, retain_until_ns, archived: 2 }));
                    let n = r.len();
                    r[n - 1].0 = t;
                });
                remove_behind(&w, "app.log");
                w
            },
            findings: &[("file.pruned_without_archive", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-archived-unsealed",
            description: "An Archived record of a size and file_hash the file's seals never had.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let copy = Archive {
                        path: s.path.clone(),
                        size: s.end + 1,
                        file_hash: [0x11; 32],
                        bucket: "acme-logs".into(),
                        key: "web1/app.log@11".into(),
                        version_id: "v1".into(),
                        receipt_version_id: "r1".into(),
                        retain_until_ns: s.retain_until_ns,
                    };
                    r.insert(at, (r[at].0, Payload::Archived(copy)));
                });
                w
            },
            findings: &[("chain.archived_unsealed", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-wrong-epoch-key",
            description: "After a KeyRotate to epoch 1, a record signed with epoch 0's key (a stolen old key).",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let public_key = *epoch_key(0).verifying_key().as_bytes();
                    r.insert(1, (T0, Payload::KeyRotate { epoch: 1, public_key, epoch_ns: DAY }));
                });
                // Record 3 re-signed with the anchor key instead of epoch 1's.
                let mut record = Record::decode(&w.store.record_bytes(3).unwrap().unwrap()).unwrap();
                record = chain::sign(record.fields, &w.key);
                w.store.raw_put_record(3, record.encode());
                w
            },
            findings: &[("chain.wrong_epoch_key", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-bad-rotation",
            description: "A KeyRotate that skips an epoch number (0 to 2).",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let public_key = *epoch_key(0).verifying_key().as_bytes();
                    r.insert(1, (T0, Payload::KeyRotate { epoch: 2, public_key, epoch_ns: DAY }));
                });
                w
            },
            findings: &[("chain.bad_rotation", 1)],
            warnings: &[],
        },
        Vector {
            name: "forged-outside-epoch",
            description: "Epoch 1 lasts an hour (epoch_ns); a record of the same run dated three hours later is still \
                          signed by its key.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let public_key = *epoch_key(0).verifying_key().as_bytes();
                    r.insert(1, (T0, Payload::KeyRotate { epoch: 1, public_key, epoch_ns: 3600 * SEC }));
                    let n = r.len();
                    r[n - 2].0 = T0 + 3 * 3600 * SEC;
                    r[n - 1].0 = T0 + 3 * 3600 * SEC;
                });
                w
            },
            findings: &[("chain.outside_epoch", 2)],
            warnings: &[],
        },
        Vector {
            name: "forged-truncate-then-sealed",
            description:
                "An expired file truncated through its segment (Truncate keeps the cut segment's start), then \
                          different bytes sealed after the cut: the Truncate's kept_hash does not match what was kept.",
            build: || {
                let w = one_file();
                forge(&w, |r| {
                    let s = last_seal(r, "app.log");
                    let at = position(r, |p| matches!(p, Payload::Unmount));
                    let t = r[at].0 + 2 * DAY;
                    let truncate = Payload::Truncate {
                        path: path("app.log"),
                        old_size: s.end,
                        new_size: 8,
                        kept_start: 0,
                        kept_hash: sha256(b"started\n"),
                    };
                    r.insert(at, (t, truncate));
                    let next = seal("app.log", 8, b"rewritten\n", s.file_hash, s.retain_until_ns);
                    r.insert(at + 1, (t, Payload::Seal(next)));
                    let n = r.len();
                    r[n - 1].0 = t;
                });
                rewrite_file(&w, "app.log", b"STARTED\nrewritten\n");
                w
            },
            findings: &[("file.content_changed", 1)],
            warnings: &[],
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Writing and checking them
// ---------------------------------------------------------------------------------------------

/// Every regular file and symlink under `dir`, relative, with its bytes (a symlink: its target).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (bool, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (bool, Vec<u8>)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let ty = e.file_type().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            if ty.is_dir() {
                let before = out.len();
                walk(root, &e.path(), out);
                // git keeps no empty directory: a vector must not need one.
                assert!(out.len() > before, "empty directory {} in a vector", rel.display());
            } else if ty.is_symlink() {
                let target = fs::read_link(e.path()).unwrap();
                out.insert(rel, (true, target.into_os_string().into_vec()));
            } else {
                out.insert(rel, (false, fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn counts(pairs: &[(&str, usize)]) -> Value {
    Value::Object(pairs.iter().map(|(k, n)| (k.to_string(), json!(n))).collect())
}

/// Write vector `v`, built, into `dir`.
fn write_vector(v: &Vector, dir: &Path) {
    EXTRAS.with(|e| *e.borrow_mut() = Extras::default());
    let w = (v.build)();
    let extras = EXTRAS.with(|e| std::mem::take(&mut *e.borrow_mut()));
    let _ = fs::remove_dir_all(dir);
    // No data/ when the store has no files: git keeps no empty directory, so a fresh clone
    // would not have one either.
    fs::create_dir_all(dir).unwrap();
    for (rel, (is_link, bytes)) in tree(w.data()) {
        let to = dir.join("data").join(&rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        if is_link {
            symlink(OsStr::from_bytes(&bytes), &to).unwrap();
        } else {
            fs::write(&to, bytes).unwrap();
        }
    }
    let mut export = Vec::new();
    wormfs::export::write(w.store.as_ref(), &mut export).unwrap();
    fs::write(dir.join("records.export"), export).unwrap();
    if let Some(anchor) = extras.anchor {
        fs::write(dir.join("anchor"), anchor).unwrap();
    }
    if let Some(head) = extras.expect_head {
        fs::write(dir.join("expect-head"), format!("{head}\n")).unwrap();
    }
    let intact = v.findings.is_empty();
    let expected = json!({
        "description": v.description,
        "verdict": if intact { "intact" } else { "tampered" },
        "exit": if intact { 0 } else { 1 },
        "findings": counts(v.findings),
        "warnings": counts(v.warnings),
    });
    fs::write(dir.join("expected.json"), format!("{expected:#}\n")).unwrap();
}

/// `wormfs verify --export` of the vector in `dir`, as JSON.
fn verify(dir: &Path, pubkey: &str) -> (Option<i32>, Value, String) {
    // A store with no files has no data/ (git keeps no empty directory): an empty one stands in.
    let empty = tempfile::tempdir().unwrap();
    let data = if dir.join("data").is_dir() { dir.join("data") } else { empty.path().to_path_buf() };
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--json", "--pubkey", pubkey, "--export"])
        .arg(dir.join("records.export"))
        .arg("--data")
        .arg(&data);
    if dir.join("anchor").exists() {
        cmd.arg("--anchor").arg(dir.join("anchor"));
        cmd.arg("--checkpoint-key").arg(Path::new(VECTORS).join("checkpoint.vkey"));
    }
    if let Ok(head) = fs::read_to_string(dir.join("expect-head")) {
        cmd.arg("--expect-head").arg(head.trim());
    }
    let out = cmd
        .env_remove("WORMFS_STATE")
        .env_remove("WORMFS_DATA")
        .env("WORMFS_ENV_FILE", "/nonexistent")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{}: verify printed no JSON ({e}): {}\n{stderr}", dir.display(), String::from_utf8_lossy(&out.stdout))
    });
    (out.status.code(), json, stderr)
}

/// kind -> how many, from a verify report's "findings" or "warnings".
fn tally(report: &Value, field: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for item in report[field].as_array().unwrap() {
        *out.entry(item["kind"].as_str().unwrap().to_string()).or_default() += 1;
    }
    out
}

fn expected_tally(expected: &Value, field: &str) -> BTreeMap<String, u64> {
    expected[field].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect()
}

/// The names of the committed vectors.
fn committed() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(VECTORS)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn wormfs_verify_gives_every_committed_vector_its_expected_verdict() {
    let pubkey = fs::read_to_string(Path::new(VECTORS).join("pubkey")).unwrap().trim().to_string();
    assert_eq!(pubkey, hex(SigningKey::from_bytes(&[ANCHOR_SEED; 32]).verifying_key().as_bytes()));
    let names = committed();
    assert!(names.len() >= 50, "only {} vectors in {VECTORS}", names.len());
    let mut shown = BTreeSet::new();
    let mut warned = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut wrong = Vec::new();
    for name in &names {
        let dir = Path::new(VECTORS).join(name);
        let expected: Value = serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let (code, report, stderr) = verify(&dir, &pubkey);
        let (findings, warnings) = (tally(&report, "findings"), tally(&report, "warnings"));
        let want = (expected_tally(&expected, "findings"), expected_tally(&expected, "warnings"));
        if code != expected["exit"].as_i64().map(|c| c as i32)
            || report["verdict"] != expected["verdict"]
            || (findings.clone(), warnings.clone()) != want
        {
            wrong.push(format!(
                "{name}: exit {code:?}, {} {findings:?} {warnings:?}; expected {} {:?} {:?}\n{stderr}{report:#}",
                report["verdict"], expected["verdict"], want.0, want.1
            ));
        }
        shown.extend(findings.into_keys());
        warned.extend(warnings.into_keys());
        let export = fs::read_to_string(dir.join("records.export")).unwrap();
        for line in export.lines().filter_map(|l| l.strip_prefix("record ")) {
            let bytes = wormfs::core::segment::from_hex(line.split(' ').nth(1).unwrap()).unwrap();
            if let Ok(r) = Record::decode(&bytes) {
                kinds.insert(r.fields.payload.kind().name());
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} vectors disagree:\n{}", wrong.len(), names.len(), wrong.join("\n"));

    // Every finding and warning the README documents (but the archive's, which need a bucket)
    // is shown by a vector; every record kind is in one.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let documented = documented_findings(&readme);
    let uncovered: Vec<_> = documented.iter().filter(|k| !shown.contains(*k)).cloned().collect();
    assert!(uncovered.is_empty(), "findings no vector shows: {uncovered:?}");
    // (The warnings paragraph also names findings in passing: those are not warnings.)
    let unwarned: Vec<_> =
        documented_warnings(&readme).into_iter().filter(|k| !warned.contains(k) && !documented.contains(k)).collect();
    assert!(unwarned.is_empty(), "warnings no vector shows: {unwarned:?}");
    let all_kinds = [
        "Mount",
        "Unmount",
        "Create",
        "Seal",
        "Recovered",
        "Delete",
        "Hold",
        "Retention",
        "KeyRotate",
        "Rename",
        "Truncate",
        "ClockJump",
        "Access",
        "Damaged",
        "Aborted",
        "Archived",
        "Pruned",
    ];
    let missing: Vec<_> = all_kinds.iter().filter(|k| !kinds.contains(*k)).collect();
    assert!(missing.is_empty(), "record kinds in no vector: {missing:?} (have {kinds:?})");
}

/// The finding kinds the README's "What each finding means" table lists (`chain.x`, `file.x`,
/// `anchor.x` in its first column).
fn documented_findings(readme: &str) -> BTreeSet<String> {
    let start = readme.find("### What each finding means").expect("README has no finding table");
    let section = &readme[start..];
    let end = section[4..].find("\n### ").map_or(section.len(), |i| i + 4);
    // Every code in a row's first cell: some rows name two (`chain.misplaced`, `chain.out_of_order`).
    section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|l| {
            let cell = l.split(" |").next().unwrap();
            format!("`{cell}").split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>()
        })
        .filter(|k| !k.starts_with("archive."))
        .collect()
}

/// The warning kinds the README names after "Warnings are not findings" (but `archive.*`, which
/// need a bucket).
fn documented_warnings(readme: &str) -> BTreeSet<String> {
    let start = readme.find("Warnings are not findings").expect("README lists no warnings");
    let paragraph = &readme[start..start + readme[start..].find("\n\n").unwrap()];
    paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| (k.starts_with("file.") || k.starts_with("chain.")) && !k.contains(' '))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_generator_makes_exactly_the_committed_vectors() {
    let write = std::env::var_os("WORMFS_WRITE_VECTORS").is_some_and(|v| v == "1");
    let generated = tempfile::tempdir().unwrap();
    let vectors = vectors();
    let mut names = BTreeSet::new();
    for v in &vectors {
        assert!(names.insert(v.name), "two vectors named {}", v.name);
        write_vector(v, &generated.path().join(v.name));
    }
    if write {
        for name in committed() {
            let _ = fs::remove_dir_all(Path::new(VECTORS).join(name));
        }
        for v in &vectors {
            write_vector(v, &Path::new(VECTORS).join(v.name));
        }
        let pubkey = hex(SigningKey::from_bytes(&[ANCHOR_SEED; 32]).verifying_key().as_bytes());
        fs::write(Path::new(VECTORS).join("pubkey"), format!("{pubkey}\n")).unwrap();
        let signer = SigningKey::from_bytes(&[CHECKPOINT_SEED; 32]);
        let vkey = wormfs::keys::vkey(CHECKPOINT_ORIGIN, &signer.verifying_key());
        fs::write(Path::new(VECTORS).join("checkpoint.vkey"), format!("{vkey}\n")).unwrap();
    }
    assert_eq!(
        committed(),
        names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "the committed vectors are not the generator's"
    );
    for v in &vectors {
        let (made, kept) = (generated.path().join(v.name), Path::new(VECTORS).join(v.name));
        for file in ["records.export", "expected.json", "anchor", "expect-head"] {
            assert!(
                fs::read(made.join(file)).ok() == fs::read(kept.join(file)).ok(),
                "{}/{file} is not what the generator makes: WORMFS_WRITE_VECTORS=1 cargo test --test vectors rewrites it",
                v.name
            );
        }
        assert!(tree(&made.join("data")) == tree(&kept.join("data")), "{}/data differs from the generator's", v.name);
    }
}

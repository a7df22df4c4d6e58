//! The outside review's attacks, each through a real mount: someone with root writes the data
//! directory and the index behind wormfs' back, and wormfs must either refuse (with the bytes on
//! disk unchanged) or `wormfs verify` must exit 1 naming the file — and the next mount must work.
//! Legitimate histories that look alike (a name reused after an authorised delete, a crash) stay
//! clean.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use serde_json::Value;

use common::*;

const EIO: i32 = libc::EIO;
const EPERM: i32 = libc::EPERM;

/// `wormfs verify --json` with the public key kept in the state directory: (exit status, report).
fn verify(tm: &TestMount) -> (i32, Value) {
    let mut cmd = Command::new(WORMFS);
    cmd.arg("verify")
        .arg("--data")
        .arg(tm.data())
        .arg("--state")
        .arg(tm.state())
        .arg("--pubkey")
        .arg(tm.state().join("signing.pub"))
        .arg("--json")
        .env_remove("RUST_LOG");
    let out = run_cmd(&mut cmd);
    let doc: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {out:#?}"));
    (out.status.code().expect("verify exited by a signal"), doc)
}

/// The kinds of `doc`'s findings (or warnings) about `path` ("/v.log").
fn kinds_about(doc: &Value, list: &str, path: &str) -> Vec<String> {
    doc[list]
        .as_array()
        .expect("an array")
        .iter()
        .filter(|f| f["path"] == path)
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Verify must exit 1 with a finding of `kind` naming `path`.
#[track_caller]
fn assert_found(tm: &TestMount, kind: &str, path: &str) -> Value {
    let (code, doc) = verify(tm);
    assert_eq!(code, 1, "verify must find tampering: {doc:#}");
    let kinds = kinds_about(&doc, "findings", path);
    assert!(kinds.iter().any(|k| k == kind), "expected {kind} about {path}, got {kinds:?}: {doc:#}");
    let finding = doc["findings"].as_array().unwrap().iter().find(|f| f["kind"] == kind && f["path"] == path).unwrap();
    assert!(finding["message"].as_str().unwrap().contains(path), "the message names the file: {finding}");
    doc
}

#[track_caller]
fn assert_intact(tm: &TestMount) -> Value {
    let (code, doc) = verify(tm);
    assert_eq!(code, 0, "verify must find nothing wrong: {doc:#}");
    doc
}

fn records_about<'a>(records: &'a [Value], kind: &str, path: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind && r["path"] == path).collect()
}

/// Append to a backing file directly, as root with CAP_LINUX_IMMUTABLE can (clearing wormfs'
/// flags first).
fn append_in_data_dir(path: &Path, bytes: &[u8]) {
    unprotect(path);
    OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

fn open_append(path: &Path) -> std::io::Result<fs::File> {
    OpenOptions::new().append(true).open(path)
}

// ---------------------------------------------------------------------------------------------
// 1. History erased by re-creating a file
// ---------------------------------------------------------------------------------------------

#[test]
fn recreating_a_file_whose_backing_file_vanished_is_refused_and_the_history_stays() {
    let mut tm = TestMount::start();
    tm.create("v.log", b"orig\n");
    remove_in_data_dir(&tm.backing("v.log"));

    let forged = fs::write(tm.path("v.log"), b"forged\n");
    assert_errno(forged, EIO);
    assert_absent(tm.backing("v.log"));
    let creates = records_about(&tm.records(), "Create", "/v.log").len();
    assert_eq!(creates, 1, "no second Create erases the first history");
    assert!(tm.log().contains("/v.log") && tm.log().contains("missing"), "logged as damage:\n{}", tm.log());
    tm.assert_still_works();

    assert_found(&tm, "file.missing", "/v.log");
    tm.stop();
    tm.restart();
    assert_found(&tm, "file.missing", "/v.log");
}

#[test]
fn renaming_onto_a_name_whose_backing_file_vanished_is_refused() {
    let mut tm = TestMount::builder().arg("--retention").arg("1s").start();
    tm.create("a.log", b"a\n");
    tm.create("b.log", b"b\n");
    std::thread::sleep(Duration::from_millis(1300));
    remove_in_data_dir(&tm.backing("b.log"));
    let before = Snapshot::of(tm.backing("a.log"));
    assert_errno(fs::rename(tm.path("a.log"), tm.path("b.log")), EPERM);
    before.assert_unchanged();
    assert_absent(tm.backing("b.log"));
    assert!(records_about(&tm.records(), "Rename", "/a.log").is_empty());
    tm.stop();
    tm.restart();
    assert_found(&tm, "file.missing", "/b.log");
}

#[test]
fn a_name_reused_after_an_authorised_delete_stays_clean() {
    let mut tm = TestMount::builder().arg("--retention").arg("1s").start();
    tm.create("r.log", b"first life\n");
    std::thread::sleep(Duration::from_millis(1300));
    fs::remove_file(tm.path("r.log")).unwrap();
    tm.create("r.log", b"second life\n");
    std::thread::sleep(Duration::from_millis(1300));
    fs::rename(tm.path("r.log"), tm.path("moved.log")).unwrap();
    tm.create("r.log", b"third life\n");
    tm.stop();
    let doc = assert_intact(&tm);
    assert!(doc["warnings"].as_array().unwrap().is_empty(), "{doc:#}");
    tm.restart();
    assert!(!tm.log().contains("disagree with the chain"), "an honest index needs no repair:\n{}", tm.log());
    assert!(!tm.log().contains("ERROR"), "{}", tm.log());
    assert_intact(&tm);
}

// ---------------------------------------------------------------------------------------------
// 2. Bytes appended behind wormfs' back
// ---------------------------------------------------------------------------------------------

#[test]
fn bytes_appended_after_a_clean_unmount_are_never_sealed_and_are_a_finding() {
    let mut tm = TestMount::start();
    tm.create("a.log", b"x\n");
    tm.stop();
    append_in_data_dir(&tm.backing("a.log"), b"planted\n");
    tm.restart();

    let records = tm.records();
    assert!(records_about(&records, "Recovered", "/a.log").is_empty(), "never sealed: {records:#?}");
    let damaged = records_about(&records, "Damaged", "/a.log");
    assert_eq!(damaged.len(), 1, "{records:#?}");
    assert_eq!((damaged[0]["sealed"].as_u64(), damaged[0]["size"].as_u64()), (Some(2), Some(10)));

    let snap = Snapshot::of(tm.backing("a.log"));
    assert_errno(open_append(&tm.path("a.log")), EIO);
    snap.assert_unchanged();
    assert_eq!(fs::read(tm.path("a.log")).unwrap(), b"x\nplanted\n", "reads still work");
    tm.assert_still_works();
    let doc = assert_found(&tm, "file.damaged", "/a.log");
    assert!(doc["findings"].to_string().contains("[2, 10)"), "the byte range is named: {doc:#}");

    // Recorded once, however often it is mounted.
    tm.stop();
    tm.restart();
    assert_eq!(records_about(&tm.records(), "Damaged", "/a.log").len(), 1);
    tm.stop();
    assert_found(&tm, "file.damaged", "/a.log");
}

#[test]
fn bytes_appended_in_the_data_dir_while_mounted_are_not_sealed_with_the_next_append() {
    let tm = TestMount::start();
    tm.create("live.log", b"sealed\n");
    append_in_data_dir(&tm.backing("live.log"), b"behind\n");
    let snap = Snapshot::of(tm.backing("live.log"));
    assert_errno(open_append(&tm.path("live.log")), EIO);
    snap.assert_unchanged();
    let records = tm.records();
    assert_eq!(records_about(&records, "Seal", "/live.log").len(), 1, "only the first close's seal");
    assert_eq!(records_about(&records, "Damaged", "/live.log").len(), 1);
    tm.assert_still_works();
    assert_found(&tm, "file.damaged", "/live.log");
}

#[test]
fn bytes_left_by_a_crash_are_sealed_at_recovery_with_a_warning_naming_the_range() {
    let mut tm = TestMount::start();
    let mut f = OpenOptions::new().create(true).append(true).mode(0o644).open(tm.path("c.log")).unwrap();
    f.write_all(b"written before the crash\n").unwrap();
    tm.kill9();
    drop(f);
    tm.restart();
    let records = tm.records();
    assert_eq!(records_about(&records, "Recovered", "/c.log").len(), 1, "{records:#?}");
    tm.stop();
    let doc = assert_intact(&tm);
    let kinds = kinds_about(&doc, "warnings", "/c.log");
    assert_eq!(kinds, vec!["file.recovered_unproven"], "{doc:#}");
    let warning = &doc["warnings"][0];
    assert_eq!((warning["start"].as_u64(), warning["end"].as_u64()), (Some(0), Some(25)), "{warning}");
    assert!(warning["message"].as_str().unwrap().contains("origin not proven"), "{warning}");
}

// ---------------------------------------------------------------------------------------------
// 3. Seals for a file that was never created
// ---------------------------------------------------------------------------------------------

/// Add `path` to the index's `files` column family as if wormfs knew it with `sealed` bytes.
fn plant_index_entry(state: &Path, path: &str, sealed: u64) {
    let cfs = ["records", "files", "holds", "meta", "tree"].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = DB::open_cf_descriptors(&Options::default(), state.join("index"), cfs).expect("open the index");
    let mut value = vec![1u8];
    value.extend_from_slice(&sealed.to_be_bytes());
    value.extend_from_slice(&[0; 32]);
    value.extend_from_slice(&0u64.to_be_bytes());
    value.extend_from_slice(&0u64.to_be_bytes());
    value.extend_from_slice(&0u64.to_be_bytes());
    db.put_cf(db.cf_handle("files").unwrap(), path.as_bytes(), value).unwrap();
}

#[test]
fn a_planted_file_with_a_forged_index_entry_is_not_sealed_and_the_index_is_repaired() {
    let mut tm = TestMount::start();
    tm.create("real.log", b"real\n");
    tm.stop();
    fs::write(tm.backing("planted.log"), b"planted evidence\n").unwrap();
    plant_index_entry(tm.state(), "planted.log", 0);
    tm.restart();

    let records = tm.records();
    assert!(records_about(&records, "Recovered", "/planted.log").is_empty(), "{records:#?}");
    assert!(records_about(&records, "Seal", "/planted.log").is_empty(), "{records:#?}");
    assert_eq!(records_about(&records, "Damaged", "/planted.log").len(), 1, "{records:#?}");
    assert!(tm.log().contains("disagree with the chain"), "the repair is logged:\n{}", tm.log());

    let snap = Snapshot::of(tm.backing("planted.log"));
    assert_errno(open_append(&tm.path("planted.log")), EIO);
    assert_errno(fs::remove_file(tm.path("planted.log")), EPERM);
    snap.assert_unchanged();
    tm.stop();
    let doc = assert_found(&tm, "file.injected", "/planted.log");
    assert!(kinds_about(&doc, "findings", "/planted.log").contains(&"file.damaged".to_string()), "{doc:#}");
    tm.restart();
}

// ---------------------------------------------------------------------------------------------
// 4. A truncate hiding later tampering
// ---------------------------------------------------------------------------------------------

fn truncated_store() -> TestMount {
    let tm = TestMount::builder().arg("--retention").arg("1s").start();
    tm.create("t.log", b"0123456789");
    std::thread::sleep(Duration::from_millis(1300));
    nix::unistd::truncate(&tm.path("t.log"), 5).expect("truncate after expiry");
    tm.append("t.log", b"abcde");
    tm.append("t.log", b"fghij");
    assert_eq!(fs::read(tm.backing("t.log")).unwrap(), b"01234abcdefghij");
    tm
}

#[test]
fn bytes_appended_after_a_truncate_stay_checked() {
    let mut tm = truncated_store();
    tm.stop();
    let (code, doc) = verify(&tm);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["bytes_hashed"], 15, "every byte, the kept part included: {doc:#}");
    flip_byte(&tm.backing("t.log"), 12);
    assert_found(&tm, "file.content_changed", "/t.log");
    tm.restart();
}

#[test]
fn the_part_a_truncate_kept_stays_checked() {
    let mut tm = truncated_store();
    tm.stop();
    flip_byte(&tm.backing("t.log"), 2);
    let doc = assert_found(&tm, "file.content_changed", "/t.log");
    assert!(doc["findings"].to_string().contains("[0, 5)"), "{doc:#}");
}

#[test]
fn a_truncate_over_tampered_sealed_bytes_is_refused() {
    let tm = TestMount::builder().arg("--retention").arg("1s").start();
    tm.create("t.log", b"0123456789");
    std::thread::sleep(Duration::from_millis(1300));
    flip_byte(&tm.backing("t.log"), 1);
    let snap = Snapshot::of(tm.backing("t.log"));
    assert_errno(nix::unistd::truncate(&tm.path("t.log"), 5).map_err(std::io::Error::from), EIO);
    snap.assert_unchanged();
    assert!(records_about(&tm.records(), "Truncate", "/t.log").is_empty());
    assert_found(&tm, "file.content_changed", "/t.log");
}

/// Remove a backing file directly, as root with CAP_LINUX_IMMUTABLE can.
fn remove_in_data_dir(path: &Path) {
    unprotect(path);
    fs::remove_file(path).unwrap();
}

/// Change one byte of a backing file directly, as root with CAP_LINUX_IMMUTABLE can.
fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    unprotect(path);
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x20;
    f.write_all_at(&b, offset).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. Paths too long to open again
// ---------------------------------------------------------------------------------------------

#[test]
fn a_user_cannot_make_a_path_wormfs_could_not_open_again() {
    let mut tm = TestMount::builder().arg("--allow-other").start();
    let shared = tm.mkdir("shared");
    fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // As an ordinary user: 255-byte directory names, one inside the other, each made relative
    // to the last (so no single path the caller passes is long).
    let script = format!(
        "import os, errno\n\
         os.chdir({:?})\n\
         depth = 0\n\
         try:\n\
         \x20   while depth < 20:\n\
         \x20       os.mkdir('d' * 255)\n\
         \x20       os.chdir('d' * 255)\n\
         \x20       depth += 1\n\
         except OSError as e:\n\
         \x20   print(depth, errno.errorcode[e.errno])\n",
        shared.to_str().unwrap()
    );
    let out = run_as(1000, 1000, &format!("python3 -c {}", shell_quote(&script)));
    out.assert_success("the mkdir loop");
    // "shared/" is 7 bytes; each level adds 256: the 16th would pass 4095 bytes below DATA_DIR.
    assert_eq!(out.stdout.trim(), "15 ENAMETOOLONG", "{out:#?}");
    let mut deepest = tm.backing("shared");
    for _ in 0..15 {
        deepest.push("d".repeat(255));
    }
    assert!(deepest.is_dir());
    assert!(fs::read_dir(&deepest).unwrap().next().is_none(), "nothing was made below the limit");
    tm.stop();
    tm.restart();
    assert_intact(&tm);
}

#[test]
fn a_path_planted_too_deep_in_the_data_dir_is_a_finding_not_an_abort() {
    let mut tm = TestMount::start();
    tm.create("a.log", b"a\n");
    tm.stop();
    // Made directly in DATA_DIR, relative to each level, so no one call sees a long path.
    let script = format!(
        "import os\nos.chdir({:?})\nfor _ in range(17):\n    os.mkdir('d' * 255)\n    os.chdir('d' * 255)\nopen('deep.log', 'w').write('x')\n",
        tm.data().to_str().unwrap()
    );
    run(&format!("python3 -c {}", shell_quote(&script))).assert_success("plant a deep tree");
    tm.restart();
    assert!(tm.log().contains("cannot be reached"), "recovery reports it and carries on:\n{}", tm.log());
    tm.assert_append_works("a.log");
    tm.stop();
    let (code, doc) = verify(&tm);
    assert_eq!(code, 1, "{doc:#}");
    assert!(doc["counts"]["file.unreadable"].as_u64() >= Some(1), "{doc:#}");
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------------
// 6. Odd files in the data directory
// ---------------------------------------------------------------------------------------------

/// A sealed a.log, then `replace` run on its backing path while unmounted.
fn replaced_sealed_file(replace: impl FnOnce(&Path)) -> TestMount {
    let mut tm = TestMount::start();
    tm.create("a.log", b"sealed\n");
    tm.stop();
    let backing = tm.backing("a.log");
    remove_in_data_dir(&backing);
    replace(&backing);
    tm
}

#[test]
fn a_fifo_where_a_sealed_file_was_is_a_finding_and_verify_does_not_hang() {
    let mut tm =
        replaced_sealed_file(|p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap());
    let started = std::time::Instant::now();
    let doc = assert_found(&tm, "file.not_a_file", "/a.log");
    assert!(started.elapsed() < Duration::from_secs(10), "verify must not block on the FIFO");
    assert!(doc["findings"].to_string().contains("Fifo"), "{doc:#}");
    tm.restart();
    tm.assert_still_works();
}

#[test]
fn a_symlink_where_a_sealed_file_was_is_a_finding_and_is_not_followed() {
    let outside = tempfile::NamedTempFile::new().unwrap();
    fs::write(outside.path(), b"sealed\n").unwrap();
    let target = outside.path().to_path_buf();
    let mut tm = replaced_sealed_file(|p| std::os::unix::fs::symlink(&target, p).unwrap());
    let doc = assert_found(&tm, "file.not_a_file", "/a.log");
    assert!(doc["findings"].to_string().contains("Symlink"), "{doc:#}");
    assert_eq!(doc["bytes_hashed"], 0, "nothing outside DATA_DIR was read: {doc:#}");
    tm.restart();
    tm.assert_still_works();
}

#[test]
fn a_directory_or_socket_where_a_sealed_file_was_is_a_finding() {
    let mut tm = replaced_sealed_file(|p| fs::create_dir(p).unwrap());
    assert_found(&tm, "file.not_a_file", "/a.log");
    tm.restart();
    tm.assert_still_works();
    drop(tm);

    let tm = replaced_sealed_file(|p| {
        std::os::unix::net::UnixListener::bind(p).unwrap();
    });
    assert_found(&tm, "file.not_a_file", "/a.log");
}

#[test]
fn odd_nodes_and_hard_links_planted_in_the_data_dir_are_findings() {
    let mut tm = TestMount::start();
    tm.create("a.log", b"sealed\n");
    tm.stop();
    nix::unistd::mkfifo(&tm.backing("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tm.backing("link")).unwrap();
    unprotect(tm.backing("a.log"));
    fs::hard_link(tm.backing("a.log"), tm.backing("hard.log")).unwrap();
    let doc = assert_found(&tm, "file.not_a_file", "/pipe");
    assert!(kinds_about(&doc, "findings", "/link").contains(&"file.not_a_file".to_string()), "{doc:#}");
    assert!(kinds_about(&doc, "findings", "/hard.log").contains(&"file.injected".to_string()), "{doc:#}");
    assert!(kinds_about(&doc, "findings", "/a.log").is_empty(), "the sealed file itself is intact: {doc:#}");
    tm.restart();
    tm.assert_append_works("a.log");
}

// ---------------------------------------------------------------------------------------------
// 7. A directory rename racing a create inside it
// ---------------------------------------------------------------------------------------------

#[test]
fn renaming_an_empty_directory_is_ordered_with_creates_inside_it() {
    let mut tm = TestMount::start();
    let mut moved = 0;
    for i in 0..300 {
        let (from, to) = (tm.path(format!("d{i}")), tm.path(format!("e{i}")));
        fs::create_dir(&from).unwrap();
        let file = from.join("f.log");
        let creator = std::thread::spawn(move || fs::write(file, b"x\n").is_ok());
        let renamed = fs::rename(&from, &to).is_ok();
        let created = creator.join().unwrap();
        moved += usize::from(renamed && created);
    }
    tm.stop();
    // Whichever came first, the file is where its records say, owned by its creator.
    let doc = assert_intact(&tm);
    assert!(doc["warnings"].as_array().unwrap().is_empty(), "{doc:#}");
    eprintln!("{moved} of 300 renames happened with a file created inside");
}

// ---------------------------------------------------------------------------------------------
// 8. close(2) from another thread than the opener
// ---------------------------------------------------------------------------------------------

#[test]
fn a_close_from_a_worker_thread_seals_before_it_returns() {
    let mut tm = TestMount::start();
    let pid = tm.pid().unwrap();
    // The seal must be durable when close(2) returns: kill the daemon the moment it does.
    let script = format!(
        "import os, signal, threading\n\
         fd = os.open({:?}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)\n\
         os.write(fd, b'closed by a worker thread\\n')\n\
         t = threading.Thread(target=os.close, args=(fd,))\n\
         t.start(); t.join()\n\
         os.kill({pid}, signal.SIGKILL)\n",
        tm.path("w.log").to_str().unwrap()
    );
    run(&format!("python3 -c {}", shell_quote(&script))).assert_success("write, close in a thread, kill");
    tm.kill9();
    tm.restart();
    let records = tm.records();
    assert_eq!(records_about(&records, "Seal", "/w.log").len(), 1, "sealed at close: {records:#?}");
    assert!(records_about(&records, "Recovered", "/w.log").is_empty(), "{records:#?}");
}

// ---------------------------------------------------------------------------------------------
// 9. truncate(1) after expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn truncate_tool_works_through_its_own_handle_after_expiry_and_stays_checkable() {
    let mut tm = TestMount::builder().arg("--retention").arg("1s").start();
    tm.create("t.log", b"0123456789");
    let snap = Snapshot::of(tm.backing("t.log"));
    // Before expiry: refused, as every shrink is.
    let early = run(&format!("truncate -s 3 {}", q(tm.path("t.log"))));
    early.assert_failure("truncate before expiry");
    snap.assert_unchanged();
    std::thread::sleep(Duration::from_millis(1300));
    // truncate(1) opens the file and ftruncates through that handle.
    run(&format!("truncate -s 3 {}", q(tm.path("t.log")))).assert_success("truncate -s 3 after expiry");
    assert_eq!(fs::read(tm.backing("t.log")).unwrap(), b"012");
    tm.append("t.log", b"abc");
    std::thread::sleep(Duration::from_millis(1300));
    run(&format!("truncate -s 0 {}", q(tm.path("t.log")))).assert_success("truncate -s 0 after expiry");
    assert_eq!(fs::metadata(tm.backing("t.log")).unwrap().len(), 0);
    tm.append("t.log", b"again\n");
    assert_eq!(records_about(&tm.records(), "Truncate", "/t.log").len(), 2);
    // Another handle open on the file still blocks it.
    std::thread::sleep(Duration::from_millis(1300));
    let other = fs::File::open(tm.path("t.log")).unwrap();
    let snap = Snapshot::of(tm.backing("t.log"));
    run(&format!("truncate -s 1 {}", q(tm.path("t.log")))).assert_failure("truncate while another handle is open");
    snap.assert_unchanged();
    drop(other);
    tm.stop();
    assert_intact(&tm);
}

// ---------------------------------------------------------------------------------------------
// 10. Names with a newline or bytes that are not UTF-8
// ---------------------------------------------------------------------------------------------

#[test]
fn hostile_names_are_escaped_in_text_and_exact_in_json() {
    use std::os::unix::ffi::OsStrExt;
    let mut tm = TestMount::start();
    let fake = std::ffi::OsStr::from_bytes(b"a\nFINDING fake: all is well");
    let ff = std::ffi::OsStr::from_bytes(b"n\xff.log");
    let fe = std::ffi::OsStr::from_bytes(b"n\xfe.log");
    for name in [fake, ff, fe] {
        fs::write(tm.path(name), b"x\n").unwrap();
    }
    tm.stop();

    let log = run_cmd(&mut tm.wormfs_cmd(&["log"]));
    log.assert_success("wormfs log");
    assert!(!log.stdout.lines().any(|l| l.starts_with("FINDING")), "a name started a line:\n{}", log.stdout);
    assert!(log.stdout.contains("/a\\nFINDING fake: all is well"), "{}", log.stdout);
    assert!(log.stdout.contains("/n\\xff.log") && log.stdout.contains("/n\\xfe.log"), "{}", log.stdout);

    // JSON: the exact text where it is UTF-8, the exact bytes beside it where it is not.
    let records = tm.records();
    assert!(!records_about(&records, "Create", "/a\nFINDING fake: all is well").is_empty(), "{records:#?}");
    let hexes: Vec<&str> = records.iter().filter_map(|r| r["path_hex"].as_str()).collect();
    assert!(hexes.contains(&"6eff2e6c6f67") && hexes.contains(&"6efe2e6c6f67"), "{records:#?}");

    remove_in_data_dir(&tm.backing(ff));
    remove_in_data_dir(&tm.backing(fe));
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--data"]).arg(tm.data()).arg("--state").arg(tm.state()).env_remove("RUST_LOG");
    let human = run_cmd(&mut cmd);
    assert_eq!(human.status.code(), Some(1), "{human:#?}");
    let missing: Vec<&str> = human.stdout.lines().filter(|l| l.starts_with("FINDING file.missing")).collect();
    assert_eq!(missing.len(), 2, "{}", human.stdout);
    assert_ne!(missing[0], missing[1], "two different names read as two different lines");
    assert!(!human.stdout.lines().any(|l| l.starts_with("FINDING fake")), "{}", human.stdout);
    let (_, doc) = verify(&tm);
    let hexes: Vec<&str> = doc["findings"].as_array().unwrap().iter().filter_map(|f| f["path_hex"].as_str()).collect();
    assert_eq!(hexes.len(), 2, "{doc:#}");
}

// ---------------------------------------------------------------------------------------------
// The kernel's write-once flags
// ---------------------------------------------------------------------------------------------

/// `script` as root without CAP_LINUX_IMMUTABLE (dropped from the bounding set).
fn without_cap_linux_immutable(script: &str) -> RunOutput {
    run(&format!("capsh --drop=cap_linux_immutable -- -c {}", shell_quote(script)))
}

#[test]
fn backing_files_are_append_only_while_open_and_immutable_once_sealed() {
    let mut tm = TestMount::start();
    let mut f = OpenOptions::new().create(true).append(true).mode(0o644).open(tm.path("k.log")).unwrap();
    f.write_all(b"first\n").unwrap();
    let backing = tm.backing("k.log");
    let flags = lsattr(&backing);
    assert!(flags.contains('a') && !flags.contains('i'), "append-only while open: {flags}");
    // Even root cannot rewrite it in place while it is open.
    let overwrite = run(&format!("printf X | dd of={} conv=notrunc status=none", q(&backing)));
    overwrite.assert_failure("overwriting an append-only file in DATA_DIR");
    assert_eq!(fs::read(&backing).unwrap(), b"first\n");
    drop(f);

    assert!(wait_until(Duration::from_secs(5), || lsattr(&backing).contains('i')), "immutable once sealed and closed");
    let snap = Snapshot::of(&backing);
    for (what, script) in [
        ("append", format!("echo forged >> {}", q(&backing))),
        ("rm", format!("rm -f {}", q(&backing))),
        ("mv", format!("mv {} {}", q(&backing), q(tm.backing("moved.log")))),
        ("truncate", format!("truncate -s 0 {}", q(&backing))),
        ("chattr -i", format!("chattr -i {}", q(&backing))),
    ] {
        let out = without_cap_linux_immutable(&script);
        out.assert_failure(&format!("{what} in DATA_DIR as root without CAP_LINUX_IMMUTABLE"));
        assert!(out.stderr.contains("Operation not permitted"), "{what}: {out:#?}");
        snap.assert_unchanged();
    }
    // Root with the capability can clear the flag: then verify is the proof.
    run(&format!("chattr -i {}", q(&backing))).assert_success("chattr -i with the capability");
    run(&format!("echo forged >> {}", q(&backing))).assert_success("append once the flag is cleared");
    tm.stop();
    assert_found(&tm, "file.appended_after_unmount", "/k.log");
    tm.restart();
    assert!(records_about(&tm.records(), "Damaged", "/k.log").len() == 1);
}

#[test]
fn authorised_changes_clear_the_flags_and_set_them_back() {
    let tm = TestMount::builder().arg("--retention").arg("1s").start();
    tm.create("a.log", b"0123456789");
    tm.create("b.log", b"b\n");
    tm.create("c.log", b"c\n");
    std::thread::sleep(Duration::from_millis(1300));
    // chmod, truncate and rename through the mount work and leave the file immutable.
    fs::set_permissions(tm.path("a.log"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert!(lsattr(tm.backing("a.log")).contains('i'));
    nix::unistd::truncate(&tm.path("a.log"), 4).unwrap();
    assert!(lsattr(tm.backing("a.log")).contains('i'));
    fs::rename(tm.path("b.log"), tm.path("renamed.log")).unwrap();
    assert!(lsattr(tm.backing("renamed.log")).contains('i'));
    fs::remove_file(tm.path("c.log")).unwrap();
    assert_absent(tm.backing("c.log"));
    tm.assert_append_works("a.log");
    assert!(wait_until(Duration::from_secs(5), || lsattr(tm.backing("a.log")).contains('i')));
}

// ---------------------------------------------------------------------------------------------
// Found by a red-team run against this branch
// ---------------------------------------------------------------------------------------------

#[test]
fn times_far_before_the_epoch_never_take_the_daemon_down() {
    let tm = TestMount::builder().arg("--allow-other").start();
    let shared = tm.mkdir("shared");
    fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let file = shared.join("u.log");
    run_as(1000, 1000, &format!("echo x >> {}", q(&file))).assert_success("a user's file");
    let snap = Snapshot::of(tm.backing("shared/u.log"));
    // These once panicked a worker each (the second took the mount down); they are ordinary
    // (if odd) times now, applied like any other.
    for _ in 0..3 {
        run_as(1000, 1000, &format!("touch -a -d @-9223372036 {}", q(&file))).assert_success("an atime far back");
        let utime = format!("python3 -c 'import os; os.utime({:?}, ns=(0, -(2**63)))'", file.to_str().unwrap());
        run_as(1000, 1000, &utime).assert_success("the earliest mtime there is");
    }
    let mtime = fs::metadata(tm.backing("shared/u.log")).unwrap();
    // Set as asked, as far back as the backing filesystem goes (ext4 stops at 1901).
    assert!(std::os::unix::fs::MetadataExt::mtime(&mtime) < 0, "{mtime:?}");
    snap.assert_unchanged();
    tm.assert_still_works();
    run_as(1000, 1000, &format!("echo y >> {}", q(&file))).assert_success("the user's file still takes appends");
}

/// Delete the index's meta "head" while unmounted (records stay).
fn remove_index_head(state: &Path) {
    let cfs = ["records", "files", "holds", "meta", "tree"].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = DB::open_cf_descriptors(&Options::default(), state.join("index"), cfs).expect("open the index");
    db.delete_cf(db.cf_handle("meta").unwrap(), b"head").unwrap();
}

#[test]
fn a_removed_index_head_is_refused_at_mount_and_never_written_over() {
    let mut tm = TestMount::start();
    tm.create("a.log", b"evidence\n");
    tm.stop();
    let before = tm.records();
    remove_index_head(tm.state());

    let (code, doc) = verify(&tm);
    assert_eq!(code, 1, "a chain whose end the index no longer names: {doc:#}");
    assert!(doc["counts"]["chain.head_mismatch"].as_u64() == Some(1), "{doc:#}");

    let mut cmd = Command::new(WORMFS);
    cmd.arg("mount").arg("--data").arg(tm.data()).arg("--state").arg(tm.state()).arg(tm.mnt()).env_remove("RUST_LOG");
    let out = run_cmd(Command::new("timeout").arg("20").arg(cmd.get_program()).args(cmd.get_args()));
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("corrupt") && out.stderr.contains("head"), "{out:#?}");
    assert!(!is_mount_point(tm.mnt()));
    assert_eq!(tm.records(), before, "no record was written over");
}

#[test]
fn bytes_appended_in_the_data_dir_while_a_writer_has_it_open_are_damage_never_sealed() {
    let mut tm = TestMount::start();
    let f = OpenOptions::new().create(true).append(true).mode(0o644).open(tm.path("o.log")).unwrap();
    (&f).write_all(b"ours 1\n").unwrap();
    // Append-only allows appends, by root too: the attacker's bytes land between wormfs' writes.
    run(&format!("echo theirs >> {}", q(tm.backing("o.log")))).assert_success("append to an append-only file");
    (&f).write_all(b"ours 2\n").unwrap();
    // The close (which seals) finds the file is not the size wormfs wrote: EIO, nothing sealed.
    let closed = nix::unistd::close(std::os::fd::IntoRawFd::into_raw_fd(f));
    assert_eq!(closed, Err(nix::errno::Errno::EIO));
    let records = tm.records();
    assert!(records_about(&records, "Seal", "/o.log").is_empty(), "{records:#?}");
    assert_eq!(records_about(&records, "Damaged", "/o.log").len(), 1, "{records:#?}");
    assert_errno(open_append(&tm.path("o.log")), EIO);
    tm.assert_still_works();
    tm.stop();
    assert_found(&tm, "file.damaged", "/o.log");
    tm.restart();
    assert_eq!(records_about(&tm.records(), "Damaged", "/o.log").len(), 1, "recorded once");
}

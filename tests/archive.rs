//! Off the box: `wormfs archive` into a real S3 server that enforces Object Lock (LocalStack on
//! 127.0.0.1, started and stopped by each test), and `wormfs verify --archive` against it.
//!
//! What an auditor relies on, attacked the way someone who owns the box (and so the S3
//! credentials) would: delete, shorten and overwrite through the S3 API; lose an object where a
//! weaker lock let it go; interrupt a run; prune too early.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::localstack::{LocalStack, ACCESS_KEY, SECRET_KEY};
use common::{run_cmd, wait_until, RunOutput, TestMount, WORMFS};
use wormfs::archive::s3::{Endpoint, LockMode, S3};
use wormfs::archive::{object_key, receipt_key};
use wormfs::core::path::RelPath;
use wormfs::core::segment::{from_hex, sha256};

/// An S3 client of the test's own (the attacker's, or the admin's), on `ls`'s bucket.
fn client(ls: &LocalStack, bucket: &str) -> S3 {
    let endpoint = Endpoint { url: Some(ls.endpoint()), path_style: true, region: None };
    S3::new(bucket, &endpoint, rusty_s3::Credentials::new(ACCESS_KEY, SECRET_KEY)).unwrap()
}

/// A bucket with Object Lock (and so versioning) enabled.
fn lock_bucket(ls: &LocalStack, bucket: &str) -> S3 {
    let s3 = client(ls, bucket);
    s3.create_bucket(true).unwrap();
    s3
}

/// `wormfs archive` of `m` into s3://evidence, with no credentials in its environment yet.
fn bare_archive(ls: &LocalStack, m: &TestMount) -> Command {
    let mut cmd = Command::new(WORMFS);
    cmd.arg("archive").arg("--state").arg(m.state()).args(["--bucket", "s3://evidence", "--endpoint", &ls.endpoint()]);
    cmd.args(["--path-style"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("RUST_LOG");
    cmd
}

/// `wormfs ARGS` with the S3 credentials in the environment.
fn wormfs(ls: &LocalStack, args: &[&str]) -> RunOutput {
    let mut cmd = Command::new(WORMFS);
    cmd.args(args)
        .args(["--endpoint", &ls.endpoint(), "--path-style"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG");
    run_cmd(&mut cmd)
}

fn archive(ls: &LocalStack, m: &TestMount, bucket: &str, extra: &[&str]) -> RunOutput {
    let state = m.state().to_str().unwrap().to_string();
    let url = format!("s3://{bucket}");
    let mut args = vec!["archive", "--state", &state, "--bucket", &url];
    args.extend_from_slice(extra);
    wormfs(ls, &args)
}

fn verify_archive(ls: &LocalStack, m: &TestMount, bucket: &str) -> (RunOutput, serde_json::Value) {
    let (data, state) = (m.data().to_str().unwrap().to_string(), m.state().to_str().unwrap().to_string());
    let url = format!("s3://{bucket}");
    let out = wormfs(ls, &["verify", "--data", &data, "--state", &state, "--archive", &url, "--json"]);
    let report = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("verify --json: {e}: {out:#?}"));
    (out, report)
}

/// The kinds of the report's `what` ("findings" or "warnings") about the archive, in order.
fn kinds(report: &serde_json::Value, what: &str) -> Vec<String> {
    let all = report[what].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap().to_string());
    all.filter(|k| k.starts_with("archive.")).collect()
}

fn rel(p: &str) -> RelPath {
    RelPath::from_mount_path(p).unwrap()
}

/// The Archived records of the chain, as `wormfs log --json` shows them.
fn archived_records(m: &TestMount) -> Vec<serde_json::Value> {
    m.records().into_iter().filter(|r| r["kind"] == "Archived").collect()
}

/// The key wormfs archives `path` under as it is sealed now (its newest seal's file_hash).
fn key_of(m: &TestMount, path: &str) -> String {
    let shown = format!("/{}", path.trim_start_matches('/'));
    let seal = m
        .records()
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "Seal" && r["path"] == shown.as_str())
        .unwrap_or_else(|| panic!("{path} has no seal"));
    let hash: [u8; 32] = from_hex(seal["file_hash"].as_str().unwrap()).unwrap().try_into().unwrap();
    object_key("", &rel(path), &hash)
}

/// The bytes of one version, read back.
fn object_bytes(s3: &S3, key: &str, version: &str) -> Vec<u8> {
    let mut body = s3.get(key, version).unwrap().unwrap_or_else(|| panic!("{key} {version} is gone"));
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut body, &mut out).unwrap();
    out
}

/// Put a GOVERNANCE-locked copy of `rel`'s `bytes` (and a stand-in receipt) under the key wormfs
/// uses, as another tool might, and record it in the chain as an Archived record (through the
/// daemon when mounted). Its key and version.
fn record_outside_copy(s3: &S3, m: &TestMount, bucket: &str, rel: &str, bytes: &[u8]) -> (String, String) {
    let shown = format!("/{rel}");
    let seal = m.records().into_iter().rev().find(|x| x["kind"] == "Seal" && x["path"] == shown.as_str()).unwrap();
    let file_hash = seal["file_hash"].as_str().unwrap().to_string();
    let until = seal["retain_until_ns"].as_u64().unwrap();
    let key = key_of(m, rel);
    let meta = [("wormfs-file-hash", file_hash.as_str())];
    let put = |k: &str, b: &[u8]| {
        s3.put_locked(k, &mut &b[..], b.len() as u64, &sha256(b), LockMode::Governance, until, false, &meta).unwrap()
    };
    let (version, receipt) = (put(&key, bytes), put(&receipt_key(&key), b"{}"));
    let request = wormfs::admin::Request::Archived {
        path: shown,
        path_hex: None,
        size: bytes.len() as u64,
        file_hash,
        bucket: bucket.into(),
        key: key.clone(),
        version_id: version.clone(),
        receipt_version_id: receipt,
        retain_until_ns: until,
    };
    let session = wormfs::control::Session::open(&wormfs::state_dir::StateDir::new(m.state())).unwrap();
    session.submit(&request).unwrap();
    (key, version)
}

/// Retention of a day: every lock the tests set is a day ahead.
fn mount() -> TestMount {
    TestMount::builder().arg("--retention").arg("1d").start()
}

#[test]
fn archived_files_are_locked_in_compliance_mode_and_the_server_refuses_to_undo_it() {
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "evidence");
    let m = mount();
    m.create("a.log", b"first line\nsecond line\n");
    m.mkdir("app");
    m.create("app/b.log", &common::pseudo_random_bytes(3 << 20, 7));
    // Still open for writing: not closed, so not archived yet.
    let open = fs::OpenOptions::new().append(true).create(true).open(m.path("open.log")).unwrap();
    std::io::Write::write_all(&mut &open, b"being written\n").unwrap();

    let out = archive(&ls, &m, "evidence", &[]);
    out.assert_success("wormfs archive");
    assert!(out.stdout.contains("archived /a.log -> s3://evidence/"), "{}", out.stdout);
    assert!(out.stdout.contains("archived /app/b.log -> s3://evidence/"), "{}", out.stdout);
    assert!(!out.stdout.contains("open.log"), "an open file was archived: {}", out.stdout);
    assert!(out.stdout.contains("2 archived"), "{}", out.stdout);

    let records = archived_records(&m);
    assert_eq!(records.len(), 2, "one Archived record per file: {records:#?}");
    for r in &records {
        let (path, key, version) =
            (r["path"].as_str().unwrap(), r["key"].as_str().unwrap(), r["version_id"].as_str().unwrap());
        assert_eq!(key, key_of(&m, path));
        assert_eq!(r["bucket"], "evidence");
        // Locked in COMPLIANCE mode until the file's retain-until, and holding its bytes.
        let info = s3.head(key, Some(version)).unwrap().expect("the recorded version is there");
        assert_eq!(info.mode, Some(LockMode::Compliance), "{key}");
        let retained = m.records().into_iter().rev().find(|x| x["kind"] == "Seal" && x["path"] == r["path"]).unwrap();
        assert!(info.retain_until_ns.unwrap() >= retained["retain_until_ns"].as_u64().unwrap());
        let local = fs::read(m.backing(path.trim_start_matches('/'))).unwrap();
        assert_eq!(object_bytes(&s3, key, version), local, "{key}");
        // The receipt beside it, locked the same way.
        let receipt = s3.head(&receipt_key(key), Some(r["receipt_version_id"].as_str().unwrap())).unwrap().unwrap();
        assert_eq!(receipt.mode, Some(LockMode::Compliance));
    }

    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_eq!(report["archive"]["copies_checked"], 2, "{report:#}");

    // Someone with the bucket's credentials tries to undo the archive.
    let a = &records.iter().find(|r| r["path"] == "/a.log").unwrap();
    let (key, version) = (a["key"].as_str().unwrap(), a["version_id"].as_str().unwrap());
    let before = object_bytes(&s3, key, version);
    let refused = |what: &str, e: wormfs::archive::s3::S3Error| {
        assert_eq!((e.status(), e.code()), (Some(403), Some("AccessDenied")), "{what}: {e}");
        eprintln!("refused by the server, as it must be: {what}: {e}");
    };
    refused("delete the version", s3.delete(key, Some(version), false).unwrap_err());
    refused("delete it bypassing governance", s3.delete(key, Some(version), true).unwrap_err());
    let until = s3.head(key, Some(version)).unwrap().unwrap().retain_until_ns.unwrap();
    let shorter = until - 3_600_000_000_000;
    refused("shorten its retention", s3.put_retention(key, version, LockMode::Compliance, shorter).unwrap_err());
    refused("weaken it to GOVERNANCE", s3.put_retention(key, version, LockMode::Governance, until).unwrap_err());
    // What S3 does allow: a new version on top, and a delete marker. Neither touches the
    // archived version, which verify reads by its id.
    s3.put_plain(key, b"forged log\n").unwrap();
    s3.delete(key, None, false).unwrap();
    assert_eq!(object_bytes(&s3, key, version), before, "the archived version is unchanged");
    let info = s3.head(key, Some(version)).unwrap().unwrap();
    assert_eq!((info.mode, info.retain_until_ns), (Some(LockMode::Compliance), Some(until)));

    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0), "the archive is intact: {out:#?}");
    assert_eq!(kinds(&report, "warnings"), vec!["archive.covered"], "{report:#}");

    // A second run finds nothing to do: no second copy of anything.
    let versions = |k: &str| s3.versions(k).unwrap().len();
    let (n_a, n_receipt) = (versions(key), versions(&receipt_key(key)));
    let out = archive(&ls, &m, "evidence", &[]);
    out.assert_success("second archive run");
    assert!(out.stdout.contains("0 archived"), "{}", out.stdout);
    assert_eq!((versions(key), versions(&receipt_key(key))), (n_a, n_receipt));
    assert_eq!(archived_records(&m).len(), 2);

    // A file sealed since, not archived yet: verify names it (a warning: it may just be new, or
    // archiving was stopped).
    m.create("late.log", b"after the run\n");
    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0));
    let late = report["warnings"].as_array().unwrap().iter().find(|w| w["kind"] == "archive.not_archived");
    assert_eq!(late.map(|w| w["path"].clone()), Some(serde_json::json!("/late.log")), "{report:#}");
    drop(open);
}

#[test]
fn holds_and_extensions_reach_the_objects_and_verify_names_an_archive_that_lags_behind() {
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "evidence");
    let m = mount();
    m.mkdir("app");
    m.create("app/b.log", b"evidence\n");
    archive(&ls, &m, "evidence", &[]).assert_success("archive");
    let r = archived_records(&m).pop().unwrap();
    let (key, version) = (r["key"].as_str().unwrap().to_string(), r["version_id"].as_str().unwrap().to_string());
    let receipt = (receipt_key(&key), r["receipt_version_id"].as_str().unwrap().to_string());

    // A legal hold in wormfs: the object must carry one too.
    run_cmd(&mut m.wormfs_cmd(&["hold", "set", "--reason", "case 7", "/app"])).assert_success("hold set");
    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert_eq!(kinds(&report, "findings"), vec!["archive.hold_missing"], "{report:#}");
    let out = archive(&ls, &m, "evidence", &[]);
    out.assert_success("archive mirrors the hold");
    assert!(out.stdout.contains(&format!("mirrored {key}: legal hold set")), "{}", out.stdout);
    assert!(s3.head(&key, Some(&version)).unwrap().unwrap().legal_hold);
    assert!(s3.head(&receipt.0, Some(&receipt.1)).unwrap().unwrap().legal_hold);
    assert_eq!(verify_archive(&ls, &m, "evidence").0.status.code(), Some(0));

    // Anyone the bucket lets may lift a legal hold (S3 allows it): verify names it, and the next
    // run puts it back whatever its cache remembers.
    s3.put_legal_hold(&key, &version, false).unwrap();
    let (_, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(kinds(&report, "findings"), vec!["archive.hold_missing"], "{report:#}");
    archive(&ls, &m, "evidence", &[]).assert_success("archive puts the hold back");
    assert!(s3.head(&key, Some(&version)).unwrap().unwrap().legal_hold);
    assert_eq!(verify_archive(&ls, &m, "evidence").0.status.code(), Some(0));

    // Cleared in wormfs: cleared there.
    run_cmd(&mut m.wormfs_cmd(&["hold", "clear", "--reason", "closed", "/app"])).assert_success("hold clear");
    let (_, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(kinds(&report, "warnings"), vec!["archive.hold_not_cleared"], "{report:#}");
    archive(&ls, &m, "evidence", &[]).assert_success("archive mirrors the clear");
    assert!(!s3.head(&key, Some(&version)).unwrap().unwrap().legal_hold);

    // Retention extended in wormfs: the object's lock is extended.
    run_cmd(&mut m.wormfs_cmd(&["retention", "extend", "--by", "1y", "/app/b.log"])).assert_success("extend");
    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(kinds(&report, "findings"), vec!["archive.retention_short", "archive.retention_short"], "{report:#}");
    let wanted =
        m.records().into_iter().rev().find(|x| x["kind"] == "Retention").unwrap()["retain_until_ns"].as_u64().unwrap();
    archive(&ls, &m, "evidence", &[]).assert_success("archive mirrors the extension");
    assert!(s3.head(&key, Some(&version)).unwrap().unwrap().retain_until_ns.unwrap() >= wanted);
    assert!(s3.head(&receipt.0, Some(&receipt.1)).unwrap().unwrap().retain_until_ns.unwrap() >= wanted);
    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
}

#[test]
fn names_that_are_not_utf8_or_would_leave_the_bucket_are_handled() {
    use std::os::unix::ffi::OsStrExt;
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "evidence");
    let m = mount();
    // A name that is not UTF-8, and a UTF-8 twin spelled like its escaped form.
    let odd = std::ffi::OsStr::from_bytes(b"bad\xff.log");
    fs::write(m.path("bad\\xff.log"), b"the twin\n").unwrap();
    fs::write(m.path(odd), b"not utf-8\n").unwrap();
    let out = archive(&ls, &m, "evidence", &[]);
    out.assert_success("archive");
    let records = archived_records(&m);
    assert_eq!(records.len(), 2, "{records:#?}");
    let odd_record =
        records.iter().find(|r| r["path_hex"] == "626164ff2e6c6f67").expect("the non-UTF-8 file is recorded");
    let twin = records.iter().find(|r| r["path"] == "/bad\\xff.log").expect("the twin is recorded as itself");
    assert_ne!(odd_record["key"], twin["key"]);
    assert!(odd_record["key"].as_str().unwrap().starts_with("bad%FF.log@"), "{odd_record}");
    let got = object_bytes(&s3, odd_record["key"].as_str().unwrap(), odd_record["version_id"].as_str().unwrap());
    assert_eq!(got, b"not utf-8\n");
    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(kinds(&report, "warnings").is_empty(), "{report:#}");

    // A prefix with a `..` would put the objects in another bucket than the one recorded.
    let out = archive(&ls, &m, "evidence/../other", &[]);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("`..`"), "{}", out.stderr);
    let out = archive(&ls, &m, "evidence", &["--prefix", "../other"]);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
}

#[test]
fn an_object_a_weaker_lock_let_go_is_found_missing() {
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "weak");
    let mut m = mount();
    let bytes = b"kept off the box\n";
    m.create("a.log", bytes);
    m.stop();
    // An archive made by something else (an older tool, a hand-run upload) in GOVERNANCE mode,
    // recorded in the chain like any other: verify must judge the object, not the record.
    let (key, version) = record_outside_copy(&s3, &m, "weak", "a.log", bytes);

    let (out, report) = verify_archive(&ls, &m, "weak");
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert_eq!(kinds(&report, "findings"), vec!["archive.unlocked", "archive.unlocked"], "{report:#}");
    // GOVERNANCE lets a permitted user delete it: the copy is lost.
    s3.delete(&key, Some(&version), true).unwrap();
    let (out, report) = verify_archive(&ls, &m, "weak");
    assert_eq!(out.status.code(), Some(1));
    let found = kinds(&report, "findings");
    assert_eq!(found, vec!["archive.missing", "archive.unlocked"], "{report:#}");
    let missing = &report["findings"][0];
    assert_eq!((missing["path"].as_str(), missing["key"].as_str()), (Some("/a.log"), Some(key.as_str())));
    assert!(out.stdout.contains("is gone from the bucket") || missing["message"].as_str().unwrap().contains("gone"));

    // The same chain checked against another bucket: nothing there is judged, and it says so.
    lock_bucket(&ls, "other");
    let (out, report) = verify_archive(&ls, &m, "other");
    // ...and a.log has no copy there.
    assert_eq!(kinds(&report, "warnings"), vec!["archive.not_archived", "archive.not_checked"], "{report:#}");
    assert_eq!(report["archive"]["copies_checked"], 0);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_bucket_without_object_lock_is_refused_and_nothing_is_recorded() {
    let ls = LocalStack::start();
    client(&ls, "plain").create_bucket(false).unwrap();
    let m = mount();
    m.create("a.log", b"x\n");
    let out = archive(&ls, &m, "plain", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("does not have Object Lock enabled"), "{}", out.stderr);
    assert!(archived_records(&m).is_empty());
    assert!(client(&ls, "plain").versions(&key_of(&m, "a.log")).unwrap().is_empty(), "nothing was uploaded");

    // Some servers (LocalStack among them) take lock headers even there and show them back on
    // HEAD. A copy put there by other means and recorded: its COMPLIANCE claim enforces nothing.
    let plain = client(&ls, "plain");
    let key = key_of(&m, "a.log");
    let seal = m.records().into_iter().rev().find(|x| x["kind"] == "Seal").unwrap();
    let (hash, until) = (seal["file_hash"].as_str().unwrap().to_string(), seal["retain_until_ns"].as_u64().unwrap());
    let meta = [("wormfs-file-hash", hash.as_str())];
    // An unversioned bucket answers no version id: its objects' id is "null".
    let put = |k: &str, b: &[u8]| match plain.put_locked(
        k,
        &mut &b[..],
        b.len() as u64,
        &sha256(b),
        LockMode::Compliance,
        until,
        false,
        &meta,
    ) {
        Ok(version) => version,
        Err(wormfs::archive::s3::S3Error::BadAnswer { .. }) => "null".to_string(),
        Err(e) => panic!("{e}"),
    };
    let (version, receipt) = (put(&key, b"x\n"), put(&receipt_key(&key), b"{}"));
    assert_eq!(plain.head(&key, Some(&version)).unwrap().unwrap().mode, Some(LockMode::Compliance));
    let request = wormfs::admin::Request::Archived {
        path: "/a.log".into(),
        path_hex: None,
        size: 2,
        file_hash: hash.clone(),
        bucket: "plain".into(),
        key: key.clone(),
        version_id: version,
        receipt_version_id: receipt,
        retain_until_ns: until,
    };
    wormfs::control::Session::open(&wormfs::state_dir::StateDir::new(m.state())).unwrap().submit(&request).unwrap();
    let (out, report) = verify_archive(&ls, &m, "plain");
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert_eq!(kinds(&report, "findings"), vec!["archive.bucket_unlocked"], "{report:#}");
}

#[test]
fn requests_are_signed_and_credentials_come_from_the_shared_file() {
    let ls = LocalStack::start();
    lock_bucket(&ls, "evidence");
    let m = mount();
    m.create("a.log", b"x\n");
    // A wrong secret: the server checks the signature and refuses.
    let mut cmd = bare_archive(&ls, &m);
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY).env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let out = run_cmd(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("SignatureDoesNotMatch"), "{}", out.stderr);
    assert!(archived_records(&m).is_empty());

    // No environment: a profile of the shared credentials file, as the AWS tools read it.
    let file = m.scratch().join("credentials");
    fs::write(&file, format!("[default]\naws_access_key_id = nope\n\n[audit]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")).unwrap();
    let mut cmd = bare_archive(&ls, &m);
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", &file).env("AWS_PROFILE", "audit");
    run_cmd(&mut cmd).assert_success("archive with a credentials file");
    assert_eq!(archived_records(&m).len(), 1);

    // None at all: a clear error before anything is tried.
    let mut cmd = bare_archive(&ls, &m);
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", m.scratch().join("none"));
    let out = run_cmd(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no S3 credentials"), "{}", out.stderr);

    // A store that cannot be reached: verify cannot judge the archive, and says so (exit 2),
    // rather than calling it intact.
    let dead = free_port();
    let (data, state) = (m.data().to_str().unwrap(), m.state().to_str().unwrap());
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--data", data, "--state", state, "--archive", "s3://evidence", "--path-style"])
        .args(["--endpoint", &format!("http://127.0.0.1:{dead}")])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let out = run_cmd(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("cannot verify the archive"), "{}", out.stderr);
}

/// A port on 127.0.0.1 nothing listens on (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_interrupted_run_resumes_where_it_stopped_with_no_second_copy() {
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "evidence");
    let m = mount();
    let names: Vec<String> = (0..8).map(|i| format!("f{i}.log")).collect();
    for (i, name) in names.iter().enumerate() {
        m.create(name, &common::pseudo_random_bytes(12 << 20, i as u64));
    }
    let keys: Vec<String> = names.iter().map(|n| key_of(&m, n)).collect();
    // Killed (SIGKILL: no chance to tidy up) once the fourth file's upload has landed.
    let mut cmd = bare_archive(&ls, &m);
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = common::KillOnDrop(cmd.spawn().unwrap());
    let landed = wait_until(Duration::from_secs(60), || s3.versions(&keys[3]).is_ok_and(|v| !v.is_empty()));
    assert!(landed, "the fourth upload never landed");
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the run finished before it could be interrupted");
    let recorded = archived_records(&m).len();
    assert!(recorded < names.len(), "every file was recorded before the kill: nothing was interrupted");

    let out = archive(&ls, &m, "evidence", &[]);
    out.assert_success("resumed run");
    let records = archived_records(&m);
    assert_eq!(records.len(), names.len(), "each file recorded once: {records:#?}");
    for key in &keys {
        let versions = s3.versions(key).unwrap();
        assert_eq!(versions.len(), 1, "{key} has {} versions: {versions:?}", versions.len());
        assert_eq!(records.iter().filter(|r| r["key"] == key.as_str()).count(), 1);
        assert_eq!(s3.versions(&receipt_key(key)).unwrap().len(), 1, "one receipt of {key}");
    }
    let (out, _) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
}

#[test]
fn prune_deletes_only_expired_files_whose_archived_copy_checks_out() {
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "evidence");
    // Short retention, so that it expires within the test.
    let m = TestMount::builder().arg("--retention").arg("3s").start();
    m.create("old.log", b"expired and archived\n");
    let lost_bytes = b"expired, archived, then lost\n";
    m.create("lost.log", lost_bytes);
    m.mkdir("held");
    m.create("held/h.log", b"under hold\n");
    // lost.log's copy was made by something else, in GOVERNANCE mode, and recorded (wormfs's own
    // copies stay locked a day past now, so nothing can lose one within the test).
    let (lost_key, lost_version) = record_outside_copy(&s3, &m, "evidence", "lost.log", lost_bytes);
    archive(&ls, &m, "evidence", &[]).assert_success("archive");
    // Still being written: neither archived nor pruned, however old.
    let open = fs::OpenOptions::new().append(true).create(true).open(m.path("new.log")).unwrap();
    std::io::Write::write_all(&mut &open, b"being written\n").unwrap();
    run_cmd(&mut m.wormfs_cmd(&["hold", "set", "--reason", "case", "/held"])).assert_success("hold");

    // Before expiry nothing goes.
    let out = archive(&ls, &m, "evidence", &["--prune"]);
    assert!(out.stdout.contains("0 pruned"), "{out:#?}");
    for f in ["old.log", "lost.log", "held/h.log", "new.log"] {
        assert!(m.backing(f).exists(), "{f} pruned before its retention expired");
    }
    std::thread::sleep(Duration::from_secs(4));
    // Expired, and its weak copy deleted (and its receipt) by whoever holds the bucket's keys.
    s3.delete(&lost_key, Some(&lost_version), true).unwrap();
    let receipt =
        archived_records(&m).into_iter().find(|r| r["path"] == "/lost.log").unwrap()["receipt_version_id"].clone();
    s3.delete(&receipt_key(&lost_key), Some(receipt.as_str().unwrap()), true).unwrap();
    let kept = fs::read(m.backing("old.log")).unwrap();

    let out = archive(&ls, &m, "evidence", &["--prune"]);
    assert_eq!(out.status.code(), Some(1), "a prune was refused: {out:#?}");
    assert!(out.stdout.contains("pruned /old.log"), "{}", out.stdout);
    assert!(out.stdout.contains("FAILED /lost.log: not pruned"), "{}", out.stdout);
    assert!(!m.backing("old.log").exists(), "old.log is still in the data directory");
    // The kernel may show a name it looked up for up to its entry TTL (1 s).
    assert!(wait_until(Duration::from_secs(3), || !m.path("old.log").exists()), "old.log is still in the mount");
    for f in ["lost.log", "held/h.log", "new.log"] {
        assert!(m.backing(f).exists(), "{f} was pruned");
    }
    let pruned: Vec<_> = m.records().into_iter().filter(|r| r["kind"] == "Pruned").collect();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0]["path"], "/old.log");
    let old = archived_records(&m).into_iter().find(|r| r["path"] == "/old.log").unwrap();
    assert_eq!(pruned[0]["archived"], old["seq"]);
    // Its bytes live on in the bucket, and verify accounts for the local copy's absence.
    assert_eq!(object_bytes(&s3, old["key"].as_str().unwrap(), old["version_id"].as_str().unwrap()), kept);
    // The lost copy went after its retention ended, as the local file may: worth a warning, not
    // proof of tampering (within its retention it is a finding; see the GOVERNANCE test).
    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(kinds(&report, "warnings"), vec!["archive.expired_gone"], "{report:#}");
    assert_eq!(
        report["warnings"].as_array().unwrap().iter().find(|w| w["kind"] == "archive.expired_gone").unwrap()["path"],
        "/lost.log"
    );
    drop(open);
}

#[test]
fn the_daemon_archives_every_interval() {
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "fleet");
    let m = TestMount::builder()
        .arg("--retention")
        .arg("1d")
        .arg("--archive")
        .arg("s3://fleet/web1")
        .arg("--archive-interval")
        .arg("1s")
        .arg("--archive-endpoint")
        .arg(ls.endpoint())
        .arg("--archive-path-style")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .start();
    m.create("a.log", b"shipped by the daemon\n");
    let key = format!("web1/{}", key_of(&m, "a.log"));
    assert!(wait_until(Duration::from_secs(20), || archived_records(&m).len() == 1), "{}", m.log());
    let r = archived_records(&m).pop().unwrap();
    assert_eq!(r["key"], key.as_str());
    let info = s3.head(&key, Some(r["version_id"].as_str().unwrap())).unwrap().unwrap();
    assert_eq!(info.mode, Some(LockMode::Compliance));
    // Later intervals leave it alone.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(archived_records(&m).len(), 1);
    assert_eq!(s3.versions(&key).unwrap().len(), 1);
    // And the metrics say what it did (rewritten every 5 s).
    let metrics = m.state().join("metrics.prom");
    let counted = |line: &str| fs::read_to_string(&metrics).is_ok_and(|t| t.lines().any(|l| l == line));
    assert!(
        wait_until(Duration::from_secs(12), || counted("wormfs_archived_files_total 1")),
        "{:?}",
        fs::read_to_string(&metrics)
    );
    assert!(counted("wormfs_archive_failures_total 0"));
    assert!(counted(&format!("wormfs_archived_bytes_total {}", b"shipped by the daemon\n".len())));
    let (out, _) = verify_archive(&ls, &m, "fleet");
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
}

#[test]
fn an_object_planted_under_the_key_is_not_taken_for_the_file() {
    let ls = LocalStack::start();
    let s3 = lock_bucket(&ls, "evidence");
    let m = mount();
    m.create("a.log", b"the real log\n");
    // Someone with the bucket's keys gets there first: same key, same metadata, a lock that
    // cannot be removed, other bytes of the same length.
    let key = key_of(&m, "a.log");
    let seal = m.records().into_iter().rev().find(|x| x["kind"] == "Seal").unwrap();
    let meta = [("wormfs-file-hash", seal["file_hash"].as_str().unwrap())];
    let until = seal["retain_until_ns"].as_u64().unwrap();
    let forged = b"a forged log\n";
    let planted =
        s3.put_locked(&key, &mut &forged[..], 13, &sha256(forged), LockMode::Compliance, until, false, &meta).unwrap();

    archive(&ls, &m, "evidence", &[]).assert_success("archive");
    let r = archived_records(&m).pop().unwrap();
    assert_ne!(r["version_id"], planted.as_str(), "the planted version was recorded as the file");
    assert_eq!(object_bytes(&s3, &key, r["version_id"].as_str().unwrap()), b"the real log\n");
    let (out, report) = verify_archive(&ls, &m, "evidence");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    // The same for a receipt: a locked stand-in under the receipt key, with the metadata, is
    // not a receipt of this file; wormfs puts a real one beside it.
    m.create("b.log", b"another real log\n");
    let bkey = key_of(&m, "b.log");
    let seal = m.records().into_iter().rev().find(|x| x["kind"] == "Seal" && x["path"] == "/b.log").unwrap();
    let meta = [("wormfs-file-hash", seal["file_hash"].as_str().unwrap())];
    let fake = br#"{"not":"a receipt"}"#;
    let planted = s3
        .put_locked(
            &receipt_key(&bkey),
            &mut &fake[..],
            fake.len() as u64,
            &sha256(fake),
            LockMode::Compliance,
            until,
            false,
            &meta,
        )
        .unwrap();
    archive(&ls, &m, "evidence", &[]).assert_success("archive b.log");
    let r = archived_records(&m).into_iter().find(|r| r["path"] == "/b.log").unwrap();
    assert_ne!(r["receipt_version_id"], planted.as_str(), "the stand-in was recorded as the receipt");
    let receipt = object_bytes(&s3, &receipt_key(&bkey), r["receipt_version_id"].as_str().unwrap());
    let receipt_file = m.scratch().join("b.receipt");
    fs::write(&receipt_file, receipt).unwrap();
    let vkey = fs::read_to_string(m.state().join("checkpoint.vkey")).unwrap();
    let mut check = Command::new(WORMFS);
    check.args(["verify-receipt", "--key", vkey.trim()]).arg(m.backing("b.log")).arg(&receipt_file);
    run_cmd(&mut check).assert_success("the recorded receipt proves the file");
}

//! Retention and legal hold through a real mount (retention of a couple of seconds): what is
//! refused before expiry stays byte-for-byte intact; after expiry each change works, is
//! recorded, and verify still exits 0.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;
use libc::EPERM;

const RETENTION: Duration = Duration::from_secs(2);

fn mount_with_retention() -> TestMount {
    TestMount::builder().arg("--retention").arg("2s").start()
}

fn verify(m: &TestMount) -> RunOutput {
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--data"]).arg(m.data()).arg("--state").arg(m.state()).env_remove("RUST_LOG");
    run_cmd(&mut cmd)
}

fn kinds(m: &TestMount) -> Vec<String> {
    m.records().iter().map(|r| r["kind"].as_str().unwrap().to_string()).collect()
}

fn wormfs(m: &TestMount, args: &[&str]) -> RunOutput {
    let mut cmd = m.wormfs_cmd(args);
    run_cmd(&mut cmd)
}

#[test]
fn before_expiry_unlink_rename_truncate_are_refused_after_it_they_work_and_are_recorded() {
    let m = mount_with_retention();
    for name in ["del.log", "mv.log", "cut.log"] {
        fs::write(m.path(name), b"0123456789\n").unwrap();
    }
    let snaps: Vec<_> = ["del.log", "mv.log", "cut.log"].iter().map(|n| Snapshot::of(m.backing(n))).collect();
    assert_errno(fs::remove_file(m.path("del.log")), EPERM);
    assert_errno(fs::rename(m.path("mv.log"), m.path("moved.log")), EPERM);
    assert_errno(OpenOptions::new().write(true).open(m.path("cut.log")).and_then(|f| f.set_len(4)), EPERM);
    assert_errno(nix::unistd::truncate(&m.path("cut.log"), 4), EPERM);
    snaps.iter().for_each(Snapshot::assert_unchanged);

    std::thread::sleep(RETENTION + Duration::from_millis(300));
    fs::remove_file(m.path("del.log")).unwrap();
    fs::rename(m.path("mv.log"), m.path("moved.log")).unwrap();
    nix::unistd::truncate(&m.path("cut.log"), 4).unwrap();
    assert_absent(m.backing("del.log"));
    assert_eq!(fs::read(m.backing("moved.log")).unwrap(), b"0123456789\n");
    assert_eq!(fs::read(m.backing("cut.log")).unwrap(), b"0123");
    // Growing stays refused: a hole nobody wrote.
    assert_errno(nix::unistd::truncate(&m.path("cut.log"), 100), EPERM);
    // Appends after the cut are sealed from the new size.
    m.append("cut.log", b"xyz");
    let k = kinds(&m);
    for kind in ["Delete", "Rename", "Truncate"] {
        assert!(k.iter().any(|x| x == kind), "no {kind} record in {k:?}");
    }
    let out = verify(&m);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
}

#[test]
fn an_open_file_is_not_deleted_even_after_expiry() {
    let m = mount_with_retention();
    let mut f = OpenOptions::new().create(true).append(true).open(m.path("open.log")).unwrap();
    f.write_all(b"still writing\n").unwrap();
    f.sync_data().unwrap();
    std::thread::sleep(RETENTION + Duration::from_millis(300));
    assert_errno(fs::remove_file(m.path("open.log")), EPERM);
    drop(f);
    // close(2) returns before the kernel's RELEASE reaches the daemon (FUSE sends it
    // asynchronously): until it does, the file still counts as open.
    assert!(
        wait_until(Duration::from_secs(5), || fs::remove_file(m.path("open.log")).is_ok()),
        "the closed, expired file could not be deleted"
    );
}

#[test]
fn a_hold_blocks_deletion_after_expiry_and_clearing_it_allows_it() {
    let m = mount_with_retention();
    m.mkdir("case");
    fs::write(m.path("case/evidence.log"), b"keep me\n").unwrap();
    let out = wormfs(&m, &["hold", "set", "/case", "--reason", "subpoena 42"]);
    out.assert_success("hold set while mounted");
    let list = wormfs(&m, &["hold", "list"]);
    assert!(list.stdout.contains("/case") && list.stdout.contains("subpoena 42"), "{}", list.stdout);
    let ls = wormfs(&m, &["ls", "/case"]);
    assert!(ls.stdout.contains("held") && ls.stdout.contains("subpoena 42"), "{}", ls.stdout);

    std::thread::sleep(RETENTION + Duration::from_millis(300));
    let snap = Snapshot::of(m.backing("case/evidence.log"));
    assert_errno(fs::remove_file(m.path("case/evidence.log")), EPERM);
    snap.assert_unchanged();
    assert!(m.log().contains("legal hold"), "the refusal says why:\n{}", m.log());

    wormfs(&m, &["hold", "clear", "/case", "--reason", "case closed"]).assert_success("hold clear");
    fs::remove_file(m.path("case/evidence.log")).unwrap();
    let records = m.records();
    let holds: Vec<_> = records.iter().filter(|r| r["kind"] == "Hold").collect();
    assert_eq!(holds.len(), 2);
    assert_eq!(holds[0]["reason"], "subpoena 42");
    assert_eq!(holds[1]["set"], false);
    assert_eq!(verify(&m).status.code(), Some(0));
}

#[test]
fn holds_and_extensions_work_the_same_when_unmounted() {
    let mut m = mount_with_retention();
    fs::write(m.path("a.log"), b"x\n").unwrap();
    m.stop();
    wormfs(&m, &["hold", "set", "/a.log", "--reason", "offline hold"]).assert_success("hold set offline");
    wormfs(&m, &["retention", "extend", "/a.log", "--by", "1d"]).assert_success("extend offline");
    m.restart();
    std::thread::sleep(RETENTION + Duration::from_millis(300));
    assert_errno(fs::remove_file(m.path("a.log")), EPERM);
    let k = kinds(&m);
    assert!(k.contains(&"Hold".to_string()) && k.contains(&"Retention".to_string()), "{k:?}");
}

#[test]
fn retention_extends_and_is_never_shortened() {
    let m = mount_with_retention();
    fs::write(m.path("a.log"), b"x\n").unwrap();
    wormfs(&m, &["retention", "extend", "/a.log", "--until", "2099-01-01"]).assert_success("extend --until");
    let out = wormfs(&m, &["retention", "extend", "/a.log", "--until", "2098-01-01"]);
    assert_eq!(out.status.code(), Some(1), "shortening must fail: {}", out.stdout);
    assert!(out.stderr.contains("only be extended"), "{}", out.stderr);
    std::thread::sleep(RETENTION + Duration::from_millis(300));
    assert_errno(fs::remove_file(m.path("a.log")), EPERM);
    let ls = wormfs(&m, &["ls", "/a.log"]);
    assert!(ls.stdout.contains("2099-01-01"), "{}", ls.stdout);
}

#[test]
fn touch_a_with_a_future_date_extends_retention_and_an_earlier_one_is_refused() {
    let m = mount_with_retention();
    fs::write(m.path("snap.log"), b"x\n").unwrap();
    run(&format!("touch -a -d '2099-06-01 00:00:00 UTC' {}", q(m.path("snap.log")))).assert_success("touch -a extends");
    let records = m.records();
    let ext = records.iter().find(|r| r["kind"] == "Retention").expect("a Retention record");
    assert!(ext["retain_until"].as_str().unwrap().starts_with("2099-06-01"), "{ext}");
    let out = run(&format!("touch -a -d '2098-01-01 00:00:00 UTC' {}", q(m.path("snap.log"))));
    out.assert_failure("an earlier retention date");
    assert!(out.stderr.contains("Operation not permitted"), "{}", out.stderr);
    // An ordinary touch (atime = now) is not a retention request.
    run(&format!("touch {}", q(m.path("snap.log")))).assert_success("plain touch");
}

#[test]
fn per_directory_rules_and_bounds_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wormfs.toml");
    fs::write(
        &config,
        "retention = \"2s\"\nmin_retention = \"1s\"\nmax_retention = \"1y\"\n\n[[rule]]\npath = \"/audit\"\nretention = \"1d\"\n",
    )
    .unwrap();
    let m = TestMount::builder().arg("--config").arg(&config).start();
    m.mkdir("audit");
    fs::write(m.path("audit/a.log"), b"long\n").unwrap();
    fs::write(m.path("short.log"), b"short\n").unwrap();
    std::thread::sleep(RETENTION + Duration::from_millis(300));
    fs::remove_file(m.path("short.log")).unwrap();
    assert_errno(fs::remove_file(m.path("audit/a.log")), EPERM);
}

#[test]
fn a_malformed_config_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    fs::write(&config, "retention = \"90d\"\n[[rule]]\npath = \"/a\"\nretention = \"7 years\"\n").unwrap();
    let state = dir.path().join("state");
    keygen(&state);
    fs::create_dir(dir.path().join("mnt")).unwrap();
    let out = run_cmd(
        Command::new(WORMFS)
            .args(["mount", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--state")
            .arg(&state)
            .arg(dir.path().join("mnt")),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("bad.toml:4"), "names the line: {}", out.stderr);
    assert!(!is_mount_point(&dir.path().join("mnt").canonicalize().unwrap()));
}

#[test]
fn non_root_cannot_set_a_hold() {
    let m = mount_with_retention();
    fs::write(m.path("a.log"), b"x\n").unwrap();
    let out = run_as(65534, 65534, &format!("{} hold set /a.log --reason nope --state {}", q(WORMFS), q(m.state())));
    out.assert_failure("non-root hold");
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    assert!(!kinds(&m).iter().any(|k| k == "Hold"));
}

#[test]
fn a_file_deleted_behind_wormfs_is_still_a_finding() {
    let mut m = mount_with_retention();
    fs::write(m.path("a.log"), b"x\n").unwrap();
    m.stop();
    std::thread::sleep(RETENTION + Duration::from_millis(300));
    // As root with CAP_LINUX_IMMUTABLE, who can clear the flag wormfs set.
    unprotect(m.backing("a.log"));
    fs::remove_file(m.backing("a.log")).unwrap();
    let out = verify(&m);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(out.stdout.contains("file.missing") && out.stdout.contains("/a.log"), "{}", out.stdout);
}

#[test]
fn a_clock_set_back_is_recorded_and_expires_nothing_early() {
    let mut m = mount_with_retention();
    fs::write(m.path("a.log"), b"x\n").unwrap();
    m.stop();
    // The same daemon, its clock a day behind the chain (libfaketime intercepts clock_gettime).
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(std::path::Path::new(lib).exists(), "{lib} missing: scripts/deps installs faketime");
    m.set_env("LD_PRELOAD", lib);
    m.set_env("FAKETIME", "-1d");
    m.restart();
    fs::write(m.path("b.log"), b"y\n").unwrap();
    std::thread::sleep(RETENTION + Duration::from_millis(500));
    // Two seconds passed on every clock, but the chain's clock cannot go back a day: nothing
    // has expired on it, so both files are still retained.
    assert_errno(fs::remove_file(m.path("a.log")), EPERM);
    assert_errno(fs::remove_file(m.path("b.log")), EPERM);
    let records = m.records();
    let jumps: Vec<_> = records.iter().filter(|r| r["kind"] == "ClockJump").collect();
    assert_eq!(jumps.len(), 1, "{records:#?}");
    let times: Vec<u64> = records.iter().map(|r| r["time_ns"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "record times never go back: {times:?}");
    assert!(m.log().contains("behind the newest record"), "{}", m.log());
}

#[test]
fn a_client_that_connects_and_says_nothing_delays_no_admin_command() {
    let m = mount_with_retention();
    m.mkdir("case");
    let socket = m.state().join("control.sock");
    // Several clients connect and send nothing (or half a line), and keep their connections.
    let silent: Vec<std::os::unix::net::UnixStream> = (0..4)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).expect("connect to the control socket"))
        .collect();
    let mut trickle = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    std::io::Write::write_all(&mut trickle, b"{\"op\":").unwrap();
    let started = std::time::Instant::now();
    wormfs(&m, &["hold", "set", "/case", "--reason", "while others idle"]).assert_success("hold set");
    let took = started.elapsed();
    // Served at once, not after the idle clients' deadlines (2 s each, one after another before).
    assert!(took < Duration::from_millis(1500), "the hold took {took:?} behind idle clients");
    // The idle ones are cut off at the deadline: their connection ends (EOF, or an answer).
    let mut buf = String::new();
    let mut reader = std::io::BufReader::new(&silent[0]);
    silent[0].set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = std::io::BufRead::read_line(&mut reader, &mut buf);
    assert!(buf.is_empty(), "a silent client gets no answer, only a closed connection: {buf:?}");
    assert!(m.records().iter().any(|r| r["kind"] == "Hold" && r["reason"] == "while others idle"));
    drop(silent);
}

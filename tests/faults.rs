//! Full disks under a real mount: STATE_DIR and DATA_DIR each on a small tmpfs that the test
//! fills. The writer gets ENOSPC, the daemon keeps serving, nothing is sealed that was not
//! written, and once space returns writing resumes without a remount and verify is clean.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Fill the filesystem holding `dir` with one file, `filler`, until it takes no more bytes.
fn fill(filler: &Path) -> u64 {
    let mut f = File::create(filler).unwrap();
    let mut total = 0;
    for chunk in [1 << 20, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(n) => total += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
    }
    f.sync_all().ok();
    total
}

fn verify(m: &TestMount) -> RunOutput {
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--data"]).arg(m.data()).arg("--state").arg(m.state()).env_remove("RUST_LOG");
    run_cmd(&mut cmd)
}

/// close(2) of `f`, with its result (std's drop ignores it).
fn close(f: File) -> nix::Result<()> {
    nix::unistd::close(f.into_raw_fd())
}

fn append_open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(0o644).open(path)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_full_state_disk_gets_enospc_and_writing_resumes_when_space_returns() {
    let outside = tempfile::tempdir().unwrap();
    let metrics_file = outside.path().join("metrics.prom");
    // 48 MiB is the index's reserve (`index::rocks::RESERVE`); the tmpfs leaves room above it.
    let mut tm = TestMount::builder()
        .on_tmpfs("state", 96)
        .arg("--seal-interval")
        .arg("1s")
        .arg("--metrics-file")
        .arg(&metrics_file)
        .start();
    tm.create("sealed.log", b"sealed before\n");
    let mut open = append_open(&tm.path("a.log")).unwrap();
    open.write_all(b"written before\n").unwrap();

    let filler = tm.state().join("filler");
    let filled = fill(&filler);
    eprintln!("filled STATE_DIR with {filled} bytes");
    std::thread::sleep(Duration::from_millis(300)); // past the daemon's 100 ms look at the disk

    // New bytes: ENOSPC, and nothing reaches the backing file.
    let before = Snapshot::of(tm.backing("a.log"));
    let e = open.write_all(b"refused\n").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    before.assert_unchanged();
    // A new file: ENOSPC, and no file is left behind.
    let e = append_open(&tm.path("new.log")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert!(!tm.backing("new.log").exists());
    // Appends to an existing, sealed file: ENOSPC at the write, not at the open.
    let mut other = append_open(&tm.path("sealed.log")).unwrap();
    assert_eq!(other.write_all(b"x").unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    close(other).unwrap();
    // The close of a file with bytes to seal: the seal cannot be written, and close says so.
    assert_eq!(close(open), Err(nix::errno::Errno::ENOSPC));
    // Reads go on, and the daemon is alive.
    assert_eq!(fs::read(tm.path("sealed.log")).unwrap(), b"sealed before\n");
    assert!(tm.is_running(), "the daemon died:\n{}", tm.log());
    assert!(seals_for(&tm.records(), "/a.log").is_empty(), "nothing was sealed below the reserve");

    // Space returns: the waiting seal is written by the interval sealer, no remount.
    fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || seals_for(&tm.records(), "/a.log") == [(0, 15)]),
        "the seal of the bytes written before was not written once space returned: {:?}\n{}",
        seals_for(&tm.records(), "/a.log"),
        tm.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut again = append_open(&tm.path("a.log")).unwrap();
    again.write_all(b"after\n").unwrap();
    close(again).unwrap();
    tm.create("new.log", b"new\n");
    assert_eq!(fs::read(tm.backing("a.log")).unwrap(), b"written before\nafter\n");

    let log = tm.log();
    let ran_out = log.lines().filter(|l| l.contains("to seal safely")).count();
    assert_eq!(ran_out, 1, "running out is logged once:\n{log}");
    assert!(log.contains("room again"), "{log}");
    assert!(!log.contains("panicked") && !log.contains("Assertion"), "{log}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let text = fs::read_to_string(&metrics_file).unwrap_or_default();
            metric(&text, "wormfs_space_refusals_total").is_some_and(|n| n >= 3.0)
                && metric(&text, "wormfs_state_space_short") == Some(0.0)
        }),
        "{}",
        fs::read_to_string(&metrics_file).unwrap_or_default()
    );
    tm.stop();
    let out = verify(&tm);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
}

#[test]
fn a_full_data_disk_gets_enospc_and_keeps_what_was_written() {
    let mut tm = TestMount::builder().on_tmpfs("data", 16).arg("--seal-interval").arg("1s").start();
    let mut open = append_open(&tm.path("a.log")).unwrap();
    open.write_all(b"first line\n").unwrap();
    // Another process fills the disk (behind wormfs' back, removed before verify), then the
    // writer runs into the wall.
    let big = tm.data().join("big");
    let filled = fill(&big);
    eprintln!("filled DATA_DIR's disk with {filled} bytes");
    let mut accepted = 0;
    let e = loop {
        match open.write(&[b'y'; 4096]) {
            Ok(n) => accepted += n as u64,
            Err(e) => break e,
        }
    };
    eprintln!("write(2) accepted {accepted} more bytes before ENOSPC");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    let written = tm.backing_len("a.log");
    assert_eq!(written, 11 + accepted, "every byte write(2) accepted is on disk");
    // Whatever write(2) accepted is on disk and is what close seals.
    close(open).unwrap();
    assert!(tm.is_running());
    assert!(
        wait_until(Duration::from_secs(10), || seals_for(&tm.records(), "/a.log").last().map(|s| s.1) == Some(written))
    );
    let e = append_open(&tm.path("a.log")).unwrap().write_all(&[b'z'; 8192]).unwrap_err();
    assert!(matches!(e.raw_os_error(), Some(libc::ENOSPC)) || e.kind() == ErrorKind::WriteZero, "{e}");

    // Space returns: writing resumes without a remount.
    fs::remove_file(&big).unwrap();
    let mut again = append_open(&tm.path("a.log")).unwrap();
    again.write_all(b"after\n").unwrap();
    close(again).unwrap();
    let size = tm.backing_len("a.log");
    assert!(
        wait_until(Duration::from_secs(10), || seals_for(&tm.records(), "/a.log").last().map(|s| s.1) == Some(size))
    );
    tm.stop();
    let out = verify(&tm);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
}

/// The Found case of the issue: a filesystem mounted inside DATA_DIR makes a rename into it
/// fail with EXDEV after the Rename was recorded. The chain must say it did not happen, so the
/// file keeps its history where it is and verify stays clean, now and after a restart.
#[test]
fn a_rename_that_fails_with_exdev_leaves_the_chain_and_the_disk_agreeing() {
    let mut tm = TestMount::builder().arg("--retention").arg("1s").start();
    tm.mkdir("other");
    let inner = tm.backing("other");
    run_cmd(Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&inner))
        .assert_success("mount a tmpfs inside DATA_DIR");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _inner = Unmount(&inner);
    tm.create("a.log", b"evidence\n");
    std::thread::sleep(Duration::from_millis(1300));
    let e = fs::rename(tm.path("a.log"), tm.path("other/a.log")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
    assert_eq!(fs::read(tm.backing("a.log")).unwrap(), b"evidence\n");
    let kinds: Vec<String> = tm.records().iter().map(|r| r["kind"].as_str().unwrap().to_string()).collect();
    assert!(kinds.ends_with(&["Rename".to_string(), "Aborted".to_string()]), "{kinds:?}");
    tm.stop();
    let out = verify(&tm);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    tm.restart();
    tm.assert_append_works("a.log");
    tm.stop();
    let out = verify(&tm);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("missing"), "{}", out.stdout);
}

/// Opening the index for writing writes too (RocksDB's WAL, MANIFEST, OPTIONS): on a full state
/// disk the mount is refused with the figures, never aborted inside RocksDB, and nothing is lost.
#[test]
fn a_mount_on_a_full_state_disk_is_refused_with_a_clear_error() {
    let mut tm = TestMount::builder().on_tmpfs("state", 96).start();
    tm.create("a.log", b"sealed\n");
    tm.stop();
    let filler = tm.state().join("filler");
    fill(&filler);
    let mut cmd = Command::new(WORMFS);
    cmd.args(["mount", "--data"]).arg(tm.data()).arg("--state").arg(tm.state()).arg(tm.mnt());
    let out = run_cmd(cmd.env_remove("RUST_LOG"));
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no room to write the index safely"), "{}", out.stderr);
    assert!(!is_wormfs_mounted(tm.mnt()));
    // The read-only tools still work on the full disk, and nothing was lost.
    let out = verify(&tm);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    fs::remove_file(&filler).unwrap();
    tm.restart();
    tm.assert_append_works("a.log");
}

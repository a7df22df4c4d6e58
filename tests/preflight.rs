//! Start-up checks (each refusal exits 1 with one `wormfs: error:` line and mounts nothing),
//! usage errors, and clean shutdown on SIGTERM / SIGINT.
//!
//! Not covered: a missing /dev/fuse, which cannot be simulated without disturbing every other
//! test running in parallel.

mod common;

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use tempfile::TempDir;

/// A private, world-traversable temp dir for building odd layouts.
struct Scratch {
    _dir: TempDir,
    root: PathBuf,
}

impl Drop for Scratch {
    /// A mount that started may have left sealed files immutable (chattr +i).
    fn drop(&mut self) {
        unprotect_tree(&self.root);
    }
}

impl Scratch {
    fn new() -> Scratch {
        assert_root();
        let dir = tempfile::Builder::new().prefix("wormfs-preflight.").tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().canonicalize().unwrap();
        Scratch { _dir: dir, root }
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A state dir holding a signing key (`wormfs keygen`), so a missing key is never the
    /// reason a start is refused.
    fn keyed_state(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        keygen(&p);
        p
    }
}

struct Outcome {
    status: ExitStatus,
    stderr: String,
}

/// Run `prefix... wormfs mount --data D --state S MNT`, expecting it to refuse. If it mounts
/// instead, it is killed and unmounted and the test fails.
fn run_wormfs(prefix: &[&str], data: &Path, state: &Path, mnt: &Path) -> Outcome {
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(WORMFS);
            c
        }
        None => Command::new(WORMFS),
    };
    cmd.arg("mount")
        .arg("--data")
        .arg(data)
        .arg("--state")
        .arg(state)
        .arg(mnt)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr_file.path()).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let status = wait_timeout(&mut child, EXIT_TIMEOUT);
    let stderr = fs::read_to_string(stderr_file.path()).unwrap_or_default();
    let Some(status) = status else {
        let mounted = is_wormfs_mounted(mnt);
        if mounted {
            force_unmount(mnt);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "wormfs should have refused to start but was still running after {EXIT_TIMEOUT:?} \
             (mounted: {mounted})\n--- stderr ---\n{stderr}"
        );
    };
    Outcome { status, stderr }
}

/// Exit status 1, exactly one stderr line, starting `wormfs: error:` and giving `reason`, and
/// nothing mounted. The reason is what tells the refusal apart from a failure for any other
/// cause.
#[track_caller]
fn assert_refused(out: &Outcome, mnt: &Path, reason: &str) {
    assert_one_line_error(out, reason);
    assert!(!is_wormfs_mounted(mnt), "{reason}: {} got mounted anyway", mnt.display());
}

/// Exit status 1 and exactly one stderr line, starting `wormfs: error:` and giving `reason`.
#[track_caller]
fn assert_one_line_error(out: &Outcome, reason: &str) {
    assert_eq!(out.status.code(), Some(1), "{reason}: exit status; stderr:\n{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{reason}: expected a one-line message, got:\n{}", out.stderr);
    assert!(lines[0].starts_with("wormfs: error:"), "{reason}: message: {:?}", lines[0]);
    assert!(lines[0].contains(reason), "the message should say {reason:?}: {:?}", lines[0]);
}

/// The reason wormfs gives for overlapping trees: `what` overlap, naming both paths.
fn overlap(what: &str, a: &Path, b: &Path) -> String {
    format!("{what} overlap ({} and {}); they must be separate trees", a.display(), b.display())
}

#[test]
fn refuses_data_dir_equal_to_mountpoint() {
    let s = Scratch::new();
    let both = s.dir("both");
    let out = run_wormfs(&[], &both, &s.keyed_state("state"), &both);
    assert_refused(&out, &both, &overlap("data directory and mountpoint", &both, &both));
}

#[test]
fn refuses_data_dir_equal_to_mountpoint_through_a_symlink() {
    // The same directory spelled differently must still count as overlap.
    let s = Scratch::new();
    let mnt = s.dir("mnt");
    symlink(&mnt, s.path("alias")).unwrap();
    let out = run_wormfs(&[], &s.path("alias"), &s.keyed_state("state"), &mnt);
    assert_refused(&out, &mnt, &overlap("data directory and mountpoint", &s.path("alias"), &mnt));
}

#[test]
fn refuses_data_dir_inside_mountpoint() {
    // data/ does not exist yet, so the mount point is still empty: only the overlap is wrong.
    let s = Scratch::new();
    let mnt = s.dir("mnt");
    let out = run_wormfs(&[], &mnt.join("data"), &s.keyed_state("state"), &mnt);
    assert_refused(&out, &mnt, &overlap("data directory and mountpoint", &mnt.join("data"), &mnt));
}

#[test]
fn refuses_mountpoint_inside_data_dir() {
    let s = Scratch::new();
    let data = s.dir("data");
    fs::write(data.join("existing.log"), "keep\n").unwrap();
    let mnt = s.dir("data/mnt");
    let out = run_wormfs(&[], &data, &s.keyed_state("state"), &mnt);
    assert_refused(&out, &mnt, &overlap("data directory and mountpoint", &data, &mnt));
    assert_eq!(fs::read_to_string(data.join("existing.log")).unwrap(), "keep\n");
}

#[test]
fn refuses_state_dir_overlapping_data_dir_or_mountpoint() {
    // (state, data) relative to a fresh scratch dir with an empty mnt/, and the overlap wormfs
    // must name: which trees, and the two paths in the order it compares them. The state dir
    // gets a signing key, except where that would put files in mnt/ (a second reason to refuse).
    const STATE_AND_MNT: &str = "state directory and mountpoint";
    const DATA_AND_STATE: &str = "data and state directories";
    let layouts = [
        ("mnt", "data", STATE_AND_MNT, ("mnt", "mnt")),
        ("mnt/state", "data", STATE_AND_MNT, ("mnt/state", "mnt")),
        ("same", "same", DATA_AND_STATE, ("same", "same")),
        ("data/state", "data", DATA_AND_STATE, ("data", "data/state")),
        ("state", "state/data", DATA_AND_STATE, ("state/data", "state")),
    ];
    for (state, data, what, (a, b)) in layouts {
        let s = Scratch::new();
        let mnt = s.dir("mnt");
        let state_dir = if state.starts_with("mnt") { s.path(state) } else { s.keyed_state(state) };
        let out = run_wormfs(&[], &s.path(data), &state_dir, &mnt);
        assert_refused(&out, &mnt, &overlap(what, &s.path(a), &s.path(b)));
    }
}

#[test]
fn refuses_non_empty_mountpoint() {
    let s = Scratch::new();
    let mnt = s.dir("mnt");
    fs::write(mnt.join("keep.txt"), "hidden if mounted\n").unwrap();
    let out = run_wormfs(&[], &s.path("data"), &s.keyed_state("state"), &mnt);
    assert_refused(&out, &mnt, &format!("mountpoint {} is not empty", mnt.display()));
    assert_eq!(fs::read_to_string(mnt.join("keep.txt")).unwrap(), "hidden if mounted\n");
}

#[test]
fn refuses_mountpoint_that_is_not_a_directory() {
    let s = Scratch::new();
    let state = s.keyed_state("state");
    let file = s.path("not-a-dir");
    fs::write(&file, "").unwrap();
    let out = run_wormfs(&[], &s.path("data"), &state, &file);
    assert_refused(&out, &file, &format!("mountpoint {} is not a directory", file.display()));

    let missing = s.path("missing");
    let out = run_wormfs(&[], &s.path("data"), &state, &missing);
    assert_refused(&out, &missing, &format!("mountpoint {} does not exist", missing.display()));
}

/// Unmounts a tmpfs when dropped, even if the test failed.
struct TmpfsGuard(PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        if is_mount_point(&self.0) {
            force_unmount(&self.0);
        }
    }
}

#[test]
fn refuses_mountpoint_that_is_already_a_mount() {
    let s = Scratch::new();
    let mnt = s.dir("mnt");
    run(&format!("mount -t tmpfs wormfs-test-tmpfs {}", q(&mnt))).assert_success("mount tmpfs");
    let _guard = TmpfsGuard(mnt.clone());

    let out = run_wormfs(&[], &s.path("data"), &s.keyed_state("state"), &mnt);
    assert_refused(&out, &mnt, &format!("mountpoint {} is already a mount point", mnt.display()));
    assert_eq!(mount_types_at(&mnt), ["tmpfs"], "the tmpfs must be left alone");
}

#[test]
fn refuses_mountpoint_that_is_a_live_wormfs_mount() {
    let live = TestMount::start();
    let s = Scratch::new();
    let out = run_wormfs(&[], &s.path("data"), &s.keyed_state("state"), live.mnt());
    // The first mount is still there, so "nothing mounted" does not apply; check the stack.
    assert_one_line_error(&out, &format!("mountpoint {} is already a mount point", live.mnt().display()));
    assert_eq!(mount_types_at(live.mnt()), ["fuse.wormfs"], "exactly one wormfs mount there");
    live.assert_still_works();
}

#[test]
fn refuses_to_run_as_non_root() {
    let s = Scratch::new();
    // Give nobody everything it could need (including a readable signing key), so being
    // non-root is the only problem.
    s.keyed_state("state");
    s.dir("data");
    s.dir("mnt");
    run(&format!("chown -R 65534:65534 {}", q(&s.root))).assert_success("chown");
    let mnt = s.path("mnt");
    let out = run_wormfs(
        &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        &s.path("data"),
        &s.path("state"),
        &mnt,
    );
    assert_refused(&out, &mnt, "permission denied: wormfs mount must run as root");
}

#[test]
fn usage_errors_exit_with_status_2() {
    let s = Scratch::new();
    let mnt = s.dir("mnt");
    let data: OsString = s.path("data").into();
    // Each with what the usage message must name: the argument that is wrong or missing.
    let cases: Vec<(Vec<OsString>, &[&str])> = vec![
        (vec!["mount".into(), "--no-such-flag".into(), mnt.clone().into()], &["unexpected argument '--no-such-flag'"]),
        (
            vec!["mount".into(), "--data".into(), data.clone()],
            &["required arguments were not provided", "--state <STATE_DIR>", "<MOUNTPOINT>"],
        ),
        (vec!["no-such-subcommand".into()], &["unrecognized subcommand 'no-such-subcommand'"]),
    ];
    for (args, reasons) in cases {
        let out = run_cmd(Command::new(WORMFS).args(&args).env_remove("RUST_LOG"));
        assert_eq!(out.status.code(), Some(2), "wormfs {args:?}: {out:#?}");
        for reason in reasons {
            assert!(
                out.stderr.contains(reason),
                "wormfs {args:?} should explain the usage error with {reason:?}: {out:#?}"
            );
        }
    }
    assert!(!is_mount_point(&mnt));
}

#[test]
fn refuses_to_start_without_a_signing_key() {
    let s = Scratch::new();
    let mnt = s.dir("mnt");
    let state = s.dir("state"); // exists, but nobody ran `wormfs keygen`
    let out = run_wormfs(&[], &s.path("data"), &state, &mnt);
    let reason = format!(
        "no signing key at {}; create one with `wormfs keygen --state {}`",
        state.join("signing.key").display(),
        state.display()
    );
    assert_refused(&out, &mnt, &reason);
}

#[test]
fn creates_a_missing_data_dir() {
    let tm = TestMount::builder().leave_data_missing().start();
    assert!(tm.data().is_dir(), "DATA_DIR created");
    tm.create("first.log", b"hello\n");
    assert_eq!(fs::read(tm.backing("first.log")).unwrap(), b"hello\n");
}

/// Write through the mount, stop with `signal`, and check the data outlives the mount.
fn clean_shutdown_on(signal: Signal) {
    let mut tm = TestMount::start();
    tm.append("kept.log", b"written before shutdown\n");
    tm.stop_with(signal); // asserts exit status 0 and that the mount is gone
    assert!(!is_mount_point(tm.mnt()));
    assert_eq!(fs::read_dir(tm.mnt()).unwrap().count(), 0, "mount point is empty again");
    assert_eq!(fs::read(tm.backing("kept.log")).unwrap(), b"written before shutdown\n");
}

#[test]
fn sigterm_unmounts_cleanly_and_exits_zero() {
    clean_shutdown_on(Signal::SIGTERM);
}

#[test]
fn sigint_unmounts_cleanly_and_exits_zero() {
    clean_shutdown_on(Signal::SIGINT);
}

#[test]
fn sigterm_on_a_busy_mount_detaches_it_and_exits_once_the_last_user_leaves() {
    // A writer still holding a file open must not wedge shutdown: the mount point is detached
    // at once (lazily), and the daemon exits 0 when the writer goes away.
    let mut tm = TestMount::start();
    let mut holder = KillOnDrop(
        Command::new("sh")
            .arg("-c")
            // `exec sleep` so killing this pid really closes fd 3.
            .arg(format!("exec 3>>{}; echo held >&3; exec sleep 30", q(tm.path("held.log"))))
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(3), || { fs::read(tm.backing("held.log")).is_ok_and(|b| b == b"held\n") }));

    tm.signal(Signal::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(5), || !is_mount_point(tm.mnt())),
        "the busy mount should be detached promptly after SIGTERM\n--- daemon stderr ---\n{}",
        tm.log()
    );
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    tm.assert_clean_exit("SIGTERM once the last user left");
    assert_eq!(fs::read(tm.backing("held.log")).unwrap(), b"held\n");
}

#[test]
fn sighup_is_ignored() {
    let mut tm = TestMount::start();
    tm.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(tm.is_running(), "SIGHUP stopped the daemon\n--- daemon stderr ---\n{}", tm.log());
    assert!(is_wormfs_mounted(tm.mnt()), "SIGHUP unmounted the file system");
    tm.assert_still_works();
    tm.stop();
}

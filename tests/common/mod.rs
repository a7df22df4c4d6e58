//! Test harness for the wormfs integration tests.
//!
//! Every test mounts its own [`TestMount`]: a private temp dir holding `data/`, `state/` and
//! `mnt/`, with the real `wormfs` binary serving `mnt/`. Nothing is skipped: if FUSE cannot be
//! mounted, `TestMount::start` panics with the reason and the daemon's stderr.

#![allow(dead_code)] // each test crate uses a different subset of the helpers

use std::ffi::{OsStr, OsString};
use std::fmt::Debug;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

pub mod debian_tools;
pub mod localstack;
pub mod witness;

/// The binary under test.
pub const WORMFS: &str = env!("CARGO_BIN_EXE_wormfs");

/// How long the daemon gets to mount, and to exit after a signal.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// /proc/self/mountinfo
// ---------------------------------------------------------------------------------------------

/// Undo the octal escaping (`\040` for a space, ...) used for paths in /proc/self/mountinfo.
pub fn unescape_mountinfo(field: &str) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let digit = |k: usize| u32::from(bytes[i + k] - b'0');
            out.push((digit(1) * 64 + digit(2) * 8 + digit(3)) as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

/// File system types of every mount whose mount point is exactly `path` (stacked mounts give
/// several entries, bottom first).
pub fn mount_types_at(path: &Path) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    let mut types = Vec::new();
    for line in info.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = before.split(' ').nth(4) else {
            continue;
        };
        if Path::new(&unescape_mountinfo(mount_point)) == path {
            types.push(after.split(' ').next().unwrap_or("").to_string());
        }
    }
    types
}

/// Whether a live wormfs mount sits at `path` (which must be canonical).
pub fn is_wormfs_mounted(path: &Path) -> bool {
    mount_types_at(path).iter().any(|t| t == "fuse.wormfs")
}

/// Whether anything at all is mounted at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    !mount_types_at(path).is_empty()
}

/// Lazily detach whatever is mounted at `path`; used only for cleanup.
pub fn force_unmount(path: &Path) {
    let _ = Command::new("umount").arg("-l").arg(path).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Poll `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => sleep(POLL),
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
    }
}

/// Kills (SIGKILL) and reaps a helper process when dropped, so a failing test does not leave a
/// `tail` or writer behind holding files open in a mount.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Result of a shell command.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panic (showing the command's output) unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(self.success(), "{what}: expected success, got {self:#?}");
        self
    }

    /// Panic unless it exited non-zero.
    #[track_caller]
    pub fn assert_failure(&self, what: &str) -> &Self {
        assert!(!self.success(), "{what}: expected a non-zero exit, got {self:#?}");
        self
    }
}

/// Run `script` with `sh -c`, bounded by `timeout(1)` so a wedged mount cannot hang the suite.
pub fn run(script: &str) -> RunOutput {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "30", "sh", "-c", script]);
    run_cmd(&mut cmd)
}

/// Run `script` with `sh -c` as `uid:gid` with no supplementary groups (via setpriv).
pub fn run_as(uid: u32, gid: u32, script: &str) -> RunOutput {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "30", "setpriv"]).arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).args([
        "--clear-groups",
        "sh",
        "-c",
        script,
    ]);
    run_cmd(&mut cmd)
}

/// Run a prepared command to completion, capturing stdout and stderr.
pub fn run_cmd(cmd: &mut Command) -> RunOutput {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    RunOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Quote a path for a `sh -c` script.
pub fn q(path: impl AsRef<Path>) -> String {
    let s = path.as_ref().to_str().expect("test paths are UTF-8");
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// Errors that carry an errno.
pub trait AsErrno: Debug {
    fn errno(&self) -> Option<i32>;
}

impl AsErrno for io::Error {
    fn errno(&self) -> Option<i32> {
        self.raw_os_error()
    }
}

impl AsErrno for nix::errno::Errno {
    fn errno(&self) -> Option<i32> {
        Some(*self as i32)
    }
}

fn errno_name(e: i32) -> String {
    format!("{} ({})", io::Error::from_raw_os_error(e), e)
}

/// The C library's text for errno `e` (e.g. "Operation not permitted"), as tools print it.
pub fn strerror(e: i32) -> String {
    let text = io::Error::from_raw_os_error(e).to_string();
    text.strip_suffix(&format!(" (os error {e})")).unwrap_or(&text).to_string()
}

/// Assert that `result` failed with exactly `expected` (e.g. `libc::EPERM`).
#[track_caller]
pub fn assert_errno<T: Debug, E: AsErrno>(result: Result<T, E>, expected: i32) {
    assert_errno_ctx(result, expected, "");
}

/// [`assert_errno`] with a note saying which case failed (for loops over cases).
#[track_caller]
pub fn assert_errno_ctx<T: Debug, E: AsErrno>(result: Result<T, E>, expected: i32, ctx: &str) {
    let want = errno_name(expected);
    match result {
        Ok(v) => panic!("{ctx}: expected {want}, but the operation succeeded: {v:?}"),
        Err(e) => assert_eq!(e.errno(), Some(expected), "{ctx}: expected {want}, got {e:?}"),
    }
}

/// A backing file's bytes and size, recorded before an operation that must not change it.
pub struct Snapshot {
    path: PathBuf,
    bytes: Vec<u8>,
    len: u64,
}

impl Snapshot {
    #[track_caller]
    pub fn of(path: impl AsRef<Path>) -> Snapshot {
        let path = path.as_ref().to_path_buf();
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("snapshot {}: {e}", path.display()));
        let len = fs::metadata(&path).unwrap().len();
        Snapshot { path, bytes, len }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Assert the file still exists with the same size and the same bytes.
    #[track_caller]
    pub fn assert_unchanged(&self) {
        let meta = fs::symlink_metadata(&self.path).unwrap_or_else(|e| panic!("{} vanished: {e}", self.path.display()));
        assert!(meta.is_file(), "{} is no longer a regular file", self.path.display());
        assert_eq!(meta.len(), self.len, "size of {} changed", self.path.display());
        let now = fs::read(&self.path).unwrap();
        assert!(
            now == self.bytes,
            "bytes of {} changed:\n before: {:?}\n after:  {:?}",
            self.path.display(),
            String::from_utf8_lossy(&self.bytes),
            String::from_utf8_lossy(&now)
        );
    }
}

/// Assert nothing at all exists at `path` (not even a dangling symlink or a special file).
#[track_caller]
pub fn assert_absent(path: impl AsRef<Path>) {
    let path = path.as_ref();
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("lstat {}: unexpected error {e}", path.display()),
        Ok(m) => panic!("{} exists but should not: {:?}", path.display(), m.file_type()),
    }
}

/// Poll `cond` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL);
    }
}

/// Deterministic pseudo-random bytes (xorshift), so big-file tests need no extra crates.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[track_caller]
pub fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the wormfs integration tests must run as root (they mount FUSE file systems)"
    );
}

/// Create the ed25519 signing key in `state` with `wormfs keygen`, as an operator would before
/// the first mount.
#[track_caller]
pub fn keygen(state: &Path) {
    let mut cmd = Command::new(WORMFS);
    cmd.arg("keygen").arg("--state").arg(state).env_remove("RUST_LOG");
    run_cmd(&mut cmd).assert_success("wormfs keygen");
}

// ---------------------------------------------------------------------------------------------
// TestMount
// ---------------------------------------------------------------------------------------------

/// Options for starting a [`TestMount`].
#[derive(Default)]
pub struct Builder {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    leave_data_missing: bool,
    /// "data" or "state", each on a tmpfs of this many MiB (a disk that can fill).
    tmpfs: Vec<(&'static str, u64)>,
}

impl Builder {
    /// Extra command-line argument (e.g. `--allow-other`, `--verbose`), placed before MOUNTPOINT.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Environment variable for the daemon (RUST_LOG is cleared unless set here).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Put DATA_DIR (`"data"`) or STATE_DIR (`"state"`) on its own tmpfs of `mib` MiB, so a
    /// test can fill it. Unmounted when the TestMount is dropped.
    pub fn on_tmpfs(mut self, dir: &'static str, mib: u64) -> Self {
        assert!(dir == "data" || dir == "state", "on_tmpfs takes \"data\" or \"state\"");
        self.tmpfs.push((dir, mib));
        self
    }

    /// Do not create data/ beforehand (wormfs must create it).
    pub fn leave_data_missing(mut self) -> Self {
        self.leave_data_missing = true;
        self
    }

    /// Spawn the daemon and wait until the mount is live; panics with the reason otherwise.
    #[track_caller]
    pub fn start(self) -> TestMount {
        assert_root();
        let dir = tempfile::Builder::new().prefix("wormfs-test.").tempdir().expect("tempdir");
        // Other users (setpriv tests, --allow-other) must be able to reach the mount point.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (data, state, mnt) = (root.join("data"), root.join("state"), root.join("mnt"));
        let mut tmpfs = Vec::new();
        for (dir, mib) in &self.tmpfs {
            let at = root.join(dir);
            fs::create_dir(&at).unwrap();
            let size = format!("size={mib}m,mode=0755");
            run_cmd(Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(&at))
                .assert_success("mount a tmpfs");
            tmpfs.push(at);
        }
        if !self.leave_data_missing && !data.exists() {
            fs::create_dir(&data).unwrap();
        }
        // `wormfs mount` needs a signing key in STATE_DIR; keygen also creates the directory.
        keygen(&state);
        fs::create_dir(&mnt).unwrap();
        let scratch = root.join("scratch");
        fs::create_dir(&scratch).unwrap();

        let log_path = root.join("wormfs.log");
        let mut tm = TestMount {
            child: None,
            mnt,
            data,
            state,
            scratch,
            log_path,
            args: self.args,
            env: self.env,
            tmpfs,
            _dir: dir,
        };
        tm.spawn();
        tm.wait_until_mounted();
        tm
    }
}

/// The example rsyslog config shipped for admins (the tests run exactly this, pointed at
/// their mount) and the mount point it expects.
pub const EXAMPLE_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rsyslog-wormfs.conf");
pub const EXAMPLE_MOUNT: &str = "/var/log/worm/";

/// The example config, pointed at mount `m`, behind a private imuxsock socket and work directory
/// and nothing of the system's (/dev/log, /var/spool/rsyslog).
pub fn rsyslog_test_conf(m: &TestMount, socket: &Path, work: &Path) -> String {
    let example = fs::read_to_string(EXAMPLE_CONF).expect("read scripts/rsyslog-wormfs.conf");
    assert!(example.contains(EXAMPLE_MOUNT), "the example config no longer writes under {EXAMPLE_MOUNT}");
    format!(
        "# generated by the tests from scripts/rsyslog-wormfs.conf\n\
         global(workDirectory=\"{work}\")\n\
         module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         input(type=\"imuxsock\" Socket=\"{socket}\" RateLimit.Interval=\"0\")\n\
         \n{body}",
        work = work.display(),
        socket = socket.display(),
        body = example.replace(EXAMPLE_MOUNT, &format!("{}/", m.mnt().display())),
    )
}

/// Seal and Recovered records (`wormfs log --json`) of the file at mount path `path` (e.g.
/// "/app.log"), in order: (start, end).
pub fn seals_for(records: &[serde_json::Value], path: &str) -> Vec<(u64, u64)> {
    records
        .iter()
        .filter(|r| (r["kind"] == "Seal" || r["kind"] == "Recovered") && r["path"] == path)
        .map(|r| (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap()))
        .collect()
}

/// A live wormfs mount in a private temp dir. Dropping it unmounts (even after a panic).
pub struct TestMount {
    child: Option<Child>,
    mnt: PathBuf,
    data: PathBuf,
    state: PathBuf,
    scratch: PathBuf,
    log_path: PathBuf,
    /// Extra mount arguments and environment, reused by `restart`.
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// tmpfs mounts (`Builder::on_tmpfs`), unmounted after the daemon stopped.
    tmpfs: Vec<PathBuf>,
    // Last, so the directory is removed only after Drop::drop has unmounted.
    _dir: TempDir,
}

impl TestMount {
    /// Mount with default options.
    #[track_caller]
    pub fn start() -> TestMount {
        Builder::default().start()
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    pub fn mnt(&self) -> &Path {
        &self.mnt
    }

    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn state(&self) -> &Path {
        &self.state
    }

    /// A directory outside the mount and outside data/, for source files and the like.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// `rel` seen through the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mnt.join(rel)
    }

    /// `rel` in the backing data directory.
    pub fn backing(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.data.join(rel)
    }

    /// The daemon's stderr (and stdout) so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Wait up to `timeout` for a daemon log line satisfying `pred`; returns that line.
    pub fn wait_for_log_line(&self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.log().lines().find(|l| pred(l)).map(str::to_owned);
            found.is_some()
        });
        found
    }

    /// Create `rel` through the mount with `content` (O_CREAT|O_EXCL, then sequential writes)
    /// and check the backing file got exactly those bytes. Returns the mount path.
    #[track_caller]
    pub fn create(&self, rel: impl AsRef<Path>, content: &[u8]) -> PathBuf {
        let path = self.path(&rel);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        f.write_all(content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        drop(f);
        assert_eq!(fs::read(self.backing(&rel)).unwrap(), content, "backing of {}", path.display());
        path
    }

    /// mkdir `rel` through the mount.
    #[track_caller]
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }

    /// Append `bytes` to `rel` through an O_APPEND handle (creating it if needed).
    #[track_caller]
    pub fn append(&self, rel: impl AsRef<Path>, bytes: &[u8]) {
        let path = self.path(rel);
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {} for append: {e}", path.display()));
        f.write_all(bytes).unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    }

    /// Proof that a refused operation did not wedge the file or the mount: appending to `rel`
    /// through the mount still works and lands exactly after the old bytes.
    #[track_caller]
    pub fn assert_append_works(&self, rel: impl AsRef<Path>) {
        let rel = rel.as_ref();
        let before = fs::read(self.backing(rel)).unwrap_or_default();
        let line = b"still appendable\n";
        self.append(rel, line);
        let mut expected = before;
        expected.extend_from_slice(line);
        assert_eq!(fs::read(self.backing(rel)).unwrap(), expected, "backing after append");
        assert_eq!(fs::read(self.path(rel)).unwrap(), expected, "mount view after append");
    }

    /// Like [`assert_append_works`] on a dedicated file, for tests whose victim is not a
    /// regular file.
    #[track_caller]
    pub fn assert_still_works(&self) {
        self.assert_append_works("alive-check.log");
    }

    /// Size of the backing file `rel`, for operations aimed at or around its end.
    #[track_caller]
    pub fn backing_len(&self, rel: impl AsRef<Path>) -> u64 {
        let path = self.backing(rel);
        fs::metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).len()
    }

    /// A refused operation, checked the three ways a user would: `op` fails with exactly
    /// `errno`, the backing file `rel` keeps its bytes and size, and `rel` still takes appends
    /// through the mount (the refusal wedged neither the file nor the mount). `what` names the
    /// operation in failure messages.
    ///
    /// The append moves the end, so an operation aimed at or past the end takes its offset from
    /// [`backing_len`](Self::backing_len) just before the call. A `move` closure that owns a
    /// handle closes it before the bytes are checked.
    #[track_caller]
    pub fn assert_refused<T: Debug, E: AsErrno>(
        &self,
        rel: impl AsRef<Path>,
        errno: i32,
        what: &str,
        op: impl FnOnce() -> Result<T, E>,
    ) {
        let rel = rel.as_ref();
        let snap = Snapshot::of(self.backing(rel));
        assert_errno_ctx(op(), errno, what);
        snap.assert_unchanged();
        self.assert_append_works(rel);
    }

    /// [`assert_refused`] for a command line tool: `run_tool` exits non-zero and its stderr
    /// gives the reason as the text of `errno` (e.g. "Operation not permitted"), `rel` keeps
    /// its bytes and still takes appends. Returns the run for further checks.
    #[track_caller]
    pub fn assert_tool_refused(
        &self,
        rel: impl AsRef<Path>,
        errno: i32,
        what: &str,
        run_tool: impl FnOnce() -> RunOutput,
    ) -> RunOutput {
        let rel = rel.as_ref();
        let snap = Snapshot::of(self.backing(rel));
        let out = run_tool();
        out.assert_failure(what);
        let reason = strerror(errno);
        assert!(out.stderr.contains(&reason), "{what}: stderr should say {reason:?}, got {out:#?}");
        snap.assert_unchanged();
        self.assert_append_works(rel);
        out
    }

    /// A refused creation of anything but a regular file: `op` fails with exactly `errno`,
    /// nothing appears at `rel` in DATA_DIR or through the mount, and the mount still takes
    /// appends.
    #[track_caller]
    pub fn assert_not_created<T: Debug, E: AsErrno>(
        &self,
        rel: impl AsRef<Path>,
        errno: i32,
        what: &str,
        op: impl FnOnce() -> Result<T, E>,
    ) {
        let rel = rel.as_ref();
        assert_errno_ctx(op(), errno, what);
        assert_absent(self.backing(rel));
        assert_absent(self.path(rel));
        self.assert_still_works();
    }

    fn wait_until_mounted(&mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        let mut foreign_since: Option<Instant> = None;
        loop {
            let types = mount_types_at(&self.mnt);
            if types.iter().any(|t| t == "fuse.wormfs") {
                return;
            }
            // Something got mounted, but not as fuse.wormfs: say so instead of waiting it out.
            if types.is_empty() {
                foreign_since = None;
            } else if foreign_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1) {
                panic!(
                    "wormfs mounted {} with fstype {types:?}, expected \"fuse.wormfs\" in \
                     /proc/self/mountinfo\n--- daemon stderr ---\n{}",
                    self.mnt.display(),
                    self.log()
                );
            }
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                // Drop cleans up whatever is left.
                panic!(
                    "wormfs exited ({status}) before {} was mounted\n--- daemon stderr ---\n{}",
                    self.mnt.display(),
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "wormfs did not mount {} within {MOUNT_TIMEOUT:?} (fstypes there: {:?})\n\
                     --- daemon stderr ---\n{}",
                    self.mnt.display(),
                    mount_types_at(&self.mnt),
                    self.log()
                );
            }
            sleep(POLL);
        }
    }

    /// Start the daemon on this mount's directories (appending to its log) and wait until the
    /// mount is live.
    #[track_caller]
    fn spawn(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let mut cmd = Command::new(WORMFS);
        cmd.arg("mount")
            .arg("--data")
            .arg(&self.data)
            .arg("--state")
            .arg(&self.state)
            .args(&self.args)
            .arg(&self.mnt)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawning {WORMFS}: {e}")));
        self.wait_until_mounted();
    }

    /// Set an environment variable for the next `restart`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    /// Mount again on the same data and state after `stop` or `kill9`.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs the daemon stopped first");
        self.spawn();
    }

    /// Mount again after `stop`, with `args` added to the mount's arguments (kept for later
    /// restarts too).
    #[track_caller]
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(OsString::from));
        self.restart();
    }

    /// Crash the daemon (SIGKILL: no seal, no Unmount record) and clear the dead mount.
    #[track_caller]
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon already stopped");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("SIGKILL the daemon");
        child.wait().expect("reap the daemon");
        force_unmount(&self.mnt);
        assert!(wait_until(Duration::from_secs(5), || !is_mount_point(&self.mnt)), "dead mount still there");
    }

    /// `wormfs <args> --state STATE` as a command, e.g. `wormfs_cmd(&["log", "--json"])`.
    pub fn wormfs_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(WORMFS);
        cmd.args(args).arg("--state").arg(&self.state).env_remove("RUST_LOG");
        cmd
    }

    /// The chain's records as `wormfs log --json` prints them.
    #[track_caller]
    pub fn records(&self) -> Vec<serde_json::Value> {
        let out = run_cmd(&mut self.wormfs_cmd(&["log", "--json"]));
        out.assert_success("wormfs log --json");
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Clean shutdown via SIGTERM: asserts exit status 0 and that the mount is gone.
    #[track_caller]
    pub fn stop(&mut self) {
        self.stop_with(Signal::SIGTERM);
    }

    /// Clean shutdown via `signal`: asserts exit status 0 and that the mount is gone.
    #[track_caller]
    pub fn stop_with(&mut self, signal: Signal) {
        self.signal(signal);
        self.assert_clean_exit(&format!("{signal}"));
    }

    /// Send `signal` to the daemon (no waiting).
    #[track_caller]
    pub fn signal(&self, signal: Signal) {
        let pid = self.pid().expect("daemon already stopped");
        kill(Pid::from_raw(pid as i32), signal).expect("signal the daemon");
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Wait for the daemon to exit (after `what`, e.g. a signal): asserts it exits within
    /// EXIT_TIMEOUT with status 0 and leaves nothing mounted.
    #[track_caller]
    pub fn assert_clean_exit(&mut self, what: &str) {
        let mut child = self.child.take().expect("daemon already stopped");
        let status = wait_timeout(&mut child, EXIT_TIMEOUT);
        let still_mounted = is_mount_point(&self.mnt);
        if status.is_none() || still_mounted {
            force_unmount(&self.mnt);
        }
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wormfs did not exit within {EXIT_TIMEOUT:?} after {what}\n--- daemon stderr ---\n{}", self.log());
        };
        assert_eq!(
            status.code(),
            Some(0),
            "wormfs should exit 0 after {what}, got {status}\n--- daemon stderr ---\n{}",
            self.log()
        );
        assert!(
            !still_mounted,
            "wormfs exited after {what} but left {} mounted\n--- daemon stderr ---\n{}",
            self.mnt.display(),
            self.log()
        );
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        // Never panic here: this also runs while unwinding from a failed assertion.
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let exited = wait_timeout(&mut child, EXIT_TIMEOUT).is_some();
            if !exited {
                eprintln!("wormfs (pid {}) ignored SIGTERM; forcing cleanup", child.id());
            }
            if is_mount_point(&self.mnt) {
                eprintln!("{} still mounted after the daemon stopped; umount -l", self.mnt.display());
                force_unmount(&self.mnt);
            }
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
        } else if is_mount_point(&self.mnt) {
            force_unmount(&self.mnt);
        }
        // wormfs leaves sealed files immutable (chattr +i): clear that, or the temp dir's
        // removal could not delete them.
        unprotect_tree(&self.data);
        for at in &self.tmpfs {
            let _ = nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Clear the kernel's append-only and immutable flags below `dir`, as root with
/// CAP_LINUX_IMMUTABLE can (and as an attacker with it would before tampering).
pub fn unprotect_tree(dir: &Path) {
    let _ = Command::new("chattr").args(["-R", "-f", "-i", "-a"]).arg(dir).stderr(Stdio::null()).status();
}

/// Clear the flags of one backing file, so a test can tamper with it the way root can.
///
/// close(2) returns before the kernel's RELEASE reaches the daemon, which then sets the file
/// immutable: a flag cleared too early comes back. So clear, let the daemon settle, and clear
/// again until the flags stay off.
#[track_caller]
pub fn unprotect(path: impl AsRef<Path>) {
    let path = path.as_ref();
    for _ in 0..20 {
        let out = run_cmd(Command::new("chattr").args(["-i", "-a"]).arg(path));
        out.assert_success(&format!("chattr -i -a {}", path.display()));
        std::thread::sleep(Duration::from_millis(100));
        let flags = lsattr(path);
        let flags = flags.split_whitespace().next().unwrap_or("");
        if !flags.contains('i') && !flags.contains('a') {
            return;
        }
    }
    panic!("the write-once flags of {} keep coming back", path.display());
}

/// The kernel's flags of a backing file as lsattr shows them (e.g. "----i---------e-------").
#[track_caller]
pub fn lsattr(path: impl AsRef<Path>) -> String {
    let out = run_cmd(Command::new("lsattr").arg("-d").arg(path.as_ref()));
    out.assert_success("lsattr");
    out.stdout.split_whitespace().next().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------------------------
// Small syscall helpers the std library lacks
// ---------------------------------------------------------------------------------------------

fn cpath(path: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn cname(name: &str) -> std::ffi::CString {
    std::ffi::CString::new(name).unwrap()
}

pub fn setxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path), cname(name));
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn removexattr(path: &Path, name: &str) -> io::Result<()> {
    let (p, n) = (cpath(path), cname(name));
    let r = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn getxattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let (p, n) = (cpath(path), cname(name));
    let mut buf = vec![0u8; 4096];
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

pub fn listxattr(path: &Path) -> io::Result<Vec<String>> {
    let p = cpath(path);
    let mut buf = vec![0u8; 4096];
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// Permission bits (including setuid/setgid/sticky) of `path`, without following symlinks.
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

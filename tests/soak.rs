//! Load soak (issue #12): the real rsyslogd writing into a mount at its top rate, plus 8 writer
//! threads appending lines to their own files, for `WORMFS_SOAK_SECS` seconds (default 60; the
//! documented full run is 600), with `wormfs verify` every `max(10, secs / 10)` seconds.
//!
//! rsyslogd runs the example config admins get (scripts/rsyslog-wormfs.conf) behind a private
//! imuxsock socket, as in tests/clients.rs; a Rust thread sends numbered messages into that socket
//! as fast as rsyslog takes them, staying at most [`MAX_AHEAD`] messages ahead of what has reached
//! the mount, so the rate measured is what rsyslog sustains into wormfs, not what its queues
//! absorb. Four writers keep one handle open the whole run (sealed only by the interval sealer);
//! four fsync every 2,000 lines and close and reopen every 10,000.
//!
//! Asserted: no write, fsync or close fails; every verify exits 0 with no findings (and no
//! warning but the unsealed tails of a running daemon); the daemon's RSS stays flat after warm-up
//! (see [`rss_bound`]); the oldest unsealed byte is never older than two seal intervals (the
//! daemon's `wormfs_oldest_unsealed_seconds`, sampled every second); and at the end every message
//! and every line is in the mount exactly once (each writer's in order), all sealed, verify clean
//! before and after the clean unmount.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::IntoRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use common::*;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// The mount's seal interval: the oldest unsealed byte may never be older than twice this.
const SEAL_INTERVAL_SECS: u64 = 5;
const WRITERS: usize = 8;
/// Writers 0..KEEP_OPEN keep one handle the whole run; the others sync and reopen.
const KEEP_OPEN: usize = 4;
const SYNC_EVERY: u64 = 2_000;
const REOPEN_EVERY: u64 = 10_000;
const WRITER_DIR: &str = "writers";
/// How far the sender may run ahead of what has reached the mount.
const MAX_AHEAD: u64 = 20_000;
const TAG: &str = "wormsoak";

/// The RSS bound after warm-up: the last sample may be at most 1.5 times the sample at a quarter
/// of the run, plus 32 MiB. What legitimately grows in the daemon is bounded and small here:
/// RocksDB's memtable (about 1 KiB per record with the tree's hashes, flushed at 64 MiB; this run
/// writes a few records a second, so a few MiB in ten minutes), its block cache (8 MiB by
/// default), and per-file state for the dozen files the run keeps open. A leak per write (tens of
/// thousands a second) or per seal shows up as far more: 100 bytes per write is hundreds of MiB.
/// The slack absorbs allocator arenas settling under other work on this 2-core machine.
fn rss_bound(at_quarter_kib: u64) -> u64 {
    at_quarter_kib * 3 / 2 + 32 * 1024
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The rsyslog message with number `n` (after `TAG: `).
fn message(n: u64) -> String {
    let pad = "the quick brown fox jumps over the lazy dog 0123456789";
    format!("seq={n:09} {}", &pad[..(n % 40) as usize + 10])
}

/// Writer `w`'s line number `n`.
fn writer_line(w: usize, n: u64) -> String {
    format!("writer {w} line {n:09} {}\n", &"abcdefghijklmnopqrstuvwxyz0123456789"[..(n % 30) as usize + 6])
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read the daemon's /proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One metric's value from the daemon's Prometheus text file.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// rsyslogd
// ---------------------------------------------------------------------------------------------

struct Rsyslogd {
    child: KillOnDrop,
    out: PathBuf,
}

impl Rsyslogd {
    #[track_caller]
    fn start(m: &TestMount, socket: &Path) -> Rsyslogd {
        assert!(
            Path::new(RSYSLOGD).is_file(),
            "{RSYSLOGD} is missing: install Debian's `rsyslog` package; this test never skips"
        );
        let dir = m.scratch();
        let work = dir.join("rsyslog-work");
        fs::create_dir(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        fs::write(&conf, rsyslog_test_conf(m, socket, &work)).unwrap();
        run_cmd(Command::new(RSYSLOGD).arg("-N1").arg("-f").arg(&conf)).assert_success("rsyslogd -N1");
        let out_path = dir.join("rsyslogd.out");
        let out = File::create(&out_path).unwrap();
        let child: Child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn rsyslogd");
        let mut r = Rsyslogd { child: KillOnDrop(child), out: out_path };
        assert!(
            wait_until(Duration::from_secs(10), || socket.exists()),
            "rsyslogd did not create its socket: {:?}\n{}",
            r.child.0.try_wait(),
            r.output()
        );
        r
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }

    /// SIGTERM: rsyslogd closes its files (which seals them) and exits 0.
    #[track_caller]
    fn stop(&mut self) {
        kill(Pid::from_raw(self.child.0.id() as i32), Signal::SIGTERM).expect("SIGTERM rsyslogd");
        let status = wait_timeout(&mut self.child.0, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("rsyslogd did not exit after SIGTERM\n{}", self.output()));
        assert!(status.success(), "rsyslogd exited with {status}\n{}", self.output());
    }
}

// ---------------------------------------------------------------------------------------------
// Following rsyslog's files: what has landed, each message counted
// ---------------------------------------------------------------------------------------------

/// Reads rsyslog's files in the data directory as they grow and counts each of our messages.
struct Follower {
    data: PathBuf,
    /// Per file: bytes consumed (up to the last complete line).
    offsets: BTreeMap<PathBuf, u64>,
    counts: Vec<u8>,
    /// Our messages seen (duplicates included), other lines (rsyslogd's own), bad lines.
    ours: u64,
    others: Vec<String>,
    bad: Vec<String>,
}

impl Follower {
    fn new(data: &Path) -> Follower {
        Follower {
            data: data.to_path_buf(),
            offsets: BTreeMap::new(),
            counts: Vec::new(),
            ours: 0,
            others: Vec::new(),
            bad: Vec::new(),
        }
    }

    /// rsyslog's files: HOST/YYYY-MM-DD.log, everything but the writers' directory.
    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.data).unwrap().map(|e| e.unwrap()) {
            if dir.file_name() == WRITER_DIR || !dir.file_type().unwrap().is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap()) {
                out.push(f.path());
            }
        }
        out.sort();
        out
    }

    fn line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let marker = format!(" {TAG}: ");
        let Some(at) = text.find(&marker) else {
            // rsyslogd's own messages (its start and stop, or trouble writing).
            self.others.push(text.into_owned());
            return;
        };
        let msg = &text[at + marker.len()..];
        let n = msg.strip_prefix("seq=").and_then(|r| r.get(..9)).and_then(|d| d.parse::<u64>().ok());
        match n {
            Some(n) if msg == message(n) => {
                let i = n as usize;
                if self.counts.len() <= i {
                    self.counts.resize(i + 1 + (i >> 2), 0);
                }
                self.counts[i] = self.counts[i].saturating_add(1);
                self.ours += 1;
            }
            _ => {
                if self.bad.len() < 10 {
                    self.bad.push(text.into_owned());
                }
            }
        }
    }

    /// Read what the files gained since the last call (complete lines only).
    fn poll(&mut self) {
        for path in self.files() {
            let at = *self.offsets.get(&path).unwrap_or(&0);
            let mut f = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            f.seek(SeekFrom::Start(at)).unwrap();
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).unwrap();
            let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else { continue };
            for line in buf[..last_nl].split(|b| *b == b'\n') {
                self.line(line);
            }
            self.offsets.insert(path, at + last_nl as u64 + 1);
        }
    }

    /// Whether every file was consumed to its end (no partial line left).
    fn at_end(&self) -> Result<(), String> {
        for path in self.files() {
            let len = fs::metadata(&path).unwrap().len();
            let at = self.offsets.get(&path).copied().unwrap_or(0);
            if len != at {
                return Err(format!("{}: {len} bytes, {at} read in whole lines", path.display()));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

/// Raises the stop flags when dropped.
struct StopOnDrop(Vec<Arc<AtomicBool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(|f| f.store(true, SeqCst));
    }
}

struct WriterEnd {
    lines: u64,
    error: Option<String>,
}

fn close_checked(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: fd was just taken from a File, which no longer owns it.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn writer(w: usize, path: PathBuf, stop: Arc<AtomicBool>, lines_total: Arc<AtomicU64>) -> WriterEnd {
    let open = || OpenOptions::new().append(true).create(true).mode(0o644).open(&path);
    let mut n = 0u64;
    let run = |n: &mut u64| -> Result<(), String> {
        let mut f = open().map_err(|e| format!("open: {e}"))?;
        while !stop.load(SeqCst) {
            let line = writer_line(w, *n);
            let wrote = f.write(line.as_bytes()).map_err(|e| format!("write of line {n}: {e}"))?;
            if wrote != line.len() {
                return Err(format!("short write of line {n}: {wrote} of {} bytes", line.len()));
            }
            *n += 1;
            lines_total.fetch_add(1, SeqCst);
            if w >= KEEP_OPEN {
                if *n % SYNC_EVERY == 0 {
                    f.sync_data().map_err(|e| format!("fdatasync after line {n}: {e}"))?;
                }
                if *n % REOPEN_EVERY == 0 {
                    close_checked(f).map_err(|e| format!("close after line {n}: {e}"))?;
                    f = open().map_err(|e| format!("reopen after line {n}: {e}"))?;
                }
            }
        }
        close_checked(f).map_err(|e| format!("close at the end: {e}"))
    };
    let error = run(&mut n).err().map(|e| format!("writer {w} ({}): {e}", path.display()));
    WriterEnd { lines: n, error }
}

/// Stream a writer's file: exactly its lines 0..n, in order.
fn check_writer_file(w: usize, path: &Path, n: u64) -> Result<(), String> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let mut line = String::new();
    for i in 0..n {
        line.clear();
        r.read_line(&mut line).map_err(|e| format!("{}: {e}", path.display()))?;
        if line != writer_line(w, i) {
            return Err(format!("{}: line {i} is {line:?}, expected {:?}", path.display(), writer_line(w, i)));
        }
    }
    line.clear();
    r.read_line(&mut line).unwrap();
    if !line.is_empty() {
        return Err(format!("{}: more than its {n} lines: {line:?}", path.display()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------------

fn verify_cmd(m: &TestMount) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "300", WORMFS, "verify", "--json", "--data"])
        .arg(m.data())
        .arg("--state")
        .arg(m.state())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A verify's result: Ok(summary) when it exits 0, intact, no findings, and warns about nothing
/// but what `allowed` names.
fn judge_verify(out: &std::process::Output, took: Duration, allowed: &[&str]) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value = serde_json::from_str(&stdout).map_err(|e| format!("verify printed no JSON ({e}): {stderr}"))?;
    let findings = json["findings"].as_array().map_or(usize::MAX, Vec::len);
    if out.status.code() != Some(0) || json["verdict"] != "intact" || findings != 0 {
        return Err(format!(
            "verify exit {:?}, verdict {}, findings {}\n{stderr}",
            out.status.code(),
            json["verdict"],
            serde_json::to_string_pretty(&json["findings"]).unwrap()
        ));
    }
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    for w in json["warnings"].as_array().into_iter().flatten() {
        let kind = w["kind"].as_str().unwrap_or("?");
        if !allowed.contains(&kind) {
            return Err(format!("verify warns {w}"));
        }
        *warnings.entry(kind.to_string()).or_default() += 1;
    }
    Ok(format!(
        "{} records, {} files, {:.0} MiB hashed in {:.1} s (done within {:.0} s), warnings {warnings:?}",
        json["records"],
        json["files"],
        json["bytes_hashed"].as_f64().unwrap_or(0.0) / 1048576.0,
        json["seconds"].as_f64().unwrap_or(f64::NAN),
        took.as_secs_f64()
    ))
}

#[test]
fn rsyslogd_and_8_writers_at_full_rate_stay_verified_flat_and_sealed() {
    let secs = env_num("WORMFS_SOAK_SECS", 60);
    let verify_every = Duration::from_secs(secs.div_ceil(10).max(10));
    let run_for = Duration::from_secs(secs);
    let max_lag = 2.0 * SEAL_INTERVAL_SECS as f64;
    eprintln!(
        "soak: {secs} s, verify every {} s, seal interval {SEAL_INTERVAL_SECS} s (lag bound {max_lag} s)",
        verify_every.as_secs()
    );

    let mut m = TestMount::builder().arg("--seal-interval").arg(format!("{SEAL_INTERVAL_SECS}s")).start();
    let pid = m.pid().unwrap();
    let metrics_file = m.state().join("metrics.prom");
    m.mkdir(WRITER_DIR);
    let socket = m.scratch().join("log.sock");
    let mut rsyslogd = Rsyslogd::start(&m, &socket);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let landed = Arc::new(AtomicU64::new(0));
    let follower = Arc::new(Mutex::new(Follower::new(m.data())));

    // The sender: numbered messages into rsyslog's socket, as fast as it takes them.
    let sender: JoinHandle<Result<(), String>> = {
        let (stop, sent, landed, socket) = (stop.clone(), sent.clone(), landed.clone(), socket.clone());
        thread::spawn(move || {
            let sock = UnixDatagram::unbound().map_err(|e| e.to_string())?;
            sock.connect(&socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                if n >= landed.load(SeqCst) + MAX_AHEAD {
                    sleep(Duration::from_millis(2));
                    continue;
                }
                let datagram = format!("<14>{TAG}: {}", message(n));
                sock.send(datagram.as_bytes()).map_err(|e| format!("send message {n}: {e}"))?;
                n += 1;
                sent.store(n, SeqCst);
            }
            Ok(())
        })
    };
    // The follower: counts what has reached the data directory.
    let follow: JoinHandle<()> = {
        let (stop, landed, follower) = (stop.clone(), landed.clone(), follower.clone());
        thread::spawn(move || {
            while !stop.load(SeqCst) {
                let mut f = follower.lock().unwrap();
                f.poll();
                landed.store(f.ours, SeqCst);
                drop(f);
                sleep(Duration::from_millis(100));
            }
        })
    };
    let stop_writers = Arc::new(AtomicBool::new(false));
    // Dropped before the mount (and rsyslogd) if anything below panics: every thread stops, so
    // nothing keeps the mount busy while it is unmounted.
    let _stop_all = StopOnDrop(vec![stop.clone(), stop_writers.clone()]);
    let lines_total = Arc::new(AtomicU64::new(0));
    let writers: Vec<JoinHandle<WriterEnd>> = (0..WRITERS)
        .map(|w| {
            let (path, stop, total) =
                (m.path(format!("{WRITER_DIR}/w{w}.log")), stop_writers.clone(), lines_total.clone());
            thread::spawn(move || writer(w, path, stop, total))
        })
        .collect();

    // Sample the seal lag every second, RSS and verify every interval.
    let started = Instant::now();
    let mut lag_max = (0.0f64, 0u64);
    let mut lag_samples = 0;
    let mut metrics_stale_max = 0.0f64;
    let mut rss: Vec<(u64, u64)> = vec![(0, rss_kib(pid))];
    let mut verifies = Vec::new();
    let mut failures = Vec::new();
    let mut next_verify = started + verify_every;
    let mut verify_run: Option<(std::process::Child, Instant)> = None;
    let (verify_out, verify_err) = (m.scratch().join("verify.json"), m.scratch().join("verify.err"));
    let mut last_report = (Instant::now(), 0u64, 0u64);
    loop {
        let now = Instant::now();
        let t = now.duration_since(started).as_secs();
        if let Ok(text) = fs::read_to_string(&metrics_file) {
            if let Some(lag) = metric(&text, "wormfs_oldest_unsealed_seconds") {
                lag_samples += 1;
                if lag > lag_max.0 {
                    lag_max = (lag, t);
                }
            }
            if let Some(ts) = metric(&text, "wormfs_metrics_timestamp_seconds") {
                let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
                metrics_stale_max = metrics_stale_max.max(wall - ts);
            }
        }
        if let Some((child, _)) = verify_run.as_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                let (_, began) = verify_run.take().unwrap();
                // To files, not pipes: a long report must not block verify while it is polled.
                let out = std::process::Output {
                    status,
                    stdout: fs::read(&verify_out).unwrap_or_default(),
                    stderr: fs::read(&verify_err).unwrap_or_default(),
                };
                match judge_verify(&out, began.elapsed(), &["file.unsealed_tail"]) {
                    Ok(s) => verifies.push(format!("t={}s: {s}", began.duration_since(started).as_secs())),
                    Err(e) => failures.push(format!("verify at t={}s: {e}", began.duration_since(started).as_secs())),
                }
            }
        }
        if now >= next_verify {
            next_verify += verify_every;
            rss.push((t, rss_kib(pid)));
            let (at, s0, l0) = last_report;
            let (s1, l1) = (landed.load(SeqCst), lines_total.load(SeqCst));
            let dt = at.elapsed().as_secs_f64();
            eprintln!(
                "t={t}s: rsyslog {:.0} msg/s ({s1} landed, {} sent), writers {:.0} lines/s, RSS {} MiB, seal lag max \
                 {:.1} s",
                (s1 - s0) as f64 / dt,
                sent.load(SeqCst),
                (l1 - l0) as f64 / dt,
                mib(rss.last().unwrap().1),
                lag_max.0
            );
            last_report = (Instant::now(), s1, l1);
            if verify_run.is_some() {
                failures.push(format!("t={t}s: the previous verify still runs after {verify_every:?}"));
            } else {
                let mut cmd = verify_cmd(&m);
                cmd.stdout(File::create(&verify_out).unwrap()).stderr(File::create(&verify_err).unwrap());
                verify_run = Some((cmd.spawn().expect("spawn wormfs verify"), Instant::now()));
            }
        }
        if !rsyslogd.alive() {
            failures.push(format!("rsyslogd died at t={t}s:\n{}", rsyslogd.output()));
            break;
        }
        if writers.iter().any(|h| h.is_finished()) || sender.is_finished() {
            failures.push(format!("a writer or the sender stopped early at t={t}s"));
            break;
        }
        if now.duration_since(started) >= run_for && verify_run.is_none() {
            break;
        }
        sleep(Duration::from_secs(1));
    }
    let elapsed = started.elapsed();

    // Stop sending and writing; wait for every message to reach the mount.
    stop_writers.store(true, SeqCst);
    let mut writer_lines = Vec::new();
    for (w, h) in writers.into_iter().enumerate() {
        let end = h.join().expect("writer thread panicked");
        if let Some(e) = end.error {
            failures.push(e);
        }
        writer_lines.push((w, end.lines));
    }
    stop.store(true, SeqCst); // the sender and the follower
    if let Err(e) = sender.join().expect("sender panicked") {
        failures.push(format!("sender: {e}"));
    }
    let sent_total = sent.load(SeqCst);
    follow.join().unwrap();
    let drain_started = Instant::now();
    let drained = wait_until(Duration::from_secs(120), || {
        let mut f = follower.lock().unwrap();
        f.poll();
        f.ours >= sent_total
    });
    let drain = drain_started.elapsed();
    assert!(
        drained,
        "only {} of {sent_total} messages reached the mount 120 s after the senders stopped\n{}",
        follower.lock().unwrap().ours,
        rsyslogd.output()
    );
    rsyslogd.stop();

    // rsyslogd and the writers closed their files: all sealed; verify clean, mounted and after a
    // clean unmount.
    let live = Instant::now();
    let out = verify_cmd(&m).output().unwrap();
    match judge_verify(&out, live.elapsed(), &[]) {
        Ok(s) => verifies.push(format!("after the run, mounted: {s}")),
        Err(e) => failures.push(format!("verify after the run: {e}")),
    }
    let rss_end = rss_kib(pid);
    m.stop();
    let unmounted = Instant::now();
    let out = verify_cmd(&m).output().unwrap();
    match judge_verify(&out, unmounted.elapsed(), &[]) {
        Ok(s) => verifies.push(format!("after the clean unmount: {s}")),
        Err(e) => failures.push(format!("verify after the unmount: {e}")),
    }

    // Every message exactly once; every writer's lines exactly once, in order.
    let mut f = follower.lock().unwrap();
    f.poll();
    if let Err(e) = f.at_end() {
        failures.push(format!("rsyslog's files end in a partial line: {e}"));
    }
    let counts = &f.counts;
    let missing: Vec<u64> = (0..sent_total).filter(|&i| counts.get(i as usize).copied().unwrap_or(0) == 0).collect();
    let doubled: Vec<u64> = (0..counts.len() as u64).filter(|&i| counts[i as usize] > 1).collect();
    let unsent = counts.iter().enumerate().skip(sent_total as usize).filter(|(_, c)| **c > 0).count();
    if !missing.is_empty() || !doubled.is_empty() || unsent > 0 || f.ours != sent_total || !f.bad.is_empty() {
        failures.push(format!(
            "rsyslog messages: {sent_total} sent, {} found; missing {} (first {:?}), duplicated {} (first {:?}), \
             {unsent} never sent, mangled lines {:?}",
            f.ours,
            missing.len(),
            &missing[..missing.len().min(10)],
            doubled.len(),
            &doubled[..doubled.len().min(10)],
            f.bad
        ));
    }
    let trouble: Vec<_> = f
        .others
        .iter()
        .filter(|l| ["error", "suspend", "fail", "discard"].iter().any(|w| l.to_lowercase().contains(w)))
        .collect();
    if !trouble.is_empty() {
        failures.push(format!("rsyslogd reported trouble: {trouble:#?}"));
    }
    let rsyslog_bytes: u64 = f.files().iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let mut writer_bytes = 0;
    for &(w, n) in &writer_lines {
        let path = m.backing(format!("{WRITER_DIR}/w{w}.log"));
        writer_bytes += fs::metadata(&path).map(|md| md.len()).unwrap_or(0);
        if let Err(e) = check_writer_file(w, &path, n) {
            failures.push(e);
        }
    }

    // RSS after warm-up: flat.
    let quarter = rss.iter().find(|(t, _)| *t >= secs / 4).map_or(rss[0].1, |s| s.1);
    let last = rss.last().unwrap().1.max(rss_end);
    if last > rss_bound(quarter) {
        failures.push(format!(
            "the daemon's RSS grew: {} MiB at the end, {} MiB at a quarter of the run (bound {} MiB): {rss:?}",
            mib(last),
            mib(quarter),
            mib(rss_bound(quarter))
        ));
    }
    if lag_max.0 > max_lag {
        failures.push(format!(
            "the oldest unsealed byte was {:.1} s old at t={}s (bound: two seal intervals, {max_lag} s)",
            lag_max.0, lag_max.1
        ));
    }
    if lag_samples == 0 {
        failures.push(format!("no wormfs_oldest_unsealed_seconds in {}", metrics_file.display()));
    }
    if metrics_stale_max > 15.0 {
        failures.push(format!("the metrics file was {metrics_stale_max:.1} s old at one sample (written every 5 s)"));
    }

    let secs_f = elapsed.as_secs_f64();
    let lines: u64 = writer_lines.iter().map(|(_, n)| n).sum();
    eprintln!(
        "soak summary: {:.0} s; rsyslog {sent_total} messages, {:.0} msg/s ({:.1} MB/s; drained {:.1} s after the \
         stop); writers {lines} lines, {:.0} lines/s ({:.1} MB/s; per writer {:?}); RSS MiB {}, at the end {}; \
         max seal lag {:.1} s at t={}s ({lag_samples} samples, bound {max_lag} s); metrics file at most {:.1} s \
         old\n  rsyslogd's own lines: {:?}\n  verifies:\n    {}",
        secs_f,
        sent_total as f64 / secs_f,
        rsyslog_bytes as f64 / secs_f / 1e6,
        drain.as_secs_f64(),
        lines as f64 / secs_f,
        writer_bytes as f64 / secs_f / 1e6,
        writer_lines.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        rss.iter().map(|(t, k)| format!("t={t}s:{}", mib(*k))).collect::<Vec<_>>().join(" "),
        mib(rss_end),
        lag_max.0,
        lag_max.1,
        metrics_stale_max,
        f.others,
        verifies.join("\n    ")
    );
    assert!(failures.is_empty(), "soak failed:\n- {}\n--- daemon log (tail) ---\n{}", failures.join("\n- "), {
        let log = m.log();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    });
}

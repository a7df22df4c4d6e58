//! Crash cycles (issue #12): a real mount under load is killed with SIGKILL at a random moment,
//! mounted again and checked, over and over on the same store (a new store every
//! [`CYCLES_PER_STORE`] cycles, so a long run's remounts and verifies do not grow without end).
//!
//! Each cycle runs, through the mount and with real system calls:
//! - two segment writers: open(O_APPEND|O_CREAT) one of their files, a few writes (some followed
//!   by fsync or fdatasync), close; each file gets several open/append/close segments;
//! - a long writer: one handle kept open, small writes, an fsync every few dozen (its files are
//!   under a 1h retention rule in the mount's config file, so deleting them is always refused);
//! - a burst writer: creates 20-50 small files, writes each, then closes them all at once;
//! - two retention threads: unlink the files the writers are done with once their retention (2s,
//!   the config file's default) has expired, and now and then one that has not (EPERM, expected,
//!   changes nothing).
//!
//! Every thread keeps a ledger of what each call returned. After the kill and the remount:
//! - every byte acknowledged by a successful close(2), fsync(2) or fdatasync(2) is in its file
//!   (counted as "lost" otherwise: must be 0), and a file holds nothing but what was written to it
//!   (bytes written after the last acknowledgement may be there or not, and are counted; a write
//!   that failed at the kill may have landed);
//! - every byte on disk is sealed: the file's Seal/Recovered ranges run from 0 to its size, and the
//!   ranges added at the remount are Recovered records (the unsealed tails of the crash);
//! - a file whose unlink returned success is gone with a Delete in the chain; an unlink in flight
//!   at the kill may have gone either way, but a Delete in the chain whose file is still there must
//!   be followed by the remount's Aborted record (the file keeps its history and seals);
//! - `wormfs verify` exits 0 with no findings and no warnings a crash does not explain;
//! - every thread running at the kill saw it as an error (ENOTCONN / ECONNABORTED / EIO), never a
//!   silent success, and no call failed before the kill (but the expected EPERM).
//!
//! `WORMFS_CRASH_CYCLES` (default 10; the full run is 100) sets the number of cycles and
//! `WORMFS_CRASH_SEED` replays a run's choices (the seed is printed first; timing still varies).
//!
//! A second test makes the kill between a Delete/Rename/Truncate record and the change itself
//! certain (strace holds the daemon's syscall), which random kills hit only rarely.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::IntoRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use common::*;

/// Default retention (config file), and the rule for the long writer's directory.
const RETENTION: &str = "2s";
const RETENTION_MS: u64 = 2000;
const LONG_DIR: &str = "long";
/// An empty directory the retention threads list while they have nothing to delete.
const PROBE_DIR: &str = "probe";
const CONFIG: &str = "retention = \"2s\"\n\n[[rule]]\npath = \"/long\"\nretention = \"1h\"\n";

/// How long a thread may take to notice the daemon died before the test calls it hung.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Successful calls a thread may still see after the kill flag is raised (calls answered just
/// before the daemon died); more means calls succeed on a dead mount.
const OPS_AFTER_KILL: u64 = 200;

/// The errors a call on a mount whose daemon was killed may return: ENOTCONN once the connection
/// is gone, ECONNABORTED for a request in flight when it went, EIO.
const KILL_ERRNOS: [i32; 3] = [libc::ENOTCONN, libc::ECONNABORTED, libc::EIO];

/// Warnings a crash explains (see README, "Warnings are not findings").
const CRASH_WARNINGS: [&str; 2] = ["file.recovered_unproven", "file.adopted"];

// ---------------------------------------------------------------------------------------------
// A small deterministic generator (no extra crates)
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }

    /// A text line naming the file and offset it is written at, `len` bytes long with its newline.
    fn line(&mut self, rel: &str, at: usize, len: usize) -> Vec<u8> {
        let mut out = format!("{rel}@{at} ").into_bytes();
        while out.len() + 1 < len {
            out.push(b'a' + (self.next() % 26) as u8);
        }
        out.truncate(len.max(1) - 1);
        out.push(b'\n');
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger: what each call returned
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    /// unlink returned success.
    Deleted,
    /// unlink failed because the daemon died: it may have happened or not.
    DeleteInFlight,
}

#[derive(Debug)]
struct Entry {
    /// Every byte a successful write(2) returned, in order.
    written: Vec<u8>,
    /// The bytes of a write that failed at the kill: some prefix of them may have landed.
    in_flight: Vec<u8>,
    /// written[..acked] was acknowledged by a successful close(2), fsync(2) or fdatasync(2) (or
    /// found sealed after an earlier crash).
    acked: usize,
    /// An open(O_CREAT) of it succeeded (else it may or may not exist).
    created: bool,
    state: State,
    /// When the writer was done with it (its last seal): from then on the retention threads may
    /// unlink it, which works once its retention is over.
    retired: Option<Instant>,
    /// A retention thread is unlinking it.
    deleting: bool,
    next_try: Instant,
    /// Under the 1h rule: every unlink is refused.
    long: bool,
    cycle: usize,
}

impl Entry {
    fn new(cycle: usize, long: bool) -> Entry {
        Entry {
            written: Vec::new(),
            in_flight: Vec::new(),
            acked: 0,
            created: false,
            state: State::Live,
            retired: None,
            deleting: false,
            next_try: Instant::now(),
            long,
            cycle,
        }
    }
}

#[derive(Default)]
struct Counters {
    deletes_ok: AtomicU64,
    deletes_refused: AtomicU64,
    deletes_in_flight: AtomicU64,
    writes: AtomicU64,
    closes: AtomicU64,
    fsyncs: AtomicU64,
}

/// Bytes acknowledged by a close or sync over the whole run.
static ACKED: AtomicU64 = AtomicU64::new(0);

struct Shared {
    mnt: PathBuf,
    ledger: Mutex<BTreeMap<String, Entry>>,
    killed: AtomicBool,
    counters: Counters,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, rel: &str, f: impl FnOnce(&mut Entry)) {
        let mut ledger = self.ledger();
        f(ledger.get_mut(rel).unwrap_or_else(|| panic!("{rel} not in the ledger")));
    }
}

// ---------------------------------------------------------------------------------------------
// The threads
// ---------------------------------------------------------------------------------------------

/// How a thread ended.
#[derive(Debug)]
enum End {
    /// A call failed after the kill: the way every thread must end.
    Killed { op: String, errno: Option<i32> },
    /// Something that must not happen (a call failed before the kill, a call succeeded long
    /// after it, a file vanished).
    Bug(String),
}

struct Ctx {
    sh: Arc<Shared>,
    name: String,
    rng: Rng,
    ops_after_kill: u64,
}

impl Ctx {
    fn killed(&self) -> bool {
        self.sh.killed.load(SeqCst)
    }

    /// Judge a call's result: an error ends the thread (as `Killed` once the kill flag is up).
    fn check<T>(&mut self, op: &str, rel: &str, r: io::Result<T>) -> Result<T, End> {
        match r {
            Ok(v) => {
                if self.killed() {
                    self.ops_after_kill += 1;
                    if self.ops_after_kill > OPS_AFTER_KILL {
                        return Err(End::Bug(format!(
                            "{}: {} calls succeeded after the daemon was killed (last: {op} {rel})",
                            self.name, self.ops_after_kill
                        )));
                    }
                }
                Ok(v)
            }
            Err(e) if self.killed() => Err(End::Killed { op: format!("{op} {rel}"), errno: e.raw_os_error() }),
            Err(e) => Err(End::Bug(format!("{}: {op} {rel} failed before the kill: {e}", self.name))),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.sh.mnt.join(rel)
    }

    /// open(O_WRONLY|O_APPEND|O_CREAT), recording the file in the ledger first if it is new.
    fn open(&mut self, rel: &str, cycle: usize, long: bool) -> Result<File, End> {
        self.sh.ledger().entry(rel.to_string()).or_insert_with(|| Entry::new(cycle, long));
        let r = OpenOptions::new().append(true).create(true).mode(0o644).open(self.path(rel));
        let f = self.check("open", rel, r)?;
        self.sh.update(rel, |e| e.created = true);
        Ok(f)
    }

    /// write(2) all of `buf` (more than one call if the kernel returns short).
    fn write(&mut self, f: &mut File, rel: &str, buf: &[u8]) -> Result<(), End> {
        let mut at = 0;
        while at < buf.len() {
            let r = f.write(&buf[at..]);
            if r.is_err() {
                let rest = buf[at..].to_vec();
                self.sh.update(rel, |e| e.in_flight = rest);
            }
            let n = self.check("write", rel, r)?;
            if n == 0 {
                return Err(End::Bug(format!("{}: write to {rel} returned 0", self.name)));
            }
            self.sh.update(rel, |e| e.written.extend_from_slice(&buf[at..at + n]));
            self.sh.counters.writes.fetch_add(1, SeqCst);
            at += n;
        }
        Ok(())
    }

    fn ack(&self, rel: &str) {
        let mut newly = 0;
        self.sh.update(rel, |e| {
            newly = e.written.len() - e.acked;
            e.acked = e.written.len();
        });
        ACKED.fetch_add(newly as u64, SeqCst);
    }

    /// fsync(2) or fdatasync(2); success acknowledges everything written so far.
    fn sync(&mut self, f: &File, rel: &str) -> Result<(), End> {
        let (op, r) = if self.rng.chance(50) { ("fsync", f.sync_all()) } else { ("fdatasync", f.sync_data()) };
        self.check(op, rel, r)?;
        self.sh.counters.fsyncs.fetch_add(1, SeqCst);
        self.ack(rel);
        Ok(())
    }

    /// close(2), with its result (std's drop ignores it); success acknowledges every write.
    fn close(&mut self, f: File, rel: &str) -> Result<(), End> {
        let fd = f.into_raw_fd();
        // SAFETY: fd was just taken from a File, which no longer owns it.
        let r = if unsafe { libc::close(fd) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
        self.check("close", rel, r)?;
        self.sh.counters.closes.fetch_add(1, SeqCst);
        self.ack(rel);
        Ok(())
    }

    fn retire(&self, rel: &str) {
        self.sh.update(rel, |e| e.retired = Some(Instant::now()));
    }
}

/// Files opened, appended to a few times (some writes followed by a sync) and closed, again and
/// again: each file gets several segments, then is handed to the retention thread.
fn segment_writer(mut cx: Ctx, dir: String, cycle: usize) -> End {
    let mut files: Vec<(String, u64)> = Vec::new();
    let mut made = 0;
    let mut run = || -> Result<(), End> {
        loop {
            if files.len() < 3 || cx.rng.chance(15) {
                files.push((format!("{dir}/{}-{made}.log", cx.name), cx.rng.range(1, 5)));
                made += 1;
            }
            let k = (cx.rng.next() % files.len() as u64) as usize;
            let rel = files[k].0.clone();
            let mut f = cx.open(&rel, cycle, false)?;
            for _ in 0..cx.rng.range(1, 6) {
                let at = cx.sh.ledger()[&rel].written.len();
                let len = cx.rng.range(1, 3000) as usize;
                let buf = cx.rng.line(&rel, at, len);
                cx.write(&mut f, &rel, &buf)?;
                if cx.rng.chance(25) {
                    cx.sync(&f, &rel)?;
                }
            }
            cx.close(f, &rel)?;
            files[k].1 -= 1;
            if files[k].1 == 0 {
                cx.retire(&rel);
                files.swap_remove(k);
            }
        }
    };
    match run() {
        Ok(()) => unreachable!(),
        Err(end) => end,
    }
}

/// One handle kept open for hundreds of small writes with an fsync every few dozen, as a logger
/// does; files under the 1h rule.
fn long_writer(mut cx: Ctx, cycle: usize) -> End {
    let mut run = || -> Result<(), End> {
        for k in 0.. {
            let rel = format!("{LONG_DIR}/c{cycle:03}-{k}.log");
            let mut f = cx.open(&rel, cycle, true)?;
            let mut until_sync = cx.rng.range(10, 80);
            for _ in 0..cx.rng.range(200, 2000) {
                let at = cx.sh.ledger()[&rel].written.len();
                let len = cx.rng.range(30, 160) as usize;
                let buf = cx.rng.line(&rel, at, len);
                cx.write(&mut f, &rel, &buf)?;
                until_sync -= 1;
                if until_sync == 0 {
                    cx.sync(&f, &rel)?;
                    until_sync = cx.rng.range(10, 80);
                }
            }
            cx.close(f, &rel)?;
            cx.retire(&rel);
        }
        Ok(())
    };
    match run() {
        Ok(()) => unreachable!(),
        Err(end) => end,
    }
}

/// Bursts of 20-50 new small files, all written, then all closed one after the other.
fn burst_writer(mut cx: Ctx, dir: String, cycle: usize) -> End {
    let mut run = || -> Result<(), End> {
        for burst in 0.. {
            let n = cx.rng.range(20, 50);
            let mut open = Vec::new();
            for j in 0..n {
                let rel = format!("{dir}/burst{burst}-{j}.log");
                let mut f = cx.open(&rel, cycle, false)?;
                let mut at = 0;
                for _ in 0..cx.rng.range(1, 3) {
                    let len = cx.rng.range(20, 200) as usize;
                    let buf = cx.rng.line(&rel, at, len);
                    cx.write(&mut f, &rel, &buf)?;
                    at += len;
                }
                open.push((rel, f));
            }
            for (rel, f) in open.drain(..) {
                cx.close(f, &rel)?;
                cx.retire(&rel);
            }
            sleep(Duration::from_millis(cx.rng.range(20, 300)));
        }
        Ok(())
    };
    match run() {
        Ok(()) => unreachable!(),
        Err(end) => end,
    }
}

/// Unlinks retired files as their retention expires, oldest first, as a cleanup job would, and
/// now and then one that has not expired yet: EPERM then (retention not over, or the kernel's
/// release of the last handle not arrived yet) is expected and changes nothing.
fn retention_deleter(mut cx: Ctx) -> End {
    let expired_after = Duration::from_millis(RETENTION_MS + 200);
    loop {
        let now = Instant::now();
        let early = cx.rng.chance(10);
        let pick = {
            let mut ledger = cx.sh.ledger();
            let ready = ledger.iter_mut().filter(|(_, e)| e.state == State::Live && !e.deleting && e.next_try <= now);
            let ready = ready.filter_map(|(rel, e)| e.retired.map(|at| (at, rel, e)));
            let pick = if early {
                ready
                    .filter(|(at, _, e)| e.long || now.duration_since(*at) < expired_after)
                    .min_by_key(|(at, _, _)| *at)
            } else {
                ready
                    .filter(|(at, _, e)| !e.long && now.duration_since(*at) >= expired_after)
                    .min_by_key(|(at, _, _)| *at)
            };
            pick.map(|(_, rel, e)| {
                e.deleting = true;
                e.next_try = now + if e.long { Duration::from_secs(5) } else { Duration::from_millis(100) };
                rel.clone()
            })
        };
        let Some(rel) = pick else {
            // Nothing to delete now: still call the daemon (opendir always reaches it; a stat
            // could be answered from the kernel's cache), so the kill is noticed.
            let r = fs::read_dir(cx.path(PROBE_DIR)).map(|d| d.count());
            if let Err(end) = cx.check("readdir", PROBE_DIR, r) {
                return end;
            }
            sleep(Duration::from_millis(10));
            continue;
        };
        let r = fs::remove_file(cx.path(&rel));
        cx.sh.update(&rel, |e| e.deleting = false);
        match r {
            Ok(()) => {
                cx.sh.update(&rel, |e| e.state = State::Deleted);
                cx.sh.counters.deletes_ok.fetch_add(1, SeqCst);
                if let Err(end) = cx.check("unlink", &rel, Ok(())) {
                    return end;
                }
            }
            // The daemon's answer, also when it comes just before the kill.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                cx.sh.counters.deletes_refused.fetch_add(1, SeqCst);
            }
            Err(e) => {
                if cx.killed() {
                    cx.sh.update(&rel, |e| e.state = State::DeleteInFlight);
                    cx.sh.counters.deletes_in_flight.fetch_add(1, SeqCst);
                }
                return cx.check::<()>("unlink", &rel, Err(e)).unwrap_err();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks after the remount
// ---------------------------------------------------------------------------------------------

/// One Seal or Recovered record: [start, end), its seq, and for a Recovered whether it adopted.
#[derive(Debug, Clone)]
struct Range {
    start: u64,
    end: u64,
    seq: u64,
    recovered: bool,
    adopted: bool,
}

struct ChainView {
    /// Each file's ranges in its current history (since its last Delete), oldest first.
    ranges: BTreeMap<String, Vec<Range>>,
    /// Each deleted path's newest Delete record.
    deleted: BTreeMap<String, u64>,
    /// Deletes that an Aborted record undid (a mount found them not done): path, Delete seq.
    aborted: Vec<(String, u64)>,
    /// Seq of the newest Mount record, and of the one before it.
    mount_seq: u64,
    prev_mount_seq: u64,
    records: usize,
    /// Records the crash test never causes (Damaged, Rename, Truncate).
    odd: Vec<String>,
}

fn chain_view(records: &[Value]) -> ChainView {
    let mut view = ChainView {
        ranges: BTreeMap::new(),
        deleted: BTreeMap::new(),
        aborted: Vec::new(),
        mount_seq: 0,
        prev_mount_seq: 0,
        records: records.len(),
        odd: Vec::new(),
    };
    // A Delete's ranges, kept in case an Aborted record undoes it.
    let mut undone: BTreeMap<u64, (String, Vec<Range>)> = BTreeMap::new();
    for r in records {
        let kind = r["kind"].as_str().unwrap_or_default();
        let seq = r["seq"].as_u64().unwrap();
        let path = r["path"].as_str().map(|p| p.trim_start_matches('/').to_string());
        match (kind, path) {
            ("Mount", _) => (view.prev_mount_seq, view.mount_seq) = (view.mount_seq, seq),
            ("Seal" | "Recovered", Some(p)) => view.ranges.entry(p).or_default().push(Range {
                start: r["start"].as_u64().unwrap(),
                end: r["end"].as_u64().unwrap(),
                seq,
                recovered: kind == "Recovered",
                adopted: r["adopted"] == true,
            }),
            ("Delete", Some(p)) => {
                let ranges = view.ranges.remove(&p).unwrap_or_default();
                undone.insert(seq, (p.clone(), ranges));
                view.deleted.insert(p, seq);
            }
            ("Aborted", _) => {
                let change = r["change"].as_u64().unwrap();
                match undone.remove(&change) {
                    Some((p, ranges)) => {
                        view.ranges.insert(p.clone(), ranges);
                        view.deleted.remove(&p);
                        view.aborted.push((p, change));
                    }
                    None => view.odd.push(format!("an Aborted record of no Delete: {r}")),
                }
            }
            ("Rename" | "Truncate" | "Damaged", _) => view.odd.push(format!("a {kind} record in the chain: {r}")),
            _ => {}
        }
    }
    view
}

#[derive(Default, Debug)]
struct Figures {
    /// Files of this cycle (created, whether deleted since or not).
    files_new: usize,
    /// Files in the data directory that the ledger knows.
    files_held: usize,
    /// Acknowledged bytes those files hold.
    bytes_held: u64,
    lost: u64,
    unacked_present: u64,
    unacked_absent: u64,
    failed_write_landed: u64,
    recovered: usize,
    adopted: usize,
    deleted_ok: usize,
    in_flight_deletes_done: usize,
    in_flight_deletes_kept: usize,
    /// Unlinks in flight at the kill whose Delete record is in the chain but the file is not gone.
    delete_recorded_not_done: Vec<String>,
}

/// Check the store against the ledger after a remount (or the final clean stop): returns the
/// figures and the failures. Settles the ledger: what is on disk (and sealed) now is what later
/// cycles must find.
fn check_store(
    m: &TestMount,
    sh: &Shared,
    view: &ChainView,
    gone: &mut BTreeSet<String>,
    cycle: usize,
) -> (Figures, Vec<String>) {
    let mut fig = Figures::default();
    let mut fails = view.odd.clone();
    let mut ledger = sh.ledger();
    let mut settled_gone = Vec::new();
    for (rel, e) in ledger.iter_mut() {
        let backing = m.backing(rel);
        let present = match fs::symlink_metadata(&backing) {
            Ok(meta) if meta.is_file() => true,
            Ok(meta) => {
                fails.push(format!("{rel}: not a regular file: {:?}", meta.file_type()));
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => {
                fails.push(format!("{rel}: lstat: {err}"));
                continue;
            }
        };
        if e.cycle == cycle && (e.created || present) {
            fig.files_new += 1;
        }
        match (e.state, present) {
            (State::Deleted, true) => {
                fails.push(format!("{rel}: unlink returned success but the file is still there"));
                continue;
            }
            (State::Deleted | State::DeleteInFlight, false) => {
                if !view.deleted.contains_key(rel) {
                    fails.push(format!("{rel}: deleted ({:?}) but the chain has no Delete record for it", e.state));
                }
                if e.state == State::DeleteInFlight {
                    fig.in_flight_deletes_done += 1;
                } else {
                    fig.deleted_ok += 1;
                }
                settled_gone.push(rel.clone());
                continue;
            }
            (State::Live, false) if !e.created => {
                // open(O_CREAT) was in flight at the kill and did not happen.
                settled_gone.push(rel.clone());
                continue;
            }
            (State::Live, false) => {
                fails.push(format!("{rel}: created (and {} bytes acknowledged) but missing", e.acked));
                fig.lost += e.acked as u64;
                continue;
            }
            (State::Live | State::DeleteInFlight, true) => {}
        }
        if e.state == State::DeleteInFlight {
            fig.in_flight_deletes_kept += 1;
            if view.deleted.get(rel).is_some_and(|seq| *seq > view.prev_mount_seq) {
                fails.push(format!(
                    "{rel}: the chain says deleted, the file is still there, and no Aborted record took the Delete back"
                ));
            }
            if view.aborted.iter().any(|(p, seq)| p == rel && *seq > view.prev_mount_seq) {
                // Killed between the Delete record and the unlink: the file is still there, and
                // the remount recorded the Delete as aborted, so its history and seals go on.
                fig.delete_recorded_not_done.push(rel.clone());
            }
            e.state = State::Live;
        }

        // Content: a prefix of what was written (and of the failed write after it), holding at
        // least what was acknowledged.
        let disk = fs::read(&backing).unwrap_or_else(|err| panic!("read {}: {err}", backing.display()));
        let mut expected = e.written.clone();
        expected.extend_from_slice(&e.in_flight);
        let common = disk.iter().zip(&expected).take_while(|(a, b)| a == b).count();
        if common < disk.len() {
            fails.push(format!(
                "{rel}: {} bytes on disk, but byte {common} is not what was written there ({} bytes written, \
                 {} acknowledged, {} in the failed write)",
                disk.len(),
                e.written.len(),
                e.acked,
                e.in_flight.len()
            ));
        }
        if common < e.acked {
            fails.push(format!(
                "{rel}: LOST {} acknowledged bytes: only {common} of {} acknowledged bytes are there",
                e.acked - common,
                e.acked
            ));
            fig.lost += (e.acked - common) as u64;
        }
        let unacked = e.written.len().saturating_sub(e.acked);
        let present_unacked = common.min(e.written.len()).saturating_sub(e.acked);
        fig.unacked_present += present_unacked as u64;
        fig.unacked_absent += (unacked - present_unacked) as u64;
        fig.failed_write_landed += common.saturating_sub(e.written.len()) as u64;

        // Seals: from 0 to the size, contiguous; what the remount added is Recovered.
        let size = disk.len() as u64;
        let ranges = view.ranges.get(rel).map(Vec::as_slice).unwrap_or_default();
        let mut at = 0;
        for r in ranges {
            if r.start == 0 && r.end == 0 && r.adopted {
                continue; // an empty file adopted
            }
            if r.start != at || r.end <= r.start {
                fails.push(format!("{rel}: seals do not follow each other: {ranges:?}"));
                break;
            }
            at = r.end;
            if r.seq > view.mount_seq && !r.recovered {
                fails.push(format!("{rel}: a Seal (record {}) right after the remount, before any write", r.seq));
            }
        }
        if at != size {
            fails.push(format!("{rel}: {size} bytes on disk but sealed to {at}: {ranges:?}"));
        }
        fig.files_held += 1;
        fig.bytes_held += size;
        // The bytes are sealed now: later cycles must find exactly them.
        e.written = disk;
        e.in_flight.clear();
        e.acked = e.written.len();
        e.created = true;
        // Sealed again (Recovered) or not: its retention runs from about now.
        e.retired = Some(Instant::now());
    }
    for rel in settled_gone {
        ledger.remove(&rel);
        gone.insert(rel);
    }
    // Recovered records of this remount: only for files the writers made.
    for (rel, ranges) in &view.ranges {
        for r in ranges.iter().filter(|r| r.recovered && r.seq > view.mount_seq) {
            fig.recovered += 1;
            fig.adopted += usize::from(r.adopted);
            if !ledger.contains_key(rel) {
                fails.push(format!("{rel}: Recovered {r:?}, but no writer made that file"));
            }
        }
    }
    drop(ledger);
    // Deleted files stay deleted.
    for rel in gone.iter() {
        if fs::symlink_metadata(m.backing(rel)).is_ok() {
            fails.push(format!("{rel}: deleted (or never created) earlier, but it is in the data directory"));
        }
    }
    (fig, fails)
}

/// Verify must exit 0, say intact, find nothing, and warn only about what a crash explains.
fn check_verify(m: &TestMount, fails: &mut Vec<String>) -> (Duration, BTreeMap<String, usize>) {
    let t = Instant::now();
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--json", "--data"]).arg(m.data()).arg("--state").arg(m.state()).env_remove("RUST_LOG");
    let out = run_cmd(&mut cmd);
    let took = t.elapsed();
    let json: Value = match serde_json::from_str(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            fails.push(format!("wormfs verify --json printed no JSON ({e}): {out:#?}"));
            return (took, BTreeMap::new());
        }
    };
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    for w in json["warnings"].as_array().into_iter().flatten() {
        *warnings.entry(w["kind"].as_str().unwrap_or("?").to_string()).or_default() += 1;
    }
    let findings = json["findings"].as_array().map_or(usize::MAX, Vec::len);
    if out.status.code() != Some(0) || json["verdict"] != "intact" || findings > 0 {
        fails.push(format!(
            "wormfs verify: exit {:?}, verdict {}, findings:\n{}\n{}",
            out.status.code(),
            json["verdict"],
            serde_json::to_string_pretty(&json["findings"]).unwrap(),
            out.stderr
        ));
    }
    let odd: Vec<_> = json["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| !CRASH_WARNINGS.contains(&w["kind"].as_str().unwrap_or("?")))
        .collect();
    if !odd.is_empty() {
        fails.push(format!("wormfs verify warns about more than a crash explains: {odd:#?}"));
    }
    (took, warnings)
}

fn join_all(handles: Vec<(String, JoinHandle<End>)>) -> Vec<(String, End)> {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    while handles.iter().any(|(_, h)| !h.is_finished()) {
        let stuck: Vec<_> = handles.iter().filter(|(_, h)| !h.is_finished()).map(|(n, _)| n.clone()).collect();
        assert!(Instant::now() < deadline, "threads {stuck:?} still running {JOIN_TIMEOUT:?} after the kill");
        sleep(Duration::from_millis(10));
    }
    handles.into_iter().map(|(n, h)| (n, h.join().expect("a test thread panicked"))).collect()
}

fn errno_name(e: Option<i32>) -> String {
    match e {
        Some(libc::ENOTCONN) => "ENOTCONN".into(),
        Some(libc::ECONNABORTED) => "ECONNABORTED".into(),
        Some(libc::EIO) => "EIO".into(),
        Some(n) => format!("errno {n}"),
        None => "no errno".into(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn log_tail(m: &TestMount, lines: usize) -> String {
    let log = m.log();
    let all: Vec<_> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Totals over the whole run.
#[derive(Default)]
struct Totals {
    cycles: usize,
    files: usize,
    deleted: usize,
    recovered: usize,
    adopted: usize,
    lost: u64,
    unacked_absent: u64,
    flight_done: usize,
    flight_kept: usize,
    delete_gap: Vec<String>,
    held_files: usize,
    held_bytes: u64,
    records: usize,
    stores: usize,
}

/// One store (data, state, mount) through `cycles` crash cycles, then a clean stop and a last
/// check. Panics on the first cycle that fails.
fn run_store(first_cycle: usize, cycles: usize, all: usize, seed: u64, rng: &mut Rng, totals: &mut Totals) {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("wormfs.toml");
    fs::write(&config, CONFIG).unwrap();
    let mut m = TestMount::builder().arg("--config").arg(&config).start();
    m.mkdir(LONG_DIR);
    m.mkdir(PROBE_DIR);
    let sh = Arc::new(Shared {
        mnt: m.mnt().to_path_buf(),
        ledger: Mutex::new(BTreeMap::new()),
        killed: AtomicBool::new(false),
        counters: Counters::default(),
    });
    let mut gone = BTreeSet::new();
    totals.stores += 1;

    for cycle in first_cycle..first_cycle + cycles {
        let dir = format!("c{cycle:03}");
        m.mkdir(&dir);
        sh.killed.store(false, SeqCst);
        let c = &sh.counters;
        for a in [&c.deletes_ok, &c.deletes_refused, &c.deletes_in_flight, &c.writes, &c.closes, &c.fsyncs] {
            a.store(0, SeqCst);
        }
        let acked_before = ACKED.load(SeqCst);
        let ctx =
            |name: &str, rng: &mut Rng| Ctx { sh: sh.clone(), name: name.into(), rng: rng.fork(), ops_after_kill: 0 };
        let mut handles: Vec<(String, JoinHandle<End>)> = Vec::new();
        for name in ["seg0", "seg1"] {
            let (cx, d) = (ctx(name, rng), dir.clone());
            handles.push((name.into(), thread::spawn(move || segment_writer(cx, d, cycle))));
        }
        let cx = ctx("long", rng);
        handles.push(("long".into(), thread::spawn(move || long_writer(cx, cycle))));
        let (cx, d) = (ctx("burst", rng), dir.clone());
        handles.push(("burst".into(), thread::spawn(move || burst_writer(cx, d, cycle))));
        for name in ["retention0", "retention1"] {
            let cx = ctx(name, rng);
            handles.push((name.into(), thread::spawn(move || retention_deleter(cx))));
        }

        // Mostly 0.3-3 s of load; one cycle in four dies young (while the threads start up).
        let delay = if rng.chance(25) { rng.range(10, 300) } else { rng.range(300, 3000) };
        sleep(Duration::from_millis(delay));
        sh.killed.store(true, SeqCst);
        let pid = m.pid().expect("the daemon runs");
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL the daemon");
        let ends = join_all(handles);
        m.kill9(); // reap it and clear the dead mount
        let (writes, closes, fsyncs) = (c.writes.load(SeqCst), c.closes.load(SeqCst), c.fsyncs.load(SeqCst));
        let (del_ok, del_refused, del_flight) =
            (c.deletes_ok.load(SeqCst), c.deletes_refused.load(SeqCst), c.deletes_in_flight.load(SeqCst));
        let acked = ACKED.load(SeqCst) - acked_before;

        let mut fails = Vec::new();
        let mut errnos: BTreeMap<String, usize> = BTreeMap::new();
        for (name, end) in &ends {
            match end {
                End::Killed { errno, op } => {
                    if !errno.is_some_and(|e| KILL_ERRNOS.contains(&e)) {
                        fails.push(format!("{name}: {op} failed after the kill with {}", errno_name(*errno)));
                    }
                    *errnos.entry(errno_name(*errno)).or_default() += 1;
                }
                End::Bug(why) => fails.push(why.clone()),
            }
        }
        // Whatever the writers left open or unfinished is theirs no more.
        for e in sh.ledger().values_mut() {
            e.retired.get_or_insert_with(Instant::now);
        }

        let t = Instant::now();
        m.restart();
        let remount = t.elapsed();
        let view = chain_view(&m.records());
        let (fig, mut more) = check_store(&m, &sh, &view, &mut gone, cycle);
        fails.append(&mut more);
        let (verify_took, warnings) = check_verify(&m, &mut fails);
        eprintln!(
            "cycle {cycle}/{all}: killed after {delay} ms: {writes} writes, {fsyncs} syncs, {closes} closes, {} \
             acknowledged; {} new files; lost {} B; written but unacknowledged: {} B there, {} B not; failed \
             writes landed: {} B; {} Recovered ({} adopted); deletes {del_ok} ok, {del_refused} refused (EPERM), \
             {del_flight} in flight at the kill ({} done, {} not{}); threads ended with {errnos:?}; remount {} ms; \
             store {} files, {}, {} records; verify {} ms, warnings {warnings:?}",
            mib(acked),
            fig.files_new,
            fig.lost,
            fig.unacked_present,
            fig.unacked_absent,
            fig.failed_write_landed,
            fig.recovered,
            fig.adopted,
            fig.in_flight_deletes_done,
            fig.in_flight_deletes_kept,
            if fig.delete_recorded_not_done.is_empty() {
                String::new()
            } else {
                format!(
                    "; Delete recorded, unlink not done, Aborted at the remount: {:?}, ranges now {:?}",
                    fig.delete_recorded_not_done,
                    fig.delete_recorded_not_done.iter().map(|r| view.ranges.get(r)).collect::<Vec<_>>()
                )
            },
            remount.as_millis(),
            fig.files_held,
            mib(fig.bytes_held),
            view.records,
            verify_took.as_millis(),
        );
        if !fails.is_empty() {
            panic!(
                "cycle {cycle} (WORMFS_CRASH_SEED={seed}) failed:\n- {}\n--- daemon log (tail) ---\n{}",
                fails.join("\n- "),
                log_tail(&m, 80)
            );
        }
        totals.cycles += 1;
        totals.files += fig.files_new;
        totals.recovered += fig.recovered;
        totals.adopted += fig.adopted;
        totals.lost += fig.lost;
        totals.deleted += fig.deleted_ok + fig.in_flight_deletes_done;
        totals.flight_done += fig.in_flight_deletes_done;
        totals.flight_kept += fig.in_flight_deletes_kept;
        totals.delete_gap.extend(fig.delete_recorded_not_done.iter().map(|r| format!("cycle {cycle}: {r}")));
        totals.unacked_absent += fig.unacked_absent;
    }

    // A clean stop at the end: an Unmount, verify clean, every file as the ledger says.
    m.stop();
    let records = m.records();
    assert_eq!(records.last().map(|r| r["kind"].clone()), Some(Value::from("Unmount")), "no Unmount at the end");
    let view = chain_view(&records);
    let (fig, mut fails) = check_store(&m, &sh, &view, &mut gone, usize::MAX);
    check_verify(&m, &mut fails);
    assert!(fails.is_empty(), "after the clean stop (WORMFS_CRASH_SEED={seed}):\n- {}", fails.join("\n- "));
    totals.lost += fig.lost;
    totals.held_files += fig.files_held;
    totals.held_bytes += fig.bytes_held;
    totals.records += view.records;
}

/// Crash cycles per store: the chain (and so each remount and verify) grows with every cycle; a
/// long run starts a new store after this many.
const CYCLES_PER_STORE: usize = 25;

#[test]
fn sigkill_under_load_loses_no_acknowledged_byte_and_verify_stays_clean() {
    let cycles = env_num("WORMFS_CRASH_CYCLES", 10) as usize;
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let seed = env_num("WORMFS_CRASH_SEED", now_ns & 0xffff_ffff);
    eprintln!(
        "crash test: {cycles} cycles, {CYCLES_PER_STORE} per store, WORMFS_CRASH_SEED={seed} (retention \
         {RETENTION}, /{LONG_DIR} 1h)"
    );
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut t = Totals::default();
    let mut first = 1;
    while first <= cycles {
        let n = CYCLES_PER_STORE.min(cycles + 1 - first);
        run_store(first, n, cycles, seed, &mut rng, &mut t);
        first += n;
    }
    eprintln!(
        "crash summary: {} cycles on {} store(s), {} files ({} deleted by retention, {} still held: {}), {} \
         acknowledged, bytes lost {}, written-but-unacknowledged bytes absent {}, {} Recovered records ({} \
         adoptions), unlinks in flight at a kill: {} done / {} not (Delete recorded, then Aborted at the remount: {:?}), {} \
         records, {:.0} s",
        t.cycles,
        t.stores,
        t.files,
        t.deleted,
        t.held_files,
        mib(t.held_bytes),
        mib(ACKED.load(SeqCst)),
        t.lost,
        t.unacked_absent,
        t.recovered,
        t.adopted,
        t.flight_done,
        t.flight_kept,
        t.delete_gap,
        t.records,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(t.cycles, cycles);
    assert_eq!(t.lost, 0, "acknowledged bytes were lost");
}

// ---------------------------------------------------------------------------------------------
// A kill between the record and the change, made certain
// ---------------------------------------------------------------------------------------------

/// The change a record announces: the syscall that makes it and the call through the mount.
#[derive(Debug, Clone, Copy)]
enum Change {
    Unlink,
    Rename,
    Truncate,
}

impl Change {
    fn syscall(self) -> &'static str {
        match self {
            Change::Unlink => "unlinkat",
            Change::Rename => "renameat2",
            Change::Truncate => "ftruncate",
        }
    }

    fn record(self) -> &'static str {
        match self {
            Change::Unlink => "Delete",
            Change::Rename => "Rename",
            Change::Truncate => "Truncate",
        }
    }
}

/// Delete, Rename and Truncate are recorded (synced) before the daemon makes the change. This
/// kills the daemon between the two, every time: strace holds the daemon's unlinkat / renameat2
/// / ftruncate at its entry for 4 s, and the daemon is killed while it waits. The next mount
/// must leave a store verify accepts (exit 0, no findings, no warning about an unfinished
/// change), with the file's bytes intact at its old or its new name (or, for a truncate, at its
/// old or new size; for an unlink, gone or intact).
#[test]
fn a_kill_between_the_record_and_the_unlink_rename_or_truncate_leaves_a_clean_store() {
    let strace = run("command -v strace");
    assert!(strace.success(), "`strace` is not in PATH: install Debian's `strace` package; this test never skips");
    const CONTENT: &[u8] = b"hello world, sealed and expired\n";
    let mut fails = Vec::new();
    for change in [Change::Unlink, Change::Rename, Change::Truncate] {
        let mut m = TestMount::builder().arg("--retention").arg("1s").start();
        m.create("a.log", CONTENT);
        // Sealed at close; expired a second later.
        sleep(Duration::from_millis(1500));
        let pid = m.pid().unwrap();
        let (trace_out, trace_err) = (m.scratch().join("strace.out"), m.scratch().join("strace.err"));
        let sc = change.syscall();
        let tracer = Command::new("strace")
            .args(["-f", "-p", &pid.to_string(), "-e", &format!("trace={sc}"), "-e"])
            .arg(format!("inject={sc}:delay_enter=4s"))
            .arg("-o")
            .arg(&trace_out)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(File::create(&trace_err).unwrap())
            .spawn()
            .expect("spawn strace");
        let mut tracer = KillOnDrop(tracer);
        assert!(
            wait_until(Duration::from_secs(10), || fs::read_to_string(&trace_err)
                .is_ok_and(|s| s.contains("attached"))),
            "strace did not attach to the daemon: {}",
            fs::read_to_string(&trace_err).unwrap_or_default()
        );
        let (a, b) = (m.path("a.log"), m.path("b.log"));
        let op = thread::spawn(move || match change {
            Change::Unlink => fs::remove_file(&a),
            Change::Rename => fs::rename(&a, &b),
            Change::Truncate => nix::unistd::truncate(&a, 5).map_err(io::Error::from),
        });
        let entered = wait_until(Duration::from_secs(10), || {
            fs::read_to_string(&trace_out).is_ok_and(|s| s.contains(&format!("{sc}(")))
        });
        assert!(entered, "the daemon never called {sc}: {}", fs::read_to_string(&trace_out).unwrap_or_default());
        m.kill9();
        let result = op.join().unwrap();
        let _ = tracer.0.kill();
        let _ = tracer.0.wait();

        let records = m.records();
        let recorded = records.iter().any(|r| r["kind"] == change.record());
        let before: Vec<_> = fs::read_dir(m.data()).unwrap().map(|e| e.unwrap().file_name()).collect();
        m.restart();
        let after_mount = m.records();
        let new_records: Vec<_> = after_mount[records.len()..]
            .iter()
            .filter(|r| r["kind"] != "KeyRotate")
            .map(|r| {
                format!(
                    "{} {}{}",
                    r["kind"].as_str().unwrap_or("?"),
                    r["path"].as_str().unwrap_or(""),
                    if r["adopted"] == true { " (adopted)" } else { "" }
                )
            })
            .collect();
        let mut here = Vec::new();
        check_verify(&m, &mut here);
        let (a, b) = (fs::read(m.backing("a.log")).ok(), fs::read(m.backing("b.log")).ok());
        let intact = match change {
            Change::Unlink => b.is_none() && a.as_deref().is_none_or(|a| a == CONTENT),
            Change::Rename => matches!((a.as_deref(), b.as_deref()), (Some(x), None) | (None, Some(x)) if x == CONTENT),
            Change::Truncate => b.is_none() && matches!(a.as_deref(), Some(x) if x == CONTENT || x == &CONTENT[..5]),
        };
        if !intact {
            here.push(format!("after the remount the data directory holds a.log = {a:?}, b.log = {b:?}"));
        }
        m.stop();
        check_verify(&m, &mut here);
        eprintln!(
            "{change:?}: killed inside {sc} (the call through the mount returned {:?}); {} record {}; data dir \
             before the remount {before:?}; the remount added {new_records:?}; now a.log {}, b.log {}; \
             {}",
            result.map_err(|e| e.raw_os_error().map_or(e.to_string(), |n| errno_name(Some(n)))),
            change.record(),
            if recorded { "in the chain" } else { "not in the chain" },
            a.as_ref().map_or("absent".into(), |a| format!("{} bytes", a.len())),
            b.as_ref().map_or("absent".into(), |b| format!("{} bytes", b.len())),
            if here.is_empty() { "verify clean".to_string() } else { format!("FAILED: {}", here.join("; ")) }
        );
        fails.extend(here.into_iter().map(|f| format!("{change:?}: {f}")));
    }
    assert!(fails.is_empty(), "a kill between the record and the change:\n- {}", fails.join("\n- "));
}

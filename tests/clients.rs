//! Real log clients against a real mount: rsyslogd (with the example config admins get in
//! scripts/rsyslog-wormfs.conf), logrotate (which must fail without losing a byte), Python's
//! WatchedFileHandler, a C program appending with O_APPEND, and shell `>>`. For each writer:
//! every line is there exactly once and in order, the seals cover every byte, and verify passes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use common::debian_tools::SyslogNg;
use common::*;

/// Debian's rsyslogd (package `rsyslog`), logger (`bsdutils`) and logrotate (`logrotate`).
const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const LOGROTATE: &str = "/usr/sbin/logrotate";

#[track_caller]
fn require_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: install Debian's `{package}` package (scripts/deps lists it); \
         this test never skips"
    );
}

#[track_caller]
fn require_in_path(tool: &str, package: &str) {
    let found = run(&format!("command -v {tool}"));
    assert!(found.success(), "`{tool}` is not in PATH: install Debian's `{package}` package; this test never skips");
}

/// Assert the file's segments follow each other from 0 and the last one ends at `size`.
#[track_caller]
fn assert_sealed_to(records: &[Value], path: &str, size: u64) {
    let seals = seals_for(records, path);
    let mut at = 0;
    for &(start, end) in &seals {
        assert_eq!(start, at, "{path}: segments do not follow each other: {seals:?}");
        assert!(end > start, "{path}: empty segment in {seals:?}");
        at = end;
    }
    assert_eq!(at, size, "{path}: the seals ({seals:?}) do not cover all {size} bytes");
}

/// Wait (the FUSE release that seals a closed file is asynchronous) until the seals of `path`
/// reach `size`, then assert they cover it exactly.
#[track_caller]
fn wait_sealed_to(m: &TestMount, path: &str, size: u64) {
    wait_until(Duration::from_secs(10), || seals_for(&m.records(), path).last().map(|s| s.1) == Some(size));
    assert_sealed_to(&m.records(), path, size);
}

fn verify(m: &TestMount) -> RunOutput {
    let mut cmd = Command::new(WORMFS);
    cmd.args(["verify", "--data"]).arg(m.data()).arg("--state").arg(m.state()).env_remove("RUST_LOG");
    run_cmd(&mut cmd)
}

#[track_caller]
fn assert_verifies(m: &TestMount) {
    let out = verify(m);
    assert_eq!(out.status.code(), Some(0), "wormfs verify must exit 0:\n{}{}", out.stdout, out.stderr);
}

/// Every regular file under `dir`, as (path relative to `dir`, bytes), sorted by path.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                walk(root, &entry.path(), out);
            } else if ty.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(entry.path()).unwrap());
            } else {
                panic!("unexpected {ty:?} at {}", entry.path().display());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// "/" + rel, the way records name files.
fn rec_path(rel: &Path) -> String {
    format!("/{}", rel.display())
}

// ---------------------------------------------------------------------------------------------
// rsyslog
// ---------------------------------------------------------------------------------------------

const MESSAGES: usize = 10_000;
const TAG: &str = "wormtest";

fn message(i: usize) -> String {
    format!("wormfs client test seq={i:06} the quick brown fox jumps over the lazy dog")
}

/// The sequence number of a line rsyslog wrote for one of our messages.
fn seq_of(line: &str) -> Option<usize> {
    if !line.contains(&format!(" {TAG}:")) {
        return None;
    }
    let rest = &line[line.find("seq=")? + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(digits.len(), 6, "mangled message line {line:?}");
    let n = digits.parse().unwrap();
    assert!(line.ends_with(&message(n)), "mangled message line {line:?}");
    Some(n)
}

/// How many of our messages are in the data directory so far, and each one's count.
fn messages_in(data: &Path) -> (usize, Vec<u32>) {
    let mut counts = vec![0u32; MESSAGES + 1];
    let mut total = 0;
    for bytes in files_under(data).values() {
        // Only complete lines: rsyslog may be in the middle of writing the last one.
        for line in bytes.split_inclusive(|b| *b == b'\n').filter(|l| l.ends_with(b"\n")) {
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            if let Some(n) = seq_of(&line) {
                assert!((1..=MESSAGES).contains(&n), "unknown seq {n} in {line:?}");
                counts[n] += 1;
                total += 1;
            }
        }
    }
    (total, counts)
}

/// Send messages `from..=to` to the rsyslog socket with one `logger` reading them from stdin
/// (one message per line).
#[track_caller]
fn send_messages(socket: &Path, from: usize, to: usize) {
    let mut logger = Command::new("timeout");
    logger
        .args(["-k", "5", "30", "logger", "--socket-errors=on", "-t", TAG, "-u"])
        .arg(socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = logger.spawn().expect("spawn logger");
    let mut input = String::new();
    for i in from..=to {
        input.push_str(&message(i));
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("feed logger");
    assert!(
        out.status.success(),
        "logger {from}..={to} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// rsyslogd in the foreground with `conf`, its output into `out_path`; killed when dropped.
fn spawn_rsyslogd(conf: &Path, pidfile: &Path, out_path: &Path) -> KillOnDrop {
    let out = fs::File::create(out_path).unwrap();
    let child = Command::new(RSYSLOGD)
        .arg("-n")
        .arg("-f")
        .arg(conf)
        .arg("-i")
        .arg(pidfile)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn rsyslogd");
    KillOnDrop(child)
}

/// Send messages `from..=to` to `socket` and wait until all messages up to `to` are in the mount
/// (`daemon_output` tells why not).
#[track_caller]
fn send_and_wait(m: &TestMount, socket: &Path, from: usize, to: usize, daemon_output: impl Fn() -> String) {
    send_messages(socket, from, to);
    assert!(
        wait_until(Duration::from_secs(15), || messages_in(m.data()).0 >= to),
        "only {} of {to} messages reached the mount\n{}",
        messages_in(m.data()).0,
        daemon_output()
    );
}

#[test]
fn example_rsyslog_conf_is_valid() {
    require_tool(RSYSLOGD, "rsyslog");
    let out = run_cmd(Command::new(RSYSLOGD).args(["-N1", "-f", EXAMPLE_CONF]));
    out.assert_success("rsyslogd -N1 -f scripts/rsyslog-wormfs.conf");
    let conf = fs::read_to_string(EXAMPLE_CONF).unwrap();
    for needle in ["dynaFile=", "type=\"omfile\"", "createDirs=\"on\"", "closeTimeout=", "%$YEAR%-%$MONTH%-%$DAY%"] {
        assert!(conf.contains(needle), "example config lacks {needle}");
    }
}

#[test]
fn rsyslogd_with_the_example_config_keeps_10000_messages_through_a_sighup_all_sealed() {
    require_tool(RSYSLOGD, "rsyslog");
    require_in_path("logger", "bsdutils");
    let mut m = TestMount::start();
    let dir = m.scratch().to_path_buf();
    let (socket, work, pidfile) = (dir.join("log.sock"), dir.join("rsyslog-work"), dir.join("rsyslogd.pid"));
    fs::create_dir(&work).unwrap();
    let conf = dir.join("rsyslog.conf");
    fs::write(&conf, rsyslog_test_conf(&m, &socket, &work)).unwrap();
    run_cmd(Command::new(RSYSLOGD).arg("-N1").arg("-f").arg(&conf)).assert_success("rsyslogd -N1 on the test config");

    let out_path = dir.join("rsyslogd.out");
    // Declared after the mount: dropped (killed) first if anything below panics.
    let mut rsyslogd = spawn_rsyslogd(&conf, &pidfile, &out_path);
    let pid = Pid::from_raw(rsyslogd.0.id() as i32);
    let rsyslog_out = || fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists() && pidfile.exists()),
        "rsyslogd did not create its socket and pid file: {:?}\n{}",
        rsyslogd.0.try_wait(),
        rsyslog_out()
    );

    // First half, then SIGHUP once all of it is written: rsyslog closes its files, and the
    // close seals them.
    let half = MESSAGES / 2;
    send_and_wait(&m, &socket, 1, half, rsyslog_out);
    kill(pid, Signal::SIGHUP).expect("SIGHUP rsyslogd");
    let sealed_at_hup = wait_until(Duration::from_secs(10), || {
        let records = m.records();
        files_under(m.data())
            .iter()
            .all(|(rel, bytes)| seals_for(&records, &rec_path(rel)).last().map(|s| s.1) == Some(bytes.len() as u64))
    });
    assert!(sealed_at_hup, "SIGHUP did not close (and so seal) rsyslog's files: {:#?}", m.records());

    send_and_wait(&m, &socket, half + 1, MESSAGES, rsyslog_out);
    assert!(rsyslogd.0.try_wait().unwrap().is_none(), "rsyslogd died\n{}", rsyslog_out());

    kill(pid, Signal::SIGTERM).expect("SIGTERM rsyslogd");
    let status = wait_timeout(&mut rsyslogd.0, Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("rsyslogd did not exit after SIGTERM\n{}", rsyslog_out()));
    assert!(status.success(), "rsyslogd exited with {status} after SIGTERM\n{}", rsyslog_out());

    let files = assert_every_message_once_per_host_daily(&m, "rsyslogd", &short_host_name());
    assert_all_sealed_and_verified(&mut m, &files, "rsyslogd");
}

/// This machine's host name without its domain.
fn short_host_name() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    host.split('.').next().unwrap().to_string()
}

/// Every message exactly once, in files named HOST/YYYY-MM-DD.log with the example configs'
/// modes, holding nothing but our messages and the syslog daemon's own (`daemon`: its name in
/// its lines). Returns the files.
#[track_caller]
fn assert_every_message_once_per_host_daily(m: &TestMount, daemon: &str, host: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    let (total, counts) = messages_in(m.data());
    let missing: Vec<_> = (1..=MESSAGES).filter(|&i| counts[i] == 0).collect();
    let doubled: Vec<_> = (1..=MESSAGES).filter(|&i| counts[i] > 1).collect();
    assert!(
        missing.is_empty() && doubled.is_empty() && total == MESSAGES,
        "{total} message lines; missing {} (first {:?}), duplicated {} (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        doubled.len(),
        &doubled[..doubled.len().min(10)]
    );
    let files = files_under(m.data());
    for (rel, bytes) in &files {
        let parts: Vec<_> = rel.iter().map(|p| p.to_str().unwrap().to_string()).collect();
        assert_eq!(parts.len(), 2, "not HOST/DAY.log: {}", rel.display());
        assert_eq!(parts[0], host, "host directory of {}", rel.display());
        let day = parts[1].strip_suffix(".log").unwrap_or_else(|| panic!("{}: not .log", rel.display()));
        assert!(
            day.len() == 10
                && day.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() }),
            "not a YYYY-MM-DD file name: {}",
            rel.display()
        );
        assert_eq!(mode_of(&m.backing(rel)), 0o640, "file mode of {}", rel.display());
        assert_eq!(mode_of(&m.backing(&parts[0])), 0o750, "directory mode of {}", parts[0]);
        assert!(bytes.ends_with(b"\n"), "{} ends in a partial line", rel.display());
        for line in String::from_utf8_lossy(bytes).lines() {
            assert!(
                seq_of(line).is_some()
                    || line.contains(&format!(" {daemon}:"))
                    || line.contains(&format!(" {daemon}[")),
                "unexpected line in {}: {line:?}",
                rel.display()
            );
        }
    }

    files
}

/// The syslog daemon (`daemon`) has closed everything: the seals cover every byte of `files`
/// (before and after unmount), the bytes are still those, and verify passes.
#[track_caller]
fn assert_all_sealed_and_verified(m: &mut TestMount, files: &BTreeMap<PathBuf, Vec<u8>>, daemon: &str) {
    for (rel, bytes) in files {
        wait_sealed_to(m, &rec_path(rel), bytes.len() as u64);
    }
    m.stop();
    let records = m.records();
    eprintln!(
        "{daemon} wrote {} file(s): {:?}; {} records in the chain",
        files.len(),
        files
            .iter()
            .map(|(r, b)| (r.display().to_string(), b.len(), seals_for(&records, &rec_path(r))))
            .collect::<Vec<_>>(),
        records.len()
    );
    for (rel, bytes) in files {
        assert_sealed_to(&records, &rec_path(rel), bytes.len() as u64);
        assert_eq!(&fs::read(m.backing(rel)).unwrap(), bytes, "{} changed after the fact", rel.display());
    }
    assert_verifies(m);
}

#[test]
fn rsyslogd_files_each_message_under_the_machine_that_sent_it() {
    require_tool(RSYSLOGD, "rsyslog");
    let m = TestMount::start();
    let dir = m.scratch().to_path_buf();
    let (socket, work, pidfile) = (dir.join("log.sock"), dir.join("rsyslog-work"), dir.join("rsyslogd.pid"));
    fs::create_dir(&work).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A log server receiving over TCP, beside the example config.
    let conf = dir.join("rsyslog.conf");
    let tcp = format!("module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n");
    fs::write(&conf, format!("{tcp}{}", rsyslog_test_conf(&m, &socket, &work))).unwrap();
    let out_path = dir.join("rsyslogd.out");
    let mut rsyslogd = spawn_rsyslogd(&conf, &pidfile, &out_path);
    let rsyslog_out = || fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "rsyslogd does not listen on 127.0.0.1:{port}\n{}",
        rsyslog_out()
    );
    let claimed = ["web1", "..", "../../../../tmp", "a/b"];
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (i, host) in claimed.iter().enumerate() {
        writeln!(stream, "<13>Dec  1 12:00:00 {host} {TAG}: claimed={i}").unwrap();
    }
    drop(stream);
    let count = || {
        files_under(m.data()).values().map(|b| String::from_utf8_lossy(b).matches(" claimed=").count()).sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(10), || count() >= claimed.len()),
        "only {} of {} messages reached the mount: {:?}\n{}",
        count(),
        claimed.len(),
        files_under(m.data()).keys().collect::<Vec<_>>(),
        rsyslog_out()
    );
    kill(Pid::from_raw(rsyslogd.0.id() as i32), Signal::SIGTERM).unwrap();
    wait_timeout(&mut rsyslogd.0, Duration::from_secs(10)).expect("rsyslogd did not stop");
    // All in the one directory of the sending machine (127.0.0.1's name), none under a name
    // the messages claim; the lines keep the claimed names.
    let files = files_under(m.data());
    let holding: Vec<_> = files.iter().filter(|(_, b)| String::from_utf8_lossy(b).contains(" claimed=")).collect();
    assert_eq!(holding.len(), 1, "{:?}", files.keys().collect::<Vec<_>>());
    let top = holding[0].0.iter().next().unwrap().to_str().unwrap().to_string();
    assert!(top == "localhost" || top == "127.0.0.1" || top == short_host_name(), "filed under {top:?}");
    let text = String::from_utf8_lossy(holding[0].1);
    for (i, host) in claimed.iter().enumerate() {
        let line = text.lines().find(|l| l.ends_with(&format!(" claimed={i}"))).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains(&format!(" {host} {TAG}:")), "claimed host {host:?} not in {line:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// syslog-ng
// ---------------------------------------------------------------------------------------------

/// The example syslog-ng config shipped for admins (a conf.d drop-in).
const SYSLOG_NG_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/syslog-ng-wormfs.conf");

/// The example drop-in pointed at mount `m`.
fn syslog_ng_dropin(m: &TestMount) -> String {
    let example = fs::read_to_string(SYSLOG_NG_EXAMPLE).expect("read scripts/syslog-ng-wormfs.conf");
    assert!(example.contains(EXAMPLE_MOUNT), "the example syslog-ng config no longer writes under {EXAMPLE_MOUNT}");
    example.replace(EXAMPLE_MOUNT, &format!("{}/", m.mnt().display()))
}

/// The `options { ... };` statement of Debian's syslog-ng.conf (owner, group, perm, no DNS, ...).
fn debian_options(debian: &str) -> &str {
    let start = debian.find("\noptions {").expect("Debian's syslog-ng.conf has no options statement") + 1;
    let len = debian[start..].find("};").expect("unterminated options statement") + 2;
    &debian[start..start + len]
}

/// A syslog-ng config for a test: Debian's global options, the source s_src that Debian's config
/// defines (here: the private socket `socket` and syslog-ng's own messages instead of /dev/log
/// and the kernel, plus `extra_source`), and the example drop-in at `dropin`.
fn syslog_ng_test_conf(
    sng: &SyslogNg,
    socket: &Path,
    extra_options: &str,
    extra_source: &str,
    dropin: &Path,
) -> String {
    format!(
        "@version: 3.38\n\
         # generated by the tests around scripts/syslog-ng-wormfs.conf\n\
         {options}\n\
         options {{ {extra_options} }};\n\
         source s_src {{ unix-dgram(\"{socket}\"); internal(); {extra_source} }};\n\
         @include \"{dropin}\"\n",
        options = debian_options(&sng.debian_config()),
        socket = socket.display(),
        dropin = dropin.display(),
    )
}

/// A syslog-ng daemon of a test, killed if the test fails before it stops it.
struct SyslogNgDaemon {
    child: KillOnDrop,
    out: PathBuf,
}

impl SyslogNgDaemon {
    fn start(sng: &SyslogNg, conf: &Path, dir: &Path, socket: &Path) -> SyslogNgDaemon {
        let out = dir.join("syslog-ng.out");
        let file = fs::File::create(&out).unwrap();
        let child = sng
            .daemon(conf, dir)
            // As Debian's unit runs it: its own messages go to its internal() source, so
            // into the mount.
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn syslog-ng");
        let mut d = SyslogNgDaemon { child: KillOnDrop(child), out };
        let pidfile = dir.join("syslog-ng.pid");
        assert!(
            wait_until(Duration::from_secs(10), || socket.exists() && pidfile.exists()),
            "syslog-ng did not create its socket and pid file: {:?}\n{}",
            d.child.0.try_wait(),
            d.output()
        );
        d
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.0.id() as i32)
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    #[track_caller]
    fn assert_running(&mut self) {
        assert!(self.child.0.try_wait().unwrap().is_none(), "syslog-ng died\n{}", self.output());
    }

    /// SIGTERM, as systemctl stop does; it must exit 0 within 10 s.
    #[track_caller]
    fn stop(&mut self) {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM syslog-ng");
        let status = wait_timeout(&mut self.child.0, Duration::from_secs(10));
        let status = status.unwrap_or_else(|| panic!("syslog-ng did not exit after SIGTERM\n{}", self.output()));
        assert!(status.success(), "syslog-ng exited with {status} after SIGTERM\n{}", self.output());
    }
}

#[test]
fn example_syslog_ng_conf_is_valid_as_a_dropin_of_debians_config() {
    let sng = SyslogNg::find();
    let dir = tempfile::tempdir().unwrap();
    let conf_d = dir.path().join("conf.d");
    fs::create_dir(&conf_d).unwrap();
    // Debian's own syslog-ng.conf, reading its includes from the unpacked tree. Its virtual
    // console destination is generated by a script at a fixed /usr/share path; the file it
    // generates stands in for it (a syntax check opens nothing).
    let debian = sng.debian_config();
    let conf_d_include = "@include \"/etc/syslog-ng/conf.d/*.conf\"";
    assert!(debian.contains(conf_d_include), "Debian's syslog-ng.conf no longer includes conf.d");
    let debian = debian
        .replacen("@version: 3.38\n", &format!("@version: 3.38\n@define include-path \"{}\"\n", sng.include_path()), 1)
        .replace(conf_d_include, &format!("@include \"{}/*.conf\"", conf_d.display()))
        .replace("getvirtconsole()", "file(\"/dev/tty10\")");
    let conf = dir.path().join("syslog-ng.conf");
    fs::write(&conf, debian).unwrap();
    let check = || run_cmd(sng.daemon(&conf, dir.path()).arg("--syntax-only"));
    check().assert_success("syslog-ng --syntax-only on Debian's config alone");
    let example = fs::read_to_string(SYSLOG_NG_EXAMPLE).unwrap();
    fs::write(conf_d.join("wormfs.conf"), &example).unwrap();
    check().assert_success("syslog-ng --syntax-only on Debian's config with the example drop-in");
    // The check sees the drop-in: cut short, it fails.
    fs::write(conf_d.join("wormfs.conf"), &example[..example.rfind("log {").unwrap() + 5]).unwrap();
    check().assert_failure("syslog-ng --syntax-only with a broken drop-in");
    for needle in [
        "file(\"/var/log/worm/${WORMFS_HOST}/${R_YEAR}-${R_MONTH}-${R_DAY}.log\"",
        "create-dirs(yes)",
        "time-reap(",
        "flow-control",
        "set(\"${HOST_FROM}\", value(\"WORMFS_HOST\"))",
        "$(indent-multi-line ",
    ] {
        assert!(example.contains(needle), "example config lacks {needle}");
    }
}

#[test]
fn syslog_ng_with_the_example_config_keeps_10000_messages_through_a_reload_all_sealed() {
    require_in_path("logger", "bsdutils");
    let sng = SyslogNg::find();
    // No seal by the interval during the test: what seals the files is syslog-ng closing them.
    let mut m = TestMount::builder().arg("--seal-interval").arg("1h").start();
    let dir = m.scratch().join("syslog-ng");
    fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("log.sock");
    let dropin = dir.join("wormfs.conf");
    fs::write(&dropin, syslog_ng_dropin(&m)).unwrap();
    let conf = dir.join("syslog-ng.conf");
    fs::write(&conf, syslog_ng_test_conf(&sng, &socket, "", "", &dropin)).unwrap();
    run_cmd(sng.daemon(&conf, &dir).arg("--syntax-only")).assert_success("syslog-ng --syntax-only on the test config");
    let mut daemon = SyslogNgDaemon::start(&sng, &conf, &dir, &socket);

    // First half, then a reload (SIGHUP, what `systemctl reload syslog-ng` sends) once all of
    // it is written.
    let half = MESSAGES / 2;
    send_and_wait(&m, &socket, 1, half, || daemon.output());
    kill(daemon.pid(), Signal::SIGHUP).expect("SIGHUP syslog-ng");
    // It says so through its internal() source, into the mount.
    let reloaded =
        || files_under(m.data()).values().any(|b| String::from_utf8_lossy(b).contains("Configuration reload finished"));
    assert!(wait_until(Duration::from_secs(10), reloaded), "syslog-ng did not reload\n{}", daemon.output());
    send_and_wait(&m, &socket, half + 1, MESSAGES, || daemon.output());
    daemon.assert_running();
    // Unlike rsyslog's SIGHUP, the reload kept the files open: nothing is sealed yet.
    let records = m.records();
    for rel in files_under(m.data()).keys() {
        assert_eq!(
            seals_for(&records, &rec_path(rel)),
            vec![],
            "{} was sealed while syslog-ng had it open",
            rel.display()
        );
    }
    daemon.stop();

    // The directory is the sending machine's name: here, for the local socket, this one's.
    let files = assert_every_message_once_per_host_daily(&m, "syslog-ng", &short_host_name().to_lowercase());
    // Debian's options: files owned root:adm, directories root:root.
    let adm = nix::unistd::Group::from_name("adm").unwrap().expect("group adm").gid.as_raw();
    for rel in files.keys() {
        let meta = fs::metadata(m.backing(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, adm), "owner of {}", rel.display());
    }
    assert_all_sealed_and_verified(&mut m, &files, "syslog-ng");
}

#[test]
fn syslog_ng_files_each_message_under_the_machine_that_sent_it_one_line_each() {
    let sng = SyslogNg::find();
    let m = TestMount::start();
    let dir = m.scratch().join("syslog-ng");
    fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("log.sock");
    let dropin = dir.join("wormfs.conf");
    fs::write(&dropin, syslog_ng_dropin(&m)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A log server that believes the host names in the messages (keep-hostname), receiving
    // RFC 5424 over TCP.
    let conf = dir.join("syslog-ng.conf");
    let source = format!("syslog(transport(\"tcp\") ip(\"127.0.0.1\") port({port}));");
    fs::write(&conf, syslog_ng_test_conf(&sng, &socket, "keep-hostname(yes);", &source, &dropin)).unwrap();
    let mut daemon = SyslogNgDaemon::start(&sng, &conf, &dir, &socket);
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "syslog-ng does not listen on 127.0.0.1:{port}\n{}",
        daemon.output()
    );
    // Names a sender might claim: another host's, and ones that are paths.
    let claimed = ["web1", "..", "../../../../tmp", "a/b", ".", "x..y", "-rf", "WEB1"];
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (i, host) in claimed.iter().enumerate() {
        let msg = format!("<13>1 2026-12-01T12:00:00Z {host} {TAG} - - - claimed={i}");
        write!(stream, "{} {msg}", msg.len()).unwrap();
    }
    // A message that tries to pose as a second record of web1's.
    let forged = format!("<13>1 2026-12-01T12:00:00Z web1 {TAG} - - - two lines\n2026-12-01T12:00:00.000000+00:00 web1 sshd[77]: Accepted password for root");
    write!(stream, "{} {forged}", forged.len()).unwrap();
    drop(stream);
    let count = |files: &BTreeMap<PathBuf, Vec<u8>>| {
        files.values().map(|b| String::from_utf8_lossy(b).matches(&format!(" {TAG}: ")).count()).sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(10), || count(&files_under(m.data())) > claimed.len()),
        "only {} of {} messages reached the mount: {:?}\n{}",
        count(&files_under(m.data())),
        claimed.len() + 1,
        files_under(m.data()).keys().collect::<Vec<_>>(),
        daemon.output()
    );
    daemon.stop();
    // All in the one directory of the machine that sent them (127.0.0.1, use-dns(no)), whatever
    // they claim; syslog-ng's own messages (internal()) under this machine's name.
    let files = files_under(m.data());
    let sender: Vec<_> = files.keys().filter(|rel| rel.starts_with("127.0.0.1")).collect();
    assert_eq!(sender.len(), 1, "{:?}", files.keys().collect::<Vec<_>>());
    for rel in files.keys() {
        let top = rel.iter().next().unwrap().to_str().unwrap();
        assert!(
            top == "127.0.0.1" || top == short_host_name().to_lowercase(),
            "a directory for a claimed name: {}",
            rel.display()
        );
    }
    let text = String::from_utf8_lossy(&files[sender[0]]).into_owned();
    for (i, host) in claimed.iter().enumerate() {
        let lines: Vec<_> = text.lines().filter(|l| l.ends_with(&format!(" claimed={i}"))).collect();
        assert_eq!(lines.len(), 1, "message claiming {host:?}: {lines:?}\n{text}");
        // The line keeps the name as sent.
        assert!(lines[0].contains(&format!(" {host} {TAG}: ")), "claimed host {host:?} not in {:?}", lines[0]);
    }
    // Every line begins with the time of arrival, or with a tab when it continues a message:
    // the forged "record" is a continuation line of the message that carried it.
    for line in text.lines() {
        assert!(line.starts_with('\t') || line.starts_with("20"), "a line that is not a record: {line:?}\n{text}");
    }
    assert!(text.contains("two lines\n\t2026-12-01T12:00:00.000000+00:00 web1 sshd[77]: Accepted"), "{text}");
    assert!(!daemon.output().contains("Spurious path"), "syslog-ng dropped a message\n{}", daemon.output());
}

// ---------------------------------------------------------------------------------------------
// logrotate
// ---------------------------------------------------------------------------------------------

#[test]
fn logrotate_create_and_copytruncate_fail_and_lose_nothing() {
    require_tool(LOGROTATE, "logrotate");
    let m = TestMount::start();
    m.mkdir("app");
    let content: String = (0..200).map(|i| format!("app line {i}\n")).collect();
    m.append("app/app.log", content.as_bytes());
    let log = m.path("app/app.log");
    let snap = Snapshot::of(m.backing("app/app.log"));
    let listing = || {
        let mut names: Vec<String> =
            fs::read_dir(m.path("app")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };

    // 1. Debian's default style: rename the file away, create a new one.
    let conf = m.scratch().join("create.conf");
    fs::write(
        &conf,
        format!("{} {{\n    weekly\n    rotate 4\n    nocompress\n    create\n    missingok\n}}\n", log.display()),
    )
    .unwrap();
    let out = run_cmd(
        Command::new("timeout")
            .args(["-k", "5", "30", LOGROTATE, "-f", "-s"])
            .arg(m.scratch().join("create.state"))
            .arg(&conf),
    );
    eprintln!("logrotate (create) printed:\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
    out.assert_failure("logrotate -f with create");
    assert!(
        out.stderr.contains(&log.display().to_string()) && out.stderr.contains("Operation not permitted"),
        "logrotate (create) should name the file and say EPERM: {out:#?}"
    );
    snap.assert_unchanged();
    assert_eq!(listing(), ["app.log"], "no rotated or new file may appear");

    // 2. copytruncate: copy to app.log.1, then truncate the original.
    let conf = m.scratch().join("copytruncate.conf");
    fs::write(&conf, format!("{} {{\n    daily\n    rotate 4\n    nocompress\n    copytruncate\n}}\n", log.display()))
        .unwrap();
    let out = run_cmd(
        Command::new("timeout")
            .args(["-k", "5", "30", LOGROTATE, "-f", "-s"])
            .arg(m.scratch().join("copytruncate.state"))
            .arg(&conf),
    );
    eprintln!("logrotate (copytruncate) printed:\nstdout: {}\nstderr: {}", out.stdout, out.stderr);
    out.assert_failure("logrotate -f with copytruncate");
    assert!(
        out.stderr.contains(&m.path("app").display().to_string()) && out.stderr.contains("Operation not permitted"),
        "logrotate (copytruncate) should name the file and say EPERM: {out:#?}"
    );
    snap.assert_unchanged();
    let names = listing();
    match names.as_slice() {
        [only] if only == "app.log" => eprintln!("copytruncate left no copy"),
        [a, b] if a == "app.log" && b == "app.log.1" => {
            // logrotate creates the copy first (O_CREAT|O_EXCL, mode 0600), then fails; what it
            // managed to copy before failing must be a prefix of the original, never other bytes.
            let copy = fs::read(m.backing("app/app.log.1")).unwrap();
            assert!(snap.bytes().starts_with(&copy), "app.log.1 is not a copy of app.log: {copy:?}");
            eprintln!(
                "copytruncate left app.log.1 ({} of {} bytes copied, mode {:o})",
                copy.len(),
                snap.len(),
                mode_of(&m.backing("app/app.log.1"))
            );
        }
        other => panic!("unexpected files after copytruncate: {other:?}"),
    }

    // The original still takes appends, and the chain checks out.
    m.assert_append_works("app/app.log");
    assert_verifies(&m);
}

// ---------------------------------------------------------------------------------------------
// Everyday writers
// ---------------------------------------------------------------------------------------------

#[test]
fn python_watched_file_handler_keeps_one_handle_and_every_record_in_order() {
    const RECORDS: usize = 5000;
    // No interval seals: a close (a reopen by the handler) would be the only source of a seal.
    let m = TestMount::builder().arg("--seal-interval").arg("1h").start();
    m.mkdir("py");
    let log = m.path("py/watched.log");
    // WatchedFileHandler stats the path before every record and reopens the file when the
    // device or inode differs from the open handle's (as after a rotation).
    let script = r#"
import logging, logging.handlers, sys
path, n = sys.argv[1], int(sys.argv[2])
handler = logging.handlers.WatchedFileHandler(path)
handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
opened = handler.stream
log = logging.getLogger("watched")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(n):
    log.info("record %05d of the watched handler", i)
    if handler.stream is not opened:
        sys.exit("WatchedFileHandler reopened the file at record %d" % i)
handler.close()
"#;
    let out = run_cmd(
        Command::new("timeout").args(["-k", "5", "60", "python3", "-c", script]).arg(&log).arg(RECORDS.to_string()),
    );
    out.assert_success("python WatchedFileHandler");
    let want: String = (0..RECORDS).map(|i| format!("INFO record {i:05} of the watched handler\n")).collect();
    let got = fs::read_to_string(m.backing("py/watched.log")).unwrap();
    assert!(got == want, "records missing, doubled or out of order ({} bytes, want {})", got.len(), want.len());
    assert_eq!(fs::read_to_string(&log).unwrap(), want, "mount view");
    wait_sealed_to(&m, "/py/watched.log", want.len() as u64);
    // One open handle, one close: one seal.
    assert_eq!(seals_for(&m.records(), "/py/watched.log"), [(0, want.len() as u64)]);
    assert_verifies(&m);
}

const C_WRITER: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 64;
    int fd = open(argv[1], O_CREAT | O_WRONLY | O_APPEND, 0644);
    if (fd < 0) { perror("open"); return 1; }
    long n = atol(argv[2]);
    char buf[64];
    for (long i = 0; i < n; i++) {
        int len = snprintf(buf, sizeof buf, "c line %05ld\n", i);
        ssize_t w = write(fd, buf, (size_t)len);
        if (w != len) { fprintf(stderr, "write %ld returned %zd\n", i, w); perror("write"); return 2; }
    }
    if (close(fd) != 0) { perror("close"); return 3; }
    return 0;
}
"#;

#[test]
fn c_program_with_o_append_and_20000_small_writes_loses_nothing_and_is_sealed_at_close() {
    const WRITES: usize = 20_000;
    require_in_path("cc", "gcc");
    let m = TestMount::builder().arg("--seal-interval").arg("1h").start();
    let src = m.scratch().join("writer.c");
    let bin = m.scratch().join("writer");
    fs::write(&src, C_WRITER).unwrap();
    run_cmd(Command::new("cc").args(["-O2", "-Wall", "-Werror", "-o"]).arg(&bin).arg(&src))
        .assert_success("cc writer.c");
    let out =
        run_cmd(Command::new("timeout").args(["-k", "5", "60"]).arg(&bin).arg(m.path("c.log")).arg(WRITES.to_string()));
    out.assert_success("C O_APPEND writer");
    let want: String = (0..WRITES).map(|i| format!("c line {i:05}\n")).collect();
    let got = fs::read_to_string(m.backing("c.log")).unwrap();
    assert!(got == want, "lines missing, doubled or out of order ({} bytes, want {})", got.len(), want.len());
    assert_eq!(mode_of(&m.backing("c.log")), 0o644);
    wait_sealed_to(&m, "/c.log", want.len() as u64);
    assert_eq!(seals_for(&m.records(), "/c.log"), [(0, want.len() as u64)], "one handle, one close: one seal");
    assert_verifies(&m);
}

#[test]
fn shell_append_redirection_500_times_gives_500_seals() {
    const LINES: usize = 500;
    let m = TestMount::builder().arg("--seal-interval").arg("1h").start();
    let out = run(&format!("cd {} && for i in $(seq {LINES}); do echo line $i >> f; done", q(m.mnt())));
    out.assert_success("sh >> loop");
    let lines: Vec<String> = (1..=LINES).map(|i| format!("line {i}\n")).collect();
    let want = lines.concat();
    assert_eq!(fs::read_to_string(m.backing("f")).unwrap(), want);
    // Each `>>` is open, one write, close: each close seals exactly that line.
    wait_sealed_to(&m, "/f", want.len() as u64);
    let mut expected = Vec::new();
    let mut at = 0u64;
    for l in &lines {
        expected.push((at, at + l.len() as u64));
        at += l.len() as u64;
    }
    let records = m.records();
    let seals = seals_for(&records, "/f");
    let merged: Vec<_> = seals.iter().filter(|s| !expected.contains(s)).collect();
    assert_eq!(
        seals.len(),
        LINES,
        "one Seal per `>>` (open, append, close); {} seals cover more than one line, e.g. {:?}",
        merged.len(),
        &merged[..merged.len().min(8)]
    );
    assert_eq!(seals, expected, "each seal covers exactly one appended line");
    let kinds: Vec<_> = records.iter().filter(|r| r["path"] == "/f").map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "Create").count(), 1, "{kinds:?}");
    assert!(kinds.iter().all(|k| *k == "Create" || *k == "Seal"), "{kinds:?}");
    assert_verifies(&m);
}

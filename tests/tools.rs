//! Everyday tools against the mount: what works for log writers, and what must fail without
//! touching a byte.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use libc::{EOPNOTSUPP, EPERM};

// ---------------------------------------------------------------------------------------------
// What must work
// ---------------------------------------------------------------------------------------------

#[test]
fn echo_append_redirection_appends() {
    let tm = TestMount::start();
    let f = q(tm.path("app.log"));
    run(&format!("echo one >> {f} && echo two >> {f} && echo three >> {f}")).assert_success("echo >>");
    assert_eq!(fs::read_to_string(tm.backing("app.log")).unwrap(), "one\ntwo\nthree\n");
}

#[test]
fn printf_into_a_new_file_creates_it_but_cannot_clobber_it() {
    let tm = TestMount::start();
    let f = q(tm.path("new.log"));
    run(&format!("printf 'hello\\n' > {f}")).assert_success("printf > newfile");
    assert_eq!(fs::read_to_string(tm.backing("new.log")).unwrap(), "hello\n");

    // `>` on the now non-empty file means O_TRUNC: refused, nothing lost.
    tm.assert_tool_refused("new.log", EPERM, "printf > existing file", || run(&format!("printf 'clobber\\n' > {f}")));
}

#[test]
fn tee_a_appends() {
    let tm = TestMount::start();
    tm.create("app.log", b"first\n");
    let out = run(&format!("echo second | tee -a {}", q(tm.path("app.log"))));
    out.assert_success("tee -a");
    assert_eq!(out.stdout, "second\n");
    assert_eq!(fs::read_to_string(tm.backing("app.log")).unwrap(), "first\nsecond\n");
}

#[test]
fn cat_reads_through_the_mount() {
    let tm = TestMount::start();
    tm.create("app.log", b"line 1\nline 2\n");
    let out = run(&format!("cat {}", q(tm.path("app.log"))));
    out.assert_success("cat");
    assert_eq!(out.stdout, "line 1\nline 2\n");
}

#[test]
fn cp_of_a_multi_megabyte_file_is_byte_identical() {
    let tm = TestMount::start();
    // Not a multiple of any block size, and no zero runs (so cp cannot make holes).
    let content = pseudo_random_bytes(5 * 1024 * 1024 + 12_345, 0x5eed);
    let src = tm.scratch().join("big.bin");
    fs::write(&src, &content).unwrap();

    run(&format!("cp {} {}", q(&src), q(tm.path("big.bin")))).assert_success("cp into mount");
    assert!(fs::read(tm.backing("big.bin")).unwrap() == content, "backing bytes differ");
    assert!(fs::read(tm.path("big.bin")).unwrap() == content, "bytes via mount differ");
    run(&format!("cmp {} {}", q(&src), q(tm.path("big.bin")))).assert_success("cmp");
}

#[test]
fn cp_onto_an_existing_non_empty_file_fails() {
    let tm = TestMount::start();
    tm.create("app.log", b"original\n");
    let src = tm.scratch().join("other");
    fs::write(&src, "replacement\n").unwrap();

    tm.assert_tool_refused("app.log", EPERM, "cp over file", || {
        run(&format!("cp {} {}", q(&src), q(tm.path("app.log"))))
    });
}

#[test]
fn truncate_tool_to_the_current_size_succeeds() {
    let tm = TestMount::start();
    tm.create("app.log", b"0123456789\n");
    let snap = Snapshot::of(tm.backing("app.log"));
    run(&format!("truncate -s 11 {}", q(tm.path("app.log")))).assert_success("truncate -s size");
    snap.assert_unchanged();
}

#[test]
fn dd_with_oflag_append_appends() {
    let tm = TestMount::start();
    tm.create("app.log", b"head\n");
    let src = tm.scratch().join("src");
    fs::write(&src, "appended by dd\n").unwrap();
    run(&format!("dd if={} of={} conv=notrunc oflag=append status=none", q(&src), q(tm.path("app.log"))))
        .assert_success("dd oflag=append");
    assert_eq!(fs::read_to_string(tm.backing("app.log")).unwrap(), "head\nappended by dd\n");
}

#[test]
fn chmod_chown_and_touch_d_work() {
    let tm = TestMount::start();
    tm.create("app.log", b"x\n");
    let snap = Snapshot::of(tm.backing("app.log"));
    let f = q(tm.path("app.log"));
    run(&format!("chmod 600 {f} && chown 1234:5678 {f} && touch -d '2001-02-03 04:05:06 UTC' {f}"))
        .assert_success("chmod/chown/touch -d");

    let m = fs::metadata(tm.backing("app.log")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(m.mtime(), 981_173_106, "mtime of 2001-02-03 04:05:06 UTC");
    snap.assert_unchanged();
}

#[test]
fn python_logging_file_handler_appends_records_in_order() {
    let tm = TestMount::start();
    let log = tm.path("py/app.log");
    tm.mkdir("py");
    // Two separate runs: the second must append after the first, never clobber it.
    let script = r#"
import logging, sys
handler = logging.FileHandler(sys.argv[1])  # mode 'a'
handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
log = logging.getLogger("t")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[2]), int(sys.argv[3])):
    log.info("record %d", i)
handler.close()
"#;
    for (from, to) in [(0, 25), (25, 50)] {
        let out =
            run_cmd(Command::new("python3").args(["-c", script]).arg(&log).arg(from.to_string()).arg(to.to_string()));
        out.assert_success("python logging");
    }
    let want: String = (0..50).map(|i| format!("INFO record {i}\n")).collect();
    assert_eq!(fs::read_to_string(tm.backing("py/app.log")).unwrap(), want);
}

/// Follow `args` (a `tail` invocation) while another process appends 60 lines one by one;
/// the follower must print every line, in order, with no NUL bytes.
fn follow_while_appending(tail_args: &[&str]) {
    let tm = TestMount::start();
    let path = tm.create("follow.log", b"line 0\n");

    let mut tail = Command::new("tail");
    tail.args(tail_args).arg(&path).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut tail = KillOnDrop(tail.spawn().unwrap());
    let mut stdout = tail.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let writer = Command::new("sh")
        .arg("-c")
        .arg(format!("i=1; while [ $i -lt 60 ]; do echo \"line $i\" >> {}; i=$((i+1)); sleep 0.01; done", q(&path)))
        .spawn()
        .unwrap();
    let mut writer = KillOnDrop(writer);

    let want: String = (0..60).map(|i| format!("line {i}\n")).collect();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < want.len() && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(chunk);
        }
    }
    assert!(writer.0.wait().unwrap().success(), "writer failed");
    assert!(!seen.contains(&0), "tail saw NUL bytes: {:?}", String::from_utf8_lossy(&seen));
    assert_eq!(String::from_utf8_lossy(&seen), want, "what tail printed");
    assert_eq!(fs::read_to_string(tm.backing("follow.log")).unwrap(), want);
    drop(tail); // stop following before the mount goes away
}

#[test]
fn tail_capital_f_sees_every_appended_line() {
    follow_while_appending(&["-n", "+1", "-s", "0.05", "-F"]);
}

#[test]
fn tail_f_sees_every_appended_line() {
    follow_while_appending(&["-n", "+1", "-s", "0.05", "-f"]);
}

#[test]
fn concurrent_o_append_writers_lose_and_tear_nothing() {
    const LINES: usize = 2000;
    let tm = TestMount::start();
    let path = tm.path("shared.log");
    tm.create("shared.log", b"");
    // Each line is one write(2) on an O_APPEND fd; lengths vary so a torn or misplaced write
    // shows up as a malformed line. The writers start together (after both report ready) so
    // their writes really overlap instead of one finishing during the other's start-up.
    let script = r#"
import os, sys, time
path, tag, scratch = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
open(os.path.join(scratch, "ready-" + tag), "w").close()
while not os.path.exists(os.path.join(scratch, "go")):
    time.sleep(0.001)
for i in range(__LINES__):
    os.write(fd, f"{tag} {i:04d} {tag * (i % 40)}\n".encode())
os.close(fd)
"#
    .replace("__LINES__", &LINES.to_string());
    let writers: Vec<_> = ["A", "B"]
        .iter()
        .map(|tag| {
            let mut cmd = Command::new("python3");
            cmd.args(["-c", &script]).arg(&path).arg(tag).arg(tm.scratch());
            KillOnDrop(cmd.spawn().unwrap())
        })
        .collect();
    let ready = |t: &str| tm.scratch().join(format!("ready-{t}")).exists();
    assert!(wait_until(Duration::from_secs(10), || ready("A") && ready("B")), "writers not ready");
    fs::write(tm.scratch().join("go"), "").unwrap();
    for mut w in writers {
        assert!(w.0.wait().unwrap().success(), "writer failed");
    }

    let line = |tag: &str, i: usize| format!("{tag} {i:04} {}\n", tag.repeat(i % 40));
    let expected_len: usize = ["A", "B"].iter().map(|t| (0..LINES).map(|i| line(t, i).len()).sum::<usize>()).sum();
    let content = fs::read_to_string(tm.backing("shared.log")).unwrap();
    assert_eq!(content.len(), expected_len, "total size = sum of all lines");

    // Every line intact, and each writer's lines appear complete and in its own order.
    let mut next = [0usize; 2];
    let mut switches = 0; // how often the writer changed: evidence the writes overlapped
    let mut last = "";
    for l in content.lines() {
        let tag = l.get(..1).unwrap_or("");
        let w = match tag {
            "A" => 0,
            "B" => 1,
            _ => panic!("malformed line {l:?}"),
        };
        assert_eq!(format!("{l}\n"), line(tag, next[w]), "torn or out-of-order line");
        next[w] += 1;
        switches += usize::from(!last.is_empty() && last != tag);
        last = tag;
    }
    assert_eq!(next, [LINES, LINES], "lines per writer");
    eprintln!("writers alternated {switches} times");
}

#[test]
fn files_written_through_the_mount_read_fine_with_tools_in_data_dir() {
    let tm = TestMount::start();
    run(&format!("seq 1 1000 >> {}", q(tm.path("numbers.log")))).assert_success("seq >>");
    let out = run(&format!("wc -l < {} && tail -n 1 {}", q(tm.backing("numbers.log")), q(tm.backing("numbers.log"))));
    out.assert_success("wc/tail in DATA_DIR");
    assert_eq!(out.stdout, "1000\n1000\n");
}

// ---------------------------------------------------------------------------------------------
// What must fail, leaving every byte in place
// ---------------------------------------------------------------------------------------------

#[test]
fn mv_fails_and_leaves_the_file_in_place() {
    let tm = TestMount::start();
    tm.create("app.log", b"data\n");
    tm.mkdir("archive");
    let f = q(tm.path("app.log"));

    tm.assert_tool_refused("app.log", EPERM, "mv rename", || run(&format!("mv {f} {}", q(tm.path("app.log.1")))));
    tm.assert_tool_refused("app.log", EPERM, "mv into dir", || run(&format!("mv {f} {}", q(tm.path("archive")))));
    assert_absent(tm.backing("app.log.1"));
    assert_absent(tm.backing("archive/app.log"));
}

#[test]
fn rm_fails_and_leaves_files_in_place() {
    let tm = TestMount::start();
    tm.create("app.log", b"data\n");
    tm.mkdir("dir");
    tm.create("dir/inner.log", b"inner\n");
    let inner = Snapshot::of(tm.backing("dir/inner.log"));

    tm.assert_tool_refused("app.log", EPERM, "rm", || run(&format!("rm {}", q(tm.path("app.log")))));
    tm.assert_tool_refused("app.log", EPERM, "rm -f", || run(&format!("rm -f {}", q(tm.path("app.log")))));
    tm.assert_tool_refused("app.log", EPERM, "rm -rf dir", || run(&format!("rm -rf {}", q(tm.path("dir")))));
    inner.assert_unchanged();
}

#[test]
fn truncate_tool_cannot_shrink_or_grow() {
    let tm = TestMount::start();
    tm.create("app.log", b"0123456789\n");
    let f = q(tm.path("app.log"));
    for size in ["0", "+10", "-1", "5", "1M"] {
        tm.assert_tool_refused("app.log", EPERM, &format!("truncate -s {size}"), || {
            run(&format!("truncate -s {size} {f}"))
        });
    }
}

#[test]
fn dd_overwrite_in_place_fails() {
    let tm = TestMount::start();
    tm.create("app.log", b"0123456789\n");
    let src = tm.scratch().join("evil");
    fs::write(&src, "EVIL").unwrap();
    let f = q(tm.path("app.log"));

    tm.assert_tool_refused("app.log", EPERM, "dd overwrite at 0", || {
        run(&format!("dd if={} of={f} conv=notrunc seek=0 status=none", q(&src)))
    });
    tm.assert_tool_refused("app.log", EPERM, "dd overwrite at 3", || {
        run(&format!("dd if={} of={f} conv=notrunc bs=1 seek=3 status=none", q(&src)))
    });
    tm.assert_tool_refused("app.log", EPERM, "dd with truncation", || {
        run(&format!("dd if={} of={f} status=none", q(&src)))
    });
}

#[test]
fn ln_ln_s_and_mkfifo_fail() {
    let tm = TestMount::start();
    tm.create("app.log", b"data\n");
    let f = q(tm.path("app.log"));

    tm.assert_tool_refused("app.log", EPERM, "ln", || run(&format!("ln {f} {}", q(tm.path("hard")))));
    tm.assert_tool_refused("app.log", EPERM, "ln -s", || run(&format!("ln -s {f} {}", q(tm.path("soft")))));
    tm.assert_tool_refused("app.log", EPERM, "mkfifo", || run(&format!("mkfifo {}", q(tm.path("fifo")))));
    for name in ["hard", "soft", "fifo"] {
        assert_absent(tm.backing(name));
    }
}

#[test]
fn sed_in_place_edit_fails_and_leaves_the_file_unchanged() {
    // sed -i writes a temporary copy and renames it over the original: the rename is refused.
    let tm = TestMount::start();
    tm.create("app.log", b"password=hunter2\n");
    tm.assert_tool_refused("app.log", EPERM, "sed -i", || {
        run(&format!("sed -i s/hunter2/xxxxxxx/ {}", q(tm.path("app.log"))))
    });
}

#[test]
fn chattr_fails_and_changes_no_flag_on_the_backing_file() {
    let tm = TestMount::start();
    tm.create("app.log", b"data\n");
    // Sealed and closed: wormfs made the backing file immutable. chattr through the mount can
    // neither clear that nor add its own.
    // (Set when the kernel releases the last handle, a moment after close(2) returns.)
    assert!(wait_until(Duration::from_secs(5), || lsattr(tm.backing("app.log")).contains('i')));
    tm.assert_tool_refused("app.log", EOPNOTSUPP, "chattr -i", || run(&format!("chattr -i {}", q(tm.path("app.log")))));
    tm.assert_tool_refused("app.log", EOPNOTSUPP, "chattr +a", || run(&format!("chattr +a {}", q(tm.path("app.log")))));
    // The file flag ioctls are not passed through (ENOTTY), which e2fsprogs reports as
    // "Operation not supported".
    tm.assert_tool_refused("app.log", EOPNOTSUPP, "chattr +i", || run(&format!("chattr +i {}", q(tm.path("app.log")))));
    tm.assert_tool_refused("app.log", EOPNOTSUPP, "lsattr", || run(&format!("lsattr {}", q(tm.path("app.log")))));
    let flags = lsattr(tm.backing("app.log"));
    assert!(flags.contains('i') && !flags.contains('a'), "the backing file's flags are wormfs' own: {flags}");
}

// ---------------------------------------------------------------------------------------------
// Refusals are logged
// ---------------------------------------------------------------------------------------------

/// Whether `line` contains `pid N` with exactly that number.
fn mentions_pid(line: &str, pid: u32) -> bool {
    let needle = format!("pid {pid}");
    line.match_indices(&needle).any(|(i, _)| !line[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

#[test]
fn refused_unlink_is_logged_with_operation_path_and_pid() {
    let tm = TestMount::builder().arg("--verbose").start();
    tm.create("victim-unlink.log", b"data\n");

    // Run rm directly (no shell) so its pid is the caller wormfs sees.
    let mut rm = Command::new("rm").arg(tm.path("victim-unlink.log")).stderr(Stdio::null()).spawn().unwrap();
    let pid = rm.id();
    assert!(!rm.wait().unwrap().success(), "rm must fail");

    let line =
        tm.wait_for_log_line(Duration::from_secs(3), |l| l.contains("refused") && l.contains("victim-unlink.log"));
    let Some(line) = line else {
        panic!("no 'refused' log line naming the file\n--- daemon stderr ---\n{}", tm.log());
    };
    assert!(line.to_lowercase().contains("unlink"), "operation missing: {line}");
    assert!(mentions_pid(&line, pid), "caller pid {pid} missing: {line}");
}

#[test]
fn refused_rename_is_logged_at_info_level() {
    // Plain RUST_LOG=info, no --verbose: refusals are info-level events.
    let tm = TestMount::builder().env("RUST_LOG", "info").start();
    tm.create("victim-rename.log", b"data\n");

    let mut mv = Command::new("mv")
        .arg(tm.path("victim-rename.log"))
        .arg(tm.path("renamed.log"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = mv.id();
    assert!(!mv.wait().unwrap().success(), "mv must fail");

    let line =
        tm.wait_for_log_line(Duration::from_secs(3), |l| l.contains("refused") && l.contains("victim-rename.log"));
    let Some(line) = line else {
        panic!("no 'refused' log line naming the file\n--- daemon stderr ---\n{}", tm.log());
    };
    assert!(line.to_lowercase().contains("rename"), "operation missing: {line}");
    assert!(line.contains("INFO"), "expected an info-level line: {line}");
    assert!(mentions_pid(&line, pid), "caller pid {pid} missing: {line}");
}

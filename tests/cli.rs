//! The command line as an admin meets it: commands that find their directories the way the
//! unit does (flag, environment, /etc/default/wormfs), and output into a pipe that closes early.

mod common;

use std::fs;
use std::process::Command;

use common::{run_cmd, TestMount, WORMFS};

/// `wormfs ARGS` with no directory in its environment, reading `env_file` as /etc/default/wormfs.
fn bare(args: &[&str], env_file: &std::path::Path) -> Command {
    let mut cmd = Command::new(WORMFS);
    cmd.args(args)
        .env_remove("WORMFS_STATE")
        .env_remove("WORMFS_DATA")
        .env("WORMFS_ENV_FILE", env_file)
        .env_remove("RUST_LOG");
    cmd
}

#[test]
fn commands_find_their_directories_as_the_unit_does() {
    let mut m = TestMount::start();
    m.create("a.log", b"one line\n");
    m.stop();
    let state = m.state().to_str().unwrap().to_string();
    let data = m.data().to_str().unwrap().to_string();
    let none = m.scratch().join("no-such-file");

    // Nothing names the state directory: a usage error that says what to set.
    let out = run_cmd(&mut bare(&["log"], &none));
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("no state directory given: pass --state, or set WORMFS_STATE"), "{}", out.stderr);
    assert!(out.stderr.contains(none.to_str().unwrap()), "the message names the file it read: {}", out.stderr);

    // The environment.
    let out = run_cmd(bare(&["log"], &none).env("WORMFS_STATE", &state));
    out.assert_success("log with WORMFS_STATE");
    assert!(out.stdout.contains("Create") && out.stdout.contains("/a.log"), "{}", out.stdout);

    // The defaults file, as the unit and the verify script read it (comments, quotes, the last
    // assignment wins).
    let file = m.scratch().join("wormfs.default");
    let text = format!("# test\nWORMFS_STATE=/nowhere\nWORMFS_STATE=\"{state}\"\nWORMFS_DATA={data}\n");
    fs::write(&file, text).unwrap();
    let out = run_cmd(&mut bare(&["status"], &file));
    out.assert_success("status from the defaults file");
    let out = run_cmd(&mut bare(&["verify"], &file));
    assert_eq!(out.status.code(), Some(0), "verify from the defaults file: {out:#?}");
    assert!(out.stdout.contains("INTACT"), "{}", out.stdout);

    // A flag still wins over both.
    let out = run_cmd(bare(&["log", "--state", "/nowhere"], &file).env("WORMFS_STATE", &state));
    assert_ne!(out.status.code(), Some(0), "the flag was ignored: {out:#?}");
}

#[test]
fn output_into_a_pipe_that_closes_ends_quietly() {
    let mut m = TestMount::start();
    // Enough records that `log` fills the pipe long after `head` has gone.
    let script = format!("cd {} && for i in $(seq 1 400); do echo x > f$i.log; done", common::q(m.mnt()));
    common::run(&script).assert_success("create files");
    m.stop();
    let err = m.scratch().join("stderr");
    let script = format!(
        "{} log --state {} 2>{} | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
        common::q(WORMFS),
        common::q(m.state()),
        common::q(&err)
    );
    let out = run_cmd(Command::new("bash").args(["-c", &script]));
    out.assert_success("the pipeline");
    assert_eq!(out.stdout.trim(), "141", "killed by SIGPIPE, as a Unix tool is");
    assert_eq!(fs::read_to_string(&err).unwrap(), "", "nothing on stderr");
}

#[test]
fn status_shows_the_daemons_live_figures_while_mounted() {
    let mut m = TestMount::start();
    m.append("a.log", b"one\n");
    m.append("a.log", b"two\n");
    // Right after the writes: the metrics file is up to 5 s old, the daemon knows now.
    let out = run_cmd(&mut m.wormfs_cmd(&["status"]));
    out.assert_success("status while mounted");
    assert!(out.stdout.contains("metrics (live, from the running daemon):"), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.trim() == "wormfs_writes_total 2"), "{}", out.stdout);
    // Unmounted, it says it shows the file, and how old it is.
    m.stop();
    let out = run_cmd(&mut m.wormfs_cmd(&["status"]));
    out.assert_success("status unmounted");
    assert!(out.stdout.contains("metrics (the file ") && out.stdout.contains(" s ago"), "{}", out.stdout);
}

#[test]
fn status_says_where_it_looked_for_a_metrics_file_the_mount_writes_elsewhere() {
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("wormfs.prom");
    let mut m = TestMount::builder().arg("--metrics-file").arg(&file).start();
    m.append("a.log", b"one\n");
    assert!(common::wait_until(std::time::Duration::from_secs(10), || file.exists()), "no {}", file.display());
    m.stop();
    let out = run_cmd(&mut m.wormfs_cmd(&["status"]));
    out.assert_success("status unmounted");
    let default = m.state().join("metrics.prom");
    assert!(
        out.stdout.contains(&format!("metrics: none at {}", default.display()))
            && out.stdout.contains("--metrics-file"),
        "{}",
        out.stdout
    );
    let out = run_cmd(m.wormfs_cmd(&["status"]).arg("--metrics-file").arg(&file));
    out.assert_success("status --metrics-file");
    assert!(out.stdout.contains(&format!("metrics (the file {}", file.display())), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.trim() == "wormfs_writes_total 1"), "{}", out.stdout);
}

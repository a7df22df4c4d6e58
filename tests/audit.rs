//! `--audit-reads`: every open for reading through the mount leaves an Access record naming who
//! read the file, so "who read the evidence" is itself evidence.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;

use common::*;

fn accesses(m: &TestMount) -> Vec<serde_json::Value> {
    m.records().into_iter().filter(|r| r["kind"] == "Access").collect()
}

#[test]
fn reads_are_recorded_with_uid_pid_and_command() {
    let m = TestMount::builder().arg("--audit-reads").arg("--allow-other").start();
    fs::write(m.path("evidence.log"), b"secret\n").unwrap();
    assert!(accesses(&m).is_empty(), "creating and writing is not reading");
    let out = run(&format!("cat {}", q(m.path("evidence.log"))));
    out.assert_success("cat");
    assert_eq!(out.stdout, "secret\n");
    let out = run_as(1000, 1000, &format!("head -c 3 {} >/dev/null; true", q(m.path("evidence.log"))));
    out.assert_success("head as uid 1000");
    let a = accesses(&m);
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_eq!(a[0]["path"], "/evidence.log");
    assert_eq!(a[0]["command"], "cat");
    assert_eq!(a[0]["uid"], 0);
    assert!(a[0]["pid"].as_u64().unwrap() > 0);
    assert_eq!(a[1]["command"], "head");
    assert_eq!(a[1]["uid"], 1000);
    // A write-only open is not a read.
    let mut f = OpenOptions::new().append(true).open(m.path("evidence.log")).unwrap();
    f.write_all(b"more\n").unwrap();
    drop(f);
    assert_eq!(accesses(&m).len(), 2);
    // Access records are part of the signed chain like any other.
    let mut verify = std::process::Command::new(WORMFS);
    verify.args(["verify", "--data"]).arg(m.data()).arg("--state").arg(m.state());
    assert_eq!(run_cmd(&mut verify).status.code(), Some(0));
}

#[test]
fn without_the_flag_reads_leave_no_record() {
    let m = TestMount::start();
    fs::write(m.path("a.log"), b"x\n").unwrap();
    run(&format!("cat {} >/dev/null", q(m.path("a.log")))).assert_success("cat");
    assert!(accesses(&m).is_empty());
}

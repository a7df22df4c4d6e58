//! The metrics people alert on, as a Prometheus text file the daemon rewrites every few seconds,
//! and as written by `wormfs verify --metrics-file`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

/// `name{labels}` -> value, from a Prometheus text file.
fn parse(path: &Path) -> BTreeMap<String, f64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap())))
        .collect()
}

#[test]
fn the_daemon_exports_writes_refusals_seals_and_unsealed_bytes() {
    let m = TestMount::builder().arg("--seal-interval").arg("1h").start();
    let file = m.state().join("metrics.prom");
    fs::write(m.path("a.log"), b"0123456789").unwrap();
    assert!(fs::remove_file(m.path("a.log")).is_err());
    // Held open by another process, as a logger would.
    let holder = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, time\nf = open(sys.argv[1], 'a')\nf.write('not sealed yet')\nf.flush()\ntime.sleep(60)\n")
        .arg(m.path("open.log"))
        .spawn()
        .unwrap();
    let _holder = KillOnDrop(holder);
    let ok = wait_until(Duration::from_secs(8), || {
        let v = parse(&file);
        v.get("wormfs_unsealed_bytes") == Some(&14.0) && v.get("wormfs_refused_total{op=\"unlink\"}") == Some(&1.0)
    });
    let v = parse(&file);
    assert!(ok, "metrics never showed the state: {v:#?}\n{:#?}", m.records());
    assert_eq!(v["wormfs_writes_total"], 2.0);
    assert_eq!(v["wormfs_appended_bytes_total"], 24.0);
    assert_eq!(v["wormfs_seals_total"], 1.0);
    assert_eq!(v["wormfs_seal_duration_seconds_count"], 1.0);
    assert_eq!(v["wormfs_seal_duration_seconds_bucket{le=\"+Inf\"}"], 1.0);
    assert_eq!(v["wormfs_open_files"], 1.0);
    assert!(v["wormfs_oldest_unsealed_seconds"] > 0.0);
    assert!(v["wormfs_chain_head_seq"] >= 4.0);
    // No temporary file is left beside it (written whole, then renamed).
    let leftovers: Vec<_> = fs::read_dir(m.state())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    // status shows them.
    let out = run_cmd(&mut m.wormfs_cmd(&["status"]));
    assert!(out.stdout.contains("wormfs_unsealed_bytes 14"), "{}", out.stdout);
}

#[test]
fn verify_writes_its_verdict_for_the_textfile_collector() {
    let mut m = TestMount::start();
    fs::write(m.path("a.log"), b"x\n").unwrap();
    m.stop();
    let out_file = m.scratch().join("verify.prom");
    let mut cmd = m.wormfs_cmd(&["verify"]);
    cmd.arg("--data").arg(m.data()).arg("--metrics-file").arg(&out_file);
    assert_eq!(run_cmd(&mut cmd).status.code(), Some(0));
    let v = parse(&out_file);
    assert_eq!(v["wormfs_verify_intact"], 1.0);
    assert_eq!(v["wormfs_verify_findings"], 0.0);
    assert_eq!(v["wormfs_verify_bytes_checked"], 2.0);
    unprotect(m.backing("a.log"));
    fs::write(m.backing("a.log"), b"y\n").unwrap();
    let mut cmd = m.wormfs_cmd(&["verify"]);
    cmd.arg("--data").arg(m.data()).arg("--metrics-file").arg(&out_file);
    assert_eq!(run_cmd(&mut cmd).status.code(), Some(1));
    let v = parse(&out_file);
    assert_eq!(v["wormfs_verify_intact"], 0.0);
    assert_eq!(v["wormfs_verify_findings"], 1.0);
}

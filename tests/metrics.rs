//! The metrics people alert on, as a Prometheus text file the daemon rewrites every few seconds,
//! and as written by `wormfs verify --metrics-file`; checked with Debian's promtool, served by
//! its prometheus-node-exporter, and the shipped alert rules tested with promtool.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::debian_tools::{promtool, NodeExporter};
use common::*;

/// `name{labels}` -> value, from a Prometheus text file.
fn parse(path: &Path) -> BTreeMap<String, f64> {
    parse_text(&fs::read_to_string(path).unwrap_or_default())
}

/// `name{labels}` -> value, from Prometheus text.
fn parse_text(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap())))
        .collect()
}

#[test]
fn the_daemon_exports_writes_refusals_seals_and_unsealed_bytes() {
    let (m, _holder) = busy_mount(None);
    let file = m.state().join("metrics.prom");
    let v = parse(&file);
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

// ---------------------------------------------------------------------------------------------
// Debian's Prometheus tools: promtool and prometheus-node-exporter
// ---------------------------------------------------------------------------------------------

/// The alert rules shipped for admins, and promtool's unit tests of them.
const ALERT_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/wormfs-alerts.rules.yml");
const ALERT_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/prometheus/wormfs-alerts.test.yml");

/// `promtool check metrics` with `text` on its stdin.
fn promtool_check_metrics(text: &str) -> RunOutput {
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    RunOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn assert_lints_clean(what: &str, text: &str) {
    let out = promtool_check_metrics(text);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics on {what}: {}\n{}{}\n{text}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// A mount with something in every family of series: writes, a refusal, a seal, a file held
/// open with unsealed bytes (by another process, as a logger would). Its metrics file is
/// `metrics_file` (default STATE_DIR/metrics.prom).
fn busy_mount(metrics_file: Option<&Path>) -> (TestMount, KillOnDrop) {
    let mut builder = TestMount::builder().arg("--seal-interval").arg("1h");
    if let Some(file) = metrics_file {
        builder = builder.arg("--metrics-file").arg(file);
    }
    let m = builder.start();
    let default = m.state().join("metrics.prom");
    let metrics_file = metrics_file.unwrap_or(&default);
    fs::write(m.path("a.log"), b"0123456789").unwrap();
    assert!(fs::remove_file(m.path("a.log")).is_err());
    let holder = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, time\nf = open(sys.argv[1], 'a')\nf.write('not sealed yet')\nf.flush()\ntime.sleep(60)\n")
        .arg(m.path("open.log"))
        .spawn()
        .unwrap();
    let holder = KillOnDrop(holder);
    let ok = wait_until(Duration::from_secs(10), || {
        let v = parse(metrics_file);
        v.get("wormfs_seals_total") == Some(&1.0)
            && v.get("wormfs_unsealed_bytes") == Some(&14.0)
            && v.get("wormfs_refused_total{op=\"unlink\"}") == Some(&1.0)
    });
    assert!(ok, "metrics never showed the state: {:#?}\n{:#?}", parse(metrics_file), m.records());
    (m, holder)
}

/// `wormfs verify` of the mount `m` (while mounted, as the daily timer runs it), its verdict
/// written to `metrics_file`.
fn verify_into(m: &TestMount, metrics_file: &Path) -> RunOutput {
    let mut cmd = m.wormfs_cmd(&["verify"]);
    cmd.arg("--data").arg(m.data()).arg("--metrics-file").arg(metrics_file);
    run_cmd(&mut cmd)
}

#[test]
fn promtool_finds_nothing_to_lint_in_the_daemons_and_verifys_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let daemon_file = dir.path().join("wormfs.prom");
    let (m, _holder) = busy_mount(Some(&daemon_file));
    assert_lints_clean("the daemon's metrics file", &fs::read_to_string(&daemon_file).unwrap());

    let verify_file = dir.path().join("wormfs_verify.prom");
    assert_eq!(verify_into(&m, &verify_file).status.code(), Some(0));
    assert_lints_clean("verify's metrics file (intact)", &fs::read_to_string(&verify_file).unwrap());
    unprotect(m.backing("a.log"));
    fs::write(m.backing("a.log"), b"9876543210").unwrap();
    assert_eq!(verify_into(&m, &verify_file).status.code(), Some(1));
    let tampered = fs::read_to_string(&verify_file).unwrap();
    assert!(tampered.contains("wormfs_verify_intact 0"), "{tampered}");
    assert_lints_clean("verify's metrics file (tampering found)", &tampered);

    // promtool does lint: a series without HELP, or a malformed line, fails it.
    assert!(!promtool_check_metrics("# TYPE wormfs_x gauge\nwormfs_x 1\n").status.success());
    assert!(!promtool_check_metrics("wormfs_x{ 1\n").status.success());
}

#[test]
fn the_shipped_alert_rules_pass_promtool_and_fire_in_its_rule_tests() {
    let out = run_cmd(promtool().args(["check", "rules", ALERT_RULES]));
    out.assert_success("promtool check rules systemd/wormfs-alerts.rules.yml");
    assert!(out.stdout.contains("SUCCESS: 10 rules found"), "{}", out.stdout);
    let tests_dir = Path::new(ALERT_TESTS).parent().unwrap();
    let out = run_cmd(promtool().args(["test", "rules", ALERT_TESTS]).current_dir(tests_dir));
    out.assert_success("promtool test rules tests/prometheus/wormfs-alerts.test.yml");

    // The rule tests can fail: with the tampering alert's threshold raised, they do.
    let rules = fs::read_to_string(ALERT_RULES).unwrap();
    let weakened = rules.replace("expr: wormfs_verify_findings > 0", "expr: wormfs_verify_findings > 5");
    assert_ne!(weakened, rules);
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("systemd")).unwrap();
    fs::create_dir_all(dir.path().join("tests/prometheus")).unwrap();
    fs::write(dir.path().join("systemd/wormfs-alerts.rules.yml"), weakened).unwrap();
    fs::copy(ALERT_TESTS, dir.path().join("tests/prometheus/wormfs-alerts.test.yml")).unwrap();
    let out = run_cmd(
        promtool().args(["test", "rules", "wormfs-alerts.test.yml"]).current_dir(dir.path().join("tests/prometheus")),
    );
    out.assert_failure("promtool test rules with a weakened rule");
    assert!(
        out.stdout.contains("WormfsTamperingFound") || out.stderr.contains("WormfsTamperingFound"),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // The README lists every alert the file defines.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for name in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(readme.contains(name), "README does not mention alert {name}");
    }
}

#[test]
fn node_exporter_serves_the_wormfs_series_the_daemon_and_verify_wrote() {
    let textfiles = tempfile::tempdir().unwrap();
    let daemon_file = textfiles.path().join("wormfs.prom");
    let (m, _holder) = busy_mount(Some(&daemon_file));
    let exporter = NodeExporter::start(textfiles.path(), m.scratch().join("node-exporter.log"));

    // The daemon rewrites its file every 5 s (the timestamp and the unsealed age move): compare
    // a scrape with the file as it was both before and after it.
    let mut compared = false;
    for _ in 0..20 {
        let before = fs::read_to_string(&daemon_file).unwrap();
        let scraped = exporter.scrape();
        if fs::read_to_string(&daemon_file).unwrap() != before {
            continue;
        }
        assert_serves(&before, &scraped);
        let served = parse_text(&scraped);
        assert_eq!(served.get("node_textfile_scrape_error"), Some(&0.0), "{scraped}");
        assert_eq!(served["wormfs_writes_total"], 2.0);
        assert_eq!(served["wormfs_refused_total{op=\"unlink\"}"], 1.0);
        assert_eq!(served["wormfs_unsealed_bytes"], 14.0);
        compared = true;
        break;
    }
    assert!(compared, "the metrics file changed during every scrape");

    let verify_file = textfiles.path().join("wormfs_verify.prom");
    assert_eq!(verify_into(&m, &verify_file).status.code(), Some(0));
    let scraped = exporter.scrape();
    assert_serves(&fs::read_to_string(&verify_file).unwrap(), &scraped);
    let served = parse_text(&scraped);
    assert_eq!(served["wormfs_verify_intact"], 1.0);
    assert_eq!(served["wormfs_verify_findings"], 0.0);
    for file in ["wormfs.prom", "wormfs_verify.prom"] {
        let mtime = format!("node_textfile_mtime_seconds{{file=\"{}\"}}", textfiles.path().join(file).display());
        assert!(served.contains_key(&mtime), "no {mtime} in the scrape:\n{scraped}");
    }
    assert_eq!(served.get("node_textfile_scrape_error"), Some(&0.0), "{}", exporter.log());
}

/// Every series of the text file `file` is in the scrape with the same value, with its HELP and
/// TYPE.
#[track_caller]
fn assert_serves(file: &str, scraped: &str) {
    let served = parse_text(scraped);
    let written = parse_text(file);
    assert!(written.len() > 5, "{file}");
    for (series, value) in &written {
        assert_eq!(served.get(series), Some(value), "{series} in the scrape:\n{scraped}");
    }
    for meta in file.lines().filter(|l| l.starts_with("# ")) {
        assert!(scraped.lines().any(|l| l == meta), "the scrape lacks {meta:?}:\n{scraped}");
    }
}

//! The metrics as a Prometheus text file (node_exporter's textfile-collector convention:
//! written whole to a temporary file, then renamed over the old one, every few seconds), for the
//! daemon (`--metrics-file`) and for `wormfs verify --metrics-file`.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::warn;

use crate::core::fs::Gauges;
use crate::core::metrics::{Snapshot, SEAL_BUCKETS};
use crate::core::WormFs;
use crate::verify::Report;

/// How often the daemon rewrites its metrics file.
pub const INTERVAL: Duration = Duration::from_secs(5);

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn one(value: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), value.to_string())]
}

/// The daemon's metrics.
pub fn render(s: &Snapshot, g: &Gauges, head_seq: u64) -> String {
    let mut out = String::new();
    metric(&mut out, "wormfs_writes_total", "counter", "Write requests that appended bytes.", &one(s.writes));
    metric(
        &mut out,
        "wormfs_appended_bytes_total",
        "counter",
        "Bytes appended through the mount.",
        &one(s.appended_bytes),
    );
    let refused: Vec<_> = s.refused.iter().map(|(op, n)| (format!("{{op=\"{op}\"}}"), n.to_string())).collect();
    metric(
        &mut out,
        "wormfs_refused_total",
        "counter",
        "Operations refused by the write-once rules, by operation.",
        &refused,
    );
    metric(&mut out, "wormfs_seals_total", "counter", "Seal records written.", &one(s.seals));
    let failures: Vec<_> =
        s.seal_failures.iter().map(|(why, n)| (format!("{{reason=\"{}\"}}", why.label()), n.to_string())).collect();
    metric(
        &mut out,
        "wormfs_seal_failures_total",
        "counter",
        "Seals that failed (retried at the next seal or recovery), by reason: data, index or chain.",
        &failures,
    );
    let mut buckets: Vec<_> = SEAL_BUCKETS
        .iter()
        .zip(&s.seal_buckets)
        .map(|(le, n)| (format!("_bucket{{le=\"{le}\"}}"), n.to_string()))
        .collect();
    buckets.push(("_bucket{le=\"+Inf\"}".into(), s.seal_buckets.last().copied().unwrap_or(0).to_string()));
    buckets.push(("_sum".into(), format!("{:.6}", s.seal_seconds)));
    buckets.push(("_count".into(), s.seals.to_string()));
    metric(
        &mut out,
        "wormfs_seal_duration_seconds",
        "histogram",
        "Time to make bytes durable and commit their seal.",
        &buckets,
    );
    metric(&mut out, "wormfs_unsealed_bytes", "gauge", "Bytes appended but not sealed yet.", &one(g.unsealed_bytes));
    metric(&mut out, "wormfs_open_files", "gauge", "Files open for writing.", &one(g.open_files));
    metric(
        &mut out,
        "wormfs_oldest_unsealed_seconds",
        "gauge",
        "Age of the oldest byte not sealed yet.",
        &one(format!("{:.3}", g.oldest_unsealed_seconds)),
    );
    metric(
        &mut out,
        "wormfs_state_space_short",
        "gauge",
        "1 while new writes and files get ENOSPC for want of room to seal them on the state disk.",
        &one(u8::from(g.state_space_short)),
    );
    metric(
        &mut out,
        "wormfs_space_refusals_total",
        "counter",
        "Writes and creates refused with ENOSPC for want of room on the state disk.",
        &one(s.space_refusals),
    );
    metric(&mut out, "wormfs_chain_head_seq", "gauge", "Seq of the newest record in the chain.", &one(head_seq));
    metric(
        &mut out,
        "wormfs_key_rotations_total",
        "counter",
        "Key epochs begun (KeyRotate records).",
        &one(s.key_rotations),
    );
    metric(
        &mut out,
        "wormfs_key_rotation_failures_total",
        "counter",
        "Key rotations that failed; the old key keeps signing until one succeeds.",
        &one(s.key_rotation_failures),
    );
    metric(&mut out, "wormfs_checkpoints_total", "counter", "Checkpoints signed and written.", &one(s.checkpoints));
    metric(
        &mut out,
        "wormfs_witness_cosignatures_total",
        "counter",
        "Checkpoint cosignatures received from witnesses.",
        &one(s.witness_cosignatures),
    );
    metric(
        &mut out,
        "wormfs_witness_failures_total",
        "counter",
        "Witness submissions that failed (down, refused, or a cosignature that does not verify); retried at the next checkpoint.",
        &one(s.witness_failures),
    );
    metric(
        &mut out,
        "wormfs_archived_files_total",
        "counter",
        "Files the archive timer (--archive) uploaded to S3 and recorded.",
        &one(s.archived_files),
    );
    metric(&mut out, "wormfs_archived_bytes_total", "counter", "Bytes of those files.", &one(s.archived_bytes));
    metric(
        &mut out,
        "wormfs_archive_failures_total",
        "counter",
        "Archive runs that could not start, and files the timer could not archive, mirror or prune; retried at the next interval.",
        &one(s.archive_failures),
    );
    metric(
        &mut out,
        "wormfs_metrics_timestamp_seconds",
        "gauge",
        "When this file was written.",
        &one(format!("{:.3}", now_secs())),
    );
    out
}

/// A verify run's metrics.
pub fn render_verify(report: &Report) -> String {
    let mut out = String::new();
    metric(
        &mut out,
        "wormfs_verify_last_run_timestamp_seconds",
        "gauge",
        "When verify last ran.",
        &one(format!("{:.3}", now_secs())),
    );
    metric(
        &mut out,
        "wormfs_verify_intact",
        "gauge",
        "1 if the last verify found nothing wrong, else 0.",
        &one(u8::from(report.intact())),
    );
    metric(
        &mut out,
        "wormfs_verify_findings",
        "gauge",
        "Findings (tampering or loss) of the last verify.",
        &one(report.findings.len()),
    );
    metric(&mut out, "wormfs_verify_warnings", "gauge", "Warnings of the last verify.", &one(report.warnings.len()));
    metric(
        &mut out,
        "wormfs_verify_bytes_checked",
        "gauge",
        "Bytes re-hashed by the last verify.",
        &one(report.bytes_hashed),
    );
    metric(&mut out, "wormfs_verify_records", "gauge", "Records checked by the last verify.", &one(report.records));
    metric(
        &mut out,
        "wormfs_verify_duration_seconds",
        "gauge",
        "Time the last verify spent hashing.",
        &one(format!("{:.3}", report.hash_time.as_secs_f64())),
    );
    out
}

/// Replace `path` with `text` so a reader never sees half a file.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // A half-written file must not stay behind to take space (a full disk is when this fails).
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Rewrites the daemon's metrics file every INTERVAL until stopped, and once more at the end.
pub struct MetricsWriter {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsWriter {
    pub fn start(fs: Arc<WormFs>, path: PathBuf) -> io::Result<MetricsWriter> {
        let (stop, stopped) = mpsc::channel::<()>();
        // Logged when writing starts to fail and when it works again, not every INTERVAL.
        let failing = std::sync::atomic::AtomicBool::new(false);
        let write = move |fs: &WormFs| {
            let head = fs.ledger().head().map_or(0, |h| h.seq);
            let result = write_atomically(&path, &render(&fs.metrics().snapshot(), &fs.gauges(), head));
            let was_failing = failing.swap(result.is_err(), std::sync::atomic::Ordering::Relaxed);
            match result {
                Err(e) if !was_failing => {
                    warn!("writing metrics to {}: {e} (retried every {INTERVAL:?})", path.display())
                }
                Ok(()) if was_failing => warn!("writing metrics to {} works again", path.display()),
                _ => {}
            }
        };
        write(&fs);
        let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || loop {
            let done = !matches!(stopped.recv_timeout(INTERVAL), Err(RecvTimeoutError::Timeout));
            write(&fs);
            if done {
                return;
            }
        })?;
        Ok(MetricsWriter { stop, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

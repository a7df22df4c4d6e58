//! The command line: parse and dispatch. Each subcommand's work lives in its own module.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::admin::Request;
use crate::control;
use crate::core::retention::parse_duration_ns;
use crate::core::timefmt::parse_utc_ns;
use crate::core::RelPath;
use crate::inspect;
use crate::keys;
use crate::mount::{self, MountArgs};
use crate::verify_cmd;

#[derive(Debug, Parser)]
#[command(name = "wormfs", version, about = "A write-once FUSE filesystem for log files")]
pub struct Cli {
    /// Log more (debug level); RUST_LOG overrides.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount DATA_DIR at MOUNTPOINT in the foreground; SIGINT/SIGTERM unmount cleanly.
    Mount {
        /// Where the files live as plain files (created if missing).
        #[arg(long, value_name = "DATA_DIR")]
        data: PathBuf,
        /// Where the index and keys live (created if missing).
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        /// Let users other than root use the mount (permissions still apply).
        #[arg(long)]
        allow_other: bool,
        /// Seal the new bytes of files that stay open this often (e.g. 60s, 5m, 1h).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        seal_interval: Duration,
        /// DATA_DIR has files but STATE_DIR has no index: start a new chain anyway, adopting
        /// each file with a flagged Recovered record.
        #[arg(long)]
        adopt_existing: bool,
        /// Default retention of files (e.g. 90d, 7y; units s, m, h, d, y). Overrides the config
        /// file's `retention`. Without either: 90d.
        #[arg(long, value_name = "DURATION")]
        retention: Option<String>,
        /// Config file with retention bounds and per-directory rules.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Record who opens each file for reading (an Access record per open: uid, pid, command).
        #[arg(long)]
        audit_reads: bool,
        /// Prometheus text file rewritten every few seconds (default STATE_DIR/metrics.prom).
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// An empty directory to mount on.
        mountpoint: PathBuf,
    },
    /// Create the ed25519 signing key in STATE_DIR and print the public key to keep elsewhere.
    Keygen {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
    },
    /// Print the chain's records, oldest first, one a line.
    Log {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        /// Only records about this file (path inside the mount, e.g. /app/today.log).
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Summarise the chain: head, files, sealed and unsealed bytes, last seal.
    Status {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
    },
    /// Legal holds: while one covers a file it cannot be deleted, renamed or truncated.
    Hold {
        #[command(subcommand)]
        action: HoldAction,
    },
    /// Extend a file's retention (it can never be shortened).
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Files with their size, sealed size, retain-until and hold.
    Ls {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        /// The data directory (default: the one the chain's newest Mount record names).
        #[arg(long, value_name = "DATA_DIR")]
        data: Option<PathBuf>,
        /// A file or directory inside the mount (default: everything).
        #[arg(default_value = "/")]
        path: String,
    },
    /// Prove nothing sealed has changed, vanished or been reordered. Exit 0: intact; 1: tampering
    /// or loss found; 2: could not verify.
    Verify {
        #[arg(long, value_name = "DATA_DIR")]
        data: PathBuf,
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        /// The public key to trust (a file holding it, or the hex itself). Without it the key in
        /// STATE_DIR/signing.pub is used, which the report calls weaker evidence.
        #[arg(long, value_name = "FILE|HEX")]
        pubkey: Option<String>,
        /// Only check files under this path inside the mount (the chain is always checked whole).
        #[arg(long, value_name = "PREFIX")]
        path: Option<String>,
        /// The head an earlier verify printed (SEQ:HASH): it must still be in the chain, proving no
        /// record was dropped from the end since.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_head)]
        expect_head: Option<(u64, [u8; 32])>,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
        /// Also write the result as a Prometheus text file (for node_exporter's textfile collector).
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HoldAction {
    /// Put a file or directory (everything under it) on legal hold.
    Set {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        #[arg(long)]
        reason: String,
        /// Inside the mount, e.g. /app or /app/2026-11-22.log
        path: String,
    },
    /// Clear a legal hold set on exactly this path.
    Clear {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        #[arg(long)]
        reason: String,
        path: String,
    },
    /// The holds in force.
    List {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Retain a file until a later date, or longer by a duration.
    Extend {
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        /// A UTC date: 2030-01-01 or 2030-01-01T12:00:00Z.
        #[arg(long, value_name = "DATE", conflicts_with = "by", required_unless_present = "by")]
        until: Option<String>,
        /// Past the current retain-until, e.g. 1y.
        #[arg(long, value_name = "DURATION")]
        by: Option<String>,
        path: String,
    },
}

/// A failed command: its message, and the exit status to leave with.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

/// Run the command; Ok holds the exit status (verify's 0 or 1), Err a failure to report.
pub fn dispatch(cli: Cli) -> Result<i32, Failure> {
    match cli.command {
        Command::Mount {
            data,
            state,
            allow_other,
            seal_interval,
            adopt_existing,
            retention,
            config,
            audit_reads,
            metrics_file,
            mountpoint,
        } => {
            let args = MountArgs {
                data,
                state,
                mountpoint,
                allow_other,
                seal_interval,
                adopt_existing,
                retention,
                config,
                audit_reads,
                metrics_file,
            };
            mount::run(&args).map_err(fail)?;
        }
        Command::Keygen { state } => {
            let public = keys::generate(&state).map_err(fail)?;
            println!("{}", crate::core::segment::hex(public.as_bytes()));
            eprintln!(
                "wrote {} (secret, mode 0600) and {}; keep the public key above somewhere other than this machine",
                state.join(keys::SIGNING_KEY_FILE).display(),
                state.join(keys::PUBLIC_KEY_FILE).display()
            );
        }
        Command::Log { state, path, json } => {
            let only = path.map(|p| mount_path(&p).ok_or_else(|| not_a_mount_path(&p))).transpose()?;
            let store = inspect::open_index_read_only(&state).map_err(fail)?;
            inspect::log(&store, only.as_ref(), json, &mut std::io::stdout().lock()).map_err(fail)?;
        }
        Command::Status { state } => {
            let store = inspect::open_index_read_only(&state).map_err(fail)?;
            let status = inspect::status(&store).map_err(fail)?;
            let mut out = std::io::stdout().lock();
            inspect::print_status(&status, &mut out).map_err(fail)?;
            inspect::print_metrics_file(&state.join(crate::metrics::DEFAULT_FILE), &mut out).map_err(fail)?;
        }
        Command::Hold { action: HoldAction::Set { state, reason, path } } => {
            println!("{}", control::submit(&state, &Request::HoldSet { path, reason }).map_err(fail)?);
        }
        Command::Hold { action: HoldAction::Clear { state, reason, path } } => {
            println!("{}", control::submit(&state, &Request::HoldClear { path, reason }).map_err(fail)?);
        }
        Command::Hold { action: HoldAction::List { state } } => {
            let store = inspect::open_index_read_only(&state).map_err(fail)?;
            inspect::print_holds(&store, &mut std::io::stdout().lock()).map_err(fail)?;
        }
        Command::Retention { action: RetentionAction::Extend { state, until, by, path } } => {
            let until_ns = until.map(|d| parse_utc_ns(&d)).transpose().map_err(usage)?;
            let by_ns = by.map(|d| parse_duration_ns(&d)).transpose().map_err(usage)?;
            let request = Request::RetentionExtend { path, until_ns, by_ns };
            println!("{}", control::submit(&state, &request).map_err(fail)?);
        }
        Command::Ls { state, data, path } => {
            let prefix = mount_path(&path).ok_or_else(|| not_a_mount_path(&path))?;
            let store = inspect::open_index_read_only(&state).map_err(fail)?;
            let data = data.or_else(|| inspect::status(&store).ok()?.data_dir.map(PathBuf::from));
            let entries = inspect::ls(&store, data.as_deref(), &prefix).map_err(fail)?;
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            inspect::print_ls(&entries, now, &mut std::io::stdout().lock()).map_err(fail)?;
        }
        Command::Verify { data, state, pubkey, path, expect_head, json, metrics_file } => {
            let only = path.map(|p| mount_path(&p).ok_or_else(|| not_a_mount_path(&p))).transpose()?;
            let options = verify_cmd::VerifyArgs { pubkey: pubkey.as_deref(), only, expect_head, json, metrics_file };
            // Could not verify at all: 2, so scripts can tell it from "tampering found" (1).
            return verify_cmd::run(&data, &state, options).map_err(|e| Failure { message: e.to_string(), code: 2 });
        }
    }
    Ok(0)
}

/// `SEQ:HASH` as the verify report prints the head.
fn parse_head(text: &str) -> Result<(u64, [u8; 32]), String> {
    let bad = || format!("`{text}` is not SEQ:HASH (e.g. 42:9f86d08...)");
    let (seq, hash) = text.split_once(':').ok_or_else(bad)?;
    let seq = seq.trim().parse().map_err(|_| bad())?;
    let hash = crate::core::segment::from_hex(hash).and_then(|h| h.try_into().ok()).ok_or_else(bad)?;
    Ok((seq, hash))
}

fn usage(message: String) -> Failure {
    Failure { message, code: 2 }
}

fn not_a_mount_path(p: &str) -> Failure {
    Failure { message: format!("`{p}` is not a path inside the mount"), code: 2 }
}

/// `/app/today.log` (as seen in the mount) to a path relative to DATA_DIR.
pub fn mount_path(text: &str) -> Option<RelPath> {
    RelPath::from_mount_path(text).ok()
}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure { message: e.to_string(), code: 1 }
}

/// `60s`, `5m`, `1h`: the retention units, for the seal interval too.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match parse_duration_ns(text)? {
        0 => Err("the duration must be more than zero".into()),
        ns => Ok(Duration::from_nanos(ns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("60").is_err(), "a unit is required");
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn heads_parse_as_seq_and_hash() {
        let hash = "ab".repeat(32);
        assert_eq!(parse_head(&format!("42:{hash}")).map(|h| h.0), Ok(42));
        assert!(parse_head("42").is_err());
        assert!(parse_head("x:ab").is_err());
    }
}

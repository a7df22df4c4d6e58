//! The command line: parse and dispatch. Each subcommand's work lives in its own module.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::admin::Request;
use crate::archive::S3Args;
use crate::control;
use crate::core::retention::parse_duration_ns;
use crate::core::store::{Store, SystemClock};
use crate::core::timefmt::parse_utc_ns;
use crate::core::RelPath;
use crate::defaults::{self, Dir};
use crate::inspect;
use crate::keys;
use crate::mount::{self, MountArgs};
use crate::state_dir::StateDir;
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

/// `--state`, which every subcommand but `mount` may leave out (see `defaults`).
#[derive(Debug, Clone, clap::Args)]
pub struct StateArg {
    /// The state directory (index and keys); default $WORMFS_STATE, else WORMFS_STATE in
    /// /etc/default/wormfs (or the file $WORMFS_ENV_FILE names).
    #[arg(long = "state", value_name = "STATE_DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount DATA_DIR at MOUNTPOINT in the foreground; SIGINT/SIGTERM unmount cleanly.
    Mount(#[command(flatten)] MountArgs),
    /// Create the keys in STATE_DIR: the first epoch key, whose public half (printed, as hex
    /// and as a C2SP vkey) is the trust anchor verify needs, and the checkpoint key witnesses pin.
    Keygen {
        #[command(flatten)]
        state: StateArg,
        /// The log's name in its checkpoints' origin line and in the checkpoint key's name
        /// (default wormfs/HOSTNAME). Permanent: witnesses pin it.
        #[arg(long, value_name = "ORIGIN")]
        origin: Option<String>,
    },
    /// Print a C2SP checkpoint of the chain as it stands, signed with the checkpoint key, and
    /// with --witness get it cosigned.
    Checkpoint {
        #[command(flatten)]
        state: StateArg,
        /// Submit it to this witness (its http:// URL and vkey); the cosignature is added to the
        /// printed checkpoint. Repeatable. Fails if a witness refuses.
        #[arg(long, num_args = 2, value_names = ["URL", "VKEY"], action = clap::ArgAction::Append)]
        witness: Vec<String>,
        /// The size the witness last cosigned (default: asked of the witness).
        #[arg(long, value_name = "SIZE", default_value_t = 0)]
        old_size: u64,
    },
    /// Print the chain's records, oldest first, one a line.
    Log {
        #[command(flatten)]
        state: StateArg,
        /// Only records about this file (path inside the mount, e.g. /app/today.log).
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Summarise the chain: head, files, sealed and unsealed bytes, last seal.
    Status {
        #[command(flatten)]
        state: StateArg,
        /// The daemon's metrics file, shown when the daemon cannot be asked (not mounted, or not
        /// root): the mount's --metrics-file if it was given one; default STATE_DIR/metrics.prom.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
    },
    /// Write a file's receipt: its seal records with their inclusion proofs against a signed
    /// checkpoint, so it can be checked alone with `wormfs verify-receipt`.
    Receipt {
        #[command(flatten)]
        state: StateArg,
        /// Prove against this checkpoint (e.g. one a witness cosigned); default
        /// STATE_DIR/checkpoint when it covers the file, else one signed now.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Write the receipt here instead of to standard output.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The file, as a path inside the mount (e.g. /app/2026-11-22.log).
        path: String,
    },
    /// Check one file against its receipt with only the checkpoint key. Exit 0: the file is
    /// exactly what was sealed; 1: it is not; 2: could not check.
    VerifyReceipt {
        /// The checkpoint key's vkey (a file holding it, or the text), as keygen printed it.
        #[arg(long, value_name = "FILE|VKEY")]
        key: String,
        /// The receipt's checkpoint must carry a valid cosignature from this witness. Repeatable.
        #[arg(long, value_name = "VKEY")]
        witness_key: Vec<String>,
        /// The file to check (a copy anywhere).
        file: PathBuf,
        /// Its receipt.
        receipt: PathBuf,
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
        #[command(flatten)]
        state: StateArg,
        /// The data directory (default: $WORMFS_DATA, WORMFS_DATA in /etc/default/wormfs, else the
        /// one the chain's newest Mount record names).
        #[arg(long, value_name = "DATA_DIR")]
        data: Option<PathBuf>,
        /// A file or directory inside the mount (default: everything).
        #[arg(default_value = "/")]
        path: String,
    },
    /// Prove nothing sealed has changed, vanished or been reordered. Exit 0: intact; 1: tampering
    /// or loss found; 2: could not verify.
    Verify {
        /// The data directory (the files); default $WORMFS_DATA, else WORMFS_DATA in
        /// /etc/default/wormfs (or the file $WORMFS_ENV_FILE names).
        #[arg(long, value_name = "DATA_DIR")]
        data: Option<PathBuf>,
        #[command(flatten)]
        state: StateArg,
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
        /// A checkpoint kept elsewhere (a file): the chain must extend it. Repeatable.
        #[arg(long, value_name = "FILE")]
        anchor: Vec<PathBuf>,
        /// The checkpoint key's vkey (a file holding it, or the text); default
        /// STATE_DIR/checkpoint.vkey.
        #[arg(long, value_name = "FILE|VKEY")]
        checkpoint_key: Option<String>,
        /// Every anchor must carry a valid cosignature from this witness (its vkey). Repeatable.
        #[arg(long, value_name = "VKEY")]
        witness_key: Vec<String>,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
        /// Also write the result as a Prometheus text file (for node_exporter's textfile collector).
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// Check this export (`wormfs export`) against DATA_DIR instead of STATE_DIR's index;
        /// then --pubkey (or a state directory's signing.pub) says which key to trust.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Also check every copy the chain archived to this bucket (s3://BUCKET): present, same
        /// bytes, locked in COMPLIANCE mode at least as long as the chain retains it, held where
        /// the chain holds it.
        #[arg(long, value_name = "s3://BUCKET")]
        archive: Option<String>,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Write every stored record (byte for byte, damage included) and the index's head as text:
    /// what `wormfs verify --export` and an independent verifier check, without RocksDB.
    Export {
        #[command(flatten)]
        state: StateArg,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Copy every sealed, closed file not archived yet to an S3 bucket with Object Lock, locked
    /// in COMPLIANCE mode until its retain-until, with its receipt; record each upload in the
    /// chain; carry retention extensions and legal holds over to the objects.
    Archive {
        #[command(flatten)]
        state: StateArg,
        /// The bucket, and optionally a key prefix: s3://BUCKET[/PREFIX].
        #[arg(long, value_name = "s3://BUCKET")]
        bucket: String,
        /// A key prefix (after any in --bucket), e.g. the host's name.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Also delete local copies that are archived, past their retention and under no hold,
        /// once their archived object has been read back and checked (recorded in the chain).
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        s3: S3Args,
    },
}

#[derive(Debug, Subcommand)]
pub enum HoldAction {
    /// Put a file or directory (everything under it) on legal hold.
    Set {
        #[command(flatten)]
        state: StateArg,
        /// Why (recorded in the chain with your uid), e.g. "subpoena 42".
        #[arg(long)]
        reason: String,
        /// Inside the mount, e.g. /app or /app/2026-11-22.log
        path: String,
    },
    /// Clear a legal hold set on exactly this path.
    Clear {
        #[command(flatten)]
        state: StateArg,
        /// Why it is lifted (recorded in the chain with your uid).
        #[arg(long)]
        reason: String,
        /// The path the hold was set on, as it was set (e.g. /app).
        path: String,
    },
    /// The holds in force.
    List {
        #[command(flatten)]
        state: StateArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Retain a file until a later date, or longer by a duration.
    Extend {
        #[command(flatten)]
        state: StateArg,
        /// A UTC date: 2030-01-01 or 2030-01-01T12:00:00Z.
        #[arg(long, value_name = "DATE", conflicts_with = "by", required_unless_present = "by")]
        until: Option<String>,
        /// Past the current retain-until, e.g. 1y.
        #[arg(long, value_name = "DURATION")]
        by: Option<String>,
        /// The file, as a path inside the mount (e.g. /app/2026-11-22.log).
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
        Command::Mount(args) => mount::run(&args).map_err(fail)?,
        Command::Keygen { state, origin } => {
            let state = state_dir(state)?;
            let origin = origin.unwrap_or_else(keys::default_origin);
            let made = keys::generate(&state, &origin).map_err(fail)?;
            println!("{}", crate::core::segment::hex(made.anchor.as_bytes()));
            println!("{}", made.anchor_vkey);
            println!("{}", made.checkpoint_vkey);
            eprintln!(
                "wrote the keys to {} (secrets mode 0600). Keep the first two lines (the trust anchor, for wormfs verify --pubkey) and the third (the checkpoint key, for witnesses and --checkpoint-key) somewhere other than this machine",
                state.path().display()
            );
        }
        Command::Receipt { state, checkpoint, out, path } => {
            let rel = mount_path(&path).ok_or_else(|| not_a_mount_path(&path))?;
            let text = crate::receipt_cmd::make(&state_dir(state)?, &rel, checkpoint.as_deref()).map_err(fail)?;
            match out {
                Some(file) => std::fs::write(&file, text).map_err(|e| fail(format!("{}: {e}", file.display())))?,
                None => print!("{text}"),
            }
        }
        Command::VerifyReceipt { key, witness_key, file, receipt } => {
            let mut out = std::io::stdout().lock();
            return crate::receipt_cmd::verify(&file, &receipt, &key, &witness_key, &mut out)
                .map_err(|e| Failure { message: e.to_string(), code: 2 });
        }
        Command::Checkpoint { state, witness, old_size } => {
            let state = state_dir(state)?;
            let note = crate::checkpoint_cmd::run(&state, &witness, old_size).map_err(fail)?;
            print!("{note}");
        }
        Command::Log { state, path, json } => {
            let only = path.map(|p| mount_path(&p).ok_or_else(|| not_a_mount_path(&p))).transpose()?;
            let store = inspect::open_index_read_only(&state_dir(state)?).map_err(fail)?;
            inspect::log(&store, only.as_ref(), json, &mut std::io::stdout().lock()).map_err(fail)?;
        }
        Command::Export { state, out } => {
            let store = inspect::open_index_read_only(&state_dir(state)?).map_err(fail)?;
            match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .map_err(|e| Failure { message: format!("{}: {e}", path.display()), code: 1 })?;
                    let mut w = std::io::BufWriter::new(file);
                    crate::export::write(&store, &mut w).map_err(fail)?;
                    w.into_inner()
                        .map_err(|e| e.into_error())
                        .and_then(|f| f.sync_all())
                        .map_err(|e| Failure { message: format!("{}: {e}", path.display()), code: 1 })?;
                }
                None => crate::export::write(&store, &mut std::io::stdout().lock()).map_err(fail)?,
            }
        }
        Command::Status { state, metrics_file } => {
            let state = state_dir(state)?;
            let store = inspect::open_index_read_only(&state).map_err(fail)?;
            let status = inspect::status(&store, &SystemClock).map_err(fail)?;
            let mut out = std::io::stdout().lock();
            inspect::print_status(&status, &mut out).map_err(fail)?;
            match control::live_metrics(&state) {
                Some(live) => inspect::print_live_metrics(&live, &mut out).map_err(fail)?,
                None => inspect::print_metrics_file(&metrics_file.unwrap_or_else(|| state.metrics_file()), &mut out)
                    .map_err(fail)?,
            }
        }
        Command::Hold { action: HoldAction::Set { state, reason, path } } => {
            let request = Request::HoldSet { path, reason };
            println!("{}", control::submit(&state_dir(state)?, &request).map_err(fail)?);
        }
        Command::Hold { action: HoldAction::Clear { state, reason, path } } => {
            let request = Request::HoldClear { path, reason };
            println!("{}", control::submit(&state_dir(state)?, &request).map_err(fail)?);
        }
        Command::Hold { action: HoldAction::List { state } } => {
            let store = inspect::open_index_read_only(&state_dir(state)?).map_err(fail)?;
            inspect::print_holds(&store, &mut std::io::stdout().lock()).map_err(fail)?;
        }
        Command::Retention { action: RetentionAction::Extend { state, until, by, path } } => {
            let until_ns = until.map(|d| parse_utc_ns(&d)).transpose().map_err(usage)?;
            let by_ns = by.map(|d| parse_duration_ns(&d)).transpose().map_err(usage)?;
            let request = Request::RetentionExtend { path, until_ns, by_ns };
            println!("{}", control::submit(&state_dir(state)?, &request).map_err(fail)?);
        }
        Command::Archive { state, bucket, prefix, prune, s3 } => {
            let (bucket, in_url) = crate::archive::parse_bucket_url(&bucket).map_err(usage)?;
            let prefix = [in_url.as_str(), prefix.as_deref().unwrap_or("")]
                .iter()
                .map(|p| p.trim_matches('/'))
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("/");
            if !prefix.is_empty() {
                crate::archive::clean_prefix(&prefix).map_err(usage)?;
            }
            let client = s3.client(&bucket).map_err(fail)?;
            let session = control::Session::open(&state_dir(state.clone())?).map_err(fail)?;
            let opts = crate::archive::upload::RunOptions {
                prefix,
                prune,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                now_ns: crate::core::store::Clock::now_ns(&SystemClock),
            };
            let summary = crate::archive::upload::run(&state_dir(state)?, &session, &client, &opts).map_err(fail)?;
            return crate::archive::upload::print_summary(&summary, &bucket, &mut std::io::stdout().lock())
                .map_err(fail);
        }
        Command::Ls { state, data, path } => {
            let prefix = mount_path(&path).ok_or_else(|| not_a_mount_path(&path))?;
            let store = inspect::open_index_read_only(&state_dir(state)?).map_err(fail)?;
            let recorded = store.data_dir().map_err(fail)?.map(|d| PathBuf::from(OsString::from_vec(d)));
            let data = defaults::find(data, Dir::Data).map_err(|e| usage(e.to_string()))?.or(recorded);
            let entries = inspect::ls(&store, data.as_deref(), &prefix, &SystemClock).map_err(fail)?;
            inspect::print_ls(&entries, &mut std::io::stdout().lock()).map_err(fail)?;
        }
        Command::Verify {
            data,
            state,
            pubkey,
            path,
            expect_head,
            anchor,
            checkpoint_key,
            witness_key,
            json,
            metrics_file,
            export,
            archive,
            s3,
        } => {
            let only = path.map(|p| mount_path(&p).ok_or_else(|| not_a_mount_path(&p))).transpose()?;
            let archive = archive
                .map(|url| crate::archive::parse_bucket_url(&url).map(|(bucket, _)| (bucket, s3)))
                .transpose()
                .map_err(usage)?;
            // An export needs no state directory; one named still lends its keys.
            let state = match export {
                Some(_) => defaults::find(state.dir, Dir::State).map_err(|e| usage(e.to_string()))?.map(StateDir::new),
                None => Some(state_dir(state)?),
            };
            let options = verify_cmd::VerifyArgs {
                export,
                pubkey: pubkey.as_deref(),
                only,
                expect_head,
                anchors: anchor,
                checkpoint_key,
                witness_keys: witness_key,
                json,
                metrics_file,
                archive,
            };
            // Could not verify at all: 2, so scripts can tell it from "tampering found" (1).
            let data = dir(data, Dir::Data)?;
            return verify_cmd::run(&data, state.as_ref(), options)
                .map_err(|e| Failure { message: e.to_string(), code: 2 });
        }
    }
    Ok(0)
}

/// The state directory the command works on: the flag, else the environment or
/// /etc/default/wormfs (`defaults`).
fn state_dir(flag: StateArg) -> Result<StateDir, Failure> {
    dir(flag.dir, Dir::State).map(StateDir::new)
}

fn dir(flag: Option<PathBuf>, which: Dir) -> Result<PathBuf, Failure> {
    defaults::resolve(flag, which).map_err(|e| usage(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_as_seq_and_hash() {
        let hash = "ab".repeat(32);
        assert_eq!(parse_head(&format!("42:{hash}")).map(|h| h.0), Ok(42));
        assert!(parse_head("42").is_err());
        assert!(parse_head("x:ab").is_err());
    }
}

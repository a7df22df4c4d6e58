//! `wormfs verify`: open the index read-only (no lock fight with a running daemon), pick the
//! trusted key, run the checker with a progress bar on a terminal, and print the report.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::archive::s3::S3Error;
use crate::archive::S3Args;
use crate::checkpoint;
use crate::core::store::{Clock, Store, SystemClock};
use crate::core::RelPath;
use crate::inspect::{self, InspectError};
use crate::keys::{self, KeyError};
use crate::state_dir::StateDir;
use crate::verify::{self, Anchor, Finding, Options, VerifyError};
use crate::verify_report::{KeySource, Verdict};

#[derive(Debug)]
pub enum VerifyCmdError {
    NoDataDir(std::path::PathBuf),
    NoPublicKey(std::path::PathBuf),
    /// An export is checked and no state directory is named: nothing says which key to trust.
    NoKeyForExport,
    /// Neither a state directory nor an export.
    NothingToCheck,
    /// Anchors are given for an export and no state directory: nothing says the checkpoint key.
    NoCheckpointKeyForExport,
    Export {
        path: std::path::PathBuf,
        err: crate::export::ExportError,
    },
    NoCheckpointKey(std::path::PathBuf),
    BadWitnessKey(String),
    Anchor {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    Index(InspectError),
    Key(KeyError),
    Check(VerifyError),
    /// The archive could not be checked at all (S3 unreachable, no credentials).
    Archive(S3Error),
    Output(std::io::Error),
}

impl fmt::Display for VerifyCmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyCmdError::NoDataDir(p) => {
                write!(f, "cannot verify: data directory {} is not a directory", p.display())
            }
            VerifyCmdError::NoPublicKey(p) => {
                write!(f, "cannot verify: no public key at {}; pass --pubkey FILE|HEX", p.display())
            }
            VerifyCmdError::NoCheckpointKey(p) => {
                write!(f, "cannot check anchors: no checkpoint key at {}; pass --checkpoint-key FILE|VKEY", p.display())
            }
            VerifyCmdError::NoKeyForExport => {
                write!(f, "cannot verify: an export carries no key; pass --pubkey FILE|HEX with the key to trust")
            }
            VerifyCmdError::NothingToCheck => write!(f, "cannot verify: no state directory and no export to check"),
            VerifyCmdError::NoCheckpointKeyForExport => {
                write!(f, "cannot check anchors of an export: pass --checkpoint-key FILE|VKEY")
            }
            VerifyCmdError::Export { path, err } => write!(f, "cannot verify: {}: {err}", path.display()),
            VerifyCmdError::BadWitnessKey(v) => write!(f, "cannot verify: --witness-key {v:?} is not a witness vkey"),
            VerifyCmdError::Anchor { path, err } => write!(f, "cannot verify: anchor {}: {err}", path.display()),
            VerifyCmdError::Index(e) => write!(f, "cannot verify: {e}"),
            VerifyCmdError::Key(e) => write!(f, "cannot verify: {e}"),
            VerifyCmdError::Check(e) => write!(f, "cannot verify: {e}"),
            VerifyCmdError::Archive(e) => write!(f, "cannot verify the archive: {e}"),
            VerifyCmdError::Output(e) => write!(f, "writing the report: {e}"),
        }
    }
}

impl std::error::Error for VerifyCmdError {}

/// What to verify beyond the two directories.
pub struct VerifyArgs<'a> {
    /// Check this export (`wormfs export`) instead of the state directory's index.
    pub export: Option<std::path::PathBuf>,
    pub pubkey: Option<&'a str>,
    pub only: Option<RelPath>,
    pub expect_head: Option<(u64, [u8; 32])>,
    /// Checkpoint files the chain must extend.
    pub anchors: Vec<std::path::PathBuf>,
    /// The checkpoint key's vkey (file or text); default STATE_DIR/checkpoint.vkey.
    pub checkpoint_key: Option<String>,
    /// Witnesses whose cosignature every anchor must carry (vkeys).
    pub witness_keys: Vec<String>,
    pub json: bool,
    pub metrics_file: Option<std::path::PathBuf>,
    /// Also check the archived copies in this bucket (`s3://BUCKET`), reached this way.
    pub archive: Option<(String, S3Args)>,
}

/// The anchors whose signatures check out, and a finding for each that does not.
fn read_anchors(
    state: Option<&StateDir>,
    files: &[std::path::PathBuf],
    checkpoint_key: Option<&str>,
    witness_keys: &[String],
) -> Result<(Vec<Anchor>, Vec<Finding>), VerifyCmdError> {
    if files.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let spec = match checkpoint_key {
        Some(spec) => spec.to_string(),
        None => {
            let path = state.ok_or(VerifyCmdError::NoCheckpointKeyForExport)?.checkpoint_vkey();
            if !path.exists() {
                return Err(VerifyCmdError::NoCheckpointKey(path));
            }
            eprintln!(
                "wormfs verify: anchors are checked with {} (from the state being checked: weaker evidence; pass --checkpoint-key with a copy kept elsewhere)",
                path.display()
            );
            path.to_string_lossy().into_owned()
        }
    };
    let (origin, log_key) = keys::load_vkey(&spec).map_err(VerifyCmdError::Key)?;
    let witnesses = checkpoint::parse_witness_keys(witness_keys).map_err(VerifyCmdError::BadWitnessKey)?;
    let mut anchors = Vec::new();
    let mut findings = Vec::new();
    for path in files {
        let text = std::fs::read(path).map_err(|err| VerifyCmdError::Anchor { path: path.clone(), err })?;
        let name = path.display().to_string();
        match checkpoint::read(&text, &origin, &log_key, &witnesses) {
            Ok(cp) => anchors.push(Anchor { name, size: cp.size, root: cp.root }),
            Err(why) => findings.push(Finding::AnchorUnverified { anchor: name, why }),
        }
    }
    Ok((anchors, findings))
}

/// Returns the exit status: 0 intact, 1 findings. `state` may be None only with an export.
pub fn run(data: &Path, state: Option<&StateDir>, args: VerifyArgs<'_>) -> Result<i32, VerifyCmdError> {
    let VerifyArgs {
        export,
        pubkey,
        only,
        expect_head,
        anchors,
        checkpoint_key,
        witness_keys,
        json,
        metrics_file,
        archive,
    } = args;
    let archive = match archive {
        Some((bucket, s3)) => Some(s3.client(&bucket).map_err(VerifyCmdError::Archive)?),
        None => None,
    };
    if !data.is_dir() {
        return Err(VerifyCmdError::NoDataDir(data.to_path_buf()));
    }
    let (key, key_source) = match pubkey {
        Some(spec) => (keys::load_public(spec).map_err(VerifyCmdError::Key)?, KeySource::Argument),
        None => {
            let path = state.ok_or(VerifyCmdError::NoKeyForExport)?.public_key();
            let spec = path.to_string_lossy().into_owned();
            if !path.exists() {
                return Err(VerifyCmdError::NoPublicKey(path));
            }
            (keys::load_public(&spec).map_err(VerifyCmdError::Key)?, KeySource::State(path))
        }
    };
    let store: Box<dyn Store> = match (&export, state) {
        (Some(path), _) => {
            Box::new(crate::export::read_file(path).map_err(|err| VerifyCmdError::Export { path: path.clone(), err })?)
        }
        (None, Some(state)) => Box::new(inspect::open_index_read_only(state).map_err(VerifyCmdError::Index)?),
        (None, None) => return Err(VerifyCmdError::NothingToCheck),
    };
    let store = store.as_ref();

    let (anchors, anchor_findings) = read_anchors(state, &anchors, checkpoint_key.as_deref(), &witness_keys)?;
    let now_ns = Some(SystemClock.now_ns());
    let mut opts = Options { path_prefix: only, expect_head, anchors, anchor_findings, now_ns, progress: None };
    // An export holds no file table to size the bar by.
    let bar = if std::io::stderr().is_terminal() && export.is_none() {
        let total = verify::sealed_bytes(store, &opts).map_err(VerifyCmdError::Check)?;
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
            bar.set_style(style);
        }
        let tick = bar.clone();
        opts.progress = Some(Box::new(move |n| tick.inc(n)));
        Some(bar)
    } else {
        None
    };
    let mut report = verify::check_with(store, data, key, &opts).map_err(VerifyCmdError::Check)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(s3) = &archive {
        let checked = crate::archive::check::check(s3, &report.archived, &report.sealed, SystemClock.now_ns(), &|_| {})
            .map_err(VerifyCmdError::Archive)?;
        report.findings.extend(checked.findings);
        report.warnings.extend(checked.warnings);
        report.archive_checked = Some((s3.bucket().to_string(), checked.copies));
    }

    let verdict = Verdict { report: &report, public_key: key.to_bytes(), key_source };
    let mut out = std::io::stdout().lock();
    if json {
        use std::io::Write;
        writeln!(out, "{:#}", verdict.to_json()).map_err(VerifyCmdError::Output)?;
    } else {
        verdict.write_human(&mut out).map_err(VerifyCmdError::Output)?;
    }
    // After the report: a metrics file that cannot be written must not hide the verdict.
    if let Some(path) = &metrics_file {
        if let Err(e) = crate::metrics::write_atomically(path, &crate::metrics::render_verify(&report)) {
            eprintln!("wormfs: warning: could not write metrics to {}: {e}", path.display());
        }
    }
    Ok(verdict.exit_code())
}

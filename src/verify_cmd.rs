//! `wormfs verify`: open the index read-only (no lock fight with a running daemon), pick the
//! trusted key, run the checker with a progress bar on a terminal, and print the report.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::core::RelPath;
use crate::inspect::{self, InspectError};
use crate::keys::{self, KeyError};
use crate::state_dir::StateDir;
use crate::verify::{self, Options, VerifyError};
use crate::verify_report::{KeySource, Verdict};

#[derive(Debug)]
pub enum VerifyCmdError {
    NoDataDir(std::path::PathBuf),
    NoPublicKey(std::path::PathBuf),
    Index(InspectError),
    Key(KeyError),
    Check(VerifyError),
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
            VerifyCmdError::Index(e) => write!(f, "cannot verify: {e}"),
            VerifyCmdError::Key(e) => write!(f, "cannot verify: {e}"),
            VerifyCmdError::Check(e) => write!(f, "cannot verify: {e}"),
            VerifyCmdError::Output(e) => write!(f, "writing the report: {e}"),
        }
    }
}

impl std::error::Error for VerifyCmdError {}

/// What to verify beyond the two directories.
pub struct VerifyArgs<'a> {
    pub pubkey: Option<&'a str>,
    pub only: Option<RelPath>,
    pub expect_head: Option<(u64, [u8; 32])>,
    pub json: bool,
    pub metrics_file: Option<std::path::PathBuf>,
}

/// Returns the exit status: 0 intact, 1 findings.
pub fn run(data: &Path, state: &StateDir, args: VerifyArgs<'_>) -> Result<i32, VerifyCmdError> {
    let VerifyArgs { pubkey, only, expect_head, json, metrics_file } = args;
    if !data.is_dir() {
        return Err(VerifyCmdError::NoDataDir(data.to_path_buf()));
    }
    let (key, key_source) = match pubkey {
        Some(spec) => (keys::load_public(spec).map_err(VerifyCmdError::Key)?, KeySource::Argument),
        None => {
            let path = state.public_key();
            let spec = path.to_string_lossy().into_owned();
            if !path.exists() {
                return Err(VerifyCmdError::NoPublicKey(path));
            }
            (keys::load_public(&spec).map_err(VerifyCmdError::Key)?, KeySource::State(path))
        }
    };
    let store = inspect::open_index_read_only(state).map_err(VerifyCmdError::Index)?;

    let mut opts = Options { path_prefix: only, expect_head, progress: None };
    let bar = if std::io::stderr().is_terminal() {
        let total = verify::sealed_bytes(&store, &opts).map_err(VerifyCmdError::Check)?;
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
    let report = verify::check_with(&store, data, key, &opts).map_err(VerifyCmdError::Check)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
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

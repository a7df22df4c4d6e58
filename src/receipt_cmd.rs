//! `wormfs receipt` and `wormfs verify-receipt`: the receipt of one file, and its check with
//! only the checkpoint key (and witness keys).

use std::fmt;
use std::path::Path;

use crate::checkpoint::{self, Checkpoint, CheckpointError, LogSigner};
use crate::core::merkle;
use crate::core::path::RelPath;
use crate::keys::{self, KeyError};
use crate::receipt::{self, ReceiptError};
use crate::state_dir::{IndexOpenError, StateDir};

#[derive(Debug)]
pub enum ReceiptCmdError {
    Key(KeyError),
    Index(IndexOpenError),
    Sign(CheckpointError),
    Receipt(ReceiptError),
    /// A --checkpoint that is not a checkpoint of this chain.
    Checkpoint(String),
    BadWitnessKey(String),
    Io {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
}

impl fmt::Display for ReceiptCmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptCmdError::Key(e) => write!(f, "{e}"),
            ReceiptCmdError::Index(e) => write!(f, "{e}"),
            ReceiptCmdError::Sign(e) => write!(f, "{e}"),
            ReceiptCmdError::Receipt(e) => write!(f, "{e}"),
            ReceiptCmdError::Checkpoint(why) => write!(f, "--checkpoint: {why}"),
            ReceiptCmdError::BadWitnessKey(v) => write!(f, "--witness-key {v:?} is not a witness vkey"),
            ReceiptCmdError::Io { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for ReceiptCmdError {}

/// The receipt of `path` as pretty JSON. Against `checkpoint_file` if given (e.g. one a witness
/// cosigned), else STATE_DIR/checkpoint when it covers the file and matches the tree, else a
/// checkpoint signed now.
pub fn make(state: &StateDir, path: &RelPath, checkpoint_file: Option<&Path>) -> Result<String, ReceiptCmdError> {
    let (origin, key) = keys::load_checkpoint_key(state).map_err(ReceiptCmdError::Key)?;
    let store = state.open_index_read_only().map_err(ReceiptCmdError::Index)?;
    let public = key.verifying_key();
    let read = |p: &Path| -> Result<Option<Checkpoint>, ReceiptCmdError> {
        let text = match std::fs::read(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && checkpoint_file.is_none() => return Ok(None),
            Err(err) => return Err(ReceiptCmdError::Io { path: p.to_path_buf(), err }),
        };
        let cp = checkpoint::read(&text, &origin, &public, &[]).map_err(ReceiptCmdError::Checkpoint)?;
        let root = merkle::root(&store, cp.size).map_err(|e| ReceiptCmdError::Checkpoint(e.to_string()))?;
        if root != cp.root {
            return Err(ReceiptCmdError::Checkpoint(format!("its root is not this chain's at size {}", cp.size)));
        }
        Ok(Some(cp))
    };
    let kept = match checkpoint_file {
        Some(p) => read(p)?,
        None => read(&state.checkpoint()).unwrap_or(None),
    };
    let signer = LogSigner::new(origin, key);
    let attempt = |cp: &Checkpoint| receipt::make(&store, path, cp, &signer);
    let doc = match kept.as_ref().map(attempt) {
        Some(Ok(doc)) => doc,
        Some(Err(e)) if checkpoint_file.is_some() => return Err(ReceiptCmdError::Receipt(e)),
        _ => {
            let fresh = checkpoint::sign(&store, &signer).map_err(ReceiptCmdError::Sign)?;
            attempt(&fresh).map_err(ReceiptCmdError::Receipt)?
        }
    };
    Ok(format!("{doc:#}\n"))
}

/// Check `file` against `receipt_file`: Ok(0) with a line saying what is proven, Ok(1) with why
/// not.
pub fn verify(
    file: &Path,
    receipt_file: &Path,
    key: &str,
    witness_keys: &[String],
    out: &mut dyn std::io::Write,
) -> Result<i32, ReceiptCmdError> {
    let (origin, log_key) = keys::load_vkey(key).map_err(ReceiptCmdError::Key)?;
    let witnesses = checkpoint::parse_witness_keys(witness_keys).map_err(ReceiptCmdError::BadWitnessKey)?;
    let receipt = std::fs::read(receipt_file).map_err(|err| ReceiptCmdError::Io { path: receipt_file.into(), err })?;
    let io = |err| ReceiptCmdError::Io { path: "stdout".into(), err };
    match receipt::check(file, &receipt, &origin, &log_key, &witnesses) {
        Ok(c) => {
            let cosigned = if c.cosigned_by.is_empty() {
                String::new()
            } else {
                format!(", cosigned by {}", c.cosigned_by.join(", "))
            };
            writeln!(
                out,
                "RECEIPT VALID: {} ({} bytes) is {} as sealed by records {:?}, in checkpoint {} of {} records{cosigned}",
                file.display(),
                c.size,
                c.path,
                c.records,
                c.checkpoint.origin,
                c.checkpoint.size
            )
            .map_err(io)?;
            Ok(0)
        }
        Err(why) => {
            writeln!(out, "RECEIPT INVALID: {}: {why}", file.display()).map_err(io)?;
            Ok(1)
        }
    }
}

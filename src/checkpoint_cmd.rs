//! `wormfs checkpoint`: sign a checkpoint of the chain as it stands (the index read-only, so
//! also beside a running daemon) and, with --witness, get it cosigned.

use std::fmt;

use crate::checkpoint::{self, CheckpointError, LogSigner, WitnessKey};
use crate::core::chain::ChainChecker;
use crate::core::store::Store;
use crate::keys::{self, KeyError};
use crate::state_dir::{IndexOpenError, StateDir};
use crate::witness::{Witness, WitnessError};

#[derive(Debug)]
pub enum CheckpointCmdError {
    Key(KeyError),
    Index(IndexOpenError),
    Sign(CheckpointError),
    BadWitness(String),
    Witness {
        name: String,
        err: WitnessError,
    },
    /// The chain does not check out from the trust anchor: no checkpoint is signed over it.
    BrokenChain {
        findings: usize,
        first: String,
    },
}

impl fmt::Display for CheckpointCmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointCmdError::Key(e) => write!(f, "{e}"),
            CheckpointCmdError::Index(e) => write!(f, "{e}"),
            CheckpointCmdError::Sign(e) => write!(f, "{e}"),
            CheckpointCmdError::BadWitness(v) => write!(f, "--witness: {v:?} is not a witness vkey"),
            CheckpointCmdError::Witness { name, err } => write!(f, "witness {name}: {err}"),
            CheckpointCmdError::BrokenChain { findings, first } => write!(
                f,
                "refusing to sign a checkpoint: the chain has {findings} findings from its trust anchor (first: {first}); run wormfs verify"
            ),
        }
    }
}

impl std::error::Error for CheckpointCmdError {}

/// A checkpoint vouches for the chain it covers: this tool signs none over records that do not
/// check out from the trust anchor (forged ones appended behind the daemon's back, say), so it
/// cannot be used to get them cosigned. (Root can write its own signer; a witness then holds the
/// evidence, and verify names the records.)
fn refuse_a_broken_chain(state: &StateDir, store: &dyn Store) -> Result<(), CheckpointCmdError> {
    let anchor_path = state.public_key();
    if !anchor_path.exists() {
        return Err(CheckpointCmdError::Key(KeyError::Missing(anchor_path)));
    }
    let anchor = keys::load_public(&anchor_path.to_string_lossy()).map_err(CheckpointCmdError::Key)?;
    let mut checker = ChainChecker::new(anchor);
    store
        .scan_records(0, &mut |seq, bytes| {
            checker.check(seq, bytes);
            true
        })
        .map_err(|err| CheckpointCmdError::Index(IndexOpenError::Store { path: state.index(), err }))?;
    let report = checker.finish();
    match report.findings.first() {
        None => Ok(()),
        Some(first) => {
            Err(CheckpointCmdError::BrokenChain { findings: report.findings.len(), first: first.to_string() })
        }
    }
}

/// The signed (and cosigned) checkpoint note.
pub fn run(state: &StateDir, witness_args: &[String], old_size: u64) -> Result<String, CheckpointCmdError> {
    let (origin, key) = keys::load_checkpoint_key(state).map_err(CheckpointCmdError::Key)?;
    let store = state.open_index_read_only().map_err(CheckpointCmdError::Index)?;
    refuse_a_broken_chain(state, &store)?;
    let mut cp = checkpoint::sign(&store, &LogSigner::new(origin, key)).map_err(CheckpointCmdError::Sign)?;
    for pair in witness_args.chunks(2) {
        let [url, vkey] = pair else { return Err(CheckpointCmdError::BadWitness(String::new())) };
        let key = WitnessKey::parse(vkey).ok_or_else(|| CheckpointCmdError::BadWitness(vkey.clone()))?;
        let mut witness = Witness::new(url, key);
        witness.cosigned_size = old_size;
        let line = witness
            .cosign(&store, &cp)
            .map_err(|err| CheckpointCmdError::Witness { name: witness.key.name.clone(), err })?;
        cp.add_cosignature(&line).map_err(|e| CheckpointCmdError::Witness {
            name: witness.key.name.clone(),
            err: WitnessError::BadCosignature(e),
        })?;
    }
    Ok(String::from_utf8_lossy(&cp.to_note()).into_owned())
}

//! The durable side of the chain: `core::store::Store` implemented on RocksDB (`rocks`), which
//! the daemon and the offline tools use, and an in-memory twin (`memory`) with the same
//! semantics, so the core's tests run without touching disk yet exercise the same rules.

pub mod memory;
pub mod rocks;

#[cfg(test)]
mod conformance;

pub use memory::MemoryStore;
pub use rocks::RocksStore;

use crate::core::store::{next_seq, Head, StoreError, StoreResult};

/// The one rule both stores enforce on a commit: the chain grows by exactly one record, so a
/// bug in the core can neither leave a gap nor overwrite history.
fn check_next_seq(head: Option<&Head>, seq: u64) -> StoreResult<()> {
    let expected = next_seq(head)?;
    if seq == expected {
        Ok(())
    } else {
        Err(StoreError::OutOfSequence { seq, expected })
    }
}

//! The counters people alert on, kept by the core as it works (atomics: no lock on the write
//! path). `crate::metrics` turns them into a Prometheus text file.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::error::FsError;
use super::ledger::LedgerError;
use super::sync::lock;

/// Why a seal failed, as the metrics tell it: an admin fixes each differently (the data disk,
/// the state disk or index, or a bug to report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealFailure {
    /// Making the bytes durable failed (fdatasync of the backing file).
    Data,
    /// The index could not commit the record (a full or failing state disk, a corrupt index).
    Index,
    /// The chain refused the seal (an invariant broke: a seal that does not continue the file).
    Chain,
}

impl SealFailure {
    pub const ALL: [SealFailure; 3] = [SealFailure::Data, SealFailure::Index, SealFailure::Chain];

    pub fn of(err: &FsError) -> SealFailure {
        match err {
            FsError::Ledger { source: LedgerError::Store(_), .. } => SealFailure::Index,
            FsError::Ledger { .. } => SealFailure::Chain,
            _ => SealFailure::Data,
        }
    }

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            SealFailure::Data => "data",
            SealFailure::Index => "index",
            SealFailure::Chain => "chain",
        }
    }
}

/// Upper bounds (seconds) of the seal latency histogram's buckets.
pub const SEAL_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pub writes: AtomicU64,
    pub appended_bytes: AtomicU64,
    pub seals: AtomicU64,
    /// By `SealFailure`, in the order of `SealFailure::ALL`.
    seal_failures: [AtomicU64; 3],
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Cumulative counts per bucket of SEAL_BUCKETS, then +Inf.
    seal_buckets: [AtomicU64; SEAL_BUCKETS.len() + 1],
    seal_seconds_micros: AtomicU64,
    /// Key epochs begun (KeyRotate records), and rotations that failed (the key stayed).
    pub key_rotations: AtomicU64,
    pub key_rotation_failures: AtomicU64,
    /// Checkpoints signed and written, cosignatures received, and witness submissions that
    /// failed (down, refused, or an answer that did not verify).
    pub checkpoints: AtomicU64,
    pub witness_cosignatures: AtomicU64,
    pub witness_failures: AtomicU64,
    /// Files (and their bytes) the archive timer uploaded and recorded, and its failures (a run
    /// that could not start, or one file it could not archive, mirror or prune).
    pub archived_files: AtomicU64,
    pub archived_bytes: AtomicU64,
    pub archive_failures: AtomicU64,
    /// Writes and creates refused with ENOSPC for want of room on the state disk.
    pub space_refusals: AtomicU64,
}

/// A consistent-enough copy for export.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub writes: u64,
    pub appended_bytes: u64,
    pub seals: u64,
    /// Failed seals by reason.
    pub seal_failures: Vec<(SealFailure, u64)>,
    pub refused: BTreeMap<&'static str, u64>,
    /// Cumulative (le) counts for SEAL_BUCKETS then +Inf.
    pub seal_buckets: Vec<u64>,
    pub seal_seconds: f64,
    pub key_rotations: u64,
    pub key_rotation_failures: u64,
    pub checkpoints: u64,
    pub witness_cosignatures: u64,
    pub witness_failures: u64,
    pub archived_files: u64,
    pub archived_bytes: u64,
    pub archive_failures: u64,
    pub space_refusals: u64,
}

impl Metrics {
    pub fn appended(&self, bytes: usize) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.appended_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn refused(&self, operation: &'static str) {
        *lock(&self.refused).entry(operation).or_insert(0) += 1;
    }

    pub fn sealed(&self, took: Duration) {
        self.seals.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = SEAL_BUCKETS.iter().position(|le| secs <= *le).unwrap_or(SEAL_BUCKETS.len());
        self.seal_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.seal_seconds_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn seal_failed(&self, why: SealFailure) {
        let i = SealFailure::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.seal_failures[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = 0;
        let seal_buckets = self
            .seal_buckets
            .iter()
            .map(|b| {
                cumulative += b.load(Ordering::Relaxed);
                cumulative
            })
            .collect();
        Snapshot {
            writes: self.writes.load(Ordering::Relaxed),
            appended_bytes: self.appended_bytes.load(Ordering::Relaxed),
            seals: self.seals.load(Ordering::Relaxed),
            seal_failures: SealFailure::ALL
                .iter()
                .zip(&self.seal_failures)
                .map(|(why, n)| (*why, n.load(Ordering::Relaxed)))
                .collect(),
            refused: lock(&self.refused).clone(),
            seal_buckets,
            seal_seconds: self.seal_seconds_micros.load(Ordering::Relaxed) as f64 / 1e6,
            key_rotations: self.key_rotations.load(Ordering::Relaxed),
            key_rotation_failures: self.key_rotation_failures.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            witness_cosignatures: self.witness_cosignatures.load(Ordering::Relaxed),
            witness_failures: self.witness_failures.load(Ordering::Relaxed),
            archived_files: self.archived_files.load(Ordering::Relaxed),
            archived_bytes: self.archived_bytes.load(Ordering::Relaxed),
            archive_failures: self.archive_failures.load(Ordering::Relaxed),
            space_refusals: self.space_refusals.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative() {
        let m = Metrics::default();
        m.sealed(Duration::from_micros(500));
        m.sealed(Duration::from_millis(20));
        m.sealed(Duration::from_secs(3));
        let s = m.snapshot();
        assert_eq!(s.seals, 3);
        assert_eq!(s.seal_buckets[0], 1, "<= 1ms");
        assert_eq!(s.seal_buckets[4], 2, "<= 25ms");
        assert_eq!(*s.seal_buckets.last().unwrap(), 3, "+Inf counts all");
        m.refused("unlink");
        m.refused("unlink");
        assert_eq!(m.snapshot().refused.get("unlink"), Some(&2));
    }

    #[test]
    fn seal_failures_are_counted_by_reason() {
        use crate::core::store::StoreError;
        use crate::core::RelPath;
        let m = Metrics::default();
        let index = FsError::Ledger { path: RelPath::root(), source: LedgerError::Store(StoreError::ReadOnly) };
        let chain = FsError::Ledger {
            path: RelPath::root(),
            source: LedgerError::SealDoesNotContinue { path: RelPath::root(), start: 1, sealed: 0 },
        };
        let data = FsError::Os { path: RelPath::root(), errno: nix::errno::Errno::EIO };
        for e in [&index, &index, &chain, &data] {
            m.seal_failed(SealFailure::of(e));
        }
        let counts = m.snapshot().seal_failures;
        assert_eq!(counts, vec![(SealFailure::Data, 1), (SealFailure::Index, 2), (SealFailure::Chain, 1)]);
    }
}

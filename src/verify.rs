//! The checker behind `wormfs verify` (and the tests' proof that seals hold): with the public key
//! alone, check that the chain is intact and that every sealed byte in DATA_DIR still hashes to
//! its seal. Reads the index and DATA_DIR; changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::core::backing::DataDir;
use crate::core::chain::{ChainChecker, ChainFinding, ChainReport, EpochView};
use crate::core::history::{
    ArchiveDue, CheckedRange, Ended, FileHistory, History, HistoryFinding, HistoryWarning, Origin,
};
use crate::core::merkle::Frontier;
use crate::core::path::RelPath;
use crate::core::policy::{NodeKind, Refusal};
use crate::core::segment::{Hash, SegmentHasher};
use crate::core::store::{Store, StoreError};
use crate::core::FsError;
use nix::errno::Errno;

/// Something verify found wrong: tampering or loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Chain(ChainFinding),
    /// What the records show by themselves (`core::history`).
    History(HistoryFinding),
    /// The bytes in [start, end) no longer hash to what the record says.
    ContentChanged {
        path: RelPath,
        start: u64,
        end: u64,
        seq: u64,
    },
    /// The file is shorter than its sealed size.
    Truncated {
        path: RelPath,
        size: u64,
        sealed: u64,
    },
    /// A sealed or created file is gone, and no record explains it.
    Missing {
        path: RelPath,
    },
    /// A file in DATA_DIR that no record ever created or adopted.
    Injected {
        path: RelPath,
    },
    /// Something other than a regular file (a FIFO, socket, device, symlink or directory)
    /// where a file's history is, or anywhere in DATA_DIR: wormfs never makes one.
    NotAFile {
        path: RelPath,
        what: NodeKind,
    },
    /// A file or directory that could not be read (permissions, an I/O error, a name too long
    /// to reach): what it holds cannot be checked.
    Unreadable {
        path: RelPath,
        reason: String,
    },
    /// Bytes beyond the last seal after a clean Unmount: appended behind wormfs' back.
    AppendedAfterUnmount {
        path: RelPath,
        bytes: u64,
    },
    /// The index's own head (meta) names another newest record than the chain ends with:
    /// records were removed from (or added to) the end.
    HeadMismatch {
        index_seq: u64,
        chain_seq: u64,
    },
    /// The head the admin noted (`--expect-head`) is not in this chain: records were dropped
    /// from the end, or history was rewritten.
    ExpectedHeadMissing {
        seq: u64,
        detail: String,
    },
    /// A checkpoint (`--anchor`) covers more records than the chain holds: records were
    /// dropped from its end (a rollback).
    BehindAnchor {
        anchor: String,
        size: u64,
        records: u64,
    },
    /// The chain's first `size` records are not the ones the checkpoint signed: history was
    /// rewritten (a fork).
    ForkedFromAnchor {
        anchor: String,
        size: u64,
    },
    /// A record dated after the verifier's own clock (beyond `FUTURE_TOLERANCE_NS`): wormfs
    /// never writes one, and dating records ahead is how retention would be expired early.
    FromTheFuture {
        seq: u64,
        time_ns: u64,
        now_ns: u64,
    },
    /// A checkpoint given as an anchor that does not carry the signatures it must (the log's
    /// checkpoint key, a required witness), or is not this log's: it proves nothing.
    AnchorUnverified {
        anchor: String,
        why: String,
    },
    /// An archived copy in S3 (`--archive`) is not what its Archived record put there, or no
    /// longer locked as the chain requires.
    Archive(ArchiveFinding),
    /// The bucket archived copies are in does not have Object Lock enabled: whatever lock its
    /// objects claim, nothing enforces it (some servers accept lock headers there).
    ArchiveBucketUnlocked {
        bucket: String,
    },
}

/// What is wrong with one archived copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFinding {
    pub path: RelPath,
    /// The Archived record.
    pub seq: u64,
    pub key: String,
    pub version_id: String,
    pub problem: ArchiveProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveProblem {
    /// The recorded version is gone (deleted, or never there).
    Missing,
    /// The receipt object beside it is gone.
    ReceiptMissing,
    /// Its bytes are not the archived bytes: another size, or [start, end) hashes otherwise.
    ContentChanged {
        start: u64,
        end: u64,
    },
    SizeDiffers {
        size: u64,
    },
    /// Not locked in COMPLIANCE mode (GOVERNANCE can be lifted; none means no lock).
    NotCompliance {
        mode: Option<&'static str>,
    },
    /// Locked until before the date the chain requires (or with no date).
    RetentionShort {
        until_ns: Option<u64>,
        due_ns: u64,
    },
    /// A hold covers the file in the chain, but the object has no legal hold.
    HoldMissing {
        hold: RelPath,
    },
    /// The server answered something else than the object for this version (not a 404).
    Unreadable {
        reason: String,
    },
    /// The key is not the one wormfs gives these bytes (`PREFIX/PATH@FILE_HASH` with a clean
    /// prefix): the record names one object while the bytes may be in another.
    WrongKey,
}

/// Worth knowing, not proof of tampering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// What the records show by themselves (adoptions, bytes recovered after a crash).
    History(HistoryWarning),
    /// Bytes beyond the last seal while the chain is open (the daemon is running or stopped
    /// uncleanly; the next seal or mount recovery covers them).
    UnsealedTail { path: RelPath, bytes: u64 },
    /// A file whose Delete was recorded is still there (a crash between the record and the unlink).
    DeleteNotCompleted { path: RelPath, seq: u64 },
    /// A file whose Rename was recorded is still under its old name (a crash between the record
    /// and the rename; the next mount adopts it there).
    RenameNotCompleted { path: RelPath, from: RelPath, seq: u64 },
    /// The chain claims to be mounted, but its newest epoch began long ago: the daemon stopped
    /// without an Unmount (a crash or a kill), or records were dropped from its end. Anchors
    /// tell which.
    StaleEpoch { epoch: u64, since_ns: u64, epoch_ns: u64 },
    /// A newer version (or a delete marker) sits on top of an archived version: it is intact,
    /// but a reader that does not ask for its version id gets something else.
    ArchiveCovered { path: RelPath, key: String, version_id: String },
    /// The object still has a legal hold the chain has cleared (the next archive run lifts it).
    ArchiveHoldNotCleared { path: RelPath, key: String },
    /// Archived records about another bucket than the one checked: not checked.
    ArchiveNotChecked { bucket: String, copies: u64 },
    /// A sealed file with no copy of its sealed bytes in the bucket checked (not closed yet,
    /// archived before it grew, or archiving failed or was stopped).
    ArchiveNotArchived { path: RelPath, size: u64 },
    /// An archived copy is gone after the date the chain retained it until (and no hold covers
    /// it): deleted as it may be, like a local file past its retention.
    ArchiveExpiredGone { path: RelPath, key: String, retain_until_ns: u64 },
}

impl Finding {
    /// A stable name for the kind of finding (the `--json` report and the summary use it).
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Chain(c) => match c {
                ChainFinding::Undecodable { .. } => "chain.undecodable",
                ChainFinding::Misplaced { .. } => "chain.misplaced",
                ChainFinding::Gap { .. } => "chain.gap",
                ChainFinding::OutOfOrder { .. } => "chain.out_of_order",
                ChainFinding::BrokenLink { .. } => "chain.broken_link",
                ChainFinding::BadHash { .. } => "chain.bad_hash",
                ChainFinding::BadSignature { .. } => "chain.bad_signature",
                ChainFinding::UnknownKey { .. } => "chain.unknown_key",
                ChainFinding::TimeBackwards { .. } => "chain.time_backwards",
                ChainFinding::SeqExhausted { .. } => "chain.seq_exhausted",
                ChainFinding::WrongEpochKey { .. } => "chain.wrong_epoch_key",
                ChainFinding::OutsideEpoch { .. } => "chain.outside_epoch",
                ChainFinding::BadRotation { .. } => "chain.bad_rotation",
            },
            Finding::History(h) => match h {
                HistoryFinding::Recreated { .. } => "file.recreated",
                HistoryFinding::SealWithoutOrigin { .. } => "file.sealed_without_origin",
                HistoryFinding::NoHistory { .. } => "file.no_history",
                HistoryFinding::SealsDoNotChain { .. } => "file.seals_do_not_chain",
                HistoryFinding::ChangedBeforeExpiry { .. } => "file.changed_before_expiry",
                HistoryFinding::ChangedUnderHold { .. } => "file.changed_under_hold",
                HistoryFinding::TruncateMisplaced { .. } => "file.truncate_misplaced",
                HistoryFinding::SealedAfterCleanUnmount { .. } => "file.sealed_after_clean_unmount",
                HistoryFinding::RecoveredOutsideRecovery { .. } => "chain.recovered_outside_recovery",
                HistoryFinding::WhileUnmounted { .. } => "chain.record_while_unmounted",
                HistoryFinding::Damaged { .. } => "file.damaged",
                HistoryFinding::AbortedNothing { .. } => "chain.aborted_nothing",
                HistoryFinding::ArchivedUnsealed { .. } => "chain.archived_unsealed",
                HistoryFinding::PrunedWithoutArchive { .. } => "file.pruned_without_archive",
            },
            Finding::ContentChanged { .. } => "file.content_changed",
            Finding::Truncated { .. } => "file.truncated",
            Finding::Missing { .. } => "file.missing",
            Finding::Injected { .. } => "file.injected",
            Finding::NotAFile { .. } => "file.not_a_file",
            Finding::Unreadable { .. } => "file.unreadable",
            Finding::AppendedAfterUnmount { .. } => "file.appended_after_unmount",
            Finding::HeadMismatch { .. } => "chain.head_mismatch",
            Finding::ExpectedHeadMissing { .. } => "chain.expected_head_missing",
            Finding::BehindAnchor { .. } => "chain.behind_anchor",
            Finding::ForkedFromAnchor { .. } => "chain.forked_from_anchor",
            Finding::AnchorUnverified { .. } => "anchor.unverified",
            Finding::FromTheFuture { .. } => "chain.from_the_future",
            Finding::ArchiveBucketUnlocked { .. } => "archive.bucket_unlocked",
            Finding::Archive(a) => match a.problem {
                ArchiveProblem::Missing => "archive.missing",
                ArchiveProblem::ReceiptMissing => "archive.receipt_missing",
                ArchiveProblem::ContentChanged { .. } | ArchiveProblem::SizeDiffers { .. } => "archive.content_changed",
                ArchiveProblem::NotCompliance { .. } => "archive.unlocked",
                ArchiveProblem::RetentionShort { .. } => "archive.retention_short",
                ArchiveProblem::HoldMissing { .. } => "archive.hold_missing",
                ArchiveProblem::Unreadable { .. } => "archive.unreadable",
                ArchiveProblem::WrongKey => "archive.wrong_key",
            },
        }
    }

    /// The file the finding is about, if any.
    pub fn path(&self) -> Option<&RelPath> {
        match self {
            Finding::Chain(_)
            | Finding::HeadMismatch { .. }
            | Finding::ExpectedHeadMissing { .. }
            | Finding::BehindAnchor { .. }
            | Finding::ForkedFromAnchor { .. }
            | Finding::AnchorUnverified { .. }
            | Finding::FromTheFuture { .. }
            | Finding::ArchiveBucketUnlocked { .. } => None,
            Finding::History(h) => match h {
                HistoryFinding::Recreated { path, .. }
                | HistoryFinding::SealWithoutOrigin { path, .. }
                | HistoryFinding::NoHistory { path, .. }
                | HistoryFinding::SealsDoNotChain { path, .. }
                | HistoryFinding::ChangedBeforeExpiry { path, .. }
                | HistoryFinding::ChangedUnderHold { path, .. }
                | HistoryFinding::TruncateMisplaced { path, .. }
                | HistoryFinding::SealedAfterCleanUnmount { path, .. }
                | HistoryFinding::RecoveredOutsideRecovery { path, .. }
                | HistoryFinding::Damaged { path, .. }
                | HistoryFinding::ArchivedUnsealed { path, .. }
                | HistoryFinding::PrunedWithoutArchive { path, .. } => Some(path),
                HistoryFinding::WhileUnmounted { .. } | HistoryFinding::AbortedNothing { .. } => None,
            },
            Finding::ContentChanged { path, .. }
            | Finding::Truncated { path, .. }
            | Finding::Missing { path }
            | Finding::Injected { path }
            | Finding::NotAFile { path, .. }
            | Finding::Unreadable { path, .. }
            | Finding::AppendedAfterUnmount { path, .. } => Some(path),
            Finding::Archive(a) => Some(&a.path),
        }
    }
}

impl Warning {
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::History(HistoryWarning::Adopted { .. }) => "file.adopted",
            Warning::History(HistoryWarning::RecoveredUnproven { .. }) => "file.recovered_unproven",
            Warning::UnsealedTail { .. } => "file.unsealed_tail",
            Warning::DeleteNotCompleted { .. } => "file.delete_not_completed",
            Warning::RenameNotCompleted { .. } => "file.rename_not_completed",
            Warning::StaleEpoch { .. } => "chain.stale_epoch",
            Warning::ArchiveCovered { .. } => "archive.covered",
            Warning::ArchiveHoldNotCleared { .. } => "archive.hold_not_cleared",
            Warning::ArchiveNotChecked { .. } => "archive.not_checked",
            Warning::ArchiveExpiredGone { .. } => "archive.expired_gone",
            Warning::ArchiveNotArchived { .. } => "archive.not_archived",
        }
    }

    pub fn path(&self) -> Option<&RelPath> {
        match self {
            Warning::History(HistoryWarning::Adopted { path, .. })
            | Warning::History(HistoryWarning::RecoveredUnproven { path, .. })
            | Warning::UnsealedTail { path, .. }
            | Warning::DeleteNotCompleted { path, .. }
            | Warning::RenameNotCompleted { path, .. } => Some(path),
            Warning::ArchiveCovered { path, .. }
            | Warning::ArchiveHoldNotCleared { path, .. }
            | Warning::ArchiveExpiredGone { path, .. }
            | Warning::ArchiveNotArchived { path, .. } => Some(path),
            Warning::StaleEpoch { .. } | Warning::ArchiveNotChecked { .. } => None,
        }
    }
}

fn expiry(ns: u64) -> String {
    crate::core::timefmt::rfc3339_ns(ns)
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Chain(c) => write!(f, "chain: {c}"),
            Finding::History(h) => match h {
                HistoryFinding::Recreated { path, seq, earlier } => write!(
                    f,
                    "{path}: created again by record {seq} while its history ({}) never ended: it would erase that history",
                    origin(earlier)
                ),
                HistoryFinding::SealWithoutOrigin { path, seq } => {
                    write!(f, "{path}: sealed by record {seq}, but no record ever created or adopted it")
                }
                HistoryFinding::NoHistory { path, op, seq } => {
                    write!(f, "{path}: {op} (record {seq}) of a file the chain has no history of")
                }
                HistoryFinding::SealsDoNotChain { path, seq } => {
                    write!(f, "{path}: record {seq} does not continue the file's seals")
                }
                HistoryFinding::ChangedBeforeExpiry { path, op, seq, retain_until_ns } => write!(
                    f,
                    "{path}: {op} (record {seq}) before its retention expired at {}",
                    expiry(*retain_until_ns)
                ),
                HistoryFinding::ChangedUnderHold { path, op, seq, hold } => {
                    write!(f, "{path}: {op} (record {seq}) while under legal hold on {hold}")
                }
                HistoryFinding::TruncateMisplaced { path, seq } => {
                    write!(f, "{path}: truncate (record {seq}) keeps a part that does not start at a seal")
                }
                HistoryFinding::SealedAfterCleanUnmount { path, start, end, seq } => write!(
                    f,
                    "{path}: bytes [{start}, {end}) were sealed at a mount after a clean unmount (record {seq}): they were added behind wormfs' back"
                ),
                HistoryFinding::RecoveredOutsideRecovery { path, seq } => {
                    write!(f, "{path}: record {seq} is a recovery seal outside a mount's recovery")
                }
                HistoryFinding::WhileUnmounted { seq, kind } => {
                    write!(f, "chain: record {seq} ({kind}) comes between an Unmount and the next Mount")
                }
                HistoryFinding::AbortedNothing { seq, change } => write!(
                    f,
                    "chain: record {seq} aborts record {change}, which is not the newest Delete, Rename or Truncate of its files"
                ),
                HistoryFinding::Damaged { path, seq, sealed, size } if size > sealed => write!(
                    f,
                    "{path}: bytes [{sealed}, {size}) past the seals are damaged (record {seq}: added outside wormfs, or their fdatasync failed); they are not sealed"
                ),
                HistoryFinding::Damaged { path, seq, sealed, size } => write!(
                    f,
                    "{path}: wormfs found it cut to {size} of {sealed} sealed bytes (record {seq})"
                ),
                HistoryFinding::ArchivedUnsealed { path, seq } => {
                    write!(f, "{path}: record {seq} archives bytes that are not the file's sealed bytes")
                }
                HistoryFinding::PrunedWithoutArchive { path, seq, archived } => write!(
                    f,
                    "{path}: deleted as archived (record {seq}), but record {archived} is no archive of these bytes"
                ),
            },
            Finding::ContentChanged { path, start, end, seq } => {
                write!(f, "{path}: bytes [{start}, {end}) changed since sealed (record {seq})")
            }
            Finding::Truncated { path, size, sealed } => {
                write!(f, "{path}: truncated to {size} bytes, {sealed} were sealed")
            }
            Finding::Missing { path } => write!(f, "{path}: missing, no record explains it"),
            Finding::Injected { path } => write!(f, "{path}: in the data directory but never created through wormfs"),
            Finding::NotAFile { path, what } => {
                write!(f, "{path}: a {what:?} in the data directory where wormfs keeps only regular files")
            }
            Finding::Unreadable { path, reason } => write!(f, "{path}: cannot be read ({reason}); it is not checked"),
            Finding::AppendedAfterUnmount { path, bytes } => {
                write!(f, "{path}: {bytes} bytes appended after the clean unmount")
            }
            Finding::HeadMismatch { index_seq, chain_seq } => {
                write!(f, "the index says the newest record is {index_seq}, but the chain ends at record {chain_seq}")
            }
            Finding::ExpectedHeadMissing { seq, detail } => write!(f, "expected head record {seq}: {detail}"),
            Finding::BehindAnchor { anchor, size, records } => write!(
                f,
                "checkpoint {anchor} covers {size} records but the chain holds {records}: records were dropped from its end"
            ),
            Finding::ForkedFromAnchor { anchor, size } => write!(
                f,
                "the chain's first {size} records are not the ones checkpoint {anchor} signed: history was rewritten"
            ),
            Finding::AnchorUnverified { anchor, why } => write!(f, "checkpoint {anchor} proves nothing: {why}"),
            Finding::FromTheFuture { seq, time_ns, now_ns } => write!(
                f,
                "record {seq} is dated {}, after this verifier's clock ({}): records were dated ahead (or this machine's clock is wrong)",
                expiry(*time_ns),
                expiry(*now_ns)
            ),
            Finding::ArchiveBucketUnlocked { bucket } => write!(
                f,
                "bucket {bucket} does not have Object Lock enabled: nothing stops its archived copies from being deleted"
            ),
            Finding::Archive(a) => {
                write!(f, "{}: archived copy {} version {} (record {}) ", a.path, a.key, a.version_id, a.seq)?;
                match &a.problem {
                    ArchiveProblem::Missing => write!(f, "is gone from the bucket"),
                    ArchiveProblem::ReceiptMissing => write!(f, "has lost its receipt ({}.receipt)", a.key),
                    ArchiveProblem::ContentChanged { start, end } => {
                        write!(f, "differs from the sealed bytes in [{start}, {end})")
                    }
                    ArchiveProblem::SizeDiffers { size } => write!(f, "holds {size} bytes, not the archived size"),
                    ArchiveProblem::NotCompliance { mode: Some(mode) } => {
                        write!(f, "is locked in {mode} mode, which can be lifted: not COMPLIANCE")
                    }
                    ArchiveProblem::NotCompliance { mode: None } => write!(f, "has no Object Lock retention"),
                    ArchiveProblem::RetentionShort { until_ns: Some(until), due_ns } => write!(
                        f,
                        "is locked only until {}; the chain retains it until {}",
                        expiry(*until),
                        expiry(*due_ns)
                    ),
                    ArchiveProblem::RetentionShort { until_ns: None, due_ns } => {
                        write!(f, "has no retain-until date; the chain retains it until {}", expiry(*due_ns))
                    }
                    ArchiveProblem::HoldMissing { hold } => {
                        write!(f, "has no legal hold, but the hold on {hold} covers it in the chain")
                    }
                    ArchiveProblem::Unreadable { reason } => write!(f, "could not be checked: {reason}"),
                    ArchiveProblem::WrongKey => write!(f, "is not under the key wormfs gives these bytes"),
                }
            }
        }
    }
}

fn origin(o: &Origin) -> String {
    match o {
        Origin::Created { seq } => format!("created by record {seq}"),
        Origin::Adopted { seq } => format!("adopted by record {seq}"),
        Origin::Renamed { from, seq } => format!("renamed from {from} by record {seq}"),
        Origin::Unknown => "of unknown origin".into(),
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ArchiveCovered { path, key, version_id } => write!(
                f,
                "{path}: the archived version {version_id} of {key} is intact, but something newer sits on top of it (a plain GET of the key returns other bytes)"
            ),
            Warning::ArchiveHoldNotCleared { path, key } => {
                write!(f, "{path}: {key} still has a legal hold the chain has cleared (the next archive run lifts it)")
            }
            Warning::ArchiveNotChecked { bucket, copies } => {
                write!(f, "{copies} archived copies are in bucket {bucket}, which was not checked")
            }
            Warning::ArchiveNotArchived { path, size } => {
                write!(f, "{path}: its {size} sealed bytes have no copy in the bucket checked")
            }
            Warning::ArchiveExpiredGone { path, key, retain_until_ns } => write!(
                f,
                "{path}: the archived copy {key} is gone, after the chain's retention of it ended ({})",
                expiry(*retain_until_ns)
            ),
            Warning::History(HistoryWarning::Adopted { path, seq }) => {
                write!(f, "{path}: adopted by wormfs (record {seq}), not created through it")
            }
            Warning::History(HistoryWarning::RecoveredUnproven { path, start, end, seq }) => write!(
                f,
                "{path}: bytes [{start}, {end}) sealed at recovery after an unclean stop (record {seq}): origin not proven"
            ),
            Warning::UnsealedTail { path, bytes } => write!(f, "{path}: {bytes} bytes not sealed yet"),
            Warning::DeleteNotCompleted { path, seq } => {
                write!(f, "{path}: deleted by record {seq} but still present (stopped between record and unlink)")
            }
            Warning::RenameNotCompleted { path, from, seq } => write!(
                f,
                "{path}: renamed from {from} by record {seq}, but the file is still at {from} (stopped between record and rename)"
            ),
            Warning::StaleEpoch { epoch, since_ns, epoch_ns } => write!(
                f,
                "the chain claims to be mounted, but its newest key epoch ({epoch}) began at {}, more than {} epochs of {} s ago: the daemon stopped uncleanly, or the newest records were dropped",
                expiry(*since_ns),
                STALE_EPOCHS,
                epoch_ns / 1_000_000_000
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub records: u64,
    /// (seq, hash, time_ns) of the newest record.
    pub head: Option<(u64, Hash, u64)>,
    pub files: u64,
    pub bytes_hashed: u64,
    /// Wall time spent re-hashing file contents (for the throughput figure).
    pub hash_time: std::time::Duration,
    /// Threads that hashed files in parallel.
    pub threads: usize,
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
    /// The key epoch the chain ends in, and how many rotations led there.
    pub epoch: EpochView,
    pub rotations: u64,
    /// The anchors the chain was found to extend: (name, tree size).
    pub anchored: Vec<(String, u64)>,
    /// Every archived copy and the lock it must have (checked against S3 by `archive::check`
    /// when verify is given --archive).
    pub archived: Vec<ArchiveDue>,
    /// With --archive: the bucket checked and how many copies it holds that were checked.
    pub archive_checked: Option<(String, u64)>,
    /// Every file with sealed bytes, with its sealed size and file_hash now (what an archive
    /// should hold a copy of).
    pub sealed: Vec<(RelPath, u64, Hash)>,
}

impl Report {
    /// The newest record signed by a key wormfs has destroyed: everything up to it is
    /// forward-secure (0: nothing is, the chain never rotated its key).
    pub fn forward_secure_through(&self) -> u64 {
        self.epoch.since_seq
    }
}

/// A checkpoint to hold the chain to (`--anchor`), its signatures already checked.
#[derive(Debug, Clone)]
pub struct Anchor {
    pub name: String,
    pub size: u64,
    pub root: Hash,
}

/// A chain that claims to be mounted and whose newest epoch began this many epochs ago gets a
/// warning: a running daemon rotates every epoch.
pub const STALE_EPOCHS: u64 = 4;

/// How far ahead of the verifier's clock a record may be dated before it is a finding: clocks of
/// two honest machines differ by less.
pub const FUTURE_TOLERANCE_NS: u64 = 10 * 60 * 1_000_000_000;

/// What to check and how to show progress.
#[derive(Default)]
pub struct Options {
    /// Only files under this path (the chain itself is always checked whole).
    pub path_prefix: Option<RelPath>,
    /// A head (seq, hash) noted at an earlier verify: it must still be in the chain.
    pub expect_head: Option<(u64, Hash)>,
    /// Checkpoints the chain must extend.
    pub anchors: Vec<Anchor>,
    /// Findings about anchors that could not be used (bad signatures), reported as they are.
    pub anchor_findings: Vec<Finding>,
    /// The time now (ns), for the stale-epoch warning; None: no such warning.
    pub now_ns: Option<u64>,
    /// Called from the hashing threads with the number of bytes just hashed.
    pub progress: Option<Box<dyn Fn(u64) + Sync>>,
}

impl Options {
    fn covers(&self, path: &RelPath) -> bool {
        self.path_prefix.as_ref().is_none_or(|prefix| path.is_under(prefix))
    }
}

impl Report {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

#[derive(Debug)]
pub enum VerifyError {
    Store(StoreError),
    Io { path: PathBuf, err: std::io::Error },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Store(e) => write!(f, "{e}"),
            VerifyError::Io { path, err } => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for VerifyError {}

/// The chain checked record by record, replayed into file histories, and hashed into its
/// Merkle tree (whose root is kept at each size in `sizes`).
struct Replay {
    chain: ChainReport,
    history: History,
    head_time: u64,
    /// The tree's root at each requested size the chain reaches.
    roots: BTreeMap<u64, Hash>,
    leaves: u64,
    /// The first record dated after the verifier's clock (seq, time).
    future: Option<(u64, u64)>,
}

impl Replay {
    fn of(
        store: &dyn Store,
        key: VerifyingKey,
        sizes: &BTreeSet<u64>,
        now: Option<u64>,
    ) -> Result<Replay, VerifyError> {
        let latest_allowed = now.map(|n| n.saturating_add(FUTURE_TOLERANCE_NS));
        let mut future = None;
        let mut checker = ChainChecker::new(key);
        let mut history = History::default();
        let mut head_time = 0;
        // The leaves are the stored values in key order, exactly as a checkpoint hashed them:
        // anything removed, added or changed before an anchor's size changes its root.
        let mut tree = Frontier::default();
        let mut roots = BTreeMap::new();
        if sizes.contains(&0) {
            roots.insert(0, tree.root());
        }
        store
            .scan_records(0, &mut |stored_seq, bytes| {
                if stored_seq > 0 {
                    tree.push(bytes);
                    if sizes.contains(&tree.size()) {
                        roots.insert(tree.size(), tree.root());
                    }
                }
                if let Some(record) = checker.check(stored_seq, bytes) {
                    head_time = record.fields.time_ns;
                    if future.is_none() && latest_allowed.is_some_and(|limit| head_time > limit) {
                        future = Some((record.seq(), head_time));
                    }
                    history.apply(record.seq(), record.fields.time_ns, &record.fields.payload);
                }
                true
            })
            .map_err(VerifyError::Store)?;
        Ok(Replay { chain: checker.finish(), history, head_time, roots, leaves: tree.size(), future })
    }
}

/// What each anchor says about the chain: extended (Ok, kept in `anchored`), or a finding.
fn check_anchors(anchors: &[Anchor], roots: &BTreeMap<u64, Hash>, records: u64) -> (Vec<Finding>, Vec<(String, u64)>) {
    let mut findings = Vec::new();
    let mut anchored = Vec::new();
    for a in anchors {
        match roots.get(&a.size) {
            Some(root) if *root == a.root => anchored.push((a.name.clone(), a.size)),
            Some(_) => findings.push(Finding::ForkedFromAnchor { anchor: a.name.clone(), size: a.size }),
            None => findings.push(Finding::BehindAnchor { anchor: a.name.clone(), size: a.size, records }),
        }
    }
    (findings, anchored)
}

/// Check the chain in `store` against `key` and the files in `data_dir`.
pub fn check(store: &dyn Store, data_dir: &Path, key: VerifyingKey) -> Result<Report, VerifyError> {
    check_with(store, data_dir, key, &Options::default())
}

/// The total of sealed bytes `check_with` will hash (for a progress bar's length).
pub fn sealed_bytes(store: &dyn Store, opts: &Options) -> Result<u64, VerifyError> {
    let files = store.files().map_err(VerifyError::Store)?;
    Ok(files.iter().filter(|(p, _)| opts.covers(p)).map(|(_, f)| f.sealed_size).sum())
}

/// Three steps: replay the chain into per-file histories, re-hash every covered file against
/// its history, then reconcile what is on disk with what the chain explains.
pub fn check_with(
    store: &dyn Store,
    data_dir: &Path,
    key: VerifyingKey,
    opts: &Options,
) -> Result<Report, VerifyError> {
    let data = DataDir::open(data_dir)
        .map_err(|e| VerifyError::Io { path: data_dir.to_path_buf(), err: std::io::Error::from(e) })?;
    let sizes: BTreeSet<u64> = opts.anchors.iter().map(|a| a.size).collect();
    let Replay { chain, history, head_time, roots, leaves, future } = Replay::of(store, key, &sizes, opts.now_ns)?;
    let (anchor_findings, anchored) = check_anchors(&opts.anchors, &roots, leaves);
    let closed = history.closed();
    let archived = history.archive_dues();
    let sealed =
        history.files.iter().filter(|(_, h)| h.sealed > 0).map(|(p, h)| (p.clone(), h.sealed, h.file_hash)).collect();
    let History { files, ended, renamed, findings: history_findings, warnings: history_warnings, .. } = history;
    let mut findings: Vec<Finding> = chain.findings.into_iter().map(Finding::Chain).collect();
    // What the records show is about the chain as a whole: reported whatever --path says.
    findings.extend(history_findings.into_iter().map(Finding::History));
    findings.extend(opts.anchor_findings.iter().cloned());
    if let (Some((seq, time_ns)), Some(now_ns)) = (future, opts.now_ns) {
        findings.push(Finding::FromTheFuture { seq, time_ns, now_ns });
    }
    findings.extend(anchor_findings);
    let chain_seq = chain.head.map_or(0, |(seq, _)| seq);
    match store.head() {
        Ok(Some(index_head)) if index_head.seq != chain_seq => {
            findings.push(Finding::HeadMismatch { index_seq: index_head.seq, chain_seq })
        }
        Ok(_) => {}
        // A head removed (or garbled) while records remain: the index no longer says where the
        // chain ends, which is exactly what a dropped tail would need.
        Err(StoreError::Corrupt(_)) => findings.push(Finding::HeadMismatch { index_seq: 0, chain_seq }),
        Err(e) => return Err(VerifyError::Store(e)),
    }
    if let Some((seq, hash)) = opts.expect_head {
        if let Some(detail) = expected_head_problem(store, seq, &hash)? {
            findings.push(Finding::ExpectedHeadMissing { seq, detail });
        }
    }

    let jobs: Vec<(&RelPath, &FileHistory)> = files.iter().filter(|(p, _)| opts.covers(p)).collect();
    let hashed = hash_files(&data, &jobs, closed, opts);

    let mut warnings: Vec<Warning> = history_warnings
        .into_iter()
        .map(Warning::History)
        .filter(|w| w.path().is_none_or(|p| opts.covers(p)))
        .collect();
    let mut interrupted_renames = BTreeSet::new();
    for outcome in &hashed.outcomes {
        for finding in &outcome.findings {
            // A renamed file missing at its new name but present at its old one: the daemon
            // stopped between the Rename record and the rename itself.
            if let Finding::Missing { path } = finding {
                if let Some((from, seq)) = renamed.get(path) {
                    let there = data.stat(from).is_ok_and(|st| NodeKind::from_mode(st.st_mode) == Some(NodeKind::File));
                    // Only the renamed file itself, every sealed byte intact and nothing more,
                    // is a rename that did not happen; anything else at the old name is planted.
                    if there && !files.contains_key(from) && is_intact(&data, from, &files[path]) {
                        warnings.push(Warning::RenameNotCompleted {
                            path: path.clone(),
                            from: from.clone(),
                            seq: *seq,
                        });
                        interrupted_renames.insert(from.clone());
                        continue;
                    }
                }
            }
            findings.push(finding.clone());
        }
        warnings.extend(outcome.warnings.iter().cloned());
    }
    let on_disk = walk(&data);
    findings.extend(on_disk.unreadable.into_iter().filter(|f| f.path().is_none_or(|p| opts.covers(p))));
    for (path, what) in &on_disk.others {
        // One where a history is was reported by check_file; anything else is planted.
        if opts.covers(path) && !files.contains_key(path) {
            findings.push(Finding::NotAFile { path: path.clone(), what: *what });
        }
    }
    for path in &on_disk.files {
        if opts.covers(path) && !files.contains_key(path) && !interrupted_renames.contains(path) {
            match ended.get(path) {
                // The deleted file itself, intact: an unlink that did not happen. Anything else
                // at the name is planted.
                Some(Ended::Deleted { seq, history }) if is_intact(&data, path, history) => {
                    warnings.push(Warning::DeleteNotCompleted { path: path.clone(), seq: *seq })
                }
                _ => findings.push(Finding::Injected { path: path.clone() }),
            }
        }
    }

    if let (Some(now), Some(epoch_ns), false) = (opts.now_ns, chain.epoch.epoch_ns, closed) {
        let stale_at = chain.epoch.since_ns.saturating_add(epoch_ns.saturating_mul(STALE_EPOCHS));
        if now > stale_at {
            warnings.push(Warning::StaleEpoch { epoch: chain.epoch.epoch, since_ns: chain.epoch.since_ns, epoch_ns });
        }
    }

    Ok(Report {
        records: chain.records,
        head: chain.head.map(|(seq, hash)| (seq, hash, head_time)),
        files: jobs.len() as u64,
        bytes_hashed: hashed.outcomes.iter().map(|o| o.hashed).sum(),
        hash_time: hashed.elapsed,
        threads: hashed.threads,
        findings,
        warnings,
        epoch: chain.epoch,
        rotations: chain.rotations,
        anchored,
        archived,
        archive_checked: None,
        sealed,
    })
}

/// Every covered file re-hashed, in the order of `jobs`.
struct Hashed {
    outcomes: Vec<FileOutcome>,
    elapsed: std::time::Duration,
    threads: usize,
}

/// Hash files in parallel, one thread per core; each file in one sequential read.
fn hash_files(data: &DataDir, jobs: &[(&RelPath, &FileHistory)], chain_closed: bool, opts: &Options) -> Hashed {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(jobs.len()));
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((path, history)) = jobs.get(i) else { return };
                let outcome = check_file(data, path, history, chain_closed, opts);
                results.lock().unwrap_or_else(|e| e.into_inner()).push((i, outcome));
            });
        }
    });
    let elapsed = started.elapsed();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let outcomes = results.into_iter().map(|(_, outcome)| outcome).collect();
    Hashed { outcomes, elapsed, threads }
}

/// Why the chain does not contain record `seq` with hash `hash`, if it does not.
fn expected_head_problem(store: &dyn Store, seq: u64, hash: &Hash) -> Result<Option<String>, VerifyError> {
    let found = store.record_bytes(seq).map_err(VerifyError::Store)?;
    Ok(match found.map(|bytes| crate::core::record::Record::decode(&bytes).map(|r| r.fields.hash())) {
        None => Some("not in the chain: records were removed from its end".into()),
        Some(Err(e)) => Some(format!("undecodable ({e})")),
        Some(Ok(h)) if h != *hash => Some(format!(
            "its hash is {}, not the {} noted: history was rewritten",
            crate::core::segment::hex(&h),
            crate::core::segment::hex(hash)
        )),
        Some(Ok(_)) => None,
    })
}

/// What checking one file found.
struct FileOutcome {
    hashed: u64,
    findings: Vec<Finding>,
    warnings: Vec<Warning>,
}

/// Whether the file at `path` is exactly what `history` sealed: every range checks out and no
/// byte lies past them.
fn is_intact(data: &DataDir, path: &RelPath, history: &FileHistory) -> bool {
    // Default options: no progress bar to count these bytes into.
    let out = check_file(data, path, history, true, &Options::default());
    out.findings.is_empty() && out.warnings.is_empty()
}

fn check_file(
    data: &DataDir,
    path: &RelPath,
    history: &FileHistory,
    chain_closed: bool,
    opts: &Options,
) -> FileOutcome {
    let mut out = FileOutcome { hashed: 0, findings: Vec::new(), warnings: Vec::new() };
    // Opened exactly as the daemon opens it: beneath DATA_DIR, no symlinks, never blocking on
    // a FIFO, regular files only. Whatever is wrong with this one file is a finding about it.
    let file = match data.open_file(path, false) {
        Ok(f) => f,
        Err(e) => {
            out.findings.push(open_finding(data, path, e));
            return out;
        }
    };
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            out.findings.push(Finding::Unreadable { path: path.clone(), reason: e.to_string() });
            return out;
        }
    };
    match check_content(&file, path, &history.ranges, size, opts) {
        Ok((hashed, content)) => {
            out.hashed = hashed;
            out.findings.extend(content);
        }
        Err(e) => out.findings.push(Finding::Unreadable { path: path.clone(), reason: e.to_string() }),
    }
    if size < history.sealed {
        out.findings.push(Finding::Truncated { path: path.clone(), size, sealed: history.sealed });
    } else if size > history.sealed {
        let bytes = size - history.sealed;
        if chain_closed {
            out.findings.push(Finding::AppendedAfterUnmount { path: path.clone(), bytes });
        } else {
            out.warnings.push(Warning::UnsealedTail { path: path.clone(), bytes });
        }
    }
    out
}

/// Why a file with a history could not be opened, as a finding about it.
fn open_finding(data: &DataDir, path: &RelPath, e: FsError) -> Finding {
    // Some nodes refuse open(2) itself (a socket: ENXIO): what is there tells why.
    let kind = data.stat(path).ok().and_then(|st| NodeKind::from_mode(st.st_mode));
    let path = path.clone();
    if let Some(what) = kind.filter(|k| *k != NodeKind::File) {
        return Finding::NotAFile { path, what };
    }
    match e {
        FsError::Os { errno: Errno::ENOENT, .. } => Finding::Missing { path },
        FsError::Os { errno: Errno::ELOOP, .. } => Finding::NotAFile { path, what: NodeKind::Symlink },
        FsError::Refused { refusal: Refusal::NotRegularFile(what), .. } => Finding::NotAFile { path, what },
        FsError::IsDirectory { .. } => Finding::NotAFile { path, what: NodeKind::Dir },
        other => Finding::Unreadable { path, reason: other.to_string() },
    }
}

/// Re-hash the file's sealed segments in one sequential read; report the first that fails.
fn check_content(
    file: &File,
    path: &RelPath,
    segments: &[CheckedRange],
    size: u64,
    opts: &Options,
) -> std::io::Result<(u64, Option<Finding>)> {
    // Large reads straight into one buffer: the hash, not the copying, should be the cost.
    let mut reader = file;
    let _ = nix::fcntl::posix_fadvise(file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL);
    let mut at = 0u64;
    let mut hashed = 0u64;
    let mut buf = vec![0u8; 4 << 20];
    for seg in segments {
        if seg.start != at || seg.end < seg.start || seg.end > size {
            // A broken file chain or truncation is reported elsewhere; stop reading here.
            break;
        }
        let mut hasher = SegmentHasher::default();
        let mut left = seg.end - seg.start;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
            hashed += n as u64;
            if let Some(progress) = &opts.progress {
                progress(n as u64);
            }
        }
        if left > 0 || hasher.finish() != seg.hash {
            let finding = Finding::ContentChanged { path: path.clone(), start: seg.start, end: seg.end, seq: seg.seq };
            return Ok((hashed, Some(finding)));
        }
        at = seg.end;
    }
    Ok((hashed, None))
}

/// What a walk of DATA_DIR found: regular files, anything else that is not a directory, and
/// what could not be read (each a finding, never a reason to stop).
#[derive(Debug, Default)]
struct Walk {
    files: BTreeSet<RelPath>,
    others: BTreeMap<RelPath, NodeKind>,
    unreadable: Vec<Finding>,
}

/// Every entry under DATA_DIR, through the same fd-relative, no-symlink access the daemon uses,
/// so no path is too long to reach and nothing outside DATA_DIR is read.
fn walk(data: &DataDir) -> Walk {
    let mut out = Walk::default();
    let mut stack = vec![RelPath::root()];
    while let Some(dir) = stack.pop() {
        let entries = match data.read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                out.unreadable.push(Finding::Unreadable { path: dir.clone(), reason: e.desc().to_string() });
                continue;
            }
        };
        for entry in entries {
            let child = match dir.join(&entry.name) {
                Ok(child) => child,
                Err(why) => {
                    let reason = format!("an entry named {:?} cannot be reached ({why:?})", entry.name);
                    out.unreadable.push(Finding::Unreadable { path: dir.clone(), reason });
                    continue;
                }
            };
            match NodeKind::from_mode(entry.file_type) {
                Some(NodeKind::Dir) => stack.push(child),
                Some(NodeKind::File) => {
                    out.files.insert(child);
                }
                Some(other) => {
                    out.others.insert(child, other);
                }
                None => {}
            }
        }
    }
    out
}

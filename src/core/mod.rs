//! The rules and state of a write-once filesystem, with no FUSE and no RocksDB in sight.
//! `policy` says what is allowed; `fs` applies it to live state over `backing` (DATA_DIR).

pub mod backing;
pub mod chain;
pub mod error;
pub mod fs;
pub mod handles;
pub mod history;
pub mod inodes;
pub mod ledger;
pub mod merkle;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod record;
pub mod retention;
pub mod seals;
pub mod segment;
pub mod space;
pub mod store;
mod sync;
pub mod tail_hash;
pub mod timefmt;

/// Whether this build hashes and seals what is written. Only the `bench-no-evidence` build
/// (`scripts/bench`, to measure what the evidence costs) does not.
pub const EVIDENCE: bool = !cfg!(feature = "bench-no-evidence");

pub use error::{Damage, FsError, FsResult};
pub use fs::{Attr, AttrChanges, Caller, DirEntry, FsStats, Opened, Started, TimeSet, WormFs, XattrReply};
pub use path::RelPath;
pub use policy::{NodeKind, Refusal};

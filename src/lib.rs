//! wormfs: a write-once FUSE filesystem for log files, every appended byte sealed into a signed
//! hash chain.
//!
//! Map of the modules (dependencies point down; the core imports nothing above it):
//!
//! - `cli`      — the command line: parses arguments and dispatches, nothing more.
//! - `defaults` — where the data and state directories are when no flag says (environment,
//!   /etc/default/wormfs).
//! - `config`   — the mount's config file: retention defaults, bounds, per-directory rules.
//! - `mount`    — checks before mounting, key and index, recovery, the fuser session, signals,
//!   clean unmount.
//! - `sealer`   — the interval sealer thread (close, fsync and unmount seal in the core).
//! - `checkpointer` — the key-epoch timer and the periodic checkpoint, written to a file and
//!   syslog and submitted to witnesses; `ticker` is the thread all three timers run on.
//! - `checkpoint` — C2SP checkpoints of the chain's Merkle tree: signing, reading, cosignatures.
//!   `checkpoint_cmd` runs `wormfs checkpoint`.
//! - `witness`  — submitting checkpoints to C2SP tlog-witnesses.
//! - `archive`  — off the box: `wormfs archive` uploads sealed files to S3 with Object Lock and
//!   records it, `wormfs verify --archive` checks the bucket against the chain; `archiver` is
//!   the daemon's timer that archives every interval.
//! - `receipt`  — one file's seal records with inclusion proofs, checked with the checkpoint
//!   key alone; `receipt_cmd` runs `wormfs receipt` and `wormfs verify-receipt`.
//! - `admin`    — hold and retention commands, the same whether run by the daemon or offline.
//! - `control`  — the root-only unix socket admin commands use while mounted.
//! - `inspect`  — `wormfs log` and `wormfs status`: read-only views of the index.
//! - `export`   — `wormfs export`: the stored records and the head as text, and reading that
//!   back into the in-memory store for `wormfs verify --export`.
//! - `verify`   — the checker: the chain and every sealed byte, with the public key alone;
//!   `verify_cmd` runs it for `wormfs verify`, `verify_report` prints the human and JSON report.
//! - `metrics`  — the Prometheus text file of the daemon's and verify's metrics.
//! - `keys`     — the key files in STATE_DIR: the epoch key (rotated and destroyed by its
//!   `FileVault`), the trust anchor, the checkpoint key.
//! - `state_dir` — STATE_DIR's layout: index, control socket, key files, metrics file.
//! - `fuse`     — the fuser `Filesystem` adapter: request → core call → reply; errno mapping.
//! - `index`    — the `Store` on RocksDB (`rocks`) and its in-memory twin (`memory`).
//! - `core`     — the rules and state, free of FUSE and RocksDB:
//!   - `policy`   which operation is allowed on which file state (pure functions);
//!   - `fs`       the filesystem state machine (inodes, handles, sizes) over DATA_DIR;
//!   - `seals`    sealing open files, catching up unsealed bytes, recovery at mount;
//!   - `history`  the one replay of records into per-file histories and what they show wrong,
//!     used by recovery at mount and by verify;
//!   - `ledger`   appending signed records with the file state they imply;
//!   - `record`, `chain`, `segment`  the record format, signing and checking (key epochs
//!     included), hashing; `merkle` the RFC 6962 tree over the records;
//!   - `retention` retain-until, holds and the clock floor; `timefmt` RFC 3339 timestamps;
//!   - `metrics`  the counters the core keeps as it works;
//!   - `tail_hash` the running hash of an open file's unsealed bytes (on a thread of its own
//!     for large writes);
//!   - `space`    room on the state disk: no commit below the store's reserve, no new bytes
//!     a margin above it;
//!   - `store`    the traits the core needs from outside (Store, Clock, KeyVault);
//!   - `backing`  DATA_DIR access that can never escape DATA_DIR (and the fault plan tests
//!     inject I/O errors through); `path` validated paths.

pub mod admin;
pub mod archive;
pub mod archiver;
pub mod checkpoint;
pub mod checkpoint_cmd;
pub mod checkpointer;
pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod defaults;
pub mod export;
pub mod fuse;
pub mod index;
pub mod inspect;
pub mod keys;
pub mod metrics;
pub mod mount;
pub mod receipt;
pub mod receipt_cmd;
pub mod sealer;
pub mod state_dir;
pub mod ticker;
pub mod verify;
pub mod verify_cmd;
pub mod verify_report;
pub mod witness;

//! wormfs: a write-once FUSE filesystem for log files.
//!
//! Map of the modules (dependencies point down; the core imports nothing above it):
//!
//! - `cli`    — the command line: parses arguments and dispatches, nothing more.
//! - `mount`  — checks before mounting, the fuser session, signals and a clean unmount.
//! - `fuse`   — the fuser `Filesystem` adapter: request → core call → reply; errno mapping.
//! - `index`  — the Store on RocksDB (`rocks`) and its in-memory twin (`memory`).
//! - `core`   — the rules and state, free of FUSE and RocksDB:
//!   - `core::policy`  which operation is allowed on which file state (pure functions);
//!   - `core::fs`      the filesystem state machine (inodes, handles, sizes) over DATA_DIR;
//!   - `core::backing` DATA_DIR access that can never escape DATA_DIR;
//!   - `core::path`    validated paths relative to DATA_DIR.

pub mod cli;
pub mod core;
pub mod fuse;
pub mod keys;
pub mod index;
pub mod inspect;
pub mod mount;
pub mod sealer;
pub mod timefmt;
pub mod verify;

//! The command line: parse and dispatch. Each subcommand's work lives in its own module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::mount::{self, MountArgs};

#[derive(Debug, Parser)]
#[command(name = "wormfs", version, about = "A write-once FUSE filesystem for log files")]
pub struct Cli {
    /// Log more (debug level); RUST_LOG overrides.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount DATA_DIR at MOUNTPOINT in the foreground; SIGINT/SIGTERM unmount cleanly.
    Mount {
        /// Where the files live as plain files (created if missing).
        #[arg(long, value_name = "DATA_DIR")]
        data: PathBuf,
        /// Where the index and keys live (created if missing).
        #[arg(long, value_name = "STATE_DIR")]
        state: PathBuf,
        /// Let users other than root use the mount (permissions still apply).
        #[arg(long)]
        allow_other: bool,
        /// An empty directory to mount on.
        mountpoint: PathBuf,
    },
}

/// A failed command: its message, and the exit status to leave with.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Mount { data, state, allow_other, mountpoint } => {
            mount::run(&MountArgs { data, state, mountpoint, allow_other })
                .map_err(|e| Failure { message: e.to_string(), code: 1 })
        }
    }
}

//! The core's error type. The FUSE adapter turns it into an errno in one place
//! (`crate::fuse::errno`); the core never deals in errno values except those the OS handed it.

use std::fmt;

use super::path::{BadName, RelPath};
use super::policy::Refusal;

#[derive(Debug)]
pub enum FsError {
    /// The write-once rules forbid this operation on this path.
    Refused { path: RelPath, refusal: Refusal },
    /// An inode the kernel named is not (or no longer) known.
    UnknownInode(u64),
    /// A file handle the kernel named is not open.
    UnknownHandle(u64),
    /// A name the kernel passed is not a safe single path component.
    BadName(BadName),
    /// The backing filesystem under DATA_DIR failed; carries the OS error for the caller.
    Os { path: RelPath, errno: nix::errno::Errno },
    /// The chain could not be appended to (the index failed); nothing was sealed.
    Ledger(String),
    /// The backing file is shorter than its sealed size: it was truncated outside wormfs, and
    /// appending would build on bytes that no longer match their seals.
    Tampered { path: RelPath, sealed: u64, size: u64 },
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn os(path: &RelPath, errno: nix::errno::Errno) -> FsError {
        FsError::Os { path: path.clone(), errno }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Refused { path, refusal } => {
                write!(f, "refused {} on {path}: {refusal}", refusal.operation())
            }
            FsError::UnknownInode(ino) => write!(f, "unknown inode {ino}"),
            FsError::UnknownHandle(fh) => write!(f, "unknown file handle {fh}"),
            FsError::BadName(why) => write!(f, "invalid file name ({why:?})"),
            FsError::Os { path, errno } => write!(f, "{path}: {}", errno.desc()),
            FsError::Ledger(e) => write!(f, "cannot write to the chain: {e}"),
            FsError::Tampered { path, sealed, size } => {
                write!(f, "{path}: {size} bytes on disk but {sealed} sealed; it was truncated outside wormfs")
            }
        }
    }
}

impl std::error::Error for FsError {}

/// The errno an I/O error carries (EIO when it carries none).
pub(crate) fn io_errno(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl From<BadName> for FsError {
    fn from(why: BadName) -> Self {
        FsError::BadName(why)
    }
}

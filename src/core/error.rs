//! The core's error type. The FUSE adapter turns it into an errno in one place
//! (`crate::fuse::errno`), and `level` says how loudly each is logged; the core never picks an
//! errno itself, it only passes on the ones the OS handed it.

use std::fmt;

use log::Level;
use nix::errno::Errno;

use super::ledger::LedgerError;
use super::path::{BadName, RelPath};
use super::policy::Refusal;
use super::space::NoRoom;
use super::store::StoreError;

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
    Os { path: RelPath, errno: Errno },
    /// The chain could not be appended to (the index failed, or refused); nothing was sealed.
    Ledger { path: RelPath, source: LedgerError },
    /// The backing file was changed by something other than wormfs: appending would build on
    /// bytes that are not (or no longer) what was sealed.
    Damaged { path: RelPath, damage: Damage },
    /// The backing file ended before `end` while its bytes were being hashed (shrunk behind
    /// wormfs' back mid-read).
    Shrank { path: RelPath, at: u64, end: u64 },
    /// Unmount found files whose tails it could not seal: no Unmount record was written.
    Unsealed { files: usize },
    /// A write through a handle opened read-only.
    NotWritable { path: RelPath },
    /// A directory where a file was expected.
    IsDirectory { path: RelPath },
    /// A time too far from the epoch to set (more than 2^63 seconds either way).
    TimeOutOfRange { path: RelPath },
    /// An lseek whence the daemon does not answer (the kernel answers the usual ones itself).
    UnsupportedWhence { path: RelPath, whence: i32 },
    /// No ioctls are served (chattr and friends see a filesystem without them).
    UnsupportedIoctl { path: RelPath, cmd: u32 },
    /// An extended attribute (or the list of them) is larger than the caller's buffer.
    XattrTooLarge { path: RelPath, len: usize, buffer: u32 },
    /// New bytes or a new file, refused: the state disk lacks the room to seal them.
    NoSpace { path: RelPath, no: NoRoom },
}

pub type FsResult<T> = Result<T, FsError>;

/// What wormfs found wrong with a backing file it did not change (recorded in a Damaged
/// record, refused further appends, and reported by verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Bytes past the sealed size that did not come through the mount.
    Grew { sealed: u64, size: u64 },
    /// Shorter than its sealed size: cut outside wormfs.
    Shrank { sealed: u64, size: u64 },
    /// Gone from DATA_DIR while its history is open.
    Missing,
    /// A file the chain has no history of (placed in DATA_DIR behind wormfs' back).
    Untracked { size: u64 },
    /// Sealed bytes [start, end) no longer hash to their seal.
    Changed { start: u64, end: u64 },
    /// fdatasync of bytes [sealed, size) failed: they may not be on disk as written.
    Unsynced { sealed: u64, size: u64, errno: Errno },
}

impl Damage {
    /// (sealed, size) as a Damaged record states them; None for a missing file (verify sees
    /// that by itself).
    pub fn sizes(self) -> Option<(u64, u64)> {
        match self {
            Damage::Grew { sealed, size } | Damage::Shrank { sealed, size } | Damage::Unsynced { sealed, size, .. } => {
                Some((sealed, size))
            }
            Damage::Untracked { size } => Some((0, size)),
            Damage::Missing | Damage::Changed { .. } => None,
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Grew { sealed, size } => write!(
                f,
                "{size} bytes on disk but {sealed} sealed; bytes were added outside wormfs (not sealed, appends refused)"
            ),
            Damage::Shrank { sealed, size } => {
                write!(f, "{size} bytes on disk but {sealed} sealed; it was truncated outside wormfs")
            }
            Damage::Missing => write!(f, "sealed file missing from the data directory; its history stays open"),
            Damage::Changed { start, end } => {
                write!(f, "sealed bytes [{start}, {end}) changed outside wormfs; run wormfs verify")
            }
            Damage::Untracked { size } => {
                write!(f, "{size} bytes in a file wormfs has no history of (placed outside wormfs; appends refused)")
            }
            Damage::Unsynced { sealed, size, errno } => write!(
                f,
                "fdatasync failed ({}): bytes [{sealed}, {size}) may not be on disk as written; they are not sealed and appends are refused",
                errno.desc()
            ),
        }
    }
}

impl FsError {
    pub fn os(path: &RelPath, errno: Errno) -> FsError {
        FsError::Os { path: path.clone(), errno }
    }

    pub fn ledger(path: &RelPath, source: LedgerError) -> FsError {
        FsError::Ledger { path: path.clone(), source }
    }

    /// How loudly this error is logged when it is answered: refusals are worth an info line
    /// (who tried what), damage and a failing chain an error (an admin must look), the answers
    /// every lookup and every write's security.capability probe get nothing at all.
    pub fn level(&self) -> Option<Level> {
        match self {
            FsError::Os { errno: Errno::ENOENT | Errno::ENODATA, .. } => None,
            FsError::Os { .. } | FsError::UnsupportedWhence { .. } | FsError::UnsupportedIoctl { .. } => {
                Some(Level::Debug)
            }
            FsError::XattrTooLarge { .. } | FsError::TimeOutOfRange { .. } => Some(Level::Debug),
            // Logged once when room runs out (`WormFs::room_for_more`), not at every write.
            FsError::NoSpace { .. } => Some(Level::Debug),
            FsError::Ledger { source: LedgerError::Store(StoreError::NoSpace(_)), .. } => Some(Level::Warn),
            FsError::Refused { .. } => Some(Level::Info),
            FsError::Ledger { source: LedgerError::Refused(_), .. } => Some(Level::Info),
            FsError::Ledger { .. } | FsError::Damaged { .. } | FsError::Shrank { .. } | FsError::Unsealed { .. } => {
                Some(Level::Error)
            }
            // Any user can send a bad name at will: worth a debug line, not a flood of warnings.
            FsError::BadName(_) => Some(Level::Debug),
            FsError::UnknownInode(_)
            | FsError::UnknownHandle(_)
            | FsError::NotWritable { .. }
            | FsError::IsDirectory { .. } => Some(Level::Warn),
        }
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
            FsError::Ledger { path, source } => write!(f, "{path}: cannot write to the chain: {source}"),
            FsError::Damaged { path, damage } => write!(f, "{path}: {damage}"),
            FsError::Unsealed { files } => write!(
                f,
                "{files} files could not be sealed at unmount; the chain is left open so the next mount recovers them"
            ),
            FsError::Shrank { path, at, end } => {
                write!(f, "{path}: ended at byte {at} while hashing up to {end}; it shrank outside wormfs")
            }
            FsError::NotWritable { path } => write!(f, "{path}: write through a handle opened read-only"),
            FsError::IsDirectory { path } => write!(f, "{path}: is a directory"),
            FsError::TimeOutOfRange { path } => write!(f, "{path}: a time too far from the epoch to set"),
            FsError::UnsupportedWhence { path, whence } => write!(f, "{path}: lseek whence {whence} is not served"),
            FsError::UnsupportedIoctl { path, cmd } => write!(f, "{path}: ioctl {cmd:#x} is not supported"),
            FsError::NoSpace { path, no } => write!(f, "{path}: refused: {no} to seal it"),
            FsError::XattrTooLarge { path, len, buffer } => {
                write!(f, "{path}: extended attribute data of {len} bytes does not fit a {buffer}-byte buffer")
            }
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FsError::Ledger { source, .. } => Some(source),
            FsError::Os { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

/// The errno an I/O error carries (EIO when it carries none: std only makes such errors for
/// conditions like a short write, which the disk reported as an I/O failure).
pub(crate) fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl From<BadName> for FsError {
    fn from(why: BadName) -> Self {
        FsError::BadName(why)
    }
}

//! The one place where core errors become errno values for the kernel.

use fuser::Errno;

use crate::core::ledger::LedgerError;
use crate::core::path::BadName;
use crate::core::store::StoreError;
use crate::core::FsError;

pub fn to_errno(err: &FsError) -> Errno {
    match err {
        // Every write-once refusal is "operation not permitted", whatever the reason.
        FsError::Refused { .. } => Errno::EPERM,
        FsError::UnknownInode(_) => Errno::ESTALE,
        FsError::UnknownHandle(_) | FsError::NotWritable { .. } => Errno::EBADF,
        FsError::BadName(BadName::TooLong) => Errno::ENAMETOOLONG,
        FsError::BadName(_) | FsError::UnsupportedWhence { .. } | FsError::TimeOutOfRange { .. } => Errno::EINVAL,
        FsError::IsDirectory { .. } => Errno::EISDIR,
        FsError::UnsupportedIoctl { .. } => Errno::ENOTTY,
        FsError::XattrTooLarge { .. } => Errno::ERANGE,
        FsError::Os { errno, .. } => Errno::from_i32(*errno as i32),
        // No room on the state disk: for the bytes (a write, a create) or for their seal (a
        // close or fsync whose seal could not be written; it is retried, the bytes are kept).
        FsError::NoSpace { .. } | FsError::Ledger { source: LedgerError::Store(StoreError::NoSpace(_)), .. } => {
            Errno::ENOSPC
        }
        // The caller cannot fix any of these; EIO says "the filesystem failed", the log says why.
        FsError::Ledger { .. } | FsError::Damaged { .. } | FsError::Shrank { .. } | FsError::Unsealed { .. } => {
            Errno::EIO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::LedgerError;
    use crate::core::store::StoreError;
    use crate::core::{Refusal, RelPath};

    #[test]
    fn refusals_are_eperm_and_os_errors_pass_through() {
        let root = RelPath::root;
        let refused = FsError::Refused { path: root(), refusal: Refusal::Link };
        assert_eq!(to_errno(&refused), Errno::EPERM);
        let os = FsError::Os { path: root(), errno: nix::errno::Errno::ENOTEMPTY };
        assert_eq!(to_errno(&os), Errno::ENOTEMPTY);
        assert_eq!(to_errno(&FsError::BadName(BadName::TooLong)), Errno::ENAMETOOLONG);
        assert_eq!(to_errno(&FsError::BadName(BadName::Slash)), Errno::EINVAL);
        assert_eq!(to_errno(&FsError::UnknownHandle(3)), Errno::EBADF);
        assert_eq!(to_errno(&FsError::NotWritable { path: root() }), Errno::EBADF);
        assert_eq!(to_errno(&FsError::UnsupportedWhence { path: root(), whence: 9 }), Errno::EINVAL);
        assert_eq!(to_errno(&FsError::IsDirectory { path: root() }), Errno::EISDIR);
        assert_eq!(to_errno(&FsError::UnsupportedIoctl { path: root(), cmd: 1 }), Errno::ENOTTY);
        assert_eq!(to_errno(&FsError::XattrTooLarge { path: root(), len: 9, buffer: 1 }), Errno::ERANGE);
        let chain = FsError::Ledger { path: root(), source: LedgerError::Store(StoreError::ReadOnly) };
        assert_eq!(to_errno(&chain), Errno::EIO);
        assert_eq!(to_errno(&FsError::Shrank { path: root(), at: 1, end: 2 }), Errno::EIO);
    }
}

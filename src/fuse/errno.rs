//! The one place where core errors become errno values for the kernel.

use fuser::Errno;

use crate::core::FsError;

pub fn to_errno(err: &FsError) -> Errno {
    match err {
        // Every write-once refusal is "operation not permitted", whatever the reason.
        FsError::Refused { .. } => Errno::EPERM,
        FsError::UnknownInode(_) => Errno::ESTALE,
        FsError::UnknownHandle(_) => Errno::EBADF,
        FsError::BadName(crate::core::path::BadName::TooLong) => Errno::ENAMETOOLONG,
        FsError::BadName(_) => Errno::EINVAL,
        FsError::Os { errno, .. } => Errno::from_i32(*errno as i32),
        // The caller cannot fix either; EIO says "the filesystem failed", and the log says why.
        FsError::Ledger(_) | FsError::Tampered { .. } => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::path::BadName;
    use crate::core::{Refusal, RelPath};

    #[test]
    fn refusals_are_eperm_and_os_errors_pass_through() {
        let refused = FsError::Refused { path: RelPath::root(), refusal: Refusal::Link };
        assert_eq!(to_errno(&refused), Errno::EPERM);
        let os = FsError::Os { path: RelPath::root(), errno: nix::errno::Errno::ENOTEMPTY };
        assert_eq!(to_errno(&os), Errno::ENOTEMPTY);
        assert_eq!(to_errno(&FsError::BadName(BadName::TooLong)), Errno::ENAMETOOLONG);
        assert_eq!(to_errno(&FsError::UnknownHandle(3)), Errno::EBADF);
    }
}

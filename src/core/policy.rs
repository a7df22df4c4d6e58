//! The write-once rules: which operation is allowed on which file state. Pure functions over
//! sizes and flags, so every rule is unit-tested without a mount. The retention issue will widen
//! `rename`, `unlink` and `truncate` for files whose retention has expired; everything else here
//! is permanent.

use std::fmt;

/// Kinds of node a caller may ask to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl NodeKind {
    /// From the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<NodeKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => NodeKind::File,
            libc::S_IFDIR => NodeKind::Dir,
            libc::S_IFLNK => NodeKind::Symlink,
            libc::S_IFIFO => NodeKind::Fifo,
            libc::S_IFCHR => NodeKind::CharDevice,
            libc::S_IFBLK => NodeKind::BlockDevice,
            libc::S_IFSOCK => NodeKind::Socket,
            _ => return None,
        })
    }
}

/// Why an operation was refused. Every refusal is EPERM to the caller; the variant says why in
/// the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A write that starts below the current size would change sealed or written bytes.
    Overwrite { offset: u64, size: u64 },
    /// A write that starts beyond the current size would leave a hole of zeros nobody wrote.
    Hole { offset: u64, size: u64 },
    /// Truncate (or extend) to anything but the current size.
    Truncate { size: u64, to: u64 },
    /// `O_TRUNC` on a file that has bytes.
    TruncateOnOpen { size: u64 },
    Fallocate,
    Rename,
    Unlink,
    Link,
    Symlink,
    /// Device nodes, FIFOs and sockets: nothing to log into, and a way around the rules.
    SpecialNode(NodeKind),
    SetXattr,
    RemoveXattr,
}

impl Refusal {
    /// The operation's name as logged.
    pub fn operation(&self) -> &'static str {
        match self {
            Refusal::Overwrite { .. } | Refusal::Hole { .. } => "write",
            Refusal::Truncate { .. } => "truncate",
            Refusal::TruncateOnOpen { .. } => "open(O_TRUNC)",
            Refusal::Fallocate => "fallocate",
            Refusal::Rename => "rename",
            Refusal::Unlink => "unlink",
            Refusal::Link => "link",
            Refusal::Symlink => "symlink",
            Refusal::SpecialNode(_) => "mknod",
            Refusal::SetXattr => "setxattr",
            Refusal::RemoveXattr => "removexattr",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Overwrite { offset, size } => {
                write!(f, "write at offset {offset} would overwrite bytes (size is {size})")
            }
            Refusal::Hole { offset, size } => {
                write!(f, "write at offset {offset} would leave a hole (size is {size})")
            }
            Refusal::Truncate { size, to } => {
                write!(f, "cannot change size from {size} to {to}: files are append-only")
            }
            Refusal::TruncateOnOpen { size } => {
                write!(f, "O_TRUNC on a file of {size} bytes: files are append-only")
            }
            Refusal::Fallocate => write!(f, "fallocate could punch, zero or reserve bytes"),
            Refusal::Rename => write!(f, "files cannot be renamed before their retention expires"),
            Refusal::Unlink => write!(f, "files cannot be deleted before their retention expires"),
            Refusal::Link => write!(f, "hard links are not supported"),
            Refusal::Symlink => write!(f, "symbolic links are not supported"),
            Refusal::SpecialNode(kind) => write!(f, "{kind:?} nodes cannot be created"),
            Refusal::SetXattr | Refusal::RemoveXattr => {
                write!(f, "extended attributes are read-only")
            }
        }
    }
}

/// Where a write of `len` bytes lands in a file of `size` bytes, or why it may not.
/// An `O_APPEND` handle always lands at the end, whatever offset the kernel passed: another
/// writer may have appended since the kernel computed it.
pub fn write_offset(size: u64, offset: u64, append: bool) -> Result<u64, Refusal> {
    if append || offset == size {
        Ok(size)
    } else if offset < size {
        Err(Refusal::Overwrite { offset, size })
    } else {
        Err(Refusal::Hole { offset, size })
    }
}

/// truncate/ftruncate/setattr(size): only to the current size, which changes nothing.
pub fn truncate(size: u64, to: u64) -> Result<(), Refusal> {
    if to == size {
        Ok(())
    } else {
        Err(Refusal::Truncate { size, to })
    }
}

/// `open(O_TRUNC)`: fine on an empty file (what `> newfile` does), refused on one with bytes.
pub fn open_truncate(size: u64) -> Result<(), Refusal> {
    if size == 0 {
        Ok(())
    } else {
        Err(Refusal::TruncateOnOpen { size })
    }
}

/// mknod/create: regular files (and directories, through mkdir) only.
pub fn create_node(kind: NodeKind) -> Result<(), Refusal> {
    match kind {
        NodeKind::File | NodeKind::Dir => Ok(()),
        other => Err(Refusal::SpecialNode(other)),
    }
}

/// Until retention exists every file is retained, so these are always refused.
pub fn rename() -> Result<(), Refusal> {
    Err(Refusal::Rename)
}

pub fn unlink() -> Result<(), Refusal> {
    Err(Refusal::Unlink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_only_at_the_end() {
        assert_eq!(write_offset(0, 0, false), Ok(0));
        assert_eq!(write_offset(10, 10, false), Ok(10));
        assert_eq!(write_offset(10, 3, false), Err(Refusal::Overwrite { offset: 3, size: 10 }));
        assert_eq!(write_offset(10, 0, false), Err(Refusal::Overwrite { offset: 0, size: 10 }));
        assert_eq!(write_offset(10, 11, false), Err(Refusal::Hole { offset: 11, size: 10 }));
    }

    #[test]
    fn append_handles_ignore_the_kernel_offset() {
        assert_eq!(write_offset(10, 0, true), Ok(10));
        assert_eq!(write_offset(10, 99, true), Ok(10));
        assert_eq!(write_offset(10, 10, true), Ok(10));
    }

    #[test]
    fn truncate_only_to_the_current_size() {
        assert_eq!(truncate(5, 5), Ok(()));
        assert_eq!(truncate(0, 0), Ok(()));
        assert_eq!(truncate(5, 0), Err(Refusal::Truncate { size: 5, to: 0 }));
        assert_eq!(truncate(5, 6), Err(Refusal::Truncate { size: 5, to: 6 }));
    }

    #[test]
    fn o_trunc_only_on_empty_files() {
        assert_eq!(open_truncate(0), Ok(()));
        assert_eq!(open_truncate(1), Err(Refusal::TruncateOnOpen { size: 1 }));
    }

    #[test]
    fn only_files_and_directories_are_created() {
        assert!(create_node(NodeKind::File).is_ok());
        assert!(create_node(NodeKind::Dir).is_ok());
        for kind in [
            NodeKind::Fifo,
            NodeKind::CharDevice,
            NodeKind::BlockDevice,
            NodeKind::Socket,
            NodeKind::Symlink,
        ] {
            assert_eq!(create_node(kind), Err(Refusal::SpecialNode(kind)));
        }
    }

    #[test]
    fn mode_bits_name_the_node_kind() {
        assert_eq!(NodeKind::from_mode(libc::S_IFREG | 0o644), Some(NodeKind::File));
        assert_eq!(NodeKind::from_mode(libc::S_IFIFO | 0o644), Some(NodeKind::Fifo));
        assert_eq!(NodeKind::from_mode(libc::S_IFSOCK), Some(NodeKind::Socket));
        assert_eq!(NodeKind::from_mode(0), None);
    }

    #[test]
    fn rename_and_unlink_are_refused_until_retention_exists() {
        assert_eq!(rename(), Err(Refusal::Rename));
        assert_eq!(unlink(), Err(Refusal::Unlink));
    }
}

//! The write-once rules: which operation is allowed on which file state. Pure functions over
//! sizes, flags and a file's retention standing, so every rule is unit-tested without a mount.
//! Overwriting is refused forever; unlink, rename and truncate only once retention has expired,
//! no legal hold covers the file and nothing has it open.

use std::fmt;

use super::error::Damage;
use super::history::PriorRun;
use super::retention::Standing;
use super::timefmt::rfc3339_ns as timefmt_ns;

/// The operations retention gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gated {
    Unlink,
    Rename,
    Truncate,
}

impl Gated {
    fn name(self) -> &'static str {
        match self {
            Gated::Unlink => "unlink",
            Gated::Rename => "rename",
            Gated::Truncate => "truncate",
        }
    }
}

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
    Overwrite {
        offset: u64,
        size: u64,
    },
    /// A write that starts beyond the current size would leave a hole of zeros nobody wrote.
    Hole {
        offset: u64,
        size: u64,
    },
    /// Truncate (or extend) to anything but the current size.
    Truncate {
        size: u64,
        to: u64,
    },
    /// `O_TRUNC` on a file that has bytes.
    TruncateOnOpen {
        size: u64,
    },
    Fallocate,
    /// Retention, a hold or an open handle keeps the file as it is.
    NotExpired {
        op: Gated,
        standing: Standing,
    },
    /// Rename over an existing name would delete that file.
    RenameOverExisting,
    /// A directory with files in it cannot move: its files' paths are their identity.
    RenameNonEmptyDir,
    /// RENAME_EXCHANGE would swap two files' identities.
    RenameExchange,
    /// Retention can only be extended (a date earlier than the current retain-until).
    ShortenRetention {
        until_ns: u64,
        requested_ns: u64,
    },
    Link,
    Symlink,
    /// Device nodes, FIFOs and sockets: nothing to log into, and a way around the rules.
    SpecialNode(NodeKind),
    /// Opening something other than a regular file as a file (a FIFO, device or symlink put in
    /// DATA_DIR behind wormfs' back): it could block the daemon or lead outside the rules.
    NotRegularFile(NodeKind),
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
            Refusal::NotExpired { op, .. } => op.name(),
            Refusal::RenameOverExisting | Refusal::RenameNonEmptyDir | Refusal::RenameExchange => "rename",
            Refusal::ShortenRetention { .. } => "set retention (atime)",
            Refusal::Link => "link",
            Refusal::Symlink => "symlink",
            Refusal::SpecialNode(_) => "mknod",
            Refusal::NotRegularFile(_) => "open",
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
            Refusal::NotExpired { standing, .. } => match standing {
                Standing::Untracked => {
                    write!(f, "wormfs has no record of the file (the next mount adopts it)")
                }
                Standing::Retained { until_ns } => write!(f, "retained until {}", timefmt_ns(*until_ns)),
                Standing::Held { prefix, reason } => write!(f, "under legal hold on {prefix}: {reason}"),
                Standing::Open => write!(f, "the file is open"),
                Standing::Expired => write!(f, "retention expired"),
            },
            Refusal::RenameOverExisting => write!(f, "the target exists and would be deleted"),
            Refusal::RenameNonEmptyDir => write!(f, "only empty directories can be renamed"),
            Refusal::RenameExchange => write!(f, "files cannot swap names"),
            Refusal::ShortenRetention { until_ns, requested_ns } => write!(
                f,
                "retention can only be extended: retained until {}, asked for {}",
                timefmt_ns(*until_ns),
                timefmt_ns(*requested_ns)
            ),
            Refusal::Link => write!(f, "hard links are not supported"),
            Refusal::Symlink => write!(f, "symbolic links are not supported"),
            Refusal::SpecialNode(kind) => write!(f, "{kind:?} nodes cannot be created"),
            Refusal::NotRegularFile(kind) => write!(f, "a {kind:?} in the data directory is not a file wormfs serves"),
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

/// truncate/ftruncate/setattr(size): to the current size (a no-op) always; smaller only once
/// retention has expired; larger never (that would be a hole of zeros nobody wrote).
pub fn truncate(size: u64, to: u64, standing: &Standing) -> Result<(), Refusal> {
    if to == size {
        Ok(())
    } else if to > size {
        Err(Refusal::Truncate { size, to })
    } else {
        expired(Gated::Truncate, standing)
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

/// What mount-time recovery does with a file in DATA_DIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtMount {
    /// It is exactly as sealed.
    Nothing,
    /// Seal its unsealed tail (a Recovered record): only after an unclean stop, which explains
    /// bytes written but not sealed.
    SealTail,
    /// Adopt it whole (a Recovered record, adopted): on a new chain asked to adopt what is
    /// there, or after an unclean stop (a crash between creating a file and its Create record).
    Adopt,
    /// Record it as damaged and seal nothing: after a clean Unmount nothing can be unsealed, so
    /// extra bytes (or an unknown file) were put there behind wormfs' back.
    Damaged(Damage),
}

/// The recovery rule: `sealed` is the chain's sealed size for the path (None: no history).
/// `tail_damaged`: the chain already says the bytes past `sealed` are damaged (a Damaged record
/// since the file's last seal: added behind wormfs' back, or written but not made durable).
/// Those are never sealed, not even after an unclean stop.
pub fn at_mount(prior: PriorRun, sealed: Option<u64>, size: u64, adopt_existing: bool, tail_damaged: bool) -> AtMount {
    match sealed {
        Some(sealed) if size == sealed => AtMount::Nothing,
        Some(sealed) if size < sealed => AtMount::Damaged(Damage::Shrank { sealed, size }),
        Some(_) if prior == PriorRun::Unclean && !tail_damaged => AtMount::SealTail,
        Some(sealed) => AtMount::Damaged(Damage::Grew { sealed, size }),
        None if prior == PriorRun::Unclean || (prior == PriorRun::None && adopt_existing) => AtMount::Adopt,
        None => AtMount::Damaged(Damage::Untracked { size }),
    }
}

/// Before appending to a file while mounted: the daemon wrote every byte it sealed and seals
/// what it writes, so the file must be exactly its sealed size.
pub fn before_append(sealed: Option<u64>, size: u64) -> Result<(), Damage> {
    match sealed {
        Some(sealed) if size == sealed => Ok(()),
        Some(sealed) if size < sealed => Err(Damage::Shrank { sealed, size }),
        Some(sealed) => Err(Damage::Grew { sealed, size }),
        None => Err(Damage::Untracked { size }),
    }
}

/// Opening a node as a file: regular files only (directories never reach open).
pub fn open_node(kind: NodeKind) -> Result<(), Refusal> {
    match kind {
        NodeKind::File => Ok(()),
        other => Err(Refusal::NotRegularFile(other)),
    }
}

/// What setting a node's atime means (SnapLock-style retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtimeEffect {
    /// An ordinary atime: in the past, or on something wormfs does not seal (a directory).
    Ordinary,
    /// Retain the file until then: a Retention record, or a refusal if that would shorten it.
    RetainUntil(u64),
}

/// A future atime on a sealed file asks to retain it until then; anything else is an atime.
/// `requested_ns` is None for a time before the epoch.
pub fn atime(requested_ns: Option<u64>, now_ns: u64, sealed_file: bool) -> AtimeEffect {
    match requested_ns {
        Some(at) if at > now_ns && sealed_file => AtimeEffect::RetainUntil(at),
        _ => AtimeEffect::Ordinary,
    }
}

/// Why a legal-hold command was refused (these reach the admin as messages, never as errno).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldRefusal {
    /// A hold must say why (it is evidence too).
    NoReason,
    /// Set on a path that does not exist in the mount (a typo would protect nothing).
    NoSuchPath,
    /// Cleared on a path that has no hold of its own (a hold on a parent is cleared there).
    NotHeld,
}

impl fmt::Display for HoldRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldRefusal::NoReason => write!(f, "a legal hold needs a --reason"),
            HoldRefusal::NoSuchPath => write!(f, "no such file or directory in the mount"),
            HoldRefusal::NotHeld => write!(f, "no legal hold is set on it"),
        }
    }
}

/// Setting (`set`) or clearing a hold on a path: always with a reason; set only on something
/// that exists (the root always does); cleared only where one is set on exactly that path.
pub fn hold(set: bool, reason: &str, exists: bool, held_here: bool) -> Result<(), HoldRefusal> {
    if reason.trim().is_empty() {
        Err(HoldRefusal::NoReason)
    } else if set && !exists {
        Err(HoldRefusal::NoSuchPath)
    } else if !set && !held_here {
        Err(HoldRefusal::NotHeld)
    } else {
        Ok(())
    }
}

/// unlink: only an expired file no hold covers and nothing has open.
pub fn unlink(standing: &Standing) -> Result<(), Refusal> {
    expired(Gated::Unlink, standing)
}

/// rename of a file: only an expired one, and only to a name that does not exist.
pub fn rename_file(standing: &Standing, target_exists: bool, exchange: bool) -> Result<(), Refusal> {
    if exchange {
        return Err(Refusal::RenameExchange);
    }
    expired(Gated::Rename, standing)?;
    if target_exists {
        return Err(Refusal::RenameOverExisting);
    }
    Ok(())
}

/// rename of a directory: only an empty one (its files' paths are their identity), never over
/// an existing name.
pub fn rename_dir(empty: bool, target_exists: bool, exchange: bool) -> Result<(), Refusal> {
    if exchange {
        Err(Refusal::RenameExchange)
    } else if !empty {
        Err(Refusal::RenameNonEmptyDir)
    } else if target_exists {
        Err(Refusal::RenameOverExisting)
    } else {
        Ok(())
    }
}

/// A new retain-until: retention can be extended, never shortened.
pub fn extend_retention(until_ns: u64, requested_ns: u64) -> Result<u64, Refusal> {
    if requested_ns < until_ns {
        Err(Refusal::ShortenRetention { until_ns, requested_ns })
    } else {
        Ok(requested_ns)
    }
}

fn expired(op: Gated, standing: &Standing) -> Result<(), Refusal> {
    match standing {
        Standing::Expired => Ok(()),
        other => Err(Refusal::NotExpired { op, standing: other.clone() }),
    }
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

    const RETAINED: Standing = Standing::Retained { until_ns: 100 };

    #[test]
    fn truncate_to_the_current_size_always_and_smaller_only_after_expiry() {
        assert_eq!(truncate(5, 5, &RETAINED), Ok(()));
        assert_eq!(truncate(0, 0, &RETAINED), Ok(()));
        assert_eq!(truncate(5, 5, &Standing::Untracked), Ok(()), "a no-op needs no record of the file");
        assert_eq!(truncate(5, 0, &RETAINED), Err(Refusal::NotExpired { op: Gated::Truncate, standing: RETAINED }));
        assert_eq!(
            truncate(5, 0, &Standing::Untracked),
            Err(Refusal::NotExpired { op: Gated::Truncate, standing: Standing::Untracked })
        );
        assert_eq!(truncate(5, 0, &Standing::Expired), Ok(()));
        assert_eq!(
            truncate(5, 0, &Standing::Open),
            Err(Refusal::NotExpired { op: Gated::Truncate, standing: Standing::Open })
        );
        assert_eq!(truncate(5, 6, &Standing::Expired), Err(Refusal::Truncate { size: 5, to: 6 }), "never a hole");
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
        for kind in [NodeKind::Fifo, NodeKind::CharDevice, NodeKind::BlockDevice, NodeKind::Socket, NodeKind::Symlink] {
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
    fn unlink_and_rename_wait_for_expiry_and_respect_holds() {
        let held = Standing::Held { prefix: crate::core::RelPath::root(), reason: "case".into() };
        assert_eq!(unlink(&RETAINED), Err(Refusal::NotExpired { op: Gated::Unlink, standing: RETAINED }));
        assert_eq!(unlink(&held), Err(Refusal::NotExpired { op: Gated::Unlink, standing: held.clone() }));
        assert_eq!(unlink(&Standing::Open), Err(Refusal::NotExpired { op: Gated::Unlink, standing: Standing::Open }));
        assert_eq!(unlink(&Standing::Expired), Ok(()));
        assert_eq!(rename_file(&Standing::Expired, false, false), Ok(()));
        assert_eq!(rename_file(&Standing::Expired, true, false), Err(Refusal::RenameOverExisting));
        assert_eq!(rename_file(&Standing::Expired, false, true), Err(Refusal::RenameExchange));
        assert!(rename_file(&RETAINED, false, false).is_err());
    }

    #[test]
    fn untracked_files_never_go() {
        let untracked = Standing::Untracked;
        assert_eq!(unlink(&untracked), Err(Refusal::NotExpired { op: Gated::Unlink, standing: untracked.clone() }));
        assert!(rename_file(&untracked, false, false).is_err());
        let shown = Refusal::NotExpired { op: Gated::Unlink, standing: untracked }.to_string();
        assert!(shown.contains("no record"), "{shown}");
        assert!(!shown.contains("2554"), "no made-up date: {shown}");
    }

    #[test]
    fn recovery_seals_only_what_a_crash_explains() {
        use PriorRun::*;
        assert_eq!(at_mount(Clean, Some(5), 5, false, false), AtMount::Nothing);
        assert_eq!(at_mount(Unclean, Some(5), 9, false, false), AtMount::SealTail);
        assert_eq!(at_mount(Clean, Some(5), 9, false, false), AtMount::Damaged(Damage::Grew { sealed: 5, size: 9 }));
        assert_eq!(
            at_mount(Unclean, Some(5), 2, false, false),
            AtMount::Damaged(Damage::Shrank { sealed: 5, size: 2 })
        );
        assert_eq!(at_mount(None, Option::None, 3, true, false), AtMount::Adopt);
        assert_eq!(at_mount(Unclean, Option::None, 3, false, false), AtMount::Adopt);
        assert_eq!(at_mount(Clean, Option::None, 3, true, false), AtMount::Damaged(Damage::Untracked { size: 3 }));
        assert_eq!(at_mount(None, Option::None, 3, false, false), AtMount::Damaged(Damage::Untracked { size: 3 }));
        // A tail the chain already calls damaged is not sealed even after an unclean stop.
        assert_eq!(at_mount(Unclean, Some(5), 9, false, true), AtMount::Damaged(Damage::Grew { sealed: 5, size: 9 }));
    }

    #[test]
    fn appends_go_only_onto_exactly_the_sealed_bytes() {
        assert_eq!(before_append(Some(4), 4), Ok(()));
        assert_eq!(before_append(Some(4), 6), Err(Damage::Grew { sealed: 4, size: 6 }));
        assert_eq!(before_append(Some(4), 1), Err(Damage::Shrank { sealed: 4, size: 1 }));
        assert_eq!(before_append(None, 1), Err(Damage::Untracked { size: 1 }));
    }

    #[test]
    fn only_regular_files_open() {
        assert_eq!(open_node(NodeKind::File), Ok(()));
        for kind in [NodeKind::Fifo, NodeKind::Symlink, NodeKind::CharDevice, NodeKind::Socket] {
            assert_eq!(open_node(kind), Err(Refusal::NotRegularFile(kind)));
        }
    }

    #[test]
    fn a_future_atime_on_a_sealed_file_is_a_retention() {
        assert_eq!(atime(Some(200), 100, true), AtimeEffect::RetainUntil(200));
        assert_eq!(atime(Some(100), 100, true), AtimeEffect::Ordinary, "now is not the future");
        assert_eq!(atime(Some(50), 100, true), AtimeEffect::Ordinary);
        assert_eq!(atime(None, 100, true), AtimeEffect::Ordinary, "before the epoch");
        assert_eq!(atime(Some(200), 100, false), AtimeEffect::Ordinary, "a directory's atime");
    }

    #[test]
    fn holds_need_a_reason_a_target_and_clear_only_where_set() {
        assert_eq!(hold(true, "case 7", true, false), Ok(()));
        assert_eq!(hold(true, "case 7", true, true), Ok(()), "set again: a new reason on record");
        assert_eq!(hold(true, "  ", true, false), Err(HoldRefusal::NoReason));
        assert_eq!(hold(false, "", true, true), Err(HoldRefusal::NoReason));
        assert_eq!(hold(true, "x", false, false), Err(HoldRefusal::NoSuchPath));
        assert_eq!(hold(false, "done", true, false), Err(HoldRefusal::NotHeld));
        assert_eq!(hold(false, "done", false, true), Ok(()), "a hold on a vanished path can be cleared");
    }

    #[test]
    fn retention_is_never_shortened() {
        assert_eq!(extend_retention(100, 200), Ok(200));
        assert_eq!(extend_retention(100, 100), Ok(100));
        assert_eq!(extend_retention(100, 99), Err(Refusal::ShortenRetention { until_ns: 100, requested_ns: 99 }));
    }

    #[test]
    fn only_empty_directories_move() {
        assert_eq!(rename_dir(true, false, false), Ok(()));
        assert_eq!(rename_dir(false, false, false), Err(Refusal::RenameNonEmptyDir));
        assert_eq!(rename_dir(true, true, false), Err(Refusal::RenameOverExisting));
        assert_eq!(rename_dir(true, false, true), Err(Refusal::RenameExchange));
    }
}

//! DATA_DIR, where every file lives as a plain file at its path inside the mount.
//!
//! All access goes through a directory fd opened once at mount and `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so a symlink or `..` planted in DATA_DIR can never make wormfs read,
//! create or change anything outside it. The final component is always acted on without
//! following links (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmodat, fstat, fstatat, mkdirat, FchmodatFlags, FileStat, Mode, UtimensatFlags};
use nix::sys::statvfs::{fstatvfs, Statvfs};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::error::{io_errno, FsError, FsResult};
use super::path::RelPath;
use super::policy::{self, NodeKind};

pub type OsResult<T> = Result<T, Errno>;

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct BackingEntry {
    pub name: OsString,
    pub ino: u64,
    /// `S_IFMT` bits, from `d_type` where the filesystem gives it, else from a stat.
    pub file_type: u32,
}

/// `FS_APPEND_FL` and `FS_IMMUTABLE_FL` from linux/fs.h (what `chattr +a` and `+i` set).
const FS_APPEND_FL: libc::c_int = 0x20;
const FS_IMMUTABLE_FL: libc::c_int = 0x10;

/// The kernel's own write-once flags on a backing file: with them, nothing without
/// CAP_LINUX_IMMUTABLE (root included) can rewrite, cut, remove or rename it in DATA_DIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// No flag: for an authorised change (unlink, rename, truncate after expiry).
    None,
    /// FS_APPEND_FL, while wormfs has the file open for writing: appends only.
    AppendOnly,
    /// FS_IMMUTABLE_FL, once sealed and closed: no change at all.
    Immutable,
}

/// A backing operation that can fail on its own: what a fault plan may make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackingOp {
    Write,
    Sync,
    Create,
    Unlink,
    Rename,
    Truncate,
}

/// A plan of I/O errors to inject under the core, for the tests of what a failing disk does:
/// `before` runs before each such operation, and an error it returns is what the system call
/// returns. Production mounts have none.
pub trait Faults: Send + Sync + std::fmt::Debug {
    fn before(&self, op: BackingOp, path: &RelPath) -> OsResult<()>;
}

#[derive(Debug)]
pub struct DataDir {
    root: OwnedFd,
    faults: Option<std::sync::Arc<dyn Faults>>,
    /// Whether the "no write-once flags here" warning was given (once per mount).
    flags_warned: std::sync::atomic::AtomicBool,
}

fn beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

impl DataDir {
    pub fn open(dir: &Path) -> OsResult<DataDir> {
        let root = nix::fcntl::open(dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(DataDir { root, faults: None, flags_warned: std::sync::atomic::AtomicBool::new(false) })
    }

    /// The directory holding `path` (as an `O_PATH` fd) and `path`'s last component.
    fn parent<'a>(&self, path: &'a RelPath) -> OsResult<(OwnedFd, &'a OsStr)> {
        let (parent, name) = path.split_last().ok_or(Errno::EINVAL)?;
        let fd = openat2(&self.root, parent.as_at_path(), beneath(OFlag::O_PATH | OFlag::O_DIRECTORY))?;
        Ok((fd, name))
    }

    pub fn stat(&self, path: &RelPath) -> OsResult<FileStat> {
        if path.is_root() {
            return fstat(&self.root);
        }
        let (dir, name) = self.parent(path)?;
        fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    /// Open an existing regular file. Never follows a symlink, never blocks on a FIFO; anything
    /// but a regular file is refused by the rules (`policy::open_node`), a directory is EISDIR.
    pub fn open_file(&self, path: &RelPath, writable: bool) -> FsResult<File> {
        let os = |e| FsError::os(path, e);
        // Writable handles append: all wormfs writes land at the end anyway, and an append-only
        // file (FS_APPEND_FL) takes no other kind of writable open.
        let access = if writable { OFlag::O_RDWR | OFlag::O_APPEND } else { OFlag::O_RDONLY };
        let fd = openat2(&self.root, path.as_at_path(), beneath(access | OFlag::O_NONBLOCK)).map_err(os)?;
        let mode = fstat(&fd).map_err(os)?.st_mode;
        match NodeKind::from_mode(mode) {
            Some(NodeKind::Dir) => return Err(FsError::IsDirectory { path: path.clone() }),
            kind => policy::open_node(kind.unwrap_or(NodeKind::File))
                .map_err(|refusal| FsError::Refused { path: path.clone(), refusal })?,
        }
        // O_NONBLOCK was only for the open itself (O_APPEND stays: an append-only file refuses
        // to lose it).
        let keep = if writable { OFlag::O_APPEND } else { OFlag::empty() };
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(keep)).map_err(os)?;
        Ok(File::from(fd))
    }

    /// Create a new, empty regular file; fails with EEXIST if the name is taken.
    pub fn create_file(&self, path: &RelPath, mode: u32) -> OsResult<File> {
        self.fault(BackingOp::Create, path)?;
        let how = beneath(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_APPEND)
            .mode(Mode::from_bits_truncate(mode));
        let fd = openat2(&self.root, path.as_at_path(), how)?;
        Ok(File::from(fd))
    }

    pub fn open_dir(&self, path: &RelPath) -> OsResult<OwnedFd> {
        openat2(&self.root, path.as_at_path(), beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY))
    }

    pub fn mkdir(&self, path: &RelPath, mode: u32) -> OsResult<()> {
        let (dir, name) = self.parent(path)?;
        mkdirat(&dir, name, Mode::from_bits_truncate(mode))
    }

    pub fn rmdir(&self, path: &RelPath) -> OsResult<()> {
        let (dir, name) = self.parent(path)?;
        unlinkat(&dir, name, UnlinkatFlags::RemoveDir)
    }

    pub fn unlink(&self, path: &RelPath) -> OsResult<()> {
        self.fault(BackingOp::Unlink, path)?;
        let (dir, name) = self.parent(path)?;
        unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)
    }

    /// Rename, failing with EEXIST rather than replacing an existing name.
    pub fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> OsResult<()> {
        self.fault(BackingOp::Rename, from)?;
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        nix::fcntl::renameat2(&from_dir, from_name, &to_dir, to_name, nix::fcntl::RenameFlags::RENAME_NOREPLACE)
    }

    /// Set the kernel's write-once flags of a regular file (`chattr +a` / `+i` / neither).
    /// Where the data filesystem has no such flags, or the daemon lacks CAP_LINUX_IMMUTABLE,
    /// says so once and carries on: wormfs' own rules and verify still hold.
    pub fn protect(&self, path: &RelPath, to: Protection) {
        let flagged = openat2(&self.root, path.as_at_path(), beneath(OFlag::O_RDONLY | OFlag::O_NONBLOCK))
            .and_then(|fd| set_flags(fd.as_fd(), to));
        self.flag_failed(path, flagged);
    }

    /// `protect` through a descriptor already open on the file (a new file's: no second lookup).
    pub fn protect_open(&self, file: &File, path: &RelPath, to: Protection) {
        self.flag_failed(path, set_flags(file.as_fd(), to));
    }

    fn flag_failed(&self, path: &RelPath, flagged: OsResult<()>) {
        if let Err(e) = flagged {
            if !self.flags_warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let why = match e {
                    Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL | Errno::ENOSYS => {
                        "the data directory's filesystem has no append-only/immutable flags".to_string()
                    }
                    Errno::EPERM => "the daemon lacks CAP_LINUX_IMMUTABLE".to_string(),
                    other => other.desc().to_string(),
                };
                log::warn!(
                    "cannot set the kernel's write-once flags (first on {path}: {why}); files in the data directory are protected by wormfs' rules alone, and verify is the proof"
                );
            }
        }
    }

    /// Owner and mode of a file just created, through its descriptor.
    pub fn own_open(&self, file: &File, uid: u32, gid: u32, mode: u32) -> OsResult<()> {
        nix::unistd::fchown(file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        nix::sys::stat::fchmod(file, Mode::from_bits_truncate(mode & 0o7777))
    }

    pub fn truncate(&self, path: &RelPath, size: u64) -> FsResult<()> {
        self.fault(BackingOp::Truncate, path).map_err(|e| FsError::os(path, e))?;
        let file = self.open_file(path, true)?;
        let size = i64::try_from(size).map_err(|_| FsError::os(path, Errno::EFBIG))?;
        nix::unistd::ftruncate(&file, size).map_err(|e| FsError::os(path, e))
    }

    pub fn chown(&self, path: &RelPath, uid: Option<u32>, gid: Option<u32>) -> OsResult<()> {
        let (uid, gid) = (uid.map(Uid::from_raw), gid.map(Gid::from_raw));
        if path.is_root() {
            return nix::unistd::fchown(&self.root, uid, gid);
        }
        let (dir, name) = self.parent(path)?;
        fchownat(&dir, name, uid, gid, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    pub fn chmod(&self, path: &RelPath, mode: u32) -> OsResult<()> {
        let mode = Mode::from_bits_truncate(mode & 0o7777);
        if path.is_root() {
            return nix::sys::stat::fchmod(&self.root, mode);
        }
        let (dir, name) = self.parent(path)?;
        fchmodat(&dir, name, mode, FchmodatFlags::NoFollowSymlink)
    }

    /// Set atime and/or mtime; `TimeSpec::UTIME_OMIT` leaves one alone, `UTIME_NOW` means now.
    pub fn utimens(&self, path: &RelPath, atime: TimeSpec, mtime: TimeSpec) -> OsResult<()> {
        if path.is_root() {
            return nix::sys::stat::futimens(&self.root, &atime, &mtime);
        }
        let (dir, name) = self.parent(path)?;
        nix::sys::stat::utimensat(&dir, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
    }

    pub fn read_dir(&self, path: &RelPath) -> OsResult<Vec<BackingEntry>> {
        let fd = self.open_dir(path)?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_os_string();
            let file_type = match entry.file_type() {
                Some(t) => type_bits(t),
                None => match self.stat(&path.join(&name).map_err(|_| Errno::EINVAL)?) {
                    Ok(st) => st.st_mode & libc::S_IFMT,
                    Err(_) => continue, // vanished while listing
                },
            };
            out.push(BackingEntry { name, ino: entry.ino(), file_type });
        }
        Ok(out)
    }

    pub fn readlink(&self, path: &RelPath) -> OsResult<OsString> {
        let (dir, name) = self.parent(path)?;
        nix::fcntl::readlinkat(&dir, name)
    }

    /// Value of one extended attribute (read through to the backing file).
    pub fn getxattr(&self, path: &RelPath, name: &OsStr) -> OsResult<Vec<u8>> {
        let name = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
        self.with_proc_path(path, |p| {
            xattr_call(|buf, len| unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), buf as *mut libc::c_void, len) })
        })
    }

    /// NUL-separated attribute names, as listxattr(2) returns them.
    pub fn listxattr(&self, path: &RelPath) -> OsResult<Vec<u8>> {
        self.with_proc_path(path, |p| {
            xattr_call(|buf, len| unsafe { libc::listxattr(p.as_ptr(), buf as *mut libc::c_char, len) })
        })
    }

    /// xattr calls have no `*at` form: reach the file through its `O_PATH` fd's /proc link, which
    /// names exactly the inode we resolved beneath DATA_DIR.
    fn with_proc_path<T>(&self, path: &RelPath, f: impl FnOnce(&CString) -> OsResult<T>) -> OsResult<T> {
        let fd = openat2(&self.root, path.as_at_path(), beneath(OFlag::O_PATH))?;
        let proc_path = CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).map_err(|_| Errno::EINVAL)?;
        f(&proc_path)
    }

    /// fdatasync of `file` (at `path`).
    pub fn sync_data(&self, file: &File, path: &RelPath) -> OsResult<()> {
        self.fault(BackingOp::Sync, path)?;
        file.sync_data().map_err(|e| io_errno(&e))
    }

    /// Start writing bytes [start, start + len) of `file` to disk without waiting, so the
    /// fdatasync of the seal that follows has little left to do. Only a hint: a failure shows
    /// up, if it matters, in that fdatasync.
    pub fn start_writeback(&self, file: &File, start: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else { return };
        // SAFETY: sync_file_range only reads its arguments; the descriptor is open for `file`'s life.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), start, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }

    /// Write `buf` at `offset` of `file` (at `path`): one pwrite, which may write less.
    pub fn write_at(&self, file: &File, path: &RelPath, buf: &[u8], offset: u64) -> OsResult<usize> {
        self.fault(BackingOp::Write, path)?;
        std::os::unix::fs::FileExt::write_at(file, buf, offset).map_err(|e| io_errno(&e))
    }

    /// Make the next backing operations fail as `faults` says (tests of the failure paths).
    pub fn set_faults(&mut self, faults: std::sync::Arc<dyn Faults>) {
        self.faults = Some(faults);
    }

    fn fault(&self, op: BackingOp, path: &RelPath) -> OsResult<()> {
        match &self.faults {
            Some(faults) => faults.before(op, path),
            None => Ok(()),
        }
    }

    pub fn statvfs(&self) -> OsResult<Statvfs> {
        fstatvfs(&self.root)
    }
}

/// The write-once flag an open file carries (None when the filesystem has no such flags).
pub fn protection_of(file: &File) -> Option<Protection> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which points at `flags`.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } < 0 {
        return None;
    }
    Some(if flags & FS_IMMUTABLE_FL != 0 {
        Protection::Immutable
    } else if flags & FS_APPEND_FL != 0 {
        Protection::AppendOnly
    } else {
        Protection::None
    })
}

/// Set a regular file's append-only or immutable flag (and clear the other), through `fd`.
fn set_flags(fd: std::os::fd::BorrowedFd<'_>, to: Protection) -> OsResult<()> {
    if fstat(fd)?.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(()); // only files are sealed, so only files are flagged
    }
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which points at `flags`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } < 0 {
        return Err(Errno::last());
    }
    let wanted = (flags & !(FS_APPEND_FL | FS_IMMUTABLE_FL))
        | match to {
            Protection::None => 0,
            Protection::AppendOnly => FS_APPEND_FL,
            Protection::Immutable => FS_IMMUTABLE_FL,
        };
    if wanted == flags {
        return Ok(());
    }
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, which points at `wanted`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_SETFLAGS, &wanted) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Ask for the size, then fetch; retry if the value grew in between.
fn xattr_call(mut call: impl FnMut(*mut u8, usize) -> isize) -> OsResult<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(Errno::last());
        }
        let mut buf = vec![0u8; size as usize];
        let got = call(buf.as_mut_ptr(), buf.len());
        if got < 0 {
            if Errno::last() == Errno::ERANGE {
                continue;
            }
            return Err(Errno::last());
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

fn type_bits(t: nix::dir::Type) -> u32 {
    use nix::dir::Type;
    match t {
        Type::Fifo => libc::S_IFIFO,
        Type::CharacterDevice => libc::S_IFCHR,
        Type::Directory => libc::S_IFDIR,
        Type::BlockDevice => libc::S_IFBLK,
        Type::File => libc::S_IFREG,
        Type::Symlink => libc::S_IFLNK,
        Type::Socket => libc::S_IFSOCK,
    }
}

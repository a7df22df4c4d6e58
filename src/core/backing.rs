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

use super::error::{FsError, FsResult};
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

#[derive(Debug)]
pub struct DataDir {
    root: OwnedFd,
}

fn beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

impl DataDir {
    pub fn open(dir: &Path) -> OsResult<DataDir> {
        let root = nix::fcntl::open(dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(DataDir { root })
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
        let access = if writable { OFlag::O_RDWR } else { OFlag::O_RDONLY };
        let fd = openat2(&self.root, path.as_at_path(), beneath(access | OFlag::O_NONBLOCK)).map_err(os)?;
        let mode = fstat(&fd).map_err(os)?.st_mode;
        match NodeKind::from_mode(mode) {
            Some(NodeKind::Dir) => return Err(FsError::IsDirectory { path: path.clone() }),
            kind => policy::open_node(kind.unwrap_or(NodeKind::File))
                .map_err(|refusal| FsError::Refused { path: path.clone(), refusal })?,
        }
        // O_NONBLOCK was only for the open itself.
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(os)?;
        Ok(File::from(fd))
    }

    /// Create a new, empty regular file; fails with EEXIST if the name is taken.
    pub fn create_file(&self, path: &RelPath, mode: u32) -> OsResult<File> {
        let how = beneath(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR).mode(Mode::from_bits_truncate(mode));
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
        let (dir, name) = self.parent(path)?;
        unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)
    }

    /// Rename, failing with EEXIST rather than replacing an existing name.
    pub fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> OsResult<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        nix::fcntl::renameat2(&from_dir, from_name, &to_dir, to_name, nix::fcntl::RenameFlags::RENAME_NOREPLACE)
    }

    pub fn truncate(&self, path: &RelPath, size: u64) -> FsResult<()> {
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

    pub fn statvfs(&self) -> OsResult<Statvfs> {
        fstatvfs(&self.root)
    }
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

//! Mounting and unmounting the FUSE filesystem with mount(2) ourselves, as libfuse does, so the
//! mount shows up as type `fuse.wormfs` (fuser's own mount says plain `fuse`): `findmnt -t
//! fuse.wormfs`, `df -t fuse.wormfs` and monitoring can tell a wormfs mount from any other.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

pub const FS_TYPE: &str = "fuse.wormfs";

/// Open /dev/fuse and mount it at `mountpoint`; the returned fd is the session's channel.
pub fn mount_fuse(source: &str, mountpoint: &Path, allow_other: bool) -> io::Result<OwnedFd> {
    let dev = OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open("/dev/fuse")?;
    let root_mode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let mut options = format!(
        "fd={},rootmode={:o},user_id={},group_id={},default_permissions",
        dev.as_raw_fd(),
        root_mode,
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if allow_other {
        options.push_str(",allow_other");
    }
    // nosuid, nodev: a log store has no business holding setuid programs or device nodes.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some(source), mountpoint, Some(FS_TYPE), flags, Some(options.as_str()))
        .map_err(|e| io::Error::other(format!("mount(2) of {FS_TYPE} at {}: {e}", mountpoint.display())))?;
    Ok(dev.into())
}

/// Unmount; if it is busy (a shell's cwd is inside, say), detach it so the kernel finishes the
/// unmount when the last user leaves. Returns whether the unmount was lazy.
pub fn unmount(mountpoint: &Path) -> nix::Result<bool> {
    match umount2(mountpoint, MntFlags::empty()) {
        Ok(()) => Ok(false),
        Err(nix::errno::Errno::EBUSY) => umount2(mountpoint, MntFlags::MNT_DETACH).map(|_| true),
        Err(e) => Err(e),
    }
}

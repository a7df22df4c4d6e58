//! Checks before mounting: refuse, with one clear reason, any mount that cannot be right (not
//! root, no /dev/fuse, a mountpoint that is not an empty directory or is already a mount, data,
//! state and mountpoint trees that overlap).

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{MountArgs, MountError};

/// The paths a mount will use, each checked and canonical.
#[derive(Debug)]
pub(super) struct Checked {
    pub data: PathBuf,
    pub state: PathBuf,
    pub mountpoint: PathBuf,
    pub adopt_existing: bool,
}

fn ensure_dir(path: &Path) -> Result<PathBuf, MountError> {
    fs::create_dir_all(path)
        .and_then(|_| path.canonicalize())
        .map_err(|err| MountError::Dir { path: path.to_path_buf(), err })
}

/// The state directory, created root-only if missing (it names every file, owner and reader).
fn ensure_private_dir(path: &Path) -> Result<PathBuf, MountError> {
    crate::state_dir::create_private(path)
        .and_then(|_| path.canonicalize())
        .map_err(|err| MountError::Dir { path: path.to_path_buf(), err })
}

fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub(super) fn preflight(args: &MountArgs) -> Result<Checked, MountError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(MountError::NotRoot);
    }
    match fs::metadata("/dev/fuse") {
        Ok(m) if m.file_type().is_char_device() => {}
        Ok(_) => return Err(MountError::NoFuseDevice(io::Error::other("not a character device"))),
        Err(e) => return Err(MountError::NoFuseDevice(e)),
    }
    fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").map_err(MountError::NoFuseDevice)?;

    let mountpoint = match args.mountpoint.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::MountpointMissing(args.mountpoint.clone()))
        }
        Err(err) => return Err(MountError::Dir { path: args.mountpoint.clone(), err }),
    };
    // Checked before creating anything, so a refused mount leaves no new directories behind.
    for (what, dir) in [("data directory and mountpoint", &args.data), ("state directory and mountpoint", &args.state)]
    {
        if overlap(&absolute(dir), &mountpoint) {
            return Err(MountError::Overlap { what, a: dir.clone(), b: mountpoint });
        }
    }
    if is_mount_point(&mountpoint) {
        return Err(MountError::AlreadyMounted(mountpoint));
    }
    if !mountpoint.is_dir() {
        return Err(MountError::MountpointNotDir(mountpoint));
    }
    let mut entries = fs::read_dir(&mountpoint).map_err(|err| MountError::Dir { path: mountpoint.clone(), err })?;
    if entries.next().is_some() {
        return Err(MountError::MountpointNotEmpty(mountpoint));
    }

    let data = ensure_dir(&args.data)?;
    let state = ensure_private_dir(&args.state)?;
    // Again on canonical paths: symlinks may hide an overlap the spelled-out paths did not show.
    for (what, a, b) in [
        ("data directory and mountpoint", &data, &mountpoint),
        ("state directory and mountpoint", &state, &mountpoint),
        ("data and state directories", &data, &state),
    ] {
        if overlap(a, b) {
            return Err(MountError::Overlap { what, a: a.clone(), b: b.clone() });
        }
    }
    Ok(Checked { data, state, mountpoint, adopt_existing: args.adopt_existing })
}

/// `path` made absolute without touching the filesystem (it may not exist yet).
fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Canonicalize the longest existing ancestor so symlinked parents compare correctly.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
    let mut out = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.iter().rev() {
        out.push(name);
    }
    out
}

/// Whether `path` (canonical) is the mount point of some mount, per /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().filter_map(|line| line.split(' ').nth(4)).any(|mp| Path::new(&unescape_mountinfo(mp)) == path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape_mountinfo("/a\\134b"), "/a\\b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn overlap_is_either_way_and_equal() {
        assert!(overlap(Path::new("/a"), Path::new("/a")));
        assert!(overlap(Path::new("/a/b"), Path::new("/a")));
        assert!(overlap(Path::new("/a"), Path::new("/a/b")));
        assert!(!overlap(Path::new("/a/b"), Path::new("/a/bc")));
    }
}

//! Paths relative to DATA_DIR. Every name the kernel hands us is checked here once, so the rest of
//! the core can join and log paths without re-validating them.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// A path inside DATA_DIR: zero or more components, none empty, `.`, `..` or containing `/` or
/// NUL. The empty path is DATA_DIR itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(OsString);

/// Why a name was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadName {
    Empty,
    Dot,
    Slash,
    Nul,
    TooLong,
}

/// Longest single component we accept (the kernel's NAME_MAX).
const NAME_MAX: usize = 255;

/// Longest whole path we accept: every access to DATA_DIR is one `openat2` of this path below
/// DATA_DIR's fd, and the kernel takes at most PATH_MAX (4096) bytes with the NUL. A longer
/// path could be made one component at a time through the mount, but never opened again.
pub const PATH_MAX: usize = 4095;

impl RelPath {
    /// The root of DATA_DIR.
    pub fn root() -> Self {
        RelPath(OsString::new())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/name`, after checking that `name` is one safe component.
    pub fn join(&self, name: &OsStr) -> Result<RelPath, BadName> {
        check_name(name)?;
        let mut bytes = self.0.as_bytes().to_vec();
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name.as_bytes());
        if bytes.len() > PATH_MAX {
            return Err(BadName::TooLong);
        }
        Ok(RelPath(OsString::from_vec(bytes)))
    }

    /// Parse a relative path such as `a/b/c` (e.g. from the command line or a record).
    pub fn parse(path: &OsStr) -> Result<RelPath, BadName> {
        let mut out = RelPath::root();
        for part in path.as_bytes().split(|b| *b == b'/') {
            out = out.join(OsStr::from_bytes(part))?;
        }
        Ok(out)
    }

    /// A path as seen inside the mount (`/app/today.log`, `/` for the whole mount), as admins
    /// type it on the command line or in a config file.
    pub fn from_mount_path(text: &str) -> Result<RelPath, BadName> {
        match text.trim_start_matches('/') {
            "" => Ok(RelPath::root()),
            relative => RelPath::parse(OsStr::new(relative)),
        }
    }

    /// The parent directory and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &OsStr)> {
        if self.is_root() {
            return None;
        }
        let bytes = self.0.as_bytes();
        Some(match bytes.iter().rposition(|b| *b == b'/') {
            Some(i) => (RelPath(OsString::from_vec(bytes[..i].to_vec())), OsStr::from_bytes(&bytes[i + 1..])),
            None => (RelPath::root(), OsStr::from_bytes(bytes)),
        })
    }

    /// The path for `*at` system calls relative to DATA_DIR (`.` for the root).
    pub fn as_at_path(&self) -> &Path {
        if self.is_root() {
            Path::new(".")
        } else {
            Path::new(&self.0)
        }
    }

    pub fn as_os_str(&self) -> &OsStr {
        &self.0
    }

    /// Whether this path is `prefix` or inside it (whole components: `a/bc` is not under `a/b`).
    pub fn is_under(&self, prefix: &RelPath) -> bool {
        if prefix.is_root() {
            return true;
        }
        let (p, pre) = (self.0.as_bytes(), prefix.0.as_bytes());
        p.starts_with(pre) && (p.len() == pre.len() || p[pre.len()] == b'/')
    }
}

fn check_name(name: &OsStr) -> Result<(), BadName> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err(BadName::Empty);
    }
    if b == b"." || b == b".." {
        return Err(BadName::Dot);
    }
    if b.contains(&b'/') {
        return Err(BadName::Slash);
    }
    if b.contains(&0) {
        return Err(BadName::Nul);
    }
    if b.len() > NAME_MAX {
        return Err(BadName::TooLong);
    }
    Ok(())
}

impl RelPath {
    /// The path as text exactly, `/app/today.log`, when its bytes are UTF-8 (None otherwise).
    pub fn exact_text(&self) -> Option<String> {
        self.0.to_str().map(|s| format!("/{s}"))
    }

    /// The path's bytes as lowercase hex (no leading `/`), for output that must be lossless.
    pub fn hex(&self) -> String {
        self.0.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for RelPath {
    /// Shown as an absolute path inside the mount, e.g. `/app/today.log`, escaped so that one
    /// shown path stands for exactly one name and nothing in a name can start a new line of
    /// output: a backslash is `\\`, control characters are `\n`, `\t`, `\r` or `\xNN`
    /// (`\u{N}` beyond ASCII), and bytes that are not UTF-8 are `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/")?;
        for chunk in self.0.as_bytes().utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\r' => f.write_str("\\r")?,
                    c if c.is_control() && c.is_ascii() => write!(f, "\\x{:02x}", c as u32)?,
                    c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => write!(f, "{c}")?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_split_round_trip() {
        let p = RelPath::root().join(OsStr::new("a")).unwrap().join(OsStr::new("b.log")).unwrap();
        assert_eq!(p.to_string(), "/a/b.log");
        let (parent, last) = p.split_last().unwrap();
        assert_eq!(parent.to_string(), "/a");
        assert_eq!(last, "b.log");
        assert!(RelPath::root().split_last().is_none());
    }

    #[test]
    fn hostile_names_are_rejected() {
        let root = RelPath::root();
        assert_eq!(root.join(OsStr::new("")), Err(BadName::Empty));
        assert_eq!(root.join(OsStr::new("..")), Err(BadName::Dot));
        assert_eq!(root.join(OsStr::new(".")), Err(BadName::Dot));
        assert_eq!(root.join(OsStr::new("a/b")), Err(BadName::Slash));
        assert_eq!(root.join(OsStr::from_bytes(b"a\0b")), Err(BadName::Nul));
        assert_eq!(root.join(OsStr::new(&"x".repeat(256))), Err(BadName::TooLong));
        assert_eq!(RelPath::parse(OsStr::new("a/../b")), Err(BadName::Dot));
        assert_eq!(RelPath::parse(OsStr::new("/etc/passwd")), Err(BadName::Empty));
        assert_eq!(RelPath::parse(OsStr::new("a//b")), Err(BadName::Empty));
    }

    #[test]
    fn a_path_too_long_to_open_again_is_refused() {
        let name = "x".repeat(255);
        let mut p = RelPath::root();
        // 16 components of 255 bytes and their slashes: 4095 bytes, the most openat2 takes.
        for _ in 0..16 {
            p = p.join(OsStr::new(&name)).unwrap();
        }
        assert_eq!(p.as_os_str().len(), 16 * 256 - 1);
        assert_eq!(p.join(OsStr::new("y")), Err(BadName::TooLong));
    }

    #[test]
    fn mount_paths_are_absolute_inside_the_mount() {
        assert_eq!(RelPath::from_mount_path("/").unwrap(), RelPath::root());
        assert_eq!(RelPath::from_mount_path("/a/b.log").unwrap().to_string(), "/a/b.log");
        assert_eq!(RelPath::from_mount_path("a").unwrap().to_string(), "/a");
        assert!(RelPath::from_mount_path("/a/../b").is_err());
        assert!(RelPath::from_mount_path("/a/").is_err());
    }

    #[test]
    fn shown_names_are_escaped_and_unambiguous() {
        let p = |b: &[u8]| RelPath::parse(OsStr::from_bytes(b)).unwrap();
        assert_eq!(p(b"app/today.log").to_string(), "/app/today.log");
        assert_eq!(p("caf\u{e9}.log".as_bytes()).to_string(), "/caf\u{e9}.log", "printable UTF-8 as it is");
        assert_eq!(p(b"a\nFINDING fake: x").to_string(), "/a\\nFINDING fake: x", "no new line");
        assert_eq!(p(b"n\xff.log").to_string(), "/n\\xff.log");
        assert_ne!(p(b"n\xff.log").to_string(), p(b"n\xfe.log").to_string(), "two names, two texts");
        assert_ne!(p(b"a\\x41").to_string(), p(b"aA").to_string());
        assert_eq!(p(b"a\\x41").to_string(), "/a\\\\x41", "a backslash is doubled");
        assert_eq!(p(b"tab\there\x1b[31m").to_string(), "/tab\\there\\x1b[31m");
        assert_eq!(p(b"n\xff.log").exact_text(), None);
        assert_eq!(p(b"n\xff.log").hex(), "6eff2e6c6f67");
        assert_eq!(p(b"a\nb").exact_text().as_deref(), Some("/a\nb"));
    }

    #[test]
    fn root_is_dot_for_at_calls() {
        assert_eq!(RelPath::root().as_at_path(), Path::new("."));
    }
}

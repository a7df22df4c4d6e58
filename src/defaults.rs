//! Where the data and state directories are when no flag says: `WORMFS_DATA` / `WORMFS_STATE`
//! in the environment, then the same names in /etc/default/wormfs (or the file `WORMFS_ENV_FILE`
//! names), the file the systemd unit and the verify script read. So on an installed machine
//! `wormfs status`, `wormfs log` and `wormfs verify` work with no flags.

use std::fmt;
use std::path::PathBuf;

pub const ENV_FILE: &str = "/etc/default/wormfs";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Data,
    State,
}

impl Dir {
    fn flag(self) -> &'static str {
        match self {
            Dir::Data => "--data",
            Dir::State => "--state",
        }
    }

    fn var(self) -> &'static str {
        match self {
            Dir::Data => "WORMFS_DATA",
            Dir::State => "WORMFS_STATE",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Dir::Data => "data directory",
            Dir::State => "state directory",
        }
    }
}

#[derive(Debug)]
pub enum DefaultsError {
    /// Nothing names it.
    NotSet { dir: Dir, file: PathBuf },
    /// The defaults file exists but cannot be read.
    Unreadable { file: PathBuf, err: std::io::Error },
}

impl fmt::Display for DefaultsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultsError::NotSet { dir, file } => write!(
                f,
                "no {} given: pass {}, or set {} in the environment or in {}",
                dir.what(),
                dir.flag(),
                dir.var(),
                file.display()
            ),
            DefaultsError::Unreadable { file, err } => write!(f, "{}: {err}", file.display()),
        }
    }
}

impl std::error::Error for DefaultsError {}

/// The defaults file: `WORMFS_ENV_FILE`, else /etc/default/wormfs.
pub fn env_file() -> PathBuf {
    std::env::var_os("WORMFS_ENV_FILE").filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from(ENV_FILE), PathBuf::from)
}

/// `flag` if given, else the environment, else the defaults file; none of the three is
/// `DefaultsError::NotSet`.
pub fn resolve(flag: Option<PathBuf>, dir: Dir) -> Result<PathBuf, DefaultsError> {
    find(flag, dir)?.ok_or_else(|| DefaultsError::NotSet { dir, file: env_file() })
}

/// As `resolve`, but None when nothing names it (for a directory the command can do without).
pub fn find(flag: Option<PathBuf>, dir: Dir) -> Result<Option<PathBuf>, DefaultsError> {
    if let Some(path) = flag {
        return Ok(Some(path));
    }
    if let Some(value) = std::env::var_os(dir.var()).filter(|v| !v.is_empty()) {
        return Ok(Some(PathBuf::from(value)));
    }
    let file = env_file();
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(DefaultsError::Unreadable { file, err }),
    };
    Ok(text.as_deref().and_then(|t| lookup(t, dir.var())).map(PathBuf::from))
}

/// The value of `NAME=value` for `name` in an environment file (plain lines, `#` comments, the
/// last assignment wins, as systemd's EnvironmentFile= reads it; one pair of quotes is removed).
pub fn lookup(text: &str, name: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == name {
                let value = value.trim();
                let unquoted = ['"', '\'']
                    .iter()
                    .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                    .unwrap_or(value);
                found = Some(unquoted.to_string()).filter(|v| !v.is_empty());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_files_are_read_as_systemd_reads_them() {
        let text = "# where\nWORMFS_STATE=/var/lib/wormfs/state\n#WORMFS_DATA=/nope\nWORMFS_DATA = \"/srv/data\"\nWORMFS_STATE=/later\n";
        assert_eq!(lookup(text, "WORMFS_STATE").as_deref(), Some("/later"));
        assert_eq!(lookup(text, "WORMFS_DATA").as_deref(), Some("/srv/data"));
        assert_eq!(lookup(text, "WORMFS_PUBKEY"), None);
        assert_eq!(lookup("WORMFS_DATA=\n", "WORMFS_DATA"), None);
    }

    #[test]
    fn the_shipped_defaults_file_names_the_units_directories() {
        let shipped = include_str!("../systemd/wormfs.default");
        assert_eq!(lookup(shipped, "WORMFS_DATA").as_deref(), Some("/var/lib/wormfs/data"));
        assert_eq!(lookup(shipped, "WORMFS_STATE").as_deref(), Some("/var/lib/wormfs/state"));
        // Its commented-out examples stay comments.
        assert_eq!(lookup(shipped, "WORMFS_MOUNT_OPTIONS"), None);
    }

    #[test]
    fn an_explicit_flag_wins_over_everything() {
        assert_eq!(resolve(Some("/x".into()), Dir::State).unwrap(), PathBuf::from("/x"));
    }
}

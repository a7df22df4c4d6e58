//! The ed25519 signing key in STATE_DIR (`state_dir` names the files): the 32-byte secret seed
//! as hex, mode 0600, and the public key as hex, for verifiers.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::core::segment::{from_hex, hex};
use crate::state_dir::StateDir;

#[derive(Debug)]
pub enum KeyError {
    Exists(PathBuf),
    Missing(PathBuf),
    /// The secret key file can be read by group or others.
    TooOpen {
        path: PathBuf,
        mode: u32,
    },
    Malformed(PathBuf),
    Io {
        path: PathBuf,
        err: io::Error,
    },
    Random(nix::errno::Errno),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Exists(p) => write!(f, "{} already exists; refusing to replace a key pair", p.display()),
            KeyError::Missing(p) => write!(
                f,
                "no signing key at {}; create one with `wormfs keygen --state {}`",
                p.display(),
                p.parent().unwrap_or(Path::new(".")).display()
            ),
            KeyError::TooOpen { path, mode } => write!(
                f,
                "{} is readable by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
            KeyError::Malformed(p) => write!(f, "{} is not a 64-hex-digit ed25519 key", p.display()),
            KeyError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            KeyError::Random(e) => write!(f, "cannot get random bytes for a key: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |err| KeyError::Io { path: path.to_path_buf(), err }
}

/// Create a new key pair in `state_dir` (created if missing). Never overwrites.
pub fn generate(state_dir: &StateDir) -> Result<VerifyingKey, KeyError> {
    crate::state_dir::create_private(state_dir.path()).map_err(io_err(state_dir.path()))?;
    let secret_path = state_dir.signing_key();
    let public_path = state_dir.public_key();
    // A lone signing.pub means the secret was lost: a new pair would silently replace the key
    // verifiers were told to trust.
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    let mut seed = [0u8; 32];
    let mut filled = 0;
    while filled < seed.len() {
        let n = unsafe { libc::getrandom(seed[filled..].as_mut_ptr().cast(), seed.len() - filled, 0) };
        if n < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(KeyError::Random(e));
        }
        filled += n as usize;
    }
    let key = SigningKey::from_bytes(&seed);
    // create_new + mode 0600 at creation: the secret is never on disk with wider permissions.
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&secret_path).map_err(|err| {
            match err.kind() {
                io::ErrorKind::AlreadyExists => KeyError::Exists(secret_path.clone()),
                _ => KeyError::Io { path: secret_path.clone(), err },
            }
        })?;
    writeln!(f, "{}", hex(&seed)).and_then(|_| f.sync_all()).map_err(io_err(&secret_path))?;
    let public = key.verifying_key();
    fs::write(&public_path, format!("{}\n", hex(public.as_bytes()))).map_err(io_err(&public_path))?;
    Ok(public)
}

/// Load the signing key, refusing one that group or others can read.
pub fn load_signing(state_dir: &StateDir) -> Result<SigningKey, KeyError> {
    let path = state_dir.signing_key();
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeyError::Missing(path)),
        Err(err) => return Err(KeyError::Io { path, err }),
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path, mode });
    }
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    let seed: [u8; 32] =
        from_hex(&text).and_then(|b| b.try_into().ok()).ok_or_else(|| KeyError::Malformed(path.clone()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key from hex text.
pub fn parse_public(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = from_hex(text)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// A public key given as a file holding hex, or as hex itself.
pub fn load_public(spec: &str) -> Result<VerifyingKey, KeyError> {
    let path = PathBuf::from(spec);
    if path.exists() {
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        return parse_public(&text).ok_or(KeyError::Malformed(path));
    }
    parse_public(spec).ok_or(KeyError::Malformed(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_key_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let public = generate(&dir).unwrap();
        let mode = fs::metadata(dir.signing_key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_signing(&dir).unwrap().verifying_key(), public);
        assert_eq!(load_public(dir.public_key().to_str().unwrap()).unwrap(), public);
        assert!(matches!(generate(&dir), Err(KeyError::Exists(_))));

        // A state directory keygen creates is root's alone: the chain names every file and reader.
        let fresh = StateDir::new(tmp.path().join("new/state"));
        generate(&fresh).unwrap();
        assert_eq!(fs::metadata(fresh.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn an_open_or_missing_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        assert!(matches!(load_signing(&dir), Err(KeyError::Missing(_))));
        generate(&dir).unwrap();
        let path = dir.signing_key();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(load_signing(&dir), Err(KeyError::TooOpen { .. })));
    }
}

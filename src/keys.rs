//! The key files in STATE_DIR (`state_dir` names them): the current epoch's ed25519 signing key
//! and the checkpoint key (32-byte secret seeds as hex, mode 0600), the trust anchor (epoch 0's
//! public key, as hex and as a C2SP vkey) and the checkpoint vkey; and `FileVault`, which
//! rotates the epoch key and destroys the old one.

use std::fmt;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use zeroize::{Zeroize, Zeroizing};

use crate::core::chain::key_id;
use crate::core::segment::{from_hex, hex};
use crate::core::store::{KeyVault, Store, StoreError, VaultError};
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
    /// The key file holds another key than the one the chain is signed with now.
    NotTheChainsKey {
        path: PathBuf,
        found: [u8; 8],
        chain: [u8; 8],
    },
    /// An origin (a key name) C2SP signed notes cannot carry: empty, or with spaces or `+`.
    BadOrigin(String),
    /// No checkpoint key (a state directory made before checkpoints, or a lost file).
    NoCheckpointKey(PathBuf),
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
            KeyError::NotTheChainsKey { path, found, chain } => write!(
                f,
                "{} holds key {}, but the chain is signed now with key {}; refusing to sign with another key",
                path.display(),
                hex(found),
                hex(chain)
            ),
            KeyError::NoCheckpointKey(p) => write!(
                f,
                "no checkpoint key at {}; create one with `wormfs keygen --state {}` (it adds only what is missing to a state directory that has its signing key)",
                p.display(),
                p.parent().unwrap_or(Path::new(".")).display()
            ),
            KeyError::BadOrigin(o) => {
                write!(f, "{o:?} cannot be a log origin: it must be non-empty, without spaces or '+'")
            }
        }
    }
}

impl std::error::Error for KeyError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |err| KeyError::Io { path: path.to_path_buf(), err }
}

/// What `keygen` made: the trust anchor (epoch 0's public key), and the checkpoint key, each
/// also as a C2SP verifier key.
#[derive(Debug)]
pub struct Generated {
    pub anchor: VerifyingKey,
    pub anchor_vkey: String,
    pub checkpoint_vkey: String,
}

/// The origin line a log's checkpoints carry when keygen is not told one: `wormfs/HOSTNAME`.
pub fn default_origin() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| !c.is_whitespace() && *c != '+').collect();
    format!("wormfs/{}", if host.is_empty() { "localhost" } else { &host })
}

/// Create the key pairs in `state_dir` (created if missing): the first epoch key, whose public
/// half is the chain's trust anchor, and the checkpoint key named `origin`. Never overwrites.
pub fn generate(state_dir: &StateDir, origin: &str) -> Result<Generated, KeyError> {
    if !signed_note::is_key_name_valid(origin) {
        return Err(KeyError::BadOrigin(origin.to_string()));
    }
    crate::state_dir::create_private(state_dir.path()).map_err(io_err(state_dir.path()))?;
    if state_dir.signing_key().exists() && state_dir.public_key().exists() && !state_dir.checkpoint_key().exists() {
        return add_checkpoint_key(state_dir, origin);
    }
    let files = [
        state_dir.signing_key(),
        state_dir.next_signing_key(),
        state_dir.public_key(),
        state_dir.public_vkey(),
        state_dir.checkpoint_key(),
        state_dir.checkpoint_vkey(),
    ];
    // A lone signing.pub means the secret was lost: a new pair would silently replace the key
    // verifiers were told to trust.
    for path in &files {
        if path.exists() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    let key = Box::new(SigningKey::from_bytes(&*random_seed()?));
    let checkpoint = Box::new(SigningKey::from_bytes(&*random_seed()?));
    write_secret(&state_dir.signing_key(), &key)?;
    write_secret(&state_dir.checkpoint_key(), &checkpoint)?;
    let anchor = key.verifying_key();
    let anchor_vkey = vkey(origin, &anchor);
    let checkpoint_vkey = vkey(origin, &checkpoint.verifying_key());
    for (path, text) in [
        (state_dir.public_key(), hex(anchor.as_bytes())),
        (state_dir.public_vkey(), anchor_vkey.clone()),
        (state_dir.checkpoint_vkey(), checkpoint_vkey.clone()),
    ] {
        fs::write(&path, format!("{text}\n")).map_err(io_err(&path))?;
    }
    sync_dir(state_dir.path())?;
    Ok(Generated { anchor, anchor_vkey, checkpoint_vkey })
}

/// A state directory from before checkpoints has its epoch key and anchor but no checkpoint key:
/// add that (and the anchor's vkey), leaving the chain's keys alone.
fn add_checkpoint_key(state_dir: &StateDir, origin: &str) -> Result<Generated, KeyError> {
    let vkey_path = state_dir.checkpoint_vkey();
    if vkey_path.exists() {
        return Err(KeyError::Exists(vkey_path));
    }
    let anchor_path = state_dir.public_key();
    let anchor = load_public(&anchor_path.to_string_lossy())?;
    let checkpoint = Box::new(SigningKey::from_bytes(&*random_seed()?));
    write_secret(&state_dir.checkpoint_key(), &checkpoint)?;
    let anchor_vkey = vkey(origin, &anchor);
    let checkpoint_vkey = vkey(origin, &checkpoint.verifying_key());
    if !state_dir.public_vkey().exists() {
        fs::write(state_dir.public_vkey(), format!("{anchor_vkey}\n")).map_err(io_err(&state_dir.public_vkey()))?;
    }
    fs::write(&vkey_path, format!("{checkpoint_vkey}\n")).map_err(io_err(&vkey_path))?;
    sync_dir(state_dir.path())?;
    Ok(Generated { anchor, anchor_vkey, checkpoint_vkey })
}

/// A C2SP verifier key (`name+id+base64(0x01 ‖ key)`) for an ed25519 public key.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(name, key)
}

fn random_seed() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut seed = Zeroizing::new([0u8; 32]);
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
    Ok(seed)
}

/// Write a secret seed as hex to a new file, mode 0600 from creation, synced. The hex text is
/// built in one buffer of its final size and wiped after (no reallocation leaves a copy).
fn write_secret(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let mut text = Zeroizing::new(String::with_capacity(65));
    for b in key.as_bytes() {
        let _ = write!(&mut *text, "{b:02x}");
    }
    text.push('\n');
    // create_new + mode 0600 at creation: the secret is never on disk with wider permissions.
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
            _ => KeyError::Io { path: path.to_path_buf(), err },
        })?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(io_err(path))
}

/// Read a secret seed, refusing a file that group or others can read. Read into a fixed
/// buffer and decoded in place, both wiped after; the key is boxed at once, so later moves
/// copy a pointer, not the key.
fn read_secret(path: &Path) -> Result<Box<SigningKey>, KeyError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeyError::Missing(path.to_path_buf())),
        Err(err) => return Err(KeyError::Io { path: path.to_path_buf(), err }),
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path: path.to_path_buf(), mode });
    }
    let mut text = Zeroizing::new([0u8; 80]);
    let mut len = 0;
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    loop {
        match f.read(&mut text[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(KeyError::Io { path: path.to_path_buf(), err }),
        }
        if len == text.len() {
            return Err(KeyError::Malformed(path.to_path_buf()));
        }
    }
    let digits = text[..len].trim_ascii();
    let mut seed = Zeroizing::new([0u8; 32]);
    if digits.len() != 64 {
        return Err(KeyError::Malformed(path.to_path_buf()));
    }
    for (i, pair) in digits.chunks(2).enumerate() {
        let nibble = |c: u8| (c as char).to_digit(16);
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => seed[i] = (hi * 16 + lo) as u8,
            _ => return Err(KeyError::Malformed(path.to_path_buf())),
        }
    }
    Ok(Box::new(SigningKey::from_bytes(&seed)))
}

/// Overwrite the stack below the caller with zeros: the frames of functions that held key bytes
/// (reading, generating, staging a key) are gone but their bytes stay until something else
/// happens to overwrite them. Called by the threads that handle keys, after they did.
#[inline(never)]
pub fn scrub_stack() {
    let mut area = [0u8; 64 * 1024];
    std::hint::black_box(&mut area);
    area.zeroize();
    std::hint::black_box(&area);
}

/// Destroy a secret key file: overwrite its bytes with zeros, sync, unlink, sync the directory.
/// (Flash and journaling or copy-on-write filesystems may still keep the old blocks; the
/// README says so.)
fn destroy(path: &Path) -> io::Result<()> {
    let mut f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len() as usize;
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    drop(f);
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Load the key that signs the chain now: the one whose id is `expected` (the index's current
/// epoch; None for a chain not begun yet, which takes keygen's key). A rotation interrupted by a
/// crash can leave two key files: the one the chain names is kept, the other destroyed.
pub fn load_signing(state_dir: &StateDir, expected: Option<[u8; 8]>) -> Result<Box<SigningKey>, KeyError> {
    let (current, next) = (state_dir.signing_key(), state_dir.next_signing_key());
    let have_current = current.exists();
    let current_key = if have_current { Some(read_secret(&current)?) } else { None };
    let next_key = if next.exists() { Some(read_secret(&next)?) } else { None };
    let is_chains = |k: &SigningKey| expected.is_none_or(|id| key_id(&k.verifying_key()) == id);
    if current_key.as_ref().is_some_and(|k| is_chains(k)) {
        if next_key.is_some() {
            destroy(&next).map_err(io_err(&next))?;
        }
        return Ok(current_key.expect("checked just above"));
    }
    if let Some(key) = next_key.filter(|k| expected.is_some() && is_chains(k)) {
        // The rotation was committed but not promoted: finish it.
        if have_current {
            destroy(&current).map_err(io_err(&current))?;
        }
        fs::rename(&next, &current).map_err(io_err(&current))?;
        sync_dir(state_dir.path())?;
        return Ok(key);
    }
    match (current_key, expected) {
        (Some(k), Some(id)) => {
            Err(KeyError::NotTheChainsKey { path: current, found: key_id(&k.verifying_key()), chain: id })
        }
        _ => Err(KeyError::Missing(current)),
    }
}

/// Refuse early when STATE_DIR has no epoch key at all (before the index is opened or made).
pub fn require_signing_key(state_dir: &StateDir) -> Result<(), KeyError> {
    if state_dir.signing_key().exists() || state_dir.next_signing_key().exists() {
        Ok(())
    } else {
        Err(KeyError::Missing(state_dir.signing_key()))
    }
}

/// The key id the chain in `store` is signed with now (None before the first record).
pub fn chain_key_id(store: &dyn Store) -> Result<Option<[u8; 8]>, StoreError> {
    Ok(match store.epoch()? {
        Some(epoch) => Some(epoch.key_id),
        None => store.key_id()?,
    })
}

/// The epoch keys in STATE_DIR: a rotation's next key is staged as `signing.key.next`, then
/// promoted over `signing.key`, whose old bytes are destroyed first.
#[derive(Debug)]
pub struct FileVault {
    state_dir: StateDir,
}

impl FileVault {
    pub fn new(state_dir: StateDir) -> FileVault {
        FileVault { state_dir }
    }
}

fn vault_err(doing: &str, path: &Path) -> impl FnOnce(io::Error) -> VaultError {
    let doing = format!("{doing} {}", path.display());
    move |source| VaultError { doing, source }
}

impl KeyVault for FileVault {
    fn generate(&self) -> Result<Box<SigningKey>, VaultError> {
        random_seed()
            .map(|seed| Box::new(SigningKey::from_bytes(&seed)))
            .map_err(|e| VaultError { doing: "get random bytes".into(), source: io::Error::other(e.to_string()) })
    }

    fn stage(&self, next: &SigningKey) -> Result<(), VaultError> {
        let path = self.state_dir.next_signing_key();
        // A staged key the chain never certified (a rotation that failed) is worthless.
        destroy(&path).map_err(vault_err("destroy the uncertified", &path))?;
        write_secret(&path, next).map_err(|e| VaultError {
            doing: format!("write {}", path.display()),
            source: io::Error::other(e.to_string()),
        })?;
        fs::File::open(self.state_dir.path())
            .and_then(|d| d.sync_all())
            .map_err(vault_err("sync", self.state_dir.path()))
    }

    fn promote(&self) -> Result<(), VaultError> {
        let (current, next) = (self.state_dir.signing_key(), self.state_dir.next_signing_key());
        destroy(&current).map_err(vault_err("destroy the old key", &current))?;
        fs::rename(&next, &current).map_err(vault_err("promote the new key to", &current))?;
        fs::File::open(self.state_dir.path())
            .and_then(|d| d.sync_all())
            .map_err(vault_err("sync", self.state_dir.path()))
    }
}

/// The checkpoint signer: its key and its name (the origin line, from checkpoint.vkey).
pub fn load_checkpoint_key(state_dir: &StateDir) -> Result<(String, Box<SigningKey>), KeyError> {
    let key = match read_secret(&state_dir.checkpoint_key()) {
        Err(KeyError::Missing(path)) => return Err(KeyError::NoCheckpointKey(path)),
        other => other?,
    };
    let path = state_dir.checkpoint_vkey();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeyError::Missing(path)),
        Err(err) => return Err(KeyError::Io { path, err }),
    };
    let (name, public) = parse_vkey(text.trim()).ok_or_else(|| KeyError::Malformed(path.clone()))?;
    if public != key.verifying_key() {
        return Err(KeyError::Malformed(path));
    }
    Ok((name, key))
}

/// A C2SP ed25519 verifier key: its name and public key (None if it is not one, or its key id
/// does not match).
pub fn parse_vkey(text: &str) -> Option<(String, VerifyingKey)> {
    let (name, rest) = text.split_once('+')?;
    let (id, b64) = rest.split_once('+')?;
    let raw = base64_decode(b64)?;
    if raw.len() != 33 || raw[0] != 0x01 || id.len() != 8 || !signed_note::is_key_name_valid(name) {
        return None;
    }
    if u32::from_str_radix(id, 16).ok()? != signed_note::key_id(name, &raw) {
        return None;
    }
    let key = VerifyingKey::from_bytes(raw[1..].try_into().ok()?).ok()?;
    Some((name.to_string(), key))
}

/// A C2SP ed25519 verifier key given as a file holding it, or as the text itself: its name
/// and public key.
pub fn load_vkey(spec: &str) -> Result<(String, VerifyingKey), KeyError> {
    let path = PathBuf::from(spec);
    let text = if path.is_file() { fs::read_to_string(&path).map_err(io_err(&path))? } else { spec.to_string() };
    parse_vkey(text.trim()).ok_or(KeyError::Malformed(path))
}

/// Standard base64 with padding, strictly (what C2SP notes use).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A public key from hex text or a C2SP verifier key.
pub fn parse_public(text: &str) -> Option<VerifyingKey> {
    let text = text.trim();
    if let Some((_, key)) = parse_vkey(text) {
        return Some(key);
    }
    let bytes: [u8; 32] = from_hex(text)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// A public key given as a file holding it (hex or vkey), or as the text itself.
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

    const ORIGIN: &str = "wormfs.test/host";

    #[test]
    fn keygen_writes_private_keys_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let made = generate(&dir, ORIGIN).unwrap();
        for secret in [dir.signing_key(), dir.checkpoint_key()] {
            assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(load_signing(&dir, None).unwrap().verifying_key(), made.anchor);
        assert_eq!(load_public(dir.public_key().to_str().unwrap()).unwrap(), made.anchor);
        assert_eq!(load_public(&made.anchor_vkey).unwrap(), made.anchor, "the vkey names the same key");
        assert!(made.checkpoint_vkey.starts_with("wormfs.test/host+"));
        let (name, checkpoint) = load_checkpoint_key(&dir).unwrap();
        assert_eq!(name, ORIGIN);
        assert_eq!(parse_vkey(&made.checkpoint_vkey).unwrap().1, checkpoint.verifying_key());
        assert!(matches!(generate(&dir, ORIGIN), Err(KeyError::Exists(_))));
        assert!(matches!(generate(&StateDir::new(tmp.path().join("x")), "has space"), Err(KeyError::BadOrigin(_))));

        // A state directory from before checkpoints gains a checkpoint key; its chain's keys stay.
        let epoch_key = fs::read(dir.signing_key()).unwrap();
        fs::remove_file(dir.checkpoint_key()).unwrap();
        fs::remove_file(dir.checkpoint_vkey()).unwrap();
        let again = generate(&dir, ORIGIN).unwrap();
        assert_eq!(again.anchor, made.anchor);
        assert_ne!(again.checkpoint_vkey, made.checkpoint_vkey);
        assert_eq!(fs::read(dir.signing_key()).unwrap(), epoch_key);
        assert!(load_checkpoint_key(&dir).is_ok());

        // A state directory keygen creates is root's alone: the chain names every file and reader.
        let fresh = StateDir::new(tmp.path().join("new/state"));
        generate(&fresh, ORIGIN).unwrap();
        assert_eq!(fs::metadata(fresh.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_vkey_with_a_wrong_id_or_type_is_refused() {
        let key = SigningKey::from_bytes(&[4; 32]).verifying_key();
        let good = vkey("a.example/log", &key);
        assert_eq!(parse_vkey(&good).map(|v| v.1), Some(key));
        let (name, rest) = good.split_once('+').unwrap();
        let (_, b64) = rest.split_once('+').unwrap();
        assert_eq!(parse_vkey(&format!("{name}+00000000+{b64}")), None, "key id does not match");
        assert_eq!(parse_vkey(&format!("other.example+{rest}")), None, "the id binds the name");
    }

    #[test]
    fn an_open_or_missing_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        assert!(matches!(load_signing(&dir, None), Err(KeyError::Missing(_))));
        generate(&dir, ORIGIN).unwrap();
        let path = dir.signing_key();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(load_signing(&dir, None), Err(KeyError::TooOpen { .. })));
    }

    #[test]
    fn a_rotation_destroys_the_old_key_and_a_crash_in_between_keeps_the_chains_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        generate(&dir, ORIGIN).unwrap();
        let vault = FileVault::new(dir.clone());
        let first = load_signing(&dir, None).unwrap();
        let first_id = key_id(&first.verifying_key());
        let old_text = fs::read_to_string(dir.signing_key()).unwrap();

        // Crash after staging, before the KeyRotate committed: the chain still names the first
        // key; the staged one is destroyed.
        let second = vault.generate().unwrap();
        vault.stage(&second).unwrap();
        assert_eq!(fs::metadata(dir.next_signing_key()).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_signing(&dir, Some(first_id)).unwrap(), first);
        assert!(!dir.next_signing_key().exists());

        // Crash after the KeyRotate committed, before promotion: the chain names the second key.
        vault.stage(&second).unwrap();
        let second_id = key_id(&second.verifying_key());
        assert_eq!(load_signing(&dir, Some(second_id)).unwrap(), second);
        assert!(!dir.next_signing_key().exists());
        assert_ne!(fs::read_to_string(dir.signing_key()).unwrap(), old_text);

        // A clean rotation: promote replaces the key and leaves one file.
        let third = vault.generate().unwrap();
        vault.stage(&third).unwrap();
        vault.promote().unwrap();
        assert!(!dir.next_signing_key().exists());
        let third_id = key_id(&third.verifying_key());
        assert_eq!(load_signing(&dir, Some(third_id)).unwrap(), third);
        // The chain names a key no file holds: refused, never replaced.
        assert!(matches!(load_signing(&dir, Some(first_id)), Err(KeyError::NotTheChainsKey { .. })));
    }
}

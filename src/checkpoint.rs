//! Checkpoints: the chain's Merkle tree head (`core::merkle`) as a C2SP tlog-checkpoint, signed
//! as a C2SP signed note with the checkpoint key, and the witnesses' cosignatures on it.
//!
//! ```text
//! <origin>\n<tree size>\n<base64 root>\n            (the note text, signed)
//! \n
//! — <origin> base64(key id[4] ‖ ed25519 signature[64])\n
//! — <witness> base64(key id[4] ‖ timestamp u64 ‖ ed25519 signature[64])\n   (cosignature/v1)
//! ```
//!
//! The checkpoint key is not an epoch key: a witness pins one key per log. The log signature
//! alone proves the checkpoint came from this machine; a witness' cosignature proves the
//! witness saw it and, per C2SP tlog-witness, checked it extends every checkpoint it had seen.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, Signature, Verifier, VerifierList};

use crate::core::merkle;
use crate::core::segment::Hash;
use crate::core::store::{Store, StoreError};
use crate::keys::{base64_decode, base64_encode};

/// The key type byte of an ed25519 note signature and of a cosignature/v1 (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;
const ALG_COSIGNATURE_V1: u8 = 0x04;

#[derive(Debug)]
pub enum CheckpointError {
    Store(StoreError),
    /// The note could not be built (an origin C2SP does not allow).
    Note(String),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Store(e) => write!(f, "{e}"),
            CheckpointError::Note(e) => write!(f, "cannot make a checkpoint note: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// The log's checkpoint signer: its origin (also the key's name) and key.
pub struct LogSigner {
    name: String,
    key: Box<SigningKey>,
    id: u32,
}

impl LogSigner {
    pub fn new(name: String, key: impl Into<Box<SigningKey>>) -> LogSigner {
        let key = key.into();
        let id = note_key_id(&name, ALG_ED25519, &key.verifying_key());
        LogSigner { name, key, id }
    }

    pub fn origin(&self) -> &str {
        &self.name
    }
}

impl signed_note::Signer for LogSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

fn note_key_id(name: &str, alg: u8, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![alg];
    encoded.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// A signed checkpoint: what it commits to, and its note (with any cosignatures added).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Signature lines: the log's first, then cosignatures.
    pub signatures: Vec<Signature>,
}

impl Checkpoint {
    /// The signed text.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, base64_encode(&self.root))
    }

    /// The whole signed note.
    pub fn to_note(&self) -> Vec<u8> {
        // A signed note is its text, an empty line, and one line per signature.
        let mut note = self.body().into_bytes();
        note.push(b'\n');
        for sig in &self.signatures {
            note.extend_from_slice(&sig.to_bytes());
        }
        note
    }

    /// Add a witness' cosignature line (`— name base64`), replacing an older one of its key.
    pub fn add_cosignature(&mut self, line: &str) -> Result<(), String> {
        let sig = Signature::from_bytes(line.trim_end_matches('\n').as_bytes())
            .map_err(|e| format!("not a signature line ({e}): {line:?}"))?;
        self.signatures.retain(|s| !(s.name() == sig.name() && s.id() == sig.id()));
        self.signatures.push(sig);
        Ok(())
    }
}

/// A checkpoint of the chain in `store` as it stands (the tree of every record up to the head).
pub fn sign(store: &dyn Store, signer: &LogSigner) -> Result<Checkpoint, CheckpointError> {
    let size = store.head().map_err(CheckpointError::Store)?.map_or(0, |h| h.seq);
    let root = merkle::root(store, size).map_err(CheckpointError::Store)?;
    let mut cp = Checkpoint { origin: signer.name.clone(), size, root, signatures: Vec::new() };
    // Checked as a note would be (UTF-8, no control characters), then signed over its text.
    let body = cp.body();
    Note::new(body.as_bytes(), &[]).map_err(|e| CheckpointError::Note(e.to_string()))?;
    let sig = signed_note::Signer::sign(signer, body.as_bytes()).map_err(|e| CheckpointError::Note(e.to_string()))?;
    cp.signatures =
        vec![Signature::new(signer.name.clone(), signer.id, sig).map_err(|e| CheckpointError::Note(e.to_string()))?];
    Ok(cp)
}

/// A witness' public key: a C2SP vkey of type 0x04 (cosignature/v1).
#[derive(Debug, Clone)]
pub struct WitnessKey {
    pub name: String,
    pub key: VerifyingKey,
    pub id: u32,
    pub vkey: String,
}

impl WitnessKey {
    pub fn parse(vkey: &str) -> Option<WitnessKey> {
        let vkey = vkey.trim();
        let (name, rest) = vkey.split_once('+')?;
        let (id, b64) = rest.split_once('+')?;
        let raw = base64_decode(b64)?;
        if raw.len() != 33 || raw[0] != ALG_COSIGNATURE_V1 || id.len() != 8 || !signed_note::is_key_name_valid(name) {
            return None;
        }
        let id = u32::from_str_radix(id, 16).ok()?;
        if id != signed_note::key_id(name, &raw) {
            return None;
        }
        let key = VerifyingKey::from_bytes(raw[1..].try_into().ok()?).ok()?;
        Some(WitnessKey { name: name.to_string(), key, id, vkey: vkey.to_string() })
    }
}

/// Witness vkeys from the command line; Err names the first that is not one.
pub fn parse_witness_keys(vkeys: &[String]) -> Result<Vec<WitnessKey>, String> {
    vkeys.iter().map(|v| WitnessKey::parse(v).ok_or_else(|| v.clone())).collect()
}

/// Checks a cosignature/v1: the signature bytes are timestamp u64 ‖ ed25519 signature over
/// `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint text.
struct CosignatureVerifier(WitnessKey);

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn key_id(&self) -> u32 {
        self.0.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let (Ok(time), Ok(signature)) = (
            <[u8; 8]>::try_from(sig.get(..8).unwrap_or_default()),
            <[u8; 64]>::try_from(sig.get(8..).unwrap_or_default()),
        ) else {
            return false;
        };
        let mut signed = format!("cosignature/v1\ntime {}\n", u64::from_be_bytes(time)).into_bytes();
        signed.extend_from_slice(msg);
        self.0.key.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&signature)).is_ok()
    }
}

struct LogVerifier {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl Verifier for LogVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        <[u8; 64]>::try_from(sig)
            .is_ok_and(|s| self.key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&s)).is_ok())
    }
}

/// A checkpoint read from a file, its signatures checked: signed by the log key (`origin`,
/// `log_key`), and cosigned by every witness in `required`.
pub fn read(text: &[u8], origin: &str, log_key: &VerifyingKey, required: &[WitnessKey]) -> Result<Checkpoint, String> {
    let note = Note::from_bytes(text).map_err(|e| format!("not a signed note ({e})"))?;
    let body = std::str::from_utf8(note.text()).map_err(|_| "its text is not UTF-8".to_string())?;
    let mut lines = body.lines();
    let (Some(cp_origin), Some(size), Some(root), None) = (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err("its text is not a wormfs checkpoint (origin, size, root; no extension lines)".into());
    };
    if cp_origin != origin {
        return Err(format!("it is a checkpoint of {cp_origin:?}, not of this log ({origin:?})"));
    }
    let size: u64 = size.parse().map_err(|_| format!("tree size {size:?} is not a number"))?;
    let root: Hash = base64_decode(root)
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| format!("root {root:?} is not a base64 SHA-256 hash"))?;
    let log = LogVerifier { name: origin.to_string(), key: *log_key, id: note_key_id(origin, ALG_ED25519, log_key) };
    let log_id = log.id;
    let mut verifiers: Vec<Box<dyn Verifier>> = vec![Box::new(log)];
    verifiers.extend(required.iter().map(|w| Box::new(CosignatureVerifier(w.clone())) as Box<dyn Verifier>));
    let known = VerifierList::new(verifiers);
    let (verified, others) = note.verify(&known).map_err(|e| format!("its signatures do not verify ({e})"))?;
    if !verified.iter().any(|s| s.name() == origin && s.id() == log_id) {
        return Err("it is not signed by this log's checkpoint key".into());
    }
    for w in required {
        if !verified.iter().any(|s| s.name() == w.name && s.id() == w.id) {
            return Err(format!("it carries no cosignature from witness {}", w.name));
        }
    }
    // Every signature is kept (a cosignature from a witness not asked about travels on), the
    // verified ones first.
    let signatures = verified.into_iter().chain(others).collect();
    Ok(Checkpoint { origin: origin.to_string(), size, root, signatures })
}

/// Any text signed by the log's checkpoint key as a C2SP signed note (a receipt's statement).
pub fn sign_note(signer: &LogSigner, text: &str) -> Result<Vec<u8>, CheckpointError> {
    let mut note = Note::new(text.as_bytes(), &[]).map_err(|e| CheckpointError::Note(e.to_string()))?;
    note.add_sigs(&[signer]).map_err(|e| CheckpointError::Note(e.to_string()))?;
    Ok(note.to_bytes())
}

/// The text of a signed note, if the log's checkpoint key signed it.
pub fn read_note(bytes: &[u8], origin: &str, log_key: &VerifyingKey) -> Result<String, String> {
    let note = Note::from_bytes(bytes).map_err(|e| format!("not a signed note ({e})"))?;
    let log = LogVerifier { name: origin.to_string(), key: *log_key, id: note_key_id(origin, ALG_ED25519, log_key) };
    let known = VerifierList::new(vec![Box::new(log)]);
    note.verify(&known).map_err(|e| format!("not signed by this log's checkpoint key ({e})"))?;
    String::from_utf8(note.text().to_vec()).map_err(|_| "its text is not UTF-8".into())
}

/// Whether `line` is a valid cosignature by `witness` on `cp`.
pub fn cosignature_verifies(cp: &Checkpoint, witness: &WitnessKey, line: &str) -> bool {
    let Ok(sig) = Signature::from_bytes(line.trim_end_matches('\n').as_bytes()) else { return false };
    sig.name() == witness.name
        && sig.id() == witness.id
        && CosignatureVerifier(witness.clone()).verify(cp.body().as_bytes(), sig.signature())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chain::sign as sign_record;
    use crate::core::record::{Payload, Unsigned};
    use crate::core::segment::ZERO_HASH;
    use crate::index::MemoryStore;

    fn store_of(n: u64) -> MemoryStore {
        let key = SigningKey::from_bytes(&[9; 32]);
        let store = MemoryStore::new();
        let mut prev = ZERO_HASH;
        for seq in 1..=n {
            let r = sign_record(Unsigned { seq, time_ns: seq, payload: Payload::Unmount, prev_hash: prev }, &key);
            prev = r.hash;
            let tree = merkle::hashes_for(&store, seq, &r.encode()).unwrap();
            store.commit(&r, &[tree]).unwrap();
        }
        store
    }

    #[test]
    fn a_checkpoint_reads_back_and_any_change_breaks_it() {
        let store = store_of(7);
        let key = SigningKey::from_bytes(&[1; 32]);
        let signer = LogSigner::new("wormfs.test/a".into(), key.clone());
        let cp = sign(&store, &signer).unwrap();
        assert_eq!(cp.size, 7);
        let note = cp.to_note();
        let text = String::from_utf8(note.clone()).unwrap();
        assert!(text.starts_with("wormfs.test/a\n7\n"), "{text}");
        let back = read(&note, "wormfs.test/a", &key.verifying_key(), &[]).unwrap();
        assert_eq!((back.size, back.root), (7, cp.root));
        assert!(read(&note, "wormfs.test/b", &key.verifying_key(), &[]).is_err(), "another log's checkpoint");
        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert!(read(&note, "wormfs.test/a", &other, &[]).is_err(), "another key");
        let forged = text.replacen("\n7\n", "\n8\n", 1);
        assert!(read(forged.as_bytes(), "wormfs.test/a", &key.verifying_key(), &[]).is_err(), "a changed size");
    }

    #[test]
    fn a_required_witness_must_have_cosigned() {
        let store = store_of(3);
        let key = SigningKey::from_bytes(&[1; 32]);
        let signer = LogSigner::new("wormfs.test/a".into(), key.clone());
        let mut cp = sign(&store, &signer).unwrap();
        let wkey = SigningKey::from_bytes(&[5; 32]);
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(wkey.verifying_key().as_bytes());
        let id = signed_note::key_id("witness.test/w", &raw);
        let vkey = format!("witness.test/w+{id:08x}+{}", base64_encode(&raw));
        let witness = WitnessKey::parse(&vkey).unwrap();
        assert!(read(&cp.to_note(), "wormfs.test/a", &key.verifying_key(), std::slice::from_ref(&witness)).is_err());
        // Cosign it as a witness would.
        let time = 1_700_000_000u64;
        let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
        msg.extend_from_slice(cp.body().as_bytes());
        let mut sig = id.to_be_bytes().to_vec();
        sig.extend_from_slice(&time.to_be_bytes());
        sig.extend_from_slice(&wkey.sign(&msg).to_bytes());
        let line = format!("— witness.test/w {}\n", base64_encode(&sig));
        assert!(cosignature_verifies(&cp, &witness, &line));
        cp.add_cosignature(&line).unwrap();
        let back = read(&cp.to_note(), "wormfs.test/a", &key.verifying_key(), std::slice::from_ref(&witness)).unwrap();
        assert_eq!(back.size, 3);
        // A cosignature over another checkpoint does not count.
        let mut later = sign(&store_of(4), &signer).unwrap();
        assert!(!cosignature_verifies(&later, &witness, &line));
        later.signatures.push(Signature::from_bytes(line.trim_end().as_bytes()).unwrap());
        assert!(read(&later.to_note(), "wormfs.test/a", &key.verifying_key(), &[witness]).is_err());
    }
}

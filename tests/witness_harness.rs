//! The witness harness (`tests/common/witness.rs`) against the real aics-witness, and the exact
//! protocol it speaks: a log of our own (tlog_tiles for the Merkle tree, signed_note for the
//! checkpoint signature) submits checkpoints and consistency proofs, and every answer is checked:
//! status code, body, and each returned cosignature verified here from the c2sp.org rules, not
//! through the witness's own code.

mod common;

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use signed_note::{Note, Signature};
use tlog_tiles::{prove_tree, stored_hashes, tree_hash, Checkpoint, Hash, HashReader};

use common::witness::{add_checkpoint_body, Witness, WITNESS_NAME};

const ORIGIN: &str = "wormfs.test/harness-log";

// ---------------------------------------------------------------------------------------------
// The log side: a Merkle tree and a note signer
// ---------------------------------------------------------------------------------------------

/// An in-memory RFC 6962 tree: the hashes tlog_tiles stores, in stored-hash-index order.
#[derive(Default)]
struct Tree {
    hashes: Vec<Hash>,
    size: u64,
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        Ok(indexes.iter().map(|&i| self.hashes[usize::try_from(i).unwrap()]).collect())
    }
}

impl Tree {
    /// A tree of `n` leaves `"{tag} {i}"`: trees with different tags are forks of each other.
    fn with_leaves(tag: &str, n: u64) -> Tree {
        let mut tree = Tree::default();
        tree.extend(tag, n);
        tree
    }

    /// Append leaves up to size `n`.
    fn extend(&mut self, tag: &str, n: u64) {
        for i in self.size..n {
            let hashes = stored_hashes(i, format!("{tag} {i}").as_bytes(), &*self).unwrap();
            self.hashes.extend(hashes);
            self.size += 1;
        }
    }

    fn root(&self, n: u64) -> Hash {
        tree_hash(n, self).unwrap()
    }

    /// The consistency proof from size `old` to size `new` (both at most `self.size`).
    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        prove_tree(new, old, self).unwrap()
    }

    /// The checkpoint text (c2sp.org/tlog-checkpoint, no extension lines) at size `n`.
    fn checkpoint(&self, n: u64) -> Vec<u8> {
        Checkpoint::new(ORIGIN, n, self.root(n), "").unwrap().to_bytes()
    }
}

/// A log key: Ed25519 from a fixed seed (no RNG crate needed; each test's witness is fresh, so
/// reusing the key across tests is harmless).
struct LogKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl LogKey {
    fn new(name: &str, seed: u8) -> LogKey {
        let key = SigningKey::from_bytes(&[seed; 32]);
        // Note key IDs hash the name and the typed key: 0x01 = Ed25519 note signature.
        let id = signed_note::key_id(name, &[&[0x01], key.verifying_key().as_bytes().as_slice()].concat());
        LogKey { name: name.to_string(), id, key }
    }

    fn vkey(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.name, &self.key.verifying_key())
    }

    /// `text` as a signed note carrying this key's signature.
    fn sign(&self, text: &[u8]) -> Vec<u8> {
        let mut note = Note::new(text, &[]).unwrap();
        note.add_sigs(&[self]).unwrap();
        note.to_bytes()
    }
}

impl signed_note::Signer for LogKey {
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

fn the_log_key() -> LogKey {
    LogKey::new(ORIGIN, 7)
}

/// A log and a fresh witness trusting it.
fn setup() -> (LogKey, Witness) {
    let key = the_log_key();
    let witness = Witness::start(ORIGIN, &key.vkey());
    (key, witness)
}

/// Submit `tree`'s checkpoint at size `new`, claiming the witness holds `old`, with the right
/// proof from `old` (none from 0, as the witness requires).
fn submit(witness: &Witness, key: &LogKey, tree: &Tree, old: u64, new: u64) -> (u16, String) {
    let proof = if old == 0 { vec![] } else { tree.proof(old, new) };
    witness.add_checkpoint(&add_checkpoint_body(old, &proof, &key.sign(&tree.checkpoint(new))))
}

/// Submit and require a 200 whose one line is a valid cosignature of that checkpoint.
#[track_caller]
fn assert_cosigned(witness: &Witness, key: &LogKey, tree: &Tree, old: u64, new: u64) -> u64 {
    let (status, body) = submit(witness, key, tree, old, new);
    assert_eq!(status, 200, "old {old} -> size {new}: {body:?}\n--- witness log ---\n{}", witness.log());
    verify_cosignature(&body, &witness.vkey, &tree.checkpoint(new))
        .unwrap_or_else(|e| panic!("cosignature of size {new}: {e}: {body:?}"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------------
// Cosignature verification (c2sp.org/tlog-cosignature, cosignature/v1), from the spec
// ---------------------------------------------------------------------------------------------

/// Verify a witness's add-checkpoint 200 body: exactly one signature line
/// `— <name> base64(key ID ‖ timestamp ‖ signature)\n`, by the witness `witness_vkey` names, over
/// `checkpoint` (the note text, without its signature lines). Returns the timestamp.
///
/// The rules:
/// - the vkey is `name+hex(key ID)+base64(0x04 ‖ 32-byte Ed25519 public key)`; 0x04 is the
///   cosignature/v1 type, and the key ID is the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x04 ‖ key);
/// - the line's name and leading 4 bytes match the vkey's name and key ID;
/// - after them come 8 bytes of timestamp (POSIX seconds, big-endian) and the 64-byte Ed25519
///   signature of `"cosignature/v1\ntime <timestamp>\n" ‖ checkpoint`.
fn verify_cosignature(body: &str, witness_vkey: &str, checkpoint: &[u8]) -> Result<u64, String> {
    let mut parts = witness_vkey.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed witness vkey {witness_vkey:?}"));
    };
    let key = base64_decode(key_b64).ok_or("vkey key is not base64")?;
    let public: [u8; 32] = match key.split_first() {
        Some((0x04, public)) => {
            public.try_into().map_err(|_| format!("vkey key is {} bytes, not 1 + 32", key.len()))?
        }
        Some((kind, _)) => return Err(format!("vkey type {kind:#04x}, not 0x04 (cosignature/v1)")),
        None => return Err("empty vkey key".into()),
    };
    let expected_id: [u8; 4] =
        Sha256::new().chain_update(name).chain_update(b"\n").chain_update(&key).finalize()[..4].try_into().unwrap();
    if id_hex != hex(&expected_id) {
        return Err(format!("vkey key ID {id_hex} is not SHA-256(name ‖ \\n ‖ key)[:4] = {}", hex(&expected_id)));
    }

    let line = body.strip_suffix('\n').ok_or("response does not end in a newline")?;
    if line.contains('\n') {
        return Err("more than one line".into());
    }
    // signed_note parses the line (`— `, name, canonical base64, leading key ID).
    let sig = Signature::from_bytes(line.as_bytes()).map_err(|e| format!("not a signature line: {e}"))?;
    if sig.name() != name || sig.id().to_be_bytes() != expected_id {
        return Err(format!("signed by {} {:08x}, not {name} {id_hex}", sig.name(), sig.id()));
    }
    let (timestamp, signature) = sig.signature().split_at_checked(8).ok_or("signature shorter than a timestamp")?;
    let timestamp = u64::from_be_bytes(timestamp.try_into().unwrap());
    let signature = ed25519_dalek::Signature::from_slice(signature)
        .map_err(|_| format!("{} signature bytes after the timestamp, not 64", signature.len()))?;
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend(checkpoint);
    VerifyingKey::from_bytes(&public)
        .map_err(|e| format!("vkey: {e}"))?
        .verify_strict(&message, &signature)
        .map_err(|e| format!("Ed25519 signature does not verify: {e}"))?;
    Ok(timestamp)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard padded base64 (RFC 4648), strict; the crate tree has base64 only as a transitive
/// dependency, so a vkey's key is decoded here.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (n, chunk) in s.as_bytes().chunks(4).enumerate() {
        let last = n == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = acc << 6 | ALPHABET.iter().position(|&a| a == c)? as u32;
        }
        acc <<= 6 * pad;
        out.extend(&acc.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

#[test]
fn base64_decoder_and_verifier_reject_what_they_must() {
    assert_eq!(base64_decode("AQID"), Some(vec![1, 2, 3]));
    assert_eq!(base64_decode("AQI="), Some(vec![1, 2]));
    assert_eq!(base64_decode("AQ=="), Some(vec![1]));
    assert_eq!(base64_decode("AQ="), None);
    assert_eq!(base64_decode("A=Q="), None);
    assert_eq!(base64_decode("AQ!="), None);

    // A cosignature made here by the spec's rules verifies; changing any byte it covers breaks it.
    let key = SigningKey::from_bytes(&[9; 32]);
    let typed = [&[0x04], key.verifying_key().as_bytes().as_slice()].concat();
    let id = signed_note::key_id("w.test/x", &typed);
    let vkey = format!("w.test/x+{id:08x}+{}", base64_of(&typed));
    let checkpoint = b"o.test/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let line = |ts: u64, signed: &[u8]| {
        let mut msg = format!("cosignature/v1\ntime {ts}\n").into_bytes();
        msg.extend(signed);
        let sig = [ts.to_be_bytes().as_slice(), &key.sign(&msg).to_bytes()].concat();
        String::from_utf8(Signature::new("w.test/x".into(), id, sig).unwrap().to_bytes()).unwrap()
    };
    assert_eq!(verify_cosignature(&line(1_700_000_000, checkpoint), &vkey, checkpoint), Ok(1_700_000_000));
    let other = b"o.test/log\n4\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    assert!(verify_cosignature(&line(1_700_000_000, other), &vkey, checkpoint).is_err());
    let note_vkey = signed_note::new_ed25519_verifier_key("w.test/x", &key.verifying_key());
    assert!(verify_cosignature(&line(1_700_000_000, checkpoint), &note_vkey, checkpoint).is_err(), "type 0x01");
}

/// Base64 for the self-test above, through signed_note's own encoder (a signature line is
/// `— name base64(id ‖ sig)`): only the encoding of 4 + N bytes is taken from it.
fn base64_of(bytes: &[u8]) -> String {
    let (id, rest) = bytes.split_at(4);
    let line =
        Signature::new("x".into(), u32::from_be_bytes(id.try_into().unwrap()), rest.to_vec()).unwrap().to_bytes();
    String::from_utf8(line).unwrap().trim_end().rsplit(' ').next().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// The witness
// ---------------------------------------------------------------------------------------------

#[test]
fn harness_starts_a_fresh_witness_and_reports_its_state() {
    let (key, witness) = setup();
    assert!(witness.url.starts_with("http://127.0.0.1:"), "{}", witness.url);
    assert!(witness.vkey.starts_with(&format!("{WITNESS_NAME}+")), "{}", witness.vkey);
    assert_eq!(witness.name, WITNESS_NAME);
    let r = witness.request("GET", "/healthz", b"");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    let status = witness.status();
    assert_eq!(status["witness"]["vkey"], witness.vkey.as_str(), "{status:#}");
    let log = witness.log_status(ORIGIN);
    assert_eq!(log["vkeys"], serde_json::json!([key.vkey()]), "{log:#}");
    assert!(log["size"].is_null(), "nothing cosigned yet: {log:#}");

    // Two witnesses side by side: distinct ports, distinct identities.
    let second = Witness::start(ORIGIN, &key.vkey());
    assert_ne!(second.url, witness.url);
    assert_ne!(second.vkey, witness.vkey);
}

#[test]
fn harness_stops_the_witness_on_drop_even_after_a_panic() {
    let key = the_log_key();
    let gone = |pid: u32| kill(Pid::from_raw(pid as i32), None) == Err(Errno::ESRCH);

    let (pid, dir) = {
        let witness = Witness::start(ORIGIN, &key.vkey());
        (witness.pid(), witness.dir().to_path_buf())
    };
    assert!(gone(pid), "witness {pid} still running after its drop");
    assert!(!dir.exists(), "{} left behind", dir.display());

    let started = Mutex::new(None);
    let caught = std::panic::catch_unwind(|| {
        let witness = Witness::start(ORIGIN, &key.vkey());
        *started.lock().unwrap() = Some(witness.pid());
        panic!("deliberate panic with a witness running");
    });
    assert!(caught.is_err());
    let pid = started.lock().unwrap().expect("the witness started");
    assert!(gone(pid), "witness {pid} still running after a panic");
}

/// (a) The first checkpoint, `old 0` and no proof: 200 and one cosignature line.
#[test]
fn first_checkpoint_with_old_0_is_cosigned() {
    let (key, witness) = setup();
    let tree = Tree::with_leaves("main", 5);
    let before = now();
    let ts = assert_cosigned(&witness, &key, &tree, 0, 5);
    assert!((before..=now()).contains(&ts), "timestamp {ts} is not the current time (~{before})");

    let log = witness.log_status(ORIGIN);
    assert_eq!(log["size"], 5, "{log:#}");
    assert_eq!(log["root"], tree.root(5).to_string(), "{log:#}");
    assert_eq!(log["cosigned_at"], ts, "{log:#}");

    // The monitoring endpoint serves it: our note, then the witness's line.
    let origin_hash = hex(&Sha256::digest(ORIGIN));
    let r = witness.request("GET", &format!("/{origin_hash}/checkpoint"), b"");
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body.starts_with(std::str::from_utf8(&key.sign(&tree.checkpoint(5))).unwrap()), "{r:#?}");
    assert!(r.body.contains(&format!("\n— {WITNESS_NAME} ")), "{r:#?}");
}

/// `old 0` is only for the first checkpoint, and carries no proof.
#[test]
fn old_0_with_a_proof_is_refused() {
    let (key, witness) = setup();
    let tree = Tree::with_leaves("main", 5);
    let proof = tree.proof(1, 5);
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(0, &proof, &key.sign(&tree.checkpoint(5))));
    assert_eq!(status, 422, "{body:?}");
    assert!(witness.log_status(ORIGIN)["size"].is_null());
}

/// (b) An extension with the right consistency proof: 200; a replay of the same checkpoint (a
/// lost response) is 200 again with no proof.
#[test]
fn extension_with_consistency_proof_is_cosigned() {
    let (key, witness) = setup();
    let mut tree = Tree::with_leaves("main", 5);
    let first = assert_cosigned(&witness, &key, &tree, 0, 5);
    tree.extend("main", 13);
    let second = assert_cosigned(&witness, &key, &tree, 5, 13);
    assert!(second >= first, "timestamps go backwards: {first} then {second}");
    assert_eq!(witness.log_status(ORIGIN)["size"], 13);
    // Each size in turn, including a one-leaf step and a power of two.
    tree.extend("main", 16);
    assert_cosigned(&witness, &key, &tree, 13, 14);
    assert_cosigned(&witness, &key, &tree, 14, 16);

    // Replay: old == size, empty proof.
    assert_cosigned(&witness, &key, &tree, 16, 16);
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(16, &[], &key.sign(&tree.checkpoint(16))));
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(witness.log_status(ORIGIN)["size"], 16);
}

/// A proof with one hash changed, or missing a hash: 422, nothing cosigned.
#[test]
fn extension_with_a_bad_proof_is_refused() {
    let (key, witness) = setup();
    let mut tree = Tree::with_leaves("main", 5);
    assert_cosigned(&witness, &key, &tree, 0, 5);
    tree.extend("main", 13);
    let note = key.sign(&tree.checkpoint(13));
    let mut proof = tree.proof(5, 13);
    assert!(proof.len() > 1, "{proof:?}");
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(5, &proof[1..], &note));
    assert_eq!(status, 422, "{body:?}");
    proof[0].0[0] ^= 1;
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(5, &proof, &note));
    assert_eq!(status, 422, "{body:?}");
    assert_eq!(witness.log_status(ORIGIN)["size"], 5);
}

/// (c) A rollback to a smaller tree is refused whatever `old` claims: `old` above the size is
/// malformed (400); any other `old` is not what the witness holds (409).
#[test]
fn rollback_to_a_smaller_tree_is_refused() {
    let (key, witness) = setup();
    let tree = Tree::with_leaves("main", 9);
    assert_cosigned(&witness, &key, &tree, 0, 9);
    let note = key.sign(&tree.checkpoint(5));

    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(9, &[], &note));
    assert_eq!((status, body.as_str()), (400, "bad request: old size is larger than the checkpoint size\n"));
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(0, &[], &note));
    assert_eq!((status, body.as_str()), (409, "9\n"));
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(3, &tree.proof(3, 5), &note));
    assert_eq!((status, body.as_str()), (409, "9\n"));
    let log = witness.log_status(ORIGIN);
    assert_eq!(log["size"], 9, "{log:#}");
    assert_eq!(log["root"], tree.root(9).to_string(), "{log:#}");
}

/// (d) A fork: a tree with other leaves, properly signed by the log key. Its extension (with a
/// proof valid within the fork) and a different root at the cosigned size are both 422, and
/// both kept as evidence.
#[test]
fn fork_is_refused_and_kept_as_evidence() {
    let (key, witness) = setup();
    let main = Tree::with_leaves("main", 5);
    assert_cosigned(&witness, &key, &main, 0, 5);

    let fork = Tree::with_leaves("fork", 9);
    let (status, body) = submit(&witness, &key, &fork, 5, 9);
    assert_eq!(status, 422, "{body:?}");
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(5, &[], &key.sign(&fork.checkpoint(5))));
    assert_eq!(status, 422, "{body:?}");
    // The fork only shares the first leaves: still a fork.
    let mut late_fork = Tree::with_leaves("main", 3);
    late_fork.extend("fork", 9);
    let (status, body) = submit(&witness, &key, &late_fork, 5, 9);
    assert_eq!(status, 422, "{body:?}");

    let log = witness.log_status(ORIGIN);
    assert_eq!(log["size"], 5, "{log:#}");
    assert_eq!(log["root"], main.root(5).to_string(), "{log:#}");
    assert_eq!(log["evidence"], 3, "{log:#}");
}

/// (e) A wrong old size: 409, `<size>\n` as text/x.tlog.size; retrying from that size works.
#[test]
fn wrong_old_size_gets_409_with_the_witness_size() {
    let (key, witness) = setup();
    let mut tree = Tree::with_leaves("main", 5);
    assert_cosigned(&witness, &key, &tree, 0, 5);
    tree.extend("main", 9);
    let note = key.sign(&tree.checkpoint(9));
    for old in [3, 7] {
        let r = witness.request("POST", "/add-checkpoint", &add_checkpoint_body(old, &tree.proof(old, 9), &note));
        assert_eq!((r.status, r.body.as_str()), (409, "5\n"), "old {old}: {r:#?}");
        assert_eq!(r.header("content-type"), Some("text/x.tlog.size"), "{r:#?}");
    }
    // A log that never heard of this witness starts at 0 and is told the size.
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(0, &[], &note));
    assert_eq!((status, body.as_str()), (409, "5\n"));
    let size: u64 = body.trim().parse().unwrap();
    assert_cosigned(&witness, &key, &tree, size, 9);
}

/// The other refusals: a signature by another key under the log's name (403), no log signature
/// at all (403), an origin the witness does not know (404), garbage (400).
#[test]
fn bad_signature_unknown_origin_and_garbage_are_refused() {
    let (key, witness) = setup();
    let tree = Tree::with_leaves("main", 5);
    let checkpoint = tree.checkpoint(5);

    let impostor = LogKey::new(ORIGIN, 8);
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(0, &[], &impostor.sign(&checkpoint)));
    assert_eq!(status, 403, "impostor key: {body:?}");

    // The right key ID with a corrupted signature.
    let mut note = key.sign(&checkpoint);
    let sig_line = note.len() - 10;
    note[sig_line] = if note[sig_line] == b'A' { b'B' } else { b'A' };
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(0, &[], &note));
    assert_eq!(status, 403, "corrupted signature: {body:?}");

    let other = Checkpoint::new("wormfs.test/other-log", 5, tree.root(5), "").unwrap().to_bytes();
    let (status, body) = witness.add_checkpoint(&add_checkpoint_body(0, &[], &key.sign(&other)));
    assert_eq!(status, 404, "unknown origin: {body:?}");

    let (status, body) = witness.add_checkpoint(b"garbage");
    assert_eq!(status, 400, "{body:?}");
    // The note without the blank line between `old` and it.
    let mut no_blank = b"old 0\n".to_vec();
    no_blank.extend(key.sign(&checkpoint));
    let (status, body) = witness.add_checkpoint(&no_blank);
    assert_eq!(status, 400, "{body:?}");

    assert!(witness.log_status(ORIGIN)["size"].is_null());
    // After all that, the right request still works.
    assert_cosigned(&witness, &key, &tree, 0, 5);
}

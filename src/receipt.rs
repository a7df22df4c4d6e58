//! Receipts: one file's seal records with their Merkle inclusion proofs against a signed
//! checkpoint, so an auditor holding the file, the receipt and the checkpoint key (and, for the
//! strong guarantee, a witness key) can check that exact file's bytes with nothing else of the
//! store. JSON, format `wormfs-receipt/1` (documented in the README):
//!
//! ```text
//! { "format": "wormfs-receipt/1", "path": "app/a.log", "path_hex": "6170702f612e6c6f67",
//!   "size": 1234, "checkpoint": "<the signed note>",
//!   "records": [ { "seq": 7, "record": "<base64 of the stored record>", "proof": ["<base64>", ...] } ] }
//! ```
//!
//! `records` are the file's Seal, Recovered and Truncate records whose ranges make up its sealed
//! bytes, and the Rename records that carried its history to its name, oldest first.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};

use crate::checkpoint::{self, Checkpoint, CheckpointError, LogSigner, WitnessKey};
use crate::core::history::History;
use crate::core::merkle;
use crate::core::path::RelPath;
use crate::core::record::{Payload, Record};
use crate::core::segment::{from_hex, Hash, SegmentHasher};
use crate::core::store::{Store, StoreError};
use crate::keys::{base64_decode, base64_encode};

pub const FORMAT: &str = "wormfs-receipt/1";

#[derive(Debug)]
pub enum ReceiptError {
    Store(StoreError),
    /// The chain has no sealed history for this path.
    NoSuchFile(RelPath),
    /// The checkpoint does not cover the file's newest record.
    CheckpointTooOld {
        size: u64,
        needed: u64,
    },
    /// A stored record the receipt needs is missing or undecodable.
    Record(u64),
    Sign(CheckpointError),
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptError::Store(e) => write!(f, "{e}"),
            ReceiptError::NoSuchFile(p) => write!(f, "{p}: the chain has no history of this file"),
            ReceiptError::CheckpointTooOld { size, needed } => write!(
                f,
                "the checkpoint covers {size} records but the file's history reaches record {needed}; take a newer checkpoint"
            ),
            ReceiptError::Record(seq) => write!(f, "record {seq} is missing or undecodable in the index"),
            ReceiptError::Sign(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReceiptError {}

/// The receipt for `path`: its records, proven against `cp` (which must cover them and be a
/// checkpoint of this store's tree).
pub fn make(store: &dyn Store, path: &RelPath, cp: &Checkpoint, signer: &LogSigner) -> Result<Value, ReceiptError> {
    let history = History::replay(store).map_err(ReceiptError::Store)?;
    make_from(store, &history, path, cp, signer)
}

/// `make` with the store's history already replayed (the archive makes many receipts at once).
pub fn make_from(
    store: &dyn Store,
    history: &History,
    path: &RelPath,
    cp: &Checkpoint,
    signer: &LogSigner,
) -> Result<Value, ReceiptError> {
    let file = history.files.get(path).ok_or_else(|| ReceiptError::NoSuchFile(path.clone()))?;
    let seqs = file.records.clone();
    let needed = seqs.last().copied().unwrap_or(0);
    if needed > cp.size {
        return Err(ReceiptError::CheckpointTooOld { size: cp.size, needed });
    }
    let mut records = Vec::new();
    for seq in seqs {
        let bytes = store.record_bytes(seq).map_err(ReceiptError::Store)?.ok_or(ReceiptError::Record(seq))?;
        let proof = merkle::inclusion_proof(store, cp.size, seq).map_err(ReceiptError::Store)?;
        // The proof comes from the index's stored tree: never hand out one that does not check.
        if !merkle::check_inclusion(&proof, cp.size, &cp.root, seq, &bytes) {
            return Err(ReceiptError::Store(StoreError::Corrupt(format!(
                "the index's Merkle tree gives no valid proof of record {seq} (changed outside wormfs?)"
            ))));
        }
        records.push(json!({
            "seq": seq,
            "record": base64_encode(&bytes),
            "proof": proof.iter().map(|h| base64_encode(h)).collect::<Vec<_>>(),
        }));
    }
    // What the log says the receipt holds, signed: that these are all of the file's records as
    // of the checkpoint, so none can be left out (a prefix of the file passed off as the whole).
    let statement = Statement {
        origin: cp.origin.clone(),
        tree_size: cp.size,
        root: cp.root,
        path: path.clone(),
        size: file.sealed,
        file_hash: file.file_hash,
        last_seq: needed,
    };
    let statement = checkpoint::sign_note(signer, &statement.text()).map_err(ReceiptError::Sign)?;
    Ok(json!({
        "format": FORMAT,
        "path": crate::inspect::path_text(path),
        "path_hex": path.hex(),
        "size": file.sealed,
        "checkpoint": String::from_utf8_lossy(&cp.to_note()),
        "statement": String::from_utf8_lossy(&statement),
        "records": records,
    }))
}

/// The receipt's statement, signed by the checkpoint key:
/// `wormfs-receipt/1\n<origin>\n<tree size>\n<base64 root>\n<path hex>\n<size>\n<base64 file_hash>\n<last seq>\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    origin: String,
    tree_size: u64,
    root: Hash,
    path: RelPath,
    size: u64,
    file_hash: Hash,
    last_seq: u64,
}

impl Statement {
    fn text(&self) -> String {
        format!(
            "{FORMAT}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            base64_encode(&self.root),
            self.path.hex(),
            self.size,
            base64_encode(&self.file_hash),
            self.last_seq
        )
    }
}

/// What checking a receipt showed.
#[derive(Debug, Clone)]
pub struct Checked {
    pub path: String,
    pub size: u64,
    pub checkpoint: Checkpoint,
    pub records: Vec<u64>,
    pub cosigned_by: Vec<String>,
}

/// Check `file` against `receipt` with the checkpoint key (and every `witnesses` key, whose
/// cosignature the checkpoint must carry). Err: why the receipt does not prove the file.
pub fn check(
    file: &Path,
    receipt: &[u8],
    origin: &str,
    log_key: &ed25519_dalek::VerifyingKey,
    witnesses: &[WitnessKey],
) -> Result<Checked, String> {
    let doc: Value = serde_json::from_slice(receipt).map_err(|e| format!("the receipt is not JSON ({e})"))?;
    if doc["format"] != FORMAT {
        return Err(format!("the receipt's format is {}, not {FORMAT}", doc["format"]));
    }
    // Exactly the fields of the format: nothing rides along that a reader might take as part
    // of what was proven.
    only_fields(&doc, &["format", "path", "path_hex", "size", "checkpoint", "statement", "records"], "the receipt")?;
    let path_bytes = doc["path_hex"].as_str().and_then(from_hex).ok_or("the receipt has no path_hex")?;
    let path = RelPath::parse(std::os::unix::ffi::OsStrExt::from_bytes(&path_bytes[..]))
        .map_err(|_| "the receipt's path is not a valid path".to_string())?;
    // The readable path must say the same as the exact one: nothing in a receipt goes unchecked.
    if doc["path"] != crate::inspect::path_text(&path).as_str() {
        return Err(format!("its path {} is not the path its path_hex names ({path})", doc["path"]));
    }
    let note = doc["checkpoint"].as_str().ok_or("the receipt has no checkpoint")?;
    let cp = checkpoint::read(note.as_bytes(), origin, log_key, witnesses)
        .map_err(|why| format!("its checkpoint proves nothing: {why}"))?;
    let entries = doc["records"].as_array().ok_or("the receipt has no records")?;

    // Every record must be in the checkpoint's tree, at its own seq, in the order of the chain.
    let mut records: Vec<Record> = Vec::new();
    for e in entries {
        only_fields(e, &["seq", "record", "proof"], "a record entry")?;
        let seq = e["seq"].as_u64().ok_or("a record without a seq")?;
        if records.last().is_some_and(|r| r.seq() >= seq) {
            return Err(format!("record {seq} is out of order or repeated"));
        }
        let bytes = e["record"].as_str().and_then(base64_decode).ok_or(format!("record {seq} is not base64"))?;
        let proof: Vec<Hash> = e["proof"]
            .as_array()
            .ok_or(format!("record {seq} has no proof"))?
            .iter()
            .map(|h| h.as_str().and_then(base64_decode).and_then(|b| b.try_into().ok()))
            .collect::<Option<_>>()
            .ok_or(format!("record {seq}: a proof hash is not base64 SHA-256"))?;
        if !merkle::check_inclusion(&proof, cp.size, &cp.root, seq, &bytes) {
            return Err(format!("record {seq} is not in the checkpoint's tree of {} records", cp.size));
        }
        let record = Record::decode(&bytes).map_err(|e| format!("record {seq} does not decode ({e})"))?;
        if record.seq() != seq {
            return Err(format!("record {seq} says it is record {}", record.seq()));
        }
        records.push(record);
    }

    // The name the file had at each record, walking back from its name now: a Rename changes
    // it, and only to the name the next record (or the receipt) uses.
    let mut names = vec![path.clone(); records.len()];
    let mut name = path.clone();
    for (i, r) in records.iter().enumerate().rev() {
        names[i] = name.clone();
        if let Payload::Rename { from, to } = &r.fields.payload {
            if *to != name {
                return Err(format!("record {} renames {from} to {to}, not to {name}", r.seq()));
            }
            name = from.clone();
        }
    }
    // The history the records make, replayed as verify does: seals follow each other from byte
    // 0 with their file_hash chain linked from zeros (so records of two histories cannot be
    // spliced), a truncate keeps what is before its cut and the part of the cut segment it
    // hashed, and the file_hash chain runs on through it.
    let mut ranges: Vec<(u64, u64, Hash, u64)> = Vec::new();
    let (mut sealed, mut file_hash) = (0u64, crate::core::segment::ZERO_HASH);
    for (r, name) in records.iter().zip(&names) {
        let seq = r.seq();
        match &r.fields.payload {
            Payload::Seal(s) | Payload::Recovered { segment: s, .. } => {
                if s.path != *name {
                    return Err(format!("record {seq} seals {}, not this file", s.path));
                }
                let links = s.start == sealed
                    && crate::core::segment::next_file_hash(&file_hash, &s.segment_hash, s.end) == s.file_hash;
                if !links {
                    return Err(format!("record {seq} does not continue the file's seals before it"));
                }
                (sealed, file_hash) = (s.end, s.file_hash);
                ranges.push((s.start, s.end, s.segment_hash, seq));
            }
            Payload::Truncate { path: p, new_size, kept_start, kept_hash, .. } => {
                if p != name {
                    return Err(format!("record {seq} truncates {p}, not this file"));
                }
                ranges.retain(|(_, end, _, _)| *end <= *kept_start);
                if ranges.last().map_or(0, |r| r.1) != *kept_start {
                    return Err(format!("record {seq} keeps a part that does not start at a seal"));
                }
                if new_size > kept_start {
                    ranges.push((*kept_start, *new_size, *kept_hash, seq));
                }
                sealed = *new_size;
            }
            Payload::Rename { .. } => {}
            other => {
                return Err(format!("record {seq} is a {} record, which a receipt does not carry", other.kind().name()))
            }
        }
    }
    let size = doc["size"].as_u64().ok_or("the receipt has no size")?;
    // The log's own word on what the receipt holds: all of the file's records up to the
    // checkpoint, so a receipt with its last seals dropped (a prefix of the file) fails here.
    let statement = doc["statement"].as_str().ok_or("the receipt has no statement")?;
    let said = checkpoint::read_note(statement.as_bytes(), origin, log_key)
        .map_err(|why| format!("its statement proves nothing: {why}"))?;
    let expected = Statement {
        origin: cp.origin.clone(),
        tree_size: cp.size,
        root: cp.root,
        path: path.clone(),
        size,
        file_hash,
        last_seq: records.last().map_or(0, |r| r.seq()),
    };
    if said != expected.text() {
        return Err(format!(
            "its records are not the ones its statement lists (statement {:?}, records give {:?})",
            said,
            expected.text()
        ));
    }
    if sealed != size {
        return Err(format!("the receipt's records seal {sealed} bytes, not the {size} it claims"));
    }
    check_bytes(file, &ranges, size)?;
    // Only the witnesses whose cosignature was checked (the checkpoint may carry others).
    let cosigned_by = witnesses.iter().map(|w| w.name.clone()).collect();
    Ok(Checked {
        path: path.to_string(),
        size,
        checkpoint: cp,
        records: records.iter().map(|r| r.seq()).collect(),
        cosigned_by,
    })
}

/// Refuse an object with a field not in `allowed`.
fn only_fields(v: &Value, allowed: &[&str], what: &str) -> Result<(), String> {
    let obj = v.as_object().ok_or(format!("{what} is not a JSON object"))?;
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what} has a field {k:?} the format does not have")),
        None => Ok(()),
    }
}

/// The file is exactly `size` bytes, and its ranges, contiguous from 0 to `size`, hash as sealed.
fn check_bytes(file: &Path, ranges: &[(u64, u64, Hash, u64)], size: u64) -> Result<(), String> {
    let mut at = 0;
    for (start, end, _, seq) in ranges {
        if *start != at || end < start {
            return Err(format!(
                "the receipt's ranges do not cover the file from byte 0 (record {seq} starts at {start})"
            ));
        }
        at = *end;
    }
    if at != size {
        return Err(format!("the receipt's records seal {at} bytes, not the {size} it claims"));
    }
    let mut f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f.metadata().map_err(|e| format!("{}: {e}", file.display()))?.len();
    if len != size {
        return Err(format!("{} has {len} bytes; the receipt proves {size}", file.display()));
    }
    let mut buf = vec![0u8; 1 << 20];
    for (start, end, hash, seq) in ranges {
        let mut hasher = SegmentHasher::default();
        let mut left = end - start;
        while left > 0 {
            let n = f.read(&mut buf[..(left as usize).min(1 << 20)]).map_err(|e| format!("{}: {e}", file.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        if left > 0 || hasher.finish() != *hash {
            return Err(format!("bytes [{start}, {end}) do not match their seal (record {seq})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::LogSigner;
    use crate::core::ledger::{Ledger, SealKind};
    use crate::core::retention::RetentionPolicy;
    use crate::core::segment::sha256;
    use crate::core::store::SystemClock;
    use crate::index::MemoryStore;
    use ed25519_dalek::SigningKey;
    use std::sync::Arc;

    fn p(s: &str) -> RelPath {
        RelPath::parse(std::ffi::OsStr::new(s)).unwrap()
    }

    #[test]
    fn a_receipt_follows_truncates_and_renames() {
        let store = Arc::new(MemoryStore::new());
        let key = SigningKey::from_bytes(&[1; 32]);
        // Retention 0: the truncate and the rename are allowed at once.
        let ledger = Ledger::open(store.clone(), key, Arc::new(SystemClock), RetentionPolicy::uniform(0)).unwrap();
        ledger.mount("t", b"/d", Vec::new()).unwrap();
        let (a, b) = (p("a.log"), p("logs/b.log"));
        ledger.create(&a, 0o100644, 0, 0).unwrap();
        let bytes = b"aaaabbbbcccc";
        for (start, end) in [(0, 4), (4, 8), (8, 12)] {
            ledger.seal(&a, start, end, sha256(&bytes[start as usize..end as usize]), SealKind::Written).unwrap();
        }
        // Cut inside the second segment: [4, 6) stays, checkable by its kept_hash.
        ledger.truncate(&a, 12, 6, false, (4, sha256(&bytes[4..6]))).unwrap();
        ledger.rename(&a, &b, false, false, false).unwrap();
        ledger.seal(&b, 6, 10, sha256(b"dddd"), SealKind::Written).unwrap();
        ledger.create(&p("other.log"), 0o100644, 0, 0).unwrap();

        let signer_key = SigningKey::from_bytes(&[2; 32]);
        let signer = LogSigner::new("wormfs.test/r".into(), signer_key.clone());
        let cp = checkpoint::sign(store.as_ref(), &signer).unwrap();
        let receipt = make(store.as_ref(), &b, &cp, &signer).unwrap();
        let text = serde_json::to_vec(&receipt).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.log");
        std::fs::write(&file, b"aaaabbdddd").unwrap();
        let public = signer_key.verifying_key();
        let checked = check(&file, &text, "wormfs.test/r", &public, &[]).unwrap();
        assert_eq!(checked.size, 10);
        // The three seals (the file_hash chain runs through the cut ones), the truncate, the
        // rename and the seal after it.
        assert_eq!(checked.records.len(), 6, "{:?}", checked.records);

        // The bytes the truncate cut off do not come back, and a changed byte fails.
        std::fs::write(&file, b"aaaabbbbcccc").unwrap();
        assert!(check(&file, &text, "wormfs.test/r", &public, &[]).is_err());
        std::fs::write(&file, b"aaaabXdddd").unwrap();
        assert!(check(&file, &text, "wormfs.test/r", &public, &[]).is_err());

        // Without the Rename record the old name's seals are another file's.
        let mut doc = receipt.clone();
        let records = doc["records"].as_array_mut().unwrap();
        records.retain(|r| {
            let bytes = base64_decode(r["record"].as_str().unwrap()).unwrap();
            !matches!(Record::decode(&bytes).unwrap().fields.payload, Payload::Rename { .. })
        });
        std::fs::write(&file, b"aaaabbdddd").unwrap();
        let err = check(&file, &serde_json::to_vec(&doc).unwrap(), "wormfs.test/r", &public, &[]).unwrap_err();
        assert!(err.contains("not this file"), "{err}");

        // Seals of another history spliced in (a new file of the same name would start its own
        // file_hash chain): the chain does not link.
        let mut doc = receipt.clone();
        let records = doc["records"].as_array_mut().unwrap();
        records.remove(1);
        let err = check(&file, &serde_json::to_vec(&doc).unwrap(), "wormfs.test/r", &public, &[]).unwrap_err();
        assert!(err.contains("does not continue"), "{err}");

        // A checkpoint that does not cover the file's history is refused when making one.
        let mut old = cp.clone();
        old.size = 3;
        assert!(matches!(make(store.as_ref(), &b, &old, &signer), Err(ReceiptError::CheckpointTooOld { .. })));

        // A prefix passed off as the whole file: its last seal dropped, size and bytes to match.
        let mut doc = receipt.clone();
        doc["records"].as_array_mut().unwrap().pop();
        doc["size"] = serde_json::json!(6);
        std::fs::write(&file, b"aaaabb").unwrap();
        let err = check(&file, &serde_json::to_vec(&doc).unwrap(), "wormfs.test/r", &public, &[]).unwrap_err();
        assert!(err.contains("statement"), "{err}");
        // The statement itself cannot be changed to match: it is signed.
        let mut doc = receipt.clone();
        let said = doc["statement"].as_str().unwrap().replacen("\n10\n", "\n6\n", 1);
        doc["statement"] = serde_json::json!(said);
        std::fs::write(&file, b"aaaabbdddd").unwrap();
        assert!(check(&file, &serde_json::to_vec(&doc).unwrap(), "wormfs.test/r", &public, &[]).is_err());
        // Nothing rides along: an unknown field, or records out of order.
        let mut doc = receipt.clone();
        doc["note"] = serde_json::json!("trust me");
        assert!(check(&file, &serde_json::to_vec(&doc).unwrap(), "wormfs.test/r", &public, &[]).is_err());
        let mut doc = receipt.clone();
        doc["records"].as_array_mut().unwrap().swap(0, 1);
        assert!(check(&file, &serde_json::to_vec(&doc).unwrap(), "wormfs.test/r", &public, &[]).is_err());
        assert!(check(&file, &text, "wormfs.test/r", &public, &[]).is_ok(), "and the genuine one still checks");
    }

    #[test]
    fn seals_of_a_name_after_it_was_renamed_away_are_another_file() {
        let store = Arc::new(MemoryStore::new());
        let ledger = Ledger::open(
            store.clone(),
            SigningKey::from_bytes(&[1; 32]),
            Arc::new(SystemClock),
            RetentionPolicy::uniform(0),
        )
        .unwrap();
        ledger.mount("t", b"/d", Vec::new()).unwrap();
        let (a, b) = (p("a.log"), p("b.log"));
        ledger.create(&a, 0o100644, 0, 0).unwrap();
        ledger.seal(&a, 0, 9, sha256(b"B-GENUINE"), SealKind::Written).unwrap();
        ledger.rename(&a, &b, false, false, false).unwrap();
        // A new a.log, whose first seal has the same shape as the old one's.
        ledger.create(&a, 0o100644, 0, 0).unwrap();
        ledger.seal(&a, 0, 9, sha256(b"A-SECOND!"), SealKind::Written).unwrap();
        let key = SigningKey::from_bytes(&[2; 32]);
        let signer = LogSigner::new("wormfs.test/r".into(), key.clone());
        let cp = checkpoint::sign(store.as_ref(), &signer).unwrap();
        let genuine = make(store.as_ref(), &b, &cp, &signer).unwrap();
        // The rename (record 4) and the new a.log's seal (record 6) offered as b.log's history.
        let mut doc = genuine.clone();
        let proof7 = merkle::inclusion_proof(store.as_ref(), cp.size, 6).unwrap();
        let bytes7 = store.record_bytes(6).unwrap().unwrap();
        doc["records"] = serde_json::json!([
            genuine["records"][1].clone(),
            { "seq": 6, "record": base64_encode(&bytes7), "proof": proof7.iter().map(|h| base64_encode(h)).collect::<Vec<_>>() },
        ]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.log");
        std::fs::write(&file, b"A-SECOND!").unwrap();
        let err =
            check(&file, &serde_json::to_vec(&doc).unwrap(), "wormfs.test/r", &key.verifying_key(), &[]).unwrap_err();
        assert!(err.contains("not this file") || err.contains("renames"), "{err}");
        std::fs::write(&file, b"B-GENUINE").unwrap();
        let ok = check(&file, &serde_json::to_vec(&genuine).unwrap(), "wormfs.test/r", &key.verifying_key(), &[]);
        assert!(ok.is_ok(), "{ok:?}");
    }
}

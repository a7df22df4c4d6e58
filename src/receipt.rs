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

use crate::checkpoint::{self, Checkpoint, WitnessKey};
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
        }
    }
}

impl std::error::Error for ReceiptError {}

/// The receipt for `path`: its records, proven against `cp` (which must cover them and be a
/// checkpoint of this store's tree).
pub fn make(store: &dyn Store, path: &RelPath, cp: &Checkpoint) -> Result<Value, ReceiptError> {
    let history = History::replay(store).map_err(ReceiptError::Store)?;
    let file = history.files.get(path).ok_or_else(|| ReceiptError::NoSuchFile(path.clone()))?;
    let mut seqs: Vec<u64> = file.ranges.iter().map(|r| r.seq).collect();
    seqs.extend(renames_to(store, path, file.began)?);
    seqs.sort_unstable();
    seqs.dedup();
    let needed = seqs.last().copied().unwrap_or(0);
    if needed > cp.size {
        return Err(ReceiptError::CheckpointTooOld { size: cp.size, needed });
    }
    let mut records = Vec::new();
    for seq in seqs {
        let bytes = store.record_bytes(seq).map_err(ReceiptError::Store)?.ok_or(ReceiptError::Record(seq))?;
        let proof = merkle::inclusion_proof(store, cp.size, seq).map_err(ReceiptError::Store)?;
        records.push(json!({
            "seq": seq,
            "record": base64_encode(&bytes),
            "proof": proof.iter().map(|h| base64_encode(h)).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "format": FORMAT,
        "path": crate::inspect::path_text(path),
        "path_hex": path.hex(),
        "size": file.sealed,
        "checkpoint": String::from_utf8_lossy(&cp.to_note()),
        "records": records,
    }))
}

/// The Rename records that brought the history now at `path` to it, newest first: each one's
/// `from` name was renamed on until `path`.
fn renames_to(store: &dyn Store, path: &RelPath, began: u64) -> Result<Vec<u64>, ReceiptError> {
    let mut renames = Vec::new();
    store
        .scan_records(1, &mut |seq, bytes| {
            if let Ok(Record { fields, .. }) = Record::decode(bytes) {
                if let Payload::Rename { from, to } = fields.payload {
                    renames.push((seq, from, to));
                }
            }
            true
        })
        .map_err(ReceiptError::Store)?;
    let mut out = Vec::new();
    let (mut name, mut before) = (path.clone(), began.saturating_add(1));
    while let Some((seq, from, _)) = renames.iter().rev().find(|(seq, _, to)| *seq < before && *to == name) {
        out.push(*seq);
        name = from.clone();
        before = *seq;
    }
    Ok(out)
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

    // Every record must be in the checkpoint's tree, at its own seq.
    let mut records = Vec::new();
    for e in entries {
        let seq = e["seq"].as_u64().ok_or("a record without a seq")?;
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
    records.sort_by_key(|r| r.seq());

    // The names the history had: the receipt's path, and each name a Rename brought to one.
    let mut names = vec![path.clone()];
    for r in records.iter().rev() {
        if let Payload::Rename { from, to } = &r.fields.payload {
            if names.contains(to) {
                names.push(from.clone());
            }
        }
    }
    // The ranges the records make, in order: a seal adds one; a truncate keeps what is before
    // its cut and the part of the cut segment it hashed.
    let mut ranges: Vec<(u64, u64, Hash, u64)> = Vec::new();
    for r in &records {
        let seq = r.seq();
        match &r.fields.payload {
            Payload::Seal(s) | Payload::Recovered { segment: s, .. } => {
                if !names.contains(&s.path) {
                    return Err(format!("record {seq} seals {}, not this file", s.path));
                }
                ranges.push((s.start, s.end, s.segment_hash, seq));
            }
            Payload::Truncate { path: p, new_size, kept_start, kept_hash, .. } => {
                if !names.contains(p) {
                    return Err(format!("record {seq} truncates {p}, not this file"));
                }
                ranges.retain(|(_, end, _, _)| *end <= *kept_start);
                if new_size > kept_start {
                    ranges.push((*kept_start, *new_size, *kept_hash, seq));
                }
            }
            Payload::Rename { .. } => {}
            other => {
                return Err(format!("record {seq} is a {} record, which a receipt does not carry", other.kind().name()))
            }
        }
    }
    let size = doc["size"].as_u64().ok_or("the receipt has no size")?;
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

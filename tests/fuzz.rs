//! Hostile bytes (#12): property-based fuzzing of every parser that reads bytes an attacker can
//! write: the record decoder and the chain checker over stored records, the config file, the
//! control socket's requests, checkpoints, signed notes, vkeys, receipts, a witness' answers,
//! and the Merkle proof checks. No FUSE mount is needed.
//!
//! Every property asserts no panic, and more where there is more to say: a round trip, a
//! mutation that is refused or means exactly what it re-encodes to, a forgery that never
//! verifies. Inputs are made structured (valid values, then mutated) as well as raw, so the
//! fuzzer reaches past the first length check.
//!
//! Cases per property: `WORMFS_FUZZ_CASES` (default `DEFAULT_CASES`, the bounded run of
//! `cargo test`). A long run of a million inputs per property:
//!
//! ```text
//! WORMFS_FUZZ_CASES=1000000 cargo test --release --locked --test fuzz
//! ```
//!
//! (add a property's name to run only that one; `PROPTEST_RNG_SEED=N` repeats a run). A failure
//! prints the minimal input proptest shrank it to; its seed is kept in
//! `target/tmp/fuzz-regressions.txt` (never in the source tree) and tried first next time.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;

use wormfs::admin::{self, Request, Response};
use wormfs::checkpoint::{self, Checkpoint, LogSigner, WitnessKey};
use wormfs::core::chain::{key_id, sign as sign_record, ChainChecker};
use wormfs::core::ledger::{Ledger, SealKind};
use wormfs::core::merkle::{self, EMPTY_ROOT};
use wormfs::core::record::{Archive, DecodeError, Payload, Record, Segment, Unsigned, MAX_RECORD_LEN};
use wormfs::core::retention::{parse_duration_ns, RetentionPolicy, NS_PER_SEC};
use wormfs::core::segment::{from_hex, hex, sha256, Hash, ZERO_HASH};
use wormfs::core::store::{IndexUpdate, Store, SystemClock};
use wormfs::core::timefmt::{parse_utc_ns, rfc3339_ns};
use wormfs::core::RelPath;
use wormfs::core::WormFs;
use wormfs::index::MemoryStore;
use wormfs::keys::{base64_decode, base64_encode, parse_public, parse_vkey, vkey};
use wormfs::verify::{self, Finding};
use wormfs::witness::Witness;

// ---------------------------------------------------------------------------------------------
// The run's size.

/// Cases per property in a plain `cargo test`: the whole target takes about 20 s on 2 idle cores
/// (25 CPU-seconds in a debug build).
const DEFAULT_CASES: u32 = 4_000;

fn cases() -> u32 {
    match std::env::var("WORMFS_FUZZ_CASES") {
        Ok(text) => text.trim().replace('_', "").parse().expect("WORMFS_FUZZ_CASES must be a number of cases"),
        Err(_) => DEFAULT_CASES,
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Under target/ (Cargo's temporary directory for integration tests), never the sources.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_TARGET_TMPDIR"),
            "/fuzz-regressions.txt"
        )))),
        // A few properties skip a case whose mutations happened to change nothing: allow that
        // at any length of run.
        max_global_rejects: u32::MAX,
        max_local_rejects: u32::MAX,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations of bytes, shared by every parser.

/// One change to a byte string. Positions are `Index`es, so a mutation fits any length.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit.
    Flip(Index, u8),
    /// Overwrite one byte.
    Set(Index, u8),
    /// Keep a proper prefix.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Remove up to n bytes.
    Remove(Index, usize),
    /// Overwrite 4 bytes with a big-endian u32 (a length field's favourite lies).
    SetU32(Index, u32),
    /// Copy a few bytes from one place over another.
    Copy(Index, Index, usize),
}

fn boundary_u32() -> BoxedStrategy<u32> {
    prop_oneof![
        any::<u32>(),
        0u32..=300,
        Just(u32::MAX),
        (u32::MAX - 64)..=u32::MAX,
        Just(1 << 31),
        Just(MAX_RECORD_LEN as u32),
        Just(MAX_RECORD_LEN as u32 + 1),
    ]
    .boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        2 => (any::<Index>(), boundary_u32()).prop_map(|(i, v)| Mutation::SetU32(i, v)),
        1 => (any::<Index>(), any::<Index>(), 1usize..40).prop_map(|(a, b, n)| Mutation::Copy(a, b, n)),
    ]
    .boxed()
}

fn mutations() -> BoxedStrategy<Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4).boxed()
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) if len > 0 => bytes[i.index(len)] = *b,
        Mutation::Truncate(i) if len > 0 => bytes.truncate(i.index(len)),
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Insert(i, more) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, more.iter().copied());
        }
        Mutation::Remove(i, n) if len > 0 => {
            let at = i.index(len);
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::SetU32(i, v) if len >= 4 => {
            let at = i.index(len - 3);
            bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        Mutation::Copy(from, to, n) if len > 0 => {
            let (from, to) = (from.index(len), to.index(len));
            let n = (*n).min(len - from).min(len - to);
            bytes.copy_within(from..from + n, to);
        }
        _ => {}
    }
}

fn mutated(bytes: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in ms {
        apply(&mut out, m);
    }
    out
}

/// A text parser's input after byte mutations (which may break UTF-8: lossy, as a reader would).
fn mutated_text(text: &str, ms: &[Mutation]) -> String {
    String::from_utf8_lossy(&mutated(text.as_bytes(), ms)).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Values: numbers near the edges, names, paths, records.

fn boundary_u64() -> BoxedStrategy<u64> {
    prop_oneof![
        3 => any::<u64>(),
        3 => 0u64..=300,
        1 => Just(u64::MAX),
        1 => (u64::MAX - 300)..=u64::MAX,
        1 => Just(1u64 << 63),
        1 => Just((1u64 << 63) - 1),
        1 => Just(1u64 << 61),
        1 => (1u64 << 32) - 3..(1u64 << 32) + 3,
    ]
    .boxed()
}

fn hash() -> BoxedStrategy<Hash> {
    prop_oneof![3 => any::<[u8; 32]>(), 1 => Just(ZERO_HASH), 1 => Just(EMPTY_ROOT)].boxed()
}

fn signature_bytes() -> BoxedStrategy<[u8; 64]> {
    prop::collection::vec(any::<u8>(), 64).prop_map(|v| v.try_into().unwrap()).boxed()
}

/// One path component: any bytes but `/` and NUL, neither `.` nor `..`, 1 to 255 bytes.
fn component() -> BoxedStrategy<Vec<u8>> {
    let clean = |mut v: Vec<u8>| {
        for b in v.iter_mut() {
            if *b == b'/' || *b == 0 {
                *b = b'_';
            }
        }
        if v == b"." || v == b".." {
            v.push(b'x');
        }
        v
    };
    prop_oneof![
        4 => prop::sample::select(vec!["a.log", "b.log", "app", "x", "today.log", "caf\u{e9}", "a\nb", "-", "..."])
            .prop_map(|s| s.as_bytes().to_vec()),
        3 => prop::collection::vec(any::<u8>(), 1..12).prop_map(clean),
        1 => prop::collection::vec(any::<u8>(), 250..=255).prop_map(clean),
    ]
    .boxed()
}

/// A valid file path (never the root): 1 to 4 components, at most 4 × 256 bytes.
fn rel_path() -> BoxedStrategy<RelPath> {
    prop::collection::vec(component(), 1..=4)
        .prop_map(|parts| {
            RelPath::parse(OsStr::from_bytes(&parts.join(&b'/'))).expect("a path built of valid components")
        })
        .boxed()
}

/// A hold's prefix: a path or the root.
fn prefix() -> BoxedStrategy<RelPath> {
    prop_oneof![4 => rel_path(), 1 => Just(RelPath::root())].boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::string::string_regex("(?s).{0,24}").unwrap(),
        1 => prop::sample::select(vec!["", "wormfs 0.1.0", "subpoena 42", "cat", "\u{0}\n\r\t", "\u{202e}evil"])
            .prop_map(String::from),
    ]
    .boxed()
}

fn segment() -> BoxedStrategy<Segment> {
    (rel_path(), boundary_u64(), boundary_u64(), hash(), hash(), boundary_u64())
        .prop_map(|(path, a, b, segment_hash, file_hash, retain_until_ns)| Segment {
            path,
            start: a.min(b),
            end: a.max(b),
            segment_hash,
            file_hash,
            retain_until_ns,
        })
        .boxed()
}

/// Every payload kind, with field values a decoder must accept (ends after starts, cuts
/// inside their file).
fn payload() -> BoxedStrategy<Payload> {
    prop_oneof![
        (text(), any::<[u8; 8]>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(software, key_id, data_dir)| Payload::Mount { software, key_id, data_dir }),
        Just(Payload::Unmount),
        (rel_path(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(path, mode, uid, gid)| Payload::Create {
            path,
            mode,
            uid,
            gid
        }),
        segment().prop_map(Payload::Seal),
        (segment(), any::<bool>()).prop_map(|(segment, adopted)| Payload::Recovered { segment, adopted }),
        (rel_path(), boundary_u64(), hash(), boundary_u64()).prop_map(|(path, size, file_hash, retain_until_ns)| {
            Payload::Delete { path, size, file_hash, retain_until_ns }
        }),
        (prefix(), any::<bool>(), text(), any::<u32>()).prop_map(|(prefix, set, reason, uid)| Payload::Hold {
            prefix,
            set,
            reason,
            uid
        }),
        (rel_path(), boundary_u64(), any::<u32>()).prop_map(|(path, retain_until_ns, uid)| Payload::Retention {
            path,
            retain_until_ns,
            uid
        }),
        (boundary_u64(), any::<[u8; 32]>(), boundary_u64())
            .prop_map(|(epoch, public_key, epoch_ns)| Payload::KeyRotate { epoch, public_key, epoch_ns }),
        (rel_path(), rel_path()).prop_map(|(from, to)| Payload::Rename { from, to }),
        (rel_path(), [boundary_u64(), boundary_u64(), boundary_u64()], hash()).prop_map(|(path, mut n, kept_hash)| {
            n.sort_unstable();
            Payload::Truncate { path, old_size: n[2], new_size: n[1], kept_start: n[0], kept_hash }
        }),
        (boundary_u64(), boundary_u64()).prop_map(|(system_ns, floor_ns)| Payload::ClockJump { system_ns, floor_ns }),
        (rel_path(), any::<u32>(), any::<u32>(), text()).prop_map(|(path, uid, pid, command)| Payload::Access {
            path,
            uid,
            pid,
            command
        }),
        (rel_path(), boundary_u64(), boundary_u64()).prop_map(|(path, sealed, size)| Payload::Damaged {
            path,
            sealed,
            size
        }),
        (boundary_u64(), any::<u32>()).prop_map(|(change, errno)| Payload::Aborted { change, errno }),
        (rel_path(), boundary_u64(), hash(), [text(), text(), text(), text()], boundary_u64()).prop_map(
            |(path, size, file_hash, [bucket, key, version_id, receipt_version_id], retain_until_ns)| {
                Payload::Archived(Archive {
                    path,
                    size,
                    file_hash,
                    bucket,
                    key,
                    version_id,
                    receipt_version_id,
                    retain_until_ns,
                })
            }
        ),
        (rel_path(), boundary_u64(), hash(), boundary_u64(), boundary_u64()).prop_map(
            |(path, size, file_hash, retain_until_ns, archived)| Payload::Pruned {
                path,
                size,
                file_hash,
                retain_until_ns,
                archived
            }
        ),
    ]
    .boxed()
}

fn record() -> BoxedStrategy<Record> {
    (boundary_u64(), boundary_u64(), payload(), hash(), hash(), signature_bytes())
        .prop_map(|(seq, time_ns, payload, prev_hash, hash, signature)| Record {
            fields: Unsigned { seq, time_ns, payload, prev_hash },
            hash,
            signature,
        })
        .boxed()
}

/// One field of a made-up payload, so raw payloads look like real ones field by field.
#[derive(Debug, Clone)]
enum Field {
    Bytes(Vec<u8>),
    Path(RelPath),
    /// A length prefix that lies about what follows.
    LyingLength(u32, Vec<u8>),
    U32(u32),
    U64(u64),
    Flag(u8),
    Hash(Hash),
}

fn field() -> BoxedStrategy<Field> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Field::Bytes),
        rel_path().prop_map(Field::Path),
        (boundary_u32(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(n, b)| Field::LyingLength(n, b)),
        any::<u32>().prop_map(Field::U32),
        boundary_u64().prop_map(Field::U64),
        prop_oneof![Just(0u8), Just(1), any::<u8>()].prop_map(Field::Flag),
        hash().prop_map(Field::Hash),
    ]
    .boxed()
}

fn encode_fields(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match f {
            Field::Bytes(b) => {
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
            Field::Path(p) => {
                let b = p.as_os_str().as_bytes();
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
            Field::LyingLength(n, b) => {
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(b);
            }
            Field::U32(v) => out.extend_from_slice(&v.to_be_bytes()),
            Field::U64(v) => out.extend_from_slice(&v.to_be_bytes()),
            Field::Flag(v) => out.push(*v),
            Field::Hash(h) => out.extend_from_slice(h),
        }
    }
    out
}

/// Bytes shaped like a record: a (mostly) known version and kind, a payload of made-up fields
/// whose declared length is (mostly) right, then the fixed tail.
fn record_shaped_bytes() -> BoxedStrategy<Vec<u8>> {
    (
        prop_oneof![8 => Just(1u8), 1 => any::<u8>()],
        boundary_u64(),
        boundary_u64(),
        prop_oneof![8 => 0u8..=20, 1 => any::<u8>()],
        prop::collection::vec(field(), 0..8),
        prop_oneof![6 => Just(None), 1 => boundary_u32().prop_map(Some)],
        prop::collection::vec(any::<u8>(), 128),
        prop_oneof![6 => Just(0usize), 1 => 1usize..128],
    )
        .prop_map(|(version, seq, time, tag, fields, lie, tail, cut)| {
            let payload = encode_fields(&fields);
            let mut out = vec![version];
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&time.to_be_bytes());
            out.push(tag);
            out.extend_from_slice(&lie.unwrap_or(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&payload);
            out.extend_from_slice(&tail[..128 - cut]);
            out
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Keys and key names.

fn signing_key() -> BoxedStrategy<SigningKey> {
    any::<[u8; 32]>().prop_map(|seed| SigningKey::from_bytes(&seed)).boxed()
}

/// A name C2SP notes accept for a key: no whitespace, no `+`, not empty (and, as notes need,
/// no control characters).
fn key_name() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(vec!["wormfs/host", "wormfs.test/a", "witness.example/w", "x", "\u{e9}t\u{e9}/\u{1f4dc}"])
            .prop_map(String::from),
        3 => prop::string::string_regex("[!-*,-~\u{a1}-\u{2fff}]{1,24}").unwrap().prop_map(|name| {
            let name: String = name.chars().filter(|c| !c.is_whitespace()).collect();
            if name.is_empty() {
                "x".to_string()
            } else {
                name
            }
        }),
    ].boxed()
}

/// The C2SP vkey of a witness key (type 0x04, cosignature/v1).
fn witness_vkey(name: &str, key: &VerifyingKey) -> String {
    let mut raw = vec![0x04];
    raw.extend_from_slice(key.as_bytes());
    let id = signed_note::key_id(name, &raw);
    format!("{name}+{id:08x}+{}", base64_encode(&raw))
}

/// The cosignature line a witness with `key` named `name` gives `cp` at `time`.
fn cosignature_line(cp: &Checkpoint, name: &str, key: &SigningKey, time: u64) -> String {
    let witness = WitnessKey::parse(&witness_vkey(name, &key.verifying_key())).expect("a witness vkey");
    let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
    msg.extend_from_slice(cp.body().as_bytes());
    let mut sig = witness.id.to_be_bytes().to_vec();
    sig.extend_from_slice(&time.to_be_bytes());
    sig.extend_from_slice(&key.sign(&msg).to_bytes());
    format!("\u{2014} {name} {}\n", base64_encode(&sig))
}

// ---------------------------------------------------------------------------------------------
// Chains, trees and checkpoints to mutate.

/// A store holding the signed chain `records` (each committed with its tree hashes).
fn store_with(records: &[Record]) -> MemoryStore {
    let store = MemoryStore::new();
    for r in records {
        let tree = merkle::hashes_for(&store, r.seq(), &r.encode()).unwrap();
        store.commit(r, &[tree]).unwrap();
    }
    store
}

/// A chain of `n` Unmount records signed by `key`.
fn plain_chain(n: u64, key: &SigningKey) -> Vec<Record> {
    let mut prev = ZERO_HASH;
    (1..=n)
        .map(|seq| {
            let r = sign_record(Unsigned { seq, time_ns: seq, payload: Payload::Unmount, prev_hash: prev }, key);
            prev = r.hash;
            r
        })
        .collect()
}

/// A store holding only a Merkle tree of `MAX_LEAVES` made-up leaves.
const MAX_LEAVES: u64 = 70;

struct Tree {
    store: MemoryStore,
    leaves: Vec<Vec<u8>>,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let store = MemoryStore::new();
        let leaves: Vec<Vec<u8>> = (1..=MAX_LEAVES).map(|i| format!("record {i}").into_bytes()).collect();
        for (i, bytes) in leaves.iter().enumerate() {
            let IndexUpdate::TreeHashes { first, hashes } = merkle::hashes_for(&store, i as u64 + 1, bytes).unwrap()
            else {
                unreachable!("hashes_for gives tree hashes")
            };
            store.put_tree_hashes(first, &hashes).unwrap();
        }
        Tree { store, leaves }
    })
}

const ORIGIN: &str = "wormfs.test/fuzz";

/// A checkpoint of a 7-record chain, cosigned by one witness, and the keys around it.
struct Signed {
    log_key: SigningKey,
    witness_key: SigningKey,
    witness: WitnessKey,
    cp: Checkpoint,
    /// Its note with the witness' cosignature.
    note: Vec<u8>,
    store: MemoryStore,
}

fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let log_key = SigningKey::from_bytes(&[1; 32]);
        let store = store_with(&plain_chain(7, &SigningKey::from_bytes(&[9; 32])));
        let mut cp = checkpoint::sign(&store, &LogSigner::new(ORIGIN.into(), log_key.clone())).unwrap();
        let witness_key = SigningKey::from_bytes(&[5; 32]);
        let witness = WitnessKey::parse(&witness_vkey("witness.test/w", &witness_key.verifying_key())).unwrap();
        let line = cosignature_line(&cp, "witness.test/w", &witness_key, 1_700_000_000);
        cp.add_cosignature(&line).unwrap();
        let note = cp.to_note();
        let back = checkpoint::read(&note, ORIGIN, &log_key.verifying_key(), std::slice::from_ref(&witness)).unwrap();
        assert_eq!((back.size, back.root), (cp.size, cp.root));
        Signed { log_key, witness_key, witness, cp, note, store }
    })
}

// ---------------------------------------------------------------------------------------------
// The record decoder and the chain checker.

proptest! {
    #![proptest_config(config())]

    /// Every well-formed record decodes back to itself, and its encoding is the only one.
    #[test]
    fn record_round_trips(r in record()) {
        let bytes = r.encode();
        prop_assert_eq!(Record::decode(&bytes), Ok(r.clone()));
        prop_assert_eq!(Record::decode(&bytes).unwrap().encode(), bytes);
    }

    /// A mutated record is refused, or decodes to a record whose encoding is exactly the
    /// mutated bytes (one encoding, one meaning). Any proper prefix and any extension is refused.
    #[test]
    fn a_mutated_record_is_refused_or_canonical(r in record(), ms in mutations(), cut in any::<Index>(),
                                                 more in prop::collection::vec(any::<u8>(), 1..16)) {
        let bytes = r.encode();
        let changed = mutated(&bytes, &ms);
        if let Ok(back) = Record::decode(&changed) {
            prop_assert_eq!(back.encode(), changed);
        }
        let prefix = &bytes[..cut.index(bytes.len())];
        prop_assert!(Record::decode(prefix).is_err(), "a prefix of {} bytes decoded", prefix.len());
        let longer = [bytes.as_slice(), &more].concat();
        prop_assert_eq!(Record::decode(&longer), Err(DecodeError::TrailingBytes));
    }

    /// Fields a decoder must refuse: a segment ending before it starts, a truncate that grows
    /// or keeps bytes past its cut, the root as a file's path.
    #[test]
    fn an_ill_formed_record_is_refused(r in record(), a in boundary_u64(), b in boundary_u64(),
                                       c in boundary_u64()) {
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assume!(lo < hi);
        let mut bad = r.clone();
        let expected = match &mut bad.fields.payload {
            Payload::Seal(s) | Payload::Recovered { segment: s, .. } => {
                (s.start, s.end) = (hi, lo);
                DecodeError::BadSegment
            }
            Payload::Truncate { old_size, new_size, kept_start, .. } => {
                // Either the cut grows the file or the kept part starts after the cut.
                if c % 2 == 0 {
                    (*old_size, *new_size, *kept_start) = (lo, hi, lo);
                } else {
                    (*old_size, *new_size, *kept_start) = (hi, lo, hi);
                }
                DecodeError::BadSegment
            }
            Payload::Create { path, .. } | Payload::Delete { path, .. } | Payload::Retention { path, .. }
            | Payload::Access { path, .. } | Payload::Damaged { path, .. } | Payload::Rename { to: path, .. } => {
                *path = RelPath::root();
                DecodeError::BadPath
            }
            _ => return Ok(()),
        };
        prop_assert_eq!(Record::decode(&bad.encode()), Err(expected));
    }

    /// Raw bytes, and bytes shaped like a record field by field: never a panic, and whatever
    /// decodes is canonical.
    #[test]
    fn raw_bytes_never_panic_the_decoder(raw in prop::collection::vec(any::<u8>(), 0..300),
                                         shaped in record_shaped_bytes()) {
        for bytes in [raw, shaped] {
            if let Ok(r) = Record::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }
    }
}

/// A signed chain of records of every kind but KeyRotate (a genuine one would need the next
/// key's vault); each Mount names the signing key, times never go backwards.
fn genuine_chain() -> BoxedStrategy<Vec<Record>> {
    prop::collection::vec((payload(), 0u64..1_000_000), 1..7)
        .prop_map(|steps| {
            let key = chain_key();
            let mut prev = ZERO_HASH;
            let mut time_ns = 1_700_000_000_000_000_000u64;
            steps
                .into_iter()
                .zip(1u64..)
                .map(|((payload, dt), seq)| {
                    let payload = match payload {
                        Payload::Mount { software, data_dir, .. } => {
                            Payload::Mount { software, key_id: key_id(&key.verifying_key()), data_dir }
                        }
                        Payload::KeyRotate { .. } => Payload::Unmount,
                        other => other,
                    };
                    time_ns += dt;
                    let r = sign_record(Unsigned { seq, time_ns, payload, prev_hash: prev }, &key);
                    prev = r.hash;
                    r
                })
                .collect()
        })
        .boxed()
}

fn chain_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A change to a stored chain.
#[derive(Debug, Clone)]
enum ChainMutation {
    Bytes(Index, Vec<Mutation>),
    Swap(Index, Index),
    Delete(Index),
    Duplicate(Index, u64),
    /// Store a record under another key.
    Move(Index, u64),
    /// Replace a record's bytes with a valid record of another chain (signed by another key).
    Foreign(Index, Box<Record>),
}

fn chain_mutation() -> BoxedStrategy<ChainMutation> {
    let key = prop_oneof![boundary_u64(), 0u64..10];
    prop_oneof![
        4 => (any::<Index>(), mutations()).prop_map(|(i, ms)| ChainMutation::Bytes(i, ms)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| ChainMutation::Swap(a, b)),
        1 => any::<Index>().prop_map(ChainMutation::Delete),
        1 => (any::<Index>(), key.clone()).prop_map(|(i, k)| ChainMutation::Duplicate(i, k)),
        1 => (any::<Index>(), key).prop_map(|(i, k)| ChainMutation::Move(i, k)),
        1 => (any::<Index>(), record()).prop_map(|(i, r)| ChainMutation::Foreign(i, Box::new(r))),
    ]
    .boxed()
}

/// The stored chain after `ms`, as (key, bytes) in key order (what a store scan gives).
fn tampered(chain: &[Record], ms: &[ChainMutation]) -> Vec<(u64, Vec<u8>)> {
    let mut stored: std::collections::BTreeMap<u64, Vec<u8>> = chain.iter().map(|r| (r.seq(), r.encode())).collect();
    for m in ms {
        let keys: Vec<u64> = stored.keys().copied().collect();
        if keys.is_empty() {
            break;
        }
        let pick = |i: &Index| keys[i.index(keys.len())];
        match m {
            ChainMutation::Bytes(i, bytes) => {
                let k = pick(i);
                let b = mutated(&stored[&k], bytes);
                stored.insert(k, b);
            }
            ChainMutation::Swap(a, b) => {
                let (a, b) = (pick(a), pick(b));
                let (va, vb) = (stored[&a].clone(), stored[&b].clone());
                stored.insert(a, vb);
                stored.insert(b, va);
            }
            ChainMutation::Delete(i) => {
                stored.remove(&pick(i));
            }
            ChainMutation::Duplicate(i, k) => {
                let v = stored[&pick(i)].clone();
                stored.insert(*k, v);
            }
            ChainMutation::Move(i, k) => {
                let v = stored.remove(&pick(i)).unwrap();
                stored.insert(*k, v);
            }
            ChainMutation::Foreign(i, r) => {
                stored.insert(pick(i), r.encode());
            }
        }
    }
    stored.into_iter().collect()
}

proptest! {
    #![proptest_config(config())]

    /// The chain checker passes a genuine chain, and no change to the stored records goes
    /// unseen: it reports a finding, or a head other than the genuine one.
    #[test]
    fn the_chain_checker_sees_every_change(chain in genuine_chain(),
                                           ms in prop::collection::vec(chain_mutation(), 1..3)) {
        let anchor = chain_key().verifying_key();
        let genuine: Vec<(u64, Vec<u8>)> = chain.iter().map(|r| (r.seq(), r.encode())).collect();
        let mut checker = ChainChecker::new(anchor);
        for (k, b) in &genuine {
            checker.check(*k, b);
        }
        let report = checker.finish();
        prop_assert!(report.findings.is_empty(), "a genuine chain has findings: {:?}", report.findings);
        let head = report.head;

        let stored = tampered(&chain, &ms);
        prop_assume!(stored != genuine);
        let mut checker = ChainChecker::new(anchor);
        for (k, b) in &stored {
            checker.check(*k, b);
        }
        let report = checker.finish();
        prop_assert!(!report.findings.is_empty() || report.head != head,
                     "a changed chain passed as the genuine one: {stored:?}");
    }

    /// `verify` over a store of hostile records never panics, and reports every finding of the
    /// chain checker on the same records.
    #[test]
    fn verify_survives_a_hostile_index(chain in genuine_chain(),
                                       ms in prop::collection::vec(chain_mutation(), 0..3),
                                       extra in prop::collection::vec((0u64..12, record_shaped_bytes()), 0..3)) {
        let mut stored = tampered(&chain, &ms);
        for (k, bytes) in extra {
            stored.retain(|(key, _)| *key != k);
            stored.push((k, bytes));
        }
        stored.sort();
        let store = MemoryStore::new();
        for (k, b) in &stored {
            store.raw_put_record(*k, b.clone());
        }
        let anchor = chain_key().verifying_key();
        let mut checker = ChainChecker::new(anchor);
        for (k, b) in &stored {
            checker.check(*k, b);
        }
        let expected = checker.finish().findings;
        let report = verify::check(&store, empty_dir(), anchor);
        let report = match report {
            Ok(report) => report,
            Err(e) => return Err(TestCaseError::fail(format!("verify failed on a readable store: {e}"))),
        };
        let found: Vec<_> =
            report.findings.iter().filter_map(|f| if let Finding::Chain(c) = f { Some(c.clone()) } else { None }).collect();
        prop_assert_eq!(found, expected);
    }
}

/// An empty DATA_DIR for verify.
fn empty_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

// ---------------------------------------------------------------------------------------------
// The config file, durations and dates.

/// A duration as a config or a flag writes it: a number and a unit (or a mistake).
#[derive(Debug, Clone)]
struct Duration {
    n: u64,
    unit: &'static str,
    /// Spaces around it (trimmed by the parser).
    padded: bool,
}

impl Duration {
    fn text(&self) -> String {
        let text = format!("{}{}", self.n, self.unit);
        if self.padded {
            format!(" {text}\t")
        } else {
            text
        }
    }

    /// What the parser must make of it, worked out here from the units' definitions.
    fn ns(&self) -> Option<u64> {
        // The parser trims the text, so a unit's trailing space is no mistake.
        let secs = match self.unit.trim_end() {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "y" => 365 * 86_400,
            _ => return None,
        };
        self.n.checked_mul(secs)?.checked_mul(NS_PER_SEC)
    }
}

fn duration() -> BoxedStrategy<Duration> {
    let n = prop_oneof![4 => 0u64..400, 1 => boundary_u64(), 1 => Just(u64::MAX / NS_PER_SEC / 86_400)];
    let unit = prop_oneof![
        8 => prop::sample::select(vec!["s", "m", "h", "d", "y"]),
        1 => prop::sample::select(vec!["", "x", "D", "ms", "d ", " d", "\u{e9}", "dd", "s1"]),
    ];
    (n, unit, prop::bool::weighted(0.1)).prop_map(|(n, unit, padded)| Duration { n, unit, padded }).boxed()
}

/// A rule path as written in a config, and whether it names a path inside the mount.
fn rule_path() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec!["/audit", "/app", "/app/x", "audit", "/", "/a.log", "/caf\u{e9}"]).prop_map(String::from),
        1 => prop::sample::select(vec!["/../etc", "/a//b", "/a/", "", "//", "/a/./b", "/a\u{0}b"]).prop_map(String::from),
        1 => prop::string::string_regex("/?[a-z./]{0,12}").unwrap(),
    ].boxed()
}

/// A config file as entries, each rendered on lines of its own, so the line of any mistake
/// is known.
#[derive(Debug, Clone)]
struct ConfigModel {
    /// retention, min_retention, max_retention, each maybe absent, in this order of lines.
    top: Vec<(&'static str, Duration)>,
    rules: Vec<(String, Duration, bool)>,
}

fn config_model() -> BoxedStrategy<ConfigModel> {
    let top = (
        prop::option::weighted(0.95, duration()),
        prop::option::of(duration()),
        prop::option::of(duration()),
        any::<u8>(),
    )
        .prop_map(|(retention, min, max, order)| {
            let mut top: Vec<(&'static str, Duration)> =
                [("retention", retention), ("min_retention", min), ("max_retention", max)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
            let turn = order as usize % top.len().max(1);
            top.rotate_left(turn);
            top
        });
    let rules = prop::collection::vec((rule_path(), duration(), any::<bool>()), 0..5);
    (top, rules).prop_map(|(top, rules)| ConfigModel { top, rules }).boxed()
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl ConfigModel {
    /// The file's text, and for each entry its line (1-based).
    fn render(&self) -> (String, Vec<usize>, Vec<(usize, usize)>) {
        let mut text = String::from("# wormfs config\n");
        let mut line = 2;
        let mut top_lines = Vec::new();
        for (key, d) in &self.top {
            text.push_str(&format!("{key} = {}\n", toml_string(&d.text())));
            top_lines.push(line);
            line += 1;
        }
        let mut rule_lines = Vec::new();
        for (path, d, retention_first) in &self.rules {
            let path_line = format!("path = {}\n", toml_string(path));
            let retention_line = format!("retention = {}\n", toml_string(&d.text()));
            text.push_str("\n[[rule]]\n");
            line += 2;
            if *retention_first {
                text.push_str(&retention_line);
                text.push_str(&path_line);
                rule_lines.push((line + 1, line));
            } else {
                text.push_str(&path_line);
                text.push_str(&retention_line);
                rule_lines.push((line, line + 1));
            }
            line += 2;
        }
        (text, top_lines, rule_lines)
    }

    /// What the parser must say: the policy, or the line of the first mistake (None: the file
    /// as a whole), checked in the order the file's rules are documented in.
    fn expected(&self) -> Result<RetentionPolicy, Option<usize>> {
        let (_, top_lines, rule_lines) = self.render();
        let entry = |key: &str| self.top.iter().zip(&top_lines).find(|((k, _), _)| *k == key);
        let value = |key: &str| -> Result<Option<(u64, usize)>, Option<usize>> {
            match entry(key) {
                None => Ok(None),
                Some(((_, d), line)) => d.ns().map(|ns| Some((ns, *line))).ok_or(Some(*line)),
            }
        };
        let min = value("min_retention")?;
        let max = value("max_retention")?;
        if let (Some((min, _)), Some((max, line))) = (min, max) {
            if min > max {
                return Err(Some(line));
            }
        }
        let within = |ns: u64, line: usize| {
            if min.is_some_and(|(m, _)| ns < m) || max.is_some_and(|(m, _)| ns > m) {
                Err(Some(line))
            } else {
                Ok(ns)
            }
        };
        let default_ns = match value("retention")? {
            Some((ns, line)) => within(ns, line)?,
            None => return Err(None),
        };
        let mut rules: Vec<wormfs::core::retention::Rule> = Vec::new();
        for ((path, d, _), (path_line, retention_line)) in self.rules.iter().zip(rule_lines) {
            let prefix = RelPath::from_mount_path(path).map_err(|_| Some(path_line))?;
            if rules.iter().any(|r| r.prefix == prefix) {
                return Err(Some(path_line));
            }
            let ns = d.ns().ok_or(Some(retention_line))?;
            rules.push(wormfs::core::retention::Rule { prefix, retention_ns: within(ns, retention_line)? });
        }
        Ok(RetentionPolicy { default_ns, rules, min_ns: min.map(|m| m.0), max_ns: max.map(|m| m.0) })
    }
}

/// A file for config texts, one per test thread.
fn config_file(text: &[u8]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(format!("{:?}.toml", std::thread::current().id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Whatever the error, its line is one of the file's (or the line after its last).
fn check_config_error(path: &Path, text: &[u8], flag: Option<&str>) -> Result<(), TestCaseError> {
    if let Err(e) = wormfs::config::retention_policy(Some(path), flag, 1) {
        let lines = text.split(|b| *b == b'\n').count();
        if let Some(line) = e.line {
            prop_assert!((1..=lines).contains(&line), "line {} of a {}-line file: {}", line, lines, e);
        }
        prop_assert!(e.file == path || e.file == Path::new("--retention"));
        prop_assert!(!e.to_string().is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// A config made of entries parses to exactly the policy they say, or fails on the line of
    /// its first mistake; a `--retention` flag replaces the default.
    #[test]
    fn a_config_means_what_it_says(model in config_model(), flag in prop::option::weighted(0.2, duration())) {
        let (text, _, _) = model.render();
        let path = config_file(text.as_bytes());
        let got = wormfs::config::retention_policy(Some(&path), flag.as_ref().map(Duration::text).as_deref(), 1);
        let flag_ns = flag.as_ref().map(Duration::ns);
        match (model.expected(), got) {
            // A bad --retention is refused before the file is read.
            (_, got) if flag_ns == Some(None) => {
                prop_assert!(matches!(&got, Err(e) if e.file == Path::new("--retention")), "{:?} {:?}", flag, got)
            }
            (Ok(mut want), got) => {
                let outside = |ns: u64| want.min_ns.is_some_and(|m| ns < m) || want.max_ns.is_some_and(|m| ns > m);
                // A flag within the file's bounds replaces the default; one outside them is
                // taken as it is today, or might as well be refused.
                let free = matches!(flag_ns, Some(Some(ns)) if outside(ns)) && got.is_err();
                if let Some(Some(ns)) = flag_ns {
                    want.default_ns = ns;
                }
                if !free {
                    prop_assert_eq!(got.map_err(|e| e.to_string()), Ok(want), "{}", text);
                }
            }
            (Err(line), Err(e)) => prop_assert_eq!(e.line, line, "{}\n{}", e, text),
            (want, got) => prop_assert!(false, "expected {:?}, got {:?}\n{}", want, got, text),
        }
    }

    /// Mutated configs and raw bytes: never a panic, and an error's line is in the file.
    #[test]
    fn hostile_configs_never_panic(model in config_model(), ms in mutations(),
                                   raw in prop::collection::vec(any::<u8>(), 0..200),
                                   toml_ish in prop::string::string_regex("[a-z_=\"\\[\\]\\n #'{}.,0-9\u{e9}\u{1f4dc}\\\\-]{0,120}").unwrap(),
                                   flag in prop::option::of(prop::string::string_regex("(?s).{0,8}").unwrap())) {
        let (text, _, _) = model.render();
        for bytes in [mutated(text.as_bytes(), &ms), raw, toml_ish.into_bytes()] {
            let path = config_file(&bytes);
            check_config_error(&path, &bytes, flag.as_deref())?;
        }
    }

    /// Durations: any text is parsed or refused without a panic; a number and a unit mean
    /// exactly that many nanoseconds, or are refused as too long.
    #[test]
    fn durations_parse_exactly(d in duration(), raw in prop::string::string_regex("(?s).{0,16}").unwrap()) {
        let _ = parse_duration_ns(&raw);
        prop_assert_eq!(parse_duration_ns(&d.text()).ok(), d.ns(), "{:?}", d.text());
    }

    /// Dates: any text is parsed or refused without a panic; a date of any year is refused or
    /// read as that very instant (`rfc3339_ns` shows it back); every second since 1970 that
    /// `rfc3339_ns` can show parses back to itself.
    #[test]
    fn dates_parse_back_to_their_instants(ns in any::<u64>(),
                                          raw in prop::string::string_regex("(?s).{0,32}").unwrap(),
                                          y in prop_oneof![1970i64..3000, any::<i64>()], m in 1i64..=12, d in 1i64..=28,
                                          hh in 0i64..30, mm in 0i64..70, ss in 0i64..70) {
        let _ = parse_utc_ns(&raw);
        let date = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
        if let Ok(at) = parse_utc_ns(&format!("{date}Z")) {
            // (A leap second, :60, is read as the next minute's first.)
            prop_assert!(ss == 60 || rfc3339_ns(at).starts_with(&date), "{} read as {}", date, rfc3339_ns(at));
        }
        let secs = ns / NS_PER_SEC * NS_PER_SEC;
        let shown = rfc3339_ns(secs);
        let (date, time) = shown.split_once('T').unwrap();
        let time = &time[..8];
        prop_assert_eq!(parse_utc_ns(&format!("{date}T{time}Z")), Ok(secs));
        prop_assert_eq!(parse_utc_ns(&format!("{date} {time}")), Ok(secs));
    }
}

// ---------------------------------------------------------------------------------------------
// The control socket: one JSON request line from a client.

/// DATA_DIR for admin requests: a file, a directory and a file in it.
fn admin_data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/x.log"), b"y").unwrap();
        dir
    })
    .path()
}

fn p(text: &str) -> RelPath {
    RelPath::parse(OsStr::new(text)).unwrap()
}

/// A fresh chain as an admin finds it: mounted, /a.log and /app/x.log created (retained for
/// 1000 s), a hold on /app.
fn admin_ledger() -> Ledger {
    let ledger = Ledger::open(
        Arc::new(MemoryStore::new()),
        SigningKey::from_bytes(&[3; 32]),
        Arc::new(SystemClock),
        RetentionPolicy::uniform(1000 * NS_PER_SEC),
    )
    .unwrap();
    ledger.mount("wormfs fuzz", admin_data_dir().as_os_str().as_bytes(), Vec::new()).unwrap();
    ledger.create(&p("a.log"), 0o100640, 0, 0).unwrap();
    ledger.create(&p("app/x.log"), 0o100640, 0, 0).unwrap();
    ledger.hold(&p("app"), true, "case 1", 0, true).unwrap();
    ledger
}

fn json_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        boundary_u64().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![-1.0, 0.5, 1e300, -0.0, 1.8446744073709552e19]).prop_map(Value::from),
        text().prop_map(Value::from),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    json_scalar()
        .prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::vec(("[a-z_]{1,8}", inner), 0..3)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

fn admin_path() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "/", "/a.log", "/app", "/app/x.log", "/nope.log", "a.log", "app", "/../etc", "//a.log", "/a.log/",
            "/app/", "", "/a\u{0}b", "/app/x.log/..", "///",
        ])
        .prop_map(Value::from),
        1 => text().prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

fn reason() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(vec!["subpoena 42", "", " ", "\t\n", "x", "case 1"]).prop_map(Value::from),
        2 => text().prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

fn ns_value() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => boundary_u64().prop_map(Value::from),
        1 => (0u64..5000).prop_map(|s| Value::from(s * NS_PER_SEC)),
        1 => Just(Value::from(u64::MAX)),
        1 => json_scalar(),
    ]
    .boxed()
}

/// A field of a request: mostly of the right type, sometimes of another or missing.
fn request_field(name: &'static str, right: BoxedStrategy<Value>) -> BoxedStrategy<Option<(String, Value)>> {
    prop_oneof![
        16 => right.prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .prop_map(move |v| v.map(|v| (name.to_string(), v)))
    .boxed()
}

/// A request line as a client might send it: the fields of a request (sometimes of the wrong
/// type, missing, repeated, or with others), other JSON, or text that is no JSON.
fn request_line() -> BoxedStrategy<String> {
    let op = prop_oneof![
        16 => prop::sample::select(vec!["hold_set", "hold_clear", "retention_extend"]).prop_map(Value::from),
        1 => prop::sample::select(vec!["HoldSet", "hold", "", "retention_extend "]).prop_map(Value::from),
        1 => json_scalar(),
    ]
    .boxed();
    let ns = || prop_oneof![ns_value(), Just(Value::Null)].boxed();
    let fields = (
        request_field("op", op),
        request_field("path", admin_path()),
        request_field("reason", reason()),
        prop::option::of(request_field("until_ns", ns())),
        prop::option::of(request_field("by_ns", ns())),
        prop::collection::vec(
            (prop::sample::select(vec!["extra", "uid", "extra", "uid", "op", "path"]), json_value()),
            0..2,
        ),
    );
    let object =
        (fields, any::<u64>(), any::<bool>()).prop_map(|((op, path, reason, until, by, extra), turn, spaced)| {
            let is_extend = op.as_ref().is_some_and(|(_, v)| v == "retention_extend");
            let mut fields: Vec<(String, Value)> = [op, path].into_iter().flatten().collect();
            if is_extend {
                fields.extend([until.flatten(), by.flatten()].into_iter().flatten());
            } else {
                fields.extend(reason);
            }
            fields.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
            let n = fields.len().max(1);
            fields.rotate_left(turn as usize % n);
            let sep = if spaced { ", " } else { "," };
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v)).collect();
            format!("{{{}}}", body.join(sep))
        });
    prop_oneof![
        8 => object,
        1 => json_value().prop_map(|v| v.to_string()),
        1 => prop::string::string_regex("(?s).{0,40}").unwrap(),
    ]
    .boxed()
}

/// What the admin commands must do on `admin_ledger()`: the record they append, or None when
/// they refuse. Worked out from the rules (holds need a reason and, to be set, an existing
/// path; only a hold in force is cleared; retention is only extended, on a known file).
fn expected_admin(ledger: &Ledger, request: &Request) -> Option<Payload> {
    let existing = [p("a.log"), p("app"), p("app/x.log")];
    match request {
        Request::HoldSet { path, reason } | Request::HoldClear { path, reason } => {
            let set = matches!(request, Request::HoldSet { .. });
            let prefix = RelPath::from_mount_path(path).ok()?;
            let allowed = !reason.trim().is_empty()
                && if set { prefix.is_root() || existing.contains(&prefix) } else { prefix == p("app") };
            allowed.then(|| Payload::Hold { prefix, set, reason: reason.clone(), uid: 0 })
        }
        Request::RetentionExtend { path, until_ns, by_ns } => {
            let file = RelPath::from_mount_path(path).ok()?;
            if file != p("a.log") && file != p("app/x.log") {
                return None;
            }
            let before = ledger.file(&file).unwrap().unwrap().retain_until_ns;
            let requested = match (until_ns, by_ns) {
                (Some(until), _) => *until,
                (None, Some(by)) => before.saturating_add(*by),
                (None, None) => before,
            };
            (requested >= before).then_some(Payload::Retention { path: file, retain_until_ns: requested, uid: 0 })
        }
        // `request_line` makes none of these (tests/archive.rs drives them against real S3 uploads).
        Request::Archived { .. } | Request::Prune { .. } | Request::Metrics => None,
    }
}

proptest! {
    #![proptest_config(config())]

    /// The daemon's request parser takes any line without a panic; a request it understands,
    /// carried out, appends exactly the record the rules call for, or nothing when refused.
    #[test]
    fn admin_requests_do_what_the_rules_say(line in request_line(), ms in prop::option::weighted(0.15, mutations())) {
        let line = match &ms {
            Some(ms) => mutated_text(&line, ms),
            None => line,
        };
        let Ok(request) = serde_json::from_str::<Request>(&line) else { return Ok(()) };
        let fs = WormFs::new(admin_data_dir(), Arc::new(admin_ledger())).unwrap();
        let ledger = fs.ledger();
        let before = ledger.head().unwrap().seq;
        let want = expected_admin(ledger, &request);
        let got = admin::execute(&fs, admin_data_dir(), 0, &request);
        let head = ledger.head().unwrap().seq;
        match (want, got) {
            (Some(payload), Ok(message)) => {
                prop_assert_eq!(head, before + 1);
                let bytes = ledger.store().record_bytes(head).unwrap().unwrap();
                prop_assert_eq!(Record::decode(&bytes).unwrap().fields.payload, payload);
                let names_it = format!("(record {})", head);
                prop_assert!(message.ends_with(&names_it), "{}", message);
            }
            (None, Err(e)) => {
                prop_assert_eq!(head, before, "a refused request appended a record");
                prop_assert!(!e.to_string().is_empty());
            }
            (want, got) => prop_assert!(false, "{request:?}: expected {want:?}, got {got:?}"),
        }
    }
}

/// A daemon's control socket over `admin_ledger()`, served for the rest of the test process.
fn control_socket() -> &'static Path {
    static SOCKET: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SOCKET
        .get_or_init(|| {
            let state = tempfile::tempdir().unwrap();
            let dir = wormfs::state_dir::StateDir::new(state.path());
            let fs = WormFs::new(admin_data_dir(), Arc::new(admin_ledger())).unwrap();
            let path = wormfs::control::serve(&dir, Arc::new(fs), admin_data_dir().to_path_buf()).unwrap();
            (state, path)
        })
        .1
}

/// What a client sends on the control socket.
fn client_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => (request_line(), prop_oneof![Just(b"\n".to_vec()), Just(Vec::new()), prop::collection::vec(any::<u8>(), 0..20)])
            .prop_map(|(line, tail)| [line.into_bytes(), tail].concat()),
        3 => (request_line(), mutations()).prop_map(|(line, ms)| mutated(format!("{line}\n").as_bytes(), &ms)),
        2 => prop::collection::vec(any::<u8>(), 0..100),
        // Longer than the daemon reads (64 KiB): cut off, maybe inside a character.
        1 => (65_530usize..65_545, prop::sample::select(vec![&b"x"[..], "\u{e9}".as_bytes(), b" "]), any::<bool>())
            .prop_map(|(n, fill, newline)| {
                let mut out = b"{\"op\":\"hold_set\",\"path\":\"/\",\"reason\":\"".to_vec();
                while out.len() < n {
                    out.extend_from_slice(fill);
                }
                out.extend_from_slice(b"\"}");
                if newline {
                    out.push(b'\n');
                }
                out
            }),
    ].boxed()
}

proptest! {
    #![proptest_config(config())]

    /// A client of the live control socket, sending anything: the daemon answers one JSON
    /// response line (a request it cannot read as text gets none), "bad request" for anything
    /// that is not a request, and keeps serving.
    #[test]
    fn the_control_socket_answers_anything(bytes in client_bytes()) {
        use std::os::unix::net::UnixStream;
        let mut stream = UnixStream::connect(control_socket()).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        // The daemon may stop reading (and close) before a long request is all sent.
        let _ = stream.write_all(&bytes);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);

        if !nix::unistd::geteuid().is_root() {
            let response: Response = serde_json::from_slice(&answer).unwrap();
            prop_assert!(!response.ok && response.message.contains("permission denied"));
            return Ok(());
        }
        // What the daemon reads: up to 64 KiB, up to and with the first newline.
        let read = &bytes[..bytes.len().min(64 * 1024)];
        let line = match read.iter().position(|b| *b == b'\n') {
            Some(i) => &read[..=i],
            None => read,
        };
        match std::str::from_utf8(line) {
            Err(_) => prop_assert!(answer.is_empty(), "an answer to a request that is not text: {:?}",
                                   String::from_utf8_lossy(&answer)),
            Ok(text) => {
                prop_assert!(answer.ends_with(b"\n") && answer.iter().filter(|b| **b == b'\n').count() == 1,
                             "not one answer line: {:?}", String::from_utf8_lossy(&answer));
                let response: Response = serde_json::from_slice(&answer).unwrap();
                if serde_json::from_str::<Request>(text).is_err() {
                    prop_assert!(!response.ok && response.message.starts_with("bad request: "), "{:?}", response);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints, signed notes, vkeys.

/// A change to a note line by line, so mutations reach past the note's own syntax.
#[derive(Debug, Clone)]
enum LineMutation {
    Swap(Index, Index),
    Duplicate(Index),
    Delete(Index),
    Insert(Index, String),
    Replace(Index, String),
}

/// Lines a forger might put in a note.
fn forged_line() -> BoxedStrategy<String> {
    let s = signed();
    let log_line = String::from_utf8(s.cp.signatures[0].to_bytes()).unwrap().trim_end().to_string();
    let body: Vec<String> = s.cp.body().lines().map(String::from).collect();
    prop_oneof![
        Just(String::new()),
        Just(log_line.clone()),
        Just(format!("{} extension", body[0])),
        prop::sample::select(vec!["8", "07", "+7", " 7", "7 ", "18446744073709551616", "-1"]).prop_map(String::from),
        Just(format!("{}=", body[2])),
        (key_name(), prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(name, sig)| format!("\u{2014} {name} {}", base64_encode(&sig))),
        (any::<u32>(), signature_bytes()).prop_map(move |(id, sig)| {
            let mut raw = id.to_be_bytes().to_vec();
            raw.extend_from_slice(&sig);
            format!("\u{2014} {ORIGIN} {}", base64_encode(&raw))
        }),
        text(),
    ]
    .boxed()
}

fn line_mutation() -> BoxedStrategy<LineMutation> {
    prop_oneof![
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineMutation::Swap(a, b)),
        any::<Index>().prop_map(LineMutation::Duplicate),
        any::<Index>().prop_map(LineMutation::Delete),
        (any::<Index>(), forged_line()).prop_map(|(i, l)| LineMutation::Insert(i, l)),
        (any::<Index>(), forged_line()).prop_map(|(i, l)| LineMutation::Replace(i, l)),
    ]
    .boxed()
}

fn apply_lines(text: &[u8], ms: &[LineMutation]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
    for m in ms {
        let n = lines.len();
        match m {
            LineMutation::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            LineMutation::Duplicate(i) => {
                let at = i.index(n);
                let line = lines[at].clone();
                lines.insert(at, line);
            }
            LineMutation::Delete(i) if n > 1 => {
                lines.remove(i.index(n));
            }
            LineMutation::Insert(i, line) => lines.insert(i.index(n + 1), line.clone()),
            LineMutation::Replace(i, line) => lines[i.index(n)] = line.clone(),
            _ => {}
        }
    }
    lines.join("\n").into_bytes()
}

/// A note's bytes after line mutations, then byte mutations (either may be empty).
fn forged_note() -> BoxedStrategy<(Vec<LineMutation>, Vec<Mutation>)> {
    prop_oneof![
        (prop::collection::vec(line_mutation(), 1..3), Just(Vec::new())),
        (Just(Vec::new()), mutations()),
        (prop::collection::vec(line_mutation(), 1..3), mutations()),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    /// A checkpoint of any size and root, signed by any key under any origin, reads back as
    /// itself, and only with its own origin and key.
    #[test]
    fn a_checkpoint_reads_back_as_signed(origin in key_name(), size in boundary_u64(), root in hash(),
                                         key in signing_key(), other in signing_key()) {
        let signer = LogSigner::new(origin.clone(), key.clone());
        let body = format!("{origin}\n{size}\n{}\n", base64_encode(&root));
        let note = checkpoint::sign_note(&signer, &body).unwrap();
        let cp = checkpoint::read(&note, &origin, &key.verifying_key(), &[]).unwrap();
        prop_assert_eq!((&cp.origin, cp.size, cp.root), (&origin, size, root));
        prop_assert_eq!(cp.body(), body);
        prop_assert_eq!(cp.to_note(), note.clone());
        let another = format!("{origin}x");
        prop_assert!(checkpoint::read(&note, &another, &key.verifying_key(), &[]).is_err());
        if other != key {
            prop_assert!(checkpoint::read(&note, &origin, &other.verifying_key(), &[]).is_err());
        }
    }

    /// A forged or garbled checkpoint: never a panic, and whatever reads as signed by the log
    /// (and cosigned by the witness, when required) says the genuine size and root.
    #[test]
    fn a_forged_checkpoint_never_reads_as_another(forgery in forged_note(),
                                                  raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let s = signed();
        let (lines, bytes) = forgery;
        let note = mutated(&apply_lines(&s.note, &lines), &bytes);
        let key = s.log_key.verifying_key();
        for text in [&note, &raw] {
            for required in [&[][..], std::slice::from_ref(&s.witness)] {
                if let Ok(cp) = checkpoint::read(text, ORIGIN, &key, required) {
                    prop_assert_eq!((cp.size, cp.root), (s.cp.size, s.cp.root), "{}", String::from_utf8_lossy(text));
                    prop_assert!(cp.signatures.iter().any(|sig| sig.name() == ORIGIN));
                }
            }
        }
    }

    /// Any text a note can carry, signed, reads back as itself; a note that cannot carry it is
    /// refused when signing; a forged note never reads as another text.
    #[test]
    fn a_signed_note_reads_back_and_resists_forgery(text in prop::string::string_regex("(?s)([^\u{0}-\u{8}]{0,20}\n){0,4}").unwrap(),
                                                    raw_text in prop::string::string_regex("(?s).{0,30}").unwrap(),
                                                    forgery in forged_note()) {
        let s = signed();
        let signer = LogSigner::new(ORIGIN.into(), s.log_key.clone());
        let key = s.log_key.verifying_key();
        for text in [&text, &raw_text] {
            let carriable = text.ends_with('\n') && !text.chars().any(|c| c < ' ' && c != '\n');
            match checkpoint::sign_note(&signer, text) {
                Ok(note) => {
                    prop_assert!(carriable, "signed a note text it cannot carry: {:?}", text);
                    let back = checkpoint::read_note(&note, ORIGIN, &key);
                    prop_assert_eq!(back.as_ref(), Ok(text));
                    let (lines, bytes) = &forgery;
                    let forged = mutated(&apply_lines(&note, lines), bytes);
                    if let Ok(said) = checkpoint::read_note(&forged, ORIGIN, &key) {
                        prop_assert_eq!(&said, text, "{}", String::from_utf8_lossy(&forged));
                    }
                }
                Err(_) => prop_assert!(!carriable, "refused to sign {:?}", text),
            }
        }
    }

    /// Cosignatures: a witness' genuine line verifies, and once added leaves a checkpoint that
    /// reads with that witness required; a changed line verifies only if it is the same
    /// signature; a line of any shape never panics.
    #[test]
    fn a_cosignature_verifies_only_as_given(name in key_name(), wkey in signing_key(), time in boundary_u64(),
                                            ms in mutations(), raw in text()) {
        let s = signed();
        let witness = WitnessKey::parse(&witness_vkey(&name, &wkey.verifying_key())).unwrap();
        prop_assert_eq!(&witness.name, &name);
        let line = cosignature_line(&s.cp, &name, &wkey, time);
        prop_assert!(checkpoint::cosignature_verifies(&s.cp, &witness, &line));
        let mut cp = s.cp.clone();
        cp.add_cosignature(&line).unwrap();
        let back = checkpoint::read(&cp.to_note(), ORIGIN, &s.log_key.verifying_key(), std::slice::from_ref(&witness));
        prop_assert!(back.is_ok(), "{:?}", back);
        prop_assert!(!checkpoint::cosignature_verifies(&s.cp, &s.witness, &line) || wkey == s.witness_key);

        let genuine = signed_note::Signature::from_bytes(line.trim_end().as_bytes()).unwrap();
        for changed in [mutated_text(&line, &ms), raw] {
            if checkpoint::cosignature_verifies(&s.cp, &witness, &changed) {
                let sig = signed_note::Signature::from_bytes(changed.trim_end_matches('\n').as_bytes()).unwrap();
                prop_assert_eq!(sig, genuine.clone(), "{:?}", changed);
            }
            let mut cp = s.cp.clone();
            let _ = cp.add_cosignature(&changed);
        }
    }

    /// vkeys (checkpoint and trust anchor keys, witness keys) and public keys: each reads back
    /// as made, a changed one reads as the same key or not at all, any text never panics.
    #[test]
    fn vkeys_read_back_and_resist_change(name in key_name(), key in signing_key(), ms in mutations(),
                                         raw in prop::string::string_regex("(?s).{0,80}").unwrap(),
                                         witnesses in prop::collection::vec((any::<bool>(), mutations()), 0..4)) {
        let public = key.verifying_key();
        let log = vkey(&name, &public);
        let wit = witness_vkey(&name, &public);
        prop_assert_eq!(parse_vkey(&log), Some((name.clone(), public)));
        prop_assert_eq!(parse_public(&log), Some(public));
        prop_assert_eq!(parse_public(&hex(public.as_bytes())), Some(public));
        prop_assert_eq!(parse_public(&format!(" {}\n", hex(public.as_bytes()))), Some(public));
        let w = WitnessKey::parse(&wit).unwrap();
        prop_assert_eq!((&w.name, w.key, &w.vkey), (&name, public, &wit));
        prop_assert!(parse_vkey(&wit).is_none(), "a witness key taken as a log key");
        prop_assert!(WitnessKey::parse(&log).is_none(), "a log key taken as a witness key");

        // vkeys carry a checksum of name and key: a changed one is the same key or none. (Hex
        // carries none: a changed digit is another key; see `a_public_key_has_one_hex_spelling`.)
        let _ = parse_public(&mutated_text(&hex(public.as_bytes()), &ms));
        for text in [mutated_text(&log, &ms), mutated_text(&wit, &ms), raw] {
            if let Some((n, k)) = parse_vkey(&text) {
                prop_assert_eq!((n, k), (name.clone(), public), "{:?}", text);
            }
            if let Some(w) = WitnessKey::parse(&text) {
                prop_assert_eq!((w.name, w.key), (name.clone(), public), "{:?}", text);
            }
            if let Some(k) = parse_public(&text) {
                prop_assert!(k == public || from_hex(&text).is_some(), "{:?}", text);
            }
        }

        // A list of witness keys: all of them, or the first that is none.
        let list: Vec<String> =
            witnesses.iter().map(|(good, ms)| if *good { wit.clone() } else { mutated_text(&wit, ms) }).collect();
        match checkpoint::parse_witness_keys(&list) {
            Ok(keys) => {
                prop_assert_eq!(keys.len(), list.len());
                prop_assert!(keys.iter().all(|k| k.key == public && k.name == name));
            }
            Err(bad) => {
                let first = list.iter().find(|v| WitnessKey::parse(v).is_none());
                prop_assert_eq!(Some(&bad), first);
            }
        }
    }

    /// A public key given as hex (the trust anchor file, `--key`) has one spelling: whatever
    /// hex text reads as a key is that key's hex (any case, surrounding space).
    #[test]
    fn a_public_key_has_one_hex_spelling(key in signing_key(), ms in mutations(), pair in any::<Index>(),
                                         sign in prop::sample::select(vec!['+', '-'])) {
        let shown = hex(key.verifying_key().as_bytes());
        // A byte pair written with a sign, as `u8::from_str_radix` would read it.
        let at = pair.index(32) * 2;
        let signed = format!("{}{sign}{}", &shown[..at], &shown[at + 1..]);
        for text in [mutated_text(&shown, &ms), shown.to_uppercase(), signed] {
            if let Some(k) = parse_public(&text) {
                prop_assert_eq!(hex(k.as_bytes()), text.trim().to_ascii_lowercase(), "{:?} read as a key", text);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Receipts.

const RECEIPT_ORIGIN: &str = "wormfs.test/receipt";

/// A genuine receipt for /logs/b.log (three seals, a truncate, a rename, a seal), the file's
/// bytes, and the checkpoint key.
struct Genuine {
    receipt: Value,
    file: PathBuf,
    key: VerifyingKey,
    checked: receipt::Checked,
    _dir: tempfile::TempDir,
}

use wormfs::receipt;

fn genuine_receipt() -> &'static Genuine {
    static GENUINE: OnceLock<Genuine> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let store = Arc::new(MemoryStore::new());
        let ledger = Ledger::open(
            store.clone(),
            SigningKey::from_bytes(&[1; 32]),
            Arc::new(SystemClock),
            RetentionPolicy::uniform(0),
        )
        .unwrap();
        ledger.mount("t", b"/d", Vec::new()).unwrap();
        let (a, b) = (p("a.log"), p("logs/b.log"));
        ledger.create(&a, 0o100644, 0, 0).unwrap();
        let bytes = b"aaaabbbbcccc";
        for (start, end) in [(0, 4), (4, 8), (8, 12)] {
            ledger.seal(&a, start, end, sha256(&bytes[start as usize..end as usize]), SealKind::Written).unwrap();
        }
        ledger.truncate(&a, 12, 6, false, (4, sha256(&bytes[4..6]))).unwrap();
        ledger.rename(&a, &b, false, false, false).unwrap();
        ledger.seal(&b, 6, 10, sha256(b"dddd"), SealKind::Written).unwrap();
        ledger.create(&p("other.log"), 0o100644, 0, 0).unwrap();
        let key = SigningKey::from_bytes(&[2; 32]);
        let signer = LogSigner::new(RECEIPT_ORIGIN.into(), key.clone());
        let cp = checkpoint::sign(store.as_ref(), &signer).unwrap();
        let receipt = receipt::make(store.as_ref(), &b, &cp, &signer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.log");
        std::fs::write(&file, b"aaaabbdddd").unwrap();
        let text = serde_json::to_vec(&receipt).unwrap();
        let checked = receipt::check(&file, &text, RECEIPT_ORIGIN, &key.verifying_key(), &[]).unwrap();
        assert_eq!(checked.size, 10);
        Genuine { receipt, file, key: key.verifying_key(), checked, _dir: dir }
    })
}

/// A change to a receipt's JSON, at a place picked level by level.
#[derive(Debug, Clone)]
enum JsonMutation {
    Remove(Vec<Index>),
    Replace(Vec<Index>, Value),
    /// A number one off, a string's bytes mutated, a base64 value's decoded bytes mutated
    /// (a record or a proof hash changed, still valid base64).
    Nudge(Vec<Index>, i8, Vec<Mutation>),
    /// An array's elements swapped or one repeated.
    Swap(Vec<Index>, Index, Index),
    Repeat(Vec<Index>, Index),
    /// Another field added to an object.
    Add(Vec<Index>, String, Value),
}

fn json_place() -> BoxedStrategy<Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..5).boxed()
}

fn json_mutation() -> BoxedStrategy<JsonMutation> {
    prop_oneof![
        1 => json_place().prop_map(JsonMutation::Remove),
        1 => (json_place(), json_value()).prop_map(|(at, v)| JsonMutation::Replace(at, v)),
        4 => (json_place(), prop_oneof![Just(1i8), Just(-1)], mutations()).prop_map(|(at, d, ms)| JsonMutation::Nudge(at, d, ms)),
        1 => (json_place(), any::<Index>(), any::<Index>()).prop_map(|(at, a, b)| JsonMutation::Swap(at, a, b)),
        1 => (json_place(), any::<Index>()).prop_map(|(at, i)| JsonMutation::Repeat(at, i)),
        1 => (json_place(), prop::sample::select(vec!["note", "format", "seq", "proof", "size"]), json_value())
            .prop_map(|(at, k, v)| JsonMutation::Add(at, k.to_string(), v)),
    ]
    .boxed()
}

/// The value at `at`, following each index into an object's fields or an array's elements
/// while there are any.
fn place<'a>(mut v: &'a mut Value, at: &[Index]) -> &'a mut Value {
    for i in at {
        let n = match &*v {
            Value::Object(o) => o.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if n == 0 {
            break;
        }
        let k = i.index(n);
        v = match v {
            Value::Object(o) => o.values_mut().nth(k).unwrap(),
            Value::Array(a) => &mut a[k],
            _ => unreachable!("only objects and arrays have parts"),
        };
    }
    v
}

fn apply_json(doc: &mut Value, m: &JsonMutation) {
    match m {
        JsonMutation::Remove(at) => {
            let (last, parent) = at.split_last().map_or((None, &at[..]), |(l, p)| (Some(l), p));
            match (place(doc, parent), last) {
                (Value::Object(o), Some(i)) if !o.is_empty() => {
                    let k = o.keys().nth(i.index(o.len())).unwrap().clone();
                    o.remove(&k);
                }
                (Value::Array(a), Some(i)) if !a.is_empty() => {
                    a.remove(i.index(a.len()));
                }
                _ => {}
            }
        }
        JsonMutation::Replace(at, v) => *place(doc, at) = v.clone(),
        JsonMutation::Nudge(at, d, ms) => {
            let v = place(doc, at);
            match v {
                Value::Number(n) => {
                    if let Some(u) = n.as_u64() {
                        *v = Value::from(u.wrapping_add_signed(i64::from(*d)));
                    }
                }
                Value::String(s) => {
                    *v = Value::from(match base64_decode(s) {
                        Some(bytes) => base64_encode(&mutated(&bytes, ms)),
                        None => mutated_text(s, ms),
                    });
                }
                _ => {}
            }
        }
        JsonMutation::Swap(at, a, b) => {
            if let Value::Array(arr) = place(doc, at) {
                if !arr.is_empty() {
                    let n = arr.len();
                    arr.swap(a.index(n), b.index(n));
                }
            }
        }
        JsonMutation::Repeat(at, i) => {
            if let Value::Array(arr) = place(doc, at) {
                if !arr.is_empty() {
                    let k = i.index(arr.len());
                    let e = arr[k].clone();
                    arr.insert(k, e);
                }
            }
        }
        JsonMutation::Add(at, k, v) => {
            if let Value::Object(o) = place(doc, at) {
                o.insert(k.clone(), v.clone());
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// A forged receipt (its JSON changed anywhere: records, proofs, the checkpoint, the
    /// statement, sizes, paths; then maybe its bytes): never a panic, and whatever checks proves
    /// exactly what the genuine one proves. None checks with a witness that never cosigned.
    #[test]
    fn a_forged_receipt_proves_nothing_else(ms in prop::collection::vec(json_mutation(), 1..4),
                                            bytes in prop::option::weighted(0.2, mutations()),
                                            raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let g = genuine_receipt();
        let mut doc = g.receipt.clone();
        for m in &ms {
            apply_json(&mut doc, m);
        }
        let mut text = serde_json::to_vec(&doc).unwrap();
        if let Some(bytes) = &bytes {
            text = mutated(&text, bytes);
        }
        let s = signed();
        for input in [&text, &raw] {
            match receipt::check(&g.file, input, RECEIPT_ORIGIN, &g.key, &[]) {
                Ok(c) => {
                    prop_assert_eq!((&c.path, c.size, &c.records), (&g.checked.path, g.checked.size, &g.checked.records));
                    prop_assert_eq!((c.checkpoint.size, c.checkpoint.root), (g.checked.checkpoint.size, g.checked.checkpoint.root));
                }
                Err(why) => prop_assert!(!why.is_empty()),
            }
            let witnessed = receipt::check(&g.file, input, RECEIPT_ORIGIN, &g.key, std::slice::from_ref(&s.witness));
            prop_assert!(witnessed.is_err(), "a receipt checked with a witness that never cosigned it");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Merkle proofs.

/// A change to a proof or to what it is checked against.
#[derive(Debug, Clone)]
enum ProofMutation {
    FlipHash(Index, u8),
    Drop(Index),
    Add(Index, Hash),
    Repeat(Index),
    Swap(Index, Index),
    /// The leaf's index (inclusion) or the old size (consistency), moved by a non-zero delta.
    MoveFirst(i64),
    /// The tree size (inclusion) or the new size (consistency), moved by a non-zero delta.
    MoveSize(i64),
    FlipRoot(u8),
    /// The old root (consistency) or the record's bytes (inclusion).
    FlipOther(u8),
}

fn delta() -> BoxedStrategy<i64> {
    prop_oneof![2 => 1i64..=3, 2 => -3i64..=-1, 1 => any::<i64>().prop_map(|d| if d == 0 { 1 } else { d })].boxed()
}

fn proof_mutation() -> BoxedStrategy<ProofMutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ProofMutation::FlipHash(i, b)),
        1 => any::<Index>().prop_map(ProofMutation::Drop),
        1 => (any::<Index>(), hash()).prop_map(|(i, h)| ProofMutation::Add(i, h)),
        1 => any::<Index>().prop_map(ProofMutation::Repeat),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| ProofMutation::Swap(a, b)),
        2 => delta().prop_map(ProofMutation::MoveFirst),
        2 => delta().prop_map(ProofMutation::MoveSize),
        1 => any::<u8>().prop_map(ProofMutation::FlipRoot),
        1 => any::<u8>().prop_map(ProofMutation::FlipOther),
    ]
    .boxed()
}

/// The root of the real tree's first `size` leaves, for sizes it has.
fn real_root(size: u64) -> Option<Hash> {
    (size <= MAX_LEAVES).then(|| merkle::root(&tree().store, size).unwrap())
}

/// A size moved by `d`, kept to sizes the real tree has (1 and up: `low`).
fn moved(size: u64, d: i64, low: u64) -> u64 {
    let span = MAX_LEAVES - low + 1;
    low + (size - low).wrapping_add_signed(d).rem_euclid(span)
}

/// A proof statement after a mutation: `first` is the leaf's seq (inclusion) or the old size
/// (consistency), `size` the tree's (new) size, `roots` the (new) root and the other value (the
/// record's bytes, or the old root). A moved size takes the real tree's root of that size
/// with it: the two come signed together in a checkpoint, and a proof shows nothing about a
/// size apart from its root. Inclusion moves `first` alone (the same root), consistency moves
/// the old root with the old size.
#[allow(clippy::too_many_arguments)]
fn apply_proof(
    m: &ProofMutation,
    inclusion: bool,
    proof: &mut Vec<Hash>,
    first: &mut u64,
    size: &mut u64,
    root: &mut Hash,
    other: &mut Vec<u8>,
) {
    let n = proof.len();
    match m {
        ProofMutation::FlipHash(i, bit) if n > 0 => proof[i.index(n)][usize::from(*bit) % 32] ^= 1 << (bit % 8),
        ProofMutation::Drop(i) if n > 0 => {
            proof.remove(i.index(n));
        }
        ProofMutation::Add(i, h) => proof.insert(i.index(n + 1), *h),
        ProofMutation::Repeat(i) if n > 0 => {
            let k = i.index(n);
            proof.insert(k, proof[k]);
        }
        ProofMutation::Swap(a, b) if n > 1 => proof.swap(a.index(n), b.index(n)),
        ProofMutation::MoveFirst(d) if inclusion => *first = first.wrapping_add_signed(*d),
        ProofMutation::MoveFirst(d) => {
            *first = moved(*first, *d, 0);
            *other = real_root(*first).unwrap().to_vec();
        }
        ProofMutation::MoveSize(d) => {
            *size = moved(*size, *d, 1);
            *root = real_root(*size).unwrap();
        }
        ProofMutation::FlipRoot(bit) => root[usize::from(*bit) % 32] ^= 1 << (bit % 8),
        ProofMutation::FlipOther(bit) if !other.is_empty() => {
            let k = usize::from(*bit) % other.len();
            other[k] ^= 1 << (bit % 8);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(config())]

    /// Proof checks take anything: any sizes, indexes, roots and hash lists, without a panic,
    /// and never accept what cannot be (a leaf outside its tree, an old tree larger than the
    /// new, more hashes than any tree needs).
    #[test]
    fn proof_checks_take_anything(proof in prop::collection::vec(hash(), 0..140), size in boundary_u64(),
                                  seq in boundary_u64(), old in boundary_u64(), root in hash(), other in hash(),
                                  bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        if merkle::check_inclusion(&proof, size, &root, seq, &bytes) {
            prop_assert!(seq >= 1 && seq <= size && proof.len() <= 64);
        }
        if merkle::check_consistency(&proof, old, &other, size, &root) {
            prop_assert!(old <= size && proof.len() <= 128);
        }
        // The same with the proof of a real tree, at sizes and indexes it is not for.
        let t = tree();
        let real = merkle::inclusion_proof(&t.store, MAX_LEAVES, 1 + seq % MAX_LEAVES).unwrap();
        let _ = merkle::check_inclusion(&real, size, &root, seq, &bytes);
        let _ = merkle::check_consistency(&real, old, &other, size, &root);
    }

    /// Inclusion proofs, against the real tree's own (made by tlog_tiles): a statement (this
    /// record at this seq in the tree of this size and root) checks exactly when its proof is
    /// the tree's proof and the statement is true, whatever was changed in it.
    #[test]
    fn an_inclusion_proof_holds_for_its_record_only(size in 1..=MAX_LEAVES, leaf in any::<Index>(),
                                                    ms in prop::collection::vec(proof_mutation(), 0..3)) {
        let t = tree();
        let mut seq = leaf.index(size as usize) as u64 + 1;
        let mut size = size;
        let mut proof = merkle::inclusion_proof(&t.store, size, seq).unwrap();
        let mut root = real_root(size).unwrap();
        let mut bytes = t.leaves[seq as usize - 1].clone();
        for m in &ms {
            apply_proof(m, true, &mut proof, &mut seq, &mut size, &mut root, &mut bytes);
        }
        let true_statement = (1..=size).contains(&seq)
            && Some(root) == real_root(size)
            && bytes == t.leaves[seq as usize - 1]
            && proof == merkle::inclusion_proof(&t.store, size, seq).unwrap();
        prop_assert_eq!(merkle::check_inclusion(&proof, size, &root, seq, &bytes), true_statement,
                        "seq {} in {}, proof of {} hashes", seq, size, proof.len());
    }

    /// Consistency proofs, against the real tree's own: a statement (the tree of old size and
    /// root is a prefix of the tree of new size and root) checks exactly when its proof is the
    /// tree's proof and both roots are the real ones, or the statement needs no proof (the old
    /// tree is empty, or the same tree).
    #[test]
    fn a_consistency_proof_holds_for_its_trees_only(new in 1..=MAX_LEAVES, old in any::<Index>(),
                                                    ms in prop::collection::vec(proof_mutation(), 0..3)) {
        let t = tree();
        let (mut old, mut new) = (old.index(new as usize + 1) as u64, new);
        let mut proof = merkle::consistency_proof(&t.store, old, new).unwrap();
        let mut old_root = real_root(old).unwrap().to_vec();
        let mut new_root = real_root(new).unwrap();
        for m in &ms {
            apply_proof(m, false, &mut proof, &mut old, &mut new, &mut new_root, &mut old_root);
        }
        let old_root: Hash = old_root.try_into().unwrap();
        let holds = if old > new {
            false
        } else if old == 0 {
            proof.is_empty() && old_root == EMPTY_ROOT
        } else if old == new {
            proof.is_empty() && old_root == new_root
        } else {
            Some(old_root) == real_root(old)
                && Some(new_root) == real_root(new)
                && proof == merkle::consistency_proof(&t.store, old, new).unwrap()
        };
        prop_assert_eq!(merkle::check_consistency(&proof, old, &old_root, new, &new_root), holds,
                        "{} -> {}, proof of {} hashes", old, new, proof.len());
    }
}

// ---------------------------------------------------------------------------------------------
// A witness' answers.

/// How a fake witness frames its answer.
#[derive(Debug, Clone)]
enum Framing {
    /// Content-Length, right or off by some bytes.
    Length(i8),
    /// No length: the body runs to the end.
    ToEnd,
    /// Chunked, in chunks of these sizes (the last repeated), each size maybe lying.
    Chunked(Vec<usize>, Option<String>),
}

/// What a fake witness says.
#[derive(Debug, Clone)]
enum Body {
    /// The genuine cosignature line.
    Cosignature,
    /// The genuine line, mutated.
    Mutated(Vec<Mutation>),
    /// A cosignature by another key under the witness' name.
    Forged(SigningKey),
    /// A conflict's tree size.
    Size(u64),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Answer {
    status: String,
    headers: Vec<String>,
    framing: Framing,
    body: Body,
    /// Bytes mutated in the whole answer.
    garble: Option<Vec<Mutation>>,
}

impl Answer {
    fn well_formed_cosignature(&self) -> bool {
        self.status.starts_with("HTTP/1.1 200 ")
            && self.headers.iter().all(|h| h == "Content-Type: text/plain" || h == "Connection: close")
            && matches!(self.body, Body::Cosignature)
            && self.garble.is_none()
            && match &self.framing {
                Framing::Length(d) => *d == 0,
                Framing::ToEnd => true,
                Framing::Chunked(_, lie) => lie.is_none(),
            }
    }

    fn bytes(&self, cp: &Checkpoint, name: &str, key: &SigningKey) -> Vec<u8> {
        let body = match &self.body {
            Body::Cosignature => cosignature_line(cp, name, key, 1_700_000_000).into_bytes(),
            Body::Mutated(ms) => mutated(cosignature_line(cp, name, key, 1_700_000_000).as_bytes(), ms),
            Body::Forged(other) => cosignature_line(cp, name, other, 1_700_000_000).into_bytes(),
            Body::Size(n) => format!("{n}\n").into_bytes(),
            Body::Raw(b) => b.clone(),
        };
        let mut out = format!("{}\r\n", self.status).into_bytes();
        for h in &self.headers {
            out.extend_from_slice(format!("{h}\r\n").as_bytes());
        }
        match &self.framing {
            Framing::Length(d) => {
                let n = (body.len() as i64 + i64::from(*d)).max(0);
                out.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
                out.extend_from_slice(&body);
            }
            Framing::ToEnd => {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&body);
            }
            Framing::Chunked(sizes, lie) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                let mut k = 0;
                while !rest.is_empty() {
                    let n = sizes.get(k).or(sizes.last()).copied().unwrap_or(1).clamp(1, rest.len());
                    let size = match (lie, k) {
                        (Some(lie), 0) => lie.clone(),
                        _ => format!("{n:x}"),
                    };
                    out.extend_from_slice(format!("{size}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                    k += 1;
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        match &self.garble {
            Some(ms) => mutated(&out, ms),
            None => out,
        }
    }
}

fn answer() -> BoxedStrategy<Answer> {
    let status = prop_oneof![
        6 => Just("HTTP/1.1 200 OK".to_string()),
        2 => Just("HTTP/1.1 409 Conflict".to_string()),
        1 => prop::sample::select(vec!["HTTP/1.1 500 Oops", "HTTP/1.1 404 Not Found", "HTTP/1.0 200", "HTTP/1.1", "", "200 OK",
                                       "HTTP/1.1 99999999999 x", "HTTP/1.1 -1 x"]).prop_map(String::from),
        1 => text(),
    ];
    let headers = prop::collection::vec(
        prop_oneof![
            Just("Content-Type: text/plain".to_string()),
            Just("transfer-encoding: gzip, CHUNKED".to_string()),
            Just("Connection: close".to_string()),
            text(),
        ],
        0..3,
    );
    let framing = prop_oneof![
        3 => prop_oneof![4 => Just(0i8), 1 => any::<i8>()].prop_map(Framing::Length),
        1 => Just(Framing::ToEnd),
        2 => (
            prop::collection::vec(1usize..200, 1..4),
            prop::option::weighted(0.3, prop::sample::select(vec!["ffffffffffffffff", "zz", "", "-1", "1;ext", "0", "10000"]).prop_map(String::from)),
        )
            .prop_map(|(sizes, lie)| Framing::Chunked(sizes, lie)),
    ];
    let body = prop_oneof![
        4 => Just(Body::Cosignature),
        3 => mutations().prop_map(Body::Mutated),
        1 => signing_key().prop_map(Body::Forged),
        2 => prop_oneof![0u64..12, boundary_u64()].prop_map(Body::Size),
        1 => prop::collection::vec(any::<u8>(), 0..100).prop_map(Body::Raw),
    ];
    (status, headers, framing, body, prop::option::weighted(0.15, mutations()))
        .prop_map(|(status, headers, framing, body, garble)| Answer { status, headers, framing, body, garble })
        .boxed()
}

/// A fake witness on a local port: it reads each request (head and Content-Length bytes of
/// body), answers the next of the answers it was given (the last one again when they run
/// out), and closes.
struct FakeWitness {
    url: String,
    answers: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn fake_witness() -> &'static FakeWitness {
    static WITNESS: OnceLock<FakeWitness> = OnceLock::new();
    WITNESS.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answers: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let queue = answers.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = {
                    let mut answers = queue.lock().unwrap();
                    if answers.len() > 1 {
                        answers.remove(0)
                    } else {
                        answers.first().cloned().unwrap_or_default()
                    }
                };
                let _ = stream.write_all(&answer);
            }
        });
        FakeWitness { url, answers }
    })
}

proptest! {
    #![proptest_config(config())]

    /// Submitting a checkpoint to a witness that answers anything: never a panic; a
    /// cosignature is taken only if it verifies (and then it cosigns a checkpoint that reads
    /// with the witness required); a well-formed genuine answer is always taken.
    #[test]
    fn a_witness_answer_is_taken_only_if_it_cosigns(answers in prop::collection::vec(answer(), 1..3),
                                                    cosigned_size in prop_oneof![0u64..10, boundary_u64()]) {
        let s = signed();
        let witness_server = fake_witness();
        let name = s.witness.name.clone();
        let wire: Vec<Vec<u8>> = answers.iter().map(|a| a.bytes(&s.cp, &name, &s.witness_key)).collect();
        *witness_server.answers.lock().unwrap() = wire;
        let mut witness = Witness::new(&witness_server.url, s.witness.clone());
        witness.cosigned_size = cosigned_size;
        // The checkpoint as the log has it before any witness (its own signature only).
        let mut cp = s.cp.clone();
        cp.signatures.truncate(1);
        let got = witness.cosign(&s.store, &cp);
        match &got {
            Ok(line) => {
                prop_assert!(checkpoint::cosignature_verifies(&cp, &s.witness, line));
                cp.add_cosignature(line).unwrap();
                let back = checkpoint::read(&cp.to_note(), ORIGIN, &s.log_key.verifying_key(), std::slice::from_ref(&s.witness));
                prop_assert!(back.is_ok(), "{:?}", back);
            }
            Err(e) => prop_assert!(!answers[0].well_formed_cosignature(), "a genuine cosignature refused: {}", e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The export an auditor is handed (`wormfs export`, read by `wormfs verify --export`).

/// A store's records (key -> stored bytes), its head (seq, hash, time) and whether the head is
/// unreadable.
type ExportParts = (std::collections::BTreeMap<u64, Vec<u8>>, Option<(u64, [u8; 32], u64)>, bool);

fn export_parts() -> BoxedStrategy<ExportParts> {
    (
        prop::collection::btree_map(boundary_u64(), prop::collection::vec(any::<u8>(), 0..64), 0..6),
        prop::option::of((boundary_u64(), any::<[u8; 32]>(), boundary_u64())),
        any::<bool>(),
    )
        .boxed()
}

/// The export of an in-memory store holding `parts`.
fn exported((records, head, unreadable): &ExportParts) -> String {
    let store = wormfs::index::MemoryStore::new();
    for (key, bytes) in records {
        store.raw_put_record(*key, bytes.clone());
    }
    store.raw_set_head(head.map(|(seq, hash, time_ns)| wormfs::core::store::Head { seq, hash, time_ns }));
    if *unreadable {
        store.raw_set_head_unreadable();
    }
    let mut text = Vec::new();
    wormfs::export::write(&store, &mut text).unwrap();
    String::from_utf8(text).unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// Whatever a store holds, its export reads back as the same store (records under the same
    /// keys, byte for byte, and the same head), and writes out as the same text.
    #[test]
    fn an_export_round_trips(parts in export_parts()) {
        let text = exported(&parts);
        let back = wormfs::export::read(&text).unwrap();
        let mut again = Vec::new();
        wormfs::export::write(&back, &mut again).unwrap();
        prop_assert_eq!(String::from_utf8(again).unwrap(), text);
        let mut stored = std::collections::BTreeMap::new();
        back.scan_records(0, &mut |k, b| { stored.insert(k, b.to_vec()); true }).unwrap();
        prop_assert_eq!(stored, parts.0);
    }

    /// A changed export is refused, or reads as a store whose export is exactly the changed text
    /// (one text, one meaning); reading never panics.
    #[test]
    fn a_mutated_export_is_refused_or_canonical(parts in export_parts(), ms in mutations()) {
        let text = exported(&parts);
        if let Ok(changed) = String::from_utf8(mutated(text.as_bytes(), &ms)) {
            if let Ok(back) = wormfs::export::read(&changed) {
                let mut again = Vec::new();
                wormfs::export::write(&back, &mut again).unwrap();
                prop_assert_eq!(String::from_utf8(again).unwrap(), changed);
            }
        }
    }
}

//! Test bodies written once against `&dyn Store` and run on both stores, so the in-memory twin
//! is held to exactly what RocksStore does rather than to what its author remembered.

use std::ffi::OsStr;

use crate::core::path::RelPath;
use crate::core::record::{Payload, Record, Segment, Unsigned};
use crate::core::store::{FileState, Head, Store, StoreError};

pub(crate) fn path(p: &str) -> RelPath {
    RelPath::parse(OsStr::new(p)).expect("test path is valid")
}

/// A well-formed record with dummy chain fields: stores never verify hashes or signatures.
pub(crate) fn record(seq: u64, payload: Payload) -> Record {
    let fields = Unsigned { seq, time_ns: seq.wrapping_add(1_000), payload, prev_hash: [seq as u8; 32] };
    let hash = fields.hash();
    Record { fields, hash, signature: [0u8; 64] }
}

fn seal(seq: u64, p: &str, start: u64, end: u64) -> Record {
    let segment = Segment { path: path(p), start, end, segment_hash: [1; 32], file_hash: [seq as u8; 32] };
    record(seq, Payload::Seal(segment))
}

fn head_of(r: &Record) -> Head {
    Head { seq: r.seq(), hash: r.hash, time_ns: r.fields.time_ns }
}

pub(crate) fn scan_all(store: &dyn Store, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .scan_records(from, &mut |seq, bytes| {
            out.push((seq, bytes.to_vec()));
            true
        })
        .expect("scan");
    out
}

pub(crate) fn empty_store(store: &dyn Store) {
    assert_eq!(store.head().unwrap(), None);
    assert_eq!(store.key_id().unwrap(), None);
    assert_eq!(store.file(&path("a.log")).unwrap(), None);
    assert!(store.files().unwrap().is_empty());
    assert!(scan_all(store, 0).is_empty());
}

/// Commits a small chain and reads every part of it back.
pub(crate) fn round_trip(store: &dyn Store) {
    store.set_key_id([4; 8]).unwrap();
    assert_eq!(store.key_id().unwrap(), Some([4; 8]));

    let a = path("app/a.log");
    let mount = record(1, Payload::Mount { software: "wormfs test".into(), key_id: [4; 8], data_dir: b"/d".to_vec() });
    let create = record(2, Payload::Create { path: a.clone(), mode: 0o100640, uid: 1, gid: 2 });
    let created = FileState { created_seq: 2, ..FileState::default() };
    let sealed_rec = seal(3, "app/a.log", 0, 10);
    let sealed = FileState { sealed_size: 10, file_hash: [3; 32], created_seq: 2, last_seal_seq: 3 };

    store.commit(&mount, None).unwrap();
    assert_eq!(store.head().unwrap(), Some(head_of(&mount)));
    store.commit(&create, Some((&a, &created))).unwrap();
    assert_eq!(store.file(&a).unwrap(), Some(created));
    store.commit(&sealed_rec, Some((&a, &sealed))).unwrap();

    assert_eq!(store.head().unwrap(), Some(head_of(&sealed_rec)));
    assert_eq!(store.file(&a).unwrap(), Some(sealed));
    assert_eq!(store.files().unwrap(), vec![(a, sealed)]);

    let all = scan_all(store, 1);
    let expected: Vec<(u64, Vec<u8>)> =
        [&mount, &create, &sealed_rec].iter().map(|r| (r.seq(), r.encode())).collect();
    assert_eq!(all, expected);
    for (_, bytes) in &all {
        Record::decode(bytes).expect("stored bytes decode");
    }
    assert_eq!(scan_all(store, 0), expected, "scan from 0 starts at the first record");
    assert_eq!(scan_all(store, 2), expected[1..].to_vec());
    assert!(scan_all(store, 4).is_empty());

    let mut seen = Vec::new();
    store
        .scan_records(1, &mut |seq, _| {
            seen.push(seq);
            seq < 2
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2], "visit returning false stops the scan");
}

/// A record that does not extend the head by exactly one is refused and changes nothing.
pub(crate) fn seq_gap_rejected(store: &dyn Store) {
    let p = path("x.log");
    let state = FileState { created_seq: 2, ..FileState::default() };
    let is_backend = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Backend(_)));

    assert!(is_backend(store.commit(&record(2, Payload::Unmount), None)), "an empty chain starts at 1");
    assert!(is_backend(store.commit(&record(0, Payload::Unmount), None)));
    assert_eq!(store.head().unwrap(), None);

    let first = record(1, Payload::Unmount);
    store.commit(&first, None).unwrap();
    assert!(is_backend(store.commit(&record(1, Payload::Unmount), Some((&p, &state)))), "no overwrite");
    assert!(is_backend(store.commit(&record(3, Payload::Unmount), Some((&p, &state)))), "no gap");
    assert!(is_backend(store.commit(&record(u64::MAX, Payload::Unmount), None)));

    assert_eq!(store.head().unwrap(), Some(head_of(&first)));
    assert_eq!(store.file(&p).unwrap(), None, "a refused commit writes no file state");
    assert_eq!(scan_all(store, 0), vec![(1, first.encode())]);
}

/// `files()` is in byte order of the path ('.' < '/' < letters), whatever the insertion order.
pub(crate) fn files_in_byte_order(store: &dyn Store) {
    let names = ["b.log", "a/x.log", "a.log", "a/b/c.log"];
    for (i, name) in names.iter().enumerate() {
        let seq = i as u64 + 1;
        let state = FileState { created_seq: seq, ..FileState::default() };
        let create = record(seq, Payload::Create { path: path(name), mode: 0, uid: 0, gid: 0 });
        store.commit(&create, Some((&path(name), &state))).unwrap();
    }
    let listed: Vec<String> = store.files().unwrap().into_iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(listed, vec!["/a.log", "/a/b/c.log", "/a/x.log", "/b.log"]);
}

/// Threads racing to append, each retrying when another got there first, still produce one
/// gapless chain: the seq check and the write are one atomic step.
pub(crate) fn concurrent_commits_never_gap(store: &dyn Store) {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let mut done = 0;
                while done < PER_THREAD {
                    let next = store.head().unwrap().map_or(1, |h| h.seq + 1);
                    match store.commit(&record(next, Payload::Unmount), None) {
                        Ok(()) => done += 1,
                        Err(StoreError::Backend(_)) => continue,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            });
        }
    });
    let total = (THREADS * PER_THREAD) as u64;
    let seqs: Vec<u64> = scan_all(store, 0).into_iter().map(|(seq, _)| seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert_eq!(store.head().unwrap().map(|h| h.seq), Some(total));
}

/// A scan's visitor may read the store (e.g. a checker looking up file state) without deadlock.
pub(crate) fn scan_may_reenter_the_store(store: &dyn Store) {
    store.commit(&record(1, Payload::Unmount), None).unwrap();
    store.commit(&record(2, Payload::Unmount), None).unwrap();
    let mut heads = Vec::new();
    store
        .scan_records(1, &mut |_, _| {
            heads.push(store.head().unwrap().map(|h| h.seq));
            true
        })
        .unwrap();
    assert_eq!(heads, vec![Some(2), Some(2)]);
}

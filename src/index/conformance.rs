//! Test bodies written once against `&dyn Store` and run on both stores, so the in-memory twin
//! is held to exactly what RocksStore does rather than to what its author remembered.

use std::ffi::OsStr;

use crate::core::path::RelPath;
use crate::core::record::{Payload, Record, Segment, Unsigned};
use crate::core::store::{FileState, Head, HoldState, IndexUpdate, Store, StoreError};

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
    let segment =
        Segment { path: path(p), start, end, segment_hash: [1; 32], file_hash: [seq as u8; 32], retain_until_ns: 0 };
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
    assert!(store.holds().unwrap().is_empty());
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
    let sealed =
        FileState { sealed_size: 10, file_hash: [3; 32], created_seq: 2, last_seal_seq: 3, retain_until_ns: 5_000 };

    assert_eq!(store.data_dir().unwrap(), None, "no data directory before the first Mount");
    store.commit(&mount, &[IndexUpdate::DataDir(b"/d".to_vec())]).unwrap();
    assert_eq!(store.head().unwrap(), Some(head_of(&mount)));
    assert_eq!(store.data_dir().unwrap(), Some(b"/d".to_vec()));
    store.commit(&create, &[IndexUpdate::File(a.clone(), created)]).unwrap();
    assert_eq!(store.file(&a).unwrap(), Some(created));
    store.commit(&sealed_rec, &[IndexUpdate::File(a.clone(), sealed)]).unwrap();

    assert_eq!(store.head().unwrap(), Some(head_of(&sealed_rec)));
    assert_eq!(store.file(&a).unwrap(), Some(sealed));
    assert_eq!(store.files().unwrap(), vec![(a, sealed)]);
    assert!(store.holds().unwrap().is_empty());

    let all = scan_all(store, 1);
    let expected: Vec<(u64, Vec<u8>)> = [&mount, &create, &sealed_rec].iter().map(|r| (r.seq(), r.encode())).collect();
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
    let updates = [IndexUpdate::File(p.clone(), state), IndexUpdate::Hold(RelPath::root(), hold("h", 2))];
    let refused = |r: Result<(), StoreError>, seq: u64, expected: u64| {
        assert!(
            matches!(r, Err(StoreError::OutOfSequence { seq: s, expected: e }) if s == seq && e == expected),
            "seq {seq} (next is {expected}): {r:?}"
        )
    };

    refused(store.commit(&record(2, Payload::Unmount), &[]), 2, 1);
    refused(store.commit(&record(0, Payload::Unmount), &[]), 0, 1);
    assert_eq!(store.head().unwrap(), None);

    let first = record(1, Payload::Unmount);
    store.commit(&first, &[]).unwrap();
    refused(store.commit(&record(1, Payload::Unmount), &updates), 1, 2);
    refused(store.commit(&record(3, Payload::Unmount), &updates), 3, 2);
    refused(store.commit(&record(u64::MAX, Payload::Unmount), &[]), u64::MAX, 2);

    assert_eq!(store.head().unwrap(), Some(head_of(&first)));
    assert_eq!(store.file(&p).unwrap(), None, "a refused commit writes no file state");
    assert!(store.holds().unwrap().is_empty(), "a refused commit writes no hold");
    assert_eq!(scan_all(store, 0), vec![(1, first.encode())]);
}

/// `files()` is in byte order of the path ('.' < '/' < letters), whatever the insertion order.
pub(crate) fn files_in_byte_order(store: &dyn Store) {
    let names = ["b.log", "a/x.log", "a.log", "a/b/c.log"];
    for (i, name) in names.iter().enumerate() {
        let seq = i as u64 + 1;
        let state = FileState { created_seq: seq, ..FileState::default() };
        let create = record(seq, Payload::Create { path: path(name), mode: 0, uid: 0, gid: 0 });
        store.commit(&create, &[IndexUpdate::File(path(name), state)]).unwrap();
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
                    match store.commit(&record(next, Payload::Unmount), &[]) {
                        Ok(()) => done += 1,
                        Err(StoreError::OutOfSequence { .. }) => continue,
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
    store.commit(&record(1, Payload::Unmount), &[]).unwrap();
    store.commit(&record(2, Payload::Unmount), &[]).unwrap();
    let mut heads = Vec::new();
    store
        .scan_records(1, &mut |_, _| {
            heads.push(store.head().unwrap().map(|h| h.seq));
            true
        })
        .unwrap();
    assert_eq!(heads, vec![Some(2), Some(2)]);
}

pub(crate) fn hold(reason: &str, seq: u64) -> HoldState {
    HoldState { reason: reason.into(), uid: 1000 + seq as u32, seq }
}

fn hold_record(seq: u64, prefix: &RelPath, set: bool) -> Record {
    record(seq, Payload::Hold { prefix: prefix.clone(), set, reason: format!("case {seq}"), uid: 7 })
}

/// Holds are set, listed in byte order of the path (the root, the empty path, first), replaced
/// and removed; they live apart from file state.
pub(crate) fn holds_set_list_remove(store: &dyn Store) {
    let names = ["b", "a/x", "", "a.b", "a"];
    for (i, name) in names.iter().enumerate() {
        let seq = i as u64 + 1;
        let p = if name.is_empty() { RelPath::root() } else { path(name) };
        store
            .commit(&hold_record(seq, &p, true), &[IndexUpdate::Hold(p.clone(), hold(&format!("r{seq}"), seq))])
            .unwrap();
    }
    let listed: Vec<(String, u64)> = store.holds().unwrap().into_iter().map(|(p, h)| (p.to_string(), h.seq)).collect();
    let root = RelPath::root().to_string();
    assert_eq!(
        listed,
        vec![(root.clone(), 3), ("/a".into(), 5), ("/a.b".into(), 4), ("/a/x".into(), 2), ("/b".into(), 1)]
    );
    let holds = store.holds().unwrap();
    assert!(holds[0].0.is_root());
    assert_eq!(holds[0].1, hold("r3", 3));
    assert!(store.files().unwrap().is_empty(), "holds are not files");

    // Replacing a hold keeps one entry, with the new state; a non-ASCII reason survives.
    let replaced = HoldState { reason: "Rechtsstreit § 12 — ünïcödé".into(), uid: u32::MAX, seq: 6 };
    store.commit(&hold_record(6, &path("a"), true), &[IndexUpdate::Hold(path("a"), replaced.clone())]).unwrap();
    let empty_reason = HoldState { reason: String::new(), uid: 0, seq: 7 };
    store.commit(&hold_record(7, &path("b"), true), &[IndexUpdate::Hold(path("b"), empty_reason.clone())]).unwrap();

    // Removing: the root, a path, and a path that holds nothing (a no-op).
    store.commit(&hold_record(8, &RelPath::root(), false), &[IndexUpdate::RemoveHold(RelPath::root())]).unwrap();
    store.commit(&hold_record(9, &path("a/x"), false), &[IndexUpdate::RemoveHold(path("a/x"))]).unwrap();
    store.commit(&hold_record(10, &path("zz"), false), &[IndexUpdate::RemoveHold(path("zz"))]).unwrap();
    assert_eq!(
        store.holds().unwrap(),
        vec![(path("a"), replaced), (path("a.b"), hold("r4", 4)), (path("b"), empty_reason)]
    );
    assert_eq!(store.head().unwrap().map(|h| h.seq), Some(10));
}

/// RemoveFile drops a file's state (and only that file's); removing an unknown file is a no-op.
pub(crate) fn remove_file(store: &dyn Store) {
    let (a, b) = (path("a.log"), path("b.log"));
    let sa = FileState { created_seq: 1, ..FileState::default() };
    let sb = FileState { created_seq: 1, sealed_size: 4, ..FileState::default() };
    store
        .commit(&record(1, Payload::Unmount), &[IndexUpdate::File(a.clone(), sa), IndexUpdate::File(b.clone(), sb)])
        .unwrap();
    store.commit(&record(2, Payload::Unmount), &[IndexUpdate::RemoveFile(a.clone())]).unwrap();
    assert_eq!(store.file(&a).unwrap(), None);
    assert_eq!(store.file(&b).unwrap(), Some(sb));
    assert_eq!(store.files().unwrap(), vec![(b.clone(), sb)]);
    store.commit(&record(3, Payload::Unmount), &[IndexUpdate::RemoveFile(path("never.log"))]).unwrap();
    assert_eq!(store.files().unwrap(), vec![(b, sb)]);
}

/// One commit applies all of its updates, in order (a later update of the same key wins); a
/// refused commit applies none of them.
pub(crate) fn several_updates_in_one_commit(store: &dyn Store) {
    let (a, b, c, d) = (path("a"), path("b"), path("c"), path("d/e"));
    let s = |n: u64| FileState { created_seq: n, retain_until_ns: n * 10, ..FileState::default() };
    store
        .commit(
            &record(1, Payload::Unmount),
            &[
                IndexUpdate::File(a.clone(), s(1)),
                IndexUpdate::File(b.clone(), s(1)),
                IndexUpdate::Hold(RelPath::root(), hold("all", 1)),
                IndexUpdate::Hold(d.clone(), hold("d", 1)),
            ],
        )
        .unwrap();
    store
        .commit(
            &record(2, Payload::Unmount),
            &[
                IndexUpdate::RemoveFile(a.clone()),
                IndexUpdate::File(c.clone(), s(2)),
                IndexUpdate::File(b.clone(), s(2)),
                IndexUpdate::File(b.clone(), s(3)),
                IndexUpdate::RemoveHold(RelPath::root()),
                IndexUpdate::Hold(c.clone(), hold("c", 2)),
                IndexUpdate::Hold(d.clone(), hold("d", 2)),
                IndexUpdate::RemoveHold(d.clone()),
            ],
        )
        .unwrap();
    let files_after = vec![(b.clone(), s(3)), (c.clone(), s(2))];
    let holds_after = vec![(c.clone(), hold("c", 2))];
    assert_eq!(store.files().unwrap(), files_after);
    assert_eq!(store.holds().unwrap(), holds_after);

    // Refused (wrong seq): nothing of it lands, however many updates it carries.
    let refused = [
        IndexUpdate::RemoveFile(b.clone()),
        IndexUpdate::File(a.clone(), s(9)),
        IndexUpdate::File(c.clone(), s(9)),
        IndexUpdate::RemoveHold(c.clone()),
        IndexUpdate::Hold(RelPath::root(), hold("no", 9)),
    ];
    for seq in [2, 4] {
        assert!(matches!(
            store.commit(&record(seq, Payload::Unmount), &refused),
            Err(StoreError::OutOfSequence { expected: 3, .. })
        ));
    }
    assert_eq!(store.files().unwrap(), files_after);
    assert_eq!(store.holds().unwrap(), holds_after);
    assert_eq!(store.head().unwrap().map(|h| h.seq), Some(2));
    assert_eq!(scan_all(store, 0).len(), 2);
}

/// Every field of FileState survives, retain_until_ns included, at its extremes.
pub(crate) fn retain_until_round_trip(store: &dyn Store) {
    let p = path("keep.log");
    for (seq, retain_until_ns) in [(1, 0), (2, 1_700_000_000_123_456_789), (3, u64::MAX)] {
        let state = FileState {
            sealed_size: u64::MAX - seq,
            file_hash: [seq as u8; 32],
            created_seq: 1,
            last_seal_seq: seq,
            retain_until_ns,
        };
        store.commit(&record(seq, Payload::Unmount), &[IndexUpdate::File(p.clone(), state)]).unwrap();
        assert_eq!(store.file(&p).unwrap(), Some(state));
        assert_eq!(store.files().unwrap(), vec![(p.clone(), state)]);
    }
}

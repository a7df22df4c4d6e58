//! Linking, hashing and signing records, and checking a stored chain with the public key alone.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::record::{DecodeError, Payload, Record, Unsigned};
use super::segment::{hex, sha256, Hash, ZERO_HASH};

/// A key's short id, recorded in Mount records: the first 8 bytes of SHA-256(public key).
pub fn key_id(key: &VerifyingKey) -> [u8; 8] {
    let h = sha256(key.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    id
}

/// Hash and sign `fields` into a record.
pub fn sign(fields: Unsigned, key: &SigningKey) -> Record {
    let hash = fields.hash();
    let signature = key.sign(&hash).to_bytes();
    Record { fields, hash, signature }
}

/// One thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFinding {
    /// The bytes stored under `key` are not a record.
    Undecodable { key: u64, error: DecodeError },
    /// A record is stored under another seq than its own (moved or swapped).
    Misplaced { key: u64, seq: u64 },
    /// Records `from..=to` are missing.
    Gap { from: u64, to: u64 },
    /// A record whose seq is not above the previous one (reordered or duplicated).
    OutOfOrder { seq: u64, after: u64 },
    /// `prev_hash` does not name the previous record.
    BrokenLink { seq: u64 },
    /// The stored hash is not the hash of the record's fields (a field was changed).
    BadHash { seq: u64 },
    /// The signature does not verify with the trusted key.
    BadSignature { seq: u64 },
    /// A Mount record names a key other than the trusted one.
    UnknownKey { seq: u64, key_id: [u8; 8] },
    /// Time went backwards from the previous record.
    TimeBackwards { seq: u64, previous_ns: u64, time_ns: u64 },
    /// A record (or a stored key) at seq u64::MAX: nothing can follow it, and no honest chain
    /// gets there.
    SeqExhausted { seq: u64 },
    /// A record signed by the key of another epoch than the one it falls in (a key kept past
    /// its rotation, or a record moved across one).
    WrongEpochKey { seq: u64, signed_by: u64, epoch: u64 },
    /// A record dated after its epoch's key stopped being valid (2 × epoch length after the
    /// KeyRotate that began it): a key kept after it should have been destroyed.
    OutsideEpoch { seq: u64, epoch: u64, time_ns: u64, until_ns: u64 },
    /// A KeyRotate that does not begin the next epoch (one is missing or repeated), or that
    /// certifies no usable key.
    BadRotation { seq: u64, epoch: u64, expected: u64, why: &'static str },
}

impl std::fmt::Display for ChainFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainFinding::Undecodable { key, error } => write!(f, "record {key}: undecodable ({error})"),
            ChainFinding::Misplaced { key, seq } => write!(f, "record {seq} is stored at position {key}"),
            ChainFinding::Gap { from, to } if from == to => write!(f, "record {from} is missing"),
            ChainFinding::Gap { from, to } => write!(f, "records {from}..={to} are missing"),
            ChainFinding::OutOfOrder { seq, after } => write!(f, "record {seq} comes after record {after}"),
            ChainFinding::BrokenLink { seq } => {
                write!(f, "record {seq}: prev_hash does not match the previous record")
            }
            ChainFinding::BadHash { seq } => write!(f, "record {seq}: hash does not match its contents"),
            ChainFinding::BadSignature { seq } => write!(f, "record {seq}: signature does not verify"),
            ChainFinding::UnknownKey { seq, key_id } => {
                write!(f, "record {seq}: signed under unknown key {}", hex(key_id))
            }
            ChainFinding::TimeBackwards { seq, previous_ns, time_ns } => {
                write!(f, "record {seq}: time {time_ns} is before the previous record's {previous_ns}")
            }
            ChainFinding::SeqExhausted { seq } => write!(f, "record {seq}: no record can follow the largest seq"),
            ChainFinding::WrongEpochKey { seq, signed_by, epoch } => {
                write!(f, "record {seq}: signed by the key of epoch {signed_by}, but it falls in epoch {epoch}")
            }
            ChainFinding::OutsideEpoch { seq, epoch, time_ns, until_ns } => write!(
                f,
                "record {seq}: dated {} in epoch {epoch}, whose key was valid only until {}",
                super::timefmt::rfc3339_ns(*time_ns),
                super::timefmt::rfc3339_ns(*until_ns)
            ),
            ChainFinding::BadRotation { seq, epoch, expected, why } => {
                write!(f, "record {seq}: a key rotation to epoch {epoch} where epoch {expected} was due: {why}")
            }
        }
    }
}

/// One key epoch as the checker follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochView {
    pub epoch: u64,
    pub key: VerifyingKey,
    /// The KeyRotate that began it (0 for epoch 0, whose key is the trust anchor).
    pub since_seq: u64,
    pub since_ns: u64,
    /// Its length as its KeyRotate declared; None for epoch 0, which has no time limit.
    pub epoch_ns: Option<u64>,
}

impl EpochView {
    /// The first time its key may no longer sign (None: no limit).
    pub fn valid_until_ns(&self) -> Option<u64> {
        self.epoch_ns.map(|e| self.since_ns.saturating_add(e.saturating_mul(2)))
    }
}

/// The longest key epoch a rotation may declare: forward security is only as good as the
/// epoch is short, and a forged rotation must not make a key valid forever.
pub const MAX_EPOCH_NS: u64 = 24 * 3600 * 1_000_000_000;

/// How many retired epoch keys a record with a bad signature is tried against, to tell a key
/// used outside its epoch from a forgery.
const RETIRED_KEYS_TRIED: usize = 64;

/// Checks records one at a time, in stored order, so a chain of any length is checked in
/// constant memory. Feed every stored (key, bytes) pair to `check`, then call `finish`.
///
/// Every number here comes from stored bytes, so none is trusted to leave room for `+ 1`.
///
/// Keys: the chain begins signed by the trust anchor (epoch 0, the key `keygen` made). Each
/// KeyRotate is signed by the key of the epoch it ends and certifies the next epoch's key, which
/// signs every record after it. While mounted, a record dated at or after its epoch's
/// `valid_until_ns` is a finding; exempt are Mount records, records between an Unmount and the
/// next Mount (offline admin commands), and the KeyRotate right after a Mount (after a stop, the
/// key on disk is older than its window and signs only the Mount and that rotation).
#[derive(Debug)]
pub struct ChainChecker {
    current: EpochView,
    /// The keys of earlier epochs, newest last (at most `RETIRED_KEYS_TRIED`).
    retired: Vec<(u64, VerifyingKey)>,
    rotations: u64,
    /// Between a Mount and an Unmount.
    mounted: bool,
    /// The previous record was a Mount.
    after_mount: bool,
    /// The newest record accepted in order: its seq and hash (None before the first).
    last: Option<(u64, Hash)>,
    /// Whether the next record should link to `last` (false after an undecodable record).
    linked: bool,
    /// The seq the next record should have: None once a record at u64::MAX was seen.
    expected_seq: Option<u64>,
    prev_time: u64,
    findings: Vec<ChainFinding>,
    records: u64,
}

impl ChainChecker {
    /// A checker trusting `anchor`, the key the chain began with.
    pub fn new(anchor: VerifyingKey) -> Self {
        ChainChecker {
            current: EpochView { epoch: 0, key: anchor, since_seq: 0, since_ns: 0, epoch_ns: None },
            retired: Vec::new(),
            rotations: 0,
            mounted: false,
            after_mount: false,
            last: None,
            linked: true,
            expected_seq: Some(1),
            prev_time: 0,
            findings: Vec::new(),
            records: 0,
        }
    }

    /// The seq after `seq`, or a finding that there is none.
    fn after(&mut self, seq: u64) -> Option<u64> {
        let next = seq.checked_add(1);
        if next.is_none() {
            self.findings.push(ChainFinding::SeqExhausted { seq });
        }
        next
    }

    /// Check the record stored under `key`; returns it when it decodes, valid or not, so the
    /// caller can also check what it says about files.
    pub fn check(&mut self, key: u64, bytes: &[u8]) -> Option<Record> {
        self.records += 1;
        let record = match Record::decode(bytes) {
            Ok(r) => r,
            Err(error) => {
                self.findings.push(ChainFinding::Undecodable { key, error });
                // Its seq is unknown: expect the next one after it, unlinked.
                self.expected_seq = self.after(key);
                self.linked = false;
                return None;
            }
        };
        let seq = record.seq();
        if seq != key {
            self.findings.push(ChainFinding::Misplaced { key, seq });
        }
        let computed = record.fields.hash();
        if computed != record.hash {
            self.findings.push(ChainFinding::BadHash { seq });
        }
        let signature = Signature::from_bytes(&record.signature);
        if self.current.key.verify(&computed, &signature).is_err() {
            let by = self.retired.iter().rev().find(|(_, k)| k.verify(&computed, &signature).is_ok());
            self.findings.push(match by {
                Some((signed_by, _)) => {
                    ChainFinding::WrongEpochKey { seq, signed_by: *signed_by, epoch: self.current.epoch }
                }
                None => ChainFinding::BadSignature { seq },
            });
        }
        self.check_epoch(seq, record.fields.time_ns, &record.fields.payload);
        if record.fields.time_ns < self.prev_time {
            self.findings.push(ChainFinding::TimeBackwards {
                seq,
                previous_ns: self.prev_time,
                time_ns: record.fields.time_ns,
            });
        }
        match self.expected_seq {
            Some(expected) if seq < expected => {
                // seq < expected, so expected >= 1.
                self.findings.push(ChainFinding::OutOfOrder { seq, after: expected - 1 });
                return Some(record);
            }
            // Nothing can follow the largest seq: whatever comes is out of order.
            None => {
                let after = self.last.map_or(u64::MAX, |(s, _)| s);
                self.findings.push(ChainFinding::OutOfOrder { seq, after });
                return Some(record);
            }
            Some(expected) if seq > expected => {
                // seq > expected >= 1, so seq - 1 cannot underflow.
                self.findings.push(ChainFinding::Gap { from: expected, to: seq - 1 });
                self.linked = false;
            }
            Some(_) => {}
        }
        let prev_hash = self.last.map_or(ZERO_HASH, |(_, h)| h);
        if self.linked && record.fields.prev_hash != prev_hash {
            self.findings.push(ChainFinding::BrokenLink { seq });
        }
        self.expected_seq = self.after(seq);
        self.last = Some((seq, computed));
        self.linked = true;
        self.prev_time = record.fields.time_ns;
        Some(record)
    }

    /// The key rules of one record (signed by `current`, already checked): its time inside the
    /// epoch, a Mount naming the epoch's key, and a KeyRotate moving to the next epoch.
    fn check_epoch(&mut self, seq: u64, time_ns: u64, payload: &Payload) {
        let exempt = matches!(payload, Payload::Mount { .. })
            || !self.mounted
            || (matches!(payload, Payload::KeyRotate { .. }) && self.after_mount);
        if let Some(until_ns) = self.current.valid_until_ns().filter(|until| !exempt && time_ns >= *until) {
            self.findings.push(ChainFinding::OutsideEpoch { seq, epoch: self.current.epoch, time_ns, until_ns });
        }
        match payload {
            Payload::Mount { key_id: id, .. } => {
                if *id != key_id(&self.current.key) {
                    self.findings.push(ChainFinding::UnknownKey { seq, key_id: *id });
                }
                self.mounted = true;
            }
            Payload::Unmount => self.mounted = false,
            Payload::KeyRotate { epoch, public_key, epoch_ns } => {
                self.rotate(seq, time_ns, *epoch, public_key, *epoch_ns)
            }
            _ => {}
        }
        self.after_mount = matches!(payload, Payload::Mount { .. });
    }

    fn rotate(&mut self, seq: u64, time_ns: u64, epoch: u64, public_key: &[u8; 32], epoch_ns: u64) {
        let expected = self.current.epoch.saturating_add(1);
        let bad = |why| ChainFinding::BadRotation { seq, epoch, expected, why };
        if epoch != expected {
            self.findings.push(bad("epochs must follow one another"));
        }
        if epoch_ns == 0 {
            self.findings.push(bad("it declares no epoch length"));
        }
        if epoch_ns > MAX_EPOCH_NS {
            self.findings.push(bad("it declares an epoch longer than a day"));
        }
        let key = match VerifyingKey::from_bytes(public_key) {
            Ok(key) if key.is_weak() => return self.findings.push(bad("a weak key, under which anyone can sign")),
            Ok(key) if key == self.current.key => return self.findings.push(bad("the key is not new")),
            Ok(key) => key,
            Err(_) => return self.findings.push(bad("not an ed25519 public key")),
        };
        // Followed even when the rotation itself is a finding, so the records after it are
        // checked against the key they claim, not all reported as forgeries.
        let old = std::mem::replace(
            &mut self.current,
            EpochView { epoch, key, since_seq: seq, since_ns: time_ns, epoch_ns: (epoch_ns > 0).then_some(epoch_ns) },
        );
        self.retired.push((old.epoch, old.key));
        if self.retired.len() > RETIRED_KEYS_TRIED {
            self.retired.remove(0);
        }
        self.rotations += 1;
    }

    /// The findings, and the head as checked (seq, hash) when there were records.
    pub fn finish(self) -> ChainReport {
        ChainReport {
            records: self.records,
            head: self.last,
            findings: self.findings,
            epoch: self.current,
            rotations: self.rotations,
            mounted: self.mounted,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChainReport {
    pub records: u64,
    pub head: Option<(u64, Hash)>,
    pub findings: Vec<ChainFinding>,
    /// The epoch the chain ends in: every record up to its KeyRotate (`since_seq`) was signed by
    /// a key wormfs has since destroyed.
    pub epoch: EpochView,
    pub rotations: u64,
    /// The chain ends mounted (no Unmount after the last Mount).
    pub mounted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::path::RelPath;
    use crate::core::record::{Payload, Segment};
    use std::ffi::OsStr;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn chain(k: &SigningKey, n: u64) -> Vec<Record> {
        let mut prev = ZERO_HASH;
        let mut out = Vec::new();
        for seq in 1..=n {
            let payload = if seq == 1 {
                Payload::Mount { software: "t".into(), key_id: key_id(&k.verifying_key()), data_dir: vec![] }
            } else {
                Payload::Seal(Segment {
                    path: RelPath::parse(OsStr::new("a.log")).unwrap(),
                    start: seq * 10,
                    end: seq * 10 + 10,
                    segment_hash: [seq as u8; 32],
                    file_hash: [0; 32],
                    retain_until_ns: 0,
                })
            };
            let r = sign(Unsigned { seq, time_ns: 1000 + seq, payload, prev_hash: prev }, k);
            prev = r.hash;
            out.push(r);
        }
        out
    }

    fn check(k: &SigningKey, stored: &[(u64, Vec<u8>)]) -> ChainReport {
        let mut c = ChainChecker::new(k.verifying_key());
        for (key, bytes) in stored {
            c.check(*key, bytes);
        }
        c.finish()
    }

    fn stored(records: &[Record]) -> Vec<(u64, Vec<u8>)> {
        records.iter().map(|r| (r.seq(), r.encode())).collect()
    }

    #[test]
    fn a_good_chain_has_no_findings() {
        let k = key(1);
        let recs = chain(&k, 5);
        let report = check(&k, &stored(&recs));
        assert_eq!(report.findings, vec![]);
        assert_eq!(report.head, Some((5, recs[4].hash)));
        assert_eq!(report.records, 5);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected() {
        let k = key(1);
        let recs = chain(&k, 3);
        let good = stored(&recs);
        // One flipped bit in every byte of a middle record (the bit cycles through 0..8).
        for byte in 0..good[1].1.len() {
            let bit = byte % 8;
            let mut s = good.clone();
            s[1].1[byte] ^= 1 << bit;
            let report = check(&k, &s);
            assert!(!report.findings.is_empty(), "flip of byte {byte} bit {bit} went unnoticed");
        }
    }

    #[test]
    fn a_wrong_key_is_detected() {
        let recs = chain(&key(1), 3);
        let report = check(&key(2), &stored(&recs));
        assert!(report.findings.contains(&ChainFinding::BadSignature { seq: 2 }));
        assert!(report.findings.iter().any(|f| matches!(f, ChainFinding::UnknownKey { seq: 1, .. })));
    }

    #[test]
    fn a_removed_record_is_a_gap() {
        let k = key(1);
        let mut s = stored(&chain(&k, 5));
        s.remove(2);
        assert_eq!(check(&k, &s).findings, vec![ChainFinding::Gap { from: 3, to: 3 }]);
    }

    #[test]
    fn swapped_records_are_detected() {
        let k = key(1);
        let recs = chain(&k, 5);
        // Swap the values stored under keys 2 and 3.
        let mut s = stored(&recs);
        let (a, b) = (s[1].1.clone(), s[2].1.clone());
        s[1].1 = b;
        s[2].1 = a;
        let f = check(&k, &s).findings;
        assert!(f.contains(&ChainFinding::Misplaced { key: 2, seq: 3 }), "{f:?}");
        assert!(f.contains(&ChainFinding::OutOfOrder { seq: 2, after: 3 }), "{f:?}");
    }

    #[test]
    fn a_resigned_record_with_another_key_is_detected() {
        let k = key(1);
        let mut recs = chain(&k, 3);
        let fields = recs[1].fields.clone();
        recs[1] = sign(fields, &key(9));
        assert_eq!(check(&k, &stored(&recs)).findings, vec![ChainFinding::BadSignature { seq: 2 }]);
    }

    #[test]
    fn the_largest_seq_is_a_finding_not_a_panic() {
        let k = key(1);
        let recs = chain(&k, 2);
        let last =
            sign(Unsigned { seq: u64::MAX, time_ns: 2000, payload: Payload::Unmount, prev_hash: recs[1].hash }, &k);
        let after = sign(Unsigned { seq: 3, time_ns: 2001, payload: Payload::Unmount, prev_hash: last.hash }, &k);
        let mut s = stored(&recs);
        s.push((u64::MAX, last.encode()));
        // A store keeps its keys in order, but the checker must not trust that either.
        s.push((3, after.encode()));
        let report = check(&k, &s);
        assert!(report.findings.contains(&ChainFinding::Gap { from: 3, to: u64::MAX - 1 }), "{:?}", report.findings);
        assert!(report.findings.contains(&ChainFinding::SeqExhausted { seq: u64::MAX }), "{:?}", report.findings);
        assert!(report.findings.contains(&ChainFinding::OutOfOrder { seq: 3, after: u64::MAX }));
        assert_eq!(report.head, Some((u64::MAX, last.hash)));

        // An undecodable value stored under the largest key.
        let mut s = stored(&recs);
        s.push((u64::MAX, b"junk".to_vec()));
        let report = check(&k, &s);
        assert!(report.findings.contains(&ChainFinding::SeqExhausted { seq: u64::MAX }), "{:?}", report.findings);
    }

    #[test]
    fn a_record_stored_at_key_zero_is_a_finding() {
        let k = key(1);
        let recs = chain(&k, 2);
        let mut s = vec![(0, recs[0].encode())];
        s.extend(stored(&recs));
        let f = check(&k, &s).findings;
        assert!(f.contains(&ChainFinding::Misplaced { key: 0, seq: 1 }), "{f:?}");
    }

    #[test]
    fn a_dropped_tail_is_only_visible_against_a_kept_head() {
        let k = key(1);
        let recs = chain(&k, 5);
        let report = check(&k, &stored(&recs[..3]));
        // Nothing inside the chain says records 4 and 5 existed: the admin's noted head does.
        assert!(report.findings.is_empty());
        assert_eq!(report.head.map(|h| h.0), Some(3));
    }

    /// Records built one at a time, each signed by the key given.
    struct Builder {
        records: Vec<Record>,
    }

    impl Builder {
        fn push(&mut self, time_ns: u64, payload: Payload, k: &SigningKey) -> &mut Self {
            let seq = self.records.len() as u64 + 1;
            let prev_hash = self.records.last().map_or(ZERO_HASH, |r| r.hash);
            self.records.push(sign(Unsigned { seq, time_ns, payload, prev_hash }, k));
            self
        }

        fn mount(&mut self, time_ns: u64, k: &SigningKey) -> &mut Self {
            let payload = Payload::Mount { software: "t".into(), key_id: key_id(&k.verifying_key()), data_dir: vec![] };
            self.push(time_ns, payload, k)
        }

        fn rotate(&mut self, time_ns: u64, epoch: u64, from: &SigningKey, to: &SigningKey) -> &mut Self {
            let payload = Payload::KeyRotate { epoch, public_key: to.verifying_key().to_bytes(), epoch_ns: 100 };
            self.push(time_ns, payload, from)
        }

        fn check(&self, anchor: &SigningKey) -> ChainReport {
            check(anchor, &stored(&self.records))
        }
    }

    fn access(n: u32) -> Payload {
        Payload::Access { path: RelPath::parse(OsStr::new("a.log")).unwrap(), uid: n, pid: 1, command: "cat".into() }
    }

    #[test]
    fn rotations_verify_with_the_first_key_alone() {
        let (k0, k1, k2) = (key(1), key(2), key(3));
        let mut b = Builder { records: Vec::new() };
        b.mount(1000, &k0).rotate(1001, 1, &k0, &k1).push(1050, access(1), &k1);
        b.rotate(1100, 2, &k1, &k2).push(1150, access(2), &k2).push(1200, Payload::Unmount, &k2);
        // Offline, long after the window: still the epoch-2 key, and allowed.
        b.push(9000, access(3), &k2);
        // The next mount: Mount and its rotation by the old key, past its window.
        let k3 = key(4);
        b.mount(9100, &k2).rotate(9101, 3, &k2, &k3).push(9102, access(4), &k3);
        let report = b.check(&k0);
        assert_eq!(report.findings, vec![]);
        assert_eq!(report.rotations, 3);
        assert_eq!((report.epoch.epoch, report.epoch.since_seq), (3, 9));
        assert_eq!(report.epoch.key, k3.verifying_key());
    }

    #[test]
    fn a_key_used_outside_its_epoch_is_named() {
        let (k0, k1) = (key(1), key(2));
        let mut b = Builder { records: Vec::new() };
        b.mount(1000, &k0).rotate(1001, 1, &k0, &k1);
        // The old key, kept by an attacker, signs a record after the rotation.
        b.push(1010, access(1), &k0);
        let report = b.check(&k0);
        assert_eq!(report.findings, vec![ChainFinding::WrongEpochKey { seq: 3, signed_by: 0, epoch: 1 }]);
    }

    #[test]
    fn a_record_past_its_epochs_window_is_caught_while_mounted() {
        let (k0, k1) = (key(1), key(2));
        let mut b = Builder { records: Vec::new() };
        // Epoch 1 began at 1001 and lasts 100: its key may sign until 1201.
        b.mount(1000, &k0).rotate(1001, 1, &k0, &k1).push(1200, access(1), &k1).push(1201, access(2), &k1);
        let report = b.check(&k0);
        assert_eq!(
            report.findings,
            vec![ChainFinding::OutsideEpoch { seq: 4, epoch: 1, time_ns: 1201, until_ns: 1201 }]
        );
    }

    #[test]
    fn a_skipped_repeated_or_weak_rotation_is_a_finding() {
        let (k0, k1, k2) = (key(1), key(2), key(3));
        let mut b = Builder { records: Vec::new() };
        b.mount(1000, &k0).rotate(1001, 2, &k0, &k1);
        assert!(matches!(b.check(&k0).findings[..], [ChainFinding::BadRotation { seq: 2, epoch: 2, expected: 1, .. }]));

        // An epoch that would make a key valid for longer than a day.
        let mut b = Builder { records: Vec::new() };
        b.mount(1000, &k0);
        let long =
            Payload::KeyRotate { epoch: 1, public_key: k1.verifying_key().to_bytes(), epoch_ns: MAX_EPOCH_NS + 1 };
        b.push(1001, long, &k0);
        assert!(matches!(
            b.check(&k0).findings[..],
            [ChainFinding::BadRotation { why: "it declares an epoch longer than a day", .. }]
        ));

        let mut b = Builder { records: Vec::new() };
        b.mount(1000, &k0).rotate(1001, 1, &k0, &k0);
        assert!(matches!(b.check(&k0).findings[..], [ChainFinding::BadRotation { why: "the key is not new", .. }]));

        // The identity point is a weak key: anyone can sign under it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut b = Builder { records: Vec::new() };
        b.mount(1000, &k0);
        b.push(1001, Payload::KeyRotate { epoch: 1, public_key: identity, epoch_ns: 100 }, &k0);
        b.push(1002, access(1), &k2);
        let f = b.check(&k0).findings;
        assert!(
            f.iter()
                .any(|f| matches!(f, ChainFinding::BadRotation { why: "a weak key, under which anyone can sign", .. })),
            "{f:?}"
        );
        assert!(f.contains(&ChainFinding::BadSignature { seq: 3 }), "{f:?}");
    }

    #[test]
    fn a_mount_naming_another_key_than_its_epochs_is_unknown() {
        let (k0, k1) = (key(1), key(2));
        let mut b = Builder { records: Vec::new() };
        b.mount(1000, &k0).rotate(1001, 1, &k0, &k1).push(1002, Payload::Unmount, &k1);
        // A Mount that names keygen's key, signed with epoch 1's key.
        let payload = Payload::Mount { software: "t".into(), key_id: key_id(&k0.verifying_key()), data_dir: vec![] };
        b.push(1003, payload, &k1);
        assert!(matches!(b.check(&k0).findings[..], [ChainFinding::UnknownKey { seq: 4, .. }]));
    }
}

//! The RFC 6962 Merkle tree over the chain: leaf `i` is record `seq = i + 1` as stored (its
//! encoded bytes), so a checkpoint of tree size N commits to records 1..=N, and a record or a
//! whole earlier checkpoint can be proven against it with log₂ N hashes.
//!
//! ```text
//! leaf hash  = SHA-256(0x00 ‖ record bytes)      node hash = SHA-256(0x01 ‖ left ‖ right)
//! ```
//!
//! The daemon keeps the tree's hashes in the index (Go's sumdb layout, via `tlog_tiles`: every
//! complete subtree's hash, about two per record), committed with each record, so a root or a
//! proof costs a few reads. The checks below take untrusted proofs (a receipt, a witness' view)
//! and are written out from RFC 9162 §2.1.3.2 and §2.1.4.2 so that no input can make them panic.

use tlog_tiles::{HashReader, TreeProof};

use super::segment::Hash;
use super::store::{IndexUpdate, Store, StoreError, StoreResult};

/// The root of the empty tree: SHA-256 of nothing.
pub const EMPTY_ROOT: Hash = tlog_tiles::EMPTY_HASH.0;

/// The largest tree size the checks accept (C2SP tlog-checkpoint's bound).
pub const MAX_TREE_SIZE: u64 = (1 << 63) - 1;

/// The largest tree the index stores: its stored-hash indexes (about 2 per leaf) must fit a
/// u64, or `tlog_tiles` overflows. No honest chain comes near; a tampered head might.
const STORED_TREE_LIMIT: u64 = 1 << 61;

fn within_stored_tree(size: u64) -> StoreResult<()> {
    if size > STORED_TREE_LIMIT {
        return Err(StoreError::Corrupt(format!("a tree of {size} records is beyond what the index can hold")));
    }
    Ok(())
}

pub fn leaf_hash(record_bytes: &[u8]) -> Hash {
    tlog_tiles::record_hash(record_bytes).0
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    tlog_tiles::node_hash(tlog_tiles::Hash(*left), tlog_tiles::Hash(*right)).0
}

/// Reads stored hashes from a `Store`, keeping the store's own error for the caller (the
/// `HashReader` trait can only return `tlog_tiles::Error`).
struct StoredHashes<'a> {
    store: &'a dyn Store,
    failed: std::cell::RefCell<Option<StoreError>>,
}

impl HashReader for StoredHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        match self.store.tree_hashes(indexes) {
            Ok(hashes) => Ok(hashes.into_iter().map(tlog_tiles::Hash).collect()),
            Err(e) => {
                *self.failed.borrow_mut() = Some(e);
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
        }
    }
}

fn with_reader<T>(
    store: &dyn Store,
    run: impl FnOnce(&StoredHashes<'_>) -> Result<T, tlog_tiles::Error>,
) -> StoreResult<T> {
    let reader = StoredHashes { store, failed: std::cell::RefCell::new(None) };
    run(&reader).map_err(|e| match reader.failed.take() {
        Some(store_error) => store_error,
        None => StoreError::Corrupt(format!("the index's Merkle tree: {e}")),
    })
}

/// The tree hashes record `seq` (with these encoded bytes) adds, to commit with it.
pub fn hashes_for(store: &dyn Store, seq: u64, record_bytes: &[u8]) -> StoreResult<IndexUpdate> {
    let leaf = seq.checked_sub(1).ok_or_else(|| StoreError::Corrupt("record seq 0 has no tree leaf".into()))?;
    within_stored_tree(seq)?;
    let hashes = with_reader(store, |r| tlog_tiles::stored_hashes(leaf, record_bytes, r))?;
    Ok(IndexUpdate::TreeHashes {
        first: tlog_tiles::stored_hash_index(0, leaf),
        hashes: hashes.iter().map(|h| h.0).collect(),
    })
}

/// The root of the tree of the first `size` records.
pub fn root(store: &dyn Store, size: u64) -> StoreResult<Hash> {
    within_stored_tree(size)?;
    with_reader(store, |r| tlog_tiles::tree_hash(size, r)).map(|h| h.0)
}

/// The audit path proving record `seq` is in the tree of `size` records.
pub fn inclusion_proof(store: &dyn Store, size: u64, seq: u64) -> StoreResult<Vec<Hash>> {
    let leaf = seq.checked_sub(1).ok_or_else(|| StoreError::Corrupt("record seq 0 has no tree leaf".into()))?;
    within_stored_tree(size)?;
    with_reader(store, |r| tlog_tiles::prove_record(size, leaf, r)).map(|p| p.iter().map(|h| h.0).collect())
}

/// The proof that the tree of `old` records is a prefix of the tree of `new` records (empty
/// when `old` is 0 or equals `new`).
pub fn consistency_proof(store: &dyn Store, old: u64, new: u64) -> StoreResult<Vec<Hash>> {
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    within_stored_tree(new)?;
    let proof: TreeProof = with_reader(store, |r| tlog_tiles::prove_tree(new, old, r))?;
    Ok(proof.iter().map(|h| h.0).collect())
}

/// Whether the index holds the tree for all `size` records (an index made before wormfs kept
/// a tree does not).
pub fn has_tree(store: &dyn Store, size: u64) -> StoreResult<bool> {
    if size == 0 {
        return Ok(true);
    }
    within_stored_tree(size)?;
    let last = tlog_tiles::stored_hash_count(size) - 1;
    match store.tree_hashes(&[last]) {
        Ok(_) => Ok(true),
        Err(StoreError::Corrupt(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What `repair_from` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeRepair {
    /// The stored tree's root is the records' root.
    Sound,
    /// The index had no tree (made before wormfs kept one): built from the records.
    Built,
    /// The stored tree disagreed with the records (changed outside wormfs): rebuilt.
    Rebuilt,
}

/// `repair_from` with its own pass over the records (the ledger's comes with the history replay).
#[cfg(test)]
fn repair(store: &dyn Store, size: u64) -> StoreResult<TreeRepair> {
    let mut frontier = Frontier::default();
    store.scan_records(1, &mut |seq, bytes| {
        frontier.push_record(seq, bytes, size);
        seq < size
    })?;
    repair_from(store, size, &frontier)
}

/// Make the stored tree agree with the records up to `size`: the records are signed, the tree is
/// a cache, and a tree edited behind wormfs' back would make every later checkpoint false (and
/// a missing hash would stop every append). `frontier` is of the stored records up to `size`
/// (`Frontier::push_record`), taken by the caller's own pass over them, so they are read once.
pub fn repair_from(store: &dyn Store, size: u64, frontier: &Frontier) -> StoreResult<TreeRepair> {
    // A head no honest chain reaches (tampered): nothing is built; appending refuses it.
    if size > STORED_TREE_LIMIT {
        return Ok(TreeRepair::Sound);
    }
    let had_tree = has_tree(store, size)?;
    // Records missing from the chain: the tree cannot be rebuilt from them. One that is there
    // keeps serving appends; verify reports the gap.
    if had_tree && (frontier.size() != size || root(store, size)? == frontier.root()) {
        return Ok(TreeRepair::Sound);
    }
    rebuild(store, size)?;
    Ok(if had_tree { TreeRepair::Rebuilt } else { TreeRepair::Built })
}

/// Write every stored hash of the tree of the first `size` records, from the records.
fn rebuild(store: &dyn Store, size: u64) -> StoreResult<()> {
    let mut failed = None;
    let mut expected = 1u64;
    store.scan_records(1, &mut |seq, bytes| {
        if seq != expected || seq > size {
            failed = (seq != expected).then(|| StoreError::Corrupt(format!("record {expected} is missing")));
            return false;
        }
        let step = hashes_for(store, seq, bytes).and_then(|update| match update {
            IndexUpdate::TreeHashes { first, hashes } => store.put_tree_hashes(first, &hashes),
            _ => Ok(()),
        });
        if let Err(e) = step {
            failed = Some(e);
            return false;
        }
        expected += 1;
        true
    })?;
    failed.map_or(Ok(()), Err)
}

/// The tree built leaf by leaf from a stream of records (verify reads the chain once, in
/// order): only the roots of the complete subtrees on the right edge are kept, at most 64.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// (height, hash) of each complete subtree, left to right, heights strictly decreasing.
    peaks: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Take stored record `seq` into the tree of records 1..=`size`, as a scan in seq order meets
    /// it: only the next one (a gap ends the tree; `repair_from` then leaves the stored one).
    pub fn push_record(&mut self, seq: u64, record_bytes: &[u8], size: u64) {
        if seq == self.size + 1 && seq <= size {
            self.push(record_bytes);
        }
    }

    pub fn push(&mut self, record_bytes: &[u8]) {
        let mut node = (0u32, leaf_hash(record_bytes));
        while let Some(&(height, left)) = self.peaks.last() {
            if height != node.0 {
                break;
            }
            self.peaks.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// The root of the tree of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut root)) = peaks.next() else { return EMPTY_ROOT };
        for (_, left) in peaks {
            root = node_hash(left, &root);
        }
        root
    }
}

/// RFC 9162's step for a node on the right edge of its subtree (LSB(fn) not set): shift both
/// indexes right until LSB(fn) is set or fn is 0, climbing past the levels it has no sibling on.
fn climb_right_edge(fn_: &mut u64, sn: &mut u64) {
    while *fn_ & 1 == 0 && *fn_ != 0 {
        *fn_ >>= 1;
        *sn >>= 1;
    }
}

/// Whether `proof` shows the record with these bytes at `seq` in the tree of `size` records
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn check_inclusion(proof: &[Hash], size: u64, root: &Hash, seq: u64, record_bytes: &[u8]) -> bool {
    let Some(index) = seq.checked_sub(1) else { return false };
    if index >= size || size > MAX_TREE_SIZE || proof.len() > 64 {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = leaf_hash(record_bytes);
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            climb_right_edge(&mut fn_, &mut sn);
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Whether `proof` shows the tree of `old` records with root `old_root` is a prefix of the
/// tree of `new` records with root `new_root` (RFC 9162 §2.1.4.2).
pub fn check_consistency(proof: &[Hash], old: u64, old_root: &Hash, new: u64, new_root: &Hash) -> bool {
    if old > new || new > MAX_TREE_SIZE || proof.len() > 128 {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // Every tree extends the empty one; there is nothing to prove.
        return proof.is_empty() && *old_root == EMPTY_ROOT;
    }
    // With old a power of two the old root is the first node of the path; prepend it.
    let path: Vec<Hash> = if old.is_power_of_two() {
        std::iter::once(*old_root).chain(proof.iter().copied()).collect()
    } else {
        proof.to_vec()
    };
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            climb_right_edge(&mut fn_, &mut sn);
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::MemoryStore;

    /// A store holding only the tree of `n` made-up records (leaf i = "record i").
    fn tree(n: u64) -> (MemoryStore, Vec<Vec<u8>>) {
        let store = MemoryStore::new();
        let leaves: Vec<Vec<u8>> = (1..=n).map(|i| format!("record {i}").into_bytes()).collect();
        for (i, bytes) in leaves.iter().enumerate() {
            let IndexUpdate::TreeHashes { first, hashes } = hashes_for(&store, i as u64 + 1, bytes).unwrap() else {
                unreachable!()
            };
            store.put_tree_hashes(first, &hashes).unwrap();
        }
        (store, leaves)
    }

    #[test]
    fn the_stored_tree_and_the_streamed_frontier_agree_at_every_size() {
        let (store, leaves) = tree(40);
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), EMPTY_ROOT);
        assert_eq!(root(&store, 0).unwrap(), EMPTY_ROOT);
        for (i, leaf) in leaves.iter().enumerate() {
            frontier.push(leaf);
            assert_eq!(frontier.root(), root(&store, i as u64 + 1).unwrap(), "size {}", i + 1);
        }
        // RFC 6962's two-leaf tree, by hand.
        let two = node_hash(&leaf_hash(&leaves[0]), &leaf_hash(&leaves[1]));
        assert_eq!(root(&store, 2).unwrap(), two);
    }

    #[test]
    fn every_inclusion_proof_checks_and_any_change_fails_it() {
        let (store, leaves) = tree(21);
        for size in 1..=21u64 {
            let root = root(&store, size).unwrap();
            for seq in 1..=size {
                let proof = inclusion_proof(&store, size, seq).unwrap();
                let bytes = &leaves[seq as usize - 1];
                assert!(check_inclusion(&proof, size, &root, seq, bytes), "size {size} seq {seq}");
                assert!(!check_inclusion(&proof, size, &root, seq, b"forged"), "size {size} seq {seq}");
                if size > 1 {
                    let other = if seq == 1 { 2 } else { seq - 1 };
                    assert!(!check_inclusion(&proof, size, &root, other, bytes), "moved {seq} to {other}");
                }
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i][0] ^= 1;
                    assert!(!check_inclusion(&bad, size, &root, seq, bytes));
                }
            }
        }
        assert!(!check_inclusion(&[], u64::MAX, &EMPTY_ROOT, 1, b"x"), "absurd sizes are refused, not a panic");
        assert!(!check_inclusion(&[], 1, &EMPTY_ROOT, 0, b"x"));
    }

    #[test]
    fn every_consistency_proof_checks_and_a_fork_fails() {
        let (store, _) = tree(19);
        let (forked, _) = {
            let s = MemoryStore::new();
            let leaves: Vec<Vec<u8>> = (1..=19u64)
                .map(|i| if i == 5 { b"rewritten".to_vec() } else { format!("record {i}").into_bytes() })
                .collect();
            for (i, bytes) in leaves.iter().enumerate() {
                let IndexUpdate::TreeHashes { first, hashes } = hashes_for(&s, i as u64 + 1, bytes).unwrap() else {
                    unreachable!()
                };
                s.put_tree_hashes(first, &hashes).unwrap();
            }
            (s, leaves)
        };
        for new in 1..=19u64 {
            let new_root = root(&store, new).unwrap();
            for old in 0..=new {
                let old_root = root(&store, old).unwrap();
                let proof = consistency_proof(&store, old, new).unwrap();
                assert!(check_consistency(&proof, old, &old_root, new, &new_root), "{old} -> {new}");
                // The forked tree agrees below record 5 only.
                let fork_root = root(&forked, new).unwrap();
                let fork_proof = consistency_proof(&forked, old, new).unwrap();
                let consistent = check_consistency(&fork_proof, old, &old_root, new, &fork_root);
                assert_eq!(consistent, old < 5, "fork {old} -> {new}");
                // And our checks agree with tlog_tiles' own.
                if old > 0 {
                    let theirs = tlog_tiles::check_tree(
                        &proof.iter().map(|h| tlog_tiles::Hash(*h)).collect(),
                        new,
                        tlog_tiles::Hash(new_root),
                        old,
                        tlog_tiles::Hash(old_root),
                    );
                    assert!(theirs.is_ok());
                }
            }
        }
        assert!(!check_consistency(&[], 3, &EMPTY_ROOT, 2, &EMPTY_ROOT));
        assert!(!check_consistency(&[], 1, &EMPTY_ROOT, u64::MAX, &EMPTY_ROOT));
    }

    #[test]
    fn a_missing_or_changed_tree_is_rebuilt_from_the_records() {
        use crate::core::chain::sign;
        use crate::core::record::{Payload, Unsigned};
        use crate::core::segment::ZERO_HASH;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let store = MemoryStore::new();
        let mut prev = ZERO_HASH;
        let mut frontier = Frontier::default();
        for seq in 1..=9 {
            let r = sign(Unsigned { seq, time_ns: seq, payload: Payload::Unmount, prev_hash: prev }, &key);
            prev = r.hash;
            frontier.push(&r.encode());
            store.commit(&r, &[]).unwrap();
        }
        assert!(!has_tree(&store, 9).unwrap());
        assert_eq!(repair(&store, 9).unwrap(), TreeRepair::Built);
        assert!(has_tree(&store, 9).unwrap());
        assert_eq!(root(&store, 9).unwrap(), frontier.root());
        assert_eq!(repair(&store, 9).unwrap(), TreeRepair::Sound);

        // A stored hash changed behind wormfs' back: found and rebuilt from the records.
        store.put_tree_hashes(tlog_tiles::stored_hash_index(3, 0), &[[7; 32]]).unwrap();
        assert_ne!(root(&store, 9).unwrap(), frontier.root());
        assert_eq!(repair(&store, 9).unwrap(), TreeRepair::Rebuilt);
        assert_eq!(root(&store, 9).unwrap(), frontier.root());
    }
}

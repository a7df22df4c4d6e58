//! Hashing appended bytes: each seal covers one segment [start, end) of a file, and a file's
//! seals chain through `file_hash` so the whole file can be re-hashed in one sequential read.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub const ZERO_HASH: Hash = [0u8; 32];

/// `file_hash` after a segment: SHA-256(previous file_hash ‖ segment hash ‖ end as u64 BE).
/// Binding `end` in makes a file's history of sizes part of what is signed.
pub fn next_file_hash(previous: &Hash, segment: &Hash, end: u64) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(segment);
    h.update(end.to_be_bytes());
    h.finalize().into()
}

/// The running hash of a file's unsealed bytes, fed as the bytes arrive so a seal never
/// re-reads the file.
#[derive(Clone, Default)]
pub struct SegmentHasher {
    hasher: Sha256,
}

impl std::fmt::Debug for SegmentHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentHasher")
    }
}

impl SegmentHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The segment's hash; the hasher starts over for the next segment.
    pub fn finish(&mut self) -> Hash {
        self.hasher.finalize_reset().into()
    }
}

pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    // Digits only: from_str_radix alone would also take a sign ("+d"), giving one key two spellings.
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_digits_only() {
        assert_eq!(from_hex("0d"), Some(vec![0x0d]));
        // Found by tests/fuzz.rs: a sign made a second spelling of the same bytes.
        assert_eq!(from_hex("+d"), None);
        assert_eq!(from_hex("-1"), None);
        assert_eq!(from_hex("0g"), None);
    }

    #[test]
    fn incremental_hash_equals_one_shot() {
        let mut h = SegmentHasher::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), sha256(b"hello world"));
        // After finish, a new segment starts empty.
        assert_eq!(h.finish(), sha256(b""));
    }

    #[test]
    fn file_hash_binds_previous_segment_and_end() {
        let seg = sha256(b"abc");
        let a = next_file_hash(&ZERO_HASH, &seg, 3);
        assert_ne!(a, next_file_hash(&ZERO_HASH, &seg, 4));
        assert_ne!(a, next_file_hash(&sha256(b"x"), &seg, 3));
        let mut manual = Vec::new();
        manual.extend_from_slice(&ZERO_HASH);
        manual.extend_from_slice(&seg);
        manual.extend_from_slice(&3u64.to_be_bytes());
        assert_eq!(a, sha256(&manual));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 1, 0xab]), "0001ab");
        assert_eq!(from_hex("0001ab"), Some(vec![0, 1, 0xab]));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }
}

//! `wormfs export`: the chain as an auditor needs it, without RocksDB. Every stored record,
//! byte for byte as the index holds it (damage included), under the key it is stored at, and
//! the head the index keeps: all `wormfs verify` reads from the index. `read` loads an export
//! into the in-memory store, so `wormfs verify --export` checks it with the same checker.
//!
//! The format (README "Exporting the records"), one line each, `\n`-terminated:
//!
//! ```text
//! wormfs-export 1
//! head SEQ HASH TIME_NS        (or `head none`: no head; `head unreadable`: garbled or missing beside records)
//! record KEY HEX               (one per stored record, in key order: KEY decimal, HEX the stored bytes)
//! ```

use std::fmt;
use std::io::Write;

use crate::core::segment::{from_hex, hex as to_hex};
use crate::core::store::{Head, Store, StoreError};
use crate::index::MemoryStore;

pub const MAGIC: &str = "wormfs-export 1";

#[derive(Debug)]
pub enum ExportError {
    Store(StoreError),
    Output(std::io::Error),
    /// The export file could not be read.
    Input(std::io::Error),
    /// The text is not an export: the line (1-based) and what is wrong with it.
    Malformed {
        line: usize,
        why: String,
    },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Store(e) => write!(f, "reading the index: {e}"),
            ExportError::Output(e) => write!(f, "writing the export: {e}"),
            ExportError::Input(e) => write!(f, "reading the export: {e}"),
            ExportError::Malformed { line, why } => write!(f, "not a wormfs export: line {line}: {why}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// Write every record of `store` and its head to `out`.
pub fn write(store: &dyn Store, out: &mut dyn Write) -> Result<(), ExportError> {
    writeln!(out, "{MAGIC}").map_err(ExportError::Output)?;
    match store.head() {
        Ok(Some(h)) => writeln!(out, "head {} {} {}", h.seq, to_hex(&h.hash), h.time_ns),
        Ok(None) => writeln!(out, "head none"),
        Err(StoreError::Corrupt(_)) => writeln!(out, "head unreadable"),
        Err(e) => return Err(ExportError::Store(e)),
    }
    .map_err(ExportError::Output)?;
    let mut failed = None;
    store
        .scan_records(0, &mut |key, bytes| match writeln!(out, "record {key} {}", to_hex(bytes)) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })
        .map_err(ExportError::Store)?;
    match failed {
        Some(e) => Err(ExportError::Output(e)),
        None => out.flush().map_err(ExportError::Output),
    }
}

/// The store the export in file `path` describes (`read`).
pub fn read_file(path: &std::path::Path) -> Result<MemoryStore, ExportError> {
    let text = std::fs::read_to_string(path).map_err(ExportError::Input)?;
    read(&text)
}

/// The store an export describes. Strict: anything but the three line forms, a key out of
/// order or repeated, or hex that is not lowercase pairs is refused, so one export has one
/// meaning.
pub fn read(text: &str) -> Result<MemoryStore, ExportError> {
    let bad = |line: usize, why: &str| ExportError::Malformed { line, why: why.to_string() };
    let Some(body) = text.strip_suffix('\n') else {
        return Err(bad(text.lines().count().max(1), "the last line does not end in a newline"));
    };
    let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, MAGIC)) => {}
        _ => return Err(bad(1, &format!("the first line is not {MAGIC:?}"))),
    }
    let store = MemoryStore::new();
    let (n, head) = lines.next().ok_or_else(|| bad(2, "no head line"))?;
    match head.split(' ').collect::<Vec<_>>()[..] {
        ["head", "none"] => store.raw_set_head(None),
        ["head", "unreadable"] => store.raw_set_head_unreadable(),
        ["head", seq, hash, time_ns] => {
            let hash = hex(hash).and_then(|h| <[u8; 32]>::try_from(h).ok()).ok_or_else(|| bad(n, "bad head hash"))?;
            let seq = number(seq).ok_or_else(|| bad(n, "bad head seq"))?;
            let time_ns = number(time_ns).ok_or_else(|| bad(n, "bad head time"))?;
            store.raw_set_head(Some(Head { seq, hash, time_ns }));
        }
        _ => return Err(bad(n, "expected `head SEQ HASH TIME_NS`, `head none` or `head unreadable`")),
    }
    let mut last = None;
    for (n, line) in lines {
        let ["record", key, bytes] = line.split(' ').collect::<Vec<_>>()[..] else {
            return Err(bad(n, "expected `record KEY HEX`"));
        };
        let key = number(key).ok_or_else(|| bad(n, "bad record key"))?;
        if last.is_some_and(|l| key <= l) {
            return Err(bad(n, "record keys must increase"));
        }
        last = Some(key);
        store.raw_put_record(key, hex(bytes).ok_or_else(|| bad(n, "bad record hex"))?);
    }
    Ok(store)
}

/// A decimal u64 in its one spelling (no sign, no leading zeros).
fn number(text: &str) -> Option<u64> {
    let n: u64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

/// Lowercase hex pairs, in their one spelling.
fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    from_hex(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(store: &MemoryStore) -> String {
        let mut out = Vec::new();
        write(store, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_export_reads_back_as_the_same_store_damage_included() {
        let store = MemoryStore::new();
        store.raw_put_record(1, vec![1, 2, 3]);
        store.raw_put_record(7, vec![]);
        store.raw_set_head(Some(Head { seq: 7, hash: [0xab; 32], time_ns: 42 }));
        let text = round_trip(&store);
        assert_eq!(text, format!("wormfs-export 1\nhead 7 {} 42\nrecord 1 010203\nrecord 7 \n", "ab".repeat(32)));
        assert_eq!(round_trip(&read(&text).unwrap()), text);
        let unreadable = "wormfs-export 1\nhead unreadable\nrecord 1 00\n";
        assert_eq!(round_trip(&read(unreadable).unwrap()), unreadable);
        assert_eq!(round_trip(&read("wormfs-export 1\nhead none\n").unwrap()), "wormfs-export 1\nhead none\n");
    }

    #[test]
    fn anything_but_the_one_spelling_is_refused() {
        for bad in [
            "",
            "wormfs-export 2\nhead none\n",
            "wormfs-export 1\nhead none",
            "wormfs-export 1\n",
            "wormfs-export 1\nhead  none\n",
            "wormfs-export 1\nhead 01 00 0\n",
            "wormfs-export 1\nhead none\nrecord 2 00\nrecord 1 00\n",
            "wormfs-export 1\nhead none\nrecord 1 00\nrecord 1 00\n",
            "wormfs-export 1\nhead none\nrecord 1 0A\n",
            "wormfs-export 1\nhead none\nrecord 1 0\n",
            "wormfs-export 1\nhead none\nrecord +1 00\n",
            "wormfs-export 1\nhead none\nrecord 1 00 \n",
            "wormfs-export 1\r\nhead none\n",
            "wormfs-export 1\nhead none\nrecord 1 \t00\n",
        ] {
            assert!(read(bad).is_err(), "accepted {bad:?}");
        }
    }
}

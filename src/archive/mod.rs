//! Off the box: sealed files copied to an S3 bucket with Object Lock, and checked there.
//!
//! - `s3`     the S3 calls (SigV4 by rusty-s3, sent by ureq): locked uploads, HEAD, GET,
//!   versions, retention and legal holds.
//! - `upload` `wormfs archive` (and the daemon's interval run): upload what is sealed and
//!   closed, record it, mirror retention and holds onto the objects, prune.
//! - `check`  `wormfs verify --archive`: every archived copy against the chain.
//!
//! Here: where a file goes in the bucket, and the byte check all three share.

pub mod check;
pub mod s3;
pub mod upload;

use std::io::Read;

use crate::core::history::CheckedRange;
use crate::core::path::RelPath;
use crate::core::segment::{hex, Hash, SegmentHasher};

/// Where the bucket is: the options `wormfs archive`, `wormfs verify --archive` and the
/// daemon share. Credentials come from the environment or the shared credentials file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// The S3 endpoint (default https://s3.REGION.amazonaws.com), e.g. https://minio.example:9000.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Path-style addressing (ENDPOINT/BUCKET/KEY), as MinIO, Ceph RGW and LocalStack expect.
    #[arg(long)]
    pub path_style: bool,
    /// The region to sign for (default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

impl S3Args {
    /// A client for `bucket` with the usual credentials.
    pub fn client(&self, bucket: &str) -> Result<s3::S3, s3::S3Error> {
        let endpoint =
            s3::Endpoint { url: self.endpoint.clone(), path_style: self.path_style, region: self.region.clone() };
        s3::S3::new(bucket, &endpoint, s3::credentials()?)
    }
}

/// The object metadata (`x-amz-meta-*`) that names the sealed bytes an object holds, so a
/// resumed run recognises its own upload.
pub const META_FILE_HASH: &str = "wormfs-file-hash";
pub const META_PATH: &str = "wormfs-path";

/// `s3://BUCKET[/PREFIX]` (or a bare bucket name) as (bucket, prefix).
pub fn parse_bucket_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        clean_prefix(prefix)?;
    }
    let valid = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid {
        return Err(format!(
            "`{url}` is not s3://BUCKET[/PREFIX] with a bucket name of 3-63 lowercase letters, digits, '-' or '.'"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// The key `path`'s bytes ending in seal `file_hash` are kept under: stable (a retry or a
/// resumed run finds the same key), distinct for every sealed state of the file (a file that
/// grew is archived again beside its earlier copy), and readable by a person browsing the
/// bucket. Bytes outside printable ASCII, and `%`, are percent-encoded.
pub fn object_key(prefix: &str, path: &RelPath, file_hash: &Hash) -> String {
    let mut key = String::new();
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('/');
    }
    key.push_str(&encode_path(path));
    key.push('@');
    key.push_str(&hex(file_hash));
    key
}

/// Whether `key` is a key `object_key` gives `path`'s bytes ending in `file_hash` under some
/// clean prefix: what verify and the daemon require of a recorded copy, so that no record can
/// name one object while the bytes went to another (a `..` segment, normalised away by the
/// HTTP client, moves an upload into another bucket).
pub fn key_names(key: &str, path: &RelPath, file_hash: &Hash) -> bool {
    let tail = object_key("", path, file_hash);
    match key.strip_suffix(&tail) {
        Some("") => true,
        Some(prefix) => prefix.strip_suffix('/').is_some_and(|p| clean_prefix(p).is_ok()),
        None => false,
    }
}

/// A key prefix must be plain segments: none empty, `.` or `..`, and nothing a URL would
/// reinterpret (`?`, `#`, `\`).
pub fn clean_prefix(prefix: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("prefix `{prefix}`: {why}"));
    if prefix.contains(['?', '#', '\\']) || prefix.chars().any(char::is_control) {
        return bad("has a character that is not safe in a key (? # \\ or a control character)");
    }
    if prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("has an empty, `.` or `..` segment");
    }
    Ok(())
}

/// The key of the receipt kept beside an archived file.
pub fn receipt_key(key: &str) -> String {
    format!("{key}.receipt")
}

/// A path as it appears in keys and metadata: printable ASCII as it is, other bytes `%XX`.
pub fn encode_path(path: &RelPath) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How bytes read failed to be the archived ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// [start, end) does not hash to its seal.
    Range { start: u64, end: u64 },
    /// The ranges do not cover [0, size) one after another (a broken history: nothing to check
    /// against).
    Uncovered,
    /// Fewer bytes than `size`, or more.
    Size { read: u64 },
}

/// Read exactly `size` bytes from `reader` and check them against `ranges`, which must cover
/// [0, size). The SHA-256 of the whole (what S3 checks an upload against), or the first
/// mismatch. `progress` is told of every chunk read.
pub fn check_bytes(
    reader: &mut dyn Read,
    ranges: &[CheckedRange],
    size: u64,
    progress: &dyn Fn(u64),
) -> std::io::Result<Result<Hash, Mismatch>> {
    let covered = ranges.first().map_or(size == 0, |r| r.start == 0)
        && ranges.windows(2).all(|w| w[0].end == w[1].start)
        && ranges.last().map_or(0, |r| r.end) == size;
    if !covered {
        return Ok(Err(Mismatch::Uncovered));
    }
    let mut whole = SegmentHasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    for range in ranges {
        let mut segment = SegmentHasher::default();
        let mut left = range.end - range.start;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                return Ok(Err(Mismatch::Size { read }));
            }
            segment.update(&buf[..n]);
            whole.update(&buf[..n]);
            left -= n as u64;
            read += n as u64;
            progress(n as u64);
        }
        if segment.finish() != range.hash {
            return Ok(Err(Mismatch::Range { start: range.start, end: range.end }));
        }
    }
    // Nothing may follow the archived bytes.
    let mut extra = [0u8; 1];
    if reader.read(&mut extra)? != 0 {
        return Ok(Err(Mismatch::Size { read: read + 1 }));
    }
    Ok(Ok(whole.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::sha256;

    fn ranges(parts: &[&[u8]]) -> Vec<CheckedRange> {
        let mut at = 0;
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let r = CheckedRange { seq: i as u64 + 1, start: at, end: at + p.len() as u64, hash: sha256(p) };
                at = r.end;
                r
            })
            .collect()
    }

    #[test]
    fn bytes_check_against_every_seal_and_nothing_more() {
        let seals = ranges(&[b"hello ", b"world"]);
        let ok = check_bytes(&mut &b"hello world"[..], &seals, 11, &|_| {}).unwrap();
        assert_eq!(ok, Ok(sha256(b"hello world")));
        let changed = check_bytes(&mut &b"hello World"[..], &seals, 11, &|_| {}).unwrap();
        assert_eq!(changed, Err(Mismatch::Range { start: 6, end: 11 }));
        let short = check_bytes(&mut &b"hello wor"[..], &seals, 11, &|_| {}).unwrap();
        assert_eq!(short, Err(Mismatch::Size { read: 9 }));
        let long = check_bytes(&mut &b"hello world!"[..], &seals, 11, &|_| {}).unwrap();
        assert_eq!(long, Err(Mismatch::Size { read: 12 }));
        let gap = vec![seals[1].clone()];
        assert_eq!(check_bytes(&mut &b"world"[..], &gap, 11, &|_| {}).unwrap(), Err(Mismatch::Uncovered));
    }

    #[test]
    fn keys_are_stable_readable_and_escape_odd_bytes() {
        let path = RelPath::parse(std::ffi::OsStr::new("app/a b%.log")).unwrap();
        let key = object_key("/fleet/web1/", &path, &[0xab; 32]);
        assert_eq!(key, format!("fleet/web1/app/a%20b%25.log@{}", "ab".repeat(32)));
        assert_eq!(object_key("", &path, &[0xab; 32]), format!("app/a%20b%25.log@{}", "ab".repeat(32)));
        assert_eq!(receipt_key("k"), "k.receipt");
    }

    #[test]
    fn bucket_urls_name_a_valid_bucket() {
        assert_eq!(parse_bucket_url("s3://logs-1/web"), Ok(("logs-1".into(), "web".into())));
        assert_eq!(parse_bucket_url("logs-1"), Ok(("logs-1".into(), String::new())));
        assert!(parse_bucket_url("s3://Logs").is_err());
        assert!(parse_bucket_url("s3://a").is_err());
        assert!(parse_bucket_url("s3://logs/../nolock").is_err(), "a prefix that leaves the bucket");
        assert!(parse_bucket_url("s3://logs/a//b").is_err());
        assert!(parse_bucket_url("s3://logs/a?x").is_err());
    }

    #[test]
    fn only_the_key_wormfs_gives_the_bytes_names_them() {
        let path = RelPath::parse(std::ffi::OsStr::new("app/a.log")).unwrap();
        let hash = [0xcd; 32];
        let key = object_key("web1", &path, &hash);
        assert!(key_names(&key, &path, &hash));
        assert!(key_names(&object_key("", &path, &hash), &path, &hash));
        assert!(!key_names(&format!("../nolock/{}", object_key("", &path, &hash)), &path, &hash));
        assert!(!key_names(&format!("x{}", object_key("", &path, &hash)), &path, &hash));
        assert!(!key_names(&object_key("web1", &path, &[0; 32]), &path, &hash));
    }
}

//! Chain records and their canonical, versioned binary encoding (documented in the README,
//! "Record format"). Decoding takes untrusted bytes: it checks every length and never panics.
//!
//! ```text
//! record  = body ‖ hash[32] ‖ signature[64]
//! body    = version u8 ‖ seq u64 ‖ time_ns u64 ‖ kind u8 ‖ payload_len u32 ‖ payload ‖ prev_hash[32]
//! hash    = SHA-256(body)           signature = Ed25519(hash)
//! ```
//! Integers are big-endian; variable-length fields inside a payload are `u32 length ‖ bytes`.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use super::path::RelPath;
use super::segment::{sha256, Hash};

pub const FORMAT_VERSION: u8 = 1;
pub const SIGNATURE_LEN: usize = 64;
/// An upper bound that keeps a hostile length field from making us allocate gigabytes.
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// Record kinds, as their one-byte tags. Tag 10 is reserved; a verifier must treat an unknown
/// tag as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Mount = 1,
    Unmount = 2,
    Create = 3,
    Seal = 4,
    Recovered = 5,
    Delete = 6,
    Hold = 7,
    Retention = 8,
    KeyRotate = 9,
    Rename = 11,
    Truncate = 12,
    ClockJump = 13,
    Access = 14,
    Damaged = 15,
    Aborted = 16,
    Archived = 17,
    Pruned = 18,
}

impl Kind {
    fn from_tag(tag: u8) -> Option<Kind> {
        Some(match tag {
            1 => Kind::Mount,
            2 => Kind::Unmount,
            3 => Kind::Create,
            4 => Kind::Seal,
            5 => Kind::Recovered,
            6 => Kind::Delete,
            7 => Kind::Hold,
            8 => Kind::Retention,
            9 => Kind::KeyRotate,
            11 => Kind::Rename,
            12 => Kind::Truncate,
            13 => Kind::ClockJump,
            14 => Kind::Access,
            15 => Kind::Damaged,
            16 => Kind::Aborted,
            17 => Kind::Archived,
            18 => Kind::Pruned,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Mount => "Mount",
            Kind::Unmount => "Unmount",
            Kind::Create => "Create",
            Kind::Seal => "Seal",
            Kind::Recovered => "Recovered",
            Kind::Delete => "Delete",
            Kind::Hold => "Hold",
            Kind::Retention => "Retention",
            Kind::KeyRotate => "KeyRotate",
            Kind::Rename => "Rename",
            Kind::Truncate => "Truncate",
            Kind::ClockJump => "ClockJump",
            Kind::Access => "Access",
            Kind::Damaged => "Damaged",
            Kind::Aborted => "Aborted",
            Kind::Archived => "Archived",
            Kind::Pruned => "Pruned",
        }
    }
}

/// One segment [start, end) of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: RelPath,
    pub start: u64,
    pub end: u64,
    pub segment_hash: Hash,
    /// SHA-256(previous file_hash ‖ segment_hash ‖ end), zeros before the first segment.
    pub file_hash: Hash,
    /// The file may not be deleted, renamed or truncated before this time (chain clock, ns).
    pub retain_until_ns: u64,
}

/// The file's bytes [0, size), whose seals end in `file_hash`, uploaded to S3 as version
/// `version_id` of `key` in `bucket`, locked in COMPLIANCE mode until `retain_until_ns`, with its
/// receipt beside it (`key` + ".receipt", version `receipt_version_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub path: RelPath,
    pub size: u64,
    pub file_hash: Hash,
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub receipt_version_id: String,
    pub retain_until_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The daemon started: its version, the signing key's id, the data directory it serves.
    Mount {
        software: String,
        key_id: [u8; 8],
        data_dir: Vec<u8>,
    },
    /// Clean stop: every tail was sealed before this.
    Unmount,
    /// A regular file was created through the mount.
    Create {
        path: RelPath,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Seal(Segment),
    /// Bytes found unsealed at mount after an unclean stop; `adopted` when the whole file was
    /// unknown to the index (it appeared in DATA_DIR without passing through wormfs).
    Recovered {
        segment: Segment,
        adopted: bool,
    },
    /// A file whose retention had expired was deleted (recorded before the unlink).
    Delete {
        path: RelPath,
        size: u64,
        file_hash: Hash,
        retain_until_ns: u64,
    },
    /// A legal hold was set (`set`) or cleared on a file or directory (the root: the whole mount).
    Hold {
        prefix: RelPath,
        set: bool,
        reason: String,
        uid: u32,
    },
    /// The signing key moved to a new epoch: signed by the key of the epoch that ends here, it
    /// certifies `public_key` as the key of `epoch`, which signs every record after this one until
    /// the next KeyRotate, and none dated `2 × epoch_ns` or more after this record. Its
    /// `prev_hash` is the head the old key certifies last.
    KeyRotate {
        epoch: u64,
        public_key: [u8; 32],
        epoch_ns: u64,
    },
    /// A file's retention was extended to `retain_until_ns` by `uid`.
    Retention {
        path: RelPath,
        retain_until_ns: u64,
        uid: u32,
    },
    /// A file whose retention had expired was renamed; its seals continue under `to`.
    Rename {
        from: RelPath,
        to: RelPath,
    },
    /// A file whose retention had expired was truncated; later seals start at `new_size`.
    /// `kept_hash` is SHA-256 of bytes [kept_start, new_size): the part of the segment the cut
    /// went through that stays (`kept_start` is that segment's start, or `new_size` when the
    /// cut falls on a seal boundary), so every byte that stays remains checkable.
    Truncate {
        path: RelPath,
        old_size: u64,
        new_size: u64,
        kept_start: u64,
        kept_hash: Hash,
    },
    /// The system clock was behind the newest record: records use `floor_ns` instead.
    ClockJump {
        system_ns: u64,
        floor_ns: u64,
    },
    /// A file was opened for reading (with `--audit-reads`): who read the evidence.
    Access {
        path: RelPath,
        uid: u32,
        pid: u32,
        command: String,
    },
    /// wormfs found a file whose size is not its sealed size and that it did not change: more
    /// bytes (appended behind its back; they are not sealed, and the file takes no appends) or
    /// fewer (truncated behind its back).
    Damaged {
        path: RelPath,
        sealed: u64,
        size: u64,
    },
    /// The Delete, Rename or Truncate recorded as record `change` did not happen: its system
    /// call failed with `errno`, or (errno 0) the mount after a stop found it undone on disk.
    /// The file's history is what it was before that record.
    Aborted {
        change: u64,
        errno: u32,
    },
    /// A file's sealed bytes went to S3 (recorded after the upload succeeded).
    Archived(Archive),
    /// A file whose retention had expired was deleted from DATA_DIR because record `archived`
    /// (an Archived of exactly these bytes) keeps it in S3, checked just before (recorded before
    /// the unlink, like Delete).
    Pruned {
        path: RelPath,
        size: u64,
        file_hash: Hash,
        retain_until_ns: u64,
        archived: u64,
    },
}

impl Payload {
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Mount { .. } => Kind::Mount,
            Payload::Unmount => Kind::Unmount,
            Payload::Create { .. } => Kind::Create,
            Payload::Seal(_) => Kind::Seal,
            Payload::Recovered { .. } => Kind::Recovered,
            Payload::Delete { .. } => Kind::Delete,
            Payload::Hold { .. } => Kind::Hold,
            Payload::Retention { .. } => Kind::Retention,
            Payload::KeyRotate { .. } => Kind::KeyRotate,
            Payload::Rename { .. } => Kind::Rename,
            Payload::Truncate { .. } => Kind::Truncate,
            Payload::ClockJump { .. } => Kind::ClockJump,
            Payload::Access { .. } => Kind::Access,
            Payload::Damaged { .. } => Kind::Damaged,
            Payload::Aborted { .. } => Kind::Aborted,
            Payload::Archived(_) => Kind::Archived,
            Payload::Pruned { .. } => Kind::Pruned,
        }
    }

    /// The file segment this record seals, if any.
    pub fn segment(&self) -> Option<&Segment> {
        match self {
            Payload::Seal(s) | Payload::Recovered { segment: s, .. } => Some(s),
            _ => None,
        }
    }

    /// The file (or, for Hold, the directory) this record is about, if any. For Rename, the
    /// old name.
    pub fn path(&self) -> Option<&RelPath> {
        match self {
            Payload::Create { path, .. }
            | Payload::Delete { path, .. }
            | Payload::Retention { path, .. }
            | Payload::Truncate { path, .. }
            | Payload::Access { path, .. }
            | Payload::Damaged { path, .. }
            | Payload::Archived(Archive { path, .. })
            | Payload::Pruned { path, .. } => Some(path),
            Payload::Hold { prefix, .. } => Some(prefix),
            Payload::Rename { from, .. } => Some(from),
            other => other.segment().map(|s| &s.path),
        }
    }

    /// Whether this record is about `path` (Rename is about both of its names).
    pub fn concerns(&self, path: &RelPath) -> bool {
        match self {
            Payload::Rename { from, to } => from == path || to == path,
            Payload::Hold { prefix, .. } => path.is_under(prefix),
            other => other.path() == Some(path),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Mount { software, key_id, data_dir } => {
                put_bytes(out, software.as_bytes());
                put_bytes(out, key_id);
                put_bytes(out, data_dir);
            }
            Payload::Unmount => {}
            Payload::Create { path, mode, uid, gid } => {
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&mode.to_be_bytes());
                out.extend_from_slice(&uid.to_be_bytes());
                out.extend_from_slice(&gid.to_be_bytes());
            }
            Payload::Seal(s) => encode_segment(s, out),
            Payload::Recovered { segment, adopted } => {
                encode_segment(segment, out);
                out.push(u8::from(*adopted));
            }
            Payload::Delete { path, size, file_hash, retain_until_ns } => {
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(file_hash);
                out.extend_from_slice(&retain_until_ns.to_be_bytes());
            }
            Payload::Hold { prefix, set, reason, uid } => {
                put_bytes(out, prefix.as_os_str().as_bytes());
                out.push(u8::from(*set));
                put_bytes(out, reason.as_bytes());
                out.extend_from_slice(&uid.to_be_bytes());
            }
            Payload::Retention { path, retain_until_ns, uid } => {
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&retain_until_ns.to_be_bytes());
                out.extend_from_slice(&uid.to_be_bytes());
            }
            Payload::Rename { from, to } => {
                put_bytes(out, from.as_os_str().as_bytes());
                put_bytes(out, to.as_os_str().as_bytes());
            }
            Payload::KeyRotate { epoch, public_key, epoch_ns } => {
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(public_key);
                out.extend_from_slice(&epoch_ns.to_be_bytes());
            }
            Payload::Truncate { path, old_size, new_size, kept_start, kept_hash } => {
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&old_size.to_be_bytes());
                out.extend_from_slice(&new_size.to_be_bytes());
                out.extend_from_slice(&kept_start.to_be_bytes());
                out.extend_from_slice(kept_hash);
            }
            Payload::ClockJump { system_ns, floor_ns } => {
                out.extend_from_slice(&system_ns.to_be_bytes());
                out.extend_from_slice(&floor_ns.to_be_bytes());
            }
            Payload::Access { path, uid, pid, command } => {
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&uid.to_be_bytes());
                out.extend_from_slice(&pid.to_be_bytes());
                put_bytes(out, command.as_bytes());
            }
            Payload::Damaged { path, sealed, size } => {
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&sealed.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
            }
            Payload::Aborted { change, errno } => {
                out.extend_from_slice(&change.to_be_bytes());
                out.extend_from_slice(&errno.to_be_bytes());
            }
            Payload::Archived(a) => {
                put_bytes(out, a.path.as_os_str().as_bytes());
                out.extend_from_slice(&a.size.to_be_bytes());
                out.extend_from_slice(&a.file_hash);
                put_bytes(out, a.bucket.as_bytes());
                put_bytes(out, a.key.as_bytes());
                put_bytes(out, a.version_id.as_bytes());
                put_bytes(out, a.receipt_version_id.as_bytes());
                out.extend_from_slice(&a.retain_until_ns.to_be_bytes());
            }
            Payload::Pruned { path, size, file_hash, retain_until_ns, archived } => {
                put_bytes(out, path.as_os_str().as_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(file_hash);
                out.extend_from_slice(&retain_until_ns.to_be_bytes());
                out.extend_from_slice(&archived.to_be_bytes());
            }
        }
    }

    fn decode(kind: Kind, r: &mut Reader<'_>) -> Result<Payload, DecodeError> {
        Ok(match kind {
            Kind::Mount => {
                let software = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| DecodeError::BadText)?;
                let key_id = r.bytes()?.try_into().map_err(|_| DecodeError::BadLength)?;
                Payload::Mount { software, key_id, data_dir: r.bytes()?.to_vec() }
            }
            Kind::Unmount => Payload::Unmount,
            Kind::Create => Payload::Create { path: r.path()?, mode: r.u32()?, uid: r.u32()?, gid: r.u32()? },
            Kind::Seal => Payload::Seal(decode_segment(r)?),
            Kind::Recovered => {
                let segment = decode_segment(r)?;
                Payload::Recovered { segment, adopted: r.flag()? }
            }
            Kind::Delete => {
                Payload::Delete { path: r.path()?, size: r.u64()?, file_hash: r.fixed()?, retain_until_ns: r.u64()? }
            }
            Kind::Hold => Payload::Hold {
                prefix: r.prefix()?,
                set: r.flag()?,
                reason: String::from_utf8(r.bytes()?.to_vec()).map_err(|_| DecodeError::BadText)?,
                uid: r.u32()?,
            },
            Kind::Retention => Payload::Retention { path: r.path()?, retain_until_ns: r.u64()?, uid: r.u32()? },
            Kind::Rename => Payload::Rename { from: r.path()?, to: r.path()? },
            Kind::KeyRotate => Payload::KeyRotate { epoch: r.u64()?, public_key: r.fixed()?, epoch_ns: r.u64()? },
            Kind::Truncate => {
                let (path, old_size, new_size, kept_start, kept_hash) =
                    (r.path()?, r.u64()?, r.u64()?, r.u64()?, r.fixed()?);
                if new_size > old_size || kept_start > new_size {
                    return Err(DecodeError::BadSegment);
                }
                Payload::Truncate { path, old_size, new_size, kept_start, kept_hash }
            }
            Kind::ClockJump => Payload::ClockJump { system_ns: r.u64()?, floor_ns: r.u64()? },
            Kind::Access => Payload::Access {
                path: r.path()?,
                uid: r.u32()?,
                pid: r.u32()?,
                command: String::from_utf8(r.bytes()?.to_vec()).map_err(|_| DecodeError::BadText)?,
            },
            Kind::Damaged => Payload::Damaged { path: r.path()?, sealed: r.u64()?, size: r.u64()? },
            Kind::Aborted => Payload::Aborted { change: r.u64()?, errno: r.u32()? },
            Kind::Archived => Payload::Archived(Archive {
                path: r.path()?,
                size: r.u64()?,
                file_hash: r.fixed()?,
                bucket: r.text()?,
                key: r.text()?,
                version_id: r.text()?,
                receipt_version_id: r.text()?,
                retain_until_ns: r.u64()?,
            }),
            Kind::Pruned => Payload::Pruned {
                path: r.path()?,
                size: r.u64()?,
                file_hash: r.fixed()?,
                retain_until_ns: r.u64()?,
                archived: r.u64()?,
            },
        })
    }
}

fn encode_segment(s: &Segment, out: &mut Vec<u8>) {
    put_bytes(out, s.path.as_os_str().as_bytes());
    out.extend_from_slice(&s.start.to_be_bytes());
    out.extend_from_slice(&s.end.to_be_bytes());
    out.extend_from_slice(&s.segment_hash);
    out.extend_from_slice(&s.file_hash);
    out.extend_from_slice(&s.retain_until_ns.to_be_bytes());
}

fn decode_segment(r: &mut Reader<'_>) -> Result<Segment, DecodeError> {
    let s = Segment {
        path: r.path()?,
        start: r.u64()?,
        end: r.u64()?,
        segment_hash: r.fixed()?,
        file_hash: r.fixed()?,
        retain_until_ns: r.u64()?,
    };
    if s.end < s.start {
        return Err(DecodeError::BadSegment);
    }
    Ok(s)
}

/// The fields a record is made of, before hashing and signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsigned {
    pub seq: u64,
    pub time_ns: u64,
    pub payload: Payload,
    pub prev_hash: Hash,
}

impl Unsigned {
    /// The canonical encoding of every field before `hash`.
    pub fn body(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        self.payload.encode(&mut payload);
        let mut out = Vec::with_capacity(1 + 8 + 8 + 1 + 4 + payload.len() + 32);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ns.to_be_bytes());
        out.push(self.payload.kind() as u8);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&self.prev_hash);
        out
    }

    pub fn hash(&self) -> Hash {
        sha256(&self.body())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub fields: Unsigned,
    /// As stored; a checker recomputes it from `fields` rather than trusting it.
    pub hash: Hash,
    pub signature: [u8; SIGNATURE_LEN],
}

impl Record {
    pub fn seq(&self) -> u64 {
        self.fields.seq
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.fields.body();
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parse one record. Strict: trailing bytes, unknown kinds or versions, and payloads
    /// that do not fill their declared length are errors, so an encoding has one meaning.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(DecodeError::TooLong);
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let seq = r.u64()?;
        let time_ns = r.u64()?;
        let tag = r.u8()?;
        let kind = Kind::from_tag(tag).ok_or(DecodeError::UnknownKind(tag))?;
        let payload_bytes = r.bytes()?;
        let mut pr = Reader { buf: payload_bytes, pos: 0 };
        let payload = Payload::decode(kind, &mut pr)?;
        if pr.pos != payload_bytes.len() {
            return Err(DecodeError::TrailingBytes);
        }
        let prev_hash = r.fixed()?;
        let hash = r.fixed()?;
        let signature = r.fixed()?;
        if r.pos != bytes.len() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Record { fields: Unsigned { seq, time_ns, payload, prev_hash }, hash, signature })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    TooLong,
    TrailingBytes,
    UnknownVersion(u8),
    UnknownKind(u8),
    BadLength,
    BadText,
    BadPath,
    BadFlag,
    BadSegment,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "record is truncated"),
            DecodeError::TooLong => write!(f, "record is longer than {MAX_RECORD_LEN} bytes"),
            DecodeError::TrailingBytes => write!(f, "record has trailing bytes"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown record format version {v}"),
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::BadLength => write!(f, "a fixed-size field has the wrong length"),
            DecodeError::BadText => write!(f, "a text field is not UTF-8"),
            DecodeError::BadPath => write!(f, "a path field is not a clean relative path"),
            DecodeError::BadFlag => write!(f, "a flag byte has an undefined value"),
            DecodeError::BadSegment => write!(f, "a segment ends before it starts"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.fixed::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.fixed()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.fixed()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// UTF-8 text (an S3 bucket, key or version id).
    fn text(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::BadText)
    }

    /// A file's path: never the root.
    fn path(&mut self) -> Result<RelPath, DecodeError> {
        let path = self.prefix()?;
        if path.is_root() {
            return Err(DecodeError::BadPath);
        }
        Ok(path)
    }

    /// A directory prefix: the root (empty) is allowed and means the whole mount.
    fn prefix(&mut self) -> Result<RelPath, DecodeError> {
        let raw = self.bytes()?;
        if raw.is_empty() {
            return Ok(RelPath::root());
        }
        RelPath::parse(OsStr::from_bytes(raw)).map_err(|_| DecodeError::BadPath)
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadFlag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> RelPath {
        RelPath::parse(OsStr::new(p)).unwrap()
    }

    pub(crate) fn samples() -> Vec<Payload> {
        let seg = Segment {
            path: path("app/today.log"),
            start: 10,
            end: 25,
            segment_hash: [7; 32],
            file_hash: [9; 32],
            retain_until_ns: 1_800_000_000_000_000_000,
        };
        vec![
            Payload::Mount { software: "wormfs 0.1.0".into(), key_id: [1; 8], data_dir: b"/srv/logs".to_vec() },
            Payload::Unmount,
            Payload::Create { path: path("a.log"), mode: 0o100640, uid: 1000, gid: 4 },
            Payload::Seal(seg.clone()),
            Payload::Recovered { segment: seg, adopted: true },
            Payload::Delete { path: path("old.log"), size: 99, file_hash: [4; 32], retain_until_ns: 12 },
            Payload::Hold { prefix: path("case/42"), set: true, reason: "subpoena 42".into(), uid: 0 },
            Payload::Hold { prefix: RelPath::root(), set: false, reason: "released".into(), uid: 7 },
            Payload::Retention { path: path("a.log"), retain_until_ns: 77, uid: 0 },
            Payload::Rename { from: path("a.log"), to: path("archive/a.log") },
            Payload::Truncate { path: path("a.log"), old_size: 10, new_size: 4, kept_start: 2, kept_hash: [6; 32] },
            Payload::ClockJump { system_ns: 5, floor_ns: 9 },
            Payload::Access { path: path("a.log"), uid: 1000, pid: 4242, command: "cat".into() },
            Payload::Damaged { path: path("a.log"), sealed: 10, size: 12 },
            Payload::Aborted { change: 7, errno: 18 },
            Payload::KeyRotate { epoch: 3, public_key: [8; 32], epoch_ns: 900_000_000_000 },
        ]
    }

    fn record(payload: Payload) -> Record {
        let fields = Unsigned { seq: 42, time_ns: 1_700_000_000_123_456_789, payload, prev_hash: [3; 32] };
        let hash = fields.hash();
        Record { fields, hash, signature: [5; 64] }
    }

    #[test]
    fn every_kind_round_trips() {
        for payload in samples() {
            let r = record(payload);
            assert_eq!(Record::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn body_layout_is_as_documented() {
        let r = record(Payload::Unmount);
        let bytes = r.encode();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(&bytes[1..9], &42u64.to_be_bytes());
        assert_eq!(&bytes[9..17], &1_700_000_000_123_456_789u64.to_be_bytes());
        assert_eq!(bytes[17], Kind::Unmount as u8);
        assert_eq!(&bytes[18..22], &0u32.to_be_bytes());
        assert_eq!(&bytes[22..54], &[3; 32]);
        assert_eq!(&bytes[54..86], &sha256(&bytes[..54]));
        assert_eq!(bytes.len(), 86 + 64);
    }

    #[test]
    fn a_truncate_keeps_its_cut_inside_the_file() {
        let truncate = |new_size, kept_start| {
            let payload =
                Payload::Truncate { path: path("a.log"), old_size: 10, new_size, kept_start, kept_hash: [0; 32] };
            Record::decode(&record(payload).encode())
        };
        assert!(truncate(4, 4).is_ok());
        assert_eq!(truncate(4, 5), Err(DecodeError::BadSegment), "the kept part starts after the cut");
        assert_eq!(truncate(11, 0), Err(DecodeError::BadSegment), "a truncate never grows");
    }

    #[test]
    fn every_truncation_is_an_error() {
        for payload in samples() {
            let bytes = record(payload).encode();
            for len in 0..bytes.len() {
                assert!(Record::decode(&bytes[..len]).is_err(), "prefix of {len} bytes decoded");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Record::decode(&longer), Err(DecodeError::TrailingBytes));
        }
    }

    #[test]
    fn unknown_versions_kinds_and_paths_are_rejected() {
        let mut bytes = record(Payload::Unmount).encode();
        bytes[0] = 2;
        assert_eq!(Record::decode(&bytes), Err(DecodeError::UnknownVersion(2)));
        let mut bytes = record(Payload::Unmount).encode();
        bytes[17] = 10;
        assert_eq!(Record::decode(&bytes), Err(DecodeError::UnknownKind(10)));
        let bad = Payload::Create { path: RelPath::root(), mode: 0, uid: 0, gid: 0 };
        assert_eq!(Record::decode(&record(bad).encode()), Err(DecodeError::BadPath));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small xorshift generator: deterministic, no extra dependency.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid: Vec<Vec<u8>> = samples().into_iter().map(|p| record(p).encode()).collect();
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 300) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                // Mutations of valid records reach deeper into the decoder.
                let mut b = valid[i % valid.len()].clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
                b
            };
            let _ = Record::decode(&bytes);
        }
    }
}

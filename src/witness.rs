//! Submitting checkpoints to C2SP tlog-witnesses (`POST <url>/add-checkpoint`): the old size
//! the witness last cosigned, a consistency proof from it, and the signed checkpoint; the
//! answer is the witness' cosignature line, checked before it is kept.
//!
//! Plain `http://` only: a witness behind TLS is reached through a local TLS proxy (the README
//! says so). The client is a minimal HTTP/1.1 exchange over one connection.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::checkpoint::{cosignature_verifies, Checkpoint, WitnessKey};
use crate::core::merkle;
use crate::core::store::{Store, StoreError};
use crate::keys::base64_encode;

/// How long a witness gets to connect and to answer: it must never hold up the daemon long.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum WitnessError {
    BadUrl(String),
    Unreachable(std::io::Error),
    /// The witness' last cosigned size is not the one we sent (409): it says which it is.
    Conflict {
        their_size: u64,
    },
    /// The witness has cosigned a larger tree than ours: our chain lost records (a rollback),
    /// or this is another log under the same origin.
    Ahead {
        their_size: u64,
        ours: u64,
    },
    /// Another refusal: the HTTP status and the witness' message.
    Refused {
        status: u16,
        body: String,
    },
    /// A 200 whose body is not a valid cosignature from the witness' key on our checkpoint.
    BadCosignature(String),
    Proof(StoreError),
}

impl fmt::Display for WitnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WitnessError::BadUrl(u) => write!(f, "{u:?} is not an http://HOST:PORT[/PREFIX] URL"),
            WitnessError::Unreachable(e) => write!(f, "unreachable: {e}"),
            WitnessError::Conflict { their_size } => write!(f, "it last cosigned tree size {their_size}"),
            WitnessError::Ahead { their_size, ours } => write!(
                f,
                "it has cosigned tree size {their_size}, larger than this chain's {ours}: records were dropped from the chain, or another log uses this origin"
            ),
            WitnessError::Refused { status, body } => write!(f, "refused ({status}): {}", body.trim()),
            WitnessError::BadCosignature(b) => write!(f, "its answer is not a valid cosignature: {:?}", b.trim()),
            WitnessError::Proof(e) => write!(f, "cannot prove consistency: {e}"),
        }
    }
}

impl std::error::Error for WitnessError {}

/// One witness the log submits to, and the tree size it last cosigned (0 until it says).
#[derive(Debug, Clone)]
pub struct Witness {
    pub url: String,
    pub key: WitnessKey,
    pub cosigned_size: u64,
}

impl Witness {
    pub fn new(url: &str, key: WitnessKey) -> Witness {
        Witness { url: url.trim_end_matches('/').to_string(), key, cosigned_size: 0 }
    }

    /// Get `cp` cosigned: submit it from the size this witness last cosigned, and once more
    /// from the size it names if that differs. Returns the verified cosignature line.
    pub fn cosign(&mut self, store: &dyn Store, cp: &Checkpoint) -> Result<String, WitnessError> {
        let mut old = self.cosigned_size.min(cp.size);
        for attempt in 0..2 {
            match self.add_checkpoint(store, cp, old) {
                Ok(line) => {
                    self.cosigned_size = cp.size;
                    return Ok(line);
                }
                Err(WitnessError::Conflict { their_size }) if their_size > cp.size => {
                    return Err(WitnessError::Ahead { their_size, ours: cp.size })
                }
                Err(WitnessError::Conflict { their_size }) if attempt == 0 && their_size != old => old = their_size,
                Err(e) => return Err(e),
            }
        }
        Err(WitnessError::Conflict { their_size: old })
    }

    fn add_checkpoint(&self, store: &dyn Store, cp: &Checkpoint, old: u64) -> Result<String, WitnessError> {
        let proof = merkle::consistency_proof(store, old, cp.size).map_err(WitnessError::Proof)?;
        // From the index's stored tree: checked before a witness sees it.
        let old_root = merkle::root(store, old).map_err(WitnessError::Proof)?;
        if !merkle::check_consistency(&proof, old, &old_root, cp.size, &cp.root) {
            return Err(WitnessError::Proof(StoreError::Corrupt(format!(
                "the index's Merkle tree gives no valid proof from size {old} to {} (changed outside wormfs?)",
                cp.size
            ))));
        }
        let mut body = format!("old {old}\n");
        for hash in &proof {
            body.push_str(&base64_encode(hash));
            body.push('\n');
        }
        body.push('\n');
        let mut body = body.into_bytes();
        body.extend_from_slice(&cp.to_note());
        let (status, answer) = post(&format!("{}/add-checkpoint", self.url), &body)?;
        match status {
            200 if cosignature_verifies(cp, &self.key, &answer) => Ok(answer.trim_end().to_string()),
            200 => Err(WitnessError::BadCosignature(answer)),
            409 => match answer.trim().parse() {
                Ok(their_size) => Err(WitnessError::Conflict { their_size }),
                Err(_) => Err(WitnessError::Refused { status, body: answer }),
            },
            _ => Err(WitnessError::Refused { status, body: answer }),
        }
    }
}

/// POST `body` to an http:// URL; the status and the body of the answer.
fn post(url: &str, body: &[u8]) -> Result<(u16, String), WitnessError> {
    let bad = || WitnessError::BadUrl(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host.to_socket_addrs().map_err(WitnessError::Unreachable)?.next().ok_or_else(bad)?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(WitnessError::Unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(WitnessError::Unreachable)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).map_err(WitnessError::Unreachable)?;
    let answer = read_answer(&mut stream)?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n");
    let Some(split) = split else {
        return Err(WitnessError::Refused { status: 0, body: String::from_utf8_lossy(&answer).into_owned() });
    };
    let (head, body) = (String::from_utf8_lossy(&answer[..split]), &answer[split + 4..]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| WitnessError::Refused { status: 0, body: head.to_string() })?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The whole answer, at most 1 MiB, within `TIMEOUT` in all: a witness that trickles bytes
/// must not hold up the daemon (or its shutdown) for longer than that.
fn read_answer(stream: &mut TcpStream) -> Result<Vec<u8>, WitnessError> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || answer.len() > 1 << 20 {
            return Err(WitnessError::Unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the answer did not arrive in time",
            )));
        }
        stream.set_read_timeout(Some(left)).map_err(WitnessError::Unreachable)?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WitnessError::Unreachable(e)),
        }
    }
}

/// A chunked body's data, as bytes (an answer is not trusted to be UTF-8, nor to split on a
/// character boundary); a malformed one yields what could be read.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn a_chunked_body_is_read_as_bytes_and_never_panics() {
        assert_eq!(dechunk(b"5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"), b"hello!");
        // A chunk size that ends inside a multi-byte character (a hostile witness).
        assert_eq!(dechunk("1\r\né\r\n0\r\n\r\n".as_bytes()), [0xc3]);
        assert_eq!(dechunk(b"zz\r\nx"), b"");
        assert_eq!(dechunk(b"ffffffffffffffff\r\nx"), b"");
    }
}

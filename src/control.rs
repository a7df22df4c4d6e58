//! The control socket (`STATE_DIR/control.sock`): while mounted the daemon owns the index, so
//! admin commands reach it here. Only root may connect (the socket is 0600 and the peer's uid is
//! checked); each connection carries one JSON request line and gets one JSON response line.
//! When nothing is mounted, `submit` runs the same request on the index directly.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use crate::admin::{self, Request, Response};
use crate::core::ledger::Ledger;
use crate::core::retention::RetentionPolicy;
use crate::core::store::SystemClock;
use crate::index::RocksStore;
use crate::inspect;
use crate::keys;
use crate::mount::INDEX_DIR;

pub const SOCKET_FILE: &str = "control.sock";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Serve admin requests for the mounted filesystem until the process exits.
pub fn serve(state_dir: &Path, ledger: Arc<Ledger>, data_dir: PathBuf) -> io::Result<PathBuf> {
    let path = state_dir.join(SOCKET_FILE);
    // A socket file left by a daemon that died: nobody answers on it, so it can go.
    if path.exists() && UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("control".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(e) = handle(stream, &ledger, &data_dir) {
                        warn!("control socket: {e}");
                    }
                }
                Err(e) => warn!("control socket: accept failed: {e}"),
            }
        }
    })?;
    Ok(path)
}

fn handle(stream: UnixStream, ledger: &Ledger, data_dir: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    let uid = getsockopt(&stream, PeerCredentials).map(|c| c.uid()).map_err(io::Error::from)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let response = if uid != 0 {
        warn!("control socket: refused a request from uid {uid}");
        Response { ok: false, message: "permission denied: only root may change holds and retention".into() }
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(request) => match admin::execute(ledger, data_dir, uid, &request) {
                Ok(message) => {
                    info!("admin (uid {uid}): {message}");
                    Response { ok: true, message }
                }
                Err(e) => Response { ok: false, message: e.to_string() },
            },
            Err(e) => Response { ok: false, message: format!("bad request: {e}") },
        }
    };
    let mut out = &stream;
    writeln!(out, "{}", serde_json::to_string(&response).map_err(io::Error::other)?)
}

#[derive(Debug)]
pub enum SubmitError {
    NotRoot,
    /// The request was carried out and refused (the message says why).
    Refused(String),
    Io(io::Error),
    Offline(String),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::NotRoot => write!(f, "permission denied: only root may change holds and retention"),
            SubmitError::Refused(m) => write!(f, "{m}"),
            SubmitError::Io(e) => write!(f, "talking to the wormfs daemon: {e}"),
            SubmitError::Offline(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Carry out `request`: through the daemon when the filesystem is mounted, else on the index.
pub fn submit(state_dir: &Path, request: &Request) -> Result<String, SubmitError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SubmitError::NotRoot);
    }
    let socket = state_dir.join(SOCKET_FILE);
    match UnixStream::connect(&socket) {
        Ok(stream) => {
            stream.set_read_timeout(Some(TIMEOUT)).map_err(SubmitError::Io)?;
            let mut out = &stream;
            let line = serde_json::to_string(request).map_err(|e| SubmitError::Io(io::Error::other(e)))?;
            writeln!(out, "{line}").map_err(SubmitError::Io)?;
            let mut answer = String::new();
            BufReader::new(&stream).read_line(&mut answer).map_err(SubmitError::Io)?;
            let response: Response = serde_json::from_str(&answer).map_err(|e| SubmitError::Io(io::Error::other(e)))?;
            if response.ok {
                Ok(response.message)
            } else {
                Err(SubmitError::Refused(response.message))
            }
        }
        // Nothing listening: not mounted. Work on the index directly.
        Err(_) => offline(state_dir, request),
    }
}

fn offline(state_dir: &Path, request: &Request) -> Result<String, SubmitError> {
    let index = state_dir.join(INDEX_DIR);
    if !RocksStore::exists(&index) {
        return Err(SubmitError::Offline(format!("no index at {}", index.display())));
    }
    let store = RocksStore::open(&index).map_err(|e| {
        SubmitError::Offline(format!(
            "{e} (is wormfs mounted without its control socket {}?)",
            state_dir.join(SOCKET_FILE).display()
        ))
    })?;
    let data_dir = inspect::status(&store)
        .ok()
        .and_then(|s| s.data_dir)
        .ok_or_else(|| SubmitError::Offline("the chain names no data directory (never mounted?)".into()))?;
    let key = keys::load_signing(state_dir).map_err(|e| SubmitError::Offline(e.to_string()))?;
    // Holds and extensions do not seal, so the retention policy does not matter here.
    let ledger = Ledger::open(Arc::new(store), key, Arc::new(SystemClock), RetentionPolicy::uniform(0))
        .map_err(|e| SubmitError::Offline(e.to_string()))?;
    admin::execute(&ledger, Path::new(&data_dir), 0, request).map_err(|e| SubmitError::Refused(e.to_string()))
}

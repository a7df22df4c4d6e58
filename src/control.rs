//! The control socket (`STATE_DIR/control.sock`): while mounted the daemon owns the index, so
//! admin commands reach it here. Only root may connect (the socket is 0600 and the peer's uid is
//! checked); each connection carries one JSON request line and gets one JSON response line.
//! When nothing is mounted, `submit` runs the same request on the index directly.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use crate::admin::{self, AdminError, Request, Response};
use crate::core::ledger::{Ledger, LedgerError};
use crate::core::retention::RetentionPolicy;
use crate::core::store::{Store, StoreError, SystemClock};
use crate::core::WormFs;
use crate::keys::{self, KeyError};
use crate::state_dir::{IndexOpenError, StateDir};

/// How long a client gets to send its request line and to take the answer: an admin command
/// is one short line, and a client that connects and says nothing must not hold a slot long.
const DEADLINE: Duration = Duration::from_secs(2);
/// Clients served at once; one more is told the daemon is busy instead of waiting.
const MAX_CLIENTS: usize = 16;
/// The longest request line read (a hold reason is short).
const MAX_REQUEST: u64 = 64 * 1024;
/// How long `submit` waits for the daemon's answer (it commits a synced record first).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve admin requests for the mounted filesystem until the process exits: each client on a
/// thread of its own, so a slow or silent one delays nobody else.
pub fn serve(state_dir: &StateDir, fs: Arc<WormFs>, data_dir: PathBuf) -> io::Result<PathBuf> {
    let path = state_dir.control_socket();
    // A socket file left by a daemon that died: nobody answers on it, so it can go.
    if path.exists() && UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let data_dir = Arc::new(data_dir);
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new().name("control".into()).spawn(move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    warn!("control socket: accept failed: {e}");
                    continue;
                }
            };
            let slot = Slot::take(&busy);
            let Some(slot) = slot else {
                let _ =
                    answer(&stream, &Response { ok: false, message: "the wormfs daemon is busy: try again".into() });
                continue;
            };
            let (fs, data_dir) = (fs.clone(), data_dir.clone());
            let spawned = std::thread::Builder::new().name("control-client".into()).spawn(move || {
                let _slot = slot;
                if let Err(e) = handle(stream, &fs, &data_dir) {
                    warn!("control socket: {e}");
                }
            });
            if let Err(e) = spawned {
                warn!("control socket: cannot serve a client: {e}");
            }
        }
    })?;
    Ok(path)
}

/// One of the `MAX_CLIENTS` places, given back when dropped.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    fn take(busy: &Arc<std::sync::atomic::AtomicUsize>) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        let taken = busy.fetch_add(1, Ordering::AcqRel);
        if taken >= MAX_CLIENTS {
            busy.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(busy.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn answer(stream: &UnixStream, response: &Response) -> io::Result<()> {
    stream.set_write_timeout(Some(DEADLINE))?;
    let mut out = stream;
    writeln!(out, "{}", serde_json::to_string(response).map_err(io::Error::other)?)
}

/// The request line, read within `DEADLINE` in all (a client that trickles bytes is cut off
/// as surely as one that sends none).
fn read_request(stream: &UnixStream) -> io::Result<String> {
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_REQUEST);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent no request in time"));
        }
        stream.set_read_timeout(Some(left))?;
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (used, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..used]);
        reader.consume(used);
        if done {
            break;
        }
    }
    String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the request is not UTF-8"))
}

fn handle(stream: UnixStream, fs: &WormFs, data_dir: &Path) -> io::Result<()> {
    let uid = getsockopt(&stream, PeerCredentials).map(|c| c.uid()).map_err(io::Error::from)?;
    let response = if uid != 0 {
        warn!("control socket: refused a request from uid {uid}");
        Response { ok: false, message: "permission denied: only root may change holds and retention".into() }
    } else {
        let line = read_request(&stream)?;
        match serde_json::from_str::<Request>(&line) {
            Ok(request) => match admin::execute(fs, data_dir, uid, &request) {
                Ok(message) => {
                    info!("admin (uid {uid}): {message}");
                    Response { ok: true, message }
                }
                Err(e) => Response { ok: false, message: e.to_string() },
            },
            Err(e) => Response { ok: false, message: format!("bad request: {e}") },
        }
    };
    answer(&stream, &response)
}

#[derive(Debug)]
pub enum SubmitError {
    NotRoot,
    /// The request was carried out and refused (the message says why).
    Refused(String),
    /// Talking to the daemon failed.
    Io(io::Error),
    /// The daemon answered something that is not a response.
    BadAnswer(serde_json::Error),
    /// Not mounted, and the index could not be opened to do it offline.
    Index(IndexOpenError),
    /// The chain names no data directory: the state directory was never mounted.
    NeverMounted,
    Key(KeyError),
    Ledger(LedgerError),
    /// Carried out offline and refused.
    Admin(AdminError),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::NotRoot => write!(f, "permission denied: only root may change holds and retention"),
            SubmitError::Refused(m) => write!(f, "{m}"),
            SubmitError::Io(e) => write!(f, "talking to the wormfs daemon: {e}"),
            SubmitError::BadAnswer(e) => write!(f, "the wormfs daemon answered something unreadable: {e}"),
            SubmitError::Index(e @ IndexOpenError::Store { err: StoreError::Locked { .. }, .. }) => {
                write!(f, "{e} (is wormfs mounted without its control socket?)")
            }
            SubmitError::Index(e) => write!(f, "{e}"),
            SubmitError::NeverMounted => write!(f, "the chain names no data directory (never mounted?)"),
            SubmitError::Key(e) => write!(f, "{e}"),
            SubmitError::Ledger(e) => write!(f, "{e}"),
            SubmitError::Admin(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SubmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubmitError::Io(e) => Some(e),
            SubmitError::BadAnswer(e) => Some(e),
            SubmitError::Index(e) => Some(e),
            SubmitError::Key(e) => Some(e),
            SubmitError::Ledger(e) => Some(e),
            SubmitError::Admin(e) => Some(e),
            _ => None,
        }
    }
}

/// Carry out `request`: through the daemon when the filesystem is mounted, else on the index.
pub fn submit(state_dir: &StateDir, request: &Request) -> Result<String, SubmitError> {
    Session::open(state_dir)?.submit(request)
}

/// Where admin requests go for a run of several (`wormfs archive` makes one per file): the
/// daemon, or the index opened once when nothing is mounted.
pub enum Session {
    Daemon(PathBuf),
    /// The filesystem itself: offline (opened for this command), or the daemon's own (its
    /// archive timer).
    Direct {
        fs: Arc<WormFs>,
        data_dir: PathBuf,
    },
}

impl Session {
    pub fn open(state_dir: &StateDir) -> Result<Session, SubmitError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(SubmitError::NotRoot);
        }
        let socket = state_dir.control_socket();
        if UnixStream::connect(&socket).is_ok() {
            return Ok(Session::Daemon(socket));
        }
        // Nothing listening: not mounted. Work on the index directly.
        let store = state_dir.open_index().map_err(SubmitError::Index)?;
        let data_dir = store.data_dir().map_err(|e| SubmitError::Ledger(e.into()))?.ok_or(SubmitError::NeverMounted)?;
        let expected = keys::chain_key_id(&store).map_err(|e| SubmitError::Ledger(e.into()))?;
        let key = keys::load_signing(state_dir, expected).map_err(SubmitError::Key)?;
        // Admin records do not seal, so the retention policy does not matter here.
        let ledger = Ledger::open(Arc::new(store), key, Arc::new(SystemClock), RetentionPolicy::uniform(0))
            .map_err(SubmitError::Ledger)?;
        let data_dir = PathBuf::from(std::ffi::OsString::from_vec(data_dir));
        let fs = WormFs::new(&data_dir, Arc::new(ledger)).map_err(|e| SubmitError::Admin(AdminError::Fs(e)))?;
        Ok(Session::Direct { fs: Arc::new(fs), data_dir })
    }

    /// The index, when this session holds it (offline); while mounted, open it read-only.
    pub fn store(&self) -> Option<&dyn Store> {
        match self {
            Session::Daemon(_) => None,
            Session::Direct { fs, .. } => Some(fs.ledger().store()),
        }
    }

    pub fn mounted(&self) -> bool {
        matches!(self, Session::Daemon(_))
    }

    pub fn submit(&self, request: &Request) -> Result<String, SubmitError> {
        match self {
            Session::Daemon(socket) => ask_daemon(socket, request),
            Session::Direct { fs, data_dir } => admin::execute(fs, data_dir, 0, request).map_err(SubmitError::Admin),
        }
    }
}

/// The running daemon's metrics, if it answers on its control socket (root only: the socket is
/// 0600). None when nothing is mounted or the caller may not ask.
pub fn live_metrics(state_dir: &StateDir) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    ask_daemon(&state_dir.control_socket(), &Request::Metrics).ok()
}

fn ask_daemon(socket: &Path, request: &Request) -> Result<String, SubmitError> {
    let stream = UnixStream::connect(socket).map_err(SubmitError::Io)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(SubmitError::Io)?;
    let mut out = &stream;
    let line = serde_json::to_string(request).map_err(SubmitError::BadAnswer)?;
    writeln!(out, "{line}").map_err(SubmitError::Io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(SubmitError::Io)?;
    let response: Response = serde_json::from_str(&answer).map_err(SubmitError::BadAnswer)?;
    if response.ok {
        Ok(response.message)
    } else {
        Err(SubmitError::Refused(response.message))
    }
}

//! A real, independent C2SP tlog-witness for the integration tests: `aics-witness` from PyPI,
//! installed by `scripts/deps` into its own venv (it needs Python >= 3.12) and found through
//! `WORMFS_WITNESS_BIN`, which `./scripts/test` exports.
//!
//! Every [`Witness`] is a fresh identity (new key, new database) in a private temp dir, trusting
//! exactly one log, serving on a port of its own. Nothing is skipped: if it cannot start,
//! [`Witness::start`] panics with the reason and the witness's stderr. Dropping it stops the
//! process, also while unwinding from a failed assertion.
//!
//! The protocol as this witness speaks it (tlog-witness v1.1.0), checked by
//! `tests/witness_harness.rs`: `POST /add-checkpoint` with `old <size>\n`, one base64 line per
//! consistency-proof hash, an empty line and the signed checkpoint note ([`add_checkpoint_body`]).
//! 200 carries one `— <name> base64(key ID ‖ timestamp ‖ Ed25519 signature)` line
//! (cosignature/v1); 409 carries the size the witness holds, `<size>\n`, as `text/x.tlog.size`.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{run_cmd, wait_timeout};

/// The cosigner name of every test witness; part of its vkey.
pub const WITNESS_NAME: &str = "witness.wormfs.test/w1";

/// How long the witness gets to start listening (a Python start is ~0.3 s), and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds every HTTP exchange, so a wedged witness fails the test instead of hanging it.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// The line `serve` logs once its socket is bound; the URL follows it.
const LISTENING: &str = "listening on ";

/// The `aics-witness` executable, or a panic saying how to get it.
pub fn witness_bin() -> PathBuf {
    let bin = std::env::var_os("WORMFS_WITNESS_BIN")
        .unwrap_or_else(|| panic!("WORMFS_WITNESS_BIN is not set: run ./scripts/test (it installs aics-witness)"));
    let bin = PathBuf::from(bin);
    assert!(
        bin.is_file(),
        "WORMFS_WITNESS_BIN={} does not exist: run ./scripts/test (it installs aics-witness)",
        bin.display()
    );
    bin
}

/// An add-checkpoint request body: `old <size>`, the proof hashes in base64 (tlog_tiles' `Hash`
/// displays as standard padded base64, which is what the witness requires), an empty line, the
/// signed note.
pub fn add_checkpoint_body(old_size: u64, proof: &[tlog_tiles::Hash], signed_note: &[u8]) -> Vec<u8> {
    let mut body = format!("old {old_size}\n").into_bytes();
    for hash in proof {
        body.extend(format!("{hash}\n").as_bytes());
    }
    body.push(b'\n');
    body.extend(signed_note);
    body
}

/// One HTTP response from the witness.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A running `aics-witness serve`, trusting one log.
pub struct Witness {
    /// `http://127.0.0.1:PORT`, no trailing slash; add-checkpoint is at `{url}/add-checkpoint`.
    pub url: String,
    /// The witness vkey `init` printed: `name+keyid+base64(0x04 ‖ Ed25519 public key)`.
    pub vkey: String,
    /// The cosigner name ([`WITNESS_NAME`]).
    pub name: String,
    addr: SocketAddr,
    config: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    // Last, so the directory goes only after Drop::drop has stopped the process using it.
    dir: TempDir,
}

impl Witness {
    /// Start a fresh witness trusting one log (`origin` and the log's note vkey); returns once
    /// `/healthz` answers `ok`. Panics with the reason (and the witness's stderr) if it cannot
    /// start; never skips.
    #[track_caller]
    pub fn start(origin: &str, log_vkey: &str) -> Witness {
        let bin = witness_bin();
        let dir = tempfile::Builder::new().prefix("wormfs-witness.").tempdir().expect("tempdir");
        let config = dir.path().join("witness.json");

        // init prints exactly the vkey on stdout (its notes go to stderr).
        let init = run_cmd(witness_cmd(&bin, "init", &config).args(["--name", WITNESS_NAME]));
        init.assert_success("aics-witness init");
        let vkey = init.stdout.trim().to_string();
        assert!(vkey.starts_with(&format!("{WITNESS_NAME}+")), "aics-witness init printed no vkey: {init:#?}");

        run_cmd(witness_cmd(&bin, "add-log", &config).args(["--origin", origin, "--vkey", log_vkey]))
            .assert_success("aics-witness add-log");

        // Port 0: the kernel picks a free port at bind time and the witness logs the URL, so
        // there is no window in which another test could take a port picked beforehand.
        let log_path = dir.path().join("serve.log");
        let log = fs::File::create(&log_path).expect("create witness log");
        let child = witness_cmd(&bin, "serve", &config)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup witness log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));

        let mut witness = Witness {
            url: String::new(),
            vkey,
            name: WITNESS_NAME.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
            log_path,
            child: Some(child),
            dir,
        };
        witness.wait_until_serving();
        witness
    }

    /// Poll the log for the bound URL, then /healthz; panic (the Drop stops the process) if the
    /// witness exits or does not get there in time.
    #[track_caller]
    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait witness")) {
                panic!("aics-witness serve exited ({status}) before serving\n--- witness log ---\n{}", self.log());
            }
            if self.url.is_empty() {
                let log = self.log();
                if let Some(url) = log.lines().find_map(|l| l.split_once(LISTENING)?.1.split(' ').next()) {
                    let addr = url.strip_prefix("http://").and_then(|a| a.parse().ok());
                    self.addr = addr.unwrap_or_else(|| panic!("unexpected listen URL {url:?} in\n{log}"));
                    self.url = url.to_string();
                }
            }
            if !self.url.is_empty() {
                if let Ok(r) = self.try_request("GET", "/healthz", b"") {
                    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "witness /healthz: {r:#?}");
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!("aics-witness serve not up after {START_TIMEOUT:?}\n--- witness log ---\n{}", self.log());
            }
            sleep(POLL);
        }
    }

    /// `aics-witness status --json`, for assertions (`logs[0].size`, `.root`, `.evidence`, ...).
    /// Safe while the witness serves.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        let out = run_cmd(witness_cmd(&witness_bin(), "status", &self.config).arg("--json"));
        out.assert_success("aics-witness status --json");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out:#?}"))
    }

    /// The state the witness holds for `origin` (an element of `status()["logs"]`).
    #[track_caller]
    pub fn log_status(&self, origin: &str) -> serde_json::Value {
        let status = self.status();
        let logs = status["logs"].as_array().unwrap_or_else(|| panic!("no logs in {status:#}"));
        logs.iter().find(|l| l["origin"] == origin).cloned().unwrap_or_else(|| panic!("{origin} not in {status:#}"))
    }

    /// POST `body` to `/add-checkpoint`: (status code, body text).
    #[track_caller]
    pub fn add_checkpoint(&self, body: &[u8]) -> (u16, String) {
        let r = self.request("POST", "/add-checkpoint", body);
        (r.status, r.body)
    }

    /// One HTTP/1.1 exchange on a fresh connection; panics on a transport error.
    #[track_caller]
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}\n--- witness log ---\n{}", self.url, self.log()))
    }

    /// The witness's stdout and stderr so far (it logs every refusal with its reason).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The witness's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("witness running").id()
    }

    /// The witness's private directory (config, key, database, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A minimal client: `Connection: close` and read to EOF, so no response framing beyond
    /// Content-Length is needed (the witness never chunks its responses).
    fn try_request(&self, method: &str, path: &str, body: &[u8]) -> Result<HttpResponse, String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, HTTP_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(HTTP_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(|e| format!("receive: {e}"))?;
        parse_response(&raw)
    }
}

fn witness_cmd(bin: &Path, subcommand: &str, config: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(subcommand).arg("--config").arg(config);
    // WITNESS_SEED_HEX would replace the fresh key init creates; AICS_WITNESS_CONFIG is moot with
    // --config but removed so nothing from the caller's environment reaches the witness.
    cmd.env_remove("WITNESS_SEED_HEX").env_remove("AICS_WITNESS_CONFIG").env("PYTHONUNBUFFERED", "1");
    cmd
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let text = || String::from_utf8_lossy(raw).into_owned();
    let split =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("no header end in {:?}", text()))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| format!("non-UTF-8 headers in {:?}", text()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3)?.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut body = &raw[split + 4..];
    let response = HttpResponse { status, headers, body: String::new() };
    if response.header("transfer-encoding").is_some() {
        return Err(format!("unexpected Transfer-Encoding in {response:?}"));
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad Content-Length {len:?}"))?;
        body = body.get(..len).ok_or_else(|| format!("body shorter than Content-Length {len}: {:?}", text()))?;
    }
    let body = String::from_utf8(body.to_vec()).map_err(|_| format!("non-UTF-8 body in {:?}", text()))?;
    Ok(HttpResponse { body, ..response })
}

impl Drop for Witness {
    fn drop(&mut self) {
        // Never panic here: this also runs while unwinding from a failed assertion. SIGTERM is
        // the witness's clean stop (it closes its database); SIGKILL only if it ignores that.
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
                eprintln!("aics-witness (pid {}) ignored SIGTERM; killing it", child.id());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

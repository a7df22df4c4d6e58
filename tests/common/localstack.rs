//! A real S3 server that enforces Object Lock, for the archive tests: LocalStack (S3 only) from
//! PyPI, installed by `scripts/deps` into its own venv and found through
//! `WORMFS_LOCALSTACK_PYTHON`, which `./scripts/test` exports.
//!
//! Each [`LocalStack`] is a fresh server (empty, its state in memory and in a private temp dir)
//! on a port of its own on 127.0.0.1, checking the signature of every presigned request. If it
//! cannot start, [`LocalStack::start`] panics with the reason and its log: never a skip.
//! Dropping it stops the process (SIGTERM, then SIGKILL of its process group), also while
//! unwinding from a failed assertion.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::wait_timeout;

/// A first start without the service catalogue cached takes about 5 s; later ones about 1.5 s.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The credentials the tests sign with; LocalStack maps any access key to its test account.
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";

fn python() -> PathBuf {
    let python = std::env::var_os("WORMFS_LOCALSTACK_PYTHON")
        .unwrap_or_else(|| panic!("WORMFS_LOCALSTACK_PYTHON is not set: run ./scripts/test (it installs LocalStack)"));
    let python = PathBuf::from(python);
    assert!(
        python.is_file(),
        "WORMFS_LOCALSTACK_PYTHON={} does not exist: run ./scripts/test (it installs LocalStack)",
        python.display()
    );
    python
}

pub struct LocalStack {
    child: Option<Child>,
    pub port: u16,
    root: TempDir,
}

impl LocalStack {
    pub fn start() -> LocalStack {
        let python = python();
        let root = tempfile::Builder::new().prefix("wormfs-localstack-").tempdir().unwrap();
        // A port no one holds now (the kernel's pick); LocalStack binds it right after.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cache = root.path().join("var/lib/localstack/cache");
        fs::create_dir_all(&cache).unwrap();
        // The service catalogue the first start builds (seconds and 350 MB), cached beside the venv
        // by scripts/deps (tests/localstack/warm.py).
        let kept = python.parent().unwrap().parent().unwrap().join("wormfs-catalogue-cache");
        if let Ok(entries) = fs::read_dir(&kept) {
            for e in entries.flatten() {
                let _ = fs::copy(e.path(), cache.join(e.file_name()));
            }
        }
        let log = fs::File::create(root.path().join("localstack.log")).unwrap();
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "localstack.runtime.main"])
            // This machine has /.dockerenv: without this LocalStack writes to /var/lib/localstack.
            .env("OVERRIDE_IN_DOCKER", "0")
            .env("FILESYSTEM_ROOT", root.path())
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            // The default server (twisted) binds every interface whatever GATEWAY_LISTEN says.
            .env("GATEWAY_SERVER", "hypercorn")
            .env("SERVICES", "s3")
            .env("EAGER_SERVICE_LOADING", "1")
            // Presigned requests (all wormfs sends) must carry a valid SigV4 signature.
            .env("S3_SKIP_SIGNATURE_VALIDATION", "0")
            .env("DNS_ADDRESS", "0")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("DISABLE_EVENTS", "1")
            .env("XDG_CACHE_HOME", root.path().join("xdg"))
            .env_remove("LOCALSTACK_CLI")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start LocalStack ({}): {e}", python.display()));
        let mut ls = LocalStack { child: Some(child), port, root };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ls.healthy() {
                break;
            }
            if let Some(status) = ls.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("LocalStack exited ({status}) before serving:\n{}", ls.log());
            }
            if Instant::now() > deadline {
                panic!("LocalStack did not answer on 127.0.0.1:{port} within {START_TIMEOUT:?}:\n{}", ls.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        ls
    }

    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req =
            format!("GET /_localstack/health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.port);
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"s3\"")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.root.path().join("localstack.log")).unwrap_or_default()
    }

    /// Stop the server now (SIGTERM; its process group SIGKILLed if it does not exit).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
            // Its hypercorn server sometimes never finishes a SIGTERM shutdown.
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.stop();
    }
}

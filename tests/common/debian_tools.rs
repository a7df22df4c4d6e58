//! Programs from Debian packages that the tests run but that must not be installed on the test
//! machine: syslog-ng (installing `syslog-ng-core` removes rsyslog), promtool and
//! prometheus-node-exporter (installing them starts their services). `scripts/deps`
//! (`wormfs_install_debian_tools`) downloads the .debs and unpacks them, with the libraries
//! syslog-ng needs that the machine lacks, into `target/debian-tools/`, and `./scripts/test`
//! exports where: `WORMFS_SYSLOG_NG_ROOT`, `WORMFS_PROMTOOL`, `WORMFS_NODE_EXPORTER`. A missing
//! one fails the test with that reason: never a skip.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The path in environment variable `var`, which must exist.
#[track_caller]
pub fn unpacked(var: &str) -> PathBuf {
    let path = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run ./scripts/test, which unpacks Debian's packages (scripts/deps wormfs_install_debian_tools)")
    });
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{var}={} does not exist: run ./scripts/test, which unpacks Debian's packages (scripts/deps wormfs_install_debian_tools)",
        path.display()
    );
    path
}

/// Debian's promtool (package `prometheus`).
pub fn promtool() -> Command {
    Command::new(unpacked("WORMFS_PROMTOOL"))
}

/// Debian's prometheus-node-exporter (package `prometheus-node-exporter`).
pub fn node_exporter() -> PathBuf {
    unpacked("WORMFS_NODE_EXPORTER")
}

/// Debian's syslog-ng (package `syslog-ng-core`), unpacked under a root directory instead of /.
pub struct SyslogNg {
    pub root: PathBuf,
}

impl SyslogNg {
    pub fn find() -> SyslogNg {
        SyslogNg { root: unpacked("WORMFS_SYSLOG_NG_ROOT") }
    }

    /// Where its modules are (usr/lib/syslog-ng/3.NN).
    fn module_dir(&self) -> PathBuf {
        let dir = self.root.join("usr/lib/syslog-ng");
        let mut versions: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("3."))
            .collect();
        assert_eq!(versions.len(), 1, "expected one module directory in {}: {versions:?}", dir.display());
        versions.pop().unwrap()
    }

    /// The libraries it loads: its own (its RUNPATH says /usr/lib/syslog-ng) and those unpacked
    /// beside it because the machine lacks them.
    fn library_path(&self) -> OsString {
        let mut dirs = vec![self.root.join("usr/lib/syslog-ng")];
        for base in ["usr/lib", "lib"] {
            if let Ok(entries) = fs::read_dir(self.root.join(base)) {
                dirs.extend(
                    entries
                        .map(|e| e.unwrap().path())
                        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with("-linux-gnu")),
                );
            }
        }
        std::env::join_paths(dirs).unwrap()
    }

    /// A program of the package (`usr/sbin/syslog-ng`, `usr/sbin/syslog-ng-ctl`), ready to run.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.root.join(program));
        cmd.env("LD_LIBRARY_PATH", self.library_path());
        cmd
    }

    /// `syslog-ng` with its modules found, and every file it keeps (persist file, pid file,
    /// control socket) in `dir`: nothing of the system's syslog-ng.
    pub fn daemon(&self, config: &Path, dir: &Path) -> Command {
        let mut cmd = self.command("usr/sbin/syslog-ng");
        cmd.arg("--cfgfile")
            .arg(config)
            .arg(format!("--module-path={}", self.module_dir().display()))
            .arg("--persist-file")
            .arg(dir.join("syslog-ng.persist"))
            .arg("--pidfile")
            .arg(dir.join("syslog-ng.pid"))
            .arg("--control")
            .arg(dir.join("syslog-ng.ctl"));
        cmd
    }

    /// The configuration Debian's package installs as /etc/syslog-ng/syslog-ng.conf.
    pub fn debian_config(&self) -> String {
        let path = self.root.join("etc/syslog-ng/syslog-ng.conf");
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The include path for `@include "scl.conf"` in the unpacked tree.
    pub fn include_path(&self) -> String {
        format!(
            "{}:{}",
            self.root.join("etc/syslog-ng").display(),
            self.root.join("usr/share/syslog-ng/include").display()
        )
    }
}

/// Debian's prometheus-node-exporter on a port of its own on 127.0.0.1, with only its textfile
/// collector, reading the `*.prom` files in a directory. Dropping it kills it.
pub struct NodeExporter {
    child: super::KillOnDrop,
    pub port: u16,
    log: PathBuf,
}

impl NodeExporter {
    pub fn start(textfile_dir: &Path, log: PathBuf) -> NodeExporter {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(node_exporter())
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!("--collector.textfile.directory={}", textfile_dir.display()))
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn prometheus-node-exporter");
        let mut exporter = NodeExporter { child: super::KillOnDrop(child), port, log };
        let up = super::wait_until(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "prometheus-node-exporter does not listen on 127.0.0.1:{port}: {:?}\n{}",
            exporter.child.0.try_wait(),
            exporter.log()
        );
        exporter
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET /metrics, as Prometheus scrapes it: the body of a 200 answer.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect to node-exporter");
        write!(conn, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n", self.port).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "scrape answered {head}\n{}",
            self.log()
        );
        body.to_string()
    }
}

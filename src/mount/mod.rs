//! `wormfs mount`: the checks (`preflight`), the key and index, recovery, the fuser session over
//! the core (mounted by `kernel`), and a clean unmount on SIGINT/SIGTERM that seals every tail.
//! Runs in the foreground, as systemd expects.

mod kernel;
mod notify;
mod preflight;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, SessionACL};
use log::{info, warn};
use nix::sys::signal::{SigSet, Signal};

pub use kernel::FS_TYPE;
pub use preflight::is_mount_point;

use crate::config::{self, ConfigError};
use crate::control;
use crate::core::ledger::{Ledger, LedgerError};
use crate::core::retention::parse_duration_ns;
use crate::core::store::{Store, StoreError, SystemClock};
use crate::core::{FsError, WormFs};
use crate::fuse::FuseAdapter;
use crate::index::RocksStore;
use crate::keys::{self, KeyError};
use crate::metrics::{self, MetricsWriter};
use crate::sealer::IntervalSealer;

use preflight::{preflight, Checked};

/// The index lives here inside STATE_DIR.
pub const INDEX_DIR: &str = "index";

/// Worker threads serving FUSE requests: enough that a slow fsync on one file does not stall
/// appends to the others.
const WORKER_THREADS: usize = 4;

#[derive(Debug, Clone)]
pub struct MountArgs {
    pub data: PathBuf,
    pub state: PathBuf,
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    /// How often files that stay open get their new bytes sealed.
    pub seal_interval: Duration,
    /// Start a new chain even though DATA_DIR already has files (they are adopted, flagged).
    pub adopt_existing: bool,
    /// Default retention (`90d`), overriding the config file's.
    pub retention: Option<String>,
    /// The config file with retention rules.
    pub config: Option<PathBuf>,
    /// Record an Access record for every open of a file for reading.
    pub audit_reads: bool,
    /// Where to write the Prometheus metrics (default STATE_DIR/metrics.prom).
    pub metrics_file: Option<PathBuf>,
}

/// Retention when neither --retention nor a config file says otherwise.
pub const DEFAULT_RETENTION: &str = "90d";

#[derive(Debug)]
pub enum MountError {
    NotRoot,
    NoFuseDevice(io::Error),
    MountpointMissing(PathBuf),
    MountpointNotDir(PathBuf),
    MountpointNotEmpty(PathBuf),
    AlreadyMounted(PathBuf),
    Overlap {
        what: &'static str,
        a: PathBuf,
        b: PathBuf,
    },
    Dir {
        path: PathBuf,
        err: io::Error,
    },
    Core(FsError),
    Signals(nix::errno::Errno),
    Session(io::Error),
    Key(KeyError),
    Index {
        path: PathBuf,
        err: StoreError,
    },
    Ledger(LedgerError),
    /// DATA_DIR has files but STATE_DIR has no index: a lost or misplaced index, never a reason
    /// to silently start a new chain.
    DataWithoutIndex {
        data: PathBuf,
        index: PathBuf,
    },
    Recovery(FsError),
    Config(ConfigError),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::NotRoot => write!(
                f,
                "permission denied: wormfs mount must run as root (it mounts FUSE and gives new files to their callers)"
            ),
            MountError::NoFuseDevice(e) => {
                write!(f, "cannot use /dev/fuse ({e}); load the fuse module or install fuse3")
            }
            MountError::MountpointMissing(p) => write!(f, "mountpoint {} does not exist", p.display()),
            MountError::MountpointNotDir(p) => write!(f, "mountpoint {} is not a directory", p.display()),
            MountError::MountpointNotEmpty(p) => write!(
                f,
                "mountpoint {} is not empty; mount over an empty directory so nothing is hidden",
                p.display()
            ),
            MountError::AlreadyMounted(p) => write!(f, "mountpoint {} is already a mount point", p.display()),
            MountError::Overlap { what, a, b } => {
                write!(f, "{what} overlap ({} and {}); they must be separate trees", a.display(), b.display())
            }
            MountError::Dir { path, err } => write!(f, "{}: {err}", path.display()),
            MountError::Core(e) => write!(f, "cannot open the data directory: {e}"),
            MountError::Signals(e) => write!(f, "cannot set up signal handling: {e}"),
            MountError::Session(e) => write!(f, "FUSE mount failed: {e}"),
            MountError::Key(e) => write!(f, "{e}"),
            MountError::Index { path, err } => write!(f, "{}: {err}", path.display()),
            MountError::Ledger(e) => write!(f, "{e}"),
            MountError::DataWithoutIndex { data, index } => write!(
                f,
                "{} has files but there is no index at {}; restore the state directory, or pass --adopt-existing to start a new chain that adopts them",
                data.display(),
                index.display()
            ),
            MountError::Recovery(e) => write!(f, "recovery at mount failed: {e}"),
            MountError::Config(e) => write!(f, "bad configuration: {e}"),
        }
    }
}

impl std::error::Error for MountError {}

/// Mount and serve until SIGINT/SIGTERM (or an external umount), then return.
pub fn run(args: &MountArgs) -> Result<(), MountError> {
    let checked = preflight(args)?;

    // Block the stop signals before fuser starts its threads, so they inherit the mask and only
    // the signal thread below ever sees them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(MountError::Signals)?;

    let fallback = parse_duration_ns(DEFAULT_RETENTION).unwrap_or(0);
    let policy = config::retention_policy(args.config.as_deref(), args.retention.as_deref(), fallback)
        .map_err(MountError::Config)?;
    let key = keys::load_signing(&checked.state).map_err(MountError::Key)?;
    let store = open_index(&checked)?;
    let ledger = Arc::new(Ledger::open(store, key, Arc::new(SystemClock), policy).map_err(MountError::Ledger)?);
    let filesystem = Arc::new(
        WormFs::new(&checked.data, ledger.clone()).map_err(MountError::Core)?.with_read_audit(args.audit_reads),
    );
    let software = format!("wormfs {}", env!("CARGO_PKG_VERSION"));
    let mount_record = ledger
        .mount(&software, checked.data.as_os_str().as_encoded_bytes())
        .map_err(|err| MountError::Index { path: checked.state.join(INDEX_DIR), err })?;
    let recovery = filesystem.recover().map_err(MountError::Recovery)?;
    info!(
        "chain at record {}; recovery checked {} files, sealed {} with unsealed bytes",
        mount_record.seq(),
        recovery.files_checked,
        recovery.recovered
    );
    for damage in &recovery.damaged {
        warn!("damaged outside wormfs: {damage} (run wormfs verify)");
    }

    let socket = control::serve(&checked.state, ledger.clone(), checked.data.clone())
        .map_err(|err| MountError::Dir { path: checked.state.join(control::SOCKET_FILE), err })?;

    let mut config = Config::default();
    let acl = if args.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.acl = acl;
    config.n_threads = Some(WORKER_THREADS);
    config.clone_fd = true;

    // The kernel checks mode bits and ownership (default_permissions), as on any local filesystem.
    let source = format!("wormfs:{}", checked.data.display());
    let session = kernel::mount_fuse(&source, &checked.mountpoint, args.allow_other).and_then(|fd| {
        fuser::Session::from_fd(FuseAdapter::new(filesystem.clone()), fd, acl, config).inspect_err(|_| {
            let _ = kernel::unmount(&checked.mountpoint);
        })
    });
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            // Close the chain cleanly: nothing was served.
            let _ = fs::remove_file(&socket);
            let _ = filesystem.shutdown();
            return Err(MountError::Session(e));
        }
    };
    info!("mounted {} on {} ({FS_TYPE})", checked.data.display(), checked.mountpoint.display());

    let mountpoint = checked.mountpoint.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_stop(signals, &mountpoint))
        .map_err(MountError::Session)?;

    let sealer = IntervalSealer::start(filesystem.clone(), args.seal_interval).map_err(MountError::Session)?;
    let metrics_file = args.metrics_file.clone().unwrap_or_else(|| checked.state.join(metrics::DEFAULT_FILE));
    let metrics = MetricsWriter::start(filesystem.clone(), metrics_file).map_err(MountError::Session)?;
    // Ready only once the mount answers: a stat of its root is served by run() below.
    let (data, mountpoint) = (checked.data.clone(), checked.mountpoint.clone());
    let _ = std::thread::Builder::new().name("ready".into()).spawn(move || {
        if fs::metadata(&mountpoint).is_ok() {
            info!("serving {} on {}", data.display(), mountpoint.display());
            notify::notify(&format!("READY=1\nSTATUS=serving {} on {}", data.display(), mountpoint.display()));
        }
    });
    let served = session.run();
    notify::notify("STOPPING=1");
    sealer.stop();
    info!("unmounted {}", checked.mountpoint.display());
    if filesystem.open_handles() > 0 {
        warn!("{} file handles were still open at unmount", filesystem.open_handles());
    }
    // Admin commands go to the index directly from now on.
    let _ = fs::remove_file(&socket);
    // Seal every tail and write Unmount even if the session ended with an error.
    let shut = filesystem.shutdown().map_err(MountError::Core);
    metrics.stop();
    shut?;
    served.map_err(MountError::Session)
}

/// Open the index, or create it for a new chain — but never over existing data unless told to.
fn open_index(checked: &Checked) -> Result<Arc<dyn Store>, MountError> {
    let path = checked.state.join(INDEX_DIR);
    let index_err = |err| MountError::Index { path: path.clone(), err };
    if RocksStore::exists(&path) {
        return Ok(Arc::new(RocksStore::open(&path).map_err(index_err)?));
    }
    let data_has_files = fs::read_dir(&checked.data)
        .map_err(|err| MountError::Dir { path: checked.data.clone(), err })?
        .next()
        .is_some();
    if data_has_files {
        if !checked.adopt_existing {
            return Err(MountError::DataWithoutIndex { data: checked.data.clone(), index: path });
        }
        warn!("starting a new chain over existing files in {}: each is adopted and flagged", checked.data.display());
    }
    Ok(Arc::new(RocksStore::create(&path).map_err(index_err)?))
}

fn wait_for_stop(signals: SigSet, mountpoint: &Path) {
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => info!("SIGHUP ignored (wormfs has nothing to reload)"),
            Ok(sig) => {
                info!("{sig}: unmounting {}", mountpoint.display());
                break;
            }
            Err(e) => {
                warn!("waiting for signals failed ({e}); unmounting");
                break;
            }
        }
    }
    match kernel::unmount(mountpoint) {
        Ok(false) => {}
        // The session ends, and the final seals are written, when the last user leaves.
        Ok(true) => warn!("{} is busy: detached it; wormfs exits when the last user leaves", mountpoint.display()),
        Err(e) => warn!("unmount of {} failed: {e}", mountpoint.display()),
    }
}

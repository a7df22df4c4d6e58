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

use crate::archive::S3Args;
use crate::archiver;
use crate::checkpoint::{LogSigner, WitnessKey};
use crate::checkpointer::{self, Checkpointer};
use crate::config::{self, ConfigError};
use crate::control;
use crate::core::ledger::{Ledger, LedgerError};
use crate::core::retention::{parse_duration_ns, parse_interval};
use crate::core::store::{Store, StoreError, SystemClock};
use crate::core::{FsError, WormFs};
use crate::fuse::FuseAdapter;
use crate::index::RocksStore;
use crate::keys::FileVault;
use crate::keys::{self, KeyError};
use crate::metrics::MetricsWriter;
use crate::sealer;
use crate::state_dir::StateDir;
use crate::ticker::Ticker;
use crate::witness::Witness;

use preflight::{preflight, Checked};

/// Worker threads serving FUSE requests: enough that a slow fsync on one file does not stall
/// appends to the others.
const WORKER_THREADS: usize = 4;

/// `wormfs mount`'s options (the CLI flattens them into its Mount command).
#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// Where the files live as plain files (created if missing).
    #[arg(long, value_name = "DATA_DIR")]
    pub data: PathBuf,
    /// Where the index and keys live (created if missing).
    #[arg(long, value_name = "STATE_DIR")]
    pub state: PathBuf,
    /// Let users other than root use the mount (permissions still apply).
    #[arg(long)]
    pub allow_other: bool,
    /// Seal the new bytes of files that stay open this often (e.g. 60s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_interval)]
    pub seal_interval: Duration,
    /// DATA_DIR has files but STATE_DIR has no index: start a new chain anyway, adopting
    /// each file with a flagged Recovered record.
    #[arg(long)]
    pub adopt_existing: bool,
    /// Default retention of files (e.g. 90d, 7y; units s, m, h, d, y). Overrides the config
    /// file's `retention`. Without either: 90d.
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
    /// Config file with retention bounds and per-directory rules.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Record who opens each file for reading (an Access record per open: uid, pid, command).
    #[arg(long)]
    pub audit_reads: bool,
    /// Prometheus text file rewritten every few seconds (default STATE_DIR/metrics.prom).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Length of a key epoch: the signing key is replaced (and the old one destroyed) this often
    /// by the wall clock, and at every mount (e.g. 15m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_interval)]
    pub key_epoch: Duration,
    /// Sign a checkpoint of the chain this often: written to STATE_DIR/checkpoint, to syslog,
    /// and submitted to every --witness.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_interval)]
    pub checkpoint_interval: Duration,
    /// A C2SP tlog-witness to submit checkpoints to: its http:// URL and its vkey. Repeatable.
    #[arg(long, num_args = 2, value_names = ["URL", "VKEY"], action = clap::ArgAction::Append)]
    pub witness: Vec<String>,
    /// Archive every sealed, closed file to this S3 bucket with Object Lock (s3://BUCKET[/PREFIX])
    /// every --archive-interval, as `wormfs archive` does. Credentials as the AWS tools find them.
    #[arg(long, value_name = "s3://BUCKET")]
    pub archive: Option<String>,
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_interval)]
    pub archive_interval: Duration,
    /// With --archive: also prune (as `wormfs archive --prune`).
    #[arg(long, requires = "archive")]
    pub archive_prune: bool,
    /// With --archive: the S3 endpoint (default AWS's for the region).
    #[arg(long, value_name = "URL", requires = "archive")]
    pub archive_endpoint: Option<String>,
    /// With --archive: path-style addressing (MinIO, Ceph RGW, LocalStack).
    #[arg(long, requires = "archive")]
    pub archive_path_style: bool,
    /// With --archive: the region to sign for.
    #[arg(long, value_name = "REGION", requires = "archive")]
    pub archive_region: Option<String>,
    /// An empty directory to mount on.
    pub mountpoint: PathBuf,
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
    /// A --witness whose vkey is not a C2SP cosignature/v1 key.
    BadWitness(String),
    /// A --key-epoch longer than verify accepts.
    KeyEpochTooLong(Duration),
    /// --archive names no usable bucket, or there are no credentials for it.
    Archive(String),
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
            MountError::Recovery(e) => write!(f, "starting the chain and recovery at mount failed: {e}"),
            MountError::Config(e) => write!(f, "bad configuration: {e}"),
            MountError::KeyEpochTooLong(d) => write!(
                f,
                "--key-epoch {}s is longer than a day: verify would reject such an epoch (and old records would stay forgeable that long)",
                d.as_secs()
            ),
            MountError::BadWitness(v) => {
                write!(f, "--witness: {v:?} is not a witness vkey (NAME+ID+BASE64 of a type 0x04 ed25519 key)")
            }
            MountError::Archive(why) => write!(f, "--archive: {why}"),
        }
    }
}

impl std::error::Error for MountError {}

/// Mount and serve until SIGINT/SIGTERM (or an external umount), then return.
pub fn run(args: &MountArgs) -> Result<(), MountError> {
    let checked = preflight(args)?;
    let state = StateDir::new(&checked.state);
    if !crate::core::EVIDENCE {
        log::error!("this is a bench-no-evidence build: nothing written is hashed or sealed");
    }

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
    let witnesses = witnesses(&args.witness)?;
    // Checked before anything is mounted: a daemon that can never archive should not start
    // as if it could.
    let archive = archive_plan(args)?;
    let epoch_ns = u64::try_from(args.key_epoch.as_nanos()).unwrap_or(u64::MAX);
    if epoch_ns > crate::core::chain::MAX_EPOCH_NS {
        return Err(MountError::KeyEpochTooLong(args.key_epoch));
    }
    keys::require_signing_key(&state).map_err(MountError::Key)?;
    let (origin, checkpoint_key) = keys::load_checkpoint_key(&state).map_err(MountError::Key)?;
    let store = open_index(&checked, &state)?;
    let index_err = |err| MountError::Index { path: state.index(), err };
    let key =
        keys::load_signing(&state, keys::chain_key_id(store.as_ref()).map_err(index_err)?).map_err(MountError::Key)?;
    let ledger = Arc::new(Ledger::open(store, key, Arc::new(SystemClock), policy).map_err(MountError::Ledger)?);
    let filesystem = Arc::new(
        WormFs::new(&checked.data, ledger.clone())
            .map_err(MountError::Core)?
            .with_read_audit(args.audit_reads)
            .with_key_epochs(Arc::new(FileVault::new(state.clone())), epoch_ns),
    );
    let software = format!("wormfs {}", env!("CARGO_PKG_VERSION"));
    let data_dir = checked.data.as_os_str().as_encoded_bytes();
    let started = filesystem.start(&software, data_dir, checked.adopt_existing).map_err(MountError::Recovery)?;
    // Loading the keys and the mount's rotation left key bytes in this thread's dead frames.
    keys::scrub_stack();
    // The history replayed for recovery is gone; give its memory (tens of MiB for a chain of
    // a million records) back to the system instead of keeping it as the daemon's high-water.
    // SAFETY: malloc_trim only walks and trims glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
    let recovery = &started.recovery;
    info!(
        "chain at record {}; recovery checked {} files, sealed {} with unsealed bytes",
        started.mount_seq, recovery.files_checked, recovery.recovered
    );
    for damage in &recovery.damaged {
        warn!("damaged outside wormfs: {damage} (run wormfs verify)");
    }
    // From here on, every way out closes the chain: seal every tail, then an Unmount record.
    let mut daemon = Daemon {
        fs: filesystem.clone(),
        socket: None,
        timers: Vec::new(),
        checkpointer: None,
        metrics: None,
        torn_down: false,
    };

    daemon.socket = Some(
        control::serve(&state, filesystem.clone(), checked.data.clone())
            .map_err(|err| MountError::Dir { path: state.control_socket(), err })?,
    );

    let mut config = Config::default();
    let acl = if args.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.acl = acl;
    config.n_threads = Some(WORKER_THREADS);
    config.clone_fd = true;

    // The kernel checks mode bits and ownership (default_permissions), as on any local filesystem.
    let source = format!("wormfs:{}", checked.data.display());
    let session = kernel::mount_fuse(&source, &checked.mountpoint, args.allow_other)
        .and_then(|fd| {
            fuser::Session::from_fd(FuseAdapter::new(filesystem.clone()), fd, acl, config).inspect_err(|_| {
                let _ = kernel::unmount(&checked.mountpoint);
            })
        })
        .map_err(MountError::Session)?;
    info!("mounted {} on {} ({FS_TYPE})", checked.data.display(), checked.mountpoint.display());

    let mountpoint = checked.mountpoint.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_stop(signals, &mountpoint))
        .map_err(MountError::Session)?;

    daemon.timers.push(sealer::start(filesystem.clone(), args.seal_interval).map_err(MountError::Session)?);
    daemon.timers.push(checkpointer::start_epochs(filesystem.clone()).map_err(MountError::Session)?);
    let signer = LogSigner::new(origin, checkpoint_key);
    daemon.checkpointer = Some(
        Checkpointer::start(filesystem.clone(), state.clone(), signer, witnesses, args.checkpoint_interval)
            .map_err(MountError::Session)?,
    );
    if let Some(plan) = archive {
        let bucket = plan.client.bucket().to_string();
        let timer = archiver::start(filesystem.clone(), state.clone(), checked.data.clone(), plan)
            .map_err(MountError::Session)?;
        daemon.timers.push(timer);
        info!("archiving to s3://{bucket} every {} s", args.archive_interval.as_secs());
    }
    let metrics_file = args.metrics_file.clone().unwrap_or_else(|| state.metrics_file());
    daemon.metrics = Some(MetricsWriter::start(filesystem.clone(), metrics_file).map_err(MountError::Session)?);
    // Ready only once the mount answers: a stat of its root is served by run() below.
    let (data, mountpoint) = (checked.data.clone(), checked.mountpoint.clone());
    let _ = std::thread::Builder::new().name("ready".into()).spawn(move || {
        if fs::metadata(&mountpoint).is_ok() {
            info!("serving {} on {}", data.display(), mountpoint.display());
            notify::notify(&format!("READY=1\nSTATUS=serving {} on {}", data.display(), mountpoint.display()));
        }
    });
    let served = match session.run() {
        // The kernel tears the connection down when the (possibly lazily detached) mount goes
        // away; with several worker threads one of them can read that abort before another
        // handles FUSE_DESTROY. Either way the mount ended.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            info!("the kernel closed the FUSE connection");
            Ok(())
        }
        other => other,
    };
    notify::notify("STOPPING=1");
    info!("unmounted {}", checked.mountpoint.display());
    // Seal every tail and write Unmount even if the session ended with an error.
    daemon.tear_down().map_err(MountError::Core)?;
    served.map_err(MountError::Session)
}

/// What a mounted daemon runs beside the FUSE session. Torn down exactly once: by `tear_down`
/// on the way out of a served mount, or by `Drop` on any early return after the Mount record.
struct Daemon {
    fs: Arc<WormFs>,
    socket: Option<PathBuf>,
    /// The interval sealer and the epoch timer.
    timers: Vec<Ticker>,
    checkpointer: Option<Checkpointer>,
    metrics: Option<MetricsWriter>,
    torn_down: bool,
}

fn archive_plan(args: &MountArgs) -> Result<Option<archiver::Plan>, MountError> {
    let Some(url) = &args.archive else { return Ok(None) };
    let (bucket, prefix) = crate::archive::parse_bucket_url(url).map_err(MountError::Archive)?;
    let s3 = S3Args {
        endpoint: args.archive_endpoint.clone(),
        path_style: args.archive_path_style,
        region: args.archive_region.clone(),
    };
    let client = s3.client(&bucket).map_err(|e| MountError::Archive(e.to_string()))?;
    Ok(Some(archiver::Plan { client, prefix, interval: args.archive_interval, prune: args.archive_prune }))
}

impl Daemon {
    /// Stop the timers, hand admin commands back to the index (remove the socket),
    /// seal every tail and write the Unmount record, then write the metrics one last time.
    fn tear_down(&mut self) -> Result<(), FsError> {
        if std::mem::replace(&mut self.torn_down, true) {
            return Ok(());
        }
        for timer in self.timers.drain(..) {
            timer.stop();
        }
        let last_checkpoint = self.checkpointer.take().map(Checkpointer::stop);
        if self.fs.open_handles() > 0 {
            warn!("{} file handles were still open at unmount", self.fs.open_handles());
        }
        if let Some(socket) = self.socket.take() {
            let _ = fs::remove_file(socket);
        }
        let shut = self.fs.shutdown();
        keys::scrub_stack();
        // The chain's final state, Unmount included, checkpointed and sent to the witnesses.
        if let Some(last) = last_checkpoint {
            last.publish();
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.stop();
        }
        shut
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.tear_down() {
            log::error!("closing the chain failed: {e}");
        }
    }
}

/// The --witness URL VKEY pairs.
fn witnesses(args: &[String]) -> Result<Vec<Witness>, MountError> {
    args.chunks(2)
        .map(|pair| match pair {
            [url, vkey] => WitnessKey::parse(vkey)
                .map(|key| Witness::new(url, key))
                .ok_or_else(|| MountError::BadWitness(vkey.clone())),
            _ => Err(MountError::BadWitness(String::new())),
        })
        .collect()
}

/// Open the index, or create it for a new chain — but never over existing data unless told to.
fn open_index(checked: &Checked, state: &StateDir) -> Result<Arc<dyn Store>, MountError> {
    let path = state.index();
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

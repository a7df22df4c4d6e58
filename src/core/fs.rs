//! The write-once filesystem over DATA_DIR, in plain types: what the FUSE adapter calls for each
//! request. Rules come from `policy`; this file applies them to the live state (sizes of open
//! files, handles, inodes) and does the backing I/O.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::stat::FileStat;
use nix::sys::time::TimeSpec;

use super::backing::{DataDir, Protection};
use super::error::{io_errno, Damage, FsError, FsResult};
use super::handles::{Access, FileHandle, HandleTable, OpenFile, OpenFiles, Writer};
use super::history::History;
use super::inodes::{InodeTable, ROOT_INO};
use super::ledger::{Ledger, LedgerError};
use super::metrics::Metrics;
use super::path::RelPath;
use super::policy::{self, AtimeEffect, NodeKind, Refusal};
use super::seals::{self, DamageLog, Recovery, SealCause};
use super::segment::{Hash, SegmentHasher};
use super::space::{SpaceChange, SpaceWatch};
use super::store::{KeyVault, StoreError};
use super::sync::{lock, read, write};
use std::sync::Arc;

/// st_blksize we report at least: tools like cp size their buffers from it, and each write(2)
/// costs a round trip to the daemon.
pub const MIN_BLKSIZE: u32 = 128 * 1024;

/// Who is asking (from the FUSE request header).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The calling thread (FUSE reports the thread, not its process).
    pub tid: u32,
}

#[derive(Debug, Clone)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub kind: NodeKind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

#[derive(Debug, Clone, Copy)]
pub enum TimeSet {
    Now,
    At(SystemTime),
}

/// A setattr request: each `Some` is a change asked for.
#[derive(Debug, Clone, Default)]
pub struct AttrChanges {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    /// The handle the change comes through (ftruncate), if any: a file open only through the
    /// caller's own handle may still be truncated.
    pub via: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: NodeKind,
    pub name: OsString,
}

/// A successful open: the handle, and whether the kernel must bypass its page cache for it.
/// Writable handles are direct-I/O so that a shared writable mmap is refused by the kernel
/// (ENODEV) instead of dirtying cached pages that could never be written back.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub fh: u64,
    pub direct_io: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Bytes of one file after which their writeback is started (`DataDir::start_writeback`).
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// The largest chunk copy_file_range moves per request; the kernel loops for more.
const COPY_CHUNK: u64 = 1 << 20;

#[derive(Debug)]
pub struct WormFs {
    data: DataDir,
    ledger: Arc<Ledger>,
    inodes: InodeTable,
    files: HandleTable<FileHandle>,
    dirs: HandleTable<Vec<DirEntry>>,
    open_files: OpenFiles,
    /// Record every open for reading (`--audit-reads`).
    audit_reads: bool,
    metrics: Metrics,
    /// Held while a backing file's kernel flags change together with what they follow (a
    /// writer's arrival, a last close, an authorised change), so two of them never interleave.
    /// Taken after `gate`, before the open-file table.
    flag_lock: std::sync::Mutex<()>,
    /// Damage already recorded in the chain, so each is recorded once.
    damage: DamageLog,
    /// Whether the state disk has room for the seals of more bytes and files.
    space: SpaceWatch,
    /// Where the epoch key lives and how long an epoch is (None: the key never rotates, as in
    /// the core's tests that do not need it).
    epochs: Option<(Arc<dyn KeyVault>, u64)>,
    /// Shared by open() and by creating names; exclusive for the retention-gated changes
    /// (unlink, rename, truncate), so no open can slip in between "nothing has it open" and the
    /// change, and no create lands in a directory between "it is empty" and its rename.
    gate: std::sync::RwLock<()>,
}

/// What `start` did.
#[derive(Debug, Clone)]
pub struct Started {
    /// The Mount record.
    pub mount_seq: u64,
    /// Index entries the Mount record repaired.
    pub repaired: usize,
    pub recovery: Recovery,
}

/// What one pass of sealing open files did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sealed {
    pub sealed: usize,
    pub failed: usize,
}

/// The gauges of the moment, for the metrics file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub open_files: u64,
    pub unsealed_bytes: u64,
    /// Age of the oldest byte not yet sealed, in seconds (0 when all is sealed).
    pub oldest_unsealed_seconds: f64,
    /// New bytes and files are refused for want of room on the state disk.
    pub state_space_short: bool,
}

fn refused(path: &RelPath, refusal: Refusal) -> FsError {
    FsError::Refused { path: path.clone(), refusal }
}

/// A retention-gated change the ledger refused (or could not record).
fn gated(path: &RelPath, e: LedgerError) -> FsError {
    match e {
        LedgerError::Refused(refusal) => refused(path, refusal),
        other => FsError::ledger(path, other),
    }
}

impl WormFs {
    pub fn new(data_dir: &Path, ledger: Arc<Ledger>) -> FsResult<WormFs> {
        let data = DataDir::open(data_dir).map_err(|e| FsError::os(&RelPath::root(), e))?;
        let root = data.stat(&RelPath::root()).map_err(|e| FsError::os(&RelPath::root(), e))?;
        Ok(WormFs {
            data,
            ledger,
            inodes: InodeTable::new(root.st_ino),
            files: HandleTable::default(),
            dirs: HandleTable::default(),
            open_files: OpenFiles::default(),
            audit_reads: false,
            epochs: None,
            metrics: Metrics::default(),
            damage: DamageLog::default(),
            space: SpaceWatch::default(),
            flag_lock: std::sync::Mutex::new(()),
            gate: std::sync::RwLock::new(()),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn gauges(&self) -> Gauges {
        let now = SystemTime::now();
        let mut g = Gauges { state_space_short: self.space.is_short(), ..Gauges::default() };
        for shared in self.open_files.all() {
            let state = lock(&shared);
            g.open_files += 1;
            g.unsealed_bytes += state.unsealed();
            if let Some(since) = state.unsealed_since {
                let age = now.duration_since(since).map_or(0.0, |d| d.as_secs_f64());
                g.oldest_unsealed_seconds = g.oldest_unsealed_seconds.max(age);
            }
        }
        g
    }

    /// New bytes and new files are taken only while the state disk has room for their seals
    /// (`core::space`); else ENOSPC, counted, and logged once each time room runs out and returns.
    fn room_for_more(&self, path: &RelPath) -> FsResult<()> {
        // Called with a file's state locked: counting the open files must not lock their table.
        let (answer, change) = self.space.check(|| (self.ledger.room(), self.open_files.count()));
        log_space_change(change);
        answer.map_err(|no| {
            self.metrics.space_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            FsError::NoSpace { path: path.clone(), no }
        })
    }

    /// A seal that failed and is retried later: logged, except for want of room, which is
    /// logged once when it begins (a full state disk would otherwise log every close).
    fn seal_failed(&self, path: &RelPath, cause: SealCause, e: &FsError) {
        match e {
            FsError::Ledger { source: LedgerError::Store(StoreError::NoSpace(no)), .. } => {
                log_space_change(self.space.ran_out(*no));
                log::debug!("sealing {path} ({cause:?}) waits for room: {e}");
            }
            _ => log::error!("sealing {path} ({cause:?}) failed: {e}; retried at the next seal"),
        }
    }

    /// Inject I/O errors under the core as `faults` plans (tests of the failure paths).
    pub fn with_faults(mut self, faults: Arc<dyn super::backing::Faults>) -> Self {
        self.data.set_faults(faults);
        self
    }

    /// Record an Access record for every open of a file for reading.
    pub fn with_read_audit(mut self, on: bool) -> Self {
        self.audit_reads = on;
        self
    }

    /// Rotate the signing key at every mount and every `epoch_ns` (`rotate_key`).
    pub fn with_key_epochs(mut self, vault: Arc<dyn KeyVault>, epoch_ns: u64) -> Self {
        self.epochs = Some((vault, epoch_ns.max(1)));
        self
    }

    /// Begin a new key epoch now (the mount does, and the epoch timer when one is due).
    pub fn rotate_key(&self) -> Result<(), LedgerError> {
        let Some((vault, epoch_ns)) = &self.epochs else { return Ok(()) };
        match self.ledger.rotate(vault.as_ref(), *epoch_ns) {
            Ok(_) => {
                self.metrics.key_rotations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.metrics.key_rotation_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// How long until the current epoch ends (zero: it has), by the chain's clock; None when
    /// keys do not rotate.
    pub fn next_rotation_in(&self) -> Option<std::time::Duration> {
        let (_, epoch_ns) = self.epochs.as_ref()?;
        // An epoch that would end past the end of time (a head dated near u64::MAX, forged)
        // never ends: rotating would only make another such epoch.
        let Some(ends) = self.ledger.epoch().since_ns.checked_add(*epoch_ns) else {
            return Some(std::time::Duration::MAX);
        };
        Some(std::time::Duration::from_nanos(ends.saturating_sub(self.ledger.now())))
    }

    fn path_of(&self, ino: u64) -> FsResult<RelPath> {
        self.inodes.path(ino).ok_or(FsError::UnknownInode(ino))
    }

    fn handle(&self, fh: u64) -> FsResult<std::sync::Arc<FileHandle>> {
        self.files.get(fh).ok_or(FsError::UnknownHandle(fh))
    }

    fn stat(&self, path: &RelPath) -> FsResult<FileStat> {
        self.data.stat(path).map_err(|e| FsError::os(path, e))
    }

    fn attr(&self, st: &FileStat) -> Attr {
        Attr {
            ino: self.inodes.fuse_ino(st.st_ino),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: to_time(st.st_atime, st.st_atime_nsec),
            mtime: to_time(st.st_mtime, st.st_mtime_nsec),
            ctime: to_time(st.st_ctime, st.st_ctime_nsec),
            kind: NodeKind::from_mode(st.st_mode).unwrap_or(NodeKind::File),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: (st.st_blksize as u32).max(MIN_BLKSIZE),
        }
    }

    /// Stat `path` and count a kernel reference to it.
    fn remember(&self, path: &RelPath) -> FsResult<Attr> {
        let attr = self.attr(&self.stat(path)?);
        self.inodes.remember(attr.ino, path);
        Ok(attr)
    }

    /// The size the append rule applies to: the open file's if it is open, else the backing one.
    fn current_size(&self, ino: u64, path: &RelPath) -> FsResult<u64> {
        match self.open_files.get(ino) {
            Some(state) => Ok(lock(&state).size),
            None => Ok(self.stat(path)?.st_size as u64),
        }
    }

    /// Owner and mode of a new node: the caller, with the group of a setgid parent directory,
    /// and exactly the mode the caller asked for (less its umask). The mode is set after the
    /// chown (which clears setgid) and explicitly, because the daemon's own umask (systemd's
    /// UMask=0077) also narrowed it at creation.
    fn own_new(&self, parent: &RelPath, path: &RelPath, caller: &Caller, mode: u32) -> FsResult<()> {
        let dir = self.stat(parent)?;
        let setgid_dir = dir.st_mode & libc::S_ISGID != 0;
        let gid = new_node_group(&dir, caller);
        self.data.chown(path, Some(caller.uid), Some(gid)).map_err(|e| FsError::os(path, e))?;
        let is_dir = self.stat(path)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
        // New directories in a setgid directory inherit setgid, as on any local filesystem.
        let mode = if is_dir && setgid_dir { mode | libc::S_ISGID } else { mode };
        self.data.chmod(path, mode & 0o7777).map_err(|e| FsError::os(path, e))
    }

    // ---- names ----

    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        let path = self.path_of(parent)?.join(name)?;
        self.remember(&path)
    }

    pub fn forget(&self, ino: u64, count: u64) {
        self.inodes.forget(ino, count);
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let path = self.path_of(ino)?;
        Ok(self.attr(&self.stat(&path)?))
    }

    pub fn setattr(&self, caller: &Caller, ino: u64, changes: &AttrChanges) -> FsResult<Attr> {
        let path = self.path_of(ino)?;
        if let Some(to) = changes.size {
            self.truncate(ino, &path, to, changes.via)?;
        }
        if let Some(TimeSet::At(atime)) = changes.atime {
            self.atime_as_retention(&path, atime, caller)?;
        }
        let metadata = changes.mode.is_some() || changes.uid.is_some() || changes.gid.is_some();
        if metadata || changes.atime.is_some() || changes.mtime.is_some() {
            // Owner, mode and times change no content, but the kernel's flags would refuse them.
            let _flags = lock(&self.flag_lock);
            self.data.protect(&path, Protection::None);
            let applied = self.apply_metadata(&path, changes);
            self.rest(ino, &path);
            applied?;
        }
        Ok(self.attr(&self.stat(&path)?))
    }

    fn apply_metadata(&self, path: &RelPath, changes: &AttrChanges) -> FsResult<()> {
        let os = |e| FsError::os(path, e);
        if let Some(mode) = changes.mode {
            self.data.chmod(path, mode).map_err(os)?;
        }
        if changes.uid.is_some() || changes.gid.is_some() {
            self.data.chown(path, changes.uid, changes.gid).map_err(os)?;
        }
        if changes.atime.is_some() || changes.mtime.is_some() {
            let (Some(atime), Some(mtime)) = (to_timespec(changes.atime), to_timespec(changes.mtime)) else {
                return Err(FsError::TimeOutOfRange { path: path.clone() });
            };
            self.data.utimens(path, atime, mtime).map_err(os)?;
        }
        Ok(())
    }

    /// Put a file's kernel flags back to what its state calls for: append-only while wormfs
    /// has it open for writing, immutable otherwise. Only files with a history are flagged.
    fn rest(&self, ino: u64, path: &RelPath) {
        if !self.ledger.file(path).is_ok_and(|f| f.is_some()) {
            return;
        }
        let writing = self.open_files.get(ino).is_some_and(|s| lock(&s).handles() > 0);
        self.data.protect(path, if writing { Protection::AppendOnly } else { Protection::Immutable });
    }

    /// truncate(2)/ftruncate(2): a no-op to the current size; smaller only once retention has
    /// expired (recorded first); never larger. The ledger decides, under its lock.
    fn truncate(&self, ino: u64, path: &RelPath, to: u64, via: Option<u64>) -> FsResult<()> {
        let _gate = write(&self.gate);
        let _flags = lock(&self.flag_lock);
        // A writable handle of the caller's own (ftruncate, `truncate -s` which opens the file
        // first) is no reason to refuse; any other handle is.
        let via = via.filter(|fh| self.files.get(*fh).is_some_and(|h| h.ino == ino));
        let writer = via.and_then(|fh| self.files.get(fh));
        let open = self.is_open_except(ino, via);
        let shared = writer.as_ref().and_then(|h| h.writer()).map(|w| w.shared.clone());
        let mut state = shared.as_ref().map(|s| lock(s));
        if let Some(state) = state.as_deref_mut() {
            // What this handle wrote is sealed first: a cut never passes over unsealed bytes.
            seals::seal_open(&self.ledger, &self.data, &self.metrics, &self.damage, state, SealCause::Fsync)?;
        }
        let size = match state.as_deref() {
            Some(state) => state.size,
            None => self.current_size(ino, path)?,
        };
        // The rules first (checked again under the chain lock), so a refused truncate costs
        // nothing; then prove what stays still matches its seals, and hash the kept part of the
        // segment the cut goes through, so every byte that stays remains checkable.
        self.ledger.check_truncate(path, size, to, open).map_err(|e| gated(path, e))?;
        if to == size {
            return Ok(());
        }
        let kept = self.kept_part(path, to)?;
        if let Some(change) = self.ledger.truncate(path, size, to, open, kept).map_err(|e| gated(path, e))? {
            self.data.protect(path, Protection::None);
            let cut = self.data.truncate(path, to);
            let rest = if state.is_some() { Protection::AppendOnly } else { Protection::Immutable };
            self.data.protect(path, rest);
            if let Err(e) = cut {
                self.abort(path, change, &e);
                return Err(e);
            }
            if let Some(state) = state.as_deref_mut() {
                state.cut_to(to);
            }
        }
        Ok(())
    }

    /// Before cutting `path` at `to`: every sealed range below the cut, and the whole range the
    /// cut goes through, must still hash to its seal (else the truncate would hide tampering);
    /// returns where the kept part of the cut range starts and its SHA-256. Replays the chain
    /// for the file's ranges: truncates are rare, and only happen after retention expired.
    fn kept_part(&self, path: &RelPath, to: u64) -> FsResult<(u64, Hash)> {
        let history = History::replay(self.ledger.store()).map_err(|e| FsError::ledger(path, e.into()))?;
        let (kept_start, ranges) = history.cut(path, to).ok_or_else(|| {
            refused(
                path,
                Refusal::NotExpired {
                    op: policy::Gated::Truncate,
                    standing: crate::core::retention::Standing::Untracked,
                },
            )
        })?;
        let file = self.data.open_file(path, false)?;
        // One read of each range: the kept part's hash is taken from the very bytes that were
        // just proven to match their seal, never from a second read that could see them changed.
        let mut kept_hash = SegmentHasher::default().finish();
        for r in &ranges {
            let split = to.clamp(r.start, r.end);
            let (head, whole) = seals::hash_range_split(&file, path, r.start, split, r.end)?;
            if whole != r.hash {
                let damage = Damage::Changed { start: r.start, end: r.end };
                return Err(FsError::Damaged { path: path.clone(), damage });
            }
            if r.start == kept_start && kept_start < to {
                kept_hash = head;
            }
        }
        Ok((kept_start, kept_hash))
    }

    /// SnapLock-style retention: setting a sealed file's atime to a future date asks to retain
    /// it until then (`policy::atime` decides what an atime means). An earlier date than already
    /// promised is refused.
    fn atime_as_retention(&self, path: &RelPath, atime: SystemTime, caller: &Caller) -> FsResult<()> {
        let requested = atime.duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
        let sealed_file = self.ledger.file(path).map_err(|e| FsError::ledger(path, e.into()))?.is_some();
        match policy::atime(requested, self.ledger.now(), sealed_file) {
            AtimeEffect::Ordinary => Ok(()),
            AtimeEffect::RetainUntil(until_ns) => match self.ledger.extend_retention(path, until_ns, caller.uid) {
                Ok(_) => Ok(()),
                // Deleted in between (after expiry): what is left is an ordinary atime.
                Err(LedgerError::UnknownFile(_)) => Ok(()),
                Err(e) => Err(gated(path, e)),
            },
        }
    }

    /// Whether any handle, for reading or writing, has inode `ino` open.
    fn is_open(&self, ino: u64) -> bool {
        self.is_open_except(ino, None)
    }

    /// Whether any handle but `except` has `ino` open. Bytes a last close could not seal (a
    /// state left with no handles) count as open too: they must be sealed before the file goes.
    fn is_open_except(&self, ino: u64, except: Option<u64>) -> bool {
        self.files.any_except(except, |h| h.ino == ino)
            || self.open_files.get(ino).is_some_and(|s| {
                let s = lock(&s);
                s.handles() == 0 && s.unsealed() > 0
            })
    }

    pub fn readlink(&self, ino: u64) -> FsResult<OsString> {
        let path = self.path_of(ino)?;
        self.data.readlink(&path).map_err(|e| FsError::os(&path, e))
    }

    // ---- creating and removing names ----

    pub fn mknod(&self, caller: &Caller, parent: u64, name: &OsStr, mode: u32, umask: u32) -> FsResult<Attr> {
        let _gate = read(&self.gate);
        let parent_path = self.path_of(parent)?;
        let path = parent_path.join(name)?;
        let kind = NodeKind::from_mode(mode).unwrap_or(NodeKind::File);
        policy::create_node(kind).map_err(|r| refused(&path, r))?;
        self.room_for_more(&path)?;
        self.new_backing_file(&path, mode & !umask & 0o7777)?;
        self.own_new(&parent_path, &path, caller, mode & !umask)?;
        let attr = self.remember(&path)?;
        self.record_create(&path, &attr).inspect_err(|_| self.forget_new(&path))?;
        self.data.protect(&path, Protection::Immutable);
        Ok(attr)
    }

    /// A name can be created only when the chain's history of it (if any) ended with a Delete or
    /// Rename; otherwise its file vanished behind wormfs' back: damage, logged, and refused.
    fn history_must_have_ended(&self, path: &RelPath) -> FsResult<()> {
        if self.ledger.file(path).map_err(|e| FsError::ledger(path, e.into()))?.is_none() {
            return Ok(());
        }
        self.damage.record(&self.ledger, path, Damage::Missing)?;
        Err(FsError::Damaged { path: path.clone(), damage: Damage::Missing })
    }

    /// A new file whose Create record could not be written goes again: a file in DATA_DIR with
    /// no history would be damage to every later open.
    fn forget_new(&self, path: &RelPath) {
        if let Err(e) = self.data.unlink(path) {
            log::error!("{path}: created without a Create record, and cannot be removed: {}", e.desc());
        }
    }

    /// The Create record, once the file exists with its final owner and mode.
    fn record_create(&self, path: &RelPath, attr: &Attr) -> FsResult<()> {
        self.ledger
            .create(path, libc::S_IFREG | u32::from(attr.perm), attr.uid, attr.gid)
            .map(|_| ())
            .map_err(|e| FsError::ledger(path, e))
    }

    pub fn mkdir(&self, caller: &Caller, parent: u64, name: &OsStr, mode: u32, umask: u32) -> FsResult<Attr> {
        let _gate = read(&self.gate);
        let parent_path = self.path_of(parent)?;
        let path = parent_path.join(name)?;
        self.data.mkdir(&path, mode & !umask & 0o7777).map_err(|e| FsError::os(&path, e))?;
        self.own_new(&parent_path, &path, caller, mode & !umask)?;
        self.remember(&path)
    }

    /// create(2)/open(O_CREAT): a new file, or the existing one when O_EXCL was not asked for.
    pub fn create(
        &self,
        caller: &Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> FsResult<(Attr, Opened)> {
        let gate = read(&self.gate);
        // Resolved under the gate: a directory rename cannot move the parent in between.
        let parent_path = self.path_of(parent)?;
        let path = parent_path.join(name)?;
        let kind = NodeKind::from_mode(mode).unwrap_or(NodeKind::File);
        policy::create_node(kind).map_err(|r| refused(&path, r))?;
        self.room_for_more(&path)?;
        match self.new_backing_file(&path, mode & !umask & 0o7777) {
            Ok(file) => {
                // Through the new file's descriptor: no second lookup of its name.
                let gid = new_node_group(&self.stat(&parent_path)?, caller);
                self.data.own_open(&file, caller.uid, gid, mode & !umask).map_err(|e| FsError::os(&path, e))?;
                let st = nix::sys::stat::fstat(&file).map_err(|e| FsError::os(&path, e))?;
                let attr = self.attr(&st);
                self.inodes.remember(attr.ino, &path);
                self.record_create(&path, &attr).inspect_err(|_| self.forget_new(&path))?;
                let _flags = lock(&self.flag_lock);
                self.data.protect_open(&file, &path, Protection::AppendOnly);
                let opened = self.register_handle(caller, attr.ino, &path, file, flags)?;
                Ok((attr, opened))
            }
            // Lost a race with another creator: open what is there, like open(2) would.
            Err(FsError::Os { errno: Errno::EEXIST, .. }) if flags & libc::O_EXCL == 0 => {
                let attr = self.remember(&path)?;
                drop(gate); // open takes it again
                let opened = self.open(caller, attr.ino, flags)?;
                Ok((attr, opened))
            }
            Err(e) => Err(e),
        }
    }

    /// A new, empty backing file (O_EXCL: EEXIST if the name is taken on disk). The name may be
    /// free on disk while the chain's history of it never ended (its file was removed behind
    /// wormfs' back): then the new file goes again and the create is refused as damage.
    fn new_backing_file(&self, path: &RelPath, mode: u32) -> FsResult<std::fs::File> {
        let file = self.data.create_file(path, mode).map_err(|e| FsError::os(path, e))?;
        if let Err(e) = self.history_must_have_ended(path) {
            drop(file);
            let _ = self.data.unlink(path);
            return Err(e);
        }
        Ok(file)
    }

    /// unlink of a file whose retention expired, no hold covers and nothing has open: the Delete
    /// record is durable before the file goes.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        let path = self.path_of(parent)?.join(name)?;
        let _gate = write(&self.gate);
        let st = self.stat(&path)?;
        let open = self.is_open(self.inodes.fuse_ino(st.st_ino));
        let change = self.ledger.delete(&path, st.st_size as u64, open).map_err(|e| gated(&path, e))?;
        self.remove(&path, change)
    }

    /// Delete the local copy of an expired file that record `archived` keeps in S3 (`wormfs
    /// archive --prune`, after it checked the object): `unlink`'s rules, recorded as Pruned.
    /// The Pruned record's seq.
    pub fn prune(&self, path: &RelPath, archived: u64) -> FsResult<u64> {
        let _gate = write(&self.gate);
        let st = self.stat(path)?;
        let open = self.is_open(self.inodes.fuse_ino(st.st_ino));
        let change = self.ledger.prune(path, st.st_size as u64, open, archived).map_err(|e| gated(path, e))?;
        let seq = change.record.seq();
        self.remove(path, change).map(|()| seq)
    }

    /// The unlink a recorded Delete or Pruned stands for (aborted in the chain if it fails).
    fn remove(&self, path: &RelPath, change: super::ledger::Change) -> FsResult<()> {
        let _flags = lock(&self.flag_lock);
        self.data.protect(path, Protection::None);
        self.data.unlink(path).map_err(|e| {
            self.data.protect(path, Protection::Immutable);
            let e = FsError::os(path, e);
            self.abort(path, change, &e);
            e
        })
    }

    /// A Delete, Rename or Truncate whose system call failed did not happen: say so in the
    /// chain, so the chain and DATA_DIR agree. If even that cannot be written (a failing state
    /// disk), the next mount finds the change undone on disk and records it then.
    fn abort(&self, path: &RelPath, change: super::ledger::Change, failed: &FsError) {
        let errno = match failed {
            FsError::Os { errno, .. } => *errno as u32,
            _ => libc::EIO as u32,
        };
        let seq = change.record.seq();
        match self.ledger.abort(change, errno) {
            Ok(record) => log::warn!("{path}: {failed}; record {seq} aborted by record {}", record.seq()),
            Err(e) => log::error!(
                "{path}: {failed}, and the chain cannot say so ({e}); the next mount finds record {seq} undone"
            ),
        }
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        let path = self.path_of(parent)?.join(name)?;
        self.data.rmdir(&path).map_err(|e| FsError::os(&path, e))
    }

    /// rename: an expired file (recorded first; its seals follow it) to a name that does not
    /// exist, or an empty directory.
    pub fn rename(&self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr, exchange: bool) -> FsResult<()> {
        let _gate = write(&self.gate);
        let from = self.path_of(parent)?.join(name)?;
        let to = self.path_of(new_parent)?.join(new_name)?;
        let _flags = lock(&self.flag_lock);
        let st = self.stat(&from)?;
        let ino = self.inodes.fuse_ino(st.st_ino);
        let target_exists = self.data.stat(&to).is_ok();
        let mut file_change = None;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let empty = self.data.read_dir(&from).map_err(|e| FsError::os(&from, e))?.is_empty();
            policy::rename_dir(empty, target_exists, exchange).map_err(|r| refused(&from, r))?;
        } else {
            let change = self.ledger.rename(&from, &to, self.is_open(ino), target_exists, exchange);
            file_change = Some(change.map_err(|e| gated(&from, e))?);
            self.data.protect(&from, Protection::None);
        }
        let renamed = self.data.rename_noreplace(&from, &to).map_err(|e| FsError::os(&from, e));
        // The file is immutable again where it now is (or, if the rename failed, where it was).
        self.data.protect(if renamed.is_ok() { &to } else { &from }, Protection::Immutable);
        if let (Err(e), Some(change)) = (&renamed, file_change) {
            self.abort(&from, change, e);
        }
        renamed?;
        self.inodes.moved(ino, &to);
        Ok(())
    }

    pub fn link(&self, new_parent: u64, new_name: &OsStr) -> FsResult<Attr> {
        let path = self.path_of(new_parent)?.join(new_name)?;
        Err(refused(&path, Refusal::Link))
    }

    pub fn symlink(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        let path = self.path_of(parent)?.join(name)?;
        Err(refused(&path, Refusal::Symlink))
    }

    // ---- file I/O ----

    pub fn open(&self, caller: &Caller, ino: u64, flags: i32) -> FsResult<Opened> {
        let path = self.path_of(ino)?;
        match self.open_path(caller, ino, &path, flags) {
            // Gone from DATA_DIR while the chain's history of it is open: damage, not a
            // harmless ENOENT (and not a name free for a new file).
            Err(FsError::Os { errno: Errno::ENOENT, .. }) => {
                self.history_must_have_ended(&path)?;
                Err(FsError::os(&path, Errno::ENOENT))
            }
            other => other,
        }
    }

    fn open_path(&self, caller: &Caller, ino: u64, path: &RelPath, flags: i32) -> FsResult<Opened> {
        let path = path.clone();
        let _gate = read(&self.gate);
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if flags & libc::O_TRUNC != 0 {
            policy::open_truncate(self.current_size(ino, &path)?).map_err(|r| refused(&path, r))?;
        }
        if self.audit_reads && flags & libc::O_ACCMODE != libc::O_WRONLY {
            // Recorded (synced) before the reader gets a handle: no read goes unaudited.
            let command = command_name(caller.tid);
            self.ledger.access(&path, caller.uid, caller.tid, &command).map_err(|e| FsError::ledger(&path, e))?;
        }
        // Immutable while sealed and closed; append-only while a writer has it open. The flag
        // and the writer's arrival are one step, so a last close cannot make it immutable again
        // between them.
        let _flags = writable.then(|| lock(&self.flag_lock));
        if writable {
            self.data.protect(&path, Protection::AppendOnly);
        }
        let file = self.data.open_file(&path, writable).inspect_err(|_| self.rest(ino, &path))?;
        self.register_handle(caller, ino, &path, file, flags)
    }

    fn register_handle(
        &self,
        caller: &Caller,
        ino: u64,
        path: &RelPath,
        file: std::fs::File,
        flags: i32,
    ) -> FsResult<Opened> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        // Writers share the file's append state; its first writer brings the index up to date
        // with whatever is on disk, so appends chain onto sealed bytes.
        let access = if writable {
            let shared = self.open_files.attach(ino, || {
                let size = seals::catch_up(&self.ledger, &self.damage, path, &file)?;
                let own = file.try_clone().map_err(|e| FsError::os(path, io_errno(&e)))?;
                Ok(OpenFile::new(path.clone(), own, size))
            })?;
            Access::Write(Writer {
                append: flags & libc::O_APPEND != 0,
                shared,
                opener: thread_group(caller.tid),
                closed: std::sync::atomic::AtomicBool::new(false),
            })
        } else {
            Access::Read
        };
        let fh = self.files.insert(FileHandle { ino, path: path.clone(), file, access });
        Ok(Opened { fh, direct_io: writable })
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match h.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FsError::os(&h.path, io_errno(&e))),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Append `data` if the rules allow a write at `offset`. `append_now` is O_APPEND as the
    /// file's flags stand at this write (fcntl may have set it after open).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], append_now: bool) -> FsResult<u32> {
        let h = self.handle(fh)?;
        self.append_to(&h, offset, data, append_now)
    }

    fn append_to(&self, h: &FileHandle, offset: u64, data: &[u8], append_now: bool) -> FsResult<u32> {
        let Some(writer) = h.writer() else {
            return Err(FsError::NotWritable { path: h.path.clone() });
        };
        let mut state = lock(&writer.shared);
        if let Some(damage) = state.damaged {
            return Err(FsError::Damaged { path: h.path.clone(), damage });
        }
        let at =
            policy::write_offset(state.size, offset, writer.append || append_now).map_err(|r| refused(&h.path, r))?;
        self.room_for_more(&h.path)?;
        let mut written = 0usize;
        while written < data.len() {
            match self.data.write_at(&h.file, &h.path, &data[written..], at + written as u64) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(Errno::EINTR) => {}
                // Bytes already written are part of the file now: report them, like write(2).
                Err(_) if written > 0 => break,
                Err(e) => return Err(FsError::os(&h.path, e)),
            }
        }
        // A large writer's bytes go to disk as they come, not all at the seal's fdatasync.
        if let Some((start, len)) = state.appended(&data[..written], WRITEBACK_CHUNK) {
            self.data.start_writeback(&state.file, start, len);
        }
        self.metrics.appended(written);
        Ok(written as u32)
    }

    /// copy_file_range into a wormfs file obeys the same append rule as write.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        offset_in: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
        append_now: bool,
    ) -> FsResult<u32> {
        let out = self.handle(fh_out)?;
        let Some(writer) = out.writer() else {
            return Err(FsError::NotWritable { path: out.path.clone() });
        };
        // Check before reading so a refused copy costs nothing.
        {
            let state = lock(&writer.shared);
            policy::write_offset(state.size, offset_out, writer.append || append_now)
                .map_err(|r| refused(&out.path, r))?;
        }
        let data = self.read(fh_in, offset_in, len.min(COPY_CHUNK) as u32)?;
        if data.is_empty() {
            return Ok(0);
        }
        self.append_to(&out, offset_out, &data, append_now)
    }

    pub fn fallocate(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        Err(refused(&h.path, Refusal::Fallocate))
    }

    /// fsync/fdatasync: the bytes are durable, and sealed, when this returns.
    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let h = self.handle(fh)?;
        if let Some(writer) = h.writer() {
            // Sealing fdatasyncs the file first; only fsync's metadata is left to do.
            seals::seal_open(
                &self.ledger,
                &self.data,
                &self.metrics,
                &self.damage,
                &mut lock(&writer.shared),
                SealCause::Fsync,
            )?;
        }
        let r = if datasync { h.file.sync_data() } else { h.file.sync_all() };
        r.map_err(|e| FsError::os(&h.path, io_errno(&e)))
    }

    /// SEEK_DATA / SEEK_HOLE (the kernel answers the other whences itself).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        let h = self.handle(fh)?;
        let whence = match whence {
            libc::SEEK_DATA => nix::unistd::Whence::SeekData,
            libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
            libc::SEEK_SET => nix::unistd::Whence::SeekSet,
            libc::SEEK_END => nix::unistd::Whence::SeekEnd,
            _ => return Err(FsError::UnsupportedWhence { path: h.path.clone(), whence }),
        };
        nix::unistd::lseek(&h.file, offset, whence).map_err(|e| FsError::os(&h.path, e))
    }

    /// close(2) of a descriptor (the kernel waits for this, unlike release). When the process
    /// that opened the file's only writable handle closes it, that is the end of an
    /// open/append/close cycle: seal now, so the segment is exactly that cycle and is durable
    /// when close(2) returns. Other closes (a forked child's copy) leave it to release.
    pub fn flush(&self, caller: &Caller, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        let Some(writer) = h.writer() else { return Ok(()) };
        if thread_group(caller.tid) != writer.opener {
            return Ok(());
        }
        let mut state = lock(&writer.shared);
        if !writer.closed.swap(true, std::sync::atomic::Ordering::Relaxed) {
            state.closed_by_opener();
        }
        // The last writer's close seals, also when earlier handles' RELEASE is still on its way:
        // their openers closed them too. (A copy of one kept open elsewhere may still write;
        // those bytes are sealed at its own close.)
        if state.all_closed_by_openers() && state.unsealed() > 0 {
            seals::seal_open(&self.ledger, &self.data, &self.metrics, &self.damage, &mut state, SealCause::LastClose)?;
        }
        Ok(())
    }

    /// The last close of an open() (after close(2) returned). The last writer's close seals the
    /// file; a failure cannot reach close(2) (the kernel ignores release errors), so it is logged
    /// and the hashed bytes wait in memory for the interval sealer, the next open or unmount.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = self.files.remove(fh).ok_or(FsError::UnknownHandle(fh))?;
        if let Some(writer) = h.writer() {
            let closed = writer.closed.load(std::sync::atomic::Ordering::Relaxed);
            let Some(shared) = self.open_files.let_go(h.ino, closed) else { return Ok(()) };
            // Sealed under the file's lock alone (usually there is nothing left: its opener's
            // close sealed it). A new open may join meanwhile; its bytes are then sealed too.
            {
                let mut state = lock(&shared);
                if state.handles() == 0 {
                    let sealed = seals::seal_open(
                        &self.ledger,
                        &self.data,
                        &self.metrics,
                        &self.damage,
                        &mut state,
                        SealCause::LastClose,
                    );
                    if let Err(e) = sealed {
                        self.seal_failed(&state.path, SealCause::LastClose, &e);
                    }
                }
            }
            // If the seal failed the state stays (with no handles), so the interval sealer, the
            // next open or unmount can still seal exactly the bytes wormfs saw written.
            let _flags = lock(&self.flag_lock);
            self.open_files.forget_if_done(h.ino, |state| self.data.protect(&state.path, Protection::Immutable));
        }
        Ok(())
    }

    /// Seal every open file with unsealed bytes (the interval sealer and unmount call this).
    /// Says how many were sealed and how many failed; failures are logged and retried next time.
    pub fn seal_open_files(&self, cause: SealCause) -> Sealed {
        let mut done = Sealed::default();
        for shared in self.open_files.all() {
            let mut state = lock(&shared);
            if state.unsealed() == 0 {
                continue;
            }
            match seals::seal_open(&self.ledger, &self.data, &self.metrics, &self.damage, &mut state, cause) {
                Ok(()) => done.sealed += 1,
                Err(e) => {
                    done.failed += 1;
                    self.seal_failed(&state.path, cause, &e);
                }
            }
        }
        // An orphan sealed at last is closed: immutable like any other closed file.
        let _flags = lock(&self.flag_lock);
        self.open_files.drop_orphans(|state| self.data.protect(&state.path, Protection::Immutable));
        done
    }

    /// At mount, before serving: replay the chain as it stands, make the index's file and hold
    /// tables say what it says (they are a cache, and may have been edited behind wormfs' back),
    /// write the Mount record with those repairs, then hold every file in DATA_DIR against its
    /// history (`seals::recover`). `adopt_existing`: a new chain may adopt the files it finds.
    pub fn start(&self, software: &str, data_dir: &[u8], adopt_existing: bool) -> FsResult<Started> {
        let root = RelPath::root();
        let mut history = match self.ledger.take_history() {
            Some(history) => history,
            None => History::replay(self.ledger.store()).map_err(|e| FsError::ledger(&root, e.into()))?,
        };
        let repairs = history.repairs(self.ledger.store()).map_err(|e| FsError::ledger(&root, e.into()))?;
        let repaired = repairs.len();
        if repaired > 0 {
            log::warn!(
                "the index's file and hold tables disagree with the chain in {repaired} entries (changed outside wormfs); the Mount record repairs them"
            );
        }
        let mount = self.ledger.mount(software, data_dir, repairs).map_err(|e| FsError::ledger(&root, e))?;
        // Before anything else is signed: the key that lay on disk while wormfs was down signs
        // only the Mount and the rotation away from it.
        self.rotate_key().map_err(|e| FsError::ledger(&root, e))?;
        seals::reconcile(&self.ledger, &self.data, &mut history)?;
        self.damage.seed(&history);
        // A failed recovery leaves the chain open (no Unmount): its tails are not all sealed.
        let recovery = seals::recover(&self.ledger, &self.data, &history, &self.damage, adopt_existing)?;
        Ok(Started { mount_seq: mount.seq(), repaired, recovery })
    }

    /// At unmount: seal every tail, then close the chain with an Unmount record. An Unmount promises every tail is sealed, so it is written only when that is true; if a
    /// seal failed the chain stays open and the next mount recovers those bytes.
    pub fn shutdown(&self) -> FsResult<()> {
        let done = self.seal_open_files(SealCause::Unmount);
        if done.failed > 0 {
            return Err(FsError::Unsealed { files: done.failed });
        }
        // Files still open at unmount (a lazy unmount) are sealed now: immutable like the rest.
        let _flags = lock(&self.flag_lock);
        for shared in self.open_files.all() {
            self.data.protect(&lock(&shared).path, Protection::Immutable);
        }
        // The epoch the run ends in is closed too: the key left on disk while wormfs is down
        // signs only the Unmount (and, at the next mount, the Mount and the rotation away).
        if let Err(e) = self.rotate_key() {
            log::error!("{e}; the last epoch of this run stays open until the next mount");
        }
        self.ledger.unmount().map(|_| ()).map_err(|e| FsError::ledger(&RelPath::root(), e))
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    // ---- directories ----

    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let path = self.path_of(ino)?;
        let listing = self.data.read_dir(&path).map_err(|e| FsError::os(&path, e))?;
        let parent_ino = match path.split_last() {
            Some((parent, _)) => self.stat(&parent).map(|st| self.inodes.fuse_ino(st.st_ino))?,
            None => ROOT_INO,
        };
        let mut entries = vec![
            DirEntry { ino, kind: NodeKind::Dir, name: ".".into() },
            DirEntry { ino: parent_ino, kind: NodeKind::Dir, name: "..".into() },
        ];
        entries.extend(listing.into_iter().map(|e| DirEntry {
            ino: self.inodes.fuse_ino(e.ino),
            kind: NodeKind::from_mode(e.file_type).unwrap_or(NodeKind::File),
            name: e.name,
        }));
        Ok(self.dirs.insert(entries))
    }

    /// The listing taken at opendir: a stable snapshot, so readdir offsets (indexes into it)
    /// stay valid while the directory grows.
    pub fn readdir(&self, fh: u64) -> FsResult<std::sync::Arc<Vec<DirEntry>>> {
        self.dirs.get(fh).ok_or(FsError::UnknownHandle(fh))
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }

    pub fn fsyncdir(&self, ino: u64) -> FsResult<()> {
        let path = self.path_of(ino)?;
        let fd = self.data.open_dir(&path).map_err(|e| FsError::os(&path, e))?;
        nix::unistd::fsync(&fd).map_err(|e| FsError::os(&path, e))
    }

    // ---- extended attributes and the rest ----

    /// One attribute's value, read through to the backing file; `size` is the caller's buffer
    /// (0: only asking how large it is).
    pub fn getxattr(&self, ino: u64, name: &OsStr, size: u32) -> FsResult<XattrReply> {
        let path = self.path_of(ino)?;
        let value = self.data.getxattr(&path, name).map_err(|e| FsError::os(&path, e))?;
        xattr_reply(&path, value, size)
    }

    /// The NUL-separated attribute names, sized like `getxattr`.
    pub fn listxattr(&self, ino: u64, size: u32) -> FsResult<XattrReply> {
        let path = self.path_of(ino)?;
        let names = self.data.listxattr(&path).map_err(|e| FsError::os(&path, e))?;
        xattr_reply(&path, names, size)
    }

    /// No ioctls: chattr and friends see a filesystem without them.
    pub fn ioctl(&self, ino: u64, cmd: u32) -> FsResult<()> {
        Err(FsError::UnsupportedIoctl { path: self.path_of(ino)?, cmd })
    }

    pub fn setxattr(&self, ino: u64) -> FsResult<()> {
        Err(refused(&self.path_of(ino)?, Refusal::SetXattr))
    }

    pub fn removexattr(&self, ino: u64) -> FsResult<()> {
        Err(refused(&self.path_of(ino)?, Refusal::RemoveXattr))
    }

    pub fn statfs(&self) -> FsResult<FsStats> {
        let s = self.data.statvfs().map_err(|e| FsError::os(&RelPath::root(), e))?;
        Ok(FsStats {
            blocks: s.blocks(),
            bfree: s.blocks_free(),
            bavail: s.blocks_available(),
            files: s.files(),
            ffree: s.files_free(),
            bsize: s.block_size() as u32,
            namelen: s.name_max() as u32,
            frsize: s.fragment_size() as u32,
        })
    }

    /// Handles still open (for logging at shutdown).
    pub fn open_handles(&self) -> usize {
        self.files.count()
    }
}

/// The group a new node in directory `dir` gets: a setgid directory's, else the caller's.
fn new_node_group(dir: &FileStat, caller: &Caller) -> u32 {
    if dir.st_mode & libc::S_ISGID != 0 {
        dir.st_gid
    } else {
        caller.gid
    }
}

fn log_space_change(change: Option<SpaceChange>) {
    match change {
        Some(SpaceChange::Ran(no)) => log::error!(
            "{no} to seal safely: new writes and files get ENOSPC until there is room (reads go on; closes and seals of what was written get ENOSPC and are retried)"
        ),
        Some(SpaceChange::Returned) => log::warn!("the state directory has room again: writes and new files resume"),
        None => {}
    }
}

/// The answer to getxattr/listxattr: the size asked for, or the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

/// The xattr calls' sizing protocol: size 0 asks for the length, a buffer too small is an error.
fn xattr_reply(path: &RelPath, value: Vec<u8>, size: u32) -> FsResult<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(value.len() as u32))
    } else if value.len() <= size as usize {
        Ok(XattrReply::Data(value))
    } else {
        Err(FsError::XattrTooLarge { path: path.clone(), len: value.len(), buffer: size })
    }
}

/// The process a thread belongs to (FUSE reports the calling thread): `Tgid` in
/// /proc/TID/status, or the thread itself if it is already gone.
///
/// Remembered per request thread for a second: an open/write/close cycle asks twice (open and
/// close), and generating /proc/TID/status was a tenth of the daemon's CPU per sealed create.
/// A thread id reused within the second (32,768 forks/s at Linux's smallest pid_max) could only
/// make a seal come at another close or at the release, never change what is sealed.
fn thread_group(tid: u32) -> u32 {
    use std::cell::Cell;
    use std::time::Instant;
    const FRESH: Duration = Duration::from_secs(1);
    thread_local! {
        static LAST: Cell<Option<(u32, u32, Instant)>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    if let Some((seen, tgid, at)) = LAST.get() {
        if seen == tid && now.duration_since(at) < FRESH {
            return tgid;
        }
    }
    let tgid = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Tgid:").and_then(|v| v.trim().parse().ok())));
    match tgid {
        Some(tgid) => {
            LAST.set(Some((tid, tgid, now)));
            tgid
        }
        // Already gone: the thread itself (not remembered).
        None => tid,
    }
}

/// The short command name of process `pid` (`/proc/PID/comm`), or `?` if it is gone.
fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(|_| "?".to_string(), |c| c.trim_end().to_string())
}

/// A stat time as a SystemTime; one the platform cannot hold (set directly in DATA_DIR to
/// something absurd) shows as the epoch rather than failing the stat.
fn to_time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = Duration::new(0, nsecs.clamp(0, 999_999_999) as u32);
    let at = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    at.and_then(|t| t.checked_add(nanos)).unwrap_or(UNIX_EPOCH)
}

/// A requested time as the timespec utimensat takes, or None for one it cannot hold (more than
/// 2^63 seconds from the epoch either way: any caller can ask for it, and it must not panic).
fn to_timespec(t: Option<TimeSet>) -> Option<TimeSpec> {
    Some(match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeSet::Now) => TimeSpec::UTIME_NOW,
        Some(TimeSet::At(when)) => {
            let (secs, nanos) = match when.duration_since(UNIX_EPOCH) {
                Ok(d) => (i64::try_from(d.as_secs()).ok()?, i64::from(d.subsec_nanos())),
                // Before the epoch: -d, as whole seconds below it plus a non-negative fraction.
                Err(before) => {
                    let d = before.duration();
                    let secs = i64::try_from(d.as_secs()).ok()?.checked_neg()?;
                    match d.subsec_nanos() {
                        0 => (secs, 0),
                        n => (secs.checked_sub(1)?, 1_000_000_000 - i64::from(n)),
                    }
                }
            };
            TimeSpec::new(secs, nanos)
        }
    })
}

//! Open file and directory handles, and the state shared by all handles of one open file.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{Damage, FsResult};
use super::path::RelPath;
use super::sync::lock;
use super::tail_hash::TailHasher;

/// What every writable handle of one file shares while the file is open. `size` is the
/// authority for the append rule: read from the backing file at first open, then moved only by
/// the bytes wormfs itself appends. Bytes [sealed, size) are hashed in `hasher`, awaiting a seal.
#[derive(Debug)]
pub struct OpenFile {
    pub path: RelPath,
    pub size: u64,
    pub sealed: u64,
    pub hasher: TailHasher,
    /// The file's own descriptor, so a seal can fdatasync it whichever handle is left.
    pub file: File,
    /// Bytes below this have been handed to the disk's writeback (`DataDir::start_writeback`).
    pub writeback_from: u64,
    /// When the oldest unsealed byte arrived (None when everything is sealed).
    pub unsealed_since: Option<std::time::SystemTime>,
    /// Set when the backing file turned out changed behind wormfs' back while open: nothing
    /// more is appended or sealed through this state.
    pub damaged: Option<Damage>,
    handles: u32,
    /// Handles whose opener has closed them (FLUSH) but whose RELEASE has not arrived yet: the
    /// kernel sends RELEASE asynchronously, so the next `>>` can open, write and close before
    /// the previous one's handle is gone.
    closed_by_opener: u32,
}

impl OpenFile {
    pub fn new(path: RelPath, file: File, size: u64) -> Self {
        OpenFile {
            path,
            size,
            sealed: size,
            hasher: TailHasher::default(),
            writeback_from: size,
            file,
            unsealed_since: None,
            damaged: None,
            handles: 0,
            closed_by_opener: 0,
        }
    }

    /// Give up the unsealed bytes of a file found damaged: they are not sealed (the Damaged
    /// record says so), and nothing is retried.
    pub fn abandon(&mut self, damage: Damage) {
        self.damaged = Some(damage);
        self.sealed = self.size;
        self.hasher = TailHasher::default();
        self.unsealed_since = None;
    }

    /// `bytes` were appended at the end: hashed, counted, and, once `writeback_chunk` bytes have
    /// come since the last time, the range whose writeback should start now.
    pub fn appended(&mut self, bytes: &[u8], writeback_chunk: u64) -> Option<(u64, u64)> {
        if bytes.is_empty() {
            return None;
        }
        if super::EVIDENCE {
            self.hasher.update(bytes);
        }
        self.size += bytes.len() as u64;
        if self.unsealed_since.is_none() {
            self.unsealed_since = Some(std::time::SystemTime::now());
        }
        let due = self.size - self.writeback_from;
        (due >= writeback_chunk).then(|| (std::mem::replace(&mut self.writeback_from, self.size), due))
    }

    /// The file was truncated to `to` (its bytes were all sealed first): every mark moves there.
    pub fn cut_to(&mut self, to: u64) {
        self.size = to;
        self.sealed = to;
        self.writeback_from = to;
    }

    pub fn unsealed(&self) -> u64 {
        self.size - self.sealed
    }

    /// Writable handles open on the file.
    pub fn handles(&self) -> u32 {
        self.handles
    }

    /// This handle's opener closed it (once per handle: `Writer::closed`).
    pub fn closed_by_opener(&mut self) {
        self.closed_by_opener += 1;
    }

    /// Whether every handle but none is still in its opener's use: the close being served is
    /// the last one that matters, so it seals.
    pub fn all_closed_by_openers(&self) -> bool {
        self.closed_by_opener >= self.handles
    }
}

/// One `open()` of a file.
#[derive(Debug)]
pub struct FileHandle {
    pub ino: u64,
    pub path: RelPath,
    pub file: File,
    pub access: Access,
}

/// What an `open()` may do with the file.
#[derive(Debug)]
pub enum Access {
    Read,
    Write(Writer),
}

/// A writable handle's part in its file's append state.
#[derive(Debug)]
pub struct Writer {
    /// Opened with O_APPEND (a later fcntl(F_SETFL) shows up in each write's flags instead).
    pub append: bool,
    /// The state every writable handle of the file shares.
    pub shared: Arc<Mutex<OpenFile>>,
    /// The process (thread group) that opened it: a close from any of its threads ends an
    /// open/append/close cycle (loggers close from worker threads). A copy of the descriptor
    /// closed elsewhere (a forked child exec'ing) is not the end of anything.
    pub opener: u32,
    /// Its opener has closed it (counted once in the shared state's `closed_by_opener`).
    pub closed: std::sync::atomic::AtomicBool,
}

impl FileHandle {
    /// The writer's part, if this handle was opened for writing.
    pub fn writer(&self) -> Option<&Writer> {
        match &self.access {
            Access::Write(w) => Some(w),
            Access::Read => None,
        }
    }
}

/// A table of live handles keyed by the number the kernel echoes back.
#[derive(Debug)]
pub struct HandleTable<T> {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<T>>>,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        HandleTable { next: AtomicU64::new(1), live: Mutex::new(HashMap::new()) }
    }
}

impl<T> HandleTable<T> {
    pub fn insert(&self, value: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(fh, Arc::new(value));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<T>> {
        lock(&self.live).get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        lock(&self.live).remove(&fh)
    }

    /// How many handles are live.
    pub fn count(&self) -> usize {
        lock(&self.live).len()
    }

    /// Whether any live handle other than `except` matches.
    pub fn any_except(&self, except: Option<u64>, pred: impl Fn(&T) -> bool) -> bool {
        lock(&self.live).iter().any(|(fh, h)| Some(*fh) != except && pred(h))
    }
}

/// The open files by inode, so that every handle of a file shares one `OpenFile`.
#[derive(Debug, Default)]
pub struct OpenFiles {
    by_ino: Mutex<HashMap<u64, Arc<Mutex<OpenFile>>>>,
    /// `by_ino.len()`, readable without the table's lock (a writer holding its file's state
    /// must not take it: `detach` locks the table, then the state).
    count: AtomicU64,
}

impl OpenFiles {
    /// Join the file's shared state, creating it with `first_open` if this is its first
    /// writable handle.
    pub fn attach(&self, ino: u64, first_open: impl FnOnce() -> FsResult<OpenFile>) -> FsResult<Arc<Mutex<OpenFile>>> {
        let mut map = lock(&self.by_ino);
        let state = match map.get(&ino) {
            Some(state) => state.clone(),
            None => {
                let state = Arc::new(Mutex::new(first_open()?));
                map.insert(ino, state.clone());
                self.count.store(map.len() as u64, Ordering::Relaxed);
                state
            }
        };
        lock(&state).handles += 1;
        Ok(state)
    }

    /// A writable handle closed: its file has one handle fewer. Returns the file's state when
    /// that was its last handle, for the caller to seal (under the state's lock alone: a seal's
    /// syncs must not hold up other files' opens and closes) and then `forget_if_done`.
    /// `closed`: its opener had closed it (it was counted in `closed_by_opener`).
    pub fn let_go(&self, ino: u64, closed: bool) -> Option<Arc<Mutex<OpenFile>>> {
        let state = self.get(ino)?;
        let mut s = lock(&state);
        s.handles = s.handles.saturating_sub(1);
        if closed {
            s.closed_by_opener = s.closed_by_opener.saturating_sub(1);
        }
        let last = s.handles == 0;
        drop(s);
        last.then_some(state)
    }

    /// Drop the file's state if it has no handles and nothing left to seal, running
    /// `on_forget` first, with the table locked so no open can join the state in between.
    /// A state whose seal failed stays, with no handles, so its hashed bytes can still be
    /// sealed; one a new open joined meanwhile stays for it. Says whether it was dropped.
    pub fn forget_if_done(&self, ino: u64, on_forget: impl FnOnce(&OpenFile)) -> bool {
        let mut map = lock(&self.by_ino);
        let Some(state) = map.get(&ino).cloned() else { return false };
        let s = lock(&state);
        if s.handles > 0 || s.unsealed() > 0 {
            return false;
        }
        on_forget(&s);
        drop(s);
        map.remove(&ino);
        self.count.store(map.len() as u64, Ordering::Relaxed);
        true
    }

    /// Forget states with no handles and nothing left to seal (orphans whose retry succeeded),
    /// running `on_forget` for each first.
    pub fn drop_orphans(&self, on_forget: impl Fn(&OpenFile)) {
        let mut map = lock(&self.by_ino);
        map.retain(|_, state| {
            let s = lock(state);
            let keep = s.handles > 0 || s.unsealed() > 0;
            if !keep {
                on_forget(&s);
            }
            keep
        });
        self.count.store(map.len() as u64, Ordering::Relaxed);
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Mutex<OpenFile>>> {
        lock(&self.by_ino).get(&ino).cloned()
    }

    /// How many files are open (or wait with unsealed bytes), without locking the table.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Every open file, for the interval sealer and unmount.
    pub fn all(&self) -> Vec<Arc<Mutex<OpenFile>>> {
        lock(&self.by_ino).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_file(size: u64) -> FsResult<OpenFile> {
        let file = tempfile::tempfile().expect("temp file");
        Ok(OpenFile::new(RelPath::root(), file, size))
    }

    #[test]
    fn handles_of_one_file_share_its_state() {
        let files = OpenFiles::default();
        let a = files.attach(5, || open_file(10)).unwrap();
        let b = files.attach(5, || panic!("state is made once, at first open")).unwrap();
        lock(&a).size = 12;
        assert_eq!(lock(&b).size, 12);
        assert!(files.let_go(5, false).is_none(), "one handle is left");
        let last = files.let_go(5, false).expect("the last handle");
        assert!(Arc::ptr_eq(&last, &a));
        assert!(!files.forget_if_done(5, |_| panic!("12 bytes are unsealed")), "kept: unsealed bytes");
        lock(&last).sealed = 12;
        let mut forgotten = 0;
        assert!(files.forget_if_done(5, |s| {
            assert_eq!(s.size, 12);
            forgotten += 1;
        }));
        assert_eq!(forgotten, 1);
        assert!(files.get(5).is_none());
    }

    #[test]
    fn a_state_whose_last_seal_failed_stays_until_sealed() {
        let files = OpenFiles::default();
        files.attach(5, || open_file(10)).unwrap();
        lock(&files.get(5).unwrap()).size = 12; // two bytes written, not sealed
        assert!(files.let_go(5, false).is_some());
        assert!(!files.forget_if_done(5, |_| {}), "the seal failed: kept");
        let orphan = files.get(5).expect("kept: its bytes are not sealed");
        files.drop_orphans(|_| panic!("still unsealed"));
        assert!(files.get(5).is_some(), "still unsealed");
        let again = files.attach(5, || panic!("the next open joins the kept state")).unwrap();
        assert!(Arc::ptr_eq(&orphan, &again));
        lock(&again).sealed = 12;
        assert!(files.let_go(5, false).is_some());
        assert!(files.forget_if_done(5, |_| {}));
        assert!(files.get(5).is_none());
    }

    #[test]
    fn a_state_joined_after_its_last_close_stays_for_the_new_handle() {
        let files = OpenFiles::default();
        files.attach(5, || open_file(10)).unwrap();
        let last = files.let_go(5, false).expect("the last handle");
        // A new open arrives while the closing handle seals.
        let joined = files.attach(5, || panic!("joins the state being sealed")).unwrap();
        assert!(Arc::ptr_eq(&last, &joined));
        assert!(!files.forget_if_done(5, |_| panic!("it has a handle again")));
        assert!(files.get(5).is_some());
    }

    #[test]
    fn handle_numbers_are_unique() {
        let t: HandleTable<u32> = HandleTable::default();
        let a = t.insert(1);
        let b = t.insert(2);
        assert_ne!(a, b);
        assert_eq!(*t.get(b).unwrap(), 2);
        assert!(t.remove(a).is_some());
        assert!(t.get(a).is_none());
    }
}

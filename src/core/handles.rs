//! Open file and directory handles, and the state shared by all handles of one open file.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::path::RelPath;
use super::sync::lock;

/// What every handle of one file agrees on while the file is open. The size is the
/// authority for the append rule: it is read from the backing file at first open and from then
/// on only moves by the bytes wormfs itself appended.
#[derive(Debug)]
pub struct OpenFile {
    pub size: u64,
    handles: u32,
}

/// One `open()` of a file.
#[derive(Debug)]
pub struct FileHandle {
    pub ino: u64,
    pub path: RelPath,
    pub file: File,
    pub writable: bool,
    /// Opened with O_APPEND (a later fcntl(F_SETFL) shows up in each write's flags instead).
    pub append: bool,
    pub state: Arc<Mutex<OpenFile>>,
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

    pub fn len(&self) -> usize {
        lock(&self.live).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The open files by inode, so that every handle of a file shares one `OpenFile`.
#[derive(Debug, Default)]
pub struct OpenFiles {
    by_ino: Mutex<HashMap<u64, Arc<Mutex<OpenFile>>>>,
}

impl OpenFiles {
    /// Join the file's shared state, creating it with `size()` if this is its first handle.
    pub fn attach(&self, ino: u64, size: impl FnOnce() -> u64) -> Arc<Mutex<OpenFile>> {
        let mut map = lock(&self.by_ino);
        let state = map
            .entry(ino)
            .or_insert_with(|| Arc::new(Mutex::new(OpenFile { size: size(), handles: 0 })))
            .clone();
        lock(&state).handles += 1;
        state
    }

    /// A handle closed. Returns true when it was the file's last one.
    pub fn detach(&self, ino: u64) -> bool {
        let mut map = lock(&self.by_ino);
        let Some(state) = map.get(&ino).cloned() else { return false };
        let mut s = lock(&state);
        s.handles = s.handles.saturating_sub(1);
        if s.handles == 0 {
            map.remove(&ino);
            true
        } else {
            false
        }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Mutex<OpenFile>>> {
        lock(&self.by_ino).get(&ino).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_of_one_file_share_its_state() {
        let files = OpenFiles::default();
        let a = files.attach(5, || 10);
        let b = files.attach(5, || panic!("size is read once, at first open"));
        lock(&a).size = 12;
        assert_eq!(lock(&b).size, 12);
        assert!(!files.detach(5));
        assert!(files.detach(5));
        assert!(files.get(5).is_none());
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

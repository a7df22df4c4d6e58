//! Which path each inode number the kernel knows refers to.
//!
//! Inode numbers are the backing files' own (`st_ino` under DATA_DIR), so they are stable across
//! remounts and `tail -F` sees the same file; only DATA_DIR's own number is swapped with FUSE's
//! fixed root number 1. Since files are never renamed while retained, a path is a stable identity
//! and the table only needs the kernel's lookup counts to know when to forget an entry.

use std::collections::HashMap;
use std::sync::RwLock;

use super::path::RelPath;
use super::sync::{read, write};

pub const ROOT_INO: u64 = 1;

#[derive(Debug)]
struct Node {
    path: RelPath,
    lookups: u64,
}

#[derive(Debug)]
pub struct InodeTable {
    /// DATA_DIR's own `st_ino`, shown to the kernel as `ROOT_INO`.
    root_backing_ino: u64,
    nodes: RwLock<HashMap<u64, Node>>,
}

impl InodeTable {
    pub fn new(root_backing_ino: u64) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT_INO, Node { path: RelPath::root(), lookups: 1 });
        InodeTable { root_backing_ino, nodes: RwLock::new(nodes) }
    }

    /// The inode number the kernel sees for a backing `st_ino`.
    pub fn fuse_ino(&self, backing_ino: u64) -> u64 {
        if backing_ino == self.root_backing_ino {
            ROOT_INO
        } else if backing_ino == ROOT_INO {
            self.root_backing_ino
        } else {
            backing_ino
        }
    }

    pub fn path(&self, ino: u64) -> Option<RelPath> {
        read(&self.nodes).get(&ino).map(|n| n.path.clone())
    }

    /// The kernel learned of `ino` at `path` (lookup, create, mkdir, mknod): count it.
    pub fn remember(&self, ino: u64, path: &RelPath) {
        if ino == ROOT_INO {
            return;
        }
        let mut nodes = write(&self.nodes);
        let node = nodes.entry(ino).or_insert_with(|| Node { path: path.clone(), lookups: 0 });
        // The same inode under a new path means the old entry went away behind our back (or the
        // backing filesystem reused the number): the newest path is the true one.
        node.path = path.clone();
        node.lookups += 1;
    }

    /// `ino` was renamed to `path` (the kernel keeps its references).
    pub fn moved(&self, ino: u64, path: &RelPath) {
        if let Some(node) = write(&self.nodes).get_mut(&ino) {
            node.path = path.clone();
        }
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut nodes = write(&self.nodes);
        if let Some(node) = nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(count);
            if node.lookups == 0 {
                nodes.remove(&ino);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn root_number_is_swapped_both_ways() {
        let t = InodeTable::new(2);
        assert_eq!(t.fuse_ino(2), ROOT_INO);
        assert_eq!(t.fuse_ino(ROOT_INO), 2);
        assert_eq!(t.fuse_ino(77), 77);
        assert_eq!(t.path(ROOT_INO), Some(RelPath::root()));
    }

    #[test]
    fn entries_live_until_every_lookup_is_forgotten() {
        let t = InodeTable::new(2);
        let p = RelPath::root().join(OsStr::new("a.log")).unwrap();
        t.remember(10, &p);
        t.remember(10, &p);
        t.forget(10, 1);
        assert_eq!(t.path(10), Some(p));
        t.forget(10, 1);
        assert_eq!(t.path(10), None);
        t.forget(ROOT_INO, 100);
        assert_eq!(t.path(ROOT_INO), Some(RelPath::root()));
    }
}

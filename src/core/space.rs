//! Room on the state disk. A RocksDB write that meets a full disk can abort the daemon
//! (Debian's librocksdb asserts in its WAL writer), and a seal that cannot be written leaves
//! bytes sealed by nothing. So the ledger never asks the store to write with less free space
//! than the store says it needs for itself (`Room::reserve`), and the filesystem stops taking
//! new bytes and new files a margin above that, so the seals of what it already took still fit.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Free space where the store keeps its data, as the store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Bytes the daemon could still write there.
    pub free: u64,
    /// Bytes the store needs free for its own housekeeping (RocksDB: a memtable flush and a
    /// compaction); no commit is made below it.
    pub reserve: u64,
}

/// Too little room, in numbers for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom {
    pub free: u64,
    pub needed: u64,
}

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the state directory's filesystem has {} free, wormfs needs {}", mib(self.free), mib(self.needed))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What the records still to come need besides the store's reserve: the seals of the files
/// open now, and the Unmount, rotations and checkpoints of a clean stop. Generous: a seal record
/// is about 200 bytes, its tree hashes and the WAL's framing a few hundred more.
pub const BASE_MARGIN: u64 = 1 << 20;
pub const PER_OPEN_FILE: u64 = 4 << 10;

/// May a record be committed with this much room?
pub fn commit_room(room: Option<Room>) -> Result<(), NoRoom> {
    match room {
        Some(Room { free, reserve }) if free < reserve => Err(NoRoom { free, needed: reserve }),
        _ => Ok(()),
    }
}

/// May new bytes or a new file be taken with this much room, `open_files` files open?
pub fn intake_room(room: Option<Room>, open_files: u64) -> Result<(), NoRoom> {
    let Some(Room { free, reserve }) = room else { return Ok(()) };
    let needed = reserve.saturating_add(BASE_MARGIN).saturating_add(open_files.saturating_mul(PER_OPEN_FILE));
    if free < needed {
        Err(NoRoom { free, needed })
    } else {
        Ok(())
    }
}

/// How often the intake check asks the filesystem again. Between two looks the seals in flight
/// can only grow by what the margin already covers: each file open needs one seal however many
/// bytes it takes.
const RECHECK_NS: u64 = 100_000_000;

/// The intake rule's answer, cached for `RECHECK_NS` so a write costs no statvfs, and the
/// moments it changes (logged once each way).
#[derive(Debug)]
pub struct SpaceWatch {
    started: Instant,
    next_check_ns: AtomicU64,
    short: AtomicBool,
    free: AtomicU64,
    needed: AtomicU64,
}

/// A change of the watch's answer, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceChange {
    Ran(NoRoom),
    Returned,
}

impl Default for SpaceWatch {
    fn default() -> Self {
        SpaceWatch {
            started: Instant::now(),
            next_check_ns: AtomicU64::new(0),
            short: AtomicBool::new(false),
            free: AtomicU64::new(0),
            needed: AtomicU64::new(0),
        }
    }
}

impl SpaceWatch {
    /// The intake rule now: asks `probe` (room, open files) when the last answer is older than
    /// `RECHECK_NS`, else repeats it. The second value is a change to log.
    pub fn check(&self, probe: impl FnOnce() -> (Option<Room>, u64)) -> (Result<(), NoRoom>, Option<SpaceChange>) {
        let now = self.started.elapsed().as_nanos() as u64;
        let due = self.next_check_ns.load(Ordering::Relaxed);
        // One caller refreshes; the others use the answer it is about to replace.
        if now >= due
            && self.next_check_ns.compare_exchange(due, now + RECHECK_NS, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            let (room, open_files) = probe();
            return self.update(intake_room(room, open_files));
        }
        (self.cached(), None)
    }

    /// Look again at the next check.
    #[cfg(test)]
    fn expire(&self) {
        self.next_check_ns.store(0, Ordering::Relaxed);
    }

    /// A commit was refused for room: intake stops too (until the next look finds room).
    pub fn ran_out(&self, no: NoRoom) -> Option<SpaceChange> {
        self.update(Err(no)).1
    }

    pub fn is_short(&self) -> bool {
        self.short.load(Ordering::Relaxed)
    }

    fn cached(&self) -> Result<(), NoRoom> {
        if self.short.load(Ordering::Acquire) {
            Err(NoRoom { free: self.free.load(Ordering::Relaxed), needed: self.needed.load(Ordering::Relaxed) })
        } else {
            Ok(())
        }
    }

    fn update(&self, answer: Result<(), NoRoom>) -> (Result<(), NoRoom>, Option<SpaceChange>) {
        let change = match answer {
            Err(no) => {
                self.free.store(no.free, Ordering::Relaxed);
                self.needed.store(no.needed, Ordering::Relaxed);
                (!self.short.swap(true, Ordering::AcqRel)).then_some(SpaceChange::Ran(no))
            }
            Ok(()) => self.short.swap(false, Ordering::AcqRel).then_some(SpaceChange::Returned),
        };
        (answer, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn commits_stop_at_the_reserve_and_intake_a_margin_above_it() {
        let room = |free| Some(Room { free, reserve: 32 * MIB });
        assert_eq!(commit_room(None), Ok(()));
        assert_eq!(commit_room(room(32 * MIB)), Ok(()));
        assert_eq!(commit_room(room(32 * MIB - 1)), Err(NoRoom { free: 32 * MIB - 1, needed: 32 * MIB }));
        assert_eq!(intake_room(None, 1_000_000), Ok(()));
        // The margin grows with the files whose seals are still to come.
        let needed = 32 * MIB + BASE_MARGIN + 10 * PER_OPEN_FILE;
        assert_eq!(intake_room(room(needed), 10), Ok(()));
        assert_eq!(intake_room(room(needed - 1), 10), Err(NoRoom { free: needed - 1, needed }));
        assert_eq!(intake_room(room(needed), 11).map_err(|e| e.needed), Err(needed + PER_OPEN_FILE));
        // Between intake and commit: new bytes refused, their seals still written.
        assert!(intake_room(room(32 * MIB + MIB / 2), 0).is_err());
        assert!(commit_room(room(32 * MIB + MIB / 2)).is_ok());
        // Absurd figures saturate instead of overflowing.
        assert!(intake_room(Some(Room { free: u64::MAX, reserve: u64::MAX }), u64::MAX).is_ok());
    }

    #[test]
    fn the_watch_caches_and_reports_each_change_once() {
        let watch = SpaceWatch::default();
        let short = || (Some(Room { free: 0, reserve: MIB }), 0);
        let ample = || (Some(Room { free: 100 * MIB, reserve: MIB }), 0);
        let (answer, change) = watch.check(short);
        assert!(answer.is_err());
        assert!(matches!(change, Some(SpaceChange::Ran(NoRoom { free: 0, .. }))));
        // Cached: the probe is not asked again within RECHECK_NS.
        let (answer, change) = watch.check(|| panic!("asked again too soon"));
        assert!(answer.is_err() && change.is_none());
        watch.expire();
        assert_eq!(watch.check(short), (Err(NoRoom { free: 0, needed: MIB + BASE_MARGIN }), None));
        watch.expire();
        assert_eq!(watch.check(ample), (Ok(()), Some(SpaceChange::Returned)));
        assert!(!watch.is_short());
        watch.expire();
        assert_eq!(watch.check(ample), (Ok(()), None));
    }
}

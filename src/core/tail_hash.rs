//! The running SHA-256 of an open file's unsealed bytes. Small writes are hashed on the request
//! thread. From a file's first large write on, its bytes are hashed by a thread of its own, so
//! the writer's next request is received and written while the last one is hashed: on these
//! machines SHA-256 of 1 MiB costs about as much as receiving and writing it. The hash is always
//! of the very bytes the requests carried, in the order they were appended (a copy goes to the
//! thread; nothing is ever read back from the file).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::segment::{Hash, SegmentHasher};

/// A write this large or larger moves its file's hashing to a thread. Not smaller: handing
/// rsyslog's 64 KiB writes to a thread cost more than hashing them inline (its messages/s fell
/// from 97 % to 87 % of native in `scripts/bench`).
const LARGE_WRITE: usize = 512 << 10;
/// Writes queued for a file's hashing thread before the next one waits (memory in flight per
/// file: at most this many write requests, each at most `fuse::MAX_WRITE`).
const QUEUED: usize = 4;
/// Hashing threads at once, across all files; beyond that files hash on the request thread.
const MAX_THREADS: usize = 4;

static THREADS: AtomicUsize = AtomicUsize::new(0);

pub enum TailHasher {
    Inline(SegmentHasher),
    Threaded(Worker),
}

impl Default for TailHasher {
    fn default() -> Self {
        TailHasher::Inline(SegmentHasher::default())
    }
}

pub struct Worker {
    /// None only while it is dropped (closing the queue ends the thread).
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

enum Job {
    Bytes(Vec<u8>),
    /// Answer with the hash of every byte so far (and keep hashing on from there).
    Hash(SyncSender<Hash>),
    Reset,
}

impl std::fmt::Debug for TailHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TailHasher::Inline(_) => "TailHasher::Inline",
            TailHasher::Threaded(_) => "TailHasher::Threaded",
        })
    }
}

impl TailHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        if let TailHasher::Inline(hasher) = self {
            if bytes.len() >= LARGE_WRITE {
                if let Some(worker) = Worker::start(hasher) {
                    *self = TailHasher::Threaded(worker);
                }
            }
        }
        match self {
            TailHasher::Inline(hasher) => hasher.update(bytes),
            TailHasher::Threaded(w) => w.send(Job::Bytes(bytes.to_vec())),
        }
    }

    /// SHA-256 of every byte since the last reset (waits for the thread to catch up).
    pub fn hash(&self) -> Hash {
        match self {
            TailHasher::Inline(hasher) => hasher.clone().finish(),
            TailHasher::Threaded(w) => {
                let (tx, rx) = mpsc::sync_channel(1);
                w.send(Job::Hash(tx));
                rx.recv().expect("a file's hashing thread answers until it is dropped")
            }
        }
    }

    /// Start over (the bytes so far are sealed, or given up).
    pub fn reset(&mut self) {
        match self {
            TailHasher::Inline(hasher) => *hasher = SegmentHasher::default(),
            TailHasher::Threaded(w) => w.send(Job::Reset),
        }
    }
}

impl Worker {
    /// A hashing thread that continues `from`, or None when there are enough already (or the
    /// system will not make one): then the caller hashes inline, as before.
    fn start(from: &SegmentHasher) -> Option<Worker> {
        let from = from.clone();
        if THREADS.fetch_add(1, Ordering::AcqRel) >= MAX_THREADS {
            THREADS.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let (jobs, rx) = mpsc::sync_channel(QUEUED);
        match std::thread::Builder::new().name("wormfs-hash".into()).spawn(move || hash_jobs(from, rx)) {
            Ok(thread) => Some(Worker { jobs: Some(jobs), thread: Some(thread) }),
            Err(e) => {
                THREADS.fetch_sub(1, Ordering::AcqRel);
                log::warn!("no hashing thread ({e}); hashing on the request thread");
                None
            }
        }
    }

    fn send(&self, job: Job) {
        // The thread only ends when `jobs` is dropped, with this worker.
        let jobs = self.jobs.as_ref().expect("only a worker being dropped has no queue");
        jobs.send(job).expect("a file's hashing thread runs until it is dropped");
    }
}

fn hash_jobs(mut hasher: SegmentHasher, jobs: Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Bytes(bytes) => hasher.update(&bytes),
            Job::Hash(answer) => {
                let _ = answer.send(hasher.clone().finish());
            }
            Job::Reset => hasher = SegmentHasher::default(),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has hashed what is queued.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::sha256;

    #[test]
    fn threaded_and_inline_hashing_agree_and_threads_are_bounded() {
        let small = vec![b'a'; 100];
        let large = vec![b'b'; LARGE_WRITE + 7];
        let mut t = TailHasher::default();
        t.update(&small);
        t.update(&large); // moves to a thread, carrying the small write's state
        t.update(&small);
        let whole = [small.as_slice(), large.as_slice(), small.as_slice()].concat();
        assert_eq!(t.hash(), sha256(&whole));
        assert_eq!(t.hash(), sha256(&whole), "asking does not reset");
        t.reset();
        t.update(&large);
        assert_eq!(t.hash(), sha256(&large));
        t.reset();
        assert_eq!(t.hash(), sha256(b""));
        drop(t);

        // One test, not two: the thread count is global.
        let large = vec![b'c'; LARGE_WRITE];
        let mut many: Vec<TailHasher> = (0..MAX_THREADS + 3).map(|_| TailHasher::default()).collect();
        for t in &mut many {
            t.update(&large);
        }
        assert!(THREADS.load(Ordering::Acquire) <= MAX_THREADS);
        for t in &many {
            assert_eq!(t.hash(), sha256(&large), "hashed inline or on a thread, the same");
        }
        drop(many);
        assert_eq!(THREADS.load(Ordering::Acquire), 0);
    }
}

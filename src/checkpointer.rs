//! The daemon's evidence timers: a new key epoch at every boundary (by the wall clock, also
//! when nothing was written), and a checkpoint every `--checkpoint-interval`, written to
//! STATE_DIR/checkpoint and to syslog (so it leaves the machine with the logs) and submitted to
//! every witness. A witness that is down or refuses is logged and counted, and tried again at
//! the next checkpoint; it never holds up sealing.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{error, info, warn};

use crate::checkpoint::{self, LogSigner};
use crate::core::WormFs;
use crate::state_dir::StateDir;
use crate::ticker::Ticker;
use crate::witness::Witness;

/// After a failed rotation, how long until the next try: a full state disk must not turn into a
/// log line every few milliseconds.
const ROTATION_RETRY: Duration = Duration::from_secs(10);

/// Start the epoch timer: rotates the key whenever the current epoch has ended.
pub fn start_epochs(fs: Arc<WormFs>) -> std::io::Result<Ticker> {
    let timer = fs.clone();
    let failed = Arc::new(AtomicBool::new(false));
    let failing = failed.clone();
    Ticker::start(
        "epochs",
        // Woken a little after the boundary, never busy-waiting on a clock set backwards.
        move || {
            let due = timer.next_rotation_in().unwrap_or(Duration::from_secs(3600)).max(Duration::from_millis(10));
            if failing.load(Ordering::Relaxed) {
                due.max(ROTATION_RETRY)
            } else {
                due
            }
        },
        move || {
            if fs.next_rotation_in() == Some(Duration::ZERO) {
                let result = fs.rotate_key();
                // The frames that held the old and the new key are gone; their bytes are not.
                crate::keys::scrub_stack();
                if let Err(e) = &result {
                    error!("{e}; the key of the current epoch keeps signing (retried in {ROTATION_RETRY:?})");
                }
                failed.store(result.is_err(), Ordering::Relaxed);
            }
        },
    )
}

/// The checkpointer: a checkpoint every interval, and a last one after the Unmount record, so
/// the final state of the chain leaves the machine too.
pub struct Checkpointer {
    ticker: Ticker,
    publisher: Arc<Mutex<Publisher>>,
}

impl Checkpointer {
    pub fn start(
        fs: Arc<WormFs>,
        state: StateDir,
        signer: LogSigner,
        witnesses: Vec<Witness>,
        interval: Duration,
    ) -> std::io::Result<Checkpointer> {
        let publisher = Arc::new(Mutex::new(Publisher { fs, state, signer, witnesses }));
        let ticking = publisher.clone();
        let ticker = Ticker::start("checkpoints", move || interval, move || lock(&ticking).publish())?;
        Ok(Checkpointer { ticker, publisher })
    }

    /// Stop the timer (a checkpoint under way finishes first).
    pub fn stop(self) -> FinalCheckpoint {
        self.ticker.stop();
        FinalCheckpoint(self.publisher)
    }
}

/// What is left of a stopped checkpointer: one last checkpoint to publish.
pub struct FinalCheckpoint(Arc<Mutex<Publisher>>);

impl FinalCheckpoint {
    pub fn publish(self) {
        lock(&self.0).publish();
    }
}

/// A panic in one publish must not stop the next: the publisher holds no invariant a half-done
/// publish could break.
fn lock(publisher: &Mutex<Publisher>) -> std::sync::MutexGuard<'_, Publisher> {
    publisher.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Publisher {
    fs: Arc<WormFs>,
    state: StateDir,
    signer: LogSigner,
    witnesses: Vec<Witness>,
}

impl Publisher {
    fn publish(&mut self) {
        let store = self.fs.ledger().store();
        let mut cp = match checkpoint::sign(store, &self.signer) {
            Ok(cp) => cp,
            Err(e) => return error!("cannot make a checkpoint: {e}"),
        };
        let metrics = self.fs.metrics();
        for witness in &mut self.witnesses {
            match witness.cosign(store, &cp) {
                Ok(line) => {
                    if cp.add_cosignature(&line).is_ok() {
                        metrics.witness_cosignatures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    metrics.witness_failures.fetch_add(1, Ordering::Relaxed);
                    warn!("witness {} ({}): {e}", witness.key.name, witness.url);
                }
            }
        }
        let note = cp.to_note();
        let path = self.state.checkpoint();
        if let Err(e) = crate::metrics::write_atomically(&path, &String::from_utf8_lossy(&note)) {
            return error!("cannot write the checkpoint to {}: {e}", path.display());
        }
        metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
        let one_line = String::from_utf8_lossy(&note).trim_end().replace('\n', "\\n");
        info!("checkpoint {} size {}: {one_line}", cp.origin, cp.size);
        syslog(&format!("checkpoint {one_line}"));
    }
}

/// One line to the system log (LOG_DAEMON, info): the checkpoint leaves the machine with the
/// logs. Its newlines are written as `\n`.
fn syslog(line: &str) {
    let Ok(text) = CString::new(line) else { return };
    // The ident must outlive every syslog call: a static string.
    static IDENT: &[u8] = b"wormfs\0";
    unsafe {
        libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID, libc::LOG_DAEMON);
        libc::syslog(libc::LOG_INFO, c"%s".as_ptr(), text.as_ptr());
    }
}

//! The interval sealer: files that stay open for days (rsyslog's) still get their new bytes
//! sealed every `--seal-interval`. Close, fsync and unmount seal on their own, in `core::fs`.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::debug;

use crate::core::seals::SealCause;
use crate::core::WormFs;

pub struct IntervalSealer {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl IntervalSealer {
    pub fn start(fs: Arc<WormFs>, interval: Duration) -> std::io::Result<IntervalSealer> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("sealer".into()).spawn(move || loop {
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {
                    let done = fs.seal_open_files(SealCause::Interval);
                    if done.sealed > 0 {
                        debug!("interval seal: {} files", done.sealed);
                    }
                }
                // Asked to stop, or the owner is gone.
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })?;
        Ok(IntervalSealer { stop, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IntervalSealer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

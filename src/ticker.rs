//! A background thread that runs a task on a schedule until stopped: the interval sealer, the
//! key-epoch timer and the checkpointer are all one of these.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Ticker {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Run `tick` each time `wait()` has passed; `wait` is asked again after every tick, so a
    /// schedule can follow the wall clock (the next epoch boundary) rather than a fixed period.
    pub fn start(
        name: &str,
        mut wait: impl FnMut() -> Duration + Send + 'static,
        mut tick: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || loop {
            match stopped.recv_timeout(wait()) {
                // A bug in one tick (a panic) must not end the schedule for the life of the
                // daemon: it is logged and the next tick comes as planned.
                Err(RecvTimeoutError::Timeout) => {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut tick)).is_err() {
                        log::error!("a background task panicked; it runs again at its next tick");
                    }
                }
                // Asked to stop, or the owner is gone.
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })?;
        Ok(Ticker { stop, thread: Some(thread) })
    }

    /// Stop and wait for a tick under way to finish.
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

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

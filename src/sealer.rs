//! The interval sealer: files that stay open for days (rsyslog's) still get their new bytes
//! sealed every `--seal-interval`. Close, fsync and unmount seal on their own, in `core::fs`.

use std::sync::Arc;
use std::time::Duration;

use log::debug;

use crate::core::seals::SealCause;
use crate::core::WormFs;
use crate::ticker::Ticker;

pub fn start(fs: Arc<WormFs>, interval: Duration) -> std::io::Result<Ticker> {
    Ticker::start(
        "sealer",
        move || interval,
        move || {
            let done = fs.seal_open_files(SealCause::Interval);
            if done.sealed > 0 {
                debug!("interval seal: {} files", done.sealed);
            }
        },
    )
}

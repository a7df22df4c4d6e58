//! The daemon's archive timer (`wormfs mount --archive s3://BUCKET`): every interval, the same
//! run as `wormfs archive`, recording through the daemon's own ledger.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::archive::s3::S3;
use crate::archive::upload::{self, RunOptions};
use crate::control::Session;
use crate::core::store::{Clock, SystemClock};
use crate::core::WormFs;
use crate::state_dir::StateDir;
use crate::ticker::Ticker;

/// What the daemon archives, where, and how often.
pub struct Plan {
    pub client: S3,
    pub prefix: String,
    pub interval: Duration,
    pub prune: bool,
}

pub fn start(fs: Arc<WormFs>, state: StateDir, data_dir: PathBuf, plan: Plan) -> std::io::Result<Ticker> {
    let Plan { client, prefix, interval, prune } = plan;
    let session = Session::Direct { fs: fs.clone(), data_dir };
    Ticker::start(
        "archiver",
        move || interval,
        move || {
            let opts = RunOptions { prefix: prefix.clone(), prune, progress: false, now_ns: SystemClock.now_ns() };
            let metrics = fs.metrics();
            match upload::run(&state, &session, &client, &opts) {
                Ok(s) => {
                    metrics.archived_files.fetch_add(s.archived.len() as u64, Ordering::Relaxed);
                    metrics.archived_bytes.fetch_add(s.bytes, Ordering::Relaxed);
                    metrics.archive_failures.fetch_add(s.failed.len() as u64, Ordering::Relaxed);
                    if !(s.archived.is_empty() && s.mirrored.is_empty() && s.pruned.is_empty()) {
                        info!(
                            "archive s3://{}: {} files archived ({} bytes), {} objects' locks updated, {} pruned",
                            client.bucket(),
                            s.archived.len(),
                            s.bytes,
                            s.mirrored.len(),
                            s.pruned.len()
                        );
                    }
                    for (path, why) in &s.failed {
                        warn!("archive s3://{}: {path}: {why}", client.bucket());
                    }
                }
                Err(e) => {
                    metrics.archive_failures.fetch_add(1, Ordering::Relaxed);
                    warn!("archive s3://{}: {e} (tried again in {} s)", client.bucket(), interval.as_secs())
                }
            }
        },
    )
}

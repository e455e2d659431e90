//! Watching without the kernel programs: /proc is scanned every [`POLL`] for the command's
//! descendants, and the command's own status comes from `waitpid`. A process that lives
//! less than a scan may be missed, and no death below the command is seen: the summary
//! says so (`approximate`).

use std::time::Duration;

use anyhow::Result;

use super::{Signals, Stop, reap, resources::Resources, tree::Tree};
use crate::run::child::Child;

/// How often /proc is scanned.
pub const POLL: Duration = Duration::from_millis(100);

/// Until the command ended: scans, samples and forwarded signals. Its wait status.
pub async fn watch(
    tree: &mut Tree,
    child: &Child,
    signals: &mut Signals,
    sample: &mut tokio::time::Interval,
    resources: &mut Resources,
    stop: &mut Stop,
) -> Result<super::Ended> {
    let mut scan = tokio::time::interval(POLL);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let kill_at = stop.kill_at;
        tokio::select! {
            _ = scan.tick() => {
                if let Ok(stats) = crate::host::proc::all(std::path::Path::new(crate::host::proc::PROC)) {
                    tree.observe(&stats);
                }
            }
            _ = signals.child.recv() => {
                if let Some(end) = reap(child) {
                    return Ok(end);
                }
            }
            sig = signals.forwarded.next() => stop.forward(child, sig),
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => stop.kill(child),
            _ = sample.tick() => {
                let pids: Vec<u32> = tree.live().collect();
                let s = resources.sample(child.pid, &pids);
                if let Some(top) = &s.top {
                    tree.observe_heaviest(top.pid, &top.comm, top.rss_kb);
                }
            }
        }
    }
}

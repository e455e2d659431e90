//! Watching without the kernel programs: /proc is scanned every [`POLL`] for the command's
//! descendants, and the command's own status comes from `waitpid`. A process that lives
//! less than a scan may be missed, and no death below the command is seen: the summary
//! says so (`approximate`).

use std::time::Duration;

use anyhow::Result;

use super::{Ctl, reap, tree::Tree};

/// How often /proc is scanned.
pub const POLL: Duration = Duration::from_millis(100);

/// Until the command ended: scans, samples and forwarded signals. Its wait status.
pub async fn watch(tree: &mut Tree, ctl: &mut Ctl<'_>) -> Result<super::Ended> {
    let mut scan = tokio::time::interval(POLL);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let kill_at = ctl.stop.kill_at;
        tokio::select! {
            _ = scan.tick() => {
                if let Ok(stats) = crate::host::proc::all(std::path::Path::new(crate::host::proc::PROC)) {
                    tree.observe(&stats);
                }
            }
            _ = ctl.signals.child.recv() => {
                if let Some(end) = reap(ctl.child) {
                    return Ok(end);
                }
            }
            sig = ctl.signals.forwarded.next() => ctl.stop.forward(ctl.child, sig),
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => ctl.stop.kill(ctl.child),
            _ = ctl.sample.tick() => {
                ctl.sample(tree);
                // Polling sees no exit's peak: the biggest process a sample saw.
                if let Some(top) = ctl.resources.last_top() {
                    tree.observe_heaviest(top.pid, &top.comm, top.rss_kb);
                }
            }
        }
    }
}

//! The daemon's side of `/metrics`: what it reads at scrape time, as the plain numbers of a
//! [`Snapshot`] (the `metrics` module itself sees no pipeline, no kernel and no file).
//!
//! At each scrape: `metrics.set_snapshot(&snapshot(...))`, then
//! `metrics.encode(Format::negotiate(accept))`. Every event the daemon writes goes through
//! `metrics.observe(&event)` where it is written (`DaemonOutput::write`).

use std::sync::atomic::Ordering;

use super::{logs::Log, output::DaemonOutput, resources::SessionSampler};
use crate::{host, metrics::Snapshot, pipeline::engine::Engine};

/// What the API server counts of its subscribers (the event stream's clients).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subscribers {
    /// Connected now.
    pub connected: u64,
    /// Events not delivered because a subscriber's queue was full, since the start.
    pub lost: u64,
}

/// The snapshot now. `logs` are the logs not in `out` (the resource logs); the agent's RSS
/// and CPU are read from /proc/self (left out when unreadable).
pub(super) fn snapshot(
    engine: &Engine,
    sampler: &SessionSampler,
    out: &DaemonOutput,
    logs: &[&Log],
    subscribers: Subscribers,
) -> Snapshot {
    let attributor = &engine.core.attributor;
    let sizes = attributor.sizes();
    let stats = &out.reports.stats;
    let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    let usage = host::usage::self_usage(std::path::Path::new(host::proc::PROC)).ok();
    let n = |v: usize| v as u64;
    let otlp = out.otlp.as_ref().map(|o| &*o.stats);
    Snapshot {
        sessions_active: n(attributor.live_by_session().len()),
        sessions_tracked: n(sizes.sessions),
        sessions_refused: sizes.sessions_refused,
        sessions_pruned: sizes.sessions_pruned,
        processes: n(sizes.processes),
        ghosts_reaped: sizes.ghosts_reaped,
        notes: n(sizes.notes),
        sampled_sessions: n(sampler.len()),
        session_histories: n(out.history.len()),
        memcg_scans: engine.core.memcg_scans(),
        unplaced_signals: n(engine.core.unplaced()),
        subscribers: subscribers.connected,
        subscriber_lost: subscribers.lost,
        otlp_sent: otlp.map_or(0, |o| load(&o.sent)),
        otlp_lost: otlp.map_or(0, |o| o.lost()),
        otlp_retries: otlp.map_or(0, |o| load(&o.retries)),
        otlp_pending: otlp.map_or(0, |o| load(&o.pending)),
        reports_written: load(&stats.written),
        report_write_errors: load(&stats.errors),
        reports_suppressed: load(&stats.suppressed),
        log_write_errors: [&out.events, &out.alerts_log]
            .into_iter()
            .chain(logs.iter().copied())
            .map(|l| l.errors)
            .sum(),
        events_log_write_errors: out.events.errors,
        programs: engine.program_stats().unwrap_or_default(),
        resident_memory_bytes: usage.map(|u| u.resident_bytes),
        cpu_seconds: usage.map(|u| u.cpu_seconds),
    }
}

//! Named internal events: everything the agent says about itself (losses, write failures,
//! reloads, reports, start and stop) is one of these, emitted through `tracing`, the habit of
//! vector's `internal_events`.
//!
//! Each event has a fixed message (what happened and, for a failure, what the agent does
//! about it) and its values as structured fields, so a reader of the agent's own log
//! (journald, a terminal, `RUST_LOG=claude_monitor=debug`) can rely on both, and a change of
//! wording is a change here. Cross-cutting: any module may emit them; this module imports
//! none of the agent's.

use std::{fmt::Display, path::Path};

/// Kernel-side or decode losses, reported as a `lost` record too.
pub fn records_lost(count: u64, reason: impl Display) {
    tracing::warn!(count, %reason, "records lost");
}

/// What was reported could not be saved in the pinned map `map`: the next start may
/// report those losses or signal aggregates again.
pub fn reported_not_saved(map: &str, error: impl Display) {
    tracing::warn!(
        map,
        %error,
        "cannot save what was reported; the next start may report it again"
    );
}

/// A ring-buffer record this agent could not decode (counted as `decode_error`).
pub fn undecodable_record(error: impl Display) {
    tracing::warn!(%error, "undecodable ring-buffer record");
}

/// A kernel hook could not be attached; the agent runs without it.
pub fn hook_unavailable(hook: &str, reason: impl Display) {
    tracing::warn!(hook, %reason, "hook unavailable; the agent runs without it");
}

/// bpffs was not mounted at the pin directory's parent; the agent mounted it.
pub fn bpffs_mounted(path: &Path) {
    tracing::info!(path = %path.display(), "mounted bpffs");
}

/// Pinned objects that could not be reopened are replaced (their backlog is lost).
pub fn pin_reopen_failed(dir: &Path, error: impl Display) {
    tracing::warn!(
        dir = %dir.display(),
        %error,
        "cannot reopen the pinned objects; replacing them"
    );
}

/// A log file failed; lines are lost until it works again.
pub fn log_write_failed(path: &Path, error: impl Display) {
    tracing::error!(
        path = %path.display(),
        %error,
        "cannot write a log; the agent keeps running and will retry; lines are lost until it \
         works"
    );
}

/// A log file that failed is writable again.
pub fn log_writable_again(path: &Path, lost: u64) {
    tracing::warn!(path = %path.display(), lost, "log writable again");
}

/// An event that could not be serialized for a log (never expected).
pub fn unserializable(log: &str, error: impl Display) {
    tracing::warn!(log, %error, "cannot serialize a log line");
}

/// A data directory could not be created.
pub fn data_dir_unwritable(dir: &Path, error: impl Display) {
    tracing::error!(
        dir = %dir.display(),
        %error,
        "cannot create a data directory: events, reports and logs cannot be written there \
         until it works (set data_dir or --data-dir); the agent keeps running"
    );
}

/// An exit report was written.
pub fn report_written(path: &Path, summary: &str) {
    tracing::info!(path = %path.display(), summary, "report written");
}

/// An exit report could not be written.
pub fn report_write_failed(id: &str, error: impl Display) {
    tracing::error!(id, %error, "cannot write a report; the agent keeps running");
}

/// A file in the report directory that is not a readable report (skipped when listing).
pub fn report_skipped(id: &str, error: impl Display) {
    tracing::warn!(id, %error, "skipping an unreadable report");
}

/// An alert (also written to the alerts log and the event stream).
pub fn alert(kind: impl Display, message: &str) {
    tracing::warn!(%kind, message, "alert");
}

/// The configuration was re-read on SIGHUP; `restart_needed` when some changed keys only
/// take effect at the next start.
pub fn config_reloaded(restart_needed: bool) {
    if restart_needed {
        tracing::info!(
            "configuration reloaded; changes to data_dir, [kernel], [[rules]], watch.oom_all, \
             watch.ignored_signals, watch.runtime_signals and the [reports] bounds take effect \
             at the next start"
        );
    } else {
        tracing::info!("configuration reloaded");
    }
}

/// The configuration was not reloaded: the new one is invalid and the old one stays.
pub fn config_not_reloaded(error: impl Display) {
    tracing::error!(%error, "configuration not reloaded; the running one stays");
}

/// The daemon is running.
pub fn daemon_started(data_dir: &Path, sessions: usize, pinned: &str) {
    tracing::info!(data_dir = %data_dir.display(), sessions, pinned, "daemon started");
}

/// A uid's reports are over its budget (`reports.per_uid_per_minute`): said once per uid;
/// they are counted (`daemon stopped ... suppressed=`), not written.
pub fn reports_suppressed(uid: u32) {
    tracing::warn!(
        uid,
        "exit reports over a user's budget (reports.per_uid_per_minute) are counted, not written"
    );
}

/// Reports came faster than they can be written (the writer's queue, or the reports
/// waiting for the next loss check, is full): said once; they are counted
/// (`daemon stopped ... suppressed=`), not written.
pub fn reports_queue_full() {
    tracing::warn!(
        "exit reports come faster than they can be written: those beyond the queue are counted, not written"
    );
}

/// journald did not take a report's entry (not running, or its queue full): said for the
/// first; all are counted (`journal_dropped=` at stop).
pub fn journal_not_taken(error: impl Display) {
    tracing::warn!(%error, "journald did not take an exit report's entry ([export.journald]); the report itself is written");
}

/// `[export.otlp]` is on: every event is sent there.
pub fn otlp_exporting(endpoint: &str) {
    tracing::info!(endpoint, "exporting every event as OTLP logs");
}

/// The OTLP receiver failed a request (said for the first failure after a success; the
/// request is retried when that can help, and what is given up is counted).
pub fn otlp_failing(endpoint: &str, error: impl Display) {
    tracing::warn!(endpoint, %error, "the OTLP receiver does not take the events; retrying where that can help, counting what is lost (claude_monitor_records_lost_total{{stage=\"export\"}})");
}

/// The OTLP receiver takes the events again after a failure.
pub fn otlp_recovered(endpoint: &str, lost: u64) {
    tracing::info!(endpoint, lost, "the OTLP receiver takes the events again");
}

/// The OTLP receiver accepted a request but refused some of its records.
pub fn otlp_partly_refused(endpoint: &str, rejected: u64, message: &str) {
    tracing::warn!(
        endpoint,
        rejected,
        message,
        "the OTLP receiver refused some records"
    );
}

/// The OTLP export's queue is full: newer events are dropped and counted (said once until
/// the next success).
pub fn otlp_queue_full(endpoint: &str) {
    tracing::warn!(
        endpoint,
        "the OTLP export's queue is full (the receiver is down or slower than the events): newer events are dropped and counted until it catches up"
    );
}

/// The sizes of the agent's bounded structures, at the daemon's stop (debug).
pub fn structure_sizes(sizes: &impl std::fmt::Debug) {
    tracing::debug!(?sizes, "structure sizes");
}

/// The daemon stopped.
pub fn daemon_stopped(
    reason: impl Display,
    events: u64,
    reports: u64,
    suppressed: u64,
    pinned: bool,
) {
    if pinned {
        tracing::info!(
            %reason,
            events,
            reports,
            suppressed,
            "daemon stopped; the kernel programs stay pinned and keep recording until the \
             next start (`claude-monitor daemon --unpin` removes them)"
        );
    } else {
        tracing::info!(%reason, events, reports, suppressed, "daemon stopped");
    }
}

/// The API socket is served.
pub fn api_listening(socket: &Path, mode: u32, seq: u64) {
    tracing::info!(socket = %socket.display(), mode = format!("{mode:04o}"), seq, "api listening");
}

/// The API socket could not be set up: the daemon runs on without it.
pub fn api_unavailable(socket: &Path, error: impl Display) {
    tracing::error!(socket = %socket.display(), %error, "api socket not available; the daemon runs on without it");
}

/// The API's TCP listener is bound (`addr` is the bound address, its port chosen by the
/// kernel when the configuration said 0).
pub fn api_tcp_listening(addr: std::net::SocketAddr, token: bool) {
    tracing::info!(%addr, token, "api listening on tcp");
}

/// The API's TCP listener could not be set up: the daemon runs on without it.
pub fn api_tcp_unavailable(addr: std::net::SocketAddr, error: impl Display) {
    tracing::error!(%addr, %error, "api tcp listener not available; the daemon runs on without it");
}

/// Accepting a connection on the API socket failed (out of file descriptors): tried again.
pub fn api_accept_failed(error: impl Display) {
    tracing::warn!(%error, "api connection not accepted; accepting again shortly");
}

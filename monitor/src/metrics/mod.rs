//! The agent's Prometheus metrics (`/metrics`), documented in `docs/metrics.md`.
//!
//! Plain data in, text out: [`Metrics::observe`] counts each event the pipeline writes,
//! [`Metrics::set_snapshot`] takes what the daemon reads at scrape time (sizes, report and
//! log counts, the kernel programs' statistics, the agent's own RSS and CPU) as a
//! [`Snapshot`] of plain numbers, and [`Metrics::encode`] renders OpenMetrics or the classic
//! text format 0.0.4 ([`Format::negotiate`] picks one from the `Accept` header). No global
//! registry: the daemon owns one `Metrics` (every method takes `&self`, so it can be shared
//! behind an `Arc` with the HTTP server).
//!
//! Names follow Prometheus's conventions: the `claude_monitor_` prefix, base units
//! (seconds, bytes), `_total` on counters (added by the encoder: counters are registered
//! without it). Every label value comes from a bounded set (an enum of the schema, the
//! standard signal names, the kernel programs' names); never a pid, a session id or a path.
//!
//! `claude_monitor_build_info` is a gauge (= 1) in both formats rather than an OpenMetrics
//! `info`: Debian's promtool 2.42 (and any 0.0.4 parser) rejects the `info` type, and a
//! gauge is what the Prometheus ecosystem's own `*_build_info` series are
//! (`go_build_info`, `node_exporter_build_info`), so queries read the same everywhere.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::event::{Body, CauseKind, Event, Kind, LostReason, ProgramStats};

/// The prefix of every metric name.
pub const PREFIX: &str = "claude_monitor";

/// One label and its value: a fixed name, a value from a bounded set.
type Label = [(&'static str, Cow<'static, str>); 1];

fn label(name: &'static str, value: impl Into<Cow<'static, str>>) -> Label {
    [(name, value.into())]
}

type Counters = Family<Label, Counter>;
type Gauges = Family<Label, Gauge>;

/// Where records were lost (`claude_monitor_records_lost_total{stage}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LostStage {
    /// The kernel could not reserve room in the ring buffer (`lost` events,
    /// `reason: ring_buffer_full`).
    KernelReserve,
    /// Records the agent could not decode (`lost` events, `reason: decode_error`).
    Decode,
    /// Events an API subscriber did not get because its queue was full ([`Snapshot`]).
    SubscriberQueue,
    /// Event lines the events log could not write ([`Snapshot`]).
    Sink,
    /// Events the OTLP export could not deliver: its queue was full, the receiver refused
    /// them, or every attempt failed ([`Snapshot`]).
    Export,
}

names!(LostStage {
    KernelReserve => "kernel_reserve",
    Decode => "decode",
    SubscriberQueue => "subscriber_queue",
    Sink => "sink",
    Export => "export",
});

impl LostStage {
    const EVERY: [LostStage; 5] = [
        LostStage::KernelReserve,
        LostStage::Decode,
        LostStage::SubscriberQueue,
        LostStage::Sink,
        LostStage::Export,
    ];
}

/// Every event kind and cause, to show each series from 0 before its first event (a test
/// checks these lists against the enums).
const KINDS: [Kind; 9] = [
    Kind::AgentStart,
    Kind::AgentStop,
    Kind::Exit,
    Kind::Signal,
    Kind::Oom,
    Kind::Fork,
    Kind::Exec,
    Kind::SignalDeliver,
    Kind::Lost,
];

const CAUSES: [CauseKind; 7] = [
    CauseKind::Exited,
    CauseKind::Terminated,
    CauseKind::Crashed,
    CauseKind::OomKilled,
    CauseKind::Killed,
    CauseKind::KilledByKernel,
    CauseKind::Unknown,
];

/// The `signal` label: the standard signals (1 to 31) by name, every other number
/// (real-time signals, numbers that are no signal) as `other`.
pub fn signal_label(signal: i32) -> &'static str {
    usize::try_from(signal)
        .ok()
        .filter(|&n| n >= 1)
        .and_then(|n| crate::signals::names::SIGNALS.get(n))
        .copied()
        .unwrap_or(OTHER)
}

const OTHER: &str = "other";

/// The `program` label: a kernel program's name as the loader gives it (a fixed list in
/// the code); anything that does not look like an identifier (a lower-case letter, then
/// lower-case letters, digits and `_`, at most 64) is `other`, so the label stays bounded
/// whatever a caller passes.
fn program_label(name: &str) -> Cow<'static, str> {
    let plain = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        Cow::Owned(name.to_owned())
    } else {
        Cow::Borrowed(OTHER)
    }
}

/// What the daemon reads at scrape time, as plain numbers (the names follow
/// `pipeline::attribution::Sizes` and the structure sizes the daemon says at stop).
/// Counters (`_total`) are the running totals since the agent started; the others are the
/// current value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Sessions with at least one live process.
    pub sessions_active: u64,
    /// Sessions tracked (live and lately ended): `Sizes::sessions`.
    pub sessions_tracked: u64,
    /// Sessions not tracked because the table was full (total): `Sizes::sessions_refused`.
    pub sessions_refused: u64,
    /// Sessions forgotten after they ended (total): `Sizes::sessions_pruned`.
    pub sessions_pruned: u64,
    /// Processes in the process table (live and remembered dead): `Sizes::processes`.
    pub processes: u64,
    /// Processes marked exited by a reconciliation with /proc (total): `Sizes::ghosts_reaped`.
    pub ghosts_reaped: u64,
    /// Pending signal, handled-signal and OOM notes: `Sizes::notes`.
    pub notes: u64,
    /// Sessions whose resources are sampled (`SessionSampler::len`).
    pub sampled_sessions: u64,
    /// Sessions with a resource history (`History::len`).
    pub session_histories: u64,
    /// Full scans of the memory cgroup hierarchy (total): `Core::memcg_scans`.
    pub memcg_scans: u64,
    /// Signals not yet placed in a session: `Core::unplaced`.
    pub unplaced_signals: u64,
    /// Clients of the event stream (socket, SSE) connected now.
    pub subscribers: u64,
    /// Events subscribers did not get because their queue was full (total).
    pub subscriber_lost: u64,
    /// Events the OTLP receiver accepted (total): `otlp::Stats::sent`.
    pub otlp_sent: u64,
    /// Events the OTLP export lost (total): `otlp::Stats::lost`.
    pub otlp_lost: u64,
    /// OTLP requests sent again (total): `otlp::Stats::retries`.
    pub otlp_retries: u64,
    /// Events waiting to be sent to the OTLP receiver: `otlp::Stats::pending`.
    pub otlp_pending: u64,
    /// Exit reports written (total): `ReportStats::written`.
    pub reports_written: u64,
    /// Exit reports that could not be written (total): `ReportStats::errors`.
    pub report_write_errors: u64,
    /// Exit reports not written: over their uid's budget or a full queue (total):
    /// `ReportStats::suppressed`.
    pub reports_suppressed: u64,
    /// Lines the daemon's logs (events, alerts, resources) could not write (total): the
    /// sum of each `Log`'s `errors`.
    pub log_write_errors: u64,
    /// Of those, lines of the events log (total): counted as records lost at the `sink`.
    pub events_log_write_errors: u64,
    /// Each kernel program's statistics (`Loaded::program_stats`); empty when the
    /// kernel's BPF statistics are off (`kernel.bpf_stats_enabled=0`).
    pub programs: Vec<ProgramStats>,
    /// The agent's resident memory, bytes (`None`: unreadable, the series is left as it was).
    pub resident_memory_bytes: Option<u64>,
    /// The agent's CPU time, user and system, in clock ticks converted to seconds.
    pub cpu_seconds: Option<f64>,
}

/// The text formats `/metrics` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The classic Prometheus text format, version 0.0.4.
    Text004,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format for a request's `Accept` header: OpenMetrics only when the client asks
    /// for `application/openmetrics-text` (with a non-zero `q`, and not only for a version
    /// other than 1.0.0), the classic text format otherwise (no header, `*/*`,
    /// `text/plain`, anything unknown), as Prometheus's own client libraries do.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let wants_openmetrics = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            if !media.eq_ignore_ascii_case("application/openmetrics-text") {
                return false;
            }
            let mut ok = true;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => ok &= value.parse::<f32>().is_ok_and(|q| q > 0.0),
                    "version" => ok &= value == "1.0.0",
                    _ => {}
                }
            }
            ok
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// The metrics of one agent.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    // From events.
    events: Counters,
    exits: Counters,
    oom_kills: Counter,
    signals: Counters,
    records_lost: Counters,
    processes_unwatched: Counter,
    // From the snapshot.
    sessions_active: Gauge,
    sessions_tracked: Gauge,
    sessions_refused: Counter,
    sessions_pruned: Counter,
    processes: Gauge,
    ghosts_reaped: Counter,
    notes: Gauge,
    sampled_sessions: Gauge,
    session_histories: Gauge,
    memcg_scans: Counter,
    unplaced_signals: Gauge,
    subscribers: Gauge,
    otlp_sent: Counter,
    otlp_retries: Counter,
    otlp_pending: Gauge,
    reports_written: Counter,
    report_write_errors: Counter,
    reports_suppressed: Counter,
    log_write_errors: Counter,
    program_runs: Counters,
    program_run_seconds: Family<Label, Counter<f64, AtomicU64>>,
    resident_memory: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(env!("CARGO_PKG_VERSION"))
    }
}

impl Metrics {
    /// Every metric, at 0, for an agent of `version` (`claude_monitor_build_info`).
    pub fn new(version: &str) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        /// Registers a new metric of type `M` (a counter gets `_total` when encoded).
        fn metric<M: Default + Clone + prometheus_client::registry::Metric>(
            r: &mut Registry,
            name: &str,
            help: &str,
        ) -> M {
            let m = M::default();
            r.register(name, help, m.clone());
            m
        }
        let r = &mut registry;

        let build_info: Gauges = Family::default();
        build_info
            .get_or_create(&label("version", version.to_owned()))
            .set(1);
        r.register(
            "build_info",
            "The agent's version, as a label (the value is 1)",
            build_info,
        );

        // Bounded label sets are created at 0 (`drop` releases the family's lock), so that
        // each series exists before its first event.
        let events: Counters = metric(r, "events", "Events written, by kind");
        for kind in KINDS {
            drop(events.get_or_create(&label("kind", kind.as_str())));
        }
        let exits: Counters = metric(r, "exits", "Process exits, by cause (exit events)");
        for cause in CAUSES {
            drop(exits.get_or_create(&label("cause", cause.as_str())));
        }
        let oom_kills = metric(
            r,
            "oom_kills",
            "Processes the OOM killer chose (oom events)",
        );
        let signals = metric(
            r,
            "signals",
            "Signals sent, by name (signal events; an aggregated record counts each signal it \
             stands for; real-time and unknown signals as other)",
        );
        let records_lost: Counters = metric(
            r,
            "records_lost",
            "Records lost, by stage: kernel_reserve (ring buffer full), decode, \
             subscriber_queue (a slow API client), sink (the events log could not write), \
             export (the OTLP export: queue full, refused, or every attempt failed)",
        );
        for stage in LostStage::EVERY {
            drop(records_lost.get_or_create(&label("stage", stage.as_str())));
        }
        let processes_unwatched = metric(
            r,
            "processes_unwatched",
            "Processes that could not be followed because the kernel's watch map was full \
             (lost events with reason watch_map_full)",
        );

        let sessions_active = metric(r, "sessions_active", "Sessions with a live process");
        let sessions_tracked = metric(
            r,
            "sessions_tracked",
            "Sessions tracked, live and lately ended (bounded structure)",
        );
        let sessions_refused = metric(
            r,
            "sessions_refused",
            "Sessions not tracked because the session table was full",
        );
        let sessions_pruned = metric(
            r,
            "sessions_pruned",
            "Sessions forgotten a while after they ended",
        );
        let processes = metric(
            r,
            "processes_tracked",
            "Processes in the process table, live and remembered dead (bounded structure)",
        );
        let ghosts_reaped = metric(
            r,
            "ghosts_reaped",
            "Processes marked exited by a reconciliation with /proc (their exit record was lost)",
        );
        let notes = metric(
            r,
            "pending_notes",
            "Pending signal, handled-signal and OOM notes awaiting an exit (bounded structure)",
        );
        let sampled_sessions = metric(
            r,
            "sampled_sessions",
            "Sessions whose resources are sampled (bounded structure)",
        );
        let session_histories = metric(
            r,
            "session_histories",
            "Sessions with a resource history kept for reports (bounded structure)",
        );
        let memcg_scans = metric(
            r,
            "memcg_scans",
            "Full scans of the memory cgroup hierarchy",
        );
        let unplaced_signals = metric(
            r,
            "unplaced_signals",
            "Signals not yet placed in a session (bounded structure)",
        );
        let subscribers = metric(
            r,
            "subscribers",
            "Clients of the event stream connected now",
        );
        let otlp_sent = metric(
            r,
            "otlp_records_sent",
            "Events the OTLP receiver accepted ([export.otlp])",
        );
        let otlp_retries = metric(
            r,
            "otlp_retries",
            "OTLP requests sent again (busy receiver, connection error or timeout)",
        );
        let otlp_pending = metric(
            r,
            "otlp_queued_records",
            "Events waiting to be sent to the OTLP receiver (bounded by export.otlp.queue)",
        );
        let reports_written = metric(r, "reports_written", "Exit reports written");
        let report_write_errors = metric(
            r,
            "report_write_errors",
            "Exit reports that could not be written",
        );
        let reports_suppressed = metric(
            r,
            "reports_suppressed",
            "Exit reports not written: over their uid's budget, or the writer's queue was full",
        );
        let log_write_errors = metric(
            r,
            "log_write_errors",
            "Lines the daemon's logs (events, alerts, resources) could not write",
        );
        let program_runs = metric(
            r,
            "kernel_program_runs",
            "Runs of each kernel program (needs sysctl kernel.bpf_stats_enabled=1)",
        );
        let program_run_seconds: Family<Label, Counter<f64, AtomicU64>> = Family::default();
        r.register_with_unit(
            "kernel_program_run",
            "Time spent in each kernel program (needs sysctl kernel.bpf_stats_enabled=1)",
            Unit::Seconds,
            program_run_seconds.clone(),
        );
        let resident_memory = Gauge::default();
        r.register_with_unit(
            "agent_resident_memory",
            "The agent's resident memory (RSS)",
            Unit::Bytes,
            resident_memory.clone(),
        );
        let cpu_seconds: Counter<f64, AtomicU64> = Counter::default();
        r.register_with_unit(
            "agent_cpu",
            "The agent's CPU time, user and system",
            Unit::Seconds,
            cpu_seconds.clone(),
        );

        Metrics {
            registry,
            events,
            exits,
            oom_kills,
            signals,
            records_lost,
            processes_unwatched,
            sessions_active,
            sessions_tracked,
            sessions_refused,
            sessions_pruned,
            processes,
            ghosts_reaped,
            notes,
            sampled_sessions,
            session_histories,
            memcg_scans,
            unplaced_signals,
            subscribers,
            otlp_sent,
            otlp_retries,
            otlp_pending,
            reports_written,
            report_write_errors,
            reports_suppressed,
            log_write_errors,
            program_runs,
            program_run_seconds,
            resident_memory,
            cpu_seconds,
        }
    }

    /// Counts one event the agent wrote (call it for every event, where the daemon writes
    /// the stream: the agent's own, kernel events and `lost`).
    pub fn observe(&self, event: &Event) {
        self.events
            .get_or_create(&label("kind", event.body.kind().as_str()))
            .inc();
        match &event.body {
            Body::Exit(exit) => {
                self.exits
                    .get_or_create(&label("cause", exit.cause.cause.as_str()))
                    .inc();
            }
            Body::Oom(_) => {
                self.oom_kills.inc();
            }
            Body::Signal(signal) => {
                self.signals
                    .get_or_create(&label("signal", signal_label(signal.signal)))
                    .inc_by(signal.count);
            }
            Body::Lost(lost) => match lost.reason {
                LostReason::RingBufferFull => self.lost(LostStage::KernelReserve, lost.count),
                LostReason::DecodeError => self.lost(LostStage::Decode, lost.count),
                LostReason::WatchMapFull => {
                    self.processes_unwatched.inc_by(lost.count);
                }
                // Told to one API subscriber only, never written by the daemon: the
                // snapshot's subscriber count carries these.
                LostReason::SubscriberQueue => {}
            },
            Body::AgentStart(_)
            | Body::AgentStop(_)
            | Body::Fork(_)
            | Body::Exec(_)
            | Body::SignalDeliver(_) => {}
        }
    }

    fn lost(&self, stage: LostStage, count: u64) {
        self.records_lost
            .get_or_create(&label("stage", stage.as_str()))
            .inc_by(count);
    }

    /// Sets what the daemon read at scrape time (call it just before [`Metrics::encode`]).
    pub fn set_snapshot(&self, s: &Snapshot) {
        // Exhaustive, so that a new field must be exported or said not to be.
        let Snapshot {
            sessions_active,
            sessions_tracked,
            sessions_refused,
            sessions_pruned,
            processes,
            ghosts_reaped,
            notes,
            sampled_sessions,
            session_histories,
            memcg_scans,
            unplaced_signals,
            subscribers,
            subscriber_lost,
            otlp_sent,
            otlp_lost,
            otlp_retries,
            otlp_pending,
            reports_written,
            report_write_errors,
            reports_suppressed,
            log_write_errors,
            events_log_write_errors,
            programs,
            resident_memory_bytes,
            cpu_seconds,
        } = s;
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        // A counter set to a total kept elsewhere (never lowered: a counter only grows).
        let total = |c: &Counter, v: u64| {
            c.inner().fetch_max(v, Ordering::Relaxed);
        };
        gauge(&self.sessions_active, *sessions_active);
        gauge(&self.sessions_tracked, *sessions_tracked);
        total(&self.sessions_refused, *sessions_refused);
        total(&self.sessions_pruned, *sessions_pruned);
        gauge(&self.processes, *processes);
        total(&self.ghosts_reaped, *ghosts_reaped);
        gauge(&self.notes, *notes);
        gauge(&self.sampled_sessions, *sampled_sessions);
        gauge(&self.session_histories, *session_histories);
        total(&self.memcg_scans, *memcg_scans);
        gauge(&self.unplaced_signals, *unplaced_signals);
        gauge(&self.subscribers, *subscribers);
        total(
            &self
                .records_lost
                .get_or_create(&label("stage", LostStage::SubscriberQueue.as_str())),
            *subscriber_lost,
        );
        total(
            &self
                .records_lost
                .get_or_create(&label("stage", LostStage::Sink.as_str())),
            *events_log_write_errors,
        );
        total(
            &self
                .records_lost
                .get_or_create(&label("stage", LostStage::Export.as_str())),
            *otlp_lost,
        );
        total(&self.otlp_sent, *otlp_sent);
        total(&self.otlp_retries, *otlp_retries);
        gauge(&self.otlp_pending, *otlp_pending);
        total(&self.reports_written, *reports_written);
        total(&self.report_write_errors, *report_write_errors);
        total(&self.reports_suppressed, *reports_suppressed);
        total(&self.log_write_errors, *log_write_errors);
        for p in programs {
            let l = label("program", program_label(&p.name));
            total(&self.program_runs.get_or_create(&l), p.run_count);
            set_seconds(
                &self.program_run_seconds.get_or_create(&l),
                p.run_time_ns as f64 / 1e9,
            );
        }
        if let Some(rss) = resident_memory_bytes {
            gauge(&self.resident_memory, *rss);
        }
        if let Some(cpu) = cpu_seconds {
            set_seconds(&self.cpu_seconds, *cpu);
        }
    }

    /// The metrics as text in `format` (the body of a `/metrics` response; its
    /// `Content-Type` is [`Format::content_type`]).
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail, and every label and help text is ours.
        let written = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Text004 => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        debug_assert!(written.is_ok(), "encoding into a String failed");
        out
    }
}

/// Sets a float counter to a total kept elsewhere, never lowering it.
fn set_seconds(c: &Counter<f64, AtomicU64>, seconds: f64) {
    if seconds.is_finite() && seconds > c.get() {
        c.inner().store(seconds.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;

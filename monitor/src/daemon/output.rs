//! Where the daemon's events go: the event log, stdout, exit reports and alerts.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde::Serialize;

use super::{
    alerts::{Alert, Alerter},
    resources::History,
};
use crate::{
    api::{
        bus::Bus,
        filter::Meta,
        seq,
        sessions::{Death, Deaths},
    },
    diag,
    event::{Body, Event},
    host::cgroups::MemoryHierarchy,
    host::memcg,
    output::otlp::Exporter,
    pipeline::attribution::Attributor,
    pipeline::output::{Output, OutputError},
    report::{self},
};

use super::{
    logs::Log,
    reports::{ReportWriter, UidBudget},
};

/// Records lost this close to an exit make its report incomplete.
pub(super) const LOST_NEARBY: Duration = Duration::from_secs(5);
/// Reports waiting for the next loss check at most (see [`DaemonOutput::pending`]);
/// beyond, a report is dropped (counted as suppressed), as when the writer's queue is full.
const PENDING_MAX: usize = 256;

/// An alert in the event stream (`kind: "alert"`).
#[derive(Serialize)]
pub(super) struct AlertEvent<'a> {
    pub(super) v: u32,
    pub(super) seq: u64,
    pub(super) kind: &'static str,
    pub(super) ts: &'a str,
    pub(super) pid: u32,
    pub(super) comm: &'static str,
    pub(super) alert: &'a Alert,
}

/// One JSON line on stdout (`--stdout`).
pub(super) fn print_line(line: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line)?;
    out.write_all(b"\n")
}

/// Where the daemon's events go: the event log, reports, OOM alerts.
pub(super) struct DaemonOutput {
    pub(super) events: Log,
    pub(super) alerts_log: Log,
    /// Exit reports, written by their own thread.
    pub(super) reports: ReportWriter,
    /// Reports per uid and minute.
    pub(super) budget: UidBudget,
    pub(super) report_nonzero_exit: bool,
    pub(super) hierarchy: Option<MemoryHierarchy>,
    pub(super) history: History,
    pub(super) alerter: Alerter,
    /// When records were last lost, and how many were lost since the first loss less than
    /// `LOST_NEARBY` before it (the `lost` records' counts).
    pub(super) last_lost: Option<(Instant, u64)>,
    /// Reports built at their exit, waiting for the next loss check (at most
    /// `COUNTER_PERIOD` away) before they are written: a loss that check reveals, made
    /// while the exits before it were read, makes them incomplete too.
    pub(super) pending: Vec<report::Report>,
    /// Alert records written to the stream (counted in `agent_stop.events`).
    pub(super) alerts_raised: u64,
    /// Also print each event as a JSON line on stdout (`--stdout`).
    pub(super) stdout: bool,
    /// Each report as a journal entry too (`[export.journald]`).
    pub(super) journal: Option<crate::output::journal::Journal>,
    /// Every event as an OTLP log record (`[export.otlp]`).
    pub(super) otlp: Option<Exporter>,
    /// Counts of what is written, for `/metrics` (`None`: the API is off).
    pub(super) metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// The last `seq` written (continued from the event log at start).
    pub(super) seq: u64,
    /// The API's subscribers (`None`: the API is off).
    pub(super) bus: Option<Bus>,
    /// Events written but not yet flushed to the log: published to the bus once they are
    /// (a subscriber never sees an event that a crash could take out of the log, whose
    /// `seq` the next start would then give again; and a history read after subscribing
    /// finds every event published before).
    /// The same lines go to the OTLP export, if on.
    pub(super) unpublished: Vec<(u64, Meta, bytes::Bytes)>,
    /// The last exits of each session, for `/v1/sessions` (kept only with the API on).
    pub(super) deaths: Option<Deaths>,
}

impl DaemonOutput {
    /// Records lost within `LOST_NEARBY` of now (0 when none).
    pub(super) fn lost_nearby(&self) -> u64 {
        self.last_lost
            .filter(|(t, _)| t.elapsed() <= LOST_NEARBY)
            .map_or(0, |(_, n)| n)
    }

    pub(super) fn alert(&mut self, alert: &Alert) {
        self.alerts_raised += 1;
        let ts = alert.ts.clone();
        self.alerts_log.write_json(alert);
        self.seq += 1;
        let event = AlertEvent {
            v: 1,
            seq: self.seq,
            kind: "alert",
            ts: &ts,
            pid: std::process::id(),
            comm: "claude-monitor",
            alert,
        };
        let line = serde_json::to_vec(&event).unwrap_or_default();
        self.events.write(&line);
        if self.stdout {
            // A closed stdout ends the daemon at its next event write, not here.
            let _ = print_line(&line).and_then(|()| std::io::stdout().flush());
        }
        if self.shares() {
            let meta = Meta {
                kind: "alert".into(),
                ..Meta::default()
            };
            self.unpublished.push((self.seq, meta, line.into()));
        }
        // Alerts come between the event loop's flushes: out at once.
        self.flush_events();
        diag::alert(alert.kind, &alert.message);
    }

    pub(super) fn report(
        &mut self,
        event: &Event,
        reason: report::Reason,
        attributor: &Attributor,
    ) {
        let Body::Exit(exit) = &event.body else {
            return;
        };
        // Any user can cause reports: each uid has its budget (checked before any work).
        if !self.budget.allow(exit.uid, Instant::now()) {
            self.reports
                .stats
                .suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.budget.first_refusal(exit.uid) {
                diag::reports_suppressed(exit.uid);
            }
            return;
        }
        let session = event.attr.as_ref().and_then(|a| a.session.as_ref());
        let memcg = match (&self.hierarchy, &exit.memcg_path) {
            (Some(h), Some(path)) => memcg::chain(h, path),
            _ => Vec::new(),
        };
        let samples = session
            .map(|s| {
                self.history
                    .last(&s.id, 5)
                    .into_iter()
                    .map(report::Sample::from)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let alive = attributor
            .session_of(event.pid)
            .map(|idx| {
                attributor
                    .live_members(Some(idx))
                    .into_iter()
                    .filter(|(pid, _)| *pid != event.pid)
                    .collect()
            })
            .unwrap_or_default();
        let lost_nearby = self.lost_nearby();
        let ctx = report::Context {
            cmdline: attributor.argv(
                event.pid,
                event.attr.as_ref().and_then(|a| a.proc_id.as_deref()),
            ),
            memcg,
            samples,
            alive,
            complete: lost_nearby == 0,
            lost_nearby,
        };
        let Some(report) = report::build(event, reason, ctx) else {
            return;
        };
        if self.pending.len() >= PENDING_MAX {
            self.reports.stats.dropped_queue_full();
            return;
        }
        self.pending.push(report);
    }

    /// Whether written events go further than the log and stdout: to the API's subscribers
    /// or the OTLP export.
    fn shares(&self) -> bool {
        self.bus.is_some() || self.otlp.is_some()
    }

    /// Flushes the event log, then publishes what it now holds to the API's subscribers and
    /// the OTLP export.
    pub(super) fn flush_events(&mut self) {
        self.events.flush();
        for (seq, meta, line) in self.unpublished.drain(..) {
            if let Some(otlp) = &self.otlp {
                otlp.offer(line.clone());
            }
            if let Some(bus) = &self.bus {
                bus.publish(seq, meta, line);
            }
        }
    }

    /// The losses up to now are told: the waiting reports are written, incomplete when
    /// records were lost near their exit or near now.
    fn submit_pending(&mut self) {
        let lost_now = self.lost_nearby();
        for mut report in std::mem::take(&mut self.pending) {
            report.lost_nearby = report.lost_nearby.max(lost_now);
            report.complete = report.complete && report.lost_nearby == 0;
            if let Some(journal) = &mut self.journal {
                let fields = report::journal_fields(&report);
                let fields: Vec<(&str, &str)> =
                    fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
                if let Err(e) = journal.send(&fields)
                    && journal.dropped == 1
                {
                    diag::journal_not_taken(e);
                }
            }
            self.reports.submit(report);
        }
    }
}

impl Output for DaemonOutput {
    fn write(&mut self, event: &Event, attributor: &Attributor) -> Result<(), OutputError> {
        self.seq += 1;
        if let Some(m) = &self.metrics {
            m.observe(event);
        }
        let line = seq::stamp(self.seq, event);
        self.events.write(&line);
        if self.stdout {
            print_line(&line)?;
        }
        if self.shares() {
            self.unpublished
                .push((self.seq, Meta::of_event(event), line.into()));
        }
        match &event.body {
            Body::Lost(l) => {
                self.last_lost = Some((Instant::now(), self.lost_nearby() + l.count));
            }
            Body::Exit(x) => {
                if let (Some(deaths), Some(session)) = (
                    &mut self.deaths,
                    event.attr.as_ref().and_then(|a| a.session.as_ref()),
                ) {
                    let by = x.cause.killed_by.as_ref();
                    deaths.push(
                        &session.id,
                        Death {
                            seq: self.seq,
                            ts: event.ts.clone(),
                            pid: event.pid,
                            proc_id: event.attr.as_ref().and_then(|a| a.proc_id.clone()),
                            comm: event.comm.clone(),
                            uid: x.uid,
                            cause: x.cause.cause.as_str().to_owned(),
                            exit_code: x.status.exit_code,
                            signal_name: x.status.signal_name.clone(),
                            killed_by_pid: by.map(|k| k.pid),
                            killed_by_comm: by.map(|k| k.comm.clone()),
                        },
                    );
                }
                if let Some(reason) = report::worth_reporting(event, self.report_nonzero_exit) {
                    self.report(event, reason, attributor);
                    if reason == report::Reason::OomKill {
                        let subject = event
                            .attr
                            .as_ref()
                            .and_then(|a| a.proc_id.clone())
                            .unwrap_or_else(|| event.pid.to_string());
                        let message = format!(
                            "OOM kill: {} (pid {}) was killed by the kernel's OOM killer",
                            event.comm, event.pid
                        );
                        if let Some(alert) = self.alerter.oom_kill(subject, message, Instant::now())
                        {
                            self.alert(&alert);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.flush_events();
        if self.stdout {
            std::io::stdout().flush()?;
        }
        Ok(())
    }

    fn losses_told(&mut self) -> Result<(), OutputError> {
        self.submit_pending();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        claude::{detect::Detector, registry::Registry},
        daemon::{
            alerts::AlertThresholds,
            reports::{Bounds, ReportWriter},
        },
        event::{Cause, CauseKind, Lost, LostReason},
        host::clock::Clock,
        report::ReportStore,
        testutil::TempDir,
    };

    fn output(dir: &std::path::Path) -> DaemonOutput {
        DaemonOutput {
            events: Log::new(dir, "events.jsonl", 1 << 20, 1),
            alerts_log: Log::new(dir, "alerts.jsonl", 1 << 20, 1),
            reports: ReportWriter::start(
                ReportStore::new(dir.join("reports")),
                Bounds {
                    max_count: 100,
                    max_bytes: u64::MAX,
                },
            ),
            budget: UidBudget::new(100),
            report_nonzero_exit: false,
            hierarchy: None,
            history: History::new(4),
            alerter: Alerter::new(AlertThresholds {
                memory_percent: 100.0,
                disk_percent: 100.0,
                session_rss_mb: 0,
                cooldown: Duration::from_secs(60),
            }),
            last_lost: None,
            pending: Vec::new(),
            alerts_raised: 0,
            stdout: false,
            journal: None,
            otlp: None,
            metrics: None,
            seq: 0,
            bus: None,
            unpublished: Vec::new(),
            deaths: None,
        }
    }

    /// An OOM kill: reported also outside a session.
    fn oom_exit(pid: u32) -> Event {
        // SAFETY: monitor_common's records hold integers and integer arrays only.
        let mut exit: monitor_common::Exit = unsafe { std::mem::zeroed() };
        exit.header.kind = monitor_common::Kind::Exit as u16;
        exit.header.pid = pid;
        exit.exit_status = 9;
        let mut event = crate::pipeline::convert::Converter::new(Clock::fixed(0))
            .convert(&monitor_common::Record::Exit(exit));
        if let Body::Exit(x) = &mut event.body {
            x.cause = Cause::only(CauseKind::OomKilled);
        }
        event
    }

    fn lost(count: u64) -> Event {
        Event::new(
            "2026-12-03T07:00:00Z".into(),
            1,
            "claude-monitor".into(),
            Body::Lost(Lost {
                count,
                reason: LostReason::RingBufferFull,
            }),
        )
    }

    fn attributor() -> Attributor {
        Attributor::new(
            Detector::new(Vec::new()).expect("built-in rules"),
            Registry::new(Vec::new()),
            Clock::fixed(0),
            4,
        )
    }

    /// (pid, complete, lost_nearby) of every report written, by pid.
    fn written(out: &mut DaemonOutput, dir: &std::path::Path) -> Vec<(u32, bool, u64)> {
        out.reports.finish();
        let store = ReportStore::new(dir.join("reports"));
        let mut v: Vec<_> = store
            .sizes()
            .expect("reports")
            .into_iter()
            .map(|(id, _)| {
                let r = store.get(&id).expect("report");
                (r.process.pid, r.complete, r.lost_nearby)
            })
            .collect();
        v.sort();
        v
    }

    /// An exit read before the counter check that reveals a loss (the ring overflowed
    /// while it was being read) is reported incomplete, as is one read after it.
    #[test]
    fn a_report_waits_for_the_loss_check() {
        let t = TempDir::new("pending-reports");
        let a = attributor();
        let mut out = output(t.path());
        out.write(&oom_exit(42), &a).unwrap();
        assert_eq!(out.pending.len(), 1, "waits for the check");
        out.write(&lost(7), &a).unwrap();
        out.losses_told().unwrap();
        out.write(&oom_exit(43), &a).unwrap();
        out.losses_told().unwrap();
        assert_eq!(
            written(&mut out, t.path()),
            [(42, false, 7), (43, false, 7)]
        );

        // Nothing lost: complete.
        let t = TempDir::new("pending-reports-clean");
        let mut out = output(t.path());
        out.write(&oom_exit(44), &a).unwrap();
        out.losses_told().unwrap();
        assert_eq!(written(&mut out, t.path()), [(44, true, 0)]);
    }

    /// With `[export.journald]`, each report goes to the journal socket as one entry, after
    /// the loss check (so its completeness is the report's), and a journald that is gone
    /// costs a counted drop, never a lost report.
    #[test]
    fn reports_go_to_the_journal_as_entries() {
        let t = TempDir::new("journal-reports");
        let a = attributor();
        let socket = t.path().join("journal.sock");
        let listener = std::os::unix::net::UnixDatagram::bind(&socket).expect("bind");
        let mut out = output(t.path());
        out.journal = Some(crate::output::journal::Journal::new(&socket).expect("journal"));
        out.write(&oom_exit(45), &a).unwrap();
        listener.set_nonblocking(true).expect("nonblocking");
        assert!(
            listener.recv(&mut [0; 16]).is_err(),
            "nothing before the loss check"
        );
        out.losses_told().unwrap();
        let mut buf = vec![0; 64 * 1024];
        let n = listener.recv(&mut buf).expect("an entry");
        let entry = String::from_utf8_lossy(&buf[..n]).into_owned();
        let id = crate::report::message_id(crate::report::Reason::OomKill);
        for want in [
            format!("MESSAGE_ID={id}\n"),
            "PRIORITY=3\n".to_owned(),
            "CLAUDE_MONITOR_PID=45\n".to_owned(),
            "CLAUDE_MONITOR_CAUSE=oom_killed\n".to_owned(),
            "CLAUDE_MONITOR_COMPLETE=true\n".to_owned(),
        ] {
            assert!(entry.contains(&want), "{want} not in {entry}");
        }
        drop(listener);
        out.write(&oom_exit(46), &a).unwrap();
        out.losses_told().unwrap();
        assert_eq!(out.journal.as_ref().map(|j| j.dropped), Some(1));
        assert_eq!(written(&mut out, t.path()), [(45, true, 0), (46, true, 0)]);
    }
}

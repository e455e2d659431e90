//! `claude-monitor trace`: load, attach, and stream events until interrupted or a duration
//! elapses.

use std::{io::Write, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use monitor_common::{EXIT_FLAG_LIVE_COUNTER, Record, decode};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    attribution::{self, Attributor},
    cgroups,
    claude::detect::Detector,
    clock::{self, Clock},
    event::{AgentStart, AgentStop, Body, Converter, Event, Lost, Scope},
    loader::{self, Counters, KernelCounters, LoadOptions, ScopeMode},
    scope,
    sink::{Format, Sink, SinkError},
};

/// A validated `trace` invocation.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    pub scope: ScopeMode,
    pub format: Format,
    pub duration: Option<Duration>,
    pub ring_buffer_bytes: u32,
    pub oom_all: bool,
}

/// How often the kernel's loss counters are checked.
const COUNTER_PERIOD: Duration = Duration::from_millis(500);

struct Stream<W: Write> {
    sink: Sink<W>,
    attributor: Attributor,
    filter: Filter,
    conv: Converter,
    memcgs: cgroups::Resolver,
    dedup: ExitDedup,
    written: u64,
    lost_total: u64,
    last: KernelCounters,
    decode_errors: u64,
}

impl<W: Write> Stream<W> {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        self.sink.write(event)?;
        self.written += 1;
        Ok(())
    }

    fn agent_event(&self, body: Body) -> Event {
        Event::new(
            self.conv.clock.rfc3339(clock::boottime_ns()),
            std::process::id(),
            "claude-monitor".into(),
            body,
        )
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Result<(), SinkError> {
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(record) => {
                    drop(item);
                    if self.dedup.is_duplicate(&record) {
                        continue;
                    }
                    let mut event = self.conv.convert(&record);
                    self.attribute(&record, &mut event);
                    if self.filter.keeps(&event) {
                        self.enrich(&mut event);
                        self.emit(&event)?;
                    }
                }
                Err(e) => {
                    self.decode_errors += 1;
                    tracing::warn!("undecodable ring-buffer record: {e}");
                }
            }
        }
        self.sink.flush()
    }

    /// Feeds the record to the process table and adds session, lineage and cause.
    fn attribute(&mut self, record: &Record, event: &mut Event) {
        let a = &mut self.attributor;
        match (record, &mut event.body) {
            (Record::Fork(f), _) => a.on_fork(f),
            (Record::Exec(x), _) => a.on_exec(x),
            (Record::Signal(s), Body::Signal(body)) => {
                a.on_signal(s);
                let sender = a.attr(s.sender_pid);
                body.sender.proc_id = sender.proc_id;
                body.sender.session_id = sender.session.map(|s| s.id);
            }
            (Record::Oom(o), Body::Oom(body)) => a.on_oom(o, body.anon_rss_kb, body.total_vm_kb),
            (Record::Exit(e), Body::Exit(body)) => {
                body.cause = a.cause(e);
                if body.own_peak_rss_kb.is_none() {
                    body.own_peak_rss_kb = a.own_peak_fallback(e, body.peak_rss_kb);
                }
            }
            _ => {}
        }
        event.attr = Some(a.attr(event.pid));
        if let Record::Exit(e) = record {
            a.on_exit_done(e);
        }
    }

    /// What userspace adds to a kernel record: cgroup paths; the OOM victim's name and uid
    /// when the kernel passed only its pid (kernels before ~6.8).
    fn enrich(&mut self, event: &mut Event) {
        match &mut event.body {
            Body::Exit(e) => e.memcg_path = e.memcg_id.and_then(|id| self.memcgs.path(id)),
            Body::Oom(o) => {
                o.memcg_path = o.memcg_id.and_then(|id| self.memcgs.path(id));
                if o.victim.comm.is_empty() {
                    let pid = o.victim.pid;
                    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                        o.victim.comm = comm.trim_end().to_owned();
                        event.comm.clone_from(&o.victim.comm);
                    }
                    if o.victim.uid.is_none() {
                        o.victim.uid = proc_uid(pid);
                    }
                }
            }
            _ => {}
        }
    }

    /// Emits `lost` records for kernel-side losses since the last check.
    fn check_counters(&mut self, counters: &Counters) -> Result<(), SinkError> {
        let now = counters.read();
        let rb = now.ringbuf_full.saturating_sub(self.last.ringbuf_full);
        let watch = now.watch_full.saturating_sub(self.last.watch_full);
        let decode_errors = std::mem::take(&mut self.decode_errors);
        self.last = now;
        for (count, reason) in [
            (rb, "ring_buffer_full"),
            (watch, "watch_map_full"),
            (decode_errors, "decode_error"),
        ] {
            if count > 0 {
                if reason != "watch_map_full" {
                    self.lost_total += count;
                }
                tracing::warn!("{count} records lost: {reason}");
                let event = self.agent_event(Body::Lost(Lost { count, reason }));
                self.emit(&event)?;
            }
        }
        self.sink.flush()
    }
}

pub async fn run<W: Write>(cfg: TraceConfig, out: W) -> Result<()> {
    loader::check_privileges()?;
    let btf = loader::kernel_btf()?;
    if let ScopeMode::Pids(roots) = &cfg.scope {
        scope::check_roots(roots)?;
    }
    let mut loaded = loader::load(
        &btf,
        &LoadOptions {
            scope: cfg.scope.clone(),
            ring_buffer_bytes: cfg.ring_buffer_bytes,
            oom_all: cfg.oom_all,
        },
    )?;
    drop(btf);

    // Descendants that existed before the fork hook was attached. Two passes: a process
    // forked by a not-yet-watched descendant between attach and the first pass is found by
    // the second.
    // Processes that existed before the hooks, and the sessions among them.
    let clock = Clock::measure();
    let page_kb = crate::event::page_kb();
    let detector = Detector::new(Vec::new()).context("agent rules")?;
    let mut attributor = Attributor::new(detector, attribution::default_registry(), clock, page_kb);
    attributor.scan_proc();
    let in_sessions = attributor.sessions().len();

    let (mode, pids, watched_at_start) = match &cfg.scope {
        ScopeMode::All => ("all", Vec::new(), 0),
        ScopeMode::Sessions | ScopeMode::Session(_) => (
            if cfg.scope == ScopeMode::Sessions {
                "claude"
            } else {
                "session"
            },
            Vec::new(),
            in_sessions,
        ),
        ScopeMode::Pids(roots) => {
            let mut watched = loader::watched_map(&mut loaded.ebpf)?;
            let mut all = Vec::new();
            for _ in 0..2 {
                let table = scope::parent_table()?;
                for pid in scope::descendants(&table, roots) {
                    if !all.contains(&pid) {
                        watched
                            .insert(pid, 0, 0)
                            .with_context(|| format!("cannot watch pid {pid}"))?;
                        all.push(pid);
                    }
                }
            }
            ("pids", roots.clone(), all.len())
        }
    };

    let ring = loader::take_ring(&mut loaded.ebpf)?;
    let counters = Counters::take(&mut loaded.ebpf)?;
    // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it, and it is
    // deregistered when the AsyncFd is dropped, before the fd is closed.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .context("cannot register the ring buffer with the event loop")?;

    let hierarchy = cgroups::MemoryHierarchy::detect();
    let mut stream = Stream {
        sink: Sink::new(out, cfg.format),
        conv: Converter::new(clock),
        attributor,
        filter: Filter::from(&cfg.scope),
        memcgs: cgroups::Resolver::new(hierarchy.clone()),
        dedup: ExitDedup::default(),
        written: 0,
        lost_total: 0,
        last: KernelCounters::default(),
        decode_errors: 0,
    };

    let start = stream.agent_event(Body::AgentStart(AgentStart {
        version: env!("CARGO_PKG_VERSION").into(),
        kernel: kernel_release(),
        scope: Scope {
            mode,
            pids,
            session: match &cfg.scope {
                ScopeMode::Session(id) => Some(id.clone()),
                _ => None,
            },
            watched_at_start,
        },
        hooks: loaded.attached.clone(),
        hooks_unavailable: loaded.unavailable.clone(),
        ring_buffer_bytes: cfg.ring_buffer_bytes,
        memory_cgroup: hierarchy,
        notes: loaded.layout.notes.clone(),
    }));
    // Signal handlers before agent_start: a consumer may signal us as soon as it sees it.
    let stop = Stop {
        sigterm: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        sigint: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        duration: cfg.duration,
    };
    let result = async {
        stream.emit(&start)?;
        stream.sink.flush()?;
        event_loop(&mut stream, &mut ring, &counters, stop).await
    }
    .await;
    let reason = match result {
        Ok(reason) => reason,
        Err(SinkError::Closed) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // Whatever arrived before the stop, then the final loss figures.
    let finish = (|| {
        stream.drain(ring.get_mut())?;
        stream.check_counters(&counters)?;
        let stop = stream.agent_event(Body::AgentStop(AgentStop {
            events: stream.written,
            lost: stream.lost_total,
            reason,
        }));
        stream.emit(&stop)?;
        stream.sink.flush()
    })();
    match finish {
        Ok(()) | Err(SinkError::Closed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What ends the event loop.
struct Stop {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    duration: Option<Duration>,
}

async fn event_loop<W: Write>(
    stream: &mut Stream<W>,
    ring: &mut AsyncFd<RingBuf<MapData>>,
    counters: &Counters,
    stop: Stop,
) -> Result<&'static str, SinkError> {
    let Stop {
        mut sigterm,
        mut sigint,
        duration,
    } = stop;
    let mut tick = tokio::time::interval(COUNTER_PERIOD);
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(SinkError::Io)?;
                stream.drain(guard.get_inner_mut())?;
                guard.clear_ready();
            }
            _ = tick.tick() => stream.check_counters(counters)?,
            _ = &mut deadline => return Ok("duration"),
            _ = sigterm.recv() => return Ok("sigterm"),
            _ = sigint.recv() => return Ok("sigint"),
        }
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The real uid of a live (or zombie) process, from /proc.
fn proc_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// On kernels whose `sched_process_exit` has no `group_dead` argument, the kernel program
/// detects the group's end from `signal->live`, and two threads leaving at the same instant
/// can both see it at zero. Exits detected that way are de-duplicated here by (pid, start
/// time) over the last `DEDUP_WINDOW` such exits.
#[derive(Default)]
struct ExitDedup {
    recent: std::collections::VecDeque<(u32, u64)>,
}

const DEDUP_WINDOW: usize = 1024;

impl ExitDedup {
    fn is_duplicate(&mut self, record: &Record) -> bool {
        let Record::Exit(e) = record else {
            return false;
        };
        if e.flags & EXIT_FLAG_LIVE_COUNTER == 0 {
            return false;
        }
        let key = (e.header.pid, e.start_boottime_ns);
        if self.recent.contains(&key) {
            return true;
        }
        if self.recent.len() == DEDUP_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
        false
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{Exit, Header, Kind, WIRE_VERSION};

    use super::*;

    fn exit(pid: u32, start: u64, flags: u32) -> Record {
        Record::Exit(Exit {
            header: Header {
                kind: Kind::Exit as u16,
                version: WIRE_VERSION,
                cpu: 0,
                ts_ns: 1,
                pid,
                tid: pid,
                comm: [0; 16],
            },
            ppid: 1,
            uid: 0,
            exit_status: 0,
            flags,
            maxrss_pages: 0,
            utime_ns: 0,
            stime_ns: 0,
            start_boottime_ns: start,
            memcg_id: 0,
            mm_peak_pages: 0,
        })
    }

    #[test]
    fn live_counter_exits_are_deduplicated_by_pid_and_start() {
        let mut d = ExitDedup::default();
        assert!(!d.is_duplicate(&exit(10, 5, EXIT_FLAG_LIVE_COUNTER)));
        assert!(d.is_duplicate(&exit(10, 5, EXIT_FLAG_LIVE_COUNTER)));
        // Same pid, another process (pid reuse): not a duplicate.
        assert!(!d.is_duplicate(&exit(10, 6, EXIT_FLAG_LIVE_COUNTER)));
        // Exits detected with group_dead are never dropped.
        assert!(!d.is_duplicate(&exit(11, 5, 0)));
        assert!(!d.is_duplicate(&exit(11, 5, 0)));
        // The window is bounded.
        for pid in 100..100 + DEDUP_WINDOW as u32 {
            d.is_duplicate(&exit(pid, 1, EXIT_FLAG_LIVE_COUNTER));
        }
        assert!(!d.is_duplicate(&exit(10, 5, EXIT_FLAG_LIVE_COUNTER)));
    }
}

/// Which events are written: in the session scopes, those of session members (and signals
/// sent by them); otherwise every event the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Filter {
    All,
    Sessions,
    Session(String),
}

impl From<&ScopeMode> for Filter {
    fn from(scope: &ScopeMode) -> Filter {
        match scope {
            ScopeMode::All | ScopeMode::Pids(_) => Filter::All,
            ScopeMode::Sessions => Filter::Sessions,
            ScopeMode::Session(id) => Filter::Session(id.clone()),
        }
    }
}

impl Filter {
    fn keeps(&self, event: &Event) -> bool {
        let session = event.attr.as_ref().and_then(|a| a.session.as_ref());
        let sender_session = match &event.body {
            Body::Signal(s) => s.sender.session_id.as_deref(),
            _ => None,
        };
        match self {
            Filter::All => true,
            Filter::Sessions => session.is_some() || sender_session.is_some(),
            Filter::Session(id) => {
                session.is_some_and(|s| s.id == *id || s.claude_session_id.as_deref() == Some(id))
                    || sender_session == Some(id.as_str())
            }
        }
    }
}

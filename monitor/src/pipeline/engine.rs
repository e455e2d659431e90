//! The event pipeline shared by `trace` and `daemon`: load the kernel programs, read the
//! ring buffer, decode, attribute, filter and enrich each record, account for every loss,
//! and hand the events to an [`Output`].

use std::{collections::HashMap, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use monitor_common::{
    AGG_DELIVER, AggKey, AggValue, DecodeError, Header, Kind, Record, WIRE_VERSION, decode,
};
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    claude::detect::Detector,
    event::{
        AgentStart, AgentStop, Body, Event, Filtered, Lost, LostReason, PinState, ProgramStats,
        Scope, ScopeName, StopReason,
    },
    host::cgroups,
    host::clock::{self, Clock},
    kernel::loader::{
        self, Counters, KernelCounters, LoadOptions, Loaded, Reported, ScopeMode, UserMaps,
    },
    pipeline::attribution::{self, Attributor},
    pipeline::convert::Converter,
    pipeline::core::{Core, WatchChange},
    pipeline::scope,
};

use crate::pipeline::output::{Output, OutputError};

/// While records keep coming, the ring buffer is read this often even without a wakeup:
/// the kernel wakes the agent at most once per millisecond per CPU (`probes::submit`).
pub const BUSY_POLL: Duration = Duration::from_millis(2);
/// Busy polling goes on until no record was found for this long (longer than the kernel's
/// wakeup gap plus a poll, so a record submitted without a wakeup is always picked up).
const BUSY_WINDOW: Duration = Duration::from_millis(3);

/// How often the kernel's loss counters and the signal aggregator are read.
pub const COUNTER_PERIOD: Duration = Duration::from_millis(500);
/// An aggregator entry idle this long is removed (see `flush_aggregates`).
const AGG_IDLE_NS: u64 = 60_000_000_000;

/// Records handled per [`Engine::drain`] at most. A storm fills the ring as fast as it is
/// read, so an unbounded drain would never return to the event loop: no counter check (the
/// storm's own losses unreported), no signal aggregates, no hold timer, no SIGTERM. A few
/// milliseconds of work per batch; the loop comes back at once while records are left.
pub const DRAIN_BATCH: usize = 1024;

/// The smallest record in the ring buffer (a `fork`, with the ring's 8-byte header): a
/// ring of N bytes holds at most N / this many records.
const MIN_RING_RECORD: u32 = 8 + std::mem::size_of::<monitor_common::Fork>() as u32;

/// Where records are read from: the kernel's ring buffer, or a test's stand-in.
pub trait RecordSource {
    type Item<'a>: std::ops::Deref<Target = [u8]>
    where
        Self: 'a;
    fn next_record(&mut self) -> Option<Self::Item<'_>>;
}

impl RecordSource for RingBuf<MapData> {
    type Item<'a> = aya::maps::ring_buf::RingBufItem<'a>;
    fn next_record(&mut self) -> Option<Self::Item<'_>> {
        self.next()
    }
}

/// At most `limit` records of a source, decoded (each one's ring space is given back as
/// soon as it is copied out); [`Batch::full`] says whether the limit stopped it.
pub struct Batch<'s, S> {
    source: &'s mut S,
    left: usize,
}

impl<'s, S: RecordSource> Batch<'s, S> {
    pub fn new(source: &'s mut S, limit: usize) -> Batch<'s, S> {
        Batch {
            source,
            left: limit,
        }
    }

    /// The limit was reached: records may be left in the source.
    pub fn full(&self) -> bool {
        self.left == 0
    }
}

impl<S: RecordSource> Iterator for Batch<'_, S> {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let item = self.source.next_record()?;
        self.left -= 1;
        Some(decode(&item))
    }
}

/// What the engine is started with.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub scope: ScopeMode,
    pub ring_buffer_bytes: u32,
    pub oom_all: bool,
    pub report_ignored_signals: bool,
    /// Report runtime signals (see [`LoadOptions::report_runtime_signals`]).
    pub report_runtime_signals: bool,
    pub detector: Detector,
    pub pin_dir: Option<std::path::PathBuf>,
    /// What counts as a secret in what is written.
    pub redactor: crate::pipeline::redact::Redactor,
}

pub struct Engine {
    /// Records to events, without the kernel.
    pub core: Core,
    pub written: u64,
    pub lost_total: u64,
    /// Userspace's failed inserts into the watch map since the last counter check.
    watch_insert_errors: u64,
    last: KernelCounters,
    /// The kernel's counters at start: `agent_stop.filtered` counts from there.
    at_start: KernelCounters,
    decode_errors: u64,
    counters: Counters,
    /// What was last reported of `counters` and of the aggregates, kept in the kernel.
    reported: Reported,
    watched: BpfHashMap<MapData, u32, u32>,
    agg: BpfHashMap<MapData, AggKey, AggValue>,
    /// `suppressed` of each aggregator key as last reported.
    agg_seen: HashMap<AggKey, u64>,
    previous_ring: Option<RingBuf<MapData>>,
    loaded: Loaded,
    /// When a drain last found records.
    last_found: Option<std::time::Instant>,
    ring_buffer_bytes: u32,
}

impl Engine {
    /// Loads the programs (or reopens pinned ones), scans /proc, seeds the watch map.
    /// Returns the engine, the ring buffer registered with the event loop, and the
    /// `agent_start` event to write first.
    pub fn start(opts: &EngineOptions) -> Result<(Engine, AsyncFd<RingBuf<MapData>>, Event)> {
        loader::check_privileges()?;
        let btf = loader::kernel_btf()?;
        if let ScopeMode::Pids(roots) = &opts.scope {
            scope::check_roots(roots)?;
        }
        let candidates = opts.detector.kernel_candidates();
        let mut loaded = loader::load(
            &btf,
            &LoadOptions {
                scope: opts.scope.clone(),
                ring_buffer_bytes: opts.ring_buffer_bytes,
                oom_all: opts.oom_all,
                report_ignored_signals: opts.report_ignored_signals,
                report_runtime_signals: opts.report_runtime_signals,
                aggregate_signals: true,
                candidates: candidates.clone(),
                pin_dir: opts.pin_dir.clone(),
            },
        )?;
        drop(btf);

        // Processes that existed before the hooks, and the sessions among them.
        let clock = Clock::measure();
        let page_kb = crate::host::page_kb();
        let mut attributor = Attributor::new(
            opts.detector.clone(),
            attribution::default_registry(),
            clock,
            page_kb,
        )
        .with_redactor(opts.redactor.clone());
        attributor.scan_proc();
        let sessions_scope = matches!(opts.scope, ScopeMode::Sessions | ScopeMode::Session(_));

        // Descendants that existed before the fork hook was attached. Two passes: a process
        // forked by a not-yet-watched descendant between attach and the first pass is found
        // by the second.
        let roots: Vec<u32> = match &opts.scope {
            ScopeMode::All => Vec::new(),
            ScopeMode::Pids(roots) => roots.clone(),
            ScopeMode::Sessions | ScopeMode::Session(_) => {
                attributor.sessions().map(|s| s.root.pid).collect()
            }
        };
        let mut all = std::collections::HashSet::new();
        if !roots.is_empty() {
            for _ in 0..2 {
                let table = scope::parent_table()?;
                for pid in scope::descendants(&table, &roots) {
                    if all.insert(pid) {
                        loaded
                            .maps
                            .watched
                            .as_mut()
                            .context("watch map")?
                            .insert(pid, 0, 0)
                            .with_context(|| format!("cannot watch pid {pid}"))?;
                    }
                }
            }
        }
        let (mode, pids) = match &opts.scope {
            ScopeMode::All => (ScopeName::All, Vec::new()),
            ScopeMode::Sessions => (ScopeName::Claude, Vec::new()),
            ScopeMode::Session(_) => (ScopeName::Session, Vec::new()),
            ScopeMode::Pids(roots) => (ScopeName::Pids, roots.clone()),
        };
        let mut notes = loaded.layout.notes.clone();
        if sessions_scope && !candidates.exec_all.is_empty() {
            notes.push(format!(
                "rules {} cannot be matched from a comm: the kernel reports every exec, and a \
                 child forked by a matching process before the agent reads its exec may be missed",
                candidates.exec_all.join(", ")
            ));
        }
        if !opts.report_runtime_signals {
            notes.push(
                "runtime signals are not reported (counted in agent_stop.filtered): a \
                 process's signals to itself that do not end it, with their deliveries, and \
                 a group exit's SIGKILL taken by threads other than the leader; \
                 --runtime-signals or watch.runtime_signals = \"report\" reports them"
                    .into(),
            );
        }
        if !opts.redactor.enabled() {
            notes.push(
                "redaction is off (redact.enabled = false, or trace --no-redact): command \
                 lines and tool commands are written with any secrets they hold"
                    .into(),
            );
        }
        if let Some(pin) = &loaded.pin
            && pin.state == PinState::Replaced
        {
            notes.push(
                "pinned programs of another version or configuration were replaced; an event \
                 of the few milliseconds both were attached may appear twice"
                    .into(),
            );
        }

        // Take the ring out of the loaded set; the rest stays owned by the engine.
        let ring = loaded.take_ring().context("ring buffer")?;
        let previous_ring = loaded.previous_ring.take();
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it, and it
        // is deregistered when the AsyncFd is dropped, before the fd is closed.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .context("cannot register the ring buffer with the event loop")?;

        let hierarchy = cgroups::MemoryHierarchy::detect();
        let UserMaps {
            counters,
            reported,
            watched,
            agg,
        } = loaded.take_maps()?;
        let at_start = counters.read();
        // Reopened pinned programs: the losses and aggregates the previous agent reported
        // are not reported again (fresh maps hold zeros: everything is new).
        let last = reported
            .counters()
            .context("cannot read the loss counters last reported (map REPORTED)")?;
        let agg_seen = reported
            .aggregates()
            .context("cannot read the signal aggregates last reported (map AGG_REPORTED)")?;
        let engine = Engine {
            core: Core::new(
                attributor,
                Converter::new(clock).with_redactor(opts.redactor.clone()),
                &opts.scope,
                opts.oom_all,
                cgroups::Resolver::new(hierarchy.clone()),
            ),
            written: 0,
            lost_total: 0,
            watch_insert_errors: 0,
            last,
            at_start,
            decode_errors: 0,
            counters,
            reported,
            watched,
            agg,
            agg_seen,
            previous_ring,
            loaded,
            last_found: None,
            ring_buffer_bytes: opts.ring_buffer_bytes,
        };
        let start = engine.agent_event(Body::AgentStart(AgentStart {
            version: env!("CARGO_PKG_VERSION").into(),
            kernel: kernel_release(),
            scope: Scope {
                mode,
                pids,
                session: match &opts.scope {
                    ScopeMode::Session(id) => Some(id.clone()),
                    _ => None,
                },
                watched_at_start: if sessions_scope {
                    engine.core.attributor.sessions().len()
                } else {
                    all.len()
                },
            },
            hooks: engine.loaded.attached.clone(),
            hooks_unavailable: engine.loaded.unavailable.clone(),
            ring_buffer_bytes: opts.ring_buffer_bytes,
            memory_cgroup: hierarchy,
            notes,
            ignored_signals_reported: opts.report_ignored_signals,
            runtime_signals_reported: opts.report_runtime_signals,
            pin: engine.loaded.pin.clone(),
        }));
        // Parsing the kernel's BTF (~5 MB of type data) left freed heap behind; give it back
        // to the system, so a daemon that runs for weeks does not keep it resident.
        // SAFETY: malloc_trim has no preconditions.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0);
        }
        Ok((engine, ring, start))
    }

    pub fn agent_event(&self, body: Body) -> Event {
        Event::new(
            self.core.conv.clock.rfc3339(clock::boottime_ns()),
            std::process::id(),
            "claude-monitor".into(),
            body,
        )
    }

    /// Each kernel program's run count and run time (`bpf_prog_info`'s `run_cnt` and
    /// `run_time_ns`), when the kernel's BPF statistics are on
    /// (`sysctl kernel.bpf_stats_enabled=1`): for `agent_stop` and `/metrics`.
    pub fn program_stats(&self) -> Option<Vec<ProgramStats>> {
        loader::bpf_stats_enabled().then(|| self.loaded.program_stats())
    }

    /// The `agent_stop` event.
    pub fn stop_event(&self, reason: StopReason) -> Event {
        let now = self.counters.read();
        let since = |now: u64, start: u64| now.saturating_sub(start);
        self.agent_event(Body::AgentStop(AgentStop {
            events: self.written,
            lost: self.lost_total,
            reason,
            programs: self.program_stats(),
            filtered: Filtered {
                self_signal: since(now.self_signal, self.at_start.self_signal),
                self_signal_deliver: since(now.self_deliver, self.at_start.self_deliver),
                group_kill_deliver: since(now.group_kill_deliver, self.at_start.group_kill_deliver),
            },
        }))
    }

    pub fn emit(&mut self, out: &mut impl Output, event: &Event) -> Result<(), OutputError> {
        out.write(event, &self.core.attributor)?;
        self.written += 1;
        Ok(())
    }

    /// What the kernel recorded while no agent ran, before anything new: first the losses
    /// (the ring may have overflowed meanwhile: the `lost` records go before the backlog
    /// they concern, so its exit reports are marked incomplete), then the backlog of
    /// replaced pinned programs, then one batch of the current ring (the event loop
    /// reads the rest: whether records are left, as [`Engine::drain`]).
    pub fn catch_up(
        &mut self,
        ring: &mut RingBuf<MapData>,
        out: &mut impl Output,
    ) -> Result<bool, OutputError> {
        self.check_counters(out)?;
        if let Some(mut old) = self.previous_ring.take() {
            // Its programs are detached: the old ring only empties.
            while self.drain(&mut old, out)? {}
        }
        self.drain(ring, out)
    }

    /// Watches `pid` (a live process of `uid`) and its descendants from now on, as the
    /// root of a session of its own (see [`Attributor::watch_root`]): the session's id.
    pub fn watch_root(&mut self, pid: u32, uid: u32) -> Result<String, String> {
        let idx =
            self.core.attributor.watch_root(pid, uid).ok_or_else(|| {
                format!("process {pid} is gone, or no more sessions can be tracked")
            })?;
        if let Err(e) = self.watched.insert(pid, 0, 0) {
            self.watch_insert_errors += 1;
            return Err(format!("the kernel's watch map refused process {pid}: {e}"));
        }
        let session = self
            .core
            .attributor
            .session(idx)
            .ok_or_else(|| format!("the session of process {pid} is gone"))?;
        Ok(self.core.attributor.session_json(session).id)
    }

    /// Whether the event loop should poll the ring buffer again in [`BUSY_POLL`].
    pub fn busy(&self) -> bool {
        self.last_found.is_some_and(|t| t.elapsed() <= BUSY_WINDOW)
    }

    /// Handles at most [`DRAIN_BATCH`] records; whether records may be left (the event
    /// loop then lets its other work run and comes back).
    pub fn drain(
        &mut self,
        source: &mut impl RecordSource,
        out: &mut impl Output,
    ) -> Result<bool, OutputError> {
        let mut batch = Batch::new(source, DRAIN_BATCH);
        let mut found = false;
        for decoded in &mut batch {
            found = true;
            match decoded {
                Ok(record) => self.record(&record, 1, out)?,
                Err(e) => {
                    self.decode_errors += 1;
                    crate::diag::undecodable_record(e);
                }
            }
        }
        let more = batch.full();
        if found {
            self.last_found = Some(std::time::Instant::now());
        }
        out.flush()?;
        Ok(more)
    }

    /// At stop: what is in the ring, up to one ring's worth of records (everything that
    /// was there when the stop came; a storm that goes on is not followed for ever).
    pub fn drain_rest(
        &mut self,
        ring: &mut RingBuf<MapData>,
        out: &mut impl Output,
    ) -> Result<(), OutputError> {
        let batches = (self.ring_buffer_bytes / MIN_RING_RECORD) as usize / DRAIN_BATCH + 1;
        for _ in 0..batches {
            if !self.drain(ring, out)? {
                break;
            }
        }
        Ok(())
    }

    /// One record through the core; its events out, its watch change to the kernel.
    fn record(
        &mut self,
        record: &Record,
        count: u64,
        out: &mut impl Output,
    ) -> Result<(), OutputError> {
        let step = self.core.record(record, count, std::time::Instant::now());
        match step.watch {
            Some(WatchChange::Watch(pid)) => {
                // Full (or refused): counted with the kernel's own failed inserts.
                if let Err(e) = self.watched.insert(pid, 0, 0) {
                    tracing::debug!(pid, "cannot add to the watch map: {e}");
                    self.watch_insert_errors += 1;
                }
            }
            Some(WatchChange::Unwatch(pid)) => {
                let _ = self.watched.remove(&pid);
            }
            None => {}
        }
        for event in &step.events {
            self.emit(out, event)?;
        }
        Ok(())
    }

    /// Whether events are held for their tool call (see [`crate::pipeline::hold`]).
    pub fn holding(&self) -> bool {
        self.core.holding()
    }

    /// When the held events next need a look (the event loop's timer, armed while
    /// [`Engine::holding`]).
    pub fn hold_due(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.core.next_due().unwrap_or_else(std::time::Instant::now))
    }

    /// Emits the held events that are ready; all of them with `force` (at stop).
    pub fn release(
        &mut self,
        out: &mut impl Output,
        now: std::time::Instant,
        force: bool,
    ) -> Result<(), OutputError> {
        for event in self.core.release(now, force) {
            self.emit(out, &event)?;
        }
        Ok(())
    }

    /// The event loop's hold timer: releases what is ready and flushes.
    pub fn release_due(&mut self, out: &mut impl Output) -> Result<(), OutputError> {
        self.release(out, std::time::Instant::now(), false)?;
        out.flush()
    }

    /// The last work before `agent_stop`: every held event (a last look for its call),
    /// the signal aggregates and loss counters.
    pub fn finish(&mut self, out: &mut impl Output) -> Result<(), OutputError> {
        self.release(out, std::time::Instant::now(), true)?;
        self.tick(out)
    }

    /// The periodic work: loss counters, signal aggregates, and the attributor's
    /// housekeeping (ended sessions forgotten; after a loss, ghosts reconciled with /proc).
    pub fn tick(&mut self, out: &mut impl Output) -> Result<(), OutputError> {
        self.flush_aggregates(out)?;
        let lost_before = self.lost_total;
        self.check_counters(out)?;
        self.core
            .attributor
            .housekeeping(std::time::Instant::now(), self.lost_total > lost_before);
        Ok(())
    }

    /// Reports, for each (sender, target, signal) key of the kernel's aggregator, the
    /// signals counted since the last read as one `signal` record with that `count`. The
    /// kernel only ever adds to a key's count, so nothing is lost between reads; keys idle
    /// for a minute are removed (the kernel reports the first signals of a window one by
    /// one, so an idle key has nothing left to count).
    fn flush_aggregates(&mut self, out: &mut impl Output) -> Result<(), OutputError> {
        let now = clock::boottime_ns();
        let entries: Vec<(AggKey, AggValue)> = self.agg.iter().flatten().collect();
        let mut idle = Vec::new();
        for (key, v) in entries {
            let seen = self.agg_seen.get(&key).copied().unwrap_or(0);
            if v.suppressed > seen {
                self.agg_seen.insert(key, v.suppressed);
                let header = Header {
                    kind: Kind::Signal as u16,
                    version: WIRE_VERSION,
                    cpu: 0,
                    ts_ns: v.last_ns,
                    pid: key.target,
                    tid: key.target,
                    comm: v.target_comm,
                };
                let record = if key.sender == AGG_DELIVER {
                    Record::SignalDeliver(monitor_common::SignalDeliver {
                        header: Header {
                            kind: Kind::SignalDeliver as u16,
                            ..header
                        },
                        sig: key.sig,
                        si_code: v.si_code,
                        disposition: v.result as u32,
                        _pad: 0,
                        sa_flags: 0,
                        thread_comm: v.target_comm,
                    })
                } else {
                    Record::Signal(monitor_common::Signal {
                        header,
                        sig: key.sig,
                        si_code: v.si_code,
                        result: v.result,
                        group: 1,
                        sender_pid: key.sender,
                        sender_tid: key.sender,
                        sender_uid: v.sender_uid,
                        _pad: 0,
                        sender_comm: v.sender_comm,
                        sender_thread_comm: v.sender_comm,
                        thread_comm: v.target_comm,
                    })
                };
                self.record(&record, v.suppressed - seen, out)?;
                if let Err(e) = self.reported.save_aggregate(key, v.suppressed) {
                    crate::diag::reported_not_saved("AGG_REPORTED", e);
                }
            } else if now.saturating_sub(v.last_ns) > AGG_IDLE_NS
                && now.saturating_sub(v.window_start_ns) > AGG_IDLE_NS
            {
                idle.push(key);
            }
        }
        for key in idle {
            let _ = self.agg.remove(&key);
            self.agg_seen.remove(&key);
            self.reported.forget_aggregate(&key);
        }
        Ok(())
    }

    /// Emits `lost` records for kernel-side losses since the last report (this agent's,
    /// or the one before it on reopened pinned programs), then tells the output that
    /// every loss so far is told.
    fn check_counters(&mut self, out: &mut impl Output) -> Result<(), OutputError> {
        let now = self.counters.read();
        let rb = now.ringbuf_full.saturating_sub(self.last.ringbuf_full);
        let watch = now.watch_full.saturating_sub(self.last.watch_full)
            + std::mem::take(&mut self.watch_insert_errors);
        let decode_errors = std::mem::take(&mut self.decode_errors);
        self.last = now;
        for (count, reason) in [
            (rb, LostReason::RingBufferFull),
            (watch, LostReason::WatchMapFull),
            (decode_errors, LostReason::DecodeError),
        ] {
            if count > 0 {
                if reason.is_records() {
                    self.lost_total += count;
                }
                crate::diag::records_lost(count, reason);
                let event = self.agent_event(Body::Lost(Lost { count, reason }));
                self.emit(out, &event)?;
            }
        }
        out.flush()?;
        if rb > 0 || watch > 0 {
            // Written, so saved: a crash in between reports these again at the next start
            // (told twice rather than never).
            if let Err(e) = self.reported.save_counters(&now) {
                crate::diag::reported_not_saved("REPORTED", e);
            }
        }
        out.losses_told()
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fork_bytes() -> Vec<u8> {
        let fork = monitor_common::Fork {
            header: Header {
                kind: Kind::Fork as u16,
                version: WIRE_VERSION,
                cpu: 0,
                ts_ns: 1,
                pid: 42,
                tid: 42,
                comm: [0; monitor_common::COMM_LEN],
            },
            parent_pid: 1,
            parent_tid: 1,
            start_boottime_ns: 9,
            flags: 0,
            _pad: 0,
        };
        // SAFETY: Fork is a plain #[repr(C)] record with explicit padding.
        unsafe {
            std::slice::from_raw_parts(
                (&raw const fork).cast::<u8>(),
                std::mem::size_of::<monitor_common::Fork>(),
            )
        }
        .to_vec()
    }

    /// A storm: the ring fills again as fast as it is read, it never empties.
    struct Endless {
        record: Vec<u8>,
        served: usize,
    }

    impl RecordSource for Endless {
        type Item<'a> = &'a [u8];
        fn next_record(&mut self) -> Option<&[u8]> {
            self.served += 1;
            assert!(
                self.served <= 10 * DRAIN_BATCH,
                "the drain does not return to the event loop while records keep coming"
            );
            Some(&self.record)
        }
    }

    /// A ring with `left` records in it.
    struct Finite {
        record: Vec<u8>,
        left: usize,
    }

    impl RecordSource for Finite {
        type Item<'a> = &'a [u8];
        fn next_record(&mut self) -> Option<&[u8]> {
            self.left = self.left.checked_sub(1)?;
            Some(&self.record)
        }
    }

    #[test]
    fn a_batch_stops_at_its_bound_in_a_storm() {
        let mut storm = Endless {
            record: fork_bytes(),
            served: 0,
        };
        let mut batch = Batch::new(&mut storm, DRAIN_BATCH);
        let decoded: Vec<_> = batch.by_ref().collect();
        assert!(batch.full(), "a full batch says records may be left");
        assert_eq!(decoded.len(), DRAIN_BATCH);
        assert!(decoded.iter().all(|r| matches!(r, Ok(Record::Fork(_)))));
        assert_eq!(
            storm.served, DRAIN_BATCH,
            "not one record more than the bound"
        );
        // The next batch goes on where this one stopped.
        assert_eq!(Batch::new(&mut storm, DRAIN_BATCH).count(), DRAIN_BATCH);
    }

    #[test]
    fn a_batch_takes_what_is_there_and_says_the_ring_is_empty() {
        let mut ring = Finite {
            record: fork_bytes(),
            left: 3,
        };
        let mut batch = Batch::new(&mut ring, DRAIN_BATCH);
        assert_eq!(batch.by_ref().count(), 3);
        assert!(!batch.full());
        let mut bad = Finite {
            record: vec![1, 2, 3],
            left: 2,
        };
        let decoded: Vec<_> = Batch::new(&mut bad, DRAIN_BATCH).collect();
        assert!(
            decoded.iter().all(Result::is_err),
            "an undecodable record is counted, not skipped: {decoded:?}"
        );
        assert_eq!(decoded.len(), 2);
    }
}

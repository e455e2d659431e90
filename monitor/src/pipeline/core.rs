//! The kernel-free core of the pipeline: decoded records in, attributed events out.
//!
//! Everything between the ring buffer and the outputs that needs no kernel lives here:
//! de-duplication, conversion, attribution (sessions, lineage, the cause of each death),
//! the scope's filter, enrichment from cgroupfs and /proc, and the hold for late tool calls.
//! The [`Engine`](super::engine::Engine) feeds it the records it reads and applies what it
//! asks of the kernel ([`WatchChange`]); tests feed it records they build or replay.

use std::time::Instant;

use monitor_common::{EXIT_FLAG_LIVE_COUNTER, Record};

use crate::{
    event::{Body, CauseKind, Event},
    host::cgroups,
    kernel::loader::ScopeMode,
    pipeline::{attribution::Attributor, convert::Converter, hold::Hold, scope},
};

/// What the kernel's watch map should do after a record (session scopes follow the trees of
/// candidate execs in the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchChange {
    /// Keep following this process (a session root).
    Watch(u32),
    /// Stop following it (a candidate that is not in a session).
    Unwatch(u32),
}

/// The result of one record: the events to write now, in order (held events released first,
/// then this record's own unless it is held), and a change for the kernel.
#[derive(Debug, Default)]
pub struct Step {
    pub events: Vec<Event>,
    pub watch: Option<WatchChange>,
}

pub struct Core {
    pub attributor: Attributor,
    pub conv: Converter,
    filter: Filter,
    memcgs: cgroups::Resolver,
    dedup: ExitDedup,
    /// Events of Bash tools whose call the CLI has not written yet.
    hold: Hold,
    sessions_scope: bool,
    /// Signals and deliveries to a process the table does not know (one that was forked
    /// before this agent started and ended before its scan of /proc: a backlog's), kept
    /// until that process's exit says which session it was in. Oldest first, at most
    /// [`UNPLACED_MAX`], each with the kernel time of its record.
    unplaced: std::collections::VecDeque<(u64, Event)>,
}

/// Signals kept for targets the table does not know yet (see `Core::unplaced`).
pub const UNPLACED_MAX: usize = 256;

impl Core {
    /// Redacts with `redactor` from now on, everywhere the pipeline copies command lines.
    pub fn set_redactor(&mut self, redactor: crate::pipeline::redact::Redactor) {
        self.attributor.set_redactor(redactor.clone());
        self.conv.redactor = redactor;
    }

    pub fn new(
        attributor: Attributor,
        conv: Converter,
        scope: &ScopeMode,
        oom_all: bool,
        memcgs: cgroups::Resolver,
    ) -> Core {
        Core {
            attributor,
            conv,
            filter: Filter::new(scope, oom_all),
            memcgs,
            dedup: ExitDedup::default(),
            hold: Hold::default(),
            sessions_scope: matches!(scope, ScopeMode::Sessions | ScopeMode::Session(_)),
            unplaced: std::collections::VecDeque::new(),
        }
    }

    /// One decoded record (`count` > 1 for an aggregate of a signal flood), at `now`.
    pub fn record(&mut self, record: &Record, count: u64, now: Instant) -> Step {
        let mut step = Step::default();
        if self.dedup.is_duplicate(record) {
            return step;
        }
        let mut event = self.conv.convert(record);
        match &mut event.body {
            Body::Signal(s) => s.count = count,
            Body::SignalDeliver(d) => d.count = count,
            _ => {}
        }
        self.attribute(record, &mut event);
        if self.sessions_scope {
            step.watch = match record {
                Record::Exec(x) => self.confirm_candidate(x.header.pid, &event),
                Record::Fork(f) => self.confirm_child(f),
                _ => None,
            };
        }
        if self.filter.keeps(&event) {
            self.enrich(&mut event, record);
            if !self.hold.is_empty() {
                step.events = self.release(now, false);
            }
            let placed = match record {
                Record::Exit(e) => self.placed_by(e, &event),
                _ => Vec::new(),
            };
            for event in placed.into_iter().chain([event]) {
                self.emit(event, now, &mut step);
            }
        } else if let (true, Record::Signal(monitor_common::Signal { header, .. }))
        | (true, Record::SignalDeliver(monitor_common::SignalDeliver { header, .. })) =
            (self.sessions_scope, record)
            && event.attr.as_ref().is_some_and(|a| a.proc_id.is_none())
        {
            if self.unplaced.len() == UNPLACED_MAX {
                self.unplaced.pop_front();
            }
            self.unplaced.push_back((header.ts_ns, event));
        }
        step
    }

    /// Out now, or held with its wrapper's events until the tool call is known.
    fn emit(&mut self, event: Event, now: Instant, step: &mut Step) {
        let pending = event
            .attr
            .as_ref()
            .filter(|a| a.session.is_some() && a.tool_call.is_none())
            .and_then(|_| self.attributor.pending_wrapper(event.pid));
        match pending {
            Some(wrapper) => step.events.extend(self.hold.hold(wrapper, event, now)),
            None => step.events.push(event),
        }
    }

    /// The unplaced signals of the process whose exit `exit` is (sent while it lived, so
    /// not those of an earlier process with its pid), now attributed as its exit is, in
    /// their order; those the scope keeps.
    fn placed_by(&mut self, e: &monitor_common::Exit, exit: &Event) -> Vec<Event> {
        if self.unplaced.is_empty() {
            return Vec::new();
        }
        let pid = e.header.pid;
        let lived = e.start_boottime_ns..=e.header.ts_ns;
        let mut placed = Vec::new();
        let mut rest = std::collections::VecDeque::with_capacity(self.unplaced.len());
        for (ts, mut s) in self.unplaced.drain(..) {
            if s.pid == pid && lived.contains(&ts) {
                s.attr = exit.attr.clone();
                placed.push(s);
            } else {
                rest.push_back((ts, s));
            }
        }
        self.unplaced = rest;
        placed.retain(|s| self.filter.keeps(s));
        placed
    }

    /// Whether events are held for their tool call (see [`crate::pipeline::hold`]).
    pub fn holding(&self) -> bool {
        !self.hold.is_empty()
    }

    /// When the held events next need a look.
    pub fn next_due(&self) -> Option<Instant> {
        self.hold.next_due()
    }

    /// Signals kept for a target not known yet (see `Core::unplaced`), at most
    /// [`UNPLACED_MAX`].
    pub fn unplaced(&self) -> usize {
        self.unplaced.len()
    }

    /// Full scans of the memory cgroup hierarchy so far (see `cgroups::Resolver`).
    pub fn memcg_scans(&self) -> u64 {
        self.memcgs.scans()
    }

    /// The held events that are ready; all of them with `force` (at stop).
    pub fn release(&mut self, now: Instant, force: bool) -> Vec<Event> {
        self.hold.release(&mut self.attributor, now, force)
    }

    /// The kernel added a forked child of a watched process to the watch map (or could not:
    /// the map was full). A child outside every session was added only because its
    /// parent was a candidate that turned out to be no session (its exec record, read
    /// before this fork, had it removed): it is removed too, so that a candidate that forks
    /// fast cannot fill the map. A session's child the kernel could not add is added now.
    fn confirm_child(&self, f: &monitor_common::Fork) -> Option<WatchChange> {
        let child = f.header.pid;
        match self.attributor.session_of(child) {
            None => Some(WatchChange::Unwatch(child)),
            Some(_) if f.flags & monitor_common::FORK_FLAG_UNWATCHED != 0 => {
                Some(WatchChange::Watch(child))
            }
            Some(_) => None,
        }
    }

    /// Session scopes: the kernel watches a candidate from its exec on; keep it watched if
    /// it is (in) a session, stop following it otherwise. A session found from an exec the
    /// kernel did not watch (a rule without a comm) is watched from now on.
    fn confirm_candidate(&self, pid: u32, event: &Event) -> Option<WatchChange> {
        let in_session = event.attr.as_ref().is_some_and(|a| a.session.is_some());
        if !in_session {
            Some(WatchChange::Unwatch(pid))
        } else if self.attributor.is_session_root(pid) {
            Some(WatchChange::Watch(pid))
        } else {
            None
        }
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
            (Record::SignalDeliver(d), _) => a.on_deliver(d),
            (Record::Oom(o), Body::Oom(body)) => a.on_oom(o, body.anon_rss_kb, body.total_vm_kb),
            (Record::Exit(e), Body::Exit(body)) => {
                a.on_exit_unknown(e);
                body.cause = a.cause(e);
                if body.usage.own_peak_rss_kb.is_none()
                    && let Some(peak) = body.usage.peak_rss_kb
                {
                    body.usage.own_peak_rss_kb = a.own_peak_fallback(e, peak);
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
    fn enrich(&mut self, event: &mut Event, record: &Record) {
        let at = match record {
            Record::Exit(e) => e.header.ts_ns,
            Record::Oom(o) => o.header.ts_ns,
            _ => 0,
        };
        match &mut event.body {
            Body::Exit(e) => e.memcg_path = e.memcg_id.and_then(|id| self.memcgs.path(id, at)),
            Body::Oom(o) => {
                o.memcg_path = o.memcg_id.and_then(|id| self.memcgs.path(id, at));
                if o.victim.comm.is_empty() {
                    let pid = o.victim.pid;
                    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                        o.victim.comm = comm.trim_end().to_owned();
                        event.comm.clone_from(&o.victim.comm);
                    }
                    if o.victim.uid.is_none() {
                        o.victim.uid = scope::proc_uid(pid);
                    }
                }
            }
            _ => {}
        }
    }
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

/// Which events are written: in the session scopes, those of session members (and signals
/// sent by them), and with `oom_all` every OOM kill and its victim's exit; otherwise every
/// event the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Filter {
    All,
    Sessions { oom_all: bool },
    Session { id: String, oom_all: bool },
}

impl Filter {
    fn new(scope: &ScopeMode, oom_all: bool) -> Filter {
        match scope {
            ScopeMode::All | ScopeMode::Pids(_) => Filter::All,
            ScopeMode::Sessions => Filter::Sessions { oom_all },
            ScopeMode::Session(id) => Filter::Session {
                id: id.clone(),
                oom_all,
            },
        }
    }

    fn keeps(&self, event: &Event) -> bool {
        let oom_all = match self {
            Filter::All => return true,
            Filter::Sessions { oom_all } | Filter::Session { oom_all, .. } => *oom_all,
        };
        if oom_all {
            match &event.body {
                Body::Oom(_) => return true,
                Body::Exit(e) if e.cause.cause == CauseKind::OomKilled => return true,
                _ => {}
            }
        }
        let session = event.attr.as_ref().and_then(|a| a.session.as_ref());
        let sender_session = match &event.body {
            Body::Signal(s) => s.sender.session_id.as_deref(),
            _ => None,
        };
        match self {
            Filter::All => true,
            Filter::Sessions { .. } => session.is_some() || sender_session.is_some(),
            Filter::Session { id, .. } => {
                session.is_some_and(|s| s.id == *id || s.claude_session_id.as_deref() == Some(id))
                    || sender_session == Some(id.as_str())
            }
        }
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
            thread_comm: [0; 16],
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

    /// A replay: the records the kernel writes for a Claude Code session whose tool is
    /// killed from outside, whose root then catches SIGTERM and exits 143, and a process
    /// that reuses the tool's pid outside the session; through the core with no kernel,
    /// asserting what the stream and the reports would say.
    mod replay {
        use monitor_common::{
            ARGS_LEN, DISPOSITION_HANDLER, EXEC_FLAG_ARGS, Exec, FILENAME_LEN, Fork, Signal,
            SignalDeliver,
        };

        use super::*;
        use crate::{
            claude::{detect::Detector, registry::Registry},
            event::{CauseKind, Kind as EventKind},
            host::clock::Clock,
            report::{Reason, worth_reporting},
        };

        // Above any pid_max (4194304): /proc never has them, so the replay reads nothing
        // of the host.
        const ROOT: u32 = 4_300_000;
        const TOOL: u32 = 4_300_001;
        const OUTSIDER: u32 = 4_300_002;
        const SEC: u64 = 1_000_000_000;

        fn zeroed<T: Copy>() -> T {
            // SAFETY: monitor_common's #[repr(C)] records hold integers and integer arrays
            // only, for which all-zero bytes are valid.
            unsafe { std::mem::zeroed() }
        }

        fn header(kind: Kind, pid: u32, comm: &str, ts_ns: u64) -> Header {
            let mut c = [0; 16];
            c[..comm.len()].copy_from_slice(comm.as_bytes());
            Header {
                kind: kind as u16,
                version: WIRE_VERSION,
                cpu: 0,
                ts_ns,
                pid,
                tid: pid,
                comm: c,
            }
        }

        fn fork(child: u32, parent: u32, comm: &str, start: u64) -> Record {
            let mut f: Fork = zeroed();
            f.header = header(Kind::Fork, child, comm, start);
            f.parent_pid = parent;
            f.parent_tid = parent;
            f.start_boottime_ns = start;
            Record::Fork(f)
        }

        fn exec(pid: u32, ppid: u32, start: u64, filename: &str, argv: &[&str]) -> Record {
            let mut x: Exec = zeroed();
            let comm = filename.rsplit('/').next().unwrap_or(filename);
            x.header = header(Kind::Exec, pid, &comm[..comm.len().min(15)], start + 1);
            x.old_tid = pid;
            x.ppid = ppid;
            x.start_boottime_ns = start;
            let mut name = [0; FILENAME_LEN];
            name[..filename.len()].copy_from_slice(filename.as_bytes());
            x.filename = name;
            let area: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
            let mut args = [0; ARGS_LEN];
            args[..area.len()].copy_from_slice(&area);
            x.args = args;
            x.args_len = area.len() as u32;
            x.flags = EXEC_FLAG_ARGS;
            Record::Exec(x)
        }

        fn signal(target: u32, sender: u32, sig: i32, at: u64) -> Record {
            let mut s: Signal = zeroed();
            s.header = header(Kind::Signal, target, "x", at);
            s.sig = sig;
            s.sender_pid = sender;
            s.sender_tid = sender;
            s.sender_comm[..4].copy_from_slice(b"bash");
            Record::Signal(s)
        }

        fn deliver(target: u32, sig: i32, at: u64) -> Record {
            let mut d: SignalDeliver = zeroed();
            d.header = header(Kind::SignalDeliver, target, "claude", at);
            d.sig = sig;
            d.disposition = DISPOSITION_HANDLER;
            Record::SignalDeliver(d)
        }

        fn exit_at(pid: u32, start: u64, status: u32, at: u64) -> Record {
            let Record::Exit(mut e) = exit(pid, start, 0) else {
                unreachable!()
            };
            e.header.ts_ns = at;
            e.exit_status = status;
            Record::Exit(e)
        }

        fn core() -> Core {
            let attributor = Attributor::new(
                Detector::new(Vec::new()).expect("built-in rules"),
                Registry::new(Vec::new()),
                Clock::fixed(0),
                4,
            );
            Core::new(
                attributor,
                Converter::new(Clock::fixed(0)),
                &ScopeMode::Sessions,
                false,
                cgroups::Resolver::new(None),
            )
        }

        fn feed(core: &mut Core, records: &[Record]) -> Vec<Event> {
            let now = Instant::now();
            records
                .iter()
                .flat_map(|r| core.record(r, 1, now).events)
                .collect()
        }

        fn exit_of(events: &[Event], pid: u32) -> &Event {
            events
                .iter()
                .find(|e| e.kind == EventKind::Exit && e.pid == pid)
                .unwrap_or_else(|| panic!("no exit of {pid} in {events:#?}"))
        }

        #[test]
        fn a_session_whose_tool_is_killed_and_whose_root_is_terminated() {
            let mut core = core();
            let version = "/home/u/.local/share/claude/versions/2.1.197";
            let events = feed(
                &mut core,
                &[
                    exec(ROOT, 1, SEC, version, &["claude", "-p", "hi"]),
                    fork(TOOL, ROOT, "claude", 2 * SEC),
                    exec(TOOL, ROOT, 2 * SEC, "/bin/sh", &["sh", "-c", "sleep 30"]),
                    signal(TOOL, OUTSIDER, 9, 3 * SEC),
                    exit_at(TOOL, 2 * SEC, 9, 3 * SEC + 1),
                    signal(ROOT, OUTSIDER, 15, 4 * SEC),
                    deliver(ROOT, 15, 4 * SEC + 1),
                    exit_at(ROOT, SEC, 143 << 8, 4 * SEC + 2),
                ],
            );
            // The exec of the root made it a session; the watch map keeps following it.
            let tool = exit_of(&events, TOOL);
            let attr = tool.attr.as_ref().expect("attributed");
            let session = attr.session.as_ref().expect("in the session");
            assert_eq!(
                (session.root_pid, session.agent.as_str()),
                (ROOT, "claude-code")
            );
            assert_eq!(session.version.as_deref(), Some("2.1.197"));
            let lineage: Vec<u32> = attr.ancestry.iter().flatten().map(|a| a.pid).collect();
            assert_eq!(lineage, [TOOL, ROOT]);
            let Body::Exit(x) = &tool.body else {
                unreachable!()
            };
            let k = x.cause.killed_by.as_ref().expect("sender");
            assert_eq!(
                (x.cause.cause, k.pid, k.signal, k.same_session, k.handled),
                (CauseKind::Killed, OUTSIDER, 9, false, false)
            );
            assert_eq!(
                worth_reporting(tool, false),
                Some(Reason::KilledFromOutside)
            );

            let root = exit_of(&events, ROOT);
            let Body::Exit(x) = &root.body else {
                unreachable!()
            };
            let k = x.cause.killed_by.as_ref().expect("sender");
            assert_eq!(
                (
                    x.cause.cause,
                    x.status.exit_code,
                    k.pid,
                    k.signal,
                    k.handled
                ),
                (CauseKind::Terminated, Some(143), OUTSIDER, 15, true)
            );
            assert_eq!(
                worth_reporting(root, false),
                Some(Reason::KilledFromOutside)
            );

            // The tool's pid reused by a process outside the session: not in it.
            let reused = feed(
                &mut core,
                &[
                    fork(TOOL, OUTSIDER, "bash", 5 * SEC),
                    exit_at(TOOL, 5 * SEC, 0, 6 * SEC),
                ],
            );
            assert!(
                reused.is_empty(),
                "the sessions scope writes nothing of a process outside: {reused:#?}"
            );
        }

        /// A backlog after a restart: the tool was forked before the agent started and
        /// killed before its scan of /proc, so the table first learns of it from its exit
        /// (which names its parent). The signal that killed it, read before that exit, is
        /// written with it, attributed as it is, and not one of an earlier process with the
        /// same pid.
        #[test]
        fn a_backlog_signal_to_a_process_never_seen_alive_is_written_with_its_exit() {
            let mut core = core();
            let version = "/home/u/.local/share/claude/versions/2.1.197";
            let tool_exit = |start: u64, at: u64| {
                let Record::Exit(mut e) = exit_at(TOOL, start, 9, at) else {
                    unreachable!()
                };
                e.ppid = ROOT;
                Record::Exit(e)
            };
            let events = feed(
                &mut core,
                &[
                    exec(ROOT, 1, SEC, version, &["claude"]),
                    // Sent to an earlier process with the tool's pid, which never exits
                    // in this stream: not the tool's.
                    signal(TOOL, OUTSIDER, 15, SEC / 2),
                    signal(TOOL, OUTSIDER, 9, 3 * SEC),
                    deliver(OUTSIDER, 10, 3 * SEC),
                    tool_exit(2 * SEC, 3 * SEC + 1),
                ],
            );
            let kinds: Vec<(EventKind, u32)> = events.iter().map(|e| (e.kind, e.pid)).collect();
            assert_eq!(
                kinds,
                [
                    (EventKind::Exec, ROOT),
                    (EventKind::Signal, TOOL),
                    (EventKind::Exit, TOOL)
                ],
                "{events:#?}"
            );
            let Body::Signal(s) = &events[1].body else {
                unreachable!()
            };
            assert_eq!((s.signal, s.sender.pid), (9, OUTSIDER));
            let session = |e: &Event| {
                e.attr
                    .as_ref()
                    .and_then(|a| a.session.as_ref())
                    .map(|s| s.root_pid)
            };
            assert_eq!(session(&events[1]), Some(ROOT));
            assert_eq!(events[1].attr, events[2].attr);
            // The earlier process's signal and the outsider's delivery stay unwritten, and
            // the keeping is bounded.
            for i in 0..UNPLACED_MAX as u64 * 2 {
                feed(&mut core, &[signal(OUTSIDER, ROOT + 10, 10, 4 * SEC + i)]);
            }
            assert_eq!(core.unplaced.len(), UNPLACED_MAX);
        }

        /// The first exec of a session root asks the kernel to keep following it; a
        /// candidate exec that is no session is dropped from the watch map.
        #[test]
        fn candidate_execs_change_the_watch_map() {
            let mut core = core();
            let version = "/home/u/.local/share/claude/versions/2.1.197";
            let step = core.record(&exec(ROOT, 1, SEC, version, &["claude"]), 1, Instant::now());
            assert_eq!(step.watch, Some(WatchChange::Watch(ROOT)));
            let step = core.record(
                &exec(OUTSIDER, 1, SEC, "/usr/bin/2to3", &["2to3"]),
                1,
                Instant::now(),
            );
            assert_eq!(step.watch, Some(WatchChange::Unwatch(OUTSIDER)));
            assert!(
                step.events.is_empty(),
                "outside the sessions: {:#?}",
                step.events
            );
        }

        /// A candidate that is no session (named like a version, `2to3`) forks fast: each
        /// child the kernel added to the watch map is removed again, so the map cannot
        /// fill. A session's child the kernel could not add (the map was full) is added.
        #[test]
        fn forks_outside_sessions_leave_the_watch_map() {
            let mut core = core();
            let now = Instant::now();
            let step = core.record(&exec(OUTSIDER, 1, SEC, "/usr/bin/2to3", &["2to3"]), 1, now);
            assert_eq!(step.watch, Some(WatchChange::Unwatch(OUTSIDER)));
            for i in 0..3 {
                let child = 4_300_100 + i;
                let step = core.record(&fork(child, OUTSIDER, "2to3", 2 * SEC), 1, now);
                assert_eq!(step.watch, Some(WatchChange::Unwatch(child)));
                assert!(step.events.is_empty());
            }
            let version = "/home/u/.local/share/claude/versions/2.1.197";
            core.record(&exec(ROOT, 1, SEC, version, &["claude"]), 1, now);
            let step = core.record(&fork(TOOL, ROOT, "claude", 2 * SEC), 1, now);
            assert_eq!(step.watch, None, "the kernel added it");
            let Record::Fork(mut f) = fork(TOOL + 10, ROOT, "claude", 2 * SEC) else {
                unreachable!()
            };
            f.flags = monitor_common::FORK_FLAG_UNWATCHED;
            let step = core.record(&Record::Fork(f), 1, now);
            assert_eq!(step.watch, Some(WatchChange::Watch(TOOL + 10)));
        }

        /// The storm: 100,000 short processes in a session (fork, exec with a
        /// command line, exit), then what stays: the table keeps the live processes and
        /// `DEAD_KEPT` exited ones, whatever the number that came and went.
        #[test]
        fn a_storm_of_100k_processes_leaves_bounded_state() {
            let mut core = core();
            let version = "/home/u/.local/share/claude/versions/2.1.197";
            feed(&mut core, &[exec(ROOT, 1, SEC, version, &["claude"])]);
            let warm = |core: &mut Core, from: u32, n: u32| {
                let now = Instant::now();
                let mut events = 0usize;
                for i in 0..n {
                    let pid = 4_400_000 + from + i;
                    let at = 2 * SEC + u64::from(from + i) * 1000;
                    for r in [
                        fork(pid, ROOT, "claude", at),
                        exec(
                            pid,
                            ROOT,
                            at,
                            "/usr/bin/cc",
                            &["cc", "-c", "x.c", "-o", "x.o"],
                        ),
                        exit_at(pid, at, 0, at + 500),
                    ] {
                        events += core.record(&r, 1, now).events.len();
                    }
                }
                events
            };
            // The first 5,000 fill the remembered dead; 100,000 more may still grow the
            // hash tables' capacity once (a step, measured at ~4 MiB in debug builds), and
            // 20,000 more grow nothing.
            assert_eq!(
                warm(&mut core, 0, 5_000),
                15_000,
                "fork, exec and exit are events"
            );
            let (events, first) = crate::testutil::measure(|| warm(&mut core, 10_000, 100_000));
            assert_eq!(events, 300_000);
            let (_, second) = crate::testutil::measure(|| warm(&mut core, 110_000, 20_000));
            let sizes = core.attributor.sizes();
            eprintln!("100k-process storms: first {first:?}, second {second:?}, {sizes:?}");
            // The root, plus exited processes remembered twice (by pid and by identity).
            assert!(sizes.processes <= 1 + 2 * 4096, "{sizes:?}");
            assert_eq!(sizes.sessions, 1);
            assert!(first.retained < 8 * 1024 * 1024, "{first:?}");
            assert!(second.retained <= 0, "the second storm kept {second:?}");
            assert!(second.peak < 1024 * 1024, "{second:?}");
        }

        /// 10,000 sessions (processes named `claude`, the built-in comm rule: any user can
        /// start them): each costs little while it lives, and all is forgotten once they
        /// ended (a few kept for a while, for the events written just after).
        #[test]
        fn ten_thousand_sessions_are_bounded_and_forgotten() {
            let mut core = core();
            let n = 10_000u32;
            let pid = |i: u32| 4_500_000 + i;
            let (_, started) = crate::testutil::measure(|| {
                for i in 0..n {
                    let at = SEC + u64::from(i) * 1000;
                    feed(
                        &mut core,
                        &[exec(pid(i), 1, at, "/home/u/claude", &["claude"])],
                    );
                }
            });
            assert_eq!(core.attributor.sizes().sessions, n as usize);
            let per_session = started.retained / n as isize;
            eprintln!("{n} live sessions: {started:?}, {per_session} bytes each");
            assert!(per_session < 2048, "{per_session} bytes per session");

            let t0 = std::time::Instant::now();
            for i in 0..n {
                let at = SEC + u64::from(i) * 1000;
                feed(&mut core, &[exit_at(pid(i), at, 0, 100 * SEC)]);
            }
            core.attributor.housekeeping(t0, false);
            let sizes = core.attributor.sizes();
            assert_eq!(
                sizes.sessions, 1024,
                "the newest ended kept a while: {sizes:?}"
            );
            core.attributor
                .housekeeping(t0 + std::time::Duration::from_secs(31), false);
            let sizes = core.attributor.sizes();
            assert_eq!((sizes.sessions, sizes.sessions_pruned), (0, u64::from(n)));

            // A process of a forgotten session still has its index: it finds no session
            // (and no other one), rather than a panic.
            let orphan = 4_600_000;
            let events = feed(
                &mut core,
                &[
                    exec(orphan, 1, 200 * SEC, "/home/u/claude", &["claude"]),
                    exit_at(orphan, 200 * SEC, 0, 201 * SEC),
                ],
            );
            let session = exit_of(&events, orphan)
                .attr
                .as_ref()
                .and_then(|a| a.session.as_ref())
                .map(|s| s.root_pid);
            assert_eq!(session, Some(orphan), "a new session, index never reused");
        }

        /// More live sessions than `MAX_SESSIONS`: the excess is counted, not tracked.
        #[test]
        fn sessions_beyond_the_cap_are_counted_not_tracked() {
            use crate::pipeline::attribution::MAX_SESSIONS;
            let mut core = core();
            let extra = 5u32;
            for i in 0..(MAX_SESSIONS as u32 + extra) {
                let at = SEC + u64::from(i) * 1000;
                core.record(
                    &exec(4_700_000 + i, 1, at, "/home/u/claude", &["claude"]),
                    1,
                    Instant::now(),
                );
            }
            let sizes = core.attributor.sizes();
            assert_eq!(
                (sizes.sessions, sizes.sessions_refused),
                (MAX_SESSIONS, u64::from(extra))
            );
        }
    }
}

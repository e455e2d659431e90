//! Attribution: which session and lineage each event belongs to, and why each process died.
//!
//! **Where matching happens, and why.** Session detection needs facts only userspace has:
//! the executable's path (`/proc/PID/exe`), argv (the `rg` helper re-executes the CLI with
//! argv[0] `rg`), the session registry and transcripts. So rules are matched here, at exec
//! and in a /proc scan at start-up. Lineage is race-free anyway: the kernel reports every
//! fork *in order* in the same ring buffer before the child can exec or exit, and the
//! process table gives a child its parent's session at fork, so a child forked microseconds
//! after its parent became a session is attributed. Processes are identified by pid plus
//! start time, so a reused pid never inherits the old process's session, and by the parent
//! they were forked from, so an orphan reparented to init stays in its session. The cost of
//! this choice (every fork/exec/exit of the host reaches userspace in `--claude` mode) is
//! what the benchmark issue measures; `--pid` keeps the in-kernel tree filter.
//!
//! **Cause of death.** Signals are recorded at generation with their sender, OOM kills at
//! victim selection; the exit that follows is matched to them by pid (and start time).

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
};

use monitor_common::{DISPOSITION_HANDLER, Exec, ExecArgv, Exit, Fork, Oom, Signal, SignalDeliver};

use crate::{
    claude::{
        detect::{self, Detector, ProcFacts},
        environ,
        registry::{self, Registry},
        transcript::{self, TranscriptTail},
    },
    event::{Attr, Cause, CauseKind, DefaultAction, KilledBy, OomCause, SessionJson, ToolCallRef},
    host::clock::Clock,
    kernel::loader::KernelCandidates,
    pipeline::convert::cstr,
    pipeline::proctable::{ProcId, ProcTable, SessionIdx, WrapperScript, ns_to_ticks},
    pipeline::scope,
    signals::names::WaitStatus,
};

/// A detected session: one process tree rooted at an agent's process.
pub struct Session {
    pub agent: String,
    pub root: ProcId,
    pub version: Option<String>,
    pub rule: String,
    pub cwd: Option<String>,
    pub claude_session_id: Option<String>,
    /// The Claude Code configuration directory its registry entry was found in.
    pub config_dir: Option<PathBuf>,
    /// Where the root's own environment says its configuration is (`$CLAUDE_CONFIG_DIR`,
    /// else `$HOME/.claude`): searched first for its registry entry.
    own_config: Option<PathBuf>,
    /// The root process's uid: registry entries must be owned by it.
    uid: Option<u32>,
    /// Reads of the root's environment for `own_config` so far.
    environ_reads: u8,
    /// The session's transcript, read incrementally for tool calls in flight.
    transcript: Option<TranscriptTail>,
    /// Ids of the calls already matched to a wrapper, newest last (at most
    /// [`CLAIMED_MAX`]): a wrapper matched by time takes none of them.
    claimed: VecDeque<String>,
}

/// How many matched call ids a session remembers.
const CLAIMED_MAX: usize = 256;

#[derive(Clone, Debug)]
struct SignalNote {
    sig: i32,
    si_code: i32,
    sender: ProcIdOrPid,
    sender_comm: String,
    sender_uid: u32,
}

/// A terminating signal the target caught with a handler: the exit that follows is its
/// doing.
#[derive(Clone, Debug)]
struct HandledNote {
    note: SignalNote,
    /// When it was delivered (boottime ns).
    at_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct ProcIdOrPid {
    pid: u32,
    id: Option<ProcId>,
    session: Option<SessionIdx>,
}

/// Signals that mean the process crashed when the kernel (or the process itself) raised them.
const CRASH_SIGNALS: [i32; 5] = [4, 6, 7, 8, 11]; // SIGILL SIGABRT SIGBUS SIGFPE SIGSEGV
const SI_KERNEL: i32 = 0x80;
/// Bounds on the per-target notes kept between a signal and the exit it causes.
const NOTES_PER_TARGET: usize = 4;
const NOTE_TARGETS: usize = 8192;
/// How long after a handled terminating signal N an exit with code 128+N (the shell's
/// convention, which the Claude Code CLI follows) is still its consequence.
const HANDLED_CONVENTIONAL_EXIT_NS: u64 = 60_000_000_000;
/// How long after a handled terminating signal an exit with any other code is.
const HANDLED_ANY_EXIT_NS: u64 = 2_000_000_000;
/// Matches of a tool wrapper's script tried on the event path (each event of its tree);
/// after that only the engine's hold tries, at its own pace, until its deadline.
const TOOL_ATTEMPTS: u8 = 32;
/// Minimum time between two rebuilds of the registry's directory list.
const REGISTRY_REBUILD: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Attributor {
    table: ProcTable,
    sessions: Vec<Session>,
    detector: Detector,
    registry: Registry,
    /// When the registry's directory list was last rebuilt (a user may run Claude Code for
    /// the first time after the agent started, creating their sessions directory).
    registry_built: std::time::Instant,
    clock: Clock,
    page_kb: u64,
    signals: HashMap<u32, VecDeque<SignalNote>>,
    /// The last handled terminating signal of each target, until it exits.
    handled: HashMap<u32, HandledNote>,
    ooms: HashMap<u32, OomCause>,
    /// The detector's exec prefilter, to skip /proc for execs that cannot start a session.
    candidates: KernelCandidates,
}

impl Attributor {
    pub fn new(detector: Detector, registry: Registry, clock: Clock, page_kb: u64) -> Attributor {
        Attributor {
            candidates: detector.kernel_candidates(),
            table: ProcTable::new(),
            sessions: Vec::new(),
            detector,
            registry,
            registry_built: std::time::Instant::now(),
            clock,
            page_kb,
            signals: HashMap::new(),
            handled: HashMap::new(),
            ooms: HashMap::new(),
        }
    }

    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    /// The live processes (pid, comm) of a session, or of every session with `None`.
    pub fn live_members(&self, session: Option<SessionIdx>) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .table
            .live_members(session)
            .into_iter()
            .map(|p| (p.id.pid, p.comm.clone()))
            .collect();
        v.sort_unstable();
        v
    }

    /// The live members (pids, sorted) of each session that has any, in one pass over the
    /// process table.
    pub fn live_by_session(&self) -> std::collections::BTreeMap<SessionIdx, Vec<u32>> {
        let mut by: std::collections::BTreeMap<SessionIdx, Vec<u32>> = Default::default();
        for p in self.table.live_members(None) {
            if let Some(idx) = p.session {
                by.entry(idx).or_default().push(p.id.pid);
            }
        }
        for pids in by.values_mut() {
            pids.sort_unstable();
        }
        by
    }

    /// The session index of a process, when it belongs to one.
    pub fn session_of(&self, pid: u32) -> Option<SessionIdx> {
        self.table.get(pid).and_then(|p| p.session)
    }

    /// Whether a process is the root of its session.
    pub fn is_session_root(&self, pid: u32) -> bool {
        self.table.get(pid).is_some_and(|p| p.session_root)
    }

    /// Every process in /proc now, then session detection over them (oldest first, so a
    /// session started inside another one's tool becomes its own session).
    pub fn scan_proc(&mut self) {
        let Ok(stats) = scope::proc_stats() else {
            return;
        };
        let mut found: Vec<(ProcId, u32, String)> = stats
            .into_iter()
            .map(|s| {
                (
                    ProcId {
                        pid: s.pid,
                        start: s.start,
                    },
                    s.ppid,
                    s.comm,
                )
            })
            .collect();
        found.sort_by_key(|(id, _, _)| id.start);
        let ppids: HashMap<u32, u32> = found.iter().map(|(id, ppid, _)| (id.pid, *ppid)).collect();
        for (id, ppid, comm) in &found {
            self.table.insert_existing(*id, *ppid, comm.clone());
        }
        self.table.link_existing(&ppids);
        for (id, _, _) in &found {
            if let Ok(facts) = detect::read_proc_facts(id.pid) {
                self.maybe_session(*id, &facts, scope::proc_uid(id.pid));
            }
        }
    }

    /// A new session when `facts` match a rule (`uid`: the process's). A Claude Code root's
    /// own environment says where its configuration is, which need not be under the passwd
    /// home; it is read now, while the process is young.
    fn maybe_session(
        &mut self,
        id: ProcId,
        facts: &ProcFacts,
        uid: Option<u32>,
    ) -> Option<SessionIdx> {
        let detection = self.detector.detect(facts)?;
        if let Some(p) = self.table.get(id.pid)
            && p.session_root
            && p.id == id
        {
            return p.session;
        }
        let own_config = (detection.agent == crate::claude::CLAUDE_CODE)
            .then(|| read_own_config(id.pid))
            .flatten();
        let version = match detection.version {
            None if detection.agent == crate::claude::CLAUDE_CODE => detect::package_version(facts),
            v => v,
        };
        let idx = self.sessions.len();
        self.sessions.push(Session {
            agent: detection.agent,
            root: id,
            version,
            rule: detection.rule,
            cwd: None,
            claude_session_id: None,
            config_dir: None,
            own_config,
            uid,
            environ_reads: 1,
            transcript: None,
            claimed: VecDeque::new(),
        });
        self.table.set_session(id.pid, idx);
        tracing::debug!(pid = id.pid, session = idx, "session detected");
        Some(idx)
    }

    pub fn on_fork(&mut self, f: &Fork) {
        let id = ProcId {
            pid: f.header.pid,
            start: ns_to_ticks(f.start_boottime_ns),
        };
        self.table.fork(id, f.parent_pid, cstr(&f.header.comm));
    }

    pub fn on_exec(&mut self, x: &Exec) {
        let id = ProcId {
            pid: x.header.pid,
            start: ns_to_ticks(x.start_boottime_ns),
        };
        let comm = cstr(&x.header.comm);
        let filename = cstr(&x.filename);
        self.table.exec(
            id,
            x.ppid,
            comm.clone(),
            filename.clone(),
            x.maxrss_pages * self.page_kb,
        );
        // /proc is read (three syscalls: the cost of an exec in a storm) only for an exec
        // that could start a session, by the same test as the kernel's prefilter, or that
        // runs inside one (a tool wrapper's whole command line); other facts come from the
        // record.
        let in_session = self.table.get(id.pid).is_some_and(|p| p.session.is_some());
        let candidate = self.could_start_session(&comm);
        let proc = (in_session || candidate)
            .then(|| detect::read_proc_facts(id.pid).ok())
            .flatten();
        // The whole command line: from /proc, or the kernel's capture when it was not cut.
        let argv_whole = proc.as_ref().is_some_and(|f| f.exe.is_some())
            || x.argv().is_some_and(|a| !a.truncated);
        let facts = exec_facts(id.pid, comm, filename, proc, x.argv().as_ref());
        if let Some(p) = self.table.get_mut(id.pid)
            && !facts.argv.is_empty()
        {
            p.argv = Some(facts.argv.clone());
        }
        if candidate {
            self.maybe_session(id, &facts, Some(x.uid));
        }
        if in_session {
            self.maybe_tool_call(id.pid, &facts, argv_whole);
        }
    }

    /// Whether an exec with this comm may be a session root (see
    /// `Detector::kernel_candidates`).
    fn could_start_session(&self, comm: &str) -> bool {
        let c = &self.candidates;
        !c.exec_all.is_empty()
            || c.comms.iter().any(|k| k == comm)
            || (c.version_comm && comm.starts_with(|ch: char| ch.is_ascii_digit()))
    }

    /// The command line of a process's last exec, when it was seen.
    /// The command line of the process `proc_id` (`pid:start`) names, when the table
    /// still has that process (not a later one with its pid: an event held for its tool
    /// call is written a little after it happened).
    pub fn argv(&self, pid: u32, proc_id: Option<&str>) -> Option<Vec<String>> {
        let start = proc_id.and_then(|id| id.split_once(':')?.1.parse().ok());
        let p = match start {
            Some(start) => self.table.by_id(ProcId { pid, start })?,
            None => self.table.get(pid)?,
        };
        p.argv.clone()
    }

    /// A Bash tool's wrapper (`bash -c "source …snapshot… && eval '<cmd>' …"`) starting in a
    /// session: find the tool call that runs `<cmd>` in the session's transcript. Recorded
    /// on the wrapper and inherited by everything it starts, because the call may complete
    /// (or be backgrounded) long before its processes end. The CLI writes the call to its
    /// transcript asynchronously, so a wrapper not matched now keeps its script and is
    /// matched again on later events of its tree ([`Attributor::tool_call_of`]).
    ///
    /// A wrapper whose command line the agent could not read whole (the kernel keeps the
    /// first [`monitor_common::ARGS_LEN`] bytes, and a tool of a few milliseconds is gone
    /// before /proc is read) is still one when it is a shell with `-c` started by the
    /// session's root itself, as the CLI starts every Bash tool: it is matched by time.
    fn maybe_tool_call(&mut self, pid: u32, facts: &ProcFacts, argv_whole: bool) {
        let Some(proc) = self.table.get(pid) else {
            return;
        };
        if proc.session.is_none() || proc.session_root {
            return;
        }
        let script = match shell_script(&facts.argv) {
            Some(script) => WrapperScript::Whole(script.to_owned()),
            None if !argv_whole
                && runs_shell_c(&facts.argv)
                && proc
                    .parent
                    .and_then(|p| self.table.by_id(p))
                    .is_some_and(|p| p.session_root) =>
            {
                WrapperScript::Cut
            }
            None => return,
        };
        let id = proc.id;
        tracing::debug!(wrapper = %id, script = ?script, "tool wrapper started");
        self.table.update(id, |p| {
            p.tool_script = Some(script.clone());
            p.tool_attempts = 0;
        });
        self.resolve_tool_call(id);
    }

    /// Tries to match the pending wrapper `id` to its tool call; sets and returns it when found.
    fn resolve_tool_call(&mut self, id: ProcId) -> Option<ToolCallRef> {
        let p = self.table.by_id(id)?;
        let (idx, script) = (p.session?, p.tool_script.clone()?);
        let started = self
            .clock
            .wall(crate::pipeline::proctable::ticks_to_ns(id.start));
        self.refresh_registry(idx);
        let call = self.sessions[idx].match_tool(&script, started);
        tracing::debug!(wrapper = %id, matched = ?call.as_ref().map(|c| &c.id), "tool call lookup");
        self.table.update(id, |p| match &call {
            Some(call) => {
                p.tool_call = Some(call.clone());
                p.tool_script = None;
            }
            None => {
                // After TOOL_ATTEMPTS tries on the event path the script stays: the
                // engine's hold (`crate::pipeline::hold`) keeps trying for the events it holds and
                // gives the wrapper up at its deadline (`give_up_tool`).
                p.tool_attempts = p.tool_attempts.saturating_add(1);
            }
        });
        call
    }

    /// The nearest tool wrapper above `pid` (or `pid` itself) whose call is not known yet,
    /// if any: events of its tree are worth holding until the CLI writes the call.
    pub fn pending_wrapper(&self, pid: u32) -> Option<ProcId> {
        let p = self.table.get(pid)?;
        p.session?;
        let mut cur = Some(p.id);
        for _ in 0..crate::event::ANCESTRY_MAX {
            let q = cur.and_then(|id| self.table.by_id(id))?;
            if q.tool_call.is_some() || q.session_root {
                return None;
            }
            if q.tool_script.is_some() {
                return Some(q.id);
            }
            cur = q.parent;
        }
        None
    }

    /// The call of wrapper `id` if it is known (matched on an event of its tree).
    pub fn known_call(&self, id: ProcId) -> Option<ToolCallRef> {
        self.table.by_id(id)?.tool_call.clone()
    }

    /// The call of the pending wrapper `id`, matched now in its session's transcript (the
    /// wrapper may have exited meanwhile).
    pub fn resolve_wrapper(&mut self, id: ProcId) -> Option<ToolCallRef> {
        self.known_call(id).or_else(|| self.resolve_tool_call(id))
    }

    /// Stops matching the wrapper `id`: its events go out without a tool call.
    pub fn give_up_tool(&mut self, id: ProcId) {
        self.table.update(id, |p| p.tool_script = None);
    }

    /// The tool call of process `pid`: its own, else the one of the nearest wrapper above it
    /// (matched now if it was not yet), which it then keeps.
    fn tool_call_of(&mut self, pid: u32) -> Option<ToolCallRef> {
        let p = self.table.get(pid)?;
        if p.tool_call.is_some() || p.session.is_none() {
            return p.tool_call.clone();
        }
        let me = p.id;
        let mut cur = Some(me);
        let mut found = None;
        for _ in 0..crate::event::ANCESTRY_MAX {
            let Some(q) = cur.and_then(|id| self.table.by_id(id)) else {
                break;
            };
            if q.tool_call.is_some() {
                found = q.tool_call.clone();
                break;
            }
            if q.tool_script.is_some() {
                if q.tool_attempts < TOOL_ATTEMPTS {
                    found = self.resolve_tool_call(q.id);
                }
                break;
            }
            if q.session_root {
                break;
            }
            cur = q.parent;
        }
        if let Some(call) = &found {
            self.table.update(me, |p| p.tool_call = Some(call.clone()));
        }
        found
    }

    pub fn on_signal(&mut self, s: &Signal) {
        if self.signals.len() >= NOTE_TARGETS && !self.signals.contains_key(&s.header.pid) {
            // Targets that never exited (signals that did not kill): forget them all.
            self.signals.clear();
        }
        let sender = self.who(s.sender_pid);
        let notes = self.signals.entry(s.header.pid).or_default();
        if notes.len() == NOTES_PER_TARGET {
            notes.pop_front();
        }
        notes.push_back(SignalNote {
            sig: s.sig,
            si_code: s.si_code,
            sender,
            sender_comm: cstr(&s.sender_comm),
            sender_uid: s.sender_uid,
        });
    }

    /// A signal taken by its target: a terminating signal caught by a handler is remembered,
    /// so that the exit the handler makes is told as its consequence.
    pub fn on_deliver(&mut self, d: &SignalDeliver) {
        let pid = d.header.pid;
        if d.disposition != DISPOSITION_HANDLER || !terminates_by_default(d.sig) {
            return;
        }
        // The sender is the generation's (the delivery has none); one from the process
        // itself (raise, abort) is not a reason it ended.
        let Some(note) = self
            .signals
            .get(&pid)
            .and_then(|notes| notes.iter().rev().find(|n| n.sig == d.sig))
            .filter(|n| n.sender.pid != pid)
            .cloned()
        else {
            return;
        };
        if self.handled.len() >= NOTE_TARGETS && !self.handled.contains_key(&pid) {
            self.handled.clear();
        }
        self.handled.insert(
            pid,
            HandledNote {
                note,
                at_ns: d.header.ts_ns,
            },
        );
    }

    pub fn on_oom(&mut self, o: &Oom, anon_rss_kb: Option<u64>, total_vm_kb: Option<u64>) {
        if self.ooms.len() >= NOTE_TARGETS {
            self.ooms.clear();
        }
        self.ooms.insert(
            o.header.pid,
            OomCause {
                trigger_pid: o.trigger_pid,
                trigger_comm: cstr(&o.trigger_comm),
                anon_rss_kb,
                total_vm_kb,
                memcg_id: (o.memcg_id != 0).then_some(o.memcg_id),
            },
        );
    }

    fn who(&self, pid: u32) -> ProcIdOrPid {
        let p = self.table.get(pid).filter(|p| !p.exited);
        ProcIdOrPid {
            pid,
            id: p.map(|p| p.id),
            session: p.and_then(|p| p.session),
        }
    }

    /// The cause of an exit (call before [`Attributor::on_exit_done`]).
    pub fn cause(&mut self, e: &Exit) -> Cause {
        let pid = e.header.pid;
        let notes = self.signals.remove(&pid).unwrap_or_default();
        let handled = self.handled.remove(&pid);
        let oom = self.ooms.remove(&pid);
        let victim_session = self.table.get(pid).and_then(|p| p.session);
        let signal = match WaitStatus::decode(e.exit_status) {
            WaitStatus::Exited(code) => {
                let after = |h: &HandledNote| e.header.ts_ns.saturating_sub(h.at_ns);
                return match handled {
                    Some(h)
                        if (i32::from(code) == 128 + h.note.sig
                            && after(&h) <= HANDLED_CONVENTIONAL_EXIT_NS)
                            || after(&h) <= HANDLED_ANY_EXIT_NS =>
                    {
                        Cause {
                            cause: CauseKind::Terminated,
                            killed_by: Some(self.killed_by(&h.note, victim_session, true)),
                            oom: None,
                        }
                    }
                    _ => Cause::only(CauseKind::Exited),
                };
            }
            WaitStatus::Signaled { signal, .. } => i32::from(signal),
        };
        if let Some(oom) = oom {
            return Cause {
                cause: CauseKind::OomKilled,
                killed_by: None,
                oom: Some(oom),
            };
        }
        // The last note of the signal that killed it.
        let note = notes.iter().rev().find(|n| n.sig == signal);
        let from_self = note.is_some_and(|n| n.sender.pid == pid);
        let from_kernel = note.is_some_and(|n| n.si_code > 0 || n.si_code == SI_KERNEL);
        if CRASH_SIGNALS.contains(&signal) && (note.is_none() || from_self || from_kernel) {
            return Cause::only(CauseKind::Crashed);
        }
        // A handler that re-raised the signal it caught (clean up, restore the default,
        // `raise`): the process that sent it first is the one that killed it.
        if let Some(h) = handled.filter(|h| h.note.sig == signal && (note.is_none() || from_self)) {
            return Cause {
                cause: CauseKind::Killed,
                killed_by: Some(self.killed_by(&h.note, victim_session, true)),
                oom: None,
            };
        }
        let Some(note) = note else {
            return Cause::only(CauseKind::Killed);
        };
        if note.si_code == SI_KERNEL {
            return Cause::only(CauseKind::KilledByKernel);
        }
        Cause {
            cause: CauseKind::Killed,
            killed_by: Some(self.killed_by(note, victim_session, false)),
            oom: None,
        }
    }

    fn killed_by(&self, note: &SignalNote, victim: Option<SessionIdx>, handled: bool) -> KilledBy {
        KilledBy {
            pid: note.sender.pid,
            comm: note.sender_comm.clone(),
            uid: note.sender_uid,
            proc_id: note.sender.id.map(|id| id.to_string()),
            session_id: note.sender.session.map(|s| self.session_id(s)),
            same_session: victim.is_some() && note.sender.session == victim,
            signal: note.sig,
            si_code: note.si_code,
            handled,
        }
    }

    /// The process's own peak when the kernel could not read its mm: `signal->maxrss` is
    /// its own only if it grew past what exec carried over.
    pub fn own_peak_fallback(&self, e: &Exit, peak_kb: u64) -> Option<u64> {
        let baseline = self.table.get(e.header.pid)?.exec_maxrss_kb?;
        (peak_kb > baseline).then_some(peak_kb)
    }

    /// An exit of a process the table never saw (it was forked and exec'd while no agent
    /// read the kernel's records, e.g. a backlog drained after a restart): it is added as a
    /// child of its parent, so it inherits the parent's session.
    pub fn on_exit_unknown(&mut self, e: &Exit) {
        let id = ProcId {
            pid: e.header.pid,
            start: ns_to_ticks(e.start_boottime_ns),
        };
        if self.table.by_id(id).is_none() {
            self.table.fork(id, e.ppid, cstr(&e.header.comm));
        }
    }

    pub fn on_exit_done(&mut self, e: &Exit) {
        self.table.exit(ProcId {
            pid: e.header.pid,
            start: ns_to_ticks(e.start_boottime_ns),
        });
    }

    fn session_id(&self, idx: SessionIdx) -> String {
        self.sessions
            .get(idx)
            .map(|s| s.root.to_string())
            .unwrap_or_default()
    }

    /// The attribution of process `pid` now.
    pub fn attr(&mut self, pid: u32) -> Attr {
        let Some(p) = self.table.get(pid) else {
            return Attr {
                proc_id: None,
                session: None,
                ancestry: None,
                tool_call: None,
            };
        };
        let proc_id = Some(p.id.to_string());
        let session = p.session;
        let tool_call = self.tool_call_of(pid);
        let Some(idx) = session else {
            return Attr {
                proc_id,
                session: None,
                ancestry: None,
                tool_call,
            };
        };
        let ancestry = Some(self.table.ancestry(pid));
        self.refresh_registry(idx);
        let s = &self.sessions[idx];
        let root_start_ns = crate::pipeline::proctable::ticks_to_ns(s.root.start);
        Attr {
            proc_id,
            session: Some(SessionJson {
                id: s.root.to_string(),
                agent: s.agent.clone(),
                root_pid: s.root.pid,
                root_start: self.clock.rfc3339(root_start_ns),
                cwd: s.cwd.clone(),
                claude_session_id: s.claude_session_id.clone(),
                version: s.version.clone(),
            }),
            ancestry,
            tool_call,
        }
    }

    /// Session id and cwd from the registry, once it has an entry for the root process.
    fn refresh_registry(&mut self, idx: SessionIdx) {
        let s = &mut self.sessions[idx];
        if s.agent != crate::claude::CLAUDE_CODE {
            return;
        }
        // The environment read at detection can miss: npm's `#!/usr/bin/env node` runs two
        // execs in a row, and /proc/PID/environ read across the second one fails. Read it
        // again (a few times at most) while the session has no registry entry yet.
        if s.own_config.is_none() && s.claude_session_id.is_none() && s.environ_reads < 8 {
            s.environ_reads += 1;
            s.own_config = read_own_config(s.root.pid);
        }
        let own: &[PathBuf] = s.own_config.as_slice();
        let started_ms = self
            .clock
            .wall(crate::pipeline::proctable::ticks_to_ns(s.root.start))
            .timestamp_millis();
        let started = Some(started_ms);
        let mut found = self
            .registry
            .find(s.root.pid, s.root.start, started, own, s.uid);
        if found.is_none()
            && s.claude_session_id.is_none()
            && self.registry_built.elapsed() >= REGISTRY_REBUILD
        {
            self.registry = default_registry();
            self.registry_built = std::time::Instant::now();
            found = self
                .registry
                .find(s.root.pid, s.root.start, started, own, s.uid);
        }
        if let Some(info) = found {
            s.claude_session_id = Some(info.session_id);
            s.cwd = Some(info.cwd.display().to_string());
            s.config_dir = Some(info.config_dir);
            if info.version.is_some() {
                s.version = info.version;
            }
        }
    }
}

/// The facts session detection sees for an exec record.
///
/// /proc's while the process lives: it has the resolved executable (the native installer's
/// `~/.local/bin/claude` is a symlink to `…/claude/versions/<semver>`) and the whole command
/// line. When the process is gone by the time the record is read, or is a zombie (its /proc
/// shows neither exe nor cmdline), the record's own: the new comm, the path given to execve
/// as the exe, and the arguments the kernel captured whole (also when /proc's cmdline is
/// empty, as it is for a moment during a later execve).
///
/// Either way argv\[0\] is the kernel's when it captured a whole one. argv\[0\] is what
/// tells Claude Code's `rg` helper (the session's own exe and comm) from a session, and the
/// captured one belongs to this very exec, while /proc is read later and may by then describe
/// another image (the process exec'd again), another process (the pid was reused) or a title
/// the process set itself. The rest of the command line stays /proc's, which is not cut at
/// [`monitor_common::ARGS_LEN`] bytes.
fn exec_facts(
    pid: u32,
    comm: String,
    filename: String,
    proc: Option<ProcFacts>,
    captured: Option<&ExecArgv>,
) -> ProcFacts {
    let whole = captured.map_or(&[][..], ExecArgv::whole);
    let mut facts = match proc {
        Some(f) if f.exe.is_some() => f,
        _ => ProcFacts {
            pid,
            comm,
            exe: (!filename.is_empty()).then(|| filename.into()),
            argv: whole.to_vec(),
        },
    };
    match (facts.argv.first_mut(), whole.first()) {
        (Some(a), Some(arg0)) => a.clone_from(arg0),
        (None, _) => facts.argv = whole.to_vec(),
        (Some(_), None) => {}
    }
    facts
}

impl Session {
    /// The Bash call of this session's transcript that a wrapper with `script` runs (see
    /// [`TranscriptTail::match_command`]), reading what the transcript gained meanwhile.
    fn match_tool(
        &mut self,
        script: &WrapperScript,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Option<ToolCallRef> {
        let (Some(config), Some(cwd), Some(sid)) =
            (&self.config_dir, &self.cwd, &self.claude_session_id)
        else {
            tracing::debug!(session = %self.root, "no registry entry yet: no transcript to match tools in");
            return None;
        };
        let Some(path) = transcript::locate(config, std::path::Path::new(cwd), sid) else {
            tracing::debug!(session = %self.root, "no transcript found yet");
            return None;
        };
        if self.transcript.as_ref().is_none_or(|t| t.path() != path) {
            self.transcript = Some(TranscriptTail::new(path));
        }
        let tail = self.transcript.as_mut()?;
        if let Err(e) = tail.poll() {
            tracing::debug!("transcript {}: {e}", tail.path().display());
            return None;
        }
        let claimed = &self.claimed;
        let call = match script {
            WrapperScript::Whole(script) => tail.match_command(script, Some(started)),
            WrapperScript::Cut => {
                tail.match_unclaimed(Some(started), &|id| claimed.iter().any(|c| c == id))
            }
        }
        .map(|c| ToolCallRef {
            id: c.id.clone(),
            name: c.name.clone(),
            command: c.command.clone(),
        })?;
        if self.claimed.len() >= CLAIMED_MAX {
            self.claimed.pop_front();
        }
        self.claimed.push_back(call.id.clone());
        Some(call)
    }
}

/// The script of a shell run as `SHELL [OPTIONS] -c SCRIPT …` (options may come before or
/// after `-c`, or be clustered with it: `-lc`), when it looks like a tool wrapper: it
/// mentions `eval` or a quoted word (see [`TranscriptTail::match_command`]).
fn shell_script(argv: &[String]) -> Option<&str> {
    let mut c = false;
    for arg in argv.iter().skip(1) {
        if arg == "--" {
            continue;
        }
        if let Some(opts) = arg.strip_prefix('-').filter(|o| !o.starts_with('-')) {
            c |= opts.contains('c');
            continue;
        }
        if arg.starts_with("--") {
            continue;
        }
        return (c && (arg.contains("eval") || arg.contains('\''))).then_some(arg.as_str());
    }
    None
}

/// Whether `argv` runs a shell script: `SHELL [OPTIONS] -c …` (the script itself may be cut).
fn runs_shell_c(argv: &[String]) -> bool {
    argv.iter()
        .skip(1)
        .take_while(|a| a.starts_with('-'))
        .any(|a| !a.starts_with("--") && a[1..].contains('c'))
}

/// The configuration directory the environment of process `pid` names
/// ([`environ::config_dir_of`]), when it can be read.
fn read_own_config(pid: u32) -> Option<PathBuf> {
    environ::read_vars(pid, environ::CONFIG_VARS)
        .ok()
        .and_then(|vars| environ::config_dir_of(&vars))
}

/// Signals whose default action ends the process: caught by a handler, the exit that
/// follows is still their doing.
fn terminates_by_default(sig: i32) -> bool {
    matches!(
        crate::signals::explain::default_action(sig),
        Some(DefaultAction::Terminate | DefaultAction::Core)
    )
}

/// The registry directories of every user on this host.
pub fn default_registry() -> Registry {
    let config_dir = std::env::var_os("CLAUDE_CONFIG_DIR").map(std::path::PathBuf::from);
    Registry::new(registry::default_dirs(
        &registry::candidate_homes(),
        config_dir.as_deref(),
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const SESSION_EXE: &str = "/home/u/.local/share/claude/versions/9.9.9";

    fn captured(argv: &[&str], truncated: bool) -> ExecArgv {
        ExecArgv {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            truncated,
        }
    }

    fn proc_facts(exe: Option<&str>, comm: &str, argv: &[&str]) -> ProcFacts {
        ProcFacts {
            pid: 7,
            comm: comm.into(),
            exe: exe.map(PathBuf::from),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn facts(proc: Option<ProcFacts>, captured: Option<&ExecArgv>) -> ProcFacts {
        exec_facts(7, "9.9.9".into(), SESSION_EXE.into(), proc, captured)
    }

    /// The flaky case: Claude Code's `rg` helper gone before /proc could be read.
    #[test]
    fn gone_rg_helper_is_not_a_session() {
        let rg = captured(&["rg", "--files", "/home/u/src"], false);
        let f = facts(None, Some(&rg));
        assert_eq!(f.exe.as_deref(), Some(std::path::Path::new(SESSION_EXE)));
        assert_eq!(f.comm, "9.9.9");
        assert_eq!(f.argv, ["rg", "--files", "/home/u/src"]);
        assert_eq!(detect::detect_claude_code(&f), None);
        // A zombie's /proc (comm only) is no better than none.
        let zombie = proc_facts(None, "9.9.9", &[]);
        let f = facts(Some(zombie), Some(&rg));
        assert_eq!(f.argv[0], "rg");
        assert_eq!(detect::detect_claude_code(&f), None);
        // While a gone session is still one.
        let session = captured(&["claude", "-p", "hi"], false);
        let f = facts(None, Some(&session));
        assert!(detect::detect_claude_code(&f).is_some());
    }

    #[test]
    fn gone_process_keeps_only_whole_arguments() {
        let cut = captured(&["bash", "-c", "source /tmp/snap && ev"], true);
        let f = facts(None, Some(&cut));
        assert_eq!(f.argv, ["bash", "-c"]);
        // Nothing captured, nothing readable: the record's comm and path alone.
        let f = exec_facts(7, "true".into(), String::new(), None, None);
        assert_eq!(f, proc_facts(None, "true", &[]));
        assert_eq!(f.pid, 7);
    }

    #[test]
    fn live_process_keeps_proc_facts_but_the_captured_argv0() {
        let live = proc_facts(Some(SESSION_EXE), "9.9.9", &["claude", "--resume", "x"]);
        // Nothing captured: /proc as it is.
        assert_eq!(facts(Some(live.clone()), None), live);
        // The same argv[0]: unchanged.
        let same = captured(&["claude", "--res"], true);
        assert_eq!(facts(Some(live.clone()), Some(&same)), live);
        // /proc shows another argv[0] than the exec had (a rewritten title, a later
        // exec): the exec's wins, the rest stays /proc's, which is not cut.
        let rg = captured(&["rg", "-n"], true);
        let f = facts(Some(live.clone()), Some(&rg));
        assert_eq!(f.argv, ["rg", "--resume", "x"]);
        assert_eq!(f.exe, live.exe);
        assert_eq!(detect::detect_claude_code(&f), None);
        // /proc's cmdline empty (caught while exec'ing again): the captured arguments.
        let empty = proc_facts(Some(SESSION_EXE), "9.9.9", &[]);
        let f = facts(Some(empty), Some(&captured(&["rg", "x"], false)));
        assert_eq!(f.argv, ["rg", "x"]);
        // An argv[0] cut short is not used.
        let partial = captured(&["r"], true);
        assert_eq!(facts(Some(live.clone()), Some(&partial)), live);
    }

    /// The wire records are plain integers and byte arrays, so all-zero is a valid value;
    /// tests set the fields they need (and keep compiling when fields are added).
    fn zeroed<T: Copy>() -> T {
        // SAFETY: only used for monitor_common's #[repr(C)] records, which hold integers
        // and integer arrays only.
        unsafe { std::mem::zeroed() }
    }

    const SEC: u64 = 1_000_000_000;
    /// The session root, a tool process in it, a process outside.
    const ROOT: u32 = 100;
    const TOOL: u32 = 101;
    const OUTSIDER: u32 = 900;

    fn attributor() -> Attributor {
        let mut a = Attributor::new(
            Detector::new(Vec::new()).expect("no rules"),
            Registry::new(Vec::new()),
            Clock::fixed(0),
            4,
        );
        a.table.insert_existing(
            ProcId {
                pid: ROOT,
                start: 1,
            },
            1,
            "claude".into(),
        );
        a.table.insert_existing(
            ProcId {
                pid: OUTSIDER,
                start: 2,
            },
            1,
            "bash".into(),
        );
        a.sessions.push(Session {
            agent: crate::claude::CLAUDE_CODE.into(),
            root: ProcId {
                pid: ROOT,
                start: 1,
            },
            version: None,
            rule: "test".into(),
            cwd: None,
            claude_session_id: None,
            config_dir: None,
            own_config: None,
            uid: None,
            environ_reads: 0,
            transcript: None,
            claimed: VecDeque::new(),
        });
        a.table.set_session(ROOT, 0);
        a.table.fork(
            ProcId {
                pid: TOOL,
                start: 3,
            },
            ROOT,
            "bash".into(),
        );
        a
    }

    fn signal(a: &mut Attributor, target: u32, sender: u32, sig: i32, si_code: i32) {
        let mut s: Signal = zeroed();
        s.header.pid = target;
        s.sig = sig;
        s.si_code = si_code;
        s.sender_pid = sender;
        s.sender_comm[..4].copy_from_slice(b"bash");
        a.on_signal(&s);
    }

    fn deliver(a: &mut Attributor, target: u32, sig: i32, disposition: u32, at: u64) {
        let mut d: SignalDeliver = zeroed();
        d.header.pid = target;
        d.header.ts_ns = at;
        d.sig = sig;
        d.disposition = disposition;
        a.on_deliver(&d);
    }

    /// `status` as wait(2) encodes it: `code << 8`, or the signal number.
    fn exit(a: &mut Attributor, pid: u32, status: u32, at: u64) -> Cause {
        let mut e: Exit = zeroed();
        e.header.pid = pid;
        e.header.ts_ns = at;
        e.exit_status = status;
        a.cause(&e)
    }

    fn code(c: u32) -> u32 {
        c << 8
    }

    /// (cause, sender pid, signal, same_session, handled) of a cause, for compact tables.
    fn brief(c: &Cause) -> (&'static str, Option<(u32, i32, bool, bool)>) {
        (
            c.cause.as_str(),
            c.killed_by
                .as_ref()
                .map(|k| (k.pid, k.signal, k.same_session, k.handled)),
        )
    }

    #[test]
    fn cause_table() {
        use monitor_common::{DISPOSITION_DEFAULT, DISPOSITION_IGNORED};
        const SI_USER: i32 = 0;
        const SEGV_MAPERR: i32 = 1;
        // (what, events before the exit, exit status, exit time, expected)
        type Setup = fn(&mut Attributor);
        type Expected = (&'static str, Option<(u32, i32, bool, bool)>);
        let cases: &[(&str, Setup, u32, u64, Expected)] = &[
            ("plain exit", |_| {}, code(0), SEC, ("exited", None)),
            (
                "exit code, no signal",
                |_| {},
                code(143),
                SEC,
                ("exited", None),
            ),
            (
                "SIGTERM from outside, default action",
                |a| {
                    signal(a, TOOL, OUTSIDER, 15, SI_USER);
                    deliver(a, TOOL, 15, DISPOSITION_DEFAULT, SEC / 2);
                },
                15,
                SEC,
                ("killed", Some((OUTSIDER, 15, false, false))),
            ),
            (
                "SIGKILL from the session root",
                |a| signal(a, TOOL, ROOT, 9, SI_USER),
                9,
                SEC,
                ("killed", Some((ROOT, 9, true, false))),
            ),
            ("SIGKILL, no sender seen", |_| {}, 9, SEC, ("killed", None)),
            (
                "SIGKILL from the kernel",
                |a| signal(a, TOOL, OUTSIDER, 9, SI_KERNEL),
                9,
                SEC,
                ("killed_by_kernel", None),
            ),
            (
                "SIGSEGV from a fault",
                |a| signal(a, TOOL, TOOL, 11, SEGV_MAPERR),
                11,
                SEC,
                ("crashed", None),
            ),
            (
                "SIGABRT, no record",
                |_| {},
                6 | 0x80,
                SEC,
                ("crashed", None),
            ),
            (
                "SIGSEGV sent by another process",
                |a| signal(a, TOOL, OUTSIDER, 11, SI_USER),
                11,
                SEC,
                ("killed", Some((OUTSIDER, 11, false, false))),
            ),
            (
                "OOM kill",
                |a| {
                    let mut o: Oom = zeroed();
                    o.header.pid = TOOL;
                    a.on_oom(&o, Some(1), Some(2));
                    signal(a, TOOL, OUTSIDER, 9, SI_KERNEL);
                },
                9,
                SEC,
                ("oom_killed", None),
            ),
            (
                "handled SIGTERM, exit 143 (the real CLI)",
                |a| {
                    signal(a, ROOT, OUTSIDER, 15, SI_USER);
                    deliver(a, ROOT, 15, DISPOSITION_HANDLER, SEC);
                },
                code(143),
                SEC + SEC / 10,
                ("terminated", Some((OUTSIDER, 15, false, true))),
            ),
            (
                "handled SIGTERM, exit 143 after 30 s of clean-up",
                |a| {
                    signal(a, ROOT, OUTSIDER, 15, SI_USER);
                    deliver(a, ROOT, 15, DISPOSITION_HANDLER, SEC);
                },
                code(143),
                31 * SEC,
                ("terminated", Some((OUTSIDER, 15, false, true))),
            ),
            (
                "handled SIGTERM, exit 143 after more than a minute",
                |a| {
                    signal(a, ROOT, OUTSIDER, 15, SI_USER);
                    deliver(a, ROOT, 15, DISPOSITION_HANDLER, SEC);
                },
                code(143),
                62 * SEC,
                ("exited", None),
            ),
            (
                "handled SIGINT, exit 0 at once",
                |a| {
                    signal(a, TOOL, ROOT, 2, SI_USER);
                    deliver(a, TOOL, 2, DISPOSITION_HANDLER, SEC);
                },
                code(0),
                2 * SEC,
                ("terminated", Some((ROOT, 2, true, true))),
            ),
            (
                "handled SIGINT, exit 0 much later: its own decision",
                |a| {
                    signal(a, TOOL, ROOT, 2, SI_USER);
                    deliver(a, TOOL, 2, DISPOSITION_HANDLER, SEC);
                },
                code(0),
                10 * SEC,
                ("exited", None),
            ),
            (
                "handled SIGTERM it sent itself",
                |a| {
                    signal(a, TOOL, TOOL, 15, SI_USER);
                    deliver(a, TOOL, 15, DISPOSITION_HANDLER, SEC);
                },
                code(143),
                SEC,
                ("exited", None),
            ),
            (
                "ignored SIGTERM, then an exit",
                |a| {
                    signal(a, TOOL, OUTSIDER, 15, SI_USER);
                    deliver(a, TOOL, 15, DISPOSITION_IGNORED, SEC);
                },
                code(143),
                SEC,
                ("exited", None),
            ),
            (
                "handled SIGCHLD (not a terminating signal)",
                |a| {
                    signal(a, TOOL, OUTSIDER, 17, SI_USER);
                    deliver(a, TOOL, 17, DISPOSITION_HANDLER, SEC);
                },
                code(0),
                SEC,
                ("exited", None),
            ),
            (
                "handled SIGTERM, cleaned up, re-raised",
                |a| {
                    signal(a, TOOL, OUTSIDER, 15, SI_USER);
                    deliver(a, TOOL, 15, DISPOSITION_HANDLER, SEC);
                    signal(a, TOOL, TOOL, 15, SI_USER);
                    deliver(a, TOOL, 15, DISPOSITION_DEFAULT, SEC);
                },
                15,
                SEC,
                ("killed", Some((OUTSIDER, 15, false, true))),
            ),
            (
                "handled SIGTERM, then killed by another SIGKILL",
                |a| {
                    signal(a, TOOL, OUTSIDER, 15, SI_USER);
                    deliver(a, TOOL, 15, DISPOSITION_HANDLER, SEC);
                    signal(a, TOOL, ROOT, 9, SI_USER);
                },
                9,
                SEC,
                ("killed", Some((ROOT, 9, true, false))),
            ),
        ];
        for (what, setup, status, at, expected) in cases {
            let mut a = attributor();
            setup(&mut a);
            let pid = [ROOT, TOOL]
                .into_iter()
                .find(|&p| a.signals.contains_key(&p) || a.ooms.contains_key(&p))
                .unwrap_or(TOOL);
            let cause = exit(&mut a, pid, *status, *at);
            assert_eq!(brief(&cause), *expected, "{what}: {cause:?}");
            // Nothing about the process is left behind for its successor.
            assert!(
                !a.signals.contains_key(&pid) && !a.handled.contains_key(&pid),
                "{what}"
            );
        }
    }

    /// The handled signal is told with its sender's identity, as a kill is.
    #[test]
    fn a_handled_termination_names_the_sender() {
        let mut a = attributor();
        signal(&mut a, ROOT, OUTSIDER, 15, 0);
        deliver(&mut a, ROOT, 15, DISPOSITION_HANDLER, SEC);
        let cause = exit(&mut a, ROOT, code(143), SEC);
        let k = cause.killed_by.expect("sender");
        assert_eq!(
            (
                k.comm.as_str(),
                k.proc_id.as_deref(),
                k.session_id,
                k.si_code
            ),
            ("bash", Some("900:2"), None, 0)
        );
        assert!(cause.oom.is_none());
    }

    /// A session with an empty transcript and a tool wrapper `TOOL` (started
    /// 2026-11-21T14:00:00.03Z) running `sleep 1; exit 3`, not matched yet; and the
    /// transcript lines the CLI writes late for it.
    fn late_tool_session(home: &crate::testutil::TempDir) -> (Attributor, PathBuf, String) {
        let script = "source /h/.claude/shell-snapshots/snapshot-bash-1-x.sh 2>/dev/null || \
                      true && eval 'sleep 1; exit 3' < /dev/null && pwd -P >| /tmp/claude-1-cwd";
        late_tool_session_with(home, &["/bin/bash", "-c", script], true)
    }

    /// [`late_tool_session`] with the wrapper's argv as the agent read it.
    fn late_tool_session_with(
        home: &crate::testutil::TempDir,
        argv: &[&str],
        argv_whole: bool,
    ) -> (Attributor, PathBuf, String) {
        let config = home.path().join(".claude");
        let sid = "3f2a9c1e-0000-4000-8000-000000000001";
        let cwd = "/w/app";
        let transcript = config
            .join("projects")
            .join(transcript::project_dir_name(std::path::Path::new(cwd)))
            .join(format!("{sid}.jsonl"));
        std::fs::create_dir_all(transcript.parent().expect("dir")).expect("mkdir");
        std::fs::write(&transcript, "").expect("empty transcript");
        let mut a = attributor();
        let s = &mut a.sessions[0];
        s.claude_session_id = Some(sid.into());
        s.cwd = Some(cwd.into());
        s.config_dir = Some(config.clone());
        // The clock makes the wrapper's start (tick 3) 2026-11-21T14:00:00.03Z.
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-21T14:00:00Z")
            .expect("ts")
            .timestamp_nanos_opt()
            .expect("ns");
        a.clock = Clock::fixed(i128::from(start));
        let facts = ProcFacts {
            pid: TOOL,
            comm: "bash".into(),
            exe: Some("/usr/bin/bash".into()),
            argv: argv.iter().map(|a| a.to_string()).collect(),
        };
        a.maybe_tool_call(TOOL, &facts, argv_whole);
        let lines = [
            serde_json::json!({"type":"assistant","timestamp":"2026-11-21T14:00:00.010Z",
                "message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01X",
                "name":"Bash","input":{"command":"sleep 1; exit 3"}}]}}),
            serde_json::json!({"type":"user","timestamp":"2026-11-21T14:00:01.100Z",
                "message":{"role":"user","content":[{"type":"tool_result",
                "tool_use_id":"toolu_01X","content":"","is_error":true}]}}),
        ]
        .map(|l| l.to_string() + "\n")
        .concat();
        (a, transcript, lines)
    }

    /// The CLI writes a call to its transcript asynchronously: the wrapper starts before
    /// the call is there, and its processes (and itself) still get it on later events; a
    /// child forked before the match gets it too.
    #[test]
    fn a_tool_call_written_after_its_wrapper_started_is_still_found() {
        let home = crate::testutil::TempDir::new("attr-tool");
        let (mut a, transcript, lines) = late_tool_session(&home);
        assert_eq!(a.attr(TOOL).tool_call, None, "not in the transcript yet");
        a.table
            .fork(ProcId { pid: 102, start: 4 }, TOOL, "sleep".into());
        assert_eq!(a.attr(102).tool_call, None);
        // The call and its result arrive together, after the wrapper started.
        std::fs::write(&transcript, lines).expect("transcript");
        let call = a.attr(102).tool_call.expect("found through the wrapper");
        assert_eq!(
            (
                call.id.as_str(),
                call.name.as_str(),
                call.command.as_deref()
            ),
            ("toolu_01X", "Bash", Some("sleep 1; exit 3"))
        );
        assert_eq!(a.attr(TOOL).tool_call, Some(call.clone()));
        // A child forked from now on inherits it at fork.
        a.table
            .fork(ProcId { pid: 103, start: 5 }, TOOL, "true".into());
        assert_eq!(
            a.table.get(103).and_then(|p| p.tool_call.clone()),
            Some(call)
        );
        // Processes outside the tool's tree never get it.
        assert_eq!(a.attr(ROOT).tool_call, None);
        assert_eq!(a.attr(OUTSIDER).tool_call, None);
    }

    /// A wrapper of a few milliseconds: gone before /proc was read, its captured argv cut
    /// before the command. It is still a wrapper (a `-c` shell the session's root started),
    /// matched by time to the one unclaimed Bash call; never when the capture was whole
    /// (then its script decides), nor below the root's children, nor among several calls.
    #[test]
    fn a_wrapper_cut_short_is_matched_by_time() {
        let cut = [
            "/bin/bash",
            "-c",
            "source /tmp/cm-cli-1-nothome/home/.claude/shell-snaps",
        ];
        let home = crate::testutil::TempDir::new("attr-cut");
        let (mut a, transcript, lines) = late_tool_session_with(&home, &cut, false);
        assert_eq!(
            a.pending_wrapper(TOOL),
            Some(ProcId {
                pid: TOOL,
                start: 3
            })
        );
        std::fs::write(&transcript, &lines).expect("transcript");
        let call = a.attr(TOOL).tool_call.expect("matched by time");
        assert_eq!(call.id, "toolu_01X");

        // A complete argv that does not look like a wrapper is no wrapper.
        let home = crate::testutil::TempDir::new("attr-cut-whole");
        let (a, _, _) = late_tool_session_with(&home, &["/bin/sh", "-c", "exit 3"], true);
        assert_eq!(a.pending_wrapper(TOOL), None);

        // Two calls in flight: which is which cannot be told by time.
        let home = crate::testutil::TempDir::new("attr-cut-two");
        let (mut a, transcript, _) = late_tool_session_with(&home, &cut, false);
        let tool_use = |id: &str| {
            serde_json::json!({"type":"assistant","timestamp":"2026-11-21T14:00:00.010Z",
                "message":{"role":"assistant","content":[{"type":"tool_use","id":id,
                "name":"Bash","input":{"command":"make"}}]}})
            .to_string()
                + "\n"
        };
        std::fs::write(&transcript, tool_use("toolu_A") + &tool_use("toolu_B")).expect("w");
        assert_eq!(a.attr(TOOL).tool_call, None);
        // Once one of them is claimed by another wrapper, the other is this one's.
        a.sessions[0].claimed.push_back("toolu_A".into());
        assert_eq!(a.attr(TOOL).tool_call.map(|c| c.id), Some("toolu_B".into()));

        // A cut `-c` shell deeper in a tool's tree is not a wrapper of its own.
        let home = crate::testutil::TempDir::new("attr-cut-deep");
        let (mut a, _, _) = late_tool_session_with(&home, &["/bin/bash", "-c", "true"], true);
        a.table
            .fork(ProcId { pid: 102, start: 4 }, TOOL, "bash".into());
        let facts = ProcFacts {
            pid: 102,
            comm: "bash".into(),
            exe: None,
            argv: cut.map(String::from).to_vec(),
        };
        a.maybe_tool_call(102, &facts, false);
        assert_eq!(a.pending_wrapper(102), None);
    }

    use crate::event::Event;

    fn event_of(a: &mut Attributor, pid: u32, count: u64) -> Event {
        let mut e = Event::new(
            String::new(),
            pid,
            "x".into(),
            crate::event::Body::Lost(crate::event::Lost {
                count,
                reason: crate::event::LostReason::DecodeError,
            }),
        );
        e.attr = Some(a.attr(pid));
        e
    }

    fn counts(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .map(|e| match &e.body {
                crate::event::Body::Lost(l) => l.count,
                _ => 0,
            })
            .collect()
    }

    /// The engine's hold: events of a tool whose call is not written yet wait for it, go
    /// out in their order with the call once it is there, and a wrapper whose call never
    /// comes is given up at its deadline (its events go out unchanged, later ones at once).
    #[test]
    fn held_tool_events_get_the_call_written_late() {
        use crate::pipeline::hold::{HOLD_FOR, Hold, RETRY_EVERY};
        let home = crate::testutil::TempDir::new("attr-hold");
        let (mut a, transcript, lines) = late_tool_session(&home);
        a.table
            .fork(ProcId { pid: 102, start: 4 }, TOOL, "sleep".into());
        let wrapper = a.pending_wrapper(102).expect("pending through its parent");
        assert_eq!(wrapper.pid, TOOL);
        assert_eq!(a.pending_wrapper(ROOT), None, "the root is no tool");
        assert_eq!(a.pending_wrapper(OUTSIDER), None);
        let mut hold = Hold::default();
        let t0 = std::time::Instant::now();
        for (pid, n) in [(TOOL, 1), (102, 2), (TOOL, 3)] {
            let e = event_of(&mut a, pid, n);
            assert!(hold.hold(wrapper, e, t0).is_none());
        }
        assert!(hold.release(&mut a, t0 + RETRY_EVERY, false).is_empty());
        std::fs::write(&transcript, lines).expect("transcript");
        // Not looked for again before RETRY_EVERY has passed.
        assert!(hold.release(&mut a, t0 + RETRY_EVERY, false).is_empty());
        let out = hold.release(&mut a, t0 + RETRY_EVERY * 2, false);
        assert_eq!(counts(&out), [1, 2, 3]);
        for e in &out {
            let call = e.attr.as_ref().and_then(|a| a.tool_call.as_ref());
            assert_eq!(call.map(|c| c.id.as_str()), Some("toolu_01X"), "{e:?}");
        }
        assert!(hold.is_empty());
        assert_eq!(
            a.pending_wrapper(102),
            None,
            "matched: nothing more is held"
        );

        // A wrapper whose call never comes.
        let home2 = crate::testutil::TempDir::new("attr-hold-never");
        let (mut a, _transcript, _lines) = late_tool_session(&home2);
        let e = event_of(&mut a, TOOL, 7);
        assert!(hold.hold(wrapper, e, t0).is_none());
        assert!(hold.release(&mut a, t0 + HOLD_FOR / 2, false).is_empty());
        let out = hold.release(&mut a, t0 + HOLD_FOR, false);
        assert_eq!(counts(&out), [7]);
        assert_eq!(out[0].attr.as_ref().and_then(|a| a.tool_call.clone()), None);
        assert_eq!(a.pending_wrapper(TOOL), None, "given up");
    }

    /// The hold is bounded: beyond HELD_MAX events the oldest goes out unchanged.
    #[test]
    fn the_hold_is_bounded() {
        use crate::pipeline::hold::{HELD_MAX, Hold};
        let home = crate::testutil::TempDir::new("attr-hold-bound");
        let (mut a, _transcript, _lines) = late_tool_session(&home);
        let wrapper = a.pending_wrapper(TOOL).expect("pending");
        let mut hold = Hold::default();
        let now = std::time::Instant::now();
        let e = event_of(&mut a, TOOL, 0);
        for n in 0..HELD_MAX as u64 {
            let mut e = e.clone();
            if let crate::event::Body::Lost(l) = &mut e.body {
                l.count = n;
            }
            assert!(hold.hold(wrapper, e, now).is_none());
        }
        let out = hold.hold(wrapper, e, now).expect("the oldest goes out");
        assert_eq!(counts(&[out]), [0]);
        assert_eq!(hold.len(), HELD_MAX);
        let out = hold.release(&mut a, now, true);
        assert_eq!(out.len(), HELD_MAX, "a forced release lets everything out");
    }

    #[test]
    fn shell_scripts_of_tool_wrappers() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let w = "source s.sh && eval 'x' < /dev/null";
        assert_eq!(shell_script(&argv(&["/bin/bash", "-c", w])), Some(w));
        assert_eq!(shell_script(&argv(&["bash", "-c", "-l", w])), Some(w));
        assert_eq!(shell_script(&argv(&["zsh", "-lc", w])), Some(w));
        assert_eq!(shell_script(&argv(&["bash", "--norc", "-c", w])), Some(w));
        // Not a -c script, or nothing that could name a command.
        assert_eq!(shell_script(&argv(&["bash", w])), None);
        assert_eq!(shell_script(&argv(&["bash", "-c", "make all"])), None);
        assert_eq!(shell_script(&argv(&["bash", "-c"])), None);
    }
}

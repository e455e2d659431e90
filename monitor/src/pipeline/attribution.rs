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
mod tests;

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

use monitor_common::{Exec, ExecArgv, Exit, Fork};

use crate::{
    claude::{
        detect::{self, Detector, ProcFacts},
        environ,
        registry::{self, Registry},
        transcript::TranscriptTail,
    },
    event::{Attr, OomCause, SessionJson},
    host::clock::Clock,
    kernel::loader::KernelCandidates,
    pipeline::convert::cstr,
    pipeline::proctable::{ProcId, ProcTable, SessionIdx, ns_to_ticks},
    pipeline::scope,
};

mod cause;
mod tools;

use self::cause::{HandledNote, SignalNote};

/// A detected session: one process tree rooted at an agent's process.
pub struct Session {
    pub agent: String,
    pub root: ProcId,
    pub version: Option<String>,
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
    /// When the registry was last searched for this session ([`REGISTRY_RECHECK`]).
    registry_checked: Option<std::time::Instant>,
    /// Since when the session has had no live process (see [`Attributor::prune`]).
    ended: Option<std::time::Instant>,
}

pub use crate::event::RUN_AGENT;

impl Session {
    /// The root process's uid (`None` when it could not be read).
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// A session just detected: only what detection knows.
    fn new(
        agent: String,
        root: ProcId,
        version: Option<String>,
        own_config: Option<PathBuf>,
        uid: Option<u32>,
    ) -> Session {
        Session {
            agent,
            root,
            version,
            cwd: None,
            claude_session_id: None,
            config_dir: None,
            own_config,
            uid,
            environ_reads: 1,
            transcript: None,
            claimed: VecDeque::new(),
            registry_checked: None,
            ended: None,
        }
    }
}

/// Sessions tracked at most (live or lately ended): beyond it a new one is not tracked
/// (counted in [`Sizes::sessions_refused`]). Each costs about a kilobyte plus an open
/// transcript; a host has nowhere near this many real sessions.
pub const MAX_SESSIONS: usize = 16_384;

/// How long a session with no live process is kept (events held for a tool call and
/// reports are written a little after the last exit), and how many such at most.
const SESSION_LINGER: std::time::Duration = std::time::Duration::from_secs(30);
const ENDED_KEPT: usize = 1024;

/// How often the registry is searched again for a session: until its entry is found, at
/// most every [`REGISTRY_RECHECK_EARLY`] (each search stats one file per user), then every
/// [`REGISTRY_RECHECK`] (`/clear` rewrites the entry with a new session id).
const REGISTRY_RECHECK_EARLY: std::time::Duration = std::time::Duration::from_millis(20);
const REGISTRY_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How often at most the process table is reconciled with /proc after records were lost.
const GHOST_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The sizes of the attributor's bounded structures, for the agent's telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sizes {
    /// Sessions tracked (live and lately ended).
    pub sessions: usize,
    /// Sessions not tracked because [`MAX_SESSIONS`] were.
    pub sessions_refused: u64,
    /// Sessions forgotten after they ended.
    pub sessions_pruned: u64,
    /// Processes in the table (live and remembered dead).
    pub processes: usize,
    /// Processes marked exited by a reconciliation with /proc (their exit was lost).
    pub ghosts_reaped: u64,
    /// Pending signal, handled-signal and OOM notes.
    pub notes: usize,
}

/// Minimum time between two rebuilds of the registry's directory list.
const REGISTRY_REBUILD: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Attributor {
    table: ProcTable,
    /// By index; an index is never reused, so a process or an event that still names a
    /// forgotten session finds none rather than another one.
    sessions: std::collections::BTreeMap<SessionIdx, Session>,
    next_session: SessionIdx,
    sessions_refused: u64,
    sessions_pruned: u64,
    /// Records were lost since the last reconciliation with /proc (exits among them
    /// leave ghosts: processes the table thinks alive), and when it last ran.
    ghosts_suspected: bool,
    ghosts_checked: Option<std::time::Instant>,
    ghost_candidates: Vec<ProcId>,
    ghosts_reaped: u64,
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
    /// Applied to what is kept of command lines and tool commands.
    redactor: crate::pipeline::redact::Redactor,
}

impl Attributor {
    pub fn new(detector: Detector, registry: Registry, clock: Clock, page_kb: u64) -> Attributor {
        Attributor {
            candidates: detector.kernel_candidates(),
            table: ProcTable::new(),
            sessions: Default::default(),
            next_session: 0,
            sessions_refused: 0,
            sessions_pruned: 0,
            ghosts_suspected: false,
            ghosts_checked: None,
            ghost_candidates: Vec::new(),
            ghosts_reaped: 0,
            detector,
            registry,
            registry_built: std::time::Instant::now(),
            clock,
            page_kb,
            signals: HashMap::new(),
            handled: HashMap::new(),
            ooms: HashMap::new(),
            redactor: Default::default(),
        }
    }

    /// Redacts with `redactor` instead of the built-in rules.
    pub fn with_redactor(mut self, redactor: crate::pipeline::redact::Redactor) -> Attributor {
        self.redactor = redactor;
        self
    }

    /// Redacts with `redactor` from now on (a reloaded configuration).
    pub fn set_redactor(&mut self, redactor: crate::pipeline::redact::Redactor) {
        self.redactor = redactor;
    }

    /// The sessions tracked (live and lately ended), oldest first.
    pub fn sessions(&self) -> impl ExactSizeIterator<Item = &Session> {
        self.sessions.values()
    }

    /// The sessions tracked with their indexes, oldest first.
    pub fn sessions_indexed(&self) -> impl Iterator<Item = (SessionIdx, &Session)> {
        self.sessions.iter().map(|(&idx, s)| (idx, s))
    }

    /// A session as the events' `session` says it (without searching the registry again).
    pub fn session_json(&self, s: &Session) -> SessionJson {
        let root_start_ns = crate::pipeline::proctable::ticks_to_ns(s.root.start);
        SessionJson {
            id: s.root.to_string(),
            agent: s.agent.clone(),
            root_pid: s.root.pid,
            root_start: self.clock.rfc3339(root_start_ns),
            cwd: s.cwd.clone(),
            claude_session_id: s.claude_session_id.clone(),
            version: s.version.clone(),
        }
    }

    /// The live members (pid, comm; by pid) of each session that has any, in one pass over
    /// the process table.
    pub fn live_procs_by_session(
        &self,
    ) -> std::collections::BTreeMap<SessionIdx, Vec<(u32, String)>> {
        let mut by: std::collections::BTreeMap<SessionIdx, Vec<(u32, String)>> = Default::default();
        for p in self.table.live_members(None) {
            if let Some(idx) = p.session {
                by.entry(idx).or_default().push((p.id.pid, p.comm.clone()));
            }
        }
        for procs in by.values_mut() {
            procs.sort_unstable();
        }
        by
    }

    /// A session by index, unless it was forgotten.
    pub fn session(&self, idx: SessionIdx) -> Option<&Session> {
        self.sessions.get(&idx)
    }

    pub fn sizes(&self) -> Sizes {
        Sizes {
            sessions: self.sessions.len(),
            sessions_refused: self.sessions_refused,
            sessions_pruned: self.sessions_pruned,
            processes: self.table.len(),
            ghosts_reaped: self.ghosts_reaped,
            notes: self.signals.len() + self.handled.len() + self.ooms.len(),
        }
    }

    /// Housekeeping, once a second or so: forgets sessions that ended a while ago, and
    /// after a loss of records (`lost`), reconciles the process table with /proc.
    ///
    /// A process gone from /proc whose exit the table has not seen may have lost its exit
    /// record, or the record may still be in the ring (with its children's forks, which
    /// must still find it a live parent to inherit its session). So it is only a
    /// candidate; the next reconciliation, [`GHOST_CHECK`] later, when any record of its
    /// would long have been read, marks the candidates still not exited as exited.
    pub fn housekeeping(&mut self, now: std::time::Instant, lost: bool) {
        self.ghosts_suspected |= lost;
        let due = self
            .ghosts_checked
            .is_none_or(|t| now.duration_since(t) >= GHOST_CHECK);
        if due && !self.ghost_candidates.is_empty() {
            self.ghosts_reaped += self.table.reap(&self.ghost_candidates) as u64;
            self.ghost_candidates.clear();
            self.ghosts_checked = Some(now);
        }
        if due
            && self.ghosts_suspected
            && let Ok(stats) = scope::proc_stats()
        {
            let alive: std::collections::HashSet<ProcId> = stats
                .iter()
                .map(|s| ProcId {
                    pid: s.pid,
                    start: s.start,
                })
                .collect();
            self.ghost_candidates = self.table.missing_from(&alive);
            self.ghosts_suspected = false;
            self.ghosts_checked = Some(now);
        }
        self.prune(now);
    }

    /// Forgets the sessions without a live process for [`SESSION_LINGER`] (their
    /// transcript closed), and the oldest ended ones beyond [`ENDED_KEPT`].
    pub fn prune(&mut self, now: std::time::Instant) {
        let live = self.table.live_sessions();
        let mut ended: Vec<(std::time::Instant, SessionIdx)> = Vec::new();
        for (&idx, s) in &mut self.sessions {
            if live.contains(&idx) {
                s.ended = None;
                continue;
            }
            let since = *s.ended.get_or_insert(now);
            ended.push((since, idx));
        }
        ended.sort_unstable();
        let excess = ended.len().saturating_sub(ENDED_KEPT);
        for (i, (since, idx)) in ended.into_iter().enumerate() {
            if i < excess || now.duration_since(since) >= SESSION_LINGER {
                self.sessions.remove(&idx);
                self.sessions_pruned += 1;
            }
        }
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
            // An empty command line with an executable: caught inside execve; its exec
            // record (the hooks are attached) decides instead, with the captured argv.
            if let Ok(facts) = detect::read_proc_facts(id.pid)
                && !(facts.argv.is_empty() && facts.exe.is_some())
            {
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
            // A `run` session whose root becomes an agent becomes that agent's session.
            && p.session
                .and_then(|idx| self.sessions.get(&idx))
                .is_none_or(|s| s.agent != RUN_AGENT || detection.agent == RUN_AGENT)
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
        self.new_session(Session::new(detection.agent, id, version, own_config, uid))
    }

    /// Tracks `session`, its root marked in the table; `None` when [`MAX_SESSIONS`] are
    /// tracked (counted, said once).
    fn new_session(&mut self, session: Session) -> Option<SessionIdx> {
        if self.sessions.len() >= MAX_SESSIONS {
            self.prune(std::time::Instant::now());
        }
        if self.sessions.len() >= MAX_SESSIONS {
            if self.sessions_refused == 0 {
                tracing::warn!("{MAX_SESSIONS} sessions tracked: new ones are not, until some end");
            }
            self.sessions_refused += 1;
            return None;
        }
        let idx = self.next_session;
        self.next_session += 1;
        let root = session.root.pid;
        self.sessions.insert(idx, session);
        self.table.set_session(root, idx);
        tracing::debug!(pid = root, session = idx, "session detected");
        Some(idx)
    }

    /// Makes `pid`, a live process of `uid`, the root of a session of its own (agent
    /// [`RUN_AGENT`]): the command of a `claude-monitor run` that asked the daemon to watch
    /// it. Its id, or `None` when the process is gone or no session can be tracked. A
    /// process that is already a session's root keeps its session; when a `run` session's
    /// root then execs Claude Code, detection makes it a Claude Code session with the same
    /// id (see [`Attributor::maybe_session`]).
    pub fn watch_root(&mut self, pid: u32, uid: u32) -> Option<SessionIdx> {
        let stat = crate::host::proc::read_stat(std::path::Path::new(crate::host::proc::PROC), pid)
            .ok()
            .filter(|s| !s.zombie)?;
        let id = ProcId {
            pid,
            start: stat.start,
        };
        match self.table.get(pid) {
            Some(p) if p.id == id => {
                if p.session_root {
                    return p.session;
                }
            }
            _ => self.table.insert_existing(id, stat.ppid, stat.comm),
        }
        self.new_session(Session::new(
            RUN_AGENT.to_owned(),
            id,
            None,
            None,
            Some(uid),
        ))
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
            (x.flags & monitor_common::EXEC_FLAG_MAXRSS != 0)
                .then(|| x.maxrss_pages.checked_mul(self.page_kb))
                .flatten(),
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
            // Kept for reports: without its secrets (matching uses `facts`, untouched).
            let mut argv = facts.argv.clone();
            self.redactor.argv(&mut argv);
            p.argv = Some(argv);
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
            .get(&idx)
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
        let Some(idx) = session.filter(|idx| self.sessions.contains_key(idx)) else {
            return Attr {
                proc_id,
                session: None,
                ancestry: None,
                tool_call,
            };
        };
        let ancestry = Some(self.table.ancestry(pid));
        self.refresh_registry(idx);
        let s = &self.sessions[&idx];
        Attr {
            proc_id,
            session: Some(self.session_json(s)),
            ancestry,
            tool_call,
        }
    }

    /// Session id and cwd from the registry, once it has an entry for the root process.
    ///
    /// Called for every event of a session, so bounded: the root's own configuration
    /// directory (one `stat`, the common case) is looked at each time until the entry is
    /// found, every user's (a `stat` per user) at most every [`REGISTRY_RECHECK_EARLY`];
    /// once found, the entry is looked at again at most every [`REGISTRY_RECHECK`].
    fn refresh_registry(&mut self, idx: SessionIdx) {
        let Some(s) = self.sessions.get_mut(&idx) else {
            return;
        };
        if s.agent != crate::claude::CLAUDE_CODE {
            return;
        }
        let now = std::time::Instant::now();
        let due = |every| {
            s.registry_checked
                .is_none_or(|t| now.duration_since(t) >= every)
        };
        let everywhere = if s.claude_session_id.is_some() {
            if !due(REGISTRY_RECHECK) {
                return;
            }
            true
        } else {
            due(REGISTRY_RECHECK_EARLY)
        };
        if everywhere {
            s.registry_checked = Some(now);
        }
        // The environment read at detection can miss: npm's `#!/usr/bin/env node` runs two
        // execs in a row, and /proc/PID/environ read across the second one fails. Read it
        // again (a few times at most) while the session has no registry entry yet.
        if s.own_config.is_none() && s.claude_session_id.is_none() && s.environ_reads < 8 {
            s.environ_reads += 1;
            s.own_config = read_own_config(s.root.pid);
        }
        let own: &[PathBuf] = s.own_config.as_slice();
        if own.is_empty() && !everywhere {
            return;
        }
        let started_ms = self
            .clock
            .wall(crate::pipeline::proctable::ticks_to_ns(s.root.start))
            .timestamp_millis();
        let started = Some(started_ms);
        let mut found =
            self.registry
                .find(s.root.pid, s.root.start, started, own, s.uid, everywhere);
        if found.is_none()
            && everywhere
            && s.claude_session_id.is_none()
            && self.registry_built.elapsed() >= REGISTRY_REBUILD
        {
            self.registry = default_registry();
            self.registry_built = std::time::Instant::now();
            found = self
                .registry
                .find(s.root.pid, s.root.start, started, own, s.uid, true);
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

/// The configuration directory the environment of process `pid` names
/// ([`environ::config_dir_of`]), when it can be read.
fn read_own_config(pid: u32) -> Option<PathBuf> {
    environ::read_vars(pid, environ::CONFIG_VARS)
        .ok()
        .and_then(|vars| environ::config_dir_of(&vars))
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

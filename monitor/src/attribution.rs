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

use monitor_common::{Exec, ExecArgv, Exit, Fork, Oom, Signal};
use serde::Serialize;

use crate::{
    claude::{
        detect::{self, Detector, KernelCandidates, ProcFacts},
        registry::{self, Registry},
        transcript::{self, TranscriptTail},
    },
    clock::Clock,
    event::cstr,
    names::WaitStatus,
    proctable::{Ancestor, ProcId, ProcTable, SessionIdx, ToolCallRef, ns_to_ticks},
    scope,
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
    /// The session's transcript, read incrementally for tool calls in flight.
    transcript: Option<TranscriptTail>,
}

/// The `session` object of an event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionJson {
    /// Stable for the agent process's lifetime: the root's proc_id (`pid:start_ticks`).
    pub id: String,
    pub agent: String,
    pub root_pid: u32,
    /// The root process's start, RFC 3339.
    pub root_start: String,
    pub cwd: Option<String>,
    pub claude_session_id: Option<String>,
    pub version: Option<String>,
}

/// Attribution of one event's process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attr {
    pub proc_id: Option<String>,
    pub session: Option<SessionJson>,
    /// From the process up to its session root (pid, comm); null outside sessions.
    pub ancestry: Option<Vec<Ancestor>>,
    /// The agent tool call the process runs for (Claude Code's Bash tool), when known.
    pub tool_call: Option<ToolCallRef>,
}

impl Cause {
    /// A cause without sender or OOM details.
    pub fn only(cause: &'static str) -> Cause {
        Cause {
            cause,
            killed_by: None,
            oom: None,
        }
    }
}

/// Who sent a fatal signal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KilledBy {
    pub pid: u32,
    pub comm: String,
    pub uid: u32,
    pub proc_id: Option<String>,
    pub session_id: Option<String>,
    /// The sender belongs to the victim's own session.
    pub same_session: bool,
    pub signal: i32,
    pub si_code: i32,
}

/// OOM facts attached to an `oom_killed` exit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OomCause {
    pub trigger_pid: u32,
    pub trigger_comm: String,
    pub anon_rss_kb: Option<u64>,
    pub total_vm_kb: Option<u64>,
    pub memcg_id: Option<u64>,
}

/// Why a process ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cause {
    /// `exited`, `crashed`, `oom_killed`, `killed` or `killed_by_kernel`.
    pub cause: &'static str,
    pub killed_by: Option<KilledBy>,
    pub oom: Option<OomCause>,
}

#[derive(Clone, Debug)]
struct SignalNote {
    sig: i32,
    si_code: i32,
    sender: ProcIdOrPid,
    sender_comm: String,
    sender_uid: u32,
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
                self.maybe_session(*id, &facts);
            }
        }
    }

    fn maybe_session(&mut self, id: ProcId, facts: &ProcFacts) -> Option<SessionIdx> {
        let detection = self.detector.detect(facts)?;
        if let Some(p) = self.table.get(id.pid)
            && p.session_root
            && p.id == id
        {
            return p.session;
        }
        let idx = self.sessions.len();
        self.sessions.push(Session {
            agent: detection.agent,
            root: id,
            version: detection.version,
            rule: detection.rule,
            cwd: None,
            claude_session_id: None,
            config_dir: None,
            transcript: None,
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
        let facts = exec_facts(id.pid, comm, filename, proc, x.argv().as_ref());
        if let Some(p) = self.table.get_mut(id.pid)
            && !facts.argv.is_empty()
        {
            p.argv = Some(facts.argv.clone());
        }
        if candidate {
            self.maybe_session(id, &facts);
        }
        if in_session {
            self.maybe_tool_call(id.pid, &facts);
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
    pub fn argv(&self, pid: u32) -> Option<Vec<String>> {
        self.table.get(pid).and_then(|p| p.argv.clone())
    }

    /// A Bash tool's wrapper (`bash -c "source …snapshot… && eval '<cmd>' …"`) starting in a
    /// session: find the tool call in flight that runs `<cmd>` in the session's transcript.
    /// Recorded on the wrapper and inherited by everything it starts, because the call may
    /// complete (or be backgrounded) long before its processes end.
    fn maybe_tool_call(&mut self, pid: u32, facts: &ProcFacts) {
        let Some(proc) = self.table.get(pid) else {
            return;
        };
        let Some(idx) = proc.session else {
            return;
        };
        if proc.session_root || facts.argv.len() < 3 || facts.argv[1] != "-c" {
            return;
        }
        let script = &facts.argv[2];
        if !script.contains("eval") {
            return;
        }
        self.refresh_registry(idx);
        let s = &mut self.sessions[idx];
        let (Some(config), Some(cwd), Some(sid)) = (&s.config_dir, &s.cwd, &s.claude_session_id)
        else {
            return;
        };
        let Some(path) = transcript::locate(config, std::path::Path::new(cwd), sid) else {
            return;
        };
        if s.transcript.as_ref().is_none_or(|t| t.path() != path) {
            s.transcript = Some(TranscriptTail::new(path));
        }
        let Some(tail) = s.transcript.as_mut() else {
            return;
        };
        if let Err(e) = tail.poll() {
            tracing::debug!("transcript {}: {e}", tail.path().display());
            return;
        }
        let call = tail.match_command(script).map(|c| ToolCallRef {
            id: c.id.clone(),
            name: c.name.clone(),
            command: c.command.clone(),
        });
        if let (Some(call), Some(p)) = (call, self.table.get_mut(pid)) {
            p.tool_call = Some(call);
        }
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
        let oom = self.ooms.remove(&pid);
        let victim_session = self.table.get(pid).and_then(|p| p.session);
        let signal = match WaitStatus::decode(e.exit_status) {
            WaitStatus::Exited(_) => {
                return Cause::only("exited");
            }
            WaitStatus::Signaled { signal, .. } => i32::from(signal),
        };
        if let Some(oom) = oom {
            return Cause {
                cause: "oom_killed",
                killed_by: None,
                oom: Some(oom),
            };
        }
        // The last note of the signal that killed it.
        let note = notes.iter().rev().find(|n| n.sig == signal);
        let from_self = note.is_some_and(|n| n.sender.pid == pid);
        let from_kernel = note.is_some_and(|n| n.si_code > 0 || n.si_code == SI_KERNEL);
        if CRASH_SIGNALS.contains(&signal) && (note.is_none() || from_self || from_kernel) {
            return Cause::only("crashed");
        }
        let Some(note) = note else {
            return Cause::only("killed");
        };
        if note.si_code == SI_KERNEL {
            return Cause::only("killed_by_kernel");
        }
        Cause {
            cause: "killed",
            killed_by: Some(KilledBy {
                pid: note.sender.pid,
                comm: note.sender_comm.clone(),
                uid: note.sender_uid,
                proc_id: note.sender.id.map(|id| id.to_string()),
                session_id: note.sender.session.map(|s| self.session_id(s)),
                same_session: victim_session.is_some() && note.sender.session == victim_session,
                signal: note.sig,
                si_code: note.si_code,
            }),
            oom: None,
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
        let tool_call = p.tool_call.clone();
        let Some(idx) = p.session else {
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
        let root_start_ns = s.root.start * (1_000_000_000 / crate::proctable::USER_HZ);
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
        let mut found = self.registry.lookup(s.root.pid, s.root.start);
        if found.is_none()
            && s.claude_session_id.is_none()
            && self.registry_built.elapsed() >= REGISTRY_REBUILD
        {
            self.registry = default_registry();
            self.registry_built = std::time::Instant::now();
            found = self.registry.lookup(s.root.pid, s.root.start);
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
}

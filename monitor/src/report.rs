//! Exit reports: one JSON file plus the same content as readable text for every death worth
//! explaining (a session root's exit, an OOM kill, a kill from outside the session or by the
//! kernel, a crash, optionally a non-zero exit), and the store that `claude-monitor reports`
//! and `claude-monitor report` read them back from.
//!
//! **Why a report and not just the event.** The `exit` event says *what* the kernel saw; a
//! person debugging a dead tool call needs the surroundings too, and most of them are gone
//! minutes later: the memory cgroup's limit and usage, the session's last resource samples,
//! which of its processes are still running, who the sender of the signal was. The daemon
//! gathers those into a [`Context`] at the time of the exit, and [`build`] turns event plus
//! context into a self-contained [`Report`] with a one-sentence summary.
//!
//! **Own types.** The event's types are serialize-only (they are written, never read), but
//! reports are read back, so the report carries its own copies of the fields it needs. The raw
//! exit event is kept in `event` for tools.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    event::{Ancestor, KilledBy, OomCause, SessionJson, ToolCallRef},
    event::{Body, Event, Exit},
    host::memcg::{self, MemcgLevel},
    output::rotate,
    signals::explain::{self, Explanation},
    signals::names::{si_code_name, signal_name},
};

/// Report reasons (the `reason` field), as returned by [`worth_reporting`].
pub const SESSION_ENDED: &str = "session_ended";
pub const OOM_KILL: &str = "oom_kill";
pub const KILLED_FROM_OUTSIDE: &str = "killed_from_outside";
pub const KILLED_BY_KERNEL: &str = "killed_by_kernel";
pub const CRASHED: &str = "crashed";
pub const NONZERO_EXIT: &str = "nonzero_exit";

/// How many resource samples the text rendering shows (the JSON keeps all it was given).
const SAMPLES_SHOWN: usize = 10;
/// Width of the one-line summary in [`render_list`].
const LIST_SUMMARY_CHARS: usize = 80;

/// Why `event` deserves a report, or `None` for an ordinary exit (which only goes to the event
/// log) and for every non-exit event.
///
/// Precedence, most specific first: `oom_kill`, `crashed` (a crash signal or any core dump),
/// `killed_by_kernel`, `killed_from_outside` (the sender is known and not in the victim's own
/// session; also a signal the victim caught and then exited from its handler, cause
/// `terminated`), `session_ended` (the session root itself, however it ended), then
/// `nonzero_exit` when `report_nonzero_exit` is set.
///
/// A Claude Code root that exited 0 without ever being a conversation (no registry entry
/// named a Claude session id: `claude --version`, `claude doctor`, `claude mcp list`) is an
/// ordinary exit: each would otherwise leave a report, and scripts run such commands often.
///
/// Only OOM kills are reported for processes outside every session: the daemon watches every
/// OOM kill on the host, but a host-wide `kill` or crash outside the watched sessions is not
/// its business, and reporting those would flood the report directory.
pub fn worth_reporting(event: &Event, report_nonzero_exit: bool) -> Option<&'static str> {
    let Body::Exit(exit) = &event.body else {
        return None;
    };
    let cause = exit.cause.cause.as_str();
    if cause == "oom_killed" {
        return Some(OOM_KILL);
    }
    let attr = event.attr.as_ref()?;
    let session = attr.session.as_ref()?;
    if cause == "crashed" || exit.core_dumped {
        return Some(CRASHED);
    }
    if cause == "killed_by_kernel" {
        return Some(KILLED_BY_KERNEL);
    }
    if (cause == "killed" || cause == "terminated")
        && exit
            .cause
            .killed_by
            .as_ref()
            .is_some_and(|k| !k.same_session)
    {
        return Some(KILLED_FROM_OUTSIDE);
    }
    if is_session_root(
        event.pid,
        attr.proc_id.as_deref(),
        session.root_pid,
        &session.id,
    ) && (cause != "exited"
        || exit.exit_code != Some(0)
        || session.agent != crate::claude::CLAUDE_CODE
        || session.claude_session_id.is_some())
    {
        return Some(SESSION_ENDED);
    }
    if report_nonzero_exit && exit.exit_code.is_some_and(|c| c != 0) {
        return Some(NONZERO_EXIT);
    }
    None
}

/// The session's id is its root's proc_id, which also guards against a reused pid; the pid
/// alone decides only when the process's identity is unknown.
fn is_session_root(pid: u32, proc_id: Option<&str>, root_pid: u32, session_id: &str) -> bool {
    root_pid == pid && proc_id.is_none_or(|p| p == session_id)
}

/// What the daemon knows around an exit besides the event itself, gathered when the exit is
/// read (most of it is gone minutes later).
#[derive(Clone, Debug)]
pub struct Context {
    /// The process's argv, remembered from its exec (/proc has nothing once it exited).
    pub cmdline: Option<Vec<String>>,
    /// [`memcg::chain`] of the process's memory cgroup, read at the time of the exit,
    /// innermost first; empty when not read.
    pub memcg: Vec<MemcgLevel>,
    /// The last resource samples of the process's session, oldest first.
    pub samples: Vec<Sample>,
    /// The other live processes of the session (pid, comm).
    pub alive: Vec<(u32, String)>,
    /// `false` when records were lost around the exit, so the report may miss facts.
    pub complete: bool,
    /// Records lost around the exit (the `lost` counts seen near it).
    pub lost_nearby: u64,
}

impl Default for Context {
    /// Nothing known, nothing lost.
    fn default() -> Context {
        Context {
            cmdline: None,
            memcg: Vec::new(),
            samples: Vec::new(),
            alive: Vec::new(),
            complete: true,
            lost_nearby: 0,
        }
    }
}

/// One exit report. Written as `<id>.json`; [`render_text`] gives the `<id>.txt` twin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `<UTC yyyymmddThhmmssZ of the exit>-<pid>-<short cause>`, plus `-N` when taken:
    /// sortable by time of death and safe as a file name.
    pub id: String,
    /// When the report was written, RFC 3339.
    pub created: String,
    /// Why it was written: one of the constants of this module.
    pub reason: String,
    /// The cause in one plain sentence.
    pub summary: String,
    pub process: ProcessInfo,
    pub session: Option<SessionInfo>,
    pub tool_call: Option<ToolCall>,
    /// From the process up to its session root; null outside sessions.
    pub ancestry: Option<Vec<ProcRef>>,
    /// The event's `cause`: `exited`, `terminated`, `crashed`, `oom_killed`, `killed`,
    /// `killed_by_kernel`.
    pub cause: String,
    pub killed_by: Option<SenderInfo>,
    pub oom: Option<OomInfo>,
    pub memcg: MemcgInfo,
    /// Plain-language explanation of the signal or exit status.
    pub explanation: Option<ExplanationText>,
    /// The session's last resource samples before the exit, oldest first.
    pub last_samples: Vec<Sample>,
    /// The other processes of the session still running at the time of the report.
    pub alive: Vec<ProcRef>,
    /// `false` when records were lost around the exit.
    pub complete: bool,
    pub lost_nearby: u64,
    /// The raw exit event, as written to the event log.
    pub event: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The last thread out.
    pub tid: u32,
    pub comm: String,
    pub cmdline: Option<Vec<String>>,
    pub proc_id: Option<String>,
    pub ppid: u32,
    pub uid: u32,
    /// Start, RFC 3339 (exit time minus lifetime); null when it cannot be computed.
    pub started: Option<String>,
    /// Exit, RFC 3339 (the event's `ts`).
    pub ended: String,
    pub duration_ms: f64,
    pub exit_code: Option<u8>,
    pub signal: Option<u8>,
    pub signal_name: Option<String>,
    pub core_dumped: bool,
    pub peak_rss_kb: u64,
    pub own_peak_rss_kb: Option<u64>,
    pub utime_ms: f64,
    pub stime_ms: f64,
}

/// The event's `session` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub agent: String,
    pub root_pid: u32,
    pub root_start: String,
    pub cwd: Option<String>,
    pub claude_session_id: Option<String>,
    pub version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub command: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: u32,
    pub comm: String,
}

/// Who sent the fatal signal, and where that sender came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderInfo {
    pub pid: u32,
    pub comm: String,
    pub uid: u32,
    pub proc_id: Option<String>,
    pub session_id: Option<String>,
    pub same_session: bool,
    pub signal: i32,
    pub signal_name: Option<String>,
    pub si_code: i32,
    pub si_code_name: Option<String>,
    /// The victim caught the signal with a handler, then exited (cause `terminated`) or
    /// re-raised it (cause `killed`). Absent from reports written before it existed.
    #[serde(default)]
    pub handled: bool,
    /// Sender first, then its parents up to init, read from /proc when the report was built
    /// (see [`sender_lineage`]); empty when the sender was already gone.
    pub lineage: Vec<ProcRef>,
}

/// The OOM kill's facts (the victim's memory when it was chosen).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomInfo {
    pub trigger_pid: u32,
    pub trigger_comm: String,
    pub anon_rss_kb: Option<u64>,
    pub total_vm_kb: Option<u64>,
    pub memcg_id: Option<u64>,
}

/// The process's memory cgroup and its ancestors, read from cgroupfs at the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemcgInfo {
    pub id: Option<u64>,
    pub path: Option<String>,
    /// Innermost first; empty when not read.
    pub levels: Vec<MemcgLevel>,
    /// The level whose limit is the effective one ([`memcg::binding_limit`]).
    pub binding_limit: Option<BindingLimit>,
    /// A sentence when the binding limit is an ancestor's rather than the process's own
    /// cgroup's.
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingLimit {
    pub path: String,
    pub bytes: u64,
    /// The limit is the process's own cgroup's (not an ancestor's).
    pub own: bool,
}

/// One resource sample of the session, without the session it is about (the report's
/// `session`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub ts: String,
    pub rss_kb: u64,
    pub cpu_percent: Option<f64>,
    pub processes: u32,
    pub threads: u32,
    pub top: Option<TopProcess>,
}

/// The member of a session with the largest RSS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopProcess {
    pub pid: u32,
    pub comm: String,
    pub rss_kb: u64,
    /// Arguments joined by spaces, at most 200 characters; empty for zombies and kernel threads.
    pub cmdline: String,
}

/// An [`Explanation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplanationText {
    pub title: String,
    pub meaning: String,
    pub common_causes: Vec<String>,
    pub what_to_do: Vec<String>,
}

impl From<Explanation> for ExplanationText {
    fn from(e: Explanation) -> ExplanationText {
        ExplanationText {
            title: e.title,
            meaning: e.meaning,
            common_causes: e.common_causes,
            what_to_do: e.what_to_do,
        }
    }
}

impl From<&SessionJson> for SessionInfo {
    fn from(s: &SessionJson) -> SessionInfo {
        SessionInfo {
            id: s.id.clone(),
            agent: s.agent.clone(),
            root_pid: s.root_pid,
            root_start: s.root_start.clone(),
            cwd: s.cwd.clone(),
            claude_session_id: s.claude_session_id.clone(),
            version: s.version.clone(),
        }
    }
}

impl From<&ToolCallRef> for ToolCall {
    fn from(t: &ToolCallRef) -> ToolCall {
        ToolCall {
            id: t.id.clone(),
            name: t.name.clone(),
            command: t.command.clone(),
        }
    }
}

impl From<&Ancestor> for ProcRef {
    fn from(a: &Ancestor) -> ProcRef {
        ProcRef {
            pid: a.pid,
            comm: a.comm.clone(),
        }
    }
}

impl From<&OomCause> for OomInfo {
    fn from(o: &OomCause) -> OomInfo {
        OomInfo {
            trigger_pid: o.trigger_pid,
            trigger_comm: o.trigger_comm.clone(),
            anon_rss_kb: o.anon_rss_kb,
            total_vm_kb: o.total_vm_kb,
            memcg_id: o.memcg_id,
        }
    }
}

fn sender_info(k: &KilledBy, lineage: &[(u32, String)]) -> SenderInfo {
    SenderInfo {
        pid: k.pid,
        comm: k.comm.clone(),
        uid: k.uid,
        proc_id: k.proc_id.clone(),
        session_id: k.session_id.clone(),
        same_session: k.same_session,
        signal: k.signal,
        signal_name: signal_name(k.signal),
        si_code: k.si_code,
        si_code_name: si_code_name(k.signal, k.si_code).map(str::to_owned),
        handled: k.handled,
        lineage: lineage
            .iter()
            .map(|(pid, comm)| ProcRef {
                pid: *pid,
                comm: comm.clone(),
            })
            .collect(),
    }
}

/// Builds the report of an exit event (`reason` from [`worth_reporting`]). A non-exit event
/// gives a report with the event's pid and comm and cause `unknown`; the daemon never asks
/// for one.
///
/// Reads one thing itself: the signal sender's lineage from /proc (see [`sender_lineage`]),
/// so call it when the exit is read, while the sender most likely still runs.
pub fn build(event: &Event, reason: &'static str, ctx: Context) -> Report {
    build_at(event, reason, ctx, Utc::now(), Path::new("/proc"))
}

fn build_at(
    event: &Event,
    reason: &'static str,
    ctx: Context,
    now: DateTime<Utc>,
    proc_root: &Path,
) -> Report {
    let exit = match &event.body {
        Body::Exit(e) => Some(e),
        _ => None,
    };
    let attr = event.attr.as_ref();
    let cause = exit.map_or("unknown", |e| e.cause.cause.as_str());
    let ended_at = DateTime::parse_from_rfc3339(&event.ts)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    let process = process_info(event, exit, ctx.cmdline, ended_at);
    let session = attr.and_then(|a| a.session.as_ref()).map(SessionInfo::from);
    let memcg = memcg_info(exit, &ctx.memcg);
    let killed_by = exit
        .and_then(|e| e.cause.killed_by.as_ref())
        .map(|k| sender_info(k, &sender_lineage(proc_root, k)));
    let oom = exit.and_then(|e| e.cause.oom.as_ref()).map(OomInfo::from);
    let explanation = match (process.signal, process.exit_code) {
        (Some(sig), _) => Some(explain::signal(i32::from(sig)).into()),
        (None, Some(code)) => Some(explain::exit_code(code).into()),
        (None, None) => None,
    };
    let alive: Vec<ProcRef> = ctx
        .alive
        .iter()
        .filter(|(pid, _)| *pid != event.pid)
        .map(|(pid, comm)| ProcRef {
            pid: *pid,
            comm: comm.clone(),
        })
        .collect();
    let mut report = Report {
        id: make_id(ended_at.unwrap_or(now), event.pid, cause, process.exit_code),
        created: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        reason: reason.to_owned(),
        summary: String::new(),
        process,
        session,
        tool_call: attr.and_then(|a| a.tool_call.as_ref()).map(ToolCall::from),
        ancestry: attr
            .and_then(|a| a.ancestry.as_ref())
            .map(|v| v.iter().map(ProcRef::from).collect()),
        cause: cause.to_owned(),
        killed_by,
        oom,
        memcg,
        explanation,
        last_samples: ctx.samples,
        alive,
        complete: ctx.complete && ctx.lost_nearby == 0,
        lost_nearby: ctx.lost_nearby,
        event: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
    };
    report.summary = summary(&report);
    report
}

fn process_info(
    event: &Event,
    exit: Option<&Exit>,
    cmdline: Option<Vec<String>>,
    ended_at: Option<DateTime<Utc>>,
) -> ProcessInfo {
    let duration_ms = exit.map_or(0.0, |e| e.duration_ms);
    let started = ended_at
        .filter(|_| duration_ms.is_finite() && duration_ms >= 0.0)
        .and_then(|end| {
            // Microseconds: the precision of duration_ms. Casting a finite, non-negative f64
            // saturates, and an absurd value makes checked_sub_signed fail.
            let us = (duration_ms * 1000.0).round() as i64;
            end.checked_sub_signed(TimeDelta::microseconds(us))
        })
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true));
    ProcessInfo {
        pid: event.pid,
        tid: exit.map_or(event.pid, |e| e.tid),
        comm: event.comm.clone(),
        cmdline,
        proc_id: event.attr.as_ref().and_then(|a| a.proc_id.clone()),
        ppid: exit.map_or(0, |e| e.ppid),
        uid: exit.map_or(u32::MAX, |e| e.uid),
        started,
        ended: event.ts.clone(),
        duration_ms,
        exit_code: exit.and_then(|e| e.exit_code),
        signal: exit.and_then(|e| e.signal),
        signal_name: exit.and_then(|e| e.signal_name.clone()),
        core_dumped: exit.is_some_and(|e| e.core_dumped),
        peak_rss_kb: exit.map_or(0, |e| e.peak_rss_kb),
        own_peak_rss_kb: exit.and_then(|e| e.own_peak_rss_kb),
        utime_ms: exit.map_or(0.0, |e| e.utime_ms),
        stime_ms: exit.map_or(0.0, |e| e.stime_ms),
    }
}

fn memcg_info(exit: Option<&Exit>, chain: &[MemcgLevel]) -> MemcgInfo {
    let binding = memcg::binding_limit(chain).and_then(|b| {
        Some(BindingLimit {
            path: b.path.clone(),
            bytes: b.limit_bytes?,
            own: chain.first().is_some_and(|own| own.path == b.path),
        })
    });
    let note = match (&binding, chain.first()) {
        (Some(b), Some(own)) if !b.own => Some(format!(
            "The limit that applies is the one of ancestor cgroup {} ({}), not of the process's own cgroup {}, which {}.",
            b.path,
            fmt_bytes(b.bytes),
            own.path,
            match own.limit_bytes {
                Some(l) => format!("has a higher limit of its own ({})", fmt_bytes(l)),
                None => "has no limit of its own".to_owned(),
            }
        )),
        _ => None,
    };
    MemcgInfo {
        id: exit.and_then(|e| e.memcg_id),
        path: exit
            .and_then(|e| e.memcg_path.clone())
            .or_else(|| chain.first().map(|l| l.path.clone())),
        levels: chain.to_vec(),
        binding_limit: binding,
        note,
    }
}

/// The short form of a cause used in report ids (and accepted by the cause filter).
fn short_cause(cause: &str, exit_code: Option<u8>) -> String {
    match cause {
        "oom_killed" => "oom".to_owned(),
        "killed" => "killed".to_owned(),
        "terminated" => "term".to_owned(),
        "killed_by_kernel" => "kernel".to_owned(),
        "crashed" => "crash".to_owned(),
        "exited" => match exit_code {
            Some(c) => format!("exit{c}"),
            None => "exit".to_owned(),
        },
        other => sanitize(other),
    }
}

fn make_id(at: DateTime<Utc>, pid: u32, cause: &str, exit_code: Option<u8>) -> String {
    format!(
        "{}-{pid}-{}",
        at.format("%Y%m%dT%H%M%SZ"),
        short_cause(cause, exit_code)
    )
}

/// Keeps only characters that are safe in a file name everywhere.
fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let out = out.trim_start_matches('.').to_owned();
    if out.is_empty() { "_".to_owned() } else { out }
}

/// A short, recognisable session id: the start of Claude Code's session id when known (what
/// the user sees in `~/.claude`), else the agent session's `pid:start`.
fn session_short(id: &str, claude_session_id: Option<&str>) -> String {
    match claude_session_id {
        Some(c) if c.chars().count() > 8 => format!("{}…", c.chars().take(8).collect::<String>()),
        Some(c) => c.to_owned(),
        None => id.to_owned(),
    }
}

fn agent_name(agent: &str) -> &str {
    if agent == "claude-code" {
        "Claude Code"
    } else {
        agent
    }
}

fn signal_label(sig: i32) -> String {
    signal_name(sig).unwrap_or_else(|| format!("signal {sig}"))
}

/// "SIGTERM (terminated: a polite request to stop)".
/// Without the short text's own parenthetical, which would nest: "SIGKILL (killed: SIGKILL
/// cannot be caught)".
fn signal_phrase(sig: i32) -> String {
    let short = explain::signal_short(sig);
    let short = match short.find(" (") {
        Some(i) if short.ends_with(')') => &short[..i],
        _ => short,
    };
    format!("{} ({short})", signal_label(sig))
}

/// The cause in one plain sentence, from the facts only.
fn summary(r: &Report) -> String {
    let p = &r.process;
    let name = if !p.comm.is_empty() {
        p.comm.clone()
    } else {
        p.cmdline
            .as_ref()
            .and_then(|c| c.first())
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_else(|| "a process".to_owned())
    };
    let mut s = format!("{name} (pid {})", p.pid);
    let root = r
        .session
        .as_ref()
        .is_some_and(|sess| is_session_root(p.pid, p.proc_id.as_deref(), sess.root_pid, &sess.id));
    if let Some(sess) = &r.session {
        let short = session_short(&sess.id, sess.claude_session_id.as_deref());
        let cwd = sess
            .cwd
            .as_deref()
            .map(|c| format!(" in {c}"))
            .unwrap_or_default();
        if root {
            s.push_str(&format!(
                ", the root of {} session {short}{cwd},",
                agent_name(&sess.agent)
            ));
        } else {
            let tool = r
                .tool_call
                .as_ref()
                .map(|t| {
                    let cmd = t
                        .command
                        .as_deref()
                        .map(|c| format!(" (`{}`)", truncate(one_line(c).as_str(), 60)))
                        .unwrap_or_default();
                    format!(" through its {} tool{cmd}", t.name)
                })
                .unwrap_or_default();
            s.push_str(&format!(
                ", run by {} session {short}{cwd}{tool},",
                agent_name(&sess.agent)
            ));
        }
    }
    s.push(' ');
    s.push_str(&cause_clause(r));
    if p.core_dumped && r.cause != "crashed" {
        s.push_str(" and dumped core");
    }
    if let Some(sess) = &r.session {
        if root {
            match r.alive.len() {
                0 => {}
                1 => s.push_str("; 1 of its processes is still running"),
                n => s.push_str(&format!("; {n} of its processes are still running")),
            }
        } else if r.alive.iter().any(|a| a.pid == sess.root_pid) {
            s.push_str("; the session is still alive");
        }
    }
    s.push('.');
    s
}

/// `bash (pid 7, uid 0) from outside its session`: the sender and where it came from.
fn sender_phrase(k: &SenderInfo, in_session: bool) -> String {
    let origin = if k.same_session {
        " from within its own session".to_owned()
    } else if let Some(other) = &k.session_id {
        format!(" from another session ({other})")
    } else if in_session {
        " from outside its session".to_owned()
    } else {
        String::new()
    };
    format!("{} (pid {}, uid {}){origin}", k.comm, k.pid, k.uid)
}

fn cause_clause(r: &Report) -> String {
    let p = &r.process;
    let sig = p.signal.map(i32::from);
    match r.cause.as_str() {
        "oom_killed" => {
            let mut c = "was killed by the kernel's OOM killer".to_owned();
            let anon = r.oom.as_ref().and_then(|o| o.anon_rss_kb);
            if let Some(anon) = anon {
                c.push_str(&format!(
                    " while holding {} of anonymous memory,",
                    fmt_kb(anon)
                ));
            }
            let binding = r
                .memcg
                .binding_limit
                .as_ref()
                .and_then(|b| Some((b, r.memcg.levels.iter().find(|l| l.path == b.path)?)));
            match binding {
                Some((b, level)) if limit_was_hit(level, b.bytes) => c.push_str(&format!(
                    " when memory cgroup {} reached its {} limit",
                    b.path,
                    fmt_bytes(b.bytes)
                )),
                Some((b, _)) => c.push_str(&format!(
                    " in memory cgroup {} (limit {})",
                    b.path,
                    fmt_bytes(b.bytes)
                )),
                None if !r.memcg.levels.is_empty() => {
                    c.push_str(" because the host ran out of memory (no memory cgroup limit applies to it)");
                }
                None => {}
            }
            // The comma after the memory figure only belongs before a cgroup clause.
            c.strip_suffix(',').map(str::to_owned).unwrap_or(c)
        }
        "terminated" => match &r.killed_by {
            Some(k) => {
                let status = p
                    .exit_code
                    .map_or_else(|| "exited".to_owned(), |c| format!("exited {c}"));
                format!(
                    "was terminated by {} sent by {}, and {status} from its handler after {}",
                    signal_phrase(k.signal),
                    sender_phrase(k, r.session.is_some()),
                    fmt_ms(p.duration_ms)
                )
            }
            None => "was terminated by a signal it handled".to_owned(),
        },
        "killed" => {
            let sig = sig.or(r.killed_by.as_ref().map(|k| k.signal));
            let what = sig.map_or_else(|| "a signal".to_owned(), signal_phrase);
            match &r.killed_by {
                Some(k) => {
                    let caught = if k.handled {
                        " (it caught the signal, then raised it again)"
                    } else {
                        ""
                    };
                    format!(
                        "was killed by {what} sent by {}{caught}",
                        sender_phrase(k, r.session.is_some())
                    )
                }
                None => format!(
                    "was killed by {what}; no sender was seen (a sibling thread's exit_group or execve, or a lost record)"
                ),
            }
        }
        "killed_by_kernel" => match sig {
            Some(s) => format!("was killed by the kernel with {}", signal_phrase(s)),
            None => "was killed by the kernel".to_owned(),
        },
        "crashed" => {
            let mut c = match sig {
                Some(s) => format!("crashed with {}", signal_phrase(s)),
                None => "crashed".to_owned(),
            };
            if p.core_dumped {
                c.push_str(" and dumped core");
            }
            c
        }
        "exited" => match p.exit_code {
            Some(code) => format!(
                "exited with status {code} ({}) after {}",
                exit_tail(code),
                fmt_ms(p.duration_ms)
            ),
            None => "exited".to_owned(),
        },
        other => match sig {
            Some(s) => format!("ended ({other}) by {}", signal_phrase(s)),
            None => format!("ended ({other})"),
        },
    }
}

/// Whether cgroupfs shows the level at its limit: its high-water mark reached the limit (to
/// within 1%, since reclaim keeps usage just under it) or it counted limit hits. Without that
/// evidence the OOM may have been the host's, and the sentence only names the limit.
fn limit_was_hit(level: &MemcgLevel, limit: u64) -> bool {
    level.failcnt.is_some_and(|f| f > 0)
        || level
            .peak_bytes
            .is_some_and(|peak| peak >= limit.saturating_sub(limit / 100))
}

/// "command not found" from "exit status 127: command not found".
fn exit_tail(code: u8) -> String {
    let title = explain::exit_code(code).title;
    match title.split_once(": ") {
        Some((_, tail)) => tail.to_owned(),
        None => title,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn fmt_kb(kb: u64) -> String {
    fmt_bytes(kb.saturating_mul(1024))
}

fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "an unknown time".to_owned();
    }
    if ms < 1000.0 {
        return format!("{ms:.0} ms");
    }
    let s = ms / 1000.0;
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let total = s as u64;
    let (d, h, m, sec) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {sec} s")
    }
}

fn fmt_opt_bytes(b: Option<u64>) -> String {
    b.map_or_else(|| "-".to_owned(), fmt_bytes)
}

fn fmt_opt_u64(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn lineage_text(procs: &[ProcRef]) -> String {
    procs
        .iter()
        .map(|p| format!("{} ({})", p.comm, p.pid))
        .collect::<Vec<_>>()
        .join(" <- ")
}

fn kv(out: &mut String, key: &str, value: &str) {
    out.push_str(&format!("  {key:<15} {value}\n"));
}

fn section(out: &mut String, title: &str) {
    out.push('\n');
    out.push_str(title);
    out.push('\n');
}

/// The report as text for people: a title line, the summary, then the sections What died,
/// Cause, Evidence, Memory cgroup, Session, Last resource samples, Still running and
/// Explanation, and a closing note when records were lost around the exit.
pub fn render_text(r: &Report) -> String {
    let p = &r.process;
    let mut out = format!(
        "Exit report {}: {} (pid {}) {} at {}\n\n{}\n",
        r.id, p.comm, p.pid, r.cause, p.ended, r.summary
    );

    section(&mut out, "What died");
    kv(
        &mut out,
        "process",
        &format!(
            "{} (pid {}{}), uid {}, parent pid {}",
            p.comm,
            p.pid,
            if p.tid != p.pid {
                format!(", last thread {}", p.tid)
            } else {
                String::new()
            },
            p.uid,
            p.ppid
        ),
    );
    kv(
        &mut out,
        "proc_id",
        p.proc_id.as_deref().unwrap_or("unknown"),
    );
    kv(
        &mut out,
        "command",
        &p.cmdline
            .as_ref()
            .map_or_else(|| "(unknown)".to_owned(), |c| c.join(" ")),
    );
    kv(
        &mut out,
        "started",
        p.started.as_deref().unwrap_or("unknown"),
    );
    kv(&mut out, "ended", &p.ended);
    kv(&mut out, "lifetime", &fmt_ms(p.duration_ms));
    kv(
        &mut out,
        "peak RSS",
        &match p.own_peak_rss_kb {
            Some(own) => format!(
                "{} ({} in its own last image)",
                fmt_kb(p.peak_rss_kb),
                fmt_kb(own)
            ),
            None => fmt_kb(p.peak_rss_kb),
        },
    );
    kv(
        &mut out,
        "CPU time",
        &format!("{} user, {} system", fmt_ms(p.utime_ms), fmt_ms(p.stime_ms)),
    );
    if let Some(sess) = &r.session {
        kv(
            &mut out,
            "session",
            &format!(
                "{} {}{}",
                agent_name(&sess.agent),
                session_short(&sess.id, sess.claude_session_id.as_deref()),
                sess.cwd
                    .as_deref()
                    .map(|c| format!(" in {c}"))
                    .unwrap_or_default()
            ),
        );
    } else {
        kv(&mut out, "session", "none (outside every session)");
    }
    if let Some(t) = &r.tool_call {
        kv(
            &mut out,
            "tool call",
            &format!(
                "{} {}{}",
                t.name,
                t.id,
                t.command
                    .as_deref()
                    .map(|c| format!(": {}", truncate(&one_line(c), 200)))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(a) = &r.ancestry {
        kv(&mut out, "ancestry", &lineage_text(a));
    }

    section(&mut out, "Cause");
    kv(&mut out, "cause", &r.cause);
    kv(&mut out, "report reason", &r.reason);
    let status = match (p.signal, p.exit_code) {
        (Some(sig), _) => format!(
            "killed by {} (signal {sig}){}",
            p.signal_name
                .clone()
                .unwrap_or_else(|| signal_label(i32::from(sig))),
            if p.core_dumped {
                ", core dumped"
            } else {
                ", no core dump"
            }
        ),
        (None, Some(code)) => format!("exit status {code}"),
        (None, None) => "unknown".to_owned(),
    };
    kv(&mut out, "status", &status);

    section(&mut out, "Evidence");
    let mut evidence = false;
    if let Some(k) = &r.killed_by {
        evidence = true;
        kv(
            &mut out,
            "signal",
            &format!(
                "{} (signal {}), si_code {}{}",
                k.signal_name
                    .clone()
                    .unwrap_or_else(|| format!("signal {}", k.signal)),
                k.signal,
                k.si_code,
                k.si_code_name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
        );
        let origin = if k.same_session {
            "same session as the victim".to_owned()
        } else if let Some(s) = &k.session_id {
            format!("another session ({s})")
        } else {
            "outside every session".to_owned()
        };
        kv(
            &mut out,
            "sent by",
            &format!(
                "{} (pid {}, uid {}, proc_id {}), {origin}",
                k.comm,
                k.pid,
                k.uid,
                k.proc_id.as_deref().unwrap_or("unknown")
            ),
        );
        kv(
            &mut out,
            "sender lineage",
            &if k.lineage.is_empty() {
                "unknown (the sender was gone or not followed)".to_owned()
            } else {
                lineage_text(&k.lineage)
            },
        );
    }
    if let Some(o) = &r.oom {
        evidence = true;
        kv(
            &mut out,
            "OOM trigger",
            &format!(
                "{} (pid {}) was allocating when the victim was chosen",
                o.trigger_comm, o.trigger_pid
            ),
        );
        kv(
            &mut out,
            "victim memory",
            &format!(
                "anonymous RSS {}, total virtual memory {}",
                o.anon_rss_kb.map_or_else(|| "unknown".to_owned(), fmt_kb),
                o.total_vm_kb.map_or_else(|| "unknown".to_owned(), fmt_kb)
            ),
        );
        if let Some(id) = o.memcg_id {
            kv(&mut out, "victim memcg id", &id.to_string());
        }
    }
    if !evidence {
        let text = match r.cause.as_str() {
            "exited" => {
                "the process ended by itself (exit or return from main); no signal was involved"
            }
            "crashed" => {
                "the kernel (or the process itself, e.g. abort()) raised the signal: a fault in the process's own code"
            }
            "killed_by_kernel" => "the kernel sent the signal (SI_KERNEL), no other process",
            "killed" => {
                "no sender was seen: a sibling thread's exit_group or execve, or a lost record"
            }
            _ => "none recorded",
        };
        kv(&mut out, "note", text);
    }

    section(&mut out, "Memory cgroup");
    let m = &r.memcg;
    kv(
        &mut out,
        "path",
        &format!(
            "{}{}",
            m.path.as_deref().unwrap_or("unknown"),
            m.id.map(|id| format!(" (id {id})")).unwrap_or_default()
        ),
    );
    match &m.binding_limit {
        Some(b) => kv(
            &mut out,
            "binding limit",
            &format!(
                "{} at {}{}",
                fmt_bytes(b.bytes),
                b.path,
                if b.own {
                    " (its own cgroup)"
                } else {
                    " (an ancestor)"
                }
            ),
        ),
        None if m.levels.is_empty() => {}
        None => kv(&mut out, "binding limit", "none: no level has a limit"),
    }
    if m.levels.is_empty() {
        kv(&mut out, "levels", "not read");
    } else {
        out.push_str(&format!(
            "  {:<32} {:>11} {:>11} {:>11} {:>9} {:>9}\n",
            "cgroup (innermost first)", "limit", "usage", "peak", "oom_kills", "failcnt"
        ));
        for l in &m.levels {
            out.push_str(&format!(
                "  {:<32} {:>11} {:>11} {:>11} {:>9} {:>9}\n",
                l.path,
                l.limit_bytes.map_or_else(|| "none".to_owned(), fmt_bytes),
                fmt_opt_bytes(l.usage_bytes),
                fmt_opt_bytes(l.peak_bytes),
                fmt_opt_u64(l.oom_kills),
                fmt_opt_u64(l.failcnt)
            ));
        }
    }
    if let Some(note) = &m.note {
        kv(&mut out, "note", note);
    }

    section(&mut out, "Session");
    match &r.session {
        Some(s) => {
            kv(&mut out, "id", &s.id);
            kv(&mut out, "agent", &s.agent);
            kv(
                &mut out,
                "root",
                &format!("pid {}, started {}", s.root_pid, s.root_start),
            );
            kv(&mut out, "project", s.cwd.as_deref().unwrap_or("unknown"));
            kv(
                &mut out,
                "claude session",
                s.claude_session_id.as_deref().unwrap_or("unknown"),
            );
            kv(
                &mut out,
                "version",
                s.version.as_deref().unwrap_or("unknown"),
            );
        }
        None => kv(&mut out, "session", "none (outside every session)"),
    }

    section(&mut out, "Last resource samples");
    if r.last_samples.is_empty() {
        kv(&mut out, "samples", "none");
    } else {
        out.push_str(&format!(
            "  {:<24} {:>11} {:>7} {:>6} {:>8}  {}\n",
            "time", "RSS", "CPU %", "procs", "threads", "top process"
        ));
        let skip = r.last_samples.len().saturating_sub(SAMPLES_SHOWN);
        for s in &r.last_samples[skip..] {
            out.push_str(&format!(
                "  {:<24} {:>11} {:>7} {:>6} {:>8}  {}\n",
                short_time(&s.ts),
                fmt_kb(s.rss_kb),
                s.cpu_percent
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
                s.processes,
                s.threads,
                s.top.as_ref().map_or_else(
                    || "-".to_owned(),
                    |t| format!("{} (pid {}) {}", t.comm, t.pid, fmt_kb(t.rss_kb))
                )
            ));
        }
    }

    section(&mut out, "Still running");
    if r.alive.is_empty() {
        kv(
            &mut out,
            "processes",
            if r.session.is_some() {
                "none of the session's processes"
            } else {
                "not tracked outside sessions"
            },
        );
    } else {
        for a in &r.alive {
            out.push_str(&format!("  {:>8}  {}\n", a.pid, a.comm));
        }
    }

    section(&mut out, "Explanation");
    match &r.explanation {
        Some(e) => {
            for line in e.to_string().lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str("  ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        None => kv(&mut out, "explanation", "none"),
    }

    if !r.complete {
        out.push_str(&format!(
            "\nNote: this report may be incomplete: {} record(s) were lost around this exit, so a signal, OOM record or fork that explains it may be missing.\n",
            r.lost_nearby
        ));
    }
    out
}

impl std::fmt::Display for ExplanationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Explanation {
            title: self.title.clone(),
            meaning: self.meaning.clone(),
            common_causes: self.common_causes.clone(),
            what_to_do: self.what_to_do.clone(),
        }
        .fmt(f)
    }
}

/// "2026-11-21 22:01:58" from an RFC 3339 timestamp (the input itself when it is not one).
fn short_time(ts: &str) -> String {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ts.to_owned(),
    }
}

/// Bound on a sender's lineage (the same as the events' ancestry).
const LINEAGE_MAX: usize = crate::event::ANCESTRY_MAX;

/// The lineage of a fatal signal's sender, read from /proc (`proc_root` outside tests): the
/// sender, then its parents up to init. The sender usually outlives its victim, but its pid
/// may have been reused by then, so the lineage is only read when the process at that pid
/// still has the sender's start time (`proc_id`); empty otherwise.
pub fn sender_lineage(proc_root: &Path, sender: &KilledBy) -> Vec<(u32, String)> {
    let Some(start) = sender
        .proc_id
        .as_deref()
        .and_then(|id| id.split_once(':'))
        .and_then(|(_, start)| start.parse::<u64>().ok())
    else {
        return Vec::new();
    };
    match read_stat(proc_root, sender.pid) {
        Some(stat) if stat.start == start => proc_lineage(proc_root, sender.pid, LINEAGE_MAX),
        _ => Vec::new(),
    }
}

/// The fields of /proc/PID/stat a lineage needs.
struct Stat {
    comm: String,
    ppid: u32,
    /// Field 22, clock ticks since boot: the second half of a proc_id.
    start: u64,
}

fn read_stat(proc_root: &Path, pid: u32) -> Option<Stat> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // comm can hold spaces and parentheses: it ends at the *last* ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After comm: state (field 3), ppid (4), ... starttime (22).
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        comm,
        ppid: rest.get(1)?.parse().ok()?,
        start: rest.get(19)?.parse().ok()?,
    })
}

/// A process's lineage from /proc: the process, then its parent, and so on up to init (at
/// most `max` entries); empty when the process is gone.
pub fn proc_lineage(proc_root: &Path, pid: u32, max: usize) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut pid = pid;
    while pid != 0 && out.len() < max && !out.iter().any(|(p, _)| *p == pid) {
        let Some(stat) = read_stat(proc_root, pid) else {
            break;
        };
        out.push((pid, stat.comm));
        pid = stat.ppid;
    }
    out
}

/// One line of `claude-monitor reports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSummary {
    pub id: String,
    /// Time of the exit, RFC 3339.
    pub died: String,
    pub created: String,
    pub reason: String,
    pub cause: String,
    pub pid: u32,
    pub comm: String,
    pub exit_code: Option<u8>,
    pub session_id: Option<String>,
    pub claude_session_id: Option<String>,
    pub summary: String,
}

/// Which reports [`ReportStore::list`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// A prefix of the session's id (`pid:start`) or of Claude Code's session id.
    pub session: Option<String>,
    /// The event's cause (`oom_killed`), the report's reason (`oom_kill`) or the short form
    /// of report ids (`oom`, `killed`, `kernel`, `crash`, `exit1`).
    pub cause: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

impl ListFilter {
    fn matches(&self, s: &ReportSummary) -> bool {
        let session_ok = self.session.as_deref().is_none_or(|want| {
            s.session_id
                .as_deref()
                .is_some_and(|id| id.starts_with(want))
                || s.claude_session_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(want))
        });
        let cause_ok = self.cause.as_deref().is_none_or(|want| {
            want == s.cause
                || want == s.reason
                || want == short_cause(&s.cause, None)
                || want == short_cause(&s.cause, s.exit_code)
        });
        session_ok && cause_ok
    }
}

impl From<&Report> for ReportSummary {
    fn from(r: &Report) -> ReportSummary {
        ReportSummary {
            id: r.id.clone(),
            died: r.process.ended.clone(),
            created: r.created.clone(),
            reason: r.reason.clone(),
            cause: r.cause.clone(),
            pid: r.process.pid,
            comm: r.process.comm.clone(),
            exit_code: r.process.exit_code,
            session_id: r.session.as_ref().map(|s| s.id.clone()),
            claude_session_id: r.session.as_ref().and_then(|s| s.claude_session_id.clone()),
            summary: r.summary.clone(),
        }
    }
}

/// The report directory, `<data_dir>/reports`: `<id>.json` and its `<id>.txt` twin.
#[derive(Clone, Debug)]
pub struct ReportStore {
    dir: PathBuf,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl ReportStore {
    pub fn new(dir: impl Into<PathBuf>) -> ReportStore {
        ReportStore { dir: dir.into() }
    }

    /// `<data_dir>/reports`.
    pub fn in_data_dir(data_dir: &Path) -> ReportStore {
        ReportStore::new(data_dir.join("reports"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `<id>.txt` then `<id>.json`, each atomically (temp file and rename), creating
    /// the directory when needed. An id already taken gets a `-2`, `-3`, ... suffix (the
    /// written report carries the id it was written under). The JSON goes last so that a
    /// listed report always has its text. Returns the JSON file's path.
    pub fn write(&self, report: &Report) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating report directory {}: {e}", self.dir.display()),
            )
        })?;
        let base = sanitize(&report.id);
        let id = (1..=10_000u32)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|id| {
                !self.dir.join(format!("{id}.json")).exists()
                    && !self.dir.join(format!("{id}.txt")).exists()
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("no free report id for {base} in {}", self.dir.display()),
                )
            })?;
        let mut report = report.clone();
        report.id = id;
        let json = serde_json::to_vec_pretty(&report).map_err(io::Error::other)?;
        let text = render_text(&report);
        let txt_path = self.dir.join(format!("{}.txt", report.id));
        let json_path = self.dir.join(format!("{}.json", report.id));
        rotate::write_atomic(&txt_path, text.as_bytes())?;
        rotate::write_atomic(&json_path, &json)?;
        Ok(json_path)
    }

    /// The ids of the stored reports (stems of `*.json`, temp files excluded); empty when the
    /// directory does not exist yet.
    fn ids(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading report directory {}: {e}", self.dir.display()),
                ));
            }
        };
        let mut ids = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            if let Some(stem) = name.strip_suffix(".json") {
                ids.push(stem.to_owned());
            }
        }
        Ok(ids)
    }

    fn read(&self, id: &str) -> io::Result<Report> {
        let path = self.dir.join(format!("{id}.json"));
        let bytes = fs::read(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
        let mut report: Report = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a readable report: {e}", path.display()),
            )
        })?;
        // The file name is what `get` resolves; keep the two in agreement.
        report.id = id.to_owned();
        Ok(report)
    }

    /// The stored reports that pass `filter`, newest exit first. Unreadable or corrupt files
    /// are skipped with a warning.
    pub fn list(&self, filter: &ListFilter) -> io::Result<Vec<ReportSummary>> {
        let mut out: Vec<ReportSummary> = self
            .ids()?
            .into_iter()
            .filter_map(|id| match self.read(&id) {
                Ok(r) => Some(ReportSummary::from(&r)),
                Err(e) => {
                    tracing::warn!("skipping report {id}: {e}");
                    None
                }
            })
            .filter(|s| filter.matches(s))
            .collect();
        out.sort_by(|a, b| b.died.cmp(&a.died).then_with(|| b.id.cmp(&a.id)));
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// One report by id or unique id prefix.
    pub fn get(&self, id: &str) -> io::Result<Report> {
        if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
            return Err(invalid(format!("{id:?} is not a report id")));
        }
        if self.dir.join(format!("{id}.json")).is_file() {
            return self.read(id);
        }
        let mut found: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|i| i.starts_with(id))
            .collect();
        found.sort();
        match found.as_slice() {
            [] => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no report {id} in {}", self.dir.display()),
            )),
            [one] => self.read(one),
            many => Err(invalid(format!(
                "{id} is ambiguous: it starts {} reports ({}{})",
                many.len(),
                many.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                if many.len() > 5 { ", ..." } else { "" }
            ))),
        }
    }

    /// The newest readable report, `None` when there is none.
    pub fn last(&self) -> io::Result<Option<Report>> {
        let newest = self.list(&ListFilter {
            limit: Some(1),
            ..ListFilter::default()
        })?;
        match newest.first() {
            Some(s) => self.read(&s.id).map(Some),
            None => Ok(None),
        }
    }
}

/// The table printed by `claude-monitor reports`.
pub fn render_list(reports: &[ReportSummary]) -> String {
    if reports.is_empty() {
        return "no reports\n".to_owned();
    }
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                short_time(&r.died),
                r.cause.clone(),
                r.pid.to_string(),
                r.comm.clone(),
                r.session_id.as_deref().map_or_else(
                    || "-".to_owned(),
                    |id| session_short(id, r.claude_session_id.as_deref()),
                ),
                truncate(&r.summary, LIST_SUMMARY_CHARS),
            ]
        })
        .collect();
    let header = [
        "ID",
        "TIME (UTC)",
        "CAUSE",
        "PID",
        "COMM",
        "SESSION",
        "SUMMARY",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(str::to_owned));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::Lost,
        event::{Attr, Cause, CauseKind, LostReason},
    };

    const ROOT_PID: u32 = 1000;
    const SESSION_ID: &str = "1000:500";

    fn session() -> SessionJson {
        SessionJson {
            id: SESSION_ID.to_owned(),
            agent: "claude-code".to_owned(),
            root_pid: ROOT_PID,
            root_start: "2026-11-21T20:00:00.000000000Z".to_owned(),
            cwd: Some("/src/app".to_owned()),
            claude_session_id: Some("3f2a9c1e-0000-4000-8000-000000000001".to_owned()),
            version: Some("2.0.1".to_owned()),
        }
    }

    /// An ordinary exit (status 0) of a process inside the session, run by its Bash tool.
    fn exit_event(pid: u32, comm: &str) -> Event {
        let mut e = Event::new(
            "2026-11-21T22:01:58.749139221Z".to_owned(),
            pid,
            comm.to_owned(),
            Body::Exit(Exit {
                tid: pid,
                thread_comm: None,
                ppid: 900,
                uid: 1000,
                exit_code: Some(0),
                signal: None,
                signal_name: None,
                core_dumped: false,
                peak_rss_kb: 9000,
                own_peak_rss_kb: Some(8000),
                utime_ms: 120.0,
                stime_ms: 8.0,
                duration_ms: 2500.0,
                memcg_id: Some(4259),
                memcg_path: Some("/app/job".to_owned()),
                cause: Cause::only(CauseKind::Exited),
            }),
        );
        e.attr = Some(Attr {
            proc_id: Some(format!("{pid}:303575")),
            session: Some(session()),
            ancestry: Some(vec![
                Ancestor {
                    pid,
                    comm: comm.to_owned(),
                },
                Ancestor {
                    pid: 900,
                    comm: "bash".to_owned(),
                },
                Ancestor {
                    pid: ROOT_PID,
                    comm: "claude".to_owned(),
                },
            ]),
            tool_call: Some(ToolCallRef {
                id: "toolu_01".to_owned(),
                name: "Bash".to_owned(),
                command: Some("python3 train.py".to_owned()),
            }),
        });
        e
    }

    fn exit_mut(e: &mut Event) -> &mut Exit {
        match &mut e.body {
            Body::Exit(x) => x,
            _ => panic!("not an exit"),
        }
    }

    fn no_session(e: &mut Event) {
        e.attr = Some(Attr {
            proc_id: e.attr.as_ref().and_then(|a| a.proc_id.clone()),
            session: None,
            ancestry: None,
            tool_call: None,
        });
    }

    fn signaled(e: &mut Event, sig: u8, cause: CauseKind) {
        let x = exit_mut(e);
        x.exit_code = None;
        x.signal = Some(sig);
        x.signal_name = signal_name(i32::from(sig));
        x.cause = Cause::only(cause);
    }

    fn killed_by(sender_session: Option<&str>, same_session: bool, sig: i32) -> KilledBy {
        KilledBy {
            handled: false,
            pid: 665,
            comm: "provoke.sh".to_owned(),
            uid: 0,
            proc_id: Some("665:303474".to_owned()),
            session_id: sender_session.map(str::to_owned),
            same_session,
            signal: sig,
            si_code: 0,
        }
    }

    fn oom_event(pid: u32, comm: &str) -> Event {
        let mut e = exit_event(pid, comm);
        signaled(&mut e, 9, CauseKind::OomKilled);
        exit_mut(&mut e).cause.oom = Some(OomCause {
            trigger_pid: pid,
            trigger_comm: comm.to_owned(),
            anon_rss_kb: Some(1_677_722), // 1.6 GiB
            total_vm_kb: Some(2_000_000),
            memcg_id: Some(4259),
        });
        e
    }

    fn level(path: &str, limit: Option<u64>, peak: Option<u64>, failcnt: u64) -> MemcgLevel {
        MemcgLevel {
            path: path.to_owned(),
            limit_bytes: limit,
            usage_bytes: Some(100 << 20),
            peak_bytes: peak,
            oom_kills: Some(1),
            failcnt: Some(failcnt),
        }
    }

    const LIMIT_1_7_GIB: u64 = 1_825_361_101;

    fn oom_chain() -> Vec<MemcgLevel> {
        vec![
            level("/app/job", None, Some(LIMIT_1_7_GIB), 0),
            level("/app", Some(LIMIT_1_7_GIB), Some(LIMIT_1_7_GIB), 3),
            level("/", None, None, 0),
        ]
    }

    fn sample(ts: &str, rss_kb: u64) -> Sample {
        Sample {
            ts: ts.to_owned(),
            rss_kb,
            cpu_percent: Some(97.5),
            processes: 4,
            threads: 12,
            top: Some(TopProcess {
                pid: 22606,
                comm: "python3".to_owned(),
                rss_kb: rss_kb / 2,
                cmdline: "python3 train.py".to_owned(),
            }),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T22:02:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Builds without reading the real /proc.
    fn build_test(event: &Event, reason: &'static str, ctx: Context) -> Report {
        build_at(
            event,
            reason,
            ctx,
            now(),
            Path::new("/nonexistent-proc-root-for-tests"),
        )
    }

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "claude-monitor-report-{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    // ---- worth_reporting ----

    #[test]
    fn ordinary_exits_are_not_reported() {
        let e = exit_event(22606, "python3");
        assert_eq!(worth_reporting(&e, false), None);
        assert_eq!(
            worth_reporting(&e, true),
            None,
            "status 0 is never a report"
        );
    }

    #[test]
    fn nonzero_exit_only_with_the_flag_and_only_in_a_session() {
        let mut e = exit_event(22606, "python3");
        exit_mut(&mut e).exit_code = Some(3);
        assert_eq!(worth_reporting(&e, false), None);
        assert_eq!(worth_reporting(&e, true), Some(NONZERO_EXIT));
        no_session(&mut e);
        assert_eq!(worth_reporting(&e, true), None);
    }

    #[test]
    fn session_root_exit_is_reported_but_not_a_reused_pid() {
        let mut e = exit_event(ROOT_PID, "claude");
        e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
        assert_eq!(worth_reporting(&e, false), Some(SESSION_ENDED));
        // The same pid with another start time is not the root.
        e.attr.as_mut().unwrap().proc_id = Some(format!("{ROOT_PID}:999999"));
        assert_eq!(worth_reporting(&e, false), None);
        // Unknown identity: the pid decides.
        e.attr.as_mut().unwrap().proc_id = None;
        assert_eq!(worth_reporting(&e, false), Some(SESSION_ENDED));
    }

    #[test]
    fn oom_kills_are_reported_inside_and_outside_sessions() {
        let mut e = oom_event(22606, "python3");
        assert_eq!(worth_reporting(&e, false), Some(OOM_KILL));
        no_session(&mut e);
        assert_eq!(worth_reporting(&e, false), Some(OOM_KILL));
        e.attr = None;
        assert_eq!(worth_reporting(&e, false), Some(OOM_KILL));
    }

    #[test]
    fn kills_from_outside_the_session_are_reported_from_inside_not() {
        let mut e = exit_event(22606, "python3");
        signaled(&mut e, 15, CauseKind::Killed);
        exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 15));
        assert_eq!(worth_reporting(&e, false), Some(KILLED_FROM_OUTSIDE));
        exit_mut(&mut e).cause.killed_by = Some(killed_by(Some("77:1"), false, 15));
        assert_eq!(worth_reporting(&e, false), Some(KILLED_FROM_OUTSIDE));
        exit_mut(&mut e).cause.killed_by = Some(killed_by(Some(SESSION_ID), true, 15));
        assert_eq!(worth_reporting(&e, false), None);
        // Sender unknown (sibling thread's exit_group): nothing says it came from outside.
        exit_mut(&mut e).cause.killed_by = None;
        assert_eq!(worth_reporting(&e, false), None);
        // Outside every session, a kill is not the daemon's business.
        exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 15));
        no_session(&mut e);
        assert_eq!(worth_reporting(&e, false), None);
    }

    #[test]
    fn kernel_kills_crashes_and_core_dumps_are_reported() {
        let mut e = exit_event(22606, "python3");
        signaled(&mut e, 24, CauseKind::KilledByKernel);
        assert_eq!(worth_reporting(&e, false), Some(KILLED_BY_KERNEL));
        signaled(&mut e, 11, CauseKind::Crashed);
        assert_eq!(worth_reporting(&e, false), Some(CRASHED));
        // A core dump from a signal sent inside the session is still a crash report.
        signaled(&mut e, 3, CauseKind::Killed);
        exit_mut(&mut e).cause.killed_by = Some(killed_by(Some(SESSION_ID), true, 3));
        exit_mut(&mut e).core_dumped = true;
        assert_eq!(worth_reporting(&e, false), Some(CRASHED));
        signaled(&mut e, 11, CauseKind::Crashed);
        no_session(&mut e);
        assert_eq!(worth_reporting(&e, false), None);
    }

    #[test]
    fn the_most_specific_reason_wins_for_a_session_root() {
        let mut e = exit_event(ROOT_PID, "claude");
        e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
        signaled(&mut e, 9, CauseKind::Killed);
        exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 9));
        assert_eq!(worth_reporting(&e, false), Some(KILLED_FROM_OUTSIDE));
    }

    #[test]
    fn non_exit_events_are_not_reported() {
        let e = Event::new(
            "2026-11-21T22:01:58.749139221Z".to_owned(),
            1,
            "claude-monitor".to_owned(),
            Body::Lost(Lost {
                count: 3,
                reason: LostReason::RingBufferFull,
            }),
        );
        assert_eq!(worth_reporting(&e, true), None);
    }

    // ---- summary and build ----

    #[test]
    fn oom_summary_names_session_tool_cgroup_limit_and_memory() {
        let e = oom_event(22606, "python3");
        let ctx = Context {
            memcg: oom_chain(),
            alive: vec![(900, "bash".to_owned()), (ROOT_PID, "claude".to_owned())],
            ..Context::default()
        };
        let r = build_test(&e, OOM_KILL, ctx);
        assert_eq!(
            r.summary,
            "python3 (pid 22606), run by Claude Code session 3f2a9c1e… in /src/app through its \
             Bash tool (`python3 train.py`), was killed by the kernel's OOM killer while holding \
             1.6 GiB of anonymous memory, when memory cgroup /app reached its 1.7 GiB limit; the \
             session is still alive."
        );
        assert_eq!(r.id, "20261121T220158Z-22606-oom");
        assert_eq!(r.reason, "oom_kill");
        assert_eq!(r.cause, "oom_killed");
        let b = r.memcg.binding_limit.as_ref().unwrap();
        assert_eq!(
            (b.path.as_str(), b.bytes, b.own),
            ("/app", LIMIT_1_7_GIB, false)
        );
        let note = r.memcg.note.as_deref().unwrap();
        assert!(note.contains("ancestor cgroup /app"), "{note}");
        assert!(
            note.contains("/app/job, which has no limit of its own"),
            "{note}"
        );
        assert_eq!(r.memcg.path.as_deref(), Some("/app/job"));
        assert_eq!(r.memcg.levels.len(), 3);
        assert_eq!(r.oom.as_ref().unwrap().trigger_comm, "python3");
        assert!(r.explanation.as_ref().unwrap().title.starts_with("SIGKILL"));
        assert_eq!(r.event["kind"], "exit");
        assert_eq!(r.event["cause"], "oom_killed");
        assert!(r.complete);
    }

    #[test]
    fn oom_summary_without_a_limit_blames_the_host() {
        let mut e = oom_event(801, "memhog");
        no_session(&mut e);
        let ctx = Context {
            memcg: vec![level("/", None, None, 0)],
            ..Context::default()
        };
        let r = build_test(&e, OOM_KILL, ctx);
        assert_eq!(
            r.summary,
            "memhog (pid 801) was killed by the kernel's OOM killer while holding 1.6 GiB of \
             anonymous memory, because the host ran out of memory (no memory cgroup limit \
             applies to it)."
        );
        assert!(r.memcg.note.is_none());
        // A limit with no sign of having been reached is only named.
        let ctx = Context {
            memcg: vec![level("/big", Some(8 << 30), Some(1 << 30), 0)],
            ..Context::default()
        };
        let r = build_test(&e, OOM_KILL, ctx);
        assert!(
            r.summary
                .ends_with("anonymous memory, in memory cgroup /big (limit 8.0 GiB)."),
            "{}",
            r.summary
        );
        assert!(r.memcg.binding_limit.as_ref().unwrap().own);
        // Without the victim's memory figures (older kernels) the sentence still reads.
        exit_mut(&mut e).cause.oom.as_mut().unwrap().anon_rss_kb = None;
        let r = build_test(&e, OOM_KILL, Context::default());
        assert_eq!(
            r.summary,
            "memhog (pid 801) was killed by the kernel's OOM killer."
        );
    }

    #[test]
    fn killed_summary_names_signal_and_sender() {
        let mut e = exit_event(669, "sleep");
        signaled(&mut e, 15, CauseKind::Killed);
        exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 15));
        let r = build_test(&e, KILLED_FROM_OUTSIDE, Context::default());
        assert!(
            r.summary
                .starts_with("sleep (pid 669), run by Claude Code session 3f2a9c1e…"),
            "{}",
            r.summary
        );
        assert!(
            r.summary.ends_with(
                "was killed by SIGTERM (terminated: a polite request to stop) sent by \
                 provoke.sh (pid 665, uid 0) from outside its session."
            ),
            "{}",
            r.summary
        );
        let k = r.killed_by.as_ref().unwrap();
        assert_eq!(k.signal_name.as_deref(), Some("SIGTERM"));
        assert_eq!(k.si_code_name.as_deref(), Some("SI_USER"));
        assert!(
            k.lineage.is_empty(),
            "no such sender under the test proc root"
        );
        assert_eq!(r.id, "20261121T220158Z-669-killed");

        exit_mut(&mut e).cause.killed_by = Some(killed_by(Some("77:1"), false, 15));
        let r = build_test(&e, KILLED_FROM_OUTSIDE, Context::default());
        assert!(
            r.summary.contains("from another session (77:1)"),
            "{}",
            r.summary
        );
        // The signal's short wording is not nested in a second pair of parentheses.
        signaled(&mut e, 9, CauseKind::Killed);
        exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 9));
        let r = build_test(&e, KILLED_FROM_OUTSIDE, Context::default());
        assert!(
            r.summary
                .contains("was killed by SIGKILL (killed: SIGKILL cannot be caught) sent by"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn terminated_summary_says_who_sent_it_and_what_the_handler_did() {
        let mut e = exit_event(ROOT_PID, "claude");
        e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
        let x = exit_mut(&mut e);
        x.exit_code = Some(143);
        x.cause = Cause {
            cause: CauseKind::Terminated,
            killed_by: Some(KilledBy {
                handled: true,
                ..killed_by(None, false, 15)
            }),
            oom: None,
        };
        assert_eq!(worth_reporting(&e, false), Some(KILLED_FROM_OUTSIDE));
        let r = build_test(&e, KILLED_FROM_OUTSIDE, Context::default());
        assert!(
            r.summary.ends_with(
                "was terminated by SIGTERM (terminated: a polite request to stop) sent by \
                 provoke.sh (pid 665, uid 0) from outside its session, and exited 143 from \
                 its handler after 2.5 s."
            ),
            "{}",
            r.summary
        );
        assert!(r.killed_by.as_ref().is_some_and(|k| k.handled));
        assert_eq!(r.id, format!("20261121T220158Z-{ROOT_PID}-term"));
        // From within the session (claude ending its own tool): the session-ended report
        // for a root, nothing for a tool.
        exit_mut(&mut e).cause.killed_by = Some(KilledBy {
            handled: true,
            ..killed_by(Some(SESSION_ID), true, 15)
        });
        assert_eq!(worth_reporting(&e, false), Some(SESSION_ENDED));
        let mut tool = e.clone();
        tool.pid = 22606;
        tool.attr.as_mut().unwrap().proc_id = Some("22606:1".to_owned());
        assert_eq!(worth_reporting(&tool, false), None);
        // A report written before `handled` existed still reads.
        let mut old = serde_json::to_value(&r).expect("json");
        old["killed_by"]
            .as_object_mut()
            .expect("killed_by")
            .remove("handled");
        let back: Report = serde_json::from_value(old).expect("old report");
        assert!(back.killed_by.is_some_and(|k| !k.handled));
    }

    /// `claude --version` and friends: a Claude Code root that exits 0 without ever being a
    /// conversation leaves no report; anything else about a root does.
    #[test]
    fn a_clean_exit_of_a_root_without_a_conversation_is_not_reported() {
        let mut e = exit_event(ROOT_PID, "claude");
        e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
        fn session(e: &mut Event) -> &mut SessionJson {
            e.attr.as_mut().unwrap().session.as_mut().unwrap()
        }
        assert!(session(&mut e).claude_session_id.is_some());
        assert_eq!(worth_reporting(&e, false), Some(SESSION_ENDED));
        session(&mut e).claude_session_id = None;
        assert_eq!(worth_reporting(&e, false), None);
        exit_mut(&mut e).exit_code = Some(1);
        assert_eq!(worth_reporting(&e, false), Some(SESSION_ENDED));
        exit_mut(&mut e).exit_code = Some(0);
        signaled(&mut e, 9, CauseKind::Killed);
        assert_eq!(worth_reporting(&e, false), Some(SESSION_ENDED));
        // Another agent's root has no registry: its clean exit is still its end.
        let mut e = exit_event(ROOT_PID, "aider");
        e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
        session(&mut e).claude_session_id = None;
        session(&mut e).agent = "aider".to_owned();
        assert_eq!(worth_reporting(&e, false), Some(SESSION_ENDED));
    }

    #[test]
    fn crash_summary_uses_the_signal_wording_and_core_dump() {
        let mut e = exit_event(703, "python3");
        signaled(&mut e, 11, CauseKind::Crashed);
        exit_mut(&mut e).core_dumped = true;
        let r = build_test(&e, CRASHED, Context::default());
        assert!(
            r.summary.ends_with(
                ", crashed with SIGSEGV (segmentation fault: invalid memory access) and dumped \
                 core."
            ),
            "{}",
            r.summary
        );
        assert_eq!(r.summary.matches("dumped core").count(), 1);
        assert_eq!(r.id, "20261121T220158Z-703-crash");
        assert!(r.explanation.as_ref().unwrap().title.starts_with("SIGSEGV"));
    }

    #[test]
    fn session_ended_summary_says_root_status_lifetime_and_survivors() {
        let mut e = exit_event(ROOT_PID, "claude");
        e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
        e.attr.as_mut().unwrap().tool_call = None;
        exit_mut(&mut e).duration_ms = (2.0 * 3600.0 + 13.0 * 60.0 + 5.0) * 1000.0;
        let ctx = Context {
            alive: vec![(ROOT_PID, "claude".to_owned()), (1200, "node".to_owned())],
            ..Context::default()
        };
        let r = build_test(&e, SESSION_ENDED, ctx);
        assert_eq!(
            r.summary,
            "claude (pid 1000), the root of Claude Code session 3f2a9c1e… in /src/app, exited \
             with status 0 (success) after 2 h 13 min; 1 of its processes is still running."
        );
        // The dead process itself is never listed as still running.
        assert_eq!(
            r.alive,
            vec![ProcRef {
                pid: 1200,
                comm: "node".to_owned()
            }]
        );
        assert_eq!(r.id, "20261121T220158Z-1000-exit0");
        assert_eq!(
            r.process.started.as_deref(),
            Some("2026-11-21T19:48:53.749139Z")
        );
    }

    #[test]
    fn incomplete_when_records_were_lost() {
        let e = exit_event(22606, "python3");
        let r = build_test(
            &e,
            NONZERO_EXIT,
            Context {
                complete: false,
                lost_nearby: 12,
                ..Context::default()
            },
        );
        assert!(!r.complete);
        assert!(render_text(&r).contains("12 record(s) were lost"));
        let r = build_test(&e, NONZERO_EXIT, Context::default());
        assert!(r.complete);
        assert!(!render_text(&r).contains("may be incomplete"));
    }

    #[test]
    fn text_has_every_section_in_order_with_the_facts() {
        let e = oom_event(22606, "python3");
        let ctx = Context {
            cmdline: Some(vec!["python3".to_owned(), "train.py".to_owned()]),
            memcg: oom_chain(),
            samples: (0..12)
                .map(|i| {
                    sample(
                        &format!("2026-11-21T22:01:{:02}.000000000Z", 30 + 2 * i),
                        1000 + i,
                    )
                })
                .collect(),
            alive: vec![(ROOT_PID, "claude".to_owned())],
            ..Context::default()
        };
        let r = build_test(&e, OOM_KILL, ctx);
        let text = render_text(&r);
        let sections = [
            "What died\n",
            "Cause\n",
            "Evidence\n",
            "Memory cgroup\n",
            "Session\n",
            "Last resource samples\n",
            "Still running\n",
            "Explanation\n",
        ];
        let mut at = 0;
        for s in sections {
            let found = text[at..]
                .find(&format!("\n{s}"))
                .unwrap_or_else(|| panic!("section {s:?} missing or out of order:\n{text}"));
            at += found + 1;
        }
        assert!(text.starts_with("Exit report 20261121T220158Z-22606-oom:"));
        assert!(text.contains(&r.summary));
        assert!(text.contains("python3 train.py"));
        assert!(text.contains("python3 (22606) <- bash (900) <- claude (1000)"));
        assert!(text.contains("1.7 GiB at /app (an ancestor)"));
        assert!(text.contains("ancestor cgroup /app"));
        assert!(text.contains("anonymous RSS 1.6 GiB"));
        assert!(text.contains("3f2a9c1e-0000-4000-8000-000000000001"));
        // Only the last 10 samples are shown: 22:01:30 and 22:01:32 are not.
        assert!(!text.contains("2026-11-21 22:01:30"));
        assert!(text.contains("2026-11-21 22:01:34"));
        assert!(text.contains("2026-11-21 22:01:52"));
        assert_eq!(r.last_samples.len(), 12, "the JSON keeps every sample");
        assert!(text.contains("SIGKILL"));
        assert!(text.contains("What to do:"));
        assert!(!text.contains("may be incomplete"));
    }

    #[test]
    fn text_of_a_report_outside_sessions_still_has_every_section() {
        let mut e = oom_event(801, "memhog");
        no_session(&mut e);
        let text = render_text(&build_test(&e, OOM_KILL, Context::default()));
        for s in [
            "What died",
            "Cause",
            "Evidence",
            "Memory cgroup",
            "Session",
            "Last resource samples",
            "Still running",
            "Explanation",
        ] {
            assert!(text.contains(&format!("\n{s}\n")), "{s} missing:\n{text}");
        }
        assert!(text.contains("none (outside every session)"));
        assert!(text.contains("not read"));
    }

    // ---- sender lineage ----

    fn fake_stat(root: &Path, pid: u32, comm: &str, ppid: u32, start: u64) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        let middle = vec!["0"; 17].join(" ");
        fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) S {ppid} {middle} {start} 0 0\n"),
        )
        .unwrap();
    }

    #[test]
    fn sender_lineage_follows_parents_only_for_the_same_process() {
        let root = temp_dir("lineage");
        fake_stat(&root, 665, "provoke) sh", 600, 303474);
        fake_stat(&root, 600, "bash", 1, 300000);
        fake_stat(&root, 1, "init", 0, 1);
        let k = killed_by(None, false, 15);
        assert_eq!(
            sender_lineage(&root, &k),
            vec![
                (665, "provoke) sh".to_owned()),
                (600, "bash".to_owned()),
                (1, "init".to_owned())
            ]
        );
        // Pid reused since: another start time, no lineage.
        fake_stat(&root, 665, "other", 600, 999);
        assert!(sender_lineage(&root, &k).is_empty());
        // Unknown identity: nothing to verify against.
        let mut unknown = k.clone();
        unknown.proc_id = None;
        assert!(sender_lineage(&root, &unknown).is_empty());
        // A cycle in bad data ends.
        fake_stat(&root, 5, "a", 6, 1);
        fake_stat(&root, 6, "b", 5, 1);
        assert_eq!(proc_lineage(&root, 5, 16).len(), 2);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn build_reads_the_sender_lineage() {
        let root = temp_dir("build-lineage");
        fake_stat(&root, 665, "provoke.sh", 1, 303474);
        fake_stat(&root, 1, "init", 0, 1);
        let mut e = exit_event(669, "sleep");
        signaled(&mut e, 9, CauseKind::Killed);
        exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 9));
        let r = build_at(&e, KILLED_FROM_OUTSIDE, Context::default(), now(), &root);
        assert_eq!(
            r.killed_by.as_ref().unwrap().lineage,
            vec![
                ProcRef {
                    pid: 665,
                    comm: "provoke.sh".to_owned()
                },
                ProcRef {
                    pid: 1,
                    comm: "init".to_owned()
                }
            ]
        );
        assert!(render_text(&r).contains("provoke.sh (665) <- init (1)"));
        fs::remove_dir_all(&root).unwrap();
    }

    // ---- store ----

    fn at(mut e: Event, ts: &str) -> Event {
        e.ts = ts.to_owned();
        e
    }

    #[test]
    fn store_writes_json_and_text_and_reads_them_back() {
        let dir = temp_dir("store-rw");
        let store = ReportStore::in_data_dir(&dir);
        let r = build_test(&oom_event(22606, "python3"), OOM_KILL, Context::default());
        let path = store.write(&r).unwrap();
        assert_eq!(path, dir.join("reports/20261121T220158Z-22606-oom.json"));
        let txt = fs::read_to_string(dir.join("reports/20261121T220158Z-22606-oom.txt")).unwrap();
        assert_eq!(txt, render_text(&r));
        let back = store.get(&r.id).unwrap();
        assert_eq!(back.id, r.id);
        assert_eq!(back.summary, r.summary);
        assert_eq!(back.process.pid, 22606);
        assert_eq!(back.session, r.session);
        assert_eq!(back.oom, r.oom);
        assert_eq!(back.memcg, r.memcg);
        assert_eq!(back.event["pid"], 22606);
        // No temp files left behind.
        let names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn store_never_overwrites_a_report_with_the_same_id() {
        let dir = temp_dir("store-collide");
        let store = ReportStore::new(dir.join("reports"));
        let r = build_test(&oom_event(22606, "python3"), OOM_KILL, Context::default());
        let first = store.write(&r).unwrap();
        let second = store.write(&r).unwrap();
        let third = store.write(&r).unwrap();
        assert_ne!(first, second);
        assert!(second.ends_with("20261121T220158Z-22606-oom-2.json"));
        assert!(third.ends_with("20261121T220158Z-22606-oom-3.json"));
        assert!(
            dir.join("reports/20261121T220158Z-22606-oom-2.txt")
                .is_file()
        );
        assert_eq!(
            store.get("20261121T220158Z-22606-oom-2").unwrap().id,
            "20261121T220158Z-22606-oom-2"
        );
        // The exact id wins over being a prefix of the others.
        assert_eq!(
            store.get("20261121T220158Z-22606-oom").unwrap().id,
            "20261121T220158Z-22606-oom"
        );
        let err = store.get("20261121T220158Z-22606").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("ambiguous"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn three_reports(store: &ReportStore) {
        let oom = at(
            oom_event(22606, "python3"),
            "2026-11-21T22:00:00.000000000Z",
        );
        let mut crash = at(exit_event(703, "python3"), "2026-11-21T23:00:00.000000000Z");
        signaled(&mut crash, 11, CauseKind::Crashed);
        let mut other = at(exit_event(42, "make"), "2026-11-21T21:00:00.000000000Z");
        exit_mut(&mut other).exit_code = Some(3);
        other.attr.as_mut().unwrap().session = Some(SessionJson {
            id: "2000:7".to_owned(),
            claude_session_id: Some("aaaa1111-2222".to_owned()),
            ..session()
        });
        // Written out of order: the listing sorts.
        store
            .write(&build_test(&other, NONZERO_EXIT, Context::default()))
            .unwrap();
        store
            .write(&build_test(&crash, CRASHED, Context::default()))
            .unwrap();
        store
            .write(&build_test(&oom, OOM_KILL, Context::default()))
            .unwrap();
    }

    fn ids(list: &[ReportSummary]) -> Vec<&str> {
        list.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn store_lists_newest_first_with_filters_and_limit() {
        let dir = temp_dir("store-list");
        let store = ReportStore::in_data_dir(&dir);
        assert!(
            store.list(&ListFilter::default()).unwrap().is_empty(),
            "no directory yet"
        );
        assert!(store.last().unwrap().is_none());
        three_reports(&store);
        let all = store.list(&ListFilter::default()).unwrap();
        assert_eq!(
            ids(&all),
            [
                "20261121T230000Z-703-crash",
                "20261121T220000Z-22606-oom",
                "20261121T210000Z-42-exit3"
            ]
        );
        let f = |session: Option<&str>, cause: Option<&str>, limit: Option<usize>| ListFilter {
            session: session.map(str::to_owned),
            cause: cause.map(str::to_owned),
            limit,
        };
        assert_eq!(ids(&store.list(&f(None, None, Some(2))).unwrap()).len(), 2);
        assert_eq!(
            ids(&store.list(&f(None, None, Some(1))).unwrap()),
            ["20261121T230000Z-703-crash"]
        );
        for cause in ["oom", "oom_killed", "oom_kill"] {
            assert_eq!(
                ids(&store.list(&f(None, Some(cause), None)).unwrap()),
                ["20261121T220000Z-22606-oom"],
                "{cause}"
            );
        }
        assert_eq!(
            ids(&store.list(&f(None, Some("exit3"), None)).unwrap()),
            ["20261121T210000Z-42-exit3"]
        );
        assert_eq!(
            ids(&store.list(&f(None, Some("nonzero_exit"), None)).unwrap()),
            ["20261121T210000Z-42-exit3"]
        );
        assert!(
            store
                .list(&f(None, Some("killed"), None))
                .unwrap()
                .is_empty()
        );
        // Session by Claude Code session id prefix or by the agent session id prefix.
        assert_eq!(
            ids(&store.list(&f(Some("aaaa"), None, None)).unwrap()),
            ["20261121T210000Z-42-exit3"]
        );
        assert_eq!(
            ids(&store.list(&f(Some("2000:"), None, None)).unwrap()),
            ["20261121T210000Z-42-exit3"]
        );
        assert_eq!(store.list(&f(Some("3f2a"), None, None)).unwrap().len(), 2);
        assert_eq!(
            ids(&store.list(&f(Some("3f2a"), Some("crash"), None)).unwrap()),
            ["20261121T230000Z-703-crash"]
        );
        assert_eq!(
            store.last().unwrap().unwrap().id,
            "20261121T230000Z-703-crash"
        );
        // Unique prefix.
        assert_eq!(
            store.get("20261121T21").unwrap().id,
            "20261121T210000Z-42-exit3"
        );
        assert_eq!(
            store.get("2026").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            store.get("2025").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            store.get("../reports/x").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            store.get("").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_and_temporary_files_are_skipped() {
        let dir = temp_dir("store-corrupt");
        let store = ReportStore::in_data_dir(&dir);
        three_reports(&store);
        // Newest by name and garbage inside, a truncated report, a leftover temp file.
        fs::write(
            store.dir().join("20991231T000000Z-1-oom.json"),
            b"{not json",
        )
        .unwrap();
        let good = fs::read(store.dir().join("20261121T230000Z-703-crash.json")).unwrap();
        fs::write(
            store.dir().join("20991231T000000Z-2-crash.json"),
            &good[..good.len() / 2],
        )
        .unwrap();
        fs::write(
            store.dir().join(".20991231T000000Z-3-oom.json.1.2.0.tmp"),
            &good,
        )
        .unwrap();
        fs::write(store.dir().join("notes.txt"), b"hello").unwrap();
        let all = store.list(&ListFilter::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            store.last().unwrap().unwrap().id,
            "20261121T230000Z-703-crash"
        );
        let err = store.get("20991231T000000Z-1-oom").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("20991231T000000Z-1-oom.json"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn list_table_has_a_header_and_one_line_per_report() {
        let dir = temp_dir("store-table");
        let store = ReportStore::in_data_dir(&dir);
        three_reports(&store);
        let list = store.list(&ListFilter::default()).unwrap();
        let table = render_list(&list);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        for h in [
            "ID",
            "TIME (UTC)",
            "CAUSE",
            "PID",
            "COMM",
            "SESSION",
            "SUMMARY",
        ] {
            assert!(lines[0].contains(h), "{}", lines[0]);
        }
        assert!(lines[1].starts_with("20261121T230000Z-703-crash  "));
        assert!(lines[1].contains("2026-11-21 23:00:00"));
        assert!(lines[1].contains("crashed"));
        assert!(lines[1].contains("3f2a9c1e…"));
        assert!(lines[3].contains("aaaa1111…"), "{}", lines[3]);
        // The summary is cut to one short column.
        assert!(lines[2].ends_with('…'), "{}", lines[2]);
        let summary_col = lines[0].find("SUMMARY").unwrap();
        // Aligned in characters (the session column holds a multi-byte '…').
        let at = lines[1].find("python3 (pid 703)").unwrap();
        assert_eq!(lines[1][..at].chars().count(), summary_col);
        assert_eq!(render_list(&[]), "no reports\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(64 << 20), "64.0 MiB");
        assert_eq!(fmt_bytes(LIMIT_1_7_GIB), "1.7 GiB");
        assert_eq!(fmt_ms(0.581), "1 ms");
        assert_eq!(fmt_ms(12_340.0), "12.3 s");
        assert_eq!(fmt_ms(718_000.0), "11 min 58 s");
        assert_eq!(fmt_ms(3.0 * 86_400_000.0 + 4.0 * 3_600_000.0), "3 d 4 h");
        assert_eq!(sanitize("a/b c:.."), "a_b_c_..");
        assert_eq!(sanitize("..x"), "x");
    }
}

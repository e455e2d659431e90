//! Attribution of an event: the process's identity, session, lineage and tool call, and
//! why a process ended.

use serde::Serialize;

/// The `session` object of an event.
#[derive(Clone, Debug, PartialEq, Serialize, Eq, serde::Deserialize)]
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

/// The `session.agent` of a command that `claude-monitor run` had the daemon watch
/// (`POST /v1/watch`).
pub const RUN_AGENT: &str = "run";

/// Attribution of one event's process.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Attr {
    pub proc_id: Option<String>,
    pub session: Option<SessionJson>,
    /// From the process up to its session root (pid, comm); null outside sessions.
    pub ancestry: Option<Vec<Ancestor>>,
    /// The agent tool call the process runs for (Claude Code's Bash tool), when known.
    pub tool_call: Option<ToolCallRef>,
}

/// The `tool_call` object: a Bash tool call of a session, from its transcript.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ToolCallRef {
    pub id: String,
    pub name: String,
    pub command: Option<String>,
}

/// Bound on `ancestry` chains (and a guard against cycles from bad data).
pub const ANCESTRY_MAX: usize = 16;

/// One step of an event's `ancestry`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
}

impl Cause {
    /// A cause without sender or OOM details.
    pub fn only(cause: CauseKind) -> Cause {
        Cause {
            cause,
            killed_by: None,
            oom: None,
        }
    }
}

/// Who sent a fatal signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    /// The victim caught the signal with a handler and then ended by itself: it exited
    /// (cause `terminated`) or re-raised the signal (cause `killed`). Reports written
    /// before it existed lack it (read as `false`).
    #[serde(default)]
    pub handled: bool,
}

/// OOM facts attached to an `oom_killed` exit.
#[derive(Clone, Debug, PartialEq, Serialize, Eq, serde::Deserialize)]
pub struct OomCause {
    pub trigger_pid: u32,
    pub trigger_comm: String,
    pub anon_rss_kb: Option<u64>,
    pub total_vm_kb: Option<u64>,
    pub memcg_id: Option<u64>,
}

/// Why a process ended.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Cause {
    pub cause: CauseKind,
    pub killed_by: Option<KilledBy>,
    pub oom: Option<OomCause>,
}

/// The kinds of death (`exit.cause`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum CauseKind {
    /// It exited by itself (any exit code).
    Exited,
    /// It caught a terminating signal and then exited from its handler (`killed_by` says
    /// who sent it, with `handled: true`).
    Terminated,
    /// A crash signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS, SIGTRAP) raised by
    /// the fault itself, by the kernel or by the process.
    Crashed,
    /// The OOM killer chose it.
    OomKilled,
    /// A signal from another process killed it (`killed_by`, when the sender was seen).
    Killed,
    /// The kernel sent the fatal signal (`SI_KERNEL`), not a process and not a fault.
    KilledByKernel,
    /// The kernel program could not read the exit status (`exit_code` and `signal` are
    /// null): the agent does not guess.
    Unknown,
}

names!(CauseKind {
    Exited => "exited",
    Terminated => "terminated",
    Crashed => "crashed",
    OomKilled => "oom_killed",
    Killed => "killed",
    KilledByKernel => "killed_by_kernel",
    Unknown => "unknown",
});

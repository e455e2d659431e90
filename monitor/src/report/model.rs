//! The report's model: what a report holds, and what the daemon gathers around an exit ([`Context`]).

use serde::{Deserialize, Serialize};

use super::Reason;
use crate::{
    event::CauseKind,
    event::{Ancestor, ExitStatus, KilledBy, OomCause, SessionJson, ToolCallRef, Usage},
    host::memcg::MemcgLevel,
    signals::explain::Explanation,
};

/// What the daemon knows around an exit besides the event itself, gathered when the exit is
/// read (most of it is gone minutes later).
#[derive(Clone, Debug)]
pub struct Context {
    /// The process's argv, remembered from its exec (/proc has nothing once it exited).
    pub cmdline: Option<Vec<String>>,
    /// [`memcg::chain`](crate::host::memcg::chain) of the process's memory cgroup, read at the time of the exit,
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

/// One exit report. Written as `<id>.json`; [`render_text`](super::render_text) gives the `<id>.txt` twin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `<UTC yyyymmddThhmmssZ of the exit>-<pid>-<short cause>`, plus `-N` when taken:
    /// sortable by time of death and safe as a file name.
    pub id: String,
    /// When the report was written, RFC 3339.
    pub created: String,
    /// Why it was written.
    pub reason: Reason,
    /// The cause in one plain sentence.
    pub summary: String,
    pub process: ProcessInfo,
    pub session: Option<SessionJson>,
    pub tool_call: Option<ToolCallRef>,
    /// From the process up to its session root; null outside sessions.
    pub ancestry: Option<Vec<Ancestor>>,
    /// The event's `cause`.
    pub cause: CauseKind,
    pub killed_by: Option<SenderInfo>,
    pub oom: Option<OomCause>,
    pub memcg: MemcgInfo,
    /// Plain-language explanation of the signal or exit status.
    pub explanation: Option<ExplanationText>,
    /// The session's last resource samples before the exit, oldest first.
    pub last_samples: Vec<Sample>,
    /// The other processes of the session still running at the time of the report.
    pub alive: Vec<Ancestor>,
    /// `false` when records were lost around the exit.
    pub complete: bool,
    pub lost_nearby: u64,
    /// The raw exit event, as written to the event log.
    pub event: serde_json::Value,
    /// For the command of `claude-monitor run`: how its whole tree ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Box<super::CommandSummary>>,
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
    /// The exit event's, field for field.
    #[serde(flatten)]
    pub status: ExitStatus,
    #[serde(flatten)]
    pub usage: Usage,
}

/// Who sent the fatal signal (the event's `killed_by`, whose fields it reads through), with
/// names and where that sender came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderInfo {
    #[serde(flatten)]
    pub sender: KilledBy,
    pub signal_name: Option<String>,
    pub si_code_name: Option<String>,
    /// Sender first, then its parents up to init, read from /proc when the report was built
    /// (see [`sender_lineage`](super::sender_lineage)); empty when the sender was already gone.
    pub lineage: Vec<Ancestor>,
}

impl std::ops::Deref for SenderInfo {
    type Target = KilledBy;

    fn deref(&self) -> &KilledBy {
        &self.sender
    }
}

/// The process's memory cgroup and its ancestors, read from cgroupfs at the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemcgInfo {
    pub id: Option<u64>,
    pub path: Option<String>,
    /// Innermost first; empty when not read.
    pub levels: Vec<MemcgLevel>,
    /// The level whose limit is the effective one ([`memcg::binding_limit`](crate::host::memcg::binding_limit)).
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

//! The records of kernel events: exits, signals and their deliveries, OOM kills, forks,
//! execs, and `lost`.

use serde::{Deserialize, Serialize};

use super::Cause;

/// A signal taken by its target, with the target's disposition at that moment.
#[derive(Debug, Clone, Serialize)]
pub struct SignalDeliver {
    pub tid: u32,
    /// Name of thread `tid` when it is not the process's main thread (`comm` is the
    /// process's name, its leader's); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
    pub signal: i32,
    pub signal_name: Option<String>,
    pub si_code: i32,
    pub si_code_name: Option<&'static str>,
    pub disposition: Disposition,
    /// The signal's default action (null for a signal number without one).
    pub default_action: Option<DefaultAction>,
    pub outcome: Outcome,
    pub sa_flags: u64,
    /// Deliveries this record stands for (more than 1 for an aggregate of a flood).
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Exit {
    pub tid: u32,
    /// Name of the last thread out when it is not the process's main thread (`comm` is the
    /// process's name, its leader's); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
    pub ppid: u32,
    pub uid: u32,
    /// `exit_code`, `signal`, `signal_name`, `core_dumped`.
    #[serde(flatten)]
    pub status: ExitStatus,
    /// `peak_rss_kb`, `own_peak_rss_kb`, `utime_ms`, `stime_ms`.
    #[serde(flatten)]
    pub usage: Usage,
    pub duration_ms: f64,
    pub memcg_id: Option<u64>,
    /// Path of the memory cgroup inside its hierarchy, resolved by the agent.
    pub memcg_path: Option<String>,
    /// Why it ended: `cause`, `killed_by`, `oom`.
    #[serde(flatten)]
    pub cause: Cause,
}

/// How a process ended, from its wait status (shared by the exit event and the report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Both null when the kernel could not read the status.
    pub exit_code: Option<u8>,
    pub signal: Option<u8>,
    pub signal_name: Option<String>,
    pub core_dumped: bool,
}

/// What a process used (shared by the exit event and the report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// `null` when the kernel could not read it.
    pub peak_rss_kb: Option<u64>,
    /// Peak RSS of the process's own (last) image, without what exec carried over from the
    /// parent's image; null when the kernel could not give it.
    pub own_peak_rss_kb: Option<u64>,
    /// `null` (both) when the kernel could not read a CPU time counter.
    pub utime_ms: Option<f64>,
    pub stime_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    pub signal: i32,
    pub signal_name: Option<String>,
    pub si_code: i32,
    pub si_code_name: Option<&'static str>,
    pub result: SignalResult,
    pub group: bool,
    /// Signals this record stands for: 1, or more for an aggregate of a flood (same
    /// sender, target and signal) counted in the kernel.
    pub count: u64,
    pub sender: Sender,
    pub target: Target,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sender {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub uid: u32,
    pub proc_id: Option<String>,
    /// The sender's session, when it belongs to one.
    pub session_id: Option<String>,
    /// Name of the sending thread `tid` when it is not the process's main thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub pid: u32,
    pub tid: u32,
    /// The process's name (its leader's).
    pub comm: String,
    /// Name of thread `tid` when it is not the process's main thread; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Oom {
    pub victim: Victim,
    pub trigger: Trigger,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
    pub memcg_id: Option<u64>,
    pub memcg_path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Victim {
    pub pid: u32,
    pub comm: String,
    pub uid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fork {
    pub tid: u32,
    pub ppid: u32,
    pub parent_tid: u32,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Exec {
    pub tid: u32,
    pub old_tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub filename: String,
    /// The start of argv as the kernel captured it at exec (the first
    /// [`monitor_common::ARGS_LEN`] bytes of the argument area); `None` when unreadable.
    pub argv: Option<Vec<String>>,
    /// `argv` was cut: its last element is a prefix of an argument, and later ones are missing.
    pub argv_truncated: bool,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Lost {
    pub count: u64,
    pub reason: LostReason,
}

/// A target's disposition for a signal at delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// `SIG_DFL`: the default action.
    Default,
    /// `SIG_IGN`.
    Ignored,
    /// A handler of the process's own.
    Handler,
    /// The kernel program could not read it.
    Unknown,
}

/// What the kernel does with a signal nobody handles (signal(7), "Standard signals").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Terminate the process.
    Terminate,
    /// Terminate the process and dump core (if core dumps are enabled).
    Core,
    /// Nothing happens.
    Ignore,
    /// Pause the process until SIGCONT.
    Stop,
    /// Resume a stopped process.
    Continue,
}

/// What a delivery did: the handler ran, the signal was discarded (ignored), or with the
/// default disposition its default action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Handler,
    Discarded,
    Terminate,
    Core,
    Ignore,
    Stop,
    Continue,
    Unknown,
}

impl Outcome {
    /// The outcome of a delivery with this disposition, for a signal whose default action
    /// is `action`.
    pub fn of(disposition: Disposition, action: Option<DefaultAction>) -> Outcome {
        match (disposition, action) {
            (Disposition::Handler, _) => Outcome::Handler,
            (Disposition::Ignored, _) => Outcome::Discarded,
            (Disposition::Default, Some(DefaultAction::Terminate)) => Outcome::Terminate,
            (Disposition::Default, Some(DefaultAction::Core)) => Outcome::Core,
            (Disposition::Default, Some(DefaultAction::Ignore)) => Outcome::Ignore,
            (Disposition::Default, Some(DefaultAction::Stop)) => Outcome::Stop,
            (Disposition::Default, Some(DefaultAction::Continue)) => Outcome::Continue,
            (Disposition::Default, None) | (Disposition::Unknown, _) => Outcome::Unknown,
        }
    }
}

/// The kernel's verdict when a signal was generated (the `signal_generate` tracepoint's
/// `result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalResult {
    Delivered,
    Ignored,
    AlreadyPending,
    OverflowFail,
    LoseInfo,
    Unknown,
}

impl SignalResult {
    /// From the tracepoint's `TRACE_SIGNAL_*` value.
    pub fn from_raw(result: i32) -> SignalResult {
        match result {
            0 => SignalResult::Delivered,
            1 => SignalResult::Ignored,
            2 => SignalResult::AlreadyPending,
            3 => SignalResult::OverflowFail,
            4 => SignalResult::LoseInfo,
            _ => SignalResult::Unknown,
        }
    }
}

/// Why records were lost (`lost.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostReason {
    /// Records the kernel dropped because the ring buffer was full.
    RingBufferFull,
    /// Processes that could not be followed in `--pid` mode (the watch map was full): not
    /// records, so not counted in `agent_stop.lost`.
    WatchMapFull,
    /// Records this agent could not read.
    DecodeError,
    /// Events an API subscriber's queue had no room for (it read too slowly): told to that
    /// subscriber only, never written to the event log.
    SubscriberQueue,
}

names!(LostReason {
    RingBufferFull => "ring_buffer_full",
    WatchMapFull => "watch_map_full",
    DecodeError => "decode_error",
    SubscriberQueue => "subscriber_queue",
});

impl LostReason {
    /// Whether these are event records (counted in `agent_stop.lost`).
    pub fn is_records(self) -> bool {
        matches!(self, LostReason::RingBufferFull | LostReason::DecodeError)
    }
}

names!(Disposition {
    Default => "default",
    Ignored => "ignored",
    Handler => "handler",
    Unknown => "unknown",
});

names!(DefaultAction {
    Terminate => "terminate",
    Core => "core",
    Ignore => "ignore",
    Stop => "stop",
    Continue => "continue",
});

names!(Outcome {
    Handler => "handler",
    Discarded => "discarded",
    Terminate => "terminate",
    Core => "core",
    Ignore => "ignore",
    Stop => "stop",
    Continue => "continue",
    Unknown => "unknown",
});

names!(SignalResult {
    Delivered => "delivered",
    Ignored => "ignored",
    AlreadyPending => "already_pending",
    OverflowFail => "overflow_fail",
    LoseInfo => "lose_info",
    Unknown => "unknown",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names() {
        assert_eq!(SignalResult::from_raw(0), SignalResult::Delivered);
        assert_eq!(SignalResult::from_raw(1), SignalResult::Ignored);
        assert_eq!(SignalResult::from_raw(2), SignalResult::AlreadyPending);
        assert_eq!(SignalResult::from_raw(9), SignalResult::Unknown);
    }

    #[test]
    fn outcome_of_a_delivery() {
        use DefaultAction as A;
        use Disposition as D;
        assert_eq!(
            Outcome::of(D::Handler, Some(A::Terminate)),
            Outcome::Handler
        );
        assert_eq!(
            Outcome::of(D::Ignored, Some(A::Terminate)),
            Outcome::Discarded
        );
        assert_eq!(Outcome::of(D::Default, Some(A::Core)), Outcome::Core);
        assert_eq!(Outcome::of(D::Default, None), Outcome::Unknown);
        assert_eq!(Outcome::of(D::Unknown, Some(A::Stop)), Outcome::Unknown);
    }
}

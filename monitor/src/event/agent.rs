//! The agent's own records: `agent_start` and `agent_stop`.

use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct AgentStart {
    pub version: String,
    pub kernel: String,
    pub scope: Scope,
    pub hooks: Vec<HookName>,
    pub hooks_unavailable: Vec<Unavailable>,
    pub ring_buffer_bytes: u32,
    /// The hierarchy `memcg_id`s refer to (`null` when no memory controller is mounted).
    pub memory_cgroup: Option<MemoryHierarchy>,
    /// Facts about how fields are read on this kernel (e.g. exit detection method).
    pub notes: Vec<String>,
    /// Signals whose default action is to be ignored (SIGCHLD, SIGURG, SIGWINCH) are
    /// dropped in the kernel unless this is true.
    pub ignored_signals_reported: bool,
    /// Runtime signals (a process's non-fatal signals to itself and their deliveries,
    /// every thread's SIGKILL delivery of a group exit but the leader's) are dropped in the
    /// kernel and counted (`agent_stop.filtered`) unless this is true.
    pub runtime_signals_reported: bool,
    /// Pinned kernel objects (the daemon); `null` when nothing is pinned.
    pub pin: Option<PinInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Scope {
    pub mode: ScopeName,
    /// The roots given with `--pid` (empty otherwise).
    pub pids: Vec<u32>,
    /// The session given with `--session`.
    pub session: Option<String>,
    /// Processes followed at start: the roots and their descendants found in /proc.
    pub watched_at_start: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unavailable {
    pub hook: HookName,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentStop {
    /// Records written, this one excluded.
    pub events: u64,
    /// Records the kernel could not deliver, in total.
    pub lost: u64,
    pub reason: StopReason,
    /// Each kernel program's run count and run time, when the kernel's BPF statistics are
    /// on (`sysctl kernel.bpf_stats_enabled=1`); `null` otherwise.
    pub programs: Option<Vec<ProgramStats>>,
    /// Records the kernel did not write by design (runtime signals), counted there.
    pub filtered: Filtered,
}

/// Records not written because they are runtime noise (`agent_start.notes` says so; reported
/// with `--runtime-signals` / `watch.runtime_signals = "report"`), counted in the kernel
/// from `agent_start` to `agent_stop`. Each count is of the records of that kind not written.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Filtered {
    /// `signal`: signals a process sent itself (to any of its threads) that did not end it.
    pub self_signal: u64,
    /// `signal_deliver`: their deliveries, taken without ending the process.
    pub self_signal_deliver: u64,
    /// `signal_deliver`: the SIGKILL of a group exit taken by a thread other than the leader.
    pub group_kill_deliver: u64,
}

/// The scope's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeName {
    /// Every process of the host.
    All,
    /// The trees of `--pid` roots.
    Pids,
    /// Every agent session.
    Claude,
    /// One session.
    Session,
}

/// Why the agent stopped (`agent_stop.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--duration` elapsed.
    Duration,
    Sigterm,
    Sigint,
}

names!(StopReason {
    Duration => "duration",
    Sigterm => "sigterm",
    Sigint => "sigint",
});

/// What happened to pinned objects at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinInfo {
    pub dir: PathBuf,
    pub state: PinState,
}

/// `agent_start.pin.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinState {
    /// The kernel kept recording while the agent was down and its backlog is read first.
    Reused,
    /// Pinned programs of another version or configuration were swapped for new ones
    /// (their backlog is read first).
    Replaced,
    /// Nothing was pinned.
    Created,
}

/// One program's kernel statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Where the memory controller lives on this host (found by `host::cgroups`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryHierarchy {
    pub version: CgroupVersion,
    pub mount: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

names!(ScopeName {
    All => "all",
    Pids => "pids",
    Claude => "claude",
    Session => "session",
});

names!(PinState {
    Reused => "reused",
    Replaced => "replaced",
    Created => "created",
});

names!(CgroupVersion {
    V1 => "v1",
    V2 => "v2",
});

/// The kernel hooks (tracepoints) the programs attach to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookName {
    SchedProcessExit,
    SchedProcessFork,
    SchedProcessExec,
    SignalGenerate,
    SignalDeliver,
    MarkVictim,
}

names!(HookName {
    SchedProcessExit => "sched_process_exit",
    SchedProcessFork => "sched_process_fork",
    SchedProcessExec => "sched_process_exec",
    SignalGenerate => "signal_generate",
    SignalDeliver => "signal_deliver",
    MarkVictim => "mark_victim",
});

//! Wire types shared by the kernel programs (`monitor-ebpf`) and the userspace agent.
//!
//! Every ring-buffer record starts with a [`Header`] whose `kind` has a stable discriminant;
//! the payload layout for each kind is a `#[repr(C)]` struct of fixed size with explicit
//! padding and no `bool`. Sizes are checked at compile time so that a change on one side
//! cannot silently shift the other. With the `user` feature the crate also provides the
//! userspace decoder ([`decode`]), which checks lengths and returns a typed error instead of
//! reading past the end of a record.
//!
//! Kernel struct offsets are never compiled in: userspace computes [`Offsets`] from the
//! running kernel's BTF and passes them to the programs as a read-only global.
#![no_std]

#[cfg(feature = "user")]
mod decode;
#[cfg(feature = "user")]
pub use decode::{DecodeError, ExecArgv, Record, decode};

/// Version of the record layout; bumped on any change of the structs below.
pub const WIRE_VERSION: u16 = 7;
/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of the exec filename kept (NUL-terminated, truncated beyond).
pub const FILENAME_LEN: usize = 256;
/// Bytes of an exec'd program's argument area kept (`Exec::args`): enough for argv[0] and
/// the first arguments, which is what session detection looks at; the whole command line is
/// read from /proc while the process lives.
pub const ARGS_LEN: usize = 128;
/// Marker for an offset or index the running kernel does not have.
pub const UNAVAILABLE: u32 = u32::MAX;

/// Record kinds. Discriminants are part of the wire format: never renumber.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exit = 1,
    Signal = 2,
    Oom = 3,
    Fork = 4,
    Exec = 5,
    SignalDeliver = 6,
}

impl Kind {
    pub const fn from_u16(v: u16) -> Option<Kind> {
        match v {
            1 => Some(Kind::Exit),
            2 => Some(Kind::Signal),
            3 => Some(Kind::Oom),
            4 => Some(Kind::Fork),
            5 => Some(Kind::Exec),
            6 => Some(Kind::SignalDeliver),
            _ => None,
        }
    }
}

/// Common to every record. `pid`/`tid`/`comm` describe the process the record is about
/// (the exiting process, the signal's target, the OOM victim, the new child, the exec'ing
/// process). In `Exit`, `Signal` and `SignalDeliver` records `comm` is the process's name
/// (its thread-group leader's), and the thread's own name is in their `thread_comm`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u16,
    pub version: u16,
    pub cpu: u32,
    /// `CLOCK_BOOTTIME` nanoseconds (`bpf_ktime_get_boot_ns`).
    pub ts_ns: u64,
    /// Thread-group id (what userspace calls the pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
}

/// `sched_process_exit` when the thread group is dead (one per process).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub header: Header,
    pub ppid: u32,
    pub uid: u32,
    /// Raw wait status (`task->exit_code`): code in bits 8..16, signal in 0..7, core dump 0x80.
    pub exit_status: u32,
    pub flags: u32,
    /// `signal->maxrss`, pages.
    pub maxrss_pages: u64,
    /// User and system CPU time of the whole thread group, nanoseconds.
    pub utime_ns: u64,
    pub stime_ns: u64,
    /// `task->start_boottime`, `CLOCK_BOOTTIME` ns.
    pub start_boottime_ns: u64,
    /// Memory cgroup id (kernfs id = inode of the cgroup directory); 0 when unknown.
    pub memcg_id: u64,
    /// Peak RSS of the process's own address space, pages: max(`mm->hiwater_rss`, current
    /// rss) of the exiting image; 0 when the mm was already gone at the tracepoint.
    pub mm_peak_pages: u64,
    /// Name of the last thread out (`header.comm` is the leader's, the process's name).
    pub thread_comm: [u8; COMM_LEN],
}

/// `signal_generate`, in the sender's context. The header describes the target.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Signal {
    pub header: Header,
    pub sig: i32,
    pub si_code: i32,
    /// `enum trace_signal_result`.
    pub result: i32,
    /// Non-zero when the signal targets the whole thread group.
    pub group: i32,
    pub sender_pid: u32,
    pub sender_tid: u32,
    pub sender_uid: u32,
    pub _pad: u32,
    /// The sender's process name (its leader's comm).
    pub sender_comm: [u8; COMM_LEN],
    /// Name of the sending thread (`sender_tid`).
    pub sender_thread_comm: [u8; COMM_LEN],
    /// Name of the target thread (`header.comm` is its process's, the leader's).
    pub thread_comm: [u8; COMM_LEN],
}

/// `mark_victim`. The header describes the victim.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Oom {
    pub header: Header,
    pub uid: u32,
    pub flags: u32,
    /// The task that was allocating when the victim was chosen (`current`).
    pub trigger_pid: u32,
    pub trigger_tid: u32,
    pub trigger_comm: [u8; COMM_LEN],
    /// Pages (`total_vm`, rss counters); bytes for page tables.
    pub total_vm_pages: u64,
    pub anon_rss_pages: u64,
    pub file_rss_pages: u64,
    pub shmem_rss_pages: u64,
    pub pgtables_bytes: u64,
    pub oom_score_adj: i32,
    pub _pad: u32,
    pub memcg_id: u64,
}

/// `signal_deliver`: a signal taken by the target (in its own context, from `get_signal()`),
/// with the disposition it had at that moment. The header describes the target thread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalDeliver {
    pub header: Header,
    pub sig: i32,
    pub si_code: i32,
    /// `DISPOSITION_*`.
    pub disposition: u32,
    pub _pad: u32,
    /// `sa_flags` of the action (SA_RESTART, SA_SIGINFO, ...).
    pub sa_flags: u64,
    /// Name of the thread that took the signal (`header.comm` is its process's).
    pub thread_comm: [u8; COMM_LEN],
}

/// The target's action for the signal was the default (`SIG_DFL`).
pub const DISPOSITION_DEFAULT: u32 = 0;
/// The target ignored the signal (`SIG_IGN`): it was discarded.
pub const DISPOSITION_IGNORED: u32 = 1;
/// The target had a handler: it ran.
pub const DISPOSITION_HANDLER: u32 = 2;
/// The disposition could not be read.
pub const DISPOSITION_UNKNOWN: u32 = 3;

/// `AggKey::sender` of the aggregator keys that count deliveries (not a valid tgid).
pub const AGG_DELIVER: u32 = u32::MAX;

/// `sched_process_fork` for a new process (thread creation is not reported).
/// The header describes the child.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Fork {
    pub header: Header,
    pub parent_pid: u32,
    pub parent_tid: u32,
    pub start_boottime_ns: u64,
    /// `FORK_FLAG_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// `sched_process_exec`. The header describes the process after exec (new comm).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Exec {
    pub header: Header,
    /// Thread id before exec (differs from `tid` when a non-leader thread exec'd).
    pub old_tid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// `EXEC_FLAG_*` bits.
    pub flags: u32,
    pub start_boottime_ns: u64,
    /// `signal->maxrss` just after exec, pages: the peak carried over from the image(s)
    /// before exec, a baseline for the new image's own peak.
    pub maxrss_pages: u64,
    /// Size of the whole argument area (`mm->arg_end - mm->arg_start`: argv's strings, each
    /// NUL-terminated), saturated at `u32::MAX`. With `EXEC_FLAG_ARGS`, `args` holds its first
    /// `min(args_len, ARGS_LEN)` bytes, so a larger value means argv was cut.
    pub args_len: u32,
    pub _pad: u32,
    pub filename: [u8; FILENAME_LEN],
    /// The start of the argument area, read from the new image's stack at exec: unlike
    /// /proc/PID/cmdline, still there when a short-lived process is gone by the time
    /// userspace reads the record. Bytes past `args_len` are unspecified.
    pub args: [u8; ARGS_LEN],
}

/// `Exit::flags`: the `group_dead` argument was not available; the exit was detected from
/// `signal->live`.
pub const EXIT_FLAG_LIVE_COUNTER: u32 = 1;
/// `Exit::flags`: `task->exit_code` could not be read; `exit_status` is 0 and means nothing.
pub const EXIT_FLAG_NO_STATUS: u32 = 1 << 1;
/// `Exit::flags`: a CPU time counter could not be read; `utime_ns`/`stime_ns` mean nothing.
pub const EXIT_FLAG_NO_TIMES: u32 = 1 << 2;
/// `Exit::flags`: `signal->maxrss` could not be read; `maxrss_pages` means nothing.
pub const EXIT_FLAG_NO_MAXRSS: u32 = 1 << 3;
/// `Exec::flags`: `args`/`args_len` were read (the offsets exist and the area was mapped).
/// The child of a watched process could not be added to `WATCHED` (the map is full): its
/// own children will not be followed unless userspace adds it.
pub const FORK_FLAG_UNWATCHED: u32 = 1;
pub const EXEC_FLAG_ARGS: u32 = 1;
/// `Exec::flags`: `maxrss_pages` was read (without it, it means nothing).
pub const EXEC_FLAG_MAXRSS: u32 = 1 << 1;
/// `Oom::flags`: the victim's memory figures were read (the victim still had an mm).
pub const OOM_FLAG_MEMORY: u32 = 1;
/// `Oom::flags`: rss figures come from percpu counters' central count (exact to within the
/// per-CPU batch).
pub const OOM_FLAG_RSS_APPROX: u32 = 2;

const _: () = assert!(core::mem::size_of::<Header>() == 40);
const _: () = assert!(core::mem::size_of::<Exit>() == 120);
const _: () = assert!(core::mem::size_of::<Signal>() == 120);
const _: () = assert!(core::mem::size_of::<Oom>() == 128);
const _: () = assert!(core::mem::size_of::<Fork>() == 64);
const _: () = assert!(core::mem::size_of::<SignalDeliver>() == 80);
const _: () = assert!(core::mem::size_of::<Exec>() == 464);
const _: () = assert!(core::mem::align_of::<Exit>() == 8);
const _: () = assert!(core::mem::align_of::<Exec>() == 8);
const _: () = assert!(core::mem::size_of::<Settings>() == 24);
const _: () = assert!(core::mem::size_of::<AggValue>() == 72);

/// Byte offsets of kernel struct fields, computed from the running kernel's BTF at start-up
/// and passed to the programs as the read-only global `OFFSETS`. [`UNAVAILABLE`] marks a field
/// this kernel does not have; programs then leave the corresponding figure at zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_real_parent: u32,
    pub task_real_cred: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub task_start_boottime: u32,
    pub task_utime: u32,
    pub task_stime: u32,
    pub task_group_leader: u32,
    pub task_cgroups: u32,
    pub task_mm: u32,
    pub cred_uid: u32,
    pub signal_maxrss: u32,
    pub signal_utime: u32,
    pub signal_stime: u32,
    pub signal_live: u32,
    pub signal_oom_score_adj: u32,
    /// `css_set.subsys[memory_cgrp_id]`: offset of the array element.
    pub css_set_memcg: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    pub mm_total_vm: u32,
    pub mm_hiwater_rss: u32,
    /// Offsets of the counter values for file, anon and shmem pages inside `mm_struct`
    /// (through `rss_stat`, whatever its layout on this kernel).
    pub mm_file_rss: u32,
    pub mm_anon_rss: u32,
    pub mm_shmem_rss: u32,
    pub mm_pgtables_bytes: u32,
    pub siginfo_code: u32,
    /// `struct k_sigaction` → `sa.sa_handler` and `sa.sa_flags`.
    pub ksigaction_handler: u32,
    pub ksigaction_flags: u32,
    /// `sizeof(struct k_sigaction)`: the stride of `sighand_struct.action[]`.
    pub ksigaction_size: u32,
    /// `task_struct.sighand` and `sighand_struct.action`: a target's disposition of each
    /// signal, read at generation to tell whether a process's signal to itself is fatal.
    pub task_sighand: u32,
    pub sighand_action: u32,
    /// `kernel_siginfo._sifields._kill._pid`: the sender's tgid of a user signal (SI_USER,
    /// SI_TKILL, SI_QUEUE), as seen in the target's pid namespace.
    pub siginfo_pid: u32,
    /// `task_struct.thread_pid` → `struct pid` { `level`, `numbers[]` of `struct upid`
    /// { `nr`, ... } }: a task's id in its own pid namespace (`numbers[level].nr`).
    pub task_thread_pid: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    pub bprm_filename: u32,
    /// `mm_struct.arg_start` / `arg_end`: the exec'd program's argument area.
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
}

impl Offsets {
    pub const fn unavailable() -> Offsets {
        let u = UNAVAILABLE;
        Offsets {
            task_pid: u,
            task_tgid: u,
            task_comm: u,
            task_real_parent: u,
            task_real_cred: u,
            task_exit_code: u,
            task_signal: u,
            task_start_boottime: u,
            task_utime: u,
            task_stime: u,
            task_group_leader: u,
            task_cgroups: u,
            task_mm: u,
            cred_uid: u,
            signal_maxrss: u,
            signal_utime: u,
            signal_stime: u,
            signal_live: u,
            signal_oom_score_adj: u,
            css_set_memcg: u,
            css_cgroup: u,
            cgroup_kn: u,
            kernfs_node_id: u,
            mm_total_vm: u,
            mm_hiwater_rss: u,
            mm_file_rss: u,
            mm_anon_rss: u,
            mm_shmem_rss: u,
            mm_pgtables_bytes: u,
            siginfo_code: u,
            ksigaction_handler: u,
            ksigaction_flags: u,
            ksigaction_size: u,
            task_sighand: u,
            sighand_action: u,
            siginfo_pid: u,
            task_thread_pid: u,
            pid_level: u,
            pid_numbers: u,
            upid_size: u,
            upid_nr: u,
            bprm_filename: u,
            mm_arg_start: u,
            mm_arg_end: u,
        }
    }
}

/// Behaviour switches, the read-only global `SETTINGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// One of the `SCOPE_*` values.
    pub scope: u32,
    /// `SETTING_*` bits.
    pub flags: u32,
    /// Signals of one (sender, target, signal) key reported one by one per window; the
    /// others of the window are only counted in `SIGNAL_AGG`. 0 disables aggregation.
    pub agg_burst: u32,
    pub _pad: u32,
    /// Length of an aggregation window.
    pub agg_window_ns: u64,
}

/// Report every process on the host.
pub const SCOPE_ALL: u32 = 0;
/// Report only processes whose tgid is in the `WATCHED` map (followed across fork).
pub const SCOPE_WATCHED: u32 = 1;
/// As `SCOPE_WATCHED`, and a process that execs a candidate agent image (its comm is in
/// `CANDIDATES`, or looks like a version number with `SETTING_VERSION_COMM`) is added to
/// `WATCHED` at exec, in the kernel, so its first children are followed; userspace then
/// confirms the session or removes the candidate.
pub const SCOPE_SESSIONS: u32 = 2;
/// Report OOM kills of every process even when the scope is `SCOPE_WATCHED`.
pub const SETTING_OOM_ALL: u32 = 4;
/// Report signals whose default action is to be ignored (SIGCHLD, SIGURG, SIGWINCH); by
/// default they are dropped in the kernel: every exit sends a SIGCHLD and it explains nothing.
pub const SETTING_REPORT_IGNORED_SIGNALS: u32 = 8;
/// `SCOPE_SESSIONS`: a comm starting with a digit is a candidate (Claude Code's native
/// installer names its binary by version: `~/.local/share/claude/versions/2.0.14`).
pub const SETTING_VERSION_COMM: u32 = 16;
/// `SCOPE_SESSIONS`: report every exec (a configured rule cannot be decided from the comm);
/// only candidates are added to `WATCHED` in the kernel.
pub const SETTING_EXEC_ALL: u32 = 32;
/// Report a process's runtime signals: the non-fatal signals it sends to itself (a runtime
/// signalling its own threads, e.g. JavaScriptCore's SIGPWR for garbage collection) and
/// their deliveries, and every thread's SIGKILL delivery of a group exit. By default they
/// are dropped in the kernel and counted (`COUNTER_SELF_SIGNAL`, `COUNTER_SELF_DELIVER`,
/// `COUNTER_GROUP_KILL_DELIVER`); of a group exit only the leader's delivery is reported.
pub const SETTING_REPORT_RUNTIME_SIGNALS: u32 = 64;

/// `WATCHED` value of a process added at exec as a candidate (others hold their parent).
pub const WATCHED_CANDIDATE: u32 = u32::MAX;

/// Key of the in-kernel signal aggregator `SIGNAL_AGG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AggKey {
    pub sender: u32,
    pub target: u32,
    pub sig: i32,
}

/// One (sender, target, signal) key's state. `suppressed` only grows (atomic add in the
/// kernel); userspace reports the increase since its last read as an aggregate record, so
/// no count is ever reset under a concurrent writer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AggValue {
    pub window_start_ns: u64,
    pub last_ns: u64,
    pub suppressed: u64,
    pub in_window: u32,
    pub sender_uid: u32,
    pub si_code: i32,
    pub result: i32,
    pub sender_comm: [u8; COMM_LEN],
    pub target_comm: [u8; COMM_LEN],
}

/// Capacity of `SIGNAL_AGG`; when it is full, signals of new keys are reported one by one.
pub const AGG_MAX: u32 = 16384;
/// Capacity of `CANDIDATES` (comms of candidate agent images).
pub const CANDIDATES_MAX: u32 = 64;
/// Default aggregation: 8 records per key per 100 ms.
pub const DEFAULT_AGG_BURST: u32 = 8;
pub const DEFAULT_AGG_WINDOW_NS: u64 = 100_000_000;

/// Index of the per-CPU counters in the `COUNTERS` map.
pub const COUNTER_RINGBUF_FULL: u32 = 0;
pub const COUNTER_WATCH_FULL: u32 = 1;
/// `signal` records not written: non-fatal signals a process sent to itself.
pub const COUNTER_SELF_SIGNAL: u32 = 2;
/// `signal_deliver` records not written: deliveries of signals a process sent to itself,
/// taken without ending it.
pub const COUNTER_SELF_DELIVER: u32 = 3;
/// `signal_deliver` records not written: a group exit's SIGKILL taken by a thread other
/// than the leader.
pub const COUNTER_GROUP_KILL_DELIVER: u32 = 4;
pub const COUNTERS_LEN: u32 = 5;

/// Capacity of the `WATCHED` map (processes followed in `SCOPE_WATCHED`).
pub const WATCHED_MAX: u32 = 65536;
/// Default ring-buffer size (bytes, a power-of-two multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;

#[cfg(feature = "user")]
mod pod {
    // The four: #[repr(C)], Copy, made only of integers and byte arrays, with explicit
    // padding.
    // SAFETY: so every bit pattern is valid.
    unsafe impl aya::Pod for super::Offsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AggKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AggValue {}
}

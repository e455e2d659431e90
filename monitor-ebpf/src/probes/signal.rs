//! Signal generation, in the sender's context.
//!
//! ```c
//! // tp_btf/signal_generate
//! void signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
//!                      int group, int result);
//! ```
//! `info` may be one of the special values `SEND_SIG_NOINFO` (0: a user signal, SI_USER) or
//! `SEND_SIG_PRIV` (1: from the kernel, SI_KERNEL), exactly as the tracepoint's own
//! `TP_STORE_SIGINFO` treats them.

use aya_ebpf::{
    helpers::bpf_get_current_comm, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use monitor_common::{
    AggKey, AggValue, COUNTER_SELF_SIGNAL, Kind, SETTING_REPORT_IGNORED_SIGNALS,
    SETTING_REPORT_RUNTIME_SIGNALS, Signal,
};

use super::{header, reserve, submit};
use crate::{
    kernel::{self, Task, read},
    maps::{SIGNAL_AGG, agg_settings, count, is_watched, off, scope_watched, settings_flags},
};

const SIGCHLD: i32 = 17;
const SIGURG: i32 = 23;
const SIGWINCH: i32 = 28;

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;

/// `enum trace_signal_result`: TRACE_SIGNAL_IGNORED.
const RESULT_IGNORED: i32 = 1;

#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    try_signal(&ctx);
    0
}

#[inline(always)]
fn try_signal(ctx: &BtfTracePointContext) {
    let sig: i32 = ctx.arg(0);
    let info: *const u8 = ctx.arg(1);
    let task: Task = ctx.arg(2);
    let group: i32 = ctx.arg(3);
    let result: i32 = ctx.arg(4);

    // Signals whose default action is to be ignored explain no death (every exit sends a
    // SIGCHLD): dropped here unless asked for.
    if ignored_by_default(sig) && settings_flags() & SETTING_REPORT_IGNORED_SIGNALS == 0 {
        return;
    }
    let target = kernel::tgid(task);
    let (sender, sender_tid) = kernel::current_ids();
    if scope_watched() && !is_watched(target) && !is_watched(sender) {
        return;
    }
    // A process's signal to itself (a runtime signalling its own threads, a handled fault)
    // that does not end it explains no death: counted, not reported, unless asked for.
    if sender == target
        && settings_flags() & SETTING_REPORT_RUNTIME_SIGNALS == 0
        && !fatal_to(task, sig, result)
    {
        count(COUNTER_SELF_SIGNAL);
        return;
    }
    let si_code = si_code(info);
    let key = AggKey {
        sender,
        target,
        sig,
    };
    // Names are read only for a signal that is reported, not for one the aggregator counts.
    let agg = aggregate(&key, si_code, result);
    if let Agg::Counted = agg {
        return;
    }
    let sender_thread_comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // SAFETY: bpf_get_current_task has no preconditions.
    let current = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() } as Task;
    let sender_comm = kernel::process_comm(current, sender_tid == sender, sender_thread_comm);
    let target_tid = kernel::tid(task);
    let thread_comm = kernel::comm(task);
    // The target's process name: its leader's.
    let comm = kernel::process_comm(task, target_tid == target, thread_comm);
    if let Agg::New(now) = agg {
        agg_insert(&key, now, si_code, result, sender_comm, comm);
    }
    let Some(mut entry) = reserve::<Signal>() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        (*e).header = header(Kind::Signal, target, target_tid, comm);
        (*e).thread_comm = thread_comm;
        (*e).sig = sig;
        (*e).si_code = si_code;
        (*e).result = result;
        (*e).group = group;
        (*e).sender_pid = sender;
        (*e).sender_tid = sender_tid;
        (*e).sender_uid = aya_ebpf::helpers::bpf_get_current_uid_gid() as u32;
        (*e)._pad = 0;
        (*e).sender_comm = sender_comm;
        (*e).sender_thread_comm = sender_thread_comm;
    }
    submit(entry);
}

/// SIGCHLD, SIGURG, SIGWINCH: their default action is to be ignored.
#[inline(always)]
pub fn ignored_by_default(sig: i32) -> bool {
    matches!(sig, SIGCHLD | SIGURG | SIGWINCH)
}

/// Whether the default action of `sig` ends the process (terminate or core, signal(7)):
/// every signal but SIGCHLD, SIGCONT, the four stop signals, SIGURG and SIGWINCH.
#[inline(always)]
pub fn terminates_by_default(sig: i32) -> bool {
    !matches!(sig, 17..=23 | SIGWINCH)
}

/// Whether a signal generated for `task` ends its process: not discarded at generation,
/// a default action that terminates, and the default disposition (no handler, not
/// ignored). An unreadable disposition counts as fatal, so the signal is reported.
#[inline(always)]
fn fatal_to(task: Task, sig: i32, result: i32) -> bool {
    if result == RESULT_IGNORED || !terminates_by_default(sig) {
        return false;
    }
    !matches!(kernel::sig_handler(task, sig), Some(h) if h != 0)
}

/// `si_code` of a siginfo pointer that may be one of the special values.
#[inline(always)]
pub fn si_code(info: *const u8) -> i32 {
    match info as usize {
        0 => SI_USER,
        1 => SI_KERNEL,
        _ => read::<i32>(info, off!(siginfo_code)).unwrap_or(SI_USER),
    }
}

/// What the aggregator did with a signal.
pub enum Agg {
    /// Counted in `SIGNAL_AGG`: not to be reported.
    Counted,
    /// To be reported one by one.
    Report,
    /// To be reported, and its key is new: the caller adds it with [`agg_insert`] (with
    /// this time), giving it the names it reads for the record anyway.
    New(u64),
}

/// Counts the signal in `SIGNAL_AGG` instead of reporting it when its (sender, target,
/// signal) key already had `agg_burst` records in the current window. Every signal is either
/// reported or counted: a key the full map cannot hold is reported. Nothing is read about
/// the sender or the target here, so a counted signal costs no name reads.
#[inline(always)]
pub fn aggregate(key: &AggKey, si_code: i32, result: i32) -> Agg {
    let (burst, window) = agg_settings();
    if burst == 0 {
        return Agg::Report;
    }
    let now = kernel::now_ns();
    if let Some(v) = SIGNAL_AGG.get_ptr_mut(key) {
        // SAFETY: a pointer into a map value, valid for this program run. The window fields
        // race between CPUs, which at worst reports a few more records one by one;
        // `suppressed` is only ever increased atomically.
        unsafe {
            if now.wrapping_sub((*v).window_start_ns) > window {
                (*v).window_start_ns = now;
                (*v).in_window = 1;
                return Agg::Report;
            }
            if (*v).in_window < burst {
                (*v).in_window += 1;
                return Agg::Report;
            }
            (*v).last_ns = now;
            (*v).result = result;
            (*v).si_code = si_code;
            // An atomic add (BPF_ATOMIC | BPF_ADD); core's AtomicU64 needs a CAS the BPF
            // target does not declare.
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).suppressed, 1);
        }
        return Agg::Counted;
    }
    Agg::New(now)
}

/// Adds a new key to `SIGNAL_AGG` (see [`aggregate`]): its first signal, reported, opens a
/// window at `now`.
#[inline(always)]
pub fn agg_insert(
    key: &AggKey,
    now: u64,
    si_code: i32,
    result: i32,
    sender_comm: [u8; monitor_common::COMM_LEN],
    target_comm: [u8; monitor_common::COMM_LEN],
) {
    let value = AggValue {
        window_start_ns: now,
        last_ns: now,
        suppressed: 0,
        in_window: 1,
        sender_uid: aya_ebpf::helpers::bpf_get_current_uid_gid() as u32,
        si_code,
        result,
        sender_comm,
        target_comm,
    };
    // BPF_NOEXIST: if another CPU inserted the key meanwhile, this signal is reported.
    let _ = SIGNAL_AGG.insert(key, &value, 1);
}

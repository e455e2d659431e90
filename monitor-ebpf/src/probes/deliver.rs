//! Signal delivery, in the target's context.
//!
//! ```c
//! // tp_btf/signal_deliver (from get_signal(), when a signal is dequeued and acted upon)
//! void signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka);
//! ```
//! `ka` is the target's action for the signal at that moment: `SIG_DFL` (0), `SIG_IGN` (1)
//! or a handler. A group exit (SIGKILL, a fatal default action, `exit_group`, `execve` from
//! another thread) passes `SEND_SIG_NOINFO` with SIGKILL, once in every thread but the one
//! that started it: only the leader's is reported unless runtime signals are asked for.

use aya_ebpf::{
    helpers::bpf_get_current_comm, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use monitor_common::{
    AGG_DELIVER, AggKey, COUNTER_GROUP_KILL_DELIVER, COUNTER_SELF_DELIVER, DISPOSITION_DEFAULT,
    DISPOSITION_HANDLER, DISPOSITION_IGNORED, DISPOSITION_UNKNOWN, Kind,
    SETTING_REPORT_IGNORED_SIGNALS, SETTING_REPORT_RUNTIME_SIGNALS, SignalDeliver,
};

use super::{
    header, reserve,
    signal::{self, Agg},
    submit,
};
use crate::{
    kernel::{self, read},
    maps::{count, is_watched, off, scope_watched, settings_flags},
};

const SIGILL: i32 = 4;
const SIGTRAP: i32 = 5;
const SIGBUS: i32 = 7;
const SIGFPE: i32 = 8;
const SIGKILL: i32 = 9;
const SIGSEGV: i32 = 11;
const SIGSYS: i32 = 31;

const SI_USER: i32 = 0;
const SI_QUEUE: i32 = -1;
const SI_TKILL: i32 = -6;

#[btf_tracepoint(function = "signal_deliver")]
pub fn signal_deliver(ctx: BtfTracePointContext) -> i32 {
    try_deliver(&ctx);
    0
}

#[inline(always)]
fn try_deliver(ctx: &BtfTracePointContext) {
    let sig: i32 = ctx.arg(0);
    let info: *const u8 = ctx.arg(1);
    let ka: *const u8 = ctx.arg(2);
    if signal::ignored_by_default(sig) && settings_flags() & SETTING_REPORT_IGNORED_SIGNALS == 0 {
        return;
    }
    let (tgid, tid) = kernel::current_ids();
    if scope_watched() && !is_watched(tgid) {
        return;
    }
    let runtime_filtered = settings_flags() & SETTING_REPORT_RUNTIME_SIGNALS == 0;
    let is_leader = tid == tgid;
    // A group exit's SIGKILL, taken by every thread: the leader's stands for the process.
    if runtime_filtered && sig == SIGKILL && info.is_null() && !is_leader {
        count(COUNTER_GROUP_KILL_DELIVER);
        return;
    }
    let si_code = signal::si_code(info);
    let disposition = match read::<u64>(ka, off!(ksigaction_handler)) {
        Some(0) => DISPOSITION_DEFAULT,
        Some(1) => DISPOSITION_IGNORED,
        Some(_) => DISPOSITION_HANDLER,
        None => DISPOSITION_UNKNOWN,
    };
    // The delivery of a signal the process sent itself, taken without ending it (its
    // generation was not reported either).
    if runtime_filtered
        && !fatal(sig, disposition)
        && from_self(info, sig, si_code, tgid, is_leader)
    {
        count(COUNTER_SELF_DELIVER);
        return;
    }
    // A flood of one signal is taken as often as it is generated: counted like generation
    // (names are read only for a delivery that is reported).
    let key = AggKey {
        sender: AGG_DELIVER,
        target: tgid,
        sig,
    };
    let agg = signal::aggregate(&key, si_code, disposition as i32);
    if let Agg::Counted = agg {
        return;
    }
    let thread_comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // The process's name: its leader's.
    let comm = if is_leader {
        thread_comm
    } else {
        // SAFETY: helper without arguments.
        let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() };
        kernel::process_comm(task as kernel::Task, false, thread_comm)
    };
    if let Agg::New(now) = agg {
        signal::agg_insert(&key, now, si_code, disposition as i32, comm, comm);
    }
    let Some(mut entry) = reserve::<SignalDeliver>() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        (*e).header = header(Kind::SignalDeliver, tgid, tid, comm);
        (*e).thread_comm = thread_comm;
        (*e).sig = sig;
        (*e).si_code = si_code;
        (*e).disposition = disposition;
        (*e)._pad = 0;
        (*e).sa_flags = read::<u64>(ka, off!(ksigaction_flags)).unwrap_or(0);
    }
    submit(entry);
}

/// Whether taking `sig` with this disposition ends the process: the default action of a
/// terminating signal (an unreadable disposition counts as fatal: reported).
#[inline(always)]
fn fatal(sig: i32, disposition: u32) -> bool {
    match disposition {
        DISPOSITION_HANDLER | DISPOSITION_IGNORED => false,
        DISPOSITION_DEFAULT => signal::terminates_by_default(sig),
        _ => true,
    }
}

/// Whether the signal being taken was sent by the current process itself: a `kill`,
/// `tgkill` or `sigqueue` whose siginfo names it (the pid as its own pid namespace sees
/// it), or a synchronous fault (a positive `si_code` of SIGSEGV, SIGBUS, SIGILL, SIGFPE,
/// SIGTRAP or SIGSYS, raised by the faulting thread).
#[inline(always)]
fn from_self(info: *const u8, sig: i32, si_code: i32, tgid: u32, is_leader: bool) -> bool {
    match si_code {
        SI_USER | SI_QUEUE | SI_TKILL => {
            if (info as usize) <= 1 {
                return false;
            }
            match read::<i32>(info, off!(siginfo_pid)) {
                Some(pid) if pid > 0 => {
                    kernel::current_ns_tgid(tgid, is_leader) == Some(pid as u32)
                }
                _ => false,
            }
        }
        c if c > 0 => matches!(sig, SIGILL | SIGTRAP | SIGBUS | SIGFPE | SIGSEGV | SIGSYS),
        _ => false,
    }
}

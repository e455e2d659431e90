//! Signal delivery, in the target's context.
//!
//! ```c
//! // tp_btf/signal_deliver (from get_signal(), when a signal is dequeued and acted upon)
//! void signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka);
//! ```
//! `ka` is the target's action for the signal at that moment: `SIG_DFL` (0), `SIG_IGN` (1)
//! or a handler. A group exit (SIGKILL, a fatal default action) passes `SEND_SIG_NOINFO`.

use aya_ebpf::{
    helpers::bpf_get_current_comm, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use monitor_common::{
    AGG_DELIVER, DISPOSITION_DEFAULT, DISPOSITION_HANDLER, DISPOSITION_IGNORED,
    DISPOSITION_UNKNOWN, Kind, SETTING_REPORT_IGNORED_SIGNALS, SignalDeliver,
};

use super::{header, reserve, signal, submit};
use crate::{
    kernel::{self, read},
    maps::{is_watched, off, scope_watched, settings_flags},
};

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
    let si_code = signal::si_code(info);
    let disposition = match read::<u64>(ka, off!(ksigaction_handler)) {
        Some(0) => DISPOSITION_DEFAULT,
        Some(1) => DISPOSITION_IGNORED,
        Some(_) => DISPOSITION_HANDLER,
        None => DISPOSITION_UNKNOWN,
    };
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    // A flood of one signal is taken as often as it is generated: counted like generation.
    if signal::aggregated(
        AGG_DELIVER,
        tgid,
        sig,
        si_code,
        disposition as i32,
        comm,
        comm,
    ) {
        return;
    }
    let Some(mut entry) = reserve::<SignalDeliver>() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        (*e).header = header(Kind::SignalDeliver, tgid, tid, comm);
        (*e).sig = sig;
        (*e).si_code = si_code;
        (*e).disposition = disposition;
        (*e)._pad = 0;
        (*e).sa_flags = read::<u64>(ka, off!(ksigaction_flags)).unwrap_or(0);
    }
    submit(entry);
}

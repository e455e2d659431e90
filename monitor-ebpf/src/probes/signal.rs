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
use monitor_common::{Kind, Signal};

use super::{header, reserve};
use crate::{
    kernel::{self, Task, read},
    maps::{is_watched, off, scope_watched},
};

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;

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

    let target = kernel::tgid(task);
    let (sender, sender_tid) = kernel::current_ids();
    if scope_watched() && !is_watched(target) && !is_watched(sender) {
        return;
    }
    let si_code = match info as usize {
        0 => SI_USER,
        1 => SI_KERNEL,
        _ => read::<i32>(info, off!(siginfo_code)).unwrap_or(SI_USER),
    };
    let Some(mut entry) = reserve::<Signal>() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        (*e).header = header(Kind::Signal, target, kernel::tid(task), kernel::comm(task));
        (*e).sig = sig;
        (*e).si_code = si_code;
        (*e).result = result;
        (*e).group = group;
        (*e).sender_pid = sender;
        (*e).sender_tid = sender_tid;
        (*e).sender_uid = aya_ebpf::helpers::bpf_get_current_uid_gid() as u32;
        (*e)._pad = 0;
        (*e).sender_comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    entry.submit(0);
}

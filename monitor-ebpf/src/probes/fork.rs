//! Process creation.
//!
//! ```c
//! // tp_btf/sched_process_fork (runs in the parent)
//! void sched_process_fork(struct task_struct *parent, struct task_struct *child);
//! ```
//! New threads (child tgid == parent tgid) are not processes and are skipped. In
//! `SCOPE_WATCHED` a child of a watched process is added to `WATCHED` here, in the kernel,
//! before it can run, so a child that lives 1 ms is never missed. When the map is full the
//! record says so (`FORK_FLAG_UNWATCHED`): userspace adds the child if it belongs to a
//! session, once it has made room.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{COUNTER_WATCH_FULL, FORK_FLAG_UNWATCHED, Fork, Kind};

use super::{header, reserve, submit};
use crate::{
    kernel::{self, Task},
    maps::{WATCHED, count, is_watched, scope_watched},
};

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    try_fork(&ctx);
    0
}

#[inline(always)]
fn try_fork(ctx: &BtfTracePointContext) {
    let child: Task = ctx.arg(1);
    let (parent, parent_tid) = kernel::current_ids();
    let child_tgid = kernel::tgid(child);
    if child_tgid == parent {
        return;
    }
    let mut flags = 0;
    if scope_watched() {
        if !is_watched(parent) {
            return;
        }
        if WATCHED.insert(child_tgid, parent, 0).is_err() {
            count(COUNTER_WATCH_FULL);
            flags = FORK_FLAG_UNWATCHED;
        }
    }
    let Some(mut entry) = reserve::<Fork>() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        (*e).header = header(
            Kind::Fork,
            child_tgid,
            kernel::tid(child),
            kernel::comm(child),
        );
        (*e).parent_pid = parent;
        (*e).parent_tid = parent_tid;
        (*e).start_boottime_ns = kernel::start_boottime(child);
        (*e).flags = flags;
        (*e)._pad = 0;
    }
    submit(entry);
}

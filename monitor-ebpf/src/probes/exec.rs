//! Program execution.
//!
//! ```c
//! // tp_btf/sched_process_exec (after the new image is in place: comm is the new one)
//! void sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm);
//! ```

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_str_bytes, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use monitor_common::{Exec, Kind};

use super::{header, reserve};
use crate::{
    kernel::{self, Task, read},
    maps::{is_watched, off, scope_watched},
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    try_exec(&ctx);
    0
}

#[inline(always)]
fn try_exec(ctx: &BtfTracePointContext) {
    let task: Task = ctx.arg(0);
    let old_tid: u32 = ctx.arg(1);
    let bprm: *const u8 = ctx.arg(2);
    let (tgid, tid) = kernel::current_ids();
    if scope_watched() && !is_watched(tgid) {
        return;
    }
    let Some(mut entry) = reserve::<Exec>() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        (*e).header = header(Kind::Exec, tgid, tid, kernel::comm(task));
        (*e).old_tid = old_tid;
        (*e).ppid = kernel::ppid(task);
        (*e).uid = kernel::uid(task);
        (*e)._pad = 0;
        (*e).start_boottime_ns = kernel::start_boottime(task);
        (*e).maxrss_pages = read::<u64>(kernel::signal(task), off!(signal_maxrss)).unwrap_or(0);
        let filename = kernel::read_ptr(bprm, off!(bprm_filename));
        let buf = &mut (*e).filename;
        if filename.is_null() || bpf_probe_read_kernel_str_bytes(filename, buf).is_err() {
            buf[0] = 0;
        }
    }
    entry.submit(0);
}

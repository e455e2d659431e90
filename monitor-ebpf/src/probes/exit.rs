//! Process exit.
//!
//! ```c
//! // tp_btf/sched_process_exit (kernel >= ~6.16)
//! void sched_process_exit(struct task_struct *p, bool group_dead);
//! // older kernels
//! void sched_process_exit(struct task_struct *p);
//! ```
//! Fires in the exiting thread for every thread. We report a process once, when its thread
//! group is dead, keyed by tgid: the last thread out need not be the leader.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{
    COMM_LEN, EXIT_FLAG_LIVE_COUNTER, EXIT_FLAG_NO_MAXRSS, EXIT_FLAG_NO_STATUS, EXIT_FLAG_NO_TIMES,
    Exit, Kind,
};

use super::{header, reserve, submit};
use crate::{
    kernel::{self, Task, read},
    maps::{WATCHED, is_watched, off, scope_watched},
};

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let group_dead = ctx.arg::<u64>(1) & 0xff != 0;
    if group_dead {
        try_exit(ctx.arg(0), 0);
    }
    0
}

/// Variant for kernels before ~6.16, whose tracepoint passes only `p`.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_legacy(ctx: BtfTracePointContext) -> i32 {
    let task: Task = ctx.arg(0);
    // do_exit() decrements signal->live before this tracepoint on every kernel. Two threads
    // leaving at once can both see zero; userspace drops the duplicate.
    if read::<i32>(kernel::signal(task), off!(signal_live)).unwrap_or(1) == 0 {
        try_exit(task, EXIT_FLAG_LIVE_COUNTER);
    }
    0
}

#[inline(always)]
fn try_exit(task: Task, mut flags: u32) {
    // The tracepoint runs in the exiting task (`task == current`): ids, uid and comm come
    // from helpers, cheaper than reading the task.
    let signal = kernel::signal(task);
    let (tgid, tid) = kernel::current_ids();
    if scope_watched() {
        if !is_watched(tgid) {
            return;
        }
        let _ = WATCHED.remove(tgid);
    }
    let Some(mut entry) = reserve::<Exit>() else {
        return;
    };

    // CPU time of the whole group: threads already reaped are folded into signal->utime; this
    // thread and a zombie leader (when the last thread out is not the leader) are not yet.
    let leader = kernel::read_ptr(task, off!(task_group_leader));
    // A failed read is flagged (the agent then says "unknown"), never taken for a zero.
    let mut times_ok = true;
    let mut time = |base, offset| match read::<u64>(base, offset) {
        Some(v) => v,
        None => {
            times_ok = false;
            0
        }
    };
    let mut utime = time(signal, off!(signal_utime)) + time(task, off!(task_utime));
    let mut stime = time(signal, off!(signal_stime)) + time(task, off!(task_stime));
    let thread_comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]);
    // The process's name is its leader's (a zombie leader's task, and comm, live on until
    // the group is reaped); the last thread out may be a runtime's worker thread.
    let mut comm = thread_comm;
    if !leader.is_null() && leader != task {
        utime += time(leader, off!(task_utime));
        stime += time(leader, off!(task_stime));
        comm = read::<[u8; COMM_LEN]>(leader, off!(task_comm)).unwrap_or(thread_comm);
    }

    if !times_ok {
        flags |= EXIT_FLAG_NO_TIMES;
    }
    let exit_status = read::<u32>(task, off!(task_exit_code)).unwrap_or_else(|| {
        flags |= EXIT_FLAG_NO_STATUS;
        0
    });
    let maxrss = read::<u64>(signal, off!(signal_maxrss)).unwrap_or_else(|| {
        flags |= EXIT_FLAG_NO_MAXRSS;
        0
    });

    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot of size_of::<Exit>().
    unsafe {
        (*e).header = header(Kind::Exit, tgid, tid, comm);
        (*e).thread_comm = thread_comm;
        (*e).ppid = kernel::ppid(task);
        (*e).uid = aya_ebpf::helpers::bpf_get_current_uid_gid() as u32;
        (*e).exit_status = exit_status;
        (*e).flags = flags;
        (*e).maxrss_pages = maxrss;
        (*e).utime_ns = utime;
        (*e).stime_ns = stime;
        // The process started when its leader did (the last thread out may be younger).
        (*e).start_boottime_ns =
            kernel::start_boottime(if leader.is_null() { task } else { leader });
        (*e).memcg_id = kernel::memcg_id(task);
        // The image's own peak, like setmax_mm_hiwater_rss() computes it; on kernels where
        // this tracepoint runs after exit_mm() the mm is gone and this stays 0.
        let mm = kernel::read_ptr(task, off!(task_mm));
        (*e).mm_peak_pages = if mm.is_null() {
            0
        } else {
            let hiwater = read::<u64>(mm, off!(mm_hiwater_rss)).unwrap_or(0);
            let rss = kernel::mm_rss_pages(mm);
            if hiwater > rss { hiwater } else { rss }
        };
    }
    submit(entry);
}

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
use monitor_common::{
    COMM_LEN, EXEC_FLAG_ARGS, EXEC_FLAG_MAXRSS, Exec, Kind, SETTING_EXEC_ALL, SETTING_VERSION_COMM,
    WATCHED_CANDIDATE,
};

use super::{header, reserve, submit};
use crate::{
    kernel::{self, Task, read},
    maps::{
        CANDIDATES, WATCHED, count, is_watched, off, scope_sessions, scope_watched, settings_flags,
    },
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
    let comm = kernel::comm(task);
    if scope_watched() && !is_watched(tgid) {
        if !scope_sessions() {
            return;
        }
        let flags = settings_flags();
        if is_candidate(&comm, flags) {
            // Watched from its exec on, so children it forks before userspace has read
            // this record are followed; userspace removes it if it is not a session.
            if WATCHED.insert(tgid, WATCHED_CANDIDATE, 0).is_err() {
                count(monitor_common::COUNTER_WATCH_FULL);
            }
        } else if flags & SETTING_EXEC_ALL == 0 {
            return;
        }
    }
    let Some(mut entry) = reserve::<Exec>() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        (*e).header = header(Kind::Exec, tgid, tid, comm);
        (*e).old_tid = old_tid;
        (*e).ppid = kernel::ppid(task);
        (*e).uid = kernel::uid(task);
        (*e)._pad = 0;
        // argv from the new image's stack: userspace needs argv[0] to tell Claude Code's
        // `rg` helper from a session even when the process is gone before it can read
        // /proc/PID/cmdline.
        match kernel::read_args(task, &mut (*e).args) {
            Some(len) => {
                (*e).flags = EXEC_FLAG_ARGS;
                (*e).args_len = len;
            }
            None => {
                (*e).flags = 0;
                (*e).args_len = 0;
            }
        }
        (*e).start_boottime_ns = kernel::start_boottime(task);
        // Flagged when read: a failed read is no baseline (never a made-up zero).
        (*e).maxrss_pages = match read::<u64>(kernel::signal(task), off!(signal_maxrss)) {
            Some(pages) => {
                (*e).flags |= EXEC_FLAG_MAXRSS;
                pages
            }
            None => 0,
        };
        let filename = kernel::read_ptr(bprm, off!(bprm_filename));
        let buf = &mut (*e).filename;
        if filename.is_null() || bpf_probe_read_kernel_str_bytes(filename, buf).is_err() {
            buf[0] = 0;
        }
    }
    submit(entry);
}

/// A comm that may be an agent's image: listed in `CANDIDATES`, or (with
/// `SETTING_VERSION_COMM`) starting with a digit, as Claude Code's versioned binaries do.
#[inline(always)]
fn is_candidate(comm: &[u8; COMM_LEN], flags: u32) -> bool {
    if flags & SETTING_VERSION_COMM != 0 && comm[0].is_ascii_digit() {
        return true;
    }
    // SAFETY: read-only lookup; the value is not used.
    unsafe { CANDIDATES.get(comm).is_some() }
}

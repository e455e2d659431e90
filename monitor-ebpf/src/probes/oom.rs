//! OOM victim selection.
//!
//! ```c
//! // tp_btf/mark_victim (kernel >= ~6.8)
//! void mark_victim(struct task_struct *task, uid_t uid);
//! // older kernels
//! void mark_victim(int pid);
//! ```
//! Runs in the context of the task whose allocation triggered the OOM kill (`current`).
//! The victim's memory figures are read from its `mm` here, before the kill frees it.

use aya_ebpf::{
    helpers::bpf_get_current_comm, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use monitor_common::{
    COUNTER_WATCH_FULL, Kind, OOM_FLAG_MEMORY, OOM_FLAG_RSS_APPROX, Oom, SETTING_OOM_ALL,
};

use super::{header, reserve, submit};
use crate::{
    kernel::{self, Task, read},
    maps::{WATCHED, count, is_watched, off, scope_watched, settings_flags},
};

#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim(ctx: BtfTracePointContext) -> i32 {
    let task: Task = ctx.arg(0);
    try_oom(task, kernel::tgid(task), ctx.arg::<u32>(1));
    0
}

/// Variant for kernels before ~6.8, whose tracepoint passes only the victim's pid.
#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim_pid(ctx: BtfTracePointContext) -> i32 {
    try_oom(core::ptr::null(), ctx.arg::<u32>(0), u32::MAX);
    0
}

/// `task` is null when the kernel passed only the victim's pid.
#[inline(always)]
fn try_oom(task: Task, victim: u32, uid: u32) {
    let flags = settings_flags();
    if scope_watched() && !is_watched(victim) {
        if flags & SETTING_OOM_ALL == 0 {
            return;
        }
        // Reported because every OOM kill is: follow the victim too, so its exit (with the
        // cause and peak memory) is reported as well.
        if WATCHED.insert(victim, 0, 0).is_err() {
            count(COUNTER_WATCH_FULL);
        }
    }
    let (trigger, trigger_tid) = kernel::current_ids();
    let Some(entry) = reserve::<Oom>() else {
        return;
    };
    let mm = if task.is_null() {
        task
    } else {
        kernel::read_ptr(task, off!(task_mm))
    };
    let mut oflags = 0;
    if !mm.is_null() {
        oflags |= OOM_FLAG_MEMORY | OOM_FLAG_RSS_APPROX;
    }
    let signal = if task.is_null() {
        task
    } else {
        kernel::signal(task)
    };
    // Every figure is read first: one failed read and the memory figures are not reported
    // (the flag stays off and the agent says null), rather than a made-up zero.
    let total_vm = read::<u64>(mm, off!(mm_total_vm));
    let anon = read::<i64>(mm, off!(mm_anon_rss));
    let file = read::<i64>(mm, off!(mm_file_rss));
    let shmem = read::<i64>(mm, off!(mm_shmem_rss));
    let pgtables = read::<i64>(mm, off!(mm_pgtables_bytes));
    let figures = match (total_vm, anon, file, shmem, pgtables) {
        (Some(total_vm), Some(anon), Some(file), Some(shmem), Some(pgtables)) => [
            total_vm,
            anon.max(0) as u64,
            file.max(0) as u64,
            shmem.max(0) as u64,
            pgtables.max(0) as u64,
        ],
        _ => {
            oflags &= !(OOM_FLAG_MEMORY | OOM_FLAG_RSS_APPROX);
            [0; 5]
        }
    };
    finish(
        entry,
        task,
        victim,
        uid,
        oflags,
        trigger,
        trigger_tid,
        signal,
        figures,
    );
}

/// Fills and submits the record; `figures` are total_vm, anon, file and shmem rss (pages)
/// and page tables (bytes), meaningful only with `OOM_FLAG_MEMORY`.
#[inline(always)]
#[allow(
    clippy::too_many_arguments,
    reason = "one record's fields, filled in one place"
)]
fn finish(
    mut entry: aya_ebpf::maps::ring_buf::RingBufEntry<Oom>,
    task: Task,
    victim: u32,
    uid: u32,
    mut oflags: u32,
    trigger: u32,
    trigger_tid: u32,
    signal: Task,
    figures: [u64; 5],
) {
    // The figures are all reported or none (the schema's contract): no oom_score_adj, none.
    let score_adj = read::<i16>(signal, off!(signal_oom_score_adj));
    if score_adj.is_none() {
        oflags &= !(OOM_FLAG_MEMORY | OOM_FLAG_RSS_APPROX);
    }
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned ring-buffer slot.
    unsafe {
        let (tid, comm) = if task.is_null() {
            (victim, [0; 16])
        } else {
            (kernel::tid(task), kernel::comm(task))
        };
        (*e).header = header(Kind::Oom, victim, tid, comm);
        (*e).uid = uid;
        (*e).flags = oflags;
        (*e).trigger_pid = trigger;
        (*e).trigger_tid = trigger_tid;
        (*e).trigger_comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*e).total_vm_pages = figures[0];
        (*e).anon_rss_pages = figures[1];
        (*e).file_rss_pages = figures[2];
        (*e).shmem_rss_pages = figures[3];
        (*e).pgtables_bytes = figures[4];
        (*e).oom_score_adj = score_adj.unwrap_or(0) as i32;
        (*e)._pad = 0;
        (*e).memcg_id = if task.is_null() {
            0
        } else {
            kernel::memcg_id(task)
        };
    }
    submit(entry);
}

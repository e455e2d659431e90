//! Reading kernel structs at BTF-derived offsets.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_user_buf};
use monitor_common::{ARGS_LEN, COMM_LEN, UNAVAILABLE};

use crate::maps::off;

pub type Task = *const u8;

/// Reads a `T` at `base + offset`; `None` when the offset is unavailable on this kernel, the
/// base is null, or the read faults.
#[inline(always)]
pub fn read<T: Copy>(base: *const u8, offset: u32) -> Option<T> {
    if offset == UNAVAILABLE || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copes with any address (it returns an error on a fault).
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()).ok() }
}

#[inline(always)]
pub fn read_ptr(base: *const u8, offset: u32) -> *const u8 {
    read::<*const u8>(base, offset).unwrap_or_default()
}

#[inline(always)]
pub fn tgid(task: Task) -> u32 {
    read::<u32>(task, off!(task_tgid)).unwrap_or(0)
}

#[inline(always)]
pub fn tid(task: Task) -> u32 {
    read::<u32>(task, off!(task_pid)).unwrap_or(0)
}

#[inline(always)]
pub fn comm(task: Task) -> [u8; COMM_LEN] {
    read::<[u8; COMM_LEN]>(task, off!(task_comm)).unwrap_or([0; COMM_LEN])
}

/// The process's name: the comm of `task`'s thread-group leader. `thread_comm` is `task`'s
/// own comm, already read by the caller: it is the answer for the leader itself (no read),
/// and the fallback when the leader cannot be read.
#[inline(always)]
pub fn process_comm(task: Task, is_leader: bool, thread_comm: [u8; COMM_LEN]) -> [u8; COMM_LEN] {
    if is_leader {
        return thread_comm;
    }
    let leader = read_ptr(task, off!(task_group_leader));
    read::<[u8; COMM_LEN]>(leader, off!(task_comm)).unwrap_or(thread_comm)
}

/// The target's action for `sig` (`task->sighand->action[sig - 1].sa.sa_handler`): 0
/// (`SIG_DFL`), 1 (`SIG_IGN`) or a handler; `None` when it cannot be read.
#[inline(always)]
pub fn sig_handler(task: Task, sig: i32) -> Option<u64> {
    let (action, stride, handler) = (
        off!(sighand_action),
        off!(ksigaction_size),
        off!(ksigaction_handler),
    );
    if !(1..=64).contains(&sig)
        || action == UNAVAILABLE
        || stride == UNAVAILABLE
        || handler == UNAVAILABLE
    {
        return None;
    }
    let sighand = read_ptr(task, off!(task_sighand));
    let offset = action
        .wrapping_add((sig as u32 - 1).wrapping_mul(stride))
        .wrapping_add(handler);
    read::<u64>(sighand, offset)
}

/// The current process's tgid in its own pid namespace (what `getpid()` returns there, and
/// what the kernel writes as `si_pid` of a signal the process sends itself):
/// `group_leader->thread_pid->numbers[level].nr`; `tgid` (the global one) in the initial
/// namespace. `is_leader`: the current task is the leader (saves a read). `None` when
/// unreadable.
#[inline(always)]
pub fn current_ns_tgid(tgid: u32, is_leader: bool) -> Option<u32> {
    let (numbers, stride, nr) = (off!(pid_numbers), off!(upid_size), off!(upid_nr));
    if numbers == UNAVAILABLE || stride == UNAVAILABLE || nr == UNAVAILABLE {
        return None;
    }
    // SAFETY: helper without arguments.
    let mut task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() } as Task;
    if !is_leader {
        task = read_ptr(task, off!(task_group_leader));
    }
    let pid = read_ptr(task, off!(task_thread_pid));
    // MAX_PID_NS_LEVEL is 32.
    let level = read::<u32>(pid, off!(pid_level)).filter(|l| *l <= 32)?;
    if level == 0 {
        return Some(tgid);
    }
    let offset = numbers
        .wrapping_add(level.wrapping_mul(stride))
        .wrapping_add(nr);
    read::<i32>(pid, offset).map(|v| v as u32)
}

#[inline(always)]
pub fn uid(task: Task) -> u32 {
    let cred = read_ptr(task, off!(task_real_cred));
    read::<u32>(cred, off!(cred_uid)).unwrap_or(u32::MAX)
}

#[inline(always)]
pub fn ppid(task: Task) -> u32 {
    tgid(read_ptr(task, off!(task_real_parent)))
}

#[inline(always)]
pub fn start_boottime(task: Task) -> u64 {
    read::<u64>(task, off!(task_start_boottime)).unwrap_or(0)
}

#[inline(always)]
pub fn signal(task: Task) -> *const u8 {
    read_ptr(task, off!(task_signal))
}

/// The v1 memory cgroup's kernfs id:
/// `task->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id`; 0 when unknown.
#[inline(always)]
pub fn memcg_id(task: Task) -> u64 {
    let cset = read_ptr(task, off!(task_cgroups));
    let css = read_ptr(cset, off!(css_set_memcg));
    let cgrp = read_ptr(css, off!(css_cgroup));
    let kn = read_ptr(cgrp, off!(cgroup_kn));
    read::<u64>(kn, off!(kernfs_node_id)).unwrap_or(0)
}

/// The current task's tgid and tid.
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() }
}

#[inline(always)]
pub fn cpu() -> u32 {
    // SAFETY: helper without arguments.
    unsafe { aya_ebpf::helpers::generated::bpf_get_smp_processor_id() }
}

/// Resident pages of an mm: file + anon + shmem counters (each read from its central count).
#[inline(always)]
pub fn mm_rss_pages(mm: *const u8) -> u64 {
    let file = read::<i64>(mm, off!(mm_file_rss)).unwrap_or(0).max(0) as u64;
    let anon = read::<i64>(mm, off!(mm_anon_rss)).unwrap_or(0).max(0) as u64;
    let shmem = read::<i64>(mm, off!(mm_shmem_rss)).unwrap_or(0).max(0) as u64;
    file + anon + shmem
}

/// Copies the start of the current process's argument area (`mm->arg_start..arg_end`, argv's
/// NUL-terminated strings on the new image's stack) into `buf` and returns the area's full
/// size (saturated at `u32::MAX`); `None` when an offset is unavailable or a read faults.
///
/// Only `min(size, ARGS_LEN)` bytes are read: the strings sit at the top of the stack,
/// followed only by the environment and the exec'd path, so a fixed-size read could run
/// past the end of the stack for a short command line with an empty environment and fault.
/// Must run in the process's own context after its new mm is in place
/// (`sched_process_exec`): `bpf_probe_read_user` reads the current address space.
#[inline(always)]
pub fn read_args(task: Task, buf: &mut [u8; ARGS_LEN]) -> Option<u32> {
    let mm = read_ptr(task, off!(task_mm));
    let start = read::<u64>(mm, off!(mm_arg_start))?;
    let end = read::<u64>(mm, off!(mm_arg_end))?;
    let size = end.checked_sub(start)?;
    let len = if size > ARGS_LEN as u64 {
        ARGS_LEN
    } else {
        size as usize
    };
    if len > 0 {
        // SAFETY: bpf_probe_read_user copes with any address (it returns an error on a
        // fault); `len` is at most ARGS_LEN, so the destination is in bounds.
        unsafe { bpf_probe_read_user_buf(start as *const u8, &mut buf[..len]).ok()? };
    }
    Some(u32::try_from(size).unwrap_or(u32::MAX))
}

//! Kernel struct offsets and tracepoint shapes, computed from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so nothing about a kernel struct is compiled into the
//! programs: every field they read comes from here, and a field this kernel lacks is marked
//! [`UNAVAILABLE`] (the programs then report zero or null) with a note explaining which
//! figure is affected.

use monitor_common::{Offsets, UNAVAILABLE};

use crate::{
    event::HookName,
    kernel::btf::{Btf, BtfError},
};

/// Everything derived from BTF that the loader needs.
#[derive(Debug, Clone)]
pub struct KernelLayout {
    pub offsets: Offsets,
    /// One per tracepoint in [`TRACEPOINTS`], with the program variant to load.
    pub hooks: Vec<Hook>,
    /// Human-readable notes about fields or arguments that are missing or read differently.
    pub notes: Vec<String>,
}

/// A tracepoint and the program that serves it on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub tracepoint: HookName,
    /// Name of the program in the eBPF object.
    pub program: &'static str,
    /// The tracepoint's arguments as BTF describes them; `None` when the kernel lacks it.
    pub args: Option<Vec<String>>,
}

/// The tracepoints the programs attach to.
pub const TRACEPOINTS: [HookName; 6] = [
    HookName::SchedProcessExit,
    HookName::SchedProcessFork,
    HookName::SchedProcessExec,
    HookName::SignalGenerate,
    HookName::SignalDeliver,
    HookName::MarkVictim,
];

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("kernel BTF lacks a field every program needs: {0}")]
    Required(#[source] BtfError),
}

struct Builder<'a> {
    btf: &'a Btf,
    notes: Vec<String>,
}

impl Builder<'_> {
    fn optional(&mut self, outer: &str, path: &[&str], affects: &str) -> u32 {
        match self.btf.member_offset(outer, path) {
            Ok(off) => off,
            Err(e) => {
                self.notes.push(format!("{affects} unavailable: {e}"));
                UNAVAILABLE
            }
        }
    }
}

pub fn compute(btf: &Btf) -> Result<KernelLayout, LayoutError> {
    let required = |outer: &str, path: &[&str]| {
        btf.member_offset(outer, path)
            .map_err(LayoutError::Required)
    };
    let mut b = Builder {
        btf,
        notes: Vec::new(),
    };
    let mut o = Offsets::unavailable();

    o.task_pid = required("task_struct", &["pid"])?;
    o.task_tgid = required("task_struct", &["tgid"])?;
    o.task_comm = required("task_struct", &["comm"])?;

    o.task_real_parent = b.optional("task_struct", &["real_parent"], "ppid");
    o.task_real_cred = b.optional("task_struct", &["real_cred"], "uid");
    o.cred_uid = b.optional("cred", &["uid", "val"], "uid");
    o.task_exit_code = b.optional("task_struct", &["exit_code"], "exit status");
    o.task_signal = b.optional("task_struct", &["signal"], "peak RSS, CPU time");
    o.task_start_boottime = b.optional("task_struct", &["start_boottime"], "process start time");
    o.task_utime = b.optional("task_struct", &["utime"], "CPU time");
    o.task_stime = b.optional("task_struct", &["stime"], "CPU time");
    o.task_group_leader = b.optional(
        "task_struct",
        &["group_leader"],
        "CPU time of a zombie leader, and the process name (comm) of exits and signals of \
         a thread other than the leader,",
    );
    o.task_mm = b.optional(
        "task_struct",
        &["mm"],
        "OOM victim memory, own peak RSS and exec argv",
    );
    o.signal_maxrss = b.optional("signal_struct", &["maxrss"], "peak RSS");
    o.signal_utime = b.optional("signal_struct", &["utime"], "CPU time");
    o.signal_stime = b.optional("signal_struct", &["stime"], "CPU time");
    o.signal_live = b.optional("signal_struct", &["live"], "thread-group exit detection");
    o.signal_oom_score_adj = b.optional("signal_struct", &["oom_score_adj"], "oom_score_adj");
    o.siginfo_code = b.optional("kernel_siginfo", &["si_code"], "si_code");
    o.ksigaction_handler = b.optional("k_sigaction", &["sa", "sa_handler"], "signal disposition");
    o.ksigaction_flags = b.optional("k_sigaction", &["sa", "sa_flags"], "signal sa_flags");
    o.bprm_filename = b.optional("linux_binprm", &["filename"], "exec filename");

    // Runtime signals (a process signalling its own threads): whether one is fatal, from the
    // target's disposition at generation; whether a delivery's sender is the process itself,
    // from the siginfo's pid and the process's id in its own pid namespace. Without them
    // those signals are reported.
    let runtime = "filtering of a process's non-fatal signals to itself";
    o.task_sighand = b.optional("task_struct", &["sighand"], runtime);
    o.sighand_action = b.optional("sighand_struct", &["action"], runtime);
    o.ksigaction_size = match btf.struct_size("k_sigaction") {
        Ok(size) if size > 0 => size,
        Ok(_) => UNAVAILABLE,
        Err(e) => {
            b.notes.push(format!("{runtime} unavailable: {e}"));
            UNAVAILABLE
        }
    };
    let deliveries = "filtering of the deliveries of a process's signals to itself";
    o.siginfo_pid = b.optional(
        "kernel_siginfo",
        &["_sifields", "_kill", "_pid"],
        deliveries,
    );
    o.task_thread_pid = b.optional("task_struct", &["thread_pid"], deliveries);
    o.pid_level = b.optional("pid", &["level"], deliveries);
    o.pid_numbers = b.optional("pid", &["numbers"], deliveries);
    o.upid_nr = b.optional("upid", &["nr"], deliveries);
    o.upid_size = match btf.struct_size("upid") {
        Ok(size) if size > 0 => size,
        Ok(_) => UNAVAILABLE,
        Err(e) => {
            b.notes.push(format!("{deliveries} unavailable: {e}"));
            UNAVAILABLE
        }
    };

    // Memory cgroup: task->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id.
    o.task_cgroups = b.optional("task_struct", &["cgroups"], "memory cgroup id");
    o.css_cgroup = b.optional("cgroup_subsys_state", &["cgroup"], "memory cgroup id");
    o.cgroup_kn = b.optional("cgroup", &["kn"], "memory cgroup id");
    o.kernfs_node_id = match btf.member("kernfs_node", &["id"]) {
        Ok(m) if m.size == 8 => m.offset,
        Ok(m) => {
            b.notes.push(format!(
                "memory cgroup id unavailable: kernfs_node.id is {} bytes, not a 64-bit id",
                m.size
            ));
            UNAVAILABLE
        }
        Err(e) => {
            b.notes.push(format!("memory cgroup id unavailable: {e}"));
            UNAVAILABLE
        }
    };
    o.css_set_memcg = match (
        btf.member("css_set", &["subsys"]),
        btf.enum_value("memory_cgrp_id"),
    ) {
        (Ok(m), Some(id)) if id >= 0 => u32::try_from(id)
            .ok()
            .and_then(|id| id.checked_mul(8))
            .map_or(UNAVAILABLE, |off| m.offset + off),
        (Err(e), _) => {
            b.notes.push(format!("memory cgroup id unavailable: {e}"));
            UNAVAILABLE
        }
        _ => {
            b.notes.push(
                "memory cgroup id unavailable: the kernel has no memory cgroup controller \
                 (no memory_cgrp_id in BTF)"
                    .into(),
            );
            UNAVAILABLE
        }
    };

    // Exec: the new image's argument area, read at sched_process_exec so that argv[0] is
    // known even when the process is gone before /proc/PID/cmdline can be read.
    o.mm_arg_start = b.optional("mm_struct", &["arg_start"], "exec argv");
    o.mm_arg_end = b.optional("mm_struct", &["arg_end"], "exec argv");

    // OOM victim memory.
    o.mm_total_vm = b.optional("mm_struct", &["total_vm"], "OOM total_vm");
    o.mm_hiwater_rss = b.optional("mm_struct", &["hiwater_rss"], "own peak RSS");
    o.mm_pgtables_bytes = b.optional("mm_struct", &["pgtables_bytes"], "OOM pgtables");
    match rss_offsets(btf) {
        Ok([file, anon, shmem]) => {
            o.mm_file_rss = file;
            o.mm_anon_rss = anon;
            o.mm_shmem_rss = shmem;
        }
        Err(reason) => b
            .notes
            .push(format!("OOM victim RSS unavailable: {reason}")),
    }

    let mut hooks = Vec::new();
    for tp in TRACEPOINTS {
        let args = btf.tracepoint_args(tp.as_str());
        // Program variants for prototypes that changed between kernels: the matching one is
        // loaded, so the verifier never sees an access to an argument the kernel lacks.
        let program = match (tp, &args) {
            (HookName::SchedProcessExit, Some(a)) if a.len() < 2 => {
                b.notes.push(
                    "sched_process_exit has no group_dead argument on this kernel: process exit \
                     is detected from signal->live"
                        .into(),
                );
                b.notes.push(
                    "own_peak_rss_kb: on kernels before ~6.16 the exit tracepoint runs after the \
                     address space is released; the figure then comes only from the exec \
                     baseline (when the process grew past what exec carried over) and is often \
                     null"
                        .into(),
                );
                "sched_process_exit_legacy"
            }
            (HookName::MarkVictim, Some(a))
                if !a.first().is_some_and(|t| t.contains("task_struct")) =>
            {
                b.notes.push(
                    "mark_victim passes only the victim's pid on this kernel: OOM events carry \
                     no victim memory figures, and the victim's name and uid are read from /proc"
                        .into(),
                );
                "mark_victim_pid"
            }
            _ => tp.as_str(),
        };
        hooks.push(Hook {
            tracepoint: tp,
            program,
            args,
        });
    }

    Ok(KernelLayout {
        offsets: o,
        hooks,
        notes: b.notes,
    })
}

/// Offsets inside `mm_struct` of the file, anon and shmem page counters. The layout changed
/// in 6.2: `struct percpu_counter rss_stat[NR_MM_COUNTERS]` (we read each counter's central
/// `count`, exact to within the per-CPU batch) replaced `struct mm_rss_stat { atomic_long_t
/// count[NR_MM_COUNTERS]; }`.
fn rss_offsets(btf: &Btf) -> Result<[u32; 3], String> {
    let idx = |name: &str| {
        btf.enum_value(name)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("no {name} enumerator in BTF"))
    };
    let indices = [
        idx("MM_FILEPAGES")?,
        idx("MM_ANONPAGES")?,
        idx("MM_SHMEMPAGES")?,
    ];
    let rss = btf
        .member("mm_struct", &["rss_stat"])
        .map_err(|e| e.to_string())?;
    let (base, stride) = if let Some((elem, _n)) = btf.array_info(rss.type_id) {
        if btf.struct_name_of(elem) != Some("percpu_counter") {
            return Err(format!(
                "mm_struct.rss_stat is {}",
                btf.type_name(rss.type_id)
            ));
        }
        let count = btf
            .member_offset("percpu_counter", &["count"])
            .map_err(|e| e.to_string())?;
        let stride = btf.type_size(elem).map_err(|e| e.to_string())?;
        (rss.offset + count, stride)
    } else {
        let count = btf
            .member("mm_struct", &["rss_stat", "count"])
            .map_err(|e| e.to_string())?;
        (count.offset, 8)
    };
    Ok(indices.map(|i| base + i * stride))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the running kernel's BTF, when readable (unit tests run unprivileged; the
    /// file is world-readable on most systems).
    #[test]
    fn host_layout_is_complete() {
        let path = std::path::Path::new("/sys/kernel/btf/vmlinux");
        let Ok(btf) = Btf::from_file(path) else {
            eprintln!("skipping: {} not readable", path.display());
            return;
        };
        let layout = compute(&btf).expect("layout");
        let o = layout.offsets;
        assert_eq!(o.task_tgid, o.task_pid + 4);
        for (name, v) in [
            ("real_parent", o.task_real_parent),
            ("exit_code", o.task_exit_code),
            ("signal", o.task_signal),
            ("maxrss", o.signal_maxrss),
            ("si_code", o.siginfo_code),
            ("filename", o.bprm_filename),
            ("mm", o.task_mm),
            ("arg_start", o.mm_arg_start),
            ("arg_end", o.mm_arg_end),
            ("group_leader", o.task_group_leader),
            ("sighand", o.task_sighand),
            ("action", o.sighand_action),
            ("k_sigaction", o.ksigaction_size),
            ("_pid", o.siginfo_pid),
            ("thread_pid", o.task_thread_pid),
            ("level", o.pid_level),
            ("numbers", o.pid_numbers),
            ("upid", o.upid_size),
            ("nr", o.upid_nr),
        ] {
            assert_ne!(v, UNAVAILABLE, "{name}: {:?}", layout.notes);
        }
        assert_eq!(o.siginfo_code, 8);
        // si_pid is the first field of the union after the three ints (8-byte aligned).
        assert_eq!(o.siginfo_pid, 16);
        // struct upid { int nr; struct pid_namespace *ns; }
        assert_eq!((o.upid_nr, o.upid_size), (0, 16));
        eprintln!(
            "sighand {} action {} k_sigaction {} thread_pid {} level {} numbers {}",
            o.task_sighand,
            o.sighand_action,
            o.ksigaction_size,
            o.task_thread_pid,
            o.pid_level,
            o.pid_numbers
        );
        // Adjacent unsigned longs in every kernel's mm_struct.
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8);
        let hooks: Vec<HookName> = layout.hooks.iter().map(|h| h.tracepoint).collect();
        assert_eq!(hooks, TRACEPOINTS);
        // Each variant chosen exists in the prototype BTF gives (any kernel has one of them).
        for h in &layout.hooks {
            assert!(h.program.starts_with(h.tracepoint.as_str()), "{h:?}");
        }
        eprintln!("hooks {:?}, notes {:?}", layout.hooks, layout.notes);
    }
}

//! Loading and attaching the kernel programs.
//!
//! Start-up order: check privileges and BTF, compute offsets from BTF, load the object with
//! the offsets and settings as read-only globals, attach each hook independently (a hook the
//! kernel lacks or refuses is reported as unavailable, the others keep working).

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::BtfTracePoint,
};
use monitor_common::{
    COUNTER_RINGBUF_FULL, COUNTER_WATCH_FULL, SCOPE_ALL, SCOPE_WATCHED, SETTING_OOM_ALL, Settings,
};

use crate::{
    btf::Btf,
    event::Unavailable,
    offsets::{self, KernelLayout},
};

/// The compiled kernel programs, embedded at build time (see build.rs).
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/claude-monitor-ebpf"));

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Exit code for an environment that cannot run the agent (privileges, BTF).
pub const EXIT_ENVIRONMENT: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "claude-monitor needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: {missing}); \
         run it with sudo, or grant them with `setcap cap_bpf,cap_perfmon+ep <binary>`"
    )]
    Privileges { missing: String },
    #[error(
        "{BTF_PATH} not found: this kernel was built without BTF (CONFIG_DEBUG_INFO_BTF=y). \
         claude-monitor needs BTF to attach its tp_btf programs and to read kernel structures \
         portably; use a kernel with BTF (most distribution kernels since 2020 have it)"
    )]
    NoBtf,
    #[error("cannot read kernel BTF from {BTF_PATH}")]
    Btf(#[source] crate::btf::BtfError),
    #[error(transparent)]
    Layout(#[from] offsets::LayoutError),
    #[error("cannot load the kernel programs")]
    Load(#[source] aya::EbpfError),
    #[error("no hook could be attached: {0}")]
    NothingAttached(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeMode {
    All,
    /// These processes and all their descendants (followed in the kernel).
    Pids(Vec<u32>),
    /// Every agent session, present and future (the kernel reports everything; the agent
    /// keeps the events of session members).
    Sessions,
    /// One session, by its id (`pid:start`) or its Claude Code session id.
    Session(String),
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub scope: ScopeMode,
    pub ring_buffer_bytes: u32,
    /// Report every OOM kill on the host even in `Pids` scope.
    pub oom_all: bool,
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub layout: KernelLayout,
    pub attached: Vec<String>,
    pub unavailable: Vec<Unavailable>,
}

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Root, or CAP_BPF + CAP_PERFMON in the effective set.
pub fn check_privileges() -> Result<(), LoadError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Privileges {
            missing: missing.join(", "),
        })
    }
}

/// Reads and parses the running kernel's BTF.
pub fn kernel_btf() -> Result<Btf, LoadError> {
    let path = Path::new(BTF_PATH);
    if !path.exists() {
        return Err(LoadError::NoBtf);
    }
    Btf::from_file(path).map_err(LoadError::Btf)
}

fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        // Kernels >= 5.11 charge BPF memory to the memory cgroup instead: not an error.
        tracing::debug!(
            "setrlimit(RLIMIT_MEMLOCK) failed: {}; relying on memcg accounting of BPF memory",
            std::io::Error::last_os_error()
        );
    }
}

/// Loads the programs and attaches every hook the kernel has. In `Pids` scope the roots are
/// put in the watch map before any hook is attached.
pub fn load(btf: &Btf, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    raise_memlock();
    let layout = offsets::compute(btf)?;
    let flags = if opts.oom_all { SETTING_OOM_ALL } else { 0 };
    let settings = Settings {
        scope: match opts.scope {
            ScopeMode::All | ScopeMode::Sessions | ScopeMode::Session(_) => SCOPE_ALL,
            ScopeMode::Pids(_) => SCOPE_WATCHED,
        },
        flags,
    };
    let mut ebpf = EbpfLoader::new()
        .override_global("OFFSETS", &layout.offsets, true)
        .override_global("SETTINGS", &settings, true)
        .map_max_entries("EVENTS", opts.ring_buffer_bytes)
        .load(EBPF_OBJECT)
        .map_err(LoadError::Load)?;

    if let ScopeMode::Pids(roots) = &opts.scope {
        let mut watched = watched_map(&mut ebpf)?;
        for &pid in roots {
            watched
                .insert(pid, 0, 0)
                .map_err(|e| LoadError::Internal(format!("cannot watch pid {pid}: {e}")))?;
        }
    }

    let aya_btf =
        aya::Btf::from_sys_fs().map_err(|e| LoadError::Internal(format!("aya BTF: {e}")))?;
    let mut attached = Vec::new();
    let mut unavailable = Vec::new();
    for hook in &layout.hooks {
        let tp = hook.tracepoint;
        if hook.args.is_none() {
            unavailable.push(Unavailable {
                hook: tp.to_owned(),
                reason: format!("this kernel has no tracepoint {tp} (no btf_trace_{tp} in BTF)"),
            });
            continue;
        }
        match attach(&mut ebpf, hook.program, tp, &aya_btf) {
            Ok(()) => attached.push(tp.to_owned()),
            Err(reason) => {
                tracing::warn!("hook {tp} unavailable: {reason}");
                unavailable.push(Unavailable {
                    hook: tp.to_owned(),
                    reason,
                });
            }
        }
    }
    if attached.is_empty() {
        let reasons: Vec<String> = unavailable
            .iter()
            .map(|u| format!("{}: {}", u.hook, u.reason))
            .collect();
        return Err(LoadError::NothingAttached(reasons.join("; ")));
    }
    Ok(Loaded {
        ebpf,
        layout,
        attached,
        unavailable,
    })
}

fn attach(ebpf: &mut Ebpf, program: &str, tp: &str, btf: &aya::Btf) -> Result<(), String> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    program
        .load(tp, btf)
        .map_err(|e| explain_program_error(&e))?;
    program.attach().map_err(|e| explain_program_error(&e))?;
    Ok(())
}

/// The error chain in one line, with the likely meaning of EPERM.
fn explain_program_error(e: &aya::programs::ProgramError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    if s.contains("Operation not permitted") || s.contains("EPERM") {
        s.push_str(" (refused by the kernel: lockdown, or missing CAP_BPF/CAP_PERFMON)");
    }
    s
}

pub fn watched_map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, u32, u32>, LoadError> {
    let map = ebpf
        .map_mut("WATCHED")
        .ok_or_else(|| LoadError::Internal("map WATCHED missing".into()))?;
    BpfHashMap::try_from(map).map_err(|e| LoadError::Internal(format!("map WATCHED: {e}")))
}

pub fn take_ring(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, LoadError> {
    let map = ebpf
        .take_map("EVENTS")
        .ok_or_else(|| LoadError::Internal("map EVENTS missing".into()))?;
    RingBuf::try_from(map).map_err(|e| LoadError::Internal(format!("map EVENTS: {e}")))
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub ringbuf_full: u64,
    pub watch_full: u64,
}

pub struct Counters {
    map: PerCpuArray<MapData, u64>,
}

impl Counters {
    pub fn take(ebpf: &mut Ebpf) -> Result<Counters, LoadError> {
        let map = ebpf
            .take_map("COUNTERS")
            .ok_or_else(|| LoadError::Internal("map COUNTERS missing".into()))?;
        let map = PerCpuArray::try_from(map)
            .map_err(|e| LoadError::Internal(format!("map COUNTERS: {e}")))?;
        Ok(Counters { map })
    }

    pub fn read(&self) -> KernelCounters {
        let sum = |idx: u32| {
            self.map
                .get(&idx, 0)
                .map(|values| values.iter().sum::<u64>())
                .unwrap_or(0)
        };
        KernelCounters {
            ringbuf_full: sum(COUNTER_RINGBUF_FULL),
            watch_full: sum(COUNTER_WATCH_FULL),
        }
    }
}

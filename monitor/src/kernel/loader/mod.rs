//! Loading and attaching the kernel programs.
//!
//! Start-up order: check privileges and BTF, compute offsets from BTF, load the object with
//! the offsets and settings as read-only globals, attach each hook independently (a hook the
//! kernel lacks or refuses is reported as unavailable, the others keep working).
//! With a pin directory ([`pin`]) the programs, links and maps outlive the agent.

pub mod pin;
mod reported;

pub use reported::Reported;

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, links::FdLink},
};
use monitor_common::{
    AggKey, AggValue, COMM_LEN, COUNTER_GROUP_KILL_DELIVER, COUNTER_RINGBUF_FULL,
    COUNTER_SELF_DELIVER, COUNTER_SELF_SIGNAL, COUNTER_WATCH_FULL, DEFAULT_AGG_BURST,
    DEFAULT_AGG_WINDOW_NS, SCOPE_ALL, SCOPE_SESSIONS, SCOPE_WATCHED, SETTING_EXEC_ALL,
    SETTING_OOM_ALL, SETTING_REPORT_IGNORED_SIGNALS, SETTING_REPORT_RUNTIME_SIGNALS,
    SETTING_VERSION_COMM, Settings,
};

use crate::{
    event::{HookName, PinInfo, PinState, ProgramStats, Unavailable},
    kernel::btf::Btf,
    kernel::offsets::{self, KernelLayout},
};

/// The kernel's exec prefilter: which execs the kernel reports in sessions mode (the
/// detector's rules give it, see `claude::detect::Detector::kernel_candidates`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCandidates {
    pub comms: Vec<String>,
    /// A comm starting with a digit is a candidate.
    pub version_comm: bool,
    /// Rules the prefilter cannot decide from a comm (the kernel then reports every exec).
    pub exec_all: Vec<String>,
}

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
    Btf(#[source] crate::kernel::btf::BtfError),
    #[error(transparent)]
    Layout(#[from] offsets::LayoutError),
    #[error("cannot load the kernel programs")]
    Load(#[source] aya::EbpfError),
    #[error("no hook could be attached: {0}")]
    NothingAttached(String),
    #[error(
        "another claude-monitor holds the pin directory {0} (a daemon is running on it); stop \
         it first, or give this one another kernel.pin_dir"
    )]
    PinBusy(std::path::PathBuf),
    #[error(
        "the pin directory {0} is not on a BPF filesystem: pin directories live under \
         /sys/fs/bpf (set kernel.pin_dir, or kernel.pin = false)"
    )]
    NotBpffs(std::path::PathBuf),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeMode {
    All,
    /// These processes and all their descendants (followed in the kernel).
    Pids(Vec<u32>),
    /// Every agent session, present and future: the kernel follows the trees of candidate
    /// agent images from their exec (`SCOPE_SESSIONS`) and the agent keeps the events of
    /// confirmed sessions.
    Sessions,
    /// One session, by its id (`pid:start`) or its Claude Code session id.
    Session(String),
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub scope: ScopeMode,
    pub ring_buffer_bytes: u32,
    /// Report every OOM kill on the host even in a watched scope.
    pub oom_all: bool,
    /// Report SIGCHLD, SIGURG and SIGWINCH (dropped in the kernel by default).
    pub report_ignored_signals: bool,
    /// Report runtime signals: a process's non-fatal signals to itself and their
    /// deliveries, and every thread's SIGKILL delivery of a group exit (dropped in the
    /// kernel and counted by default).
    pub report_runtime_signals: bool,
    /// Aggregate floods of one (sender, target, signal) in the kernel.
    pub aggregate_signals: bool,
    /// The exec prefilter of the session scopes.
    pub candidates: KernelCandidates,
    /// Pin programs, links and maps here (bpffs), and reuse what is pinned there.
    pub pin_dir: Option<PathBuf>,
}

/// The maps userspace reads and writes.
pub struct KernelMaps {
    pub ring: Option<RingBuf<MapData>>,
    pub watched: Option<BpfHashMap<MapData, u32, u32>>,
    pub agg: Option<BpfHashMap<MapData, AggKey, AggValue>>,
    pub counters: Option<Counters>,
    pub reported: Option<Reported>,
}

/// The maps userspace keeps for the run (see [`Loaded::take_maps`]).
pub struct UserMaps {
    pub counters: Counters,
    pub reported: Reported,
    pub watched: BpfHashMap<MapData, u32, u32>,
    pub agg: BpfHashMap<MapData, AggKey, AggValue>,
}

pub struct Loaded {
    /// Owns the programs and their links when they are not pinned (dropping it detaches).
    _ebpf: Option<Ebpf>,
    pub layout: KernelLayout,
    pub attached: Vec<HookName>,
    pub unavailable: Vec<Unavailable>,
    pub maps: KernelMaps,
    /// The ring buffer of replaced pinned programs: drain it before `maps.ring`.
    pub previous_ring: Option<RingBuf<MapData>>,
    pub pin: Option<PinInfo>,
    /// (program name, kernel program id), for run-time statistics.
    pub programs: Vec<(String, u32)>,
    /// The links when they are not pinned: closing them detaches the programs.
    _links: Vec<(&'static str, FdLink)>,
    /// The pin directory's lock, held for as long as the agent runs.
    pub pin_lock: Option<std::fs::File>,
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

fn settings(opts: &LoadOptions) -> Settings {
    let mut flags = 0;
    if opts.oom_all {
        flags |= SETTING_OOM_ALL;
    }
    if opts.report_ignored_signals {
        flags |= SETTING_REPORT_IGNORED_SIGNALS;
    }
    if opts.report_runtime_signals {
        flags |= SETTING_REPORT_RUNTIME_SIGNALS;
    }
    let scope = match opts.scope {
        ScopeMode::All => SCOPE_ALL,
        ScopeMode::Pids(_) => SCOPE_WATCHED,
        ScopeMode::Sessions | ScopeMode::Session(_) => {
            if opts.candidates.version_comm {
                flags |= SETTING_VERSION_COMM;
            }
            if !opts.candidates.exec_all.is_empty() {
                flags |= SETTING_EXEC_ALL;
            }
            SCOPE_SESSIONS
        }
    };
    let (agg_burst, agg_window_ns) = if opts.aggregate_signals {
        (DEFAULT_AGG_BURST, DEFAULT_AGG_WINDOW_NS)
    } else {
        (0, 0)
    };
    Settings {
        scope,
        flags,
        agg_burst,
        _pad: 0,
        agg_window_ns,
    }
}

/// The comm as the kernel stores it: at most 15 bytes, NUL-padded.
fn comm_key(comm: &str) -> [u8; COMM_LEN] {
    let mut key = [0u8; COMM_LEN];
    for (k, b) in key.iter_mut().zip(comm.bytes().take(COMM_LEN - 1)) {
        *k = b;
    }
    key
}

/// FNV-1a over everything the pinned programs were built from: reuse pinned objects only
/// when it matches.
fn fingerprint(layout: &KernelLayout, settings: &Settings, opts: &LoadOptions) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(EBPF_OBJECT);
    feed(format!("{:?}", layout.offsets).as_bytes());
    feed(format!("{settings:?}").as_bytes());
    feed(&opts.ring_buffer_bytes.to_le_bytes());
    feed(format!("{:?}", opts.candidates.comms).as_bytes());
    for hook in &layout.hooks {
        feed(hook.program.as_bytes());
    }
    format!("{h:016x}")
}

const FINGERPRINT_PREFIX: &str = "fingerprint-";

/// Loads the programs and attaches every hook the kernel has, or, with a pin directory
/// whose pinned objects match this build and configuration, reopens those (the kernel kept
/// recording into the pinned ring buffer while no agent was running).
pub fn load(btf: &Btf, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    raise_memlock();
    let layout = offsets::compute(btf)?;
    let settings = settings(opts);
    let Some(dir) = &opts.pin_dir else {
        return load_fresh(layout, &settings, opts, None);
    };
    let print = fingerprint(&layout, &settings, opts);
    pin::ensure_bpffs(dir)?;
    // One agent per pin directory: two would consume one ring buffer (each event seen by
    // one of them, or torn) and replace each other's programs.
    let lock = pin::lock(dir)?;
    let pinned = pin::pinned_fingerprint(dir);
    if pinned.as_deref() == Some(print.as_str()) {
        match pin::reopen(dir, &layout) {
            Ok(mut loaded) => {
                loaded.pin_lock = Some(lock);
                return Ok(loaded);
            }
            Err(e) => crate::diag::pin_reopen_failed(dir, e),
        }
    }
    let state = if pinned.is_some() {
        PinState::Replaced
    } else {
        PinState::Created
    };
    // New programs first, pinned aside (in the staging directory, emptied of what a crashed
    // upgrade left); then the old ones are unpinned (detached) and the new ones moved in
    // place. The old ring buffer is drained first: nothing is missed, though an event of
    // the few milliseconds of overlap may be seen twice.
    let previous_ring = pinned.as_ref().and_then(|_| pin::open_ring(dir).ok());
    pin::remove_staging(dir)?;
    let mut loaded = load_fresh(layout, &settings, opts, Some(&pin::staging_dir(dir)))?;
    pin::clear(dir)?;
    pin::commit(dir, &print)?;
    loaded.previous_ring = previous_ring;
    loaded.pin_lock = Some(lock);
    loaded.pin = Some(PinInfo {
        dir: dir.clone(),
        state,
    });
    Ok(loaded)
}

fn load_fresh(
    layout: KernelLayout,
    settings: &Settings,
    opts: &LoadOptions,
    pin_to: Option<&Path>,
) -> Result<Loaded, LoadError> {
    let mut ebpf = EbpfLoader::new()
        .override_global("OFFSETS", &layout.offsets, true)
        .override_global("SETTINGS", settings, true)
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
    if settings.scope == SCOPE_SESSIONS {
        let map = ebpf
            .map_mut("CANDIDATES")
            .ok_or_else(|| LoadError::Internal("map CANDIDATES missing".into()))?;
        let mut candidates: BpfHashMap<&mut MapData, [u8; COMM_LEN], u8> =
            BpfHashMap::try_from(map)
                .map_err(|e| LoadError::Internal(format!("map CANDIDATES: {e}")))?;
        for comm in &opts.candidates.comms {
            candidates
                .insert(comm_key(comm), 1, 0)
                .map_err(|e| LoadError::Internal(format!("candidate comm {comm}: {e}")))?;
        }
    }

    let aya_btf =
        aya::Btf::from_sys_fs().map_err(|e| LoadError::Internal(format!("aya BTF: {e}")))?;
    let mut attached = Vec::new();
    let mut unavailable = Vec::new();
    let mut programs = Vec::new();
    let mut links = Vec::new();
    for hook in &layout.hooks {
        let tp = hook.tracepoint;
        if hook.args.is_none() {
            unavailable.push(Unavailable {
                hook: tp,
                reason: format!("this kernel has no tracepoint {tp} (no btf_trace_{tp} in BTF)"),
            });
            continue;
        }
        match attach(&mut ebpf, hook.program, tp.as_str(), &aya_btf) {
            Ok((id, link)) => {
                attached.push(tp);
                programs.push((hook.program.to_owned(), id));
                links.push((tp.as_str(), link));
            }
            Err(reason) => {
                crate::diag::hook_unavailable(tp.as_str(), &reason);
                unavailable.push(Unavailable { hook: tp, reason });
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
    if let Some(dir) = pin_to {
        pin::pin_objects(&mut ebpf, &programs, links, dir)?;
        links = Vec::new();
    }
    let loaded = Loaded {
        maps: KernelMaps {
            ring: Some(take_ring(&mut ebpf)?),
            watched: Some(take_hash(&mut ebpf, "WATCHED")?),
            agg: Some(take_hash(&mut ebpf, "SIGNAL_AGG")?),
            counters: Some(Counters::take(&mut ebpf)?),
            reported: Some(Reported::take(&mut ebpf)?),
        },
        _ebpf: Some(ebpf),
        layout,
        attached,
        unavailable,
        previous_ring: None,
        pin: None,
        pin_lock: None,
        programs,
        _links: links,
    };
    Ok(loaded)
}

impl Loaded {
    /// Takes the ring buffer out (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        self.maps
            .ring
            .take()
            .ok_or_else(|| LoadError::Internal("ring buffer already taken".into()))
    }

    /// Takes the maps userspace keeps: counters, what was reported of them, watch map,
    /// signal aggregator.
    pub fn take_maps(&mut self) -> Result<UserMaps, LoadError> {
        let taken = || LoadError::Internal("maps already taken".into());
        Ok(UserMaps {
            counters: self.maps.counters.take().ok_or_else(taken)?,
            reported: self.maps.reported.take().ok_or_else(taken)?,
            watched: self.maps.watched.take().ok_or_else(taken)?,
            agg: self.maps.agg.take().ok_or_else(taken)?,
        })
    }

    /// Run time and run count of each program (non-zero only while the kernel's BPF
    /// statistics are on: `sysctl kernel.bpf_stats_enabled=1`).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let mut by_id = std::collections::HashMap::new();
        for info in aya::programs::loaded_programs().flatten() {
            by_id.insert(
                info.id(),
                (info.run_time().as_nanos() as u64, info.run_count()),
            );
        }
        self.programs
            .iter()
            .filter_map(|(name, id)| {
                by_id.get(id).map(|&(run_time_ns, run_count)| ProgramStats {
                    name: name.clone(),
                    run_count,
                    run_time_ns,
                })
            })
            .collect()
    }
}

/// Whether the kernel is collecting BPF run-time statistics.
pub fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

/// Loads and attaches one program; returns its kernel program id and its link (the program
/// stays attached for as long as the link is open or pinned).
fn attach(
    ebpf: &mut Ebpf,
    program: &str,
    tp: &str,
    btf: &aya::Btf,
) -> Result<(u32, FdLink), String> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    program
        .load(tp, btf)
        .map_err(|e| explain_program_error(&e))?;
    let link_id = program.attach().map_err(|e| explain_program_error(&e))?;
    let link = program
        .take_link(link_id)
        .map_err(|e| explain_program_error(&e))?;
    let id = program
        .info()
        .map(|i| i.id())
        .map_err(|e| explain_program_error(&e))?;
    Ok((id, link.into()))
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

fn watched_map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, u32, u32>, LoadError> {
    let map = ebpf
        .map_mut("WATCHED")
        .ok_or_else(|| LoadError::Internal("map WATCHED missing".into()))?;
    BpfHashMap::try_from(map).map_err(|e| LoadError::Internal(format!("map WATCHED: {e}")))
}

fn take_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
) -> Result<BpfHashMap<MapData, K, V>, LoadError> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| LoadError::Internal(format!("map {name} missing")))?;
    BpfHashMap::try_from(map).map_err(|e| LoadError::Internal(format!("map {name}: {e}")))
}

fn take_ring(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, LoadError> {
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
    /// Runtime signals not reported (`COUNTER_SELF_SIGNAL`, `COUNTER_SELF_DELIVER`,
    /// `COUNTER_GROUP_KILL_DELIVER`).
    pub self_signal: u64,
    pub self_deliver: u64,
    pub group_kill_deliver: u64,
}

pub struct Counters {
    map: PerCpuArray<MapData, u64>,
}

impl Counters {
    pub fn from_map(map: aya::maps::Map) -> Result<Counters, LoadError> {
        let map = PerCpuArray::try_from(map)
            .map_err(|e| LoadError::Internal(format!("map COUNTERS: {e}")))?;
        Ok(Counters { map })
    }

    fn take(ebpf: &mut Ebpf) -> Result<Counters, LoadError> {
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
            self_signal: sum(COUNTER_SELF_SIGNAL),
            self_deliver: sum(COUNTER_SELF_DELIVER),
            group_kill_deliver: sum(COUNTER_GROUP_KILL_DELIVER),
        }
    }
}

//! Maps and read-only globals shared by the programs.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    AGG_MAX, AggKey, AggValue, CANDIDATES_MAX, COMM_LEN, COUNTERS_LEN, DEFAULT_RING_BYTES, Offsets,
    SCOPE_ALL, SCOPE_SESSIONS, Settings, WATCHED_MAX,
};

/// Every record, in one order. Userspace may resize it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Processes (tgids) followed in `SCOPE_WATCHED`; children are added at fork.
#[map]
pub static WATCHED: HashMap<u32, u32> = HashMap::with_max_entries(WATCHED_MAX, 0);

/// In-kernel signal aggregation: one entry per (sender, target, signal).
#[map]
pub static SIGNAL_AGG: HashMap<AggKey, AggValue> = HashMap::with_max_entries(AGG_MAX, 0);

/// Comms of candidate agent images (`SCOPE_SESSIONS`), filled by userspace.
#[map]
pub static CANDIDATES: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(CANDIDATES_MAX, 0);

/// Per-CPU time of the last ring-buffer wakeup this CPU forced (see `probes::submit`).
#[map]
pub static WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters (`COUNTER_*`): failed ring-buffer reserves, full watch map.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Userspace's own, never touched by a program: the `COUNTERS` sums (same indices) the
/// agent last reported as `lost` records. Pinned with the rest, so it lives and dies with
/// the pinned ring buffer: an agent that reopens the pinned programs reports only the
/// losses that are new, and a fresh load starts from zero with fresh counters.
#[map]
pub static REPORTED: Array<u64> = Array::with_max_entries(COUNTERS_LEN, 0);

/// Userspace's own, never touched by a program: each `SIGNAL_AGG` key's `suppressed` as
/// the agent last reported it (so a restarted agent does not report old aggregates again).
#[map]
pub static AGG_REPORTED: HashMap<AggKey, u64> = HashMap::with_max_entries(AGG_MAX, 0);

/// Kernel struct offsets from BTF, set by userspace at load (`override_global`).
#[unsafe(no_mangle)]
pub static OFFSETS: Offsets = Offsets::unavailable();

/// Behaviour switches, set by userspace at load.
#[unsafe(no_mangle)]
pub static SETTINGS: Settings = Settings {
    scope: SCOPE_ALL,
    flags: 0,
    agg_burst: 0,
    _pad: 0,
    agg_window_ns: 0,
};

/// Reads one field of `OFFSETS` (volatile so the compiler keeps the load; the verifier then
/// sees the frozen read-only value and prunes unreachable branches).
macro_rules! off {
    ($field:ident) => {{
        // SAFETY: OFFSETS is a plain static; the read is in bounds. (The macro may be
        // used inside another unsafe block, hence the allow.)
        #[allow(
            unused_unsafe,
            reason = "macro used both inside and outside unsafe blocks"
        )]
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::maps::OFFSETS.$field) };
        v
    }};
}
pub(crate) use off;

#[inline(always)]
pub fn settings_flags() -> u32 {
    // SAFETY: plain static read.
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.flags) }
}

/// Whether only watched processes are reported (`SCOPE_WATCHED` or `SCOPE_SESSIONS`).
#[inline(always)]
pub fn scope_watched() -> bool {
    // SAFETY: plain static read.
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.scope) != SCOPE_ALL }
}

#[inline(always)]
pub fn scope_sessions() -> bool {
    // SAFETY: plain static read.
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.scope) == SCOPE_SESSIONS }
}

#[inline(always)]
pub fn agg_settings() -> (u32, u64) {
    // SAFETY: plain static reads.
    unsafe {
        (
            core::ptr::read_volatile(&raw const SETTINGS.agg_burst),
            core::ptr::read_volatile(&raw const SETTINGS.agg_window_ns),
        )
    }
}

#[inline(always)]
pub fn is_watched(tgid: u32) -> bool {
    WATCHED.get_ptr(tgid).is_some()
}

#[inline(always)]
pub fn count(counter: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *p += 1 };
    }
}

//! One module per kernel hook.

mod deliver;
mod exec;
mod exit;
mod fork;
mod oom;
mod signal;

use aya_ebpf::maps::ring_buf::RingBufEntry;
use monitor_common::{COMM_LEN, COUNTER_RINGBUF_FULL, Header, Kind, WIRE_VERSION};

use crate::{
    kernel,
    maps::{EVENTS, WAKEUP, count},
};

#[inline(always)]
pub fn header(kind: Kind, pid: u32, tid: u32, comm: [u8; COMM_LEN]) -> Header {
    Header {
        kind: kind as u16,
        version: WIRE_VERSION,
        cpu: kernel::cpu(),
        ts_ns: kernel::now_ns(),
        pid,
        tid,
        comm,
    }
}

/// At most one forced wakeup of the agent per CPU per this interval.
const WAKEUP_GAP_NS: u64 = 1_000_000;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Submits a record, waking the agent at most once per millisecond per CPU. The ring
/// buffer's default (wake whenever the reader has caught up) costs an interrupt-work
/// wakeup for nearly every record under a storm, when the agent keeps up: more than the
/// rest of the program. The agent, once woken, keeps reading every 2 ms for as long as
/// records keep coming (see `engine::BUSY_POLL`), so a record submitted without a wakeup
/// waits at most about 2 ms, and an idle system costs nothing.
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>) {
    let now = kernel::now_ns();
    let flags = match WAKEUP.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        Some(last) => unsafe {
            if now.wrapping_sub(*last) >= WAKEUP_GAP_NS {
                *last = now;
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            }
        },
        None => 0,
    };
    entry.submit(flags);
}

/// Reserves a `T` in the ring buffer, counting the failure when it is full.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count(COUNTER_RINGBUF_FULL);
    }
    entry
}

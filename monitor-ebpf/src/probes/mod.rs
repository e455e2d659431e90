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
    maps::{EVENTS, count},
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

/// Reserves a `T` in the ring buffer, counting the failure when it is full.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count(COUNTER_RINGBUF_FULL);
    }
    entry
}

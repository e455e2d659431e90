//! What the agent last reported, kept in the kernel next to what it counts: `REPORTED` (the
//! `COUNTERS` sums last reported as `lost` records) and `AGG_REPORTED` (each signal
//! aggregate's `suppressed` last reported). No program touches them; they are maps so that
//! they are pinned with the ring buffer and the counters they describe, and live and die
//! with them: an agent that reopens pinned programs carries on from what the previous one
//! reported (it reports only the new losses and aggregates), and a fresh load (new or
//! replaced programs, fresh counters) starts from zero. A file in the data directory would
//! outlive the pinned objects it describes and would have to be matched to them.

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError};
use monitor_common::{AggKey, COUNTER_RINGBUF_FULL, COUNTER_WATCH_FULL};

use super::{KernelCounters, LoadError};

pub struct Reported {
    counters: Array<MapData, u64>,
    agg: BpfHashMap<MapData, AggKey, u64>,
}

impl Reported {
    pub fn from_maps(counters: Map, agg: Map) -> Result<Reported, LoadError> {
        Ok(Reported {
            counters: Array::try_from(counters)
                .map_err(|e| LoadError::Internal(format!("map REPORTED: {e}")))?,
            agg: BpfHashMap::try_from(agg)
                .map_err(|e| LoadError::Internal(format!("map AGG_REPORTED: {e}")))?,
        })
    }

    pub(super) fn take(ebpf: &mut aya::Ebpf) -> Result<Reported, LoadError> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| LoadError::Internal(format!("map {name} missing")))
        };
        let counters = take("REPORTED")?;
        Reported::from_maps(counters, take("AGG_REPORTED")?)
    }

    /// The loss counters last reported (`ringbuf_full`, `watch_full`; the rest are 0).
    pub fn counters(&self) -> Result<KernelCounters, MapError> {
        Ok(KernelCounters {
            ringbuf_full: self.counters.get(&COUNTER_RINGBUF_FULL, 0)?,
            watch_full: self.counters.get(&COUNTER_WATCH_FULL, 0)?,
            ..KernelCounters::default()
        })
    }

    /// Records that the losses up to `c` have been reported.
    pub fn save_counters(&mut self, c: &KernelCounters) -> Result<(), MapError> {
        self.counters.set(COUNTER_RINGBUF_FULL, c.ringbuf_full, 0)?;
        self.counters.set(COUNTER_WATCH_FULL, c.watch_full, 0)
    }

    /// Each aggregate's `suppressed` as last reported.
    pub fn aggregates(&self) -> Result<std::collections::HashMap<AggKey, u64>, MapError> {
        self.agg.iter().collect()
    }

    /// Records that `key`'s aggregate has been reported up to `suppressed`.
    pub fn save_aggregate(&mut self, key: AggKey, suppressed: u64) -> Result<(), MapError> {
        self.agg.insert(key, suppressed, 0)
    }

    /// `key` left the aggregator: nothing of it is left to remember.
    pub fn forget_aggregate(&mut self, key: &AggKey) {
        // A key never reported is not in the map: nothing to remove.
        let _ = self.agg.remove(key);
    }
}

//! Kernel timestamps (`CLOCK_BOOTTIME` ns) to wall-clock time.

use chrono::{DateTime, SecondsFormat, Utc};

/// Offset between `CLOCK_REALTIME` and `CLOCK_BOOTTIME`, measured once at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_boottime_ns: i128,
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; the clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Current `CLOCK_BOOTTIME` in ns (the clock of `bpf_ktime_get_boot_ns`).
pub fn boottime_ns() -> u64 {
    now_ns(libc::CLOCK_BOOTTIME) as u64
}

impl Clock {
    /// Measures the offset, keeping the sample with the tightest bracket.
    pub fn measure() -> Clock {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..5 {
            let b1 = now_ns(libc::CLOCK_BOOTTIME);
            let r = now_ns(libc::CLOCK_REALTIME);
            let b2 = now_ns(libc::CLOCK_BOOTTIME);
            let width = b2 - b1;
            let offset = r - (b1 + b2) / 2;
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, offset));
            }
        }
        Clock {
            realtime_minus_boottime_ns: best.map(|(_, o)| o).unwrap_or(0),
        }
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub fn fixed(realtime_minus_boottime_ns: i128) -> Clock {
        Clock {
            realtime_minus_boottime_ns,
        }
    }

    pub fn wall(&self, boottime_ns: u64) -> DateTime<Utc> {
        let ns = i128::from(boottime_ns) + self.realtime_minus_boottime_ns;
        let ns = i64::try_from(ns).unwrap_or(i64::MAX);
        DateTime::from_timestamp_nanos(ns)
    }

    /// RFC 3339, UTC, nanoseconds: `2026-11-21T21:59:13.123456789Z`.
    pub fn rfc3339(&self, boottime_ns: u64) -> String {
        format_ts(self.wall(boottime_ns))
    }
}

pub fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nanoseconds() {
        let c = Clock::fixed(1_700_000_000_000_000_000);
        assert_eq!(c.rfc3339(5), "2023-11-14T22:13:20.000000005Z");
    }

    #[test]
    fn measured_offset_is_plausible() {
        let c = Clock::measure();
        let wall = c.wall(boottime_ns());
        let diff = (Utc::now() - wall).num_milliseconds().abs();
        assert!(diff < 1000, "wall clock off by {diff} ms");
    }
}

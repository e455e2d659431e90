//! What the agent itself uses: its resident memory and CPU time, from `/proc/self/stat`
//! (for `claude_monitor_agent_resident_memory_bytes` and
//! `claude_monitor_agent_cpu_seconds_total`).

use std::{io, path::Path};

/// The agent's own resource use now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfUsage {
    /// Resident set size (the `rss` field, in pages, times the page size).
    pub resident_bytes: u64,
    /// User plus system CPU time of every thread (`utime` + `stime`), in seconds.
    pub cpu_seconds: f64,
}

/// The use of the process `<proc_root>/self` (the real one: [`super::proc::PROC`]).
pub fn self_usage(proc_root: &Path) -> io::Result<SelfUsage> {
    let stat = procfs::process::Process::new_with_root(proc_root.join("self"))
        .and_then(|p| p.stat())
        .map_err(io::Error::other)?;
    Ok(usage(stat.rss, stat.utime + stat.stime))
}

fn usage(rss_pages: u64, cpu_ticks: u64) -> SelfUsage {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100);
    SelfUsage {
        resident_bytes: rss_pages.saturating_mul(super::page_kb() * 1024),
        cpu_seconds: cpu_ticks as f64 / ticks as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_ticks() {
        let u = usage(10, 250);
        assert_eq!(u.resident_bytes, 10 * super::super::page_kb() * 1024);
        assert!((u.cpu_seconds - 2.5).abs() < 1e-9, "{u:?}");
    }

    /// The test process's own figures: some memory, and CPU time that does not go back.
    #[test]
    fn own_usage() {
        let root = Path::new(crate::host::proc::PROC);
        let a = self_usage(root).expect("own stat");
        let mut spin = 0u64;
        for i in 0..2_000_000u64 {
            spin = spin.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(spin);
        let b = self_usage(root).expect("own stat");
        assert!(a.resident_bytes > 1024 * 1024, "{a:?}");
        assert!(
            b.cpu_seconds >= a.cpu_seconds && a.cpu_seconds >= 0.0,
            "{a:?} {b:?}"
        );
        let missing = self_usage(Path::new("/nonexistent-proc"));
        assert!(missing.is_err());
    }
}

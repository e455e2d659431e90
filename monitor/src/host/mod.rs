//! Facts read from the host: the clock, cgroup paths, memory cgroup limits and usage.

pub mod cgroups;
pub mod clock;
pub mod memcg;
pub mod nofollow;
pub mod proc;
/// The agent's own RSS and CPU (for `/metrics`).
pub mod usage;

/// The page size in KiB.
pub fn page_kb() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).unwrap_or(4096) / 1024
}

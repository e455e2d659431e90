//! Facts read from the host: the clock, cgroup paths, memory cgroup limits and usage.

pub mod cgroups;
pub mod clock;
pub mod memcg;

//! claude-monitor: an eBPF host agent that explains why processes died.
//!
//! One module per concern: [`btf`] reads the kernel's type information, [`offsets`] turns
//! it into the field offsets the kernel programs use, [`loader`] loads and attaches them,
//! [`trace`] reads the ring buffer, [`event`] is the JSON schema, [`sink`] writes it,
//! [`scope`] finds the processes to follow, [`names`] decodes signals and wait statuses,
//! [`cgroups`] resolves memory cgroup ids to paths.

pub mod alerts;
pub mod attribution;
pub mod btf;
pub mod cgroups;
pub mod claude;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod explain;
pub mod hold;
pub mod loader;
pub mod memcg;
pub mod names;
pub mod offsets;
pub mod proctable;
pub mod report;
pub mod resources;
pub mod rotate;
pub mod scope;
pub mod service;
pub mod sink;
#[cfg(test)]
pub(crate) mod testutil;
pub mod trace;

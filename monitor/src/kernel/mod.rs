//! The kernel side: its BTF, the offsets the eBPF programs read, loading and pinning them.

pub mod btf;
pub mod loader;
pub mod offsets;

#![no_std]
// Empty library so that the userspace crate can build-depend on this crate
// (cargo then rebuilds the agent when the kernel programs change).

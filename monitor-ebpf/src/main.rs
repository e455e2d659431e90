//! claude-monitor kernel programs.
//!
//! One module per hook under `probes/`, each with the tracepoint's prototype next to the
//! program. All programs are `tp_btf` (typed arguments, no tracefs needed). Kernel struct
//! fields are read at offsets computed by userspace from the running kernel's BTF
//! (`OFFSETS`), never at offsets compiled in. Records go to one ring buffer (`EVENTS`); a
//! failed reserve is counted per CPU in `COUNTERS` and surfaced by userspace as a `lost`
//! event.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod kernel;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic path; this loop is never
    // executed by a loaded program.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}

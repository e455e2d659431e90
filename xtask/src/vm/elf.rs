//! The two ELF chores of the guest: checking that a binary is static (the guest has no libc),
//! and a 165-byte static x86-64 program that makes qemu exit with a chosen status.
//!
//! qemu exits 0 even when the guest kernel panics (with `-no-reboot`), so its exit status
//! alone cannot tell a run that finished from one that crashed. With
//! `-device isa-debug-exit,iobase=0xf4,iosize=0x04`, a byte `v` written to I/O port 0xf4
//! makes qemu exit at once with `(v << 1) | 1`. busybox cannot do port I/O, and the Debian
//! cloud kernels have no `/dev/port` (`CONFIG_DEVPORT` is off), so the guest gets this tiny
//! program instead: `ioperm(0xf4, 4, 1)`, `outb(v, 0xf4)`, and `exit(1)` if it is still
//! running (no such device, or ioperm refused). Generated here rather than compiled so that
//! it needs no extra crate, target or toolchain.

use std::{fs::File, io::Read as _, path::Path};

use anyhow::{Context as _, Result, bail};

/// Whether the ELF executable at `path` runs without a dynamic loader: it has no PT_INTERP
/// program header (true of `static-pie` Rust binaries built with `+crt-static`).
/// The same check as `file`/`ldd`, without assuming either is installed.
pub fn is_static(path: &Path) -> Result<bool> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let u16_at = |off: usize| {
        bytes
            .get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |off: usize| {
        bytes
            .get(off..off + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        bail!("{}: truncated ELF header", path.display());
    };
    for i in 0..usize::from(phnum) {
        let off = usize::try_from(phoff)? + i * usize::from(phentsize);
        let Some(p_type) = bytes.get(off..off + 4) else {
            bail!(
                "{}: program headers beyond the first 64 KiB",
                path.display()
            );
        };
        if p_type == 3u32.to_le_bytes() {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

/// Where the single PT_LOAD segment is mapped (the classic non-PIE base).
const BASE: u64 = 0x40_0000;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// The ELF image of a program that writes `value` to port 0xf4.
pub fn debug_exit_program(value: u8) -> Vec<u8> {
    #[rustfmt::skip]
    let code: [u8; 45] = [
        0xb8, 0xad, 0x00, 0x00, 0x00, // mov eax, 173 (SYS_ioperm)
        0xbf, 0xf4, 0x00, 0x00, 0x00, // mov edi, 0xf4 (from)
        0xbe, 0x04, 0x00, 0x00, 0x00, // mov esi, 4 (num)
        0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1 (turn_on)
        0x0f, 0x05,                   // syscall
        0x85, 0xc0,                   // test eax, eax
        0x75, 0x07,                   // jnz exit (ioperm failed)
        0xb0, value,                  // mov al, value
        0x66, 0xba, 0xf4, 0x00,       // mov dx, 0xf4
        0xee,                         // out dx, al
        0xb8, 0x3c, 0x00, 0x00, 0x00, // exit: mov eax, 60 (SYS_exit)
        0xbf, 0x01, 0x00, 0x00, 0x00, // mov edi, 1
        0x0f, 0x05,                   // syscall
    ];
    let total = (EHDR_SIZE + PHDR_SIZE + code.len()) as u64;
    let entry = BASE + (EHDR_SIZE + PHDR_SIZE) as u64;

    let mut elf = Vec::with_capacity(total as usize);
    // ELF header: 64-bit, little-endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&entry.to_le_bytes()); // e_entry
    elf.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    // One PT_LOAD segment, read + execute, mapping the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R | X
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&total.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&total.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&code);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let elf = debug_exit_program(0x10);
        assert_eq!(elf.len(), EHDR_SIZE + PHDR_SIZE + 45);
        assert_eq!(&elf[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(elf[24..32].try_into().unwrap());
        assert_eq!(entry, BASE + 120);
        let code = &elf[120..];
        // The jump skips exactly `mov al; mov dx; out` and lands on the exit sequence.
        let jnz = code.iter().position(|&b| b == 0x75).unwrap();
        let target = jnz + 2 + usize::from(code[jnz + 1]);
        assert_eq!(&code[target..target + 5], &[0xb8, 0x3c, 0, 0, 0]);
        assert_eq!(code[jnz + 3], 0x10, "the value written to the port");
        assert_eq!(&code[code.len() - 2..], &[0x0f, 0x05]);
    }

    #[test]
    fn static_check() {
        let dir = std::env::temp_dir().join(format!("xtask-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exiter = dir.join("exit");
        std::fs::write(&exiter, debug_exit_program(0)).unwrap();
        assert!(is_static(&exiter).unwrap());
        // This test binary itself is dynamically linked (the host build has no +crt-static).
        let me = std::env::current_exe().unwrap();
        assert!(!is_static(&me).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Builds the kernel programs (`monitor-ebpf`) with the nightly toolchain and bpf-linker
//! (aya-template style), so a plain `cargo build` works once `cargo xtask setup` has run.

use std::{env, path::PathBuf};

use anyhow::{Context as _, anyhow};

const LINKER_VAR: &str = "CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed={LINKER_VAR}");
    if env::var_os(LINKER_VAR).is_none() && !on_path("bpf-linker") {
        // Where `cargo xtask setup` installs it.
        let home = env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .context("neither CARGO_HOME nor HOME is set")?;
        let linker = home.join("claude-monitor/bin/bpf-linker");
        if !linker.is_file() {
            return Err(anyhow!(
                "bpf-linker not found (not on PATH, no {LINKER_VAR}, not at {}): run `cargo xtask setup` first",
                linker.display()
            ));
        }
        // SAFETY: build scripts are single-threaded at this point; the variable is read by
        // the nested cargo that aya-build spawns.
        unsafe { env::set_var(LINKER_VAR, &linker) };
    }
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?)
        .parent()
        .context("monitor crate has no parent directory")?
        .join("monitor-ebpf");
    let root = root.to_str().context("non-UTF-8 workspace path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

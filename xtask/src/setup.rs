//! `cargo xtask setup`: everything the eBPF build needs, installed idempotently.
//!
//! 1. the nightly toolchain's `rust-src` (for `-Z build-std=core`);
//! 2. `bpf-linker`, built against the nightly's own shared LLVM. Debian ships no LLVM as new
//!    as rustc's, but the nightly sysroot carries `libLLVM.so.<ver>-rust-<ver>`: we point
//!    `LLVM_PREFIX` at a directory of symlinks to it, which also becomes bpf-linker's RUNPATH,
//!    so that directory lives in a stable place under `$CARGO_HOME`.
//!
//! A second run checks that the installed linker starts and was built for the current
//! nightly, and returns in a second or two.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cargo::{capture, describe, run_checked};

/// The eBPF toolchain: `rustup run <NIGHTLY>` is what aya-build uses.
pub const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

#[derive(clap::Args, Default)]
pub struct Options {
    /// Rebuild bpf-linker even when the installed one works.
    #[arg(long)]
    pub force: bool,
}

/// What the build needs to find the toolchain.
pub struct Toolchain {
    pub bpf_linker: PathBuf,
}

impl Toolchain {
    /// Environment for cargo invocations that build the eBPF crate (through monitor/build.rs).
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", &self.bpf_linker);
    }
}

pub fn run(opts: &Options) -> Result<Toolchain> {
    which("rustup").context(
        "rustup is not on PATH: the eBPF build runs `rustup run nightly cargo build`; \
         install rustup (https://rustup.rs) and make sure ~/.cargo/bin is on PATH",
    )?;
    let nightly = nightly_info()?;
    ensure_rust_src(&nightly)?;
    let bpf_linker = ensure_bpf_linker(&nightly, opts.force)?;
    Ok(Toolchain { bpf_linker })
}

struct Nightly {
    sysroot: PathBuf,
    llvm_major: String,
    commit: String,
}

fn nightly_info() -> Result<Nightly> {
    let out = capture(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"]));
    let out = match out {
        Ok(out) => out,
        Err(_) => {
            eprintln!(
                "xtask: nightly toolchain missing; installing it (rustup toolchain install {NIGHTLY} --profile minimal)"
            );
            run_checked(Command::new("rustup").args([
                "toolchain",
                "install",
                NIGHTLY,
                "--profile",
                "minimal",
            ]))
            .context("could not install the nightly toolchain that builds the eBPF programs")?;
            capture(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"]))?
        }
    };
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| anyhow!("`rustc +{NIGHTLY} -vV` printed no `{name}` line:\n{out}"))
    };
    let llvm = field("LLVM version:")?;
    let llvm_major = llvm
        .split('.')
        .next()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| anyhow!("cannot parse LLVM version `{llvm}`"))?
        .to_owned();
    let commit = field("commit-hash:")?;
    let sysroot =
        capture(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    Ok(Nightly {
        sysroot: PathBuf::from(sysroot.trim()),
        llvm_major,
        commit,
    })
}

fn ensure_rust_src(nightly: &Nightly) -> Result<()> {
    let core = nightly
        .sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if core.exists() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing rust-src for the {NIGHTLY} toolchain (needed by -Z build-std=core)"
    );
    let mut cmd = Command::new("rustup");
    cmd.args(["component", "add", "rust-src", "--toolchain", NIGHTLY]);
    run_checked(&mut cmd).with_context(|| {
        format!(
            "could not install rust-src; run `{}` by hand and check network access to the Rust \
             distribution server",
            describe(&cmd)
        )
    })?;
    if !core.exists() {
        bail!(
            "rustup reports rust-src as installed for {NIGHTLY}, but {} is missing: the \
             component's files were removed by hand; reinstall the component (remove its entry \
             from {}/lib/rustlib/multirust-config.toml if `rustup component remove` fails)",
            core.display(),
            nightly.sysroot.display()
        );
    }
    Ok(())
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow!("neither CARGO_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".cargo"))
}

fn ensure_bpf_linker(nightly: &Nightly, force: bool) -> Result<PathBuf> {
    let home = cargo_home()?;
    let install_root = home.join("claude-monitor");
    let bin = install_root.join("bin/bpf-linker");
    let stamp = install_root.join("bpf-linker.stamp");
    let want_stamp = format!(
        "bpf-linker {BPF_LINKER_VERSION} llvm {} rustc {}\n",
        nightly.llvm_major, nightly.commit
    );

    if !force && fs::read_to_string(&stamp).ok().as_deref() == Some(want_stamp.as_str()) {
        match Command::new(&bin).arg("--version").output() {
            Ok(out) if out.status.success() => return Ok(bin),
            Ok(out) => eprintln!(
                "xtask: installed bpf-linker does not start ({}); rebuilding it",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(err) => eprintln!("xtask: cannot run {}: {err}; rebuilding it", bin.display()),
        }
    }

    // The nightly's shared LLVM, e.g. libLLVM.so.22.1-rust-1.97.0-nightly.
    let lib_dir = nightly.sysroot.join("lib");
    let prefix = format!("libLLVM.so.{}", nightly.llvm_major);
    let llvm_lib = fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with(&prefix))
        .ok_or_else(|| {
            anyhow!(
                "the {NIGHTLY} toolchain has no {prefix}* in {}: bpf-linker needs LLVM {} as a \
                 shared library",
                lib_dir.display(),
                nightly.llvm_major
            )
        })?;
    let llvm_dir = install_root.join(format!("llvm-{}", nightly.llvm_major));
    let llvm_lib_dir = llvm_dir.join("lib");
    fs::create_dir_all(&llvm_lib_dir)
        .with_context(|| format!("cannot create {}", llvm_lib_dir.display()))?;
    for name in ["libLLVM.so", llvm_lib.as_str()] {
        symlink_force(&lib_dir.join(&llvm_lib), &llvm_lib_dir.join(name))?;
    }

    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the {NIGHTLY} toolchain's LLVM {} \
         (about a minute on 2 cores)",
        nightly.llvm_major
    );
    let mut cmd = Command::new("rustup");
    cmd.args(["run", NIGHTLY, "cargo", "install", "bpf-linker"])
        .args(["--version", BPF_LINKER_VERSION, "--locked", "--force"])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{}", nightly.llvm_major))
        .arg("--root")
        .arg(&install_root)
        .env("LLVM_PREFIX", &llvm_dir)
        .env(
            format!("LLVM_SYS_{}1_PREFIX", nightly.llvm_major),
            &llvm_dir,
        );
    run_checked(&mut cmd).with_context(|| {
        format!(
            "building bpf-linker failed; the command was `LLVM_PREFIX={} {}`",
            llvm_dir.display(),
            describe(&cmd)
        )
    })?;
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run the freshly built {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "the freshly built {} does not start: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::write(&stamp, want_stamp).with_context(|| format!("cannot write {}", stamp.display()))?;
    eprintln!(
        "xtask: bpf-linker installed at {} (the build finds it there; no PATH change needed)",
        bin.display()
    );
    Ok(bin)
}

fn symlink_force(target: &Path, link: &Path) -> Result<()> {
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", link.display())),
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))
}

pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("`{program}` not found on PATH"))
}

//! Builds the kernel programs (`monitor-ebpf`) with the nightly toolchain and bpf-linker
//! (aya-template style), so a plain `cargo build` works once `cargo xtask setup` has run.
//!
//! This is what `aya_build::build_ebpf` (aya-build 0.2.0) did for us: a nested
//! `rustup run nightly cargo build --release --target bpfel-unknown-none -Z build-std=core`
//! with the same rustflags and environment, into the same target directory under `OUT_DIR`,
//! and the object copied to `$OUT_DIR/claude-monitor-ebpf`, where `monitor/src/loader.rs`
//! embeds it from (byte for byte the object aya-build produced). The difference is the
//! output: aya-build relays every line the nested cargo prints as `cargo:warning=`, so a
//! first build showed dozens of `warning: claude-monitor@0.1.0:    Compiling …` lines that
//! were no warnings at all. Here the nested cargo's output goes to this script's stderr
//! (live under `cargo build -vv`, and shown in full by cargo when the build fails); only
//! what is not a progress line (the compiler's and cargo's warnings) becomes a build
//! warning. The nested build names its one `--bin` and runs with `--color never`, so that
//! a renamed binary fails here and no escape codes reach the relayed warnings.

use std::{
    env, fs,
    io::{self, BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

const LINKER_VAR: &str = "CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER";
/// `1` or `true` skips the eBPF build, as it does with aya-build.
const SKIP_VAR: &str = "AYA_BUILD_SKIP";
/// The toolchain of the eBPF build, through `rustup run` (xtask's `setup::NIGHTLY`).
const TOOLCHAIN: &str = "nightly";
/// The eBPF package and its `[[bin]]`, the object that `monitor/src/loader.rs` embeds.
const EBPF_PACKAGE: &str = "monitor-ebpf";
const EBPF_BIN: &str = "claude-monitor-ebpf";

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
        // the nested cargo that build_ebpf spawns.
        unsafe { env::set_var(LINKER_VAR, &linker) };
    }
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?)
        .parent()
        .context("monitor crate has no parent directory")?
        .join(EBPF_PACKAGE);
    let root = root.to_str().context("non-UTF-8 workspace path")?;
    build_ebpf(root)
}

/// Builds the eBPF package at `root` and copies its object to `$OUT_DIR/<EBPF_BIN>`.
fn build_ebpf(root: &str) -> anyhow::Result<()> {
    // The build-dependency on monitor-ebpf reruns us when its (empty) library or what it
    // depends on (monitor-common) changes; this covers the sources of its binary.
    println!("cargo:rerun-if-changed={root}");
    println!("cargo:rerun-if-env-changed={SKIP_VAR}");
    if let Some(skip) = env::var_os(SKIP_VAR)
        && (skip == "1" || skip.eq_ignore_ascii_case("true"))
    {
        println!(
            "cargo:warning={SKIP_VAR}={}; skipping eBPF build",
            skip.display()
        );
        return Ok(());
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN")
        .context("CARGO_CFG_TARGET_ENDIAN not set")?
        .as_str()
    {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness `{other}`"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    // aya's name for all the riscv64 variants.
    let arch = if arch.starts_with("riscv64") {
        "riscv64".to_owned()
    } else {
        arch
    };

    let rustup = on_path("rustup");
    if !rustup {
        println!(
            "cargo:warning=rustup not found on PATH; building the eBPF programs with the current toolchain"
        );
    }
    let tool = |program: &str| {
        if rustup {
            let mut cmd = Command::new("rustup");
            cmd.args(["run", TOOLCHAIN, program]);
            cmd
        } else {
            Command::new(program)
        }
    };

    // RUSTC_BOOTSTRAP decides whether -Z flags are available: "1" or the crate's name
    // enables them, "-1" forces stable behaviour, anything else follows the channel.
    let build_std = match env::var_os("RUSTC_BOOTSTRAP") {
        Some(v) if v == "1" || v == EBPF_PACKAGE => true,
        Some(v) if v == "-1" => false,
        _ => is_nightly(&mut tool("rustc"))?,
    };

    // A target directory of its own (cargo would wait for the lock on ours forever), apart
    // from the object's copy in OUT_DIR; the one aya-build used, so that build trees from
    // before this script did the build itself are reused instead of built again beside it.
    let target_dir = out_dir.join("aya-build/target").join(EBPF_PACKAGE);
    let mut cmd = tool("cargo");
    cmd.args(["build", "--package", EBPF_PACKAGE, "--bin", EBPF_BIN])
        .args(["--release", "--target", target, "--color", "never"])
        .arg("--target-dir")
        .arg(&target_dir);
    if build_std {
        cmd.args(["-Z", "build-std=core"]);
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
    );
    // Or the nested cargo would use the outer toolchain's compiler.
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(key);
    }
    // Our stdout is cargo's channel for `cargo:` directives: nothing of the nested build's
    // may reach it.
    cmd.stdout(io::stderr()).stderr(Stdio::piped());

    eprintln!("building the kernel programs: {}", describe(&cmd));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", describe(&cmd)))?;
    let stderr = child
        .stderr
        .take()
        .context("no stderr from the nested cargo")?;
    let mut notable = Vec::new();
    for line in BufReader::new(stderr).split(b'\n') {
        let line = line.context("reading the nested cargo's output")?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        eprintln!("{line}");
        if !is_progress(line) {
            notable.push(line.to_owned());
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{}`", describe(&cmd)))?;
    if !status.success() {
        // Cargo shows this script's stderr, the nested build's whole output, on failure.
        bail!(
            "`{}` failed ({status}); its output is above",
            describe(&cmd)
        );
    }
    // The compiler's rendered warnings (and cargo's `generated N warnings` summary).
    for line in &notable {
        println!("cargo:warning={line}");
    }

    let object = target_dir.join(target).join("release").join(EBPF_BIN);
    let dst = out_dir.join(EBPF_BIN);
    fs::copy(&object, &dst)
        .with_context(|| format!("cannot copy {} to {}", object.display(), dst.display()))?;
    Ok(())
}

/// Whether `rustc -vV` (through `rustc`) reports a nightly compiler: its `release:` has the
/// pre-release tag `nightly` (`1.97.0-nightly`), as the `rustc_version` crate reads it.
fn is_nightly(rustc: &mut Command) -> anyhow::Result<bool> {
    let out = rustc
        .arg("-vV")
        .output()
        .with_context(|| format!("could not start `{}`", describe(rustc)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(rustc),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let out = String::from_utf8_lossy(&out.stdout);
    let release = out
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .with_context(|| format!("`{}` printed no `release:` line:\n{out}", describe(rustc)))?;
    let pre = release.trim().split_once('-').map_or("", |(_, pre)| pre);
    Ok(pre.split(['.', '+']).next() == Some("nightly"))
}

/// Whether `line` is one of cargo's progress lines (`   Compiling aya-ebpf v0.2.1`,
/// `    Finished …`, `    Blocking …`): a capitalised verb right-aligned in 12 columns, then
/// a space. Diagnostics start with `warning`/`error` or a gutter (` --> `, `  |`).
fn is_progress(line: &str) -> bool {
    let (Some(head), Some(b' ')) = (line.get(..12), line.as_bytes().get(12)) else {
        return false;
    };
    let verb = head.trim_start_matches(' ');
    verb.starts_with(|c: char| c.is_ascii_uppercase())
        && verb.chars().all(|c| c.is_ascii_alphabetic())
}

/// The command line, for messages.
fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

//! `cargo xtask run -- ARGS`: set up, build the agent in release mode as the invoking user,
//! then start it as root (sudo only for the agent itself).

use anyhow::{Context as _, Result, bail};

use crate::{cargo, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Build in debug mode instead of release.
    #[arg(long)]
    pub debug: bool,
    /// Arguments for `claude-monitor` (default: `daemon --stdout`: the host agent, with its
    /// event stream also on stdout).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    let toolchain = setup::run(&setup::Options::default())?;
    let mut build = cargo::cargo();
    build.args(["build", "--package", "claude-monitor"]);
    if !opts.debug {
        build.arg("--release");
    }
    toolchain.apply(&mut build);
    cargo::run_checked(&mut build).context("building the agent failed")?;

    let profile = if opts.debug { "debug" } else { "release" };
    let bin = cargo::workspace_root()
        .join("target")
        .join(profile)
        .join("claude-monitor");
    let args: Vec<String> = if opts.args.is_empty() {
        vec!["daemon".into(), "--stdout".into()]
    } else {
        opts.args.clone()
    };
    let mut cmd = cargo::privileged(&bin);
    cmd.args(&args);
    let status = cargo::status_of(&mut cmd)?;
    match status.code() {
        Some(0) => Ok(()),
        // The agent has already printed its own error; pass its exit code on.
        Some(code) => std::process::exit(code),
        None => bail!("claude-monitor ended by {status}"),
    }
}

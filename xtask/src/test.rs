//! `cargo xtask test`: set up, build everything as the invoking user, then run each test
//! binary. Unit-test binaries run as you; the real-kernel integration scenarios (the
//! `claude-monitor-tests` package) run as root, through sudo when you are not root, one test
//! at a time. Prints a total line `N passed, N failed, N skipped` at the end.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, setup};

/// The package whose test binaries load eBPF programs and need root.
const PRIVILEGED_PACKAGE: &str = "claude-monitor-tests";

#[derive(clap::Args)]
pub struct Options {
    /// Only run tests whose name contains this filter (passed to every test binary).
    pub filter: Option<String>,
    /// Build in release mode.
    #[arg(long)]
    pub release: bool,
}

struct TestBinary {
    package: String,
    target: String,
    path: PathBuf,
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

pub fn run(opts: &Options) -> Result<()> {
    let toolchain = setup::run(&setup::Options::default())?;
    let profile = if opts.release { "release" } else { "debug" };

    // The agent binary the scenarios start.
    let mut build = cargo::cargo();
    build.args(["build", "--package", "claude-monitor"]);
    if opts.release {
        build.arg("--release");
    }
    toolchain.apply(&mut build);
    cargo::run_checked(&mut build).context("building the agent failed")?;
    let agent = cargo::workspace_root()
        .join("target")
        .join(profile)
        .join("claude-monitor");

    let binaries = build_tests(&toolchain, opts.release)?;
    let mut totals = Totals::default();
    let mut failed_binaries = Vec::new();
    for bin in &binaries {
        let privileged = bin.package == PRIVILEGED_PACKAGE;
        let mut cmd = if privileged {
            cargo::privileged(&bin.path)
        } else {
            Command::new(&bin.path)
        };
        if privileged {
            cmd.arg("--test-threads=1");
        }
        if let Some(filter) = &opts.filter {
            cmd.arg(filter);
        }
        cmd.env("CLAUDE_MONITOR_BIN", &agent)
            .current_dir(cargo::workspace_root());
        eprintln!(
            "xtask: running {} ({}{})",
            bin.target,
            bin.package,
            if privileged { ", as root" } else { "" }
        );
        let ok = run_and_count(&mut cmd, &mut totals)?;
        if !ok {
            failed_binaries.push(format!("{}::{}", bin.package, bin.target));
        }
    }
    println!();
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !failed_binaries.is_empty() {
        bail!("test binaries failed: {}", failed_binaries.join(", "));
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// `cargo test --no-run` for the whole workspace; returns the test executables it built.
fn build_tests(toolchain: &setup::Toolchain, release: bool) -> Result<Vec<TestBinary>> {
    let mut cmd = cargo::cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "monitor-ebpf",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    toolchain.apply(&mut cmd);
    cmd.stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", cargo::describe(&cmd)))?;
    let stdout = child.stdout.take().context("no stdout from cargo")?;
    let mut binaries = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(path) = msg["executable"].as_str() else {
            continue;
        };
        let package = msg["package_id"]
            .as_str()
            .and_then(package_name)
            .unwrap_or_default();
        binaries.push(TestBinary {
            package,
            target: msg["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            path: PathBuf::from(path),
        });
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("building the tests failed: {status}");
    }
    // Unit tests first: they are fast and explain failures of the slower scenarios.
    binaries.sort_by_key(|b| {
        (
            b.package == PRIVILEGED_PACKAGE,
            b.package.clone(),
            b.target.clone(),
        )
    });
    Ok(binaries)
}

/// Package name from a cargo package id (`path+file:///…/tests#claude-monitor-tests@0.1.0`
/// or the older `name version (source)` form).
fn package_name(id: &str) -> Option<String> {
    if let Some((_, rest)) = id.rsplit_once('#') {
        let name = rest.split('@').next()?;
        // `…/monitor#0.1.0`: the name is the last path component.
        if name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            let path = id.rsplit_once('#')?.0;
            return path.rsplit('/').next().map(str::to_owned);
        }
        return Some(name.to_owned());
    }
    id.split_whitespace().next().map(str::to_owned)
}

/// Runs one libtest binary, echoing its output and adding its `test result:` line to `totals`.
fn run_and_count(cmd: &mut Command, totals: &mut Totals) -> Result<bool> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", cargo::describe(cmd)))?;
    let stdout = child.stdout.take().context("no stdout from test binary")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => totals.passed += n,
                    "failed" => totals.failed += n,
                    "ignored" => totals.ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait().context("waiting for a test binary")?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::package_name;

    #[test]
    fn package_names_from_ids() {
        assert_eq!(
            package_name("path+file:///w/tests#claude-monitor-tests@0.1.0").as_deref(),
            Some("claude-monitor-tests")
        );
        assert_eq!(
            package_name("path+file:///w/xtask#0.1.0").as_deref(),
            Some("xtask")
        );
        assert_eq!(
            package_name("xtask 0.1.0 (path+file:///w/xtask)").as_deref(),
            Some("xtask")
        );
    }
}

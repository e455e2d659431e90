//! `cargo xtask test`: set up, build everything as the invoking user, then run each test
//! binary. Unit-test binaries run as you; the real-kernel integration scenarios (the
//! `claude-monitor-tests` package) run as root, through sudo when you are not root, one test
//! at a time. Prints a total line `N passed, N failed, N skipped` at the end.
//!
//! `--kernel 6.1|6.12|all` also (or instead) runs the scenarios on Debian's cloud kernels
//! under qemu (see `vm.rs`); no root is needed for those. A summary line per kernel precedes
//! the total, which then sums all kernels.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, setup, vm};

/// The package whose test binaries load eBPF programs and need root.
const PRIVILEGED_PACKAGE: &str = "claude-monitor-tests";

#[derive(clap::Args)]
pub struct Options {
    /// Only run tests whose name contains this filter (passed to every test binary).
    pub filter: Option<String>,
    /// Build in release mode.
    #[arg(long)]
    pub release: bool,
    /// Kernels to run the tests on: `host` (this machine: every test binary), `6.1` and
    /// `6.12` (Debian's cloud kernels booted under qemu: the real-kernel scenarios), or
    /// `all`. Repeatable or comma-separated.
    #[arg(
        long = "kernel",
        value_name = "KERNEL",
        value_delimiter = ',',
        default_value = "host"
    )]
    pub kernels: Vec<KernelChoice>,
    /// Seconds a guest kernel may take, from starting qemu to its result, before it is
    /// killed and counted as failed.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub vm_timeout: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum KernelChoice {
    #[value(name = "host")]
    Host,
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    #[value(name = "all")]
    All,
}

/// Whether the host is selected, and the guest kernels in a fixed order, each once.
fn selection(choices: &[KernelChoice]) -> (bool, Vec<vm::GuestKernel>) {
    let all = choices.contains(&KernelChoice::All);
    let host = all || choices.contains(&KernelChoice::Host);
    let mut guests = Vec::new();
    for (choice, guest) in [
        (KernelChoice::V6_1, vm::GuestKernel::V6_1),
        (KernelChoice::V6_12, vm::GuestKernel::V6_12),
    ] {
        if all || choices.contains(&choice) {
            guests.push(guest);
        }
    }
    (host, guests)
}

struct TestBinary {
    package: String,
    target: String,
    path: PathBuf,
}

/// Test counts, from libtest's `test result:` lines.
#[derive(Default, Clone, Copy)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Counts `line` if it is a libtest `test result: …` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    fn add(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        )
    }
}

pub fn run(opts: &Options) -> Result<()> {
    let (host, guests) = selection(&opts.kernels);
    let toolchain = setup::run(&setup::Options::default())?;
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    let mut summaries = Vec::new();
    if host {
        let host_totals = run_host(&toolchain, opts, &mut failures)?;
        totals.add(host_totals);
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        summaries.push((format!("{} (host)", release.trim()), host_totals));
    }
    if !guests.is_empty() {
        let vm_opts = vm::Options {
            release: opts.release,
            filter: opts.filter.as_deref(),
            timeout: Duration::from_secs(opts.vm_timeout),
        };
        match vm::run(&toolchain, &guests, &vm_opts) {
            Ok(outcomes) => {
                for outcome in outcomes {
                    totals.add(outcome.totals);
                    if let Some(problem) = &outcome.problem {
                        failures.push(format!("kernel {}: {problem}", outcome.kernel));
                    }
                    summaries.push((outcome.kernel, outcome.totals));
                }
            }
            Err(err) => {
                let kernels: Vec<&str> = guests.iter().map(|g| g.series()).collect();
                failures.push(format!(
                    "kernels {} did not run: {err:#}",
                    kernels.join(", ")
                ));
            }
        }
    }
    println!();
    if !guests.is_empty() {
        for (kernel, kernel_totals) in &summaries {
            println!("kernel {kernel}: {kernel_totals}");
        }
    }
    println!("{totals}");
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Today's `cargo xtask test` on this machine: every test binary, the privileged ones as
/// root. Failed binaries are added to `failures`; returns the counts.
fn run_host(
    toolchain: &setup::Toolchain,
    opts: &Options,
    failures: &mut Vec<String>,
) -> Result<Totals> {
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

    let binaries = build_tests(toolchain, opts.release)?;
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
    if !failed_binaries.is_empty() {
        failures.push(format!(
            "test binaries failed: {}",
            failed_binaries.join(", ")
        ));
    }
    Ok(totals)
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
    ]);
    if release {
        cmd.arg("--release");
    }
    toolchain.apply(&mut cmd);
    let mut binaries: Vec<TestBinary> = cargo_artifacts(&mut cmd)
        .context("building the tests failed")?
        .into_iter()
        .filter(|a| a.test)
        .map(|a| TestBinary {
            package: a.package,
            target: a.target,
            path: a.path,
        })
        .collect();
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

/// An executable cargo built.
pub struct Artifact {
    pub package: String,
    /// The target's name (`engine`, `claude-monitor`, `memhog`).
    pub target: String,
    /// The target's kinds (`bin`, `test`, `lib`…).
    pub kinds: Vec<String>,
    /// Built as a libtest harness.
    pub test: bool,
    pub path: PathBuf,
}

/// Runs a cargo build command (`build`, `test --no-run`) with JSON messages (diagnostics
/// still rendered on stderr) and returns the executables it produced.
pub fn cargo_artifacts(cmd: &mut Command) -> Result<Vec<Artifact>> {
    cmd.arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", cargo::describe(cmd)))?;
    let stdout = child.stdout.take().context("no stdout from cargo")?;
    let mut artifacts = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(path) = msg["executable"].as_str() else {
            continue;
        };
        artifacts.push(Artifact {
            package: msg["package_id"]
                .as_str()
                .and_then(package_name)
                .unwrap_or_default(),
            target: msg["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            kinds: msg["target"]["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            test: msg["profile"]["test"] == true,
            path: PathBuf::from(path),
        });
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`{}` failed: {status}", cargo::describe(cmd));
    }
    Ok(artifacts)
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
        totals.add_line(&line);
    }
    let status = child.wait().context("waiting for a test binary")?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::{KernelChoice, Totals, package_name, selection};
    use crate::vm::GuestKernel;

    #[test]
    fn kernel_selection() {
        assert_eq!(selection(&[KernelChoice::Host]), (true, vec![]));
        assert_eq!(
            selection(&[KernelChoice::V6_12, KernelChoice::V6_1, KernelChoice::V6_12]),
            (false, vec![GuestKernel::V6_1, GuestKernel::V6_12])
        );
        assert_eq!(
            selection(&[KernelChoice::All]),
            (true, vec![GuestKernel::V6_1, GuestKernel::V6_12])
        );
    }

    #[test]
    fn libtest_result_lines() {
        let mut t = Totals::default();
        t.add_line("test result: FAILED. 7 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.2s");
        t.add_line("test exit_code_42 ... ok");
        t.add_line("test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 4 filtered out");
        assert_eq!((t.passed, t.failed, t.ignored), (10, 2, 1));
        assert_eq!(t.to_string(), "10 passed, 2 failed, 1 skipped");
    }

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

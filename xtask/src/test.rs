//! `cargo xtask test`: set up, build everything as the invoking user, then run each test
//! binary. Unit-test binaries run as you; the real-kernel integration scenarios (the
//! `claude-monitor-tests` package) run as root, through sudo when you are not root, one test
//! at a time. Prints a total line `N passed, N failed, N skipped` at the end.
//!
//! `--kernel 6.1|6.12|all` also (or instead) runs the scenarios on Debian's cloud kernels
//! under qemu (see `vm.rs`); no root is needed for those. A summary line per kernel precedes
//! the total, which then sums all kernels.
//!
//! Before the host's tests, what an earlier run that was interrupted (or whose scenarios
//! leaked) left behind is removed, and said in one line: see [`clear_stale`].

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, setup, totals::Totals, vm};

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
    /// Only remove what earlier runs left behind, then exit (how a run that is not root
    /// does it, through sudo).
    #[arg(long, hide = true)]
    pub clear_stale: bool,
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

pub fn run(opts: &Options) -> Result<()> {
    if opts.clear_stale {
        eprintln!("xtask: {}", clear_stale());
        return Ok(());
    }
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
    clear_stale_as_root()?;

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
    let prometheus = prometheus()?;
    let otlp_python = otlp_python()?;
    let marker = run_marker();
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
        if let Some((promtool, server)) = &prometheus {
            cmd.env(PROMTOOL_VAR, promtool).env(PROMETHEUS_VAR, server);
        }
        if let Some(path) = &otlp_python {
            cmd.env(OTLP_PYTHONPATH_VAR, path);
        }
        cmd.env("CLAUDE_MONITOR_BIN", &agent)
            .env(RUN_VAR, &marker)
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

/// The paths of promtool, for the unit test that lints the agent's metrics
/// (`metrics::tests::promtool_check_metrics_is_clean`), and of the Prometheus server, for
/// scenarios that scrape the daemon.
const PROMTOOL_VAR: &str = "CLAUDE_MONITOR_PROMTOOL";
const PROMETHEUS_VAR: &str = "CLAUDE_MONITOR_PROMETHEUS";

/// promtool and prometheus unpacked under `target/prometheus/` (downloaded once). When
/// they cannot be had (no network, no apt), the metrics test skips with a message, except
/// under `CI=true`, where this fails.
fn prometheus() -> Result<Option<(PathBuf, PathBuf)>> {
    let dir = cargo::workspace_root().join("target/prometheus");
    match vm::debian::ensure_prometheus(&mut vm::debian::Apt::default(), &dir) {
        Ok(paths) => Ok(Some(paths)),
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            Err(err.context("CI=true needs promtool for the metrics test"))
        }
        Err(err) => {
            eprintln!("xtask: no promtool, the metrics lint test will skip: {err:#}");
            Ok(None)
        }
    }
}

/// The `PYTHONPATH` of the scenarios' OTLP receiver (`tests/otlp/receiver.py`), which
/// decodes with the OpenTelemetry project's own protobuf definitions.
const OTLP_PYTHONPATH_VAR: &str = "CLAUDE_MONITOR_OTLP_PYTHONPATH";
/// PyPI's `opentelemetry-proto`, pinned (it brings `protobuf`).
const OTLP_PROTO: &str = "opentelemetry-proto==1.45.2";

/// `opentelemetry-proto` installed with pip under `target/python/` (once; nothing is
/// installed outside the tree). When it cannot be had (no python3 or pip, no network), the
/// OTLP scenario skips with a message, except under `CI=true`, where this fails.
fn otlp_python() -> Result<Option<PathBuf>> {
    let dir = cargo::workspace_root().join("target/python");
    let marker = dir.join(format!(".installed-{OTLP_PROTO}"));
    if marker.exists() {
        return Ok(Some(dir));
    }
    let installed = (|| -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "--root-user-action=ignore",
                "--target",
            ])
            .arg(&dir)
            .arg(OTLP_PROTO)
            .status()
            .context("running python3 -m pip")?;
        anyhow::ensure!(
            status.success(),
            "pip install {OTLP_PROTO} failed: {status}"
        );
        std::fs::write(&marker, "").with_context(|| format!("writing {}", marker.display()))?;
        Ok(())
    })();
    match installed {
        Ok(()) => Ok(Some(dir)),
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            Err(err.context("CI=true needs opentelemetry-proto for the OTLP scenario"))
        }
        Err(err) => {
            eprintln!("xtask: no opentelemetry-proto, the OTLP scenario will skip: {err:#}");
            Ok(None)
        }
    }
}

/// Set on every test binary, and so inherited by everything its tests start:
/// `<pid>:<start time>` of this `cargo xtask test`. A process that carries it after that
/// xtask has ended was left behind by a test.
const RUN_VAR: &str = "CLAUDE_MONITOR_TEST_RUN";

/// Pin directories of the daemon scenarios: `/sys/fs/bpf/cm-test-<test pid>` (with its
/// `staging` subdirectory; older builds staged in a `-staging` twin, which matches too).
/// The real daemon's `/sys/fs/bpf/claude-monitor` never matches.
const PIN_PREFIX: &str = "cm-test-";

/// Temporary directories of the scenarios, each named with its test process's pid.
const TMP_PREFIXES: &[&str] = &[
    "cm-daemon-",
    "cm-session-",
    "cm-cli-",
    "claude-monitor-tree-",
];

/// Memory cgroups of the scenarios, each named with its test process's pid.
const CGROUP_PREFIXES: &[&str] = &[
    "claude-monitor-test-",
    "cm-daemon-oom-",
    "cm-session-oom-",
    "cm-cli-",
];

/// This process's [`RUN_VAR`] value.
fn run_marker() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", process_start(pid).unwrap_or(0))
}

/// Field 22 of /proc/PID/stat: the process's start time in clock ticks after boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` is a running cargo test binary (`target/<profile>/deps/<name>-<hash>`):
/// what owns a pin directory, cgroup or temporary directory named with that pid. Anything
/// else with that pid now (or nothing) means the owner is gone.
fn test_binary_alive(pid: u32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "deps")
    })
}

/// The pid in a name such as `cm-cli-tooloom-1234-2_1_100` (after `prefix`): its first
/// all-digit `-`-separated part.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?
        .split('-')
        .find(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// Directories under `root` (recursively, cgroup hierarchies) named `<prefix>…<pid>…`
/// whose owner is gone, deepest first.
fn stale_cgroups(root: &Path, out: &mut Vec<PathBuf>, depth: u32) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if depth < 8 {
            stale_cgroups(&path, out, depth + 1);
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if CGROUP_PREFIXES
            .iter()
            .any(|p| owner_pid(name, p).is_some_and(|pid| !test_binary_alive(pid)))
        {
            out.push(path);
        }
    }
}

/// Live processes that belong to a run or test that has ended: marked with the
/// [`RUN_VAR`] of an xtask that is gone, running an executable from a stale temporary
/// directory (fake agents and sessions), or inside a stale cgroup. Never this process or
/// its ancestors.
fn stale_processes(tmp_dirs: &[PathBuf], cgroups: &[PathBuf]) -> BTreeSet<u32> {
    let mut spared = BTreeSet::new();
    let mut p = std::process::id();
    while p > 1 && spared.insert(p) {
        p = parent_of(p).unwrap_or(1);
    }
    let mut out = BTreeSet::new();
    for cg in cgroups {
        if let Ok(procs) = fs::read_to_string(cg.join("cgroup.procs")) {
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    let prefix = format!("{RUN_VAR}=");
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        if let Ok(env) = fs::read(format!("/proc/{pid}/environ")) {
            let owner_gone = env
                .split(|&b| b == 0)
                .filter_map(|kv| kv.strip_prefix(prefix.as_bytes()))
                .filter_map(|v| std::str::from_utf8(v).ok()?.split_once(':'))
                .any(|(owner, start)| {
                    let owner: Option<u32> = owner.parse().ok();
                    let start: Option<u64> = start.parse().ok();
                    owner.is_some_and(|o| process_start(o) != start)
                });
            if owner_gone {
                out.insert(pid);
                continue;
            }
        }
        if let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe"))
            && tmp_dirs.iter().any(|d| exe.starts_with(d))
        {
            out.insert(pid);
        }
    }
    out.retain(|p| !spared.contains(p));
    out
}

/// Removes what earlier runs left and says what in one line: pinned programs of the daemon
/// scenarios (removing the pins detaches the programs whose links were pinned), test
/// cgroups, processes started by tests that have ended, temporary directories. Only what
/// belongs to a test process (or xtask) that is gone: a run going on beside this one keeps
/// everything. Needs root.
pub fn clear_stale() -> String {
    let tmp = std::env::temp_dir();
    let mut tmp_dirs = Vec::new();
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if TMP_PREFIXES
                .iter()
                .any(|p| owner_pid(name, p).is_some_and(|pid| !test_binary_alive(pid)))
            {
                tmp_dirs.push(entry.path());
            }
        }
    }
    let mut cgroups = Vec::new();
    let unified = Path::new("/sys/fs/cgroup");
    let v1 = unified.join("memory");
    if v1.is_dir() {
        stale_cgroups(&v1, &mut cgroups, 0);
    }
    if unified.join("cgroup.controllers").exists() {
        stale_cgroups(unified, &mut cgroups, 0);
    }
    let mut pin_dirs = Vec::new();
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if owner_pid(name, PIN_PREFIX).is_some_and(|pid| !test_binary_alive(pid)) {
                pin_dirs.push(entry.path());
            }
        }
    }

    // Processes first: they may hold the cgroups and keep files open.
    let mut killed = BTreeSet::new();
    for _ in 0..20 {
        let found = stale_processes(&tmp_dirs, &cgroups);
        if found.is_empty() {
            break;
        }
        for &pid in &found {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        killed.extend(found);
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut problems = Vec::new();
    let mut programs = 0;
    for dir in &pin_dirs {
        // The staging directory inside it first (what an upgrade pinned before moving it).
        for dir in [dir.join("staging"), dir.clone()] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name() == "staging" {
                    continue;
                }
                let is_prog = entry.file_name().to_string_lossy().starts_with("prog_");
                match fs::remove_file(entry.path()) {
                    Ok(()) => programs += usize::from(is_prog),
                    Err(e) => problems.push(format!("{}: {e}", entry.path().display())),
                }
            }
            if let Err(e) = fs::remove_dir(&dir) {
                problems.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    for cg in &cgroups {
        // A killed process leaves its cgroup a moment after SIGKILL.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match fs::remove_dir(cg) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() > deadline => {
                    problems.push(format!("{}: {e}", cg.display()));
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    for dir in &tmp_dirs {
        if let Err(e) = fs::remove_dir_all(dir) {
            problems.push(format!("{}: {e}", dir.display()));
        }
    }

    let names = |paths: &[PathBuf]| -> String {
        paths
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut said = Vec::new();
    if !pin_dirs.is_empty() {
        said.push(format!(
            "{} pin director{} with {programs} program(s) in /sys/fs/bpf ({})",
            pin_dirs.len(),
            if pin_dirs.len() == 1 { "y" } else { "ies" },
            names(&pin_dirs)
        ));
    }
    if !cgroups.is_empty() {
        said.push(format!("{} cgroup(s) ({})", cgroups.len(), names(&cgroups)));
    }
    if !killed.is_empty() {
        let pids: Vec<String> = killed.iter().map(u32::to_string).collect();
        said.push(format!("{} process(es) ({})", killed.len(), pids.join(" ")));
    }
    if !tmp_dirs.is_empty() {
        said.push(format!(
            "{} temporary director{} in {} ({})",
            tmp_dirs.len(),
            if tmp_dirs.len() == 1 { "y" } else { "ies" },
            tmp.display(),
            names(&tmp_dirs)
        ));
    }
    let mut line = if said.is_empty() {
        "nothing left by earlier test runs".to_owned()
    } else {
        format!("removed what earlier test runs left: {}", said.join(", "))
    };
    if !problems.is_empty() {
        line.push_str(&format!("; could not remove: {}", problems.join(", ")));
    }
    line
}

/// [`clear_stale`] as root: here, or through sudo (this binary again, `test --clear-stale`).
fn clear_stale_as_root() -> Result<()> {
    if cargo::is_root() {
        eprintln!("xtask: {}", clear_stale());
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let mut cmd = cargo::privileged(&exe);
    cmd.args(["test", "--clear-stale"]);
    cargo::run_checked(&mut cmd).context("clearing what earlier test runs left failed")
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
    let mut binaries: Vec<TestBinary> = cargo::artifacts(&mut cmd)
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
    use super::{KernelChoice, owner_pid, selection};
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
    fn owner_pids_from_names() {
        assert_eq!(owner_pid("cm-test-1234", "cm-test-"), Some(1234));
        assert_eq!(owner_pid("cm-test-1234-staging", "cm-test-"), Some(1234));
        assert_eq!(owner_pid("cm-cli-tooloom-77-2_1_100", "cm-cli-"), Some(77));
        assert_eq!(owner_pid("cm-daemon-55-restart", "cm-daemon-"), Some(55));
        assert_eq!(owner_pid("claude-monitor", "cm-test-"), None);
        assert_eq!(owner_pid("cm-test-", "cm-test-"), None);
        assert_eq!(owner_pid("cm-session-oom-", "cm-session-oom-"), None);
    }
}

//! `cargo xtask bench`: capture rate and cost of the agent, side by side with an untraced
//! run and with bpftrace (issue 4). Builds in release mode as the invoking user, then
//! measures as root, prints a table per scenario with the issue's targets next to the
//! figures, and writes the same figures to `target/bench/<UTC time>.json` and
//! `target/bench/latest.json`.
//!
//! Everything measured needs root (loading BPF programs, the bpf_stats sysctl, memory
//! cgroups, installing bpftrace), so when the invoking user is not root the bench re-runs
//! itself through `sudo` after building, like `cargo xtask run` does for the agent, and the
//! files it writes are handed back to that user.
//!
//! Why the figures can be trusted on a noisy, shared machine:
//! - every traced run is paired with an untraced run made just before it, and the ratio
//!   reported is the median of those pairwise ratios;
//! - capture is matched by pid against the pids the spawners wrote, not by counting lines;
//! - the tracer is stopped only once it has caught up (see `Session::quiesce`), and
//!   lost records are reported next to what was captured.

mod api;
mod otlp;
mod parse;
mod report;
mod scenarios;
mod stats;
mod system;
mod tracer;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, setup};
use scenarios::{Helpers, Runner, Sizes};
use tracer::Tools;

#[derive(clap::Args)]
pub struct Options {
    /// A small version of everything (about a minute): 2,000 processes, 1 round, 2,000
    /// signals, a 30,000-call flood, 3 OOM kills, 5 s idle.
    #[arg(long)]
    pub quick: bool,
    /// Processes per spawn-storm run [default: 20000; --quick 2000].
    #[arg(long, value_name = "N")]
    pub storm: Option<u32>,
    /// Parallel spawners in the spawn storm.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub spawners: u32,
    /// Untraced/traced pairs per spawn-storm runner [default: 3; --quick 1].
    #[arg(long, value_name = "N")]
    pub rounds: Option<u32>,
    /// Signals in the signal storm [default: 10000; --quick 2000].
    #[arg(long, value_name = "N")]
    pub signals: Option<u64>,
    /// kill() calls in the signal flood [default: 300000; --quick 30000].
    #[arg(long, value_name = "N")]
    pub flood: Option<u64>,
    /// OOM kills in the OOM loop [default: 20; --quick 3].
    #[arg(long, value_name = "N")]
    pub ooms: Option<u32>,
    /// Seconds of the idle measurement [default: 60; --quick 5].
    #[arg(long, value_name = "SECS")]
    pub idle: Option<u64>,
    /// Run only these scenarios (comma-separated): storm, signals, flood, oom, idle, api,
    /// otlp [default: all of them].
    #[arg(long, value_delimiter = ',', value_name = "SCENARIO")]
    pub only: Vec<Scenario>,
    /// Subscriber counts of the API subscribers scenario (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,...",
        default_value = "0,1,10"
    )]
    pub subscribers: Vec<u32>,
    /// Leave bpftrace out: no install, no comparison (its figures read n/a).
    #[arg(long)]
    pub no_bpftrace: bool,
    /// Benchmark this claude-monitor binary instead of building one (another version, or
    /// a build made elsewhere).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Set when re-run through sudo: the build is done (its seconds are given).
    #[arg(long, hide = true, value_name = "SECS")]
    pub built: Option<f64>,
}

/// The bench's scenarios, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The spawn storm under every runner.
    Storm,
    /// The signal storm (ping-pong).
    Signals,
    /// The signal flood.
    Flood,
    /// The OOM loop.
    Oom,
    /// The idle agent.
    Idle,
    /// The daemon with 0, 1 and 10 API subscribers during the spawn storm.
    Api,
    /// The daemon without and with `[export.otlp]` during the spawn storm.
    Otlp,
}

impl Scenario {
    pub const ALL: &[Scenario] = &[
        Scenario::Storm,
        Scenario::Signals,
        Scenario::Flood,
        Scenario::Oom,
        Scenario::Idle,
        Scenario::Api,
        Scenario::Otlp,
    ];

    /// Name in the JSON file (and on the command line).
    pub fn key(self) -> &'static str {
        match self {
            Scenario::Storm => "storm",
            Scenario::Signals => "signals",
            Scenario::Flood => "flood",
            Scenario::Oom => "oom",
            Scenario::Idle => "idle",
            Scenario::Api => "api",
            Scenario::Otlp => "otlp",
        }
    }
}

impl Options {
    fn scenarios(&self) -> Vec<Scenario> {
        Scenario::ALL
            .iter()
            .copied()
            .filter(|s| self.only.is_empty() || self.only.contains(s))
            .collect()
    }

    fn sizes(&self) -> Sizes {
        let q = self.quick;
        Sizes {
            storm: self.storm.unwrap_or(if q { 2_000 } else { 20_000 }).max(1),
            spawners: self.spawners.max(1),
            rounds: self.rounds.unwrap_or(if q { 1 } else { 3 }).max(1),
            signals: self
                .signals
                .unwrap_or(if q { 2_000 } else { 10_000 })
                .max(2),
            flood: self
                .flood
                .unwrap_or(if q { 30_000 } else { 300_000 })
                .max(1),
            ooms: self.ooms.unwrap_or(if q { 3 } else { 20 }),
            idle_s: self.idle.unwrap_or(if q { 5 } else { 60 }).max(1),
        }
    }
}

/// The no-op the spawn storm runs, built static so that exec costs no dynamic loading:
/// C `main` returning 0, without Rust's runtime set-up.
const EXIT0_SOURCE: &str = r#"//! Built by `cargo xtask bench`: the spawn storm's no-op program.
#![no_main]
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    0
}
"#;

fn bench_dir() -> PathBuf {
    cargo::workspace_root().join("target").join("bench")
}

fn release_dir() -> PathBuf {
    cargo::workspace_root().join("target").join("release")
}

pub fn run(opts: &Options) -> Result<()> {
    let start = Instant::now();
    let build_s = match opts.built {
        Some(secs) => secs,
        None => {
            build(opts.agent.is_none())?;
            start.elapsed().as_secs_f64()
        }
    };
    if !cargo::is_root() {
        return escalate(build_s);
    }
    measure(opts, build_s)
}

/// Release builds of the agent (unless `--agent` names one), the helpers and the static
/// no-op, as the invoking user.
fn build(agent: bool) -> Result<()> {
    if agent {
        let toolchain = setup::run(&setup::Options::default())?;
        let mut agent = cargo::cargo();
        agent.args(["build", "--release", "--package", "claude-monitor"]);
        toolchain.apply(&mut agent);
        cargo::run_checked(&mut agent).context("building the agent failed")?;
    }
    let mut helpers = cargo::cargo();
    helpers.args(["build", "--release", "--package", "claude-monitor-tests"]);
    for bin in ["spawner", "sigstorm", "memhog"] {
        helpers.args(["--bin", bin]);
    }
    cargo::run_checked(&mut helpers).context("building the bench's helper programs failed")?;

    let dir = bench_dir().join("build");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let source = dir.join("exit0.rs");
    let binary = dir.join("exit0");
    let current = fs::read_to_string(&source).ok();
    if current.as_deref() != Some(EXIT0_SOURCE) || !binary.exists() {
        fs::write(&source, EXIT0_SOURCE)
            .with_context(|| format!("cannot write {}", source.display()))?;
        // Non-PIE static: the kernel maps it and jumps in, with no loader and no
        // self-relocation.
        let mut rustc = Command::new("rustc");
        rustc
            .args([
                "--edition",
                "2024",
                "-C",
                "opt-level=3",
                "-C",
                "panic=abort",
            ])
            .args([
                "-C",
                "target-feature=+crt-static",
                "-C",
                "relocation-model=static",
            ])
            .args(["-C", "strip=symbols", "-o"])
            .arg(&binary)
            .arg(&source);
        cargo::run_checked(&mut rustc).context(
            "building the static no-op failed (static linking needs glibc's static libraries: \
             Debian's libc6-dev)",
        )?;
    }
    Ok(())
}

/// Re-runs this bench as root through sudo, measuring only (the build is done).
fn escalate(build_s: f64) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    eprintln!("xtask: the bench needs root (BPF, sysctl, cgroups); re-running it through sudo");
    let mut cmd = cargo::privileged(&exe);
    cmd.args(std::env::args_os().skip(1))
        .arg(format!("--built={build_s}"));
    let status = cargo::status_of(&mut cmd)?;
    if !status.success() {
        bail!("the bench failed under sudo ({status})");
    }
    Ok(())
}

fn measure(opts: &Options, build_s: f64) -> Result<()> {
    let measure_start = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let sizes = opts.sizes();
    let release = release_dir();
    let agent = match &opts.agent {
        Some(path) => std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?,
        None => release.join("claude-monitor"),
    };
    let helpers_built = [
        release.join("spawner"),
        release.join("sigstorm"),
        release.join("memhog"),
        bench_dir().join("build").join("exit0"),
    ];
    for path in std::iter::once(&agent).chain(&helpers_built) {
        if !path.exists() {
            bail!("{} is missing: the build did not make it", path.display());
        }
    }
    let scratch = std::env::temp_dir().join(format!("claude-monitor-bench-{}", std::process::id()));
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let _scratch_guard = RemoveDir(scratch.clone());
    let [spawner, sigstorm, memhog, exit0] = helpers_built;
    let helpers = Helpers {
        spawner,
        sigstorm,
        memhog,
        exit0,
        scratch: scratch.clone(),
    };

    let scenarios = opts.scenarios();
    let runs = |s: Scenario| scenarios.contains(&s);
    let mut notes = Vec::new();
    let _stats = system::BpfStats::enable()?;
    let mut tracefs = None;
    let bpftrace_used = [
        Scenario::Storm,
        Scenario::Signals,
        Scenario::Flood,
        Scenario::Oom,
    ]
    .iter()
    .any(|s| runs(*s));
    let bpftrace = if opts.no_bpftrace {
        Err("left out (--no-bpftrace)".to_owned())
    } else if !bpftrace_used {
        Err("not needed by the scenarios run".to_owned())
    } else {
        system::ensure_tool("bpftrace", "bpftrace")
            .and_then(|path| {
                tracefs = Some(system::Tracefs::ensure()?);
                Ok(path)
            })
            .map_err(|e| format!("{e:#}"))
    };
    if let Err(why) = &bpftrace
        && bpftrace_used
    {
        notes.push(format!("bpftrace figures are n/a: {why}"));
    }
    let bpftool = if bpftrace.is_ok() {
        system::ensure_tool("bpftool", "bpftool").map_err(|e| format!("{e:#}"))
    } else {
        Err("not needed without bpftrace".to_owned())
    };
    if let (Ok(_), Err(why)) = (&bpftrace, &bpftool) {
        notes.push(format!(
            "bpftool unavailable ({why}): bpftrace's programs are named by id, so its per-hook kernel cost is n/a"
        ));
    }
    let script = scratch.join("bench.bt");
    fs::write(&script, parse::BPFTRACE_SCRIPT)
        .with_context(|| format!("cannot write {}", script.display()))?;
    let tools = Tools {
        agent,
        bpftrace,
        bpftool,
        script,
    };
    let with_bpftrace = |runners: &[Runner]| -> Vec<Runner> {
        runners
            .iter()
            .copied()
            .filter(|r| *r != Runner::Bpftrace || tools.bpftrace.is_ok())
            .collect()
    };

    // A scenario left out by --only runs under no runner.
    let runners_of = |s: Scenario, list: &[Runner]| {
        if runs(s) {
            with_bpftrace(list)
        } else {
            Vec::new()
        }
    };
    let storm = if runs(Scenario::Storm) {
        eprintln!(
            "xtask: bench: spawn storm ({} processes, {} spawners, {} round(s))",
            sizes.storm, sizes.spawners, sizes.rounds
        );
        scenarios::spawn_storm(
            &tools,
            &helpers,
            &sizes,
            &with_bpftrace(scenarios::STORM_RUNNERS),
        )?
    } else {
        Vec::new()
    };
    if runs(Scenario::Signals) {
        eprintln!("xtask: bench: signal storm ({} signals)", sizes.signals);
    }
    let signals = each(
        &runners_of(Scenario::Signals, scenarios::SIGNAL_RUNNERS),
        |r| scenarios::signal_storm(&tools, &helpers, &sizes, r),
    );
    if runs(Scenario::Flood) {
        eprintln!("xtask: bench: signal flood ({} kill() calls)", sizes.flood);
    }
    let flood = each(
        &runners_of(Scenario::Flood, scenarios::SIGNAL_RUNNERS),
        |r| scenarios::signal_flood(&tools, &helpers, &sizes, r),
    );
    if runs(Scenario::Oom) {
        eprintln!("xtask: bench: OOM loop ({} kills)", sizes.ooms);
    }
    let oom = each(&runners_of(Scenario::Oom, scenarios::OOM_RUNNERS), |r| {
        scenarios::oom_loop(&tools, &helpers, &sizes, r)
    });
    let idle = if runs(Scenario::Idle) {
        eprintln!("xtask: bench: idle agent ({} s)", sizes.idle_s);
        scenarios::idle(&tools, &sizes).map_err(|e| format!("{e:#}"))
    } else {
        Err("not run (--only)".to_owned())
    };
    drop(tracefs);
    let (api, api_crates) = if runs(Scenario::Api) {
        eprintln!(
            "xtask: bench: API subscribers ({} processes, {} spawners, {} round(s), subscribers {:?})",
            sizes.storm, sizes.spawners, sizes.rounds, opts.subscribers
        );
        let series = api::run(&tools, &helpers, &sizes, &opts.subscribers)?;
        (series, api::api_crates().map_err(|e| format!("{e:#}")))
    } else {
        (Vec::new(), Err("not run (--only)".to_owned()))
    };
    let otlp = if runs(Scenario::Otlp) {
        eprintln!(
            "xtask: bench: OTLP export ({} processes, {} spawners, {} round(s), without and with [export.otlp])",
            sizes.storm, sizes.spawners, sizes.rounds
        );
        otlp::run(&tools, &helpers, &sizes)?
    } else {
        Vec::new()
    };

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let results = report::Results {
        agent: tools.agent.display().to_string(),
        sizes,
        quick: opts.quick,
        started_unix,
        kernel,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        storm,
        signals,
        flood,
        oom,
        idle,
        scenarios,
        api,
        api_crates,
        otlp,
        notes,
        build_s,
        measure_s: measure_start.elapsed().as_secs_f64(),
    };
    let (text, json) = report::render(&results);
    println!("\n{text}");
    let dir = bench_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = format!("{}.json", parse::compact_utc(started_unix));
    let body = serde_json::to_string_pretty(&json).context("serializing the figures")?;
    for file in [dir.join(&name), dir.join("latest.json")] {
        fs::write(&file, &body).with_context(|| format!("cannot write {}", file.display()))?;
        give_back(&file);
    }
    println!("Figures written to {}", dir.join(name).display());
    Ok(())
}

/// Runs `f` for each runner; a runner's failure becomes its n/a row, not the bench's end.
fn each<T>(
    runners: &[Runner],
    mut f: impl FnMut(Runner) -> Result<T>,
) -> Vec<Result<T, (Runner, String)>> {
    runners
        .iter()
        .map(|&r| {
            f(r).map_err(|e| {
                eprintln!("xtask: bench: {} failed: {e:#}", r.name());
                (r, format!("{e:#}"))
            })
        })
        .collect()
}

/// Under sudo, hands a file the bench wrote back to the invoking user.
fn give_back(path: &Path) {
    let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
        if let Some(dir) = path.parent() {
            let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
        }
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

//! The scenarios of issue 4, each run under a list of runners (no tracer, the agent in a
//! given scope, bpftrace). A scenario returns plain figures; `report` judges and prints.

use std::{
    collections::HashSet,
    fs,
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    parse::{self, Ev, ProgStat},
    system::MemCgroup,
    tracer::{Session, Tools, Tracer, Usage},
};

/// How big each scenario is.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Processes per spawn-storm run, over `spawners` parallel spawners.
    pub storm: u32,
    pub spawners: u32,
    /// Untraced/traced pairs per spawn-storm runner.
    pub rounds: u32,
    /// Signals of the signal storm (ping-pong between two processes).
    pub signals: u64,
    /// kill() calls of the signal flood.
    pub flood: u64,
    pub ooms: u32,
    pub idle_s: u64,
}

/// The helper programs.
pub struct Helpers {
    pub spawner: PathBuf,
    pub sigstorm: PathBuf,
    pub memhog: PathBuf,
    /// The tiny static program the storm spawns.
    pub exit0: PathBuf,
    /// A scratch directory for pid files.
    pub scratch: PathBuf,
}

/// Who watches a run. To measure another way of running the agent (say `--claude` with
/// an in-kernel prefilter), add a variant here, its names, and its arguments in
/// [`tracer_for`], then list it in the scenarios' runner lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    Untraced,
    /// `trace --all`.
    AgentAll,
    /// `trace --pid` of a sleeping process; the workload runs outside its tree, so this
    /// measures what the in-kernel filter costs everything else.
    AgentOutside,
    /// `trace --pid` of the processes that run the workload.
    AgentInside,
    /// `trace --claude` (the daemon's scope) with no agent session running: the workload
    /// is outside every session, so this measures the in-kernel session prefilter.
    AgentClaude,
    Bpftrace,
}

impl Runner {
    pub fn name(self) -> &'static str {
        match self {
            Runner::Untraced => "untraced",
            Runner::AgentAll => "agent --all",
            Runner::AgentOutside => "agent --pid (storm outside)",
            Runner::AgentInside => "agent --pid (storm inside)",
            Runner::AgentClaude => "agent --claude (no session)",
            Runner::Bpftrace => "bpftrace",
        }
    }

    /// Name in the JSON file.
    pub fn key(self) -> &'static str {
        match self {
            Runner::Untraced => "untraced",
            Runner::AgentAll => "agent_all",
            Runner::AgentOutside => "agent_pid_outside",
            Runner::AgentInside => "agent_pid_inside",
            Runner::AgentClaude => "agent_claude_outside",
            Runner::Bpftrace => "bpftrace",
        }
    }

    pub fn is_agent(self) -> bool {
        matches!(
            self,
            Runner::AgentAll | Runner::AgentOutside | Runner::AgentInside | Runner::AgentClaude
        )
    }

    /// The workload runs outside the agent's scope (no exits expected).
    pub fn is_outside(self) -> bool {
        matches!(self, Runner::AgentOutside | Runner::AgentClaude)
    }
}

/// The spawn storm's runners, each paired with untraced runs.
pub const STORM_RUNNERS: &[Runner] = &[
    Runner::AgentAll,
    Runner::AgentOutside,
    Runner::AgentClaude,
    Runner::AgentInside,
    Runner::Bpftrace,
];
/// The runners of the signal storm and flood (untraced: wall time only).
pub const SIGNAL_RUNNERS: &[Runner] = &[Runner::Untraced, Runner::AgentAll, Runner::Bpftrace];
pub const OOM_RUNNERS: &[Runner] = &[Runner::AgentAll, Runner::Bpftrace];

/// The tracer of `runner`: `workload` are the pids the workload runs under (for `--pid`
/// inside), `outside` a process the workload does not descend from.
fn tracer_for(runner: Runner, workload: &[u32], outside: Option<u32>) -> Result<Option<Tracer>> {
    let pid_args = |pids: &[u32]| -> Vec<String> {
        pids.iter()
            .flat_map(|p| ["--pid".to_owned(), p.to_string()])
            .collect()
    };
    Ok(match runner {
        Runner::Untraced => None,
        Runner::AgentAll => Some(Tracer::Agent(vec!["--all".into()])),
        Runner::AgentOutside => {
            let Some(outside) = outside else {
                bail!("{}: no process to watch", runner.name())
            };
            Some(Tracer::Agent(pid_args(&[outside])))
        }
        Runner::AgentInside => {
            if workload.is_empty() {
                bail!("{}: the workload has no process to watch", runner.name());
            }
            Some(Tracer::Agent(pid_args(workload)))
        }
        Runner::AgentClaude => Some(Tracer::Agent(vec!["--claude".into()])),
        Runner::Bpftrace => Some(Tracer::Bpftrace),
    })
}

/// Children killed (and reaped) when dropped, so that an error half-way leaves nothing
/// behind: spawners waiting for their start line, a sleeping process, a memhog.
pub(super) struct Kids(pub Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn sleeper() -> Result<Child> {
    Command::new("sleep")
        .arg("86400")
        .stdin(Stdio::null())
        .spawn()
        .context("could not start `sleep`")
}

/// What a tracer reported over one run.
pub struct Traced {
    /// Parsed records with the time the bench read each (ns since the epoch).
    pub events: Vec<(i128, Ev)>,
    /// Kernel records (the agent's lines other than agent_start/agent_stop; bpftrace's
    /// event lines).
    pub records: usize,
    pub lost: u64,
    /// CPU seconds the tracer used during the workload and until it caught up.
    pub cpu_s: Option<f64>,
    /// Peak RSS during the run (VmHWM, reset after start-up), KiB.
    pub hwm_kb: Option<u64>,
    /// Peak RSS of start-up, KiB.
    pub startup_hwm_kb: Option<u64>,
    pub programs: Vec<ProgStat>,
    /// The program statistics came from `agent_stop.programs` (else from /proc fdinfo).
    pub programs_from_agent: bool,
    /// Some signal record carried `count` (the agent aggregates floods in the kernel).
    pub aggregated: bool,
    pub problems: Vec<String>,
}

/// Waits until the tracer caught up, reads its usage and program statistics, stops it
/// and parses what it printed.
fn finish(session: Session, before: Started, tools: &Tools) -> Result<Traced> {
    session.quiesce(Duration::from_secs(30));
    let after = session.usage();
    let fd_programs = session.programs(tools.bpftool.as_deref().ok());
    let is_agent = session.is_agent();
    let stopped = session.stop()?;
    let mut problems = Vec::new();
    let mut events = Vec::with_capacity(stopped.lines.len());
    let mut bad = 0usize;
    for line in &stopped.lines {
        let ev = if is_agent {
            match parse::agent_line(&line.text) {
                Ok(ev) => ev,
                Err(err) => {
                    if bad == 0 {
                        problems.push(format!("unparsable agent line: {err}"));
                    }
                    bad += 1;
                    continue;
                }
            }
        } else {
            parse::bpftrace_line(&line.text)
        };
        events.push((line.read_at_ns, ev));
    }
    if bad > 1 {
        problems.push(format!("{bad} unparsable agent lines in all"));
    }
    if !stopped.status.success() {
        let tail: String = stopped
            .stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ");
        problems.push(format!("tracer exited with {}: {tail}", stopped.status));
    }
    let records = events
        .iter()
        .filter(|(_, e)| {
            if is_agent {
                !matches!(e, Ev::Start | Ev::Stop { .. })
            } else {
                matches!(e, Ev::Exit { .. } | Ev::Signal { .. } | Ev::Oom { .. })
            }
        })
        .count();
    let stop_programs = events.iter().rev().find_map(|(_, e)| match e {
        Ev::Stop { programs, .. } => Some(programs.clone()),
        _ => None,
    });
    if is_agent && stop_programs.is_none() {
        problems.push("no agent_stop record: the agent did not end normally".into());
    }
    let (programs, programs_from_agent) = match stop_programs.flatten() {
        Some(p) if !p.is_empty() => (p, true),
        _ => (fd_programs, false),
    };
    let evs: Vec<Ev> = events.iter().map(|(_, e)| e.clone()).collect();
    let lost = parse::lost_total(&evs);
    let aggregated = evs
        .iter()
        .any(|e| matches!(e, Ev::Signal { count: Some(_), .. }));
    Ok(Traced {
        events,
        records,
        lost,
        cpu_s: after.cpu_s.zip(before.usage.cpu_s).map(|(a, b)| a - b),
        hwm_kb: after.hwm_kb,
        startup_hwm_kb: before.startup_hwm_kb,
        programs,
        programs_from_agent,
        aggregated,
        problems,
    })
}

/// A tracer's state when the workload starts.
struct Started {
    usage: Usage,
    startup_hwm_kb: Option<u64>,
}

fn start(tools: &Tools, tracer: Option<Tracer>) -> Result<Option<(Session, Started)>> {
    let Some(tracer) = tracer else {
        return Ok(None);
    };
    let session = Session::start(tools, &tracer)?;
    let startup_hwm_kb = session.reset_peak_rss();
    let usage = session.usage();
    Ok(Some((
        session,
        Started {
            usage,
            startup_hwm_kb,
        },
    )))
}

// ---------------------------------------------------------------------------------------
// Spawn storm

/// One run of the spawn storm.
pub struct StormRun {
    pub wall_s: f64,
    pub spawned: usize,
    /// Spawned processes whose exit the tracer reported (`None` untraced).
    pub captured: Option<usize>,
    pub traced: Option<Traced>,
    /// Exit-to-read latencies of the spawned processes' exit records, ms (agent only).
    pub latencies_ms: Vec<f64>,
    pub problems: Vec<String>,
}

/// A runner's runs, each paired with the untraced run made just before it.
pub struct StormSeries {
    pub runner: Runner,
    pub pairs: Vec<(StormRun, StormRun)>,
    /// Why the runner stopped early, if it did.
    pub error: Option<String>,
}

/// Processes per spawner: `total` split as evenly as possible.
pub fn split(total: u32, parts: u32) -> Vec<u32> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| total / parts + u32::from(i < total % parts))
        .collect()
}

pub fn spawn_storm(
    tools: &Tools,
    helpers: &Helpers,
    sizes: &Sizes,
    runners: &[Runner],
) -> Result<Vec<StormSeries>> {
    let mut series: Vec<StormSeries> = runners
        .iter()
        .map(|&runner| StormSeries {
            runner,
            pairs: Vec::new(),
            error: None,
        })
        .collect();
    let mut run_no = 0u32;
    for round in 1..=sizes.rounds {
        for s in series.iter_mut().filter(|s| s.error.is_none()) {
            run_no += 1;
            let untraced = storm_run(tools, helpers, sizes, Runner::Untraced, run_no)
                .context("untraced spawn-storm run failed")?;
            run_no += 1;
            match storm_run(tools, helpers, sizes, s.runner, run_no) {
                Ok(traced) => {
                    eprintln!(
                        "xtask: bench: spawn storm round {round}/{}: {} {:.2} s, untraced {:.2} s{}",
                        sizes.rounds,
                        s.runner.name(),
                        traced.wall_s,
                        untraced.wall_s,
                        traced
                            .captured
                            .map(|c| format!(", {c}/{} exits reported", traced.spawned))
                            .unwrap_or_default()
                    );
                    s.pairs.push((untraced, traced));
                }
                Err(err) => {
                    eprintln!("xtask: bench: {} failed: {err:#}", s.runner.name());
                    s.error = Some(format!("{err:#}"));
                }
            }
        }
    }
    Ok(series)
}

/// The storm's spawners, started and waiting for their start line (so that a tracer or the
/// daemon gets ready first), each writing the pids it creates to a pid file of the run.
/// Dropped before they ran, they are killed.
pub(super) struct Spawners {
    kids: Kids,
    pidfiles: Vec<PathBuf>,
    /// Processes asked for, over all spawners.
    asked: u32,
}

impl Spawners {
    /// `sizes.spawners` copies of `helpers.spawner`, `sizes.storm` processes in all; `run_no`
    /// names the pid files.
    pub fn start(helpers: &Helpers, sizes: &Sizes, run_no: u32) -> Result<Spawners> {
        let pidfiles: Vec<PathBuf> = (0..sizes.spawners)
            .map(|i| helpers.scratch.join(format!("run{run_no}-spawner{i}.pids")))
            .collect();
        let mut kids = Kids(Vec::new());
        for (n, pidfile) in split(sizes.storm, sizes.spawners).iter().zip(&pidfiles) {
            let _ = fs::remove_file(pidfile);
            let child = Command::new(&helpers.spawner)
                .arg(n.to_string())
                .arg(&helpers.exit0)
                .arg(pidfile)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("could not start {}", helpers.spawner.display()))?;
            kids.0.push(child);
        }
        Ok(Spawners {
            kids,
            pidfiles,
            asked: sizes.storm,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.kids.0.iter().map(Child::id).collect()
    }

    /// Sends each spawner its start line and waits until all have exited: the storm's wall
    /// time. A spawner that failed is a problem.
    pub fn release(&mut self, problems: &mut Vec<String>) -> Result<f64> {
        let t0 = Instant::now();
        for child in &mut self.kids.0 {
            let mut stdin = child.stdin.take().context("spawner has no stdin")?;
            stdin
                .write_all(b"go\n")
                .context("could not start a spawner")?;
        }
        for child in &mut self.kids.0 {
            let status = child.wait().context("waiting for a spawner")?;
            if !status.success() {
                problems.push(format!("a spawner failed: {status}"));
            }
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    /// The distinct pids the spawners created (their pid files, read and removed); fewer
    /// than asked for is a problem.
    pub fn spawned(&self, problems: &mut Vec<String>) -> Result<HashSet<u32>> {
        let mut spawned = HashSet::new();
        for pidfile in &self.pidfiles {
            let text = fs::read_to_string(pidfile)
                .with_context(|| format!("the spawner wrote no {}", pidfile.display()))?;
            spawned.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            let _ = fs::remove_file(pidfile);
        }
        if spawned.len() != self.asked as usize {
            problems.push(format!(
                "{} distinct pids spawned, {} asked for",
                spawned.len(),
                self.asked
            ));
        }
        Ok(spawned)
    }
}

pub(super) fn storm_run(
    tools: &Tools,
    helpers: &Helpers,
    sizes: &Sizes,
    runner: Runner,
    run_no: u32,
) -> Result<StormRun> {
    let mut spawners = Spawners::start(helpers, sizes, run_no)?;
    let mut outside = Kids(Vec::new());
    if runner == Runner::AgentOutside {
        outside.0.push(sleeper()?);
    }
    let tracer = tracer_for(runner, &spawners.pids(), outside.0.first().map(Child::id))?;
    let session = start(tools, tracer)?;

    let mut problems = Vec::new();
    let wall_s = spawners.release(&mut problems)?;
    let traced = session
        .map(|(session, before)| finish(session, before, tools))
        .transpose()?;

    let spawned = spawners.spawned(&mut problems)?;
    let mut captured = None;
    let mut latencies_ms = Vec::new();
    if let Some(t) = &traced {
        let mut seen = HashSet::new();
        for (read_at, ev) in &t.events {
            if let Ev::Exit { pid, ts_ns, .. } = ev
                && spawned.contains(pid)
            {
                seen.insert(*pid);
                if let Some(ts) = ts_ns {
                    latencies_ms.push((read_at - ts) as f64 / 1e6);
                }
            }
        }
        captured = Some(seen.len());
        problems.extend(t.problems.iter().cloned());
    }
    Ok(StormRun {
        wall_s,
        spawned: spawned.len(),
        captured,
        traced,
        latencies_ms,
        problems,
    })
}

// ---------------------------------------------------------------------------------------
// Signal storm and flood

/// The signal storm under one runner.
pub struct SignalRun {
    pub runner: Runner,
    /// The helper's own time for the storm.
    pub wall_s: f64,
    pub sent: u64,
    /// Signals reported (records × count) whose target is one of the two processes.
    pub reported: Option<u64>,
    /// Of those, the signals whose sender is the other process.
    pub right_sender: Option<u64>,
    pub traced: Option<Traced>,
    pub problems: Vec<String>,
}

/// The signal flood under one runner.
pub struct FloodRun {
    pub runner: Runner,
    pub wall_s: f64,
    pub calls: u64,
    /// kill() calls that returned 0.
    pub ok: u64,
    /// Records from the flooder to its target (aggregated or not).
    pub flood_records: Option<u64>,
    /// Signals those records stand for (the sum of their counts).
    pub in_records: Option<u64>,
    pub traced: Option<Traced>,
    pub problems: Vec<String>,
}

/// Runs a `sigstorm` mode and returns its `key=value` line.
fn sigstorm(
    helpers: &Helpers,
    mode: &str,
    n: u64,
) -> Result<std::collections::HashMap<String, String>> {
    let out = crate::cargo::capture(Command::new(&helpers.sigstorm).arg(mode).arg(n.to_string()))?;
    Ok(parse::key_values(out.trim()))
}

fn kv<T: std::str::FromStr>(
    kv: &std::collections::HashMap<String, String>,
    key: &str,
) -> Result<T> {
    kv.get(key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("sigstorm printed no usable `{key}=`: {kv:?}"))
}

fn signal_sum(events: &[(i128, Ev)], pred: impl Fn(u32, u32, i32) -> bool) -> (u64, u64) {
    let mut records = 0;
    let mut signals = 0;
    for (_, ev) in events {
        if let Ev::Signal {
            sender,
            target,
            sig,
            count,
        } = ev
            && pred(*sender, *target, *sig)
        {
            records += 1;
            signals += count.unwrap_or(1);
        }
    }
    (records, signals)
}

pub fn signal_storm(
    tools: &Tools,
    helpers: &Helpers,
    sizes: &Sizes,
    runner: Runner,
) -> Result<SignalRun> {
    let session = start(tools, tracer_for(runner, &[], None)?)?;
    let out = sigstorm(helpers, "pingpong", sizes.signals)?;
    let traced = session
        .map(|(session, before)| finish(session, before, tools))
        .transpose()?;
    let (a, b): (u32, u32) = (kv(&out, "a")?, kv(&out, "b")?);
    let sent = kv::<u64>(&out, "a_to_b")? + kv::<u64>(&out, "b_to_a")?;
    let usr1 = libc::SIGUSR1;
    let (reported, right_sender) = match &traced {
        Some(t) => {
            let (_, to_pair) = signal_sum(&t.events, |_, target, sig| {
                sig == usr1 && (target == a || target == b)
            });
            let (_, right) = signal_sum(&t.events, |sender, target, sig| {
                sig == usr1 && ((sender == a && target == b) || (sender == b && target == a))
            });
            (Some(to_pair), Some(right))
        }
        None => (None, None),
    };
    let problems = traced.iter().flat_map(|t| t.problems.clone()).collect();
    Ok(SignalRun {
        runner,
        wall_s: kv(&out, "secs")?,
        sent,
        reported,
        right_sender,
        traced,
        problems,
    })
}

pub fn signal_flood(
    tools: &Tools,
    helpers: &Helpers,
    sizes: &Sizes,
    runner: Runner,
) -> Result<FloodRun> {
    let session = start(tools, tracer_for(runner, &[], None)?)?;
    let out = sigstorm(helpers, "flood", sizes.flood)?;
    let traced = session
        .map(|(session, before)| finish(session, before, tools))
        .transpose()?;
    let (sender, target): (u32, u32) = (kv(&out, "sender")?, kv(&out, "target")?);
    let usr1 = libc::SIGUSR1;
    let (flood_records, in_records) = match &traced {
        Some(t) => {
            let (records, signals) = signal_sum(&t.events, |s, t, sig| {
                sig == usr1 && s == sender && t == target
            });
            (Some(records), Some(signals))
        }
        None => (None, None),
    };
    let problems = traced.iter().flat_map(|t| t.problems.clone()).collect();
    Ok(FloodRun {
        runner,
        wall_s: kv(&out, "secs")?,
        calls: kv(&out, "calls")?,
        ok: kv(&out, "ok")?,
        flood_records,
        in_records,
        traced,
        problems,
    })
}

// ---------------------------------------------------------------------------------------
// OOM loop

pub struct OomRun {
    pub runner: Runner,
    pub attempts: u32,
    /// memhogs that died of SIGKILL (the OOM killer).
    pub kills: usize,
    /// Of those, the ones with an `oom` record naming them as victim.
    pub oom_records: usize,
    /// Of those, the ones whose exit was reported.
    pub exits: usize,
    /// Of those, the exits with `cause` `oom_killed` (agent only).
    pub exits_oom_killed: Option<usize>,
    pub traced: Option<Traced>,
    pub problems: Vec<String>,
}

/// memhog's allocation and the cgroup's limit: 300 MiB in 64 MiB, as in the tests.
const MEMHOG_MIB: u32 = 300;
const OOM_LIMIT_BYTES: u64 = 64 << 20;

pub fn oom_loop(tools: &Tools, helpers: &Helpers, sizes: &Sizes, runner: Runner) -> Result<OomRun> {
    let cg = MemCgroup::create(
        &format!("claude-monitor-bench-{}", std::process::id()),
        OOM_LIMIT_BYTES,
    )?;
    let session = start(tools, tracer_for(runner, &[], None)?)?;
    let mut victims = Vec::new();
    let mut problems = Vec::new();
    for _ in 0..sizes.ooms {
        let mut kids = Kids(vec![
            Command::new(&helpers.memhog)
                .arg(MEMHOG_MIB.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("could not start {}", helpers.memhog.display()))?,
        ]);
        let child = &mut kids.0[0];
        let pid = child.id();
        cg.add(pid)?;
        child
            .stdin
            .take()
            .context("memhog has no stdin")?
            .write_all(b"go\n")
            .context("could not start memhog")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for memhog")? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match status {
            Some(s) if s.signal() == Some(libc::SIGKILL) => victims.push(pid),
            Some(s) => problems.push(format!("memhog {pid} was not OOM-killed: {s}")),
            None => problems.push(format!("memhog {pid} still running after 60 s")),
        }
    }
    let traced = session
        .map(|(session, before)| finish(session, before, tools))
        .transpose()?;
    drop(cg);
    let (mut oom_records, mut exits, mut exits_oom_killed) = (0, 0, None);
    if let Some(t) = &traced {
        let oom: HashSet<u32> = t
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Oom { victim } => Some(*victim),
                _ => None,
            })
            .collect();
        let exited: Vec<(u32, Option<&str>)> = t
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Exit { pid, cause, .. } => Some((*pid, cause.as_deref())),
                _ => None,
            })
            .collect();
        oom_records = victims.iter().filter(|v| oom.contains(v)).count();
        exits = victims
            .iter()
            .filter(|v| exited.iter().any(|(p, _)| p == *v))
            .count();
        if runner.is_agent() {
            exits_oom_killed = Some(
                victims
                    .iter()
                    .filter(|v| {
                        exited
                            .iter()
                            .any(|(p, c)| p == *v && *c == Some("oom_killed"))
                    })
                    .count(),
            );
        }
        problems.extend(t.problems.iter().cloned());
    }
    Ok(OomRun {
        runner,
        attempts: sizes.ooms,
        kills: victims.len(),
        oom_records,
        exits,
        exits_oom_killed,
        traced,
        problems,
    })
}

// ---------------------------------------------------------------------------------------
// Idle

pub struct IdleRun {
    pub secs: f64,
    /// CPU time over `secs`, from schedstat (ns) …
    pub cpu_ns: Option<u64>,
    /// … and from /proc/PID/stat (clock ticks, in seconds).
    pub cpu_s_ticks: Option<f64>,
    /// Peak RSS while idle, and of start-up, KiB.
    pub hwm_kb: Option<u64>,
    pub startup_hwm_kb: Option<u64>,
}

impl IdleRun {
    /// Percent of one core.
    pub fn percent(&self) -> Option<f64> {
        let cpu_s = self.cpu_ns.map(|ns| ns as f64 / 1e9).or(self.cpu_s_ticks)?;
        (self.secs > 0.0).then(|| cpu_s / self.secs * 100.0)
    }
}

/// The agent watching a sleeping process: nothing in its scope happens, so what it uses
/// is its fixed cost (timers, loss checks, scans).
pub fn idle(tools: &Tools, sizes: &Sizes) -> Result<IdleRun> {
    let sleeping = Kids(vec![sleeper()?]);
    let tracer = tracer_for(Runner::AgentOutside, &[], Some(sleeping.0[0].id()))?;
    let Some((session, _)) = start(tools, tracer)? else {
        bail!("no tracer for the idle run");
    };
    // Start-up work (the /proc scan) is not idle cost.
    std::thread::sleep(Duration::from_secs(1));
    let startup_hwm_kb = session.reset_peak_rss();
    let before = session.usage();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(sizes.idle_s));
    let after = session.usage();
    let secs = t0.elapsed().as_secs_f64();
    let stopped = session.stop()?;
    if !stopped.status.success() {
        bail!(
            "the agent exited with {}: {}",
            stopped.status,
            stopped.stderr.trim()
        );
    }
    Ok(IdleRun {
        secs,
        cpu_ns: after
            .cpu_ns
            .zip(before.cpu_ns)
            .map(|(a, b)| a.saturating_sub(b)),
        cpu_s_ticks: after.cpu_s.zip(before.cpu_s).map(|(a, b)| a - b),
        hwm_kb: after.hwm_kb,
        startup_hwm_kb,
    })
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn storm_split() {
        assert_eq!(split(20_000, 2), vec![10_000, 10_000]);
        assert_eq!(split(7, 3), vec![3, 2, 2]);
        assert_eq!(split(5, 0), vec![5]);
        assert_eq!(split(7, 3).iter().sum::<u32>(), 7);
    }
}

//! Turns the scenarios' figures into the printed tables, the target checks and the JSON
//! file. Everything here is computed from [`Results`]; nothing is measured.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    Scenario,
    api::{ApiCrates, ApiSeries},
    parse::{self, ProgStat},
    scenarios::{FloodRun, IdleRun, OomRun, Runner, SignalRun, Sizes, StormRun, StormSeries},
    stats::{self, Target, Verdict},
};

impl Results {
    /// Whether `s` ran in this bench.
    pub fn ran(&self, s: Scenario) -> bool {
        self.scenarios.contains(&s)
    }
}

/// Everything one bench run measured.
pub struct Results {
    /// The agent binary measured.
    pub agent: String,
    pub sizes: Sizes,
    pub quick: bool,
    pub started_unix: i64,
    pub kernel: String,
    pub cpus: usize,
    pub storm: Vec<StormSeries>,
    pub signals: Vec<Result<SignalRun, (Runner, String)>>,
    pub flood: Vec<Result<FloodRun, (Runner, String)>>,
    pub oom: Vec<Result<OomRun, (Runner, String)>>,
    pub idle: Result<IdleRun, String>,
    /// The scenarios run (`--only`); the others' tables are left out.
    pub scenarios: Vec<Scenario>,
    /// The API subscribers scenario's figures (empty when it did not run).
    pub api: Vec<ApiSeries>,
    /// The crates only the API's dependencies brought, or why that is unknown.
    pub api_crates: Result<ApiCrates, String>,
    /// The OTLP export scenario's figures (empty when it did not run).
    pub otlp: Vec<ApiSeries>,
    /// Why some figures are missing (no bpftrace, no bpftool, …), found while running.
    pub notes: Vec<String>,
    /// Seconds spent building (before the measurements) and measuring.
    pub build_s: f64,
    pub measure_s: f64,
}

/// A storm runner's figures over all its rounds.
pub struct StormSummary<'a> {
    pub runner: Runner,
    pub wall_s: Option<f64>,
    pub ratio: Option<f64>,
    pub spawned: usize,
    pub captured: Option<usize>,
    pub lost: Option<u64>,
    pub records: Option<usize>,
    pub cpu_s: Option<f64>,
    /// Peak RSS during the runs (the largest), and of start-up, KiB.
    pub hwm_kb: Option<u64>,
    pub startup_hwm_kb: Option<u64>,
    pub latencies_ms: Vec<f64>,
    pub programs: Vec<ProgStat>,
    pub programs_from_agent: bool,
    pub problems: Vec<String>,
    pub error: Option<&'a str>,
}

fn traced_runs(series: &StormSeries) -> impl Iterator<Item = &StormRun> {
    series.pairs.iter().map(|(_, b)| b)
}

/// Sums run counts and run times per program name.
pub fn sum_programs<'a>(lists: impl IntoIterator<Item = &'a [ProgStat]>) -> Vec<ProgStat> {
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for list in lists {
        for p in list {
            let e = by_name.entry(p.name.clone()).or_default();
            e.0 += p.run_time_ns;
            e.1 += p.run_cnt;
        }
    }
    by_name
        .into_iter()
        .map(|(name, (run_time_ns, run_cnt))| ProgStat {
            name,
            run_time_ns,
            run_cnt,
        })
        .collect()
}

/// Sum over runs, `None` unless every run has the figure.
fn sum_all<T: std::iter::Sum<T>>(items: impl Iterator<Item = Option<T>>) -> Option<T> {
    items
        .collect::<Option<Vec<T>>>()
        .map(|v| v.into_iter().sum())
}

pub fn summarize(series: &StormSeries) -> StormSummary<'_> {
    let walls: Vec<f64> = traced_runs(series).map(|r| r.wall_s).collect();
    let pairs: Vec<(f64, f64)> = series
        .pairs
        .iter()
        .map(|(a, b)| (a.wall_s, b.wall_s))
        .collect();
    let runs = || traced_runs(series);
    let traced = |f: &dyn Fn(&super::scenarios::Traced) -> Option<f64>| {
        sum_all(runs().map(|r| r.traced.as_ref().and_then(f)))
    };
    let mut problems: Vec<String> = Vec::new();
    for p in runs().flat_map(|r| r.problems.iter()) {
        if !problems.contains(p) {
            problems.push(p.clone());
        }
    }
    StormSummary {
        runner: series.runner,
        wall_s: stats::median(&walls),
        ratio: stats::median_of_ratios(&pairs),
        spawned: runs().map(|r| r.spawned).sum(),
        captured: sum_all(runs().map(|r| r.captured)),
        lost: sum_all(runs().map(|r| r.traced.as_ref().map(|t| t.lost))),
        records: sum_all(runs().map(|r| r.traced.as_ref().map(|t| t.records))),
        cpu_s: traced(&|t| t.cpu_s),
        hwm_kb: runs()
            .filter_map(|r| r.traced.as_ref().and_then(|t| t.hwm_kb))
            .max(),
        startup_hwm_kb: runs()
            .filter_map(|r| r.traced.as_ref().and_then(|t| t.startup_hwm_kb))
            .max(),
        latencies_ms: runs()
            .flat_map(|r| r.latencies_ms.iter().copied())
            .collect(),
        programs: sum_programs(
            runs().filter_map(|r| r.traced.as_ref().map(|t| t.programs.as_slice())),
        ),
        programs_from_agent: runs()
            .any(|r| r.traced.as_ref().is_some_and(|t| t.programs_from_agent)),
        problems,
        error: series.error.as_deref(),
    }
}

/// `n/d` as a percentage that never rounds up to 100: 19,999 of 20,000 is `99.99%`.
pub fn pct(n: u64, d: u64) -> String {
    if d == 0 {
        return "n/a".into();
    }
    if n == d {
        return "100.0%".into();
    }
    let p = n as f64 / d as f64 * 100.0;
    let floored = (p * 100.0).floor() / 100.0;
    format!("{floored:.2}%")
}

fn pct_value(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64 * 100.0)
}

/// `ns per run` of the programs whose name starts with `prefix`.
pub fn ns_per_run(programs: &[ProgStat], prefix: &str) -> Option<(f64, u64)> {
    let (time, runs) = programs
        .iter()
        .filter(|p| p.name.starts_with(prefix))
        .fold((0u64, 0u64), |(t, r), p| (t + p.run_time_ns, r + p.run_cnt));
    (runs > 0).then(|| (time as f64 / runs as f64, runs))
}

/// A plain-text table with a title, columns padded to their widest cell.
pub fn table(title: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", padded.join(" | ").trim_end())
    };
    let mut out = format!("{title}\n");
    out.push_str(&line(headers.to_vec()));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("  {}\n", rule.join("-+-")));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".into(), |v| v.to_string())
}

fn f(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// One target of the issue, judged.
pub struct Check {
    pub name: String,
    pub figure: Option<f64>,
    pub unit: &'static str,
    pub decimals: usize,
    /// The target as printed (`<= 1.1x`; `< bpftrace's` when there is no bpftrace figure).
    pub target_text: String,
    pub verdict: Verdict,
}

impl Check {
    fn new(
        name: impl Into<String>,
        figure: Option<f64>,
        unit: &'static str,
        decimals: usize,
        target: Target,
        why_missing: &str,
    ) -> Check {
        Check {
            name: name.into(),
            figure,
            unit,
            decimals,
            target_text: target.describe(unit),
            verdict: target.judge(figure, why_missing),
        }
    }

    pub fn verdict_text(&self) -> String {
        match &self.verdict {
            Verdict::Met => "met".into(),
            Verdict::Missed(by) => {
                format!("missed by {by:.prec$}{}", self.unit, prec = self.decimals)
            }
            Verdict::NotAvailable(why) => format!("n/a: {why}"),
        }
    }

    fn short(&self) -> String {
        format!("{} {}", self.target_text, self.verdict_text())
    }
}

/// The printed report and the JSON document.
pub fn render(r: &Results) -> (String, Value) {
    let mut out = String::new();
    let mut checks: Vec<Check> = Vec::new();
    let mut notes: Vec<String> = r.notes.clone();
    let sizes = &r.sizes;
    out.push_str(&format!(
        "claude-monitor bench{} on {} ({} CPUs), {}\nagent: {}\n\n",
        if r.quick { " --quick" } else { "" },
        r.kernel,
        r.cpus,
        parse::rfc3339(r.started_unix),
        r.agent
    ));

    // ----- spawn storm
    let summaries: Vec<StormSummary> = r.storm.iter().map(summarize).collect();
    let untraced_walls: Vec<f64> = r
        .storm
        .iter()
        .flat_map(|s| s.pairs.iter().map(|(a, _)| a.wall_s))
        .collect();
    let bpftrace_ratio = summaries
        .iter()
        .find(|s| s.runner == Runner::Bpftrace)
        .and_then(|s| s.ratio);
    let mut rows = vec![vec![
        "untraced".into(),
        f(stats::median(&untraced_walls), 2),
        "1.00".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        String::new(),
    ]];
    for s in &summaries {
        let mut row_checks = Vec::new();
        let capture_name = format!("spawn storm, {}: exits captured", s.runner.name());
        match s.runner {
            Runner::AgentAll => {
                let c = Check::new(
                    format!("spawn storm, {}: ratio to untraced", s.runner.name()),
                    s.ratio,
                    "x",
                    3,
                    Target::AtMost(1.10),
                    "no run",
                );
                row_checks.push(c);
                let name = format!("spawn storm, {}: ratio below bpftrace's", s.runner.name());
                row_checks.push(match bpftrace_ratio {
                    Some(b) => Check::new(name, s.ratio, "x", 3, Target::Below(b), "no run"),
                    None => Check {
                        target_text: "< bpftrace's".into(),
                        ..Check::new(name, None, "x", 3, Target::Below(0.0), "no bpftrace run")
                    },
                });
            }
            Runner::AgentOutside | Runner::AgentClaude => row_checks.push(Check::new(
                format!("spawn storm, {}: ratio to untraced", s.runner.name()),
                s.ratio,
                "x",
                3,
                Target::AtMost(1.02),
                "no run",
            )),
            _ => {}
        }
        let expects_exits = !s.runner.is_outside();
        if s.runner.is_agent() && expects_exits {
            row_checks.push(Check::new(
                capture_name,
                s.captured
                    .and_then(|c| pct_value(c as u64, s.spawned as u64)),
                "%",
                2,
                Target::AtLeast(100.0),
                "no run",
            ));
            row_checks.push(Check::new(
                format!("spawn storm, {}: records lost", s.runner.name()),
                s.lost.map(|l| l as f64),
                "",
                0,
                Target::AtMost(0.0),
                "no run",
            ));
        }
        let captured = match (s.captured, expects_exits) {
            (Some(c), true) => format!("{c}/{} ({})", s.spawned, pct(c as u64, s.spawned as u64)),
            (Some(c), false) => format!("{c} (outside scope, 0 expected)"),
            (None, _) => "n/a".into(),
        };
        let mut row = vec![
            s.runner.name().to_owned(),
            f(s.wall_s, 2),
            f(s.ratio, 3),
            captured,
            opt(s.lost),
            opt(s.records),
            row_checks
                .iter()
                .map(Check::short)
                .collect::<Vec<_>>()
                .join("; "),
        ];
        if let Some(err) = s.error {
            row[6] = format!("n/a: {err}");
        }
        rows.push(row);
        checks.extend(row_checks);
        for p in &s.problems {
            notes.push(format!("spawn storm, {}: {p}", s.runner.name()));
        }
    }
    if r.ran(Scenario::Storm) {
        out.push_str(&table(
        &format!(
            "Spawn storm: {} processes (fork + exec of a static no-op + wait) over {} spawners, {} round(s) of untraced/traced pairs; wall s = median, ratio = median of pairwise ratios",
            sizes.storm, sizes.spawners, sizes.rounds
        ),
        &["run", "wall s", "ratio", "exits captured", "lost", "records", "targets"],
        &rows,
    ));
        out.push('\n');
    }

    // ----- signal storm
    let mut rows = Vec::new();
    let untraced_sig = r
        .signals
        .iter()
        .flatten()
        .find(|s| s.runner == Runner::Untraced)
        .map(|s| s.wall_s);
    for run in &r.signals {
        match run {
            Ok(s) => {
                let mut row_checks = Vec::new();
                if s.runner.is_agent() {
                    row_checks.push(Check::new(
                        format!("signal storm, {}: signals captured", s.runner.name()),
                        s.reported.and_then(|n| pct_value(n.min(s.sent), s.sent)),
                        "%",
                        2,
                        Target::AtLeast(100.0),
                        "no run",
                    ));
                    row_checks.push(Check::new(
                        format!("signal storm, {}: right sender", s.runner.name()),
                        s.right_sender
                            .zip(s.reported)
                            .and_then(|(ok, all)| pct_value(ok, all)),
                        "%",
                        2,
                        Target::AtLeast(100.0),
                        "no signal reported",
                    ));
                    row_checks.push(Check::new(
                        format!("signal storm, {}: records lost", s.runner.name()),
                        s.traced.as_ref().map(|t| t.lost as f64),
                        "",
                        0,
                        Target::AtMost(0.0),
                        "no run",
                    ));
                }
                rows.push(vec![
                    s.runner.name().to_owned(),
                    format!("{:.3}", s.wall_s),
                    f(untraced_sig.map(|u| s.wall_s / u), 2),
                    s.sent.to_string(),
                    s.reported.map_or("-".into(), |n| {
                        format!("{n} ({})", pct(n.min(s.sent), s.sent))
                    }),
                    s.right_sender
                        .zip(s.reported)
                        .map_or("-".into(), |(ok, all)| pct(ok, all)),
                    s.traced.as_ref().map_or("-".into(), |t| t.lost.to_string()),
                    row_checks
                        .iter()
                        .map(Check::short)
                        .collect::<Vec<_>>()
                        .join("; "),
                ]);
                checks.extend(row_checks);
                for p in &s.problems {
                    notes.push(format!("signal storm, {}: {p}", s.runner.name()));
                }
            }
            Err((runner, err)) => rows.push(na_row(runner.name(), 8, err)),
        }
    }
    if r.ran(Scenario::Signals) {
        out.push_str(&table(
        &format!(
            "Signal storm: {} SIGUSR1 between two processes (ping-pong, each delivered); wall s = the helper's own time",
            sizes.signals
        ),
        &["run", "wall s", "ratio", "sent", "reported", "right sender", "lost", "targets"],
        &rows,
    ));
        out.push('\n');
    }

    // ----- signal flood
    let mut rows = Vec::new();
    let untraced_flood = r
        .flood
        .iter()
        .flatten()
        .find(|s| s.runner == Runner::Untraced)
        .map(|s| s.wall_s);
    let mut aggregation_seen = false;
    for run in &r.flood {
        match run {
            Ok(s) => {
                let lost = s.traced.as_ref().map(|t| t.lost);
                let accounted = s.in_records.zip(lost).map(|(n, l)| n + l);
                aggregation_seen |= s.traced.as_ref().is_some_and(|t| t.aggregated);
                let mut row_checks = Vec::new();
                if s.runner.is_agent() {
                    row_checks.push(Check::new(
                        format!(
                            "signal flood, {}: kill() calls accounted for",
                            s.runner.name()
                        ),
                        accounted.and_then(|a| pct_value(a.min(s.calls), s.calls)),
                        "%",
                        2,
                        Target::AtLeast(100.0),
                        "no run",
                    ));
                }
                rows.push(vec![
                    s.runner.name().to_owned(),
                    format!("{:.3}", s.wall_s),
                    f(untraced_flood.map(|u| s.wall_s / u), 2),
                    s.calls.to_string(),
                    opt(s.flood_records),
                    s.in_records.map_or("-".into(), |n| {
                        format!("{n} ({})", pct(n.min(s.calls), s.calls))
                    }),
                    lost.map_or("-".into(), |l| l.to_string()),
                    accounted.map_or("-".into(), |a| pct(a.min(s.calls), s.calls)),
                    accounted.map_or("-".into(), |a| s.calls.saturating_sub(a).to_string()),
                    row_checks
                        .iter()
                        .map(Check::short)
                        .collect::<Vec<_>>()
                        .join("; "),
                ]);
                checks.extend(row_checks);
                if s.ok != s.calls {
                    notes.push(format!(
                        "signal flood, {}: only {} of {} kill() calls returned 0",
                        s.runner.name(),
                        s.ok,
                        s.calls
                    ));
                }
                for p in &s.problems {
                    notes.push(format!("signal flood, {}: {p}", s.runner.name()));
                }
            }
            Err((runner, err)) => rows.push(na_row(runner.name(), 10, err)),
        }
    }
    if r.ran(Scenario::Flood) {
        out.push_str(&table(
        &format!(
            "Signal flood: {} kill(SIGUSR1) calls from one process at another (handler installed); accounted = signals in records (sum of counts) + records lost",
            sizes.flood
        ),
        &[
            "run", "wall s", "ratio", "calls", "records", "signals in records", "lost",
            "accounted", "unaccounted", "targets",
        ],
        &rows,
    ));
        out.push('\n');
    }
    if !aggregation_seen && r.flood.iter().flatten().any(|s| s.runner.is_agent()) {
        notes.push(
            "signal flood: the agent's signal records carry no `count` (no in-kernel aggregation in this build): each record counts as one signal".into(),
        );
    }

    // ----- OOM loop
    let mut rows = Vec::new();
    for run in &r.oom {
        match run {
            Ok(o) => {
                let mut row_checks = Vec::new();
                if o.runner.is_agent() {
                    let complete = o.exits_oom_killed.map(|e| e.min(o.oom_records) as u64);
                    row_checks.push(Check::new(
                        format!(
                            "OOM loop, {}: kills reported with victim and cause",
                            o.runner.name()
                        ),
                        complete.and_then(|c| pct_value(c, o.kills as u64)),
                        "%",
                        1,
                        Target::AtLeast(100.0),
                        "no kill happened",
                    ));
                }
                rows.push(vec![
                    o.runner.name().to_owned(),
                    format!("{}/{}", o.kills, o.attempts),
                    format!("{}/{}", o.oom_records, o.kills),
                    format!("{}/{}", o.exits, o.kills),
                    o.exits_oom_killed
                        .map_or("n/a (no cause)".into(), |e| format!("{e}/{}", o.kills)),
                    o.traced.as_ref().map_or("-".into(), |t| t.lost.to_string()),
                    row_checks
                        .iter()
                        .map(Check::short)
                        .collect::<Vec<_>>()
                        .join("; "),
                ]);
                checks.extend(row_checks);
                for p in &o.problems {
                    notes.push(format!("OOM loop, {}: {p}", o.runner.name()));
                }
            }
            Err((runner, err)) => rows.push(na_row(runner.name(), 7, err)),
        }
    }
    if r.ran(Scenario::Oom) {
        out.push_str(&table(
            &format!(
                "OOM loop: {} memcg OOM kills (memhog, 300 MiB in a 64 MiB memory cgroup)",
                sizes.ooms
            ),
            &[
                "run",
                "OOM kills",
                "oom records",
                "exits",
                "cause oom_killed",
                "lost",
                "targets",
            ],
            &rows,
        ));
        out.push('\n');
    }

    // ----- agent cost
    let mib = |kb: Option<u64>| f(kb.map(|kb| kb as f64 / 1024.0), 1);
    let mut rows = Vec::new();
    for s in summaries.iter().filter(|s| s.runner.is_agent()) {
        let per_10k = s
            .cpu_s
            .zip(s.records)
            .and_then(|(cpu, n)| (n > 0).then(|| cpu / n as f64 * 10_000.0));
        let mut target = String::new();
        if !s.runner.is_outside() {
            let c = Check::new(
                format!("spawn storm, {}: agent peak RSS", s.runner.name()),
                s.hwm_kb.map(|kb| kb as f64 / 1024.0),
                " MiB",
                1,
                Target::Below(32.0),
                "no run",
            );
            target = c.short();
            checks.push(c);
        }
        rows.push(vec![
            format!("spawn storm, {}", s.runner.name()),
            opt(s.records),
            f(s.cpu_s, 2),
            f(per_10k, 3),
            mib(s.hwm_kb),
            mib(s.startup_hwm_kb),
            target,
        ]);
    }
    for run in r.flood.iter().flatten().filter(|s| s.runner.is_agent()) {
        if let Some(t) = &run.traced {
            let per_10k = t
                .cpu_s
                .and_then(|cpu| (t.records > 0).then(|| cpu / t.records as f64 * 10_000.0));
            rows.push(vec![
                format!("signal flood, {}", run.runner.name()),
                t.records.to_string(),
                f(t.cpu_s, 2),
                f(per_10k, 3),
                mib(t.hwm_kb),
                mib(t.startup_hwm_kb),
                String::new(),
            ]);
        }
    }
    let idle_check = Check::new(
        format!("idle over {} s: agent CPU", sizes.idle_s),
        r.idle.as_ref().ok().and_then(IdleRun::percent),
        "% of a core",
        3,
        Target::Below(0.1),
        r.idle.as_ref().err().map_or("no figure", String::as_str),
    );
    match &r.idle {
        _ if !r.ran(Scenario::Idle) => {}
        Ok(idle) => rows.push(vec![
            format!(
                "idle {:.0} s (agent --pid of a sleeping process)",
                idle.secs
            ),
            "-".into(),
            f(
                idle.cpu_ns.map(|ns| ns as f64 / 1e9).or(idle.cpu_s_ticks),
                3,
            ),
            format!("{}% of a core", f(idle.percent(), 3)),
            mib(idle.hwm_kb),
            mib(idle.startup_hwm_kb),
            idle_check.short(),
        ]),
        Err(err) => rows.push(na_row("idle", 7, err)),
    }
    if r.ran(Scenario::Idle) {
        checks.push(idle_check);
    }
    if !rows.is_empty() {
        out.push_str(&table(
        "Agent cost (CPU from /proc/PID/stat, idle from schedstat; peak RSS = VmHWM, reset after start-up)",
        &[
            "run",
            "events",
            "CPU s",
            "CPU s / 10k events",
            "peak RSS MiB",
            "start-up peak MiB",
            "targets",
        ],
        &rows,
    ));
        out.push('\n');
    }

    // ----- latency
    let mut rows = Vec::new();
    for s in summaries
        .iter()
        .filter(|s| s.runner.is_agent() && !s.runner.is_outside())
    {
        let p99 = stats::percentile(&s.latencies_ms, 99.0);
        let c = Check::new(
            format!("spawn storm, {}: exit-to-JSON latency p99", s.runner.name()),
            p99,
            " ms",
            2,
            Target::Below(10.0),
            "no exit record with a timestamp",
        );
        rows.push(vec![
            s.runner.name().to_owned(),
            s.latencies_ms.len().to_string(),
            f(stats::percentile(&s.latencies_ms, 50.0), 3),
            f(p99, 3),
            f(s.latencies_ms.iter().copied().reduce(f64::max), 3),
            c.short(),
        ]);
        checks.push(c);
    }
    if r.ran(Scenario::Storm) {
        out.push_str(&table(
        "Exit-to-JSON latency during the spawn storm (the time the bench read the line minus the event's kernel timestamp), ms",
        &["run", "exits", "p50", "p99", "max", "targets"],
        &rows,
    ));
        out.push('\n');
    }

    // ----- kernel cost
    let agent_storm = summaries.iter().find(|s| s.runner == Runner::AgentAll);
    let bpf_storm = summaries.iter().find(|s| s.runner == Runner::Bpftrace);
    let flood_programs = |runner: Runner| {
        r.flood
            .iter()
            .flatten()
            .find(|s| s.runner == runner)
            .and_then(|s| s.traced.as_ref())
            .map(|t| t.programs.clone())
            .unwrap_or_default()
    };
    let sets: [(&str, Vec<ProgStat>, Vec<ProgStat>); 2] = [
        (
            "spawn storm",
            agent_storm.map(|s| s.programs.clone()).unwrap_or_default(),
            bpf_storm.map(|s| s.programs.clone()).unwrap_or_default(),
        ),
        (
            "signal flood",
            flood_programs(Runner::AgentAll),
            flood_programs(Runner::Bpftrace),
        ),
    ];
    let mut rows = Vec::new();
    for (scenario, agent, bpf) in &sets {
        let mut names: Vec<&str> = agent
            .iter()
            .chain(bpf.iter())
            .map(|p| p.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let cell = |progs: &[ProgStat]| {
                progs
                    .iter()
                    .find(|p| p.name == name)
                    .map_or("-".into(), |p| {
                        if p.run_cnt == 0 {
                            "0 runs".into()
                        } else {
                            format!(
                                "{:.0} ns × {}",
                                p.run_time_ns as f64 / p.run_cnt as f64,
                                p.run_cnt
                            )
                        }
                    })
            };
            rows.push(vec![
                scenario.to_string(),
                name.to_owned(),
                cell(agent),
                cell(bpf),
            ]);
        }
    }
    let exit_ratio = ns_per_run(&sets[0].1, "sched_process_exit")
        .zip(ns_per_run(&sets[0].2, "sched_process_exit"))
        .map(|((a, _), (b, _))| a / b);
    let kc = Check::new(
        "spawn storm: agent's ns per exit event / bpftrace's",
        exit_ratio,
        "x",
        2,
        Target::AtMost(0.5),
        "no run-time statistics for both tracers' sched_process_exit",
    );
    let kernel_cost = r.ran(Scenario::Storm) || r.ran(Scenario::Flood);
    if kernel_cost {
        out.push_str(&table(
        "Kernel cost per program run (kernel.bpf_stats_enabled: run_time_ns / run_cnt, summed over runs)",
        &["scenario", "program", "agent", "bpftrace"],
        &rows,
    ));
        out.push_str(&format!(
            "  exit hook's ns per run, agent / bpftrace: {} (target {})\n\n",
            f(exit_ratio, 2),
            kc.short()
        ));
        checks.push(kc);
    }
    if let Some(s) = agent_storm
        && !s.programs_from_agent
        && !s.programs.is_empty()
    {
        notes.push("agent program statistics read from the agent's BPF program fds (/proc/PID/fdinfo), as agent_stop carries no `programs`".into());
    }
    if kernel_cost && rows.is_empty() {
        notes.push("kernel cost: no BPF program statistics were found".into());
    }

    // ----- API subscribers
    if r.ran(Scenario::Api) {
        out.push_str(&super::api::render(&r.api, sizes, &mut notes));
        out.push_str(&super::api::crates_text(&r.api_crates));
    }

    // ----- OTLP export
    if r.ran(Scenario::Otlp) {
        out.push_str(&super::otlp::render(&r.otlp, sizes, &mut notes));
    }

    // ----- targets
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.figure.map_or("n/a".into(), |v| {
                    format!("{v:.prec$}{}", c.unit, prec = c.decimals)
                }),
                c.target_text.clone(),
                c.verdict_text(),
            ]
        })
        .collect();
    if !checks.is_empty() {
        out.push_str(&table(
            "Targets (issue 4)",
            &["figure", "value", "target", "verdict"],
            &rows,
        ));
        let met = checks.iter().filter(|c| c.verdict == Verdict::Met).count();
        let missed = checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Missed(_)))
            .count();
        out.push_str(&format!(
            "  {met} met, {missed} missed, {} n/a\n\n",
            checks.len() - met - missed
        ));
    }
    if !notes.is_empty() {
        out.push_str("Notes (n/a figures and problems):\n");
        for n in &notes {
            out.push_str(&format!("  - {n}\n"));
        }
        out.push('\n');
    }
    let budget = if r.quick { 60.0 } else { 600.0 };
    out.push_str(&format!(
        "Time: {:.0} s measuring + {:.1} s building = {:.0} s (budget {budget:.0} s{})\n",
        r.measure_s,
        r.build_s,
        r.measure_s + r.build_s,
        if r.measure_s + r.build_s <= budget {
            ", met"
        } else {
            ", over"
        }
    ));

    let json = to_json(r, &summaries, &checks, &notes);
    (out, json)
}

fn na_row(name: &str, columns: usize, err: &str) -> Vec<String> {
    let mut row = vec![name.to_owned()];
    row.resize(columns - 1, "n/a".into());
    row.push(format!("n/a: {err}"));
    row
}

fn programs_json(programs: &[ProgStat]) -> Value {
    programs
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "run_time_ns": p.run_time_ns,
                "run_cnt": p.run_cnt,
                "ns_per_run": (p.run_cnt > 0).then(|| p.run_time_ns as f64 / p.run_cnt as f64),
            })
        })
        .collect()
}

fn traced_json(t: Option<&super::scenarios::Traced>) -> Value {
    t.map_or(Value::Null, |t| {
        json!({
            "records": t.records,
            "lost": t.lost,
            "cpu_s": t.cpu_s,
            "peak_rss_kb": t.hwm_kb,
            "startup_peak_rss_kb": t.startup_hwm_kb,
            "signal_counts_present": t.aggregated,
            "programs": programs_json(&t.programs),
            "programs_from_agent_stop": t.programs_from_agent,
        })
    })
}

fn to_json(r: &Results, summaries: &[StormSummary], checks: &[Check], notes: &[String]) -> Value {
    let storm: Vec<Value> = summaries
        .iter()
        .zip(&r.storm)
        .map(|(s, series)| {
            json!({
                "runner": s.runner.key(),
                "name": s.runner.name(),
                "wall_s": series.pairs.iter().map(|(_, b)| b.wall_s).collect::<Vec<_>>(),
                "untraced_wall_s": series.pairs.iter().map(|(a, _)| a.wall_s).collect::<Vec<_>>(),
                "wall_s_median": s.wall_s,
                "ratio_median": s.ratio,
                "spawned": s.spawned,
                "captured": s.captured,
                "lost": s.lost,
                "records": s.records,
                "cpu_s": s.cpu_s,
                "peak_rss_kb": s.hwm_kb,
                "startup_peak_rss_kb": s.startup_hwm_kb,
                "latency_ms": {
                    "n": s.latencies_ms.len(),
                    "p50": stats::percentile(&s.latencies_ms, 50.0),
                    "p99": stats::percentile(&s.latencies_ms, 99.0),
                    "max": s.latencies_ms.iter().copied().reduce(f64::max),
                },
                "programs": programs_json(&s.programs),
                "programs_from_agent_stop": s.programs_from_agent,
                "problems": s.problems,
                "error": s.error,
            })
        })
        .collect();
    let err_json = |runner: &Runner, err: &str| json!({"runner": runner.key(), "error": err});
    let signals: Vec<Value> = r
        .signals
        .iter()
        .map(|run| match run {
            Ok(s) => json!({
                "runner": s.runner.key(),
                "wall_s": s.wall_s,
                "sent": s.sent,
                "reported": s.reported,
                "right_sender": s.right_sender,
                "tracer": traced_json(s.traced.as_ref()),
                "problems": s.problems,
            }),
            Err((runner, err)) => err_json(runner, err),
        })
        .collect();
    let flood: Vec<Value> = r
        .flood
        .iter()
        .map(|run| match run {
            Ok(s) => json!({
                "runner": s.runner.key(),
                "wall_s": s.wall_s,
                "calls": s.calls,
                "ok": s.ok,
                "flood_records": s.flood_records,
                "signals_in_records": s.in_records,
                "tracer": traced_json(s.traced.as_ref()),
                "problems": s.problems,
            }),
            Err((runner, err)) => err_json(runner, err),
        })
        .collect();
    let oom: Vec<Value> = r
        .oom
        .iter()
        .map(|run| match run {
            Ok(o) => json!({
                "runner": o.runner.key(),
                "attempts": o.attempts,
                "kills": o.kills,
                "oom_records": o.oom_records,
                "exits": o.exits,
                "exits_oom_killed": o.exits_oom_killed,
                "tracer": traced_json(o.traced.as_ref()),
                "problems": o.problems,
            }),
            Err((runner, err)) => err_json(runner, err),
        })
        .collect();
    let idle = match &r.idle {
        Ok(i) => json!({
            "secs": i.secs,
            "cpu_ns": i.cpu_ns,
            "cpu_s_ticks": i.cpu_s_ticks,
            "percent_of_core": i.percent(),
            "peak_rss_kb": i.hwm_kb,
            "startup_peak_rss_kb": i.startup_hwm_kb,
        }),
        Err(err) => json!({"error": err}),
    };
    let targets: Vec<Value> = checks
        .iter()
        .map(|c| {
            let (verdict, by, why) = match &c.verdict {
                Verdict::Met => ("met", None, None),
                Verdict::Missed(by) => ("missed", Some(*by), None),
                Verdict::NotAvailable(why) => ("n/a", None, Some(why.as_str())),
            };
            json!({
                "name": c.name,
                "value": c.figure,
                "unit": c.unit.trim(),
                "target": c.target_text,
                "verdict": verdict,
                "missed_by": by,
                "why_na": why,
            })
        })
        .collect();
    json!({
        "bench_version": 1,
        "started": parse::rfc3339(r.started_unix),
        "kernel": r.kernel,
        "cpus": r.cpus,
        "agent": r.agent,
        "quick": r.quick,
        "sizes": {
            "storm": r.sizes.storm,
            "spawners": r.sizes.spawners,
            "rounds": r.sizes.rounds,
            "signals": r.sizes.signals,
            "flood": r.sizes.flood,
            "ooms": r.sizes.ooms,
            "idle_s": r.sizes.idle_s,
        },
        "build_s": r.build_s,
        "measure_s": r.measure_s,
        "spawn_storm": {
            "untraced_wall_s_median": stats::median(
                &r.storm.iter().flat_map(|s| s.pairs.iter().map(|(a, _)| a.wall_s)).collect::<Vec<_>>()
            ),
            "runners": storm,
        },
        "signal_storm": signals,
        "signal_flood": flood,
        "oom_loop": oom,
        "idle": idle,
        "scenarios": r.scenarios.iter().map(|s| s.key()).collect::<Vec<_>>(),
        "api_subscribers": super::api::to_json(&r.api, &r.api_crates),
        "otlp_export": super::otlp::to_json(&r.otlp),
        "targets": targets,
        "notes": notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_never_round_up_to_complete() {
        assert_eq!(pct(20_000, 20_000), "100.0%");
        assert_eq!(pct(19_999, 20_000), "99.99%");
        assert_eq!(pct(199_999, 200_000), "99.99%");
        assert_eq!(pct(1, 3), "33.33%");
        assert_eq!(pct(0, 0), "n/a");
    }

    #[test]
    fn program_sums_and_costs() {
        let p = |name: &str, t, c| ProgStat {
            name: name.into(),
            run_time_ns: t,
            run_cnt: c,
        };
        let runs = [
            vec![
                p("sched_process_exit", 1000, 10),
                p("signal_generate", 50, 5),
            ],
            vec![p("sched_process_exit", 3000, 10)],
        ];
        let sum = sum_programs(runs.iter().map(Vec::as_slice));
        assert_eq!(
            sum,
            vec![
                p("sched_process_exit", 4000, 20),
                p("signal_generate", 50, 5)
            ]
        );
        assert_eq!(ns_per_run(&sum, "sched_process_exit"), Some((200.0, 20)));
        assert_eq!(ns_per_run(&sum, "mark_victim"), None);
        // The legacy exit program counts as the exit hook.
        let legacy = [p("sched_process_exit_legacy", 900, 3)];
        assert_eq!(ns_per_run(&legacy, "sched_process_exit"), Some((300.0, 3)));
    }

    #[test]
    fn tables_align() {
        let t = table(
            "T",
            &["run", "x"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "22".into()],
            ],
        );
        assert_eq!(
            t,
            "T\n  run    | x\n  -------+---\n  a      | 1\n  longer | 22\n"
        );
    }

    #[test]
    fn checks_describe_their_verdict() {
        let c = Check::new("r", Some(1.134), "x", 2, Target::AtMost(1.10), "");
        assert_eq!(c.verdict_text(), "missed by 0.03x");
        assert_eq!(c.short(), "<= 1.1x missed by 0.03x");
        let c = Check::new("r", None, "x", 2, Target::AtMost(1.10), "no bpftrace");
        assert_eq!(c.verdict_text(), "n/a: no bpftrace");
        let c = Check::new("r", Some(0.0), "", 0, Target::AtMost(0.0), "");
        assert_eq!(c.verdict_text(), "met");
    }
}

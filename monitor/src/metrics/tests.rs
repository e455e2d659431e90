use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
};

use super::*;
use crate::event::{
    Cause, Exit, ExitStatus, Fork, Lost, Oom, Sender, Signal, SignalResult, Target, Trigger, Usage,
    Victim,
};

fn event(body: Body) -> Event {
    Event::new("2026-12-03T07:00:00Z".into(), 4242, "sleep".into(), body)
}

fn exit(cause: CauseKind) -> Event {
    event(Body::Exit(Exit {
        tid: 4242,
        thread_comm: None,
        ppid: 1,
        uid: 1000,
        status: ExitStatus::default(),
        usage: Usage::default(),
        duration_ms: 1.0,
        memcg_id: None,
        memcg_path: Some("/user.slice/session-1.scope".into()),
        cause: Cause::only(cause),
    }))
}

fn signal(signal: i32, count: u64) -> Event {
    event(Body::Signal(Signal {
        signal,
        signal_name: crate::signals::names::signal_name(signal),
        si_code: 0,
        si_code_name: Some("SI_USER"),
        result: SignalResult::Delivered,
        group: true,
        count,
        sender: Sender {
            pid: 77,
            tid: 77,
            comm: "kill".into(),
            uid: 1000,
            proc_id: Some("77:123".into()),
            session_id: Some("4000:99".into()),
            thread_comm: None,
        },
        target: Target {
            pid: 4242,
            tid: 4242,
            comm: "sleep".into(),
            thread_comm: None,
        },
    }))
}

fn oom() -> Event {
    event(Body::Oom(Oom {
        victim: Victim {
            pid: 4242,
            comm: "hog".into(),
            uid: Some(1000),
        },
        trigger: Trigger {
            pid: 4242,
            tid: 4242,
            comm: "hog".into(),
        },
        total_vm_kb: None,
        anon_rss_kb: None,
        file_rss_kb: None,
        shmem_rss_kb: None,
        pgtables_kb: None,
        oom_score_adj: None,
        memcg_id: Some(7),
        memcg_path: Some("/cm-test".into()),
    }))
}

fn lost(count: u64, reason: LostReason) -> Event {
    event(Body::Lost(Lost { count, reason }))
}

fn fork() -> Event {
    event(Body::Fork(Fork {
        tid: 4243,
        ppid: 4242,
        parent_tid: 4242,
    }))
}

/// The events of a small scene: three exits (two exited, one OOM-killed), its OOM kill,
/// a SIGTERM, an aggregate of 500 SIGUSR1, a real-time signal, two forks, losses.
fn scene() -> Vec<Event> {
    vec![
        fork(),
        fork(),
        exit(CauseKind::Exited),
        exit(CauseKind::Exited),
        signal(15, 1),
        signal(10, 500),
        signal(40, 3),
        oom(),
        exit(CauseKind::OomKilled),
        lost(12, LostReason::RingBufferFull),
        lost(3, LostReason::RingBufferFull),
        lost(1, LostReason::DecodeError),
        lost(2, LostReason::WatchMapFull),
    ]
}

fn snapshot() -> Snapshot {
    Snapshot {
        sessions_active: 2,
        sessions_tracked: 3,
        sessions_refused: 1,
        sessions_pruned: 4,
        processes: 150,
        ghosts_reaped: 5,
        notes: 6,
        sampled_sessions: 2,
        session_histories: 2,
        memcg_scans: 9,
        unplaced_signals: 1,
        subscribers: 3,
        subscriber_lost: 70,
        otlp_sent: 500,
        otlp_lost: 13,
        otlp_retries: 2,
        otlp_pending: 40,
        reports_written: 11,
        report_write_errors: 2,
        reports_suppressed: 8,
        log_write_errors: 4,
        events_log_write_errors: 3,
        programs: vec![
            ProgramStats {
                name: "sched_process_exit".into(),
                run_count: 1000,
                run_time_ns: 2_500_000_000,
            },
            ProgramStats {
                name: "signal_generate".into(),
                run_count: 7,
                run_time_ns: 1_000,
            },
        ],
        resident_memory_bytes: Some(25 * 1024 * 1024),
        cpu_seconds: Some(1.25),
    }
}

fn observed() -> Metrics {
    let m = Metrics::new("0.1.0");
    for e in scene() {
        m.observe(&e);
    }
    m.set_snapshot(&snapshot());
    m
}

/// The sample lines (`name{labels} value`) of an encoding, by series.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample has a value");
            (series.to_owned(), value.to_owned())
        })
        .collect()
}

const EXPECTED: &[(&str, &str)] = &[
    (r#"claude_monitor_build_info{version="0.1.0"}"#, "1"),
    (r#"claude_monitor_events_total{kind="fork"}"#, "2"),
    (r#"claude_monitor_events_total{kind="exit"}"#, "3"),
    (r#"claude_monitor_events_total{kind="signal"}"#, "3"),
    (r#"claude_monitor_events_total{kind="oom"}"#, "1"),
    (r#"claude_monitor_events_total{kind="lost"}"#, "4"),
    (r#"claude_monitor_events_total{kind="exec"}"#, "0"),
    (r#"claude_monitor_exits_total{cause="exited"}"#, "2"),
    (r#"claude_monitor_exits_total{cause="oom_killed"}"#, "1"),
    (r#"claude_monitor_exits_total{cause="killed"}"#, "0"),
    ("claude_monitor_oom_kills_total", "1"),
    (r#"claude_monitor_signals_total{signal="SIGTERM"}"#, "1"),
    (r#"claude_monitor_signals_total{signal="SIGUSR1"}"#, "500"),
    (r#"claude_monitor_signals_total{signal="other"}"#, "3"),
    (
        r#"claude_monitor_records_lost_total{stage="kernel_reserve"}"#,
        "15",
    ),
    (r#"claude_monitor_records_lost_total{stage="decode"}"#, "1"),
    (
        r#"claude_monitor_records_lost_total{stage="subscriber_queue"}"#,
        "70",
    ),
    (r#"claude_monitor_records_lost_total{stage="sink"}"#, "3"),
    ("claude_monitor_processes_unwatched_total", "2"),
    ("claude_monitor_sessions_active", "2"),
    ("claude_monitor_sessions_tracked", "3"),
    ("claude_monitor_sessions_refused_total", "1"),
    ("claude_monitor_sessions_pruned_total", "4"),
    ("claude_monitor_processes_tracked", "150"),
    ("claude_monitor_ghosts_reaped_total", "5"),
    ("claude_monitor_pending_notes", "6"),
    ("claude_monitor_sampled_sessions", "2"),
    ("claude_monitor_session_histories", "2"),
    ("claude_monitor_memcg_scans_total", "9"),
    ("claude_monitor_unplaced_signals", "1"),
    ("claude_monitor_subscribers", "3"),
    (r#"claude_monitor_records_lost_total{stage="export"}"#, "13"),
    ("claude_monitor_otlp_records_sent_total", "500"),
    ("claude_monitor_otlp_retries_total", "2"),
    ("claude_monitor_otlp_queued_records", "40"),
    ("claude_monitor_reports_written_total", "11"),
    ("claude_monitor_report_write_errors_total", "2"),
    ("claude_monitor_reports_suppressed_total", "8"),
    ("claude_monitor_log_write_errors_total", "4"),
    (
        r#"claude_monitor_kernel_program_runs_total{program="sched_process_exit"}"#,
        "1000",
    ),
    (
        r#"claude_monitor_kernel_program_runs_total{program="signal_generate"}"#,
        "7",
    ),
    (
        r#"claude_monitor_kernel_program_run_seconds_total{program="sched_process_exit"}"#,
        "2.5",
    ),
    (
        r#"claude_monitor_kernel_program_run_seconds_total{program="signal_generate"}"#,
        "1e-6",
    ),
    ("claude_monitor_agent_resident_memory_bytes", "26214400"),
    ("claude_monitor_agent_cpu_seconds_total", "1.25"),
];

/// Exact values after a known list of events and a snapshot, the same in both formats.
#[test]
fn counts_the_events_and_the_snapshot() {
    let m = observed();
    for format in [Format::OpenMetrics, Format::Text004] {
        let got = samples(&m.encode(format));
        for (series, value) in EXPECTED {
            let v = got
                .get(*series)
                .unwrap_or_else(|| panic!("{format:?}: no {series} in {got:#?}"));
            let num = |s: &str| s.parse::<f64>().expect("a number");
            assert_eq!(
                num(v),
                num(value),
                "{format:?}: {series} is {v}, not {value}"
            );
        }
    }
}

/// Counters only grow: a snapshot with a smaller total (a restarted subscriber count, a
/// program reloaded) leaves them as they were; gauges follow the snapshot.
#[test]
fn snapshot_totals_never_go_down() {
    let m = observed();
    m.set_snapshot(&Snapshot {
        programs: vec![ProgramStats {
            name: "sched_process_exit".into(),
            run_count: 1,
            run_time_ns: 1,
        }],
        ..Snapshot::default()
    });
    let got = samples(&m.encode(Format::Text004));
    assert_eq!(got["claude_monitor_reports_written_total"], "11");
    assert_eq!(
        got[r#"claude_monitor_kernel_program_runs_total{program="sched_process_exit"}"#],
        "1000"
    );
    assert_eq!(
        got[r#"claude_monitor_kernel_program_run_seconds_total{program="sched_process_exit"}"#],
        "2.5"
    );
    assert_eq!(got["claude_monitor_sessions_active"], "0");
    // Unreadable RSS and CPU keep the last value.
    assert_eq!(
        got["claude_monitor_agent_resident_memory_bytes"],
        "26214400"
    );
}

/// The format's own shape: OpenMetrics ends with `# EOF` and has `# UNIT` lines, 0.0.4
/// has neither and names counters with `_total` in HELP and TYPE.
#[test]
fn each_format_has_its_shape() {
    let m = observed();
    let om = m.encode(Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE claude_monitor_events counter\n"),
        "{om}"
    );
    assert!(
        om.contains("# UNIT claude_monitor_agent_cpu_seconds seconds\n"),
        "{om}"
    );
    assert!(
        om.contains("# TYPE claude_monitor_build_info gauge\n"),
        "{om}"
    );
    let text = m.encode(Format::Text004);
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE claude_monitor_events_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP claude_monitor_events_total Events written, by kind.\n"),
        "{text}"
    );
}

/// Every family has HELP and TYPE, every name the prefix and a base unit, every counter
/// `_total`, and no gauge ends in `_total`.
#[test]
fn names_follow_prometheus_conventions() {
    let text = observed().encode(Format::Text004);
    let mut helped = BTreeSet::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.trim().is_empty(), "{line}");
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            typed.insert(name.to_owned(), ty.to_owned());
        }
    }
    assert_eq!(helped, typed.keys().cloned().collect::<BTreeSet<_>>());
    for (name, ty) in &typed {
        assert!(name.starts_with("claude_monitor_"), "{name}");
        match ty.as_str() {
            "counter" => assert!(name.ends_with("_total"), "{name}"),
            "gauge" => assert!(!name.ends_with("_total"), "{name}"),
            other => panic!("{name}: type {other}"),
        }
        for abbreviation in ["_ms", "_us", "_ns", "_kb", "_mb", "_sec", "_secs"] {
            assert!(!name.contains(&format!("{abbreviation}_")), "{name}");
            assert!(!name.ends_with(abbreviation), "{name}");
        }
    }
    for series in samples(&text).keys() {
        let name = series.split('{').next().unwrap_or(series);
        assert!(typed.contains_key(name), "{name} has no TYPE");
    }
}

/// Label values come only from bounded sets, whatever the events carry (pids, session
/// ids, paths, odd signal numbers, odd program names): never an identifier or a path.
#[test]
fn label_values_are_bounded() {
    let m = Metrics::new("0.1.0");
    for e in scene() {
        m.observe(&e);
    }
    for sig in [-1, 0, 1, 9, 31, 32, 33, 64, 65, 1000, i32::MAX] {
        m.observe(&signal(sig, 1));
    }
    for cause in CauseKind::ALL {
        m.observe(&exit(*cause));
    }
    let mut snap = snapshot();
    for name in [
        "sched_process_exit",
        "/sys/fs/bpf/x",
        "4242",
        "on exit",
        "",
        &"a".repeat(65),
    ] {
        snap.programs.push(ProgramStats {
            name: name.into(),
            run_count: 1,
            run_time_ns: 1,
        });
    }
    m.set_snapshot(&snap);

    let kinds: BTreeSet<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let causes: BTreeSet<&str> = CauseKind::ALL.iter().map(|c| c.as_str()).collect();
    let stages: BTreeSet<&str> = LostStage::ALL.iter().map(|s| s.as_str()).collect();
    let mut signals: BTreeSet<String> = (1..=31)
        .filter_map(crate::signals::names::signal_name)
        .collect();
    signals.insert("other".into());
    // The kernel programs' names are identifiers of the code (lower case, digits, `_`).
    let program = |v: &str| {
        v == "other"
            || (v.len() <= 64
                && v.starts_with(|c: char| c.is_ascii_lowercase())
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    };

    for format in [Format::OpenMetrics, Format::Text004] {
        for series in samples(&m.encode(format)).keys() {
            let Some((_, labels)) = series.split_once('{') else {
                continue;
            };
            let labels = labels.strip_suffix('}').expect("labels end with }");
            for pair in labels.split(',') {
                let (name, value) = pair.split_once('=').expect("name=value");
                let value = value.trim_matches('"');
                let ok = match name {
                    "kind" => kinds.contains(value),
                    "cause" => causes.contains(value),
                    "stage" => stages.contains(value),
                    "signal" => signals.contains(value),
                    "program" => program(value),
                    "version" => value == "0.1.0",
                    other => panic!("{series}: unexpected label {other}"),
                };
                assert!(ok, "{format:?}: {series}: {name}={value:?} is not bounded");
                assert!(
                    !value.contains('/') && value.parse::<u64>().is_err(),
                    "{series}"
                );
            }
        }
    }
}

/// The lists that pre-create each series at 0 are the enums' every value.
#[test]
fn every_kind_and_cause_is_listed() {
    assert_eq!(KINDS.as_slice(), Kind::ALL);
    assert_eq!(CAUSES.as_slice(), CauseKind::ALL);
    assert_eq!(LostStage::EVERY.as_slice(), LostStage::ALL);
}

/// The daemon shares one `Metrics` between its event loop and the HTTP server.
#[test]
fn metrics_can_be_shared() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Metrics>();
    shared::<Snapshot>();
}

#[test]
fn signal_labels() {
    assert_eq!(signal_label(9), "SIGKILL");
    assert_eq!(signal_label(15), "SIGTERM");
    assert_eq!(signal_label(31), "SIGSYS");
    assert_eq!(signal_label(1), "SIGHUP");
    for other in [0, -3, 32, 34, 64, 99, i32::MIN, i32::MAX] {
        assert_eq!(signal_label(other), "other", "{other}");
    }
}

#[test]
fn negotiation() {
    use Format::*;
    let cases: &[(Option<&str>, Format)] = &[
        (None, Text004),
        (Some(""), Text004),
        (Some("*/*"), Text004),
        (Some("text/plain"), Text004),
        (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Text004),
        (Some("application/openmetrics-text"), OpenMetrics),
        (
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            OpenMetrics,
        ),
        // What Prometheus 2.42 sends.
        (
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            OpenMetrics,
        ),
        (Some("Application/OpenMetrics-Text;q=0.9"), OpenMetrics),
        (Some("application/openmetrics-text;q=0"), Text004),
        (Some("application/openmetrics-text;version=2.0.0"), Text004),
        (
            Some("application/openmetrics-text;version=\"1.0.0\""),
            OpenMetrics,
        ),
        (Some("text/plain, application/json"), Text004),
    ];
    for (accept, want) in cases {
        assert_eq!(Format::negotiate(*accept), *want, "{accept:?}");
    }
    assert_eq!(
        OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Text004.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

/// A fresh agent shows every bounded series at 0 and its version.
#[test]
fn a_fresh_agent_shows_zeros() {
    let got = samples(&Metrics::default().encode(Format::Text004));
    assert_eq!(
        got[&format!(
            "claude_monitor_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        "1"
    );
    assert_eq!(got[r#"claude_monitor_exits_total{cause="killed"}"#], "0");
    assert_eq!(got[r#"claude_monitor_events_total{kind="exit"}"#], "0");
    assert_eq!(
        got[r#"claude_monitor_records_lost_total{stage="sink"}"#],
        "0"
    );
    assert_eq!(got["claude_monitor_oom_kills_total"], "0");
}

/// promtool from `cargo xtask test` (Debian's `prometheus` package unpacked under
/// `target/prometheus/`, its path in `CLAUDE_MONITOR_PROMTOOL`), else one on `PATH`.
fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLAUDE_MONITOR_PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    let unpacked =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/prometheus/usr/bin/promtool");
    if unpacked.exists() {
        return Some(unpacked);
    }
    let on_path = Command::new("promtool").arg("--version").output();
    on_path
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("promtool"))
}

/// `promtool check metrics` on stdin: (exit code, its output).
fn check_metrics(promtool: &PathBuf, text: &str) -> (Option<i32>, String) {
    use std::io::Write as _;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), said)
}

/// Prometheus's own linter finds nothing in the 0.0.4 text; on OpenMetrics (which its
/// 0.0.4 parser reads, `# UNIT` and `# EOF` as comments) it only says that the `_total`
/// samples have no help text (their HELP names the family without `_total`). Required
/// under `CI=true`, skipped with a message elsewhere when no promtool is found.
#[test]
fn promtool_check_metrics_is_clean() {
    let Some(promtool) = promtool() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no promtool: `cargo xtask test` unpacks Debian's into \
             target/prometheus/ and sets CLAUDE_MONITOR_PROMTOOL"
        );
        eprintln!("skipped: no promtool (set CLAUDE_MONITOR_PROMTOOL, or run `cargo xtask test`)");
        return;
    };
    // The check is not vacuous: promtool does flag a counter without `_total`.
    let (code, said) = check_metrics(
        &promtool,
        "# HELP claude_monitor_x X.\n# TYPE claude_monitor_x counter\nclaude_monitor_x 1\n",
    );
    assert!(
        code != Some(0) && said.contains("_total"),
        "{code:?} {said}"
    );

    let m = observed();
    let (code, said) = check_metrics(&promtool, &m.encode(Format::Text004));
    assert_eq!((code, said.as_str()), (Some(0), ""), "text 0.0.4");

    let (code, said) = check_metrics(&promtool, &m.encode(Format::OpenMetrics));
    let problems: Vec<&str> = said
        .lines()
        .filter(|l| !l.ends_with("_total no help text"))
        .collect();
    assert!(
        problems.is_empty() && matches!(code, Some(0 | 3)),
        "OpenMetrics: exit {code:?}, {said}"
    );
}

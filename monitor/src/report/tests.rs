use std::{
    fs, io,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};

use super::*;
use crate::{
    event::{
        Ancestor, Attr, Cause, CauseKind, Exit, ExitStatus, KilledBy, Lost, LostReason, OomCause,
        SessionJson, ToolCallRef, Usage,
    },
    host::memcg::MemcgLevel,
    signals::names::signal_name,
};

const ROOT_PID: u32 = 1000;
const SESSION_ID: &str = "1000:500";

fn session() -> SessionJson {
    SessionJson {
        id: SESSION_ID.to_owned(),
        agent: "claude-code".to_owned(),
        root_pid: ROOT_PID,
        root_start: "2026-11-21T20:00:00.000000000Z".to_owned(),
        cwd: Some("/src/app".to_owned()),
        claude_session_id: Some("3f2a9c1e-0000-4000-8000-000000000001".to_owned()),
        version: Some("2.0.1".to_owned()),
    }
}

/// An ordinary exit (status 0) of a process inside the session, run by its Bash tool.
fn exit_event(pid: u32, comm: &str) -> Event {
    let mut e = Event::new(
        "2026-11-21T22:01:58.749139221Z".to_owned(),
        pid,
        comm.to_owned(),
        Body::Exit(Exit {
            tid: pid,
            thread_comm: None,
            ppid: 900,
            uid: 1000,
            status: ExitStatus {
                exit_code: Some(0),
                ..Default::default()
            },
            usage: Usage {
                peak_rss_kb: Some(9000),
                own_peak_rss_kb: Some(8000),
                utime_ms: Some(120.0),
                stime_ms: Some(8.0),
            },
            duration_ms: 2500.0,
            memcg_id: Some(4259),
            memcg_path: Some("/app/job".to_owned()),
            cause: Cause::only(CauseKind::Exited),
        }),
    );
    e.attr = Some(Attr {
        proc_id: Some(format!("{pid}:303575")),
        session: Some(session()),
        ancestry: Some(vec![
            Ancestor {
                pid,
                comm: comm.to_owned(),
            },
            Ancestor {
                pid: 900,
                comm: "bash".to_owned(),
            },
            Ancestor {
                pid: ROOT_PID,
                comm: "claude".to_owned(),
            },
        ]),
        tool_call: Some(ToolCallRef {
            id: "toolu_01".to_owned(),
            name: "Bash".to_owned(),
            command: Some("python3 train.py".to_owned()),
        }),
    });
    e
}

fn exit_mut(e: &mut Event) -> &mut Exit {
    match &mut e.body {
        Body::Exit(x) => x,
        _ => panic!("not an exit"),
    }
}

fn no_session(e: &mut Event) {
    e.attr = Some(Attr {
        proc_id: e.attr.as_ref().and_then(|a| a.proc_id.clone()),
        session: None,
        ancestry: None,
        tool_call: None,
    });
}

fn signaled(e: &mut Event, sig: u8, cause: CauseKind) {
    let x = exit_mut(e);
    x.status.exit_code = None;
    x.status.signal = Some(sig);
    x.status.signal_name = signal_name(i32::from(sig));
    x.cause = Cause::only(cause);
}

fn killed_by(sender_session: Option<&str>, same_session: bool, sig: i32) -> KilledBy {
    KilledBy {
        handled: false,
        pid: 665,
        comm: "provoke.sh".to_owned(),
        uid: 0,
        proc_id: Some("665:303474".to_owned()),
        session_id: sender_session.map(str::to_owned),
        same_session,
        signal: sig,
        si_code: 0,
    }
}

fn oom_event(pid: u32, comm: &str) -> Event {
    let mut e = exit_event(pid, comm);
    signaled(&mut e, 9, CauseKind::OomKilled);
    exit_mut(&mut e).cause.oom = Some(OomCause {
        trigger_pid: pid,
        trigger_comm: comm.to_owned(),
        anon_rss_kb: Some(1_677_722), // 1.6 GiB
        total_vm_kb: Some(2_000_000),
        memcg_id: Some(4259),
    });
    e
}

fn level(path: &str, limit: Option<u64>, peak: Option<u64>, failcnt: u64) -> MemcgLevel {
    MemcgLevel {
        path: path.to_owned(),
        limit_bytes: limit,
        usage_bytes: Some(100 << 20),
        peak_bytes: peak,
        oom_kills: Some(1),
        failcnt: Some(failcnt),
    }
}

const LIMIT_1_7_GIB: u64 = 1_825_361_101;

fn oom_chain() -> Vec<MemcgLevel> {
    vec![
        level("/app/job", None, Some(LIMIT_1_7_GIB), 0),
        level("/app", Some(LIMIT_1_7_GIB), Some(LIMIT_1_7_GIB), 3),
        level("/", None, None, 0),
    ]
}

fn sample(ts: &str, rss_kb: u64) -> Sample {
    Sample {
        ts: ts.to_owned(),
        rss_kb,
        cpu_percent: Some(97.5),
        processes: 4,
        threads: 12,
        top: Some(TopProcess {
            pid: 22606,
            comm: "python3".to_owned(),
            rss_kb: rss_kb / 2,
            cmdline: "python3 train.py".to_owned(),
        }),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-21T22:02:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Builds without reading the real /proc.
fn build_test(event: &Event, reason: Reason, ctx: Context) -> Report {
    build_at(
        event,
        reason,
        ctx,
        now(),
        Path::new("/nonexistent-proc-root-for-tests"),
    )
    .expect("an exit")
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "claude-monitor-report-{name}-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- worth_reporting ----

#[test]
fn ordinary_exits_are_not_reported() {
    let e = exit_event(22606, "python3");
    assert_eq!(worth_reporting(&e, false), None);
    assert_eq!(
        worth_reporting(&e, true),
        None,
        "status 0 is never a report"
    );
}

#[test]
fn nonzero_exit_only_with_the_flag_and_only_in_a_session() {
    let mut e = exit_event(22606, "python3");
    exit_mut(&mut e).status.exit_code = Some(3);
    assert_eq!(worth_reporting(&e, false), None);
    assert_eq!(worth_reporting(&e, true), Some(Reason::NonzeroExit));
    no_session(&mut e);
    assert_eq!(worth_reporting(&e, true), None);
}

#[test]
fn session_root_exit_is_reported_but_not_a_reused_pid() {
    let mut e = exit_event(ROOT_PID, "claude");
    e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
    assert_eq!(worth_reporting(&e, false), Some(Reason::SessionEnded));
    // The same pid with another start time is not the root.
    e.attr.as_mut().unwrap().proc_id = Some(format!("{ROOT_PID}:999999"));
    assert_eq!(worth_reporting(&e, false), None);
    // Unknown identity: the pid decides.
    e.attr.as_mut().unwrap().proc_id = None;
    assert_eq!(worth_reporting(&e, false), Some(Reason::SessionEnded));
    // The command of a `claude-monitor run` watched by the daemon: `command_ended`, also
    // for a clean exit.
    e.attr.as_mut().unwrap().session.as_mut().unwrap().agent = crate::event::RUN_AGENT.into();
    exit_mut(&mut e).status.exit_code = Some(0);
    assert_eq!(worth_reporting(&e, false), Some(Reason::CommandEnded));
}

#[test]
fn oom_kills_are_reported_inside_and_outside_sessions() {
    let mut e = oom_event(22606, "python3");
    assert_eq!(worth_reporting(&e, false), Some(Reason::OomKill));
    no_session(&mut e);
    assert_eq!(worth_reporting(&e, false), Some(Reason::OomKill));
    e.attr = None;
    assert_eq!(worth_reporting(&e, false), Some(Reason::OomKill));
}

#[test]
fn kills_from_outside_the_session_are_reported_from_inside_not() {
    let mut e = exit_event(22606, "python3");
    signaled(&mut e, 15, CauseKind::Killed);
    exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 15));
    assert_eq!(worth_reporting(&e, false), Some(Reason::KilledFromOutside));
    exit_mut(&mut e).cause.killed_by = Some(killed_by(Some("77:1"), false, 15));
    assert_eq!(worth_reporting(&e, false), Some(Reason::KilledFromOutside));
    exit_mut(&mut e).cause.killed_by = Some(killed_by(Some(SESSION_ID), true, 15));
    assert_eq!(worth_reporting(&e, false), None);
    // Sender unknown (sibling thread's exit_group): nothing says it came from outside.
    exit_mut(&mut e).cause.killed_by = None;
    assert_eq!(worth_reporting(&e, false), None);
    // Outside every session, a kill is not the daemon's business.
    exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 15));
    no_session(&mut e);
    assert_eq!(worth_reporting(&e, false), None);
}

#[test]
fn kernel_kills_crashes_and_core_dumps_are_reported() {
    let mut e = exit_event(22606, "python3");
    signaled(&mut e, 24, CauseKind::KilledByKernel);
    assert_eq!(worth_reporting(&e, false), Some(Reason::KilledByKernel));
    signaled(&mut e, 11, CauseKind::Crashed);
    assert_eq!(worth_reporting(&e, false), Some(Reason::Crashed));
    // A core dump from a signal sent inside the session is still a crash report.
    signaled(&mut e, 3, CauseKind::Killed);
    exit_mut(&mut e).cause.killed_by = Some(killed_by(Some(SESSION_ID), true, 3));
    exit_mut(&mut e).status.core_dumped = true;
    assert_eq!(worth_reporting(&e, false), Some(Reason::Crashed));
    signaled(&mut e, 11, CauseKind::Crashed);
    no_session(&mut e);
    assert_eq!(worth_reporting(&e, false), None);
}

#[test]
fn the_most_specific_reason_wins_for_a_session_root() {
    let mut e = exit_event(ROOT_PID, "claude");
    e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
    signaled(&mut e, 9, CauseKind::Killed);
    exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 9));
    assert_eq!(worth_reporting(&e, false), Some(Reason::KilledFromOutside));
}

#[test]
fn non_exit_events_are_not_reported() {
    let e = Event::new(
        "2026-11-21T22:01:58.749139221Z".to_owned(),
        1,
        "claude-monitor".to_owned(),
        Body::Lost(Lost {
            count: 3,
            reason: LostReason::RingBufferFull,
        }),
    );
    assert_eq!(worth_reporting(&e, true), None);
}

// ---- summary and build ----

#[test]
fn oom_summary_names_session_tool_cgroup_limit_and_memory() {
    let e = oom_event(22606, "python3");
    let ctx = Context {
        memcg: oom_chain(),
        alive: vec![(900, "bash".to_owned()), (ROOT_PID, "claude".to_owned())],
        ..Context::default()
    };
    let r = build_test(&e, Reason::OomKill, ctx);
    assert_eq!(
        r.summary,
        "python3 (pid 22606), run by Claude Code session 3f2a9c1e… in /src/app through its \
             Bash tool (`python3 train.py`), was killed by the kernel's OOM killer while holding \
             1.6 GiB of anonymous memory, when memory cgroup /app reached its 1.7 GiB limit; the \
             session is still alive."
    );
    assert_eq!(r.id, "20261121T220158Z-22606-oom");
    assert_eq!(r.reason, Reason::OomKill);
    assert_eq!(r.cause, CauseKind::OomKilled);
    let b = r.memcg.binding_limit.as_ref().unwrap();
    assert_eq!(
        (b.path.as_str(), b.bytes, b.own),
        ("/app", LIMIT_1_7_GIB, false)
    );
    let note = r.memcg.note.as_deref().unwrap();
    assert!(note.contains("ancestor cgroup /app"), "{note}");
    assert!(
        note.contains("/app/job, which has no limit of its own"),
        "{note}"
    );
    assert_eq!(r.memcg.path.as_deref(), Some("/app/job"));
    assert_eq!(r.memcg.levels.len(), 3);
    assert_eq!(r.oom.as_ref().unwrap().trigger_comm, "python3");
    assert!(r.explanation.as_ref().unwrap().title.starts_with("SIGKILL"));
    assert_eq!(r.event["kind"], "exit");
    assert_eq!(r.event["cause"], "oom_killed");
    assert!(r.complete);
}

#[test]
fn oom_summary_without_a_limit_blames_the_host() {
    let mut e = oom_event(801, "memhog");
    no_session(&mut e);
    let ctx = Context {
        memcg: vec![level("/", None, None, 0)],
        ..Context::default()
    };
    let r = build_test(&e, Reason::OomKill, ctx);
    assert_eq!(
        r.summary,
        "memhog (pid 801) was killed by the kernel's OOM killer while holding 1.6 GiB of \
             anonymous memory, because the host ran out of memory (no memory cgroup limit \
             applies to it)."
    );
    assert!(r.memcg.note.is_none());
    // A limit with no sign of having been reached is only named.
    let ctx = Context {
        memcg: vec![level("/big", Some(8 << 30), Some(1 << 30), 0)],
        ..Context::default()
    };
    let r = build_test(&e, Reason::OomKill, ctx);
    assert!(
        r.summary
            .ends_with("anonymous memory, in memory cgroup /big (limit 8.0 GiB)."),
        "{}",
        r.summary
    );
    assert!(r.memcg.binding_limit.as_ref().unwrap().own);
    // Without the victim's memory figures (older kernels) the sentence still reads.
    exit_mut(&mut e).cause.oom.as_mut().unwrap().anon_rss_kb = None;
    let r = build_test(&e, Reason::OomKill, Context::default());
    assert_eq!(
        r.summary,
        "memhog (pid 801) was killed by the kernel's OOM killer."
    );
}

#[test]
fn killed_summary_names_signal_and_sender() {
    let mut e = exit_event(669, "sleep");
    signaled(&mut e, 15, CauseKind::Killed);
    exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 15));
    let r = build_test(&e, Reason::KilledFromOutside, Context::default());
    assert!(
        r.summary
            .starts_with("sleep (pid 669), run by Claude Code session 3f2a9c1e…"),
        "{}",
        r.summary
    );
    assert!(
        r.summary.ends_with(
            "was killed by SIGTERM (terminated: a polite request to stop) sent by \
                 provoke.sh (pid 665, uid 0) from outside its session."
        ),
        "{}",
        r.summary
    );
    let k = r.killed_by.as_ref().unwrap();
    assert_eq!(k.signal_name.as_deref(), Some("SIGTERM"));
    assert_eq!(k.si_code_name.as_deref(), Some("SI_USER"));
    assert!(
        k.lineage.is_empty(),
        "no such sender under the test proc root"
    );
    assert_eq!(r.id, "20261121T220158Z-669-killed");

    exit_mut(&mut e).cause.killed_by = Some(killed_by(Some("77:1"), false, 15));
    let r = build_test(&e, Reason::KilledFromOutside, Context::default());
    assert!(
        r.summary.contains("from another session (77:1)"),
        "{}",
        r.summary
    );
    // The signal's short wording is not nested in a second pair of parentheses.
    signaled(&mut e, 9, CauseKind::Killed);
    exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 9));
    let r = build_test(&e, Reason::KilledFromOutside, Context::default());
    assert!(
        r.summary
            .contains("was killed by SIGKILL (killed: SIGKILL cannot be caught) sent by"),
        "{}",
        r.summary
    );
}

#[test]
fn terminated_summary_says_who_sent_it_and_what_the_handler_did() {
    let mut e = exit_event(ROOT_PID, "claude");
    e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
    let x = exit_mut(&mut e);
    x.status.exit_code = Some(143);
    x.cause = Cause {
        cause: CauseKind::Terminated,
        killed_by: Some(KilledBy {
            handled: true,
            ..killed_by(None, false, 15)
        }),
        oom: None,
    };
    assert_eq!(worth_reporting(&e, false), Some(Reason::KilledFromOutside));
    let r = build_test(&e, Reason::KilledFromOutside, Context::default());
    assert!(
        r.summary.ends_with(
            "was terminated by SIGTERM (terminated: a polite request to stop) sent by \
                 provoke.sh (pid 665, uid 0) from outside its session, and exited 143 from \
                 its handler after 2.5 s."
        ),
        "{}",
        r.summary
    );
    assert!(r.killed_by.as_ref().is_some_and(|k| k.handled));
    assert_eq!(r.id, format!("20261121T220158Z-{ROOT_PID}-term"));
    // From within the session (claude ending its own tool): the session-ended report
    // for a root, nothing for a tool.
    exit_mut(&mut e).cause.killed_by = Some(KilledBy {
        handled: true,
        ..killed_by(Some(SESSION_ID), true, 15)
    });
    assert_eq!(worth_reporting(&e, false), Some(Reason::SessionEnded));
    let mut tool = e.clone();
    tool.pid = 22606;
    tool.attr.as_mut().unwrap().proc_id = Some("22606:1".to_owned());
    assert_eq!(worth_reporting(&tool, false), None);
    // A report written before `handled` existed still reads.
    let mut old = serde_json::to_value(&r).expect("json");
    old["killed_by"]
        .as_object_mut()
        .expect("killed_by")
        .remove("handled");
    let back: Report = serde_json::from_value(old).expect("old report");
    assert!(back.killed_by.is_some_and(|k| !k.handled));
}

/// `claude --version` and friends: a Claude Code root that exits 0 without ever being a
/// conversation leaves no report; anything else about a root does.
#[test]
fn a_clean_exit_of_a_root_without_a_conversation_is_not_reported() {
    let mut e = exit_event(ROOT_PID, "claude");
    e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
    fn session(e: &mut Event) -> &mut SessionJson {
        e.attr.as_mut().unwrap().session.as_mut().unwrap()
    }
    assert!(session(&mut e).claude_session_id.is_some());
    assert_eq!(worth_reporting(&e, false), Some(Reason::SessionEnded));
    session(&mut e).claude_session_id = None;
    assert_eq!(worth_reporting(&e, false), None);
    exit_mut(&mut e).status.exit_code = Some(1);
    assert_eq!(worth_reporting(&e, false), Some(Reason::SessionEnded));
    exit_mut(&mut e).status.exit_code = Some(0);
    signaled(&mut e, 9, CauseKind::Killed);
    assert_eq!(worth_reporting(&e, false), Some(Reason::SessionEnded));
    // Another agent's root has no registry: its clean exit is still its end.
    let mut e = exit_event(ROOT_PID, "aider");
    e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
    session(&mut e).claude_session_id = None;
    session(&mut e).agent = "aider".to_owned();
    assert_eq!(worth_reporting(&e, false), Some(Reason::SessionEnded));
}

#[test]
fn crash_summary_uses_the_signal_wording_and_core_dump() {
    let mut e = exit_event(703, "python3");
    signaled(&mut e, 11, CauseKind::Crashed);
    exit_mut(&mut e).status.core_dumped = true;
    let r = build_test(&e, Reason::Crashed, Context::default());
    assert!(
        r.summary.ends_with(
            ", crashed with SIGSEGV (segmentation fault: invalid memory access) and dumped \
                 core."
        ),
        "{}",
        r.summary
    );
    assert_eq!(r.summary.matches("dumped core").count(), 1);
    assert_eq!(r.id, "20261121T220158Z-703-crash");
    assert!(r.explanation.as_ref().unwrap().title.starts_with("SIGSEGV"));
}

#[test]
fn session_ended_summary_says_root_status_lifetime_and_survivors() {
    let mut e = exit_event(ROOT_PID, "claude");
    e.attr.as_mut().unwrap().proc_id = Some(SESSION_ID.to_owned());
    e.attr.as_mut().unwrap().tool_call = None;
    exit_mut(&mut e).duration_ms = (2.0 * 3600.0 + 13.0 * 60.0 + 5.0) * 1000.0;
    let ctx = Context {
        alive: vec![(ROOT_PID, "claude".to_owned()), (1200, "node".to_owned())],
        ..Context::default()
    };
    let r = build_test(&e, Reason::SessionEnded, ctx);
    assert_eq!(
        r.summary,
        "claude (pid 1000), the root of Claude Code session 3f2a9c1e… in /src/app, exited \
             with status 0 (success) after 2 h 13 min; 1 of its processes is still running."
    );
    // The dead process itself is never listed as still running.
    assert_eq!(
        r.alive,
        vec![Ancestor {
            pid: 1200,
            comm: "node".to_owned()
        }]
    );
    assert_eq!(r.id, "20261121T220158Z-1000-exit0");
    assert_eq!(
        r.process.started.as_deref(),
        Some("2026-11-21T19:48:53.749139Z")
    );
}

#[test]
fn incomplete_when_records_were_lost() {
    let e = exit_event(22606, "python3");
    let r = build_test(
        &e,
        Reason::NonzeroExit,
        Context {
            complete: false,
            lost_nearby: 12,
            ..Context::default()
        },
    );
    assert!(!r.complete);
    assert!(render_text(&r).contains("12 record(s) were lost"));
    let r = build_test(&e, Reason::NonzeroExit, Context::default());
    assert!(r.complete);
    assert!(!render_text(&r).contains("may be incomplete"));
}

/// What users control (comm, argv, the tool command) reaches the text report escaped: no
/// escape sequence or forged line gets to a terminal; the JSON keeps the raw value.
#[test]
fn text_reports_escape_control_characters() {
    let hostile = "x\u{1b}]0;owned\u{7}\nFAKE: all good";
    let e = exit_event(22606, hostile);
    let ctx = Context {
        cmdline: Some(vec![hostile.to_owned(), "\u{1b}[2J".to_owned()]),
        ..Context::default()
    };
    let r = build_test(&e, Reason::SessionEnded, ctx);
    let text = render_text(&r);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("FAKE")), "{text}");
    assert!(
        text.contains("x\\u{1b}]0;owned\\u{7}\\nFAKE: all good"),
        "{text}"
    );
    assert_eq!(
        r.process.comm, hostile,
        "the report itself keeps the raw value"
    );
    let list = render_list(&[ReportSummary::from(&r)]);
    assert!(
        !list.contains('\u{1b}') && list.lines().count() == 2,
        "{list}"
    );
}

#[test]
fn text_has_every_section_in_order_with_the_facts() {
    let e = oom_event(22606, "python3");
    let ctx = Context {
        cmdline: Some(vec!["python3".to_owned(), "train.py".to_owned()]),
        memcg: oom_chain(),
        samples: (0..12)
            .map(|i| {
                sample(
                    &format!("2026-11-21T22:01:{:02}.000000000Z", 30 + 2 * i),
                    1000 + i,
                )
            })
            .collect(),
        alive: vec![(ROOT_PID, "claude".to_owned())],
        ..Context::default()
    };
    let r = build_test(&e, Reason::OomKill, ctx);
    let text = render_text(&r);
    let sections = [
        "What died\n",
        "Cause\n",
        "Evidence\n",
        "Memory cgroup\n",
        "Session\n",
        "Last resource samples\n",
        "Still running\n",
        "Explanation\n",
    ];
    let mut at = 0;
    for s in sections {
        let found = text[at..]
            .find(&format!("\n{s}"))
            .unwrap_or_else(|| panic!("section {s:?} missing or out of order:\n{text}"));
        at += found + 1;
    }
    assert!(text.starts_with("Exit report 20261121T220158Z-22606-oom:"));
    assert!(text.contains(&r.summary));
    assert!(text.contains("python3 train.py"));
    assert!(text.contains("python3 (22606) <- bash (900) <- claude (1000)"));
    assert!(text.contains("1.7 GiB at /app (an ancestor)"));
    assert!(text.contains("ancestor cgroup /app"));
    assert!(text.contains("anonymous RSS 1.6 GiB"));
    assert!(text.contains("3f2a9c1e-0000-4000-8000-000000000001"));
    // Only the last 10 samples are shown: 22:01:30 and 22:01:32 are not.
    assert!(!text.contains("2026-11-21 22:01:30"));
    assert!(text.contains("2026-11-21 22:01:34"));
    assert!(text.contains("2026-11-21 22:01:52"));
    assert_eq!(r.last_samples.len(), 12, "the JSON keeps every sample");
    assert!(text.contains("SIGKILL"));
    assert!(text.contains("What to do:"));
    assert!(!text.contains("may be incomplete"));
}

#[test]
fn text_of_a_report_outside_sessions_still_has_every_section() {
    let mut e = oom_event(801, "memhog");
    no_session(&mut e);
    let text = render_text(&build_test(&e, Reason::OomKill, Context::default()));
    for s in [
        "What died",
        "Cause",
        "Evidence",
        "Memory cgroup",
        "Session",
        "Last resource samples",
        "Still running",
        "Explanation",
    ] {
        assert!(text.contains(&format!("\n{s}\n")), "{s} missing:\n{text}");
    }
    assert!(text.contains("none (outside every session)"));
    assert!(text.contains("not read"));
}

// ---- sender lineage ----

fn fake_stat(root: &Path, pid: u32, comm: &str, ppid: u32, start: u64) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).unwrap();
    let middle = vec!["0"; 17].join(" ");
    fs::write(
        dir.join("stat"),
        format!("{pid} ({comm}) S {ppid} {middle} {start} 0 0\n"),
    )
    .unwrap();
}

#[test]
fn sender_lineage_follows_parents_only_for_the_same_process() {
    let root = temp_dir("lineage");
    fake_stat(&root, 665, "provoke) sh", 600, 303474);
    fake_stat(&root, 600, "bash", 1, 300000);
    fake_stat(&root, 1, "init", 0, 1);
    let k = killed_by(None, false, 15);
    assert_eq!(
        sender_lineage(&root, &k),
        vec![
            (665, "provoke) sh".to_owned()),
            (600, "bash".to_owned()),
            (1, "init".to_owned())
        ]
    );
    // Pid reused since: another start time, no lineage.
    fake_stat(&root, 665, "other", 600, 999);
    assert!(sender_lineage(&root, &k).is_empty());
    // Unknown identity: nothing to verify against.
    let mut unknown = k.clone();
    unknown.proc_id = None;
    assert!(sender_lineage(&root, &unknown).is_empty());
    // A cycle in bad data ends.
    fake_stat(&root, 5, "a", 6, 1);
    fake_stat(&root, 6, "b", 5, 1);
    assert_eq!(proc_lineage(&root, 5, 16).len(), 2);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn build_reads_the_sender_lineage() {
    let root = temp_dir("build-lineage");
    fake_stat(&root, 665, "provoke.sh", 1, 303474);
    fake_stat(&root, 1, "init", 0, 1);
    let mut e = exit_event(669, "sleep");
    signaled(&mut e, 9, CauseKind::Killed);
    exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 9));
    let r = build_at(
        &e,
        Reason::KilledFromOutside,
        Context::default(),
        now(),
        &root,
    )
    .expect("exit");
    assert_eq!(
        r.killed_by.as_ref().unwrap().lineage,
        vec![
            Ancestor {
                pid: 665,
                comm: "provoke.sh".to_owned()
            },
            Ancestor {
                pid: 1,
                comm: "init".to_owned()
            }
        ]
    );
    assert!(render_text(&r).contains("provoke.sh (665) <- init (1)"));
    fs::remove_dir_all(&root).unwrap();
}

// ---- store ----

fn at(mut e: Event, ts: &str) -> Event {
    e.ts = ts.to_owned();
    e
}

mod store;

/// A report as a journal entry: the sentence, the kind's fixed id, its priority, and the
/// facts as fields; a comm with an escape sequence is made printable in MESSAGE only.
#[test]
fn a_report_becomes_one_journal_entry() {
    let mut e = exit_event(4242, "make\u{1b}[2J");
    signaled(&mut e, 9, CauseKind::Killed);
    exit_mut(&mut e).cause.killed_by = Some(killed_by(None, false, 9));
    let r = build_test(&e, Reason::KilledFromOutside, Context::default());
    let fields = journal_fields(&r);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        get("MESSAGE"),
        Some(r.summary.replace('\u{1b}', "\\u{1b}").as_str())
    );
    assert!(!get("MESSAGE").unwrap_or_default().contains('\u{1b}'));
    assert_eq!(
        get("MESSAGE_ID"),
        Some(message_id(Reason::KilledFromOutside))
    );
    assert_eq!(get("PRIORITY"), Some("4"));
    assert_eq!(get("CLAUDE_MONITOR_PID"), Some("4242"));
    assert_eq!(get("CLAUDE_MONITOR_COMM"), Some("make\u{1b}[2J"));
    assert_eq!(get("CLAUDE_MONITOR_SIGNAL"), Some("SIGKILL"));
    assert_eq!(get("CLAUDE_MONITOR_CAUSE"), Some("killed"));
    assert_eq!(get("CLAUDE_MONITOR_REASON"), Some("killed_from_outside"));
    assert!(get("CLAUDE_MONITOR_SESSION_ID").is_some());
    assert!(get("CLAUDE_MONITOR_KILLER_PID").is_some());
    for (name, _) in &fields {
        assert!(crate::output::journal::valid_name(name), "{name}");
    }
    // Every kind has its own id, 128 bits in hex.
    let ids: std::collections::BTreeSet<&str> =
        Reason::ALL.iter().map(|r| message_id(*r)).collect();
    assert_eq!(ids.len(), Reason::ALL.len());
    assert!(
        ids.iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    );
}

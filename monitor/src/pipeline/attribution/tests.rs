use std::path::PathBuf;

use monitor_common::{DISPOSITION_HANDLER, Oom, Signal, SignalDeliver};

use super::{tools::shell_script, *};
use crate::{
    claude::transcript,
    event::{Cause, CauseKind},
    signals::names::SI_KERNEL,
};

const SESSION_EXE: &str = "/home/u/.local/share/claude/versions/9.9.9";

fn captured(argv: &[&str], truncated: bool) -> ExecArgv {
    ExecArgv {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        truncated,
    }
}

fn proc_facts(exe: Option<&str>, comm: &str, argv: &[&str]) -> ProcFacts {
    ProcFacts {
        pid: 7,
        comm: comm.into(),
        exe: exe.map(PathBuf::from),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn facts(proc: Option<ProcFacts>, captured: Option<&ExecArgv>) -> ProcFacts {
    exec_facts(7, "9.9.9".into(), SESSION_EXE.into(), proc, captured)
}

/// The flaky case: Claude Code's `rg` helper gone before /proc could be read.
#[test]
fn gone_rg_helper_is_not_a_session() {
    let rg = captured(&["rg", "--files", "/home/u/src"], false);
    let f = facts(None, Some(&rg));
    assert_eq!(f.exe.as_deref(), Some(std::path::Path::new(SESSION_EXE)));
    assert_eq!(f.comm, "9.9.9");
    assert_eq!(f.argv, ["rg", "--files", "/home/u/src"]);
    assert_eq!(detect::detect_claude_code(&f), None);
    // A zombie's /proc (comm only) is no better than none.
    let zombie = proc_facts(None, "9.9.9", &[]);
    let f = facts(Some(zombie), Some(&rg));
    assert_eq!(f.argv[0], "rg");
    assert_eq!(detect::detect_claude_code(&f), None);
    // While a gone session is still one.
    let session = captured(&["claude", "-p", "hi"], false);
    let f = facts(None, Some(&session));
    assert!(detect::detect_claude_code(&f).is_some());
}

/// A process read inside execve (its exe set, its argument area not yet): the agent does
/// not wait for /proc (it never sleeps on its event loop); the exec record's argv decides.
#[test]
fn mid_exec_cmdline_takes_the_captured_argv() {
    let mid_exec = proc_facts(Some(SESSION_EXE), "9.9.9", &[]);
    let rg = captured(&["rg", "--files", "/home/u/src"], false);
    let f = facts(Some(mid_exec), Some(&rg));
    assert_eq!(f.argv, ["rg", "--files", "/home/u/src"]);
    assert_eq!(
        detect::detect_claude_code(&f),
        None,
        "the rg helper, not a session"
    );
}

#[test]
fn gone_process_keeps_only_whole_arguments() {
    let cut = captured(&["bash", "-c", "source /tmp/snap && ev"], true);
    let f = facts(None, Some(&cut));
    assert_eq!(f.argv, ["bash", "-c"]);
    // Nothing captured, nothing readable: the record's comm and path alone.
    let f = exec_facts(7, "true".into(), String::new(), None, None);
    assert_eq!(f, proc_facts(None, "true", &[]));
    assert_eq!(f.pid, 7);
}

#[test]
fn live_process_keeps_proc_facts_but_the_captured_argv0() {
    let live = proc_facts(Some(SESSION_EXE), "9.9.9", &["claude", "--resume", "x"]);
    // Nothing captured: /proc as it is.
    assert_eq!(facts(Some(live.clone()), None), live);
    // The same argv[0]: unchanged.
    let same = captured(&["claude", "--res"], true);
    assert_eq!(facts(Some(live.clone()), Some(&same)), live);
    // /proc shows another argv[0] than the exec had (a rewritten title, a later
    // exec): the exec's wins, the rest stays /proc's, which is not cut.
    let rg = captured(&["rg", "-n"], true);
    let f = facts(Some(live.clone()), Some(&rg));
    assert_eq!(f.argv, ["rg", "--resume", "x"]);
    assert_eq!(f.exe, live.exe);
    assert_eq!(detect::detect_claude_code(&f), None);
    // /proc's cmdline empty (caught while exec'ing again): the captured arguments.
    let empty = proc_facts(Some(SESSION_EXE), "9.9.9", &[]);
    let f = facts(Some(empty), Some(&captured(&["rg", "x"], false)));
    assert_eq!(f.argv, ["rg", "x"]);
    // An argv[0] cut short is not used.
    let partial = captured(&["r"], true);
    assert_eq!(facts(Some(live.clone()), Some(&partial)), live);
}

/// The wire records are plain integers and byte arrays, so all-zero is a valid value;
/// tests set the fields they need (and keep compiling when fields are added).
fn zeroed<T: Copy>() -> T {
    // SAFETY: only used for monitor_common's #[repr(C)] records, which hold integers
    // and integer arrays only.
    unsafe { std::mem::zeroed() }
}

const SEC: u64 = 1_000_000_000;
/// The session root, a tool process in it, a process outside.
const ROOT: u32 = 100;
const TOOL: u32 = 101;
const OUTSIDER: u32 = 900;

fn attributor() -> Attributor {
    let mut a = Attributor::new(
        Detector::new(Vec::new()).expect("no rules"),
        Registry::new(Vec::new()),
        Clock::fixed(0),
        4,
    );
    a.table.insert_existing(
        ProcId {
            pid: ROOT,
            start: 1,
        },
        1,
        "claude".into(),
    );
    a.table.insert_existing(
        ProcId {
            pid: OUTSIDER,
            start: 2,
        },
        1,
        "bash".into(),
    );
    a.sessions.insert(
        0,
        Session::new(
            crate::claude::CLAUDE_CODE.into(),
            ProcId {
                pid: ROOT,
                start: 1,
            },
            None,
            None,
            None,
        ),
    );
    a.next_session = 1;
    a.table.set_session(ROOT, 0);
    a.table.fork(
        ProcId {
            pid: TOOL,
            start: 3,
        },
        ROOT,
        "bash".into(),
    );
    a
}

fn signal(a: &mut Attributor, target: u32, sender: u32, sig: i32, si_code: i32) {
    let mut s: Signal = zeroed();
    s.header.pid = target;
    s.sig = sig;
    s.si_code = si_code;
    s.sender_pid = sender;
    s.sender_comm[..4].copy_from_slice(b"bash");
    a.on_signal(&s);
}

fn deliver(a: &mut Attributor, target: u32, sig: i32, disposition: u32, at: u64) {
    let mut d: SignalDeliver = zeroed();
    d.header.pid = target;
    d.header.ts_ns = at;
    d.sig = sig;
    d.disposition = disposition;
    a.on_deliver(&d);
}

/// `status` as wait(2) encodes it: `code << 8`, or the signal number.
fn exit(a: &mut Attributor, pid: u32, status: u32, at: u64) -> Cause {
    let mut e: Exit = zeroed();
    e.header.pid = pid;
    e.header.ts_ns = at;
    e.exit_status = status;
    a.cause(&e)
}

fn code(c: u32) -> u32 {
    c << 8
}

/// (cause, sender pid, signal, same_session, handled) of a cause, for compact tables.
fn brief(c: &Cause) -> (&'static str, Option<(u32, i32, bool, bool)>) {
    (
        c.cause.as_str(),
        c.killed_by
            .as_ref()
            .map(|k| (k.pid, k.signal, k.same_session, k.handled)),
    )
}

/// An exit whose status the kernel could not read: `unknown`, not a guess from the notes;
/// an OOM kill is still known.
#[test]
fn an_unread_exit_status_is_an_unknown_cause() {
    let mut a = attributor();
    signal(&mut a, TOOL, OUTSIDER, 9, 0);
    let mut e: Exit = zeroed();
    e.header.pid = TOOL;
    e.header.ts_ns = SEC;
    e.flags = monitor_common::EXIT_FLAG_NO_STATUS;
    assert_eq!(a.cause(&e).cause, CauseKind::Unknown);

    let mut o: Oom = zeroed();
    o.header.pid = TOOL;
    a.on_oom(&o, None, None);
    let c = a.cause(&e);
    assert_eq!((c.cause, c.oom.is_some()), (CauseKind::OomKilled, true));
}

#[test]
fn cause_table() {
    use monitor_common::{DISPOSITION_DEFAULT, DISPOSITION_IGNORED};
    const SI_USER: i32 = 0;
    const SEGV_MAPERR: i32 = 1;
    // (what, events before the exit, exit status, exit time, expected)
    type Setup = fn(&mut Attributor);
    type Expected = (&'static str, Option<(u32, i32, bool, bool)>);
    let cases: &[(&str, Setup, u32, u64, Expected)] = &[
        ("plain exit", |_| {}, code(0), SEC, ("exited", None)),
        (
            "exit code, no signal",
            |_| {},
            code(143),
            SEC,
            ("exited", None),
        ),
        (
            "SIGTERM from outside, default action",
            |a| {
                signal(a, TOOL, OUTSIDER, 15, SI_USER);
                deliver(a, TOOL, 15, DISPOSITION_DEFAULT, SEC / 2);
            },
            15,
            SEC,
            ("killed", Some((OUTSIDER, 15, false, false))),
        ),
        (
            "SIGKILL from the session root",
            |a| signal(a, TOOL, ROOT, 9, SI_USER),
            9,
            SEC,
            ("killed", Some((ROOT, 9, true, false))),
        ),
        ("SIGKILL, no sender seen", |_| {}, 9, SEC, ("killed", None)),
        (
            "SIGKILL from the kernel",
            |a| signal(a, TOOL, OUTSIDER, 9, SI_KERNEL),
            9,
            SEC,
            ("killed_by_kernel", None),
        ),
        (
            "SIGSEGV from a fault",
            |a| signal(a, TOOL, TOOL, 11, SEGV_MAPERR),
            11,
            SEC,
            ("crashed", None),
        ),
        (
            "SIGABRT, no record",
            |_| {},
            6 | 0x80,
            SEC,
            ("crashed", None),
        ),
        (
            "SIGSEGV sent by another process",
            |a| signal(a, TOOL, OUTSIDER, 11, SI_USER),
            11,
            SEC,
            ("killed", Some((OUTSIDER, 11, false, false))),
        ),
        (
            "OOM kill",
            |a| {
                let mut o: Oom = zeroed();
                o.header.pid = TOOL;
                a.on_oom(&o, Some(1), Some(2));
                signal(a, TOOL, OUTSIDER, 9, SI_KERNEL);
            },
            9,
            SEC,
            ("oom_killed", None),
        ),
        (
            "handled SIGTERM, exit 143 (the real CLI)",
            |a| {
                signal(a, ROOT, OUTSIDER, 15, SI_USER);
                deliver(a, ROOT, 15, DISPOSITION_HANDLER, SEC);
            },
            code(143),
            SEC + SEC / 10,
            ("terminated", Some((OUTSIDER, 15, false, true))),
        ),
        (
            "handled SIGTERM, exit 143 after 30 s of clean-up",
            |a| {
                signal(a, ROOT, OUTSIDER, 15, SI_USER);
                deliver(a, ROOT, 15, DISPOSITION_HANDLER, SEC);
            },
            code(143),
            31 * SEC,
            ("terminated", Some((OUTSIDER, 15, false, true))),
        ),
        (
            "handled SIGTERM, exit 143 after more than a minute",
            |a| {
                signal(a, ROOT, OUTSIDER, 15, SI_USER);
                deliver(a, ROOT, 15, DISPOSITION_HANDLER, SEC);
            },
            code(143),
            62 * SEC,
            ("exited", None),
        ),
        (
            "handled SIGINT, exit 0 at once",
            |a| {
                signal(a, TOOL, ROOT, 2, SI_USER);
                deliver(a, TOOL, 2, DISPOSITION_HANDLER, SEC);
            },
            code(0),
            2 * SEC,
            ("terminated", Some((ROOT, 2, true, true))),
        ),
        (
            "handled SIGINT, exit 0 much later: its own decision",
            |a| {
                signal(a, TOOL, ROOT, 2, SI_USER);
                deliver(a, TOOL, 2, DISPOSITION_HANDLER, SEC);
            },
            code(0),
            10 * SEC,
            ("exited", None),
        ),
        (
            "handled SIGTERM it sent itself",
            |a| {
                signal(a, TOOL, TOOL, 15, SI_USER);
                deliver(a, TOOL, 15, DISPOSITION_HANDLER, SEC);
            },
            code(143),
            SEC,
            ("exited", None),
        ),
        (
            "ignored SIGTERM, then an exit",
            |a| {
                signal(a, TOOL, OUTSIDER, 15, SI_USER);
                deliver(a, TOOL, 15, DISPOSITION_IGNORED, SEC);
            },
            code(143),
            SEC,
            ("exited", None),
        ),
        (
            "handled SIGCHLD (not a terminating signal)",
            |a| {
                signal(a, TOOL, OUTSIDER, 17, SI_USER);
                deliver(a, TOOL, 17, DISPOSITION_HANDLER, SEC);
            },
            code(0),
            SEC,
            ("exited", None),
        ),
        (
            "handled SIGTERM, cleaned up, re-raised",
            |a| {
                signal(a, TOOL, OUTSIDER, 15, SI_USER);
                deliver(a, TOOL, 15, DISPOSITION_HANDLER, SEC);
                signal(a, TOOL, TOOL, 15, SI_USER);
                deliver(a, TOOL, 15, DISPOSITION_DEFAULT, SEC);
            },
            15,
            SEC,
            ("killed", Some((OUTSIDER, 15, false, true))),
        ),
        (
            "handled SIGTERM, then killed by another SIGKILL",
            |a| {
                signal(a, TOOL, OUTSIDER, 15, SI_USER);
                deliver(a, TOOL, 15, DISPOSITION_HANDLER, SEC);
                signal(a, TOOL, ROOT, 9, SI_USER);
            },
            9,
            SEC,
            ("killed", Some((ROOT, 9, true, false))),
        ),
    ];
    for (what, setup, status, at, expected) in cases {
        let mut a = attributor();
        setup(&mut a);
        let pid = [ROOT, TOOL]
            .into_iter()
            .find(|&p| a.signals.contains_key(&p) || a.ooms.contains_key(&p))
            .unwrap_or(TOOL);
        let cause = exit(&mut a, pid, *status, *at);
        assert_eq!(brief(&cause), *expected, "{what}: {cause:?}");
        // Nothing about the process is left behind for its successor.
        assert!(
            !a.signals.contains_key(&pid) && !a.handled.contains_key(&pid),
            "{what}"
        );
    }
}

/// The handled signal is told with its sender's identity, as a kill is.
#[test]
fn a_handled_termination_names_the_sender() {
    let mut a = attributor();
    signal(&mut a, ROOT, OUTSIDER, 15, 0);
    deliver(&mut a, ROOT, 15, DISPOSITION_HANDLER, SEC);
    let cause = exit(&mut a, ROOT, code(143), SEC);
    let k = cause.killed_by.expect("sender");
    assert_eq!(
        (
            k.comm.as_str(),
            k.proc_id.as_deref(),
            k.session_id,
            k.si_code
        ),
        ("bash", Some("900:2"), None, 0)
    );
    assert!(cause.oom.is_none());
}

/// A session with an empty transcript and a tool wrapper `TOOL` (started
/// 2026-11-21T14:00:00.03Z) running `sleep 1; exit 3`, not matched yet; and the
/// transcript lines the CLI writes late for it.
fn late_tool_session(home: &crate::testutil::TempDir) -> (Attributor, PathBuf, String) {
    let script = "source /h/.claude/shell-snapshots/snapshot-bash-1-x.sh 2>/dev/null || \
                      true && eval 'sleep 1; exit 3' < /dev/null && pwd -P >| /tmp/claude-1-cwd";
    late_tool_session_with(home, &["/bin/bash", "-c", script], true)
}

/// [`late_tool_session`] with the wrapper's argv as the agent read it.
fn late_tool_session_with(
    home: &crate::testutil::TempDir,
    argv: &[&str],
    argv_whole: bool,
) -> (Attributor, PathBuf, String) {
    let config = home.path().join(".claude");
    let sid = "3f2a9c1e-0000-4000-8000-000000000001";
    let cwd = "/w/app";
    let transcript = config
        .join("projects")
        .join(transcript::project_dir_name(std::path::Path::new(cwd)))
        .join(format!("{sid}.jsonl"));
    std::fs::create_dir_all(transcript.parent().expect("dir")).expect("mkdir");
    std::fs::write(&transcript, "").expect("empty transcript");
    let mut a = attributor();
    let s = a.sessions.get_mut(&0).expect("session 0");
    s.claude_session_id = Some(sid.into());
    s.cwd = Some(cwd.into());
    s.config_dir = Some(config.clone());
    // The clock makes the wrapper's start (tick 3) 2026-11-21T14:00:00.03Z.
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-21T14:00:00Z")
        .expect("ts")
        .timestamp_nanos_opt()
        .expect("ns");
    a.clock = Clock::fixed(i128::from(start));
    let facts = ProcFacts {
        pid: TOOL,
        comm: "bash".into(),
        exe: Some("/usr/bin/bash".into()),
        argv: argv.iter().map(|a| a.to_string()).collect(),
    };
    a.maybe_tool_call(TOOL, &facts, argv_whole);
    let lines = [
        serde_json::json!({"type":"assistant","timestamp":"2026-11-21T14:00:00.010Z",
                "message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01X",
                "name":"Bash","input":{"command":"sleep 1; exit 3"}}]}}),
        serde_json::json!({"type":"user","timestamp":"2026-11-21T14:00:01.100Z",
                "message":{"role":"user","content":[{"type":"tool_result",
                "tool_use_id":"toolu_01X","content":"","is_error":true}]}}),
    ]
    .map(|l| l.to_string() + "\n")
    .concat();
    (a, transcript, lines)
}

/// The CLI writes a call to its transcript asynchronously: the wrapper starts before
/// the call is there, and its processes (and itself) still get it on later events; a
/// child forked before the match gets it too.
#[test]
fn a_tool_call_written_after_its_wrapper_started_is_still_found() {
    let home = crate::testutil::TempDir::new("attr-tool");
    let (mut a, transcript, lines) = late_tool_session(&home);
    assert_eq!(a.attr(TOOL).tool_call, None, "not in the transcript yet");
    a.table
        .fork(ProcId { pid: 102, start: 4 }, TOOL, "sleep".into());
    assert_eq!(a.attr(102).tool_call, None);
    // The call and its result arrive together, after the wrapper started.
    std::fs::write(&transcript, lines).expect("transcript");
    let call = a.attr(102).tool_call.expect("found through the wrapper");
    assert_eq!(
        (
            call.id.as_str(),
            call.name.as_str(),
            call.command.as_deref()
        ),
        ("toolu_01X", "Bash", Some("sleep 1; exit 3"))
    );
    assert_eq!(a.attr(TOOL).tool_call, Some(call.clone()));
    // A child forked from now on inherits it at fork.
    a.table
        .fork(ProcId { pid: 103, start: 5 }, TOOL, "true".into());
    assert_eq!(
        a.table.get(103).and_then(|p| p.tool_call.clone()),
        Some(call)
    );
    // Processes outside the tool's tree never get it.
    assert_eq!(a.attr(ROOT).tool_call, None);
    assert_eq!(a.attr(OUTSIDER).tool_call, None);
}

/// A wrapper of a few milliseconds: gone before /proc was read, its captured argv cut
/// before the command. It is still a wrapper (a `-c` shell the session's root started),
/// matched by time to the one unclaimed Bash call; never when the capture was whole
/// (then its script decides), nor below the root's children, nor among several calls.
#[test]
fn a_wrapper_cut_short_is_matched_by_time() {
    let cut = [
        "/bin/bash",
        "-c",
        "source /tmp/cm-cli-1-nothome/home/.claude/shell-snaps",
    ];
    let home = crate::testutil::TempDir::new("attr-cut");
    let (mut a, transcript, lines) = late_tool_session_with(&home, &cut, false);
    assert_eq!(
        a.pending_wrapper(TOOL),
        Some(ProcId {
            pid: TOOL,
            start: 3
        })
    );
    std::fs::write(&transcript, &lines).expect("transcript");
    let call = a.attr(TOOL).tool_call.expect("matched by time");
    assert_eq!(call.id, "toolu_01X");

    // A complete argv that does not look like a wrapper is no wrapper.
    let home = crate::testutil::TempDir::new("attr-cut-whole");
    let (a, _, _) = late_tool_session_with(&home, &["/bin/sh", "-c", "exit 3"], true);
    assert_eq!(a.pending_wrapper(TOOL), None);

    // Two calls in flight: which is which cannot be told by time.
    let home = crate::testutil::TempDir::new("attr-cut-two");
    let (mut a, transcript, _) = late_tool_session_with(&home, &cut, false);
    let tool_use = |id: &str| {
        serde_json::json!({"type":"assistant","timestamp":"2026-11-21T14:00:00.010Z",
                "message":{"role":"assistant","content":[{"type":"tool_use","id":id,
                "name":"Bash","input":{"command":"make"}}]}})
        .to_string()
            + "\n"
    };
    std::fs::write(&transcript, tool_use("toolu_A") + &tool_use("toolu_B")).expect("w");
    assert_eq!(a.attr(TOOL).tool_call, None);
    // Once one of them is claimed by another wrapper, the other is this one's.
    a.sessions
        .get_mut(&0)
        .expect("session 0")
        .claimed
        .push_back("toolu_A".into());
    assert_eq!(a.attr(TOOL).tool_call.map(|c| c.id), Some("toolu_B".into()));

    // A cut `-c` shell deeper in a tool's tree is not a wrapper of its own.
    let home = crate::testutil::TempDir::new("attr-cut-deep");
    let (mut a, _, _) = late_tool_session_with(&home, &["/bin/bash", "-c", "true"], true);
    a.table
        .fork(ProcId { pid: 102, start: 4 }, TOOL, "bash".into());
    let facts = ProcFacts {
        pid: 102,
        comm: "bash".into(),
        exe: None,
        argv: cut.map(String::from).to_vec(),
    };
    a.maybe_tool_call(102, &facts, false);
    assert_eq!(a.pending_wrapper(102), None);
}

use crate::event::Event;

fn event_of(a: &mut Attributor, pid: u32, count: u64) -> Event {
    let mut e = Event::new(
        String::new(),
        pid,
        "x".into(),
        crate::event::Body::Lost(crate::event::Lost {
            count,
            reason: crate::event::LostReason::DecodeError,
        }),
    );
    e.attr = Some(a.attr(pid));
    e
}

fn counts(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| match &e.body {
            crate::event::Body::Lost(l) => l.count,
            _ => 0,
        })
        .collect()
}

/// The engine's hold: events of a tool whose call is not written yet wait for it, go
/// out in their order with the call once it is there, and a wrapper whose call never
/// comes is given up at its deadline (its events go out unchanged, later ones at once).
#[test]
fn held_tool_events_get_the_call_written_late() {
    use crate::pipeline::hold::{HOLD_FOR, Hold, RETRY_EVERY};
    let home = crate::testutil::TempDir::new("attr-hold");
    let (mut a, transcript, lines) = late_tool_session(&home);
    a.table
        .fork(ProcId { pid: 102, start: 4 }, TOOL, "sleep".into());
    let wrapper = a.pending_wrapper(102).expect("pending through its parent");
    assert_eq!(wrapper.pid, TOOL);
    assert_eq!(a.pending_wrapper(ROOT), None, "the root is no tool");
    assert_eq!(a.pending_wrapper(OUTSIDER), None);
    let mut hold = Hold::default();
    let t0 = std::time::Instant::now();
    for (pid, n) in [(TOOL, 1), (102, 2), (TOOL, 3)] {
        let e = event_of(&mut a, pid, n);
        assert!(hold.hold(wrapper, e, t0).is_none());
    }
    assert!(hold.release(&mut a, t0 + RETRY_EVERY, false).is_empty());
    std::fs::write(&transcript, lines).expect("transcript");
    // Not looked for again before RETRY_EVERY has passed.
    assert!(hold.release(&mut a, t0 + RETRY_EVERY, false).is_empty());
    let out = hold.release(&mut a, t0 + RETRY_EVERY * 2, false);
    assert_eq!(counts(&out), [1, 2, 3]);
    for e in &out {
        let call = e.attr.as_ref().and_then(|a| a.tool_call.as_ref());
        assert_eq!(call.map(|c| c.id.as_str()), Some("toolu_01X"), "{e:?}");
    }
    assert!(hold.is_empty());
    assert_eq!(
        a.pending_wrapper(102),
        None,
        "matched: nothing more is held"
    );

    // A wrapper whose call never comes.
    let home2 = crate::testutil::TempDir::new("attr-hold-never");
    let (mut a, _transcript, _lines) = late_tool_session(&home2);
    let e = event_of(&mut a, TOOL, 7);
    assert!(hold.hold(wrapper, e, t0).is_none());
    assert!(hold.release(&mut a, t0 + HOLD_FOR / 2, false).is_empty());
    let out = hold.release(&mut a, t0 + HOLD_FOR, false);
    assert_eq!(counts(&out), [7]);
    assert_eq!(out[0].attr.as_ref().and_then(|a| a.tool_call.clone()), None);
    assert_eq!(a.pending_wrapper(TOOL), None, "given up");

    // An agent starved of CPU comes back at the deadline right after a look: the call
    // written meanwhile is still read before the wrapper is given up.
    let home3 = crate::testutil::TempDir::new("attr-hold-late");
    let (mut a, transcript, lines) = late_tool_session(&home3);
    let e = event_of(&mut a, TOOL, 9);
    assert!(hold.hold(wrapper, e, t0).is_none());
    let just_before = t0 + HOLD_FOR - RETRY_EVERY / 2;
    assert!(hold.release(&mut a, just_before, false).is_empty());
    std::fs::write(&transcript, lines).expect("transcript");
    let out = hold.release(&mut a, t0 + HOLD_FOR, false);
    assert_eq!(counts(&out), [9]);
    let call = out[0].attr.as_ref().and_then(|a| a.tool_call.as_ref());
    assert_eq!(call.map(|c| c.id.as_str()), Some("toolu_01X"));
}

/// The hold is bounded: beyond HELD_MAX events the oldest goes out unchanged.
#[test]
fn the_hold_is_bounded() {
    use crate::pipeline::hold::{HELD_MAX, Hold};
    let home = crate::testutil::TempDir::new("attr-hold-bound");
    let (mut a, _transcript, _lines) = late_tool_session(&home);
    let wrapper = a.pending_wrapper(TOOL).expect("pending");
    let mut hold = Hold::default();
    let now = std::time::Instant::now();
    let e = event_of(&mut a, TOOL, 0);
    for n in 0..HELD_MAX as u64 {
        let mut e = e.clone();
        if let crate::event::Body::Lost(l) = &mut e.body {
            l.count = n;
        }
        assert!(hold.hold(wrapper, e, now).is_none());
    }
    let out = hold.hold(wrapper, e, now).expect("the oldest goes out");
    assert_eq!(counts(&[out]), [0]);
    assert_eq!(hold.len(), HELD_MAX);
    let out = hold.release(&mut a, now, true);
    assert_eq!(out.len(), HELD_MAX, "a forced release lets everything out");
}

#[test]
fn shell_scripts_of_tool_wrappers() {
    let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let w = "source s.sh && eval 'x' < /dev/null";
    assert_eq!(shell_script(&argv(&["/bin/bash", "-c", w])), Some(w));
    assert_eq!(shell_script(&argv(&["bash", "-c", "-l", w])), Some(w));
    assert_eq!(shell_script(&argv(&["zsh", "-lc", w])), Some(w));
    assert_eq!(shell_script(&argv(&["bash", "--norc", "-c", w])), Some(w));
    // Not a -c script, or nothing that could name a command.
    assert_eq!(shell_script(&argv(&["bash", w])), None);
    assert_eq!(shell_script(&argv(&["bash", "-c", "make all"])), None);
    assert_eq!(shell_script(&argv(&["bash", "-c"])), None);
}

/// A process whose exit record was lost stays "alive" in the table until a reconciliation
/// with /proc after the loss; it is a candidate first, and reaped by the next check (its
/// records could still have been in the ring at the first).
#[test]
fn ghosts_of_lost_exits_are_reaped_after_a_loss() {
    let mut a = attributor();
    // Above any pid_max: never in /proc. A child of the session root, whose exit is lost.
    let ghost = ProcId {
        pid: 4_800_000,
        start: 7,
    };
    a.table.fork(ghost, ROOT, "cc".into());
    assert_eq!(a.live_members(None).len(), 3, "root, tool and the ghost");
    let t0 = std::time::Instant::now();
    a.housekeeping(t0, false);
    assert_eq!(a.sizes().ghosts_reaped, 0, "no loss, no reconciliation");
    a.housekeeping(t0, true);
    assert_eq!(a.sizes().ghosts_reaped, 0, "a candidate only");
    // A fork record from it still in the ring: the child inherits its session.
    let late = ProcId {
        pid: 4_800_001,
        start: 8,
    };
    a.table.fork(late, ghost.pid, "cc1".into());
    assert!(a.table.get(late.pid).is_some_and(|p| p.session.is_some()));
    a.housekeeping(t0 + GHOST_CHECK / 2, false);
    assert_eq!(a.sizes().ghosts_reaped, 0, "not before GHOST_CHECK");
    a.housekeeping(t0 + GHOST_CHECK, false);
    // (The fixture's other processes have made-up start times: reaped too, most likely.)
    assert!(a.sizes().ghosts_reaped >= 1);
    assert!(a.table.get(ghost.pid).is_some_and(|p| p.exited));
    // The child appeared after the first check: not a candidate yet.
    assert!(a.table.get(late.pid).is_some_and(|p| !p.exited));
}

/// Sessions without a live process are forgotten after SESSION_LINGER; one whose
/// process lives on (an orphan of the root) is not.
#[test]
fn ended_sessions_are_pruned_and_live_ones_kept() {
    let mut a = attributor();
    let t0 = std::time::Instant::now();
    a.prune(t0);
    assert_eq!(a.sizes().sessions, 1);
    // The root dies; its tool lives on: the session stays.
    a.table.exit(ProcId {
        pid: ROOT,
        start: 1,
    });
    a.prune(t0 + SESSION_LINGER * 2);
    assert_eq!(a.sizes().sessions, 1);
    let tool = a.table.get(TOOL).map(|p| p.id).expect("tool");
    a.table.exit(tool);
    a.prune(t0 + SESSION_LINGER * 3);
    assert_eq!(a.sizes().sessions, 1, "ended now: kept a while");
    assert!(a.attr(TOOL).session.is_some(), "a late event still has it");
    a.prune(t0 + SESSION_LINGER * 4);
    assert_eq!((a.sizes().sessions, a.sizes().sessions_pruned), (0, 1));
    assert!(
        a.attr(TOOL).session.is_none(),
        "forgotten: no session, no panic"
    );
}

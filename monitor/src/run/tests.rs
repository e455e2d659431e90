//! The summary from a wait status alone, and the polled tree.

use std::{os::unix::process::ExitStatusExt as _, time::Duration};

use super::*;
use crate::host::proc::Stat;

fn facts(raw: i32, source: Source) -> Facts {
    Facts {
        command: vec!["/usr/bin/make".into(), "all".into()],
        cwd: Some("/src".into()),
        pid: 100,
        started: DateTime::parse_from_rfc3339("2026-12-08T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc),
        ended: DateTime::parse_from_rfc3339("2026-12-08T00:00:03Z")
            .expect("time")
            .with_timezone(&Utc),
        duration: Duration::from_millis(3000),
        status: std::process::ExitStatus::from_raw(raw),
        usage: child::Rusage {
            maxrss_kb: 2048,
            user_ms: 120.0,
            system_ms: 30.0,
        },
        source,
        resources: None,
        notes: Vec::new(),
    }
}

/// Polling: the cause comes from the wait status (a crash signal is a crash, another
/// signal a kill with no sender), the figures from wait4, and the summary says what it
/// could not see.
#[test]
fn polled_summaries_come_from_the_wait_status() {
    let tree = Tree::new(100, None);
    let s = summarize(&tree, facts(4 << 8, Source::Proc));
    assert_eq!((s.exit_status, s.cause), (4, CauseKind::Exited));
    assert_eq!(
        s.sentence,
        "make (pid 100) exited with status 4 (program-specific) after 3.0 s."
    );
    assert_eq!(s.peak_rss_kb, Some(2048));
    assert_eq!((s.cpu_user_ms, s.cpu_system_ms), (Some(120.0), Some(30.0)));
    assert!(s.approximate);
    assert!(s.notes.iter().any(|n| n.contains("not seen by polling")));
    assert_eq!(s.processes, 1);

    let killed = summarize(&tree, facts(libc::SIGKILL, Source::Proc));
    assert_eq!((killed.exit_status, killed.cause), (137, CauseKind::Killed));
    assert!(
        killed.sentence.contains("the sender is not known"),
        "{}",
        killed.sentence
    );
    let crashed = summarize(&tree, facts(libc::SIGSEGV | 0x80, Source::Proc));
    assert_eq!(
        (crashed.exit_status, crashed.cause),
        (139, CauseKind::Crashed)
    );
    assert!(crashed.status.core_dumped);
}

/// With the kernel but without the command's exit record (lost): the wait status still
/// decides, and a note says so.
#[test]
fn a_missing_exit_record_is_said() {
    let tree = Tree::new(100, None);
    let s = summarize(&tree, facts(0, Source::Kernel));
    assert_eq!(s.exit_status, 0);
    assert!(!s.approximate);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("exit record of the command was not read")),
        "{:?}",
        s.notes
    );
    // The kernel's CPU figures (none seen here), not wait4's.
    assert_eq!(s.cpu_user_ms, Some(0.0));
}

fn stat(pid: u32, ppid: u32, comm: &str, start: u64) -> Stat {
    Stat {
        pid,
        ppid,
        comm: comm.into(),
        start,
        zombie: false,
    }
}

/// Polling: descendants are added once each, an orphan reparented to init is kept, a
/// process that is gone is dropped, and a reused pid is a new process.
#[test]
fn the_polled_tree_follows_descendants_and_orphans() {
    let mut tree = Tree::new(10, None);
    tree.observe(&[
        stat(1, 0, "init", 1),
        stat(10, 5, "sh", 100),
        stat(11, 10, "make", 101),
        stat(12, 11, "cc", 102),
        stat(20, 1, "other", 50),
    ]);
    let mut live: Vec<u32> = tree.live().collect();
    live.sort_unstable();
    assert_eq!(live, [10, 11, 12]);
    assert_eq!(tree.started, 3);
    // 11 exits: 12 is reparented to init and still the tree's; the same scan again
    // counts nothing new.
    let scan = [
        stat(1, 0, "init", 1),
        stat(10, 5, "sh", 100),
        stat(12, 1, "cc", 102),
        stat(20, 1, "other", 50),
    ];
    tree.observe(&scan);
    tree.observe(&scan);
    let mut live: Vec<u32> = tree.live().collect();
    live.sort_unstable();
    assert_eq!(live, [10, 12]);
    assert_eq!(tree.started, 3);
    // 12 is gone and its pid reused by another child of the command: a new process.
    tree.observe(&[stat(10, 5, "sh", 100), stat(12, 10, "ld", 300)]);
    assert_eq!(tree.started, 4);
    assert_eq!(tree.depth(12), Some(1));
}

/// The daemon's JSON lines read back as the events they were: the tree gets the same facts
/// from the stream as from the kernel programs.
#[test]
fn events_read_back_from_their_json() {
    use crate::pipeline::convert::Converter;
    let converter = Converter::new(crate::host::clock::Clock::fixed(0));
    // SAFETY: monitor_common's records hold integers and integer arrays only.
    let mut exit: monitor_common::Exit = unsafe { std::mem::zeroed() };
    exit.header.kind = monitor_common::Kind::Exit as u16;
    exit.header.pid = 42;
    exit.exit_status = 9;
    // SAFETY: as above.
    let mut fork: monitor_common::Fork = unsafe { std::mem::zeroed() };
    fork.header.kind = monitor_common::Kind::Fork as u16;
    fork.header.pid = 43;
    fork.parent_pid = 42;
    for record in [
        monitor_common::Record::Exit(exit),
        monitor_common::Record::Fork(fork),
    ] {
        let event = converter.convert(&record);
        let json = serde_json::to_value(&event).expect("json");
        let back = crate::event::Event::from_json(&json).expect("read back");
        assert_eq!(serde_json::to_value(&back).expect("json"), json);
    }
    let start =
        serde_json::json!({"v": 1, "kind": "agent_start", "ts": "x", "pid": 1, "comm": "c"});
    assert!(
        crate::event::Event::from_json(&start).is_none(),
        "not a tree's kind"
    );
    assert!(crate::event::Event::from_json(&serde_json::json!({"kind": "exit"})).is_none());
}

/// A `run` session's own name is left out of what the tree gets; a kill inside it is one
/// of the command's own processes, not "from within its own session".
#[test]
fn run_sessions_are_the_command_itself() {
    let line = serde_json::json!({
        "v": 1, "kind": "exit", "ts": "2026-12-08T00:00:00Z", "pid": 7, "comm": "sh",
        "tid": 7, "ppid": 6, "uid": 0, "exit_code": null, "signal": 9, "signal_name": "SIGKILL",
        "core_dumped": false, "peak_rss_kb": 1, "own_peak_rss_kb": 1, "utime_ms": 0.0,
        "stime_ms": 0.0, "duration_ms": 1.0, "memcg_id": null, "memcg_path": null,
        "cause": "killed",
        "killed_by": {"pid": 7, "comm": "sh", "uid": 0, "proc_id": "7:1", "session_id": "6:1",
                      "same_session": true, "signal": 9, "si_code": 0, "handled": false},
        "oom": null, "proc_id": "7:1",
        "session": {"id": "6:1", "agent": "run", "root_pid": 6, "root_start": "x", "cwd": null,
                    "claude_session_id": null, "version": null},
        "ancestry": [{"pid": 7, "comm": "sh"}], "tool_call": null, "seq": 12
    });
    let event = daemon_event(&line).expect("an exit");
    let attr = event.attr.as_ref().expect("attr");
    assert!(attr.session.is_none() && attr.ancestry.is_none());
    let crate::event::Body::Exit(exit) = &event.body else {
        panic!("not an exit");
    };
    let k = exit.cause.killed_by.as_ref().expect("sender");
    assert!(!k.same_session && k.session_id.is_none());
    assert_eq!(exit.status.signal, Some(9));
}

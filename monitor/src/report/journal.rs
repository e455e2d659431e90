//! A report as one structured journal entry (`[export.journald]`): `MESSAGE` is the
//! report's sentence, `MESSAGE_ID` says which kind of death it is (one fixed id per
//! [`Reason`], for `journalctl MESSAGE_ID=...`), `PRIORITY` how bad, and the facts are
//! fields of their own, `CLAUDE_MONITOR_*` in upper case. The sentence is made printable
//! (comm and paths are the watched users' text); the fields are sent as they are (journald
//! fields are binary-safe), already redacted by the pipeline.

use super::{Reason, Report};

/// `MESSAGE_ID` of each kind of report (random, fixed: never change one).
pub fn message_id(reason: Reason) -> &'static str {
    match reason {
        Reason::SessionEnded => "8690ab314bfe4ffa88308d4f4c633624",
        Reason::OomKill => "5ac5a5ffabe34cdcbdad4ffb515d7932",
        Reason::KilledFromOutside => "fc5a87282f7d457db8458f8550cec95c",
        Reason::KilledByKernel => "7630723fffa74184911c24c24fa6d13c",
        Reason::Crashed => "06293d502c01401d8e55228818bb81e6",
        Reason::NonzeroExit => "25418dc86acd41138af6a52d67b6baa4",
        Reason::CommandEnded => "65443908676241bbac85c7a9b8fdf264",
    }
}

/// syslog priority: 3 (err) for an OOM kill or a crash, 4 (warning) for a kill, 5 (notice)
/// for the rest.
pub fn priority(reason: Reason) -> &'static str {
    match reason {
        Reason::OomKill | Reason::Crashed => "3",
        Reason::KilledFromOutside | Reason::KilledByKernel => "4",
        Reason::SessionEnded | Reason::NonzeroExit | Reason::CommandEnded => "5",
    }
}

/// The entry's fields, in a fixed order (absent facts are left out).
pub fn journal_fields(r: &Report) -> Vec<(&'static str, String)> {
    let p = &r.process;
    let mut f: Vec<(&'static str, String)> = vec![
        (
            "MESSAGE",
            crate::output::printable::printable(&r.summary).into_owned(),
        ),
        ("MESSAGE_ID", message_id(r.reason).to_owned()),
        ("PRIORITY", priority(r.reason).to_owned()),
        ("SYSLOG_IDENTIFIER", "claude-monitor".to_owned()),
        ("CLAUDE_MONITOR_REPORT_ID", r.id.clone()),
        ("CLAUDE_MONITOR_REASON", r.reason.as_str().to_owned()),
        ("CLAUDE_MONITOR_CAUSE", r.cause.as_str().to_owned()),
        ("CLAUDE_MONITOR_PID", p.pid.to_string()),
        ("CLAUDE_MONITOR_COMM", p.comm.clone()),
        ("CLAUDE_MONITOR_UID", p.uid.to_string()),
        ("CLAUDE_MONITOR_COMPLETE", r.complete.to_string()),
    ];
    let mut opt = |name: &'static str, value: Option<String>| {
        if let Some(v) = value {
            f.push((name, v));
        }
    };
    opt("CLAUDE_MONITOR_PROC_ID", p.proc_id.clone());
    opt(
        "CLAUDE_MONITOR_EXIT_CODE",
        p.status.exit_code.map(|c| c.to_string()),
    );
    opt(
        "CLAUDE_MONITOR_SIGNAL",
        p.status
            .signal_name
            .clone()
            .or(p.status.signal.map(|s| s.to_string())),
    );
    opt(
        "CLAUDE_MONITOR_CMDLINE",
        p.cmdline.as_ref().map(|a| a.join(" ")),
    );
    if let Some(s) = &r.session {
        opt("CLAUDE_MONITOR_SESSION_ID", Some(s.id.clone()));
        opt("CLAUDE_MONITOR_AGENT", Some(s.agent.clone()));
        opt(
            "CLAUDE_MONITOR_CLAUDE_SESSION_ID",
            s.claude_session_id.clone(),
        );
        opt("CLAUDE_MONITOR_CWD", s.cwd.clone());
    }
    if let Some(k) = &r.killed_by {
        opt("CLAUDE_MONITOR_KILLER_PID", Some(k.pid.to_string()));
        opt("CLAUDE_MONITOR_KILLER_COMM", Some(k.comm.clone()));
    }
    opt(
        "CLAUDE_MONITOR_TOOL_COMMAND",
        r.tool_call.as_ref().and_then(|t| t.command.clone()),
    );
    f
}

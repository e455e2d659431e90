//! Exit reports: one JSON file plus the same content as readable text for every death worth
//! explaining (a session root's exit, an OOM kill, a kill from outside the session or by the
//! kernel, a crash, optionally a non-zero exit), and the store that `claude-monitor reports`
//! and `claude-monitor report` read them back from.
//!
//! **Why a report and not just the event.** The `exit` event says *what* the kernel saw; a
//! person debugging a dead tool call needs the surroundings too, and most of them are gone
//! minutes later: the memory cgroup's limit and usage, the session's last resource samples,
//! which of its processes are still running, who the sender of the signal was. The daemon
//! gathers those into a [`Context`] at the time of the exit, and [`build`] turns event plus
//! context into a self-contained [`Report`] with a one-sentence summary.
//!
//! **Types.** A report reuses the event's own types where it holds the same facts (the
//! session, the tool call, lineage entries, the OOM facts: those derive `Deserialize` for
//! reports read back) and has its own only where it says more (the process with its command
//! line and times, the sender with its lineage, the memory cgroup chain). The raw exit event
//! is kept in `event` for tools.

use crate::event::{Body, CauseKind, Event};

mod build;
mod command;
mod journal;
mod model;
mod store;
mod text;

pub use self::{build::*, command::*, journal::*, model::*, store::*, text::*};

/// Why a report was written (its `reason`), as [`worth_reporting`] decides.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Reason {
    /// A session's root process ended.
    SessionEnded,
    /// The OOM killer chose the process (reported on the whole host).
    OomKill,
    /// A signal from outside the session killed it.
    KilledFromOutside,
    /// The kernel's own signal killed it.
    KilledByKernel,
    /// A crash signal, or any core dump.
    Crashed,
    /// A non-zero exit (with `report_nonzero_exit`).
    NonzeroExit,
    /// The command of `claude-monitor run` ended, however it ended (when no reason above
    /// applies).
    CommandEnded,
}

names!(Reason {
    SessionEnded => "session_ended",
    OomKill => "oom_kill",
    KilledFromOutside => "killed_from_outside",
    KilledByKernel => "killed_by_kernel",
    Crashed => "crashed",
    NonzeroExit => "nonzero_exit",
    CommandEnded => "command_ended",
});

/// Why `event` deserves a report, or `None` for an ordinary exit (which only goes to the event
/// log) and for every non-exit event.
///
/// Precedence, most specific first: `oom_kill`, `crashed` (a crash signal or any core dump),
/// `killed_by_kernel`, `killed_from_outside` (the sender is known and not in the victim's own
/// session; also a signal the victim caught and then exited from its handler, cause
/// `terminated`), `command_ended` (the root of a `run` session, however it ended),
/// `session_ended` (the session root itself, however it ended), then `nonzero_exit` when
/// `report_nonzero_exit` is set.
///
/// A Claude Code root that exited 0 without ever being a conversation (no registry entry
/// named a Claude session id: `claude --version`, `claude doctor`, `claude mcp list`) is an
/// ordinary exit: each would otherwise leave a report, and scripts run such commands often.
///
/// Only OOM kills are reported for processes outside every session: the daemon watches every
/// OOM kill on the host, but a host-wide `kill` or crash outside the watched sessions is not
/// its business, and reporting those would flood the report directory.
pub fn worth_reporting(event: &Event, report_nonzero_exit: bool) -> Option<Reason> {
    let Body::Exit(exit) = &event.body else {
        return None;
    };
    let cause = exit.cause.cause;
    if cause == CauseKind::OomKilled {
        return Some(Reason::OomKill);
    }
    let attr = event.attr.as_ref()?;
    let session = attr.session.as_ref()?;
    if cause == CauseKind::Crashed || exit.status.core_dumped {
        return Some(Reason::Crashed);
    }
    if cause == CauseKind::KilledByKernel {
        return Some(Reason::KilledByKernel);
    }
    if (cause == CauseKind::Killed || cause == CauseKind::Terminated)
        && exit
            .cause
            .killed_by
            .as_ref()
            .is_some_and(|k| !k.same_session)
    {
        return Some(Reason::KilledFromOutside);
    }
    let root = is_session_root(
        event.pid,
        attr.proc_id.as_deref(),
        session.root_pid,
        &session.id,
    );
    // The command of a `claude-monitor run` that the daemon watched, however it ended.
    if root && session.agent == crate::event::RUN_AGENT {
        return Some(Reason::CommandEnded);
    }
    if root
        && (cause != CauseKind::Exited
            || exit.status.exit_code != Some(0)
            || session.agent != crate::claude::CLAUDE_CODE
            || session.claude_session_id.is_some())
    {
        return Some(Reason::SessionEnded);
    }
    if report_nonzero_exit && exit.status.exit_code.is_some_and(|c| c != 0) {
        return Some(Reason::NonzeroExit);
    }
    None
}

/// The session's id is its root's proc_id, which also guards against a reused pid; the pid
/// alone decides only when the process's identity is unknown.
pub(super) fn is_session_root(
    pid: u32,
    proc_id: Option<&str>,
    root_pid: u32,
    session_id: &str,
) -> bool {
    root_pid == pid && proc_id.is_none_or(|p| p == session_id)
}

#[cfg(test)]
mod tests;

//! Building a report from an exit event and its [`Context`]: ids, the sender's lineage from /proc.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use super::Reason;
use crate::{
    event::Ancestor,
    event::CauseKind,
    event::KilledBy,
    event::{Body, Event, Exit, ExitStatus},
    host::memcg::{self, MemcgLevel},
    host::proc,
    signals::explain::{self},
    signals::names::{si_code_name, signal_name},
};

use super::{model::*, text::*};

pub(super) fn sender_info(k: &KilledBy, lineage: &[(u32, String)]) -> SenderInfo {
    SenderInfo {
        sender: k.clone(),
        signal_name: signal_name(k.signal),
        si_code_name: si_code_name(k.signal, k.si_code).map(str::to_owned),
        lineage: lineage
            .iter()
            .map(|(pid, comm)| Ancestor {
                pid: *pid,
                comm: comm.clone(),
            })
            .collect(),
    }
}

/// Builds the report of an exit event (`reason` from [`worth_reporting`](super::worth_reporting)); `None` for any
/// other event.
///
/// Reads one thing itself: the signal sender's lineage from /proc (see [`sender_lineage`]),
/// so call it when the exit is read, while the sender most likely still runs.
pub fn build(event: &Event, reason: Reason, ctx: Context) -> Option<Report> {
    build_at(event, reason, ctx, Utc::now(), Path::new("/proc"))
}

pub(super) fn build_at(
    event: &Event,
    reason: Reason,
    ctx: Context,
    now: DateTime<Utc>,
    proc_root: &Path,
) -> Option<Report> {
    let Body::Exit(exit) = &event.body else {
        return None;
    };
    let cause = exit.cause.cause;
    let exit = Some(exit);
    let attr = event.attr.as_ref();
    let ended_at = DateTime::parse_from_rfc3339(&event.ts)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    let process = process_info(event, exit, ctx.cmdline, ended_at);
    let session = attr.and_then(|a| a.session.as_ref()).cloned();
    let memcg = memcg_info(exit, &ctx.memcg);
    let killed_by = exit
        .and_then(|e| e.cause.killed_by.as_ref())
        .map(|k| sender_info(k, &sender_lineage(proc_root, k)));
    let oom = exit.and_then(|e| e.cause.oom.as_ref()).cloned();
    let explanation = explanation_of(&process.status).map(Into::into);
    let alive: Vec<Ancestor> = ctx
        .alive
        .iter()
        .filter(|(pid, _)| *pid != event.pid)
        .map(|(pid, comm)| Ancestor {
            pid: *pid,
            comm: comm.clone(),
        })
        .collect();
    let mut report = Report {
        id: make_id(
            ended_at.unwrap_or(now),
            event.pid,
            cause,
            process.status.exit_code,
        ),
        created: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        reason,
        summary: String::new(),
        process,
        session,
        tool_call: attr.and_then(|a| a.tool_call.as_ref()).cloned(),
        ancestry: attr.and_then(|a| a.ancestry.as_ref()).cloned(),
        cause,
        killed_by,
        oom,
        memcg,
        explanation,
        last_samples: ctx.samples,
        alive,
        complete: ctx.complete && ctx.lost_nearby == 0,
        lost_nearby: ctx.lost_nearby,
        event: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
        command: None,
    };
    report.summary = summary(&report);
    Some(report)
}

/// The explanation of a wait status: of its signal, else of its exit code; `None` when the
/// kernel could not read it.
pub(super) fn explanation_of(status: &ExitStatus) -> Option<explain::Explanation> {
    match (status.signal, status.exit_code) {
        (Some(sig), _) => Some(explain::signal(i32::from(sig))),
        (None, Some(code)) => Some(explain::exit_code(code)),
        (None, None) => None,
    }
}

pub(super) fn process_info(
    event: &Event,
    exit: Option<&Exit>,
    cmdline: Option<Vec<String>>,
    ended_at: Option<DateTime<Utc>>,
) -> ProcessInfo {
    let duration_ms = exit.map_or(0.0, |e| e.duration_ms);
    let started = ended_at
        .filter(|_| duration_ms.is_finite() && duration_ms >= 0.0)
        .and_then(|end| {
            // Microseconds: the precision of duration_ms. Casting a finite, non-negative f64
            // saturates, and an absurd value makes checked_sub_signed fail.
            let us = (duration_ms * 1000.0).round() as i64;
            end.checked_sub_signed(TimeDelta::microseconds(us))
        })
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true));
    ProcessInfo {
        pid: event.pid,
        tid: exit.map_or(event.pid, |e| e.tid),
        comm: event.comm.clone(),
        cmdline,
        proc_id: event.attr.as_ref().and_then(|a| a.proc_id.clone()),
        ppid: exit.map_or(0, |e| e.ppid),
        uid: exit.map_or(u32::MAX, |e| e.uid),
        started,
        ended: event.ts.clone(),
        duration_ms,
        status: exit.map(|e| e.status.clone()).unwrap_or_default(),
        usage: exit.map(|e| e.usage.clone()).unwrap_or_default(),
    }
}

pub(super) fn memcg_info(exit: Option<&Exit>, chain: &[MemcgLevel]) -> MemcgInfo {
    let binding = memcg::binding_limit(chain).and_then(|b| {
        Some(BindingLimit {
            path: b.path.clone(),
            bytes: b.limit_bytes?,
            own: chain.first().is_some_and(|own| own.path == b.path),
        })
    });
    let note = match (&binding, chain.first()) {
        (Some(b), Some(own)) if !b.own => Some(format!(
            "The limit that applies is the one of ancestor cgroup {} ({}), not of the process's own cgroup {}, which {}.",
            b.path,
            fmt_bytes(b.bytes),
            own.path,
            match own.limit_bytes {
                Some(l) => format!("has a higher limit of its own ({})", fmt_bytes(l)),
                None => "has no limit of its own".to_owned(),
            }
        )),
        _ => None,
    };
    MemcgInfo {
        id: exit.and_then(|e| e.memcg_id),
        path: exit
            .and_then(|e| e.memcg_path.clone())
            .or_else(|| chain.first().map(|l| l.path.clone())),
        levels: chain.to_vec(),
        binding_limit: binding,
        note,
    }
}

/// The short form of a cause used in report ids (and accepted by the cause filter).
pub(super) fn short_cause(cause: CauseKind, exit_code: Option<u8>) -> String {
    match cause {
        CauseKind::OomKilled => "oom".to_owned(),
        CauseKind::Killed => "killed".to_owned(),
        CauseKind::Terminated => "term".to_owned(),
        CauseKind::KilledByKernel => "kernel".to_owned(),
        CauseKind::Crashed => "crash".to_owned(),
        CauseKind::Unknown => "unknown".to_owned(),
        CauseKind::Exited => match exit_code {
            Some(c) => format!("exit{c}"),
            None => "exit".to_owned(),
        },
    }
}

pub(super) fn make_id(
    at: DateTime<Utc>,
    pid: u32,
    cause: CauseKind,
    exit_code: Option<u8>,
) -> String {
    format!(
        "{}-{pid}-{}",
        at.format("%Y%m%dT%H%M%SZ"),
        short_cause(cause, exit_code)
    )
}

/// Keeps only characters that are safe in a file name everywhere.
pub(super) fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let out = out.trim_start_matches('.').to_owned();
    if out.is_empty() { "_".to_owned() } else { out }
}

/// Bound on a sender's lineage (the same as the events' ancestry).
pub(super) const LINEAGE_MAX: usize = crate::event::ANCESTRY_MAX;

/// The lineage of a fatal signal's sender, read from /proc (`proc_root` outside tests): the
/// sender, then its parents up to init. The sender usually outlives its victim, but its pid
/// may have been reused by then, so the lineage is only read when the process at that pid
/// still has the sender's start time (`proc_id`); empty otherwise.
pub fn sender_lineage(proc_root: &Path, sender: &KilledBy) -> Vec<(u32, String)> {
    let Some(start) = sender
        .proc_id
        .as_deref()
        .and_then(|id| id.split_once(':'))
        .and_then(|(_, start)| start.parse::<u64>().ok())
    else {
        return Vec::new();
    };
    match proc::read_stat(proc_root, sender.pid).ok() {
        Some(stat) if stat.start == start => proc_lineage(proc_root, sender.pid, LINEAGE_MAX),
        _ => Vec::new(),
    }
}

/// A process's lineage from /proc: the process, then its parent, and so on up to init (at
/// most `max` entries); empty when the process is gone.
pub fn proc_lineage(proc_root: &Path, pid: u32, max: usize) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut pid = pid;
    while pid != 0 && out.len() < max && !out.iter().any(|(p, _)| *p == pid) {
        let Ok(stat) = proc::read_stat(proc_root, pid) else {
            break;
        };
        out.push((pid, stat.comm));
        pid = stat.ppid;
    }
    out
}

//! Reports as text for people: the one-sentence summary, the sections, the list of `claude-monitor reports`.

use chrono::{DateTime, Utc};

use crate::{
    event::Ancestor,
    event::CauseKind,
    host::memcg::MemcgLevel,
    output::printable::printable_json,
    signals::explain::{self, Explanation},
    signals::names::signal_name,
};

use super::{is_session_root, model::*, store::*};

/// How many resource samples the text rendering shows (the JSON keeps all it was given).
pub(super) const SAMPLES_SHOWN: usize = 10;

/// Width of the one-line summary in [`render_list`].
pub(super) const LIST_SUMMARY_CHARS: usize = 80;

/// A short, recognisable session id: the start of Claude Code's session id when known (what
/// the user sees in `~/.claude`), else the agent session's `pid:start`.
pub(super) fn session_short(id: &str, claude_session_id: Option<&str>) -> String {
    match claude_session_id {
        Some(c) if c.chars().count() > 8 => format!("{}…", c.chars().take(8).collect::<String>()),
        Some(c) => c.to_owned(),
        None => id.to_owned(),
    }
}

pub(super) fn agent_name(agent: &str) -> &str {
    if agent == "claude-code" {
        "Claude Code"
    } else {
        agent
    }
}

pub(super) fn signal_label(sig: i32) -> String {
    signal_name(sig).unwrap_or_else(|| format!("signal {sig}"))
}

/// "SIGTERM (terminated: a polite request to stop)".
/// Without the short text's own parenthetical, which would nest: "SIGKILL (killed: SIGKILL
/// cannot be caught)".
pub(super) fn signal_phrase(sig: i32) -> String {
    let short = explain::signal_short(sig);
    let short = match short.find(" (") {
        Some(i) if short.ends_with(')') => &short[..i],
        _ => short,
    };
    format!("{} ({short})", signal_label(sig))
}

/// The cause in one plain sentence, from the facts only.
pub(super) fn summary(r: &Report) -> String {
    let p = &r.process;
    let name = if !p.comm.is_empty() {
        p.comm.clone()
    } else {
        p.cmdline
            .as_ref()
            .and_then(|c| c.first())
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_else(|| "a process".to_owned())
    };
    let mut s = format!("{name} (pid {})", p.pid);
    let root = r
        .session
        .as_ref()
        .is_some_and(|sess| is_session_root(p.pid, p.proc_id.as_deref(), sess.root_pid, &sess.id));
    if let Some(sess) = &r.session {
        let short = session_short(&sess.id, sess.claude_session_id.as_deref());
        let cwd = sess
            .cwd
            .as_deref()
            .map(|c| format!(" in {c}"))
            .unwrap_or_default();
        if root {
            s.push_str(&format!(
                ", the root of {} session {short}{cwd},",
                agent_name(&sess.agent)
            ));
        } else {
            let tool = r
                .tool_call
                .as_ref()
                .map(|t| {
                    let cmd = t
                        .command
                        .as_deref()
                        .map(|c| format!(" (`{}`)", truncate(one_line(c).as_str(), 60)))
                        .unwrap_or_default();
                    format!(" through its {} tool{cmd}", t.name)
                })
                .unwrap_or_default();
            s.push_str(&format!(
                ", run by {} session {short}{cwd}{tool},",
                agent_name(&sess.agent)
            ));
        }
    }
    s.push(' ');
    s.push_str(&cause_clause(r));
    if p.status.core_dumped && r.cause != CauseKind::Crashed {
        s.push_str(" and dumped core");
    }
    if let Some(sess) = &r.session {
        if root {
            match r.alive.len() {
                0 => {}
                1 => s.push_str("; 1 of its processes is still running"),
                n => s.push_str(&format!("; {n} of its processes are still running")),
            }
        } else if r.alive.iter().any(|a| a.pid == sess.root_pid) {
            s.push_str("; the session is still alive");
        }
    }
    s.push('.');
    s
}

/// `bash (pid 7, uid 0) from outside its session`: the sender and where it came from.
pub(super) fn sender_phrase(k: &SenderInfo, in_session: bool) -> String {
    let origin = if k.same_session {
        " from within its own session".to_owned()
    } else if let Some(other) = &k.session_id {
        format!(" from another session ({other})")
    } else if in_session {
        " from outside its session".to_owned()
    } else {
        String::new()
    };
    format!("{} (pid {}, uid {}){origin}", k.comm, k.pid, k.uid)
}

pub(super) fn cause_clause(r: &Report) -> String {
    let p = &r.process;
    let sig = p.status.signal.map(i32::from);
    match r.cause.as_str() {
        "oom_killed" => {
            let mut c = "was killed by the kernel's OOM killer".to_owned();
            let anon = r.oom.as_ref().and_then(|o| o.anon_rss_kb);
            if let Some(anon) = anon {
                c.push_str(&format!(
                    " while holding {} of anonymous memory,",
                    fmt_kb(anon)
                ));
            }
            let binding = r
                .memcg
                .binding_limit
                .as_ref()
                .and_then(|b| Some((b, r.memcg.levels.iter().find(|l| l.path == b.path)?)));
            match binding {
                Some((b, level)) if limit_was_hit(level, b.bytes) => c.push_str(&format!(
                    " when memory cgroup {} reached its {} limit",
                    b.path,
                    fmt_bytes(b.bytes)
                )),
                Some((b, _)) => c.push_str(&format!(
                    " in memory cgroup {} (limit {})",
                    b.path,
                    fmt_bytes(b.bytes)
                )),
                None if !r.memcg.levels.is_empty() => {
                    c.push_str(" because the host ran out of memory (no memory cgroup limit applies to it)");
                }
                None => {}
            }
            // The comma after the memory figure only belongs before a cgroup clause.
            c.strip_suffix(',').map(str::to_owned).unwrap_or(c)
        }
        "terminated" => match &r.killed_by {
            Some(k) => {
                let status = p
                    .status
                    .exit_code
                    .map_or_else(|| "exited".to_owned(), |c| format!("exited {c}"));
                format!(
                    "was terminated by {} sent by {}, and {status} from its handler after {}",
                    signal_phrase(k.signal),
                    sender_phrase(k, r.session.is_some()),
                    fmt_ms(p.duration_ms)
                )
            }
            None => "was terminated by a signal it handled".to_owned(),
        },
        "killed" => {
            let sig = sig.or(r.killed_by.as_ref().map(|k| k.signal));
            let what = sig.map_or_else(|| "a signal".to_owned(), signal_phrase);
            match &r.killed_by {
                Some(k) => {
                    let caught = if k.handled {
                        " (it caught the signal, then raised it again)"
                    } else {
                        ""
                    };
                    format!(
                        "was killed by {what} sent by {}{caught}",
                        sender_phrase(k, r.session.is_some())
                    )
                }
                None => format!(
                    "was killed by {what}; no sender was seen (a sibling thread's exit_group or execve, or a lost record)"
                ),
            }
        }
        "killed_by_kernel" => match sig {
            Some(s) => format!("was killed by the kernel with {}", signal_phrase(s)),
            None => "was killed by the kernel".to_owned(),
        },
        "crashed" => {
            let mut c = match sig {
                Some(s) => format!("crashed with {}", signal_phrase(s)),
                None => "crashed".to_owned(),
            };
            if p.status.core_dumped {
                c.push_str(" and dumped core");
            }
            c
        }
        "exited" => match p.status.exit_code {
            Some(code) => format!(
                "exited with status {code} ({}) after {}",
                exit_tail(code),
                fmt_ms(p.duration_ms)
            ),
            None => "exited".to_owned(),
        },
        other => match sig {
            Some(s) => format!("ended ({other}) by {}", signal_phrase(s)),
            None => format!("ended ({other})"),
        },
    }
}

/// Whether cgroupfs shows the level at its limit: its high-water mark reached the limit (to
/// within 1%, since reclaim keeps usage just under it) or it counted limit hits. Without that
/// evidence the OOM may have been the host's, and the sentence only names the limit.
pub(super) fn limit_was_hit(level: &MemcgLevel, limit: u64) -> bool {
    level.failcnt.is_some_and(|f| f > 0)
        || level
            .peak_bytes
            .is_some_and(|peak| peak >= limit.saturating_sub(limit / 100))
}

/// "command not found" from "exit status 127: command not found".
pub(super) fn exit_tail(code: u8) -> String {
    let title = explain::exit_code(code).title;
    match title.split_once(": ") {
        Some((_, tail)) => tail.to_owned(),
        None => title,
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub(super) fn fmt_kb(kb: u64) -> String {
    fmt_bytes(kb.saturating_mul(1024))
}

pub(super) fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub(super) fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "an unknown time".to_owned();
    }
    if ms < 1000.0 {
        return format!("{ms:.0} ms");
    }
    let s = ms / 1000.0;
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let total = s as u64;
    let (d, h, m, sec) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {sec} s")
    }
}

pub(super) fn fmt_opt_bytes(b: Option<u64>) -> String {
    b.map_or_else(|| "-".to_owned(), fmt_bytes)
}

pub(super) fn fmt_opt_u64(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

pub(super) fn lineage_text(procs: &[Ancestor]) -> String {
    procs
        .iter()
        .map(|p| format!("{} ({})", p.comm, p.pid))
        .collect::<Vec<_>>()
        .join(" <- ")
}

pub(super) fn kv(out: &mut String, key: &str, value: &str) {
    out.push_str(&format!("  {key:<15} {value}\n"));
}

pub(super) fn section(out: &mut String, title: &str) {
    out.push('\n');
    out.push_str(title);
    out.push('\n');
}

/// The report as text for people: a title line, the summary, then the sections What died,
/// Cause, Evidence, Memory cgroup, Session, Last resource samples, Still running and
/// Explanation, and a closing note when records were lost around the exit.
pub fn render_text(r: &Report) -> String {
    let r = &printable_report(r);
    let p = &r.process;
    let mut out = format!(
        "Exit report {}: {} (pid {}) {} at {}\n\n{}\n",
        r.id, p.comm, p.pid, r.cause, p.ended, r.summary
    );

    section(&mut out, "What died");
    kv(
        &mut out,
        "process",
        &format!(
            "{} (pid {}{}), uid {}, parent pid {}",
            p.comm,
            p.pid,
            if p.tid != p.pid {
                format!(", last thread {}", p.tid)
            } else {
                String::new()
            },
            p.uid,
            p.ppid
        ),
    );
    kv(
        &mut out,
        "proc_id",
        p.proc_id.as_deref().unwrap_or("unknown"),
    );
    kv(
        &mut out,
        "command",
        &p.cmdline
            .as_ref()
            .map_or_else(|| "(unknown)".to_owned(), |c| c.join(" ")),
    );
    kv(
        &mut out,
        "started",
        p.started.as_deref().unwrap_or("unknown"),
    );
    kv(&mut out, "ended", &p.ended);
    kv(&mut out, "lifetime", &fmt_ms(p.duration_ms));
    kv(
        &mut out,
        "peak RSS",
        &match (p.usage.peak_rss_kb, p.usage.own_peak_rss_kb) {
            (Some(peak), Some(own)) => {
                format!("{} ({} in its own last image)", fmt_kb(peak), fmt_kb(own))
            }
            (Some(peak), None) => fmt_kb(peak),
            (None, _) => "unknown (the kernel could not read it)".to_owned(),
        },
    );
    kv(
        &mut out,
        "CPU time",
        &match (p.usage.utime_ms, p.usage.stime_ms) {
            (Some(u), Some(s)) => format!("{} user, {} system", fmt_ms(u), fmt_ms(s)),
            _ => "unknown (the kernel could not read it)".to_owned(),
        },
    );
    if let Some(sess) = &r.session {
        kv(
            &mut out,
            "session",
            &format!(
                "{} {}{}",
                agent_name(&sess.agent),
                session_short(&sess.id, sess.claude_session_id.as_deref()),
                sess.cwd
                    .as_deref()
                    .map(|c| format!(" in {c}"))
                    .unwrap_or_default()
            ),
        );
    } else {
        kv(&mut out, "session", "none (outside every session)");
    }
    if let Some(t) = &r.tool_call {
        kv(
            &mut out,
            "tool call",
            &format!(
                "{} {}{}",
                t.name,
                t.id,
                t.command
                    .as_deref()
                    .map(|c| format!(": {}", truncate(&one_line(c), 200)))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(a) = &r.ancestry {
        kv(&mut out, "ancestry", &lineage_text(a));
    }

    section(&mut out, "Cause");
    kv(&mut out, "cause", r.cause.as_str());
    kv(&mut out, "report reason", r.reason.as_str());
    let status = match (p.status.signal, p.status.exit_code) {
        (Some(sig), _) => format!(
            "killed by {} (signal {sig}){}",
            p.status
                .signal_name
                .clone()
                .unwrap_or_else(|| signal_label(i32::from(sig))),
            if p.status.core_dumped {
                ", core dumped"
            } else {
                ", no core dump"
            }
        ),
        (None, Some(code)) => format!("exit status {code}"),
        (None, None) => "unknown".to_owned(),
    };
    kv(&mut out, "status", &status);

    section(&mut out, "Evidence");
    let mut evidence = false;
    if let Some(k) = &r.killed_by {
        evidence = true;
        kv(
            &mut out,
            "signal",
            &format!(
                "{} (signal {}), si_code {}{}",
                k.signal_name
                    .clone()
                    .unwrap_or_else(|| format!("signal {}", k.signal)),
                k.signal,
                k.si_code,
                k.si_code_name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
        );
        let origin = if k.same_session {
            "same session as the victim".to_owned()
        } else if let Some(s) = &k.session_id {
            format!("another session ({s})")
        } else {
            "outside every session".to_owned()
        };
        kv(
            &mut out,
            "sent by",
            &format!(
                "{} (pid {}, uid {}, proc_id {}), {origin}",
                k.comm,
                k.pid,
                k.uid,
                k.proc_id.as_deref().unwrap_or("unknown")
            ),
        );
        kv(
            &mut out,
            "sender lineage",
            &if k.lineage.is_empty() {
                "unknown (the sender was gone or not followed)".to_owned()
            } else {
                lineage_text(&k.lineage)
            },
        );
    }
    if let Some(o) = &r.oom {
        evidence = true;
        kv(
            &mut out,
            "OOM trigger",
            &format!(
                "{} (pid {}) was allocating when the victim was chosen",
                o.trigger_comm, o.trigger_pid
            ),
        );
        kv(
            &mut out,
            "victim memory",
            &format!(
                "anonymous RSS {}, total virtual memory {}",
                o.anon_rss_kb.map_or_else(|| "unknown".to_owned(), fmt_kb),
                o.total_vm_kb.map_or_else(|| "unknown".to_owned(), fmt_kb)
            ),
        );
        if let Some(id) = o.memcg_id {
            kv(&mut out, "victim memcg id", &id.to_string());
        }
    }
    if !evidence {
        let text = match r.cause.as_str() {
            "exited" => {
                "the process ended by itself (exit or return from main); no signal was involved"
            }
            "crashed" => {
                "the kernel (or the process itself, e.g. abort()) raised the signal: a fault in the process's own code"
            }
            "killed_by_kernel" => "the kernel sent the signal (SI_KERNEL), no other process",
            "killed" => {
                "no sender was seen: a sibling thread's exit_group or execve, or a lost record"
            }
            _ => "none recorded",
        };
        kv(&mut out, "note", text);
    }

    section(&mut out, "Memory cgroup");
    let m = &r.memcg;
    kv(
        &mut out,
        "path",
        &format!(
            "{}{}",
            m.path.as_deref().unwrap_or("unknown"),
            m.id.map(|id| format!(" (id {id})")).unwrap_or_default()
        ),
    );
    match &m.binding_limit {
        Some(b) => kv(
            &mut out,
            "binding limit",
            &format!(
                "{} at {}{}",
                fmt_bytes(b.bytes),
                b.path,
                if b.own {
                    " (its own cgroup)"
                } else {
                    " (an ancestor)"
                }
            ),
        ),
        None if m.levels.is_empty() => {}
        None => kv(&mut out, "binding limit", "none: no level has a limit"),
    }
    if m.levels.is_empty() {
        kv(&mut out, "levels", "not read");
    } else {
        out.push_str(&format!(
            "  {:<32} {:>11} {:>11} {:>11} {:>9} {:>9}\n",
            "cgroup (innermost first)", "limit", "usage", "peak", "oom_kills", "failcnt"
        ));
        for l in &m.levels {
            out.push_str(&format!(
                "  {:<32} {:>11} {:>11} {:>11} {:>9} {:>9}\n",
                l.path,
                l.limit_bytes.map_or_else(|| "none".to_owned(), fmt_bytes),
                fmt_opt_bytes(l.usage_bytes),
                fmt_opt_bytes(l.peak_bytes),
                fmt_opt_u64(l.oom_kills),
                fmt_opt_u64(l.failcnt)
            ));
        }
    }
    if let Some(note) = &m.note {
        kv(&mut out, "note", note);
    }

    section(&mut out, "Session");
    match &r.session {
        Some(s) => {
            kv(&mut out, "id", &s.id);
            kv(&mut out, "agent", &s.agent);
            kv(
                &mut out,
                "root",
                &format!("pid {}, started {}", s.root_pid, s.root_start),
            );
            kv(&mut out, "project", s.cwd.as_deref().unwrap_or("unknown"));
            kv(
                &mut out,
                "claude session",
                s.claude_session_id.as_deref().unwrap_or("unknown"),
            );
            kv(
                &mut out,
                "version",
                s.version.as_deref().unwrap_or("unknown"),
            );
        }
        None => kv(&mut out, "session", "none (outside every session)"),
    }

    section(&mut out, "Last resource samples");
    if r.last_samples.is_empty() {
        kv(&mut out, "samples", "none");
    } else {
        out.push_str(&format!(
            "  {:<24} {:>11} {:>7} {:>6} {:>8}  {}\n",
            "time", "RSS", "CPU %", "procs", "threads", "top process"
        ));
        let skip = r.last_samples.len().saturating_sub(SAMPLES_SHOWN);
        for s in &r.last_samples[skip..] {
            out.push_str(&format!(
                "  {:<24} {:>11} {:>7} {:>6} {:>8}  {}\n",
                short_time(&s.ts),
                fmt_kb(s.rss_kb),
                s.cpu_percent
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
                s.processes,
                s.threads,
                s.top.as_ref().map_or_else(
                    || "-".to_owned(),
                    |t| format!("{} (pid {}) {}", t.comm, t.pid, fmt_kb(t.rss_kb))
                )
            ));
        }
    }

    section(&mut out, "Still running");
    if r.alive.is_empty() {
        kv(
            &mut out,
            "processes",
            if r.session.is_some() {
                "none of the session's processes"
            } else {
                "not tracked outside sessions"
            },
        );
    } else {
        for a in &r.alive {
            out.push_str(&format!("  {:>8}  {}\n", a.pid, a.comm));
        }
    }

    section(&mut out, "Explanation");
    match &r.explanation {
        Some(e) => {
            for line in e.to_string().lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str("  ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        None => kv(&mut out, "explanation", "none"),
    }

    if !r.complete {
        out.push_str(&format!(
            "\nNote: this report may be incomplete: {} record(s) were lost around this exit, so a signal, OOM record or fork that explains it may be missing.\n",
            r.lost_nearby
        ));
    }
    out
}

impl std::fmt::Display for ExplanationText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Explanation {
            title: self.title.clone(),
            meaning: self.meaning.clone(),
            common_causes: self.common_causes.clone(),
            what_to_do: self.what_to_do.clone(),
        }
        .fmt(f)
    }
}

/// "2026-11-21 22:01:58" from an RFC 3339 timestamp (the input itself when it is not one).
pub(super) fn short_time(ts: &str) -> String {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ts.to_owned(),
    }
}

/// The table printed by `claude-monitor reports`.
pub fn render_list(reports: &[ReportSummary]) -> String {
    let reports: &[ReportSummary] = &reports.iter().map(printable_summary).collect::<Vec<_>>();
    if reports.is_empty() {
        return "no reports\n".to_owned();
    }
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                short_time(&r.died),
                r.cause.to_string(),
                r.pid.to_string(),
                r.comm.clone(),
                r.session_id.as_deref().map_or_else(
                    || "-".to_owned(),
                    |id| session_short(id, r.claude_session_id.as_deref()),
                ),
                truncate(&r.summary, LIST_SUMMARY_CHARS),
            ]
        })
        .collect();
    let header = [
        "ID",
        "TIME (UTC)",
        "CAUSE",
        "PID",
        "COMM",
        "SESSION",
        "SUMMARY",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(str::to_owned));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// `r` with every string made printable (what users control: comm, argv, cwd, commands,
/// paths), for text: an escape sequence or a newline in a value must not reach a terminal.
fn printable_report(r: &Report) -> Report {
    printable_copy(r).unwrap_or_else(|| r.clone())
}

fn printable_summary(s: &ReportSummary) -> ReportSummary {
    printable_copy(s).unwrap_or_else(|| s.clone())
}

/// Through the serde form, so that no field is forgotten; `None` if that round trip fails
/// (it cannot for these types).
pub(super) fn printable_copy<T: serde::Serialize + serde::de::DeserializeOwned>(
    x: &T,
) -> Option<T> {
    let mut v = serde_json::to_value(x).ok()?;
    printable_json(&mut v);
    serde_json::from_value(v).ok()
}

//! The summary of a command run by `claude-monitor run`: how its whole tree ended, in one
//! sentence with its evidence, then the figures (duration, CPU, memory, processes), the
//! abnormal deaths in the tree and what is still running. Printed on stderr as text
//! ([`render_command`]), written as JSON with `--summary-json`, and kept in the command's
//! report (`Report::command`) when a data directory is configured.

use serde::{Deserialize, Serialize};

use super::{model::*, text::*};
use crate::event::{CauseKind, ExitStatus};

/// Where the facts came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The kernel programs, loaded by `run` itself.
    Kernel,
    /// The daemon's kernel programs, through its API socket (`POST /v1/watch`, then the
    /// command's session's event stream).
    Daemon,
    /// /proc, polled: short-lived processes may be missed, senders are unknown.
    Proc,
}

names!(Source {
    Kernel => "kernel",
    Daemon => "daemon",
    Proc => "proc",
});

/// How the command's tree ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandSummary {
    /// The command as given (secrets redacted).
    pub command: Vec<String>,
    pub cwd: Option<String>,
    pub pid: u32,
    /// RFC 3339.
    pub started: String,
    pub ended: String,
    pub duration_ms: f64,
    /// What `run` exits with: the command's code, or 128+N when signal N killed it.
    pub exit_status: u8,
    /// The command's wait status.
    pub status: ExitStatus,
    /// "exit status 3: ...", "SIGKILL: ...".
    pub status_meaning: String,
    /// The command's cause of death (`exit.cause`); with `source: proc`, read from the wait
    /// status alone (`killed` has no sender then).
    pub cause: CauseKind,
    /// The cause in one sentence with its evidence.
    pub sentence: String,
    /// When the command itself only exited, the abnormal death in its tree that most likely
    /// made it fail (an OOM kill first, then a crash, a kill by the kernel, a kill).
    pub likely_cause: Option<String>,
    pub killed_by: Option<SenderInfo>,
    /// CPU time of the whole tree (every process that exited), ms.
    pub cpu_user_ms: Option<f64>,
    pub cpu_system_ms: Option<f64>,
    /// The command's own peak RSS: of its own (last) image when the kernel gives it,
    /// without what the fork carried over; polling, `wait4`'s (the command's, or the
    /// largest of the descendants it waited for).
    pub peak_rss_kb: Option<u64>,
    /// The process of the tree with the largest peak RSS (of its own image, as above);
    /// polling, the largest RSS a sample saw.
    pub heaviest: Option<Heaviest>,
    /// Processes the tree started (the command included).
    pub processes: u64,
    /// Processes that exited by themselves with a non-zero status (the command excluded).
    pub nonzero_exits: u64,
    /// Abnormal deaths in the tree (killed, OOM-killed, crashed, terminated), in order, at
    /// most 32 (`abnormal_total` counts them all).
    pub abnormal: Vec<TreeDeath>,
    pub abnormal_total: u64,
    /// Descendants still running when the command ended (orphans), with their memory.
    pub running: Vec<Running>,
    /// Resource samples of the tree (`--resources`), when taken.
    pub resources: Option<ResourcePeaks>,
    pub source: Source,
    /// Short-lived processes may be missed (`source: proc`).
    pub approximate: bool,
    /// No record was lost.
    pub complete: bool,
    pub lost: u64,
    /// What could not be seen or done, one sentence each.
    pub notes: Vec<String>,
    /// With `--restart`: the runs so far and what was decided after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<Supervision>,
}

/// Most runs and delays a [`Supervision`] keeps (the oldest go first; the totals count all).
pub const SUPERVISION_KEPT: usize = 100;

/// `run --restart`: every run of the command and every delay before a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Supervision {
    /// Restarts so far.
    pub restarts: u32,
    /// The last runs, oldest first, at most [`SUPERVISION_KEPT`].
    pub runs: Vec<SupervisedRun>,
    pub runs_total: u64,
    /// The delay before each restart, in order, ms (the last [`SUPERVISION_KEPT`]).
    pub delays_ms: Vec<f64>,
    /// After this run: `restart`, `done` or `parked`.
    pub decision: String,
    /// Why (`done` and `parked`).
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupervisedRun {
    pub pid: u32,
    pub exit_status: u8,
    pub cause: CauseKind,
    pub ran_ms: f64,
}

impl Supervision {
    /// Adds the run `s` and what was decided after it (`delay` for a restart).
    pub fn record(
        &mut self,
        s: &CommandSummary,
        decision: &str,
        reason: Option<String>,
        delay: Option<std::time::Duration>,
    ) {
        if self.runs.len() >= SUPERVISION_KEPT {
            self.runs.remove(0);
        }
        self.runs.push(SupervisedRun {
            pid: s.pid,
            exit_status: s.exit_status,
            cause: s.cause,
            ran_ms: s.duration_ms,
        });
        self.runs_total += 1;
        if let Some(d) = delay {
            if self.delays_ms.len() >= SUPERVISION_KEPT {
                self.delays_ms.remove(0);
            }
            self.delays_ms.push(d.as_secs_f64() * 1000.0);
            self.restarts += 1;
        }
        self.decision = decision.to_owned();
        self.reason = reason;
    }
}

/// A duration for people: "250 ms", "2.0 s", "2 min 0 s".
pub fn fmt_duration(d: std::time::Duration) -> String {
    fmt_ms(d.as_secs_f64() * 1000.0)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heaviest {
    pub pid: u32,
    pub comm: String,
    pub peak_rss_kb: u64,
}

/// One abnormal death below the command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeDeath {
    pub pid: u32,
    pub comm: String,
    /// Generations below the command (1: its child).
    pub depth: Option<u32>,
    pub cause: CauseKind,
    pub exit_code: Option<u8>,
    pub signal_name: Option<String>,
    pub killed_by: Option<SenderInfo>,
    /// Its report's sentence.
    pub sentence: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub pid: u32,
    pub comm: String,
    pub rss_kb: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourcePeaks {
    pub samples: u64,
    pub peak_rss_kb: u64,
    pub peak_vsz_kb: u64,
    pub peak_cpu_percent: Option<f64>,
    pub peak_processes: u32,
}

impl TreeDeath {
    pub fn of(report: &Report, depth: Option<u32>) -> TreeDeath {
        TreeDeath {
            pid: report.process.pid,
            comm: report.process.comm.clone(),
            depth,
            cause: report.cause,
            exit_code: report.process.status.exit_code,
            signal_name: report.process.status.signal_name.clone(),
            killed_by: report.killed_by.clone(),
            sentence: report.summary.clone(),
        }
    }
}

/// "child", "grandchild", "great-grandchild", "descendant (5 generations down)".
pub fn relation(depth: Option<u32>) -> String {
    match depth {
        Some(1) => "child".to_owned(),
        Some(2) => "grandchild".to_owned(),
        Some(3) => "great-grandchild".to_owned(),
        Some(n) if n > 3 => format!("descendant ({n} generations down)"),
        _ => "descendant".to_owned(),
    }
}

/// How likely an abnormal death made the command fail: higher first.
fn weight(cause: CauseKind) -> u8 {
    match cause {
        CauseKind::OomKilled => 5,
        CauseKind::Crashed => 4,
        CauseKind::KilledByKernel => 3,
        CauseKind::Killed => 2,
        CauseKind::Terminated => 1,
        CauseKind::Exited | CauseKind::Unknown => 0,
    }
}

/// The likely cause when the command itself just exited non-zero: the weightiest abnormal
/// death of its tree (the first of equals), as "its grandchild memhog (pid 7) was killed
/// by the kernel's OOM killer ...".
pub fn likely_cause(status: &ExitStatus, cause: CauseKind, deaths: &[TreeDeath]) -> Option<String> {
    if cause != CauseKind::Exited || status.exit_code == Some(0) {
        return None;
    }
    let worst = deaths.iter().filter(|d| weight(d.cause) > 0).fold(
        None::<&TreeDeath>,
        |best, d| match best {
            Some(b) if weight(b.cause) >= weight(d.cause) => Some(b),
            _ => Some(d),
        },
    )?;
    Some(format!("its {}: {}", relation(worst.depth), worst.sentence))
}

/// The meaning of a wait status: "exit status 3: ...", "SIGKILL: ...".
pub fn status_meaning(status: &ExitStatus) -> String {
    super::build::explanation_of(status).map_or_else(|| "unknown".to_owned(), |e| e.title)
}

/// "make (pid 7) exited with status 2 (...) after 3.1 s." from a wait status alone (no
/// kernel record: no sender, no OOM facts).
pub fn status_sentence(name: &str, pid: u32, status: &ExitStatus, duration_ms: f64) -> String {
    match (status.exit_code, status.signal) {
        (Some(code), _) => format!(
            "{name} (pid {pid}) exited with status {code} ({}) after {}.",
            exit_tail(code),
            fmt_ms(duration_ms)
        ),
        (None, Some(sig)) => format!(
            "{name} (pid {pid}) was ended by {} after {}{}; the sender is not known.",
            signal_phrase(i32::from(sig)),
            fmt_ms(duration_ms),
            if status.core_dumped {
                " and dumped core"
            } else {
                ""
            }
        ),
        (None, None) => format!("{name} (pid {pid}) ended."),
    }
}

/// The summary as text for stderr: every line starts `claude-monitor:` so it stands apart
/// from the command's own output; what the command's users control is escaped.
pub fn render_command(s: &CommandSummary) -> String {
    let s = printable_copy(s).unwrap_or_else(|| s.clone());
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        out.push_str(&format!("claude-monitor: {key:<10} {value}\n"));
    };
    line("ended", s.sentence.clone());
    if let Some(likely) = &s.likely_cause {
        line("cause", format!("likely {likely}"));
    }
    if let Some(k) = &s.killed_by
        && !k.lineage.is_empty()
    {
        line("sender", lineage_text(&k.lineage));
    }
    line(
        "status",
        format!(
            "{} → exit {}{}",
            s.status_meaning,
            s.exit_status,
            if s.status.core_dumped {
                " (core dumped)"
            } else {
                ""
            }
        ),
    );
    let cpu = match (s.cpu_user_ms, s.cpu_system_ms) {
        (Some(u), Some(sy)) => format!(
            "; CPU {} user, {} system (whole tree)",
            fmt_ms(u),
            fmt_ms(sy)
        ),
        _ => String::new(),
    };
    line("duration", format!("{}{cpu}", fmt_ms(s.duration_ms)));
    let mut memory = match s.peak_rss_kb {
        Some(kb) => format!("peak RSS {} (the command)", fmt_kb(kb)),
        None => "peak RSS unknown (the command)".to_owned(),
    };
    if let Some(h) = &s.heaviest
        && h.pid != s.pid
    {
        memory.push_str(&format!(
            "; heaviest {} (pid {}) {}",
            h.comm,
            h.pid,
            fmt_kb(h.peak_rss_kb)
        ));
    }
    if let Some(r) = s.resources.as_ref().filter(|r| r.peak_rss_kb > 0) {
        memory.push_str(&format!(
            "; tree peak {} RSS, {} VSZ over {} samples",
            fmt_kb(r.peak_rss_kb),
            fmt_kb(r.peak_vsz_kb),
            r.samples
        ));
    }
    line("memory", memory);
    let mut procs = format!(
        "{} started{}",
        s.processes,
        if s.approximate { " (seen)" } else { "" }
    );
    if s.nonzero_exits > 0 {
        procs.push_str(&format!("; {} exited non-zero", s.nonzero_exits));
    }
    procs.push_str(&format!("; {} died abnormally", s.abnormal_total));
    line("processes", procs);
    for d in &s.abnormal {
        line(
            "",
            format!("{} ({}): {}", d.comm, relation(d.depth), d.sentence),
        );
    }
    if s.abnormal_total > s.abnormal.len() as u64 {
        line(
            "",
            format!(
                "... and {} more",
                s.abnormal_total - s.abnormal.len() as u64
            ),
        );
    }
    if !s.running.is_empty() {
        line(
            "running",
            format!(
                "{} still running: {}",
                s.running.len(),
                s.running
                    .iter()
                    .take(10)
                    .map(|r| format!(
                        "{} (pid {}, {})",
                        r.comm,
                        r.pid,
                        r.rss_kb.map_or_else(|| "RSS unknown".to_owned(), fmt_kb)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if s.approximate {
        line(
            "note",
            "approximate: short-lived processes may be missed (watched by polling /proc, not by the kernel)".to_owned(),
        );
    }
    if !s.complete {
        line(
            "note",
            format!(
                "{} records were lost: facts may be missing from this summary",
                s.lost
            ),
        );
    }
    for n in &s.notes {
        line("note", n.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(pid: u32, cause: CauseKind, depth: u32) -> TreeDeath {
        TreeDeath {
            pid,
            comm: format!("p{pid}"),
            depth: Some(depth),
            cause,
            exit_code: None,
            signal_name: Some("SIGKILL".into()),
            killed_by: None,
            sentence: format!("p{pid} (pid {pid}) died."),
        }
    }

    fn status(code: u8) -> ExitStatus {
        ExitStatus {
            exit_code: Some(code),
            ..ExitStatus::default()
        }
    }

    #[test]
    fn the_weightiest_death_is_the_likely_cause() {
        let deaths = [
            death(5, CauseKind::Killed, 1),
            death(6, CauseKind::OomKilled, 2),
            death(7, CauseKind::OomKilled, 3),
            death(8, CauseKind::Crashed, 1),
        ];
        assert_eq!(
            likely_cause(&status(1), CauseKind::Exited, &deaths).as_deref(),
            Some("its grandchild: p6 (pid 6) died.")
        );
        // A command that succeeded, or died itself, needs no likely cause.
        assert_eq!(likely_cause(&status(0), CauseKind::Exited, &deaths), None);
        assert_eq!(likely_cause(&status(1), CauseKind::Killed, &deaths), None);
        assert_eq!(likely_cause(&status(1), CauseKind::Exited, &[]), None);
    }

    #[test]
    fn sentences_from_a_wait_status_alone() {
        assert_eq!(
            status_sentence("make", 7, &status(2), 3100.0),
            "make (pid 7) exited with status 2 (misuse of a shell builtin or bad usage) after 3.1 s."
        );
        let killed = ExitStatus {
            exit_code: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
            core_dumped: false,
        };
        let s = status_sentence("make", 7, &killed, 10.0);
        assert!(s.starts_with("make (pid 7) was ended by SIGKILL ("), "{s}");
        assert!(s.ends_with("after 10 ms; the sender is not known."), "{s}");
    }

    #[test]
    fn relations() {
        assert_eq!(relation(Some(1)), "child");
        assert_eq!(relation(Some(2)), "grandchild");
        assert_eq!(relation(Some(3)), "great-grandchild");
        assert_eq!(relation(Some(5)), "descendant (5 generations down)");
        assert_eq!(relation(None), "descendant");
    }

    #[test]
    fn text_names_everything_and_escapes_what_users_control() {
        let s = CommandSummary {
            command: vec!["make".into(), "all".into()],
            cwd: Some("/src".into()),
            pid: 10,
            started: "2026-12-08T00:00:00Z".into(),
            ended: "2026-12-08T00:00:02Z".into(),
            duration_ms: 2000.0,
            exit_status: 2,
            status: status(2),
            status_meaning: status_meaning(&status(2)),
            cause: CauseKind::Exited,
            sentence: "make (pid 10) exited with status 2.".into(),
            likely_cause: Some("its child: cc\u{1b}[31m (pid 11) crashed.".into()),
            killed_by: None,
            cpu_user_ms: Some(1500.0),
            cpu_system_ms: Some(250.0),
            peak_rss_kb: Some(2048),
            heaviest: Some(Heaviest {
                pid: 11,
                comm: "cc".into(),
                peak_rss_kb: 4096,
            }),
            processes: 3,
            nonzero_exits: 0,
            abnormal: vec![death(11, CauseKind::Crashed, 1)],
            abnormal_total: 1,
            running: vec![Running {
                pid: 12,
                comm: "sleep".into(),
                rss_kb: Some(1024),
            }],
            resources: None,
            source: Source::Kernel,
            approximate: false,
            complete: true,
            lost: 0,
            notes: vec![],
            supervision: None,
        };
        let text = render_command(&s);
        for want in [
            "claude-monitor: ended      make (pid 10) exited with status 2.",
            "likely its child: cc\\u{1b}[31m (pid 11) crashed.",
            "→ exit 2",
            "2.0 s; CPU 1.5 s user, 250 ms system (whole tree)",
            "peak RSS 2.0 MiB (the command); heaviest cc (pid 11) 4.0 MiB",
            "3 started; 1 died abnormally",
            "p11 (child): p11 (pid 11) died.",
            "1 still running: sleep (pid 12, 1.0 MiB)",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(!text.contains('\u{1b}'));
        assert!(!text.contains("approximate"));
    }
}

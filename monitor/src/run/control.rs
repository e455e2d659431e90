//! `claude-monitor status` (the runs of `claude-monitor run`) and `claude-monitor stop ID`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::state::{self, RunState};
use crate::{host::proc::PROC, output::printable::printable};

/// The live runs, as a table or JSON.
pub fn status(json: bool) -> Result<()> {
    let runs = state::list(&state::dirs_to_read(), Path::new(PROC));
    if json {
        println!("{}", serde_json::json!({ "runs": runs }));
        return Ok(());
    }
    print!("{}", render(&runs));
    Ok(())
}

/// The table: one line a run, what users control escaped.
pub fn render(runs: &[RunState]) -> String {
    if runs.is_empty() {
        return "No command runs under `claude-monitor run`.\n".to_owned();
    }
    let mut out = format!(
        "{:<8} {:<12} {:<9} {:<8} {:>8}  {:<24} {}\n",
        "ID", "NAME", "PHASE", "PID", "RESTARTS", "STARTED", "COMMAND"
    );
    for r in runs {
        let command = printable(&r.command.join(" ")).into_owned();
        out.push_str(&format!(
            "{:<8} {:<12} {:<9} {:<8} {:>8}  {:<24} {}\n",
            r.id,
            printable(r.name.as_deref().unwrap_or("-")),
            r.phase,
            r.child_pid
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            if r.supervised {
                r.restarts.to_string()
            } else {
                "-".to_owned()
            },
            r.started,
            command
        ));
        if let Some(last) = &r.last {
            out.push_str(&format!(
                "{:<8} last ended {}: {}\n",
                "",
                last.ended,
                printable(&last.sentence)
            ));
        }
        if let Some(next) = &r.next_start {
            out.push_str(&format!("{:<8} restarts at {next}\n", ""));
        }
    }
    out
}

/// Sends SIGTERM to the `run` that `id` names and waits until it is gone.
pub fn stop(id: &str, timeout: Duration) -> Result<()> {
    let proc_root = Path::new(PROC);
    let runs = state::list(&state::dirs_to_read(), proc_root);
    let run = state::find(&runs, id).map_err(anyhow::Error::msg)?;
    // SAFETY: plain kill(2); the pid was just checked to be this run (pid and start time).
    if unsafe { libc::kill(run.id as i32, libc::SIGTERM) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!(
            "cannot signal run {} (uid {}): {e}{}",
            run.id,
            run.uid,
            if e.raw_os_error() == Some(libc::EPERM) {
                "; only its user or root can stop it"
            } else {
                ""
            }
        );
    }
    println!(
        "claude-monitor: sent SIGTERM to run {} ({}); waiting for it to end",
        run.id,
        printable(&run.command.join(" "))
    );
    let deadline = Instant::now() + timeout;
    while state::alive(proc_root, run) {
        if Instant::now() >= deadline {
            bail!(
                "run {} still runs after {:.0} s (its command may ignore SIGTERM and have a long --grace)",
                run.id,
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("claude-monitor: run {} ended", run.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::state::{LastEnd, Phase};

    #[test]
    fn the_table_escapes_what_users_control() {
        assert!(render(&[]).starts_with("No command runs"));
        let r = RunState {
            id: 42,
            start_ticks: 1,
            uid: 1000,
            name: Some("build".into()),
            command: vec!["make".into(), "\u{1b}[2Jall".into()],
            cwd: None,
            started: "2026-12-08T00:00:00.000Z".into(),
            supervised: true,
            phase: Phase::Waiting,
            child_pid: None,
            restarts: 3,
            next_start: Some("2026-12-08T00:01:00.000Z".into()),
            last: Some(LastEnd {
                ended: "2026-12-08T00:00:58.000Z".into(),
                exit_status: 1,
                cause: "exited".into(),
                sentence: "make (pid 7) exited with status 1.".into(),
            }),
        };
        let text = render(&[r]);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            text.contains("42       build        waiting   -               3"),
            "{text}"
        );
        assert!(text.contains("make \\u{1b}[2Jall"), "{text}");
        assert!(
            text.contains(
                "last ended 2026-12-08T00:00:58.000Z: make (pid 7) exited with status 1."
            )
        );
        assert!(text.contains("restarts at 2026-12-08T00:01:00.000Z"));
    }
}

//! End-to-end harness for the real Claude Code CLI.
//!
//! - [`install`]: installs a pinned `@anthropic-ai/claude-code` from npm once into a cache
//!   under the workspace's `target/claude-cli/<version>/`, and lays out the native
//!   installer's shape (`~/.local/share/claude/versions/<v>` behind `~/.local/bin/claude`)
//!   in a throwaway home.
//! - [`mock`]: a loopback mock of the Anthropic Messages API (HTTP/1.1, streaming SSE),
//!   scripted per test: it answers with `tool_use`s of the Bash tool for the commands the
//!   test chose, in order, then with a final text, and records every request it received.
//! - [`driver`]: runs the CLI against the mock with an isolated `HOME` (and optionally
//!   `CLAUDE_CONFIG_DIR`) in print mode (`-p`), or interactively inside a private tmux
//!   server, as a person would.
//!
//! Everything a test creates (temporary directories, the mock's threads, tmux servers, the
//! CLI and the processes its tools started) is removed by `Drop`, also when the test fails.
//! Nothing is global: scenarios using this harness can run in parallel.

pub mod driver;
pub mod install;
pub mod mock;

use std::{
    path::Path,
    time::{Duration, Instant},
};

/// Polls `cond` every 20 ms until it holds; panics after `timeout` with `what` (and what
/// `detail` says at that moment).
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    detail: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{}",
            detail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process's name (`/proc/PID/comm`), if it exists.
pub fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end_matches('\n').to_owned())
}

/// The process's command line, NUL-separated arguments joined by spaces.
pub fn cmdline_of(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// True while the process exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The first process among `root`'s descendants (not `root`) whose comm is `comm`.
pub fn descendant_named(root: u32, comm: &str) -> Option<u32> {
    crate::descendants(root)
        .into_iter()
        .skip(1)
        .find(|&p| comm_of(p).is_some_and(|c| c == comm))
}

/// Waits for a descendant of `root` named `comm` and returns its pid.
pub fn wait_descendant(root: u32, comm: &str, timeout: Duration) -> u32 {
    let mut found = None;
    wait_until(
        timeout,
        &format!("a descendant `{comm}` of {root}"),
        || {
            found = descendant_named(root, comm);
            found.is_some()
        },
        || process_tree(root),
    );
    found.expect("found")
}

/// `root`'s process tree now, one `pid comm cmdline` line each (for failure messages).
pub fn process_tree(root: u32) -> String {
    crate::descendants(root)
        .into_iter()
        .map(|p| {
            format!(
                "  {p} {} {}",
                comm_of(p).unwrap_or_default(),
                cmdline_of(p).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// SIGKILLs `pid` (no error if it is gone).
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid as i32, signal) };
}

/// `path` with every non-alphanumeric character as `-`: Claude Code's project directory
/// name under `<config>/projects/`.
pub fn project_key(path: &Path) -> String {
    path.display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

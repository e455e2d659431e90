//! What the host shows about Claude Code (and other agents), read from userspace.
//!
//! The kernel programs report pids, comms and signals; attributing an event to an agent
//! session needs facts that only exist in /proc and in the files the agent writes. These
//! modules read those facts. They are pure building blocks: plain data in and out, no global
//! state, no eBPF, so the process table that calls them decides when (at exec, at start-up
//! scan, per event) and each can be tested with fixtures:
//!
//! - [`detect`]: is this process a session root? Built-in rules for the shapes Claude Code
//!   has on Linux, plus configurable rules for any other program.
//! - [`registry`]: the live session registry `~/.claude/sessions/<PID>.json` (session id,
//!   cwd, version), checked against the process start time so a stale file left by a killed
//!   session never names a reused pid.
//! - [`transcript`]: where a session's transcript lives, and an incremental reader that
//!   knows which tool calls are in flight and which one a Bash wrapper process runs.
//! - [`environ`]: selected variables of `/proc/PID/environ`, and nothing else (that
//!   environment can hold secret tokens).
//!
//! The shapes these modules recognise are those measured on real installs and written down
//! in issue 3 ("How Claude Code looks on a Linux host").

pub mod detect;
pub mod environ;
pub mod registry;
pub mod transcript;

/// The agent label of the built-in rules.
pub const CLAUDE_CODE: &str = "claude-code";

#[cfg(test)]
pub(crate) mod testutil {
    pub use crate::testutil::TempDir;
}

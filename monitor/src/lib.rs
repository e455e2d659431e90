//! claude-monitor: an eBPF host agent that explains why processes died.
//!
//! The folders are the architecture. Dependencies point one way: the kernel side feeds the
//! pipeline, the pipeline produces the schema, and the outputs read the schema; the
//! `layering` test reads the sources and fails on an import against this map:
//!
//! ```text
//!                event            (the schema: imports nothing)
//!          ┌───────┼────────┐
//!       signals   host    output ──► signals
//!                  │
//!               kernel ◄── claude
//!                  │         │
//!               pipeline ◄───┘        report ──► output, claude, host, signals
//!                  │                    │
//!   trace, run, daemon, cli, app ◄──────┘  (put everything together)
//! ```
//!
//! - `event/`: the JSON schema, plain serialize-only data and enums of fixed values.
//! - `signals/`: signal, `si_code` and wait-status names, and the explanations table.
//! - `host/`: facts read from the host: the clock, cgroup paths, memory cgroup limits.
//! - `kernel/`: the running kernel's BTF, the field offsets the programs need, loading,
//!   attaching and pinning the eBPF programs, their counters.
//! - `claude/`: what is known about Claude Code: detection, its registry, its environment,
//!   its transcripts.
//! - `pipeline/`: the kernel-free core (records in, events out) and the ring-buffer engine
//!   around it, kernel records to events, the process table,
//!   attribution to sessions and trees, the cause of each death, the hold for late tool
//!   calls, scopes, and the `pipeline::output::Output` the engine writes to.
//! - `output/`: event lines (JSON and text) and rotating files.
//! - `report/`: exit reports: the decision (`mod`), the model, building, text, the store.
//! - `config/`: the daemon's configuration file and flags.
//! - `metrics/`: the agent's Prometheus metrics: events counted, a snapshot of sizes and
//!   costs set at scrape time, OpenMetrics and text 0.0.4 encoding.
//! - `api/`: the live API: event `seq`, the subscriber bus, the HTTP server on a Unix
//!   socket, the history read back from the event log, the `events` client (imports the
//!   schema, host facts, output's terminal escaping).
//! - `daemon/`: the long-running agent: its outputs, resource sampling, alerts, the
//!   systemd unit.
//! - `trace` and `cli`: the `trace` command and the command line.
//! - `run`: the `run` command: a command started held before its exec, watched in the
//!   kernel (or by polling /proc), its tree's summary.
//! - `app`: the binary's `main`: each command, and the exit status decided in one place.
//! - `diag`: the agent's own diagnostics, named events through `tracing` (any module
//!   may emit them).
//!
//! Unit tests live beside their module, in `<module>/tests.rs` where they are long.

/// Names of the enums of fixed values used by every module (defined before them).
/// `as_str` (the name in the JSON stream, as serde writes it: the `enum_names_are_their_json`
/// test checks they agree) and `Display` (which honours width, for text output) for an enum
/// of fixed values.
macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            #[cfg(test)]
            #[allow(dead_code, reason = "tests iterate the enums they check")]
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The name in the JSON stream.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

mod api;
pub mod app;
mod claude;
mod cli;
mod config;
mod daemon;
mod diag;
mod event;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod host;
mod kernel;
#[cfg(test)]
mod layering;
mod metrics;
mod output;
mod pipeline;
mod report;
mod run;
mod signals;
#[cfg(test)]
pub(crate) mod testutil;
mod trace;

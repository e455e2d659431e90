//! claude-monitor: an eBPF host agent that explains why processes died.
//!
//! The folders are the architecture; dependencies point one way, from the kernel through
//! the pipeline to the schema, which the outputs read:
//!
//! ```text
//! kernel ──► pipeline ──► event ◄── output, report, daemon
//!   │           │           ▲
//!   ▼           ▼           │
//!  (BTF)   host, claude   signals
//! ```
//!
//! - [`kernel`]: the running kernel's BTF, the field offsets the programs need, loading,
//!   attaching and pinning the eBPF programs, their counters.
//! - [`pipeline`]: the ring-buffer engine, the process table, attribution to sessions and
//!   trees, the cause of each death, the hold for late tool calls, scopes.
//! - [`event`]: the JSON schema (plain data, serde) and the conversion of kernel records.
//! - [`host`]: facts read from the host: the clock, cgroup paths, memory cgroup limits.
//! - [`signals`]: signal, `si_code` and wait-status names, and the explanations table.
//! - [`claude`]: what is known about Claude Code: detection, its registry, its environment,
//!   its transcripts.
//! - [`output`]: event lines (JSON and text) and rotating files.
//! - [`report`]: exit reports: the decision, the model, the text, the store.
//! - [`config`]: the daemon's configuration file and flags.
//! - [`daemon`]: the long-running agent: its outputs, resource sampling, alerts, the
//!   systemd unit.
//! - [`trace`] and [`cli`]: the `trace` command and the command line.

/// Names of the enums of fixed values used by every module (defined before them).
/// `as_str` (the name in the JSON stream, as serde writes it: the `enum_names_are_their_json`
/// test checks they agree) and `Display` (which honours width, for text output) for an enum
/// of fixed values.
macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
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

pub mod claude;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod event;
pub mod host;
pub mod kernel;
pub mod output;
pub mod pipeline;
pub mod report;
pub mod signals;
#[cfg(test)]
pub(crate) mod testutil;
pub mod trace;

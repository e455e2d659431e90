//! Command-line arguments (clap derive; the doc comments are the `--help` text) and their
//! validation into the configurations the commands run with.

use std::{io::IsTerminal as _, time::Duration};

use clap::{Args, Parser, Subcommand};
use monitor_common::DEFAULT_RING_BYTES;

use crate::{kernel::loader::ScopeMode, output::sink::Format, trace::TraceConfig};

/// Explains why processes died: every exit, signal and OOM kill, seen in the kernel by eBPF.
#[derive(Debug, Parser)]
#[command(name = "claude-monitor", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream kernel events (exit, signal, oom, fork, exec) as JSON lines or text.
    ///
    /// The first record is `agent_start` (hooks attached and unavailable), the last
    /// `agent_stop`. Needs root, or CAP_BPF and CAP_PERFMON. Schema: docs/events.md.
    Trace(TraceArgs),

    /// Run the host agent: watch every Claude Code session (and trees matched by configured
    /// rules) and every OOM kill on the host; write the event log, exit reports, resource logs
    /// and alerts under the data directory (default /var/lib/claude-monitor).
    ///
    /// Configuration: /etc/claude-monitor/config.toml (absent = defaults), overridden by
    /// CLAUDE_MONITOR_* variables, then by flags (`claude-monitor config` shows the result).
    /// SIGTERM flushes and exits; SIGHUP reloads the configuration. The kernel programs stay
    /// pinned under bpffs between runs, so exits while the daemon is down are not lost.
    Daemon(DaemonArgs),

    /// Print the effective daemon configuration, as TOML, with where each value came from.
    Config(ConfigCmdArgs),

    /// Explain an exit status (`137`) or a signal (`SIGSEGV`, `segv`, `11` is an exit status:
    /// use `SIG11` for the signal) in plain language.
    Explain {
        /// An exit status 0-255, or a signal name or `SIG<number>`.
        what: String,
    },

    /// List the daemon's exit reports, newest first.
    Reports(ReportsArgs),

    /// Print one exit report (by id or unique id prefix, or --last).
    Report(ReportArgs),

    /// Run a command (claude itself, a build, anything) and explain how its tree ended.
    ///
    /// The command keeps your terminal, streams and environment (an interactive program
    /// works as outside; Ctrl-C, Ctrl-Z and resizing reach it; SIGINT, SIGTERM, SIGHUP,
    /// SIGQUIT and SIGWINCH sent to `run` are forwarded to it). Its whole tree is watched in
    /// the kernel from its first instruction, so no child is missed however short-lived.
    /// When it ends, a summary goes to stderr: the cause in one sentence with its evidence
    /// (the signal and its sender, the OOM victim and the memory cgroup limit, the crash),
    /// the exit status explained, duration, CPU, peak memory, how many processes it
    /// started, which died abnormally and which still run.
    ///
    /// Exits with the command's own status, or 128+N when signal N killed it; 127 when the
    /// command is not found, 126 when it cannot be executed, 125 when `run` itself failed
    /// before starting it. With a daemon answering on --socket, the daemon watches the
    /// command (no root needed for your own processes); otherwise `run` loads the kernel
    /// programs (root, or CAP_BPF and CAP_PERFMON); without either it says so in one line
    /// and watches by polling /proc: the summary is then marked approximate.
    #[command(after_help = "Example: claude-monitor run --resources build.csv -- npm run build")]
    Run(RunArgs),

    /// List the commands running under `claude-monitor run` (yours; root sees everyone's):
    /// id, name, phase, the command's pid, restarts, how it last ended.
    Status(StatusArgs),

    /// Stop a command running under `claude-monitor run` (by id or --name): `run` gets
    /// SIGTERM, forwards it to the command and, supervising, sends SIGKILL after its grace
    /// period; waits for `run` to exit.
    Stop(StopArgs),

    /// Print the daemon's events through its API socket: the latest from its event log, or
    /// with --follow the live stream (from --since on, with no gap). JSON lines, or one
    /// readable line per event on a terminal. No root needed: a user who is not root (nor in
    /// `api.group`) sees the events of their own processes.
    Events(EventsArgs),

    /// Install and start the systemd service (prints the unit when systemd is not running).
    Install(ConfigArgs),

    /// Stop and remove the systemd service and the pinned kernel objects.
    Uninstall(ConfigArgs),

    /// Create the pin directory (on a bpffs; bpffs is mounted at /sys/fs/bpf if missing, and
    /// nowhere else). The systemd unit runs it outside its sandbox before the daemon
    /// starts, since the sandbox can only make an existing directory writable.
    #[command(hide = true)]
    PreparePinDir {
        /// The pin directory, an absolute path.
        dir: std::path::PathBuf,
    },
}

/// Where the configuration comes from (shared by the daemon's subcommands).
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// Configuration file [default: /etc/claude-monitor/config.toml; absent = defaults].
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,

    /// Data directory (overrides `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
}

impl ConfigArgs {
    /// Flag overrides, as (config key, value).
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        let mut flags = Vec::new();
        if let Some(d) = &self.data_dir {
            flags.push(("data_dir", d.display().to_string()));
        }
        flags
    }

    /// Loads the configuration (file, environment, flags).
    pub fn load(&self) -> Result<crate::config::Loaded, crate::config::ConfigError> {
        crate::config::load_with_process_env(self.config.as_deref(), &self.flags())
    }
}

#[derive(Debug, Args)]
pub struct ConfigCmdArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print a complete sample configuration file (every key, its default and meaning).
    #[arg(long)]
    pub sample: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Remove the pinned kernel programs, links and maps (/sys/fs/bpf/claude-monitor by
    /// default) and exit.
    #[arg(long)]
    pub unpin: bool,

    /// Also print every event as a JSON line on stdout.
    #[arg(long)]
    pub stdout: bool,

    /// Stop after this many seconds (for tests and trials).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen (Server-Sent Events from /v1/events/stream).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only events of this kind (exit, signal, oom, fork, exec, signal_deliver, lost,
    /// agent_start, agent_stop, alert); repeatable.
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Only events of this session (`session.id` or Claude Code's session id).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only exits with this cause.
    #[arg(long, value_enum)]
    pub cause: Option<crate::event::CauseKind>,
    /// Events after this seq, or of the last DURATION (`30s`, `10m`, `2h`, `1d`).
    #[arg(long, value_name = "SEQ|DURATION")]
    pub since: Option<String>,
    /// Without --follow: the newest N events (default 1000, at most 10000).
    #[arg(long, short = 'n')]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Output format [default: json when stdout is not a terminal, text on a terminal].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Also write the summary as JSON to this file (created 0600).
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<std::path::PathBuf>,
    /// Write the tree's RSS, VSZ and CPU over time to this file: CSV (`.csv`) or JSON
    /// Lines (`.jsonl`), one sample every --sample-interval (created 0600).
    #[arg(long, value_name = "FILE")]
    pub resources: Option<std::path::PathBuf>,
    /// Seconds between resource samples (the summary's peaks come from them too).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub sample_interval: f64,
    /// Also write the command's exit report (with the summary) under DIR/reports, where
    /// `claude-monitor reports --data-dir DIR` lists it.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Ring-buffer size in KiB: a power of two, at least 4.
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_RING_BYTES / 1024)]
    pub ring_buffer_kb: u32,
    /// Write command lines as they are in the summary and the report, secrets included.
    #[arg(long)]
    pub no_redact: bool,
    /// Start the command again when it dies (`on-failure`, the default: after a non-zero
    /// exit or a death by a signal other than SIGINT; `always`: also after exit 0). The
    /// delay starts at --restart-delay and doubles up to --restart-delay-max, and is reset
    /// after a run longer than 10 s. Five failures in a row that each ran under 10 s, or
    /// exit status 78 (EX_CONFIG), park the command: `run` stops and exits non-zero.
    /// SIGTERM, SIGINT or SIGHUP to `run` stop it: the signal goes to the command, SIGKILL
    /// follows after --grace.
    #[arg(long, value_enum, value_name = "WHEN", num_args = 0..=1, default_missing_value = "on-failure")]
    pub restart: Option<crate::run::Policy>,
    /// Seconds before the first restart.
    #[arg(long, value_name = "SECS", default_value_t = crate::run::DEFAULT_DELAY.as_secs_f64())]
    pub restart_delay: f64,
    /// The longest delay between restarts, seconds.
    #[arg(long, value_name = "SECS", default_value_t = crate::run::DEFAULT_DELAY_MAX.as_secs_f64())]
    pub restart_delay_max: f64,
    /// Park the command after this many restarts.
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<u32>,
    /// With --restart: seconds between the stop signal and SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub grace: f64,
    /// A name for `claude-monitor status` and `claude-monitor stop NAME`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Do not use a daemon even when one runs: load the kernel programs (root, or CAP_BPF
    /// and CAP_PERFMON), else poll /proc.
    #[arg(long)]
    pub no_daemon: bool,
    /// The command and its arguments, after `--`.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// The shortest `--sample-interval`, seconds.
pub const MIN_SAMPLE_INTERVAL: f64 = 0.1;

impl RunArgs {
    /// Validates the arguments.
    pub fn into_options(self) -> Result<crate::run::RunOptions, ArgError> {
        let kb = self.ring_buffer_kb;
        if !kb.is_power_of_two() || !(4..=1 << 20).contains(&kb) {
            return Err(ArgError::RingBuffer(kb));
        }
        let interval = self.sample_interval;
        if !(MIN_SAMPLE_INTERVAL..=MAX_DURATION_SECS).contains(&interval) {
            return Err(ArgError::SampleInterval(interval));
        }
        if let Some(path) = &self.resources {
            crate::run::FileFormat::of(path).map_err(ArgError::Resources)?;
        }
        if let Some(dir) = &self.data_dir
            && !dir.is_absolute()
        {
            return Err(ArgError::DataDir(dir.display().to_string()));
        }
        let secs = |flag: &'static str, v: f64| -> Result<Duration, ArgError> {
            if (0.01..=MAX_DURATION_SECS).contains(&v) {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(ArgError::Seconds(flag, v))
            }
        };
        let restart_delay = secs("--restart-delay", self.restart_delay)?;
        let restart_delay_max = secs("--restart-delay-max", self.restart_delay_max)?;
        let grace = secs("--grace", self.grace)?;
        if let Some(name) = &self.name
            && (name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || name.parse::<u32>().is_ok())
        {
            return Err(ArgError::Name(name.clone()));
        }
        Ok(crate::run::RunOptions {
            restart: self.restart,
            restart_delay,
            restart_delay_max,
            max_restarts: self.max_restarts,
            grace,
            name: self.name,
            socket: self.socket.socket,
            no_daemon: self.no_daemon,
            command: self.command,
            summary_json: self.summary_json,
            resources: self.resources,
            sample_interval: Duration::from_secs_f64(interval),
            data_dir: self.data_dir,
            ring_buffer_bytes: kb * 1024,
            redact: !self.no_redact,
        })
    }
}

/// `--socket`: where the daemon's API listens.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// The daemon's socket (`api.socket`).
    #[arg(
        long,
        value_name = "PATH",
        env = "CLAUDE_MONITOR_API_SOCKET",
        default_value = "/run/claude-monitor/api.sock"
    )]
    pub socket: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON (one object) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The `run`'s id (its pid, as `status` shows) or its --name.
    pub id: String,
    /// Seconds to wait for `run` to exit (its grace period, 30 s by default, plus a margin).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct ReportsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only reports of this session (`session.id` or Claude Code session id; a prefix works).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only reports with this cause.
    #[arg(long, value_enum)]
    pub cause: Option<crate::event::CauseKind>,
    /// Only reports written for this reason.
    #[arg(long, value_enum)]
    pub reason: Option<crate::report::Reason>,
    /// At most this many reports.
    #[arg(long, short = 'n')]
    pub limit: Option<usize>,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(false))]
pub struct ReportArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Report id (or a unique prefix of one).
    #[arg(group = "which")]
    pub id: Option<String>,
    /// The newest report.
    #[arg(long, group = "which")]
    pub last: bool,
    /// Print the JSON instead of the text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).multiple(false))]
pub struct TraceArgs {
    /// Report every process on the host.
    #[arg(long, group = "scope")]
    pub all: bool,

    /// Report this process and all its descendants, present and future (repeatable).
    /// Children are followed across fork in the kernel, so short-lived ones are not missed.
    #[arg(long = "pid", value_name = "PID", id = "pids", group = "scope")]
    pub pids: Vec<u32>,

    /// Report the processes of every Claude Code session (and trees matched by other agent
    /// rules), those running now and those started later.
    #[arg(long, group = "scope")]
    pub claude: bool,

    /// Report one session: its id (`PID:START` as in the events' `session.id`) or its
    /// Claude Code session id (`sessionId`).
    #[arg(long, value_name = "ID", group = "scope")]
    pub session: Option<String>,

    /// Output format [default: json when stdout is not a terminal, text on a terminal].
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Stop after this many seconds (fractions allowed) instead of at Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Ring-buffer size in KiB: a power of two, at least 4.
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_RING_BYTES / 1024)]
    pub ring_buffer_kb: u32,

    /// With --pid, --claude or --session: report OOM kills of any process on the host,
    /// not only watched ones.
    #[arg(long)]
    pub oom_all: bool,

    /// Also report SIGCHLD, SIGURG and SIGWINCH. Their default action is to be ignored and
    /// every exit sends a SIGCHLD, so by default they are dropped in the kernel.
    #[arg(long)]
    pub ignored_signals: bool,

    /// Also report runtime signals: the signals a process sends itself or its own threads
    /// that do not end it (a runtime's garbage-collector signals, handled faults) with their
    /// deliveries, and the SIGKILL of a group exit taken by every thread (by default only
    /// the leader's). By default they are dropped in the kernel and counted in agent_stop.
    #[arg(long)]
    pub runtime_signals: bool,

    /// Print command lines and tool commands as they are, secrets included. By default the
    /// values of passwords, tokens and API keys are replaced with [REDACTED] (the daemon's
    /// rules: see docs/events.md#redaction).
    #[arg(long)]
    pub no_redact: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgError {
    #[error(
        "--duration must be a number of seconds greater than 0 and at most {MAX_DURATION_SECS} (a year), got {0}"
    )]
    Duration(f64),
    #[error("--ring-buffer-kb must be a power of two between 4 and 1048576, got {0}")]
    RingBuffer(u32),
    #[error("--pid 0 is not a process")]
    PidZero,
    #[error(
        "--sample-interval must be a number of seconds from {MIN_SAMPLE_INTERVAL} to {MAX_DURATION_SECS}, got {0}"
    )]
    SampleInterval(f64),
    #[error("{0}")]
    Resources(String),
    #[error("--data-dir must be an absolute path, got {0}")]
    DataDir(String),
    #[error("{0} must be a number of seconds from 0.01 to {MAX_DURATION_SECS}, got {1}")]
    Seconds(&'static str, f64),
    #[error(
        "--name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.', not a number alone (ids are numbers)"
    )]
    Name(String),
}

/// The longest `--duration`: a year (beyond it, simply leave it out).
pub const MAX_DURATION_SECS: f64 = 365.0 * 86400.0;

/// `--duration SECS`, checked: finite, greater than 0, at most [`MAX_DURATION_SECS`].
pub fn duration(secs: Option<f64>) -> Result<Option<Duration>, ArgError> {
    match secs {
        None => Ok(None),
        // Written so that NaN fails too.
        Some(d) if d > 0.0 && d <= MAX_DURATION_SECS => Ok(Some(Duration::from_secs_f64(d))),
        Some(d) => Err(ArgError::Duration(d)),
    }
}

impl TraceArgs {
    /// Validates the arguments; `stdout_is_terminal` picks the default format.
    pub fn into_config(self, stdout_is_terminal: bool) -> Result<TraceConfig, ArgError> {
        let duration = duration(self.duration)?;
        let kb = self.ring_buffer_kb;
        if !kb.is_power_of_two() || !(4..=1 << 20).contains(&kb) {
            return Err(ArgError::RingBuffer(kb));
        }
        if self.pids.contains(&0) {
            return Err(ArgError::PidZero);
        }
        let scope = if self.all {
            ScopeMode::All
        } else if self.claude {
            ScopeMode::Sessions
        } else if let Some(id) = self.session {
            ScopeMode::Session(id)
        } else {
            let mut pids = self.pids;
            pids.sort_unstable();
            pids.dedup();
            ScopeMode::Pids(pids)
        };
        let format = self.format.unwrap_or(if stdout_is_terminal {
            Format::Text
        } else {
            Format::Json
        });
        Ok(TraceConfig {
            scope,
            format,
            duration,
            ring_buffer_bytes: kb * 1024,
            oom_all: self.oom_all,
            report_ignored_signals: self.ignored_signals,
            report_runtime_signals: self.runtime_signals,
            redact: !self.no_redact,
        })
    }
}

pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("claude-monitor").chain(args.iter().copied()))
    }

    fn trace(args: &[&str]) -> TraceArgs {
        match parse(args).expect("parse").command {
            Command::Trace(t) => t,
            other => panic!("not trace: {other:?}"),
        }
    }

    #[test]
    fn daemon_subcommands_parse() {
        let Command::Daemon(d) = parse(&["daemon", "--config", "/x.toml", "--data-dir", "/d"])
            .expect("parse")
            .command
        else {
            panic!("not daemon")
        };
        assert_eq!(d.config.flags(), [("data_dir", "/d".to_owned())]);
        assert!(!d.unpin);
        assert!(parse(&["report"]).is_err(), "report needs an id or --last");
        assert!(parse(&["report", "abc", "--last"]).is_err());
        assert!(parse(&["report", "--last"]).is_ok());
        assert!(parse(&["explain", "137"]).is_ok());
        assert!(parse(&["config", "--sample"]).is_ok());
    }

    #[test]
    fn scope_is_required_and_exclusive() {
        assert!(parse(&["trace"]).is_err());
        assert!(parse(&["trace", "--all", "--pid", "1"]).is_err());
        assert!(parse(&["trace", "--claude", "--all"]).is_err());
        let cfg = trace(&["trace", "--claude"])
            .into_config(false)
            .expect("valid");
        assert_eq!(cfg.scope, ScopeMode::Sessions);
        let cfg = trace(&["trace", "--session", "12:34"])
            .into_config(false)
            .expect("valid");
        assert_eq!(cfg.scope, ScopeMode::Session("12:34".into()));
        let cfg = trace(&["trace", "--pid", "9", "--pid", "3", "--pid", "9"])
            .into_config(false)
            .expect("valid");
        assert_eq!(cfg.scope, ScopeMode::Pids(vec![3, 9]));
        assert_eq!(cfg.format, Format::Json);
    }

    #[test]
    fn format_defaults_to_terminal_kind() {
        let cfg = trace(&["trace", "--all"]).into_config(true).expect("valid");
        assert_eq!(cfg.format, Format::Text);
        assert_eq!(cfg.ring_buffer_bytes, DEFAULT_RING_BYTES);
        let cfg = trace(&["trace", "--all", "--format", "json"])
            .into_config(true)
            .expect("valid");
        assert_eq!(cfg.format, Format::Json);
    }

    #[test]
    fn signal_filters_are_on_by_default() {
        let cfg = trace(&["trace", "--all"])
            .into_config(false)
            .expect("valid");
        assert!(!cfg.report_ignored_signals && !cfg.report_runtime_signals);
        let cfg = trace(&["trace", "--all", "--runtime-signals"])
            .into_config(false)
            .expect("valid");
        assert!(cfg.report_runtime_signals && !cfg.report_ignored_signals);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = trace(&["trace", "--all", "--duration=-1"])
            .into_config(false)
            .unwrap_err();
        assert_eq!(err, ArgError::Duration(-1.0));
        assert!(err.to_string().contains("--duration"));
        for bad in ["1e20", "inf", "NaN", "0"] {
            let err = trace(&["trace", "--all", "--duration", bad])
                .into_config(false)
                .unwrap_err();
            assert!(matches!(err, ArgError::Duration(_)), "{bad}: {err}");
        }
        assert_eq!(
            duration(Some(MAX_DURATION_SECS)).unwrap(),
            Some(Duration::from_secs(31_536_000))
        );
        let err = trace(&["trace", "--all", "--ring-buffer-kb", "1000"])
            .into_config(false)
            .unwrap_err();
        assert_eq!(err, ArgError::RingBuffer(1000));
        assert_eq!(
            trace(&["trace", "--pid", "0"])
                .into_config(false)
                .unwrap_err(),
            ArgError::PidZero
        );
        assert!(parse(&["trace", "--all", "--format", "xml"]).is_err());
    }
}

//! The daemon's configuration: a TOML file, environment variables and command-line flags.
//!
//! Layers, each overriding the one before, key by key:
//!
//! 1. built-in defaults ([`Config::default`], documented in [`SAMPLE`]);
//! 2. the file, [`DEFAULT_PATH`] or the one given with `--config` (an absent file at the
//!    default path means "all defaults"; an absent file named explicitly is an error, since
//!    the operator clearly meant to use it);
//! 3. environment variables `CLAUDE_MONITOR_<SECTION>_<KEY>` (`CLAUDE_MONITOR_DATA_DIR` for
//!    the top-level key); a variable set to the empty string counts as unset;
//! 4. command-line flags, passed in by the caller as `(dotted key, value)` pairs.
//!
//! Only variables whose name maps to a known key are ever looked up, so other
//! `CLAUDE_MONITOR_*` variables (used by other tools) are never errors. `[[rules]]` come only
//! from the file: there is no environment or flag form for them.
//!
//! Every key lives in one table ([`keys`]) that drives parsing, range checks, the
//! environment and flag names, [`render`] and the documentation, so they cannot drift apart.
//! Errors name the dotted key and where the value came from (file path, environment
//! variable or flag), because the operator has to find the line to fix.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use crate::claude::detect::Rule;

mod error;
mod keys;
mod load;
mod render;

pub use self::{error::*, keys::*, load::*, render::*};

/// Where the daemon looks when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/claude-monitor/config.toml";

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "CLAUDE_MONITOR_";

/// The effective configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `data_dir`: where reports and logs are written.
    pub data_dir: PathBuf,
    pub watch: Watch,
    pub kernel: Kernel,
    pub logs: Logs,
    pub reports: Reports,
    pub resources: Resources,
    pub alerts: Alerts,
    pub redact: Redact,
    /// `[export.*]`: where else the facts go.
    pub export: Export,
    pub api: Api,
    /// `[[rules]]`: extra agent/program detection rules, after the built-in ones. Already
    /// validated by [`Detector::new`] when they come from [`load`].
    pub rules: Vec<Rule>,
}

/// `[watch]`: what is reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// `oom_all`: report every OOM kill on the host, whoever the victim is.
    pub oom_all: bool,
    /// `report_nonzero_exit`: write an exit report for any non-zero exit in a watched session.
    pub report_nonzero_exit: bool,
    /// `ignored_signals`: what to do with signals whose default action is to be ignored.
    pub ignored_signals: IgnoredSignals,
    /// `runtime_signals`: what to do with runtime signals: the non-fatal signals a process
    /// sends itself (a runtime signalling its own threads) and their deliveries, and the
    /// SIGKILL deliveries of a group exit to threads other than the leader.
    pub runtime_signals: IgnoredSignals,
}

/// Signals whose default action is "ignore" (SIGCHLD, SIGURG, SIGWINCH) are
/// frequent and almost never explain a death.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IgnoredSignals {
    /// Dropped in the kernel, before they cost a ring-buffer slot.
    #[default]
    Filter,
    /// Reported like any other signal.
    Report,
}

impl IgnoredSignals {
    pub const ALL: [IgnoredSignals; 2] = [IgnoredSignals::Filter, IgnoredSignals::Report];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoredSignals::Filter => "filter",
            IgnoredSignals::Report => "report",
        }
    }

    fn parse(s: &str) -> Option<IgnoredSignals> {
        IgnoredSignals::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// `[kernel]`: how the kernel programs are loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// `ring_buffer_kb`: ring-buffer size in KiB, a power of two in 4..=1048576.
    pub ring_buffer_kb: u32,
    /// `pin`: pin programs, links and the ring buffer under bpffs so that events are kept
    /// while the daemon is down (restart, upgrade).
    pub pin: bool,
    /// `pin_dir`: the bpffs directory to pin under.
    pub pin_dir: PathBuf,
}

impl Kernel {
    /// The ring-buffer size in bytes (at most 1 GiB, so it fits).
    pub fn ring_buffer_bytes(&self) -> u32 {
        self.ring_buffer_kb.saturating_mul(1024)
    }
}

/// `[logs]`: rotation of the daemon's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logs {
    /// `max_bytes`: rotate a file once it is this big (at least 4096).
    pub max_bytes: u64,
    /// `keep`: rotated files kept, `<name>.1` .. `<name>.N`.
    pub keep: u32,
}

/// `[reports]`: bounds on exit reports, which any user can cause (a process named `claude`
/// that exits non-zero is a session root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reports {
    /// `max_count`: reports kept; beyond it the oldest go first.
    pub max_count: u32,
    /// `max_bytes`: bytes of reports kept; beyond it the oldest go first.
    pub max_bytes: u64,
    /// `per_uid_per_minute`: reports written per minute for the processes of one uid
    /// (a burst of as many is allowed); beyond it they are counted, not written.
    pub per_uid_per_minute: u32,
}

impl Default for Reports {
    fn default() -> Reports {
        Reports {
            max_count: 1000,
            max_bytes: 256 * 1024 * 1024,
            per_uid_per_minute: 60,
        }
    }
}

/// `[resources]`: host and session resource sampling.
#[derive(Clone, Debug, PartialEq)]
pub struct Resources {
    /// `system_interval_secs`: how often host memory, PSI and disks are sampled.
    pub system_interval: Duration,
    /// `session_interval_secs`: how often each session's processes are sampled.
    pub session_interval: Duration,
    /// `mounts`: absolute paths of the filesystems whose usage is watched.
    pub mounts: Vec<PathBuf>,
    /// `history`: per-session samples kept in memory for reports.
    pub history: u32,
}

/// `[alerts]`: resource alert thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct Alerts {
    /// `memory_percent`: host memory use that raises an alert, in (0, 100].
    pub memory_percent: f64,
    /// `disk_percent`: filesystem use that raises an alert, in (0, 100].
    pub disk_percent: f64,
    /// `session_rss_mb`: a session's total RSS that raises an alert; 0 disables.
    pub session_rss_mb: u64,
    /// `cooldown_secs`: minimum time between two alerts of the same kind and subject.
    pub cooldown: Duration,
}

/// `[export.*]`: other places the daemon sends its facts to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Export {
    pub journald: Journald,
    pub otlp: Otlp,
}

/// `[export.otlp]`: every event as an OpenTelemetry LogRecord over OTLP/HTTP (protobuf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Otlp {
    /// `endpoint`: where to post (`http://127.0.0.1:4318`, `/v1/logs` added when the URL has
    /// no path); `None` (an empty string, the default) turns the export off.
    pub endpoint: Option<Endpoint>,
    /// `queue`: events waiting to be sent at most; beyond, they are dropped and counted.
    pub queue: u32,
    /// `batch`: events per request at most.
    pub batch: u32,
    /// `timeout_secs`: one request's limit, connection included.
    pub timeout: Duration,
}

impl Default for Otlp {
    fn default() -> Otlp {
        Otlp {
            endpoint: None,
            queue: 8192,
            batch: 512,
            timeout: Duration::from_secs(10),
        }
    }
}

/// An `http://` URL the daemon posts to: a host (name, IPv4, or `[IPv6]`), a port (default
/// OTLP/HTTP's 4318) and a path (default `/v1/logs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// As written in the URL: `127.0.0.1`, `collector.internal`, `[::1]`.
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

impl Endpoint {
    /// OTLP/HTTP's port.
    pub const DEFAULT_PORT: u16 = 4318;
    /// OTLP/HTTP's logs path.
    pub const DEFAULT_PATH: &str = "/v1/logs";

    /// Parses `http://HOST[:PORT][/PATH]`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Endpoint, &'static str> {
        if s.len() > 2048 {
            return Err("at most 2048 bytes long");
        }
        let rest = if let Some(rest) = s.strip_prefix("http://") {
            rest
        } else if s.starts_with("https://") {
            return Err(
                "an http:// URL (https is not built in: send to an OpenTelemetry Collector \
                 on this host, which adds TLS and authentication)",
            );
        } else {
            return Err("an http:// URL (\"http://127.0.0.1:4318\")");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("a URL without credentials (user:password@ would be sent in clear)");
        }
        if path.contains(['?', '#']) || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a URL whose path has no query, fragment, space or control character");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or("a URL with a closed [IPv6] host")?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "a URL with a valid [IPv6] host")?;
            (format!("[{addr}]"), after)
        } else {
            let end = authority.find(':').unwrap_or(authority.len());
            let (host, after) = authority.split_at(end);
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                return Err("a URL with a host name or address");
            }
            (host.to_ascii_lowercase(), after)
        };
        let port = match port {
            "" => Endpoint::DEFAULT_PORT,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or("a URL with a port from 1 to 65535")?,
        };
        let path = match path {
            "" | "/" => Endpoint::DEFAULT_PATH.to_owned(),
            p => p.to_owned(),
        };
        Ok(Endpoint { host, port, path })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// `[export.journald]`: one journal entry per exit report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journald {
    /// `enabled`: off by default (the daemon's own messages reach the journal through its
    /// stderr under systemd anyway; this adds the reports as structured entries).
    pub enabled: bool,
    /// `socket`: journald's native socket.
    pub socket: PathBuf,
}

impl Default for Journald {
    fn default() -> Journald {
        Journald {
            enabled: false,
            socket: PathBuf::from("/run/systemd/journal/socket"),
        }
    }
}

/// `[api]`: the live API on a Unix socket (`api` module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Api {
    /// `socket`: the socket's absolute path; `None` (an empty string) turns the API off.
    pub socket: Option<PathBuf>,
    /// `socket_mode`: who may connect.
    pub socket_mode: SocketMode,
    /// `group`: a group whose members (and root) see every event; empty: none.
    pub group: String,
    /// `subscriber_queue`: events queued per subscriber before it loses some.
    pub subscriber_queue: u32,
    /// `tcp`: the address of the HTTP listener on TCP; `None` (an empty string, the
    /// default) turns it off.
    pub tcp: Option<std::net::SocketAddr>,
    /// `token_file`: the file holding the bearer token TCP clients must send; `None`: no
    /// token (allowed on a loopback address only, checked at the daemon's start).
    pub token_file: Option<PathBuf>,
}

impl Default for Api {
    fn default() -> Api {
        Api {
            socket: Some(PathBuf::from("/run/claude-monitor/api.sock")),
            socket_mode: SocketMode::AllUsers,
            group: String::new(),
            subscriber_queue: 4096,
            tcp: None,
            token_file: None,
        }
    }
}

/// `api.socket_mode`: the socket's permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocketMode {
    /// `"0666"`: every local user connects and sees their own processes' events.
    #[default]
    AllUsers,
    /// `"0660"`: only root and `api.group` (the socket's group) connect.
    GroupOnly,
}

impl SocketMode {
    pub const ALL: [SocketMode; 2] = [SocketMode::AllUsers, SocketMode::GroupOnly];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketMode::AllUsers => "0666",
            SocketMode::GroupOnly => "0660",
        }
    }

    /// The file mode.
    pub fn mode(self) -> u32 {
        match self {
            SocketMode::AllUsers => 0o666,
            SocketMode::GroupOnly => 0o660,
        }
    }

    fn parse(s: &str) -> Option<SocketMode> {
        SocketMode::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// `[redact]`: secrets out of everything the daemon writes (see `pipeline::redact`).
#[derive(Clone, Debug, PartialEq)]
pub struct Redact {
    /// `enabled`: replace secrets' values with `[REDACTED]` (the built-in rules and
    /// `patterns`); off, command lines and tool commands are written as they are.
    pub enabled: bool,
    /// `patterns`: the operator's own patterns, on top of the built-in rules.
    pub patterns: Vec<Pattern>,
}

impl Default for Redact {
    fn default() -> Redact {
        Redact {
            enabled: true,
            patterns: Vec::new(),
        }
    }
}

/// One operator redaction pattern (`redact.patterns`), compiled and checked when loaded: a
/// regular expression (the `regex` crate's syntax, linear time whatever the input) whose
/// `secret` group, or whole match without one, is replaced.
#[derive(Clone, Debug)]
pub struct Pattern(regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Pattern {
    /// The longest pattern, in bytes.
    pub const MAX_LEN: usize = 1024;
    /// At most this many patterns.
    pub const MAX_COUNT: usize = 64;
    /// The compiled program's size limit: a pattern like `x{1000}{1000}` is refused, not
    /// built.
    const SIZE_LIMIT: usize = 1 << 20;

    /// Compiles `s`, or says why it cannot be used.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() {
            return Err("empty".into());
        }
        if s.len() > Pattern::MAX_LEN {
            return Err(format!(
                "{} bytes long, at most {} allowed",
                s.len(),
                Pattern::MAX_LEN
            ));
        }
        let re = regex::RegexBuilder::new(s)
            .size_limit(Pattern::SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => "too large once compiled".to_owned(),
                // The syntax error's own text points at the offending part, over lines.
                other => other
                    .to_string()
                    .replace('\n', " ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            })?;
        if re.is_match("") {
            return Err("it matches empty text, so it would redact nothing and everything".into());
        }
        Ok(Pattern(re))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.0
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("/var/lib/claude-monitor"),
            watch: Watch::default(),
            kernel: Kernel::default(),
            logs: Logs::default(),
            reports: Reports::default(),
            resources: Resources::default(),
            alerts: Alerts::default(),
            redact: Redact::default(),
            export: Export::default(),
            api: Api::default(),
            rules: Vec::new(),
        }
    }
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            oom_all: true,
            report_nonzero_exit: false,
            ignored_signals: IgnoredSignals::Filter,
            runtime_signals: IgnoredSignals::Filter,
        }
    }
}

impl Default for Kernel {
    fn default() -> Kernel {
        Kernel {
            ring_buffer_kb: monitor_common::DEFAULT_RING_BYTES / 1024,
            pin: true,
            pin_dir: PathBuf::from("/sys/fs/bpf/claude-monitor"),
        }
    }
}

impl Default for Logs {
    fn default() -> Logs {
        Logs {
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

impl Default for Resources {
    fn default() -> Resources {
        Resources {
            system_interval: Duration::from_secs(30),
            session_interval: Duration::from_secs(2),
            mounts: vec![PathBuf::from("/")],
            history: 30,
        }
    }
}

impl Default for Alerts {
    fn default() -> Alerts {
        Alerts {
            memory_percent: 85.0,
            disk_percent: 90.0,
            session_rss_mb: 0,
            cooldown: Duration::from_secs(1800),
        }
    }
}

/// Where a value came from; also where a bad value came from in a [`ConfigError`].
///
/// Display is what [`render`] puts in its comments: `default`, the file path,
/// `env CLAUDE_MONITOR_...`, `flag --...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// The environment variable's name.
    Env(String),
    /// The flag, with its dashes: `--data-dir`.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A loaded configuration and the provenance of each value.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// Every key of [`keys`] by dotted name, plus `rules` ([`Source::Default`] when the file
    /// has none).
    pub sources: BTreeMap<String, Source>,
    /// The file actually read (None when the default path does not exist).
    pub file: Option<PathBuf>,
}

impl Loaded {
    /// Where `key` (dotted) came from; [`Source::Default`] for a key not recorded.
    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&Source::Default)
    }
}

/// The documented configuration file with every key at its default (what the package
/// installs as an example; it loads to [`Config::default`]).
pub const SAMPLE: &str = include_str!("sample.toml");

#[cfg(test)]
mod tests;

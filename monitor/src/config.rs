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

use std::{
    collections::BTreeMap,
    fmt, fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::claude::detect::{Detector, Rule, RuleError};

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
    pub resources: Resources,
    pub alerts: Alerts,
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

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("/var/lib/claude-monitor"),
            watch: Watch::default(),
            kernel: Kernel::default(),
            logs: Logs::default(),
            resources: Resources::default(),
            alerts: Alerts::default(),
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

/// Why the configuration could not be loaded. Display is the full message, naming the file
/// or variable and the dotted key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: no such file (given with --config)", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {}{message}", path.display(), at(*location))]
    Syntax {
        path: PathBuf,
        /// 1-based line and column, when the parser located the error.
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("{origin}: unknown key `{key}` ({known})")]
    UnknownKey {
        origin: Source,
        key: String,
        /// Which keys are allowed there, e.g. `known keys in [alerts]: memory_percent, ...`.
        known: String,
    },
    #[error("{origin}: {key}: expected {expected}, found {found}")]
    WrongType {
        origin: Source,
        key: String,
        expected: &'static str,
        /// The TOML type found (`string`, `integer`, ...).
        found: &'static str,
    },
    #[error("{origin}: {key}: {value} is out of range ({range})")]
    OutOfRange {
        origin: Source,
        key: String,
        value: String,
        range: String,
    },
    #[error("{origin}: {key}: {value} is not {expected}")]
    BadValue {
        origin: Source,
        key: String,
        /// The offending value, quoted when it is text.
        value: String,
        expected: &'static str,
    },
    #[error("{origin}: {key} is required")]
    MissingKey { origin: Source, key: String },
    #[error("{}: rules[{index}]: {source}", path.display())]
    Rule {
        path: PathBuf,
        index: usize,
        source: RuleError,
    },
}

impl ConfigError {
    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::OutOfRange { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::MissingKey { key, .. } => Some(key),
            ConfigError::Missing { .. }
            | ConfigError::Read { .. }
            | ConfigError::Syntax { .. }
            | ConfigError::Rule { .. } => None,
        }
    }
}

fn at(location: Option<(usize, usize)>) -> String {
    match location {
        Some((line, column)) => format!("line {line}, column {column}: "),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// The key registry.

/// Accessors for one field of [`Config`].
struct Field<T: 'static> {
    get: fn(&Config) -> &T,
    set: fn(&mut Config) -> &mut T,
}

/// `field!(alerts.memory_percent)`: the accessors of that field.
macro_rules! field {
    ($($part:ident).+) => {
        Field {
            get: |c| &c.$($part).+,
            set: |c| &mut c.$($part).+,
        }
    };
}

/// An integer field: stored as u32, u64, or a Duration of whole seconds.
enum IntField {
    U32(Field<u32>),
    U64(Field<u64>),
    Secs(Field<Duration>),
}

/// A number field: stored as f64 or as a Duration of (fractional) seconds.
enum FloatField {
    F64(Field<f64>),
    Secs(Field<Duration>),
}

/// A key's type, range and accessors.
enum Kind {
    Bool(Field<bool>),
    Signals(Field<IgnoredSignals>),
    /// `min..=max`; `max` is at most i64::MAX so that every value can be written as TOML.
    Int {
        field: IntField,
        min: u64,
        max: u64,
        pow2: bool,
    },
    /// Greater than 0 and at most `max`.
    Float {
        field: FloatField,
        max: f64,
    },
    Path(Field<PathBuf>),
    /// Absolute paths; comma-separated in the environment and flags.
    AbsPaths(Field<Vec<PathBuf>>),
}

/// One configuration key: see [`keys`].
pub struct KeyInfo {
    key: &'static str,
    doc: &'static str,
    kind: Kind,
}

/// The largest integer TOML can hold.
const TOML_INT_MAX: u64 = i64::MAX as u64;

/// The sections, in the order [`render`] and [`SAMPLE`] use.
const SECTIONS: [&str; 5] = ["watch", "kernel", "logs", "resources", "alerts"];

/// The fields of a `[[rules]]` table ([`Rule`]).
const RULE_KEYS: [&str; 4] = ["name", "exe_glob", "comm", "argv_pattern"];

static KEYS: [KeyInfo; 18] = [
    KeyInfo {
        key: "data_dir",
        doc: "Directory for reports, event logs and state.",
        kind: Kind::Path(field!(data_dir)),
    },
    KeyInfo {
        key: "watch.oom_all",
        doc: "Report every OOM kill on the host, whoever the victim is.",
        kind: Kind::Bool(field!(watch.oom_all)),
    },
    KeyInfo {
        key: "watch.report_nonzero_exit",
        doc: "Also write an exit report for any non-zero exit of a process in a watched session.",
        kind: Kind::Bool(field!(watch.report_nonzero_exit)),
    },
    KeyInfo {
        key: "watch.ignored_signals",
        doc: "Signals whose default action is to be ignored (SIGCHLD, SIGURG, \
              SIGWINCH): \"filter\" drops them in the kernel, \"report\" reports them.",
        kind: Kind::Signals(field!(watch.ignored_signals)),
    },
    KeyInfo {
        key: "watch.runtime_signals",
        doc: "Runtime signals (signals a process sends itself that do not end it, with \
              their deliveries; a group exit's SIGKILL taken by threads other than the \
              leader): \"filter\" drops and counts them in the kernel, \"report\" reports them.",
        kind: Kind::Signals(field!(watch.runtime_signals)),
    },
    KeyInfo {
        key: "kernel.ring_buffer_kb",
        doc: "Ring-buffer size in KiB between the kernel programs and the daemon.",
        kind: Kind::Int {
            field: IntField::U32(field!(kernel.ring_buffer_kb)),
            min: 4,
            max: 1 << 20,
            pow2: true,
        },
    },
    KeyInfo {
        key: "kernel.pin",
        doc: "Pin programs, links and the ring buffer under bpffs so events are kept while \
              the daemon is down.",
        kind: Kind::Bool(field!(kernel.pin)),
    },
    KeyInfo {
        key: "kernel.pin_dir",
        doc: "The bpffs directory to pin under.",
        kind: Kind::Path(field!(kernel.pin_dir)),
    },
    KeyInfo {
        key: "logs.max_bytes",
        doc: "Rotate a log file once it reaches this size in bytes.",
        kind: Kind::Int {
            field: IntField::U64(field!(logs.max_bytes)),
            min: 4096,
            max: TOML_INT_MAX,
            pow2: false,
        },
    },
    KeyInfo {
        key: "logs.keep",
        doc: "Rotated files kept (<name>.1 .. <name>.N).",
        kind: Kind::Int {
            field: IntField::U32(field!(logs.keep)),
            min: 1,
            max: 100,
            pow2: false,
        },
    },
    KeyInfo {
        key: "resources.system_interval_secs",
        doc: "Seconds between samples of host memory, pressure and disk usage.",
        kind: Kind::Float {
            field: FloatField::Secs(field!(resources.system_interval)),
            max: 86400.0,
        },
    },
    KeyInfo {
        key: "resources.session_interval_secs",
        doc: "Seconds between samples of each session's processes.",
        kind: Kind::Float {
            field: FloatField::Secs(field!(resources.session_interval)),
            max: 86400.0,
        },
    },
    KeyInfo {
        key: "resources.mounts",
        doc: "Absolute paths of the filesystems whose usage is watched (comma-separated in \
              the environment).",
        kind: Kind::AbsPaths(field!(resources.mounts)),
    },
    KeyInfo {
        key: "resources.history",
        doc: "Samples kept in memory per session, for reports.",
        kind: Kind::Int {
            field: IntField::U32(field!(resources.history)),
            min: 1,
            max: 10000,
            pow2: false,
        },
    },
    KeyInfo {
        key: "alerts.memory_percent",
        doc: "Alert when host memory use is above this percentage.",
        kind: Kind::Float {
            field: FloatField::F64(field!(alerts.memory_percent)),
            max: 100.0,
        },
    },
    KeyInfo {
        key: "alerts.disk_percent",
        doc: "Alert when a watched filesystem's use is above this percentage.",
        kind: Kind::Float {
            field: FloatField::F64(field!(alerts.disk_percent)),
            max: 100.0,
        },
    },
    KeyInfo {
        key: "alerts.session_rss_mb",
        doc: "Alert when a session's total resident memory is above this many MiB (0 disables).",
        kind: Kind::Int {
            field: IntField::U64(field!(alerts.session_rss_mb)),
            min: 0,
            max: TOML_INT_MAX,
            pow2: false,
        },
    },
    KeyInfo {
        key: "alerts.cooldown_secs",
        doc: "Minimum seconds between two alerts of the same kind about the same subject.",
        kind: Kind::Int {
            field: IntField::Secs(field!(alerts.cooldown)),
            min: 0,
            max: TOML_INT_MAX,
            pow2: false,
        },
    },
];

/// Every configuration key, top-level first, then by section (the order of [`SAMPLE`]).
/// `[[rules]]` is not a key: see [`Rule`] and the module documentation.
pub fn keys() -> &'static [KeyInfo] {
    &KEYS
}

/// The key with this dotted name.
pub fn lookup(key: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|info| info.key == key)
}

impl KeyInfo {
    /// The dotted name: `alerts.memory_percent`, `data_dir`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The section, None for a top-level key.
    pub fn section(&self) -> Option<&'static str> {
        self.key.split_once('.').map(|(section, _)| section)
    }

    /// The name within its section.
    pub fn name(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(_, name)| name)
    }

    /// One line saying what the key does.
    pub fn doc(&self) -> &'static str {
        self.doc
    }

    /// The environment variable that overrides it: `CLAUDE_MONITOR_ALERTS_MEMORY_PERCENT`.
    pub fn env_var(&self) -> String {
        format!(
            "{ENV_PREFIX}{}",
            self.key.replace('.', "_").to_ascii_uppercase()
        )
    }

    /// The flag name [`Source::Flag`] records for it: `--alerts-memory-percent`.
    pub fn flag(&self) -> String {
        flag_name(self.key)
    }

    /// The type and allowed values, for documentation: `integer, 1..=100`.
    pub fn value_type(&self) -> String {
        match &self.kind {
            Kind::Bool(_) => "boolean".into(),
            Kind::Signals(_) => {
                let names: Vec<String> = IgnoredSignals::ALL
                    .iter()
                    .map(|v| format!("\"{}\"", v.as_str()))
                    .collect();
                format!("string, one of {}", names.join(", "))
            }
            Kind::Int { min, max, pow2, .. } => {
                format!("integer, {}", int_range(*min, *max, *pow2, 0))
            }
            Kind::Float { max, .. } => format!("number, {}", float_range(*max)),
            Kind::Path(_) => "string (path)".into(),
            Kind::AbsPaths(_) => "array of strings (absolute paths)".into(),
        }
    }

    /// The default value as TOML.
    pub fn default_value(&self) -> String {
        self.toml_value(&Config::default()).to_string()
    }

    /// The current value in `config` as TOML.
    fn toml_value(&self, config: &Config) -> toml::Value {
        use toml::Value as V;
        match &self.kind {
            Kind::Bool(f) => V::Boolean(*(f.get)(config)),
            Kind::Signals(f) => V::String((f.get)(config).as_str().into()),
            Kind::Int { field, .. } => {
                let v = match field {
                    IntField::U32(f) => u64::from(*(f.get)(config)),
                    IntField::U64(f) => *(f.get)(config),
                    IntField::Secs(f) => (f.get)(config).as_secs(),
                };
                V::Integer(i64::try_from(v).unwrap_or(i64::MAX))
            }
            Kind::Float { field, .. } => V::Float(match field {
                FloatField::F64(f) => *(f.get)(config),
                FloatField::Secs(f) => (f.get)(config).as_secs_f64(),
            }),
            Kind::Path(f) => V::String(path_text((f.get)(config))),
            Kind::AbsPaths(f) => V::Array(
                (f.get)(config)
                    .iter()
                    .map(|p| V::String(path_text(p)))
                    .collect(),
            ),
        }
    }

    /// Parses, checks and stores one value.
    fn apply(&self, config: &mut Config, raw: Raw<'_>, origin: &Source) -> Result<(), ConfigError> {
        let cx = Cx {
            key: self.key,
            origin,
        };
        match &self.kind {
            Kind::Bool(f) => *(f.set)(config) = cx.bool(raw)?,
            Kind::Signals(f) => {
                let s = cx.string(raw)?;
                *(f.set)(config) = IgnoredSignals::parse(&s)
                    .ok_or_else(|| cx.bad_value(format!("{s:?}"), "\"filter\" or \"report\""))?;
            }
            Kind::Int {
                field,
                min,
                max,
                pow2,
            } => {
                let raw_value = cx.int(raw)?;
                let checked = u64::try_from(raw_value)
                    .ok()
                    .filter(|v| (*min..=*max).contains(v) && (!*pow2 || v.is_power_of_two()));
                let out_of_range = || {
                    cx.out_of_range(
                        raw_value.to_string(),
                        int_range(*min, *max, *pow2, raw_value),
                    )
                };
                let Some(v) = checked else {
                    return Err(out_of_range());
                };
                match field {
                    IntField::U32(f) => {
                        *(f.set)(config) = u32::try_from(v).map_err(|_| out_of_range())?;
                    }
                    IntField::U64(f) => *(f.set)(config) = v,
                    IntField::Secs(f) => *(f.set)(config) = Duration::from_secs(v),
                }
            }
            Kind::Float { field, max } => {
                let v = cx.float(raw)?;
                // Written so that NaN fails too.
                if !(v > 0.0 && v <= *max) {
                    return Err(cx.out_of_range(v.to_string(), float_range(*max)));
                }
                match field {
                    FloatField::F64(f) => *(f.set)(config) = v,
                    FloatField::Secs(f) => *(f.set)(config) = Duration::from_secs_f64(v),
                }
            }
            Kind::Path(f) => {
                let s = cx.string(raw)?;
                if s.is_empty() {
                    return Err(cx.bad_value("\"\"".into(), "a path"));
                }
                *(f.set)(config) = PathBuf::from(s);
            }
            Kind::AbsPaths(f) => {
                let items: Vec<String> = match raw {
                    Raw::Toml(toml::Value::Array(items)) => items
                        .iter()
                        .map(|item| match item {
                            toml::Value::String(s) => Ok(s.clone()),
                            other => Err(cx.wrong_type("an array of strings", other.type_str())),
                        })
                        .collect::<Result<_, _>>()?,
                    Raw::Toml(other) => {
                        return Err(cx.wrong_type("an array of strings", other.type_str()));
                    }
                    Raw::Text(s) => s
                        .split(',')
                        .filter(|item| !item.is_empty())
                        .map(str::to_owned)
                        .collect(),
                };
                let mut paths = Vec::with_capacity(items.len());
                for item in items {
                    if !item.starts_with('/') {
                        return Err(cx.bad_value(format!("{item:?}"), "an absolute path"));
                    }
                    paths.push(PathBuf::from(item));
                }
                *(f.set)(config) = paths;
            }
        }
        Ok(())
    }
}

/// `data_dir` -> `--data-dir`, `alerts.memory_percent` -> `--alerts-memory-percent`.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace(['.', '_'], "-"))
}

/// The allowed range, phrased for `value` (a key with no real upper bound still has TOML's).
fn int_range(min: u64, max: u64, pow2: bool, value: i128) -> String {
    if pow2 {
        format!("a power of two between {min} and {max}")
    } else if max == TOML_INT_MAX && value > i128::from(max) {
        format!("at most {max}")
    } else if max == TOML_INT_MAX {
        format!("at least {min}")
    } else {
        format!("{min}..={max}")
    }
}

fn float_range(max: f64) -> String {
    format!("greater than 0, at most {max}")
}

/// Paths are written to TOML as text; a non-UTF-8 path cannot be, so it is shown lossily.
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A value as it arrives: from the file, or text from the environment or a flag.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

/// The key and origin every error about a value names.
struct Cx<'a> {
    key: &'a str,
    origin: &'a Source,
}

impl Cx<'_> {
    fn wrong_type(&self, expected: &'static str, found: &'static str) -> ConfigError {
        ConfigError::WrongType {
            origin: self.origin.clone(),
            key: self.key.into(),
            expected,
            found,
        }
    }

    fn bad_value(&self, value: String, expected: &'static str) -> ConfigError {
        ConfigError::BadValue {
            origin: self.origin.clone(),
            key: self.key.into(),
            value,
            expected,
        }
    }

    fn out_of_range(&self, value: String, range: String) -> ConfigError {
        ConfigError::OutOfRange {
            origin: self.origin.clone(),
            key: self.key.into(),
            value,
            range,
        }
    }

    fn bool(&self, raw: Raw<'_>) -> Result<bool, ConfigError> {
        match raw {
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(other) => Err(self.wrong_type("a boolean", other.type_str())),
            Raw::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(self.bad_value(format!("{s:?}"), "a boolean (true/false/1/0/yes/no)")),
            },
        }
    }

    fn string(&self, raw: Raw<'_>) -> Result<String, ConfigError> {
        match raw {
            Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
            Raw::Toml(other) => Err(self.wrong_type("a string", other.type_str())),
            Raw::Text(s) => Ok(s.to_owned()),
        }
    }

    /// Wide enough for any i64 from TOML and any u64 from text.
    fn int(&self, raw: Raw<'_>) -> Result<i128, ConfigError> {
        match raw {
            Raw::Toml(toml::Value::Integer(i)) => Ok(i128::from(*i)),
            Raw::Toml(other) => Err(self.wrong_type("an integer", other.type_str())),
            Raw::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| self.bad_value(format!("{s:?}"), "an integer")),
        }
    }

    /// An integer is a number too: `memory_percent = 85`.
    fn float(&self, raw: Raw<'_>) -> Result<f64, ConfigError> {
        match raw {
            Raw::Toml(toml::Value::Float(f)) => Ok(*f),
            Raw::Toml(toml::Value::Integer(i)) => Ok(*i as f64),
            Raw::Toml(other) => Err(self.wrong_type("a number", other.type_str())),
            Raw::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| self.bad_value(format!("{s:?}"), "a number")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading.

/// Loads the configuration: defaults, then the file (`path`, or [`DEFAULT_PATH`] when
/// None), then the environment as seen through `env` (only the names of [`KeyInfo::env_var`]
/// are asked for), then `flags`, each a dotted key of [`keys`] and its value as text
/// (booleans `true`/`false`/`1`/`0`/`yes`/`no`, `resources.mounts` comma-separated).
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(&str, String)],
) -> Result<Loaded, ConfigError> {
    match path {
        Some(path) => load_at(path, true, env, flags),
        None => load_at(Path::new(DEFAULT_PATH), false, env, flags),
    }
}

/// [`load`] with the process environment.
pub fn load_with_process_env(
    path: Option<&Path>,
    flags: &[(&str, String)],
) -> Result<Loaded, ConfigError> {
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    load(path, &env, flags)
}

/// `explicit`: the operator named the file, so its absence is an error.
fn load_at(
    path: &Path,
    explicit: bool,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(&str, String)],
) -> Result<Loaded, ConfigError> {
    let mut loaded = Loaded {
        config: Config::default(),
        sources: KEYS
            .iter()
            .map(|info| info.key.to_owned())
            .chain(["rules".to_owned()])
            .map(|key| (key, Source::Default))
            .collect(),
        file: None,
    };

    match fs::read_to_string(path) {
        Ok(text) => {
            apply_file(&mut loaded, &text, path)?;
            loaded.file = Some(path.to_owned());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    }

    for info in &KEYS {
        let var = info.env_var();
        if let Some(value) = env(&var).filter(|v| !v.is_empty()) {
            let origin = Source::Env(var);
            info.apply(&mut loaded.config, Raw::Text(&value), &origin)?;
            loaded.sources.insert(info.key.into(), origin);
        }
    }

    for (key, value) in flags {
        let Some(info) = lookup(key) else {
            let known: Vec<&str> = KEYS.iter().map(|info| info.key).collect();
            return Err(ConfigError::UnknownKey {
                origin: Source::Flag(flag_name(key)),
                key: (*key).to_owned(),
                known: format!("known keys: {}", known.join(", ")),
            });
        };
        let origin = Source::Flag(info.flag());
        info.apply(&mut loaded.config, Raw::Text(value), &origin)?;
        loaded.sources.insert(info.key.into(), origin);
    }

    Ok(loaded)
}

fn apply_file(loaded: &mut Loaded, text: &str, path: &Path) -> Result<(), ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            location: e.span().map(|span| line_column(text, span.start)),
            message: e.message().trim_end().to_owned(),
        })?;
    let origin = Source::File(path.to_owned());

    for (name, value) in &table {
        if name == "rules" {
            loaded.config.rules = parse_rules(value, path)?;
            loaded.sources.insert("rules".into(), origin.clone());
        } else if let Some(info) = lookup(name).filter(|info| info.section().is_none()) {
            info.apply(&mut loaded.config, Raw::Toml(value), &origin)?;
            loaded.sources.insert(info.key.into(), origin.clone());
        } else if SECTIONS.contains(&name.as_str()) {
            let Some(section) = value.as_table() else {
                return Err(ConfigError::WrongType {
                    origin,
                    key: name.clone(),
                    expected: "a table",
                    found: value.type_str(),
                });
            };
            for (key, value) in section {
                let dotted = format!("{name}.{key}");
                let Some(info) = lookup(&dotted) else {
                    let known: Vec<&str> = KEYS
                        .iter()
                        .filter(|info| info.section() == Some(name))
                        .map(KeyInfo::name)
                        .collect();
                    return Err(ConfigError::UnknownKey {
                        origin,
                        key: dotted,
                        known: format!("known keys in [{name}]: {}", known.join(", ")),
                    });
                };
                info.apply(&mut loaded.config, Raw::Toml(value), &origin)?;
                loaded.sources.insert(dotted, origin.clone());
            }
        } else {
            let mut known: Vec<String> = KEYS
                .iter()
                .filter(|info| info.section().is_none())
                .map(|info| info.key.to_owned())
                .collect();
            known.extend(SECTIONS.iter().map(|s| format!("[{s}]")));
            known.push("[[rules]]".into());
            return Err(ConfigError::UnknownKey {
                origin,
                key: name.clone(),
                known: format!("known top-level keys: {}", known.join(", ")),
            });
        }
    }
    Ok(())
}

/// `[[rules]]` into [`Rule`]s, checked field by field (so errors name `rules[i].field`) and
/// then validated by [`Detector::new`].
fn parse_rules(value: &toml::Value, path: &Path) -> Result<Vec<Rule>, ConfigError> {
    let origin = Source::File(path.to_owned());
    let Some(items) = value.as_array() else {
        return Err(ConfigError::WrongType {
            origin,
            key: "rules".into(),
            expected: "an array of tables ([[rules]])",
            found: value.type_str(),
        });
    };
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(table) = item.as_table() else {
            return Err(ConfigError::WrongType {
                origin,
                key: format!("rules[{i}]"),
                expected: "a table",
                found: item.type_str(),
            });
        };
        let mut rule = Rule {
            name: String::new(),
            exe_glob: None,
            comm: None,
            argv_pattern: None,
        };
        let mut named = false;
        for (key, value) in table {
            let dotted = format!("rules[{i}].{key}");
            if !RULE_KEYS.contains(&key.as_str()) {
                return Err(ConfigError::UnknownKey {
                    origin,
                    key: dotted,
                    known: format!("known keys in [[rules]]: {}", RULE_KEYS.join(", ")),
                });
            }
            let Some(text) = value.as_str() else {
                return Err(ConfigError::WrongType {
                    origin,
                    key: dotted,
                    expected: "a string",
                    found: value.type_str(),
                });
            };
            let text = text.to_owned();
            match key.as_str() {
                "name" => {
                    rule.name = text;
                    named = true;
                }
                "exe_glob" => rule.exe_glob = Some(text),
                "comm" => rule.comm = Some(text),
                _ => rule.argv_pattern = Some(text),
            }
        }
        if !named {
            return Err(ConfigError::MissingKey {
                origin,
                key: format!("rules[{i}].name"),
            });
        }
        rules.push(rule);
    }
    Detector::new(rules.clone()).map_err(|source| ConfigError::Rule {
        path: path.to_owned(),
        index: rule_index(&source),
        source,
    })?;
    Ok(rules)
}

fn rule_index(e: &RuleError) -> usize {
    match e {
        RuleError::EmptyName { index }
        | RuleError::NoCriteria { index, .. }
        | RuleError::EmptyField { index, .. }
        | RuleError::RelativeExeGlob { index, .. }
        | RuleError::CommTooLong { index, .. } => *index,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------
// Rendering.

/// The effective configuration as TOML that loads back to the same [`Config`], each value
/// followed by a comment naming its [`Source`]. What `claude-monitor config` prints.
pub fn render(loaded: &Loaded) -> String {
    let mut out = String::from("# claude-monitor: effective configuration\n");
    match &loaded.file {
        Some(path) => out.push_str(&format!("# file: {}\n", comment_text(path.display()))),
        None => out.push_str("# file: none (defaults, environment and flags only)\n"),
    }
    out.push('\n');
    let mut section = None;
    for info in &KEYS {
        if info.section() != section {
            section = info.section();
            if let Some(name) = section {
                out.push_str(&format!("\n[{name}]\n"));
            }
        }
        out.push_str(&format!(
            "{} = {}  # {}\n",
            info.name(),
            info.toml_value(&loaded.config),
            comment_text(loaded.source(info.key)),
        ));
    }
    let rules_source = comment_text(loaded.source("rules"));
    for rule in &loaded.config.rules {
        out.push_str(&format!("\n[[rules]]  # {rules_source}\n"));
        let fields = [
            ("name", Some(&rule.name)),
            ("exe_glob", rule.exe_glob.as_ref()),
            ("comm", rule.comm.as_ref()),
            ("argv_pattern", rule.argv_pattern.as_ref()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                out.push_str(&format!("{key} = {}\n", toml::Value::String(value.clone())));
            }
        }
    }
    out
}

/// A comment must stay on its line.
fn comment_text(text: impl fmt::Display) -> String {
    text.to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The documented configuration file with every key at its default (what the package
/// installs as an example; it loads to [`Config::default`]).
pub const SAMPLE: &str = r#"# claude-monitor daemon configuration.
#
# Read from /etc/claude-monitor/config.toml (or the file given with --config). Every key is
# optional; the values below are the defaults. Each key can be overridden by an environment
# variable CLAUDE_MONITOR_<SECTION>_<KEY> (e.g. CLAUDE_MONITOR_ALERTS_MEMORY_PERCENT=90,
# CLAUDE_MONITOR_DATA_DIR=/srv/cm), and then by command-line flags. `claude-monitor config`
# prints the effective configuration and where each value came from.

# Directory for reports, event logs and state.
data_dir = "/var/lib/claude-monitor"

[watch]
# Report every OOM kill on the host, whoever the victim is.
oom_all = true
# Also write an exit report for any non-zero exit of a process in a watched session.
report_nonzero_exit = false
# Signals whose default action is to be ignored (SIGCHLD, SIGURG, SIGWINCH):
# "filter" drops them in the kernel, "report" reports them.
ignored_signals = "filter"
# Runtime signals (signals a process sends itself that do not end it, with their
# deliveries; a group exit's SIGKILL taken by threads other than the leader): "filter"
# drops and counts them in the kernel, "report" reports them.
runtime_signals = "filter"

[kernel]
# Ring-buffer size in KiB between the kernel programs and the daemon: a power of two
# between 4 and 1048576.
ring_buffer_kb = 4096
# Pin programs, links and the ring buffer under bpffs so events are kept while the daemon
# is down (restarts, upgrades).
pin = true
# The bpffs directory to pin under.
pin_dir = "/sys/fs/bpf/claude-monitor"

[logs]
# Rotate a log file once it reaches this size in bytes (at least 4096).
max_bytes = 10485760
# Rotated files kept (<name>.1 .. <name>.N), 1 to 100.
keep = 5

[resources]
# Seconds between samples of host memory, pressure and disk usage (above 0, at most 86400).
system_interval_secs = 30.0
# Seconds between samples of each session's processes (above 0, at most 86400).
session_interval_secs = 2.0
# Absolute paths of the filesystems whose usage is watched (comma-separated in the
# environment: CLAUDE_MONITOR_RESOURCES_MOUNTS=/,/home).
mounts = ["/"]
# Samples kept in memory per session, for reports (1 to 10000).
history = 30

[alerts]
# Alert when host memory use is above this percentage (above 0, at most 100).
memory_percent = 85.0
# Alert when a watched filesystem's use is above this percentage (above 0, at most 100).
disk_percent = 90.0
# Alert when a session's total resident memory is above this many MiB (0 disables).
session_rss_mb = 0
# Minimum seconds between two alerts of the same kind about the same subject.
cooldown_secs = 1800

# Extra agent or program detection rules, tried after the built-in Claude Code rules; the
# first match names the session's agent. Rules come only from this file (no environment
# variable or flag). Each rule needs `name` and at least one of:
#   exe_glob      glob over the executable path (absolute, or starting with */);
#                 `*` stays within one path component, except a leading `*/`
#   comm          the process name exactly, or a glob when it contains `*`
#   argv_pattern  over the arguments joined by spaces: a substring, or a glob when it
#                 contains `*`
# Every given field must match.
#
# [[rules]]
# name = "aider"
# exe_glob = "*/bin/python3*"
# argv_pattern = "/aider "
"#;

#[cfg(test)]
mod tests;

//! The one table of keys: types, ranges, defaults' documentation, environment and flag names.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::*;

/// Accessors for one field of [`Config`].
pub(super) struct Field<T: 'static> {
    pub(super) get: fn(&Config) -> &T,
    pub(super) set: fn(&mut Config) -> &mut T,
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
pub(super) enum IntField {
    U32(Field<u32>),
    U64(Field<u64>),
    Secs(Field<Duration>),
}

/// A number field: stored as f64 or as a Duration of (fractional) seconds.
pub(super) enum FloatField {
    F64(Field<f64>),
    Secs(Field<Duration>),
}

/// A key's type, range and accessors.
pub(super) enum Kind {
    Bool(Field<bool>),
    Signals(Field<IgnoredSignals>),
    /// `min..=max`; `max` is at most i64::MAX so that every value can be written as TOML.
    Int {
        field: IntField,
        min: u64,
        max: u64,
        pow2: bool,
    },
    /// Greater than 0, at least `min` and at most `max`.
    Float {
        field: FloatField,
        min: f64,
        max: f64,
    },
    /// An absolute path: the daemon's working directory is not the operator's.
    Path(Field<PathBuf>),
    /// Absolute paths; comma-separated in the environment and flags.
    AbsPaths(Field<Vec<PathBuf>>),
    /// Regular expressions ([`Pattern`]), at most [`Pattern::MAX_COUNT`]; one per line in
    /// the environment and flags (a pattern may well hold a comma).
    Patterns(Field<Vec<Pattern>>),
    /// An absolute path, or empty for none (a feature turned off).
    OptPath(Field<Option<PathBuf>>),
    /// `"0666"` or `"0660"`.
    Mode(Field<SocketMode>),
    /// A group name (`[a-z_][a-z0-9_-]*`, at most 32 characters), or empty for none.
    Group(Field<String>),
    /// A socket address (`127.0.0.1:9464`, `[::1]:9464`), or empty for none.
    Listen(Field<Option<std::net::SocketAddr>>),
    /// An `http://` URL ([`Endpoint`]), or empty for none.
    Url(Field<Option<Endpoint>>),
}

/// One configuration key: see [`keys`].
pub struct KeyInfo {
    pub(super) key: &'static str,
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the documentation of the key, checked against the sample file by a test"
        )
    )]
    pub(super) doc: &'static str,
    pub(super) kind: Kind,
}

/// The largest integer TOML can hold.
pub(super) const TOML_INT_MAX: u64 = i64::MAX as u64;

/// The sections, in the order [`render`] and [`SAMPLE`] use.
pub(super) const SECTIONS: [&str; 10] = [
    "watch",
    "kernel",
    "logs",
    "reports",
    "resources",
    "alerts",
    "redact",
    "export.journald",
    "export.otlp",
    "api",
];

/// The fields of a `[[rules]]` table ([`Rule`]).
pub(super) const RULE_KEYS: [&str; 4] = ["name", "exe_glob", "comm", "argv_pattern"];

pub(super) static KEYS: [KeyInfo; 35] = [
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
        key: "reports.max_count",
        doc: "Exit reports kept; beyond it the oldest are removed.",
        kind: Kind::Int {
            field: IntField::U32(field!(reports.max_count)),
            min: 10,
            max: 1_000_000,
            pow2: false,
        },
    },
    KeyInfo {
        key: "reports.max_bytes",
        doc: "Bytes of exit reports kept; beyond it the oldest are removed.",
        kind: Kind::Int {
            field: IntField::U64(field!(reports.max_bytes)),
            min: 1024 * 1024,
            max: TOML_INT_MAX,
            pow2: false,
        },
    },
    KeyInfo {
        key: "reports.per_uid_per_minute",
        doc: "Exit reports written per minute for one user's processes; beyond it they are counted, not written.",
        kind: Kind::Int {
            field: IntField::U32(field!(reports.per_uid_per_minute)),
            min: 1,
            max: 100_000,
            pow2: false,
        },
    },
    KeyInfo {
        key: "resources.system_interval_secs",
        doc: "Seconds between samples of host memory, pressure and disk usage.",
        kind: Kind::Float {
            field: FloatField::Secs(field!(resources.system_interval)),
            min: MIN_INTERVAL_SECS,
            max: 86400.0,
        },
    },
    KeyInfo {
        key: "resources.session_interval_secs",
        doc: "Seconds between samples of each session's processes.",
        kind: Kind::Float {
            field: FloatField::Secs(field!(resources.session_interval)),
            min: MIN_INTERVAL_SECS,
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
            min: 0.0,
            max: 100.0,
        },
    },
    KeyInfo {
        key: "alerts.disk_percent",
        doc: "Alert when a watched filesystem's use is above this percentage.",
        kind: Kind::Float {
            field: FloatField::F64(field!(alerts.disk_percent)),
            min: 0.0,
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
    KeyInfo {
        key: "redact.enabled",
        doc: "Replace the values of secrets in command lines and tool commands with \
              [REDACTED] before anything is written.",
        kind: Kind::Bool(field!(redact.enabled)),
    },
    KeyInfo {
        key: "redact.patterns",
        doc: "Regular expressions of your own secrets, on top of the built-in rules.",
        kind: Kind::Patterns(field!(redact.patterns)),
    },
    KeyInfo {
        key: "export.journald.enabled",
        doc: "Write one structured journal entry per exit report (MESSAGE is its sentence, \
              MESSAGE_ID its kind).",
        kind: Kind::Bool(field!(export.journald.enabled)),
    },
    KeyInfo {
        key: "export.journald.socket",
        doc: "journald's native socket.",
        kind: Kind::Path(field!(export.journald.socket)),
    },
    KeyInfo {
        key: "export.otlp.endpoint",
        doc: "Send every event as an OpenTelemetry LogRecord (OTLP/HTTP, protobuf) to this \
              http:// URL (\"http://127.0.0.1:4318\"; /v1/logs is added when it has no \
              path); empty (the default) turns it off.",
        kind: Kind::Url(field!(export.otlp.endpoint)),
    },
    KeyInfo {
        key: "export.otlp.queue",
        doc: "Events waiting to be sent at most; while the receiver is down or slow, the \
              newer ones beyond are dropped and counted.",
        kind: Kind::Int {
            field: IntField::U32(field!(export.otlp.queue)),
            min: 16,
            max: 1_000_000,
            pow2: false,
        },
    },
    KeyInfo {
        key: "export.otlp.batch",
        doc: "Events per request at most.",
        kind: Kind::Int {
            field: IntField::U32(field!(export.otlp.batch)),
            min: 1,
            max: 10_000,
            pow2: false,
        },
    },
    KeyInfo {
        key: "export.otlp.timeout_secs",
        doc: "How long one request may take, connecting included, before it is retried.",
        kind: Kind::Int {
            field: IntField::Secs(field!(export.otlp.timeout)),
            min: 1,
            max: 300,
            pow2: false,
        },
    },
    KeyInfo {
        key: "api.socket",
        doc: "The Unix socket of the live API (HTTP: /healthz, /v1/events, \
              /v1/events/stream); empty turns the socket off.",
        kind: Kind::OptPath(field!(api.socket)),
    },
    KeyInfo {
        key: "api.socket_mode",
        doc: "\"0666\": every local user connects and sees the events of their own \
              processes; \"0660\": only root and api.group.",
        kind: Kind::Mode(field!(api.socket_mode)),
    },
    KeyInfo {
        key: "api.group",
        doc: "A group whose members see every event, as root does (and the socket's group); \
              empty: none.",
        kind: Kind::Group(field!(api.group)),
    },
    KeyInfo {
        key: "api.subscriber_queue",
        doc: "Events queued for one API subscriber; one that reads slower loses the rest \
              and is told how many.",
        kind: Kind::Int {
            field: IntField::U32(field!(api.subscriber_queue)),
            min: 16,
            max: 1_000_000,
            pow2: false,
        },
    },
    KeyInfo {
        key: "api.tcp",
        doc: "An address (\"127.0.0.1:9464\") where the same API is served over HTTP on TCP, \
              read-only; empty (the default) turns it off. A non-loopback address needs \
              api.token_file.",
        kind: Kind::Listen(field!(api.tcp)),
    },
    KeyInfo {
        key: "api.token_file",
        doc: "A file holding the bearer token every TCP request must send \
              (Authorization: Bearer TOKEN); owned by root, mode 0600 or stricter; empty: \
              no token, only /healthz and /metrics over TCP.",
        kind: Kind::OptPath(field!(api.token_file)),
    },
];

#[cfg(test)]
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
    #[cfg(test)]
    /// The dotted name: `alerts.memory_percent`, `data_dir`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The section (`alerts`, `export.journald`), None for a top-level key.
    pub fn section(&self) -> Option<&'static str> {
        self.key.rsplit_once('.').map(|(section, _)| section)
    }

    /// The name within its section.
    pub fn name(&self) -> &'static str {
        self.key.rsplit_once('.').map_or(self.key, |(_, name)| name)
    }

    #[cfg(test)]
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

    #[cfg(test)]
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
            Kind::Float { min, max, .. } => format!("number, {}", float_range(*min, *max)),
            Kind::Path(_) => "string (path)".into(),
            Kind::AbsPaths(_) => "array of strings (absolute paths)".into(),
            Kind::Patterns(_) => format!(
                "array of strings (regular expressions), at most {}",
                Pattern::MAX_COUNT
            ),
            Kind::OptPath(_) => "string (absolute path, or empty)".into(),
            Kind::Mode(_) => "string, \"0666\" or \"0660\"".into(),
            Kind::Group(_) => "string (group name, or empty)".into(),
            Kind::Listen(_) => "string (address:port, or empty)".into(),
            Kind::Url(_) => "string (http:// URL, or empty)".into(),
        }
    }

    #[cfg(test)]
    /// The default value as TOML.
    pub fn default_value(&self) -> String {
        self.toml_value(&Config::default()).to_string()
    }

    /// The current value in `config` as TOML.
    pub(super) fn toml_value(&self, config: &Config) -> toml::Value {
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
            Kind::Patterns(f) => V::Array(
                (f.get)(config)
                    .iter()
                    .map(|p| V::String(p.as_str().into()))
                    .collect(),
            ),
            Kind::OptPath(f) => V::String(
                (f.get)(config)
                    .as_deref()
                    .map(path_text)
                    .unwrap_or_default(),
            ),
            Kind::Mode(f) => V::String((f.get)(config).as_str().into()),
            Kind::Group(f) => V::String((f.get)(config).clone()),
            Kind::Listen(f) => {
                V::String((f.get)(config).map(|a| a.to_string()).unwrap_or_default())
            }
            Kind::Url(f) => V::String(
                (f.get)(config)
                    .as_ref()
                    .map(Endpoint::to_string)
                    .unwrap_or_default(),
            ),
        }
    }

    /// Parses, checks and stores one value.
    pub(super) fn apply(
        &self,
        config: &mut Config,
        raw: Raw<'_>,
        origin: &Source,
    ) -> Result<(), ConfigError> {
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
            Kind::Float { field, min, max } => {
                let v = cx.float(raw)?;
                // Written so that NaN fails too.
                if !(v > 0.0 && v >= *min && v <= *max) {
                    return Err(cx.out_of_range(v.to_string(), float_range(*min, *max)));
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
                if !Path::new(&s).is_absolute() {
                    return Err(cx.bad_value(s, "an absolute path"));
                }
                *(f.set)(config) = PathBuf::from(s);
            }
            Kind::AbsPaths(f) => {
                let items = cx.strings(raw, ',')?;
                let mut paths = Vec::with_capacity(items.len());
                for item in items {
                    if !item.starts_with('/') {
                        return Err(cx.bad_value(format!("{item:?}"), "an absolute path"));
                    }
                    paths.push(PathBuf::from(item));
                }
                *(f.set)(config) = paths;
            }
            Kind::Patterns(f) => {
                let items = cx.strings(raw, '\n')?;
                if items.len() > Pattern::MAX_COUNT {
                    return Err(cx.out_of_range(
                        format!("{} patterns", items.len()),
                        format!("at most {}", Pattern::MAX_COUNT),
                    ));
                }
                let mut patterns = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let pattern =
                        Pattern::parse(&item).map_err(|reason| ConfigError::BadPattern {
                            origin: origin.clone(),
                            key: format!("{}[{i}]", self.key),
                            pattern: item.clone(),
                            reason,
                        })?;
                    patterns.push(pattern);
                }
                *(f.set)(config) = patterns;
            }
            Kind::OptPath(f) => {
                let s = cx.string(raw)?;
                if !s.is_empty() && !Path::new(&s).is_absolute() {
                    return Err(cx.bad_value(s, "an absolute path, or empty"));
                }
                *(f.set)(config) = (!s.is_empty()).then(|| PathBuf::from(s));
            }
            Kind::Mode(f) => {
                let s = cx.string(raw)?;
                *(f.set)(config) = SocketMode::parse(&s)
                    .ok_or_else(|| cx.bad_value(format!("{s:?}"), "\"0666\" or \"0660\""))?;
            }
            Kind::Group(f) => {
                let s = cx.string(raw)?;
                let valid = s.len() <= 32
                    && s.bytes().enumerate().all(|(i, b)| {
                        b.is_ascii_lowercase()
                            || b == b'_'
                            || (i > 0 && (b.is_ascii_digit() || b == b'-'))
                    });
                if !valid {
                    return Err(cx.bad_value(format!("{s:?}"), "a group name, or empty"));
                }
                *(f.set)(config) = s;
            }
            Kind::Listen(f) => {
                let s = cx.string(raw)?;
                *(f.set)(config) = if s.is_empty() {
                    None
                } else {
                    Some(s.parse().map_err(|_| {
                        cx.bad_value(
                            format!("{s:?}"),
                            "an address and port (\"127.0.0.1:9464\", \"[::1]:9464\"), or empty",
                        )
                    })?)
                };
            }
            Kind::Url(f) => {
                let s = cx.string(raw)?;
                *(f.set)(config) = if s.is_empty() {
                    None
                } else {
                    Some(Endpoint::parse(&s).map_err(|expected| {
                        cx.bad_value(format!("{:?}", truncated(&s)), expected)
                    })?)
                };
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
pub(super) fn int_range(min: u64, max: u64, pow2: bool, value: i128) -> String {
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

pub(super) fn float_range(min: f64, max: f64) -> String {
    if min > 0.0 {
        format!("at least {min}, at most {max}")
    } else {
        format!("greater than 0, at most {max}")
    }
}

/// The shortest sampling interval: sampling every session's processes from /proc more often
/// than this would be the agent's own load, not a measurement.
const MIN_INTERVAL_SECS: f64 = 0.1;

/// Paths are written to TOML as text; a non-UTF-8 path cannot be, so it is shown lossily.
pub(super) fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// At most 120 characters of `s` (an error quotes the value; a URL can be long).
fn truncated(s: &str) -> String {
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

use std::{cell::RefCell, collections::HashMap, path::Path};

use super::*;

use crate::testutil::TempDir;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

/// Loads `text` from a fresh file; returns the result and the file's path.
fn load_text(text: &str) -> (Result<Loaded, ConfigError>, PathBuf) {
    let dir = TempDir::new("load");
    let path = dir.write("config.toml", text);
    (load(Some(&path), &no_env, &[]), path)
}

fn file_error(text: &str) -> (ConfigError, String) {
    let (result, path) = load_text(text);
    let err = result.expect_err(text);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: ", path.display())),
        "error does not name the file: {msg}"
    );
    (err, msg)
}

fn env_error(var: &str, value: &str) -> (ConfigError, String) {
    let dir = TempDir::new("env");
    let env = env_of(&[(var, value)]);
    let err =
        load_at(&dir.0.join("absent.toml"), false, &env, &[]).expect_err(&format!("{var}={value}"));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("env {var}: ")),
        "error does not name the variable: {msg}"
    );
    (err, msg)
}

#[test]
fn absent_default_file_means_defaults() {
    let dir = TempDir::new("absent");
    let loaded = load_at(&dir.0.join("config.toml"), false, &no_env, &[]).expect("defaults");
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.file, None);
    assert_eq!(loaded.sources.len(), KEYS.len() + 1);
    assert!(loaded.sources.values().all(|s| *s == Source::Default));
}

#[test]
fn absent_explicit_file_is_an_error() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nope.toml");
    let err = load(Some(&path), &no_env, &[]).expect_err("missing");
    assert!(matches!(err, ConfigError::Missing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: no such file (given with --config)", path.display())
    );
}

#[test]
fn unreadable_file_is_an_error() {
    // A directory cannot be read as a file, even by root.
    let dir = TempDir::new("dir");
    let err = load(Some(&dir.0), &no_env, &[]).expect_err("a directory");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.data_dir, Path::new("/var/lib/claude-monitor"));
    assert!(c.watch.oom_all && !c.watch.report_nonzero_exit);
    assert_eq!(c.watch.ignored_signals, IgnoredSignals::Filter);
    assert_eq!(c.watch.runtime_signals, IgnoredSignals::Filter);
    assert_eq!(c.kernel.ring_buffer_kb, 4096);
    assert_eq!(c.kernel.ring_buffer_bytes(), 4 << 20);
    assert!(c.kernel.pin);
    assert_eq!(c.kernel.pin_dir, Path::new("/sys/fs/bpf/claude-monitor"));
    assert_eq!((c.logs.max_bytes, c.logs.keep), (10485760, 5));
    assert_eq!(c.resources.system_interval, Duration::from_secs(30));
    assert_eq!(c.resources.session_interval, Duration::from_secs(2));
    assert_eq!(c.resources.mounts, vec![PathBuf::from("/")]);
    assert_eq!(c.resources.history, 30);
    assert_eq!(
        (c.alerts.memory_percent, c.alerts.disk_percent),
        (85.0, 90.0)
    );
    assert_eq!(c.alerts.session_rss_mb, 0);
    assert_eq!(c.alerts.cooldown, Duration::from_secs(1800));
    assert!(c.rules.is_empty());
}

#[test]
fn sample_loads_to_the_defaults() {
    let (loaded, path) = load_text(SAMPLE);
    let loaded = loaded.expect("SAMPLE loads");
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.config.rules.is_empty());
    assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
    // Every key is spelled out in the sample, so it documents all of them.
    for info in keys() {
        assert_eq!(
            loaded.source(info.key()),
            &Source::File(path.clone()),
            "{} is not set in SAMPLE",
            info.key()
        );
    }
    // The commented rule example is a valid rule once uncommented.
    let example: String = SAMPLE
        .lines()
        .skip_while(|l| *l != "# [[rules]]")
        .map(|l| format!("{}\n", l.trim_start_matches("# ")))
        .collect();
    let (loaded, _) = load_text(&example);
    let rules = loaded.expect("rule example loads").config.rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].name, "aider");
}

#[test]
fn registry_is_consistent() {
    let mut seen = std::collections::BTreeSet::new();
    let mut sections_done: Vec<Option<&str>> = Vec::new();
    for info in keys() {
        assert!(seen.insert(info.key()), "duplicate {}", info.key());
        assert!(!info.doc().is_empty());
        assert_eq!(lookup(info.key()).map(KeyInfo::key), Some(info.key()));
        // Sections are contiguous, top-level keys first, in SECTIONS order.
        if sections_done.last() != Some(&info.section()) {
            assert!(!sections_done.contains(&info.section()), "{}", info.key());
            sections_done.push(info.section());
        }
        // The default renders as TOML that parses back.
        let line = format!("x = {}", info.default_value());
        line.parse::<toml::Table>().expect(&line);
        assert!(!info.value_type().is_empty());
        if let Kind::Int {
            field: IntField::U32(_),
            max,
            ..
        } = info.kind
        {
            assert!(max <= u64::from(u32::MAX), "{}", info.key());
        }
        if let Kind::Int { min, max, .. } = info.kind {
            assert!(min <= max && max <= TOML_INT_MAX, "{}", info.key());
        }
    }
    let expected: Vec<Option<&str>> = std::iter::once(None)
        .chain(SECTIONS.iter().map(|s| Some(*s)))
        .collect();
    assert_eq!(sections_done, expected);

    let info = lookup("alerts.memory_percent").expect("key");
    assert_eq!(info.env_var(), "CLAUDE_MONITOR_ALERTS_MEMORY_PERCENT");
    assert_eq!(info.flag(), "--alerts-memory-percent");
    assert_eq!(
        (info.section(), info.name()),
        (Some("alerts"), "memory_percent")
    );
    let info = lookup("data_dir").expect("key");
    assert_eq!(info.env_var(), "CLAUDE_MONITOR_DATA_DIR");
    assert_eq!(info.flag(), "--data-dir");
    assert_eq!((info.section(), info.name()), (None, "data_dir"));
    assert_eq!(
        lookup("kernel.ring_buffer_kb")
            .map(KeyInfo::value_type)
            .as_deref(),
        Some("integer, a power of two between 4 and 1048576")
    );
    assert_eq!(
        lookup("resources.system_interval_secs")
            .map(KeyInfo::default_value)
            .as_deref(),
        Some("30.0")
    );
    assert_eq!(
        lookup("resources.mounts")
            .map(KeyInfo::default_value)
            .as_deref(),
        Some(r#"["/"]"#)
    );
}

#[test]
fn file_values_and_sources() {
    let (loaded, path) = load_text(
        r#"
data_dir = "/srv/cm"
[watch]
oom_all = false
ignored_signals = "report"
[kernel]
ring_buffer_kb = 64
pin = false
pin_dir = "/sys/fs/bpf/other"
[logs]
max_bytes = 4096
keep = 100
[resources]
system_interval_secs = 0.5
session_interval_secs = 86400
mounts = ["/", "/home"]
history = 1
[alerts]
memory_percent = 100
disk_percent = 0.5
session_rss_mb = 2048
cooldown_secs = 0

[[rules]]
name = "aider"
exe_glob = "*/bin/python3*"
argv_pattern = "/aider "

[[rules]]
name = "codex"
comm = "codex*"
"#,
    );
    let loaded = loaded.expect("valid");
    let c = &loaded.config;
    assert_eq!(c.data_dir, Path::new("/srv/cm"));
    assert!(!c.watch.oom_all);
    assert!(!c.watch.report_nonzero_exit, "default kept");
    assert_eq!(c.watch.ignored_signals, IgnoredSignals::Report);
    assert_eq!(c.kernel.ring_buffer_kb, 64);
    assert!(!c.kernel.pin);
    assert_eq!(c.kernel.pin_dir, Path::new("/sys/fs/bpf/other"));
    assert_eq!((c.logs.max_bytes, c.logs.keep), (4096, 100));
    assert_eq!(c.resources.system_interval, Duration::from_millis(500));
    assert_eq!(c.resources.session_interval, Duration::from_secs(86400));
    assert_eq!(
        c.resources.mounts,
        vec![PathBuf::from("/"), PathBuf::from("/home")]
    );
    assert_eq!(c.resources.history, 1);
    assert_eq!(
        (c.alerts.memory_percent, c.alerts.disk_percent),
        (100.0, 0.5)
    );
    assert_eq!(c.alerts.session_rss_mb, 2048);
    assert_eq!(c.alerts.cooldown, Duration::ZERO);
    assert_eq!(c.rules.len(), 2);
    assert_eq!(c.rules[0].exe_glob.as_deref(), Some("*/bin/python3*"));
    assert_eq!(c.rules[0].argv_pattern.as_deref(), Some("/aider "));
    assert_eq!(c.rules[1].comm.as_deref(), Some("codex*"));
    assert_eq!(c.rules[1].exe_glob, None);

    let file = Source::File(path);
    assert_eq!(loaded.source("data_dir"), &file);
    assert_eq!(loaded.source("watch.oom_all"), &file);
    assert_eq!(loaded.source("watch.report_nonzero_exit"), &Source::Default);
    assert_eq!(loaded.source("rules"), &file);
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = TempDir::new("layers");
    let path = dir.write(
        "c.toml",
        "data_dir = \"/from/file\"\n[alerts]\nmemory_percent = 50\ndisk_percent = 60\n",
    );
    let env = env_of(&[
        ("CLAUDE_MONITOR_ALERTS_MEMORY_PERCENT", "70.5"),
        ("CLAUDE_MONITOR_DATA_DIR", "/from/env"),
        ("CLAUDE_MONITOR_WATCH_REPORT_NONZERO_EXIT", "yes"),
        ("CLAUDE_MONITOR_RESOURCES_MOUNTS", "/,/home,/var/lib"),
        ("CLAUDE_MONITOR_KERNEL_PIN", ""),
        // Other tools' variables are not keys and are not errors.
        ("CLAUDE_MONITOR_HELPERS", "whatever"),
        ("CLAUDE_MONITOR_ALERTS_MEMRY_PERCENT", "x"),
    ]);
    let flags = [("data_dir", "/from/flag".to_owned())];
    let loaded = load(Some(&path), &env, &flags).expect("valid");
    let c = &loaded.config;
    assert_eq!(c.data_dir, Path::new("/from/flag"));
    assert_eq!(c.alerts.memory_percent, 70.5);
    assert_eq!(c.alerts.disk_percent, 60.0);
    assert!(c.watch.report_nonzero_exit);
    assert!(c.kernel.pin, "an empty variable counts as unset");
    assert_eq!(
        c.resources.mounts,
        ["/", "/home", "/var/lib"].map(PathBuf::from)
    );

    assert_eq!(
        loaded.source("data_dir"),
        &Source::Flag("--data-dir".into())
    );
    assert_eq!(
        loaded.source("alerts.memory_percent"),
        &Source::Env("CLAUDE_MONITOR_ALERTS_MEMORY_PERCENT".into())
    );
    assert_eq!(
        loaded.source("alerts.disk_percent"),
        &Source::File(path.clone())
    );
    assert_eq!(loaded.source("kernel.pin"), &Source::Default);
    assert_eq!(loaded.file.as_deref(), Some(path.as_path()));

    // A flag overrides the environment for the same key.
    let flags = [("alerts.memory_percent", "99".to_owned())];
    let loaded = load(Some(&path), &env, &flags).expect("valid");
    assert_eq!(loaded.config.alerts.memory_percent, 99.0);
    assert_eq!(
        loaded.source("alerts.memory_percent"),
        &Source::Flag("--alerts-memory-percent".into())
    );
}

#[test]
fn only_known_variables_are_looked_up() {
    let asked = RefCell::new(Vec::new());
    let env = |name: &str| {
        asked.borrow_mut().push(name.to_owned());
        None
    };
    let dir = TempDir::new("asked");
    load_at(&dir.0.join("absent.toml"), false, &env, &[]).expect("defaults");
    let expected: Vec<String> = keys().iter().map(KeyInfo::env_var).collect();
    assert_eq!(*asked.borrow(), expected);
}

#[test]
fn env_booleans() {
    for (text, want) in [
        ("true", true),
        ("1", true),
        ("yes", true),
        ("YES", true),
        ("false", false),
        ("0", false),
        ("no", false),
    ] {
        let dir = TempDir::new("bool");
        let env = env_of(&[("CLAUDE_MONITOR_WATCH_OOM_ALL", text)]);
        let loaded = load_at(&dir.0.join("absent.toml"), false, &env, &[]).expect(text);
        assert_eq!(loaded.config.watch.oom_all, want, "{text}");
    }
    let (err, msg) = env_error("CLAUDE_MONITOR_WATCH_OOM_ALL", "maybe");
    assert!(matches!(err, ConfigError::BadValue { .. }), "{err:?}");
    assert_eq!(
        msg,
        "env CLAUDE_MONITOR_WATCH_OOM_ALL: watch.oom_all: \"maybe\" is not a boolean \
             (true/false/1/0/yes/no)"
    );
}

#[test]
fn bad_env_values_name_the_variable() {
    for (var, value, key) in [
        ("CLAUDE_MONITOR_LOGS_KEEP", "five", "logs.keep"),
        ("CLAUDE_MONITOR_LOGS_KEEP", "0", "logs.keep"),
        (
            "CLAUDE_MONITOR_ALERTS_DISK_PERCENT",
            "ninety",
            "alerts.disk_percent",
        ),
        (
            "CLAUDE_MONITOR_ALERTS_DISK_PERCENT",
            "nan",
            "alerts.disk_percent",
        ),
        (
            "CLAUDE_MONITOR_ALERTS_COOLDOWN_SECS",
            "-1",
            "alerts.cooldown_secs",
        ),
        (
            "CLAUDE_MONITOR_ALERTS_COOLDOWN_SECS",
            "18446744073709551615",
            "alerts.cooldown_secs",
        ),
        (
            "CLAUDE_MONITOR_KERNEL_RING_BUFFER_KB",
            "4000",
            "kernel.ring_buffer_kb",
        ),
        (
            "CLAUDE_MONITOR_WATCH_IGNORED_SIGNALS",
            "drop",
            "watch.ignored_signals",
        ),
        (
            "CLAUDE_MONITOR_RESOURCES_MOUNTS",
            "/,home",
            "resources.mounts",
        ),
        (
            "CLAUDE_MONITOR_RESOURCES_SESSION_INTERVAL_SECS",
            "0",
            "resources.session_interval_secs",
        ),
    ] {
        let (err, msg) = env_error(var, value);
        assert_eq!(err.key(), Some(key), "{msg}");
        if value == "18446744073709551615" {
            assert!(msg.ends_with("(at most 9223372036854775807)"), "{msg}");
        }
        assert!(msg.contains(&format!(": {key}: ")), "{msg}");
    }
}

#[test]
fn unknown_keys() {
    let (err, msg) = file_error("[alerts]\nmemry_percent = 80\n");
    assert_eq!(err.key(), Some("alerts.memry_percent"));
    assert!(
        msg.ends_with(
            ": unknown key `alerts.memry_percent` (known keys in [alerts]: memory_percent, \
                 disk_percent, session_rss_mb, cooldown_secs)"
        ),
        "{msg}"
    );

    let (err, msg) = file_error("data_directory = \"/x\"\n");
    assert_eq!(err.key(), Some("data_directory"));
    assert!(
        msg.contains("known top-level keys: data_dir, [watch]"),
        "{msg}"
    );

    let (err, _) = file_error("[watsch]\noom_all = true\n");
    assert_eq!(err.key(), Some("watsch"));

    // A quoted dotted key at the top level is not the section's key.
    let (err, _) = file_error("\"alerts.memory_percent\" = 80\n");
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err:?}");

    let (err, msg) = file_error("[[rules]]\nname = \"a\"\nexe = \"/x\"\n");
    assert_eq!(err.key(), Some("rules[0].exe"));
    assert!(
        msg.contains("known keys in [[rules]]: name, exe_glob, comm, argv_pattern"),
        "{msg}"
    );

    let dir = TempDir::new("flag");
    let flags = [("dta_dir", "/x".to_owned())];
    let err =
        load_at(&dir.0.join("absent.toml"), false, &no_env, &flags).expect_err("unknown flag");
    assert_eq!(err.key(), Some("dta_dir"));
    assert!(err.to_string().starts_with("flag --dta-dir: "), "{err}");
}

#[test]
fn wrong_types() {
    for (text, key, expected) in [
        ("[watch]\noom_all = \"yes\"\n", "watch.oom_all", "a boolean"),
        ("[logs]\nkeep = 5.0\n", "logs.keep", "an integer"),
        (
            "[alerts]\nmemory_percent = \"85\"\n",
            "alerts.memory_percent",
            "a number",
        ),
        ("data_dir = 5\n", "data_dir", "a string"),
        (
            "[watch]\nignored_signals = true\n",
            "watch.ignored_signals",
            "a string",
        ),
        (
            "[resources]\nmounts = \"/\"\n",
            "resources.mounts",
            "an array of strings",
        ),
        (
            "[resources]\nmounts = [\"/\", 1]\n",
            "resources.mounts",
            "an array of strings",
        ),
        ("watch = 1\n", "watch", "a table"),
        ("rules = \"x\"\n", "rules", "an array of tables ([[rules]])"),
        ("rules = [1]\n", "rules[0]", "a table"),
        (
            "[[rules]]\nname = \"a\"\ncomm = 3\n",
            "rules[0].comm",
            "a string",
        ),
    ] {
        let (err, msg) = file_error(text);
        assert!(
            matches!(&err, ConfigError::WrongType { expected: e, .. } if *e == expected),
            "{text}: {err:?}"
        );
        assert_eq!(err.key(), Some(key), "{msg}");
        assert!(
            msg.contains(&format!("expected {expected}, found ")),
            "{msg}"
        );
    }
}

#[test]
fn out_of_range_values() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "kernel",
            "ring_buffer_kb",
            &["0", "2", "4000", "2097152", "-4"],
        ),
        ("logs", "max_bytes", &["4095", "0", "-1"]),
        ("logs", "keep", &["0", "101"]),
        (
            "resources",
            "system_interval_secs",
            &["0", "-1", "86400.5", "nan", "inf"],
        ),
        ("resources", "session_interval_secs", &["0.0", "100000"]),
        ("resources", "history", &["0", "10001"]),
        ("alerts", "memory_percent", &["0", "100.01", "150", "-5"]),
        ("alerts", "disk_percent", &["0", "101"]),
        ("alerts", "session_rss_mb", &["-1"]),
        ("alerts", "cooldown_secs", &["-1"]),
    ];
    for (section, name, values) in cases {
        for value in *values {
            let (err, msg) = file_error(&format!("[{section}]\n{name} = {value}\n"));
            assert!(
                matches!(err, ConfigError::OutOfRange { .. }),
                "{section}.{name} = {value}: {err:?}"
            );
            assert_eq!(err.key(), Some(format!("{section}.{name}").as_str()));
            assert!(msg.contains(" is out of range ("), "{msg}");
        }
    }
    let (_, msg) = file_error("[alerts]\nmemory_percent = 150\n");
    assert!(
        msg.ends_with(": alerts.memory_percent: 150 is out of range (greater than 0, at most 100)"),
        "{msg}"
    );
    let (_, msg) = file_error("[kernel]\nring_buffer_kb = 4000\n");
    assert!(
        msg.ends_with("4000 is out of range (a power of two between 4 and 1048576)"),
        "{msg}"
    );
    let (_, msg) = file_error("[logs]\nmax_bytes = 100\n");
    assert!(
        msg.ends_with("100 is out of range (at least 4096)"),
        "{msg}"
    );
    let (_, msg) = file_error("[logs]\nkeep = 0\n");
    assert!(msg.ends_with("0 is out of range (1..=100)"), "{msg}");
    // The bounds themselves are allowed.
    let (ok, _) = load_text("[kernel]\nring_buffer_kb = 1048576\n[resources]\nhistory = 10000\n");
    let ok = ok.expect("bounds");
    assert_eq!(ok.config.kernel.ring_buffer_kb, 1 << 20);
    assert_eq!(ok.config.resources.history, 10000);
}

#[test]
fn bad_values() {
    let (err, msg) = file_error("[resources]\nmounts = [\"/\", \"home\"]\n");
    assert_eq!(err.key(), Some("resources.mounts"));
    assert!(msg.ends_with("\"home\" is not an absolute path"), "{msg}");

    let (err, msg) = file_error("[watch]\nignored_signals = \"drop\"\n");
    assert_eq!(err.key(), Some("watch.ignored_signals"));
    assert!(
        msg.ends_with("\"drop\" is not \"filter\" or \"report\""),
        "{msg}"
    );

    let (err, _) = file_error("data_dir = \"\"\n");
    assert!(matches!(err, ConfigError::BadValue { .. }), "{err:?}");

    // An empty list of mounts is allowed: no disk is watched.
    let (ok, _) = load_text("[resources]\nmounts = []\n");
    assert!(ok.expect("empty").config.resources.mounts.is_empty());
}

#[test]
fn syntax_error_has_line_and_column() {
    let (err, msg) = file_error("[watch]\noom_all = true\nreport_nonzero_exit = = false\n");
    let ConfigError::Syntax { location, .. } = &err else {
        panic!("not a syntax error: {err:?}");
    };
    let (line, column) = location.expect("located");
    assert_eq!(line, 3, "{msg}");
    assert!(column > 1, "{msg}");
    assert!(
        msg.contains(&format!(": line 3, column {column}: ")),
        "{msg}"
    );

    // A duplicate key is a parse error too.
    let (err, msg) = file_error("[logs]\nkeep = 1\nkeep = 2\n");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(msg.contains("line 3"), "{msg}");
}

#[test]
fn rule_errors_name_the_rule() {
    let (err, msg) =
        file_error("[[rules]]\nname = \"ok\"\ncomm = \"ok\"\n\n[[rules]]\nname = \"none\"\n");
    assert!(matches!(err, ConfigError::Rule { index: 1, .. }), "{err:?}");
    assert!(msg.contains(": rules[1]: "), "{msg}");
    assert!(msg.contains("give at least one of"), "{msg}");

    let (err, msg) = file_error("[[rules]]\nexe_glob = \"bin/x\"\nname = \"rel\"\n");
    assert!(matches!(err, ConfigError::Rule { index: 0, .. }), "{err:?}");
    assert!(msg.contains("can never match"), "{msg}");

    let (err, msg) = file_error("[[rules]]\ncomm = \"x\"\n");
    assert_eq!(err.key(), Some("rules[0].name"));
    assert!(msg.ends_with(": rules[0].name is required"), "{msg}");
}

#[test]
fn render_round_trips() {
    let dir = TempDir::new("render");
    let path = dir.write(
        "c.toml",
        r#"
[watch]
report_nonzero_exit = true
[resources]
system_interval_secs = 0.1
mounts = ["/", "/with \"quotes\" and \\ backslash"]
[[rules]]
name = "aider"
exe_glob = "*/bin/python3*"
argv_pattern = "/aider "
[[rules]]
name = "codex"
comm = "codex"
"#,
    );
    let env = env_of(&[
        ("CLAUDE_MONITOR_ALERTS_MEMORY_PERCENT", "77.25"),
        ("CLAUDE_MONITOR_RESOURCES_SESSION_INTERVAL_SECS", "1.333"),
    ]);
    let flags = [
        ("data_dir", "/tmp/x".to_owned()),
        ("logs.max_bytes", "4096".to_owned()),
    ];
    let loaded = load(Some(&path), &env, &flags).expect("valid");
    let text = render(&loaded);

    assert!(
        text.contains("\ndata_dir = \"/tmp/x\"  # flag --data-dir\n"),
        "{text}"
    );
    assert!(
        text.contains("\nmemory_percent = 77.25  # env CLAUDE_MONITOR_ALERTS_MEMORY_PERCENT\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nreport_nonzero_exit = true  # {}\n",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("\noom_all = true  # default\n"), "{text}");
    assert!(
        text.contains(&format!(
            "\n[[rules]]  # {}\nname = \"aider\"\n",
            path.display()
        )),
        "{text}"
    );
    // Every key line carries its source.
    for info in keys() {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{} = ", info.name())))
            .unwrap_or_else(|| panic!("{} is not rendered", info.key()));
        assert!(line.contains("  # "), "{line}");
    }

    let again = dir.write("rendered.toml", &text);
    let reloaded = load(Some(&again), &no_env, &[]).expect(&text);
    assert_eq!(reloaded.config, loaded.config, "{text}");

    // Defaults render and load back too.
    let defaults = Loaded {
        config: Config::default(),
        sources: BTreeMap::new(),
        file: None,
    };
    let text = render(&defaults);
    assert!(!text.contains("[[rules]]"));
    let path = dir.write("defaults.toml", &text);
    let reloaded = load(Some(&path), &no_env, &[]).expect(&text);
    assert_eq!(reloaded.config, Config::default());
}

/// A property over the whole key table, not a hand-picked list: every key rejects what is
/// outside its range or of another type (NaN, infinities, 1e-10 and 1e20 seconds, a relative
/// path), with an error that names it, and accepts its bounds.
#[test]
fn every_key_checks_its_range() {
    use super::keys::{KEYS, Kind};
    let absent = TempDir::new("every-key");
    let absent = absent.0.join("absent.toml");
    let try_value = |key: &'static str, value: &str| {
        load_at(&absent, false, &no_env, &[(key, value.to_owned())])
    };
    let mut checked = 0;
    for info in KEYS.iter() {
        let key = info.key;
        let (good, bad): (Vec<String>, Vec<String>) = match &info.kind {
            Kind::Bool(_) => (
                vec!["true".into(), "false".into()],
                vec!["maybe".into(), "2".into()],
            ),
            Kind::Signals(_) => (
                vec!["filter".into(), "report".into()],
                vec!["all".into(), "".into()],
            ),
            Kind::Int { min, max, pow2, .. } => {
                let mut bad = vec![
                    (max + 1).to_string(),
                    "-1".into(),
                    "1.5".into(),
                    "x".into(),
                    "1e20".into(),
                ];
                if *min > 0 {
                    bad.push((min - 1).to_string());
                }
                if *pow2 && min + 1 < *max {
                    bad.push((min + 1).to_string());
                }
                (vec![min.to_string(), max.to_string()], bad)
            }
            Kind::Float { min, max, .. } => {
                let mut bad: Vec<String> = ["0", "-1", "NaN", "inf", "-inf", "x"]
                    .map(String::from)
                    .to_vec();
                bad.push((max * 2.0).to_string());
                bad.push("1e20".into());
                if *min > 0.0 {
                    bad.push((min / 2.0).to_string());
                    bad.push("1e-10".into());
                }
                let low = if *min > 0.0 { *min } else { 1e-6 };
                (vec![low.to_string(), max.to_string()], bad)
            }
            Kind::Path(_) => (
                vec!["/srv/claude-monitor".into()],
                vec!["".into(), "relative/dir".into()],
            ),
            Kind::AbsPaths(_) => (vec!["/,/srv".into()], vec!["relative".into()]),
            Kind::OptPath(_) => (
                vec!["/run/x/api.sock".into(), "".into()],
                vec!["relative.sock".into()],
            ),
            Kind::Mode(_) => (
                vec!["0666".into(), "0660".into()],
                vec!["0777".into(), "666".into(), "".into()],
            ),
            Kind::Group(_) => (
                vec!["".into(), "claude-monitor".into(), "adm".into()],
                vec!["Root".into(), "a:b".into(), "-x".into(), "x".repeat(33)],
            ),
            Kind::Listen(_) => (
                vec!["127.0.0.1:9464".into(), "[::1]:0".into(), "".into()],
                vec![
                    "localhost:9464".into(),
                    "127.0.0.1".into(),
                    "1.2.3.4:99999".into(),
                ],
            ),
            Kind::Url(_) => (
                vec![
                    "http://127.0.0.1:4318".into(),
                    "http://[::1]:4318/v1/logs".into(),
                    "http://collector.internal".into(),
                    "".into(),
                ],
                vec![
                    "https://collector:4318".into(),
                    "127.0.0.1:4318".into(),
                    "http://u:p@host".into(),
                    "http://host:0".into(),
                    "http://host:99999".into(),
                    "http://ho st/".into(),
                    "http://[::1/".into(),
                    "http:///v1/logs".into(),
                    "http://host/v1/logs?x=1".into(),
                ],
            ),
            Kind::Patterns(_) => (
                vec!["corp-[0-9]+\nx-key: (?P<secret>\\S+)".into(), "".into()],
                vec!["(".into(), "a*".into(), "x{1000}{1000}".into()],
            ),
        };
        for v in &good {
            assert!(
                try_value(key, v).is_ok(),
                "{key} = {v:?} rejected: {:?}",
                try_value(key, v).err()
            );
        }
        for v in &bad {
            match try_value(key, v) {
                Ok(_) => panic!("{key} = {v:?} accepted"),
                Err(e) => assert!(e.to_string().contains(key), "{key} = {v:?}: {e}"),
            }
        }
        checked += 1;
    }
    assert_eq!(checked, KEYS.len());
}

fn patterns_of(loaded: &Loaded) -> Vec<&str> {
    let patterns = &loaded.config.redact.patterns;
    patterns.iter().map(Pattern::as_str).collect()
}

/// `redact.patterns`: each one compiled when loaded; a bad one is named by its index and
/// says why, and the list, the length and the compiled size are bounded.
#[test]
fn redact_patterns_are_checked_one_by_one() {
    let (loaded, _) = load_text("[redact]\npatterns = [\"corp-[0-9a-f]{8}\", \"(?P<secret>x\"]\n");
    let e = loaded.expect_err("an unclosed group");
    assert_eq!(e.key(), Some("redact.patterns[1]"));
    let text = e.to_string();
    assert!(
        text.contains("redact.patterns[1]: \"(?P<secret>x\" cannot be used as a pattern"),
        "{text}"
    );
    assert!(text.contains("unclosed group"), "{text}");

    let (loaded, _) = load_text("[redact]\npatterns = [\"a|\"]\n");
    let text = loaded.expect_err("matches empty").to_string();
    assert!(
        text.contains("redact.patterns[0]") && text.contains("matches empty text"),
        "{text}"
    );

    let long = format!(
        "[redact]\npatterns = [\"{}\"]\n",
        "a".repeat(Pattern::MAX_LEN + 1)
    );
    let text = load_text(&long).0.expect_err("too long").to_string();
    assert!(text.contains("1025 bytes long, at most 1024"), "{text}");

    let many: Vec<String> = (0..=Pattern::MAX_COUNT)
        .map(|i| format!("\"k{i}x\""))
        .collect();
    let text = load_text(&format!("[redact]\npatterns = [{}]\n", many.join(", ")))
        .0
        .expect_err("too many")
        .to_string();
    assert!(
        text.contains("redact.patterns: 65 patterns is out of range (at most 64)"),
        "{text}"
    );

    let text = load_text("[redact]\npatterns = \"corp\"\n")
        .0
        .expect_err("not an array")
        .to_string();
    assert!(
        text.contains("redact.patterns: expected an array of strings, found string"),
        "{text}"
    );

    // Good ones load, render, and load back the same.
    let (loaded, _) = load_text(
        "[redact]\nenabled = false\npatterns = [\"corp-[0-9a-f]{8}\", \"(?i)x-internal-key: *(?P<secret>\\\\S+)\"]\n",
    );
    let loaded = loaded.expect("valid patterns");
    assert!(!loaded.config.redact.enabled);
    assert_eq!(
        patterns_of(&loaded),
        ["corp-[0-9a-f]{8}", r"(?i)x-internal-key: *(?P<secret>\S+)"]
    );
    let (again, _) = load_text(&render(&loaded));
    assert_eq!(again.expect("rendered loads").config, loaded.config);

    // One per line in the environment.
    let env = env_of(&[("CLAUDE_MONITOR_REDACT_PATTERNS", "a,b{1,2}\nc-[0-9]+")]);
    let dir = TempDir::new("patterns-env");
    let loaded = load_at(&dir.0.join("absent.toml"), false, &env, &[]).expect("env patterns");
    assert_eq!(patterns_of(&loaded), ["a,b{1,2}", "c-[0-9]+"]);
}

/// Sections inside sections: `[export.journald]` (or `[export]` holding a `journald` table),
/// an unknown key there named with what is known, and the environment's name for it.
#[test]
fn nested_sections_load_and_name_their_keys() {
    for text in [
        "[export.journald]\nenabled = true\nsocket = \"/run/j.sock\"\n",
        "[export]\njournald = { enabled = true, socket = \"/run/j.sock\" }\n",
    ] {
        let (loaded, _) = load_text(text);
        let c = loaded.expect("loads").config;
        assert!(c.export.journald.enabled, "{text}");
        assert_eq!(c.export.journald.socket, PathBuf::from("/run/j.sock"));
    }
    let text = load_text("[export]\nkafka = 1\n")
        .0
        .expect_err("unknown")
        .to_string();
    assert!(
        text.contains("unknown key `export.kafka`") && text.contains("[export.journald]"),
        "{text}"
    );
    let text = load_text("[export.journald]\nenable = true\n")
        .0
        .expect_err("unknown")
        .to_string();
    assert!(
        text.contains("export.journald.enable")
            && text.contains("known keys in [export.journald]: enabled, socket"),
        "{text}"
    );
    let info = lookup("export.journald.enabled").expect("key");
    assert_eq!(info.env_var(), "CLAUDE_MONITOR_EXPORT_JOURNALD_ENABLED");
    assert_eq!(
        (info.section(), info.name()),
        (Some("export.journald"), "enabled")
    );
    let (loaded, _) = load_text("[export.journald]\nenabled = true\n");
    let loaded = loaded.expect("loads");
    assert!(render(&loaded).contains("\n[export.journald]\nenabled = true"));
    let (again, _) = load_text(&render(&loaded));
    assert_eq!(again.expect("rendered loads").config, loaded.config);
}

/// `export.otlp.endpoint`: OTLP/HTTP's port and logs path by default, a path kept as given,
/// and errors that say what to do instead.
#[test]
fn otlp_endpoints_parse_with_otlp_defaults() {
    let e = Endpoint::parse("http://127.0.0.1").expect("parses");
    assert_eq!(
        (e.host.as_str(), e.port, e.path.as_str()),
        ("127.0.0.1", 4318, "/v1/logs")
    );
    assert_eq!(e.to_string(), "http://127.0.0.1:4318/v1/logs");
    let e = Endpoint::parse("http://Collector.internal:9000/otlp/v1/logs").expect("parses");
    assert_eq!((e.host.as_str(), e.port), ("collector.internal", 9000));
    assert_eq!(e.path, "/otlp/v1/logs");
    let e = Endpoint::parse("http://[::1]:4318/").expect("parses");
    assert_eq!((e.host.as_str(), e.port), ("[::1]", 4318));
    assert_eq!(Endpoint::parse(&e.to_string()), Ok(e));
    let (err, msg) = file_error("[export.otlp]\nendpoint = \"https://otel:4318\"\n");
    assert_eq!(err.key(), Some("export.otlp.endpoint"));
    assert!(
        msg.contains("\"https://otel:4318\" is not an http:// URL (https is not built in"),
        "{msg}"
    );
    let (_, msg) = file_error("[export.otlp]\nendpoint = \"http://me:secret@otel\"\n");
    assert!(msg.contains("without credentials"), "{msg}");
    let (loaded, _) = load_text("[export.otlp]\nendpoint = \"http://10.0.0.5\"\n");
    assert_eq!(
        loaded.expect("loads").config.export.otlp.endpoint,
        Endpoint::parse("http://10.0.0.5:4318/v1/logs").ok()
    );
}

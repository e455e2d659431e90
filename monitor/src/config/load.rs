//! Loading: defaults, then the file, the environment and the flags, key by key.

use std::{fs, io, path::Path};

use crate::claude::detect::{Detector, Rule, RuleError};

use super::*;

/// A value as it arrives: from the file, or text from the environment or a flag.
#[derive(Clone, Copy)]
pub(super) enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

/// The key and origin every error about a value names.
pub(super) struct Cx<'a> {
    pub(super) key: &'a str,
    pub(super) origin: &'a Source,
}

impl Cx<'_> {
    pub(super) fn wrong_type(&self, expected: &'static str, found: &'static str) -> ConfigError {
        ConfigError::WrongType {
            origin: self.origin.clone(),
            key: self.key.into(),
            expected,
            found,
        }
    }

    pub(super) fn bad_value(&self, value: String, expected: &'static str) -> ConfigError {
        ConfigError::BadValue {
            origin: self.origin.clone(),
            key: self.key.into(),
            value,
            expected,
        }
    }

    pub(super) fn out_of_range(&self, value: String, range: String) -> ConfigError {
        ConfigError::OutOfRange {
            origin: self.origin.clone(),
            key: self.key.into(),
            value,
            range,
        }
    }

    pub(super) fn bool(&self, raw: Raw<'_>) -> Result<bool, ConfigError> {
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

    pub(super) fn string(&self, raw: Raw<'_>) -> Result<String, ConfigError> {
        match raw {
            Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
            Raw::Toml(other) => Err(self.wrong_type("a string", other.type_str())),
            Raw::Text(s) => Ok(s.to_owned()),
        }
    }

    /// An array of strings, or text split at `separator` (empty items dropped).
    pub(super) fn strings(
        &self,
        raw: Raw<'_>,
        separator: char,
    ) -> Result<Vec<String>, ConfigError> {
        match raw {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(self.wrong_type("an array of strings", other.type_str())),
                })
                .collect(),
            Raw::Toml(other) => Err(self.wrong_type("an array of strings", other.type_str())),
            Raw::Text(s) => Ok(s
                .split(separator)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
        }
    }

    /// Wide enough for any i64 from TOML and any u64 from text.
    pub(super) fn int(&self, raw: Raw<'_>) -> Result<i128, ConfigError> {
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
    pub(super) fn float(&self, raw: Raw<'_>) -> Result<f64, ConfigError> {
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
pub(super) fn load_at(
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

pub(super) fn apply_file(loaded: &mut Loaded, text: &str, path: &Path) -> Result<(), ConfigError> {
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
        } else if is_section_or_parent(name) {
            apply_section(loaded, name, value, &origin)?;
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

/// Whether `name` is a section (`alerts`) or holds sections (`export` of `export.journald`).
fn is_section_or_parent(name: &str) -> bool {
    SECTIONS.iter().any(|s| {
        *s == name
            || s.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The keys of section (or parent of sections) `name`, whose table is `value`.
fn apply_section(
    loaded: &mut Loaded,
    name: &str,
    value: &toml::Value,
    origin: &Source,
) -> Result<(), ConfigError> {
    let Some(section) = value.as_table() else {
        return Err(ConfigError::WrongType {
            origin: origin.clone(),
            key: name.to_owned(),
            expected: "a table",
            found: value.type_str(),
        });
    };
    for (key, value) in section {
        let dotted = format!("{name}.{key}");
        if let Some(info) = lookup(&dotted).filter(|info| info.section() == Some(name)) {
            info.apply(&mut loaded.config, Raw::Toml(value), origin)?;
            loaded.sources.insert(dotted, origin.clone());
        } else if is_section_or_parent(&dotted) {
            apply_section(loaded, &dotted, value, origin)?;
        } else {
            let mut known: Vec<String> = KEYS
                .iter()
                .filter(|info| info.section() == Some(name))
                .map(|info| info.name().to_owned())
                .collect();
            known.extend(
                SECTIONS
                    .iter()
                    .filter_map(|s| s.strip_prefix(name)?.strip_prefix('.'))
                    .filter(|sub| !sub.contains('.'))
                    .map(|sub| format!("[{name}.{sub}]")),
            );
            return Err(ConfigError::UnknownKey {
                origin: origin.clone(),
                key: dotted,
                known: format!("known keys in [{name}]: {}", known.join(", ")),
            });
        }
    }
    Ok(())
}

/// `[[rules]]` into [`Rule`]s, checked field by field (so errors name `rules[i].field`) and
/// then validated by [`Detector::new`].
pub(super) fn parse_rules(value: &toml::Value, path: &Path) -> Result<Vec<Rule>, ConfigError> {
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

pub(super) fn rule_index(e: &RuleError) -> usize {
    match e {
        RuleError::EmptyName { index }
        | RuleError::NoCriteria { index, .. }
        | RuleError::EmptyField { index, .. }
        | RuleError::RelativeExeGlob { index, .. }
        | RuleError::CommTooLong { index, .. } => *index,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------
// Rendering.

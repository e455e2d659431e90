//! Configuration errors: each names the dotted key and where its value came from.

use std::{io, path::PathBuf};

use crate::claude::detect::RuleError;

use super::*;

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
    #[error("{origin}: {key}: {pattern:?} cannot be used as a pattern: {reason}")]
    BadPattern {
        origin: Source,
        /// `redact.patterns[i]` (0-based).
        key: String,
        pattern: String,
        reason: String,
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
            | ConfigError::BadPattern { key, .. }
            | ConfigError::MissingKey { key, .. } => Some(key),
            ConfigError::Missing { .. }
            | ConfigError::Read { .. }
            | ConfigError::Syntax { .. }
            | ConfigError::Rule { .. } => None,
        }
    }
}

pub(super) fn at(location: Option<(usize, usize)>) -> String {
    match location {
        Some((line, column)) => format!("line {line}, column {column}: "),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// The key registry.

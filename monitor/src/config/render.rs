//! The effective configuration as TOML, each value with its source.

use std::fmt;

use super::*;

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
pub(super) fn comment_text(text: impl fmt::Display) -> String {
    text.to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

//! Untrusted text made safe for a terminal: comm, argv, cwd, paths and tool commands come
//! from the users the agent watches, and printed raw an escape sequence would move the
//! cursor, rewrite the screen, set the window title, or a newline would forge a line of
//! output. Control characters and the Unicode direction overrides (which reorder what is
//! shown, "trojan source") are written as `\n`, `\t`, `\u{1b}` ...; everything else is kept.
//!
//! Only text output needs it: JSON escapes every control character by itself.

use std::borrow::Cow;

/// Whether `c` is written escaped.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every control character and direction override escaped (unchanged, and not
/// copied, when it has none).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Every string inside `value` made [`printable`] (for structures rendered as text through
/// their serde form).
pub fn printable_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(p) = printable(s) {
                *s = p;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(printable_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(printable_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_overrides_are_escaped() {
        for (raw, shown) in [
            ("claude", "claude"),
            ("a\nb", "a\\nb"),
            ("tab\there", "tab\\there"),
            (
                "\u{1b}[2J\u{1b}]0;owned\u{7}",
                "\\u{1b}[2J\\u{1b}]0;owned\\u{7}",
            ),
            ("del\u{7f}", "del\\u{7f}"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("abc\u{202e}txt.exe", "abc\\u{202e}txt.exe"),
            ("café ✓ 日本", "café ✓ 日本"),
        ] {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_string_of_a_structure() {
        let mut v = serde_json::json!({"comm": "x\u{1b}[1m", "argv": ["a\nb"], "n": 1});
        printable_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"comm": "x\\u{1b}[1m", "argv": ["a\\nb"], "n": 1})
        );
    }
}

//! Secrets out of everything the agent writes: command lines and tool commands are copied
//! into the event stream, reports and resource logs, which other tools and people read, and
//! people put tokens on command lines (`curl -H 'Authorization: Bearer …'`, `--password=…`,
//! `https://user:token@host`, `AWS_SECRET_ACCESS_KEY=… cmd`).
//!
//! One place decides what is a secret ([`Redactor`]); the pipeline applies it where
//! untrusted text comes in (an exec's argv, the command line kept for reports, a Bash tool
//! call's command, a resource sample's top process), so nothing downstream ever holds the
//! raw value. A secret's value becomes [`REDACTED`]; the rest of the text, the flag or
//! variable name included, is kept, so a reader still sees what ran.
//!
//! The built-in rules are on by default; the operator can switch redaction off or add
//! patterns of their own (`[redact]` in the configuration, validated there). Every rule is
//! also in one [`RegexSet`], so text with no secret (nearly all of it) costs one scan.

use std::{borrow::Cow, sync::Arc, sync::LazyLock};

use regex::{Regex, RegexSet};

/// What a secret's value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The capture group of an operator's pattern that is replaced (the whole match when the
/// pattern has none).
pub const SECRET_GROUP: &str = "secret";

/// Names that say their value is a secret (a flag, a variable, a header, a key=value).
const SECRET_NAME: &str = r"[a-z0-9_-]*(?:password|passwd|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|credential|auth[-_]?key)[a-z0-9_-]*";
/// A value: quoted (to the closing quote, or to the end of a text cut short), or up to
/// white space.
const VALUE: &str = r#"(?:"(?:[^"\\]|\\.)*(?:"|$)|'[^']*(?:'|$)|[^\s'"]+)"#;

/// The built-in rules, in order; each keeps its group 1 (what comes before the value) and
/// replaces the rest of its match.
fn builtin() -> Vec<String> {
    vec![
        // `Authorization: Bearer x`, `Basic x`, `token x`.
        r"(?i)(\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}".into(),
        // `scheme://user:password@host` (the `@` is put back).
        r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+(?:@)".into(),
        // `--password=x`, `--api-key x`, `-token=x`.
        format!(r"(?i)((?:^|\s)--?{SECRET_NAME}(?:=|\s+)){VALUE}"),
        // `"token": "x"`, `PASSWORD="x y"`: a double-quoted value goes whole (it may hold
        // spaces and escaped quotes), its quotes kept.
        format!(r#"(?i)(\b{SECRET_NAME}"?\s*(?:=|:)\s*")(?:[^"\\]|\\.)*(?:"|$)"#),
        // `AWS_SECRET_ACCESS_KEY=x`, `password: x`, `X-Api-Key: x`, `TOKEN='x y'`.
        format!(r#"(?i)(\b{SECRET_NAME}"?\s*(?:=|:)\s*)(?:'[^']*(?:'|$)|[^\s'"]+)"#),
        // Known token shapes, wherever they are: Anthropic, OpenAI, GitHub, GitLab, AWS
        // access key ids, Slack, Google API keys, JWTs.
        concat!(
            r"(\b)(?:sk-ant-[A-Za-z0-9_-]{8,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}",
            r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}",
            r"|glpat-[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}",
            r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}",
            r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,})"
        )
        .into(),
    ]
}

/// How a rule's match is rewritten.
#[derive(Clone, Copy, Debug)]
enum Keep {
    /// Built-in: group 1 stays (the name before the value), and the match's last
    /// character when it is `last` (a URL's `@`, a closing quote).
    Prefix { last: Option<char> },
    /// An operator's pattern: the `secret` group goes, or the whole match without one.
    Group(Option<usize>),
}

#[derive(Debug)]
struct Rules {
    rules: Vec<(Regex, Keep)>,
    /// The same patterns: which rules match at all, in one scan.
    set: RegexSet,
}

static BUILTIN: LazyLock<Arc<Rules>> = LazyLock::new(|| {
    let rules = builtin()
        .into_iter()
        .enumerate()
        .map(|(i, re)| {
            let compiled = Regex::new(&re).unwrap_or_else(|e| panic!("redaction rule {re}: {e}"));
            let last = match i {
                1 => Some('@'),
                3 => Some('"'),
                _ => None,
            };
            (compiled, Keep::Prefix { last })
        })
        .collect();
    Arc::new(Rules::new(rules))
});

/// An argument that is a whole `NAME=value` (`env "PASSWORD=a b" cmd`, `"--token=a b"`):
/// the value is the rest of the argument, spaces included.
static SECRET_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)^(--?)?{SECRET_NAME}=")).unwrap_or_else(|e| panic!("{e}"))
});

/// A flag that takes a secret as its next argument (`--password x`, as separate words).
static SECRET_FLAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)^--?{SECRET_NAME}$")).unwrap_or_else(|e| panic!("{e}"))
});

impl Rules {
    fn new(rules: Vec<(Regex, Keep)>) -> Rules {
        let set = RegexSet::new(rules.iter().map(|(re, _)| re.as_str())).unwrap_or_else(|e| {
            panic!("redaction rules compiled one by one but not as a set: {e}")
        });
        Rules { rules, set }
    }
}

/// What counts as a secret, and whether anything is redacted at all. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Redactor {
    enabled: bool,
    rules: Arc<Rules>,
}

impl Default for Redactor {
    /// The built-in rules, on.
    fn default() -> Redactor {
        Redactor {
            enabled: true,
            rules: BUILTIN.clone(),
        }
    }
}

impl Redactor {
    /// Redacts nothing (`[redact] enabled = false`, `trace --no-redact`).
    pub fn off() -> Redactor {
        Redactor {
            enabled: false,
            ..Redactor::default()
        }
    }

    /// The built-in rules and then `extra` (operator patterns, already validated by the
    /// configuration: they compile and match no empty text); nothing at all when not
    /// `enabled`.
    pub fn new(enabled: bool, extra: &[Regex]) -> Redactor {
        if !enabled {
            return Redactor::off();
        }
        if extra.is_empty() {
            return Redactor::default();
        }
        let mut rules = BUILTIN.rules.clone();
        for re in extra {
            let group = re
                .capture_names()
                .position(|name| name == Some(SECRET_GROUP));
            rules.push((re.clone(), Keep::Group(group)));
        }
        Redactor {
            enabled: true,
            rules: Arc::new(Rules::new(rules)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `s` with every secret's value replaced (unchanged, and not copied, when it has none).
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if !self.enabled {
            return Cow::Borrowed(s);
        }
        let matched = self.rules.set.matches(s);
        if !matched.matched_any() {
            return Cow::Borrowed(s);
        }
        let mut out = Cow::Borrowed(s);
        for i in matched.iter() {
            let (re, keep) = &self.rules.rules[i];
            if let Cow::Owned(replaced) = rewrite(re, *keep, &out) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// A command line with secrets replaced: each argument's own, and the argument after a
    /// flag that names a secret.
    pub fn argv(&self, argv: &mut [String]) {
        if !self.enabled {
            return;
        }
        let mut secret_next = false;
        for arg in argv.iter_mut() {
            if secret_next {
                *arg = REDACTED.to_owned();
                secret_next = false;
                continue;
            }
            secret_next = SECRET_FLAG.is_match(arg);
            if let Some(m) = SECRET_ASSIGNMENT.find(arg) {
                let name = &arg[..m.end()];
                *arg = format!("{name}{REDACTED}");
                continue;
            }
            if let Cow::Owned(r) = self.text(arg) {
                *arg = r;
            }
        }
    }
}

/// One rule over `s`: the part to replace of each match becomes [`REDACTED`]. Empty parts
/// are left alone (a pattern matching nothing must not sprinkle the text).
fn rewrite<'a>(re: &Regex, keep: Keep, s: &'a str) -> Cow<'a, str> {
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let Some(whole) = caps.get(0) else { continue };
        let (start, end) = match keep {
            Keep::Prefix { last } => {
                let from = caps.get(1).map_or(whole.start(), |g| g.end());
                let kept = last.filter(|&c| whole.as_str().ends_with(c) && whole.end() > from);
                (from, whole.end() - kept.map_or(0, char::len_utf8))
            }
            Keep::Group(Some(g)) => match caps.get(g) {
                Some(m) => (m.start(), m.end()),
                None => continue,
            },
            Keep::Group(None) => (whole.start(), whole.end()),
        };
        if start >= end || start < last {
            continue;
        }
        out.push_str(&s[last..start]);
        out.push_str(REDACTED);
        last = end;
    }
    if last == 0 && out.is_empty() {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real-shaped secrets (not real ones) in the places people put them.
    #[test]
    fn secrets_of_every_shape_are_redacted() {
        for (raw, want) in [
            (
                "curl -H 'Authorization: Bearer sk-ant-oat01-AbCdEfGhIjKlMnOp' https://api.anthropic.com",
                "curl -H 'Authorization: Bearer [REDACTED]' https://api.anthropic.com",
            ),
            (
                "git clone https://alice:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/x/y",
                "git clone https://alice:[REDACTED]@github.com/x/y",
            ),
            (
                "mysql --password=hunter2 db",
                "mysql --password=[REDACTED] db",
            ),
            ("tool --api-key abc123 run", "tool --api-key [REDACTED] run"),
            (
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY aws s3 ls",
                "AWS_SECRET_ACCESS_KEY=[REDACTED] aws s3 ls",
            ),
            // A quoted value goes whole, quotes included: no word of it is left.
            (
                "export GITHUB_TOKEN='ghp_x'",
                "export GITHUB_TOKEN=[REDACTED]",
            ),
            (
                "PASSWORD='my secret pass' ./run",
                "PASSWORD=[REDACTED] ./run",
            ),
            ("echo sk-proj-abcdefghijklmnopqrstuvwx", "echo [REDACTED]"),
            ("key AKIAIOSFODNN7EXAMPLE", "key [REDACTED]"),
            ("slack xoxb-1234567890-abcdefghij", "slack [REDACTED]"),
            ("token=glpat-abcdefghijklmnopqrstu", "token=[REDACTED]"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt [REDACTED]",
            ),
            (
                "curl -H 'X-Api-Key: 0123456789abcdef'",
                "curl -H 'X-Api-Key: [REDACTED]'",
            ),
            (r#"{"api_key": "s3cr3t"}"#, r#"{"api_key": "[REDACTED]"}"#),
            ("g AIzaSyA1234567890abcdefghijklmnopqrstuv", "g [REDACTED]"),
        ] {
            assert_eq!(Redactor::default().text(raw), want, "{raw}");
        }
    }

    /// Ordinary command lines pass unchanged (and uncopied).
    #[test]
    fn ordinary_text_is_kept() {
        for s in [
            "cargo build --release",
            "python3 train.py --epochs 3 --lr 0.001",
            "sh -c 'sleep 1; exit 3'",
            "git log --format=%H",
            "ls /usr/share/tokens",
            "https://example.com/path?q=1",
        ] {
            let r = Redactor::default();
            assert!(
                matches!(r.text(s), Cow::Borrowed(_)),
                "{s} -> {}",
                r.text(s)
            );
        }
    }

    /// Found by the `redact` fuzz target: a double-quoted value after `=` or `:` lost only
    /// its first word (`PASSWORD="my secret"` kept `secret"`, as did JSON's `"token": "a b"`),
    /// an escaped quote or a text cut inside the quotes ended the value early, and a whole
    /// argument `NAME=a b` kept `b`.
    #[test]
    fn quoted_secrets_go_whole() {
        let r = Redactor::default();
        for (raw, want) in [
            (
                r#"PASSWORD="my secret pass" ./run"#,
                r#"PASSWORD="[REDACTED]" ./run"#,
            ),
            (
                r#"{"token": "a b c", "n": 1}"#,
                r#"{"token": "[REDACTED]", "n": 1}"#,
            ),
            (r#"{"api_key":"x\"y z"}"#, r#"{"api_key":"[REDACTED]"}"#),
            (
                r#"mysql --password="hunter 2" db"#,
                "mysql --password=[REDACTED] db",
            ),
            (
                r#"mysql --password="a\" b" db"#,
                "mysql --password=[REDACTED] db",
            ),
            ("token='a b' next", "token=[REDACTED] next"),
            (r#"echo --password="cut sh"#, "echo --password=[REDACTED]"),
            ("secret='cut short", "secret=[REDACTED]"),
            (r#"password = "toml value""#, r#"password = "[REDACTED]""#),
        ] {
            assert_eq!(r.text(raw), want, "{raw}");
            assert_eq!(r.text(want), want, "redacting twice changes {want}");
        }
        let mut a: Vec<String> = ["env", "PASSWORD=a b", "--token=c d", "cmd"]
            .map(String::from)
            .to_vec();
        r.argv(&mut a);
        assert_eq!(
            a,
            ["env", "PASSWORD=[REDACTED]", "--token=[REDACTED]", "cmd"]
        );
    }

    #[test]
    fn argv_flags_with_separate_values() {
        let mut a: Vec<String> = ["psql", "--password", "hunter2", "-h", "db", "--token=abc"]
            .map(String::from)
            .to_vec();
        Redactor::default().argv(&mut a);
        assert_eq!(
            a,
            [
                "psql",
                "--password",
                "[REDACTED]",
                "-h",
                "db",
                "--token=[REDACTED]"
            ]
        );
    }

    fn pattern(re: &str) -> Regex {
        Regex::new(re).expect("pattern")
    }

    #[test]
    fn off_redacts_nothing() {
        let off = Redactor::off();
        assert!(!off.enabled());
        let s = "mysql --password=hunter2 sk-ant-oat01-AbCdEfGhIjKlMnOp";
        assert!(matches!(off.text(s), Cow::Borrowed(_)));
        let mut a = vec!["psql".to_owned(), "--password".to_owned(), "x".to_owned()];
        off.argv(&mut a);
        assert_eq!(a, ["psql", "--password", "x"]);
        assert!(!Redactor::new(false, &[pattern("corp-[0-9]+")]).enabled());
    }

    /// An operator's pattern replaces its whole match, or only its `secret` group, on top
    /// of the built-in rules.
    #[test]
    fn operator_patterns_add_to_the_built_in_rules() {
        let r = Redactor::new(
            true,
            &[
                pattern(r"corp-[0-9a-f]{8}"),
                pattern(r"(?i)x-internal: *(?P<secret>[^\s']+)"),
            ],
        );
        assert_eq!(
            r.text("deploy corp-0badcafe --password=x"),
            "deploy [REDACTED] --password=[REDACTED]"
        );
        assert_eq!(
            r.text("curl -H 'X-Internal: abc' -H 'X-Internal: def'"),
            "curl -H 'X-Internal: [REDACTED]' -H 'X-Internal: [REDACTED]'"
        );
        // Without the extra patterns these are kept.
        assert_eq!(
            Redactor::default().text("deploy corp-0badcafe"),
            "deploy corp-0badcafe"
        );
        assert!(matches!(r.text("cargo build"), Cow::Borrowed(_)));
    }

    /// A pattern that can match empty text (the configuration refuses one that matches
    /// the empty string, but `\b` or `x*` elsewhere can still match nothing) never
    /// inserts the marker between characters.
    #[test]
    fn empty_matches_are_not_redactions() {
        let r = Redactor::new(true, &[pattern(r"\bq*")]);
        assert_eq!(r.text("ab cd"), "ab cd");
        assert_eq!(r.text("qq cd"), "[REDACTED] cd");
    }
}

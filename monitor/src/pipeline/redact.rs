//! Secrets out of everything the agent writes: command lines and tool commands are copied
//! into the event stream, reports and resource logs, which other tools and people read, and
//! people put tokens on command lines (`curl -H 'Authorization: Bearer …'`, `--password=…`,
//! `https://user:token@host`, `AWS_SECRET_ACCESS_KEY=… cmd`).
//!
//! One place decides what is a secret; the pipeline applies it where untrusted text comes
//! in (an exec's argv, the command line kept for reports, a Bash tool call's command, a
//! resource sample's top process), so nothing downstream ever holds the raw value. A
//! secret's value becomes [`REDACTED`]; the rest of the text, the flag or variable name
//! included, is kept, so a reader still sees what ran.

use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;

/// What a secret's value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Names that say their value is a secret (a flag, a variable, a header, a key=value).
const SECRET_NAME: &str = r"[a-z0-9_-]*(?:password|passwd|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|credential|auth[-_]?key)[a-z0-9_-]*";
/// A value: quoted (to the closing quote, or to the end of a text cut short), or up to
/// white space.
const VALUE: &str = r#"(?:"(?:[^"\\]|\\.)*(?:"|$)|'[^']*(?:'|$)|[^\s'"]+)"#;

/// The rules, in order; each keeps its group 1 (what comes before the value).
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let rule = |re: String, with: &'static str| {
        (
            Regex::new(&re).unwrap_or_else(|e| panic!("redaction rule {re}: {e}")),
            with,
        )
    };
    vec![
        // `Authorization: Bearer x`, `Basic x`, `token x`.
        rule(
            r"(?i)(\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}".into(),
            "${1}[REDACTED]",
        ),
        // `scheme://user:password@host`.
        rule(
            r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+@".into(),
            "${1}[REDACTED]@",
        ),
        // `--password=x`, `--api-key x`, `-token=x`.
        rule(
            format!(r"(?i)((?:^|\s)--?{SECRET_NAME}(?:=|\s+)){VALUE}"),
            "${1}[REDACTED]",
        ),
        // `"token": "x"`, `PASSWORD="x y"`: a double-quoted value goes whole (it may hold
        // spaces and escaped quotes), its quotes kept.
        rule(
            format!(r#"(?i)(\b{SECRET_NAME}"?\s*(?:=|:)\s*")(?:[^"\\]|\\.)*(?:"|$)"#),
            "${1}[REDACTED]\"",
        ),
        // `AWS_SECRET_ACCESS_KEY=x`, `password: x`, `X-Api-Key: x`, `TOKEN='x y'`.
        rule(
            format!(r#"(?i)(\b{SECRET_NAME}"?\s*(?:=|:)\s*)(?:'[^']*(?:'|$)|[^\s'"]+)"#),
            "${1}[REDACTED]",
        ),
        // Known token shapes, wherever they are: Anthropic, OpenAI, GitHub, GitLab, AWS
        // access key ids, Slack, Google API keys, JWTs.
        rule(
            concat!(
                r"(\b)(?:sk-ant-[A-Za-z0-9_-]{8,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}",
                r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}",
                r"|glpat-[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}",
                r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}",
                r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,})"
            )
            .into(),
            "${1}[REDACTED]",
        ),
    ]
});

/// A flag that takes a secret as its next argument (`--password x`, as separate words).
static SECRET_FLAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)^--?{SECRET_NAME}$")).unwrap_or_else(|e| panic!("{e}"))
});

/// An argument that is a whole `NAME=value` (`env "PASSWORD=a b" cmd`, `"--token=a b"`):
/// the value is the rest of the argument, spaces included.
static SECRET_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)^(--?)?{SECRET_NAME}=")).unwrap_or_else(|e| panic!("{e}"))
});

/// `s` with every secret's value replaced (unchanged, and not copied, when it has none).
pub fn text(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    for (re, with) in RULES.iter() {
        if let Cow::Owned(replaced) = re.replace_all(&out, *with) {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// A command line with secrets replaced: each argument's own, and the argument after a
/// flag that names a secret.
pub fn argv(argv: &mut [String]) {
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
        if let Cow::Owned(r) = text(arg) {
            *arg = r;
        }
    }
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
            assert_eq!(text(raw), want, "{raw}");
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
            assert!(matches!(text(s), Cow::Borrowed(_)), "{s} -> {}", text(s));
        }
    }

    /// Found by the `redact` fuzz target: a double-quoted value after `=` or `:` lost only
    /// its first word (`PASSWORD="my secret"` kept `secret"`, as did JSON's `"token": "a b"`),
    /// an escaped quote or a text cut inside the quotes ended the value early, and a whole
    /// argument `NAME=a b` kept `b`.
    #[test]
    fn quoted_secrets_go_whole() {
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
            assert_eq!(text(raw), want, "{raw}");
            assert_eq!(text(want), want, "redacting twice changes {want}");
        }
        let mut a: Vec<String> = ["env", "PASSWORD=a b", "--token=c d", "cmd"]
            .map(String::from)
            .to_vec();
        argv(&mut a);
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
        argv(&mut a);
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
}

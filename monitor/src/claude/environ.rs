//! Selected variables of a process's environment, and only those.
//!
//! The agent reads one thing there today: where a session keeps its registry entry and
//! transcripts ([`config_dir_of`]: `CLAUDE_CONFIG_DIR`, else `HOME`). (Every process that
//! Claude Code starts also inherits markers such as `CLAUDECODE=1` and
//! `CLAUDE_CODE_SESSION_ID`; attribution does not use them: the kernel's fork lineage is
//! exact, and a marker is something any process can set.)
//!
//! The same environment can hold secrets (API keys, OAuth tokens; some Claude Code
//! versions put a token there themselves). So the environment is never read as a whole
//! into a map, a log line or an error message: [`read_vars`] streams `/proc/PID/environ`
//! one entry at a time and keeps only the names asked for, and nothing here logs values.
//!
//! `/proc/PID/environ` is the environment the process was started with (what it received
//! at exec), not changes it made later with `setenv`; that is what inheritance markers need.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufRead, BufReader},
    path::PathBuf,
};

/// Where a session keeps its registry entry and transcripts: `$CLAUDE_CONFIG_DIR` when the
/// session process was started with it, else `$HOME/.claude` of *its* environment, which
/// need not be the passwd home (containers, sandboxes, CI jobs, `HOME=… claude`). Relative
/// values are ignored: the CLI resolves them against a cwd the monitor does not share.
pub fn config_dir_of(vars: &HashMap<String, String>) -> Option<PathBuf> {
    let absolute = |name: &str| {
        vars.get(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("CLAUDE_CONFIG_DIR").or_else(|| absolute("HOME").map(|h| h.join(".claude")))
}

/// The variables [`config_dir_of`] reads.
pub const CONFIG_VARS: &[&str] = &["CLAUDE_CONFIG_DIR", "HOME"];

/// The variables `names` of the process `pid` (those it has). Fails when the process does
/// not exist or its environment is not readable (another user's process without root).
pub fn read_vars(pid: u32, names: &[&str]) -> io::Result<HashMap<String, String>> {
    let file = File::open(format!("/proc/{pid}/environ"))?;
    select_vars(BufReader::new(file), names)
}

/// The variables `names` of a NUL-separated environment block.
#[cfg(any(test, feature = "fuzzing"))]
pub fn parse_vars(environ: &[u8], names: &[&str]) -> HashMap<String, String> {
    // Reading from a slice cannot fail.
    select_vars(environ, names).unwrap_or_default()
}

/// Streams NUL-separated `NAME=value` entries, keeping the first value of each wanted name
/// (as getenv does); entries without `=` are skipped, values are decoded lossily.
fn select_vars(mut reader: impl BufRead, names: &[&str]) -> io::Result<HashMap<String, String>> {
    let mut found = HashMap::new();
    let mut entry = Vec::new();
    loop {
        entry.clear();
        if reader.read_until(0, &mut entry)? == 0 {
            break;
        }
        if entry.last() == Some(&0) {
            entry.pop();
        }
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&entry[..eq], &entry[eq + 1..]);
        if let Some(&name) = names.iter().find(|n| n.as_bytes() == name)
            && !found.contains_key(name)
        {
            found.insert(name.to_owned(), String::from_utf8_lossy(value).into_owned());
        }
        if found.len() == names.len() {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk-ant-oat01-THIS-IS-A-SECRET";

    /// Markers a session's processes inherit (what a reader of the environment may ask for).
    const MARKERS: &[&str] = &[
        "CLAUDECODE",
        "CLAUDE_CODE_SESSION_ID",
        "CLAUDE_CODE_ENTRYPOINT",
        "AI_AGENT",
        "CLAUDE_PID",
        "CLAUDE_CONFIG_DIR",
    ];

    fn block(entries: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            out.extend_from_slice(e.as_bytes());
            out.push(0);
        }
        out
    }

    fn tool_env() -> Vec<u8> {
        block(&[
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "HOME=/home/u",
            &format!("CLAUDE_CODE_OAUTH_TOKEN={SECRET}"),
            &format!("ANTHROPIC_API_KEY={SECRET}"),
            "CLAUDECODE=1",
            "CLAUDE_CODE_SESSION_ID=3f2a9c1e-7b4d-4e8a-9f0b-1c2d3e4f5a6b",
            "CLAUDE_CODE_ENTRYPOINT=cli",
            "AI_AGENT=claude-code_2.0.14_agent",
            "CLAUDE_PID=22606",
            "OLDPWD=/home/u",
        ])
    }

    #[test]
    fn config_dir_from_the_session_environment() {
        let vars = |entries: &[&str]| parse_vars(&block(entries), CONFIG_VARS);
        assert_eq!(
            config_dir_of(&vars(&["HOME=/srv/box", "PATH=/bin"])),
            Some(PathBuf::from("/srv/box/.claude"))
        );
        assert_eq!(
            config_dir_of(&vars(&["HOME=/srv/box", "CLAUDE_CONFIG_DIR=/etc/cc"])),
            Some(PathBuf::from("/etc/cc"))
        );
        // A relative value means nothing to a process with another cwd.
        assert_eq!(
            config_dir_of(&vars(&["CLAUDE_CONFIG_DIR=cc", "HOME=/h"])),
            Some(PathBuf::from("/h/.claude"))
        );
        assert_eq!(config_dir_of(&vars(&["HOME=", "PATH=/bin"])), None);
    }

    #[test]
    fn keeps_only_the_names_asked_for() {
        let vars = parse_vars(&tool_env(), MARKERS);
        let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "AI_AGENT",
                "CLAUDECODE",
                "CLAUDE_CODE_ENTRYPOINT",
                "CLAUDE_CODE_SESSION_ID",
                "CLAUDE_PID"
            ]
        );
        assert!(!format!("{vars:?}").contains(SECRET));
        assert_eq!(vars["CLAUDE_PID"], "22606");
    }

    #[test]
    fn entry_edge_cases() {
        let env = [
            b"NOEQUALS\0".as_slice(),
            b"CLAUDE_PIDX=1\0",
            b"XCLAUDE_PID=2\0",
            b"CLAUDE_PID=3\0",
            b"CLAUDE_PID=4\0",
            b"AI_AGENT=\0",
            b"CLAUDE_CODE_ENTRYPOINT=a=b\0",
            b"CLAUDE_CODE_SESSION_ID=caf\xc3\xa9\xff",
        ]
        .concat();
        let vars = parse_vars(&env, MARKERS);
        assert_eq!(
            vars["CLAUDE_PID"], "3",
            "the first value wins, as for getenv"
        );
        assert_eq!(vars["AI_AGENT"], "");
        assert_eq!(vars["CLAUDE_CODE_ENTRYPOINT"], "a=b");
        assert_eq!(
            vars["CLAUDE_CODE_SESSION_ID"], "café\u{fffd}",
            "no trailing NUL"
        );
        assert!(!vars.contains_key("NOEQUALS"));
        assert_eq!(vars.len(), 4);

        assert!(parse_vars(b"", MARKERS).is_empty());
        assert!(parse_vars(&tool_env(), &[]).is_empty());
    }

    #[test]
    fn reads_a_live_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("ANTHROPIC_API_KEY", SECRET)
            .env("CLAUDECODE", "1")
            .env("AI_AGENT", "claude-code_9.9.9_agent")
            .env("CLAUDE_PID", "4242")
            .spawn()
            .expect("spawn sleep");
        let vars = read_vars(child.id(), MARKERS);
        let _ = child.kill();
        let _ = child.wait();
        let vars = vars.expect("readable");
        assert_eq!(vars.get("CLAUDE_PID").map(String::as_str), Some("4242"));
        assert_eq!(vars.len(), 3, "{vars:?}");
        assert!(!format!("{vars:?}").contains(SECRET));

        let err = read_vars(u32::MAX, MARKERS).expect_err("no such pid");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

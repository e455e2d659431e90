//! Selected variables of a process's environment, and only those.
//!
//! Every process that Claude Code starts inherits markers that say which session it
//! belongs to: `CLAUDECODE=1`, `CLAUDE_CODE_SESSION_ID`, `CLAUDE_CODE_ENTRYPOINT`,
//! `AI_AGENT=claude-code_<version>_agent` (`_harness` for the CLI's own helpers) and, on
//! newer versions, `CLAUDE_PID`. They attribute a process even when its lineage is lost.
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

/// The variables of interest for attribution. `CLAUDE_CONFIG_DIR` is here too: a session
/// started with it keeps its registry and transcripts there instead of `~/.claude`.
pub const VARS_OF_INTEREST: &[&str] = &[
    "CLAUDECODE",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_CODE_ENTRYPOINT",
    "AI_AGENT",
    "CLAUDE_PID",
    "CLAUDE_CONFIG_DIR",
];

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

/// `AI_AGENT`, `claude-code_2.0.14_agent`: agent, version, and role (`agent` for the
/// session's tool processes, `harness` for the CLI's own helpers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AiAgent {
    pub agent: String,
    pub version: String,
    pub role: String,
}

impl AiAgent {
    pub fn is_harness(&self) -> bool {
        self.role == "harness"
    }
}

/// Splits `AI_AGENT` at its first and last `_`; `None` unless it has three non-empty
/// parts.
pub fn parse_ai_agent(value: &str) -> Option<AiAgent> {
    let (agent, rest) = value.split_once('_')?;
    let (version, role) = rest.rsplit_once('_')?;
    (!agent.is_empty() && !version.is_empty() && !role.is_empty()).then(|| AiAgent {
        agent: agent.into(),
        version: version.into(),
        role: role.into(),
    })
}

/// The [`VARS_OF_INTEREST`] of one process, typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaudeEnv {
    /// `CLAUDECODE=1`: started, directly or not, by Claude Code.
    pub claudecode: bool,
    pub session_id: Option<String>,
    pub entrypoint: Option<String>,
    pub ai_agent: Option<AiAgent>,
    pub claude_pid: Option<u32>,
    pub config_dir: Option<PathBuf>,
}

impl ClaudeEnv {
    pub fn from_vars(vars: &HashMap<String, String>) -> ClaudeEnv {
        let get = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
        ClaudeEnv {
            claudecode: vars.get("CLAUDECODE").is_some_and(|v| v == "1"),
            session_id: get("CLAUDE_CODE_SESSION_ID"),
            entrypoint: get("CLAUDE_CODE_ENTRYPOINT"),
            ai_agent: vars.get("AI_AGENT").and_then(|v| parse_ai_agent(v)),
            claude_pid: vars.get("CLAUDE_PID").and_then(|v| v.trim().parse().ok()),
            config_dir: get("CLAUDE_CONFIG_DIR").map(PathBuf::from),
        }
    }

    /// Reads and types the variables of interest of `pid`.
    pub fn read(pid: u32) -> io::Result<ClaudeEnv> {
        read_vars(pid, VARS_OF_INTEREST).map(|vars| ClaudeEnv::from_vars(&vars))
    }

    /// Whether any marker says the process descends from a Claude Code session.
    pub fn is_claude_descendant(&self) -> bool {
        self.claudecode || self.session_id.is_some() || self.claude_pid.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk-ant-oat01-THIS-IS-A-SECRET";

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
        let vars = parse_vars(&tool_env(), VARS_OF_INTEREST);
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

        let env = ClaudeEnv::from_vars(&vars);
        assert_eq!(
            env,
            ClaudeEnv {
                claudecode: true,
                session_id: Some("3f2a9c1e-7b4d-4e8a-9f0b-1c2d3e4f5a6b".into()),
                entrypoint: Some("cli".into()),
                ai_agent: Some(AiAgent {
                    agent: "claude-code".into(),
                    version: "2.0.14".into(),
                    role: "agent".into(),
                }),
                claude_pid: Some(22606),
                config_dir: None,
            }
        );
        assert!(env.is_claude_descendant());
        assert!(!format!("{env:?}").contains(SECRET));
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
        let vars = parse_vars(&env, VARS_OF_INTEREST);
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

        assert!(parse_vars(b"", VARS_OF_INTEREST).is_empty());
        assert!(parse_vars(&tool_env(), &[]).is_empty());
    }

    #[test]
    fn outside_any_session() {
        let vars = parse_vars(&block(&["PATH=/bin", "CLAUDECODE=0"]), VARS_OF_INTEREST);
        let env = ClaudeEnv::from_vars(&vars);
        assert!(!env.claudecode);
        assert!(!env.is_claude_descendant());
        let env = ClaudeEnv::from_vars(&parse_vars(
            &block(&["CLAUDE_PID=notanumber", "CLAUDE_CONFIG_DIR=/etc/claude"]),
            VARS_OF_INTEREST,
        ));
        assert_eq!(env.claude_pid, None);
        assert_eq!(env.config_dir, Some(PathBuf::from("/etc/claude")));
    }

    #[test]
    fn ai_agent_values() {
        let h = parse_ai_agent("claude-code_2.0.14_harness").expect("parsed");
        assert!(h.is_harness());
        assert_eq!(h.version, "2.0.14");
        let a = parse_ai_agent("claude-code_1.0.0-beta_1_agent").expect("parsed");
        assert_eq!(
            (a.version.as_str(), a.role.as_str()),
            ("1.0.0-beta_1", "agent")
        );
        for bad in [
            "",
            "claude-code",
            "claude-code_2.0.14",
            "_1_agent",
            "x__agent",
            "x_1_",
        ] {
            assert_eq!(parse_ai_agent(bad), None, "{bad}");
        }
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
        let env = ClaudeEnv::read(child.id());
        let _ = child.kill();
        let _ = child.wait();
        let env = env.expect("readable");
        assert!(env.claudecode);
        assert_eq!(env.claude_pid, Some(4242));
        assert_eq!(env.ai_agent.map(|a| a.version).as_deref(), Some("9.9.9"));

        let err = read_vars(u32::MAX, VARS_OF_INTEREST).expect_err("no such pid");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

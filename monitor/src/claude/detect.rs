//! Is this process an agent session root?
//!
//! A session is a process tree whose root is the agent's CLI; everything the monitor says
//! about a session starts from recognising that root. The decision is made from a few facts
//! the caller collects ([`ProcFacts`]: from /proc for processes found at start-up with
//! [`read_proc_facts`], or from an exec event), so it is a pure function and the same rules
//! serve the /proc scan and live events.
//!
//! Built-in rules cover the shapes Claude Code has on Linux (issue 3, measured on real
//! installs):
//!
//! | rule                          | shape                                                                   |
//! |-------------------------------|-------------------------------------------------------------------------|
//! | `claude-code:npm-native`      | exe `*/@anthropic-ai/claude-code/bin/claude.exe` (npm, native ELF)       |
//! | `claude-code:platform-binary` | exe `*/@anthropic-ai/claude-code-linux-*/claude` (platform package)      |
//! | `claude-code:native-installer`| exe `*/claude/versions/<semver>` (the file is named by its version)      |
//! | `claude-code:npm-node`        | exe is node, an argument ends in `@anthropic-ai/claude-code/cli.js`      |
//! | `claude-code:npm-node-link`   | exe is node, its script is npm's link named `claude` (`node /usr/bin/claude`) |
//! | `claude-code:comm`            | comm `claude` or `claude.exe` (e.g. old npm after it renamed itself)     |
//!
//! The CLI re-executes its own binary with argv\[0\] `rg` to run ripgrep; such a process
//! has the session's exe and comm but is a helper, so no built-in rule matches a process
//! whose argv\[0\] names `rg`.
//!
//! [`Rule`]s add any other agent or program: each given field must match. Their matching
//! language is deliberately tiny (see [`path_glob`] and [`text_glob`]): `*` is the only
//! special character.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::CLAUDE_CODE;
use crate::kernel::loader::KernelCandidates;

/// What the rules look at. `exe` is the target of `/proc/PID/exe` (absent for kernel
/// threads, zombies, or when it cannot be read); `argv` is the command line as the process
/// shows it now (a process may rewrite it, as old npm Claude Code does to `claude`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcFacts {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<PathBuf>,
    pub argv: Vec<String>,
}

/// A match: which agent, its version when the process shape tells it, and the rule that
/// matched (for diagnostics: `claude-code:native-installer`, `rule[0]:aider`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    pub agent: String,
    pub version: Option<String>,
    pub rule: String,
}

/// A configured rule. Every field that is given must match:
///
/// - `exe_glob`: [`path_glob`] over the exe path (must be absolute or start with `*/`);
/// - `comm`: the comm exactly, or a [`text_glob`] when it contains `*`;
/// - `argv_pattern`: over the arguments joined by single spaces; a substring when it has no
///   `*`, else a [`text_glob`] over the whole joined line.
///
/// Unknown keys are an error, so a typo in a config file names the key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The agent label reported for matching sessions, e.g. `aider`.
    pub name: String,
    #[serde(default)]
    pub exe_glob: Option<String>,
    #[serde(default)]
    pub comm: Option<String>,
    #[serde(default)]
    pub argv_pattern: Option<String>,
}

/// The kernel keeps 15 bytes of comm (TASK_COMM_LEN 16 with the NUL).
pub const COMM_MAX: usize = 15;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("rule {index}: `name` is empty")]
    EmptyName { index: usize },
    #[error("rule {index} ({name}): give at least one of exe_glob, comm, argv_pattern")]
    NoCriteria { index: usize, name: String },
    #[error("rule {index} ({name}): `{field}` is empty")]
    EmptyField {
        index: usize,
        name: String,
        field: &'static str,
    },
    #[error(
        "rule {index} ({name}): exe_glob `{glob}` can never match: exe paths are absolute, \
         so start it with `/` or `*/`"
    )]
    RelativeExeGlob {
        index: usize,
        name: String,
        glob: String,
    },
    #[error(
        "rule {index} ({name}): comm `{comm}` can never match: the kernel keeps only the \
         first {COMM_MAX} bytes of a comm"
    )]
    CommTooLong {
        index: usize,
        name: String,
        comm: String,
    },
}

impl Rule {
    fn validate(&self, index: usize) -> Result<(), RuleError> {
        let name = || self.name.clone();
        if self.name.is_empty() {
            return Err(RuleError::EmptyName { index });
        }
        if self.exe_glob.is_none() && self.comm.is_none() && self.argv_pattern.is_none() {
            return Err(RuleError::NoCriteria {
                index,
                name: name(),
            });
        }
        for (field, value) in [
            ("exe_glob", &self.exe_glob),
            ("comm", &self.comm),
            ("argv_pattern", &self.argv_pattern),
        ] {
            if value.as_deref() == Some("") {
                return Err(RuleError::EmptyField {
                    index,
                    name: name(),
                    field,
                });
            }
        }
        if let Some(glob) = &self.exe_glob
            && !glob.starts_with('/')
            && !glob.starts_with("*/")
        {
            return Err(RuleError::RelativeExeGlob {
                index,
                name: name(),
                glob: glob.clone(),
            });
        }
        if let Some(comm) = &self.comm
            && !comm.contains('*')
            && comm.len() > COMM_MAX
        {
            return Err(RuleError::CommTooLong {
                index,
                name: name(),
                comm: comm.clone(),
            });
        }
        Ok(())
    }

    /// Whether every given field matches `facts`.
    pub fn matches(&self, facts: &ProcFacts) -> bool {
        if let Some(glob) = &self.exe_glob {
            match facts.exe.as_deref() {
                Some(exe) if path_glob(glob, &exe_string(exe)) => {}
                _ => return false,
            }
        }
        if let Some(comm) = &self.comm {
            let ok = if comm.contains('*') {
                text_glob(comm, &facts.comm)
            } else {
                *comm == facts.comm
            };
            if !ok {
                return false;
            }
        }
        if let Some(pattern) = &self.argv_pattern {
            let line = facts.argv.join(" ");
            let ok = if pattern.contains('*') {
                text_glob(pattern, &line)
            } else {
                line.contains(pattern.as_str())
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// The built-in Claude Code rules followed by configured rules, first match wins.
#[derive(Clone, Debug, Default)]
pub struct Detector {
    rules: Vec<Rule>,
}

impl Detector {
    /// Validates `rules` (a rule that could never match, or would match everything, is an
    /// error naming the rule).
    pub fn new(rules: Vec<Rule>) -> Result<Detector, RuleError> {
        for (index, rule) in rules.iter().enumerate() {
            rule.validate(index)?;
        }
        Ok(Detector { rules })
    }

    /// What the kernel's exec prefilter needs to flag every process these rules could match
    /// (see `SCOPE_SESSIONS`): the comms of the built-in shapes, and for each configured rule
    /// its exact comm, else the literal file name of its `exe_glob`. A rule that gives
    /// neither (a glob comm, a glob file name, or only `argv_pattern`) makes the kernel report
    /// every exec, and such a rule's sessions are found when userspace reads the record.
    pub fn kernel_candidates(&self) -> KernelCandidates {
        let mut comms: Vec<String> = BUILTIN_CANDIDATE_COMMS
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let mut exec_all = Vec::new();
        for rule in &self.rules {
            let from_exe = rule.exe_glob.as_deref().and_then(|g| {
                let name = g.rsplit('/').next().unwrap_or(g);
                (!name.is_empty() && !name.contains('*')).then(|| name.to_owned())
            });
            let comm = match (&rule.comm, from_exe) {
                (Some(c), _) if !c.contains('*') => Some(c.clone()),
                (None, Some(name)) => Some(name),
                _ => None,
            };
            match comm {
                Some(c) => {
                    // The kernel keeps the first 15 bytes of the file name as comm.
                    let c: String = c
                        .chars()
                        .scan(0, |n, ch| {
                            *n += ch.len_utf8();
                            (*n <= COMM_MAX).then_some(ch)
                        })
                        .collect();
                    if !comms.contains(&c) {
                        comms.push(c);
                    }
                }
                None => exec_all.push(rule.name.clone()),
            }
        }
        KernelCandidates {
            comms,
            version_comm: true,
            exec_all,
        }
    }

    pub fn detect(&self, facts: &ProcFacts) -> Option<Detection> {
        detect_claude_code(facts).or_else(|| {
            self.rules
                .iter()
                .enumerate()
                .find(|(_, rule)| rule.matches(facts))
                .map(|(i, rule)| Detection {
                    agent: rule.name.clone(),
                    version: None,
                    rule: format!("rule[{i}]:{}", rule.name),
                })
        })
    }
}

/// Comms an exec of a Claude Code image has: the binary's file name (`claude`,
/// `claude.exe`), or `node` for the old `node …/cli.js`; the native installer's versioned
/// file names (`2.0.14`) are covered by `KernelCandidates::version_comm`.
pub const BUILTIN_CANDIDATE_COMMS: &[&str] = &["claude", "claude.exe", "node"];

/// The built-in rules alone (see the module documentation).
pub fn detect_claude_code(facts: &ProcFacts) -> Option<Detection> {
    if is_rg_helper(facts) {
        return None;
    }
    let found = |rule: &str, version: Option<String>| {
        Some(Detection {
            agent: CLAUDE_CODE.into(),
            version,
            rule: format!("{CLAUDE_CODE}:{rule}"),
        })
    };
    if let Some(exe) = facts.exe.as_deref() {
        let exe = exe_string(exe);
        if path_glob("*/@anthropic-ai/claude-code/bin/claude.exe", &exe) {
            return found("npm-native", None);
        }
        if path_glob("*/@anthropic-ai/claude-code-linux-*/claude", &exe) {
            return found("platform-binary", None);
        }
        if let Some(version) = native_installer_version(&exe) {
            return found("native-installer", Some(version.into()));
        }
        if is_node(&exe)
            && facts
                .argv
                .iter()
                .skip(1)
                .any(|a| path_glob("*/@anthropic-ai/claude-code/cli.js", a))
        {
            return found("npm-node", None);
        }
        // npm links the script as `claude` (`/usr/bin/claude`, `node_modules/.bin/claude`)
        // and the kernel runs it through its `#!/usr/bin/env node` line, so node's argv
        // names the link: its first argument that is not an option.
        if is_node(&exe)
            && facts
                .argv
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "claude"))
        {
            return found("npm-node-link", None);
        }
    }
    if facts.comm == "claude" || facts.comm == "claude.exe" {
        return found("comm", None);
    }
    None
}

/// argv\[0\] is `rg` (or a path to it): the CLI running ripgrep through its own binary.
fn is_rg_helper(facts: &ProcFacts) -> bool {
    facts
        .argv
        .first()
        .is_some_and(|a0| a0.rsplit('/').next() == Some("rg"))
}

/// The exe path as text, without the ` (deleted)` the kernel appends once the file is
/// unlinked (the native installer removes old versions while sessions still run them).
fn exe_string(exe: &Path) -> String {
    let s = exe.to_string_lossy();
    s.strip_suffix(" (deleted)").unwrap_or(&s).to_owned()
}

/// The version of the npm package a Claude Code session runs from, for the shapes whose path
/// does not carry it (`…/claude-code/bin/claude.exe`, `…/claude-code-linux-*/claude`,
/// `node …/claude-code/cli.js`): the `version` of the package's `package.json`. Older
/// versions write no version into their session registry, so without this their events
/// would say nothing of it.
///
/// The file may be in a user's directory: it is opened without following a symlink, read
/// up to [`PACKAGE_JSON_MAX`] bytes, and only a short version-like string is kept.
pub fn package_version(facts: &ProcFacts) -> Option<String> {
    let exe = facts.exe.as_deref().map(exe_string).unwrap_or_default();
    let package_dir = if path_glob("*/@anthropic-ai/claude-code/bin/claude.exe", &exe) {
        Path::new(&exe).parent()?.parent()?.to_path_buf()
    } else if path_glob("*/@anthropic-ai/claude-code-linux-*/claude", &exe) {
        Path::new(&exe).parent()?.to_path_buf()
    } else {
        // `node …/cli.js`, or, as npm installs it, `node /usr/bin/claude` (the kernel ran the
        // `#!/usr/bin/env node` script through its symlink): the script's real path.
        let cli_js = |p: &Path| {
            path_glob("*/@anthropic-ai/claude-code/cli.js", &exe_string(p)).then(|| p.to_owned())
        };
        let cli = facts
            .argv
            .iter()
            .skip(1)
            .take(2)
            .filter(|a| a.starts_with('/'))
            .find_map(|a| {
                cli_js(Path::new(a)).or_else(|| fs::canonicalize(a).ok().and_then(|p| cli_js(&p)))
            })?;
        cli.parent()?.to_path_buf()
    };
    read_package_version(&package_dir.join("package.json"))
}

/// Bound on a `package.json` read by [`package_version`].
const PACKAGE_JSON_MAX: u64 = 64 * 1024;

fn read_package_version(path: &Path) -> Option<String> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    #[derive(Deserialize)]
    struct Package {
        version: Option<String>,
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(PACKAGE_JSON_MAX).read_to_end(&mut bytes).ok()?;
    let version = serde_json::from_slice::<Package>(&bytes).ok()?.version?;
    let plausible = (1..=32).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b));
    plausible.then_some(version)
}

/// `<semver>` of `*/claude/versions/<semver>`.
fn native_installer_version(exe: &str) -> Option<&str> {
    if !path_glob("*/claude/versions/*", exe) {
        return None;
    }
    let version = exe.rsplit('/').next()?;
    is_semver(version).then_some(version)
}

/// `MAJOR.MINOR.PATCH`, optionally followed by `-pre` and/or `+build` made of ASCII
/// alphanumerics, `.` and `-`.
pub fn is_semver(s: &str) -> bool {
    let (core, suffix) = match s.find(['-', '+']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && suffix.is_none_or(|x| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        })
}

/// `node`, `nodejs`, or a versioned `node22` / `node-22`.
fn is_node(exe: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    base == "nodejs"
        || base.strip_prefix("node").is_some_and(|v| {
            v.trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.')
        })
}

/// Glob over a path. `*` matches any run of characters other than `/`, except a leading
/// `*/`, which matches any directory prefix however deep (`*/bin/claude` matches
/// `/bin/claude` and `/usr/local/bin/claude`, not `bin/claude`). Everything else, `?`, `[`
/// and `\` included, is literal, and the whole path must match.
pub fn path_glob(pattern: &str, path: &str) -> bool {
    let t: Vec<char> = path.chars().collect();
    match pattern.strip_prefix("*/") {
        Some(rest) => {
            let p: Vec<char> = rest.chars().collect();
            t.iter()
                .enumerate()
                .any(|(k, &c)| c == '/' && wildcard(&p, &t[k + 1..], false))
        }
        None => {
            let p: Vec<char> = pattern.chars().collect();
            wildcard(&p, &t, false)
        }
    }
}

/// Glob over free text (a comm, a command line): `*` matches any run of characters,
/// including `/` and spaces; everything else is literal and the whole text must match.
pub fn text_glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    wildcard(&p, &t, true)
}

/// `*`-only wildcard matching by dynamic programming over (pattern suffix, text suffix):
/// O(len(p) * len(t)), no backtracking blow-up.
fn wildcard(p: &[char], t: &[char], star_crosses_slash: bool) -> bool {
    let n = t.len();
    // next[j]: p[i + 1..] matches t[j..].
    let mut next = vec![false; n + 1];
    next[n] = true;
    for &pc in p.iter().rev() {
        let mut cur = vec![false; n + 1];
        for j in (0..=n).rev() {
            cur[j] = if pc == '*' {
                next[j] || (j < n && (star_crosses_slash || t[j] != '/') && cur[j + 1])
            } else {
                j < n && t[j] == pc && next[j + 1]
            };
        }
        next = cur;
    }
    next[0]
}

/// The facts of a live process from /proc.
pub fn read_proc_facts(pid: u32) -> io::Result<ProcFacts> {
    read_proc_facts_in(Path::new("/proc"), pid)
}

/// [`read_proc_facts`] under another proc root (tests use a fake one). Fails when the
/// process does not exist (or vanished while being read); an unreadable exe link (kernel
/// thread, zombie, no permission) is `exe: None`. The three files are not read atomically:
/// callers that must not mix two processes that had the same pid compare start times.
pub fn read_proc_facts_in(proc_root: &Path, pid: u32) -> io::Result<ProcFacts> {
    let dir = proc_root.join(pid.to_string());
    let comm = fs::read(dir.join("comm"))?;
    let comm = String::from_utf8_lossy(&comm)
        .trim_end_matches('\n')
        .to_owned();
    let exe = fs::read_link(dir.join("exe")).ok();
    // Read once, never waited for: the agent must not sleep on its event loop. A process
    // caught inside execve (or exec'd with argc 0) shows an empty cmdline; callers take argv
    // from the exec record then, or skip the process until its exec record comes.
    let argv = parse_cmdline(&fs::read(dir.join("cmdline"))?);
    Ok(ProcFacts {
        pid,
        comm,
        exe,
        argv,
    })
}

/// NUL-separated arguments. Trailing empty strings are dropped: a process that renamed
/// itself (libuv's process title, used by node) leaves the rest of the old argument area
/// as NULs.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let mut argv: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    while argv.last().is_some_and(String::is_empty) {
        argv.pop();
    }
    argv
}

#[cfg(test)]
mod tests;

//! Small helpers shared by the subcommands: running commands with good error messages,
//! locating the workspace, escalating privileges for one command only, and listing the
//! executables a cargo build produced.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo that invoked us (so `cargo +toolchain xtask` keeps its toolchain).
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd`, failing with the command line in the message when it cannot start or fails.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = status_of(cmd)?;
    if !status.success() {
        bail!("`{}` failed: {status}", describe(cmd));
    }
    Ok(())
}

pub fn status_of(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("could not start `{}`", describe(cmd)))
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command for `program` that runs as root: directly when we are root, otherwise through
/// `sudo --preserve-env` so that CI, RUST_LOG and the test harness's variables pass through.
pub fn privileged(program: &Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg("--preserve-env").arg("--").arg(program);
        cmd
    }
}

/// Runs `cmd` to completion and returns its stdout; a failure names the command, its status
/// and its stderr.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An executable cargo built.
pub struct Artifact {
    pub package: String,
    /// The target's name (`engine`, `claude-monitor`, `memhog`).
    pub target: String,
    /// The target's kinds (`bin`, `test`, `lib`…).
    pub kinds: Vec<String>,
    /// Built as a libtest harness.
    pub test: bool,
    pub path: PathBuf,
}

/// Runs a cargo build command (`build`, `test --no-run`) with JSON messages (diagnostics
/// still rendered on stderr) and returns the executables it produced.
pub fn artifacts(cmd: &mut Command) -> Result<Vec<Artifact>> {
    cmd.arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    let stdout = child.stdout.take().context("no stdout from cargo")?;
    let mut artifacts = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(path) = msg["executable"].as_str() else {
            continue;
        };
        artifacts.push(Artifact {
            package: msg["package_id"]
                .as_str()
                .and_then(package_name)
                .unwrap_or_default(),
            target: msg["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            kinds: msg["target"]["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            test: msg["profile"]["test"] == true,
            path: PathBuf::from(path),
        });
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`{}` failed: {status}", describe(cmd));
    }
    Ok(artifacts)
}

/// Package name from a cargo package id (`path+file:///…/tests#claude-monitor-tests@0.1.0`
/// or the older `name version (source)` form).
fn package_name(id: &str) -> Option<String> {
    if let Some((_, rest)) = id.rsplit_once('#') {
        let name = rest.split('@').next()?;
        // `…/monitor#0.1.0`: the name is the last path component.
        if name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            let path = id.rsplit_once('#')?.0;
            return path.rsplit('/').next().map(str::to_owned);
        }
        return Some(name.to_owned());
    }
    id.split_whitespace().next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::package_name;

    #[test]
    fn package_names_from_ids() {
        assert_eq!(
            package_name("path+file:///w/tests#claude-monitor-tests@0.1.0").as_deref(),
            Some("claude-monitor-tests")
        );
        assert_eq!(
            package_name("path+file:///w/xtask#0.1.0").as_deref(),
            Some("xtask")
        );
        assert_eq!(
            package_name("xtask 0.1.0 (path+file:///w/xtask)").as_deref(),
            Some("xtask")
        );
    }
}

//! Running the real CLI against the mock API: in print mode (`claude -p`) as a child of the
//! test, or interactively in a private tmux server, each with a throwaway `HOME` (0700) and
//! project directory.

use std::{
    ffi::OsString,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{kill, mock::MockApi, project_key, wait_until};
use crate::MemCgroup;

/// The API key the CLI is given (the mock accepts anything).
pub const API_KEY: &str = "sk-ant-api03-cm-test-0000000000000000000000000000000000";

/// The environment variable that marks every process of a sandbox (the CLI passes its
/// environment on to its tools), so [`Sandbox`]'s drop finds them all, orphans included.
pub const MARK: &str = "CM_CLI_SANDBOX";

/// A throwaway `HOME`, project directory and, optionally, `CLAUDE_CONFIG_DIR` outside the
/// home. Dropping it kills every process started with its mark and removes the files.
pub struct Sandbox {
    pub root: PathBuf,
    pub home: PathBuf,
    pub project: PathBuf,
    /// `CLAUDE_CONFIG_DIR`, when the test sets one.
    pub config_dir: Option<PathBuf>,
}

impl Sandbox {
    /// `/tmp/cm-cli-<test pid>-<tag>/{home,project}`.
    pub fn new(tag: &str) -> Sandbox {
        let root = std::env::temp_dir().join(format!("cm-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let home = root.join("home");
        let project = root.join("project");
        std::fs::create_dir_all(&home).expect("mkdir home");
        std::fs::create_dir_all(&project).expect("mkdir project");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        // Canonical, as the CLI reports its cwd.
        let root = root.canonicalize().expect("canonical sandbox");
        Sandbox {
            home: root.join("home"),
            project: root.join("project"),
            root,
            config_dir: None,
        }
    }

    /// [`Sandbox::new`] with `CLAUDE_CONFIG_DIR=<root>/claude-config` (not under `HOME`).
    pub fn with_config_dir(tag: &str) -> Sandbox {
        let mut s = Sandbox::new(tag);
        let dir = s.root.join("claude-config");
        std::fs::create_dir_all(&dir).expect("mkdir config");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        s.config_dir = Some(dir);
        s
    }

    /// Where the CLI keeps its state: `$CLAUDE_CONFIG_DIR` or `~/.claude`.
    pub fn claude_dir(&self) -> PathBuf {
        self.config_dir
            .clone()
            .unwrap_or_else(|| self.home.join(".claude"))
    }

    /// The CLI's global configuration file: `$CLAUDE_CONFIG_DIR/.claude.json` or
    /// `~/.claude.json`.
    pub fn claude_json(&self) -> PathBuf {
        match &self.config_dir {
            Some(d) => d.join(".claude.json"),
            None => self.home.join(".claude.json"),
        }
    }

    /// The registry entry of the session process `pid`.
    pub fn registry_path(&self, pid: u32) -> PathBuf {
        self.claude_dir()
            .join("sessions")
            .join(format!("{pid}.json"))
    }

    /// The registry entry of `pid`, if written (and complete JSON).
    pub fn registry(&self, pid: u32) -> Option<Value> {
        let text = std::fs::read_to_string(self.registry_path(pid)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits for the registry entry of `pid`.
    pub fn wait_registry(&self, pid: u32, timeout: Duration) -> Value {
        let mut found = None;
        wait_until(
            timeout,
            &format!("registry entry {}", self.registry_path(pid).display()),
            || {
                found = self.registry(pid);
                found.is_some()
            },
            String::new,
        );
        found.expect("found")
    }

    /// The transcript of Claude Code session `session_id` run in the project directory.
    pub fn transcript(&self, session_id: &str) -> PathBuf {
        self.claude_dir()
            .join("projects")
            .join(project_key(&self.project))
            .join(format!("{session_id}.jsonl"))
    }

    /// Session ids of the transcripts in the project directory's transcript folder.
    pub fn transcript_ids(&self) -> Vec<String> {
        let dir = self
            .claude_dir()
            .join("projects")
            .join(project_key(&self.project));
        let mut ids: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".jsonl"))
                    .map(str::to_owned)
            })
            .collect();
        ids.sort();
        ids
    }

    /// Pre-accepts what the CLI asks a first interactive run: onboarding done, the project
    /// folder trusted, the API key from the environment approved (the CLI stores its last
    /// 20 characters).
    pub fn preaccept(&self) {
        let tail = &API_KEY[API_KEY.len() - 20..];
        let project = self.project.display().to_string();
        let config = json!({
            "hasCompletedOnboarding": true,
            "customApiKeyResponses": {"approved": [tail], "rejected": []},
            "projects": {project: {"hasTrustDialogAccepted": true}},
        });
        std::fs::write(self.claude_json(), config.to_string()).expect("write .claude.json");
    }

    /// The CLI's environment: nothing inherited but `PATH` (with `program`'s directory
    /// first), the sandbox's `HOME` (and `CLAUDE_CONFIG_DIR`), the mock's URL, the key.
    pub fn env(&self, program: &Path, mock: &MockApi) -> Vec<(String, OsString)> {
        let mut path = OsString::from(program.parent().expect("program dir"));
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
        let mut env = vec![
            ("PATH".to_owned(), path),
            ("HOME".to_owned(), self.home.clone().into()),
            ("LANG".to_owned(), "C.UTF-8".into()),
            ("ANTHROPIC_BASE_URL".to_owned(), mock.url().into()),
            ("ANTHROPIC_API_KEY".to_owned(), API_KEY.into()),
            // As in CI jobs and sandboxes: no self-update, no telemetry.
            ("DISABLE_AUTOUPDATER".to_owned(), "1".into()),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
                "1".into(),
            ),
            (MARK.to_owned(), self.root.clone().into()),
        ];
        if let Some(d) = &self.config_dir {
            env.push(("CLAUDE_CONFIG_DIR".to_owned(), d.clone().into()));
        }
        env
    }

    /// Kills every process carrying this sandbox's mark (the CLI, its tools, orphans, a tmux
    /// server), until none is left.
    pub fn kill_leftovers(&self) {
        crate::kill_marked(MARK, &self.root.display().to_string());
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_leftovers();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The CLI in print mode (`claude -p PROMPT --allowedTools Bash`), a child of the test.
/// Killed on drop if it is still running.
pub struct PrintRun {
    child: Child,
    pub pid: u32,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Options of [`PrintRun::start`].
#[derive(Default)]
pub struct PrintOptions<'a> {
    /// Memory cgroup the CLI starts in (moved there between fork and exec).
    pub cgroup: Option<&'a MemCgroup>,
}

impl PrintRun {
    /// Starts `program -p PROMPT --allowedTools Bash` in the project directory.
    pub fn start(
        sandbox: &Sandbox,
        program: &Path,
        mock: &MockApi,
        prompt: &str,
        opts: PrintOptions<'_>,
    ) -> PrintRun {
        let stdout = sandbox.root.join("claude.stdout");
        let stderr = sandbox.root.join("claude.stderr");
        let mut cmd = Command::new(program);
        cmd.args(["-p", prompt, "--allowedTools", "Bash"])
            .env_clear()
            .envs(sandbox.env(program, mock))
            .current_dir(&sandbox.project)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        if let Some(cg) = opts.cgroup {
            let procs = std::ffi::CString::new(cg.path.join("cgroup.procs").display().to_string())
                .expect("path");
            // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if n != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = child.id();
        PrintRun {
            child,
            pid,
            status: None,
            stdout,
            stderr,
        }
    }

    /// The exit status if it has ended (reaping it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the CLI to end.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "claude -p (pid {}) still running after {timeout:?}; stdout: {}; stderr: {}",
                self.pid,
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        if self.status.is_none() {
            kill(self.pid, signal);
        }
    }
}

impl Drop for PrintRun {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The CLI run interactively in its own tmux server (socket in the sandbox), in a 200x50
/// pane that stays after the CLI exits (`remain-on-exit`), so its status can be read. The
/// server is killed on drop.
pub struct Tmux {
    socket: PathBuf,
    config: PathBuf,
    /// The CLI's pid (the pane's process: the CLI is exec'd directly, without a shell).
    pub pid: u32,
}

impl Tmux {
    /// Starts `program ARGS` in the project directory, after [`Sandbox::preaccept`].
    pub fn start(sandbox: &Sandbox, program: &Path, args: &[&str], mock: &MockApi) -> Tmux {
        sandbox.preaccept();
        let socket = sandbox.root.join("tmux.sock");
        let config = sandbox.root.join("tmux.conf");
        std::fs::write(
            &config,
            "set -g remain-on-exit on\nset -g history-limit 5000\n",
        )
        .expect("tmux.conf");
        let out = Command::new("tmux")
            .env_clear()
            .envs(sandbox.env(program, mock))
            .env("TERM", "xterm-256color")
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(&config)
            .args([
                "new-session",
                "-d",
                "-s",
                "cm",
                "-x",
                "200",
                "-y",
                "50",
                "-c",
            ])
            .arg(&sandbox.project)
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux ({e}): the interactive scenarios need it"));
        let mut t = Tmux {
            socket,
            config,
            pid: 0,
        };
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = t.display("#{pane_pid}");
        t.pid = pid
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("tmux pane_pid: {pid:?}"));
        t
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn display(&self, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", "cm", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The pane's visible text now.
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "cm"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's whole text: its scrollback history and the visible screen.
    pub fn history(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-S", "-", "-E", "-", "-t", "cm"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `pred`; returns it. Panics with the screen.
    pub fn wait_screen(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        wait_until(
            timeout,
            &format!("screen showing {what}"),
            || {
                last = self.screen();
                pred(&last)
            },
            || format!("screen:\n{}", self.screen()),
        );
        last
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", "cm", "-l", text]);
        assert!(out.status.success(), "send-keys: {out:?}");
    }

    /// Presses a key by tmux's name (`Enter`, `Escape`, `C-c`).
    pub fn key(&self, key: &str) {
        let out = self.tmux(&["send-keys", "-t", "cm", key]);
        assert!(out.status.success(), "send-keys {key}: {out:?}");
    }

    /// Whether the CLI has exited, and with which status (`#{pane_dead_status}`), or
    /// `signal N` when a signal killed it (`#{pane_dead_signal}`). `None` until tmux has
    /// both the pane's death and how it died (it can show the first a moment before).
    pub fn exited(&self) -> Option<String> {
        if self.display("#{pane_dead}") != "1" {
            return None;
        }
        let status = self.display("#{pane_dead_status}");
        if !status.is_empty() {
            return Some(status);
        }
        let signal = self.display("#{pane_dead_signal}");
        (!signal.is_empty()).then(|| format!("signal {signal}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

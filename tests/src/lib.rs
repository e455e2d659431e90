//! Harness for the real-kernel scenarios: start the `claude-monitor` binary, collect its
//! JSON events (each validated against `docs/events.schema.json`), stop it, and give the
//! scenario the events to check.
//!
//! Privileges: the scenarios need root. Outside CI an unprivileged run skips each scenario
//! with a message; under `CI=true` it fails, as does any failure to load the programs.

pub mod claude_cli;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc::{self, Receiver},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The agent binary: `CLAUDE_MONITOR_BIN` (set by `cargo xtask test`) or the debug build.
pub fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CLAUDE_MONITOR_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/claude-monitor");
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo xtask test`",
        p.display()
    );
    p
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when the scenario can run; false (after saying why) when it should be skipped.
/// Panics under CI=true, where a scenario must never skip.
pub fn privileged(scenario: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        !in_ci(),
        "{scenario}: the eBPF scenarios need root and CI=true forbids skipping them; \
         run `cargo xtask test` (it uses sudo for these tests)"
    );
    eprintln!("SKIPPED {scenario}: needs root to load eBPF programs (run `cargo xtask test`)");
    false
}

/// The event schema, embedded so the scenarios also run where docs/ is absent (a VM guest).
const SCHEMA: &str = include_str!("../../docs/events.schema.json");

/// The compiled event schema.
pub fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA)
        .unwrap_or_else(|e| panic!("docs/events.schema.json is not JSON: {e}"));
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("docs/events.schema.json is not a valid schema: {e}"))
}

/// A helper program of this package (`memhog`, `threadexit`): from `CLAUDE_MONITOR_HELPERS`
/// (a directory, set in VM guests) or the path cargo built it at.
pub fn helper(name: &str, built_at: &str) -> PathBuf {
    match std::env::var_os("CLAUDE_MONITOR_HELPERS") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(built_at),
    }
}

/// Size of the short-lived-process storm: `CLAUDE_MONITOR_STORM` or `default`.
pub fn storm_size(default: usize) -> usize {
    std::env::var("CLAUDE_MONITOR_STORM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Validates one event line against the schema, panicking with every violation.
pub fn assert_valid(validator: &jsonschema::Validator, event: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "event violates docs/events.schema.json: {errors:?}\n{event}"
    );
}

/// A running agent.
pub struct Agent {
    child: Child,
    rx: Receiver<Value>,
    reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
    /// What the agent wrote on stderr so far.
    stderr_so_far: Arc<Mutex<String>>,
    pub start: Value,
}

impl Agent {
    /// Starts `claude-monitor trace ARGS --format json` and waits for `agent_start`.
    pub fn start(args: &[&str]) -> Agent {
        Agent::start_with_env(args, &[])
    }

    /// [`Agent::start`] with extra environment variables for the agent.
    pub fn start_with_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Agent {
        let mut full = vec!["trace"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--format", "json"]);
        Agent::launch(&full, env)
    }

    /// Starts `claude-monitor daemon --config CONFIG --stdout` (its events are on stdout as
    /// well as in its data directory) and waits for `agent_start`.
    pub fn daemon(config: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> Agent {
        let config = config.to_str().expect("UTF-8 config path");
        Agent::launch(&["daemon", "--config", config, "--stdout"], env)
    }

    /// Kills the agent with SIGKILL (no `agent_stop`) and returns the events it printed.
    pub fn kill(mut self, mut seen: Vec<Value>) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(e) = self.rx.recv_timeout(Duration::from_secs(5)) {
            seen.push(e);
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        seen
    }

    /// Starts `claude-monitor ARGS` (JSON lines on stdout) and waits for `agent_start`.
    pub fn launch(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Agent {
        let mut cmd = Command::new(agent_binary());
        cmd.envs(env.iter().copied()).args(args);
        Agent::spawn(cmd)
    }

    /// Starts `cmd`, which must exec the agent (the same process: it is signalled to stop),
    /// e.g. through a wrapper that sets up a sandbox, and waits for `agent_start`.
    pub fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start claude-monitor");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr_so_far = Arc::new(Mutex::new(String::new()));
        let so_far = Arc::clone(&stderr_so_far);
        let stderr = std::thread::spawn(move || {
            let mut pipe = BufReader::new(stderr_pipe);
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
                so_far
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&line);
                line.clear();
            }
            so_far.lock().unwrap_or_else(|p| p.into_inner()).clone()
        });
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let validator = schema();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent printed a non-JSON line ({e}): {line}"));
                assert_valid(&validator, &event);
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent {
            child,
            rx,
            reader: Some(reader),
            stderr: Some(stderr),
            stderr_so_far,
            start: Value::Null,
        };
        match agent.rx.recv_timeout(Duration::from_secs(60)) {
            Ok(first) => {
                assert_eq!(first["kind"], "agent_start", "first record: {first}");
                agent.start = first;
            }
            Err(_) => {
                // Still running when the reader gave up (e.g. a schema violation): end it.
                let _ = agent.child.kill();
                let status = agent.child.wait().ok();
                panic!(
                    "claude-monitor did not start (exit {status:?}): {}",
                    agent.stderr_text()
                );
            }
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Waits until an event satisfies `pred` (events seen meanwhile are kept and returned
    /// by [`Agent::stop`] too).
    pub fn wait_for(
        &mut self,
        seen: &mut Vec<Value>,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(e) = seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        self.wait_until(seen, timeout, |events| events.last().is_some_and(&pred));
        seen.last().cloned().expect("the matching event")
    }

    /// Waits until the events seen so far satisfy `done` (checked on what was already seen,
    /// then after each new event), e.g. until a count is reached.
    pub fn wait_until(
        &mut self,
        seen: &mut Vec<Value>,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) {
        if done(seen) {
            return;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => {
                    seen.push(e);
                    if done(seen) {
                        return;
                    }
                }
                Err(_) => panic!(
                    "the events did not reach the expected state within {timeout:?}; saw {} \
                     events; stderr so far: {}",
                    seen.len(),
                    self.stderr_now()
                ),
            }
        }
    }

    /// What the agent has written on stderr so far.
    pub fn stderr_now(&self) -> String {
        self.stderr_so_far
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the agent has written `needle` on stderr `times` times; returns stderr.
    pub fn wait_stderr(&self, timeout: Duration, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.stderr_now();
            if text.matches(needle).count() >= times {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not written {times} time(s) on stderr within {timeout:?}: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the agent with SIGINT and returns every event after `agent_start`, ending with
    /// `agent_stop`. Panics if the agent fails or loses records.
    pub fn stop(self, seen: Vec<Value>) -> Vec<Value> {
        self.stop_with_stderr(seen).0
    }

    /// [`Agent::stop`], also returning what the agent wrote on stderr.
    pub fn stop_with_stderr(mut self, mut seen: Vec<Value>) -> (Vec<Value>, String) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => seen.push(e),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("agent did not stop in 60 s"),
            }
        }
        if let Some(r) = self.reader.take()
            && let Err(p) = r.join()
        {
            std::panic::resume_unwind(p);
        }
        let status = self.child.wait().expect("wait agent");
        let stderr = self.stderr_text();
        assert!(status.success(), "agent exited with {status}: {stderr}");
        let last = seen.last().expect("no events at all");
        assert_eq!(
            last["kind"], "agent_stop",
            "last record: {last}\nstderr: {stderr}"
        );
        assert_eq!(last["reason"], "sigint");
        assert_eq!(
            last["events"].as_u64(),
            Some(seen.len() as u64),
            "agent_stop.events counts agent_start and everything before agent_stop"
        );
        (seen, stderr)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Events of `kind` about process `pid`.
pub fn of<'a>(events: &'a [Value], kind: &str, pid: u32) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["pid"].as_u64() == Some(u64::from(pid)))
        .collect()
}

/// Asserts that the kernel lost nothing: no `lost` record, and `agent_stop.lost == 0`.
pub fn assert_nothing_lost(events: &[Value]) {
    let lost: Vec<&Value> = events.iter().filter(|e| e["kind"] == "lost").collect();
    assert!(lost.is_empty(), "records lost: {lost:?}");
    let stop = events.last().expect("events");
    assert_eq!(stop["lost"], 0, "{stop}");
}

/// Which cgroup hierarchy holds the memory controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// A child memory cgroup, removed on drop (after killing anything left in it), even when
/// the test fails. On cgroup v1 it is created under the current process's own memory
/// cgroup; on v2 under the root of the unified hierarchy (a non-root cgroup that holds
/// processes cannot enable controllers for its children).
pub struct MemCgroup {
    pub path: PathBuf,
    pub version: CgroupVersion,
}

impl MemCgroup {
    pub fn create(name: &str, limit_bytes: u64) -> MemCgroup {
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let v1 = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_owned())
        });
        let (path, version) = match v1 {
            Some(rel) => (
                PathBuf::from("/sys/fs/cgroup/memory")
                    .join(rel.trim_start_matches('/'))
                    .join(name),
                CgroupVersion::V1,
            ),
            None => {
                let root = PathBuf::from("/sys/fs/cgroup");
                let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
                    .expect("no cgroup v1 memory controller and no cgroup v2 at /sys/fs/cgroup");
                assert!(
                    controllers.split_whitespace().any(|c| c == "memory"),
                    "cgroup v2 without the memory controller: {controllers}"
                );
                let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
                (root.join(name), CgroupVersion::V2)
            }
        };
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let cg = MemCgroup { path, version };
        match version {
            CgroupVersion::V1 => {
                cg.write("memory.limit_in_bytes", &limit_bytes.to_string());
                if cg.path.join("memory.memsw.limit_in_bytes").exists() {
                    cg.write("memory.memsw.limit_in_bytes", &limit_bytes.to_string());
                }
            }
            CgroupVersion::V2 => {
                cg.write("memory.max", &limit_bytes.to_string());
                if cg.path.join("memory.swap.max").exists() {
                    cg.write("memory.swap.max", "0");
                }
            }
        }
        cg
    }

    pub fn write(&self, file: &str, value: &str) {
        std::fs::write(self.path.join(file), value).unwrap_or_else(|e| {
            panic!(
                "cannot write {value} to {}/{file}: {e}",
                self.path.display()
            )
        });
    }

    /// The cgroup's kernfs id: the inode of its directory.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&self.path).expect("cgroup dir").ino()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: plain kill(2).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}

/// `root` and its descendants now, from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    loop {
        let before = out.len();
        for &(pid, ppid) in &parent {
            if out.contains(&ppid) && !out.contains(&pid) {
                out.push(pid);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Writes a line into the FIFO at `path` once its reader (a fake agent, blocked opening it)
/// is there: a wait that starts no process, so nothing is recorded while it lasts.
pub fn release_fifo(path: &Path) {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut fifo = None;
    // Opening for writing without blocking fails (ENXIO) until the reader has it open.
    wait_until(Duration::from_secs(20), &path.display().to_string(), || {
        fifo = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .ok();
        fifo.is_some()
    });
    fifo.expect("fifo")
        .write_all(b"\n")
        .expect("write the fifo");
}

/// A FIFO at `path` (0600).
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid C string.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Copies the executable `from` to `to` (mode kept) without ever opening `to` for writing in
/// this process. Tests run in threads: a thread that forks while this one holds a write fd
/// on the new binary passes that fd to its child until the child execs, and an exec of the
/// binary in that window fails with ETXTBSY ("Text file busy"). `cp` writes it in a process
/// of its own, which has exited, fd closed, before the copy is used.
pub fn copy_executable(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-p")
        .arg(from)
        .arg(to)
        .output()
        .expect("cp");
    assert!(
        out.status.success(),
        "cp {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `cond` holds, polling every 20 ms; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory, removed on drop (also when the test fails).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `$TMPDIR/<name>`, emptied first.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The variable that marks every process of one [`Spawned`] tree (inherited across fork
/// and exec, so it also finds descendants that were reparented or moved to a new session).
pub const TREE_VAR: &str = "CLAUDE_MONITOR_TEST_TREE";

/// A child process whose whole tree is killed on drop (also when the test fails): every
/// process that inherited the tree's own value of [`TREE_VAR`], wherever it was reparented.
pub struct Spawned {
    pub child: Child,
    token: String,
}

impl Spawned {
    /// Spawns `cmd` with a fresh tree marker.
    pub fn spawn(cmd: &mut Command) -> Spawned {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let token = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let child = cmd
            .env(TREE_VAR, &token)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Spawned { child, token }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait")
    }

    /// Waits for the child to exit, at most `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs every live process of the tree (the child included) and reaps the child.
    pub fn kill_tree(&mut self) {
        kill_marked(TREE_VAR, &self.token);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill_tree();
    }
}

/// The live processes whose environment holds `var=value` (zombies have none).
pub fn processes_with_env(var: &str, value: &str) -> Vec<i32> {
    let wanted = format!("{var}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == wanted.as_bytes()))
        })
        .collect()
}

/// SIGKILLs every process marked `var=value` until none is left (a process forked while
/// the others are killed is found on the next pass).
pub fn kill_marked(var: &str, value: &str) {
    for _ in 0..100 {
        let pids = processes_with_env(var, value);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("warning: processes marked {var}={value} still alive after SIGKILL");
}

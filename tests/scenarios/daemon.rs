//! `claude-monitor daemon` on the real kernel: exit reports for an outside SIGKILL, a real
//! crash and an OOM kill, log rotation at a small size, and a restart (SIGKILL of the
//! daemon) during which exits happen and are still found afterwards.
//!
//! The watched tree is a configured rule (`comm = "cm-agent"`, a copy of bash), so these
//! scenarios also cover configurable agent rules and the kernel's exec prefilter for them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use claude_monitor_tests::{
    Agent, MemCgroup, Spawned, TempDir, agent_binary, helper, mkfifo, privileged, release_fifo,
    wait_until,
};
use serde_json::Value;

/// A temporary data directory, config file and fake agent binary (the directory is
/// removed on drop, also when the test fails).
struct Setup {
    dir: PathBuf,
    config: PathBuf,
    data: PathBuf,
    agent_bin: PathBuf,
    _tmp: TempDir,
}

impl Setup {
    fn new(tag: &str, extra: &str) -> Setup {
        let tmp = TempDir::new(&format!("cm-daemon-{}-{tag}", std::process::id()));
        let dir = tmp.path().to_owned();
        let data = dir.join("data");
        let agent_bin = dir.join("cm-agent");
        claude_monitor_tests::copy_executable(Path::new("/bin/bash"), &agent_bin);
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{}"
[resources]
system_interval_secs = 0.5
session_interval_secs = 0.2
[api]
socket = "{}"
{extra}
[[rules]]
name = "test-agent"
comm = "cm-agent"
"#,
                data.display(),
                dir.join("api.sock").display()
            ),
        )
        .expect("config");
        Setup {
            dir,
            config,
            data,
            agent_bin,
            _tmp: tmp,
        }
    }

    /// Starts the fake agent running `script` (bash), with `$DIR` set. Its whole tree is
    /// killed when the returned guard is dropped.
    fn agent(&self, script: &str) -> Spawned {
        Spawned::spawn(
            Command::new(&self.agent_bin)
                .args(["-c", script])
                .env("DIR", &self.dir)
                .stdin(Stdio::null()),
        )
    }

    fn read_pid(&self, name: &str) -> u32 {
        let path = self.dir.join(name);
        wait_until(Duration::from_secs(20), &path.display().to_string(), || {
            std::fs::read_to_string(&path).is_ok_and(|s| s.ends_with('\n'))
        });
        std::fs::read_to_string(&path)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    fn wait_file(&self, name: &str) {
        let path = self.dir.join(name);
        wait_until(Duration::from_secs(30), &path.display().to_string(), || {
            path.exists()
        });
    }

    fn reports(&self) -> Vec<Value> {
        let mut v = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.data.join("reports")) else {
            return v;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).expect("report");
                let r: Value = serde_json::from_str(&text).expect("report JSON");
                let txt = p.with_extension("txt");
                assert!(txt.exists(), "{} has no text version", p.display());
                v.push(r);
            }
        }
        v
    }

    fn report_for(&self, pid: u32) -> Value {
        let reports = self.reports();
        reports
            .iter()
            .find(|r| r["process"]["pid"].as_u64() == Some(u64::from(pid)))
            .cloned()
            .unwrap_or_else(|| panic!("no report for pid {pid} among {reports:#?}"))
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(agent_binary())
            .args(args)
            .args(["--config", self.config.to_str().expect("utf-8")])
            .output()
            .expect("claude-monitor");
        assert!(
            out.status.success(),
            "claude-monitor {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The daemon's pin directory, private to this test process; on drop (also when the test
/// fails) its pinned programs, links and maps are removed, which detaches the programs.
struct PinDir {
    dir: PathBuf,
    config: PathBuf,
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let staging = self.dir.join("staging");
        if !self.dir.exists() {
            return;
        }
        let _ = Command::new(agent_binary())
            .args(["daemon", "--unpin", "--config"])
            .arg(&self.config)
            .stderr(Stdio::null())
            .status();
        // Without the agent (or if it failed): the same removal by hand, staging first.
        for dir in [&staging, &self.dir] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        if self.dir.exists() {
            eprintln!("warning: could not remove {}", self.dir.display());
        }
    }
}

fn u(v: u32) -> u64 {
    u64::from(v)
}

fn is_exit_of(pid: u32) -> impl Fn(&Value) -> bool {
    move |e| e["kind"] == "exit" && e["pid"].as_u64() == Some(u(pid))
}

/// An exit of a direct child of `parent` named `comm` (the daemon sees every session on the
/// host, other tests' fake agents included: a count must be of this test's own processes).
fn is_child_exit(parent: u32, comm: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["kind"] == "exit" && e["ppid"].as_u64() == Some(u(parent)) && e["comm"] == comm
}

/// Asks the fake agent to end (the `stop` file) and waits for it; kills its tree if it has
/// not ended in 10 s.
fn finish(mut agent: Spawned, dir: &Path) {
    let _ = std::fs::write(dir.join("stop"), b"");
    if agent.wait_timeout(Duration::from_secs(10)).is_none() {
        agent.kill_tree();
    }
}

const AGENT_SCRIPT: &str = r#"
sleep 300 & echo $! > "$DIR/sleep.pid"
python3 -c 'import ctypes; ctypes.string_at(0)'
echo $! > "$DIR/crashed"
while [ ! -e "$DIR/stop" ]; do sleep 0.05; done
"#;

#[test]
fn daemon_reports_outside_kill_crash_and_oom() {
    if !privileged("daemon_reports_outside_kill_crash_and_oom") {
        return;
    }
    let s = Setup::new("reports", "[kernel]\npin = false\n");
    let mut daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["scope"]["mode"], "claude");
    assert_eq!(daemon.start["pin"], Value::Null);
    let mut seen = Vec::new();

    // Started after the daemon: found by the kernel's exec prefilter (rule comm).
    let agent = s.agent(AGENT_SCRIPT);
    let agent_pid = agent.id();
    let sleep_pid = s.read_pid("sleep.pid");
    // A real crash: python3 dereferences NULL, the SIGSEGV comes from the kernel.
    let crash = daemon.wait_for(
        &mut seen,
        Duration::from_secs(30),
        is_child_exit(agent_pid, "python3"),
    );
    assert_eq!(crash["cause"], "crashed", "{crash}");
    assert_eq!(crash["session"]["agent"], "test-agent", "{crash}");
    assert_eq!(crash["session"]["root_pid"].as_u64(), Some(u(agent_pid)));

    // An outside SIGKILL of the agent's child.
    // SAFETY: plain kill(2).
    unsafe { libc::kill(sleep_pid as i32, libc::SIGKILL) };
    let killed = daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(sleep_pid));
    assert_eq!(killed["cause"], "killed", "{killed}");
    assert_eq!(killed["killed_by"]["same_session"], false);

    // An OOM kill outside every session: reported because the daemon watches every OOM kill.
    // The shell moves itself into the cgroup and execs the hog: the hog's pid is the shell's.
    let cg = MemCgroup::create(&format!("cm-daemon-oom-{}", std::process::id()), 64 << 20);
    let memhog = helper("memhog", env!("CARGO_BIN_EXE_memhog"));
    let mut hog = Spawned::spawn(Command::new("sh").arg("-c").arg(format!(
        "echo $$ > {}/cgroup.procs; exec {} 300",
        cg.path.display(),
        memhog.display()
    )));
    let oom_pid = hog.id();
    assert!(!hog.wait().success());
    let oom_exit = daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(oom_pid));
    assert_eq!(oom_exit["comm"], "memhog", "{oom_exit}");
    assert_eq!(oom_exit["cause"], "oom_killed", "{oom_exit}");

    // The session's resource samples (every 0.2 s while it lives): wait for the first one
    // that names it, while it still lives.
    let samples = s.data.join("logs/resources-sessions.jsonl");
    let root = format!(r#""root_pid":{agent_pid}"#);
    wait_until(
        Duration::from_secs(30),
        &format!("a sample of session {agent_pid} in {}", samples.display()),
        || std::fs::read_to_string(&samples).is_ok_and(|t| t.contains(&root)),
    );

    // The session root's own exit is reported too.
    finish(agent, &s.dir);
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(agent_pid));
    let events = daemon.stop(seen);
    assert!(events.iter().all(|e| e["kind"] != "lost"), "records lost");

    let r = s.report_for(sleep_pid);
    assert_eq!(r["reason"], "killed_from_outside", "{r:#}");
    assert_eq!(r["cause"], "killed", "{r:#}");
    assert!(
        r["summary"].as_str().is_some_and(|t| t.contains("SIGKILL")),
        "{r:#}"
    );
    let r = s.report_for(crash["pid"].as_u64().expect("pid") as u32);
    assert_eq!(r["reason"], "crashed", "{r:#}");
    // The command line remembered from the exec (/proc has nothing left after the exit).
    assert_eq!(r["process"]["cmdline"][1], "-c", "{r:#}");
    assert_eq!(
        r["process"]["cmdline"][2], "import ctypes; ctypes.string_at(0)",
        "{r:#}"
    );
    assert!(
        r["summary"].as_str().is_some_and(|t| t.contains("SIGSEGV")),
        "{r:#}"
    );
    let r = s.report_for(oom_pid);
    assert_eq!(r["reason"], "oom_kill", "{r:#}");
    let limits: Vec<u64> = r["memcg"]["levels"]
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["limit_bytes"].as_u64()).collect())
        .unwrap_or_default();
    assert!(limits.contains(&(64 << 20)), "memcg limit not in {r:#}");
    let r = s.report_for(agent_pid);
    assert_eq!(r["reason"], "session_ended", "{r:#}");

    // Logs: the event stream starts with agent_start; resource samples and an OOM alert.
    let log = std::fs::read_to_string(s.data.join("logs/events.jsonl")).expect("events log");
    let first: Value = serde_json::from_str(log.lines().next().expect("line")).expect("json");
    assert_eq!(first["kind"], "agent_start");
    assert!(
        log.lines()
            .any(|l| l.contains(r#""kind":"alert""#) && l.contains("oom_kill"))
    );
    let sessions = std::fs::read_to_string(&samples).expect("session samples");
    assert!(sessions.contains(&root), "{sessions}");
    assert!(s.data.join("logs/resources-system.jsonl").exists());
    assert!(s.data.join("logs/alerts.jsonl").exists());
    // Private whatever the umask (this test runs under 022): every user's command lines are
    // in there.
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    };
    for dir in ["data", "data/logs", "data/reports"] {
        assert_eq!(mode(&s.dir.join(dir)), 0o700, "{dir}");
    }
    for entry in ["logs", "reports"]
        .iter()
        .flat_map(|d| std::fs::read_dir(s.data.join(d)).expect("list"))
    {
        let path = entry.expect("entry").path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }

    // The CLI reads them back.
    let list = s.cli(&["reports"]);
    assert!(list.contains("oom"), "{list}");
    let last = s.cli(&["report", "--last"]);
    assert!(!last.is_empty());
    // Of this test's session (the daemon sees every session on the host): the crash only.
    let session = crash["session"]["id"].as_str().expect("session id");
    let crashed = s.cli(&[
        "reports",
        "--session",
        session,
        "--cause",
        "crashed",
        "--json",
    ]);
    assert_eq!(crashed.lines().count(), 1, "{crashed}");
}

#[test]
fn daemon_rotates_its_logs() {
    if !privileged("daemon_rotates_its_logs") {
        return;
    }
    let s = Setup::new(
        "rotate",
        "[kernel]\npin = false\n[logs]\nmax_bytes = 4096\nkeep = 2\n",
    );
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(
        r#"for i in $(seq 150); do /bin/true; done; touch "$DIR/done"
        while [ ! -e "$DIR/stop" ]; do sleep 0.05; done"#,
    );
    let agent_pid = agent.id();
    s.wait_file("done");
    let mut seen = Vec::new();
    let own_true = is_child_exit(agent_pid, "true");
    let count = |events: &[Value]| events.iter().filter(|e| own_true(e)).count();
    daemon.wait_until(&mut seen, Duration::from_secs(30), |events| {
        count(events) >= 150
    });
    finish(agent, &s.dir);
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(agent_pid));
    let events = daemon.stop(seen);
    assert_eq!(count(&events), 150);
    let logs = s.data.join("logs");
    let mut total = 0;
    for name in ["events.jsonl", "events.jsonl.1", "events.jsonl.2"] {
        let p = logs.join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.len() <= 4096, "{name} has {} bytes", text.len());
        for line in text.lines() {
            serde_json::from_str::<Value>(line).expect("whole JSON lines");
            total += 1;
        }
    }
    assert!(!logs.join("events.jsonl.3").exists(), "keep = 2 kept more");
    assert!(total > 0);
}

#[test]
fn daemon_restart_loses_nothing() {
    if !privileged("daemon_restart_loses_nothing") {
        return;
    }
    let pin_dir = format!("/sys/fs/bpf/cm-test-{}", std::process::id());
    let s = Setup::new(
        "restart",
        &format!("[kernel]\npin = true\npin_dir = \"{pin_dir}\"\n"),
    );
    // Declared before the daemons: dropped after them, so nothing stays pinned even when
    // an assertion fails.
    let _pins = PinDir {
        dir: PathBuf::from(&pin_dir),
        config: s.config.clone(),
    };
    let mut daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["pin"]["state"], "created", "{}", daemon.start);
    let agent = s.agent(
        r#"sleep 300 & echo $! > "$DIR/sleep.pid"
        while [ ! -e "$DIR/go" ]; do sleep 0.02; done
        for i in $(seq 20); do /bin/true; done
        sh -c 'exit 7'; touch "$DIR/done"
        while [ ! -e "$DIR/stop" ]; do sleep 0.05; done"#,
    );
    let agent_pid = agent.id();
    let sleep_pid = s.read_pid("sleep.pid");
    let mut seen = Vec::new();
    // The daemon has seen the session's tree (the sleep's exec) before it is killed.
    daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exec" && e["pid"].as_u64() == Some(u(sleep_pid))
    });
    let before = daemon.kill(seen);
    assert!(before.iter().all(|e| e["kind"] != "agent_stop"));

    // While no daemon runs: an outside SIGKILL and 21 exits in the session. Their records
    // are in the pinned ring buffer once `done` exists (the exit program runs in the exit).
    // SAFETY: plain kill(2).
    unsafe { libc::kill(sleep_pid as i32, libc::SIGKILL) };
    std::fs::write(s.dir.join("go"), b"").expect("go");
    s.wait_file("done");

    let mut daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["pin"]["state"], "reused", "{}", daemon.start);
    let mut seen = Vec::new();
    let killed = daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(sleep_pid));
    assert_eq!(killed["cause"], "killed", "{killed}");
    // Only this test's `true`s (children of its fake agent): the daemon sees every session
    // on the host, and other tests' fake agents run `true` too.
    let own_true = is_child_exit(agent_pid, "true");
    let count = |events: &[Value]| events.iter().filter(|e| own_true(e)).count();
    daemon.wait_until(&mut seen, Duration::from_secs(30), |events| {
        count(events) >= 20
    });
    daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        is_child_exit(agent_pid, "sh")(e) && e["exit_code"] == 7
    });
    finish(agent, &s.dir);
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(agent_pid));
    let events = daemon.stop(seen);
    assert_eq!(count(&events), 20, "exits while the daemon was down");
    for e in events.iter().filter(|e| own_true(e)) {
        assert_eq!(e["session"]["root_pid"].as_u64(), Some(u(agent_pid)), "{e}");
    }
    assert!(events.iter().all(|e| e["kind"] != "lost"), "records lost");
    let r = s.report_for(sleep_pid);
    assert_eq!(r["cause"], "killed", "{r:#}");
    // The log holds both runs, each starting with agent_start.
    let log = std::fs::read_to_string(s.data.join("logs/events.jsonl")).expect("log");
    assert_eq!(log.matches(r#""kind":"agent_start""#).count(), 2);

    // --unpin removes the pinned objects.
    s.cli(&["daemon", "--unpin"]);
    assert!(!Path::new(&pin_dir).exists(), "{pin_dir} still exists");
}

/// Whether process `pid` has exited (a zombie or gone): its exit record is written then.
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// The ring buffer overflows while no daemon runs (pinned programs, a 16 KiB ring, a burst
/// of short processes): the next start says so first, as `lost` before the backlog, whose
/// exit reports are then incomplete; the signal aggregate of that time is reported once.
/// A clean start after that reports nothing again: no `lost`, no old aggregate.
#[test]
fn daemon_tells_the_losses_of_its_downtime_once() {
    if !privileged("daemon_tells_the_losses_of_its_downtime_once") {
        return;
    }
    const BURST: u64 = 200;
    const FLOOD: u64 = 100;
    let pin_dir = format!("/sys/fs/bpf/cm-test-{}-lost", std::process::id());
    let s = Setup::new(
        "lost",
        &format!("[kernel]\npin = true\npin_dir = \"{pin_dir}\"\nring_buffer_kb = 16\n"),
    );
    let _pins = PinDir {
        dir: PathBuf::from(&pin_dir),
        config: s.config.clone(),
    };
    let go = s.dir.join("go");
    mkfifo(&go);
    let mut daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["pin"]["state"], "created", "{}", daemon.start);
    assert_eq!(daemon.start["ring_buffer_bytes"], 16 * 1024);
    // While the daemon is down the agent starts nothing but the burst: it waits on a FIFO.
    // It lives on (the flood's target: a process alive when the daemon starts again, so
    // its signals are attributed to its session).
    let agent = s.agent(&format!(
        r#"sleep 300 & echo $! > "$DIR/sleep.pid"
        read -r _ < "$DIR/go"
        for ((i = 0; i < {BURST}; i++)); do /bin/true; done
        : > "$DIR/done"
        read -r _ < "$DIR/go""#
    ));
    let agent_pid = agent.id();
    let sleep_pid = s.read_pid("sleep.pid");
    let mut seen = Vec::new();
    daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exec" && e["pid"].as_u64() == Some(u(sleep_pid))
    });
    // A clean stop: the programs stay pinned and keep recording.
    daemon.stop(seen);

    // While no daemon runs: a flood of SIGCONT to the agent (aggregated in the kernel), an
    // outside SIGKILL, then the burst that overflows the ring.
    for _ in 0..FLOOD {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(agent_pid as i32, libc::SIGCONT) };
    }
    // SAFETY: plain kill(2).
    unsafe { libc::kill(sleep_pid as i32, libc::SIGKILL) };
    wait_until(Duration::from_secs(20), "the sleep's exit", || {
        has_exited(sleep_pid)
    });
    release_fifo(&go);
    s.wait_file("done");

    let mut daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["pin"]["state"], "reused", "{}", daemon.start);
    let mut seen = Vec::new();
    daemon.wait_until(&mut seen, Duration::from_secs(30), |events| {
        !events.is_empty()
    });
    let first = seen[0].clone();
    assert_eq!(
        first["kind"], "lost",
        "the losses come before the backlog: {first}"
    );
    assert_eq!(first["reason"], "ring_buffer_full", "{first}");
    let killed = daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(sleep_pid));
    assert_eq!(killed["cause"], "killed", "{killed}");
    let me = u64::from(std::process::id());
    let is_flood = move |e: &Value| {
        e["kind"] == "signal"
            && e["pid"].as_u64() == Some(u(agent_pid))
            && e["signal_name"] == "SIGCONT"
            && e["sender"]["pid"].as_u64() == Some(me)
    };
    let flood_count = |events: &[Value]| -> u64 {
        events
            .iter()
            .filter(|e| is_flood(e))
            .map(|e| e["count"].as_u64().expect("count"))
            .sum()
    };
    // The aggregate goes out at the daemon's first counter tick.
    daemon.wait_until(&mut seen, Duration::from_secs(30), |events| {
        flood_count(events) >= FLOOD
    });
    wait_until(Duration::from_secs(30), "the sleep's report", || {
        s.reports()
            .iter()
            .any(|r| r["process"]["pid"].as_u64() == Some(u(sleep_pid)))
    });
    let events = daemon.stop(seen);
    assert_eq!(
        flood_count(&events),
        FLOOD,
        "every signal in exactly one record"
    );

    // Every record of the burst's processes is either here or counted as lost.
    let ours = |e: &Value| e["ppid"].as_u64() == Some(u(agent_pid));
    let received = events
        .iter()
        .filter(|e| {
            ours(e)
                && ((e["kind"] == "fork" && e["pid"].as_u64() != Some(u(sleep_pid)))
                    || (e["kind"] == "exec" && e["filename"] == "/bin/true")
                    || (e["kind"] == "exit" && e["comm"] == "true"))
        })
        .count() as u64;
    let missing = 3 * BURST - received;
    let lost: Vec<&Value> = events.iter().filter(|e| e["kind"] == "lost").collect();
    let told: u64 = lost
        .iter()
        .filter(|e| e["reason"] == "ring_buffer_full")
        .map(|e| e["count"].as_u64().expect("count"))
        .sum();
    assert!(
        missing > 0,
        "the burst overflowed the ring: {received} records received"
    );
    // Other sessions on the host may have lost records in the same time: at least ours.
    assert!(
        first["count"].as_u64().expect("count") >= missing,
        "{first} tells fewer than the {missing} records of the burst that are missing"
    );
    assert_eq!(
        events.last().expect("agent_stop")["lost"].as_u64(),
        Some(told)
    );
    let r = s.report_for(sleep_pid);
    assert_eq!(r["cause"], "killed", "{r:#}");
    assert_eq!(
        r["complete"], false,
        "a report of the backlog after a loss: {r:#}"
    );
    assert!(
        r["lost_nearby"].as_u64().expect("lost_nearby") >= missing,
        "{r:#}"
    );
    let text = std::fs::read_to_string(
        s.data
            .join("reports")
            .join(format!("{}.txt", r["id"].as_str().expect("id"))),
    )
    .expect("text report");
    assert!(text.contains("may be incomplete"), "{text}");

    // A clean restart: nothing new was lost, no aggregate grew.
    let daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["pin"]["state"], "reused", "{}", daemon.start);
    // Said once the losses were checked and the backlog read; the stop checks again.
    daemon.wait_stderr(Duration::from_secs(30), "daemon started", 1);
    let events = daemon.stop(Vec::new());
    let again: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "lost" || is_flood(e))
        .collect();
    assert!(
        again.is_empty(),
        "reported again after a clean restart: {again:?}"
    );
    assert_eq!(events.last().expect("agent_stop")["lost"], 0);
    drop(agent);
}

/// A data directory that cannot be created (its parent is a file): the daemon says so on
/// stderr and keeps running; its events still stream.
#[test]
fn daemon_keeps_running_without_a_writable_data_dir() {
    if !privileged("daemon_keeps_running_without_a_writable_data_dir") {
        return;
    }
    let s = Setup::new("nodir", "[kernel]\npin = false\n");
    let blocker = s.dir.join("not-a-dir");
    std::fs::write(&blocker, b"a file").expect("file");
    let mut daemon = Agent::daemon(
        &s.config,
        &[("CLAUDE_MONITOR_DATA_DIR", blocker.join("data").as_os_str())],
    );
    let agent = s.agent(r#"sh -c 'exit 5'; while [ ! -e "$DIR/stop" ]; do sleep 0.05; done"#);
    let agent_pid = agent.id();
    let mut seen = Vec::new();
    let e = daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        is_child_exit(agent_pid, "sh")(e) && e["exit_code"] == 5
    });
    assert_eq!(e["session"]["agent"], "test-agent", "{e}");
    finish(agent, &s.dir);
    let (events, stderr) = daemon.stop_with_stderr(seen);
    assert!(events.iter().all(|e| e["kind"] != "lost"));
    assert!(
        stderr.contains("cannot create") && stderr.contains("keeps running"),
        "{stderr}"
    );
    assert!(!blocker.join("data").exists());
}

/// A configuration error names the key and the file, and the daemon exits with status 2
/// before loading anything.
#[test]
fn daemon_refuses_a_bad_configuration() {
    let dir = TempDir::new(&format!("cm-daemon-badcfg-{}", std::process::id()));
    let config = dir.path().join("config.toml");
    // `claude-monitor CMD --config FILE` with FILE holding `text`: fails with status 2,
    // and says why on stderr.
    let refused = |cmd: &str, text: &str| {
        std::fs::write(&config, text).expect("config");
        let out = Command::new(agent_binary())
            .args([cmd, "--config", config.to_str().expect("utf-8")])
            .output()
            .expect("claude-monitor");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        stderr
    };
    let stderr = refused("daemon", "[alerts]\nmemory_percent = 150\n");
    assert!(stderr.contains("alerts.memory_percent"), "{stderr}");
    assert!(stderr.contains(config.to_str().expect("utf-8")), "{stderr}");
    let stderr = refused("config", "[alerts]\nmemry_percent = 50\n");
    assert!(stderr.contains("memry_percent"), "{stderr}");

    // A valid file that others could change: refused before anything is loaded.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(&config, "").expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let stderr = refused("daemon", "[alerts]\nmemory_percent = 50\n");
    assert!(
        stderr.contains("refusing to read the configuration") && stderr.contains("mode 0666"),
        "{stderr}"
    );
}

/// SIGHUP re-reads the configuration: a bad file is refused (the daemon runs on with what it
/// had), a good one is taken (its redaction patterns apply to the next exec at once), and
/// what only a restart can change is said.
#[test]
fn daemon_reloads_its_configuration_on_sighup() {
    if !privileged("daemon_reloads_its_configuration_on_sighup") {
        return;
    }
    let s = Setup::new("hup", "[kernel]\npin = false\n");
    let daemon = Agent::daemon(&s.config, &[]);
    // Each SIGHUP is sent once the previous one was answered on stderr (two signals sent
    // before the daemon reads them would be taken as one).
    let hup = |d: &Agent| {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    };
    std::fs::write(&s.config, "[alerts]\nmemory_percent = 500\n").expect("config");
    hup(&daemon);
    daemon.wait_stderr(Duration::from_secs(30), "configuration not reloaded", 1);
    std::fs::write(
        &s.config,
        format!(
            "data_dir = \"{}\"\n[kernel]\npin = false\nring_buffer_kb = 8192\n[alerts]\nmemory_percent = 99\n[redact]\npatterns = [\"cm-corp-[0-9]+\"]\n",
            s.data.display()
        ),
    )
    .expect("config");
    hup(&daemon);
    daemon.wait_stderr(Duration::from_secs(30), "configuration reloaded", 1);
    // The reloaded pattern, with the built-in rules, on an exec in a session.
    let marker = format!("cm-marker-{}", std::process::id());
    let mut daemon = daemon;
    let agent = s.agent(&format!(
        "/bin/true {marker} cm-corp-12345 --password=hunter2\n\
         while [ ! -e \"$DIR/stop\" ]; do sleep 0.05; done"
    ));
    let mut seen = Vec::new();
    let exec = daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exec" && e["argv"][1] == marker.as_str()
    });
    assert_eq!(
        exec["argv"],
        serde_json::json!(["/bin/true", marker, "[REDACTED]", "--password=[REDACTED]"]),
        "{exec}"
    );
    finish(agent, &s.dir);
    let (events, stderr) = daemon.stop_with_stderr(seen);
    let all = serde_json::to_string(&events).expect("json");
    assert!(
        !all.contains("cm-corp-12345") && !all.contains("hunter2"),
        "a secret in the stream"
    );
    assert!(
        stderr.contains("configuration not reloaded") && stderr.contains("alerts.memory_percent"),
        "{stderr}"
    );
    assert!(
        stderr.contains("configuration reloaded; changes to data_dir, [kernel]"),
        "{stderr}"
    );
}

/// One daemon per pin directory: a second one on the same directory is refused before it
/// touches the pinned objects, and so is `--unpin` while the first runs (two daemons would
/// share one ring buffer, each seeing some of the events, and replace each other's programs).
#[test]
fn a_second_daemon_on_the_same_pin_directory_is_refused() {
    if !privileged("a_second_daemon_on_the_same_pin_directory_is_refused") {
        return;
    }
    let pin_dir = format!("/sys/fs/bpf/cm-test-{}-busy", std::process::id());
    let s = Setup::new(
        "busy",
        &format!("[kernel]\npin = true\npin_dir = \"{pin_dir}\"\n"),
    );
    let _pins = PinDir {
        dir: PathBuf::from(&pin_dir),
        config: s.config.clone(),
    };
    let daemon = Agent::daemon(&s.config, &[]);
    // Its own data directory: the same one would be refused first for that.
    let other_data = s.dir.join("other-data");
    let other_data = other_data.to_str().expect("utf-8");
    for args in [
        &["daemon", "--duration", "30", "--data-dir", other_data][..],
        &["daemon", "--unpin"][..],
    ] {
        let out = Command::new(agent_binary())
            .args(args)
            .args(["--config", s.config.to_str().expect("utf-8")])
            .stdin(Stdio::null())
            .output()
            .expect("claude-monitor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "another claude-monitor holds the pin directory {pin_dir}"
            )),
            "{args:?}: {stderr}"
        );
    }
    // The first one was not disturbed: its programs are still pinned and it stops cleanly.
    assert!(PathBuf::from(&pin_dir).join("EVENTS").exists());
    let events = daemon.stop(Vec::new());
    assert!(
        events.iter().any(|e| e["kind"] == "agent_stop"),
        "{events:?}"
    );
}

/// The daemon as the systemd unit runs it, as far as bpffs is concerned: in a mount
/// namespace where /sys/fs/bpf is read-only and only the pin directory is writable, a bind
/// mount of its own (what `ReadWritePaths=` does). The wrapper checks that bpffs outside the
/// pin directory is indeed read-only, then execs the daemon.
fn sandboxed_daemon(config: &Path, pin_dir: &Path) -> Agent {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            r#"mount --bind "$1" "$1" && mount -o remount,bind,ro /sys/fs/bpf || exit 98
            if mkdir "$1-probe" 2>/dev/null; then rmdir "$1-probe"; echo "bpffs writable" >&2; exit 99; fi
            exec "$0" daemon --config "$2" --stdout"#,
        )
        .arg(agent_binary())
        .arg(pin_dir)
        .arg(config);
    Agent::spawn(cmd)
}

/// The `fingerprint-*` name in `dir` (what the pinned objects were built from).
fn fingerprint_in(dir: &Path) -> String {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("pin directory")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("fingerprint-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

/// The unit makes only the pin directory writable (not the rest of bpffs): an upgrade (a
/// new fingerprint) stages in `<pin dir>/staging` and renames within that one mount,
/// clearing what a crashed upgrade left there first; a restart reuses the pins; after an
/// unpin (or a reboot, which leaves no pin directory) `prepare-pin-dir`, the unit's
/// `ExecStartPre=`, creates it (mode 0700 under the unit's umask) and the daemon starts.
#[test]
fn daemon_upgrades_with_only_its_pin_directory_writable() {
    if !privileged("daemon_upgrades_with_only_its_pin_directory_writable") {
        return;
    }
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/cm-test-{}-rw", std::process::id()));
    let kernel = |ring_kb: u32| {
        format!(
            "[kernel]\npin = true\npin_dir = \"{}\"\nring_buffer_kb = {ring_kb}\n",
            pin_dir.display()
        )
    };
    let s = Setup::new("rw", &kernel(4096));
    let _pins = PinDir {
        dir: pin_dir.clone(),
        config: s.config.clone(),
    };
    let legacy = PathBuf::from(format!("{}-staging", pin_dir.display()));
    let stop = |daemon: Agent| {
        let events = daemon.stop(Vec::new());
        assert!(events.iter().any(|e| e["kind"] == "agent_stop"));
    };

    // Pinned by an earlier daemon, outside any sandbox.
    let daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["pin"]["state"], "created", "{}", daemon.start);
    stop(daemon);
    let before = fingerprint_in(&pin_dir);
    // An upgrade that crashed left its staging directory.
    std::fs::create_dir(pin_dir.join("staging")).expect("leftover staging");

    // Another configuration (a new fingerprint), sandboxed: staged and moved in place.
    let config = std::fs::read_to_string(&s.config).expect("config");
    std::fs::write(&s.config, config.replace(&kernel(4096), &kernel(8192))).expect("config");
    let daemon = sandboxed_daemon(&s.config, &pin_dir);
    assert_eq!(daemon.start["pin"]["state"], "replaced", "{}", daemon.start);
    assert_eq!(
        daemon.start["ring_buffer_bytes"],
        8192 * 1024,
        "{}",
        daemon.start
    );
    assert!(!pin_dir.join("staging").exists(), "staging left behind");
    assert!(!legacy.exists(), "{} created", legacy.display());
    assert_ne!(fingerprint_in(&pin_dir), before);
    assert!(pin_dir.join("EVENTS").exists());
    stop(daemon);

    // `systemctl restart`: the same fingerprint, reused.
    let daemon = sandboxed_daemon(&s.config, &pin_dir);
    assert_eq!(daemon.start["pin"]["state"], "reused", "{}", daemon.start);
    stop(daemon);

    // As after a reboot: no pin directory. The unit's ExecStartPre creates it.
    s.cli(&["daemon", "--unpin"]);
    assert!(!pin_dir.exists(), "{} still exists", pin_dir.display());
    let out = Command::new("sh")
        .args(["-c", r#"umask 077 && exec "$0" prepare-pin-dir "$1""#])
        .arg(agent_binary())
        .arg(&pin_dir)
        .output()
        .expect("prepare-pin-dir");
    assert!(
        out.status.success(),
        "prepare-pin-dir: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&pin_dir)
        .expect("pin directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o700, "{mode:o}");
    let daemon = sandboxed_daemon(&s.config, &pin_dir);
    assert_eq!(daemon.start["pin"]["state"], "created", "{}", daemon.start);
    stop(daemon);

    // Only on a bpffs: a directory elsewhere is refused, and not created.
    let elsewhere = s.dir.join("pins");
    let out = Command::new(agent_binary())
        .arg("prepare-pin-dir")
        .arg(&elsewhere)
        .output()
        .expect("prepare-pin-dir");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not on a BPF filesystem"), "{stderr}");
    assert!(!elsewhere.exists());
}

/// A report flood by an ordinary user's trick (`cp /bin/false ~/claude; while :; do
/// ~/claude; done`: every run is a session root that exits non-zero): 5,000 runs. The
/// reports stay within `max_count`, the uid's budget counts the rest instead of writing
/// them, the writes (two fsyncs each) happen off the event loop, and no record is lost.
#[test]
fn a_report_flood_stays_bounded() {
    if !privileged("a_report_flood_stays_bounded") {
        return;
    }
    let s = Setup::new(
        "flood",
        "[kernel]\npin = false\n[reports]\nmax_count = 10\nper_uid_per_minute = 100\n",
    );
    let fake = s.dir.join("claude");
    claude_monitor_tests::copy_executable(Path::new("/bin/false"), &fake);
    let mut daemon = Agent::daemon(&s.config, &[]);
    let runs = 5000;
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {runs} ]; do \"$0\"; i=$((i+1)); done; true"
        ))
        .arg(&fake)
        .status()
        .expect("sh");
    assert!(status.success());
    let mut seen = Vec::new();
    // Every run's exit reached the daemon (the fact the test needs), however long it took.
    daemon.wait_until(&mut seen, Duration::from_secs(120), |events| {
        events
            .iter()
            .filter(|e| e["kind"] == "exit" && e["comm"] == "claude")
            .count()
            >= runs
    });
    let (events, stderr) = daemon.stop_with_stderr(seen);
    assert!(events.iter().all(|e| e["kind"] != "lost"), "records lost");
    let reports = std::fs::read_dir(s.data.join("reports"))
        .expect("reports")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert_eq!(reports, 10, "the directory is bounded");
    assert!(
        stderr.contains("exit reports over a user's budget"),
        "the suppression is said: {stderr}"
    );
    let suppressed: u64 = stderr
        .split("suppressed=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no suppressed count: {stderr}"));
    assert!(
        suppressed >= runs as u64 - 200,
        "{suppressed} suppressed of {runs}: {stderr}"
    );
}

/// journald listening on its native socket: the one already running, or one this test
/// starts (the machine may run no systemd), stopped when the guard drops.
struct Journald {
    _started: Option<Spawned>,
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

fn journald_listening() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(b"", JOURNAL_SOCKET))
        .is_ok()
}

impl Journald {
    fn ensure() -> Journald {
        if journald_listening() {
            return Journald { _started: None };
        }
        let binary = Path::new("/lib/systemd/systemd-journald");
        assert!(
            binary.exists(),
            "{} is missing: install Debian's systemd package",
            binary.display()
        );
        std::fs::create_dir_all("/run/systemd/journal").expect("mkdir /run/systemd/journal");
        let started = Spawned::spawn(
            Command::new(binary)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_until(
            Duration::from_secs(30),
            "journald to listen",
            journald_listening,
        );
        Journald {
            _started: Some(started),
        }
    }
}

/// `journalctl -o json` entries matching `matches` (`FIELD=value`), oldest first.
fn journal_entries(matches: &[String]) -> Vec<Value> {
    let out = Command::new("journalctl")
        .args(["-o", "json", "--no-pager"])
        .args(matches)
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `[export.journald]`: a death worth a report is also one structured journal entry, found
/// by its kind's MESSAGE_ID (docs/events.md, "journald") and its fields.
#[test]
fn daemon_writes_each_report_to_the_journal() {
    if !privileged("daemon_writes_each_report_to_the_journal") {
        return;
    }
    let _journald = Journald::ensure();
    let s = Setup::new(
        "journal",
        "[kernel]\npin = false\n[export.journald]\nenabled = true\n",
    );
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(
        r#"sleep 300 & echo $! > "$DIR/sleep.pid"
        while [ ! -e "$DIR/stop" ]; do sleep 0.05; done"#,
    );
    let sleep_pid = s.read_pid("sleep.pid");
    // SAFETY: plain kill(2).
    unsafe { libc::kill(sleep_pid as i32, libc::SIGKILL) };
    let mut seen = Vec::new();
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(sleep_pid));
    // This report (the journal keeps other runs' entries, and pids are reused), under
    // killed_from_outside's MESSAGE_ID.
    let mut report = Value::Null;
    wait_until(Duration::from_secs(30), "the report", || {
        report = s
            .reports()
            .into_iter()
            .find(|r| r["process"]["pid"].as_u64() == Some(u(sleep_pid)))
            .unwrap_or(Value::Null);
        !report.is_null()
    });
    let report_id = report["id"].as_str().expect("report id").to_owned();
    let matches = [
        "MESSAGE_ID=fc5a87282f7d457db8458f8550cec95c".to_owned(),
        format!("CLAUDE_MONITOR_REPORT_ID={report_id}"),
    ];
    let mut entries = Vec::new();
    wait_until(
        Duration::from_secs(30),
        "the report's journal entry",
        || {
            entries = journal_entries(&matches);
            !entries.is_empty()
        },
    );
    finish(agent, &s.dir);
    daemon.stop(seen);
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let e = &entries[0];
    assert_eq!(e["CLAUDE_MONITOR_PID"], sleep_pid.to_string(), "{e}");
    assert_eq!(e["MESSAGE"], report["summary"], "{e}");
    assert_eq!(e["PRIORITY"], "4", "{e}");
    assert_eq!(e["SYSLOG_IDENTIFIER"], "claude-monitor", "{e}");
    assert_eq!(e["CLAUDE_MONITOR_REPORT_ID"], report["id"], "{e}");
    assert_eq!(e["CLAUDE_MONITOR_CAUSE"], "killed", "{e}");
    assert_eq!(e["CLAUDE_MONITOR_REASON"], "killed_from_outside", "{e}");
    assert_eq!(e["CLAUDE_MONITOR_SIGNAL"], "SIGKILL", "{e}");
    assert_eq!(e["CLAUDE_MONITOR_COMM"], "sleep", "{e}");
    assert_eq!(e["CLAUDE_MONITOR_AGENT"], "test-agent", "{e}");
}

/// One daemon per data directory even without pinning: a second one on it is refused before
/// it loads anything (it would write every event again, with the same `seq`).
#[test]
fn a_second_daemon_on_the_same_data_directory_is_refused() {
    if !privileged("a_second_daemon_on_the_same_data_directory_is_refused") {
        return;
    }
    let s = Setup::new("datalock", "[kernel]\npin = false\n");
    let daemon = Agent::daemon(&s.config, &[]);
    let out = Command::new(agent_binary())
        .args(["daemon", "--duration", "30", "--config"])
        .arg(&s.config)
        .stdin(Stdio::null())
        .output()
        .expect("claude-monitor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another claude-monitor daemon uses the data directory {}",
            s.data.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("daemon started"), "{stderr}");
    let events = daemon.stop(Vec::new());
    assert!(
        events.iter().any(|e| e["kind"] == "agent_stop"),
        "{events:?}"
    );
}

/// The OTLP receiver of `tests/otlp/receiver.py` (PyPI's `opentelemetry-proto` decodes),
/// started on a port of its own; killed on drop.
struct OtlpReceiver {
    _child: Spawned,
    port: u16,
    out: PathBuf,
    requests: PathBuf,
}

impl OtlpReceiver {
    /// `None` (with a message) when `cargo xtask test` could not install the decoder,
    /// outside CI; under `CI=true` its absence fails.
    fn start(dir: &Path, busy: u32) -> Option<OtlpReceiver> {
        let Some(pythonpath) = std::env::var_os("CLAUDE_MONITOR_OTLP_PYTHONPATH") else {
            assert!(
                !claude_monitor_tests::in_ci(),
                "CLAUDE_MONITOR_OTLP_PYTHONPATH is not set: run the tests with `cargo xtask test`"
            );
            eprintln!("skipping: no opentelemetry-proto (run with `cargo xtask test`)");
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp/receiver.py");
        let port_file = dir.join("otlp.port");
        let out = dir.join("otlp-records.jsonl");
        let requests = dir.join("otlp-requests.jsonl");
        let child = Spawned::spawn(
            Command::new("python3")
                .arg(&script)
                .arg("--port-file")
                .arg(&port_file)
                .arg("--out")
                .arg(&out)
                .arg("--requests")
                .arg(&requests)
                .args(["--busy", &busy.to_string(), "--retry-after", "1"])
                .env("PYTHONPATH", pythonpath)
                .stdin(Stdio::null()),
        );
        wait_until(
            Duration::from_secs(30),
            "the OTLP receiver to listen",
            || port_file.exists(),
        );
        let port = std::fs::read_to_string(&port_file)
            .expect("port file")
            .trim()
            .parse()
            .expect("port");
        Some(OtlpReceiver {
            _child: child,
            port,
            out,
            requests,
        })
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("receiver JSON"))
            .collect()
    }

    fn records(&self) -> Vec<Value> {
        Self::lines(&self.out)
    }
}

/// `[export.otlp]` against a real OTLP/HTTP receiver that decodes with the OpenTelemetry
/// project's own definitions and answers its first request 503 with `Retry-After: 1`:
/// every event the daemon wrote arrives exactly once (the refused request's too), each
/// death with the process conventions' attributes and the event itself as the body.
#[test]
fn daemon_exports_every_event_as_otlp_logs() {
    if !privileged("daemon_exports_every_event_as_otlp_logs") {
        return;
    }
    let tmp = TempDir::new(&format!("cm-daemon-{}-otlp-rx", std::process::id()));
    let Some(rx) = OtlpReceiver::start(tmp.path(), 1) else {
        return;
    };
    let s = Setup::new(
        "otlp",
        &format!(
            "[kernel]\npin = false\n[export.otlp]\nendpoint = \"http://127.0.0.1:{}\"\nbatch = 64\n",
            rx.port
        ),
    );
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(
        r#"sleep 300 & echo $! > "$DIR/sleep.pid"
        sh -c 'exit 3' & echo $! > "$DIR/exit3.pid"; wait $!
        while [ ! -e "$DIR/stop" ]; do sleep 0.05; done"#,
    );
    let agent_pid = agent.id();
    let sleep_pid = s.read_pid("sleep.pid");
    let exit3_pid = s.read_pid("exit3.pid");
    let mut seen = Vec::new();
    let exit3 = daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(exit3_pid));
    // SAFETY: plain kill(2).
    unsafe { libc::kill(sleep_pid as i32, libc::SIGKILL) };
    let killed = daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(sleep_pid));
    assert_eq!(killed["cause"], "killed", "{killed}");
    finish(agent, &s.dir);
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_exit_of(agent_pid));
    let start = daemon.start.clone();
    // The daemon's stop sends what is queued (agent_stop included) before it exits.
    let events = daemon.stop(seen);
    let mut written: Vec<u64> = std::iter::once(&start)
        .chain(&events)
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    written.sort_unstable();

    let records = rx.records();
    let mut received: Vec<u64> = records
        .iter()
        .map(|r| {
            r["attributes"]["claude_monitor.seq"]
                .as_u64()
                .expect("seq attribute")
        })
        .collect();
    received.sort_unstable();
    assert_eq!(
        received, written,
        "every event once, none twice, none missing"
    );

    // The first request was refused with 503; its records came again in a later one.
    let requests = OtlpReceiver::lines(&rx.requests);
    assert_eq!(requests[0]["status"], 503, "{requests:?}");
    assert!(requests[0]["records"].as_u64() > Some(0), "{requests:?}");
    assert!(
        requests[1..].iter().all(|q| q["status"] == 200),
        "{requests:?}"
    );
    for q in &requests {
        assert_eq!(q["content_type"], "application/x-protobuf", "{q}");
        assert!(
            q["records"].as_u64().is_some_and(|n| (1..=64).contains(&n)),
            "{q}"
        );
    }

    let validator = claude_monitor_tests::schema();
    let mut by_seq = std::collections::HashMap::new();
    for r in &records {
        assert_eq!(r["resource"]["service.name"], "claude-monitor", "{r}");
        assert_eq!(r["scope"]["name"], "claude-monitor", "{r}");
        assert!(r["attributes"].get("__duplicates__").is_none(), "{r}");
        let body: Value =
            serde_json::from_str(r["body"].as_str().expect("body is a string")).expect("JSON body");
        claude_monitor_tests::assert_valid(&validator, &body);
        assert_eq!(
            r["event_name"],
            format!("claude_monitor.{}", body["kind"].as_str().unwrap_or(""))
        );
        assert_eq!(r["attributes"]["process.pid"], body["pid"], "{r}");
        let ts = chrono_nanos(body["ts"].as_str().expect("ts"));
        assert_eq!(r["time_unix_nano"].as_u64(), Some(ts), "{r}");
        by_seq.insert(body["seq"].as_u64().expect("seq"), r.clone());
    }
    let record_of = |e: &Value| by_seq[&e["seq"].as_u64().expect("seq")].clone();

    let r = record_of(&exit3);
    let a = &r["attributes"];
    assert_eq!(a["process.exit.code"], 3, "{r}");
    assert_eq!(a["process.executable.name"], "sh", "{r}");
    assert_eq!(a["process.parent_pid"], exit3["ppid"], "{r}");
    assert_eq!(a["process.user.id"], 0, "{r}");
    assert_eq!(a["claude_monitor.cause"], "exited", "{r}");
    assert_eq!(a["claude_monitor.session.agent"], "test-agent", "{r}");
    assert_eq!(a["claude_monitor.session.root_pid"], u(agent_pid), "{r}");
    assert_eq!(r["severity_number"], 13, "WARN: {r}");

    let r = record_of(&killed);
    let a = &r["attributes"];
    assert!(
        a.get("process.exit.code").is_none(),
        "killed: no exit code: {r}"
    );
    assert_eq!(a["process.executable.name"], "sleep", "{r}");
    assert_eq!(a["claude_monitor.cause"], "killed", "{r}");
    assert_eq!(a["claude_monitor.signal_name"], "SIGKILL", "{r}");
    assert_eq!(
        a["claude_monitor.killed_by.pid"],
        u64::from(std::process::id()),
        "{r}"
    );
    assert_eq!(r["severity_number"], 13, "WARN: {r}");
    let stop = events.last().expect("agent_stop");
    assert_eq!(record_of(stop)["event_name"], "claude_monitor.agent_stop");
}

/// Nanoseconds since the epoch of an RFC 3339 `...T..:..:..NNNNNNNNNZ` time.
fn chrono_nanos(ts: &str) -> u64 {
    let t = chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339");
    u64::try_from(t.timestamp_nanos_opt().expect("in range")).expect("after 1970")
}

//! Real-kernel scenarios for attribution: fake Claude Code sessions with the real shapes
//! (a copy of a real binary installed as `.../claude/versions/9.9.9` run with argv[0]
//! `claude`, a `sessions/<pid>.json` registry entry, a setsid'd `bash -c "source … && eval
//! '<cmd>'"` tool wrapper), then exits, signals and an OOM kill inside them.

use std::{
    ffi::OsStr,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use claude_monitor_tests::{
    Agent, MemCgroup, Spawned, descendants, helper, of, privileged, wait_until,
};
use serde_json::Value;

const SESSION_SCRIPT: &str = r#"
set -u
start=$(cut -d' ' -f22 /proc/$$/stat)
mkdir -p "$CFG/sessions"
printf '{"pid":%d,"sessionId":"%s","cwd":"%s","version":"9.9.9","procStart":"%s"}' \
    $$ "$SID" "$DIR" "$start" > "$CFG/sessions/$$.json.tmp"
mv "$CFG/sessions/$$.json.tmp" "$CFG/sessions/$$.json"
setsid /bin/bash -c "source /dev/null && eval '$CMD'" < /dev/null &
W=$!
echo $W > "$DIR/wrapper.pid.tmp"
mv "$DIR/wrapper.pid.tmp" "$DIR/wrapper.pid"
eval "$AFTER"
wait $W
touch "$DIR/tool.done"
while [ ! -e "$DIR/stop" ]; do sleep 0.05; done
"#;

/// A fake Claude Code session and its temporary files. On drop (also when the test fails)
/// every process of the session is killed, wherever it was reparented, and the files are
/// removed.
struct Session {
    dir: PathBuf,
    config: PathBuf,
    bin: PathBuf,
    child: Option<Spawned>,
    pid: u32,
    sid: String,
}

impl Session {
    /// Creates the session's directory (the fake install and an empty registry) if needed,
    /// so an agent started before the session already knows the registry directory.
    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cm-session-{}-{tag}", std::process::id()));
        let versions = dir.join("home/.local/share/claude/versions");
        if !versions.join("9.9.9").exists() {
            std::fs::create_dir_all(&versions).expect("mkdir");
            std::fs::create_dir_all(dir.join("claude-config/sessions")).expect("mkdir");
            claude_monitor_tests::copy_executable(Path::new("/bin/bash"), &versions.join("9.9.9"));
        }
        dir
    }

    /// Starts the session; its tool runs `cmd`; the session itself then runs `after`.
    fn start(tag: &str, cmd: &str, after: &str) -> Session {
        let dir = Session::dir(tag);
        let config = dir.join("claude-config");
        let bin = dir.join("home/.local/share/claude/versions/9.9.9");
        let sid = format!("3f2a0000-0000-4000-8000-{:012}", std::process::id());
        let child = Spawned::spawn(
            Command::new(&bin)
                .arg0("claude")
                .args(["-c", SESSION_SCRIPT])
                // As the real CLI: its registry entry is in its own configuration directory,
                // which the agent reads from its environment and checks at every event (a
                // search of every user's directory is rate-limited, so without it the first
                // events of a short tool could go out before the entry is looked for again).
                .env("CLAUDE_CONFIG_DIR", &config)
                .env("CFG", &config)
                .env("SID", &sid)
                .env("DIR", &dir)
                .env("CMD", cmd)
                .env("AFTER", after)
                .stdin(Stdio::null()),
        );
        let pid = child.id();
        let s = Session {
            dir,
            config,
            bin,
            child: Some(child),
            pid,
            sid,
        };
        wait_until(
            Duration::from_secs(30),
            "the tool wrapper's pid file",
            || s.dir.join("wrapper.pid").exists(),
        );
        s
    }

    fn wrapper(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("wrapper.pid"))
            .expect("wrapper.pid")
            .trim()
            .parse()
            .expect("pid")
    }

    /// The first descendant of the tool wrapper (or the wrapper) named `comm`.
    fn tool_process(&self, comm: &str) -> u32 {
        let w = self.wrapper();
        let mut found = None;
        wait_until(
            Duration::from_secs(30),
            &format!("a tool process {comm}"),
            || {
                found = descendants(w).into_iter().find(|&p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == comm)
                });
                found.is_some()
            },
        );
        found.expect("tool process")
    }

    fn wait_tool_done(&self) {
        wait_until(Duration::from_secs(30), "the tool to end", || {
            self.dir.join("tool.done").exists()
        });
    }

    fn env(&self) -> [(&'static str, &OsStr); 1] {
        [("CLAUDE_CONFIG_DIR", self.config.as_os_str())]
    }

    /// Asks the session to end (the `stop` file) and waits for it; then kills whatever of
    /// its tree is left.
    fn finish(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), b"");
        if let Some(mut c) = self.child.take() {
            c.wait_timeout(Duration::from_secs(10));
            c.kill_tree();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A transcript with one Bash tool_use in flight (and one completed) for the session
/// `Session::start` will create in `dir`.
fn write_transcript(dir: &Path, config: &Path, command: &str) {
    let sid = format!("3f2a0000-0000-4000-8000-{:012}", std::process::id());
    let project: String = dir
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let tool_use = |id: &str, cmd: &str| {
        serde_json::json!({"type": "assistant", "sessionId": sid, "message": {"role": "assistant",
            "content": [{"type": "tool_use", "id": id, "name": "Bash",
                         "input": {"command": cmd, "description": "test"}}]}})
        .to_string()
    };
    let result = serde_json::json!({"type": "user", "sessionId": sid, "message": {"role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_01DONE", "content": "ok"}]}});
    let path = config.join("projects").join(project);
    std::fs::create_dir_all(&path).expect("mkdir");
    let lines = [
        tool_use("toolu_01DONE", "true"),
        result.to_string(),
        tool_use("toolu_01TEST", command),
    ];
    std::fs::write(path.join(format!("{sid}.jsonl")), lines.join("\n") + "\n").expect("transcript");
}

fn u(v: u32) -> u64 {
    u64::from(v)
}

/// Whether `e` is about the tool wrapper `wrapper` or a child of it (a shell may exec the
/// last command of `-c` itself).
fn of_wrapper(e: &Value, wrapper: u32) -> bool {
    e["pid"].as_u64() == Some(u(wrapper)) || e["ppid"].as_u64() == Some(u(wrapper))
}

/// Checks `e` is attributed to session `s`, with an ancestry that ends at its root.
fn assert_in_session(e: &Value, s: &Session) {
    let session = &e["session"];
    assert_eq!(session["root_pid"].as_u64(), Some(u(s.pid)), "{e}");
    assert_eq!(session["agent"], "claude-code", "{e}");
    assert_eq!(session["version"], "9.9.9", "{e}");
    assert!(
        session["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("{}:", s.pid))),
        "{e}"
    );
    let ancestry = e["ancestry"].as_array().expect("ancestry");
    assert_eq!(
        ancestry.first().and_then(|a| a["pid"].as_u64()),
        e["pid"].as_u64()
    );
    assert_eq!(
        ancestry.last().and_then(|a| a["pid"].as_u64()),
        Some(u(s.pid)),
        "{e}"
    );
    assert!(
        e["proc_id"].as_str().is_some_and(|p| p.contains(':')),
        "{e}"
    );
}

fn exit_of(events: &[Value], pid: u32) -> Value {
    let exits = of(events, "exit", pid);
    assert_eq!(exits.len(), 1, "exits of {pid}: {exits:?}");
    exits[0].clone()
}

#[test]
fn tool_exit_is_attributed_and_rg_helper_is_not_a_session() {
    if !privileged("tool_exit_is_attributed_and_rg_helper_is_not_a_session") {
        return;
    }
    let dir = Session::dir("exit3");
    let config = dir.join("claude-config");
    write_transcript(&dir, &config, r#"sh -c "exit 3""#);
    let agent = Agent::start_with_env(&["--claude"], &[("CLAUDE_CONFIG_DIR", config.as_os_str())]);
    let mut s = Session::start("exit3", r#"sh -c "exit 3""#, "");
    // The CLI re-executing itself as ripgrep: argv[0] `rg`, same executable. Not a session.
    let mut rg = Command::new(&s.bin)
        .arg0("rg")
        .args(["-c", "exit 0"])
        .spawn()
        .expect("rg");
    let rg_pid = rg.id();
    rg.wait().expect("wait");
    s.wait_tool_done();
    s.finish();
    let events = agent.stop(Vec::new());

    // `--claude` sees every Claude Code session on the host: this test's tool is the `sh`
    // of its own wrapper.
    let wrapper = s.wrapper();
    let exit3: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["kind"] == "exit"
                && e["exit_code"] == 3
                && e["comm"] == "sh"
                && of_wrapper(e, wrapper)
        })
        .collect();
    assert_eq!(exit3.len(), 1, "{exit3:?}");
    let e = exit3[0];
    assert_in_session(e, &s);
    assert_eq!(e["cause"], "exited");
    assert_eq!(e["session"]["claude_session_id"], s.sid.as_str());
    assert_eq!(e["session"]["cwd"], s.dir.display().to_string());
    // The transcript's Bash tool_use in flight names the command.
    assert_eq!(e["tool_call"]["id"], "toolu_01TEST", "{e}");
    assert_eq!(e["tool_call"]["name"], "Bash");
    assert_eq!(e["tool_call"]["command"], r#"sh -c "exit 3""#);
    // The session root itself runs no tool.
    assert_eq!(exit_of(&events, s.pid)["tool_call"], Value::Null);
    // The rg helper is not a session and reported nothing (other sessions on the host may
    // report their own events; none of them is rooted at the helper).
    let rg_events: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["pid"].as_u64() == Some(u(rg_pid))
                || e["session"]["root_pid"].as_u64() == Some(u(rg_pid))
        })
        .collect();
    assert!(rg_events.is_empty(), "rg reported: {rg_events:?}");
}

#[test]
fn outside_sigterm_of_a_tool_names_the_sender() {
    if !privileged("outside_sigterm_of_a_tool_names_the_sender") {
        return;
    }
    let mut s = Session::start("term", "sleep 30", "");
    let agent = Agent::start_with_env(&["--claude"], &s.env());
    let target = s.tool_process("sleep");
    let mut sender = Command::new("sh")
        .args(["-c", "kill -TERM \"$1\"", "sh", &target.to_string()])
        .spawn()
        .expect("sh");
    let sender_pid = sender.id();
    sender.wait().expect("wait");
    s.wait_tool_done();
    s.finish();
    let events = agent.stop(Vec::new());
    let e = exit_of(&events, target);
    assert_in_session(&e, &s);
    assert_eq!(e["signal"], 15);
    assert_eq!(e["cause"], "killed");
    let k = &e["killed_by"];
    assert_eq!(k["pid"].as_u64(), Some(u(sender_pid)), "{e}");
    assert_eq!(k["comm"], "sh");
    assert_eq!(k["same_session"], false);
    assert_eq!(k["session_id"], Value::Null);
    assert_eq!(k["signal"], 15);
}

#[test]
fn session_kills_its_own_tool_group() {
    if !privileged("session_kills_its_own_tool_group") {
        return;
    }
    // As Claude Code does on a tool timeout: SIGTERM to the tool's process group, then
    // SIGKILL. The tool ignores SIGTERM. The session sends the SIGTERM once the agent runs
    // and the tool's `sleep` exists (the `go` file), and the SIGKILL once the agent has seen
    // the SIGTERM (the `kill` file), however slow the machine.
    let after = r#"while [ ! -e "$DIR/go" ]; do sleep 0.02; done
        kill -TERM -- -$W
        while [ ! -e "$DIR/kill" ]; do sleep 0.02; done
        kill -KILL -- -$W"#;
    let mut s = Session::start("group", r#"trap "" TERM; sleep 30"#, after);
    let mut agent = Agent::start_with_env(&["--claude"], &s.env());
    let target = s.tool_process("sleep");
    std::fs::write(s.dir.join("go"), b"").expect("go file");
    let mut seen = Vec::new();
    agent.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "signal" && e["signal"] == 15 && e["pid"].as_u64() == Some(u(target))
    });
    std::fs::write(s.dir.join("kill"), b"").expect("kill file");
    s.wait_tool_done();
    s.finish();
    let events = agent.stop(seen);
    let e = exit_of(&events, target);
    assert_in_session(&e, &s);
    assert_eq!(e["signal"], 9);
    assert_eq!(e["cause"], "killed");
    let k = &e["killed_by"];
    assert_eq!(k["pid"].as_u64(), Some(u(s.pid)), "{e}");
    assert_eq!(k["same_session"], true, "{e}");
    assert_eq!(k["session_id"], e["session"]["id"]);
    // The SIGTERM that was ignored is in the stream too, from the session.
    let terms: Vec<&Value> = of(&events, "signal", target)
        .into_iter()
        .filter(|x| x["signal"] == 15)
        .collect();
    assert!(!terms.is_empty(), "no SIGTERM seen");
    assert_eq!(terms[0]["sender"]["pid"].as_u64(), Some(u(s.pid)));
    assert_eq!(terms[0]["sender"]["session_id"], e["session"]["id"]);
}

#[test]
fn oom_kill_of_a_tool_grandchild() {
    if !privileged("oom_kill_of_a_tool_grandchild") {
        return;
    }
    let cg = MemCgroup::create(&format!("cm-session-oom-{}", std::process::id()), 64 << 20);
    let memhog = helper("memhog", env!("CARGO_BIN_EXE_memhog"));
    let cmd = format!(
        r#"sh -c "echo \$\$ > {}/cgroup.procs; exec {} 300 </dev/null""#,
        cg.path.display(),
        memhog.display()
    );
    let config = Session::dir("oom").join("claude-config");
    let agent = Agent::start_with_env(&["--claude"], &[("CLAUDE_CONFIG_DIR", config.as_os_str())]);
    let mut s = Session::start("oom", &cmd, "");
    s.wait_tool_done();
    s.finish();
    let events = agent.stop(Vec::new());
    let oom = events
        .iter()
        .find(|e| e["kind"] == "oom" && e["memcg_id"].as_u64() == Some(cg.id()))
        .unwrap_or_else(|| panic!("no oom event in this test's cgroup"));
    assert_in_session(oom, &s);
    let victim = u32::try_from(oom["pid"].as_u64().expect("pid")).expect("u32");
    let e = exit_of(&events, victim);
    assert_in_session(&e, &s);
    assert_eq!(e["comm"], "memhog");
    assert_eq!(e["cause"], "oom_killed", "{e}");
    assert_eq!(e["oom"]["memcg_id"].as_u64(), Some(cg.id()));
    assert!(
        e["oom"]["anon_rss_kb"]
            .as_u64()
            .is_some_and(|kb| kb > 30 << 10),
        "{e}"
    );
    assert_eq!(e["killed_by"], Value::Null);
}

#[test]
fn orphaned_tool_stays_in_its_session() {
    if !privileged("orphaned_tool_stays_in_its_session") {
        return;
    }
    // The tool ends (exit 4) once the test says so (the `go` file), after its session root
    // was killed, however slow the machine is to start the agent.
    let s = Session::start(
        "orphan",
        r#"while [ ! -e "$DIR/go" ]; do sleep 0.02; done; exit 4"#,
        "",
    );
    let mut agent = Agent::start_with_env(&["--claude"], &s.env());
    let wrapper = s.wrapper();
    // SIGKILL the session root: its tool is not killed, it is reparented and goes on.
    // SAFETY: plain kill(2).
    unsafe { libc::kill(s.pid as i32, libc::SIGKILL) };
    wait_until(Duration::from_secs(30), "the session root's death", || {
        !Path::new(&format!("/proc/{}", s.pid)).exists() || is_zombie(s.pid)
    });
    std::fs::write(s.dir.join("go"), b"").expect("go file");
    let mut seen = Vec::new();
    agent.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exit" && e["pid"].as_u64() == Some(u(wrapper))
    });
    let events = agent.stop(seen);
    let root = exit_of(&events, s.pid);
    assert_eq!(root["signal"], 9);
    assert_eq!(root["cause"], "killed");
    assert_eq!(
        root["killed_by"]["pid"].as_u64(),
        Some(u(std::process::id()))
    );
    assert_eq!(root["killed_by"]["same_session"], false);
    let e = exit_of(&events, wrapper);
    assert_eq!(e["exit_code"], 4);
    assert_in_session(&e, &s);
    assert_ne!(
        e["ppid"].as_u64(),
        Some(u(s.pid)),
        "the tool was reparented: {e}"
    );
}

/// CLOCK_BOOTTIME in clock ticks: the unit of a process's start time in /proc and proc_id.
fn boot_ticks() -> u64 {
    // SAFETY: zeroed timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    assert_eq!(
        // SAFETY: `ts` is a valid out-parameter, as above.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) },
        0
    );
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    ns / (1_000_000_000 / hz)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[test]
fn agent_started_after_the_session_attributes_everything() {
    if !privileged("agent_started_after_the_session_attributes_everything") {
        return;
    }
    let mut s = Session::start("late", "sleep 30", "");
    let target = s.tool_process("sleep");
    let agent = Agent::start_with_env(&["--claude"], &s.env());
    assert!(
        agent.start["scope"]["watched_at_start"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{}",
        agent.start
    );
    // SAFETY: plain kill(2).
    unsafe { libc::kill(target as i32, libc::SIGTERM) };
    s.wait_tool_done();
    s.finish();
    let events = agent.stop(Vec::new());
    let e = exit_of(&events, target);
    assert_in_session(&e, &s);
    assert_eq!(e["session"]["claude_session_id"], s.sid.as_str());
    assert_eq!(e["cause"], "killed");
    let w = exit_of(&events, s.wrapper());
    assert_in_session(&w, &s);
    let root = exit_of(&events, s.pid);
    assert_in_session(&root, &s);
    assert_eq!(root["exit_code"], 0);
}

#[test]
fn a_reused_pid_is_not_attributed() {
    if !privileged("a_reused_pid_is_not_attributed") {
        return;
    }
    let config = Session::dir("reuse").join("claude-config");
    let mut agent = Agent::start_with_env(&["--all"], &[("CLAUDE_CONFIG_DIR", config.as_os_str())]);
    let mut s = Session::start("reuse", r#"sh -c "exit 3""#, "");
    s.wait_tool_done();
    let mut seen = Vec::new();
    let wrapper = s.wrapper();
    let member = agent.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exit"
            && e["exit_code"] == 3
            && e["comm"] == "sh"
            && of_wrapper(e, wrapper)
            && e["session"].is_object()
    });
    let pid = u32::try_from(member["pid"].as_u64().expect("pid")).expect("u32");
    // An unrelated process gets the same pid (ns_last_pid makes the next pid pid). Not
    // within the same clock tick: proc_id has /proc's start-time resolution (clock ticks),
    // and a pid cannot come round again that fast without ns_last_pid.
    let member_start: u64 = member["proc_id"]
        .as_str()
        .and_then(|p| p.split_once(':'))
        .and_then(|(_, start)| start.parse().ok())
        .unwrap_or_else(|| panic!("proc_id: {member}"));
    wait_until(Duration::from_secs(10), "the next clock tick", || {
        boot_ticks() > member_start
    });
    let mut reused = None;
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("ns_last_pid");
        let mut c = Command::new("sh")
            .args(["-c", "exit 9"])
            .spawn()
            .expect("sh");
        let got = c.id();
        c.wait().expect("wait");
        if got == pid {
            reused = Some(got);
            break;
        }
    }
    let reused = reused.expect("could not get the pid reused");
    s.finish();
    let events = agent.stop(seen);
    let exits: Vec<&Value> = of(&events, "exit", reused);
    let again = exits.iter().find(|e| e["exit_code"] == 9).expect("exit 9");
    assert_eq!(again["session"], Value::Null, "{again}");
    assert_eq!(again["ancestry"], Value::Null);
    assert_ne!(again["proc_id"], member["proc_id"]);
}

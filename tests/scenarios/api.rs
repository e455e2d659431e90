//! The daemon's live API on its Unix socket, on the real kernel, through real clients:
//! `curl -N --unix-socket` for Server-Sent Events and `claude-monitor events` for the
//! history. Every event received through the socket is validated against the schema.
//!
//! The watched tree is a configured rule (`comm = "cm-agent"`, a copy of bash), blocked on
//! a FIFO until the clients are subscribed (a wait that starts no process), so each test
//! knows exactly which events of its session the daemon wrote (its stdout) and compares
//! what each client got with them, by `seq`. The daemon sees every session on the host:
//! the clients filter on this test's session (or, as a non-root user, see only their own).

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use claude_monitor_tests::{
    Agent, Spawned, TempDir, agent_binary, assert_valid, mkfifo, privileged, release_fifo, schema,
    wait_until,
};
use serde_json::Value;

const NOBODY: u32 = 65534;

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    agent_bin: PathBuf,
    _tmp: TempDir,
}

impl Setup {
    fn new(tag: &str, extra: &str) -> Setup {
        Setup::with_api(tag, extra, "")
    }

    /// With more `[api]` keys (`api`) than the socket.
    fn with_api(tag: &str, extra: &str, api: &str) -> Setup {
        let tmp = TempDir::new(&format!("cm-api-{}-{tag}", std::process::id()));
        let dir = tmp.path().to_owned();
        // A user who is not root reaches the socket in it.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let data = dir.join("data");
        let socket = dir.join("run/api.sock");
        let agent_bin = dir.join("cm-agent");
        claude_monitor_tests::copy_executable(Path::new("/bin/bash"), &agent_bin);
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[logs]\nmax_bytes = 500000000\n[api]\nsocket = \"{}\"\n{api}\n{extra}\n\
                 [[rules]]\nname = \"test-agent\"\ncomm = \"cm-agent\"\n",
                data.display(),
                socket.display()
            ),
        )
        .expect("config");
        for fifo in ["go", "go2", "go3"] {
            mkfifo(&dir.join(fifo));
        }
        Setup {
            dir,
            config,
            data,
            socket,
            agent_bin,
            _tmp: tmp,
        }
    }

    fn agent(&self, script: &str) -> Spawned {
        Spawned::spawn(
            Command::new(&self.agent_bin)
                .args(["-c", script])
                .env("DIR", &self.dir)
                .stdin(Stdio::null()),
        )
    }

    /// `GET path` with curl, the body as JSON.
    fn get(&self, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--unix-socket"])
            .arg(&self.socket)
            .arg(format!("http://localhost{path}"))
            .output()
            .expect("curl");
        assert!(out.status.success(), "GET {path}: {out:?}");
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    fn wait_subscribers(&self, n: u64) {
        wait_until(Duration::from_secs(20), "subscribed clients", || {
            self.get("/healthz")["subscribers"].as_u64() >= Some(n)
        });
    }

    /// Every line of the event log (the current file: the tests never rotate it).
    fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.data.join("logs/events.jsonl"))
            .expect("event log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line"))
            .collect()
    }
}

/// One Server-Sent Events message.
#[derive(Clone, Debug)]
struct Msg {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// `curl -N` on `/v1/events/stream`: its messages, parsed as they come, each validated.
struct Sse {
    child: Child,
    rx: Receiver<Msg>,
    got: Vec<Msg>,
}

impl Sse {
    fn start(socket: &Path, query: &str, last_id: Option<u64>, uid: Option<u32>) -> Sse {
        let mut cmd = match uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                    "curl".into(),
                ]);
                c
            }
            None => Command::new("curl"),
        };
        cmd.args(["-sSN", "--unix-socket"])
            .arg(socket)
            .arg(format!("http://localhost/v1/events/stream?{query}"));
        if let Some(id) = last_id {
            cmd.args(["-H", &format!("Last-Event-ID: {id}")]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("curl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let validator = schema();
            let (mut id, mut event, mut data) = (None, String::new(), None);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse::<u64>().expect("id"));
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).expect("data JSON"));
                } else if line.is_empty() {
                    if let Some(data) = data.take() {
                        assert_valid(&validator, &data);
                        assert_eq!(data["kind"], event.as_str(), "event: is the kind");
                        assert_eq!(data["seq"].as_u64(), id, "id: is the seq");
                        if tx
                            .send(Msg {
                                id: id.take(),
                                event: std::mem::take(&mut event),
                                data,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                    id = None;
                }
            }
        });
        Sse {
            child,
            rx,
            got: Vec::new(),
        }
    }

    /// Waits until the messages received satisfy `done`. `done` is asked again once what
    /// has arrived is read (not after every message: over a storm's tens of thousands of
    /// messages, a check of all of them per message would be quadratic).
    fn wait_until(&mut self, timeout: Duration, what: &str, done: impl Fn(&[Msg]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) => {
                    self.got.push(m);
                    self.got.extend(self.rx.try_iter());
                }
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what}; got {} messages, last {:?}",
                    self.got.len(),
                    self.got.last()
                ),
            }
        }
    }

    fn seqs(&self) -> Vec<u64> {
        self.got.iter().filter_map(|m| m.id).collect()
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn u(v: u32) -> u64 {
    u64::from(v)
}

fn session_of(e: &Value) -> Option<&str> {
    e["session"]["id"].as_str()
}

/// The session of the fake agent `pid`, from the daemon's events (its root's exec).
fn wait_session(daemon: &mut Agent, seen: &mut Vec<Value>, pid: u32) -> String {
    let e = daemon.wait_for(seen, Duration::from_secs(30), |e| {
        e["session"]["root_pid"].as_u64() == Some(u(pid))
    });
    session_of(&e).expect("session id").to_owned()
}

/// The seqs of the session's events in `seen` after `after` that pass `pred`.
fn expected(seen: &[Value], session: &str, after: u64, pred: impl Fn(&Value) -> bool) -> Vec<u64> {
    seen.iter()
        .filter(|e| session_of(e) == Some(session) && pred(e))
        .filter_map(|e| e["seq"].as_u64())
        .filter(|s| *s > after)
        .collect()
}

/// The last seq of the session's events seen so far.
fn last_of(seen: &[Value], session: &str) -> u64 {
    seen.iter()
        .filter(|e| session_of(e) == Some(session))
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

fn is_root_exit(pid: u32) -> impl Fn(&Value) -> bool {
    move |e| e["kind"] == "exit" && e["pid"].as_u64() == Some(u(pid))
}

/// `claude-monitor events ARGS --socket S --format json`, as (uid, gid) when given.
fn events_command(socket: &Path, args: &[&str], user: Option<(u32, u32)>) -> Command {
    let mut cmd = match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
            ])
            .arg(agent_binary());
            c
        }
        None => Command::new(agent_binary()),
    };
    cmd.arg("events")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .args(["--format", "json"]);
    cmd
}

/// [`events_command`]'s lines, each validated (as `uid` when given).
fn events_cli(socket: &Path, args: &[&str], uid: Option<u32>) -> Vec<Value> {
    events_as(socket, args, uid.map(|u| (u, u)))
}

fn events_as(socket: &Path, args: &[&str], user: Option<(u32, u32)>) -> Vec<Value> {
    let out = events_command(socket, args, user)
        .output()
        .expect("claude-monitor events");
    assert!(
        out.status.success(),
        "claude-monitor events {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let validator = schema();
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            assert_valid(&validator, &v);
            v
        })
        .collect()
}

/// The JSON lines the child prints, as they come (read by a thread of their own).
fn lines_of(child: &mut std::process::Child) -> Receiver<Value> {
    let (tx, rx) = channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line).expect("JSON line");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

fn seqs_of(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

/// `/healthz` answers; two SSE clients with different filters get exactly the events of
/// their filter, in order; the history (`claude-monitor events`) has the same; a daemon
/// that is not there is said so.
#[test]
fn api_serves_health_history_and_filtered_streams() {
    if !privileged("api_serves_health_history_and_filtered_streams") {
        return;
    }
    let s = Setup::new("filters", "[kernel]\npin = false\n");
    let mut daemon = Agent::daemon(&s.config, &[]);
    let start_seq = daemon.start["seq"].as_u64().expect("agent_start has a seq");
    let health = s.get("/healthz");
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["seq"].as_u64() >= Some(start_seq), "{health}");
    assert!(health["version"].is_string(), "{health}");
    let agent = s.agent(
        r#"read _ < "$DIR/go"
        sh -c 'exit 3'; sh -c 'kill -TERM $$'; for i in 1 2 3; do /bin/true; done
        sh -c 'exit 9'"#,
    );
    let agent_pid = agent.id();
    let mut seen = Vec::new();
    let session = wait_session(&mut daemon, &mut seen, agent_pid);
    let mut exits = Sse::start(
        &s.socket,
        &format!("kind=exit&session={session}"),
        None,
        None,
    );
    let mut execs = Sse::start(
        &s.socket,
        &format!("kind=exec,fork&session={session}"),
        None,
        None,
    );
    // The project's client, following the same exits.
    let mut follow = events_command(
        &s.socket,
        &["--follow", "--kind", "exit", "--session", &session],
        None,
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("claude-monitor events --follow");
    let followed = lines_of(&mut follow);
    s.wait_subscribers(3);
    let after = last_of(&seen, &session);
    release_fifo(&s.dir.join("go"));
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_root_exit(agent_pid));

    let want_exits = expected(&seen, &session, after, |e| e["kind"] == "exit");
    let want_execs = expected(&seen, &session, after, |e| {
        e["kind"] == "exec" || e["kind"] == "fork"
    });
    // sh (exit 3), sh (SIGTERM), true x3, the root (bash execs its last command, the
    // `exit 9` sh, in place).
    assert_eq!(want_exits.len(), 6, "{want_exits:?}");
    exits.wait_until(Duration::from_secs(30), "the session's exits", |m| {
        let got: BTreeSet<u64> = m.iter().filter_map(|m| m.id).collect();
        want_exits.iter().all(|s| got.contains(s))
    });
    execs.wait_until(
        Duration::from_secs(30),
        "the session's forks and execs",
        |m| {
            let got: BTreeSet<u64> = m.iter().filter_map(|m| m.id).collect();
            want_execs.iter().all(|s| got.contains(s))
        },
    );
    assert_eq!(
        exits.seqs(),
        want_exits,
        "exactly the session's exits, in order"
    );
    assert_eq!(
        execs.seqs(),
        want_execs,
        "exactly the session's forks and execs"
    );
    assert!(exits.got.iter().all(|m| m.event == "exit"));
    let codes: Vec<&Value> = exits.got.iter().map(|m| &m.data["exit_code"]).collect();
    assert!(
        codes.contains(&&Value::from(3)) && codes.contains(&&Value::from(9)),
        "{codes:?}"
    );
    assert!(
        exits
            .got
            .iter()
            .any(|m| m.data["signal_name"] == "SIGTERM" && m.data["cause"] == "killed"),
        "the SIGTERM'd sh"
    );

    let mut follow_got = Vec::new();
    let validator = schema();
    while follow_got.len() < want_exits.len() {
        let v = followed
            .recv_timeout(Duration::from_secs(30))
            .expect("events --follow: an exit");
        assert_valid(&validator, &v);
        follow_got.push(v);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(seqs_of(&follow_got), want_exits, "events --follow");

    // The history: the same exits, from the event log, by the project's client.
    let history = events_cli(&s.socket, &["--kind", "exit", "--session", &session], None);
    assert_eq!(seqs_of(&history), want_exits);
    let newest = events_cli(&s.socket, &["--session", &session, "-n", "2"], None);
    assert_eq!(newest.len(), 2);
    let all = expected(&seen, &session, 0, |_| true);
    assert_eq!(seqs_of(&newest), all[all.len() - 2..], "the newest two");
    // A bad parameter is an error that names it.
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&s.socket)
        .arg("http://localhost/v1/events?sinse=1")
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sinse"),
        "{out:?}"
    );

    drop(exits);
    drop(execs);
    drop(agent);
    daemon.stop(seen);
    assert!(!s.socket.exists(), "the socket is removed at stop");
    let out = Command::new(agent_binary())
        .args(["events", "--socket"])
        .arg(&s.socket)
        .output()
        .expect("claude-monitor events");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no daemon listening on"), "{err}");
}

/// A stream resumed with `Last-Event-ID` after the daemon was SIGKILLed and started again
/// gets every event after that id exactly once: the history up to the seam, then live.
#[test]
fn api_stream_resumes_across_a_daemon_restart() {
    if !privileged("api_stream_resumes_across_a_daemon_restart") {
        return;
    }
    let pin_dir = format!("/sys/fs/bpf/cm-test-api-{}", std::process::id());
    let s = Setup::new(
        "resume",
        &format!("[kernel]\npin = true\npin_dir = \"{pin_dir}\"\n"),
    );
    let _pins = PinDir {
        dir: PathBuf::from(&pin_dir),
        config: s.config.clone(),
    };
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(
        r#"read _ < "$DIR/go"; for i in $(seq 10); do /bin/true; done
        read _ < "$DIR/go2"; for i in $(seq 10); do /bin/true; done; sh -c 'exit 7'; : > "$DIR/down"
        read _ < "$DIR/go3"; for i in $(seq 10); do /bin/true; done; sh -c 'exit 8'"#,
    );
    let agent_pid = agent.id();
    let mut seen = Vec::new();
    let session = wait_session(&mut daemon, &mut seen, agent_pid);
    let query = format!("session={session}");
    let mut first = Sse::start(&s.socket, &query, None, None);
    // The project's client follows across the restart by itself.
    let mut follower = events_command(&s.socket, &["--follow", "--session", &session], None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("claude-monitor events --follow");
    let followed = lines_of(&mut follower);
    s.wait_subscribers(2);
    release_fifo(&s.dir.join("go"));
    let is_true_exit = |m: &Msg| m.data["kind"] == "exit" && m.data["comm"] == "true";
    first.wait_until(Duration::from_secs(30), "ten exits", |m| {
        m.iter().filter(|m| is_true_exit(m)).count() == 10
    });
    let last_id = first.got.last().and_then(|m| m.id).expect("an id");
    drop(first);
    daemon.kill(seen);

    // While no daemon runs.
    release_fifo(&s.dir.join("go2"));
    wait_until(Duration::from_secs(30), "the exits while down", || {
        s.dir.join("down").exists()
    });
    let mut daemon = Agent::daemon(&s.config, &[]);
    assert_eq!(daemon.start["pin"]["state"], "reused", "{}", daemon.start);
    let start_seq = daemon.start["seq"].as_u64().expect("seq");
    assert!(
        start_seq > last_id,
        "seq continues across the restart: {start_seq} <= {last_id}"
    );
    let mut resumed = Sse::start(&s.socket, &query, Some(last_id), None);
    // This stream and the follower, back.
    s.wait_subscribers(2);
    release_fifo(&s.dir.join("go3"));
    resumed.wait_until(Duration::from_secs(30), "the root's exit", |m| {
        m.iter().any(|m| is_root_exit(agent_pid)(&m.data))
    });
    let mut seen = Vec::new();
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_root_exit(agent_pid));

    // Every event of the session in the log after `last_id`, once each, in order.
    let want: Vec<u64> = s
        .log()
        .iter()
        .filter(|e| session_of(e) == Some(session.as_str()))
        .filter_map(|e| e["seq"].as_u64())
        .filter(|q| *q > last_id)
        .collect();
    assert_eq!(resumed.seqs(), want, "no gap, no duplicate at the seam");
    let true_exits = resumed.got.iter().filter(|m| is_true_exit(m)).count();
    assert_eq!(true_exits, 20, "the ten while down and the ten after");
    assert!(
        resumed.got.iter().any(|m| m.data["exit_code"] == 7),
        "the exit while down"
    );
    // The log's seqs over both runs: 1, 2, 3, ... with no gap and no repeat.
    let log_seqs: Vec<u64> = seqs_of(&s.log());
    assert_eq!(log_seqs, (1..=log_seqs.len() as u64).collect::<Vec<_>>());
    // The follower: every event of the session from its first one to the root's exit,
    // once each, across the restart; and it said the daemon went away.
    let mut got: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !got.iter().any(is_root_exit(agent_pid)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match followed.recv_timeout(left) {
            Ok(v) => got.push(v),
            Err(_) => panic!("the follower did not get the root's exit: {got:?}"),
        }
    }
    let _ = follower.kill();
    let out = follower.wait_with_output().expect("follower");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("went away; following again"), "{stderr}");
    let first_followed = seqs_of(&got).first().copied().expect("a seq");
    let want_followed: Vec<u64> = s
        .log()
        .iter()
        .filter(|e| session_of(e) == Some(session.as_str()))
        .filter_map(|e| e["seq"].as_u64())
        .filter(|q| *q >= first_followed)
        .collect();
    assert_eq!(
        seqs_of(&got),
        want_followed,
        "the follower: no gap, no duplicate"
    );
    drop(resumed);
    drop(agent);
    daemon.stop(seen);
}

/// A user who is not root connects to the 0666 socket and sees only the events of their
/// own processes: in the stream and in the history.
#[test]
fn api_shows_a_user_only_their_own_processes() {
    if !privileged("api_shows_a_user_only_their_own_processes") {
        return;
    }
    let s = Setup::new("nobody", "[kernel]\npin = false\n");
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(
        r#"read _ < "$DIR/go"
        setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'exit 4'
        sh -c 'exit 5'"#,
    );
    let agent_pid = agent.id();
    let mut seen = Vec::new();
    let session = wait_session(&mut daemon, &mut seen, agent_pid);
    let mut nobody = Sse::start(&s.socket, "", None, Some(NOBODY));
    let mut root = Sse::start(&s.socket, &format!("session={session}"), None, None);
    s.wait_subscribers(2);
    release_fifo(&s.dir.join("go"));
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_root_exit(agent_pid));
    root.wait_until(Duration::from_secs(30), "the root's exit", |m| {
        m.iter().any(|m| is_root_exit(agent_pid)(&m.data))
    });
    assert!(
        root.got.iter().any(|m| m.data["exit_code"] == 5),
        "root sees all"
    );
    nobody.wait_until(Duration::from_secs(30), "their own exit", |m| {
        m.iter().any(|m| m.data["exit_code"] == 4)
    });
    let own = |events: Vec<&Value>| {
        for e in &events {
            assert_eq!(e["uid"].as_u64(), Some(u(NOBODY)), "not theirs: {e}");
        }
        events
            .into_iter()
            .filter(|e| session_of(e) == Some(session.as_str()))
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or("").to_owned(),
                    e["comm"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let from_stream = own(nobody.got.iter().map(|m| &m.data).collect());
    let sh = || Value::from("sh");
    assert_eq!(
        from_stream,
        [("exec".to_owned(), sh()), ("exit".to_owned(), sh())],
        "only the exec and exit of their own sh"
    );
    let history = events_cli(&s.socket, &[], Some(NOBODY));
    assert_eq!(own(history.iter().collect()), from_stream);
    drop(nobody);
    drop(root);
    drop(agent);
    daemon.stop(seen);
}

/// A subscriber that reads nothing (a stopped curl) during a storm of short processes gets
/// one `lost` record with its count once it reads again, and stays connected; another
/// subscriber and the event log lose nothing.
#[test]
fn api_slow_subscriber_gets_its_lost_count() {
    if !privileged("api_slow_subscriber_gets_its_lost_count") {
        return;
    }
    let storm = claude_monitor_tests::storm_size(20_000);
    let s = Setup::new("slow", "[kernel]\npin = false\nring_buffer_kb = 32768\n");
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(&format!(
        r#"read _ < "$DIR/go"; for i in $(seq {storm}); do /bin/true; done; sh -c 'exit 9'"#
    ));
    let agent_pid = agent.id();
    let mut seen = Vec::new();
    let session = wait_session(&mut daemon, &mut seen, agent_pid);
    let query = format!("session={session}");
    let mut fast = Sse::start(&s.socket, &query, None, None);
    let mut slow = Sse::start(&s.socket, &query, None, None);
    s.wait_subscribers(2);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(slow.child.id() as i32, libc::SIGSTOP) };
    let after = last_of(&seen, &session);
    release_fifo(&s.dir.join("go"));
    daemon.wait_for(&mut seen, Duration::from_secs(120), is_root_exit(agent_pid));
    let want = expected(&seen, &session, after, |_| true);
    assert!(want.len() > 3 * storm, "{} events", want.len());
    fast.wait_until(Duration::from_secs(60), "every event", |m| {
        let got: BTreeSet<u64> = m.iter().filter_map(|m| m.id).collect();
        want.iter().all(|s| got.contains(s))
    });
    assert_eq!(fast.seqs(), want, "the other subscriber loses nothing");
    assert!(fast.got.iter().all(|m| m.event != "lost"));

    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(slow.child.id() as i32, libc::SIGCONT) };
    let lost_sum = |m: &[Msg]| {
        m.iter()
            .filter(|m| m.event == "lost")
            .map(|m| m.data["count"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    slow.wait_until(
        Duration::from_secs(60),
        "its events and its lost count",
        |m| m.iter().filter(|m| m.id.is_some()).count() as u64 + lost_sum(m) >= want.len() as u64,
    );
    let lost: Vec<&Msg> = slow.got.iter().filter(|m| m.event == "lost").collect();
    assert!(!lost.is_empty(), "no lost record");
    for m in &lost {
        assert_eq!(m.data["reason"], "subscriber_queue", "{:?}", m.data);
        assert_eq!(m.id, None, "a subscriber's own lost record has no seq");
    }
    let got = slow.seqs();
    let got_set: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(got_set.len(), got.len(), "no duplicate");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    let want_set: BTreeSet<u64> = want.iter().copied().collect();
    assert!(got.iter().all(|q| want_set.contains(q)), "only its events");
    assert_eq!(
        got.len() as u64 + lost_sum(&slow.got),
        want.len() as u64,
        "what it got and what it was told it lost are every event"
    );
    // Still connected: the next event reaches it.
    let health = s.get("/healthz");
    assert!(
        health["subscriber_lost"].as_u64() >= Some(lost_sum(&slow.got)),
        "{health}"
    );
    assert!(health["subscribers"].as_u64() >= Some(2), "{health}");

    // The log has every seq once, and the kernel lost nothing.
    let log = s.log();
    let log_seqs = seqs_of(&log);
    assert_eq!(log_seqs, (1..=log_seqs.len() as u64).collect::<Vec<_>>());
    let logged: BTreeSet<u64> = log_seqs.iter().copied().collect();
    assert!(want.iter().all(|q| logged.contains(q)));
    assert!(
        log.iter().all(|e| e["kind"] != "lost"),
        "records lost in the kernel"
    );
    drop(fast);
    drop(slow);
    drop(agent);
    daemon.stop(seen);
}

/// A group made for the test, removed on drop (also when the test fails).
struct TestGroup(String);

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

/// `api.socket_mode = "0660"` with `api.group`: the socket belongs to the group; a member
/// (by its primary group here) connects and sees every event, root-only ones included; a
/// user outside it cannot connect, and the client says why.
#[test]
fn api_group_only_socket() {
    if !privileged("api_group_only_socket") {
        return;
    }
    let name = format!("cmapi{}", std::process::id());
    let _ = Command::new("groupdel").arg(&name).status();
    let status = Command::new("groupadd")
        .arg(&name)
        .status()
        .expect("groupadd");
    assert!(status.success(), "groupadd {name}");
    let group = TestGroup(name.clone());
    let gid: u32 = std::fs::read_to_string("/etc/group")
        .expect("/etc/group")
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(group.0.as_str())).then(|| f.nth(1)?.parse().ok())?
        })
        .expect("the group's gid");
    let s = Setup::with_api(
        "group",
        "[kernel]\npin = false\n",
        &format!("socket_mode = \"0660\"\ngroup = \"{name}\"\n"),
    );
    let daemon = Agent::daemon(&s.config, &[]);
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(&s.socket).expect("socket");
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);
    // A member sees the daemon's own records, which are for root and the group only.
    let starts = events_as(&s.socket, &["--kind", "agent_start"], Some((NOBODY, gid)));
    assert_eq!(
        starts.last().map(|e| e["seq"].clone()),
        Some(daemon.start["seq"].clone())
    );
    let out = events_command(&s.socket, &[], Some((NOBODY, NOBODY)))
        .output()
        .expect("claude-monitor events");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");
    daemon.stop(Vec::new());
}

/// The test's pin directory, unpinned on drop (also when the test fails).
struct PinDir {
    dir: PathBuf,
    config: PathBuf,
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if !self.dir.exists() {
            return;
        }
        let _ = Command::new(agent_binary())
            .args(["daemon", "--unpin", "--config"])
            .arg(&self.config)
            .stderr(Stdio::null())
            .status();
        for dir in [self.dir.join("staging"), self.dir.clone()] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// `GET path` with curl and an Accept header: (content type, body).
fn get_text(socket: &Path, path: &str, accept: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-H"])
        .arg(format!("Accept: {accept}"))
        .args(["-w", "\n%{content_type}", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {path}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, content_type) = text.rsplit_once('\n').expect("content type line");
    (content_type.to_owned(), body.to_owned())
}

/// The value of the sample `series` (name and labels, as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// `/metrics` on the socket: counts of what the daemon wrote (between the exits this test
/// made and all the daemon ever wrote), both formats by the Accept header, clean for
/// Prometheus's own `promtool check metrics`, and for root and api.group only.
#[test]
fn api_serves_prometheus_metrics() {
    if !privileged("api_serves_prometheus_metrics") {
        return;
    }
    let s = Setup::new("metrics", "[kernel]\npin = false\n");
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(r#"sh -c 'exit 3'; sh -c 'exit 4'; sh -c 'exit 5'; read _ < "$DIR/go""#);
    let agent_pid = agent.id();
    let mut seen = Vec::new();
    daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exit" && e["ppid"].as_u64() == Some(u(agent_pid)) && e["exit_code"] == 5
    });
    let (content_type, text) = get_text(&s.socket, "/metrics", "text/plain");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let exited = sample(&text, r#"claude_monitor_exits_total{cause="exited"}"#)
        .unwrap_or_else(|| panic!("no exits_total in\n{text}"));
    assert!(
        sample(
            &text,
            &format!(
                r#"claude_monitor_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ) == Some(1.0),
        "{text}"
    );
    let (content_type, open) = get_text(
        &s.socket,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.trim_end().ends_with("# EOF"), "{open}");
    // promtool, from Debian's prometheus package (cargo xtask test unpacks it).
    match std::env::var_os("CLAUDE_MONITOR_PROMTOOL") {
        Some(promtool) => {
            let mut check = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("promtool");
            std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), text.as_bytes())
                .expect("to promtool");
            let out = check.wait_with_output().expect("promtool");
            assert!(out.status.success(), "promtool check metrics: {out:?}");
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CLAUDE_MONITOR_PROMTOOL is not set: run through cargo xtask test")
        }
        None => eprintln!("skipping promtool: CLAUDE_MONITOR_PROMTOOL is not set"),
    }
    // Not for another user.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(&s.socket)
        .arg("http://localhost/metrics")
        .output()
        .expect("setpriv curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{out:?}");
    release_fifo(&s.dir.join("go"));
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_root_exit(agent_pid));
    drop(agent);
    daemon.stop(seen);
    let written = s
        .log()
        .iter()
        .filter(|e| e["kind"] == "exit" && e["cause"] == "exited")
        .count() as f64;
    assert!(
        (3.0..=written).contains(&exited),
        "exits_total{{cause=\"exited\"}} {exited}: at least this test's 3, at most the {written} written"
    );
}

/// `GET path` with curl, as `uid` when given: (HTTP status, body as JSON).
fn get_status(socket: &Path, path: &str, uid: Option<u32>) -> (u16, Value) {
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "curl".into(),
            ]);
            c
        }
        None => Command::new("curl"),
    };
    let out = cmd
        .args(["-sS", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {path}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    let value = serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (code.parse().expect("status"), value)
}

/// The session `id` in a `/v1/sessions` answer.
fn listed<'a>(answer: &'a Value, id: &str) -> Option<&'a Value> {
    answer["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["id"] == id)
}

fn pids_of(session: &Value) -> Vec<u64> {
    session["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect()
}

/// `/v1/sessions` lists a session with its live processes (and their RSS) and, once a
/// child was SIGKILLed from outside, that death with its cause; `/v1/sessions/{id}` finds
/// it by prefix; `/v1/reports` lists the report that death wrote and `/v1/reports/{id}`
/// returns the file's JSON. A user who is not root sees none of it: an empty list, 404s.
#[test]
fn api_serves_sessions_and_reports() {
    if !privileged("api_serves_sessions_and_reports") {
        return;
    }
    let s = Setup::new("sessions", "[kernel]\npin = false\n");
    let mut daemon = Agent::daemon(&s.config, &[]);
    let agent = s.agent(
        r#"sleep 600 & echo $! > "$DIR/child.tmp"; mv "$DIR/child.tmp" "$DIR/child"
        read _ < "$DIR/go""#,
    );
    let agent_pid = agent.id();
    let mut seen = Vec::new();
    let session = wait_session(&mut daemon, &mut seen, agent_pid);
    wait_until(Duration::from_secs(20), "the child's pid", || {
        s.dir.join("child").exists()
    });
    let child: u32 = std::fs::read_to_string(s.dir.join("child"))
        .expect("child pid")
        .trim()
        .parse()
        .expect("a pid");
    daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exec" && e["pid"].as_u64() == Some(u(child))
    });

    // Live: the root and its sleep, with their RSS.
    let all = s.get("/v1/sessions");
    let view = listed(&all, &session).unwrap_or_else(|| panic!("{session} not in {all}"));
    assert_eq!(pids_of(view), [u(agent_pid), u(child)], "{view}");
    assert_eq!(view["live"], true, "{view}");
    assert_eq!(view["processes_total"], 2, "{view}");
    assert_eq!(view["uid"], 0, "{view}");
    assert_eq!(view["agent"], "test-agent", "{view}");
    assert_eq!(view["root_pid"], u(agent_pid), "{view}");
    assert!(view["root_start"].is_string(), "{view}");
    for p in view["processes"].as_array().expect("processes") {
        assert!(p["rss_kb"].as_u64().is_some_and(|k| k > 0), "{p}");
    }
    assert!(view["samples"].is_array() && view["recent_deaths"].is_array());

    // SAFETY: plain kill(2) on a process of the test's own tree.
    unsafe { libc::kill(child as i32, libc::SIGKILL) };
    let exit = daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exit" && e["pid"].as_u64() == Some(u(child))
    });
    assert_eq!(exit["cause"], "killed", "{exit}");
    let reports_dir = s.data.join("reports");
    let mut report_file = None;
    wait_until(Duration::from_secs(30), "the child's report", || {
        report_file = std::fs::read_dir(&reports_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .find(|p| {
                std::fs::read(p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .is_some_and(|r| r["process"]["pid"].as_u64() == Some(u(child)))
            });
        report_file.is_some()
    });
    let report_file = report_file.expect("report");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(&report_file).expect("report")).expect("JSON");
    let report_id = on_disk["id"].as_str().expect("id").to_owned();
    assert_eq!(on_disk["reason"], "killed_from_outside", "{on_disk}");

    // The death, by prefix of the session's id (`PID:`).
    let one = s.get(&format!("/v1/sessions/{agent_pid}:"));
    assert_eq!(one["id"], session.as_str(), "{one}");
    assert_eq!(pids_of(&one), [u(agent_pid)], "the sleep is gone: {one}");
    let deaths = one["recent_deaths"].as_array().expect("recent_deaths");
    let death = deaths
        .iter()
        .find(|d| d["pid"].as_u64() == Some(u(child)))
        .unwrap_or_else(|| panic!("no death of {child} in {one}"));
    assert_eq!(death["cause"], "killed", "{death}");
    assert_eq!(death["signal_name"], "SIGKILL", "{death}");
    assert_eq!(death["seq"], exit["seq"], "{death}");
    assert_eq!(death["comm"], "sleep", "{death}");
    assert_eq!(
        s.get(&format!("/v1/sessions/{session}"))["id"],
        session.as_str()
    );

    // The report: listed for the session, and served as the file has it.
    let list = s.get(&format!("/v1/reports?session={session}&cause=killed"));
    let ids: Vec<&str> = list["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [report_id.as_str()], "{list}");
    let listed_report = &list["reports"][0];
    assert_eq!(listed_report["reason"], "killed_from_outside");
    assert_eq!(listed_report["pid"], u(child));
    let served = s.get(&format!("/v1/reports/{report_id}"));
    assert_eq!(
        served,
        on_disk,
        "the report as in {}",
        report_file.display()
    );
    assert_valid(&schema(), &served["event"]);
    let prefix = &report_id[..report_id.len() - 2];
    assert_eq!(
        s.get(&format!("/v1/reports/{prefix}"))["id"],
        report_id.as_str()
    );
    let (code, body) = get_status(&s.socket, "/v1/reports?reason=nope", None);
    assert_eq!(code, 400, "{body}");
    let (code, _) = get_status(&s.socket, "/v1/reports/no-such-report", None);
    assert_eq!(code, 404);

    // Another user sees neither.
    let (code, theirs) = get_status(&s.socket, "/v1/sessions", Some(NOBODY));
    assert_eq!(code, 200, "{theirs}");
    assert_eq!(theirs["sessions"], serde_json::json!([]), "{theirs}");
    let (code, body) = get_status(&s.socket, &format!("/v1/sessions/{session}"), Some(NOBODY));
    assert_eq!(code, 404, "{body}");
    let (code, theirs) = get_status(&s.socket, "/v1/reports", Some(NOBODY));
    assert_eq!(code, 200, "{theirs}");
    assert_eq!(theirs["reports"], serde_json::json!([]), "{theirs}");
    let (code, body) = get_status(&s.socket, &format!("/v1/reports/{report_id}"), Some(NOBODY));
    assert_eq!(code, 404, "{body}");
    let (code, body) = get_status(&s.socket, &format!("/v1/reports/{prefix}"), Some(NOBODY));
    assert_eq!(code, 404, "{body}");

    release_fifo(&s.dir.join("go"));
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_root_exit(agent_pid));
    drop(agent);
    daemon.stop(seen);
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET url` with curl over TCP and extra `headers`: (status, body).
fn http(url: &str, headers: &[&str]) -> (u16, String) {
    http_method("GET", url, headers)
}

fn http_method(method: &str, url: &str, headers: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-w", "\n%{http_code}"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("curl");
    assert!(out.status.success(), "{method} {url}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_owned())
}

/// Writes `text` into `path` with `mode` (owned by the test's user: root).
fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod");
}

/// The daemon refuses to start (status 2, before loading anything, a message naming the
/// key) with a TCP address it cannot parse, a non-loopback address without a token file, and
/// a token file that others can read, that is empty or that is a symbolic link.
#[test]
fn api_tcp_refuses_an_unsound_setup() {
    if !privileged("api_tcp_refuses_an_unsound_setup") {
        return;
    }
    let dir = TempDir::new(&format!("cm-api-tcp-refused-{}", std::process::id()));
    let token = dir.path().join("token");
    let link = dir.path().join("token-link");
    let refused = |api: &str| {
        let s = Setup::with_api("tcp-refused", "[kernel]\npin = false\n", api);
        let out = Command::new(agent_binary())
            .args(["daemon", "--config"])
            .arg(&s.config)
            .stdin(Stdio::null())
            .output()
            .expect("claude-monitor");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "[api] {api}: {stderr}");
        assert!(stderr.contains("claude-monitor: error: "), "{stderr}");
        stderr
    };
    let e = refused("tcp = \"localhost:9464\"");
    assert!(e.contains("api.tcp"), "{e}");
    let e = refused("tcp = \"0.0.0.0:9464\"");
    assert!(
        e.contains("api.token_file") && e.contains("0.0.0.0:9464"),
        "{e}"
    );
    write_mode(&token, "s3cret\n", 0o640);
    let with_token = format!(
        "tcp = \"0.0.0.0:9464\"\ntoken_file = \"{}\"",
        token.display()
    );
    let e = refused(&with_token);
    assert!(e.contains("api.token_file") && e.contains("0640"), "{e}");
    write_mode(&token, "s3cret\n", 0o604);
    let e = refused(&with_token);
    assert!(e.contains("api.token_file") && e.contains("0604"), "{e}");
    write_mode(&token, " \n", 0o600);
    let e = refused(&with_token);
    assert!(e.contains("api.token_file") && e.contains("empty"), "{e}");
    write_mode(&token, "s3cret\n", 0o600);
    std::os::unix::fs::symlink(&token, &link).expect("symlink");
    let e = refused(&format!(
        "tcp = \"127.0.0.1:9464\"\ntoken_file = \"{}\"",
        link.display()
    ));
    assert!(
        e.contains("api.token_file") && e.contains("symbolic link"),
        "{e}"
    );
}

/// With `api.token_file`, every TCP request needs `Authorization: Bearer <token>`: none or a
/// wrong one is a 401, the right one sees every event (/v1/events has `agent_start`, which
/// only root sees); only GET.
#[test]
fn api_tcp_needs_the_bearer_token() {
    if !privileged("api_tcp_needs_the_bearer_token") {
        return;
    }
    let port = free_port();
    let tmp = TempDir::new(&format!("cm-api-tcp-token-{}", std::process::id()));
    let token = tmp.path().join("token");
    write_mode(&token, "  t0k3n-for-the-test\n", 0o600);
    let s = Setup::with_api(
        "tcp-token",
        "[kernel]\npin = false\n",
        &format!(
            "tcp = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"",
            token.display()
        ),
    );
    let daemon = Agent::daemon(&s.config, &[]);
    daemon.wait_stderr(Duration::from_secs(10), "api listening on tcp", 1);
    let base = format!("http://127.0.0.1:{port}");
    let events = format!("{base}/v1/events?kind=agent_start");
    let (code, body) = http(&events, &[]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    assert_eq!(http(&format!("{base}/healthz"), &[]).0, 401);
    assert_eq!(http(&format!("{base}/metrics"), &[]).0, 401);
    for wrong in [
        "Authorization: Bearer t0k3n-for-the-tesT",
        "Authorization: Bearer t0k3n-for-the-tes",
        "Authorization: Basic t0k3n-for-the-test",
        "Authorization: t0k3n-for-the-test",
    ] {
        assert_eq!(http(&events, &[wrong]).0, 401, "{wrong}");
    }
    let right = "Authorization: Bearer t0k3n-for-the-test";
    let (code, body) = http(&events, &[right]);
    assert_eq!(code, 200, "{body}");
    let validator = schema();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(!lines.is_empty(), "no agent_start over TCP with the token");
    for e in &lines {
        assert_valid(&validator, e);
        assert_eq!(e["kind"], "agent_start", "{e}");
    }
    let (code, body) = http(&format!("{base}/healthz"), &[right]);
    assert_eq!(code, 200, "{body}");
    for route in ["/v1/sessions", "/v1/reports"] {
        let (code, body) = http(&format!("{base}{route}"), &[right]);
        assert_eq!(code, 200, "{route}: {body}");
        assert_eq!(http(&format!("{base}{route}"), &[]).0, 401, "{route}");
    }
    let (code, _) = http(&format!("{base}/metrics"), &[right]);
    assert_eq!(code, 200);
    assert_eq!(
        http_method("POST", &format!("{base}/v1/events"), &[right]).0,
        405
    );
    daemon.stop(Vec::new());
}

/// Prometheus, killed when dropped.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `claude_monitor_exits_total` by cause, through Prometheus's query API.
fn exits_by_cause(prometheus: &str) -> Vec<(String, f64)> {
    let (code, body) = http(
        &format!("{prometheus}/api/v1/query?query=claude_monitor_exits_total"),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("query JSON");
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let cause = r["metric"]["cause"].as_str()?.to_owned();
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((cause, value))
        })
        .collect()
}

fn cause_value(samples: &[(String, f64)], cause: &str) -> f64 {
    samples
        .iter()
        .find(|(c, _)| c == cause)
        .map_or(0.0, |(_, v)| *v)
}

/// The real Prometheus (Debian's package, unpacked by `cargo xtask test`) scrapes the
/// daemon's `/metrics` on loopback TCP (no token: /healthz and /metrics only, the /v1
/// routes a 403); through Prometheus's own query API, the exits by cause are at least the
/// ones this test made (two `exited`, one `killed` by a SIGKILL from the test) and at most
/// what the daemon wrote in its log (it sees every session on the host).
#[test]
fn prometheus_scrapes_the_daemon() {
    if !privileged("prometheus_scrapes_the_daemon") {
        return;
    }
    let Some(server) = std::env::var_os("CLAUDE_MONITOR_PROMETHEUS") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CLAUDE_MONITOR_PROMETHEUS is not set: run through cargo xtask test");
        }
        eprintln!("skipping prometheus_scrapes_the_daemon: CLAUDE_MONITOR_PROMETHEUS is not set");
        return;
    };
    let port = free_port();
    let s = Setup::with_api(
        "prometheus",
        "[kernel]\npin = false\n",
        &format!("tcp = \"127.0.0.1:{port}\""),
    );
    let mut daemon = Agent::daemon(&s.config, &[]);
    daemon.wait_stderr(Duration::from_secs(10), "api listening on tcp", 1);
    let base = format!("http://127.0.0.1:{port}");
    // Without a token: host-wide counts only.
    let (code, body) = http(&format!("{base}/v1/events"), &[]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("token"), "{body}");
    for route in [
        "/v1/events/stream",
        "/v1/sessions",
        "/v1/reports",
        "/v1/reports/x",
    ] {
        assert_eq!(http(&format!("{base}{route}"), &[]).0, 403, "{route}");
    }
    let (code, body) = http(&format!("{base}/healthz"), &[]);
    assert_eq!(code, 200, "{body}");

    let agent = s.agent(
        r#"sh -c 'exit 3'; sh -c 'exit 4'; sleep 600 & echo $! > "$DIR/victim.tmp"; mv "$DIR/victim.tmp" "$DIR/victim"; read _ < "$DIR/go""#,
    );
    let agent_pid = agent.id();
    let victim_file = s.dir.join("victim");
    let mut victim = None;
    wait_until(Duration::from_secs(20), "the victim's pid", || {
        victim = std::fs::read_to_string(&victim_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        victim.is_some()
    });
    let victim = victim.expect("victim pid");
    // SAFETY: a plain kill(2) of the test's own child's child.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0, "kill");
    let mut seen = Vec::new();
    daemon.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exit" && e["pid"].as_u64() == Some(victim as u64) && e["cause"] == "killed"
    });
    assert!(
        seen.iter().any(|e| e["kind"] == "exit"
            && e["ppid"].as_u64() == Some(u(agent_pid))
            && e["exit_code"] == 4),
        "the exit 4 came before the kill"
    );

    // Prometheus, scraping every second.
    let prom_dir = s.dir.join("prometheus");
    std::fs::create_dir_all(prom_dir.join("data")).expect("prometheus dir");
    let prom_config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: claude-monitor\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("prometheus.yml");
    let prom_port = free_port();
    let prom_log = prom_dir.join("prometheus.log");
    let log_file = std::fs::File::create(&prom_log).expect("prometheus log");
    let _prometheus = Prometheus(
        Command::new(&server)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("prometheus"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let prom_log_text = || std::fs::read_to_string(&prom_log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The target is up.
    loop {
        let up = Command::new("curl")
            .args(["-sS", "--fail"])
            .arg(format!("{prom}/api/v1/targets"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .is_some_and(|v| {
                v["data"]["activeTargets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["health"] == "up")
            });
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target is not up in Prometheus within 60 s:\n{}",
            prom_log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The samples have this test's exits.
    let samples = loop {
        let samples = exits_by_cause(&prom);
        if cause_value(&samples, "exited") >= 2.0 && cause_value(&samples, "killed") >= 1.0 {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {samples:?}, not this test's exits, within 60 s:\n{}",
            prom_log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    release_fifo(&s.dir.join("go"));
    daemon.wait_for(&mut seen, Duration::from_secs(30), is_root_exit(agent_pid));
    drop(agent);
    daemon.stop(seen);
    let log = s.log();
    for (cause, least) in [("exited", 2.0), ("killed", 1.0)] {
        let written = log
            .iter()
            .filter(|e| e["kind"] == "exit" && e["cause"] == cause)
            .count() as f64;
        let value = cause_value(&samples, cause);
        assert!(
            (least..=written).contains(&value),
            "Prometheus: exits_total{{cause=\"{cause}\"}} {value}: at least this test's {least}, \
             at most the {written} written"
        );
    }
}

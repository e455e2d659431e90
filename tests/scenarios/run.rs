//! Real-kernel scenarios for `claude-monitor run`: it runs a command, passes its exit status
//! through and explains how its tree ended. Each reads the summary `run` writes with
//! `--summary-json` and checks exact fields; every wait is for a fact (a process exists,
//! `run` exited), never for a time.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use claude_monitor_tests::{
    MemCgroup, Spawned, TempDir, agent_binary, descendants, helper, privileged, wait_until,
};
use serde_json::Value;

const NOBODY: u32 = 65534;
/// How long a command of these scenarios may take at most (they end by themselves or are
/// ended by the scenario).
const LIMIT: Duration = Duration::from_secs(60);

/// `claude-monitor run --summary-json <dir>/summary.json [extra] -- args...`, its stderr
/// captured. Without `--socket` in `extra`, `--no-daemon`: a daemon running on the host's
/// default socket must not change what these scenarios check.
fn run_cmd(dir: &Path, extra: &[&str], args: &[&str]) -> Command {
    let mut cmd = Command::new(agent_binary());
    cmd.arg("run")
        .arg("--summary-json")
        .arg(summary_path(dir))
        .args(extra);
    if !extra.contains(&"--socket") {
        cmd.arg("--no-daemon");
    }
    cmd.arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn summary_path(dir: &Path) -> PathBuf {
    dir.join("summary.json")
}

/// Waits for `run` to end: its exit status, its stderr and the summary it wrote.
fn finish(mut run: Spawned, dir: &Path) -> (i32, String, Value) {
    let status = run
        .wait_timeout(LIMIT)
        .unwrap_or_else(|| panic!("run did not end within {LIMIT:?}"));
    let mut stderr = String::new();
    if let Some(mut e) = run.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let code = status
        .code()
        .unwrap_or_else(|| panic!("run itself was killed: {status}\n{stderr}"));
    let text = std::fs::read_to_string(summary_path(dir))
        .unwrap_or_else(|e| panic!("no summary ({e}); stderr:\n{stderr}"));
    let summary: Value = serde_json::from_str(&text).expect("the summary is JSON");
    (code, stderr, summary)
}

/// The process named `comm` below `root`, once it exists.
fn wait_descendant(root: u32, comm: &str) -> u32 {
    let mut found = None;
    wait_until(LIMIT, &format!("{comm} under {root}"), || {
        found = descendants(root).into_iter().find(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        });
        found.is_some()
    });
    found.expect("found")
}

fn u(v: u32) -> u64 {
    u64::from(v)
}

/// The exit statuses 0 and 3 come back as `run`'s own; the summary says how it ended.
#[test]
fn run_passes_exit_codes_through() {
    if !privileged("run_passes_exit_codes_through") {
        return;
    }
    for code in [0, 3] {
        let dir = TempDir::new(&format!("cm-run-code-{code}"));
        let script = format!("exit {code}");
        let run = Spawned::spawn(&mut run_cmd(dir.path(), &[], &["sh", "-c", &script]));
        let (status, stderr, s) = finish(run, dir.path());
        assert_eq!(status, code, "{stderr}");
        assert_eq!(s["exit_status"], code, "{s}");
        assert_eq!(s["status"]["exit_code"], code);
        assert_eq!(s["status"]["signal"], Value::Null);
        assert_eq!(s["cause"], "exited");
        assert_eq!(s["source"], "kernel");
        assert_eq!(s["approximate"], false);
        assert_eq!(s["complete"], true);
        assert_eq!(s["processes"], 1, "{s}");
        assert_eq!(s["abnormal_total"], 0);
        assert_eq!(s["command"], serde_json::json!(["sh", "-c", script]));
        let sentence = s["sentence"].as_str().expect("sentence");
        assert!(
            sentence.starts_with(&format!(
                "sh (pid {}) exited with status {code} (",
                s["pid"]
            )),
            "{sentence}"
        );
        assert!(
            stderr.contains(&format!("claude-monitor: ended      {sentence}")),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("→ exit {code}")), "{stderr}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(summary_path(dir.path()))
            .expect("summary")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// SIGINT sent to `run` is forwarded to the command, which dies of it: `run` exits 130,
/// and the summary names the signal and who sent it (`run`, forwarding it).
#[test]
fn run_forwards_sigint_and_exits_130() {
    if !privileged("run_forwards_sigint_and_exits_130") {
        return;
    }
    let dir = TempDir::new("cm-run-sigint");
    let run = Spawned::spawn(&mut run_cmd(dir.path(), &[], &["sleep", "100"]));
    let run_pid = run.id();
    let sleep = wait_descendant(run_pid, "sleep");
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(run_pid as i32, libc::SIGINT) };
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 130, "{stderr}");
    assert_eq!(s["pid"].as_u64(), Some(u(sleep)));
    assert_eq!(s["status"]["signal"], 2);
    assert_eq!(s["status"]["signal_name"], "SIGINT");
    assert_eq!(s["cause"], "killed", "{s}");
    assert_eq!(s["killed_by"]["pid"].as_u64(), Some(u(run_pid)), "{s}");
    assert_eq!(s["killed_by"]["signal"], 2);
    assert!(
        s["sentence"]
            .as_str()
            .is_some_and(|t| t.contains("was killed by SIGINT")),
        "{s}"
    );
}

/// A grandchild OOM-killed in a child memory cgroup: the command exits 137 by itself
/// (its shell reports the kill), and the summary's likely cause is the grandchild's OOM
/// kill, with the cgroup and its limit.
#[test]
fn run_explains_a_grandchild_oom_kill() {
    if !privileged("run_explains_a_grandchild_oom_kill") {
        return;
    }
    const LIMIT_BYTES: u64 = 64 << 20;
    let name = format!("claude-monitor-run-{}", std::process::id());
    let cgroup = MemCgroup::create(&name, LIMIT_BYTES);
    let dir = TempDir::new("cm-run-oom");
    let memhog = helper("memhog", env!("CARGO_BIN_EXE_memhog"));
    // root sh -> inner sh (moves itself into the cgroup) -> memhog, the grandchild.
    // Escaped: the inner shell expands its own `$$` and `$?`, not the outer one.
    let inner = format!(
        "echo \\$\\$ > '{}/cgroup.procs' || exit 90; '{}' 300; exit \\$?",
        cgroup.path.display(),
        memhog.display()
    );
    let root = format!("sh -c \"{inner}\"; exit $?");
    let run = Spawned::spawn(&mut run_cmd(dir.path(), &[], &["sh", "-c", &root]));
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 137, "{stderr}\n{s}");
    assert_eq!(s["cause"], "exited", "{s}");
    assert_eq!(s["status"]["exit_code"], 137);
    assert_eq!(s["processes"], 3, "{s}");
    assert_eq!(s["abnormal_total"], 1, "{s}");
    let death = &s["abnormal"][0];
    assert_eq!(death["comm"], "memhog", "{s}");
    assert_eq!(death["cause"], "oom_killed");
    assert_eq!(death["depth"], 2);
    let likely = s["likely_cause"].as_str().expect("a likely cause");
    assert!(
        likely.starts_with(&format!(
            "its grandchild: memhog (pid {}) was killed by the kernel's OOM killer",
            death["pid"]
        )),
        "{likely}"
    );
    assert!(
        likely.contains(&format!("/{name} reached its 64.0 MiB limit")),
        "{likely}"
    );
    assert!(stderr.contains(&format!("likely {likely}")), "{stderr}");
    assert!(
        s["heaviest"]["comm"] == "memhog"
            && s["heaviest"]["peak_rss_kb"].as_u64() >= Some(40 << 10),
        "{s}"
    );
    drop(cgroup);
}

/// A child killed from outside: the sender (a `kill` process) is named in the death and in
/// the likely cause; the command's own status (5) is passed through.
#[test]
fn run_names_the_sender_of_an_outside_kill() {
    if !privileged("run_names_the_sender_of_an_outside_kill") {
        return;
    }
    let dir = TempDir::new("cm-run-kill");
    let run = Spawned::spawn(&mut run_cmd(
        dir.path(),
        &[],
        &["sh", "-c", "sleep 100; exit 5"],
    ));
    let sleep = wait_descendant(run.id(), "sleep");
    let mut kill = Command::new("/bin/kill")
        .args(["-TERM", &sleep.to_string()])
        .spawn()
        .expect("kill");
    let killer = kill.id();
    assert!(kill.wait().expect("kill").success());
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 5, "{stderr}");
    assert_eq!(s["abnormal_total"], 1, "{s}");
    let death = &s["abnormal"][0];
    assert_eq!(death["pid"].as_u64(), Some(u(sleep)));
    assert_eq!(death["cause"], "killed");
    assert_eq!(death["depth"], 1);
    assert_eq!(death["signal_name"], "SIGTERM");
    assert_eq!(death["killed_by"]["pid"].as_u64(), Some(u(killer)), "{s}");
    assert_eq!(death["killed_by"]["comm"], "kill");
    let likely = s["likely_cause"].as_str().expect("a likely cause");
    assert!(
        likely.starts_with(&format!(
            "its child: sleep (pid {sleep}) was killed by SIGTERM"
        )),
        "{likely}"
    );
    assert!(
        likely.contains(&format!("sent by kill (pid {killer}, uid 0)")),
        "{likely}"
    );
}

/// Children that live a millisecond are counted: the command, two `true` and a `sleep
/// 0.001`, each started and gone between any two polls.
#[test]
fn run_counts_every_short_lived_child() {
    if !privileged("run_counts_every_short_lived_child") {
        return;
    }
    let dir = TempDir::new("cm-run-short");
    let run = Spawned::spawn(&mut run_cmd(
        dir.path(),
        &[],
        &[
            "sh",
            "-c",
            "/bin/true & wait; /bin/true; sleep 0.001; exit 0",
        ],
    ));
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(s["processes"], 4, "{s}");
    assert_eq!(s["abnormal_total"], 0);
    assert_eq!(s["running"], serde_json::json!([]));
}

/// `--resources FILE.csv`: the header and one line per sample; the peaks in the summary.
#[test]
fn run_writes_resource_samples() {
    if !privileged("run_writes_resource_samples") {
        return;
    }
    let dir = TempDir::new("cm-run-res");
    let csv = dir.path().join("res.csv");
    let fifo = dir.path().join("go");
    claude_monitor_tests::mkfifo(&fifo);
    // The command waits on the FIFO: the scenario lets it go once two samples are in the
    // file (a fact), so the samples are of a running tree.
    let script = format!("read _ < '{}'; exit 0", fifo.display());
    let run = Spawned::spawn(&mut run_cmd(
        dir.path(),
        &[
            "--resources",
            csv.to_str().expect("path"),
            "--sample-interval",
            "0.1",
        ],
        &["sh", "-c", &script],
    ));
    wait_until(LIMIT, "two samples in the file", || {
        std::fs::read_to_string(&csv).is_ok_and(|t| t.lines().count() >= 3)
    });
    claude_monitor_tests::release_fifo(&fifo);
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 0, "{stderr}");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "ts,elapsed_s,processes,threads,rss_kb,vsz_kb,cpu_percent,top_pid,top_comm,top_rss_kb"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() >= 2, "{text}");
    let running: Vec<&Vec<&str>> = rows.iter().filter(|r| r[2] == "1").collect();
    assert!(!running.is_empty(), "{text}");
    for r in &running {
        assert_eq!(r.len(), 10, "{r:?}");
        assert_eq!(r[8], "sh", "{r:?}");
        assert!(r[4].parse::<u64>().expect("rss") > 0);
        assert!(r[5].parse::<u64>().expect("vsz") >= r[4].parse::<u64>().expect("rss"));
    }
    let peaks = &s["resources"];
    assert_eq!(peaks["samples"].as_u64(), Some(rows.len() as u64), "{s}");
    assert_eq!(peaks["peak_processes"], 1);
    let max_rss = rows.iter().map(|r| r[4].parse::<u64>().expect("rss")).max();
    assert_eq!(peaks["peak_rss_kb"].as_u64(), max_rss);
}

/// A system user made for the test (`useradd`), removed on drop, also when it fails.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn create(name: &str) -> TestUser {
        let _ = Command::new("userdel").arg(name).status();
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name}");
        let (uid, gid) = std::fs::read_to_string("/etc/passwd")
            .expect("/etc/passwd")
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name))
                    .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
            })
            .expect("the user's uid and gid");
        TestUser {
            name: name.to_owned(),
            uid,
            gid,
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Without privileges (a user the test creates, without a daemon): one line says why, the
/// command runs, its status is passed through, and the summary has the same shape, marked
/// approximate.
#[test]
fn run_without_privileges_polls_proc() {
    if !privileged("run_without_privileges_polls_proc") {
        return;
    }
    let user = TestUser::create(&format!("cmrun{}", std::process::id()));
    let dir = TempDir::new("cm-run-user");
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
    let mut cmd = run_cmd(dir.path(), &[], &["sh", "-c", "/bin/true; exit 4"]);
    cmd.uid(user.uid).gid(user.gid).current_dir(dir.path());
    let run = Spawned::spawn(&mut cmd);
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 4, "{stderr}");
    assert!(
        stderr.contains("claude-monitor: cannot load the kernel programs")
            && stderr.contains("watching by polling /proc"),
        "{stderr}"
    );
    assert_eq!(s["source"], "proc");
    assert_eq!(s["approximate"], true);
    assert_eq!(s["exit_status"], 4);
    assert_eq!(s["cause"], "exited");
    assert!(s["processes"].as_u64() >= Some(1), "{s}");
    assert!(
        s["sentence"]
            .as_str()
            .is_some_and(|t| t.contains("exited with status 4")),
        "{s}"
    );
    assert!(
        stderr.contains("approximate: short-lived processes may be missed"),
        "{stderr}"
    );
}

/// A command that does not exist: 127, as a shell says it, and nothing else runs.
#[test]
fn run_says_a_command_is_not_found() {
    if !privileged("run_says_a_command_is_not_found") {
        return;
    }
    let dir = TempDir::new("cm-run-missing");
    let run = Spawned::spawn(&mut run_cmd(dir.path(), &[], &["/nonexistent/cm-nothing"]));
    let mut run = run;
    let status = run.wait_timeout(LIMIT).expect("run ends");
    let mut stderr = String::new();
    if let Some(mut e) = run.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert_eq!(status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot run /nonexistent/cm-nothing: No such file or directory"),
        "{stderr}"
    );
}

/// `--restart` on a command that fails at once: restarted after 50, 100, 200 and 400 ms
/// (the seed's doubling, from `--restart-delay`), parked at the fifth rapid failure; `run`
/// exits with the command's status. Asserted on the counts and the order, not on time.
#[test]
fn run_restarts_with_backoff_then_parks() {
    if !privileged("run_restarts_with_backoff_then_parks") {
        return;
    }
    let dir = TempDir::new("cm-run-restart");
    let run = Spawned::spawn(&mut run_cmd(
        dir.path(),
        &["--restart", "--restart-delay", "0.05"],
        &["sh", "-c", "exit 1"],
    ));
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 1, "{stderr}");
    let sup = &s["supervision"];
    assert_eq!(sup["restarts"], 4, "{s}");
    assert_eq!(sup["runs_total"], 5);
    assert_eq!(
        sup["delays_ms"],
        serde_json::json!([50.0, 100.0, 200.0, 400.0])
    );
    assert_eq!(sup["decision"], "parked");
    assert!(
        sup["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("5 rapid failures in a row")),
        "{sup}"
    );
    let runs = sup["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 5);
    let pids: std::collections::BTreeSet<u64> =
        runs.iter().filter_map(|r| r["pid"].as_u64()).collect();
    assert_eq!(pids.len(), 5, "a new process each time: {runs:?}");
    assert!(
        runs.iter()
            .all(|r| r["exit_status"] == 1 && r["cause"] == "exited")
    );
    let restarts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("claude-monitor: restart "))
        .collect();
    assert_eq!(restarts.len(), 4, "{stderr}");
    for (i, (line, delay)) in restarts
        .iter()
        .zip(["50 ms", "100 ms", "200 ms", "400 ms"])
        .enumerate()
    {
        assert!(
            line.starts_with(&format!(
                "claude-monitor: restart    #{} in {delay} (",
                i + 1
            )),
            "{line}"
        );
    }
    assert!(
        stderr.contains("claude-monitor: parked     5 rapid failures in a row"),
        "{stderr}"
    );
    // Every death had its summary.
    assert_eq!(
        stderr.matches("claude-monitor: ended ").count(),
        5,
        "{stderr}"
    );
}

/// Exit status 78 (EX_CONFIG) parks at once.
#[test]
fn run_parks_on_exit_78() {
    if !privileged("run_parks_on_exit_78") {
        return;
    }
    let dir = TempDir::new("cm-run-78");
    let run = Spawned::spawn(&mut run_cmd(
        dir.path(),
        &["--restart", "--restart-delay", "0.05"],
        &["sh", "-c", "exit 78"],
    ));
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 78, "{stderr}");
    assert_eq!(s["supervision"]["restarts"], 0, "{s}");
    assert_eq!(s["supervision"]["decision"], "parked");
    assert!(stderr.contains("(EX_CONFIG)"), "{stderr}");
}

/// `claude-monitor status` lists a supervised run by its name; `claude-monitor stop NAME`
/// ends it: SIGTERM (which the command ignores), then SIGKILL after `--grace`; the command
/// is not restarted.
#[test]
fn run_status_and_stop() {
    if !privileged("run_status_and_stop") {
        return;
    }
    let dir = TempDir::new("cm-run-stop");
    let name = format!("cm-test-stop-{}", std::process::id());
    let run = Spawned::spawn(&mut run_cmd(
        dir.path(),
        &["--restart", "--grace", "0.5", "--name", &name],
        &["sh", "-c", "trap '' TERM; sleep 100"],
    ));
    let run_pid = run.id();
    let sleep = wait_descendant(run_pid, "sleep");
    let mut listed = Value::Null;
    wait_until(LIMIT, "the run in `status --json`", || {
        let out = Command::new(agent_binary())
            .args(["status", "--json"])
            .output()
            .expect("status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        listed = v["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["name"] == name.as_str()).cloned())
            .unwrap_or(Value::Null);
        listed["phase"] == "running"
    });
    assert_eq!(listed["id"].as_u64(), Some(u(run_pid)), "{listed}");
    assert_eq!(listed["supervised"], true);
    assert!(listed["child_pid"].as_u64().is_some(), "{listed}");
    let table = Command::new(agent_binary())
        .arg("status")
        .output()
        .expect("status");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{run_pid} ")) && l.contains(&name)),
        "{table}"
    );
    let stop = Command::new(agent_binary())
        .args(["stop", &name])
        .output()
        .expect("stop");
    let said = String::from_utf8_lossy(&stop.stdout);
    assert!(
        stop.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(said.contains(&format!("run {run_pid} ended")), "{said}");
    let (status, stderr, s) = finish(run, dir.path());
    assert_eq!(status, 137, "{stderr}");
    assert_eq!(s["status"]["signal_name"], "SIGKILL");
    assert!(
        stderr.contains("claude-monitor: stopping   SIGTERM sent to the command"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the grace period (500 ms) is over: SIGKILL"),
        "{stderr}"
    );
    assert_eq!(s["supervision"]["decision"], "done", "{s}");
    assert_eq!(s["supervision"]["restarts"], 0);
    // The command's child (which ignored SIGTERM too) got the group's SIGKILL.
    wait_until(LIMIT, "the command's child gone", || {
        std::fs::read_to_string(format!("/proc/{sleep}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    let after = Command::new(agent_binary())
        .args(["stop", &name])
        .output()
        .expect("stop");
    assert!(!after.status.success());
    assert!(
        String::from_utf8_lossy(&after.stderr).contains("no running `claude-monitor run`"),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
}

/// With a daemon on its socket, a user who is not root gets the kernel's facts: `run` asks
/// the daemon to watch the held command (`POST /v1/watch`) and reads its session's stream.
/// Every process is counted, the kill inside the tree has its sender, the status passes.
#[test]
fn run_through_the_daemon_socket() {
    if !privileged("run_through_the_daemon_socket") {
        return;
    }
    let tmp = TempDir::new(&format!("cm-run-daemon-{}", std::process::id()));
    let dir = tmp.path();
    // Reachable by a user who is not root.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let socket = dir.join("api.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[kernel]\npin = false\n[api]\nsocket = \"{}\"\n",
            dir.join("data").display(),
            socket.display()
        ),
    )
    .expect("config");
    let daemon = claude_monitor_tests::Agent::daemon(&config, &[]);
    let out = dir.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).expect("chown");
    let mut cmd = run_cmd(
        &out,
        &["--socket", socket.to_str().expect("path")],
        &["sh", "-c", "/bin/true; sh -c 'kill -9 $$'; exit 3"],
    );
    cmd.uid(NOBODY).gid(NOBODY).current_dir(&out);
    let run = Spawned::spawn(&mut cmd);
    let (status, stderr, s) = finish(run, &out);
    assert_eq!(status, 3, "{stderr}");
    assert!(!stderr.contains("cannot load"), "{stderr}");
    assert_eq!(s["source"], "daemon", "{s}");
    assert_eq!(s["approximate"], false);
    assert_eq!(s["complete"], true, "{s}");
    assert_eq!(s["processes"], 3, "sh, true, the inner sh: {s}");
    assert_eq!(s["abnormal_total"], 1, "{s}");
    let death = &s["abnormal"][0];
    assert_eq!(death["cause"], "killed");
    assert_eq!(death["signal_name"], "SIGKILL");
    assert_eq!(death["depth"], 1);
    assert_eq!(
        death["killed_by"]["pid"], death["pid"],
        "it killed itself: {s}"
    );
    assert_eq!(death["killed_by"]["uid"], NOBODY);
    assert!(
        s["sentence"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("sh (pid {}) exited with status 3", s["pid"]))),
        "{s}"
    );
    assert!(
        s["likely_cause"]
            .as_str()
            .is_some_and(|t| t.starts_with("its child: sh (pid ") && !t.contains("session")),
        "{s}"
    );
    // The daemon's own report of the command: reason `command_ended`.
    let reports = dir.join("data/reports");
    let mut reason = Value::Null;
    wait_until(LIMIT, "the daemon's report of the command", || {
        reason = std::fs::read_dir(&reports)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
            .find(|r| r["process"]["pid"] == s["pid"])
            .map_or(Value::Null, |r| r["reason"].clone());
        !reason.is_null()
    });
    assert_eq!(reason, "command_ended");
    daemon.stop(Vec::new());
}

/// A private tmux server running an interactive bash, killed on drop.
struct Terminal {
    socket: PathBuf,
}

impl Terminal {
    fn start(dir: &Path) -> Terminal {
        let t = Terminal {
            socket: dir.join("tmux.sock"),
        };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "160",
            "-y",
            "40",
            "--",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        assert!(out.status.success(), "tmux: {out:?}");
        t
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux (the terminal scenarios need it)")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(LIMIT, what, || {
                last = self.screen();
                pred(&last)
            });
        }));
        if let Err(p) = found {
            eprintln!("screen:\n{last}");
            std::panic::resume_unwind(p);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The process state letter of `pid` (`T` stopped).
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Job control in a real terminal, as a shell user sees it: the command gets the terminal
/// (Ctrl-Z stops it and `run`, the shell says Stopped), `fg` continues both, Ctrl-C reaches
/// the command only, and `run` exits 130 after its summary.
#[test]
fn run_keeps_job_control_in_a_terminal() {
    if !privileged("run_keeps_job_control_in_a_terminal") {
        return;
    }
    let dir = TempDir::new(&format!("cm-run-tty-{}", std::process::id()));
    let term = Terminal::start(dir.path());
    let line = format!("{} run --no-daemon -- sleep 100", agent_binary().display());
    term.keys(&[&line, "Enter"]);
    // The command runs: its sleep, under `run`, itself under the pane's bash.
    let mut sleep = 0;
    wait_until(LIMIT, "sleep 100 under run in the terminal", || {
        let out = term.tmux(&["display-message", "-p", "-t", "t", "#{pane_pid}"]);
        let bash: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        sleep = descendants(bash)
            .into_iter()
            .find(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            })
            .unwrap_or(0);
        sleep != 0
    });
    let run_pid = std::fs::read_to_string(format!("/proc/{sleep}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse::<u32>()
                .ok()
        })
        .expect("sleep's parent");
    term.keys(&["C-z"]);
    term.wait_screen("the shell's Stopped", |s| s.contains("Stopped"));
    wait_until(LIMIT, "both stopped", || {
        state_of(sleep) == Some('T') && state_of(run_pid) == Some('T')
    });
    term.keys(&["fg", "Enter"]);
    wait_until(LIMIT, "both running again", || {
        state_of(sleep).is_some_and(|c| c != 'T') && state_of(run_pid).is_some_and(|c| c != 'T')
    });
    term.keys(&["C-c"]);
    term.wait_screen("run's summary", |s| s.contains("→ exit 130"));
    // The shell's `$?` after `fg` is the job's status: run's.
    term.keys(&["echo rc=$?", "Enter"]);
    term.wait_screen("run's status", |s| s.contains("rc=130"));
    let screen = term.screen();
    assert!(
        screen.contains(&format!(
            "claude-monitor: ended      sleep (pid {sleep}) was killed by the kernel with SIGINT"
        )),
        "{screen}"
    );
    assert!(screen.contains("→ exit 130"), "{screen}");
}

//! Real-kernel scenarios for the event engine: each starts the agent, provokes real exits,
//! signals and OOM kills, and checks exact fields. Run as root (`cargo xtask test`), one at
//! a time.

use std::{
    collections::{HashMap, HashSet},
    io::BufRead as _,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use claude_monitor_tests::{
    Agent, CgroupVersion, MemCgroup, Spawned, TempDir, assert_nothing_lost, descendants, helper,
    of, privileged, storm_size, wait_until,
};
use serde_json::Value;

const HOOKS: [&str; 6] = [
    "sched_process_exit",
    "sched_process_fork",
    "sched_process_exec",
    "signal_generate",
    "signal_deliver",
    "mark_victim",
];

fn me() -> String {
    std::process::id().to_string()
}

fn u(v: u32) -> u64 {
    u64::from(v)
}

#[test]
fn agent_start_lists_every_hook() {
    if !privileged("agent_start_lists_every_hook") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let start = agent.start.clone();
    let events = agent.stop(Vec::new());
    assert_eq!(start["v"], 1);
    assert_eq!(start["scope"]["mode"], "pids");
    assert_eq!(
        start["scope"]["pids"][0].as_u64(),
        Some(u(std::process::id()))
    );
    let hooks: Vec<&str> = start["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for hook in HOOKS {
        assert!(hooks.contains(&hook), "{hook} not attached: {start}");
    }
    assert_eq!(start["hooks_unavailable"], serde_json::json!([]), "{start}");
    assert_nothing_lost(&events);
}

#[test]
fn exit_code_42() {
    if !privileged("exit_code_42") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let mut child = Command::new("sh")
        .args(["-c", "exit 42"])
        .spawn()
        .expect("sh");
    let pid = child.id();
    assert_eq!(child.wait().expect("wait").code(), Some(42));
    let events = agent.stop(Vec::new());

    let exits = of(&events, "exit", pid);
    assert_eq!(exits.len(), 1, "exactly one exit for {pid}: {exits:?}");
    let e = exits[0];
    assert_eq!(e["exit_code"], 42);
    assert_eq!(e["signal"], Value::Null);
    assert_eq!(e["signal_name"], Value::Null);
    assert_eq!(e["core_dumped"], false);
    assert_eq!(e["comm"], "sh");
    assert_eq!(e["tid"].as_u64(), Some(u(pid)));
    assert_eq!(e["ppid"].as_u64(), Some(u(std::process::id())));
    assert_eq!(e["uid"], 0);
    assert!(e["peak_rss_kb"].as_u64().is_some_and(|kb| kb > 0), "{e}");
    // The child was forked and exec'd under the watched root: fork and exec were seen too.
    assert_eq!(of(&events, "fork", pid).len(), 1);
    let exec = of(&events, "exec", pid);
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0]["filename"]
            .as_str()
            .is_some_and(|f| f.ends_with("sh")),
        "{}",
        exec[0]
    );
    assert_nothing_lost(&events);
}

#[test]
fn sigterm_from_a_known_sender() {
    if !privileged("sigterm_from_a_known_sender") {
        return;
    }
    let mut agent = Agent::start(&["--pid", &me()]);
    let spawned = Instant::now();
    let mut sleeper = Spawned::spawn(Command::new("sleep").arg("30"));
    let target = sleeper.id();
    // The target is `sleep` (its exec seen) and has lived at least 100 ms before the kill.
    let mut seen = Vec::new();
    agent.wait_for(&mut seen, Duration::from_secs(30), |e| {
        e["kind"] == "exec" && e["pid"].as_u64() == Some(u(target))
    });
    while spawned.elapsed() < Duration::from_millis(100) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The sender: a shell whose pid we know, using its kill builtin (no exec).
    let mut sender = Command::new("sh")
        .args(["-c", "kill -TERM \"$1\"", "sh", &target.to_string()])
        .spawn()
        .expect("sh");
    let sender_pid = sender.id();
    assert!(sender.wait().expect("wait").success());
    let status = sleeper.wait();
    assert_eq!(status.signal(), Some(15));
    let events = agent.stop(seen);

    let signals: Vec<&Value> = of(&events, "signal", target)
        .into_iter()
        .filter(|e| e["signal"] == 15)
        .collect();
    assert_eq!(signals.len(), 1, "{signals:?}");
    let s = signals[0];
    assert_eq!(s["signal_name"], "SIGTERM");
    assert_eq!(s["si_code_name"], "SI_USER");
    assert_eq!(s["si_code"], 0);
    assert_eq!(s["result"], "delivered");
    assert_eq!(s["group"], true);
    assert_eq!(s["sender"]["pid"].as_u64(), Some(u(sender_pid)));
    assert_eq!(s["sender"]["tid"].as_u64(), Some(u(sender_pid)));
    assert_eq!(s["sender"]["comm"], "sh");
    assert_eq!(s["sender"]["uid"], 0);
    assert_eq!(s["target"]["pid"].as_u64(), Some(u(target)));
    assert_eq!(s["target"]["comm"], "sleep");
    assert_eq!(s["comm"], "sleep");

    let exits = of(&events, "exit", target);
    assert_eq!(exits.len(), 1, "{exits:?}");
    let e = exits[0];
    assert_eq!(e["signal"], 15);
    assert_eq!(e["signal_name"], "SIGTERM");
    assert_eq!(e["exit_code"], Value::Null);
    assert_eq!(e["core_dumped"], false);
    assert!(e["duration_ms"].as_f64().is_some_and(|d| d >= 90.0), "{e}");
    // The signal was generated before the exit it caused.
    let pos = |x: &Value| events.iter().position(|e| e == x).expect("present");
    assert!(pos(s) < pos(e));
    assert_nothing_lost(&events);
}

#[test]
fn oom_kill_in_a_memory_cgroup() {
    if !privileged("oom_kill_in_a_memory_cgroup") {
        return;
    }
    const LIMIT: u64 = 64 << 20;
    let name = format!("claude-monitor-test-{}", std::process::id());
    let cgroup = MemCgroup::create(&name, LIMIT);
    let agent = Agent::start(&["--pid", &me()]);
    let version = match cgroup.version {
        CgroupVersion::V1 => "v1",
        CgroupVersion::V2 => "v2",
    };
    assert_eq!(
        agent.start["memory_cgroup"]["version"], version,
        "{}",
        agent.start
    );
    // The hog is started by a shell that first moves itself into the cgroup. Not spawned
    // directly: a child vfork'ed from this (large) test process would inherit its peak RSS
    // through exec (signal->maxrss), and the peak check below is about the hog's own.
    let mut shell = Command::new("sh")
        .args([
            "-c",
            "echo $$ > \"$1/cgroup.procs\" || exit 90; \"$2\" 300 </dev/null & echo $!; wait $!",
            "sh",
        ])
        .arg(&cgroup.path)
        .arg(helper("memhog", env!("CARGO_BIN_EXE_memhog")))
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut out = std::io::BufReader::new(shell.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("hog pid");
    let pid: u32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no hog pid: {line:?}"));
    let status = shell.wait().expect("wait");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "memhog was not OOM-killed: {status}, {rest}"
    );
    let events = agent.stop(Vec::new());

    let ooms = of(&events, "oom", pid);
    assert_eq!(ooms.len(), 1, "{ooms:?}");
    let o = ooms[0];
    assert_eq!(o["victim"]["pid"].as_u64(), Some(u(pid)));
    assert_eq!(o["victim"]["comm"], "memhog");
    assert_eq!(o["victim"]["uid"], 0);
    // A cgroup OOM is triggered by the victim's own allocation.
    assert_eq!(o["trigger"]["pid"].as_u64(), Some(u(pid)));
    assert_eq!(o["memcg_id"].as_u64(), Some(cgroup.id()), "{o}");
    let path_ok = |v: &Value| v.as_str().is_some_and(|p| p.ends_with(&format!("/{name}")));
    assert!(path_ok(&o["memcg_path"]), "{o}");
    let anon = o["anon_rss_kb"].as_u64().expect("anon_rss_kb");
    assert!(
        (40 << 10..=(LIMIT >> 10)).contains(&anon),
        "anon rss {anon} KiB: {o}"
    );
    assert!(o["total_vm_kb"].as_u64().expect("total_vm") >= anon);
    assert!(o["pgtables_kb"].as_u64().expect("pgtables") > 0);
    assert_eq!(o["oom_score_adj"], 0);

    let kills: Vec<&Value> = of(&events, "signal", pid)
        .into_iter()
        .filter(|e| e["signal"] == 9)
        .collect();
    assert!(!kills.is_empty(), "no SIGKILL signal event");
    assert_eq!(kills[0]["si_code_name"], "SI_KERNEL");

    let exits = of(&events, "exit", pid);
    assert_eq!(exits.len(), 1, "{exits:?}");
    let e = exits[0];
    assert_eq!(e["signal"], 9);
    assert_eq!(e["signal_name"], "SIGKILL");
    assert_eq!(e["memcg_id"].as_u64(), Some(cgroup.id()));
    assert!(path_ok(&e["memcg_path"]), "{e}");
    let peak = e["peak_rss_kb"].as_u64().expect("peak");
    let limit_kb = LIMIT >> 10;
    assert!(
        peak.abs_diff(limit_kb) * 10 <= limit_kb,
        "peak rss {peak} KiB not within 10% of the {limit_kb} KiB limit"
    );
    // Order: the kill, the victim mark, the exit.
    let pos = |x: &Value| events.iter().position(|e| e == x).expect("present");
    assert!(pos(kills[0]) < pos(e) && pos(o) < pos(e));
    assert_nothing_lost(&events);
}

#[test]
fn exit_group_from_a_non_leader_thread() {
    if !privileged("exit_group_from_a_non_leader_thread") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let mut child = Command::new(helper("threadexit", env!("CARGO_BIN_EXE_threadexit")))
        .arg("7")
        .spawn()
        .expect("threadexit");
    let pid = child.id();
    assert_eq!(child.wait().expect("wait").code(), Some(7));
    let events = agent.stop(Vec::new());

    let exits = of(&events, "exit", pid);
    assert_eq!(
        exits.len(),
        1,
        "exactly one exit for the 4-thread process: {exits:?}"
    );
    assert_eq!(exits[0]["exit_code"], 7);
    assert_eq!(exits[0]["pid"].as_u64(), Some(u(pid)));
    assert_eq!(exits[0]["signal"], Value::Null);
    // The process's lifetime (its leader alone slept 200 ms first), not the last
    // thread's (it calls exit_group as soon as it runs).
    assert!(
        exits[0]["duration_ms"].as_f64().is_some_and(|d| d >= 200.0),
        "{}",
        exits[0]
    );
    // `comm` is the process's name (the leader's), whichever thread was the last out; that
    // thread's own name is `thread_comm`, there only when it is not the leader.
    assert_thread_names(exits[0], pid);
    // The group exit's SIGKILL, taken by the three other threads: only the leader's is
    // reported (the leader was alive and is not the thread that called exit_group).
    let kills = of(&events, "signal_deliver", pid);
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["tid"].as_u64(), Some(u(pid)), "{}", kills[0]);
    assert_eq!(kills[0]["signal"], 9);
    assert_eq!(kills[0]["comm"], "threadexit");
    assert!(kills[0].get("thread_comm").is_none(), "{}", kills[0]);
    let stop = events.last().expect("agent_stop");
    assert!(
        stop["filtered"]["group_kill_deliver"].as_u64() >= Some(2),
        "{stop}"
    );

    // Threads are not processes: no fork events other than the process itself.
    let forks: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "fork" && e["ppid"].as_u64() == Some(u(pid)))
        .collect();
    assert!(
        forks.is_empty(),
        "thread creation reported as fork: {forks:?}"
    );
    assert_nothing_lost(&events);

    // The leader leaves first: the last thread out is a worker, the leader a zombie whose
    // name is still the process's.
    let agent = Agent::start(&["--pid", &me()]);
    let mut child = Command::new(helper("threadexit", env!("CARGO_BIN_EXE_threadexit")))
        .args(["7", "leader-first"])
        .spawn()
        .expect("threadexit");
    let pid = child.id();
    assert_eq!(child.wait().expect("wait").code(), Some(7));
    let late = agent.stop(Vec::new());
    let exits = of(&late, "exit", pid);
    assert_eq!(exits.len(), 1, "{exits:?}");
    let e = exits[0];
    assert_eq!(e["exit_code"], 7);
    assert_ne!(e["tid"].as_u64(), Some(u(pid)), "{e}");
    assert_thread_names(e, pid);
    assert!(e["duration_ms"].as_f64().is_some_and(|d| d >= 200.0), "{e}");
    // No leader to take the group's SIGKILL: no delivery at all.
    assert_eq!(of(&late, "signal_deliver", pid), Vec::<&Value>::new());
    assert_nothing_lost(&late);
}

/// The names of a record about a thread of the `threadexit` helper: `comm` is the
/// process's, and `thread_comm` the thread's when the thread is not the leader.
fn assert_thread_names(e: &Value, pid: u32) {
    assert_eq!(e["comm"], "threadexit", "{e}");
    if e["tid"].as_u64() == Some(u(pid)) {
        assert!(e.get("thread_comm").is_none(), "{e}");
    } else {
        assert_eq!(e["thread_comm"], "te-worker", "{e}");
    }
}

/// `--pid ROOT` on a tree three levels deep: root shell -> child shell -> grandchildren,
/// one grandchild existing before the agent, one started after it. Everything in the tree
/// is reported, nothing outside it.
#[test]
fn pid_scope_follows_a_tree() {
    if !privileged("pid_scope_follows_a_tree") {
        return;
    }
    let tmp = TempDir::new(&format!("claude-monitor-tree-{}", std::process::id()));
    let dir = tmp.path();
    let go = dir.join("go");
    let ready = dir.join("ready");
    let wait_go = format!("while [ ! -e {} ]; do sleep 0.05; done", go.display());
    // level 2: starts grandchild A (pre-existing), signals ready, waits for go, then starts
    // grandchild B (new), waits for both and exits 13. The root waits for it and exits 14.
    let level3a = format!("{wait_go}; exit 11");
    let level2 = format!(
        "sh -c '{level3a}' & touch {ready}; {wait_go}; sh -c 'exit 12'; wait; exit 13",
        ready = ready.display()
    );
    let script = format!("sh -c \"{level2}\"; exit 14");
    let mut root = Spawned::spawn(Command::new("sh").args(["-c", &script]));
    let root_pid = root.id();
    // Grandchild A is forked before `ready` is created: the tree is three levels deep.
    wait_until(Duration::from_secs(30), "the ready file", || ready.exists());
    let mut tree: HashSet<u64> = descendants(root_pid).into_iter().map(u).collect();
    assert!(
        tree.len() >= 3,
        "the tree is not three levels deep yet: {tree:?}"
    );
    let agent = Agent::start(&["--pid", &root_pid.to_string()]);
    assert!(
        agent.start["scope"]["watched_at_start"]
            .as_u64()
            .is_some_and(|n| n >= 3),
        "{}",
        agent.start
    );

    // Outside the tree: must not be reported.
    let mut outside = Command::new("sh")
        .args(["-c", "exit 99"])
        .spawn()
        .expect("sh");
    let outside_pid = outside.id();
    outside.wait().expect("wait");
    std::fs::write(&go, b"").expect("go");
    assert_eq!(root.wait().code(), Some(14));
    let events = agent.stop(Vec::new());

    assert!(
        events
            .iter()
            .all(|e| e["pid"].as_u64() != Some(u(outside_pid))),
        "outside process reported"
    );
    // Tree membership, in event order: the processes present at start (snapshot above),
    // children forked inside the tree, and processes whose parent is in the tree (a child
    // forked between the snapshot and the agent's attach shows up first in exec or exit).
    for e in &events {
        let (Some(pid), Some(ppid)) = (e["pid"].as_u64(), e["ppid"].as_u64()) else {
            continue;
        };
        match e["kind"].as_str() {
            Some("fork") => {
                assert!(tree.contains(&ppid), "fork outside the tree: {e}");
                tree.insert(pid);
            }
            Some("exec" | "exit") if tree.contains(&ppid) => {
                tree.insert(pid);
            }
            _ => {}
        }
    }
    for e in events
        .iter()
        .filter(|e| matches!(e["kind"].as_str(), Some("exit" | "fork" | "exec")))
    {
        assert!(
            tree.contains(&e["pid"].as_u64().expect("pid")),
            "event outside the tree: {e}"
        );
    }
    let codes: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "exit")
        .filter_map(|e| e["exit_code"].as_u64())
        .filter(|c| (11..=14).contains(c))
        .collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![11, 12, 13, 14], "exits of the tree: {codes:?}");
    let root_exit = of(&events, "exit", root_pid);
    assert_eq!(root_exit.len(), 1);
    assert_eq!(root_exit[0]["exit_code"], 14);
    assert_nothing_lost(&events);
}

#[test]
fn five_thousand_short_lived_processes() {
    if !privileged("five_thousand_short_lived_processes") {
        return;
    }
    let n = storm_size(5000);
    let agent = Agent::start(&["--pid", &me()]);
    // Pids, each with the number of processes that had it: a pid can come round again
    // during the storm (another run writing ns_last_pid, as the pid-reuse scenario does).
    let mut spawned: HashMap<u64, usize> = HashMap::new();
    for _ in 0..n {
        let mut c = Command::new("/bin/true").spawn().expect("true");
        *spawned.entry(u(c.id())).or_default() += 1;
        assert!(c.wait().expect("wait").success());
    }
    let events = agent.stop(Vec::new());
    let exits: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["kind"] == "exit" && e["pid"].as_u64().is_some_and(|p| spawned.contains_key(&p))
        })
        .collect();
    assert_eq!(exits.len(), n, "exit events for the {n} processes");
    // Exactly one exit per process.
    let mut exited: HashMap<u64, usize> = HashMap::new();
    for e in &exits {
        *exited.entry(e["pid"].as_u64().expect("pid")).or_default() += 1;
    }
    let wrong: Vec<(u64, usize, usize)> = spawned
        .iter()
        .map(|(&pid, &n)| (pid, n, exited.get(&pid).copied().unwrap_or(0)))
        .filter(|&(_, n, got)| n != got)
        .collect();
    assert!(wrong.is_empty(), "(pid, processes, exits): {wrong:?}");
    assert!(
        exits
            .iter()
            .all(|e| e["exit_code"] == 0 && e["comm"] == "true")
    );
    assert_nothing_lost(&events);
}

#[test]
fn closed_stdout_ends_quietly() {
    if !privileged("closed_stdout_ends_quietly") {
        return;
    }
    let mut child = Command::new(claude_monitor_tests::agent_binary())
        .args(["trace", "--all", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).expect("read");
    assert!(first.contains("\"agent_start\""), "{first}");
    drop(out);
    // Make events until the agent has written into the closed pipe and ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent did not end within 30 s of its stdout being closed");
        }
        let _ = Command::new("/bin/true").status();
    }
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "exit status {}", output.status);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "stderr must be empty"
    );
}

#[test]
fn unprivileged_run_names_the_capabilities() {
    if !privileged("unprivileged_run_names_the_capabilities") {
        return;
    }
    let output = Command::new(claude_monitor_tests::agent_binary())
        .args(["trace", "--all"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("agent");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CAP_BPF") && stderr.contains("CAP_PERFMON"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

/// A full ring buffer is never silent: with a one-page ring and the agent stopped while
/// 300 processes come and go, the kernel's failed reserves come out as `lost` records whose
/// counts add up to `agent_stop.lost`.
#[test]
fn full_ring_buffer_is_reported_as_lost() {
    if !privileged("full_ring_buffer_is_reported_as_lost") {
        return;
    }
    let agent = Agent::start(&["--pid", &me(), "--ring-buffer-kb", "4"]);
    let agent_pid = agent.pid() as i32;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(agent_pid, libc::SIGSTOP) };
    wait_until(Duration::from_secs(10), "the agent to be stopped", || {
        process_state(agent_pid) == Some('T')
    });
    let mut pids = HashSet::new();
    for _ in 0..300 {
        let mut c = Command::new("/bin/true").spawn().expect("true");
        pids.insert(u(c.id()));
        c.wait().expect("wait");
    }
    // SAFETY: as above.
    unsafe { libc::kill(agent_pid, libc::SIGCONT) };
    // The agent reads the ring and the kernel's loss counters once more before agent_stop.
    let events = agent.stop(Vec::new());
    let lost: u64 = events
        .iter()
        .filter(|e| e["kind"] == "lost" && e["reason"] == "ring_buffer_full")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    let stop = events.last().expect("stop");
    assert!(lost > 0, "a 4 KiB ring cannot hold 1200 records: {stop}");
    assert_eq!(stop["lost"].as_u64(), Some(lost), "{stop}");
    // Records that did fit are intact: exits still decode and carry a code.
    let exits = events
        .iter()
        .filter(|e| e["kind"] == "exit" && e["pid"].as_u64().is_some_and(|p| pids.contains(&p)));
    assert!(exits.clone().count() < 300);
    assert!(exits.into_iter().all(|e| e["exit_code"] == 0));
}

/// exec folds the parent's peak into `signal->maxrss`: a `true` exec'd from a 300 MiB parent
/// has a 300 MiB `peak_rss_kb`, but its `own_peak_rss_kb` is its own, small one.
#[test]
fn own_peak_excludes_what_exec_carried_over() {
    if !privileged("own_peak_excludes_what_exec_carried_over") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let start = agent.start.clone();
    let mut parent = Command::new(helper("bigparent", env!("CARGO_BIN_EXE_bigparent")))
        .args(["300", "/bin/sh", "-c", "exit 5"])
        .spawn()
        .expect("bigparent");
    let parent_pid = parent.id();
    assert_eq!(parent.wait().expect("wait").code(), Some(5));
    let events = agent.stop(Vec::new());
    let child = events
        .iter()
        .find(|e| e["kind"] == "exit" && e["ppid"].as_u64() == Some(u(parent_pid)))
        .unwrap_or_else(|| panic!("no exit of the child of {parent_pid}"));
    assert_eq!(child["exit_code"], 5);
    let inherited = child["peak_rss_kb"].as_u64().expect("peak");
    assert!(
        inherited >= 300 << 10,
        "maxrss should carry the parent's peak: {child}"
    );
    // Where the exit tracepoint runs after the address space is released (kernels before
    // ~6.16, said in agent_start's notes), the own peak may be unknown (null), never wrong.
    let exact = !notes_mention(&start, "own_peak_rss_kb");
    match (child["own_peak_rss_kb"].as_u64(), exact) {
        (Some(own), _) => assert!(
            (100..16 << 10).contains(&own),
            "own peak of sh should be small: {child}"
        ),
        (None, true) => panic!("no own peak on a kernel that should give it: {child}"),
        (None, false) => {}
    }
    let parent_exit = of(&events, "exit", parent_pid);
    match (parent_exit[0]["own_peak_rss_kb"].as_u64(), exact) {
        (Some(own), _) => assert!(own >= 300 << 10, "{}", parent_exit[0]),
        (None, true) => panic!("no own peak: {}", parent_exit[0]),
        (None, false) => {}
    }
    assert_nothing_lost(&events);
}

/// The state letter of /proc/PID/stat (`R`, `S`, `T`...).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn notes_mention(start: &Value, what: &str) -> bool {
    start["notes"].as_array().is_some_and(|n| {
        n.iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains(what)))
    })
}

/// The exec record carries the start of argv, read in the kernel: there even for a process
/// gone long before the record is read; cut at 128 bytes, and flagged so.
#[test]
fn exec_argv_is_captured_in_the_kernel() {
    if !privileged("exec_argv_is_captured_in_the_kernel") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let long = "y".repeat(300);
    // An empty environment and a short command line: the argument area ends a few bytes
    // below the top of the stack.
    let short = Command::new("/bin/sh")
        .env_clear()
        .args(["-c", "exit 7", "zero", ""])
        .status()
        .expect("sh");
    assert_eq!(short.code(), Some(7));
    let mut cut = Command::new("/bin/sh")
        .args(["-c", "exit 0", &long])
        .spawn()
        .expect("sh");
    let cut_pid = cut.id();
    cut.wait().expect("wait");
    let events = agent.stop(Vec::new());
    let execs: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "exec").collect();
    let short = execs
        .iter()
        .find(|e| e["argv"][2] == "exit 7")
        .unwrap_or_else(|| panic!("no exec with the short argv: {execs:?}"));
    assert_eq!(
        short["argv"],
        serde_json::json!(["/bin/sh", "-c", "exit 7", "zero", ""]),
        "{short}"
    );
    assert_eq!(short["argv_truncated"], false);
    let cut = of(&events, "exec", cut_pid);
    let argv = cut[0]["argv"].as_array().expect("argv");
    assert_eq!(cut[0]["argv_truncated"], true, "{}", cut[0]);
    assert_eq!(argv.len(), 4);
    assert_eq!(
        argv[3].as_str().map(str::len),
        Some(128 - "/bin/sh\0-c\0exit 0\0".len())
    );
}

/// Secrets on a command line never reach the stream: the kernel captures them at exec,
/// the agent writes the exec with their values redacted (names kept).
#[test]
fn secrets_on_a_command_line_are_redacted() {
    if !privileged("secrets_on_a_command_line_are_redacted") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let secret = "sk-ant-oat01-NotARealKeyButShaped";
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "exit 0",
            "--password",
            "hunter2",
            &format!("key={secret}"),
        ])
        .spawn()
        .expect("sh");
    let pid = child.id();
    child.wait().expect("wait");
    let events = agent.stop(Vec::new());
    let exec = of(&events, "exec", pid);
    assert_eq!(
        exec[0]["argv"],
        serde_json::json!([
            "/bin/sh",
            "-c",
            "exit 0",
            "--password",
            "[REDACTED]",
            "key=[REDACTED]"
        ]),
        "{}",
        exec[0]
    );
    let all = serde_json::to_string(&events).expect("json");
    assert!(
        !all.contains("hunter2") && !all.contains(secret),
        "a secret in the stream"
    );

    // `--no-redact`: written as passed, and agent_start says so.
    let agent = Agent::start(&["--pid", &me(), "--no-redact"]);
    let notes = agent.start["notes"].to_string();
    assert!(notes.contains("redaction is off"), "{notes}");
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 0", "--password", "hunter2"])
        .spawn()
        .expect("sh");
    let pid = child.id();
    child.wait().expect("wait");
    let events = agent.stop(Vec::new());
    let exec = of(&events, "exec", pid);
    assert_eq!(
        exec[0]["argv"],
        serde_json::json!(["/bin/sh", "-c", "exit 0", "--password", "hunter2"]),
        "{}",
        exec[0]
    );
}

/// Delivery records carry the target's disposition: a handler ran, a fatal default action
/// (the kernel turns it into a group SIGKILL, delivered as such); an ignored signal is
/// discarded at generation and never delivered. SIGCHLD is dropped in the kernel.
#[test]
fn signal_delivery_reports_the_disposition() {
    if !privileged("signal_delivery_reports_the_disposition") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    // USR1 and HUP come from subshells, other processes: a process's own non-fatal signals
    // are runtime signals, not reported by default (see the runtime_signals scenario).
    let mut child = Command::new("sh")
        .args([
            "-c",
            r#"trap "true" USR1; trap "" HUP; (kill -USR1 $$); (kill -HUP $$); kill -TERM $$"#,
        ])
        .spawn()
        .expect("bash");
    let pid = child.id();
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(15));
    let events = agent.stop(Vec::new());
    let delivered = of(&events, "signal_deliver", pid);
    let usr1 = delivered
        .iter()
        .find(|e| e["signal"] == 10)
        .unwrap_or_else(|| panic!("no SIGUSR1 delivery: {delivered:?}"));
    assert_eq!(usr1["disposition"], "handler", "{usr1}");
    assert_eq!(usr1["outcome"], "handler");
    assert_eq!(usr1["default_action"], "terminate");
    assert_eq!(usr1["count"], 1);
    // SIGHUP was ignored: generated with result `ignored`, never delivered.
    let hup: Vec<&Value> = of(&events, "signal", pid)
        .into_iter()
        .filter(|e| e["signal"] == 1)
        .collect();
    assert_eq!(hup.len(), 1, "{hup:?}");
    assert_eq!(hup[0]["result"], "ignored");
    assert!(delivered.iter().all(|e| e["signal"] != 1), "{delivered:?}");
    // The fatal SIGTERM is taken as the group SIGKILL the kernel made of it.
    let kill = delivered
        .iter()
        .find(|e| e["signal"] == 9)
        .unwrap_or_else(|| panic!("no SIGKILL delivery: {delivered:?}"));
    assert_eq!(kill["disposition"], "default", "{kill}");
    assert_eq!(kill["outcome"], "terminate");
    // Every exit sends SIGCHLD to its parent; none is reported by default.
    assert!(
        events.iter().all(|e| e["signal"] != 17),
        "SIGCHLD reported without --ignored-signals"
    );
    assert_nothing_lost(&events);
}

/// A flood of one signal between two processes: the kernel reports the first ones one by
/// one and counts the rest; the counts add up to every call made, nothing lost.
#[test]
fn signal_flood_is_counted_in_the_kernel() {
    if !privileged("signal_flood_is_counted_in_the_kernel") {
        return;
    }
    let n = storm_size(50_000);
    let mut agent = Agent::start(&["--pid", &me()]);
    let sigstorm = helper("sigstorm", env!("CARGO_BIN_EXE_sigstorm"));
    let out = Command::new(&sigstorm)
        .args(["flood", &n.to_string()])
        .output()
        .expect("sigstorm");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    let (sender, target, ok) = (field("sender"), field("target"), field("ok"));
    assert_eq!(ok, n as u64);
    let of_flood = |e: &Value| {
        e["kind"] == "signal"
            && e["signal"] == 10
            && e["sender"]["pid"].as_u64() == Some(sender)
            && e["pid"].as_u64() == Some(target)
    };
    let counted = |events: &[Value]| -> u64 {
        events
            .iter()
            .filter(|e| of_flood(e))
            .filter_map(|e| e["count"].as_u64())
            .sum()
    };
    // The last aggregate is read at one of the agent's ticks (every 500 ms).
    let mut seen = Vec::new();
    agent.wait_until(&mut seen, Duration::from_secs(30), |events| {
        counted(events) >= n as u64
    });
    let events = agent.stop(seen);
    let flood: Vec<&Value> = events.iter().filter(|e| of_flood(e)).collect();
    let counted: u64 = flood.iter().filter_map(|e| e["count"].as_u64()).sum();
    assert_eq!(counted, n as u64, "{} records", flood.len());
    assert!(
        flood.len() < n / 10,
        "{} records for {n} signals: not aggregated",
        flood.len()
    );
    assert!(flood.iter().any(|e| e["count"].as_u64() > Some(1)));
    assert_nothing_lost(&events);
}

/// What the `threadsignal` helper printed: `key=value` fields.
fn helper_field(line: &str, key: &str) -> u32 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// A process signalling its own thread the way the Bun/JavaScriptCore runtime does for
/// garbage collection (SIGPWR with tgkill, caught by a handler): by default neither the
/// signals nor their deliveries are reported, and `agent_stop.filtered` counts every one;
/// with `--runtime-signals` they are all reported, named after the process and the thread.
#[test]
fn runtime_signals_to_own_threads_are_counted_not_reported() {
    if !privileged("runtime_signals_to_own_threads_are_counted_not_reported") {
        return;
    }
    const N: u32 = 50;
    const SIGPWR: u64 = 30;
    let me = me();
    let run = |extra: &[&str]| {
        let mut args = vec!["--pid", me.as_str()];
        args.extend_from_slice(extra);
        let agent = Agent::start(&args);
        let out = Command::new(helper("threadsignal", env!("CARGO_BIN_EXE_threadsignal")))
            .args(["tgkill", &N.to_string()])
            .output()
            .expect("threadsignal");
        assert!(out.status.success(), "{out:?}");
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(helper_field(&line, "handled"), N, "{line}");
        // The aggregates of the reported run are read at the agent's stop at the latest.
        let start = agent.start.clone();
        let events = agent.stop(Vec::new());
        (
            start,
            events,
            helper_field(&line, "pid"),
            helper_field(&line, "tid"),
        )
    };
    let sigpwr = |events: &[Value], kind: &str, pid: u32| -> Vec<Value> {
        of(events, kind, pid)
            .into_iter()
            .filter(|e| e["signal"].as_u64() == Some(SIGPWR))
            .cloned()
            .collect()
    };

    // By default: nothing reported, everything counted.
    let (start, events, pid, _) = run(&[]);
    assert_eq!(start["runtime_signals_reported"], false, "{start}");
    assert!(notes_mention(&start, "runtime signals"), "{start}");
    assert_eq!(sigpwr(&events, "signal", pid), Vec::<Value>::new());
    assert_eq!(sigpwr(&events, "signal_deliver", pid), Vec::<Value>::new());
    let stop = events.last().expect("agent_stop");
    assert_eq!(stop["filtered"]["self_signal"], N, "{stop}");
    assert_eq!(stop["filtered"]["self_signal_deliver"], N, "{stop}");
    // The worker's SIGKILL when the main thread returned (exit_group from the leader).
    assert_eq!(stop["filtered"]["group_kill_deliver"], 1, "{stop}");
    assert_eq!(of(&events, "signal_deliver", pid), Vec::<&Value>::new());
    let exit = of(&events, "exit", pid);
    assert_eq!(exit.len(), 1, "{exit:?}");
    assert_eq!(exit[0]["comm"], "threadsignal");
    assert_eq!(exit[0]["cause"], "exited");
    assert_nothing_lost(&events);

    // --runtime-signals: every one reported (floods aggregated: the counts add up).
    let (start, events, pid, tid) = run(&["--runtime-signals"]);
    assert_eq!(start["runtime_signals_reported"], true, "{start}");
    assert!(!notes_mention(&start, "runtime signals"), "{start}");
    for kind in ["signal", "signal_deliver"] {
        let records = sigpwr(&events, kind, pid);
        let total: u64 = records.iter().filter_map(|e| e["count"].as_u64()).sum();
        assert_eq!(total, u64::from(N), "{kind}: {records:?}");
        let single: Vec<&Value> = records.iter().filter(|e| e["count"] == 1).collect();
        assert!(!single.is_empty(), "{kind}: {records:?}");
        for e in single {
            assert_eq!(e["comm"], "threadsignal", "{e}");
            if kind == "signal" {
                assert_eq!(e["target"]["tid"].as_u64(), Some(u(tid)), "{e}");
                assert_eq!(e["target"]["comm"], "threadsignal", "{e}");
                assert_eq!(e["target"]["thread_comm"], "ts-worker", "{e}");
                assert_eq!(e["sender"]["pid"].as_u64(), Some(u(pid)), "{e}");
                assert_eq!(e["si_code_name"], "SI_TKILL", "{e}");
                assert_eq!(e["group"], false, "{e}");
            } else {
                assert_eq!(e["tid"].as_u64(), Some(u(tid)), "{e}");
                assert_eq!(e["thread_comm"], "ts-worker", "{e}");
                assert_eq!(e["disposition"], "handler", "{e}");
            }
        }
    }
    let kills: Vec<&Value> = of(&events, "signal_deliver", pid)
        .into_iter()
        .filter(|e| e["signal"] == 9)
        .collect();
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["tid"].as_u64(), Some(u(tid)), "{}", kills[0]);
    assert_eq!(kills[0]["thread_comm"], "ts-worker", "{}", kills[0]);
    let stop = events.last().expect("agent_stop");
    assert_eq!(
        stop["filtered"],
        serde_json::json!({"self_signal": 0, "self_signal_deliver": 0, "group_kill_deliver": 0}),
        "{stop}"
    );
    assert_nothing_lost(&events);
}

/// A signal sent by a worker thread names the sending process (`sender.comm`,
/// `killed_by.comm`: its leader's name) and the thread (`sender.tid`, `sender.thread_comm`).
#[test]
fn signal_from_a_thread_names_its_process() {
    if !privileged("signal_from_a_thread_names_its_process") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let mut victim = Command::new("sleep").arg("300").spawn().expect("sleep");
    let target = victim.id();
    let out = Command::new(helper("threadsignal", env!("CARGO_BIN_EXE_threadsignal")))
        .args(["kill", &target.to_string(), "15"])
        .output()
        .expect("threadsignal");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(victim.wait().expect("wait").signal(), Some(15));
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let (pid, tid) = (helper_field(&line, "pid"), helper_field(&line, "tid"));
    assert_ne!(pid, tid, "{line}");
    let events = agent.stop(Vec::new());
    let sent: Vec<&Value> = of(&events, "signal", target)
        .into_iter()
        .filter(|e| e["signal"] == 15)
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["sender"],
        serde_json::json!({"pid": pid, "tid": tid, "comm": "threadsignal", "thread_comm": "ts-worker",
                           "uid": 0, "proc_id": sent[0]["sender"]["proc_id"].clone(), "session_id": null}),
        "{}",
        sent[0]
    );
    let exit = of(&events, "exit", target);
    assert_eq!(exit.len(), 1, "{exit:?}");
    assert_eq!(exit[0]["cause"], "killed", "{}", exit[0]);
    assert_eq!(
        exit[0]["killed_by"]["pid"].as_u64(),
        Some(u(pid)),
        "{}",
        exit[0]
    );
    assert_eq!(exit[0]["killed_by"]["comm"], "threadsignal", "{}", exit[0]);
    assert_nothing_lost(&events);
}

/// SIGKILL from outside to a process of 4 threads: every thread takes the group's SIGKILL,
/// one delivery (the leader's) is reported, the other three are counted; the exit is
/// `killed` and names the sender.
#[test]
fn group_kill_is_delivered_once() {
    if !privileged("group_kill_is_delivered_once") {
        return;
    }
    let agent = Agent::start(&["--pid", &me()]);
    let mut child = Command::new(helper("threadsignal", env!("CARGO_BIN_EXE_threadsignal")))
        .args(["threads", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("threadsignal");
    let pid = child.id();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    assert_eq!(helper_field(&line, "pid"), pid, "{line}");
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("tasks")
            .count(),
        4
    );
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
    let events = agent.stop(Vec::new());

    let delivered = of(&events, "signal_deliver", pid);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let d = delivered[0];
    assert_eq!(d["signal"], 9, "{d}");
    assert_eq!(d["tid"].as_u64(), Some(u(pid)), "{d}");
    assert_eq!(d["comm"], "threadsignal", "{d}");
    assert!(d.get("thread_comm").is_none(), "{d}");
    assert_eq!(d["disposition"], "default", "{d}");
    assert_eq!(d["outcome"], "terminate", "{d}");
    let stop = events.last().expect("agent_stop");
    assert_eq!(stop["filtered"]["group_kill_deliver"], 3, "{stop}");

    let sent: Vec<&Value> = of(&events, "signal", pid)
        .into_iter()
        .filter(|e| e["signal"] == 9)
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["sender"]["pid"].as_u64(),
        Some(u(std::process::id()))
    );
    let exit = of(&events, "exit", pid);
    assert_eq!(exit.len(), 1, "{exit:?}");
    assert_eq!(exit[0]["comm"], "threadsignal", "{}", exit[0]);
    assert_eq!(exit[0]["signal"], 9);
    assert_eq!(exit[0]["cause"], "killed", "{}", exit[0]);
    assert_eq!(
        exit[0]["killed_by"]["pid"].as_u64(),
        Some(u(std::process::id())),
        "{}",
        exit[0]
    );
    assert_nothing_lost(&events);
}

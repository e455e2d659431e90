//! A tracer running under the bench: the agent (`claude-monitor trace ... --format json`)
//! or bpftrace with [`parse::BPFTRACE_SCRIPT`]. Its stdout is read on a thread that stamps
//! each line with the time it was read (for the latency figure) and keeps it; the bench
//! parses the lines after the run, so parsing never slows the reader down.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::parse::{self, ProgStat};
use crate::cargo;

/// The programs the bench runs.
pub struct Tools {
    pub agent: PathBuf,
    /// bpftrace, or why it is not there.
    pub bpftrace: Result<PathBuf, String>,
    /// bpftool (only for program names), or why it is not there.
    pub bpftool: Result<PathBuf, String>,
    /// The file holding [`parse::BPFTRACE_SCRIPT`].
    pub script: PathBuf,
}

/// What to start.
#[derive(Clone, Debug)]
pub enum Tracer {
    /// `claude-monitor trace ARGS --format json`.
    Agent(Vec<String>),
    Bpftrace,
}

/// One line of the tracer's stdout and when the bench read it (ns since the Unix epoch).
pub struct Line {
    pub read_at_ns: i128,
    pub text: String,
}

/// The tracer's own resource use at one moment.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime of the whole process, reaped threads included, in seconds (clock-tick
    /// resolution).
    pub cpu_s: Option<f64>,
    /// CPU time of its live threads from `schedstat`, in ns (exact, for the idle figure).
    pub cpu_ns: Option<u64>,
    /// Peak RSS so far (VmHWM), KiB.
    pub hwm_kb: Option<u64>,
}

pub struct Session {
    child: Child,
    is_agent: bool,
    reader: Option<JoinHandle<std::io::Result<Vec<Line>>>>,
    stderr: Option<JoinHandle<String>>,
    lines_read: Arc<AtomicUsize>,
    /// A process whose exit the reader looks for ([`Session::quiesce`]), and whether it saw it.
    marker: Arc<AtomicU32>,
    marker_seen: Arc<AtomicBool>,
}

/// A stopped tracer's output.
pub struct Stopped {
    pub lines: Vec<Line>,
    pub stderr: String,
    pub status: ExitStatus,
}

pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl Session {
    /// Starts the tracer and waits (up to 60 s) until it says its probes are attached.
    pub fn start(tools: &Tools, tracer: &Tracer) -> Result<Session> {
        let mut cmd = match tracer {
            Tracer::Agent(args) => {
                let mut cmd = Command::new(&tools.agent);
                cmd.arg("trace").args(args).args(["--format", "json"]);
                cmd
            }
            Tracer::Bpftrace => {
                let bpftrace = tools
                    .bpftrace
                    .as_ref()
                    .map_err(|why| anyhow!("bpftrace unavailable: {why}"))?;
                let mut cmd = Command::new(bpftrace);
                // Line-buffered, so READY arrives when it is printed.
                cmd.args(["-B", "line"]).arg(&tools.script);
                cmd
            }
        };
        let is_agent = matches!(tracer, Tracer::Agent(_));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", cargo::describe(&cmd)))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut stderr_pipe = child.stderr.take().context("no stderr")?;
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        let lines_read = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let counter = Arc::clone(&lines_read);
        let marker = Arc::new(AtomicU32::new(0));
        let marker_seen = Arc::new(AtomicBool::new(false));
        let (marker_r, seen_r) = (Arc::clone(&marker), Arc::clone(&marker_seen));
        let reader = std::thread::spawn(move || {
            // A large buffer: during a storm the agent writes tens of MB.
            let mut out = BufReader::with_capacity(1 << 20, stdout);
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            let mut ready = false;
            loop {
                buf.clear();
                if out.read_until(b'\n', &mut buf)? == 0 {
                    return Ok(lines);
                }
                let read_at_ns = now_ns();
                let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
                if !ready
                    && (if is_agent {
                        text.contains("\"agent_start\"")
                    } else {
                        text == "READY"
                    })
                {
                    ready = true;
                    let _ = ready_tx.send(());
                }
                let m = marker_r.load(Ordering::Relaxed);
                if m != 0 && parse::is_exit_of(&text, m, is_agent) {
                    seen_r.store(true, Ordering::Relaxed);
                }
                lines.push(Line { read_at_ns, text });
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut session = Session {
            child,
            is_agent,
            reader: Some(reader),
            stderr: Some(stderr),
            lines_read,
            marker,
            marker_seen,
        };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => Ok(session),
            Err(err) => {
                let _ = session.child.kill();
                let status = session.child.wait().ok();
                let stderr = session.take_stderr();
                let what = match err {
                    mpsc::RecvTimeoutError::Timeout => "was not ready within 60 s",
                    mpsc::RecvTimeoutError::Disconnected => "ended before it was ready",
                };
                bail!(
                    "`{}` {what} (exit {status:?}): {}",
                    cargo::describe(&cmd),
                    stderr.trim()
                )
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_agent(&self) -> bool {
        self.is_agent
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Waits until the tracer has caught up with what the workload caused: it reported the
    /// exit of a marker process started now (its records come in order, so everything
    /// before is in), or, when the marker is outside its scope (`--pid`), no line came for
    /// half a second. At most `max`.
    pub fn quiesce(&self, max: Duration) {
        let start = Instant::now();
        let mut marker = Command::new("sleep")
            .arg("0.05")
            .stdin(Stdio::null())
            .spawn()
            .ok();
        if let Some(m) = &marker {
            self.marker.store(m.id(), Ordering::Relaxed);
        }
        let mut last = self.lines_read.load(Ordering::Relaxed);
        let mut last_change = Instant::now();
        while start.elapsed() < max {
            std::thread::sleep(Duration::from_millis(50));
            if self.marker_seen.load(Ordering::Relaxed) {
                // Other CPUs' buffers (bpftrace) may be a poll behind.
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            let now = self.lines_read.load(Ordering::Relaxed);
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() >= Duration::from_millis(500) {
                break;
            }
        }
        if let Some(m) = marker.as_mut() {
            let _ = m.wait();
        }
        self.marker.store(0, Ordering::Relaxed);
    }

    pub fn usage(&self) -> Usage {
        usage_of(self.pid())
    }

    /// Resets the tracer's peak RSS (VmHWM) to its current RSS (`clear_refs` 5), so that
    /// a later reading is the peak of the run, not of start-up (the agent parses the
    /// kernel's BTF then). Returns the start-up peak, KiB.
    pub fn reset_peak_rss(&self) -> Option<u64> {
        let before = usage_of(self.pid()).hwm_kb;
        fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").ok()?;
        before
    }

    /// Run-time statistics of the BPF programs the tracer holds open (its program fds,
    /// read from /proc), named through bpftool when it is there (`prog <id>` otherwise).
    /// Read before the tracer exits: its programs go with it.
    pub fn programs(&self, bpftool: Option<&Path>) -> Vec<ProgStat> {
        let mut found: Vec<(u32, u64, u64)> = Vec::new();
        let dir = format!("/proc/{}/fd", self.pid());
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let is_prog =
                fs::read_link(entry.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:bpf-prog");
            if !is_prog {
                continue;
            }
            let info = format!(
                "/proc/{}/fdinfo/{}",
                self.pid(),
                entry.file_name().to_string_lossy()
            );
            if let Some(prog) = fs::read_to_string(info)
                .ok()
                .as_deref()
                .and_then(parse::prog_fdinfo)
                && !found.iter().any(|f| f.0 == prog.0)
            {
                found.push(prog);
            }
        }
        let names = bpftool
            .and_then(|tool| cargo::capture(Command::new(tool).args(["-j", "prog", "show"])).ok())
            .map(|json| parse::bpftool_names(&json))
            .unwrap_or_default();
        found
            .into_iter()
            .map(|(id, run_time_ns, run_cnt)| ProgStat {
                name: names.get(&id).map_or_else(
                    || format!("prog {id}"),
                    // bpftrace's programs have no BTF, so the kernel's 15-character
                    // name is all bpftool has: `sched_process_e`.
                    |n| {
                        parse::full_name(
                            n,
                            if self.is_agent {
                                &[]
                            } else {
                                parse::BPFTRACE_PROBES
                            },
                        )
                    },
                ),
                run_time_ns,
                run_cnt,
            })
            .collect()
    }

    /// Stops the tracer with SIGINT (SIGKILL after 60 s) and returns what it printed.
    pub fn stop(mut self) -> Result<Stopped> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for the tracer")? {
                break status;
            }
            if Instant::now() >= deadline {
                eprintln!("xtask: warning: tracer did not stop within 60 s of SIGINT; killing it");
                let _ = self.child.kill();
                break self.child.wait().context("waiting for the tracer")?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines = match self.reader.take().map(JoinHandle::join) {
            Some(Ok(Ok(lines))) => lines,
            Some(Ok(Err(err))) => return Err(err).context("reading the tracer's output"),
            Some(Err(_)) => bail!("the thread reading the tracer's output panicked"),
            None => Vec::new(),
        };
        let stderr = self.take_stderr();
        Ok(Stopped {
            lines,
            stderr,
            status,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// [`Usage`] of any process.
pub fn usage_of(pid: u32) -> Usage {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let cpu_s = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse::stat_cpu_ticks(&s))
        .filter(|_| ticks > 0)
        .map(|t| t as f64 / ticks as f64);
    let cpu_ns = fs::read_dir(format!("/proc/{pid}/task")).ok().map(|tasks| {
        tasks
            .flatten()
            .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    });
    let hwm_kb = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| parse::status_kb(&s, "VmHWM"));
    Usage {
        cpu_s,
        cpu_ns,
        hwm_kb,
    }
}

//! `claude-monitor run -- CMD [ARGS...]`: runs a command (claude itself, a build, anything)
//! with the caller's terminal, streams and environment, watches its whole tree in the
//! kernel from its first instruction, and when it ends says how the tree ended: the cause
//! in one sentence with its evidence, the exit status explained, duration, CPU, memory,
//! the processes it started, the abnormal deaths and what still runs. Exits with the
//! command's own status (128+N for signal N).
//!
//! Without the privileges to load the kernel programs it says so in one line and watches by
//! polling /proc; the summary has the same shape, marked approximate.

mod child;
mod control;
mod poll;
mod resources;
mod state;
mod supervise;
mod tree;

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::signal::unix::{Signal, SignalKind, signal};

use self::{
    child::{Child, State},
    resources::Resources,
    state::{LastEnd, Phase, RunState, StateFile},
    supervise::{Decision, End, Supervisor},
    tree::Tree,
};
pub use self::{
    control::{status, stop},
    resources::FileFormat,
    supervise::{DEFAULT_DELAY, DEFAULT_DELAY_MAX, Policy},
};
use crate::{
    claude::detect::Detector,
    event::{CauseKind, ExitStatus},
    host::cgroups::MemoryHierarchy,
    kernel::loader::ScopeMode,
    pipeline::{
        engine::{BUSY_POLL, COUNTER_PERIOD, Engine, EngineOptions},
        output::OutputError,
        redact::Redactor,
    },
    report::{self, CommandSummary, ReportStore, Running, Source, TreeDeath},
    signals::names::{CRASH_SIGNALS, signal_name},
};

/// How long `run` waits for the kernel's exit record of its command once `waitpid` said
/// it ended (it is in the ring buffer already, short of a loss).
const ROOT_EXIT_WAIT: Duration = Duration::from_secs(2);

/// A validated `run` invocation.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub command: Vec<OsString>,
    /// Also write the summary as JSON here.
    pub summary_json: Option<PathBuf>,
    /// Resource samples of the tree (CSV or JSON Lines, by extension).
    pub resources: Option<PathBuf>,
    pub sample_interval: Duration,
    /// Write the command's report under `<data_dir>/reports`.
    pub data_dir: Option<PathBuf>,
    pub ring_buffer_bytes: u32,
    pub redact: bool,
    /// `--restart`: start the command again when it dies.
    pub restart: Option<Policy>,
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    pub max_restarts: Option<u32>,
    /// Supervising: how long a stopped command has between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// A name for `status` and `stop`.
    pub name: Option<String>,
    /// The daemon's API socket: when a daemon answers there, it watches the command.
    pub socket: PathBuf,
    /// Never use a daemon: load the kernel programs.
    pub no_daemon: bool,
}

/// The signals `run` forwards to the command's process group, as a shell would.
const FORWARDED: [i32; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGWINCH,
];

/// The signals `run` handles: SIGCHLD, and those it forwards.
pub(crate) struct Signals {
    child: Signal,
    forwarded: Forwarded,
}

pub(crate) struct Forwarded(Vec<(i32, Signal)>);

impl Forwarded {
    /// The next signal to forward.
    async fn next(&mut self) -> i32 {
        std::future::poll_fn(|cx| {
            for (sig, s) in &mut self.0 {
                if s.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*sig);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

impl Signals {
    /// Handlers installed now: a signal that comes before the command is released is
    /// forwarded once it runs.
    fn new() -> Result<Signals> {
        let child = signal(SignalKind::child()).context("cannot handle SIGCHLD")?;
        let forwarded = FORWARDED
            .iter()
            .map(|&sig| {
                signal(SignalKind::from_raw(sig))
                    .with_context(|| format!("cannot handle signal {sig}"))
                    .map(|s| (sig, s))
            })
            .collect::<Result<_>>()?;
        Ok(Signals {
            child,
            forwarded: Forwarded(forwarded),
        })
    }
}

/// Whether `run` was asked to stop a supervised command, and when its grace ends.
pub(crate) struct Stop {
    supervised: bool,
    grace: Duration,
    pub requested: bool,
    kill_at: Option<tokio::time::Instant>,
}

impl Stop {
    /// A signal for `run`: forwarded to the command's group as it is. Supervising, a
    /// SIGTERM, SIGINT, SIGHUP or SIGQUIT also means "stop": the command is not started
    /// again, and it gets SIGKILL if it still runs when the grace period is over.
    fn forward(&mut self, child: &Child, sig: i32) {
        child.signal(sig);
        if self.supervised && sig != libc::SIGWINCH && !self.requested {
            self.requested = true;
            self.kill_at = Some(tokio::time::Instant::now() + self.grace);
            eprintln!(
                "claude-monitor: stopping   {} sent to the command; SIGKILL in {} if it still runs",
                signal_name(sig).unwrap_or_else(|| format!("signal {sig}")),
                report::fmt_duration(self.grace)
            );
        }
    }

    /// The grace period is over: SIGKILL to the command's group.
    fn kill(&mut self, child: &Child) {
        self.kill_at = None;
        eprintln!(
            "claude-monitor: stopping   the grace period ({}) is over: SIGKILL",
            report::fmt_duration(self.grace)
        );
        child.signal(libc::SIGKILL);
    }
}

/// The command's side of every watch loop: its state changes, the signals to forward, the
/// grace period of a stop, the resource samples.
pub(crate) struct Ctl<'a> {
    child: &'a Child,
    signals: &'a mut Signals,
    sample: &'a mut tokio::time::Interval,
    resources: &'a mut Resources,
    stop: &'a mut Stop,
}

impl Ctl<'_> {
    /// A resource sample of the tree's live processes.
    fn sample(&mut self, tree: &Tree) {
        let pids: Vec<u32> = tree.live().collect();
        self.resources.sample(self.child.pid, &pids);
    }
}

/// What `run` keeps across the command's runs.
struct Runner {
    opts: RunOptions,
    resources: Resources,
    watcher: Watcher,
    signals: Signals,
    sample: tokio::time::Interval,
    notes: Vec<String>,
    cwd: Option<String>,
    /// The command as given, redacted.
    command: Vec<String>,
    hierarchy: Option<MemoryHierarchy>,
    stop: Stop,
}

/// One run of the command.
struct Once {
    tree: Tree,
    summary: CommandSummary,
    duration: Duration,
}

/// Runs the command to its end (and again, with `--restart`); `run`'s exit status.
pub async fn run(opts: RunOptions) -> Result<u8> {
    let redactor = if opts.redact {
        Redactor::default()
    } else {
        Redactor::off()
    };
    let resources = Resources::open(opts.resources.as_deref(), redactor.clone())?;
    let cwd = std::env::current_dir()
        .ok()
        .map(|d| d.display().to_string());
    let mut notes = Vec::new();
    let watcher = Watcher::choose(&opts, &redactor, &mut notes).await?;
    let mut command: Vec<String> = opts
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    redactor.argv(&mut command);
    // The first sample one interval in: at the release the command is still in its exec.
    let mut sample = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.sample_interval,
        opts.sample_interval,
    );
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut supervisor = opts.restart.map(|policy| {
        Supervisor::new(
            policy,
            opts.restart_delay,
            opts.restart_delay_max,
            opts.max_restarts,
        )
    });
    let mut runner = Runner {
        signals: Signals::new()?,
        stop: Stop {
            supervised: supervisor.is_some(),
            grace: opts.grace,
            requested: false,
            kill_at: None,
        },
        opts,
        resources,
        watcher,
        sample,
        notes,
        cwd,
        command,
        hierarchy: MemoryHierarchy::detect(),
    };
    let mut state = runner.state_file();
    let mut supervision = report::Supervision::default();
    loop {
        let once = match runner.once(state.as_mut()).await? {
            Ok(once) => once,
            // Not started (not found, not executable): nothing to supervise.
            Err(status) => return Ok(status),
        };
        let Once {
            tree,
            mut summary,
            duration,
        } = once;
        let decision = supervisor.as_mut().map(|s| {
            s.decide(
                End {
                    exit_code: summary.status.exit_code,
                    signal: summary.status.signal.map(i32::from),
                    ran_for: duration,
                },
                runner.stop.requested,
            )
        });
        if let Some(decision) = &decision {
            match decision {
                Decision::Restart(d) => supervision.record(&summary, "restart", None, Some(*d)),
                Decision::Done(why) => {
                    supervision.record(&summary, "done", Some(why.clone()), None)
                }
                Decision::Park(why) => {
                    supervision.record(&summary, "parked", Some(why.clone()), None)
                }
            }
            summary.supervision = Some(supervision.clone());
        }
        runner.tell(&tree, &summary);
        let status = summary.exit_status;
        let delay = match decision {
            None => return Ok(status),
            Some(Decision::Done(why)) => {
                eprintln!("claude-monitor: supervise  {why}");
                return Ok(status);
            }
            Some(Decision::Park(why)) => {
                eprintln!("claude-monitor: parked     {why}; not restarted");
                return Ok(if status == 0 { 1 } else { status });
            }
            Some(Decision::Restart(delay)) => delay,
        };
        eprintln!(
            "claude-monitor: restart    #{} in {} (that run lasted {})",
            supervision.restarts,
            report::fmt_duration(delay),
            report::fmt_duration(duration)
        );
        if let Some(st) = state.as_mut() {
            st.state.phase = Phase::Waiting;
            st.state.child_pid = None;
            st.state.restarts = supervision.restarts;
            st.state.next_start = chrono::TimeDelta::from_std(delay)
                .ok()
                .map(|d| (Utc::now() + d).to_rfc3339_opts(SecondsFormat::Millis, true));
            st.state.last = Some(LastEnd {
                ended: summary.ended.clone(),
                exit_status: status,
                cause: summary.cause.as_str().to_owned(),
                sentence: summary.sentence.clone(),
            });
            let _ = st.write();
        }
        drop(tree);
        if runner.wait(delay).await? {
            eprintln!("claude-monitor: supervise  stopped on request while waiting: not restarted");
            return Ok(status);
        }
    }
}

impl Runner {
    /// The state file, or `None` (said once) when it cannot be written.
    fn state_file(&self) -> Option<StateFile> {
        let me = std::process::id();
        let start_ticks =
            crate::host::proc::read_stat(std::path::Path::new(crate::host::proc::PROC), me)
                .map(|s| s.start)
                .unwrap_or(0);
        let dir = state::own_dir();
        let st = RunState {
            id: me,
            start_ticks,
            // SAFETY: getuid has no preconditions.
            uid: unsafe { libc::getuid() },
            name: self.opts.name.clone(),
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            started: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            supervised: self.opts.restart.is_some(),
            phase: Phase::Running,
            child_pid: None,
            restarts: 0,
            next_start: None,
            last: None,
        };
        match StateFile::create(&dir, st) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "claude-monitor: cannot write a state file in {} ({e}): `claude-monitor status` will not list this run",
                    dir.display()
                );
                None
            }
        }
    }

    /// Starts the command and watches it to its end: its summary, or the shell's status
    /// when it could not be started.
    async fn once(&mut self, state: Option<&mut StateFile>) -> Result<Result<Once, u8>> {
        let mut child = Child::start_held(&self.opts.command)?;
        // With a daemon: it watches the held command before it runs any of its code, and
        // its stream of the command's session is open before the release.
        let mut stream = None;
        let mut notes = Vec::new();
        if let Watcher::Daemon(socket) = &self.watcher {
            match daemon_stream(socket, child.pid).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    eprintln!(
                        "claude-monitor: the daemon on {} cannot watch the command ({e:#}); watching by polling /proc: the summary will be approximate",
                        socket.display()
                    );
                    notes.push(format!("the daemon could not watch the command: {e:#}"));
                }
            }
        }
        let started_at = Utc::now();
        let started = Instant::now();
        if let Err((e, status)) = child.release() {
            eprintln!(
                "claude-monitor: cannot run {}: {e}",
                self.opts.command[0].to_string_lossy()
            );
            return Ok(Err(status));
        }
        if let Some(st) = state {
            st.state.phase = Phase::Running;
            st.state.child_pid = Some(child.pid);
            st.state.next_start = None;
            let _ = st.write();
        }
        let mut tree = Tree::new(child.pid, self.hierarchy.clone());
        let mut ctl = Ctl {
            child: &child,
            signals: &mut self.signals,
            sample: &mut self.sample,
            resources: &mut self.resources,
            stop: &mut self.stop,
        };
        let ((status, usage), source) = match (&mut self.watcher, stream) {
            (Watcher::Kernel(engine, ring), _) => (
                watch_kernel(engine, ring, &mut tree, &mut ctl).await?,
                Source::Kernel,
            ),
            (Watcher::Daemon(_), Some(stream)) => {
                let (end, stream_ended) = watch_daemon(stream, &mut tree, &mut ctl).await?;
                if stream_ended {
                    notes.push(
                        "the daemon's stream ended before the command did (the daemon stopped): later facts are missing"
                            .to_owned(),
                    );
                    tree.lost += 1;
                }
                (end, Source::Daemon)
            }
            (Watcher::Daemon(_) | Watcher::Proc, _) => {
                (poll::watch(&mut tree, &mut ctl).await?, Source::Proc)
            }
        };
        let duration = started.elapsed();
        let summary = summarize(
            &tree,
            Facts {
                command: self.command.clone(),
                cwd: self.cwd.clone(),
                pid: child.pid,
                started: started_at,
                ended: Utc::now(),
                duration,
                status,
                usage,
                source,
                resources: self.resources.peaks(),
                notes: self.notes.iter().cloned().chain(notes).collect(),
            },
        );
        Ok(Ok(Once {
            tree,
            summary,
            duration,
        }))
    }

    /// The summary on stderr, in `--summary-json`, and as a report with `--data-dir`.
    fn tell(&mut self, tree: &Tree, summary: &CommandSummary) {
        if let Err(e) = self.resources.finish() {
            eprintln!("claude-monitor: {e:#}");
        }
        eprint!("{}", report::render_command(summary));
        if let Some(path) = &self.opts.summary_json {
            let json = serde_json::to_string_pretty(summary).unwrap_or_default();
            if let Err(e) = write_private(path, format!("{json}\n").as_bytes()) {
                eprintln!(
                    "claude-monitor: cannot write the summary to {}: {e}",
                    path.display()
                );
            }
        }
        if let Some(dir) = &self.opts.data_dir {
            write_report(dir, tree, summary);
        }
    }

    /// Waits `delay` before a restart, reading the ring meanwhile (the last run's orphans
    /// go on); whether a stop was asked for.
    async fn wait(&mut self, delay: Duration) -> Result<bool> {
        let until = tokio::time::Instant::now() + delay;
        let mut idle = Tree::new(0, None);
        loop {
            match &mut self.watcher {
                Watcher::Kernel(engine, ring) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => return Ok(false),
                        sig = self.signals.forwarded.next() => if sig != libc::SIGWINCH {
                            return Ok(true);
                        },
                        guard = ring.readable_mut() => {
                            let mut guard = guard.map_err(OutputError::Io)?;
                            engine.drain(guard.get_inner_mut(), &mut idle)?;
                            guard.clear_ready();
                        }
                    }
                }
                Watcher::Daemon(_) | Watcher::Proc => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => return Ok(false),
                        sig = self.signals.forwarded.next() => if sig != libc::SIGWINCH {
                            return Ok(true);
                        },
                    }
                }
            }
        }
    }
}

/// What watches the command's tree.
enum Watcher {
    /// A daemon, over its API socket: it watches each run's command as a session.
    Daemon(PathBuf),
    /// The kernel programs, loaded by `run`, watching `run` itself (the command is forked
    /// after, so the kernel follows it from its fork).
    Kernel(
        Box<Engine>,
        tokio::io::unix::AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    ),
    /// /proc, polled.
    Proc,
}

impl Watcher {
    /// A daemon that answers on the socket (unless `--no-daemon`), else the programs,
    /// else polling (said in one line, and in `notes`).
    async fn choose(
        opts: &RunOptions,
        redactor: &Redactor,
        notes: &mut Vec<String>,
    ) -> Result<Watcher> {
        if !opts.no_daemon && crate::api::client::daemon_answers(&opts.socket).await {
            return Ok(Watcher::Daemon(opts.socket.clone()));
        }
        match Engine::start(&EngineOptions {
            scope: ScopeMode::Pids(vec![std::process::id()]),
            ring_buffer_bytes: opts.ring_buffer_bytes,
            oom_all: false,
            report_ignored_signals: false,
            report_runtime_signals: false,
            detector: Detector::new(Vec::new()).context("agent rules")?,
            pin_dir: None,
            redactor: redactor.clone(),
        }) {
            Ok((engine, ring, _start)) => Ok(Watcher::Kernel(Box::new(engine), ring)),
            Err(e) => {
                let daemon = if opts.no_daemon {
                    String::new()
                } else {
                    format!(" and no daemon answers on {}", opts.socket.display())
                };
                eprintln!(
                    "claude-monitor: cannot load the kernel programs ({e:#}){daemon}; watching by polling /proc: the summary will be approximate"
                );
                notes.push(format!("kernel programs not loaded: {e:#}{daemon}"));
                Ok(Watcher::Proc)
            }
        }
    }
}

/// Asks the daemon to watch the held command `pid`, and opens its session's stream.
async fn daemon_stream(
    socket: &std::path::Path,
    pid: u32,
) -> Result<crate::api::client::SessionStream> {
    let (session, seq) = crate::api::client::watch(socket, pid).await?;
    crate::api::client::SessionStream::open(socket, &session, seq).await
}

/// The daemon's event (its JSON line) as the tree takes it: a session made for `run` is
/// the command itself, so it is left out (the reports' sentences then read as with the
/// kernel programs); an agent's session (`claude` run under `run`) is kept.
fn daemon_event(v: &serde_json::Value) -> Option<crate::event::Event> {
    let mut event = crate::event::Event::from_json(v)?;
    let run_session = event
        .attr
        .as_ref()
        .and_then(|a| a.session.as_ref())
        .filter(|s| s.agent == crate::pipeline::attribution::RUN_AGENT)
        .map(|s| s.id.clone());
    let Some(run_session) = run_session else {
        return Some(event);
    };
    if let Some(attr) = &mut event.attr {
        attr.session = None;
        attr.ancestry = None;
    }
    // A sender in the same `run` session is one of the command's own processes.
    if let crate::event::Body::Exit(exit) = &mut event.body
        && let Some(k) = &mut exit.cause.killed_by
        && k.session_id.as_deref() == Some(run_session.as_str())
    {
        k.session_id = None;
        k.same_session = false;
    }
    Some(event)
}

/// The event loop with a daemon: its stream of the command's session into the tree, the
/// command's state changes, the forwarded signals and the samples, until the command ended
/// and its exit event came (or [`ROOT_EXIT_WAIT`] passed). Its wait status, and whether
/// the stream ended first (the daemon stopped).
async fn watch_daemon(
    mut stream: crate::api::client::SessionStream,
    tree: &mut Tree,
    ctl: &mut Ctl<'_>,
) -> Result<(Ended, bool)> {
    let mut ended: Option<(Ended, Instant)> = None;
    let mut open = true;
    loop {
        if let Some((status, at)) = ended
            && (tree.root_exit.is_some() || !open || at.elapsed() >= ROOT_EXIT_WAIT)
        {
            return Ok((status, !open));
        }
        let wait_left = ended.map(|(_, at)| ROOT_EXIT_WAIT.saturating_sub(at.elapsed()));
        let kill_at = ctl.stop.kill_at.filter(|_| ended.is_none());
        tokio::select! {
            next = stream.next(), if open => match next {
                Ok(Some(v)) => {
                    if let Some(event) = daemon_event(&v) {
                        tree.record(&event);
                    }
                }
                Ok(None) | Err(_) => open = false,
            },
            _ = tokio::time::sleep(wait_left.unwrap_or_default()), if wait_left.is_some() => {}
            _ = ctl.signals.child.recv(), if ended.is_none() => {
                if let Some(end) = reap(ctl.child) {
                    ended = Some((end, Instant::now()));
                }
            }
            sig = ctl.signals.forwarded.next(), if ended.is_none() => ctl.stop.forward(ctl.child, sig),
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => ctl.stop.kill(ctl.child),
            _ = ctl.sample.tick(), if ended.is_none() => ctl.sample(tree),
        }
    }
}

/// The event loop with the kernel programs: the ring buffer into the tree, the command's
/// state changes, the forwarded signals and the samples, until the command ended and its
/// exit record was read (or [`ROOT_EXIT_WAIT`] passed). Returns its wait status.
async fn watch_kernel(
    engine: &mut Engine,
    ring: &mut tokio::io::unix::AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    tree: &mut Tree,
    ctl: &mut Ctl<'_>,
) -> Result<Ended> {
    let mut tick = tokio::time::interval(COUNTER_PERIOD);
    let mut backlog = false;
    let mut ended: Option<(Ended, Instant)> = None;
    loop {
        if let Some((status, at)) = ended
            && (tree.root_exit.is_some() || at.elapsed() >= ROOT_EXIT_WAIT)
        {
            let finish = (|| {
                engine.drain_rest(ring.get_mut(), tree)?;
                engine.finish(tree)
            })();
            finish.map_err(anyhow::Error::from)?;
            return Ok(status);
        }
        let wait_left = ended.map(|(_, at)| ROOT_EXIT_WAIT.saturating_sub(at.elapsed()));
        let kill_at = ctl.stop.kill_at.filter(|_| ended.is_none());
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(OutputError::Io)?;
                backlog = engine.drain(guard.get_inner_mut(), tree)?;
                guard.clear_ready();
            }
            _ = tokio::task::yield_now(), if backlog => {
                backlog = engine.drain(ring.get_mut(), tree)?;
            }
            _ = tokio::time::sleep(BUSY_POLL), if engine.busy() && !backlog => {
                backlog = engine.drain(ring.get_mut(), tree)?;
            }
            _ = tick.tick() => engine.tick(tree)?,
            _ = tokio::time::sleep(wait_left.unwrap_or_default()), if wait_left.is_some() => {}
            _ = ctl.signals.child.recv(), if ended.is_none() => {
                if let Some(end) = reap(ctl.child) {
                    ended = Some((end, Instant::now()));
                    // What the ring holds now includes the exit, short of a loss.
                    backlog = engine.drain(ring.get_mut(), tree)?;
                }
            }
            sig = ctl.signals.forwarded.next(), if ended.is_none() => ctl.stop.forward(ctl.child, sig),
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => ctl.stop.kill(ctl.child),
            _ = ctl.sample.tick(), if ended.is_none() => ctl.sample(tree),
        }
    }
}

/// Reads every state change of the command since the last SIGCHLD; its wait status once it
/// ended (the terminal is then `run`'s again).
fn reap(child: &Child) -> Option<Ended> {
    loop {
        match child.poll() {
            State::Running => return None,
            State::Continued => {}
            State::Stopped(sig) => child.stopped(sig),
            State::Ended(raw, usage) => {
                let status = std::process::ExitStatus::from_raw(raw);
                child.ended(&status);
                return Some((status, usage));
            }
        }
    }
}

/// The command's wait status and what `wait4` says it used.
pub(crate) type Ended = (std::process::ExitStatus, child::Rusage);

/// What `run` itself knows of the command, besides the tree.
struct Facts {
    command: Vec<String>,
    cwd: Option<String>,
    pid: u32,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    duration: Duration,
    status: std::process::ExitStatus,
    usage: child::Rusage,
    source: Source,
    resources: Option<report::ResourcePeaks>,
    notes: Vec<String>,
}

/// The wait status in the schema's terms.
fn exit_status_of(status: &std::process::ExitStatus) -> ExitStatus {
    ExitStatus {
        exit_code: status.code().map(|c| c as u8),
        signal: status.signal().map(|s| s as u8),
        signal_name: status.signal().and_then(signal_name),
        core_dumped: status.core_dumped(),
    }
}

/// The summary from the tree (the kernel's facts) and the wait status; without the
/// command's exit record (polling, or a lost record), from the wait status alone.
fn summarize(tree: &Tree, f: Facts) -> CommandSummary {
    let status = exit_status_of(&f.status);
    let abnormal: Vec<TreeDeath> = tree
        .deaths
        .iter()
        .map(|d| TreeDeath::of(&d.report, d.depth))
        .collect();
    let name = f
        .command
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    let (cause, sentence, killed_by, peak_rss_kb) = match &tree.root_exit {
        Some((_, r)) => (
            r.cause,
            r.summary.clone(),
            r.killed_by.clone(),
            // Its own image's, without what the fork from `run` carried over.
            r.process
                .usage
                .own_peak_rss_kb
                .or(r.process.usage.peak_rss_kb),
        ),
        None => {
            let cause = match status.signal.map(i32::from) {
                None => CauseKind::Exited,
                Some(s) if CRASH_SIGNALS.contains(&s) => CauseKind::Crashed,
                Some(_) => CauseKind::Killed,
            };
            (
                cause,
                report::status_sentence(&name, f.pid, &status, f.duration.as_secs_f64() * 1000.0),
                None,
                // The command's own, or one of the descendants it waited for.
                Some(f.usage.maxrss_kb),
            )
        }
    };
    let likely_cause = report::likely_cause(&status, cause, &abnormal);
    let mut running: Vec<Running> = tree
        .live()
        .filter(|&pid| pid != f.pid)
        .filter_map(|pid| {
            let stat = procfs::process::Process::new(pid as i32)
                .ok()?
                .stat()
                .ok()?;
            Some(Running {
                pid,
                comm: stat.comm,
                rss_kb: Some(stat.rss * procfs::page_size() / 1024),
            })
        })
        .collect();
    running.sort_by_key(|r| r.pid);
    let mut notes = f.notes;
    if f.source != Source::Proc && tree.root_exit.is_none() {
        notes.push(
            "the kernel's exit record of the command was not read: its cause comes from its wait status alone"
                .to_owned(),
        );
    }
    if f.source == Source::Proc {
        notes.push(
            "deaths below the command are not seen by polling: only the command's own status is known"
                .to_owned(),
        );
    }
    // With the kernel, every exit's own CPU; polling, what wait4 counts (the command and
    // the descendants it waited for).
    let cpu = match f.source {
        Source::Kernel | Source::Daemon => tree.cpu_ms,
        Source::Proc => (f.usage.user_ms, f.usage.system_ms),
    };
    let cpu = Some(cpu);
    CommandSummary {
        command: f.command,
        cwd: f.cwd,
        pid: f.pid,
        started: f.started.to_rfc3339_opts(SecondsFormat::Millis, true),
        ended: f.ended.to_rfc3339_opts(SecondsFormat::Millis, true),
        duration_ms: (f.duration.as_secs_f64() * 1e6).round() / 1e3,
        exit_status: child::exit_status(&f.status),
        status_meaning: report::status_meaning(&status),
        status,
        cause,
        sentence,
        likely_cause,
        killed_by,
        cpu_user_ms: cpu.map(|c| c.0),
        cpu_system_ms: cpu.map(|c| c.1),
        peak_rss_kb,
        heaviest: tree.heaviest.as_ref().map(|h| report::Heaviest {
            pid: h.0,
            comm: h.1.clone(),
            peak_rss_kb: h.2,
        }),
        processes: tree.started,
        nonzero_exits: tree.nonzero_exits,
        abnormal,
        abnormal_total: tree.deaths_total,
        running,
        resources: f.resources,
        source: f.source,
        approximate: f.source == Source::Proc,
        complete: tree.lost == 0,
        lost: tree.lost,
        notes,
        supervision: None,
    }
}

/// Creates (or truncates) `path` 0600 whatever the umask, without following a symlink.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()
}

/// The command's report, with the summary in it, under `<dir>/reports` (only with the
/// kernel's exit record: a report is built from it).
fn write_report(dir: &std::path::Path, tree: &Tree, summary: &CommandSummary) {
    let Some((_, report)) = &tree.root_exit else {
        eprintln!(
            "claude-monitor: no report written: the kernel's exit record of the command was not read"
        );
        return;
    };
    let mut report = report.clone();
    report.command = Some(Box::new(summary.clone()));
    match ReportStore::in_data_dir(dir).write(&report) {
        Ok(path) => eprintln!("claude-monitor: report   {}", path.display()),
        Err(e) => eprintln!(
            "claude-monitor: cannot write the report under {}: {e}",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests;

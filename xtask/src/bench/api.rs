//! The API subscribers scenario (issue 13): the daemon (`claude-monitor daemon`, its own
//! config, data directory and socket, `pin = false`) during the spawn storm, with 0, 1 and
//! 10 Server-Sent Events subscribers on `/v1/events/stream` reading everything. The storm
//! runs inside a session: the spawners are a copy of `spawner` named [`SESSION_COMM`],
//! which a `[[rules]]` entry of the config makes the root of an agent session, so every
//! fork, exec and exit of the storm is an event the daemon writes and publishes.
//!
//! Each daemon run is paired with an untraced storm made just before it (no daemon
//! running), like the other runners. Every wait is for a fact (the socket answers and
//! `agent_start` is in the log, the bus counts the subscribers, each subscriber has read
//! the spawners' exec, the log has the spawners' exits), bounded by a timeout.
//!
//! The subscribers are in-process readers (a thread each, std `UnixStream`, HTTP/1.1 with
//! chunked decoding) that stamp every frame with the time its bytes were read; they keep
//! only what the figures need (seq, and for exits the pid and `ts`).
//!
//! The OTLP export scenario ([`super::otlp`]) runs the same daemon runs ([`series`]), with
//! no subscriber, without and with `[export.otlp]` to the bench's own receiver.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    RemoveDir, Scenario,
    otlp::{self, ExportFigures, Sink},
    parse::rfc3339_ns,
    report::table,
    scenarios::{self, Helpers, Runner, Sizes, Spawners},
    stats,
    tracer::{Tools, now_ns, usage_of},
};

/// The spawners' name in this scenario, and the `comm` of the config's rule.
pub const SESSION_COMM: &str = "cm-bench-spawn";

/// How long each wait for a fact may take.
const WAIT: Duration = Duration::from_secs(60);

/// What one subscriber received over a run.
#[derive(Clone, Debug, Default)]
pub struct SubscriberFigures {
    /// Events (frames with an `id:`) in the run's window.
    pub received: u64,
    /// `lost` frames (a subscriber's own, without `id:`), and the events they said it lost.
    pub lost_frames: u64,
    pub lost_events: u64,
    /// Exits of the storm's processes received.
    pub exits: usize,
    /// It had not reached the end of the window when the bench stopped waiting.
    pub behind: bool,
}

/// One daemon run of the storm.
pub struct ApiRun {
    pub wall_s: f64,
    /// The untraced storm made just before it.
    pub untraced_wall_s: f64,
    pub spawned: usize,
    /// Events the daemon wrote to its log in the run's window: after the seq it had when
    /// the storm was released, up to the last seq of the log once the spawners' exits
    /// were in it.
    pub logged: u64,
    /// Exits of the storm's processes in the log.
    pub exits_logged: usize,
    /// Kernel records lost (`lost` records in the log's window).
    pub kernel_lost: u64,
    /// The daemon's utime + stime from the release until it and its subscribers caught up.
    pub cpu_s: Option<f64>,
    /// Peak RSS during the run (VmHWM reset once the daemon was ready), and of start-up, KiB.
    pub hwm_kb: Option<u64>,
    pub startup_hwm_kb: Option<u64>,
    pub subscribers: Vec<SubscriberFigures>,
    /// Event-to-subscriber latencies of the storm's exits, every subscriber's, ms.
    pub latencies_ms: Vec<f64>,
    /// What the export sent and the sink received (runs with `[export.otlp]`).
    pub export: Option<ExportFigures>,
    pub problems: Vec<String>,
}

impl ApiRun {
    pub fn ratio(&self) -> Option<f64> {
        (self.untraced_wall_s > 0.0).then(|| self.wall_s / self.untraced_wall_s)
    }
}

/// What a daemon run has besides the storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// This many SSE subscribers on `/v1/events/stream`, reading everything (the API
    /// subscribers scenario).
    Subscribers(u32),
    /// No subscriber; `[export.otlp]` to the bench's receiver when true (the OTLP export
    /// scenario).
    Export(bool),
}

impl Setup {
    pub fn subscribers(self) -> u32 {
        match self {
            Setup::Subscribers(n) => n,
            Setup::Export(_) => 0,
        }
    }

    pub fn exports(self) -> bool {
        matches!(self, Setup::Export(true))
    }

    /// As in the tables: `0 subscriber(s)`, `no export`, `OTLP export`.
    pub fn name(self) -> String {
        match self {
            Setup::Subscribers(n) => format!("{n} subscriber(s)"),
            Setup::Export(false) => "no export".into(),
            Setup::Export(true) => "OTLP export".into(),
        }
    }

    /// Name in the JSON file (the OTLP scenario's runs).
    pub fn key(self) -> &'static str {
        match self {
            Setup::Subscribers(_) => "subscribers",
            Setup::Export(false) => "no_export",
            Setup::Export(true) => "otlp_export",
        }
    }
}

/// The runs of one setup.
pub struct ApiSeries {
    pub setup: Setup,
    pub runs: Vec<ApiRun>,
    pub error: Option<String>,
}

/// The crates the API's dependencies brought (hyper, hyper-util, prometheus-client).
pub struct ApiCrates {
    /// Crates (name and version) in `cargo tree -p claude-monitor -e normal`.
    pub total: usize,
    /// Of those, the crates reachable only through the API's dependencies.
    pub only_api: Vec<String>,
}

/// The daemon's direct dependencies that the API brought.
pub const API_DEPS: &[&str] = &["hyper", "hyper-util", "prometheus-client"];

/// The API subscribers scenario: a series per subscriber count.
pub fn run(
    tools: &Tools,
    helpers: &Helpers,
    sizes: &Sizes,
    counts: &[u32],
) -> Result<Vec<ApiSeries>> {
    let setups: Vec<Setup> = counts.iter().map(|&n| Setup::Subscribers(n)).collect();
    series(tools, helpers, sizes, Scenario::Api, &setups)
}

/// Daemon runs of the storm, `sizes.rounds` of each setup, each paired with an untraced
/// storm made just before it.
pub fn series(
    tools: &Tools,
    helpers: &Helpers,
    sizes: &Sizes,
    scenario: Scenario,
    setups: &[Setup],
) -> Result<Vec<ApiSeries>> {
    // Pid-file names apart from the spawn storm's and from each other's.
    let (title, mut run_no) = match scenario {
        Scenario::Api => ("API subscribers", 100_000u32),
        Scenario::Otlp => ("OTLP export", 200_000u32),
        other => bail!("the {} scenario does not run the daemon", other.key()),
    };
    let base = helpers.scratch.join(scenario.key());
    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let spawner = base.join(SESSION_COMM);
    fs::copy(&helpers.spawner, &spawner)
        .with_context(|| format!("cannot copy the spawner to {}", spawner.display()))?;
    // The untraced runs use the same copy, so that a pair differs only by the daemon.
    let storm = Helpers {
        spawner,
        sigstorm: helpers.sigstorm.clone(),
        memhog: helpers.memhog.clone(),
        exit0: helpers.exit0.clone(),
        scratch: helpers.scratch.clone(),
    };
    let mut series: Vec<ApiSeries> = setups
        .iter()
        .map(|&setup| ApiSeries {
            setup,
            runs: Vec::new(),
            error: None,
        })
        .collect();
    for round in 1..=sizes.rounds {
        for s in series.iter_mut().filter(|s| s.error.is_none()) {
            run_no += 1;
            let untraced = scenarios::storm_run(tools, &storm, sizes, Runner::Untraced, run_no)
                .context("untraced spawn-storm run failed")?;
            run_no += 1;
            match daemon_run(tools, &storm, sizes, s.setup, run_no, &base) {
                Ok(mut r) => {
                    r.untraced_wall_s = untraced.wall_s;
                    let what = match (&s.setup, &r.export) {
                        (Setup::Subscribers(_), _) => format!(
                            "received {:?}",
                            r.subscribers.iter().map(|f| f.received).collect::<Vec<_>>()
                        ),
                        (Setup::Export(_), Some(e)) => otlp::round_text(e),
                        (Setup::Export(_), None) => "no export".into(),
                    };
                    eprintln!(
                        "xtask: bench: {title} round {round}/{}: {} {:.2} s, \
                         untraced {:.2} s, {} events logged, {what}, CPU {} s",
                        sizes.rounds,
                        s.setup.name(),
                        r.wall_s,
                        r.untraced_wall_s,
                        r.logged,
                        r.cpu_s.map_or("n/a".into(), |c| format!("{c:.2}")),
                    );
                    s.runs.push(r);
                }
                Err(err) => {
                    eprintln!("xtask: bench: {title}, {} failed: {err:#}", s.setup.name());
                    s.error = Some(format!("{err:#}"));
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&base);
    Ok(series)
}

/// Waits until `done` holds, checking every 10 ms, at most `max`.
pub(super) fn wait_for(
    max: Duration,
    what: &str,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + max;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {max:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn daemon_run(
    tools: &Tools,
    helpers: &Helpers,
    sizes: &Sizes,
    setup: Setup,
    run_no: u32,
    base: &Path,
) -> Result<ApiRun> {
    let dir = base.join(format!("run{run_no}"));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _remove = RemoveDir(dir.clone());
    let data = dir.join("data");
    let socket = dir.join("api.sock");
    let config = dir.join("config.toml");
    // The receiver outlives the daemon, so that what it sends at its stop is taken.
    let sink = setup.exports().then(Sink::start).transpose()?;
    let export = sink.as_ref().map_or_else(String::new, |sink| {
        format!("[export.otlp]\nendpoint = \"{}\"\n", sink.endpoint())
    });
    // A log large enough never to rotate during a run; no pinning (the daemon's programs
    // go with it); the storm's spawners are the roots of a session.
    fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[logs]\nmax_bytes = 4000000000\n[kernel]\npin = false\n\
             [api]\nsocket = \"{}\"\n{export}[[rules]]\nname = \"bench-storm\"\ncomm = \"{SESSION_COMM}\"\n",
            data.display(),
            socket.display()
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let stderr_path = dir.join("daemon.stderr");
    let mut daemon = Daemon::start(&tools.agent, &config, &stderr_path)?;
    let mut log = LogTail::new(data.join("logs").join("events.jsonl"));
    wait_for(WAIT, "the daemon's agent_start and socket", || {
        daemon.check_running(&stderr_path)?;
        log.poll()?;
        Ok(log.lines.iter().any(|l| l.kind == "agent_start") && get(&socket, "/healthz").is_ok())
    })?;
    let startup_hwm_kb = usage_of(daemon.pid()).hwm_kb;
    let _ = fs::write(format!("/proc/{}/clear_refs", daemon.pid()), "5");

    let subscribers = setup.subscribers();
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        subs.push(Subscriber::connect(&socket)?);
    }
    wait_for(WAIT, "the subscribers on the bus", || {
        daemon.check_running(&stderr_path)?;
        let health = get(&socket, "/healthz")?;
        Ok(health["subscribers"].as_u64() >= Some(u64::from(subscribers)))
    })?;

    // The spawners, waiting for their start line; their exec starts the session.
    let mut spawners = Spawners::start(helpers, sizes, run_no)?;
    let spawner_pids = spawners.pids();
    let mut first_seq = 0;
    wait_for(
        WAIT,
        "the session of the spawners in the daemon's log",
        || {
            daemon.check_running(&stderr_path)?;
            log.poll()?;
            let seen: Vec<u64> = spawner_pids
                .iter()
                .filter_map(|p| {
                    log.lines
                        .iter()
                        .find(|l| l.pid == Some(*p) && l.kind == "exec")
                        .and_then(|l| l.seq)
                })
                .collect();
            first_seq = seen.iter().copied().max().unwrap_or(0);
            Ok(seen.len() == spawner_pids.len())
        },
    )?;
    wait_for(WAIT, "each subscriber's first events", || {
        daemon.check_running(&stderr_path)?;
        Ok(subs.iter().all(|s| s.max_id() >= first_seq))
    })?;

    let s0 = get(&socket, "/healthz")?["seq"]
        .as_u64()
        .context("/healthz has no seq")?;
    let before = usage_of(daemon.pid());
    let mut problems = Vec::new();
    let wall_s = spawners.release(&mut problems)?;

    // Caught up: the spawners' exits are in the log (each is written after its children's:
    // records come in order), then every subscriber has read up to the log's last seq.
    wait_for(WAIT, "the spawners' exits in the daemon's log", || {
        daemon.check_running(&stderr_path)?;
        log.poll()?;
        Ok(spawner_pids.iter().all(|p| {
            log.lines
                .iter()
                .any(|l| l.pid == Some(*p) && l.kind == "exit")
        }))
    })?;
    let s1 = log.lines.iter().filter_map(|l| l.seq).max().unwrap_or(s0);
    for (i, sub) in subs.iter().enumerate() {
        // A subscriber that lost events may never see s1: it stops once it is silent.
        let mut last = (sub.frames(), Instant::now());
        let deadline = Instant::now() + WAIT;
        while sub.max_id() < s1 {
            std::thread::sleep(Duration::from_millis(10));
            let n = sub.frames();
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() >= Duration::from_secs(1) || Instant::now() >= deadline {
                problems.push(format!(
                    "subscriber {i} stopped at seq {} before the window's end {s1}",
                    sub.max_id()
                ));
                break;
            }
        }
    }
    // With the export: until every event up to s1 is sent or lost.
    let mut export = match &sink {
        Some(sink) => Some(otlp::caught_up(sink, &socket, s1, || {
            daemon.check_running(&stderr_path)
        })?),
        None => None,
    };
    let after = usage_of(daemon.pid());
    let hwm_kb = after.hwm_kb;

    let status = daemon.stop()?;
    if !status.success() {
        let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
        problems.push(format!(
            "the daemon exited with {status}: {}",
            tail(&stderr)
        ));
    }
    let mut received = Vec::new();
    for (i, sub) in subs.into_iter().enumerate() {
        match sub.finish() {
            Ok(frames) => received.push(frames),
            Err(err) => {
                problems.push(format!("subscriber {i}: {err}"));
                received.push(Vec::new());
            }
        }
    }
    log.poll()?;
    if let (Some(e), Some(sink)) = (export.as_mut(), &sink) {
        e.logged = log
            .lines
            .iter()
            .filter(|l| l.seq.is_some_and(|s| s <= s1))
            .count() as u64;
        problems.extend(otlp::problems(e, sink));
    }
    let spawned = spawners.spawned(&mut problems)?;
    let in_window = |seq: Option<u64>| seq.is_some_and(|s| s > s0 && s <= s1);
    let window: Vec<&LogLine> = log.lines.iter().filter(|l| in_window(l.seq)).collect();
    let exits_logged = window
        .iter()
        .filter(|l| l.kind == "exit" && l.pid.is_some_and(|p| spawned.contains(&p)))
        .count();
    let kernel_lost = window
        .iter()
        .filter(|l| l.kind == "lost")
        .map(|l| l.count.unwrap_or(0))
        .sum();
    let mut latencies_ms = Vec::new();
    let mut figures = Vec::new();
    for (i, frames) in received.iter().enumerate() {
        let mut f = SubscriberFigures::default();
        for fr in frames {
            match fr.info {
                Info::Lost(count) if fr.id.is_none() => {
                    f.lost_frames += 1;
                    f.lost_events += count;
                }
                _ if !in_window(fr.id) => {}
                Info::Exit { pid, ts_ns } => {
                    f.received += 1;
                    if spawned.contains(&pid) {
                        f.exits += 1;
                        if let Some(ts) = ts_ns {
                            latencies_ms.push((fr.at_ns - ts) as f64 / 1e6);
                        }
                    }
                }
                _ => f.received += 1,
            }
        }
        f.behind = problems
            .iter()
            .any(|p| p.starts_with(&format!("subscriber {i} stopped")));
        figures.push(f);
    }
    Ok(ApiRun {
        wall_s,
        untraced_wall_s: 0.0,
        spawned: spawned.len(),
        logged: window.len() as u64,
        exits_logged,
        kernel_lost,
        cpu_s: after.cpu_s.zip(before.cpu_s).map(|(a, b)| a - b),
        hwm_kb,
        startup_hwm_kb,
        subscribers: figures,
        latencies_ms,
        export,
        problems,
    })
}

fn tail(text: &str) -> String {
    text.lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The daemon, killed and reaped when dropped (after an error half-way).
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(agent: &Path, config: &Path, stderr: &Path) -> Result<Daemon> {
        let err = fs::File::create(stderr)
            .with_context(|| format!("cannot create {}", stderr.display()))?;
        let child = Command::new(agent)
            .arg("daemon")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("could not start {} daemon", agent.display()))?;
        Ok(Daemon { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_running(&mut self, stderr: &Path) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("waiting for the daemon")? {
            let text = fs::read_to_string(stderr).unwrap_or_default();
            bail!("the daemon exited with {status}: {}", tail(&text));
        }
        Ok(())
    }

    /// SIGTERM, and waits for it (SIGKILL after 60 s).
    fn stop(&mut self) -> Result<ExitStatus> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the daemon")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                eprintln!("xtask: warning: the daemon did not stop within 60 s of SIGTERM");
                let _ = self.child.kill();
                return self.child.wait().context("waiting for the daemon");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One line of the daemon's event log, what the figures need of it.
struct LogLine {
    seq: Option<u64>,
    kind: String,
    pid: Option<u32>,
    count: Option<u64>,
}

/// The daemon's event log, read as it grows.
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    lines: Vec<LogLine>,
}

impl LogTail {
    fn new(path: PathBuf) -> LogTail {
        LogTail {
            path,
            offset: 0,
            partial: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Reads what was appended since the last call (nothing when the file is not there yet).
    fn poll(&mut self) -> Result<()> {
        let mut file = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", self.path.display()));
            }
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let n = file.read_to_end(&mut self.partial)?;
        self.offset += n as u64;
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        for line in self.partial[..end].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_slice(line).with_context(|| {
                format!(
                    "unparsable line in the daemon's log: {}",
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                )
            })?;
            self.lines.push(LogLine {
                seq: v["seq"].as_u64(),
                kind: v["kind"].as_str().unwrap_or_default().to_owned(),
                pid: v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()),
                count: v["count"].as_u64(),
            });
        }
        self.partial.drain(..=end);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// HTTP over the socket

/// `GET path` on the socket, the body as JSON.
fn get(socket: &Path, path: &str) -> Result<Value> {
    let body = get_body(socket, path)?;
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

/// `GET path` on the socket: the body of a 200 answer.
pub(super) fn get_body(socket: &Path, path: &str) -> Result<Vec<u8>> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let (status, chunked, head_len) =
        head(&resp).with_context(|| format!("GET {path}: no HTTP header in the answer"))?;
    let mut body = Vec::new();
    if chunked {
        dechunk(&mut Chunk::Size, &resp[head_len..], &mut body).map_err(anyhow::Error::msg)?;
    } else {
        body.extend_from_slice(&resp[head_len..]);
    }
    if status != 200 {
        bail!(
            "GET {path}: status {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(body)
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP response's status, whether its body is chunked, and its header's length
/// (`None` until the whole header is there).
fn head(resp: &[u8]) -> Option<(u16, bool, usize)> {
    let end = find(resp, b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&resp[..end]);
    let mut lines = text.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Some((status, chunked, end + 4))
}

/// Where a chunked body's decoding is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data to go.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The last (empty) chunk was read.
    Done,
}

/// Decodes what it can of `raw` into `out`; returns how many bytes of `raw` it used.
fn dechunk(state: &mut Chunk, raw: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
    let mut pos = 0;
    loop {
        match *state {
            Chunk::Size => {
                let Some(nl) = find(&raw[pos..], b"\r\n") else {
                    return Ok(pos);
                };
                let line = String::from_utf8_lossy(&raw[pos..pos + nl]);
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad chunk size line {line:?}"))?;
                pos += nl + 2;
                *state = if size == 0 {
                    Chunk::Done
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                let take = left.min(raw.len() - pos);
                if take == 0 {
                    return Ok(pos);
                }
                out.extend_from_slice(&raw[pos..pos + take]);
                pos += take;
                *state = if take == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - take)
                };
            }
            Chunk::DataEnd => {
                if raw.len() - pos < 2 {
                    return Ok(pos);
                }
                pos += 2;
                *state = Chunk::Size;
            }
            Chunk::Done => return Ok(raw.len()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The subscribers

/// What a frame's data says, as far as the figures go.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Info {
    Exit {
        pid: u32,
        ts_ns: Option<i128>,
    },
    /// A `lost` record and its count.
    Lost(u64),
    Other,
}

/// One SSE message and when its bytes were read (ns since the Unix epoch).
#[derive(Clone, Copy, Debug)]
struct Frame {
    at_ns: i128,
    id: Option<u64>,
    info: Info,
}

/// The string value after the first `"key":"`.
fn str_after<'a>(data: &'a str, key: &str) -> Option<&'a str> {
    let start = data.find(key)? + key.len();
    let len = data[start..].find('"')?;
    Some(&data[start..start + len])
}

/// What the figures need of an event line, without parsing all of it: the daemon writes
/// `v`, `seq`, `kind`, `ts`, `pid` first, so their first occurrences are the event's own.
/// A `lost` record (rare) is parsed whole.
fn inspect(data: &[u8]) -> Info {
    let Ok(text) = std::str::from_utf8(data) else {
        return Info::Other;
    };
    match str_after(text, "\"kind\":\"") {
        Some("exit") => {
            let pid = text.find("\"pid\":").and_then(|i| {
                let rest = &text[i + 6..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                rest[..end].parse().ok()
            });
            match pid {
                Some(pid) => Info::Exit {
                    pid,
                    ts_ns: str_after(text, "\"ts\":\"").and_then(rfc3339_ns),
                },
                None => Info::Other,
            }
        }
        Some("lost") => Info::Lost(
            serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v["count"].as_u64())
                .unwrap_or(0),
        ),
        _ => Info::Other,
    }
}

/// SSE lines into frames.
#[derive(Default)]
struct SseParser {
    id: Option<u64>,
    info: Option<Info>,
    /// Decoded body not yet split into lines.
    pending: Vec<u8>,
}

impl SseParser {
    /// Takes the complete lines of `pending`; a blank line ends a message.
    fn frames(&mut self, at_ns: i128, out: &mut Vec<Frame>) {
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let mut line = &self.pending[start..start + nl];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line.is_empty() {
                if let Some(info) = self.info.take() {
                    out.push(Frame {
                        at_ns,
                        id: self.id,
                        info,
                    });
                }
                self.id = None;
            } else if let Some(v) = line.strip_prefix(b"id: ") {
                self.id = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
            } else if let Some(v) = line.strip_prefix(b"data: ") {
                self.info = Some(inspect(v));
            }
            start += nl + 1;
        }
        self.pending.drain(..start);
    }
}

/// One subscriber: a thread reading `/v1/events/stream` until the daemon closes it.
struct Subscriber {
    stream: UnixStream,
    frames: Arc<AtomicU64>,
    max_id: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<Vec<Frame>, String>>>,
}

impl Subscriber {
    fn connect(socket: &Path) -> Result<Subscriber> {
        let mut stream = UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        stream.write_all(
            b"GET /v1/events/stream HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )?;
        let reader = stream.try_clone()?;
        let frames = Arc::new(AtomicU64::new(0));
        let max_id = Arc::new(AtomicU64::new(0));
        let (f, m) = (Arc::clone(&frames), Arc::clone(&max_id));
        let thread = std::thread::spawn(move || read_stream(reader, &f, &m));
        Ok(Subscriber {
            stream,
            frames,
            max_id,
            thread: Some(thread),
        })
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }

    fn max_id(&self) -> u64 {
        self.max_id.load(Ordering::Acquire)
    }

    /// Once the daemon stopped (the stream ends): what it read.
    fn finish(mut self) -> Result<Vec<Frame>, String> {
        let thread = self.thread.take().ok_or("no reader")?;
        // Should the daemon not have closed it, end the reader's wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        thread
            .join()
            .map_err(|_| "the reader panicked".to_owned())?
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_stream(
    mut stream: UnixStream,
    count: &AtomicU64,
    max_id: &AtomicU64,
) -> Result<Vec<Frame>, String> {
    let mut buf = vec![0u8; 1 << 20];
    let mut raw: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let (chunked, mut at_ns) = loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the stream ended before its header".into());
        }
        let at = now_ns();
        raw.extend_from_slice(&buf[..n]);
        if let Some((status, chunked, len)) = head(&raw) {
            if status != 200 {
                return Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&raw)
                ));
            }
            raw.drain(..len);
            break (chunked, at);
        }
    };
    let mut state = Chunk::Size;
    let mut sse = SseParser::default();
    loop {
        if chunked {
            let used = dechunk(&mut state, &raw, &mut sse.pending)?;
            raw.drain(..used);
        } else {
            sse.pending.append(&mut raw);
        }
        let before = frames.len();
        sse.frames(at_ns, &mut frames);
        if frames.len() > before {
            if let Some(id) = frames[before..].iter().filter_map(|f| f.id).max() {
                max_id.fetch_max(id, Ordering::AcqRel);
            }
            count.store(frames.len() as u64, Ordering::Release);
        }
        if state == Chunk::Done {
            return Ok(frames);
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(frames),
            Ok(n) => n,
            // Shut down by the bench.
            Err(_) => return Ok(frames),
        };
        at_ns = now_ns();
        raw.extend_from_slice(&buf[..n]);
    }
}

// ---------------------------------------------------------------------------------------
// The API's dependencies

/// The crates of `cargo tree -p claude-monitor -e normal`, and the ones reachable only
/// through [`API_DEPS`] (the set reachable from the root without its edges to them,
/// subtracted from the whole).
pub fn api_crates() -> Result<ApiCrates> {
    let mut cmd = crate::cargo::cargo();
    cmd.args([
        "tree",
        "-p",
        "claude-monitor",
        "-e",
        "normal",
        "--prefix",
        "depth",
        "--format",
        "{p}",
        "--offline",
    ])
    .current_dir(crate::cargo::workspace_root());
    let out = crate::cargo::capture(&mut cmd)?;
    Ok(crates_only_through(&out, API_DEPS))
}

/// [`api_crates`] on `cargo tree --prefix depth --format {p}` output.
fn crates_only_through(tree: &str, deps: &[&str]) -> ApiCrates {
    let mut edges: HashMap<String, Vec<String>> = HashMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut root = None;
    for line in tree.lines() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        // `name vX.Y.Z (path)`, `(*)` when its subtree was printed before.
        let mut words = line[digits..].split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let krate = format!("{name} {version}");
        stack.truncate(depth);
        if let Some(parent) = stack.last() {
            edges.entry(parent.clone()).or_default().push(krate.clone());
        } else {
            root.get_or_insert_with(|| krate.clone());
        }
        stack.push(krate);
    }
    let Some(root) = root else {
        return ApiCrates {
            total: 0,
            only_api: Vec::new(),
        };
    };
    let is_api = |k: &str| deps.iter().any(|d| k.split(' ').next() == Some(*d));
    let reach = |skip_api: bool| {
        let mut seen = HashSet::new();
        let mut todo = vec![root.clone()];
        while let Some(k) = todo.pop() {
            let top = k == root;
            if !seen.insert(k.clone()) {
                continue;
            }
            for child in edges.get(&k).into_iter().flatten() {
                if !(skip_api && top && is_api(child)) {
                    todo.push(child.clone());
                }
            }
        }
        seen
    };
    let all = reach(false);
    let without = reach(true);
    let mut only_api: Vec<String> = all.difference(&without).cloned().collect();
    only_api.sort();
    ApiCrates {
        total: all.len() - 1,
        only_api,
    }
}

// ---------------------------------------------------------------------------------------
// Report

pub(super) fn f(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// A series' figures over its runs.
pub(super) struct Summary {
    pub wall_s: Option<f64>,
    pub ratio: Option<f64>,
    pub logged: u64,
    pub spawned: usize,
    pub exits_logged: usize,
    pub kernel_lost: u64,
    pub cpu_s: Option<f64>,
    pub per_1k: Option<f64>,
    pub hwm_kb: Option<u64>,
    pub startup_hwm_kb: Option<u64>,
    /// Per subscriber, summed over runs.
    pub received: Vec<SubscriberFigures>,
    pub latencies_ms: Vec<f64>,
    pub problems: Vec<String>,
}

pub(super) fn summarize(s: &ApiSeries) -> Summary {
    let walls: Vec<f64> = s.runs.iter().map(|r| r.wall_s).collect();
    let pairs: Vec<(f64, f64)> = s
        .runs
        .iter()
        .map(|r| (r.untraced_wall_s, r.wall_s))
        .collect();
    let cpu_s = s
        .runs
        .iter()
        .map(|r| r.cpu_s)
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.iter().sum::<f64>());
    let logged = s.runs.iter().map(|r| r.logged).sum();
    let mut received: Vec<SubscriberFigures> =
        vec![SubscriberFigures::default(); s.setup.subscribers() as usize];
    for r in &s.runs {
        for (sum, f) in received.iter_mut().zip(&r.subscribers) {
            sum.received += f.received;
            sum.lost_frames += f.lost_frames;
            sum.lost_events += f.lost_events;
            sum.exits += f.exits;
            sum.behind |= f.behind;
        }
    }
    let mut problems: Vec<String> = Vec::new();
    for p in s.runs.iter().flat_map(|r| r.problems.iter()) {
        if !problems.contains(p) {
            problems.push(p.clone());
        }
    }
    Summary {
        wall_s: stats::median(&walls),
        ratio: stats::median_of_ratios(&pairs),
        logged,
        spawned: s.runs.iter().map(|r| r.spawned).sum(),
        exits_logged: s.runs.iter().map(|r| r.exits_logged).sum(),
        kernel_lost: s.runs.iter().map(|r| r.kernel_lost).sum(),
        cpu_s,
        per_1k: cpu_s.and_then(|c| (logged > 0).then(|| c / logged as f64 * 1000.0)),
        hwm_kb: s.runs.iter().filter_map(|r| r.hwm_kb).max(),
        startup_hwm_kb: s.runs.iter().filter_map(|r| r.startup_hwm_kb).max(),
        received,
        latencies_ms: s
            .runs
            .iter()
            .flat_map(|r| r.latencies_ms.iter().copied())
            .collect(),
        problems,
    }
}

/// What subscribers received against what the daemon logged: `all 60012/60012` when they
/// agree, else the range of their counts.
fn received_text(s: &Summary) -> String {
    if s.received.is_empty() {
        return "-".into();
    }
    let counts: Vec<u64> = s.received.iter().map(|f| f.received).collect();
    let (lo, hi) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    let who = if s.received.len() == 1 {
        "1".to_owned()
    } else {
        format!("each of {}", s.received.len())
    };
    if lo == hi {
        format!("{who}: {lo}/{}", s.logged)
    } else {
        format!("{who}: {lo}..{hi}/{}", s.logged)
    }
}

/// Peak RSS in MiB, from KiB.
pub(super) fn mib(kb: Option<u64>) -> String {
    f(kb.map(|kb| kb as f64 / 1024.0), 1)
}

/// What a daemon scenario's table says besides the columns every one has.
pub(super) struct TableText<'a> {
    /// `API subscribers`: the caption's start, and the prefix of its notes.
    pub title: &'a str,
    /// The runs' set-up, in the caption after the storm's size.
    pub setup: &'a str,
    /// How its own figures are made, at the caption's end.
    pub figures: &'a str,
    /// Its own columns, after `run`, `wall s`, `ratio`, `exits logged`, `events logged`.
    pub headers: &'a [&'a str],
}

/// A daemon scenario's table: a row per series, its name and the storm's figures, then
/// the cells `row` makes from its summary (with notes of its own, said after the series'
/// problems); a series that never ran reads n/a. Its problems go to `notes`, prefixed with
/// the title; the daemon's start-up peak RSS is said below the table.
pub(super) fn render_series(
    text: &TableText,
    sizes: &Sizes,
    series: &[ApiSeries],
    notes: &mut Vec<String>,
    mut row: impl FnMut(&ApiSeries, &Summary, &str, &mut Vec<String>) -> Vec<String>,
) -> String {
    let title = text.title;
    let mut headers = vec!["run", "wall s", "ratio", "exits logged", "events logged"];
    headers.extend(text.headers);
    let mut rows = Vec::new();
    for s in series {
        let name = format!("daemon, {}", s.setup.name());
        if let Some(err) = &s.error
            && s.runs.is_empty()
        {
            let mut cells = vec![name];
            cells.resize(headers.len() - 1, "n/a".into());
            cells.push(format!("n/a: {err}"));
            rows.push(cells);
            continue;
        }
        let m = summarize(s);
        let mut cells = vec![
            name.clone(),
            f(m.wall_s, 2),
            f(m.ratio, 3),
            format!("{}/{}", m.exits_logged, m.spawned),
            m.logged.to_string(),
        ];
        let mut own = Vec::new();
        cells.extend(row(s, &m, &name, &mut own));
        rows.push(cells);
        if let Some(err) = &s.error {
            notes.push(format!("{title}, {name}: stopped early: {err}"));
        }
        for p in &m.problems {
            notes.push(format!("{title}, {name}: {p}"));
        }
        notes.extend(own);
    }
    let startup = series
        .iter()
        .flat_map(|s| s.runs.iter().filter_map(|r| r.startup_hwm_kb))
        .max();
    let caption = format!(
        "{title}: the daemon (a [[rules]] session around the spawners) during the spawn storm, {} processes over {} spawners, {} round(s), {}; ratio = median of pairwise ratios to an untraced storm just before; {}",
        sizes.storm, sizes.spawners, sizes.rounds, text.setup, text.figures
    );
    let mut out = table(&caption, &headers, &rows);
    out.push_str(&format!(
        "  daemon start-up peak RSS (before the reset): {} MiB\n",
        mib(startup)
    ));
    out
}

pub fn render(series: &[ApiSeries], sizes: &Sizes, notes: &mut Vec<String>) -> String {
    let text = TableText {
        title: "API subscribers",
        setup: "with N SSE subscribers on /v1/events/stream reading everything",
        figures: "CPU = the daemon's utime+stime until it and its subscribers caught up; latency = a subscriber's read time minus the exit's ts, every subscriber's exits, ms",
        headers: &[
            "events received",
            "lost frames",
            "CPU s / 1k events",
            "peak RSS MiB",
            "p50 ms",
            "p99 ms",
            "kernel lost",
        ],
    };
    let mut out = render_series(&text, sizes, series, notes, |s, m, name, notes| {
        let lost_frames: u64 = m.received.iter().map(|f| f.lost_frames).sum();
        let lost_events: u64 = m.received.iter().map(|f| f.lost_events).sum();
        if m.received.iter().any(|r| r.behind) {
            notes.push(format!(
                "API subscribers, {name}: a subscriber had not read the whole window when the bench stopped waiting"
            ));
        }
        vec![
            received_text(m),
            if s.setup.subscribers() == 0 {
                "-".into()
            } else {
                format!("{lost_frames} ({lost_events} events)")
            },
            f(m.per_1k, 4),
            mib(m.hwm_kb),
            f(stats::percentile(&m.latencies_ms, 50.0), 2),
            f(stats::percentile(&m.latencies_ms, 99.0), 2),
            m.kernel_lost.to_string(),
        ]
    });
    out.push('\n');
    out
}

pub fn crates_text(crates: &Result<ApiCrates, String>) -> String {
    match crates {
        Ok(c) => format!(
            "What the API's dependencies cost: {} of the {} crates in `cargo tree -p claude-monitor -e normal` come only through {} (build time: docs/bench.md)\n\n",
            c.only_api.len(),
            c.total,
            API_DEPS.join(", ")
        ),
        Err(e) => format!("What the API's dependencies cost: n/a: {e}\n\n"),
    }
}

/// The figures every daemon series has, for the JSON file.
pub(super) fn series_json(s: &ApiSeries, m: &Summary) -> Value {
    json!({
        "wall_s": s.runs.iter().map(|r| r.wall_s).collect::<Vec<_>>(),
        "untraced_wall_s": s.runs.iter().map(|r| r.untraced_wall_s).collect::<Vec<_>>(),
        "wall_s_median": m.wall_s,
        "ratio_median": m.ratio,
        "ratios": s.runs.iter().map(ApiRun::ratio).collect::<Vec<_>>(),
        "spawned": m.spawned,
        "exits_logged": m.exits_logged,
        "events_logged": m.logged,
        "kernel_lost": m.kernel_lost,
        "cpu_s": m.cpu_s,
        "cpu_s_per_1k_events": m.per_1k,
        "peak_rss_kb": m.hwm_kb,
        "startup_peak_rss_kb": m.startup_hwm_kb,
        "problems": m.problems,
        "error": s.error,
    })
}

pub fn to_json(series: &[ApiSeries], crates: &Result<ApiCrates, String>) -> Value {
    let runs: Vec<Value> = series
        .iter()
        .map(|s| {
            let m = summarize(s);
            let mut v = series_json(s, &m);
            v["subscribers"] = json!(s.setup.subscribers());
            v["per_subscriber"] = m
                .received
                .iter()
                .map(|r| {
                    json!({
                        "events_received": r.received,
                        "lost_frames": r.lost_frames,
                        "lost_events": r.lost_events,
                        "exits_received": r.exits,
                        "behind": r.behind,
                    })
                })
                .collect();
            v["latency_ms"] = json!({
                "n": m.latencies_ms.len(),
                "p50": stats::percentile(&m.latencies_ms, 50.0),
                "p99": stats::percentile(&m.latencies_ms, 99.0),
                "max": m.latencies_ms.iter().copied().reduce(f64::max),
            });
            v
        })
        .collect();
    let crates = match crates {
        Ok(c) => json!({
            "deps": API_DEPS,
            "crates_total": c.total,
            "crates_only_through_api": c.only_api.len(),
            "crates": c.only_api,
        }),
        Err(e) => json!({"error": e}),
    };
    json!({ "runs": runs, "dependencies": crates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_reads() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        let mut whole = Vec::new();
        let mut st = Chunk::Size;
        assert_eq!(dechunk(&mut st, raw, &mut whole), Ok(raw.len()));
        assert_eq!(whole, b"hello, world");
        assert_eq!(st, Chunk::Done);
        // Byte by byte, as reads may split it anywhere.
        let (mut out, mut st, mut pending) = (Vec::new(), Chunk::Size, Vec::new());
        for b in raw {
            pending.push(*b);
            let used = dechunk(&mut st, &pending, &mut out).unwrap();
            pending.drain(..used);
        }
        assert_eq!(out, b"hello, world");
        assert_eq!(st, Chunk::Done);
        assert!(dechunk(&mut Chunk::Size, b"zz\r\n", &mut Vec::new()).is_err());
    }

    #[test]
    fn sse_frames_and_what_they_carry() {
        let exit = r#"{"v":1,"seq":3,"kind":"exit","ts":"2026-12-04T23:15:37.911028734Z","pid":12536,"comm":"cm-bench-spawn","tid":12536,"ppid":12521,"session":{"root_pid":1}}"#;
        let mut p = SseParser::default();
        p.pending.extend_from_slice(
            format!(
                "id: 3\nevent: exit\ndata: {exit}\n\nevent: lost\ndata: {{\"v\":1,\"kind\":\"lost\",\"ts\":\"2026-12-04T23:15:38Z\",\"pid\":1,\"comm\":\"x\",\"count\":42,\"reason\":\"subscriber_queue\"}}\n\n: keep-alive\n\nid: 4\nevent: fork\ndata: {{\"v\":1,\"seq\":4,\"kind\":\"fork\"}}\n\nid: 5\nda"
            )
            .as_bytes(),
        );
        let mut frames = Vec::new();
        p.frames(7, &mut frames);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].id, Some(3));
        assert_eq!(
            frames[0].info,
            Info::Exit {
                pid: 12536,
                ts_ns: rfc3339_ns("2026-12-04T23:15:37.911028734Z")
            }
        );
        assert_eq!(frames[0].at_ns, 7);
        assert_eq!((frames[1].id, frames[1].info), (None, Info::Lost(42)));
        assert_eq!((frames[2].id, frames[2].info), (Some(4), Info::Other));
        assert_eq!(
            p.pending, b"da",
            "the incomplete line waits for the next read"
        );
        assert_eq!(p.id, Some(5));
    }

    #[test]
    fn http_heads() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
        assert_eq!(head(r), Some((200, true, r.len() - 3)));
        assert_eq!(
            head(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Some((404, false, 26))
        );
        assert_eq!(head(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn crates_reached_only_through_some_dependencies() {
        // root -> a -> shared, root -> hyper -> h1 -> shared, root -> hyper-util -> hyper (*)
        let tree = "0root v0.1.0 (/x)\n1a v1.0.0\n2shared v1.0.0\n1hyper v1.0.0\n2h1 v0.1.0\n\
                    3shared v1.0.0\n1hyper-util v0.1.0\n2hyper v1.0.0 (*)\n2hu-only v2.0.0\n1b v1.0.0\n";
        let c = crates_only_through(tree, API_DEPS);
        assert_eq!(c.total, 7);
        assert_eq!(
            c.only_api,
            vec![
                "h1 v0.1.0",
                "hu-only v2.0.0",
                "hyper v1.0.0",
                "hyper-util v0.1.0"
            ]
        );
        // A dependency also reached another way is not counted.
        let tree = "0root v0.1.0\n1hyper v1.0.0\n1a v1.0.0\n2hyper v1.0.0 (*)\n";
        assert!(crates_only_through(tree, API_DEPS).only_api.is_empty());
    }
}

//! `claude-monitor daemon`: the host agent. Watches every agent session (and configured
//! rule trees) plus every OOM kill on the host, writes the attributed event stream, exit
//! reports, resource logs and alerts under the data directory, and (with pinning) keeps the
//! kernel recording while it is down.
//!
//! Files (all under `data_dir`):
//! `logs/events.jsonl` (every event; the first record after each start is `agent_start`),
//! `logs/resources-system.jsonl`, `logs/resources-sessions.jsonl`, `logs/alerts.jsonl` (each
//! rotated as `<name>.1` ... `<name>.N`), `reports/<id>.json` and `reports/<id>.txt`.
//!
//! A write that fails (full disk, unwritable directory) is reported on stderr (once per
//! file until it works again) and the agent keeps running; the event is still counted.

pub mod alerts;
pub mod reports;
pub mod resources;
pub mod service;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{SignalKind, signal};

use self::{
    alerts::{AlertThresholds, Alerter},
    resources::{History, SessionRef, SessionSampler},
};
use crate::{
    api,
    claude::detect::Detector,
    config::{self, Config, IgnoredSignals},
    diag,
    event::Body,
    event::StopReason,
    host::cgroups::MemoryHierarchy,
    kernel::loader::ScopeMode,
    pipeline::engine::{BUSY_POLL, COUNTER_PERIOD, Engine, EngineOptions},
    pipeline::output::{Output, OutputError},
    report::ReportStore,
};

mod logs;
mod metrics;
mod output;

use self::{logs::Log, output::DaemonOutput};

/// Validated `daemon` invocation.
pub struct DaemonOptions {
    pub config: config::Loaded,
    /// The configuration file to re-read on SIGHUP (`None`: the default path).
    pub config_path: Option<PathBuf>,
    pub flags: Vec<(&'static str, String)>,
    pub stdout: bool,
    pub duration: Option<Duration>,
}

fn thresholds(c: &Config) -> AlertThresholds {
    AlertThresholds {
        memory_percent: c.alerts.memory_percent,
        disk_percent: c.alerts.disk_percent,
        session_rss_mb: c.alerts.session_rss_mb,
        cooldown: c.alerts.cooldown,
    }
}

/// Refuses a configuration file that a user other than root (or the daemon's own user) could
/// change: it names where the daemon writes, what it unpins and what it watches.
pub fn trusted_config(loaded: &config::Loaded) -> Result<(), service::trust::TrustError> {
    let Some(file) = &loaded.file else {
        return Ok(());
    };
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    service::trust::check_config(file, &service::trust::RealFs, euid).map(drop)
}

/// The journal sender `[export.journald]` asks for (a socket that cannot be made is said
/// and leaves it off).
fn journal(j: &config::Journald) -> Option<crate::output::journal::Journal> {
    if !j.enabled {
        return None;
    }
    crate::output::journal::Journal::new(&j.socket)
        .inspect_err(|e| diag::journal_not_taken(e))
        .ok()
}

/// The OTLP exporter `[export.otlp]` asks for, counting on from `before`'s totals (a
/// thread that cannot be started is said and leaves it off).
fn otlp(
    o: &config::Otlp,
    before: Option<&crate::output::otlp::Exporter>,
) -> Option<crate::output::otlp::Exporter> {
    let endpoint = o.endpoint.as_ref()?;
    let settings = crate::output::otlp::Settings {
        host: endpoint.host.clone(),
        port: endpoint.port,
        path: endpoint.path.clone(),
        queue: o.queue as usize,
        batch: o.batch as usize,
        timeout: o.timeout,
    };
    let stats = before.map(|e| e.stats.clone()).unwrap_or_default();
    crate::output::otlp::Exporter::start(&settings, stats)
        .inspect_err(|e| diag::otlp_failing(&settings.url(), e))
        .ok()
}

/// An exclusive `flock` on the data directory, or an error when another daemon holds it.
/// A directory that cannot be opened (missing, unreadable: said already) is not locked: the
/// daemon runs on without its files, as it does without a writable data directory.
fn lock_data_dir(dir: &Path) -> Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd as _;
    let Ok(file) = std::fs::File::open(dir) else {
        return Ok(None);
    };
    // SAFETY: flock on a valid open descriptor has no other precondition.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        anyhow::bail!(
            "another claude-monitor daemon uses the data directory {}: stop it first, or give \
             this one its own data_dir",
            dir.display()
        );
    }
    Err(e).with_context(|| format!("cannot lock the data directory {}", dir.display()))
}

/// What `[redact]` says counts as a secret.
fn redactor(r: &config::Redact) -> crate::pipeline::redact::Redactor {
    let extra: Vec<regex::Regex> = r.patterns.iter().map(|p| p.regex().clone()).collect();
    crate::pipeline::redact::Redactor::new(r.enabled, &extra)
}

pub async fn run(opts: DaemonOptions) -> Result<()> {
    let mut cfg = opts.config.config.clone();
    let detector = Detector::new(cfg.rules.clone()).context("agent rules")?;
    let logs_dir = cfg.data_dir.join("logs");
    let reports_dir = cfg.data_dir.join("reports");
    for dir in [&logs_dir, &reports_dir] {
        if let Err(e) = crate::output::rotate::private_dir(dir) {
            diag::data_dir_unwritable(dir, e);
        }
    }
    // One daemon per data directory, pinned or not: two would write every event twice and
    // give the same `seq` twice. Held until the daemon exits (the kernel drops it if it dies).
    let _data_lock = lock_data_dir(&cfg.data_dir)?;

    let started = Instant::now();
    let events_path = logs_dir.join("events.jsonl");
    // Every event's `seq` continues from the last one in the log.
    let last_seq = api::seq::last_seq(&events_path);
    let bus = (cfg.api.socket.is_some() || cfg.api.tcp.is_some())
        .then(|| api::bus::Bus::new(cfg.api.subscriber_queue as usize, last_seq));

    let (mut engine, mut ring, start) = Engine::start(&EngineOptions {
        scope: ScopeMode::Sessions,
        ring_buffer_bytes: cfg.kernel.ring_buffer_bytes(),
        oom_all: cfg.watch.oom_all,
        report_ignored_signals: cfg.watch.ignored_signals == IgnoredSignals::Report,
        report_runtime_signals: cfg.watch.runtime_signals == IgnoredSignals::Report,
        detector,
        pin_dir: cfg.kernel.pin.then(|| cfg.kernel.pin_dir.clone()),
        redactor: redactor(&cfg.redact),
    })?;
    let log = |name| Log::new(&logs_dir, name, cfg.logs.max_bytes, cfg.logs.keep);
    let mut out = DaemonOutput {
        events: log("events.jsonl"),
        alerts_log: log("alerts.jsonl"),
        reports: reports::ReportWriter::start(
            ReportStore::new(reports_dir.clone()),
            reports::Bounds::from(&cfg.reports),
        ),
        budget: reports::UidBudget::new(cfg.reports.per_uid_per_minute),
        report_nonzero_exit: cfg.watch.report_nonzero_exit,
        hierarchy: MemoryHierarchy::detect(),
        history: History::new(cfg.resources.history as usize),
        alerter: Alerter::new(thresholds(&cfg)),
        last_lost: None,
        pending: Vec::new(),
        alerts_raised: 0,
        stdout: opts.stdout,
        journal: journal(&cfg.export.journald),
        otlp: otlp(&cfg.export.otlp, None),
        metrics: bus
            .is_some()
            .then(|| std::sync::Arc::new(crate::metrics::Metrics::default())),
        seq: last_seq,
        bus: bus.clone(),
        unpublished: Vec::new(),
        deaths: bus.is_some().then(Default::default),
    };
    // `/v1/sessions`: the server asks, the loop answers (see `api::sessions`).
    let (session_requests, mut session_rx) = api::sessions::channel();
    // `POST /v1/watch` from `claude-monitor run`: the loop answers too.
    let (watch_requests, mut watch_rx) = api::watch::channel();
    // Served once the programs are attached; the socket is removed when the daemon stops.
    let api_logs = api::history::LogFiles {
        path: events_path.clone(),
        keep: cfg.logs.keep,
    };
    let _api_tcp = match (cfg.api.tcp, &bus) {
        (Some(addr), Some(bus)) => {
            start_tcp(
                addr,
                &cfg.api,
                api::server::State {
                    bus: bus.clone(),
                    logs: api_logs.clone(),
                    group: None,
                    started,
                    metrics: out.metrics.clone().unwrap_or_default(),
                    sessions: session_requests.clone(),
                    reports: ReportStore::new(reports_dir.clone()),
                    // Never reached over TCP (GET only), but the state is one type.
                    watch: watch_requests.clone(),
                },
            )
            .await
        }
        _ => None,
    };
    let _api = match (&cfg.api.socket, bus) {
        (Some(socket), Some(bus)) => start_api(
            socket,
            &cfg.api,
            bus,
            out.metrics.clone().unwrap_or_default(),
            api_logs,
            started,
            (
                session_requests,
                watch_requests,
                ReportStore::new(reports_dir.clone()),
            ),
        ),
        _ => None,
    };
    let mut system_log = log("resources-system.jsonl");
    let mut sessions_log = log("resources-sessions.jsonl");
    let mut sampler = SessionSampler::new("/proc");
    sampler.set_redactor(redactor(&cfg.redact));

    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    engine.emit(&mut out, &start)?;
    // What the kernel recorded while no agent ran (pinned ring buffer), or the backlog of
    // the programs this start replaced, after the losses of that time.
    let mut backlog = engine.catch_up(ring.get_mut(), &mut out)?;
    let pinned = match &start.body {
        Body::AgentStart(s) => s
            .pin
            .as_ref()
            .map(|p| format!("{} in {}", p.state, p.dir.display()))
            .unwrap_or_else(|| "off".into()),
        _ => String::new(),
    };
    diag::daemon_started(
        &cfg.data_dir,
        engine.core.attributor.sessions().len(),
        &pinned,
    );

    let mut tick = tokio::time::interval(COUNTER_PERIOD);
    // The numbers `/metrics` takes from the daemon's structures, refreshed this often.
    let mut metrics_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut system_tick = tokio::time::interval(cfg.resources.system_interval);
    let mut session_tick = tokio::time::interval(cfg.resources.session_interval);
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let reason = loop {
        // Whatever was written is in the file, and published, before the API's tasks run
        // (they run only while the loop waits).
        out.flush_events();
        let hold_due = engine.hold_due();
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(OutputError::Io)?;
                backlog = engine.drain(guard.get_inner_mut(), &mut out)?;
                guard.clear_ready();
            }
            // Records left by a full batch: read on once the loop's other work (ticks,
            // signals, timers: the runtime's driver runs first) had its turn.
            _ = tokio::task::yield_now(), if backlog => {
                backlog = engine.drain(ring.get_mut(), &mut out)?;
            }
            _ = tokio::time::sleep(BUSY_POLL), if engine.busy() && !backlog => {
                backlog = engine.drain(ring.get_mut(), &mut out)?;
            }
            _ = tokio::time::sleep_until(hold_due), if engine.holding() => {
                engine.release_due(&mut out)?;
            }
            _ = tick.tick() => engine.tick(&mut out)?,
            // One request per turn of the loop; its cost is bounded (see `api::sessions`).
            Some(req) = session_rx.recv() => {
                let answer = sessions_answer(&engine, &out, &req);
                let _ = req.reply.send(answer);
            }
            // `claude-monitor run`'s command: watched from now, as a session of its own.
            Some(req) = watch_rx.recv() => {
                let answer = watch_answer(&mut engine, &out, req.pid, req.uid);
                let _ = req.reply.send(answer);
            }
            _ = metrics_tick.tick(), if out.metrics.is_some() => {
                let subscribers = out.bus.as_ref().map_or_else(Default::default, |b| {
                    metrics::Subscribers {
                        connected: b.subscribers() as u64,
                        lost: b.lost(),
                    }
                });
                let snapshot = metrics::snapshot(
                    &engine,
                    &sampler,
                    &out,
                    &[&system_log, &sessions_log],
                    subscribers,
                );
                if let Some(m) = &out.metrics {
                    m.set_snapshot(&snapshot);
                }
            }
            _ = system_tick.tick() => {
                let live = engine.core.attributor.live_by_session();
                let sample = resources::sample_system(
                    Path::new("/proc"),
                    &cfg.resources.mounts,
                    live.values().map(Vec::len).sum::<usize>() as u32,
                    live.len() as u32,
                );
                system_log.write_json(&sample);
                system_log.flush();
                for alert in out.alerter.check_system(&sample, Instant::now()) {
                    out.alert(&alert);
                }
                out.alerts_log.flush();
                out.flush_events();
            }
            _ = session_tick.tick() => {
                sample_sessions(&engine, &mut sampler, &mut out, &mut sessions_log);
            }
            _ = sighup.recv() => {
                let reloaded = config::load_with_process_env(opts.config_path.as_deref(), &opts.flags)
                    .map_err(anyhow::Error::from)
                    .and_then(|new| trusted_config(&new).map(|()| new).map_err(anyhow::Error::from));
                match reloaded {
                    Ok(new) => {
                        let new = new.config;
                        diag::config_reloaded(
                            new.kernel != cfg.kernel || new.rules != cfg.rules
                                || new.watch.oom_all != cfg.watch.oom_all
                                || new.watch.ignored_signals != cfg.watch.ignored_signals
                                || new.watch.runtime_signals != cfg.watch.runtime_signals
                                || new.data_dir != cfg.data_dir
                                || new.reports.max_count != cfg.reports.max_count
                                || new.reports.max_bytes != cfg.reports.max_bytes
                                || new.api != cfg.api,
                        );
                        if new.redact != cfg.redact {
                            let r = redactor(&new.redact);
                            engine.core.set_redactor(r.clone());
                            sampler.set_redactor(r);
                        }
                        if new.export.journald != cfg.export.journald {
                            out.journal = journal(&new.export.journald);
                        }
                        if new.export.otlp != cfg.export.otlp {
                            // The old exporter sends what it holds on its own.
                            out.otlp = otlp(&new.export.otlp, out.otlp.as_ref());
                        }
                        out.report_nonzero_exit = new.watch.report_nonzero_exit;
                        out.budget = reports::UidBudget::new(new.reports.per_uid_per_minute);
                        out.alerter = Alerter::new(thresholds(&new));
                        system_tick = tokio::time::interval(new.resources.system_interval);
                        session_tick = tokio::time::interval(new.resources.session_interval);
                        let keep_data_dir = cfg.data_dir.clone();
                        cfg = Config { data_dir: keep_data_dir, kernel: cfg.kernel.clone(), rules: cfg.rules.clone(), api: cfg.api.clone(), ..new };
                    }
                    Err(e) => diag::config_not_reloaded(e),
                }
            }
            _ = &mut deadline => break StopReason::Duration,
            _ = sigterm.recv() => break StopReason::Sigterm,
            _ = sigint.recv() => break StopReason::Sigint,
        }
    };
    engine.drain_rest(ring.get_mut(), &mut out)?;
    engine.finish(&mut out)?;
    engine.written += out.alerts_raised;
    let stop = engine.stop_event(reason);
    engine.emit(&mut out, &stop)?;
    Output::flush(&mut out)?;
    for l in [&mut system_log, &mut sessions_log, &mut out.alerts_log] {
        l.flush();
    }
    out.reports.finish();
    // What is queued for the OTLP receiver goes out now, within a bound.
    let otlp = out
        .otlp
        .take()
        .map(|o| o.finish(crate::output::otlp::STOP_GRACE));
    let stats = &out.reports.stats;
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    diag::structure_sizes(&(
        engine.core.attributor.sizes(),
        ("sampled_sessions", sampler.len()),
        ("session_histories", out.history.len()),
        ("memcg_scans", engine.core.memcg_scans()),
        ("unplaced_signals", engine.core.unplaced()),
        (
            "journal_dropped",
            out.journal.as_ref().map_or(0, |j| j.dropped),
        ),
        ("otlp", otlp.as_deref()),
    ));
    diag::daemon_stopped(
        reason,
        engine.written,
        load(&stats.written),
        load(&stats.suppressed),
        cfg.kernel.pin,
    );
    Ok(())
}

/// Binds and serves the API socket; a failure is said and the daemon runs on without it.
/// `POST /v1/watch`: the process `pid`, when it is the peer's (`uid`) or the peer is root,
/// becomes the root of a session of its own; its id and the last seq written.
fn watch_answer(engine: &mut Engine, out: &DaemonOutput, pid: u32, uid: u32) -> api::watch::Answer {
    let owner =
        crate::pipeline::scope::proc_uid(pid).ok_or_else(|| format!("no such process: {pid}"))?;
    if !api::watch::allowed(uid, owner) {
        return Err(format!("not yours: process {pid} belongs to uid {owner}"));
    }
    let session = engine.watch_root(pid, owner)?;
    Ok((session, out.seq))
}

fn start_api(
    socket: &Path,
    settings: &config::Api,
    bus: api::bus::Bus,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    logs: api::history::LogFiles,
    started: Instant,
    // `/v1/sessions` and `/v1/watch` (answered by the loop) and `/v1/reports`.
    (sessions, watch, reports): (api::sessions::Requests, api::watch::Requests, ReportStore),
) -> Option<api::server::Listening> {
    let group = if settings.group.is_empty() {
        None
    } else {
        match api::users::group(Path::new("/etc"), &settings.group) {
            Some(g) => Some(g),
            None => {
                diag::api_unavailable(
                    socket,
                    format!("api.group {:?} is not in /etc/group", settings.group),
                );
                return None;
            }
        }
    };
    let mode = settings.socket_mode.mode();
    match api::server::bind(socket, mode, group.as_ref().map(|g| g.gid)) {
        Ok(listener) => {
            diag::api_listening(socket, mode, bus.seq());
            Some(api::server::start(
                listener,
                socket.to_owned(),
                api::server::State {
                    bus,
                    logs,
                    group,
                    started,
                    metrics,
                    sessions,
                    reports,
                    watch,
                },
            ))
        }
        Err(e) => {
            diag::api_unavailable(socket, e);
            None
        }
    }
}

/// The answer to a `/v1/sessions` request: the sessions the viewer may see that the
/// request names, those with live processes first (newest first within each), at most
/// `api::sessions::MAX_SESSIONS`. One pass over the process table and one over the
/// sessions; no file read (the server reads the RSS).
fn sessions_answer(
    engine: &Engine,
    out: &DaemonOutput,
    req: &api::sessions::Request,
) -> api::sessions::Snapshot {
    use api::sessions::{LiveProcess, MAX_PROCESSES, MAX_SESSIONS, SAMPLES, SessionView};
    let attributor = &engine.core.attributor;
    let mut live = attributor.live_procs_by_session();
    let mut matching: Vec<_> = attributor
        .sessions_indexed()
        .filter(|(_, s)| req.sees(s.uid()))
        .map(|(idx, s)| (idx, s, attributor.session_json(s)))
        .filter(|(_, _, json)| req.names(json))
        .collect();
    matching.sort_by_key(|(idx, _, _)| (!live.contains_key(idx), std::cmp::Reverse(*idx)));
    let truncated = matching.len() > MAX_SESSIONS;
    matching.truncate(MAX_SESSIONS);
    let sessions = matching
        .into_iter()
        .map(|(idx, s, json)| {
            let procs = live.remove(&idx).unwrap_or_default();
            let deaths = out
                .deaths
                .as_ref()
                .map(|d| d.of(&json.id))
                .unwrap_or_default();
            SessionView {
                uid: s.uid(),
                live: !procs.is_empty(),
                processes_total: procs.len(),
                processes: procs
                    .into_iter()
                    .take(MAX_PROCESSES)
                    .map(|(pid, comm)| LiveProcess {
                        pid,
                        comm,
                        rss_kb: None,
                    })
                    .collect(),
                recent_deaths: deaths,
                samples: out
                    .history
                    .last(&json.id, SAMPLES)
                    .into_iter()
                    .map(crate::report::Sample::from)
                    .collect(),
                session: json,
            }
        })
        .collect();
    api::sessions::Snapshot {
        sessions,
        truncated,
    }
}

/// Binds and serves the API on TCP (`api.tcp`); a failure to bind is said and the daemon
/// runs on without it. The token file was checked before the start (`api::tcp::token`); one
/// that changed since and no longer passes is said the same way.
async fn start_tcp(
    addr: std::net::SocketAddr,
    settings: &config::Api,
    state: api::server::State,
) -> Option<api::tcp::Listening> {
    let token = match api::tcp::token(settings.tcp, settings.token_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            diag::api_tcp_unavailable(addr, e);
            return None;
        }
    };
    let has_token = token.is_some();
    let started = match api::tcp::bind(addr).await {
        Ok(listener) => api::tcp::start(listener, token, state),
        Err(e) => Err(e),
    };
    match started {
        Ok(l) => {
            diag::api_tcp_listening(l.addr, has_token);
            Some(l)
        }
        Err(e) => {
            diag::api_tcp_unavailable(addr, e);
            None
        }
    }
}

/// The sessions with live members, with their members' pids.
fn live_sessions(engine: &Engine) -> Vec<(SessionRef, Vec<u32>)> {
    let attributor = &engine.core.attributor;
    attributor
        .live_by_session()
        .into_iter()
        .filter_map(|(idx, pids)| {
            let s = attributor.session(idx)?;
            Some((
                SessionRef {
                    id: s.root.to_string(),
                    agent: s.agent.clone(),
                    root_pid: s.root.pid,
                    cwd: s.cwd.clone(),
                    claude_session_id: s.claude_session_id.clone(),
                },
                pids,
            ))
        })
        .collect()
}

fn sample_sessions(
    engine: &Engine,
    sampler: &mut SessionSampler,
    out: &mut DaemonOutput,
    log: &mut Log,
) {
    for (session, pids) in live_sessions(engine) {
        let sample = sampler.sample(session, &pids);
        log.write_json(&sample);
        for alert in out.alerter.check_session(&sample, Instant::now()) {
            out.alert(&alert);
        }
        out.history.push(sample);
    }
    // Sessions the attributor forgot (ended a while ago) are forgotten here too.
    let tracked: std::collections::HashSet<String> = engine
        .core
        .attributor
        .sessions()
        .map(|s| s.root.to_string())
        .collect();
    sampler.retain(|id| tracked.contains(id));
    out.history.retain(|id| tracked.contains(id));
    if let Some(deaths) = &mut out.deaths {
        deaths.retain(|id| tracked.contains(id));
    }
    log.flush();
}

/// `daemon --unpin`: removes the pinned programs, links and maps (the kernel stops
/// recording for the agent); whether anything was pinned.
pub fn unpin(dir: &Path) -> Result<bool> {
    crate::kernel::loader::check_privileges()?;
    use crate::kernel::loader::pin;
    let existed = dir.exists();
    // What an upgrade by an older version (which staged beside the directory) left.
    let legacy = pin::legacy_staging_dir(dir);
    let legacy_existed = legacy.exists();
    // Not from under a running daemon: it holds the directory's lock.
    let _lock = existed.then(|| pin::lock(dir)).transpose()?;
    // The staging directory inside it too.
    pin::remove(dir)?;
    pin::remove(&legacy)?;
    Ok(existed || legacy_existed)
}

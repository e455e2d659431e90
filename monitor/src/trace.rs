//! `claude-monitor trace`: load, attach, and stream events until interrupted or a duration
//! elapses.

use std::{io::Write, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    claude::detect::Detector,
    event::{Event, StopReason},
    kernel::loader::ScopeMode,
    output::sink::{Format, Sink},
    pipeline::attribution::Attributor,
    pipeline::engine::{BUSY_POLL, COUNTER_PERIOD, Engine, EngineOptions},
    pipeline::output::{Output, OutputError},
};

/// The `trace` command writes every event to its sink, as it comes.
impl<W: std::io::Write> Output for Sink<W> {
    fn write(&mut self, event: &Event, _: &Attributor) -> Result<(), OutputError> {
        Ok(Sink::write(self, event)?)
    }
    fn flush(&mut self) -> Result<(), OutputError> {
        Ok(Sink::flush(self)?)
    }
}

/// A validated `trace` invocation.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    pub scope: ScopeMode,
    pub format: Format,
    pub duration: Option<Duration>,
    pub ring_buffer_bytes: u32,
    pub oom_all: bool,
    pub report_ignored_signals: bool,
    pub report_runtime_signals: bool,
    /// Redact secrets (the built-in rules); `--no-redact` turns it off.
    pub redact: bool,
}

pub async fn run<W: Write>(cfg: TraceConfig, out: W) -> Result<()> {
    let (mut engine, mut ring, start) = Engine::start(&EngineOptions {
        scope: cfg.scope.clone(),
        ring_buffer_bytes: cfg.ring_buffer_bytes,
        oom_all: cfg.oom_all,
        report_ignored_signals: cfg.report_ignored_signals,
        report_runtime_signals: cfg.report_runtime_signals,
        detector: Detector::new(Vec::new()).context("agent rules")?,
        pin_dir: None,
        redactor: if cfg.redact {
            crate::pipeline::redact::Redactor::default()
        } else {
            crate::pipeline::redact::Redactor::off()
        },
    })?;
    let mut sink = Sink::new(out, cfg.format);
    // Signal handlers before agent_start: a consumer may signal us as soon as it sees it.
    let stop = Stop {
        sigterm: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        sigint: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        duration: cfg.duration,
    };
    let result = async {
        engine.emit(&mut sink, &start)?;
        Output::flush(&mut sink)?;
        event_loop(&mut engine, &mut ring, &mut sink, stop).await
    }
    .await;
    let reason = match result {
        Ok(reason) => reason,
        Err(OutputError::Closed) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // Whatever arrived before the stop, then the final loss figures.
    let finish = (|| {
        engine.drain_rest(ring.get_mut(), &mut sink)?;
        engine.finish(&mut sink)?;
        let stop = engine.stop_event(reason);
        engine.emit(&mut sink, &stop)?;
        Output::flush(&mut sink)
    })();
    match finish {
        Ok(()) | Err(OutputError::Closed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What ends the event loop.
struct Stop {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    duration: Option<Duration>,
}

async fn event_loop<O: Output>(
    engine: &mut Engine,
    ring: &mut AsyncFd<RingBuf<MapData>>,
    out: &mut O,
    stop: Stop,
) -> Result<StopReason, OutputError> {
    let Stop {
        mut sigterm,
        mut sigint,
        duration,
    } = stop;
    let mut tick = tokio::time::interval(COUNTER_PERIOD);
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut backlog = false;
    loop {
        let hold_due = engine.hold_due();
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(OutputError::Io)?;
                backlog = engine.drain(guard.get_inner_mut(), out)?;
                guard.clear_ready();
            }
            // Records left by a full batch: read on once the loop's other work (ticks,
            // signals, timers: the runtime's driver runs first) had its turn.
            _ = tokio::task::yield_now(), if backlog => {
                backlog = engine.drain(ring.get_mut(), out)?;
            }
            _ = tokio::time::sleep(BUSY_POLL), if engine.busy() && !backlog => {
                backlog = engine.drain(ring.get_mut(), out)?;
            }
            _ = tokio::time::sleep_until(hold_due), if engine.holding() => {
                engine.release_due(out)?;
            }
            _ = tick.tick() => engine.tick(out)?,
            _ = &mut deadline => return Ok(StopReason::Duration),
            _ = sigterm.recv() => return Ok(StopReason::Sigterm),
            _ = sigint.recv() => return Ok(StopReason::Sigint),
        }
    }
}

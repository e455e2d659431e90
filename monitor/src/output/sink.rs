//! Where events go: one JSON object per line, or one readable line per event. Generic over
//! `Write` so tests can write into a `Vec<u8>`; errors are the writer's own (a closed pipe,
//! `| head`, is `BrokenPipe`, which `pipeline::OutputError` turns into `Closed`).

use std::io::{self, Write};

use crate::{
    event::{Body, Event},
    output::printable::printable,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (schema in docs/events.md).
    Json,
    /// One readable line per event.
    Text,
}

pub struct Sink<W: Write> {
    out: W,
    format: Format,
}

impl<W: Write> Sink<W> {
    pub fn new(out: W, format: Format) -> Sink<W> {
        Sink { out, format }
    }

    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, event).map_err(io::Error::from)?;
                self.out.write_all(b"\n")?;
            }
            Format::Text => {
                writeln!(self.out, "{}", printable(&text_line(event)))?;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn kib(kb: u64) -> String {
    if kb >= 1024 * 1024 {
        format!("{:.1}GiB", kb as f64 / (1024.0 * 1024.0))
    } else if kb >= 1024 {
        format!("{:.1}MiB", kb as f64 / 1024.0)
    } else {
        format!("{kb}KiB")
    }
}

/// `HH:MM:SS.mmm kind   pid comm ...details`.
pub fn text_line(e: &Event) -> String {
    let time = e.ts.get(11..23).unwrap_or(&e.ts);
    let head = format!("{time} {:<6} {:>7} {:<16}", e.kind, e.pid, e.comm);
    let detail = match &e.body {
        Body::AgentStart(s) => {
            let mut d = format!(
                "claude-monitor {} on Linux {}, scope {}",
                s.version, s.kernel, s.scope.mode
            );
            if !s.scope.pids.is_empty() {
                let pids: Vec<String> = s.scope.pids.iter().map(u32::to_string).collect();
                d.push_str(&format!(
                    " {} ({} processes)",
                    pids.join(","),
                    s.scope.watched_at_start
                ));
            }
            let hooks: Vec<&str> = s.hooks.iter().map(|h| h.as_str()).collect();
            d.push_str(&format!(", hooks: {}", hooks.join(" ")));
            for u in &s.hooks_unavailable {
                d.push_str(&format!("; {} unavailable: {}", u.hook, u.reason));
            }
            d
        }
        Body::AgentStop(s) => format!("{} events, {} lost ({})", s.events, s.lost, s.reason),
        Body::Exit(x) => {
            let signal = x
                .status
                .signal_name
                .clone()
                .unwrap_or_else(|| format!("signal {}", x.status.signal.unwrap_or(0)));
            let core = if x.status.core_dumped {
                " (core dumped)"
            } else {
                ""
            };
            let how = match (x.status.exit_code, x.cause.cause.as_str()) {
                (Some(code), "terminated") => match &x.cause.killed_by {
                    Some(k) => format!(
                        "exited {code} from its handler of {} from {} {}",
                        crate::signals::names::signal_name(k.signal)
                            .unwrap_or_else(|| format!("signal {}", k.signal)),
                        k.pid,
                        k.comm
                    ),
                    None => format!("exited {code} from a signal handler"),
                },
                (Some(code), _) => format!("exited {code}"),
                (None, "unknown") => "ended (exit status unreadable)".to_owned(),
                (None, "oom_killed") => "OOM-killed".to_owned(),
                (None, "crashed") => format!("crashed with {signal}{core}"),
                (None, "killed_by_kernel") => format!("killed by the kernel with {signal}{core}"),
                (None, _) => match &x.cause.killed_by {
                    Some(k) => format!("killed by {signal} from {} {}{core}", k.pid, k.comm),
                    None => format!("killed by {signal}{core}"),
                },
            };
            let cpu = match (x.usage.utime_ms, x.usage.stime_ms) {
                (Some(u), Some(s)) => format!("{u:.1}ms user {s:.1}ms sys"),
                _ => "unknown".to_owned(),
            };
            format!(
                "{how}, ran {:.1}ms, peak rss {}, cpu {cpu}, ppid {}",
                x.duration_ms,
                x.usage
                    .peak_rss_kb
                    .map_or_else(|| "unknown".to_owned(), kib),
                x.ppid
            )
        }
        Body::SignalDeliver(d) => {
            let name = d
                .signal_name
                .clone()
                .unwrap_or_else(|| format!("signal {}", d.signal));
            let times = if d.count > 1 {
                format!(" x{}", d.count)
            } else {
                String::new()
            };
            format!(
                "{name}{times} taken: disposition {}, {}",
                d.disposition, d.outcome
            )
        }
        Body::Signal(s) => format!(
            "{} ({}) from {} {} uid {}, {}",
            s.signal_name
                .clone()
                .unwrap_or_else(|| s.signal.to_string()),
            s.si_code_name.unwrap_or("?"),
            s.sender.pid,
            s.sender.comm,
            s.sender.uid,
            s.result
        ),
        Body::Oom(o) => format!(
            "OOM victim (uid {}), anon rss {}, file rss {}, total vm {}, trigger {} {}",
            o.victim.uid.map_or("?".into(), |u| u.to_string()),
            o.anon_rss_kb.map_or("?".into(), kib),
            o.file_rss_kb.map_or("?".into(), kib),
            o.total_vm_kb.map_or("?".into(), kib),
            o.trigger.pid,
            o.trigger.comm
        ),
        Body::Fork(f) => format!("forked from {}", f.ppid),
        Body::Exec(x) => format!("exec {}", x.filename),
        Body::Lost(l) => format!("{} records lost ({})", l.count, l.reason),
    };
    match e.attr.as_ref().and_then(|a| a.session.as_ref()) {
        Some(s) => format!("{head} {detail} [{} session {}]", s.agent, s.id),
        None => format!("{head} {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Lost};

    #[test]
    fn json_lines_and_text() {
        let e = Event::new(
            "2026-11-21T21:59:13.123456789Z".into(),
            7,
            "claude-monitor".into(),
            Body::Lost(Lost {
                count: 3,
                reason: crate::event::LostReason::RingBufferFull,
            }),
        );
        let mut sink = Sink::new(Vec::new(), Format::Json);
        sink.write(&e).expect("write");
        let out = String::from_utf8(sink.into_inner()).expect("utf8");
        assert_eq!(
            out,
            "{\"v\":1,\"kind\":\"lost\",\"ts\":\"2026-11-21T21:59:13.123456789Z\",\"pid\":7,\
             \"comm\":\"claude-monitor\",\"count\":3,\"reason\":\"ring_buffer_full\"}\n"
        );
        let line = text_line(&e);
        assert!(line.starts_with("21:59:13.123 lost"), "{line}");
        assert!(
            line.ends_with("3 records lost (ring_buffer_full)"),
            "{line}"
        );
    }

    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    /// A hostile comm reaches a terminal escaped, on one line.
    #[test]
    fn text_lines_escape_control_characters() {
        let e = Event::new(
            "2026-11-21T22:01:58.749139221Z".into(),
            1,
            "\u{1b}[2J\nforged".into(),
            Body::Lost(Lost {
                count: 1,
                reason: crate::event::LostReason::DecodeError,
            }),
        );
        let mut sink = Sink::new(Vec::new(), Format::Text);
        sink.write(&e).unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("\\u{1b}[2J\\nforged"), "{out}");
    }

    #[test]
    fn broken_pipe_is_closed() {
        let e = Event::new(
            "t".into(),
            1,
            "x".into(),
            Body::Lost(Lost {
                count: 1,
                reason: crate::event::LostReason::DecodeError,
            }),
        );
        let mut sink = Sink::new(ClosedPipe, Format::Json);
        assert_eq!(
            sink.write(&e).map_err(|e| e.kind()),
            Err(io::ErrorKind::BrokenPipe)
        );
    }
}

//! The OTLP export scenario (issue 13): what `[export.otlp]` costs the daemon. The same
//! daemon runs as the API subscribers scenario ([`super::api::series`]: the spawn storm
//! inside a `[[rules]]` session, each run paired with an untraced storm), with no
//! subscriber, once without the export and once with `[export.otlp] endpoint` pointing at
//! [`Sink`], the bench's own OTLP/HTTP receiver on loopback.
//!
//! The sink is a plain HTTP/1.1 server (a thread accepting, a thread per connection, at
//! most [`MAX_CONNECTIONS`]) that reads each `POST /v1/logs` body whole (`Content-Length`,
//! kept-alive connections), walks its protobuf for the LogRecords and their
//! `claude_monitor.seq`, and answers 200 with an empty `ExportLogsServiceResponse`. It
//! counts requests, body bytes and records, and keeps the highest seq, so the bench waits
//! for a fact: the sink has the window's last seq, and the daemon counts every event up
//! to it as sent or lost (`/metrics`).

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{
    Scenario,
    api::{self, ApiSeries, Setup, TableText, f, find, mib, render_series, summarize, wait_for},
    scenarios::{Helpers, Sizes},
    tracer::Tools,
};

/// How long the wait for the export to catch up may take.
const WAIT: Duration = Duration::from_secs(60);
/// How often the daemon's counters are read while the sink has not got the last seq yet
/// (each read is a scrape, which costs the daemon CPU).
const SCRAPE_EVERY: Duration = Duration::from_millis(250);
/// Connections served at once (the exporter keeps one alive).
pub const MAX_CONNECTIONS: usize = 8;
/// The longest request head and body the sink takes (a 512-event batch is about 1 MiB).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 << 20;
/// Problems kept by the sink (the rest are counted).
const MAX_PROBLEMS: usize = 10;

/// The daemon's counters read from `/metrics` (Prometheus text format 0.0.4).
const SENT: &str = "claude_monitor_otlp_records_sent_total";
const LOST: &str = r#"claude_monitor_records_lost_total{stage="export"}"#;

/// The scenario: a series without the export and one with it.
pub fn run(tools: &Tools, helpers: &Helpers, sizes: &Sizes) -> Result<Vec<ApiSeries>> {
    api::series(
        tools,
        helpers,
        sizes,
        Scenario::Otlp,
        &[Setup::Export(false), Setup::Export(true)],
    )
}

// ---------------------------------------------------------------------------------------
// The sink

/// What the sink received (totals since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// `POST /v1/logs` requests answered 200.
    pub requests: u64,
    /// Their bodies' bytes (the protobuf, without the HTTP head).
    pub bytes: u64,
    /// LogRecords in them.
    pub records: u64,
    /// Records whose seq was not above every seq before it (a request sent again).
    pub repeated: u64,
    /// Records without a `claude_monitor.seq` attribute.
    pub no_seq: u64,
    /// The highest seq received.
    pub max_seq: u64,
}

impl Received {
    fn add(&mut self, body_len: usize, seqs: &[Option<u64>]) {
        self.requests += 1;
        self.bytes += body_len as u64;
        self.records += seqs.len() as u64;
        for seq in seqs {
            match *seq {
                Some(s) if s > self.max_seq => self.max_seq = s,
                Some(_) => self.repeated += 1,
                None => self.no_seq += 1,
            }
        }
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    received: Mutex<Received>,
    /// The first [`MAX_PROBLEMS`] problems, and how many there were.
    problems: Mutex<(Vec<String>, usize)>,
}

impl Shared {
    fn problem(&self, what: String) {
        let mut p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        p.1 += 1;
        if p.0.len() < MAX_PROBLEMS {
            p.0.push(what);
        }
    }
}

/// The bench's OTLP/HTTP receiver on `127.0.0.1`, an ephemeral port. Stopped when
/// dropped: the connections are shut down and every thread joined.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Sink {
    pub fn start() -> Result<Sink> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot listen on 127.0.0.1 for the OTLP sink")?;
        let addr = listener
            .local_addr()
            .context("the OTLP sink's listening address")?;
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("otlp-sink".into())
            .spawn(move || accept_loop(&listener, &s))
            .context("cannot start the OTLP sink's thread")?;
        Ok(Sink {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The daemon's `export.otlp.endpoint` (`/v1/logs` is added by the daemon).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Received {
        *self
            .shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// What went wrong in the sink: bad requests, refused connections.
    pub fn problems(&self) -> Vec<String> {
        let p = self
            .shared
            .problems
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut out = p.0.clone();
        if p.1 > p.0.len() {
            out.push(format!("{} more sink problems", p.1 - p.0.len()));
        }
        out
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wakes the accept loop up, which then ends every connection.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut live: Vec<(JoinHandle<()>, TcpStream)> = Vec::new();
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                shared.problem(format!("the sink could not accept a connection: {e}"));
                break;
            }
        };
        live.retain(|(t, _)| !t.is_finished());
        if live.len() >= MAX_CONNECTIONS {
            shared.problem(format!(
                "more than {MAX_CONNECTIONS} connections at once: one refused"
            ));
            continue;
        }
        let own = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                shared.problem(format!("the sink could not keep a connection: {e}"));
                continue;
            }
        };
        let s = Arc::clone(shared);
        let thread = std::thread::spawn(move || {
            if let Err(e) = serve(stream, &s) {
                s.problem(e);
            }
        });
        live.push((thread, own));
    }
    for (thread, stream) in live {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let _ = thread.join();
    }
}

/// What the sink needs of a request's head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    content_length: Option<usize>,
    /// `Connection: close`.
    close: bool,
}

/// The head of a request, up to and without its blank line.
fn parse_head(raw: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "a request head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return Err(format!("a bad request line {:?}", text.lines().next()));
    };
    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        content_length: None,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(
                value
                    .parse()
                    .map_err(|_| format!("a bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(head)
}

/// Serves one connection until the client closes it (or asks to).
fn serve(mut stream: TcpStream, shared: &Shared) -> Result<(), String> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut read_more = |stream: &mut TcpStream, pending: &mut Vec<u8>| -> Result<bool, String> {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("reading a request: {e}"))?;
        pending.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    };
    loop {
        let head_len = loop {
            if let Some(end) = find(&pending, b"\r\n\r\n") {
                break end + 4;
            }
            if pending.len() > MAX_HEAD {
                return Err(format!("a request head over {MAX_HEAD} bytes"));
            }
            if !read_more(&mut stream, &mut pending)? {
                return if pending.is_empty() || shared.stop.load(Ordering::Acquire) {
                    Ok(())
                } else {
                    Err("the connection closed inside a request head".into())
                };
            }
        };
        let head = parse_head(&pending[..head_len - 4])?;
        pending.drain(..head_len);
        let Some(len) = head.content_length.filter(|l| *l <= MAX_BODY) else {
            let _ = stream.write_all(
                b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return Err(format!(
                "{} {}: no Content-Length, or one over {MAX_BODY} bytes",
                head.method, head.path
            ));
        };
        while pending.len() < len {
            if !read_more(&mut stream, &mut pending)? {
                return Err("the connection closed inside a request body".into());
            }
        }
        let answer: &[u8] = if head.method != "POST" || head.path != "/v1/logs" {
            shared.problem(format!("{} {}: not POST /v1/logs", head.method, head.path));
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        } else {
            match records_of(&pending[..len]) {
                Ok(seqs) => {
                    shared
                        .received
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .add(len, &seqs);
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
                }
                Err(e) => {
                    shared.problem(format!("an undecodable request body ({len} bytes): {e}"));
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                }
            }
        };
        stream
            .write_all(answer)
            .map_err(|e| format!("answering a request: {e}"))?;
        pending.drain(..len);
        if head.close {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Protobuf, as far as the sink reads it

/// A field's value by wire type: varint (0), 64-bit (1), length-delimited (2), 32-bit (5).
#[derive(Debug, PartialEq)]
enum Wire<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

/// The fields of one protobuf message, in order: (number, value).
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("a varint runs past the end")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("a field runs past the end")?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn field(&mut self) -> Result<(u64, Wire<'a>), String> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| "a short fixed64")?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "a huge length")?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed(u64::from(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| "a short fixed32")?,
            ))),
            t => return Err(format!("wire type {t} (groups are not used by OTLP)")),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            // Nothing after a malformed field can be read.
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

/// The seq of each LogRecord of an `ExportLogsServiceRequest` (`resource_logs` = 1,
/// `ScopeLogs` = 2 in it, `log_records` = 2 in that), `None` for a record without
/// `claude_monitor.seq`.
fn records_of(body: &[u8]) -> Result<Vec<Option<u64>>, String> {
    let mut seqs = Vec::new();
    for field in Fields::new(body) {
        let (1, Wire::Bytes(resource_logs)) = field? else {
            continue;
        };
        for field in Fields::new(resource_logs) {
            let (2, Wire::Bytes(scope_logs)) = field? else {
                continue;
            };
            for field in Fields::new(scope_logs) {
                let (2, Wire::Bytes(record)) = field? else {
                    continue;
                };
                seqs.push(seq_of(record)?);
            }
        }
    }
    Ok(seqs)
}

/// A LogRecord's `claude_monitor.seq`: an attribute (6), a KeyValue whose key (1) is that
/// and whose value (2) is an AnyValue with `int_value` (3).
fn seq_of(record: &[u8]) -> Result<Option<u64>, String> {
    for field in Fields::new(record) {
        let (6, Wire::Bytes(kv)) = field? else {
            continue;
        };
        let (mut key, mut value) = (None, None);
        for field in Fields::new(kv) {
            match field? {
                (1, Wire::Bytes(k)) => key = Some(k),
                (2, Wire::Bytes(v)) => value = Some(v),
                _ => {}
            }
        }
        if key != Some(b"claude_monitor.seq".as_slice()) {
            continue;
        }
        for field in Fields::new(value.unwrap_or_default()) {
            if let (3, Wire::Varint(n)) = field? {
                return Ok(Some(n));
            }
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------
// The daemon's side

/// What the export did in one run, once every event up to the window's end was sent or
/// lost.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportFigures {
    /// Events the daemon logged from its start to the window's end (seq 1 to the last).
    pub logged: u64,
    /// The daemon's `claude_monitor_otlp_records_sent_total` and
    /// `claude_monitor_records_lost_total{stage="export"}` then.
    pub sent: u64,
    pub lost: u64,
    /// What the sink had received then.
    pub sink: Received,
}

/// The value of `sample` (a metric's name and labels, as the daemon writes them) in
/// Prometheus text.
fn sample_value(text: &str, sample: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line
            .strip_prefix(sample)?
            .strip_prefix(' ')?
            .split_whitespace()
            .next()?;
        value.parse::<f64>().ok().map(|v| v as u64)
    })
}

/// The daemon's export counters: sent, lost.
fn export_counters(socket: &Path) -> Result<(u64, u64)> {
    let body = api::get_body(socket, "/metrics")?;
    let text = String::from_utf8_lossy(&body);
    let read = |sample: &str| {
        sample_value(&text, sample).with_context(|| format!("no {sample} in /metrics"))
    };
    Ok((read(SENT)?, read(LOST)?))
}

/// Waits until every event up to `last` (the log's last seq once the storm was in) is
/// sent or lost, and returns the daemon's counters and the sink's figures then. The sink is
/// read every 10 ms (free); the daemon is asked once the sink has `last`, and every
/// [`SCRAPE_EVERY`] before that, should events have been lost on the way. `alive` fails
/// when the daemon has exited.
pub fn caught_up(
    sink: &Sink,
    socket: &Path,
    last: u64,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<ExportFigures> {
    let mut asked: Option<Instant> = None;
    let mut counters = (0, 0);
    wait_for(
        WAIT,
        "the OTLP sink's last seq and the daemon's export counters",
        || {
            alive()?;
            if sink.received().max_seq < last && asked.is_some_and(|t| t.elapsed() < SCRAPE_EVERY) {
                return Ok(false);
            }
            asked = Some(Instant::now());
            counters = export_counters(socket)?;
            Ok(counters.0 + counters.1 >= last)
        },
    )?;
    Ok(ExportFigures {
        logged: 0,
        sent: counters.0,
        lost: counters.1,
        sink: sink.received(),
    })
}

/// What does not add up in a run: the daemon's counters against what it logged and what
/// the sink received, and the sink's own problems.
pub fn problems(e: &ExportFigures, sink: &Sink) -> Vec<String> {
    let mut out = Vec::new();
    if e.sent + e.lost != e.logged {
        out.push(format!(
            "the daemon counts {} sent + {} lost, against {} events logged",
            e.sent, e.lost, e.logged
        ));
    }
    if e.sink.records != e.sent {
        out.push(format!(
            "the sink received {} records, the daemon counts {} sent",
            e.sink.records, e.sent
        ));
    }
    if e.sink.repeated > 0 || e.sink.no_seq > 0 {
        out.push(format!(
            "the sink received {} records again and {} without a seq",
            e.sink.repeated, e.sink.no_seq
        ));
    }
    out.extend(sink.problems());
    out
}

/// The export's part of a round's progress line.
pub fn round_text(e: &ExportFigures) -> String {
    format!(
        "{} sent + {} lost of {} logged, sink {} records in {} requests ({:.1} MiB)",
        e.sent,
        e.lost,
        e.logged,
        e.sink.records,
        e.sink.requests,
        e.sink.bytes as f64 / (1 << 20) as f64
    )
}

// ---------------------------------------------------------------------------------------
// Report

/// A series' export figures, summed over its runs.
fn export_sum(s: &ApiSeries) -> Option<ExportFigures> {
    let mut sum: Option<ExportFigures> = None;
    for e in s.runs.iter().filter_map(|r| r.export) {
        let t = sum.get_or_insert_with(ExportFigures::default);
        t.logged += e.logged;
        t.sent += e.sent;
        t.lost += e.lost;
        t.sink.requests += e.sink.requests;
        t.sink.bytes += e.sink.bytes;
        t.sink.records += e.sink.records;
        t.sink.repeated += e.sink.repeated;
        t.sink.no_seq += e.sink.no_seq;
        t.sink.max_seq = t.sink.max_seq.max(e.sink.max_seq);
    }
    sum
}

pub fn render(series: &[ApiSeries], sizes: &Sizes, notes: &mut Vec<String>) -> String {
    let text = TableText {
        title: "OTLP export",
        setup: "no subscriber, without and with [export.otlp] to the bench's receiver on loopback",
        figures: "CPU = the daemon's utime+stime until the receiver and the daemon's counters had every event of the window; sent / logged and export lost = the daemon's /metrics against its log, from its start to the window's end; received = the receiver's LogRecords, requests and protobuf bytes by then",
        headers: &[
            "CPU s / 1k events",
            "peak RSS MiB",
            "sent / logged",
            "export lost",
            "received",
            "bytes / record",
            "kernel lost",
        ],
    };
    let mut out = render_series(&text, sizes, series, notes, |s, m, _, _| {
        let e = export_sum(s);
        let dash = || "-".to_owned();
        vec![
            f(m.per_1k, 4),
            mib(m.hwm_kb),
            e.map_or_else(dash, |e| format!("{}/{}", e.sent, e.logged)),
            e.map_or_else(dash, |e| e.lost.to_string()),
            e.map_or_else(dash, |e| {
                format!(
                    "{} in {} requests, {:.1} MiB",
                    e.sink.records,
                    e.sink.requests,
                    e.sink.bytes as f64 / (1 << 20) as f64
                )
            }),
            e.map_or_else(dash, |e| {
                f(
                    (e.sink.records > 0).then(|| e.sink.bytes as f64 / e.sink.records as f64),
                    0,
                )
            }),
            m.kernel_lost.to_string(),
        ]
    });
    let by = |exports: bool| {
        series
            .iter()
            .find(|s| s.setup == Setup::Export(exports) && !s.runs.is_empty())
            .map(summarize)
    };
    if let (Some(off), Some(on)) = (by(false), by(true)) {
        let cpu = on.per_1k.zip(off.per_1k);
        let ratio = on.ratio.zip(off.ratio);
        let rss = on.hwm_kb.zip(off.hwm_kb);
        let signed = |v: Option<f64>, decimals: usize| {
            v.map_or_else(|| "n/a".into(), |v| format!("{v:+.decimals$}"))
        };
        out.push_str(&format!(
            "  what the export adds: CPU s / 1k events {} ({}x the runs without it), wall ratio {}, peak RSS {} MiB\n",
            signed(cpu.map(|(a, b)| a - b), 4),
            f(cpu.and_then(|(a, b)| (b > 0.0).then(|| a / b)), 2),
            signed(ratio.map(|(a, b)| a - b), 3),
            signed(rss.map(|(a, b)| (a as f64 - b as f64) / 1024.0), 1),
        ));
    }
    out.push('\n');
    out
}

/// A run's or a series' export figures, for the JSON file.
fn export_json(e: &ExportFigures) -> Value {
    json!({
        "events_logged": e.logged,
        "sent": e.sent,
        "lost": e.lost,
        "sink_requests": e.sink.requests,
        "sink_bytes": e.sink.bytes,
        "sink_records": e.sink.records,
        "sink_records_repeated": e.sink.repeated,
        "sink_records_without_seq": e.sink.no_seq,
        "sink_max_seq": e.sink.max_seq,
    })
}

pub fn to_json(series: &[ApiSeries]) -> Value {
    let runs: Vec<Value> = series
        .iter()
        .map(|s| {
            let m = summarize(s);
            let mut v = api::series_json(s, &m);
            v["setup"] = json!(s.setup.key());
            v["export"] = export_sum(s).map_or(Value::Null, |sum| {
                let mut e = export_json(&sum);
                e["per_run"] = s
                    .runs
                    .iter()
                    .filter_map(|r| r.export.as_ref())
                    .map(export_json)
                    .collect();
                e
            });
            v
        })
        .collect();
    json!({ "runs": runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf field: its key (number and wire type) and the encoded value.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(number: u64, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(number << 3 | 2, &mut out);
        varint(value.len() as u64, &mut out);
        out.extend_from_slice(value);
        out
    }

    fn varint_field(number: u64, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(number << 3, &mut out);
        varint(value, &mut out);
        out
    }

    /// A KeyValue attribute: `key`, and an AnyValue of `value` (field 1 string, 3 int).
    fn attribute(key: &str, value: Vec<u8>) -> Vec<u8> {
        let mut kv = bytes_field(1, key.as_bytes());
        kv.extend(bytes_field(2, &value));
        bytes_field(6, &kv)
    }

    /// A LogRecord as the daemon builds it: a time (fixed64), a severity (varint), a body
    /// (AnyValue string) and attributes.
    fn record(seq: Option<u64>) -> Vec<u8> {
        let mut r = vec![1 << 3 | 1];
        r.extend(1_700_000_000_000_000_000u64.to_le_bytes());
        r.extend(varint_field(2, 5));
        r.extend(bytes_field(5, &bytes_field(1, br#"{"v":1,"seq":7}"#)));
        r.extend(attribute(
            "claude_monitor.kind",
            bytes_field(1, b"claude_monitor.seq"),
        ));
        if let Some(seq) = seq {
            r.extend(attribute("claude_monitor.seq", varint_field(3, seq)));
        }
        r.extend(attribute("process.pid", varint_field(3, 42)));
        r
    }

    fn request(records: &[Vec<u8>]) -> Vec<u8> {
        let mut scope = bytes_field(1, &bytes_field(1, b"claude-monitor"));
        for r in records {
            scope.extend(bytes_field(2, r));
        }
        let mut resource_logs = bytes_field(1, &attribute("service.name", bytes_field(1, b"x")));
        resource_logs.extend(bytes_field(2, &scope));
        bytes_field(1, &resource_logs)
    }

    #[test]
    fn records_and_their_seq_from_a_request() {
        let body = request(&[record(Some(7)), record(None), record(Some(300_000))]);
        assert_eq!(records_of(&body), Ok(vec![Some(7), None, Some(300_000)]));
        assert_eq!(records_of(&[]), Ok(vec![]));
        // Cut anywhere inside, it is an error, never a made-up count.
        assert!(records_of(&body[..body.len() - 3]).is_err());
        assert!(records_of(&[0x0b]).is_err(), "wire type 3");
    }

    #[test]
    fn what_the_sink_counts() {
        let mut r = Received::default();
        r.add(100, &[Some(1), Some(2)]);
        r.add(50, &[Some(2), None, Some(5)]);
        assert_eq!(
            r,
            Received {
                requests: 2,
                bytes: 150,
                records: 5,
                repeated: 1,
                no_seq: 1,
                max_seq: 5,
            }
        );
    }

    #[test]
    fn samples_from_prometheus_text() {
        let text = "# HELP claude_monitor_otlp_records_sent Events the OTLP receiver accepted\n\
                    # TYPE claude_monitor_otlp_records_sent counter\n\
                    claude_monitor_otlp_records_sent_total 180036\n\
                    claude_monitor_records_lost_total{stage=\"decode\"} 1\n\
                    claude_monitor_records_lost_total{stage=\"export\"} 13\n\
                    claude_monitor_otlp_records_sent_total_other 9\n";
        assert_eq!(sample_value(text, SENT), Some(180_036));
        assert_eq!(sample_value(text, LOST), Some(13));
        assert_eq!(
            sample_value(text, "claude_monitor_otlp_retries_total"),
            None
        );
    }

    #[test]
    fn request_heads() {
        let h = parse_head(
            b"POST /v1/logs HTTP/1.1\r\nhost: 127.0.0.1:4318\r\ncontent-length: 12\r\nConnection: close",
        )
        .unwrap();
        assert_eq!(
            h,
            Head {
                method: "POST".into(),
                path: "/v1/logs".into(),
                content_length: Some(12),
                close: true,
            }
        );
        assert!(parse_head(b"POST /v1/logs HTTP/1.1\r\nContent-Length: x").is_err());
        assert_eq!(parse_head(b"GET / HTTP/1.1").unwrap().content_length, None);
    }

    /// Reads one answer's head from `s` (the sink's answers have no body).
    fn answer(s: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while find(&got, b"\r\n\r\n").is_none() {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "the sink closed: {got:?}");
            got.push(byte[0]);
        }
        String::from_utf8(got).unwrap()
    }

    #[test]
    fn the_sink_serves_kept_alive_requests_split_anywhere() {
        let sink = Sink::start().unwrap();
        let addr = sink.endpoint().trim_start_matches("http://").to_owned();
        let mut s = TcpStream::connect(&addr).unwrap();
        let first = request(&[record(Some(1)), record(Some(2))]);
        let second = request(&[record(Some(3))]);
        let post = |body: &[u8]| {
            let mut r = format!(
                "POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        };
        // The first request byte by byte, the second in one write with the third.
        for b in post(&first) {
            s.write_all(&[b]).unwrap();
        }
        let a = answer(&mut s);
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(
            a.contains("Content-Type: application/x-protobuf\r\n"),
            "{a}"
        );
        let mut two = post(&second);
        two.extend(b"GET /v1/traces HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        s.write_all(&two).unwrap();
        assert!(answer(&mut s).starts_with("HTTP/1.1 200 OK"));
        assert!(answer(&mut s).starts_with("HTTP/1.1 404"));
        // A second connection at the same time.
        let mut other = TcpStream::connect(&addr).unwrap();
        other
            .write_all(&post(&request(&[record(Some(2))])))
            .unwrap();
        assert!(answer(&mut other).starts_with("HTTP/1.1 200 OK"));
        let r = sink.received();
        assert_eq!(
            r,
            Received {
                requests: 3,
                bytes: (first.len() + 2 * second.len()) as u64,
                records: 4,
                repeated: 1,
                no_seq: 0,
                max_seq: 3,
            }
        );
        assert_eq!(sink.problems(), vec!["GET /v1/traces: not POST /v1/logs"]);
        // Stopping ends the connections still open.
        drop(sink);
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
    }
}

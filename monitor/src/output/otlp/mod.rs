//! `[export.otlp]`: every event the daemon writes, as an OpenTelemetry LogRecord posted to
//! an OTLP/HTTP receiver (protobuf, `POST /v1/logs`): an OpenTelemetry Collector, or
//! anything that speaks OTLP (Loki, Elastic, a vendor's agent).
//!
//! The event loop only hands each flushed line to a bounded queue ([`Exporter::offer`],
//! never a wait); a thread of its own (with its own small runtime: no SDK, no reactor
//! shared with the loop) takes up to `batch` lines at a time, builds the records
//! ([`record`]), posts them on a kept-alive connection and retries:
//!
//! - on 429, 502, 503 and 504 and on connection errors and timeouts, after the answer's
//!   `Retry-After` (seconds or an HTTP date, at most [`MAX_WAIT`]) or else an exponential
//!   backoff from 1 s to 30 s, up to [`MAX_ATTEMPTS`] attempts (about 90 s);
//! - never on another answer (400: the receiver will not take this request).
//!
//! Every event ends in exactly one counter of [`Stats`]: sent, or lost because the queue was
//! full, the receiver refused it (status, or a partial success's `rejected_log_records`),
//! or every attempt failed. The first failure after a success is said on stderr, and so is
//! the first success after a failure, with what was lost meanwhile.

pub mod record;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use hyper::{Request, StatusCode, body::Incoming, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::sync::{mpsc, watch};

use crate::diag;

/// Where and how to send (the daemon's `[export.otlp]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// As in the URL: `127.0.0.1`, `collector.internal`, `[::1]`.
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
    /// Events waiting at most.
    pub queue: usize,
    /// Events per request at most.
    pub batch: usize,
    /// One request's limit, connecting included.
    pub timeout: Duration,
}

impl Settings {
    /// `host:port` for the `Host` header (brackets kept for IPv6).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host to resolve: without IPv6's brackets.
    pub fn connect_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// The URL posted to.
    pub fn url(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Attempts at one request before its events are given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// The first wait before a retry without `Retry-After`; doubled each time up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured (a longer one is waited this long).
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long the first line of a batch waits for more before it is sent: the loop flushes a
/// burst at once, so this only gathers what is already on its way.
const LINGER: Duration = Duration::from_millis(50);
/// The most of an answer's body read (a partial success, an error message).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long the daemon's stop waits for the queue to be sent.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What became of the events offered (totals since the exporter started).
#[derive(Debug, Default)]
pub struct Stats {
    /// Accepted by the receiver.
    pub sent: AtomicU64,
    /// Not queued: the queue was full (the receiver down or slower than the events).
    pub lost_queue: AtomicU64,
    /// Refused by the receiver: a status that is not retried, or `rejected_log_records`.
    pub lost_refused: AtomicU64,
    /// Every attempt failed, or the daemon stopped before they could be sent.
    pub lost_failed: AtomicU64,
    /// Requests sent again.
    pub retries: AtomicU64,
    /// Events in the queue or in the request being sent.
    pub pending: AtomicU64,
}

impl Stats {
    /// Every event lost, whatever the reason.
    pub fn lost(&self) -> u64 {
        let l = |n: &AtomicU64| n.load(Ordering::Relaxed);
        l(&self.lost_queue) + l(&self.lost_refused) + l(&self.lost_failed)
    }
}

/// The daemon's side of the export: a queue into the exporting thread.
pub struct Exporter {
    /// The URL posted to.
    pub endpoint: String,
    tx: Option<mpsc::Sender<Bytes>>,
    /// When set, the thread sends what it has until then and stops.
    stop: watch::Sender<Option<Instant>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<Stats>,
    /// A full queue was said (until the next success).
    said_full: Arc<std::sync::atomic::AtomicBool>,
}

impl Exporter {
    /// Starts the thread that sends as `settings` say, counting in `stats` (a reload's new
    /// exporter goes on with the old one's totals).
    pub fn start(settings: &Settings, stats: Arc<Stats>) -> std::io::Result<Exporter> {
        let endpoint = settings.url();
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let (stop, stop_rx) = watch::channel(None);
        let said_full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = Sender {
            target: settings.clone(),
            batch: settings.batch.max(1),
            timeout: settings.timeout,
            origin: record::Origin::here(),
            stats: stats.clone(),
            stop: stop_rx,
            conn: None,
            failing: None,
            lost_while_failing: 0,
            said_full: said_full.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(sender.run(rx)),
                    Err(e) => diag::otlp_failing(&sender.target.url(), &e),
                }
            })?;
        diag::otlp_exporting(&endpoint);
        Ok(Exporter {
            endpoint,
            tx: Some(tx),
            stop,
            thread: Some(thread),
            stats,
            said_full,
        })
    }

    /// Queues one event line (never waits); a full queue counts it lost.
    pub fn offer(&self, line: Bytes) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {
                self.stats.pending.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.lost_queue.fetch_add(1, Ordering::Relaxed);
                if !self.said_full.swap(true, Ordering::Relaxed) {
                    diag::otlp_queue_full(&self.endpoint);
                }
            }
        }
    }

    /// Sends what is queued for at most `grace`, then stops the thread and waits for it
    /// (what could not be sent by then is counted lost).
    pub fn finish(mut self, grace: Duration) -> Arc<Stats> {
        self.end(grace);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats.clone()
    }

    fn end(&mut self, grace: Duration) {
        let _ = self.stop.send(Some(Instant::now() + grace));
        self.tx = None;
    }
}

impl Drop for Exporter {
    /// Replaced (a reload): the thread sends what it has for [`STOP_GRACE`] on its own; the
    /// loop does not wait for it.
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.end(STOP_GRACE);
        }
    }
}

/// The exporting thread.
struct Sender {
    target: Settings,
    batch: usize,
    timeout: Duration,
    origin: record::Origin,
    stats: Arc<Stats>,
    stop: watch::Receiver<Option<Instant>>,
    /// A connection kept alive between requests.
    conn: Option<SendRequest<Body>>,
    /// Since when requests fail (said once), and what was lost since.
    failing: Option<String>,
    lost_while_failing: u64,
    said_full: Arc<std::sync::atomic::AtomicBool>,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// 2xx; `rejected` of the records were refused all the same (partial success).
    Accepted { rejected: u64, message: String },
    /// Worth another attempt, after `after` when the receiver said.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// Not worth another attempt.
    Refused { why: String },
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Bytes>) {
        let mut batch = Vec::with_capacity(self.batch);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while batch.len() < self.batch {
                tokio::select! {
                    biased;
                    line = rx.recv() => match line {
                        Some(l) => batch.push(l),
                        None => break,
                    },
                    () = &mut linger => break,
                }
            }
            let lines = std::mem::take(&mut batch);
            let n = lines.len() as u64;
            if self.past_deadline() {
                // Stopping, time is up: this and whatever is still queued is lost.
                rx.close();
                let mut rest = n;
                while rx.recv().await.is_some() {
                    rest += 1;
                }
                self.lose_failed(rest);
                break;
            }
            self.send(lines).await;
            self.stats.pending.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    fn lose_failed(&mut self, n: u64) {
        self.stats.lost_failed.fetch_add(n, Ordering::Relaxed);
        self.lost_while_failing += n;
    }

    /// Sends one batch, with its retries; every line ends in one counter.
    async fn send(&mut self, lines: Vec<Bytes>) {
        let observed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let records: Vec<_> = lines
            .iter()
            .filter_map(|l| record::log_record(l, observed))
            .collect();
        let unreadable = (lines.len() - records.len()) as u64;
        if unreadable > 0 {
            self.stats
                .lost_refused
                .fetch_add(unreadable, Ordering::Relaxed);
        }
        let n = records.len() as u64;
        if n == 0 {
            return;
        }
        let body = Bytes::from(record::request(&self.origin, records).encode_to_vec());
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let answer = self.attempt(body.clone()).await;
            let (wait, why) = match answer {
                Answer::Accepted { rejected, message } => {
                    let rejected = rejected.min(n);
                    self.stats.sent.fetch_add(n - rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        self.stats
                            .lost_refused
                            .fetch_add(rejected, Ordering::Relaxed);
                        diag::otlp_partly_refused(&self.target.url(), rejected, &message);
                    }
                    self.recovered();
                    return;
                }
                Answer::Refused { why } => {
                    self.stats.lost_refused.fetch_add(n, Ordering::Relaxed);
                    self.lost_while_failing += n;
                    self.failed(why);
                    return;
                }
                Answer::Retry { after, why } => (after.unwrap_or(backoff), why),
            };
            self.failed(why);
            if attempt == MAX_ATTEMPTS || !self.pause(wait.min(MAX_WAIT)).await {
                break;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.lose_failed(n);
    }

    /// Waits `wait` before a retry; `false` when the daemon's stop leaves no time for it.
    async fn pause(&mut self, wait: Duration) -> bool {
        loop {
            let until = Instant::now() + wait;
            if self.deadline().is_some_and(|d| until > d) {
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => return true,
                changed = self.stop.changed() => {
                    if changed.is_err() {
                        // The daemon is gone without a stop: nothing waits for us.
                        return false;
                    }
                }
            }
        }
    }

    /// Says the first failure after a success.
    fn failed(&mut self, why: String) {
        if self.failing.is_none() {
            diag::otlp_failing(&self.target.url(), &why);
            self.failing = Some(why);
        }
    }

    /// Says the first success after a failure, with what was lost meanwhile.
    fn recovered(&mut self) {
        if self.failing.take().is_some() {
            diag::otlp_recovered(&self.target.url(), self.lost_while_failing);
        }
        self.lost_while_failing = 0;
        self.said_full.store(false, Ordering::Relaxed);
    }

    /// One POST, with the request's time limit (cut to the stop's deadline).
    async fn attempt(&mut self, body: Bytes) -> Answer {
        let limit = match self.deadline() {
            Some(d) => self
                .timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => self.timeout,
        };
        match tokio::time::timeout(limit, self.post(body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                self.conn = None;
                Answer::Retry {
                    after: None,
                    why: e,
                }
            }
            Err(_) => {
                self.conn = None;
                Answer::Retry {
                    after: None,
                    why: format!("no answer within {} s", limit.as_secs_f64()),
                }
            }
        }
    }

    async fn post(&mut self, body: Bytes) -> Result<Answer, String> {
        let conn = match self.conn.take() {
            Some(c) if c.is_ready() => c,
            _ => self.connect().await?,
        };
        let mut conn = conn;
        let req = Request::post(&self.target.path)
            .header(hyper::header::HOST, self.target.authority())
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                hyper::header::USER_AGENT,
                concat!("claude-monitor/", env!("CARGO_PKG_VERSION")),
            )
            .body(Body(Some(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let resp = conn
            .send_request(req)
            .await
            .map_err(|e| format!("the request failed: {e}"))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, chrono::Utc::now()));
        let keep = !resp
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let text = read_body(resp.into_body()).await?;
        if keep {
            self.conn = Some(conn);
        }
        Ok(answer(status, retry_after, &text))
    }

    async fn connect(&self) -> Result<SendRequest<Body>, String> {
        let stream = tokio::net::TcpStream::connect((self.target.connect_host(), self.target.port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.target.authority()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }
}

/// What an answer means for the batch.
fn answer(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Answer {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    if status.is_success() {
        let partial = ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success);
        return Answer::Accepted {
            rejected: partial
                .as_ref()
                .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0)),
            message: partial.map(|p| p.error_message).unwrap_or_default(),
        };
    }
    let why = format!("answered {status}{}", message(body));
    match status.as_u16() {
        429 | 502 | 503 | 504 => Answer::Retry {
            after: retry_after,
            why,
        },
        _ => Answer::Refused { why },
    }
}

/// `: <text>` of an error body that is printable text (a protobuf `Status` is not shown).
fn message(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .take(200)
        .filter(|c| !c.is_control())
        .collect();
    let text = text.trim();
    if text.is_empty() || text.contains('\u{fffd}') {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// `Retry-After`: seconds, or an HTTP date (RFC 9110), from `now`.
fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

async fn read_body(mut body: Incoming) -> Result<Vec<u8>, String> {
    use hyper::body::Body as _;
    let mut out = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Ok(out),
            Some(Err(e)) => return Err(format!("reading the answer: {e}")),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data()
                    && out.len() < MAX_ANSWER_BYTES
                {
                    let room = MAX_ANSWER_BYTES - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
}

/// A request body of one piece.
struct Body(Option<Bytes>);

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests;

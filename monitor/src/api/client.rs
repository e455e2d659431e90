//! `claude-monitor events`: the client of the API socket. JSON lines on stdout, or one
//! readable line per event on a terminal.

use std::{
    io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow};
use bytes::Bytes;
use hyper::{Request, body::Incoming};
use hyper_util::rt::TokioIo;

use super::filter::percent_encode;
use crate::output::printable::printable;

/// A validated `events` invocation.
pub struct Options {
    pub socket: PathBuf,
    pub follow: bool,
    pub kinds: Vec<String>,
    pub session: Option<String>,
    pub cause: Option<String>,
    /// A seq or a duration (`10m`), checked by the daemon.
    pub since: Option<String>,
    pub limit: Option<usize>,
    /// One readable line per event instead of JSON.
    pub text: bool,
}

impl Options {
    /// The request's path and query.
    pub fn path(&self) -> String {
        let mut q = Vec::new();
        if let Some(s) = &self.since {
            q.push(format!("since={}", percent_encode(s)));
        }
        for k in &self.kinds {
            q.push(format!("kind={}", percent_encode(k)));
        }
        if let Some(s) = &self.session {
            q.push(format!("session={}", percent_encode(s)));
        }
        if let Some(c) = &self.cause {
            q.push(format!("cause={}", percent_encode(c)));
        }
        if let (Some(l), false) = (self.limit, self.follow) {
            q.push(format!("limit={l}"));
        }
        let route = if self.follow {
            "/v1/events/stream"
        } else {
            "/v1/events"
        };
        if q.is_empty() {
            route.to_owned()
        } else {
            format!("{route}?{}", q.join("&"))
        }
    }
}

fn connect_error(socket: &Path, e: io::Error) -> anyhow::Error {
    match e.kind() {
        // The io::Error stays in the chain: `--follow` waits for a daemon that restarts.
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => anyhow::Error::from(e)
            .context(format!(
                "no daemon listening on {}: start it with `sudo claude-monitor daemon` \
                 (or `claude-monitor install`), or give its socket with --socket",
                socket.display()
            )),
        io::ErrorKind::PermissionDenied => anyhow!(
            "cannot connect to {}: permission denied (the socket is restricted to root and \
             the group of `api.group`)",
            socket.display()
        ),
        _ => anyhow::Error::from(e).context(format!("cannot connect to {}", socket.display())),
    }
}

/// The next piece of the body, `None` at its end.
async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>> {
    use hyper::body::Body as _;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            None => return Ok(None),
            Some(f) => {
                if let Ok(data) = f.context("reading the daemon's answer")?.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// How long `--follow` waits between two attempts to reach a daemon that went away, at
/// most (it starts at a tenth of a second and doubles).
const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the command until the answer ends. With `--follow` it runs until interrupted: when
/// the daemon goes away (a restart, an upgrade) it says so once on stderr, connects again as
/// soon as the daemon is back, and resumes after the last event it printed (`Last-Event-ID`),
/// so nothing is missed and nothing printed twice.
pub async fn run(opts: Options) -> Result<()> {
    let mut last_id: Option<u64> = None;
    let mut body = request(&opts, None).await?;
    let mut out = io::stdout().lock();
    loop {
        match print_body(&opts, &mut body, &mut out, &mut last_id).await {
            Ok(Printed::End) if !opts.follow => return Ok(()),
            Ok(Printed::Closed) => return Ok(()),
            Ok(Printed::End) if opts.follow => {}
            // The answer broke off: the daemon went away mid-stream.
            Err(e) if opts.follow && e.downcast_ref::<WriteFailed>().is_none() => {}
            Ok(Printed::End) => return Ok(()),
            Err(e) => return Err(e),
        }
        eprintln!(
            "claude-monitor: the daemon on {} went away; following again as soon as it is back",
            opts.socket.display()
        );
        let mut wait = std::time::Duration::from_millis(100);
        body = loop {
            match request(&opts, last_id).await {
                Ok(body) => break body,
                Err(e) if daemon_gone(&e) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RECONNECT_MAX);
                }
                Err(e) => return Err(e),
            }
        };
    }
}

/// Whether `e` says no daemon listens (yet): the socket is missing or refuses.
fn daemon_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            )
        })
    }) || e.downcast_ref::<hyper::Error>().is_some()
}

/// Stdout could not be written: the end, followed or not.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the events: {0}")]
struct WriteFailed(io::Error);

/// Connects and sends the request (resuming after `last_id`); the answer's body.
async fn request(opts: &Options, last_id: Option<u64>) -> Result<Incoming> {
    let mut req = Request::get(opts.path()).header(hyper::header::HOST, "localhost");
    if let Some(id) = last_id {
        req = req.header("last-event-id", id.to_string());
    }
    let req = req.body(http_empty()).context("request")?;
    let (status, body) = send(&opts.socket, req).await?;
    success(status, body).await
}

/// The body of a successful answer; the daemon's own message for a failure status.
async fn success(status: hyper::StatusCode, body: Incoming) -> Result<Incoming> {
    if status.is_success() {
        return Ok(body);
    }
    Err(json_answer(status, body)
        .await
        .err()
        .unwrap_or_else(|| anyhow!("the daemon answered {status}")))
}

/// Sends one request on a new connection: the answer's status and body.
async fn send(socket: &Path, req: Request<Empty>) -> Result<(hyper::StatusCode, Incoming)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| connect_error(socket, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the daemon")?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .context("request to the daemon")?;
    Ok((resp.status(), resp.into_body()))
}

/// A whole JSON answer; an error with the daemon's own message for a failure status.
async fn json_answer(status: hyper::StatusCode, mut body: Incoming) -> Result<serde_json::Value> {
    let mut text = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await? {
        text.extend_from_slice(&chunk);
        if text.len() > 1 << 20 {
            return Err(anyhow!("the daemon's answer is over 1 MiB"));
        }
    }
    let value = serde_json::from_slice::<serde_json::Value>(&text).ok();
    if !status.is_success() {
        let message = value
            .as_ref()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
        return Err(anyhow!("the daemon answered {status}: {message}"));
    }
    value.ok_or_else(|| anyhow!("the daemon's answer is not JSON"))
}

/// `POST /v1/watch?pid=PID`: the daemon watches `pid` (a process of the caller's, started
/// held by `claude-monitor run`) as the root of a session; its id and the last seq written.
pub async fn watch(socket: &Path, pid: u32) -> Result<(String, u64)> {
    let req = Request::post(format!("/v1/watch?pid={pid}"))
        .header(hyper::header::HOST, "localhost")
        .body(http_empty())
        .context("request")?;
    let (status, body) = send(socket, req).await?;
    let v = json_answer(status, body).await?;
    match (v["session"].as_str(), v["seq"].as_u64()) {
        (Some(session), Some(seq)) => Ok((session.to_owned(), seq)),
        _ => Err(anyhow!("the daemon's answer has no session and seq: {v}")),
    }
}

/// The events of one session as they come (`/v1/events/stream?session=ID`, after `seq`).
pub struct SessionStream {
    body: Incoming,
    pending: Vec<u8>,
    data: Option<Vec<u8>>,
    ended: bool,
}

/// The longest SSE line read (an event line is far shorter; a longer one is skipped).
const MAX_LINE: usize = 1 << 20;

impl SessionStream {
    /// Connects; the stream starts after `after` (no gap, no duplicate: `Last-Event-ID`).
    pub async fn open(socket: &Path, session: &str, after: u64) -> Result<SessionStream> {
        let req = Request::get(format!(
            "/v1/events/stream?session={}",
            percent_encode(session)
        ))
        .header(hyper::header::HOST, "localhost")
        .header("last-event-id", after.to_string())
        .body(http_empty())
        .context("request")?;
        let (status, body) = send(socket, req).await?;
        Ok(SessionStream {
            body: success(status, body).await?,
            pending: Vec::new(),
            data: None,
            ended: false,
        })
    }

    /// The next event (its JSON); `None` once the daemon ended the stream (it stopped).
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>> {
        loop {
            while let Some(n) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=n).collect();
                let line = &line[..n];
                if let Some(d) = line.strip_prefix(b"data: ") {
                    self.data = Some(d.to_vec());
                } else if line.is_empty()
                    && let Some(d) = self.data.take()
                    && let Ok(v) = serde_json::from_slice(&d)
                {
                    return Ok(Some(v));
                }
            }
            if self.pending.len() > MAX_LINE {
                self.pending.clear();
            }
            if self.ended {
                return Ok(None);
            }
            match next_chunk(&mut self.body).await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => self.ended = true,
            }
        }
    }
}

/// Whether a daemon answers on `socket` (`/healthz`).
pub async fn daemon_answers(socket: &Path) -> bool {
    let Ok(req) = Request::get("/healthz")
        .header(hyper::header::HOST, "localhost")
        .body(http_empty())
    else {
        return false;
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), send(socket, req)).await {
        Ok(Ok((status, body))) => json_answer(status, body).await.is_ok(),
        _ => false,
    }
}

/// How printing an answer ended.
enum Printed {
    /// The answer ended (for a stream: the daemon went away).
    End,
    /// Stdout was closed (`| head`): a quiet end.
    Closed,
}

/// Prints the events of `body`; for a stream, remembers the `id:` of the last one printed.
async fn print_body(
    opts: &Options,
    body: &mut Incoming,
    out: &mut impl io::Write,
    last_id: &mut Option<u64>,
) -> Result<Printed> {
    let mut pending = Vec::new();
    // SSE: the `id:` and `data:` of the current message.
    let mut id: Option<u64> = None;
    let mut data: Option<Vec<u8>> = None;
    while let Some(chunk) = next_chunk(body).await? {
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(n) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + n];
            start += n + 1;
            let event = if opts.follow {
                if let Some(d) = line.strip_prefix(b"data: ") {
                    data = Some(d.to_vec());
                    None
                } else if let Some(i) = line.strip_prefix(b"id: ") {
                    id = std::str::from_utf8(i)
                        .ok()
                        .and_then(|i| i.trim().parse().ok());
                    None
                } else if line.is_empty() {
                    if let Some(i) = id.take() {
                        *last_id = Some(i);
                    }
                    data.take()
                } else {
                    None
                }
            } else {
                (!line.is_empty()).then(|| line.to_vec())
            };
            if let Some(event) = event {
                let written = if opts.text {
                    serde_json::from_slice(&event)
                        .map(|v| text_line(&v))
                        .map_or(Ok(()), |l| writeln!(out, "{}", printable(&l)))
                } else {
                    out.write_all(&event).and_then(|()| out.write_all(b"\n"))
                };
                match written.and_then(|()| out.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Printed::Closed),
                    Err(e) => return Err(WriteFailed(e).into()),
                }
            }
        }
        pending.drain(..start);
    }
    Ok(Printed::End)
}

/// An empty request body.
fn http_empty() -> Empty {
    Empty
}

/// A request body with nothing in it.
struct Empty;

impl hyper::body::Body for Empty {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}

/// `HH:MM:SS.mmm kind   pid comm detail [seq]`: the shape of `trace`'s text lines, from
/// the JSON (the client has no typed events).
pub fn text_line(v: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let ts = s(&v["ts"]);
    let time = ts.get(11..23).unwrap_or(&ts).to_owned();
    let kind = s(&v["kind"]);
    let detail = match kind.as_str() {
        "exit" => {
            let how = match (v["exit_code"].as_i64(), v["signal_name"].as_str()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(sig)) => sig.to_owned(),
                _ => "unknown status".into(),
            };
            let by = v["killed_by"]["pid"]
                .as_u64()
                .map(|p| format!(" by {p} {}", s(&v["killed_by"]["comm"])))
                .unwrap_or_default();
            format!("{} ({how}){by}", s(&v["cause"]))
        }
        "signal" => format!(
            "{} from {} {}",
            s(&v["signal_name"]),
            v["sender"]["pid"],
            s(&v["sender"]["comm"])
        ),
        "exec" => s(&v["filename"]),
        "oom" => format!(
            "OOM victim {} {}",
            v["victim"]["pid"],
            s(&v["victim"]["comm"])
        ),
        "lost" => format!("{} lost ({})", v["count"], s(&v["reason"])),
        "alert" => s(&v["alert"]["message"]),
        _ => String::new(),
    };
    let session = v["session"]["id"]
        .as_str()
        .map(|id| format!(" [session {id}]"))
        .unwrap_or_default();
    let pid = v["pid"].to_string();
    let comm = s(&v["comm"]);
    format!("{time} {kind:<6} {pid:>7} {comm:<16} {detail}{session}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_lines() {
        let mut o = Options {
            socket: "/run/claude-monitor/api.sock".into(),
            follow: false,
            kinds: vec!["exit".into(), "oom".into()],
            session: Some("1:2".into()),
            cause: None,
            since: Some("10m".into()),
            limit: Some(5),
            text: false,
        };
        assert_eq!(
            o.path(),
            "/v1/events?since=10m&kind=exit&kind=oom&session=1:2&limit=5"
        );
        o.follow = true;
        assert!(o.path().starts_with("/v1/events/stream?"));
        let v = serde_json::json!({"kind":"exit","ts":"2026-12-03T07:00:00.123456Z","pid":5,"comm":"sh","exit_code":3,"cause":"exited","killed_by":null});
        assert_eq!(
            text_line(&v),
            "07:00:00.123 exit         5 sh               exited (exit code 3)"
        );
    }
}

//! The HTTP/1.1 server on the Unix socket (hyper): `/healthz`, `/v1/events` (the history,
//! JSON lines), `/v1/events/stream` (Server-Sent Events).
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (one more is closed at once),
//! request heads of at most 16 KiB read within 10 s, GET only, no request body read. A
//! client that reads slowly only fills its own queue (see [`super::bus`]).

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    io,
    os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body, Frame, SizeHint},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{UnixListener, UnixStream},
    sync::Semaphore,
};

use super::{
    bus::{Bus, Item, Subscription, lost_item},
    filter::{DEFAULT_LIMIT, Filter, Since, Viewer},
    history::LogFiles,
    users::{self, Group},
};
use crate::diag;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A comment line this often on an idle stream, so that proxies and clients see it alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events of history sent at most before a stream goes live (`since` far back).
pub const MAX_STREAM_HISTORY: usize = 100_000;

/// What the server needs.
pub struct State {
    pub bus: Bus,
    pub logs: LogFiles,
    /// `api.group`, resolved at start.
    pub group: Option<Group>,
    pub started: Instant,
    /// The daemon's metrics, served on `/metrics` (counted as events are written, the
    /// snapshot set by the daemon's loop every second).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `/v1/sessions`: answered by the daemon's loop (see [`super::sessions`]).
    pub sessions: super::sessions::Requests,
    /// `/v1/reports`: the report directory.
    pub reports: crate::report::ReportStore,
    /// `POST /v1/watch` (the Unix socket only): answered by the daemon's loop.
    pub watch: super::watch::Requests,
}

/// Who the peer is (root, a member of the group, or a user).
fn viewer(cred: &tokio::net::unix::UCred, group: Option<&Group>) -> Viewer {
    let member =
        || group.is_some_and(|g| users::is_member(Path::new("/etc"), g, cred.uid(), cred.gid()));
    if cred.uid() == 0 || member() {
        Viewer::All
    } else {
        Viewer::Uid(cred.uid())
    }
}

/// The socket is removed when the server goes (the daemon stops).
pub struct Listening {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket: its directory is created (0755) when missing; an existing socket is
/// replaced only when nothing listens on it; anything else there (a file, a symlink: never
/// followed) is an error. Mode `mode`, group `gid`.
pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> io::Result<UnixListener> {
    let err = |kind, msg: String| io::Error::new(kind, msg);
    if let Some(parent) = path.parent() {
        if std::fs::symlink_metadata(parent).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        if std::fs::symlink_metadata(parent)?.file_type().is_symlink() {
            return Err(err(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link: refusing it", parent.display()),
            ));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(
                    io::ErrorKind::AddrInUse,
                    format!("another process listens on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(err(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: refusing to replace it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Serves `listener` on the current runtime until the returned handle is dropped.
pub fn start(listener: UnixListener, path: PathBuf, state: State) -> Listening {
    let state = Arc::new(state);
    let task = accept_loop(listener, move |stream: &UnixStream| {
        let cred = stream.peer_cred().ok()?;
        let viewer = viewer(&cred, state.group.as_ref());
        let uid = cred.uid();
        let state = state.clone();
        Some(move |req: Request<hyper::body::Incoming>| {
            let state = state.clone();
            async move {
                // The one route that changes something, for local peers only (the TCP
                // listener serves GET only): their own processes, by their uid.
                if req.method() == Method::POST && req.uri().path() == "/v1/watch" {
                    let query = req.uri().query().unwrap_or("");
                    return super::watch::serve(&state.watch, uid, query).await;
                }
                handle(&state, viewer, req).await
            }
        })
    });
    Listening { path, task }
}

/// A listener the API accepts connections on (the Unix socket, or TCP).
pub(super) trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_stream(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept_stream(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_stream(&self) -> io::Result<tokio::net::TcpStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Accepts connections on `listener` until the returned task is aborted, with the bounds
/// of every listener: at most [`MAX_CONNECTIONS`] at once (one more is closed at once),
/// request heads of at most 16 KiB read within 10 s. `connection` decides, from the
/// stream, how its requests are answered (`None` closes it).
pub(super) fn accept_loop<L, C, H, F>(listener: L, connection: C) -> tokio::task::JoinHandle<()>
where
    L: Listener,
    C: Fn(&L::Stream) -> Option<H> + Send + 'static,
    H: Fn(Request<hyper::body::Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<ApiBody>> + Send + 'static,
{
    let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept_stream().await {
                Ok(s) => s,
                Err(e) => {
                    diag::api_accept_failed(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = conns.clone().try_acquire_owned() else {
                continue;
            };
            let Some(answer) = connection(&stream) else {
                continue;
            };
            tokio::spawn(async move {
                let _permit = permit;
                let service = service_fn(move |req| {
                    let answer = answer(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<ApiBody> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(ApiBody::Full(Some(Bytes::from(body))))
        .unwrap_or_default()
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<ApiBody> {
    json(status, &serde_json::json!({ "error": message }))
}

pub(super) async fn handle<B>(
    state: &Arc<State>,
    viewer: Viewer,
    req: Request<B>,
) -> Response<ApiBody> {
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET");
    }
    let query = req.uri().query().unwrap_or("");
    let route = req.uri().path();
    match route {
        "/healthz" => json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_secs": state.started.elapsed().as_secs_f64(),
                "seq": state.bus.seq(),
                "subscribers": state.bus.subscribers(),
                "subscriber_lost": state.bus.lost(),
            }),
        ),
        // Host-wide counts: for root and api.group only, as agent_start and alerts are.
        "/metrics" if viewer != Viewer::All => {
            error(StatusCode::FORBIDDEN, "/metrics is for root and api.group")
        }
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = crate::metrics::Format::negotiate(accept);
            Response::builder()
                .header(header::CONTENT_TYPE, format.content_type())
                .body(ApiBody::Full(Some(Bytes::from(
                    state.metrics.encode(format),
                ))))
                .unwrap_or_default()
        }
        "/v1/events" | "/v1/events/stream" => {
            let mut filter = match Filter::parse(query) {
                Ok(f) => f,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            };
            if route == "/v1/events" {
                let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
                let items = history(state, filter, viewer, limit).await;
                let mut body = Vec::new();
                for item in items {
                    body.extend_from_slice(&item.line);
                    body.push(b'\n');
                }
                return Response::builder()
                    .header(header::CONTENT_TYPE, "application/jsonl")
                    .body(ApiBody::Full(Some(Bytes::from(body))))
                    .unwrap_or_default();
            }
            let last_id = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty());
            if let Some(id) = last_id {
                match id.parse() {
                    Ok(seq) => filter.since = Some(Since::Seq(seq)),
                    Err(_) => return error(StatusCode::BAD_REQUEST, "Last-Event-ID: not a seq"),
                }
            }
            // Subscribe first, then read the history: an event is in one or both; the
            // ones in both (seq at most the history's last) are dropped from the live part.
            let sub = state.bus.subscribe(filter.clone(), viewer);
            let hist = if filter.since.is_some() {
                history(state, filter, viewer, MAX_STREAM_HISTORY).await
            } else {
                Vec::new()
            };
            let last = hist.iter().filter_map(|i| i.seq).max().unwrap_or(0);
            let body = SseBody {
                history: hist.into(),
                sub,
                last,
                keep_alive: tokio::time::interval_at(
                    tokio::time::Instant::now() + KEEP_ALIVE,
                    KEEP_ALIVE,
                ),
            };
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(ApiBody::Sse(Box::new(body)))
                .unwrap_or_default()
        }
        "/v1/sessions" => super::sessions::serve(&state.sessions, viewer, query, None).await,
        r if r.starts_with("/v1/sessions/") => {
            let id = &r["/v1/sessions/".len()..];
            super::sessions::serve(&state.sessions, viewer, query, Some(id)).await
        }
        "/v1/reports" => super::reports::serve(&state.reports, viewer, query, None).await,
        r if r.starts_with("/v1/reports/") => {
            let id = &r["/v1/reports/".len()..];
            super::reports::serve(&state.reports, viewer, query, Some(id)).await
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

/// The history, read on a blocking thread (never on the event loop's).
async fn history(state: &Arc<State>, filter: Filter, viewer: Viewer, limit: usize) -> Vec<Item> {
    let logs = state.logs.clone();
    tokio::task::spawn_blocking(move || logs.read(&filter, viewer, None, limit))
        .await
        .unwrap_or_default()
}

/// A response body: a whole answer, or an event stream.
pub enum ApiBody {
    Full(Option<Bytes>),
    Sse(Box<SseBody>),
}

impl Default for ApiBody {
    fn default() -> ApiBody {
        ApiBody::Full(None)
    }
}

/// The stream: the history first, then the live queue without what the history had.
pub struct SseBody {
    history: VecDeque<Item>,
    sub: Subscription,
    /// The last seq sent.
    last: u64,
    keep_alive: tokio::time::Interval,
}

/// One event as an SSE message: `id:` the seq (none for a subscriber's own `lost`),
/// `event:` the kind, `data:` the JSON line.
pub fn sse_frame(item: &Item) -> Bytes {
    let mut out = Vec::with_capacity(item.line.len() + 48);
    if let Some(seq) = item.seq {
        out.extend_from_slice(format!("id: {seq}\n").as_bytes());
    }
    out.extend_from_slice(format!("event: {}\ndata: ", item.kind).as_bytes());
    out.extend_from_slice(&item.line);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ApiBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ApiBody::Sse(s) => s.poll_next(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ApiBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ApiBody::Full(None) => SizeHint::with_exact(0),
            ApiBody::Sse(_) => SizeHint::default(),
        }
    }
}

impl SseBody {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(item) = self.history.pop_front() {
            return Poll::Ready(Some(sse_frame(&item)));
        }
        loop {
            match self.sub.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if let Some(seq) = item.seq {
                        if seq <= self.last {
                            continue;
                        }
                        self.last = seq;
                    }
                    return Poll::Ready(Some(sse_frame(&item)));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        // Caught up: what did not fit is told now if no later event told it.
        let dropped = self.sub.take_dropped();
        if dropped > 0 {
            return Poll::Ready(Some(sse_frame(&lost_item(dropped))));
        }
        if self.keep_alive.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Bytes::from_static(b": keep-alive\n\n")));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn frames() {
        let item = Item {
            seq: Some(7),
            kind: "exit".into(),
            line: Bytes::from_static(br#"{"v":1,"seq":7}"#),
        };
        assert_eq!(
            &sse_frame(&item)[..],
            b"id: 7\nevent: exit\ndata: {\"v\":1,\"seq\":7}\n\n"
        );
    }

    #[test]
    fn binds_only_over_a_dead_socket() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = TempDir::new("api-bind");
            let path = t.path().join("run/api.sock");
            let l = bind(&path, 0o666, None).unwrap();
            use std::os::unix::fs::MetadataExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o666);
            assert_eq!(
                bind(&path, 0o666, None).unwrap_err().kind(),
                io::ErrorKind::AddrInUse
            );
            drop(l);
            // A stale socket is replaced.
            let _l = bind(&path, 0o660, None).unwrap();
            let file = t.path().join("file");
            std::fs::write(&file, "").unwrap();
            assert!(bind(&file, 0o666, None).is_err(), "not a socket");
            let link = t.path().join("link");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            assert!(bind(&link, 0o666, None).is_err(), "a symlink");
        });
    }
}

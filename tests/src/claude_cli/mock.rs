//! A loopback mock of the Anthropic Messages API, enough for the real Claude Code CLI.
//!
//! HTTP/1.1 on `127.0.0.1:<ephemeral>`, one thread per connection, keep-alive, bodies with
//! `Content-Length` (or chunked), every size bounded. What it answers:
//!
//! - `HEAD /` (the CLI's connectivity check) and other `GET`/`HEAD`: `200`, `{}`.
//! - `POST /v1/messages/count_tokens`: `{"input_tokens":10}`.
//! - `POST /v1/messages` (streaming SSE when `"stream": true`, else one JSON message):
//!   for a request of the main loop (its `tools` include `Bash`), the `n`-th Bash command of
//!   the script as a `tool_use` when the conversation holds `n` `tool_result`s so far and the
//!   script has more commands, else the final text (`end_turn`). With
//!   [`Script::hold_final`] the final answer waits until [`MockApi::release`] (or the mock
//!   is dropped, which closes the connection unanswered): the CLI stays alive meanwhile.
//!   Side requests without the Bash tool (titles, summaries) get the final text at once.
//!
//! Every request is recorded ([`MockApi::requests`], [`MockApi::wait_for`]), so a test can
//! wait for "the CLI sent the tool_result" and read its content.

use std::{
    io::{BufRead, BufReader, Read, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Longest request line or header line accepted.
const MAX_LINE: usize = 64 << 10;
/// Most header lines per request.
const MAX_HEADERS: usize = 256;
/// Largest request body accepted (the CLI's requests are about 90 KiB and grow with the
/// conversation).
const MAX_BODY: usize = 64 << 20;

/// What the mock answers.
#[derive(Clone, Debug)]
pub struct Script {
    /// Bash commands, answered as `tool_use`s in this order.
    pub commands: Vec<String>,
    /// The final text (`end_turn`).
    pub final_text: String,
    /// Hold the final answer of the main loop until [`MockApi::release`].
    pub hold_final: bool,
}

impl Script {
    /// One Bash command, then "Done.".
    pub fn bash(command: &str) -> Script {
        Script {
            commands: vec![command.to_owned()],
            final_text: "Done.".to_owned(),
            hold_final: false,
        }
    }

    /// [`Script::bash`] whose final answer waits for [`MockApi::release`].
    pub fn bash_then_hold(command: &str) -> Script {
        Script {
            hold_final: true,
            ..Script::bash(command)
        }
    }
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query (`/v1/messages?beta=true`).
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// What the mock answered with: `tool_use:<id>`, `text`, `held`, `other`.
    pub answer: String,
}

/// A `tool_result` block of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolResult {
    pub tool_use_id: String,
    /// The content, text blocks joined when it is a list.
    pub content: String,
    pub is_error: bool,
}

impl Request {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A `POST /v1/messages` (not `count_tokens`).
    pub fn is_messages(&self) -> bool {
        self.method == "POST"
            && (self.path == "/v1/messages" || self.path.starts_with("/v1/messages?"))
    }

    /// Its `tools` include `Bash`: a request of the main loop.
    pub fn has_bash_tool(&self) -> bool {
        self.body["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "Bash"))
    }

    /// Every `tool_result` block in the conversation.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            for c in m["content"].as_array().into_iter().flatten() {
                if c["type"] != "tool_result" {
                    continue;
                }
                let content = match &c["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    other => other.to_string(),
                };
                out.push(ToolResult {
                    tool_use_id: c["tool_use_id"].as_str().unwrap_or_default().to_owned(),
                    content,
                    is_error: c["is_error"] == true,
                });
            }
        }
        out
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    released: bool,
    shutdown: bool,
    /// Clones of the open connections, shut down on drop to end their threads.
    conns: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    script: Script,
    /// Prefix of the tool_use ids: unique per mock.
    id_prefix: String,
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running mock, stopped on drop.
pub struct MockApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl MockApi {
    pub fn start(script: Script) -> MockApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock API");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            script,
            id_prefix: format!("toolu_01Cm{}P{}T", std::process::id(), addr.port()),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.lock().shutdown {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let Ok(clone) = conn.try_clone() else {
                    continue;
                };
                let s2 = Arc::clone(&s);
                let t = std::thread::spawn(move || serve(&s2, conn));
                let mut st = s.lock();
                st.conns.push(clone);
                st.threads.push(t);
            }
        });
        MockApi {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The id of the `tool_use` answering the `index`-th command of the script.
    pub fn tool_use_id(&self, index: usize) -> String {
        format!("{}{index}", self.shared.id_prefix)
    }

    /// Lets a held final answer go.
    pub fn release(&self) {
        self.shared.lock().released = true;
        self.shared.cv.notify_all();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Waits for a request satisfying `pred` (received before or after the call).
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Request) -> bool,
    ) -> Request {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(r) = st.requests.iter().find(|r| pred(r)) {
                return r.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "mock API: no request {what} within {timeout:?}; received: {}",
                summary(&st.requests)
            );
            st = self
                .shared
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the CLI sent the result of the `index`-th command's tool_use, and
    /// returns it.
    pub fn wait_tool_result(&self, index: usize, timeout: Duration) -> ToolResult {
        let id = self.tool_use_id(index);
        let r = self.wait_for(timeout, &format!("with the tool_result of {id}"), |r| {
            r.is_messages() && r.tool_results().iter().any(|t| t.tool_use_id == id)
        });
        r.tool_results()
            .into_iter()
            .find(|t| t.tool_use_id == id)
            .expect("found")
    }

    /// Claude Code's session id as the CLI sends it (`X-Claude-Code-Session-Id`) on its
    /// first main-loop request, if it sends one.
    pub fn session_id_header(&self) -> Option<String> {
        self.requests()
            .iter()
            .find(|r| r.is_messages())
            .and_then(|r| r.header("x-claude-code-session-id").map(str::to_owned))
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.cv.notify_all();
        // Wake the accept loop, which then ends: no connection is added after this join.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let threads = {
            let mut st = self.shared.lock();
            for c in &st.conns {
                let _ = c.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut st.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

fn summary(requests: &[Request]) -> String {
    let lines: Vec<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{} {} -> {} (tool_results: {:?})",
                r.method,
                r.path,
                r.answer,
                r.tool_results()
            )
        })
        .collect();
    if lines.is_empty() {
        "none".to_owned()
    } else {
        format!("\n  {}", lines.join("\n  "))
    }
}

/// Reads one line (up to CRLF or LF) of at most `MAX_LINE` bytes; `None` at EOF.
fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut buf = Vec::new();
    let n = r
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .ok()?;
    if n == 0 || buf.len() > MAX_LINE {
        return None;
    }
    while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        buf.pop();
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A request as read off the wire: method, path, headers, body.
type RawRequest = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request; `None` at EOF or on a malformed or oversized one.
fn read_request(r: &mut impl BufRead) -> Option<RawRequest> {
    let mut line = read_line(r)?;
    while line.is_empty() {
        line = read_line(r)?;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let h = read_line(r)?;
        if h.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return None;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = read_line(r)?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers up to the empty line.
                while !read_line(r)?.is_empty() {}
                break;
            }
            if body.len() + size > MAX_BODY {
                return None;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).ok()?;
            read_line(r)?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if len > MAX_BODY {
            return None;
        }
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some((method, path, headers, body))
}

fn serve(shared: &Shared, conn: TcpStream) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some((method, path, headers, body)) = read_request(&mut reader) {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut req = Request {
            method,
            path,
            headers,
            body,
            answer: String::new(),
        };
        let reply = answer(shared, &mut req);
        {
            let mut st = shared.lock();
            st.requests.push(req.clone());
        }
        shared.cv.notify_all();
        let reply = match reply {
            Reply::Now(r) => r,
            Reply::Held(r) => {
                let mut st = shared.lock();
                while !st.released && !st.shutdown {
                    st = shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.shutdown {
                    return;
                }
                r
            }
        };
        if out.write_all(&reply).and_then(|()| out.flush()).is_err() {
            return;
        }
        if shared.lock().shutdown {
            return;
        }
    }
}

enum Reply {
    Now(Vec<u8>),
    Held(Vec<u8>),
}

fn response(status: &str, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         request-id: req_mock\r\nconnection: keep-alive\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        r.extend_from_slice(body);
    }
    r
}

fn answer(shared: &Shared, req: &mut Request) -> Reply {
    if req.method != "POST" {
        req.answer = "other".to_owned();
        return Reply::Now(response(
            "200 OK",
            "application/json",
            b"{}",
            req.method == "HEAD",
        ));
    }
    if !req.is_messages() {
        req.answer = "other".to_owned();
        let b = json!({"input_tokens": 10}).to_string();
        return Reply::Now(response("200 OK", "application/json", b.as_bytes(), false));
    }
    let script = &shared.script;
    let main_loop = req.has_bash_tool();
    let done = req.tool_results().len();
    let content = if main_loop && done < script.commands.len() {
        let id = format!("{}{done}", shared.id_prefix);
        req.answer = format!("tool_use:{id}");
        json!({"type": "tool_use", "id": id, "name": "Bash",
               "input": {"command": script.commands[done], "description": "Run the test's command"}})
    } else {
        req.answer = "text".to_owned();
        json!({"type": "text", "text": script.final_text})
    };
    let stop = if content["type"] == "tool_use" {
        "tool_use"
    } else {
        "end_turn"
    };
    let model = req.body["model"].clone();
    let bytes = if req.body["stream"] == true {
        let mut events = vec![(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_01mock", "type": "message",
                    "role": "assistant", "model": model, "content": [], "stop_reason": null,
                    "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        )];
        if content["type"] == "tool_use" {
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "tool_use", "id": content["id"], "name": "Bash", "input": {}}}),
            ));
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta":
                    {"type": "input_json_delta", "partial_json": content["input"].to_string()}}),
            ));
        } else {
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "text", "text": ""}}),
            ));
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta":
                    {"type": "text_delta", "text": content["text"]}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push((
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                   "usage": {"output_tokens": 5}}),
        ));
        events.push(("message_stop", json!({"type": "message_stop"})));
        let data: String = events
            .iter()
            .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
            .collect();
        response("200 OK", "text/event-stream", data.as_bytes(), false)
    } else {
        let b = json!({"id": "msg_01mock", "type": "message", "role": "assistant", "model": model,
            "content": [content], "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5}})
        .to_string();
        response("200 OK", "application/json", b.as_bytes(), false)
    };
    if main_loop && stop == "end_turn" && script.hold_final && !shared.lock().released {
        req.answer = "held".to_owned();
        Reply::Held(bytes)
    } else {
        Reply::Now(bytes)
    }
}

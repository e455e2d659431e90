//! `POST /v1/watch?pid=PID` (the Unix socket only): `claude-monitor run` asks the daemon to
//! watch its command, started held before its exec, as the root of a session of its own.
//! The answer is the session's id and the seq of the last event written: the client then
//! follows `/v1/events/stream?session=ID` with `Last-Event-ID: SEQ` and misses nothing of
//! the command's tree.
//!
//! **Who may ask.** The peer's credentials (SO_PEERCRED) decide: root may have any process
//! watched, any other user only their own (the process's real uid is theirs). The TCP
//! listener serves GET only, so this route is never reachable over the network.
//!
//! **Bounds.** As for `/v1/sessions`: the request goes to the event loop through a bounded
//! channel ([`QUEUE`]; one more is a 503, never a wait of the loop), and the loop's answer is
//! waited for at most [`ANSWER_TIMEOUT`]. Each watched process is a session, so the
//! attributor's bound on sessions bounds them.

use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the loop at most.
pub const QUEUE: usize = 8;
/// How long a request waits for the loop's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the loop answers: the session's id and the last seq written, or why not.
pub type Answer = Result<(String, u64), String>;

/// One request, for the loop.
pub struct Request {
    pub pid: u32,
    /// The peer's uid.
    pub uid: u32,
    pub reply: oneshot::Sender<Answer>,
}

/// The server's end.
#[derive(Clone)]
pub struct Requests(mpsc::Sender<Request>);

/// The loop's end.
pub type Receiver = mpsc::Receiver<Request>;

pub fn channel() -> (Requests, Receiver) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Requests(tx), rx)
}

/// The `pid` of the query (`pid=123`).
fn parse(query: &str) -> Result<u32, String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("pid="))
        .ok_or_else(|| "pid=PID is needed".to_owned())?
        .parse::<u32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| "pid: not a process id".to_owned())
}

/// Whether `uid` may have the process of `owner` watched.
pub fn allowed(uid: u32, owner: u32) -> bool {
    uid == 0 || uid == owner
}

/// Serves one request: 200 `{"session": ID, "seq": N}`, 400 for a bad query, 403 for another
/// user's process, 404 for a process that does not exist, 503 when the loop is busy.
pub async fn serve(
    requests: &Requests,
    uid: u32,
    query: &str,
) -> hyper::Response<super::server::ApiBody> {
    use super::server::{error, json};
    let pid = match parse(query) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let (reply, rx) = oneshot::channel();
    if requests.0.try_send(Request { pid, uid, reply }).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is busy: try again",
        );
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(Ok((session, seq)))) => json(
            StatusCode::OK,
            &serde_json::json!({ "session": session, "seq": seq, "pid": pid }),
        ),
        Ok(Ok(Err(e))) if e.starts_with("no such process") => error(StatusCode::NOT_FOUND, &e),
        Ok(Ok(Err(e))) if e.starts_with("not yours") => error(StatusCode::FORBIDDEN, &e),
        Ok(Ok(Err(e))) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon did not answer in time",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_who_may_ask() {
        assert_eq!(parse("pid=42"), Ok(42));
        assert_eq!(parse("x=1&pid=7"), Ok(7));
        assert!(parse("").is_err());
        assert!(parse("pid=0").is_err());
        assert!(parse("pid=-1").is_err());
        assert!(parse("pid=abc").is_err());
        assert!(allowed(0, 1000));
        assert!(allowed(1000, 1000));
        assert!(!allowed(1000, 1001));
    }
}

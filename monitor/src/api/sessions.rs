//! `/v1/sessions` and `/v1/sessions/{id}`: the sessions the daemon tracks, with their live
//! processes, their recent deaths and their last resource samples.
//!
//! **Who builds the answer, and why a channel.** The event loop owns the attributor; the
//! server's tasks never touch it. A request goes to the loop through a bounded channel
//! ([`Requests`], [`QUEUE`] requests waiting at most: one more is a 503, never a wait of the
//! loop) and the loop answers it in its `select!` with a [`Snapshot`] built for that
//! request only. This costs the loop nothing while nobody asks (a snapshot refreshed every
//! second would walk up to 16k sessions and the whole process table every second for no
//! one), and what one request costs is bounded: one pass over the process table, at most
//! [`MAX_SESSIONS`] sessions listed (of the viewer's, the ones with live processes first),
//! at most [`MAX_PROCESSES`] processes and [`MAX_DEATHS`] deaths per session. The loop reads
//! no file for it: the live processes' RSS is read from /proc here, on a blocking thread.
//!
//! **Who sees what.** Root and `api.group` see every session; any other user only the
//! sessions whose root process's uid is theirs. Another user's session is a 404, as one that
//! does not exist, so ids cannot be probed.

use std::{collections::VecDeque, time::Duration};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::filter::Viewer;
use crate::{event::SessionJson, report::Sample};

/// Sessions in one answer at most.
pub const MAX_SESSIONS: usize = 1000;
/// Live processes listed per session at most (`processes_total` counts them all).
pub const MAX_PROCESSES: usize = 200;
/// Deaths remembered per session (the newest).
pub const MAX_DEATHS: usize = 20;
/// Sessions whose deaths are remembered at most.
pub const MAX_DEATH_SESSIONS: usize = 2048;
/// Resource samples per session in an answer (the newest).
pub const SAMPLES: usize = 5;
/// Requests waiting for the loop at most.
pub const QUEUE: usize = 8;
/// How long a request waits for the loop's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// One live process of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveProcess {
    pub pid: u32,
    pub comm: String,
    /// Resident set size from /proc/PID/statm when the answer was sent (`null`: gone).
    pub rss_kb: Option<u64>,
}

/// One exit of a session's process, as its `exit` event said.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Death {
    /// The exit event's `seq` and `ts`.
    pub seq: u64,
    pub ts: String,
    pub pid: u32,
    pub proc_id: Option<String>,
    pub comm: String,
    pub uid: u32,
    pub cause: String,
    pub exit_code: Option<u8>,
    pub signal_name: Option<String>,
    /// The sender of the fatal signal, when known.
    pub killed_by_pid: Option<u32>,
    pub killed_by_comm: Option<String>,
}

/// One session in an answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionView {
    /// `id`, `agent`, `root_pid`, `root_start`, `cwd`, `claude_session_id`, `version`: as
    /// in the events' `session`.
    #[serde(flatten)]
    pub session: SessionJson,
    /// The root process's uid (who may see the session).
    pub uid: Option<u32>,
    /// Whether any of its processes runs.
    pub live: bool,
    /// Its live processes, by pid, at most [`MAX_PROCESSES`].
    pub processes: Vec<LiveProcess>,
    pub processes_total: usize,
    /// Its last exits, oldest first, at most [`MAX_DEATHS`].
    pub recent_deaths: Vec<Death>,
    /// Its last resource samples, oldest first, at most [`SAMPLES`].
    pub samples: Vec<Sample>,
}

/// What the loop answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub sessions: Vec<SessionView>,
    /// More sessions matched than [`MAX_SESSIONS`].
    pub truncated: bool,
}

/// A request to the loop: the sessions `viewer` may see, those `id` names when set (its
/// `session.id`, Claude Code's session id, or a prefix of either).
pub struct Request {
    pub viewer: Viewer,
    pub id: Option<String>,
    pub reply: oneshot::Sender<Snapshot>,
}

impl Request {
    /// Whether the viewer may see a session of this root uid.
    pub fn sees(&self, uid: Option<u32>) -> bool {
        match self.viewer {
            Viewer::All => true,
            Viewer::Uid(u) => uid == Some(u),
        }
    }

    /// Whether `id` names this session (no `id`: every session does).
    pub fn names(&self, session: &SessionJson) -> bool {
        self.id.as_deref().is_none_or(|want| {
            session.id.starts_with(want)
                || session
                    .claude_session_id
                    .as_deref()
                    .is_some_and(|c| c.starts_with(want))
        })
    }
}

/// The server's end of the channel.
#[derive(Clone)]
pub struct Requests(mpsc::Sender<Request>);

/// The loop's end.
pub type Receiver = mpsc::Receiver<Request>;

pub fn channel() -> (Requests, Receiver) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Requests(tx), rx)
}

/// Why there is no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// [`QUEUE`] requests wait already.
    Busy,
    /// The loop did not answer in time, or is gone.
    NoAnswer,
}

impl Requests {
    /// Asks the loop, then reads the live processes' RSS (on a blocking thread).
    pub async fn ask(&self, viewer: Viewer, id: Option<String>) -> Result<Snapshot, Unanswered> {
        let (reply, rx) = oneshot::channel();
        self.0
            .try_send(Request { viewer, id, reply })
            .map_err(|_| Unanswered::Busy)?;
        let snapshot = tokio::time::timeout(ANSWER_TIMEOUT, rx)
            .await
            .map_err(|_| Unanswered::NoAnswer)?
            .map_err(|_| Unanswered::NoAnswer)?;
        tokio::task::spawn_blocking(move || with_rss(snapshot, std::path::Path::new("/proc")))
            .await
            .map_err(|_| Unanswered::NoAnswer)
    }
}

/// Fills each live process's `rss_kb` from `<proc>/PID/statm`.
fn with_rss(mut s: Snapshot, proc_root: &std::path::Path) -> Snapshot {
    let page_kb = crate::host::page_kb();
    for p in s.sessions.iter_mut().flat_map(|s| s.processes.iter_mut()) {
        p.rss_kb = std::fs::read_to_string(proc_root.join(p.pid.to_string()).join("statm"))
            .ok()
            .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * page_kb);
    }
    s
}

/// The last exits of each session, kept by the daemon from the exit events it writes.
/// Bounded: [`MAX_DEATHS`] per session, [`MAX_DEATH_SESSIONS`] sessions (beyond, the
/// session whose last death is the oldest is forgotten).
#[derive(Default)]
pub struct Deaths {
    by_session: std::collections::HashMap<String, (u64, VecDeque<Death>)>,
}

impl Deaths {
    pub fn push(&mut self, session: &str, death: Death) {
        let seq = death.seq;
        if !self.by_session.contains_key(session)
            && self.by_session.len() >= MAX_DEATH_SESSIONS
            && let Some(oldest) = self
                .by_session
                .iter()
                .min_by_key(|(_, (last, _))| *last)
                .map(|(k, _)| k.clone())
        {
            self.by_session.remove(&oldest);
        }
        let (last, ring) = self.by_session.entry(session.to_owned()).or_default();
        *last = seq;
        if ring.len() == MAX_DEATHS {
            ring.pop_front();
        }
        ring.push_back(death);
    }

    /// A session's deaths, oldest first.
    pub fn of(&self, session: &str) -> Vec<Death> {
        self.by_session
            .get(session)
            .map(|(_, r)| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Keeps only the sessions `keep` says yes to (those the daemon still tracks).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_session.retain(|id, _| keep(id));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_session.len()
    }
}

/// The answer to `/v1/sessions/{id}` among the sessions that `id` names: the one whose id
/// (or Claude Code session id) is `id`, else the only one it is a prefix of.
pub fn pick(snapshot: Snapshot, id: &str) -> Result<SessionView, PickError> {
    let exact = snapshot
        .sessions
        .iter()
        .position(|s| s.session.id == id || s.session.claude_session_id.as_deref() == Some(id));
    let mut sessions = snapshot.sessions;
    match (exact, sessions.len()) {
        (Some(i), _) => Ok(sessions.swap_remove(i)),
        (None, 0) => Err(PickError::None),
        (None, 1) => Ok(sessions.remove(0)),
        (None, n) => Err(PickError::Ambiguous(n)),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum PickError {
    None,
    Ambiguous(usize),
}

/// `/v1/sessions` (`id`: `None`) or `/v1/sessions/{id}`; no query parameter.
pub(super) async fn serve(
    requests: &Requests,
    viewer: Viewer,
    query: &str,
    id: Option<&str>,
) -> hyper::Response<super::server::ApiBody> {
    use super::server::{error, json};
    use hyper::StatusCode;
    if let Some(p) = query.split('&').find(|p| !p.is_empty()) {
        let key = p.split_once('=').map_or(p, |(k, _)| k);
        return error(
            StatusCode::BAD_REQUEST,
            &format!("unknown parameter {key:?}"),
        );
    }
    let id = match id.map(super::filter::percent_decode) {
        None => None,
        Some(Some(id)) if !id.is_empty() => Some(id),
        Some(_) => return error(StatusCode::BAD_REQUEST, "not a session id"),
    };
    let snapshot = match requests.ask(viewer, id.clone()).await {
        Ok(s) => s,
        Err(Unanswered::Busy) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "busy: try again");
        }
        Err(Unanswered::NoAnswer) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon did not answer");
        }
    };
    let value = match id {
        None => serde_json::to_value(&snapshot),
        Some(id) => match pick(snapshot, &id) {
            Ok(one) => serde_json::to_value(&one),
            Err(PickError::None) => {
                return error(StatusCode::NOT_FOUND, &format!("no session {id}"));
            }
            Err(PickError::Ambiguous(n)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("{id} is ambiguous: it starts {n} sessions"),
                );
            }
        },
    };
    json(StatusCode::OK, &value.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, claude: Option<&str>) -> SessionView {
        SessionView {
            session: SessionJson {
                id: id.into(),
                agent: "a".into(),
                root_pid: 1,
                root_start: String::new(),
                cwd: None,
                claude_session_id: claude.map(str::to_owned),
                version: None,
            },
            uid: Some(1000),
            live: true,
            processes: Vec::new(),
            processes_total: 0,
            recent_deaths: Vec::new(),
            samples: Vec::new(),
        }
    }

    fn death(seq: u64) -> Death {
        Death {
            seq,
            ts: String::new(),
            pid: 1,
            proc_id: None,
            comm: "sh".into(),
            uid: 0,
            cause: "killed".into(),
            exit_code: None,
            signal_name: None,
            killed_by_pid: None,
            killed_by_comm: None,
        }
    }

    #[test]
    fn picks_by_id_or_unique_prefix() {
        let snap = |v: Vec<SessionView>| Snapshot {
            sessions: v,
            truncated: false,
        };
        let two = || snap(vec![view("12:5", None), view("123:6", Some("abc"))]);
        assert_eq!(pick(two(), "12:5").unwrap().session.id, "12:5");
        assert_eq!(pick(two(), "abc").unwrap().session.id, "123:6");
        assert_eq!(pick(two(), "12").unwrap_err(), PickError::Ambiguous(2));
        assert_eq!(
            pick(snap(vec![view("123:6", None)]), "12")
                .unwrap()
                .session
                .id,
            "123:6"
        );
        assert_eq!(pick(snap(vec![]), "9").unwrap_err(), PickError::None);
    }

    #[test]
    fn requests_see_their_own_and_name_by_prefix() {
        let (reply, _rx) = oneshot::channel();
        let r = Request {
            viewer: Viewer::Uid(1000),
            id: Some("ab".into()),
            reply,
        };
        assert!(r.sees(Some(1000)) && !r.sees(Some(0)) && !r.sees(None));
        assert!(r.names(&view("9:9", Some("abc")).session));
        assert!(!r.names(&view("9:9", None).session));
    }

    #[test]
    fn deaths_are_bounded() {
        let mut d = Deaths::default();
        for seq in 0..(MAX_DEATHS as u64 + 5) {
            d.push("s", death(seq));
        }
        let kept = d.of("s");
        assert_eq!(kept.len(), MAX_DEATHS);
        assert_eq!(kept[0].seq, 5, "the oldest go first");
        for i in 0..MAX_DEATH_SESSIONS as u64 {
            d.push(&format!("x{i}"), death(100 + i));
        }
        assert_eq!(d.len(), MAX_DEATH_SESSIONS);
        assert!(
            d.of("s").is_empty(),
            "the session with the oldest death went"
        );
        d.retain(|id| id == "x1");
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn rss_from_statm() {
        let t = crate::testutil::TempDir::new("api-statm");
        std::fs::create_dir_all(t.path().join("7")).unwrap();
        std::fs::write(t.path().join("7/statm"), "100 25 3 1 0 20 0\n").unwrap();
        let mut v = view("7:1", None);
        v.processes = vec![
            LiveProcess {
                pid: 7,
                comm: "a".into(),
                rss_kb: None,
            },
            LiveProcess {
                pid: 8,
                comm: "b".into(),
                rss_kb: None,
            },
        ];
        let s = with_rss(
            Snapshot {
                sessions: vec![v],
                truncated: false,
            },
            t.path(),
        );
        let page_kb = crate::host::page_kb();
        assert_eq!(s.sessions[0].processes[0].rss_kb, Some(25 * page_kb));
        assert_eq!(s.sessions[0].processes[1].rss_kb, None);
    }
}

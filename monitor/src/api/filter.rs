//! What an event is about (its [`Meta`]: kind, session, cause, uid), the filters of a
//! request ([`Filter`], from its query string), and who may see it ([`Viewer`]).

use std::collections::HashMap;

use serde_json::Value;

use crate::event::{Body, Event};

/// The facts of one event that filters and visibility look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub kind: String,
    /// `session.id`.
    pub session: Option<String>,
    /// `session.claude_session_id`.
    pub claude_session: Option<String>,
    /// `exit.cause`.
    pub cause: Option<String>,
    /// The uid the event belongs to (see [`SessionUids::resolve`]).
    pub uid: Option<u32>,
}

impl Meta {
    /// From an event the daemon writes (the live path: no JSON parsed).
    pub fn of_event(e: &Event) -> Meta {
        let session = e.attr.as_ref().and_then(|a| a.session.as_ref());
        let (cause, uid) = match &e.body {
            Body::Exit(x) => (Some(x.cause.cause.as_str().to_owned()), Some(x.uid)),
            Body::Exec(x) => (None, Some(x.uid)),
            Body::Oom(o) => (None, o.victim.uid),
            _ => (None, None),
        };
        Meta {
            kind: e.kind.as_str().to_owned(),
            session: session.map(|s| s.id.clone()),
            claude_session: session.and_then(|s| s.claude_session_id.clone()),
            cause,
            uid,
        }
    }

    /// From a line of the event log (the history path); the same facts as [`Meta::of_event`].
    pub fn of_json(v: &Value) -> Meta {
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let kind = s(&v["kind"]).unwrap_or_default();
        let uid = match kind.as_str() {
            "exit" | "exec" => v["uid"].as_u64(),
            "oom" => v["victim"]["uid"].as_u64(),
            _ => None,
        }
        .and_then(|u| u32::try_from(u).ok());
        Meta {
            session: s(&v["session"]["id"]),
            claude_session: s(&v["session"]["claude_session_id"]),
            cause: (kind == "exit").then(|| s(&v["cause"])).flatten(),
            kind,
            uid,
        }
    }
}

/// The uid of each session, learnt from its events that carry one, so that its other
/// events (fork, signal, signal_deliver) can be shown to that user. Bounded: at
/// [`SessionUids::MAX`] sessions it starts over (their later events are hidden from
/// non-privileged users until a uid is seen again).
#[derive(Default)]
pub struct SessionUids(HashMap<String, u32>);

impl SessionUids {
    pub const MAX: usize = 4096;

    /// The visibility rule: an event with a uid of its own (`exit.uid`, `exec.uid`,
    /// `oom.victim.uid`) belongs to that uid; any other event of a session belongs to the
    /// uid first seen in that session's events (its root's exec, usually); anything else
    /// (agent_start, agent_stop, the daemon's lost records, alerts, a session whose uid was
    /// not seen) to nobody: only root and the group see it.
    pub fn resolve(&mut self, meta: &mut Meta) {
        match (meta.uid, &meta.session) {
            (Some(uid), Some(session)) if !self.0.contains_key(session) => {
                if self.0.len() >= SessionUids::MAX {
                    self.0.clear();
                }
                self.0.insert(session.clone(), uid);
            }
            (None, Some(session)) => meta.uid = self.0.get(session).copied(),
            _ => {}
        }
    }
}

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// Root or a member of `api.group`: every event.
    All,
    /// Any other user: the events of their own processes.
    Uid(u32),
}

impl Viewer {
    pub fn sees(self, meta: &Meta) -> bool {
        match self {
            Viewer::All => true,
            Viewer::Uid(uid) => meta.uid == Some(uid),
        }
    }
}

/// Where a request starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// Events with a greater `seq`.
    Seq(u64),
    /// Events stamped at or after this instant (`since=10m`: the last ten minutes).
    Time(chrono::DateTime<chrono::Utc>),
}

/// A request's filters: `since`, `kind` (repeatable or comma-separated), `session`
/// (`session.id` or the Claude Code session id), `cause`, `limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub since: Option<Since>,
    pub kinds: Vec<String>,
    pub session: Option<String>,
    pub cause: Option<String>,
    pub limit: Option<usize>,
}

/// At most this many events (`/v1/events`) or reports (`/v1/reports`) in one answer, and
/// the default.
pub const MAX_LIMIT: usize = 10_000;
pub const DEFAULT_LIMIT: usize = 1000;

/// A `limit` parameter (of events or reports): 1 to [`MAX_LIMIT`].
pub fn parse_limit(value: &str) -> Result<usize, String> {
    let n: usize = value
        .parse()
        .map_err(|_| format!("limit: {value:?} is not a number"))?;
    if n == 0 || n > MAX_LIMIT {
        return Err(format!("limit: {n} is out of range (1..={MAX_LIMIT})"));
    }
    Ok(n)
}

impl Filter {
    /// Parses a query string (`since=12&kind=exit,oom&session=...`); an unknown parameter
    /// or a bad value is an error that names it.
    pub fn parse(query: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| format!("{key}: bad escape"))?;
            match key {
                "since" => f.since = Some(parse_since(&value)?),
                "kind" => f.kinds.extend(
                    value
                        .split(',')
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned),
                ),
                "session" => f.session = Some(value),
                "cause" => f.cause = Some(value),
                "limit" => f.limit = Some(parse_limit(&value)?),
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(f)
    }

    /// Whether an event passes the filters other than `since`.
    pub fn matches(&self, meta: &Meta) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&meta.kind))
            && self.session.as_ref().is_none_or(|s| {
                meta.session.as_ref() == Some(s) || meta.claude_session.as_ref() == Some(s)
            })
            && self
                .cause
                .as_ref()
                .is_none_or(|c| meta.cause.as_ref() == Some(c))
    }

    /// Whether an event with this seq and ts is after `since`.
    pub fn after_since(&self, seq: Option<u64>, ts: Option<&str>) -> bool {
        match self.since {
            None => true,
            Some(Since::Seq(s)) => seq.is_some_and(|q| q > s),
            Some(Since::Time(t)) => ts
                .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
                .is_some_and(|ts| ts >= t),
        }
    }
}

/// `12` (a seq) or `30s`, `10m`, `2h`, `1d` (that long ago).
pub fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(seq) = s.parse::<u64>() {
        return Ok(Since::Seq(seq));
    }
    let bad = || format!("since: {s:?} is neither a seq nor a duration such as 10m");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let ago = chrono::Duration::try_seconds(secs).ok_or_else(bad)?;
    Ok(Since::Time(
        chrono::Utc::now().checked_sub_signed(ago).ok_or_else(bad)?,
    ))
}

/// `%XX` escapes and `+` for a space.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query string for a filter (the client's side of [`Filter::parse`]).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.:~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queries() {
        let f =
            Filter::parse("since=12&kind=exit,oom&kind=exec&session=a%3A1&cause=killed&limit=5")
                .unwrap();
        assert_eq!(f.since, Some(Since::Seq(12)));
        assert_eq!(f.kinds, ["exit", "oom", "exec"]);
        assert_eq!(f.session.as_deref(), Some("a:1"));
        assert_eq!(f.cause.as_deref(), Some("killed"));
        assert_eq!(f.limit, Some(5));
        assert!(Filter::parse("sinse=1").unwrap_err().contains("sinse"));
        assert!(Filter::parse("limit=0").is_err());
        assert!(Filter::parse("since=abc").is_err());
        assert!(matches!(
            Filter::parse("since=10m").unwrap().since,
            Some(Since::Time(_))
        ));
        assert_eq!(
            percent_decode(&percent_encode("a b:%&=")).unwrap(),
            "a b:%&="
        );
    }

    #[test]
    fn session_uids_decide_visibility() {
        let mut uids = SessionUids::default();
        let mut exec = Meta {
            kind: "exec".into(),
            session: Some("1:2".into()),
            uid: Some(1000),
            ..Meta::default()
        };
        uids.resolve(&mut exec);
        let mut fork = Meta {
            kind: "fork".into(),
            session: Some("1:2".into()),
            ..Meta::default()
        };
        uids.resolve(&mut fork);
        assert_eq!(fork.uid, Some(1000));
        let mut other = Meta {
            kind: "signal".into(),
            session: Some("9:9".into()),
            ..Meta::default()
        };
        uids.resolve(&mut other);
        assert!(Viewer::Uid(1000).sees(&fork));
        assert!(!Viewer::Uid(1000).sees(&other));
        assert!(!Viewer::Uid(1001).sees(&fork));
        assert!(Viewer::All.sees(&other));
    }
}

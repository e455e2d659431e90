//! `/v1/reports` and `/v1/reports/{id}`: the exit reports of the report directory, read on a
//! blocking thread (never on the event loop's), with the filters of `claude-monitor reports`.
//!
//! **Who sees what.** Root and `api.group` see every report; any other user only the reports
//! whose process (`process.uid`) was theirs. Another user's report is a 404, as one that
//! does not exist, and an id prefix is resolved among the viewer's own reports only, so ids
//! cannot be probed.

use std::io;

use super::filter::{DEFAULT_LIMIT, Viewer, parse_limit, percent_decode};
use crate::report::{ListFilter, Reason, Report, ReportStore, ReportSummary};

/// The filters of `/v1/reports`: `session` (a prefix of `session.id` or of Claude Code's
/// session id), `cause`, `reason`, `limit`.
pub fn parse(query: &str) -> Result<ListFilter, String> {
    let mut f = ListFilter::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| format!("{key}: bad escape"))?;
        match key {
            "session" => f.session = Some(value),
            "cause" => {
                f.cause = Some(
                    clap::ValueEnum::from_str(&value, false)
                        .map_err(|_| format!("cause: {value:?} is not a cause"))?,
                )
            }
            "reason" => {
                f.reason = Some(
                    <Reason as clap::ValueEnum>::from_str(&value, false)
                        .map_err(|_| format!("reason: {value:?} is not a reason"))?,
                )
            }
            "limit" => f.limit = Some(parse_limit(&value)?),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    f.limit = f.limit.or(Some(DEFAULT_LIMIT));
    Ok(f)
}

/// The summaries `viewer` may see that pass `filter`, newest first.
pub fn list(
    store: &ReportStore,
    mut filter: ListFilter,
    viewer: Viewer,
) -> io::Result<Vec<ReportSummary>> {
    if let Viewer::Uid(uid) = viewer {
        filter.uid = Some(uid);
    }
    store.list(&filter)
}

/// One report by id or unique id prefix, among those `viewer` may see (`NotFound` for
/// another user's).
pub fn get(store: &ReportStore, id: &str, viewer: Viewer) -> io::Result<Report> {
    let uid = match viewer {
        Viewer::All => return store.get(id),
        Viewer::Uid(uid) => uid,
    };
    let not_found = || io::Error::new(io::ErrorKind::NotFound, format!("no report {id}"));
    match store.get(id) {
        Ok(r) if r.process.uid == uid => return Ok(r),
        Ok(_) => return Err(not_found()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        // Ambiguous among all: perhaps not among the viewer's own.
        Err(_) => {}
    }
    let own = store.list(&ListFilter {
        uid: Some(uid),
        ..ListFilter::default()
    })?;
    let found: Vec<&ReportSummary> = own.iter().filter(|s| s.id.starts_with(id)).collect();
    match found.as_slice() {
        [] => Err(not_found()),
        [one] => store.get(&one.id),
        many => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{id} is ambiguous: it starts {} reports", many.len()),
        )),
    }
}

/// `/v1/reports` (`id`: `None`) or `/v1/reports/{id}`, read on a blocking thread.
pub(super) async fn serve(
    store: &ReportStore,
    viewer: Viewer,
    query: &str,
    id: Option<&str>,
) -> hyper::Response<super::server::ApiBody> {
    use super::server::{error, json};
    use hyper::StatusCode;
    let store = store.clone();
    let dir = store.dir().display().to_string();
    let answer = match id {
        None => {
            let filter = match parse(query) {
                Ok(f) => f,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            };
            tokio::task::spawn_blocking(move || {
                list(&store, filter, viewer)
                    .map(|reports| serde_json::json!({ "reports": reports }))
            })
            .await
        }
        Some(id) => {
            if !query.is_empty() {
                return error(StatusCode::BAD_REQUEST, "no parameter here");
            }
            let Some(id) = percent_decode(id) else {
                return error(StatusCode::BAD_REQUEST, "not a report id");
            };
            tokio::task::spawn_blocking(move || {
                get(&store, &id, viewer)
                    .and_then(|r| serde_json::to_value(r).map_err(io::Error::other))
            })
            .await
        }
    };
    match answer {
        Ok(Ok(value)) => json(StatusCode::OK, &value),
        Ok(Err(e)) => {
            let status = match e.kind() {
                io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
                io::ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            // The report directory's path is the daemon's business.
            let message = e.to_string().replace(&format!(" in {dir}"), "");
            error(status, &message)
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the report reader failed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CauseKind;

    #[test]
    fn parses_the_filters_of_the_cli() {
        let f = parse("session=12%3A3&cause=oom_killed&reason=oom_kill&limit=3").unwrap();
        assert_eq!(f.session.as_deref(), Some("12:3"));
        assert_eq!(f.cause, Some(CauseKind::OomKilled));
        assert_eq!(f.reason, Some(Reason::OomKill));
        assert_eq!(f.limit, Some(3));
        assert_eq!(parse("").unwrap().limit, Some(DEFAULT_LIMIT));
        assert!(parse("cause=nope").unwrap_err().contains("cause"));
        assert!(parse("reason=nope").unwrap_err().contains("reason"));
        assert!(parse("limit=0").is_err());
        assert!(parse("kind=exit").unwrap_err().contains("kind"));
    }

    /// A report file with only what a report must hold.
    fn write(dir: &std::path::Path, id: &str, died: &str, uid: u32) {
        let report = serde_json::json!({
            "id": id, "created": died, "reason": "oom_kill", "summary": "killed",
            "process": {"pid": 7, "tid": 7, "comm": "x", "ppid": 1, "uid": uid,
                        "ended": died, "duration_ms": 1.0, "core_dumped": false},
            "cause": "oom_killed", "memcg": {"levels": []}, "last_samples": [],
            "alive": [], "complete": true, "lost_nearby": 0, "event": {}
        });
        std::fs::write(dir.join(format!("{id}.json")), report.to_string()).unwrap();
    }

    #[test]
    fn a_user_sees_and_resolves_only_their_own_reports() {
        let t = crate::testutil::TempDir::new("api-reports");
        let store = ReportStore::new(t.path());
        write(t.path(), "a-1", "2026-12-03T10:00:00Z", 1000);
        write(t.path(), "a-2", "2026-12-03T11:00:00Z", 0);
        let ids = |v: Viewer| -> Vec<String> {
            list(&store, parse("").unwrap(), v)
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(ids(Viewer::All), ["a-2", "a-1"]);
        assert_eq!(ids(Viewer::Uid(1000)), ["a-1"]);
        assert!(ids(Viewer::Uid(1001)).is_empty());
        let user = Viewer::Uid(1000);
        assert_eq!(get(&store, "a-1", user).unwrap().id, "a-1");
        // Ambiguous among all, unique among theirs.
        assert_eq!(get(&store, "a-", user).unwrap().id, "a-1");
        assert_eq!(
            get(&store, "a-", Viewer::All).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        for id in ["a-2", "a-", "b"] {
            assert_eq!(
                get(&store, id, Viewer::Uid(1001)).unwrap_err().kind(),
                io::ErrorKind::NotFound,
                "{id}"
            );
        }
        assert_eq!(
            get(&store, "a-2", user).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "another's is not found"
        );
        assert_eq!(get(&store, "a-2", Viewer::All).unwrap().id, "a-2");
    }
}

//! The report directory: writing reports (JSON and text twins), listing and reading them back.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Reason, build::*, model::*, text::*};
use crate::{event::CauseKind, output::rotate};

/// One line of `claude-monitor reports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSummary {
    pub id: String,
    /// Time of the exit, RFC 3339.
    pub died: String,
    pub created: String,
    pub reason: Reason,
    pub cause: CauseKind,
    pub pid: u32,
    pub comm: String,
    pub exit_code: Option<u8>,
    pub session_id: Option<String>,
    pub claude_session_id: Option<String>,
    pub summary: String,
}

/// Which reports [`ReportStore::list`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// A prefix of the session's id (`pid:start`) or of Claude Code's session id.
    pub session: Option<String>,
    /// The event's cause (`oom_killed`), the report's reason (`oom_kill`) or the short form
    /// Only reports with this cause.
    pub cause: Option<CauseKind>,
    /// Only reports written for this reason.
    pub reason: Option<Reason>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
    /// Only reports whose process had this uid (`process.uid`): what a user who is not
    /// root sees through the API.
    pub uid: Option<u32>,
}

impl ListFilter {
    fn matches(&self, s: &ReportSummary) -> bool {
        let session_ok = self.session.as_deref().is_none_or(|want| {
            s.session_id
                .as_deref()
                .is_some_and(|id| id.starts_with(want))
                || s.claude_session_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(want))
        });
        let cause_ok = self.cause.is_none_or(|want| want == s.cause);
        let reason_ok = self.reason.is_none_or(|want| want == s.reason);
        session_ok && cause_ok && reason_ok
    }
}

impl From<&Report> for ReportSummary {
    fn from(r: &Report) -> ReportSummary {
        ReportSummary {
            id: r.id.clone(),
            died: r.process.ended.clone(),
            created: r.created.clone(),
            reason: r.reason,
            cause: r.cause,
            pid: r.process.pid,
            comm: r.process.comm.clone(),
            exit_code: r.process.status.exit_code,
            session_id: r.session.as_ref().map(|s| s.id.clone()),
            claude_session_id: r.session.as_ref().and_then(|s| s.claude_session_id.clone()),
            summary: r.summary.clone(),
        }
    }
}

/// The report directory, `<data_dir>/reports`: `<id>.json` and its `<id>.txt` twin.
#[derive(Clone, Debug)]
pub struct ReportStore {
    dir: PathBuf,
}

pub(super) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl ReportStore {
    pub fn new(dir: impl Into<PathBuf>) -> ReportStore {
        ReportStore { dir: dir.into() }
    }

    /// `<data_dir>/reports`.
    pub fn in_data_dir(data_dir: &Path) -> ReportStore {
        ReportStore::new(data_dir.join("reports"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `<id>.txt` then `<id>.json`, each atomically (temp file and rename), creating
    /// the directory when needed. An id already taken gets a `-2`, `-3`, ... suffix (the
    /// written report carries the id it was written under). The JSON goes last so that a
    /// listed report always has its text. Returns the JSON file's path.
    pub fn write(&self, report: &Report) -> io::Result<PathBuf> {
        rotate::private_dir(&self.dir)?;
        let base = sanitize(&report.id);
        let id = (1..=10_000u32)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|id| {
                !self.dir.join(format!("{id}.json")).exists()
                    && !self.dir.join(format!("{id}.txt")).exists()
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("no free report id for {base} in {}", self.dir.display()),
                )
            })?;
        let mut report = report.clone();
        report.id = id;
        let json = serde_json::to_vec_pretty(&report).map_err(io::Error::other)?;
        let text = render_text(&report);
        let txt_path = self.dir.join(format!("{}.txt", report.id));
        let json_path = self.dir.join(format!("{}.json", report.id));
        rotate::write_atomic(&txt_path, text.as_bytes(), rotate::PRIVATE_FILE)?;
        rotate::write_atomic(&json_path, &json, rotate::PRIVATE_FILE)?;
        Ok(json_path)
    }

    /// The stored reports, oldest first (ids begin with the time of the exit), with the bytes
    /// each takes (its `.json` and `.txt`).
    pub fn sizes(&self) -> io::Result<Vec<(String, u64)>> {
        let mut ids = self.ids()?;
        ids.sort();
        Ok(ids
            .into_iter()
            .map(|id| {
                let size = self.size_of(&id);
                (id, size)
            })
            .collect())
    }

    /// Bytes the report `id` takes on disk (0 for files that are gone).
    pub fn size_of(&self, id: &str) -> u64 {
        ["json", "txt"]
            .iter()
            .filter_map(|ext| fs::symlink_metadata(self.dir.join(format!("{id}.{ext}"))).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Removes the report `id` (both files; missing ones are fine).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        for ext in ["json", "txt"] {
            match fs::remove_file(self.dir.join(format!("{id}.{ext}"))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The ids of the stored reports (stems of `*.json`, temp files excluded); empty when the
    /// directory does not exist yet.
    fn ids(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading report directory {}: {e}", self.dir.display()),
                ));
            }
        };
        let mut ids = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            if let Some(stem) = name.strip_suffix(".json") {
                ids.push(stem.to_owned());
            }
        }
        Ok(ids)
    }

    fn read(&self, id: &str) -> io::Result<Report> {
        let path = self.dir.join(format!("{id}.json"));
        let bytes = fs::read(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
        let mut report: Report = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a readable report: {e}", path.display()),
            )
        })?;
        // The file name is what `get` resolves; keep the two in agreement.
        report.id = id.to_owned();
        Ok(report)
    }

    /// The stored reports that pass `filter`, newest exit first. Unreadable or corrupt files
    /// are skipped with a warning.
    pub fn list(&self, filter: &ListFilter) -> io::Result<Vec<ReportSummary>> {
        let mut out: Vec<ReportSummary> = self
            .ids()?
            .into_iter()
            .filter_map(|id| match self.read(&id) {
                Ok(r) if filter.uid.is_some_and(|u| u != r.process.uid) => None,
                Ok(r) => Some(ReportSummary::from(&r)),
                Err(e) => {
                    crate::diag::report_skipped(&id, e);
                    None
                }
            })
            .filter(|s| filter.matches(s))
            .collect();
        out.sort_by(|a, b| b.died.cmp(&a.died).then_with(|| b.id.cmp(&a.id)));
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// One report by id or unique id prefix.
    pub fn get(&self, id: &str) -> io::Result<Report> {
        if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
            return Err(invalid(format!("{id:?} is not a report id")));
        }
        if self.dir.join(format!("{id}.json")).is_file() {
            return self.read(id);
        }
        let mut found: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|i| i.starts_with(id))
            .collect();
        found.sort();
        match found.as_slice() {
            [] => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no report {id} in {}", self.dir.display()),
            )),
            [one] => self.read(one),
            many => Err(invalid(format!(
                "{id} is ambiguous: it starts {} reports ({}{})",
                many.len(),
                many.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                if many.len() > 5 { ", ..." } else { "" }
            ))),
        }
    }

    /// The newest readable report, `None` when there is none.
    pub fn last(&self) -> io::Result<Option<Report>> {
        let newest = self.list(&ListFilter {
            limit: Some(1),
            ..ListFilter::default()
        })?;
        match newest.first() {
            Some(s) => self.read(&s.id).map(Some),
            None => Ok(None),
        }
    }
}

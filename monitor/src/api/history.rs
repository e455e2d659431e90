//! The history: events read back from the event log files (`events.jsonl.N` ...
//! `events.jsonl.1`, `events.jsonl`, oldest first), filtered, bounded.
//!
//! The files are opened newest first and the current file's inode checked again at the
//! end: a rotation while they were being opened (which renames every file one place up)
//! would otherwise skip one, so the opening is then tried again.

use std::{
    collections::VecDeque,
    fs::File,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use serde_json::Value;

use super::{
    bus::Item,
    filter::{Filter, Meta, SessionUids, Viewer},
    seq::rotated,
};

/// Where the log is and how many rotated files it keeps.
#[derive(Clone, Debug)]
pub struct LogFiles {
    pub path: PathBuf,
    pub keep: u32,
}

/// The longest line read back; a longer one (not written by the daemon) is skipped.
const MAX_LINE: usize = 1 << 20;

fn inode(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl LogFiles {
    /// The files, oldest first, opened.
    fn open(&self) -> Vec<File> {
        for _ in 0..5 {
            let mut seen = Vec::new();
            let mut files = Vec::new();
            let current = inode(&self.path);
            for n in 0..=self.keep {
                let path = if n == 0 {
                    self.path.clone()
                } else {
                    rotated(&self.path, n)
                };
                let Ok(f) = File::open(&path) else { continue };
                let Ok(m) = f.metadata() else { continue };
                // A file renamed up while the list was opened is seen twice: once.
                if seen.contains(&(m.dev(), m.ino())) {
                    continue;
                }
                seen.push((m.dev(), m.ino()));
                files.push(f);
            }
            if inode(&self.path) == current {
                files.reverse();
                return files;
            }
        }
        Vec::new()
    }

    /// The events after `filter.since` that pass `filter` and that `viewer` may see, up to
    /// `before` (exclusive; the first seq of the live queue), the newest `limit` of them.
    pub fn read(
        &self,
        filter: &Filter,
        viewer: Viewer,
        before: Option<u64>,
        limit: usize,
    ) -> Vec<Item> {
        let mut out = VecDeque::new();
        let mut uids = SessionUids::default();
        for f in self.open() {
            let mut r = BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r
                    .by_ref()
                    .take(MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.last() != Some(&b'\n') {
                    // Too long (skip to the end of that line) or torn at the end.
                    if line.len() > MAX_LINE {
                        let mut rest = Vec::new();
                        let _ = r.read_until(b'\n', &mut rest);
                    }
                    continue;
                }
                line.pop();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let seq = v["seq"].as_u64();
                let mut meta = Meta::of_json(&v);
                uids.resolve(&mut meta);
                if before.is_some_and(|b| seq.is_none_or(|s| s >= b)) {
                    continue;
                }
                if !filter.after_since(seq, v["ts"].as_str())
                    || !filter.matches(&meta)
                    || !viewer.sees(&meta)
                {
                    continue;
                }
                if out.len() == limit {
                    out.pop_front();
                }
                out.push_back(Item {
                    seq,
                    kind: meta.kind,
                    line: Bytes::copy_from_slice(&line),
                });
            }
        }
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn reads_rotated_files_in_order_with_filters() {
        let t = TempDir::new("history");
        let path = t.path().join("events.jsonl");
        let line = |seq: u64, kind: &str, uid: u32| {
            format!(
                r#"{{"v":1,"seq":{seq},"kind":"{kind}","ts":"2026-12-03T07:00:00Z","pid":1,"comm":"x","uid":{uid},"cause":"exited","session":{{"id":"1:1","claude_session_id":null}}}}"#
            )
        };
        std::fs::write(
            rotated(&path, 2),
            format!("{}\n{}\n", line(1, "exec", 1000), line(2, "fork", 0)),
        )
        .unwrap();
        std::fs::write(
            rotated(&path, 1),
            format!("{}\nnot json\n", line(3, "exit", 1000)),
        )
        .unwrap();
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n{{\"v\":1,\"seq\":6",
                line(4, "exit", 1000),
                line(5, "fork", 0)
            ),
        )
        .unwrap();
        let files = LogFiles { path, keep: 3 };
        let seqs = |items: Vec<Item>| items.iter().map(|i| i.seq.unwrap()).collect::<Vec<_>>();
        let all = Filter::default();
        assert_eq!(
            seqs(files.read(&all, Viewer::All, None, 100)),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(seqs(files.read(&all, Viewer::All, None, 2)), [4, 5]);
        assert_eq!(seqs(files.read(&all, Viewer::All, Some(4), 100)), [1, 2, 3]);
        let f = Filter::parse("since=2&kind=exit").unwrap();
        assert_eq!(seqs(files.read(&f, Viewer::All, None, 100)), [3, 4]);
        // Forks carry no uid: the session's (learnt from its exec) decides.
        assert_eq!(
            seqs(files.read(&all, Viewer::Uid(1000), None, 100)),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            seqs(files.read(&all, Viewer::Uid(1001), None, 100)),
            Vec::<u64>::new()
        );
    }
}

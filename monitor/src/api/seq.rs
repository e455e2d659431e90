//! Sequence numbers: 1, 2, 3, ... over every event the daemon writes, continued across
//! restarts by reading the last one back from the event log.

use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::event::{Event, SCHEMA_VERSION};

/// How much of the end of a log file is read to find the last `seq`: many times the
/// longest line the daemon writes (an exec with its argv is a few KiB).
const TAIL_BYTES: u64 = 256 * 1024;

/// The last `seq` written to the event log at `path` (`events.jsonl`), or to its rotated
/// `.1` when the current file has none (just rotated, or empty); 0 when neither has one
/// (a first start, or a log written by a version before `seq`).
pub fn last_seq(path: &Path) -> u64 {
    tail_seq(path)
        .or_else(|| tail_seq(&rotated(path, 1)))
        .unwrap_or(0)
}

/// `<path>.<n>`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: Option<u64>,
}

/// The `seq` of a JSON line, if it has one.
pub fn line_seq(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<SeqOnly>(line).ok()?.seq
}

/// The last `seq` in the last [`TAIL_BYTES`] of the file.
fn tail_seq(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.take(TAIL_BYTES).read_to_end(&mut buf).ok()?;
    let mut lines = buf.split(|b| *b == b'\n').rev();
    // The first piece of a tail that starts mid-file is part of a line: skipped by the
    // parse failing (or a torn last line after a crash).
    lines.find_map(|line| (!line.is_empty()).then(|| line_seq(line)).flatten())
}

/// The event as one JSON line with its `seq` right after `v`:
/// `{"v":1,"seq":42,"kind":...}`.
pub fn stamp(seq: u64, event: &Event) -> Vec<u8> {
    stamp_json(seq, event)
}

/// As [`stamp`], for any record whose first field is `v` (events, alerts).
pub fn stamp_json(seq: u64, value: &impl Serialize) -> Vec<u8> {
    let line = serde_json::to_vec(value).unwrap_or_default();
    let prefix = format!("{{\"v\":{SCHEMA_VERSION},");
    match line.strip_prefix(prefix.as_bytes()) {
        Some(rest) => {
            let mut out = Vec::with_capacity(line.len() + 24);
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(format!("\"seq\":{seq},").as_bytes());
            out.extend_from_slice(rest);
            out
        }
        // Not a record of the stream (cannot happen for Event: `v` is its first field).
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::Body, testutil::TempDir};

    fn lost() -> Event {
        Event::new(
            "2026-12-03T07:00:00Z".into(),
            1,
            "claude-monitor".into(),
            Body::Lost(crate::event::Lost {
                count: 3,
                reason: crate::event::LostReason::RingBufferFull,
            }),
        )
    }

    #[test]
    fn stamped_after_v() {
        let line = String::from_utf8(stamp(42, &lost())).unwrap();
        assert!(
            line.starts_with(r#"{"v":1,"seq":42,"kind":"lost","#),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(line_seq(line.as_bytes()), Some(42));
    }

    #[test]
    fn last_seq_from_the_tail_or_the_rotated_file() {
        let t = TempDir::new("seq-tail");
        let path = t.path().join("events.jsonl");
        assert_eq!(last_seq(&path), 0, "no file");
        let mut text = String::new();
        // A long first part so the tail starts mid-line.
        for i in 1..=3000u64 {
            text.push_str(&String::from_utf8(stamp(i, &lost())).unwrap());
            text.push('\n');
            text.push_str("{\"v\":1,\"kind\":\"alert\",\"x\":\"");
            text.push_str(&"y".repeat(100));
            text.push_str("\"}\n");
        }
        // A torn last line after a crash.
        text.push_str("{\"v\":1,\"seq\":30");
        std::fs::write(rotated(&path, 1), &text).unwrap();
        std::fs::write(&path, "").unwrap();
        assert_eq!(last_seq(&path), 3000, "from .1 when the current is empty");
        std::fs::write(
            &path,
            String::from_utf8(stamp(3001, &lost())).unwrap() + "\n",
        )
        .unwrap();
        assert_eq!(last_seq(&path), 3001);
    }
}

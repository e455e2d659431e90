//! `--resources FILE`: the tree's RSS, VSZ and CPU over time, one sample every
//! `--sample-interval` (2 s by default, as the seed's wrapper), as CSV or JSON Lines (by the
//! file's extension); the peaks go into the summary whether or not a file is written.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::{
    daemon::resources::{SessionRef, SessionSample, SessionSampler},
    pipeline::redact::Redactor,
    report::ResourcePeaks,
};

/// The file's format, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    JsonLines,
}

/// The CSV header (and the JSON Lines keys, in the same order).
pub const CSV_HEADER: &str =
    "ts,elapsed_s,processes,threads,rss_kb,vsz_kb,cpu_percent,top_pid,top_comm,top_rss_kb";

impl FileFormat {
    /// `.csv` is CSV; `.jsonl`, `.ndjson` and `.json` are JSON Lines; anything else is
    /// refused with what is accepted.
    pub fn of(path: &Path) -> Result<FileFormat, String> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Ok(FileFormat::Csv),
            Some("jsonl" | "ndjson" | "json") => Ok(FileFormat::JsonLines),
            _ => Err(format!(
                "--resources {}: the file's extension says its format: .csv or .jsonl",
                path.display()
            )),
        }
    }
}

/// The sampler, the file when one was asked for, and the peaks.
pub struct Resources {
    sampler: SessionSampler,
    file: Option<(BufWriter<File>, FileFormat, PathBuf)>,
    /// A write failed: said once, and the file is written no more.
    failed: bool,
    started: Instant,
    peaks: Option<ResourcePeaks>,
    last_top: Option<crate::report::TopProcess>,
}

impl Resources {
    /// Creates the file (0600 whatever the umask, not through a symlink) before the command
    /// starts, so that a path that cannot be written stops `run` before anything runs.
    pub fn open(path: Option<&Path>, redactor: Redactor) -> Result<Resources> {
        let file = match path {
            Some(p) => {
                let format = FileFormat::of(p).map_err(anyhow::Error::msg)?;
                use std::os::unix::fs::OpenOptionsExt as _;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
                let mut w = BufWriter::new(f);
                if format == FileFormat::Csv {
                    writeln!(w, "{CSV_HEADER}")
                        .with_context(|| format!("cannot write {}", p.display()))?;
                }
                Some((w, format, p.to_owned()))
            }
            None => None,
        };
        let mut sampler = SessionSampler::new(crate::host::proc::PROC);
        sampler.set_redactor(redactor);
        Ok(Resources {
            sampler,
            file,
            failed: false,
            started: Instant::now(),
            peaks: None,
            last_top: None,
        })
    }

    /// Samples `pids` (the tree's live processes), writes the line, updates the peaks.
    pub fn sample(&mut self, root: u32, pids: &[u32]) -> SessionSample {
        let s = self.sampler.sample(
            SessionRef {
                id: "run".to_owned(),
                agent: "run".to_owned(),
                root_pid: root,
                cwd: None,
                claude_session_id: None,
            },
            pids,
        );
        let peaks = self.peaks.get_or_insert(ResourcePeaks {
            samples: 0,
            peak_rss_kb: 0,
            peak_vsz_kb: 0,
            peak_cpu_percent: None,
            peak_processes: 0,
        });
        peaks.samples += 1;
        peaks.peak_rss_kb = peaks.peak_rss_kb.max(s.rss_kb);
        peaks.peak_vsz_kb = peaks.peak_vsz_kb.max(s.vsz_kb);
        peaks.peak_processes = peaks.peak_processes.max(s.processes);
        if let Some(c) = s.cpu_percent {
            peaks.peak_cpu_percent = Some(peaks.peak_cpu_percent.map_or(c, |p: f64| p.max(c)));
        }
        self.last_top.clone_from(&s.top);
        let elapsed = (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        if let Some((w, format, path)) = &mut self.file
            && !self.failed
        {
            let line = match format {
                FileFormat::Csv => csv_line(&s, elapsed),
                FileFormat::JsonLines => json_line(&s, elapsed),
            };
            if let Err(e) = writeln!(w, "{line}") {
                eprintln!(
                    "claude-monitor: cannot write {} ({e}): no more samples go there",
                    path.display()
                );
                self.failed = true;
            }
        }
        s
    }

    /// The biggest process of the last sample.
    pub fn last_top(&self) -> Option<&crate::report::TopProcess> {
        self.last_top.as_ref()
    }

    pub fn peaks(&self) -> Option<ResourcePeaks> {
        self.peaks.clone()
    }

    /// Flushes the file.
    pub fn finish(&mut self) -> Result<()> {
        if let Some((w, _, path)) = &mut self.file
            && !self.failed
        {
            w.flush()
                .and_then(|()| w.get_ref().sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_line(s: &SessionSample, elapsed: f64) -> String {
    let top = s.top.as_ref();
    format!(
        "{},{elapsed},{},{},{},{},{},{},{},{}",
        s.ts,
        s.processes,
        s.threads,
        s.rss_kb,
        s.vsz_kb,
        s.cpu_percent.map(|c| c.to_string()).unwrap_or_default(),
        top.map(|t| t.pid.to_string()).unwrap_or_default(),
        top.map(|t| csv_field(&t.comm)).unwrap_or_default(),
        top.map(|t| t.rss_kb.to_string()).unwrap_or_default(),
    )
}

fn json_line(s: &SessionSample, elapsed: f64) -> String {
    json!({
        "ts": s.ts,
        "elapsed_s": elapsed,
        "processes": s.processes,
        "threads": s.threads,
        "rss_kb": s.rss_kb,
        "vsz_kb": s.vsz_kb,
        "cpu_percent": s.cpu_percent,
        "top": s.top,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(FileFormat::of(Path::new("a.csv")), Ok(FileFormat::Csv));
        assert_eq!(
            FileFormat::of(Path::new("/x/a.jsonl")),
            Ok(FileFormat::JsonLines)
        );
        let e = FileFormat::of(Path::new("a.txt")).unwrap_err();
        assert!(e.contains(".csv or .jsonl"), "{e}");
        assert!(FileFormat::of(Path::new("noext")).is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("cc1"), "cc1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    /// Our own process sampled into each format: the file is private, has the header (CSV)
    /// and one parseable line per sample; the peaks follow.
    #[test]
    fn samples_are_written_and_peaks_kept() {
        let dir = crate::testutil::TempDir::new("run-res");
        let me = std::process::id();
        for name in ["r.csv", "r.jsonl"] {
            let path = dir.path().join(name);
            let mut r = Resources::open(Some(&path), Redactor::default()).expect("open");
            let a = r.sample(me, &[me]);
            r.sample(me, &[me]);
            r.finish().expect("flush");
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let text = std::fs::read_to_string(&path).expect("read");
            let lines: Vec<&str> = text.lines().collect();
            if name.ends_with("csv") {
                assert_eq!(lines.len(), 3, "{text}");
                assert_eq!(lines[0], CSV_HEADER);
                let cols: Vec<&str> = lines[1].split(',').collect();
                assert_eq!(cols.len(), 10, "{}", lines[1]);
                assert_eq!(cols[2], "1");
                assert!(cols[4].parse::<u64>().expect("rss") > 0);
                assert!(cols[5].parse::<u64>().expect("vsz") >= a.rss_kb);
            } else {
                assert_eq!(lines.len(), 2, "{text}");
                let v: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
                assert_eq!(v["processes"], 1);
                assert_eq!(v["top"]["pid"], me);
            }
            let peaks = r.peaks().expect("peaks");
            assert_eq!(peaks.samples, 2);
            assert!(peaks.peak_rss_kb >= a.rss_kb && peaks.peak_vsz_kb >= a.vsz_kb);
            assert_eq!(peaks.peak_processes, 1);
        }
    }

    #[test]
    fn a_symlink_is_not_followed() {
        let dir = crate::testutil::TempDir::new("run-res-link");
        let target = dir.path().join("target.csv");
        std::fs::write(&target, "keep").expect("write");
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let e = Resources::open(Some(&link), Redactor::default())
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("cannot create"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
    }
}

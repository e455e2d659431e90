//! The daemon's log files: rotated, written line by line, failures said once and retried.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{diag, output::rotate::RotatingFile};

/// A log file that reports its failures once and keeps trying.
pub(super) struct Log {
    pub(super) name: &'static str,
    pub(super) file: Option<RotatingFile>,
    pub(super) path: PathBuf,
    pub(super) max_bytes: u64,
    pub(super) keep: u32,
    pub(super) failing: bool,
    pub(super) errors: u64,
}

impl Log {
    pub(super) fn new(dir: &Path, name: &'static str, max_bytes: u64, keep: u32) -> Log {
        Log {
            name,
            file: None,
            path: dir.join(name),
            max_bytes,
            keep,
            failing: false,
            errors: 0,
        }
    }

    pub(super) fn write(&mut self, line: &[u8]) {
        let result = (|| {
            if self.file.is_none() {
                self.file = Some(RotatingFile::open(
                    self.path.clone(),
                    self.max_bytes,
                    self.keep,
                )?);
            }
            match self.file.as_mut() {
                Some(f) => f.write_line(line),
                None => Ok(()),
            }
        })();
        match result {
            Ok(()) => {
                if self.failing {
                    diag::log_writable_again(&self.path, self.errors);
                    self.failing = false;
                }
            }
            Err(e) => {
                self.errors += 1;
                self.file = None;
                if !self.failing {
                    diag::log_write_failed(&self.path, e);
                    self.failing = true;
                }
            }
        }
    }

    pub(super) fn write_json(&mut self, value: &impl Serialize) {
        match serde_json::to_vec(value) {
            Ok(line) => self.write(&line),
            Err(e) => diag::unserializable(self.name, e),
        }
    }

    pub(super) fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }
}

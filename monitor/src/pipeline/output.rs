//! What the engine writes events to: an [`Output`] (the `trace` command's sink, the
//! daemon's logs and reports), and how writing can fail.

use std::io;

use crate::{event::Event, pipeline::attribution::Attributor};

/// Where events go.
pub trait Output {
    /// One event, already attributed and enriched. `attributor` gives access to the
    /// process table (the daemon's reports list a session's live processes).
    fn write(&mut self, event: &Event, attributor: &Attributor) -> Result<(), OutputError>;
    fn flush(&mut self) -> Result<(), OutputError>;
    /// Every loss up to now has been written as a `lost` record (the engine's counter
    /// check): what waited to know whether records were lost around it can go out (the
    /// daemon's exit reports).
    fn losses_told(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (`| head`): end quietly.
    #[error("output closed")]
    Closed,
    #[error("cannot write events: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> OutputError {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Io(e)
        }
    }
}

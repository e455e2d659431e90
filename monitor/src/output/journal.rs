//! journald's native protocol: one datagram per entry on `/run/systemd/journal/socket`,
//! each field `NAME=value\n`, or, when the value holds a newline, `NAME\n` followed by the
//! value's length as a little-endian u64, the value and `\n` (systemd's
//! "Native Journal Protocol"). No library: the protocol is this small, and a socket send is
//! all the daemon does on its loop (non-blocking: a journald that does not keep up costs a
//! counted drop, never a wait).
//!
//! Field names are checked here (upper-case letters, digits and `_`, not starting with `_`
//! or a digit, at most 64 bytes: journald drops a whole entry with a bad name); values are
//! bounded by [`MAX_VALUE_BYTES`] and cut on a character boundary.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
};

/// The longest value sent; longer ones are cut (an entry stays well under the datagram
/// limit, so no memfd is ever needed).
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// A field name journald accepts.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && !b[0].is_ascii_digit()
        && b[0] != b'_'
        && b.iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// The datagram of one entry. Fields with an invalid name are left out (and named in the
/// error of a debug build's assertion: they are the agent's own constants).
pub fn encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        debug_assert!(valid_name(name), "journal field name {name:?}");
        if !valid_name(name) {
            continue;
        }
        let value = cut(value, MAX_VALUE_BYTES);
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A sender of entries to journald.
#[derive(Debug)]
pub struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
    /// Entries journald did not take (not listening, its queue full, an error).
    pub dropped: u64,
    /// The last error, for the first report of it.
    pub last_error: Option<io::ErrorKind>,
}

impl Journal {
    /// An unbound, non-blocking datagram socket sending to `path` (journald's is
    /// `/run/systemd/journal/socket`, the default of `export.journald.socket`).
    pub fn new(path: impl AsRef<Path>) -> io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Journal {
            socket,
            path: path.as_ref().to_owned(),
            dropped: 0,
            last_error: None,
        })
    }

    /// Sends one entry; never waits. Whether journald took it (a failure is counted in
    /// `dropped`; the caller says the first one).
    pub fn send(&mut self, fields: &[(&str, &str)]) -> Result<(), io::Error> {
        match self.socket.send_to(&encode(fields), &self.path) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.dropped += 1;
                self.last_error = Some(e.kind());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_encoded_as_the_native_protocol_says() {
        let bytes = encode(&[("MESSAGE", "one line"), ("CM_TEXT", "two\nlines")]);
        let mut want = b"MESSAGE=one line\nCM_TEXT\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(bytes, want);
    }

    #[test]
    fn names_are_checked_and_values_bounded() {
        for good in ["MESSAGE", "MESSAGE_ID", "CM_EXIT_CODE", "A1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "_PID", "1A", "message", "CM-X", &"A".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        let long = "é".repeat(MAX_VALUE_BYTES);
        let bytes = encode(&[("M", &long)]);
        assert!(bytes.len() <= MAX_VALUE_BYTES + 4, "{}", bytes.len());
        assert!(
            std::str::from_utf8(&bytes[2..bytes.len() - 1]).is_ok(),
            "cut inside a char"
        );
    }

    /// A journald that is not there costs a counted drop, not an error that stops anything.
    #[test]
    fn a_missing_journald_is_a_counted_drop() {
        let dir = crate::testutil::TempDir::new("journal-missing");
        let mut j = Journal::new(dir.0.join("socket")).expect("socket");
        assert!(j.send(&[("MESSAGE", "x")]).is_err());
        assert_eq!(j.dropped, 1);
        // A listening socket gets the datagram as encoded.
        let path = dir.0.join("listening");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let mut j = Journal::new(&path).expect("socket");
        j.send(&[("MESSAGE", "hello"), ("CM_N", "1")])
            .expect("sent");
        let mut buf = [0; 256];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"MESSAGE=hello\nCM_N=1\n");
        assert_eq!(j.dropped, 0);
    }
}

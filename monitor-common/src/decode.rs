//! Userspace decoding of ring-buffer records: length and kind are checked before any read.

extern crate alloc;

use alloc::{string::String, vec::Vec};
use core::mem::size_of;

use crate::{
    ARGS_LEN, EXEC_FLAG_ARGS, Exec, Exit, Fork, Header, Kind, Oom, Signal, SignalDeliver,
    WIRE_VERSION,
};

/// A decoded record, copied out of the ring buffer.
#[derive(Clone, Copy, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a record is decoded, handled and dropped one at a time; boxing the exec \
              variant would allocate for every exec"
)]
pub enum Record {
    Exit(Exit),
    Signal(Signal),
    Oom(Oom),
    Fork(Fork),
    Exec(Exec),
    SignalDeliver(SignalDeliver),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {needed}-byte header")]
    ShortHeader { got: usize, needed: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record version {got} does not match this agent's {expected}")]
    Version { got: u16, expected: u16 },
    #[error("{kind:?} record has {got} bytes, expected {expected}")]
    Length {
        kind: Kind,
        got: usize,
        expected: usize,
    },
}

/// Reads a `T` from the start of `bytes` after checking its exact length.
fn read<T: Copy>(bytes: &[u8], kind: Kind) -> Result<T, DecodeError> {
    if bytes.len() != size_of::<T>() {
        return Err(DecodeError::Length {
            kind,
            got: bytes.len(),
            expected: size_of::<T>(),
        });
    }
    // SAFETY: the length was checked above; every T used here is a #[repr(C)] struct of
    // integers and byte arrays for which any bit pattern is valid; read_unaligned copes with
    // any alignment of the ring-buffer slice.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() < size_of::<Header>() {
        return Err(DecodeError::ShortHeader {
            got: bytes.len(),
            needed: size_of::<Header>(),
        });
    }
    let kind_raw = u16::from_ne_bytes([bytes[0], bytes[1]]);
    let version = u16::from_ne_bytes([bytes[2], bytes[3]]);
    let kind = Kind::from_u16(kind_raw).ok_or(DecodeError::UnknownKind(kind_raw))?;
    if version != WIRE_VERSION {
        return Err(DecodeError::Version {
            got: version,
            expected: WIRE_VERSION,
        });
    }
    Ok(match kind {
        Kind::Exit => Record::Exit(read(bytes, kind)?),
        Kind::Signal => Record::Signal(read(bytes, kind)?),
        Kind::Oom => Record::Oom(read(bytes, kind)?),
        Kind::Fork => Record::Fork(read(bytes, kind)?),
        Kind::Exec => Record::Exec(read(bytes, kind)?),
        Kind::SignalDeliver => Record::SignalDeliver(read(bytes, kind)?),
    })
}

/// The start of an exec'd program's argv as the kernel captured it (`Exec::args`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecArgv {
    /// The arguments, bytes that are not valid UTF-8 replaced by U+FFFD. Empty arguments are
    /// kept: at exec nothing has rewritten the area yet, so every NUL ends one argument.
    pub argv: Vec<String>,
    /// The area was longer than [`ARGS_LEN`]: the last element of `argv` is the captured
    /// prefix of an argument (empty when the cut fell just after a NUL), and the arguments
    /// after it are missing.
    pub truncated: bool,
}

impl ExecArgv {
    /// The arguments known to be whole (all of them unless truncated).
    pub fn whole(&self) -> &[String] {
        match (self.truncated, self.argv.split_last()) {
            (true, Some((_, whole))) => whole,
            _ => &self.argv,
        }
    }
}

impl Exec {
    /// The captured start of argv; `None` when the kernel could not read it (its offsets are
    /// missing from BTF, or the area was not mapped).
    pub fn argv(&self) -> Option<ExecArgv> {
        if self.flags & EXEC_FLAG_ARGS == 0 {
            return None;
        }
        let total = self.args_len as usize;
        let truncated = total > ARGS_LEN;
        let bytes = &self.args[..total.min(ARGS_LEN)];
        // Every argument ends with a NUL, so a whole area ends with one: drop that last
        // terminator rather than report an empty argument after it. (An area without one,
        // set by prctl(PR_SET_MM_ARG_*), keeps its last piece.)
        let bytes = match (truncated, bytes.split_last()) {
            (false, Some((0, rest))) => rest,
            _ => bytes,
        };
        let argv = if total == 0 {
            // argc 0 (kernels before 5.18 allowed it; later ones pass one empty argument).
            Vec::new()
        } else {
            bytes
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        };
        Some(ExecArgv { argv, truncated })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::COMM_LEN;

    fn header(kind: Kind) -> Header {
        Header {
            kind: kind as u16,
            version: WIRE_VERSION,
            cpu: 1,
            ts_ns: 123,
            pid: 42,
            tid: 43,
            comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a plain #[repr(C)] record; reading its bytes is fine (padding is
        // explicit, so there are no uninitialised bytes).
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn fork_record() -> Fork {
        Fork {
            header: header(Kind::Fork),
            parent_pid: 1,
            parent_tid: 1,
            start_boottime_ns: 9,
            flags: 0,
            _pad: 0,
        }
    }

    #[test]
    fn decodes_a_valid_record() {
        let bytes = bytes_of(&fork_record());
        match decode(&bytes) {
            Ok(Record::Fork(f)) => {
                assert_eq!(f.header.pid, 42);
                assert_eq!(f.parent_pid, 1);
                assert_eq!(f.start_boottime_ns, 9);
                assert_eq!(&f.header.comm[..2], b"sh");
                assert_eq!(f.header.comm.len(), COMM_LEN);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = bytes_of(&fork_record());
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).expect_err("truncated record decoded");
            if len < size_of::<Header>() {
                assert_eq!(
                    err,
                    DecodeError::ShortHeader {
                        got: len,
                        needed: 40
                    }
                );
            } else {
                assert_eq!(
                    err,
                    DecodeError::Length {
                        kind: Kind::Fork,
                        got: len,
                        expected: 64
                    }
                );
            }
        }
        // Trailing garbage is rejected too rather than ignored.
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode(&long), Err(DecodeError::Length { .. })));
    }

    /// An exec record whose argument area is `area` (of full size `total`), the unused
    /// tail of `args` filled with garbage as a reused ring-buffer slot may be.
    fn exec_record(area: &[u8], total: u32) -> Exec {
        let mut args = [0xAA; ARGS_LEN];
        args[..area.len()].copy_from_slice(area);
        Exec {
            header: header(Kind::Exec),
            old_tid: 43,
            ppid: 1,
            uid: 0,
            flags: EXEC_FLAG_ARGS,
            start_boottime_ns: 9,
            maxrss_pages: 0,
            args_len: total,
            _pad: 0,
            filename: [0; crate::FILENAME_LEN],
            args,
        }
    }

    fn argv_of(area: &[u8]) -> Option<ExecArgv> {
        let total = u32::try_from(area.len()).expect("small");
        exec_record(area, total).argv()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| String::from(*s)).collect()
    }

    #[test]
    fn exec_record_round_trips_with_its_argv() {
        let bytes = bytes_of(&exec_record(b"rg\0--files\0", 11));
        assert_eq!(bytes.len(), 464);
        let Ok(Record::Exec(x)) = decode(&bytes) else {
            panic!("not an exec record");
        };
        let a = x.argv().expect("captured");
        assert_eq!(a.argv, strings(&["rg", "--files"]));
        assert!(!a.truncated);
        assert_eq!(a.whole(), a.argv.as_slice());
    }

    #[test]
    fn whole_argument_areas() {
        let whole = |area: &[u8], want: &[&str]| {
            let a = argv_of(area).expect("captured");
            assert_eq!(a.argv, strings(want), "{area:?}");
            assert!(!a.truncated);
        };
        whole(b"sh\0-c\0exit 3\0", &["sh", "-c", "exit 3"]);
        // Empty arguments are arguments, in the middle and at the end.
        whole(b"a\0\0b\0", &["a", "", "b"]);
        whole(b"prog\0\0", &["prog", ""]);
        // argc 0: nothing; the one empty argument newer kernels substitute.
        whole(b"", &[]);
        whole(b"\0", &[""]);
        // An area without its final NUL (rewritten with prctl) keeps its last piece.
        whole(b"a\0b", &["a", "b"]);
        // Invalid UTF-8 is replaced, not dropped.
        whole(b"x\xff\0", &["x\u{fffd}"]);
        // Exactly ARGS_LEN bytes is still whole.
        let mut area = [b'a'; ARGS_LEN];
        area[ARGS_LEN - 1] = 0;
        let a = argv_of(&area).expect("captured");
        assert!(!a.truncated);
        assert_eq!(a.argv.len(), 1);
        assert_eq!(a.argv[0].len(), ARGS_LEN - 1);
    }

    #[test]
    fn truncated_argument_areas() {
        // Cut inside the third argument: its prefix is the last element.
        let mut area = Vec::from(&b"bash\0-c\0"[..]);
        area.resize(ARGS_LEN, b'x');
        let a = exec_record(&area, 4000).argv().expect("captured");
        assert!(a.truncated);
        assert_eq!(a.argv.len(), 3);
        assert_eq!(a.argv[2], "x".repeat(ARGS_LEN - 8));
        assert_eq!(a.whole(), strings(&["bash", "-c"]).as_slice());
        // Cut just after a NUL: the next argument's (empty) prefix, never a whole "".
        let mut area = [b'y'; ARGS_LEN];
        area[ARGS_LEN - 1] = 0;
        let a = exec_record(&area, 200).argv().expect("captured");
        assert!(a.truncated);
        assert_eq!(a.argv.len(), 2);
        assert_eq!(a.argv[1], "");
        assert_eq!(a.whole().len(), 1);
        // A saturated length is still just "truncated".
        let a = exec_record(&area, u32::MAX).argv().expect("captured");
        assert!(a.truncated);
    }

    #[test]
    fn uncaptured_argv_is_none() {
        let mut x = exec_record(b"rg\0", 3);
        x.flags = 0;
        assert_eq!(x.argv(), None);
    }

    #[test]
    fn unknown_kind_and_version_are_errors() {
        let mut bytes = bytes_of(&fork_record());
        bytes[0] = 99;
        bytes[1] = 0;
        assert_eq!(decode(&bytes).unwrap_err(), DecodeError::UnknownKind(99));
        let mut bytes = bytes_of(&fork_record());
        bytes[2] = 99;
        assert_eq!(
            decode(&bytes).unwrap_err(),
            DecodeError::Version {
                got: 99,
                expected: WIRE_VERSION
            }
        );
    }
}

//! Userspace decoding of ring-buffer records: length and kind are checked before any read.

use core::mem::size_of;

use crate::{Exec, Exit, Fork, Header, Kind, Oom, Signal, WIRE_VERSION};

/// A decoded record, copied out of the ring buffer.
#[derive(Clone, Copy, Debug)]
pub enum Record {
    Exit(Exit),
    Signal(Signal),
    Oom(Oom),
    Fork(Fork),
    Exec(Exec),
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
    })
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
                        expected: 56
                    }
                );
            }
        }
        // Trailing garbage is rejected too rather than ignored.
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode(&long), Err(DecodeError::Length { .. })));
    }

    #[test]
    fn unknown_kind_and_version_are_errors() {
        let mut bytes = bytes_of(&fork_record());
        bytes[0] = 99;
        bytes[1] = 0;
        assert_eq!(decode(&bytes).unwrap_err(), DecodeError::UnknownKind(99));
        let mut bytes = bytes_of(&fork_record());
        bytes[2] = 7;
        assert_eq!(
            decode(&bytes).unwrap_err(),
            DecodeError::Version {
                got: 7,
                expected: WIRE_VERSION
            }
        );
    }
}

//! A small, self-contained reader for raw BTF (BPF Type Format) blobs.
//!
//! The agent parses the running kernel's `/sys/kernel/btf/vmlinux` at start-up to compute
//! kernel struct field offsets, which it then hands to the eBPF programs (Rust eBPF has no
//! CO-RE relocations).
//!
//! The format is described in the kernel's `Documentation/bpf/btf.rst`: a 24-byte (or longer)
//! header, a type section made of `struct btf_type` records (each followed by kind-specific
//! trailing data) and a string section of NUL-terminated names. Type ids start at 1 in the
//! order the records appear; id 0 is `void`. Only little-endian blobs (magic `0xeB9F` read as
//! little-endian) are accepted.
//!
//! Parsing validates the layout (header, section bounds, every record's trailing data and
//! every name offset) up front, so a truncated or malformed blob yields a [`BtfError`] rather
//! than a panic. Type-id references between records are checked lazily: a dangling reference
//! surfaces as [`BtfError::BadTypeId`] from the lookup that follows it. All chains (typedefs,
//! qualifiers, nested anonymous members, arrays) are depth-limited, so cyclic BTF cannot hang
//! or overflow the stack.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// BTF magic as read little-endian.
const BTF_MAGIC: u16 = 0xeb9f;
/// The magic of a BTF blob written on a host of the other endianness.
const BTF_MAGIC_SWAPPED: u16 = 0x9feb;
/// The only BTF version that exists.
const BTF_VERSION: u8 = 1;
/// Size of `struct btf_header` (version 1).
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type`.
const TYPE_HEADER_LEN: usize = 12;
/// Pointer size of the (64-bit) kernel.
const POINTER_SIZE: u32 = 8;
/// Maximum length of any followed chain (typedef/qualifier hops, anonymous member nesting,
/// array dimensions). Real kernel BTF stays far below this; malformed BTF may be cyclic.
const MAX_DEPTH: usize = 64;

/// Errors from parsing BTF or looking things up in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("cannot read BTF from {}: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The blob does not start with the BTF magic.
    #[error("not a BTF blob: bad magic 0x{found:04x} (expected 0xeb9f)")]
    BadMagic {
        /// The magic found at the start of the blob (read little-endian).
        found: u16,
    },
    /// The blob has the BTF magic in the other byte order (written on a foreign-endian host).
    #[error(
        "BTF blob is byte-swapped (magic reads as 0x9feb): foreign-endian BTF is not supported"
    )]
    ByteSwapped,
    /// The header's version is not 1.
    #[error("unsupported BTF version {version} (only version 1 is supported)")]
    UnsupportedVersion {
        /// The version byte found in the header.
        version: u8,
    },
    /// The header is internally inconsistent.
    #[error("malformed BTF header: {reason}")]
    BadHeader {
        /// What is wrong with it.
        reason: String,
    },
    /// The blob ends (or a section ends) before something that must be there.
    #[error(
        "truncated BTF: {what} needs bytes {start}..{end} but only {available} bytes are present"
    )]
    Truncated {
        /// What was being read.
        what: String,
        /// First byte needed (relative to the blob or the section named in `what`).
        start: u64,
        /// One past the last byte needed.
        end: u64,
        /// Number of bytes actually available.
        available: u64,
    },
    /// A type record has a kind this reader does not know (not in 1..=19).
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind {
        /// The id the record would have.
        id: u32,
        /// The raw kind value.
        kind: u32,
    },
    /// A name offset points outside the string section.
    #[error("BTF {what} has string offset {offset} outside the {len}-byte string section")]
    BadStringOffset {
        /// Which name (type id and record).
        what: String,
        /// The offending offset.
        offset: u32,
        /// Length of the string section.
        len: usize,
    },
    /// A type id (given by the caller or referenced from a record) does not exist.
    #[error("BTF type id {id} is out of range (the blob has {count} types)")]
    BadTypeId {
        /// The offending id.
        id: u32,
        /// Number of types in the blob (valid ids are 0..=count).
        count: u32,
    },
    /// A chain of references is longer than any sane BTF would have: most likely a cycle.
    #[error("BTF type chain starting at type {id} is too deep or cyclic")]
    TooDeep {
        /// Where the chain started.
        id: u32,
    },
    /// The type has no size (void, forward declaration, function, ...).
    #[error("BTF type {id} ({kind}) has no size")]
    NoSize {
        /// The type id.
        id: u32,
        /// Its kind.
        kind: &'static str,
    },
    /// An offset or size computation overflowed 32 bits.
    #[error("BTF {what} overflows 32 bits")]
    Overflow {
        /// What was being computed.
        what: String,
    },
    /// No struct or union (nor typedef of one) with this name exists.
    #[error("kernel BTF has no struct or union named `{name}`")]
    StructNotFound {
        /// The name looked up.
        name: String,
    },
    /// A member along the path does not exist.
    #[error("kernel BTF has no member `{path}` in {kind} {struct_name}")]
    MemberNotFound {
        /// `"struct"` or `"union"`.
        kind: &'static str,
        /// The outer struct/union name given by the caller.
        struct_name: String,
        /// The full member path, dot-separated.
        path: String,
    },
    /// The member is a bitfield, so it has no byte offset.
    #[error(
        "member `{path}` of {kind} {struct_name} is a bitfield (bit offset {bit_offset}, width {bits} bits) and is not byte addressable"
    )]
    Bitfield {
        /// `"struct"` or `"union"`.
        kind: &'static str,
        /// The outer struct/union name given by the caller.
        struct_name: String,
        /// The member path up to the bitfield, dot-separated.
        path: String,
        /// Bit offset of the bitfield from the start of the outer struct.
        bit_offset: u64,
        /// Width of the bitfield in bits (0 for a plain member at a non-byte bit offset).
        bits: u32,
    },
    /// The path continues below a member whose type is not a struct or union.
    #[error(
        "cannot descend into member `{path}` of {kind} {struct_name}: its type `{type_name}` is not a struct or union"
    )]
    NotAStruct {
        /// `"struct"` or `"union"`.
        kind: &'static str,
        /// The outer struct/union name given by the caller.
        struct_name: String,
        /// The member path up to the offending member, dot-separated.
        path: String,
        /// Description of that member's type.
        type_name: String,
    },
}

/// Where a member lives inside an outer struct or union, as computed by [`Btf::member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    /// Byte offset from the start of the outer struct/union.
    pub offset: u32,
    /// The member's declared type id (may be a typedef or qualifier; see [`Btf::resolve`]).
    pub type_id: u32,
    /// Byte size of the member's type, resolved through typedef/const/volatile
    /// (pointers are 8, arrays are element size times element count).
    pub size: u32,
}

/// BTF kinds 1..=19 (0 is used internally for `void`, type id 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Void,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    /// Decodes a raw kind value from `btf_type.info`.
    fn from_raw(raw: u32) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// Kernel name of the kind (`BTF_KIND_<name>`).
    fn name(self) -> &'static str {
        match self {
            Kind::Void => "VOID",
            Kind::Int => "INT",
            Kind::Ptr => "PTR",
            Kind::Array => "ARRAY",
            Kind::Struct => "STRUCT",
            Kind::Union => "UNION",
            Kind::Enum => "ENUM",
            Kind::Fwd => "FWD",
            Kind::Typedef => "TYPEDEF",
            Kind::Volatile => "VOLATILE",
            Kind::Const => "CONST",
            Kind::Restrict => "RESTRICT",
            Kind::Func => "FUNC",
            Kind::FuncProto => "FUNC_PROTO",
            Kind::Var => "VAR",
            Kind::Datasec => "DATASEC",
            Kind::Float => "FLOAT",
            Kind::DeclTag => "DECL_TAG",
            Kind::TypeTag => "TYPE_TAG",
            Kind::Enum64 => "ENUM64",
        }
    }

    /// Size in bytes of one trailing record and whether there are `vlen` of them
    /// (otherwise there is exactly one, or none when the size is 0).
    fn trailing(self) -> (usize, bool) {
        match self {
            Kind::Int => (4, false),                  // u32 encoding
            Kind::Array => (12, false),               // struct btf_array
            Kind::Struct | Kind::Union => (12, true), // struct btf_member
            Kind::Enum => (8, true),                  // struct btf_enum
            Kind::FuncProto => (8, true),             // struct btf_param
            Kind::Var => (4, false),                  // struct btf_var
            Kind::Datasec => (12, true),              // struct btf_var_secinfo
            Kind::DeclTag => (4, false),              // struct btf_decl_tag
            Kind::Enum64 => (12, true),               // struct btf_enum64
            Kind::Void
            | Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => (0, false),
        }
    }

    /// Whether the type is transparent for [`Btf::resolve`].
    fn is_modifier(self) -> bool {
        matches!(
            self,
            Kind::Typedef | Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag
        )
    }

    fn is_composite(self) -> bool {
        matches!(self, Kind::Struct | Kind::Union)
    }
}

/// One decoded `struct btf_type` header.
#[derive(Debug, Clone, Copy)]
struct TypeRec {
    kind: Kind,
    kind_flag: bool,
    vlen: u16,
    name_off: u32,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    /// Offset of the trailing data inside the type section.
    data: u32,
}

impl TypeRec {
    const VOID: TypeRec = TypeRec {
        kind: Kind::Void,
        kind_flag: false,
        vlen: 0,
        name_off: 0,
        size_or_type: 0,
        data: 0,
    };
}

/// A member as found by name, with its bit offset relative to the struct searched.
#[derive(Debug, Clone, Copy)]
struct Found {
    bit_offset: u64,
    bitfield_bits: u32,
    type_id: u32,
}

/// A parsed BTF blob.
///
/// Owns copies of the type and string sections and an index of struct, union and typedef
/// names, so lookups by name are a hash-map probe.
#[derive(Clone)]
pub struct Btf {
    /// Index = type id; entry 0 is `void`.
    types: Vec<TypeRec>,
    /// The type section (trailing data is read from here lazily).
    type_data: Vec<u8>,
    /// The string section.
    strings: Vec<u8>,
    /// Struct, union and typedef names -> type ids, in id order.
    by_name: HashMap<Box<str>, Vec<u32>>,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.type_count())
            .field("type_section_bytes", &self.type_data.len())
            .field("string_section_bytes", &self.strings.len())
            .field("indexed_names", &self.by_name.len())
            .finish()
    }
}

/// Reads a little-endian u16 at `off`, if present.
fn le16(data: &[u8], off: usize) -> Option<u16> {
    let b = data.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

/// Reads a little-endian u32 at `off`, if present.
fn le32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn truncated(what: impl Into<String>, start: usize, end: usize, available: usize) -> BtfError {
    BtfError::Truncated {
        what: what.into(),
        start: start as u64,
        end: end as u64,
        available: available as u64,
    }
}

/// Checks that a name offset lies inside the string section.
fn check_name(
    name_off: u32,
    str_len: usize,
    what: impl FnOnce() -> String,
) -> Result<(), BtfError> {
    if name_off == 0 || (name_off as usize) < str_len {
        Ok(())
    } else {
        Err(BtfError::BadStringOffset {
            what: what(),
            offset: name_off,
            len: str_len,
        })
    }
}

/// Returns the `[start, start+len)` section of `data` located by a header field pair.
fn section<'a>(
    data: &'a [u8],
    hdr_len: usize,
    off: u32,
    len: u32,
    what: &str,
) -> Result<&'a [u8], BtfError> {
    let start = hdr_len as u64 + u64::from(off);
    let end = start + u64::from(len);
    let fail = || BtfError::Truncated {
        what: what.to_string(),
        start,
        end,
        available: data.len() as u64,
    };
    let s = usize::try_from(start).map_err(|_| fail())?;
    let e = usize::try_from(end).map_err(|_| fail())?;
    data.get(s..e).ok_or_else(fail)
}

fn join(path: &[&str]) -> String {
    path.join(".")
}

impl Btf {
    /// Parses a raw BTF blob (header + type section + string section, little-endian).
    ///
    /// Validates the header, the section bounds, every type record's trailing data and all
    /// name offsets. References between types are checked when they are followed.
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let magic = le16(data, 0).ok_or_else(|| truncated("BTF magic", 0, 2, data.len()))?;
        if magic == BTF_MAGIC_SWAPPED {
            return Err(BtfError::ByteSwapped);
        }
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic { found: magic });
        }
        let version = *data
            .get(2)
            .ok_or_else(|| truncated("BTF version", 2, 3, data.len()))?;
        if version != BTF_VERSION {
            return Err(BtfError::UnsupportedVersion { version });
        }
        if data.len() < HEADER_LEN {
            return Err(truncated("BTF header", 0, HEADER_LEN, data.len()));
        }
        let field = |off: usize| le32(data, off).unwrap_or(0);
        let hdr_len = field(4) as usize;
        let (type_off, type_len, str_off, str_len) = (field(8), field(12), field(16), field(20));
        if hdr_len < HEADER_LEN {
            return Err(BtfError::BadHeader {
                reason: format!("header length {hdr_len} is below the {HEADER_LEN}-byte minimum"),
            });
        }
        if hdr_len > data.len() {
            return Err(truncated("BTF header (hdr_len)", 0, hdr_len, data.len()));
        }
        let tsec = section(data, hdr_len, type_off, type_len, "BTF type section")?;
        let ssec = section(data, hdr_len, str_off, str_len, "BTF string section")?;
        let str_len = ssec.len();

        let mut types = Vec::with_capacity(tsec.len() / 20 + 1);
        types.push(TypeRec::VOID);
        let mut off = 0usize;
        while off < tsec.len() {
            let id = u32::try_from(types.len()).map_err(|_| BtfError::Overflow {
                what: "type count".to_string(),
            })?;
            let hdr_end = off + TYPE_HEADER_LEN;
            if hdr_end > tsec.len() {
                return Err(truncated(
                    format!("header of type {id} in the type section"),
                    off,
                    hdr_end,
                    tsec.len(),
                ));
            }
            let name_off = le32(tsec, off).unwrap_or(0);
            let info = le32(tsec, off + 4).unwrap_or(0);
            let size_or_type = le32(tsec, off + 8).unwrap_or(0);
            let raw_kind = (info >> 24) & 0x1f;
            let kind =
                Kind::from_raw(raw_kind).ok_or(BtfError::UnknownKind { id, kind: raw_kind })?;
            let vlen = (info & 0xffff) as u16;
            let kind_flag = info >> 31 == 1;

            let (rec_len, per_vlen) = kind.trailing();
            let count = if per_vlen { usize::from(vlen) } else { 1 };
            let end = hdr_end + rec_len * count;
            if end > tsec.len() {
                return Err(truncated(
                    format!(
                        "{} data of type {id} (vlen {vlen}) in the type section",
                        kind.name()
                    ),
                    hdr_end,
                    end,
                    tsec.len(),
                ));
            }
            check_name(name_off, str_len, || format!("name of type {id}"))?;
            // Records whose first u32 is a name offset.
            if matches!(
                kind,
                Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::FuncProto
            ) {
                for i in 0..count {
                    let rec_name = le32(tsec, hdr_end + i * rec_len).unwrap_or(0);
                    check_name(rec_name, str_len, || {
                        format!("name of {} entry {i} of type {id}", kind.name())
                    })?;
                }
            }
            types.push(TypeRec {
                kind,
                kind_flag,
                vlen,
                name_off,
                size_or_type,
                // `tsec.len()` fits in u32 because `type_len` is a u32.
                data: hdr_end as u32,
            });
            off = end;
        }

        let mut btf = Btf {
            types,
            type_data: tsec.to_vec(),
            strings: ssec.to_vec(),
            by_name: HashMap::new(),
        };
        btf.build_index();
        Ok(btf)
    }

    /// Reads the file at `path` (e.g. `/sys/kernel/btf/vmlinux`) and parses it.
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Btf::parse(&data)
    }

    // ---- internals -------------------------------------------------------------------

    /// Number of types (valid ids are `0..=type_count()`).
    fn type_count(&self) -> u32 {
        (self.types.len() - 1) as u32
    }

    fn ty(&self, id: u32) -> Result<&TypeRec, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::BadTypeId {
            id,
            count: self.type_count(),
        })
    }

    /// Reads a u32 of trailing data. Offsets were validated by `parse`, so the fallback is
    /// never taken for well-formed records.
    fn rd(&self, off: usize) -> u32 {
        le32(&self.type_data, off).unwrap_or(0)
    }

    /// The NUL-terminated string at `off` (without the NUL); empty if out of range.
    fn name_bytes(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        rest.split(|&b| b == 0).next().unwrap_or(&[])
    }

    /// The string at `off`; empty if out of range or not UTF-8.
    fn name(&self, off: u32) -> &str {
        std::str::from_utf8(self.name_bytes(off)).unwrap_or("")
    }

    fn build_index(&mut self) {
        let mut map: HashMap<Box<str>, Vec<u32>> = HashMap::with_capacity(self.types.len() / 4);
        for (id, t) in self.types.iter().enumerate() {
            if t.name_off == 0 || !matches!(t.kind, Kind::Struct | Kind::Union | Kind::Typedef) {
                continue;
            }
            let name = self.name(t.name_off);
            if name.is_empty() {
                continue;
            }
            match map.get_mut(name) {
                Some(ids) => ids.push(id as u32),
                None => {
                    map.insert(name.into(), vec![id as u32]);
                }
            }
        }
        self.by_name = map;
    }
}

mod query;

#[cfg(test)]
pub(crate) mod tests;

//! Questions asked of a parsed [`Btf`]: struct members and their offsets (through nested
//! and anonymous members), type sizes, enum values, tracepoint prototypes, and type
//! descriptions for error messages.

use super::*;

/// Types visited to describe one type at most (a real one needs a handful: a function
/// pointer's prototype and its parameters); see [`Btf::describe`].
const DESCRIBE_BUDGET: usize = 256;
/// Characters of a name kept in a description (the kernel's `KSYM_NAME_LEN`), so that a
/// description costs at most [`DESCRIBE_BUDGET`] such names whatever the string section.
const MAX_NAME_CHARS: usize = 512;

impl Btf {
    /// Offset of `path` inside struct-or-union `outer`.
    ///
    /// `path` is a list of member names; each step descends into the named member's type
    /// (through typedef/const/volatile/restrict/type_tag; pointers are not followed).
    /// Anonymous struct/union members are searched transparently at every level, e.g.
    /// `member("kernel_siginfo", &["si_code"])` or `member("cred", &["uid", "val"])`.
    /// `outer` may also name a typedef of a struct/union. When several structs share the
    /// name, the first one in which the path resolves wins. An empty path describes the
    /// outer struct itself (offset 0).
    ///
    /// Bitfield members (kind_flag set with a non-zero bitfield size, a bit offset that is
    /// not a multiple of 8, or a legacy bitfield-encoded int) give [`BtfError::Bitfield`].
    pub fn member(&self, outer: &str, path: &[&str]) -> Result<MemberInfo, BtfError> {
        let candidates = self.outer_candidates(outer);
        let mut first_err = None;
        for id in candidates {
            match self.member_in(outer, id, path) {
                Ok(info) => return Ok(info),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        Err(first_err.unwrap_or_else(|| BtfError::StructNotFound {
            name: outer.to_string(),
        }))
    }

    /// Byte offset of `path` inside struct-or-union `outer`; see [`Btf::member`].
    pub fn member_offset(&self, outer: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.member(outer, path).map(|m| m.offset)
    }

    /// Byte size of the struct or union (or typedef of one) named `name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let id = self
            .outer_candidates(name)
            .into_iter()
            .next()
            .ok_or_else(|| BtfError::StructNotFound {
                name: name.to_string(),
            })?;
        Ok(self.ty(id)?.size_or_type)
    }

    /// Resolve typedef/const/volatile/restrict/type_tag chains to the underlying type id.
    ///
    /// `resolve(0)` is `Ok(0)` (void). Dangling ids give [`BtfError::BadTypeId`], cycles
    /// [`BtfError::TooDeep`].
    pub fn resolve(&self, type_id: u32) -> Result<u32, BtfError> {
        let mut id = type_id;
        for _ in 0..=MAX_DEPTH {
            let t = self.ty(id)?;
            if !t.kind.is_modifier() {
                return Ok(id);
            }
            id = t.size_or_type;
        }
        Err(BtfError::TooDeep { id: type_id })
    }

    /// Byte size of a type (int/struct/union/enum size, pointer 8, array = elem size *
    /// nelems, typedef and qualifiers resolved, var = its type's size).
    ///
    /// Void, forward declarations, functions and function prototypes have no size and give
    /// [`BtfError::NoSize`].
    pub fn type_size(&self, type_id: u32) -> Result<u32, BtfError> {
        self.size_at(type_id, type_id, 0)
    }

    /// A short description of a type for diagnostics and for choosing program variants, e.g.
    /// `"struct task_struct *"`, `"bool"`, `"int"`, `"uid_t"` (typedef name kept),
    /// `"struct percpu_counter[4]"`, `"struct mm_rss_stat"`, `"const char *"`.
    ///
    /// Never fails: invalid ids are described as `"<bad type id N>"`. Anonymous
    /// structs/unions/enums are `"struct {...}"` etc.; function pointers look like
    /// `"int (*)(void *, long)"`; type tags are omitted.
    pub fn type_name(&self, type_id: u32) -> String {
        let mut budget = DESCRIBE_BUDGET;
        self.describe(type_id, &mut budget)
    }

    /// If `type_id` (after [`Btf::resolve`]) is an array: `Some((elem_type_id, nelems))`.
    pub fn array_info(&self, type_id: u32) -> Option<(u32, u32)> {
        let id = self.resolve(type_id).ok()?;
        let t = self.ty(id).ok()?;
        (t.kind == Kind::Array).then(|| {
            let (elem, _index, nelems) = self.array_rec(t);
            (elem, nelems)
        })
    }

    /// The name of the struct/union (or forward declaration of one) a type resolves to, if
    /// any (e.g. `Some("percpu_counter")`). Anonymous structs give `None`.
    pub fn struct_name_of(&self, type_id: u32) -> Option<&str> {
        let id = self.resolve(type_id).ok()?;
        let t = self.ty(id).ok()?;
        if !matches!(t.kind, Kind::Struct | Kind::Union | Kind::Fwd) {
            return None;
        }
        let name = self.name(t.name_off);
        (!name.is_empty()).then_some(name)
    }

    /// Value of an enumerator searched across all enums (named and anonymous, ENUM and
    /// ENUM64), e.g. `enum_value("memory_cgrp_id")`, `enum_value("MM_ANONPAGES")`.
    ///
    /// Signedness follows the enum's kind_flag; an unsigned ENUM64 value above `i64::MAX`
    /// wraps. The first match in type-id order wins. `None` if absent.
    pub fn enum_value(&self, enumerator: &str) -> Option<i64> {
        let wanted = enumerator.as_bytes();
        for t in &self.types {
            match t.kind {
                Kind::Enum => {
                    for i in 0..usize::from(t.vlen) {
                        let off = t.data as usize + i * 8;
                        if self.name_bytes(self.rd(off)) == wanted {
                            let raw = self.rd(off + 4);
                            return Some(if t.kind_flag {
                                i64::from(raw as i32)
                            } else {
                                i64::from(raw)
                            });
                        }
                    }
                }
                Kind::Enum64 => {
                    for i in 0..usize::from(t.vlen) {
                        let off = t.data as usize + i * 12;
                        if self.name_bytes(self.rd(off)) == wanted {
                            let lo = u64::from(self.rd(off + 4));
                            let hi = u64::from(self.rd(off + 8));
                            return Some(((hi << 32) | lo) as i64);
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Arguments of the BTF tracepoint `tp` as seen by a `tp_btf` program.
    ///
    /// Finds the TYPEDEF `btf_trace_<tp>`, which points (PTR) to a FUNC_PROTO whose first
    /// param is the hidden `void *__data`, and returns the remaining params' descriptions
    /// via [`Btf::type_name`], e.g. `["struct task_struct *", "bool"]` for
    /// `sched_process_exit` on 6.18. `None` if the typedef does not exist or does not have
    /// that shape.
    pub fn tracepoint_args(&self, tp: &str) -> Option<Vec<String>> {
        let name = format!("btf_trace_{tp}");
        for &id in self.by_name.get(name.as_str())? {
            let Ok(t) = self.ty(id) else { continue };
            if t.kind != Kind::Typedef {
                continue;
            }
            let Ok(ptr_id) = self.resolve(t.size_or_type) else {
                continue;
            };
            let Ok(ptr) = self.ty(ptr_id) else { continue };
            if ptr.kind != Kind::Ptr {
                continue;
            }
            let Ok(proto_id) = self.resolve(ptr.size_or_type) else {
                continue;
            };
            let Ok(proto) = self.ty(proto_id) else {
                continue;
            };
            if proto.kind != Kind::FuncProto {
                continue;
            }
            return Some(
                self.params(proto)
                    .skip(1)
                    .map(|(_, ty)| {
                        let mut budget = DESCRIBE_BUDGET;
                        self.describe_param(ty, &mut budget)
                    })
                    .collect(),
            );
        }
        None
    }

    /// Struct/union ids named `name`, then those reached through typedefs named `name`.
    pub(super) fn outer_candidates(&self, name: &str) -> Vec<u32> {
        let Some(ids) = self.by_name.get(name) else {
            return Vec::new();
        };
        let mut out: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| self.ty(id).is_ok_and(|t| t.kind.is_composite()))
            .collect();
        for &id in ids {
            if !self.ty(id).is_ok_and(|t| t.kind == Kind::Typedef) {
                continue;
            }
            if let Ok(target) = self.resolve(id)
                && self.ty(target).is_ok_and(|t| t.kind.is_composite())
                && !out.contains(&target)
            {
                out.push(target);
            }
        }
        out
    }

    /// `struct btf_member` entries: (name_off, type, raw offset).
    pub(super) fn members(&self, t: &TypeRec) -> impl Iterator<Item = (u32, u32, u32)> {
        let n = if t.kind.is_composite() { t.vlen } else { 0 };
        let base = t.data as usize;
        (0..usize::from(n)).map(move |i| {
            let off = base + i * 12;
            (self.rd(off), self.rd(off + 4), self.rd(off + 8))
        })
    }

    /// `struct btf_param` entries: (name_off, type).
    pub(super) fn params(&self, t: &TypeRec) -> impl Iterator<Item = (u32, u32)> {
        let n = if t.kind == Kind::FuncProto { t.vlen } else { 0 };
        let base = t.data as usize;
        (0..usize::from(n)).map(move |i| {
            let off = base + i * 8;
            (self.rd(off), self.rd(off + 4))
        })
    }

    /// `struct btf_array`: (elem type, index type, nelems).
    pub(super) fn array_rec(&self, t: &TypeRec) -> (u32, u32, u32) {
        let off = t.data as usize;
        (self.rd(off), self.rd(off + 4), self.rd(off + 8))
    }

    pub(super) fn member_in(
        &self,
        outer: &str,
        root: u32,
        path: &[&str],
    ) -> Result<MemberInfo, BtfError> {
        let root_rec = self.ty(root)?;
        let kind = if root_rec.kind == Kind::Union {
            "union"
        } else {
            "struct"
        };
        let Some((last, init)) = path.split_last() else {
            return Ok(MemberInfo {
                offset: 0,
                type_id: root,
                size: root_rec.size_or_type,
            });
        };
        let mut cur = root;
        let mut base_bits: u64 = 0;
        let mut step = |cur: u32, i: usize, name: &str| -> Result<Found, BtfError> {
            let found =
                self.find_member(cur, name, 0)?
                    .ok_or_else(|| BtfError::MemberNotFound {
                        kind,
                        struct_name: outer.to_string(),
                        path: join(path),
                    })?;
            let bit_offset = base_bits + found.bit_offset;
            let legacy_bits = self.legacy_bitfield(found.type_id);
            if found.bitfield_bits != 0 || found.bit_offset % 8 != 0 || legacy_bits.is_some() {
                let (extra, bits) = legacy_bits.unwrap_or((0, found.bitfield_bits));
                return Err(BtfError::Bitfield {
                    kind,
                    struct_name: outer.to_string(),
                    path: join(&path[..=i]),
                    bit_offset: bit_offset + u64::from(extra),
                    bits,
                });
            }
            base_bits = bit_offset;
            Ok(found)
        };
        for (i, name) in init.iter().enumerate() {
            let found = step(cur, i, name)?;
            let next = self.resolve(found.type_id)?;
            if !self.ty(next)?.kind.is_composite() {
                return Err(BtfError::NotAStruct {
                    kind,
                    struct_name: outer.to_string(),
                    path: join(&path[..=i]),
                    type_name: self.type_name(found.type_id),
                });
            }
            cur = next;
        }
        let found = step(cur, init.len(), last)?;
        let offset = u32::try_from(base_bits / 8).map_err(|_| BtfError::Overflow {
            what: format!("offset of `{}` in {kind} {outer}", join(path)),
        })?;
        Ok(MemberInfo {
            offset,
            type_id: found.type_id,
            size: self.type_size(found.type_id)?,
        })
    }

    /// Finds member `name` in struct/union `id`, descending into anonymous members.
    pub(super) fn find_member(
        &self,
        id: u32,
        name: &str,
        depth: usize,
    ) -> Result<Option<Found>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id });
        }
        let t = *self.ty(id)?;
        let wanted = name.as_bytes();
        for (name_off, type_id, raw_off) in self.members(&t) {
            let (bit_offset, bitfield_bits) = if t.kind_flag {
                (raw_off & 0x00ff_ffff, raw_off >> 24)
            } else {
                (raw_off, 0)
            };
            if name_off != 0 {
                if self.name_bytes(name_off) == wanted {
                    return Ok(Some(Found {
                        bit_offset: u64::from(bit_offset),
                        bitfield_bits,
                        type_id,
                    }));
                }
                continue;
            }
            let inner = self.resolve(type_id)?;
            if !self.ty(inner)?.kind.is_composite() {
                continue;
            }
            if let Some(f) = self.find_member(inner, name, depth + 1)? {
                return Ok(Some(Found {
                    bit_offset: u64::from(bit_offset) + f.bit_offset,
                    ..f
                }));
            }
        }
        Ok(None)
    }

    /// Legacy (kind_flag = 0) bitfields point straight at an INT whose encoding carries a
    /// bit offset or a width smaller than its size. Returns (bit offset, width) then.
    pub(super) fn legacy_bitfield(&self, type_id: u32) -> Option<(u32, u32)> {
        let t = self.ty(type_id).ok()?;
        if t.kind != Kind::Int {
            return None;
        }
        let enc = self.rd(t.data as usize);
        let bits = enc & 0xff;
        let int_off = (enc >> 16) & 0xff;
        (int_off != 0 || u64::from(bits) != u64::from(t.size_or_type) * 8)
            .then_some((int_off, bits))
    }

    pub(super) fn size_at(&self, start: u32, id: u32, depth: usize) -> Result<u32, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id: start });
        }
        let t = self.ty(id)?;
        match t.kind {
            Kind::Int
            | Kind::Struct
            | Kind::Union
            | Kind::Enum
            | Kind::Enum64
            | Kind::Float
            | Kind::Datasec => Ok(t.size_or_type),
            Kind::Ptr => Ok(POINTER_SIZE),
            Kind::Array => {
                let (elem, _index, nelems) = self.array_rec(t);
                let elem_size = self.size_at(start, elem, depth + 1)?;
                elem_size
                    .checked_mul(nelems)
                    .ok_or_else(|| BtfError::Overflow {
                        what: format!("size of array type {id}"),
                    })
            }
            Kind::Typedef
            | Kind::Const
            | Kind::Volatile
            | Kind::Restrict
            | Kind::TypeTag
            | Kind::Var => self.size_at(start, t.size_or_type, depth + 1),
            Kind::Void | Kind::Fwd | Kind::Func | Kind::FuncProto | Kind::DeclTag => {
                Err(BtfError::NoSize {
                    id,
                    kind: t.kind.name(),
                })
            }
        }
    }

    /// Follows type tags and qualifiers and tells the final kind, if the chain is valid.
    pub(super) fn kind_behind_qualifiers(&self, id: u32) -> Option<(u32, Kind)> {
        let mut id = id;
        for _ in 0..=MAX_DEPTH {
            let t = self.ty(id).ok()?;
            match t.kind {
                Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag => {
                    id = t.size_or_type;
                }
                k => return Some((id, k)),
            }
        }
        None
    }

    pub(super) fn describe_param(&self, type_id: u32, budget: &mut usize) -> String {
        if type_id == 0 {
            "...".to_string()
        } else {
            self.describe(type_id, budget)
        }
    }

    pub(super) fn describe_proto(
        &self,
        proto: &TypeRec,
        middle: &str,
        budget: &mut usize,
    ) -> String {
        let ret = self.describe(proto.size_or_type, budget);
        let mut params = Vec::new();
        for (_, ty) in self.params(proto) {
            if *budget == 0 {
                params.push("...".to_string());
                break;
            }
            params.push(self.describe_param(ty, budget));
        }
        let params = if params.is_empty() {
            "void".to_string()
        } else {
            params.join(", ")
        };
        format!("{ret} {middle}({params})")
    }

    /// Describes type `id`, spending one unit of `budget` per type visited: a prototype's
    /// return and parameter types are each described, so without a budget for the whole
    /// description a cyclic prototype (a parameter that points back to it) would cost
    /// (parameters + 1) to the power of the chain depth.
    pub(super) fn describe(&self, id: u32, budget: &mut usize) -> String {
        if *budget == 0 {
            return "<type chain too deep>".to_string();
        }
        *budget -= 1;
        if id == 0 {
            return "void".to_string();
        }
        let Ok(t) = self.ty(id) else {
            return format!("<bad type id {id}>");
        };
        let name = self.name(t.name_off);
        let name = match name.char_indices().nth(MAX_NAME_CHARS) {
            Some((end, _)) => &name[..end],
            None => name,
        };
        let tagged = |prefix: &str| {
            if name.is_empty() {
                format!("{prefix} {{...}}")
            } else {
                format!("{prefix} {name}")
            }
        };
        match t.kind {
            Kind::Void => "void".to_string(),
            Kind::Int
            | Kind::Float
            | Kind::Typedef
            | Kind::Func
            | Kind::Var
            | Kind::Datasec
            | Kind::DeclTag => {
                if name.is_empty() {
                    format!("<anonymous {}>", t.kind.name())
                } else {
                    name.to_string()
                }
            }
            Kind::Struct => tagged("struct"),
            Kind::Union => tagged("union"),
            Kind::Enum | Kind::Enum64 => tagged("enum"),
            Kind::Fwd => tagged(if t.kind_flag { "union" } else { "struct" }),
            Kind::Ptr => {
                let target = t.size_or_type;
                if let Some((proto_id, Kind::FuncProto)) = self.kind_behind_qualifiers(target)
                    && let Ok(proto) = self.ty(proto_id)
                {
                    return self.describe_proto(proto, "(*)", budget);
                }
                let inner = self.describe(target, budget);
                if inner.ends_with('*') {
                    format!("{inner}*")
                } else {
                    format!("{inner} *")
                }
            }
            Kind::Array => {
                let mut dims = String::new();
                let mut cur = *t;
                for _ in 0..MAX_DEPTH {
                    let (elem, _index, nelems) = self.array_rec(&cur);
                    dims.push_str(&format!("[{nelems}]"));
                    match self.ty(elem) {
                        Ok(next) if next.kind == Kind::Array => cur = *next,
                        _ => return format!("{}{dims}", self.describe(elem, budget)),
                    }
                }
                format!("<type chain too deep>{dims}")
            }
            Kind::Const | Kind::Volatile | Kind::Restrict => {
                let qualifier = match t.kind {
                    Kind::Const => "const",
                    Kind::Volatile => "volatile",
                    _ => "restrict",
                };
                let inner = self.describe(t.size_or_type, budget);
                if matches!(
                    self.kind_behind_qualifiers(t.size_or_type),
                    Some((_, Kind::Ptr))
                ) {
                    format!("{inner} {qualifier}")
                } else {
                    format!("{qualifier} {inner}")
                }
            }
            Kind::TypeTag => self.describe(t.size_or_type, budget),
            Kind::FuncProto => self.describe_proto(t, "", budget),
        }
    }
}

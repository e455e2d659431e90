use super::*;

const INT_SIGNED: u32 = 1;
const INT_CHAR: u32 = 2;
const INT_BOOL: u32 = 4;

/// Builds raw BTF blobs for tests: types get ids 1, 2, ... in the order they are added.
struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl BtfBuilder {
    fn new() -> Self {
        BtfBuilder {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    /// The id the next added type will get.
    fn next_id(&self) -> u32 {
        self.next_id
    }

    fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn u32(&mut self, v: u32) {
        self.types.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a `struct btf_type` header with an explicit raw kind.
    fn header(&mut self, name: &str, kind: u32, kflag: bool, vlen: u32, st: u32) -> u32 {
        let n = self.str(name);
        self.u32(n);
        self.u32((u32::from(kflag) << 31) | (kind << 24) | vlen);
        self.u32(st);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn int(&mut self, name: &str, size: u32, bits: u32, encoding: u32) -> u32 {
        let id = self.header(name, 1, false, 0, size);
        self.u32((encoding << 24) | bits);
        id
    }

    fn ptr(&mut self, target: u32) -> u32 {
        self.header("", 2, false, 0, target)
    }

    fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
        let id = self.header("", 3, false, 0, 0);
        self.u32(elem);
        self.u32(index);
        self.u32(nelems);
        id
    }

    /// Members are (name, type, raw offset field).
    fn composite(
        &mut self,
        kind: u32,
        name: &str,
        size: u32,
        kflag: bool,
        members: &[(&str, u32, u32)],
    ) -> u32 {
        let id = self.header(name, kind, kflag, members.len() as u32, size);
        for &(m, ty, off) in members {
            let n = self.str(m);
            self.u32(n);
            self.u32(ty);
            self.u32(off);
        }
        id
    }

    fn struct_(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(4, name, size, false, members)
    }

    /// kind_flag struct: members are (name, type, bit offset, bitfield size).
    fn struct_kf(&mut self, name: &str, size: u32, members: &[(&str, u32, u32, u32)]) -> u32 {
        let raw: Vec<(&str, u32, u32)> = members
            .iter()
            .map(|&(n, t, off, bits)| (n, t, (bits << 24) | off))
            .collect();
        self.composite(4, name, size, true, &raw)
    }

    fn union_(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(5, name, size, false, members)
    }

    fn enum32(&mut self, name: &str, signed: bool, vals: &[(&str, i32)]) -> u32 {
        let id = self.header(name, 6, signed, vals.len() as u32, 4);
        for &(n, v) in vals {
            let n = self.str(n);
            self.u32(n);
            self.u32(v as u32);
        }
        id
    }

    fn enum64(&mut self, name: &str, signed: bool, vals: &[(&str, i64)]) -> u32 {
        let id = self.header(name, 19, signed, vals.len() as u32, 8);
        for &(n, v) in vals {
            let n = self.str(n);
            self.u32(n);
            self.u32(v as u64 as u32);
            self.u32(((v as u64) >> 32) as u32);
        }
        id
    }

    fn fwd(&mut self, name: &str, is_union: bool) -> u32 {
        self.header(name, 7, is_union, 0, 0)
    }

    fn typedef(&mut self, name: &str, target: u32) -> u32 {
        self.header(name, 8, false, 0, target)
    }

    fn volatile(&mut self, target: u32) -> u32 {
        self.header("", 9, false, 0, target)
    }

    fn const_(&mut self, target: u32) -> u32 {
        self.header("", 10, false, 0, target)
    }

    fn restrict(&mut self, target: u32) -> u32 {
        self.header("", 11, false, 0, target)
    }

    fn func(&mut self, name: &str, proto: u32) -> u32 {
        self.header(name, 12, false, 1, proto)
    }

    fn func_proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
        let id = self.header("", 13, false, params.len() as u32, ret);
        for &(n, ty) in params {
            let n = self.str(n);
            self.u32(n);
            self.u32(ty);
        }
        id
    }

    fn var(&mut self, name: &str, ty: u32) -> u32 {
        let id = self.header(name, 14, false, 0, ty);
        self.u32(1);
        id
    }

    fn datasec(&mut self, name: &str, size: u32, vars: &[(u32, u32, u32)]) -> u32 {
        let id = self.header(name, 15, false, vars.len() as u32, size);
        for &(ty, off, sz) in vars {
            self.u32(ty);
            self.u32(off);
            self.u32(sz);
        }
        id
    }

    fn float(&mut self, name: &str, size: u32) -> u32 {
        self.header(name, 16, false, 0, size)
    }

    fn decl_tag(&mut self, name: &str, target: u32, component_idx: i32) -> u32 {
        let id = self.header(name, 17, false, 0, target);
        self.u32(component_idx as u32);
        id
    }

    fn type_tag(&mut self, name: &str, target: u32) -> u32 {
        self.header(name, 18, false, 0, target)
    }

    /// header + types + strings.
    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.push(BTF_VERSION);
        out.push(0); // flags
        let type_len = self.types.len() as u32;
        for v in [
            HEADER_LEN as u32,
            0,
            type_len,
            type_len,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// Ids of interesting types in the sample blob.
struct Sample {
    blob: Vec<u8>,
    int: u32,
    long: u32,
    uid_t: u32,
    kuid_anon: u32,
    kuid_t: u32,
    cred: u32,
    const_cred: u32,
    cred_ptr: u32,
    pcpu: u32,
    pcpu4: u32,
    task: u32,
    task_ptr: u32,
    void_ptr: u32,
    proto: u32,
    proto_ptr: u32,
    restrict_ptr: u32,
    char_ptr_ptr: u32,
    matrix: u32,
    fwd_union: u32,
    var: u32,
    func: u32,
}

fn sample() -> Sample {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, 32, INT_SIGNED);
    let uint = b.int("unsigned int", 4, 32, 0);
    let chr = b.int("char", 1, 8, INT_CHAR | INT_SIGNED);
    let boolean = b.int("_Bool", 1, 8, INT_BOOL);
    let long = b.int("long", 8, 64, INT_SIGNED);
    let bool_t = b.typedef("bool", boolean);
    let uid_t = b.typedef("uid_t", uint);
    let kuid_anon = b.struct_("", 4, &[("val", uid_t, 0)]);
    let kuid_t = b.typedef("kuid_t", kuid_anon);
    let cred = b.struct_(
        "cred",
        12,
        &[("usage", int, 0), ("uid", kuid_t, 32), ("gid", kuid_t, 64)],
    );
    let const_cred = b.const_(cred);
    let cred_ptr = b.ptr(const_cred);
    let sig_anon = b.struct_("", 8, &[("si_code", int, 0), ("si_errno", int, 32)]);
    let char8 = b.array(chr, int, 8);
    let char16 = b.array(chr, int, 16);
    let sig_union = b.union_("", 8, &[("", sig_anon, 0), ("_pad", char8, 0)]);
    let pcpu = b.struct_("percpu_counter", 8, &[("count", long, 0)]);
    let pcpu4 = b.array(pcpu, int, 4);
    let vol_long = b.volatile(long);
    // PTR -> TYPE_TAG("rcu") -> struct task (defined right after).
    let task_id = b.next_id() + 2;
    let tag = b.type_tag("rcu", task_id);
    let task_ptr = b.ptr(tag);
    let task = b.struct_kf(
        "task",
        112,
        &[
            ("state", vol_long, 0, 0),
            ("pid", int, 64, 0),
            ("tgid", int, 96, 0),
            ("", sig_union, 128, 0),
            ("flags_a", uint, 192, 3),
            ("flags_b", uint, 195, 5),
            ("misaligned", chr, 204, 0),
            ("parent", task_ptr, 256, 0),
            ("real_cred", cred_ptr, 320, 0),
            ("cred_copy", cred, 384, 0),
            ("comm", char16, 512, 0),
            ("rss", pcpu4, 640, 0),
        ],
    );
    assert_eq!(task, task_id);
    b.typedef("task_t", task);
    let void_ptr = b.ptr(0);
    b.union_(
        "sigval_u",
        8,
        &[("sival_int", int, 0), ("sival_ptr", void_ptr, 0)],
    );
    // Legacy (kind_flag = 0) bitfield: an INT with 3 bits at int offset 0.
    let int3 = b.int("unsigned int", 4, 3, 0);
    b.struct_("legacy", 4, &[("lbits", int3, 0)]);

    b.enum32(
        "pid_type",
        false,
        &[("PIDTYPE_PID", 0), ("PIDTYPE_TGID", 1), ("PIDTYPE_MAX", 4)],
    );
    b.enum32(
        "",
        true,
        &[("MM_FILEPAGES", 0), ("MM_ANONPAGES", 1), ("NEG_ONE", -1)],
    );
    b.enum32("", false, &[("UNSIGNED_BIG", -1)]);
    b.enum64("big", false, &[("BIG_VAL", 1 << 40)]);
    b.enum64("", true, &[("BIG_NEG", -(1 << 40))]);

    let proto = b.func_proto(
        0,
        &[
            ("__data", void_ptr),
            ("p", task_ptr),
            ("group_dead", bool_t),
        ],
    );
    let proto_ptr = b.ptr(proto);
    b.typedef("btf_trace_foo", proto_ptr);
    // A tracepoint typedef of the wrong shape.
    b.typedef("btf_trace_bad", int);
    let func = b.func("do_foo", proto);

    // The remaining kinds.
    b.fwd("fwd_struct", false);
    let fwd_union = b.fwd("fwd_union", true);
    let restrict_ptr = b.restrict(task_ptr);
    b.float("double", 8);
    let var = b.var("some_var", int);
    b.datasec(".data", 4, &[(var, 0, 4)]);
    b.decl_tag("user", task, 1);
    b.decl_tag("kfunc", func, -1);
    let char_ptr = b.ptr(chr);
    let char_ptr_ptr = b.ptr(char_ptr);
    let row = b.array(int, int, 3);
    let matrix = b.array(row, int, 2);
    Sample {
        blob: b.build(),
        int,
        long,
        uid_t,
        kuid_anon,
        kuid_t,
        cred,
        const_cred,
        cred_ptr,
        pcpu,
        pcpu4,
        task,
        task_ptr,
        void_ptr,
        proto,
        proto_ptr,
        restrict_ptr,
        char_ptr_ptr,
        matrix,
        fwd_union,
        var,
        func,
    }
}

/// The sample blob, a seed of the `btf` fuzz target.
pub(crate) fn sample_blob() -> Vec<u8> {
    sample().blob
}

/// A blob with the cycles and dangling references of `dangling_and_cyclic_references`
/// and a self-referencing prototype, a seed of the `btf` fuzz target.
pub(crate) fn cyclic_blob() -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, 32, INT_SIGNED);
    let a = b.next_id();
    b.typedef("loop_a", a + 1);
    b.typedef("loop_b", a);
    let selfish = b.next_id();
    b.struct_("selfish", 4, &[("", selfish, 0), ("m", int, 0)]);
    b.struct_("holder", 8, &[("x", 999, 0), ("l", a, 0)]);
    let proto = b.next_id();
    b.func_proto(proto + 1, &[("a", proto + 1), ("b", proto + 1)]);
    let ptr = b.ptr(proto);
    b.typedef("btf_trace_loop", ptr);
    b.build()
}

fn info(btf: &Btf, outer: &str, path: &[&str]) -> MemberInfo {
    btf.member(outer, path)
        .unwrap_or_else(|e| panic!("member {outer} {path:?}: {e}"))
}

#[test]
fn sample_offsets_and_sizes() {
    let s = sample();
    let btf = Btf::parse(&s.blob).expect("sample parses");

    assert_eq!(
        info(&btf, "task", &["pid"]),
        MemberInfo {
            offset: 8,
            type_id: s.int,
            size: 4
        }
    );
    assert_eq!(btf.member_offset("task", &["tgid"]).ok(), Some(12));
    // Anonymous union -> anonymous struct -> named member.
    assert_eq!(info(&btf, "task", &["si_code"]).offset, 16);
    assert_eq!(info(&btf, "task", &["si_errno"]).offset, 20);
    let pad = info(&btf, "task", &["_pad"]);
    assert_eq!((pad.offset, pad.size), (16, 8));
    assert_eq!(btf.type_name(pad.type_id), "char[8]");

    let state = info(&btf, "task", &["state"]);
    assert_eq!((state.offset, state.size), (0, 8));
    assert_eq!(btf.type_name(state.type_id), "volatile long");
    assert_eq!(btf.resolve(state.type_id).ok(), Some(s.long));

    let parent = info(&btf, "task", &["parent"]);
    assert_eq!((parent.offset, parent.size), (32, 8));
    assert_eq!(parent.type_id, s.task_ptr);
    assert_eq!(btf.type_name(parent.type_id), "struct task *");

    let real_cred = info(&btf, "task", &["real_cred"]);
    assert_eq!((real_cred.offset, real_cred.size), (40, 8));
    assert_eq!(btf.type_name(real_cred.type_id), "const struct cred *");

    // Nested named struct member, then typedef -> anonymous struct -> member.
    let uid = info(&btf, "task", &["cred_copy", "uid", "val"]);
    assert_eq!(
        uid,
        MemberInfo {
            offset: 52,
            type_id: s.uid_t,
            size: 4
        }
    );
    assert_eq!(btf.type_name(uid.type_id), "uid_t");
    let kuid = info(&btf, "task", &["cred_copy", "uid"]);
    assert_eq!((kuid.offset, kuid.size, kuid.type_id), (52, 4, s.kuid_t));
    assert_eq!(btf.type_name(kuid.type_id), "kuid_t");
    assert_eq!(btf.member_offset("cred", &["uid", "val"]).ok(), Some(4));
    assert_eq!(btf.member_offset("cred", &["gid", "val"]).ok(), Some(8));

    let comm = info(&btf, "task", &["comm"]);
    assert_eq!((comm.offset, comm.size), (64, 16));
    assert_eq!(btf.type_name(comm.type_id), "char[16]");

    let rss = info(&btf, "task", &["rss"]);
    assert_eq!((rss.offset, rss.size, rss.type_id), (80, 32, s.pcpu4));
    assert_eq!(btf.type_name(rss.type_id), "struct percpu_counter[4]");
    assert_eq!(btf.array_info(rss.type_id), Some((s.pcpu, 4)));
    assert_eq!(btf.array_info(s.int), None);
    assert_eq!(btf.struct_name_of(s.pcpu), Some("percpu_counter"));
    assert_eq!(btf.struct_name_of(s.pcpu4), None);
    assert_eq!(btf.struct_name_of(s.const_cred), Some("cred"));
    assert_eq!(btf.struct_name_of(s.kuid_t), None); // anonymous
    assert_eq!(btf.struct_name_of(s.fwd_union), Some("fwd_union"));

    // Typedef'd outer, union outer, empty path.
    assert_eq!(btf.member_offset("task_t", &["tgid"]).ok(), Some(12));
    let sival = info(&btf, "sigval_u", &["sival_ptr"]);
    assert_eq!(
        (sival.offset, sival.size, sival.type_id),
        (0, 8, s.void_ptr)
    );
    assert_eq!(
        info(&btf, "task", &[]),
        MemberInfo {
            offset: 0,
            type_id: s.task,
            size: 112
        }
    );

    assert_eq!(btf.struct_size("task").ok(), Some(112));
    assert_eq!(btf.struct_size("cred").ok(), Some(12));
    assert_eq!(btf.struct_size("task_t").ok(), Some(112));
    assert_eq!(btf.struct_size("percpu_counter").ok(), Some(8));

    assert_eq!(btf.resolve(0).ok(), Some(0));
    assert_eq!(btf.resolve(s.kuid_t).ok(), Some(s.kuid_anon));
    assert_eq!(btf.resolve(s.const_cred).ok(), Some(s.cred));
    assert_eq!(btf.resolve(s.restrict_ptr).ok(), Some(s.task_ptr));
    assert_eq!(btf.type_size(s.cred_ptr).ok(), Some(8));
    assert_eq!(btf.type_size(s.pcpu4).ok(), Some(32));
    assert_eq!(btf.type_size(s.kuid_t).ok(), Some(4));
    assert_eq!(btf.type_size(s.matrix).ok(), Some(24));
    assert_eq!(btf.type_size(s.var).ok(), Some(4));
    assert!(matches!(btf.type_size(0), Err(BtfError::NoSize { .. })));
    assert!(matches!(
        btf.type_size(s.proto),
        Err(BtfError::NoSize { .. })
    ));
    assert!(matches!(
        btf.type_size(s.fwd_union),
        Err(BtfError::NoSize { .. })
    ));
}

#[test]
fn sample_type_names() {
    let s = sample();
    let btf = Btf::parse(&s.blob).expect("sample parses");
    assert_eq!(btf.type_name(0), "void");
    assert_eq!(btf.type_name(s.int), "int");
    assert_eq!(btf.type_name(s.void_ptr), "void *");
    assert_eq!(btf.type_name(s.char_ptr_ptr), "char **");
    assert_eq!(btf.type_name(s.matrix), "int[2][3]");
    assert_eq!(btf.type_name(s.restrict_ptr), "struct task * restrict");
    assert_eq!(btf.type_name(s.kuid_anon), "struct {...}");
    assert_eq!(btf.type_name(s.cred), "struct cred");
    assert_eq!(btf.type_name(s.fwd_union), "union fwd_union");
    assert_eq!(
        btf.type_name(s.proto_ptr),
        "void (*)(void *, struct task *, bool)"
    );
    assert_eq!(btf.type_name(s.proto), "void (void *, struct task *, bool)");
    assert_eq!(btf.type_name(s.func), "do_foo");
    assert_eq!(btf.type_name(s.var), "some_var");
    assert_eq!(btf.type_name(99_999), "<bad type id 99999>");
}

#[test]
fn sample_enums_and_tracepoints() {
    let s = sample();
    let btf = Btf::parse(&s.blob).expect("sample parses");
    assert_eq!(btf.enum_value("PIDTYPE_TGID"), Some(1));
    assert_eq!(btf.enum_value("PIDTYPE_MAX"), Some(4));
    assert_eq!(btf.enum_value("MM_ANONPAGES"), Some(1));
    assert_eq!(btf.enum_value("MM_FILEPAGES"), Some(0));
    assert_eq!(btf.enum_value("NEG_ONE"), Some(-1));
    assert_eq!(btf.enum_value("UNSIGNED_BIG"), Some(0xffff_ffff));
    assert_eq!(btf.enum_value("BIG_VAL"), Some(1 << 40));
    assert_eq!(btf.enum_value("BIG_NEG"), Some(-(1 << 40)));
    assert_eq!(btf.enum_value("NOPE"), None);
    assert_eq!(btf.enum_value(""), None);

    assert_eq!(
        btf.tracepoint_args("foo"),
        Some(vec!["struct task *".to_string(), "bool".to_string()])
    );
    assert_eq!(btf.tracepoint_args("bar"), None);
    assert_eq!(btf.tracepoint_args("bad"), None);
}

mod errors;

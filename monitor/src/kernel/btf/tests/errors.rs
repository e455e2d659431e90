//! Malformed, truncated and hostile BTF: clear errors, never a panic; and the running
//! kernel's own BTF.

use super::*;

#[test]
fn sample_errors() {
    let s = sample();
    let btf = Btf::parse(&s.blob).expect("sample parses");

    let e = btf.member("nosuch", &["pid"]).expect_err("missing struct");
    assert!(matches!(&e, BtfError::StructNotFound { name } if name == "nosuch"));
    assert_eq!(
        e.to_string(),
        "kernel BTF has no struct or union named `nosuch`"
    );
    assert!(matches!(
        btf.struct_size("nosuch"),
        Err(BtfError::StructNotFound { .. })
    ));
    // A FUNC is not a struct, even though the name exists elsewhere.
    assert!(matches!(
        btf.member("do_foo", &["x"]),
        Err(BtfError::StructNotFound { .. })
    ));

    let e = btf
        .member("task", &["foo", "bar"])
        .expect_err("missing member");
    assert!(matches!(&e, BtfError::MemberNotFound { .. }));
    assert_eq!(
        e.to_string(),
        "kernel BTF has no member `foo.bar` in struct task"
    );
    let e = btf
        .member("task", &["cred_copy", "nope"])
        .expect_err("missing nested member");
    assert!(
        matches!(&e, BtfError::MemberNotFound { path, struct_name, .. }
                if path == "cred_copy.nope" && struct_name == "task")
    );
    let e = btf
        .member("sigval_u", &["x"])
        .expect_err("missing in union");
    assert_eq!(
        e.to_string(),
        "kernel BTF has no member `x` in union sigval_u"
    );

    for (field, bit_offset, bits) in [
        ("flags_a", 192, 3),
        ("flags_b", 195, 5),
        ("misaligned", 204, 0),
    ] {
        let e = btf.member("task", &[field]).expect_err("bitfield");
        assert!(
            matches!(&e, BtfError::Bitfield { path, bit_offset: o, bits: b, .. }
                    if path == field && *o == bit_offset && *b == bits),
            "{field}: {e}"
        );
    }
    let e = btf
        .member("legacy", &["lbits"])
        .expect_err("legacy bitfield");
    assert!(matches!(e, BtfError::Bitfield { bits: 3, .. }), "{e}");

    let e = btf.member("task", &["pid", "x"]).expect_err("int");
    assert!(
        matches!(&e, BtfError::NotAStruct { path, type_name, .. } if path == "pid" && type_name == "int"),
        "{e}"
    );
    // Pointers are not followed.
    let e = btf.member("task", &["real_cred", "uid"]).expect_err("ptr");
    assert!(matches!(e, BtfError::NotAStruct { .. }), "{e}");

    assert!(matches!(
        btf.resolve(99_999),
        Err(BtfError::BadTypeId { id: 99_999, .. })
    ));
    assert!(matches!(
        btf.type_size(99_999),
        Err(BtfError::BadTypeId { .. })
    ));
    assert_eq!(btf.array_info(99_999), None);
    assert_eq!(btf.struct_name_of(99_999), None);
}

/// Exercises every public lookup; only checks that nothing panics.
fn poke(btf: &Btf) {
    for outer in ["task", "cred", "sigval_u", "legacy", "task_t", "holder"] {
        for path in [
            &["pid"][..],
            &["si_code"],
            &["cred_copy", "uid", "val"],
            &["rss"],
            &["x"],
            &["y"],
            &[],
        ] {
            let _ = btf.member(outer, path);
        }
        let _ = btf.struct_size(outer);
    }
    for id in 0..btf.type_count() + 3 {
        let _ = btf.resolve(id);
        let _ = btf.type_size(id);
        let _ = btf.type_name(id);
        let _ = btf.array_info(id);
        let _ = btf.struct_name_of(id);
    }
    let _ = btf.enum_value("BIG_NEG");
    let _ = btf.tracepoint_args("foo");
    let _ = format!("{btf:?}");
}

#[test]
fn every_prefix_is_an_error_not_a_panic() {
    let s = sample();
    for len in 0..s.blob.len() {
        assert!(
            Btf::parse(&s.blob[..len]).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
    assert!(Btf::parse(&s.blob).is_ok());
    assert!(matches!(
        Btf::parse(&s.blob[..10]),
        Err(BtfError::Truncated { .. })
    ));
}

#[test]
fn truncated_type_section_never_panics() {
    // Keep the string section where it is but claim a shorter type section, so the
    // cut lands inside records (error) or on a record boundary (fewer types, dangling
    // references).
    let s = sample();
    let type_len = le32(&s.blob, 12).expect("type_len") as usize;
    let mut boundaries = 0;
    for cut in 0..type_len {
        let mut blob = s.blob.clone();
        blob[12..16].copy_from_slice(&(cut as u32).to_le_bytes());
        match Btf::parse(&blob) {
            Ok(btf) => {
                boundaries += 1;
                poke(&btf);
            }
            Err(e) => assert!(matches!(e, BtfError::Truncated { .. }), "{e}"),
        }
    }
    assert!(boundaries > 10);
}

#[test]
fn corrupted_blobs_never_panic() {
    let s = sample();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..3000 {
        let mut blob = s.blob.clone();
        for _ in 0..(next() % 4 + 1) {
            let pos = (next() % blob.len() as u64) as usize;
            blob[pos] = next() as u8;
        }
        if let Ok(btf) = Btf::parse(&blob) {
            poke(&btf);
        }
    }
}

#[test]
fn header_errors() {
    let s = sample();
    let mut blob = s.blob.clone();
    blob[0] = 0;
    blob[1] = 0;
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::BadMagic { found: 0 })
    ));
    let mut blob = s.blob.clone();
    blob.swap(0, 1);
    let e = Btf::parse(&blob).expect_err("swapped");
    assert!(matches!(e, BtfError::ByteSwapped), "{e}");
    let mut blob = s.blob.clone();
    blob[2] = 2;
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::UnsupportedVersion { version: 2 })
    ));
    let mut blob = s.blob.clone();
    blob[4] = 8; // hdr_len 8
    assert!(matches!(Btf::parse(&blob), Err(BtfError::BadHeader { .. })));
    let mut blob = s.blob.clone();
    blob[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // str_len
    assert!(matches!(Btf::parse(&blob), Err(BtfError::Truncated { .. })));
    assert!(matches!(Btf::parse(&[]), Err(BtfError::Truncated { .. })));

    // An extended header (hdr_len > 24) is fine.
    let mut blob = s.blob[..HEADER_LEN].to_vec();
    blob[4..8].copy_from_slice(&32u32.to_le_bytes());
    blob.extend_from_slice(&[0; 8]);
    blob.extend_from_slice(&s.blob[HEADER_LEN..]);
    let btf = Btf::parse(&blob).expect("extended header");
    assert_eq!(btf.member_offset("task", &["tgid"]).ok(), Some(12));

    let missing = Path::new("/nonexistent/btf/vmlinux");
    let e = Btf::from_file(missing).expect_err("missing file");
    assert!(matches!(&e, BtfError::Io { path, .. } if path == missing));
    assert!(e.to_string().contains("/nonexistent/btf/vmlinux"), "{e}");
}

#[test]
fn malformed_types() {
    // Unknown kinds.
    for kind in [0, 20, 31] {
        let mut b = BtfBuilder::new();
        b.int("int", 4, 32, INT_SIGNED);
        b.header("x", kind, false, 0, 0);
        assert!(
            matches!(
                Btf::parse(&b.build()),
                Err(BtfError::UnknownKind { id: 2, kind: k }) if k == kind
            ),
            "kind {kind}"
        );
    }
    // A name offset past the string section.
    let mut b = BtfBuilder::new();
    b.int("int", 4, 32, INT_SIGNED);
    let mut blob = b.build();
    blob[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::BadStringOffset { offset: 1000, .. })
    ));
    // A member name offset past the string section.
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, 32, INT_SIGNED);
    b.struct_("s", 4, &[("m", int, 0)]);
    let mut blob = b.build();
    let member_name = HEADER_LEN + 16 + 12;
    blob[member_name..member_name + 4].copy_from_slice(&5000u32.to_le_bytes());
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::BadStringOffset { offset: 5000, .. })
    ));
}

#[test]
fn dangling_and_cyclic_references() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, 32, INT_SIGNED);
    let bad_ptr = b.ptr(999);
    let broken = b.typedef("broken", 999);
    b.struct_(
        "holder",
        24,
        &[("x", 999, 0), ("y", bad_ptr, 64), ("z", broken, 128)],
    );
    // typedef loop: a -> b -> a
    let a = b.next_id();
    b.typedef("loop_a", a + 1);
    b.typedef("loop_b", a);
    // A struct that contains itself as an anonymous member.
    let selfish = b.next_id();
    b.struct_("selfish", 4, &[("", selfish, 0), ("m", int, 0)]);
    b.struct_("holds_loop", 4, &[("l", a, 0)]);
    let arr_loop = b.next_id();
    b.array(arr_loop, int, 2);
    // Broken tracepoint typedefs.
    b.typedef("btf_trace_dangling", 999);
    let p = b.ptr(999);
    b.typedef("btf_trace_dangling2", p);
    let btf = Btf::parse(&b.build()).expect("parses; references are checked lazily");

    assert!(matches!(
        btf.member("holder", &["x"]),
        Err(BtfError::BadTypeId { id: 999, .. })
    ));
    let y = btf
        .member("holder", &["y"])
        .expect("pointer to garbage still has a size");
    assert_eq!((y.offset, y.size), (8, 8));
    assert_eq!(btf.type_name(y.type_id), "<bad type id 999> *");
    assert!(matches!(
        btf.member("holder", &["z"]),
        Err(BtfError::BadTypeId { .. })
    ));
    assert!(matches!(
        btf.member("holder", &["z", "q"]),
        Err(BtfError::BadTypeId { .. })
    ));
    assert!(matches!(
        btf.resolve(broken),
        Err(BtfError::BadTypeId { .. })
    ));
    assert!(matches!(
        btf.type_size(broken),
        Err(BtfError::BadTypeId { .. })
    ));
    assert_eq!(btf.type_name(broken), "broken");

    assert!(matches!(btf.resolve(a), Err(BtfError::TooDeep { .. })));
    assert!(matches!(btf.type_size(a), Err(BtfError::TooDeep { .. })));
    assert!(matches!(
        btf.member("holds_loop", &["l"]),
        Err(BtfError::TooDeep { .. })
    ));
    assert!(matches!(
        btf.member("selfish", &["nope"]),
        Err(BtfError::TooDeep { .. })
    ));
    assert!(matches!(
        btf.type_size(arr_loop),
        Err(BtfError::TooDeep { .. })
    ));
    assert!(btf.type_name(arr_loop).contains("too deep"));
    assert_eq!(btf.array_info(a), None);
    assert_eq!(btf.struct_name_of(a), None);
    assert_eq!(btf.tracepoint_args("dangling"), None);
    assert_eq!(btf.tracepoint_args("dangling2"), None);
}

/// Found by the `btf` fuzz target: a function prototype whose return and parameter types
/// point back to it was described to a depth of 64 along every branch, (parameters + 1)^32
/// types: `type_name` (and `tracepoint_args`, on the kernel's own BTF at start-up) never
/// returned. A description now visits a bounded number of types, and names are capped.
#[test]
fn cyclic_prototypes_are_described_in_bounded_time() {
    let mut b = BtfBuilder::new();
    let proto = b.next_id();
    let ptr = proto + 1;
    b.func_proto(ptr, &[("a", ptr), ("b", ptr), ("c", ptr)]);
    b.ptr(proto);
    b.typedef("btf_trace_loop", ptr);
    // A qualifier chain through a prototype and back.
    let c = b.next_id();
    b.const_(c + 1);
    b.func_proto(c, &[("x", c)]);
    let long_name = "n".repeat(100_000);
    let named = b.struct_(&long_name, 4, &[]);
    let many: Vec<(&str, u32)> = (0..1000).map(|_| ("p", named)).collect();
    let wide = b.func_proto(named, &many);
    let btf = Btf::parse(&b.build()).expect("parses");
    let started = std::time::Instant::now();
    for id in [proto, ptr, c, c + 1, wide] {
        let name = btf.type_name(id);
        assert!(name.len() < 256 * 1024, "{} bytes", name.len());
    }
    let args = btf
        .tracepoint_args("loop")
        .expect("the typedef has the shape");
    assert_eq!(args.len(), 2);
    assert!(btf.type_name(proto).contains("too deep"));
    assert!(btf.type_name(named).len() <= 520);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    poke(&btf);
}

#[test]
fn kernel_vmlinux() {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping: cannot read {}: {e}", path.display());
            return;
        }
    };
    let start = std::time::Instant::now();
    let btf = Btf::parse(&data).expect("vmlinux BTF parses");
    eprintln!(
        "parsed {} bytes of vmlinux BTF in {:?}: {btf:?}",
        data.len(),
        start.elapsed()
    );

    let pid = btf
        .member_offset("task_struct", &["pid"])
        .expect("task_struct.pid");
    let tgid = btf
        .member_offset("task_struct", &["tgid"])
        .expect("task_struct.tgid");
    assert_eq!(tgid, pid + 4);
    let comm = btf
        .member("task_struct", &["comm"])
        .expect("task_struct.comm");
    assert_eq!(comm.size, 16);
    assert_eq!(
        btf.member_offset("kernel_siginfo", &["si_code"]).ok(),
        Some(8)
    );
    assert!(btf.enum_value("memory_cgrp_id").is_some());
    let args = btf
        .tracepoint_args("sched_process_exit")
        .expect("btf_trace_sched_process_exit");
    assert_eq!(
        args.first().map(String::as_str),
        Some("struct task_struct *")
    );
    assert_eq!(
        btf.member("cred", &["uid", "val"]).map(|m| m.size).ok(),
        Some(4)
    );
    assert!(btf.struct_size("task_struct").is_ok_and(|s| s > tgid));
    eprintln!(
        "task_struct.pid={pid} tgid={tgid} comm@{} sched_process_exit{args:?}",
        comm.offset
    );
    // Every type can be described and sized (or refused) without panicking.
    for id in 0..=btf.type_count() + 1 {
        let _ = btf.type_name(id);
        let _ = btf.type_size(id);
        let _ = btf.array_info(id);
        let _ = btf.struct_name_of(id);
    }
}

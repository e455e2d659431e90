//! The report store and the list of `claude-monitor reports`.

use super::*;

#[test]
fn store_writes_json_and_text_and_reads_them_back() {
    let dir = temp_dir("store-rw");
    let store = ReportStore::in_data_dir(&dir);
    let r = build_test(
        &oom_event(22606, "python3"),
        Reason::OomKill,
        Context::default(),
    );
    let path = store.write(&r).unwrap();
    assert_eq!(path, dir.join("reports/20261121T220158Z-22606-oom.json"));
    let txt = fs::read_to_string(dir.join("reports/20261121T220158Z-22606-oom.txt")).unwrap();
    assert_eq!(txt, render_text(&r));
    let back = store.get(&r.id).unwrap();
    assert_eq!(back.id, r.id);
    assert_eq!(back.summary, r.summary);
    assert_eq!(back.process.pid, 22606);
    assert_eq!(back.session, r.session);
    assert_eq!(back.oom, r.oom);
    assert_eq!(back.memcg, r.memcg);
    assert_eq!(back.event["pid"], 22606);
    // No temp files left behind.
    let names: Vec<String> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn store_never_overwrites_a_report_with_the_same_id() {
    let dir = temp_dir("store-collide");
    let store = ReportStore::new(dir.join("reports"));
    let r = build_test(
        &oom_event(22606, "python3"),
        Reason::OomKill,
        Context::default(),
    );
    let first = store.write(&r).unwrap();
    let second = store.write(&r).unwrap();
    let third = store.write(&r).unwrap();
    assert_ne!(first, second);
    assert!(second.ends_with("20261121T220158Z-22606-oom-2.json"));
    assert!(third.ends_with("20261121T220158Z-22606-oom-3.json"));
    assert!(
        dir.join("reports/20261121T220158Z-22606-oom-2.txt")
            .is_file()
    );
    assert_eq!(
        store.get("20261121T220158Z-22606-oom-2").unwrap().id,
        "20261121T220158Z-22606-oom-2"
    );
    // The exact id wins over being a prefix of the others.
    assert_eq!(
        store.get("20261121T220158Z-22606-oom").unwrap().id,
        "20261121T220158Z-22606-oom"
    );
    let err = store.get("20261121T220158Z-22606").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("ambiguous"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

fn three_reports(store: &ReportStore) {
    let oom = at(
        oom_event(22606, "python3"),
        "2026-11-21T22:00:00.000000000Z",
    );
    let mut crash = at(exit_event(703, "python3"), "2026-11-21T23:00:00.000000000Z");
    signaled(&mut crash, 11, CauseKind::Crashed);
    let mut other = at(exit_event(42, "make"), "2026-11-21T21:00:00.000000000Z");
    exit_mut(&mut other).status.exit_code = Some(3);
    other.attr.as_mut().unwrap().session = Some(SessionJson {
        id: "2000:7".to_owned(),
        claude_session_id: Some("aaaa1111-2222".to_owned()),
        ..session()
    });
    // Written out of order: the listing sorts.
    store
        .write(&build_test(&other, Reason::NonzeroExit, Context::default()))
        .unwrap();
    store
        .write(&build_test(&crash, Reason::Crashed, Context::default()))
        .unwrap();
    store
        .write(&build_test(&oom, Reason::OomKill, Context::default()))
        .unwrap();
}

fn ids(list: &[ReportSummary]) -> Vec<&str> {
    list.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn store_lists_newest_first_with_filters_and_limit() {
    let dir = temp_dir("store-list");
    let store = ReportStore::in_data_dir(&dir);
    assert!(
        store.list(&ListFilter::default()).unwrap().is_empty(),
        "no directory yet"
    );
    assert!(store.last().unwrap().is_none());
    three_reports(&store);
    let all = store.list(&ListFilter::default()).unwrap();
    assert_eq!(
        ids(&all),
        [
            "20261121T230000Z-703-crash",
            "20261121T220000Z-22606-oom",
            "20261121T210000Z-42-exit3"
        ]
    );
    let f = |session: Option<&str>, cause: Option<CauseKind>, limit: Option<usize>| ListFilter {
        session: session.map(str::to_owned),
        cause,
        reason: None,
        limit,
        uid: None,
    };
    assert_eq!(ids(&store.list(&f(None, None, Some(2))).unwrap()).len(), 2);
    assert_eq!(
        ids(&store.list(&f(None, None, Some(1))).unwrap()),
        ["20261121T230000Z-703-crash"]
    );
    assert_eq!(
        ids(&store
            .list(&f(None, Some(CauseKind::OomKilled), None))
            .unwrap()),
        ["20261121T220000Z-22606-oom"]
    );
    let by_reason = |reason| ListFilter {
        reason: Some(reason),
        ..ListFilter::default()
    };
    assert_eq!(
        ids(&store.list(&by_reason(Reason::OomKill)).unwrap()),
        ["20261121T220000Z-22606-oom"]
    );
    assert_eq!(
        ids(&store.list(&by_reason(Reason::NonzeroExit)).unwrap()),
        ["20261121T210000Z-42-exit3"]
    );
    assert!(
        store
            .list(&f(None, Some(CauseKind::Killed), None))
            .unwrap()
            .is_empty()
    );
    // Session by Claude Code session id prefix or by the agent session id prefix.
    assert_eq!(
        ids(&store.list(&f(Some("aaaa"), None, None)).unwrap()),
        ["20261121T210000Z-42-exit3"]
    );
    assert_eq!(
        ids(&store.list(&f(Some("2000:"), None, None)).unwrap()),
        ["20261121T210000Z-42-exit3"]
    );
    assert_eq!(store.list(&f(Some("3f2a"), None, None)).unwrap().len(), 2);
    assert_eq!(
        ids(&store
            .list(&f(Some("3f2a"), Some(CauseKind::Crashed), None))
            .unwrap()),
        ["20261121T230000Z-703-crash"]
    );
    assert_eq!(
        store.last().unwrap().unwrap().id,
        "20261121T230000Z-703-crash"
    );
    // Unique prefix.
    assert_eq!(
        store.get("20261121T21").unwrap().id,
        "20261121T210000Z-42-exit3"
    );
    assert_eq!(
        store.get("2026").unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        store.get("2025").unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        store.get("../reports/x").unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        store.get("").unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_and_temporary_files_are_skipped() {
    let dir = temp_dir("store-corrupt");
    let store = ReportStore::in_data_dir(&dir);
    three_reports(&store);
    // Newest by name and garbage inside, a truncated report, a leftover temp file.
    fs::write(
        store.dir().join("20991231T000000Z-1-oom.json"),
        b"{not json",
    )
    .unwrap();
    let good = fs::read(store.dir().join("20261121T230000Z-703-crash.json")).unwrap();
    fs::write(
        store.dir().join("20991231T000000Z-2-crash.json"),
        &good[..good.len() / 2],
    )
    .unwrap();
    fs::write(
        store.dir().join(".20991231T000000Z-3-oom.json.1.2.0.tmp"),
        &good,
    )
    .unwrap();
    fs::write(store.dir().join("notes.txt"), b"hello").unwrap();
    let all = store.list(&ListFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        store.last().unwrap().unwrap().id,
        "20261121T230000Z-703-crash"
    );
    let err = store.get("20991231T000000Z-1-oom").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        err.to_string().contains("20991231T000000Z-1-oom.json"),
        "{err}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn list_table_has_a_header_and_one_line_per_report() {
    let dir = temp_dir("store-table");
    let store = ReportStore::in_data_dir(&dir);
    three_reports(&store);
    let list = store.list(&ListFilter::default()).unwrap();
    let table = render_list(&list);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for h in [
        "ID",
        "TIME (UTC)",
        "CAUSE",
        "PID",
        "COMM",
        "SESSION",
        "SUMMARY",
    ] {
        assert!(lines[0].contains(h), "{}", lines[0]);
    }
    assert!(lines[1].starts_with("20261121T230000Z-703-crash  "));
    assert!(lines[1].contains("2026-11-21 23:00:00"));
    assert!(lines[1].contains("crashed"));
    assert!(lines[1].contains("3f2a9c1e…"));
    assert!(lines[3].contains("aaaa1111…"), "{}", lines[3]);
    // The summary is cut to one short column.
    assert!(lines[2].ends_with('…'), "{}", lines[2]);
    let summary_col = lines[0].find("SUMMARY").unwrap();
    // Aligned in characters (the session column holds a multi-byte '…').
    let at = lines[1].find("python3 (pid 703)").unwrap();
    assert_eq!(lines[1][..at].chars().count(), summary_col);
    assert_eq!(render_list(&[]), "no reports\n");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sizes_and_durations_read_well() {
    assert_eq!(fmt_bytes(512), "512 B");
    assert_eq!(fmt_bytes(64 << 20), "64.0 MiB");
    assert_eq!(fmt_bytes(LIMIT_1_7_GIB), "1.7 GiB");
    assert_eq!(fmt_ms(0.581), "1 ms");
    assert_eq!(fmt_ms(12_340.0), "12.3 s");
    assert_eq!(fmt_ms(718_000.0), "11 min 58 s");
    assert_eq!(fmt_ms(3.0 * 86_400_000.0 + 4.0 * 3_600_000.0), "3 d 4 h");
    assert_eq!(sanitize("a/b c:.."), "a_b_c_..");
    assert_eq!(sanitize("..x"), "x");
}

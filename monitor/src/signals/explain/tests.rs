use super::*;

fn title(code: u8) -> String {
    exit_code(code).title
}

#[test]
fn exit_code_conventions() {
    assert!(title(0).contains("success"), "{}", title(0));
    assert!(title(1).contains("general error"));
    assert!(title(2).contains("misuse"));
    assert!(title(126).contains("not executable"));
    assert!(title(127).contains("command not found"));
    assert!(title(128).contains("invalid argument"));
    assert!(title(255).contains("out of range"));
    assert!(title(255).contains("ssh"));
    assert!(
        exit_code(1)
            .common_causes
            .iter()
            .any(|c| c.contains("grep"))
    );
}

#[test]
fn exit_codes_from_signals() {
    assert!(
        title(137).starts_with("exit status 137 = 128 + 9: killed by SIGKILL"),
        "{}",
        title(137)
    );
    assert!(title(139).starts_with("exit status 139 = 128 + 11: killed by SIGSEGV"));
    assert!(title(143).starts_with("exit status 143 = 128 + 15: killed by SIGTERM"));
    assert!(title(130).starts_with("exit status 130 = 128 + 2: killed by SIGINT"));
    assert!(title(134).starts_with("exit status 134 = 128 + 6: killed by SIGABRT"));
    assert!(title(129).contains("SIGHUP"));
    assert!(title(148).contains("stopped by SIGTSTP"), "{}", title(148));
    // SIGCHLD cannot kill: say so instead of claiming it did.
    assert!(!title(145).contains("killed by"), "{}", title(145));
    assert!(exit_code(145).meaning.contains("more likely"));
    assert!(
        title(145).contains("SIGCHLD, which never kills"),
        "{}",
        title(145)
    );
    assert!(exit_code(145).common_causes[0].contains("exit(145)"));
    assert!(title(162).contains("SIGRTMIN+2"), "{}", title(162));
    assert!(title(192).contains("SIGRTMIN+32"), "{}", title(192));
    // The OOM killer must be among the causes of 137.
    let e = exit_code(137);
    assert!(e.common_causes.iter().any(|c| c.contains("OOM killer")));
    assert!(e.common_causes.iter().any(|c| c.contains("exit(137)")));
    assert!(e.what_to_do.iter().any(|c| c.contains("journalctl -k")));
}

#[test]
fn sysexits_and_program_specific() {
    assert!(title(64).contains("EX_USAGE"), "{}", title(64));
    assert!(title(78).contains("EX_CONFIG"));
    assert!(title(70).contains("EX_SOFTWARE"));
    assert!(title(200).contains("program-specific"), "{}", title(200));
    assert!(exit_code(200).meaning.contains("whatever the program"));
    assert!(title(3).contains("program-specific"));
    assert!(title(79).contains("program-specific"));
    assert!(title(193).contains("program-specific"));
    assert!(exit_code(124).meaning.contains("timeout"));
    // Every status has a title naming it and a non-empty meaning.
    for code in 0..=255u8 {
        let e = exit_code(code);
        assert!(
            e.title.starts_with(&format!("exit status {code}")),
            "{}",
            e.title
        );
        assert!(!e.meaning.is_empty());
        assert!(!e.what_to_do.is_empty(), "{code}");
    }
}

#[test]
fn every_standard_signal_is_explained() {
    for sig in 1..=31 {
        let e = signal(sig);
        let name = signal_name(sig).unwrap();
        assert!(e.title.starts_with(&name), "{}", e.title);
        assert!(e.meaning.len() > 40, "{sig}: {}", e.meaning);
        assert!(e.meaning.contains("Default action:"), "{sig}");
        assert!(default_action(sig).is_some(), "{sig}");
        assert!(!e.common_causes.is_empty(), "{sig}");
        assert!(!e.what_to_do.is_empty(), "{sig}");
        assert!(!signal_short(sig).is_empty());
    }
}

#[test]
fn default_actions_match_signal_7() {
    use DefaultAction::*;
    let expected = [
        (1, Terminate),
        (2, Terminate),
        (3, Core),
        (4, Core),
        (5, Core),
        (6, Core),
        (7, Core),
        (8, Core),
        (9, Terminate),
        (11, Core),
        (13, Terminate),
        (14, Terminate),
        (15, Terminate),
        (17, Ignore),
        (18, Continue),
        (19, Stop),
        (20, Stop),
        (21, Stop),
        (22, Stop),
        (23, Ignore),
        (24, Core),
        (25, Core),
        (28, Ignore),
        (31, Core),
        (34, Terminate),
        (64, Terminate),
    ];
    for (sig, action) in expected {
        assert_eq!(default_action(sig), Some(action), "{sig}");
    }
    assert_eq!(default_action(0), None);
    assert_eq!(default_action(65), None);
    assert!(DefaultAction::Core.kills());
    assert!(!DefaultAction::Stop.kills());
}

#[test]
fn signal_senders_are_named() {
    assert!(signal(9).common_causes.iter().any(|c| c.contains("OOM")));
    assert!(
        signal(9)
            .common_causes
            .iter()
            .any(|c| c.contains("kill -9"))
    );
    assert!(signal(2).meaning.contains("Ctrl+C"));
    assert!(signal(6).meaning.contains("abort()"));
    assert!(signal(13).meaning.contains("pipe"));
    assert!(signal(14).meaning.contains("alarm()"));
    assert!(signal(11).meaning.contains("kernel"));
    assert_eq!(
        signal_short(11),
        "segmentation fault: invalid memory access"
    );
}

#[test]
fn realtime_and_invalid_signals() {
    let e = signal(34);
    assert!(e.title.starts_with("SIGRTMIN+2 (signal 34)"), "{}", e.title);
    assert!(e.meaning.contains("Default action: terminate"));
    assert!(signal(32).meaning.contains("glibc"));
    assert!(!signal(40).meaning.contains("glibc"));
    assert!(signal_short(50).contains("real-time"));
    assert!(signal(0).meaning.contains("kill -0"));
    assert!(signal(65).title.contains("not a Linux signal"));
    assert!(signal(-3).title.contains("not a Linux signal"));
    assert_eq!(signal_short(99), "not a Linux signal number");
}

#[test]
fn query_forms() {
    let sig_title = |q: &str| explain(q).unwrap().title;
    assert_eq!(explain("137").unwrap(), exit_code(137));
    assert_eq!(explain(" 0 ").unwrap(), exit_code(0));
    assert_eq!(explain("255").unwrap(), exit_code(255));
    assert_eq!(explain("exit:2").unwrap(), exit_code(2));
    for q in [
        "SIGSEGV",
        "sigsegv",
        "segv",
        "Segv",
        "SIG11",
        "sig11",
        "signal:11",
        "signal 11",
        "SIGNAL=11",
    ] {
        assert!(sig_title(q).starts_with("SIGSEGV (signal 11)"), "{q}");
    }
    assert!(sig_title("Kill").starts_with("SIGKILL"));
    assert!(sig_title("SIGRTMIN+3").starts_with("SIGRTMIN+3 (signal 35)"));
    assert!(sig_title("rtmin").starts_with("SIGRTMIN (signal 32)"));
    assert!(sig_title("SIGRTMAX").starts_with("SIGRTMIN+32 (signal 64)"));
    assert!(sig_title("sigrtmax-2").starts_with("SIGRTMIN+30 (signal 62)"));
    assert!(sig_title("SIGIOT").starts_with("SIGABRT"));
    assert!(sig_title("poll").starts_with("SIGIO"));
}

#[test]
fn query_errors() {
    assert_eq!(explain("  "), Err(ExplainError::Empty));
    assert_eq!(explain("256"), Err(ExplainError::ExitStatusOutOfRange(256)));
    let msg = explain("256").unwrap_err().to_string();
    assert!(msg.contains("0..=255") && msg.contains("sees 0"), "{msg}");
    let msg = explain("-9").unwrap_err().to_string();
    assert!(msg.contains("SIGKILL"), "{msg}");
    assert!(explain("-9223372036854775808").is_err());
    assert!(explain("99999999999999999999").is_err());
    assert_eq!(explain("SIG99"), Err(ExplainError::NotASignal(99)));
    assert_eq!(explain("signal:0"), Err(ExplainError::NotASignal(0)));
    assert!(matches!(
        explain("SIGRTMIN+40"),
        Err(ExplainError::Unrecognized(_))
    ));
    assert!(matches!(
        explain("SIGRTMAX-33"),
        Err(ExplainError::Unrecognized(_))
    ));
    assert!(matches!(
        explain("9abc"),
        Err(ExplainError::Unrecognized(_))
    ));
    let err = explain("banana").unwrap_err();
    assert_eq!(err, ExplainError::Unrecognized("banana".to_owned()));
    let msg = err.to_string();
    for form in ["0..=255", "SIGSEGV", "SIGRTMIN+3", "SIG11", "signal:11"] {
        assert!(msg.contains(form), "{msg}");
    }
}

#[test]
fn display_is_readable() {
    let text = exit_code(137).to_string();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(exit_code(137).title.as_str()));
    assert!(text.contains("\nCommon causes:\n  - "), "{text}");
    assert!(text.contains("\nWhat to do:\n  - "), "{text}");
    let json = serde_json::to_value(exit_code(0)).unwrap();
    assert_eq!(json["title"], "exit status 0: success");
    assert!(json["common_causes"].as_array().unwrap().is_empty());
    // Empty sections are not printed.
    assert!(!exit_code(0).to_string().contains("Common causes"));
}

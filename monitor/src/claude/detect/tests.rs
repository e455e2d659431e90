use super::*;
use crate::claude::testutil::TempDir;

fn facts(exe: Option<&str>, comm: &str, argv: &[&str]) -> ProcFacts {
    ProcFacts {
        pid: 4242,
        comm: comm.into(),
        exe: exe.map(PathBuf::from),
        argv: argv.iter().map(|s| s.to_string()).collect(),
    }
}

fn rule_of(f: &ProcFacts) -> Option<String> {
    detect_claude_code(f).map(|d| d.rule)
}

#[test]
fn npm_native_binary() {
    let f = facts(
        Some("/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"),
        "claude.exe",
        &["claude", "--resume"],
    );
    assert_eq!(
        detect_claude_code(&f),
        Some(Detection {
            agent: "claude-code".into(),
            version: None,
            rule: "claude-code:npm-native".into(),
        })
    );
}

#[test]
fn platform_binary() {
    for exe in [
        "/home/u/.npm-global/lib/node_modules/@anthropic-ai/claude-code/node_modules/@anthropic-ai/claude-code-linux-x64/claude",
        "/usr/lib/node_modules/@anthropic-ai/claude-code-linux-arm64-musl/claude",
    ] {
        let f = facts(Some(exe), "claude", &["claude"]);
        assert_eq!(
            rule_of(&f).as_deref(),
            Some("claude-code:platform-binary"),
            "{exe}"
        );
    }
}

#[test]
fn native_installer_version_is_extracted() {
    let f = facts(
        Some("/home/u/.local/share/claude/versions/9.9.9"),
        "claude",
        &["claude", "-p", "hi"],
    );
    let d = detect_claude_code(&f).expect("detected");
    assert_eq!(d.rule, "claude-code:native-installer");
    assert_eq!(d.version.as_deref(), Some("9.9.9"));

    // Upgraded away while running: the kernel marks the unlinked file.
    let f = facts(
        Some("/root/.local/share/claude/versions/2.0.14 (deleted)"),
        "claude",
        &["claude"],
    );
    assert_eq!(
        detect_claude_code(&f).and_then(|d| d.version).as_deref(),
        Some("2.0.14")
    );

    let f = facts(
        Some("/home/u/.local/share/claude/versions/1.2.3-beta.1+build.5"),
        "x",
        &["claude"],
    );
    assert_eq!(
        detect_claude_code(&f).and_then(|d| d.version).as_deref(),
        Some("1.2.3-beta.1+build.5")
    );
}

#[test]
fn versions_dir_needs_a_semver_file() {
    for exe in [
        "/home/u/.local/share/claude/versions/latest",
        "/home/u/.local/share/claude/versions/9.9",
        "/home/u/.local/share/claude/versions/9.9.9/claude",
        "/home/u/.local/share/claude/versions/9.9.9.tmp",
        "/home/u/.local/share/other/versions/9.9.9",
    ] {
        let f = facts(Some(exe), "x", &["x"]);
        assert_eq!(detect_claude_code(&f), None, "{exe}");
    }
}

#[test]
fn version_from_the_package_json() {
    let root = crate::testutil::TempDir::new("detect-pkg");
    let pkg = root
        .path()
        .join("lib/node_modules/@anthropic-ai/claude-code");
    fs::create_dir_all(pkg.join("bin")).expect("mkdir");
    fs::write(
        pkg.join("package.json"),
        r#"{"name":"x","version":"2.1.100"}"#,
    )
    .expect("write");
    let cli = pkg.join("cli.js").display().to_string();
    let node = facts(Some("/usr/bin/node"), "node", &["node", &cli, "-p"]);
    assert_eq!(package_version(&node).as_deref(), Some("2.1.100"));
    let exe = pkg.join("bin/claude.exe");
    let native = facts(exe.to_str(), "claude", &["claude"]);
    assert_eq!(package_version(&native).as_deref(), Some("2.1.100"));
    // Not a version: nothing.
    fs::write(pkg.join("package.json"), r#"{"version":"1.0 $(rm -rf /)"}"#).expect("w");
    assert_eq!(package_version(&node), None);
    // A symlinked package.json is not followed.
    fs::remove_file(pkg.join("package.json")).expect("rm");
    fs::write(root.path().join("other.json"), r#"{"version":"6.6.6"}"#).expect("w");
    std::os::unix::fs::symlink(root.path().join("other.json"), pkg.join("package.json"))
        .expect("symlink");
    assert_eq!(package_version(&node), None);
    // npm's symlink to the script, as node's argv shows it.
    let link = root.path().join("claude");
    fs::remove_file(pkg.join("package.json")).expect("rm");
    fs::write(pkg.join("package.json"), r#"{"version":"2.1.100"}"#).expect("w");
    fs::write(&cli, "#!/usr/bin/env node\n").expect("cli.js");
    std::os::unix::fs::symlink(&cli, &link).expect("symlink");
    let via_link = facts(
        Some("/usr/bin/node"),
        "node",
        &["node", link.to_str().expect("utf-8"), "-p"],
    );
    assert_eq!(package_version(&via_link).as_deref(), Some("2.1.100"));
    // Another program's script: no package looked at.
    let other = facts(Some("/usr/bin/node"), "node", &["node", "/home/u/cli.js"]);
    assert_eq!(package_version(&other), None);
}

#[test]
fn old_npm_node_cli_js() {
    // At exec, before it renames itself.
    let f = facts(
        Some("/usr/bin/node"),
        "node",
        &[
            "node",
            "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
            "--continue",
        ],
    );
    assert_eq!(rule_of(&f).as_deref(), Some("claude-code:npm-node"));
    let f = facts(
        Some("/home/u/.nvm/versions/node/v20.11.0/bin/node"),
        "node",
        &[
            "node",
            "--max-old-space-size=4096",
            "/home/u/.nvm/versions/node/v20.11.0/lib/node_modules/@anthropic-ai/claude-code/cli.js",
        ],
    );
    assert_eq!(rule_of(&f).as_deref(), Some("claude-code:npm-node"));
    // Run through npm's link by its `#!/usr/bin/env node` line (read after env exec'd
    // node, when comm is `node` again).
    for script in ["/usr/bin/claude", "/w/node_modules/.bin/claude"] {
        let f = facts(Some("/usr/bin/node"), "node", &["node", script, "-p", "hi"]);
        assert_eq!(rule_of(&f).as_deref(), Some("claude-code:npm-node-link"));
    }
    let f = facts(
        Some("/usr/bin/node"),
        "node",
        &["node", "--inspect", "/usr/bin/claude"],
    );
    assert_eq!(rule_of(&f).as_deref(), Some("claude-code:npm-node-link"));
    // Another node script, or `claude` only as an argument of one.
    let f = facts(
        Some("/usr/bin/node"),
        "node",
        &["node", "/srv/app.js", "claude"],
    );
    assert_eq!(rule_of(&f), None);
    // After `process.title = "claude"`: comm and argv rewritten (libuv pads with NULs).
    let f = ProcFacts {
        pid: 1,
        comm: "claude".into(),
        exe: Some("/usr/bin/node".into()),
        argv: parse_cmdline(b"claude\0\0\0\0\0\0\0\0\0\0\0\0"),
    };
    assert_eq!(f.argv, vec!["claude"]);
    assert_eq!(rule_of(&f).as_deref(), Some("claude-code:comm"));
}

#[test]
fn comm_rule() {
    assert_eq!(
        rule_of(&facts(None, "claude", &[])).as_deref(),
        Some("claude-code:comm")
    );
    assert_eq!(
        rule_of(&facts(Some("/opt/x/claude.exe"), "claude.exe", &["claude"])).as_deref(),
        Some("claude-code:comm")
    );
}

#[test]
fn ripgrep_helper_is_not_a_session() {
    for exe in [
        "/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe",
        "/home/u/.local/share/claude/versions/9.9.9",
        "/usr/lib/node_modules/@anthropic-ai/claude-code-linux-x64/claude",
    ] {
        let f = facts(
            Some(exe),
            "claude",
            &["rg", "--files", "--hidden", "/home/u/src/app"],
        );
        assert_eq!(detect_claude_code(&f), None, "{exe}");
        let f = facts(Some(exe), "claude.exe", &["/tmp/bin/rg", "-n", "TODO"]);
        assert_eq!(detect_claude_code(&f), None, "{exe}");
    }
    // And the real ripgrep is not Claude either.
    assert_eq!(
        detect_claude_code(&facts(Some("/usr/bin/rg"), "rg", &["rg", "x"])),
        None
    );
    // A program named like rg but not rg is unaffected.
    let f = facts(
        Some("/home/u/.local/share/claude/versions/9.9.9"),
        "claude",
        &["rgx"],
    );
    assert!(detect_claude_code(&f).is_some());
}

#[test]
fn non_matches() {
    let cases = [
        facts(Some("/usr/bin/claudette"), "claudette", &["claudette"]),
        facts(
            Some("/usr/bin/node"),
            "node",
            &["node", "/home/u/proj/cli.js"],
        ),
        facts(
            Some("/usr/bin/vim"),
            "vim",
            &[
                "vim",
                "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
            ],
        ),
        facts(
            Some("/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe.bak"),
            "claude.exe.bak",
            &["x"],
        ),
        facts(
            Some("/usr/lib/node_modules/@anthropic-ai/claude-code-linux-x64/sub/claude"),
            "x",
            &["x"],
        ),
        facts(Some("/bin/bash"), "bash", &["/bin/bash", "-c", "claude"]),
        facts(None, "kworker/0:1", &[]),
        facts(
            Some("/usr/bin/claude-code"),
            "claude-code",
            &["claude-code"],
        ),
    ];
    let detector = Detector::new(Vec::new()).expect("no rules");
    for f in &cases {
        assert_eq!(detector.detect(f), None, "{f:?}");
    }
}

#[test]
fn path_glob_semantics() {
    // Leading `*/`: any directory prefix, at least the root slash.
    assert!(path_glob("*/bin/claude", "/bin/claude"));
    assert!(path_glob("*/bin/claude", "/usr/local/bin/claude"));
    assert!(!path_glob("*/bin/claude", "bin/claude"));
    assert!(!path_glob("*/bin/claude", "/usr/local/bin/claude2"));
    // Other `*`: within one path component.
    assert!(path_glob("/opt/*/bin/aider", "/opt/aider-1.2/bin/aider"));
    assert!(!path_glob("/opt/*/bin/aider", "/opt/a/b/bin/aider"));
    assert!(path_glob("/usr/bin/python3*", "/usr/bin/python3.12"));
    assert!(path_glob("/usr/bin/python3*", "/usr/bin/python3"));
    assert!(!path_glob("/usr/bin/python3*", "/usr/bin/python3/x"));
    assert!(path_glob("*/x-*-*/claude", "/a/x-linux-x64/claude"));
    // Literal specials and full-match semantics.
    assert!(path_glob("/a/?[b]", "/a/?[b]"));
    assert!(!path_glob("/a/?", "/a/b"));
    assert!(!path_glob("/a/b", "/a/b/c"));
    assert!(path_glob("*/", "/a/b/"));
    assert!(path_glob("/*", "/anything"));
    assert!(!path_glob("/*", "/two/levels"));
    // Non-ASCII is matched by character.
    assert!(path_glob("*/é*", "/home/é-ü"));
}

#[test]
fn text_glob_semantics() {
    assert!(text_glob("*", ""));
    assert!(text_glob(
        "python* */aider *",
        "python3 /usr/bin/aider --model x"
    ));
    assert!(!text_glob("aider", "aider --model"));
    assert!(text_glob("aider*", "aider --model"));
    assert!(text_glob("a*b*c", "a/x/b c c"));
    assert!(!text_glob("a*b*c", "a/x/b c d"));
    // Many stars: no exponential backtracking.
    let text = "a".repeat(200);
    assert!(!text_glob(&format!("{}b", "*a".repeat(30)), &text));
}

#[test]
fn custom_rules() {
    let aider = Rule {
        name: "aider".into(),
        exe_glob: Some("*/bin/python3*".into()),
        comm: None,
        argv_pattern: Some("/aider ".into()),
    };
    let codex = Rule {
        name: "codex".into(),
        exe_glob: None,
        comm: Some("codex*".into()),
        argv_pattern: None,
    };
    let detector = Detector::new(vec![aider, codex]).expect("valid rules");

    let f = facts(
        Some("/usr/bin/python3.12"),
        "aider",
        &[
            "/usr/bin/python3",
            "/home/u/.local/bin/aider ",
            "--model",
            "x",
        ],
    );
    assert_eq!(
        detector.detect(&f),
        Some(Detection {
            agent: "aider".into(),
            version: None,
            rule: "rule[0]:aider".into(),
        })
    );
    // All given fields must match: right exe, wrong argv.
    let f = facts(
        Some("/usr/bin/python3.12"),
        "python3",
        &["python3", "build.py"],
    );
    assert_eq!(detector.detect(&f), None);
    // Right argv, no exe.
    let f = facts(None, "aider", &["python3", "/x/aider ", "-h"]);
    assert_eq!(detector.detect(&f), None);

    let f = facts(Some("/usr/local/bin/codex"), "codex-linux", &["codex"]);
    assert_eq!(
        detector.detect(&f).map(|d| d.rule).as_deref(),
        Some("rule[1]:codex")
    );

    // Built-ins come first.
    let catch_all = Rule {
        name: "anything-claude".into(),
        exe_glob: None,
        comm: Some("claude".into()),
        argv_pattern: None,
    };
    let detector = Detector::new(vec![catch_all]).expect("valid");
    let f = facts(None, "claude", &["claude"]);
    assert_eq!(
        detector.detect(&f).map(|d| d.agent).as_deref(),
        Some("claude-code")
    );
}

#[test]
fn argv_pattern_glob_is_anchored() {
    let rule = Rule {
        name: "make".into(),
        exe_glob: None,
        comm: None,
        argv_pattern: Some("make *-j*".into()),
    };
    assert!(rule.matches(&facts(None, "make", &["make", "all", "-j8"])));
    assert!(!rule.matches(&facts(None, "make", &["gmake", "make", "-j8"])));
}

#[test]
fn rule_validation() {
    let rule = |name: &str, exe: Option<&str>, comm: Option<&str>, argv: Option<&str>| Rule {
        name: name.into(),
        exe_glob: exe.map(Into::into),
        comm: comm.map(Into::into),
        argv_pattern: argv.map(Into::into),
    };
    assert_eq!(
        Detector::new(vec![rule("", Some("/x"), None, None)]).err(),
        Some(RuleError::EmptyName { index: 0 })
    );
    assert!(matches!(
        Detector::new(vec![
            rule("ok", Some("/x"), None, None),
            rule("none", None, None, None)
        ]),
        Err(RuleError::NoCriteria { index: 1, .. })
    ));
    assert!(matches!(
        Detector::new(vec![rule("e", None, None, Some(""))]),
        Err(RuleError::EmptyField {
            field: "argv_pattern",
            ..
        })
    ));
    assert!(matches!(
        Detector::new(vec![rule("rel", Some("bin/aider"), None, None)]),
        Err(RuleError::RelativeExeGlob { .. })
    ));
    let err = Detector::new(vec![rule(
        "long",
        None,
        Some("a-very-long-comm-name"),
        None,
    )])
    .expect_err("too long");
    assert!(err.to_string().contains("15 bytes"), "{err}");
    // A glob may be longer: `*` can match nothing.
    assert!(Detector::new(vec![rule("g", None, Some("a-very-long-comm*"), None)]).is_ok());
}

#[test]
fn rules_from_config_reject_unknown_keys() {
    let rule: Rule = serde_json::from_str(r#"{"name":"aider","comm":"aider"}"#).expect("rule");
    assert_eq!(rule.comm.as_deref(), Some("aider"));
    assert_eq!(rule.exe_glob, None);
    let err =
        serde_json::from_str::<Rule>(r#"{"name":"aider","exe":"/x"}"#).expect_err("unknown key");
    assert!(err.to_string().contains("exe"), "{err}");
}

#[test]
fn semver() {
    for v in [
        "0.0.1",
        "9.9.9",
        "2.0.14",
        "1.0.0-rc.1",
        "1.0.0+abc",
        "10.20.30-a-b",
    ] {
        assert!(is_semver(v), "{v}");
    }
    for v in [
        "",
        "1",
        "1.2",
        "1.2.3.4",
        "1.2.x",
        "v1.2.3",
        "1.2.3-",
        "1.2.3-a b",
        ".1.2",
    ] {
        assert!(!is_semver(v), "{v}");
    }
}

#[test]
fn node_names() {
    for exe in [
        "/usr/bin/node",
        "/usr/bin/nodejs",
        "/opt/node22",
        "/x/node-20.1",
    ] {
        assert!(is_node(exe), "{exe}");
    }
    for exe in ["/usr/bin/nodemon", "/usr/bin/bun", "/usr/bin/deno"] {
        assert!(!is_node(exe), "{exe}");
    }
}

#[test]
fn cmdline_parsing() {
    assert_eq!(
        parse_cmdline(b"/bin/bash\0-c\0echo 'a b'\0"),
        vec!["/bin/bash", "-c", "echo 'a b'"]
    );
    // An empty argument in the middle is kept.
    assert_eq!(parse_cmdline(b"a\0\0b\0"), vec!["a", "", "b"]);
    assert!(parse_cmdline(b"").is_empty());
    // setproctitle style, no NULs at all.
    assert_eq!(parse_cmdline(b"claude --x"), vec!["claude --x"]);
}

#[test]
fn facts_from_a_fake_proc() {
    let root = TempDir::new("proc");
    let dir = root.path().join("77");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("comm"), "claude\n").expect("comm");
    fs::write(dir.join("cmdline"), b"claude\0--resume\0").expect("cmdline");
    std::os::unix::fs::symlink(
        "/home/u/.local/share/claude/versions/9.9.9 (deleted)",
        dir.join("exe"),
    )
    .expect("exe");
    let f = read_proc_facts_in(root.path(), 77).expect("facts");
    assert_eq!(f.comm, "claude");
    assert_eq!(f.argv, vec!["claude", "--resume"]);
    let d = detect_claude_code(&f).expect("detected");
    assert_eq!(d.version.as_deref(), Some("9.9.9"));

    // Kernel thread: no exe, empty cmdline.
    let dir = root.path().join("2");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("comm"), "kthreadd\n").expect("comm");
    fs::write(dir.join("cmdline"), b"").expect("cmdline");
    let f = read_proc_facts_in(root.path(), 2).expect("facts");
    assert_eq!((f.exe, f.argv.len()), (None, 0));

    let err = read_proc_facts_in(root.path(), 999).expect_err("no such pid");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

/// A real process with the native installer's shape: a copy of `sleep` installed as
/// `.../claude/versions/9.9.9`, once with argv[0] `claude` and once as the `rg` helper.
#[test]
fn live_process_shapes() {
    let home = TempDir::new("home");
    let versions = home.path().join(".local/share/claude/versions");
    fs::create_dir_all(&versions).expect("mkdir");
    let bin = versions.join("9.9.9");
    fs::copy("/bin/sleep", &bin).expect("copy sleep");

    let spawn = |arg0: &str| {
        use std::os::unix::process::CommandExt as _;
        // Another test thread forking while the copy's fd was open makes exec fail with
        // ETXTBSY for a moment.
        for _ in 0..50 {
            match std::process::Command::new(&bin)
                .arg0(arg0)
                .arg("30")
                .spawn()
            {
                Ok(child) => return child,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("spawn {}: {e}", bin.display()),
            }
        }
        panic!("{} stayed busy", bin.display());
    };

    // spawn() returns when the child's close-on-exec pipe closes, which in execve comes
    // before the new comm is set: wait for the exec to be complete (the fact the test
    // needs), as the agent's own reads never depend on (it takes comm from the kernel).
    let exec_done = |child: &std::process::Child| {
        let comm = format!("/proc/{}/comm", child.id());
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // The new comm is set first, the argument area a little later in execve.
        while fs::read_to_string(&comm)
            .map(|c| c.trim_end().to_owned())
            .ok()
            .as_deref()
            != Some("9.9.9")
            || fs::read(&cmdline).map_or(true, |c| c.is_empty())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{comm} never became 9.9.9"
            );
            std::thread::yield_now();
        }
    };
    let mut session = spawn("claude");
    let mut helper = spawn("rg");
    exec_done(&session);
    exec_done(&helper);
    let session_facts = read_proc_facts(session.id());
    let helper_facts = read_proc_facts(helper.id());
    for child in [&mut session, &mut helper] {
        let _ = child.kill();
        let _ = child.wait();
    }

    let f = session_facts.expect("session facts");
    assert_eq!(f.pid, session.id());
    assert_eq!(f.comm, "9.9.9", "comm is the exec'd file's name");
    assert_eq!(f.argv, vec!["claude", "30"]);
    let d = detect_claude_code(&f).expect("session detected");
    assert_eq!(d.rule, "claude-code:native-installer");
    assert_eq!(d.version.as_deref(), Some("9.9.9"));

    let f = helper_facts.expect("helper facts");
    assert_eq!(f.argv[0], "rg");
    assert_eq!(detect_claude_code(&f), None);
}

/// The kernel prefilter's candidates.
mod candidates {
    use super::*;

    fn rule(name: &str, exe: Option<&str>, comm: Option<&str>, argv: Option<&str>) -> Rule {
        Rule {
            name: name.into(),
            exe_glob: exe.map(Into::into),
            comm: comm.map(Into::into),
            argv_pattern: argv.map(Into::into),
        }
    }

    #[test]
    fn kernel_candidates_from_rules() {
        let d = Detector::new(vec![
            rule("aider", None, Some("aider"), None),
            rule(
                "cursor",
                Some("/opt/*/cursor-agent-with-a-long-name"),
                None,
                None,
            ),
            rule("globby", Some("*/bin/*"), None, None),
            rule("py", None, None, Some("python3 -m myagent")),
            rule("dup", None, Some("claude"), None),
        ])
        .unwrap();
        let c = d.kernel_candidates();
        assert_eq!(
            c.comms,
            ["claude", "claude.exe", "node", "aider", "cursor-agent-wi"]
        );
        assert!(c.version_comm);
        assert_eq!(c.exec_all, ["globby", "py"]);
        assert!(Detector::default().kernel_candidates().exec_all.is_empty());
    }
}

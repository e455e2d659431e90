use super::*;
use crate::claude::testutil::TempDir;
use std::io::Write as _;

const SESSION: &str = "3f2a9c1e-7b4d-4e8a-9f0b-1c2d3e4f5a6b";

/// `'…'` with each `'` written as `'\''`.
fn quote_backslash(cmd: &str) -> String {
    format!("'{}'", cmd.replace('\'', r"'\''"))
}

/// `'…'` with each `'` written as `'"'"'`.
fn quote_double(cmd: &str) -> String {
    format!("'{}'", cmd.replace('\'', r#"'"'"'"#))
}

fn wrapper(quoted: &str) -> String {
    format!(
        "source /home/u/.claude/shell-snapshots/snapshot-bash-1763762520123-x1y2z3.sh \
             && eval {quoted} \\< /dev/null && pwd -P >| /tmp/claude-7f3a-cwd"
    )
}

const COMMANDS: &[&str] = &[
    "npm test",
    "ls",
    "echo 'hello world' && grep -r \"it's\" src",
    "cd /tmp && make -j8 2>&1 | tail -n 50",
    "python3 - <<'EOF'\nprint('a')\nprint(\"b\")\nEOF",
    "for f in *.rs; do\n  echo \"$f\"\ndone",
    "git commit -m 'fix: don'\"'\"'t crash'",
    "echo \\\\n $(date) `uname` ${HOME}",
    "printf 'café ☕ 𝄞\\n'",
    "''",
    "a;b||c&&d",
];

#[test]
fn eval_argument_round_trips() {
    for cmd in COMMANDS {
        for quoted in [quote_backslash(cmd), quote_double(cmd)] {
            let script = wrapper(&quoted);
            assert_eq!(
                extract_eval_command(&script).as_deref(),
                Some(*cmd),
                "{script}"
            );
            // The whole argv, joined by spaces or by NULs.
            for sep in [" ", "\0"] {
                let argv = ["/bin/bash", "-c", "-l", &script].join(sep);
                assert_eq!(extract_eval_command(&argv).as_deref(), Some(*cmd), "{argv}");
            }
        }
    }
}

#[test]
fn other_quoting_styles() {
    let cases: &[(&str, &str)] = &[
        (
            r#"eval "echo \"hi\" \$HOME \\ \`x\` \n""#,
            r#"echo "hi" $HOME \ `x` \n"#,
        ),
        ("eval \"a\\\nb\"", "ab"),
        (r"eval $'a\nb\t\'c\' \x'", "a\nb\t'c' \\x"),
        (r"eval npm\ test \< /dev/null", "npm test"),
        ("eval ls; echo done", "ls"),
        ("eval ls&&echo", "ls"),
        ("eval 'a'\"b\"c\\ d", "abc d"),
        ("x && eval\t'tabbed'", "tabbed"),
    ];
    for (script, want) in cases {
        assert_eq!(
            extract_eval_command(script).as_deref(),
            Some(*want),
            "{script}"
        );
    }
}

#[test]
fn eval_not_found() {
    for script in [
        "",
        "npm test",
        "evaluate 'x'",
        "noeval 'x'",
        "eval",
        "eval   ",
        "eval 'unterminated",
        "eval \"unterminated",
        "eval $'unterminated",
        // Quoted text is not a command word.
        "echo 'eval x'",
        "echo \"eval x\"",
        "echo \\eval x",
        // `eval` followed by an operator has no argument.
        "eval ; ls",
    ] {
        assert_eq!(extract_eval_command(script), None, "{script:?}");
    }
    // `eval` inside an earlier quoted word is skipped; the real one is found.
    assert_eq!(
        extract_eval_command("source '/x/eval y/snap.sh' && eval 'ls -l'").as_deref(),
        Some("ls -l")
    );
    // The first eval is the wrapper's; one inside the command stays in the command.
    assert_eq!(
        extract_eval_command(&wrapper(&quote_backslash("eval 'echo x'"))).as_deref(),
        Some("eval 'echo x'")
    );
}

#[test]
fn project_dir_mangling() {
    let cases = [
        ("/home/u/src/app", "-home-u-src-app"),
        ("/home/u/my.project_v2", "-home-u-my-project-v2"),
        ("/root/work space/a+b@c", "-root-work-space-a-b-c"),
        ("/srv/ÄPP", "-srv--PP"),
        ("/tmp/🎉x", "-tmp---x"),
        ("/", "-"),
        ("/Users/Me/Dev-1", "-Users-Me-Dev-1"),
    ];
    for (cwd, want) in cases {
        assert_eq!(project_dir_name(Path::new(cwd)), want, "{cwd}");
    }
}

#[test]
fn transcript_paths() {
    let config = Path::new("/home/u/.claude");
    assert_eq!(
        transcript_path(config, Path::new("/home/u/src/app"), SESSION),
        Some(PathBuf::from(format!(
            "/home/u/.claude/projects/-home-u-src-app/{SESSION}.jsonl"
        )))
    );
    for bad in ["", "../../etc/shadow", "a/b", "x.y", &"a".repeat(129)] {
        assert_eq!(transcript_path(config, Path::new("/"), bad), None, "{bad}");
    }
}

#[test]
fn locate_falls_back_to_scanning_projects() {
    let config = TempDir::new("tr-locate");
    let cwd = Path::new("/home/u/src/app");
    assert_eq!(locate(config.path(), cwd, SESSION), None);
    let other = config.path().join("projects/-home-u-src-app-1a2b3c");
    fs::create_dir_all(&other).expect("mkdir");
    fs::write(other.join(format!("{SESSION}.jsonl")), "").expect("write");
    assert_eq!(
        locate(config.path(), cwd, SESSION),
        Some(other.join(format!("{SESSION}.jsonl")))
    );
    let direct = transcript_path(config.path(), cwd, SESSION).expect("path");
    fs::create_dir_all(direct.parent().expect("parent")).expect("mkdir");
    fs::write(&direct, "").expect("write");
    assert_eq!(locate(config.path(), cwd, SESSION), Some(direct));
    assert_eq!(locate(config.path(), cwd, "../x"), None);
}

// Realistic records (shortened: real ones carry more keys, all ignored).
fn user_prompt(text: &str) -> String {
    format!(
        r#"{{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"/home/u/src/app","sessionId":"{SESSION}","version":"2.0.14","gitBranch":"main","type":"user","message":{{"role":"user","content":{}}},"uuid":"u1","timestamp":"2026-11-21T14:02:00.000Z"}}"#,
        serde_json::to_string(text).expect("json")
    )
}

fn tool_use(id: &str, name: &str, input: serde_json::Value, ts: &str) -> String {
    let record = serde_json::json!({
        "parentUuid": "u1", "isSidechain": false, "cwd": "/home/u/src/app",
        "sessionId": SESSION, "version": "2.0.14", "type": "assistant",
        "message": {
            "model": "claude-sonnet-4-5", "id": "msg_01", "type": "message",
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me run that."},
                {"type": "tool_use", "id": id, "name": name, "input": input}
            ],
            "stop_reason": null, "usage": {"input_tokens": 4, "output_tokens": 1}
        },
        "requestId": "req_1", "uuid": "a1", "timestamp": ts
    });
    record.to_string()
}

fn bash(id: &str, command: &str) -> String {
    tool_use(
        id,
        "Bash",
        serde_json::json!({"command": command, "description": "run it", "timeout": 120000}),
        "2026-11-21T14:02:05.000Z",
    )
}

fn tool_result(id: &str, output: &str) -> String {
    serde_json::json!({
        "parentUuid": "a1", "type": "user",
        "message": {"role": "user", "content": [
            {"tool_use_id": id, "type": "tool_result", "content": output, "is_error": false}
        ]},
        "toolUseResult": {"stdout": output, "stderr": "", "interrupted": false},
        "uuid": "u2", "timestamp": "2026-11-21T14:02:09.000Z"
    })
    .to_string()
}

fn append(path: &Path, bytes: &str) {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes.as_bytes()))
        .expect("append");
}

fn ids(tail: &TranscriptTail) -> Vec<&str> {
    tail.in_flight().map(|c| c.id.as_str()).collect()
}

const BUILD: &str = "python3 build.py --target 'it'\\''s' && echo \"done\"\nls";

#[test]
fn tracks_calls_across_appends_and_split_lines() {
    let dir = TempDir::new("tr-tail");
    let path = dir.path().join(format!("{SESSION}.jsonl"));
    let mut tail = TranscriptTail::new(path.clone());
    tail.poll().expect("missing file is fine");
    assert_eq!(ids(&tail), Vec::<&str>::new());

    let first = [
        user_prompt("run the tests, then build"),
        bash("toolu_01A", "npm test"),
        tool_result("toolu_01A", "ok: 12 passed"),
    ]
    .map(|l| l + "\n")
    .concat();
    append(&path, &first);
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), Vec::<&str>::new(), "A completed");
    assert_eq!(tail.offset(), first.len() as u64);

    // The next tool_use arrives in three pieces, split inside the JSON.
    let b = bash("toolu_01B", BUILD) + "\n";
    let (p1, rest) = b.split_at(40);
    let (p2, p3) = rest.split_at(rest.len() - 5);
    append(&path, p1);
    tail.poll().expect("poll");
    assert!(
        tail.get("toolu_01B").is_none(),
        "partial line not parsed yet"
    );
    append(&path, p2);
    tail.poll().expect("poll");
    assert!(tail.get("toolu_01B").is_none());
    append(&path, p3);
    tail.poll().expect("poll");
    let call = tail.get("toolu_01B").expect("B in flight");
    assert_eq!(call.name, "Bash");
    assert_eq!(call.command.as_deref(), Some(BUILD));
    assert_eq!(call.timestamp.as_deref(), Some("2026-11-21T14:02:05.000Z"));

    // A non-Bash call in flight too.
    append(
        &path,
        &(tool_use(
            "toolu_01C",
            "Read",
            serde_json::json!({"file_path": "/home/u/src/app/build.py"}),
            "2026-11-21T14:02:06.000Z",
        ) + "\n"),
    );
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_01B", "toolu_01C"]);
    assert_eq!(tail.get("toolu_01C").and_then(|c| c.command.clone()), None);

    // The wrapper of B, as the kernel shows its argv.
    let argv = ["/bin/bash", "-c", "-l", &wrapper(&quote_backslash(BUILD))].join("\0");
    assert_eq!(
        tail.match_command(&argv, None).map(|c| c.id.as_str()),
        Some("toolu_01B")
    );
    // A's command is no longer in flight; an unrelated wrapper matches nothing.
    assert_eq!(tail.match_command(&wrapper("'npm test'"), None), None);
    assert_eq!(tail.match_command("bash -c 'npm test'", None), None);

    // Polling without new bytes changes nothing and reads nothing.
    let before = tail.stats();
    tail.poll().expect("poll");
    assert_eq!(tail.stats(), before);
    assert_eq!(tail.stats().lines, 5);
    assert_eq!(tail.offset(), fs::metadata(&path).expect("meta").len());

    // Results complete both.
    append(
        &path,
        &[
            tool_result("toolu_01C", "print('x')"),
            tool_result("toolu_01B", "done"),
        ]
        .map(|l| l + "\n")
        .concat(),
    );
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), Vec::<&str>::new());
    assert_eq!(tail.match_command(&argv, None), None);
    assert_eq!(
        tail.stats(),
        TailStats {
            lines: 7,
            ..TailStats::default()
        }
    );
}

#[test]
fn truncation_and_replacement_start_over() {
    let dir = TempDir::new("tr-trunc");
    let path = dir.path().join("t.jsonl");
    append(
        &path,
        &[bash("toolu_old", "sleep 100"), user_prompt("x")]
            .map(|l| l + "\n")
            .concat(),
    );
    let mut tail = TranscriptTail::new(path.clone());
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_old"]);

    // Truncated and rewritten shorter, in place.
    fs::write(&path, bash("toolu_new", "make") + "\n").expect("rewrite");
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_new"]);
    assert_eq!(tail.stats().restarts, 1);

    // Replaced by another file (new inode), even a longer one.
    let tmp = dir.path().join("t.jsonl.new");
    let replacement = [
        user_prompt(&"long prompt ".repeat(100)),
        bash("toolu_r1", "cargo build"),
    ]
    .map(|l| l + "\n")
    .concat();
    fs::write(&tmp, &replacement).expect("write");
    fs::rename(&tmp, &path).expect("rename");
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_r1"]);
    assert_eq!(tail.stats().restarts, 2);
    assert_eq!(tail.offset(), replacement.len() as u64);

    // Removed: nothing new, state kept; recreated: a new file, read from its start.
    fs::remove_file(&path).expect("rm");
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_r1"]);
    // Longer than what was read, so only the disappearance tells it is a new file
    // (its inode number may well be the old one's).
    append(&path, &(bash("toolu_r2", &"x".repeat(2000)) + "\n"));
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_r2"]);
    assert_eq!(tail.stats().restarts, 3);
}

#[test]
fn truncation_drops_a_held_back_partial_line() {
    let dir = TempDir::new("tr-partial");
    let path = dir.path().join("t.jsonl");
    let line = bash("toolu_a", "ls") + "\n";
    append(&path, &line[..30]);
    let mut tail = TranscriptTail::new(path.clone());
    tail.poll().expect("poll");
    fs::write(&path, "").expect("truncate");
    tail.poll().expect("poll");
    append(&path, &(bash("toolu_b", "pwd") + "\n"));
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_b"]);
    assert_eq!(tail.stats().bad_lines, 0);
}

#[test]
fn bounded_memory() {
    let dir = TempDir::new("tr-bounds");
    let path = dir.path().join("t.jsonl");
    let limits = Limits {
        max_in_flight: 2,
        max_line_bytes: 2048,
        ..Limits::default()
    };
    let mut tail = TranscriptTail::with_limits(path.clone(), limits);
    let mut text = String::new();
    for i in 0..5 {
        text += &(bash(&format!("toolu_{i}"), &format!("job {i}")) + "\n");
    }
    append(&path, &text);
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_3", "toolu_4"]);
    assert_eq!(tail.stats().evicted, 3);

    // A line over the limit, arriving in pieces, is skipped; the next one is read.
    let huge = tool_result("toolu_3", &"x".repeat(5000)) + "\n";
    append(&path, &huge[..1000]);
    tail.poll().expect("poll");
    append(&path, &huge[1000..3000]);
    tail.poll().expect("poll");
    append(&path, &huge[3000..]);
    tail.poll().expect("poll");
    append(&path, &(tool_result("toolu_4", "ok") + "\n"));
    tail.poll().expect("poll");
    assert_eq!(
        ids(&tail),
        vec!["toolu_3"],
        "huge result skipped, small one read"
    );
    assert_eq!(tail.stats().long_lines, 1);

    // Over the limit within a single read, too.
    let mut tail = TranscriptTail::with_limits(path.clone(), limits);
    tail.poll().expect("poll");
    assert_eq!(tail.stats().long_lines, 1);
    assert_eq!(ids(&tail), vec!["toolu_3"]);
}

#[test]
fn odd_lines_are_skipped() {
    let dir = TempDir::new("tr-odd");
    let path = dir.path().join("t.jsonl");
    let text = [
            "not json".to_string(),
            String::new(),
            "   ".to_string(),
            r#"{"type":"summary","summary":"Fix build","leafUuid":"x"}"#.to_string(),
            r#"{"type":"assistant","message":{"content":{"weird":true}}}"#.to_string(),
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash"}]}}"#
                .to_string(),
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":"raw"}]}}"#
                .to_string(),
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Bash","input":{"command":["not","a","string"]}}]}}"#
                .to_string(),
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"nobody"}]}}"#
                .to_string(),
            "\u{feff}{}".to_string(),
            bash("toolu_ok", "true"),
        ]
        .map(|l| l + "\n")
        .concat();
    append(&path, &text);
    let mut tail = TranscriptTail::new(path);
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["t1", "t2", "toolu_ok"]);
    assert_eq!(tail.get("t1").and_then(|c| c.command.clone()), None);
    assert_eq!(tail.stats().bad_lines, 2, "{:?}", tail.stats());
    assert_eq!(tail.stats().lines, 9);
}

#[test]
fn newest_matching_call_wins_and_whitespace_is_forgiven() {
    let dir = TempDir::new("tr-match");
    let path = dir.path().join("t.jsonl");
    append(
        &path,
        &[
            bash("toolu_1", "npm test"),
            bash("toolu_2", "npm test"),
            bash("toolu_3", "echo  a\tb "),
        ]
        .map(|l| l + "\n")
        .concat(),
    );
    let mut tail = TranscriptTail::new(path);
    tail.poll().expect("poll");
    assert_eq!(
        tail.match_command(&wrapper("'npm test'"), None)
            .map(|c| c.id.as_str()),
        Some("toolu_2")
    );
    assert_eq!(
        tail.match_command(&wrapper("'echo a b'"), None)
            .map(|c| c.id.as_str()),
        Some("toolu_3")
    );
}

/// The real CLI may write a call, and even its result, after the tool's processes
/// started: a wrapper read late still finds a call that finished after it started, but
/// never an older one with the same command.
#[test]
fn a_call_completed_after_the_wrapper_started_still_matches() {
    let dir = TempDir::new("tr-late");
    let path = dir.path().join("t.jsonl");
    let result_at = |id: &str, ts: &str| {
        serde_json::json!({"type":"user","timestamp":ts,"message":{"role":"user","content":[
                {"type":"tool_result","tool_use_id":id,"content":"ok"}]}})
        .to_string()
    };
    append(
        &path,
        &[
            bash("toolu_old", "sh -c 'exit 3'"),
            result_at("toolu_old", "2026-11-21T14:00:00.000Z"),
            bash("toolu_new", "sh -c 'exit 3'"),
            result_at("toolu_new", "2026-11-21T14:05:00.500Z"),
        ]
        .map(|l| l + "\n")
        .concat(),
    );
    let mut tail = TranscriptTail::new(path);
    tail.poll().expect("poll");
    let started = |t: &str| {
        Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .expect("ts")
                .to_utc(),
        )
    };
    let w = wrapper(r"'sh -c '\''exit 3'\'''");
    assert_eq!(
        tail.match_command(&w, started("2026-11-21T14:05:00.000Z"))
            .map(|c| c.id.as_str()),
        Some("toolu_new")
    );
    // A wrapper that started after both finished is neither of them.
    assert_eq!(
        tail.match_command(&w, started("2026-11-21T14:06:00.000Z")),
        None
    );
    // Without a start time, only calls in flight.
    assert_eq!(tail.match_command(&w, None), None);
}

/// Shapes of the wrapper other versions used or may use: options around `-c`, no
/// `eval` at all, another shell.
#[test]
fn the_wrapper_shape_may_change() {
    let dir = TempDir::new("tr-shapes");
    let path = dir.path().join("t.jsonl");
    append(&path, &(bash("toolu_9", "make -j2 'all'") + "\n"));
    let mut tail = TranscriptTail::new(path);
    tail.poll().expect("poll");
    let quoted = r"'make -j2 '\''all'\'''";
    for w in [
        wrapper(quoted),
        format!("source /h/.claude/shell-snapshots/s.sh && {{ {quoted}; }} < /dev/null"),
        format!("/bin/zsh\0-c\0-l\0set -e; eval {quoted} < /dev/null"),
        format!("cd /w && bash -c {quoted}"),
    ] {
        assert_eq!(
            tail.match_command(&w, None).map(|c| c.id.as_str()),
            Some("toolu_9"),
            "{w}"
        );
    }
    // The command only as a part of another word is not it.
    assert_eq!(tail.match_command(&format!("echo x{quoted}"), None), None);
    assert_eq!(tail.match_command(&format!("echo {quoted}y"), None), None);
}

#[test]
fn a_symlinked_transcript_is_refused() {
    let dir = TempDir::new("tr-link");
    let target = dir.path().join("secret.jsonl");
    append(&target, &(bash("toolu_s", "cat /etc/shadow") + "\n"));
    let link = dir.path().join("t.jsonl");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let mut tail = TranscriptTail::new(link);
    assert!(tail.poll().is_err());
    assert_eq!(ids(&tail), Vec::<&str>::new());
}

/// A transcript that does not belong to the session's uid (a hard link planted in its
/// directory) is not read; the session's own is.
#[test]
fn only_the_sessions_own_file_is_read() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = TempDir::new("owner");
    let path = dir.write("s.jsonl", "");
    let me = std::fs::metadata(&path).unwrap().uid();
    let mut theirs = TranscriptTail::new(path.clone()).owned_by(Some(me + 1));
    let err = theirs.poll().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    let mut mine = TranscriptTail::new(path).owned_by(Some(me));
    mine.poll().unwrap();
}

/// What one poll of `path` by a fresh tail allocates at its peak, and the tail.
fn poll_peak(path: &Path, limits: Limits) -> (TranscriptTail, usize) {
    crate::testutil::measure_peak(|| {
        let mut tail = TranscriptTail::with_limits(path.to_path_buf(), limits);
        tail.poll().expect("poll");
        tail
    })
}

const MIB: usize = 1024 * 1024;

#[test]
fn a_line_of_empty_blocks_holds_none_of_them() {
    // The issue's line: megabytes of `{}` blocks. Once over the line cap (skipped
    // unbuffered), once just under it (buffered and parsed, each block dropped as read).
    let dir = TempDir::new("tr-empty-blocks");
    let blocks = |n: usize| {
        let mut line = String::from(r#"{"type":"assistant","message":{"content":["#);
        line.push_str(&vec!["{}"; n].join(","));
        line.push_str("]}}\n");
        line
    };
    let huge = dir.path().join("huge.jsonl");
    append(&huge, &blocks(2 * MIB));
    append(&huge, &(bash("toolu_after", "true") + "\n"));
    // All of it read (not only its end, as a default poll would).
    let whole = Limits {
        max_read_bytes: 64 * MIB as u64,
        ..Limits::default()
    };
    let (tail, peak) = poll_peak(&huge, whole);
    assert_eq!(tail.stats().long_lines, 1);
    assert_eq!(ids(&tail), vec!["toolu_after"]);
    // At most the line cap is buffered before the line is known to be too long.
    assert!(peak < 2 * MIB, "a 6 MiB line skipped, peak {peak} bytes");

    let under = dir.path().join("under.jsonl");
    let line = blocks(MIB / 3 - 32);
    assert!(line.len() < MIB, "{}", line.len());
    append(&under, &line);
    let (tail, peak) = poll_peak(&under, Limits::default());
    assert_eq!((tail.stats().lines, tail.stats().bad_lines), (1, 0));
    // The line buffer (a 1 MiB line grows a Vec to 2 MiB at worst) and the read buffer;
    // the old parser held ~120 bytes per block: 40 MiB here.
    assert!(
        peak < 3 * MIB,
        "a 1 MiB line of 350k blocks, peak {peak} bytes"
    );
}

#[test]
fn tool_blocks_per_line_and_bytes_held_are_capped() {
    let dir = TempDir::new("tr-held");
    // One line of tool_result blocks, as many as fit in the line cap.
    let results = dir.path().join("results.jsonl");
    let n = 20_000;
    let blocks: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"type":"tool_result","tool_use_id":"t{i}"}}"#))
        .collect();
    append(
        &results,
        &format!(
            r#"{{"type":"user","message":{{"content":[{}]}}}}"#,
            blocks.join(",")
        ),
    );
    append(&results, "\n");
    let (tail, _) = poll_peak(&results, Limits::default());
    assert_eq!(tail.stats().dropped_blocks, (n - MAX_OPS_PER_LINE) as u64);

    // 300 calls with 100 KiB commands (30 MiB of commands) and one longer than any argv
    // entry can be.
    let calls = dir.path().join("calls.jsonl");
    let mut text = String::new();
    for i in 0..300 {
        text += &(bash(
            &format!("toolu_{i}"),
            &format!("{i} {}", "x".repeat(100 * 1024)),
        ) + "\n");
    }
    text += &(bash("toolu_long", &"y".repeat(MAX_COMMAND_BYTES + 1)) + "\n");
    append(&calls, &text);
    let limits = Limits {
        max_read_bytes: 64 * MIB as u64,
        ..Limits::default()
    };
    let (tail, peak) = poll_peak(&calls, limits);
    assert!(
        tail.state.held <= limits.max_held_bytes,
        "{}",
        tail.state.held
    );
    let held: usize = tail
        .state
        .in_flight
        .iter()
        .chain(&tail.state.done)
        .map(ToolCall::held_bytes)
        .sum();
    assert_eq!(held, tail.state.held, "the running count is exact");
    assert_eq!(tail.stats().long_commands, 1);
    let kept = ids(&tail);
    assert_eq!(kept.last(), Some(&"toolu_long"), "the newest calls stay");
    assert_eq!(tail.get("toolu_long").and_then(|c| c.command.clone()), None);
    assert!(
        kept.len() < 30 && kept.len() > 10,
        "{} calls kept",
        kept.len()
    );
    assert_eq!(tail.stats().evicted, 301 - kept.len() as u64);
    // Held calls, one line being parsed and the read buffer.
    assert!(peak < 4 * MIB, "30 MiB of commands read, peak {peak} bytes");
}

#[test]
fn a_poll_reads_only_the_end_of_a_huge_backlog() {
    // A sparse terabyte with one call at its very end: one poll reads 4 MiB of it.
    let dir = TempDir::new("tr-sparse");
    let path = dir.path().join("t.jsonl");
    let tb = 1u64 << 40;
    let f = fs::File::create(&path).expect("create");
    if let Err(e) = f.set_len(tb) {
        eprintln!("skipped: this file system has no sparse terabyte files: {e}");
        return;
    }
    drop(f);
    append(
        &path,
        &("\n".to_string() + &bash("toolu_end", "make") + "\n"),
    );
    let len = fs::metadata(&path).expect("stat").len();
    let (mut tail, peak) = poll_peak(&path, Limits::default());
    assert_eq!(tail.offset(), len);
    assert_eq!(
        tail.stats().skipped_bytes,
        len - Limits::default().max_read_bytes
    );
    // The zeros before the call are the end of a line cut by the skip: dropped unparsed.
    assert_eq!(tail.stats().long_lines, 0);
    assert_eq!(tail.stats().bad_lines, 0);
    assert_eq!(ids(&tail), vec!["toolu_end"]);
    assert!(peak < MIB, "peak {peak} bytes");
    // Caught up: the next poll reads only what is appended.
    append(&path, &(tool_result("toolu_end", "ok") + "\n"));
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), Vec::<&str>::new());
    assert_eq!(
        tail.stats().skipped_bytes,
        len - Limits::default().max_read_bytes
    );
}

#[test]
fn a_skipped_backlog_resumes_at_a_line_boundary() {
    let dir = TempDir::new("tr-skip-boundary");
    let path = dir.path().join("t.jsonl");
    let first = bash("toolu_1", "one") + "\n";
    let second = bash("toolu_2", "two") + "\n";
    let third = bash("toolu_3", "three") + "\n";
    append(&path, &(first.clone() + &second + &third));
    // Exactly the last two lines: both are read.
    let limits = Limits {
        max_read_bytes: (second.len() + third.len()) as u64,
        ..Limits::default()
    };
    let mut tail = TranscriptTail::with_limits(path.clone(), limits);
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_2", "toolu_3"]);
    assert_eq!(tail.stats().skipped_bytes, first.len() as u64);
    assert_eq!(tail.stats().bad_lines, 0);
    // One byte less: the second line is cut, skipped to its end, not parsed as garbage.
    let limits = Limits {
        max_read_bytes: (second.len() + third.len() - 1) as u64,
        ..Limits::default()
    };
    let mut tail = TranscriptTail::with_limits(path, limits);
    tail.poll().expect("poll");
    assert_eq!(ids(&tail), vec!["toolu_3"]);
    assert_eq!(tail.stats().bad_lines, 0);
}

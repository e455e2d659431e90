//! The seed corpus, as code: real-shaped inputs of each target, written to
//! `fuzz/corpus/<target>/seed-*` by `CLAUDE_MONITOR_WRITE_SEEDS=1 cargo test -p
//! claude-monitor --lib seed_corpus` (without the variable, the test checks them). The files are committed; libFuzzer's own finds go elsewhere (see
//! `cargo xtask fuzz`), and a crash it finds is added beside these with its fix.

use std::fs;

use monitor_common::{
    EXEC_FLAG_ARGS, EXEC_FLAG_MAXRSS, EXIT_FLAG_LIVE_COUNTER, FORK_FLAG_UNWATCHED, Header, Kind,
    OOM_FLAG_MEMORY, WIRE_VERSION,
};

use super::tests::corpus_root;

/// Named seeds of one target.
type Seeds = Vec<(&'static str, Vec<u8>)>;

fn zeroed<T: Copy>() -> T {
    // SAFETY: monitor_common's #[repr(C)] records hold integers and integer arrays only,
    // for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a plain #[repr(C)] record with explicit padding fields, so every byte
    // is initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn fill<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0; N];
    let n = s.len().min(N);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

fn header(kind: Kind, pid: u32, tid: u32, comm: &str, ts_ns: u64) -> Header {
    Header {
        kind: kind as u16,
        version: WIRE_VERSION,
        cpu: 1,
        ts_ns,
        pid,
        tid,
        comm: fill(comm),
    }
}

fn records() -> Seeds {
    let mut exit: monitor_common::Exit = zeroed();
    exit.header = header(Kind::Exit, 14661, 14661, "python3", 484_862_000_000_000);
    exit.ppid = 14660;
    exit.exit_status = 11 | 0x80;
    exit.flags = EXIT_FLAG_LIVE_COUNTER;
    exit.maxrss_pages = 3429;
    exit.utime_ns = 33_732_000;
    exit.stime_ns = 11_940_000;
    exit.start_boottime_ns = 484_861_844_000_000;
    exit.memcg_id = 2595;
    exit.mm_peak_pages = 3429;
    exit.thread_comm = fill("python3");

    let mut thread_exit = exit;
    thread_exit.header = header(Kind::Exit, 700, 712, "claude", 5_000_000_000);
    thread_exit.exit_status = 143 << 8;
    thread_exit.thread_comm = fill("HeapHelper");

    let mut signal: monitor_common::Signal = zeroed();
    signal.header = header(Kind::Signal, 669, 669, "sleep", 303_575_000_000);
    signal.sig = 15;
    signal.sender_pid = 665;
    signal.sender_tid = 665;
    signal.sender_comm = fill("provoke.sh");
    signal.sender_thread_comm = fill("provoke.sh");
    signal.thread_comm = fill("sleep");
    signal.group = 1;

    let mut oom: monitor_common::Oom = zeroed();
    oom.header = header(Kind::Oom, 9001, 9001, "python3", 9_000_000_000);
    oom.flags = OOM_FLAG_MEMORY;
    oom.trigger_pid = 9001;
    oom.trigger_tid = 9001;
    oom.trigger_comm = fill("python3");
    oom.total_vm_pages = 80_000;
    oom.anon_rss_pages = 16_000;
    oom.file_rss_pages = 300;
    oom.pgtables_bytes = 200_704;
    oom.memcg_id = 3001;

    let mut fork: monitor_common::Fork = zeroed();
    fork.header = header(Kind::Fork, 668, 668, "sh", 303_574_000_000);
    fork.parent_pid = 665;
    fork.parent_tid = 665;
    fork.start_boottime_ns = 303_574_000_000;
    fork.flags = FORK_FLAG_UNWATCHED;

    let mut exec: monitor_common::Exec = zeroed();
    exec.header = header(Kind::Exec, 668, 668, "sh", 303_575_000_000);
    exec.old_tid = 668;
    exec.ppid = 665;
    exec.flags = EXEC_FLAG_ARGS | EXEC_FLAG_MAXRSS;
    exec.start_boottime_ns = 303_574_000_000;
    exec.maxrss_pages = 393;
    let args = b"sh\0-c\0curl -H 'Authorization: Bearer sk-ant-oat01-AbCdEfGhIjKl' x\0";
    exec.args[..args.len()].copy_from_slice(args);
    exec.args_len = args.len() as u32;
    exec.filename = fill("/usr/bin/sh");

    let mut cut = exec;
    cut.header.pid = 669;
    cut.args = [b'x'; monitor_common::ARGS_LEN];
    cut.args_len = 4000;

    let mut deliver: monitor_common::SignalDeliver = zeroed();
    deliver.header = header(Kind::SignalDeliver, 700, 700, "claude", 4_000_000_001);
    deliver.sig = 15;
    deliver.disposition = monitor_common::DISPOSITION_HANDLER;
    deliver.sa_flags = 0x0400_0000;

    vec![
        ("seed-exit-sigsegv", bytes_of(&exit)),
        ("seed-exit-thread", bytes_of(&thread_exit)),
        ("seed-signal-sigterm", bytes_of(&signal)),
        ("seed-oom", bytes_of(&oom)),
        ("seed-fork", bytes_of(&fork)),
        ("seed-exec", bytes_of(&exec)),
        ("seed-exec-truncated", bytes_of(&cut)),
        ("seed-deliver", bytes_of(&deliver)),
    ]
}

/// A real `~/.claude/sessions/<pid>.json` of 2.1.197, and the older shapes.
const REGISTRY: &[(&str, &str)] = &[
    (
        "seed-2.1.197",
        r#"{"pid":14657,"sessionId":"3f2a9c1e-5b7d-4e21-9a0c-2d4b6f8e1a37","cwd":"/tmp/readme-sess/project","startedAt":1763766914149,"kind":"interactive","entrypoint":"cli","procStart":"484761","version":"2.1.197"}"#,
    ),
    (
        "seed-old",
        r#"{"pid":901,"sessionId":"0b6c1f9e-2d1a-4c7e-8f00-5a4d3c2b1a09","cwd":"/home/u/src/app","startedAt":1763766914149}"#,
    ),
    (
        "seed-number",
        r#"{"sessionId":"s","cwd":"/","procStart":484761,"version":"9.9.9"}"#,
    ),
];

fn transcript() -> Seeds {
    let prompt = r#"{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"/home/u/src/app","sessionId":"3f2a9c1e-5b7d-4e21-9a0c-2d4b6f8e1a37","version":"2.0.14","gitBranch":"main","type":"user","message":{"role":"user","content":"run the tests"},"uuid":"u1","timestamp":"2026-11-21T14:02:00.000Z"}"#;
    let tool_use = r#"{"parentUuid":"u1","isSidechain":false,"cwd":"/home/u/src/app","sessionId":"3f2a9c1e-5b7d-4e21-9a0c-2d4b6f8e1a37","version":"2.0.14","type":"assistant","message":{"model":"claude-sonnet-4-5","id":"msg_01","type":"message","role":"assistant","content":[{"type":"text","text":"Let me run that."},{"type":"tool_use","id":"toolu_01A","name":"Bash","input":{"command":"sleep 1; exit 3","description":"run it","timeout":120000}}],"stop_reason":null,"usage":{"input_tokens":4,"output_tokens":1}},"requestId":"req_1","uuid":"a1","timestamp":"2026-11-21T14:02:05.000Z"}"#;
    let tool_result = r#"{"parentUuid":"a1","type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_01A","type":"tool_result","content":"done","is_error":false}]},"toolUseResult":{"stdout":"done","stderr":"","interrupted":false},"uuid":"u2","timestamp":"2026-11-21T14:02:09.000Z"}"#;
    let script = "source /h/.claude/shell-snapshots/snapshot-bash-1-x.sh 2>/dev/null || true && eval 'sleep 1; exit 3' < /dev/null && pwd -P >| /tmp/claude-1-cwd";
    let lines = |limits: u8, piece: u8, lines: &[&str]| {
        let mut out = vec![limits, piece];
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out
    };
    vec![
        (
            "seed-session",
            lines(0xff, 0xff, &[prompt, tool_use, tool_result, script]),
        ),
        ("seed-in-flight", lines(0x3f, 7, &[tool_use, script])),
        (
            "seed-small-limits",
            lines(0, 3, &[tool_use, tool_use, tool_result]),
        ),
    ]
}

const SHELL: &[(&str, &str)] = &[
    (
        "seed-wrapper",
        "source /root/.claude/shell-snapshots/snapshot-bash-1763766914149-x1.sh && eval 'sleep 30' \\< /dev/null && pwd -P >| /tmp/claude-5f2e-cwd\0/usr/local/lib/node_modules/@anthropic-ai/claude-code/cli.js",
    ),
    (
        "seed-quoting",
        "eval \"echo \\\"it's\\\" \\$HOME\"'x'$'\\t\\x41'\0node\0/usr/bin/claude\0-p\0hi",
    ),
    (
        "seed-glob",
        "*/@anthropic-ai/claude-code/bin/claude.exe\0/home/u/.npm/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe",
    ),
    (
        "seed-versions",
        "*/claude/versions/*\0/home/u/.local/share/claude/versions/2.1.197",
    ),
];

const PROC: &[(&str, &str)] = &[
    (
        "seed-stat",
        "14661 (a) b (c) S 14660 14661 14657 34816 14661 4194304 120 0 0 0 3 1 0 0 20 0 1 0 484862 12345678 3429 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
    ),
    (
        "seed-environ",
        "HOME=/home/u\0PATH=/usr/bin:/bin\0CLAUDE_CONFIG_DIR=/srv/claude\0HOME=/other\0NOEQUALS\0",
    ),
    ("seed-cmdline", "node\0/usr/bin/claude\0-p\0hi\0\0\0"),
    (
        "seed-mountinfo",
        "25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n33 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory\n35 25 0:31 / /sys/fs/cgroup/unified\\040dir rw - cgroup2 cgroup2 rw,nsdelegate\n",
    ),
];

const REDACT: &[(&str, &str)] = &[
    (
        "seed-bearer",
        "\u{5}curl -H 'Authorization: Bearer sk-ant-oat01-AbCdEfGhIjKlMnOp' https://api.anthropic.com",
    ),
    (
        "seed-url",
        "\u{6}git clone https://alice:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/x/y",
    ),
    (
        "seed-flags",
        "\u{0}psql\0--password\0hunter2\0-h\0db\0--token=abc",
    ),
    ("seed-quoted", "\u{3}PASSWORD=\"my secret pass\" ./run"),
    (
        "seed-json",
        "\u{4}{\"api_key\": \"s3cr3t value\", \"n\": 1}",
    ),
    (
        "seed-env",
        "\u{7}AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY aws s3 ls",
    ),
    (
        "seed-jwt",
        "\u{8}jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
];

const PRINTABLE: &[(&str, &str)] = &[
    (
        "seed-ansi",
        "\u{1b}]0;owned\u{7}\u{1b}[2Jclaude\nfake line\r\t",
    ),
    (
        "seed-overrides",
        "ls \u{202e}txt.exe\u{2066}x\u{2069}\u{200f}",
    ),
    (
        "seed-json",
        "{\"comm\":\"a\\u001b[31mred\",\"argv\":[\"x\\ny\",\"\\u202e\"],\"n\":1}",
    ),
];

fn config() -> Seeds {
    let readme = "[watch]\nreport_nonzero_exit = true\n[resources]\nsystem_interval_secs = 0.1\nmounts = [\"/\", \"/with \\\"quotes\\\" and \\\\ backslash\"]\n[[rules]]\nname = \"aider\"\nexe_glob = \"*/bin/python3*\"\nargv_pattern = \"/aider \"\n[[rules]]\nname = \"codex\"\ncomm = \"codex\"\n";
    let env = "[kernel]\nring_buffer_kb = 4096\n\0kernel.ring_buffer_kb=8192\nlogs.keep=3\nwatch.report_nonzero_exit=yes\nresources.mounts=/,/home\n";
    let redact = "[redact]\nenabled = false\npatterns = [\"corp-[0-9a-f]{8}\", \"(?i)x-key: *(?P<secret>[^\\\\s']+)\"]\n\0redact.enabled=true\n";
    vec![
        ("seed-sample", crate::config::SAMPLE.as_bytes().to_vec()),
        ("seed-rules", readme.as_bytes().to_vec()),
        ("seed-env", env.as_bytes().to_vec()),
        ("seed-redact", redact.as_bytes().to_vec()),
    ]
}

/// The committed seed corpus (`fuzz/corpus/`) is what this file says: a seed changed here, or
/// a file the seeds come from (the sample configuration), fails this test until the corpus
/// is written again with `CLAUDE_MONITOR_WRITE_SEEDS=1 cargo test -p claude-monitor --lib
/// seed_corpus`.
#[test]
fn the_committed_seed_corpus_is_up_to_date() {
    let write = std::env::var_os("CLAUDE_MONITOR_WRITE_SEEDS").is_some();
    let text = |seeds: &[(&'static str, &str)]| -> Seeds {
        seeds
            .iter()
            .map(|(n, s)| (*n, s.as_bytes().to_vec()))
            .collect()
    };
    let sets: Vec<(&str, Seeds)> = vec![
        ("ring_record", records()),
        (
            "btf",
            vec![
                ("seed-sample", crate::kernel::btf::tests::sample_blob()),
                ("seed-cyclic", crate::kernel::btf::tests::cyclic_blob()),
            ],
        ),
        ("registry", text(REGISTRY)),
        ("transcript", transcript()),
        ("shell", text(SHELL)),
        ("config", config()),
        ("proc", text(PROC)),
        ("redact", text(REDACT)),
        ("printable", text(PRINTABLE)),
    ];
    let mut stale = Vec::new();
    for (target, seeds) in sets {
        let dir = corpus_root().join(target);
        if write {
            fs::create_dir_all(&dir).expect("create the corpus directory");
        }
        for (name, bytes) in seeds {
            let path = dir.join(name);
            if fs::read(&path).ok().as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            if write {
                fs::write(&path, bytes).expect("write a seed");
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "seeds differ from the committed corpus: {stale:?}; write them with \
         CLAUDE_MONITOR_WRITE_SEEDS=1 cargo test -p claude-monitor --lib seed_corpus"
    );
}

//! Fuzz targets: one function per decoder or parser that reads bytes a local user (or a
//! corrupt kernel record) controls. Each takes arbitrary bytes and must not panic, loop
//! forever or allocate without bound; where a property is known (redaction leaves no
//! secret, escaping leaves no control character, a rendered configuration loads back to
//! itself), the target asserts it, so a violation is a crash too.
//!
//! Two drivers call them: `cargo xtask fuzz` runs libFuzzer (the `fuzz/` crate, on the
//! nightly toolchain, with this module behind the `fuzzing` feature), and the unit test
//! in `tests.rs` replays the committed corpus (`fuzz/corpus/<target>/`) and a fixed set of
//! mutations of it through every target on stable, in every `cargo xtask test`.

use std::{borrow::Cow, mem::size_of, path::PathBuf};

use monitor_common::{Kind, Record, WIRE_VERSION, decode};

use crate::{
    claude::{
        detect::{self, ProcFacts},
        environ, registry,
        transcript::{self, Limits, TranscriptTail},
    },
    config,
    host::{cgroups::MemoryHierarchy, clock::Clock, proc},
    kernel::{btf::Btf, offsets},
    output::{printable, sink},
    pipeline::{convert::Converter, redact},
};

#[cfg(test)]
mod seeds;
#[cfg(test)]
mod tests;

/// A fuzz target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("ring_record", ring_record),
    ("btf", btf),
    ("registry", registry_entry),
    ("transcript", transcript_lines),
    ("shell", shell),
    ("config", config_file),
    ("proc", proc_files),
    ("redact", redaction),
    ("printable", printable_text),
];

/// The target named `name` (the `fuzz/` crate's entry points call it).
pub fn target(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

/// A ring-buffer record: decoded as it is (any length, kind, version), then again as a
/// record of the kind the first byte chooses, of the right length and version, with the
/// rest as its fields, so that every field's values reach conversion; each decoded record
/// is converted to its event and written as JSON and as a text line.
pub fn ring_record(data: &[u8]) {
    let conv = Converter {
        clock: Clock::fixed(1_700_000_000_000_000_000),
        page_kb: 4,
        redactor: Default::default(),
    };
    if let Ok(record) = decode(data) {
        check_record(&conv, &record);
    }
    let Some((&select, fields)) = data.split_first() else {
        return;
    };
    let (kind, len) = match select % 6 {
        0 => (Kind::Exit, size_of::<monitor_common::Exit>()),
        1 => (Kind::Signal, size_of::<monitor_common::Signal>()),
        2 => (Kind::Oom, size_of::<monitor_common::Oom>()),
        3 => (Kind::Fork, size_of::<monitor_common::Fork>()),
        4 => (Kind::Exec, size_of::<monitor_common::Exec>()),
        _ => (
            Kind::SignalDeliver,
            size_of::<monitor_common::SignalDeliver>(),
        ),
    };
    let mut bytes = vec![0u8; len];
    let n = fields.len().min(len);
    bytes[..n].copy_from_slice(&fields[..n]);
    bytes[0..2].copy_from_slice(&(kind as u16).to_ne_bytes());
    bytes[2..4].copy_from_slice(&WIRE_VERSION.to_ne_bytes());
    match decode(&bytes) {
        Ok(record) => check_record(&conv, &record),
        Err(e) => panic!("a {kind:?} record of {len} bytes does not decode: {e}"),
    }
}

fn check_record(conv: &Converter, record: &Record) {
    if let Record::Exec(x) = record
        && let Some(a) = x.argv()
    {
        assert!(a.whole().len() <= a.argv.len());
        // Lossy decoding at most triples a byte (U+FFFD is 3 bytes).
        let bytes: usize = a.argv.iter().map(String::len).sum();
        assert!(
            bytes <= 3 * monitor_common::ARGS_LEN,
            "{bytes} bytes of argv"
        );
    }
    let event = conv.convert(record);
    let json = serde_json::to_string(&event).expect("an event serializes");
    assert!(!json.contains('\n'), "a JSON line holds a newline");
    let _ = sink::text_line(&event);
}

/// Names the agent asks BTF about: the kernel's (see `kernel::offsets`) and those of the
/// test blobs the seeds are made of.
const BTF_STRUCTS: &[&str] = &[
    "task_struct",
    "signal_struct",
    "mm_struct",
    "cred",
    "kernel_siginfo",
    "linux_binprm",
    "task",
    "task_t",
    "holder",
    "selfish",
    "sigval_u",
    "legacy",
];
const BTF_PATHS: &[&[&str]] = &[
    &[],
    &["pid"],
    &["tgid"],
    &["comm"],
    &["real_parent"],
    &["signal", "maxrss"],
    &["cred_copy", "uid", "val"],
    &["uid", "val"],
    &["si_code"],
    &["rss"],
    &["flags_a"],
    &["x"],
];
const TRACEPOINTS: &[&str] = &[
    "sched_process_exit",
    "sched_process_fork",
    "sched_process_exec",
    "signal_generate",
    "mark_victim",
    "foo",
    "loop",
];

/// A BTF blob: parsed, then every question the agent asks of it (the kernel layout the
/// programs are given, the tracepoint prototypes that choose program variants) and every
/// lookup by type id, for the first ids.
pub fn btf(data: &[u8]) {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    let _ = offsets::compute(&btf);
    for outer in BTF_STRUCTS {
        for path in BTF_PATHS {
            let _ = btf.member(outer, path);
        }
        let _ = btf.struct_size(outer);
    }
    for tp in TRACEPOINTS {
        if let Some(args) = btf.tracepoint_args(tp) {
            assert!(args.len() <= usize::from(u16::MAX));
        }
    }
    for name in ["memory_cgrp_id", "MM_ANONPAGES", "PIDTYPE_TGID", "BIG_NEG"] {
        let _ = btf.enum_value(name);
    }
    for id in 0..512 {
        let _ = btf.resolve(id);
        let _ = btf.type_size(id);
        let name = btf.type_name(id);
        assert!(name.len() <= 1 << 20, "a type name of {} bytes", name.len());
        let _ = btf.array_info(id);
        let _ = btf.struct_name_of(id);
    }
}

/// A Claude Code registry file (`<config>/sessions/<pid>.json`), which its user writes.
pub fn registry_entry(data: &[u8]) {
    if let Ok(e) = registry::parse_entry(data) {
        assert!(!e.session_id.is_empty() && e.session_id.len() <= registry::SESSION_ID_MAX);
        assert!(e.cwd.as_os_str().len() <= registry::CWD_MAX);
        assert!(
            e.version
                .as_ref()
                .is_none_or(|v| v.len() <= registry::VERSION_MAX)
        );
    }
}

/// Transcript bytes as the CLI (or its user) appends them: the first byte chooses small
/// limits (so that eviction, long lines and shedding are reached), the second how the rest
/// is cut into the pieces successive polls would read. After each piece the tail's bounds
/// must hold; at the end, each line is tried as a wrapper script against the calls held.
pub fn transcript_lines(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_in_flight: 1 + usize::from(a & 7),
        max_line_bytes: 64 << (a >> 3 & 7),
        max_read_bytes: 1 << 20,
        max_held_bytes: 128 << (a >> 6),
    };
    let mut tail = TranscriptTail::with_limits(PathBuf::from("/nonexistent"), limits);
    let piece = 1 + usize::from(*b);
    for chunk in rest.chunks(piece) {
        tail.feed_checked(chunk);
    }
    let started = chrono::DateTime::from_timestamp(1_760_000_000, 0);
    for line in String::from_utf8_lossy(rest).lines().take(16) {
        let _ = tail.match_command(line, started);
        let _ = tail.match_command(line, None);
        let _ = tail.match_unclaimed(started, &|id| id.len() % 2 == 0);
    }
}

/// The shell and glob parsing that matches processes to tool calls and rules: the text
/// before the first NUL is a script (a wrapper's `-c` argument) and a pattern, the rest a
/// text and path to match it against, and a process's argv.
pub fn shell(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, subject) = text.split_once('\0').unwrap_or((&text, ""));
    if let Some(command) = transcript::extract_eval_command(pattern) {
        assert!(command.chars().count() <= pattern.chars().count());
    }
    let _ = detect::text_glob(pattern, subject);
    let _ = detect::path_glob(pattern, subject);
    let _ = detect::is_semver(pattern);
    let argv = detect::parse_cmdline(subject.as_bytes());
    assert!(argv.last().is_none_or(|a| !a.is_empty()));
    let facts = ProcFacts {
        pid: 1,
        comm: pattern.chars().take(15).collect(),
        exe: Some(PathBuf::from(pattern)),
        argv,
    };
    let _ = detect::detect_claude_code(&facts);
    let _ = detect::package_version(&facts);
}

/// The daemon's configuration: the text before the first NUL is the file, each line
/// after it `dotted.key=value` as the key's environment variable would give it. A
/// configuration that loads is rendered (`config --show`) and must load back to itself.
pub fn config_file(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (file, env) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let env = String::from_utf8_lossy(env);
    let vars: Vec<(String, &str)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((config::lookup(k)?.env_var(), v)))
        .collect();
    let env = |name: &str| {
        vars.iter()
            .find(|(var, _)| var == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let path = scratch_file("config.toml");
    if std::fs::write(&path, file).is_err() {
        return;
    }
    let loaded = config::load(Some(&path), &env, &[]);
    if let Ok(loaded) = loaded {
        let shown = config::render(&loaded);
        std::fs::write(&path, &shown).expect("write the rendered configuration");
        let again = config::load(Some(&path), &|_| None, &[])
            .unwrap_or_else(|e| panic!("the rendered configuration does not load: {e:#}\n{shown}"));
        assert_eq!(again.config, loaded.config, "rendered:\n{shown}");
    }
    let _ = std::fs::remove_file(&path);
}

/// A file of this process's own under the temp directory, per thread.
fn scratch_file(name: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!(
        "claude-monitor-fuzz-{}-{thread}-{name}",
        std::process::id()
    ))
}

/// The /proc files the agent reads of other users' processes (`stat`, whose comm any user
/// names, `cmdline`, `environ`) and `mountinfo`, from the same bytes.
pub fn proc_files(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(stat) = proc::parse_stat(7, &text) {
        assert!(text.contains(&format!("({})", stat.comm)));
    }
    let _ = detect::parse_cmdline(data);
    let vars = environ::parse_vars(data, &["HOME", "CLAUDE_CONFIG_DIR", ""]);
    assert!(vars.len() <= 3);
    let _ = environ::config_dir_of(&vars);
    let _ = MemoryHierarchy::from_mountinfo(&text, |_| true);
}

/// Templates with a secret `{S}` in the places people put them; the secret is made of
/// digits (and, inside quotes, spaces and punctuation), the template of none, so no digit
/// may survive redaction. (`bearer` needs 8 characters: shorter ones are not tokens.)
const SECRET_TEMPLATES: &[(&str, &str, usize)] = &[
    ("mysql --password={S} db", "-./", 1),
    ("mysql --password \"{S}\" db", " -./'=:@", 1),
    ("tool --api-key='{S}' run", " -./\"=:@", 1),
    ("PASSWORD=\"{S}\" ./run", " -./'=:@\\", 1),
    ("{\"api_key\": \"{S}\", \"n\": \"x\"}", " -./'=:@", 1),
    (
        "curl -H 'Authorization: Bearer {S}' https://example.com",
        "-./",
        8,
    ),
    ("git clone https://alice:{S}@example.com/x/y", "-.", 1),
    (
        "AWS_SECRET_ACCESS_KEY={S} aws sts get-caller-identity",
        "-./",
        1,
    ),
    ("x-auth-token: {S}", "-./", 1),
    ("export GITHUB_TOKEN='{S}'", " -./\"", 1),
];

/// Redaction: any text redacted twice is redacted once (the marker is never a secret),
/// an argv likewise; and a secret placed in a known position is gone, whatever its value.
pub fn redaction(data: &[u8]) {
    let r = redact::Redactor::default();
    let text = String::from_utf8_lossy(data);
    let once = r.text(&text).into_owned();
    assert_eq!(r.text(&once), once, "redacting twice changes {text:?}");
    let mut argv: Vec<String> = text.split('\0').map(str::to_owned).collect();
    r.argv(&mut argv);
    let mut twice = argv.clone();
    r.argv(&mut twice);
    assert_eq!(twice, argv);

    let Some((&select, raw)) = data.split_first() else {
        return;
    };
    let (template, extra, min) = SECRET_TEMPLATES[usize::from(select) % SECRET_TEMPLATES.len()];
    let alphabet: Vec<char> = ('0'..='9').chain(extra.chars()).collect();
    let mut secret: String = raw
        .iter()
        .map(|&b| alphabet[usize::from(b) % alphabet.len()])
        .collect();
    // A value starts with a digit: a leading space or quote would be another shape.
    secret.insert(0, '7');
    if secret.len() < min {
        return;
    }
    let line = template.replace("{S}", &secret);
    let out = r.text(&line);
    assert!(
        !out.contains(|c: char| c.is_ascii_digit()),
        "{line:?} redacted to {out:?}"
    );
    for argv in [
        vec!["env".to_owned(), format!("PASSWORD={secret}"), "cmd".into()],
        vec!["psql".to_owned(), "--password".into(), secret.clone()],
        vec!["tool".to_owned(), format!("--token={secret}")],
    ] {
        let mut redacted = argv.clone();
        r.argv(&mut redacted);
        assert!(
            !redacted.concat().contains(|c: char| c.is_ascii_digit()),
            "{argv:?} redacted to {redacted:?}"
        );
    }
}

/// What a terminal would act on: control characters and the direction overrides.
fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Escaping for text output: nothing a terminal acts on survives, text without any is
/// not copied, escaping twice is escaping once; likewise inside JSON values.
pub fn printable_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let shown = printable::printable(&text);
    assert!(!shown.chars().any(acts_on_terminal), "{shown:?}");
    assert_eq!(
        matches!(shown, Cow::Borrowed(_)),
        !text.chars().any(acts_on_terminal)
    );
    assert!(matches!(printable::printable(&shown), Cow::Borrowed(_)));
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(data) {
        printable::printable_json(&mut value);
        let shown = value.to_string();
        let back: serde_json::Value = serde_json::from_str(&shown).expect("JSON again");
        let mut strings = Vec::new();
        collect_strings(&back, &mut strings);
        assert!(strings.iter().all(|s| !s.chars().any(acts_on_terminal)));
    }
}

fn collect_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        // Keys are the agent's own names; only values are escaped.
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

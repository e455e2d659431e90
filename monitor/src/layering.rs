//! The architecture as a test: which top-level module may import which (the map in
//! `lib.rs`), read from the sources themselves. A new `use crate::…` that points the wrong
//! way, or closes a circle, fails here with the file that added it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Each module and the modules it may import. The schema (`event`) imports nothing; the
/// tables (`signals`) and host facts (`host`) only the schema; the kernel side never sees
/// the pipeline; outputs and reports read the schema, not the pipeline; only the daemon,
/// `trace` and the command line put everything together.
const ALLOWED: &[(&str, &[&str])] = &[
    ("event", &[]),
    ("signals", &["event"]),
    ("host", &["event"]),
    ("kernel", &["event", "host"]),
    ("claude", &["event", "host", "kernel"]),
    (
        "pipeline",
        &["event", "host", "kernel", "claude", "signals"],
    ),
    ("output", &["event", "signals"]),
    ("report", &["event", "host", "signals", "claude", "output"]),
    ("config", &["event", "claude", "report"]),
    // Plain data in (events, a snapshot of numbers), text out.
    ("metrics", &["event", "signals"]),
    // The live API reads the schema and host facts, escapes text for a terminal, and
    // knows nothing of the pipeline: the daemon publishes into it and answers its
    // session requests. It reads the report directory for `/v1/reports`.
    ("api", &["event", "host", "output", "metrics", "report"]),
    (
        "daemon",
        &[
            "event", "host", "kernel", "claude", "signals", "pipeline", "output", "report",
            "config", "metrics", "api",
        ],
    ),
    (
        "trace",
        &[
            "event", "host", "kernel", "claude", "pipeline", "output", "config",
        ],
    ),
    (
        "app",
        &[
            "event", "host", "kernel", "claude", "signals", "pipeline", "output", "report",
            "config", "daemon", "trace", "cli", "api", "run",
        ],
    ),
    // `run` puts the engine, the reports and the daemon's resource sampler together.
    (
        "run",
        &[
            "event", "host", "kernel", "claude", "signals", "pipeline", "output", "report",
            "daemon", "api",
        ],
    ),
    // The fuzz targets call every parser of untrusted bytes; nothing imports them.
    (
        "fuzz",
        &[
            "event", "host", "kernel", "claude", "pipeline", "output", "config",
        ],
    ),
    (
        "cli",
        &[
            "event", "host", "kernel", "claude", "signals", "output", "report", "config", "trace",
            "run",
        ],
    ),
];

/// Modules that are not part of the layering: test helpers, this test, and `diag`, the
/// agent's own diagnostics, which any module may emit and which imports none (checked by
/// `diagnostics_import_nothing`).
const OUTSIDE: &[&str] = &["testutil", "layering", "lib", "main", "diag"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The code of a file without its test module (`#[cfg(test)] mod tests { … }` at the end,
/// or a `mod tests;` declaration) and without comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::`: in `use crate::{a::…, b}` groups
/// and in paths written out (`crate::a::b`).
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A group: the first segment of each top-level entry.
            let mut depth = 0usize;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[j..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphanumeric() || c == '_') => {
                        let word: String = group[j..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(word);
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(word);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    // module -> imported module -> files that import it
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let m = module_of(&src, &file);
        if OUTSIDE.contains(&m.as_str()) {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read source");
        for dep in imports(&code(&text)) {
            if dep != m && !OUTSIDE.contains(&dep.as_str()) {
                g.entry(m.clone())
                    .or_default()
                    .entry(dep)
                    .or_default()
                    .insert(file.strip_prefix(&src).unwrap().display().to_string());
            }
        }
        g.entry(m).or_default();
    }
    g
}

#[test]
fn imports_point_one_way() {
    let g = graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        let Some(ok) = allowed.get(m.as_str()) else {
            wrong.push(format!("module {m} is not in the layering table"));
            continue;
        };
        for (dep, files) in deps {
            if !ok.contains(&dep.as_str()) {
                wrong.push(format!("{m} imports {dep} (in {files:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

/// The table itself has no circle, so a graph that follows it has none.
#[test]
fn the_layering_has_no_circle() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    fn reaches(allowed: &BTreeMap<&str, &[&str]>, from: &str, to: &str, depth: usize) -> bool {
        depth < 32
            && allowed.get(from).is_some_and(|deps| {
                deps.iter()
                    .any(|d| *d == to || reaches(allowed, d, to, depth + 1))
            })
    }
    for (m, _) in ALLOWED {
        assert!(!reaches(&allowed, m, m, 0), "{m} reaches itself");
    }
}

/// The parser sees groups, nested groups and written-out paths, and not comments.
#[test]
fn imports_are_read_from_groups_and_paths() {
    let src = "use crate::{\n    event::{A, b::C},\n    host::clock,\n};\n// crate::daemon\nfn f() { crate::signals::names::x(); }";
    let got: Vec<String> = imports(&code(src)).into_iter().collect();
    assert_eq!(got, ["event", "host", "signals"]);
}

/// `diag` stays a leaf, so that every module may use it.
#[test]
fn diagnostics_import_nothing() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/diag.rs");
    let text = fs::read_to_string(src).expect("diag.rs");
    assert!(
        imports(&code(&text)).is_empty(),
        "diag imports {:?}",
        imports(&code(&text))
    );
}

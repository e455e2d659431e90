//! The fuzz targets on stable, in every test run: the committed corpus
//! (`fuzz/corpus/<target>/`) and a fixed set of mutations of it, so that a crash libFuzzer
//! found (saved into the corpus with its fix) stays fixed, and the targets stay working
//! between fuzzing sessions. Deterministic: the same inputs every run.

use std::{
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
};

use super::*;

/// Mutations per target; the whole replay stays within a few seconds of the unit tests.
const MUTATIONS: usize = 3000;
/// The largest input a mutation makes.
const MAX_INPUT: usize = 64 * 1024;

pub(super) fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_root().join(name);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = fs::read(e.path()).expect("read a corpus file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

/// xorshift64*: small, seeded, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(name: &str) -> Rng {
        // FNV-1a of the target's name: each target its own sequence.
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that parsers treat specially.
const INTERESTING_BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, b'"', b'\'', b'\\', b'\n', b'\r', b' ', b'{', b'}', b'[', b']', b'=',
    b':', b',', b'(', b')', b'$', 0x1b, 0xc3, 0xe2,
];

/// Little-endian lengths and counts at the edges.
const INTERESTING_U32: &[u32] = &[
    0,
    1,
    2,
    7,
    8,
    16,
    24,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// Words of the formats the corpus holds.
const TOKENS: &[&str] = &[
    "\"command\":",
    "\"tool_use\"",
    "\"tool_result\"",
    "\"tool_use_id\":",
    "\"content\":[",
    "\"id\":\"toolu_1\"",
    "\"name\":\"Bash\"",
    "\"input\":{",
    "\"message\":{",
    "\"timestamp\":",
    "\"sessionId\":",
    "\"procStart\":",
    "\"cwd\":",
    "eval ",
    "$'\\x41'",
    "\"\\u0000\"",
    "password=",
    "--token ",
    "Bearer ",
    "https://u:p@h",
    "[[rules]]\n",
    "[kernel]\n",
    "ring_buffer_kb = ",
    "1e308",
    "-9223372036854775808",
    "18446744073709551616",
    ") S 1 ",
    " - cgroup ",
    "\u{202e}",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(10) {
            // Flip a bit.
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            // Set a byte to a special one.
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            // Insert special bytes.
            2 => {
                let i = rng.below(len + 1);
                let b = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
                let most = if rng.below(8) == 0 { 4096 } else { 4 };
                let n = 1 + rng.below(most);
                input.splice(i..i, std::iter::repeat_n(b, n));
            }
            // Overwrite with an edge-case u32 (lengths, counts, ids, offsets).
            3 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
                let v = if rng.below(4) == 0 {
                    v.wrapping_add(len as u32)
                } else {
                    v
                };
                input[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            // Truncate.
            4 if len > 0 => input.truncate(rng.below(len)),
            // Delete a range.
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            // Duplicate a range in place (repeated blocks, records, lines).
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let piece = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                for _ in 0..1 + rng.below(8) {
                    input.splice(at..at, piece.iter().copied());
                }
            }
            // Splice in a piece of another corpus file.
            7 if !other.is_empty() => {
                let i = rng.below(other.len());
                let n = 1 + rng.below((other.len() - i).min(512));
                let at = rng.below(len + 1);
                input.splice(at..at, other[i..i + n].iter().copied());
            }
            // Insert a token.
            8 => {
                let at = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, t.bytes());
            }
            // Change a byte by a small amount (digits, lengths).
            _ if len > 0 => {
                let i = rng.below(len);
                input[i] = input[i].wrapping_add(rng.below(5) as u8).wrapping_sub(2);
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(MAX_INPUT);
}

/// Runs `target` on `input`, naming the target and the input when it panics.
fn run(name: &str, target: Target, what: &str, input: &[u8]) {
    if panic::catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
        let shown: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
        panic!(
            "fuzz target {name} panicked on {what} ({} bytes, starting {shown}); \
             reproduce with `cargo xtask fuzz {name}` on that input",
            input.len()
        );
    }
}

fn replay(name: &str) {
    let target = target(name);
    let files = corpus(name);
    for (file, bytes) in &files {
        run(name, target, &format!("corpus file {file}"), bytes);
    }
    let mut rng = Rng::new(name);
    for i in 0..MUTATIONS {
        let (_, seed) = &files[rng.below(files.len())];
        let (_, other) = &files[rng.below(files.len())];
        let mut input = seed.clone();
        mutate(&mut rng, &mut input, other);
        run(name, target, &format!("mutation {i}"), &input);
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        /// Every target has a replay test here, a corpus, and a libFuzzer entry in `fuzz/`.
        #[test]
        fn every_target_is_replayed_and_has_a_fuzzer() {
            let replayed = [$(stringify!($name)),*];
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, replayed);
            let fuzz = corpus_root().join("..");
            for name in names {
                let entry = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
                let text = fs::read_to_string(&entry)
                    .unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
                assert!(
                    text.contains(&format!("claude_monitor::fuzz::target(\"{name}\")")),
                    "{} does not call target {name}",
                    entry.display()
                );
                let cargo = fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
                assert!(cargo.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no bin {name}");
            }
        }
    };
}

replay_tests!(
    ring_record,
    btf,
    registry,
    transcript,
    shell,
    config,
    proc,
    redact,
    printable,
);

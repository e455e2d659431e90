//! Session transcripts: where they are, which tool calls are in flight, and which one a
//! Bash tool process runs.
//!
//! Claude Code appends one JSON object per line to
//! `<config>/projects/<cwd mangled>/<session-id>.jsonl` ([`transcript_path`]). Assistant
//! records carry `tool_use` blocks (`id`, `name`, `input.command`) and user records the
//! matching `tool_result` (`tool_use_id`); a tool_use without its result yet is a call in
//! flight. The Bash tool runs each command through a wrapper,
//! `bash -c "source …/shell-snapshots/… && eval '<cmd>' …"`, so the wrapper's `eval`
//! argument ([`extract_eval_command`]) names the tool call that owns that process tree.
//!
//! Transcripts grow to many megabytes and events arrive by the thousand, so
//! [`TranscriptTail`] keeps a byte offset and only ever reads the bytes appended since its
//! last poll, holding back an incomplete last line until its newline arrives. It starts
//! over when the file shrinks or is replaced (another inode).
//!
//! The file belongs to a user and the monitor runs as root, so every byte is hostile and
//! every cost is bounded ([`Limits`]): a line longer than `max_line_bytes` is skipped
//! unbuffered; a poll reads at most `max_read_bytes` (of a backlog larger than that, only
//! the last bytes: a sparse terabyte or `yes >> transcript` cannot hold the event loop);
//! a line's content blocks are streamed and only the fields used are kept (the rest of a
//! block, `input` included, is skipped unparsed), at most `MAX_OPS_PER_LINE` tool blocks
//! per line; ids, names and timestamps have length caps and a command longer than any
//! argv entry can be (`MAX_COMMAND_BYTES`) is not kept; the calls held, in flight and
//! recently done, are capped in number and in bytes, oldest forgotten first (a call whose
//! result never comes, e.g. when the CLI was killed, must not pin memory).

use std::{
    fmt,
    fs::{self, File},
    io::{self, Read as _, Seek as _, SeekFrom},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};

/// The name of the transcript directory of a working directory: every character other
/// than an ASCII letter or digit becomes `-` (Claude Code does this on the JavaScript
/// string, so a character outside the Basic Multilingual Plane, two UTF-16 units there,
/// becomes `--`). `/home/u/my.app` gives `-home-u-my-app`.
pub fn project_dir_name(cwd: &Path) -> String {
    let cwd = cwd.to_string_lossy();
    let mut out = String::with_capacity(cwd.len());
    for c in cwd.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.extend(std::iter::repeat_n('-', c.len_utf16()));
        }
    }
    out
}

/// Whether a session id can safely name a file: 1 to 128 ASCII letters, digits, `-` or
/// `_` (Claude Code's are UUIDs). The id comes from a file the user controls and the
/// monitor runs as root, so an id like `../../x` must not become a path.
pub fn is_safe_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `<config_dir>/projects/<project_dir_name(cwd)>/<session_id>.jsonl`, where `config_dir`
/// is `~/.claude` or `$CLAUDE_CONFIG_DIR`. `None` for an unsafe session id.
pub fn transcript_path(config_dir: &Path, cwd: &Path, session_id: &str) -> Option<PathBuf> {
    is_safe_session_id(session_id).then(|| {
        config_dir
            .join("projects")
            .join(project_dir_name(cwd))
            .join(format!("{session_id}.jsonl"))
    })
}

/// The transcript of a session that exists: [`transcript_path`] first, else any
/// `<config_dir>/projects/*/<session_id>.jsonl` (session ids are unique; this covers a
/// project directory named otherwise, e.g. by a version that shortens long paths). The
/// scan looks at the first [`MAX_PROJECT_DIRS`] entries only: the directory is the user's.
/// Symlinks are not followed here, and [`TranscriptTail`] refuses them on the way too.
pub fn locate(config_dir: &Path, cwd: &Path, session_id: &str) -> Option<PathBuf> {
    let is_file = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    let direct = transcript_path(config_dir, cwd, session_id)?;
    if is_file(&direct) {
        return Some(direct);
    }
    let name = format!("{session_id}.jsonl");
    let mut found: Vec<PathBuf> = fs::read_dir(config_dir.join("projects"))
        .ok()?
        .take(MAX_PROJECT_DIRS)
        .flatten()
        .map(|d| d.path().join(&name))
        .filter(|p| is_file(p))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Entries of `<config>/projects` looked at by [`locate`]'s scan.
pub const MAX_PROJECT_DIRS: usize = 4096;

/// A tool call seen in a transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// The tool_use id (`toolu_…`).
    pub id: String,
    /// The tool's name, `Bash` for shell commands.
    pub name: String,
    /// `input.command`, when the input has one (Bash).
    pub command: Option<String>,
    /// The record's `timestamp` (RFC 3339), when it has one.
    pub timestamp: Option<String>,
    /// For a completed call: the `timestamp` of the record that carried its result.
    pub finished: Option<String>,
}

/// Bounds on what a [`TranscriptTail`] holds and reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// In-flight calls kept; beyond it the oldest is forgotten.
    pub max_in_flight: usize,
    /// Longest line buffered and parsed; longer lines (huge tool outputs or images) are
    /// skipped. A tool_use record is a few KiB; outputs are in tool_result records, which
    /// are only read for their ids and may be skipped whole.
    pub max_line_bytes: usize,
    /// Bytes read by one poll at most: of a longer backlog, the last `max_read_bytes`
    /// (calls in flight are at the end), starting at the first line boundary in them.
    pub max_read_bytes: u64,
    /// Bytes of calls held (in flight and recently done: ids, names, commands, timestamps)
    /// at most; beyond it the oldest are forgotten.
    pub max_held_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_in_flight: 256,
            max_line_bytes: 1024 * 1024,
            max_read_bytes: 4 * 1024 * 1024,
            max_held_bytes: 2 * 1024 * 1024,
        }
    }
}

/// Tool blocks (tool_use, tool_result) read from one line at most; a real record has a
/// handful (parallel calls), more are counted in [`TailStats::dropped_blocks`].
const MAX_OPS_PER_LINE: usize = 1024;

/// The longest command kept: the kernel's limit on one argv string (`MAX_ARG_STRLEN`, 32
/// pages). A longer command cannot be in a wrapper's `-c` argument, so it could never match
/// by text; the call is kept without it (it can still be matched by time).
const MAX_COMMAND_BYTES: usize = 32 * 4096;

/// The longest tool_use id or tool name kept (Claude Code's ids are ~30 characters); a
/// block with a longer one is skipped.
const MAX_ID_BYTES: usize = 256;

/// The longest timestamp kept (RFC 3339 is ~30 characters); a longer one is dropped.
const MAX_TIMESTAMP_BYTES: usize = 64;

/// What a [`TranscriptTail`] has done, for the monitor's own telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Complete non-blank lines read.
    pub lines: u64,
    /// Lines that were not a JSON record of the expected shape.
    pub bad_lines: u64,
    /// Lines skipped for being longer than [`Limits::max_line_bytes`].
    pub long_lines: u64,
    /// In-flight calls forgotten because of [`Limits::max_in_flight`].
    pub evicted: u64,
    /// Times the file shrank or was replaced and reading started over.
    pub restarts: u64,
    /// Bytes of a backlog longer than [`Limits::max_read_bytes`] that were never read.
    pub skipped_bytes: u64,
    /// Tool blocks beyond `MAX_OPS_PER_LINE` in a line, or with an over-long id or name.
    pub dropped_blocks: u64,
    /// Commands not kept for being longer than `MAX_COMMAND_BYTES`.
    pub long_commands: u64,
}

/// Reads one transcript incrementally and tracks its tool calls in flight.
pub struct TranscriptTail {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of the file the offset refers to.
    identity: Option<(u64, u64)>,
    /// The file was seen missing since it was last read: whatever appears there next is
    /// another file, even if it got the same inode number.
    vanished: bool,
    offset: u64,
    state: State,
    /// The uid the file must belong to (the session process's), when known: a file of
    /// someone else's (a hard link planted in the user's directory) is not read.
    owner: Option<u32>,
}

/// Line assembly and tool-call tracking, apart from the file so that reading can feed it.
struct State {
    limits: Limits,
    partial: Vec<u8>,
    /// Inside a line longer than the limit: drop bytes until the next newline.
    skipping: bool,
    /// Oldest first.
    in_flight: Vec<ToolCall>,
    /// The last [`DONE_KEPT`] completed calls, oldest first: the CLI may write a call and
    /// even its result after the tool's processes started, so a wrapper is also matched
    /// against calls that finished after it started.
    done: std::collections::VecDeque<ToolCall>,
    /// Bytes held by `in_flight` and `done` ([`ToolCall::held_bytes`]).
    held: usize,
    stats: TailStats,
}

/// Completed calls remembered for late matching.
const DONE_KEPT: usize = 32;

const READ_CHUNK: usize = 64 * 1024;

impl TranscriptTail {
    pub fn new(path: PathBuf) -> TranscriptTail {
        TranscriptTail::with_limits(path, Limits::default())
    }

    /// Only a file that belongs to `uid` is read.
    pub fn owned_by(mut self, uid: Option<u32>) -> TranscriptTail {
        self.owner = uid;
        self
    }

    pub fn with_limits(path: PathBuf, limits: Limits) -> TranscriptTail {
        TranscriptTail {
            owner: None,
            path,
            file: None,
            identity: None,
            vanished: false,
            offset: 0,
            state: State {
                limits,
                partial: Vec::new(),
                skipping: false,
                in_flight: Vec::new(),
                done: std::collections::VecDeque::new(),
                held: 0,
                stats: TailStats::default(),
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    /// Bytes consumed so far (complete lines plus the held-back partial line).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    #[cfg(test)]
    pub fn stats(&self) -> TailStats {
        self.state.stats
    }

    /// Reads what was appended since the last poll. A transcript that does not exist (yet:
    /// it is created with the first message) is not an error; one that is not a regular
    /// file (a symlink, say) is.
    pub fn poll(&mut self) -> io::Result<()> {
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.file = None;
                self.vanished = self.identity.is_some();
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if !meta.is_file() {
            self.file = None;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.path.display()),
            ));
        }
        let on_disk = (meta.dev(), meta.ino());
        if self.file.is_none() || self.identity != Some(on_disk) {
            // No symlink anywhere on the way: the transcript is in a user's directory.
            let file = crate::host::nofollow::open_no_symlinks(&self.path)?;
            let opened = file.metadata()?;
            if self.owner.is_some_and(|uid| uid != opened.uid()) {
                self.file = None;
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} belongs to uid {}, not to the session's",
                        self.path.display(),
                        opened.uid()
                    ),
                ));
            }
            let identity = (opened.dev(), opened.ino());
            if self.vanished || self.identity.is_some_and(|known| known != identity) {
                self.restart();
            }
            self.identity = Some(identity);
            self.vanished = false;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.state.restart();
        }
        if len == self.offset {
            return Ok(());
        }
        let max = self.state.limits.max_read_bytes;
        if len - self.offset > max {
            // Only the end matters (calls in flight are there); whatever line was being
            // assembled is lost, and reading resumes at the next line boundary, unless the
            // byte before the new offset ends a line.
            let start = len - max;
            file.seek(SeekFrom::Start(start - 1))?;
            let mut before = [0u8; 1];
            let at_boundary = file.read(&mut before)? == 1 && before[0] == b'\n';
            self.state.stats.skipped_bytes += start - self.offset;
            self.state.partial.clear();
            self.state.skipping = !at_boundary;
            self.offset = start;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = vec![0; READ_CHUNK];
        // Bytes read only up to the length seen above: a file that keeps growing while it is
        // read is caught up with by the next poll, not chased now.
        let mut left = len - self.offset;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.offset += n as u64;
            left -= n as u64;
            self.state.feed(&buf[..n]);
        }
        Ok(())
    }

    fn restart(&mut self) {
        self.offset = 0;
        self.state.restart();
    }

    #[cfg(test)]
    /// Tool calls without a result yet, oldest first.
    pub fn in_flight(&self) -> impl Iterator<Item = &ToolCall> {
        self.state.in_flight.iter()
    }

    #[cfg(test)]
    /// The in-flight call with this tool_use id.
    pub fn get(&self, id: &str) -> Option<&ToolCall> {
        self.state.in_flight.iter().find(|c| c.id == id)
    }

    /// The Bash call that a wrapper process runs. `wrapper` is the wrapper's `-c` script, or
    /// its whole argv joined by spaces or NULs; `started` is when the wrapper process
    /// started.
    ///
    /// Tolerant of the wrapper's shape, which changed between versions and will again: its
    /// `eval` argument ([`extract_eval_command`]) must equal the call's `input.command`,
    /// exactly or else up to runs of white space; failing that (no `eval`, or another way
    /// of running it), the wrapper must carry the command as one single-quoted shell word,
    /// as every version seen so far quotes it. Calls in flight are tried first, newest
    /// first (an older one may be a call whose result was never written), then calls that
    /// completed no earlier than a second before the wrapper started (the CLI writes a call
    /// to the transcript asynchronously: a short tool can be over by the time its record is
    /// read).
    pub fn match_command(
        &self,
        wrapper: &str,
        started: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Option<&ToolCall> {
        let finished_late = |c: &ToolCall| finished_late(c, started);
        let candidates = || {
            self.state
                .in_flight
                .iter()
                .rev()
                .chain(self.state.done.iter().rev().filter(|c| finished_late(c)))
                .filter(|c| c.name == "Bash")
        };
        let command_is = |c: &ToolCall, pred: &dyn Fn(&str) -> bool| {
            c.command
                .as_deref()
                .is_some_and(|x| !x.is_empty() && pred(x))
        };
        if let Some(command) = extract_eval_command(wrapper) {
            let wanted = squash_blanks(&command);
            if let Some(c) = candidates()
                .find(|c| command_is(c, &|x| x == command))
                .or_else(|| candidates().find(|c| command_is(c, &|x| squash_blanks(x) == wanted)))
            {
                return Some(c);
            }
        }
        candidates().find(|c| command_is(c, &|x| contains_word(wrapper, &single_quoted(x))))
    }
}

impl TranscriptTail {
    /// The call of a wrapper whose script is not known (see `WrapperScript::Cut`): among
    /// the Bash calls in flight, or completed no earlier than a second before the wrapper
    /// started, those not `claimed` by another wrapper; the one, if there is exactly one
    /// (several calls run in parallel cannot be told apart by time: none is chosen).
    pub fn match_unclaimed(
        &self,
        started: Option<chrono::DateTime<chrono::Utc>>,
        claimed: &dyn Fn(&str) -> bool,
    ) -> Option<&ToolCall> {
        let finished_late = |c: &ToolCall| finished_late(c, started);
        let mut candidates = self
            .state
            .in_flight
            .iter()
            .chain(self.state.done.iter().filter(|c| finished_late(c)))
            .filter(|c| c.name == "Bash" && !claimed(&c.id));
        let first = candidates.next()?;
        candidates.next().is_none().then_some(first)
    }
}

/// Whether call `c` completed no earlier than a second before `started` (a wrapper's start):
/// it may be that wrapper's call, written and completed before its record was read.
fn finished_late(c: &ToolCall, started: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    let not_before = started.map(|t| t - chrono::TimeDelta::seconds(1));
    let finished = c
        .finished
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    matches!((finished, not_before), (Some(f), Some(nb)) if f >= nb)
}

/// Whether `word` stands in `script` as a shell word of its own: bounded by the start or
/// end, white space (or a NUL between argv entries), or an operator.
fn contains_word(script: &str, word: &str) -> bool {
    let starts = |c: char| c.is_whitespace() || c == '\0' || ";&|({".contains(c);
    let ends = |c: char| c.is_whitespace() || c == '\0' || ";&|)}<>".contains(c);
    script.match_indices(word).any(|(i, _)| {
        script[..i].chars().next_back().is_none_or(starts)
            && script[i + word.len()..].chars().next().is_none_or(ends)
    })
}

/// `s` as one single-quoted shell word (`'` becomes `'\''`), the way the CLI quotes a
/// command into its wrapper.
fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn squash_blanks(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(any(test, feature = "fuzzing"))]
impl TranscriptTail {
    /// Feeds `bytes` as if a poll had read them, then checks that the tail's bounds hold
    /// (the fuzz target's entry).
    pub fn feed_checked(&mut self, bytes: &[u8]) {
        self.state.feed(bytes);
        let s = &self.state;
        let held: usize = s
            .in_flight
            .iter()
            .chain(&s.done)
            .map(ToolCall::held_bytes)
            .sum();
        assert_eq!(s.held, held, "held bytes miscounted");
        assert!(s.in_flight.len() <= s.limits.max_in_flight);
        assert!(s.done.len() <= DONE_KEPT);
        assert!(s.partial.len() <= s.limits.max_line_bytes);
        assert!(s.held <= s.limits.max_held_bytes || s.in_flight.len() + s.done.len() == 0);
    }
}

impl State {
    fn restart(&mut self) {
        self.partial.clear();
        self.skipping = false;
        self.in_flight.clear();
        self.done.clear();
        self.held = 0;
        self.stats.restarts += 1;
    }

    fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            let (segment, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            chunk = rest;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.partial.len() + segment.len() > self.limits.max_line_bytes {
                self.partial.clear();
                self.stats.long_lines += 1;
                continue;
            }
            if self.partial.is_empty() {
                self.line(segment);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(segment);
                self.line(&line);
                line.clear();
                // Keep a modest buffer for the next partial line, not a huge one.
                if line.capacity() <= 1024 * 1024 {
                    self.partial = line;
                }
            }
        }
        if chunk.is_empty() || self.skipping {
            return;
        }
        if self.partial.len() + chunk.len() > self.limits.max_line_bytes {
            self.partial = Vec::new();
            self.skipping = true;
            self.stats.long_lines += 1;
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    fn line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.stats.lines += 1;
        let record: Record = match serde_json::from_slice(line) {
            Ok(record) => record,
            Err(e) => {
                self.stats.bad_lines += 1;
                // Position only: the message could quote transcript content.
                tracing::debug!(
                    line = e.line(),
                    column = e.column(),
                    "transcript line is not a record"
                );
                return;
            }
        };
        let Some(Blocks { ops, dropped }) = record.message.and_then(|m| m.content) else {
            return;
        };
        self.stats.dropped_blocks += dropped;
        let timestamp = record.timestamp.filter(|t| t.len() <= MAX_TIMESTAMP_BYTES);
        for op in ops {
            match op {
                Op::Use {
                    id,
                    name,
                    command,
                    long_command,
                } => {
                    self.stats.long_commands += u64::from(long_command);
                    if let Some(i) = self.in_flight.iter().position(|c| c.id == id) {
                        let old = self.in_flight.remove(i);
                        self.held -= old.held_bytes();
                    }
                    let call = ToolCall {
                        id,
                        name,
                        command,
                        timestamp: timestamp.clone(),
                        finished: None,
                    };
                    self.held += call.held_bytes();
                    self.in_flight.push(call);
                    if self.in_flight.len() > self.limits.max_in_flight {
                        let excess = self.in_flight.len() - self.limits.max_in_flight;
                        for old in self.in_flight.drain(..excess) {
                            self.held -= old.held_bytes();
                        }
                        self.stats.evicted += excess as u64;
                    }
                }
                Op::Result { id } => {
                    if let Some(i) = self.in_flight.iter().position(|c| c.id == id) {
                        let mut call = self.in_flight.remove(i);
                        self.held -= call.held_bytes();
                        call.finished.clone_from(&timestamp);
                        self.held += call.held_bytes();
                        if self.done.len() == DONE_KEPT
                            && let Some(old) = self.done.pop_front()
                        {
                            self.held -= old.held_bytes();
                        }
                        self.done.push_back(call);
                    }
                }
            }
            self.shed();
        }
    }

    /// Forgets the oldest calls, completed ones first, while more than
    /// [`Limits::max_held_bytes`] are held.
    fn shed(&mut self) {
        while self.held > self.limits.max_held_bytes {
            let old = match self.done.pop_front() {
                Some(old) => old,
                None if !self.in_flight.is_empty() => {
                    self.stats.evicted += 1;
                    self.in_flight.remove(0)
                }
                None => break,
            };
            self.held -= old.held_bytes();
        }
    }
}

impl ToolCall {
    /// The bytes this call holds, for [`Limits::max_held_bytes`] (heap bytes of its strings
    /// plus the struct).
    fn held_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        std::mem::size_of::<ToolCall>()
            + self.id.capacity()
            + self.name.capacity()
            + opt(&self.command)
            + opt(&self.timestamp)
            + opt(&self.finished)
    }
}

/// The parts of a transcript record read here; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<Blocks>,
}

/// What a line says about tool calls, in order.
enum Op {
    /// A `tool_use` block: a call begins. `long_command`: its command was not kept for
    /// being longer than `MAX_COMMAND_BYTES`.
    Use {
        id: String,
        name: String,
        command: Option<String>,
        long_command: bool,
    },
    /// A `tool_result` block: the call with this id is over.
    Result { id: String },
}

/// One content block, as read: only its kind and the fields of tool blocks.
#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Input,
    #[serde(default)]
    tool_use_id: Option<String>,
}

impl Block {
    /// The block as an [`Op`]; `None` for any other block, a tool block without its ids,
    /// or one whose id or name is longer than `MAX_ID_BYTES` (`Err(())`: counted).
    fn into_op(self) -> Result<Option<Op>, ()> {
        let short = |s: &Option<String>| s.as_ref().is_none_or(|s| s.len() <= MAX_ID_BYTES);
        match self.kind.as_deref() {
            Some("tool_use") => {
                if !short(&self.id) || !short(&self.name) {
                    return Err(());
                }
                let (Some(id), Some(name)) = (self.id, self.name) else {
                    return Ok(None);
                };
                Ok(Some(Op::Use {
                    id,
                    name,
                    command: self.input.command,
                    long_command: self.input.long_command,
                }))
            }
            Some("tool_result") => {
                if !short(&self.tool_use_id) {
                    return Err(());
                }
                Ok(self.tool_use_id.map(|id| Op::Result { id }))
            }
            _ => Ok(None),
        }
    }
}

/// The lenient visitors below take a JSON value of a shape they do not use as `$other`,
/// never as an error (a field of an unexpected type must not cost the whole line): these
/// fill in the `visit_*` methods that skip such a value.
macro_rules! skip_scalars {
    ($ty:ty, $other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$ty, E> {
            Ok($other)
        }
        fn visit_unit<E>(self) -> Result<$ty, E> {
            Ok($other)
        }
    };
}

/// An array, skipped element by element (nothing of it is kept).
macro_rules! skip_seq {
    ($ty:ty, $other:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$ty, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($other)
        }
    };
}

/// An object, skipped entry by entry.
macro_rules! skip_map {
    ($ty:ty, $other:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($other)
        }
    };
}

/// A tool_use's `input`: only `command`, when it is a string no longer than
/// `MAX_COMMAND_BYTES`; every other field, and an input of any other shape, is skipped
/// unparsed (a full `serde_json::Value` of a crafted input costs many times its size).
#[derive(Default)]
struct Input {
    command: Option<String>,
    long_command: bool,
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Input, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Input;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("tool input")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Input, A::Error> {
                let mut input = Input::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "command" && input.command.is_none() && !input.long_command {
                        match map.next_value::<Command>()? {
                            Command::Kept(c) if c.len() <= MAX_COMMAND_BYTES => {
                                input.command = Some(c);
                            }
                            Command::Kept(_) => input.long_command = true,
                            Command::Other => {}
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(input)
            }

            skip_seq!(Input, Input::default());

            fn visit_str<E>(self, _: &str) -> Result<Input, E> {
                Ok(Input::default())
            }

            skip_scalars!(Input, Input::default());
        }
        d.deserialize_any(V)
    }
}

/// `input.command`: a string, kept; anything else, skipped.
enum Command {
    Kept(String),
    Other,
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Command, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command")
            }

            fn visit_str<E>(self, s: &str) -> Result<Command, E> {
                Ok(Command::Kept(s.to_owned()))
            }

            fn visit_string<E>(self, s: String) -> Result<Command, E> {
                Ok(Command::Kept(s))
            }

            skip_map!(Command, Command::Other);

            skip_seq!(Command, Command::Other);

            skip_scalars!(Command, Command::Other);
        }
        d.deserialize_any(V)
    }
}

/// `message.content`: an array of blocks, streamed (each block is read and, unless it is a
/// tool block, dropped before the next: a line of a million empty blocks holds none of
/// them), or a plain string (a typed prompt), which holds no tool calls. A visitor rather
/// than an untagged enum, which would first copy the whole content into a buffer.
#[derive(Default)]
struct Blocks {
    ops: Vec<Op>,
    /// Tool blocks not kept (over `MAX_OPS_PER_LINE`, or an over-long id).
    dropped: u64,
}

impl<'de> Deserialize<'de> for Blocks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blocks, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Blocks;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("message content")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blocks, A::Error> {
                let mut blocks = Blocks::default();
                while let Some(block) = seq.next_element::<Block>()? {
                    match block.into_op() {
                        Ok(Some(_)) | Err(()) if blocks.ops.len() >= MAX_OPS_PER_LINE => {
                            blocks.dropped += 1;
                        }
                        Ok(Some(op)) => blocks.ops.push(op),
                        Ok(None) => {}
                        Err(()) => blocks.dropped += 1,
                    }
                }
                Ok(blocks)
            }

            skip_map!(Blocks, Blocks::default());

            fn visit_str<E>(self, _: &str) -> Result<Blocks, E> {
                Ok(Blocks::default())
            }

            skip_scalars!(Blocks, Blocks::default());
        }
        d.deserialize_any(V)
    }
}

/// The command a Bash tool wrapper evaluates: the first shell word after the first
/// unquoted word `eval`, with its quoting removed. `script` is the wrapper's `-c` argument
/// (`source …/snapshot.sh && eval 'npm test' \< /dev/null && pwd -P >| …`) or its argv
/// joined by spaces or NULs; both contain the script unchanged.
///
/// Quoting understood: `'…'`, `"…"` (with `\$ \` \" \\` and line continuation), `$'…'`
/// (common escapes), backslash outside quotes, and any concatenation of these, so
/// `'it'\''s'` and `'it'"'"'s'` both give `it's`. Only the first word counts: the wrapper
/// passes `\<` `/dev/null` as further words, which are not part of the tool's command.
/// `None` when there is no `eval`, nothing after it, or an unterminated quote.
pub fn extract_eval_command(script: &str) -> Option<String> {
    let s: Vec<char> = script.chars().collect();
    let mut i = 0;
    let mut word_start = true;
    while i < s.len() {
        match s[i] {
            '\'' => {
                i = s[i + 1..].iter().position(|&c| c == '\'')? + i + 2;
                word_start = false;
            }
            '"' => {
                i = end_of_double_quoted(&s, i + 1)?;
                word_start = false;
            }
            '\\' => {
                i += 2;
                word_start = false;
            }
            c if is_blank(c) || is_operator(c) => {
                i += 1;
                word_start = true;
            }
            _ => {
                if word_start
                    && s[i..].starts_with(&['e', 'v', 'a', 'l'])
                    && s.get(i + 4).is_some_and(|&c| is_blank(c))
                {
                    let mut j = i + 4;
                    while s.get(j).is_some_and(|&c| is_blank(c)) {
                        j += 1;
                    }
                    return shell_word(&s[j..]);
                }
                i += 1;
                word_start = false;
            }
        }
    }
    None
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\0')
}

fn is_operator(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '(' | ')' | '<' | '>')
}

/// The index after the `"` closing a double-quoted string whose content starts at `i`.
fn end_of_double_quoted(s: &[char], mut i: usize) -> Option<usize> {
    while i < s.len() {
        match s[i] {
            '"' => return Some(i + 1),
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// One shell word at the start of `s`, unquoted (see [`extract_eval_command`]).
fn shell_word(s: &[char]) -> Option<String> {
    let mut out = String::new();
    let mut any = false;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '\'' => {
                let close = s[i + 1..].iter().position(|&c| c == '\'')? + i + 1;
                out.extend(&s[i + 1..close]);
                i = close + 1;
            }
            '"' => {
                i += 1;
                loop {
                    match *s.get(i)? {
                        '"' => break,
                        '\\' if s.get(i + 1) == Some(&'\n') => i += 2,
                        '\\' if matches!(s.get(i + 1), Some('$' | '`' | '"' | '\\')) => {
                            out.push(s[i + 1]);
                            i += 2;
                        }
                        c => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '$' if s.get(i + 1) == Some(&'\'') => {
                i = ansi_c_quoted(s, i + 2, &mut out)?;
            }
            '\\' => match s.get(i + 1) {
                Some('\n') => i += 2,
                Some(&c) => {
                    out.push(c);
                    i += 2;
                }
                None => {
                    out.push('\\');
                    i += 1;
                }
            },
            c if is_blank(c) || is_operator(c) => break,
            c => {
                out.push(c);
                i += 1;
            }
        }
        any = true;
    }
    any.then_some(out)
}

/// `$'…'` content starting at `i`: appends it to `out`, returns the index after the `'`.
fn ansi_c_quoted(s: &[char], mut i: usize, out: &mut String) -> Option<usize> {
    loop {
        match *s.get(i)? {
            '\'' => return Some(i + 1),
            '\\' => {
                let c = *s.get(i + 1)?;
                match c {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'e' | 'E' => out.push('\u{1b}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '\'' | '"' | '?' => out.push(c),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;

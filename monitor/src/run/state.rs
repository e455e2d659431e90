//! The state file of each `run`: `/run/claude-monitor/run/<pid>.json` for root,
//! `$XDG_RUNTIME_DIR/claude-monitor/run/<pid>.json` (else `/tmp/claude-monitor-<uid>/run/`)
//! for a user, named by `run`'s own pid. `claude-monitor status` lists them and
//! `claude-monitor stop ID` ends one. Written whole to a temporary file and renamed, 0600 in
//! a 0700 directory; removed when `run` exits.
//!
//! Read back as root from users' directories, so the reader trusts nothing: no symlink is
//! followed, a file is at most [`MAX_STATE_BYTES`], at most [`MAX_STATES`] are read per
//! directory, and a file is believed only when its `run` still lives with the start time the
//! file names (a reused pid is not it).

use std::{
    io,
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The largest state file read.
pub const MAX_STATE_BYTES: u64 = 64 * 1024;
/// State files read per directory at most.
pub const MAX_STATES: usize = 1024;

/// Where a supervised command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The command runs.
    Running,
    /// It died; `run` waits to start it again (`next_start`).
    Waiting,
}

names!(Phase {
    Running => "running",
    Waiting => "waiting",
});

/// The last end of the command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastEnd {
    pub ended: String,
    pub exit_status: u8,
    pub cause: String,
    pub sentence: String,
}

/// One state file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// `run`'s own pid: the id `stop` takes.
    pub id: u32,
    /// `run`'s start time in clock ticks since boot (/proc/PID/stat field 22): with the pid,
    /// what tells this `run` from a later process with the same pid.
    pub start_ticks: u64,
    pub uid: u32,
    /// `--name`, when given.
    pub name: Option<String>,
    pub command: Vec<String>,
    pub cwd: Option<String>,
    /// RFC 3339.
    pub started: String,
    pub supervised: bool,
    pub phase: Phase,
    /// The command's pid now (while running).
    pub child_pid: Option<u32>,
    pub restarts: u32,
    /// RFC 3339, while waiting.
    pub next_start: Option<String>,
    pub last: Option<LastEnd>,
}

/// The directory of this user's state files.
pub fn own_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return PathBuf::from("/run/claude-monitor/run");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d.join("claude-monitor/run"),
        _ => PathBuf::from(format!("/tmp/claude-monitor-{uid}/run")),
    }
}

/// The directories `status` reads: root's; and for root, every user's runtime directory
/// (`/run/user/<uid>/claude-monitor/run`); for a user, their own.
pub fn dirs_to_read() -> Vec<PathBuf> {
    let own = own_dir();
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return vec![own];
    }
    let mut dirs = vec![own];
    if let Ok(entries) = std::fs::read_dir("/run/user") {
        for e in entries.flatten().take(MAX_STATES) {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
            {
                dirs.push(e.path().join("claude-monitor/run"));
            }
        }
    }
    dirs
}

/// Creates `dir` and its parents 0700 (a runtime directory of this user).
fn make_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An older, wider directory is narrowed.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// This `run`'s state file: written on every change, removed on drop.
pub struct StateFile {
    path: PathBuf,
    pub state: RunState,
}

impl StateFile {
    /// Writes the first state into `dir`, after removing the files of `run`s that died
    /// without removing theirs (SIGKILL): at most [`MAX_STATES`] looked at.
    pub fn create(dir: &Path, state: RunState) -> io::Result<StateFile> {
        make_dir(dir)?;
        remove_stale(dir, Path::new(crate::host::proc::PROC));
        let file = StateFile {
            path: dir.join(format!("{}.json", state.id)),
            state,
        };
        file.write()?;
        Ok(file)
    }

    /// Writes the state whole: a temporary file, then a rename.
    pub fn write(&self) -> io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let json = serde_json::to_vec_pretty(&self.state).map_err(io::Error::other)?;
        io::Write::write_all(&mut f, &json)?;
        std::fs::rename(&tmp, &self.path)
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the state files in `dir` (this user's own) whose `run` is gone.
fn remove_stale(dir: &Path, proc_root: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten().take(MAX_STATES) {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json")
            && read_one(&path).is_some_and(|st| !alive(proc_root, &st))
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Reads one state file without following a symlink, at most [`MAX_STATE_BYTES`].
fn read_one(path: &Path) -> Option<RunState> {
    let file = crate::host::nofollow::open_no_symlinks(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.size() > MAX_STATE_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_STATE_BYTES), &mut bytes).ok()?;
    let state: RunState = serde_json::from_slice(&bytes).ok()?;
    // A file names its own `run`: the uid that owns it, and the pid in its name.
    let named = path.file_stem()?.to_str()?.parse::<u32>().ok()?;
    (named == state.id && meta.uid() == state.uid).then_some(state)
}

/// Whether the `run` of `state` still lives: its pid has the start time the file names,
/// and it has not exited (a zombie waiting for its parent is gone).
pub fn alive(proc_root: &Path, state: &RunState) -> bool {
    crate::host::proc::read_stat(proc_root, state.id)
        .is_ok_and(|s| s.start == state.start_ticks && !s.zombie)
}

/// The live `run`s in `dirs`, by id. Files of `run`s that are gone (killed before removing
/// theirs) are left alone and not listed.
pub fn list(dirs: &[PathBuf], proc_root: &Path) -> Vec<RunState> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten().take(MAX_STATES) {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            if let Some(state) = read_one(&path)
                && alive(proc_root, &state)
            {
                out.push(state);
            }
        }
    }
    out.sort_by_key(|s| s.id);
    out.dedup_by_key(|s| s.id);
    out
}

/// The live `run` that `id` names: its pid, or its `--name`.
pub fn find<'a>(runs: &'a [RunState], id: &str) -> Result<&'a RunState, String> {
    let by_pid = id.parse::<u32>().ok();
    let found: Vec<&RunState> = runs
        .iter()
        .filter(|r| Some(r.id) == by_pid || r.name.as_deref() == Some(id))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no running `claude-monitor run` with id or name {id:?} (`claude-monitor status` lists them)"
        )),
        _ => Err(format!(
            "{} runs are named {id:?}: give the id (`claude-monitor status` lists them)",
            found.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: u32, start: u64, name: Option<&str>) -> RunState {
        RunState {
            id,
            start_ticks: start,
            // SAFETY: getuid has no preconditions.
            uid: unsafe { libc::getuid() },
            name: name.map(str::to_owned),
            command: vec!["make".into()],
            cwd: None,
            started: "2026-12-08T00:00:00Z".into(),
            supervised: true,
            phase: Phase::Running,
            child_pid: Some(id + 1),
            restarts: 2,
            next_start: None,
            last: None,
        }
    }

    /// Written 0600 in a 0700 directory, read back while its `run` lives (here: this test
    /// process, with its real start time), not once the start time differs, and removed on
    /// drop.
    #[test]
    fn written_listed_and_removed() {
        let dir = crate::testutil::TempDir::new("run-state");
        let runs_dir = dir.path().join("claude-monitor/run");
        let me = std::process::id();
        let proc_root = Path::new(crate::host::proc::PROC);
        let start = crate::host::proc::read_stat(proc_root, me)
            .expect("stat")
            .start;
        let file = StateFile::create(&runs_dir, state(me, start, Some("build"))).expect("create");
        let mode = std::fs::metadata(file.path())
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&runs_dir)
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        let listed = list(std::slice::from_ref(&runs_dir), proc_root);
        assert_eq!(listed, std::slice::from_ref(&file.state));
        assert_eq!(find(&listed, "build").map(|r| r.id), Ok(me));
        assert_eq!(find(&listed, &me.to_string()).map(|r| r.id), Ok(me));
        assert!(find(&listed, "other").unwrap_err().contains("no running"));

        // The same pid with another start time: a reused pid, not this run; its file goes
        // when the next run of this user writes its own.
        let stale =
            StateFile::create(&dir.path().join("b"), state(me, start + 1, None)).expect("create");
        assert!(list(&[dir.path().join("b")], proc_root).is_empty());
        let stale_path = stale.path().to_owned();
        std::mem::forget(stale);
        assert!(stale_path.exists());
        let next = StateFile::create(&dir.path().join("b"), state(1, 0, None)).expect("create");
        assert!(!stale_path.exists(), "the dead run's file was removed");
        drop(next);

        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists());
    }

    /// A symlinked file, a file whose name is not its id, oversized or malformed ones are
    /// not read.
    #[test]
    fn untrusted_files_are_not_believed() {
        let dir = crate::testutil::TempDir::new("run-state-bad");
        let proc_root = Path::new(crate::host::proc::PROC);
        let me = std::process::id();
        let start = crate::host::proc::read_stat(proc_root, me)
            .expect("stat")
            .start;
        let good = serde_json::to_string(&state(me, start, None)).expect("json");
        let d = dir.path();
        std::fs::write(d.join("elsewhere"), &good).expect("write");
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join(format!("{me}.json")))
            .expect("symlink");
        std::fs::write(d.join("12.json"), &good).expect("write");
        std::fs::write(d.join("13.json"), "{not json").expect("write");
        let big = format!("{good}{}", " ".repeat(MAX_STATE_BYTES as usize));
        std::fs::write(d.join("14.json"), big).expect("write");
        assert!(list(&[d.to_owned()], proc_root).is_empty());
    }
}

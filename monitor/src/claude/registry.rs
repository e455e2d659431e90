//! Claude Code's live session registry: `~/.claude/sessions/<PID>.json`.
//!
//! Each running CLI writes a small JSON file named by its pid with its `sessionId`, `cwd`,
//! `version` and `procStart` (field 22 of `/proc/PID/stat`: start time in clock ticks since
//! boot). It is the only place that ties a pid to Claude's own session id and project, so
//! the monitor reads it, with two traps:
//!
//! - the file is removed on a graceful exit but left behind after SIGKILL or an OOM kill,
//!   and the pid may since have been reused: an entry counts only when its `procStart`
//!   equals the start time of the process now holding that pid;
//! - `/clear` starts a new session id inside the same process by rewriting the file, so a
//!   cached entry is re-read whenever the file's mtime, size or inode changes.
//!
//! With `$CLAUDE_CONFIG_DIR` set the directory is `$CLAUDE_CONFIG_DIR/sessions`. The
//! monitor runs as root and looks in every user's home, so [`default_dirs`] takes the
//! candidate homes (and an explicit config dir) from the caller.
//!
//! These files belong to the users: they are opened without following a symlink in the
//! last component, and a malformed file is only reported at debug level, without its
//! content.

use std::{
    collections::HashMap,
    fs,
    io::{self, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use serde::Deserialize;

/// What the registry says about a live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Claude Code's own session id (changes on `/clear`).
    pub session_id: String,
    /// The session's working directory (its project).
    pub cwd: PathBuf,
    pub version: Option<String>,
    /// The configuration directory the entry was found in (the parent of `sessions/`):
    /// the session's transcripts are under its `projects/`.
    pub config_dir: PathBuf,
}

/// One parsed registry file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The `pid` key, when the file has one (it must then equal the file name's pid).
    pub pid: Option<u32>,
    pub session_id: String,
    pub cwd: PathBuf,
    pub version: Option<String>,
    /// Field 22 of /proc/PID/stat of the process that wrote it (versions before about
    /// 2.1.150 do not write it).
    pub proc_start: Option<u64>,
    /// `startedAt`: when the CLI wrote the entry, milliseconds since the epoch.
    pub started_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read")]
    Io(#[from] io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    // serde_json's message can quote a value from the file; keep only where it failed.
    #[error("not valid JSON for a session entry (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("no `{0}`")]
    Missing(&'static str),
    #[error("`procStart` is not a number of clock ticks")]
    BadProcStart,
    #[error("`pid` {inside} differs from the file name's {named}")]
    PidMismatch { inside: u32, named: u32 },
    #[error("`{0}` is longer than {1} bytes")]
    TooLong(&'static str, usize),
}

/// Longest `cwd` accepted (`PATH_MAX`): it is copied into every event of the session.
pub const CWD_MAX: usize = 4096;
/// Longest `sessionId` accepted (a UUID is 36).
pub const SESSION_ID_MAX: usize = 128;
/// Longest `version` kept (`2.1.197` is 7); a longer one is dropped.
pub const VERSION_MAX: usize = 64;

/// Registry files are a few hundred bytes; anything much larger is not one.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Cached files beyond which vanished files are pruned (and, if still full, all dropped).
const MAX_CACHED: usize = 4096;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    pid: Option<u32>,
    session_id: Option<String>,
    cwd: Option<PathBuf>,
    version: Option<String>,
    proc_start: Option<ProcStart>,
    started_at: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ProcStart {
    Number(u64),
    Text(String),
}

/// Parses one registry file (unknown keys are ignored; `procStart` may be a number or a
/// string of digits).
pub fn parse_entry(bytes: &[u8]) -> Result<Entry, RegistryError> {
    let raw: RawEntry = serde_json::from_slice(bytes).map_err(|e| RegistryError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    let proc_start = match raw.proc_start {
        Some(ProcStart::Number(n)) => Some(n),
        Some(ProcStart::Text(s)) => {
            Some(s.trim().parse().map_err(|_| RegistryError::BadProcStart)?)
        }
        None => None,
    };
    if proc_start.is_none() && raw.started_at.is_none() {
        return Err(RegistryError::Missing("procStart"));
    }
    let session_id = raw
        .session_id
        .filter(|s| !s.is_empty())
        .ok_or(RegistryError::Missing("sessionId"))?;
    let cwd = raw.cwd.ok_or(RegistryError::Missing("cwd"))?;
    // Bounded: these are copied into every event of the session (1,000 forks with a 64 KiB
    // cwd would rotate the whole event log away).
    if cwd.as_os_str().len() > CWD_MAX {
        return Err(RegistryError::TooLong("cwd", CWD_MAX));
    }
    if session_id.len() > SESSION_ID_MAX {
        return Err(RegistryError::TooLong("sessionId", SESSION_ID_MAX));
    }
    Ok(Entry {
        pid: raw.pid,
        session_id,
        cwd,
        version: raw.version.filter(|v| v.len() <= VERSION_MAX),
        proc_start,
        started_at_ms: raw.started_at,
    })
}

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
    uid: u32,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            mtime: meta.modified().ok(),
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
            uid: meta.uid(),
        }
    }
}

struct Cached {
    stamp: Stamp,
    /// `None`: the file was malformed (already reported).
    entry: Option<Entry>,
}

/// The registry directories and a cache of their parsed files.
pub struct Registry {
    dirs: Vec<PathBuf>,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

impl Registry {
    /// `dirs` are `sessions/` directories, searched in order (see [`default_dirs`]).
    pub fn new(dirs: Vec<PathBuf>) -> Registry {
        Registry {
            dirs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    #[cfg(test)]
    /// The session of the process `pid` whose start time is `proc_start_ticks`, if one of
    /// the directories has a valid entry for exactly that process.
    pub fn lookup(&self, pid: u32, proc_start_ticks: u64) -> Option<SessionInfo> {
        self.find(pid, proc_start_ticks, None, &[], None, true)
    }

    /// [`Registry::lookup`] for a known session process: its own configuration directories
    /// (`own_config_dirs`, the parents of `sessions/`, from its environment: see
    /// [`super::environ::config_dir_of`]) are searched first, then every user's. With
    /// `owner` (the session process's uid) an entry counts only when its file belongs to
    /// that uid: a file planted in someone else's directory, or a `HOME` pointed at another
    /// user's, cannot name a session that is not theirs.
    ///
    /// An entry is the process's when its `procStart` equals `proc_start_ticks`; an entry
    /// of a version that writes no `procStart` (2.1.100 does not) when its `startedAt` is
    /// not before the process started (`started_ms`, wall-clock milliseconds; a second of
    /// slack for /proc's 10 ms ticks): an earlier process with the same pid wrote its entry
    /// before this one existed. Without `everywhere`, only the own directories are looked
    /// at (a `stat` each).
    pub fn find(
        &self,
        pid: u32,
        proc_start_ticks: u64,
        started_ms: Option<i64>,
        own_config_dirs: &[PathBuf],
        owner: Option<u32>,
        everywhere: bool,
    ) -> Option<SessionInfo> {
        let own = own_config_dirs.iter().map(|c| c.join("sessions"));
        let all = self.dirs.iter().filter(|_| everywhere).cloned();
        for dir in own.chain(all) {
            let path = dir.join(format!("{pid}.json"));
            let Some((entry, file_owner)) = self.entry(&path, pid) else {
                continue;
            };
            if owner.is_some_and(|uid| uid != file_owner) {
                tracing::debug!(
                    path = %path.display(),
                    file_owner,
                    owner,
                    "session registry entry not owned by the session's user: ignored"
                );
                continue;
            }
            let current = match (entry.proc_start, entry.started_at_ms, started_ms) {
                (Some(ticks), _, _) => ticks == proc_start_ticks,
                (None, Some(at), Some(started)) => at >= started - 1000,
                (None, _, _) => false,
            };
            if !current {
                tracing::debug!(
                    path = %path.display(),
                    file_proc_start = entry.proc_start,
                    file_started_at = entry.started_at_ms,
                    proc_start = proc_start_ticks,
                    "stale session registry entry: written by an earlier process with this pid"
                );
                continue;
            }
            return Some(SessionInfo {
                session_id: entry.session_id,
                cwd: entry.cwd,
                version: entry.version,
                config_dir: dir.parent().unwrap_or(&dir).to_path_buf(),
            });
        }
        None
    }

    #[cfg(test)]
    /// Every entry whose process is alive: `proc_start(pid)` gives the start time of the
    /// process holding `pid` now (`None` when there is none), e.g. [`read_start_ticks`].
    /// Sorted by pid. For the start-up scan and for finding a session by its id.
    pub fn live_sessions(
        &self,
        proc_start: impl Fn(u32) -> Option<u64>,
    ) -> Vec<(u32, SessionInfo)> {
        let mut pids: Vec<u32> = Vec::new();
        for dir in &self.dirs {
            let Ok(read) = fs::read_dir(dir) else {
                continue;
            };
            for dirent in read.flatten() {
                let name = dirent.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u32>().ok());
                if let Some(pid) = pid
                    && !pids.contains(&pid)
                {
                    pids.push(pid);
                }
            }
        }
        pids.sort_unstable();
        pids.into_iter()
            .filter_map(|pid| Some((pid, self.lookup(pid, proc_start(pid)?)?)))
            .collect()
    }

    /// The parsed file at `path` and its owner's uid, from the cache while its stamp is
    /// unchanged.
    fn entry(&self, path: &Path, pid: u32) -> Option<(Entry, u32)> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::debug!(path = %path.display(), "session registry file: {e}");
                }
                cache.remove(path);
                return None;
            }
        };
        let stamp = Stamp::of(&meta);
        if let Some(cached) = cache.get(path)
            && cached.stamp == stamp
        {
            return cached.entry.clone().map(|e| (e, stamp.uid));
        }
        let entry = match read_entry(path, &meta, pid) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::debug!(path = %path.display(), "ignoring session registry file: {e}");
                None
            }
        };
        if cache.len() >= MAX_CACHED {
            cache.retain(|p, _| p.exists());
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(
            path.to_path_buf(),
            Cached {
                stamp,
                entry: entry.clone(),
            },
        );
        entry.map(|e| (e, stamp.uid))
    }
}

fn read_entry(path: &Path, meta: &fs::Metadata, pid: u32) -> Result<Entry, RegistryError> {
    if !meta.is_file() {
        return Err(RegistryError::NotAFile);
    }
    // No symlink anywhere on the way: the entry is in a user's directory.
    let file = crate::host::nofollow::open_no_symlinks(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(RegistryError::TooLarge);
    }
    let entry = parse_entry(&bytes)?;
    if let Some(inside) = entry.pid
        && inside != pid
    {
        return Err(RegistryError::PidMismatch { inside, named: pid });
    }
    Ok(entry)
}

/// The `sessions/` directories that exist: `<config_dir>/sessions` first when a
/// `CLAUDE_CONFIG_DIR` is given, then `<home>/.claude/sessions` for each candidate home
/// (e.g. `/root` and every `/home/*`, see [`candidate_homes`]), without duplicates.
pub fn default_dirs(home_dirs: &[PathBuf], config_dir: Option<&Path>) -> Vec<PathBuf> {
    let candidates = config_dir
        .map(|c| c.join("sessions"))
        .into_iter()
        .chain(home_dirs.iter().map(|h| h.join(".claude").join("sessions")));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in candidates {
        if dir.is_dir() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// `/root` and every directory in `/home`, sorted: where users' `.claude` directories are.
pub fn candidate_homes() -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = fs::read_dir("/home")
        .map(|read| {
            read.flatten()
                .map(|d| d.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    homes.sort();
    homes.insert(0, PathBuf::from("/root"));
    homes
}

#[cfg(test)]
/// The start time of the process `pid` now, as the registry's `procStart` records it.
pub fn read_start_ticks(pid: u32) -> io::Result<u64> {
    crate::host::proc::read_stat(std::path::Path::new(crate::host::proc::PROC), pid)
        .map(|s| s.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::testutil::TempDir;

    const ID_A: &str = "3f2a9c1e-7b4d-4e8a-9f0b-1c2d3e4f5a6b";
    const ID_B: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

    fn write_entry(dir: &Path, pid: u32, json: &str) {
        fs::write(dir.join(format!("{pid}.json")), json).expect("write entry");
    }

    fn sessions_dir(home: &TempDir) -> PathBuf {
        let dir = home.path().join(".claude/sessions");
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn parses_real_shape_with_extra_keys() {
        let json = format!(
            r#"{{"pid":22606,"sessionId":"{ID_A}","cwd":"/home/u/src/app","startedAt":1763762520123,
            "version":"2.0.14","procStart":"884213","kind":"interactive","entrypoint":"cli"}}"#
        );
        let e = parse_entry(json.as_bytes()).expect("entry");
        assert_eq!(
            e,
            Entry {
                pid: Some(22606),
                session_id: ID_A.into(),
                cwd: "/home/u/src/app".into(),
                version: Some("2.0.14".into()),
                proc_start: Some(884213),
                started_at_ms: Some(1763762520123),
            }
        );
        // procStart as a number, no pid or version.
        let e = parse_entry(
            format!(r#"{{"sessionId":"{ID_A}","cwd":"/","procStart":884213}}"#).as_bytes(),
        )
        .expect("entry");
        assert_eq!((e.proc_start, e.pid, e.version), (Some(884213), None, None));
    }

    #[test]
    fn malformed_entries() {
        let cases: &[(&str, &str)] = &[
            ("", "JSON"),
            ("{\"sessionId\":", "JSON"),
            ("[1,2]", "JSON"),
            (r#"{"sessionId":"x","cwd":"/"}"#, "procStart"),
            (r#"{"sessionId":"x","cwd":"/","startedAt":"soon"}"#, "JSON"),
            (r#"{"cwd":"/","procStart":1}"#, "sessionId"),
            (r#"{"sessionId":"","cwd":"/","procStart":1}"#, "sessionId"),
            (r#"{"sessionId":"x","procStart":1}"#, "cwd"),
            (
                r#"{"sessionId":"x","cwd":"/","procStart":"12a"}"#,
                "procStart",
            ),
            (r#"{"sessionId":"x","cwd":"/","procStart":-5}"#, "JSON"),
            (r#"{"sessionId":"x","cwd":"/","procStart":1.5}"#, "JSON"),
            (r#"{"sessionId":7,"cwd":"/","procStart":1}"#, "JSON"),
        ];
        for (json, what) in cases {
            let err = parse_entry(json.as_bytes()).expect_err(json);
            assert!(err.to_string().contains(what), "{json}: {err}");
        }
        // Bounded fields: a huge cwd or session id is refused, a huge version dropped.
        let long = "a".repeat(CWD_MAX);
        let json = format!(r#"{{"sessionId":"x","cwd":"/{long}","procStart":1}}"#);
        let err = parse_entry(json.as_bytes()).expect_err("long cwd");
        assert!(err.to_string().contains("`cwd` is longer"), "{err}");
        let json = format!(r#"{{"sessionId":"{long}","cwd":"/","procStart":1}}"#);
        assert!(parse_entry(json.as_bytes()).is_err());
        let json = format!(r#"{{"sessionId":"x","cwd":"/","procStart":1,"version":"{long}"}}"#);
        assert_eq!(parse_entry(json.as_bytes()).expect("entry").version, None);
        // The error message never carries a value from the file.
        let err = parse_entry(br#"{"sessionId":"x","cwd":"/","procStart":"sk-secret"}"#)
            .expect_err("bad");
        assert!(!err.to_string().contains("secret"));
        let err = parse_entry(br#"{"sessionId":["sk-secret"],"cwd":"/","procStart":1}"#)
            .expect_err("bad");
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn lookup_checks_proc_start() {
        let home = TempDir::new("reg-home");
        let dir = sessions_dir(&home);
        write_entry(
            &dir,
            4000,
            &format!(
                r#"{{"pid":4000,"sessionId":"{ID_A}","cwd":"/home/u/src/app","version":"2.0.14","procStart":"1000"}}"#
            ),
        );
        let reg = Registry::new(vec![dir.clone()]);
        assert_eq!(
            reg.lookup(4000, 1000),
            Some(SessionInfo {
                session_id: ID_A.into(),
                cwd: "/home/u/src/app".into(),
                version: Some("2.0.14".into()),
                config_dir: home.path().join(".claude"),
            })
        );
        // Left behind by a SIGKILLed session, pid now reused by another process.
        assert_eq!(reg.lookup(4000, 5555), None);
        // No file for that pid.
        assert_eq!(reg.lookup(4001, 1000), None);
    }

    #[test]
    fn own_config_dir_first_and_only_the_owners_entries() {
        use std::os::unix::fs::chown;
        // A session run with HOME=/srv/box: no passwd home holds its entry.
        let own_home = TempDir::new("reg-own");
        let own = sessions_dir(&own_home);
        let entry = format!(r#"{{"sessionId":"{ID_A}","cwd":"/w","procStart":"42"}}"#);
        write_entry(&own, 900, &entry);
        let reg = Registry::new(Vec::new());
        assert_eq!(reg.lookup(900, 42), None);
        let config = own_home.path().join(".claude");
        let found = reg.find(900, 42, None, std::slice::from_ref(&config), None, true);
        assert_eq!(
            found.map(|s| (s.session_id, s.config_dir)),
            Some((ID_A.into(), config.clone()))
        );
        // Owned by another uid than the session process's: not its entry.
        let me = fs::metadata(own.join("900.json")).expect("meta").uid();
        assert!(
            reg.find(900, 42, None, std::slice::from_ref(&config), Some(me), true)
                .is_some()
        );
        assert_eq!(
            reg.find(
                900,
                42,
                None,
                std::slice::from_ref(&config),
                Some(me + 1),
                true
            ),
            None
        );
        // The owner is part of the cache stamp: a chown is seen without a rewrite.
        if me == 0 {
            chown(own.join("900.json"), Some(4242), None).expect("chown");
            assert_eq!(
                reg.find(900, 42, None, std::slice::from_ref(&config), Some(0), true),
                None
            );
            assert!(
                reg.find(
                    900,
                    42,
                    None,
                    std::slice::from_ref(&config),
                    Some(4242),
                    true
                )
                .is_some()
            );
        }
    }

    /// 2.1.100's entry: no `procStart` (nor `version`); `startedAt` tells a current entry
    /// from one an earlier process with the same pid left behind.
    #[test]
    fn an_entry_without_proc_start_is_checked_by_its_start() {
        let home = TempDir::new("reg-old");
        let dir = sessions_dir(&home);
        write_entry(
            &dir,
            13576,
            &format!(
                r#"{{"pid":13576,"sessionId":"{ID_A}","cwd":"/tmp/p","startedAt":1796247814937,"kind":"interactive","entrypoint":"sdk-cli"}}"#
            ),
        );
        let reg = Registry::new(vec![dir]);
        let found = |started| {
            reg.find(13576, 1, started, &[], None, true)
                .map(|s| s.session_id)
        };
        // The process started half a second before it wrote the entry: its own.
        assert_eq!(found(Some(1796247814437)).as_deref(), Some(ID_A));
        // Within the tick slack.
        assert_eq!(found(Some(1796247815500)).as_deref(), Some(ID_A));
        // A process that started a minute after the entry was written: a stale entry.
        assert_eq!(found(Some(1796247874937)), None);
        // Nothing to compare with.
        assert_eq!(found(None), None);
    }

    #[test]
    fn clear_rewrites_the_file_and_is_seen() {
        let home = TempDir::new("reg-clear");
        let dir = sessions_dir(&home);
        let body = |id: &str| format!(r#"{{"sessionId":"{id}","cwd":"/w","procStart":77}}"#);
        write_entry(&dir, 10, &body(ID_A));
        let reg = Registry::new(vec![dir.clone()]);
        assert_eq!(
            reg.lookup(10, 77).map(|s| s.session_id).as_deref(),
            Some(ID_A)
        );
        // Cached: a second lookup does not need the file's content to change anything.
        assert_eq!(
            reg.lookup(10, 77).map(|s| s.session_id).as_deref(),
            Some(ID_A)
        );

        // `/clear`: same length, new id. Force a different mtime so the test does not
        // depend on the file system's timestamp granularity.
        let path = dir.join("10.json");
        fs::write(&path, body(ID_B)).expect("rewrite");
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .expect("set mtime");
        assert_eq!(
            reg.lookup(10, 77).map(|s| s.session_id).as_deref(),
            Some(ID_B)
        );

        // Replaced by rename (new inode) with the same mtime: seen too.
        let tmp = dir.join("10.json.tmp");
        fs::write(&tmp, body(ID_A)).expect("tmp");
        fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(later))
            .expect("set mtime");
        fs::rename(&tmp, &path).expect("rename");
        assert_eq!(
            reg.lookup(10, 77).map(|s| s.session_id).as_deref(),
            Some(ID_A)
        );

        // Graceful exit removes it.
        fs::remove_file(&path).expect("rm");
        assert_eq!(reg.lookup(10, 77), None);
    }

    #[test]
    fn malformed_files_and_odd_entries_give_none() {
        let home = TempDir::new("reg-bad");
        let dir = sessions_dir(&home);
        write_entry(&dir, 1, "{not json");
        write_entry(&dir, 2, r#"{"sessionId":"x","cwd":"/"}"#);
        // The pid inside must be the file's pid.
        write_entry(
            &dir,
            3,
            r#"{"pid":4,"sessionId":"x","cwd":"/","procStart":9}"#,
        );
        // A directory and a symlink named like entries.
        fs::create_dir(dir.join("5.json")).expect("mkdir");
        write_entry(
            home.path(),
            6,
            r#"{"sessionId":"x","cwd":"/","procStart":9}"#,
        );
        std::os::unix::fs::symlink(home.path().join("6.json"), dir.join("6.json"))
            .expect("symlink");
        // Too large to be a registry file.
        let big = format!(
            r#"{{"sessionId":"x","cwd":"/","procStart":9,"pad":"{}"}}"#,
            "x".repeat(MAX_FILE_BYTES as usize)
        );
        write_entry(&dir, 7, &big);
        let reg = Registry::new(vec![dir.clone()]);
        for pid in [1, 2, 3, 5, 6, 7] {
            assert_eq!(reg.lookup(pid, 9), None, "pid {pid}");
        }
        // Fixed in place: seen on the next lookup.
        write_entry(&dir, 1, r#"{"sessionId":"fixed","cwd":"/","procStart":9}"#);
        let path = dir.join("1.json");
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5)))
            .expect("set mtime");
        assert_eq!(
            reg.lookup(1, 9).map(|s| s.session_id).as_deref(),
            Some("fixed")
        );
    }

    #[test]
    fn several_dirs_pick_the_matching_entry() {
        let alice = TempDir::new("reg-alice");
        let bob = TempDir::new("reg-bob");
        let (a, b) = (sessions_dir(&alice), sessions_dir(&bob));
        // A stale file in alice's registry, the live one in bob's (same pid).
        write_entry(&a, 300, r#"{"sessionId":"old","cwd":"/a","procStart":1}"#);
        write_entry(&b, 300, r#"{"sessionId":"new","cwd":"/b","procStart":2}"#);
        let reg = Registry::new(vec![a, b]);
        let info = reg.lookup(300, 2).expect("found");
        assert_eq!(info.session_id, "new");
        assert_eq!(info.config_dir, bob.path().join(".claude"));
    }

    #[test]
    fn live_sessions_filters_by_start_time() {
        let home = TempDir::new("reg-live");
        let dir = sessions_dir(&home);
        write_entry(
            &dir,
            20,
            r#"{"sessionId":"live","cwd":"/a","procStart":100}"#,
        );
        write_entry(
            &dir,
            21,
            r#"{"sessionId":"stale","cwd":"/a","procStart":100}"#,
        );
        write_entry(
            &dir,
            22,
            r#"{"sessionId":"gone","cwd":"/a","procStart":100}"#,
        );
        fs::write(dir.join("notes.txt"), "x").expect("write");
        let reg = Registry::new(vec![dir]);
        let live = reg.live_sessions(|pid| match pid {
            20 => Some(100),
            21 => Some(999),
            _ => None,
        });
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].0, live[0].1.session_id.as_str()), (20, "live"));
    }

    #[test]
    fn default_dirs_lists_existing_ones() {
        let root = TempDir::new("reg-homes");
        let homes: Vec<PathBuf> = ["root", "home/alice", "home/bob", "home/carol"]
            .iter()
            .map(|h| root.path().join(h))
            .collect();
        for h in &homes {
            fs::create_dir_all(h).expect("home");
        }
        // alice and root have used Claude Code; bob has .claude but no sessions yet.
        fs::create_dir_all(homes[0].join(".claude/sessions")).expect("mkdir");
        fs::create_dir_all(homes[1].join(".claude/sessions")).expect("mkdir");
        fs::create_dir_all(homes[2].join(".claude")).expect("mkdir");
        let config = root.path().join("etc/claude");
        fs::create_dir_all(config.join("sessions")).expect("mkdir");

        assert_eq!(
            default_dirs(&homes, None),
            vec![
                homes[0].join(".claude/sessions"),
                homes[1].join(".claude/sessions"),
            ]
        );
        assert_eq!(
            default_dirs(&homes, Some(&config)),
            vec![
                config.join("sessions"),
                homes[0].join(".claude/sessions"),
                homes[1].join(".claude/sessions"),
            ]
        );
        // A config dir that is some home's .claude is not listed twice.
        assert_eq!(
            default_dirs(&homes, Some(&homes[1].join(".claude"))).len(),
            2
        );
        // A config dir without sessions/ is skipped.
        assert_eq!(
            default_dirs(&[], Some(&root.path().join("nope"))),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn start_ticks_of_live_processes() {
        let me = read_start_ticks(std::process::id()).expect("own stat");
        let init = read_start_ticks(1).expect("init stat");
        assert!(me >= init, "{me} < {init}");
        assert_eq!(
            read_start_ticks(u32::MAX).expect_err("no such pid").kind(),
            io::ErrorKind::NotFound
        );
    }
}

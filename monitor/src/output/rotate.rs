//! Bounded append-only logs ([`RotatingFile`]) and crash-safe whole-file replacement
//! ([`write_atomic`]).
//!
//! The daemon runs for months on machines whose disks fill up; its JSONL logs must stay bounded
//! and must never leave a reader with half a line, and its state files must be either the old
//! or the new version after a crash, never a mix.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

/// An append-only line log that rotates itself: `<name>` is renamed to `<name>.1`, `.1` to
/// `.2`, ... and `.keep` is overwritten, so at most `keep + 1` files exist.
///
/// Each line goes out in one `write(2)` on an `O_APPEND` descriptor with no userspace buffer,
/// so a concurrent reader (`tail -f`, `jq`) sees whole lines only, and nothing is lost in a
/// buffer if the daemon is killed.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    /// `None` after an error or a rotation that could not reopen: the next write reopens.
    file: Option<File>,
    /// (device, inode) of `file`, to notice that the path now names another file.
    identity: (u64, u64),
    size: u64,
}

impl RotatingFile {
    /// Opens (creating it and its parent directories if needed) `path` for appending.
    /// `max_bytes` is the size a file may reach before the next line goes to a fresh one.
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let mut rf = RotatingFile {
            path,
            max_bytes,
            keep,
            file: None,
            identity: (0, 0),
            size: 0,
        };
        rf.reopen()?;
        Ok(rf)
    }

    #[cfg(test)]
    /// The path of the current (newest) file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    /// Bytes in the current file, as far as this writer knows.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `line` and a newline (the caller passes none), rotating first if the line would
    /// take the file past `max_bytes`. A line longer than `max_bytes` is still written whole,
    /// alone in a fresh file.
    ///
    /// Errors are returned with the path in the message; the next call starts over cleanly
    /// (reopening the file, recreating the directory if it was removed).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let result = self.try_write_line(line);
        if result.is_err() {
            // Drop the descriptor: it may point at a removed file or a full disk's stale
            // state. The next write reopens from scratch.
            self.file = None;
        }
        result
    }

    fn try_write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.ensure_current()?;
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let before = self.size;
        let file = self.file.as_mut().ok_or_else(|| {
            io::Error::other(format!("{}: log file is not open", self.path.display()))
        })?;
        if let Err(e) = file.write_all(&buf) {
            // A short write (ENOSPC half-way) would leave half a line that the next line gets
            // glued to. Cut it off; best effort, the disk may refuse even that.
            let _ = file.set_len(before);
            return Err(with_path(e, "writing", &self.path));
        }
        self.size = before + len;
        Ok(())
    }

    /// Nothing is buffered in userspace (each line is one `write(2)`), so this only exists for
    /// symmetry with buffered writers; use [`RotatingFile::sync`] for durability.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    #[cfg(test)]
    /// Asks the kernel to put the written lines on disk (`fdatasync`).
    pub fn sync(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f
                .sync_data()
                .map_err(|e| with_path(e, "syncing", &self.path)),
            None => Ok(()),
        }
    }

    /// Makes sure `file` is open and still the file at `path`: someone may have removed or
    /// rotated it (logrotate, a user cleaning up) since the last write. One `stat` per line is
    /// cheap next to the write itself. Also refreshes the size, so a truncation from outside
    /// is noticed.
    fn ensure_current(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            match fs::metadata(&self.path) {
                Ok(m) if (m.dev(), m.ino()) == self.identity => {
                    self.size = m.len();
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(with_path(e, "checking", &self.path)),
            }
        }
        self.reopen()
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(PRIVATE_FILE)
            .open(&self.path)
            .map_err(|e| with_path(e, "opening", &self.path))?;
        let m = file
            .metadata()
            .map_err(|e| with_path(e, "checking", &self.path))?;
        // A file left by an older version (or created under another umask) is made private.
        if m.permissions().mode() & 0o777 != PRIVATE_FILE {
            file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE))
                .map_err(|e| with_path(e, "setting permissions of", &self.path))?;
        }
        self.identity = (m.dev(), m.ino());
        self.size = m.len();
        self.file = Some(file);
        Ok(())
    }

    /// `<name>.(keep-1)` -> `<name>.keep` (overwriting it), ..., `<name>` -> `<name>.1`, then
    /// a fresh `<name>`. With `keep == 0` the current file is simply removed.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        for i in (1..self.keep).rev() {
            let from = numbered(&self.path, i);
            let to = numbered(&self.path, i + 1);
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(with_path(
                        e,
                        &format!("rotating to {}", to.display()),
                        &from,
                    ));
                }
            }
        }
        let result = if self.keep == 0 {
            fs::remove_file(&self.path)
        } else {
            fs::rename(&self.path, numbered(&self.path, 1))
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, "rotating", &self.path)),
        }
        self.reopen()
    }
}

/// `<path>.<n>`
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Adds what was being done and to which path, keeping the error kind.
fn with_path(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Replaces `path` with `bytes` so that, even after a crash, it holds either the old or the new
/// content: write a temp file in the same directory (same filesystem, so the rename is atomic),
/// fsync it, rename it over `path`, fsync the directory so the rename itself is durable.
///
/// The file gets exactly `mode`, whatever the umask (the agent's data is 0600: it holds other
/// users' command lines). On error the temp file is removed and the target is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (tmp, file) = create_temp(dir, name, mode)?;
    let result = fill_and_rename(file, &tmp, path, dir, bytes, mode);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The mode of every file the agent writes under its data directory: they hold every
/// user's command lines and tool commands.
pub const PRIVATE_FILE: u32 = 0o600;
/// The mode of the directories it creates there.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` and its missing parents with [`PRIVATE_DIR`], whatever the umask; an
/// existing `dir` (the agent's own: logs, reports) is made [`PRIVATE_DIR`] too. Existing
/// parents are left as they are.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
        .map_err(|e| with_path(e, "creating directory", dir))?;
    let m = fs::metadata(dir).map_err(|e| with_path(e, "checking", dir))?;
    if m.permissions().mode() & 0o777 != PRIVATE_DIR {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR))
            .map_err(|e| with_path(e, "setting permissions of", dir))?;
    }
    Ok(())
}

/// Creates `.<name>.<pid>.<nanos>.tmp` exclusively, retrying with another name on a collision
/// (another writer, a leftover from a crash).
fn create_temp(dir: &Path, name: &std::ffi::OsStr, mode: u32) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last_err = None;
    for attempt in 0..100u32 {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{pid}.{nanos}.{attempt}.tmp"));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(with_path(e, "creating temporary file", &tmp)),
        }
    }
    let e = last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(with_path(e, "creating temporary file in", dir))
}

fn fill_and_rename(
    mut file: File,
    tmp: &Path,
    path: &Path,
    dir: &Path,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    // Exactly `mode`: the umask only ever narrows what `open` was given.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(e, "setting permissions of", tmp))?;
    file.write_all(bytes)
        .map_err(|e| with_path(e, "writing", tmp))?;
    file.sync_all().map_err(|e| with_path(e, "syncing", tmp))?;
    drop(file);
    fs::rename(tmp, path)
        .map_err(|e| with_path(e, &format!("renaming {} to", tmp.display()), path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, "syncing directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::testutil::TempDir;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn rotates_exactly_at_the_boundary() {
        let t = TempDir::new("boundary");
        let path = t.0.join("sub/dir/events.jsonl");
        // Each line "xxxxxxxxx" + '\n' = 10 bytes; max 30 = exactly three lines.
        let mut rf = RotatingFile::open(path.clone(), 30, 2).unwrap();
        assert_eq!(rf.path(), path.as_path());
        let line = |i: u8| vec![b'a' + i; 9];
        for i in 0..3 {
            rf.write_line(&line(i)).unwrap();
        }
        assert_eq!(rf.size(), 30);
        assert_eq!(names(path.parent().unwrap()), ["events.jsonl"]);
        // The fourth line would make 40 > 30: rotate first.
        rf.write_line(&line(3)).unwrap();
        let dir = path.parent().unwrap();
        assert_eq!(names(dir), ["events.jsonl", "events.jsonl.1"]);
        assert_eq!(read(&path), "ddddddddd\n");
        assert_eq!(
            read(&numbered(&path, 1)),
            "aaaaaaaaa\nbbbbbbbbb\nccccccccc\n"
        );
        assert_eq!(rf.size(), 10);
        for i in 4..12 {
            rf.write_line(&line(i)).unwrap();
        }
        // 12 lines of 10 bytes, 3 per file: the current file plus keep=2 older ones, the
        // oldest (a..c, then d..f) dropped.
        assert_eq!(
            names(dir),
            ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
        );
        assert_eq!(read(&path), "jjjjjjjjj\nkkkkkkkkk\nlllllllll\n");
        assert_eq!(
            read(&numbered(&path, 1)),
            "ggggggggg\nhhhhhhhhh\niiiiiiiii\n"
        );
        assert_eq!(
            read(&numbered(&path, 2)),
            "ddddddddd\neeeeeeeee\nfffffffff\n"
        );
    }

    #[test]
    fn appends_to_existing_file_and_knows_its_size() {
        let t = TempDir::new("append");
        let path = t.0.join("log");
        fs::write(&path, "0123456789012345678\n").unwrap();
        let mut rf = RotatingFile::open(path.clone(), 25, 3).unwrap();
        assert_eq!(rf.size(), 20);
        rf.write_line(b"abcd").unwrap(); // 20 + 5 = 25: fits exactly
        assert_eq!(read(&path), "0123456789012345678\nabcd\n");
        rf.write_line(b"").unwrap(); // 26 > 25: rotates
        assert_eq!(read(&path), "\n");
        assert_eq!(read(&numbered(&path, 1)), "0123456789012345678\nabcd\n");
    }

    #[test]
    fn keep_zero_keeps_only_the_current_file() {
        let t = TempDir::new("keep0");
        let path = t.0.join("log");
        let mut rf = RotatingFile::open(path.clone(), 10, 0).unwrap();
        rf.write_line(b"12345678").unwrap();
        rf.write_line(b"abc").unwrap();
        assert_eq!(names(&t.0), ["log"]);
        assert_eq!(read(&path), "abc\n");
    }

    #[test]
    fn huge_line_is_written_whole_into_a_fresh_file() {
        let t = TempDir::new("huge");
        let path = t.0.join("log");
        let mut rf = RotatingFile::open(path.clone(), 16, 3).unwrap();
        rf.write_line(b"small").unwrap();
        let huge = vec![b'x'; 100];
        rf.write_line(&huge).unwrap();
        assert_eq!(read(&numbered(&path, 1)), "small\n");
        assert_eq!(fs::read(&path).unwrap().len(), 101);
        // The next line does not join the oversized file.
        rf.write_line(b"next").unwrap();
        assert_eq!(read(&path), "next\n");
        assert_eq!(fs::read(numbered(&path, 1)).unwrap().len(), 101);
        assert_eq!(read(&numbered(&path, 2)), "small\n");
        // An oversized line into an empty file does not rotate an empty file away.
        let path2 = t.0.join("log2");
        let mut rf2 = RotatingFile::open(path2.clone(), 16, 3).unwrap();
        rf2.write_line(&huge).unwrap();
        assert!(!numbered(&path2, 1).exists());
        assert_eq!(fs::read(&path2).unwrap().len(), 101);
    }

    #[test]
    fn reopens_after_external_removal_and_rotation() {
        let t = TempDir::new("reopen");
        let path = t.0.join("logs/log");
        let mut rf = RotatingFile::open(path.clone(), 1000, 3).unwrap();
        rf.write_line(b"one").unwrap();
        fs::remove_file(&path).unwrap();
        rf.write_line(b"two").unwrap();
        assert_eq!(read(&path), "two\n");
        assert_eq!(rf.size(), 4);
        // logrotate-style move: we must write to the new file, not the moved one.
        fs::rename(&path, t.0.join("logs/moved")).unwrap();
        rf.write_line(b"three").unwrap();
        assert_eq!(read(&path), "three\n");
        assert_eq!(read(&t.0.join("logs/moved")), "two\n");
        // The whole directory removed.
        fs::remove_dir_all(t.0.join("logs")).unwrap();
        rf.write_line(b"four").unwrap();
        assert_eq!(read(&path), "four\n");
        // Truncated from outside: the size follows.
        fs::write(&path, "").unwrap();
        rf.write_line(b"five").unwrap();
        assert_eq!(rf.size(), 5);
        assert_eq!(read(&path), "five\n");
    }

    #[test]
    fn errors_are_returned_and_the_next_write_retries() {
        let t = TempDir::new("error");
        let path = t.0.join("logs/log");
        let mut rf = RotatingFile::open(path.clone(), 1000, 3).unwrap();
        rf.write_line(b"one").unwrap();
        // Replace the directory with a file: reopening cannot work.
        fs::remove_dir_all(t.0.join("logs")).unwrap();
        fs::write(t.0.join("logs"), "not a dir").unwrap();
        let err = rf.write_line(b"two").unwrap_err();
        assert!(err.to_string().contains("logs"), "{err}");
        // And again: still an error, no panic.
        assert!(rf.write_line(b"two").is_err());
        fs::remove_file(t.0.join("logs")).unwrap();
        rf.write_line(b"three").unwrap();
        assert_eq!(read(&path), "three\n");
        rf.flush().unwrap();
        rf.sync().unwrap();
    }

    #[test]
    fn open_fails_cleanly_when_parent_is_a_file() {
        let t = TempDir::new("openerr");
        fs::write(t.0.join("f"), "").unwrap();
        let err = RotatingFile::open(t.0.join("f/log"), 100, 1).unwrap_err();
        assert!(err.to_string().contains("f"), "{err}");
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Under the umask `cargo xtask run` has (022), what the agent creates is private: the
    /// directories 0700, the files 0600; an old 0644 log is made 0600 when it is reopened.
    #[test]
    fn data_is_private_whatever_the_umask() {
        // SAFETY: umask has no preconditions; 022 is the usual default, so the other tests
        // running beside this one see what they would anyway.
        unsafe { libc::umask(0o022) };
        let t = TempDir::new("modes");
        let logs = t.0.join("data/logs");
        let mut f = RotatingFile::open(logs.join("events.jsonl"), 1 << 20, 2).unwrap();
        f.write_line(b"{}").unwrap();
        assert_eq!(mode(&t.0.join("data")), 0o700);
        assert_eq!(mode(&logs), 0o700);
        assert_eq!(mode(&logs.join("events.jsonl")), 0o600);
        write_atomic(&logs.join("r.json"), b"{}", PRIVATE_FILE).unwrap();
        assert_eq!(mode(&logs.join("r.json")), 0o600);

        let old = t.0.join("old");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(old.join("alerts.jsonl"), "").unwrap();
        fs::set_permissions(old.join("alerts.jsonl"), fs::Permissions::from_mode(0o644)).unwrap();
        RotatingFile::open(old.join("alerts.jsonl"), 1 << 20, 2).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join("alerts.jsonl")), 0o600);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let t = TempDir::new("atomic");
        let path = t.0.join("state.json");
        write_atomic(&path, b"first", PRIVATE_FILE).unwrap();
        assert_eq!(read(&path), "first");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"second, longer", PRIVATE_FILE).unwrap();
        assert_eq!(read(&path), "second, longer");
        assert_eq!(names(&t.0), ["state.json"]);
        // Exactly the mode asked for, not the replaced file's.
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_atomic(&path, b"unit", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn write_atomic_fails_without_leaving_anything_behind() {
        let t = TempDir::new("atomicerr");
        // The parent is a file: the temp file cannot even be created.
        fs::write(t.0.join("file"), "keep me").unwrap();
        let err = write_atomic(&t.0.join("file/x"), b"data", PRIVATE_FILE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
        assert_eq!(names(&t.0), ["file"]);
        assert_eq!(read(&t.0.join("file")), "keep me");
        // The target is a non-empty directory: the rename fails after the temp file was
        // written; the temp file must be cleaned up and the target untouched.
        fs::create_dir(t.0.join("target")).unwrap();
        fs::write(t.0.join("target/inside"), "x").unwrap();
        assert!(write_atomic(&t.0.join("target"), b"data", PRIVATE_FILE).is_err());
        assert_eq!(names(&t.0), ["file", "target"]);
        assert_eq!(names(&t.0.join("target")), ["inside"]);
        // No file name at all.
        assert_eq!(
            write_atomic(Path::new("/"), b"x", PRIVATE_FILE)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }
}

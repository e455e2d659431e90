//! Opening a file in a user's directory without following any symlink on the way.
//!
//! The agent runs as root and reads files in the homes of the people it watches (Claude
//! Code's registry entries and transcripts). `O_NOFOLLOW` guards only the last component: a
//! user who makes `~/.claude/projects` a symlink to `/root/secret` would have root read
//! there. [`open_no_symlinks`] walks the path one component at a time from `/`, each with
//! `O_NOFOLLOW`, so a symlink anywhere in it is an error (`ELOOP` or `ENOTDIR`), not a
//! detour.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Component, Path},
};

/// Opens the regular file at `path` (absolute, no `..`) for reading, non-blocking, with no
/// symlink followed in any component.
pub fn open_no_symlinks(path: &Path) -> io::Result<File> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {what}", path.display()),
        )
    };
    if !path.is_absolute() {
        return Err(invalid("not an absolute path"));
    }
    let names: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::RootDir | Component::CurDir => None,
            Component::ParentDir | Component::Prefix(_) => Some(Err(())),
        })
        .collect::<Result<_, _>>()
        .map_err(|()| invalid("`..` is not allowed"))?;
    let Some((last, dirs)) = names.split_last() else {
        return Err(invalid("no file name"));
    };
    let mut dir = open_at(None, Path::new("/").as_os_str(), DIR_FLAGS)?;
    for name in dirs {
        dir = open_at(Some(&dir), name, DIR_FLAGS)?;
    }
    let fd = open_at(
        Some(&dir),
        last,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
    )?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(invalid("not a regular file"));
    }
    Ok(file)
}

const DIR_FLAGS: libc::c_int =
    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

fn open_at(
    dir: Option<&OwnedFd>,
    name: &std::ffi::OsStr,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let name = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `name` is a valid C string and `at` an open directory or AT_FDCWD.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn a_symlink_anywhere_on_the_way_is_refused() {
        let t = TempDir::new("nofollow");
        let home = t.path().join("home");
        std::fs::create_dir_all(home.join(".claude/projects/p")).unwrap();
        std::fs::write(home.join(".claude/projects/p/s.jsonl"), "mine").unwrap();
        let mut text = String::new();
        open_no_symlinks(&home.join(".claude/projects/p/s.jsonl"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "mine");

        // `~/.claude/projects` made a symlink to a directory the user must not read through.
        let secret = t.path().join("root-only");
        std::fs::create_dir_all(secret.join("p")).unwrap();
        std::fs::write(secret.join("p/s.jsonl"), "secret").unwrap();
        let other = t.path().join("other");
        std::fs::create_dir_all(other.join(".claude")).unwrap();
        std::os::unix::fs::symlink(&secret, other.join(".claude/projects")).unwrap();
        let err = open_no_symlinks(&other.join(".claude/projects/p/s.jsonl")).unwrap_err();
        // O_NOFOLLOW on a symlink: ELOOP, or ENOTDIR with O_DIRECTORY.
        assert!(
            matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
            "{err}"
        );
        // The last component a symlink: refused too.
        std::os::unix::fs::symlink(secret.join("p/s.jsonl"), home.join("link.jsonl")).unwrap();
        assert!(open_no_symlinks(&home.join("link.jsonl")).is_err());
        // A directory, a relative path, `..`: refused.
        assert!(open_no_symlinks(&home).is_err());
        assert!(open_no_symlinks(Path::new("rel/x")).is_err());
        assert!(open_no_symlinks(&home.join("../home/.claude/projects/p/s.jsonl")).is_err());
    }
}

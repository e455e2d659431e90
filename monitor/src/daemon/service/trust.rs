//! Whether the binary that goes into `ExecStart=` can be trusted to run as root: only root may
//! be able to change it. The same walk decides whether the daemon may read its configuration
//! file ([`check_config`]): whoever can change that file chooses where root writes
//! (`data_dir`), what it unpins (`kernel.pin_dir`) and what it watches.
//!
//! The service runs the file named in the unit as root at every boot and every restart. If a
//! user could write that file, or any directory on the way to it (replace the file, or swap a
//! directory or symlink on the path), that user would run code as root. So before a unit is
//! written, the path is resolved component by component, following symlinks the way the kernel
//! does, and every directory looked into, and the file at the end, must be owned by uid 0 and
//! not writable by group or others.
//!
//! - The group and other write bits are checked, not the owning group: a directory of group
//!   `staff`, mode 0755, is fine. A POSIX ACL granting write to a user or group shows in the
//!   group bits (they hold the ACL mask), so it is refused too.
//! - Sticky directories (`/tmp`, mode 1777) are refused like any other world-writable one:
//!   anyone may create names there (a file planted before the install, a directory taken
//!   ahead of it), `systemd-tmpfiles` ages their contents out, and the unit's `PrivateTmp=`
//!   hides `/tmp` and `/var/tmp` from the service, so the binary would not even be found.
//! - A symlink's own mode means nothing (always 0777); who can replace it is decided by the
//!   directory it is in, which is checked. Its target is then resolved and checked in turn, so
//!   a root-owned `/usr/local/bin/claude-monitor -> /home/u/build/claude-monitor` is refused
//!   for `/home/u/build`.
//!
//! The walk is a pure function over [`Lookup`] (lstat and readlink), so its rules are tested
//! with a fake file system; [`RealFs`] is the one the installer uses.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as the kernel's ELOOP limit.
const MAX_SYMLINKS: usize = 40;

/// What a file is, from its `lstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A device, socket or FIFO.
    Other,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Other => "special file",
        }
    }
}

/// The part of an `lstat` result the check needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub uid: u32,
    /// Permission bits, including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
}

/// The file system as the check sees it.
pub trait Lookup {
    /// `lstat(2)`: does not follow a symlink at `path`.
    fn lstat(&self, path: &Path) -> io::Result<Meta>;
    /// `readlink(2)`.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
}

/// The real file system.
pub struct RealFs;

impl Lookup for RealFs {
    fn lstat(&self, path: &Path) -> io::Result<Meta> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::symlink_metadata(path)?;
        let t = m.file_type();
        let kind = if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Ok(Meta {
            kind,
            uid: m.uid(),
            mode: m.mode() & 0o7777,
        })
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }
}

/// One path a user other than root could change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    pub meta: Meta,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Meta { kind, uid, mode } = self.meta;
        let mut why = Vec::new();
        if uid != 0 {
            why.push(format!("owned by uid {uid}, not root"));
        }
        match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => why.push("writable by group and others".to_owned()),
            (true, false) => why.push("writable by its group".to_owned()),
            (false, true) => why.push("writable by others".to_owned()),
            (false, false) => {}
        }
        if kind == Kind::Dir && mode & 0o1002 == 0o1002 {
            why.push("the sticky bit does not make it safe for a root service".to_owned());
        }
        write!(
            f,
            "{} ({}, owner uid {uid}, mode {mode:04o}: {})",
            self.path.display(),
            kind.name(),
            why.join("; ")
        )
    }
}

/// What the checked file is for: it decides who else may own the path and what the error
/// advises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The binary of the unit's `ExecStart=`: root only, no sticky directory.
    Service,
    /// The daemon's configuration file, read by a daemon running as `euid`: owned by root or
    /// `euid`. A root-owned sticky directory (`/tmp`) is fine on the way: nobody else can
    /// rename or remove what root (or `euid`) created in it, and a name planted ahead is
    /// owned by its planter, which is refused.
    Config { euid: u32 },
}

impl Purpose {
    fn what(self) -> &'static str {
        match self {
            Purpose::Service => "the service's binary",
            Purpose::Config { .. } => "the configuration file",
        }
    }

    /// Whether someone other than root (or the daemon's own user) could change this.
    fn unsafe_meta(self, m: &Meta) -> bool {
        match self {
            Purpose::Service => m.uid != 0 || m.mode & 0o022 != 0,
            Purpose::Config { euid } => {
                let sticky_root_dir = m.kind == Kind::Dir && m.uid == 0 && m.mode & 0o1000 != 0;
                (m.uid != 0 && m.uid != euid) || (m.mode & 0o022 != 0 && !sticky_root_dir)
            }
        }
    }
}

/// Why a binary (or configuration file) is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// `error` is not a `#[source]`: the message already includes it.
    #[error("cannot check {}, on the way to {}: {error}", path.display(), purpose.what())]
    Io {
        path: PathBuf,
        purpose: Purpose,
        error: io::Error,
    },
    #[error("{} is a {kind}, not a regular file: {}", path.display(), match purpose {
        Purpose::Service => "the service cannot run it",
        Purpose::Config { .. } => "it cannot be a configuration file",
    })]
    NotAFile {
        path: PathBuf,
        purpose: Purpose,
        kind: &'static str,
    },
    #[error("{}: a component on the way is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: more than {MAX_SYMLINKS} symlinks on the way", path.display())]
    SymlinkLoop { path: PathBuf },
    #[error("{}", untrusted_message(exe, resolved, *purpose, findings))]
    Untrusted {
        exe: PathBuf,
        resolved: PathBuf,
        purpose: Purpose,
        findings: Vec<Finding>,
    },
}

fn untrusted_message(
    exe: &Path,
    resolved: &Path,
    purpose: Purpose,
    findings: &[Finding],
) -> String {
    let via = if exe == resolved {
        String::new()
    } else {
        format!(" (a symlink to {})", resolved.display())
    };
    let lines: Vec<String> = findings.iter().map(|f| format!("  {f}")).collect();
    if let Purpose::Config { euid } = purpose {
        let owner = if euid == 0 {
            "root".to_owned()
        } else {
            format!("root or uid {euid}")
        };
        return format!(
            "refusing to read the configuration {exe}{via}: it decides where this daemon \
             writes and what it removes, but a user other than {owner} could change it \
             through:\n{lines}\n\
             `chown root` and `chmod go-w` the paths above, or keep the file where only \
             {owner} can write (/etc/claude-monitor/config.toml).",
            exe = exe.display(),
            lines = lines.join("\n"),
        );
    }
    format!(
        "refusing to install: the service would run {exe}{via} as root at every start, but a \
         user other than root could replace it through:\n{lines}\n\
         Copy the binary to where only root can write and install from there, e.g.\n  \
         install -o root -g root -m 0755 {src} /usr/local/bin/claude-monitor\n  \
         /usr/local/bin/claude-monitor install   (with the same --config, if any)\n\
         or, if the paths above should be root's, `chown root` them and `chmod go-w` them.",
        exe = exe.display(),
        lines = lines.join("\n"),
        src = resolved.display(),
    )
}

/// Resolves `exe` (absolute) as the kernel would and checks every directory looked into and
/// the file it ends at. Returns the resolved path when only root can change any of them.
pub fn check_exe(exe: &Path, fs: &dyn Lookup) -> Result<PathBuf, TrustError> {
    check(exe, fs, Purpose::Service)
}

/// [`check_exe`] for the configuration file a daemon running as `euid` reads: only root or
/// `euid` may be able to change it. A relative path is taken from the working directory.
pub fn check_config(path: &Path, fs: &dyn Lookup, euid: u32) -> Result<PathBuf, TrustError> {
    let absolute = std::path::absolute(path).map_err(|error| TrustError::Io {
        path: path.to_owned(),
        purpose: Purpose::Config { euid },
        error,
    })?;
    check(&absolute, fs, Purpose::Config { euid })
}

fn check(exe: &Path, fs: &dyn Lookup, purpose: Purpose) -> Result<PathBuf, TrustError> {
    let io_err = |path: &Path, error| TrustError::Io {
        path: path.to_owned(),
        purpose,
        error,
    };
    let mut findings: Vec<Finding> = Vec::new();
    let mut note = |path: &Path, meta: Meta| {
        if purpose.unsafe_meta(&meta) && !findings.iter().any(|f| f.path == path) {
            findings.push(Finding {
                path: path.to_owned(),
                meta,
            });
        }
    };

    let root = Path::new("/");
    let root_meta = fs.lstat(root).map_err(|e| io_err(root, e))?;
    note(root, root_meta);
    let mut cur = PathBuf::from("/");
    let mut cur_kind = Kind::Dir;
    let mut pending: VecDeque<PathBuf> = components(exe);
    let mut hops = 0;
    while let Some(name) = pending.pop_front() {
        if cur_kind != Kind::Dir {
            return Err(TrustError::NotADirectory {
                path: exe.to_owned(),
            });
        }
        if name == Path::new("..") {
            // The directory we go back to was checked on the way in.
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let meta = fs.lstat(&next).map_err(|e| io_err(&next, e))?;
        match meta.kind {
            Kind::Symlink => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(TrustError::SymlinkLoop {
                        path: exe.to_owned(),
                    });
                }
                let target = fs.read_link(&next).map_err(|e| io_err(&next, e))?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for c in components(&target).into_iter().rev() {
                    pending.push_front(c);
                }
            }
            kind => {
                note(&next, meta);
                cur = next;
                cur_kind = kind;
            }
        }
    }
    if cur_kind != Kind::File {
        return Err(TrustError::NotAFile {
            path: cur,
            purpose,
            kind: cur_kind.name(),
        });
    }
    if findings.is_empty() {
        Ok(cur)
    } else {
        Err(TrustError::Untrusted {
            exe: exe.to_owned(),
            resolved: cur,
            purpose,
            findings,
        })
    }
}

/// The names of a path after its root, `..` kept (it must be applied where it occurs), `.`
/// dropped.
fn components(p: &Path) -> VecDeque<PathBuf> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;

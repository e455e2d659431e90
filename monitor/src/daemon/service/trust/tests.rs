use super::*;
use std::collections::HashMap;

use crate::testutil::TempDir;

/// A file system in a map: path -> (lstat, symlink target).
#[derive(Default)]
struct FakeFs(HashMap<PathBuf, (Meta, Option<PathBuf>)>);

impl FakeFs {
    /// `/`, `/usr`, `/usr/local`, `/usr/local/bin` root-owned 0755, and a root-owned 0755
    /// binary `/usr/local/bin/claude-monitor`.
    fn standard() -> FakeFs {
        let mut fs = FakeFs::default();
        for d in ["/", "/usr", "/usr/local", "/usr/local/bin"] {
            fs.dir(d, 0, 0o755);
        }
        fs.file("/usr/local/bin/claude-monitor", 0, 0o755);
        fs
    }
    fn dir(&mut self, p: &str, uid: u32, mode: u32) -> &mut Self {
        self.put(p, Kind::Dir, uid, mode, None)
    }
    fn file(&mut self, p: &str, uid: u32, mode: u32) -> &mut Self {
        self.put(p, Kind::File, uid, mode, None)
    }
    fn link(&mut self, p: &str, target: &str) -> &mut Self {
        self.put(p, Kind::Symlink, 0, 0o777, Some(target))
    }
    fn put(&mut self, p: &str, kind: Kind, uid: u32, mode: u32, t: Option<&str>) -> &mut Self {
        self.0.insert(
            PathBuf::from(p),
            (Meta { kind, uid, mode }, t.map(PathBuf::from)),
        );
        self
    }
}

impl Lookup for FakeFs {
    fn lstat(&self, path: &Path) -> io::Result<Meta> {
        self.0
            .get(path)
            .map(|(m, _)| *m)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.0
            .get(path)
            .and_then(|(_, t)| t.clone())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
    }
}

const EXE: &str = "/usr/local/bin/claude-monitor";

fn findings(r: Result<PathBuf, TrustError>) -> Vec<(String, u32, u32)> {
    match r {
        Err(TrustError::Untrusted { findings, .. }) => findings
            .into_iter()
            .map(|f| (f.path.display().to_string(), f.meta.uid, f.meta.mode))
            .collect(),
        other => panic!("expected Untrusted, got {other:?}"),
    }
}

#[test]
fn a_root_owned_chain_is_accepted() {
    let fs = FakeFs::standard();
    assert_eq!(check_exe(Path::new(EXE), &fs).unwrap(), PathBuf::from(EXE));
    // Group ownership does not matter, only write bits; setuid bits are no concern here.
    let mut fs = FakeFs::standard();
    fs.dir("/usr/local", 0, 0o2755).file(EXE, 0, 0o555);
    assert!(check_exe(Path::new(EXE), &fs).is_ok());
}

#[test]
fn writable_or_foreign_paths_are_refused_and_named() {
    // A world-writable parent.
    let mut fs = FakeFs::standard();
    fs.dir("/usr/local/bin", 0, 0o777);
    assert_eq!(
        findings(check_exe(Path::new(EXE), &fs)),
        [("/usr/local/bin".into(), 0, 0o777)]
    );
    // Group-writable (also what an ACL granting write shows as), at the top.
    let mut fs = FakeFs::standard();
    fs.dir("/", 0, 0o775);
    assert_eq!(
        findings(check_exe(Path::new(EXE), &fs)),
        [("/".into(), 0, 0o775)]
    );
    // A binary owned by a user, and a directory owned by a user even if 0755: every
    // offending path is listed, from the top.
    let mut fs = FakeFs::standard();
    fs.dir("/usr/local", 1000, 0o755).file(EXE, 1000, 0o755);
    assert_eq!(
        findings(check_exe(Path::new(EXE), &fs)),
        [
            ("/usr/local".into(), 1000, 0o755),
            (EXE.into(), 1000, 0o755)
        ]
    );
    // Writable by others only.
    let mut fs = FakeFs::standard();
    fs.file(EXE, 0, 0o757);
    assert_eq!(
        findings(check_exe(Path::new(EXE), &fs)),
        [(EXE.into(), 0, 0o757)]
    );
}

#[test]
fn sticky_directories_are_refused() {
    let mut fs = FakeFs::default();
    fs.dir("/", 0, 0o755)
        .dir("/tmp", 0, 0o1777)
        .dir("/tmp/build", 0, 0o755)
        .file("/tmp/build/claude-monitor", 0, 0o755);
    let err = check_exe(Path::new("/tmp/build/claude-monitor"), &fs).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/tmp (directory, owner uid 0, mode 1777: writable by group and others; the sticky bit does not make it safe for a root service)"),
        "{msg}"
    );
    assert_eq!(findings(Err(err)), [("/tmp".into(), 0, 0o1777)]);
}

#[test]
fn the_error_says_what_is_wrong_and_what_to_do() {
    let mut fs = FakeFs::standard();
    fs.dir("/home", 0, 0o755)
        .dir("/home/u", 1000, 0o755)
        .dir("/home/u/build", 1000, 0o777)
        .file("/home/u/build/claude-monitor", 1000, 0o775)
        .link(EXE, "/home/u/build/claude-monitor");
    let msg = check_exe(Path::new(EXE), &fs).unwrap_err().to_string();
    let expected = "refusing to install: the service would run /usr/local/bin/claude-monitor \
         (a symlink to /home/u/build/claude-monitor) as root at every start, but a user other \
         than root could replace it through:\n  \
         /home/u (directory, owner uid 1000, mode 0755: owned by uid 1000, not root)\n  \
         /home/u/build (directory, owner uid 1000, mode 0777: owned by uid 1000, not root; \
         writable by group and others)\n  \
         /home/u/build/claude-monitor (file, owner uid 1000, mode 0775: owned by uid 1000, not \
         root; writable by its group)\n\
         Copy the binary to where only root can write and install from there, e.g.\n  \
         install -o root -g root -m 0755 /home/u/build/claude-monitor /usr/local/bin/claude-monitor\n  \
         /usr/local/bin/claude-monitor install   (with the same --config, if any)\n\
         or, if the paths above should be root's, `chown root` them and `chmod go-w` them.";
    assert_eq!(msg, expected);
}

#[test]
fn symlinks_are_followed_and_their_targets_checked() {
    // Merged /usr: /bin -> usr/bin (relative), and a relative target with `..`.
    let mut fs = FakeFs::standard();
    fs.dir("/usr/bin", 0, 0o755)
        .link("/bin", "usr/bin")
        .dir("/opt", 0, 0o755)
        .dir("/opt/cm", 0, 0o755)
        .dir("/opt/cm/bin", 0, 0o755)
        .dir("/opt/cm/libexec", 0, 0o755)
        .file("/opt/cm/libexec/claude-monitor", 0, 0o755)
        .link("/usr/bin/claude-monitor", "/opt/cm/bin/cm")
        .link("/opt/cm/bin/cm", "../libexec/./claude-monitor");
    assert_eq!(
        check_exe(Path::new("/bin/claude-monitor"), &fs).unwrap(),
        PathBuf::from("/opt/cm/libexec/claude-monitor")
    );
    // The same chain with the final directory writable by a user: refused for it, though
    // every path as written is root's.
    fs.dir("/opt/cm/libexec", 1000, 0o755);
    assert_eq!(
        findings(check_exe(Path::new("/bin/claude-monitor"), &fs)),
        [("/opt/cm/libexec".into(), 1000, 0o755)]
    );
    // A symlink living in a user's directory: the directory is the finding (the user can
    // point it anywhere), even though the target is root's.
    let mut fs = FakeFs::standard();
    fs.dir("/srv", 1000, 0o755).link("/srv/cm", EXE);
    assert_eq!(
        findings(check_exe(Path::new("/srv/cm"), &fs)),
        [("/srv".into(), 1000, 0o755)]
    );
}

#[test]
fn what_cannot_be_a_binary_is_an_error() {
    let mut fs = FakeFs::standard();
    fs.link("/usr/local/bin/a", "b")
        .link("/usr/local/bin/b", "a");
    assert!(matches!(
        check_exe(Path::new("/usr/local/bin/a"), &fs),
        Err(TrustError::SymlinkLoop { .. })
    ));
    let err = check_exe(Path::new("/usr/local/bin"), &fs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/usr/local/bin is a directory, not a regular file: the service cannot run it"
    );
    let err = check_exe(Path::new("/usr/local/bin/missing"), &fs).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "cannot check /usr/local/bin/missing, on the way to the service's binary: "
        ),
        "{err}"
    );
    let err = check_exe(Path::new("/usr/local/bin/claude-monitor/x"), &fs).unwrap_err();
    assert!(matches!(err, TrustError::NotADirectory { .. }), "{err}");
    fs.put("/usr/local/bin/fifo", Kind::Other, 0, 0o600, None);
    assert_eq!(
        check_exe(Path::new("/usr/local/bin/fifo"), &fs)
            .unwrap_err()
            .to_string(),
        "/usr/local/bin/fifo is a special file, not a regular file: the service cannot run it"
    );
}

/// The same rules on real files: the system's own `/bin/true` passes (through the merged-/usr
/// symlink where there is one), a binary in a 0777 directory and one owned by another uid
/// are refused. The temp dir is under the system temp dir, usually the sticky `/tmp`, which
/// may be reported too; the assertions look for the fixtures' own paths.
#[test]
fn real_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let resolved = check_exe(Path::new("/bin/true"), &RealFs).expect("/bin/true is root's");
    assert_eq!(resolved.file_name(), Some("true".as_ref()));
    assert_eq!(
        RealFs.lstat(&resolved).unwrap().kind,
        Kind::File,
        "{}",
        resolved.display()
    );

    let t = TempDir::new("trust");
    let open = t.0.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = open.join("claude-monitor");
    std::fs::copy("/bin/true", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let found = findings(check_exe(&exe, &RealFs));
    assert!(
        found
            .iter()
            .any(|(p, _, mode)| *p == open.display().to_string() && *mode == 0o777),
        "{found:?}"
    );

    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: this test must run as root to chown its fixture"
        );
        eprintln!("SKIP (part): chown to another uid needs root");
        return;
    }
    let closed = t.0.join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let exe = closed.join("claude-monitor");
    std::fs::copy("/bin/true", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&exe, Some(4242), None).unwrap();
    let found = findings(check_exe(&exe, &RealFs));
    assert!(
        found.contains(&(exe.display().to_string(), 4242, 0o755)),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(p, _, _)| *p == closed.display().to_string()),
        "{found:?}"
    );
}

/// The configuration file: owned by root or the daemon's own user, writable by neither group
/// nor others, on a path only they can change; a root-owned sticky `/tmp` is fine on the way
/// (not for the binary).
#[test]
fn the_configuration_file_is_checked_like_the_binary() {
    let mut fs = FakeFs::standard();
    fs.dir("/etc", 0, 0o755)
        .dir("/etc/claude-monitor", 0, 0o755)
        .file("/etc/claude-monitor/config.toml", 0, 0o644)
        .dir("/tmp", 0, 0o1777)
        .dir("/tmp/cm", 0, 0o700)
        .file("/tmp/cm/config.toml", 0, 0o600)
        .dir("/tmp/planted", 1000, 0o755)
        .file("/tmp/planted/config.toml", 0, 0o644)
        .dir("/home", 0, 0o755)
        .dir("/home/u", 1000, 0o755)
        .file("/home/u/config.toml", 1000, 0o644)
        .file("/etc/claude-monitor/open.toml", 0, 0o666)
        .file("/etc/claude-monitor/theirs.toml", 1000, 0o600);
    let root = |p: &str| check_config(Path::new(p), &fs, 0);
    assert!(root("/etc/claude-monitor/config.toml").is_ok());
    assert!(root("/tmp/cm/config.toml").is_ok());
    // The same path as a binary: /tmp is refused.
    assert_eq!(
        findings(check_exe(Path::new("/tmp/cm/config.toml"), &fs)),
        [("/tmp".to_owned(), 0, 0o1777)]
    );
    assert_eq!(
        findings(root("/tmp/planted/config.toml")),
        [("/tmp/planted".to_owned(), 1000, 0o755)]
    );
    assert_eq!(
        findings(root("/etc/claude-monitor/open.toml")),
        [("/etc/claude-monitor/open.toml".to_owned(), 0, 0o666)]
    );
    let theirs = root("/etc/claude-monitor/theirs.toml");
    let text = theirs
        .as_ref()
        .map_err(ToString::to_string)
        .expect_err("foreign");
    assert!(
        text.starts_with("refusing to read the configuration /etc/claude-monitor/theirs.toml:")
            && text.contains("a user other than root could change it")
            && text.contains("owned by uid 1000, not root"),
        "{text}"
    );
    assert!(root("/home/u/config.toml").is_err());
    // A daemon run by uid 1000 may read its own file, not root's world-writable one.
    assert!(check_config(Path::new("/home/u/config.toml"), &fs, 1000).is_ok());
    assert!(check_config(Path::new("/etc/claude-monitor/open.toml"), &fs, 1000).is_err());
    // A missing file is an error that names it.
    let missing = root("/etc/claude-monitor/absent.toml").expect_err("missing");
    assert!(
        missing.to_string().starts_with(
            "cannot check /etc/claude-monitor/absent.toml, on the way to the configuration file"
        ),
        "{missing}"
    );
}

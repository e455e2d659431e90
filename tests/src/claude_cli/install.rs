//! Installing pinned versions of the real Claude Code CLI from npm, once per cache.
//!
//! `install("2.1.197")` runs `npm install --no-audit --no-fund --prefix DIR
//! @anthropic-ai/claude-code@2.1.197` into `<target>/claude-cli/2.1.197.partial`, checks
//! the result, renames it to `<target>/claude-cli/2.1.197` and writes the completion marker
//! `.installed` there. A later call (any process) that finds the marker does nothing. An
//! exclusive `flock` on `<target>/claude-cli/2.1.197.lock` serialises concurrent callers, so
//! parallel tests install once. Install scripts are not skipped: since 2.1.1xx the
//! package's postinstall puts the native binary in place of a stub.

use std::{
    fs::{self, File, OpenOptions},
    os::unix::{fs::PermissionsExt as _, io::AsRawFd as _},
    path::{Path, PathBuf},
    process::Command,
};

/// The newest version that installs with this machine's Node 20 (a native Bun binary).
pub const NATIVE: &str = "2.1.197";
/// An older version of the JavaScript shape: `node …/@anthropic-ai/claude-code/cli.js`.
pub const JAVASCRIPT: &str = "2.1.100";

/// The npm package.
pub const PACKAGE: &str = "@anthropic-ai/claude-code";

/// An installed version.
#[derive(Clone, Debug)]
pub struct Install {
    pub version: String,
    /// The npm prefix: `node_modules/` is under it.
    pub dir: PathBuf,
}

impl Install {
    /// `node_modules/.bin`, the directory npm links `claude` into.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("node_modules/.bin")
    }

    /// `node_modules/.bin/claude`: what a user runs (a symlink to the package's `bin`).
    pub fn claude(&self) -> PathBuf {
        self.bin_dir().join("claude")
    }

    /// The package directory.
    pub fn package_dir(&self) -> PathBuf {
        self.dir.join("node_modules").join(PACKAGE)
    }

    /// The native executable (`bin/claude.exe`, an ELF file), for versions that ship one.
    pub fn native_binary(&self) -> Option<PathBuf> {
        let p = self.package_dir().join("bin/claude.exe");
        is_elf(&p).then_some(p)
    }

    /// The JavaScript entry point (`cli.js`), for versions of that shape.
    pub fn cli_js(&self) -> Option<PathBuf> {
        let p = self.package_dir().join("cli.js");
        p.is_file().then_some(p)
    }
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The workspace's target directory: `CARGO_TARGET_DIR` (at run time, else at build time;
/// relative to the workspace root) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let configured = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from));
    match configured {
        Some(p) if p.is_absolute() => p,
        Some(p) => workspace.join(p),
        None => workspace.join("target"),
    }
}

/// The cache of installed versions: `<target>/claude-cli`.
pub fn cache_dir() -> PathBuf {
    target_dir().join("claude-cli")
}

/// An exclusive `flock` on a file, released when dropped (also on unwinding).
struct Lock(
    #[allow(
        dead_code,
        reason = "held for its Drop: closing the file releases the lock"
    )]
    File,
);

impl Lock {
    fn acquire(path: &Path) -> Lock {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open the install lock {}: {e}", path.display()));
        // SAFETY: flock(2) on a descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Lock(f)
    }
}

/// Installs `@anthropic-ai/claude-code@VERSION` into the cache unless it is there already,
/// and returns it. Panics (naming npm and the registry) when npm fails.
pub fn install(version: &str) -> Install {
    let cache = cache_dir();
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let dir = cache.join(version);
    let marker = dir.join(".installed");
    let installed = Install {
        version: version.to_owned(),
        dir: dir.clone(),
    };
    if marker.exists() {
        return installed;
    }
    let _lock = Lock::acquire(&cache.join(format!("{version}.lock")));
    if marker.exists() {
        return installed;
    }
    let partial = cache.join(format!("{version}.partial"));
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&partial)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", partial.display()));
    let spec = format!("{PACKAGE}@{version}");
    let registry = std::env::var("npm_config_registry")
        .or_else(|_| std::env::var("NPM_CONFIG_REGISTRY"))
        .unwrap_or_else(|_| "https://registry.npmjs.org/ (npm's default)".to_owned());
    let started = std::time::Instant::now();
    let out = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&partial)
        .arg(&spec)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run npm ({e}): the claude_cli scenarios install {spec} from the npm \
                 registry ({registry}) with npm; install Node.js and npm (Debian: apt-get \
                 install nodejs npm)"
            )
        });
    assert!(
        out.status.success(),
        "`npm install {spec}` failed ({}) with the registry {registry} (set \
         npm_config_registry for a mirror):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let check = Install {
        version: version.to_owned(),
        dir: partial.clone(),
    };
    assert!(
        check.claude().exists(),
        "`npm install {spec}` succeeded but left no {}:\n{}",
        check.claude().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        check.native_binary().is_some() || check.cli_js().is_some(),
        "`npm install {spec}`: neither a native bin/claude.exe nor a cli.js in {} (a stub \
         left by skipped install scripts?)",
        check.package_dir().display()
    );
    fs::rename(&partial, &dir).unwrap_or_else(|e| {
        panic!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            dir.display()
        )
    });
    fs::write(&marker, format!("{spec}\n")).expect("install marker");
    eprintln!(
        "claude_cli: installed {spec} into {} in {:.1?}",
        dir.display(),
        started.elapsed()
    );
    installed
}

/// Lays out the native installer's shape in `home`: the binary at
/// `~/.local/share/claude/versions/<version>` (a hard link to the cached one, a copy
/// across file systems) and the symlink `~/.local/bin/claude` to it. Returns the symlink.
pub fn native_layout(install: &Install, home: &Path) -> PathBuf {
    let binary = install.native_binary().unwrap_or_else(|| {
        panic!(
            "{PACKAGE}@{} has no native binary to lay out",
            install.version
        )
    });
    let versions = home.join(".local/share/claude/versions");
    let bin = home.join(".local/bin");
    fs::create_dir_all(&versions).expect("mkdir versions");
    fs::create_dir_all(&bin).expect("mkdir .local/bin");
    let target = versions.join(&install.version);
    if fs::hard_link(&binary, &target).is_err() {
        crate::copy_executable(&binary, &target);
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let link = bin.join("claude");
    std::os::unix::fs::symlink(&target, &link).expect("symlink ~/.local/bin/claude");
    link
}

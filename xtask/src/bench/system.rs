//! What the bench changes on the machine, each undone when its guard is dropped: the BPF
//! run-time statistics sysctl, a tracefs mount for bpftrace, a memory cgroup for the OOM
//! loop. Also the Debian packages it installs when missing (bpftrace, bpftool).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, setup};

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
const TRACEFS: &str = "/sys/kernel/tracing";

/// `kernel.bpf_stats_enabled` set to 1 for the bench (the kernel then counts each
/// program's runs and run time); the previous value comes back on drop.
pub struct BpfStats {
    previous: String,
}

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let previous = fs::read_to_string(BPF_STATS)
            .with_context(|| format!("cannot read {BPF_STATS}"))?
            .trim()
            .to_owned();
        fs::write(BPF_STATS, "1").with_context(|| format!("cannot write 1 to {BPF_STATS}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(err) = fs::write(BPF_STATS, &self.previous) {
            eprintln!(
                "xtask: warning: could not restore {BPF_STATS} to {}: {err}",
                self.previous
            );
        }
    }
}

/// tracefs mounted at /sys/kernel/tracing (bpftrace reads tracepoint formats there); it is
/// unmounted on drop only if the bench mounted it.
pub struct Tracefs {
    mounted_here: bool,
}

impl Tracefs {
    pub fn ensure() -> Result<Tracefs> {
        if Path::new(TRACEFS).join("events").is_dir() {
            return Ok(Tracefs {
                mounted_here: false,
            });
        }
        eprintln!("xtask: mounting tracefs at {TRACEFS} for bpftrace (unmounted at the end)");
        cargo::run_checked(Command::new("mount").args(["-t", "tracefs", "nodev", TRACEFS]))
            .context("bpftrace needs tracefs")?;
        Ok(Tracefs { mounted_here: true })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if self.mounted_here
            && let Err(err) = cargo::run_checked(Command::new("umount").arg(TRACEFS))
        {
            eprintln!("xtask: warning: {err:#}");
        }
    }
}

/// `program`'s path, installing Debian's `package` with apt-get when it is missing (an
/// `apt-get update` first only if the plain install fails). Err says why it is unavailable.
pub fn ensure_tool(program: &str, package: &str) -> Result<PathBuf> {
    let lookup = || {
        setup::which(program).or_else(|_| {
            // sudo's secure_path has /usr/sbin, a user's PATH may not (bpftool is there).
            ["/usr/sbin", "/usr/bin", "/sbin"]
                .iter()
                .map(|dir| Path::new(dir).join(program))
                .find(|p| p.is_file())
                .context("not found")
        })
    };
    if let Ok(path) = lookup() {
        return Ok(path);
    }
    setup::which("apt-get")
        .with_context(|| format!("`{program}` is missing and there is no apt-get to install it"))?;
    eprintln!("xtask: installing {package} (apt-get install -y {package})");
    let install = || {
        cargo::capture(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        cargo::capture(Command::new("apt-get").arg("update")).context("apt-get update failed")?;
        install().with_context(|| format!("apt-get install {package} failed"))?;
    }
    lookup().with_context(|| format!("`{program}` still missing after installing {package}"))
}

/// A child memory cgroup for the OOM loop, removed on drop (after killing anything left in
/// it). On cgroup v1 it is made under this process's own memory cgroup; on v2 under the
/// root of the unified hierarchy (the same choice as the test harness's `MemCgroup`).
pub struct MemCgroup {
    pub path: PathBuf,
}

impl MemCgroup {
    pub fn create(name: &str, limit_bytes: u64) -> Result<MemCgroup> {
        let own = fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let v1 = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_owned())
        });
        let v1_mount = Path::new("/sys/fs/cgroup/memory");
        let (path, limits): (PathBuf, Vec<(&str, String)>) = match v1 {
            Some(rel) if v1_mount.is_dir() => (
                v1_mount.join(rel.trim_start_matches('/')).join(name),
                vec![
                    ("memory.limit_in_bytes", limit_bytes.to_string()),
                    ("memory.memsw.limit_in_bytes", limit_bytes.to_string()),
                ],
            ),
            _ => {
                let root = Path::new("/sys/fs/cgroup");
                let controllers = fs::read_to_string(root.join("cgroup.controllers"))
                    .context("no cgroup v1 memory controller and no cgroup v2 at /sys/fs/cgroup")?;
                if !controllers.split_whitespace().any(|c| c == "memory") {
                    bail!("cgroup v2 without the memory controller: {controllers}");
                }
                let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
                (
                    root.join(name),
                    vec![
                        ("memory.max", limit_bytes.to_string()),
                        ("memory.swap.max", "0".to_owned()),
                    ],
                )
            }
        };
        let _ = fs::remove_dir(&path);
        fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let cg = MemCgroup { path };
        for (i, (file, value)) in limits.iter().enumerate() {
            let target = cg.path.join(file);
            // The first file is the limit itself; the swap one may not exist (no swap
            // accounting), which is fine.
            if i == 0 || target.exists() {
                fs::write(&target, value)
                    .with_context(|| format!("cannot write {value} to {}", target.display()))?;
            }
        }
        Ok(cg)
    }

    pub fn add(&self, pid: u32) -> Result<()> {
        let procs = self.path.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .with_context(|| format!("cannot move {pid} into {}", procs.display()))
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if let Ok(procs) = fs::read_to_string(self.path.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: plain kill(2).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("xtask: warning: could not remove {}", self.path.display());
    }
}

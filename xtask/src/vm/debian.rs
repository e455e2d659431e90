//! Everything the guest needs from Debian's archive, fetched with `apt-get download` and
//! unpacked with `dpkg-deb` into `target/vm/`, never installed: qemu (Debian's
//! `qemu-system-x86` 7.2 conflicts with the newer `qemu-utils` of our machine image, so
//! installing it would remove that), busybox-static, and the cloud kernels; and for the
//! host's tests promtool and the Prometheus server, from Debian's `prometheus`.
//!
//! Each item is unpacked into a temporary directory that is renamed into place when
//! complete, so an interrupted run leaves nothing half-made and a later run re-downloads
//! nothing that is already there.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cargo::{capture, describe, is_root};

/// A failed download whose cause may be stale package lists (`404`, unknown package): the
/// one case where running `apt-get update` can help.
#[derive(Debug)]
struct NotFound(String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// `apt-get download` with at most one `apt-get update`, run only when a package or file
/// was not found.
#[derive(Default)]
pub struct Apt {
    updated: bool,
}

impl Apt {
    /// Runs `op`; if it fails because something was not found in the archive, refreshes the
    /// package lists once and runs it again (so `op` must resolve names itself).
    pub fn retrying<T>(&mut self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        match op() {
            Err(err) if !self.updated && err.chain().any(|e| e.is::<NotFound>()) => {
                eprintln!(
                    "xtask: {err:#}\nxtask: the package lists look older than the archive; \
                     running `apt-get update` once and retrying"
                );
                self.update()?;
                op()
            }
            other => other,
        }
    }

    fn update(&mut self) -> Result<()> {
        self.updated = true;
        let mut cmd = if is_root() {
            Command::new("apt-get")
        } else {
            let mut cmd = Command::new("sudo");
            cmd.arg("apt-get");
            cmd
        };
        cmd.args(["-q", "update"]);
        capture(&mut cmd).map(drop)
    }

    /// Downloads `packages` into `dir` (created empty); returns each package's .deb.
    pub fn download(&mut self, packages: &[String], dir: &Path) -> Result<Vec<PathBuf>> {
        self.retrying(|| download_once(packages, dir))
    }
}

fn download_once(packages: &[String], dir: &Path) -> Result<Vec<PathBuf>> {
    recreate_dir(dir)?;
    let mut cmd = Command::new("apt-get");
    cmd.args(["-q", "download"]).args(packages).current_dir(dir);
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", describe(&cmd)))?;
    if !out.status.success() {
        // Keep apt's own lines (E: …); its progress and the sandbox warning are noise.
        let text = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
        let message = format!("`{}` failed: {}", describe(&cmd), errors.join("; "));
        let not_found = [
            "404",
            "Unable to locate package",
            "has no candidate",
            "No packages found",
        ];
        if not_found.iter().any(|m| text.contains(m)) {
            return Err(NotFound(message).into());
        }
        bail!("{message}");
    }
    packages
        .iter()
        .map(|name| {
            let prefix = format!("{name}_");
            fs::read_dir(dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                })
                .ok_or_else(|| {
                    anyhow!(
                        "apt-get download left no {prefix}*.deb in {}",
                        dir.display()
                    )
                })
        })
        .collect()
}

/// The `Depends:` package names of a .deb, one entry per dependency; each entry lists the
/// alternatives (`a | b`) without version constraints or architecture qualifiers.
fn depends(deb: &Path) -> Result<Vec<Vec<String>>> {
    let field = capture(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .arg("Depends"),
    )?;
    Ok(parse_depends(&field))
}

fn parse_depends(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|dep| {
            dep.split('|')
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|name| name.split(':').next().unwrap_or(name).to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|alts| !alts.is_empty())
        .collect()
}

/// Which of `packages` are installed on this machine.
fn installed(packages: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    if packages.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut cmd = Command::new("dpkg-query");
    cmd.args(["-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
        .args(packages);
    // dpkg-query exits 1 when some names are unknown; the known ones are still printed.
    let out = cmd
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", describe(&cmd)))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, status) = l.split_once(' ')?;
            status.starts_with("ii").then(|| name.to_owned())
        })
        .collect())
}

/// Unpacks a whole .deb into `dest`.
fn extract_all(deb: &Path, dest: &Path) -> Result<()> {
    capture(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest)).map(drop)
}

/// Unpacks only the members matching `pattern` (a tar wildcard such as `./boot/vmlinuz-*`):
/// a kernel package is 100+ MB of modules the guest does not need.
fn extract_matching(deb: &Path, dest: &Path, pattern: &str) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    let mut dpkg_child = dpkg
        .spawn()
        .with_context(|| format!("could not start `{}`", describe(&dpkg)))?;
    let tar_input = dpkg_child
        .stdout
        .take()
        .context("no stdout from dpkg-deb")?;
    let mut tar = Command::new("tar");
    tar.arg("-x")
        .arg("-C")
        .arg(dest)
        .args(["--wildcards", pattern])
        .stdin(tar_input);
    let tar_out = tar
        .output()
        .with_context(|| format!("could not start `{}`", describe(&tar)))?;
    let dpkg_status = dpkg_child.wait().context("waiting for dpkg-deb")?;
    if !dpkg_status.success() || !tar_out.status.success() {
        bail!(
            "unpacking {pattern} from {} failed ({dpkg_status}, tar {}): {}",
            deb.display(),
            tar_out.status,
            String::from_utf8_lossy(&tar_out.stderr).trim()
        );
    }
    Ok(())
}

/// qemu unpacked under `target/vm/qemu/root`, with what it needs to run from there.
pub struct Qemu {
    pub binary: PathBuf,
    /// Debian builds TCG as a loadable module (`accel-tcg-x86_64.so`); `QEMU_MODULE_DIR`.
    pub module_dir: PathBuf,
    /// For `LD_LIBRARY_PATH`: the shared libraries this machine lacks.
    pub lib_dirs: Vec<PathBuf>,
    /// For `-L`: SeaBIOS and qemu's option ROMs (`linuxboot_dma.bin` for `-kernel`).
    pub firmware_dirs: Vec<PathBuf>,
}

impl Qemu {
    fn at(root: &Path) -> Qemu {
        Qemu {
            binary: root.join("usr/bin/qemu-system-x86_64"),
            module_dir: root.join(QEMU_MODULE_DIR),
            lib_dirs: ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
                .iter()
                .map(|d| root.join(d))
                .collect(),
            firmware_dirs: ["usr/share/qemu", "usr/share/seabios"]
                .iter()
                .map(|d| root.join(d))
                .collect(),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env(
            "LD_LIBRARY_PATH",
            std::env::join_paths(&self.lib_dirs).unwrap_or_default(),
        );
        for dir in &self.firmware_dirs {
            cmd.arg("-L").arg(dir);
        }
        cmd
    }

    fn version(&self) -> Result<String> {
        let out = capture(self.command().arg("--version"))?;
        Ok(out.lines().next().unwrap_or_default().to_owned())
    }
}

/// The packages qemu is unpacked from, besides the shared libraries this machine lacks.
/// The first is the emulator; of the last, only the TCG module (see [`TCG_MODULE`]).
const QEMU_PACKAGES: [&str; 4] = [
    "qemu-system-x86",
    "qemu-system-data",
    "seabios",
    "qemu-system-common",
];
const QEMU_MODULE_DIR: &str = "usr/lib/x86_64-linux-gnu/qemu";
/// The one module of qemu-system-common we need: the rest (audio, spice, usb redirection…)
/// would pull in a dozen more libraries.
const TCG_MODULE: &str = "accel-tcg-x86_64.so";

/// qemu from `cache/qemu`, downloading and unpacking it the first time.
pub fn ensure_qemu(apt: &mut Apt, cache: &Path) -> Result<Qemu> {
    let dir = cache.join("qemu");
    let qemu = Qemu::at(&dir.join("root"));
    if qemu.binary.exists() && qemu.module_dir.join(TCG_MODULE).exists() {
        match qemu.version() {
            Ok(_) => return Ok(qemu),
            Err(err) => {
                eprintln!("xtask: the cached qemu does not start ({err:#}); unpacking it again")
            }
        }
    }
    eprintln!(
        "xtask: fetching qemu from Debian's archive into {} (once)",
        dir.display()
    );
    let work = cache.join("qemu.partial");
    recreate_dir(&work)?;
    let root = work.join("root");
    let debs_dir = work.join("debs");
    let mut debs = apt.download(&names(&QEMU_PACKAGES), &debs_dir)?;

    // The shared libraries: the dependency closure of qemu-system-x86, restricted to library
    // packages (`lib*`) that are not installed here. The firmware packages have no Depends.
    let mut seen: BTreeSet<String> = names(&QEMU_PACKAGES).into_iter().collect();
    let mut frontier = vec![debs[0].clone()];
    for round in 1.. {
        let mut wanted = BTreeMap::new();
        for deb in &frontier {
            for alts in depends(deb)? {
                if alts.iter().any(|a| seen.contains(a)) {
                    continue;
                }
                wanted.insert(alts[0].clone(), alts);
            }
        }
        let all: BTreeSet<String> = wanted.values().flatten().cloned().collect();
        let present = installed(&all)?;
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|(first, alts)| {
                first.starts_with("lib") && !alts.iter().any(|a| present.contains(a))
            })
            .map(|(first, _)| first)
            .collect();
        seen.extend(all);
        if missing.is_empty() {
            break;
        }
        eprintln!(
            "xtask: qemu needs libraries this machine lacks: {}",
            missing.join(" ")
        );
        frontier = apt.download(&missing, &debs_dir.join(format!("libs{round}")))?;
        debs.extend(frontier.iter().cloned());
    }
    for deb in &debs {
        if deb == &debs[3] {
            extract_matching(deb, &root, &format!("./{QEMU_MODULE_DIR}/{TCG_MODULE}"))?;
        } else {
            extract_all(deb, &root)?;
        }
    }

    let unpacked = Qemu::at(&root);
    let ldd = capture(
        Command::new("ldd")
            .arg(&unpacked.binary)
            .arg(unpacked.module_dir.join(TCG_MODULE))
            .env("LD_LIBRARY_PATH", std::env::join_paths(&unpacked.lib_dirs)?),
    )
    .unwrap_or_default();
    let not_found: Vec<&str> = ldd
        .lines()
        .filter(|l| l.contains("not found"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if !not_found.is_empty() {
        bail!(
            "the unpacked qemu still lacks shared libraries: {} (packages unpacked: {})",
            not_found.join(" "),
            file_names(&debs)
        );
    }
    let version = unpacked
        .version()
        .context("the unpacked qemu does not start")?;
    fs::remove_dir_all(&debs_dir)
        .with_context(|| format!("cannot remove {}", debs_dir.display()))?;
    replace_dir(&work, &dir)?;
    eprintln!(
        "xtask: {version} ready in {} ({})",
        dir.display(),
        file_names(&debs)
    );
    Ok(qemu)
}

/// busybox from Debian's busybox-static: the guest's shell and its `sleep`, `touch`, `mount`…
pub fn ensure_busybox(apt: &mut Apt, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("busybox");
    let binary = dir.join("bin/busybox");
    if binary.exists() {
        return Ok(binary);
    }
    eprintln!(
        "xtask: fetching busybox-static into {} (once)",
        dir.display()
    );
    let work = cache.join("busybox.partial");
    recreate_dir(&work)?;
    let debs = apt.download(&names(&["busybox-static"]), &work.join("debs"))?;
    extract_matching(&debs[0], &work, "./bin/busybox")?;
    fs::remove_dir_all(work.join("debs")).context("cannot remove the downloaded .deb")?;
    replace_dir(&work, &dir)?;
    Ok(binary)
}

/// bash from Debian's bash-static: the sessions scenarios run fake Claude Code sessions that
/// are copies of `/bin/bash` (busybox's sh cannot stand in: they need bash's `$$`-based
/// scripts, `setsid` wrappers and `kill -- -PGID`).
pub fn ensure_bash(apt: &mut Apt, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("bash");
    let binary = dir.join("bin/bash-static");
    if binary.exists() {
        return Ok(binary);
    }
    eprintln!("xtask: fetching bash-static into {} (once)", dir.display());
    let work = cache.join("bash.partial");
    recreate_dir(&work)?;
    let debs = apt.download(&names(&["bash-static"]), &work.join("debs"))?;
    extract_matching(&debs[0], &work, "./bin/bash-static")?;
    fs::remove_dir_all(work.join("debs")).context("cannot remove the downloaded .deb")?;
    replace_dir(&work, &dir)?;
    Ok(binary)
}

/// Where [`ensure_prometheus`] puts the two binaries under its directory.
pub const PROMTOOL: &str = "usr/bin/promtool";
pub const PROMETHEUS: &str = "usr/bin/prometheus";

/// promtool and the Prometheus server from Debian's `prometheus` 2.42 (its 19 MB package,
/// unpacked into `dir` once: the two binaries, 98 MB, nothing else; nothing is installed
/// and no service is started): promtool for the unit test that runs `promtool check
/// metrics` on the agent's `/metrics` text, the server for a scenario that scrapes the
/// daemon. Go binaries that need only libc. Returns (promtool, prometheus).
pub fn ensure_prometheus(apt: &mut Apt, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (promtool, server) = (dir.join(PROMTOOL), dir.join(PROMETHEUS));
    if promtool.exists() && server.exists() {
        return Ok((promtool, server));
    }
    eprintln!(
        "xtask: fetching promtool and prometheus (Debian's prometheus) into {} (once)",
        dir.display()
    );
    let work = dir.with_extension("partial");
    recreate_dir(&work)?;
    let debs = apt.download(&names(&["prometheus"]), &work.join("debs"))?;
    extract_matching(&debs[0], &work, "./usr/bin/prom*")?;
    fs::remove_dir_all(work.join("debs")).context("cannot remove the downloaded .deb")?;
    replace_dir(&work, dir)?;
    Ok((promtool, server))
}

/// A guest kernel unpacked from a Debian package.
pub struct Kernel {
    pub package: String,
    /// `uname -r`, from the `boot/vmlinuz-<release>` file name.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// The newest `linux-image-<series>.*-cloud-amd64` kernel (signed, or `-unsigned`), from
/// `cache/kernels/<package>` or downloaded there. Names are resolved from the apt lists at
/// each run: the ABI number in them changes with every security update.
pub fn ensure_kernel(apt: &mut Apt, cache: &Path, series: &str) -> Result<Kernel> {
    let kernels = cache.join("kernels");
    let package = apt.retrying(|| newest_kernel_package(series))?;
    let dir = kernels.join(&package);
    if let Some(kernel) = cached_kernel(&package, &dir)? {
        return Ok(kernel);
    }
    eprintln!("xtask: fetching {package} into {} (once)", dir.display());
    let work = kernels.join(format!("{package}.partial"));
    recreate_dir(&work)?;
    let debs = apt.download(std::slice::from_ref(&package), &work.join("debs"))?;
    extract_matching(&debs[0], &work, "./boot/vmlinuz-*")?;
    fs::remove_dir_all(work.join("debs")).context("cannot remove the downloaded .deb")?;
    replace_dir(&work, &dir)?;
    // Older kernels of the same series are superseded: drop them.
    let series_prefix = format!("linux-image-{series}.");
    for entry in fs::read_dir(&kernels).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&series_prefix) && name != package && !name.ends_with(".partial") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    cached_kernel(&package, &dir)?.ok_or_else(|| anyhow!("{package} contains no boot/vmlinuz-*"))
}

fn cached_kernel(package: &str, dir: &Path) -> Result<Option<Kernel>> {
    let Ok(entries) = fs::read_dir(dir.join("boot")) else {
        return Ok(None);
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            return Ok(Some(Kernel {
                package: package.to_owned(),
                release: release.to_owned(),
                vmlinuz: entry.path(),
            }));
        }
    }
    Ok(None)
}

fn newest_kernel_package(series: &str) -> Result<String> {
    let prefix = format!("linux-image-{series}.");
    let names = capture(Command::new("apt-cache").arg("pkgnames").arg(&prefix))?;
    pick_kernel_package(series, names.lines()).ok_or_else(|| {
        NotFound(format!(
            "no {prefix}*-cloud-amd64 package in the apt lists (this needs Debian bookworm's \
             archive: bookworm and bookworm-security)"
        ))
        .into()
    })
}

/// The newest cloud kernel of `series` among package `names`: `6.1` matches
/// `linux-image-6.1.0-<abi>-cloud-amd64`, `6.12` matches
/// `linux-image-6.12.<patch>+deb12-cloud-amd64`, each optionally `-unsigned`. Versions compare
/// by their numbers; at equal versions the signed package (the one users install) wins.
fn pick_kernel_package<'a>(series: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    let prefix = format!("linux-image-{series}.");
    names
        .filter_map(|name| {
            let rest = name.strip_prefix(&prefix)?;
            let (version, unsigned) = match rest.strip_suffix("-cloud-amd64-unsigned") {
                Some(v) => (v, true),
                None => (rest.strip_suffix("-cloud-amd64")?, false),
            };
            // `0-56` or `117+deb12`: digits, separators and a `deb` tag, nothing else.
            let shape = version.replace("deb", "");
            if !shape
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '+')
                || !version.starts_with(|c: char| c.is_ascii_digit())
            {
                return None;
            }
            let numbers: Vec<u64> = version
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some(((numbers, !unsigned), name.to_owned()))
        })
        .max()
        .map(|(_, name)| name)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn file_names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

fn recreate_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Moves the finished `work` directory to `dest`, replacing whatever was there.
fn replace_dir(work: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("cannot remove {}", dest.display()))?;
    }
    fs::rename(work, dest)
        .with_context(|| format!("cannot move {} to {}", work.display(), dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_kernel_by_abi_then_signed() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64-dbg",
            "linux-image-6.1.0-47-cloud-amd64",
            "linux-image-6.10.3-cloud-amd64",
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.99+deb12-cloud-amd64",
            "linux-image-6.12-cloud-amd64",
            "linux-image-6.12.115+deb12-cloud-amd64",
        ];
        assert_eq!(
            pick_kernel_package("6.1", names.into_iter()).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            pick_kernel_package("6.12", names.into_iter()).as_deref(),
            Some("linux-image-6.12.117+deb12-cloud-amd64-unsigned")
        );
        assert_eq!(pick_kernel_package("6.6", names.into_iter()), None);
    }

    #[test]
    fn depends_field() {
        assert_eq!(
            parse_depends("libc6 (>= 2.34), libnl-3-200 (= 3.7.0), a | b:any (>> 1), adduser"),
            vec![
                vec!["libc6".to_owned()],
                vec!["libnl-3-200".to_owned()],
                vec!["a".to_owned(), "b".to_owned()],
                vec!["adduser".to_owned()],
            ]
        );
    }
}

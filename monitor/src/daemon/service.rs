//! The systemd unit for `claude-monitor daemon`, and installing/uninstalling it.
//!
//! The unit runs the daemon as root but sandboxed: only the capabilities eBPF tracing and
//! reading other users' processes need, a read-only view of the OS and of home directories,
//! writes only to the data directory and the pin directory, Unix sockets only, and a
//! system-call allow-list. Each choice is commented in the unit itself so an administrator reading
//! `systemctl cat claude-monitor` sees why. What it needs was found by reading the daemon
//! (the comments name the code) and checked by running it under exactly these capabilities
//! and `strace -c` (every call it made is in `@system-service`, except `bpf`).
//!
//! Before a unit is written, the binary it names is checked: only root may be able to change
//! it (module `trust`).
//!
//! Systemd and `systemctl` are injected (a flag and a function) so tests never touch the real
//! service manager or /etc.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use crate::output::rotate::write_atomic;

pub mod trust;

/// The unit's name, as given to `systemctl`.
pub const UNIT_NAME: &str = "claude-monitor.service";
/// Where administrators' units live (not /lib/systemd/system, which belongs to packages).
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// `Documentation=` of the unit: the package's repository. monitor/Cargo.toml does not
/// inherit `repository` from the workspace yet, so fall back to the workspace's value.
const DOCS: &str = if env!("CARGO_PKG_REPOSITORY").is_empty() {
    "https://example.invalid/claude-monitor"
} else {
    env!("CARGO_PKG_REPOSITORY")
};

/// The unit's capability bounding (and ambient) set; each is justified in the unit text.
const CAPABILITIES: [&str; 4] = [
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
];

/// What the unit needs to know about this installation. All paths must be absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitParams {
    /// The `claude-monitor` binary.
    pub exe: PathBuf,
    /// Passed as `--config`.
    pub config: PathBuf,
    /// The daemon's data directory (reports, logs); made writable in the sandbox.
    pub data_dir: PathBuf,
    /// Where the daemon pins its BPF objects (on a bpffs); created before each start by
    /// `ExecStartPre=`, and made writable in the sandbox.
    pub pin_dir: PathBuf,
    /// `api.tcp` or `export.otlp.endpoint` is set: the unit allows IPv4 and IPv6 sockets too.
    pub tcp: bool,
}

impl UnitParams {
    /// Rejects what would make a broken or misleading unit: relative paths (systemd resolves
    /// nothing relative to the installer's working directory), non-UTF-8 paths (unit files are
    /// text) and control characters (a newline would inject directives).
    pub fn validate(&self) -> anyhow::Result<()> {
        for (what, p) in [
            ("executable", &self.exe),
            ("config file", &self.config),
            ("data directory", &self.data_dir),
            ("pin directory", &self.pin_dir),
        ] {
            let Some(s) = p.to_str() else {
                bail!("{what} path {} is not valid UTF-8", p.display());
            };
            if !p.is_absolute() {
                bail!("{what} path {s:?} must be absolute");
            }
            if s.chars().any(char::is_control) {
                bail!("{what} path {s:?} contains control characters");
            }
        }
        Ok(())
    }
}

/// The unit file text. Paths are quoted and `%`/`$` escaped as systemd needs; call
/// [`UnitParams::validate`] first (the install functions do).
pub fn unit(params: &UnitParams) -> String {
    let exe = quote(&params.exe, true);
    let config = quote(&params.config, true);
    let data_dir = quote(&params.data_dir, false);
    let pin_dir = quote(&params.pin_dir, false);
    let pin_dir_arg = quote(&params.pin_dir, true);
    let state_dir = match state_directory(&params.data_dir) {
        Some(name) => format!(
            "# Created (mode 0700) by systemd before each start if missing.\n\
             StateDirectory={name}\n\
             StateDirectoryMode=0700\n"
        ),
        None => String::new(),
    };
    let families = if params.tcp {
        "# Unix sockets (the runtime's signal wake-up; journald is the inherited stdout) and,\n\
         # for the API's TCP listener (api.tcp) or the OTLP export (export.otlp.endpoint),\n\
         # IPv4 and IPv6. It looks up no users through NSS.\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"
    } else {
        "# Unix sockets only (the runtime's signal wake-up; journald is the inherited stdout). It\n\
         # looks up no users through NSS. The API's TCP listener (api.tcp) and the OTLP export\n\
         # (export.otlp.endpoint) need AF_INET AF_INET6 here: `claude-monitor install` adds them\n\
         # when either is set.\n\
         RestrictAddressFamilies=AF_UNIX"
    };
    let caps = CAPABILITIES.join(" ");
    let version = env!("CARGO_PKG_VERSION");
    let docs = DOCS;
    format!(
        r#"# {UNIT_NAME}: generated by `claude-monitor install` (claude-monitor {version}).
# A new install overwrites this file: put local changes in a drop-in
# (`systemctl edit {UNIT_NAME}`).

[Unit]
Description=claude-monitor: explains why processes and Claude Code sessions die (eBPF)
Documentation={docs}
After=local-fs.target
# Never give up restarting (see Restart= below): a crash bug must not be a permanent outage.
StartLimitIntervalSec=0

[Service]
Type=simple
# Creates the pin directory (mode 0700, see UMask=) if missing, as after every reboot:
# ReadWritePaths= below can only make an existing directory writable. '+': outside the
# sandbox, which would not let it create the directory. It refuses a directory that is not
# on a bpffs, and mounts bpffs only at /sys/fs/bpf (systemd mounts it there at boot).
ExecStartPre=+{exe} prepare-pin-dir {pin_dir_arg}
ExecStart={exe} daemon --config {config}
# SIGHUP: re-read the configuration and reopen the logs.
ExecReload=/bin/kill -HUP $MAINPID
# Restart after every crash or kill, 2 s after the first failure, then backing off over
# 8 restarts to one every 60 s while it keeps failing (no BTF, a broken config).
# RestartSteps= and RestartMaxDelaySec= need systemd 254; older versions (Debian 12 has
# 252) log "Unknown key 'RestartSteps' in section [Service], ignoring." and keep
# restarting every 2 s.
Restart=always
RestartSec=2
RestartSteps=8
RestartMaxDelaySec=60
TimeoutStopSec=15

# Resources. The monitor must outlive the OOM kills it records, so the kernel OOM killer
# picks it last; its own memory is capped by MemoryMax, so a leak in it is still contained.
OOMScoreAdjust=-900
MemoryMax=256M
# BPF maps and programs, /proc and session files are all file descriptors.
LimitNOFILE=65536
# Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
LimitMEMLOCK=infinity
# Reports contain command lines: readable by root only.
UMask=0077

# Runs as root, but with only these capabilities:
#   CAP_BPF             load programs, create and pin maps (bpf(2), kernel 5.8+)
#   CAP_PERFMON         tracing programs (tp_btf) that read kernel memory (5.8+)
#   CAP_SYS_PTRACE      read /proc/PID/environ of other users' processes (a ptrace
#                       access check, proc(5)): where a session keeps its config
#   CAP_DAC_READ_SEARCH read other users' ~/.claude (mode 0700) and /proc/PID/environ
#                       (mode 0400), without the power to write them
# Not needed, so not given:
#   CAP_SYS_ADMIN       the kernels it runs on have CAP_BPF/CAP_PERFMON; bpffs is mounted
#                       by systemd at boot. Without it kernel.bpf_stats_enabled=1 yields no
#                       per-program statistics in agent_stop (listing programs needs it).
#   CAP_SYS_RESOURCE    LimitMEMLOCK=infinity above already lifts the hard limit
#   CAP_DAC_OVERRIDE    it writes only root-owned directories; others' files are only read
#   CAP_KILL            it sends no signals (ExecReload signals a root process)
# AmbientCapabilities only matters if a drop-in sets User= to a non-root user.
CapabilityBoundingSet={caps}
AmbientCapabilities={caps}
NoNewPrivileges=yes

# Sandbox: the OS and home directories are read-only; the daemon writes only its data
# directory and its pin directory (pinned programs, links and ring buffer survive daemon
# restarts), not the rest of bpffs. A new version pins into <pin dir>/staging and
# rename(2)s into the pin directory: one bind mount, so no EXDEV.
ProtectSystem=strict
ReadWritePaths={data_dir} {pin_dir}
{state_dir}# Read-only, not hidden: it reads ~/.claude of every user.
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
# /sys and /proc/sys read-only: BTF (/sys/kernel/btf) and cgroup files (memory limits,
# usage, OOM counts) are only read.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
# The system calls of an ordinary service plus bpf(2). Anything else fails with EPERM
# (an error the daemon reports) instead of killing it. Left out on purpose:
#   perf_event_open  every program is tp_btf, attached through bpf(2); a kprobe, tracepoint
#                    or perf_event program would need it added here
#   mount (@mount)   systemd mounts bpffs at boot, and a mount made inside this unit's
#                    mount namespace would be seen by no one else
SystemCallFilter=@system-service bpf
SystemCallErrorNumber=EPERM
{families}
# Deliberately not set:
#   ProtectProc=/ProcSubset=  it must see every process in /proc
#   PrivateUsers=             capabilities in a user namespace do not allow bpf(2)
#   ProtectHostname=          reports must show the host name as it is now, not at start

[Install]
WantedBy=multi-user.target
"#
    )
}

/// `Some("name")` for `/var/lib/name`: systemd's StateDirectory= can then create it.
fn state_directory(data_dir: &Path) -> Option<String> {
    let rest = data_dir.strip_prefix("/var/lib").ok()?;
    let mut comps = rest.components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(name)), None) => {
            let name = name.to_str()?;
            (!name.contains(['%', '"', '\\']) && !name.chars().any(char::is_whitespace))
                .then(|| name.to_owned())
        }
        _ => None,
    }
}

/// A path as one word of a unit setting: `%` doubled (specifiers), `$` doubled in command
/// lines (environment expansion), and double quotes with backslash escapes when the path
/// contains whitespace, quotes or backslashes.
fn quote(p: &Path, command_line: bool) -> String {
    let s = p.to_string_lossy();
    let mut out = s.replace('%', "%%");
    if command_line {
        out = out.replace('$', "$$");
    }
    if out.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        out = format!("\"{}\"", out.replace('\\', "\\\\").replace('"', "\\\""));
    }
    out
}

/// Whether systemd is the running init system (the test sd_booted(3) uses).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Runs the real `systemctl` with `args`; a non-zero exit is an error carrying its stderr.
pub fn run_systemctl(args: &[&str]) -> io::Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "`systemctl {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// The result of [`install`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The unit was written to `path`, enabled and (re)started.
    Installed { path: PathBuf },
    /// systemd is not running: nothing was written. `unit` is the text to install by hand at
    /// `path` (print both; [`fmt::Display`] prints the explanation).
    NoSystemd { unit: String, path: PathBuf },
}

impl fmt::Display for InstallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallOutcome::Installed { path } => write!(
                f,
                "installed {}, enabled and started {UNIT_NAME} (see `systemctl status {UNIT_NAME}`, `journalctl -u {UNIT_NAME}`)",
                path.display()
            ),
            InstallOutcome::NoSystemd { path, .. } => write!(
                f,
                "systemd is not running on this machine (/run/systemd/system does not exist), so nothing was installed. \
                 On a systemd host, save the unit below as {} and run `systemctl daemon-reload && systemctl enable --now {UNIT_NAME}`; \
                 otherwise start `claude-monitor daemon` from your init system.",
                path.display()
            ),
        }
    }
}

/// The result of [`uninstall`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UninstallOutcome {
    /// systemd is running: the service was stopped and disabled (if the unit existed) and the
    /// unit file removed. `removed` is false when there was no unit file.
    Uninstalled { path: PathBuf, removed: bool },
    /// systemd is not running: only the unit file was removed, if present.
    NoSystemd { path: PathBuf, removed: bool },
}

impl fmt::Display for UninstallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UninstallOutcome::Uninstalled {
                path,
                removed: true,
            } => write!(
                f,
                "stopped and disabled {UNIT_NAME}, removed {}",
                path.display()
            ),
            UninstallOutcome::Uninstalled {
                path,
                removed: false,
            } => write!(f, "{} does not exist: nothing to uninstall", path.display()),
            UninstallOutcome::NoSystemd {
                path,
                removed: true,
            } => write!(
                f,
                "systemd is not running: removed {} (no service to stop)",
                path.display()
            ),
            UninstallOutcome::NoSystemd {
                path,
                removed: false,
            } => write!(
                f,
                "systemd is not running and {} does not exist: nothing to do",
                path.display()
            ),
        }
    }
}

/// Installs the unit into `unit_dir` (normally [`UNIT_DIR`]) and starts the service, or, when
/// systemd is not running, returns the unit text for the user to install by hand.
pub fn install(
    params: &UnitParams,
    unit_dir: &Path,
    systemctl: &dyn Fn(&[&str]) -> io::Result<()>,
) -> anyhow::Result<InstallOutcome> {
    install_with(params, unit_dir, systemd_running(), systemctl)
}

/// [`install`] with the systemd check made by the caller.
///
/// First refuses a binary that anyone but root could change (module `trust`): the unit runs
/// it as root. Nothing is written or run then.
///
/// A first install runs `systemctl enable --now`; a reinstall over an existing unit runs
/// `enable` and `restart`, since `enable --now` would leave the old binary and unit running.
pub fn install_with(
    params: &UnitParams,
    unit_dir: &Path,
    systemd_running: bool,
    systemctl: &dyn Fn(&[&str]) -> io::Result<()>,
) -> anyhow::Result<InstallOutcome> {
    params.validate()?;
    // Also when only printing the unit: it is meant to be installed as it is.
    trust::check_exe(&params.exe, &trust::RealFs)?;
    let text = unit(params);
    let path = unit_dir.join(UNIT_NAME);
    if !systemd_running {
        return Ok(InstallOutcome::NoSystemd { unit: text, path });
    }
    // ReadWritePaths= fails the start (status 226/NAMESPACE) if the directory is missing.
    create_private_dir(&params.data_dir)
        .with_context(|| format!("creating data directory {}", params.data_dir.display()))?;
    let reinstall = path.exists();
    fs::create_dir_all(unit_dir).with_context(|| format!("creating {}", unit_dir.display()))?;
    write_atomic(&path, text.as_bytes(), 0o644)
        .with_context(|| format!("writing the unit file {}", path.display()))?;
    let run = |args: &[&str]| {
        systemctl(args).with_context(|| format!("systemctl {} failed", args.join(" ")))
    };
    run(&["daemon-reload"])?;
    if reinstall {
        run(&["enable", UNIT_NAME])?;
        run(&["restart", UNIT_NAME])?;
    } else {
        run(&["enable", "--now", UNIT_NAME])?;
    }
    Ok(InstallOutcome::Installed { path })
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Stops, disables and removes the unit in `unit_dir`. Unpinning BPF objects is the caller's
/// job.
pub fn uninstall(
    unit_dir: &Path,
    systemctl: &dyn Fn(&[&str]) -> io::Result<()>,
) -> anyhow::Result<UninstallOutcome> {
    uninstall_with(unit_dir, systemd_running(), systemctl)
}

/// [`uninstall`] with the systemd check made by the caller.
///
/// If `systemctl disable --now` fails, the unit file is kept so that the service is not left
/// running with no unit file to manage it by; the error says so.
pub fn uninstall_with(
    unit_dir: &Path,
    systemd_running: bool,
    systemctl: &dyn Fn(&[&str]) -> io::Result<()>,
) -> anyhow::Result<UninstallOutcome> {
    let path = unit_dir.join(UNIT_NAME);
    let exists = path
        .try_exists()
        .with_context(|| format!("checking {}", path.display()))?;
    if !systemd_running {
        if exists {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        return Ok(UninstallOutcome::NoSystemd {
            path,
            removed: exists,
        });
    }
    if !exists {
        return Ok(UninstallOutcome::Uninstalled {
            path,
            removed: false,
        });
    }
    systemctl(&["disable", "--now", UNIT_NAME]).with_context(|| {
        format!(
            "systemctl disable --now {UNIT_NAME} failed; {} was kept",
            path.display()
        )
    })?;
    fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    systemctl(&["daemon-reload"]).with_context(|| {
        format!(
            "{} was removed but systemctl daemon-reload failed",
            path.display()
        )
    })?;
    Ok(UninstallOutcome::Uninstalled {
        path,
        removed: true,
    })
}

#[cfg(test)]
mod tests;

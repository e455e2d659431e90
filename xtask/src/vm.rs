//! `cargo xtask test --kernel 6.1|6.12`: the real-kernel scenarios on Debian's cloud kernels,
//! booted under qemu.
//!
//! Rust eBPF has no CO-RE relocations: the agent reads struct offsets and tracepoint
//! prototypes from the running kernel's BTF, so the only proof that this works on kernels
//! other than the developer's is to load the real programs there. Why each piece is the way
//! it is:
//!
//! - **TCG, not KVM.** `/dev/kvm` opens on our machines but nested virtualisation fails on
//!   ordinary guest kernels and qemu then hangs paused. TCG boots a cloud kernel in seconds;
//!   everything still runs under a timeout that kills qemu.
//! - **Static binaries in an initramfs.** The cloud kernels have no 9p, so the agent, the
//!   scenario test binaries and their helpers travel in the initramfs, built with `+crt-static`
//!   (the guest has no libc) for the host target only, so build scripts and proc-macros,
//!   which run on the host, are unaffected. busybox-static provides the shell and the
//!   commands the scenarios call; bash-static the bash the fake sessions are copies of. See `guest/init.sh` for the guest side.
//! - **Private qemu and kernels.** Everything comes from Debian's archive through
//!   `apt-get download` and is unpacked under `target/vm/` (see [`debian`]); nothing is
//!   installed, and a second run downloads nothing.
//! - **Results over the serial console.** qemu's exit status does not say whether the guest
//!   finished (it is 0 after a panic too), so the guest prints marker-prefixed lines and a
//!   final status line; no status line means the kernel died or the run timed out.
//!   `isa-debug-exit` (see [`elf`]) makes qemu exit as soon as the status is printed.

mod cpio;
// Also fetches promtool for the host's unit tests (`test.rs`).
pub mod debian;
mod elf;

use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, setup, totals::Totals};

/// The host target, named explicitly so that `CARGO_TARGET_<triple>_RUSTFLAGS` reaches only
/// the binaries, not build scripts and proc-macros (cargo applies target flags to host
/// artifacts only when no `--target` is given).
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
const GUEST_TARGET_RUSTFLAGS: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS";
/// Static, and without debug info: a debug build's 130 MB of DWARF would make a slow
/// initramfs; the symbols stay, so backtraces still name functions.
const STATIC_FLAGS: &str = "-C target-feature=+crt-static -C strip=debuginfo";

/// The package of the scenarios, and its test targets that run in the guest. Not `docs`
/// (it checks files, not the kernel) nor `sessions` (it needs bash, which the guest lacks).
const TESTS_PACKAGE: &str = "claude-monitor-tests";
const GUEST_TESTS: &[&str] = &["engine", "sessions"];

/// Processes in the short-lived-process storm scenario (`CLAUDE_MONITOR_STORM`) in the
/// guest, unless set on the host: TCG runs a few thousand fork+exec per minute.
const GUEST_STORM: u32 = 1000;
/// qemu settings: 1 GiB (the OOM scenario allocates 300 MiB in a 64 MiB cgroup, and the
/// initramfs lives in RAM), 2 vCPUs (multi-threaded TCG; CI machines have 2 cores).
const GUEST_MEMORY_MIB: u32 = 1024;
const GUEST_CPUS: u32 = 2;
const KERNEL_CMDLINE: &str = "console=ttyS0 quiet loglevel=1 panic=-1";

/// Values the guest writes to isa-debug-exit; qemu then exits with `(v << 1) | 1`. Not 0:
/// qemu's own errors exit 1, which is what a 0 would map to.
const EXIT_PASS: u8 = 0x10;
const EXIT_FAIL: u8 = 0x11;

/// Serial-console markers, as printed by `guest/init.sh`.
const MARK_OUTPUT: &str = "@@CMT@@ ";
const MARK_KERNEL: &str = "@@CMT-KERNEL@@ ";
const MARK_TEST: &str = "@@CMT-TEST@@ ";
const MARK_DMESG: &str = "@@CMT-DMESG@@ ";
const MARK_STATUS: &str = "@@CMT-STATUS@@ ";

const INIT_TEMPLATE: &str = include_str!("../guest/init.sh");

/// A Debian cloud kernel series the tests boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GuestKernel {
    /// Debian 12's own kernel, with the cgroup v1 memory hierarchy (as on our machines).
    V6_1,
    /// Debian 12's newer kernel; cgroup v2 (6.12 has no v1 memory controller).
    V6_12,
}

impl GuestKernel {
    pub fn series(self) -> &'static str {
        match self {
            GuestKernel::V6_1 => "6.1",
            GuestKernel::V6_12 => "6.12",
        }
    }

    fn cgroup(self) -> &'static str {
        match self {
            GuestKernel::V6_1 => "v1",
            GuestKernel::V6_12 => "v2",
        }
    }
}

pub struct Options<'a> {
    pub release: bool,
    pub filter: Option<&'a str>,
    /// Per kernel, from starting qemu to its exit.
    pub timeout: Duration,
}

/// What one guest kernel reported.
pub struct Outcome {
    /// `uname -r` in the guest, or the kernel series if it never got that far.
    pub kernel: String,
    pub totals: Totals,
    /// Why the kernel counts as failed; `None` when the test binary exited 0.
    pub problem: Option<String>,
}

/// Builds the guest binaries, fetches what is missing, then boots each kernel in turn.
/// Failures of one kernel (download, boot, tests) are in its [`Outcome`]; an `Err` means
/// no kernel could be tried.
pub fn run(
    toolchain: &setup::Toolchain,
    kernels: &[GuestKernel],
    opts: &Options<'_>,
) -> Result<Vec<Outcome>> {
    let binaries = build_static(toolchain, opts.release)?;
    let cache = cargo::workspace_root().join("target/vm");
    fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let mut apt = debian::Apt::default();
    let qemu = debian::ensure_qemu(&mut apt, &cache)?;
    let busybox = debian::ensure_busybox(&mut apt, &cache)?;
    let bash = debian::ensure_bash(&mut apt, &cache)?;
    let initramfs = cache.join("initramfs.cpio");
    write_initramfs(&initramfs, &busybox, &bash, &binaries, opts)?;

    let mut outcomes = Vec::new();
    for &kernel in kernels {
        let outcome = match debian::ensure_kernel(&mut apt, &cache, kernel.series()) {
            Ok(image) => boot(&qemu, &image, kernel, &initramfs, &cache, opts.timeout),
            Err(err) => Outcome {
                kernel: kernel.series().to_owned(),
                totals: Totals::default(),
                problem: Some(format!("cannot get the kernel: {err:#}")),
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The static agent, scenario test binaries (by target name) and helper programs.
struct GuestBinaries {
    agent: PathBuf,
    tests: Vec<(String, PathBuf)>,
    helpers: Vec<PathBuf>,
}

fn build_static(toolchain: &setup::Toolchain, release: bool) -> Result<GuestBinaries> {
    eprintln!("xtask: building static binaries for the guest ({GUEST_TARGET}, +crt-static)");
    let agent = cargo::artifacts(&mut static_cargo(
        toolchain,
        release,
        &[
            "build",
            "--package",
            "claude-monitor",
            "--bin",
            "claude-monitor",
        ],
    ))
    .context("building the static agent failed")?
    .into_iter()
    .find(|a| a.target == "claude-monitor" && a.kinds.iter().any(|k| k == "bin"))
    .context("cargo built no claude-monitor executable")?
    .path;
    // `cargo test` builds the package's [[bin]] helpers for its integration tests.
    let mut args = vec!["test", "--no-run", "--package", TESTS_PACKAGE];
    for name in GUEST_TESTS {
        args.extend(["--test", name]);
    }
    let artifacts = cargo::artifacts(&mut static_cargo(toolchain, release, &args))
        .context("building the static scenario tests failed")?;
    let tests = GUEST_TESTS
        .iter()
        .map(|&name| {
            artifacts
                .iter()
                .find(|a| a.test && a.target == name)
                .map(|a| (name.to_owned(), a.path.clone()))
                .with_context(|| format!("cargo built no `{name}` test executable"))
        })
        .collect::<Result<Vec<_>>>()?;
    let helpers: Vec<PathBuf> = artifacts
        .into_iter()
        .filter(|a| a.package == TESTS_PACKAGE && !a.test && a.kinds.iter().any(|k| k == "bin"))
        .map(|a| a.path)
        .collect();
    if helpers.is_empty() {
        bail!("cargo built no helper programs for {TESTS_PACKAGE}");
    }
    let all = helpers
        .iter()
        .chain(tests.iter().map(|(_, path)| path))
        .chain([&agent]);
    for path in all {
        if !elf::is_static(path)? {
            bail!(
                "{} is dynamically linked although it was built with `{STATIC_FLAGS}`; \
                 does a .cargo/config.toml set target rustflags that override them?",
                path.display()
            );
        }
    }
    Ok(GuestBinaries {
        agent,
        tests,
        helpers,
    })
}

/// A cargo command that builds for [`GUEST_TARGET`] with [`STATIC_FLAGS`]. `RUSTFLAGS` would
/// override the target flags entirely, so any the user set are moved into them.
fn static_cargo(toolchain: &setup::Toolchain, release: bool, args: &[&str]) -> Command {
    let mut flags: Vec<String> = ["RUSTFLAGS", GUEST_TARGET_RUSTFLAGS]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .filter(|v| !v.trim().is_empty())
        .collect();
    flags.push(STATIC_FLAGS.to_owned());
    let mut cmd = cargo::cargo();
    cmd.args(args)
        .args(["--target", GUEST_TARGET])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(GUEST_TARGET_RUSTFLAGS, flags.join(" "));
    if release {
        cmd.arg("--release");
    }
    toolchain.apply(&mut cmd);
    cmd
}

fn write_initramfs(
    path: &Path,
    busybox: &Path,
    bash: &Path,
    binaries: &GuestBinaries,
    opts: &Options<'_>,
) -> Result<()> {
    let partial = path.with_extension("cpio.partial");
    let mut w = cpio::Writer::create(&partial)?;
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "etc",
        "root",
        "cmt",
        "cmt/tests",
        "cmt/helpers",
    ] {
        w.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for init before anything is mounted.
    w.char_device("dev/console", 0o600, 5, 1)?;
    w.file_from("bin/busybox", 0o755, busybox)?;
    w.file_from("bin/bash", 0o755, bash)?;
    w.file("init", 0o755, init_script(opts)?.as_bytes())?;
    w.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    w.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    w.file_from("cmt/claude-monitor", 0o755, &binaries.agent)?;
    for (name, path) in &binaries.tests {
        w.file_from(&format!("cmt/tests/{name}"), 0o755, path)?;
    }
    for helper in &binaries.helpers {
        let name = helper
            .file_name()
            .context("helper without a file name")?
            .to_string_lossy();
        w.file_from(&format!("cmt/helpers/{name}"), 0o755, helper)?;
    }
    w.file("cmt/exit-pass", 0o755, &elf::debug_exit_program(EXIT_PASS))?;
    w.file("cmt/exit-fail", 0o755, &elf::debug_exit_program(EXIT_FAIL))?;
    w.finish()?;
    fs::rename(&partial, path)
        .with_context(|| format!("cannot move {} to {}", partial.display(), path.display()))
}

/// `guest/init.sh` with the test binary's arguments and the storm size filled in.
fn init_script(opts: &Options<'_>) -> Result<String> {
    let storm = match std::env::var("CLAUDE_MONITOR_STORM") {
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .with_context(|| format!("CLAUDE_MONITOR_STORM={v} is not a number"))?,
        Err(_) => GUEST_STORM,
    };
    let args = opts.filter.map(shell_quote).unwrap_or_default();
    Ok(INIT_TEMPLATE
        .replace("@STORM@", &storm.to_string())
        .replace("@TEST_ARGS@", &args))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a serial-console line means to us.
#[derive(Debug, PartialEq)]
enum Console<'a> {
    Output(&'a str),
    Kernel(&'a str),
    /// A test the binary will run (from `--list`).
    Test(&'a str),
    Dmesg(&'a str),
    Status(&'a str),
    /// Firmware, kernel messages, anything without a marker.
    Other,
}

/// Parses one console line. The marker may come after other bytes on the same line (escape
/// codes from the firmware, a kernel message without its newline), so it is searched for.
fn parse_console(line: &str) -> Console<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(at) = line.find("@@CMT") else {
        return Console::Other;
    };
    let tagged = &line[at..];
    if let Some(rest) = tagged.strip_prefix(MARK_OUTPUT) {
        Console::Output(rest)
    } else if tagged == MARK_OUTPUT.trim_end() {
        Console::Output("")
    } else if let Some(rest) = tagged.strip_prefix(MARK_KERNEL) {
        Console::Kernel(rest.trim())
    } else if let Some(rest) = tagged.strip_prefix(MARK_TEST) {
        Console::Test(rest.trim())
    } else if let Some(rest) = tagged.strip_prefix(MARK_DMESG) {
        Console::Dmesg(rest)
    } else if let Some(rest) = tagged.strip_prefix(MARK_STATUS) {
        Console::Status(rest.trim())
    } else {
        Console::Other
    }
}

/// Boots `image` with the initramfs, streams the test output, and says how it went.
fn boot(
    qemu: &debian::Qemu,
    image: &debian::Kernel,
    kernel: GuestKernel,
    initramfs: &Path,
    cache: &Path,
    timeout: Duration,
) -> Outcome {
    let fresh = || Outcome {
        kernel: image.release.clone(),
        totals: Totals::default(),
        problem: None,
    };
    let mut outcome = fresh();
    if let Err(err) = boot_inner(qemu, image, kernel, initramfs, cache, timeout, &mut outcome) {
        // One known failure of the emulator, not of the code under test: the guest kernel
        // traps on an `int3` inside its own text while it patches a static key (cgroup
        // creation flips memcg keys) on another vCPU: TCG does not make cross-modifying code
        // safe. Booted again once, loudly; a second time, or any other crash, fails.
        if err.to_string().contains(EMULATOR_INT3) {
            eprintln!(
                "xtask: warning: the {} guest kernel hit an int3 trap in its own text while \
                 patching it (a QEMU TCG cross-modifying-code fault, see the console log); \
                 booting it again, once",
                image.release
            );
            outcome = fresh();
            if let Err(err) =
                boot_inner(qemu, image, kernel, initramfs, cache, timeout, &mut outcome)
            {
                outcome.problem = Some(format!("{err:#} (second boot, after an int3 trap)"));
            }
        } else {
            outcome.problem = Some(format!("{err:#}"));
        }
    }
    outcome
}

/// How [`boot_inner`] names a guest lost to the emulator's text-patching fault.
const EMULATOR_INT3: &str = "kernel oops on an int3 trap in kernel text";

fn boot_inner(
    qemu: &debian::Qemu,
    image: &debian::Kernel,
    kernel: GuestKernel,
    initramfs: &Path,
    cache: &Path,
    timeout: Duration,
    outcome: &mut Outcome,
) -> Result<()> {
    let log_path = cache.join(format!("console-{}.log", kernel.series()));
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = qemu.command();
    cmd.args(["-accel", "tcg", "-cpu", "max", "-nographic", "-no-reboot"])
        .args(["-m", &GUEST_MEMORY_MIB.to_string()])
        .args(["-smp", &GUEST_CPUS.to_string()])
        .args(["-nic", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(&image.vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(format!("{KERNEL_CMDLINE} cmt_cgroup={}", kernel.cgroup()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "xtask: booting {} ({}) under qemu: TCG, {GUEST_CPUS} vCPUs, {GUEST_MEMORY_MIB} MiB, \
         cgroup {}, timeout {} s; console log {}",
        image.release,
        image.package,
        kernel.cgroup(),
        timeout.as_secs(),
        log_path.display()
    );
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", cargo::describe(&cmd)))?;

    // Console lines arrive on a channel so that the timeout can be checked between them.
    let stdout = child.stdout.take().context("no stdout from qemu")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut stderr = child.stderr.take().context("no stderr from qemu")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = started + timeout;
    let mut console = ConsoleState::new(log, started);
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(raw) => console.handle(&raw, outcome),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                // Our own child, by its handle.
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let exit = child.wait().context("waiting for qemu")?;
    let _ = reader.join();
    // After a timeout: what was still on its way, including the unfinished last line (libtest
    // prints `test NAME ... ` before running a test), which names the test that hung.
    for raw in rx.try_iter() {
        console.handle(&raw, outcome);
    }
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    eprintln!(
        "xtask: {} finished in {:.0} s (qemu {exit})",
        outcome.kernel,
        started.elapsed().as_secs_f64()
    );
    // libtest runs the tests one at a time in the order it lists them.
    let running = console
        .listed
        .iter()
        .find(|name| !console.finished.contains(name))
        .cloned();
    let ConsoleState {
        status,
        saw_dmesg,
        tail,
        int3_oops,
        ..
    } = console;

    let expected_exit = |v: u8| i32::from(v) << 1 | 1;
    match status.as_deref() {
        Some("0") => {
            if exit.code() != Some(expected_exit(EXIT_PASS)) {
                eprintln!(
                    "xtask: note: qemu exited with {exit}, not {} (isa-debug-exit not used?)",
                    expected_exit(EXIT_PASS)
                );
            }
            Ok(())
        }
        Some(value) => bail!(
            "scenarios failed in the guest (status {value}); console log{} {}",
            if saw_dmesg {
                " with the kernel log"
            } else {
                ""
            },
            log_path.display()
        ),
        None => {
            for line in &tail {
                eprintln!("  console: {line}");
            }
            if !qemu_stderr.trim().is_empty() {
                eprintln!("  qemu stderr: {}", qemu_stderr.trim());
            }
            let why = if timed_out {
                format!(
                    "timed out after {} s and was killed{}",
                    timeout.as_secs(),
                    running
                        .map(|name| format!(" during test {name}"))
                        .unwrap_or_default()
                )
            } else if int3_oops {
                format!("stopped without a result (qemu {exit}): {EMULATOR_INT3}")
            } else {
                format!("stopped without a result (qemu {exit}): a kernel panic or a crash of init")
            };
            bail!("the guest {why}; console log {}", log_path.display())
        }
    }
}

/// What the console has told us so far; every line also goes to the console log.
struct ConsoleState {
    log: File,
    started: Instant,
    status: Option<String>,
    saw_dmesg: bool,
    /// The last lines without a marker, shown when the guest gives no result.
    tail: Vec<String>,
    /// The guest kernel oopsed on an `int3` in its own text (see [`EMULATOR_INT3`]).
    int3_oops: bool,
    /// The tests listed before the run, and those that reported a result.
    listed: Vec<String>,
    finished: Vec<String>,
}

impl ConsoleState {
    fn new(log: File, started: Instant) -> Self {
        ConsoleState {
            log,
            started,
            status: None,
            saw_dmesg: false,
            tail: Vec::new(),
            int3_oops: false,
            listed: Vec::new(),
            finished: Vec::new(),
        }
    }

    fn handle(&mut self, raw: &[u8], outcome: &mut Outcome) {
        // Each line with the seconds since qemu started, to see where a slow run spent them.
        let _ = write!(self.log, "[{:8.3}] ", self.started.elapsed().as_secs_f64());
        let _ = self.log.write_all(raw);
        let line = String::from_utf8_lossy(raw);
        match parse_console(&line) {
            Console::Output(text) => {
                println!("{text}");
                outcome.totals.add_line(text);
                // `test NAME ... ok` (also `FAILED`, `ignored`).
                if let Some((name, _)) = text
                    .strip_prefix("test ")
                    .and_then(|t| t.split_once(" ... "))
                {
                    self.finished.push(name.to_owned());
                }
            }
            Console::Test(name) => self.listed.push(name.to_owned()),
            Console::Kernel(release) => {
                eprintln!(
                    "xtask: guest kernel {release} up after {:.1} s",
                    self.started.elapsed().as_secs_f64()
                );
                release.clone_into(&mut outcome.kernel);
            }
            // Kept in the console log only: mostly noise (the OOM scenario's memory report).
            Console::Dmesg(_) => self.saw_dmesg = true,
            Console::Status(value) => self.status = Some(value.to_owned()),
            Console::Other => {
                self.int3_oops |= line.contains("Oops: int3");
                let text = printable(&line);
                if !text.is_empty() {
                    self.tail.push(text);
                    if self.tail.len() > 30 {
                        self.tail.remove(0);
                    }
                }
            }
        }
    }
}

/// `line` without terminal escape sequences (SeaBIOS clears the screen) and control bytes.
fn printable(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            // ESC [ parameters… final byte (0x40-0x7e); other ESC sequences are one byte.
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_escapes_removed() {
        assert_eq!(
            printable("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n"),
            "SeaBIOS (version 1.16.2)"
        );
        assert_eq!(printable("a\tb\x07c\r"), "a\tbc");
    }

    /// The emulator's text-patching fault is recognised from the console, whatever comes
    /// after it (the panic's trace is longer than the tail kept).
    #[test]
    fn an_int3_oops_is_recognised() {
        let log = File::create("/dev/null").unwrap();
        let mut c = ConsoleState::new(log, Instant::now());
        let mut outcome = Outcome {
            kernel: String::new(),
            totals: Totals::default(),
            problem: None,
        };
        c.handle(
            b"[   48.407927] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n",
            &mut outcome,
        );
        for i in 0..100 {
            c.handle(
                format!("[   48.4] trace line {i}\n").as_bytes(),
                &mut outcome,
            );
        }
        assert!(c.int3_oops);
        let mut other = ConsoleState::new(File::create("/dev/null").unwrap(), Instant::now());
        other.handle(b"Kernel panic - not syncing: VFS\n", &mut outcome);
        assert!(!other.int3_oops);
    }

    #[test]
    fn console_lines() {
        assert_eq!(
            parse_console("\x1b[2J\x1b[01;01H@@CMT-KERNEL@@ 6.1.0-56-cloud-amd64\r\n"),
            Console::Kernel("6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            parse_console("@@CMT@@ test exit_code_42 ... ok\r\n"),
            Console::Output("test exit_code_42 ... ok")
        );
        assert_eq!(parse_console("@@CMT@@\r\n"), Console::Output(""));
        assert_eq!(
            parse_console("[   12.3] oom-kill:...@@CMT@@ test result: ok.\r\n"),
            Console::Output("test result: ok.")
        );
        assert_eq!(
            parse_console("@@CMT-STATUS@@ 101\r\n"),
            Console::Status("101")
        );
        assert_eq!(
            parse_console("@@CMT-DMESG@@ [ 1.0] x\r\n"),
            Console::Dmesg("[ 1.0] x")
        );
        assert_eq!(
            parse_console("SeaBIOS (version 1.16.2)\r\n"),
            Console::Other
        );
    }

    #[test]
    fn init_script_markers_and_placeholders() {
        for mark in [MARK_OUTPUT, MARK_KERNEL, MARK_TEST, MARK_DMESG, MARK_STATUS] {
            assert!(INIT_TEMPLATE.contains(mark), "init.sh lacks {mark}");
        }
        let opts = Options {
            release: false,
            filter: Some("it's"),
            timeout: Duration::from_secs(1),
        };
        let script = init_script(&opts).unwrap();
        assert!(script.contains(r"--test-threads=1 'it'\''s'"), "{script}");
        assert!(
            script.contains("CLAUDE_MONITOR_STORM=1000")
                || std::env::var_os("CLAUDE_MONITOR_STORM").is_some()
        );
        assert!(!script.contains("@TEST_ARGS@"));
    }
}

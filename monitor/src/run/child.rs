//! The command `run` wraps: started held before its `exec` (so the kernel programs watch it
//! from its first instruction), in a process group of its own that gets the terminal when
//! `run` has it, as a shell with job control does; its stops and deaths read with
//! `waitpid`.
//!
//! Why a process group of its own: the terminal then sends Ctrl-C, Ctrl-\ and SIGWINCH to
//! the command only, and the signals `run` itself receives (from `kill`, a supervisor, the
//! shell's SIGHUP) are forwarded to the command's group once, never twice.

use std::{
    ffi::OsString,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::process::CommandExt as _,
    },
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, Result, bail};

/// How the command stands after a `waitpid`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum State {
    /// Nothing new.
    Running,
    /// Stopped by this signal (Ctrl-Z, SIGSTOP, SIGTTIN).
    Stopped(i32),
    /// Continued.
    Continued,
    /// Ended with this wait status (reaped), and what it used.
    Ended(i32, Rusage),
}

/// What `wait4` says the command used: its own and that of the descendants it waited for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rusage {
    pub maxrss_kb: u64,
    pub user_ms: f64,
    pub system_ms: f64,
}

impl Rusage {
    fn of(r: &libc::rusage) -> Rusage {
        let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        Rusage {
            maxrss_kb: u64::try_from(r.ru_maxrss).unwrap_or(0),
            user_ms: ms(r.ru_utime),
            system_ms: ms(r.ru_stime),
        }
    }
}

/// The terminal `run` gave to the command, to take back when it stops or ends.
struct Terminal {
    fd: RawFd,
    /// `run`'s own process group (the terminal's foreground group at start).
    own_group: libc::pid_t,
    /// The modes at start, restored when the command dies by a signal or stops (a shell
    /// does the same: a killed full-screen program leaves the terminal raw).
    modes: libc::termios,
}

/// The running command.
pub struct Child {
    pub pid: u32,
    terminal: Option<Terminal>,
    /// The `go` pipe's write end until [`Child::release`].
    go: Option<OwnedFd>,
    /// The thread in `Command::spawn`, which returns once the command's exec succeeded or
    /// failed.
    spawner: Option<std::thread::JoinHandle<io::Result<std::process::Child>>>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The first of stdin, stdout and stderr that is a terminal whose foreground group is
/// `run`'s own: the command gets it.
fn foreground_terminal() -> Option<Terminal> {
    // SAFETY: getpgrp has no preconditions.
    let own_group = unsafe { libc::getpgrp() };
    (0..3).find_map(|fd| {
        // SAFETY: isatty and tcgetpgrp only read the descriptor's state.
        let foreground = unsafe { libc::isatty(fd) == 1 && libc::tcgetpgrp(fd) == own_group };
        if !foreground {
            return None;
        }
        let mut modes = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: modes is writable memory of the right size; on success it is filled.
        if unsafe { libc::tcgetattr(fd, modes.as_mut_ptr()) } != 0 {
            return None;
        }
        Some(Terminal {
            fd,
            own_group,
            // SAFETY: tcgetattr returned 0, so it filled the struct.
            modes: unsafe { modes.assume_init() },
        })
    })
}

impl Child {
    /// Starts `argv` held before its exec: the process exists (its pid is known and in its
    /// own process group, with the terminal when `run` has it) but runs none of the
    /// command's code until [`Child::release`]. The environment, the working directory and
    /// the standard streams are `run`'s, untouched.
    pub fn start_held(argv: &[OsString]) -> Result<Child> {
        let Some((program, args)) = argv.split_first() else {
            bail!("no command given: claude-monitor run [OPTIONS] -- CMD [ARGS...]");
        };
        let terminal = foreground_terminal();
        if terminal.is_some() {
            // Giving the terminal back after the command ends is done from the background,
            // which raises SIGTTOU unless it is ignored (as shells do); the command gets
            // the default back before its exec.
            // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
            unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
        }
        let (pid_r, pid_w) = pipe().context("pipe")?;
        let (go_r, go_w) = pipe().context("pipe")?;
        let (pid_w_fd, go_r_fd, go_w_fd, pid_r_fd) = (
            pid_w.as_raw_fd(),
            go_r.as_raw_fd(),
            go_w.as_raw_fd(),
            pid_r.as_raw_fd(),
        );
        let mut cmd = Command::new(program);
        cmd.args(args);
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (signal, setpgid, getpid, write, read, close).
        unsafe {
            cmd.pre_exec(move || {
                for sig in [libc::SIGTTOU, libc::SIGTTIN, libc::SIGTSTP] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                libc::close(go_w_fd);
                libc::close(pid_r_fd);
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let pid = libc::getpid().to_ne_bytes();
                if libc::write(pid_w_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                    return Err(io::Error::last_os_error());
                }
                let mut byte = 0u8;
                loop {
                    match libc::read(go_r_fd, (&raw mut byte).cast(), 1) {
                        1 => return Ok(()),
                        // `run` is gone before releasing it: run nothing.
                        0 => return Err(io::Error::from(io::ErrorKind::BrokenPipe)),
                        _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                        _ => return Err(io::Error::last_os_error()),
                    }
                }
            });
        }
        // The child's ends stay open until the fork is done (spawn returns after it), then
        // only the child holds them: a child that fails before writing its pid closes the
        // pid pipe, and a `run` that dies closes the go pipe.
        let spawner = std::thread::Builder::new()
            .name("run-spawn".into())
            .spawn(move || {
                let spawned = cmd.spawn();
                drop(pid_w);
                drop(go_r);
                spawned
            })
            .context("cannot start a thread")?;
        let mut buf = [0u8; 4];
        let mut file = std::fs::File::from(pid_r);
        if let Err(e) = io::Read::read_exact(&mut file, &mut buf) {
            // The child never got as far as its pid: spawn's own error says why.
            let spawned = spawner
                .join()
                .map_err(|_| anyhow::anyhow!("spawn panicked"))?;
            return Err(match spawned {
                Err(se) => anyhow::Error::new(se),
                Ok(_) => anyhow::Error::new(e),
            })
            .with_context(|| format!("cannot start {}", program.to_string_lossy()));
        }
        let pid = i32::from_ne_bytes(buf);
        // Both sides set the group, so that neither order of the two races.
        // SAFETY: plain syscalls on our own child.
        unsafe {
            libc::setpgid(pid, pid);
            if let Some(t) = &terminal {
                libc::tcsetpgrp(t.fd, pid);
            }
        }
        Ok(Child {
            pid: pid as u32,
            terminal,
            go: Some(go_w),
            spawner: Some(spawner),
        })
    }

    /// Lets the command exec. An exec that failed (no such file, not executable) is
    /// returned here, with the shell's status for it (127 or 126); the failed child is
    /// already reaped then (by `Command::spawn`).
    pub fn release(&mut self) -> std::result::Result<(), (io::Error, u8)> {
        if let Some(go) = self.go.take() {
            let mut file = std::fs::File::from(go);
            // A failed write means the child is gone; spawn says how.
            let _ = io::Write::write_all(&mut file, &[1]);
        }
        let Some(spawner) = self.spawner.take() else {
            return Ok(());
        };
        match spawner.join() {
            // The std handle is not used: the pid is reaped with waitpid.
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let status = if e.kind() == io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                Err((e, status))
            }
            Err(_) => Err((io::Error::other("spawn panicked"), 126)),
        }
    }

    /// Sends `sig` to the command's process group (as a shell signals a job).
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2); the group is the command's own.
        unsafe { libc::kill(-(self.pid as i32), sig) };
    }

    /// Reaps or reads a change of the command without blocking.
    pub fn poll(&self) -> State {
        let mut status = 0;
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: status and usage are valid memory to write to.
        let rc = unsafe {
            libc::wait4(
                self.pid as i32,
                &mut status,
                libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED,
                usage.as_mut_ptr(),
            )
        };
        if rc != self.pid as i32 {
            return State::Running;
        }
        if libc::WIFSTOPPED(status) {
            State::Stopped(libc::WSTOPSIG(status))
        } else if libc::WIFCONTINUED(status) {
            State::Continued
        } else {
            // SAFETY: zeroed is a valid rusage, and wait4 filled it for an ended child.
            let usage = unsafe { usage.assume_init() };
            State::Ended(status, Rusage::of(&usage))
        }
    }

    /// The command stopped (Ctrl-Z): like a shell's job, `run` takes the terminal back and
    /// stops itself, so the user's shell sees it stopped; once continued (`fg`, `bg`), it
    /// gives the terminal back when it had it and continues the command.
    pub fn stopped(&self, sig: i32) {
        let Some(t) = &self.terminal else {
            // Stopped by someone else, with no terminal to hand back: `kill -CONT` resumes it.
            return;
        };
        if !matches!(
            sig,
            libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU | libc::SIGSTOP
        ) {
            return;
        }
        self.take_terminal_back(true);
        // SAFETY: plain syscalls; SIGTSTP stops `run` (its default action) until continued.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTSTP);
            // Continued in the foreground: the command gets the terminal again.
            if libc::tcgetpgrp(t.fd) == t.own_group {
                libc::tcsetpgrp(t.fd, self.pid as i32);
            }
        }
        self.signal(libc::SIGCONT);
    }

    /// The command ended: the terminal goes back to `run`'s group, with its modes at start
    /// when the command died by a signal.
    pub fn ended(&self, status: &ExitStatus) {
        use std::os::unix::process::ExitStatusExt as _;
        self.take_terminal_back(status.signal().is_some());
    }

    fn take_terminal_back(&self, restore_modes: bool) {
        if let Some(t) = &self.terminal {
            // SAFETY: plain syscalls on our terminal; SIGTTOU is ignored.
            unsafe {
                if libc::tcgetpgrp(t.fd) == self.pid as i32 {
                    libc::tcsetpgrp(t.fd, t.own_group);
                }
                if restore_modes {
                    libc::tcsetattr(t.fd, libc::TCSADRAIN, &t.modes);
                }
            }
        }
    }
}

/// `run`'s own exit status for the command's wait status: its code, or 128+N when signal N
/// killed it (as shells report it).
pub fn exit_status(status: &ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    #[test]
    fn statuses_as_a_shell_reports_them() {
        assert_eq!(exit_status(&ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_status(&ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_status(&ExitStatus::from_raw(libc::SIGINT)), 130);
        assert_eq!(exit_status(&ExitStatus::from_raw(libc::SIGKILL)), 137);
        // Core dumped: the signal still decides.
        assert_eq!(
            exit_status(&ExitStatus::from_raw(libc::SIGSEGV | 0x80)),
            139
        );
    }

    fn wait_end(child: &Child) -> ExitStatus {
        loop {
            // A blocking wait: these tests' commands end by themselves.
            let mut status = 0;
            // SAFETY: status is a valid int.
            let rc = unsafe { libc::waitpid(child.pid as i32, &mut status, 0) };
            assert_eq!(rc, child.pid as i32, "{}", io::Error::last_os_error());
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return ExitStatus::from_raw(status);
            }
        }
    }

    /// Held: the process exists in its own group and has not run the command (its comm is
    /// still ours, its file not written); released, it runs and its status is its own.
    #[test]
    fn held_until_released() {
        let dir = crate::testutil::TempDir::new("run-child");
        let marker = dir.path().join("ran");
        let script = format!("echo ran > {}; exit 3", marker.display());
        let mut child =
            Child::start_held(&["/bin/sh".into(), "-c".into(), script.into()]).expect("start");
        assert!(!marker.exists());
        let stat = crate::host::proc::read_stat(std::path::Path::new("/proc"), child.pid)
            .expect("the held child exists");
        assert_ne!(stat.comm, "sh", "it has not exec'd");
        // SAFETY: getpgid only reads.
        assert_eq!(unsafe { libc::getpgid(child.pid as i32) }, child.pid as i32);
        child.release().expect("exec");
        let status = wait_end(&child);
        assert_eq!(exit_status(&status), 3);
        assert!(marker.exists());
    }

    #[test]
    fn a_missing_program_is_127_and_a_directory_126() {
        let mut child = Child::start_held(&["/nonexistent/cm-no-such".into()]).expect("start");
        let (e, status) = child.release().expect_err("no such file");
        assert_eq!(status, 127, "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let mut child = Child::start_held(&["/".into()]).expect("start");
        let (e, status) = child.release().expect_err("a directory");
        assert_eq!(status, 126, "{e}");
    }

    #[test]
    fn no_command_is_an_error() {
        let e = Child::start_held(&[]).err().expect("refused").to_string();
        assert!(e.contains("no command given"), "{e}");
    }
}

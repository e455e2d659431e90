//! Plain-language explanations of exit statuses and signals: what `claude-monitor explain ARG`
//! prints, and the short phrases the exit-report writer embeds in its one-line sentences.
//!
//! Pure functions over static tables, no I/O. Signal names and numbers come from
//! [`crate::signals::names`]; this module only adds the human side (what the signal means, who usually
//! sends it, what to do about it).

use std::fmt;

use serde::Serialize;

pub use crate::event::DefaultAction;
use crate::signals::names::{SIGRTMAX, SIGRTMIN, signal_name, signal_number};

/// A readable explanation of one exit status or signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// One line, e.g. `exit status 137 = 128 + 9: killed by SIGKILL`.
    pub title: String,
    /// One or two plain sentences.
    pub meaning: String,
    /// The usual reasons, most likely first.
    pub common_causes: Vec<String>,
    /// Concrete next steps.
    pub what_to_do: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        writeln!(f)?;
        writeln!(f, "  {}", self.meaning)?;
        if !self.common_causes.is_empty() {
            writeln!(f)?;
            writeln!(f, "Common causes:")?;
            for c in &self.common_causes {
                writeln!(f, "  - {c}")?;
            }
        }
        if !self.what_to_do.is_empty() {
            writeln!(f)?;
            writeln!(f, "What to do:")?;
            for w in &self.what_to_do {
                writeln!(f, "  - {w}")?;
            }
        }
        Ok(())
    }
}

impl DefaultAction {
    #[cfg(test)]
    /// Whether a process that does not handle the signal dies from it.
    pub fn kills(self) -> bool {
        matches!(self, DefaultAction::Terminate | DefaultAction::Core)
    }
}

impl DefaultAction {
    /// The action in words, for explanations.
    pub fn describe(self) -> &'static str {
        match self {
            DefaultAction::Terminate => "terminate the process",
            DefaultAction::Core => "terminate the process and dump core",
            DefaultAction::Ignore => "ignore it (it never kills a process by itself)",
            DefaultAction::Stop => "stop (pause) the process until SIGCONT",
            DefaultAction::Continue => "resume the process if it was stopped",
        }
    }
}

/// The default action of a signal, `None` for a number that is not a Linux signal.
pub fn default_action(sig: i32) -> Option<DefaultAction> {
    match sig {
        1..=31 => Some(info(sig)?.action),
        SIGRTMIN..=SIGRTMAX => Some(DefaultAction::Terminate),
        _ => None,
    }
}

/// A short phrase for a signal that fits inside a sentence, e.g.
/// `"segmentation fault: invalid memory access"` for 11.
pub fn signal_short(sig: i32) -> &'static str {
    match sig {
        1..=31 => info(sig).map_or("unknown signal", |i| i.short),
        SIGRTMIN..=SIGRTMAX => "real-time signal: its meaning is defined by the application",
        _ => "not a Linux signal number",
    }
}

/// The human side of one standard signal.
struct SignalInfo {
    short: &'static str,
    action: DefaultAction,
    meaning: &'static str,
    causes: &'static [&'static str],
    what_to_do: &'static [&'static str],
}

fn info(sig: i32) -> Option<&'static SignalInfo> {
    usize::try_from(sig)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| SIGNAL_INFO.get(i))
}

const CORE_TIP: &str = "look for a core dump and get a backtrace: `coredumpctl list`, then `coredumpctl gdb PID` (or check /proc/sys/kernel/core_pattern)";

/// Signals 1..=31, index = number - 1. Default actions as in signal(7).
static SIGNAL_INFO: [SignalInfo; 31] = [
    // 1 SIGHUP
    SignalInfo {
        short: "hangup: the controlling terminal or session went away",
        action: DefaultAction::Terminate,
        meaning: "The terminal or SSH session the process belonged to was closed, so the kernel (or the session's shell) sent it a hangup. Daemons also use SIGHUP as a conventional \"reload your configuration\" request.",
        causes: &[
            "the terminal window or tab was closed",
            "the SSH connection dropped or timed out",
            "the login shell exited and the kernel hung up its foreground process group",
            "`kill -HUP` sent to ask a daemon to reload, to a program that does not handle it",
        ],
        what_to_do: &[
            "run long jobs inside `tmux` or `screen`, or detach them with `nohup` or `systemd-run --user`",
            "if SSH drops, set `ServerAliveInterval` on the client or `ClientAliveInterval` on the server",
        ],
    },
    // 2 SIGINT
    SignalInfo {
        short: "interrupt: Ctrl+C at the terminal",
        action: DefaultAction::Terminate,
        meaning: "An interrupt request, almost always Ctrl+C: the terminal sends SIGINT to every process in the foreground process group.",
        causes: &[
            "Ctrl+C pressed in the terminal",
            "a parent, IDE or supervisor forwarding a stop request",
            "`kill -INT PID`",
        ],
        what_to_do: &[
            "usually intentional; if not, check which job was in the foreground when Ctrl+C was pressed (every process of that group gets it)",
        ],
    },
    // 3 SIGQUIT
    SignalInfo {
        short: "quit: Ctrl+\\ at the terminal, with a core dump",
        action: DefaultAction::Core,
        meaning: "A request to quit and dump core, normally Ctrl+\\ in the terminal. Java and Go programs print all thread stacks on it (Go then exits, the JVM keeps running).",
        causes: &[
            "Ctrl+\\ pressed in the terminal",
            "`kill -QUIT PID` sent to get a stack dump",
        ],
        what_to_do: &["check the program's output for a stack dump", CORE_TIP],
    },
    // 4 SIGILL
    SignalInfo {
        short: "illegal instruction: the CPU refused to run the code",
        action: DefaultAction::Core,
        meaning: "The CPU was asked to execute an instruction that is invalid or that this CPU does not support, and the kernel killed the process.",
        causes: &[
            "a binary built for a newer CPU (AVX2, AVX-512, `-march=native`) run on an older CPU or in a VM that hides CPU features",
            "a deliberate trap: compilers emit `ud2` for code that must be unreachable, some abort paths use it",
            "memory corruption that made the program jump into data",
            "a corrupted binary or shared library on disk",
        ],
        what_to_do: &[
            "`dmesg` or `journalctl -k` shows a `trap invalid opcode` line with the faulting address and library",
            "compare the build's target CPU features with the `flags` line of /proc/cpuinfo",
            "reinstall the program or library",
            CORE_TIP,
        ],
    },
    // 5 SIGTRAP
    SignalInfo {
        short: "trace/breakpoint trap",
        action: DefaultAction::Core,
        meaning: "A breakpoint or trace trap fired and no debugger was attached to catch it.",
        causes: &[
            "a breakpoint compiled into the program (`int3`, `__builtin_debugtrap`, some runtimes' fatal-error checks)",
            "a debugger or tracer that detached while a breakpoint was still set",
        ],
        what_to_do: &[
            "run the program under a debugger (`gdb --args ...`) to see where it stops",
            CORE_TIP,
        ],
    },
    // 6 SIGABRT
    SignalInfo {
        short: "aborted: the program gave up on itself (abort(), failed assertion)",
        action: DefaultAction::Core,
        meaning: "The program called `abort()` because it found an internal error it could not recover from. The reason is almost always in the last lines it printed to stderr.",
        causes: &[
            "a failed `assert()` or internal consistency check",
            "the C library found heap corruption (`double free or corruption`, `free(): invalid pointer`)",
            "an uncaught C++ exception (`terminate called after throwing ...`)",
            "Node.js/V8 fatal error, e.g. `JavaScript heap out of memory` (exit status 134)",
            "a Rust panic in a program built with `panic = \"abort\"`, or a panic during a panic",
        ],
        what_to_do: &[
            "read the last lines the program wrote to stderr: the reason is usually there",
            "for `JavaScript heap out of memory`, raise `--max-old-space-size` (NODE_OPTIONS) or find what grows",
            CORE_TIP,
        ],
    },
    // 7 SIGBUS
    SignalInfo {
        short: "bus error: memory that is mapped but cannot be accessed",
        action: DefaultAction::Core,
        meaning: "The kernel killed the process because it touched memory that is mapped but cannot be backed: typically a memory-mapped file that shrank under it, or a full tmpfs behind a shared-memory mapping.",
        causes: &[
            "a memory-mapped file was truncated or replaced while mapped",
            "/dev/shm or another tmpfs backing a mapping ran out of space",
            "a hardware memory error (machine check)",
            "a misaligned access on a strict-alignment CPU",
        ],
        what_to_do: &[
            "check free space on tmpfs mounts: `df -h /dev/shm /tmp /run`",
            "check whether another process rewrote a file this one had mapped (build caches, databases)",
            "look for machine-check errors in `journalctl -k`",
        ],
    },
    // 8 SIGFPE
    SignalInfo {
        short: "arithmetic exception: e.g. integer division by zero",
        action: DefaultAction::Core,
        meaning: "The CPU raised an arithmetic exception and the kernel killed the process. Despite the name it is almost always an integer division by zero, not a floating-point problem.",
        causes: &[
            "integer division or remainder by zero",
            "integer overflow in a division (`INT_MIN / -1`)",
        ],
        what_to_do: &[
            "`journalctl -k` shows a `trap divide error` line with the faulting address",
            "find the division in a backtrace and check its inputs",
            CORE_TIP,
        ],
    },
    // 9 SIGKILL
    SignalInfo {
        short: "killed: SIGKILL cannot be caught (OOM killer, kill -9, a supervisor)",
        action: DefaultAction::Terminate,
        meaning: "The process was killed outright. SIGKILL cannot be caught, blocked or ignored, so the program could not clean up or log anything. The kernel's OOM killer uses it, as do `kill -9`, service managers whose stop timeout expired, and container runtimes.",
        causes: &[
            "the kernel OOM killer: the machine, or a cgroup/container memory limit (`MemoryMax`, `docker --memory`), ran out of memory",
            "a userspace OOM daemon (systemd-oomd, earlyoom) under memory pressure",
            "`kill -9` or `pkill -9` by a user or a script",
            "a supervisor escalating after SIGTERM was not obeyed in time (systemd `TimeoutStopSec`, `docker stop`, Kubernetes grace period)",
            "the hard CPU time limit (`ulimit -t`, RLIMIT_CPU) was reached",
        ],
        what_to_do: &[
            "check the kernel log for the OOM killer: `journalctl -k | grep -i -e 'out of memory' -e 'killed process'`",
            "check the memory limit and OOM count of the cgroup: `memory.max` and `memory.events` under /sys/fs/cgroup",
            "if systemd-oomd runs: `journalctl -u systemd-oomd`",
            "claude-monitor's exit report names the sender of the signal (the kernel for OOM kills, otherwise the sending process)",
        ],
    },
    // 10 SIGUSR1
    SignalInfo {
        short: "user-defined signal 1",
        action: DefaultAction::Terminate,
        meaning: "An application-defined signal: it means whatever the program agreed with its sender. A program that does not handle it dies.",
        causes: &[
            "a script or tool sent it expecting the program to handle it (reopen logs, dump status)",
            "Node.js handles SIGUSR1 by starting its inspector, so Node itself does not die from it",
        ],
        what_to_do: &["find out who sent it and what they expected the program to do"],
    },
    // 11 SIGSEGV
    SignalInfo {
        short: "segmentation fault: invalid memory access",
        action: DefaultAction::Core,
        meaning: "The process accessed memory it is not allowed to (a null or dangling pointer, a buffer overrun, or a stack overflow), and the kernel killed it.",
        causes: &[
            "a null pointer dereference or use-after-free in native code (C, C++, unsafe Rust, native Node.js/Python modules)",
            "a stack overflow from deep or infinite recursion",
            "a native addon or shared library built for a different version (ABI mismatch after an upgrade)",
            "faulty RAM (if crashes are random across unrelated programs)",
        ],
        what_to_do: &[
            "`journalctl -k | grep segfault` shows the faulting address and the library it happened in",
            "for Node.js native addons, rebuild them for the current Node version (`npm rebuild`)",
            CORE_TIP,
        ],
    },
    // 12 SIGUSR2
    SignalInfo {
        short: "user-defined signal 2",
        action: DefaultAction::Terminate,
        meaning: "An application-defined signal: it means whatever the program agreed with its sender. A program that does not handle it dies.",
        causes: &[
            "a script or tool sent it expecting the program to handle it (e.g. nodemon uses SIGUSR2 to restart its child)",
        ],
        what_to_do: &["find out who sent it and what they expected the program to do"],
    },
    // 13 SIGPIPE
    SignalInfo {
        short: "broken pipe: wrote to a pipe or socket nobody reads any more",
        action: DefaultAction::Terminate,
        meaning: "The process wrote to a pipe or socket whose reading end was closed. This is normal in pipelines such as `producer | head`: the producer is stopped as soon as `head` has read enough.",
        causes: &[
            "the next command in a pipeline exited early (`| head`, `| grep -q`, `| less` quit)",
            "the reading process crashed or was killed first",
            "the peer of a socket disconnected",
        ],
        what_to_do: &["harmless in pipelines; otherwise find out why the reader went away first"],
    },
    // 14 SIGALRM
    SignalInfo {
        short: "alarm clock: a timer set with alarm() expired",
        action: DefaultAction::Terminate,
        meaning: "A timer the program (or a wrapper) set with `alarm()` or `setitimer(ITIMER_REAL)` expired and nothing handled the signal: a timeout fired.",
        causes: &["a timeout implemented with alarm() in the program or a wrapper script"],
        what_to_do: &[
            "the program hit a timeout: find out what it was waiting for (network, lock, child process)",
        ],
    },
    // 15 SIGTERM
    SignalInfo {
        short: "terminated: a polite request to stop",
        action: DefaultAction::Terminate,
        meaning: "Something asked the process to terminate. SIGTERM is what `kill` sends by default and what service managers send first; a program may catch it to clean up.",
        causes: &[
            "`kill PID`, `pkill` or `killall` (SIGTERM is their default)",
            "systemd stopping or restarting a service, or the machine shutting down",
            "a container runtime stopping the container (`docker stop`, pod deletion)",
            "a parent process or `timeout` ending its child",
        ],
        what_to_do: &[
            "find the sender: claude-monitor's exit report names it",
            "check for a shutdown or service restart at that time: `journalctl --since ...`, `last -x`",
        ],
    },
    // 16 SIGSTKFLT
    SignalInfo {
        short: "coprocessor stack fault (unused on Linux)",
        action: DefaultAction::Terminate,
        meaning: "Defined for historical reasons but never sent by the Linux kernel. A process that died from it received it from another program on purpose.",
        causes: &[
            "a program sent it explicitly (`kill -STKFLT`), sometimes by mistake for another number",
        ],
        what_to_do: &["find the sender"],
    },
    // 17 SIGCHLD
    SignalInfo {
        short: "child process stopped or exited",
        action: DefaultAction::Ignore,
        meaning: "Sent by the kernel to a parent when one of its children exits, stops or continues, so the parent can reap it. Ignored by default: it never kills a process.",
        causes: &["a child process exited, stopped or continued"],
        what_to_do: &["nothing: this is normal bookkeeping"],
    },
    // 18 SIGCONT
    SignalInfo {
        short: "continue: resume a stopped process",
        action: DefaultAction::Continue,
        meaning: "Resumes a process that was stopped by SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU. It never terminates anything.",
        causes: &[
            "`fg` or `bg` in a shell",
            "`kill -CONT PID`",
            "a debugger resuming the program",
        ],
        what_to_do: &["nothing: this is normal job control"],
    },
    // 19 SIGSTOP
    SignalInfo {
        short: "stopped: paused, cannot be caught",
        action: DefaultAction::Stop,
        meaning: "Pauses the process until it gets SIGCONT. Like SIGKILL it cannot be caught or ignored. The process is frozen, not dead.",
        causes: &[
            "`kill -STOP PID`",
            "a debugger or tracer stopping the program",
        ],
        what_to_do: &[
            "`ps -o pid,stat,cmd -p PID` shows state `T` for a stopped process",
            "`kill -CONT PID` resumes it",
        ],
    },
    // 20 SIGTSTP
    SignalInfo {
        short: "terminal stop: Ctrl+Z",
        action: DefaultAction::Stop,
        meaning: "Someone pressed Ctrl+Z: the terminal paused the foreground job. The process is suspended, not dead.",
        causes: &["Ctrl+Z pressed in the terminal", "`kill -TSTP PID`"],
        what_to_do: &[
            "`jobs` lists suspended jobs; `fg` resumes in the foreground, `bg` in the background",
        ],
    },
    // 21 SIGTTIN
    SignalInfo {
        short: "background process tried to read from the terminal",
        action: DefaultAction::Stop,
        meaning: "A process in a background job tried to read from its terminal, so the terminal driver stopped it until it is brought to the foreground.",
        causes: &[
            "a command started with `&` that asks for input (a password or confirmation prompt)",
        ],
        what_to_do: &[
            "bring it to the foreground with `fg`, or give it input from a file or `</dev/null`",
        ],
    },
    // 22 SIGTTOU
    SignalInfo {
        short: "background process tried to write to or configure the terminal",
        action: DefaultAction::Stop,
        meaning: "A process in a background job tried to change terminal settings (or to write while `stty tostop` is set), so the terminal driver stopped it.",
        causes: &["a background job that changes terminal modes (editors, pagers, progress bars)"],
        what_to_do: &[
            "bring it to the foreground with `fg`, or redirect its output away from the terminal",
        ],
    },
    // 23 SIGURG
    SignalInfo {
        short: "urgent data on a socket",
        action: DefaultAction::Ignore,
        meaning: "Out-of-band data arrived on a socket. Ignored by default; the Go runtime also uses it internally to preempt goroutines, so Go programs receive it constantly.",
        causes: &[
            "the Go runtime preempting goroutines",
            "out-of-band TCP data",
        ],
        what_to_do: &["nothing: it never kills a process"],
    },
    // 24 SIGXCPU
    SignalInfo {
        short: "CPU time limit exceeded",
        action: DefaultAction::Core,
        meaning: "The process used more CPU time than its soft limit (RLIMIT_CPU) allows. If it keeps running up to the hard limit, the kernel sends SIGKILL.",
        causes: &["`ulimit -t`, `LimitCPU=` in a systemd unit, or a batch system's CPU limit"],
        what_to_do: &[
            "check the limit: `cat /proc/PID/limits` (\"Max cpu time\")",
            "raise the limit or make the job shorter",
        ],
    },
    // 25 SIGXFSZ
    SignalInfo {
        short: "file size limit exceeded",
        action: DefaultAction::Core,
        meaning: "The process tried to make a file larger than its file-size limit (RLIMIT_FSIZE) allows.",
        causes: &["`ulimit -f` or `LimitFSIZE=` set too low for the files the program writes"],
        what_to_do: &[
            "check the limit: `cat /proc/PID/limits` (\"Max file size\")",
            "raise the limit",
        ],
    },
    // 26 SIGVTALRM
    SignalInfo {
        short: "virtual timer expired",
        action: DefaultAction::Terminate,
        meaning: "A timer counting the process's own CPU time (`setitimer(ITIMER_VIRTUAL)`) expired and nothing handled it.",
        causes: &["a CPU-time timeout or sampler set up by the program or a library"],
        what_to_do: &["find which library arms ITIMER_VIRTUAL; usually a bug in signal handling"],
    },
    // 27 SIGPROF
    SignalInfo {
        short: "profiling timer expired",
        action: DefaultAction::Terminate,
        meaning: "A profiling timer (`setitimer(ITIMER_PROF)`) expired and nothing handled it, usually a profiler left armed after its handler was removed.",
        causes: &[
            "a sampling profiler (gperftools, pprof) active while its handler is missing, e.g. across `exec`",
        ],
        what_to_do: &["disable the profiler or make sure its handler stays installed"],
    },
    // 28 SIGWINCH
    SignalInfo {
        short: "terminal window size changed",
        action: DefaultAction::Ignore,
        meaning: "The terminal window was resized. Ignored by default; full-screen programs handle it to redraw.",
        causes: &["the terminal window was resized"],
        what_to_do: &["nothing: it never kills a process"],
    },
    // 29 SIGIO
    SignalInfo {
        short: "I/O possible on a file descriptor (SIGPOLL)",
        action: DefaultAction::Terminate,
        meaning: "A file descriptor set up for signal-driven I/O (`O_ASYNC`) became ready, and nothing handled the signal.",
        causes: &["a program enabled `O_ASYNC` on a descriptor without installing a handler"],
        what_to_do: &["usually a bug in the program's signal setup"],
    },
    // 30 SIGPWR
    SignalInfo {
        short: "power failure imminent",
        action: DefaultAction::Terminate,
        meaning: "A power-failure warning, sent by UPS daemons to init. Container managers (LXC, some runtimes) also send it to a container's init to request a clean shutdown.",
        causes: &[
            "a UPS daemon reporting power loss",
            "a container being shut down",
        ],
        what_to_do: &["check the UPS and the container manager's logs"],
    },
    // 31 SIGSYS
    SignalInfo {
        short: "bad system call: usually a seccomp sandbox blocked a syscall",
        action: DefaultAction::Core,
        meaning: "The kernel killed the process for making a system call it is not allowed to make: almost always a seccomp filter (container runtime, systemd `SystemCallFilter=`, browser or app sandbox) blocked it.",
        causes: &[
            "a seccomp filter blocked a system call (containers, systemd sandboxing, sandboxed tools)",
            "a binary built for a newer kernel calling a syscall this one does not know",
        ],
        what_to_do: &[
            "the audit log names the syscall: `journalctl -k | grep -i seccomp` (type=1326 lines, `syscall=N`)",
            "allow the syscall in the container's seccomp profile or the unit's `SystemCallFilter=`",
        ],
    },
];

/// Explains a Linux signal number: 1..=31 individually, the real-time range generically, and
/// anything else as "not a signal".
pub fn signal(sig: i32) -> Explanation {
    let Some(name) = signal_name(sig) else {
        return not_a_signal(sig);
    };
    if let Some(i) = info(sig) {
        let meaning = format!("{} Default action: {}.", i.meaning, i.action.describe());
        return Explanation {
            title: format!("{name} (signal {sig}): {}", i.short),
            meaning,
            common_causes: strings(i.causes),
            what_to_do: strings(i.what_to_do),
        };
    }
    // Real-time signals: no fixed meaning, default action terminate.
    let glibc_note = if sig < SIGRTMIN + 2 {
        " glibc reserves this one for its threading internals (thread cancellation, set*id across threads), so an ordinary program should never receive it."
    } else {
        ""
    };
    Explanation {
        title: format!(
            "{name} (signal {sig}): real-time signal, meaning defined by the application"
        ),
        meaning: format!(
            "Real-time signals {SIGRTMIN}..={SIGRTMAX} have no fixed meaning: programs agree on their use among themselves. Unlike standard signals, several can be queued.{glibc_note} Default action: {}.",
            DefaultAction::Terminate
        ),
        common_causes: strings(&[
            "a program sent it on purpose to this one (timers, inter-process notification)",
            "a library's timer or notification set up with `SIGEV_SIGNAL` and no handler",
        ]),
        what_to_do: strings(&[
            "find the sender (claude-monitor's exit report names it) and what it expected",
        ]),
    }
}

fn not_a_signal(sig: i32) -> Explanation {
    let meaning = if sig == 0 {
        "Signal 0 is not a signal: `kill -0 PID` sends nothing and only checks whether the process exists and may be signalled.".to_owned()
    } else {
        format!(
            "{sig} is not a Linux signal number: standard signals are 1..=31 and real-time signals {SIGRTMIN}..={SIGRTMAX}."
        )
    };
    Explanation {
        title: format!("signal {sig}: not a Linux signal"),
        meaning,
        common_causes: Vec::new(),
        what_to_do: strings(&["`kill -l` lists the signals this system knows"]),
    }
}

/// sysexits.h: a convention some programs follow (mail tools, BSD utilities, Python's
/// `os.EX_*`). Index = code - 64.
const SYSEXITS: [(&str, &str); 15] = [
    (
        "EX_USAGE",
        "the command was used incorrectly (wrong arguments or options)",
    ),
    ("EX_DATAERR", "the input data was incorrect"),
    (
        "EX_NOINPUT",
        "an input file did not exist or was not readable",
    ),
    ("EX_NOUSER", "the user named does not exist"),
    ("EX_NOHOST", "the host named does not exist"),
    (
        "EX_UNAVAILABLE",
        "a service or resource it needs is unavailable",
    ),
    ("EX_SOFTWARE", "internal software error"),
    (
        "EX_OSERR",
        "operating system error (e.g. cannot fork or create a pipe)",
    ),
    ("EX_OSFILE", "a system file is missing or broken"),
    ("EX_CANTCREAT", "an output file could not be created"),
    ("EX_IOERR", "an error occurred while reading or writing"),
    ("EX_TEMPFAIL", "temporary failure: retrying later may work"),
    ("EX_PROTOCOL", "the remote side violated the protocol"),
    ("EX_NOPERM", "permission denied"),
    ("EX_CONFIG", "configuration error"),
];

/// Explains an exit status as a shell (`$?`) or a parent's `wait()` reports it, following every
/// convention in common use, and saying honestly when a value only means something to the
/// program that chose it.
pub fn exit_code(code: u8) -> Explanation {
    match code {
        0 => Explanation {
            title: "exit status 0: success".to_owned(),
            meaning: "The program finished and reported success.".to_owned(),
            common_causes: Vec::new(),
            what_to_do: strings(&[
                "nothing; if the program still misbehaved, it did not report the problem through its exit status",
            ]),
        },
        1 => Explanation {
            title: "exit status 1: general error".to_owned(),
            meaning: "The program reported a failure without being more specific. Most programs use 1 for \"something went wrong\"; the details are in what it printed.".to_owned(),
            common_causes: strings(&[
                "any error the program detected and reported (bad input, failed request, test failure)",
                "an uncaught exception in Node.js or Python",
                "not always an error: `grep` returns 1 when nothing matched, `diff` when the files differ, `test`/`[` when the condition is false",
            ]),
            what_to_do: strings(&[
                "read the program's stderr: the reason is there",
                "re-run with verbose or debug output enabled",
            ]),
        },
        2 => Explanation {
            title: "exit status 2: misuse of a shell builtin or bad usage".to_owned(),
            meaning: "By convention the command was called incorrectly: bash returns 2 for misuse of a builtin or a syntax error, and many tools (argparse, getopt-based programs) return 2 for invalid options or arguments.".to_owned(),
            common_causes: strings(&[
                "an unknown option or a missing argument",
                "a shell syntax error in a script (`bash -c` with a typo)",
                "for `grep`, `diff` and `cmp`: an actual error such as an unreadable file (1 only means \"no match\" / \"differ\")",
            ]),
            what_to_do: strings(&[
                "check the command line against the program's `--help`",
                "read stderr for the usage message",
            ]),
        },
        64..=78 => sysexit(code),
        124 => program_specific(
            code,
            "GNU `timeout` returns 124 when the command timed out (and it sent SIGTERM), so 124 usually means \"took too long\".",
        ),
        125 => program_specific(
            code,
            "`timeout`, `docker run` and `git bisect run` use 125 for a failure of the wrapper itself rather than of the command it ran.",
        ),
        126 => Explanation {
            title: "exit status 126: command found but not executable".to_owned(),
            meaning: "The shell found the command but could not execute it.".to_owned(),
            common_causes: strings(&[
                "the file lacks execute permission (`chmod +x` missing)",
                "the file is a directory, or the filesystem is mounted `noexec`",
                "a binary for another architecture, or a script whose `#!` interpreter line is broken",
            ]),
            what_to_do: strings(&[
                "`ls -l` the file and check its permissions",
                "`file PATH` shows what it is; `head -1 PATH` shows the interpreter line of a script",
                "`findmnt -T PATH` shows whether its filesystem is mounted noexec",
            ]),
        },
        127 => Explanation {
            title: "exit status 127: command not found".to_owned(),
            meaning: "The shell could not find the command: it is not installed, not in PATH, or misspelled.".to_owned(),
            common_causes: strings(&[
                "the program is not installed, or is installed in a directory not in PATH",
                "a typo in the command name",
                "a script's `#!` interpreter does not exist (e.g. `/usr/bin/env: 'node': No such file or directory`)",
                "a missing shared library loader for a binary (it may say \"No such file or directory\" for a file that exists)",
            ]),
            what_to_do: strings(&[
                "`command -v NAME` and `echo $PATH`",
                "install the missing program, or call it by its full path",
            ]),
        },
        128 => Explanation {
            title: "exit status 128: invalid argument to exit".to_owned(),
            meaning: "A shell reports 128 when `exit` was given an invalid argument; some programs (e.g. git for fatal errors) also return 128 themselves.".to_owned(),
            common_causes: strings(&[
                "a script called `exit` with a non-numeric or out-of-range value",
                "`git` reporting a fatal error (for example, not a git repository)",
            ]),
            what_to_do: strings(&["read the program's stderr"]),
        },
        129..=192 => by_signal(code),
        255 => Explanation {
            title: "exit status 255: exit status out of range, or ssh connection error".to_owned(),
            meaning: "255 is what a parent sees when a program called `exit(-1)` (only the low 8 bits of the status survive). `ssh` also returns 255 when the connection itself failed, as opposed to the remote command.".to_owned(),
            common_causes: strings(&[
                "the program exited with -1 or another out-of-range value",
                "`ssh` could not connect or authenticate",
                "some programs use 255 for a fatal error",
            ]),
            what_to_do: strings(&[
                "read stderr; for ssh, re-run with `ssh -v` to see the connection error",
            ]),
        },
        _ => program_specific(code, ""),
    }
}

/// `128 + n`: what a shell reports for a child killed (or, for stop signals, stopped) by
/// signal n.
fn by_signal(code: u8) -> Explanation {
    let sig = i32::from(code) - 128;
    let sig_exp = signal(sig);
    let name = signal_name(sig).unwrap_or_else(|| format!("signal {sig}"));
    let action = default_action(sig).unwrap_or(DefaultAction::Terminate);
    let (title_tail, how, ordinary_causes) = match action {
        DefaultAction::Stop => (
            format!("stopped by {name}"),
            "A shell reports 128 + N for a job that was stopped (paused, not dead) by signal N.",
            true,
        ),
        DefaultAction::Ignore | DefaultAction::Continue => (
            format!("would be {name}, which never kills; probably program-specific"),
            "A shell reports 128 + N for a command killed by signal N, but this signal does not kill a process by default, so the program more likely chose this exit status itself.",
            false,
        ),
        DefaultAction::Terminate | DefaultAction::Core => (
            format!("killed by {name}"),
            "A shell (and tools that run commands through one, such as `make` or `npm run`) reports 128 + N when the command was killed by signal N.",
            true,
        ),
    };
    let own_exit = format!(
        "the program itself called exit({code}): the status alone cannot tell this apart from a signal (claude-monitor's exit reports can)"
    );
    let common_causes = if ordinary_causes {
        let mut c = sig_exp.common_causes;
        c.push(format!("less often, {own_exit}"));
        c
    } else {
        vec![own_exit]
    };
    Explanation {
        title: format!("exit status {code} = 128 + {sig}: {title_tail}"),
        meaning: format!("{how} {name}: {}", sig_exp.meaning),
        common_causes,
        what_to_do: if ordinary_causes {
            sig_exp.what_to_do
        } else {
            strings(&[
                "read the program's stderr",
                "check its manual or source for the exit statuses it defines",
            ])
        },
    }
}

fn sysexit(code: u8) -> Explanation {
    let (name, what) = SYSEXITS[usize::from(code - 64)];
    Explanation {
        title: format!("exit status {code}: {name} (sysexits.h): {what}"),
        meaning: format!(
            "Programs that follow the sysexits.h convention use {code} ({name}) to mean: {what}. Not every program follows it, so check the program's documentation."
        ),
        common_causes: strings(&[what]),
        what_to_do: strings(&[
            "read the program's stderr",
            "check its manual for the exit statuses it defines",
        ]),
    }
}

fn program_specific(code: u8, note: &str) -> Explanation {
    let mut meaning = format!(
        "Exit status {code} has no general meaning: it means whatever the program that returned it defines."
    );
    if !note.is_empty() {
        meaning.push(' ');
        meaning.push_str(note);
    }
    Explanation {
        title: format!("exit status {code}: program-specific"),
        meaning,
        common_causes: strings(&["an error condition the program defines itself"]),
        what_to_do: strings(&[
            "read the program's stderr",
            "check its manual or source for the exit statuses it defines",
        ]),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Why a query for `claude-monitor explain` could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("nothing to explain; {ACCEPTED}")]
    Empty,
    #[error("{}", out_of_range_message(*.0))]
    ExitStatusOutOfRange(i64),
    #[error(
        "{0} is not a Linux signal number (standard signals are 1..=31, real-time signals 32..=64)"
    )]
    NotASignal(i64),
    #[error("cannot understand {0:?}; {ACCEPTED}")]
    Unrecognized(String),
}

const ACCEPTED: &str = "accepted forms: an exit status 0..=255 (`137`), a signal name with or without SIG in any case (`SIGSEGV`, `segv`, `Kill`), a real-time signal (`SIGRTMIN+3`, `SIGRTMAX-1`), or a signal number as `SIG11`, `signal:11` or `signal 11`";

fn out_of_range_message(value: i64) -> String {
    let mut msg = format!("{value} is not an exit status: exit statuses are 0..=255");
    let negated_signal = value
        .checked_neg()
        .and_then(|v| i32::try_from(v).ok())
        .and_then(|sig| Some((sig, signal_name(sig)?)));
    if let Some((sig, name)) = negated_signal.filter(|_| value < 0) {
        msg.push_str(&format!(
            " (a negative return code, as Python's subprocess reports it, means killed by signal {sig}: try `claude-monitor explain {name}`)"
        ));
    } else if value > 255 {
        msg.push_str(&format!(
            " (only the low 8 bits of exit({value}) reach the parent, which sees {})",
            value.rem_euclid(256)
        ));
    }
    msg
}

/// Parses what the user typed after `claude-monitor explain` and explains it: a bare number is
/// an exit status, anything else must name a signal.
pub fn explain(query: &str) -> Result<Explanation, ExplainError> {
    let q = query.trim();
    if q.is_empty() {
        return Err(ExplainError::Empty);
    }
    if let Some(n) = parse_int(q) {
        return u8::try_from(n)
            .map(exit_code)
            .map_err(|_| ExplainError::ExitStatusOutOfRange(n));
    }
    let lower = q.to_ascii_lowercase();
    // "signal:11", "signal=11", "signal 11"
    if let Some(rest) = lower.strip_prefix("signal") {
        let rest = rest.trim_start_matches([':', '=', ' ']);
        if let Some(n) = parse_int(rest) {
            return signal_by_number(n);
        }
        return Err(ExplainError::Unrecognized(q.to_owned()));
    }
    // "exit:137", "exit 137", "status 137"
    for prefix in ["exit", "status", "code"] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let rest = rest.trim_start_matches([':', '=', ' ']);
            if let Some(n) = parse_int(rest) {
                return u8::try_from(n)
                    .map(exit_code)
                    .map_err(|_| ExplainError::ExitStatusOutOfRange(n));
            }
        }
    }
    let upper = q.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    // "SIG11"
    if let Some(n) = parse_int(bare) {
        return signal_by_number(n);
    }
    // "SIGRTMAX", "SIGRTMAX-2" (names.rs covers SIGRTMIN+N).
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        let off = if rest.is_empty() {
            Some(0)
        } else {
            rest.strip_prefix('-').and_then(|r| r.parse::<i32>().ok())
        };
        return match off {
            Some(off) if (0..=SIGRTMAX - SIGRTMIN).contains(&off) => Ok(signal(SIGRTMAX - off)),
            _ => Err(ExplainError::Unrecognized(q.to_owned())),
        };
    }
    // Linux aliases for standard signals.
    let bare = match bare {
        "IOT" => "ABRT",
        "POLL" => "IO",
        "CLD" => "CHLD",
        other => other,
    };
    signal_number(bare)
        .map(signal)
        .ok_or_else(|| ExplainError::Unrecognized(q.to_owned()))
}

fn signal_by_number(n: i64) -> Result<Explanation, ExplainError> {
    i32::try_from(n)
        .ok()
        .filter(|&s| signal_name(s).is_some())
        .map(signal)
        .ok_or(ExplainError::NotASignal(n))
}

/// A decimal integer with an optional sign, nothing else (so "9abc" is not a number).
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;

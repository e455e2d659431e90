//! Names for signals, `si_code` values and signal-generation results, and wait-status
//! decoding. Pure functions, no I/O.

/// A decoded wait status (`task->exit_code` at exit, as `wait4` would return it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited normally with this code.
    Exited(u8),
    /// Terminated by this signal.
    Signaled { signal: u8, core_dumped: bool },
}

impl WaitStatus {
    pub fn decode(status: u32) -> WaitStatus {
        let sig = (status & 0x7f) as u8;
        if sig == 0 {
            WaitStatus::Exited(((status >> 8) & 0xff) as u8)
        } else {
            WaitStatus::Signaled {
                signal: sig,
                core_dumped: status & 0x80 != 0,
            }
        }
    }
}

/// The standard signals' names by number (index 0 is no signal).
pub const SIGNALS: [&str; 32] = [
    "",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// Kernel's SIGRTMIN (glibc reserves the first two and reports 34 as its own SIGRTMIN; the
/// kernel's numbering is what the tracepoints see).
pub const SIGRTMIN: i32 = 32;
pub const SIGRTMAX: i32 = 64;

/// Signal numbers the agent reasons about (x86-64 and every other Linux ABI but alpha,
/// mips, parisc and sparc, which the agent does not support).
pub const SIGILL: i32 = 4;
pub const SIGABRT: i32 = 6;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGSEGV: i32 = 11;

/// Signals that mean the process crashed when the kernel (or the process itself) raised
/// them.
pub const CRASH_SIGNALS: [i32; 5] = [SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGSEGV];

/// `si_code` of a signal the kernel sent on its own (`include/uapi/asm-generic/siginfo.h`).
pub const SI_KERNEL: i32 = 0x80;

/// `SIGTERM`, `SIGRTMIN+3`, ... or `None` for a number that is not a signal.
pub fn signal_name(sig: i32) -> Option<String> {
    match sig {
        1..=31 => Some(SIGNALS[sig as usize].to_owned()),
        SIGRTMIN => Some("SIGRTMIN".to_owned()),
        33..=SIGRTMAX => Some(format!("SIGRTMIN+{}", sig - SIGRTMIN)),
        _ => None,
    }
}

/// Signal number for a name (`TERM`, `SIGTERM`, `sigterm`, `SIGRTMIN+2`) or a number.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return signal_name(n).map(|_| n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(off) = full.strip_prefix("SIGRTMIN+") {
        let off: i32 = off.parse().ok()?;
        return (SIGRTMIN + off <= SIGRTMAX).then_some(SIGRTMIN + off);
    }
    if full == "SIGRTMIN" {
        return Some(SIGRTMIN);
    }
    SIGNALS
        .iter()
        .position(|s| *s == full)
        .filter(|&i| i > 0)
        .map(|i| i as i32)
}

/// Name of an `si_code` for signal `sig`: the generic codes (`SI_USER`, `SI_KERNEL`,
/// `SI_QUEUE`, `SI_TKILL`, ...) and the signal-specific positive ones (`CLD_EXITED`,
/// `SEGV_MAPERR`, ...). `None` for a value the kernel does not define.
pub fn si_code_name(sig: i32, code: i32) -> Option<&'static str> {
    let generic = match code {
        0 => Some("SI_USER"),
        SI_KERNEL => Some("SI_KERNEL"),
        -1 => Some("SI_QUEUE"),
        -2 => Some("SI_TIMER"),
        -3 => Some("SI_MESGQ"),
        -4 => Some("SI_ASYNCIO"),
        -5 => Some("SI_SIGIO"),
        -6 => Some("SI_TKILL"),
        -7 => Some("SI_DETHREAD"),
        -60 => Some("SI_ASYNCNL"),
        _ => None,
    };
    if generic.is_some() {
        return generic;
    }
    let table: &[&str] = match sig {
        4 => &[
            "ILL_ILLOPC",
            "ILL_ILLOPN",
            "ILL_ILLADR",
            "ILL_ILLTRP",
            "ILL_PRVOPC",
            "ILL_PRVREG",
            "ILL_COPROC",
            "ILL_BADSTK",
            "ILL_BADIADDR",
        ],
        5 => &[
            "TRAP_BRKPT",
            "TRAP_TRACE",
            "TRAP_BRANCH",
            "TRAP_HWBKPT",
            "TRAP_UNK",
            "TRAP_PERF",
        ],
        7 => &[
            "BUS_ADRALN",
            "BUS_ADRERR",
            "BUS_OBJERR",
            "BUS_MCEERR_AR",
            "BUS_MCEERR_AO",
        ],
        8 => &[
            "FPE_INTDIV",
            "FPE_INTOVF",
            "FPE_FLTDIV",
            "FPE_FLTOVF",
            "FPE_FLTUND",
            "FPE_FLTRES",
            "FPE_FLTINV",
            "FPE_FLTSUB",
            "FPE_FLTUNK",
            "FPE_CONDTRAP",
        ],
        11 => &[
            "SEGV_MAPERR",
            "SEGV_ACCERR",
            "SEGV_BNDERR",
            "SEGV_PKUERR",
            "SEGV_ACCADI",
            "SEGV_ADIDERR",
            "SEGV_ADIPERR",
            "SEGV_MTEAERR",
            "SEGV_MTESERR",
            "SEGV_CPERR",
        ],
        17 => &[
            "CLD_EXITED",
            "CLD_KILLED",
            "CLD_DUMPED",
            "CLD_TRAPPED",
            "CLD_STOPPED",
            "CLD_CONTINUED",
        ],
        29 => &[
            "POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP",
        ],
        31 => &["SYS_SECCOMP", "SYS_USER_DISPATCH"],
        _ => &[],
    };
    usize::try_from(code)
        .ok()
        .and_then(|c| c.checked_sub(1))
        .and_then(|i| table.get(i).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        // exit(42): 42 << 8
        assert_eq!(WaitStatus::decode(42 << 8), WaitStatus::Exited(42));
        assert_eq!(WaitStatus::decode(0), WaitStatus::Exited(0));
        assert_eq!(WaitStatus::decode(255 << 8), WaitStatus::Exited(255));
        // killed by SIGTERM
        assert_eq!(
            WaitStatus::decode(15),
            WaitStatus::Signaled {
                signal: 15,
                core_dumped: false
            }
        );
        // SIGSEGV with core dump
        assert_eq!(
            WaitStatus::decode(11 | 0x80),
            WaitStatus::Signaled {
                signal: 11,
                core_dumped: true
            }
        );
        // SIGKILL
        assert_eq!(
            WaitStatus::decode(9),
            WaitStatus::Signaled {
                signal: 9,
                core_dumped: false
            }
        );
    }

    #[test]
    fn signal_names_round_trip() {
        for n in 1..=64 {
            let name = signal_name(n).expect("named");
            assert_eq!(signal_number(&name), Some(n), "{name}");
        }
        assert_eq!(signal_name(15).as_deref(), Some("SIGTERM"));
        assert_eq!(signal_name(9).as_deref(), Some("SIGKILL"));
        assert_eq!(signal_name(34).as_deref(), Some("SIGRTMIN+2"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(65), None);
        assert_eq!(signal_number("term"), Some(15));
        assert_eq!(signal_number("SIGSEGV"), Some(11));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGNOPE"), None);
    }

    #[test]
    fn si_code_names() {
        assert_eq!(si_code_name(15, 0), Some("SI_USER"));
        assert_eq!(si_code_name(9, 0x80), Some("SI_KERNEL"));
        assert_eq!(si_code_name(10, -1), Some("SI_QUEUE"));
        assert_eq!(si_code_name(15, -6), Some("SI_TKILL"));
        assert_eq!(si_code_name(17, 1), Some("CLD_EXITED"));
        assert_eq!(si_code_name(17, 2), Some("CLD_KILLED"));
        assert_eq!(si_code_name(11, 1), Some("SEGV_MAPERR"));
        assert_eq!(si_code_name(7, 2), Some("BUS_ADRERR"));
        assert_eq!(si_code_name(15, 1), None);
        assert_eq!(si_code_name(17, 99), None);
        assert_eq!(si_code_name(11, -99), None);
    }
}

//! Bench helper (`cargo xtask bench`, signal scenarios): signals between two processes,
//! this one (A) and a child it forks (B). Prints one line of `key=value` pairs for the
//! bench to match the tracer's `signal` records by sender and target.
//!
//! - `sigstorm pingpong N`: N `kill(SIGUSR1)` calls in all, alternating A→B, B→A. Both
//!   block SIGUSR1 and take it with `sigwait`, so each signal is delivered (never merged
//!   with a pending one) and the storm is as fast as two processes can hand a signal back
//!   and forth. Prints `a=PID b=PID a_to_b=N b_to_a=N secs=S`.
//! - `sigstorm flood N`: B installs a SIGUSR1 handler and waits; A makes N `kill(B,
//!   SIGUSR1)` calls as fast as it can, then SIGKILLs B. Most calls find the signal already
//!   pending: that is the point, every call is still a `signal_generate` event. Prints
//!   `sender=PID target=PID calls=N ok=N secs=S` (`ok`: calls that returned 0).
//!
//! SIGUSR1 and not SIGCHLD or another signal whose default action is to ignore: the agent
//! drops those in the kernel by default.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args.get(2).and_then(|a| a.parse::<u64>().ok());
    match (args.get(1).map(String::as_str), n) {
        (Some("pingpong"), Some(n)) => pingpong(n),
        (Some("flood"), Some(n)) => flood(n),
        _ => {
            eprintln!("usage: sigstorm pingpong N | sigstorm flood N");
            std::process::exit(2);
        }
    }
}

fn die(what: &str) -> ! {
    eprintln!("sigstorm: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}

fn usr1_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        set
    }
}

fn wait_usr1(set: &libc::sigset_t) {
    let mut sig = 0;
    // SAFETY: valid set and out-pointer.
    if unsafe { libc::sigwait(set, &mut sig) } != 0 {
        die("sigwait");
    }
}

fn send_usr1(pid: libc::pid_t) -> bool {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid, libc::SIGUSR1) == 0 }
}

fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

fn pingpong(n: u64) {
    let half = n / 2;
    let set = usr1_set();
    // Blocked before the fork, so B inherits the mask and no signal can arrive unblocked.
    // SAFETY: valid set; no old mask wanted.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        die("sigprocmask");
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // SAFETY: single-threaded process; the child only runs this function's loop.
    let child = unsafe { libc::fork() };
    if child < 0 {
        die("fork");
    }
    if child == 0 {
        for _ in 0..half {
            wait_usr1(&set);
            if !send_usr1(me) {
                die("kill A");
            }
        }
        std::process::exit(0);
    }
    let start = Instant::now();
    for _ in 0..half {
        if !send_usr1(child) {
            die("kill B");
        }
        wait_usr1(&set);
    }
    let secs = start.elapsed().as_secs_f64();
    let status = reap(child);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        eprintln!("sigstorm: B ended with wait status {status}");
        std::process::exit(1);
    }
    println!("a={me} b={child} a_to_b={half} b_to_a={half} secs={secs:.6}");
}

extern "C" fn on_usr1(_: libc::c_int) {}

fn flood(n: u64) {
    let mut fds = [0; 2];
    // SAFETY: valid array of two fds.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        die("pipe");
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // SAFETY: single-threaded process; the child only installs a handler and waits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        die("fork");
    }
    if child == 0 {
        // SAFETY: installing a handler that does nothing; then telling A we are ready.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            if libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) != 0 {
                die("sigaction");
            }
            let ready = 1u8;
            libc::write(fds[1], (&ready as *const u8).cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid buffer.
    if unsafe { libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) } != 1 {
        die("waiting for B");
    }
    let start = Instant::now();
    let mut ok = 0u64;
    for _ in 0..n {
        if send_usr1(child) {
            ok += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child, libc::SIGKILL) };
    reap(child);
    println!("sender={me} target={child} calls={n} ok={ok} secs={secs:.6}");
}

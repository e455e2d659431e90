//! Bench helper (`cargo xtask bench`, spawn storm): `spawner N PROGRAM PIDFILE`.
//!
//! Waits for a line on stdin, so that the bench can start a tracer that watches this
//! process (`trace --pid`) before anything happens; then N times fork + exec PROGRAM (no
//! arguments) and waits for it, one at a time; then writes the children's pids to PIDFILE,
//! one per line, so that the bench can match the tracer's exits by pid. The pids are
//! written at the end, not as they come, so that the storm itself does no I/O.
//!
//! Exits 0 when every child exited 0, 1 otherwise (after writing PIDFILE), 2 on bad
//! arguments, 3 when stdin ends before the line (nothing spawned).

use std::{ffi::CString, io::BufRead as _, io::Write as _};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(program), Some(pidfile)) = (
        args.get(1).and_then(|a| a.parse::<usize>().ok()),
        args.get(2),
        args.get(3),
    ) else {
        eprintln!("usage: spawner N PROGRAM PIDFILE");
        std::process::exit(2);
    };
    let Ok(path) = CString::new(program.as_str()) else {
        eprintln!("spawner: program path contains a NUL byte");
        std::process::exit(2);
    };
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];

    // EOF instead of a line: the bench gave up before the start; spawn nothing.
    let mut go = String::new();
    if !matches!(std::io::stdin().lock().read_line(&mut go), Ok(n) if n > 0) {
        std::process::exit(3);
    }

    let mut pids = Vec::with_capacity(n);
    let mut failures = 0usize;
    for _ in 0..n {
        // SAFETY: this process is single-threaded, so the child may do anything; it only
        // calls execve and _exit, both async-signal-safe, with pointers prepared above.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: argv and envp are NUL-terminated arrays of valid C strings.
            unsafe {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
        }
        if pid < 0 {
            eprintln!("spawner: fork failed: {}", std::io::Error::last_os_error());
            failures += 1;
            break;
        }
        let mut status = 0;
        // SAFETY: waiting for our own child, with a valid pointer for the status.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            failures += 1;
        }
        pids.push(pid);
    }

    let mut out = String::with_capacity(pids.len() * 8);
    for pid in &pids {
        out.push_str(&pid.to_string());
        out.push('\n');
    }
    let written = std::fs::File::create(pidfile).and_then(|mut f| f.write_all(out.as_bytes()));
    if let Err(err) = written {
        eprintln!("spawner: cannot write {pidfile}: {err}");
        std::process::exit(1);
    }
    if failures > 0 {
        eprintln!("spawner: {failures} of {n} children failed");
        std::process::exit(1);
    }
}

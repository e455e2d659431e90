//! Test helper: a process that signals its own threads, the way a language runtime does
//! (JavaScriptCore suspends its threads for garbage collection with SIGPWR via `tgkill`).
//!
//! - `threadsignal tgkill N`: installs a SIGPWR handler, starts a thread named `ts-worker`,
//!   and sends it SIGPWR with `tgkill` N times from the main thread, each after the handler
//!   has run for the previous one (so every signal is generated and delivered once). Prints
//!   `pid=P tid=T sent=N handled=N` and exits 0 from the main thread.
//! - `threadsignal threads K`: starts K-1 threads named `ts-worker` (K threads in all),
//!   prints `ready pid=P` once they all run, and waits to be killed.
//! - `threadsignal kill PID SIG`: sends SIG to PID with kill(2) from a thread named
//!   `ts-worker`, prints `pid=P tid=T` (the sending thread) and exits 0.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigpwr(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// A thread named `ts-worker` that sleeps forever; returns its tid.
fn worker() -> i32 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ts-worker".into())
        .spawn(move || {
            let _ = tx.send(gettid());
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        })
        .expect("spawn");
    rx.recv().expect("worker tid")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    match args.get(1).map(String::as_str) {
        Some("tgkill") => {
            // SAFETY: a zeroed sigaction with a handler that only touches an atomic.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigpwr as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&raw mut sa.sa_mask);
                assert_eq!(libc::sigaction(libc::SIGPWR, &sa, std::ptr::null_mut()), 0);
            }
            let tid = worker();
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            for i in 1..=n {
                // SAFETY: plain tgkill(2) to a thread of this process.
                let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGPWR) };
                assert_eq!(rc, 0, "tgkill: {}", std::io::Error::last_os_error());
                let deadline = Instant::now() + Duration::from_secs(10);
                while HANDLED.load(Ordering::SeqCst) < i {
                    assert!(Instant::now() < deadline, "signal {i} not handled");
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            println!(
                "pid={pid} tid={tid} sent={n} handled={}",
                HANDLED.load(Ordering::SeqCst)
            );
        }
        Some("threads") => {
            for _ in 1..n.max(1) {
                worker();
            }
            // SAFETY: getpid has no preconditions.
            println!("ready pid={}", unsafe { libc::getpid() });
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        Some("kill") => {
            let target: i32 = args.get(2).and_then(|a| a.parse().ok()).expect("PID");
            let sig: i32 = args.get(3).and_then(|a| a.parse().ok()).expect("SIG");
            let tid = std::thread::Builder::new()
                .name("ts-worker".into())
                .spawn(move || {
                    // SAFETY: plain kill(2).
                    let rc = unsafe { libc::kill(target, sig) };
                    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
                    gettid()
                })
                .expect("spawn")
                .join()
                .expect("kill thread");
            // SAFETY: getpid has no preconditions.
            println!("pid={} tid={tid}", unsafe { libc::getpid() });
        }
        _ => {
            eprintln!(
                "usage: threadsignal tgkill N | threadsignal threads K | threadsignal kill PID SIG"
            );
            std::process::exit(2);
        }
    }
}

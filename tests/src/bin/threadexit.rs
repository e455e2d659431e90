//! Test helper: a process with 4 threads in which a non-leader thread calls
//! `exit_group(CODE)` (first argument, default 7) while the others, leader included, sleep.
//! Threads are started 200 ms after the process; exit_group comes 50 ms after that. The
//! three threads it starts are named `te-worker` (the leader keeps the process's name).
//!
//! With a second argument `leader-first`, the leader leaves first (the `exit` syscall, which
//! ends only the calling thread) once the threads run, so the last thread out is always a
//! `te-worker` and the leader is a zombie when the group dies.

use std::time::Duration;

fn main() {
    let code: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let leader_first = std::env::args().nth(2).as_deref() == Some("leader-first");
    // The leader lives alone for 200 ms first, so the process is clearly older than any of
    // its other threads (the test checks the exit's duration is the process's).
    std::thread::sleep(Duration::from_millis(200));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let worker = || std::thread::Builder::new().name("te-worker".into());
    for _ in 0..2 {
        let tx = tx.clone();
        worker()
            .spawn(move || {
                let _ = tx.send(());
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            })
            .expect("spawn");
    }
    let _ = rx.recv();
    let _ = rx.recv();
    worker()
        .spawn(move || {
            if leader_first {
                // The leader's own exit first: wait until its thread is a zombie.
                let stat = format!("/proc/self/task/{}/stat", std::process::id());
                while !std::fs::read_to_string(&stat).map_or(true, |s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
                }) {
                    std::thread::yield_now();
                }
            }
            // SAFETY: exit_group ends the whole process; nothing runs after it.
            unsafe { libc::syscall(libc::SYS_exit_group, code) };
        })
        .expect("spawn");
    if leader_first {
        // SAFETY: the exit syscall ends only this thread; the others keep the process.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

//! Test helper: a process with 4 threads in which a non-leader thread calls
//! `exit_group(CODE)` (first argument, default 7) while the others, leader included, sleep.
//! Threads are started 200 ms after the process; exit_group comes 50 ms after that.

use std::time::Duration;

fn main() {
    let code: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    // The leader lives alone for 200 ms first, so the process is clearly older than any of
    // its other threads (the test checks the exit's duration is the process's).
    std::thread::sleep(Duration::from_millis(200));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    for _ in 0..2 {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(());
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        });
    }
    let _ = rx.recv();
    let _ = rx.recv();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: exit_group ends the whole process; nothing runs after it.
        unsafe { libc::syscall(libc::SYS_exit_group, code) };
    });
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

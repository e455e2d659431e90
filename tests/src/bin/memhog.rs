//! Test helper: waits for a line on stdin (so the test can move it into a memory cgroup
//! first), then allocates and touches `MIB` MiB (first argument, default 300) one MiB at a
//! time. Prints "survived" and exits 0 if it was not killed.

use std::io::{BufRead as _, Write as _};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for i in 0..mib {
        // Non-zero fill so every page is really backed.
        chunks.push(vec![(i % 251) as u8 + 1; 1 << 20]);
    }
    let total: usize = chunks.iter().map(|c| c[0] as usize).sum();
    println!("survived {total}");
    let _ = std::io::stdout().flush();
}

//! Test helper: touches `MIB` MiB (first argument, default 300), then runs the program given
//! as the remaining arguments (fork + exec, waited for) and exits with its exit code. The
//! child's `signal->maxrss` inherits this process's peak through exec; its own peak is small.

use std::process::Command;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let program = args.next().unwrap_or_else(|| "/bin/true".into());
    let rest: Vec<String> = args.collect();
    let big = vec![1u8; mib << 20];
    let status = Command::new(&program)
        .args(&rest)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // Keep the allocation alive (and touched) until the child is done.
    let sum: u64 = big.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    assert!(sum > 0);
    std::process::exit(status.code().unwrap_or(1));
}

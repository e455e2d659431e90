//! Which processes `--pid` follows: the roots, their descendants that already exist (found
//! in /proc at start-up), and every later child (added by the fork program in the kernel).

use std::{collections::HashMap, path::Path};

use crate::host::proc;

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("no process with pid {0} (nothing to watch)")]
    NoSuchProcess(u32),
    #[error("cannot list /proc")]
    Proc(#[source] std::io::Error),
}

pub use crate::host::proc::Stat as ProcStat;

/// Every process in /proc now (processes that vanish mid-scan are skipped).
pub fn proc_stats() -> Result<Vec<ProcStat>, ScopeError> {
    proc::all(Path::new(proc::PROC)).map_err(ScopeError::Proc)
}

/// `pid -> ppid` for every process in /proc.
pub fn parent_table() -> Result<HashMap<u32, u32>, ScopeError> {
    Ok(proc_stats()?.into_iter().map(|s| (s.pid, s.ppid)).collect())
}

/// The roots and all their descendants in `table`.
pub fn descendants(table: &HashMap<u32, u32>, roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in table {
        children.entry(ppid).or_default().push(pid);
    }
    // Linear in the table: a set for what was seen (a `Vec::contains` here made a host
    // with 100k processes take seconds).
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        out.push(pid);
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids.iter().copied());
        }
    }
    out
}

pub fn check_roots(roots: &[u32]) -> Result<(), ScopeError> {
    for &pid in roots {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(ScopeError::NoSuchProcess(pid));
        }
    }
    Ok(())
}

/// The real uid of a live (or zombie) process, from /proc.
pub fn proc_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_walk() {
        let table: HashMap<u32, u32> = [(10, 1), (11, 10), (12, 11), (13, 1), (14, 12)]
            .into_iter()
            .collect();
        let mut d = descendants(&table, &[10]);
        d.sort();
        assert_eq!(d, vec![10, 11, 12, 14]);
    }

    #[test]
    fn finds_our_own_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let me = std::process::id();
        let table = parent_table().expect("proc");
        let d = descendants(&table, &[me]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(d.contains(&child.id()), "{d:?}");
    }

    /// A chain and a wide tree of 100,000 processes: every one found once.
    #[test]
    fn a_big_table_is_walked_once() {
        let n = 100_000u32;
        let mut table: HashMap<u32, u32> = (2..n).map(|pid| (pid, pid - 1)).collect();
        table.extend((n..2 * n).map(|pid| (pid, 1)));
        let mut found = descendants(&table, &[1]);
        assert_eq!(found.len(), 2 * n as usize - 1);
        found.sort_unstable();
        found.dedup();
        assert_eq!(found.len(), 2 * n as usize - 1);
    }
}

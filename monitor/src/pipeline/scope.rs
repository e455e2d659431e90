//! Which processes `--pid` follows: the roots, their descendants that already exist (found
//! in /proc at start-up), and every later child (added by the fork program in the kernel).

use std::{collections::HashMap, fs};

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("no process with pid {0} (nothing to watch)")]
    NoSuchProcess(u32),
    #[error("cannot list /proc")]
    Proc(#[source] std::io::Error),
}

/// What the agent reads of a process in /proc/PID/stat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Start time, clock ticks since boot (field 22).
    pub start: u64,
}

/// Every process in /proc now (processes that vanish mid-scan are skipped).
pub fn proc_stats() -> Result<Vec<ProcStat>, ScopeError> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").map_err(ScopeError::Proc)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(stat) = parse_stat(pid, &stat) {
            out.push(stat);
        }
    }
    Ok(out)
}

/// `pid -> ppid` for every process in /proc.
pub fn parent_table() -> Result<HashMap<u32, u32>, ScopeError> {
    Ok(proc_stats()?.into_iter().map(|s| (s.pid, s.ppid)).collect())
}

/// Parses /proc/PID/stat; comm (field 2) may contain spaces and parentheses, so the other
/// fields are read after the last `)`.
pub fn parse_stat(pid: u32, stat: &str) -> Option<ProcStat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let ppid = rest.nth(1)?.parse().ok()?;
    // Field 22 overall: the 20th after the comm (the state is the 1st).
    let start = rest.nth(17)?.parse().ok()?;
    Some(ProcStat {
        pid,
        ppid,
        comm,
        start,
    })
}

/// The roots and all their descendants in `table`.
pub fn descendants(table: &HashMap<u32, u32>, roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if out.contains(&pid) {
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
    fn stat_with_awkward_comm() {
        let stat =
            "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 123 0 0 0 5 6 0 0 20 0 1 0 98765 1000 200";
        assert_eq!(
            parse_stat(4242, stat),
            Some(ProcStat {
                pid: 4242,
                ppid: 17,
                comm: "a (b) c".into(),
                start: 98765
            })
        );
        assert_eq!(parse_stat(1, "1 (systemd) S 0 1 1"), None, "truncated");
        assert_eq!(parse_stat(1, "garbage"), None);
        let me = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let parsed = parse_stat(std::process::id(), &me).expect("parse");
        assert_eq!(
            Some(parsed.start),
            crate::claude::registry::parse_start_ticks(&me)
        );
    }

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
}

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

/// `pid -> ppid` for every process in /proc (processes that vanish mid-scan are skipped).
pub fn parent_table() -> Result<HashMap<u32, u32>, ScopeError> {
    let mut table = HashMap::new();
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
        if let Some(ppid) = parse_ppid(&stat) {
            table.insert(pid, ppid);
        }
    }
    Ok(table)
}

/// Field 4 of /proc/PID/stat; comm (field 2) may contain spaces and parentheses, so parse
/// after the last `)`.
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_with_awkward_comm() {
        assert_eq!(parse_ppid("123 (a) b (c)) S 77 123 123 0 -1"), Some(77));
        assert_eq!(parse_ppid("1 (systemd) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
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

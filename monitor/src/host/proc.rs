//! The one reader of `/proc/PID/stat`: a process's name, parent and start time, with the
//! proc root as a parameter so tests can use a fake tree.
//!
//! comm (field 2) can hold spaces and parentheses (any user can name a process `a) b (c`),
//! so the fields after it are read after the *last* `)`.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// The real /proc.
pub const PROC: &str = "/proc";

/// What the agent reads of a process in /proc/PID/stat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Start time, clock ticks since boot (field 22): the second half of a proc_id.
    pub start: u64,
    /// It has exited and waits for its parent to reap it (state `Z`, or `X`).
    pub zombie: bool,
}

/// Parses the text of /proc/PID/stat (`None` when it is not one).
pub fn parse_stat(pid: u32, stat: &str) -> Option<Stat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    // After comm: state (field 3), ppid (4), ... starttime (22), the 20th.
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    let start = rest.nth(17)?.parse().ok()?;
    Some(Stat {
        pid,
        ppid,
        comm,
        start,
        zombie: matches!(state, "Z" | "X"),
    })
}

fn stat_path(proc_root: &Path, pid: u32) -> PathBuf {
    proc_root.join(pid.to_string()).join("stat")
}

/// The stat of process `pid` under `proc_root` (`NotFound` when there is no such process,
/// `InvalidData` when the file does not parse).
pub fn read_stat(proc_root: &Path, pid: u32) -> io::Result<Stat> {
    let path = stat_path(proc_root, pid);
    let text = fs::read_to_string(&path)?;
    parse_stat(pid, &text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not parse", path.display()),
        )
    })
}

/// Every process under `proc_root` now (processes that vanish mid-scan are skipped).
pub fn all(proc_root: &Path) -> io::Result<Vec<Stat>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = read_stat(proc_root, pid) {
            out.push(stat);
        }
    }
    Ok(out)
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
            Some(Stat {
                pid: 4242,
                ppid: 17,
                comm: "a (b) c".into(),
                start: 98765,
                zombie: false,
            })
        );
        let zombie = "4243 (sh) Z 17 4242 4242 0 -1 4194560 123 0 0 0 5 6 0 0 20 0 1 0 98766 0 0";
        assert_eq!(parse_stat(4243, zombie).map(|s| s.zombie), Some(true));
        let stat = "22606 (claude) S 1 22606 22606 34816 22606 4194560 5000 0 0 0 120 30 0 0 20 \
                    0 12 0 884213 1000000000 50000 18446744073709551615 1 1 0 0 0 0 0 16781312 \
                    134234626 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(22606, stat).map(|s| s.start), Some(884213));
        assert_eq!(parse_stat(1, "1 (systemd) S 0 1 1"), None, "truncated");
        assert_eq!(parse_stat(7, "7 (x) R 1 2 3"), None);
        assert_eq!(parse_stat(1, "garbage"), None);
    }

    #[test]
    fn live_processes() {
        let proc_root = Path::new(PROC);
        let me = read_stat(proc_root, std::process::id()).expect("own stat");
        let init = read_stat(proc_root, 1).expect("init stat");
        assert!(me.start >= init.start, "{me:?} < {init:?}");
        assert_eq!(
            read_stat(proc_root, u32::MAX)
                .expect_err("no such pid")
                .kind(),
            io::ErrorKind::NotFound
        );
        assert!(
            all(proc_root)
                .expect("list")
                .iter()
                .any(|s| s.pid == std::process::id())
        );
    }
}

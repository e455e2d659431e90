//! What `run` learns of its command's tree from the kernel's events: every process it
//! started, which died abnormally (each with its report, built when its exit is read, while
//! the sender most likely still runs and the memory cgroup still holds its figures), the
//! heaviest, the CPU used, which are still running, and the losses.
//!
//! Bounded: at most [`MAX_TRACKED`] processes are remembered (parent and name, for the
//! relation to the command), at most [`MAX_DEATHS`] abnormal deaths keep their report (the
//! rest are counted).

use std::collections::{HashMap, HashSet};

use crate::{
    event::{Body, CauseKind, Event},
    host::{cgroups::MemoryHierarchy, memcg},
    pipeline::{
        attribution::Attributor,
        output::{Output, OutputError},
    },
    report::{self, Reason, Report},
};

/// Processes of the tree remembered at once.
pub const MAX_TRACKED: usize = 65_536;
/// Abnormal deaths kept with their report.
pub const MAX_DEATHS: usize = 32;

/// One abnormal death in the tree.
pub struct Death {
    pub report: Report,
    /// Generations below the command (1: its child); `None` when the line is not known.
    pub depth: Option<u32>,
}

/// The tree of the command `root`.
pub struct Tree {
    root: u32,
    hierarchy: Option<MemoryHierarchy>,
    /// pid -> (parent pid, comm) of the tree's processes seen so far.
    parents: HashMap<u32, (u32, String)>,
    live: HashSet<u32>,
    /// Processes started: the command, then every fork in its tree.
    pub started: u64,
    /// The command's own exit, with its report.
    pub root_exit: Option<(Event, Report)>,
    pub deaths: Vec<Death>,
    /// Abnormal deaths, also those beyond [`MAX_DEATHS`].
    pub deaths_total: u64,
    /// Processes that exited by themselves with a non-zero status.
    pub nonzero_exits: u64,
    /// The exit with the largest peak RSS: (pid, comm, KiB).
    pub heaviest: Option<(u32, String, u64)>,
    /// User and system CPU time of every process that exited, ms.
    pub cpu_ms: (f64, f64),
    /// Records the kernel or the agent lost (`lost` events).
    pub lost: u64,
    /// Polling: each live process's start time, so that a reused pid is a new process.
    starts: HashMap<u32, u64>,
    /// Each live process's command line, from its exec (already redacted), for reports.
    argv: HashMap<u32, Vec<String>>,
}

impl Tree {
    pub fn new(root: u32, hierarchy: Option<MemoryHierarchy>) -> Tree {
        let mut tree = Tree {
            root,
            hierarchy,
            parents: HashMap::new(),
            live: HashSet::from([root]),
            started: 1,
            root_exit: None,
            deaths: Vec::new(),
            deaths_total: 0,
            nonzero_exits: 0,
            heaviest: None,
            cpu_ms: (0.0, 0.0),
            lost: 0,
            starts: HashMap::new(),
            argv: HashMap::new(),
        };
        tree.parents.insert(root, (0, String::new()));
        tree
    }

    /// The tree's processes seen alive and not seen exiting.
    pub fn live(&self) -> impl Iterator<Item = u32> + '_ {
        self.live.iter().copied()
    }

    /// Generations from the command down to `pid` (0 for the command).
    pub fn depth(&self, pid: u32) -> Option<u32> {
        let mut at = pid;
        for depth in 0..=64 {
            if at == self.root {
                return Some(depth);
            }
            at = self.parents.get(&at)?.0;
        }
        None
    }

    fn exit(&mut self, event: &Event) {
        let Body::Exit(exit) = &event.body else {
            return;
        };
        // Not this tree's (an orphan of an earlier run, or `run` itself).
        if !self.live.contains(&event.pid) && !self.parents.contains_key(&event.pid) {
            return;
        }
        self.live.remove(&event.pid);
        let argv = self.argv.remove(&event.pid);
        if let (Some(u), Some(s)) = (exit.usage.utime_ms, exit.usage.stime_ms) {
            self.cpu_ms.0 += u;
            self.cpu_ms.1 += s;
        }
        if let Some(peak) = exit.usage.own_peak_rss_kb.or(exit.usage.peak_rss_kb)
            && self.heaviest.as_ref().is_none_or(|h| peak > h.2)
        {
            self.heaviest = Some((event.pid, event.comm.clone(), peak));
        }
        let is_root = event.pid == self.root;
        let abnormal = exit.cause.cause != CauseKind::Exited
            && exit.cause.cause != CauseKind::Unknown
            || exit.status.core_dumped;
        if !abnormal && exit.status.exit_code.is_some_and(|c| c != 0) && !is_root {
            self.nonzero_exits += 1;
        }
        if !is_root && !abnormal {
            return;
        }
        if !is_root {
            self.deaths_total += 1;
            if self.deaths.len() >= MAX_DEATHS {
                return;
            }
        }
        let reason = report::worth_reporting(event, true).unwrap_or(Reason::CommandEnded);
        let memcg = match (&self.hierarchy, &exit.memcg_path) {
            (Some(h), Some(path)) => memcg::chain(h, path),
            _ => Vec::new(),
        };
        let alive = if is_root {
            self.live
                .iter()
                .map(|&pid| {
                    let comm = self.parents.get(&pid).map(|p| p.1.clone());
                    (pid, comm.unwrap_or_default())
                })
                .collect()
        } else {
            Vec::new()
        };
        let ctx = report::Context {
            cmdline: argv,
            memcg,
            samples: Vec::new(),
            alive,
            complete: self.lost == 0,
            lost_nearby: self.lost,
        };
        let Some(report) = report::build(event, reason, ctx) else {
            return;
        };
        if is_root {
            self.root_exit = Some((event.clone(), report));
        } else {
            let depth = self.depth(event.pid);
            self.deaths.push(Death { report, depth });
        }
    }
}

/// Polling (no kernel programs): what /proc shows of the tree.
impl Tree {
    /// One scan of /proc: the command's descendants now are added (each new one counts as
    /// started), and processes seen before are kept while they run, also once reparented
    /// (an orphan is still the tree's); those gone, or whose pid now names another process,
    /// are dropped.
    pub fn observe(&mut self, stats: &[crate::host::proc::Stat]) {
        let by_pid: HashMap<u32, &crate::host::proc::Stat> =
            stats.iter().map(|s| (s.pid, s)).collect();
        let gone: Vec<u32> = self
            .live
            .iter()
            .copied()
            .filter(|pid| {
                by_pid
                    .get(pid)
                    .is_none_or(|s| self.starts.get(pid).is_some_and(|&st| st != s.start))
            })
            .collect();
        for pid in gone {
            self.live.remove(&pid);
            self.starts.remove(&pid);
        }
        let table: HashMap<u32, u32> = stats.iter().map(|s| (s.pid, s.ppid)).collect();
        let roots: Vec<u32> = self.live.iter().copied().collect();
        for pid in crate::pipeline::scope::descendants(&table, &roots) {
            let Some(stat) = by_pid.get(&pid) else {
                continue;
            };
            if self.starts.insert(pid, stat.start).is_none() && pid != self.root {
                self.started += 1;
                self.live.insert(pid);
                if self.parents.len() < MAX_TRACKED {
                    self.parents.insert(pid, (stat.ppid, stat.comm.clone()));
                }
            }
        }
    }

    /// Polling: a sample's biggest process, when bigger than the heaviest so far.
    pub fn observe_heaviest(&mut self, pid: u32, comm: &str, rss_kb: u64) {
        if self.heaviest.as_ref().is_none_or(|h| rss_kb > h.2) {
            self.heaviest = Some((pid, comm.to_owned(), rss_kb));
        }
    }
}

impl Tree {
    /// One event of the tree (from the kernel programs, or the daemon's stream).
    pub fn record(&mut self, event: &Event) {
        match &event.body {
            // `run`'s own fork of the command (the programs watch `run`), and forks outside
            // this tree (orphans of an earlier run of a supervised command).
            Body::Fork(f)
                if event.pid == self.root
                    || !(self.live.contains(&f.ppid) || self.parents.contains_key(&f.ppid)) => {}
            Body::Fork(f) => {
                self.started += 1;
                self.live.insert(event.pid);
                if self.parents.len() < MAX_TRACKED {
                    self.parents.insert(event.pid, (f.ppid, event.comm.clone()));
                }
            }
            Body::Exec(x) => {
                if let Some(p) = self.parents.get_mut(&event.pid) {
                    p.1.clone_from(&event.comm);
                    if let Some(argv) = &x.argv
                        && self.argv.len() < MAX_TRACKED
                    {
                        self.argv.insert(event.pid, argv.clone());
                    }
                }
            }
            Body::Exit(_) => self.exit(event),
            Body::Lost(l) => self.lost += l.count,
            _ => {}
        }
    }
}

impl Output for Tree {
    fn write(&mut self, event: &Event, _: &Attributor) -> Result<(), OutputError> {
        self.record(event);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

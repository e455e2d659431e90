//! The process table: every process the agent knows, identified by pid *and* start time so
//! that a reused pid is never confused with the process that had it before.
//!
//! It is fed by the kernel's fork/exec/exit records (in order, from the ring buffer) and by
//! a /proc scan at start-up for processes that existed before the agent. Each entry keeps
//! the parent it was *forked* from (not the current parent: an orphan reparented to init
//! or a subreaper stays attributed to the tree that started it) and the session it belongs
//! to, inherited at fork, so a child forked microseconds after its parent joined a session
//! is attributed without a race. Exited processes are kept for a while (bounded) so that
//! the ancestry of an orphan whose parent died first can still be told.

use std::collections::{HashMap, VecDeque};

use crate::event::{ANCESTRY_MAX, Ancestor, ToolCallRef};

use serde::Serialize;

/// Ticks per second of /proc's start times (`USER_HZ`, 100 on every Linux ABI).
pub const USER_HZ: u64 = 100;

/// Start time in clock ticks since boot (field 22 of /proc/PID/stat) from `start_boottime`
/// nanoseconds, as the kernel's `nsec_to_clock_t` computes it.
pub fn ns_to_ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / USER_HZ)
}

/// The start of a tick count (field 22 of /proc/PID/stat) in `start_boottime` nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ticks * (1_000_000_000 / USER_HZ)
}

/// A process identity: pid plus start time (clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    pub pid: u32,
    pub start: u64,
}

impl std::fmt::Display for ProcId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pid, self.start)
    }
}

impl Serialize for ProcId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What is known of a tool wrapper's shell script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WrapperScript {
    /// The whole script (from /proc, or captured whole at exec): matched by its command.
    Whole(String),
    /// Only the start of it: the kernel's capture was cut and the process was gone before
    /// /proc could be read (a tool of a few milliseconds). Matched by time: the one Bash
    /// call of the session in flight at its start that no other wrapper took.
    Cut,
}

/// Index of a session in the agent's session list.
pub type SessionIdx = usize;

#[derive(Clone, Debug)]
pub struct Proc {
    pub id: ProcId,
    /// The process it was forked from (when known).
    pub parent: Option<ProcId>,
    pub comm: String,
    /// Last exec'd file (when seen).
    pub filename: Option<String>,
    pub session: Option<SessionIdx>,
    /// This process is the root of its session.
    pub session_root: bool,
    /// `signal->maxrss` just after the last exec (KiB), a baseline for its own peak.
    pub exec_maxrss_kb: Option<u64>,
    /// The agent tool call this process runs for (set on the tool's wrapper, inherited).
    pub tool_call: Option<ToolCallRef>,
    /// A tool wrapper whose call was not found yet: its shell script, matched again on
    /// later events of its tree (the CLI writes the call to its transcript asynchronously).
    pub tool_script: Option<WrapperScript>,
    /// Matches of `tool_script` tried so far (bounded: a script that merely looks like a
    /// wrapper must not be retried forever).
    pub tool_attempts: u8,
    /// The command line of its last exec (when seen), for reports: /proc has nothing left
    /// once it exited.
    pub argv: Option<Vec<String>>,
    pub exited: bool,
    /// Live processes forked from this one (so that making it a session root looks for
    /// descendants only when it has some).
    pub live_children: u32,
}

/// How many exited processes are remembered for lineage.
const DEAD_KEPT: usize = 4096;

#[derive(Default)]
pub struct ProcTable {
    /// Live (and recently exited) processes by pid; a pid maps to its newest process.
    by_pid: HashMap<u32, Proc>,
    /// Exited processes by identity, for lineage after their pid was reused.
    dead: HashMap<ProcId, Proc>,
    dead_order: VecDeque<ProcId>,
}

impl ProcTable {
    pub fn new() -> ProcTable {
        ProcTable::default()
    }

    /// A process seen at start-up in /proc (parent by current ppid: the best there is).
    pub fn insert_existing(&mut self, id: ProcId, ppid: u32, comm: String) {
        let parent = self.by_pid.get(&ppid).map(|p| p.id);
        self.by_pid.insert(
            id.pid,
            Proc {
                id,
                parent,
                comm,
                filename: None,
                session: None,
                session_root: false,
                exec_maxrss_kb: None,
                tool_call: None,
                tool_script: None,
                tool_attempts: 0,
                argv: None,
                exited: false,
                live_children: 0,
            },
        );
    }

    /// Links parents after a /proc scan inserted processes in arbitrary order.
    pub fn link_existing(&mut self, ppids: &HashMap<u32, u32>) {
        let ids: HashMap<u32, ProcId> = self.by_pid.iter().map(|(&pid, p)| (pid, p.id)).collect();
        for (pid, proc) in &mut self.by_pid {
            if proc.parent.is_none()
                && let Some(ppid) = ppids.get(pid)
            {
                proc.parent = ids.get(ppid).copied();
            }
        }
        self.count_children();
    }

    /// Recounts every process's [`Proc::live_children`] (after a /proc scan).
    fn count_children(&mut self) {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for p in self.by_pid.values().filter(|p| !p.exited) {
            if let Some(parent) = p.parent
                && self.by_pid.get(&parent.pid).is_some_and(|q| q.id == parent)
            {
                *counts.entry(parent.pid).or_default() += 1;
            }
        }
        for (pid, p) in &mut self.by_pid {
            p.live_children = counts.get(pid).copied().unwrap_or(0);
        }
    }

    /// A new entry for `id`, forked from the live process `parent_pid` (whose session and
    /// tool call it inherits) when there is one.
    fn child_of(&self, id: ProcId, parent_pid: u32, comm: String) -> Proc {
        let parent = self.by_pid.get(&parent_pid).filter(|p| !p.exited);
        Proc {
            id,
            parent: parent.map(|p| p.id),
            comm,
            filename: None,
            session: parent.and_then(|p| p.session),
            session_root: false,
            exec_maxrss_kb: None,
            tool_call: parent.and_then(|p| p.tool_call.clone()),
            tool_script: None,
            tool_attempts: 0,
            argv: None,
            exited: false,
            live_children: 0,
        }
    }

    /// A fork: the child inherits its parent's session.
    pub fn fork(&mut self, child: ProcId, parent_pid: u32, comm: String) -> &Proc {
        let proc = self.child_of(child, parent_pid, comm);
        self.replace(proc)
    }

    /// Adds `delta` to the live children count of `parent`, when it is still the live
    /// process with that identity.
    fn adopt(&mut self, parent: Option<ProcId>, add: bool) {
        if let Some(id) = parent
            && let Some(p) = self
                .by_pid
                .get_mut(&id.pid)
                .filter(|p| p.id == id && !p.exited)
        {
            p.live_children = if add {
                p.live_children.saturating_add(1)
            } else {
                p.live_children.saturating_sub(1)
            };
        }
    }

    /// The number of processes known (live and remembered dead).
    pub fn len(&self) -> usize {
        self.by_pid.len() + self.dead.len()
    }

    /// The sessions that have a live process.
    pub fn live_sessions(&self) -> std::collections::HashSet<SessionIdx> {
        self.by_pid
            .values()
            .filter(|p| !p.exited)
            .filter_map(|p| p.session)
            .collect()
    }

    /// The processes the table thinks alive whose identity (pid and start) is not in
    /// `alive`, the processes in /proc now. Their exit record may be lost (ghosts) or
    /// still on its way: see [`ProcTable::reap`].
    pub fn missing_from(&self, alive: &std::collections::HashSet<ProcId>) -> Vec<ProcId> {
        self.by_pid
            .values()
            .filter(|p| !p.exited && !alive.contains(&p.id))
            .map(|p| p.id)
            .collect()
    }

    /// Marks exited those of `ids` the table still thinks alive; returns how many.
    pub fn reap(&mut self, ids: &[ProcId]) -> usize {
        ids.iter().filter(|&&id| self.exit(id).is_some()).count()
    }

    /// An exec: new name and file; an unknown process (forked before we looked) is added.
    pub fn exec(
        &mut self,
        id: ProcId,
        ppid: u32,
        comm: String,
        filename: String,
        maxrss_kb: Option<u64>,
    ) -> &mut Proc {
        let known = self
            .by_pid
            .get(&id.pid)
            .is_some_and(|p| p.id == id && !p.exited);
        if !known {
            let proc = self.child_of(id, ppid, comm.clone());
            self.replace(proc);
        }
        let proc = self.by_pid.get_mut(&id.pid).expect("inserted above");
        proc.comm = comm;
        proc.filename = Some(filename);
        proc.exec_maxrss_kb = maxrss_kb;
        proc
    }

    /// An exit: the process stays known (for lineage) until its pid is reused or it ages out.
    pub fn exit(&mut self, id: ProcId) -> Option<&Proc> {
        let proc = self
            .by_pid
            .get_mut(&id.pid)
            .filter(|p| p.id == id && !p.exited)?;
        proc.exited = true;
        let snapshot = proc.clone();
        self.adopt(snapshot.parent, false);
        self.remember_dead(snapshot);
        self.by_pid.get(&id.pid)
    }

    fn remember_dead(&mut self, proc: Proc) {
        if self.dead_order.len() == DEAD_KEPT
            && let Some(old) = self.dead_order.pop_front()
        {
            self.dead.remove(&old);
            if self.by_pid.get(&old.pid).is_some_and(|p| p.id == old) {
                self.by_pid.remove(&old.pid);
            }
        }
        self.dead_order.push_back(proc.id);
        self.dead.insert(proc.id, proc);
    }

    fn replace(&mut self, proc: Proc) -> &Proc {
        let pid = proc.id.pid;
        let parent = proc.parent;
        if let Some(old) = self.by_pid.insert(pid, proc)
            && !old.exited
        {
            // Its exit was never seen (the pid is reused): it no longer counts as a child.
            self.adopt(old.parent, false);
        }
        self.adopt(parent, true);
        &self.by_pid[&pid]
    }

    /// The live process with this pid, or the one that just exited with it.
    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.by_pid.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Proc> {
        self.by_pid.get_mut(&pid)
    }

    /// The live processes of a session (or of every session with `None`).
    pub fn live_members(&self, session: Option<SessionIdx>) -> Vec<&Proc> {
        self.by_pid
            .values()
            .filter(|p| {
                !p.exited && p.session.is_some() && (session.is_none() || p.session == session)
            })
            .collect()
    }

    /// A process by identity, live or remembered.
    pub fn by_id(&self, id: ProcId) -> Option<&Proc> {
        match self.by_pid.get(&id.pid) {
            Some(p) if p.id == id => Some(p),
            _ => self.dead.get(&id),
        }
    }

    /// Applies `f` to the process `id`, live or remembered (both copies of an exited one).
    pub fn update(&mut self, id: ProcId, f: impl Fn(&mut Proc)) {
        if let Some(p) = self.by_pid.get_mut(&id.pid).filter(|p| p.id == id) {
            f(p);
        }
        if let Some(p) = self.dead.get_mut(&id) {
            f(p);
        }
    }

    /// The chain from `pid` up to its session root (inclusive), or up to `ANCESTRY_MAX`
    /// entries when it has no session. Follows fork parents, so reparenting does not cut it.
    pub fn ancestry(&self, pid: u32) -> Vec<Ancestor> {
        // By reference: a `Proc` holds its argv (up to the whole /proc cmdline), which an
        // event's ancestry does not need copied.
        let mut out = Vec::new();
        let mut cur = self.get(pid);
        while let Some(p) = cur {
            out.push(Ancestor {
                pid: p.id.pid,
                comm: p.comm.clone(),
            });
            if p.session_root || out.len() >= ANCESTRY_MAX {
                break;
            }
            cur = p.parent.and_then(|id| self.by_id(id));
        }
        out
    }

    /// Makes `root`'s process a session root and attaches its known descendants (those
    /// that existed before the session was detected, e.g. when the agent started after it),
    /// including descendants that belonged to an enclosing session: a session started from
    /// another session's tool is a session of its own.
    pub fn set_session(&mut self, root: u32, session: SessionIdx) {
        let Some((root_id, kids)) = self.by_pid.get(&root).map(|p| (p.id, p.live_children)) else {
            return;
        };
        if kids == 0 {
            // The common case (a process that just exec'd has no children): no need to
            // look at the whole table.
            if let Some(p) = self.by_pid.get_mut(&root) {
                p.session = Some(session);
                p.session_root = true;
            }
            return;
        }
        let mut children: HashMap<ProcId, Vec<u32>> = HashMap::new();
        for (&pid, p) in &self.by_pid {
            if let Some(parent) = p.parent
                && !p.exited
            {
                children.entry(parent).or_default().push(pid);
            }
        }
        if let Some(p) = self.by_pid.get_mut(&root) {
            p.session = Some(session);
            p.session_root = true;
        }
        let mut stack = vec![root_id];
        let mut seen = 0usize;
        while let Some(id) = stack.pop() {
            seen += 1;
            if seen > self.by_pid.len() {
                break; // a cycle in bad data
            }
            for &pid in children.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(p) = self.by_pid.get_mut(&pid) {
                    p.session = Some(session);
                    p.session_root = false;
                    stack.push(p.id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pid: u32, start: u64) -> ProcId {
        ProcId { pid, start }
    }

    #[test]
    fn ticks_match_proc_stat() {
        assert_eq!(ns_to_ticks(12_345_678_901), 1234);
        assert_eq!(id(7, 99).to_string(), "7:99");
    }

    #[test]
    fn children_inherit_the_session_at_fork() {
        let mut t = ProcTable::new();
        t.insert_existing(id(100, 1), 1, "claude".into());
        t.set_session(100, 0);
        t.fork(id(101, 5), 100, "claude".into());
        t.exec(
            id(101, 5),
            100,
            "bash".into(),
            "/bin/bash".into(),
            Some(300_000),
        );
        t.fork(id(102, 6), 101, "bash".into());
        assert_eq!(t.get(102).and_then(|p| p.session), Some(0));
        let chain: Vec<u32> = t.ancestry(102).iter().map(|a| a.pid).collect();
        assert_eq!(chain, vec![102, 101, 100]);
        assert_eq!(t.get(101).and_then(|p| p.exec_maxrss_kb), Some(300_000));
    }

    #[test]
    fn orphans_keep_their_lineage_and_session() {
        let mut t = ProcTable::new();
        t.insert_existing(id(100, 1), 1, "claude".into());
        t.set_session(100, 3);
        t.fork(id(101, 5), 100, "bash".into());
        t.fork(id(102, 6), 101, "sleep".into());
        // The session root and the middle process die; 102 is reparented to init.
        t.exit(id(100, 1));
        t.exit(id(101, 5));
        assert_eq!(t.get(102).and_then(|p| p.session), Some(3));
        let chain: Vec<u32> = t.ancestry(102).iter().map(|a| a.pid).collect();
        assert_eq!(chain, vec![102, 101, 100]);
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let mut t = ProcTable::new();
        t.insert_existing(id(100, 1), 1, "claude".into());
        t.set_session(100, 0);
        t.fork(id(200, 5), 100, "tool".into());
        t.exit(id(200, 5));
        // pid 200 reused by an unrelated process forked from init.
        t.fork(id(200, 900), 1, "cron".into());
        assert_eq!(t.get(200).and_then(|p| p.session), None);
        // The exit of the old identity is not applied to the new process.
        assert!(t.exit(id(200, 5)).is_none());
        assert!(!t.get(200).expect("new").exited);
        // The old one is still known by identity.
        assert_eq!(t.by_id(id(200, 5)).map(|p| p.comm.as_str()), Some("tool"));
    }

    #[test]
    fn existing_descendants_join_a_session_found_later() {
        let mut t = ProcTable::new();
        t.insert_existing(id(300, 1), 1, "claude".into());
        t.insert_existing(id(302, 3), 301, "python3".into());
        t.insert_existing(id(301, 2), 300, "bash".into());
        t.link_existing(&HashMap::from([(300, 1), (301, 300), (302, 301)]));
        t.set_session(300, 1);
        assert_eq!(t.get(302).and_then(|p| p.session), Some(1));
        assert!(t.get(300).is_some_and(|p| p.session_root));
        // A session started inside it (from a tool) takes its own subtree.
        t.insert_existing(id(303, 4), 302, "claude".into());
        t.insert_existing(id(304, 5), 303, "bash".into());
        t.link_existing(&HashMap::from([(303, 302), (304, 303)]));
        t.set_session(303, 2);
        assert_eq!(t.get(304).and_then(|p| p.session), Some(2));
        assert_eq!(t.get(302).and_then(|p| p.session), Some(1));
        let chain: Vec<u32> = t.ancestry(304).iter().map(|a| a.pid).collect();
        assert_eq!(chain, vec![304, 303]);
    }

    #[test]
    fn remembered_dead_are_bounded() {
        let mut t = ProcTable::new();
        for pid in 0..(DEAD_KEPT as u32 + 10) {
            t.fork(id(10_000 + pid, 1), 1, "x".into());
            t.exit(id(10_000 + pid, 1));
        }
        assert!(t.dead.len() <= DEAD_KEPT);
        assert!(t.by_pid.len() <= DEAD_KEPT);
    }

    /// Live children are counted, so that making a process a session root looks at the
    /// whole table only when it has children (the count follows forks, exits and a pid
    /// reused without the exit seen).
    #[test]
    fn live_children_are_counted() {
        let mut t = ProcTable::new();
        t.insert_existing(id(100, 1), 1, "bash".into());
        t.insert_existing(id(101, 2), 100, "make".into());
        t.link_existing(&HashMap::from([(100, 1), (101, 100)]));
        let kids = |t: &ProcTable, pid| t.get(pid).map(|p| p.live_children);
        assert_eq!(kids(&t, 100), Some(1));
        t.fork(id(102, 3), 100, "bash".into());
        t.fork(id(103, 4), 101, "cc".into());
        assert_eq!((kids(&t, 100), kids(&t, 101)), (Some(2), Some(1)));
        t.exit(id(102, 3));
        t.exit(id(102, 3));
        assert_eq!(kids(&t, 100), Some(1), "a second exit counts once");
        // 103's exit lost and its pid reused by a child of 100.
        t.fork(id(103, 9), 100, "ld".into());
        assert_eq!((kids(&t, 100), kids(&t, 101)), (Some(2), Some(0)));
        // A session found on 101 (with children: it looks) and on 103 (none: it does not
        // need to, and the result is the same).
        t.fork(id(104, 10), 101, "as".into());
        t.set_session(101, 7);
        assert_eq!(t.get(104).and_then(|p| p.session), Some(7));
        t.set_session(103, 8);
        assert!(
            t.get(103)
                .is_some_and(|p| p.session_root && p.session == Some(8))
        );
    }

    #[test]
    fn ghosts_are_those_missing_from_proc() {
        let mut t = ProcTable::new();
        t.insert_existing(id(100, 1), 1, "bash".into());
        t.fork(id(101, 2), 100, "gone".into());
        t.fork(id(102, 3), 100, "here".into());
        let alive = std::collections::HashSet::from([id(100, 1), id(102, 3)]);
        let missing = t.missing_from(&alive);
        assert_eq!(missing, vec![id(101, 2)]);
        assert_eq!(t.reap(&missing), 1);
        assert_eq!(t.reap(&missing), 0, "already exited");
        assert!(t.get(101).is_some_and(|p| p.exited));
        assert_eq!(t.get(100).map(|p| p.live_children), Some(1));
    }
}

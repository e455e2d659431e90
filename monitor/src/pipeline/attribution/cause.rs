//! The cause of a death: signals noted at generation (with their sender) and delivery
//! (with the target's disposition), OOM victims, and the exit they explain.

use monitor_common::{DISPOSITION_HANDLER, Exit, Oom, Signal, SignalDeliver};

use crate::{
    event::{Cause, CauseKind, DefaultAction, KilledBy, OomCause},
    pipeline::convert::cstr,
    pipeline::proctable::{ProcId, SessionIdx},
    signals::names::{CRASH_SIGNALS, SI_KERNEL, WaitStatus},
};

use super::Attributor;

#[derive(Clone, Debug)]
pub(super) struct SignalNote {
    sig: i32,
    si_code: i32,
    sender: ProcIdOrPid,
    sender_comm: String,
    sender_uid: u32,
}

/// A terminating signal the target caught with a handler: the exit that follows is its
/// doing.
#[derive(Clone, Debug)]
pub(super) struct HandledNote {
    note: SignalNote,
    /// When it was delivered (boottime ns).
    at_ns: u64,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct ProcIdOrPid {
    pid: u32,
    id: Option<ProcId>,
    session: Option<SessionIdx>,
}

/// Bounds on the per-target notes kept between a signal and the exit it causes.
pub(super) const NOTES_PER_TARGET: usize = 4;

pub(super) const NOTE_TARGETS: usize = 8192;

/// How long after a handled terminating signal N an exit with code 128+N (the shell's
/// convention, which the Claude Code CLI follows) is still its consequence.
pub(super) const HANDLED_CONVENTIONAL_EXIT_NS: u64 = 60_000_000_000;

/// How long after a handled terminating signal an exit with any other code is.
pub(super) const HANDLED_ANY_EXIT_NS: u64 = 2_000_000_000;

impl Attributor {
    pub fn on_signal(&mut self, s: &Signal) {
        if self.signals.len() >= NOTE_TARGETS && !self.signals.contains_key(&s.header.pid) {
            // Targets that never exited (signals that did not kill): forget them all.
            self.signals.clear();
        }
        let sender = self.who(s.sender_pid);
        let notes = self.signals.entry(s.header.pid).or_default();
        if notes.len() == NOTES_PER_TARGET {
            notes.pop_front();
        }
        notes.push_back(SignalNote {
            sig: s.sig,
            si_code: s.si_code,
            sender,
            sender_comm: cstr(&s.sender_comm),
            sender_uid: s.sender_uid,
        });
    }

    /// A signal taken by its target: a terminating signal caught by a handler is remembered,
    /// so that the exit the handler makes is told as its consequence.
    pub fn on_deliver(&mut self, d: &SignalDeliver) {
        let pid = d.header.pid;
        if d.disposition != DISPOSITION_HANDLER || !terminates_by_default(d.sig) {
            return;
        }
        // The sender is the generation's (the delivery has none); one from the process
        // itself (raise, abort) is not a reason it ended.
        let Some(note) = self
            .signals
            .get(&pid)
            .and_then(|notes| notes.iter().rev().find(|n| n.sig == d.sig))
            .filter(|n| n.sender.pid != pid)
            .cloned()
        else {
            return;
        };
        if self.handled.len() >= NOTE_TARGETS && !self.handled.contains_key(&pid) {
            self.handled.clear();
        }
        self.handled.insert(
            pid,
            HandledNote {
                note,
                at_ns: d.header.ts_ns,
            },
        );
    }

    pub fn on_oom(&mut self, o: &Oom, anon_rss_kb: Option<u64>, total_vm_kb: Option<u64>) {
        if self.ooms.len() >= NOTE_TARGETS {
            self.ooms.clear();
        }
        self.ooms.insert(
            o.header.pid,
            OomCause {
                trigger_pid: o.trigger_pid,
                trigger_comm: cstr(&o.trigger_comm),
                anon_rss_kb,
                total_vm_kb,
                memcg_id: (o.memcg_id != 0).then_some(o.memcg_id),
            },
        );
    }

    pub(super) fn who(&self, pid: u32) -> ProcIdOrPid {
        let p = self.table.get(pid).filter(|p| !p.exited);
        ProcIdOrPid {
            pid,
            id: p.map(|p| p.id),
            session: p.and_then(|p| p.session),
        }
    }

    /// The cause of an exit (call before [`Attributor::on_exit_done`]).
    pub fn cause(&mut self, e: &Exit) -> Cause {
        let pid = e.header.pid;
        let notes = self.signals.remove(&pid).unwrap_or_default();
        let handled = self.handled.remove(&pid);
        let oom = self.ooms.remove(&pid);
        let victim_session = self.table.get(pid).and_then(|p| p.session);
        if e.flags & monitor_common::EXIT_FLAG_NO_STATUS != 0 {
            // No status, no guess: only an OOM kill is known without it.
            return match oom {
                Some(oom) => Cause {
                    cause: CauseKind::OomKilled,
                    killed_by: None,
                    oom: Some(oom),
                },
                None => Cause::only(CauseKind::Unknown),
            };
        }
        let signal = match WaitStatus::decode(e.exit_status) {
            WaitStatus::Exited(code) => {
                let after = |h: &HandledNote| e.header.ts_ns.saturating_sub(h.at_ns);
                return match handled {
                    Some(h)
                        if (i32::from(code) == 128 + h.note.sig
                            && after(&h) <= HANDLED_CONVENTIONAL_EXIT_NS)
                            || after(&h) <= HANDLED_ANY_EXIT_NS =>
                    {
                        Cause {
                            cause: CauseKind::Terminated,
                            killed_by: Some(self.killed_by(&h.note, victim_session, true)),
                            oom: None,
                        }
                    }
                    _ => Cause::only(CauseKind::Exited),
                };
            }
            WaitStatus::Signaled { signal, .. } => i32::from(signal),
        };
        if let Some(oom) = oom {
            return Cause {
                cause: CauseKind::OomKilled,
                killed_by: None,
                oom: Some(oom),
            };
        }
        // The last note of the signal that killed it.
        let note = notes.iter().rev().find(|n| n.sig == signal);
        let from_self = note.is_some_and(|n| n.sender.pid == pid);
        let from_kernel = note.is_some_and(|n| n.si_code > 0 || n.si_code == SI_KERNEL);
        if CRASH_SIGNALS.contains(&signal) && (note.is_none() || from_self || from_kernel) {
            return Cause::only(CauseKind::Crashed);
        }
        // A handler that re-raised the signal it caught (clean up, restore the default,
        // `raise`): the process that sent it first is the one that killed it.
        if let Some(h) = handled.filter(|h| h.note.sig == signal && (note.is_none() || from_self)) {
            return Cause {
                cause: CauseKind::Killed,
                killed_by: Some(self.killed_by(&h.note, victim_session, true)),
                oom: None,
            };
        }
        let Some(note) = note else {
            return Cause::only(CauseKind::Killed);
        };
        if note.si_code == SI_KERNEL {
            return Cause::only(CauseKind::KilledByKernel);
        }
        Cause {
            cause: CauseKind::Killed,
            killed_by: Some(self.killed_by(note, victim_session, false)),
            oom: None,
        }
    }

    pub(super) fn killed_by(
        &self,
        note: &SignalNote,
        victim: Option<SessionIdx>,
        handled: bool,
    ) -> KilledBy {
        KilledBy {
            pid: note.sender.pid,
            comm: note.sender_comm.clone(),
            uid: note.sender_uid,
            proc_id: note.sender.id.map(|id| id.to_string()),
            session_id: note.sender.session.map(|s| self.session_id(s)),
            same_session: victim.is_some() && note.sender.session == victim,
            signal: note.sig,
            si_code: note.si_code,
            handled,
        }
    }
}

/// Signals whose default action ends the process: caught by a handler, the exit that
/// follows is still their doing.
pub(super) fn terminates_by_default(sig: i32) -> bool {
    matches!(
        crate::signals::explain::default_action(sig),
        Some(DefaultAction::Terminate | DefaultAction::Core)
    )
}

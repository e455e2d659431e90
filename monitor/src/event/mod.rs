//! The JSON event stream, schema version 1 (documented in `docs/events.md`, JSON Schema in
//! `docs/events.schema.json`). Serialize-only types, separate from the kernel records; the
//! [`Converter`] turns a decoded record into an [`Event`].

use monitor_common::{OOM_FLAG_MEMORY, Record};
use serde::Serialize;

use crate::{
    host::cgroups::MemoryHierarchy,
    host::clock::Clock,
    pipeline::attribution::{Attr, Cause},
    signals::names::{WaitStatus, si_code_name, signal_name, signal_result_name},
};

pub const SCHEMA_VERSION: u32 = 1;

/// One line of the stream. Every record has `v`, `kind`, `ts`, `pid` and `comm`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub v: u32,
    pub kind: &'static str,
    pub ts: String,
    pub pid: u32,
    pub comm: String,
    #[serde(flatten)]
    pub body: Body,
    /// `proc_id`, `session`, `ancestry`: on every kernel event, absent on the agent's own.
    #[serde(flatten)]
    pub attr: Option<Attr>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Body {
    AgentStart(AgentStart),
    AgentStop(AgentStop),
    Exit(Exit),
    Signal(Signal),
    Oom(Oom),
    Fork(Fork),
    Exec(Exec),
    SignalDeliver(SignalDeliver),
    Lost(Lost),
}

/// A signal taken by its target, with the target's disposition at that moment.
#[derive(Debug, Clone, Serialize)]
pub struct SignalDeliver {
    pub tid: u32,
    /// Name of thread `tid` when it is not the process's main thread (`comm` is the
    /// process's name, its leader's); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
    pub signal: i32,
    pub signal_name: Option<String>,
    pub si_code: i32,
    pub si_code_name: Option<&'static str>,
    /// `default` (SIG_DFL), `ignored` (SIG_IGN), `handler`, or `unknown`.
    pub disposition: &'static str,
    /// The signal's default action: `terminate`, `core`, `stop`, `continue` or `ignore`.
    pub default_action: Option<&'static str>,
    /// What the delivery did: `handler` (the handler ran), `discarded` (ignored), or with the
    /// default disposition its default action.
    pub outcome: &'static str,
    pub sa_flags: u64,
    /// Deliveries this record stands for (more than 1 for an aggregate of a flood).
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentStart {
    pub version: String,
    pub kernel: String,
    pub scope: Scope,
    pub hooks: Vec<String>,
    pub hooks_unavailable: Vec<Unavailable>,
    pub ring_buffer_bytes: u32,
    /// The hierarchy `memcg_id`s refer to (`null` when no memory controller is mounted).
    pub memory_cgroup: Option<MemoryHierarchy>,
    /// Facts about how fields are read on this kernel (e.g. exit detection method).
    pub notes: Vec<String>,
    /// Signals whose default action is to be ignored (SIGCHLD, SIGURG, SIGWINCH) are
    /// dropped in the kernel unless this is true.
    pub ignored_signals_reported: bool,
    /// Runtime signals (a process's non-fatal signals to itself and their deliveries,
    /// every thread's SIGKILL delivery of a group exit but the leader's) are dropped in the
    /// kernel and counted (`agent_stop.filtered`) unless this is true.
    pub runtime_signals_reported: bool,
    /// Pinned kernel objects (the daemon); `null` when nothing is pinned.
    pub pin: Option<crate::kernel::loader::PinInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Scope {
    /// `all`, `pids`, `claude` or `session`.
    pub mode: &'static str,
    /// The roots given with `--pid` (empty otherwise).
    pub pids: Vec<u32>,
    /// The session given with `--session`.
    pub session: Option<String>,
    /// Processes followed at start: the roots and their descendants found in /proc.
    pub watched_at_start: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unavailable {
    pub hook: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentStop {
    /// Records written, this one excluded.
    pub events: u64,
    /// Records the kernel could not deliver, in total.
    pub lost: u64,
    pub reason: &'static str,
    /// Each kernel program's run count and run time, when the kernel's BPF statistics are
    /// on (`sysctl kernel.bpf_stats_enabled=1`); `null` otherwise.
    pub programs: Option<Vec<crate::kernel::loader::ProgramStats>>,
    /// Records the kernel did not write by design (runtime signals), counted there.
    pub filtered: Filtered,
}

/// Records not written because they are runtime noise (`agent_start.notes` says so; reported
/// with `--runtime-signals` / `watch.runtime_signals = "report"`), counted in the kernel
/// from `agent_start` to `agent_stop`. Each count is of the records of that kind not written.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Filtered {
    /// `signal`: signals a process sent itself (to any of its threads) that did not end it.
    pub self_signal: u64,
    /// `signal_deliver`: their deliveries, taken without ending the process.
    pub self_signal_deliver: u64,
    /// `signal_deliver`: the SIGKILL of a group exit taken by a thread other than the leader.
    pub group_kill_deliver: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exit {
    pub tid: u32,
    /// Name of the last thread out when it is not the process's main thread (`comm` is the
    /// process's name, its leader's); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
    pub ppid: u32,
    pub uid: u32,
    pub exit_code: Option<u8>,
    pub signal: Option<u8>,
    pub signal_name: Option<String>,
    pub core_dumped: bool,
    pub peak_rss_kb: u64,
    /// Peak RSS of the process's own (last) image, without what exec carried over from the
    /// parent's image; null when the kernel could not give it.
    pub own_peak_rss_kb: Option<u64>,
    pub utime_ms: f64,
    pub stime_ms: f64,
    pub duration_ms: f64,
    pub memcg_id: Option<u64>,
    /// Path of the memory cgroup inside its hierarchy, resolved by the agent.
    pub memcg_path: Option<String>,
    /// Why it ended: `cause`, `killed_by`, `oom`.
    #[serde(flatten)]
    pub cause: Cause,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    pub signal: i32,
    pub signal_name: Option<String>,
    pub si_code: i32,
    pub si_code_name: Option<&'static str>,
    pub result: &'static str,
    pub group: bool,
    /// Signals this record stands for: 1, or more for an aggregate of a flood (same
    /// sender, target and signal) counted in the kernel.
    pub count: u64,
    pub sender: Sender,
    pub target: Target,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sender {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub uid: u32,
    pub proc_id: Option<String>,
    /// The sender's session, when it belongs to one.
    pub session_id: Option<String>,
    /// Name of the sending thread `tid` when it is not the process's main thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub pid: u32,
    pub tid: u32,
    /// The process's name (its leader's).
    pub comm: String,
    /// Name of thread `tid` when it is not the process's main thread; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_comm: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Oom {
    pub victim: Victim,
    pub trigger: Trigger,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
    pub memcg_id: Option<u64>,
    pub memcg_path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Victim {
    pub pid: u32,
    pub comm: String,
    pub uid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fork {
    pub tid: u32,
    pub ppid: u32,
    pub parent_tid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exec {
    pub tid: u32,
    pub old_tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub filename: String,
    /// The start of argv as the kernel captured it at exec (the first
    /// [`monitor_common::ARGS_LEN`] bytes of the argument area); `None` when unreadable.
    pub argv: Option<Vec<String>>,
    /// `argv` was cut: its last element is a prefix of an argument, and later ones are missing.
    pub argv_truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lost {
    pub count: u64,
    /// `ring_buffer_full` (records dropped in the kernel), `watch_map_full` (processes that
    /// could not be followed in `--pid` mode) or `decode_error` (records this agent could
    /// not read).
    pub reason: &'static str,
}

fn action_name(a: crate::signals::explain::DefaultAction) -> &'static str {
    use crate::signals::explain::DefaultAction;
    match a {
        DefaultAction::Terminate => "terminate",
        DefaultAction::Core => "core",
        DefaultAction::Ignore => "ignore",
        DefaultAction::Stop => "stop",
        DefaultAction::Continue => "continue",
    }
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::AgentStart(_) => "agent_start",
            Body::AgentStop(_) => "agent_stop",
            Body::Exit(_) => "exit",
            Body::Signal(_) => "signal",
            Body::Oom(_) => "oom",
            Body::Fork(_) => "fork",
            Body::Exec(_) => "exec",
            Body::SignalDeliver(_) => "signal_deliver",
            Body::Lost(_) => "lost",
        }
    }
}

impl Event {
    pub fn new(ts: String, pid: u32, comm: String, body: Body) -> Event {
        Event {
            v: SCHEMA_VERSION,
            kind: body.kind(),
            ts,
            pid,
            comm,
            body,
            attr: None,
        }
    }
}

/// A NUL-terminated kernel string to text (lossy for non-UTF-8 bytes).
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A record's `thread_comm`: the thread's name when the thread is not the process's main
/// thread (the header's `comm` is then the leader's, the process's name).
fn thread_comm(h: &monitor_common::Header, thread_comm: &[u8]) -> Option<String> {
    (h.tid != h.pid).then(|| cstr(thread_comm))
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1_000.0).round() / 1_000.0
}

/// The page size in KiB.
pub fn page_kb() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).unwrap_or(4096) / 1024
}

/// Turns kernel records into events.
#[derive(Clone, Copy, Debug)]
pub struct Converter {
    pub clock: Clock,
    pub page_kb: u64,
}

impl Converter {
    pub fn new(clock: Clock) -> Converter {
        Converter {
            clock,
            page_kb: page_kb(),
        }
    }

    pub fn convert(&self, record: &Record) -> Event {
        match record {
            Record::Exit(e) => {
                let h = &e.header;
                let (exit_code, signal, core_dumped) = match WaitStatus::decode(e.exit_status) {
                    WaitStatus::Exited(code) => (Some(code), None, false),
                    WaitStatus::Signaled {
                        signal,
                        core_dumped,
                    } => (None, Some(signal), core_dumped),
                };
                self.event(
                    h.ts_ns,
                    h.pid,
                    &h.comm,
                    Body::Exit(Exit {
                        tid: h.tid,
                        thread_comm: thread_comm(h, &e.thread_comm),
                        ppid: e.ppid,
                        uid: e.uid,
                        exit_code,
                        signal,
                        signal_name: signal.and_then(|s| signal_name(i32::from(s))),
                        core_dumped,
                        peak_rss_kb: e.maxrss_pages * self.page_kb,
                        own_peak_rss_kb: (e.mm_peak_pages > 0)
                            .then_some(e.mm_peak_pages * self.page_kb),
                        utime_ms: ms(e.utime_ns),
                        stime_ms: ms(e.stime_ns),
                        duration_ms: ms(h.ts_ns.saturating_sub(e.start_boottime_ns)),
                        memcg_id: (e.memcg_id != 0).then_some(e.memcg_id),
                        memcg_path: None,
                        cause: Cause::only(if exit_code.is_some() {
                            "exited"
                        } else {
                            "killed"
                        }),
                    }),
                )
            }
            Record::Signal(s) => {
                let h = &s.header;
                self.event(
                    h.ts_ns,
                    h.pid,
                    &h.comm,
                    Body::Signal(Signal {
                        signal: s.sig,
                        signal_name: signal_name(s.sig),
                        si_code: s.si_code,
                        si_code_name: si_code_name(s.sig, s.si_code),
                        result: signal_result_name(s.result),
                        group: s.group != 0,
                        count: 1,
                        sender: Sender {
                            pid: s.sender_pid,
                            tid: s.sender_tid,
                            comm: cstr(&s.sender_comm),
                            uid: s.sender_uid,
                            proc_id: None,
                            session_id: None,
                            thread_comm: (s.sender_tid != s.sender_pid)
                                .then(|| cstr(&s.sender_thread_comm)),
                        },
                        target: Target {
                            pid: h.pid,
                            tid: h.tid,
                            comm: cstr(&h.comm),
                            thread_comm: thread_comm(h, &s.thread_comm),
                        },
                    }),
                )
            }
            Record::Oom(o) => {
                let h = &o.header;
                let mem = o.flags & OOM_FLAG_MEMORY != 0;
                let kb = |pages: u64| mem.then_some(pages * self.page_kb);
                self.event(
                    h.ts_ns,
                    h.pid,
                    &h.comm,
                    Body::Oom(Oom {
                        victim: Victim {
                            pid: h.pid,
                            comm: cstr(&h.comm),
                            uid: (o.uid != u32::MAX).then_some(o.uid),
                        },
                        trigger: Trigger {
                            pid: o.trigger_pid,
                            tid: o.trigger_tid,
                            comm: cstr(&o.trigger_comm),
                        },
                        total_vm_kb: kb(o.total_vm_pages),
                        anon_rss_kb: kb(o.anon_rss_pages),
                        file_rss_kb: kb(o.file_rss_pages),
                        shmem_rss_kb: kb(o.shmem_rss_pages),
                        pgtables_kb: mem.then_some(o.pgtables_bytes / 1024),
                        oom_score_adj: mem.then_some(o.oom_score_adj),
                        memcg_id: (o.memcg_id != 0).then_some(o.memcg_id),
                        memcg_path: None,
                    }),
                )
            }
            Record::Fork(f) => {
                let h = &f.header;
                self.event(
                    h.ts_ns,
                    h.pid,
                    &h.comm,
                    Body::Fork(Fork {
                        tid: h.tid,
                        ppid: f.parent_pid,
                        parent_tid: f.parent_tid,
                    }),
                )
            }
            Record::SignalDeliver(d) => self.deliver(d),
            Record::Exec(x) => {
                let h = &x.header;
                let (argv, argv_truncated) = match x.argv() {
                    Some(a) => (Some(a.argv), a.truncated),
                    None => (None, false),
                };
                self.event(
                    h.ts_ns,
                    h.pid,
                    &h.comm,
                    Body::Exec(Exec {
                        tid: h.tid,
                        old_tid: x.old_tid,
                        ppid: x.ppid,
                        uid: x.uid,
                        filename: cstr(&x.filename),
                        argv,
                        argv_truncated,
                    }),
                )
            }
        }
    }

    fn deliver(&self, d: &monitor_common::SignalDeliver) -> Event {
        use monitor_common::{DISPOSITION_DEFAULT, DISPOSITION_HANDLER, DISPOSITION_IGNORED};
        let h = &d.header;
        let default_action = crate::signals::explain::default_action(d.sig).map(action_name);
        let disposition = match d.disposition {
            DISPOSITION_DEFAULT => "default",
            DISPOSITION_IGNORED => "ignored",
            DISPOSITION_HANDLER => "handler",
            _ => "unknown",
        };
        let outcome = match disposition {
            "handler" => "handler",
            "ignored" => "discarded",
            "default" => default_action.unwrap_or("unknown"),
            _ => "unknown",
        };
        self.event(
            h.ts_ns,
            h.pid,
            &h.comm,
            Body::SignalDeliver(SignalDeliver {
                tid: h.tid,
                thread_comm: thread_comm(h, &d.thread_comm),
                signal: d.sig,
                signal_name: signal_name(d.sig),
                si_code: d.si_code,
                si_code_name: si_code_name(d.sig, d.si_code),
                disposition,
                default_action,
                outcome,
                sa_flags: d.sa_flags,
                count: 1,
            }),
        )
    }

    fn event(&self, ts_ns: u64, pid: u32, comm: &[u8], body: Body) -> Event {
        Event::new(self.clock.rfc3339(ts_ns), pid, cstr(comm), body)
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{ARGS_LEN, EXEC_FLAG_ARGS, FILENAME_LEN, Header, Kind, WIRE_VERSION};

    use super::*;

    fn exec(flags: u32, area: &[u8], args_len: u32) -> monitor_common::Exec {
        let mut args = [0; ARGS_LEN];
        args[..area.len()].copy_from_slice(area);
        let mut filename = [0; FILENAME_LEN];
        filename[..7].copy_from_slice(b"/bin/sh");
        monitor_common::Exec {
            header: Header {
                kind: Kind::Exec as u16,
                version: WIRE_VERSION,
                cpu: 0,
                ts_ns: 1_000,
                pid: 5,
                tid: 5,
                comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            },
            old_tid: 5,
            ppid: 1,
            uid: 0,
            flags,
            start_boottime_ns: 0,
            maxrss_pages: 0,
            args_len,
            _pad: 0,
            filename,
            args,
        }
    }

    fn json(x: monitor_common::Exec) -> serde_json::Value {
        let event = Converter::new(Clock::fixed(0)).convert(&Record::Exec(x));
        serde_json::to_value(&event).expect("serializes")
    }

    fn comm(name: &str) -> [u8; 16] {
        let mut c = [0; 16];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    fn exit_json(pid: u32, tid: u32) -> serde_json::Value {
        let record = Record::Exit(monitor_common::Exit {
            header: Header {
                kind: Kind::Exit as u16,
                version: WIRE_VERSION,
                cpu: 0,
                ts_ns: 2_000,
                pid,
                tid,
                comm: comm("claude"),
            },
            ppid: 1,
            uid: 0,
            exit_status: 0,
            flags: 0,
            maxrss_pages: 0,
            utime_ns: 0,
            stime_ns: 0,
            start_boottime_ns: 1_000,
            memcg_id: 0,
            mm_peak_pages: 0,
            thread_comm: comm(if tid == pid { "claude" } else { "HeapHelper" }),
        });
        let event = Converter::new(Clock::fixed(0)).convert(&record);
        serde_json::to_value(&event).expect("serializes")
    }

    /// The process's name in `comm`; the thread's in `thread_comm`, only for a thread
    /// other than the leader.
    #[test]
    fn exit_of_a_worker_thread_names_the_process_and_the_thread() {
        let v = exit_json(10, 12);
        assert_eq!(v["comm"], "claude");
        assert_eq!(v["tid"], 12);
        assert_eq!(v["thread_comm"], "HeapHelper");
        let v = exit_json(10, 10);
        assert_eq!(v["comm"], "claude");
        assert!(v.get("thread_comm").is_none(), "{v}");
    }

    #[test]
    fn signal_target_thread_comm() {
        let signal = |tid: u32| {
            let record = Record::Signal(monitor_common::Signal {
                header: Header {
                    kind: Kind::Signal as u16,
                    version: WIRE_VERSION,
                    cpu: 0,
                    ts_ns: 1,
                    pid: 10,
                    tid,
                    comm: comm("claude"),
                },
                sig: 30,
                si_code: -6,
                result: 0,
                group: 0,
                sender_pid: 10,
                sender_tid: 11,
                sender_uid: 0,
                _pad: 0,
                sender_comm: comm("claude"),
                sender_thread_comm: comm("JITWorker"),
                thread_comm: comm("HeapHelper"),
            });
            let event = Converter::new(Clock::fixed(0)).convert(&record);
            serde_json::to_value(&event).expect("serializes")
        };
        let v = signal(12);
        assert_eq!(v["comm"], "claude");
        assert_eq!(
            v["target"],
            serde_json::json!({"pid": 10, "tid": 12, "comm": "claude", "thread_comm": "HeapHelper"})
        );
        assert_eq!(v["sender"]["comm"], "claude");
        assert_eq!(v["sender"]["thread_comm"], "JITWorker");
        let v = signal(10);
        assert_eq!(
            v["target"],
            serde_json::json!({"pid": 10, "tid": 10, "comm": "claude"})
        );
    }

    #[test]
    fn exec_event_carries_the_captured_argv() {
        let v = json(exec(EXEC_FLAG_ARGS, b"sh\0-c\0exit 3\0", 13));
        assert_eq!(v["kind"], "exec");
        assert_eq!(v["filename"], "/bin/sh");
        assert_eq!(v["argv"], serde_json::json!(["sh", "-c", "exit 3"]));
        assert_eq!(v["argv_truncated"], false);

        let v = json(exec(EXEC_FLAG_ARGS, &[b'x'; ARGS_LEN], 1000));
        assert_eq!(v["argv"][0].as_str().map(str::len), Some(ARGS_LEN));
        assert_eq!(v["argv_truncated"], true);

        // Not captured: null, and present (every field always is).
        let v = json(exec(0, b"sh\0", 3));
        assert_eq!(v["argv"], serde_json::Value::Null);
        assert_eq!(v["argv_truncated"], false);
        assert!(v.as_object().is_some_and(|o| o.contains_key("argv")));
    }
}

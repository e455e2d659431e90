//! Kernel records to events: the one place wire values become schema values.

use monitor_common::{
    EXIT_FLAG_NO_MAXRSS, EXIT_FLAG_NO_STATUS, EXIT_FLAG_NO_TIMES, OOM_FLAG_MEMORY, Record,
};

use crate::{
    event::{
        Body, Cause, CauseKind, Disposition, Event, Exec, Exit, ExitStatus, Fork, Oom, Outcome,
        Sender, Signal, SignalDeliver, SignalResult, Target, Trigger, Usage, Victim,
    },
    host::{self, clock::Clock},
    pipeline::redact,
    signals::{
        explain::default_action,
        names::{WaitStatus, si_code_name, signal_name},
    },
};

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

/// Turns kernel records into events.
#[derive(Clone, Debug)]
pub struct Converter {
    pub clock: Clock,
    pub page_kb: u64,
    /// Applied to every exec's argv.
    pub redactor: redact::Redactor,
}

impl Converter {
    /// With the built-in redaction rules ([`Converter::with_redactor`] to change them).
    pub fn new(clock: Clock) -> Converter {
        Converter {
            clock,
            page_kb: host::page_kb(),
            redactor: redact::Redactor::default(),
        }
    }

    pub fn with_redactor(mut self, redactor: redact::Redactor) -> Converter {
        self.redactor = redactor;
        self
    }

    pub fn convert(&self, record: &Record) -> Event {
        match record {
            Record::Exit(e) => {
                let h = &e.header;
                let status_read = e.flags & EXIT_FLAG_NO_STATUS == 0;
                let (exit_code, signal, core_dumped) = match WaitStatus::decode(e.exit_status) {
                    _ if !status_read => (None, None, false),
                    WaitStatus::Exited(code) => (Some(code), None, false),
                    WaitStatus::Signaled {
                        signal,
                        core_dumped,
                    } => (None, Some(signal), core_dumped),
                };
                let times_read = e.flags & EXIT_FLAG_NO_TIMES == 0;
                self.event(
                    h.ts_ns,
                    h.pid,
                    &h.comm,
                    Body::Exit(Exit {
                        tid: h.tid,
                        thread_comm: thread_comm(h, &e.thread_comm),
                        ppid: e.ppid,
                        uid: e.uid,
                        status: ExitStatus {
                            exit_code,
                            signal,
                            signal_name: signal.and_then(|s| signal_name(i32::from(s))),
                            core_dumped,
                        },
                        usage: Usage {
                            peak_rss_kb: (e.flags & EXIT_FLAG_NO_MAXRSS == 0)
                                .then(|| self.kb(e.maxrss_pages))
                                .flatten(),
                            own_peak_rss_kb: (e.mm_peak_pages > 0)
                                .then(|| self.kb(e.mm_peak_pages))
                                .flatten(),
                            utime_ms: times_read.then(|| ms(e.utime_ns)),
                            stime_ms: times_read.then(|| ms(e.stime_ns)),
                        },
                        duration_ms: ms(h.ts_ns.saturating_sub(e.start_boottime_ns)),
                        memcg_id: (e.memcg_id != 0).then_some(e.memcg_id),
                        memcg_path: None,
                        cause: Cause::only(match (exit_code, signal) {
                            (Some(_), _) => CauseKind::Exited,
                            (None, Some(_)) => CauseKind::Killed,
                            (None, None) => CauseKind::Unknown,
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
                        result: SignalResult::from_raw(s.result),
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
                let kb = |pages: u64| mem.then(|| self.kb(pages)).flatten();
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
                    Some(mut a) => {
                        self.redactor.argv(&mut a.argv);
                        (Some(a.argv), a.truncated)
                    }
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
        let default_action = default_action(d.sig);
        let disposition = match d.disposition {
            DISPOSITION_DEFAULT => Disposition::Default,
            DISPOSITION_IGNORED => Disposition::Ignored,
            DISPOSITION_HANDLER => Disposition::Handler,
            _ => Disposition::Unknown,
        };
        let outcome = Outcome::of(disposition, default_action);
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

    /// A page count in KiB; `None` for a count no memory has (a corrupt record), rather
    /// than an overflow.
    pub fn kb(&self, pages: u64) -> Option<u64> {
        pages.checked_mul(self.page_kb)
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

    fn zeroed<T: Copy>() -> T {
        // SAFETY: monitor_common's #[repr(C)] records hold integers and integer arrays
        // only, for which all-zero bytes are valid.
        unsafe { std::mem::zeroed() }
    }

    fn json(x: monitor_common::Exec) -> serde_json::Value {
        let event = Converter::new(Clock::fixed(0)).convert(&Record::Exec(x));
        serde_json::to_value(&event).expect("serializes")
    }

    /// The converter's redactor decides: the built-in rules by default, the operator's
    /// patterns on top, or nothing when redaction is off.
    #[test]
    fn exec_argv_is_redacted_as_configured() {
        let area = b"deploy\0--password=hunter2\0corp-0badcafe\0";
        let record = Record::Exec(exec(EXEC_FLAG_ARGS, area, area.len() as u32));
        let argv = |conv: Converter| {
            let v = serde_json::to_value(conv.convert(&record)).expect("serializes");
            v["argv"].clone()
        };
        let base = Converter::new(Clock::fixed(0));
        assert_eq!(
            argv(base.clone()),
            serde_json::json!(["deploy", "--password=[REDACTED]", "corp-0badcafe"])
        );
        let corp = regex::Regex::new("corp-[0-9a-f]{8}").expect("pattern");
        assert_eq!(
            argv(
                base.clone()
                    .with_redactor(redact::Redactor::new(true, &[corp]))
            ),
            serde_json::json!(["deploy", "--password=[REDACTED]", "[REDACTED]"])
        );
        assert_eq!(
            argv(base.with_redactor(redact::Redactor::off())),
            serde_json::json!(["deploy", "--password=hunter2", "corp-0badcafe"])
        );
    }

    fn comm(name: &str) -> [u8; 16] {
        let mut c = [0; 16];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    fn exit_json(pid: u32, tid: u32) -> serde_json::Value {
        exit_json_with(pid, tid, 0, 0)
    }

    fn exit_json_with(pid: u32, tid: u32, exit_status: u32, flags: u32) -> serde_json::Value {
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
            exit_status,
            flags,
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

    /// Found by the `ring_record` fuzz target: a page count whose KiB overflow u64 panicked
    /// (debug) or wrapped to a small number (release); it is `null`, like an unread one.
    #[test]
    fn impossible_page_counts_are_null_not_an_overflow() {
        let record = |pages: u64| {
            let mut e: monitor_common::Exit = zeroed();
            e.header.kind = Kind::Exit as u16;
            e.header.version = WIRE_VERSION;
            e.maxrss_pages = pages;
            e.mm_peak_pages = pages;
            Record::Exit(e)
        };
        let conv = Converter {
            clock: Clock::fixed(0),
            page_kb: 4,
            redactor: Default::default(),
        };
        let v = serde_json::to_value(conv.convert(&record(u64::MAX))).expect("serializes");
        assert_eq!(
            (&v["peak_rss_kb"], &v["own_peak_rss_kb"]),
            (&serde_json::Value::Null, &serde_json::Value::Null)
        );
        let v = serde_json::to_value(conv.convert(&record(1 << 40))).expect("serializes");
        assert_eq!(v["peak_rss_kb"], serde_json::json!(4u64 << 40));
        let mut o: monitor_common::Oom = zeroed();
        o.header.kind = Kind::Oom as u16;
        o.flags = OOM_FLAG_MEMORY;
        o.total_vm_pages = u64::MAX;
        o.anon_rss_pages = 3;
        let v = serde_json::to_value(conv.convert(&Record::Oom(o))).expect("serializes");
        assert_eq!(
            (&v["total_vm_kb"], &v["anon_rss_kb"]),
            (&serde_json::Value::Null, &serde_json::json!(12))
        );
    }

    /// A read the kernel program could not make is `null` (and the cause `unknown`), never a
    /// plausible zero: a failed `exit_code` read is not "exit 0".
    #[test]
    fn unread_exit_fields_are_null_not_zero() {
        use monitor_common::{EXIT_FLAG_NO_MAXRSS, EXIT_FLAG_NO_STATUS, EXIT_FLAG_NO_TIMES};
        let v = exit_json_with(10, 10, 0, 0);
        assert_eq!(
            (
                &v["exit_code"],
                &v["cause"],
                &v["utime_ms"],
                &v["peak_rss_kb"]
            ),
            (
                &serde_json::json!(0),
                &serde_json::json!("exited"),
                &serde_json::json!(0.0),
                &serde_json::json!(0)
            )
        );
        let v = exit_json_with(10, 10, 0, EXIT_FLAG_NO_STATUS);
        assert_eq!(v["exit_code"], serde_json::Value::Null);
        assert_eq!(v["signal"], serde_json::Value::Null);
        assert_eq!(v["cause"], "unknown");
        assert_eq!(v["utime_ms"], 0.0, "the times were read");
        let v = exit_json_with(10, 10, 9, EXIT_FLAG_NO_TIMES | EXIT_FLAG_NO_MAXRSS);
        assert_eq!(
            (&v["signal"], &v["cause"]),
            (&serde_json::json!(9), &serde_json::json!("killed"))
        );
        assert_eq!(v["utime_ms"], serde_json::Value::Null);
        assert_eq!(v["stime_ms"], serde_json::Value::Null);
        assert_eq!(v["peak_rss_kb"], serde_json::Value::Null);
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

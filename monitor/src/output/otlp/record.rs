//! One event line (the JSON the event log holds) as an OpenTelemetry LogRecord, and a batch
//! of them as the body of an OTLP/HTTP request.
//!
//! - `body`: the event's JSON line, as written to the log: the one schema of every
//!   interface (`docs/events.md`), parsed by a consumer with `| json` (LogQL) or alike.
//! - `event_name`: `claude_monitor.<kind>` (`claude_monitor.exit`).
//! - `time_unix_nano`: the event's `ts`; `observed_time_unix_nano`: when it was sent.
//! - Severity: ERROR for crashes and OOM kills, WARN for other deaths by a signal, a
//!   non-zero exit, lost records and alerts, DEBUG for forks and execs, INFO for the rest.
//! - Attributes: OpenTelemetry's process conventions where one fits (`process.pid`,
//!   `process.parent_pid`, `process.executable.name`, `process.exit.code`,
//!   `process.user.id`, `process.linux.cgroup`, `process.executable.path`), every other
//!   scalar field as `claude_monitor.<field>`, and the scalars of an object field one level
//!   down as `claude_monitor.<field>.<name>` (`claude_monitor.session.id`,
//!   `claude_monitor.killed_by.comm`). Arrays (argv, ancestry) are only in the body: an
//!   exec's arguments are not an attribute (`process.command_args` is opt-in by the
//!   conventions, and stays so here).

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value as Any},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use serde_json::{Map, Value};

/// The prefix of the project's own attributes.
const NS: &str = "claude_monitor";

/// At most this many attributes on one record (an event has about 40; the rest would be
/// counted in `dropped_attributes_count`).
const MAX_ATTRIBUTES: usize = 128;

/// The uid the kernel programs write when they could not read one.
const NO_UID: u64 = u32::MAX as u64;

fn kv(key: impl Into<String>, value: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// A JSON scalar as an attribute value (`None` for null, objects and arrays).
fn scalar(v: &Value) -> Option<Any> {
    match v {
        Value::Bool(b) => Some(Any::BoolValue(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(Any::IntValue)
            .or_else(|| n.as_u64().map(|u| Any::IntValue(u as i64)))
            .or_else(|| n.as_f64().map(Any::DoubleValue)),
        Value::String(s) => Some(Any::StringValue(s.clone())),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The convention's name for a top-level field of this kind of event, if it has one.
fn convention(kind: &str, field: &str, value: &Value) -> Option<&'static str> {
    let dies = matches!(kind, "exit" | "fork" | "exec");
    match field {
        "pid" => Some("process.pid"),
        "comm" => Some("process.executable.name"),
        "ppid" if dies => Some("process.parent_pid"),
        "exit_code" if kind == "exit" => Some("process.exit.code"),
        "uid" if matches!(kind, "exit" | "exec") && value.as_u64() != Some(NO_UID) => {
            Some("process.user.id")
        }
        "memcg_path" if matches!(kind, "exit" | "oom") => Some("process.linux.cgroup"),
        "filename" if kind == "exec" => Some("process.executable.path"),
        _ => None,
    }
}

/// How grave the event is.
fn severity(kind: &str, event: &Map<String, Value>) -> SeverityNumber {
    match kind {
        "oom" => SeverityNumber::Error,
        "exit" => match event.get("cause").and_then(Value::as_str) {
            Some("crashed" | "oom_killed") => SeverityNumber::Error,
            Some("exited") if event.get("exit_code").and_then(Value::as_u64) == Some(0) => {
                SeverityNumber::Info
            }
            _ => SeverityNumber::Warn,
        },
        "lost" | "alert" => SeverityNumber::Warn,
        "fork" | "exec" | "signal_deliver" => SeverityNumber::Debug,
        _ => SeverityNumber::Info,
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time (0, "unknown" to OTLP, when it is not
/// one).
fn unix_nanos(ts: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// The LogRecord of one event line; `None` for a line that is not a JSON object (the
/// daemon writes none: a defect, counted by the caller).
pub fn log_record(line: &[u8], observed_unix_nanos: u64) -> Option<LogRecord> {
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(line) else {
        return None;
    };
    let kind = event.get("kind").and_then(Value::as_str).unwrap_or("");
    let mut attributes = Vec::with_capacity(48);
    let mut dropped = 0u32;
    let mut push = |attributes: &mut Vec<KeyValue>, key: String, value: Any| {
        if attributes.len() < MAX_ATTRIBUTES {
            attributes.push(kv(key, value));
        } else {
            dropped += 1;
        }
    };
    for (field, value) in &event {
        if matches!(field.as_str(), "v" | "ts") {
            continue;
        }
        if let Value::Object(inner) = value {
            for (name, v) in inner {
                if let Some(a) = scalar(v) {
                    push(&mut attributes, format!("{NS}.{field}.{name}"), a);
                }
            }
            continue;
        }
        let Some(a) = scalar(value) else {
            continue;
        };
        let key = match convention(kind, field, value) {
            Some(name) => name.to_owned(),
            None => format!("{NS}.{field}"),
        };
        push(&mut attributes, key, a);
    }
    let severity = severity(kind, &event);
    Some(LogRecord {
        time_unix_nano: event
            .get("ts")
            .and_then(Value::as_str)
            .map_or(0, unix_nanos),
        observed_time_unix_nano: observed_unix_nanos,
        severity_number: severity as i32,
        severity_text: severity_text(severity).to_owned(),
        body: Some(AnyValue {
            value: Some(Any::StringValue(String::from_utf8_lossy(line).into_owned())),
        }),
        attributes,
        dropped_attributes_count: dropped,
        event_name: format!("{NS}.{kind}"),
        ..LogRecord::default()
    })
}

fn severity_text(s: SeverityNumber) -> &'static str {
    match s {
        SeverityNumber::Error => "ERROR",
        SeverityNumber::Warn => "WARN",
        SeverityNumber::Debug => "DEBUG",
        _ => "INFO",
    }
}

/// Who sends: the resource of every request.
#[derive(Clone, Debug)]
pub struct Origin {
    /// `host.name`: the kernel's hostname.
    pub host: String,
    /// `service.version`.
    pub version: &'static str,
}

impl Origin {
    /// This host and build.
    pub fn here() -> Origin {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().chars().take(255).collect())
            .unwrap_or_default();
        Origin {
            host,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The request that carries `records`, from `origin`.
pub fn request(origin: &Origin, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    let s = |v: &str| Any::StringValue(v.to_owned());
    let mut resource = vec![
        kv("service.name", s("claude-monitor")),
        kv("service.version", s(origin.version)),
        kv("os.type", s("linux")),
    ];
    if !origin.host.is_empty() {
        resource.push(kv("host.name", s(&origin.host)));
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "claude-monitor".into(),
                    version: origin.version.into(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a Any> {
        r.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    const KILLED: &str = r#"{"v":1,"seq":7,"kind":"exit","ts":"2026-11-21T22:45:02.393616984Z","pid":669,"comm":"sleep","tid":669,"ppid":665,"uid":1000,"exit_code":null,"signal":15,"signal_name":"SIGTERM","core_dumped":false,"peak_rss_kb":1680,"own_peak_rss_kb":1680,"utime_ms":0.0,"stime_ms":0.5,"duration_ms":101.919,"memcg_id":2595,"memcg_path":"/a/b","cause":"killed","killed_by":{"pid":665,"comm":"provoke.sh","uid":0,"proc_id":"665:303474","session_id":null,"same_session":false,"signal":15,"si_code":0,"handled":false},"oom":null,"proc_id":"669:303575","session":{"id":"600:1","agent":"claude-code","root_pid":600,"root_start":"2026-11-21T22:00:00.000000000Z","cwd":"/home/u/p","claude_session_id":null,"version":null},"ancestry":[{"pid":600,"comm":"claude"}],"tool_call":null}"#;

    /// An exit killed by a signal: the conventions' names, the project's own under
    /// `claude_monitor.`, objects one level down, arrays and nulls left out, the line as
    /// the body, its time from `ts`, WARN.
    #[test]
    fn an_exit_has_the_process_conventions_and_its_own_fields() {
        let r = log_record(KILLED.as_bytes(), 42).expect("record");
        assert_eq!(r.event_name, "claude_monitor.exit");
        assert_eq!(r.time_unix_nano, 1_795_301_102_393_616_984);
        assert_eq!(r.observed_time_unix_nano, 42);
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(
            r.body.as_ref().and_then(|b| b.value.clone()),
            Some(Any::StringValue(KILLED.into()))
        );
        assert_eq!(attr(&r, "process.pid"), Some(&Any::IntValue(669)));
        assert_eq!(attr(&r, "process.parent_pid"), Some(&Any::IntValue(665)));
        assert_eq!(attr(&r, "process.user.id"), Some(&Any::IntValue(1000)));
        assert_eq!(
            attr(&r, "process.executable.name"),
            Some(&Any::StringValue("sleep".into()))
        );
        assert_eq!(
            attr(&r, "process.linux.cgroup"),
            Some(&Any::StringValue("/a/b".into()))
        );
        // Killed: no exit code at all (null is left out, never a made-up 0).
        assert_eq!(attr(&r, "process.exit.code"), None);
        assert_eq!(attr(&r, "claude_monitor.exit_code"), None);
        assert_eq!(attr(&r, "claude_monitor.seq"), Some(&Any::IntValue(7)));
        assert_eq!(
            attr(&r, "claude_monitor.cause"),
            Some(&Any::StringValue("killed".into()))
        );
        assert_eq!(
            attr(&r, "claude_monitor.stime_ms"),
            Some(&Any::DoubleValue(0.5))
        );
        assert_eq!(
            attr(&r, "claude_monitor.killed_by.comm"),
            Some(&Any::StringValue("provoke.sh".into()))
        );
        assert_eq!(
            attr(&r, "claude_monitor.session.id"),
            Some(&Any::StringValue("600:1".into()))
        );
        assert_eq!(attr(&r, "claude_monitor.session.claude_session_id"), None);
        assert!(r.attributes.iter().all(|a| !a.key.contains("ancestry")
            && a.key != "claude_monitor.pid"
            && a.key != "claude_monitor.ppid"
            && a.key != "claude_monitor.v"));
        let keys: std::collections::HashSet<_> = r.attributes.iter().map(|a| &a.key).collect();
        assert_eq!(keys.len(), r.attributes.len(), "a key twice");
    }

    /// Severity by what happened; an exit code 0 is INFO, the code is the convention's.
    #[test]
    fn severity_follows_what_happened() {
        let exit = |cause: &str, code: &str| {
            format!(
                r#"{{"v":1,"kind":"exit","ts":"2026-11-21T22:45:02.000000000Z","pid":1,"comm":"x","uid":4294967295,"exit_code":{code},"cause":"{cause}"}}"#
            )
        };
        let sev = |line: &str| {
            log_record(line.as_bytes(), 0)
                .expect("record")
                .severity_number
        };
        assert_eq!(sev(&exit("exited", "0")), SeverityNumber::Info as i32);
        assert_eq!(sev(&exit("exited", "3")), SeverityNumber::Warn as i32);
        assert_eq!(sev(&exit("crashed", "null")), SeverityNumber::Error as i32);
        assert_eq!(
            sev(&exit("oom_killed", "null")),
            SeverityNumber::Error as i32
        );
        let r = log_record(exit("exited", "3").as_bytes(), 0).expect("record");
        assert_eq!(attr(&r, "process.exit.code"), Some(&Any::IntValue(3)));
        // An unreadable uid is no user id.
        assert_eq!(attr(&r, "process.user.id"), None);
        assert_eq!(
            attr(&r, "claude_monitor.uid"),
            Some(&Any::IntValue(4_294_967_295))
        );
        let fork = r#"{"v":1,"kind":"fork","ts":"x","pid":2,"comm":"sh","ppid":1}"#;
        let r = log_record(fork.as_bytes(), 0).expect("record");
        assert_eq!(r.severity_number, SeverityNumber::Debug as i32);
        assert_eq!(r.time_unix_nano, 0, "a ts that is no time is unknown");
        assert_eq!(attr(&r, "process.parent_pid"), Some(&Any::IntValue(1)));
        assert!(log_record(b"[1,2]", 0).is_none());
        assert!(log_record(b"{not json", 0).is_none());
    }

    /// Encoded and decoded with the OpenTelemetry project's own message types: what a
    /// receiver gets.
    #[test]
    fn a_request_round_trips_through_protobuf() {
        use prost::Message as _;
        let origin = Origin {
            host: "box".into(),
            version: "0.1.0",
        };
        let records = vec![log_record(KILLED.as_bytes(), 1).expect("record")];
        let bytes = request(&origin, records.clone()).encode_to_vec();
        let back = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let rl = &back.resource_logs[0];
        let resource = rl.resource.as_ref().expect("resource");
        assert!(resource.attributes.contains(&kv(
            "service.name",
            Any::StringValue("claude-monitor".into())
        )));
        assert!(
            resource
                .attributes
                .contains(&kv("host.name", Any::StringValue("box".into())))
        );
        assert_eq!(rl.scope_logs[0].log_records, records);
    }
}

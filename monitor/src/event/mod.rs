//! The JSON event stream, schema version 1 (documented in `docs/events.md`, JSON Schema in
//! `docs/events.schema.json`): plain, serialize-only data, separate from the kernel records.
//!
//! This module is the schema and nothing else: it imports no other module of the agent, so
//! every part (the pipeline that builds events, the outputs that write them, the reports)
//! depends on it and it depends on none of them. `pipeline::convert` turns kernel records
//! into these types.

mod agent;
mod attr;
mod records;

use serde::Serialize;

pub use self::{agent::*, attr::*, records::*};

pub const SCHEMA_VERSION: u32 = 1;

/// One line of the stream. Every record has `v`, `kind`, `ts`, `pid` and `comm`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub v: u32,
    pub kind: Kind,
    pub ts: String,
    pub pid: u32,
    pub comm: String,
    #[serde(flatten)]
    pub body: Body,
    /// `proc_id`, `session`, `ancestry`: on every kernel event, absent on the agent's own.
    #[serde(flatten)]
    pub attr: Option<Attr>,
}

/// The `kind` of a line: one per [`Body`] variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    AgentStart,
    AgentStop,
    Exit,
    Signal,
    Oom,
    Fork,
    Exec,
    SignalDeliver,
    Lost,
}

names!(Kind {
    AgentStart => "agent_start",
    AgentStop => "agent_stop",
    Exit => "exit",
    Signal => "signal",
    Oom => "oom",
    Fork => "fork",
    Exec => "exec",
    SignalDeliver => "signal_deliver",
    Lost => "lost",
});

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

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::AgentStart(_) => Kind::AgentStart,
            Body::AgentStop(_) => Kind::AgentStop,
            Body::Exit(_) => Kind::Exit,
            Body::Signal(_) => Kind::Signal,
            Body::Oom(_) => Kind::Oom,
            Body::Fork(_) => Kind::Fork,
            Body::Exec(_) => Kind::Exec,
            Body::SignalDeliver(_) => Kind::SignalDeliver,
            Body::Lost(_) => Kind::Lost,
        }
    }
}

impl Event {
    /// An event read back from its JSON line (the daemon's stream): the kinds a command's
    /// tree is made of (`exit`, `fork`, `exec`, `lost`); `None` for any other kind or for
    /// a line that is not one.
    pub fn from_json(v: &serde_json::Value) -> Option<Event> {
        let of = |v: &serde_json::Value| v.clone();
        let body = match v["kind"].as_str()? {
            "exit" => Body::Exit(serde_json::from_value(of(v)).ok()?),
            "fork" => Body::Fork(serde_json::from_value(of(v)).ok()?),
            "exec" => Body::Exec(serde_json::from_value(of(v)).ok()?),
            "lost" => Body::Lost(serde_json::from_value(of(v)).ok()?),
            _ => return None,
        };
        let attr = v
            .get("proc_id")
            .is_some()
            .then(|| serde_json::from_value::<Attr>(of(v)).ok())
            .flatten();
        Some(Event {
            v: u32::try_from(v["v"].as_u64()?).ok()?,
            kind: body.kind(),
            ts: v["ts"].as_str()?.to_owned(),
            pid: u32::try_from(v["pid"].as_u64()?).ok()?,
            comm: v["comm"].as_str()?.to_owned(),
            body,
            attr,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn json_name<T: Serialize>(v: T) -> String {
        match serde_json::to_value(v) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    /// Every enum of fixed values serializes to the name `as_str` gives (the names the
    /// schema's `enum`s list), and `Display` pads.
    #[test]
    fn enum_names_are_their_json() {
        macro_rules! check {
            ($($ty:ident),*) => {$(
                assert!(!$ty::ALL.is_empty());
                for v in $ty::ALL {
                    assert_eq!(json_name(v), v.as_str(), "{}", stringify!($ty));
                    assert_eq!(format!("{v:<24}|").len(), 25);
                }
            )*};
        }
        check!(
            Kind,
            CauseKind,
            Disposition,
            DefaultAction,
            Outcome,
            SignalResult,
            LostReason,
            ScopeName,
            StopReason,
            PinState,
            CgroupVersion,
            HookName
        );
    }
}

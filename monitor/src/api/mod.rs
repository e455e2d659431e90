//! The daemon's live API: every event it writes gets a `seq` ([`seq`]), goes to the event
//! log and to the subscribers of an in-process bus ([`bus`]), each with a bounded queue;
//! an HTTP/1.1 server on a Unix socket ([`server`]) serves `/healthz`, the history from the
//! event log files ([`history`]) and a Server-Sent Events stream that resumes with no gap
//! and no duplicate; `/v1/sessions` ([`sessions`]: asked of the event loop through a
//! bounded channel) and `/v1/reports` ([`reports`]: the report directory, read on a
//! blocking thread); `POST /v1/watch` ([`watch`], the Unix socket only) has the daemon
//! watch a `claude-monitor run` command of the peer's; [`tcp`] serves the same routes on TCP (`api.tcp`), read-only, behind a
//! bearer token or, without one, `/healthz` and `/metrics` only; [`client`] is
//! `claude-monitor events`.
//!
//! Who sees what ([`filter::Viewer`]): the peer's credentials (SO_PEERCRED) at connect.
//! Root and the members of `api.group` see every event; any other user only the events of
//! their own processes (the rule is in [`filter::Meta::uid`]), their own sessions (the root
//! process's uid) and their own reports (`process.uid`); another's session or report is a
//! 404, as one that does not exist. A TCP peer has no credentials: with the token it sees
//! what root sees; without a token it gets no `/v1` route.
//!
//! Nothing here can slow the event loop: the loop only `try_send`s into each queue; a full
//! queue counts the event as lost for that subscriber, which gets one `lost` record
//! (`reason: subscriber_queue`) when its queue has room again.

pub mod bus;
pub mod client;
pub mod filter;
pub mod history;
pub mod reports;
pub mod seq;
pub mod server;
pub mod sessions;
pub mod tcp;
pub mod users;
pub mod watch;

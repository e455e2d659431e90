//! From decoded kernel records to attributed events: the engine reading the ring buffer,
//! the process table, attribution (sessions, lineage, causes), the hold for tool calls the
//! CLI writes late, and the scopes to follow.

pub mod attribution;
pub mod convert;
pub mod core;
pub mod engine;
pub mod hold;
pub mod output;
pub mod proctable;
pub mod redact;
pub mod scope;

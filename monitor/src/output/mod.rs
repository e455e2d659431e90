//! Where events go as lines: JSON or text ([`sink`]), size-rotated files ([`rotate`]), and
//! untrusted text made safe for a terminal ([`printable`]); the exports: journald's native
//! protocol ([`journal`]) and OTLP logs ([`otlp`]).

pub mod journal;
pub mod otlp;
pub mod printable;
pub mod rotate;
pub mod sink;

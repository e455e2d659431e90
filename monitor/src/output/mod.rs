//! Where events go as lines: JSON or text ([`sink`]), size-rotated files ([`rotate`]), and
//! untrusted text made safe for a terminal ([`printable`]).

pub mod journal;
pub mod printable;
pub mod rotate;
pub mod sink;

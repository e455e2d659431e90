//! Where events go as lines: JSON or text ([`sink`]), and size-rotated files ([`rotate`]).

pub mod rotate;
pub mod sink;

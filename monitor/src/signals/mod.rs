//! Signal, `si_code` and wait-status names, and what each signal means.

pub mod explain;
pub mod names;

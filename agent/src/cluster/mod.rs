//! cluster (in progress)
pub mod counters;
pub mod record;

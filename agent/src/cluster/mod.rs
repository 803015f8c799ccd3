//! cluster (in progress)
pub mod config;
pub mod counters;
pub mod engine;
pub mod metrics;
pub mod record;
pub mod view;
pub mod wire;

//! coolmesh agent: sensors, power probes, the shutdown state machine and the
//! cluster, turned into a snapshot that the exporter serves.
//!
//! # Layout
//!
//! - [`thermal`]: the thermal model (readings, plausibility, headroom, trend).
//! - [`sources`]: one file per thermal source behind the `Source` trait.
//! - [`power`]: one file per power probe behind the `Probe` trait, plus policy.
//! - [`fsm`]: the pure shutdown state machine `(state, input, now) -> (state, actions)`.
//! - [`shutdown`]: the I/O side of the state machine's actions (persist, run once).

pub mod cluster;
pub mod fsm;
pub mod power;
pub mod shutdown;
pub mod sources;
pub mod thermal;

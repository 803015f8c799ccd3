//! Power probes: is mains power up? (probes being written)
//!
//! # Layout
//!
//! - [`target`]: target strings parsed into a [`TargetSpec`] by [`parse_target`].
//! - [`policy`]: [`Policy`] any / all / majority.
//! - [`metrics`]: [`PowerMetrics`] (probe duration histogram, failure counter).

pub mod metrics;
pub mod policy;
pub mod target;

pub use metrics::PowerMetrics;
pub use policy::Policy;
pub use target::{parse_target, parse_targets, Host, TargetError, TargetKind, TargetSpec};

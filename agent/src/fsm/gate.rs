//! The stage gate the state machine holds a due command on: how many
//! lower-stage nodes are still going down, per trigger. Computed from the
//! peers' records by [`crate::stage::lower_stages`]; kept here so that the
//! machine does not depend on the cluster layer.

use serde::{Deserialize, Serialize};

use super::Reason;

/// Lower-stage nodes still going down for one trigger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// How many.
    pub nodes: u32,
    /// The lowest stage among them (the one shutting down now), if any.
    pub lowest_stage: Option<u32>,
}

impl Pending {
    pub(crate) fn add(&mut self, stage: u32) {
        self.nodes = self.nodes.saturating_add(1);
        self.lowest_stage = Some(self.lowest_stage.map_or(stage, |s| s.min(stage)));
    }
}

/// Lower-stage nodes still going down, per room-wide trigger. `Default`
/// is "nothing to wait for" (stage 0, no cluster, an unstaged room).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageGate {
    /// Going down for a power loss.
    pub power: Pending,
    /// Going down for a cooling loss.
    pub cooling: Pending,
}

impl StageGate {
    /// The nodes to wait for when this node goes down for `trigger`.
    /// Overheat (and anything else) is this node's own emergency: nothing.
    pub fn for_trigger(&self, trigger: Reason) -> Pending {
        match trigger {
            Reason::Power => self.power,
            Reason::Cooling => self.cooling,
            _ => Pending::default(),
        }
    }
}

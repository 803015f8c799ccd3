//! What alive peers report, in the state machine's terms: the cluster's
//! view (records of voters) turned into `fsm::PeerView` (power votes on
//! this node's targets, the weighted cooling quorum). The core loop feeds
//! it to the state machine and the snapshot shows the same counts.

use crate::cluster::{self, ClusterView};
use crate::fsm::{FsmConfig, PeerView};
use crate::power;

/// What alive peers report, in the state machine's terms. Freshness is the
/// cluster's liveness: only `alive` peers (record advanced within
/// `cluster.suspect_after`) vote.
///
/// Only [`ClusterView::voters`] count: alive, directly connected, at most
/// one per host address, so that minting identities buys no votes.
/// Power votes are counted per target ([`ClusterView::votes_on`]): on the
/// targets this node sees down (all of its targets while it sees power),
/// from the peers that probe them. The cooling quorum is weighted: a node
/// that votes by inlet or ambient air sensors weighs 2, others 1.
pub fn peer_view(
    view: &ClusterView,
    cfg: &FsmConfig,
    own: &[cluster::record::TargetObservation],
    policy: power::Policy,
) -> PeerView {
    let down: Vec<String> = own
        .iter()
        .filter(|o| !o.up)
        .map(|o| o.target.clone())
        .collect();
    let targets = if down.is_empty() {
        own.iter().map(|o| o.target.clone()).collect()
    } else {
        down
    };
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    // Only voters count, for the cooling quorum as for power: alive,
    // directly connected, one per host address (ClusterView::voters).
    let voters = view.voters();
    let votes = cluster::view::votes_among(&voters, &targets, policy);
    let mut pv = PeerView {
        fresh_peers: n(voters.len()),
        power_up: n(votes.up),
        power_down: n(votes.down),
        ..PeerView::default()
    };
    for p in voters {
        let w = if p.record.state.thermal.air { 2 } else { 1 };
        pv.weight = pv.weight.saturating_add(w);
        if peer_votes_cooling(&p.record.state.thermal, cfg) {
            pv.overheating = pv.overheating.saturating_add(1);
            pv.overheating_weight = pv.overheating_weight.saturating_add(w);
        }
    }
    pv
}

/// Staged shutdown: the alive lower-stage peers still going down
/// ([`crate::stage::lower_stages`]). All alive peers count, voters or not:
/// a relayed member still writes to the storage, and a minted identity can
/// only delay a staged node by the bounded stage timeout, never cause a
/// shutdown.
pub fn stage_gate(view: &ClusterView, own_stage: u32) -> crate::stage::StageGate {
    crate::stage::lower_stages(
        own_stage,
        view.peers.values().map(|p| crate::stage::StagePeer {
            stage: p.record.state.stage,
            alive: p.liveness == cluster::view::Liveness::Alive,
            fsm: &p.record.state.fsm,
        }),
    )
}

/// Does a peer's record vote "cooling lost"? Its own verdict when it sent
/// one (format 1.1), else the old rule (critical, or a trend at least
/// `heating_fast_c_per_min`).
pub fn peer_votes_cooling(t: &cluster::record::ThermalReport, cfg: &FsmConfig) -> bool {
    t.critical
        || t.vote
            .unwrap_or_else(|| t.trend.is_some_and(|c| c >= cfg.heating_fast_c_per_min))
}

//! Turns the agent's internal state into the exporter's [`Snapshot`].

use crate::sampler::SensorState;
use crate::thermal::{Reading, ThermalSummary};
use coolmesh_exporter::model::{FsmView, PowerView, TargetStatus};
use coolmesh_exporter::Snapshot;

/// Fill the sensor part of a snapshot.
pub fn apply_sensors(snap: &mut Snapshot, s: &SensorState) {
    snap.ready = s.round > 0;
    snap.readings = s.readings.clone();
    snap.sources = s.sources.clone();
    snap.thermal = s.thermal;
}

/// Fill the power part of a snapshot from one probe round.
pub fn apply_power(snap: &mut Snapshot, policy: &str, obs: &crate::power::PowerObservation) {
    snap.power = PowerView {
        policy: policy.to_string(),
        up: obs.up,
        targets: obs
            .targets
            .iter()
            .map(|t| TargetStatus {
                target: t.target.clone(),
                up: t.up,
                unknown: t.unknown,
                duration_seconds: t.duration.as_secs_f64(),
                error: t.error.clone(),
            })
            .collect(),
        at_ms: crate::clock::to_unix_ms(obs.at),
    };
}

/// Fill the state machine part of a snapshot.
pub fn apply_machine(
    snap: &mut Snapshot,
    m: &crate::fsm::Machine,
    cfg: &crate::fsm::FsmConfig,
    dry_run: bool,
    stage: u32,
) {
    snap.fsm = FsmView {
        state: m.state.as_str().to_string(),
        reason: m.reason.as_str().to_string(),
        detail: m.detail.clone(),
        since_ms: m.since.0,
        deadline_ms: m.effective_deadline(cfg).map(|d| d.0),
        maintenance_until_ms: m.maintenance_until.map(|d| d.0),
        executed: m.shutdown_issued(),
        dry_run,
        stage: stage_view(m, cfg, stage),
    };
}

/// Staged shutdown for `/v1/state` and the metrics: this node's stage and,
/// in `pre_fail`, the lower-stage nodes it waits for.
pub fn stage_view(
    m: &crate::fsm::Machine,
    cfg: &crate::fsm::FsmConfig,
    stage: u32,
) -> coolmesh_exporter::model::StageView {
    let pending = if m.state == crate::fsm::State::PreFail {
        m.stages.for_trigger(m.trigger)
    } else {
        crate::stage::Pending::default()
    };
    coolmesh_exporter::model::StageView {
        stage,
        // Held now: the machine announced the hold and lower-stage nodes
        // are still pending. When the last one finishes, the gate says 0
        // at once but the machine lets its next tick (at most a second)
        // run the command; until then the command is no longer held, so
        // the view does not say so (it used to show waiting with 0 pending).
        waiting: m.state == crate::fsm::State::PreFail && m.stage_waiting && pending.nodes > 0,
        lower_pending: pending.nodes,
        waiting_for_stage: pending.lowest_stage,
        hold_until_ms: m.stage_hold_until(cfg).map(|d| d.0),
    }
}

/// The thermal summary of a peer's record, in the agent's own terms.
pub fn thermal_of(t: &crate::cluster::record::ThermalReport) -> ThermalSummary {
    ThermalSummary {
        hottest_celsius: t.hottest,
        headroom_celsius: t.headroom,
        trend_celsius_per_minute: t.trend,
        time_to_critical_seconds: t.time_to_critical,
        critical: t.critical,
        cooling_vote: t.vote.unwrap_or(false),
        air: t.air,
        ..ThermalSummary::default()
    }
}

/// The cluster part of a snapshot: peers, votes per target (this node
/// included), overheating nodes (this node included) and the quorum.
///
/// The overheating count and the quorum are the state machine's own: they
/// count the voters it counts ([`ClusterView::voters`]: alive, directly
/// connected, one per host address) plus this node, and the quorum is
/// [`crate::fsm::cooling_quorum`], a strict majority of those nodes and at
/// least `cooling_quorum_min` (default 2), so that a lone node's heat is no
/// "cooling failed". Without peers this node is the whole room (quorum 2 by
/// default: one node never makes a quorum). The machine weighs voters that
/// vote by inlet or ambient air double ([`crate::fsm::weighted_quorum`]);
/// this node count is the quorum when every node weighs 1, and otherwise
/// asks for at least as many nodes as the weighted quorum does.
///
/// [`ClusterView::voters`]: crate::cluster::ClusterView::voters
pub fn apply_cluster(
    snap: &mut Snapshot,
    view: &crate::cluster::ClusterView,
    name: &str,
    fsm: &crate::fsm::FsmConfig,
    own_thermal: &ThermalSummary,
) {
    use coolmesh_exporter::model::{PeerStatus, PowerVote};
    let now = crate::clock::unix_ms();
    snap.cluster.name = name.to_string();
    snap.cluster.peers = view
        .peers
        .values()
        .map(|p| PeerStatus {
            node: p.record.state.node.clone(),
            peer_id: p.record.peer_id.to_base58(),
            liveness: p.liveness.as_str().to_string(),
            last_seen_ms: now.saturating_sub(p.age.as_millis() as u64),
            version: p.record.version,
            thermal: thermal_of(&p.record.state.thermal),
            power_up: p.record.state.power_up,
            state: p.record.state.fsm.state.clone(),
            reason: p.record.state.fsm.reason.clone(),
            deadline_ms: p.record.state.fsm.deadline_ms,
            stale: p.stale,
            stage: p.record.state.stage,
        })
        .collect();
    // Per target, the votes the decision counts (`agent::peer_view`,
    // [`ClusterView::votes_on`]): one per voter that probes the target, not
    // one per alive identity, so that minted identities inflate neither the
    // gauge nor the status page. On a single target every power policy
    // gives that voter's observation, so the policy does not matter here.
    //
    // [`ClusterView::votes_on`]: crate::cluster::ClusterView::votes_on
    let voters = view.voters();
    let mut votes: std::collections::BTreeMap<String, crate::cluster::view::PowerVotes> = voters
        .iter()
        .flat_map(|p| p.record.state.power.iter().map(|o| o.target.clone()))
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .map(|t| {
            let v = crate::cluster::view::votes_among(
                &voters,
                std::slice::from_ref(&t),
                crate::power::Policy::Any,
            );
            (t, v)
        })
        .collect();
    // This node's own observations. An unknown result (a local error) is no
    // vote, here as for peers.
    for t in snap.power.targets.iter().filter(|t| !t.unknown) {
        let v = votes.entry(t.target.clone()).or_default();
        if t.up {
            v.up += 1;
        } else {
            v.down += 1;
        }
    }
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    snap.cluster.power_votes = votes
        .into_iter()
        .map(|(target, v)| PowerVote {
            target,
            up: n(v.up),
            down: n(v.down),
        })
        .collect();
    let peers_hot = voters
        .iter()
        .filter(|p| crate::votes::peer_votes_cooling(&p.record.state.thermal, fsm))
        .count();
    snap.cluster.overheating = n(peers_hot) + u32::from(fsm.is_heating(own_thermal));
    let nodes = n(voters.len()).saturating_add(1);
    snap.cluster.quorum = crate::fsm::cooling_quorum(nodes, fsm.cooling_quorum_min);
}

/// The hottest inlet and the hottest ambient sensor of a round (sensors
/// whose role is `inlet` or `ambient`, see [`crate::heating::Role`]).
pub fn air_temperatures(readings: &[Reading]) -> (Option<f64>, Option<f64>) {
    use crate::heating::Role;
    let hottest = |role: Role| {
        readings
            .iter()
            .filter(|r| r.role == role)
            .map(|r| r.celsius)
            .max_by(f64::total_cmp)
    };
    (hottest(Role::Inlet), hottest(Role::Ambient))
}

/// This node, for the history: its thermal summary, its air sensors and
/// its state.
pub fn self_history_sample(
    node: &str,
    peer_id: &str,
    t: &ThermalSummary,
    air: (Option<f64>, Option<f64>),
    state: &str,
) -> coolmesh_exporter::history::NodeSample {
    use coolmesh_exporter::history::{known_state, NodeSample, Sample};
    NodeSample {
        peer_id: peer_id.to_string(),
        node: node.to_string(),
        is_self: true,
        live: true,
        sample: Sample {
            hottest: t.hottest_celsius,
            inlet: air.0,
            ambient: air.1,
            headroom: t.headroom_celsius,
            trend: t.trend_celsius_per_minute,
            state: known_state(state),
            air: t.air,
        },
    }
}

/// Every node of the room for the history: this node, then each peer of
/// the view with what its record carries (hottest, headroom, trend, its
/// state, whether it votes by air sensors; no air readings). A peer that
/// is not alive, or whose record is stale, gets no new point.
pub fn history_samples(
    own: coolmesh_exporter::history::NodeSample,
    view: &crate::cluster::ClusterView,
) -> Vec<coolmesh_exporter::history::NodeSample> {
    use coolmesh_exporter::history::{known_state, NodeSample, Sample};
    let mut out = Vec::with_capacity(view.peers.len() + 1);
    out.push(own);
    out.extend(view.peers.values().map(|p| {
        let peer_id = p.record.peer_id.to_base58();
        let t = &p.record.state.thermal;
        NodeSample {
            node: if p.record.state.node.is_empty() {
                peer_id.clone()
            } else {
                p.record.state.node.clone()
            },
            peer_id,
            is_self: false,
            live: p.liveness == crate::cluster::Liveness::Alive && !p.stale,
            sample: Sample {
                hottest: t.hottest,
                inlet: None,
                ambient: None,
                headroom: t.headroom,
                trend: t.trend,
                state: known_state(&p.record.state.fsm.state),
                air: t.air,
            },
        }
    }));
    out
}

/// `GET /v1/roster`: the roster this node holds, each member's liveness as
/// this node sees it, and the identities waiting outside.
pub fn roster_status(
    view: &crate::cluster::ClusterView,
    cluster: &str,
    operator_key: &str,
) -> coolmesh_exporter::model::RosterStatus {
    use base64::Engine as _;
    use coolmesh_exporter::model::{RosterCandidate, RosterMember, RosterStatus};
    let mut out = RosterStatus {
        cluster: cluster.to_string(),
        operator_key: operator_key.to_string(),
        pending: view
            .candidates
            .iter()
            .map(|c| RosterCandidate {
                peer_id: c.peer_id.to_base58(),
                node: c.node.clone(),
                address: c.remote_ip.map(|ip| ip.to_string()),
                last_seen_secs: c.since.as_secs(),
            })
            .collect(),
        ..RosterStatus::default()
    };
    let Some(r) = &view.roster else {
        return out;
    };
    out.version = r.version;
    out.issued_ms = r.issued_ms;
    out.self_member = view.local_peer_id.is_some_and(|me| r.contains(&me));
    out.signed = base64::engine::general_purpose::STANDARD.encode(r.to_bytes());
    out.members = r
        .members
        .iter()
        .map(|p| {
            if view.local_peer_id == Some(*p) {
                return RosterMember {
                    peer_id: p.to_base58(),
                    node: view.local.as_ref().map(|l| l.state.node.clone()),
                    liveness: "self".into(),
                };
            }
            let pv = view.peers.get(p);
            RosterMember {
                peer_id: p.to_base58(),
                node: pv.map(|v| v.record.state.node.clone()),
                liveness: pv
                    .map(|v| v.liveness.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into()),
            }
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::{LocalState, Record, ThermalReport as RecordThermal};
    use crate::cluster::{ClusterPeer, ClusterView, Liveness};
    use crate::fsm::FsmConfig;
    use std::time::{Duration, Instant};

    /// A peer at host `10.0.0.<host>`, voting "cooling lost" if `hot`.
    fn peer(host: u8, hot: bool, liveness: Liveness, connected: bool) -> ClusterPeer {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let local = LocalState {
            thermal: RecordThermal {
                critical: hot,
                vote: Some(hot),
                ..Default::default()
            },
            ..Default::default()
        };
        ClusterPeer {
            record: Record::from_local(&local, "c", key.public().to_peer_id(), 1, &[], 0),
            liveness,
            stale: false,
            last_seen: Instant::now(),
            age: Duration::ZERO,
            connected,
            remote_ip: Some(std::net::Ipv4Addr::new(10, 0, 0, host).into()),
        }
    }

    fn cluster(peers: Vec<ClusterPeer>, self_hot: bool) -> (u32, u32) {
        let mut view = ClusterView::default();
        for p in peers {
            view.peers.insert(p.record.peer_id, p);
        }
        let own = ThermalSummary {
            critical: self_hot,
            ..ThermalSummary::default()
        };
        let mut snap = Snapshot::default();
        apply_cluster(&mut snap, &view, "c", &FsmConfig::default(), &own);
        (snap.cluster.overheating, snap.cluster.quorum)
    }

    /// A lone hot node is one vote of the two the state machine needs
    /// (`cooling_quorum_min`), not a quorum of one.
    #[test]
    fn a_lone_node_is_no_quorum() {
        assert_eq!(cluster(vec![], true), (1, 2));
        assert_eq!(cluster(vec![], false), (0, 2));
    }

    /// The quorum and the overheating count are over the state machine's
    /// voters (alive, directly connected, one per host address) plus this
    /// node: a strict majority, at least 2.
    #[test]
    fn quorum_counts_the_voters_as_the_state_machine_does() {
        // 3 voters + self = 4 nodes: majority 3.
        let voters = vec![
            peer(1, true, Liveness::Alive, true),
            peer(2, false, Liveness::Alive, true),
            peer(3, false, Liveness::Alive, true),
        ];
        assert_eq!(cluster(voters, true), (2, 3));
        // Not voters: suspect, dead, relayed (not connected), a second
        // identity on a voter's address. 1 voter + self = 2 nodes: quorum 2.
        let peers = vec![
            peer(1, true, Liveness::Alive, true),
            peer(1, true, Liveness::Alive, true),
            peer(2, true, Liveness::Suspect, true),
            peer(3, true, Liveness::Dead, true),
            peer(4, true, Liveness::Alive, false),
        ];
        assert_eq!(cluster(peers, false), (1, 2));
        // With 2 nodes, both hot is a quorum; the state machine agrees.
        let (formed, _) = crate::fsm::weighted_quorum(2, 2, 2, 2);
        assert!(formed);
        assert_eq!(
            cluster(vec![peer(1, true, Liveness::Alive, true)], true),
            (2, 2)
        );
    }

    /// Sees `target` up or down.
    fn probing(mut p: ClusterPeer, target: &str, up: bool) -> ClusterPeer {
        p.record.state.power = vec![crate::cluster::record::TargetObservation {
            target: target.to_string(),
            up,
            at_ms: 1,
        }];
        p
    }

    /// `cluster.power_votes` (and `coolmesh_cluster_power_votes`) count the
    /// voters the decision counts ([`ClusterView::votes_on`]) plus this
    /// node, not every alive identity: identities minted on one address,
    /// relayed records and peers that are not alive add no vote
    /// (docs/failure-matrix.md, finding 5).
    #[test]
    fn power_votes_count_the_voters_as_the_decision_does() {
        let peers = vec![
            // Two voters see t down.
            probing(peer(1, false, Liveness::Alive, true), "t", false),
            probing(peer(2, false, Liveness::Alive, true), "t", false),
            // Not voters, all "up": three more identities on host 3 (one
            // of them votes), a relayed record, a suspect and a dead peer.
            probing(peer(3, false, Liveness::Alive, true), "t", true),
            probing(peer(3, false, Liveness::Alive, true), "t", true),
            probing(peer(3, false, Liveness::Alive, true), "t", true),
            probing(peer(4, false, Liveness::Alive, false), "t", true),
            probing(peer(5, false, Liveness::Suspect, true), "t", true),
            probing(peer(6, false, Liveness::Dead, true), "t", true),
            // Another circuit: only this voter probes u.
            probing(peer(7, false, Liveness::Alive, true), "u", true),
        ];
        let mut view = ClusterView::default();
        for p in peers {
            view.peers.insert(p.record.peer_id, p);
        }
        let mut snap = Snapshot::default();
        // This node sees t down too.
        snap.power.targets = vec![coolmesh_exporter::model::TargetStatus {
            target: "t".into(),
            up: false,
            unknown: false,
            duration_seconds: 0.0,
            error: None,
        }];
        apply_cluster(
            &mut snap,
            &view,
            "c",
            &FsmConfig::default(),
            &ThermalSummary::default(),
        );
        let votes: Vec<(String, u32, u32)> = snap
            .cluster
            .power_votes
            .iter()
            .map(|v| (v.target.clone(), v.up, v.down))
            .collect();
        assert_eq!(votes, [("t".into(), 1, 3), ("u".into(), 1, 0)]);
        // The decision counts the same peers (this node aside).
        let t = view.votes_on(&["t".to_string()], crate::power::Policy::Any);
        assert_eq!((t.up, t.down), (1, 2));
        let u = view.votes_on(&["u".to_string()], crate::power::Policy::Any);
        assert_eq!((u.up, u.down), (1, 0));
        // Counted over every alive identity (the old way), t was up 4,
        // down 2, and with this node up 4, down 3: a majority "up" during
        // a real loss.
        let all = view.target_votes();
        assert_eq!((all["t"].up, all["t"].down), (4, 2));
    }

    /// The history gets this node's air sensors by role, and of each peer
    /// what its record carries; only alive, fresh peers are sampled.
    #[test]
    fn history_samples_carry_air_sensors_and_peers_records() {
        use crate::heating::Role;
        let mut readings = vec![
            Reading::new("cpu", "temp1", 60.0, "x"),
            Reading::new("bmc", "inlet1", 22.0, "x"),
            Reading::new("bmc", "inlet2", 24.5, "x"),
            Reading::new("bmc", "room", 27.0, "x"),
        ];
        readings[1].role = Role::Inlet;
        readings[2].role = Role::Inlet;
        readings[3].role = Role::Ambient;
        assert_eq!(air_temperatures(&readings), (Some(24.5), Some(27.0)));
        assert_eq!(air_temperatures(&readings[..1]), (None, None));

        let own_t = ThermalSummary {
            hottest_celsius: Some(60.0),
            headroom_celsius: Some(30.0),
            trend_celsius_per_minute: Some(0.2),
            air: true,
            ..ThermalSummary::default()
        };
        let own = self_history_sample("me", "ME", &own_t, (Some(24.5), None), "pre_fail");
        assert_eq!(own.sample.state, Some("pre_fail"));
        assert_eq!((own.sample.inlet, own.sample.air), (Some(24.5), true));

        let mut hot = peer(1, true, Liveness::Alive, true);
        hot.record.state.node = "hot".into();
        hot.record.state.thermal.hottest = Some(88.0);
        hot.record.state.thermal.headroom = Some(2.0);
        hot.record.state.thermal.air = true;
        hot.record.state.fsm.state = "shutdown".into();
        let mut gone = peer(2, false, Liveness::Dead, true);
        gone.stale = true;
        gone.record.state.fsm.state = "something new".into();
        let mut view = ClusterView::default();
        for p in [hot.clone(), gone.clone()] {
            view.peers.insert(p.record.peer_id, p);
        }
        let all = history_samples(own, &view);
        assert_eq!(all.len(), 3);
        assert!(all[0].is_self);
        let h = all.iter().find(|n| n.node == "hot").expect("the hot peer");
        assert!(h.live && !h.is_self);
        assert_eq!(h.peer_id, hot.record.peer_id.to_base58());
        assert_eq!(
            (
                h.sample.hottest,
                h.sample.headroom,
                h.sample.state,
                h.sample.air
            ),
            (Some(88.0), Some(2.0), Some("shutdown"), true)
        );
        assert_eq!((h.sample.inlet, h.sample.ambient), (None, None));
        let g = all
            .iter()
            .find(|n| n.peer_id == gone.record.peer_id.to_base58())
            .expect("the dead peer");
        // No name in its record: the PeerId stands in; an unknown state
        // is no state.
        assert_eq!(g.node, g.peer_id);
        assert!(!g.live);
        assert_eq!(g.sample.state, None);
    }
}

#[cfg(test)]
mod stage_view_tests {
    use super::stage_view;
    use crate::fsm::{FsmConfig, Machine, Millis, Pending, Reason, StageGate, State};

    #[test]
    fn a_hold_with_no_lower_stage_left_is_not_shown_as_waiting() {
        let cfg = FsmConfig::default();
        let mut m = Machine::new(Millis(0));
        m.state = State::PreFail;
        m.trigger = Reason::Power;
        m.stage_waiting = true;
        let pending = |nodes| StageGate {
            power: Pending {
                nodes,
                lowest_stage: (nodes > 0).then_some(0),
            },
            ..StageGate::default()
        };
        m.stages = pending(2);
        let v = stage_view(&m, &cfg, 1);
        assert!(v.waiting);
        assert_eq!(v.lower_pending, 2);
        // The last compute node finished: the gate says 0 before the
        // machine's next tick runs the command; not "waiting" any more.
        m.stages = pending(0);
        let v = stage_view(&m, &cfg, 1);
        assert!(!v.waiting, "{v:?}");
        assert_eq!(v.lower_pending, 0);
        // Outside pre_fail nothing is held.
        m.stages = pending(2);
        m.state = State::Normal;
        assert!(!stage_view(&m, &cfg, 1).waiting);
    }
}

//! What the cluster layer hands to the agent: every known peer's latest
//! verified record with its liveness, and the merged counters.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use super::counters::Counters;
use super::record::Record;

/// Liveness of a peer, from how long ago its record version last advanced
/// (seen directly or relayed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Version advanced within `suspect_after`.
    Alive,
    /// No new version for `suspect_after`; not yet `dead_after`.
    Suspect,
    /// No new version for `dead_after`; the record is kept (stale) until
    /// `dead_after + retention`, then dropped.
    Dead,
}

impl Liveness {
    /// Label value (`alive`, `suspect`, `dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Dead => "dead",
        }
    }
}

/// Liveness timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessTimeouts {
    /// Alive -> suspect.
    pub suspect_after: Duration,
    /// Suspect -> dead (stale).
    pub dead_after: Duration,
    /// Dead -> dropped from the view.
    pub retention: Duration,
}

impl LivenessTimeouts {
    /// Liveness after `since` without a newer version.
    pub fn liveness(&self, since: Duration) -> Liveness {
        if since < self.suspect_after {
            Liveness::Alive
        } else if since < self.dead_after {
            Liveness::Suspect
        } else {
            Liveness::Dead
        }
    }

    /// Whether a record not advanced for `since` is dropped.
    pub fn expired(&self, since: Duration) -> bool {
        since >= self.dead_after.saturating_add(self.retention)
    }
}

/// One peer as seen by this node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterPeer {
    /// Latest verified record.
    pub record: Record,
    /// Alive, suspect or dead.
    pub liveness: Liveness,
    /// Dead peers' records are kept but stale.
    pub stale: bool,
    /// When the record's version last advanced here (monotonic clock).
    #[serde(skip)]
    pub last_seen: Instant,
    /// Age of the newest version when the view was made.
    pub age: Duration,
    /// Directly connected at the time of the view.
    pub connected: bool,
    /// The IP address of the direct connection, when connected. Votes are
    /// counted per host address (see [`ClusterView::voters`]).
    pub remote_ip: Option<std::net::IpAddr>,
}

/// Power corroboration from fresh (alive) peers: how many see the power
/// targets up, down, or have no verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PowerVotes {
    /// Alive peers whose policy says power is up.
    pub up: usize,
    /// Alive peers whose policy says power is down.
    pub down: usize,
    /// Alive peers without a verdict.
    pub unknown: usize,
}

impl PowerVotes {
    /// Alive peers with a verdict.
    pub fn voters(&self) -> usize {
        self.up + self.down
    }

    /// Strict majority of voters see power up.
    pub fn majority_up(&self) -> bool {
        self.up * 2 > self.voters()
    }

    /// Strict majority of voters see power down.
    pub fn majority_down(&self) -> bool {
        self.down * 2 > self.voters()
    }
}

/// The cluster as this node sees it. Published on a `watch` channel after
/// every change and at least every housekeeping tick.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterView {
    /// This node.
    #[serde(serialize_with = "ser_opt_peer")]
    pub local_peer_id: Option<PeerId>,
    /// This node's latest published record.
    pub local: Option<Record>,
    /// Every other known peer (including stale ones within retention).
    #[serde(serialize_with = "ser_peers")]
    pub peers: BTreeMap<PeerId, ClusterPeer>,
    /// Merged counters of all nodes ever seen (slots are kept when a dead
    /// peer's record is dropped, so totals never go backwards).
    pub counters: Counters,
    /// Addresses this node listens on.
    #[serde(serialize_with = "ser_addrs")]
    pub listen_addrs: Vec<Multiaddr>,
    /// Number of directly connected peers (any protocol).
    pub connected: usize,
    /// The hub this node sees (possibly itself): the peer that exchanges
    /// with every member every `sync_interval` (docs/protocol.md, section 6).
    #[serde(serialize_with = "ser_opt_peer")]
    pub relay: Option<PeerId>,
    /// The room roster this node holds (`cluster.operator_key` and a
    /// roster received). While set, only its members' records are kept, so
    /// every alive peer is a member.
    #[serde(skip)]
    pub roster: Option<crate::cluster::roster::Roster>,
    /// Identities outside the roster that contacted this node directly
    /// (newest first): PeerId, time since, claimed node name, address.
    #[serde(skip)]
    pub candidates: Vec<Candidate>,
}

/// A non-member that contacted this node (for `coolmesh roster list`).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Its identity.
    pub peer_id: PeerId,
    /// Time since its last contact.
    pub since: Duration,
    /// The node name its own (verified) record claims, if it sent one.
    pub node: Option<String>,
    /// The address it connected from, if still connected.
    pub remote_ip: Option<std::net::IpAddr>,
}

fn ser_opt_peer<S: serde::Serializer>(p: &Option<PeerId>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.to_base58()),
        None => s.serialize_none(),
    }
}

fn ser_peers<S: serde::Serializer>(
    m: &BTreeMap<PeerId, ClusterPeer>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (k.to_base58(), v)))
}

fn ser_addrs<S: serde::Serializer>(a: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(a.iter().map(|m| m.to_string()))
}

impl ClusterView {
    /// Peers whose liveness is `Alive`.
    pub fn alive_peers(&self) -> impl Iterator<Item = &ClusterPeer> {
        self.peers
            .values()
            .filter(|p| p.liveness == Liveness::Alive)
    }

    /// Power verdicts of alive peers (this node excluded): the input of the
    /// state machine's corroboration rule.
    pub fn power_votes(&self) -> PowerVotes {
        let mut v = PowerVotes::default();
        for p in self.alive_peers() {
            match p.record.state.power_up {
                Some(true) => v.up += 1,
                Some(false) => v.down += 1,
                None => v.unknown += 1,
            }
        }
        v
    }

    /// Alive peers reporting a sensor at or above critical.
    pub fn overheating(&self) -> Vec<PeerId> {
        self.alive_peers()
            .filter(|p| p.record.state.thermal.critical)
            .map(|p| p.record.peer_id)
            .collect()
    }

    /// Alive peers whose projected time to critical is at most `within`
    /// (heating fast), critical ones included.
    pub fn heating_fast(&self, within: Duration) -> Vec<PeerId> {
        let limit = within.as_secs_f64();
        self.alive_peers()
            .filter(|p| {
                p.record.state.thermal.critical
                    || p.record
                        .state
                        .thermal
                        .time_to_critical
                        .is_some_and(|t| t <= limit)
            })
            .map(|p| p.record.peer_id)
            .collect()
    }

    /// Per power target, the observations of alive peers (this node
    /// excluded): target -> votes (`unknown` stays 0).
    pub fn target_votes(&self) -> BTreeMap<String, PowerVotes> {
        let mut m: BTreeMap<String, PowerVotes> = BTreeMap::new();
        for p in self.alive_peers() {
            for o in &p.record.state.power {
                let v = m.entry(o.target.clone()).or_default();
                if o.up {
                    v.up += 1;
                } else {
                    v.down += 1;
                }
            }
        }
        m
    }

    /// The peers that vote: alive, **directly connected**, and at most one
    /// per host address (the smallest PeerId of each address). Identities
    /// cost nothing to mint; a host address does. Relayed records (a peer
    /// we are not connected to) inform metrics and the status page but
    /// never vote. Loopback addresses are not merged: peers on this very
    /// machine are tests and the demo. With a room roster, every alive
    /// member votes instead (see [`crate::cluster::roster`]).
    pub fn voters(&self) -> Vec<&ClusterPeer> {
        if self.roster.is_some() {
            // The operator vouched for every identity in the roster, and no
            // other identity's record is kept: each alive member votes once,
            // directly connected or relayed.
            return self.alive_peers().collect();
        }
        let mut seen = std::collections::HashSet::new();
        // BTreeMap order: the smallest PeerId of each address wins.
        self.alive_peers()
            .filter(|p| p.connected)
            .filter(|p| match p.remote_ip {
                Some(ip) if ip.is_loopback() => true,
                Some(ip) => seen.insert(ip),
                None => false,
            })
            .collect()
    }

    /// Per-target corroboration: the votes of alive peers on `targets` (the
    /// targets this node sees down, or all of its targets), counted only
    /// from peers that probe at least one of them. Each such peer casts one
    /// vote: `policy` (this node's) applied to what that peer sees of the
    /// shared targets. A peer on another circuit, probing other targets,
    /// casts none: its "up" says nothing about this node's mains. Only
    /// [`ClusterView::voters`] vote.
    pub fn votes_on(&self, targets: &[String], policy: crate::power::Policy) -> PowerVotes {
        votes_among(&self.voters(), targets, policy)
    }
}

/// [`ClusterView::votes_on`] over voters already selected.
pub fn votes_among(
    voters: &[&ClusterPeer],
    targets: &[String],
    policy: crate::power::Policy,
) -> PowerVotes {
    let mut v = PowerVotes::default();
    for p in voters {
        let seen: Vec<Option<bool>> = p
            .record
            .state
            .power
            .iter()
            .filter(|o| targets.contains(&o.target))
            .map(|o| Some(o.up))
            .collect();
        if seen.is_empty() {
            continue;
        }
        match policy.evaluate_votes(&seen) {
            Some(true) => v.up += 1,
            Some(false) => v.down += 1,
            None => v.unknown += 1,
        }
    }
    v
}

impl ClusterView {
    /// Value of a named counter over all nodes (this one included).
    pub fn counters_total(&self, name: &str) -> Option<i128> {
        self.counters.value(name)
    }

    /// Offload candidates: alive (not suspect, not stale), not overheating
    /// peers with a known headroom, largest headroom first (ties by PeerId).
    pub fn ranked_by_headroom(&self) -> Vec<&ClusterPeer> {
        let mut v: Vec<&ClusterPeer> = self
            .alive_peers()
            .filter(|p| {
                !p.record.state.thermal.critical && p.record.state.thermal.headroom.is_some()
            })
            .collect();
        v.sort_by(|a, b| {
            let ha = a.record.state.thermal.headroom.unwrap_or(f64::NEG_INFINITY);
            let hb = b.record.state.thermal.headroom.unwrap_or(f64::NEG_INFINITY);
            hb.total_cmp(&ha)
                .then_with(|| a.record.peer_id.cmp(&b.record.peer_id))
        });
        v
    }

    /// Count of peers by liveness: (alive, suspect, dead).
    pub fn liveness_counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for p in self.peers.values() {
            match p.liveness {
                Liveness::Alive => c.0 += 1,
                Liveness::Suspect => c.1 += 1,
                Liveness::Dead => c.2 += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::{LocalState, ThermalReport};

    #[test]
    fn liveness_table() {
        let t = LivenessTimeouts {
            suspect_after: Duration::from_secs(4),
            dead_after: Duration::from_secs(8),
            retention: Duration::from_secs(3600),
        };
        let ms = Duration::from_millis;
        let table = [
            (ms(0), Liveness::Alive, false),
            (ms(3999), Liveness::Alive, false),
            (ms(4000), Liveness::Suspect, false),
            (ms(7999), Liveness::Suspect, false),
            (ms(8000), Liveness::Dead, false),
            (ms(8000 + 3_599_999), Liveness::Dead, false),
            (ms(8000 + 3_600_000), Liveness::Dead, true),
            (Duration::MAX, Liveness::Dead, true),
        ];
        for (since, want, expired) in table {
            assert_eq!(t.liveness(since), want, "{since:?}");
            assert_eq!(t.expired(since), expired, "{since:?}");
        }
        let huge = LivenessTimeouts {
            retention: Duration::MAX,
            ..t
        };
        assert!(!huge.expired(Duration::from_secs(1 << 40)));
    }

    fn peer(
        headroom: Option<f64>,
        critical: bool,
        liveness: Liveness,
        power_up: Option<bool>,
    ) -> ClusterPeer {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let local = LocalState {
            thermal: ThermalReport {
                headroom,
                critical,
                ..Default::default()
            },
            power_up,
            ..Default::default()
        };
        ClusterPeer {
            record: Record::from_local(&local, "c", key.public().to_peer_id(), 1, &[], 0),
            liveness,
            stale: liveness == Liveness::Dead,
            last_seen: Instant::now(),
            age: Duration::ZERO,
            connected: true,
            remote_ip: Some(std::net::Ipv4Addr::new(10, 0, 0, 1).into()),
        }
    }

    #[test]
    fn one_vote_per_host_address_and_only_direct_peers() {
        let ip = |d: u8| Some(std::net::IpAddr::from([10, 0, 0, d]));
        let mut v = ClusterView::default();
        let mut add = |remote_ip, connected, up| {
            let mut p = peer(Some(20.0), false, Liveness::Alive, Some(up));
            p.remote_ip = remote_ip;
            p.connected = connected;
            p.record.state.power = vec![crate::cluster::record::TargetObservation {
                target: "tcp://ups:1".into(),
                up,
                at_ms: 1,
            }];
            v.peers.insert(p.record.peer_id, p);
        };
        // Two honest hosts see the target down.
        add(ip(1), true, false);
        add(ip(2), true, false);
        // One attacker host with five identities, all saying "up".
        for _ in 0..5 {
            add(ip(9), true, true);
        }
        // Twenty relayed identities (not connected) saying "up".
        for _ in 0..20 {
            add(None, false, true);
        }
        assert_eq!(v.alive_peers().count(), 27);
        assert_eq!(v.voters().len(), 3, "one per host, direct only");
        let votes = v.votes_on(&["tcp://ups:1".into()], crate::power::Policy::Any);
        assert_eq!((votes.up, votes.down), (1, 2));
        // Peers on this very machine (tests, the demo) are not merged.
        let mut w = ClusterView::default();
        for _ in 0..3 {
            let mut p = peer(Some(20.0), false, Liveness::Alive, Some(true));
            p.remote_ip = Some(std::net::IpAddr::from([127, 0, 0, 1]));
            w.peers.insert(p.record.peer_id, p);
        }
        assert_eq!(w.voters().len(), 3);
    }

    #[test]
    fn queries() {
        let mut v = ClusterView::default();
        for p in [
            peer(Some(10.0), false, Liveness::Alive, Some(true)),
            peer(Some(30.0), false, Liveness::Alive, Some(true)),
            peer(Some(50.0), false, Liveness::Suspect, Some(false)),
            peer(Some(60.0), true, Liveness::Alive, Some(false)),
            peer(None, false, Liveness::Alive, None),
            peer(Some(90.0), false, Liveness::Dead, Some(false)),
        ] {
            v.peers.insert(p.record.peer_id, p);
        }
        let ranked: Vec<f64> = v
            .ranked_by_headroom()
            .iter()
            .filter_map(|p| p.record.state.thermal.headroom)
            .collect();
        assert_eq!(ranked, vec![30.0, 10.0]);
        assert_eq!(v.overheating().len(), 1);
        assert_eq!(v.heating_fast(Duration::from_secs(60)).len(), 1);
        assert!(v.target_votes().is_empty());
        let votes = v.power_votes();
        assert_eq!(
            votes,
            PowerVotes {
                up: 2,
                down: 1,
                unknown: 1
            }
        );
        assert!(votes.majority_up());
        assert!(!votes.majority_down());
        assert_eq!(v.liveness_counts(), (4, 1, 1));
        assert_eq!(v.counters_total("x"), None);
    }
}

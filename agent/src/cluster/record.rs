//! Records: what each agent publishes about itself, as the rest of the
//! cluster layer handles them in memory.
//!
//! A [`Record`] is owned by exactly one node; [`LocalState`] is what the
//! agent hands over to make this node's. On the wire a record travels as a
//! [`SignedRecord`](super::wire::SignedRecord): the versioned CBOR payload
//! and the owner's Ed25519 signature. The wire layer ([`super::wire`]) is
//! the one place that converts between the two and checks signatures; this
//! module holds the field limits both sides enforce, the building of this
//! node's record ([`Record::from_local`]) and the [`RejectReason`]s.
//! Schema and rules: `docs/protocol.md`.

use std::collections::BTreeMap;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use super::counters::{CounterKind, CounterSlot, BUILTIN};

/// Field limits, enforced when building our own record (truncating) and
/// when accepting others' (rejecting as `malformed`).
pub mod limits {
    /// Cluster name, bytes.
    pub const CLUSTER: usize = 64;
    /// Node name, bytes.
    pub const NODE: usize = 256;
    /// State-machine state, bytes.
    pub const FSM_STATE: usize = 64;
    /// State-machine reason, bytes.
    pub const FSM_REASON: usize = 1024;
    /// Power observations per record.
    pub const POWER: usize = 32;
    /// Power target, bytes.
    pub const TARGET: usize = 256;
    /// Counter names per record.
    pub const COUNTERS: usize = 256;
    /// Counter name, bytes.
    pub const COUNTER_NAME: usize = 128;
    /// Listen addresses per record.
    pub const ADDRS: usize = 16;
    /// One binary multiaddr, bytes.
    pub const ADDR: usize = 256;
    /// The published HTTP address (`host:port`), bytes: a full DNS name
    /// (253) plus a port.
    pub const HTTP: usize = 260;
}

/// Is `s` a usable `host:port` for Prometheus: an IP socket address
/// (`10.0.0.12:10027`, `[2001:db8::12]:10027`) or a DNS name and a port
/// 1-65535, within [`limits::HTTP`]. Checked on our own config
/// (`http.advertise`) and on every received record (key 12): a peer cannot
/// make us hand Prometheus a URL with a path, credentials or spaces in it.
pub fn valid_http_address(s: &str) -> bool {
    if s.is_empty() || s.len() > limits::HTTP {
        return false;
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return sa.port() != 0;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    // A DNS name (RFC 1123 labels). An IPv6 address without brackets, or
    // with a bad port, fails here too.
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    port_ok && host_ok
}

/// This node's thermal summary as published to peers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThermalReport {
    /// Hottest sensor, degrees C.
    pub hottest: Option<f64>,
    /// Minimum over sensors of (critical - current), degrees C.
    pub headroom: Option<f64>,
    /// Trend of the hottest sensor, degrees C per minute.
    pub trend: Option<f64>,
    /// Projected seconds until critical while rising.
    pub time_to_critical: Option<f64>,
    /// At least one sensor is at or above its critical threshold.
    pub critical: bool,
    /// The owner's cooling vote (a sustained rise not explained by its
    /// workload, see `crate::heating`). `None` from agents older than
    /// format 1.1, which did not send it: their vote is read from the trend.
    pub vote: Option<bool>,
    /// The owner votes by inlet or ambient air sensors (double weight).
    pub air: bool,
}

impl From<&crate::thermal::ThermalSummary> for ThermalReport {
    fn from(s: &crate::thermal::ThermalSummary) -> Self {
        ThermalReport {
            hottest: s.hottest_celsius,
            headroom: s.headroom_celsius,
            trend: s.trend_celsius_per_minute,
            time_to_critical: s.time_to_critical_seconds,
            critical: s.critical,
            vote: Some(s.cooling_vote),
            air: s.air,
        }
    }
}

/// One power target as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetObservation {
    /// Target as configured (e.g. `icmp://10.0.0.254`).
    pub target: String,
    /// Last probe succeeded.
    pub up: bool,
    /// Unix time of the last probe, milliseconds.
    pub at_ms: u64,
}

/// The state machine's state as published to peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsmSummary {
    /// `normal`, `pre_fail`, `shutdown`, `local_fault`, `maintenance`.
    pub state: String,
    /// Why the machine is in this state.
    pub reason: String,
    /// Unix ms at which a pending transition fires (grace end), if any.
    pub deadline_ms: Option<u64>,
    /// In `pre_fail` and `shutdown`: the trigger whose grace runs
    /// (`power`, `cooling`, `overheat`), unlike `reason` never
    /// `prediction`. Empty elsewhere and from older agents. Staged
    /// shutdown ([`crate::stage`]) waits only for lower stages going down
    /// for the same trigger.
    pub trigger: String,
    /// In `shutdown`: the command finished (`Some(true)`) or not yet
    /// (`Some(false)`, e.g. the drain still runs). `None` from older
    /// agents, and outside `shutdown`.
    pub done: Option<bool>,
}

/// What a node publishes about itself: the content of its record. The
/// agent hands this node's over; the cluster layer makes it a [`Record`]
/// (adding version, identity, addresses and timestamp), and every peer's
/// record carries one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalState {
    /// Human-readable node name (default: hostname).
    pub node: String,
    /// Thermal summary.
    pub thermal: ThermalReport,
    /// Per-target power observations.
    pub power: Vec<TargetObservation>,
    /// Result of the power policy (any/all/majority), `None` if unknown.
    pub power_up: Option<bool>,
    /// State machine.
    pub fsm: FsmSummary,
    /// The owner's own counter slots (name -> slot).
    pub counters: BTreeMap<String, CounterSlot>,
    /// The owner's HTTP (exporter) address, `host:port`, for Prometheus'
    /// discovery (`GET /v1/http_sd`); `None` from agents that publish none
    /// (older than this field, record key 12).
    #[serde(default)]
    pub http: Option<String>,
    /// Shutdown stage (`shutdown.stage`, record key 13; 0 from older
    /// agents). See [`crate::stage`].
    pub stage: u32,
    /// This node's MAC address (`power_on.mac`, record key 14), for the
    /// node that wakes the room ([`crate::power_on`]).
    pub mac: Option<[u8; 6]>,
    /// This node may wake others (`power_on.enabled`, record key 14).
    pub waker: bool,
    /// The owner runs SWIM (`cluster.swim`, record key 15): its liveness
    /// may come from SWIM ([`crate::cluster::swim`]). Set by the cluster
    /// layer, not by the agent.
    pub swim: bool,
}

/// A verified record of one node: what the owner published ([`LocalState`],
/// within the [`limits`]) and the envelope that identifies and orders it.
/// The signature stays with the bytes ([`SignedRecord`](super::wire::SignedRecord)).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    /// Monotonic per owner; larger wins.
    pub version: u64,
    /// Cluster name; records of another cluster are rejected.
    pub cluster: String,
    /// Owner (and signer).
    #[serde(serialize_with = "ser_peer_id")]
    pub peer_id: PeerId,
    /// What the owner published.
    #[serde(flatten)]
    pub state: LocalState,
    /// Owner's listen addresses (used to complete the mesh).
    #[serde(serialize_with = "ser_addrs")]
    pub addrs: Vec<Multiaddr>,
    /// Owner's wall clock when this version was made, unix ms.
    pub updated_ms: u64,
}

fn ser_peer_id<S: serde::Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_base58())
}

fn ser_addrs<S: serde::Serializer>(a: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(a.iter().map(|m| m.to_string()))
}

/// Why a record or message was rejected; the label of
/// `coolmesh_gossip_rejected_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Signature does not verify with the owner's key, or the key is not
    /// derivable from the PeerId.
    BadSignature,
    /// A counter slot owned by someone other than the signer.
    ForeignSlot,
    /// Undecodable or out-of-limits content.
    Malformed,
    /// Frame or record above its size limit.
    Oversized,
    /// Peer not in the allowlist, or record of another cluster.
    Unauthorized,
    /// Peer exceeded the inbound request rate.
    RateLimited,
    /// An incoming connection failed its handshake (wrong or missing PSK,
    /// garbage on the port, noise or multiplexer failure, timeout) or was
    /// refused by a connection limit.
    Handshake,
    /// A valid record of a new identity while the member table is full of
    /// live members (`max_members`).
    Capacity,
    /// A valid record of a new identity, relayed by a peer that already
    /// introduced its budget of new identities this minute.
    NewIdentities,
    /// A record of an identity outside the room roster, or any record
    /// relayed by one (`cluster.operator_key` and a roster).
    NotInRoster,
}

impl RejectReason {
    /// Every reason, for pre-initialising metric series.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::BadSignature,
        RejectReason::ForeignSlot,
        RejectReason::Malformed,
        RejectReason::Oversized,
        RejectReason::Unauthorized,
        RejectReason::RateLimited,
        RejectReason::Handshake,
        RejectReason::Capacity,
        RejectReason::NewIdentities,
        RejectReason::NotInRoster,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadSignature => "bad_signature",
            RejectReason::ForeignSlot => "foreign_slot",
            RejectReason::Malformed => "malformed",
            RejectReason::Oversized => "oversized",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::Handshake => "handshake",
            RejectReason::Capacity => "capacity",
            RejectReason::NewIdentities => "new_identities",
            RejectReason::NotInRoster => "not_in_roster",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

impl Record {
    /// Build this node's record from what the agent published, truncating
    /// anything over the [`limits`] and dropping non-finite numbers, so the
    /// result always encodes within [`MAX_RECORD_BYTES`](super::wire::record::MAX_RECORD_BYTES).
    pub fn from_local(
        local: &LocalState,
        cluster: &str,
        peer_id: PeerId,
        version: u64,
        addrs: &[Multiaddr],
        updated_ms: u64,
    ) -> Record {
        // The built-in counters first, so that user counters can never push
        // them out of the record (the agent refuses new names past the
        // limit anyway, see `CounterStore::add`).
        let builtin = |n: &str| BUILTIN.contains(&n);
        let mut names: Vec<(&String, &CounterSlot)> = local
            .counters
            .iter()
            .filter(|(name, _)| name.len() <= limits::COUNTER_NAME && !name.is_empty())
            .collect();
        names.sort_by_key(|(name, _)| !builtin(name));
        let counters = names
            .into_iter()
            .take(limits::COUNTERS)
            .map(|(name, s)| {
                let mut s = *s;
                if s.kind == CounterKind::G {
                    s.n = 0;
                }
                (name.clone(), s)
            })
            .collect();
        Record {
            version,
            cluster: truncate(cluster, limits::CLUSTER),
            peer_id,
            state: LocalState {
                node: truncate(&local.node, limits::NODE),
                thermal: ThermalReport {
                    hottest: finite(local.thermal.hottest),
                    headroom: finite(local.thermal.headroom),
                    trend: finite(local.thermal.trend),
                    time_to_critical: finite(local.thermal.time_to_critical),
                    critical: local.thermal.critical,
                    vote: local.thermal.vote,
                    air: local.thermal.air,
                },
                power: local
                    .power
                    .iter()
                    .take(limits::POWER)
                    .map(|o| TargetObservation {
                        target: truncate(&o.target, limits::TARGET),
                        up: o.up,
                        at_ms: o.at_ms,
                    })
                    .collect(),
                power_up: local.power_up,
                fsm: FsmSummary {
                    state: truncate(&local.fsm.state, limits::FSM_STATE),
                    reason: truncate(&local.fsm.reason, limits::FSM_REASON),
                    deadline_ms: local.fsm.deadline_ms,
                    trigger: truncate(&local.fsm.trigger, limits::FSM_STATE),
                    done: local.fsm.done,
                },
                counters,
                // Never truncated: a cut address is a wrong one. An invalid
                // one is left out, as peers would reject the whole record.
                http: local.http.clone().filter(|h| valid_http_address(h)),
                stage: local.stage,
                mac: local.mac,
                waker: local.waker,
                swim: local.swim,
            },
            addrs: addrs
                .iter()
                .filter(|a| a.as_ref().len() <= limits::ADDR)
                .take(limits::ADDRS)
                .cloned()
                .collect(),
            updated_ms,
        }
    }
}

/// Records for the tests of the cluster layer.
#[cfg(test)]
pub(crate) mod testing {
    use libp2p::identity::Keypair;

    use super::*;

    pub(crate) fn sample_local() -> LocalState {
        let mut counters = BTreeMap::new();
        counters.insert(
            "overheat".to_string(),
            CounterSlot {
                kind: CounterKind::G,
                p: 3,
                n: 0,
            },
        );
        counters.insert(
            "jobs".to_string(),
            CounterSlot {
                kind: CounterKind::PN,
                p: 10,
                n: 4,
            },
        );
        LocalState {
            node: "rack3-srv12".into(),
            thermal: ThermalReport {
                hottest: Some(71.5),
                headroom: Some(28.5),
                trend: Some(0.4),
                time_to_critical: Some(4275.0),
                critical: false,
                vote: Some(false),
                air: true,
            },
            power: vec![TargetObservation {
                target: "icmp://10.0.0.254".into(),
                up: true,
                at_ms: 1_700_000_000_000,
            }],
            power_up: Some(true),
            fsm: FsmSummary {
                state: "normal".into(),
                reason: "power up".into(),
                deadline_ms: None,
                trigger: String::new(),
                done: None,
            },
            counters,
            http: None,
            stage: 1,
            mac: Some([2, 0, 0, 0, 0, 1]),
            waker: false,
            swim: true,
        }
    }

    pub(crate) fn record_for(key: &Keypair, version: u64) -> Record {
        let addrs: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/9877".parse().unwrap()];
        Record::from_local(
            &sample_local(),
            "room-1",
            key.public().to_peer_id(),
            version,
            &addrs,
            1_700_000_000_123,
        )
    }
}

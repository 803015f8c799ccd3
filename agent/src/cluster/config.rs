//! Cluster settings. Every field has a default suited to one machine room of
//! up to about a hundred servers on one LAN; the trade-offs are documented
//! per field and measured by `tests/cluster_sim.rs` (25 nodes, 100 ms
//! one-way latency, 100 counter increments/s: about 1.5 messages per
//! increment, median visibility about 0.6 s, maximum about 1 s).

use std::collections::HashSet;
use std::time::Duration;

use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};

use super::engine::EngineConfig;
use super::view::LivenessTimeouts;
use super::wire::DEFAULT_MAX_FRAME_BYTES;

/// Settings of the cluster layer.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Cluster name, carried in every record and request; records and
    /// requests of another cluster are rejected (`unauthorized`). Default
    /// `"coolmesh"`. Keeps two rooms on one LAN apart even without a PSK.
    pub name: String,
    /// Listen addresses. Default `/ip4/127.0.0.1/tcp/9877` (a room needs a
    /// routable address, which the operator names). TCP only (no QUIC).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers, dialled at start and redialled with backoff while
    /// not connected. A `/p2p/<id>` suffix is optional. Default empty.
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS discovery on the LAN. Default on. Off for routed networks or
    /// where multicast is filtered; then use `bootstrap`.
    pub mdns: bool,
    /// mDNS query interval. Default 3 s (the crate's default is 5 min): a
    /// new server is found within seconds, at the cost of one small
    /// multicast query per node per interval.
    pub mdns_query_interval: Duration,
    /// Private network key (`swarm.key`): connections without the same key
    /// fail before any libp2p protocol runs. Default none.
    pub psk: Option<PreSharedKey>,
    /// If set, only these PeerIds may connect, and only their records are
    /// accepted; others are refused and counted as `unauthorized`.
    /// Default none (anyone who passes the PSK, if any).
    pub allowlist: Option<HashSet<PeerId>>,
    /// The room operator's public key. With it, the newest roster signed by
    /// that key (from the operator's API, a peer, or `roster_path`) decides
    /// who is a member: records of other identities are refused, never
    /// vote and are never relayed, and their connections are closed.
    /// Default none: membership is the PSK (and `allowlist`), and votes
    /// are one per host address from direct peers.
    pub operator: Option<libp2p::identity::PublicKey>,
    /// Take room commands from members (`/coolmesh/room/1.0.0`; see
    /// [`super::room`]). Default true; with `operator` set they must be
    /// signed by it.
    pub room_commands: bool,
    /// Where the roster is stored (atomically) and loaded from at start.
    /// Default none (memory only; it comes back from the peers).
    pub roster_path: Option<std::path::PathBuf>,
    /// Exchange with the relay (see docs/protocol.md) this often. Default
    /// 400 ms. Bounds propagation: a change is everywhere within about two
    /// intervals plus two one-way latencies. Costs 2 messages per node per
    /// interval, so halving it doubles the idle traffic.
    pub sync_interval: Duration,
    /// Random anti-entropy exchanges this often. Default 2 s. Repairs
    /// disagreement about the relay and keeps spreading if it is gone; each
    /// costs 2 messages per peer contacted.
    pub anti_entropy_interval: Duration,
    /// Random peers per anti-entropy round. Default 1. More peers repair
    /// faster without a relay, at 2 messages each per round.
    pub fanout: usize,
    /// Run SWIM membership (`/coolmesh/swim/1.0.0`, docs/scale.md step 1)
    /// beside the record exchange, and say so in our record (key 15).
    /// Default off until the rest of the scale plan lands. On: a member
    /// that also runs it and crashes is dead everywhere within a few probe
    /// periods (about 5-7 s) instead of at `dead_after` of record age, at
    /// a constant ~0.2 KiB/s per node; members that do not run it are
    /// judged by their records as before. SWIM can only make a member dead
    /// sooner: a record that advances makes it alive again.
    pub swim: bool,
    /// A new version of our own record is published at least this often,
    /// even without changes: liveness is "the version advances". Default
    /// 1 s; must be well below `suspect_after`.
    pub refresh_interval: Duration,
    /// A peer whose version has not advanced for this long is `suspect`.
    /// Default 4 s (4 missed refreshes): short enough for the state
    /// machine's corroboration, long enough to ride out a lost exchange.
    pub suspect_after: Duration,
    /// ... and `dead` (stale) after this long. Default 8 s, so death is
    /// detected within 10 s.
    pub dead_after: Duration,
    /// Dead peers' records stay visible (stale) this long, then are
    /// dropped; their counter slots are kept. Default 1 h.
    pub retention: Duration,
    /// Largest frame accepted or sent (requests and responses). Default
    /// 1 MiB (room for ~1500 typical records); larger frames are refused
    /// unread (`oversized`). Records themselves are limited to 64 KiB.
    pub max_frame_bytes: usize,
    /// An exchange without a response after this long fails. Default 5 s.
    pub request_timeout: Duration,
    /// First redial delay of a bootstrap peer or a member we lost; doubled
    /// per failure up to `redial_max`, with +-20% jitter. Default 1 s.
    pub redial_min: Duration,
    /// Largest redial delay. Default 30 s.
    pub redial_max: Duration,
    /// Connections without traffic are closed after this long. Default 1 h:
    /// members keep a full mesh (the relay must be directly connected).
    pub idle_connection_timeout: Duration,
    /// Inbound requests per second allowed per peer (token bucket); excess
    /// requests are dropped and counted as `rate_limited`. Default 20
    /// (normal load is about 3 per second per peer).
    pub inbound_rate: u32,
    /// Token bucket depth. Default 40.
    pub inbound_burst: u32,
    /// Connection and handshake caps (`[cluster]` keys of the same names).
    pub limits: ConnLimits,
}

/// Caps that keep a node's file descriptors, memory and CPU bounded when a
/// peer (or a scanner, or a host without the key) misbehaves. Each field is
/// a `[cluster]` key of the same name; the defaults suit a room of up to a
/// few hundred servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// A TCP connection must finish the PSK, noise and yamux handshakes
    /// within this long. Default 5 s: a LAN handshake takes milliseconds,
    /// and a connection that sends nothing (or half a PSK nonce) pins a file
    /// descriptor and a `max_pending_incoming` slot until it expires. Longer
    /// only helps over very slow links.
    pub handshake_timeout: Duration,
    /// Incoming connections still in their handshake, at most. Default 32;
    /// more are closed at once. Bounds the file descriptors a host without
    /// the key can hold (with `handshake_timeout`: at most 32 per 5 s).
    /// Trade-off: while a flood fills the slots, honest peers' incoming
    /// dials are refused too; they still connect because both sides dial.
    pub max_pending_incoming: u32,
    /// Established incoming connections, at most. Default 256: a room of
    /// 100 agents needs about 100 (a full mesh, half dialled by each side).
    /// Raise it for bigger rooms; each connection costs a descriptor and,
    /// under attack, up to a few MiB of buffers.
    pub max_incoming: u32,
    /// Established connections per peer, at most. Default 2: a simultaneous
    /// dial from both sides legitimately makes two; more only multiply the
    /// streams (and buffers) one peer can hold open.
    pub max_connections_per_peer: u32,
    /// Concurrent sync streams (in and out) per connection. Default 8:
    /// members use one to three at a time. Each inbound stream may hold one
    /// frame (up to `max_frame_bytes`) being read, so this bounds a flooding
    /// peer's memory at `max_connections_per_peer x this x max_frame_bytes`;
    /// streams beyond it are reset unread.
    pub max_streams_per_connection: usize,
    /// Members (other nodes' records) this node keeps, at most. Default
    /// 1024. A member holding the PSK can sign records for as many new
    /// identities as it likes (unless `allowlist` is set); without a cap
    /// each costs up to 64 KiB for `retention`. When the table is full, a
    /// new identity takes the slot of the member dead the longest, or is
    /// refused (`capacity`) if every member is alive or suspect. Trade-off:
    /// while a flood of identities holds every slot, an honest new node is
    /// refused until some of them die (8 s after they stop advancing); the
    /// `allowlist` closes that hole.
    pub max_members: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            handshake_timeout: Duration::from_secs(5),
            max_pending_incoming: 32,
            max_incoming: 256,
            max_connections_per_peer: 2,
            max_streams_per_connection: 8,
            max_members: 1024,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "coolmesh".to_string(),
            // Loopback: nothing listens on a wide address unless the
            // operator asks for it (`cluster.listen`).
            listen: vec![Multiaddr::empty()
                .with(libp2p::multiaddr::Protocol::Ip4([127, 0, 0, 1].into()))
                .with(libp2p::multiaddr::Protocol::Tcp(9877))],
            bootstrap: Vec::new(),
            mdns: true,
            mdns_query_interval: Duration::from_secs(3),
            psk: None,
            allowlist: None,
            operator: None,
            room_commands: true,
            roster_path: None,
            sync_interval: Duration::from_millis(400),
            anti_entropy_interval: Duration::from_secs(2),
            fanout: 1,
            swim: false,
            refresh_interval: Duration::from_secs(1),
            suspect_after: Duration::from_secs(4),
            dead_after: Duration::from_secs(8),
            retention: Duration::from_secs(3600),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            request_timeout: Duration::from_secs(5),
            redial_min: Duration::from_secs(1),
            redial_max: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(3600),
            inbound_rate: 20,
            inbound_burst: 40,
            limits: ConnLimits::default(),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cluster config: {0}")]
pub struct ConfigError(pub String);

impl ClusterConfig {
    /// Check the relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: &str| Err(ConfigError(s.to_string()));
        if self.name.is_empty() || self.name.len() > super::record::limits::CLUSTER {
            return err("name must be 1..=64 bytes");
        }
        if self.sync_interval.is_zero()
            || self.anti_entropy_interval.is_zero()
            || self.refresh_interval.is_zero()
        {
            return err("intervals must be > 0");
        }
        if self.refresh_interval >= self.suspect_after {
            return err("refresh_interval must be < suspect_after");
        }
        if self.suspect_after >= self.dead_after {
            return err("suspect_after must be < dead_after");
        }
        if self.max_frame_bytes < 2 * super::wire::MAX_RECORD_BYTES {
            return err("max_frame_bytes must be >= 128 KiB (two maximal records)");
        }
        if self.redial_min.is_zero() || self.redial_min > self.redial_max {
            return err("redial_min must be > 0 and <= redial_max");
        }
        if self.inbound_rate == 0 || self.inbound_burst == 0 {
            return err("inbound_rate and inbound_burst must be > 0");
        }
        let l = &self.limits;
        if l.handshake_timeout.is_zero()
            || l.max_pending_incoming == 0
            || l.max_incoming == 0
            || l.max_connections_per_peer == 0
            || l.max_streams_per_connection == 0
            || l.max_members == 0
        {
            return err("connection limits and handshake_timeout must be > 0");
        }
        if self.listen.is_empty() {
            return err("listen must not be empty");
        }
        Ok(())
    }

    /// The engine's part of the settings.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            cluster: self.name.clone(),
            refresh_interval: self.refresh_interval,
            timeouts: self.timeouts(),
            max_frame_bytes: self.max_frame_bytes,
            allowlist: self.allowlist.clone(),
            max_members: self.limits.max_members,
            new_identities_per_minute: 120,
            new_identities_burst: 256,
            operator: self.operator.clone(),
            insecure_skip_signature_check: false,
        }
    }

    /// Liveness timeouts.
    pub fn timeouts(&self) -> LivenessTimeouts {
        LivenessTimeouts {
            suspect_after: self.suspect_after,
            dead_after: self.dead_after,
            retention: self.retention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_detect_death_within_10s() {
        let c = ClusterConfig::default();
        c.validate().unwrap();
        assert!(c.dead_after <= Duration::from_secs(10));
        assert_eq!(c.listen[0].to_string(), "/ip4/127.0.0.1/tcp/9877");
    }

    #[test]
    fn invalid_relations_are_refused() {
        let bad = [
            ClusterConfig {
                suspect_after: Duration::from_secs(9),
                ..Default::default()
            },
            ClusterConfig {
                refresh_interval: Duration::from_secs(5),
                ..Default::default()
            },
            ClusterConfig {
                name: String::new(),
                ..Default::default()
            },
            ClusterConfig {
                max_frame_bytes: 1000,
                ..Default::default()
            },
            ClusterConfig {
                sync_interval: Duration::ZERO,
                ..Default::default()
            },
            ClusterConfig {
                limits: ConnLimits {
                    max_connections_per_peer: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
            ClusterConfig {
                limits: ConnLimits {
                    handshake_timeout: Duration::ZERO,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}

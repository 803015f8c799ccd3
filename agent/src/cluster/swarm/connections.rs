//! Connections: swarm and behaviour events (listen addresses, connections
//! opened and closed, failed handshakes, identify, mDNS) and dialling
//! (bootstrap addresses, members at their published addresses, peers found
//! by mDNS), each with backoff.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{allow_block_list, identify, mdns, Multiaddr, PeerId};
use rand::Rng;

use crate::cluster::record::RejectReason;
use crate::cluster::view::Liveness;
use crate::cluster::wire::{RequestKind, PROTOCOL};

use super::BehaviourEvent;
use super::{Node, NON_MEMBER_QUARANTINE};

pub(super) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

pub(super) fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// A static bootstrap address and its redial state.
pub(super) struct Boot {
    pub(super) addr: Multiaddr,
    pub(super) peer: Option<PeerId>,
    pub(super) pending: Option<ConnectionId>,
    pub(super) next: Instant,
    pub(super) backoff: Duration,
    pub(super) is_self: bool,
}

/// Limits a log line to one per `every`; the lines in between are counted
/// and reported with the next one.
pub(super) struct LogLimiter {
    pub(super) every: Duration,
    pub(super) last: Option<Instant>,
    pub(super) suppressed: u64,
}

impl LogLimiter {
    pub(super) fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log now, `n` lines were suppressed since the last one.
    pub(super) fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Whether to dial `peer` now according to its entry in `redial` (next
/// attempt, current backoff; none yet means "now, starting at `first`"). If
/// so, the next attempt is scheduled after `jitter(backoff)` and the backoff
/// doubles, up to `max`.
pub(super) fn redial_due(
    redial: &mut HashMap<PeerId, (Instant, Duration)>,
    peer: PeerId,
    now: Instant,
    first: Duration,
    max: Duration,
    jitter: impl FnOnce(Duration) -> Duration,
) -> bool {
    let (next, backoff) = redial.get(&peer).copied().unwrap_or((now, first));
    if next > now {
        return false;
    }
    redial.insert(peer, (now + jitter(backoff), (backoff * 2).min(max)));
    true
}

/// Why an incoming connection failed, for the metrics: `None` when it says
/// nothing about the remote (our own shutdown, our own blocklist, our own
/// address in our bootstrap list dialling back to us).
pub(super) fn incoming_failure_reason(error: &ListenError) -> Option<RejectReason> {
    match error {
        ListenError::Aborted | ListenError::LocalPeerId { .. } => None,
        ListenError::Denied { cause } => {
            if cause
                .downcast_ref::<allow_block_list::NotAllowed>()
                .is_some()
            {
                Some(RejectReason::Unauthorized)
            } else if cause.downcast_ref::<allow_block_list::Blocked>().is_some() {
                None
            } else {
                // A connection cap (`connection_limits::Exceeded`).
                Some(RejectReason::Handshake)
            }
        }
        ListenError::WrongPeerId { .. } | ListenError::Transport(_) => {
            Some(RejectReason::Handshake)
        }
    }
}

/// The IP address of a multiaddr (`/ip4/..` or `/ip6/..` first).
pub(super) fn ip_of(a: &Multiaddr) -> Option<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    a.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

impl Node {
    pub(super) fn redial_bootstrap(&mut self, now: Instant) {
        for i in 0..self.bootstrap.len() {
            let b = &self.bootstrap[i];
            if b.is_self || b.pending.is_some() || b.next > now {
                continue;
            }
            if let Some(p) = b.peer {
                if self.connected.contains(&p) || !self.allowed(&p) {
                    continue;
                }
            }
            let opts = match b.peer {
                Some(p) => DialOpts::peer_id(p)
                    .addresses(vec![b.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .allocate_new_port()
                    .build(),
                None => DialOpts::unknown_peer_id()
                    .address(b.addr.clone())
                    .allocate_new_port()
                    .build(),
            };
            let id = opts.connection_id();
            let addr = b.addr.clone();
            let backoff = b.backoff;
            let wait = self.jitter(backoff);
            let b = &mut self.bootstrap[i];
            b.next = now + wait;
            b.backoff = (backoff * 2).min(self.cfg.redial_max);
            match self.swarm.dial(opts) {
                Ok(()) => b.pending = Some(id),
                Err(e) => tracing::debug!(%addr, error = %e, "bootstrap dial not started"),
            }
        }
    }

    pub(super) fn dial_members(&mut self, now: Instant) {
        for (peer, liveness, addrs) in self.engine.members(now) {
            if addrs.is_empty() || self.connected.contains(&peer) || !self.allowed(&peer) {
                continue;
            }
            // Dead members are redialled too (a healed partition has no
            // other way back without mDNS), but only at the slowest pace.
            let first = if liveness == Liveness::Dead {
                self.cfg.redial_max
            } else {
                self.cfg.redial_min
            };
            if !self.redial_due(peer, now, first) {
                continue;
            }
            self.dial_peer(peer, addrs, "member");
        }
    }

    /// Redial mDNS-discovered peers we are not connected to, with the same
    /// backoff as members.
    pub(super) fn dial_discovered(&mut self, now: Instant) {
        let due: Vec<(PeerId, Vec<Multiaddr>)> = self
            .mdns_peers
            .iter()
            .filter(|(p, _)| !self.connected.contains(p) && self.allowed(p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        for (peer, addrs) in due {
            if self.redial_due(peer, now, self.cfg.redial_min) {
                self.dial_peer(peer, addrs, "discovered peer");
            }
        }
    }

    pub(super) fn redial_due(&mut self, peer: PeerId, now: Instant, first: Duration) -> bool {
        let max = self.cfg.redial_max;
        let factor = self.rng.random_range(0.8..1.2);
        redial_due(&mut self.redial, peer, now, first, max, |d| {
            d.mul_f64(factor)
        })
    }

    /// `coolmesh_cluster_connections` after `connected` changed.
    fn count_connections(&self) {
        let n = i64::try_from(self.connected.len()).unwrap_or(i64::MAX);
        self.metrics.connections.set(n);
    }

    /// Dial a member we are not connected to, at the addresses its record
    /// publishes (dial on demand in the overlay, and SWIM's datagrams).
    /// Returns whether a dial is under way (started now or before).
    pub(super) fn dial_member(&mut self, peer: PeerId) -> bool {
        if !self.allowed(&peer) {
            return false;
        }
        let addrs = self.engine.member_addrs(&peer);
        if addrs.is_empty() {
            return false;
        }
        self.dial_peer(peer, addrs, "member on demand");
        true
    }

    /// Dial a known peer from a fresh port: dialling from the listen port
    /// (libp2p's default) makes two simultaneous dials between the same
    /// listen ports one TCP connection by simultaneous open, on which both
    /// sides start the noise handshake as initiator and both fail
    /// (docs/failure-matrix.md, scenario k).
    pub(super) fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, what: &str) {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "{what} dial not started");
        }
    }

    pub(super) fn publishable_addrs(&self) -> Vec<Multiaddr> {
        let routable: Vec<Multiaddr> = self
            .listen_addrs
            .iter()
            .filter(|a| !is_loopback(a))
            .cloned()
            .collect();
        if routable.is_empty() {
            self.listen_addrs.clone()
        } else {
            routable
        }
    }

    pub(super) fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
                self.engine.set_addrs(self.publishable_addrs());
                self.dirty = true;
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                self.engine.set_addrs(self.publishable_addrs());
                self.dirty = true;
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error, "listener error")
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                for b in self.bootstrap.iter_mut() {
                    if b.pending == Some(connection_id) {
                        b.pending = None;
                        b.peer = Some(peer_id);
                        b.backoff = self.cfg.redial_min;
                    }
                }
                self.redial.remove(&peer_id);
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.remote_ips.entry(peer_id).or_insert(ip);
                }
                if self.connected.insert(peer_id) {
                    self.count_connections();
                    tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                    self.dirty = true;
                }
                if num_established.get() == 1 {
                    // First contact: exchange digests right away (in the
                    // overlay only with a peer new or dead here).
                    if self.engine.sync_on_connect(&peer_id, Instant::now()) {
                        self.send(peer_id, RequestKind::Sync);
                    }
                    self.room_connected(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
                self.connected.remove(&peer_id);
                self.count_connections();
                self.remote_ips.remove(&peer_id);
                self.outstanding.remove(&peer_id);
                // The rate-limit bucket stays: a fresh one is full, so
                // reconnecting would buy a new burst. Housekeeping drops it
                // once it has refilled.
                self.engine.forget_knowledge(&peer_id);
                let now = Instant::now();
                let min = self.cfg.redial_min;
                for b in self.bootstrap.iter_mut() {
                    if b.peer == Some(peer_id) {
                        b.next = now + min;
                    }
                }
                self.redial.insert(peer_id, (now + min, min));
                self.dirty = true;
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => match incoming_failure_reason(&error) {
                Some(RejectReason::Unauthorized) => {
                    tracing::info!(addr = %send_back_addr, "refused a peer not in the allowlist");
                    self.metrics.reject(RejectReason::Unauthorized);
                }
                Some(reason) => {
                    self.metrics.reject(reason);
                    if let Some(suppressed) = self.handshake_log.hit(Instant::now()) {
                        // Wrong PSK, garbage, a scan, or a connection cap:
                        // worth a line, but not one per connection.
                        tracing::warn!(addr = %send_back_addr, %error, suppressed, "incoming connection failed its handshake (wrong swarm.key? a scan? a connection limit?); counted in coolmesh_gossip_rejected_total{{reason=\"handshake\"}}");
                    }
                }
                None => {
                    tracing::debug!(addr = %send_back_addr, %error, "incoming connection closed")
                }
            },
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let denied = matches!(&error, DialError::Denied { cause } if cause.downcast_ref::<allow_block_list::NotAllowed>().is_some());
                if denied {
                    self.metrics.reject(RejectReason::Unauthorized);
                }
                for b in self.bootstrap.iter_mut() {
                    if b.pending == Some(connection_id) {
                        b.pending = None;
                        if matches!(error, DialError::LocalPeerId { .. }) {
                            tracing::info!(addr = %b.addr, "bootstrap address is this node; skipping it");
                            b.is_self = true;
                        } else {
                            tracing::debug!(addr = %b.addr, ?peer_id, error = %error, "bootstrap dial failed");
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    pub(super) fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if !info.protocols.contains(&PROTOCOL) =>
            {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "peer does not speak coolmesh; disconnecting");
                self.non_members
                    .insert(peer_id, Instant::now() + NON_MEMBER_QUARANTINE);
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    let addrs = self.mdns_peers.entry(peer).or_default();
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
                // Dial the new ones now (the backoff says whether they are
                // new); `dial_discovered` retries them from housekeeping.
                self.dial_discovered(Instant::now());
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(list)) => {
                for (peer, addr) in list {
                    if let Some(addrs) = self.mdns_peers.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.mdns_peers.remove(&peer);
                        }
                    }
                }
            }
            BehaviourEvent::Sync(ev) => self.on_sync_event(ev),
            BehaviourEvent::Room(ev) => self.on_room_event(ev),
            BehaviourEvent::Swim(ev) => self.on_swim_event(ev),
            _ => {}
        }
    }
}

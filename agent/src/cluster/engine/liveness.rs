//! Liveness and what follows from it: the hub, whom to exchange with each
//! tick, housekeeping (retention, tombstones) and the view for the agent.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use rand::seq::SliceRandom;
use rand::Rng;

use super::{Engine, Entry, Now};
use crate::cluster::view::{Candidate, ClusterPeer, ClusterView, Liveness, LivenessTimeouts};

impl Engine {
    /// Liveness of a known peer.
    pub fn liveness(&self, peer: &PeerId, now: Instant) -> Option<Liveness> {
        self.peers
            .get(peer)
            .map(|e| self.entry_liveness(peer, e, now))
    }

    /// The one rule for a member's liveness: from how long ago its record
    /// last advanced ([`LivenessTimeouts`](crate::cluster::view::LivenessTimeouts)),
    /// except that a member whose record says it runs SWIM is dead from
    /// the moment SWIM declared it down until its record advances again.
    /// SWIM can only make a member dead sooner (a crash is seen in a few
    /// probe periods, before its record ages out); a record that advances
    /// proves it alive whatever SWIM thinks, and a member that does not
    /// run SWIM (an older agent, the js peer) is judged by its record
    /// alone, so SWIM probes it never answers cannot make it dead.
    pub(super) fn entry_liveness(&self, peer: &PeerId, e: &Entry, now: Instant) -> Liveness {
        if e.record.state.swim
            && self
                .swim_down
                .get(peer)
                .is_some_and(|at| *at >= e.advanced_at)
        {
            return Liveness::Dead;
        }
        let t = if self.speaks_swim && e.record.state.swim {
            self.swim_record_timeouts()
        } else {
            self.cfg.timeouts
        };
        t.liveness(now.saturating_duration_since(e.advanced_at))
    }

    /// Record-age timeouts for a member that runs SWIM, seen by a node
    /// that runs it too: such a member may refresh its record only every
    /// `swim_records.refresh`, stretched in large rooms
    /// ([`Engine::refresh_interval_now`]), so the
    /// record-age backstop is 3x (suspect) and 6x (dead) that; SWIM
    /// declares a crash dead within seconds before either.
    pub(super) fn swim_record_timeouts(&self) -> LivenessTimeouts {
        let t = self.cfg.timeouts;
        let slow = self.swim_refresh();
        LivenessTimeouts {
            suspect_after: t.suspect_after.max(slow * 3),
            dead_after: t.dead_after.max(slow * 6),
            retention: t.retention,
        }
    }

    /// This node runs SWIM: say so in our record (key 15).
    pub fn set_speaks_swim(&mut self, on: bool) {
        if self.speaks_swim != on {
            self.speaks_swim = on;
            self.dirty = true;
        }
    }

    /// SWIM declared `peer` down at `at`. Returns whether its liveness
    /// changed (it speaks SWIM and was not dead already).
    pub fn swim_down(&mut self, peer: PeerId, at: Instant) -> bool {
        let before = self.liveness(&peer, at);
        self.swim_down.insert(peer, at);
        let changed = before.is_some() && before != self.liveness(&peer, at);
        if let Some(e) = self.peers.get_mut(&peer) {
            if changed {
                e.last_liveness = Liveness::Dead;
            }
        }
        changed
    }

    /// SWIM saw `peer` up (again).
    pub fn swim_up(&mut self, peer: &PeerId) {
        self.swim_down.remove(peer);
    }

    /// Members whose records say they run SWIM and that are not dead:
    /// whom SWIM should probe.
    pub fn swim_members(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(p, e)| {
                e.record.state.swim && self.entry_liveness(p, e, now) != Liveness::Dead
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// The addresses a member's record publishes (empty if unknown).
    pub fn member_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|e| e.record.addrs.clone())
            .unwrap_or_default()
    }

    /// Whether a new connection to `peer` should start with a full-digest
    /// `Sync`: always in the hub design; in the overlay only for a peer we
    /// hold no record of or that is dead here (first contact, a healed
    /// partition). A full digest per new connection (a dial on demand, a
    /// reconnection) would cost ~56 bytes per member each time.
    pub fn sync_on_connect(&self, peer: &PeerId, now: Instant) -> bool {
        !self.overlay_mode()
            || self
                .peers
                .get(peer)
                .is_none_or(|e| self.entry_liveness(peer, e, now) == Liveness::Dead)
    }

    /// Known peers with their liveness and published addresses.
    pub fn members(&self, now: Instant) -> Vec<(PeerId, Liveness, Vec<Multiaddr>)> {
        self.peers
            .iter()
            .map(|(p, e)| (*p, self.entry_liveness(p, e, now), e.record.addrs.clone()))
            .collect()
    }

    /// The relay: the connected, alive (not suspect) member with the
    /// smallest base58 PeerId other than this node. A hub that stops
    /// advancing its version (crashed without closing connections,
    /// partitioned, overloaded) is replaced after `suspect_after`.
    pub fn relay(&self, is_connected: impl Fn(&PeerId) -> bool, now: Instant) -> Option<PeerId> {
        self.peers
            .iter()
            .filter(|(p, e)| is_connected(p) && self.entry_liveness(p, e, now) == Liveness::Alive)
            .min_by(|a, b| a.1.b58.cmp(&b.1.b58))
            .map(|(p, _)| *p)
    }

    /// The hub: the smallest base58 PeerId among this node and its
    /// connected, alive members.
    pub fn hub(&self, is_connected: impl Fn(&PeerId) -> bool, now: Instant) -> PeerId {
        match self.relay(is_connected, now) {
            Some(r) if self.peers.get(&r).is_some_and(|e| e.b58 < self.me_b58) => r,
            _ => self.me,
        }
    }

    /// Peers to run a `Sync` exchange with on this `sync_interval` tick.
    ///
    /// The hub (see [`Engine::hub`]) drives: it exchanges with every
    /// connected peer not known to be dead each tick (peers without a
    /// record yet included, which is how a fresh cluster bootstraps), so all members receive news
    /// at the same moment (one hop from the hub). A non-hub does nothing
    /// while the hub keeps contacting it, and polls its relay itself if it
    /// has not heard from it for 2.5 intervals (views of who the hub is
    /// disagree, or the hub is overloaded).
    pub fn sync_targets(
        &mut self,
        connected: &[PeerId],
        sync_interval: Duration,
        now: Instant,
    ) -> Vec<PeerId> {
        if self.overlay_mode() {
            return self.overlay_sync_target(connected, now);
        }
        let is_connected = |p: &PeerId| connected.contains(p);
        let hub = self.hub(is_connected, now);
        if hub == self.me {
            return connected
                .iter()
                .copied()
                .filter(|p| self.liveness(p, now) != Some(Liveness::Dead))
                .collect();
        }
        let patience = sync_interval.saturating_mul(5) / 2;
        let heard = self
            .last_contact
            .get(&hub)
            .is_some_and(|t| now.saturating_duration_since(*t) < patience);
        if heard {
            vec![]
        } else {
            vec![hub]
        }
    }

    /// Peers for a random anti-entropy round: up to `fanout` connected
    /// peers other than the hub. The hub itself skips the round: it already
    /// exchanges with every member every `sync_interval`.
    pub fn anti_entropy_targets<R: Rng>(
        &mut self,
        connected: &[PeerId],
        fanout: usize,
        now: Instant,
        rng: &mut R,
    ) -> Vec<PeerId> {
        if self.overlay_mode() {
            return self.overlay_anti_entropy(now, rng);
        }
        let hub = self.hub(|p| connected.contains(p), now);
        if hub == self.me {
            return Vec::new();
        }
        Self::random_peers(connected, fanout, Some(hub), rng)
    }

    /// Up to `n` random peers from `candidates`, excluding `exclude`.
    pub fn random_peers<R: Rng>(
        candidates: &[PeerId],
        n: usize,
        exclude: Option<PeerId>,
        rng: &mut R,
    ) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = candidates
            .iter()
            .copied()
            .filter(|p| Some(*p) != exclude)
            .collect();
        v.shuffle(rng);
        v.truncate(n);
        v
    }

    /// Drop records past retention (keeping a tombstone so relayed copies are
    /// not resurrected) and expire old tombstones. Returns `true` if any
    /// peer's liveness changed or a record was dropped.
    pub fn housekeeping(&mut self, now: Now) -> bool {
        let t = self.cfg.timeouts;
        let mut changed = false;
        let mut dropped = Vec::new();
        let mut moved = Vec::new();
        for (p, e) in self.peers.iter() {
            let since = now.mono.saturating_duration_since(e.advanced_at);
            if t.expired(since) {
                dropped.push((*p, e.record.version));
                continue;
            }
            let l = self.entry_liveness(p, e, now.mono);
            if l != e.last_liveness {
                moved.push((*p, l));
            }
        }
        for (p, l) in moved {
            if let Some(e) = self.peers.get_mut(&p) {
                e.last_liveness = l;
                changed = true;
            }
        }
        for (p, v) in dropped {
            // Dead longer than the retention: the record goes, and so do its
            // counter slots (their values stay in the totals).
            self.peers.remove(&p);
            self.tombstone(p, v, now.mono);
            self.counters.retire(&p.to_base58());
            changed = true;
        }
        self.recompute_all_swim(now.mono);
        let keep = t.retention.max(t.dead_after);
        let peers = &self.peers;
        self.swim_down.retain(|p, _| peers.contains_key(p));
        self.tombstones
            .retain(|_, (_, at)| now.mono.saturating_duration_since(*at) < keep);
        changed
    }

    /// Snapshot for the agent.
    pub fn view(
        &self,
        now: Instant,
        connected: &HashSet<PeerId>,
        remote_ips: &HashMap<PeerId, std::net::IpAddr>,
        listen_addrs: &[Multiaddr],
        relay: Option<PeerId>,
    ) -> ClusterView {
        let peers = self
            .peers
            .iter()
            .map(|(p, e)| {
                let age = now.saturating_duration_since(e.advanced_at);
                let liveness = self.entry_liveness(p, e, now);
                (
                    *p,
                    ClusterPeer {
                        record: e.record.clone(),
                        liveness,
                        stale: liveness == Liveness::Dead,
                        last_seen: e.advanced_at,
                        age,
                        connected: connected.contains(p),
                        remote_ip: remote_ips.get(p).copied(),
                    },
                )
            })
            .collect();
        ClusterView {
            local_peer_id: Some(self.me),
            local: self.own_record().cloned(),
            peers,
            counters: self.counters.clone(),
            listen_addrs: listen_addrs.to_vec(),
            connected: connected.len(),
            relay,
            roster: self.roster.clone(),
            candidates: self
                .candidates()
                .into_iter()
                .map(|(p, t, node)| Candidate {
                    peer_id: p,
                    since: now.saturating_duration_since(t),
                    node,
                    remote_ip: remote_ips.get(&p).copied(),
                })
                .collect(),
        }
    }
}

//! The overlay (docs/scale.md step 3, docs/protocol.md 7.5): where this
//! node and every member not dead run SWIM, records spread over a sparse
//! graph instead of through the hub.
//!
//! Each node picks [`OVERLAY_OUT`] out-neighbours among the connected
//! members that run SWIM: its successor in base58 order (so the graph is
//! connected whatever the hashes say) and the members with the highest
//! hash of (this node, member) (a random graph, stable while membership
//! is). Its neighbours are those plus the in-neighbours: members that
//! exchanged with it in the last [`IN_NEIGHBOUR_TTL`]. Then:
//!
//! - **Eager push:** whenever this node has something a neighbour is
//!   believed to lack (a record it just accepted, its own new version), it
//!   sends that neighbour a `Delta` exchange carrying just that
//!   ([`Engine::push_targets`]); the answer carries what it lacks back.
//!   One exchange in flight per neighbour batches bursts.
//! - **Pull:** every `sync_interval` it exchanges with one out-neighbour,
//!   in turn ([`Engine::sync_targets`]), so a lost push is repaired.
//! - **Anti-entropy:** every [`FULL_SYNC_EVERY`] a full-digest `Sync` with
//!   one random member repairs what beliefs got wrong (a peer that lost
//!   records, a partition).
//!
//! No node talks to more than its out-neighbours plus the few that chose
//! it, whatever N is: the hub's O(N) load is gone. A node's degree is
//! 3 + Poisson(3) in expectation.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use rand::Rng;

use super::Engine;
use crate::cluster::view::Liveness;

/// Out-neighbours per node: the ring successor and two by hash.
pub const OVERLAY_OUT: usize = 3;
/// A member that exchanged with this node within this long is an
/// in-neighbour (pushed to like an out-neighbour).
pub const IN_NEIGHBOUR_TTL: Duration = Duration::from_secs(5);
/// Out-neighbours are chosen again at least this often (and whenever one
/// is no longer a connected, living member, or the member count changed).
const RECHOOSE: Duration = Duration::from_secs(10);
/// A full-digest `Sync` with one random member this often in the overlay.
/// At N=1,000 a full digest is ~50 KB, so every 10 s is ~5 KB/s per node.
pub const FULL_SYNC_EVERY: Duration = Duration::from_secs(10);

/// The overlay's own state inside the engine.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    /// This node and every member not dead run SWIM (recomputed on
    /// housekeeping; a record without SWIM clears it at once).
    pub(super) all_swim: bool,
    out: Vec<PeerId>,
    chosen_at: Option<Instant>,
    /// Members known when `out` was chosen: a change (a new member, one
    /// dropped) chooses again, so a node that starts knowing few members
    /// does not keep a thin choice.
    chosen_among: usize,
    turn: usize,
    last_full_sync: Option<Instant>,
    /// In-neighbours and when they last exchanged with us.
    pub(super) inbound: std::collections::HashMap<PeerId, Instant>,
}

impl Overlay {
    /// No members yet: every member (none) runs SWIM.
    pub(super) fn new() -> Overlay {
        Overlay {
            all_swim: true,
            ..Overlay::default()
        }
    }
}

fn score(me: &PeerId, p: &PeerId) -> u64 {
    let mut h = DefaultHasher::new();
    me.hash(&mut h);
    p.hash(&mut h);
    h.finish()
}

impl Engine {
    /// Whether records spread over the overlay: this node and every member
    /// not dead run SWIM. Otherwise the hub design runs as before (a single
    /// member without SWIM, an older agent or the js peer, brings it back).
    pub fn overlay_mode(&self) -> bool {
        self.speaks_swim && self.overlay.all_swim
    }

    /// Recompute [`Engine::overlay_mode`]'s member condition.
    pub(super) fn recompute_all_swim(&mut self, now: Instant) {
        let all = self
            .peers
            .iter()
            .all(|(p, e)| e.record.state.swim || self.entry_liveness(p, e, now) == Liveness::Dead);
        self.overlay.all_swim = all;
    }

    /// Members the overlay may use: connected, not dead, running SWIM.
    fn overlay_candidates(&self, connected: &[PeerId], now: Instant) -> Vec<PeerId> {
        connected
            .iter()
            .copied()
            .filter(|p| {
                self.peers.get(p).is_some_and(|e| {
                    e.record.state.swim && self.entry_liveness(p, e, now) != Liveness::Dead
                })
            })
            .collect()
    }

    /// This node's out-neighbours (chosen again every [`RECHOOSE`] or when
    /// one is no longer a candidate).
    pub fn out_neighbours(&mut self, connected: &[PeerId], now: Instant) -> Vec<PeerId> {
        let stale = self
            .overlay
            .chosen_at
            .is_none_or(|t| now.saturating_duration_since(t) >= RECHOOSE)
            || self.overlay.chosen_among != self.peers.len()
            || self.overlay.out.iter().any(|p| {
                !connected.contains(p)
                    || self
                        .peers
                        .get(p)
                        .is_none_or(|e| self.entry_liveness(p, e, now) == Liveness::Dead)
            });
        if stale {
            let mut c = self.overlay_candidates(connected, now);
            let mut out = Vec::with_capacity(OVERLAY_OUT);
            // The ring successor: the next base58 PeerId after ours,
            // wrapping around.
            let b58 = |p: &PeerId| self.peers.get(p).map(|e| e.b58.as_str()).unwrap_or("");
            let succ = c
                .iter()
                .filter(|p| b58(p) > self.me_b58.as_str())
                .min_by(|a, b| b58(a).cmp(b58(b)))
                .or_else(|| c.iter().min_by(|a, b| b58(a).cmp(b58(b))))
                .copied();
            if let Some(s) = succ {
                out.push(s);
                c.retain(|p| *p != s);
            }
            c.sort_by_key(|p| std::cmp::Reverse(score(&self.me, p)));
            out.extend(c.into_iter().take(OVERLAY_OUT.saturating_sub(out.len())));
            self.overlay.out = out;
            self.overlay.chosen_at = Some(now);
            self.overlay.chosen_among = self.peers.len();
        }
        self.overlay.out.clone()
    }

    /// Out-neighbours and in-neighbours (members that exchanged with us in
    /// the last [`IN_NEIGHBOUR_TTL`]) that are connected.
    pub fn neighbours(&mut self, connected: &[PeerId], now: Instant) -> Vec<PeerId> {
        let mut n = self.out_neighbours(connected, now);
        for (p, t) in &self.overlay.inbound {
            if now.saturating_duration_since(*t) < IN_NEIGHBOUR_TTL
                && connected.contains(p)
                && !n.contains(p)
            {
                n.push(*p);
            }
        }
        n
    }

    /// Note an exchange a member started with us (an in-neighbour).
    pub(super) fn note_inbound(&mut self, from: PeerId, now: Instant) {
        if self.overlay_mode() && self.peers.contains_key(&from) {
            self.overlay.inbound.insert(from, now);
        }
    }

    /// Forget in-neighbours that went quiet (housekeeping).
    pub(super) fn prune_inbound(&mut self, now: Instant) {
        self.overlay
            .inbound
            .retain(|_, t| now.saturating_duration_since(*t) < IN_NEIGHBOUR_TTL);
    }

    /// Whether `peer` is believed to lack a record we hold (a `Delta` to it
    /// would carry something).
    pub fn has_news_for(&self, peer: &PeerId) -> bool {
        let k = self.known.get(peer);
        let lacks =
            |p: &PeerId, v: u64| *p != *peer && k.is_none_or(|k| k.get(p).is_none_or(|kv| *kv < v));
        if let Some(o) = &self.own {
            if lacks(&self.me, o.record.version) {
                return true;
            }
        }
        self.peers.iter().any(|(p, e)| lacks(p, e.record.version))
    }

    /// Neighbours to push to now (overlay mode only; empty otherwise):
    /// every neighbour but `exclude` that is believed to lack something.
    pub fn push_targets(
        &mut self,
        exclude: Option<PeerId>,
        connected: &[PeerId],
        now: Instant,
    ) -> Vec<PeerId> {
        if !self.overlay_mode() {
            return Vec::new();
        }
        self.neighbours(connected, now)
            .into_iter()
            .filter(|p| Some(*p) != exclude && self.has_news_for(p))
            .collect()
    }

    /// The kind of the exchanges [`Engine::sync_targets`] asks for: a
    /// `Delta` in overlay mode, else a full `Sync`.
    pub fn sync_kind(&self) -> crate::cluster::wire::RequestKind {
        if self.overlay_mode() {
            crate::cluster::wire::RequestKind::Delta
        } else {
            crate::cluster::wire::RequestKind::Sync
        }
    }

    /// Overlay pull: one out-neighbour per tick, in turn; and first
    /// contact with one connected peer we never exchanged with (a member
    /// we know nothing of yet is nobody's neighbour, so without this two
    /// nodes that met each other first would stay a room of two until the
    /// next full sync).
    pub(super) fn overlay_sync_target(
        &mut self,
        connected: &[PeerId],
        now: Instant,
    ) -> Vec<PeerId> {
        let mut targets = Vec::with_capacity(2);
        let out = self.out_neighbours(connected, now);
        if !out.is_empty() {
            self.overlay.turn = self.overlay.turn.wrapping_add(1);
            targets.push(out[self.overlay.turn % out.len()]);
        }
        let first = connected.iter().copied().find(|p| {
            !self.known.contains_key(p)
                && !targets.contains(p)
                && self
                    .peers
                    .get(p)
                    .is_none_or(|e| self.entry_liveness(p, e, now) != Liveness::Dead)
        });
        targets.extend(first);
        targets
    }

    /// Overlay anti-entropy: a full-digest `Sync` with one random
    /// connected member every [`FULL_SYNC_EVERY`].
    pub(super) fn overlay_anti_entropy<R: Rng>(
        &mut self,
        connected: &[PeerId],
        now: Instant,
        rng: &mut R,
    ) -> Vec<PeerId> {
        if self
            .overlay
            .last_full_sync
            .is_some_and(|t| now.saturating_duration_since(t) < FULL_SYNC_EVERY)
        {
            return Vec::new();
        }
        self.overlay.last_full_sync = Some(now);
        Self::random_peers(connected, 1, None, rng)
    }
}

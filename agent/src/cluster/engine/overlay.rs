//! The overlay (docs/scale.md step 3, docs/protocol.md 7.5): where this
//! node and every member not dead run SWIM, records spread over a sparse
//! graph instead of through the hub.
//!
//! Each node picks [`OVERLAY_OUT`] out-neighbours among the members that
//! run SWIM and are not dead: its successor on three rings, one in base58
//! order and two ordered by a hash of the PeerId. Each ring gives every
//! member exactly one in-edge, so while views agree every node has three
//! out-neighbours and three in-neighbours (no node carries more than its
//! share), and the union of three such cycles is a graph of diameter
//! O(log N). A member chosen without a connection is dialled on demand.
//! Then:
//!
//! - **Eager push:** whenever this node has something an out-neighbour is
//!   believed to lack (a record it just accepted, its own new version), it
//!   sends it a `Delta` exchange carrying just that
//!   ([`Engine::push_targets`]); the answer carries what the pusher lacks.
//!   One exchange in flight per neighbour batches bursts, and what arrived
//!   meanwhile goes as soon as it ends ([`Engine::push_again`]).
//! - **Pull:** every [`PULL_EVERY`] it exchanges with one out-neighbour,
//!   in turn ([`Engine::sync_targets`]), so a lost push is repaired.
//! - **Anti-entropy:** every [`full_sync_every`] a full-digest `Sync` with
//!   one random member repairs what beliefs got wrong (a peer that lost
//!   records, a partition).
//! - **Refresh:** a node's own record is republished on change and every
//!   [`overlay_refresh`] otherwise.
//!
//! No node talks to more than its neighbours whatever N is: the hub's O(N)
//! load is gone.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use rand::Rng;

use super::Engine;
use crate::cluster::view::Liveness;

/// Out-neighbours per node: the ring successor and two by hash.
pub const OVERLAY_OUT: usize = 3;
/// Out-neighbours are chosen again at least this often (and whenever one
/// is no longer a living member, or the member count changed).
const RECHOOSE: Duration = Duration::from_secs(10);
/// A change in the member count chooses again, but at most this often.
const RECHOOSE_MIN: Duration = Duration::from_secs(1);
/// A full-digest `Sync` with one random member at least this often in the
/// overlay (small rooms; see [`full_sync_every`]).
pub const FULL_SYNC_EVERY: Duration = Duration::from_secs(10);
/// An overlay pull (an empty `Delta` to one out-neighbour, in turn) this
/// often. Pushes carry every change along the out-edges; the pull only
/// repairs a push that was lost without the connection failing (a failed
/// exchange already makes the next one a full `Sync`), so it need not run
/// every `sync_interval`.
pub const PULL_EVERY: Duration = Duration::from_secs(2);
/// Per member known, the full-digest interval grows by this much
/// ([`full_sync_every`]).
pub const FULL_SYNC_PER_MEMBER: Duration = Duration::from_millis(40);
/// Per member known, the periodic record refresh grows by this much
/// ([`overlay_refresh`]).
pub const REFRESH_PER_MEMBER: Duration = Duration::from_millis(100);
/// The periodic record refresh grows no longer than this.
pub const REFRESH_MAX: Duration = Duration::from_secs(600);

/// How often a node runs a full-digest `Sync` with a random member, with
/// `members` known: [`FULL_SYNC_EVERY`], or [`FULL_SYNC_PER_MEMBER`] per
/// member if that is longer. A full digest costs ~56 bytes per member, so
/// the cost per node stays ~1.4 KB/s whatever N is (at N=1,000 one every
/// 40 s; at 5,000 one every 200 s). It only repairs what the pushes and
/// pulls missed (a partition, a peer that lost records); changes do not
/// wait for it.
pub fn full_sync_every(members: usize) -> Duration {
    let scaled = FULL_SYNC_PER_MEMBER.saturating_mul(u32::try_from(members).unwrap_or(u32::MAX));
    FULL_SYNC_EVERY.max(scaled)
}

/// The periodic refresh of a node's own record in the overlay, with
/// `members` known: `base` (`SwimRecords::refresh`, 30 s), or
/// [`REFRESH_PER_MEMBER`] per member if that is longer, up to
/// [`REFRESH_MAX`]. Every refresh reaches every member, so the room as a
/// whole makes at most ~10 refreshes a second (at N=1,000 one per node
/// every 100 s; at 5,000 every 500 s) and each node's share of them stays
/// flat as N grows. Changes a peer decides on are published at once
/// whatever this is; the refresh only carries drift inside the dead band
/// and proves the agent (not only its SWIM) alive, which is why the
/// record-age backstop is a multiple of it.
pub fn overlay_refresh(base: Duration, members: usize) -> Duration {
    let scaled = REFRESH_PER_MEMBER.saturating_mul(u32::try_from(members).unwrap_or(u32::MAX));
    base.max(scaled.min(REFRESH_MAX))
}

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
    last_pull: Option<Instant>,
    last_full_sync: Option<Instant>,
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

/// The position of `p` on hashed ring `ring` (1 or 2; ring 0 is base58
/// order): FNV-1a over the ring number and the PeerId's bytes, spelled out
/// here so that every agent, whatever it was built with, computes the same
/// rings.
fn ring_hash(ring: usize, p: &PeerId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(ring as u8).chain(p.to_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The member after `mine` on a ring ordered by `key`, wrapping around to
/// the smallest (each candidate's key is computed once).
fn successor<'a, K: Ord + Clone>(
    candidates: impl Iterator<Item = &'a PeerId>,
    mine: K,
    key: impl Fn(&PeerId) -> K,
) -> Option<PeerId> {
    let mut above: Option<(K, PeerId)> = None;
    let mut lowest: Option<(K, PeerId)> = None;
    for p in candidates {
        let k = key(p);
        if k > mine && above.as_ref().is_none_or(|(a, _)| k < *a) {
            above = Some((k.clone(), *p));
        }
        if lowest.as_ref().is_none_or(|(l, _)| k < *l) {
            lowest = Some((k, *p));
        }
    }
    above.or(lowest).map(|(_, p)| p)
}

impl Engine {
    /// The periodic refresh of our own record where every member runs
    /// SWIM ([`overlay_refresh`] of `swim_records.refresh` and the members
    /// known).
    pub(super) fn swim_refresh(&self) -> Duration {
        overlay_refresh(self.swim_records.refresh, self.peers.len() + 1)
            .max(self.cfg.refresh_interval)
    }

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

    /// Members the overlay may use: not dead, running SWIM, whether
    /// connected or not (the swarm dials one it has no connection to).
    fn overlay_candidates(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(p, e)| {
                e.record.state.swim && self.entry_liveness(p, e, now) != Liveness::Dead
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// This node's out-neighbours (chosen again every [`RECHOOSE`] or when
    /// one is no longer a candidate).
    pub fn out_neighbours(&mut self, now: Instant) -> Vec<PeerId> {
        let since = self
            .overlay
            .chosen_at
            .map(|t| now.saturating_duration_since(t));
        let stale = since.is_none_or(|d| d >= RECHOOSE)
            // A new or dropped member: at most once a second (a joining
            // node learns hundreds of members in its first seconds, and a
            // choice costs a pass over them).
            || (self.overlay.chosen_among != self.peers.len()
                && since.is_none_or(|d| d >= RECHOOSE_MIN))
            || self.overlay.out.iter().any(|p| {
                self.peers
                    .get(p)
                    .is_none_or(|e| self.entry_liveness(p, e, now) == Liveness::Dead)
            });
        if stale {
            let c = self.overlay_candidates(now);
            let mut out = Vec::with_capacity(OVERLAY_OUT);
            // Successor on ring 0 (base58 order, which every member
            // computes alike) and on rings 1 and 2 (orders by a hash of the
            // PeerId): each ring gives every member exactly one in-edge, so
            // every node has in-degree 3 as well as out-degree 3 while
            // views agree (choosing the highest hash of (this node,
            // member) gave in-degrees of 1 + Poisson(2), and the busiest
            // node answered up to 3x the mean's pushes); and the union of
            // three such cycles has a diameter of O(log N).
            for ring in 0..OVERLAY_OUT {
                let free = c.iter().filter(|p| !out.contains(*p));
                let succ = if ring == 0 {
                    let b58 = |p: &PeerId| self.peers.get(p).map_or("", |e| e.b58.as_str());
                    successor(free, self.me_b58.as_str(), b58)
                } else {
                    let key = |p: &PeerId| (ring_hash(ring, p), *p);
                    successor(free, key(&self.me), key)
                };
                out.extend(succ);
            }
            self.overlay.out = out;
            self.overlay.chosen_at = Some(now);
            self.overlay.chosen_among = self.peers.len();
        }
        self.overlay.out.clone()
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

    /// Out-neighbours to push to now (overlay mode only; empty
    /// otherwise): those believed to lack something. Pushes go along
    /// out-edges only: in-neighbours chose us, and pushing back along
    /// their edges made every contact (a full sync, a first contact) a
    /// lasting two-way link, until the graph was nearly complete and a
    /// change crossed every link (51 messages per increment at N=25 under
    /// the Gossip Glomers load). The out-edges alone reach everyone: the
    /// ring successors form a cycle through every member.
    pub fn push_targets(&mut self, now: Instant) -> Vec<PeerId> {
        if !self.overlay_mode() {
            return Vec::new();
        }
        self.out_neighbours(now)
            .into_iter()
            .filter(|p| self.has_news_for(p))
            .collect()
    }

    /// After an exchange with `peer` ended: whether to push to it again
    /// now. One exchange is in flight per neighbour, so what arrived
    /// meanwhile waited; it goes at once instead of at the next change or
    /// pull (a batch per round trip under a burst of changes).
    pub fn push_again(&mut self, peer: &PeerId, now: Instant) -> bool {
        self.overlay_mode() && self.out_neighbours(now).contains(peer) && self.has_news_for(peer)
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

    /// Overlay pull: one out-neighbour every [`PULL_EVERY`], in turn; and
    /// (every tick) first
    /// contact with one connected peer we hold no record of (a member we
    /// know nothing of is not a candidate neighbour, so without this a
    /// node that just joined, or two nodes that met each other first,
    /// would wait for the next full sync). Only peers we hold no record
    /// of: a first contact is a full-digest `Sync`, and one with every
    /// member we never exchanged with cost each node N full digests
    /// (~140 KB/s per node for minutes at N=1,000).
    pub(super) fn overlay_sync_target(
        &mut self,
        connected: &[PeerId],
        now: Instant,
    ) -> Vec<PeerId> {
        let mut targets = Vec::with_capacity(2);
        let out = self.out_neighbours(now);
        let pull_due = self
            .overlay
            .last_pull
            .is_none_or(|t| now.saturating_duration_since(t) >= PULL_EVERY);
        if !out.is_empty() && pull_due {
            self.overlay.turn = self.overlay.turn.wrapping_add(1);
            targets.push(out[self.overlay.turn % out.len()]);
            self.overlay.last_pull = Some(now);
        }
        let first = connected
            .iter()
            .copied()
            .find(|p| !self.peers.contains_key(p) && !targets.contains(p));
        targets.extend(first);
        targets
    }

    /// Overlay anti-entropy: a full-digest `Sync` with one random member
    /// (connected or not: the swarm dials it) every [`full_sync_every`].
    pub(super) fn overlay_anti_entropy<R: Rng>(
        &mut self,
        now: Instant,
        rng: &mut R,
    ) -> Vec<PeerId> {
        let every = full_sync_every(self.peers.len() + 1);
        if self
            .overlay
            .last_full_sync
            .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return Vec::new();
        }
        self.overlay.last_full_sync = Some(now);
        Self::random_peers(&self.overlay_candidates(now), 1, None, rng)
    }
}

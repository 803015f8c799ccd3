//! Taking one record: the checks in the order of docs/protocol.md section
//! 5.4, the budget of new identities per introducing peer, the member cap,
//! and the tombstones that keep dropped records from coming back.

use std::time::Instant;

use libp2p::PeerId;

use super::{first_sight_age, remove_oldest, Engine, Entry, Now, Outcome};
use crate::cluster::record::RejectReason;
use crate::cluster::view::Liveness;
use crate::cluster::wire::SignedRecord;

impl Engine {
    /// Take one token of `from`'s budget of new identities (see
    /// [`EngineConfig::new_identities_per_minute`]).
    pub(super) fn introduce(&mut self, from: PeerId, now: Instant) -> bool {
        let burst = f64::from(self.cfg.new_identities_burst.max(1));
        let per_sec = f64::from(self.cfg.new_identities_per_minute) / 60.0;
        if self.introductions.len() > 4 * self.cfg.max_members.max(16) {
            // Bounded: drop buckets that have refilled.
            let full = |t: &(f64, Instant)| {
                t.0 + now.saturating_duration_since(t.1).as_secs_f64() * per_sec >= burst
            };
            self.introductions.retain(|_, t| !full(t));
        }
        let b = self.introductions.entry(from).or_insert((burst, now));
        b.0 = (b.0 + now.saturating_duration_since(b.1).as_secs_f64() * per_sec).min(burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Validate and store one record. Returns `(owner, version)` if it was
    /// new to us.
    pub(super) fn accept(
        &mut self,
        from: PeerId,
        s: SignedRecord,
        now: Now,
        out: &mut Outcome,
    ) -> Option<(PeerId, u64)> {
        let (peer, version, cluster) = match s.peek() {
            Ok(h) => h,
            Err(r) => {
                out.rejected.push(r);
                return None;
            }
        };
        if cluster != self.cfg.cluster {
            out.rejected.push(RejectReason::Unauthorized);
            return None;
        }
        if peer == self.me {
            // Our own record from before a restart: continue above it and
            // recover the counter slots peers still hold for us.
            if version > self.own_version {
                match s.verify(&self.cfg.cluster) {
                    Ok(r) => {
                        self.own_version = version;
                        self.counters.merge_slots(&self.me_b58, &r.state.counters);
                        self.dirty = true;
                        out.changed = true;
                    }
                    Err(r) => out.rejected.push(r),
                }
            }
            return None;
        }
        let current = self
            .peers
            .get(&peer)
            .map(|e| e.record.version)
            .or_else(|| self.tombstones.get(&peer).map(|t| t.0));
        if current.is_some_and(|c| version <= c) {
            return None;
        }
        if let Some(allow) = &self.cfg.allowlist {
            if !allow.contains(&peer) {
                out.rejected.push(RejectReason::Unauthorized);
                return None;
            }
        }
        if !self.is_member(&peer) {
            out.rejected.push(RejectReason::NotInRoster);
            return None;
        }
        let verified = if self.cfg.insecure_skip_signature_check {
            s.verify_unsigned(&self.cfg.cluster)
        } else {
            s.verify(&self.cfg.cluster)
        };
        let record = match verified {
            Ok(r) => r,
            Err(r) => {
                out.rejected.push(r);
                return None;
            }
        };
        let known = self.peers.contains_key(&peer);
        if !known
            && !self.tombstones.contains_key(&peer)
            && peer != from
            && !self.introduce(from, now.mono)
        {
            out.rejected.push(RejectReason::NewIdentities);
            return None;
        }
        if !known && self.peers.len() >= self.cfg.max_members && !self.evict_longest_dead(now) {
            // Checked after the signature, so only a member holding the PSK
            // and signing for new identities gets here, never a forger.
            out.rejected.push(RejectReason::Capacity);
            return None;
        }
        let advanced_at = if known {
            now.mono
        } else {
            // First sight: a record made long ago (e.g. a dead node's, still
            // relayed) must not look alive.
            let age = first_sight_age(now.unix_ms, record.updated_ms, &self.cfg.timeouts);
            now.mono.checked_sub(age).unwrap_or(now.mono)
        };
        self.tombstones.remove(&peer);
        self.counters
            .merge_slots(&peer.to_base58(), &record.state.counters);
        let last_liveness = self
            .cfg
            .timeouts
            .liveness(now.mono.saturating_duration_since(advanced_at));
        if !record.state.swim {
            // A member judged by record age: records every second again,
            // and the hub (see `overlay`).
            self.overlay.all_swim = false;
        }
        self.peers.insert(
            peer,
            Entry {
                signed: s,
                b58: peer.to_base58(),
                record,
                advanced_at,
                last_liveness,
            },
        );
        out.changed = true;
        Some((peer, version))
    }

    /// Make room for a new member: drop the record of the member that has
    /// been dead the longest (keeping a tombstone, as retention does).
    /// `false` if every member is alive or suspect.
    pub(super) fn evict_longest_dead(&mut self, now: Now) -> bool {
        let t = self.cfg.timeouts;
        let victim = self
            .peers
            .iter()
            .map(|(p, e)| (now.mono.saturating_duration_since(e.advanced_at), p))
            .filter(|(since, _)| t.liveness(*since) == Liveness::Dead)
            .max()
            .map(|(_, p)| *p);
        let Some(p) = victim else {
            return false;
        };
        if let Some(e) = self.peers.remove(&p) {
            self.tombstone(p, e.record.version, now.mono);
            self.counters.retire(&e.b58);
        }
        true
    }

    /// Remember a dropped record's version so relayed copies of it are not
    /// taken as new. Bounded: a flood of identities must not grow this
    /// without limit, so past four times `max_members` the oldest goes.
    pub(super) fn tombstone(&mut self, p: PeerId, version: u64, at: Instant) {
        for k in self.known.values_mut() {
            k.remove(&p);
        }
        self.tombstones.insert(p, (version, at));
        let cap = self.cfg.max_members.saturating_mul(4).max(16);
        if self.tombstones.len() > cap {
            remove_oldest(&mut self.tombstones, |(_, at)| *at);
        }
    }
}

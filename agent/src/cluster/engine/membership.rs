//! The room roster as the engine holds it (who is a member, adopting a
//! newer one, sending it to peers behind) and the non-members that
//! contacted this node, for the operator to approve.

use std::time::Instant;

use libp2p::PeerId;
use minicbor::bytes::ByteVec;

use super::{remove_oldest, Engine, Now, Outcome, MAX_CANDIDATES};
use crate::cluster::record::RejectReason;
use crate::cluster::roster::{Roster, RosterError};

impl Engine {
    /// The room roster this node holds, if any.
    pub fn roster(&self) -> Option<&Roster> {
        self.roster.as_ref()
    }

    /// Is `p` a member? Everyone is while no roster is known.
    pub fn is_member(&self, p: &PeerId) -> bool {
        self.roster.as_ref().is_none_or(|r| r.contains(p))
    }

    /// Identities outside the roster that contacted this node directly
    /// (PeerId, when last, the name their record claims), newest first.
    pub fn candidates(&self) -> Vec<(PeerId, Instant, Option<String>)> {
        let mut v: Vec<_> = self
            .candidates
            .iter()
            .map(|(p, (t, n))| (*p, *t, n.clone()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Offer a signed roster (from the operator's API, a peer or the state
    /// directory). `Ok(true)`: adopted (newer than the one held, signed by
    /// the operator key, for this cluster).
    pub fn offer_roster(&mut self, bytes: &[u8], now: Now) -> Result<bool, RosterError> {
        let Some(op) = &self.cfg.operator else {
            return Err(RosterError::NoOperatorKey);
        };
        let r = Roster::verify(bytes, op, &self.cfg.cluster)?;
        if let Some(cur) = &self.roster {
            if r.version <= cur.version {
                return Err(RosterError::NotNewer(r.version, cur.version));
            }
        }
        self.adopt_roster(r, now);
        Ok(true)
    }

    /// Members outside the new roster leave at once: their records are
    /// dropped (tombstoned, so relayed copies do not come back) and their
    /// counter slots retired (totals unchanged).
    pub(super) fn adopt_roster(&mut self, r: Roster, now: Now) {
        let outside: Vec<(PeerId, u64)> = self
            .peers
            .iter()
            .filter(|(p, _)| !r.contains(p))
            .map(|(p, e)| (*p, e.record.version))
            .collect();
        for (p, v) in outside {
            self.peers.remove(&p);
            self.tombstone(p, v, now.mono);
            self.counters.retire(&p.to_base58());
        }
        self.candidates.retain(|p, _| !r.contains(p));
        if !r.contains(&self.me) {
            tracing::warn!(peer_id = %self.me, version = r.version, "this node is not in the room roster: the members ignore its records and votes until the operator adds it (`coolmesh roster add`)");
        }
        self.roster = Some(r);
        self.roster_news = true;
        self.dirty = true;
    }

    /// The roster adopted since the last call, to store and to act on
    /// (disconnect non-members).
    pub fn take_new_roster(&mut self) -> Option<&Roster> {
        if std::mem::take(&mut self.roster_news) {
            self.roster.as_ref()
        } else {
            None
        }
    }

    pub(super) fn roster_version(&self) -> u64 {
        self.roster.as_ref().map_or(0, |r| r.version)
    }

    /// What goes on the wire: absent without a roster.
    pub(super) fn wire_roster_version(&self) -> Option<u64> {
        self.roster.as_ref().map(|r| r.version)
    }

    /// Our roster for a peer that told us it holds an older one.
    pub(super) fn roster_for(&self, theirs: Option<u64>) -> Option<ByteVec> {
        let r = self.roster.as_ref()?;
        theirs
            .is_some_and(|t| t < r.version)
            .then(|| ByteVec::from(r.to_bytes().to_vec()))
    }

    /// Take a roster a peer sent. Errors other than "not newer" are counted
    /// as rejections.
    pub(super) fn roster_from_peer(
        &mut self,
        from: PeerId,
        bytes: &[u8],
        now: Now,
        out: &mut Outcome,
    ) {
        match self.offer_roster(bytes, now) {
            Ok(_) => {
                out.changed = true;
                tracing::info!(%from, version = self.roster_version(), "adopted a newer room roster from a peer");
            }
            Err(RosterError::NotNewer(..)) | Err(RosterError::NoOperatorKey) => {}
            Err(RosterError::BadSignature) => out.rejected.push(RejectReason::BadSignature),
            Err(RosterError::OtherCluster(..)) => out.rejected.push(RejectReason::Unauthorized),
            Err(_) => out.rejected.push(RejectReason::Malformed),
        }
    }

    /// What a message says of its sender's roster: take the roster it
    /// carries (if newer), and remember the version the sender holds
    /// (ours, when it just sent us the one we adopted or hold). Returns
    /// that version.
    pub(super) fn peer_roster(
        &mut self,
        from: PeerId,
        version: Option<u64>,
        roster: Option<&ByteVec>,
        now: Now,
        out: &mut Outcome,
    ) -> u64 {
        if let Some(b) = roster {
            self.roster_from_peer(from, b.as_ref(), now, out);
        }
        let theirs = version.unwrap_or(0).max(if roster.is_some() {
            self.roster_version()
        } else {
            0
        });
        self.roster_of.insert(from, theirs);
        theirs
    }

    /// Remember a non-member that contacted us directly (bounded).
    pub(super) fn note_candidate(&mut self, p: PeerId, now: Instant, name: Option<String>) {
        if self.candidates.len() >= MAX_CANDIDATES && !self.candidates.contains_key(&p) {
            remove_oldest(&mut self.candidates, |(t, _)| *t);
        }
        let e = self.candidates.entry(p).or_insert((now, None));
        e.0 = now;
        if name.is_some() {
            e.1 = name;
        }
    }
}

//! One exchange, both sides: the request (digest and the records the peer
//! is believed to lack), the responder's answer, and the requester's
//! handling of the response with its one follow-up.

use std::collections::{BTreeMap, HashMap, HashSet};

use libp2p::PeerId;
use minicbor::bytes::ByteVec;

use super::{
    delta, record_cost, Engine, Now, Outcome, Sent, DIGEST_ENTRY_COST, FRAME_SLACK,
    MAX_REJECTED_PER_MESSAGE,
};
use crate::cluster::record::RejectReason;
use crate::cluster::wire::{RequestKind, SignedRecord, SignedW, SyncRequest, SyncResponse};

impl Engine {
    /// Fill a list with the records of `owners` (in order) within `budget`.
    pub(super) fn pack(
        &self,
        owners: impl IntoIterator<Item = PeerId>,
        budget: usize,
    ) -> (Vec<SignedW>, Vec<(PeerId, u64)>) {
        let mut used = 0usize;
        let mut out = Vec::new();
        let mut sent = Vec::new();
        for p in owners {
            let (Some(s), Some(v)) = (self.signed_of(&p), self.version_of(&p)) else {
                continue;
            };
            let cost = record_cost(s);
            if used + cost > budget {
                continue;
            }
            used += cost;
            out.push(SignedW::from(s));
            sent.push((p, v));
        }
        (out, sent)
    }

    pub(super) fn budget(&self, digest_len: usize) -> usize {
        self.cfg
            .max_frame_bytes
            .saturating_sub(FRAME_SLACK + digest_len * DIGEST_ENTRY_COST)
    }

    /// Build a request to `peer`. For `Sync`, it carries every record the
    /// peer is not known to have (only our own on first contact); for
    /// `Push`, our own record; `Records` is built by
    /// [`Engine::handle_response`].
    pub fn request(&mut self, peer: PeerId, kind: RequestKind, now: Now) -> (SyncRequest, Sent) {
        // Pushes are preceded by a forced refresh (once, not per target).
        self.refresh(now, false);
        // A delta needs to know what the peer has: without that (first
        // contact, after a failure) it is a full `Sync`.
        let kind = if kind == RequestKind::Delta && !self.known.contains_key(&peer) {
            RequestKind::Sync
        } else {
            kind
        };
        let mut digest = self.digest();
        if kind == RequestKind::Delta {
            // Only what the peer is believed to lack (docs/protocol.md 7.5).
            let k = self.known.get(&peer);
            digest.retain(|p, v| *p != peer && k.is_none_or(|k| k.get(p).is_none_or(|kv| kv < v)));
        }
        let owners: Vec<PeerId> = match (kind, self.known.get(&peer)) {
            (RequestKind::Sync | RequestKind::Delta, Some(k)) => {
                // Own record first, so it is never crowded out.
                let mut v: Vec<PeerId> = digest
                    .iter()
                    .filter(|(p, ver)| **p != peer && k.get(*p).is_none_or(|kv| kv < *ver))
                    .map(|(p, _)| *p)
                    .collect();
                v.sort_by_key(|p| *p != self.me);
                v
            }
            _ => {
                let theirs = self.known.get(&peer).and_then(|k| k.get(&self.me)).copied();
                if theirs.is_some_and(|t| t >= self.own_version) {
                    vec![]
                } else {
                    vec![self.me]
                }
            }
        };
        // A peer whose roster version we have not heard yet gets ours: the
        // first exchange after a connection (or an operator's install,
        // pushed at once) carries it instead of waiting for the peer to ask.
        let roster = self.roster_for(Some(self.roster_of.get(&peer).copied().unwrap_or(0)));
        let roster_cost = roster.as_ref().map_or(0, |r| r.len() + 16);
        let budget = self.budget(digest.len()).saturating_sub(roster_cost);
        let (records, sent_records) = self.pack(owners, budget);
        let req = SyncRequest {
            kind: kind.code(),
            cluster: self.cfg.cluster.clone(),
            digest: digest
                .iter()
                .map(|(p, v)| (ByteVec::from(p.to_bytes()), *v))
                .collect(),
            records,
            roster_version: self.wire_roster_version(),
            roster,
        };
        let sent = Sent {
            digest: digest.into_iter().collect(),
            records: sent_records,
            follow_up: false,
        };
        (req, sent)
    }

    pub(super) fn knowledge(&mut self, peer: PeerId) -> &mut HashMap<PeerId, u64> {
        self.known.entry(peer).or_default()
    }

    pub(super) fn learn(&mut self, peer: PeerId, owner: PeerId, version: u64) {
        let e = self.knowledge(peer).entry(owner).or_insert(0);
        *e = (*e).max(version);
    }

    /// Handle a request from `from`: accept its records, answer with the
    /// records it lacks and the owners we want. `Err` means the request as a
    /// whole is rejected (no response is sent).
    pub fn handle_request(
        &mut self,
        from: PeerId,
        req: &SyncRequest,
        now: Now,
    ) -> Result<(SyncResponse, Outcome), RejectReason> {
        if req.cluster != self.cfg.cluster {
            return Err(RejectReason::Unauthorized);
        }
        let digest = req.parsed_digest()?;
        self.last_contact.insert(from, now.mono);
        let mut out = Outcome::default();
        // The roster first: it decides whom the rest of the message is from.
        self.peer_roster(from, req.roster_version, req.roster.as_ref(), now, &mut out);
        if !self.is_member(&from) {
            // Outside the roster: nothing it sends is stored or relayed, and
            // it gets only the roster back (which tells it so).
            let name = req
                .signed_records()
                .find(|s| s.peek().is_ok_and(|h| h.0 == from))
                .and_then(|s| s.verify(&self.cfg.cluster).ok())
                .map(|r| r.state.node);
            self.note_candidate(from, now.mono, name);
            if !req.records.is_empty() {
                out.rejected.push(RejectReason::NotInRoster);
            }
            let resp = SyncResponse {
                roster_version: self.wire_roster_version(),
                roster: self.roster_for(Some(req.roster_version.unwrap_or(0))),
                ..SyncResponse::default()
            };
            return Ok((resp, out));
        }
        let mut received = Vec::new();
        for s in req.signed_records() {
            if out.rejected.len() >= MAX_REJECTED_PER_MESSAGE {
                break;
            }
            if let Some(pv) = self.accept(from, s, now, &mut out) {
                received.push(pv);
            }
        }
        for (p, v) in &received {
            self.learn(from, *p, *v);
        }
        if req.kind() == RequestKind::Records {
            if received.iter().any(|(p, _)| *p == self.me) {
                self.hold_own_until = None;
            }
            // A follow-up: records only, nothing to answer.
            let resp = SyncResponse {
                roster_version: self.wire_roster_version(),
                ..SyncResponse::default()
            };
            return Ok((resp, out));
        }
        if req.kind() == RequestKind::Delta {
            return Ok((
                self.answer_delta(from, &digest, req.roster_version, now),
                out,
            ));
        }
        // The requester's digest is authoritative for what it has now.
        let theirs: BTreeMap<PeerId, u64> = digest.iter().copied().collect();
        // Holding our own record (a restart): keep holding while this peer
        // has an older record of ours that we have not heard yet (we ask
        // for it below); release once we have it or the peer knows nothing
        // of us.
        let holding = self.own.is_none() && self.hold_own_until.is_some();
        let ask_for_mine = holding
            && !received.iter().any(|(p, _)| *p == self.me)
            && theirs.get(&self.me).is_some_and(|v| *v > self.own_version);
        if holding && !ask_for_mine {
            self.hold_own_until = None;
        }
        // Remember only entries about owners we hold (or ourselves): a
        // digest of unverified PeerIds must not grow our memory.
        let held: Vec<(PeerId, u64)> = theirs
            .iter()
            .filter(|(p, _)| **p == self.me || self.peers.contains_key(p))
            .map(|(p, v)| (*p, *v))
            .collect();
        let k = self.knowledge(from);
        k.clear();
        k.extend(held);
        for (p, v) in received {
            self.learn(from, p, v);
        }
        self.refresh(now, false);
        let mine = self.digest();
        let d = delta(&mine, &theirs);
        // The requester's own record goes back too when its digest lacks it
        // (or holds an older version): that is a node that restarted
        // without its state, and its previous record carries its counter
        // slots (see `hold_own_record`).
        let they_lack: Vec<PeerId> = d.they_lack;
        let roster = self.roster_for(Some(req.roster_version.unwrap_or(0)));
        let roster_cost = roster.as_ref().map_or(0, |r| r.len() + 16);
        let (records, sent) = self.pack(they_lack, self.budget(0).saturating_sub(roster_cost));
        for (p, v) in sent {
            self.learn(from, p, v);
        }
        let want = d
            .i_lack
            .into_iter()
            .filter(|p| *p != self.me || ask_for_mine)
            .map(|p| ByteVec::from(p.to_bytes()))
            .collect();
        Ok((
            SyncResponse {
                records,
                want,
                roster_version: self.wire_roster_version(),
                roster,
            },
            out,
        ))
    }

    /// Answer a `Delta` (records already accepted and learned): its digest
    /// lists only what changed, so what the requester lacks comes from what
    /// we believe it has (`known`, which the entries update), and we ask
    /// for the entries newer than ours.
    fn answer_delta(
        &mut self,
        from: PeerId,
        entries: &[(PeerId, u64)],
        roster_version: Option<u64>,
        now: Now,
    ) -> SyncResponse {
        for (p, v) in entries {
            // Only owners we hold (or ourselves): unverified PeerIds must
            // not grow our memory.
            if *p == self.me || self.peers.contains_key(p) {
                self.learn(from, *p, *v);
            }
        }
        self.refresh(now, false);
        let mine = self.digest();
        let k = self.known.get(&from);
        let mut they_lack: Vec<PeerId> = mine
            .iter()
            .filter(|(p, v)| **p != from && k.is_none_or(|k| k.get(*p).is_none_or(|kv| kv < *v)))
            .map(|(p, _)| *p)
            .collect();
        they_lack.sort_by_key(|p| *p != self.me);
        let want = entries
            .iter()
            .filter(|(p, v)| *p != self.me && mine.get(p).is_none_or(|m| m < v))
            .map(|(p, _)| ByteVec::from(p.to_bytes()))
            .collect();
        let roster = self.roster_for(Some(roster_version.unwrap_or(0)));
        let roster_cost = roster.as_ref().map_or(0, |r| r.len() + 16);
        let (records, sent) = self.pack(they_lack, self.budget(0).saturating_sub(roster_cost));
        for (p, v) in sent {
            self.learn(from, p, v);
        }
        SyncResponse {
            records,
            want,
            roster_version: self.wire_roster_version(),
            roster,
        }
    }

    /// Handle the response to a request we sent (`sent` describes it).
    /// Returns a follow-up request if the peer wants records we have.
    pub fn handle_response(
        &mut self,
        from: PeerId,
        sent: &Sent,
        resp: &SyncResponse,
        now: Now,
    ) -> (Option<(SyncRequest, Sent)>, Outcome) {
        let mut out = Outcome::default();
        self.last_contact.insert(from, now.mono);
        let theirs_roster = self.peer_roster(
            from,
            resp.roster_version,
            resp.roster.as_ref(),
            now,
            &mut out,
        );
        if !self.is_member(&from) {
            // Outside the roster: its records are neither stored nor relayed.
            if !resp.records.is_empty() {
                out.rejected.push(RejectReason::NotInRoster);
            }
            return (None, out);
        }
        let want: HashSet<PeerId> = resp.parsed_want().into_iter().collect();
        for (p, v) in &sent.digest {
            if !want.contains(p) {
                self.learn(from, *p, *v);
            }
        }
        for (p, v) in &sent.records {
            self.learn(from, *p, *v);
        }
        for s in resp.records.iter().cloned().map(SignedRecord::from) {
            if out.rejected.len() >= MAX_REJECTED_PER_MESSAGE {
                break;
            }
            let header = s.peek().ok();
            if let Some((p, v)) = self.accept(from, s, now, &mut out) {
                self.learn(from, p, v);
            } else if let Some((p, v, _)) = header {
                // A copy of a version we already hold: the peer has it too.
                if self.version_of(&p) == Some(v) {
                    self.learn(from, p, v);
                }
            }
        }
        self.hold_own_until = None;
        if sent.follow_up {
            return (None, out);
        }
        // A peer behind on the roster gets ours in a follow-up at once.
        let roster = self.roster_for(Some(theirs_roster));
        let digest = self.digest();
        let owners: Vec<PeerId> = want
            .into_iter()
            .filter(|p| digest.contains_key(p))
            .collect();
        if owners.is_empty() && roster.is_none() {
            return (None, out);
        }
        let roster_cost = roster.as_ref().map_or(0, |r| r.len() + 16);
        let (records, sent_records) = self.pack(owners, self.budget(0).saturating_sub(roster_cost));
        let req = SyncRequest {
            kind: RequestKind::Records.code(),
            cluster: self.cfg.cluster.clone(),
            digest: Vec::new(),
            records,
            roster_version: self.wire_roster_version(),
            roster,
        };
        let follow = Sent {
            digest: Vec::new(),
            records: sent_records,
            follow_up: true,
        };
        (Some((req, follow)), out)
    }

    /// Forget what we believed `peer` has (after a failed exchange or a
    /// disconnection), so the next exchange starts from its digest.
    pub fn forget_knowledge(&mut self, peer: &PeerId) {
        self.known.remove(peer);
        self.last_contact.remove(peer);
        self.roster_of.remove(peer);
    }
}

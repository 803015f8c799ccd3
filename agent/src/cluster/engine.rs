//! The gossip engine, free of I/O: records, versions, digests, what each
//! neighbour is known to have, liveness and counters. The swarm loop (and
//! the simulation test) feeds it requests, responses and the clock, and
//! sends what it returns.
//!
//! Dissemination (see docs/protocol.md, "Dissemination"):
//! - every `sync_interval` each node runs one exchange with its *relay*, the
//!   connected, non-dead member with the smallest base58 PeerId other than
//!   itself. The request carries the node's digest and every record the
//!   relay is not known to have (typically the node's own new version); the
//!   response carries every record newer than the node's digest. All nodes
//!   choose the same relay, so a change reaches everybody in two hops: at
//!   most two sync intervals plus two one-way latencies.
//! - every `anti_entropy_interval` each node also exchanges with `fanout`
//!   random connected peers (repair if views of the relay disagree, and
//!   gradual spread if the relay is gone);
//! - urgent changes (state-machine transitions) are pushed at once to every
//!   connected member.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use minicbor::bytes::ByteVec;
use rand::seq::SliceRandom;
use rand::Rng;

use super::counters::Counters;
use super::record::{LocalState, Record, RejectReason};
use super::roster::{Roster, RosterError};
use super::view::{ClusterPeer, ClusterView, Liveness, LivenessTimeouts};
use super::wire::{RequestKind, SignedRecord, SignedW, SyncRequest, SyncResponse};

/// Engine settings (a subset of `ClusterConfig`).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Cluster name carried in records and requests.
    pub cluster: String,
    /// Own record re-signed with a new version at least this often.
    pub refresh_interval: Duration,
    /// Liveness timeouts.
    pub timeouts: LivenessTimeouts,
    /// Frame limit; messages are filled with records up to it.
    pub max_frame_bytes: usize,
    /// If set, records of other owners are rejected as `unauthorized`.
    pub allowlist: Option<HashSet<PeerId>>,
    /// Other members' records kept at most; see
    /// [`ConnLimits::max_members`](super::config::ConnLimits::max_members).
    pub max_members: usize,
    /// New identities one peer may introduce (records of owners we never
    /// saw, relayed by a peer that is not their owner) per minute, and the
    /// burst. Defaults 120 and 256: a node joining a room of 256 learns it
    /// from its first peer at once, a larger one within minutes (and from
    /// every other member directly). More are rejected as
    /// `new_identities`: a member minting identities cannot fill the member
    /// table or the metrics from one connection.
    pub new_identities_per_minute: u32,
    /// See [`EngineConfig::new_identities_per_minute`].
    pub new_identities_burst: u32,
    /// The room operator's public key (`cluster.operator_key`). With it,
    /// a roster signed by that key decides who is a member (see
    /// [`super::roster`]); without it, rosters are ignored.
    pub operator: Option<libp2p::identity::PublicKey>,
    /// Accept records without checking their signature. Only for
    /// simulations of the protocol (an unoptimised Ed25519 verification
    /// costs ~20 ms); `ClusterConfig` never sets it.
    pub insecure_skip_signature_check: bool,
}

/// A point in time on both clocks: monotonic for timers, wall clock for
/// versions and `updated_ms`.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic.
    pub mono: Instant,
    /// Unix milliseconds.
    pub unix_ms: u64,
}

impl Now {
    /// The system clocks.
    pub fn system() -> Now {
        Now {
            mono: Instant::now(),
            unix_ms: unix_ms(),
        }
    }
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The next version of our own record: strictly greater than anything we
/// published (or saw of ourselves), and at least the wall clock in ms, so a
/// restarted node without state still publishes newer versions.
pub fn next_version(prev: u64, unix_ms: u64) -> u64 {
    prev.saturating_add(1).max(unix_ms)
}

/// How old a record looks when its owner is seen for the first time
/// (docs/protocol.md, section 7): the owner's age of it, `now - updated_ms`.
/// A timestamp that cannot be right (absent or 0, older than
/// `dead_after + retention`, or more than `dead_after` in the future: a
/// broken implementation or a clock far off) gives `dead_after`: the record
/// shows up as dead (stale) instead of being dropped unseen, and a live
/// owner turns alive with its next version, which the receiver times itself.
pub fn first_sight_age(now_unix_ms: u64, updated_ms: u64, t: &LivenessTimeouts) -> Duration {
    let cap = t.dead_after.saturating_add(t.retention);
    let ahead = u64::try_from(t.dead_after.as_millis()).unwrap_or(u64::MAX);
    if updated_ms == 0 || updated_ms > now_unix_ms.saturating_add(ahead) {
        return t.dead_after;
    }
    let age = Duration::from_millis(now_unix_ms.saturating_sub(updated_ms));
    if age >= cap {
        t.dead_after
    } else {
        age
    }
}

/// Result of comparing two digests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Owners whose record `mine` has newer than `theirs` (or `theirs` lacks).
    pub they_lack: Vec<PeerId>,
    /// Owners whose record `theirs` has newer than `mine` (or `mine` lacks).
    pub i_lack: Vec<PeerId>,
}

/// Compare two digests (owner -> version).
pub fn delta(mine: &BTreeMap<PeerId, u64>, theirs: &BTreeMap<PeerId, u64>) -> Delta {
    let mut d = Delta::default();
    for (p, v) in mine {
        if theirs.get(p).is_none_or(|t| t < v) {
            d.they_lack.push(*p);
        }
    }
    for (p, v) in theirs {
        if mine.get(p).is_none_or(|m| m < v) {
            d.i_lack.push(*p);
        }
    }
    d
}

/// What a request carried, kept until its response arrives.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// The digest we sent.
    pub digest: Vec<(PeerId, u64)>,
    /// Owners and versions of the records we sent.
    pub records: Vec<(PeerId, u64)>,
    /// Whether this was a follow-up (no further follow-ups then).
    pub follow_up: bool,
}

/// Effects of handling a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One entry per rejected record or message.
    pub rejected: Vec<RejectReason>,
    /// Some record was added or advanced.
    pub changed: bool,
}

struct Own {
    record: Record,
    signed: SignedRecord,
    bumped_at: Instant,
}

struct Entry {
    signed: SignedRecord,
    record: Record,
    b58: String,
    advanced_at: Instant,
    last_liveness: Liveness,
}

/// Approximate encoded size of one record inside a message.
fn record_cost(s: &SignedRecord) -> usize {
    s.payload.len() + s.signature.len() + 16
}

/// Approximate encoded size of one digest entry.
const DIGEST_ENTRY_COST: usize = 56;
/// Room kept free in every frame for headers and the rest.
const FRAME_SLACK: usize = 1024;
/// Records of one message examined after this many were rejected are
/// dropped unexamined. A record costs a signature verification (tens of
/// microseconds), and a 1 MiB frame holds thousands of small forged ones:
/// without the cap one request per 50 ms would keep the event loop busy.
/// Honest peers relay only records they verified, so they never get near it.
pub const MAX_REJECTED_PER_MESSAGE: usize = 16;

/// The engine. See the module documentation.
pub struct Engine {
    cfg: EngineConfig,
    key: Keypair,
    me: PeerId,
    me_b58: String,
    local: LocalState,
    addrs: Vec<Multiaddr>,
    own: Option<Own>,
    own_version: u64,
    dirty: bool,
    peers: HashMap<PeerId, Entry>,
    tombstones: HashMap<PeerId, (u64, Instant)>,
    counters: Counters,
    known: HashMap<PeerId, HashMap<PeerId, u64>>,
    last_contact: HashMap<PeerId, Instant>,
    /// Per introducing peer: tokens left and when they were last counted.
    introductions: HashMap<PeerId, (f64, Instant)>,
    /// No own record before this time or the first exchange with a peer
    /// (see [`Engine::hold_own_record`]).
    hold_own_until: Option<Instant>,
    /// The room roster, once one is known (needs `cfg.operator`).
    roster: Option<Roster>,
    /// A roster adopted since the last [`Engine::take_new_roster`].
    roster_news: bool,
    /// Per peer: the roster version it told us it holds.
    roster_of: HashMap<PeerId, u64>,
    /// Identities outside the roster that talked to us directly, for the
    /// operator to approve: last contact and the node name their own
    /// record claims. At most [`MAX_CANDIDATES`].
    candidates: HashMap<PeerId, (Instant, Option<String>)>,
}

/// Non-members remembered for `coolmesh roster list` at most; the oldest
/// contact is forgotten first.
pub const MAX_CANDIDATES: usize = 256;

impl Engine {
    /// A new engine for the node owning `key`.
    pub fn new(cfg: EngineConfig, key: Keypair) -> Self {
        let me = key.public().to_peer_id();
        Engine {
            cfg,
            key,
            me,
            me_b58: me.to_base58(),
            local: LocalState::default(),
            addrs: Vec::new(),
            own: None,
            own_version: 0,
            dirty: true,
            peers: HashMap::new(),
            tombstones: HashMap::new(),
            counters: Counters::new(),
            known: HashMap::new(),
            last_contact: HashMap::new(),
            introductions: HashMap::new(),
            hold_own_until: None,
            roster: None,
            roster_news: false,
            roster_of: HashMap::new(),
            candidates: HashMap::new(),
        }
    }

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
    fn adopt_roster(&mut self, r: Roster, now: Now) {
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

    fn roster_version(&self) -> u64 {
        self.roster.as_ref().map_or(0, |r| r.version)
    }

    /// What goes on the wire: absent without a roster.
    fn wire_roster_version(&self) -> Option<u64> {
        self.roster.as_ref().map(|r| r.version)
    }

    /// Our roster for a peer that told us it holds an older one.
    fn roster_for(&self, theirs: Option<u64>) -> Option<ByteVec> {
        let r = self.roster.as_ref()?;
        theirs
            .is_some_and(|t| t < r.version)
            .then(|| ByteVec::from(r.to_bytes().to_vec()))
    }

    /// Take a roster a peer sent. Errors other than "not newer" are counted
    /// as rejections.
    fn roster_from_peer(&mut self, from: PeerId, bytes: &[u8], now: Now, out: &mut Outcome) {
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

    /// Remember a non-member that contacted us directly (bounded).
    fn note_candidate(&mut self, p: PeerId, now: Instant, name: Option<String>) {
        if self.candidates.len() >= MAX_CANDIDATES && !self.candidates.contains_key(&p) {
            if let Some(oldest) = self
                .candidates
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(p, _)| *p)
            {
                self.candidates.remove(&oldest);
            }
        }
        let e = self.candidates.entry(p).or_insert((now, None));
        e.0 = now;
        if name.is_some() {
            e.1 = name;
        }
    }

    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Take the agent's latest state. Returns `true` if the state machine's
    /// state changed (an urgent change that should be pushed at once).
    pub fn set_local(&mut self, local: LocalState) -> bool {
        if local == self.local {
            return false;
        }
        let urgent = local.fsm.state != self.local.fsm.state;
        self.counters.merge_slots(&self.me_b58, &local.counters);
        self.local = local;
        self.dirty = true;
        urgent
    }

    /// Set the addresses published in our record.
    pub fn set_addrs(&mut self, addrs: Vec<Multiaddr>) {
        if addrs != self.addrs {
            self.addrs = addrs;
            self.dirty = true;
        }
    }

    /// Make no own record until `until` or the first exchange with a peer,
    /// whichever comes first. A restarted node whose counter file was lost
    /// must first hear its previous record from a peer: peers keep only the
    /// newest version of each owner, so once a new (empty) version of ours
    /// reached them, the old slots would only survive merged in their
    /// counters, and never come back to us.
    pub fn hold_own_record(&mut self, until: Instant) {
        self.hold_own_until = Some(until);
    }

    /// Make a new version of our own record if the local state changed, the
    /// refresh interval passed, or `force`. Returns whether it did.
    pub fn refresh(&mut self, now: Now, force: bool) -> bool {
        if self.own.is_none() && self.hold_own_until.is_some_and(|u| now.mono < u) {
            return false;
        }
        let due = match &self.own {
            None => true,
            Some(o) => now.mono.saturating_duration_since(o.bumped_at) >= self.cfg.refresh_interval,
        };
        if !(force || self.dirty || due) {
            return false;
        }
        let version = next_version(self.own_version, now.unix_ms);
        let mut local = self.local.clone();
        // Publish the merged own slots: after a restart that lost state, the
        // values peers still hold for us are never published lower.
        local.counters = self.counters.own_slots(&self.me_b58);
        let record = Record::from_local(
            &local,
            &self.cfg.cluster,
            self.me,
            version,
            &self.addrs,
            now.unix_ms,
        );
        match SignedRecord::sign(&record, &self.key) {
            Ok(signed) => {
                self.own_version = version;
                self.own = Some(Own {
                    record,
                    signed,
                    bumped_at: now.mono,
                });
                self.dirty = false;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign own record; keeping the previous version");
                false
            }
        }
    }

    /// Our latest published record.
    pub fn own_record(&self) -> Option<&Record> {
        self.own.as_ref().map(|o| &o.record)
    }

    /// Merged counters of every node.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Owner -> version of every record we hold, ours included.
    pub fn digest(&self) -> BTreeMap<PeerId, u64> {
        let mut d: BTreeMap<PeerId, u64> = self
            .peers
            .iter()
            .map(|(p, e)| (*p, e.record.version))
            .collect();
        if let Some(o) = &self.own {
            d.insert(self.me, o.record.version);
        }
        d
    }

    fn signed_of(&self, p: &PeerId) -> Option<&SignedRecord> {
        if *p == self.me {
            self.own.as_ref().map(|o| &o.signed)
        } else {
            self.peers.get(p).map(|e| &e.signed)
        }
    }

    fn version_of(&self, p: &PeerId) -> Option<u64> {
        if *p == self.me {
            self.own.as_ref().map(|o| o.record.version)
        } else {
            self.peers.get(p).map(|e| e.record.version)
        }
    }

    /// Fill a list with the records of `owners` (in order) within `budget`.
    fn pack(
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

    fn budget(&self, digest_len: usize) -> usize {
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
        let digest = self.digest();
        let owners: Vec<PeerId> = match (kind, self.known.get(&peer)) {
            (RequestKind::Sync, Some(k)) => {
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

    fn knowledge(&mut self, peer: PeerId) -> &mut HashMap<PeerId, u64> {
        self.known.entry(peer).or_default()
    }

    fn learn(&mut self, peer: PeerId, owner: PeerId, version: u64) {
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
        if let Some(b) = &req.roster {
            self.roster_from_peer(from, b.as_ref(), now, &mut out);
        }
        let theirs_roster = req
            .roster_version
            .unwrap_or(0)
            .max(if req.roster.is_some() {
                self.roster_version()
            } else {
                0
            });
        self.roster_of.insert(from, theirs_roster);
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
        if let Some(b) = &resp.roster {
            self.roster_from_peer(from, b.as_ref(), now, &mut out);
        }
        let theirs_roster = resp
            .roster_version
            .unwrap_or(0)
            .max(if resp.roster.is_some() {
                self.roster_version()
            } else {
                0
            });
        self.roster_of.insert(from, theirs_roster);
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

    /// Take one token of `from`'s budget of new identities (see
    /// [`EngineConfig::new_identities_per_minute`]).
    fn introduce(&mut self, from: PeerId, now: Instant) -> bool {
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

    /// Forget what we believed `peer` has (after a failed exchange or a
    /// disconnection), so the next exchange starts from its digest.
    pub fn forget_knowledge(&mut self, peer: &PeerId) {
        self.known.remove(peer);
        self.last_contact.remove(peer);
        self.roster_of.remove(peer);
    }

    /// Validate and store one record. Returns `(owner, version)` if it was
    /// new to us.
    fn accept(
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
    fn evict_longest_dead(&mut self, now: Now) -> bool {
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
    fn tombstone(&mut self, p: PeerId, version: u64, at: Instant) {
        for k in self.known.values_mut() {
            k.remove(&p);
        }
        self.tombstones.insert(p, (version, at));
        let cap = self.cfg.max_members.saturating_mul(4).max(16);
        if self.tombstones.len() > cap {
            if let Some(oldest) = self
                .tombstones
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| *p)
            {
                self.tombstones.remove(&oldest);
            }
        }
    }

    /// Liveness of a known peer.
    pub fn liveness(&self, peer: &PeerId, now: Instant) -> Option<Liveness> {
        self.peers.get(peer).map(|e| {
            self.cfg
                .timeouts
                .liveness(now.saturating_duration_since(e.advanced_at))
        })
    }

    /// Known peers with their liveness and published addresses.
    pub fn members(&self, now: Instant) -> Vec<(PeerId, Liveness, Vec<Multiaddr>)> {
        self.peers
            .iter()
            .map(|(p, e)| {
                (
                    *p,
                    self.cfg
                        .timeouts
                        .liveness(now.saturating_duration_since(e.advanced_at)),
                    e.record.addrs.clone(),
                )
            })
            .collect()
    }

    /// The relay: the connected, alive (not suspect) member with the
    /// smallest base58 PeerId other than this node. A hub that stops
    /// advancing its version (crashed without closing connections,
    /// partitioned, overloaded) is replaced after `suspect_after`.
    pub fn relay(&self, is_connected: impl Fn(&PeerId) -> bool, now: Instant) -> Option<PeerId> {
        self.peers
            .iter()
            .filter(|(p, e)| {
                is_connected(p)
                    && self
                        .cfg
                        .timeouts
                        .liveness(now.saturating_duration_since(e.advanced_at))
                        == Liveness::Alive
            })
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
        &self,
        connected: &[PeerId],
        sync_interval: Duration,
        now: Instant,
    ) -> Vec<PeerId> {
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
        &self,
        connected: &[PeerId],
        fanout: usize,
        now: Instant,
        rng: &mut R,
    ) -> Vec<PeerId> {
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
        for (p, e) in self.peers.iter_mut() {
            let since = now.mono.saturating_duration_since(e.advanced_at);
            if t.expired(since) {
                dropped.push((*p, e.record.version));
                continue;
            }
            let l = t.liveness(since);
            if l != e.last_liveness {
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
        let keep = t.retention.max(t.dead_after);
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
                let liveness = self.cfg.timeouts.liveness(age);
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
                .map(|(p, t, node)| super::view::Candidate {
                    peer_id: p,
                    since: now.saturating_duration_since(t),
                    node,
                    remote_ip: remote_ips.get(&p).copied(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::counters::{CounterKind, CounterSlot};
    use rand::SeedableRng;

    fn cfg() -> EngineConfig {
        EngineConfig {
            cluster: "room-1".into(),
            refresh_interval: Duration::from_secs(1),
            timeouts: LivenessTimeouts {
                suspect_after: Duration::from_secs(4),
                dead_after: Duration::from_secs(8),
                retention: Duration::from_secs(60),
            },
            max_frame_bytes: 1 << 20,
            allowlist: None,
            max_members: 1024,
            new_identities_per_minute: 120,
            new_identities_burst: 256,
            operator: None,
            insecure_skip_signature_check: false,
        }
    }

    fn engine() -> Engine {
        Engine::new(cfg(), Keypair::generate_ed25519())
    }

    fn at(base: Instant, ms: u64) -> Now {
        Now {
            mono: base + Duration::from_millis(ms),
            unix_ms: 1_700_000_000_000 + ms,
        }
    }

    fn bump_counter(e: &mut Engine, name: &str, p: u64) {
        let mut l = e.local.clone();
        l.counters.insert(
            name.into(),
            CounterSlot {
                kind: CounterKind::G,
                p,
                n: 0,
            },
        );
        e.set_local(l);
    }

    /// One full exchange a -> b (request, response, follow-up and its
    /// response). Returns the number of messages.
    fn exchange(a: &mut Engine, b: &mut Engine, kind: RequestKind, now: Now) -> usize {
        let (req, sent) = a.request(b.me, kind, now);
        let (resp, _) = b.handle_request(a.me, &req, now).unwrap();
        let (follow, _) = a.handle_response(b.me, &sent, &resp, now);
        let mut n = 2;
        if let Some((req, sent)) = follow {
            let (resp, _) = b.handle_request(a.me, &req, now).unwrap();
            let (none, _) = a.handle_response(b.me, &sent, &resp, now);
            assert!(none.is_none(), "no follow-up of a follow-up");
            n += 2;
        }
        n
    }

    #[test]
    fn next_version_table() {
        for (prev, wall, want) in [
            (0, 1000, 1000),
            (1000, 1000, 1001),
            (5000, 1000, 5001),
            (u64::MAX, 0, u64::MAX),
        ] {
            assert_eq!(next_version(prev, wall), want, "{prev} {wall}");
        }
    }

    #[test]
    fn delta_table() {
        let [a, b, c, d] = [
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        ];
        let mine: BTreeMap<_, _> = [(a, 5), (b, 3), (c, 1)].into_iter().collect();
        let theirs: BTreeMap<_, _> = [(a, 5), (b, 4), (d, 9)].into_iter().collect();
        let dl = delta(&mine, &theirs);
        assert_eq!(dl.they_lack, vec![c]);
        let mut il = dl.i_lack.clone();
        il.sort();
        let mut want = vec![b, d];
        want.sort();
        assert_eq!(il, want);
        assert_eq!(delta(&mine, &mine), Delta::default());
        let empty = BTreeMap::new();
        assert_eq!(delta(&mine, &empty).they_lack.len(), 3);
        assert_eq!(delta(&empty, &mine).i_lack.len(), 3);
    }

    #[test]
    fn first_contact_then_incremental() {
        let base = Instant::now();
        let (mut a, mut b) = (engine(), engine());
        bump_counter(&mut a, "x", 1);
        bump_counter(&mut b, "x", 2);
        // First contact: digest + own record, response carries b's record.
        assert_eq!(exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0)), 2);
        assert_eq!(a.counters().value("x"), Some(3));
        assert_eq!(b.counters().value("x"), Some(3));
        // Nothing new: the request carries no records.
        let (req, _) = a.request(b.me, RequestKind::Sync, at(base, 10));
        assert!(req.records.is_empty(), "b already has a's record");
        // a changes: exactly its own record travels.
        bump_counter(&mut a, "x", 5);
        let (req, _) = a.request(b.me, RequestKind::Sync, at(base, 20));
        assert_eq!(req.records.len(), 1);
    }

    #[test]
    fn relayed_records_and_follow_up() {
        let base = Instant::now();
        let (mut a, mut b, mut c) = (engine(), engine(), engine());
        for (i, e) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
            bump_counter(e, "x", i as u64 + 1);
        }
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        // c first contacts a: a's response carries a's and b's records; c's
        // digest lacks nothing a has... and a wants c's? c sent its own.
        exchange(&mut c, &mut a, RequestKind::Sync, at(base, 10));
        assert_eq!(c.counters().value("x"), Some(6));
        assert_eq!(a.counters().value("x"), Some(6));
        // b learns c's record through a (relayed, signature by c).
        exchange(&mut b, &mut a, RequestKind::Sync, at(base, 20));
        assert_eq!(b.counters().value("x"), Some(6));
        // a follow-up happens when the responder lacks something the
        // requester did not include: b pushes (own record only) to a fresh d.
        let mut d = engine();
        let n = exchange(&mut b, &mut d, RequestKind::Push, at(base, 30));
        assert_eq!(n, 4, "d wants a's and c's records");
        assert_eq!(d.counters().value("x"), Some(6));
    }

    #[test]
    fn a_node_that_lost_its_counters_gets_its_slots_back_before_publishing() {
        let base = Instant::now();
        let (mut a, mut b) = (engine(), engine());
        bump_counter(&mut a, "jobs", 5);
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        assert_eq!(b.counters().value("jobs"), Some(5));
        let old_version = a.own_record().unwrap().version;
        // a restarts with its identity but without counters.json, a minute
        // later (its wall clock makes any new version newer than the old).
        let mut a2 = Engine::new(cfg(), a.key.clone());
        a2.hold_own_record(at(base, 63_000).mono);
        let t = at(base, 60_000);
        assert!(!a2.refresh(t, false), "held: no own record yet");
        assert!(a2.own_record().is_none());
        // First exchange: b still holds a's old record and sends it.
        exchange(&mut a2, &mut b, RequestKind::Sync, t);
        assert_eq!(a2.counters().value("jobs"), Some(5), "slots adopted");
        assert!(a2.refresh(t, false));
        let rec = a2.own_record().unwrap();
        assert!(rec.version > old_version);
        assert_eq!(
            rec.state.counters["jobs"].p, 5,
            "published with the old slot"
        );
        // A lone node is held only until the deadline.
        let mut lone = engine();
        lone.hold_own_record(at(base, 3000).mono);
        assert!(!lone.refresh(at(base, 1000), false));
        assert!(lone.refresh(at(base, 3000), false));
    }

    #[test]
    fn a_requesters_digest_of_unknown_owners_is_not_remembered() {
        let base = Instant::now();
        let (mut a, mut b) = (engine(), engine());
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        // A digest naming 5,000 owners nobody knows.
        let mut req = a.request(b.me, RequestKind::Sync, at(base, 1)).0;
        for _ in 0..5000 {
            let p = Keypair::generate_ed25519().public().to_peer_id();
            req.digest.push((ByteVec::from(p.to_bytes()), 1));
        }
        let _ = b.handle_request(a.me, &req, at(base, 2));
        let remembered = b.known.get(&a.me).map_or(0, |k| k.len());
        assert!(remembered <= 2, "{remembered} entries remembered");
    }

    #[test]
    fn stale_and_own_records() {
        let base = Instant::now();
        let (mut a, mut b) = (engine(), engine());
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        let old = b.peers[&a.me].signed.clone();
        // Re-delivering the same version changes nothing.
        let mut out = Outcome::default();
        assert!(b.accept(a.me, old.clone(), at(base, 5), &mut out).is_none());
        assert_eq!(out, Outcome::default());
        // A restarted `a` (fresh engine, same key, older wall clock) learns
        // its previous version from b and continues above it.
        let mut a2 = Engine::new(cfg(), a.key.clone());
        let mut early = at(base, 0);
        early.unix_ms -= 60_000;
        bump_counter(&mut b, "y", 1);
        let mut out = Outcome::default();
        a2.accept(b.me, old, early, &mut out);
        assert!(out.changed);
        a2.refresh(early, true);
        assert!(a2.own_record().unwrap().version > a.own_record().unwrap().version);
    }

    #[test]
    fn forged_and_foreign_records_are_rejected() {
        let base = Instant::now();
        let (a, mut b) = (engine(), engine());
        let victim = Keypair::generate_ed25519();
        // A record claiming to be the victim's, signed by a.
        let mut rec = Record::from_local(
            &LocalState::default(),
            "room-1",
            victim.public().to_peer_id(),
            1,
            &[],
            0,
        );
        let payload = crate::cluster::wire::RecordPayload::from_record(&rec)
            .encode()
            .unwrap();
        let forged = SignedRecord::sign_payload(payload, &a.key).unwrap();
        // a's own record with a slot owned by the victim.
        rec.peer_id = a.me;
        let mut p = crate::cluster::wire::RecordPayload::from_record(&rec);
        p.counters.push(crate::cluster::wire::record::SlotW {
            name: "x".into(),
            kind: 0,
            owner: victim.public().to_peer_id().to_bytes(),
            p: 100,
            n: 0,
        });
        let foreign = SignedRecord::sign_payload(p.encode().unwrap(), &a.key).unwrap();
        let req = SyncRequest {
            kind: 0,
            cluster: "room-1".into(),
            digest: vec![],
            records: vec![
                SignedW::from(&forged),
                SignedW::from(&foreign),
                SignedW {
                    payload: vec![0xff; 10],
                    signature: vec![],
                },
            ],
            ..Default::default()
        };
        let (_, out) = b.handle_request(a.me, &req, at(base, 0)).unwrap();
        assert_eq!(
            out.rejected,
            vec![
                RejectReason::BadSignature,
                RejectReason::ForeignSlot,
                RejectReason::Malformed
            ]
        );
        assert!(b.peers.is_empty());
        assert_eq!(b.counters().value("x"), None);
        // Wrong cluster: the whole request is refused.
        let req = SyncRequest {
            cluster: "room-2".into(),
            ..Default::default()
        };
        assert_eq!(
            b.handle_request(a.me, &req, at(base, 0)).unwrap_err(),
            RejectReason::Unauthorized
        );
    }

    #[test]
    fn allowlist_rejects_records_of_strangers() {
        let base = Instant::now();
        let a = Keypair::generate_ed25519();
        let mut c = cfg();
        c.allowlist = Some(HashSet::from([a.public().to_peer_id()]));
        let mut b = Engine::new(c, Keypair::generate_ed25519());
        let mut a = Engine::new(cfg(), a);
        let mut stranger = engine();
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        assert_eq!(b.peers.len(), 1);
        let (req, _) = stranger.request(b.me, RequestKind::Push, at(base, 0));
        let (_, out) = b.handle_request(stranger.me, &req, at(base, 0)).unwrap();
        assert_eq!(out.rejected, vec![RejectReason::Unauthorized]);
    }

    #[test]
    fn liveness_retention_and_tombstones() {
        let base = Instant::now();
        let (mut a, mut b) = (engine(), engine());
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        let stale_copy = b.peers[&a.me].signed.clone();
        assert_eq!(
            b.liveness(&a.me, at(base, 3999).mono),
            Some(Liveness::Alive)
        );
        assert!(
            b.housekeeping(at(base, 4000)),
            "alive -> suspect is a change"
        );
        assert_eq!(
            b.liveness(&a.me, at(base, 4000).mono),
            Some(Liveness::Suspect)
        );
        assert!(b.housekeeping(at(base, 8000)));
        let v = b.view(
            at(base, 8000).mono,
            &HashSet::new(),
            &HashMap::new(),
            &[],
            None,
        );
        assert!(v.peers[&a.me].stale);
        assert!(!b.housekeeping(at(base, 9000)));
        // Dropped after dead_after + retention; counters stay.
        bump_counter(&mut a, "x", 7);
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 9000));
        assert_eq!(
            b.liveness(&a.me, at(base, 9000).mono),
            Some(Liveness::Alive)
        );
        assert!(b.housekeeping(at(base, 9000 + 68_000)));
        assert!(b.liveness(&a.me, at(base, 9000 + 68_000).mono).is_none());
        assert_eq!(b.counters().value("x"), Some(7));
        // A relayed old copy does not resurrect it.
        let mut out = Outcome::default();
        assert!(b
            .accept(b.me, stale_copy, at(base, 80_000), &mut out)
            .is_none());
        // A newer version does.
        exchange(&mut a, &mut b, RequestKind::Push, at(base, 81_000));
        assert_eq!(
            b.liveness(&a.me, at(base, 81_000).mono),
            Some(Liveness::Alive)
        );
    }

    fn with_operator(op: &Keypair) -> Engine {
        let mut c = cfg();
        c.operator = Some(op.public());
        Engine::new(c, Keypair::generate_ed25519())
    }

    fn signed_roster(op: &Keypair, version: u64, members: &[PeerId]) -> Roster {
        Roster::sign(op, "room-1", version, 0, members.iter().copied().collect()).unwrap()
    }

    #[test]
    fn the_roster_spreads_and_shuts_out_non_members() {
        let base = Instant::now();
        let op = Keypair::generate_ed25519();
        let (mut a, mut b, mut x) = (with_operator(&op), with_operator(&op), with_operator(&op));
        // Before any roster, everyone holding the key is a member.
        exchange(&mut x, &mut b, RequestKind::Sync, at(base, 0));
        assert!(b.peers.contains_key(&x.me));
        // The operator installs a roster of a and b on a.
        let r = signed_roster(&op, 10, &[a.me, b.me]);
        assert_eq!(a.offer_roster(r.to_bytes(), at(base, 10)), Ok(true));
        assert!(a.take_new_roster().is_some());
        assert!(a.take_new_roster().is_none(), "reported once");
        // One exchange a -> b carries it (a has not heard b's version, so
        // its first request holds the roster).
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 20));
        assert_eq!(b.roster().map(|r| r.version), Some(10));
        assert!(b.take_new_roster().is_some(), "b stores it");
        // x's record left b at once, and x is now waiting outside.
        assert!(!b.peers.contains_key(&x.me));
        // x pushes: its records are refused and it gets the roster back.
        let (req, sent) = x.request(b.me, RequestKind::Push, at(base, 1000));
        let (resp, out) = b.handle_request(x.me, &req, at(base, 1000)).unwrap();
        assert_eq!(out.rejected, vec![RejectReason::NotInRoster]);
        assert!(resp.records.is_empty() && resp.want.is_empty());
        assert!(resp.roster.is_some());
        assert!(!b.peers.contains_key(&x.me));
        assert_eq!(b.candidates().first().map(|c| c.0), Some(x.me));
        let (follow, _) = x.handle_response(b.me, &sent, &resp, at(base, 1000));
        assert!(follow.is_none());
        assert_eq!(x.roster().map(|r| r.version), Some(10));
        assert!(!x.is_member(&x.me));
        // A member relaying x's record (c, configured without the
        // operator key, keeps it) is refused for that record, never stored.
        let mut c = Engine::new(cfg(), Keypair::generate_ed25519());
        exchange(&mut x, &mut c, RequestKind::Sync, at(base, 1100));
        let xs = c.peers[&x.me].signed.clone();
        let mut out = Outcome::default();
        assert!(b.accept(a.me, xs, at(base, 1200), &mut out).is_none());
        assert_eq!(out.rejected, vec![RejectReason::NotInRoster]);
        // Views: the roster is there, and every alive peer votes.
        let v = b.view(
            at(base, 1200).mono,
            &HashSet::new(),
            &HashMap::new(),
            &[],
            None,
        );
        assert_eq!(v.roster.as_ref().map(|r| r.version), Some(10));
        assert_eq!(v.voters().len(), 1, "a votes, relayed or not");
        assert_eq!(v.candidates.len(), 1);
    }

    #[test]
    fn only_a_newer_roster_signed_by_the_operator_is_taken() {
        let base = Instant::now();
        let op = Keypair::generate_ed25519();
        let mut a = with_operator(&op);
        let m = [a.me];
        assert_eq!(
            a.offer_roster(signed_roster(&op, 5, &m).to_bytes(), at(base, 0)),
            Ok(true)
        );
        assert_eq!(
            a.offer_roster(signed_roster(&op, 5, &m).to_bytes(), at(base, 0)),
            Err(RosterError::NotNewer(5, 5))
        );
        assert_eq!(
            a.offer_roster(signed_roster(&op, 4, &[]).to_bytes(), at(base, 0)),
            Err(RosterError::NotNewer(4, 5)),
            "a replayed old roster changes nothing"
        );
        let thief = Keypair::generate_ed25519();
        assert_eq!(
            a.offer_roster(signed_roster(&thief, 99, &[]).to_bytes(), at(base, 0)),
            Err(RosterError::BadSignature)
        );
        assert_eq!(a.roster().map(|r| r.version), Some(5));
        // A forged roster in a request is counted and ignored.
        let mut b = with_operator(&op);
        let (mut req, _) = b.request(a.me, RequestKind::Sync, at(base, 0));
        req.roster = Some(ByteVec::from(
            signed_roster(&thief, 99, &[b.me]).to_bytes().to_vec(),
        ));
        let (_, out) = a.handle_request(b.me, &req, at(base, 0)).unwrap();
        assert!(out.rejected.contains(&RejectReason::BadSignature));
        assert_eq!(a.roster().map(|r| r.version), Some(5));
        // Without an operator key a node takes no roster at all.
        let mut plain = engine();
        assert_eq!(
            plain.offer_roster(signed_roster(&op, 1, &[]).to_bytes(), at(base, 0)),
            Err(RosterError::NoOperatorKey)
        );
    }

    #[test]
    fn removal_from_the_roster_retires_counter_slots_keeping_totals() {
        let base = Instant::now();
        let op = Keypair::generate_ed25519();
        let (mut a, mut b) = (with_operator(&op), with_operator(&op));
        bump_counter(&mut a, "jobs", 9);
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        assert_eq!(b.counters().value("jobs"), Some(9));
        assert_eq!(
            b.offer_roster(signed_roster(&op, 1, &[b.me]).to_bytes(), at(base, 1)),
            Ok(true)
        );
        assert!(!b.peers.contains_key(&a.me));
        assert!(!b.counters().map["jobs"]
            .slots
            .contains_key(&a.me.to_base58()));
        assert_eq!(b.counters().value("jobs"), Some(9), "the total stays");
        // Added back later with more increments: counted once.
        bump_counter(&mut a, "jobs", 12);
        assert_eq!(
            b.offer_roster(signed_roster(&op, 2, &[a.me, b.me]).to_bytes(), at(base, 2)),
            Ok(true)
        );
        exchange(&mut a, &mut b, RequestKind::Push, at(base, 2000));
        assert_eq!(b.counters().value("jobs"), Some(12));
    }

    #[test]
    fn slots_of_the_long_dead_are_pruned_and_the_total_stays() {
        let base = Instant::now();
        let (mut a, mut b) = (engine(), engine());
        bump_counter(&mut a, "x", 7);
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        assert!(b.housekeeping(at(base, 8000 + 60_000)));
        assert!(b.liveness(&a.me, at(base, 68_000).mono).is_none());
        let c = &b.counters().map["x"];
        assert!(c.slots.is_empty(), "{c:?}");
        assert_eq!(b.counters().value("x"), Some(7));
        let v = b.view(
            at(base, 68_000).mono,
            &HashSet::new(),
            &HashMap::new(),
            &[],
            None,
        );
        assert!(v.counters.map["x"].slots.is_empty());
        assert_eq!(v.counters.value("x"), Some(7));
    }

    /// `push` a's own record to b; what b rejected.
    fn push(a: &mut Engine, b: &mut Engine, now: Now) -> Vec<RejectReason> {
        let (req, _) = a.request(b.me, RequestKind::Push, now);
        let (_, out) = b.handle_request(a.me, &req, now).unwrap();
        out.rejected
    }

    #[test]
    fn one_peer_introduces_a_bounded_number_of_new_identities() {
        let base = Instant::now();
        let mut b = Engine::new(
            EngineConfig {
                new_identities_per_minute: 60,
                new_identities_burst: 8,
                ..cfg()
            },
            Keypair::generate_ed25519(),
        );
        // Mallory holds the key and signs records for 20 fresh identities,
        // then relays them to b over her one connection.
        let mallory = Keypair::generate_ed25519().public().to_peer_id();
        let minted: Vec<Engine> = (0..20).map(|_| engine()).collect();
        let relay = |b: &mut Engine, minted: &mut Vec<Engine>, t: u64| {
            let mut rejected = Vec::new();
            for m in minted.iter_mut() {
                let (req, _) = m.request(b.me, RequestKind::Push, at(base, t));
                let (_, out) = b.handle_request(mallory, &req, at(base, t)).unwrap();
                rejected.extend(out.rejected);
            }
            rejected
        };
        let mut minted = minted;
        let rejected = relay(&mut b, &mut minted, 0);
        assert_eq!(b.peers.len(), 8, "the burst");
        assert_eq!(rejected.len(), 12);
        assert!(rejected.iter().all(|r| *r == RejectReason::NewIdentities));
        // A minute later, one per second refilled: 12 more fit in 60 s... but
        // only up to the burst at once.
        relay(&mut b, &mut minted, 60_000);
        assert_eq!(b.peers.len(), 16);
        // Known identities are no new ones: advancing them costs nothing,
        // and an owner pushing its own record is never counted.
        let mut own = engine();
        for t in [60_001, 60_002, 60_003] {
            assert!(push(&mut own, &mut b, at(base, t)).is_empty());
        }
        assert!(b.peers.contains_key(&own.me));
    }

    #[test]
    fn member_table_is_capped_and_dead_members_make_room() {
        let base = Instant::now();
        let mut b = Engine::new(
            EngineConfig {
                max_members: 16,
                ..cfg()
            },
            Keypair::generate_ed25519(),
        );
        let mut first: Vec<Engine> = (0..16).map(|_| engine()).collect();
        for a in &mut first {
            assert!(push(a, &mut b, at(base, 0)).is_empty());
        }
        assert_eq!(b.peers.len(), 16);
        // Full of live members: a new identity is refused and counted.
        let mut newcomer = engine();
        assert_eq!(
            push(&mut newcomer, &mut b, at(base, 1000)),
            vec![RejectReason::Capacity]
        );
        assert!(!b.peers.contains_key(&newcomer.me));
        // A known member still advances while the table is full.
        let keeper = first[0].me;
        bump_counter(&mut first[0], "x", 1);
        assert!(push(&mut first[0], &mut b, at(base, 9000)).is_empty());
        // At 10 s the other 15 are dead (8 s): the newcomer takes a dead
        // member's slot, never the live one's.
        assert!(push(&mut newcomer, &mut b, at(base, 10_000)).is_empty());
        assert_eq!(b.peers.len(), 16);
        assert!(b.peers.contains_key(&newcomer.me));
        assert!(b.peers.contains_key(&keeper));
        assert_eq!(b.tombstones.len(), 1);
        // The evicted member's counter slots stay (CRDT), and its old record
        // relayed again is not taken as new.
        assert_eq!(b.counters().value("x"), Some(1));
        // A stream of fresh identities, each arriving once the previous
        // ones are dead, keeps the table and the tombstones bounded.
        for i in 0..80u64 {
            let mut sybil = engine();
            let t = 20_000 + i * 10_000;
            assert!(push(&mut sybil, &mut b, at(base, t)).is_empty());
            assert!(b.peers.len() <= 16);
            assert!(b.tombstones.len() <= 64, "{}", b.tombstones.len());
        }
        assert_eq!(b.tombstones.len(), 64);
    }

    #[test]
    fn first_sight_of_an_old_record_is_not_alive() {
        let base = Instant::now();
        let (mut a, mut b, mut c) = (engine(), engine(), engine());
        exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
        // c meets b 20 s later (wall clock too): a's record is 20 s old.
        exchange(&mut c, &mut b, RequestKind::Sync, at(base, 20_000));
        assert_eq!(
            c.liveness(&a.me, at(base, 20_000).mono),
            Some(Liveness::Dead)
        );
        assert_eq!(
            c.liveness(&b.me, at(base, 20_000).mono),
            Some(Liveness::Alive)
        );
    }

    #[test]
    fn first_sight_age_distrusts_impossible_timestamps() {
        let t = cfg().timeouts; // dead_after 8 s, retention 60 s
        let now = 1_700_000_000_000u64;
        let s = Duration::from_secs;
        let table: [(&str, u64, Duration); 8] = [
            ("fresh", now, Duration::ZERO),
            ("3 s old", now - 3_000, s(3)),
            (
                "just inside the cap",
                now - 67_999,
                Duration::from_millis(67_999),
            ),
            ("at the cap: dead, not dropped", now - 68_000, s(8)),
            ("a day old: dead, not dropped", now - 86_400_000, s(8)),
            ("absent (0): dead, not dropped", 0, s(8)),
            ("a clock a few seconds ahead", now + 5_000, Duration::ZERO),
            ("far future: dead", now + 3_600_000, s(8)),
        ];
        for (what, updated, want) in table {
            assert_eq!(first_sight_age(now, updated, &t), want, "{what}");
        }
        // Nothing overflows at the extremes.
        assert_eq!(first_sight_age(0, u64::MAX, &t), s(8));
        assert_eq!(first_sight_age(u64::MAX, 1, &t), s(8));
    }

    #[test]
    fn record_without_timestamp_is_kept_dead_then_turns_alive() {
        let base = Instant::now();
        let (mut a, mut c) = (engine(), engine());
        let mut old = at(base, 0);
        old.unix_ms = 1; // "updated_ms" in 1970: an implausible timestamp
        let (req, _) = a.request(c.me, RequestKind::Push, old);
        let (_, out) = c.handle_request(a.me, &req, at(base, 0)).unwrap();
        assert!(out.changed && out.rejected.is_empty());
        assert_eq!(c.liveness(&a.me, at(base, 0).mono), Some(Liveness::Dead));
        // Still there after housekeeping (it used to be dropped unseen).
        c.housekeeping(at(base, 300));
        assert_eq!(c.liveness(&a.me, at(base, 300).mono), Some(Liveness::Dead));
        // The owner's next version makes it alive.
        let (req, _) = a.request(c.me, RequestKind::Push, at(base, 1_500));
        c.handle_request(a.me, &req, at(base, 1_500)).unwrap();
        assert_eq!(
            c.liveness(&a.me, at(base, 1_500).mono),
            Some(Liveness::Alive)
        );
    }

    #[test]
    fn forged_records_beyond_the_cap_are_not_examined() {
        let base = Instant::now();
        let (mut a, mut c) = (engine(), engine());
        let (mut req, _) = a.request(c.me, RequestKind::Push, at(base, 0));
        let mut forged = req.records[0].clone();
        forged.signature = vec![0; 64];
        req.records = vec![forged; 1000];
        let (_, out) = c.handle_request(a.me, &req, at(base, 0)).unwrap();
        assert_eq!(out.rejected.len(), MAX_REJECTED_PER_MESSAGE);
        assert!(out
            .rejected
            .iter()
            .all(|r| *r == RejectReason::BadSignature));
        assert!(c.liveness(&a.me, at(base, 0).mono).is_none());
    }

    #[test]
    fn relay_is_smallest_connected_live_member() {
        let base = Instant::now();
        let mut a = engine();
        let mut others: Vec<Engine> = (0..4).map(|_| engine()).collect();
        for o in others.iter_mut() {
            exchange(o, &mut a, RequestKind::Sync, at(base, 0));
        }
        let mut ids: Vec<PeerId> = others.iter().map(|o| o.me).collect();
        ids.sort_by_key(|p| p.to_base58());
        let all = |_: &PeerId| true;
        assert_eq!(a.relay(all, at(base, 0).mono), Some(ids[0]));
        let not_first = |p: &PeerId| *p != ids[0];
        assert_eq!(a.relay(not_first, at(base, 0).mono), Some(ids[1]));
        assert_eq!(a.relay(all, at(base, 4000).mono), None, "all suspect");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let r = Engine::random_peers(&ids, 2, Some(ids[0]), &mut rng);
        assert_eq!(r.len(), 2);
        assert!(!r.contains(&ids[0]));
    }

    #[test]
    fn messages_respect_the_frame_budget() {
        let base = Instant::now();
        let mut c = cfg();
        c.max_frame_bytes = FRAME_SLACK + 3000;
        let mut hub = Engine::new(c, Keypair::generate_ed25519());
        let mut others: Vec<Engine> = (0..20).map(|_| engine()).collect();
        for o in others.iter_mut() {
            exchange(o, &mut hub, RequestKind::Sync, at(base, 0));
        }
        let mut fresh = engine();
        let (req, sent) = fresh.request(hub.me, RequestKind::Sync, at(base, 0));
        let (resp, _) = hub.handle_request(fresh.me, &req, at(base, 0)).unwrap();
        assert!(resp.to_bytes().len() <= 3000 + FRAME_SLACK);
        assert!(!resp.records.is_empty() && resp.records.len() < 20);
        fresh.handle_response(hub.me, &sent, &resp, at(base, 0));
        // Later rounds bring the rest.
        for i in 1..20 {
            exchange(&mut fresh, &mut hub, RequestKind::Sync, at(base, i));
        }
        assert_eq!(fresh.peers.len(), 21);
    }
}

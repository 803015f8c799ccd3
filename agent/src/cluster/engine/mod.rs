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
//!
//! The engine's state and its own record are here; its methods are grouped
//! by what they do:
//!
//! - `exchange`: building requests, answering them, taking responses
//!   (digests, deltas, what each neighbour is known to have, frame budget).
//! - `accept`: checking and storing one record (signature, allowlist,
//!   roster, new-identity budget, member cap, tombstones).
//! - `membership`: the room roster and the non-members waiting outside.
//! - `liveness`: liveness, the hub, whom to sync with, housekeeping and
//!   the [`ClusterView`](crate::cluster::ClusterView) handed to the agent.
//!   Also the one liveness rule with SWIM's verdict (`entry_liveness`)
//!   and the record refresh where every member runs SWIM.
//! - `tests`, `tests_swim`: unit tests (the second for members running
//!   SWIM).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

use super::counters::Counters;
use super::record::{LocalState, Record, RejectReason};
use super::roster::Roster;
use super::view::{Liveness, LivenessTimeouts};
use super::wire::SignedRecord;

mod accept;
mod exchange;
mod liveness;
mod membership;
mod overlay;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_swim;

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

/// Unix time in milliseconds: the one wall clock (`crate::clock`).
pub use crate::clock::unix_ms;

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

/// Drop the entry of a bounded table that is the oldest by `at`.
fn remove_oldest<V>(m: &mut HashMap<PeerId, V>, at: impl Fn(&V) -> Instant) {
    if let Some(oldest) = m.iter().min_by_key(|(_, v)| at(v)).map(|(p, _)| *p) {
        m.remove(&oldest);
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
/// How records are published in a room where every member runs SWIM
/// (docs/scale.md step 2): liveness no longer needs a record every
/// second, so a new version is made when something worth it changed
/// ([`crate::cluster::publish`]) and otherwise every `refresh`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwimRecords {
    /// Periodic refresh while every alive member runs SWIM. Default 30 s
    /// (memberlist's push-pull interval); rooms of more than 300 members
    /// stretch it by 100 ms per member up to 10 min, so that the whole
    /// room makes at most ~10 refreshes a second. Longer saves a record
    /// per member per period; the record-age backstop for SWIM members is
    /// 3x the stretched period (suspect) and 6x (dead), for a member whose
    /// SWIM answers while its agent no longer publishes.
    pub refresh: Duration,
    /// What counts as a change worth a record.
    pub band: crate::cluster::publish::DeadBand,
}

impl Default for SwimRecords {
    fn default() -> Self {
        SwimRecords {
            refresh: Duration::from_secs(30),
            band: crate::cluster::publish::DeadBand::default(),
        }
    }
}

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
    /// This node runs SWIM (`cluster.swim`) and says so in its record.
    speaks_swim: bool,
    /// Record refresh and dead band where every member runs SWIM.
    swim_records: SwimRecords,
    /// Members SWIM declared down, and when (see [`Engine::swim_down`]).
    swim_down: HashMap<PeerId, Instant>,
    /// The overlay (where every member runs SWIM; see `overlay`).
    overlay: overlay::Overlay,
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
            speaks_swim: false,
            swim_records: SwimRecords::default(),
            swim_down: HashMap::new(),
            overlay: overlay::Overlay::new(),
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
        // With SWIM, a change within the dead band waits for the next
        // refresh (which is slow only where every member runs SWIM).
        let worth = match (&self.own, self.speaks_swim) {
            (Some(o), true) => {
                let mut next = local.clone();
                next.swim = true;
                next.counters = self.counters.own_slots(&self.me_b58);
                crate::cluster::publish::worth_publishing(
                    &o.record.state,
                    &next,
                    &self.swim_records.band,
                )
            }
            _ => true,
        };
        self.local = local;
        if worth {
            self.dirty = true;
        }
        urgent
    }

    /// Record refresh and dead band for rooms where every member runs SWIM.
    pub fn set_swim_records(&mut self, r: SwimRecords) {
        self.swim_records = r;
    }

    /// The periodic refresh now: `swim_records.refresh` (longer in large
    /// rooms, see `overlay::overlay_refresh`) in overlay mode
    /// (this node and every member not dead run SWIM), else
    /// `refresh_interval` (members judging liveness by record age need a
    /// new version every second).
    pub fn refresh_interval_now(&self) -> Duration {
        if self.overlay_mode() {
            self.swim_refresh()
        } else {
            self.cfg.refresh_interval
        }
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
        let interval = self.refresh_interval_now();
        let due = match &self.own {
            None => true,
            Some(o) => now.mono.saturating_duration_since(o.bumped_at) >= interval,
        };
        if !(force || self.dirty || due) {
            return false;
        }
        let version = next_version(self.own_version, now.unix_ms);
        let mut local = self.local.clone();
        local.swim = self.speaks_swim;
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
}

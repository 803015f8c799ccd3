//! Records: what each agent publishes about itself, their versioned CBOR
//! encoding and their signatures.
//!
//! A [`Record`] is owned by exactly one node. On the wire it travels as a
//! [`SignedRecord`]: the CBOR payload bytes ([`wire::RecordPayload`]) and an
//! Ed25519 signature by the owner's libp2p key over
//! [`SIGNATURE_DOMAIN`]` || payload`. Anyone may relay a signed record; a
//! receiver accepts it only if the signature verifies with the public key
//! embedded in the payload's `peer_id` (Ed25519 PeerIds use the identity
//! multihash, so the key is inside the id). The exact bytes are relayed
//! unchanged, so fields added by newer versions survive relaying through
//! older nodes. Schema and rules: `docs/protocol.md`.

use std::collections::BTreeMap;

use libp2p::identity::{Keypair, PublicKey};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use super::counters::{CounterKind, CounterSlot, BUILTIN};

/// Record format written by this implementation (payload key 0). Bumped only
/// for incompatible changes; compatible additions use new keys instead.
pub const RECORD_FORMAT: u32 = 1;
/// Maximum encoded payload size of one record.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Maximum signature length accepted (Ed25519 signatures are 64 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 128;
/// Domain separation prefix of the signed message.
pub const SIGNATURE_DOMAIN: &[u8] = b"coolmesh/record/1\n";

/// Field limits, enforced when building our own record (truncating) and
/// when accepting others' (rejecting as `malformed`).
pub mod limits {
    /// Cluster name, bytes.
    pub const CLUSTER: usize = 64;
    /// Node name, bytes.
    pub const NODE: usize = 256;
    /// State-machine state, bytes.
    pub const FSM_STATE: usize = 64;
    /// State-machine reason, bytes.
    pub const FSM_REASON: usize = 1024;
    /// Power observations per record.
    pub const POWER: usize = 32;
    /// Power target, bytes.
    pub const TARGET: usize = 256;
    /// Counter names per record.
    pub const COUNTERS: usize = 256;
    /// Counter name, bytes.
    pub const COUNTER_NAME: usize = 128;
    /// Listen addresses per record.
    pub const ADDRS: usize = 16;
    /// One binary multiaddr, bytes.
    pub const ADDR: usize = 256;
}

/// This node's thermal summary as published to peers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Thermal {
    /// Hottest sensor, degrees C.
    pub hottest: Option<f64>,
    /// Minimum over sensors of (critical - current), degrees C.
    pub headroom: Option<f64>,
    /// Trend of the hottest sensor, degrees C per minute.
    pub trend: Option<f64>,
    /// Projected seconds until critical while rising.
    pub time_to_critical: Option<f64>,
    /// At least one sensor is at or above its critical threshold.
    pub critical: bool,
    /// The owner's cooling vote (a sustained rise not explained by its
    /// workload, see `crate::heating`). `None` from agents older than
    /// format 1.1, which did not send it: their vote is read from the trend.
    pub vote: Option<bool>,
    /// The owner votes by inlet or ambient air sensors (double weight).
    pub air: bool,
}

impl From<&crate::thermal::ThermalSummary> for Thermal {
    fn from(s: &crate::thermal::ThermalSummary) -> Self {
        Thermal {
            hottest: s.hottest_celsius,
            headroom: s.headroom_celsius,
            trend: s.trend_celsius_per_minute,
            time_to_critical: s.time_to_critical_seconds,
            critical: s.critical,
            vote: Some(s.cooling_vote),
            air: s.air,
        }
    }
}

/// One power target as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerObservation {
    /// Target as configured (e.g. `icmp://10.0.0.254`).
    pub target: String,
    /// Last probe succeeded.
    pub up: bool,
    /// Unix time of the last probe, milliseconds.
    pub at_ms: u64,
}

/// The state machine's state as published to peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsmSummary {
    /// `normal`, `pre_fail`, `shutdown`, `local_fault`, `maintenance`.
    pub state: String,
    /// Why the machine is in this state.
    pub reason: String,
    /// Unix ms at which a pending transition fires (grace end), if any.
    pub deadline_ms: Option<u64>,
}

/// What the agent publishes; the cluster layer turns it into this node's
/// record (adding version, identity, addresses and timestamp).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalState {
    /// Human-readable node name (default: hostname).
    pub node: String,
    /// Thermal summary.
    pub thermal: Thermal,
    /// Per-target power observations.
    pub power: Vec<PowerObservation>,
    /// Result of the power policy (any/all/majority), `None` if unknown.
    pub power_up: Option<bool>,
    /// State machine.
    pub fsm: FsmSummary,
    /// This node's own counter slots (name -> slot).
    pub counters: BTreeMap<String, CounterSlot>,
}

/// A verified record of one node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    /// Monotonic per owner; larger wins.
    pub version: u64,
    /// Cluster name; records of another cluster are rejected.
    pub cluster: String,
    /// Owner's node name.
    pub node: String,
    /// Owner (and signer).
    #[serde(serialize_with = "ser_peer_id")]
    pub peer_id: PeerId,
    /// Thermal summary.
    pub thermal: Thermal,
    /// Power observations.
    pub power: Vec<PowerObservation>,
    /// Power policy result.
    pub power_up: Option<bool>,
    /// State machine.
    pub fsm: FsmSummary,
    /// Owner's counter slots.
    pub counters: BTreeMap<String, CounterSlot>,
    /// Owner's listen addresses (used to complete the mesh).
    #[serde(serialize_with = "ser_addrs")]
    pub addrs: Vec<Multiaddr>,
    /// Owner's wall clock when this version was made, unix ms.
    pub updated_ms: u64,
}

fn ser_peer_id<S: serde::Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_base58())
}

fn ser_addrs<S: serde::Serializer>(a: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(a.iter().map(|m| m.to_string()))
}

/// Why a record or message was rejected; the label of
/// `coolmesh_gossip_rejected_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Signature does not verify with the owner's key, or the key is not
    /// derivable from the PeerId.
    BadSignature,
    /// A counter slot owned by someone other than the signer.
    ForeignSlot,
    /// Undecodable or out-of-limits content.
    Malformed,
    /// Frame or record above its size limit.
    Oversized,
    /// Peer not in the allowlist, or record of another cluster.
    Unauthorized,
    /// Peer exceeded the inbound request rate.
    RateLimited,
    /// An incoming connection failed its handshake (wrong or missing PSK,
    /// garbage on the port, noise or multiplexer failure, timeout) or was
    /// refused by a connection limit.
    Handshake,
    /// A valid record of a new identity while the member table is full of
    /// live members (`max_members`).
    Capacity,
    /// A valid record of a new identity, relayed by a peer that already
    /// introduced its budget of new identities this minute.
    NewIdentities,
    /// A record of an identity outside the room roster, or any record
    /// relayed by one (`cluster.operator_key` and a roster).
    NotInRoster,
}

impl RejectReason {
    /// Every reason, for pre-initialising metric series.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::BadSignature,
        RejectReason::ForeignSlot,
        RejectReason::Malformed,
        RejectReason::Oversized,
        RejectReason::Unauthorized,
        RejectReason::RateLimited,
        RejectReason::Handshake,
        RejectReason::Capacity,
        RejectReason::NewIdentities,
        RejectReason::NotInRoster,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadSignature => "bad_signature",
            RejectReason::ForeignSlot => "foreign_slot",
            RejectReason::Malformed => "malformed",
            RejectReason::Oversized => "oversized",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::Handshake => "handshake",
            RejectReason::Capacity => "capacity",
            RejectReason::NewIdentities => "new_identities",
            RejectReason::NotInRoster => "not_in_roster",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record payload plus its owner's signature, exactly as relayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord {
    /// CBOR of [`wire::RecordPayload`].
    pub payload: Vec<u8>,
    /// Owner's signature over `SIGNATURE_DOMAIN || payload`.
    pub signature: Vec<u8>,
}

/// The signed message for a payload.
pub fn signing_input(payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + payload.len());
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.extend_from_slice(payload);
    m
}

/// The public key embedded in a PeerId (identity multihash), if any.
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest()).ok()
}

/// Errors building our own signed record.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Encoding failed or the record exceeds [`MAX_RECORD_BYTES`].
    #[error("record encoding: {0}")]
    Encode(String),
    /// The key could not sign.
    #[error("signing: {0}")]
    Sign(String),
    /// The key does not belong to the record's peer_id.
    #[error("keypair does not match the record's peer_id")]
    WrongKey,
}

impl SignedRecord {
    /// Encode and sign `record` with `key` (which must be the owner's).
    pub fn sign(record: &Record, key: &Keypair) -> Result<SignedRecord, SignError> {
        if key.public().to_peer_id() != record.peer_id {
            return Err(SignError::WrongKey);
        }
        let payload = wire::RecordPayload::from_record(record).encode()?;
        Self::sign_payload(payload, key)
    }

    /// Sign already-encoded payload bytes (used by tests to forge records).
    pub fn sign_payload(payload: Vec<u8>, key: &Keypair) -> Result<SignedRecord, SignError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(SignError::Encode(format!(
                "{} bytes exceeds the {MAX_RECORD_BYTES} byte record limit",
                payload.len()
            )));
        }
        let signature = key
            .sign(&signing_input(&payload))
            .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(SignedRecord { payload, signature })
    }

    /// Cheap pre-check: decode the header (owner, version, cluster) without
    /// verifying the signature, so stale copies can be skipped before
    /// spending a signature verification.
    pub fn peek(&self) -> Result<(PeerId, u64, String), RejectReason> {
        if self.payload.len() > MAX_RECORD_BYTES {
            return Err(RejectReason::Oversized);
        }
        let p = wire::RecordPayload::decode(&self.payload)?;
        let peer = PeerId::from_bytes(&p.peer_id).map_err(|_| RejectReason::Malformed)?;
        Ok((peer, p.version, p.cluster))
    }

    /// Full verification: size, decoding, cluster, signature by the owner
    /// named in the payload, then content rules (foreign slots, limits).
    pub fn verify(&self, cluster: &str) -> Result<Record, RejectReason> {
        if self.payload.len() > MAX_RECORD_BYTES || self.signature.len() > MAX_SIGNATURE_BYTES {
            return Err(RejectReason::Oversized);
        }
        let p = wire::RecordPayload::decode(&self.payload)?;
        if p.format != RECORD_FORMAT {
            return Err(RejectReason::Malformed);
        }
        if p.cluster != cluster {
            return Err(RejectReason::Unauthorized);
        }
        let peer = PeerId::from_bytes(&p.peer_id).map_err(|_| RejectReason::Malformed)?;
        let key = public_key_of(&peer).ok_or(RejectReason::BadSignature)?;
        if !key.verify(&signing_input(&self.payload), &self.signature) {
            return Err(RejectReason::BadSignature);
        }
        p.into_record(peer)
    }

    /// [`SignedRecord::verify`] without the signature check, for protocol
    /// simulations only.
    #[doc(hidden)]
    pub fn verify_unsigned(&self, cluster: &str) -> Result<Record, RejectReason> {
        let p = wire::RecordPayload::decode(&self.payload)?;
        if p.format != RECORD_FORMAT {
            return Err(RejectReason::Malformed);
        }
        if p.cluster != cluster {
            return Err(RejectReason::Unauthorized);
        }
        let peer = PeerId::from_bytes(&p.peer_id).map_err(|_| RejectReason::Malformed)?;
        p.into_record(peer)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

impl Record {
    /// Build this node's record from what the agent published, truncating
    /// anything over the [`limits`] and dropping non-finite numbers, so the
    /// result always encodes within [`MAX_RECORD_BYTES`].
    pub fn from_local(
        local: &LocalState,
        cluster: &str,
        peer_id: PeerId,
        version: u64,
        addrs: &[Multiaddr],
        updated_ms: u64,
    ) -> Record {
        // The built-in counters first, so that user counters can never push
        // them out of the record (the agent refuses new names past the
        // limit anyway, see `CounterStore::add`).
        let builtin = |n: &str| BUILTIN.contains(&n);
        let mut names: Vec<(&String, &CounterSlot)> = local
            .counters
            .iter()
            .filter(|(name, _)| name.len() <= limits::COUNTER_NAME && !name.is_empty())
            .collect();
        names.sort_by_key(|(name, _)| !builtin(name));
        let counters = names
            .into_iter()
            .take(limits::COUNTERS)
            .map(|(name, s)| {
                let mut s = *s;
                if s.kind == CounterKind::G {
                    s.n = 0;
                }
                (name.clone(), s)
            })
            .collect();
        Record {
            version,
            cluster: truncate(cluster, limits::CLUSTER),
            node: truncate(&local.node, limits::NODE),
            peer_id,
            thermal: Thermal {
                hottest: finite(local.thermal.hottest),
                headroom: finite(local.thermal.headroom),
                trend: finite(local.thermal.trend),
                time_to_critical: finite(local.thermal.time_to_critical),
                critical: local.thermal.critical,
                vote: local.thermal.vote,
                air: local.thermal.air,
            },
            power: local
                .power
                .iter()
                .take(limits::POWER)
                .map(|o| PowerObservation {
                    target: truncate(&o.target, limits::TARGET),
                    up: o.up,
                    at_ms: o.at_ms,
                })
                .collect(),
            power_up: local.power_up,
            fsm: FsmSummary {
                state: truncate(&local.fsm.state, limits::FSM_STATE),
                reason: truncate(&local.fsm.reason, limits::FSM_REASON),
                deadline_ms: local.fsm.deadline_ms,
            },
            counters,
            addrs: addrs
                .iter()
                .filter(|a| a.as_ref().len() <= limits::ADDR)
                .take(limits::ADDRS)
                .cloned()
                .collect(),
            updated_ms,
        }
    }
}

/// The CBOR shapes. Every struct is a CBOR map with small unsigned integer
/// keys; keys are append-only (never reused, never retyped); unknown keys
/// are ignored by decoders. See docs/protocol.md.
pub mod wire {
    use minicbor::bytes::ByteVec;
    use minicbor::data::Type;
    use minicbor::{Decode, Decoder, Encode, Encoder};

    use super::*;

    /// A number that decodes from any CBOR integer or float (half, single
    /// or double) and encodes as a double.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Num(pub f64);

    impl<C> Encode<C> for Num {
        fn encode<W: minicbor::encode::Write>(
            &self,
            e: &mut Encoder<W>,
            _: &mut C,
        ) -> Result<(), minicbor::encode::Error<W::Error>> {
            e.f64(self.0)?;
            Ok(())
        }
    }

    impl<'b, C> Decode<'b, C> for Num {
        fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, minicbor::decode::Error> {
            let v = match d.datatype()? {
                Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64()? as f64,
                Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
                    i128::from(d.int()?) as f64
                }
                Type::F16 => {
                    let pos = d.position();
                    let raw = d
                        .input()
                        .get(pos + 1..pos + 3)
                        .ok_or_else(minicbor::decode::Error::end_of_input)?;
                    let bits = u16::from_be_bytes([raw[0], raw[1]]);
                    d.set_position(pos + 3);
                    f16_to_f64(bits)
                }
                Type::F32 => f64::from(d.f32()?),
                _ => d.f64()?,
            };
            Ok(Num(v))
        }
    }

    /// IEEE 754 half precision to double.
    pub fn f16_to_f64(bits: u16) -> f64 {
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((bits >> 10) & 0x1f);
        let frac = f64::from(bits & 0x3ff);
        match exp {
            0 => sign * frac * 2f64.powi(-24),
            31 if frac == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    /// Key 6 of a record.
    #[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
    #[cbor(map)]
    pub struct ThermalW {
        /// Hottest sensor, C.
        #[n(0)]
        pub hottest: Option<Num>,
        /// Headroom, C.
        #[n(1)]
        pub headroom: Option<Num>,
        /// Trend, C/min.
        #[n(2)]
        pub trend: Option<Num>,
        /// Seconds to critical.
        #[n(3)]
        pub time_to_critical: Option<Num>,
        /// Critical now.
        #[n(4)]
        pub critical: Option<bool>,
        /// Cooling vote (added in 1.1; absent from older agents).
        #[n(5)]
        pub vote: Option<bool>,
        /// Votes by inlet or ambient air sensors (added in 1.1).
        #[n(6)]
        pub air: Option<bool>,
    }

    /// Element of key 7 of a record.
    #[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
    #[cbor(map)]
    pub struct PowerW {
        /// Target.
        #[n(0)]
        pub target: String,
        /// Up.
        #[n(1)]
        pub up: bool,
        /// Unix ms of the observation.
        #[n(2)]
        #[cbor(default)]
        pub at_ms: u64,
    }

    /// Key 9 of a record.
    #[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
    #[cbor(map)]
    pub struct FsmW {
        /// State name.
        #[n(0)]
        pub state: String,
        /// Reason.
        #[n(1)]
        #[cbor(default)]
        pub reason: String,
        /// Deadline, unix ms.
        #[n(2)]
        pub deadline_ms: Option<u64>,
    }

    /// Element of key 10 of a record: one counter slot.
    #[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
    #[cbor(map)]
    pub struct SlotW {
        /// Counter name.
        #[n(0)]
        pub name: String,
        /// 0 = G, 1 = PN.
        #[n(1)]
        pub kind: u8,
        /// Owner's PeerId bytes; must equal the record's peer_id.
        #[cbor(n(2), with = "minicbor::bytes")]
        pub owner: Vec<u8>,
        /// Increments.
        #[n(3)]
        pub p: u64,
        /// Decrements (0 for G).
        #[n(4)]
        #[cbor(default)]
        pub n: u64,
    }

    /// A record payload (the signed bytes).
    #[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
    #[cbor(map)]
    pub struct RecordPayload {
        /// Format, = [`RECORD_FORMAT`].
        #[n(0)]
        pub format: u32,
        /// Cluster name.
        #[n(1)]
        pub cluster: String,
        /// Owner's PeerId bytes (multihash).
        #[cbor(n(2), with = "minicbor::bytes")]
        pub peer_id: Vec<u8>,
        /// Version.
        #[n(3)]
        pub version: u64,
        /// Node name.
        #[n(4)]
        #[cbor(default)]
        pub node: String,
        /// Owner's wall clock, unix ms.
        #[n(5)]
        #[cbor(default)]
        pub updated_ms: u64,
        /// Thermal summary.
        #[n(6)]
        pub thermal: Option<ThermalW>,
        /// Power observations.
        #[n(7)]
        #[cbor(default)]
        pub power: Vec<PowerW>,
        /// Power policy result.
        #[n(8)]
        pub power_up: Option<bool>,
        /// State machine.
        #[n(9)]
        pub fsm: Option<FsmW>,
        /// Counter slots.
        #[n(10)]
        #[cbor(default)]
        pub counters: Vec<SlotW>,
        /// Listen addresses (binary multiaddrs).
        #[n(11)]
        #[cbor(default)]
        pub addrs: Vec<ByteVec>,
    }

    /// A signed record on the wire.
    #[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
    #[cbor(map)]
    pub struct SignedW {
        /// Payload bytes.
        #[cbor(n(0), with = "minicbor::bytes")]
        pub payload: Vec<u8>,
        /// Signature bytes.
        #[cbor(n(1), with = "minicbor::bytes")]
        pub signature: Vec<u8>,
    }

    impl From<&SignedRecord> for SignedW {
        fn from(s: &SignedRecord) -> Self {
            SignedW {
                payload: s.payload.clone(),
                signature: s.signature.clone(),
            }
        }
    }

    impl From<SignedW> for SignedRecord {
        fn from(s: SignedW) -> Self {
            SignedRecord {
                payload: s.payload,
                signature: s.signature,
            }
        }
    }

    fn num(v: Option<f64>) -> Option<Num> {
        v.map(Num)
    }

    fn unnum(v: Option<Num>) -> Result<Option<f64>, RejectReason> {
        match v {
            Some(Num(x)) if !x.is_finite() => Err(RejectReason::Malformed),
            Some(Num(x)) => Ok(Some(x)),
            None => Ok(None),
        }
    }

    impl RecordPayload {
        /// The wire form of a record.
        pub fn from_record(r: &Record) -> Self {
            let owner = r.peer_id.to_bytes();
            RecordPayload {
                format: RECORD_FORMAT,
                cluster: r.cluster.clone(),
                peer_id: owner.clone(),
                version: r.version,
                node: r.node.clone(),
                updated_ms: r.updated_ms,
                thermal: Some(ThermalW {
                    hottest: num(r.thermal.hottest),
                    headroom: num(r.thermal.headroom),
                    trend: num(r.thermal.trend),
                    time_to_critical: num(r.thermal.time_to_critical),
                    critical: Some(r.thermal.critical),
                    vote: r.thermal.vote,
                    air: r.thermal.air.then_some(true),
                }),
                power: r
                    .power
                    .iter()
                    .map(|o| PowerW {
                        target: o.target.clone(),
                        up: o.up,
                        at_ms: o.at_ms,
                    })
                    .collect(),
                power_up: r.power_up,
                fsm: Some(FsmW {
                    state: r.fsm.state.clone(),
                    reason: r.fsm.reason.clone(),
                    deadline_ms: r.fsm.deadline_ms,
                }),
                counters: r
                    .counters
                    .iter()
                    .map(|(name, s)| SlotW {
                        name: name.clone(),
                        kind: s.kind.code(),
                        owner: owner.clone(),
                        p: s.p,
                        n: s.n,
                    })
                    .collect(),
                addrs: r.addrs.iter().map(|a| ByteVec::from(a.to_vec())).collect(),
            }
        }

        /// CBOR bytes, failing if over [`MAX_RECORD_BYTES`].
        pub fn encode(&self) -> Result<Vec<u8>, SignError> {
            let bytes = minicbor::to_vec(self).map_err(|e| SignError::Encode(e.to_string()))?;
            if bytes.len() > MAX_RECORD_BYTES {
                return Err(SignError::Encode(format!(
                    "{} bytes exceeds the {MAX_RECORD_BYTES} byte record limit",
                    bytes.len()
                )));
            }
            Ok(bytes)
        }

        /// Decode; never panics, whatever the bytes.
        pub fn decode(bytes: &[u8]) -> Result<Self, RejectReason> {
            if bytes.len() > MAX_RECORD_BYTES {
                return Err(RejectReason::Oversized);
            }
            minicbor::decode(bytes).map_err(|_| RejectReason::Malformed)
        }

        /// Content rules, then conversion. `peer` is the parsed `peer_id`.
        pub fn into_record(self, peer: PeerId) -> Result<Record, RejectReason> {
            use RejectReason::Malformed;
            let owner = peer.to_bytes();
            if self.cluster.len() > limits::CLUSTER
                || self.node.len() > limits::NODE
                || self.power.len() > limits::POWER
                || self.counters.len() > limits::COUNTERS
                || self.addrs.len() > limits::ADDRS
            {
                return Err(Malformed);
            }
            let mut counters = BTreeMap::new();
            for s in self.counters {
                if s.owner != owner {
                    return Err(RejectReason::ForeignSlot);
                }
                let kind = CounterKind::from_code(s.kind).ok_or(Malformed)?;
                if s.name.is_empty()
                    || s.name.len() > limits::COUNTER_NAME
                    || (kind == CounterKind::G && s.n != 0)
                {
                    return Err(Malformed);
                }
                let slot = CounterSlot {
                    kind,
                    p: s.p,
                    n: s.n,
                };
                if counters.insert(s.name, slot).is_some() {
                    return Err(Malformed);
                }
            }
            let mut power = Vec::with_capacity(self.power.len());
            for o in self.power {
                if o.target.len() > limits::TARGET {
                    return Err(Malformed);
                }
                power.push(PowerObservation {
                    target: o.target,
                    up: o.up,
                    at_ms: o.at_ms,
                });
            }
            let mut addrs = Vec::with_capacity(self.addrs.len());
            for a in self.addrs {
                let a: Vec<u8> = a.into();
                if a.len() > limits::ADDR {
                    return Err(Malformed);
                }
                addrs.push(Multiaddr::try_from(a).map_err(|_| Malformed)?);
            }
            let t = self.thermal.unwrap_or_default();
            let fsm = self.fsm.unwrap_or_default();
            if fsm.state.len() > limits::FSM_STATE || fsm.reason.len() > limits::FSM_REASON {
                return Err(Malformed);
            }
            Ok(Record {
                version: self.version,
                cluster: self.cluster,
                node: self.node,
                peer_id: peer,
                thermal: Thermal {
                    hottest: unnum(t.hottest)?,
                    headroom: unnum(t.headroom)?,
                    trend: unnum(t.trend)?,
                    time_to_critical: unnum(t.time_to_critical)?,
                    critical: t.critical.unwrap_or(false),
                    vote: t.vote,
                    air: t.air.unwrap_or(false),
                },
                power,
                power_up: self.power_up,
                fsm: FsmSummary {
                    state: fsm.state,
                    reason: fsm.reason,
                    deadline_ms: fsm.deadline_ms,
                },
                counters,
                addrs,
                updated_ms: self.updated_ms,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample_local() -> LocalState {
        let mut counters = BTreeMap::new();
        counters.insert(
            "overheat".to_string(),
            CounterSlot {
                kind: CounterKind::G,
                p: 3,
                n: 0,
            },
        );
        counters.insert(
            "jobs".to_string(),
            CounterSlot {
                kind: CounterKind::PN,
                p: 10,
                n: 4,
            },
        );
        LocalState {
            node: "rack3-srv12".into(),
            thermal: Thermal {
                hottest: Some(71.5),
                headroom: Some(28.5),
                trend: Some(0.4),
                time_to_critical: Some(4275.0),
                critical: false,
                vote: Some(false),
                air: true,
            },
            power: vec![PowerObservation {
                target: "icmp://10.0.0.254".into(),
                up: true,
                at_ms: 1_700_000_000_000,
            }],
            power_up: Some(true),
            fsm: FsmSummary {
                state: "normal".into(),
                reason: "power up".into(),
                deadline_ms: None,
            },
            counters,
        }
    }

    fn record_for(key: &Keypair, version: u64) -> Record {
        let addrs: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/9877".parse().unwrap()];
        Record::from_local(
            &sample_local(),
            "room-1",
            key.public().to_peer_id(),
            version,
            &addrs,
            1_700_000_000_123,
        )
    }

    #[test]
    fn sign_verify_roundtrip() {
        let key = Keypair::generate_ed25519();
        let r = record_for(&key, 7);
        let s = SignedRecord::sign(&r, &key).unwrap();
        assert!(
            s.payload.len() < 1024,
            "record is compact: {}",
            s.payload.len()
        );
        let back = s.verify("room-1").unwrap();
        assert_eq!(back, r);
        assert_eq!(s.peek().unwrap(), (r.peer_id, 7, "room-1".to_string()));
    }

    #[test]
    fn wrong_cluster_is_unauthorized() {
        let key = Keypair::generate_ed25519();
        let s = SignedRecord::sign(&record_for(&key, 1), &key).unwrap();
        assert_eq!(s.verify("room-2"), Err(RejectReason::Unauthorized));
    }

    #[test]
    fn tampered_payload_or_signature_is_rejected() {
        let key = Keypair::generate_ed25519();
        let s = SignedRecord::sign(&record_for(&key, 1), &key).unwrap();
        let mut bad = s.clone();
        bad.signature[3] ^= 1;
        assert_eq!(bad.verify("room-1"), Err(RejectReason::BadSignature));
        // Re-encode with a different version but keep the old signature.
        let mut p = wire::RecordPayload::decode(&s.payload).unwrap();
        p.version = 99;
        let forged = SignedRecord {
            payload: p.encode().unwrap(),
            signature: s.signature.clone(),
        };
        assert_eq!(forged.verify("room-1"), Err(RejectReason::BadSignature));
    }

    #[test]
    fn record_signed_by_someone_else_is_rejected() {
        let owner = Keypair::generate_ed25519();
        let forger = Keypair::generate_ed25519();
        let r = record_for(&owner, 5);
        assert!(matches!(
            SignedRecord::sign(&r, &forger),
            Err(SignError::WrongKey)
        ));
        let payload = wire::RecordPayload::from_record(&r).encode().unwrap();
        let forged = SignedRecord::sign_payload(payload, &forger).unwrap();
        assert_eq!(forged.verify("room-1"), Err(RejectReason::BadSignature));
    }

    #[test]
    fn foreign_slot_is_rejected_even_when_validly_signed() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519().public().to_peer_id();
        let mut p = wire::RecordPayload::from_record(&record_for(&key, 1));
        p.counters[0].owner = other.to_bytes();
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        assert_eq!(s.verify("room-1"), Err(RejectReason::ForeignSlot));
    }

    #[test]
    fn content_rules() {
        let key = Keypair::generate_ed25519();
        let base = wire::RecordPayload::from_record(&record_for(&key, 1));
        let check = |p: wire::RecordPayload| {
            SignedRecord::sign_payload(p.encode().unwrap(), &key)
                .unwrap()
                .verify("room-1")
        };
        let mut p = base.clone();
        assert_eq!(p.counters[0].name, "jobs");
        p.counters[0].kind = 0;
        assert_eq!(check(p), Err(RejectReason::Malformed), "G with n > 0");
        let mut p = base.clone();
        p.counters[0].kind = 7;
        assert_eq!(check(p), Err(RejectReason::Malformed), "unknown kind");
        let mut p = base.clone();
        let dup = p.counters[0].clone();
        p.counters.push(dup);
        assert_eq!(check(p), Err(RejectReason::Malformed), "duplicate name");
        let mut p = base.clone();
        p.thermal.as_mut().unwrap().hottest = Some(wire::Num(f64::NAN));
        assert_eq!(check(p), Err(RejectReason::Malformed), "NaN");
        let mut p = base.clone();
        p.format = 2;
        assert_eq!(check(p), Err(RejectReason::Malformed), "format");
        let mut p = base.clone();
        p.node = "x".repeat(limits::NODE + 1);
        assert_eq!(check(p), Err(RejectReason::Malformed), "long node");
        let mut p = base;
        p.peer_id = vec![1, 2, 3];
        assert_eq!(check(p), Err(RejectReason::Malformed), "bad peer id");
    }

    #[test]
    fn from_local_enforces_limits() {
        let key = Keypair::generate_ed25519();
        let mut local = sample_local();
        local.node = "é".repeat(1000);
        local.fsm.reason = "r".repeat(10_000);
        local.thermal.hottest = Some(f64::INFINITY);
        for i in 0..1000 {
            local.counters.insert(
                format!("{i:0>120}"),
                CounterSlot {
                    kind: CounterKind::PN,
                    p: u64::MAX,
                    n: u64::MAX,
                },
            );
            local.power.push(PowerObservation {
                target: "t".repeat(1000),
                up: false,
                at_ms: u64::MAX,
            });
        }
        local.counters.insert(
            "g".into(),
            CounterSlot {
                kind: CounterKind::G,
                p: 1,
                n: 5,
            },
        );
        let addrs: Vec<Multiaddr> = (0..100)
            .map(|i| format!("/ip4/10.0.0.{}/tcp/9877", i % 250).parse().unwrap())
            .collect();
        let r = Record::from_local(
            &local,
            &"c".repeat(500),
            key.public().to_peer_id(),
            u64::MAX,
            &addrs,
            u64::MAX,
        );
        let s = SignedRecord::sign(&r, &key).expect("worst case fits in the record limit");
        assert!(s.payload.len() <= MAX_RECORD_BYTES);
        let back = s.verify(&r.cluster).unwrap();
        assert_eq!(back.thermal.hottest, None);
        assert_eq!(back.counters.len(), limits::COUNTERS);
        assert_eq!(back.node.len(), limits::NODE);
    }

    #[test]
    fn unknown_keys_are_ignored_and_numbers_are_flexible() {
        // A third-party encoder: extra key 99, integer and half-float
        // temperatures, null for absent options.
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let mut buf = Vec::new();
        let mut e = minicbor::Encoder::new(&mut buf);
        e.map(7).unwrap();
        e.u8(0).unwrap().u8(1).unwrap();
        e.u8(1).unwrap().str("room-1").unwrap();
        e.u8(2).unwrap().bytes(&peer.to_bytes()).unwrap();
        e.u8(3).unwrap().u64(42).unwrap();
        e.u8(6).unwrap().map(3).unwrap();
        e.u8(0).unwrap().u8(70).unwrap();
        e.u8(1).unwrap();
        e.writer_mut().extend_from_slice(&[0xf9, 0x4f, 0xa0]); // f16 30.5
        e.u8(2).unwrap().null().unwrap();
        e.u8(8).unwrap().null().unwrap();
        e.u8(99)
            .unwrap()
            .array(2)
            .unwrap()
            .str("future")
            .unwrap()
            .u8(1)
            .unwrap();
        let s = SignedRecord::sign_payload(buf, &key).unwrap();
        let r = s.verify("room-1").unwrap();
        assert_eq!(r.version, 42);
        assert_eq!(r.thermal.hottest, Some(70.0));
        assert_eq!(r.thermal.headroom, Some(30.5));
        assert_eq!(r.thermal.trend, None);
        assert_eq!(r.power_up, None);
        assert!(r.counters.is_empty());
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(wire::f16_to_f64(0x3c00), 1.0);
        assert_eq!(wire::f16_to_f64(0xc000), -2.0);
        assert_eq!(wire::f16_to_f64(0x7bff), 65504.0);
        assert_eq!(wire::f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(wire::f16_to_f64(0x7c00).is_infinite());
        assert!(wire::f16_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn hostile_lengths_do_not_allocate_or_panic() {
        // Array/map/bytes headers announcing 2^63 items with no content.
        for bytes in [
            vec![0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![
                0xa1, 0x0a, 0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            vec![
                0xa1, 0x02, 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            [vec![0xa1, 0x63], vec![0x9f; 100_000]].concat(),
        ] {
            assert!(wire::RecordPayload::decode(&bytes).is_err());
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = wire::RecordPayload::decode(&bytes);
            let s = SignedRecord { payload: bytes.clone(), signature: bytes.clone() };
            let _ = s.verify("room-1");
            let _ = s.peek();
        }

        #[test]
        fn decoder_never_panics_on_mutated_records(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let key = Keypair::generate_ed25519();
            let s = SignedRecord::sign(&record_for(&key, 3), &key).unwrap();
            let mut bytes = s.payload.clone();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            let _ = wire::RecordPayload::decode(&bytes);
            let cut = cut.index(bytes.len());
            let _ = wire::RecordPayload::decode(&bytes[..cut]);
            let _ = SignedRecord { payload: bytes, signature: s.signature }.verify("room-1");
        }
    }
}

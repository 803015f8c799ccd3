//! The record payload on the wire: the versioned CBOR shapes of a record
//! (the signed bytes) and the conversion to and from the in-memory
//! [`Record`], with the content rules a received record must pass.
//!
//! Every struct is a CBOR map with small unsigned integer keys; keys are
//! append-only (never reused, never retyped); unknown keys are ignored by
//! decoders. See docs/protocol.md, section 5.

use std::collections::BTreeMap;

use libp2p::{Multiaddr, PeerId};
use minicbor::bytes::ByteVec;
use minicbor::data::Type;
use minicbor::{Decode, Decoder, Encode, Encoder};

use crate::cluster::counters::{CounterKind, CounterSlot};
use crate::cluster::record::{
    limits, FsmSummary, LocalState, Record, RejectReason, TargetObservation, ThermalReport,
};

/// Record format written by this implementation (payload key 0). Bumped only
/// for incompatible changes; compatible additions use new keys instead.
pub const RECORD_FORMAT: u32 = 1;
/// Maximum encoded payload size of one record.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The record does not encode, or not within [`MAX_RECORD_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("record encoding: {0}")]
pub struct EncodeError(pub String);

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
            Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => i128::from(d.int()?) as f64,
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
    /// Trigger whose grace runs (staged shutdown; absent from older agents).
    #[n(3)]
    pub trigger: Option<String>,
    /// In `shutdown`: the command finished (staged shutdown; absent from older agents).
    #[n(4)]
    pub done: Option<bool>,
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

/// Key 14 of a record: ordered power-on (`crate::power_on`).
#[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct PowerOnW {
    /// MAC address, 6 bytes.
    #[n(0)]
    pub mac: Option<ByteVec>,
    /// May wake others.
    #[n(1)]
    pub waker: Option<bool>,
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
    /// The owner's HTTP (exporter) address, `host:port` (absent: none
    /// published). Keys 13 and 14 are taken by the shutdown records.
    #[n(12)]
    pub http: Option<String>,
    /// Shutdown stage (staged shutdown; absent means 0).
    #[n(13)]
    pub stage: Option<u32>,
    /// Ordered power-on (absent when neither a MAC nor waking is set).
    #[n(14)]
    pub power_on: Option<PowerOnW>,
    /// The owner runs SWIM (absent: it does not, or is older than this key).
    #[n(15)]
    pub swim: Option<bool>,
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
        let st = &r.state;
        RecordPayload {
            format: RECORD_FORMAT,
            cluster: r.cluster.clone(),
            peer_id: owner.clone(),
            version: r.version,
            node: st.node.clone(),
            updated_ms: r.updated_ms,
            thermal: Some(ThermalW {
                hottest: num(st.thermal.hottest),
                headroom: num(st.thermal.headroom),
                trend: num(st.thermal.trend),
                time_to_critical: num(st.thermal.time_to_critical),
                critical: Some(st.thermal.critical),
                vote: st.thermal.vote,
                air: st.thermal.air.then_some(true),
            }),
            power: st
                .power
                .iter()
                .map(|o| PowerW {
                    target: o.target.clone(),
                    up: o.up,
                    at_ms: o.at_ms,
                })
                .collect(),
            power_up: st.power_up,
            fsm: Some(FsmW {
                state: st.fsm.state.clone(),
                reason: st.fsm.reason.clone(),
                deadline_ms: st.fsm.deadline_ms,
                trigger: (!st.fsm.trigger.is_empty()).then(|| st.fsm.trigger.clone()),
                done: st.fsm.done,
            }),
            counters: st
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
            http: st.http.clone(),
            // Stage 0 is what an absent key means: left out to keep the
            // records of unstaged rooms as they were.
            stage: (st.stage != 0).then_some(st.stage),
            power_on: (st.mac.is_some() || st.waker).then(|| PowerOnW {
                mac: st.mac.map(|m| ByteVec::from(m.to_vec())),
                waker: st.waker.then_some(true),
            }),
            // Left out when off: records of rooms without SWIM as they were.
            swim: st.swim.then_some(true),
        }
    }

    /// CBOR bytes, failing if over [`MAX_RECORD_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let bytes = minicbor::to_vec(self).map_err(|e| EncodeError(e.to_string()))?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(EncodeError(format!(
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
            power.push(TargetObservation {
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
        if let Some(h) = &self.http {
            if !crate::cluster::record::valid_http_address(h) {
                return Err(Malformed);
            }
        }
        let t = self.thermal.unwrap_or_default();
        let fsm = self.fsm.unwrap_or_default();
        let trigger = fsm.trigger.unwrap_or_default();
        let power_on = self.power_on.unwrap_or_default();
        let mac = match power_on.mac {
            None => None,
            Some(m) => {
                let m: Vec<u8> = m.into();
                Some(<[u8; 6]>::try_from(m.as_slice()).map_err(|_| Malformed)?)
            }
        };
        if fsm.state.len() > limits::FSM_STATE
            || fsm.reason.len() > limits::FSM_REASON
            || trigger.len() > limits::FSM_STATE
        {
            return Err(Malformed);
        }
        Ok(Record {
            version: self.version,
            cluster: self.cluster,
            peer_id: peer,
            state: LocalState {
                node: self.node,
                thermal: ThermalReport {
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
                    trigger,
                    done: fsm.done,
                },
                counters,
                http: self.http,
                stage: self.stage.unwrap_or(0),
                mac,
                waker: power_on.waker.unwrap_or(false),
                swim: self.swim.unwrap_or(false),
            },
            addrs,
            updated_ms: self.updated_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use proptest::prelude::*;

    use super::*;
    use crate::cluster::record::testing::{record_for, sample_local};
    use crate::cluster::wire::SignedRecord;

    #[test]
    fn foreign_slot_is_rejected_even_when_validly_signed() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519().public().to_peer_id();
        let mut p = RecordPayload::from_record(&record_for(&key, 1));
        p.counters[0].owner = other.to_bytes();
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        assert_eq!(s.verify("room-1"), Err(RejectReason::ForeignSlot));
    }

    #[test]
    fn the_http_address_travels_in_key_12_and_garbage_is_rejected() {
        let key = Keypair::generate_ed25519();
        let mut local = crate::cluster::record::testing::sample_local();
        local.http = Some("10.0.0.12:10027".into());
        let r = Record::from_local(
            &local,
            "room-1",
            key.public().to_peer_id(),
            1,
            &[],
            1_700_000_000_123,
        );
        let s = SignedRecord::sign(&r, &key).unwrap();
        let back = s.verify("room-1").expect("verifies");
        assert_eq!(back.state.http.as_deref(), Some("10.0.0.12:10027"));
        // Key 12 on the wire: a text string after the map key 0x0c.
        let bytes = RecordPayload::from_record(&r).encode().unwrap();
        let needle = [&[0x0c, 0x60 + 15][..], b"10.0.0.12:10027"].concat();
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        // Without an address the key is absent (older agents' records, and
        // the test vector of docs/protocol.md, are unchanged).
        let plain = RecordPayload::from_record(&record_for(&key, 1))
            .encode()
            .unwrap();
        assert!(!plain.windows(2).any(|w| w == [0x0c, 0xf6]), "no null");
        assert_eq!(
            RecordPayload::decode(&plain).unwrap().http,
            None,
            "absent decodes as none"
        );
        // A peer's garbage is a `malformed` rejection, never a panic or a
        // URL handed to Prometheus.
        let check = |h: &str| {
            let mut p = RecordPayload::from_record(&r);
            p.http = Some(h.to_string());
            SignedRecord::sign_payload(p.encode().unwrap(), &key)
                .unwrap()
                .verify("room-1")
        };
        for bad in [
            "",
            "srv12",
            "srv12:0",
            "srv12:99999",
            "http://srv12:10027",
            "srv12:10027/metrics",
            "user@srv12:10027",
            "srv 12:10027",
            "2001:db8::1:10027",
            &format!("{}:1", "a".repeat(limits::HTTP)),
        ] {
            assert_eq!(check(bad), Err(RejectReason::Malformed), "{bad:?}");
        }
        for good in ["srv12:10027", "srv12.room.example:1", "[2001:db8::1]:10027"] {
            assert!(check(good).is_ok(), "{good:?}");
        }
        // Our own record leaves an invalid address out instead of making
        // every peer reject it.
        local.http = Some("not an address".into());
        let r = Record::from_local(&local, "room-1", key.public().to_peer_id(), 2, &[], 1);
        assert_eq!(r.state.http, None);
    }

    #[test]
    fn content_rules() {
        let key = Keypair::generate_ed25519();
        let base = RecordPayload::from_record(&record_for(&key, 1));
        let check = |p: RecordPayload| {
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
        p.thermal.as_mut().unwrap().hottest = Some(Num(f64::NAN));
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
            local.power.push(TargetObservation {
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
        // The longest address that passes: a 253-byte DNS name and a port.
        let l = "a".repeat(63);
        let longest = format!("{l}.{l}.{l}.{}:65535", "b".repeat(61));
        assert_eq!(longest.len(), limits::HTTP - 1);
        local.http = Some(longest.clone());
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
        assert_eq!(back.state.thermal.hottest, None);
        assert_eq!(back.state.counters.len(), limits::COUNTERS);
        assert_eq!(back.state.node.len(), limits::NODE);
        assert_eq!(back.state.http, Some(longest));
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
        assert_eq!(r.state.thermal.hottest, Some(70.0));
        assert_eq!(r.state.thermal.headroom, Some(30.5));
        assert_eq!(r.state.thermal.trend, None);
        assert_eq!(r.state.power_up, None);
        assert!(r.state.counters.is_empty());
    }

    #[test]
    fn stage_and_trigger_round_trip_and_default_when_absent() {
        let key = Keypair::generate_ed25519();
        let mut r = record_for(&key, 1);
        r.state.stage = 2;
        r.state.fsm.trigger = "power".into();
        r.state.fsm.done = Some(false);
        let p = RecordPayload::from_record(&r);
        assert_eq!(p.stage, Some(2));
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        let back = s.verify("room-1").unwrap();
        assert_eq!(back.state.stage, 2);
        assert_eq!(back.state.fsm.trigger, "power");
        assert_eq!(back.state.fsm.done, Some(false));
        // An older agent sends neither: stage 0, no trigger, done unknown.
        let mut p = RecordPayload::from_record(&r);
        p.stage = None;
        p.fsm = Some(FsmW {
            state: "shutdown".into(),
            reason: "power".into(),
            deadline_ms: None,
            trigger: None,
            done: None,
        });
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        let back = s.verify("room-1").unwrap();
        assert_eq!(back.state.stage, 0);
        assert_eq!(back.state.fsm.trigger, "");
        assert_eq!(back.state.fsm.done, None);
        // Stage 0 is not written at all: unstaged rooms' records as before.
        r.state.stage = 0;
        assert_eq!(RecordPayload::from_record(&r).stage, None);
    }

    #[test]
    fn the_swim_flag_travels_in_key_15_and_is_absent_when_off() {
        let key = Keypair::generate_ed25519();
        let mut r = record_for(&key, 1);
        r.state.swim = true;
        let p = RecordPayload::from_record(&r);
        assert_eq!(p.swim, Some(true));
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        assert!(s.verify("room-1").unwrap().state.swim);
        // Off: not written, so rooms without SWIM keep their bytes; an
        // older agent's record (no key 15) reads as "no SWIM".
        r.state.swim = false;
        let p = RecordPayload::from_record(&r);
        assert_eq!(p.swim, None);
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        assert!(!s.verify("room-1").unwrap().state.swim);
    }

    #[test]
    fn power_on_key_round_trips_and_a_bad_mac_is_malformed() {
        let key = Keypair::generate_ed25519();
        let mut r = record_for(&key, 1);
        r.state.mac = Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        r.state.waker = true;
        let p = RecordPayload::from_record(&r);
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        let back = s.verify("room-1").unwrap();
        assert_eq!(back.state.mac, Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]));
        assert!(back.state.waker);
        // Neither set: key 14 is left out.
        r.state.mac = None;
        r.state.waker = false;
        assert_eq!(RecordPayload::from_record(&r).power_on, None);
        // A MAC that is not 6 bytes.
        let mut p = RecordPayload::from_record(&r);
        p.power_on = Some(PowerOnW {
            mac: Some(ByteVec::from(vec![1, 2, 3])),
            waker: None,
        });
        let s = SignedRecord::sign_payload(p.encode().unwrap(), &key).unwrap();
        assert_eq!(s.verify("room-1"), Err(RejectReason::Malformed));
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7c00).is_infinite());
        assert!(f16_to_f64(0x7e00).is_nan());
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
            assert!(RecordPayload::decode(&bytes).is_err());
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = RecordPayload::decode(&bytes);
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
            let _ = RecordPayload::decode(&bytes);
            let cut = cut.index(bytes.len());
            let _ = RecordPayload::decode(&bytes[..cut]);
            let _ = SignedRecord { payload: bytes, signature: s.signature }.verify("room-1");
        }
    }
}

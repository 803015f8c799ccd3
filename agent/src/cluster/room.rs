//! Room commands: one operator action (cancel a pending shutdown, start or
//! end maintenance) carried to every member of the room at once.
//!
//! Why: a room-wide trigger (mains lost, cooling lost) puts every server in
//! `pre_fail` within a second or two, and an operator who knows better (the
//! generator is starting, the "outage" is a switch being replaced) has the
//! grace period to stop it. One HTTP call per server does not fit in a
//! grace of minutes for a room of forty; one command to one agent that
//! reaches every member does.
//!
//! # Flow
//!
//! The CLI (`coolmesh room cancel|maintenance`) builds the command, signs
//! it with the operator key when it has one, and posts it to one agent with
//! that agent's token (`POST /v1/room`). That agent checks it exactly as a
//! peer would ([`verify`]), applies it to its own state machine and sends it
//! on `/coolmesh/room/1.0.0` to every connected member, which checks it,
//! applies it, logs who asked, and answers with a [`RoomAck`]. The CLI gets
//! every answer back, and the members it could not reach.
//!
//! # Who may command the room
//!
//! - Only members: the connection passed the PSK (and the allowlist), and
//!   with a roster the sender is in it.
//! - With `cluster.operator_key` set, only commands signed by the operator's
//!   private key are accepted, by every node: a member that holds the PSK
//!   (or a stolen token of one agent) cannot cancel the room's shutdowns.
//!   Without an operator key, a member's command is accepted (the token of
//!   the agent it was posted to authorised it); docs/safety.md says what
//!   that trusts.
//! - `cluster.room_commands = false` refuses every room command on a node.
//! - A command is accepted once (its random id is remembered), and only
//!   within [`MAX_SKEW`] of its issue time: a recorded command cannot be
//!   replayed later.
//!
//! # Wire form (CBOR; docs/protocol.md section 7.3)
//!
//! ```text
//! request  = { 0: body bytes, ?1: signature bytes }
//! body     = { 0: cluster, 1: id (u64), 2: action (1 cancel, 2 maintenance),
//!              3: maintenance duration (ms; 0 ends it), 4: issued (unix ms),
//!              5: requester (text) }
//! signature = Ed25519 over "coolmesh-room-v1\0" || body
//! response = { 0: outcome (0 applied, 1 nothing to do, 2 refused),
//!              1: node name, 2: message, 3: state after }
//! ```
//!
//! Fields are append-only: decoders ignore keys they do not know.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use libp2p::identity::{Keypair, PublicKey};
use libp2p::StreamProtocol;
use minicbor::bytes::ByteVec;
use minicbor::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// The room command protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/coolmesh/room/1.0.0");
/// Domain separation: a room signature is never a roster's or a record's.
const DOMAIN: &[u8] = b"coolmesh-room-v1\0";
/// Largest command on the wire; a real one is about 150 bytes.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// Largest requester text kept.
const MAX_REQUESTER: usize = 128;
/// How far a command's issue time may be from this node's clock. Wide
/// enough for servers whose clocks disagree by a few minutes (NTP lost
/// during the very event), narrow enough that a recorded command is
/// useless an hour later.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Longest maintenance a room command may start (the HTTP limit too).
pub const MAX_MAINTENANCE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Command ids remembered against replays within [`MAX_SKEW`].
const SEEN_CAPACITY: usize = 4096;

/// What the room is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum RoomAction {
    /// Cancel a pending shutdown (and hold new ones off for `cancel_hold`).
    Cancel,
    /// Hold automatic shutdowns for `duration`; zero ends maintenance.
    Maintenance {
        /// How long.
        #[serde(with = "duration_text")]
        duration: Duration,
    },
}

/// A duration as humantime text ("1h 30m") in JSON.
mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for RoomAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoomAction::Cancel => f.write_str("cancel"),
            RoomAction::Maintenance { duration } if duration.is_zero() => {
                f.write_str("end maintenance")
            }
            RoomAction::Maintenance { duration } => {
                write!(
                    f,
                    "maintenance for {}",
                    humantime::format_duration(*duration)
                )
            }
        }
    }
}

/// One room command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCommand {
    /// The cluster it is for.
    pub cluster: String,
    /// Random; a node applies a given id once.
    pub id: u64,
    /// What to do.
    pub action: RoomAction,
    /// When the operator issued it (unix ms).
    pub issued_ms: u64,
    /// Who asked ("user@host" from the CLI); logged by every node.
    pub requester: String,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// Not CBOR of the expected shape.
    #[error("not a room command: {0}")]
    Malformed(String),
    /// For another cluster.
    #[error("the command is for cluster {0:?}, this node is in {1:?}")]
    OtherCluster(String, String),
    /// Unsigned where the operator key is required.
    #[error("this room has a cluster.operator_key: room commands must be signed with the operator key (--key)")]
    Unsigned,
    /// Signed by another key, or altered.
    #[error("the signature does not verify with the configured cluster.operator_key")]
    BadSignature,
    /// Issued too far from this node's clock.
    #[error("issued {0} s from this node's clock (limit {limit} s): a replay, or a clock far off", limit = MAX_SKEW.as_secs())]
    Skew(i64),
    /// Already applied.
    #[error("command {0:016x} was already applied here")]
    Replayed(u64),
    /// Turned off on this node.
    #[error("this node does not take room commands (cluster.room_commands = false)")]
    Disabled,
    /// Maintenance longer than the limit.
    #[error(
        "maintenance longer than the limit of {}",
        humantime::format_duration(MAX_MAINTENANCE)
    )]
    TooLong,
}

#[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
#[cbor(map)]
struct BodyW {
    #[n(0)]
    cluster: String,
    #[n(1)]
    id: u64,
    #[n(2)]
    action: u8,
    #[n(3)]
    #[cbor(default)]
    duration_ms: u64,
    #[n(4)]
    issued_ms: u64,
    #[n(5)]
    #[cbor(default)]
    requester: String,
}

#[derive(Clone, Debug, PartialEq, Encode, Decode)]
#[cbor(map)]
struct SignedW {
    #[n(0)]
    body: ByteVec,
    #[n(1)]
    signature: Option<ByteVec>,
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    super::identity::domain_message(DOMAIN, body)
}

impl RoomCommand {
    fn body(&self) -> Vec<u8> {
        let (action, duration_ms) = match self.action {
            RoomAction::Cancel => (1, 0),
            RoomAction::Maintenance { duration } => {
                (2, u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
            }
        };
        let mut requester = self.requester.clone();
        truncate(&mut requester, MAX_REQUESTER);
        minicbor::to_vec(BodyW {
            cluster: self.cluster.clone(),
            id: self.id,
            action,
            duration_ms,
            issued_ms: self.issued_ms,
            requester,
        })
        .unwrap_or_default()
    }

    /// The wire form without a signature (a room without an operator key).
    pub fn to_unsigned(&self) -> Vec<u8> {
        minicbor::to_vec(SignedW {
            body: self.body().into(),
            signature: None,
        })
        .unwrap_or_default()
    }

    /// The wire form signed with the operator's key.
    pub fn sign(&self, key: &Keypair) -> Result<Vec<u8>, RoomError> {
        let body = self.body();
        let sig = key
            .sign(&signed_message(&body))
            .map_err(|e| RoomError::Malformed(format!("signing failed: {e}")))?;
        Ok(minicbor::to_vec(SignedW {
            body: body.into(),
            signature: Some(sig.into()),
        })
        .unwrap_or_default())
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// What a node checks a command against.
#[derive(Debug, Clone)]
pub struct Policy {
    /// This node's cluster.
    pub cluster: String,
    /// `cluster.operator_key`: when set, commands must carry its signature.
    pub operator: Option<PublicKey>,
    /// `cluster.room_commands`.
    pub enabled: bool,
}

/// Decode and check a command (not the replay memory: see [`Seen`]).
/// `now_ms` is this node's wall clock.
pub fn verify(bytes: &[u8], policy: &Policy, now_ms: u64) -> Result<RoomCommand, RoomError> {
    if !policy.enabled {
        return Err(RoomError::Disabled);
    }
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(RoomError::Malformed(format!(
            "{} bytes, more than {MAX_COMMAND_BYTES}",
            bytes.len()
        )));
    }
    let signed: SignedW =
        minicbor::decode(bytes).map_err(|e| RoomError::Malformed(e.to_string()))?;
    if let Some(op) = &policy.operator {
        let Some(sig) = &signed.signature else {
            return Err(RoomError::Unsigned);
        };
        if !op.verify(&signed_message(&signed.body), sig) {
            return Err(RoomError::BadSignature);
        }
    }
    let b: BodyW =
        minicbor::decode(&signed.body).map_err(|e| RoomError::Malformed(e.to_string()))?;
    if b.cluster != policy.cluster {
        return Err(RoomError::OtherCluster(b.cluster, policy.cluster.clone()));
    }
    let action = match b.action {
        1 => RoomAction::Cancel,
        2 => {
            let duration = Duration::from_millis(b.duration_ms);
            if duration > MAX_MAINTENANCE {
                return Err(RoomError::TooLong);
            }
            RoomAction::Maintenance { duration }
        }
        n => return Err(RoomError::Malformed(format!("unknown action {n}"))),
    };
    let skew_ms = i128::from(b.issued_ms) - i128::from(now_ms);
    if skew_ms.unsigned_abs() > MAX_SKEW.as_millis() {
        return Err(RoomError::Skew(
            i64::try_from(skew_ms / 1000).unwrap_or(i64::MAX),
        ));
    }
    let mut requester: String = b.requester.chars().filter(|c| !c.is_control()).collect();
    truncate(&mut requester, MAX_REQUESTER);
    Ok(RoomCommand {
        cluster: b.cluster,
        id: b.id,
        action,
        issued_ms: b.issued_ms,
        requester,
    })
}

/// The ids of commands applied lately (bounded, oldest forgotten first).
/// A forgotten id is older than [`MAX_SKEW`] in any room that sends fewer
/// than [`SEEN_CAPACITY`] commands in that time, so [`verify`] refuses it
/// anyway.
#[derive(Debug, Default)]
pub struct Seen {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    /// Remember `id`; false if it was seen already.
    pub fn insert(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        while self.order.len() > SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// How a node took a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done: the shutdown is cancelled, maintenance started or ended.
    Applied,
    /// Nothing to do (no pending shutdown to cancel, not in maintenance).
    NothingToDo,
    /// Refused or failed (the shutdown command already runs, a bad
    /// signature, the state machine busy).
    Refused,
}

/// One node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomAck {
    /// How it went.
    pub outcome: Outcome,
    /// The node's name.
    pub node: String,
    /// What the node said.
    pub message: String,
    /// Its state-machine state afterwards.
    pub state: String,
}

#[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
#[cbor(map)]
struct AckW {
    #[n(0)]
    outcome: u8,
    #[n(1)]
    #[cbor(default)]
    node: String,
    #[n(2)]
    #[cbor(default)]
    message: String,
    #[n(3)]
    #[cbor(default)]
    state: String,
}

impl RoomAck {
    /// A refusal, in this node's name.
    pub fn refused(node: &str, message: impl Into<String>, state: &str) -> RoomAck {
        RoomAck {
            outcome: Outcome::Refused,
            node: node.to_string(),
            message: message.into(),
            state: state.to_string(),
        }
    }

    /// Wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let outcome = match self.outcome {
            Outcome::Applied => 0,
            Outcome::NothingToDo => 1,
            Outcome::Refused => 2,
        };
        minicbor::to_vec(AckW {
            outcome,
            node: self.node.clone(),
            message: self.message.clone(),
            state: self.state.clone(),
        })
        .unwrap_or_default()
    }

    /// Decode a peer's answer; texts are cut to 256 bytes and stripped of
    /// control characters (they end up in logs and terminals).
    pub fn from_bytes(b: &[u8]) -> Result<RoomAck, RoomError> {
        if b.len() > MAX_COMMAND_BYTES {
            return Err(RoomError::Malformed("answer too long".into()));
        }
        let a: AckW = minicbor::decode(b).map_err(|e| RoomError::Malformed(e.to_string()))?;
        let clean = |s: String| {
            let mut s: String = s.chars().filter(|c| !c.is_control()).collect();
            truncate(&mut s, 256);
            s
        };
        Ok(RoomAck {
            outcome: match a.outcome {
                0 => Outcome::Applied,
                1 => Outcome::NothingToDo,
                _ => Outcome::Refused,
            },
            node: clean(a.node),
            message: clean(a.message),
            state: clean(a.state),
        })
    }
}

/// One node in a [`RoomReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnswer {
    /// The node's PeerId.
    pub peer_id: String,
    /// Its answer.
    #[serde(flatten)]
    pub ack: RoomAck,
}

/// A member the command did not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreached {
    /// PeerId.
    pub peer_id: String,
    /// Name from its last record ("" if none).
    pub node: String,
    /// Why.
    pub error: String,
}

/// What `POST /v1/room` answers: every node's answer, this one first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomReport {
    /// The command id (hex).
    pub id: String,
    /// What was asked.
    pub action: RoomAction,
    /// Who asked.
    pub requester: String,
    /// The nodes that answered.
    pub answers: Vec<NodeAnswer>,
    /// Members (alive in this node's view) that did not answer.
    pub unreached: Vec<Unreached>,
}

/// A command for the local state machine, from the cluster layer.
#[derive(Debug)]
pub struct RoomApply {
    /// The checked command.
    pub command: RoomCommand,
    /// Who sent it: this node (`None`) or a peer.
    pub from: Option<libp2p::PeerId>,
    /// The answer.
    pub reply: tokio::sync::oneshot::Sender<RoomAck>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn cmd(action: RoomAction) -> RoomCommand {
        RoomCommand {
            cluster: "room1".into(),
            id: 42,
            action,
            issued_ms: NOW,
            requester: "alice@ops1".into(),
        }
    }

    fn policy(op: Option<PublicKey>) -> Policy {
        Policy {
            cluster: "room1".into(),
            operator: op,
            enabled: true,
        }
    }

    #[test]
    fn unsigned_commands_round_trip_in_a_room_without_an_operator_key() {
        for a in [
            RoomAction::Cancel,
            RoomAction::Maintenance {
                duration: Duration::from_secs(3600),
            },
            RoomAction::Maintenance {
                duration: Duration::ZERO,
            },
        ] {
            let c = cmd(a);
            assert_eq!(verify(&c.to_unsigned(), &policy(None), NOW), Ok(c));
        }
    }

    #[test]
    fn with_an_operator_key_only_its_signature_passes() {
        let op = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let p = policy(Some(op.public()));
        let c = cmd(RoomAction::Cancel);
        assert_eq!(verify(&c.sign(&op).unwrap(), &p, NOW), Ok(c.clone()));
        assert_eq!(verify(&c.to_unsigned(), &p, NOW), Err(RoomError::Unsigned));
        assert_eq!(
            verify(&c.sign(&other).unwrap(), &p, NOW),
            Err(RoomError::BadSignature)
        );
        // A signed command is fine where no key is configured.
        assert_eq!(verify(&c.sign(&other).unwrap(), &policy(None), NOW), Ok(c));
    }

    #[test]
    fn an_altered_body_fails_the_signature() {
        let op = Keypair::generate_ed25519();
        let c = cmd(RoomAction::Cancel);
        let good: SignedW = minicbor::decode(&c.sign(&op).unwrap()).unwrap();
        let mut evil = c.clone();
        evil.action = RoomAction::Maintenance {
            duration: Duration::from_secs(7 * 24 * 3600),
        };
        let forged = minicbor::to_vec(SignedW {
            body: evil.body().into(),
            signature: good.signature,
        })
        .unwrap();
        assert_eq!(
            verify(&forged, &policy(Some(op.public())), NOW),
            Err(RoomError::BadSignature)
        );
    }

    #[test]
    fn refusals() {
        let c = cmd(RoomAction::Cancel);
        let mut other = policy(None);
        other.cluster = "room2".into();
        assert!(matches!(
            verify(&c.to_unsigned(), &other, NOW),
            Err(RoomError::OtherCluster(..))
        ));
        let mut off = policy(None);
        off.enabled = false;
        assert_eq!(
            verify(&c.to_unsigned(), &off, NOW),
            Err(RoomError::Disabled)
        );
        // Skew: (issued relative to now in s, accepted?).
        for (ds, ok) in [
            (0i64, true),
            (299, true),
            (-299, true),
            (301, false),
            (-3600, false),
        ] {
            let mut c = c.clone();
            c.issued_ms = (NOW as i64 + ds * 1000) as u64;
            assert_eq!(
                verify(&c.to_unsigned(), &policy(None), NOW).is_ok(),
                ok,
                "{ds} s"
            );
        }
        let long = cmd(RoomAction::Maintenance {
            duration: MAX_MAINTENANCE + Duration::from_secs(1),
        });
        assert_eq!(
            verify(&long.to_unsigned(), &policy(None), NOW),
            Err(RoomError::TooLong)
        );
        for garbage in [&b""[..], b"\xff\x00", &[0u8; 5000][..]] {
            assert!(matches!(
                verify(garbage, &policy(None), NOW),
                Err(RoomError::Malformed(_))
            ));
        }
        let mut bad = BodyW {
            cluster: "room1".into(),
            id: 1,
            action: 9,
            issued_ms: NOW,
            ..Default::default()
        };
        let b = minicbor::to_vec(SignedW {
            body: minicbor::to_vec(&bad).unwrap().into(),
            signature: None,
        })
        .unwrap();
        assert!(matches!(
            verify(&b, &policy(None), NOW),
            Err(RoomError::Malformed(_))
        ));
        bad.action = 1;
        bad.requester = "evil\x1b[2J\nname".into();
        let b = minicbor::to_vec(SignedW {
            body: minicbor::to_vec(&bad).unwrap().into(),
            signature: None,
        })
        .unwrap();
        assert_eq!(
            verify(&b, &policy(None), NOW).unwrap().requester,
            "evil[2Jname"
        );
    }

    #[test]
    fn seen_ids_are_refused_and_memory_is_bounded() {
        let mut s = Seen::default();
        assert!(s.insert(1));
        assert!(!s.insert(1));
        for i in 2..=(SEEN_CAPACITY as u64 + 1) {
            assert!(s.insert(i));
        }
        assert_eq!(s.set.len(), SEEN_CAPACITY);
        // The oldest was forgotten, the newest is still known.
        assert!(s.insert(1));
        assert!(!s.insert(SEEN_CAPACITY as u64 + 1));
    }

    #[test]
    fn acks_round_trip_and_are_sanitised() {
        let a = RoomAck {
            outcome: Outcome::NothingToDo,
            node: "h1".into(),
            message: "nothing to cancel: state is normal".into(),
            state: "normal".into(),
        };
        assert_eq!(RoomAck::from_bytes(&a.to_bytes()), Ok(a));
        let evil = minicbor::to_vec(AckW {
            outcome: 7,
            node: "x\x07".repeat(300),
            message: String::new(),
            state: String::new(),
        })
        .unwrap();
        let got = RoomAck::from_bytes(&evil).unwrap();
        assert_eq!(got.outcome, Outcome::Refused);
        assert_eq!(got.node.len(), 256);
        assert!(!got.node.contains('\x07'));
        assert!(RoomAck::from_bytes(b"\xff").is_err());
    }
}

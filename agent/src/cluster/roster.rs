//! The room roster: the list of member PeerIds, signed by the operator's
//! key, spread by gossip, newest version wins.
//!
//! Why: a pre-shared key keeps strangers out, but any holder of it can mint
//! identities for free. The roster names the identities that belong to the
//! room. With `cluster.operator_key` set and a roster known, records of
//! identities outside it are refused (never stored, never relayed, never
//! counted as votes), and members' records vote whoever relayed them.
//!
//! The operator's private key stays off the servers (`coolmesh roster
//! keygen` writes it where the operator keeps it); the servers hold only the
//! public key (`ed25519:<base64>` in the config). A roster is forged only
//! with the private key; an old roster cannot replace a newer one (versions
//! only grow), so replaying one is harmless.
//!
//! Wire form (CBOR, see docs/protocol.md section 7.2):
//!
//! ```text
//! SignedRoster = { 0: body bytes, 1: signature bytes }
//! body         = { 0: cluster name, 1: version (u64), 2: issued (unix ms),
//!                  3: [member PeerId bytes] }
//! signature    = Ed25519 over "coolmesh-roster-v1\0" || body
//! ```

use std::collections::BTreeSet;

use base64::Engine as _;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use minicbor::bytes::ByteVec;
use minicbor::{Decode, Encode};

/// Domain separation: a roster signature can never pass for anything else.
const DOMAIN: &[u8] = b"coolmesh-roster-v1\0";
/// Members one roster may list. A hall of 5,000 servers fits many times;
/// 65,536 PeerIds are about 2.5 MB, over the frame limit anyway.
pub const MAX_MEMBERS: usize = 65_536;
/// Prefix of the operator key's text form.
pub const KEY_PREFIX: &str = "ed25519:";

/// Why a roster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// Not CBOR of the expected shape, or a member that is not a PeerId.
    #[error("not a roster: {0}")]
    Malformed(String),
    /// Signed by another key, or altered.
    #[error("the signature does not verify with the configured cluster.operator_key")]
    BadSignature,
    /// A roster of another cluster.
    #[error("the roster is for cluster {0:?}, this node is in {1:?}")]
    OtherCluster(String, String),
    /// Too many members.
    #[error("the roster lists {0} members, more than the limit of {MAX_MEMBERS}")]
    TooLarge(usize),
    /// No `cluster.operator_key` on this node.
    #[error("this node has no cluster.operator_key, so it takes no roster")]
    NoOperatorKey,
    /// Not newer than the one held.
    #[error("version {0} is not newer than the roster this node holds (version {1})")]
    NotNewer(u64, u64),
}

#[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
#[cbor(map)]
struct BodyW {
    #[n(0)]
    cluster: String,
    #[n(1)]
    version: u64,
    #[n(2)]
    #[cbor(default)]
    issued_ms: u64,
    #[n(3)]
    #[cbor(default)]
    members: Vec<ByteVec>,
}

#[derive(Clone, Debug, PartialEq, Encode, Decode)]
#[cbor(map)]
struct SignedW {
    #[n(0)]
    body: ByteVec,
    #[n(1)]
    signature: ByteVec,
}

/// A verified roster (or one this process signed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roster {
    /// Cluster name it applies to.
    pub cluster: String,
    /// Version; a larger one replaces it.
    pub version: u64,
    /// When the operator signed it (unix ms; informational).
    pub issued_ms: u64,
    /// Member PeerIds.
    pub members: BTreeSet<PeerId>,
    signed: Vec<u8>,
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    super::identity::domain_message(DOMAIN, body)
}

impl Roster {
    /// Sign a roster with the operator's key.
    pub fn sign(
        key: &Keypair,
        cluster: &str,
        version: u64,
        issued_ms: u64,
        members: BTreeSet<PeerId>,
    ) -> Result<Roster, RosterError> {
        if members.len() > MAX_MEMBERS {
            return Err(RosterError::TooLarge(members.len()));
        }
        let body = BodyW {
            cluster: cluster.to_string(),
            version,
            issued_ms,
            members: members
                .iter()
                .map(|p| ByteVec::from(p.to_bytes()))
                .collect(),
        };
        let body = minicbor::to_vec(&body).unwrap_or_default();
        let signature = key
            .sign(&signed_message(&body))
            .map_err(|e| RosterError::Malformed(format!("signing failed: {e}")))?;
        let signed = minicbor::to_vec(SignedW {
            body: body.into(),
            signature: signature.into(),
        })
        .unwrap_or_default();
        Ok(Roster {
            cluster: cluster.to_string(),
            version,
            issued_ms,
            members,
            signed,
        })
    }

    /// Decode and verify `bytes` against the operator key, for `cluster`.
    /// Never panics on hostile input.
    pub fn verify(
        bytes: &[u8],
        operator: &PublicKey,
        cluster: &str,
    ) -> Result<Roster, RosterError> {
        let s: SignedW =
            minicbor::decode(bytes).map_err(|e| RosterError::Malformed(e.to_string()))?;
        if !operator.verify(&signed_message(s.body.as_ref()), s.signature.as_ref()) {
            return Err(RosterError::BadSignature);
        }
        let b: BodyW =
            minicbor::decode(s.body.as_ref()).map_err(|e| RosterError::Malformed(e.to_string()))?;
        if b.cluster != cluster {
            return Err(RosterError::OtherCluster(b.cluster, cluster.to_string()));
        }
        if b.members.len() > MAX_MEMBERS {
            return Err(RosterError::TooLarge(b.members.len()));
        }
        let members = b
            .members
            .iter()
            .map(|m| {
                PeerId::from_bytes(m.as_ref())
                    .map_err(|_| RosterError::Malformed("a member is not a PeerId".into()))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Roster {
            cluster: b.cluster,
            version: b.version,
            issued_ms: b.issued_ms,
            members,
            signed: bytes.to_vec(),
        })
    }

    /// Is `p` a member?
    pub fn contains(&self, p: &PeerId) -> bool {
        self.members.contains(p)
    }

    /// The signed encoding (what travels and what is stored).
    pub fn to_bytes(&self) -> &[u8] {
        &self.signed
    }
}

/// Parse `ed25519:<base64 of the 32-byte public key>`.
pub fn parse_operator_key(s: &str) -> Result<PublicKey, String> {
    let b64 = s.trim().strip_prefix(KEY_PREFIX).ok_or_else(|| {
        format!("{s:?} is not an operator key: want \"{KEY_PREFIX}<base64>\" as printed by `coolmesh roster keygen`")
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("operator key: bad base64: {e}"))?;
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&raw)
        .map_err(|_| "operator key: not a 32-byte Ed25519 public key".to_string())?;
    Ok(PublicKey::from(pk))
}

/// The text form of an operator public key (inverse of [`parse_operator_key`]).
pub fn format_operator_key(pk: &PublicKey) -> String {
    match pk.clone().try_into_ed25519() {
        Ok(e) => format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(e.to_bytes())
        ),
        Err(_) => String::new(),
    }
}

/// File name of the roster in the state directory.
pub const ROSTER_FILE: &str = "roster.cbor";

/// Load a stored roster; `None` (and a warning) when it is missing, does not
/// verify with the current key (the operator changed it) or is corrupt.
pub fn load_stored(path: &std::path::Path, operator: &PublicKey, cluster: &str) -> Option<Roster> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the stored roster; waiting for one from the peers");
            return None;
        }
    };
    match Roster::verify(&bytes, operator, cluster) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring the stored roster; waiting for one from the peers");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> BTreeSet<PeerId> {
        (0..n)
            .map(|_| Keypair::generate_ed25519().public().to_peer_id())
            .collect()
    }

    #[test]
    fn signed_roster_round_trips_and_verifies() {
        let op = Keypair::generate_ed25519();
        let m = ids(5);
        let r = Roster::sign(&op, "room", 7, 1_700_000_000_000, m.clone()).expect("sign");
        let back = Roster::verify(r.to_bytes(), &op.public(), "room").expect("verify");
        assert_eq!(back, r);
        assert_eq!(back.members, m);
        assert_eq!(back.version, 7);
        for p in &m {
            assert!(back.contains(p));
        }
        assert!(!back.contains(&Keypair::generate_ed25519().public().to_peer_id()));
    }

    #[test]
    fn forged_altered_and_foreign_rosters_are_refused() {
        let op = Keypair::generate_ed25519();
        let r = Roster::sign(&op, "room", 1, 0, ids(3)).expect("sign");
        // Another key.
        let other = Keypair::generate_ed25519();
        assert_eq!(
            Roster::verify(r.to_bytes(), &other.public(), "room"),
            Err(RosterError::BadSignature)
        );
        // Another cluster.
        assert!(matches!(
            Roster::verify(r.to_bytes(), &op.public(), "hall"),
            Err(RosterError::OtherCluster(..))
        ));
        // Every single-byte change is refused, never accepted or a panic.
        let b = r.to_bytes().to_vec();
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x01;
            assert!(
                Roster::verify(&x, &op.public(), "room").is_err(),
                "byte {i}"
            );
        }
        // Truncations and garbage.
        for n in 0..b.len() {
            assert!(Roster::verify(&b[..n], &op.public(), "room").is_err());
        }
        assert!(Roster::verify(b"\xff\x00garbage", &op.public(), "room").is_err());
    }

    #[test]
    fn operator_key_text_form() {
        let op = Keypair::generate_ed25519();
        let s = format_operator_key(&op.public());
        assert!(s.starts_with("ed25519:"), "{s}");
        assert_eq!(parse_operator_key(&s), Ok(op.public()));
        for bad in ["", "ed25519:", "ed25519:!!!", "rsa:AAAA", "ed25519:AAAA"] {
            let e = parse_operator_key(bad).expect_err(bad);
            assert!(
                e.contains("operator key") || e.contains("not an operator key"),
                "{e}"
            );
        }
    }
}

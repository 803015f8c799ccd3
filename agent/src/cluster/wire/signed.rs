//! Signed records: a record payload and its owner's Ed25519 signature,
//! exactly as relayed.
//!
//! The signature is by the owner's libp2p key over
//! [`SIGNATURE_DOMAIN`]` || payload`. Anyone may relay a signed record; a
//! receiver accepts it only if the signature verifies with the public key
//! embedded in the payload's `peer_id` (Ed25519 PeerIds use the identity
//! multihash, so the key is inside the id). The exact bytes are relayed
//! unchanged, so fields added by newer versions survive relaying through
//! older nodes. See docs/protocol.md, sections 5.2 to 5.4.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use minicbor::{Decode, Encode};

use super::record::{RecordPayload, MAX_RECORD_BYTES, RECORD_FORMAT};
use crate::cluster::identity::domain_message;
use crate::cluster::record::{Record, RejectReason};

/// Maximum signature length accepted (Ed25519 signatures are 64 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 128;
/// Domain separation prefix of the signed message.
pub const SIGNATURE_DOMAIN: &[u8] = b"coolmesh/record/1\n";

/// A record payload plus its owner's signature, exactly as relayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord {
    /// CBOR of [`RecordPayload`].
    pub payload: Vec<u8>,
    /// Owner's signature over `SIGNATURE_DOMAIN || payload`.
    pub signature: Vec<u8>,
}

/// The signed message for a payload.
pub fn signing_input(payload: &[u8]) -> Vec<u8> {
    domain_message(SIGNATURE_DOMAIN, payload)
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
        let payload = RecordPayload::from_record(record)
            .encode()
            .map_err(|e| SignError::Encode(e.0))?;
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
        let p = RecordPayload::decode(&self.payload)?;
        let peer = PeerId::from_bytes(&p.peer_id).map_err(|_| RejectReason::Malformed)?;
        Ok((peer, p.version, p.cluster))
    }

    /// Full verification: size, decoding, cluster, signature by the owner
    /// named in the payload, then content rules (foreign slots, limits).
    pub fn verify(&self, cluster: &str) -> Result<Record, RejectReason> {
        if self.payload.len() > MAX_RECORD_BYTES || self.signature.len() > MAX_SIGNATURE_BYTES {
            return Err(RejectReason::Oversized);
        }
        let (p, peer) = self.decode_for(cluster)?;
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
        let (p, peer) = self.decode_for(cluster)?;
        p.into_record(peer)
    }

    /// Decode the payload of a record of `cluster` in a format this node
    /// reads, with its owner.
    fn decode_for(&self, cluster: &str) -> Result<(RecordPayload, PeerId), RejectReason> {
        let p = RecordPayload::decode(&self.payload)?;
        if p.format != RECORD_FORMAT {
            return Err(RejectReason::Malformed);
        }
        if p.cluster != cluster {
            return Err(RejectReason::Unauthorized);
        }
        let peer = PeerId::from_bytes(&p.peer_id).map_err(|_| RejectReason::Malformed)?;
        Ok((p, peer))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::testing::record_for;

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
        let mut p = RecordPayload::decode(&s.payload).unwrap();
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
        let payload = RecordPayload::from_record(&r).encode().unwrap();
        let forged = SignedRecord::sign_payload(payload, &forger).unwrap();
        assert_eq!(forged.verify("room-1"), Err(RejectReason::BadSignature));
    }
}

//! The anti-entropy exchange `/coolmesh/sync/1.0.0`: its request and
//! response. See docs/protocol.md, section 4.

use libp2p::{PeerId, StreamProtocol};
use minicbor::bytes::ByteVec;
use minicbor::{Decode, Encode};

use super::signed::{SignedRecord, SignedW};
use crate::cluster::record::RejectReason;

/// The protocol id of the anti-entropy exchange.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/coolmesh/sync/1.0.0");
/// Maximum digest entries accepted in one request.
pub const MAX_DIGEST_ENTRIES: usize = 16 * 1024;

/// Why a request was sent; decides nothing on the responder side except the
/// metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Periodic anti-entropy: digest plus the records the peer is believed to
    /// lack (label `digest`).
    Sync,
    /// Urgent push of our own record (label `push`).
    Push,
    /// Follow-up carrying records the peer asked for (label `records`).
    Records,
    /// Overlay exchange (docs/protocol.md 7.5; label `delta`): the digest
    /// carries only the entries the peer is believed to lack, not every
    /// record held, so an absent owner means "nothing new", not "missing".
    /// Sent only to members whose records say they run SWIM (they know
    /// this kind); an older agent would read it as a `Sync`.
    Delta,
}

impl RequestKind {
    /// Wire code (request key 0).
    pub fn code(self) -> u8 {
        match self {
            RequestKind::Sync => 0,
            RequestKind::Push => 1,
            RequestKind::Records => 2,
            RequestKind::Delta => 3,
        }
    }

    /// Inverse of [`RequestKind::code`]; unknown codes are treated as Sync.
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => RequestKind::Push,
            2 => RequestKind::Records,
            3 => RequestKind::Delta,
            _ => RequestKind::Sync,
        }
    }

    /// `kind` label of `coolmesh_gossip_messages_total`.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Sync => "digest",
            RequestKind::Push => "push",
            RequestKind::Records => "records",
            RequestKind::Delta => "delta",
        }
    }
}

/// The request of an exchange.
#[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct SyncRequest {
    /// [`RequestKind`] code.
    #[n(0)]
    #[cbor(default)]
    pub kind: u8,
    /// Sender's cluster name; a mismatch is rejected as `unauthorized`.
    #[n(1)]
    pub cluster: String,
    /// Sender's digest: `[peer_id bytes, version]` for every record it holds
    /// (its own included).
    #[n(2)]
    #[cbor(default)]
    pub digest: Vec<(ByteVec, u64)>,
    /// Records the receiver is believed to lack.
    #[n(3)]
    #[cbor(default)]
    pub records: Vec<SignedW>,
    /// Version of the sender's room roster; absent without one (so a
    /// node without a roster encodes exactly what 0.2 did). Added in 0.3.
    #[n(4)]
    pub roster_version: Option<u64>,
    /// The sender's signed roster, when it believes the receiver's is older
    /// (see `roster::Roster`). Added in 0.3.
    #[n(5)]
    #[cbor(default)]
    pub roster: Option<ByteVec>,
}

/// The response of an exchange.
#[derive(Clone, Debug, Default, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct SyncResponse {
    /// Records newer than (or missing from) the requester's digest.
    #[n(0)]
    #[cbor(default)]
    pub records: Vec<SignedW>,
    /// PeerIds whose records the requester has newer than the responder and
    /// did not include; the requester sends them in a follow-up.
    #[n(1)]
    #[cbor(default)]
    pub want: Vec<ByteVec>,
    /// Version of the responder's room roster; absent without one. Added
    /// in 0.3.
    #[n(2)]
    pub roster_version: Option<u64>,
    /// The responder's signed roster, when the request's `roster_version`
    /// was older. Added in 0.3.
    #[n(3)]
    #[cbor(default)]
    pub roster: Option<ByteVec>,
}

fn encode<T: Encode<()>>(v: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail.
    minicbor::to_vec(v).unwrap_or_default()
}

impl SyncRequest {
    /// CBOR bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decode; never panics.
    pub fn from_bytes(b: &[u8]) -> Result<Self, RejectReason> {
        minicbor::decode(b).map_err(|_| RejectReason::Malformed)
    }

    /// The request kind.
    pub fn kind(&self) -> RequestKind {
        RequestKind::from_code(self.kind)
    }

    /// The digest with parsed PeerIds (malformed if any id is invalid or
    /// there are too many entries).
    pub fn parsed_digest(&self) -> Result<Vec<(PeerId, u64)>, RejectReason> {
        if self.digest.len() > MAX_DIGEST_ENTRIES {
            return Err(RejectReason::Malformed);
        }
        self.digest
            .iter()
            .map(|(p, v)| {
                PeerId::from_bytes(p.as_ref())
                    .map(|p| (p, *v))
                    .map_err(|_| RejectReason::Malformed)
            })
            .collect()
    }

    /// The carried records.
    pub fn signed_records(&self) -> impl Iterator<Item = SignedRecord> + '_ {
        self.records.iter().cloned().map(SignedRecord::from)
    }
}

impl SyncResponse {
    /// CBOR bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decode; never panics.
    pub fn from_bytes(b: &[u8]) -> Result<Self, RejectReason> {
        minicbor::decode(b).map_err(|_| RejectReason::Malformed)
    }

    /// Parsed `want` list; invalid ids are dropped.
    pub fn parsed_want(&self) -> Vec<PeerId> {
        self.want
            .iter()
            .filter_map(|p| PeerId::from_bytes(p.as_ref()).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use proptest::prelude::*;

    use super::*;
    use crate::cluster::wire::frame::read_frame;

    #[test]
    fn messages_roundtrip() {
        let p = PeerId::random();
        let req = SyncRequest {
            kind: RequestKind::Push.code(),
            cluster: "room-1".into(),
            digest: vec![(ByteVec::from(p.to_bytes()), 42)],
            records: vec![SignedW {
                payload: vec![1, 2],
                signature: vec![3],
            }],
            roster_version: Some(7),
            roster: Some(ByteVec::from(vec![5u8, 6])),
        };
        let back = SyncRequest::from_bytes(&req.to_bytes()).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.kind(), RequestKind::Push);
        assert_eq!(back.parsed_digest().unwrap(), vec![(p, 42)]);
        let resp = SyncResponse {
            records: vec![],
            want: vec![ByteVec::from(p.to_bytes()), ByteVec::from(vec![9u8])],
            ..Default::default()
        };
        let back = SyncResponse::from_bytes(&resp.to_bytes()).unwrap();
        assert_eq!(back.parsed_want(), vec![p]);
        let bad = SyncRequest {
            digest: vec![(ByteVec::from(vec![1u8, 2]), 1)],
            ..Default::default()
        };
        assert_eq!(bad.parsed_digest(), Err(RejectReason::Malformed));
    }

    proptest! {
        #[test]
        fn message_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = SyncRequest::from_bytes(&bytes).map(|r| r.parsed_digest());
            let _ = SyncResponse::from_bytes(&bytes).map(|r| r.parsed_want());
            let _ = block_on(read_frame(&mut futures::io::Cursor::new(bytes), 1024));
        }

    }
}

//! The anti-entropy protocol on the wire: message types and framing.
//!
//! One libp2p stream per exchange (request-response): the initiator writes
//! one frame with a [`SyncRequest`] and closes its write side; the responder
//! writes one frame with a [`SyncResponse`] and closes. A frame is an
//! unsigned LEB128 varint length (at most 10 bytes) followed by that many
//! bytes of CBOR. Frames above the configured limit are refused before
//! their body is read. See docs/protocol.md.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use minicbor::bytes::ByteVec;
use minicbor::{Decode, Encode};

use super::metrics::GossipMetrics;
use super::record::wire::SignedW;
use super::record::{RejectReason, SignedRecord};

/// The protocol id of the anti-entropy exchange.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/coolmesh/sync/1.0.0");
/// Default maximum frame size (both directions).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;
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
}

impl RequestKind {
    /// Wire code (request key 0).
    pub fn code(self) -> u8 {
        match self {
            RequestKind::Sync => 0,
            RequestKind::Push => 1,
            RequestKind::Records => 2,
        }
    }

    /// Inverse of [`RequestKind::code`]; unknown codes are treated as Sync.
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => RequestKind::Push,
            2 => RequestKind::Records,
            _ => RequestKind::Sync,
        }
    }

    /// `kind` label of `coolmesh_gossip_messages_total`.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Sync => "digest",
            RequestKind::Push => "push",
            RequestKind::Records => "records",
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

/// Framing errors, carried inside `io::Error` so that the event loop can
/// tell them apart from transport failures.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Announced length above the limit; the body was not read.
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    Oversized {
        /// Announced length.
        len: u64,
        /// Limit.
        max: usize,
    },
    /// The length prefix is not a valid varint.
    #[error("invalid frame length prefix")]
    BadLength,
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
}

impl FrameError {
    /// The rejection reason for an inbound stream error, if it was caused by
    /// the peer's bytes rather than the transport.
    pub fn reason_of(e: &io::Error) -> Option<RejectReason> {
        if let Some(fe) = e.get_ref().and_then(|i| i.downcast_ref::<FrameError>()) {
            return Some(match fe {
                FrameError::Oversized { .. } => RejectReason::Oversized,
                FrameError::BadLength | FrameError::Truncated => RejectReason::Malformed,
            });
        }
        None
    }
}

/// Unsigned LEB128 encoding of `n`.
pub fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Read one frame of at most `max` bytes. Returns the body and the number of
/// bytes consumed (prefix included).
pub async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
) -> io::Result<(Vec<u8>, usize)> {
    let mut len: u64 = 0;
    let mut prefix = 0usize;
    let truncated = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, FrameError::Truncated)
        } else {
            e
        }
    };
    loop {
        let mut b = [0u8; 1];
        match io.read_exact(&mut b).await {
            Ok(()) => {}
            // A stream closed before its first byte is not a frame at all.
            Err(e) if prefix == 0 => return Err(e),
            Err(e) => return Err(truncated(e)),
        }
        prefix += 1;
        let low = u64::from(b[0] & 0x7f);
        if (prefix == 10 && b[0] > 1) || prefix > 10 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                FrameError::BadLength,
            ));
        }
        len |= low << (7 * (prefix - 1));
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    if len > max as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            FrameError::Oversized { len, max },
        ));
    }
    let mut body = vec![0u8; len as usize];
    io.read_exact(&mut body).await.map_err(truncated)?;
    let n = prefix + body.len();
    Ok((body, n))
}

/// Write one frame. Returns the number of bytes written.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, body: &[u8]) -> io::Result<usize> {
    let mut buf = Vec::with_capacity(body.len() + 10);
    varint(body.len() as u64, &mut buf);
    buf.extend_from_slice(body);
    io.write_all(&buf).await?;
    io.flush().await?;
    Ok(buf.len())
}

/// request-response codec moving raw frames. Decoding of the CBOR happens in
/// the event loop, so that malformed content can be counted per reason.
/// Bytes are counted here (`coolmesh_gossip_bytes_total`).
#[derive(Clone)]
pub struct FrameCodec {
    max_frame: usize,
    metrics: GossipMetrics,
}

impl FrameCodec {
    /// A codec accepting frames up to `max_frame` bytes.
    pub fn new(max_frame: usize, metrics: GossipMetrics) -> Self {
        FrameCodec { max_frame, metrics }
    }

    /// Read a frame, counting bytes, and counting a rejection if the peer's
    /// framing is at fault (libp2p's request-response reports no event for
    /// failed reads of inbound requests, so this is the only place to see
    /// them). A truncated response is not counted: it is what a dropped
    /// connection looks like.
    async fn read<T: AsyncRead + Unpin + Send>(
        &self,
        io: &mut T,
        inbound: bool,
    ) -> io::Result<Vec<u8>> {
        match read_frame(io, self.max_frame).await {
            Ok((body, n)) => {
                self.metrics.bytes_in(n);
                Ok(body)
            }
            Err(e) => {
                let truncated = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<FrameError>())
                    .is_some_and(|f| matches!(f, FrameError::Truncated));
                if let Some(reason) = FrameError::reason_of(&e) {
                    if inbound || !truncated {
                        self.metrics.reject(reason);
                    }
                }
                Err(e)
            }
        }
    }

    async fn write<T: AsyncWrite + Unpin + Send>(&self, io: &mut T, body: &[u8]) -> io::Result<()> {
        let n = write_frame(io, body).await?;
        self.metrics.bytes_out(n);
        Ok(())
    }
}

impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, true).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, false).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use proptest::prelude::*;

    fn roundtrip(body: &[u8], max: usize) -> io::Result<(Vec<u8>, usize)> {
        let mut buf = Vec::new();
        block_on(write_frame(&mut buf, body))?;
        block_on(read_frame(&mut futures::io::Cursor::new(buf), max))
    }

    #[test]
    fn varint_matches_leb128() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (n, want) in cases {
            let mut out = Vec::new();
            varint(n, &mut out);
            assert_eq!(out, want, "{n}");
        }
    }

    #[test]
    fn frames_roundtrip_and_limits() {
        assert_eq!(roundtrip(b"hello", 5).unwrap(), (b"hello".to_vec(), 6));
        assert_eq!(roundtrip(b"", 0).unwrap(), (vec![], 1));
        let e = roundtrip(&[0u8; 300], 299).unwrap_err();
        assert_eq!(FrameError::reason_of(&e), Some(RejectReason::Oversized));
        // Truncated body.
        let e = block_on(read_frame(
            &mut futures::io::Cursor::new(vec![5u8, 1, 2]),
            100,
        ))
        .unwrap_err();
        assert_eq!(FrameError::reason_of(&e), Some(RejectReason::Malformed));
        // Over-long varint.
        let e = block_on(read_frame(
            &mut futures::io::Cursor::new(vec![0xffu8; 12]),
            100,
        ))
        .unwrap_err();
        assert_eq!(FrameError::reason_of(&e), Some(RejectReason::Malformed));
        // u64::MAX announced: refused as oversized without allocating.
        let mut buf = Vec::new();
        varint(u64::MAX, &mut buf);
        let e = block_on(read_frame(&mut futures::io::Cursor::new(buf), 100)).unwrap_err();
        assert_eq!(FrameError::reason_of(&e), Some(RejectReason::Oversized));
    }

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

        #[test]
        fn frames_roundtrip_any(body in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let (back, n) = roundtrip(&body, 3000).unwrap();
            prop_assert!(n > body.len());
            prop_assert_eq!(back, body);
        }
    }
}

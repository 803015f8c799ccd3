//! Framing: one unsigned LEB128 varint length (at most 10 bytes) followed
//! by that many bytes, and the request-response codec that moves such
//! frames. Frames above the configured limit are refused before their body
//! is read. See docs/protocol.md, section 4.1.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::cluster::metrics::GossipMetrics;
use crate::cluster::record::RejectReason;

/// Default maximum frame size (both directions).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

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
    use futures::executor::block_on;
    use proptest::prelude::*;

    use super::*;

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

    proptest! {
        #[test]
        fn frames_roundtrip_any(body in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let (back, n) = roundtrip(&body, 3000).unwrap();
            prop_assert!(n > body.len());
            prop_assert_eq!(back, body);
        }
    }
}

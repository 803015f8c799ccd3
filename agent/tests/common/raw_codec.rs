//! A request-response codec for tests that play a hand-driven or hostile
//! libp2p peer: requests are written verbatim (the test does its own
//! framing, or breaks it on purpose), responses are read as frames.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use coolmesh_agent::cluster::wire::{read_frame, varint};
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

/// Requests that made it onto a stream (written and flushed), and those
/// whose write failed (stream reset, connection gone).
#[derive(Default)]
pub struct WriteCounts {
    pub written: AtomicU64,
    pub failed: AtomicU64,
}

/// See the module docs; [`RawCodec::counting`] also counts the writes.
#[derive(Clone, Default)]
pub struct RawCodec {
    counts: Option<Arc<WriteCounts>>,
}

impl RawCodec {
    /// A codec that records every request write in `counts`.
    pub fn counting(counts: Arc<WriteCounts>) -> Self {
        RawCodec {
            counts: Some(counts),
        }
    }
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Ok(read_frame(io, 1 << 20).await?.0)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Ok(read_frame(io, 1 << 20).await?.0)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        let r = async {
            io.write_all(&req).await?;
            io.flush().await
        }
        .await;
        if let Some(c) = &self.counts {
            match &r {
                Ok(()) => c.written.fetch_add(1, Relaxed),
                Err(_) => c.failed.fetch_add(1, Relaxed),
            };
        }
        r
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        let mut b = Vec::new();
        varint(res.len() as u64, &mut b);
        b.extend_from_slice(&res);
        io.write_all(&b).await?;
        io.flush().await
    }
}

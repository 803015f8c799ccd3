//! The wire layer: everything the cluster sends and receives, in its
//! versioned CBOR form, and the one place that converts between these wire
//! types and the in-memory ones ([`crate::cluster::record`]).
//!
//! One libp2p stream per exchange (request-response): the initiator writes
//! one frame with a [`SyncRequest`] and closes its write side; the responder
//! writes one frame with a [`SyncResponse`] and closes. A frame is an
//! unsigned LEB128 varint length (at most 10 bytes) followed by that many
//! bytes of CBOR. Records inside travel as [`SignedRecord`]s, relayed byte
//! for byte. See docs/protocol.md.
//!
//! - [`record`]: the record payload ([`RecordPayload`]): CBOR shapes,
//!   encoding, decoding and the content rules.
//! - [`signed`]: [`SignedRecord`]: signing and verification.
//! - [`sync`]: the `/coolmesh/sync/1.0.0` request and response.
//! - [`frame`]: varint framing and the request-response codec.

pub mod frame;
pub mod record;
pub mod signed;
pub mod sync;

pub use frame::{read_frame, varint, write_frame, FrameCodec, FrameError, DEFAULT_MAX_FRAME_BYTES};
pub use record::{RecordPayload, MAX_RECORD_BYTES, RECORD_FORMAT};
pub use signed::{
    public_key_of, signing_input, SignError, SignedRecord, SignedW, MAX_SIGNATURE_BYTES,
    SIGNATURE_DOMAIN,
};
pub use sync::{RequestKind, SyncRequest, SyncResponse, MAX_DIGEST_ENTRIES, PROTOCOL};

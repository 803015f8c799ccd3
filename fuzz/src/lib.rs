//! The bodies of the fuzz targets. Each takes arbitrary bytes, feeds them to
//! the agent's parsers, and panics only if an invariant breaks (a parser
//! that panics is a bug: every input here can come from a peer, a
//! `sensors` binary or an operator's file).
//!
//! This file is also compiled into `agent/tests/corpus_replay.rs` (through
//! `#[path]`), which replays the saved corpus in the normal test suite, so
//! the fuzzers and the regression test run exactly the same checks.

use std::collections::HashSet;

use coolmesh_agent::cluster::wire::RecordPayload;
use coolmesh_agent::cluster::wire::{read_frame, SyncRequest, SyncResponse, MAX_DIGEST_ENTRIES};
use coolmesh_agent::cluster::wire::{SignedRecord, MAX_RECORD_BYTES, MAX_SIGNATURE_BYTES};
use coolmesh_agent::thermal::{plausible, Reading};
use futures::executor::block_on;
use futures::io::Cursor;

/// Frame limit used for the decoder (the agent's default).
pub const MAX_FRAME: usize = 1024 * 1024;

/// The sync protocol's decoders: framing, [`SyncRequest`],
/// [`SyncResponse`], [`SignedRecord`] and [`RecordPayload`].
///
/// The input is read as one frame (`uvarint(len) || body`) when it is one,
/// and the body (or, if it is not a frame, the whole input) is then decoded
/// as a request, a response and a record payload.
pub fn wire_decode(data: &[u8]) {
    let mut body = data;
    for max in [16, MAX_FRAME] {
        if let Ok((b, n)) = block_on(read_frame(&mut Cursor::new(data), max)) {
            assert!(b.len() <= max, "frame above its limit");
            assert!(n > b.len() && n <= data.len() && n - b.len() <= 10);
            assert_eq!(
                &data[n - b.len()..n],
                &b[..],
                "frame body is the bytes after the prefix"
            );
            if max == MAX_FRAME {
                body = &data[n - b.len()..n];
            }
        }
    }
    if let Ok(req) = SyncRequest::from_bytes(body) {
        if let Ok(d) = req.parsed_digest() {
            assert!(d.len() <= MAX_DIGEST_ENTRIES);
        }
        let _ = req.kind();
        let again = SyncRequest::from_bytes(&req.to_bytes()).expect("a re-encoded request decodes");
        assert_eq!(again, req, "request round trip");
        for s in req.signed_records() {
            signed_record(&s);
        }
    }
    if let Ok(resp) = SyncResponse::from_bytes(body) {
        let _ = resp.parsed_want();
        let again =
            SyncResponse::from_bytes(&resp.to_bytes()).expect("a re-encoded response decodes");
        assert_eq!(again, resp, "response round trip");
        for s in resp.records.iter().cloned().map(SignedRecord::from) {
            signed_record(&s);
        }
    }
    // The bytes as a record payload; the signature is the input's tail.
    let sig = &data[data.len().saturating_sub(64)..];
    signed_record(&SignedRecord {
        payload: body.to_vec(),
        signature: sig.to_vec(),
    });
}

/// Everything a receiver does with a record (protocol.md 5.4), minus the
/// store.
fn signed_record(s: &SignedRecord) {
    let peek = s.peek();
    if let Ok((peer, version, cluster)) = &peek {
        // The payload's own cluster, so the content rules are reached.
        let unsigned = s.verify_unsigned(cluster);
        if let Ok(r) = &unsigned {
            assert_eq!(r.peer_id, *peer);
            assert_eq!(r.version, *version);
            assert_eq!(&r.cluster, cluster);
            assert!(r.state.thermal.hottest.is_none_or(f64::is_finite));
            assert!(r.state.thermal.headroom.is_none_or(f64::is_finite));
            assert!(r.state.thermal.trend.is_none_or(f64::is_finite));
            assert!(r.state.thermal.time_to_critical.is_none_or(f64::is_finite));
            assert!(r.state.counters.values().all(|c| c.kind.code() <= 1));
        }
        // Signature check (fails for almost every input; must not panic).
        let verified = s.verify(cluster);
        if s.payload.len() > MAX_RECORD_BYTES || s.signature.len() > MAX_SIGNATURE_BYTES {
            assert!(verified.is_err());
        }
        if verified.is_ok() {
            assert_eq!(verified, unsigned, "a signature changes nothing else");
        }
    }
    if let Ok(p) = RecordPayload::decode(&s.payload) {
        // What decodes re-encodes into something that decodes again.
        if let Ok(bytes) = p.encode() {
            let again = RecordPayload::decode(&bytes).expect("a re-encoded payload decodes");
            assert_eq!(again.version, p.version);
            assert_eq!(again.peer_id, p.peer_id);
            assert_eq!(again.cluster, p.cluster);
            assert_eq!(again.counters, p.counters);
        }
    }
}

fn check_readings(readings: &[Reading]) {
    let mut seen = HashSet::new();
    for r in readings {
        assert!(plausible(r.celsius), "implausible reading {r:?}");
        assert!(r.max_celsius.is_none_or(plausible), "implausible max {r:?}");
        assert!(
            r.critical_celsius.is_none_or(plausible),
            "implausible crit {r:?}"
        );
        assert_eq!(r.source, "lm_sensors");
        assert!(
            seen.insert((r.chip.as_str(), r.sensor.as_str())),
            "duplicate (chip, sensor) {r:?}"
        );
    }
}

/// `sensors -j` output ([`coolmesh_agent::sources::lm_sensors::parse_json`]).
pub fn lm_sensors_json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = coolmesh_agent::sources::lm_sensors::parse_json(&text) {
        check_readings(&r);
    }
}

/// Plain `sensors` output ([`coolmesh_agent::sources::lm_sensors::parse_text`]).
pub fn lm_sensors_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = coolmesh_agent::sources::lm_sensors::parse_text(&text) {
        check_readings(&r);
    }
}

/// The TOML config file ([`coolmesh_agent::config::parse`]).
pub fn config_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match coolmesh_agent::config::parse(&text) {
        Ok(_) => {}
        Err(errors) => {
            // Every problem renders (messages carry keys and line numbers).
            let _ = errors.to_string();
        }
    }
}

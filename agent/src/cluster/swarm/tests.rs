//! Unit tests of the swarm's pure parts: redial backoff, the inbound rate
//! limit, the handshake log limiter, classifying incoming failures.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::ListenError;
use libp2p::{Multiaddr, PeerId};

use super::connections::{incoming_failure_reason, redial_due, LogLimiter};
use super::sync::Bucket;
use crate::cluster::record::RejectReason;

#[test]
fn discovered_peers_are_redialled_with_backoff_after_a_failed_dial() {
    let (t0, s) = (Instant::now(), Duration::from_secs);
    let (first, max) = (s(1), s(4));
    let peer = PeerId::random();
    let mut redial = HashMap::new();
    let no_jitter = |d: Duration| d;
    // (time, dial due?) after a first dial at t0 that fails: the next
    // attempts come 1, 2, 4, 4 s apart.
    let table = [
        (0, true),
        (500, false),
        (1_000, true),
        (2_000, false),
        (3_000, true),
        (6_999, false),
        (7_000, true),
        (11_000, true),
        (14_000, false),
        (15_000, true),
    ];
    for (ms, want) in table {
        let now = t0 + Duration::from_millis(ms);
        assert_eq!(
            redial_due(&mut redial, peer, now, first, max, no_jitter),
            want,
            "at {ms} ms"
        );
    }
    // A connection clears the entry: the next loss starts over at `first`.
    redial.remove(&peer);
    assert!(redial_due(
        &mut redial,
        peer,
        t0 + s(20),
        first,
        max,
        no_jitter
    ));
    assert_eq!(redial[&peer], (t0 + s(21), s(2)));
}

#[test]
fn rate_limit_bucket_allows_rate_and_burst_and_refills() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let (rate, burst) = (20.0, 40.0);
    let mut b = Bucket {
        tokens: burst,
        last: t0,
    };
    // A burst of 40 at once, then nothing until tokens come back.
    let granted = (0..100).filter(|_| b.take(at(0), rate, burst)).count();
    assert_eq!(granted, 40);
    assert!(!b.take(at(10), rate, burst));
    // One second later: 20 more.
    let granted = (0..100).filter(|_| b.take(at(1_010), rate, burst)).count();
    assert_eq!(granted, 20);
    // Not forgettable until it would be full again (2 s at 20/s).
    assert!(!b.refilled(at(2_000), rate, burst));
    assert!(b.refilled(at(3_010), rate, burst));
}

#[test]
fn handshake_log_is_rate_limited_and_counts_what_it_skipped() {
    let t0 = Instant::now();
    let mut l = LogLimiter::new(Duration::from_secs(10));
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let table = [
        (0, Some(0)),
        (1, None),
        (9_999, None),
        (10_000, Some(2)),
        (10_001, None),
        (60_000, Some(1)),
    ];
    for (ms, want) in table {
        assert_eq!(l.hit(at(ms)), want, "at {ms} ms");
    }
}

#[test]
fn incoming_failures_are_classified() {
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    let denied = |c| ListenError::Denied { cause: c };
    let table: Vec<(&str, ListenError, Option<RejectReason>)> = vec![
        ("aborted", ListenError::Aborted, None),
        (
            "our own address",
            ListenError::LocalPeerId {
                address: addr.clone(),
            },
            None,
        ),
        (
            "transport (wrong PSK, garbage, timeout)",
            ListenError::Transport(libp2p::TransportError::Other(std::io::Error::other("x"))),
            Some(RejectReason::Handshake),
        ),
        (
            "over a connection cap",
            denied(libp2p::swarm::ConnectionDenied::new(std::io::Error::other(
                "cap",
            ))),
            Some(RejectReason::Handshake),
        ),
    ];
    for (what, e, want) in table {
        assert_eq!(incoming_failure_reason(&e), want, "{what}");
    }
}

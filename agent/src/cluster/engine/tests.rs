//! The engine's unit tests: exchanges between engines in memory, with a
//! simulated clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::PeerId;
use minicbor::bytes::ByteVec;
use rand::SeedableRng;

use super::*;
use crate::cluster::counters::{CounterKind, CounterSlot};
use crate::cluster::roster::{Roster, RosterError};
use crate::cluster::wire::{RequestKind, SignedW, SyncRequest};

pub(super) fn cfg() -> EngineConfig {
    EngineConfig {
        cluster: "room-1".into(),
        refresh_interval: Duration::from_secs(1),
        timeouts: LivenessTimeouts {
            suspect_after: Duration::from_secs(4),
            dead_after: Duration::from_secs(8),
            retention: Duration::from_secs(60),
        },
        max_frame_bytes: 1 << 20,
        allowlist: None,
        max_members: 1024,
        new_identities_per_minute: 120,
        new_identities_burst: 256,
        operator: None,
        insecure_skip_signature_check: false,
    }
}

pub(super) fn engine() -> Engine {
    Engine::new(cfg(), Keypair::generate_ed25519())
}

pub(super) fn at(base: Instant, ms: u64) -> Now {
    Now {
        mono: base + Duration::from_millis(ms),
        unix_ms: 1_700_000_000_000 + ms,
    }
}

pub(super) fn bump_counter(e: &mut Engine, name: &str, p: u64) {
    let mut l = e.local.clone();
    l.counters.insert(
        name.into(),
        CounterSlot {
            kind: CounterKind::G,
            p,
            n: 0,
        },
    );
    e.set_local(l);
}

/// One full exchange a -> b (request, response, follow-up and its
/// response). Returns the number of messages.
pub(super) fn exchange(a: &mut Engine, b: &mut Engine, kind: RequestKind, now: Now) -> usize {
    let (req, sent) = a.request(b.me, kind, now);
    let (resp, _) = b.handle_request(a.me, &req, now).unwrap();
    let (follow, _) = a.handle_response(b.me, &sent, &resp, now);
    let mut n = 2;
    if let Some((req, sent)) = follow {
        let (resp, _) = b.handle_request(a.me, &req, now).unwrap();
        let (none, _) = a.handle_response(b.me, &sent, &resp, now);
        assert!(none.is_none(), "no follow-up of a follow-up");
        n += 2;
    }
    n
}

#[test]
fn next_version_table() {
    for (prev, wall, want) in [
        (0, 1000, 1000),
        (1000, 1000, 1001),
        (5000, 1000, 5001),
        (u64::MAX, 0, u64::MAX),
    ] {
        assert_eq!(next_version(prev, wall), want, "{prev} {wall}");
    }
}

#[test]
fn delta_table() {
    let [a, b, c, d] = [
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
    ];
    let mine: BTreeMap<_, _> = [(a, 5), (b, 3), (c, 1)].into_iter().collect();
    let theirs: BTreeMap<_, _> = [(a, 5), (b, 4), (d, 9)].into_iter().collect();
    let dl = delta(&mine, &theirs);
    assert_eq!(dl.they_lack, vec![c]);
    let mut il = dl.i_lack.clone();
    il.sort();
    let mut want = vec![b, d];
    want.sort();
    assert_eq!(il, want);
    assert_eq!(delta(&mine, &mine), Delta::default());
    let empty = BTreeMap::new();
    assert_eq!(delta(&mine, &empty).they_lack.len(), 3);
    assert_eq!(delta(&empty, &mine).i_lack.len(), 3);
}

#[test]
fn first_contact_then_incremental() {
    let base = Instant::now();
    let (mut a, mut b) = (engine(), engine());
    bump_counter(&mut a, "x", 1);
    bump_counter(&mut b, "x", 2);
    // First contact: digest + own record, response carries b's record.
    assert_eq!(exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0)), 2);
    assert_eq!(a.counters().value("x"), Some(3));
    assert_eq!(b.counters().value("x"), Some(3));
    // Nothing new: the request carries no records.
    let (req, _) = a.request(b.me, RequestKind::Sync, at(base, 10));
    assert!(req.records.is_empty(), "b already has a's record");
    // a changes: exactly its own record travels.
    bump_counter(&mut a, "x", 5);
    let (req, _) = a.request(b.me, RequestKind::Sync, at(base, 20));
    assert_eq!(req.records.len(), 1);
}

#[test]
fn relayed_records_and_follow_up() {
    let base = Instant::now();
    let (mut a, mut b, mut c) = (engine(), engine(), engine());
    for (i, e) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        bump_counter(e, "x", i as u64 + 1);
    }
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    // c first contacts a: a's response carries a's and b's records; c's
    // digest lacks nothing a has... and a wants c's? c sent its own.
    exchange(&mut c, &mut a, RequestKind::Sync, at(base, 10));
    assert_eq!(c.counters().value("x"), Some(6));
    assert_eq!(a.counters().value("x"), Some(6));
    // b learns c's record through a (relayed, signature by c).
    exchange(&mut b, &mut a, RequestKind::Sync, at(base, 20));
    assert_eq!(b.counters().value("x"), Some(6));
    // a follow-up happens when the responder lacks something the
    // requester did not include: b pushes (own record only) to a fresh d.
    let mut d = engine();
    let n = exchange(&mut b, &mut d, RequestKind::Push, at(base, 30));
    assert_eq!(n, 4, "d wants a's and c's records");
    assert_eq!(d.counters().value("x"), Some(6));
}

#[test]
fn a_node_that_lost_its_counters_gets_its_slots_back_before_publishing() {
    let base = Instant::now();
    let (mut a, mut b) = (engine(), engine());
    bump_counter(&mut a, "jobs", 5);
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    assert_eq!(b.counters().value("jobs"), Some(5));
    let old_version = a.own_record().unwrap().version;
    // a restarts with its identity but without counters.json, a minute
    // later (its wall clock makes any new version newer than the old).
    let mut a2 = Engine::new(cfg(), a.key.clone());
    a2.hold_own_record(at(base, 63_000).mono);
    let t = at(base, 60_000);
    assert!(!a2.refresh(t, false), "held: no own record yet");
    assert!(a2.own_record().is_none());
    // First exchange: b still holds a's old record and sends it.
    exchange(&mut a2, &mut b, RequestKind::Sync, t);
    assert_eq!(a2.counters().value("jobs"), Some(5), "slots adopted");
    assert!(a2.refresh(t, false));
    let rec = a2.own_record().unwrap();
    assert!(rec.version > old_version);
    assert_eq!(
        rec.state.counters["jobs"].p, 5,
        "published with the old slot"
    );
    // A lone node is held only until the deadline.
    let mut lone = engine();
    lone.hold_own_record(at(base, 3000).mono);
    assert!(!lone.refresh(at(base, 1000), false));
    assert!(lone.refresh(at(base, 3000), false));
}

#[test]
fn a_requesters_digest_of_unknown_owners_is_not_remembered() {
    let base = Instant::now();
    let (mut a, mut b) = (engine(), engine());
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    // A digest naming 5,000 owners nobody knows.
    let mut req = a.request(b.me, RequestKind::Sync, at(base, 1)).0;
    for _ in 0..5000 {
        let p = Keypair::generate_ed25519().public().to_peer_id();
        req.digest.push((ByteVec::from(p.to_bytes()), 1));
    }
    let _ = b.handle_request(a.me, &req, at(base, 2));
    let remembered = b.known.get(&a.me).map_or(0, |k| k.len());
    assert!(remembered <= 2, "{remembered} entries remembered");
}

#[test]
fn stale_and_own_records() {
    let base = Instant::now();
    let (mut a, mut b) = (engine(), engine());
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    let old = b.peers[&a.me].signed.clone();
    // Re-delivering the same version changes nothing.
    let mut out = Outcome::default();
    assert!(b.accept(a.me, old.clone(), at(base, 5), &mut out).is_none());
    assert_eq!(out, Outcome::default());
    // A restarted `a` (fresh engine, same key, older wall clock) learns
    // its previous version from b and continues above it.
    let mut a2 = Engine::new(cfg(), a.key.clone());
    let mut early = at(base, 0);
    early.unix_ms -= 60_000;
    bump_counter(&mut b, "y", 1);
    let mut out = Outcome::default();
    a2.accept(b.me, old, early, &mut out);
    assert!(out.changed);
    a2.refresh(early, true);
    assert!(a2.own_record().unwrap().version > a.own_record().unwrap().version);
}

#[test]
fn forged_and_foreign_records_are_rejected() {
    let base = Instant::now();
    let (a, mut b) = (engine(), engine());
    let victim = Keypair::generate_ed25519();
    // A record claiming to be the victim's, signed by a.
    let mut rec = Record::from_local(
        &LocalState::default(),
        "room-1",
        victim.public().to_peer_id(),
        1,
        &[],
        0,
    );
    let payload = crate::cluster::wire::RecordPayload::from_record(&rec)
        .encode()
        .unwrap();
    let forged = SignedRecord::sign_payload(payload, &a.key).unwrap();
    // a's own record with a slot owned by the victim.
    rec.peer_id = a.me;
    let mut p = crate::cluster::wire::RecordPayload::from_record(&rec);
    p.counters.push(crate::cluster::wire::record::SlotW {
        name: "x".into(),
        kind: 0,
        owner: victim.public().to_peer_id().to_bytes(),
        p: 100,
        n: 0,
    });
    let foreign = SignedRecord::sign_payload(p.encode().unwrap(), &a.key).unwrap();
    let req = SyncRequest {
        kind: 0,
        cluster: "room-1".into(),
        digest: vec![],
        records: vec![
            SignedW::from(&forged),
            SignedW::from(&foreign),
            SignedW {
                payload: vec![0xff; 10],
                signature: vec![],
            },
        ],
        ..Default::default()
    };
    let (_, out) = b.handle_request(a.me, &req, at(base, 0)).unwrap();
    assert_eq!(
        out.rejected,
        vec![
            RejectReason::BadSignature,
            RejectReason::ForeignSlot,
            RejectReason::Malformed
        ]
    );
    assert!(b.peers.is_empty());
    assert_eq!(b.counters().value("x"), None);
    // Wrong cluster: the whole request is refused.
    let req = SyncRequest {
        cluster: "room-2".into(),
        ..Default::default()
    };
    assert_eq!(
        b.handle_request(a.me, &req, at(base, 0)).unwrap_err(),
        RejectReason::Unauthorized
    );
}

#[test]
fn allowlist_rejects_records_of_strangers() {
    let base = Instant::now();
    let a = Keypair::generate_ed25519();
    let mut c = cfg();
    c.allowlist = Some(HashSet::from([a.public().to_peer_id()]));
    let mut b = Engine::new(c, Keypair::generate_ed25519());
    let mut a = Engine::new(cfg(), a);
    let mut stranger = engine();
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    assert_eq!(b.peers.len(), 1);
    let (req, _) = stranger.request(b.me, RequestKind::Push, at(base, 0));
    let (_, out) = b.handle_request(stranger.me, &req, at(base, 0)).unwrap();
    assert_eq!(out.rejected, vec![RejectReason::Unauthorized]);
}

#[test]
fn liveness_retention_and_tombstones() {
    let base = Instant::now();
    let (mut a, mut b) = (engine(), engine());
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    let stale_copy = b.peers[&a.me].signed.clone();
    assert_eq!(
        b.liveness(&a.me, at(base, 3999).mono),
        Some(Liveness::Alive)
    );
    assert!(
        b.housekeeping(at(base, 4000)),
        "alive -> suspect is a change"
    );
    assert_eq!(
        b.liveness(&a.me, at(base, 4000).mono),
        Some(Liveness::Suspect)
    );
    assert!(b.housekeeping(at(base, 8000)));
    let v = b.view(
        at(base, 8000).mono,
        &HashSet::new(),
        &HashMap::new(),
        &[],
        None,
    );
    assert!(v.peers[&a.me].stale);
    assert!(!b.housekeeping(at(base, 9000)));
    // Dropped after dead_after + retention; counters stay.
    bump_counter(&mut a, "x", 7);
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 9000));
    assert_eq!(
        b.liveness(&a.me, at(base, 9000).mono),
        Some(Liveness::Alive)
    );
    assert!(b.housekeeping(at(base, 9000 + 68_000)));
    assert!(b.liveness(&a.me, at(base, 9000 + 68_000).mono).is_none());
    assert_eq!(b.counters().value("x"), Some(7));
    // A relayed old copy does not resurrect it.
    let mut out = Outcome::default();
    assert!(b
        .accept(b.me, stale_copy, at(base, 80_000), &mut out)
        .is_none());
    // A newer version does.
    exchange(&mut a, &mut b, RequestKind::Push, at(base, 81_000));
    assert_eq!(
        b.liveness(&a.me, at(base, 81_000).mono),
        Some(Liveness::Alive)
    );
}

fn with_operator(op: &Keypair) -> Engine {
    let mut c = cfg();
    c.operator = Some(op.public());
    Engine::new(c, Keypair::generate_ed25519())
}

fn signed_roster(op: &Keypair, version: u64, members: &[PeerId]) -> Roster {
    Roster::sign(op, "room-1", version, 0, members.iter().copied().collect()).unwrap()
}

#[test]
fn the_roster_spreads_and_shuts_out_non_members() {
    let base = Instant::now();
    let op = Keypair::generate_ed25519();
    let (mut a, mut b, mut x) = (with_operator(&op), with_operator(&op), with_operator(&op));
    // Before any roster, everyone holding the key is a member.
    exchange(&mut x, &mut b, RequestKind::Sync, at(base, 0));
    assert!(b.peers.contains_key(&x.me));
    // The operator installs a roster of a and b on a.
    let r = signed_roster(&op, 10, &[a.me, b.me]);
    assert_eq!(a.offer_roster(r.to_bytes(), at(base, 10)), Ok(true));
    assert!(a.take_new_roster().is_some());
    assert!(a.take_new_roster().is_none(), "reported once");
    // One exchange a -> b carries it (a has not heard b's version, so
    // its first request holds the roster).
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 20));
    assert_eq!(b.roster().map(|r| r.version), Some(10));
    assert!(b.take_new_roster().is_some(), "b stores it");
    // x's record left b at once, and x is now waiting outside.
    assert!(!b.peers.contains_key(&x.me));
    // x pushes: its records are refused and it gets the roster back.
    let (req, sent) = x.request(b.me, RequestKind::Push, at(base, 1000));
    let (resp, out) = b.handle_request(x.me, &req, at(base, 1000)).unwrap();
    assert_eq!(out.rejected, vec![RejectReason::NotInRoster]);
    assert!(resp.records.is_empty() && resp.want.is_empty());
    assert!(resp.roster.is_some());
    assert!(!b.peers.contains_key(&x.me));
    assert_eq!(b.candidates().first().map(|c| c.0), Some(x.me));
    let (follow, _) = x.handle_response(b.me, &sent, &resp, at(base, 1000));
    assert!(follow.is_none());
    assert_eq!(x.roster().map(|r| r.version), Some(10));
    assert!(!x.is_member(&x.me));
    // A member relaying x's record (c, configured without the
    // operator key, keeps it) is refused for that record, never stored.
    let mut c = Engine::new(cfg(), Keypair::generate_ed25519());
    exchange(&mut x, &mut c, RequestKind::Sync, at(base, 1100));
    let xs = c.peers[&x.me].signed.clone();
    let mut out = Outcome::default();
    assert!(b.accept(a.me, xs, at(base, 1200), &mut out).is_none());
    assert_eq!(out.rejected, vec![RejectReason::NotInRoster]);
    // Views: the roster is there, and every alive peer votes.
    let v = b.view(
        at(base, 1200).mono,
        &HashSet::new(),
        &HashMap::new(),
        &[],
        None,
    );
    assert_eq!(v.roster.as_ref().map(|r| r.version), Some(10));
    assert_eq!(v.voters().len(), 1, "a votes, relayed or not");
    assert_eq!(v.candidates.len(), 1);
}

#[test]
fn only_a_newer_roster_signed_by_the_operator_is_taken() {
    let base = Instant::now();
    let op = Keypair::generate_ed25519();
    let mut a = with_operator(&op);
    let m = [a.me];
    assert_eq!(
        a.offer_roster(signed_roster(&op, 5, &m).to_bytes(), at(base, 0)),
        Ok(true)
    );
    assert_eq!(
        a.offer_roster(signed_roster(&op, 5, &m).to_bytes(), at(base, 0)),
        Err(RosterError::NotNewer(5, 5))
    );
    assert_eq!(
        a.offer_roster(signed_roster(&op, 4, &[]).to_bytes(), at(base, 0)),
        Err(RosterError::NotNewer(4, 5)),
        "a replayed old roster changes nothing"
    );
    let thief = Keypair::generate_ed25519();
    assert_eq!(
        a.offer_roster(signed_roster(&thief, 99, &[]).to_bytes(), at(base, 0)),
        Err(RosterError::BadSignature)
    );
    assert_eq!(a.roster().map(|r| r.version), Some(5));
    // A forged roster in a request is counted and ignored.
    let mut b = with_operator(&op);
    let (mut req, _) = b.request(a.me, RequestKind::Sync, at(base, 0));
    req.roster = Some(ByteVec::from(
        signed_roster(&thief, 99, &[b.me]).to_bytes().to_vec(),
    ));
    let (_, out) = a.handle_request(b.me, &req, at(base, 0)).unwrap();
    assert!(out.rejected.contains(&RejectReason::BadSignature));
    assert_eq!(a.roster().map(|r| r.version), Some(5));
    // Without an operator key a node takes no roster at all.
    let mut plain = engine();
    assert_eq!(
        plain.offer_roster(signed_roster(&op, 1, &[]).to_bytes(), at(base, 0)),
        Err(RosterError::NoOperatorKey)
    );
}

#[test]
fn removal_from_the_roster_retires_counter_slots_keeping_totals() {
    let base = Instant::now();
    let op = Keypair::generate_ed25519();
    let (mut a, mut b) = (with_operator(&op), with_operator(&op));
    bump_counter(&mut a, "jobs", 9);
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    assert_eq!(b.counters().value("jobs"), Some(9));
    assert_eq!(
        b.offer_roster(signed_roster(&op, 1, &[b.me]).to_bytes(), at(base, 1)),
        Ok(true)
    );
    assert!(!b.peers.contains_key(&a.me));
    assert!(!b.counters().map["jobs"]
        .slots
        .contains_key(&a.me.to_base58()));
    assert_eq!(b.counters().value("jobs"), Some(9), "the total stays");
    // Added back later with more increments: counted once.
    bump_counter(&mut a, "jobs", 12);
    assert_eq!(
        b.offer_roster(signed_roster(&op, 2, &[a.me, b.me]).to_bytes(), at(base, 2)),
        Ok(true)
    );
    exchange(&mut a, &mut b, RequestKind::Push, at(base, 2000));
    assert_eq!(b.counters().value("jobs"), Some(12));
}

#[test]
fn slots_of_the_long_dead_are_pruned_and_the_total_stays() {
    let base = Instant::now();
    let (mut a, mut b) = (engine(), engine());
    bump_counter(&mut a, "x", 7);
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    assert!(b.housekeeping(at(base, 8000 + 60_000)));
    assert!(b.liveness(&a.me, at(base, 68_000).mono).is_none());
    let c = &b.counters().map["x"];
    assert!(c.slots.is_empty(), "{c:?}");
    assert_eq!(b.counters().value("x"), Some(7));
    let v = b.view(
        at(base, 68_000).mono,
        &HashSet::new(),
        &HashMap::new(),
        &[],
        None,
    );
    assert!(v.counters.map["x"].slots.is_empty());
    assert_eq!(v.counters.value("x"), Some(7));
}

/// `push` a's own record to b; what b rejected.
fn push(a: &mut Engine, b: &mut Engine, now: Now) -> Vec<RejectReason> {
    let (req, _) = a.request(b.me, RequestKind::Push, now);
    let (_, out) = b.handle_request(a.me, &req, now).unwrap();
    out.rejected
}

#[test]
fn one_peer_introduces_a_bounded_number_of_new_identities() {
    let base = Instant::now();
    let mut b = Engine::new(
        EngineConfig {
            new_identities_per_minute: 60,
            new_identities_burst: 8,
            ..cfg()
        },
        Keypair::generate_ed25519(),
    );
    // Mallory holds the key and signs records for 20 fresh identities,
    // then relays them to b over her one connection.
    let mallory = Keypair::generate_ed25519().public().to_peer_id();
    let minted: Vec<Engine> = (0..20).map(|_| engine()).collect();
    let relay = |b: &mut Engine, minted: &mut Vec<Engine>, t: u64| {
        let mut rejected = Vec::new();
        for m in minted.iter_mut() {
            let (req, _) = m.request(b.me, RequestKind::Push, at(base, t));
            let (_, out) = b.handle_request(mallory, &req, at(base, t)).unwrap();
            rejected.extend(out.rejected);
        }
        rejected
    };
    let mut minted = minted;
    let rejected = relay(&mut b, &mut minted, 0);
    assert_eq!(b.peers.len(), 8, "the burst");
    assert_eq!(rejected.len(), 12);
    assert!(rejected.iter().all(|r| *r == RejectReason::NewIdentities));
    // A minute later, one per second refilled: 12 more fit in 60 s... but
    // only up to the burst at once.
    relay(&mut b, &mut minted, 60_000);
    assert_eq!(b.peers.len(), 16);
    // Known identities are no new ones: advancing them costs nothing,
    // and an owner pushing its own record is never counted.
    let mut own = engine();
    for t in [60_001, 60_002, 60_003] {
        assert!(push(&mut own, &mut b, at(base, t)).is_empty());
    }
    assert!(b.peers.contains_key(&own.me));
}

#[test]
fn member_table_is_capped_and_dead_members_make_room() {
    let base = Instant::now();
    let mut b = Engine::new(
        EngineConfig {
            max_members: 16,
            ..cfg()
        },
        Keypair::generate_ed25519(),
    );
    let mut first: Vec<Engine> = (0..16).map(|_| engine()).collect();
    for a in &mut first {
        assert!(push(a, &mut b, at(base, 0)).is_empty());
    }
    assert_eq!(b.peers.len(), 16);
    // Full of live members: a new identity is refused and counted.
    let mut newcomer = engine();
    assert_eq!(
        push(&mut newcomer, &mut b, at(base, 1000)),
        vec![RejectReason::Capacity]
    );
    assert!(!b.peers.contains_key(&newcomer.me));
    // A known member still advances while the table is full.
    let keeper = first[0].me;
    bump_counter(&mut first[0], "x", 1);
    assert!(push(&mut first[0], &mut b, at(base, 9000)).is_empty());
    // At 10 s the other 15 are dead (8 s): the newcomer takes a dead
    // member's slot, never the live one's.
    assert!(push(&mut newcomer, &mut b, at(base, 10_000)).is_empty());
    assert_eq!(b.peers.len(), 16);
    assert!(b.peers.contains_key(&newcomer.me));
    assert!(b.peers.contains_key(&keeper));
    assert_eq!(b.tombstones.len(), 1);
    // The evicted member's counter slots stay (CRDT), and its old record
    // relayed again is not taken as new.
    assert_eq!(b.counters().value("x"), Some(1));
    // A stream of fresh identities, each arriving once the previous
    // ones are dead, keeps the table and the tombstones bounded.
    for i in 0..80u64 {
        let mut sybil = engine();
        let t = 20_000 + i * 10_000;
        assert!(push(&mut sybil, &mut b, at(base, t)).is_empty());
        assert!(b.peers.len() <= 16);
        assert!(b.tombstones.len() <= 64, "{}", b.tombstones.len());
    }
    assert_eq!(b.tombstones.len(), 64);
}

#[test]
fn first_sight_of_an_old_record_is_not_alive() {
    let base = Instant::now();
    let (mut a, mut b, mut c) = (engine(), engine(), engine());
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    // c meets b 20 s later (wall clock too): a's record is 20 s old.
    exchange(&mut c, &mut b, RequestKind::Sync, at(base, 20_000));
    assert_eq!(
        c.liveness(&a.me, at(base, 20_000).mono),
        Some(Liveness::Dead)
    );
    assert_eq!(
        c.liveness(&b.me, at(base, 20_000).mono),
        Some(Liveness::Alive)
    );
}

#[test]
fn first_sight_age_distrusts_impossible_timestamps() {
    let t = cfg().timeouts; // dead_after 8 s, retention 60 s
    let now = 1_700_000_000_000u64;
    let s = Duration::from_secs;
    let table: [(&str, u64, Duration); 8] = [
        ("fresh", now, Duration::ZERO),
        ("3 s old", now - 3_000, s(3)),
        (
            "just inside the cap",
            now - 67_999,
            Duration::from_millis(67_999),
        ),
        ("at the cap: dead, not dropped", now - 68_000, s(8)),
        ("a day old: dead, not dropped", now - 86_400_000, s(8)),
        ("absent (0): dead, not dropped", 0, s(8)),
        ("a clock a few seconds ahead", now + 5_000, Duration::ZERO),
        ("far future: dead", now + 3_600_000, s(8)),
    ];
    for (what, updated, want) in table {
        assert_eq!(first_sight_age(now, updated, &t), want, "{what}");
    }
    // Nothing overflows at the extremes.
    assert_eq!(first_sight_age(0, u64::MAX, &t), s(8));
    assert_eq!(first_sight_age(u64::MAX, 1, &t), s(8));
}

#[test]
fn record_without_timestamp_is_kept_dead_then_turns_alive() {
    let base = Instant::now();
    let (mut a, mut c) = (engine(), engine());
    let mut old = at(base, 0);
    old.unix_ms = 1; // "updated_ms" in 1970: an implausible timestamp
    let (req, _) = a.request(c.me, RequestKind::Push, old);
    let (_, out) = c.handle_request(a.me, &req, at(base, 0)).unwrap();
    assert!(out.changed && out.rejected.is_empty());
    assert_eq!(c.liveness(&a.me, at(base, 0).mono), Some(Liveness::Dead));
    // Still there after housekeeping (it used to be dropped unseen).
    c.housekeeping(at(base, 300));
    assert_eq!(c.liveness(&a.me, at(base, 300).mono), Some(Liveness::Dead));
    // The owner's next version makes it alive.
    let (req, _) = a.request(c.me, RequestKind::Push, at(base, 1_500));
    c.handle_request(a.me, &req, at(base, 1_500)).unwrap();
    assert_eq!(
        c.liveness(&a.me, at(base, 1_500).mono),
        Some(Liveness::Alive)
    );
}

#[test]
fn forged_records_beyond_the_cap_are_not_examined() {
    let base = Instant::now();
    let (mut a, mut c) = (engine(), engine());
    let (mut req, _) = a.request(c.me, RequestKind::Push, at(base, 0));
    let mut forged = req.records[0].clone();
    forged.signature = vec![0; 64];
    req.records = vec![forged; 1000];
    let (_, out) = c.handle_request(a.me, &req, at(base, 0)).unwrap();
    assert_eq!(out.rejected.len(), MAX_REJECTED_PER_MESSAGE);
    assert!(out
        .rejected
        .iter()
        .all(|r| *r == RejectReason::BadSignature));
    assert!(c.liveness(&a.me, at(base, 0).mono).is_none());
}

#[test]
fn relay_is_smallest_connected_live_member() {
    let base = Instant::now();
    let mut a = engine();
    let mut others: Vec<Engine> = (0..4).map(|_| engine()).collect();
    for o in others.iter_mut() {
        exchange(o, &mut a, RequestKind::Sync, at(base, 0));
    }
    let mut ids: Vec<PeerId> = others.iter().map(|o| o.me).collect();
    ids.sort_by_key(|p| p.to_base58());
    let all = |_: &PeerId| true;
    assert_eq!(a.relay(all, at(base, 0).mono), Some(ids[0]));
    let not_first = |p: &PeerId| *p != ids[0];
    assert_eq!(a.relay(not_first, at(base, 0).mono), Some(ids[1]));
    assert_eq!(a.relay(all, at(base, 4000).mono), None, "all suspect");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let r = Engine::random_peers(&ids, 2, Some(ids[0]), &mut rng);
    assert_eq!(r.len(), 2);
    assert!(!r.contains(&ids[0]));
}

#[test]
fn messages_respect_the_frame_budget() {
    let base = Instant::now();
    let mut c = cfg();
    c.max_frame_bytes = FRAME_SLACK + 3000;
    let mut hub = Engine::new(c, Keypair::generate_ed25519());
    let mut others: Vec<Engine> = (0..20).map(|_| engine()).collect();
    for o in others.iter_mut() {
        exchange(o, &mut hub, RequestKind::Sync, at(base, 0));
    }
    let mut fresh = engine();
    let (req, sent) = fresh.request(hub.me, RequestKind::Sync, at(base, 0));
    let (resp, _) = hub.handle_request(fresh.me, &req, at(base, 0)).unwrap();
    assert!(resp.to_bytes().len() <= 3000 + FRAME_SLACK);
    assert!(!resp.records.is_empty() && resp.records.len() < 20);
    fresh.handle_response(hub.me, &sent, &resp, at(base, 0));
    // Later rounds bring the rest.
    for i in 1..20 {
        exchange(&mut fresh, &mut hub, RequestKind::Sync, at(base, i));
    }
    assert_eq!(fresh.peers.len(), 21);
}

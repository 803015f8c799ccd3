//! The engine's unit tests for members that run SWIM (docs/scale.md steps
//! 1-2): liveness from SWIM's verdict, records on change. Same harness as
//! `tests.rs` (engines in memory, a simulated clock).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::tests::{at, bump_counter, engine, exchange};
use super::*;
use crate::cluster::wire::RequestKind;

#[test]
fn swim_makes_a_member_that_runs_it_dead_until_its_record_advances() {
    let base = Instant::now();
    let (mut a, mut b, mut old) = (engine(), engine(), engine());
    a.set_speaks_swim(true);
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    exchange(&mut old, &mut b, RequestKind::Sync, at(base, 0));
    assert!(b.peers[&a.me].record.state.swim, "key 15 reached b");
    assert!(!b.peers[&old.me].record.state.swim);
    // Only members that say they run SWIM are probed.
    assert_eq!(b.swim_members(at(base, 500).mono), vec![a.me]);

    // SWIM declares both down at 1 s, long before record age would (8 s).
    assert!(b.swim_down(a.me, at(base, 1000).mono), "a changes to dead");
    assert!(
        !b.swim_down(old.me, at(base, 1000).mono),
        "a member without SWIM is judged by its record alone"
    );
    assert_eq!(b.liveness(&a.me, at(base, 1000).mono), Some(Liveness::Dead));
    assert_eq!(
        b.liveness(&old.me, at(base, 1000).mono),
        Some(Liveness::Alive)
    );
    assert!(b.swim_members(at(base, 1000).mono).is_empty());
    let v = b.view(
        at(base, 1000).mono,
        &HashSet::new(),
        &HashMap::new(),
        &[],
        None,
    );
    assert!(v.peers[&a.me].stale);
    assert!(!v.peers[&old.me].stale);

    // a's record advances (it was alive after all): alive again, whatever
    // SWIM still thinks; SWIM seeing it up clears the mark too.
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 2000));
    assert_eq!(
        b.liveness(&a.me, at(base, 2000).mono),
        Some(Liveness::Alive)
    );
    b.swim_up(&a.me);
    assert_eq!(b.swim_members(at(base, 2000).mono), vec![a.me]);

    // Housekeeping notices a down mark like any liveness change.
    b.swim_down(a.me, at(base, 2500).mono);
    assert!(!b.housekeeping(at(base, 2600)), "already marked dead");
    b.swim_up(&a.me);
    assert!(b.housekeeping(at(base, 2700)), "dead -> alive is a change");
}

#[test]
fn where_every_member_runs_swim_records_change_only_when_it_matters() {
    use crate::cluster::record::{TargetObservation, ThermalReport};
    let base = Instant::now();
    let (mut a, mut b) = (engine(), engine());
    a.set_speaks_swim(true);
    b.set_speaks_swim(true);
    let state = |hottest: f64, up: bool, at_ms: u64| LocalState {
        node: "a".into(),
        thermal: ThermalReport {
            hottest: Some(hottest),
            ..ThermalReport::default()
        },
        power: vec![TargetObservation {
            target: "tcp://10.0.0.1:22".into(),
            up,
            at_ms,
        }],
        ..LocalState::default()
    };
    a.set_local(state(60.0, true, 0));
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    exchange(&mut b, &mut a, RequestKind::Sync, at(base, 0));
    let version = |e: &Engine| e.own_record().map(|r| r.version);
    let v0 = version(&a);
    assert_eq!(
        a.refresh_interval_now(),
        Duration::from_secs(30),
        "every member runs SWIM"
    );

    // Sensor noise and the probe clock for 20 s: no new version.
    for s in 1..=20u64 {
        a.set_local(state(60.0 + (s % 3) as f64 * 0.3, true, s * 1000));
        a.refresh(at(base, s * 1000), false);
    }
    assert_eq!(version(&a), v0, "nothing worth a record in 20 s");
    // b, which runs SWIM too, still sees a alive at 20 s of record age
    // (the record-age backstop for SWIM members is 90 s / 180 s).
    assert_eq!(
        b.liveness(&a.me, at(base, 20_000).mono),
        Some(Liveness::Alive)
    );
    assert_eq!(
        b.liveness(&a.me, at(base, 100_000).mono),
        Some(Liveness::Suspect)
    );

    // The power target goes dark: a new version at once.
    a.set_local(state(60.0, false, 21_000));
    assert!(a.refresh(at(base, 21_000), false));
    assert_ne!(version(&a), v0);
    assert!(!a.own_record().expect("own").state.power[0].up);
    let v1 = version(&a);
    // A degree past the last published value: a new version too.
    a.set_local(state(61.0, false, 22_000));
    assert!(a.refresh(at(base, 22_000), false));
    assert_ne!(version(&a), v1);
    // And the slow refresh still comes (30 s after the last version).
    let v2 = version(&a);
    a.set_local(state(61.2, false, 40_000));
    assert!(!a.refresh(at(base, 40_000), false));
    assert!(a.refresh(at(base, 52_000), false));
    assert_ne!(version(&a), v2);

    // A member without SWIM joins: back to a record every second, and
    // every change counts again for it (record age is its only clue).
    let mut old = engine();
    exchange(&mut old, &mut a, RequestKind::Sync, at(base, 53_000));
    assert_eq!(a.refresh_interval_now(), Duration::from_secs(1));
    let v3 = version(&a);
    assert!(a.refresh(at(base, 54_100), false));
    assert_ne!(version(&a), v3);
}

/// Three engines that all run SWIM and have met: overlay mode.
fn overlay_room(base: Instant) -> (Engine, Engine, Engine) {
    let (mut a, mut b, mut c) = (engine(), engine(), engine());
    for e in [&mut a, &mut b, &mut c] {
        e.set_speaks_swim(true);
    }
    exchange(&mut a, &mut b, RequestKind::Sync, at(base, 0));
    exchange(&mut c, &mut b, RequestKind::Sync, at(base, 0));
    exchange(&mut a, &mut c, RequestKind::Sync, at(base, 0));
    (a, b, c)
}

#[test]
fn a_delta_carries_only_what_the_peer_lacks_and_absence_is_not_missing() {
    let base = Instant::now();
    let (mut a, mut b, c) = overlay_room(base);
    assert!(a.overlay_mode() && b.overlay_mode());
    assert_eq!(a.sync_kind(), RequestKind::Delta);
    // a does not know yet that b has c's record: its first delta carries
    // it. After that exchange beliefs agree and nothing is new: an empty
    // delta, and b does not take the absent entries for missing records
    // (it sends none back and wants none).
    exchange(&mut a, &mut b, RequestKind::Delta, at(base, 50));
    let (req, _) = a.request(b.me, RequestKind::Delta, at(base, 100));
    assert_eq!(req.kind, RequestKind::Delta.code());
    assert!(req.digest.is_empty() && req.records.is_empty(), "{req:?}");
    let (resp, _) = b.handle_request(a.me, &req, at(base, 100)).unwrap();
    assert!(resp.records.is_empty() && resp.want.is_empty(), "{resp:?}");
    // a's own record changes: the delta carries exactly that one.
    bump_counter(&mut a, "jobs", 1);
    let (req, sent) = a.request(b.me, RequestKind::Delta, at(base, 200));
    assert_eq!(req.digest.len(), 1);
    assert_eq!(req.records.len(), 1);
    let (resp, out) = b.handle_request(a.me, &req, at(base, 200)).unwrap();
    assert!(out.changed);
    let (follow, _) = a.handle_response(b.me, &sent, &resp, at(base, 200));
    assert!(follow.is_none());
    assert_eq!(b.counters().value("jobs"), Some(1));
    // Now b has it and a knows: nothing more for b, news for c.
    assert!(!a.has_news_for(&b.me));
    assert!(a.has_news_for(&c.me));
    // A peer we never exchanged with gets a full Sync, not a delta.
    let stranger = engine();
    let (req, _) = a.request(stranger.me, RequestKind::Delta, at(base, 300));
    assert_eq!(req.kind, RequestKind::Sync.code());
}

#[test]
fn overlay_neighbours_include_the_ring_successor_and_pushes_only_in_overlay_mode() {
    let base = Instant::now();
    let (mut a, b, c) = overlay_room(base);
    let now = at(base, 100).mono;
    let out = a.out_neighbours(now);
    // With two members both are out-neighbours; the first is the ring
    // successor (the next base58 PeerId after a's, wrapping).
    assert_eq!(out.len(), 2);
    let mut ring: Vec<(String, PeerId)> = [a.me, b.me, c.me]
        .iter()
        .map(|p| (p.to_base58(), *p))
        .collect();
    ring.sort();
    let i = ring.iter().position(|(_, p)| *p == a.me).unwrap_or(0);
    assert_eq!(out[0], ring[(i + 1) % 3].1);
    // A member without SWIM joins: the hub design again, no pushes.
    let mut old = engine();
    exchange(&mut old, &mut a, RequestKind::Sync, at(base, 200));
    assert!(!a.overlay_mode());
    assert_eq!(a.sync_kind(), RequestKind::Sync);
    bump_counter(&mut a, "jobs", 1);
    assert!(a.push_targets(now).is_empty());
}

/// Timer math of the overlay (pure): the full-digest interval and the
/// periodic refresh stretch with the member count so that their cost per
/// node stays flat, and small rooms keep the base periods.
#[test]
fn overlay_periods_stretch_with_the_member_count() {
    use super::overlay::{full_sync_every, overlay_refresh};
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    // (members, full-digest interval, refresh with base 30 s, with base 5 min)
    let cases = [
        (0, s(10), s(30), s(300)),
        (3, s(10), s(30), s(300)),
        (250, s(10), s(30), s(300)),
        (300, ms(12_000), s(30), s(300)),
        (1_000, s(40), s(100), s(300)),
        (5_000, s(200), s(500), s(500)),
        (20_000, s(800), s(600), s(600)),
        // Counts past u32::MAX count as u32::MAX (no overflow, no panic).
        (usize::MAX, ms(40 * u64::from(u32::MAX)), s(600), s(600)),
    ];
    for (n, full, refresh, refresh_slow) in cases {
        assert_eq!(full_sync_every(n), full, "full digest, {n} members");
        assert_eq!(overlay_refresh(s(30), n), refresh, "refresh, {n} members");
        assert_eq!(
            overlay_refresh(s(300), n),
            refresh_slow,
            "refresh (base 5 min), {n} members"
        );
    }
    // A full digest costs ~56 bytes per member: per node and second that
    // stays ~1.4 KB from 250 members up.
    for n in [250usize, 1_000, 5_000] {
        let per_s = (n * 56) as f64 / full_sync_every(n).as_secs_f64();
        assert!((1_300.0..=1_450.0).contains(&per_s), "{n}: {per_s}");
    }
}

/// The record-age backstop follows the stretched refresh: a member of a
/// large room that refreshes every 100 s is not suspect after 90 s.
#[test]
fn the_backstop_of_a_large_overlay_room_follows_its_refresh() {
    let base = Instant::now();
    let (mut a, _b, _c) = overlay_room(base);
    assert_eq!(
        a.swim_record_timeouts().suspect_after,
        Duration::from_secs(90)
    );
    // 997 more members that run SWIM (records accepted unsigned).
    for _ in 0..997 {
        let mut m = engine();
        m.set_speaks_swim(true);
        m.refresh(at(base, 0), true);
        let signed = m.own.as_ref().map(|o| o.signed.clone()).expect("own");
        let mut out = Outcome::default();
        a.accept(m.me, signed, at(base, 10), &mut out);
    }
    assert_eq!(a.peers.len(), 999);
    assert!(a.overlay_mode());
    assert_eq!(a.refresh_interval_now(), Duration::from_secs(100));
    let t = a.swim_record_timeouts();
    assert_eq!(t.suspect_after, Duration::from_secs(300));
    assert_eq!(t.dead_after, Duration::from_secs(600));
}

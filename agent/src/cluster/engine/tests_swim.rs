//! The engine's unit tests for members that run SWIM (docs/scale.md steps
//! 1-2): liveness from SWIM's verdict, records on change. Same harness as
//! `tests.rs` (engines in memory, a simulated clock).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::tests::{at, engine, exchange};
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
        a.refresh_interval_now(at(base, 0).mono),
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
    assert_eq!(
        a.refresh_interval_now(at(base, 53_000).mono),
        Duration::from_secs(1)
    );
    let v3 = version(&a);
    assert!(a.refresh(at(base, 54_100), false));
    assert_ne!(version(&a), v3);
}

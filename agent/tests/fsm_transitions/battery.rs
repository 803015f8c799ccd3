//! A UPS battery: runtime and low battery bring the shutdown forward,
//! never later, and go with the power trigger.

use super::*;

/// An observation whose round is down with a UPS on battery.
fn obs_battery(power: Option<bool>, b: Battery, p: PeerView) -> Event {
    Event::Observe(Input {
        battery: Some(b),
        ..match obs_peers(power, p) {
            Event::Observe(i) => i,
            _ => unreachable!(),
        }
    })
}

fn runtime(s: u64) -> Battery {
    Battery {
        urgent: false,
        runtime: Some(Duration::from_secs(s)),
    }
}

const LOW: Battery = Battery {
    urgent: true,
    runtime: None,
};

/// The battery rule, table-driven: the deadline a UPS on battery sets, from
/// a machine and one observation (defaults: grace 300 s, shutdown duration
/// 60 s, floor 15 s after entering `pre_fail`).
#[test]
fn battery_runtime_and_low_battery_bring_the_shutdown_forward() {
    let c = cfg();
    let none = PeerView::default();
    // (name, machine, event, now, state, deadline (s from T0) or none)
    type Row = (&'static str, Machine, Event, i64, State, Option<i64>);
    let rows: Vec<Row> = vec![
        (
            "enters pre_fail: 200 s of battery, the command 60 s before: 140 s",
            normal(),
            obs_battery(Some(false), runtime(200), none),
            0,
            State::PreFail,
            Some(140),
        ),
        (
            "a battery that outlasts the grace changes nothing",
            normal(),
            obs_battery(Some(false), runtime(3600), none),
            0,
            State::PreFail,
            Some(300),
        ),
        (
            "exactly grace + shutdown duration: the grace stands",
            normal(),
            obs_battery(Some(false), runtime(360), none),
            0,
            State::PreFail,
            Some(300),
        ),
        (
            "low battery at the first reading: the floor, 15 s",
            normal(),
            obs_battery(Some(false), LOW, none),
            0,
            State::PreFail,
            Some(15),
        ),
        (
            "runtime below the shutdown duration: the floor",
            normal(),
            obs_battery(Some(false), runtime(30), none),
            0,
            State::PreFail,
            Some(15),
        ),
        (
            "low battery two minutes into the outage: shut down now",
            pre_fail(Reason::Power, 300),
            obs_battery(Some(false), LOW, none),
            120,
            State::Shutdown,
            Some(120),
        ),
        (
            "runtime drops mid-grace: 100 s + 100 - 60",
            pre_fail(Reason::Power, 300),
            obs_battery(Some(false), runtime(100), none),
            100,
            State::PreFail,
            Some(140),
        ),
        (
            "never later: a longer runtime leaves an earlier deadline",
            pre_fail(Reason::Power, 140),
            obs_battery(Some(false), runtime(900), none),
            100,
            State::PreFail,
            Some(140),
        ),
        (
            "mains up (OL): a battery on the input is ignored",
            normal(),
            obs_battery(Some(true), LOW, none),
            0,
            State::Normal,
            None,
        ),
        (
            "peers that probe the UPS see it on mains: local fault, no grace, no battery",
            normal(),
            obs_battery(Some(false), LOW, peers(3, 3, 0)),
            0,
            State::LocalFault,
            None,
        ),
        (
            "unknown round: nothing (the runner gives no battery then; even if it did)",
            normal(),
            Event::Observe(Input {
                power: Some(PowerReading::Unknown),
                battery: Some(LOW),
                ..Input::default()
            }),
            0,
            State::LocalFault,
            None,
        ),
        (
            "no probe on this node: nothing",
            normal(),
            Event::Observe(Input {
                power: None,
                battery: Some(LOW),
                ..Input::default()
            }),
            0,
            State::Normal,
            None,
        ),
        (
            "a cancel holds power: the battery does not start a grace",
            with(normal(), |m| {
                m.hold_until = Some(at(1800));
                m.hold_triggers = Some(vec![Reason::Power]);
            }),
            obs_battery(Some(false), LOW, none),
            10,
            State::Normal,
            None,
        ),
        (
            "pre_fail for cooling, power fine: the battery means nothing",
            pre_fail(Reason::Cooling, 120),
            Event::Observe(Input {
                power: Some(PowerReading::Up),
                thermal: heating(5.0),
                peers: hot_peers(2, 2),
                battery: Some(LOW),
            }),
            10,
            State::PreFail,
            Some(120),
        ),
    ];
    for (name, m, ev, now, state, deadline) in rows {
        let (next, actions) = step(&m, &ev, at(now), &c);
        assert_eq!(next.state, state, "{name}: {next:?}");
        assert_eq!(next.deadline, deadline.map(at), "{name}");
        if state == State::Shutdown {
            assert_eq!(kinds(&actions).last(), Some(&"Run"), "{name}");
        }
    }
}

/// A whole outage on UPS power: the runtime counts down, the deadline
/// stays where the first reading put it (no new transition per probe),
/// and the command starts `shutdown_duration` before the battery is empty.
#[test]
fn a_discharging_ups_shuts_down_shutdown_duration_before_it_is_empty() {
    let c = cfg();
    let mut m = normal();
    let mut transitions = 0;
    let mut t = 0;
    // 240 s of battery at the start, counting down by 5 s a probe (with a
    // one-second wobble of the UPS's estimate).
    while m.state != State::Shutdown {
        let left = 240 - t + if t % 10 == 5 { 1 } else { 0 };
        let (next, actions) = step(
            &m,
            &obs_battery(Some(false), runtime(left as u64), PeerView::default()),
            at(t),
            &c,
        );
        let (next, tick) = step(&next, &Event::Tick, at(t), &c);
        transitions += kinds(&actions).iter().filter(|k| **k == "T").count();
        transitions += kinds(&tick).iter().filter(|k| **k == "T").count();
        m = next;
        t += 5;
        assert!(t < 400, "no shutdown");
    }
    // 240 - 60: due at 180 s, taken at the probe at 180 s.
    assert_eq!(m.since, at(180));
    assert_eq!(transitions, 3, "pre_fail, the battery deadline, shutdown");
}

/// Mains back in the middle of a battery-shortened grace: the usual
/// recovery, no shutdown.
#[test]
fn mains_back_before_the_battery_deadline_recovers() {
    let c = cfg();
    let (m, _) = step(
        &normal(),
        &obs_battery(Some(false), runtime(120), PeerView::default()),
        at(0),
        &c,
    );
    assert_eq!(m.deadline, Some(at(60)));
    let (m, _) = step(&m, &obs(Some(true)), at(50), &c);
    let (m, _) = step(&m, &obs(Some(true)), at(55), &c);
    assert_eq!(m.state, State::Normal);
    assert_eq!(m.deadline, None);
}

/// A prediction that lets go comes back to the battery's deadline, not to
/// the longer grace.
#[test]
fn a_released_prediction_keeps_the_battery_deadline() {
    let c = cfg();
    let (m, _) = step(
        &normal(),
        &obs_battery(Some(false), runtime(260), PeerView::default()),
        at(0),
        &c,
    );
    assert_eq!(m.deadline, Some(at(200)));
    let (m, _) = step(
        &m,
        &obs_thermal(Some(false), ttc(100.0), PeerView::default()),
        at(10),
        &c,
    );
    assert_eq!((m.reason, m.deadline), (Reason::Prediction, Some(at(50))));
    let mut m = m;
    for t in [15, 20, 25] {
        m = step(&m, &obs(Some(false)), at(t), &c).0;
    }
    assert_eq!(m.deadline, Some(at(200)));
}

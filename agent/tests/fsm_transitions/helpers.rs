//! The timer math and verdict helpers as tables, the names that are a
//! contract, config validation, the heating rule, forgetting observations.

use super::*;

#[test]
fn power_verdict_table() {
    use PowerVerdict as V;
    let cases = [
        (None, peers(0, 0, 0), V::Unknown),
        (None, peers(3, 0, 3), V::Unknown),
        (Some(true), peers(0, 0, 0), V::Up),
        (Some(true), peers(3, 0, 3), V::Up),
        (Some(false), peers(0, 0, 0), V::Lost),
        (Some(false), peers(5, 0, 0), V::Lost),
        (Some(false), peers(1, 0, 1), V::Lost),
        (Some(false), peers(1, 1, 0), V::LocalFault),
        (Some(false), peers(2, 1, 1), V::Lost),
        (Some(false), peers(3, 2, 1), V::LocalFault),
        (Some(false), peers(5, 2, 2), V::Lost),
        (
            Some(false),
            peers(u32::MAX, u32::MAX, u32::MAX - 1),
            V::LocalFault,
        ),
    ];
    // An unknown round is a local error whatever the peers say.
    for p in [
        peers(0, 0, 0),
        peers(3, 0, 3),
        peers(3, 3, 0),
        peers(2, 1, 1),
    ] {
        assert_eq!(
            power_verdict(Some(PowerReading::Unknown), &p),
            V::LocalError,
            "{p:?}"
        );
    }
    for (power, p, want) in cases {
        assert_eq!(
            power_verdict(power.map(PowerReading::from), &p),
            want,
            "{power:?} {p:?}"
        );
    }
}

#[test]
fn cooling_quorum_table() {
    // (fresh nodes incl. self, min, quorum)
    for (nodes, min, want) in [
        (1, 2, 2),
        (2, 2, 2),
        (3, 2, 2),
        (4, 2, 3),
        (5, 2, 3),
        (10, 2, 6),
        (1, 1, 1),
        (3, 4, 4),
    ] {
        assert_eq!(cooling_quorum(nodes, min), want, "{nodes} nodes, min {min}");
    }
}

#[test]
fn remaining_grace_table() {
    for (deadline, now, want) in [(300, 0, 300), (300, 299, 1), (300, 300, 0), (300, 400, 0)] {
        assert_eq!(
            remaining_grace(at(deadline), at(now)),
            Duration::from_secs(want)
        );
    }
}

#[test]
fn predicted_deadline_table() {
    let d = Duration::from_secs(60);
    // (now, deadline, ttc, floor, expected), times in seconds from T0
    type Row = (i64, i64, Option<f64>, i64, Option<i64>);
    #[rustfmt::skip]
    let cases: &[Row] = &[
        // The numbers: 10 C/min, 30 C headroom = 180 s; 5 min grace.
        (0, 300, Some(180.0), 0, Some(120)),
        (60, 300, Some(120.0), 0, Some(120)),
        (0, 300, Some(360.0), 0, None),      // exactly enough time
        (0, 300, Some(359.0), 0, Some(299)),
        (0, 300, Some(359.5), 0, None),      // less than a second earlier: noise
        (0, 300, Some(1000.0), 0, None),
        (0, 300, None, 0, None),
        (0, 300, Some(f64::NAN), 0, None),
        (0, 300, Some(f64::INFINITY), 0, None),
        (0, 300, Some(-5.0), 0, None),
        (0, 300, Some(30.0), 0, Some(0)),    // less than a shutdown takes: now
        (0, 300, Some(0.0), 15, Some(15)),   // never before the floor
        (0, 100, Some(150.0), 0, Some(90)),
        (0, 80, Some(150.0), 0, None),       // already earlier than predicted
        (200, 150, Some(10.0), 0, None),     // deadline passed: nothing earlier
    ];
    for &(now, deadline, ttc, floor, want) in cases {
        let got = predicted_deadline(at(now), at(deadline), ttc, d, at(floor));
        assert_eq!(
            got,
            want.map(at),
            "now {now} deadline {deadline} ttc {ttc:?} floor {floor}"
        );
    }
}

#[test]
fn effective_deadline_table() {
    let cfg = cfg();
    let p = pre_fail(Reason::Power, 300);
    assert_eq!(p.effective_deadline(&cfg), Some(at(300)));
    let recovering = Machine {
        good_streak: 1,
        last_observed: Some(at(298)),
        ..p.clone()
    };
    assert_eq!(
        recovering.effective_deadline(&cfg),
        Some(Millis(at(298).0 + 7500))
    );
    let early = Machine {
        good_streak: 1,
        last_observed: Some(at(100)),
        ..p.clone()
    };
    assert_eq!(early.effective_deadline(&cfg), Some(at(300)));
    assert_eq!(normal().effective_deadline(&cfg), None);
    assert_eq!(maintenance(600).next_wake(&cfg), Some(at(600)));
    assert_eq!(p.next_wake(&cfg), Some(at(300)));
    assert_eq!(local_fault().next_wake(&cfg), None);
}

#[test]
fn exec_record_resume_table() {
    let fresh = ExecRecord::default();
    assert_eq!(fresh.resume(), Resume::Run);
    let mut r = fresh.clone();
    r.begin_attempt(at(1));
    assert!(r.issued && r.in_flight);
    assert_eq!(r.resume(), Resume::OutcomeUnknown);
    r.finish_attempt(Err("exit 1".into()));
    assert_eq!(r.resume(), Resume::Retry { failures: 1 });
    r.begin_attempt(at(6));
    assert_eq!(r.resume(), Resume::OutcomeUnknown);
    r.finish_attempt(Ok(()));
    assert_eq!(r.resume(), Resume::Nothing);
    assert_eq!(
        (r.attempts, r.failures, r.last_error.as_deref()),
        (2, 1, None)
    );
}

#[test]
fn names_are_the_contract() {
    let states: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        states,
        [
            "normal",
            "pre_fail",
            "shutdown",
            "local_fault",
            "maintenance"
        ]
    );
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "none",
            "power",
            "cooling",
            "overheat",
            "prediction",
            "operator"
        ]
    );
    for s in State::ALL {
        assert_eq!(serde_json::to_string(&s).expect("json"), format!("\"{s}\""));
    }
    for r in Reason::ALL {
        assert_eq!(serde_json::to_string(&r).expect("json"), format!("\"{r}\""));
    }
}

#[test]
fn millis_arithmetic_saturates_and_displays() {
    assert_eq!(Millis(5).minus(Duration::from_secs(1)), Millis(0));
    assert_eq!(
        Millis(u64::MAX).plus(Duration::from_secs(1)),
        Millis(u64::MAX)
    );
    assert_eq!(Millis(1000).since(Millis(3000)), Duration::ZERO);
    assert_eq!(at(0).to_string(), "2023-11-14T22:13:20.000Z");
    assert_eq!(Millis::from_system_time(at(7).to_system_time()), at(7));
    assert_eq!(serde_json::to_string(&Millis(42)).expect("json"), "42");
}

#[test]
fn config_validation() {
    assert!(cfg().validate().is_ok());
    let bad = [
        FsmConfig {
            power_grace: Duration::ZERO,
            ..cfg()
        },
        FsmConfig {
            recovery_probes: 0,
            ..cfg()
        },
        FsmConfig {
            cooling_quorum_min: 0,
            ..cfg()
        },
        FsmConfig {
            heating_fast_c_per_min: f64::NAN,
            ..cfg()
        },
        FsmConfig {
            heating_fast_c_per_min: 0.0,
            ..cfg()
        },
        FsmConfig {
            observe_interval: Duration::ZERO,
            ..cfg()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

#[test]
fn heating_rule() {
    let c = cfg();
    assert!(c.is_heating(&critical()));
    assert!(c.is_heating(&heating(3.0)));
    assert!(!c.is_heating(&heating(2.9)));
    assert!(!c.is_heating(&ThermalSummary::default()));
    // A fast trend alone (a workload step) is no vote any more: only the
    // detector's sustained-rise verdict or a sensor at critical.
    let burst = ThermalSummary {
        trend_celsius_per_minute: Some(60.0),
        ..ThermalSummary::default()
    };
    assert!(!c.is_heating(&burst));
}

#[test]
fn forget_observations_keeps_decisions() {
    let mut m = Machine {
        good_streak: 1,
        last_observed: Some(at(5)),
        last_power: Some(PowerReading::Down),
        overheat_since: Some(at(1)),
        hold_until: Some(at(99)),
        ..pre_fail(Reason::Power, 300)
    };
    m.forget_observations();
    assert_eq!(m.last_power, None, "a restarted agent probes again first");
    assert_eq!(
        (m.state, m.deadline, m.hold_until),
        (State::PreFail, Some(at(300)), Some(at(99)))
    );
    assert_eq!(
        (
            m.good_streak,
            m.last_observed,
            m.power_lost_since,
            m.overheat_since
        ),
        (0, None, None, None)
    );
}

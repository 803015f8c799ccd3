//! The transition table: one row per (state, event, condition), the order
//! of the shutdown actions, the numbers in a transition's detail.

use super::*;

struct Case {
    name: &'static str,
    m: Machine,
    ev: Event,
    now: Millis,
    state: State,
    reason: Reason,
    actions: &'static [&'static str],
    check: fn(&Machine),
}

fn case(
    name: &'static str,
    m: Machine,
    ev: Event,
    now: Millis,
    state: State,
    reason: Reason,
    actions: &'static [&'static str],
) -> Case {
    Case {
        name,
        m,
        ev,
        now,
        state,
        reason,
        actions,
        check: |_| {},
    }
}

impl Case {
    fn check(mut self, f: fn(&Machine)) -> Case {
        self.check = f;
        self
    }
}

const ENTER: &[&str] = &["T", "P", "N"];
const NONE: &[&str] = &[];
const SHUTDOWN: &[&str] = &["T", "P", "N", "Pre", "Run"];

/// One row per (state, event, condition). Times are seconds from T0.
#[rustfmt::skip]
fn table() -> Vec<Case> {
    use Reason as R;
    use State as S;
    let recovering = |m: &mut Machine| {
        m.good_streak = 1;
        m.last_observed = Some(at(298));
    };
    vec![
        // ---- normal ----
        case("normal: probe down, no peers: trust own probe", normal(), obs(Some(false)), at(10), S::PreFail, R::Power, ENTER)
            .check(|m| { assert_eq!(m.deadline, Some(at(310))); assert_eq!(m.since, at(10)); }),
        case("normal: probe down, peers agree", normal(), obs_peers(Some(false), peers(3, 0, 3)), at(10), S::PreFail, R::Power, ENTER),
        case("normal: probe down, peers tie: lost", normal(), obs_peers(Some(false), peers(2, 1, 1)), at(10), S::PreFail, R::Power, ENTER),
        case("normal: probe down, peers without probes: trust own", normal(), obs_peers(Some(false), peers(3, 0, 0)), at(10), S::PreFail, R::Power, ENTER),
        case("normal: probe down, majority of peers up: local fault", normal(), obs_peers(Some(false), peers(3, 2, 1)), at(10), S::LocalFault, R::Power, ENTER)
            .check(|m| assert_eq!(m.deadline, None)),
        case("normal: probe up, peers down: own probe wins", normal(), obs_peers(Some(true), peers(3, 0, 3)), at(10), S::Normal, R::None, NONE),
        case("normal: no probe configured", normal(), obs_peers(None, peers(3, 0, 3)), at(10), S::Normal, R::None, NONE),
        case("normal: cooling quorum with self", normal(), obs_thermal(Some(true), heating(5.0), hot_peers(2, 1)), at(10), S::PreFail, R::Cooling, ENTER)
            .check(|m| assert_eq!(m.deadline, Some(at(130)))),
        case("normal: cooling quorum of peers, self cool", normal(), obs_thermal(Some(true), ThermalSummary::default(), hot_peers(2, 2)), at(10), S::PreFail, R::Cooling, ENTER),
        case("normal: two of four heating is no quorum", normal(), obs_thermal(Some(true), heating(5.0), hot_peers(3, 1)), at(10), S::Normal, R::None, NONE),
        case("normal: lone node heating fast is no quorum", normal(), obs_thermal(Some(true), heating(20.0), PeerView::default()), at(10), S::Normal, R::None, NONE),
        case("normal: critical, first seen", normal(), obs_thermal(Some(true), critical(), PeerView::default()), at(10), S::Normal, R::None, NONE)
            .check(|m| assert_eq!(m.overheat_since, Some(at(10)))),
        case("normal: critical shorter than sustain", with(normal(), |m| m.overheat_since = Some(at(0))), obs_thermal(Some(true), critical(), PeerView::default()), at(29), S::Normal, R::None, NONE),
        case("normal: critical for the sustain: overheat", with(normal(), |m| m.overheat_since = Some(at(0))), obs_thermal(Some(true), critical(), PeerView::default()), at(30), S::PreFail, R::Overheat, ENTER)
            .check(|m| assert_eq!(m.deadline, Some(at(90)))),
        case("normal: a cool reading resets the sustain", with(normal(), |m| m.overheat_since = Some(at(0))), obs(Some(true)), at(30), S::Normal, R::None, NONE)
            .check(|m| assert_eq!(m.overheat_since, None)),
        case("normal: cancel hold keeps pre_fail away", with(normal(), |m| m.hold_until = Some(at(100))), obs(Some(false)), at(99), S::Normal, R::None, NONE),
        case("normal: hold over: pre_fail with a fresh grace", with(normal(), |m| { m.hold_until = Some(at(100)); m.power_lost_since = Some(at(0)); }), obs(Some(false)), at(100), S::PreFail, R::Power, ENTER)
            .check(|m| { assert_eq!(m.deadline, Some(at(400))); assert_eq!(m.hold_until, None); }),
        case("normal: during the hold a local fault is still reported", with(normal(), |m| m.hold_until = Some(at(100))), obs_peers(Some(false), peers(3, 3, 0)), at(50), S::LocalFault, R::Power, ENTER),
        case("normal: maintenance", normal(), Event::Maintenance { until: at(600) }, at(10), S::Maintenance, R::Operator, ENTER)
            .check(|m| assert_eq!(m.maintenance_until, Some(at(600)))),
        case("normal: maintenance in the past is ignored", normal(), Event::Maintenance { until: at(5) }, at(10), S::Normal, R::None, NONE),
        case("normal: cancel is a no-op", normal(), Event::Cancel, at(10), S::Normal, R::None, NONE),
        case("normal: end maintenance is a no-op", normal(), Event::EndMaintenance, at(10), S::Normal, R::None, NONE),
        case("normal: tick", normal(), Event::Tick, at(10), S::Normal, R::None, NONE),
        case("normal: an observation keeps the own probe result", normal(), obs(Some(true)), at(10), S::Normal, R::None, NONE)
            .check(|m| assert_eq!(m.last_power, Some(PowerReading::Up))),
        // ---- unknown probe rounds (local errors only: EMFILE, ...) ----
        case("normal: unknown round, no peers: local fault, not a loss", normal(), obs_unknown(PeerView::default()), at(10), S::LocalFault, R::Power, ENTER)
            .check(|m| { assert_eq!(m.deadline, None); assert_eq!(m.power_lost_since, None); assert_eq!(m.last_power, Some(PowerReading::Unknown)); assert!(m.detail.contains("local error"), "{}", m.detail); }),
        case("normal: unknown round, every peer down: still a local fault", normal(), obs_unknown(peers(4, 0, 4)), at(10), S::LocalFault, R::Power, ENTER),
        case("normal: unknown round, peers up: local fault", normal(), obs_unknown(peers(4, 4, 0)), at(10), S::LocalFault, R::Power, ENTER),
        case("normal: unknown round does not blind the cooling trigger", normal(), obs_unknown_thermal(heating(5.0), hot_peers(2, 1)), at(10), S::PreFail, R::Cooling, ENTER),
        case("local_fault: unknown round does not count toward recovery", with(local_fault(), |m| m.good_streak = 1), obs_unknown(PeerView::default()), at(55), S::LocalFault, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 0)),
        case("local_fault: unknown round with peers down: no pre_fail", local_fault(), obs_unknown(peers(3, 0, 3)), at(55), S::LocalFault, R::Power, NONE),
        case("local_fault: good probes after unknown rounds: normal", with(local_fault(), |m| m.good_streak = 1), obs(Some(true)), at(60), S::Normal, R::Power, ENTER),
        case("pre_fail(power): unknown round breaks a recovery", with(pre_fail(R::Power, 300), |m| m.good_streak = 1), obs_unknown(peers(3, 3, 0)), at(100), S::PreFail, R::Power, NONE)
            .check(|m| { assert_eq!(m.good_streak, 0); assert_eq!(m.deadline, Some(at(300))); }),
        case("pre_fail(power): unknown rounds never recover it", with(pre_fail(R::Power, 300), |m| m.good_streak = 0), obs_unknown(PeerView::default()), at(100), S::PreFail, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 0)),
        case("pre_fail(power): unknown round after the deadline: shutdown", pre_fail(R::Power, 300), obs_unknown(PeerView::default()), at(301), S::Shutdown, R::Power, SHUTDOWN),
        case("pre_fail(cooling): cooled down, probe unknown: one", pre_fail(R::Cooling, 120), obs_unknown(PeerView::default()), at(20), S::PreFail, R::Cooling, NONE)
            .check(|m| assert_eq!(m.good_streak, 1)),
        case("pre_fail(cooling): cooled down twice, probe unknown: local fault", with(pre_fail(R::Cooling, 120), |m| m.good_streak = 1), obs_unknown(PeerView::default()), at(25), S::LocalFault, R::Power, ENTER),
        case("maintenance: unknown round is held", maintenance(600), obs_unknown(PeerView::default()), at(100), S::Maintenance, R::Operator, NONE),
        // ---- peer view changes (not observations) ----
        case("local_fault: peers now corroborate the loss: pre_fail at once", with(local_fault(), |m| m.last_power = Some(PowerReading::Down)), peers_changed(peers(3, 0, 3)), at(51), S::PreFail, R::Power, ENTER)
            .check(|m| { assert_eq!(m.deadline, Some(at(351)), "grace from the corroboration"); assert_eq!(m.power_lost_since, Some(at(51))); assert_eq!(m.since, at(51)); assert!(m.detail.contains("peer view changed"), "{}", m.detail); }),
        case("local_fault: peers tie: a loss, pre_fail", with(local_fault(), |m| m.last_power = Some(PowerReading::Down)), peers_changed(peers(2, 1, 1)), at(51), S::PreFail, R::Power, ENTER),
        case("local_fault: peers still see power: stays", with(local_fault(), |m| m.last_power = Some(PowerReading::Down)), peers_changed(peers(3, 2, 1)), at(51), S::LocalFault, R::Power, NONE),
        case("local_fault: own probe unknown: peers' losses corroborate nothing", with(local_fault(), |m| m.last_power = Some(PowerReading::Unknown)), peers_changed(peers(3, 0, 3)), at(51), S::LocalFault, R::Power, NONE),
        case("local_fault: no own probe yet: nothing", local_fault(), peers_changed(peers(3, 0, 3)), at(51), S::LocalFault, R::Power, NONE),
        case("local_fault: peer change never counts toward recovery", with(local_fault(), |m| { m.last_power = Some(PowerReading::Up); m.good_streak = 1; }), peers_changed(peers(3, 3, 0)), at(51), S::LocalFault, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 1)),
        case("normal: own probe up, peers down: own probe wins", with(normal(), |m| m.last_power = Some(PowerReading::Up)), peers_changed(peers(3, 0, 3)), at(10), S::Normal, R::None, NONE),
        case("normal: held after a cancel: no pre_fail", with(normal(), |m| { m.last_power = Some(PowerReading::Down); m.hold_until = Some(at(100)); }), peers_changed(peers(3, 0, 3)), at(50), S::Normal, R::None, NONE),
        case("pre_fail: corroborated again: a recovery in progress restarts", with(pre_fail(R::Power, 300), |m| { m.last_power = Some(PowerReading::Down); m.good_streak = 1; }), peers_changed(peers(3, 0, 3)), at(100), S::PreFail, R::Power, NONE)
            .check(|m| { assert_eq!(m.good_streak, 0); assert_eq!(m.deadline, Some(at(300)), "never later"); }),
        case("pre_fail: peers see power again: not a recovery", with(pre_fail(R::Power, 300), |m| { m.last_power = Some(PowerReading::Down); m.good_streak = 1; }), peers_changed(peers(3, 3, 0)), at(100), S::PreFail, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 1)),
        case("pre_fail: own probe up: peers change nothing", with(pre_fail(R::Power, 300), |m| { m.last_power = Some(PowerReading::Up); m.good_streak = 1; }), peers_changed(peers(3, 0, 3)), at(100), S::PreFail, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 1)),
        case("pre_fail: after the deadline a peer change leaves it to the tick", with(pre_fail(R::Power, 300), |m| m.last_power = Some(PowerReading::Down)), peers_changed(peers(3, 0, 3)), at(301), S::PreFail, R::Power, NONE),
        case("maintenance: peer change is held", with(maintenance(600), |m| m.last_power = Some(PowerReading::Down)), peers_changed(peers(3, 0, 3)), at(100), S::Maintenance, R::Operator, NONE),
        case("shutdown: peer change", with(shutdown(), |m| m.last_power = Some(PowerReading::Down)), peers_changed(peers(3, 0, 3)), at(400), S::Shutdown, R::Power, NONE),
        // ---- pre_fail ----
        case("pre_fail: still down", pre_fail(R::Power, 300), obs(Some(false)), at(100), S::PreFail, R::Power, NONE)
            .check(|m| assert_eq!(m.deadline, Some(at(300)))),
        case("pre_fail: one good probe is not enough", pre_fail(R::Power, 300), obs(Some(true)), at(100), S::PreFail, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 1)),
        case("pre_fail: a bad probe resets the streak", with(pre_fail(R::Power, 300), |m| m.good_streak = 1), obs(Some(false)), at(100), S::PreFail, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 0)),
        case("pre_fail: N good probes: normal", with(pre_fail(R::Power, 300), |m| m.good_streak = 1), obs(Some(true)), at(105), S::Normal, R::Power, ENTER)
            .check(|m| assert_eq!(m.deadline, None)),
        case("pre_fail: recovered as far as peers tell: local fault", with(pre_fail(R::Power, 300), |m| m.good_streak = 1), obs_peers(Some(false), peers(3, 3, 0)), at(105), S::LocalFault, R::Power, ENTER),
        case("pre_fail(prediction): recovery names the trigger", with(pre_fail(R::Power, 300), |m| { m.reason = Reason::Prediction; m.good_streak = 1; }), obs(Some(true)), at(105), S::Normal, R::Power, ENTER)
            .check(|m| assert_eq!(m.trigger, Reason::None)),
        case("pre_fail(cooling): quorum gone twice: normal", with(pre_fail(R::Cooling, 120), |m| m.good_streak = 1), obs(Some(true)), at(20), S::Normal, R::Cooling, ENTER),
        case("pre_fail: tick before the deadline", pre_fail(R::Power, 300), Event::Tick, at(299), S::PreFail, R::Power, NONE),
        case("pre_fail: tick at the deadline: shutdown", pre_fail(R::Power, 300), Event::Tick, at(300), S::Shutdown, R::Power, SHUTDOWN)
            .check(|m| { assert_eq!(m.deadline, Some(at(300))); assert_eq!(m.since, at(300)); }),
        case("pre_fail: good probe after the deadline is too late", pre_fail(R::Power, 300), obs(Some(true)), at(301), S::Shutdown, R::Power, SHUTDOWN),
        case("pre_fail: recovery in progress holds a due deadline", with(pre_fail(R::Power, 300), recovering), Event::Tick, at(305), S::PreFail, R::Power, NONE),
        case("pre_fail: recovery in progress, next probe overdue: shutdown", with(pre_fail(R::Power, 300), recovering), Event::Tick, at(306), S::Shutdown, R::Power, SHUTDOWN),
        case("pre_fail: recovery completes after the deadline", with(pre_fail(R::Power, 300), recovering), obs(Some(true)), at(303), S::Normal, R::Power, ENTER),
        case("pre_fail: recovery broken after the deadline: shutdown", with(pre_fail(R::Power, 300), recovering), obs(Some(false)), at(303), S::Shutdown, R::Power, SHUTDOWN),
        case("pre_fail: prediction moves the deadline earlier", pre_fail(R::Power, 300), obs_thermal(Some(false), ttc(170.0), PeerView::default()), at(10), S::PreFail, R::Prediction, ENTER)
            .check(|m| assert_eq!(m.deadline, Some(at(120)))),
        case("pre_fail: prediction with enough time does nothing", pre_fail(R::Power, 300), obs_thermal(Some(false), ttc(360.0), PeerView::default()), at(10), S::PreFail, R::Power, NONE),
        case("pre_fail: prediction leaves no time: shutdown now", pre_fail(R::Power, 300), obs_thermal(Some(false), ttc(30.0), PeerView::default()), at(20), S::Shutdown, R::Prediction, &["T", "T", "P", "N", "Pre", "Run"]),
        case("pre_fail: prediction respects the floor after entering", pre_fail(R::Power, 300), obs_thermal(Some(false), ttc(0.0), PeerView::default()), at(5), S::PreFail, R::Prediction, ENTER)
            .check(|m| assert_eq!(m.deadline, Some(at(15)))),
        case("pre_fail(overheat): no prediction at critical", with(pre_fail(R::Overheat, 60), |m| m.overheat_since = Some(at(-30))), obs_thermal(Some(true), critical(), PeerView::default()), at(10), S::PreFail, R::Overheat, NONE)
            .check(|m| assert_eq!(m.deadline, Some(at(60)))),
        case("pre_fail(power): overheat's shorter grace takes over", with(pre_fail(R::Power, 300), |m| m.overheat_since = Some(at(0))), obs_thermal(Some(false), critical(), PeerView::default()), at(30), S::PreFail, R::Overheat, ENTER)
            .check(|m| assert_eq!(m.deadline, Some(at(90)))),
        case("pre_fail(overheat): a later power loss never delays it", with(pre_fail(R::Overheat, 60), |m| m.overheat_since = Some(at(-30))), obs_thermal(Some(false), critical(), PeerView::default()), at(10), S::PreFail, R::Overheat, NONE)
            .check(|m| assert_eq!(m.deadline, Some(at(60)))),
        case("pre_fail: cancel: normal plus hold", pre_fail(R::Power, 300), Event::Cancel, at(60), S::Normal, R::Operator, ENTER)
            .check(|m| { assert_eq!(m.hold_until, Some(at(60 + 1800))); assert_eq!(m.deadline, None); }),
        case("pre_fail: maintenance", pre_fail(R::Power, 300), Event::Maintenance { until: at(600) }, at(60), S::Maintenance, R::Operator, ENTER)
            .check(|m| assert_eq!(m.deadline, None)),
        case("pre_fail: end maintenance is a no-op", pre_fail(R::Power, 300), Event::EndMaintenance, at(60), S::PreFail, R::Power, NONE),
        // ---- local_fault ----
        case("local_fault: peers now agree: pre_fail", local_fault(), obs_peers(Some(false), peers(3, 0, 3)), at(50), S::PreFail, R::Power, ENTER)
            .check(|m| assert_eq!(m.deadline, Some(at(350)))),
        case("local_fault: still a local fault", local_fault(), obs_peers(Some(false), peers(3, 3, 0)), at(50), S::LocalFault, R::Power, NONE),
        case("local_fault: one good probe", local_fault(), obs(Some(true)), at(50), S::LocalFault, R::Power, NONE)
            .check(|m| assert_eq!(m.good_streak, 1)),
        case("local_fault: N good probes: normal", with(local_fault(), |m| m.good_streak = 1), obs(Some(true)), at(55), S::Normal, R::Power, ENTER),
        case("local_fault: overheat: pre_fail", with(local_fault(), |m| m.overheat_since = Some(at(0))), obs_thermal(Some(false), critical(), peers(3, 3, 0)), at(30), S::PreFail, R::Overheat, ENTER),
        case("local_fault: maintenance", local_fault(), Event::Maintenance { until: at(600) }, at(50), S::Maintenance, R::Operator, ENTER),
        case("local_fault: cancel is a no-op", local_fault(), Event::Cancel, at(50), S::LocalFault, R::Power, NONE),
        // ---- maintenance ----
        case("maintenance: power loss is held", maintenance(600), obs(Some(false)), at(100), S::Maintenance, R::Operator, NONE),
        case("maintenance: overheat is held", with(maintenance(600), |m| m.overheat_since = Some(at(0))), obs_thermal(Some(false), critical(), PeerView::default()), at(100), S::Maintenance, R::Operator, NONE),
        case("maintenance: tick before the end", maintenance(600), Event::Tick, at(599), S::Maintenance, R::Operator, NONE),
        case("maintenance: tick at the end: normal", maintenance(600), Event::Tick, at(600), S::Normal, R::Operator, ENTER)
            .check(|m| assert_eq!(m.maintenance_until, None)),
        case("maintenance: ended, still down: pre_fail with a fresh grace", with(maintenance(600), |m| m.power_lost_since = Some(at(100))), obs(Some(false)), at(601), S::PreFail, R::Power, &["T", "T", "P", "N"])
            .check(|m| assert_eq!(m.deadline, Some(at(901)))),
        case("maintenance: ended by operator", maintenance(600), Event::EndMaintenance, at(100), S::Normal, R::Operator, ENTER),
        case("maintenance: extended", maintenance(600), Event::Maintenance { until: at(1200) }, at(100), S::Maintenance, R::Operator, ENTER)
            .check(|m| { assert_eq!(m.maintenance_until, Some(at(1200))); assert_eq!(m.since, at(0), "extending is not re-entering"); }),
        case("maintenance: cancel is a no-op", maintenance(600), Event::Cancel, at(100), S::Maintenance, R::Operator, NONE),
        // ---- shutdown: terminal ----
        case("shutdown: observe", shutdown(), obs(Some(true)), at(400), S::Shutdown, R::Power, NONE),
        case("shutdown: tick", shutdown(), Event::Tick, at(400), S::Shutdown, R::Power, NONE),
        case("shutdown: cancel", shutdown(), Event::Cancel, at(400), S::Shutdown, R::Power, NONE),
        case("shutdown: maintenance", shutdown(), Event::Maintenance { until: at(900) }, at(400), S::Shutdown, R::Power, NONE),
        case("shutdown: end maintenance", shutdown(), Event::EndMaintenance, at(400), S::Shutdown, R::Power, NONE),
    ]
}

#[test]
fn every_transition() {
    let cfg = cfg();
    let mut seen = BTreeSet::new();
    for c in table() {
        let (m, actions) = step(&c.m, &c.ev, c.now, &cfg);
        assert_eq!(m.state, c.state, "{}: state", c.name);
        assert_eq!(m.reason, c.reason, "{}: reason", c.name);
        assert_eq!(
            kinds(&actions),
            c.actions,
            "{}: actions {actions:?}",
            c.name
        );
        for a in &actions {
            if let Action::Transition {
                from, to, detail, ..
            } = a
            {
                assert!(
                    !detail.is_empty(),
                    "{}: every transition explains itself",
                    c.name
                );
                seen.insert((from.as_str(), to.as_str()));
            }
        }
        if m.state == State::PreFail {
            assert!(
                m.deadline.is_some(),
                "{}: pre_fail without a deadline",
                c.name
            );
        }
        (c.check)(&m);
    }
    let expected: BTreeSet<(&str, &str)> = [
        ("normal", "pre_fail"),
        ("normal", "local_fault"),
        ("normal", "maintenance"),
        ("pre_fail", "pre_fail"),
        ("pre_fail", "normal"),
        ("pre_fail", "local_fault"),
        ("pre_fail", "shutdown"),
        ("pre_fail", "maintenance"),
        ("local_fault", "normal"),
        ("local_fault", "pre_fail"),
        ("local_fault", "maintenance"),
        ("maintenance", "normal"),
        ("maintenance", "maintenance"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        seen, expected,
        "the table must cover every transition, and only those"
    );
}

#[test]
fn shutdown_actions_are_ordered() {
    let (_, actions) = step(&pre_fail(Reason::Power, 300), &Event::Tick, at(300), &cfg());
    assert!(matches!(
        actions.as_slice(),
        [
            Action::Transition {
                from: State::PreFail,
                to: State::Shutdown,
                reason: Reason::Power,
                ..
            },
            Action::Persist,
            Action::NotifyPeers,
            Action::RunPreCommand,
            Action::RunShutdown
        ]
    ));
}

#[test]
fn transition_details_carry_the_numbers() {
    let (m, actions) = step(
        &normal(),
        &obs_peers(Some(false), peers(3, 1, 2)),
        at(10),
        &cfg(),
    );
    let Some(Action::Transition { detail, .. }) = actions.first() else {
        panic!("{actions:?}")
    };
    assert_eq!(detail, &m.detail);
    assert!(detail.contains("2 down / 1 up"), "{detail}");
    assert!(detail.contains("grace 5m"), "{detail}");
    let (_, actions) = step(
        &pre_fail(Reason::Power, 300),
        &obs_thermal(Some(false), ttc(170.0), PeerView::default()),
        at(10),
        &cfg(),
    );
    let Some(Action::Transition { detail, .. }) = actions.first() else {
        panic!("{actions:?}")
    };
    assert!(detail.contains("time to critical 170s"), "{detail}");
    assert!(detail.contains("shutdown duration 1m"), "{detail}");
}

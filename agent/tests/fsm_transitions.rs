//! Table-driven tests of the pure state machine: every transition, the
//! timer math helpers, and properties over random event sequences.

use coolmesh_agent::fsm::*;
use coolmesh_agent::thermal::ThermalSummary;
use std::collections::BTreeSet;
use std::time::Duration;

const T0: u64 = 1_700_000_000_000;

/// `T0 + s` seconds (s may be negative).
fn at(s: i64) -> Millis {
    Millis(T0.saturating_add_signed(s * 1000))
}

fn cfg() -> FsmConfig {
    FsmConfig::default()
}

fn input(power: Option<bool>) -> Input {
    Input {
        power: power.map(PowerReading::from),
        ..Input::default()
    }
}

fn peers(fresh: u32, up: u32, down: u32) -> PeerView {
    PeerView {
        fresh_peers: fresh,
        power_up: up,
        power_down: down,
        overheating: 0,
        ..PeerView::default()
    }
}

fn hot_peers(fresh: u32, overheating: u32) -> PeerView {
    PeerView {
        fresh_peers: fresh,
        overheating,
        ..PeerView::default()
    }
}

fn obs(power: Option<bool>) -> Event {
    Event::Observe(input(power))
}

fn obs_peers(power: Option<bool>, p: PeerView) -> Event {
    Event::Observe(Input {
        peers: p,
        ..input(power)
    })
}

fn obs_thermal(power: Option<bool>, thermal: ThermalSummary, p: PeerView) -> Event {
    Event::Observe(Input {
        power: power.map(PowerReading::from),
        thermal,
        peers: p,
        battery: None,
    })
}

/// An observation whose probe round is unknown (local errors only).
fn obs_unknown(p: PeerView) -> Event {
    Event::Observe(Input {
        power: Some(PowerReading::Unknown),
        peers: p,
        ..Input::default()
    })
}

fn obs_unknown_thermal(thermal: ThermalSummary, p: PeerView) -> Event {
    Event::Observe(Input {
        power: Some(PowerReading::Unknown),
        thermal,
        peers: p,
        battery: None,
    })
}

fn peers_changed(p: PeerView) -> Event {
    Event::PeersChanged(p)
}

/// A node whose cooling detector saw a sustained rise of `trend` C/min: it
/// votes when the rise is at least the default heating rate (3 C/min). How
/// the vote is reached is `heating.rs`'s business and tested there.
fn heating(trend: f64) -> ThermalSummary {
    ThermalSummary {
        trend_celsius_per_minute: Some(trend),
        cooling_vote: trend >= 3.0,
        ..ThermalSummary::default()
    }
}

fn critical() -> ThermalSummary {
    ThermalSummary {
        hottest_celsius: Some(101.0),
        headroom_celsius: Some(-1.0),
        time_to_critical_seconds: Some(0.0),
        critical: true,
        ..ThermalSummary::default()
    }
}

fn ttc(secs: f64) -> ThermalSummary {
    ThermalSummary {
        time_to_critical_seconds: Some(secs),
        trend_celsius_per_minute: Some(10.0),
        ..ThermalSummary::default()
    }
}

fn normal() -> Machine {
    Machine::new(at(0))
}

fn pre_fail(reason: Reason, deadline: i64) -> Machine {
    Machine {
        state: State::PreFail,
        reason,
        trigger: reason,
        since: at(0),
        deadline: Some(at(deadline)),
        power_lost_since: (reason == Reason::Power).then(|| at(0)),
        ..Machine::default()
    }
}

fn local_fault() -> Machine {
    Machine {
        state: State::LocalFault,
        reason: Reason::Power,
        since: at(0),
        ..Machine::default()
    }
}

fn maintenance(until: i64) -> Machine {
    Machine {
        state: State::Maintenance,
        reason: Reason::Operator,
        since: at(0),
        maintenance_until: Some(at(until)),
        ..Machine::default()
    }
}

fn shutdown() -> Machine {
    Machine {
        state: State::Shutdown,
        reason: Reason::Power,
        since: at(300),
        deadline: Some(at(300)),
        ..Machine::default()
    }
}

fn with(mut m: Machine, f: fn(&mut Machine)) -> Machine {
    f(&mut m);
    m
}

/// Action kinds, short: T, P, N, Pre, Run.
fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::Transition { .. } => "T",
            Action::Persist => "P",
            Action::NotifyPeers => "N",
            Action::RunPreCommand => "Pre",
            Action::RunShutdown => "Run",
        })
        .collect()
}

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
fn prediction_does_not_apply_in_normal() {
    // A CPU burst projecting critical in 20 s, power fine: nothing.
    let (m, actions) = step(
        &normal(),
        &obs_thermal(Some(true), ttc(20.0), PeerView::default()),
        at(10),
        &cfg(),
    );
    assert_eq!(m.state, State::Normal);
    assert!(actions.is_empty());
}

#[test]
fn disabled_prediction_keeps_the_grace() {
    let c = FsmConfig {
        prediction: false,
        ..cfg()
    };
    let (m, _) = step(
        &pre_fail(Reason::Power, 300),
        &obs_thermal(Some(false), ttc(30.0), PeerView::default()),
        at(20),
        &c,
    );
    assert_eq!((m.state, m.deadline), (State::PreFail, Some(at(300))));
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

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        let thermal = (
            any::<bool>(),
            prop::option::of(0.0f64..400.0),
            prop::option::of(-5.0f64..30.0),
        )
            .prop_map(|(critical, ttc, trend)| ThermalSummary {
                critical,
                time_to_critical_seconds: ttc,
                trend_celsius_per_minute: trend,
                ..ThermalSummary::default()
            });
        let peer_view = (0u32..6, 0u32..6, 0u32..6, 0u32..6).prop_map(|(f, u, d, o)| {
            let up = u.min(f);
            PeerView {
                fresh_peers: f,
                power_up: up,
                power_down: d.min(f - up),
                overheating: o.min(f),
                ..PeerView::default()
            }
        });
        let reading = prop_oneof![
            Just(PowerReading::Up),
            Just(PowerReading::Down),
            Just(PowerReading::Unknown),
        ];
        prop_oneof![
            8 => (prop::option::of(reading), thermal, peer_view.clone())
                .prop_map(|(power, thermal, peers)| Event::Observe(Input { power, thermal, peers, battery: None })),
            3 => peer_view.prop_map(Event::PeersChanged),
            4 => Just(Event::Tick),
            1 => Just(Event::Cancel),
            1 => (1u64..2000).prop_map(|s| Event::Maintenance { until: Millis(T0 + s * 1000) }),
            1 => Just(Event::EndMaintenance),
        ]
    }

    proptest! {
        /// Whatever happens: shutdown is terminal and decided once, always
        /// persisted and announced before the command, never before the
        /// deadline, never from maintenance; pre_fail always has a deadline.
        #[test]
        fn invariants(events in prop::collection::vec((event(), 0u64..20_000), 1..200)) {
            let cfg = cfg();
            let mut m = Machine::new(Millis(T0));
            let mut now = Millis(T0);
            let mut runs = 0;
            for (ev, dt) in events {
                now = now.plus(Duration::from_millis(dt));
                let (next, actions) = step(&m, &ev, now, &cfg);
                let k = kinds(&actions);
                if let Some(pos) = k.iter().position(|a| *a == "Run") {
                    runs += 1;
                    prop_assert!(k[..pos].contains(&"P") && k[..pos].contains(&"N"));
                    prop_assert_eq!(next.state, State::Shutdown);
                    prop_assert_ne!(m.state, State::Maintenance);
                    // Due: the machine's own deadline, or the one a
                    // prediction moved in this very step.
                    prop_assert!(next.deadline.is_some_and(|d| d <= now));
                }
                if m.state == State::Shutdown {
                    prop_assert_eq!(&next, &m);
                    prop_assert!(actions.is_empty());
                }
                if next.state == State::PreFail {
                    prop_assert!(next.deadline.is_some());
                }
                m = next;
            }
            prop_assert!(runs <= 1);
        }

        /// A node whose own probes only ever fail locally (EMFILE, ...) never
        /// enters pre_fail for power, whatever its peers report and however
        /// often the view changes: in a cool room it stays in normal or
        /// local_fault for good.
        #[test]
        fn unknown_probes_never_start_a_power_grace(
            steps in prop::collection::vec((any::<bool>(), 0u32..6, 0u32..6, 1u64..20_000), 1..300)
        ) {
            let cfg = cfg();
            let mut m = Machine::new(Millis(T0));
            let mut now = Millis(T0);
            for (observe, up, down, dt) in steps {
                now = now.plus(Duration::from_millis(dt));
                let p = peers(up + down, up, down);
                let ev = if observe {
                    Event::Observe(Input { power: Some(PowerReading::Unknown), peers: p, ..Input::default() })
                } else {
                    Event::PeersChanged(p)
                };
                let (next, _) = step(&m, &ev, now, &cfg);
                let (next, _) = step(&next, &Event::Tick, now, &cfg);
                prop_assert!(matches!(next.state, State::Normal | State::LocalFault), "{:?}", next.state);
                m = next;
            }
        }

        /// Power that is never lost for longer than the grace, in a cool
        /// room, never shuts anything down, however it flaps.
        #[test]
        fn short_outages_never_shut_down(pattern in prop::collection::vec((1u64..55, 2u64..10), 1..30)) {
            let cfg = cfg();
            let mut m = Machine::new(Millis(T0));
            let mut now = Millis(T0);
            // (probes down, probes up) every 5 s: at most 270 s down.
            for (down, up) in pattern {
                for (n, power) in [(down, false), (up, true)] {
                    for _ in 0..n {
                        now = now.plus(Duration::from_secs(5));
                        let (next, _) = step(&m, &obs(Some(power)), now, &cfg);
                        let (next, _) = step(&next, &Event::Tick, now.plus(Duration::from_secs(1)), &cfg);
                        prop_assert_ne!(next.state, State::Shutdown);
                        m = next;
                    }
                }
            }
        }
    }
}

/// A trigger that cleared gives back the deadline it pulled in: a short
/// mains outage (grace 300 s) during which a cooling quorum formed for a
/// while (grace 120 s) must not shut down at the cooling deadline once the
/// cooling vote is gone (found by the safety suite's random traces).
#[test]
fn a_cleared_trigger_gives_back_the_deadline_it_pulled_in() {
    let c = cfg();
    let (m, _) = step(&normal(), &obs(Some(false)), at(0), &c);
    assert_eq!((m.state, m.deadline), (State::PreFail, Some(at(300))));
    // Cooling quorum (this node and 2 of 2 peers) from 100 s: 220 s < 300 s.
    let (m, _) = step(
        &m,
        &obs_thermal(Some(false), heating(5.0), hot_peers(2, 2)),
        at(100),
        &c,
    );
    assert_eq!((m.trigger, m.deadline), (Reason::Cooling, Some(at(220))));
    // The cooling vote is gone; mains is still out: back to the power grace.
    let (m, actions) = step(&m, &obs(Some(false)), at(150), &c);
    assert_eq!(
        (m.state, m.trigger, m.deadline),
        (State::PreFail, Reason::Power, Some(at(300)))
    );
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Transition { detail, .. } if detail.contains("cooling cleared"))
        ),
        "{actions:?}"
    );
    // Mains back at 290 s: two good probes recover before 300 s.
    let (m, _) = step(&m, &obs(Some(true)), at(290), &c);
    let (m, _) = step(&m, &obs(Some(true)), at(295), &c);
    assert_eq!(m.state, State::Normal);
}

/// A predicted deadline goes back to the grace once the projection is gone
/// for three observations (the temperatures stopped rising).
#[test]
fn a_prediction_without_a_projection_gives_the_deadline_back() {
    let c = cfg();
    let (m, _) = step(&normal(), &obs(Some(false)), at(0), &c);
    // Critical projected in 100 s: the command must start 60 s before.
    let (m, _) = step(
        &m,
        &obs_thermal(Some(false), ttc(100.0), PeerView::default()),
        at(10),
        &c,
    );
    assert_eq!((m.reason, m.deadline), (Reason::Prediction, Some(at(50))));
    let (m, _) = step(&m, &obs(Some(false)), at(15), &c);
    let (m, _) = step(&m, &obs(Some(false)), at(20), &c);
    assert_eq!(m.deadline, Some(at(50)), "two rounds are not enough");
    let (m, _) = step(&m, &obs(Some(false)), at(25), &c);
    assert_eq!((m.reason, m.deadline), (Reason::Power, Some(at(300))));
    // A projection that comes back pulls it in again.
    let (m, _) = step(
        &m,
        &obs_thermal(Some(false), ttc(100.0), PeerView::default()),
        at(30),
        &c,
    );
    assert_eq!((m.reason, m.deadline), (Reason::Prediction, Some(at(70))));
}

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

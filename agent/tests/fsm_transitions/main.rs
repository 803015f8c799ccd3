//! Table-driven tests of the pure state machine: every transition, the
//! timer math helpers, and properties over random event sequences.
//!
//! # Layout
//!
//! - `main.rs`: builders of machines, inputs, peer views and events;
//! - `table.rs`: the transition table and the shutdown actions;
//! - `helpers.rs`: the timer math and verdict helpers, names, config;
//! - `prediction.rs`: prediction and the deadlines triggers give back;
//! - `battery.rs`: UPS runtime and low battery;
//! - `properties.rs`: properties over random event sequences.

use coolmesh_agent::fsm::*;
use coolmesh_agent::thermal::ThermalSummary;
use std::collections::BTreeSet;
use std::time::Duration;

mod battery;
mod helpers;
mod prediction;
mod properties;
mod table;

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

//! Staged shutdown: which lower-stage nodes are still going down.
//!
//! Every node has a stage (`shutdown.stage`, default 0, published in its
//! record, key 13). When the room goes down (power or cooling), stage 0
//! (e.g. compute) shuts down first; a node of stage `k > 0` (e.g. the
//! storage the compute nodes write to) holds its command while alive
//! members of lower stages that go down for the **same trigger** have not
//! finished theirs. This module is the pure half of that rule: from the
//! peers' records (their liveness already judged by the cluster layer
//! against the clock) and this node's stage, [`lower_stages`] counts the
//! nodes still to wait for, per trigger. The time half (the hold never
//! lasts longer than `shutdown.stage_timeout` after the node's own
//! deadline, and never past a battery or temperature limit) is in the
//! state machine ([`crate::fsm::Machine::stage_hold_until`]), which sees
//! the counts as [`crate::fsm::PeerView::stages`].
//!
//! Why only alive peers: a lower-stage node that powered off stops
//! publishing and leaves the alive set, which is exactly "done"; one that
//! hangs in a way that still publishes is bounded by the stage timeout.
//! Why only the same trigger: a compute node on another circuit that sees
//! mains up is not going down, and waiting for it would turn every staged
//! shutdown into a `stage_timeout` wait.

use crate::cluster::record::FsmSummary;
use crate::fsm::State;

/// `shutdown.stage` when the file does not set it: the first to go down.
pub const DEFAULT_STAGE: u32 = 0;
/// The highest stage the configuration accepts.
pub const MAX_STAGE: u32 = 15;

// The gate's types belong to the state machine (it holds a due command
// on them); this module computes them from the peers' records.
pub use crate::fsm::{Pending, StageGate};

/// One peer as the gate reads it.
#[derive(Debug, Clone, Copy)]
pub struct StagePeer<'a> {
    /// Its stage (record key 13).
    pub stage: u32,
    /// Alive in the cluster's view (its record advances).
    pub alive: bool,
    /// Its state machine summary.
    pub fsm: &'a FsmSummary,
}

/// What a peer's record says it is going down for: `(power, cooling)`.
fn going_down_for(fsm: &FsmSummary) -> (bool, bool) {
    let name = if fsm.trigger.is_empty() {
        // An agent without the trigger field: its reason is the best
        // information (it is the trigger unless a prediction moved the
        // deadline, and a prediction only happens under power or cooling).
        fsm.reason.as_str()
    } else {
        fsm.trigger.as_str()
    };
    match name {
        "power" => (true, false),
        "cooling" => (false, true),
        "overheat" => (false, false),
        // Unknown: counted for both. Waiting is bounded by the stage
        // timeout; not waiting could pull the storage from under a node
        // still writing to it.
        _ => (true, true),
    }
}

/// Is this peer still going down (not done)? `pre_fail`, or `shutdown`
/// with its command not finished. An agent that does not say whether its
/// command finished is done once in `shutdown`.
fn still_going(fsm: &FsmSummary) -> bool {
    if fsm.state == State::PreFail.as_str() {
        true
    } else if fsm.state == State::Shutdown.as_str() {
        fsm.done == Some(false)
    } else {
        false
    }
}

/// The lower-stage nodes a node of `own_stage` waits for, per trigger:
/// alive peers of a stage below `own_stage` that are in `pre_fail`, or in
/// `shutdown` with their command not finished, for that trigger.
///
/// Pure: the cluster layer judged liveness against the clock already; the
/// timeout is the state machine's.
pub fn lower_stages<'a>(
    own_stage: u32,
    peers: impl IntoIterator<Item = StagePeer<'a>>,
) -> StageGate {
    let mut gate = StageGate::default();
    if own_stage == 0 {
        return gate;
    }
    for p in peers {
        if !p.alive || p.stage >= own_stage || !still_going(p.fsm) {
            continue;
        }
        let (power, cooling) = going_down_for(p.fsm);
        if power {
            gate.power.add(p.stage);
        }
        if cooling {
            gate.cooling.add(p.stage);
        }
    }
    gate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::Reason;

    fn fsm(state: &str, trigger: &str, reason: &str, done: Option<bool>) -> FsmSummary {
        FsmSummary {
            state: state.into(),
            reason: reason.into(),
            deadline_ms: None,
            trigger: trigger.into(),
            done,
        }
    }

    #[test]
    fn table() {
        // (own stage, [(peer stage, alive, state, trigger, reason, done)],
        //  expected power nodes, lowest, cooling nodes)
        type Peer = (
            u32,
            bool,
            &'static str,
            &'static str,
            &'static str,
            Option<bool>,
        );
        type Case = (&'static str, u32, &'static [Peer], u32, Option<u32>, u32);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("stage 0 never waits", 0, &[(0, true, "pre_fail", "power", "power", None)], 0, None, 0),
            ("lower stage in pre_fail(power)", 1, &[(0, true, "pre_fail", "power", "power", None)], 1, Some(0), 0),
            ("same stage is not waited for", 1, &[(1, true, "pre_fail", "power", "power", None)], 0, None, 0),
            ("higher stage is not waited for", 1, &[(2, true, "pre_fail", "power", "power", None)], 0, None, 0),
            ("dead or suspect peer is gone", 1, &[(0, false, "pre_fail", "power", "power", None)], 0, None, 0),
            ("shutdown, command finished", 1, &[(0, true, "shutdown", "power", "power", Some(true))], 0, None, 0),
            ("shutdown, command running", 1, &[(0, true, "shutdown", "power", "power", Some(false))], 1, Some(0), 0),
            ("shutdown from an older agent is done", 1, &[(0, true, "shutdown", "", "power", None)], 0, None, 0),
            ("normal peer is not going down", 1, &[(0, true, "normal", "", "none", None)], 0, None, 0),
            ("local_fault peer is not going down", 1, &[(0, true, "local_fault", "", "power", None)], 0, None, 0),
            ("prediction keeps its trigger", 1, &[(0, true, "pre_fail", "cooling", "prediction", None)], 0, None, 1),
            ("overheat is local", 1, &[(0, true, "pre_fail", "overheat", "overheat", None)], 0, None, 0),
            ("older agent, reason power", 1, &[(0, true, "pre_fail", "", "power", None)], 1, Some(0), 0),
            ("older agent, reason prediction: both", 1, &[(0, true, "pre_fail", "", "prediction", None)], 1, Some(0), 1),
            ("two stages below, lowest reported", 2, &[
                (1, true, "pre_fail", "power", "power", None),
                (0, true, "pre_fail", "power", "power", None),
                (0, true, "shutdown", "power", "power", Some(true)),
                (0, false, "pre_fail", "power", "power", None),
            ], 2, Some(0), 0),
        ];
        for (name, own, peers, power, lowest, cooling) in cases {
            let sums: Vec<(u32, bool, FsmSummary)> = peers
                .iter()
                .map(|(st, alive, state, trig, reason, done)| {
                    (*st, *alive, fsm(state, trig, reason, *done))
                })
                .collect();
            let gate = lower_stages(
                *own,
                sums.iter().map(|(stage, alive, f)| StagePeer {
                    stage: *stage,
                    alive: *alive,
                    fsm: f,
                }),
            );
            assert_eq!(gate.power.nodes, *power, "{name}: power");
            assert_eq!(gate.power.lowest_stage, *lowest, "{name}: lowest");
            assert_eq!(gate.cooling.nodes, *cooling, "{name}: cooling");
        }
    }

    #[test]
    fn for_trigger_picks_the_same_reason() {
        let gate = StageGate {
            power: Pending {
                nodes: 2,
                lowest_stage: Some(0),
            },
            cooling: Pending::default(),
        };
        assert_eq!(gate.for_trigger(Reason::Power).nodes, 2);
        assert_eq!(gate.for_trigger(Reason::Cooling).nodes, 0);
        assert_eq!(gate.for_trigger(Reason::Overheat).nodes, 0);
        assert_eq!(gate.for_trigger(Reason::None).nodes, 0);
    }

    mod hold {
        //! The state machine's half: the hold as an input/guard, with pure
        //! time arithmetic (wall-clock milliseconds), no clock and no sleep.
        use super::super::*;
        use crate::fsm::{
            step, Action, Battery, Event, FsmConfig, Input, Machine, Millis, PeerView,
            PowerReading, Reason,
        };
        use crate::thermal::ThermalSummary;
        use std::time::Duration;

        const T0: Millis = Millis(1_700_000_000_000);
        const S: u64 = 1000;

        fn gate(power: u32, cooling: u32) -> StageGate {
            let p = |n: u32| Pending {
                nodes: n,
                lowest_stage: (n > 0).then_some(0),
            };
            StageGate {
                power: p(power),
                cooling: p(cooling),
            }
        }

        fn peers(g: StageGate) -> PeerView {
            PeerView {
                stages: g,
                ..PeerView::default()
            }
        }

        fn down(g: StageGate) -> Event {
            Event::Observe(Input {
                power: Some(PowerReading::Down),
                peers: peers(g),
                ..Input::default()
            })
        }

        /// Mains down, two lower-stage nodes going down, and a UPS on
        /// battery.
        fn on_battery(urgent: bool, runtime_secs: Option<u64>) -> Event {
            Event::Observe(Input {
                power: Some(PowerReading::Down),
                peers: peers(gate(2, 0)),
                battery: Some(Battery {
                    urgent,
                    runtime: runtime_secs.map(Duration::from_secs),
                }),
                ..Input::default()
            })
        }

        /// Mains down, two lower-stage nodes going down, and `thermal`.
        fn hot(thermal: ThermalSummary) -> Event {
            Event::Observe(Input {
                power: Some(PowerReading::Down),
                peers: peers(gate(2, 0)),
                thermal,
                ..Input::default()
            })
        }

        /// A node in `pre_fail(power)` entered at T0: deadline T0 + 5 min.
        fn pre_fail(cfg: &FsmConfig, g: StageGate) -> Machine {
            let (m, _) = step(&Machine::new(T0), &down(g), T0, cfg);
            assert_eq!(m.state, State::PreFail);
            assert_eq!(m.trigger, Reason::Power);
            assert_eq!(m.deadline, Some(Millis(T0.0 + 300 * S)));
            m
        }

        fn at(secs: u64) -> Millis {
            Millis(T0.0 + secs * S)
        }

        fn detail(actions: &[Action]) -> String {
            actions
                .iter()
                .find_map(|a| match a {
                    Action::Transition { detail, .. } => Some(detail.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        }

        #[test]
        fn table() {
            // (name, stage_timeout s, gate at the deadline, event after the
            //  deadline, at s, expected state after it)
            let cfg = FsmConfig::default();
            #[rustfmt::skip]
            let cases: Vec<(&str, u64, StageGate, Event, u64, State)> = vec![
                ("nothing to wait for: down at the deadline", 120, gate(0, 0), Event::Tick, 300, State::Shutdown),
                ("lower stage going down: held at the deadline", 120, gate(2, 0), Event::Tick, 300, State::PreFail),
                ("still held just before the timeout", 120, gate(2, 0), Event::Tick, 419, State::PreFail),
                ("down at deadline + stage_timeout", 120, gate(2, 0), Event::Tick, 420, State::Shutdown),
                ("waiting only for the same trigger", 120, gate(0, 3), Event::Tick, 300, State::Shutdown),
                ("stage_timeout 0 turns the wait off", 0, gate(2, 0), Event::Tick, 300, State::Shutdown),
                ("lower stages done: released at once", 120, gate(2, 0), Event::PeersChanged(peers(gate(0, 0))), 330, State::Shutdown),
                ("one left: still held", 120, gate(2, 0), Event::PeersChanged(peers(gate(1, 0))), 330, State::PreFail),
                ("UPS low battery ends the wait", 120, gate(2, 0), on_battery(true, None), 310, State::Shutdown),
                ("battery runtime under the shutdown duration ends the wait", 120, gate(2, 0), on_battery(false, Some(50)), 310, State::Shutdown),
                ("enough battery: the wait goes on", 120, gate(2, 0), on_battery(false, Some(1800)), 310, State::PreFail),
                ("a sensor at critical ends the wait", 120, gate(2, 0), hot(ThermalSummary { critical: true, ..ThermalSummary::default() }), 310, State::Shutdown),
                ("time to critical under the shutdown duration ends the wait", 120, gate(2, 0), hot(ThermalSummary { time_to_critical_seconds: Some(40.0), ..ThermalSummary::default() }), 310, State::Shutdown),
            ];
            for (name, timeout, g, ev, secs, want) in cases {
                let cfg = FsmConfig {
                    stage_timeout: Duration::from_secs(timeout),
                    ..cfg.clone()
                };
                let m = pre_fail(&cfg, g);
                // The deadline passes (a Tick), then the event.
                let (m, _) = step(&m, &Event::Tick, at(300), &cfg);
                let (m, a1) = step(&m, &ev, at(secs), &cfg);
                // The supervisor then ticks at `next_wake` if it passed (a
                // peer change leaves the shutdown to that tick).
                let (m, a2) = if m.next_wake(&cfg).is_some_and(|w| w <= at(secs)) {
                    step(&m, &Event::Tick, at(secs), &cfg)
                } else {
                    (m, Vec::new())
                };
                assert_eq!(m.state, want, "{name}: {} {}", detail(&a1), detail(&a2));
            }
        }

        #[test]
        fn the_hold_is_announced_once_and_the_wake_is_the_timeout() {
            let cfg = FsmConfig::default();
            let m = pre_fail(&cfg, gate(2, 0));
            assert_eq!(
                m.next_wake(&cfg),
                Some(at(420)),
                "the effective deadline includes the hold"
            );
            let (m, actions) = step(&m, &Event::Tick, at(300), &cfg);
            assert_eq!(m.state, State::PreFail);
            assert!(m.stage_waiting);
            let d = detail(&actions);
            assert!(
                d.contains("holding the shutdown command for 2 lower-stage node(s)"),
                "{d}"
            );
            assert!(actions.contains(&Action::NotifyPeers));
            // A second tick says nothing new.
            let (m, actions) = step(&m, &Event::Tick, at(301), &cfg);
            assert!(actions.is_empty(), "{actions:?}");
            // Released by the peers: the wake is now, and the tick that
            // follows shuts down, saying why.
            let (m, actions) = step(&m, &Event::PeersChanged(peers(gate(0, 0))), at(350), &cfg);
            assert_eq!(
                m.state,
                State::PreFail,
                "a peer change leaves it to the tick"
            );
            assert!(actions.is_empty(), "{actions:?}");
            assert_eq!(m.next_wake(&cfg), Some(at(300)), "due: the deadline itself");
            let (m, actions) = step(&m, &Event::Tick, at(350), &cfg);
            assert_eq!(m.state, State::Shutdown);
            assert!(
                detail(&actions).contains("the lower stages finished"),
                "{}",
                detail(&actions)
            );
            assert_eq!(actions.last(), Some(&Action::RunShutdown));
        }

        #[test]
        fn timeout_says_how_many_were_left() {
            let cfg = FsmConfig::default();
            let m = pre_fail(&cfg, gate(1, 0));
            let (m, _) = step(&m, &Event::Tick, at(300), &cfg);
            let (m, actions) = step(&m, &Event::Tick, at(420), &cfg);
            assert_eq!(m.state, State::Shutdown);
            let d = detail(&actions);
            assert!(
                d.contains("stage timeout 2m expired with 1 lower-stage node(s)"),
                "{d}"
            );
        }

        #[test]
        fn a_battery_seen_early_caps_the_hold() {
            // Runtime 6 min at T0+10s: the battery lasts until T0+370s,
            // the command must start 60 s before: T0+310s, before the
            // stage timeout (T0+420s).
            let cfg = FsmConfig::default();
            let m = pre_fail(&cfg, gate(2, 0));
            let ev = on_battery(false, Some(360));
            let (m, _) = step(&m, &ev, at(10), &cfg);
            assert_eq!(m.safety_by, Some(at(310)));
            assert_eq!(m.stage_hold_until(&cfg), Some(at(310)));
            let (m, _) = step(&m, &Event::Tick, at(309), &cfg);
            assert_eq!(m.state, State::PreFail);
            let (m, _) = step(&m, &Event::Tick, at(310), &cfg);
            assert_eq!(m.state, State::Shutdown);
        }

        #[test]
        fn overheat_is_never_held() {
            let cfg = FsmConfig::default();
            let mut m = pre_fail(&cfg, gate(2, 2));
            m.trigger = Reason::Overheat;
            assert_eq!(m.stage_hold_until(&cfg), None);
            let (m, _) = step(&m, &Event::Tick, at(300), &cfg);
            assert_eq!(m.state, State::Shutdown);
        }

        #[test]
        fn a_recovery_still_cancels_a_held_shutdown() {
            // Mains back during the hold: two good probes and the node
            // goes back to normal, the stage wait never forces a shutdown.
            let cfg = FsmConfig::default();
            let m = pre_fail(&cfg, gate(2, 0));
            let up = Event::Observe(Input {
                power: Some(PowerReading::Up),
                peers: peers(gate(2, 0)),
                ..Input::default()
            });
            let (m, _) = step(&m, &Event::Tick, at(300), &cfg);
            let (m, _) = step(&m, &up, at(305), &cfg);
            assert_eq!(m.state, State::PreFail);
            let (m, _) = step(&m, &up, at(310), &cfg);
            assert_eq!(m.state, State::Normal);
            assert!(!m.stage_waiting);
            assert_eq!(m.safety_by, None);
        }
    }
}

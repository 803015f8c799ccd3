//! Prediction and pulled-in deadlines: where a prediction applies, and the
//! deadline a cleared trigger or a gone projection gives back.

use super::*;

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

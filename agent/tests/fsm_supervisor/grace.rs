//! Graces: power flaps and outages, recovery inside the grace, reloaded
//! timers, overheat, prediction, cancel and maintenance.

use super::*;

#[tokio::test(start_paused = true)]
async fn power_flaps_shorter_than_the_grace_never_shut_down() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(1);
    // Ten outages of 4 minutes with 30 s of power in between, then
    // quick 20 s / 20 s flapping for another 20 minutes.
    let trace = drive(&w, &a, &mut rng, 2700.0, |t| power((t % 270.0) >= 240.0)).await;
    let trace2 = drive(&w, &a, &mut rng, 3900.0, |t| power((t % 40.0) >= 20.0)).await;
    assert!(!trace.ever(State::Shutdown) && !trace2.ever(State::Shutdown));
    assert!(trace.ever(State::PreFail));
    assert_eq!(w.marker_lines(), 0);
    let m = a.stop().await;
    assert_ne!(m.state, State::Shutdown);
    assert!(!m.exec.issued);
}

#[tokio::test(start_paused = true)]
async fn flaps_are_counted_as_pre_fail_round_trips() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(2);
    drive(&w, &a, &mut rng, 2700.0, |t| power((t % 270.0) >= 240.0)).await;
    let into = a
        .stats
        .transitions(State::Normal, State::PreFail, Reason::Power);
    let out = a
        .stats
        .transitions(State::PreFail, State::Normal, Reason::Power);
    assert_eq!((into, out), (10, 10));
    assert!(
        a.notified.load(Ordering::Relaxed) >= 20,
        "peers told of every transition"
    );
    assert_eq!(w.marker_lines(), 0);
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn power_loss_lasting_the_grace_shuts_down_exactly_once_at_the_grace() {
    for seed in 0..8 {
        let w = World::new();
        let a = w.start().await;
        let mut rng = StdRng::seed_from_u64(seed);
        let loss = 60.0;
        let trace = drive(&w, &a, &mut rng, 2400.0, |t| power(t < loss)).await;
        let m = a.machine();
        assert_eq!(m.state, State::Shutdown, "seed {seed}");
        assert_eq!(m.reason, Reason::Power);
        let first_fail = trace.first(State::PreFail).expect("pre_fail");
        let at = secs(m.since);
        // Exactly at the grace after the first failed observation...
        assert!(
            (at - (first_fail + 300.0)).abs() < 0.002,
            "seed {seed}: {at} vs {first_fail}"
        );
        // ...which is within one jittered probe interval of the loss.
        assert!(
            (loss + 300.0..=loss + 300.0 + 5.5).contains(&at),
            "seed {seed}: shutdown at {at}"
        );
        // Exactly once, in spite of 30 more minutes of "power down".
        assert_eq!(w.marker_lines(), 1, "seed {seed}");
        assert_eq!(m.exec.attempts, 1);
        assert!(m.exec.issued && m.exec.done);
        assert_eq!(
            a.stats
                .transitions(State::PreFail, State::Shutdown, Reason::Power),
            1
        );
        // The decision is on disk (dry-run persists too).
        let rec = persist::load(&w.state_dir())
            .expect("load")
            .expect("persisted");
        assert_eq!(rec.machine.state, State::Shutdown);
        assert!(rec.machine.exec.done);
        a.stop().await;
    }
}

/// A config reload shortens the power grace: a pending grace keeps the
/// deadline it started with (a reload never moves a decision already
/// taken), the next one runs on the new timer; an invalid config sent by
/// mistake is refused and the timers stay.
#[tokio::test(start_paused = true)]
async fn reloaded_timers_apply_to_the_next_grace_not_the_pending_one() {
    let w = World::new();
    let (tx, rx) = watch::channel(w.fsm.clone());
    let a = w.start_with(Some(rx)).await;
    let mut rng = StdRng::seed_from_u64(11);
    // Power lost at 60 s: the 5 min grace starts.
    let trace = drive(&w, &a, &mut rng, 120.0, |t| power(t < 60.0)).await;
    let first_fail = trace.first(State::PreFail).expect("pre_fail");
    let deadline = a.machine().deadline.expect("deadline");
    assert!((secs(deadline) - (first_fail + 300.0)).abs() < 0.002);
    // Reload: a 30 s grace. The pending deadline stays.
    tx.send_replace(FsmConfig {
        power_grace: Duration::from_secs(30),
        ..w.fsm.clone()
    });
    wait(2.0).await;
    assert_eq!(a.machine().state, State::PreFail);
    assert_eq!(a.machine().deadline, Some(deadline));
    // Power back before the old deadline: normal again.
    let trace = drive(&w, &a, &mut rng, 200.0, |_| power(true)).await;
    assert!(trace.samples.last().is_some_and(|s| s.1 == State::Normal));
    // A zero grace is refused: the 30 s one stays in force.
    tx.send_replace(FsmConfig {
        power_grace: Duration::ZERO,
        ..w.fsm.clone()
    });
    wait(1.0).await;
    // The next loss runs on the reloaded 30 s grace.
    let trace = drive(&w, &a, &mut rng, 400.0, |t| power(t < 300.0)).await;
    let second_fail = trace
        .samples
        .iter()
        .find(|x| x.0 >= 300.0 && x.1 == State::PreFail)
        .expect("second pre_fail")
        .0;
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Power));
    assert!(
        (secs(m.since) - (second_fail + 30.0)).abs() < 0.002,
        "{second_fail} -> {}",
        secs(m.since)
    );
    assert_eq!(w.marker_lines(), 1);
}

#[tokio::test(start_paused = true)]
async fn recovery_inside_the_grace_returns_to_normal() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(3);
    // Down for 4m40s: the second good probe still lands inside the grace.
    let trace = drive(&w, &a, &mut rng, 1200.0, |t| {
        power(!(60.0..340.0).contains(&t))
    })
    .await;
    assert!(trace.ever(State::PreFail));
    assert!(!trace.ever(State::Shutdown));
    let back = trace
        .samples
        .iter()
        .filter(|s| s.0 > 340.0)
        .find(|s| s.1 == State::Normal)
        .expect("recovered");
    assert!(
        back.0 < 340.0 + 2.0 * 5.5 + 0.1,
        "two good probes: {}",
        back.0
    );
    let m = a.stop().await;
    assert_eq!(
        (m.state, m.reason, m.deadline),
        (State::Normal, Reason::Power, None)
    );
    assert_eq!(w.marker_lines(), 0);
}

#[tokio::test(start_paused = true)]
async fn outage_ending_at_the_grace_with_recovery_in_progress_does_not_shut_down() {
    // Recovery needs two good probes; the first one arrives just before the
    // grace ends and the second just after. The outage was shorter than the
    // grace, so nothing shuts down.
    let w = World::new();
    let a = w.start().await;
    for _ in 0..2 {
        a.send(Event::Observe(power(true))).await;
        wait(5.0).await;
    }
    a.send(Event::Observe(power(false))).await; // t=10: pre_fail, deadline 310
    for _ in 0..58 {
        wait(5.0).await;
        a.send(Event::Observe(power(false))).await;
    }
    wait(4.0).await; // t=304... first good probe at t = 309
    wait(5.0).await;
    a.send(Event::Observe(power(true))).await;
    let m = a.machine();
    assert_eq!((m.state, m.good_streak), (State::PreFail, 1));
    wait(5.5).await; // the deadline (310) passes while recovering
    assert_eq!(a.machine().state, State::PreFail);
    a.send(Event::Observe(power(true))).await;
    assert_eq!(a.machine().state, State::Normal);
    wait(60.0).await;
    assert_eq!(w.marker_lines(), 0);
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn overheat_must_be_sustained() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(4);
    let hot = |c: bool| Input {
        power: Some(PowerReading::from(true)),
        thermal: ThermalSummary {
            critical: c,
            hottest_celsius: Some(if c { 96.0 } else { 80.0 }),
            ..ThermalSummary::default()
        },
        ..Input::default()
    };
    // Spikes of 20 s at critical every two minutes: never sustained.
    let trace = drive(&w, &a, &mut rng, 1200.0, |t| hot((t % 120.0) < 20.0)).await;
    assert!(!trace.ever(State::PreFail));
    // Then critical for good, from t = 1200 on.
    let trace = drive(&w, &a, &mut rng, 1500.0, |_| hot(true)).await;
    let first_hot = trace.samples.first().expect("samples").0;
    let pre_fail = trace.first(State::PreFail).expect("overheat");
    assert!(
        pre_fail >= first_hot + 30.0 && pre_fail <= first_hot + 30.0 + 5.5,
        "{first_hot} -> {pre_fail}"
    );
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Overheat));
    assert!(
        (secs(m.since) - (pre_fail + 60.0)).abs() < 0.002,
        "overheat grace: {}",
        secs(m.since)
    );
    assert_eq!(w.marker_lines(), 1);
}

#[tokio::test(start_paused = true)]
async fn prediction_shuts_down_early_enough_to_finish_before_critical() {
    // Cooling and power fail together at t = 60: 30 C of headroom, heating
    // at 10 C/min, so critical at t = 240. Grace 5 min, a shutdown takes 60 s.
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(5);
    let loss = 60.0;
    let critical_at = loss + 180.0;
    let world = |t: f64| {
        let (headroom, trend) = if t < loss {
            (30.0, 0.0)
        } else {
            (30.0 - 10.0 * (t - loss) / 60.0, 10.0)
        };
        Input {
            power: Some(PowerReading::from(t < loss)),
            thermal: ThermalSummary {
                hottest_celsius: Some(100.0 - headroom),
                headroom_celsius: Some(headroom),
                trend_celsius_per_minute: Some(trend),
                time_to_critical_seconds: time_to_critical(Some(headroom), Some(trend)),
                critical: headroom <= 0.0,
                ..ThermalSummary::default()
            },
            peers: PeerView::default(),
            battery: None,
        }
    };
    let trace = drive(&w, &a, &mut rng, 600.0, world).await;
    let m = a.machine();
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Prediction));
    let start = secs(m.since);
    let duration = w.fsm.shutdown_duration.as_secs_f64();
    assert!(
        start <= loss + 120.0 + 0.002,
        "command at {start}, must be <= {}",
        loss + 120.0
    );
    assert!(
        start + duration <= critical_at + 0.002,
        "shutdown finishes at {} after critical {critical_at}",
        start + duration
    );
    // Not absurdly early either: the projection is exact here.
    assert!(start >= loss + 115.0, "{start}");
    // A fixed grace would have run the command at ~360, two minutes after critical.
    assert!(trace.first(State::PreFail).expect("pre_fail") <= loss + 5.5);
    assert_eq!(
        a.stats
            .transitions(State::PreFail, State::PreFail, Reason::Prediction),
        1
    );
    assert_eq!(w.marker_lines(), 1);
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_holds_off_pre_fail_then_the_grace_starts_again() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(6);
    let down_from = |t: f64| power(t < 30.0);
    let trace = drive(&w, &a, &mut rng, 120.0, down_from).await;
    assert_eq!(trace.samples.last().expect("samples").1, State::PreFail);
    a.send(Event::Cancel).await;
    let m = a.machine();
    let cancelled = secs(m.since);
    assert_eq!(
        (m.state, m.reason, m.deadline),
        (State::Normal, Reason::Operator, None)
    );
    let hold_end = cancelled + w.fsm.cancel_hold.as_secs_f64();
    assert_eq!(m.hold_until.map(secs), Some(hold_end));
    // Power stays down: no pre_fail during the hold.
    let trace = drive(&w, &a, &mut rng, hold_end - 0.5, down_from).await;
    assert!(trace.samples.iter().all(|s| s.1 == State::Normal), "held");
    // After the hold: a fresh pre_fail with a full grace, then shutdown.
    let trace = drive(&w, &a, &mut rng, hold_end + 600.0, down_from).await;
    let pre_fail = trace
        .first(State::PreFail)
        .expect("pre_fail after the hold");
    assert!(pre_fail >= hold_end && pre_fail <= hold_end + 6.0);
    let m = a.stop().await;
    assert_eq!(m.state, State::Shutdown);
    assert!((secs(m.since) - (pre_fail + 300.0)).abs() < 0.002);
    assert_eq!(w.marker_lines(), 1);
}

#[tokio::test(start_paused = true)]
async fn maintenance_holds_every_shutdown_until_its_end() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(7);
    let until = Millis(T0 + 1200 * 1000);
    a.send(Event::Maintenance { until }).await;
    assert_eq!(a.machine().state, State::Maintenance);
    // Power down and the node at critical for the whole window.
    let bad = |_t: f64| Input {
        power: Some(PowerReading::from(false)),
        thermal: ThermalSummary {
            critical: true,
            ..ThermalSummary::default()
        },
        ..Input::default()
    };
    let trace = drive(&w, &a, &mut rng, 1199.0, bad).await;
    assert!(trace.samples.iter().all(|s| s.1 == State::Maintenance));
    // The window ends on the dot (a tick at the deadline), not at the next probe.
    wait(1200.5 - w.elapsed()).await;
    let m = a.machine();
    assert_eq!(
        (m.state, m.reason, secs(m.since)),
        (State::Normal, Reason::Operator, 1200.0)
    );
    // Then the triggers apply with fresh graces: overheat (60 s) is the shortest.
    let trace = drive(&w, &a, &mut rng, 1500.0, bad).await;
    let pre_fail = trace.first(State::PreFail).expect("pre_fail");
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Overheat));
    assert!((secs(m.since) - (pre_fail + 60.0)).abs() < 0.002);
    assert_eq!(w.marker_lines(), 1);
}

#[tokio::test(start_paused = true)]
async fn ending_maintenance_early_returns_to_normal() {
    let w = World::new();
    let a = w.start().await;
    a.send(Event::Maintenance {
        until: Millis(T0 + 3_600_000),
    })
    .await;
    wait(10.0).await;
    a.send(Event::EndMaintenance).await;
    let m = a.machine();
    assert_eq!(
        (m.state, m.reason, m.maintenance_until),
        (State::Normal, Reason::Operator, None)
    );
    a.stop().await;
}

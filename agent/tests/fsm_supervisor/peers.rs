//! Peer corroboration: local faults, unknown probes, peer view changes,
//! the cooling quorum.

use super::*;

/// `up` peers see the target up, `down` see it down, none overheating.
fn peers(up: u32, down: u32) -> PeerView {
    PeerView {
        fresh_peers: up + down,
        power_up: up,
        power_down: down,
        overheating: 0,
        ..PeerView::default()
    }
}

#[tokio::test(start_paused = true)]
async fn corroboration_local_probe_failure_is_a_local_fault() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(13);
    let peers_up = peers(3, 0);
    let peers_down = peers(0, 3);
    // The local probe fails from t = 60 but every peer sees the target.
    let local = |t: f64| Input {
        power: Some(PowerReading::from(t < 60.0)),
        peers: peers_up,
        ..Input::default()
    };
    let trace = drive(&w, &a, &mut rng, 1860.0, local).await;
    assert!(trace.ever(State::LocalFault));
    assert!(!trace.ever(State::PreFail) && !trace.ever(State::Shutdown));
    assert_eq!(w.marker_lines(), 0);
    // Then the peers lose it too: a real outage.
    let real = |_t: f64| Input {
        power: Some(PowerReading::from(false)),
        peers: peers_down,
        ..Input::default()
    };
    let trace = drive(&w, &a, &mut rng, 2400.0, real).await;
    let pre_fail = trace.first(State::PreFail).expect("pre_fail");
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Power));
    assert!((secs(m.since) - (pre_fail + 300.0)).abs() < 0.002);
    assert_eq!(w.marker_lines(), 1);
}

/// Bug j: every probe fails on this node (EMFILE under a connection flood,
/// a local firewall, ...). Whatever the peers report, and however often the
/// view changes, such a node never starts a power grace, let alone shuts
/// down; it sits in local_fault and recovers with two good probes.
#[tokio::test(start_paused = true)]
async fn unknown_probes_for_ten_minutes_never_shut_down() {
    for (name, view) in [
        ("no peers", PeerView::default()),
        ("peers see power", peers(4, 0)),
        ("peers see it down", peers(0, 4)),
        (
            "peers unknown too",
            PeerView {
                fresh_peers: 4,
                ..PeerView::default()
            },
        ),
    ] {
        let w = World::new();
        let a = w.start().await;
        let mut rng = StdRng::seed_from_u64(21);
        let unknown = |_t: f64| Input {
            power: Some(PowerReading::Unknown),
            peers: view,
            ..Input::default()
        };
        // Ten minutes of unknown rounds, the peer view changing in between.
        let mut trace = drive(&w, &a, &mut rng, 300.0, unknown).await;
        a.send(Event::PeersChanged(peers(0, 4))).await;
        a.send(Event::PeersChanged(view)).await;
        trace
            .samples
            .extend(drive(&w, &a, &mut rng, 600.0, unknown).await.samples);
        assert!(trace.ever(State::LocalFault), "{name}");
        assert!(
            trace.samples.iter().all(|s| s.1 == State::LocalFault),
            "{name}: {:?}",
            trace.samples.iter().find(|s| s.1 != State::LocalFault)
        );
        wait(3600.0).await;
        let m = a.machine();
        assert_eq!(
            (m.state, m.reason),
            (State::LocalFault, Reason::Power),
            "{name}"
        );
        assert_eq!(m.deadline, None, "{name}");
        assert_eq!(w.marker_lines(), 0, "{name}");
        assert_eq!(
            a.stats
                .transitions(State::Normal, State::PreFail, Reason::Power)
                + a.stats
                    .transitions(State::LocalFault, State::PreFail, Reason::Power),
            0,
            "{name}"
        );
        // The agent is fixed: two good probes and it is back to normal.
        let trace = drive(&w, &a, &mut rng, 4215.0, |_| power(true)).await;
        assert_eq!(
            trace.samples.last().map(|s| s.1),
            Some(State::Normal),
            "{name}"
        );
        let m = a.stop().await;
        assert!(!m.exec.issued, "{name}");
    }
}

/// The transient PeersChanged removes: mains fails, this node probes first
/// and sees its peers' older "up" votes (local_fault); one second later the
/// peers' "down" votes arrive. pre_fail must start then, not at the next
/// own probe, and the grace counts from that moment.
#[tokio::test(start_paused = true)]
async fn peer_view_change_moves_local_fault_to_pre_fail_at_once() {
    let w = World::new();
    let a = w.start().await;
    let t0 = Millis(T0).plus(Duration::from_secs(60));
    wait(60.0).await;
    a.send(Event::Observe(Input {
        power: Some(PowerReading::Down),
        peers: peers(3, 0),
        ..Input::default()
    }))
    .await;
    let m = a.machine();
    assert_eq!((m.state, m.since), (State::LocalFault, t0));

    wait(1.0).await;
    // A peer change that does not corroborate yet: nothing.
    a.send(Event::PeersChanged(peers(2, 1))).await;
    assert_eq!(a.machine().state, State::LocalFault);
    // The next one does: 2 of 3 down.
    a.send(Event::PeersChanged(peers(1, 2))).await;
    let m = a.machine();
    let t1 = t0.plus(Duration::from_secs(1));
    assert_eq!((m.state, m.reason), (State::PreFail, Reason::Power));
    assert_eq!(m.since, t1, "pre_fail at t0 + 1 s, not at the next probe");
    assert_eq!(m.deadline, Some(t1.plus(Duration::from_secs(300))));
    assert_eq!(
        a.stats
            .transitions(State::LocalFault, State::PreFail, Reason::Power),
        1
    );

    // The probes keep failing with the peers agreeing: the shutdown comes
    // exactly at that deadline; later observations do not move it.
    let mut rng = StdRng::seed_from_u64(22);
    let down = |_t: f64| Input {
        power: Some(PowerReading::Down),
        peers: peers(0, 3),
        ..Input::default()
    };
    drive(&w, &a, &mut rng, 600.0, down).await;
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Power));
    assert_eq!(m.since, t1.plus(Duration::from_secs(300)));
    assert_eq!(w.marker_lines(), 1);
}

/// A peer change never completes a recovery: after the outage two good own
/// probes are still needed, however many peer changes say "power is back".
#[tokio::test(start_paused = true)]
async fn peer_changes_never_count_as_recovery_probes() {
    let w = World::new();
    let a = w.start().await;
    wait(10.0).await;
    a.send(Event::Observe(power(false))).await;
    assert_eq!(a.machine().state, State::PreFail);
    wait(5.0).await;
    a.send(Event::Observe(power(true))).await;
    for _ in 0..5 {
        wait(0.5).await;
        a.send(Event::PeersChanged(peers(3, 0))).await;
    }
    let m = a.machine();
    assert_eq!((m.state, m.good_streak), (State::PreFail, 1));
    wait(2.5).await;
    a.send(Event::Observe(power(true))).await;
    assert_eq!(a.machine().state, State::Normal);
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn local_fault_recovers_with_good_probes() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(14);
    let peers_up = peers(2, 0);
    let f = |t: f64| Input {
        power: Some(PowerReading::from(!(60.0..300.0).contains(&t))),
        peers: peers_up,
        ..Input::default()
    };
    let trace = drive(&w, &a, &mut rng, 400.0, f).await;
    assert!(trace.ever(State::LocalFault));
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Normal, Reason::Power));
}

#[tokio::test(start_paused = true)]
async fn cooling_quorum_shuts_down_after_the_cooling_grace() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(15);
    let heating = ThermalSummary {
        trend_celsius_per_minute: Some(4.0),
        cooling_vote: true,
        ..ThermalSummary::default()
    };
    // Mains up; the three peers see it up, `overheating` of them heating.
    let peers_heating = |overheating: u32| {
        move |_t: f64| Input {
            power: Some(PowerReading::from(true)),
            thermal: heating,
            peers: PeerView {
                overheating,
                ..peers(3, 0)
            },
            battery: None,
        }
    };
    // One of three peers heating, plus this node: 2 of 4, below the quorum of 3.
    let minority = peers_heating(1);
    let trace = drive(&w, &a, &mut rng, 1200.0, minority).await;
    assert!(!trace.ever(State::PreFail));
    // Two of three peers plus this node: 3 of 4.
    let quorum = peers_heating(2);
    let trace = drive(&w, &a, &mut rng, 1500.0, quorum).await;
    let pre_fail = trace.first(State::PreFail).expect("pre_fail");
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Cooling));
    assert!((secs(m.since) - (pre_fail + 120.0)).abs() < 0.002);
    assert_eq!(w.marker_lines(), 1);
}

//! Properties over random event sequences.

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

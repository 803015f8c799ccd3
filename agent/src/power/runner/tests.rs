//! Tests of `runner`.

use super::*;
use futures::future::BoxFuture;
use std::sync::Mutex;

#[test]
fn jitter_table() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    // interval, fraction, sample, expected
    let cases = [
        (s(5), 0.1, 0.0, ms(4500)),
        (s(5), 0.1, 0.5, ms(5000)),
        (s(5), 0.1, 1.0, ms(5500)),
        (s(5), 0.1, 0.25, ms(4750)),
        (s(5), 0.0, 0.0, ms(5000)),
        (s(5), 0.0, 1.0, ms(5000)),
        (s(10), 0.5, 0.0, ms(5000)),
        (s(10), 0.5, 1.0, ms(15000)),
        (s(5), 2.0, 0.0, ms(0)),         // fraction clamped to 1
        (s(5), -1.0, 0.0, ms(5000)),     // negative fraction: no jitter
        (s(5), f64::NAN, 0.0, ms(5000)), // NaN fraction: no jitter
        (s(5), 0.1, f64::NAN, ms(5000)), // NaN sample: midpoint
        (s(5), 0.1, -3.0, ms(4500)),     // sample clamped
        (s(5), 0.1, 7.0, ms(5500)),
        (ms(0), 0.1, 1.0, ms(0)),
        (Duration::MAX, 0.1, 1.0, Duration::MAX), // overflow: unjittered
    ];
    for (interval, fraction, sample, want) in cases {
        let got = jittered(interval, fraction, sample);
        let diff = got.abs_diff(want);
        assert!(
            diff <= Duration::from_micros(1),
            "jittered({interval:?}, {fraction}, {sample}) = {got:?}, want {want:?}"
        );
    }
}

#[test]
fn jitter_bound_holds_for_random_samples() {
    let interval = Duration::from_secs(5);
    for _ in 0..10_000 {
        let d = jittered(interval, 0.1, rand::random::<f64>());
        assert!(
            d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500),
            "{d:?}"
        );
    }
}

#[test]
fn validate_config() {
    assert_eq!(RunConfig::default().validate(), Ok(()));
    let bad = [
        RunConfig {
            interval: Duration::ZERO,
            ..Default::default()
        },
        RunConfig {
            jitter_fraction: 1.0,
            ..Default::default()
        },
        RunConfig {
            jitter_fraction: -0.1,
            ..Default::default()
        },
        RunConfig {
            jitter_fraction: f64::NAN,
            ..Default::default()
        },
        RunConfig {
            timeout: Duration::ZERO,
            ..Default::default()
        },
        RunConfig {
            timeout: Duration::from_secs(6),
            ..Default::default()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

/// A probe that records when it was called and answers from a script.
struct Fake {
    name: String,
    calls: Mutex<Vec<Instant>>,
    /// Time the probe takes.
    delay: Duration,
    /// Up or not.
    up: bool,
    /// Ignore the timeout (a misbehaving probe).
    rogue: bool,
    /// Fail with a local error (like EMFILE) instead of "down".
    local: bool,
}

impl Fake {
    fn new(name: &str, up: bool, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            calls: Mutex::new(vec![]),
            delay,
            up,
            rogue: false,
            local: false,
        })
    }

    fn broken(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            calls: Mutex::new(vec![]),
            delay: Duration::from_millis(1),
            up: false,
            rogue: false,
            local: true,
        })
    }
    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl Probe for Fake {
    fn target(&self) -> &str {
        &self.name
    }
    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
        self.calls.lock().unwrap().push(Instant::now());
        Box::pin(async move {
            let work = async {
                tokio::time::sleep(self.delay).await;
                if self.up {
                    Ok(())
                } else if self.local {
                    Err(ProbeError::Io {
                        what: "connect to fake".into(),
                        err: std::io::Error::from_raw_os_error(24),
                    })
                } else {
                    Err(ProbeError::Down("fake down".into()))
                }
            };
            if self.rogue {
                work.await
            } else {
                super::super::within(timeout, work).await
            }
        })
    }
}

fn dyns(fakes: &[Arc<Fake>]) -> Vec<Arc<dyn Probe>> {
    fakes.iter().map(|f| f.clone() as Arc<dyn Probe>).collect()
}

/// The runner in a task of its own that is never told to stop (the test
/// aborts it).
fn spawn_run(
    probes: Vec<Arc<dyn Probe>>,
    policy: Policy,
    config: RunConfig,
    metrics: PowerMetrics,
    tx: mpsc::Sender<PowerObservation>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(
        probes,
        policy,
        config,
        metrics,
        tx,
        futures::future::pending(),
    ))
}

#[tokio::test(start_paused = true)]
async fn interval_stays_within_jitter_bound() {
    let fake = Fake::new("fake://a", true, Duration::from_millis(30));
    let (tx, mut rx) = mpsc::channel(4);
    let metrics = PowerMetrics::new().unwrap();
    let rounds = 500;
    let consumer = tokio::spawn(async move {
        for _ in 0..rounds {
            rx.recv().await.unwrap();
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(run(
        dyns(std::slice::from_ref(&fake)),
        Policy::Any,
        RunConfig::default(),
        metrics,
        tx,
        async move {
            let _ = stop_rx.await;
        },
    ));
    consumer.await.unwrap();
    let _ = stop_tx.send(());
    runner.await.unwrap();

    let calls = fake.calls();
    assert!(calls.len() >= rounds);
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    let (lo, hi) = (Duration::from_millis(4500), Duration::from_millis(5500));
    for g in &gaps {
        assert!(*g >= lo && *g <= hi, "gap {g:?} outside [{lo:?}, {hi:?}]");
    }
    // The jitter is really random, and spread over the band.
    let min = gaps.iter().min().unwrap();
    let max = gaps.iter().max().unwrap();
    assert!(
        *min < Duration::from_millis(4600) && *max > Duration::from_millis(5400),
        "{min:?} {max:?}"
    );
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean.abs_diff(Duration::from_secs(5)) < Duration::from_millis(50),
        "mean {mean:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn probes_run_concurrently_and_policy_applies() {
    let fakes = [
        Fake::new("a", true, Duration::from_millis(800)),
        Fake::new("b", false, Duration::from_millis(800)),
        Fake::new("c", true, Duration::from_millis(800)),
    ];
    for (policy, want) in [
        (Policy::Any, true),
        (Policy::All, false),
        (Policy::Majority, true),
    ] {
        let (tx, mut rx) = mpsc::channel(1);
        let metrics = PowerMetrics::new().unwrap();
        let started = Instant::now();
        let runner = tokio::spawn(run(
            dyns(&fakes),
            policy,
            RunConfig::default(),
            metrics.clone(),
            tx,
            async { tokio::time::sleep(Duration::from_secs(3600)).await },
        ));
        let obs = rx.recv().await.unwrap();
        // Three 800 ms probes in one round take 800 ms, not 2.4 s.
        assert_eq!(started.elapsed(), Duration::from_millis(800));
        assert_eq!(obs.up, Some(want), "{policy}");
        let summary: Vec<(&str, bool, Option<&str>)> = obs
            .targets
            .iter()
            .map(|t| (t.target.as_str(), t.up, t.error.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", true, None),
                ("b", false, Some("fake down")),
                ("c", true, None)
            ]
        );
        assert!(obs
            .targets
            .iter()
            .all(|t| t.duration == Duration::from_millis(800)));
        assert_eq!(
            metrics.failures.with_label_values(&["a", "target"]).get(),
            0
        );
        assert_eq!(
            metrics.failures.with_label_values(&["b", "target"]).get(),
            1
        );
        assert_eq!(metrics.failures.with_label_values(&["b", "local"]).get(), 0);
        assert_eq!(
            metrics
                .duration
                .with_label_values(&["c"])
                .get_sample_count(),
            1
        );
        runner.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn rogue_probe_is_cut_off_by_the_safety_net() {
    let rogue = Arc::new(Fake {
        name: "rogue".into(),
        calls: Mutex::new(vec![]),
        delay: Duration::from_secs(3600),
        up: true,
        rogue: true,
        local: false,
    });
    let (tx, mut rx) = mpsc::channel(1);
    let config = RunConfig {
        timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let runner = spawn_run(
        vec![rogue as Arc<dyn Probe>],
        Policy::Any,
        config,
        PowerMetrics::new().unwrap(),
        tx,
    );
    let obs = rx.recv().await.unwrap();
    assert_eq!(obs.up, Some(false));
    assert_eq!(obs.targets[0].error.as_deref(), Some("timed out after 1s"));
    assert_eq!(
        obs.targets[0].duration,
        Duration::from_secs(1) + TIMEOUT_GRACE
    );
    runner.abort();
}

#[tokio::test(start_paused = true)]
async fn full_channel_drops_instead_of_piling_up() {
    let fake = Fake::new("a", true, Duration::ZERO);
    let (tx, mut rx) = mpsc::channel(1);
    let metrics = PowerMetrics::new().unwrap();
    let runner = spawn_run(
        dyns(std::slice::from_ref(&fake)),
        Policy::Any,
        RunConfig {
            jitter_fraction: 0.0,
            ..Default::default()
        },
        metrics.clone(),
        tx,
    );
    // Nobody reads for ten rounds.
    tokio::time::sleep(Duration::from_secs(52)).await;
    assert_eq!(
        fake.calls().len(),
        11,
        "probing goes on while the consumer is stuck"
    );
    assert_eq!(
        metrics
            .duration
            .with_label_values(&["a"])
            .get_sample_count(),
        11
    );
    // Only one observation is queued: the first one.
    let first = rx.recv().await.unwrap();
    assert!(rx.try_recv().is_err());
    // The next one is fresh.
    let next = rx.recv().await.unwrap();
    assert!(next.at >= first.at);
    assert_eq!(fake.calls().len(), 12);
    runner.abort();
}

#[tokio::test(start_paused = true)]
async fn stops_on_shutdown_and_on_closed_receiver() {
    // Shutdown in the middle of a round.
    let slow = Fake::new("slow", true, Duration::from_secs(3));
    let (tx, _rx) = mpsc::channel(1);
    let config = RunConfig {
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let started = Instant::now();
    run(
        dyns(&[slow]),
        Policy::Any,
        config,
        PowerMetrics::new().unwrap(),
        tx,
        tokio::time::sleep(Duration::from_secs(1)),
    )
    .await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    // Receiver gone: the loop ends after the first round.
    let fake = Fake::new("a", true, Duration::ZERO);
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    run(
        dyns(std::slice::from_ref(&fake)),
        Policy::Any,
        RunConfig::default(),
        PowerMetrics::new().unwrap(),
        tx,
        futures::future::pending(),
    )
    .await;
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_targets_report_up_and_zero_interval_is_clamped() {
    let (tx, mut rx) = mpsc::channel(8);
    let config = RunConfig {
        interval: Duration::ZERO,
        jitter_fraction: 0.0,
        timeout: Duration::ZERO,
    };
    let started = Instant::now();
    let runner = spawn_run(
        vec![],
        Policy::All,
        config,
        PowerMetrics::new().unwrap(),
        tx,
    );
    let a = rx.recv().await.unwrap();
    let b = rx.recv().await.unwrap();
    assert!(a.up == Some(true) && b.up == Some(true) && a.targets.is_empty());
    assert_eq!(started.elapsed(), MIN_INTERVAL);
    runner.abort();
}

#[tokio::test(start_paused = true)]
async fn local_errors_are_unknown_and_never_votes() {
    let up = || Fake::new("up", true, Duration::from_millis(1));
    let down = || Fake::new("down", false, Duration::from_millis(1));
    let broken = || Fake::broken("broken");
    // (targets, policy, expected round result)
    let cases: Vec<(Vec<Arc<Fake>>, Policy, Option<bool>)> = vec![
        (vec![broken()], Policy::Any, None),
        (vec![broken(), broken()], Policy::All, None),
        (vec![broken(), up()], Policy::All, Some(true)),
        (vec![broken(), down()], Policy::Any, Some(false)),
        (vec![broken(), broken(), up()], Policy::Majority, Some(true)),
        (vec![broken(), up(), down()], Policy::Majority, Some(false)),
        (vec![broken(), up(), down()], Policy::Any, Some(true)),
    ];
    for (fakes, policy, want) in cases {
        let (tx, mut rx) = mpsc::channel(1);
        let metrics = PowerMetrics::new().unwrap();
        let runner = spawn_run(
            dyns(&fakes),
            policy,
            RunConfig::default(),
            metrics.clone(),
            tx,
        );
        let obs = rx.recv().await.unwrap();
        let names: Vec<&str> = fakes.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(obs.up, want, "{policy} {names:?}");
        for t in &obs.targets {
            let local = t.target == "broken";
            assert_eq!(t.unknown, local, "{t:?}");
            assert_eq!(t.outcome() == Outcome::Unknown, local);
            if local {
                assert!(!t.up);
                assert!(
                    t.error.as_deref().unwrap_or("").contains("os error 24"),
                    "{t:?}"
                );
            }
        }
        let local = metrics
            .failures
            .with_label_values(&["broken", "local"])
            .get();
        let target = metrics
            .failures
            .with_label_values(&["broken", "target"])
            .get();
        if names.contains(&"broken") {
            assert!(local >= 1 && target == 0, "{local} {target}");
        }
        runner.abort();
    }
}

#[test]
fn battery_reaches_the_machine_only_from_a_down_round() {
    let s = |secs: u64| Some(Duration::from_secs(secs));
    let t = |name: &str, outcome: Outcome, ups: Option<UpsReading>| TargetResult {
        target: name.into(),
        up: outcome == Outcome::Up,
        unknown: outcome == Outcome::Unknown,
        duration: Duration::ZERO,
        error: None,
        ups,
    };
    let ob = |urgent, runtime| {
        Some(UpsReading {
            on_battery: true,
            urgent,
            runtime,
        })
    };
    let ol = Some(UpsReading {
        on_battery: false,
        urgent: false,
        runtime: s(900),
    });
    let a = t("nut://a/ups", Outcome::Down, ob(false, s(300)));
    let b = t("nut://b/ups", Outcome::Down, ob(true, s(500)));
    let c = t("nut://c/ups", Outcome::Down, ob(false, None));
    let up = t("nut://d/ups", Outcome::Up, ol);
    let raw = t("icmp://pdu", Outcome::Down, None);
    let battery = |urgent, runtime| Some(Battery { urgent, runtime });
    // (targets, round result, battery the machine gets)
    let cases: Vec<(Vec<TargetResult>, Option<bool>, Option<Battery>)> = vec![
        (vec![a.clone()], Some(false), battery(false, s(300))),
        // Mains up by the policy: no battery, whatever a UPS says.
        (vec![b.clone(), up.clone()], Some(true), None),
        (vec![a.clone()], None, None),
        (
            vec![a.clone(), b.clone()],
            Some(false),
            battery(true, s(300)),
        ),
        (vec![c.clone()], Some(false), battery(false, None)),
        (vec![c, a.clone()], Some(false), battery(false, s(300))),
        // A dark raw-mains device carries no battery.
        (vec![raw.clone()], Some(false), None),
        (vec![raw, a], Some(false), battery(false, s(300))),
        // An up UPS (policy "all" down because of another) adds nothing.
        (vec![up], Some(false), None),
    ];
    for (targets, round, want) in cases {
        let names: Vec<&str> = targets.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(battery_of(&targets, round), want, "{names:?} {round:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_nut_probe_cut_off_by_the_safety_net_is_unknown() {
    struct Stuck;
    impl Probe for Stuck {
        fn target(&self) -> &str {
            "nut://stuck/ups"
        }
        fn probe(&self, _: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
            Box::pin(futures::future::pending())
        }
        fn overrun(&self, t: Duration) -> ProbeError {
            ProbeError::NoReading(format!("upsd did not answer within {t:?}"))
        }
    }
    let (tx, mut rx) = mpsc::channel(1);
    let runner = spawn_run(
        vec![Arc::new(Stuck) as Arc<dyn Probe>],
        Policy::Any,
        RunConfig::default(),
        PowerMetrics::new().unwrap(),
        tx,
    );
    let obs = rx.recv().await.unwrap();
    assert_eq!(obs.up, None, "unknown, not down");
    assert!(obs.targets[0].unknown);
    assert_eq!(obs.battery, None);
    runner.abort();
}

#[test]
fn outcome_of_errors() {
    use std::io::Error;
    let io = |code: i32| ProbeError::Io {
        what: "connect to 10.0.0.1:22".into(),
        err: Error::from_raw_os_error(code),
    };
    assert_eq!(Outcome::of(&Ok(())), Outcome::Up);
    // EMFILE, ENFILE, ENOBUFS, ENOMEM, EACCES, EPERM, EAFNOSUPPORT, EPROTONOSUPPORT
    for code in [24, 23, 105, 12, 13, 1, 97, 93] {
        assert_eq!(
            Outcome::of(&Err(io(code))),
            Outcome::Unknown,
            "errno {code}"
        );
    }
    // ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, ETIMEDOUT, ECONNRESET
    for code in [111, 113, 101, 99, 110, 104] {
        assert_eq!(Outcome::of(&Err(io(code))), Outcome::Down, "errno {code}");
    }
    assert_eq!(
        Outcome::of(&Err(ProbeError::Local("x".into()))),
        Outcome::Unknown
    );
    assert_eq!(
        Outcome::of(&Err(ProbeError::NoReading("ERR DATA-STALE".into()))),
        Outcome::Unknown
    );
    for e in [
        ProbeError::Timeout(Duration::from_secs(1)),
        ProbeError::Down("HTTP status 500".into()),
        ProbeError::Protocol("garbage".into()),
        ProbeError::Resolve {
            host: "pdu".into(),
            reason: "NXDOMAIN".into(),
        },
    ] {
        assert_eq!(Outcome::of(&Err(e)), Outcome::Down);
    }
    assert_eq!(Outcome::Unknown.vote(), None);
    assert_eq!(Outcome::Down.vote(), Some(false));
}

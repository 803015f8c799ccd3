//! Scenarios through the supervisor, on a paused tokio clock: no test sleeps
//! in real time, minutes of machine-room time pass in milliseconds.
//!
//! Observations arrive every 5 s with ±10 % jitter (seeded), like the power
//! probe's. Shutdowns are counted through the dry-run marker file or, where
//! the command itself matters, through real `sh -c` commands appending to a
//! file in a temporary directory.

use coolmesh_agent::fsm::{
    Event, ExecRecord, FsmConfig, Input, Machine, Millis, PeerView, PowerReading, Reason, State,
};
use coolmesh_agent::persist::{self, Persisted};
use coolmesh_agent::shutdown::{ExecStats, Executor, ShutdownConfig};
use coolmesh_agent::supervisor::{Supervisor, SupervisorStats, TokioClock};
use coolmesh_agent::thermal::{time_to_critical, ThermalSummary};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const T0: u64 = 1_700_000_000_000;
const BOOT: &str = "boot-1";
const PROBE: Duration = Duration::from_secs(5);

fn secs(m: Millis) -> f64 {
    (m.0 as f64 - T0 as f64) / 1000.0
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// One machine room timeline with one agent's state directory.
struct World {
    dir: tempfile::TempDir,
    start: Instant,
    fsm: FsmConfig,
    shutdown: ShutdownConfig,
    boot: String,
}

/// A running agent.
struct Agent {
    events: mpsc::Sender<Event>,
    state: watch::Receiver<Machine>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Machine>,
    stats: Arc<SupervisorStats>,
    exec: Arc<ExecStats>,
    notified: Arc<AtomicU64>,
}

impl World {
    /// Dry-run with a marker file, default state machine.
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("marker");
        World {
            start: Instant::now(),
            fsm: FsmConfig::default(),
            shutdown: ShutdownConfig {
                command: vec!["true".into()],
                dry_run: true,
                dry_run_marker: Some(marker),
                ..ShutdownConfig::default()
            },
            boot: BOOT.into(),
            dir,
        }
    }

    /// Real commands instead of dry-run.
    fn with_command(mut self, command: Vec<String>) -> World {
        self.shutdown.command = command;
        self.shutdown.dry_run = false;
        self.shutdown.dry_run_marker = None;
        self
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.file(name)).map_or(0, |s| s.lines().count())
    }

    fn marker_lines(&self) -> usize {
        self.lines("marker")
    }

    fn elapsed(&self) -> f64 {
        Instant::now().duration_since(self.start).as_secs_f64()
    }

    async fn start(&self) -> Agent {
        self.start_with(None).await
    }

    /// [`start`](Self::start), taking new timers from `updates` (a config
    /// reload).
    async fn start_with(&self, updates: Option<watch::Receiver<FsmConfig>>) -> Agent {
        let clock = TokioClock::starting_at(Millis(T0), self.start);
        let exec = Executor::new(self.shutdown.clone());
        let exec_stats = Arc::clone(exec.stats());
        let notified = Arc::new(AtomicU64::new(0));
        let n = Arc::clone(&notified);
        let sup = Supervisor::new(self.fsm.clone(), exec, self.state_dir(), clock)
            .expect("valid config")
            .with_boot_id(Some(self.boot.clone()))
            .on_notify(move |_| {
                n.fetch_add(1, Ordering::Relaxed);
            });
        let sup = match updates {
            Some(u) => sup.with_config_updates(u),
            None => sup,
        };
        let state = sup.subscribe();
        let stats = sup.stats();
        let (tx, rx) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sup.run(rx, async move {
            let _ = stopped.await;
        }));
        // Let it load its state and publish. Yields, not a sleep: while a
        // real command runs, tokio does not advance paused time.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        Agent {
            events: tx,
            state,
            stop,
            task,
            stats,
            exec: exec_stats,
            notified,
        }
    }
}

impl Agent {
    fn machine(&self) -> Machine {
        self.state.borrow().clone()
    }

    async fn send(&self, ev: Event) {
        self.events.send(ev).await.expect("agent running");
        // Let the supervisor take it at this very instant.
        tokio::task::yield_now().await;
    }

    async fn stop(self) -> Machine {
        let _ = self.stop.send(());
        self.task.await.expect("supervisor task")
    }
}

/// What the agent looked like after each observation.
#[derive(Default)]
struct Trace {
    /// (seconds since the world's start, state, reason)
    samples: Vec<(f64, State, Reason)>,
}

impl Trace {
    fn ever(&self, s: State) -> bool {
        self.samples.iter().any(|x| x.1 == s)
    }

    /// Seconds of the first observation after which the state was `s`.
    fn first(&self, s: State) -> Option<f64> {
        self.samples.iter().find(|x| x.1 == s).map(|x| x.0)
    }
}

/// Send an observation every 5 s ± 10 % until `end` seconds since the
/// world's start; `f(t)` is the world at `t`.
async fn drive(
    w: &World,
    a: &Agent,
    rng: &mut StdRng,
    end: f64,
    f: impl Fn(f64) -> Input,
) -> Trace {
    let mut trace = Trace::default();
    loop {
        let next = PROBE.mul_f64(rng.random_range(0.9..=1.1));
        // Stop before the probe that would land after `end`, so that the
        // next `drive` continues the same probe cadence.
        if w.elapsed() + next.as_secs_f64() > end {
            return trace;
        }
        tokio::time::sleep(next).await;
        let t = w.elapsed();
        a.send(Event::Observe(f(t))).await;
        let m = a.machine();
        trace.samples.push((t, m.state, m.reason));
    }
}

fn power(up: bool) -> Input {
    Input {
        power: Some(PowerReading::from(up)),
        ..Input::default()
    }
}

/// Time passes with ticks only (no observations).
async fn wait(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

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

/// Record every distinct `last_attempt_at` the agent publishes.
fn watch_attempts(a: &Agent) -> Arc<Mutex<Vec<Millis>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    let mut rx = a.state.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let at = rx.borrow_and_update().exec.last_attempt_at;
            if let Some(at) = at {
                let mut v = out.lock().expect("lock");
                if v.last() != Some(&at) {
                    v.push(at);
                }
            }
        }
    });
    seen
}

#[tokio::test(start_paused = true)]
async fn failing_command_is_logged_counted_and_retried_with_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = World::new().with_command(sh(&format!("echo x >> '{}'; exit 1", runs.display())));
    let a = w.start().await;
    let attempts = watch_attempts(&a);
    let mut rng = StdRng::seed_from_u64(8);
    drive(&w, &a, &mut rng, 320.0, |t| power(t < 10.0)).await;
    assert_eq!(a.machine().state, State::Shutdown);
    let decided = secs(a.machine().since);
    // Ten more minutes: retries at +5, +10, +20, +40, +80, +160 s.
    wait(decided + 600.0 - w.elapsed()).await;
    let m = a.machine();
    let n = std::fs::read_to_string(&runs)
        .expect("runs")
        .lines()
        .count() as u32;
    assert_eq!(n, 7, "1 + 6 retries in 10 minutes");
    assert_eq!((m.exec.attempts, m.exec.failures), (n, n));
    assert!(m.exec.issued && !m.exec.done && !m.exec.in_flight);
    assert!(
        m.exec
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("exit status: 1")),
        "{:?}",
        m.exec.last_error
    );
    assert_eq!(a.exec.command_runs.load(Ordering::Relaxed), u64::from(n));
    assert_eq!(
        a.exec.command_failures.load(Ordering::Relaxed),
        u64::from(n)
    );
    // Backoff: 5 s doubling.
    let times: Vec<f64> = attempts
        .lock()
        .expect("lock")
        .iter()
        .map(|t| secs(*t))
        .collect();
    assert_eq!(times.len(), n as usize);
    assert!(
        (times[0] - decided).abs() < 0.002,
        "first attempt at the decision"
    );
    let gaps: Vec<f64> = times.windows(2).map(|p| p[1] - p[0]).collect();
    for (gap, want) in gaps.iter().zip([5.0, 10.0, 20.0, 40.0, 80.0, 160.0]) {
        assert!((gap - want).abs() < 0.002, "gaps {gaps:?}");
    }
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn command_that_starts_working_is_not_run_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let r = runs.display();
    // Fails twice, then succeeds.
    let w = World::new().with_command(sh(&format!(
        "echo x >> '{r}'; [ \"$(wc -l < '{r}')\" -ge 3 ]"
    )));
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(9);
    drive(&w, &a, &mut rng, 2000.0, |t| power(t < 10.0)).await;
    let m = a.stop().await;
    assert_eq!(
        std::fs::read_to_string(&runs)
            .expect("runs")
            .lines()
            .count(),
        3
    );
    assert_eq!(
        (m.exec.attempts, m.exec.failures, m.exec.done),
        (3, 2, true)
    );
}

#[tokio::test(start_paused = true)]
async fn pre_command_runs_first_and_its_failure_does_not_block_the_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let l = log.display();
    let mut w = World::new().with_command(sh(&format!("echo \"cmd $COOLMESH_REASON\" >> '{l}'")));
    w.shutdown.pre_command = Some(sh(&format!("echo pre >> '{l}'; exit 4")));
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(10);
    drive(&w, &a, &mut rng, 400.0, |t| power(t < 10.0)).await;
    let m = a.stop().await;
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "pre\ncmd power\n"
    );
    assert!(m.exec.pre_command_done && m.exec.done);
    assert_eq!(m.exec.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn restart_in_pre_fail_keeps_the_deadline() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(11);
    let down = |t: f64| power(t < 60.0);
    let trace = drive(&w, &a, &mut rng, 200.0, down).await;
    let first_fail = trace.first(State::PreFail).expect("pre_fail");
    let before = a.stop().await;
    assert_eq!(before.state, State::PreFail);
    let deadline = before.deadline.expect("deadline");
    assert!((secs(deadline) - (first_fail + 300.0)).abs() < 0.002);
    // The agent is down for 30 s, then comes back.
    wait(30.0).await;
    let a = w.start().await;
    let m = a.machine();
    assert_eq!(
        (m.state, m.deadline, m.reason),
        (State::PreFail, Some(deadline), Reason::Power)
    );
    drive(&w, &a, &mut rng, 900.0, down).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Shutdown);
    assert_eq!(
        m.since, deadline,
        "shut down at the original deadline, not a fresh grace"
    );
    assert_eq!(w.marker_lines(), 1);
}

#[tokio::test(start_paused = true)]
async fn restart_with_an_expired_pre_fail_deadline_waits_one_probe_round() {
    // Same boot (an agent restart), the deadline passed while the agent was
    // down. Without any observation it shuts down after restore_wait, never
    // at once; a good observation in that round starts a recovery instead.
    let w = World::new();
    let a = w.start().await;
    a.send(Event::Observe(power(false))).await;
    let deadline = a.machine().deadline.expect("deadline");
    a.stop().await;
    wait(400.0).await; // the agent was down past the deadline
    let a = w.start().await;
    let m = a.machine();
    assert_eq!(m.state, State::PreFail, "not at once: {}", m.detail);
    assert!(m.unconfirmed);
    assert_eq!(w.marker_lines(), 0);
    let restarted = w.elapsed();
    wait(w.fsm.restore_wait.as_secs_f64() + 1.0).await;
    let m = a.machine();
    assert_eq!(m.state, State::Shutdown);
    assert_eq!(m.deadline, Some(deadline));
    assert!(secs(m.since) - restarted <= w.fsm.restore_wait.as_secs_f64() + 1.0);
    assert_eq!(w.marker_lines(), 1);
    a.stop().await;

    // The same, but mains came back while the agent was down: the first
    // probe round sees it, and the recovery completes.
    let w = World::new();
    let a = w.start().await;
    a.send(Event::Observe(power(false))).await;
    a.stop().await;
    wait(400.0).await;
    let a = w.start().await;
    a.send(Event::Observe(power(true))).await;
    wait(4.0).await;
    a.send(Event::Observe(power(true))).await;
    wait(600.0).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Normal, "{}", m.detail);
    assert_eq!(w.marker_lines(), 0);
}

#[tokio::test(start_paused = true)]
async fn restart_after_the_command_ran_never_runs_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let mut w = World::new().with_command(sh(&format!("echo x >> '{}'", runs.display())));
    let count = || std::fs::read_to_string(&runs).map_or(0, |s| s.lines().count());
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(12);
    drive(&w, &a, &mut rng, 400.0, |t| power(t < 10.0)).await;
    a.stop().await;
    assert_eq!(count(), 1);
    // Same boot (the agent crashed or was restarted by the watchdog).
    for _ in 0..3 {
        let a = w.start().await;
        drive(&w, &a, &mut rng, w.elapsed() + 600.0, |_| power(false)).await;
        let m = a.stop().await;
        assert_eq!((m.state, m.exec.attempts), (State::Shutdown, 1));
        assert_eq!(count(), 1, "never twice");
    }
    // Another boot: the machine was powered off and came back.
    w.boot = "boot-2".into();
    let a = w.start().await;
    let m = a.machine();
    assert_eq!(m.state, State::Normal);
    assert!(
        m.detail.contains("booted again after the shutdown"),
        "{}",
        m.detail
    );
    assert!(!m.exec.issued);
    // And it guards the machine again.
    drive(&w, &a, &mut rng, w.elapsed() + 400.0, |_| power(false)).await;
    assert_eq!(a.stop().await.state, State::Shutdown);
    assert_eq!(count(), 2);
}

fn persisted_shutdown(exec: ExecRecord) -> Persisted {
    let m = Machine {
        state: State::Shutdown,
        reason: Reason::Power,
        since: Millis(T0),
        deadline: Some(Millis(T0)),
        exec,
        ..Machine::default()
    };
    Persisted::new(m, Some(BOOT.into()), Millis(T0))
}

#[tokio::test(start_paused = true)]
async fn restart_between_the_decision_and_the_command_runs_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = World::new().with_command(sh(&format!("echo x >> '{}'", runs.display())));
    persist::store(&w.state_dir(), &persisted_shutdown(ExecRecord::default())).expect("store");
    for _ in 0..2 {
        let a = w.start().await;
        wait(60.0).await;
        let m = a.stop().await;
        assert!(m.exec.done);
        assert_eq!(
            std::fs::read_to_string(&runs)
                .expect("runs")
                .lines()
                .count(),
            1
        );
    }
}

#[tokio::test(start_paused = true)]
async fn restart_with_an_attempt_in_flight_retries_after_the_command_timeout() {
    // Same boot: the machine is still up, so the attempt that was in flight
    // (killed with the agent) did not power it off. The restarted agent
    // gives a surviving attempt its timeout, then retries once.
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = World::new().with_command(sh(&format!("echo x >> '{}'", runs.display())));
    let mut exec = ExecRecord::default();
    exec.begin_attempt(Millis(T0));
    persist::store(&w.state_dir(), &persisted_shutdown(exec)).expect("store");
    let timeout = w.shutdown.command_timeout.as_secs_f64();
    let a = w.start().await;
    wait(timeout - 10.0).await;
    assert!(!runs.exists(), "not while the old attempt may still run");
    // The unknown outcome is counted (coolmesh_shutdown_command_outcome_unknown_total),
    // and it is not a failure of the command.
    assert_eq!(a.exec.outcome_unknown.load(Ordering::Relaxed), 1);
    assert_eq!(a.exec.command_failures.load(Ordering::Relaxed), 0);
    wait(20.0).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Shutdown);
    assert!(m.exec.done && !m.exec.in_flight, "{:?}", m.exec);
    assert_eq!(m.exec.attempts, 2);
    assert_eq!(
        std::fs::read_to_string(&runs)
            .expect("runs")
            .lines()
            .count(),
        1
    );
    // Done: another restart runs nothing, and knows every outcome.
    let a = w.start().await;
    wait(600.0).await;
    assert_eq!(a.exec.outcome_unknown.load(Ordering::Relaxed), 0);
    a.stop().await;
    assert_eq!(
        std::fs::read_to_string(&runs)
            .expect("runs")
            .lines()
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn stop_while_the_command_runs_leaves_it_in_flight_and_a_restart_retries_only_after_its_timeout(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // The command blocks until the test releases it.
    // (Only the first run blocks: a retry must not hang on the fifo.)
    let script = format!(
        "echo x >> '{r}'; [ \"$(wc -l < '{r}')\" -gt 1 ] || read line < '{f}'",
        r = runs.display(),
        f = fifo.display()
    );
    let w = World::new().with_command(sh(&script));
    persist::store(&w.state_dir(), &persisted_shutdown(ExecRecord::default())).expect("store");
    let a = w.start().await;
    // Real time, bounded: wait for the command to be running.
    for _ in 0..400 {
        if runs.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(runs.exists(), "command started");
    // The agent dies while the command runs (watchdog restart, OOM kill...).
    let m = a.stop().await;
    assert!(m.exec.in_flight);
    let rec = persist::load(&w.state_dir()).expect("load").expect("some");
    assert!(
        rec.machine.exec.in_flight && rec.machine.exec.issued,
        "persisted before spawning"
    );
    // Let the command finish, then restart the agent.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"go\n"))
        .expect("release the command");
    let count = || {
        std::fs::read_to_string(&runs)
            .expect("runs")
            .lines()
            .count()
    };
    let a = w.start().await;
    // Within the command timeout of that attempt: nothing new runs (it may
    // still be powering the machine off).
    let timeout = w.shutdown.command_timeout.as_secs_f64();
    wait(timeout - w.elapsed().min(timeout) - 5.0).await;
    assert_eq!(count(), 1, "not while the old attempt may still be at work");
    // The machine is still up well past it: the attempt did not take
    // effect, and the restarted agent runs the command once more.
    wait(600.0).await;
    let m = a.stop().await;
    assert_eq!((m.state, m.exec.attempts), (State::Shutdown, 2));
    assert!(m.exec.done);
    assert_eq!(count(), 2);
}

#[tokio::test(start_paused = true)]
async fn restart_after_a_recorded_failure_keeps_retrying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = World::new().with_command(sh(&format!("echo x >> '{}'", runs.display())));
    let mut exec = ExecRecord::default();
    exec.begin_attempt(Millis(T0));
    exec.finish_attempt(Err("exit status: 1".into()));
    persist::store(&w.state_dir(), &persisted_shutdown(exec)).expect("store");
    let a = w.start().await;
    wait(4.0).await;
    assert!(!runs.exists(), "waits for the backoff");
    wait(2.0).await;
    let m = a.stop().await;
    assert_eq!(
        (m.exec.attempts, m.exec.failures, m.exec.done),
        (2, 1, true)
    );
    assert_eq!(
        std::fs::read_to_string(&runs)
            .expect("runs")
            .lines()
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn corroboration_local_probe_failure_is_a_local_fault() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(13);
    let peers_up = PeerView {
        fresh_peers: 3,
        power_up: 3,
        power_down: 0,
        overheating: 0,
        ..PeerView::default()
    };
    let peers_down = PeerView {
        fresh_peers: 3,
        power_up: 0,
        power_down: 3,
        overheating: 0,
        ..PeerView::default()
    };
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

fn peers(up: u32, down: u32) -> PeerView {
    PeerView {
        fresh_peers: up + down,
        power_up: up,
        power_down: down,
        overheating: 0,
        ..PeerView::default()
    }
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
    let peers_up = PeerView {
        fresh_peers: 2,
        power_up: 2,
        power_down: 0,
        overheating: 0,
        ..PeerView::default()
    };
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
    // One of three peers heating, plus this node: 2 of 4, below the quorum of 3.
    let minority = |_t: f64| Input {
        power: Some(PowerReading::from(true)),
        thermal: heating,
        peers: PeerView {
            fresh_peers: 3,
            power_up: 3,
            power_down: 0,
            overheating: 1,
            ..PeerView::default()
        },
        battery: None,
    };
    let trace = drive(&w, &a, &mut rng, 1200.0, minority).await;
    assert!(!trace.ever(State::PreFail));
    // Two of three peers plus this node: 3 of 4.
    let quorum = |_t: f64| Input {
        power: Some(PowerReading::from(true)),
        thermal: heating,
        peers: PeerView {
            fresh_peers: 3,
            power_up: 3,
            power_down: 0,
            overheating: 2,
            ..PeerView::default()
        },
        battery: None,
    };
    let trace = drive(&w, &a, &mut rng, 1500.0, quorum).await;
    let pre_fail = trace.first(State::PreFail).expect("pre_fail");
    let m = a.stop().await;
    assert_eq!((m.state, m.reason), (State::Shutdown, Reason::Cooling));
    assert!((secs(m.since) - (pre_fail + 120.0)).abs() < 0.002);
    assert_eq!(w.marker_lines(), 1);
}

#[tokio::test(start_paused = true)]
async fn corrupt_state_file_starts_in_normal_and_keeps_the_evidence() {
    let w = World::new();
    std::fs::create_dir_all(w.state_dir()).expect("mkdir");
    std::fs::write(persist::state_path(&w.state_dir()), b"{not json").expect("write");
    let a = w.start().await;
    assert_eq!(a.machine().state, State::Normal);
    assert!(w.state_dir().join("fsm.json.corrupt").exists());
    // And it works: a transition writes a good file.
    a.send(Event::Observe(power(false))).await;
    let rec = persist::load(&w.state_dir()).expect("load").expect("some");
    assert_eq!(rec.machine.state, State::PreFail);
    assert_eq!(rec.boot_id.as_deref(), Some(BOOT));
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn dry_run_runs_nothing_but_records_the_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    let mut w = World::new();
    w.shutdown.command = sh(&format!("touch '{}'", ran.display()));
    w.shutdown.pre_command = Some(sh(&format!("touch '{}'", ran.display())));
    let a = w.start().await;
    a.send(Event::Observe(power(false))).await;
    wait(301.0).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Shutdown);
    assert!(
        m.exec.issued,
        "coolmesh_shutdown_executed is 1 in dry-run too"
    );
    assert!(!ran.exists());
    let marker = std::fs::read_to_string(w.file("marker")).expect("marker");
    assert_eq!(marker.lines().count(), 1);
    assert!(marker.contains("reason=power"), "{marker}");
}

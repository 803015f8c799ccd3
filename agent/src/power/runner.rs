//! The probe loop: all targets concurrently, once per jittered interval.
//!
//! Each round probes every target at once (one task, concurrent futures; no
//! thread per probe), applies the [`Policy`], records metrics and hands a
//! [`PowerObservation`] to the agent core. Rounds are scheduled start to
//! start: the next round starts `jittered(interval)` after the previous one
//! *started*, or at once if the round took longer than that (no catch-up
//! burst). The first round starts immediately, so the agent knows the power
//! state within one probe timeout of starting.
//!
//! Delivery uses `try_send` on the bounded channel: the probe loop never
//! waits for the consumer. If the channel is full, this round's observation
//! is dropped (logged, and the metrics are still updated); the consumer sees
//! at most `capacity` older observations before the next fresh one. If the
//! receiver is gone, the loop ends. A channel of capacity 1 to 4 is right.

use super::{metrics::PowerMetrics, policy::Policy, Probe, ProbeError, UpsReading};
use crate::fsm::Battery;
use futures::future::join_all;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Extra time the runner allows a probe beyond its own timeout before it
/// cancels it (a safety net; probes enforce their timeout themselves).
pub const TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// Shortest interval the runner will use, whatever it is given, so that a
/// zero interval cannot turn into a busy loop.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// What one probe says about its target (see the module documentation of
/// [`power`](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The target answered as configured.
    Up,
    /// The target, or the path to it, did not answer, or answered "not up".
    Down,
    /// The probe failed on this node ([`ProbeError::is_local`]): no vote.
    Unknown,
}

impl Outcome {
    /// The outcome of a probe result.
    pub fn of(res: &Result<(), ProbeError>) -> Outcome {
        match res {
            Ok(()) => Outcome::Up,
            Err(e) if e.is_unknown() => Outcome::Unknown,
            Err(_) => Outcome::Down,
        }
    }

    /// As a vote: `Some(up)`, or `None` for unknown.
    pub fn vote(self) -> Option<bool> {
        match self {
            Outcome::Up => Some(true),
            Outcome::Down => Some(false),
            Outcome::Unknown => None,
        }
    }
}

/// The result of one probe of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    /// The configured target string.
    pub target: String,
    /// Whether the probe saw the target up.
    pub up: bool,
    /// The probe failed with a local error ([`Outcome::Unknown`]): it says
    /// nothing about the target and is not a vote. `up` is false then.
    pub unknown: bool,
    /// How long the probe took.
    pub duration: Duration,
    /// Why it was not up (`None` when up).
    pub error: Option<String>,
    /// What a UPS said about its battery (NUT targets with a reading).
    pub ups: Option<UpsReading>,
}

impl TargetResult {
    /// The outcome of this probe.
    pub fn outcome(&self) -> Outcome {
        match (self.up, self.unknown) {
            (true, _) => Outcome::Up,
            (false, true) => Outcome::Unknown,
            (false, false) => Outcome::Down,
        }
    }
}

/// One round of probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerObservation {
    /// Wall-clock time at which the round finished.
    pub at: SystemTime,
    /// Per-target results, in configuration order.
    pub targets: Vec<TargetResult>,
    /// The policy applied to the targets that are not unknown (see
    /// [`Policy::evaluate_votes`]); `None` when every target is unknown: this
    /// node cannot tell, and that is neither "up" nor "down".
    pub up: Option<bool>,
    /// The battery of the UPSes that say "on battery", when the round is
    /// down ([`battery_of`]); `None` otherwise, so a battery reading never
    /// reaches the state machine while the policy sees mains.
    pub battery: Option<Battery>,
}

/// The battery the state machine should know of, for a round whose policy
/// result is `up`: `None` unless the round is down and at least one target
/// that is down is a UPS on battery; then urgent if any of them is, and the
/// shortest runtime any of them reports (the first UPS to run out takes
/// this server's power, or half of it, with it: the conservative reading).
pub fn battery_of(targets: &[TargetResult], up: Option<bool>) -> Option<Battery> {
    if up != Some(false) {
        return None;
    }
    let on_battery: Vec<UpsReading> = targets
        .iter()
        .filter(|t| t.outcome() == Outcome::Down)
        .filter_map(|t| t.ups)
        .filter(|u| u.on_battery)
        .collect();
    if on_battery.is_empty() {
        return None;
    }
    Some(Battery {
        urgent: on_battery.iter().any(|u| u.urgent),
        runtime: on_battery.iter().filter_map(|u| u.runtime).min(),
    })
}

/// Timing of the probe loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunConfig {
    /// Mean time between round starts (default 5 s).
    pub interval: Duration,
    /// Random jitter as a fraction of `interval` (default 0.1: each interval
    /// is uniform in ±10 %), so that servers do not probe in lockstep.
    pub jitter_fraction: f64,
    /// Per-probe timeout (default 1 s).
    pub timeout: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            jitter_fraction: 0.1,
            timeout: Duration::from_secs(1),
        }
    }
}

impl RunConfig {
    /// Check the configuration; the message names the offending setting.
    /// [`run`] also copes with invalid values (by clamping) but a config
    /// check should reject them.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < MIN_INTERVAL {
            return Err(format!(
                "power interval {:?} is too short (minimum {MIN_INTERVAL:?})",
                self.interval
            ));
        }
        if !(0.0..1.0).contains(&self.jitter_fraction) {
            return Err(format!(
                "power jitter fraction {} must be at least 0 and below 1",
                self.jitter_fraction
            ));
        }
        if self.timeout.is_zero() {
            return Err("power probe timeout must be above zero".into());
        }
        if self.timeout > self.interval {
            return Err(format!(
                "power probe timeout {:?} is longer than the interval {:?}",
                self.timeout, self.interval
            ));
        }
        Ok(())
    }
}

/// `interval` scaled by a uniform jitter: `sample` in `[0, 1]` maps linearly
/// onto `[interval * (1 - fraction), interval * (1 + fraction)]`. `fraction`
/// is clamped to `[0, 1]` and `sample` to `[0, 1]`; NaN counts as no jitter.
pub fn jittered(interval: Duration, fraction: f64, sample: f64) -> Duration {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let sample = if sample.is_nan() {
        0.5
    } else {
        sample.clamp(0.0, 1.0)
    };
    let factor = 1.0 + fraction * (2.0 * sample - 1.0);
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(interval)
}

/// Probe every target once, concurrently.
async fn round(
    probes: &[Arc<dyn Probe>],
    timeout: Duration,
    metrics: &PowerMetrics,
) -> Vec<TargetResult> {
    let futs = probes.iter().map(|p| async move {
        let started = Instant::now();
        let (res, ups) = tokio::time::timeout(timeout + TIMEOUT_GRACE, p.probe_ups(timeout))
            .await
            .unwrap_or_else(|_| (Err(p.overrun(timeout)), None));
        let duration = started.elapsed();
        let outcome = Outcome::of(&res);
        metrics.observe(p.target(), duration.as_secs_f64(), outcome);
        metrics.observe_ups(p.target(), ups);
        TargetResult {
            target: p.target().to_string(),
            up: outcome == Outcome::Up,
            unknown: outcome == Outcome::Unknown,
            duration,
            error: res.err().map(|e| e.to_string()),
            ups,
        }
    });
    join_all(futs).await
}

/// Log a target's result when it differs from its last one: a change of
/// state or of failure reason at info/warn, repeats at debug only.
fn log_result(r: &TargetResult, last: &mut Option<(bool, Option<String>)>) {
    let changed = last.as_ref() != Some(&(r.up, r.error.clone()));
    match (&r.error, changed) {
        (None, true) => {
            tracing::info!(power_target = %r.target, duration = ?r.duration, "power target up")
        }
        (Some(e), true) if r.unknown => {
            tracing::error!(power_target = %r.target, error = %e, "power probe failed on this node: result unknown, not counted as a vote")
        }
        (Some(e), true) => {
            tracing::warn!(power_target = %r.target, error = %e, "power target down")
        }
        (None, false) => {
            tracing::trace!(power_target = %r.target, duration = ?r.duration, "power target up")
        }
        (Some(e), false) => {
            tracing::debug!(power_target = %r.target, error = %e, "power target still down")
        }
    }
    *last = Some((r.up, r.error.clone()));
}

/// Probe `probes` until `shutdown` resolves or the receiver of `tx` is
/// dropped. See the module documentation for scheduling and delivery.
/// Metrics series are created for every target up front.
pub async fn run<S>(
    probes: Vec<Arc<dyn Probe>>,
    policy: Policy,
    config: RunConfig,
    metrics: PowerMetrics,
    tx: mpsc::Sender<PowerObservation>,
    shutdown: S,
) where
    S: Future<Output = ()>,
{
    let interval = config.interval.max(MIN_INTERVAL);
    let timeout = config.timeout.max(Duration::from_millis(1));
    for p in &probes {
        metrics.init_target(p.target());
    }
    let mut last: Vec<Option<(bool, Option<String>)>> = vec![None; probes.len()];
    let mut dropped: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        let targets = tokio::select! {
            t = round(&probes, timeout, &metrics) => t,
            () = &mut shutdown => return,
        };
        for (r, last) in targets.iter().zip(last.iter_mut()) {
            log_result(r, last);
        }
        let votes: Vec<Option<bool>> = targets.iter().map(|t| t.outcome().vote()).collect();
        let up = policy.evaluate_votes(&votes);
        let observation = PowerObservation {
            at: SystemTime::now(),
            battery: battery_of(&targets, up),
            up,
            targets,
        };
        match tx.try_send(observation) {
            Ok(()) => {
                if dropped > 0 {
                    tracing::info!(dropped, "power observations delivered again");
                    dropped = 0;
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if dropped == 0 {
                    tracing::warn!("power observation consumer is behind; dropping observations");
                }
                dropped += 1;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::info!("power observation receiver gone; stopping probes");
                return;
            }
        }
        let next = started + jittered(interval, config.jitter_fraction, rand::random::<f64>());
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
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
        let runner = tokio::spawn(run(
            vec![rogue as Arc<dyn Probe>],
            Policy::Any,
            config,
            PowerMetrics::new().unwrap(),
            tx,
            futures::future::pending(),
        ));
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
        let runner = tokio::spawn(run(
            dyns(std::slice::from_ref(&fake)),
            Policy::Any,
            RunConfig {
                jitter_fraction: 0.0,
                ..Default::default()
            },
            metrics.clone(),
            tx,
            futures::future::pending(),
        ));
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
        let runner = tokio::spawn(run(
            vec![],
            Policy::All,
            config,
            PowerMetrics::new().unwrap(),
            tx,
            futures::future::pending(),
        ));
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
            let runner = tokio::spawn(run(
                dyns(&fakes),
                policy,
                RunConfig::default(),
                metrics.clone(),
                tx,
                futures::future::pending(),
            ));
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
        let runner = tokio::spawn(run(
            vec![Arc::new(Stuck) as Arc<dyn Probe>],
            Policy::Any,
            RunConfig::default(),
            PowerMetrics::new().unwrap(),
            tx,
            futures::future::pending(),
        ));
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
}

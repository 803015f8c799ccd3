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
mod tests;

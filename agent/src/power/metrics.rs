//! Probe metrics owned by the runner. `coolmesh_power_target_up` and
//! `coolmesh_power_up` are snapshot gauges that the agent computes from the
//! last [`PowerObservation`](super::PowerObservation); they are not here.

use super::Outcome;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Histogram buckets for probe latency, in seconds: 1 ms (a LAN ping) to
/// 10 s (the longest sensible probe timeout).
pub const PROBE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `coolmesh_power_probe_duration_seconds{target}` and
/// `coolmesh_power_probe_failures_total{target,kind}`. Cheap to clone (the
/// vectors are shared). The `target` label is the configured target string,
/// so its cardinality is bounded by the configuration.
///
/// `kind` tells the two failures apart, because they mean opposite things:
/// `target` = the target did not answer or answered "not up" (a "power
/// down" vote); `local` = the probe failed on this node (`EMFILE`, a local
/// firewall, ...): the result is unknown and not a vote, and the agent, not
/// the power, needs attention.
#[derive(Clone, Debug)]
pub struct PowerMetrics {
    /// Duration of every probe, successful or not (a timed-out probe
    /// observes roughly the timeout).
    pub duration: HistogramVec,
    /// Probes that did not see the target up, by `kind` ([`KINDS`]).
    pub failures: IntCounterVec,
}

impl PowerMetrics {
    /// Create the (unregistered) metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "coolmesh_power_probe_duration_seconds",
                "Duration of power target probes.",
            )
            .buckets(PROBE_BUCKETS.to_vec()),
            &["target"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "coolmesh_power_probe_failures_total",
                "Power target probes that did not see the target up; kind=target: no or a negative answer (a down vote), kind=local: failed on this node, result unknown (no vote).",
            ),
            &["target", "kind"],
        )?;
        Ok(Self { duration, failures })
    }

    /// Register both metrics with `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        Ok(())
    }

    /// Create the series of `target` at zero, so that a failure counter
    /// exists (and `rate()` works) before the first failure.
    pub fn init_target(&self, target: &str) {
        let _ = self.duration.with_label_values(&[target]);
        for kind in KINDS {
            let _ = self.failures.with_label_values(&[target, kind]);
        }
    }

    /// Record one probe.
    pub fn observe(&self, target: &str, seconds: f64, outcome: Outcome) {
        self.duration.with_label_values(&[target]).observe(seconds);
        let kind = match outcome {
            Outcome::Up => return,
            Outcome::Down => KIND_TARGET,
            Outcome::Unknown => KIND_LOCAL,
        };
        self.failures.with_label_values(&[target, kind]).inc();
    }

    /// Failures of `target` of every kind.
    pub fn failures_of(&self, target: &str) -> u64 {
        KINDS
            .iter()
            .map(|k| self.failures.with_label_values(&[target, k]).get())
            .sum()
    }
}

/// `kind` of a failure the target caused (no answer, or "not up").
pub const KIND_TARGET: &str = "target";
/// `kind` of a failure on this node (the result is unknown).
pub const KIND_LOCAL: &str = "local";
/// Every `kind`, in exposition order.
pub const KINDS: [&str; 2] = [KIND_LOCAL, KIND_TARGET];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_buckets() {
        let m = PowerMetrics::new().unwrap();
        let reg = Registry::new();
        m.register(&reg).unwrap();
        assert!(m.register(&reg).is_err(), "double registration must fail");
        m.init_target("icmp://10.0.0.1");
        m.observe("tcp://10.0.0.2:22", 0.003, Outcome::Up);
        m.observe("tcp://10.0.0.2:22", 1.0, Outcome::Down);
        m.observe("tcp://10.0.0.2:22", 0.0001, Outcome::Unknown);
        m.observe("tcp://10.0.0.2:22", 0.0001, Outcome::Unknown);

        let families = reg.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "coolmesh_power_probe_duration_seconds",
                "coolmesh_power_probe_failures_total"
            ]
        );
        let failures = &families[1];
        let mut by_target: Vec<(String, String, f64)> = failures
            .get_metric()
            .iter()
            .map(|m| {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                (label("target"), label("kind"), m.get_counter().get_value())
            })
            .collect();
        by_target.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let row = |t: &str, k: &str, v: f64| (t.to_string(), k.to_string(), v);
        assert_eq!(
            by_target,
            [
                row("icmp://10.0.0.1", "local", 0.0),
                row("icmp://10.0.0.1", "target", 0.0),
                row("tcp://10.0.0.2:22", "local", 2.0),
                row("tcp://10.0.0.2:22", "target", 1.0),
            ]
        );
        assert_eq!(m.failures_of("tcp://10.0.0.2:22"), 3);
        let h = families[0]
            .get_metric()
            .iter()
            .find(|m| m.get_label()[0].value() == "tcp://10.0.0.2:22")
            .unwrap()
            .get_histogram();
        assert_eq!(h.get_sample_count(), 4);
        let bounds: Vec<f64> = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
        assert_eq!(bounds, PROBE_BUCKETS);
        assert_eq!(bounds.first(), Some(&0.001));
        assert_eq!(bounds.last(), Some(&10.0));
    }
}

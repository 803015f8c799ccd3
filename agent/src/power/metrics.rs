//! Probe metrics owned by the runner. `coolmesh_power_target_up` and
//! `coolmesh_power_up` are snapshot gauges that the agent computes from the
//! last [`PowerObservation`](super::PowerObservation); they are not here.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Histogram buckets for probe latency, in seconds: 1 ms (a LAN ping) to
/// 10 s (the longest sensible probe timeout).
pub const PROBE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `coolmesh_power_probe_duration_seconds{target}` and
/// `coolmesh_power_probe_failures_total{target}`. Cheap to clone (the
/// vectors are shared). The `target` label is the configured target string,
/// so its cardinality is bounded by the configuration.
#[derive(Clone, Debug)]
pub struct PowerMetrics {
    /// Duration of every probe, successful or not (a timed-out probe
    /// observes roughly the timeout).
    pub duration: HistogramVec,
    /// Probes that did not see the target up.
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
                "Power target probes that did not see the target up.",
            ),
            &["target"],
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
        let _ = self.failures.with_label_values(&[target]);
    }

    /// Record one probe.
    pub fn observe(&self, target: &str, seconds: f64, up: bool) {
        self.duration.with_label_values(&[target]).observe(seconds);
        if !up {
            self.failures.with_label_values(&[target]).inc();
        }
    }
}

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
        m.observe("tcp://10.0.0.2:22", 0.003, true);
        m.observe("tcp://10.0.0.2:22", 1.0, false);

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
        let by_target: Vec<(String, f64)> = failures
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_string(),
                    m.get_counter().get_value(),
                )
            })
            .collect();
        assert_eq!(
            by_target,
            [
                ("icmp://10.0.0.1".to_string(), 0.0),
                ("tcp://10.0.0.2:22".to_string(), 1.0)
            ]
        );
        let h = families[0]
            .get_metric()
            .iter()
            .find(|m| m.get_label()[0].value() == "tcp://10.0.0.2:22")
            .unwrap()
            .get_histogram();
        assert_eq!(h.get_sample_count(), 2);
        let bounds: Vec<f64> = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
        assert_eq!(bounds, PROBE_BUCKETS);
        assert_eq!(bounds.first(), Some(&0.001));
        assert_eq!(bounds.last(), Some(&10.0));
    }
}

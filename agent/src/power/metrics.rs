//! Probe metrics owned by the runner. `coolmesh_power_target_up` and
//! `coolmesh_power_up` are snapshot gauges that the agent computes from the
//! last [`PowerObservation`](super::PowerObservation); they are not here.

use super::{Outcome, UpsReading};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

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
    /// `coolmesh_power_ups_battery_runtime_seconds{target}`: the last
    /// `battery.runtime` a NUT target reported. No series while the UPS
    /// gives no reading (a stale value must not look current).
    pub ups_runtime: GaugeVec,
    /// `coolmesh_power_ups_battery_low{target}`: 1 while a NUT target is on
    /// battery with `LB` or `FSD` (urgent), 0 otherwise; no series without
    /// a reading.
    pub ups_low: IntGaugeVec,
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
        let ups_runtime = GaugeVec::new(
            Opts::new(
                "coolmesh_power_ups_battery_runtime_seconds",
                "Battery runtime the UPS of a nut:// power target reported in the last probe (its estimate at the present load); absent when the UPS gave no reading or reports no runtime.",
            ),
            &["target"],
        )?;
        let ups_low = IntGaugeVec::new(
            Opts::new(
                "coolmesh_power_ups_battery_low",
                "1 while the UPS of a nut:// power target is on battery with low battery (LB) or forced shutdown (FSD): shutdown as soon as the rules allow; absent without a reading.",
            ),
            &["target"],
        )?;
        Ok(Self {
            duration,
            failures,
            ups_runtime,
            ups_low,
        })
    }

    /// Record what a UPS said in one probe (`None`: no reading, or not a
    /// UPS: its series go away).
    pub fn observe_ups(&self, target: &str, ups: Option<UpsReading>) {
        match ups {
            Some(u) => {
                self.ups_low
                    .with_label_values(&[target])
                    .set(i64::from(u.urgent));
                match u.runtime {
                    Some(r) => self
                        .ups_runtime
                        .with_label_values(&[target])
                        .set(r.as_secs_f64()),
                    None => {
                        let _ = self.ups_runtime.remove_label_values(&[target]);
                    }
                }
            }
            None => {
                let _ = self.ups_low.remove_label_values(&[target]);
                let _ = self.ups_runtime.remove_label_values(&[target]);
            }
        }
    }

    /// Register the metrics with `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.ups_runtime.clone()))?;
        registry.register(Box::new(self.ups_low.clone()))?;
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

    /// Drop the series of a target no longer probed (a config reload that
    /// removed it), so that it does not linger as if still watched.
    pub fn forget_target(&self, target: &str) {
        let _ = self.duration.remove_label_values(&[target]);
        for kind in KINDS {
            let _ = self.failures.remove_label_values(&[target, kind]);
        }
        let _ = self.ups_runtime.remove_label_values(&[target]);
        let _ = self.ups_low.remove_label_values(&[target]);
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

        // No UPS reading yet: no UPS series at all.
        assert!(reg
            .gather()
            .iter()
            .all(|f| !f.name().starts_with("coolmesh_power_ups_")));
        let nut = "nut://localhost/ups";
        m.observe_ups(
            nut,
            Some(UpsReading {
                on_battery: true,
                urgent: true,
                runtime: Some(std::time::Duration::from_secs(95)),
            }),
        );
        assert_eq!(m.ups_runtime.with_label_values(&[nut]).get(), 95.0);
        assert_eq!(m.ups_low.with_label_values(&[nut]).get(), 1);
        // A stale UPS: the last values must not linger.
        m.observe_ups(nut, None);
        let left: Vec<String> = reg
            .gather()
            .iter()
            .filter(|f| f.name().starts_with("coolmesh_power_ups_"))
            .map(|f| format!("{} {}", f.name(), f.get_metric().len()))
            .collect();
        assert!(left.iter().all(|l| l.ends_with(" 0")), "{left:?}");

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

//! The snapshot collector: metrics whose values are computed at scrape time
//! from the agent's latest [`Snapshot`]. A sensor that disappears, or a peer
//! that leaves, vanishes from `/metrics` with the next snapshot; nothing has
//! to be unregistered.
//!
//! Per-peer series are capped (`max_peer_series`, default 256) so an agent's
//! series count stays bounded however large the room grows; cluster-wide
//! figures are aggregates.

use crate::model::{Snapshot, FSM_REASONS, FSM_STATES, PEER_STATES};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use std::sync::Arc;
use tokio::sync::watch;

/// Default cap on per-peer series.
pub const DEFAULT_MAX_PEER_SERIES: usize = 256;

struct Def {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const DEFS: &[Def] = &[
    Def {
        name: "coolmesh_temperature_celsius",
        help: "Current temperature of a sensor.",
        labels: &["chip", "sensor"],
    },
    Def {
        name: "coolmesh_temperature_max_celsius",
        help: "High (max) threshold of a sensor.",
        labels: &["chip", "sensor"],
    },
    Def {
        name: "coolmesh_temperature_critical_celsius",
        help: "Critical threshold of a sensor.",
        labels: &["chip", "sensor"],
    },
    Def {
        name: "coolmesh_source_up",
        help: "1 if the last read of the thermal source succeeded.",
        labels: &["source"],
    },
    Def {
        name: "coolmesh_source_duration_seconds",
        help: "Duration of the last read of the thermal source.",
        labels: &["source"],
    },
    Def {
        name: "coolmesh_source_readings",
        help: "Readings produced by the last read of the source.",
        labels: &["source"],
    },
    Def {
        name: "coolmesh_thermal_hottest_celsius",
        help: "Hottest plausible sensor of this node.",
        labels: &[],
    },
    Def {
        name: "coolmesh_thermal_headroom_celsius",
        help: "Minimum over sensors of critical minus current temperature.",
        labels: &[],
    },
    Def {
        name: "coolmesh_thermal_trend_celsius_per_minute",
        help: "Rate at which the temperature approaches critical, over the trend window.",
        labels: &[],
    },
    Def {
        name: "coolmesh_thermal_time_to_critical_seconds",
        help: "Projected time until a sensor reaches critical; absent unless rising.",
        labels: &[],
    },
    Def {
        name: "coolmesh_fsm_state",
        help: "1 for the current state of the shutdown state machine.",
        labels: &["state"],
    },
    Def {
        name: "coolmesh_fsm_reason",
        help: "1 for the reason of the current state.",
        labels: &["reason"],
    },
    Def {
        name: "coolmesh_shutdown_deadline_timestamp_seconds",
        help: "Unix time at which the pending shutdown fires; absent when none is pending.",
        labels: &[],
    },
    Def {
        name: "coolmesh_shutdown_executed",
        help: "1 once the shutdown command has been run (or logged, in dry-run).",
        labels: &[],
    },
    Def {
        name: "coolmesh_shutdown_dry_run",
        help: "1 if the agent runs in dry-run mode (shutdowns are logged, not run).",
        labels: &[],
    },
    Def {
        name: "coolmesh_maintenance_until_timestamp_seconds",
        help: "Unix time at which maintenance ends; absent outside maintenance.",
        labels: &[],
    },
    Def {
        name: "coolmesh_power_up",
        help: "Power policy result over all targets (1 = mains power seen up).",
        labels: &[],
    },
    Def {
        name: "coolmesh_power_target_up",
        help: "1 if the last probe of the power target succeeded.",
        labels: &["target"],
    },
    Def {
        name: "coolmesh_cluster_peers",
        help: "Known peers by liveness, this node not included.",
        labels: &["state"],
    },
    Def {
        name: "coolmesh_peer_up",
        help: "1 if the peer is alive (capped number of peers).",
        labels: &["peer"],
    },
    Def {
        name: "coolmesh_peer_headroom_celsius",
        help: "Thermal headroom of a peer (capped number of peers).",
        labels: &["peer"],
    },
    Def {
        name: "coolmesh_cluster_power_votes",
        help: "Fresh observations of a power target, this node included.",
        labels: &["target", "vote"],
    },
    Def {
        name: "coolmesh_cluster_overheating_peers",
        help: "Fresh nodes, this one included, overheating or heating fast.",
        labels: &[],
    },
    Def {
        name: "coolmesh_cluster_quorum",
        help: "Votes needed for a cluster-wide decision.",
        labels: &[],
    },
    Def {
        name: "coolmesh_counter_value",
        help: "Cluster-wide total of a CRDT counter.",
        labels: &["name"],
    },
    Def {
        name: "coolmesh_counter_local",
        help: "This node's slot of a CRDT counter.",
        labels: &["name"],
    },
];

/// Collects snapshot-derived metrics.
pub struct SnapshotCollector {
    rx: watch::Receiver<Arc<Snapshot>>,
    descs: Vec<Desc>,
    max_peer_series: usize,
}

impl SnapshotCollector {
    /// A collector reading `rx`, capping per-peer series at `max_peer_series`.
    pub fn new(
        rx: watch::Receiver<Arc<Snapshot>>,
        max_peer_series: usize,
    ) -> prometheus::Result<Self> {
        let descs = DEFS
            .iter()
            .map(|d| {
                Desc::new(
                    d.name.into(),
                    d.help.into(),
                    d.labels.iter().map(|s| s.to_string()).collect(),
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(SnapshotCollector {
            rx,
            descs,
            max_peer_series,
        })
    }
}

/// Accumulates one scrape's families in DEFS order.
struct Out {
    families: Vec<MetricFamily>,
}

impl Out {
    fn new() -> Self {
        let families = DEFS
            .iter()
            .map(|d| {
                let mut f = MetricFamily::default();
                f.set_name(d.name.to_string());
                f.set_help(d.help.to_string());
                f.set_field_type(MetricType::GAUGE);
                f
            })
            .collect();
        Out { families }
    }

    fn add(&mut self, name: &str, labels: &[&str], value: f64) {
        let Some(i) = DEFS.iter().position(|d| d.name == name) else {
            return;
        };
        let pairs = DEFS[i]
            .labels
            .iter()
            .zip(labels)
            .map(|(k, v)| {
                let mut p = LabelPair::default();
                p.set_name(k.to_string());
                p.set_value(v.to_string());
                p
            })
            .collect();
        let mut g = Gauge::default();
        g.set_value(value);
        let mut m = Metric::from_label(pairs);
        m.set_gauge(g);
        self.families[i].mut_metric().push(m);
    }

    fn opt(&mut self, name: &str, labels: &[&str], value: Option<f64>) {
        if let Some(v) = value {
            self.add(name, labels, v);
        }
    }
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// Build the families for one snapshot (the collector's body, public so the
/// golden tests and benchmarks can call it directly).
pub fn families(s: &Snapshot, max_peer_series: usize) -> Vec<MetricFamily> {
    let mut o = Out::new();
    for r in &s.readings {
        let l = [r.chip.as_str(), r.sensor.as_str()];
        o.add("coolmesh_temperature_celsius", &l, r.celsius);
        o.opt("coolmesh_temperature_max_celsius", &l, r.max_celsius);
        o.opt(
            "coolmesh_temperature_critical_celsius",
            &l,
            r.critical_celsius,
        );
    }
    for src in &s.sources {
        let l = [src.name.as_str()];
        o.add("coolmesh_source_up", &l, b(src.up));
        o.add("coolmesh_source_duration_seconds", &l, src.duration_seconds);
        o.add("coolmesh_source_readings", &l, src.readings as f64);
    }
    o.opt(
        "coolmesh_thermal_hottest_celsius",
        &[],
        s.thermal.hottest_celsius,
    );
    o.opt(
        "coolmesh_thermal_headroom_celsius",
        &[],
        s.thermal.headroom_celsius,
    );
    o.opt(
        "coolmesh_thermal_trend_celsius_per_minute",
        &[],
        s.thermal.trend_celsius_per_minute,
    );
    o.opt(
        "coolmesh_thermal_time_to_critical_seconds",
        &[],
        s.thermal.time_to_critical_seconds,
    );
    for st in FSM_STATES {
        o.add("coolmesh_fsm_state", &[st], b(s.fsm.state == st));
    }
    for r in FSM_REASONS {
        o.add("coolmesh_fsm_reason", &[r], b(s.fsm.reason == r));
    }
    o.opt(
        "coolmesh_shutdown_deadline_timestamp_seconds",
        &[],
        s.fsm.deadline_ms.map(|ms| ms as f64 / 1000.0),
    );
    o.add("coolmesh_shutdown_executed", &[], b(s.fsm.executed));
    o.add("coolmesh_shutdown_dry_run", &[], b(s.fsm.dry_run));
    o.opt(
        "coolmesh_maintenance_until_timestamp_seconds",
        &[],
        s.fsm.maintenance_until_ms.map(|ms| ms as f64 / 1000.0),
    );
    o.opt("coolmesh_power_up", &[], s.power.up.map(b));
    for t in &s.power.targets {
        o.add("coolmesh_power_target_up", &[t.target.as_str()], b(t.up));
    }
    for st in PEER_STATES {
        let n = s.cluster.peers.iter().filter(|p| p.liveness == st).count();
        o.add("coolmesh_cluster_peers", &[st], n as f64);
    }
    // Cap per-peer series; keep the most relevant ones (alive first, then by name)
    // so the cut is stable from scrape to scrape.
    let mut peers: Vec<_> = s.cluster.peers.iter().collect();
    peers.sort_by(|a, b| {
        (a.liveness != "alive")
            .cmp(&(b.liveness != "alive"))
            .then_with(|| a.node.cmp(&b.node))
    });
    for p in peers.into_iter().take(max_peer_series) {
        o.add(
            "coolmesh_peer_up",
            &[p.node.as_str()],
            b(p.liveness == "alive"),
        );
        o.opt(
            "coolmesh_peer_headroom_celsius",
            &[p.node.as_str()],
            p.thermal.headroom_celsius,
        );
    }
    for v in &s.cluster.power_votes {
        o.add(
            "coolmesh_cluster_power_votes",
            &[v.target.as_str(), "up"],
            f64::from(v.up),
        );
        o.add(
            "coolmesh_cluster_power_votes",
            &[v.target.as_str(), "down"],
            f64::from(v.down),
        );
    }
    o.add(
        "coolmesh_cluster_overheating_peers",
        &[],
        f64::from(s.cluster.overheating),
    );
    o.add("coolmesh_cluster_quorum", &[], f64::from(s.cluster.quorum));
    for c in &s.counters {
        o.add("coolmesh_counter_value", &[c.name.as_str()], c.value as f64);
        o.add("coolmesh_counter_local", &[c.name.as_str()], c.local as f64);
    }
    o.families
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
        .collect()
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Clone the Arc and release the watch lock at once: encoding must not
        // hold up the agent publishing the next snapshot.
        let snap = self.rx.borrow().clone();
        families(&snap, self.max_peer_series)
    }
}

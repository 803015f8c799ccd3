//! What the encode benchmarks share (`encode` and `encode_cpu`): the
//! snapshot, and the old `/metrics` path rebuilt for side-by-side runs.

use coolmesh_exporter::collector::families;
use coolmesh_exporter::metrics::encode_families;
use coolmesh_exporter::model::{
    ClusterStatus, CounterStatus, PeerStatus, PowerView, PowerVote, Reading, SourceStatus,
    TargetStatus, ThermalSummary,
};
use coolmesh_exporter::{BuildInfo, Metrics, Snapshot};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::Registry;
use std::sync::Arc;
use tokio::sync::watch;

/// An agent's snapshot with `sensors` readings (current, max and critical
/// each) and `peers` alive peers. 3200 sensors and 200 peers give about 10k
/// series; 64 and 100 are the scrape benchmark's state.
pub fn snapshot(sensors: usize, peers: usize) -> Snapshot {
    let now = 1_700_000_000_000;
    Snapshot {
        node: "bench-node".into(),
        peer_id: "12D3KooWBenchNodeBenchNodeBenchNodeBenchNodeBenchNode".into(),
        updated_ms: now,
        ready: true,
        readings: (0..sensors)
            .map(|i| Reading {
                chip: format!("platform_coretemp_{}", i / 16),
                sensor: format!("temp{}", i % 16 + 1),
                label: Some(format!("Core {}", i % 16)),
                celsius: 40.0 + (i % 30) as f64 * 0.5,
                max_celsius: Some(84.0),
                critical_celsius: Some(100.0),
                source: "file".into(),
                role: Default::default(),
            })
            .collect(),
        sources: vec![SourceStatus {
            name: "file".into(),
            up: true,
            duration_seconds: 0.0004,
            readings: sensors,
            error: None,
            last_read_ms: now,
        }],
        thermal: ThermalSummary {
            hottest_celsius: Some(54.5),
            headroom_celsius: Some(45.5),
            trend_celsius_per_minute: Some(0.2),
            time_to_critical_seconds: None,
            critical: false,
            ..Default::default()
        },
        power: PowerView {
            policy: "any".into(),
            up: Some(true),
            targets: vec![TargetStatus {
                target: "tcp://10.0.0.253:22".into(),
                up: true,
                unknown: false,
                duration_seconds: 0.0003,
                error: None,
            }],
            at_ms: now,
        },
        cluster: ClusterStatus {
            name: "room-1".into(),
            peers: (0..peers)
                .map(|i| PeerStatus {
                    node: format!("rack{:02}-srv{:02}", i / 20 + 1, i % 20 + 1),
                    peer_id: format!("12D3KooWPeer{i:040}"),
                    liveness: "alive".into(),
                    last_seen_ms: now,
                    version: now,
                    thermal: ThermalSummary {
                        headroom_celsius: Some(45.0 - (i % 10) as f64),
                        ..Default::default()
                    },
                    power_up: Some(true),
                    state: "normal".into(),
                    reason: "none".into(),
                    deadline_ms: None,
                    stale: false,
                    stage: 0,
                })
                .collect(),
            power_votes: vec![PowerVote {
                target: "tcp://10.0.0.253:22".into(),
                up: peers as u32 + 1,
                down: 0,
            }],
            overheating: 0,
            quorum: 2,
        },
        counters: [
            "overheat_events",
            "power_loss_events",
            "shutdowns",
            "probe_failures",
        ]
        .iter()
        .map(|n| CounterStatus {
            name: n.to_string(),
            value: 3,
            local: 1,
        })
        .collect(),
        ..Default::default()
    }
}

/// Number of samples (non-comment lines) of a text exposition page.
pub fn series(page: &[u8]) -> usize {
    String::from_utf8_lossy(page)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// `Metrics` serving `snap`, as the agent sets it up (identity set).
pub fn metrics(snap: &Snapshot) -> Metrics {
    let (_tx, rx) = watch::channel(Arc::new(snap.clone()));
    let build = BuildInfo {
        version: "0.1.0",
        revision: "bench",
        rustc: "unknown",
    };
    let m = Metrics::new(
        &build,
        rx,
        coolmesh_exporter::collector::DEFAULT_MAX_PEER_SERIES,
    )
    .expect("metrics");
    m.set_identity("bench-node", "room-1", &snap.peer_id);
    m
}

/// The `/metrics` path before the direct text writer: one registry gathering
/// the registered metrics and the protobuf snapshot families (`families`,
/// as the old `SnapshotCollector` did), then `TextEncoder`. Same page as
/// `Metrics::encode` (asserted by the benches and by
/// `tests/encode_equivalence.rs`).
pub struct OldPath {
    registry: Registry,
}

struct OldCollector {
    registered: Registry,
    snap: Arc<Snapshot>,
}

impl Collector for OldCollector {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut all = self.registered.gather();
        all.extend(families(
            &self.snap,
            coolmesh_exporter::collector::DEFAULT_MAX_PEER_SERIES,
        ));
        all
    }
}

impl OldPath {
    /// The old path over `m`'s registered metrics and `snap`.
    pub fn new(m: &Metrics, snap: &Snapshot) -> Self {
        let registry = Registry::new();
        registry
            .register(Box::new(OldCollector {
                registered: m.registry.clone(),
                snap: Arc::new(snap.clone()),
            }))
            .expect("register");
        OldPath { registry }
    }

    /// Encode the page the old way.
    pub fn encode(&self) -> Vec<u8> {
        encode_families(&self.registry.gather()).expect("encode")
    }
}

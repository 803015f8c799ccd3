//! Golden `/metrics` for the fixture sysfs tree, in the spirit of
//! node_exporter's `e2e-output.txt`: the exact exposition text, byte for
//! byte. Durations are pinned (they are the only non-deterministic values).
//!
//! Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p coolmesh --test golden_metrics`
//! and review the diff; CI also runs `promtool check metrics` on the file.

use coolmesh_agent::config::Config;
use coolmesh_agent::sampler::{read_all, SensorState};
use coolmesh_exporter::{BuildInfo, Metrics, Snapshot};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[tokio::test]
async fn metrics_for_fixture_tree_match_golden_file() {
    let mut cfg = Config::default();
    cfg.sensors.sysfs = fixtures().join("sysfs");
    let sources = coolmesh_agent::agent::build_sources(&cfg).expect("sources");
    let (readings, mut statuses) = read_all(&sources, Duration::from_secs(5), &[]).await;
    for s in &mut statuses {
        s.duration_seconds = 0.001;
        s.last_read_ms = 0;
    }
    let mut trend = coolmesh_agent::thermal::TrendWindow::new(Duration::from_secs(120), 10);
    trend.push(0.0, 57.0, Some(45.0));
    let thermal = trend.summarize(&readings);
    let state = SensorState {
        round: 1,
        readings,
        sources: statuses,
        thermal,
    };
    let mut snap = Snapshot {
        node: "fixture".into(),
        ..Default::default()
    };
    coolmesh_agent::snapshot::apply_sensors(&mut snap, &state);

    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(snap));
    let build = BuildInfo {
        version: "0.0.0-test",
        revision: "golden",
        rustc: "golden",
    };
    let metrics = Metrics::new(&build, rx, 256).expect("metrics");
    metrics.set_identity("fixture", "room-1", "12D3KooWfixture");
    let text = String::from_utf8(metrics.encode().expect("encode")).expect("utf8");

    let golden = fixtures().join("golden-metrics.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).expect("write golden");
    }
    let want =
        std::fs::read_to_string(&golden).expect("golden file (run with UPDATE_GOLDEN=1 once)");
    if text != want {
        let diff: Vec<String> = want
            .lines()
            .zip(text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  want {a}\n  got  {b}", i + 1))
            .collect();
        panic!(
            "/metrics differs from {}:\n{}\n(lines: want {}, got {})",
            golden.display(),
            diff.join("\n"),
            want.lines().count(),
            text.lines().count()
        );
    }
}

/// Target labels that Prometheus, Kubernetes service discovery, the
/// Prometheus Operator and multi-cluster setups (external labels) put on
/// every series. A scraped label of the same name is renamed `exported_*`
/// (or, with `honor_labels`, replaces the target's; an external label is not
/// applied to a series that has it), which breaks the rules' joins: the
/// agent must not use any of them (docs/metrics.md, "Labels").
const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "cluster",
    "node",
    "namespace",
    "pod",
    "container",
    "service",
    "endpoint",
    "region",
    "zone",
    "datacenter",
    "env",
    "host",
    "hostname",
];

#[test]
fn no_metric_label_collides_with_a_common_target_label() {
    let golden = std::fs::read_to_string(fixtures().join("golden-metrics.prom")).expect("golden");
    // The power probe metrics live outside the golden registry.
    let pm = coolmesh_agent::power::PowerMetrics::new().expect("power metrics");
    pm.duration.with_label_values(&["x"]).observe(0.1);
    pm.failures.with_label_values(&["x", "local"]).inc();
    let reg = prometheus::Registry::new();
    pm.register(&reg).expect("register");
    let power = prometheus::TextEncoder::new()
        .encode_to_string(&reg.gather())
        .expect("encode");
    let mut labels = std::collections::BTreeSet::new();
    for line in golden.lines().chain(power.lines()) {
        if line.starts_with('#') {
            continue;
        }
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((inner, _)) = rest.rsplit_once('}') else {
            continue;
        };
        // name="value",... (values in the golden file hold no `",`)
        for pair in inner.split("\",") {
            if let Some((name, _)) = pair.split_once('=') {
                labels.insert(name.trim().to_string());
            }
        }
    }
    assert!(labels.contains("coolmesh_cluster"), "{labels:?}");
    assert!(labels.contains("target"), "{labels:?}");
    let bad: Vec<&String> = labels
        .iter()
        .filter(|l| TARGET_LABELS.contains(&l.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "labels that collide with target labels: {bad:?}"
    );
}

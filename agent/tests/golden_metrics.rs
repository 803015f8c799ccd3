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

//! Encoding cost of `/metrics` (BENCHMARKS.md, benchmark 2).
//!
//!     cargo bench -p coolmesh-exporter --bench encode
//!
//! Goal: encoding 10k series takes <= 1 ms. A snapshot with 3200 sensors
//! (current, max and critical: 9600 series) and 200 alive peers (up and
//! headroom: 400 series) plus the fixed families gives about 10k series.
//! Measured paths:
//! - `families_and_encode/10k`: `collector::families` + `metrics::encode_families`,
//!   the scrape-time work of the snapshot collector;
//! - `families/10k`, `encode_families/10k`: the two halves;
//! - `registry_encode/10k`: `Metrics::encode` (registry gather, as `/metrics` does);
//! - `families_and_encode/scrape_state`: the scrape benchmark's state
//!   (64 sensors, 100 peers).

use coolmesh_exporter::collector::{families, DEFAULT_MAX_PEER_SERIES};
use coolmesh_exporter::metrics::encode_families;
use coolmesh_exporter::model::{
    ClusterStatus, CounterStatus, PeerStatus, PowerView, PowerVote, SensorReading, SourceStatus,
    TargetStatus, Thermal,
};
use coolmesh_exporter::{BuildInfo, Metrics, Snapshot};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;

fn snapshot(sensors: usize, peers: usize) -> Snapshot {
    let now = 1_700_000_000_000;
    Snapshot {
        node: "bench-node".into(),
        peer_id: "12D3KooWBenchNodeBenchNodeBenchNodeBenchNodeBenchNode".into(),
        updated_ms: now,
        ready: true,
        readings: (0..sensors)
            .map(|i| SensorReading {
                chip: format!("platform_coretemp_{}", i / 16),
                sensor: format!("temp{}", i % 16 + 1),
                label: Some(format!("Core {}", i % 16)),
                celsius: 40.0 + (i % 30) as f64 * 0.5,
                max_celsius: Some(84.0),
                critical_celsius: Some(100.0),
                source: "file".into(),
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
        thermal: Thermal {
            hottest_celsius: Some(54.5),
            headroom_celsius: Some(45.5),
            trend_celsius_per_minute: Some(0.2),
            time_to_critical_seconds: None,
            critical: false,
        },
        power: PowerView {
            policy: "any".into(),
            up: Some(true),
            targets: vec![TargetStatus {
                target: "tcp://10.0.0.253:22".into(),
                up: true,
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
                    thermal: Thermal {
                        headroom_celsius: Some(45.0 - (i % 10) as f64),
                        ..Default::default()
                    },
                    power_up: Some(true),
                    state: "normal".into(),
                    reason: "none".into(),
                    deadline_ms: None,
                    stale: false,
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
        counters: ["overheat_events", "power_loss_events", "shutdowns", "probe_failures"]
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

fn series(page: &[u8]) -> usize {
    String::from_utf8_lossy(page)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

fn bench(c: &mut Criterion) {
    let big = snapshot(3200, 200);
    let page = encode_families(&families(&big, DEFAULT_MAX_PEER_SERIES)).expect("encode");
    let n = series(&page);
    eprintln!("10k snapshot: {n} series, {} bytes", page.len());
    assert!((9_900..=10_200).contains(&n), "{n} series");

    let mut g = c.benchmark_group("families_and_encode");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| {
        b.iter(|| encode_families(&families(black_box(&big), DEFAULT_MAX_PEER_SERIES)))
    });
    let small = snapshot(64, 100);
    let small_n = series(&encode_families(&families(&small, DEFAULT_MAX_PEER_SERIES)).expect("e"));
    eprintln!("scrape-state snapshot: {small_n} series");
    g.throughput(Throughput::Elements(small_n as u64));
    g.bench_function("scrape_state", |b| {
        b.iter(|| encode_families(&families(black_box(&small), DEFAULT_MAX_PEER_SERIES)))
    });
    g.finish();

    let mut g = c.benchmark_group("families");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| {
        b.iter(|| families(black_box(&big), DEFAULT_MAX_PEER_SERIES))
    });
    g.finish();

    let fams = families(&big, DEFAULT_MAX_PEER_SERIES);
    let mut g = c.benchmark_group("encode_families");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| b.iter(|| encode_families(black_box(&fams))));
    g.finish();

    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(big.clone()));
    let build = BuildInfo {
        version: "0.1.0",
        revision: "bench",
        rustc: "unknown",
    };
    let metrics = Metrics::new(&build, rx, DEFAULT_MAX_PEER_SERIES).expect("metrics");
    let mut g = c.benchmark_group("registry_encode");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| b.iter(|| metrics.encode()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

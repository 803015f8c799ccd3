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
//!   (64 sensors, 100 peers);
//! - `direct_encode_prototype/10k`: a bench-only writer straight from the
//!   snapshot (common/mod.rs), asserted to produce the same bytes: what the
//!   exporter could reach without the protobuf intermediate.

use coolmesh_exporter::collector::{families, DEFAULT_MAX_PEER_SERIES};
use coolmesh_exporter::metrics::encode_families;
use coolmesh_exporter::{BuildInfo, Metrics};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;

mod common;
use common::{direct_encode, help_texts, series, snapshot};

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

    // A prototype writer straight from the snapshot (no protobuf values):
    // what the exporter could reach. Same bytes, checked here.
    let help = help_texts(&big);
    let mut direct = Vec::new();
    direct_encode(&big, DEFAULT_MAX_PEER_SERIES, &help, &mut direct);
    assert!(direct == page, "the prototype must write the same page");
    let mut g = c.benchmark_group("direct_encode_prototype");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1 << 20);
            direct_encode(black_box(&big), DEFAULT_MAX_PEER_SERIES, &help, &mut out);
            out
        })
    });
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

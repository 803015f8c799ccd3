//! Encoding cost of `/metrics` (BENCHMARKS.md, benchmark 2).
//!
//!     cargo bench -p coolmesh-exporter --bench encode
//!
//! Goal: encoding 10k series takes <= 1 ms. A snapshot with 3200 sensors
//! (current, max and critical: 9600 series) and 200 alive peers (up and
//! headroom: 400 series) plus the fixed families gives about 10k series.
//! Measured paths, side by side in one run:
//! - `metrics_encode/10k`: `Metrics::encode`, what `/metrics` does (the
//!   snapshot families written directly, the registered ones through
//!   `TextEncoder`);
//! - `old_registry_encode/10k`: the path it replaced, rebuilt in
//!   common/mod.rs (registry gather of the registered metrics and the
//!   protobuf `collector::families`, then `TextEncoder`); asserted to give
//!   the same page;
//! - `families_and_encode/10k`: `collector::families` +
//!   `metrics::encode_families` without the registry (the earlier table's
//!   headline figure, kept for comparison);
//! - `snapshot_text/10k`: `SnapshotText::write_all` alone (the snapshot
//!   families, no registered metrics);
//! - `*/scrape_state`: the scrape benchmark's state (64 sensors, 100 peers).

use coolmesh_exporter::collector::{families, SnapshotText, DEFAULT_MAX_PEER_SERIES};
use coolmesh_exporter::metrics::encode_families;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

mod common;
use common::{metrics, series, snapshot, OldPath};

fn bench(c: &mut Criterion) {
    let big = snapshot(3200, 200);
    let big_metrics = metrics(&big);
    let big_old = OldPath::new(&big_metrics, &big);
    let page = big_metrics.encode().expect("encode");
    assert!(
        page == big_old.encode(),
        "the old path must give the same page"
    );
    let n = series(&page);
    eprintln!("10k snapshot: {n} series, {} bytes", page.len());
    assert!((9_900..=10_200).contains(&n), "{n} series");

    let small = snapshot(64, 100);
    let small_metrics = metrics(&small);
    let small_old = OldPath::new(&small_metrics, &small);
    let small_page = small_metrics.encode().expect("encode");
    assert!(small_page == small_old.encode(), "same page");
    let small_n = series(&small_page);
    eprintln!("scrape-state snapshot: {small_n} series");

    // New and old alternate group by group, so both see the same machine.
    let mut g = c.benchmark_group("metrics_encode");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| b.iter(|| black_box(&big_metrics).encode()));
    g.throughput(Throughput::Elements(small_n as u64));
    g.bench_function("scrape_state", |b| {
        b.iter(|| black_box(&small_metrics).encode())
    });
    g.finish();

    let mut g = c.benchmark_group("old_registry_encode");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| b.iter(|| black_box(&big_old).encode()));
    g.throughput(Throughput::Elements(small_n as u64));
    g.bench_function("scrape_state", |b| {
        b.iter(|| black_box(&small_old).encode())
    });
    g.finish();

    let mut g = c.benchmark_group("snapshot_text");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(page.len());
            SnapshotText::new(black_box(&big), DEFAULT_MAX_PEER_SERIES).write_all(&mut out);
            out
        })
    });
    g.finish();

    let mut g = c.benchmark_group("families_and_encode");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("10k", |b| {
        b.iter(|| encode_families(&families(black_box(&big), DEFAULT_MAX_PEER_SERIES)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

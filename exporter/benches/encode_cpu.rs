//! Encoding cost of `/metrics` in CPU time rather than wall time.
//!
//!     cargo bench -p coolmesh-exporter --bench encode_cpu
//!
//! On a shared machine wall time includes the time other processes hold the
//! core (criterion's `encode` bench measures wall time). This runs each path
//! on the ~10k-series snapshot for about 5 s of wall time, in blocks, and
//! reports the process CPU time (utime + stime from /proc/self/stat, 10 ms
//! ticks) per encode next to the wall time per encode; their ratio shows how
//! much the machine's load inflated the wall-time figure. Paths (see
//! `encode.rs`): `metrics_encode` (what `/metrics` does), `old_registry_encode`
//! (the path it replaced, same page), `families_and_encode` (the earlier
//! headline figure). The 10k paths run twice, new and old alternating, so
//! both see the same machine.

use coolmesh_exporter::collector::{families, DEFAULT_MAX_PEER_SERIES};
use coolmesh_exporter::metrics::encode_families;
use coolmesh_exporter::Snapshot;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;
use common::{metrics, series, snapshot, OldPath};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // CLK_TCK is 100 on every Linux target this runs on.
    ticks as f64 / 100.0
}

#[derive(Clone, Copy)]
/// Which `/metrics` path to run (names as in `encode.rs`).
enum Path {
    Direct,
    OldRegistry,
    FamiliesOnly,
}

fn run(name: &str, snap: &Snapshot, path: Path, budget: Duration) {
    let m = metrics(snap);
    let old = OldPath::new(&m, snap);
    let encode = || -> Vec<u8> {
        match path {
            Path::Direct => m.encode().expect("encode"),
            Path::OldRegistry => old.encode(),
            Path::FamiliesOnly => {
                encode_families(&families(black_box(snap), DEFAULT_MAX_PEER_SERIES))
                    .expect("encode")
            }
        }
    };
    let page = encode();
    if !matches!(path, Path::FamiliesOnly) {
        // (families_and_encode keeps snapshot order within a family and has
        // no registered metrics: same series, not the same page.)
        assert!(
            m.encode().expect("encode") == old.encode(),
            "old and new paths must give the same page"
        );
    }
    let n = series(&page);
    // Warm up.
    for _ in 0..20 {
        black_box(encode());
    }
    let (w0, c0) = (Instant::now(), cpu_seconds());
    let mut iters = 0u64;
    while w0.elapsed() < budget {
        for _ in 0..10 {
            black_box(encode());
        }
        iters += 10;
    }
    let wall = w0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    println!(
        "{name}: {n} series, {} bytes; {iters} encodes; wall {:.3} ms/encode, CPU {:.3} ms/encode (CPU/wall {:.0}%)",
        page.len(),
        wall / iters as f64 * 1e3,
        cpu / iters as f64 * 1e3,
        cpu / wall * 100.0
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run briefly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let budget = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let big = snapshot(3200, 200);
    let small = snapshot(64, 100);
    run("metrics_encode/10k", &big, Path::Direct, budget);
    run("old_registry_encode/10k", &big, Path::OldRegistry, budget);
    run("families_and_encode/10k", &big, Path::FamiliesOnly, budget);
    run("old_registry_encode/10k", &big, Path::OldRegistry, budget);
    run("metrics_encode/10k", &big, Path::Direct, budget);
    run("metrics_encode/scrape_state", &small, Path::Direct, budget);
    run(
        "old_registry_encode/scrape_state",
        &small,
        Path::OldRegistry,
        budget,
    );
}

//! Encoding cost of `/metrics` in CPU time rather than wall time.
//!
//!     cargo bench -p coolmesh-exporter --bench encode_cpu
//!
//! On a shared machine wall time includes the time other processes hold the
//! core (criterion's `encode` bench measures wall time). This runs the same
//! work (`collector::families` + `metrics::encode_families` on the ~10k-series
//! snapshot) for about 5 s of wall time, in blocks, and reports the process
//! CPU time (utime + stime from /proc/self/stat, 10 ms ticks) per encode next
//! to the wall time per encode; their ratio shows how much the machine's
//! load inflated the wall-time figure. Also runs the bench-only
//! `direct_encode` prototype (common/mod.rs) on the same snapshot.

use coolmesh_exporter::collector::{families, DEFAULT_MAX_PEER_SERIES};
use coolmesh_exporter::metrics::encode_families;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;
use common::{direct_encode, help_texts, series, snapshot};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // CLK_TCK is 100 on every Linux target this runs on.
    ticks as f64 / 100.0
}

fn run(name: &str, sensors: usize, peers: usize, budget: Duration, prototype: bool) {
    let snap = snapshot(sensors, peers);
    let help = help_texts(&snap);
    let encode = |s: &coolmesh_exporter::Snapshot| -> Vec<u8> {
        if prototype {
            let mut out = Vec::with_capacity(1 << 20);
            direct_encode(s, DEFAULT_MAX_PEER_SERIES, &help, &mut out);
            out
        } else {
            encode_families(&families(s, DEFAULT_MAX_PEER_SERIES)).expect("encode")
        }
    };
    assert!(
        encode(&snap) == encode_families(&families(&snap, DEFAULT_MAX_PEER_SERIES)).expect("e"),
        "the prototype must write the same page"
    );
    let page = encode_families(&families(&snap, DEFAULT_MAX_PEER_SERIES)).expect("encode");
    let n = series(&page);
    // Warm up.
    for _ in 0..20 {
        black_box(encode(black_box(&snap)));
    }
    let (w0, c0) = (Instant::now(), cpu_seconds());
    let mut iters = 0u64;
    while w0.elapsed() < budget {
        for _ in 0..10 {
            black_box(encode(black_box(&snap)));
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
    run("families_and_encode/10k", 3200, 200, budget, false);
    run("families_and_encode/scrape_state", 64, 100, budget, false);
    run("direct_encode_prototype/10k", 3200, 200, budget, true);
}

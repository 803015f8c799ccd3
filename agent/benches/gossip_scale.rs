//! Gossip at scale: the real engine in virtual time (`tests/sim`), per-node
//! bandwidth, propagation and memory against N. BENCHMARKS.md section 8.
//!
//! ```text
//! cargo bench -p coolmesh --bench gossip_scale -- [--nodes 25,100,250,1000]
//!     [--idle-seconds 10] [--updates 20] [--latency-ms 5] [--jitter-ms 5]
//!     [--loss 0.0] [--seed 1] [--glomers]
//! ```
//!
//! For each N: a 5 s warm-up, an idle window (no changes besides the
//! protocol's own refreshes) in which every frame byte each node sends is
//! counted, then `--updates` single changes one second apart at random
//! nodes, each followed until every node holds it (the time to 99% and to
//! 100% of N). Heap per node is the live heap (a counting allocator) after
//! the warm-up divided by N: every node holds every member's record.
//! `--glomers` adds the Gossip Glomers load: N=25, 100 ms latency, 100
//! increments/s for 10 s, messages per operation and visibility latency,
//! for the hub and the overlay side by side.
//!
//! `--swim` measures SWIM membership (docs/scale.md, step 1) instead: each
//! member announces itself to 2 random others; the time until every member
//! sees every other, datagram bytes per node over an idle window, the time
//! until a silently crashed member is down on 99% and 100% of the others,
//! members wrongly declared down, and the heap per node.
//! `--swim-from-records` also gives every member the full member list at
//! the start, as the agent will from the records it holds.
//!
//! Results are figures of the simulation (no CPU or kernel cost, no
//! connection setup); the real-process runs in BENCHMARKS.md check them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rand::Rng;

#[path = "../tests/sim/mod.rs"]
mod sim;
use sim::{out_rates, percentile, NetConfig, Sim};

/// Counts live heap bytes, so memory per member is measured, not guessed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only
// a counter is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Args {
    nodes: Vec<usize>,
    idle_seconds: u64,
    updates: u64,
    latency_ms: u64,
    jitter_ms: u64,
    loss: f64,
    seed: u64,
    glomers: bool,
    overlay: bool,
    swim: bool,
    swim_from_records: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nodes: vec![25, 100, 250, 1000],
        idle_seconds: 10,
        updates: 20,
        latency_ms: 5,
        jitter_ms: 5,
        loss: 0.0,
        seed: 1,
        glomers: false,
        overlay: false,
        swim: false,
        swim_from_records: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        // `cargo bench` passes `--bench`; ignore it.
        if k == "--bench" {
            continue;
        }
        if k == "--overlay" {
            a.overlay = true;
            continue;
        }
        if k == "--glomers" {
            a.glomers = true;
            continue;
        }
        if k == "--swim" {
            a.swim = true;
            continue;
        }
        if k == "--swim-from-records" {
            a.swim = true;
            a.swim_from_records = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{k} {v}: {e}");
        match k.as_str() {
            "--nodes" => {
                a.nodes = v
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?;
                if a.nodes.iter().any(|n| *n < 2) {
                    return Err(format!("{k} {v}: at least 2 nodes"));
                }
            }
            "--idle-seconds" => a.idle_seconds = v.parse().map_err(|e| bad(&e))?,
            "--updates" => a.updates = v.parse().map_err(|e| bad(&e))?,
            "--latency-ms" => a.latency_ms = v.parse().map_err(|e| bad(&e))?,
            "--jitter-ms" => a.jitter_ms = v.parse().map_err(|e| bad(&e))?,
            "--loss" => a.loss = v.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if !(0.0..1.0).contains(&a.loss) {
        return Err(format!("--loss {}: must be in [0, 1)", a.loss));
    }
    Ok(a)
}

struct Scale {
    n: usize,
    mean_kib_s: f64,
    max_kib_s: f64,
    msgs_s_mean: f64,
    t99_p50: u64,
    t99_p99: u64,
    t100_p50: u64,
    t100_p99: u64,
    t100_max: u64,
    incomplete: usize,
    heap_per_node_mib: f64,
    heap_per_member_b: f64,
    wall_s: f64,
}

fn run_scale(n: usize, a: &Args) -> Scale {
    let wall = Instant::now();
    let heap0 = LIVE.load(Ordering::Relaxed);
    let net = NetConfig {
        latency_ms: a.latency_ms,
        jitter_ms: a.jitter_ms,
        loss: a.loss,
        partition: None,
    };
    let mut sim = Sim::new(n, net, a.seed);
    if a.overlay {
        sim = sim.with_swim(7_000);
    }
    sim.start();
    let warm = 5_000;
    sim.run_until(warm);
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(heap0) as f64;
    let idle_end = warm + a.idle_seconds * 1000;
    sim.measure = (warm, idle_end);
    sim.run_until(idle_end);
    let secs = a.idle_seconds.max(1) as f64;
    let (mean, max, msgs) = out_rates(&sim.bytes_out, &sim.msgs_out, secs);
    eprintln!("N={n} idle by kind (messages, KiB): {}", by_kind(&sim));
    // Single changes, one second apart, each at a random node.
    for k in 0..a.updates {
        let node = sim.rng.random_range(0..n);
        sim.op_at(idle_end + k * 1000, node);
    }
    let end = idle_end + a.updates * 1000 + 15_000;
    sim.run_until(end);
    let mut t99: Vec<u64> = Vec::new();
    let mut t100: Vec<u64> = Vec::new();
    let mut incomplete = 0;
    for op in sim.ops.values() {
        if let Some(t) = op.t99 {
            t99.push(t - op.at);
        }
        if op.seen >= n {
            t100.push(op.last - op.at);
        } else {
            incomplete += 1;
        }
    }
    t99.sort_unstable();
    t100.sort_unstable();
    Scale {
        n,
        mean_kib_s: mean,
        max_kib_s: max,
        msgs_s_mean: msgs,
        t99_p50: percentile(&t99, 50),
        t99_p99: percentile(&t99, 99),
        t100_p50: percentile(&t100, 50),
        t100_p99: percentile(&t100, 99),
        t100_max: t100.last().copied().unwrap_or(0),
        incomplete,
        heap_per_node_mib: heap / n as f64 / 1024.0 / 1024.0,
        heap_per_member_b: heap / (n * n) as f64,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

fn run_swim(n: usize, a: &Args) {
    use coolmesh_agent::cluster::swim::SwimConfig;
    let wall = Instant::now();
    let heap0 = LIVE.load(Ordering::Relaxed);
    let net = NetConfig {
        latency_ms: a.latency_ms,
        jitter_ms: a.jitter_ms,
        loss: a.loss,
        partition: None,
    };
    let cfg = SwimConfig {
        expected_members: n as u32,
        ..SwimConfig::default()
    };
    let mut sim = sim::swim::SwimSim::new(n, net, &cfg, a.seed, 2, a.swim_from_records);
    // Until every member sees every other (at most 120 s).
    let mut joined = None;
    for t in (500..=120_000).step_by(500) {
        sim.run_until(t);
        if sim.converged() == n {
            joined = Some(t);
            break;
        }
    }
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(heap0) as f64;
    let start = sim.now_ms;
    let end = start + a.idle_seconds * 1000;
    sim.measure = (start, end);
    sim.run_until(end);
    let secs = a.idle_seconds.max(1) as f64;
    let (mean, max, msgs) = out_rates(&sim.bytes_out, &sim.msgs_out, secs);
    let victim = sim.rng.random_range(0..n);
    let crash = end;
    sim.crash_at(crash, victim);
    sim.run_until(crash + 30_000);
    let mut seen: Vec<u64> = (0..n)
        .filter(|i| *i != victim)
        .filter_map(|i| sim.downs.get(&(i, victim)).map(|t| t - crash))
        .collect();
    seen.sort_unstable();
    let wrong = sim.downs.keys().filter(|(_, s)| *s != victim).count();
    println!(
        "| {n} | {} | {mean:.2} | {max:.2} | {:.1} | {msgs:.1} | {} / {} of {} | {wrong} | {:.2} | {:.0} |",
        joined.map_or("not in 120 s".to_string(), |t| format!("{:.1} s", t as f64 / 1000.0)),
        if mean > 0.0 { max / mean } else { 0.0 },
        percentile(&seen, 99),
        seen.last().copied().unwrap_or(0),
        seen.len(),
        heap / n as f64 / 1024.0 / 1024.0,
        wall.elapsed().as_secs_f64(),
    );
}

fn glomers(seed: u64, overlay: bool) {
    let n = 25;
    let mut sim = Sim::new(n, NetConfig::fixed(100), seed);
    if overlay {
        sim = sim.with_swim(7_000);
    }
    sim.start();
    let warm = 5_000;
    let seconds = 10;
    sim.measure = (warm, warm + seconds * 1000);
    let total = 100 * seconds;
    for _ in 0..total {
        let t = warm + sim.rng.random_range(0..seconds * 1000);
        let node = sim.rng.random_range(0..n);
        sim.op_at(t, node);
    }
    sim.run_until(warm + seconds * 1000 + 15_000);
    let mut lat: Vec<u64> = sim
        .ops
        .values()
        .filter(|op| op.seen >= n)
        .map(|op| op.last - op.at)
        .collect();
    lat.sort_unstable();
    println!(
        "glomers N=25 100ms 100 ops/s seed {seed} {}: ops visible everywhere {}/{total}, msgs/op {:.2}, median {} ms, p99 {} ms, max {} ms",
        if overlay { "overlay" } else { "hub" },
        lat.len(),
        sim.measured_messages as f64 / total as f64,
        percentile(&lat, 50),
        percentile(&lat, 99),
        lat.last().copied().unwrap_or(0),
    );
    println!("  by kind (messages, KiB): {}", by_kind(&sim));
}

/// Messages and KiB sent in the window by kind.
fn by_kind(sim: &Sim) -> String {
    sim.by_kind
        .iter()
        .map(|(k, (m, b))| format!("{k} {m} / {:.0}", *b as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gossip_scale: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "latency {} ms + 0..{} ms jitter, loss {}, idle window {} s, {} updates, seed {}",
        a.latency_ms, a.jitter_ms, a.loss, a.idle_seconds, a.updates, a.seed
    );
    if a.swim {
        println!("SWIM membership (docs/scale.md step 1)");
        println!("| N | all see all | out KiB/s mean | out KiB/s max | max/mean | msgs/s per node | crash down on 99% / 100% ms (of N-1) | alive declared down | heap per node MiB | wall s |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &n in &a.nodes {
            run_swim(n, &a);
        }
        return;
    }
    println!("| N | out KiB/s mean | out KiB/s max | max/mean | msgs/s per node | to 99%: p50 / p99 ms | to 100%: p50 / p99 / max ms | not everywhere | heap per node MiB | heap per member B | wall s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &a.nodes {
        let s = run_scale(n, &a);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} / {} | {} / {} / {} | {} | {:.2} | {:.0} | {:.0} |",
            s.n,
            s.mean_kib_s,
            s.max_kib_s,
            if s.mean_kib_s > 0.0 { s.max_kib_s / s.mean_kib_s } else { 0.0 },
            s.msgs_s_mean,
            s.t99_p50,
            s.t99_p99,
            s.t100_p50,
            s.t100_p99,
            s.t100_max,
            s.incomplete,
            s.heap_per_node_mib,
            s.heap_per_member_b,
            s.wall_s,
        );
    }
    if a.glomers {
        // Both designs side by side, whatever `--overlay` says.
        glomers(a.seed, false);
        glomers(a.seed, true);
    }
}

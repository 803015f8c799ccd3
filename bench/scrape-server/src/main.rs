//! Serve a synthetic agent snapshot through the exporter exactly as the agent
//! does (same `Metrics::new`, same `serve`, same 2-worker runtime), so that
//! `/metrics` of a large cluster can be load-tested on one machine.
//!
//!     coolmesh-scrape-server --listen 127.0.0.1:9990 --peers 100 --sensors 64
//!
//! Besides the snapshot families it registers the agent's other families
//! (power probe histogram and failures, gossip counters, the rejected
//! reasons) with the agent's names, labels and buckets, so the page has the
//! same shape and series count as a real agent's with that state.
//! Prints `listening on ADDR, N bytes, M series` and serves until SIGTERM.

use coolmesh_exporter::model::{
    ClusterStatus, CounterStatus, FsmView, PeerStatus, PowerView, PowerVote, Reading,
    SourceStatus, TargetStatus, ThermalSummary,
};
use coolmesh_exporter::{App, BuildInfo, Limits, Metrics, Snapshot};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use std::sync::Arc;
use tokio::sync::watch;

const PROBE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const REJECT_REASONS: &[&str] = &[
    "bad_signature",
    "foreign_slot",
    "malformed",
    "oversized",
    "unauthorized",
    "rate_limited",
    "handshake",
];

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A PeerId-looking string (base58 alphabet, 52 characters like an Ed25519 PeerId).
fn fake_peer_id(i: usize) -> String {
    const ALPHA: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut s = String::from("12D3KooW");
    for _ in 0..44 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(ALPHA[(x % ALPHA.len() as u64) as usize] as char);
    }
    s
}

/// The snapshot of an agent with `sensors` readings, `peers` alive peers, one
/// power target and the built-in counters plus one user counter.
pub fn snapshot(peers: usize, sensors: usize) -> Snapshot {
    let now = now_ms();
    let readings: Vec<Reading> = (0..sensors)
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
        .collect();
    let target = "tcp://10.0.0.253:22".to_string();
    let peer_list: Vec<PeerStatus> = (0..peers)
        .map(|i| PeerStatus {
            node: format!("rack{:02}-srv{:02}", i / 20 + 1, i % 20 + 1),
            peer_id: fake_peer_id(i),
            liveness: "alive".into(),
            last_seen_ms: now,
            version: now,
            thermal: ThermalSummary {
                hottest_celsius: Some(55.0 + (i % 10) as f64),
                headroom_celsius: Some(45.0 - (i % 10) as f64),
                trend_celsius_per_minute: Some(0.1),
                time_to_critical_seconds: None,
                critical: false,
                ..Default::default()
            },
            power_up: Some(true),
            state: "normal".into(),
            reason: "none".into(),
            deadline_ms: None,
            stale: false,
            stage: 0,
        })
        .collect();
    Snapshot {
        node: "bench-node".into(),
        peer_id: fake_peer_id(usize::MAX / 2),
        updated_ms: now,
        ready: true,
        readings,
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
        fsm: FsmView {
            state: "normal".into(),
            reason: "none".into(),
            detail: "power up".into(),
            since_ms: now,
            dry_run: true,
            stage: Default::default(),
            ..Default::default()
        },
        power: PowerView {
            policy: "any".into(),
            up: Some(true),
            targets: vec![TargetStatus {
                target: target.clone(),
                up: true,
                unknown: false,
                duration_seconds: 0.0003,
                error: None,
            }],
            at_ms: now,
        },
        cluster: ClusterStatus {
            name: "room-1".into(),
            peers: peer_list,
            power_votes: vec![PowerVote {
                target,
                up: peers as u32 + 1,
                down: 0,
            }],
            overheating: 0,
            // A majority of the peers plus this node.
            quorum: ((peers as u32).div_ceil(2) + 1).max(2),
        },
        counters: [
            "overheat_events",
            "power_loss_events",
            "shutdowns",
            "probe_failures",
            "jobs",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| CounterStatus {
            name: n.to_string(),
            value: 10 * i as i64,
            local: i as i64,
        })
        .collect(),
        // No roster: /metrics does not read it.
        roster: None,
    }
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen = arg(&args, "--listen", "127.0.0.1:9990");
    let peers: usize = arg(&args, "--peers", "100").parse()?;
    let sensors: usize = arg(&args, "--sensors", "64").parse()?;
    // The agent's runtime: multi-threaded, 2 workers (agent/cli/main.rs).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let snap = snapshot(peers, sensors);
        let (tx, rx) = watch::channel(Arc::new(snap));
        let build = BuildInfo {
            version: "0.1.0",
            revision: "bench",
            rustc: "unknown",
        };
        let metrics = Metrics::new(
            &build,
            rx.clone(),
            coolmesh_exporter::collector::DEFAULT_MAX_PEER_SERIES,
        )?;
        metrics.set_identity("bench-node", "room-1", &rx.borrow().peer_id);
        // The agent's other families, same names, labels and buckets.
        let probe = HistogramVec::new(
            HistogramOpts::new(
                "coolmesh_power_probe_duration_seconds",
                "Duration of power target probes.",
            )
            .buckets(PROBE_BUCKETS.to_vec()),
            &["target"],
        )?;
        probe
            .with_label_values(&["tcp://10.0.0.253:22"])
            .observe(0.0003);
        let failures = IntCounterVec::new(
            Opts::new(
                "coolmesh_power_probe_failures_total",
                "Power target probes that did not see the target up; kind=target: no or a negative answer (a down vote), kind=local: failed on this node, result unknown (no vote).",
            ),
            &["target", "kind"],
        )?;
        for kind in ["local", "target"] {
            failures.with_label_values(&["tcp://10.0.0.253:22", kind]);
        }
        let messages = IntCounterVec::new(
            Opts::new(
                "coolmesh_gossip_messages_total",
                "Gossip messages (requests and responses) by direction and kind.",
            ),
            &["direction", "kind"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "coolmesh_gossip_bytes_total",
                "Gossip frame bytes by direction.",
            ),
            &["direction"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "coolmesh_gossip_rejected_total",
                "Rejected gossip records, messages and connections by reason.",
            ),
            &["reason"],
        )?;
        for d in ["in", "out"] {
            for k in ["digest", "records", "push"] {
                messages.with_label_values(&[d, k]).inc_by(12345);
            }
            bytes.with_label_values(&[d]).inc_by(123_456_789);
        }
        for r in REJECT_REASONS {
            rejected.with_label_values(&[r]);
        }
        for c in [
            Box::new(probe) as Box<dyn prometheus::core::Collector>,
            Box::new(failures),
            Box::new(messages),
            Box::new(bytes),
            Box::new(rejected),
        ] {
            metrics.registry.register(c)?;
        }
        let page = metrics.encode()?;
        let series = String::from_utf8_lossy(&page)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!(
            "listening on {}, {} bytes, {} series",
            listener.local_addr()?,
            page.len(),
            series
        );
        let app = Arc::new(App {
            metrics,
            events: None,
            history: None,
            snapshot: rx,
            control: None,
            token: None.into(),
            limits: Limits::default(),
            web: None,
        });
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        coolmesh_exporter::serve(listener, app, stop).await?;
        drop(tx);
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

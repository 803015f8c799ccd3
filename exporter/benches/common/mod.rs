//! The snapshot the encode benchmarks use (shared by `encode` and `encode_cpu`).

use coolmesh_exporter::model::{
    ClusterStatus, CounterStatus, PeerStatus, PowerView, PowerVote, SensorReading, SourceStatus,
    TargetStatus, Thermal,
};
use coolmesh_exporter::Snapshot;

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

/// A prototype, for comparison only: the same text as
/// `encode_families(&families(s, max_peer_series))`, written straight into
/// `out` from the snapshot, without the protobuf `MetricFamily` values in
/// between. `help` maps each family name to its help text (taken from
/// `families` once, since the exporter's definitions are private). The
/// benches assert that both produce identical bytes.
pub fn direct_encode(
    s: &Snapshot,
    max_peer_series: usize,
    help: &std::collections::HashMap<String, String>,
    out: &mut Vec<u8>,
) {
    use std::io::Write;

    fn esc(out: &mut Vec<u8>, v: &str) {
        if !v.bytes().any(|b| b == b'\\' || b == b'\n' || b == b'"') {
            out.extend_from_slice(v.as_bytes());
            return;
        }
        for c in v.chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '"' => out.extend_from_slice(b"\\\""),
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }
    fn header(out: &mut Vec<u8>, help: &std::collections::HashMap<String, String>, name: &str) {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        let h = help.get(name).map(String::as_str).unwrap_or("");
        // Help text escaping: backslash and newline only.
        for c in h.chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b" gauge\n");
    }
    fn sample(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], v: f64) {
        out.extend_from_slice(name.as_bytes());
        if !labels.is_empty() {
            let mut sep = b'{';
            for (k, val) in labels {
                out.push(sep);
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"=\"");
                esc(out, val);
                out.push(b'"');
                sep = b',';
            }
            out.push(b'}');
        }
        out.push(b' ');
        let _ = write!(out, "{v}");
        out.push(b'\n');
    }
    fn b(v: bool) -> f64 {
        if v {
            1.0
        } else {
            0.0
        }
    }
    /// A family: header (only if it has samples) + samples.
    fn fam<'s>(
        out: &mut Vec<u8>,
        help: &std::collections::HashMap<String, String>,
        name: &str,
        samples: impl Iterator<Item = (Vec<(&'s str, &'s str)>, f64)>,
    ) {
        let mut first = true;
        for (labels, v) in samples {
            if first {
                header(out, help, name);
                first = false;
            }
            sample(out, name, &labels, v);
        }
    }
    // Readings: three families, labels chip and sensor.
    fn rl(r: &SensorReading) -> [(&'static str, &str); 2] {
        [("chip", r.chip.as_str()), ("sensor", r.sensor.as_str())]
    }
    for (name, get) in [
        (
            "coolmesh_temperature_celsius",
            (|r: &SensorReading| Some(r.celsius)) as fn(&SensorReading) -> Option<f64>,
        ),
        ("coolmesh_temperature_max_celsius", |r| r.max_celsius),
        ("coolmesh_temperature_critical_celsius", |r| {
            r.critical_celsius
        }),
    ] {
        let mut first = true;
        for r in &s.readings {
            if let Some(v) = get(r) {
                if first {
                    header(out, help, name);
                    first = false;
                }
                sample(out, name, &rl(r), v);
            }
        }
    }
    let src = |f: fn(&SourceStatus) -> f64| {
        s.sources
            .iter()
            .map(move |x| (vec![("source", x.name.as_str())], f(x)))
    };
    fam(out, help, "coolmesh_source_up", src(|x| b(x.up)));
    fam(
        out,
        help,
        "coolmesh_source_duration_seconds",
        src(|x| x.duration_seconds),
    );
    fam(
        out,
        help,
        "coolmesh_source_readings",
        src(|x| x.readings as f64),
    );
    let one = |v: Option<f64>| v.map(|v| (Vec::new(), v)).into_iter();
    fam(
        out,
        help,
        "coolmesh_thermal_hottest_celsius",
        one(s.thermal.hottest_celsius),
    );
    fam(
        out,
        help,
        "coolmesh_thermal_headroom_celsius",
        one(s.thermal.headroom_celsius),
    );
    fam(
        out,
        help,
        "coolmesh_thermal_trend_celsius_per_minute",
        one(s.thermal.trend_celsius_per_minute),
    );
    fam(
        out,
        help,
        "coolmesh_thermal_time_to_critical_seconds",
        one(s.thermal.time_to_critical_seconds),
    );
    use coolmesh_exporter::model::{FSM_REASONS, FSM_STATES, PEER_STATES};
    fam(
        out,
        help,
        "coolmesh_fsm_state",
        FSM_STATES
            .iter()
            .map(|st| (vec![("state", *st)], b(s.fsm.state == *st))),
    );
    fam(
        out,
        help,
        "coolmesh_fsm_reason",
        FSM_REASONS
            .iter()
            .map(|r| (vec![("reason", *r)], b(s.fsm.reason == *r))),
    );
    fam(
        out,
        help,
        "coolmesh_shutdown_deadline_timestamp_seconds",
        one(s.fsm.deadline_ms.map(|ms| ms as f64 / 1000.0)),
    );
    fam(
        out,
        help,
        "coolmesh_shutdown_executed",
        one(Some(b(s.fsm.executed))),
    );
    fam(
        out,
        help,
        "coolmesh_shutdown_dry_run",
        one(Some(b(s.fsm.dry_run))),
    );
    fam(
        out,
        help,
        "coolmesh_maintenance_until_timestamp_seconds",
        one(s.fsm.maintenance_until_ms.map(|ms| ms as f64 / 1000.0)),
    );
    fam(out, help, "coolmesh_power_up", one(s.power.up.map(b)));
    fam(
        out,
        help,
        "coolmesh_power_target_up",
        s.power
            .targets
            .iter()
            .map(|t| (vec![("target", t.target.as_str())], b(t.up))),
    );
    fam(
        out,
        help,
        "coolmesh_cluster_peers",
        PEER_STATES.iter().map(|st| {
            (
                vec![("state", *st)],
                s.cluster.peers.iter().filter(|p| p.liveness == *st).count() as f64,
            )
        }),
    );
    let mut peers: Vec<_> = s.cluster.peers.iter().collect();
    peers.sort_by(|a, b| {
        (a.liveness != "alive")
            .cmp(&(b.liveness != "alive"))
            .then_with(|| a.node.cmp(&b.node))
    });
    peers.truncate(max_peer_series);
    fam(
        out,
        help,
        "coolmesh_peer_up",
        peers
            .iter()
            .map(|p| (vec![("peer", p.node.as_str())], b(p.liveness == "alive"))),
    );
    fam(
        out,
        help,
        "coolmesh_peer_headroom_celsius",
        peers.iter().filter_map(|p| {
            p.thermal
                .headroom_celsius
                .map(|h| (vec![("peer", p.node.as_str())], h))
        }),
    );
    fam(
        out,
        help,
        "coolmesh_cluster_power_votes",
        s.cluster.power_votes.iter().flat_map(|v| {
            [
                (
                    vec![("target", v.target.as_str()), ("vote", "up")],
                    f64::from(v.up),
                ),
                (
                    vec![("target", v.target.as_str()), ("vote", "down")],
                    f64::from(v.down),
                ),
            ]
        }),
    );
    fam(
        out,
        help,
        "coolmesh_cluster_overheating_peers",
        one(Some(f64::from(s.cluster.overheating))),
    );
    fam(
        out,
        help,
        "coolmesh_cluster_quorum",
        one(Some(f64::from(s.cluster.quorum))),
    );
    fam(
        out,
        help,
        "coolmesh_counter_value",
        s.counters
            .iter()
            .map(|c| (vec![("name", c.name.as_str())], c.value as f64)),
    );
    fam(
        out,
        help,
        "coolmesh_counter_local",
        s.counters
            .iter()
            .map(|c| (vec![("name", c.name.as_str())], c.local as f64)),
    );
}

/// Family name -> help text, from the exporter's own families.
pub fn help_texts(s: &Snapshot) -> std::collections::HashMap<String, String> {
    coolmesh_exporter::collector::families(s, usize::MAX)
        .iter()
        .map(|f| (f.name().to_string(), f.help().to_string()))
        .collect()
}

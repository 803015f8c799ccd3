//! `/metrics` written directly (`Metrics::encode`: `SnapshotText` plus the
//! registry's own families through `TextEncoder`) must be byte for byte the
//! page the registry produced when it gathered the snapshot families itself
//! (protobuf `families` + `Registry::gather` + `TextEncoder`). That old path
//! is rebuilt here as the reference and compared on fixed hostile snapshots
//! and on random ones; the page is also parsed back line by line to check
//! that label values and values round-trip.

use coolmesh_exporter::collector::{families, DEFAULT_MAX_PEER_SERIES};
use coolmesh_exporter::metrics::encode_families;
use coolmesh_exporter::model::{
    ClusterStatus, CounterStatus, FsmView, PeerStatus, PowerView, PowerVote, Reading, SourceStatus,
    TargetStatus, ThermalSummary, FSM_REASONS, FSM_STATES, PEER_STATES,
};
use coolmesh_exporter::{BuildInfo, Metrics, Snapshot};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use proptest::prelude::*;
use std::sync::Arc;

/// The old `/metrics`: one registry gathering the registered families and
/// the protobuf snapshot families, sorted and merged by `gather`.
struct OldPath {
    registered: Registry,
    snap: Arc<Snapshot>,
    max_peer_series: usize,
}

impl Collector for OldPath {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut all = self.registered.gather();
        all.extend(families(&self.snap, self.max_peer_series));
        all
    }
}

fn reference(m: &Metrics, snap: &Snapshot, max_peer_series: usize) -> Vec<u8> {
    let r = Registry::new();
    r.register(Box::new(OldPath {
        registered: m.registry.clone(),
        snap: Arc::new(snap.clone()),
        max_peer_series,
    }))
    .expect("register");
    encode_families(&r.gather()).expect("encode")
}

/// Metrics as the agent sets them up: static metrics with values (hostile
/// label values included) and other registered families whose names sort
/// before, between and after the snapshot families.
fn metrics(snap: &Snapshot, max_peer_series: usize, hostile: &str) -> Metrics {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(snap.clone()));
    // The receiver reads the latest value even with the sender gone.
    drop(tx);
    let build = BuildInfo {
        version: "0.0.0-test",
        revision: "rev\"\\\n",
        rustc: "",
    };
    let m = Metrics::new(&build, rx, max_peer_series).expect("metrics");
    m.set_identity(hostile, "room-1", "12D3KooWtest");
    m.fsm_transitions
        .with_label_values(&["normal", hostile, "power"])
        .inc();
    m.fsm_transitions
        .with_label_values(&["normal", "pre_fail", "power"])
        .inc_by(3);
    let probe = HistogramVec::new(
        HistogramOpts::new(
            "coolmesh_power_probe_duration_seconds",
            "Duration of power target probes.",
        )
        .buckets(vec![0.001, 0.01, 0.1, 1.0]),
        &["target"],
    )
    .expect("histogram");
    probe.with_label_values(&[hostile]).observe(0.003);
    let first =
        IntCounterVec::new(Opts::new("aaa_first_total", "Sorts first."), &["x"]).expect("counter");
    first.with_label_values(&[hostile]).inc();
    let last = IntCounterVec::new(
        Opts::new("zzz_last_total", "Sorts last; help with \\ and \n."),
        &["x"],
    )
    .expect("counter");
    last.with_label_values(&["a"]).inc();
    let gossip = IntCounterVec::new(
        Opts::new("coolmesh_gossip_messages_total", "Gossip messages."),
        &["direction"],
    )
    .expect("counter");
    gossip.with_label_values(&["out"]).inc_by(7);
    for c in [
        Box::new(probe) as Box<dyn Collector>,
        Box::new(first),
        Box::new(last),
        Box::new(gossip),
    ] {
        m.registry.register(c).expect("register");
    }
    m
}

fn check(snap: &Snapshot, max_peer_series: usize, hostile: &str) {
    let m = metrics(snap, max_peer_series, hostile);
    let page = m.encode().expect("encode");
    let want = reference(&m, snap, max_peer_series);
    if page != want {
        let (a, b) = (
            String::from_utf8_lossy(&page),
            String::from_utf8_lossy(&want),
        );
        let line = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(a.lines().count().min(b.lines().count()));
        panic!(
            "pages differ at line {}:\n  got  {:?}\n  want {:?}",
            line + 1,
            a.lines().nth(line),
            b.lines().nth(line)
        );
    }
    roundtrip(&page, snap, max_peer_series);
    // A second scrape (buffer sized from the first) gives the same page.
    assert_eq!(m.encode().expect("encode"), page);
}

/// `(label name, label value)` pairs of one sample.
type Pairs = Vec<(String, String)>;

/// A minimal parser for the text format: `(name, labels, value)` per sample
/// line, label values unescaped.
fn parse(page: &str) -> Vec<(String, Pairs, f64)> {
    let mut out = Vec::new();
    for line in page.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line:?}"
            );
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("name");
        let name = line[..name_end].to_string();
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                let eq = rest.find("=\"").expect("label");
                let key = rest[..eq].to_string();
                let mut value = String::new();
                let mut chars = rest[eq + 2..].char_indices();
                let end = loop {
                    match chars.next().expect("unterminated label value") {
                        (i, '"') => break eq + 2 + i,
                        (_, '\\') => match chars.next().expect("escape") {
                            (_, 'n') => value.push('\n'),
                            (_, c @ ('\\' | '"')) => value.push(c),
                            (_, c) => panic!("bad escape \\{c} in {line:?}"),
                        },
                        (_, '\n') => panic!("raw newline"),
                        (_, c) => value.push(c),
                    }
                };
                labels.push((key, value));
                rest = &rest[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    rest = rest.strip_prefix('}').expect("}");
                    break;
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .expect("space")
            .parse()
            .expect("value");
        out.push((name, labels, value));
    }
    out
}

/// Every snapshot series parsed from the page equals the protobuf family's
/// (label values unescaped, values bit for bit up to NaN).
fn roundtrip(page: &[u8], snap: &Snapshot, max_peer_series: usize) {
    let parsed = parse(std::str::from_utf8(page).expect("utf8"));
    for f in families(snap, max_peer_series) {
        let mut want: Vec<(Pairs, f64)> = f
            .get_metric()
            .iter()
            .map(|m| {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                (labels, m.get_gauge().get_value())
            })
            .collect();
        want.sort_by(|a, b| {
            let va: Vec<_> = a.0.iter().map(|l| &l.1).collect();
            let vb: Vec<_> = b.0.iter().map(|l| &l.1).collect();
            va.cmp(&vb)
        });
        let got: Vec<_> = parsed
            .iter()
            .filter(|p| p.0 == f.name())
            .map(|p| (p.1.clone(), p.2))
            .collect();
        assert_eq!(got.len(), want.len(), "{}", f.name());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "{}", f.name());
            assert!(
                g.1.to_bits() == w.1.to_bits() || (g.1.is_nan() && w.1.is_nan()),
                "{}: {} != {}",
                f.name(),
                g.1,
                w.1
            );
        }
    }
}

const HOSTILE: &[&str] = &[
    "",
    "\"",
    "\\",
    "\n",
    "a\"b\\c\nd",
    "\\n",
    "\\\"",
    "é ü ∑ 🦀",
    "tab\there\r",
    "}{,=",
    "alive",
];

fn reading(chip: &str, sensor: &str, celsius: f64, max: Option<f64>) -> Reading {
    Reading {
        chip: chip.into(),
        sensor: sensor.into(),
        label: None,
        celsius,
        max_celsius: max,
        critical_celsius: Some(100.0),
        source: "file".into(),
        role: Default::default(),
    }
}

fn peer(node: &str, liveness: &str, headroom: Option<f64>) -> PeerStatus {
    PeerStatus {
        node: node.into(),
        peer_id: format!("12D3KooW{node}"),
        liveness: liveness.into(),
        last_seen_ms: 0,
        version: 0,
        thermal: ThermalSummary {
            headroom_celsius: headroom,
            ..Default::default()
        },
        power_up: None,
        state: "normal".into(),
        reason: "none".into(),
        deadline_ms: None,
        stale: false,
        stage: 0,
    }
}

/// A snapshot with every family present, hostile strings everywhere, every
/// special value, duplicate label sets and more peers than the cap.
fn hostile_snapshot() -> Snapshot {
    let specials = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        5e-324,
        1e300,
        -1e15,
        42.5,
        1.0 / 3.0,
        7.0,
    ];
    let mut readings = Vec::new();
    for (i, h) in HOSTILE.iter().enumerate() {
        let v = specials[i % specials.len()];
        readings.push(reading(h, "temp1", v, Some(v)));
        readings.push(reading("chip", h, -v, None));
    }
    // Duplicate label sets keep snapshot order.
    readings.push(reading("dup", "temp1", 1.0, Some(2.0)));
    readings.push(reading("dup", "temp1", 3.0, Some(4.0)));
    Snapshot {
        node: "n\"1".into(),
        readings,
        sources: HOSTILE
            .iter()
            .enumerate()
            .map(|(i, h)| SourceStatus {
                name: h.to_string(),
                up: i % 2 == 0,
                duration_seconds: specials[i % specials.len()],
                readings: i,
                error: None,
                last_read_ms: 0,
            })
            .collect(),
        thermal: ThermalSummary {
            hottest_celsius: Some(f64::NAN),
            headroom_celsius: Some(-0.0),
            trend_celsius_per_minute: Some(f64::INFINITY),
            time_to_critical_seconds: Some(1e-7),
            critical: false,
            ..Default::default()
        },
        fsm: FsmView {
            state: "pre_fail".into(),
            reason: "power".into(),
            deadline_ms: Some(1_700_000_000_123),
            maintenance_until_ms: Some(u64::MAX),
            executed: true,
            dry_run: true,
            stage: Default::default(),
            ..Default::default()
        },
        power: PowerView {
            policy: "any".into(),
            up: Some(false),
            targets: HOSTILE
                .iter()
                .map(|h| TargetStatus {
                    target: h.to_string(),
                    up: h.len() % 2 == 0,
                    unknown: h.len() % 3 == 0,
                    duration_seconds: 0.0,
                    error: None,
                })
                .collect(),
            at_ms: 0,
        },
        cluster: ClusterStatus {
            name: "room".into(),
            peers: HOSTILE
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let liveness = PEER_STATES[i % PEER_STATES.len()];
                    peer(h, liveness, Some(specials[i % specials.len()]))
                })
                .chain([peer("same", "alive", None), peer("same", "dead", Some(1.0))])
                .collect(),
            power_votes: HOSTILE
                .iter()
                .map(|h| PowerVote {
                    target: h.to_string(),
                    up: 3,
                    down: u32::MAX,
                })
                .collect(),
            overheating: 1,
            quorum: 2,
        },
        counters: HOSTILE
            .iter()
            .enumerate()
            .map(|(i, h)| CounterStatus {
                name: h.to_string(),
                value: i64::MAX - i as i64,
                local: i64::MIN + i as i64,
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn empty_snapshot() {
    check(&Snapshot::default(), DEFAULT_MAX_PEER_SERIES, "x");
}

#[test]
fn hostile_snapshot_every_cap() {
    let snap = hostile_snapshot();
    for cap in [0, 1, 3, 5, DEFAULT_MAX_PEER_SERIES] {
        for h in HOSTILE {
            check(&snap, cap, h);
        }
    }
}

#[test]
fn unknown_fsm_state_and_reason() {
    let mut snap = hostile_snapshot();
    snap.fsm.state = "\"weird\"\n".into();
    snap.fsm.reason = String::new();
    check(&snap, 2, "x");
}

#[test]
fn over_cap_peers_not_alive_first() {
    let mut snap = Snapshot::default();
    snap.cluster.peers = (0..300)
        .map(|i| {
            let liveness = if i % 3 == 0 { "alive" } else { "dead" };
            peer(&format!("p{}", 299 - i), liveness, Some(f64::from(i)))
        })
        .collect();
    check(&snap, DEFAULT_MAX_PEER_SERIES, "x");
    let peer_up = |cap: usize| -> Vec<String> {
        let m = metrics(&snap, cap, "x");
        let page = String::from_utf8(m.encode().expect("encode")).expect("utf8");
        page.lines()
            .filter(|l| l.starts_with("coolmesh_peer_up{"))
            .map(str::to_string)
            .collect()
    };
    // Under a cap of 10, the ten kept are dead ones (200 of the 300 are):
    // a lost peer is never hidden behind alive ones.
    let up = peer_up(10);
    assert_eq!(up.len(), 10, "{up:?}");
    assert!(up.iter().all(|l| l.ends_with("} 0")), "{up:?}");
    check(&snap, 10, "x");
    // Under the default cap of 256, all 200 dead peers are listed, and the
    // rest of the cap goes to alive ones.
    let up = peer_up(DEFAULT_MAX_PEER_SERIES);
    assert_eq!(up.len(), DEFAULT_MAX_PEER_SERIES);
    assert_eq!(up.iter().filter(|l| l.ends_with("} 0")).count(), 200);
    assert_eq!(up.iter().filter(|l| l.ends_with("} 1")).count(), 56);
}

#[test]
fn snapshot_names_cannot_be_registered_again() {
    let m = metrics(&Snapshot::default(), 4, "x");
    let dup = prometheus::IntGauge::new("coolmesh_peer_up", "Dup.").expect("gauge");
    assert!(m.registry.register(Box::new(dup)).is_err());
    // The registry itself no longer produces the snapshot families.
    assert!(m
        .registry
        .gather()
        .iter()
        .all(|f| f.name() != "coolmesh_fsm_state"));
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(HOSTILE).prop_map(str::to_string),
        "[ab]{0,2}",
        "(?s).{0,6}",
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            5e-324,
            f64::MAX,
            1e15,
            -1e15 + 1.0,
        ]),
        (-400i32..400).prop_map(|i| f64::from(i) * 0.25),
        any::<f64>(),
    ]
}

fn liveness() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(PEER_STATES.to_vec()).prop_map(str::to_string),
        1 => string(),
    ]
}

prop_compose! {
    fn arb_reading()(chip in string(), sensor in string(), c in float(),
                     max in proptest::option::of(float()),
                     crit in proptest::option::of(float())) -> Reading {
        Reading {
            chip, sensor, label: None, celsius: c, max_celsius: max,
            critical_celsius: crit, source: "file".into(),
            role: Default::default(),
        }
    }
}

prop_compose! {
    fn arb_peer()(node in string(), l in liveness(),
                  h in proptest::option::of(float())) -> PeerStatus {
        peer(&node, &l, h)
    }
}

prop_compose! {
    fn arb_snapshot()(
        readings in proptest::collection::vec(arb_reading(), 0..12),
        sources in proptest::collection::vec((string(), any::<bool>(), float(), 0usize..100), 0..4),
        thermal in proptest::array::uniform4(proptest::option::of(float())),
        state in prop_oneof![
            proptest::sample::select(FSM_STATES.to_vec()).prop_map(str::to_string),
            string(),
        ],
        reason in proptest::sample::select(FSM_REASONS.to_vec()),
        deadline in proptest::option::of(any::<u64>()),
        maintenance in proptest::option::of(any::<u64>()),
        flags in any::<(bool, bool)>(),
        power_up in proptest::option::of(any::<bool>()),
        targets in proptest::collection::vec((string(), any::<bool>()), 0..3),
        peers in proptest::collection::vec(arb_peer(), 0..10),
        votes in proptest::collection::vec((string(), any::<u32>(), any::<u32>()), 0..3),
        cluster in any::<(u32, u32)>(),
        counters in proptest::collection::vec((string(), any::<i64>(), any::<i64>()), 0..4),
    ) -> Snapshot {
        Snapshot {
            readings,
            sources: sources.into_iter().map(|(name, up, d, n)| SourceStatus {
                name, up, duration_seconds: d, readings: n, error: None, last_read_ms: 0,
            }).collect(),
            thermal: ThermalSummary {
                hottest_celsius: thermal[0],
                headroom_celsius: thermal[1],
                trend_celsius_per_minute: thermal[2],
                time_to_critical_seconds: thermal[3],
                critical: false,
                ..Default::default()
            },
            fsm: FsmView {
                state, reason: reason.into(), deadline_ms: deadline,
                maintenance_until_ms: maintenance, executed: flags.0, dry_run: flags.1,
                ..Default::default()
            },
            power: PowerView {
                up: power_up,
                targets: targets.into_iter().map(|(target, up)| TargetStatus {
                    target, up, unknown: false, duration_seconds: 0.0, error: None,
                }).collect(),
                ..Default::default()
            },
            cluster: ClusterStatus {
                peers,
                power_votes: votes.into_iter().map(|(target, up, down)| PowerVote {
                    target, up, down,
                }).collect(),
                overheating: cluster.0,
                quorum: cluster.1,
                ..Default::default()
            },
            counters: counters.into_iter().map(|(name, value, local)| CounterStatus {
                name, value, local,
            }).collect(),
            ..Default::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn direct_page_equals_registry_page(
        snap in arb_snapshot(),
        cap in prop_oneof![0usize..6, Just(DEFAULT_MAX_PEER_SERIES)],
        hostile in string(),
    ) {
        check(&snap, cap, &hostile);
    }
}

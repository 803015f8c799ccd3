//! Scrape-time metrics: the families whose values come from the agent's
//! latest [`Snapshot`]. A sensor that disappears, or a peer that leaves,
//! vanishes from `/metrics` with the next snapshot; nothing has to be
//! unregistered.
//!
//! Every family is one entry of [`DEFS`]: name, help, label names and the
//! function that lists its samples from the snapshot. Two writers consume
//! that table:
//!
//! - [`SnapshotText`] writes the families straight as exposition text; this
//!   is what `/metrics` serves ([`Metrics::encode`](crate::metrics::Metrics::encode)).
//!   It sorts each family's samples by label values, as the registry's
//!   `gather` did when the families went through it, so the page is the same
//!   bytes as before.
//! - [`families`] builds the `prometheus` crate's protobuf values, for
//!   callers that want them (`coolmesh sensors --format prom`) and as the
//!   reference the tests compare the text writer against.
//!
//! The family names are registered in the registry ([`SnapshotNames`]) so a
//! registered metric can never take one of them, although the registry no
//! longer produces their values.
//!
//! Per-peer series are capped (`max_peer_series`, default 256) so an agent's
//! series count stays bounded however large the room grows; the peers that
//! are not alive are kept first, so a lost peer is always reported while
//! fewer than the cap are lost. Cluster-wide figures are aggregates.

use crate::model::{PeerStatus, Reading, Snapshot, FSM_REASONS, FSM_STATES, PEER_STATES};
use crate::text;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use std::sync::OnceLock;

/// Default cap on per-peer series.
pub const DEFAULT_MAX_PEER_SERIES: usize = 256;

/// Most label names any snapshot family has.
pub const MAX_LABELS: usize = 2;

/// The label values of one sample, in the order of the family's label
/// names; entries past the family's label count are `""` and ignored.
pub type Labels<'s> = [&'s str; MAX_LABELS];

const NO_LABELS: Labels<'static> = ["", ""];

/// Lists a family's samples from a prepared snapshot, in snapshot order.
pub type Samples = for<'s> fn(&Scrape<'s>, &mut dyn FnMut(Labels<'s>, f64));

/// One snapshot family (all are gauges).
pub struct Def {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Label names, at most [`MAX_LABELS`].
    pub labels: &'static [&'static str],
    /// The family's samples.
    pub samples: Samples,
}

/// A snapshot prepared for one scrape: what several families share.
pub struct Scrape<'s> {
    /// The snapshot.
    pub snap: &'s Snapshot,
    /// The readings, in snapshot order or, for the text writer, in label
    /// order (see [`Scrape::label_ordered`]).
    pub readings: Vec<&'s Reading>,
    /// The peers that get per-peer series: suspect and dead first, then
    /// alive, each by name, at most `max_peer_series` of them. The cut is
    /// stable from scrape to scrape and never hides a peer that is not
    /// alive behind alive ones: `coolmesh_peer_up == 0` is what tells a
    /// lost peer (the `CoolmeshPeerLost` alert), so in a room larger than
    /// the cap it is the alive peers that go unlisted.
    pub peers: Vec<&'s PeerStatus>,
}

impl<'s> Scrape<'s> {
    /// Prepare `snap`, capping per-peer series at `max_peer_series`.
    pub fn new(snap: &'s Snapshot, max_peer_series: usize) -> Self {
        let mut peers: Vec<_> = snap.cluster.peers.iter().collect();
        // false < true: the peers that are not alive sort first.
        peers.sort_by(|a, b| {
            (a.liveness == "alive")
                .cmp(&(b.liveness == "alive"))
                .then_with(|| a.node.cmp(&b.node))
        });
        peers.truncate(max_peer_series);
        Scrape {
            snap,
            readings: snap.readings.iter().collect(),
            peers,
        }
    }

    /// Like [`new`](Self::new), with the readings stably sorted by (chip,
    /// sensor): the order the text writer needs for the three temperature
    /// families. Sorting once here rather than in each family (thousands of
    /// readings on a large host) leaves those families already in order.
    /// Stable, so a subsequence (readings without a max, say) is in the
    /// order a stable sort of that family alone would give.
    pub fn label_ordered(snap: &'s Snapshot, max_peer_series: usize) -> Self {
        fn key(r: &Reading) -> (&str, &str) {
            (&r.chip, &r.sensor)
        }
        let mut scrape = Scrape::new(snap, max_peer_series);
        if !scrape
            .readings
            .is_sorted_by(|a, b| key(a).cmp(&key(b)).is_le())
        {
            scrape.readings.sort_by(|a, b| key(a).cmp(&key(b)));
        }
        scrape
    }
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

fn ms_to_s(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A label-less sample if the value is known.
fn opt<'s>(emit: &mut dyn FnMut(Labels<'s>, f64), v: Option<f64>) {
    if let Some(v) = v {
        emit(NO_LABELS, v);
    }
}

/// The snapshot families. The order here is the order of [`families`];
/// the text writer follows name order, like the registry.
pub const DEFS: &[Def] = &[
    Def {
        name: "coolmesh_temperature_celsius",
        help: "Current temperature of a sensor.",
        labels: &["chip", "sensor"],
        samples: |c, emit| {
            for r in &c.readings {
                emit([&r.chip, &r.sensor], r.celsius);
            }
        },
    },
    Def {
        name: "coolmesh_temperature_max_celsius",
        help: "High (max) threshold of a sensor.",
        labels: &["chip", "sensor"],
        samples: |c, emit| {
            for r in &c.readings {
                if let Some(v) = r.max_celsius {
                    emit([&r.chip, &r.sensor], v);
                }
            }
        },
    },
    Def {
        name: "coolmesh_temperature_critical_celsius",
        help: "Critical threshold of a sensor.",
        labels: &["chip", "sensor"],
        samples: |c, emit| {
            for r in &c.readings {
                if let Some(v) = r.critical_celsius {
                    emit([&r.chip, &r.sensor], v);
                }
            }
        },
    },
    Def {
        name: "coolmesh_source_up",
        help: "1 if the last read of the thermal source succeeded.",
        labels: &["source"],
        samples: |c, emit| {
            for src in &c.snap.sources {
                emit([&src.name, ""], b(src.up));
            }
        },
    },
    Def {
        name: "coolmesh_source_duration_seconds",
        help: "Duration of the last read of the thermal source.",
        labels: &["source"],
        samples: |c, emit| {
            for src in &c.snap.sources {
                emit([&src.name, ""], src.duration_seconds);
            }
        },
    },
    Def {
        name: "coolmesh_source_readings",
        help: "Readings produced by the last read of the source.",
        labels: &["source"],
        samples: |c, emit| {
            for src in &c.snap.sources {
                emit([&src.name, ""], src.readings as f64);
            }
        },
    },
    Def {
        name: "coolmesh_thermal_hottest_celsius",
        help: "Hottest plausible sensor of this node.",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.thermal.hottest_celsius),
    },
    Def {
        name: "coolmesh_thermal_headroom_celsius",
        help: "Minimum over sensors of critical minus current temperature.",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.thermal.headroom_celsius),
    },
    Def {
        name: "coolmesh_thermal_trend_celsius_per_minute",
        help: "Rate at which the temperature approaches critical, over the trend window.",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.thermal.trend_celsius_per_minute),
    },
    Def {
        name: "coolmesh_thermal_time_to_critical_seconds",
        help: "Projected time until a sensor reaches critical; absent unless rising.",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.thermal.time_to_critical_seconds),
    },
    Def {
        name: "coolmesh_fsm_state",
        help: "1 for the current state of the shutdown state machine.",
        labels: &["state"],
        samples: |c, emit| {
            for st in FSM_STATES {
                emit([st, ""], b(c.snap.fsm.state == st));
            }
        },
    },
    Def {
        name: "coolmesh_fsm_reason",
        help: "1 for the reason of the current state.",
        labels: &["reason"],
        samples: |c, emit| {
            for r in FSM_REASONS {
                emit([r, ""], b(c.snap.fsm.reason == r));
            }
        },
    },
    Def {
        name: "coolmesh_shutdown_deadline_timestamp_seconds",
        help: "Unix time at which the pending shutdown fires; absent when none is pending.",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.fsm.deadline_ms.map(ms_to_s)),
    },
    Def {
        name: "coolmesh_shutdown_executed",
        help: "1 once the shutdown command has been run (or logged, in dry-run).",
        labels: &[],
        samples: |c, emit| emit(NO_LABELS, b(c.snap.fsm.executed)),
    },
    Def {
        name: "coolmesh_shutdown_dry_run",
        help: "1 if the agent runs in dry-run mode (shutdowns are logged, not run).",
        labels: &[],
        samples: |c, emit| emit(NO_LABELS, b(c.snap.fsm.dry_run)),
    },
    Def {
        name: "coolmesh_shutdown_stage",
        help: "This node's shutdown stage (shutdown.stage; 0 goes down first).",
        labels: &[],
        samples: |c, emit| emit(NO_LABELS, f64::from(c.snap.fsm.stage.stage)),
    },
    Def {
        name: "coolmesh_shutdown_stage_waiting",
        help: "1 while a due shutdown command is held for lower stages still going down.",
        labels: &[],
        samples: |c, emit| emit(NO_LABELS, b(c.snap.fsm.stage.waiting)),
    },
    Def {
        name: "coolmesh_shutdown_stage_lower_pending",
        help: "In pre_fail: alive lower-stage nodes still going down for this node's trigger.",
        labels: &[],
        samples: |c, emit| emit(NO_LABELS, f64::from(c.snap.fsm.stage.lower_pending)),
    },
    Def {
        name: "coolmesh_shutdown_stage_hold_until_timestamp_seconds",
        help: "Unix time until which lower stages hold the shutdown command at most; absent when nothing is held.",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.fsm.stage.hold_until_ms.map(ms_to_s)),
    },
    Def {
        name: "coolmesh_maintenance_until_timestamp_seconds",
        help: "Unix time at which maintenance ends; absent outside maintenance.",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.fsm.maintenance_until_ms.map(ms_to_s)),
    },
    Def {
        name: "coolmesh_power_up",
        help: "Power policy result over all targets (1 = mains power seen up).",
        labels: &[],
        samples: |c, emit| opt(emit, c.snap.power.up.map(b)),
    },
    Def {
        name: "coolmesh_power_target_up",
        help: "1 if the last probe of the power target succeeded.",
        labels: &["target"],
        samples: |c, emit| {
            for t in &c.snap.power.targets {
                emit([&t.target, ""], b(t.up));
            }
        },
    },
    Def {
        name: "coolmesh_cluster_peers",
        help: "Known peers by liveness, this node not included.",
        labels: &["state"],
        samples: |c, emit| {
            for st in PEER_STATES {
                let n = c
                    .snap
                    .cluster
                    .peers
                    .iter()
                    .filter(|p| p.liveness == st)
                    .count();
                emit([st, ""], n as f64);
            }
        },
    },
    Def {
        name: "coolmesh_peer_up",
        help: "1 if the peer is alive (capped number of peers).",
        labels: &["peer"],
        samples: |c, emit| {
            for p in &c.peers {
                emit([&p.node, ""], b(p.liveness == "alive"));
            }
        },
    },
    Def {
        name: "coolmesh_peer_headroom_celsius",
        help: "Thermal headroom of a peer (capped number of peers).",
        labels: &["peer"],
        samples: |c, emit| {
            for p in &c.peers {
                if let Some(h) = p.thermal.headroom_celsius {
                    emit([&p.node, ""], h);
                }
            }
        },
    },
    Def {
        name: "coolmesh_cluster_power_votes",
        help: "Votes on a power target: the state machine's voters that probe it, this node included.",
        labels: &["target", "vote"],
        samples: |c, emit| {
            for v in &c.snap.cluster.power_votes {
                emit([&v.target, "up"], f64::from(v.up));
                emit([&v.target, "down"], f64::from(v.down));
            }
        },
    },
    Def {
        name: "coolmesh_cluster_overheating_peers",
        help: "Nodes voting cooling lost (a sensor at critical, or heating steadily): the state machine's voters and this one.",
        labels: &[],
        samples: |c, emit| emit(NO_LABELS, f64::from(c.snap.cluster.overheating)),
    },
    Def {
        name: "coolmesh_cluster_quorum",
        help: "Nodes needed for the cooling quorum: a strict majority of the state machine's voters and this one, at least cooling_quorum_min.",
        labels: &[],
        samples: |c, emit| emit(NO_LABELS, f64::from(c.snap.cluster.quorum)),
    },
    Def {
        name: "coolmesh_crdt_value",
        help: "Cluster-wide total of a CRDT counter.",
        labels: &["name"],
        samples: |c, emit| {
            for x in &c.snap.counters {
                emit([&x.name, ""], x.value as f64);
            }
        },
    },
    Def {
        name: "coolmesh_crdt_local",
        help: "This node's slot of a CRDT counter.",
        labels: &["name"],
        samples: |c, emit| {
            for x in &c.snap.counters {
                emit([&x.name, ""], x.local as f64);
            }
        },
    },
];

/// Indices into [`DEFS`] in name order (the order of families on the page).
pub fn by_name() -> &'static [usize] {
    static ORDER: OnceLock<Vec<usize>> = OnceLock::new();
    ORDER.get_or_init(|| {
        let mut order: Vec<usize> = (0..DEFS.len()).collect();
        order.sort_by_key(|&i| DEFS[i].name);
        order
    })
}

/// Build the families for one snapshot as protobuf values, in [`DEFS`]
/// order, samples in snapshot order, empty families left out (what the
/// registry's `gather` would prune).
pub fn families(s: &Snapshot, max_peer_series: usize) -> Vec<MetricFamily> {
    let scrape = Scrape::new(s, max_peer_series);
    DEFS.iter()
        .filter_map(|d| {
            let mut metrics = Vec::new();
            (d.samples)(&scrape, &mut |values, v| {
                let pairs = d
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(k, v)| {
                        let mut p = LabelPair::default();
                        p.set_name(k.to_string());
                        p.set_value(v.to_string());
                        p
                    })
                    .collect();
                let mut g = Gauge::default();
                g.set_value(v);
                let mut m = Metric::from_label(pairs);
                m.set_gauge(g);
                metrics.push(m);
            });
            if metrics.is_empty() {
                return None;
            }
            let mut f = MetricFamily::default();
            f.set_name(d.name.to_string());
            f.set_help(d.help.to_string());
            f.set_field_type(MetricType::GAUGE);
            f.set_metric(metrics);
            Some(f)
        })
        .collect()
}

/// Writes snapshot families as exposition text, one family at a time, so
/// the caller can interleave them with other families in name order.
pub struct SnapshotText<'s> {
    scrape: Scrape<'s>,
    // One family's samples, reused from family to family.
    scratch: Vec<(Labels<'s>, f64)>,
}

impl<'s> SnapshotText<'s> {
    /// A writer for `snap`, capping per-peer series at `max_peer_series`.
    pub fn new(snap: &'s Snapshot, max_peer_series: usize) -> Self {
        SnapshotText {
            scrape: Scrape::label_ordered(snap, max_peer_series),
            scratch: Vec::new(),
        }
    }

    /// Append family `DEFS[i]` (header and samples) to `out`; nothing if it
    /// has no samples.
    pub fn write_family(&mut self, i: usize, out: &mut Vec<u8>) {
        let Some(d) = DEFS.get(i) else {
            return;
        };
        let scratch = &mut self.scratch;
        scratch.clear();
        (d.samples)(&self.scrape, &mut |labels, v| scratch.push((labels, v)));
        if scratch.is_empty() {
            return;
        }
        // The registry's gather sorted samples by their label values (a
        // stable sort, so duplicates keep snapshot order); do the same.
        // Unused label slots are "" in every sample, so comparing whole
        // arrays compares exactly the family's labels.
        // (`cmp` rather than `<=`: one string comparison per label, not an
        // equality test and then an ordering.)
        if !scratch.is_sorted_by(|a, b| a.0.cmp(&b.0).is_le()) {
            scratch.sort_by(|a, b| a.0.cmp(&b.0));
        }
        text::write_header(out, d.name, d.help, "gauge");
        let line = text::SampleLine::new(d.name, d.labels);
        for (labels, v) in scratch.iter() {
            line.write(out, labels, *v);
        }
    }

    /// Append every snapshot family, in name order.
    pub fn write_all(&mut self, out: &mut Vec<u8>) {
        for &i in by_name() {
            self.write_family(i, out);
        }
    }
}

/// Reserves the snapshot family names in a registry: registering it makes
/// any later registration of the same name fail, as when the registry
/// collected these families itself. It collects nothing; the values are
/// written by [`SnapshotText`].
pub struct SnapshotNames {
    descs: Vec<Desc>,
}

impl SnapshotNames {
    /// Descriptors for every family of [`DEFS`].
    pub fn new() -> prometheus::Result<Self> {
        let descs = DEFS
            .iter()
            .map(|d| {
                Desc::new(
                    d.name.into(),
                    d.help.into(),
                    d.labels.iter().map(|s| s.to_string()).collect(),
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(SnapshotNames { descs })
    }
}

impl Collector for SnapshotNames {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CounterStatus, PowerVote, Reading, SourceStatus, TargetStatus};

    #[test]
    fn defs_are_consistent() {
        let mut names: Vec<_> = DEFS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEFS.len(), "duplicate family name");
        assert!(DEFS.iter().all(|d| d.labels.len() <= MAX_LABELS));
        // Names and label names are valid (Desc checks them).
        assert!(SnapshotNames::new().is_ok());
        let order: Vec<_> = by_name().iter().map(|&i| DEFS[i].name).collect();
        assert_eq!(order, names);
    }

    /// Every family emits exactly its label count; the unused slots stay ""
    /// (the text writer sorts whole label arrays).
    #[test]
    fn unused_label_slots_are_empty() {
        let mut s = Snapshot::default();
        s.readings.push(Reading {
            chip: "c".into(),
            sensor: "s".into(),
            label: None,
            celsius: 1.0,
            max_celsius: Some(2.0),
            critical_celsius: Some(3.0),
            source: "file".into(),
            role: Default::default(),
        });
        s.sources.push(SourceStatus {
            name: "file".into(),
            up: true,
            duration_seconds: 0.1,
            readings: 1,
            error: None,
            last_read_ms: 0,
        });
        s.power.targets.push(TargetStatus {
            target: "t".into(),
            up: true,
            unknown: false,
            duration_seconds: 0.0,
            error: None,
        });
        s.cluster.power_votes.push(PowerVote {
            target: "t".into(),
            up: 1,
            down: 0,
        });
        s.counters.push(CounterStatus {
            name: "n".into(),
            value: 1,
            local: 1,
        });
        s.cluster.peers.push(PeerStatus {
            node: "p".into(),
            peer_id: "id".into(),
            liveness: "alive".into(),
            last_seen_ms: 0,
            version: 0,
            thermal: crate::model::ThermalSummary {
                headroom_celsius: Some(1.0),
                ..Default::default()
            },
            power_up: None,
            state: "normal".into(),
            reason: "none".into(),
            deadline_ms: None,
            stale: false,
            stage: 0,
        });
        let scrape = Scrape::new(&s, 10);
        for d in DEFS {
            (d.samples)(&scrape, &mut |labels, _| {
                for (i, l) in labels.iter().enumerate() {
                    assert_eq!(i >= d.labels.len(), l.is_empty(), "{}", d.name);
                }
            });
        }
    }
}

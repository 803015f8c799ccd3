//! The registry: everything registered once at startup, and the `/metrics`
//! page.
//!
//! Event counters (transitions, command failures) are ordinary registered
//! metrics that the agent increments; values that describe "now" are
//! written at scrape time from the latest snapshot by
//! [`SnapshotText`](crate::collector::SnapshotText). [`Metrics::encode`]
//! interleaves the two in name order, which is the page the registry alone
//! produced when it also gathered the snapshot families.

use crate::collector::{self, SnapshotNames, SnapshotText};
use crate::model::Snapshot;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Build metadata for `coolmesh_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// Crate version.
    pub version: &'static str,
    /// Git revision, or `unknown`.
    pub revision: &'static str,
    /// Compiler version, or `unknown`.
    pub rustc: &'static str,
}

/// The registry, the metrics the agent updates directly, and the snapshot.
#[derive(Clone)]
pub struct Metrics {
    /// The registered metrics, served at `/metrics` with the snapshot
    /// families. It reserves the snapshot family names (registering one of
    /// them fails) but does not produce their values: `registry.gather()`
    /// returns the registered metrics only.
    pub registry: Registry,
    /// `coolmesh_fsm_transitions_total{from,to,reason}`.
    pub fsm_transitions: IntCounterVec,
    /// `coolmesh_shutdown_command_failures_total`.
    pub shutdown_command_failures: IntCounter,
    /// `coolmesh_shutdown_command_outcome_unknown_total`.
    pub shutdown_command_outcome_unknown: IntCounter,
    /// `coolmesh_node_info{coolmesh_node,coolmesh_cluster,peer_id}`: not
    /// `node` and `cluster`, which Kubernetes service discovery and
    /// multi-cluster setups add as target labels (a scraped label of the same
    /// name would be renamed `exported_*`, or, with `honor_labels`, replace
    /// theirs).
    pub node_info: IntGaugeVec,
    /// The HTTP server's connection metrics (`coolmesh_http_*`).
    pub http: crate::conn_metrics::HttpMetrics,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    max_peer_series: usize,
    // Size of the last page, to allocate the next one at once: a 10k-series
    // page is about 800 KiB, and growing a buffer to that by doubling copies
    // it again several times.
    last_len: Arc<AtomicUsize>,
}

impl Metrics {
    /// Register the static metrics and reserve the snapshot family names;
    /// `snapshot` is read at every [`encode`](Self::encode), per-peer series
    /// capped at `max_peer_series`.
    pub fn new(
        build: &BuildInfo,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        max_peer_series: usize,
    ) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "coolmesh_build_info",
                "Build metadata of the running coolmesh; always 1.",
            ),
            &["version", "revision", "rustc"],
        )?;
        build_info
            .with_label_values(&[build.version, build.revision, build.rustc])
            .set(1);
        registry.register(Box::new(build_info))?;
        let node_info = IntGaugeVec::new(
            Opts::new("coolmesh_node_info", "Identity of this agent; always 1."),
            &["coolmesh_node", "coolmesh_cluster", "peer_id"],
        )?;
        registry.register(Box::new(node_info.clone()))?;
        let fsm_transitions = IntCounterVec::new(
            Opts::new(
                "coolmesh_fsm_transitions_total",
                "Transitions of the shutdown state machine.",
            ),
            &["from", "to", "reason"],
        )?;
        registry.register(Box::new(fsm_transitions.clone()))?;
        let shutdown_command_failures = IntCounter::new(
            "coolmesh_shutdown_command_failures_total",
            "Failed runs of the shutdown command.",
        )?;
        registry.register(Box::new(shutdown_command_failures.clone()))?;
        let shutdown_command_outcome_unknown = IntCounter::new(
            "coolmesh_shutdown_command_outcome_unknown_total",
            "Runs of the shutdown command whose outcome is unknown: the agent restarted while one ran.",
        )?;
        registry.register(Box::new(shutdown_command_outcome_unknown.clone()))?;
        let http = crate::conn_metrics::HttpMetrics::new()?;
        http.register(&registry)?;
        registry.register(Box::new(SnapshotNames::new()?))?;
        Ok(Metrics {
            http,
            registry,
            fsm_transitions,
            shutdown_command_failures,
            shutdown_command_outcome_unknown,
            node_info,
            snapshot,
            max_peer_series,
            last_len: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Set the identity series (replacing any earlier one).
    pub fn set_identity(&self, node: &str, cluster: &str, peer_id: &str) {
        self.node_info.reset();
        self.node_info
            .with_label_values(&[node, cluster, peer_id])
            .set(1);
    }

    /// Encode everything in the text exposition format: the registered
    /// metrics (through the registry and `TextEncoder`) and the snapshot
    /// families (written directly), all families in name order.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        // Sorted by name (the registry keeps them in a BTreeMap).
        let registered = self.registry.gather();
        // Clone the Arc and release the watch lock at once: encoding must not
        // hold up the agent publishing the next snapshot.
        let snap = self.snapshot.borrow().clone();
        let hint = self.last_len.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity((hint + hint / 16).max(16 * 1024));
        let mut snapshot_text = SnapshotText::new(&snap, self.max_peer_series);
        let encoder = TextEncoder::new();
        let mut rest = registered.as_slice();
        for &i in collector::by_name() {
            let name = collector::DEFS[i].name;
            let before = rest.partition_point(|f| f.name() < name);
            encoder.encode(&rest[..before], &mut out)?;
            rest = &rest[before..];
            snapshot_text.write_family(i, &mut out);
        }
        encoder.encode(rest, &mut out)?;
        self.last_len.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }
}

/// Text-encode metric families.
pub fn encode_families(
    families: &[prometheus::proto::MetricFamily],
) -> Result<Vec<u8>, prometheus::Error> {
    let mut buf = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(families, &mut buf)?;
    Ok(buf)
}

//! The registry: everything registered once at startup.
//!
//! Event counters (transitions, command failures) are ordinary registered
//! metrics that the agent increments; values that describe "now" come from
//! the [`SnapshotCollector`](crate::collector::SnapshotCollector).

use crate::collector::SnapshotCollector;
use crate::model::Snapshot;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
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

/// The registry and the metrics the agent updates directly.
#[derive(Clone)]
pub struct Metrics {
    /// Everything served at `/metrics`.
    pub registry: Registry,
    /// `coolmesh_fsm_transitions_total{from,to,reason}`.
    pub fsm_transitions: IntCounterVec,
    /// `coolmesh_shutdown_command_failures_total`.
    pub shutdown_command_failures: IntCounter,
    /// `coolmesh_node_info{node,cluster,peer_id}`.
    pub node_info: IntGaugeVec,
}

impl Metrics {
    /// Register the static metrics and the snapshot collector.
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
            &["node", "cluster", "peer_id"],
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
        registry.register(Box::new(SnapshotCollector::new(snapshot, max_peer_series)?))?;
        Ok(Metrics {
            registry,
            fsm_transitions,
            shutdown_command_failures,
            node_info,
        })
    }

    /// Set the identity series (replacing any earlier one).
    pub fn set_identity(&self, node: &str, cluster: &str, peer_id: &str) {
        self.node_info.reset();
        self.node_info
            .with_label_values(&[node, cluster, peer_id])
            .set(1);
    }

    /// Encode everything in the text exposition format.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        encode_families(&self.registry.gather())
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

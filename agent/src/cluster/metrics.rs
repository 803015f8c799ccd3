//! Prometheus metrics of the gossip layer. Label sets are bounded (no
//! per-peer labels), so the series count does not grow with the cluster.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::record::RejectReason;

/// Counters of the gossip layer. Cloning is cheap and clones share values.
#[derive(Clone, Debug)]
pub struct GossipMetrics {
    /// `coolmesh_gossip_messages_total{direction="in"|"out", kind="digest"|"records"|"push"|"delta"}`:
    /// every request and every response is one message.
    pub messages: IntCounterVec,
    /// `coolmesh_gossip_bytes_total{direction="in"|"out"}`: frame bytes,
    /// length prefix included (transport overhead excluded).
    pub bytes: IntCounterVec,
    /// `coolmesh_gossip_rejected_total{reason}`: rejected records, messages
    /// and connections; reasons: bad_signature, foreign_slot, malformed,
    /// oversized, unauthorized, rate_limited, handshake.
    pub rejected: IntCounterVec,
    /// `coolmesh_swim_datagrams_total{direction}`: SWIM datagrams
    /// (`cluster.swim`); their bytes count in `coolmesh_gossip_bytes_total`.
    pub swim_datagrams: IntCounterVec,
    /// `coolmesh_swim_members`: members in SWIM's probe rotation (alive or
    /// suspect), this node excluded; 0 with SWIM off.
    pub swim_members: IntGauge,
    /// `coolmesh_cluster_connections`: peers this node has a connection
    /// to now (every member, in the full mesh the agent keeps).
    pub connections: IntGauge,
    /// `coolmesh_swim_down_total`: members SWIM declared down.
    pub swim_down: IntCounter,
    /// `coolmesh_swim_refused_total`: SWIM datagrams refused (malformed,
    /// from a non-member, or naming a sender other than the connection's).
    pub swim_refused: IntCounter,
}

impl Default for GossipMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GossipMetrics {
    /// Fresh, unregistered metrics with every label combination
    /// pre-initialised to 0 (so dashboards and alerts see the series).
    pub fn new() -> Self {
        // The names and label sets are constant and valid; construction
        // cannot fail.
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("invalid metric definition {name}: {e}"))
        };
        let m = GossipMetrics {
            messages: vec(
                "coolmesh_gossip_messages_total",
                "Gossip messages (requests and responses) by direction and kind.",
                &["direction", "kind"],
            ),
            bytes: vec(
                "coolmesh_gossip_bytes_total",
                "Gossip frame bytes by direction.",
                &["direction"],
            ),
            rejected: vec(
                "coolmesh_gossip_rejected_total",
                "Rejected gossip records, messages and connections by reason.",
                &["reason"],
            ),
            swim_datagrams: vec(
                "coolmesh_swim_datagrams_total",
                "SWIM membership datagrams by direction.",
                &["direction"],
            ),
            swim_members: IntGauge::new(
                "coolmesh_swim_members",
                "Members in SWIM's probe rotation (alive or suspect), this node excluded.",
            )
            .unwrap_or_else(|e| unreachable!("invalid metric definition: {e}")),
            connections: IntGauge::new(
                "coolmesh_cluster_connections",
                "Peers this node has a connection to now.",
            )
            .unwrap_or_else(|e| unreachable!("invalid metric definition: {e}")),
            swim_down: IntCounter::new("coolmesh_swim_down_total", "Members SWIM declared down.")
                .unwrap_or_else(|e| unreachable!("invalid metric definition: {e}")),
            swim_refused: IntCounter::new(
                "coolmesh_swim_refused_total",
                "SWIM datagrams refused: malformed, from a non-member, or naming another sender.",
            )
            .unwrap_or_else(|e| unreachable!("invalid metric definition: {e}")),
        };
        for d in ["in", "out"] {
            for k in ["digest", "records", "push", "delta"] {
                m.messages.with_label_values(&[d, k]);
            }
            m.bytes.with_label_values(&[d]);
            m.swim_datagrams.with_label_values(&[d]);
        }
        for r in RejectReason::ALL {
            m.rejected.with_label_values(&[r.as_str()]);
        }
        m
    }

    /// Register every family.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.messages.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.rejected.clone()))?;
        registry.register(Box::new(self.swim_datagrams.clone()))?;
        registry.register(Box::new(self.swim_members.clone()))?;
        registry.register(Box::new(self.connections.clone()))?;
        registry.register(Box::new(self.swim_down.clone()))?;
        registry.register(Box::new(self.swim_refused.clone()))?;
        Ok(())
    }

    /// Count one message.
    pub fn message(&self, direction: &str, kind: &str) {
        self.messages.with_label_values(&[direction, kind]).inc();
    }

    /// Count received frame bytes.
    pub fn bytes_in(&self, n: usize) {
        self.bytes.with_label_values(&["in"]).inc_by(n as u64);
    }

    /// Count sent frame bytes.
    pub fn bytes_out(&self, n: usize) {
        self.bytes.with_label_values(&["out"]).inc_by(n as u64);
    }

    /// Count one rejection.
    pub fn reject(&self, reason: RejectReason) {
        self.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    /// Current value of a rejection counter (tests, status pages).
    pub fn rejected_count(&self, reason: RejectReason) -> u64 {
        self.rejected.with_label_values(&[reason.as_str()]).get()
    }

    /// Total messages in both directions and all kinds.
    pub fn messages_total(&self, direction: &str) -> u64 {
        ["digest", "records", "push", "delta"]
            .iter()
            .map(|k| self.messages.with_label_values(&[direction, k]).get())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_exposes_bounded_series() {
        let r = Registry::new();
        let m = GossipMetrics::new();
        m.register(&r).unwrap();
        m.message("out", "digest");
        m.reject(RejectReason::ForeignSlot);
        m.bytes_in(10);
        let families = r.gather();
        let names: Vec<_> = families.iter().map(|f| f.name().to_string()).collect();
        assert!(names.contains(&"coolmesh_gossip_messages_total".to_string()));
        assert!(names.contains(&"coolmesh_gossip_bytes_total".to_string()));
        assert!(names.contains(&"coolmesh_gossip_rejected_total".to_string()));
        let series: usize = families.iter().map(|f| f.get_metric().len()).sum();
        // messages, bytes, rejections, SWIM datagrams, the SWIM gauge and
        // counters (3), the connection gauge.
        assert_eq!(series, 8 + 2 + RejectReason::ALL.len() + 2 + 3 + 1);
        assert_eq!(m.rejected_count(RejectReason::ForeignSlot), 1);
        assert_eq!(m.messages_total("out"), 1);
        // A second registration of the same families fails loudly.
        assert!(m.register(&r).is_err());
    }
}

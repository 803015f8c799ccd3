//! The HTTP server's connection limits and deadlines as labels, and the
//! metrics that count them (`coolmesh_http_*`). Below both the server
//! (`http`) and the registry (`metrics`), which each use them, so that
//! neither imports the other.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a new connection was refused or an older one evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// The client address had `max_connections_per_ip` connections.
    PerIp,
    /// The server had `max_connections` connections.
    Global,
}

impl LimitReason {
    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            LimitReason::PerIp => "per_ip_limit",
            LimitReason::Global => "connection_limit",
        }
    }
}

/// Which deadline cut a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing received within `first_byte_timeout` of accept.
    FirstByte,
    /// TLS handshake not done within `tls_handshake_timeout` (or the header
    /// deadline, whichever comes first).
    TlsHandshake,
    /// Request head not complete by its deadline.
    RequestHead,
    /// Response not written within `response_timeout`.
    Response,
    /// Kept-alive connection idle for `idle_timeout` (normal; not counted).
    Idle,
}

impl Phase {
    /// The `phase` label value.
    pub fn label(self) -> &'static str {
        match self {
            Phase::FirstByte => "first_byte",
            Phase::TlsHandshake => "tls_handshake",
            Phase::RequestHead => "request_head",
            Phase::Response => "response",
            Phase::Idle => "idle",
        }
    }
}

/// The HTTP server's own metrics, registered with the rest at startup.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `coolmesh_http_connections_accepted_total`.
    pub accepted: IntCounter,
    /// `coolmesh_http_connections_open`.
    pub open: IntGauge,
    /// `coolmesh_http_connections_rejected_total{reason}`.
    pub rejected: IntCounterVec,
    /// `coolmesh_http_connections_evicted_total{reason}`.
    pub evicted: IntCounterVec,
    /// `coolmesh_http_connection_timeouts_total{phase}`.
    pub timeouts: IntCounterVec,
}

impl HttpMetrics {
    /// Create the metrics with every label value at zero.
    pub fn new() -> prometheus::Result<Self> {
        let m = HttpMetrics {
            accepted: IntCounter::new(
                "coolmesh_http_connections_accepted_total",
                "HTTP connections admitted by the server.",
            )?,
            open: IntGauge::new(
                "coolmesh_http_connections_open",
                "HTTP connections open now, including evicted ones still closing.",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "coolmesh_http_connections_rejected_total",
                    "New HTTP connections closed at accept because a connection limit was reached and nothing could be evicted.",
                ),
                &["reason"],
            )?,
            evicted: IntCounterVec::new(
                Opts::new(
                    "coolmesh_http_connections_evicted_total",
                    "Waiting HTTP connections (no complete request head) closed to admit a new one.",
                ),
                &["reason"],
            )?,
            timeouts: IntCounterVec::new(
                Opts::new(
                    "coolmesh_http_connection_timeouts_total",
                    "HTTP connections closed by a deadline.",
                ),
                &["phase"],
            )?,
        };
        for r in [LimitReason::PerIp, LimitReason::Global] {
            m.rejected.with_label_values(&[r.label()]);
            m.evicted.with_label_values(&[r.label()]);
        }
        for p in [
            Phase::FirstByte,
            Phase::TlsHandshake,
            Phase::RequestHead,
            Phase::Response,
        ] {
            m.timeouts.with_label_values(&[p.label()]);
        }
        Ok(m)
    }

    /// Register every metric with `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.accepted.clone()))?;
        registry.register(Box::new(self.open.clone()))?;
        registry.register(Box::new(self.rejected.clone()))?;
        registry.register(Box::new(self.evicted.clone()))?;
        registry.register(Box::new(self.timeouts.clone()))?;
        Ok(())
    }

    pub(crate) fn timed_out(&self, phase: Phase) {
        if phase != Phase::Idle {
            self.timeouts.with_label_values(&[phase.label()]).inc();
        }
    }
}

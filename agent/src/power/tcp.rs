//! `tcp://HOST:PORT`: up when a TCP connection is established.
//!
//! The connection is closed right away (orderly FIN; nothing is sent). A
//! refused connection counts as *down*, as in blackbox_exporter: pick a port
//! the device listens on (SSH, its web UI, SNMP-over-TCP, ...). A host name
//! is resolved on every probe; its addresses are tried in order within the
//! one timeout.

use super::{connect_any, resolve, within, Host, Probe, ProbeError, Resolve};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// TCP connect probe.
pub struct TcpProbe {
    label: String,
    host: Host,
    port: u16,
    resolver: Arc<dyn Resolve>,
}

impl TcpProbe {
    /// A probe of `host:port`, reported as `label`.
    pub fn new(label: &str, host: Host, port: u16, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            label: label.to_string(),
            host,
            port,
            resolver,
        }
    }

    async fn connect(&self) -> Result<(), ProbeError> {
        let addrs = resolve(self.resolver.as_ref(), &self.host, self.port).await?;
        let stream = connect_any(&addrs).await?;
        drop(stream);
        Ok(())
    }
}

impl Probe for TcpProbe {
    fn target(&self) -> &str {
        &self.label
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(within(timeout, self.connect()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{FakeResolver, LOOPBACK};
    use super::*;
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    const T: Duration = Duration::from_secs(2);

    fn probe(port: u16) -> TcpProbe {
        TcpProbe::new("tcp://test", LOOPBACK, port, Arc::new(FakeResolver::Fail))
    }

    #[tokio::test]
    async fn up_when_listening() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        probe(port).probe(T).await.unwrap();
        // No accept() needed: the handshake completes from the backlog.
        probe(port).probe(T).await.unwrap();
    }

    #[tokio::test]
    async fn up_over_ipv6_loopback() {
        let Ok(l) = TcpListener::bind("[::1]:0").await else {
            println!("skipped: no IPv6 loopback");
            return;
        };
        let port = l.local_addr().unwrap().port();
        let p = TcpProbe::new(
            "t",
            Host::Ip("::1".parse().unwrap()),
            port,
            Arc::new(FakeResolver::Fail),
        );
        p.probe(T).await.unwrap();
    }

    #[tokio::test]
    async fn down_quickly_when_refused() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let started = Instant::now();
        let e = probe(port).probe(T).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{msg}"
        );
        assert!(msg.contains("refused"), "{msg}");
    }

    #[tokio::test]
    async fn names_are_resolved_each_probe_and_failures_reported() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let host = Host::Name("pdu.test".into());
        let ok = TcpProbe::new("t", host.clone(), port, Arc::new(FakeResolver::Loopback));
        ok.probe(T).await.unwrap();

        let bad = TcpProbe::new("t", host.clone(), port, Arc::new(FakeResolver::Fail));
        let e = bad.probe(T).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot resolve pdu.test: Name or service not known (fake)"
        );

        let empty = TcpProbe::new("t", host.clone(), port, Arc::new(FakeResolver::Empty));
        let e = empty.probe(T).await.unwrap_err();
        assert_eq!(e.to_string(), "cannot resolve pdu.test: no addresses");

        // A hanging resolver is covered by the probe timeout.
        let hang = TcpProbe::new("t", host, port, Arc::new(FakeResolver::Hang));
        let started = Instant::now();
        let e = hang.probe(Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(e, ProbeError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn later_addresses_are_tried() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let resolver = FakeResolver::Fixed(vec![
            format!("127.0.0.1:{closed_port}").parse().unwrap(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        ]);
        let p = TcpProbe::new("t", Host::Name("two.test".into()), port, Arc::new(resolver));
        p.probe(T).await.unwrap();
    }
}

//! Helpers for the probe tests: a resolver that never touches real DNS, a
//! refused port, a probe that must time out.

use super::{Host, Probe, ProbeError, Resolve};
use futures::future::BoxFuture;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// 127.0.0.1 as a probe host.
pub const LOOPBACK: Host = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));

/// Scripted name resolution.
pub enum FakeResolver {
    /// Every name fails, like NXDOMAIN.
    Fail,
    /// Every name resolves to nothing.
    Empty,
    /// Every lookup hangs forever (a dead DNS server).
    Hang,
    /// Every name is 127.0.0.1.
    Loopback,
    /// Every name resolves to these addresses (ports as given).
    Fixed(Vec<SocketAddr>),
    /// Every lookup fails with this OS error (getaddrinfo's EAI_SYSTEM).
    Errno(i32),
}

impl Resolve for FakeResolver {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            match self {
                FakeResolver::Fail => Err(io::Error::other("Name or service not known (fake)")),
                FakeResolver::Empty => Ok(vec![]),
                FakeResolver::Hang => futures::future::pending().await,
                FakeResolver::Loopback => {
                    Ok(vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)])
                }
                FakeResolver::Fixed(addrs) => Ok(addrs.clone()),
                FakeResolver::Errno(code) => Err(io::Error::from_raw_os_error(*code)),
            }
        })
    }
}

/// A port of 127.0.0.1 where connections are refused: a socket bound but
/// never listening. Unlike a listener bound and dropped, the port cannot be
/// taken (and answered) by anyone else while the socket lives.
pub fn refused_port() -> (socket2::Socket, u16) {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0).into())
        .expect("bind");
    let port = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("bound port");
    (s, port)
}

/// Probe `p` with a 300 ms timeout, which it must run into: a
/// [`ProbeError::Timeout`] shown as "timed out after 300ms". Returns how
/// long the probe took.
pub async fn times_out_at_300ms(p: &dyn Probe) -> Duration {
    let started = Instant::now();
    let e = p.probe(Duration::from_millis(300)).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, ProbeError::Timeout(_)), "{e:?}");
    assert_eq!(e.to_string(), "timed out after 300ms");
    took
}

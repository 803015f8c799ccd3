//! `tcp://HOST:PORT`: up when a TCP connection is established.
//!
//! The connection is closed right away (orderly FIN; nothing is sent). A
//! refused connection counts as *down*, as in blackbox_exporter: pick a port
//! the device listens on (SSH, its web UI, SNMP-over-TCP, ...). A host name
//! is resolved on every probe; its addresses are tried in order within the
//! one timeout.
//!
//! # A second SYN within the budget
//!
//! Linux resends an unanswered SYN only after one second, which is the
//! whole default probe timeout: a single lost SYN or SYN-ACK (10 % packet
//! loss gives about one probe in five) would read as "power down" and start
//! a short `pre_fail`. So when the first connection attempt has not been
//! answered after half the timeout, a second attempt starts next to it (the
//! first keeps running: a slow answer still counts), and whichever connects
//! first wins, all within the one timeout. An answer within the first half
//! (connected, refused, unreachable, a local error) is final: a refusal is a
//! real answer from the device, not a lost packet, and retrying it would
//! only hide it.

use super::{connect_any, within, Endpoint, Host, Probe, ProbeError, Resolve};
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// TCP connect probe.
pub struct TcpProbe {
    label: String,
    endpoint: Endpoint,
}

impl TcpProbe {
    /// A probe of `host:port`, reported as `label`.
    pub fn new(label: &str, host: Host, port: u16, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            label: label.to_string(),
            endpoint: Endpoint::new(host, port, resolver),
        }
    }

    async fn connect(&self, second_at: Instant) -> Result<(), ProbeError> {
        let addrs = self.endpoint.addrs().await?;
        second_chance(second_at, || async {
            // Dropping the stream closes it at once (FIN, nothing sent).
            connect_any(&addrs).await.map(drop)
        })
        .await
    }
}

/// Run `attempt`; if it has not finished by `second_at`, run a second one
/// next to it and return the first success. Both failing gives the first
/// attempt's error. An attempt that finishes before `second_at` decides
/// alone. The caller's timeout bounds the whole thing.
pub(crate) async fn second_chance<F, Fut>(
    second_at: Instant,
    mut attempt: F,
) -> Result<(), ProbeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ProbeError>>,
{
    let first = attempt();
    tokio::pin!(first);
    tokio::select! {
        r = &mut first => return r,
        () = tokio::time::sleep_until(second_at) => {}
    }
    let second = attempt();
    tokio::pin!(second);
    let mut first_err: Option<ProbeError> = None;
    let mut second_failed = false;
    loop {
        tokio::select! {
            r = &mut first, if first_err.is_none() => match r {
                Ok(()) => return Ok(()),
                Err(e) if second_failed => return Err(e),
                Err(e) => first_err = Some(e),
            },
            r = &mut second, if !second_failed => match (r, first_err.take()) {
                (Ok(()), _) => return Ok(()),
                (Err(_), Some(first)) => return Err(first),
                (Err(_), None) => second_failed = true,
            },
        }
    }
}

impl Probe for TcpProbe {
    fn target(&self) -> &str {
        &self.label
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
        let second_at = Instant::now() + timeout / 2;
        Box::pin(within(timeout, self.connect(second_at)))
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
        let (_refusing, port) = super::super::test_util::refused_port();
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
        let (_refusing, closed_port) = super::super::test_util::refused_port();
        let resolver = FakeResolver::Fixed(vec![
            format!("127.0.0.1:{closed_port}").parse().unwrap(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        ]);
        let p = TcpProbe::new("t", Host::Name("two.test".into()), port, Arc::new(resolver));
        p.probe(T).await.unwrap();
    }

    /// A scripted attempt: answers `result` after `after`, or never.
    async fn scripted(after: Option<Duration>, up: bool) -> Result<(), ProbeError> {
        match after {
            Some(d) => tokio::time::sleep(d).await,
            None => futures::future::pending::<()>().await,
        }
        if up {
            Ok(())
        } else {
            Err(ProbeError::Down("scripted refusal".into()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn second_chance_table() {
        let ms = Duration::from_millis;
        // (first attempt, second attempt, expected result, expected time,
        // attempts started); the budget is 1 s, the second starts at 500 ms.
        type Attempt = (Option<Duration>, bool);
        #[rustfmt::skip]
        type Row = (&'static str, Attempt, Attempt, Option<bool>, Duration, usize);
        let cases: &[Row] = &[
            (
                "first answers at once",
                (Some(ms(2)), true),
                (Some(ms(2)), true),
                Some(true),
                ms(2),
                1,
            ),
            (
                "refused at once is final",
                (Some(ms(1)), false),
                (Some(ms(1)), true),
                Some(false),
                ms(1),
                1,
            ),
            (
                "lost SYN: the second connects",
                (None, true),
                (Some(ms(3)), true),
                Some(true),
                ms(503),
                2,
            ),
            (
                "slow first still counts",
                (Some(ms(700)), true),
                (None, true),
                Some(true),
                ms(700),
                2,
            ),
            (
                "first fails late, second connects",
                (Some(ms(600)), false),
                (Some(ms(200)), true),
                Some(true),
                ms(700),
                2,
            ),
            (
                "both fail: the first's error",
                (Some(ms(800)), false),
                (Some(ms(100)), false),
                Some(false),
                ms(800),
                2,
            ),
            (
                "nothing answers: timeout",
                (None, true),
                (None, true),
                None,
                ms(1000),
                2,
            ),
        ];
        for (name, first, second, want, took, attempts) in cases {
            let started = Instant::now();
            let mut n = 0;
            let r = within(
                ms(1000),
                second_chance(started + ms(500), || {
                    n += 1;
                    let (after, up) = if n == 1 { *first } else { *second };
                    scripted(after, up)
                }),
            )
            .await;
            assert_eq!(started.elapsed(), *took, "{name}: time");
            assert_eq!(n, *attempts, "{name}: attempts");
            match (want, &r) {
                (Some(true), Ok(())) => {}
                (Some(false), Err(ProbeError::Down(_))) => {}
                (None, Err(ProbeError::Timeout(_))) => {}
                _ => panic!("{name}: {r:?}"),
            }
        }
    }

    /// A listener whose accept queue is full drops incoming SYNs, exactly
    /// like a lost packet: the kernel would resend only after 1 s, so the
    /// probe's own second SYN is what gets through once there is room.
    #[tokio::test]
    async fn dropped_syn_is_retried_within_the_timeout() {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        sock.listen(0).unwrap();
        sock.set_nonblocking(true).unwrap();
        let l = TcpListener::from_std(std::net::TcpListener::from(sock)).unwrap();
        let port = l.local_addr().unwrap().port();
        // Fill the accept queue (backlog 0 holds one connection).
        let mut fillers = Vec::new();
        for _ in 0..3 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_millis(100),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            {
                fillers.push(s);
            }
        }
        assert!(!fillers.is_empty());
        let started = Instant::now();
        let probe = tokio::spawn(async move { probe(port).probe(Duration::from_secs(1)).await });
        // Make room after the first SYN was dropped, before the second.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let accepted = l.accept().await.unwrap();
        let r = probe.await.unwrap();
        let took = started.elapsed();
        drop((accepted, fillers));
        r.unwrap();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(1000),
            "{took:?}: connected by the second SYN, before the kernel's resend at 1 s"
        );
    }
}

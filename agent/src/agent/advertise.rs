//! The HTTP address this agent publishes for Prometheus' discovery.

use crate::config::Config;

/// The address this agent publishes for Prometheus (record key 12,
/// `GET /v1/http_sd`): `http.advertise`; else the bound address when it is
/// a specific IP (loopback included: a loopback agent is only scrapable
/// from its own host, and says so); on a wildcard address, the source
/// address the kernel picks toward the first bootstrap peer of
/// `cluster.peers` (the network the room talks over), else toward the
/// default route, with the bound port; else the hostname and the port.
/// No packet is sent: connecting a UDP socket only selects a route.
pub fn advertised_http(cfg: &Config, bound: std::net::SocketAddr) -> Option<String> {
    if let Some(a) = &cfg.http.advertise {
        return Some(a.clone());
    }
    let ip = bound.ip();
    if !ip.is_unspecified() {
        return Some(bound.to_string());
    }
    let via_route = |toward: std::net::SocketAddr| -> Option<std::net::IpAddr> {
        let any: std::net::SocketAddr = if toward.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = std::net::UdpSocket::bind(any).ok()?;
        sock.connect(toward).ok()?;
        let local = sock.local_addr().ok()?.ip();
        (!local.is_unspecified()).then_some(local)
    };
    let peers = cfg
        .cluster
        .peers
        .iter()
        .filter_map(|p| p.parse::<libp2p::Multiaddr>().ok())
        .filter_map(|m| super::settings::tcp_socket_addr(&m));
    // 192.0.2.1 (TEST-NET-1) stands for "anywhere": only its route counts.
    let default_route = std::net::SocketAddr::from(([192, 0, 2, 1], 9));
    let picked = peers
        .chain(std::iter::once(default_route))
        .filter(|t| t.is_ipv4() == ip.is_ipv4() || ip.is_ipv6())
        .find_map(via_route);
    let addr = match picked {
        Some(local) => std::net::SocketAddr::new(local, bound.port()).to_string(),
        None => format!("{}:{}", cfg.node.name, bound.port()),
    };
    crate::cluster::record::valid_http_address(&addr).then_some(addr)
}

#[cfg(test)]
mod advertise_tests {
    use super::*;

    #[test]
    fn the_advertised_address_is_usable_for_prometheus() {
        let sa = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        let mut cfg = Config::default();
        // A specific listen address is published as it is, loopback too
        // (only scrapable from this host, and visibly so).
        assert_eq!(
            advertised_http(&cfg, sa("10.1.2.3:10027")).as_deref(),
            Some("10.1.2.3:10027")
        );
        assert_eq!(
            advertised_http(&cfg, sa("[::1]:4000")).as_deref(),
            Some("[::1]:4000")
        );
        // A wildcard: the address toward the room's bootstrap peer, with
        // the bound port (here the peer is on loopback).
        cfg.cluster.peers = vec!["/ip4/127.0.0.1/tcp/9877".into()];
        assert_eq!(
            advertised_http(&cfg, sa("0.0.0.0:4000")).as_deref(),
            Some("127.0.0.1:4000")
        );
        // No peer: the default route's address or, without one, the
        // hostname; never the wildcard itself.
        cfg.cluster.peers.clear();
        cfg.node.name = "srv12".into();
        let a = advertised_http(&cfg, sa("0.0.0.0:4000")).expect("an address");
        assert!(a.ends_with(":4000") && !a.starts_with("0.0.0.0"), "{a}");
        assert!(crate::cluster::record::valid_http_address(&a), "{a}");
        // http.advertise wins over everything.
        cfg.http.advertise = Some("srv12.room.example:10027".into());
        assert_eq!(
            advertised_http(&cfg, sa("0.0.0.0:4000")).as_deref(),
            Some("srv12.room.example:10027")
        );
    }
}

//! `icmp://HOST`: up when the host answers an ICMP (or ICMPv6) echo request.
//!
//! Sockets, in order of preference (decided once at startup by
//! [`icmp_preflight`]):
//!
//! 1. an unprivileged "ping socket" (`SOCK_DGRAM`, `IPPROTO_ICMP`), allowed
//!    when the agent's group is inside `net.ipv4.ping_group_range` (this
//!    sysctl governs ICMPv6 ping sockets too). The kernel picks the echo
//!    identifier and hands us only the replies to our socket.
//! 2. a raw socket (`SOCK_RAW`), which needs `CAP_NET_RAW`. It sees every
//!    ICMP packet the host receives, so replies are matched on identifier,
//!    sequence number and payload, and everything else is ignored.
//!
//! Each probe opens its own non-blocking socket, connected to the target
//! (so the kernel filters by source address), driven by tokio's reactor
//! (epoll, no thread per probe), and concurrent probes of the
//! same host never take each other's replies. The packet code is pure and
//! unit-tested; the socket code is tested against 127.0.0.1 and ::1.

use super::{within, Endpoint, Host, Probe, ProbeError, Resolve};
use futures::future::BoxFuture;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// ICMPv4 echo request type.
pub const ECHO_REQUEST_V4: u8 = 8;
/// ICMPv4 echo reply type.
pub const ECHO_REPLY_V4: u8 = 0;
/// ICMPv6 echo request type.
pub const ECHO_REQUEST_V6: u8 = 128;
/// ICMPv6 echo reply type.
pub const ECHO_REPLY_V6: u8 = 129;
/// Length of the ICMP echo header (type, code, checksum, identifier, sequence).
pub const HEADER_LEN: usize = 8;
/// Marker at the end of our echo payload (after 8 random bytes).
const MARKER: &[u8; 8] = b"coolmesh";

/// Which socket kind ICMP probes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpMode {
    /// Unprivileged ping socket (`SOCK_DGRAM`).
    Datagram,
    /// Raw socket (`SOCK_RAW`, needs `CAP_NET_RAW`).
    Raw,
}

impl fmt::Display for IcmpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IcmpMode::Datagram => "unprivileged ping socket",
            IcmpMode::Raw => "raw socket",
        })
    }
}

/// IP version of a packet or socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// ICMP over IPv4.
    V4,
    /// ICMPv6.
    V6,
}

impl Family {
    fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// The RFC 1071 Internet checksum of `data` (odd length padded with zero).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [hi, lo] = c {
            sum += u32::from(u16::from_be_bytes([*hi, *lo]));
        }
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Build an echo request. For IPv4 the checksum is filled in; for ICMPv6 it
/// is left zero, because it covers an IPv6 pseudo-header and the kernel
/// always computes it for ICMPv6 sockets. On a ping socket the kernel also
/// replaces `ident` with the socket's own identifier.
pub fn echo_request(family: Family, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let ty = match family {
        Family::V4 => ECHO_REQUEST_V4,
        Family::V6 => ECHO_REQUEST_V6,
    };
    let mut pkt = Vec::with_capacity(HEADER_LEN + payload.len());
    pkt.extend_from_slice(&[ty, 0, 0, 0]);
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(payload);
    if family == Family::V4 {
        let c = checksum(&pkt).to_be_bytes();
        if let Some(slot) = pkt.get_mut(2..4) {
            slot.copy_from_slice(&c);
        }
    }
    pkt
}

/// An echo reply found in a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply<'a> {
    /// Identifier field.
    pub ident: u16,
    /// Sequence number field.
    pub seq: u16,
    /// Everything after the header.
    pub payload: &'a [u8],
}

/// Find an echo reply in `packet`, as read from an ICMP socket.
/// `with_ip_header` is true for raw IPv4 sockets, which deliver the IPv4
/// header too. Anything that is not a well-formed echo reply (our own echo
/// requests seen on loopback, unreachables, truncated or corrupt packets)
/// gives `None`. IPv4 checksums are verified; the kernel verifies ICMPv6.
pub fn parse_reply(family: Family, packet: &[u8], with_ip_header: bool) -> Option<EchoReply<'_>> {
    let icmp = if with_ip_header {
        let first = *packet.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || packet.get(9) != Some(&1) {
            return None;
        }
        packet.get(ihl..)?
    } else {
        packet
    };
    let [ty, code, _, _, id_hi, id_lo, seq_hi, seq_lo, payload @ ..] = icmp else {
        return None; // shorter than the echo header
    };
    let want = match family {
        Family::V4 => ECHO_REPLY_V4,
        Family::V6 => ECHO_REPLY_V6,
    };
    if *ty != want || *code != 0 {
        return None;
    }
    if family == Family::V4 && checksum(icmp) != 0 {
        return None;
    }
    Some(EchoReply {
        ident: u16::from_be_bytes([*id_hi, *id_lo]),
        seq: u16::from_be_bytes([*seq_hi, *seq_lo]),
        payload,
    })
}

/// Whether `reply` answers our request. `ident` is `None` when the kernel
/// chose it and we could not learn it (ping sockets only deliver replies
/// addressed to themselves anyway).
pub fn is_reply_to(reply: &EchoReply<'_>, ident: Option<u16>, seq: u16, payload: &[u8]) -> bool {
    ident.is_none_or(|i| i == reply.ident) && reply.seq == seq && reply.payload == payload
}

fn open_socket(family: Family, mode: IcmpMode) -> io::Result<Socket> {
    let (domain, proto) = match family {
        Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
        Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
    };
    let ty = match mode {
        IcmpMode::Datagram => Type::DGRAM,
        IcmpMode::Raw => Type::RAW,
    };
    let s = Socket::new(domain, ty, Some(proto))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Decide at startup how ICMP probes will open sockets: a ping socket if
/// `net.ipv4.ping_group_range` allows it, else a raw socket. If neither can
/// be opened, the error says why and names the fixes. Checks IPv4; ICMPv6
/// uses the same mode (and the same sysctl or capability).
pub fn icmp_preflight() -> Result<IcmpMode, String> {
    let dgram_err = match open_socket(Family::V4, IcmpMode::Datagram) {
        Ok(_) => return Ok(IcmpMode::Datagram),
        Err(e) => e,
    };
    let raw_err = match open_socket(Family::V4, IcmpMode::Raw) {
        Ok(_) => return Ok(IcmpMode::Raw),
        Err(e) => e,
    };
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").ok();
    let gid = rustix::process::getegid().as_raw();
    Err(preflight_error(range.as_deref(), gid, &dgram_err, &raw_err))
}

/// The startup error when no ICMP socket can be opened.
pub fn preflight_error(
    range: Option<&str>,
    gid: u32,
    dgram_err: &io::Error,
    raw_err: &io::Error,
) -> String {
    let words: Vec<&str> = range
        .map(|r| r.split_whitespace().collect())
        .unwrap_or_default();
    let range_note = match words.as_slice() {
        [lo, hi] => {
            format!("; net.ipv4.ping_group_range is \"{lo} {hi}\" and the agent's group is {gid}")
        }
        _ => String::new(),
    };
    format!(
        "cannot open an ICMP socket for icmp:// targets. \
         Unprivileged ping socket: {dgram_err}{range_note}. \
         Raw socket: {raw_err} (raw sockets need CAP_NET_RAW). \
         Fix one of: allow ping sockets with \
         `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` \
         (or just the agent's group: \"{gid} {gid}\"; persist it in /etc/sysctl.d/); \
         or grant the capability (systemd: AmbientCapabilities=CAP_NET_RAW); \
         or run the agent as root; \
         or use tcp:// or exec: power targets instead"
    )
}

/// ICMP echo probe.
pub struct IcmpProbe {
    label: String,
    endpoint: Endpoint,
    mode: IcmpMode,
    seq: AtomicU16,
}

impl IcmpProbe {
    /// A probe of `host` using sockets of `mode` (from [`icmp_preflight`]),
    /// reported as `label`.
    pub fn new(label: &str, host: Host, mode: IcmpMode, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            label: label.to_string(),
            endpoint: Endpoint::new(host, 0, resolver),
            mode,
            seq: AtomicU16::new(rand::random()),
        }
    }

    async fn ping(&self) -> Result<(), ProbeError> {
        let addrs = self.endpoint.addrs().await?;
        let ip = match addrs.first() {
            Some(a) => a.ip(),
            None => return Err(ProbeError::Local("no address to ping".into())),
        };
        let family = Family::of(ip);
        let io_err = |what: &str, err: io::Error| ProbeError::Io {
            what: format!("{what} {ip}"),
            err,
        };

        let sock = open_socket(family, self.mode).map_err(|e| {
            ProbeError::Local(format!("cannot open ICMP {:?} {}: {e}", family, self.mode))
        })?;
        sock.connect(&SockAddr::from(SocketAddr::new(ip, 0)))
            .map_err(|e| io_err("icmp echo to", e))?;
        // Hand the socket to tokio's reactor. `AsyncFd::new` is deprecated
        // (unsound for arbitrary `AsRawFd` types) and its replacement is
        // `unsafe`; tokio's `UdpSocket` is a safe owner of any datagram-style
        // fd (ping sockets are SOCK_DGRAM; raw sockets keep message
        // boundaries too), and we only use send(2) and recv(2) on it.
        let sock = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(sock))
            .map_err(|e| ProbeError::Local(format!("cannot register ICMP socket: {e}")))?;

        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let ident: u16 = rand::random();
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&rand::random::<u64>().to_be_bytes());
        payload[8..].copy_from_slice(MARKER);
        let pkt = echo_request(family, ident, seq, &payload);
        sock.send(&pkt)
            .await
            .map_err(|e| io_err("icmp echo to", e))?;

        let expect_ident = match self.mode {
            IcmpMode::Raw => Some(ident),
            // The kernel put the socket's "port" into the identifier.
            IcmpMode::Datagram => sock.local_addr().ok().map(|a| a.port()),
        };
        let with_ip_header = family == Family::V4 && self.mode == IcmpMode::Raw;
        let mut buf = [0u8; 2048];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| io_err("icmp echo to", e))?;
            let Some(packet) = buf.get(..n) else { continue };
            if let Some(reply) = parse_reply(family, packet, with_ip_header) {
                if is_reply_to(&reply, expect_ident, seq, &payload) {
                    return Ok(());
                }
            }
        }
    }
}

impl Probe for IcmpProbe {
    fn target(&self) -> &str {
        &self.label
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(within(timeout, self.ping()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{FakeResolver, LOOPBACK};
    use super::*;

    const T: Duration = Duration::from_secs(2);

    /// An IPv4 header (20 bytes, protocol ICMP) in front of `icmp`.
    fn with_ipv4_header(icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        let total = (p.len() + icmp.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(icmp);
        p
    }

    /// Turn a request into the reply a host would send.
    fn as_reply(req: &[u8], family: Family) -> Vec<u8> {
        let mut r = req.to_vec();
        match family {
            Family::V4 => {
                r[0] = ECHO_REPLY_V4;
                r[2] = 0;
                r[3] = 0;
                let c = checksum(&r);
                r[2..4].copy_from_slice(&c.to_be_bytes());
            }
            Family::V6 => r[0] = ECHO_REPLY_V6,
        }
        r
    }

    #[test]
    fn checksum_vectors() {
        // RFC 1071, section 3: the sum of these words is 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(checksum(&[]), 0xffff);
        // Odd length pads with zero.
        assert_eq!(checksum(&[0x12]), !0x1200);
        assert_eq!(checksum(&[0xff, 0xff, 0xff, 0xff]), 0x0000);
        // A packet with its checksum filled in sums to zero.
        let pkt = echo_request(Family::V4, 0x1234, 7, b"hello!!");
        assert_eq!(checksum(&pkt), 0);
    }

    #[test]
    fn echo_request_layout() {
        let p = echo_request(Family::V4, 0xbeef, 0x0102, b"xy");
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..], &[0xbe, 0xef, 0x01, 0x02, b'x', b'y']);
        let p = echo_request(Family::V6, 0xbeef, 0x0102, b"xy");
        assert_eq!(p, [128, 0, 0, 0, 0xbe, 0xef, 0x01, 0x02, b'x', b'y']);
    }

    #[test]
    fn replies_round_trip() {
        let payload = b"0123456789abcdef";
        for family in [Family::V4, Family::V6] {
            let reply = as_reply(&echo_request(family, 42, 9, payload), family);
            let r = parse_reply(family, &reply, false).unwrap();
            assert_eq!(
                r,
                EchoReply {
                    ident: 42,
                    seq: 9,
                    payload
                }
            );
            assert!(is_reply_to(&r, Some(42), 9, payload));
            assert!(is_reply_to(&r, None, 9, payload));
        }
        let reply = as_reply(&echo_request(Family::V4, 42, 9, payload), Family::V4);
        let framed = with_ipv4_header(&reply);
        assert_eq!(
            parse_reply(Family::V4, &framed, true).map(|r| r.seq),
            Some(9)
        );
        // IPv4 header with options (IHL 6).
        let mut opts = with_ipv4_header(&reply);
        opts[0] = 0x46;
        opts.splice(20..20, [1, 1, 1, 1]);
        assert_eq!(
            parse_reply(Family::V4, &opts, true).map(|r| r.ident),
            Some(42)
        );
    }

    #[test]
    fn unrelated_packets_are_ignored() {
        let payload = b"0123456789abcdef";
        let req4 = echo_request(Family::V4, 42, 9, payload);
        let reply4 = as_reply(&req4, Family::V4);
        let r = parse_reply(Family::V4, &reply4, false).unwrap();
        // Someone else's ping, another round, a stale payload.
        assert!(!is_reply_to(&r, Some(43), 9, payload));
        assert!(!is_reply_to(&r, Some(42), 10, payload));
        assert!(!is_reply_to(&r, Some(42), 9, b"0123456789abcdeX"));
        assert!(!is_reply_to(&r, None, 9, b""));

        // Our own request, seen by a raw socket on loopback.
        assert_eq!(parse_reply(Family::V4, &req4, false), None);
        assert_eq!(
            parse_reply(Family::V4, &with_ipv4_header(&req4), true),
            None
        );
        assert_eq!(
            parse_reply(Family::V6, &echo_request(Family::V6, 1, 1, b""), false),
            None
        );
        // A v4 reply is not a v6 reply and vice versa.
        assert_eq!(parse_reply(Family::V6, &reply4, false), None);
        assert_eq!(
            parse_reply(
                Family::V4,
                &as_reply(&echo_request(Family::V6, 1, 1, b""), Family::V6),
                false
            ),
            None
        );
        // Destination unreachable quoting our request.
        let mut unreach = vec![3, 1, 0, 0, 0, 0, 0, 0];
        unreach.extend_from_slice(&with_ipv4_header(&req4));
        let c = checksum(&unreach);
        unreach[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            parse_reply(Family::V4, &with_ipv4_header(&unreach), true),
            None
        );
        // Non-zero code.
        let mut odd = reply4.clone();
        odd[1] = 1;
        assert_eq!(parse_reply(Family::V4, &odd, false), None);
        // Corrupt checksum.
        let mut bad = reply4.clone();
        bad[9] ^= 0xff;
        assert_eq!(parse_reply(Family::V4, &bad, false), None);
        // Truncated, empty, bogus IP headers.
        assert_eq!(parse_reply(Family::V4, &reply4[..7], false), None);
        assert_eq!(parse_reply(Family::V4, &[], false), None);
        assert_eq!(parse_reply(Family::V4, &[], true), None);
        assert_eq!(
            parse_reply(Family::V4, &with_ipv4_header(&reply4)[..24], true),
            None
        );
        let mut v6hdr = with_ipv4_header(&reply4);
        v6hdr[0] = 0x65;
        assert_eq!(parse_reply(Family::V4, &v6hdr, true), None);
        let mut short_ihl = with_ipv4_header(&reply4);
        short_ihl[0] = 0x44;
        assert_eq!(parse_reply(Family::V4, &short_ihl, true), None);
        let mut huge_ihl = with_ipv4_header(&reply4[..8]);
        huge_ihl[0] = 0x4f;
        assert_eq!(parse_reply(Family::V4, &huge_ihl, true), None);
        let mut udp = with_ipv4_header(&reply4);
        udp[9] = 17;
        assert_eq!(parse_reply(Family::V4, &udp, true), None);
    }

    #[test]
    fn preflight_error_names_the_fix() {
        let denied = io::Error::from_raw_os_error(13);
        let eperm = io::Error::from_raw_os_error(1);
        let msg = preflight_error(Some("1\t0\n"), 1000, &denied, &eperm);
        for needle in [
            "cannot open an ICMP socket",
            "net.ipv4.ping_group_range is \"1 0\" and the agent's group is 1000",
            "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
            "AmbientCapabilities=CAP_NET_RAW",
            "run the agent as root",
            "Permission denied",
            "Operation not permitted",
        ] {
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
        let msg = preflight_error(None, 0, &denied, &eperm);
        assert!(!msg.contains("is \""), "{msg}");
    }

    #[test]
    fn preflight_agrees_with_the_system() {
        let dgram = open_socket(Family::V4, IcmpMode::Datagram).is_ok();
        let raw = open_socket(Family::V4, IcmpMode::Raw).is_ok();
        match icmp_preflight() {
            Ok(mode) => {
                println!("icmp preflight: {mode}");
                assert_eq!(
                    mode,
                    if dgram {
                        IcmpMode::Datagram
                    } else {
                        IcmpMode::Raw
                    }
                );
            }
            Err(e) => {
                println!("icmp preflight failed: {e}");
                assert!(!dgram && !raw);
                assert!(e.contains("ping_group_range"), "{e}");
            }
        }
    }

    /// Open `mode` sockets for `family`, or say why this test is skipped.
    fn available(family: Family, mode: IcmpMode) -> bool {
        match open_socket(family, mode) {
            Ok(_) => true,
            Err(e) => {
                let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
                    .unwrap_or_default();
                println!(
                    "skipped: cannot open {family:?} {mode}: {e} (ping_group_range {:?}, uid {})",
                    range.trim(),
                    rustix::process::geteuid().as_raw()
                );
                false
            }
        }
    }

    async fn ping_loopback(family: Family, mode: IcmpMode) {
        if !available(family, mode) {
            return;
        }
        let host = match family {
            Family::V4 => LOOPBACK,
            Family::V6 => Host::Ip("::1".parse().unwrap()),
        };
        let p = IcmpProbe::new("icmp://test", host, mode, Arc::new(FakeResolver::Fail));
        for _ in 0..3 {
            if let Err(e) = p.probe(T).await {
                // ::1 may be absent in some containers.
                if family == Family::V6 && matches!(e, ProbeError::Io { .. }) {
                    println!("skipped: no IPv6 loopback: {e}");
                    return;
                }
                panic!("{family:?} {mode}: {e}");
            }
        }
    }

    #[tokio::test]
    async fn raw_ping_v4_loopback() {
        ping_loopback(Family::V4, IcmpMode::Raw).await;
    }

    #[tokio::test]
    async fn raw_ping_v6_loopback() {
        ping_loopback(Family::V6, IcmpMode::Raw).await;
    }

    #[tokio::test]
    async fn dgram_ping_v4_loopback() {
        ping_loopback(Family::V4, IcmpMode::Datagram).await;
    }

    #[tokio::test]
    async fn dgram_ping_v6_loopback() {
        ping_loopback(Family::V6, IcmpMode::Datagram).await;
    }

    #[tokio::test]
    async fn concurrent_pings_each_get_their_reply() {
        let mode = match icmp_preflight() {
            Ok(m) => m,
            Err(e) => {
                println!("skipped: {e}");
                return;
            }
        };
        let p = Arc::new(IcmpProbe::new(
            "icmp://test",
            LOOPBACK,
            mode,
            Arc::new(FakeResolver::Fail),
        ));
        let probes: Vec<_> = (0..8)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.probe(T).await })
            })
            .collect();
        for h in probes {
            h.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn names_are_resolved_through_the_resolver() {
        let mode = match icmp_preflight() {
            Ok(m) => m,
            Err(e) => {
                println!("skipped: {e}");
                return;
            }
        };
        let ok = IcmpProbe::new(
            "t",
            Host::Name("ac.test".into()),
            mode,
            Arc::new(FakeResolver::Loopback),
        );
        ok.probe(T).await.unwrap();
        let bad = IcmpProbe::new(
            "t",
            Host::Name("ac.test".into()),
            mode,
            Arc::new(FakeResolver::Fail),
        );
        let e = bad.probe(T).await.unwrap_err();
        assert!(e.to_string().starts_with("cannot resolve ac.test: "), "{e}");
        let hang = IcmpProbe::new(
            "t",
            Host::Name("ac.test".into()),
            mode,
            Arc::new(FakeResolver::Hang),
        );
        let e = hang.probe(Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(e, ProbeError::Timeout(_)), "{e}");
    }
}

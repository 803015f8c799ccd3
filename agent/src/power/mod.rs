//! Power probes: is mains power up?
//!
//! A *power target* is a device on raw (non-UPS) mains power, such as an air
//! conditioner's controller, a PDU on the wall circuit or a cheap switch. When
//! it goes dark, mains has failed. Each configured target is probed on a
//! jittered interval; a [`Policy`] (any, all or majority up) turns the
//! per-target results into one "power up" bit, delivered as a
//! [`PowerObservation`] to the agent core, whose state machine decides what
//! to do about it (this module never shuts anything down).
//!
//! # Layout
//!
//! - [`targets`]: target strings (`icmp://`, `tcp://`, `http://`, `nut://`, `exec:`)
//!   parsed into a [`TargetSpec`] by [`parse_target`], with precise errors.
//! - [`icmp`]: ICMP echo: pure packet build/parse, the startup
//!   [`icmp_preflight`] (ping socket or raw socket), the [`IcmpProbe`].
//! - [`tcp`]: TCP connect ([`TcpProbe`]).
//! - [`http`]: HTTP/1.1 GET, 2xx = up ([`HttpProbe`]).
//! - [`exec`]: external command, exit 0 = up ([`ExecProbe`]).
//! - [`nut`]: a UPS through the NUT network protocol, `OL` = up, `OB` =
//!   down ([`NutProbe`]); also reports low battery and the runtime left
//!   ([`UpsReading`]). A folder: `mod.rs` (the probe and its reading),
//!   `protocol.rs` (the protocol's lines), `tls.rs` (`nuts://`), `tests.rs`.
//! - [`policy`]: [`Policy`] any / all / majority.
//! - [`metrics`]: [`PowerMetrics`] (probe duration histogram, failure counter).
//! - [`runner`]: the probe loop [`run`] and the pure [`jittered`] interval.
//! - `test_util` (tests only): a resolver that never touches real DNS, a
//!   refused port.
//! - this file: the [`Probe`] trait, [`ProbeError`], name resolution and
//!   connection (`Endpoint`, shared by the icmp, tcp, http and nut probes),
//!   and [`build_probes`], which turns specs into probes at startup.
//!
//! # Target syntax
//!
//! | target | up when | notes |
//! |---|---|---|
//! | `icmp://HOST` | an echo reply arrives | ping socket if `net.ipv4.ping_group_range` allows, else raw socket (`CAP_NET_RAW`); neither: startup error naming the fix |
//! | `tcp://HOST:PORT` | the TCP handshake completes | refused = down; port required |
//! | `http://HOST[:PORT]/PATH` | GET answers 2xx | 3xx/4xx/5xx/garbage = down; no redirects; `https://` rejected (use `exec:` with curl) |
//! | `exec:COMMAND [ARGS...]` | the command exits 0 | POSIX-shell quoting, no shell unless named; process group killed at timeout |
//! | `nut://[USER@]HOST[:PORT]/UPS` | upsd says `ups.status` has `OL` | `OB` = down (`OB LB`, `FSD OB`: down and urgent); no answer, `ERR ...`, stale data, neither `OL` nor `OB`: *unknown*, never down (see [`nut`]) |
//!
//! `HOST` is an IPv4 literal, a bracketed IPv6 literal (`[2001:db8::1]`;
//! bare `::1` works where no port follows) or a DNS name, resolved on every
//! probe. The whole configured string is the `target` label. Examples:
//!
//! ```text
//! icmp://10.0.0.254
//! tcp://10.0.0.253:22
//! http://pdu.local/status
//! exec:sh -c 's=$(upsc ups@localhost ups.status 2>/dev/null) || exit 127; case " $s " in *" OL "*) exit 0;; esac; exit 1'
//! nut://ups-host/rack1
//! ```
//!
//! # Failure semantics
//!
//! Every probe has a timeout that covers everything it does, name resolution
//! included. Each probe has one of three outcomes ([`Outcome`]):
//!
//! - *up*: the target answered as configured;
//! - *down*: the target, or the network path to it, did not answer or
//!   answered "not up" (timeout, refused, unreachable, unresolvable,
//!   unexpected answer, non-zero exit);
//! - *unknown*: the probe failed on this node before it could ask the target
//!   ([`ProbeError::is_local`]: no file descriptor left (`EMFILE`,
//!   `ENFILE`), no buffer or memory, a local permission or firewall refusal,
//!   an address family this host does not support, a command that could not
//!   be started). Such an error says nothing about mains power, so it is
//!   never a vote: the [`Policy`] skips it, and a round in which every target
//!   is unknown is unknown as a whole. The state machine treats that as a
//!   local fault (alert, never a shutdown), and peers see no vote from this
//!   node. Without this, one broken agent configuration or an fd-exhaustion
//!   attack on every node at once read as a room-wide power loss.
//!
//! Network errors about the *path* (`ENETUNREACH`, `EHOSTUNREACH`,
//! `EADDRNOTAVAIL`) stay *down* on purpose: a switch on raw mains takes this
//! node's link (and, with NetworkManager or networkd, its address and
//! routes) down with it, and that must still count as a power loss. A
//! single node that lost its link is caught by peer corroboration instead
//! (`local_fault`).
//!
//! A NUT target inverts the first rule: its signal is what the UPS *says*
//! (`OB`: on battery), not whether something answers. `upsd` usually runs
//! on a host the UPS itself keeps running, so its silence says nothing
//! about mains, and every failure to get a fresh status (no connection, a
//! timeout, `ERR DATA-STALE`, `ERR ACCESS-DENIED`, garbage) is *unknown*
//! ([`ProbeError::NoReading`]), never *down*.
//!
//! The reason is reported in [`TargetResult::error`] and logged; nothing in
//! here panics on bad input or a misbehaving target. Errors that can never
//! go away by themselves (a malformed target, no way to open ICMP sockets at
//! startup, an exec program that does not exist) are startup errors instead,
//! so a typo cannot masquerade as a power outage.

use futures::future::BoxFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod exec;
pub mod http;
pub mod icmp;
pub mod metrics;
pub mod nut;
pub mod policy;
pub mod runner;
pub mod targets;
pub mod tcp;
#[cfg(test)]
mod test_util;

pub use exec::ExecProbe;
pub use http::HttpProbe;
pub use icmp::{icmp_preflight, IcmpMode, IcmpProbe};
pub use metrics::PowerMetrics;
pub use nut::NutProbe;
pub use policy::Policy;
pub use runner::{jittered, run, Outcome, PowerObservation, RunConfig, TargetResult};
pub use targets::{parse_target, parse_targets, Host, TargetError, TargetKind, TargetSpec};
pub use tcp::TcpProbe;

/// Why one probe of one target did not see it up.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer within the probe timeout (name resolution included).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The host name did not resolve (this round; DNS may come back).
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name we tried.
        host: String,
        /// The resolver's reason.
        reason: String,
    },
    /// A network operation failed (connection refused, host unreachable...).
    #[error("{what}: {err}")]
    Io {
        /// What we were doing, e.g. `connect to 10.0.0.253:22`.
        what: String,
        /// The OS error.
        err: io::Error,
    },
    /// The target answered, and the answer means "not up" (HTTP status not
    /// 2xx, command exited non-zero).
    #[error("{0}")]
    Down(String),
    /// The target answered something we cannot understand.
    #[error("{0}")]
    Protocol(String),
    /// A local problem: a socket could not be opened, a command could not be
    /// started. Says nothing about the target.
    #[error("{0}")]
    Local(String),
    /// A target whose *answer* is the reading (a UPS through NUT) gave no
    /// usable answer: no connection, a timeout, `ERR DATA-STALE`, access
    /// denied, garbage. Says nothing about mains: *unknown*, like a local
    /// error, never a "down" vote.
    #[error("{0}")]
    NoReading(String),
}

impl ProbeError {
    /// Whether the error happened on this node and says nothing about the
    /// target: [`ProbeError::Local`], or an OS error for which
    /// [`is_local_os_error`] holds. Such a probe is *unknown*, not *down*.
    pub fn is_local(&self) -> bool {
        match self {
            ProbeError::Local(_) => true,
            ProbeError::Io { err, .. } => is_local_os_error(err),
            _ => false,
        }
    }

    /// Whether the probe result is *unknown* (no vote): a local error
    /// ([`ProbeError::is_local`]) or a target that gave no reading
    /// ([`ProbeError::NoReading`]).
    pub fn is_unknown(&self) -> bool {
        matches!(self, ProbeError::NoReading(_)) || self.is_local()
    }
}

/// What a UPS said besides "up" or "down" (NUT targets only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpsReading {
    /// `ups.status` has `OB`: the UPS runs on its battery.
    pub on_battery: bool,
    /// On battery and `LB` (low battery) or `FSD` (forced shutdown): the
    /// UPS is about to drop its load; shut down as soon as the rules
    /// allow. Never set on mains (`OL`).
    pub urgent: bool,
    /// `battery.runtime`: how long the battery lasts at the present load,
    /// by the UPS's own estimate. `None` when the UPS does not report it.
    pub runtime: Option<Duration>,
}

/// Whether an OS error comes from this node's own limits or policy rather
/// than from the target or the network path to it:
///
/// - `EMFILE`, `ENFILE`: no file descriptor left (a connection flood, a
///   leak): the socket was never opened;
/// - `ENOBUFS`, `ENOMEM`: the kernel is out of buffers or memory;
/// - `EACCES`, `EPERM`: a local permission or firewall (`OUTPUT` chain)
///   refusal: the packet never left;
/// - `EAFNOSUPPORT`, `EPROTONOSUPPORT`: this host has no IPv6 (or ICMP)
///   stack.
///
/// `ENETUNREACH`, `EHOSTUNREACH`, `EADDRNOTAVAIL` are deliberately *not*
/// local (see the module documentation): a lost link can be the power loss.
pub fn is_local_os_error(err: &io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(err).is_some_and(|e| {
        [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOBUFS,
            Errno::NOMEM,
            Errno::ACCESS,
            Errno::PERM,
            Errno::AFNOSUPPORT,
            Errno::PROTONOSUPPORT,
        ]
        .contains(&e)
    })
}

/// One kind of power probe. Implementations must honour `timeout` for the
/// whole probe (resolution included), never panic, and be safe to call
/// concurrently and repeatedly. Dropping the returned future cancels the
/// probe and releases everything it holds (sockets, child processes).
pub trait Probe: Send + Sync + 'static {
    /// The configured target string; the `target` metric label.
    fn target(&self) -> &str;

    /// Probe once. `Ok(())` means the target is up.
    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>>;

    /// Probe once, with what a UPS said about its battery (`None` for
    /// targets that are not a UPS). The runner calls this one; the default
    /// is [`Probe::probe`] without a reading.
    fn probe_ups(
        &self,
        timeout: Duration,
    ) -> BoxFuture<'_, (Result<(), ProbeError>, Option<UpsReading>)> {
        Box::pin(async move { (self.probe(timeout).await, None) })
    }

    /// What the runner reports when this probe overruns its own timeout
    /// (its safety net; probes honour their timeout themselves). For a
    /// device on raw mains, silence is the outage: a timeout, *down*. For
    /// a NUT target, silence says nothing about mains: *unknown*.
    fn overrun(&self, timeout: Duration) -> ProbeError {
        ProbeError::Timeout(timeout)
    }
}

/// Host name resolution, pluggable so that tests never touch real DNS.
pub trait Resolve: Send + Sync + 'static {
    /// All addresses of `host`, with `port` filled in, in preference order.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool, so it obeys
/// `/etc/hosts`, `/etc/nsswitch.conf` and `/etc/resolv.conf`). When the
/// probe times out first, the lookup thread finishes in the background, bounded by
/// the resolver's own timeouts.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The shared system resolver.
pub fn system_resolver() -> Arc<dyn Resolve> {
    Arc::new(SystemResolver)
}

/// Resolve `host` (an IP literal costs nothing) to at least one address.
pub(crate) async fn resolve(
    resolver: &dyn Resolve,
    host: &Host,
    port: u16,
) -> Result<Vec<SocketAddr>, ProbeError> {
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => match resolver.resolve(name, port).await {
            Ok(addrs) if !addrs.is_empty() => Ok(addrs),
            Ok(_) => Err(ProbeError::Resolve {
                host: name.clone(),
                reason: "no addresses".into(),
            }),
            // getaddrinfo reports EAI_SYSTEM with errno, e.g. EMFILE when
            // it cannot open /etc/hosts or a socket to the DNS server: that
            // is this node's problem, not the name's.
            Err(e) if is_local_os_error(&e) => {
                Err(ProbeError::Local(format!("cannot resolve {name}: {e}")))
            }
            Err(e) => Err(ProbeError::Resolve {
                host: name.clone(),
                reason: e.to_string(),
            }),
        },
    }
}

/// Connect to the addresses in order; the first that accepts wins. The
/// caller's timeout bounds the whole attempt. When every address fails, the
/// error is the last one about the target if there is one, so that a local
/// error on one address family (no IPv6 stack) does not hide a real
/// "refused" on the other.
pub(crate) async fn connect_any(addrs: &[SocketAddr]) -> Result<tokio::net::TcpStream, ProbeError> {
    let mut remote = None;
    let mut local = ProbeError::Local("no address to connect to".into());
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                let e = ProbeError::Io {
                    what: format!("connect to {addr}"),
                    err,
                };
                if e.is_local() {
                    local = e;
                } else {
                    remote = Some(e);
                }
            }
        }
    }
    Err(remote.unwrap_or(local))
}

/// Where a probe connects: a host, resolved on every probe, and a port
/// (none for ICMP), with the resolver it uses.
pub(crate) struct Endpoint {
    pub(crate) host: Host,
    port: u16,
    resolver: Arc<dyn Resolve>,
}

impl Endpoint {
    pub(crate) fn new(host: Host, port: u16, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            host,
            port,
            resolver,
        }
    }

    /// The host's addresses, with the port ([`resolve`]).
    pub(crate) async fn addrs(&self) -> Result<Vec<SocketAddr>, ProbeError> {
        resolve(self.resolver.as_ref(), &self.host, self.port).await
    }

    /// A connection to the first address that accepts ([`connect_any`]).
    pub(crate) async fn connect(&self) -> Result<tokio::net::TcpStream, ProbeError> {
        connect_any(&self.addrs().await?).await
    }
}

/// Run `fut` under `timeout`, turning expiry into [`ProbeError::Timeout`].
pub(crate) async fn within<F>(timeout: Duration, fut: F) -> Result<(), ProbeError>
where
    F: std::future::Future<Output = Result<(), ProbeError>>,
{
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(ProbeError::Timeout(timeout)))
}

/// A startup error: this target can never work as configured.
#[derive(Debug, thiserror::Error)]
#[error("power target {target}: {message}")]
pub struct SetupError {
    /// The configured target string.
    pub target: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Turn one spec into a probe. `icmp_mode` must be `Some` for ICMP targets
/// (from [`icmp_preflight`]); exec programs are checked to exist and be
/// executable.
pub fn build_probe(
    spec: &TargetSpec,
    icmp_mode: Option<IcmpMode>,
) -> Result<Arc<dyn Probe>, SetupError> {
    let setup = |message: String| SetupError {
        target: spec.label.clone(),
        message,
    };
    Ok(match &spec.kind {
        TargetKind::Icmp { host } => {
            let mode =
                icmp_mode.ok_or_else(|| setup("ICMP is not available (no preflight)".into()))?;
            Arc::new(IcmpProbe::new(
                &spec.label,
                host.clone(),
                mode,
                system_resolver(),
            ))
        }
        TargetKind::Tcp { host, port } => Arc::new(TcpProbe::new(
            &spec.label,
            host.clone(),
            *port,
            system_resolver(),
        )),
        TargetKind::Http {
            host,
            port,
            authority,
            path,
        } => Arc::new(HttpProbe::new(
            &spec.label,
            host.clone(),
            *port,
            authority,
            path,
            system_resolver(),
        )),
        TargetKind::Exec { program, args } => {
            exec::check_program(program).map_err(setup)?;
            Arc::new(ExecProbe::new(&spec.label, program, args.clone()))
        }
        TargetKind::Nut {
            host,
            port,
            ups,
            user,
            ca_file,
        } => {
            let probe = NutProbe::new(
                &spec.label,
                host.clone(),
                *port,
                ups,
                user.clone(),
                system_resolver(),
            );
            match ca_file {
                None => Arc::new(probe),
                // Read now: a missing or wrong CA file is a startup (or
                // reload) error, never a probe that reads "unknown" forever.
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        setup(format!("ca={}: cannot read it: {e}", path.display()))
                    })?;
                    let cfg = nut::tls_client_config(&pem)
                        .map_err(|e| setup(format!("ca={}: {e}", path.display())))?;
                    Arc::new(probe.with_tls(cfg).map_err(setup)?)
                }
            }
        }
    })
}

/// Turn specs into probes at startup. Runs [`icmp_preflight`] once if any
/// target is ICMP, and fails with its message (which names the fix) if ICMP
/// sockets cannot be opened. Unreachable or unresolvable targets are *not*
/// startup errors: the agent may well start during a power or DNS outage.
pub fn build_probes(specs: &[TargetSpec]) -> Result<Vec<Arc<dyn Probe>>, SetupError> {
    let icmp_mode = match specs
        .iter()
        .find(|s| matches!(s.kind, TargetKind::Icmp { .. }))
    {
        Some(first) => Some(icmp_preflight().map_err(|message| SetupError {
            target: first.label.clone(),
            message,
        })?),
        None => None,
    };
    specs.iter().map(|s| build_probe(s, icmp_mode)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_skip_the_resolver() {
        struct Panics;
        impl Resolve for Panics {
            fn resolve<'a>(
                &'a self,
                _: &'a str,
                _: u16,
            ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
                Box::pin(async { Err(io::Error::other("must not be called")) })
            }
        }
        let host = Host::Ip("127.0.0.1".parse().unwrap());
        let addrs = resolve(&Panics, &host, 22).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:22".parse().unwrap()]);
        let e = resolve(&Panics, &Host::Name("pdu.lan".into()), 22)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "cannot resolve pdu.lan: must not be called");
    }

    #[test]
    fn build_checks_exec_programs_and_icmp_mode() {
        let spec = parse_target("exec:/nonexistent/coolmesh-probe --x").unwrap();
        let e = build_probes(&[spec]).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("power target exec:/nonexistent/coolmesh-probe --x: "),
            "{e}"
        );
        assert!(e.message.contains("does not exist"), "{e}");

        let spec = parse_target("icmp://127.0.0.1").unwrap();
        assert!(build_probe(&spec, None).is_err());
        assert!(build_probe(&spec, Some(IcmpMode::Raw)).is_ok());

        let specs =
            parse_targets(&["tcp://127.0.0.1:1", "http://127.0.0.1/", "exec:true"]).unwrap();
        let probes = build_probes(&specs).unwrap();
        let labels: Vec<&str> = probes.iter().map(|p| p.target()).collect();
        assert_eq!(
            labels,
            ["tcp://127.0.0.1:1", "http://127.0.0.1/", "exec:true"]
        );
    }

    #[tokio::test]
    async fn resolver_errors_from_this_node_are_local() {
        use test_util::FakeResolver;
        let host = Host::Name("pdu.lan".into());
        let e = resolve(&FakeResolver::Errno(24), &host, 22)
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Local(_)), "{e:?}");
        assert!(e.is_local());
        assert!(e.to_string().starts_with("cannot resolve pdu.lan: "), "{e}");
        // A name that does not resolve is about the name (DNS may be on
        // mains): down, as before.
        let e = resolve(&FakeResolver::Fail, &host, 22).await.unwrap_err();
        assert!(!e.is_local(), "{e:?}");
        let e = resolve(&FakeResolver::Errno(110), &host, 22)
            .await
            .unwrap_err();
        assert!(!e.is_local(), "{e:?}");
    }

    #[tokio::test]
    async fn connect_any_prefers_an_answer_from_the_target() {
        let (_refusing, port) = test_util::refused_port();
        let refused: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let e = connect_any(&[refused]).await.unwrap_err();
        assert!(!e.is_local(), "{e}");
        let e = connect_any(&[]).await.unwrap_err();
        assert!(e.is_local(), "{e}");
    }

    /// Name of the environment variable that turns
    /// [`emfile_child`] into the real test.
    const EMFILE_CHILD: &str = "COOLMESH_TEST_EMFILE_CHILD";

    /// Runs [`emfile_child`] in a child process (the open-file limit is per
    /// process; lowering it here would break the other tests running in
    /// parallel threads).
    #[test]
    fn every_probe_type_reports_fd_exhaustion_as_unknown() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "power::tests::emfile_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(EMFILE_CHILD, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("emfile child: 5 probe types unknown"),
            "{text}"
        );
    }

    /// With no file descriptor left, every probe type fails with a local
    /// error, which the runner turns into "unknown", not "down".
    #[test]
    fn emfile_child() {
        if std::env::var_os(EMFILE_CHILD).is_none() {
            return;
        }
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let probes: Vec<Arc<dyn Probe>> = vec![
            Arc::new(TcpProbe::new(
                "tcp",
                test_util::LOOPBACK,
                port,
                Arc::new(test_util::FakeResolver::Fail),
            )),
            Arc::new(HttpProbe::new(
                "http",
                test_util::LOOPBACK,
                port,
                "127.0.0.1",
                "/",
                Arc::new(test_util::FakeResolver::Fail),
            )),
            Arc::new(IcmpProbe::new(
                "icmp",
                test_util::LOOPBACK,
                // Where ICMP is not allowed at all, socket() fails with
                // EACCES or EPERM: local too.
                icmp_preflight().unwrap_or(IcmpMode::Datagram),
                Arc::new(test_util::FakeResolver::Fail),
            )),
            Arc::new(ExecProbe::new("exec", "true", vec![])),
            Arc::new(NutProbe::new(
                "nut",
                test_util::LOOPBACK,
                port,
                "ups",
                None,
                Arc::new(test_util::FakeResolver::Fail),
            )),
        ];
        // Lower the soft limit, then use up what is left.
        let old = getrlimit(Resource::Nofile);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: old.maximum,
            },
        )
        .unwrap();
        let mut hold = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hold.push(f);
        }
        let results: Vec<(String, Result<(), ProbeError>)> = rt.block_on(async {
            let mut out = Vec::new();
            for p in &probes {
                out.push((
                    p.target().to_string(),
                    p.probe(Duration::from_secs(2)).await,
                ));
            }
            out
        });
        drop(hold);
        let mut unknown = 0;
        for (name, r) in &results {
            println!("emfile child: {name}: {r:?}");
            let e = r
                .as_ref()
                .expect_err("no fd left: the probe cannot succeed");
            assert!(e.is_local(), "{name}: {e:?} must be local");
            assert_eq!(Outcome::of(r), Outcome::Unknown, "{name}");
            unknown += 1;
        }
        println!("emfile child: {unknown} probe types unknown");
    }
}

//! The transport, the swarm settings and the one `NetworkBehaviour` of a
//! coolmesh node.

use std::time::Duration;

use anyhow::Context;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, identify, mdns, noise, ping, tcp, yamux, PeerId, Transport,
};

use crate::cluster::config::{ClusterConfig, ConnLimits};
use crate::cluster::metrics::GossipMetrics;
use crate::cluster::room;
use crate::cluster::wire::{FrameCodec, PROTOCOL};

use super::room_commands::ROOM_TIMEOUT;

/// Identify protocol version string of coolmesh agents.
pub const IDENTIFY_PROTOCOL: &str = "/coolmesh/1.0.0";
/// Yamux streams per connection, at most; a peer opening more loses the
/// connection (yamux closes it). Members use a handful (sync, identify,
/// ping); the cap bounds what one connection can buffer in yamux (each
/// stream has a 256 KiB receive window). Not a config key: the
/// per-connection sync stream cap (`max_streams_per_connection`) is the
/// one that matters, this only has to stay well above it.
const MAX_YAMUX_STREAMS: usize = 64;
/// Inbound streams still negotiating their protocol, per connection; more
/// are reset (libp2p's default is 128). Same reasoning as
/// [`MAX_YAMUX_STREAMS`]: a member opens at most a few at a time.
const MAX_NEGOTIATING_STREAMS: usize = 16;

/// The one behaviour of a coolmesh node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection caps (pending and established incoming, per peer): first,
    /// so that a connection over a cap is refused before anything else
    /// spends work on it.
    pub(super) limits: connection_limits::Behaviour,
    /// Allowlist (when configured): denies every other PeerId.
    pub(super) allow: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    /// Operator/test blocklist (partitions, quarantine).
    pub(super) block: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Identify: tells us whether a peer speaks the sync protocol.
    pub(super) identify: identify::Behaviour,
    /// Ping: connection health and RTT.
    pub(super) ping: ping::Behaviour,
    /// mDNS discovery (when enabled and available).
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    /// The anti-entropy exchange.
    pub(super) sync: request_response::Behaviour<FrameCodec>,
    /// Room commands ([`room`]): rare, small, answered at once.
    pub(super) room: request_response::Behaviour<FrameCodec>,
    /// SWIM datagrams (`cluster.swim`; [`crate::cluster::swim`]).
    pub(super) swim: Toggle<request_response::Behaviour<FrameCodec>>,
}

/// TCP, optionally wrapped in the private-network handshake, then noise and
/// yamux. The whole handshake must finish within `handshake_timeout`
/// (`ConnLimits::handshake_timeout`): a connection that stalls in it holds a
/// file descriptor until then.
pub fn build_transport(
    key: &Keypair,
    psk: Option<PreSharedKey>,
    handshake_timeout: Duration,
) -> anyhow::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    let noise = noise::Config::new(key).context("noise config")?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let mut mux = yamux::Config::default();
    mux.set_max_num_streams(MAX_YAMUX_STREAMS);
    Ok(match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(mux)
            .timeout(handshake_timeout)
            .boxed(),
        None => tcp
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(mux)
            .timeout(handshake_timeout)
            .boxed(),
    })
}

/// The libp2p connection caps of [`ConnLimits`].
fn connection_caps(l: &ConnLimits) -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(l.max_pending_incoming))
        .with_max_established_incoming(Some(l.max_incoming))
        .with_max_established_per_peer(Some(l.max_connections_per_peer))
}

/// The swarm settings: idle timeout, stream caps, and `V1Lazy` for the
/// streams we open (the protocol id and the request go out together, so an
/// exchange costs one round trip instead of two: multistream-select's
/// answer is not awaited; a peer that does not speak the protocol fails the
/// exchange as before).
pub fn swarm_config(idle_connection_timeout: Duration) -> libp2p::swarm::Config {
    libp2p::swarm::Config::with_tokio_executor()
        .with_idle_connection_timeout(idle_connection_timeout)
        .with_substream_upgrade_protocol_override(Version::V1Lazy)
        .with_max_negotiating_inbound_streams(MAX_NEGOTIATING_STREAMS)
}

pub(super) fn build_behaviour(
    cfg: &ClusterConfig,
    key: &Keypair,
    metrics: &GossipMetrics,
) -> Behaviour {
    let me = key.public().to_peer_id();
    let allow = cfg.allowlist.as_ref().map(|list| {
        let mut b = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for p in list {
            b.allow_peer(*p);
        }
        b
    });
    let mdns = if cfg.mdns {
        let mc = mdns::Config {
            ttl: Duration::from_secs(60),
            query_interval: cfg.mdns_query_interval,
            enable_ipv6: false,
        };
        match mdns::tokio::Behaviour::new(mc, me) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "mDNS unavailable; relying on bootstrap peers");
                None
            }
        }
    } else {
        None
    };
    let rr = request_response::Config::default()
        .with_request_timeout(cfg.request_timeout)
        .with_max_concurrent_streams(cfg.limits.max_streams_per_connection);
    Behaviour {
        limits: connection_limits::Behaviour::new(connection_caps(&cfg.limits)),
        allow: Toggle::from(allow),
        block: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(format!("coolmesh/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        mdns: Toggle::from(mdns),
        sync: request_response::Behaviour::with_codec(
            FrameCodec::new(cfg.max_frame_bytes, metrics.clone()),
            [(PROTOCOL, ProtocolSupport::Full)],
            rr,
        ),
        room: request_response::Behaviour::with_codec(
            FrameCodec::new(room::MAX_COMMAND_BYTES, metrics.clone()),
            [(room::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(ROOM_TIMEOUT)
                .with_max_concurrent_streams(4),
        ),
        swim: Toggle::from(cfg.swim.then(|| {
            request_response::Behaviour::with_codec(
                FrameCodec::new(crate::cluster::swim::MAX_FRAME, metrics.clone()),
                [(crate::cluster::swim::PROTOCOL, ProtocolSupport::Full)],
                // A datagram is answered at once with an empty frame; SWIM
                // itself times probes out (probe_rtt).
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(2))
                    .with_max_concurrent_streams(16),
            )
        })),
    }
}

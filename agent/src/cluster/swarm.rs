//! The libp2p side: transport, the one `NetworkBehaviour`, and the
//! `tokio::select!` loop that drives the [`Engine`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, identify, mdns, noise, ping, tcp, yamux, Multiaddr,
    PeerId, Swarm, Transport,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};

use super::config::{ClusterConfig, ConnLimits};
use super::engine::{Engine, Now, Sent};
use super::metrics::GossipMetrics;
use super::record::{LocalState, RejectReason};
use super::room::{self, NodeAnswer, RoomAck, RoomApply, RoomCommand, RoomReport, Unreached};
use super::view::{ClusterView, Liveness};
use super::wire::{FrameCodec, RequestKind, SyncRequest, SyncResponse, PROTOCOL};

/// Identify protocol version string of coolmesh agents.
pub const IDENTIFY_PROTOCOL: &str = "/coolmesh/1.0.0";
/// Housekeeping period: liveness, refresh, redials, view publication.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How long a peer that does not speak the sync protocol is left alone.
const NON_MEMBER_QUARANTINE: Duration = Duration::from_secs(600);
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
/// At most one handshake-failure log line per this long (a scan or a flood
/// would otherwise write one per connection); the counter counts them all.
const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The one behaviour of a coolmesh node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection caps (pending and established incoming, per peer): first,
    /// so that a connection over a cap is refused before anything else
    /// spends work on it.
    limits: connection_limits::Behaviour,
    /// Allowlist (when configured): denies every other PeerId.
    allow: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    /// Operator/test blocklist (partitions, quarantine).
    block: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Identify: tells us whether a peer speaks the sync protocol.
    identify: identify::Behaviour,
    /// Ping: connection health and RTT.
    ping: ping::Behaviour,
    /// mDNS discovery (when enabled and available).
    mdns: Toggle<mdns::tokio::Behaviour>,
    /// The anti-entropy exchange.
    sync: request_response::Behaviour<FrameCodec>,
    /// Room commands ([`room`]): rare, small, answered at once.
    room: request_response::Behaviour<FrameCodec>,
}

/// How long a member has to answer a room command. The state machine
/// answers within milliseconds; a member that takes longer is reported as
/// not reached, and the operator still has the rest of the grace.
const ROOM_TIMEOUT: Duration = Duration::from_secs(2);

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

fn build_behaviour(cfg: &ClusterConfig, key: &Keypair, metrics: &GossipMetrics) -> Behaviour {
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
    }
}

/// Runtime commands (bounded channel; see [`ClusterHandle`]).
#[derive(Debug)]
pub enum Control {
    /// Close connections to a peer and refuse new ones (partition tests,
    /// operator quarantine).
    Block(PeerId),
    /// Undo [`Control::Block`].
    Unblock(PeerId),
    /// Dial an address once.
    Dial(Multiaddr),
    /// A signed roster from the operator (`POST /v1/roster`): adopt it if
    /// it verifies and is newer, store it, spread it.
    Roster {
        /// The signed roster's bytes.
        signed: Vec<u8>,
        /// The outcome, for the operator.
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
    /// A room command from the operator (`POST /v1/room`): check it, apply
    /// it here and on every connected member, answer with every answer.
    Room {
        /// The command's wire form (signed or not).
        command: Vec<u8>,
        /// The report, or why the command was refused here.
        reply: tokio::sync::oneshot::Sender<Result<RoomReport, String>>,
    },
}

/// Sends [`Control`] commands to a running cluster.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    tx: mpsc::Sender<Control>,
}

impl ClusterHandle {
    /// Send a command; fails if the cluster has stopped.
    pub async fn send(&self, c: Control) -> anyhow::Result<()> {
        self.tx
            .send(c)
            .await
            .map_err(|_| anyhow::anyhow!("cluster stopped"))
    }

    /// Block a peer.
    pub async fn block(&self, p: PeerId) -> anyhow::Result<()> {
        self.send(Control::Block(p)).await
    }

    /// Unblock a peer.
    pub async fn unblock(&self, p: PeerId) -> anyhow::Result<()> {
        self.send(Control::Unblock(p)).await
    }
}

/// A cluster node, ready to run.
pub struct Cluster {
    config: ClusterConfig,
    keypair: Keypair,
    metrics: GossipMetrics,
    control_tx: mpsc::Sender<Control>,
    control_rx: mpsc::Receiver<Control>,
    room_sink: Option<mpsc::Sender<RoomApply>>,
}

impl Cluster {
    /// Prepare a node (nothing runs until [`Cluster::run`]).
    pub fn new(config: ClusterConfig, keypair: Keypair, metrics: GossipMetrics) -> Self {
        let (control_tx, control_rx) = mpsc::channel(16);
        Cluster {
            config,
            keypair,
            metrics,
            control_tx,
            control_rx,
            room_sink: None,
        }
    }

    /// Where room commands go to be applied to the state machine (the
    /// agent's core loop). Without one, room commands are answered
    /// "refused: no state machine here".
    pub fn set_room_sink(&mut self, tx: mpsc::Sender<RoomApply>) {
        self.room_sink = Some(tx);
    }

    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// A handle for runtime commands.
    pub fn handle(&self) -> ClusterHandle {
        ClusterHandle {
            tx: self.control_tx.clone(),
        }
    }

    /// Run until `shutdown` completes. `local` carries what the agent
    /// publishes; a message on `urgent` (or a change of the state-machine
    /// state in `local`) pushes our record to every connected member at
    /// once; the view is published on `view_tx` after every change.
    pub async fn run(
        self,
        mut local: watch::Receiver<LocalState>,
        mut urgent: mpsc::Receiver<()>,
        view_tx: watch::Sender<ClusterView>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.config.validate()?;
        let Cluster {
            config: cfg,
            keypair,
            metrics,
            control_tx,
            mut control_rx,
            room_sink,
        } = self;
        drop(control_tx);
        let me = keypair.public().to_peer_id();
        let transport = build_transport(&keypair, cfg.psk, cfg.limits.handshake_timeout)?;
        let behaviour = build_behaviour(&cfg, &keypair, &metrics);
        let mut swarm = Swarm::new(
            transport,
            behaviour,
            me,
            swarm_config(cfg.idle_connection_timeout),
        );
        for addr in &cfg.listen {
            swarm
                .listen_on(addr.clone())
                .with_context(|| format!("listening on {addr}"))?;
        }
        let mut engine = Engine::new(cfg.engine_config(), keypair);
        engine.set_local(local.borrow_and_update().clone());
        let now = Instant::now();
        if let (Some(op), Some(path)) = (&cfg.operator, &cfg.roster_path) {
            if let Some(r) = super::roster::load_stored(path, op, &cfg.name) {
                let members = r.members.len();
                match engine.offer_roster(r.to_bytes(), Now::system()) {
                    Ok(_) => {
                        engine.take_new_roster();
                        tracing::info!(
                            version = r.version,
                            members,
                            "loaded the stored room roster"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring the stored room roster"),
                }
            }
        }
        if cfg.mdns || !cfg.bootstrap.is_empty() {
            // Hear our previous record from a peer before making a new one
            // (counter recovery after a lost counters.json); bounded, so a
            // lone node is not held up.
            engine.hold_own_record(now + OWN_RECORD_HOLD);
        }
        let bootstrap = cfg
            .bootstrap
            .iter()
            .map(|addr| Boot {
                addr: addr.clone(),
                peer: peer_of(addr),
                pending: None,
                next: now,
                backoff: cfg.redial_min,
                is_self: false,
            })
            .collect();
        let mut node = Node {
            me,
            cfg,
            swarm,
            engine,
            metrics,
            view_tx,
            pending: HashMap::new(),
            outstanding: HashSet::new(),
            connected: HashSet::new(),
            remote_ips: HashMap::new(),
            non_members: HashMap::new(),
            blocked: HashSet::new(),
            listen_addrs: Vec::new(),
            buckets: HashMap::new(),
            bootstrap,
            redial: HashMap::new(),
            mdns_peers: HashMap::new(),
            handshake_log: LogLimiter::new(HANDSHAKE_LOG_EVERY),
            rng: StdRng::from_rng(&mut rand::rng()),
            dirty: true,
            room_sink,
            room_seen: room::Seen::default(),
            rooms: HashMap::new(),
            room_out: HashMap::new(),
            room_work: futures::stream::FuturesUnordered::new(),
        };
        node.refresh_and_publish();
        tracing::info!(peer_id = %me, cluster = %node.cfg.name, "cluster layer started");

        let start = tokio::time::Instant::now();
        let sync_every = node.cfg.sync_interval;
        let ae_every = node.cfg.anti_entropy_interval;
        let phase = |rng: &mut StdRng, d: Duration| d.mul_f64(rng.random_range(0.0..1.0));
        let mut sync_tick =
            tokio::time::interval_at(start + phase(&mut node.rng, sync_every), sync_every);
        let mut ae_tick =
            tokio::time::interval_at(start + phase(&mut node.rng, ae_every), ae_every);
        let mut house_tick = tokio::time::interval(HOUSEKEEPING);
        for t in [&mut sync_tick, &mut ae_tick, &mut house_tick] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let (mut local_open, mut urgent_open, mut control_open) = (true, true, true);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                ev = node.swarm.select_next_some() => node.on_swarm_event(ev),
                changed = local.changed(), if local_open => match changed {
                    Ok(()) => {
                        let state = local.borrow_and_update().clone();
                        if node.engine.set_local(state) {
                            node.push_urgent();
                        }
                    }
                    Err(_) => local_open = false,
                },
                u = urgent.recv(), if urgent_open => match u {
                    Some(()) => {
                        // Coalesce a burst of signals into one push.
                        while urgent.try_recv().is_ok() {}
                        node.push_urgent();
                    }
                    None => urgent_open = false,
                },
                c = control_rx.recv(), if control_open => match c {
                    Some(c) => node.on_control(c),
                    None => control_open = false,
                },
                _ = sync_tick.tick() => node.on_sync_tick(),
                _ = ae_tick.tick() => node.on_anti_entropy_tick(),
                _ = house_tick.tick() => node.on_housekeeping(),
                Some(done) = node.room_work.next(), if !node.room_work.is_empty() => {
                    node.on_room_done(done)
                }
            }
            node.store_new_roster();
            if node.dirty {
                node.publish();
            }
        }
        tracing::info!("cluster layer stopped");
        Ok(())
    }
}

/// Run a cluster node until `shutdown` completes; see [`Cluster::run`].
pub async fn run(
    config: ClusterConfig,
    keypair: Keypair,
    local: watch::Receiver<LocalState>,
    urgent: mpsc::Receiver<()>,
    view_tx: watch::Sender<ClusterView>,
    metrics: GossipMetrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Cluster::new(config, keypair, metrics)
        .run(local, urgent, view_tx, shutdown)
        .await
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// A static bootstrap address and its redial state.
struct Boot {
    addr: Multiaddr,
    peer: Option<PeerId>,
    pending: Option<ConnectionId>,
    next: Instant,
    backoff: Duration,
    is_self: bool,
}

/// Limits a log line to one per `every`; the lines in between are counted
/// and reported with the next one.
struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log now, `n` lines were suppressed since the last one.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Whether to dial `peer` now according to its entry in `redial` (next
/// attempt, current backoff; none yet means "now, starting at `first`"). If
/// so, the next attempt is scheduled after `jitter(backoff)` and the backoff
/// doubles, up to `max`.
fn redial_due(
    redial: &mut HashMap<PeerId, (Instant, Duration)>,
    peer: PeerId,
    now: Instant,
    first: Duration,
    max: Duration,
    jitter: impl FnOnce(Duration) -> Duration,
) -> bool {
    let (next, backoff) = redial.get(&peer).copied().unwrap_or((now, first));
    if next > now {
        return false;
    }
    redial.insert(peer, (now + jitter(backoff), (backoff * 2).min(max)));
    true
}

/// Why an incoming connection failed, for the metrics: `None` when it says
/// nothing about the remote (our own shutdown, our own blocklist, our own
/// address in our bootstrap list dialling back to us).
fn incoming_failure_reason(error: &ListenError) -> Option<RejectReason> {
    match error {
        ListenError::Aborted | ListenError::LocalPeerId { .. } => None,
        ListenError::Denied { cause } => {
            if cause
                .downcast_ref::<allow_block_list::NotAllowed>()
                .is_some()
            {
                Some(RejectReason::Unauthorized)
            } else if cause.downcast_ref::<allow_block_list::Blocked>().is_some() {
                None
            } else {
                // A connection cap (`connection_limits::Exceeded`).
                Some(RejectReason::Handshake)
            }
        }
        ListenError::WrongPeerId { .. } | ListenError::Transport(_) => {
            Some(RejectReason::Handshake)
        }
    }
}

/// Token bucket for inbound requests of one peer.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Whether the bucket would be full by `now`, i.e. no different from a
    /// fresh one (and can be forgotten).
    fn refilled(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * rate >= burst
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Node {
    me: PeerId,
    cfg: ClusterConfig,
    swarm: Swarm<Behaviour>,
    engine: Engine,
    metrics: GossipMetrics,
    view_tx: watch::Sender<ClusterView>,
    pending: HashMap<OutboundRequestId, (PeerId, RequestKind, Sent)>,
    /// Peers with an outstanding `Sync` request (at most one each).
    outstanding: HashSet<PeerId>,
    connected: HashSet<PeerId>,
    /// The remote IP address of each connected peer (its first connection).
    remote_ips: HashMap<PeerId, std::net::IpAddr>,
    /// Peers that do not speak the sync protocol, until when to ignore them.
    non_members: HashMap<PeerId, Instant>,
    blocked: HashSet<PeerId>,
    listen_addrs: Vec<Multiaddr>,
    buckets: HashMap<PeerId, Bucket>,
    bootstrap: Vec<Boot>,
    /// Members we lost, and mDNS-discovered peers we are not connected to:
    /// next redial time and backoff.
    redial: HashMap<PeerId, (Instant, Duration)>,
    /// Addresses mDNS reported and has not expired. mDNS reports a peer only
    /// once, so a first dial that fails (e.g. a simultaneous dial) must be
    /// retried from here.
    mdns_peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Rate limit of the handshake-failure log line.
    handshake_log: LogLimiter,
    rng: StdRng,
    dirty: bool,
    /// Where room commands are applied (the agent's core loop).
    room_sink: Option<mpsc::Sender<RoomApply>>,
    /// Room command ids applied here (replays are refused).
    room_seen: room::Seen,
    /// Room commands this node sent out, by id, until every answer is in.
    rooms: HashMap<u64, PendingRoom>,
    /// Outstanding room requests: which command, to whom.
    room_out: HashMap<OutboundRequestId, (u64, PeerId)>,
    /// Room commands waiting for the local state machine's answer.
    room_work: futures::stream::FuturesUnordered<futures::future::BoxFuture<'static, RoomDone>>,
}

/// A room command this node sent, collecting answers.
struct PendingRoom {
    /// The command's wire form, for members reached after a dial.
    bytes: Vec<u8>,
    /// Alive members this node was not connected to: dialled, sent the
    /// command once connected, reported unreached at `dial_until`.
    dialing: HashSet<PeerId>,
    dial_until: Instant,
    report: RoomReport,
    /// Answers still expected (peers, and this node's own).
    waiting: usize,
    reply: Option<tokio::sync::oneshot::Sender<Result<RoomReport, String>>>,
}

/// The local state machine answered a room command.
enum RoomDone {
    /// One this node sent (by id).
    Own(u64, RoomAck),
    /// One a peer sent: answer on its channel.
    Peer(request_response::ResponseChannel<Vec<u8>>, RoomAck),
}

impl Node {
    fn jitter(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.rng.random_range(0.8..1.2))
    }

    fn allowed(&self, p: &PeerId) -> bool {
        *p != self.me
            && !self.blocked.contains(p)
            && !self.non_members.contains_key(p)
            && self.cfg.allowlist.as_ref().is_none_or(|a| a.contains(p))
    }

    fn connected_list(&self) -> Vec<PeerId> {
        self.connected
            .iter()
            .copied()
            .filter(|p| !self.non_members.contains_key(p))
            .collect()
    }

    fn publish(&mut self) {
        let connected_list = self.connected_list();
        let now = Instant::now();
        let hub = self.engine.hub(|p| connected_list.contains(p), now);
        let view = self.engine.view(
            now,
            &self.connected,
            &self.remote_ips,
            &self.listen_addrs,
            Some(hub),
        );
        self.view_tx.send_replace(view);
        self.dirty = false;
    }

    fn refresh_and_publish(&mut self) {
        self.engine.refresh(Now::system(), false);
        self.publish();
    }

    fn send(&mut self, peer: PeerId, kind: RequestKind) {
        if !self.connected.contains(&peer) || self.non_members.contains_key(&peer) {
            return;
        }
        if kind == RequestKind::Sync && !self.outstanding.insert(peer) {
            return;
        }
        let (req, sent) = self.engine.request(peer, kind, Now::system());
        self.send_built(peer, kind, req, sent);
    }

    fn send_built(&mut self, peer: PeerId, kind: RequestKind, req: SyncRequest, sent: Sent) {
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, req.to_bytes());
        self.pending.insert(id, (peer, kind, sent));
        self.metrics.message("out", kind.label());
        self.dirty = true; // our own record may have a new version
    }

    fn push_urgent(&mut self) {
        let now = Now::system();
        self.engine.refresh(now, true);
        let targets: Vec<PeerId> = self
            .connected_list()
            .into_iter()
            .filter(|p| {
                self.engine
                    .liveness(p, now.mono)
                    .is_some_and(|l| l != Liveness::Dead)
            })
            .collect();
        tracing::debug!(peers = targets.len(), "pushing an urgent change");
        for p in targets {
            self.send(p, RequestKind::Push);
        }
        self.dirty = true;
    }

    fn on_sync_tick(&mut self) {
        let now = Instant::now();
        let list = self.connected_list();
        for p in self.engine.sync_targets(&list, self.cfg.sync_interval, now) {
            self.send(p, RequestKind::Sync);
        }
    }

    fn on_anti_entropy_tick(&mut self) {
        let now = Instant::now();
        let list = self.connected_list();
        for p in self
            .engine
            .anti_entropy_targets(&list, self.cfg.fanout, now, &mut self.rng)
        {
            self.send(p, RequestKind::Sync);
        }
    }

    fn on_housekeeping(&mut self) {
        let now = Now::system();
        if self.engine.refresh(now, false) | self.engine.housekeeping(now) {
            self.dirty = true;
        }
        self.non_members.retain(|_, until| *until > now.mono);
        let (rate, burst) = (
            f64::from(self.cfg.inbound_rate),
            f64::from(self.cfg.inbound_burst),
        );
        self.buckets
            .retain(|_, b| !b.refilled(now.mono, rate, burst));
        let (engine, mdns_peers) = (&self.engine, &self.mdns_peers);
        self.redial
            .retain(|p, _| engine.liveness(p, now.mono).is_some() || mdns_peers.contains_key(p));
        self.redial_bootstrap(now.mono);
        self.dial_members(now.mono);
        self.room_dial_timeouts(now.mono);
        self.dial_discovered(now.mono);
    }

    fn redial_bootstrap(&mut self, now: Instant) {
        for i in 0..self.bootstrap.len() {
            let b = &self.bootstrap[i];
            if b.is_self || b.pending.is_some() || b.next > now {
                continue;
            }
            if let Some(p) = b.peer {
                if self.connected.contains(&p) || !self.allowed(&p) {
                    continue;
                }
            }
            let opts = match b.peer {
                Some(p) => DialOpts::peer_id(p)
                    .addresses(vec![b.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .allocate_new_port()
                    .build(),
                None => DialOpts::unknown_peer_id()
                    .address(b.addr.clone())
                    .allocate_new_port()
                    .build(),
            };
            let id = opts.connection_id();
            let addr = b.addr.clone();
            let backoff = b.backoff;
            let wait = self.jitter(backoff);
            let b = &mut self.bootstrap[i];
            b.next = now + wait;
            b.backoff = (backoff * 2).min(self.cfg.redial_max);
            match self.swarm.dial(opts) {
                Ok(()) => b.pending = Some(id),
                Err(e) => tracing::debug!(%addr, error = %e, "bootstrap dial not started"),
            }
        }
    }

    fn dial_members(&mut self, now: Instant) {
        for (peer, liveness, addrs) in self.engine.members(now) {
            if addrs.is_empty() || self.connected.contains(&peer) || !self.allowed(&peer) {
                continue;
            }
            // Dead members are redialled too (a healed partition has no
            // other way back without mDNS), but only at the slowest pace.
            let first = if liveness == Liveness::Dead {
                self.cfg.redial_max
            } else {
                self.cfg.redial_min
            };
            if !self.redial_due(peer, now, first) {
                continue;
            }
            self.dial_peer(peer, addrs, "member");
        }
    }

    /// Redial mDNS-discovered peers we are not connected to, with the same
    /// backoff as members.
    fn dial_discovered(&mut self, now: Instant) {
        let due: Vec<(PeerId, Vec<Multiaddr>)> = self
            .mdns_peers
            .iter()
            .filter(|(p, _)| !self.connected.contains(p) && self.allowed(p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        for (peer, addrs) in due {
            if self.redial_due(peer, now, self.cfg.redial_min) {
                self.dial_peer(peer, addrs, "discovered peer");
            }
        }
    }

    fn redial_due(&mut self, peer: PeerId, now: Instant, first: Duration) -> bool {
        let max = self.cfg.redial_max;
        let factor = self.rng.random_range(0.8..1.2);
        redial_due(&mut self.redial, peer, now, first, max, |d| {
            d.mul_f64(factor)
        })
    }

    /// Dial a known peer from a fresh port: dialling from the listen port
    /// (libp2p's default) makes two simultaneous dials between the same
    /// listen ports one TCP connection by simultaneous open, on which both
    /// sides start the noise handshake as initiator and both fail
    /// (docs/failure-matrix.md, scenario k).
    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, what: &str) {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "{what} dial not started");
        }
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::Block(p) => {
                self.blocked.insert(p);
                self.swarm.behaviour_mut().block.block_peer(p);
            }
            Control::Unblock(p) => {
                self.blocked.remove(&p);
                self.swarm.behaviour_mut().block.unblock_peer(p);
                self.redial.remove(&p);
            }
            Control::Dial(a) => {
                let opts = DialOpts::unknown_peer_id()
                    .address(a.clone())
                    .allocate_new_port()
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::warn!(addr = %a, error = %e, "dial failed");
                }
            }
            Control::Roster { signed, reply } => {
                let answer = match self.engine.offer_roster(&signed, Now::system()) {
                    Ok(_) => {
                        let r = self.engine.roster().map(|r| (r.version, r.members.len()));
                        let (v, n) = r.unwrap_or_default();
                        tracing::warn!(
                            version = v,
                            members = n,
                            "operator installed a new room roster"
                        );
                        self.dirty = true;
                        // Peers behind on the roster get it with this push.
                        self.push_urgent();
                        Ok(format!(
                            "roster version {v} with {n} members adopted; spreading to the peers"
                        ))
                    }
                    Err(e) => Err(e.to_string()),
                };
                self.store_new_roster();
                let _ = reply.send(answer);
            }
            Control::Room { command, reply } => self.start_room(command, reply),
        }
    }

    /// Store a roster adopted since the last call (atomically: a power cut
    /// leaves the old or the new one, never a torn file).
    fn store_new_roster(&mut self) {
        let Some(r) = self.engine.take_new_roster() else {
            return;
        };
        self.dirty = true;
        if let Some(path) = &self.cfg.roster_path {
            if let Err(e) = super::identity::write_atomic(path, r.to_bytes(), 0o644) {
                tracing::error!(path = %path.display(), error = %e, "cannot store the room roster; it is kept in memory and comes back from the peers");
            }
        }
    }

    fn publishable_addrs(&self) -> Vec<Multiaddr> {
        let routable: Vec<Multiaddr> = self
            .listen_addrs
            .iter()
            .filter(|a| !is_loopback(a))
            .cloned()
            .collect();
        if routable.is_empty() {
            self.listen_addrs.clone()
        } else {
            routable
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
                self.engine.set_addrs(self.publishable_addrs());
                self.dirty = true;
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                self.engine.set_addrs(self.publishable_addrs());
                self.dirty = true;
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error, "listener error")
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                for b in self.bootstrap.iter_mut() {
                    if b.pending == Some(connection_id) {
                        b.pending = None;
                        b.peer = Some(peer_id);
                        b.backoff = self.cfg.redial_min;
                    }
                }
                self.redial.remove(&peer_id);
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.remote_ips.entry(peer_id).or_insert(ip);
                }
                if self.connected.insert(peer_id) {
                    tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                    self.dirty = true;
                }
                if num_established.get() == 1 {
                    // First contact: exchange digests right away.
                    self.send(peer_id, RequestKind::Sync);
                    self.room_connected(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
                self.connected.remove(&peer_id);
                self.remote_ips.remove(&peer_id);
                self.outstanding.remove(&peer_id);
                // The rate-limit bucket stays: a fresh one is full, so
                // reconnecting would buy a new burst. Housekeeping drops it
                // once it has refilled.
                self.engine.forget_knowledge(&peer_id);
                let now = Instant::now();
                let min = self.cfg.redial_min;
                for b in self.bootstrap.iter_mut() {
                    if b.peer == Some(peer_id) {
                        b.next = now + min;
                    }
                }
                self.redial.insert(peer_id, (now + min, min));
                self.dirty = true;
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => match incoming_failure_reason(&error) {
                Some(RejectReason::Unauthorized) => {
                    tracing::info!(addr = %send_back_addr, "refused a peer not in the allowlist");
                    self.metrics.reject(RejectReason::Unauthorized);
                }
                Some(reason) => {
                    self.metrics.reject(reason);
                    if let Some(suppressed) = self.handshake_log.hit(Instant::now()) {
                        // Wrong PSK, garbage, a scan, or a connection cap:
                        // worth a line, but not one per connection.
                        tracing::warn!(addr = %send_back_addr, %error, suppressed, "incoming connection failed its handshake (wrong swarm.key? a scan? a connection limit?); counted in coolmesh_gossip_rejected_total{{reason=\"handshake\"}}");
                    }
                }
                None => {
                    tracing::debug!(addr = %send_back_addr, %error, "incoming connection closed")
                }
            },
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let denied = matches!(&error, DialError::Denied { cause } if cause.downcast_ref::<allow_block_list::NotAllowed>().is_some());
                if denied {
                    self.metrics.reject(RejectReason::Unauthorized);
                }
                for b in self.bootstrap.iter_mut() {
                    if b.pending == Some(connection_id) {
                        b.pending = None;
                        if matches!(error, DialError::LocalPeerId { .. }) {
                            tracing::info!(addr = %b.addr, "bootstrap address is this node; skipping it");
                            b.is_self = true;
                        } else {
                            tracing::debug!(addr = %b.addr, ?peer_id, error = %error, "bootstrap dial failed");
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if !info.protocols.contains(&PROTOCOL) =>
            {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "peer does not speak coolmesh; disconnecting");
                self.non_members
                    .insert(peer_id, Instant::now() + NON_MEMBER_QUARANTINE);
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    let addrs = self.mdns_peers.entry(peer).or_default();
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
                // Dial the new ones now (the backoff says whether they are
                // new); `dial_discovered` retries them from housekeeping.
                self.dial_discovered(Instant::now());
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(list)) => {
                for (peer, addr) in list {
                    if let Some(addrs) = self.mdns_peers.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.mdns_peers.remove(&peer);
                        }
                    }
                }
            }
            BehaviourEvent::Sync(ev) => self.on_sync_event(ev),
            BehaviourEvent::Room(ev) => self.on_room_event(ev),
            _ => {}
        }
    }

    /// Take a token from `peer`'s inbound bucket (sync and room requests
    /// share it); a request over the rate is counted and refused.
    fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        let (rate, burst) = (
            f64::from(self.cfg.inbound_rate),
            f64::from(self.cfg.inbound_burst),
        );
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        if bucket.take(now, rate, burst) {
            true
        } else {
            self.metrics.reject(RejectReason::RateLimited);
            false
        }
    }

    fn on_sync_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let now = Now::system();
                if !self.admit(peer, now.mono) {
                    return; // dropping the channel refuses the request
                }
                let req = match SyncRequest::from_bytes(&request) {
                    Ok(r) => r,
                    Err(reason) => {
                        tracing::debug!(%peer, "malformed request");
                        self.metrics.reject(reason);
                        return;
                    }
                };
                self.metrics.message("in", req.kind().label());
                match self.engine.handle_request(peer, &req, now) {
                    Ok((resp, out)) => {
                        for r in &out.rejected {
                            tracing::debug!(%peer, reason = %r, "rejected a record");
                            self.metrics.reject(*r);
                        }
                        self.dirty |= out.changed;
                        if self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, resp.to_bytes())
                            .is_ok()
                        {
                            self.metrics.message("out", "records");
                        }
                    }
                    Err(reason) => {
                        tracing::debug!(%peer, %reason, "rejected a request");
                        self.metrics.reject(reason);
                    }
                }
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.metrics.message("in", "records");
                let Some((_, kind, sent)) = self.pending.remove(&request_id) else {
                    return;
                };
                if kind == RequestKind::Sync {
                    self.outstanding.remove(&peer);
                }
                let resp = match SyncResponse::from_bytes(&response) {
                    Ok(r) => r,
                    Err(reason) => {
                        self.metrics.reject(reason);
                        self.engine.forget_knowledge(&peer);
                        return;
                    }
                };
                let (follow, out) = self
                    .engine
                    .handle_response(peer, &sent, &resp, Now::system());
                for r in &out.rejected {
                    tracing::debug!(%peer, reason = %r, "rejected a record");
                    self.metrics.reject(*r);
                }
                self.dirty |= out.changed;
                if let Some((req, sent)) = follow {
                    self.send_built(peer, RequestKind::Records, req, sent);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, kind, _)) = self.pending.remove(&request_id) {
                    if kind == RequestKind::Sync {
                        self.outstanding.remove(&peer);
                    }
                }
                self.engine.forget_knowledge(&peer);
                if matches!(
                    error,
                    request_response::OutboundFailure::UnsupportedProtocols
                ) {
                    self.non_members
                        .insert(peer, Instant::now() + NON_MEMBER_QUARANTINE);
                    let _ = self.swarm.disconnect_peer_id(peer);
                } else {
                    tracing::debug!(%peer, %error, "exchange failed");
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                // Framing errors of inbound requests never get here; the
                // codec counts them (see `FrameCodec`).
                tracing::trace!(%peer, %error, "inbound exchange failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}

impl Node {
    fn room_policy(&self) -> room::Policy {
        room::Policy {
            cluster: self.cfg.name.clone(),
            operator: self.cfg.operator.clone(),
            enabled: self.cfg.room_commands,
        }
    }

    /// Hand a checked command to the local state machine; the future
    /// yields its answer (or a refusal if it cannot be asked).
    fn apply_here(
        &self,
        command: RoomCommand,
        from: Option<PeerId>,
    ) -> futures::future::BoxFuture<'static, RoomAck> {
        let sink = self.room_sink.clone();
        Box::pin(async move {
            let Some(sink) = sink else {
                return RoomAck::refused("", "no state machine on this node", "");
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let apply = RoomApply {
                command,
                from,
                reply: tx,
            };
            // Bounded: a flood of commands is refused, never queued.
            if sink.try_send(apply).is_err() {
                return RoomAck::refused("", "the state machine is busy; retry", "");
            }
            match tokio::time::timeout(ROOM_TIMEOUT, rx).await {
                Ok(Ok(ack)) => ack,
                _ => RoomAck::refused("", "the state machine did not answer in time", ""),
            }
        })
    }

    /// The operator's command: check it as every member will, apply it
    /// here, send it to every connected member.
    fn start_room(
        &mut self,
        bytes: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<RoomReport, String>>,
    ) {
        let cmd = match room::verify(&bytes, &self.room_policy(), super::engine::unix_ms()) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                return;
            }
        };
        if self.rooms.contains_key(&cmd.id) || !self.room_seen.insert(cmd.id) {
            let _ = reply.send(Err(room::RoomError::Replayed(cmd.id).to_string()));
            return;
        }
        tracing::warn!(
            id = %format!("{:016x}", cmd.id),
            action = %cmd.action,
            requester = %cmd.requester,
            "operator sent a room command; applying it here and sending it to every member"
        );
        let targets: Vec<PeerId> = self
            .connected_list()
            .into_iter()
            .filter(|p| self.engine.is_member(p))
            .collect();
        // Members alive in the view but not connected here (heard through
        // a relay): dial them, and send the command once connected.
        let mut unreached = Vec::new();
        let mut dialing = HashSet::new();
        let now = Instant::now();
        for (p, liveness, addrs) in self.engine.members(now) {
            if liveness == Liveness::Dead || targets.contains(&p) || !self.engine.is_member(&p) {
                continue;
            }
            if addrs.is_empty() || !self.allowed(&p) {
                unreached.push(Unreached {
                    peer_id: p.to_base58(),
                    node: self.peer_name(&p),
                    error: "not connected to this node, and no address to dial".into(),
                });
                continue;
            }
            self.dial_peer(p, addrs, "room command");
            dialing.insert(p);
        }
        for p in &targets {
            let id = self
                .swarm
                .behaviour_mut()
                .room
                .send_request(p, bytes.clone());
            self.room_out.insert(id, (cmd.id, *p));
        }
        if !dialing.is_empty() {
            tracing::info!(
                members = dialing.len(),
                "dialling members this node is not connected to for the room command"
            );
        }
        let id = cmd.id;
        let waiting = targets.len() + dialing.len() + 1;
        self.rooms.insert(
            id,
            PendingRoom {
                bytes,
                dialing,
                dial_until: now + ROOM_TIMEOUT,
                report: RoomReport {
                    id: format!("{id:016x}"),
                    action: cmd.action,
                    requester: cmd.requester.clone(),
                    answers: Vec::new(),
                    unreached,
                },
                waiting,
                reply: Some(reply),
            },
        );
        let work = self.apply_here(cmd, None);
        self.room_work
            .push(Box::pin(async move { RoomDone::Own(id, work.await) }));
    }

    /// One answer (or failure) for a command this node sent.
    fn room_answer(&mut self, id: u64, peer: PeerId, answer: Result<RoomAck, String>) {
        // The name from the peer's record: a refusal by a peer's cluster
        // layer carries none.
        let node = self.peer_name(&peer);
        let Some(pending) = self.rooms.get_mut(&id) else {
            return;
        };
        match answer {
            Ok(mut ack) => {
                if ack.node.is_empty() {
                    ack.node = node;
                }
                pending.report.answers.push(NodeAnswer {
                    peer_id: peer.to_base58(),
                    ack,
                })
            }
            Err(error) => {
                pending.report.unreached.push(Unreached {
                    peer_id: peer.to_base58(),
                    node,
                    error,
                });
            }
        }
        pending.waiting = pending.waiting.saturating_sub(1);
        if pending.waiting == 0 {
            if let Some(mut p) = self.rooms.remove(&id) {
                // This node first, then by name.
                let me = self.me.to_base58();
                p.report.answers.sort_by(|a, b| {
                    (a.peer_id != me, &a.ack.node).cmp(&(b.peer_id != me, &b.ack.node))
                });
                p.report.unreached.sort_by(|a, b| a.node.cmp(&b.node));
                if let Some(reply) = p.reply.take() {
                    let _ = reply.send(Ok(p.report));
                }
            }
        }
    }

    /// The name a peer's record gives ("" if unknown).
    fn peer_name(&self, p: &PeerId) -> String {
        self.view_tx
            .borrow()
            .peers
            .get(p)
            .map(|v| v.record.state.node.clone())
            .unwrap_or_default()
    }

    /// A member connected: send it the room commands waiting for it.
    fn room_connected(&mut self, peer: PeerId) {
        let mut sends = Vec::new();
        for (id, r) in self.rooms.iter_mut() {
            if r.dialing.remove(&peer) {
                sends.push((*id, r.bytes.clone()));
            }
        }
        for (id, bytes) in sends {
            let rid = self.swarm.behaviour_mut().room.send_request(&peer, bytes);
            self.room_out.insert(rid, (id, peer));
        }
    }

    /// Members that could not be reached by dialling in time.
    fn room_dial_timeouts(&mut self, now: Instant) {
        let mut late = Vec::new();
        for (id, r) in self.rooms.iter_mut() {
            if now >= r.dial_until && !r.dialing.is_empty() {
                late.extend(r.dialing.drain().map(|p| (*id, p)));
            }
        }
        for (id, p) in late {
            self.room_answer(
                id,
                p,
                Err(format!(
                    "not connected to this node, and no connection within {} s",
                    ROOM_TIMEOUT.as_secs()
                )),
            );
        }
    }

    fn on_room_done(&mut self, done: RoomDone) {
        match done {
            RoomDone::Own(id, ack) => self.room_answer(id, self.me, Ok(ack)),
            RoomDone::Peer(channel, ack) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .room
                    .send_response(channel, ack.to_bytes());
            }
        }
    }

    fn on_room_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let now = Now::system();
                if !self.admit(peer, now.mono) {
                    return; // dropping the channel refuses the request
                }
                let refuse = |node: &mut Node, channel, why: String| {
                    tracing::warn!(%peer, reason = %why, "refused a room command");
                    let ack = RoomAck::refused("", why, "");
                    let _ = node
                        .swarm
                        .behaviour_mut()
                        .room
                        .send_response(channel, ack.to_bytes());
                };
                if !self.engine.is_member(&peer) {
                    self.metrics.reject(RejectReason::NotInRoster);
                    refuse(self, channel, "the sender is not in the room roster".into());
                    return;
                }
                let cmd = match room::verify(&request, &self.room_policy(), now.unix_ms) {
                    Ok(c) => c,
                    Err(e) => {
                        refuse(self, channel, e.to_string());
                        return;
                    }
                };
                if !self.room_seen.insert(cmd.id) {
                    refuse(self, channel, room::RoomError::Replayed(cmd.id).to_string());
                    return;
                }
                let node = self
                    .view_tx
                    .borrow()
                    .peers
                    .get(&peer)
                    .map(|v| v.record.state.node.clone())
                    .unwrap_or_default();
                tracing::warn!(
                    id = %format!("{:016x}", cmd.id),
                    action = %cmd.action,
                    requester = %cmd.requester,
                    from_peer = %peer,
                    from_node = %node,
                    signed = self.cfg.operator.is_some(),
                    "room command from a member"
                );
                let work = self.apply_here(cmd, Some(peer));
                self.room_work
                    .push(Box::pin(async move { RoomDone::Peer(channel, work.await) }));
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((id, _)) = self.room_out.remove(&request_id) {
                    let answer = RoomAck::from_bytes(&response).map_err(|e| e.to_string());
                    self.room_answer(id, peer, answer);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((id, _)) = self.room_out.remove(&request_id) {
                    let why = match error {
                        request_response::OutboundFailure::UnsupportedProtocols => {
                            "does not speak the room protocol (an older agent?)".to_string()
                        }
                        request_response::OutboundFailure::Timeout => {
                            format!("no answer within {} s", ROOM_TIMEOUT.as_secs())
                        }
                        e => e.to_string(),
                    };
                    self.room_answer(id, peer, Err(why));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound room exchange failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}

/// How long a starting node waits for a peer before making its own record.
const OWN_RECORD_HOLD: Duration = Duration::from_secs(3);

/// The IP address of a multiaddr (`/ip4/..` or `/ip6/..` first).
fn ip_of(a: &Multiaddr) -> Option<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    a.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovered_peers_are_redialled_with_backoff_after_a_failed_dial() {
        let (t0, s) = (Instant::now(), Duration::from_secs);
        let (first, max) = (s(1), s(4));
        let peer = PeerId::random();
        let mut redial = HashMap::new();
        let no_jitter = |d: Duration| d;
        // (time, dial due?) after a first dial at t0 that fails: the next
        // attempts come 1, 2, 4, 4 s apart.
        let table = [
            (0, true),
            (500, false),
            (1_000, true),
            (2_000, false),
            (3_000, true),
            (6_999, false),
            (7_000, true),
            (11_000, true),
            (14_000, false),
            (15_000, true),
        ];
        for (ms, want) in table {
            let now = t0 + Duration::from_millis(ms);
            assert_eq!(
                redial_due(&mut redial, peer, now, first, max, no_jitter),
                want,
                "at {ms} ms"
            );
        }
        // A connection clears the entry: the next loss starts over at `first`.
        redial.remove(&peer);
        assert!(redial_due(
            &mut redial,
            peer,
            t0 + s(20),
            first,
            max,
            no_jitter
        ));
        assert_eq!(redial[&peer], (t0 + s(21), s(2)));
    }

    #[test]
    fn rate_limit_bucket_allows_rate_and_burst_and_refills() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let (rate, burst) = (20.0, 40.0);
        let mut b = Bucket {
            tokens: burst,
            last: t0,
        };
        // A burst of 40 at once, then nothing until tokens come back.
        let granted = (0..100).filter(|_| b.take(at(0), rate, burst)).count();
        assert_eq!(granted, 40);
        assert!(!b.take(at(10), rate, burst));
        // One second later: 20 more.
        let granted = (0..100).filter(|_| b.take(at(1_010), rate, burst)).count();
        assert_eq!(granted, 20);
        // Not forgettable until it would be full again (2 s at 20/s).
        assert!(!b.refilled(at(2_000), rate, burst));
        assert!(b.refilled(at(3_010), rate, burst));
    }

    #[test]
    fn handshake_log_is_rate_limited_and_counts_what_it_skipped() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let table = [
            (0, Some(0)),
            (1, None),
            (9_999, None),
            (10_000, Some(2)),
            (10_001, None),
            (60_000, Some(1)),
        ];
        for (ms, want) in table {
            assert_eq!(l.hit(at(ms)), want, "at {ms} ms");
        }
    }

    #[test]
    fn incoming_failures_are_classified() {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let denied = |c| ListenError::Denied { cause: c };
        let table: Vec<(&str, ListenError, Option<RejectReason>)> = vec![
            ("aborted", ListenError::Aborted, None),
            (
                "our own address",
                ListenError::LocalPeerId {
                    address: addr.clone(),
                },
                None,
            ),
            (
                "transport (wrong PSK, garbage, timeout)",
                ListenError::Transport(libp2p::TransportError::Other(std::io::Error::other("x"))),
                Some(RejectReason::Handshake),
            ),
            (
                "over a connection cap",
                denied(libp2p::swarm::ConnectionDenied::new(std::io::Error::other(
                    "cap",
                ))),
                Some(RejectReason::Handshake),
            ),
        ];
        for (what, e, want) in table {
            assert_eq!(incoming_failure_reason(&e), want, "{what}");
        }
    }
}

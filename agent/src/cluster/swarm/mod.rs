//! The libp2p side: transport, the one `NetworkBehaviour`, and the
//! `tokio::select!` loop that drives the [`Engine`].
//!
//! The node's state and the loop are here ([`Cluster::run`]); the rest is
//! split by what it handles:
//!
//! - `behaviour`: the transport (TCP, optional pnet, noise, yamux), the
//!   swarm settings and the one `NetworkBehaviour`.
//! - `sync`: the anti-entropy exchanges: sending requests, answering
//!   them (with the per-peer inbound rate limit), taking responses.
//! - `connections`: swarm and behaviour events (connections, identify,
//!   mDNS) and dialling (bootstrap, members, discovered peers) with backoff.
//! - `room_commands`: room commands sent by the operator through this node
//!   and received from members.
//! - `swim_driver`: SWIM (`cluster.swim`): its datagrams, its timers on a
//!   heap the loop sleeps on, its verdicts handed to the engine.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};

use crate::cluster::config::ClusterConfig;
use crate::cluster::engine::{Engine, Now, Sent};
use crate::cluster::metrics::GossipMetrics;
use crate::cluster::record::LocalState;
use crate::cluster::room::{self, RoomApply, RoomReport};
use crate::cluster::view::ClusterView;
use crate::cluster::wire::RequestKind;

mod behaviour;
mod connections;
mod room_commands;
mod swim_driver;
mod sync;
#[cfg(test)]
mod tests;

use behaviour::build_behaviour;
pub use behaviour::{build_transport, swarm_config, Behaviour, BehaviourEvent, IDENTIFY_PROTOCOL};
use connections::{peer_of, Boot, LogLimiter};
use room_commands::{PendingRoom, RoomDone};
use sync::Bucket;

/// Housekeeping period: liveness, refresh, redials, view publication.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How long a peer that does not speak the sync protocol is left alone.
const NON_MEMBER_QUARANTINE: Duration = Duration::from_secs(600);
/// At most one handshake-failure log line per this long (a scan or a flood
/// would otherwise write one per connection); the counter counts them all.
const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a starting node waits for a peer before making its own record.
const OWN_RECORD_HOLD: Duration = Duration::from_secs(3);

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
            swim: None,
        };
        if node.cfg.swim {
            let seed = node.rng.random();
            node.swim = Some(swim_driver::SwimState::new(me, seed));
            node.engine.set_speaks_swim(true);
        }
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
            let swim_due = node.swim_due();
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
                _ = house_tick.tick() => {
                    node.on_housekeeping();
                    node.swim_learn();
                }
                () = sleep_until_opt(swim_due) => node.on_swim_timers(),
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

/// Sleep until `at`; forever without one.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
    /// SWIM (`cluster.swim`), with its timers.
    swim: Option<swim_driver::SwimState>,
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

    fn on_housekeeping(&mut self) {
        let now = Now::system();
        let refreshed = self.engine.refresh(now, false);
        if refreshed | self.engine.housekeeping(now) {
            self.dirty = true;
        }
        if refreshed {
            // A new version of our record: to the overlay neighbours.
            self.forward_news();
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
}

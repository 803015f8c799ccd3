//! Discrete-event simulation of the gossip engine: the real
//! [`Engine`] code (requests, responses, follow-ups, refresh, liveness,
//! housekeeping) on a simulated network in virtual time. Shared by
//! `tests/cluster_sim.rs` (small N, asserted) and
//! `benches/gossip_scale.rs` (large N, reported).
//!
//! The network: one-way latency `latency_ms` plus uniform jitter, each
//! message lost with probability `loss` (a lost request or response times
//! out after `request_timeout`, as over a connection that stopped
//! answering), and an optional partition (messages between the two sides
//! are lost for a time window). Processing takes no virtual time. Every
//! node is connected to every other (the design under test dials every
//! member). Bytes are counted as the encoded frame (CBOR body plus its
//! varint length) a sender writes.
//!
//! [`Sim::with_swim`] runs the design of docs/scale.md steps 1-3: every
//! engine runs SWIM (records say so), so records are made on change and
//! spread over the overlay (`Engine::push_targets` after every change,
//! `sync_targets` and `anti_entropy_targets` in overlay mode). SWIM itself
//! is not run here (`sim::swim` simulates it, at N=1,000: a crash is down
//! everywhere in 7.5 s); its verdict on a crash is delivered to every
//! engine `detect_ms` after the crash.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

pub mod swim;

use coolmesh_agent::cluster::config::ClusterConfig;
use coolmesh_agent::cluster::counters::{CounterKind, CounterSlot};
use coolmesh_agent::cluster::engine::{Engine, EngineConfig, Now, Sent};
use coolmesh_agent::cluster::record::{FsmSummary, LocalState, TargetObservation, ThermalReport};
use coolmesh_agent::cluster::wire::{RequestKind, SyncRequest, SyncResponse};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Counter every simulated operation increments.
const OPS: &str = "ops";

enum Ev {
    Sync(usize),
    AntiEntropy(usize),
    Refresh(usize),
    Op(usize),
    Request {
        from: usize,
        to: usize,
        req: SyncRequest,
        sent: Sent,
    },
    Response {
        to: usize,
        from: usize,
        resp: SyncResponse,
        sent: Sent,
    },
    /// The request timeout of an exchange that got no answer.
    Failed {
        from: usize,
        to: usize,
    },
    Crash(usize),
    /// SWIM's verdict on a crashed node reaches every engine.
    SwimDown(usize),
}

/// Network and timing of one simulation.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// One-way latency, ms.
    pub latency_ms: u64,
    /// Extra uniform random latency 0..=jitter_ms, ms.
    pub jitter_ms: u64,
    /// Probability that one message is lost.
    pub loss: f64,
    /// Nodes `0..side` on one side of a partition active in
    /// `[from_ms, until_ms)`: messages across it are lost.
    pub partition: Option<(usize, u64, u64)>,
}

impl NetConfig {
    /// Fixed latency, no loss, no partition.
    pub fn fixed(latency_ms: u64) -> NetConfig {
        NetConfig {
            latency_ms,
            jitter_ms: 0,
            loss: 0.0,
            partition: None,
        }
    }
}

/// One operation (a counter increment) and how far it got.
#[derive(Clone, Debug)]
pub struct Op {
    /// Issued at, ms.
    pub at: u64,
    /// Nodes that have seen it (the origin included).
    pub seen: usize,
    /// When the 99th percent of nodes saw it, ms.
    pub t99: Option<u64>,
    /// When the last node (so far) saw it, ms.
    pub last: u64,
}

/// The simulation.
pub struct Sim {
    base: Instant,
    /// Virtual time, ms.
    pub now_ms: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    seq: u64,
    /// The engines, one per node.
    pub nodes: Vec<Engine>,
    /// Their PeerIds.
    pub ids: Vec<PeerId>,
    b58: Vec<String>,
    index: HashMap<PeerId, usize>,
    outstanding: Vec<Vec<bool>>,
    /// Whether each node runs (crashed nodes stay "connected").
    pub alive: Vec<bool>,
    local: Vec<LocalState>,
    net: NetConfig,
    cfg: ClusterConfig,
    /// Random source (seeded).
    pub rng: StdRng,
    /// (origin, value) -> progress.
    pub ops: BTreeMap<(usize, u64), Op>,
    /// Origins with operations not yet seen everywhere.
    pending_origins: BTreeMap<usize, u64>,
    /// seen[x][y]: highest op value of y visible at x (only for origins).
    seen: HashMap<usize, Vec<u64>>,
    /// Measurement window `[start, end)`, ms.
    pub measure: (u64, u64),
    /// Messages sent in the window (requests, responses and follow-ups).
    pub measured_messages: u64,
    /// Frame bytes each node sent in the window.
    pub bytes_out: Vec<u64>,
    /// Messages each node sent in the window.
    pub msgs_out: Vec<u64>,
    /// Messages and bytes sent in the window by kind (the request kind's
    /// metric label, or `answer`), to see where a design's cost goes.
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// With SWIM ([`Sim::with_swim`]): when its verdict on a crash comes.
    swim_detect_ms: Option<u64>,
}

/// A realistic record body: one thermal summary, one power target, a
/// state machine summary and a listen address, so message sizes are those
/// of a real room.
pub fn realistic_local(i: usize) -> LocalState {
    LocalState {
        node: format!("rack{:02}-node{:03}", i / 40, i % 40),
        thermal: ThermalReport {
            hottest: Some(54.0 + (i % 17) as f64),
            headroom: Some(30.0 - (i % 17) as f64),
            trend: Some(0.1),
            time_to_critical: None,
            critical: false,
            vote: Some(false),
            air: false,
        },
        power: vec![TargetObservation {
            target: "tcp://10.0.0.1:22".into(),
            up: true,
            at_ms: 1_700_000_000_000,
        }],
        power_up: Some(true),
        fsm: FsmSummary {
            state: "normal".into(),
            reason: String::new(),
            deadline_ms: None,
            ..FsmSummary::default()
        },
        counters: BTreeMap::new(),
        ..LocalState::default()
    }
}

impl Sim {
    /// `n` nodes with the default cluster configuration.
    pub fn new(n: usize, net: NetConfig, seed: u64) -> Sim {
        Sim::with_config(n, net, seed, ClusterConfig::default())
    }

    /// `n` nodes with `cfg`.
    pub fn with_config(n: usize, net: NetConfig, seed: u64, cfg: ClusterConfig) -> Sim {
        let mut ecfg: EngineConfig = cfg.engine_config();
        // Signatures do not change the protocol's behaviour; unoptimised
        // Ed25519 verification would dominate the run time.
        ecfg.insecure_skip_signature_check = true;
        // The simulation is the room: no member cap or introduction budget
        // below its size.
        ecfg.max_members = ecfg.max_members.max(n);
        ecfg.new_identities_burst = ecfg.new_identities_burst.max(n as u32);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nodes: Vec<Engine> = (0..n)
            .map(|_| {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                let key = Keypair::ed25519_from_bytes(secret).expect("32 bytes");
                Engine::new(ecfg.clone(), key)
            })
            .collect();
        let local: Vec<LocalState> = (0..n).map(realistic_local).collect();
        for (i, e) in nodes.iter_mut().enumerate() {
            let addr: Multiaddr = format!(
                "/ip4/10.{}.{}.{}/tcp/7946",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
            .parse()
            .expect("address");
            e.set_addrs(vec![addr]);
            e.set_local(local[i].clone());
        }
        let ids: Vec<PeerId> = nodes.iter().map(|e| e.local_peer_id()).collect();
        let b58 = ids.iter().map(|p| p.to_base58()).collect();
        let index = ids.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        Sim {
            base: Instant::now(),
            now_ms: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            nodes,
            ids,
            b58,
            index,
            outstanding: vec![vec![false; n]; n],
            alive: vec![true; n],
            local,
            net,
            cfg,
            rng,
            ops: BTreeMap::new(),
            pending_origins: BTreeMap::new(),
            seen: HashMap::new(),
            measure: (0, 0),
            measured_messages: 0,
            bytes_out: vec![0; n],
            msgs_out: vec![0; n],
            by_kind: BTreeMap::new(),
            swim_detect_ms: None,
        }
    }

    /// Every node runs SWIM (see the module documentation); a crash is
    /// declared down on every engine `detect_ms` after it.
    pub fn with_swim(mut self, detect_ms: u64) -> Sim {
        for e in &mut self.nodes {
            e.set_speaks_swim(true);
        }
        self.swim_detect_ms = Some(detect_ms);
        self
    }

    /// Overlay mode: push what each out-neighbour of `i` lacks.
    fn forward(&mut self, i: usize) {
        let now = self.now();
        for p in self.nodes[i].push_targets(now.mono) {
            let to = self.index[&p];
            self.send(i, to, RequestKind::Delta);
        }
    }

    /// Out-neighbours of node `i` (overlay mode), as node indices.
    pub fn out_neighbours(&mut self, i: usize) -> Vec<usize> {
        let now = self.now();
        self.nodes[i]
            .out_neighbours(now.mono)
            .into_iter()
            .filter_map(|p| self.index.get(&p).copied())
            .collect()
    }

    /// The cluster configuration in use.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    fn now(&self) -> Now {
        Now {
            mono: self.base + Duration::from_millis(self.now_ms),
            unix_ms: 1_700_000_000_000 + self.now_ms,
        }
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Start every node's timers at random phases.
    pub fn start(&mut self) {
        let sync = self.cfg.sync_interval.as_millis() as u64;
        let ae = self.cfg.anti_entropy_interval.as_millis() as u64;
        for i in 0..self.nodes.len() {
            let a = self.rng.random_range(0..sync);
            let b = self.rng.random_range(0..ae);
            let c = self.rng.random_range(0..250);
            self.at(a, Ev::Sync(i));
            self.at(b, Ev::AntiEntropy(i));
            self.at(c, Ev::Refresh(i));
        }
    }

    /// Schedule an increment at `node` at `t` ms.
    pub fn op_at(&mut self, t: u64, node: usize) {
        self.at(t, Ev::Op(node));
    }

    /// Crash `node` silently (no connection close) at `t` ms.
    pub fn crash_at(&mut self, t: u64, node: usize) {
        self.at(t, Ev::Crash(node));
    }

    fn in_window(&self) -> bool {
        self.now_ms >= self.measure.0 && self.now_ms < self.measure.1
    }

    fn count(&mut self, from: usize, bytes: usize, kind: &'static str) {
        if self.in_window() {
            let b = bytes as u64 + varint_len(bytes as u64);
            self.measured_messages += 1;
            self.bytes_out[from] += b;
            self.msgs_out[from] += 1;
            let k = self.by_kind.entry(kind).or_default();
            k.0 += 1;
            k.1 += b;
        }
    }

    /// Whether a message from `a` to `b` sent now is lost.
    fn lost(&mut self, a: usize, b: usize) -> bool {
        if let Some((side, from, until)) = self.net.partition {
            if self.now_ms >= from && self.now_ms < until && (a < side) != (b < side) {
                return true;
            }
        }
        self.net.loss > 0.0 && self.rng.random_bool(self.net.loss)
    }

    fn delay(&mut self) -> u64 {
        let j = if self.net.jitter_ms > 0 {
            self.rng.random_range(0..=self.net.jitter_ms)
        } else {
            0
        };
        self.net.latency_ms + j
    }

    /// A silently crashed node still looks connected.
    fn others(&self, i: usize) -> Vec<PeerId> {
        self.ids
            .iter()
            .copied()
            .filter(|p| *p != self.ids[i])
            .collect()
    }

    fn send(&mut self, from: usize, to: usize, kind: RequestKind) {
        if self.outstanding[from][to] {
            return;
        }
        let now = self.now();
        let (req, sent) = self.nodes[from].request(self.ids[to], kind, now);
        self.deliver(from, to, req, sent);
    }

    fn timeout_ms(&self) -> u64 {
        self.cfg.request_timeout.as_millis() as u64
    }

    fn deliver(&mut self, from: usize, to: usize, req: SyncRequest, sent: Sent) {
        self.outstanding[from][to] = true;
        self.count(from, req.to_bytes().len(), req.kind().label());
        if self.alive[to] && !self.lost(from, to) {
            let t = self.now_ms + self.delay();
            self.at(
                t,
                Ev::Request {
                    from,
                    to,
                    req,
                    sent,
                },
            );
        } else {
            let t = self.now_ms + self.timeout_ms();
            self.at(t, Ev::Failed { from, to });
        }
    }

    fn observe(&mut self, x: usize) {
        let origins: Vec<(usize, u64)> =
            self.pending_origins.iter().map(|(o, v)| (*o, *v)).collect();
        let n = self.nodes.len();
        for (y, _) in origins {
            let v = self.nodes[x]
                .counters()
                .map
                .get(OPS)
                .and_then(|c| c.slots.get(&self.b58[y]))
                .map(|s| s.p)
                .unwrap_or(0);
            let seen = self.seen.entry(y).or_insert_with(|| vec![0; n]);
            while seen[x] < v {
                seen[x] += 1;
                if let Some(op) = self.ops.get_mut(&(y, seen[x])) {
                    op.seen += 1;
                    op.last = self.now_ms;
                    if op.t99.is_none() && op.seen * 100 >= n * 99 {
                        op.t99 = Some(self.now_ms);
                    }
                }
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now();
        let owner = match &ev {
            Ev::Sync(i) | Ev::AntiEntropy(i) | Ev::Refresh(i) | Ev::Op(i) => Some(*i),
            Ev::Request { to, .. } | Ev::Response { to, .. } => Some(*to),
            Ev::Failed { .. } | Ev::Crash(_) | Ev::SwimDown(_) => None,
        };
        if owner.is_some_and(|i| !self.alive[i]) {
            return;
        }
        match ev {
            Ev::Crash(i) => {
                self.alive[i] = false;
                if let Some(d) = self.swim_detect_ms {
                    self.at(self.now_ms + d, Ev::SwimDown(i));
                }
            }
            Ev::SwimDown(i) => {
                let dead = self.ids[i];
                for x in 0..self.nodes.len() {
                    if self.alive[x] {
                        self.nodes[x].swim_down(dead, now.mono);
                    }
                }
            }
            Ev::Failed { from, to } => {
                self.outstanding[from][to] = false;
                self.nodes[from].forget_knowledge(&self.ids[to]);
            }
            Ev::Sync(i) => {
                let others = self.others(i);
                let interval = self.cfg.sync_interval;
                let kind = self.nodes[i].sync_kind();
                for p in self.nodes[i].sync_targets(&others, interval, now.mono) {
                    let to = self.index[&p];
                    self.send(i, to, kind);
                }
                let t = self.now_ms + interval.as_millis() as u64;
                self.at(t, Ev::Sync(i));
            }
            Ev::AntiEntropy(i) => {
                let others = self.others(i);
                let fanout = self.cfg.fanout;
                let targets =
                    self.nodes[i].anti_entropy_targets(&others, fanout, now.mono, &mut self.rng);
                for p in targets {
                    let to = self.index[&p];
                    self.send(i, to, RequestKind::Sync);
                }
                let t = self.now_ms + self.cfg.anti_entropy_interval.as_millis() as u64;
                self.at(t, Ev::AntiEntropy(i));
            }
            Ev::Refresh(i) => {
                if self.nodes[i].refresh(now, false) {
                    self.forward(i);
                }
                self.nodes[i].housekeeping(now);
                self.at(self.now_ms + 250, Ev::Refresh(i));
            }
            Ev::Op(i) => {
                let slot = self.local[i]
                    .counters
                    .entry(OPS.into())
                    .or_insert(CounterSlot {
                        kind: CounterKind::G,
                        p: 0,
                        n: 0,
                    });
                slot.p += 1;
                let v = slot.p;
                self.nodes[i].set_local(self.local[i].clone());
                let n = self.nodes.len();
                self.ops.insert(
                    (i, v),
                    Op {
                        at: self.now_ms,
                        seen: 1,
                        t99: (n * 99 <= 100).then_some(self.now_ms),
                        last: self.now_ms,
                    },
                );
                self.pending_origins.insert(i, v);
                self.seen.entry(i).or_insert_with(|| vec![0; n])[i] = v;
            }
            Ev::Request {
                from,
                to,
                req,
                sent,
            } => {
                let (resp, out) = self.nodes[to]
                    .handle_request(self.ids[from], &req, now)
                    .expect("valid request");
                assert!(out.rejected.is_empty(), "{:?}", out.rejected);
                self.observe(to);
                self.count(to, resp.to_bytes().len(), "answer");
                let news = out.changed;
                if self.alive[from] && !self.lost(to, from) {
                    let t = self.now_ms + self.delay();
                    self.at(
                        t,
                        Ev::Response {
                            to: from,
                            from: to,
                            resp,
                            sent,
                        },
                    );
                } else {
                    let t = self.now_ms + self.timeout_ms();
                    self.at(t, Ev::Failed { from, to });
                }
                if news {
                    self.forward(to);
                }
            }
            Ev::Response {
                to,
                from,
                resp,
                sent,
            } => {
                self.outstanding[to][from] = false;
                let (follow, out) =
                    self.nodes[to].handle_response(self.ids[from], &sent, &resp, now);
                assert!(out.rejected.is_empty(), "{:?}", out.rejected);
                self.observe(to);
                if let Some((req, sent)) = follow {
                    self.deliver(to, from, req, sent);
                }
                if out.changed {
                    self.forward(to);
                } else if self.nodes[to].push_again(&self.ids[from], now.mono) {
                    // What arrived while this exchange was in flight.
                    self.send(to, from, RequestKind::Delta);
                }
            }
        }
    }

    /// Run every event up to `end_ms`.
    pub fn run_until(&mut self, end_ms: u64) {
        while let Some(Reverse((t, seq))) = self.queue.peek().copied() {
            if t > end_ms {
                break;
            }
            self.queue.pop();
            self.now_ms = t;
            if let Some(ev) = self.events.remove(&seq) {
                self.handle(ev);
            }
        }
        self.now_ms = end_ms;
    }
}

/// What nodes sent over a window of `secs` seconds: KiB/s per node (mean,
/// busiest) and messages/s per node (mean).
pub fn out_rates(bytes_out: &[u64], msgs_out: &[u64], secs: f64) -> (f64, f64, f64) {
    let n = bytes_out.len().max(1) as f64;
    let kib = bytes_out.iter().map(|b| *b as f64 / 1024.0 / secs);
    let mean = kib.clone().sum::<f64>() / n;
    let max = kib.fold(0.0, f64::max);
    let msgs = msgs_out.iter().sum::<u64>() as f64 / n / secs;
    (mean, max, msgs)
}

/// Bytes of the varint length prefix of a frame of `n` bytes.
pub fn varint_len(mut n: u64) -> u64 {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

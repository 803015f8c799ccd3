//! SWIM membership ([`coolmesh_agent::cluster::swim::Swim`], the real
//! code) on the same kind of simulated network as the gossip simulation:
//! latency plus jitter, random loss, virtual time. Datagram bytes are
//! counted per sender.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use coolmesh_agent::cluster::swim::{Swim, SwimActions, SwimConfig, SwimId};
use foca::Timer;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::NetConfig;

enum Ev {
    Data {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: Timer<SwimId>,
    },
    Crash(usize),
}

/// The simulation.
pub struct SwimSim {
    /// Virtual time, ms.
    pub now_ms: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    seq: u64,
    /// One SWIM member per node.
    pub nodes: Vec<Swim>,
    /// Their PeerIds.
    pub ids: Vec<PeerId>,
    index: HashMap<PeerId, usize>,
    /// Whether each node runs.
    pub alive: Vec<bool>,
    net: NetConfig,
    /// Random source (seeded).
    pub rng: StdRng,
    /// Measurement window `[start, end)`, ms.
    pub measure: (u64, u64),
    /// Datagram bytes each node sent in the window.
    pub bytes_out: Vec<u64>,
    /// Datagrams each node sent in the window.
    pub msgs_out: Vec<u64>,
    /// (observer, subject) -> when the observer declared the subject down.
    pub downs: HashMap<(usize, usize), u64>,
    /// Datagrams refused by a receiver (should stay 0).
    pub refused: u64,
}

impl SwimSim {
    /// `n` members; each announces itself to `seeds` random others, and
    /// with `from_records` also learns every member from the records
    /// (as the agent does: the gossip layer holds every member's record).
    pub fn new(
        n: usize,
        net: NetConfig,
        cfg: &SwimConfig,
        seed: u64,
        seeds: usize,
        from_records: bool,
    ) -> SwimSim {
        let mut rng = StdRng::seed_from_u64(seed);
        let ids: Vec<PeerId> = (0..n)
            .map(|_| {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                Keypair::ed25519_from_bytes(secret)
                    .expect("32 bytes")
                    .public()
                    .to_peer_id()
            })
            .collect();
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, p)| Swim::new(*p, cfg, seed ^ (i as u64).wrapping_mul(0x9e37_79b9)))
            .collect();
        let index = ids.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let mut sim = SwimSim {
            now_ms: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            nodes,
            ids,
            index,
            alive: vec![true; n],
            net,
            rng,
            measure: (0, 0),
            bytes_out: vec![0; n],
            msgs_out: vec![0; n],
            downs: HashMap::new(),
            refused: 0,
        };
        for i in 0..n {
            if from_records {
                let all = sim.ids.clone();
                let a = sim.nodes[i].learn(all);
                sim.apply(i, a);
            }
            for _ in 0..seeds {
                let j = sim.rng.random_range(0..n);
                if j != i {
                    let a = sim.nodes[i].announce(sim.ids[j]);
                    sim.apply(i, a);
                }
            }
        }
        sim
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Crash `node` silently at `t` ms.
    pub fn crash_at(&mut self, t: u64, node: usize) {
        self.at(t, Ev::Crash(node));
    }

    fn apply(&mut self, i: usize, a: SwimActions) {
        let in_window = self.now_ms >= self.measure.0 && self.now_ms < self.measure.1;
        for (to, bytes) in a.send {
            let Some(&j) = self.index.get(&to) else {
                continue;
            };
            if in_window {
                self.bytes_out[i] += bytes.len() as u64;
                self.msgs_out[i] += 1;
            }
            let lost = self.net.loss > 0.0 && self.rng.random_bool(self.net.loss);
            if lost || !self.alive[j] {
                continue;
            }
            let jitter = if self.net.jitter_ms > 0 {
                self.rng.random_range(0..=self.net.jitter_ms)
            } else {
                0
            };
            let t = self.now_ms + self.net.latency_ms + jitter;
            self.at(
                t,
                Ev::Data {
                    from: i,
                    to: j,
                    bytes,
                },
            );
        }
        for (after, timer) in a.timers {
            let t = self.now_ms + after.as_millis() as u64;
            self.at(t, Ev::Timer { node: i, timer });
        }
        for p in a.down {
            if let Some(&j) = self.index.get(&p) {
                self.downs.entry((i, j)).or_insert(self.now_ms);
            }
        }
        for p in a.up {
            if let Some(&j) = self.index.get(&p) {
                self.downs.remove(&(i, j));
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
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            match ev {
                Ev::Crash(i) => self.alive[i] = false,
                Ev::Data { from, to, bytes } => {
                    if !self.alive[to] {
                        continue;
                    }
                    let from_id = self.ids[from];
                    match self.nodes[to].handle_data(from_id, &bytes) {
                        Ok(a) => self.apply(to, a),
                        Err(_) => self.refused += 1,
                    }
                }
                Ev::Timer { node, timer } => {
                    if self.alive[node] {
                        let a = self.nodes[node].handle_timer(timer);
                        self.apply(node, a);
                    }
                }
            }
        }
        self.now_ms = end_ms;
    }

    /// Alive nodes that see every other alive node active.
    pub fn converged(&self) -> usize {
        let alive = self.alive.iter().filter(|a| **a).count();
        (0..self.nodes.len())
            .filter(|i| self.alive[*i] && self.nodes[*i].active_count() + 1 >= alive)
            .count()
    }
}

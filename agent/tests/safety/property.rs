//! Property test: random traces through the pure state machine, the real
//! cooling detector and the real peer corroboration, with an oracle.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Length of every random trace, seconds.
const DUR: u64 = 1200;
/// Nodes per random room.
const NODES: usize = 3;
/// A shutdown for cooling is justified if the true curve reaches
/// critical within this time (a fast rise votes whatever the headroom:
/// at 3 C/min and 60 C of headroom critical is 20 min away).
const LEAD: f64 = 25.0 * 60.0;

/// One thermal event on top of a base temperature.
#[derive(Debug, Clone, Copy)]
enum Heat {
    /// A job: +amp within `secs`, back down at `end` if any.
    Job {
        at: f64,
        amp: f64,
        secs: f64,
        end: Option<f64>,
    },
    /// A steady rise that never stops (a real cooling loss or hot spot).
    Rise { at: f64, rate: f64 },
    /// A slow rise that stops after `secs` (a chiller restart).
    Short { at: f64, rate: f64, secs: f64 },
}

impl Heat {
    fn at(&self, t: f64) -> f64 {
        match *self {
            Heat::Job { at, amp, secs, end } => {
                step(t, at, amp, secs) - end.map_or(0.0, |e| step(t, e.max(at + secs), amp, secs))
            }
            Heat::Rise { at, rate } => ramp(t, at, rate),
            Heat::Short { at, rate, secs } => rate * (t - at).clamp(0.0, secs) / 60.0,
        }
    }

    /// A job step in progress (for the load).
    fn busy(&self, t: f64) -> bool {
        match *self {
            Heat::Job { at, end, .. } => t >= at && end.is_none_or(|e| t < e),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct NodePlan {
    base: f64,
    job: Option<Heat>,
    hot: Option<Heat>,
    load: bool,
    /// Probe rounds answered "unknown" (local errors): (start, len).
    unknown: Vec<(u32, u32)>,
}

#[derive(Debug, Clone)]
struct Trace {
    /// Mains down intervals (start, len), on the one shared target.
    downs: Vec<(u32, u32)>,
    room: Option<Heat>,
    inlet: bool,
    noise: bool,
    nodes: Vec<NodePlan>,
}

impl Trace {
    fn mains_up(&self, t: f64) -> bool {
        !self
            .downs
            .iter()
            .any(|&(s, l)| t >= f64::from(s) && t < f64::from(s) + f64::from(l))
    }

    fn true_cpu(&self, i: usize, t: f64) -> f64 {
        let n = &self.nodes[i];
        n.base
            + n.job.map_or(0.0, |h| h.at(t))
            + n.hot.map_or(0.0, |h| h.at(t))
            + self.room.map_or(0.0, |h| h.at(t))
    }

    fn true_inlet(&self, t: f64) -> Option<f64> {
        self.inlet
            .then(|| 22.0 + self.room.map_or(0.0, |h| h.at(t)))
    }

    /// The true curve reaches critical by `t`.
    fn critical_by(&self, i: usize, t: f64) -> bool {
        self.true_cpu(i, t) >= CPU_CRIT || self.true_inlet(t).is_some_and(|c| c >= INLET_CRIT)
    }

    fn readings(&self, i: usize, t: f64) -> (Vec<Reading>, Option<f64>) {
        let show = |salt: u64, c: f64| {
            if self.noise {
                shown(i, t, salt, c)
            } else {
                c
            }
        };
        let mut rs = vec![cpu_reading(show(1, self.true_cpu(i, t)))];
        if let Some(c) = self.true_inlet(t) {
            rs.push(inlet_reading(show(2, c)));
        }
        assign_roles(&[], &mut rs);
        let n = &self.nodes[i];
        let load = n.load.then(|| {
            if n.job.is_some_and(|j| j.busy(t)) {
                0.95
            } else {
                0.1
            }
        });
        (rs, load)
    }

    fn probe(&self, i: usize, t: f64) -> Option<bool> {
        let unknown = self.nodes[i]
            .unknown
            .iter()
            .any(|&(s, l)| t >= f64::from(s) && t < f64::from(s) + f64::from(l));
        (!unknown).then(|| self.mains_up(t))
    }
}

fn power_plan() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop_oneof![
        Just(vec![]),
        // Blips.
        prop::collection::vec((0u32..1200, 1u32..12), 1..6),
        // Flaps.
        (0u32..600, 3u32..60, 3u32..60, 1u32..20)
            .prop_map(|(s, d, u, n)| { (0..n).map(|k| (s + k * (d + u), d)).collect() }),
        // An outage, possibly the real thing.
        (0u32..900, 30u32..1200).prop_map(|(s, l)| vec![(s, l)]),
        // A mixture.
        prop::collection::vec((0u32..1200, 1u32..700), 1..4),
    ]
}

fn job() -> impl Strategy<Value = Heat> {
    (
        0.0f64..1100.0,
        5.0f64..35.0,
        1.0f64..10.0,
        prop::option::of(60.0f64..600.0),
    )
        .prop_map(|(at, amp, secs, end)| Heat::Job {
            at,
            amp,
            secs,
            end: end.map(|e| at + e),
        })
}

fn rise() -> impl Strategy<Value = Heat> {
    prop_oneof![
        (0.0f64..1100.0, 0.5f64..30.0).prop_map(|(at, rate)| Heat::Rise { at, rate }),
        (0.0f64..1100.0, 0.5f64..2.0, 20.0f64..120.0).prop_map(|(at, rate, secs)| Heat::Short {
            at,
            rate,
            secs
        }),
    ]
}

/// `thermal`: also hot spots, room-wide rises and jobs without load
/// information; else flat rooms and jobs whose load step explains them.
fn node_plan(thermal: bool) -> impl Strategy<Value = NodePlan> {
    (
        35.0f64..55.0,
        prop::option::of(job()),
        prop::option::weighted(0.15, rise()).prop_map(move |h| h.filter(|_| thermal)),
        any::<bool>().prop_map(move |l| l || !thermal),
        prop::collection::vec((0u32..1200, 5u32..200), 0..2),
    )
        .prop_map(|(base, job, hot, load, unknown)| NodePlan {
            base,
            job,
            hot,
            load,
            unknown,
        })
}

fn trace(thermal: bool) -> impl Strategy<Value = Trace> {
    (
        power_plan(),
        prop::option::weighted(0.4, rise()).prop_map(move |h| h.filter(|_| thermal)),
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::collection::vec(node_plan(thermal), NODES),
    )
        .prop_map(|(downs, room, inlet, noise, nodes)| Trace {
            downs,
            room,
            inlet,
            noise,
            nodes,
        })
}

struct PNode {
    heat: HeatTracker,
    thermal: ThermalSummary,
    power: Option<PowerReading>,
    targets: Vec<TargetObservation>,
    sent: Option<PeerView>,
    m: Machine,
    peer_id: libp2p::PeerId,
    version: u64,
    /// (visible at, record, its power part changed).
    pending: VecDeque<(u64, Record, bool)>,
    visible: Option<Record>,
    /// The power part of the last record: (policy result, targets).
    last_power: (Option<bool>, Vec<(String, bool)>),
    runs: usize,
    /// (time, no trigger in the input) per observation.
    obs: Vec<(f64, bool)>,
    /// Times a peer change corroborated a loss.
    lost_changes: Vec<f64>,
    /// (time, observations before it).
    shutdown: Option<(f64, usize)>,
    /// Times of critical readings.
    critical: Vec<f64>,
    /// Oracle: first probe of the current outage (own probes; an
    /// outage ends with `recovery_probes` good probes in a row).
    lost_since: Option<f64>,
    good: u32,
    /// (time, lost_since) after every probe round.
    power_log: Vec<(f64, Option<f64>)>,
    /// Transitions, for the failure message.
    log: Vec<String>,
}

impl PNode {
    fn apply(&mut self, ev: &Event, t: f64, cfg: &FsmConfig) {
        let now = Millis(T0 + (t * 1000.0) as u64);
        let (m, actions) = fsm::step(&self.m, ev, now, cfg);
        for a in &actions {
            match a {
                fsm::Action::RunShutdown => self.runs += 1,
                fsm::Action::Transition {
                    to, reason, detail, ..
                } => {
                    self.log.push(format!("{t}s -> {to}/{reason}: {detail}"));
                }
                _ => {}
            }
        }
        if m.state == State::Shutdown && self.shutdown.is_none() {
            self.shutdown = Some((t, self.obs.len()));
        }
        self.m = m;
    }

    fn publish(&mut self, k: u64) {
        self.version += 1;
        let local = LocalState {
            thermal: (&self.thermal).into(),
            power: self.targets.clone(),
            power_up: self.power.and_then(PowerReading::vote),
            ..LocalState::default()
        };
        let rec = Record::from_local(&local, "p", self.peer_id, self.version, &[], T0 + k * 1000);
        // Only a change of the power part can change what a peer
        // change event decides: re-evaluate peer views only then.
        let power = (
            rec.state.power_up,
            rec.state
                .power
                .iter()
                .map(|o| (o.target.clone(), o.up))
                .collect(),
        );
        let changed = power != self.last_power;
        self.last_power = power;
        self.pending.push_back((k + 1, rec, changed));
    }
}

fn view(nodes: &[PNode], i: usize) -> ClusterView {
    let mut v = ClusterView::default();
    for (j, n) in nodes.iter().enumerate() {
        if let (true, Some(rec)) = (j != i, &n.visible) {
            v.peers.insert(
                n.peer_id,
                ClusterPeer {
                    record: rec.clone(),
                    liveness: Liveness::Alive,
                    stale: false,
                    last_seen: std::time::Instant::now(),
                    age: Duration::ZERO,
                    connected: true,
                    remote_ip: Some(std::net::Ipv4Addr::new(10, 0, 1, 10 + j as u8).into()),
                },
            );
        }
    }
    v
}

/// Would this input start or keep a trigger? (The observation does not
/// count toward a recovery when it would.)
fn triggering(input: &Input, cfg: &FsmConfig) -> bool {
    let verdict = fsm::power_verdict(input.power, &input.peers);
    let p = &input.peers;
    let self_hot = cfg.is_heating(&input.thermal);
    let w = if input.thermal.air { 2 } else { 1 };
    let (pw, phw) = p.weights();
    let hot = p.overheating.min(p.fresh_peers) + u32::from(self_hot);
    let (cooling, _) = fsm::weighted_quorum(
        pw + w,
        phw + if self_hot { w } else { 0 },
        hot,
        cfg.cooling_quorum_min,
    );
    matches!(verdict, PowerVerdict::Lost | PowerVerdict::LocalError)
        || cooling
        || input.thermal.critical
}

/// Replay one trace; `Err` with the reason when the oracle objects.
fn replay(tr: &Trace, ids: &[libp2p::PeerId]) -> Result<(), String> {
    let cfg = FsmConfig::default();
    let heat = HeatConfig::default();
    let mut nodes: Vec<PNode> = (0..NODES)
        .map(|i| PNode {
            heat: HeatTracker::new(heat.clone(), 52),
            thermal: ThermalSummary::default(),
            power: None,
            targets: Vec::new(),
            sent: None,
            m: Machine::new(Millis(T0)),
            peer_id: ids[i],
            version: 0,
            pending: VecDeque::new(),
            visible: None,
            last_power: (None, Vec::new()),
            runs: 0,
            obs: Vec::new(),
            lost_changes: Vec::new(),
            shutdown: None,
            critical: Vec::new(),
            lost_since: None,
            good: 0,
            power_log: Vec::new(),
            log: Vec::new(),
        })
        .collect();
    let policy = Policy::Any;
    for k in 0..=DUR {
        let t = k as f64;
        let mut gossip = false;
        for n in nodes.iter_mut() {
            n.apply(&Event::Tick, t, &cfg);
            while n.pending.front().is_some_and(|(at, _, _)| *at <= k) {
                if let Some((_, rec, changed)) = n.pending.pop_front() {
                    n.visible = Some(rec);
                    gossip |= changed;
                }
            }
        }
        for i in 0..NODES {
            if !gossip || nodes[i].power.is_none() {
                continue;
            }
            let pv = peer_view(&view(&nodes, i), &cfg, &nodes[i].targets, policy);
            if nodes[i].sent != Some(pv) {
                let n = &mut nodes[i];
                n.sent = Some(pv);
                if fsm::power_verdict(n.m.last_power, &pv) == PowerVerdict::Lost {
                    n.lost_changes.push(t);
                }
                n.apply(&Event::PeersChanged(pv), t, &cfg);
            }
        }
        for i in 0..NODES {
            if k % 5 == (i as u64) % 5 {
                let (rs, load) = tr.readings(i, t);
                let n = &mut nodes[i];
                let a = n.heat.push(t, &rs, load);
                n.thermal = coolmesh_agent::heating::summary(&rs, &a);
                if n.thermal.critical {
                    n.critical.push(t);
                }
                n.publish(k);
            }
            if k % 5 == (i as u64 + 2) % 5 {
                let r = tr.probe(i, t);
                let n = &mut nodes[i];
                n.targets = r
                    .map(|up| TargetObservation {
                        target: MAINS.into(),
                        up,
                        at_ms: T0 + k * 1000,
                    })
                    .into_iter()
                    .collect();
                n.power = Some(r.map_or(PowerReading::Unknown, PowerReading::from));
                match r {
                    Some(false) => {
                        n.lost_since.get_or_insert(t);
                        n.good = 0;
                    }
                    None => n.good = 0,
                    Some(true) => {
                        n.good += 1;
                        if n.good >= cfg.recovery_probes {
                            n.lost_since = None;
                        }
                    }
                }
                n.power_log.push((t, n.lost_since));
                n.publish(k);
                let peers = peer_view(&view(&nodes, i), &cfg, &nodes[i].targets, policy);
                let n = &mut nodes[i];
                let input = Input {
                    power: n.power,
                    thermal: n.thermal,
                    peers,
                    battery: None,
                };
                let clear = !triggering(&input, &cfg);
                n.apply(&Event::Observe(input), t, &cfg);
                n.obs.push((t, clear));
            }
        }
    }
    // The oracle.
    let grace = cfg.power_grace.as_secs_f64();
    for (i, n) in nodes.iter().enumerate() {
        if n.runs > 1 {
            return Err(format!("node {i}: shutdown ran {} times", n.runs));
        }
        let Some((at, before)) = n.shutdown else {
            continue;
        };
        let why = format!(
            "node {i} shut down at {at}s; its transitions:\n  {}\n",
            n.log.join("\n  ")
        );
        // Never after the trigger cleared for recovery_probes rounds.
        let k = cfg.recovery_probes as usize;
        if before >= k {
            let last = &n.obs[before - k..before];
            let from = last[0].0;
            if last.iter().all(|o| o.1) && !n.lost_changes.iter().any(|&c| c >= from && c <= at) {
                return Err(format!(
                    "{why}: after {k} observations without a trigger (from {from}s)"
                ));
            }
        }
        let power = n
            .power_log
            .iter()
            .take_while(|p| p.0 <= at)
            .last()
            .and_then(|p| p.1)
            .is_some_and(|s| at >= s + grace - 0.001);
        let overheat = n.critical.iter().any(|&c| c <= at && c >= at - 600.0);
        let own = tr.critical_by(i, at + LEAD);
        let room = (0..NODES).filter(|&j| tr.critical_by(j, at + LEAD)).count() * 2 > NODES;
        if !(power || overheat || own || room) {
            return Err(format!(
                "{why}: mains not lost for the grace, no critical reading, no sensor reaching critical within {LEAD}s"
            ));
        }
    }
    Ok(())
}

fn ids() -> Vec<libp2p::PeerId> {
    (0..NODES)
        .map(|_| {
            libp2p::identity::Keypair::generate_ed25519()
                .public()
                .to_peer_id()
        })
        .collect()
}

/// Counterexample the property test found on the detector of commit
/// f1b1701 (passes since 3627bf3): node 1 has a 5 C job
/// step in 1 s (no load information), node 2 is a hot spot (critical);
/// node 0 is flat at 35 C and mains is down 424-774 s (350 s). The step
/// votes "cooling lost" (whole-degree readings), which with the hot
/// node forms a 2-of-3 quorum.
#[test]
fn regression_job_step_votes_cooling() {
    let tr = Trace {
        downs: vec![(424, 350)],
        room: None,
        inlet: false,
        noise: true,
        nodes: vec![
            NodePlan {
                base: 35.0,
                job: None,
                hot: None,
                load: false,
                unknown: vec![],
            },
            NodePlan {
                base: 53.326_241_930_786_8,
                job: Some(Heat::Job {
                    at: 650.042_791_626_786_7,
                    amp: 5.0,
                    secs: 1.0,
                    end: None,
                }),
                hot: None,
                load: false,
                unknown: vec![(404, 75)],
            },
            NodePlan {
                base: 35.0,
                job: None,
                hot: Some(Heat::Rise {
                    at: 0.0,
                    rate: 19.197_701_732_594_037,
                }),
                load: false,
                unknown: vec![],
            },
        ],
    };
    if let Err(e) = replay(&tr, &ids()) {
        panic!("{e}");
    }
}

/// Counterexample the property test found on the detector of commit
/// f1b1701 (passes since 3627bf3, which no longer votes on this
/// restart; the state machine rule behind it is unchanged): mains down 848-1143 s
/// (295 s, less than the grace) and a chiller restart in the middle
/// (inlet +3 C at 1.86 C/min for 97 s). The restart votes for 20 s;
/// the cooling trigger pulls the power deadline 5 s earlier and keeps
/// it there after it cleared: shutdown at 1147 s, mains back at 1143 s.
#[test]
fn regression_cleared_cooling_trigger_shortens_power_grace() {
    let flat = NodePlan {
        base: 35.0,
        job: None,
        hot: None,
        load: false,
        unknown: vec![],
    };
    let tr = Trace {
        downs: vec![(848, 295)],
        room: Some(Heat::Short {
            at: 942.024_180_486_377_8,
            rate: 1.859_802_198_087_888_5,
            secs: 96.712_555_706_418_41,
        }),
        inlet: true,
        noise: false,
        nodes: vec![flat.clone(), flat.clone(), flat],
    };
    if let Err(e) = replay(&tr, &ids()) {
        panic!("{e}");
    }
}

/// Cases per property test: `SAFETY_CASES` or 800 (1600 traces in all;
/// `SAFETY_CASES=5000` for a longer hunt).
fn cases() -> u32 {
    std::env::var("SAFETY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(800)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5AFE_7E57),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(cases()))]

    /// Mains blips, flaps and outages, unknown probe rounds, noisy and
    /// quantised sensors, jobs whose load step explains them.
    #[test]
    fn power_and_workload_traces_never_shut_down_without_cause(tr in trace(false)) {
        let ids = ids();
        if let Err(e) = replay(&tr, &ids) {
            prop_assert!(false, "{e}\ntrace: {tr:#?}");
        }
    }
}

proptest! {
    #![proptest_config(config(cases()))]

    /// Everything: also room-wide rises (0.5-30 C/min, continuing or
    /// short like a chiller restart), hot spots, jobs without load
    /// information.
    ///
    /// Random seeds found the two counterexamples above on an earlier
    /// detector; they are kept as regression tests.
    #[test]
    fn all_traces_never_shut_down_without_cause(tr in trace(true)) {
        let ids = ids();
        if let Err(e) = replay(&tr, &ids) {
            prop_assert!(false, "{e}\ntrace: {tr:#?}");
        }
    }
}

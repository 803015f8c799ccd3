//! The safety suite: real-room scenarios replayed through the real cooling
//! detector ([`HeatTracker`]), the real peer corroboration
//! ([`coolmesh_agent::votes::peer_view`]) and one real [`Supervisor`] per
//! node, on a paused tokio clock (hours of machine-room time in seconds),
//! plus a property test over thousands of random traces with an oracle.
//!
//! # The harness
//!
//! A [`Scenario`] is a room of N nodes. Each node has a sensor trace
//! `(node, t) -> (readings, cpu load)`, power targets and a probe trace
//! `(node, target, t) -> Option<bool>` (`None`: a local error), a dry-run
//! supervisor with its own state directory and marker file, and the record
//! it publishes to its peers (thermal summary, per-target observations,
//! policy result). Records reach the other nodes after a gossip delay; each
//! node's [`ClusterView`] holds the others' records with the liveness the
//! scenario gives them. Virtual time advances one second at a time; sensor
//! and probe rounds run every 5 s (staggered per node), and each node sends
//! the events the agent's core loop would send: `Observe` per probe round
//! (per sensor round without power targets), `PeersChanged` when its peer
//! view changed.
//!
//! Every scenario states its expected outcome ([`Expect`]) and the harness
//! always checks that no node ran its shutdown twice.
//!
//! # Layout
//!
//! - `main.rs`: the harness ([`Scenario`], [`Expect`], `run`, `check`);
//! - `models.rs`: sensor models and room models;
//! - `workloads.rs`: workloads that must not shut down;
//! - `cooling.rs`: cooling failures, shut down before critical;
//! - `mains.rs`: mains power, restarts, clock steps, the command,
//!   partitions;
//! - `property.rs`: random traces against an oracle, and regressions.

use coolmesh_agent::cluster::record::{LocalState, Record, TargetObservation};
use coolmesh_agent::cluster::view::{ClusterPeer, ClusterView, Liveness};
use coolmesh_agent::fsm::{
    self, Event, FsmConfig, Input, Machine, Millis, PeerView, PowerReading, PowerVerdict, Reason,
    State,
};
use coolmesh_agent::heating::{assign_roles, HeatConfig, HeatTracker};
use coolmesh_agent::persist::{self, Persisted};
use coolmesh_agent::power::Policy;
use coolmesh_agent::shutdown::{ExecStats, Executor, ShutdownConfig};
use coolmesh_agent::supervisor::{Supervisor, TokioClock};
use coolmesh_agent::thermal::{Reading, ThermalSummary};
use coolmesh_agent::votes::peer_view;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

mod cooling;
mod mains;
mod models;
mod property;
mod workloads;

use models::*;

/// Wall-clock origin of every scenario (unix ms).
const T0: u64 = 1_700_000_000_000;
/// The one mains target most rooms probe.
const MAINS: &str = "tcp://10.0.0.200:7";
/// Critical threshold of the CPU sensors.
const CPU_CRIT: f64 = 100.0;
/// Critical threshold of the inlet sensors.
const INLET_CRIT: f64 = 45.0;

type SensorFn = Box<dyn Fn(usize, f64) -> (Vec<Reading>, Option<f64>)>;
type ProbeFn = Box<dyn Fn(usize, &str, f64) -> Option<bool>>;
type LiveFn = Box<dyn Fn(usize, usize, f64) -> Liveness>;
type CheckFn = Box<dyn Fn(&Outcome) -> Result<(), String>>;

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// How virtual time advances.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Clock {
    /// `tokio::time::sleep` (auto-advance): exact timers.
    Sleep,
    /// `tokio::time::advance` plus a short real pause per step: needed while
    /// a real child process runs (tokio does not auto-advance then).
    Advance,
}

/// An expected outcome.
enum Expect {
    /// No node shuts down.
    NoShutdown,
    /// These nodes never shut down.
    NoShutdownOn(Vec<usize>),
    /// Each node's command starts before its first critical reading (which
    /// must happen within the scenario).
    ShutdownBeforeCritical(Vec<usize>),
    /// Each node shuts down within `[from, to]` seconds.
    ShutdownWithin(Vec<usize>, f64, f64),
    /// Each node shuts down within `[0, max]` seconds after its first
    /// critical reading (the overheat trigger's job).
    ShutdownAfterCriticalWithin(Vec<usize>, f64),
    /// The node entered this state at some point.
    EverIn(usize, State),
    /// The node is in this state at this time (seconds).
    StateAt(Vec<usize>, f64, State),
    /// Anything else.
    Check(CheckFn),
}

struct Scenario {
    name: String,
    nodes: usize,
    duration: u64,
    fsm: FsmConfig,
    heat: HeatConfig,
    sensor_interval: u64,
    probe_interval: u64,
    gossip_delay: u64,
    policy: Policy,
    targets: Vec<Vec<String>>,
    sensors: SensorFn,
    probes: ProbeFn,
    liveness: LiveFn,
    /// Wall-clock step (ms) at `t`, for the wall-clock derived inputs.
    wall_offset: Box<dyn Fn(f64) -> i64>,
    /// Operator events: (time, node, event).
    operator: Vec<(u64, usize, Event)>,
    shutdown: ShutdownConfig,
    /// The state directory is below a regular file (every write fails).
    unwritable_state: bool,
    /// A record in the state directory before the agent starts.
    persisted: Option<Persisted>,
    boot: String,
    /// Nodes that never send an event (e.g. probes hang).
    silent: Vec<usize>,
    clock: Clock,
    expect: Vec<Expect>,
}

impl Scenario {
    /// `nodes` nodes for `duration` seconds, every default: flat CPU at 55 C
    /// (no inlet sensor, no load), one mains target that stays up.
    fn new(name: &str, nodes: usize, duration: u64) -> Scenario {
        Scenario {
            name: name.to_string(),
            nodes,
            duration,
            fsm: FsmConfig::default(),
            heat: HeatConfig::default(),
            sensor_interval: 2, // the product default (sensors.interval)
            probe_interval: 5,
            gossip_delay: 1,
            policy: Policy::Any,
            targets: vec![vec![MAINS.to_string()]; nodes],
            sensors: model(|_, _| Temps {
                cpu: 55.0,
                inlet: None,
                load: None,
            }),
            probes: Box::new(|_, _, _| Some(true)),
            liveness: Box::new(|_, _, _| Liveness::Alive),
            wall_offset: Box::new(|_| 0),
            operator: Vec::new(),
            shutdown: ShutdownConfig {
                command: vec!["true".into()],
                dry_run: true,
                ..ShutdownConfig::default()
            },
            unwritable_state: false,
            persisted: None,
            boot: "boot-1".into(),
            silent: Vec::new(),
            clock: Clock::Sleep,
            expect: Vec::new(),
        }
    }

    fn sensors(mut self, f: impl Fn(usize, f64) -> Temps + 'static) -> Self {
        self.sensors = model(f);
        self
    }

    fn probes(mut self, f: impl Fn(usize, &str, f64) -> Option<bool> + 'static) -> Self {
        self.probes = Box::new(f);
        self
    }

    fn targets(mut self, f: impl Fn(usize) -> Vec<&'static str>) -> Self {
        self.targets = (0..self.nodes)
            .map(|i| f(i).into_iter().map(str::to_string).collect())
            .collect();
        self
    }

    fn liveness(mut self, f: impl Fn(usize, usize, f64) -> Liveness + 'static) -> Self {
        self.liveness = Box::new(f);
        self
    }

    fn operator(mut self, t: u64, node: usize, ev: Event) -> Self {
        self.operator.push((t, node, ev));
        self
    }

    fn expect(mut self, e: Expect) -> Self {
        self.expect.push(e);
        self
    }

    fn all(&self) -> Vec<usize> {
        (0..self.nodes).collect()
    }
}

/// What happened to one node.
#[derive(Debug, Clone, Default)]
struct NodeOutcome {
    /// The shutdown decision (seconds, supervisor clock).
    shutdown_at: Option<f64>,
    /// The first command attempt.
    first_attempt_at: Option<f64>,
    /// The first reading at or above its critical threshold.
    critical_at: Option<f64>,
    /// The first observation this node sent.
    first_observe_at: Option<f64>,
    /// Dry-run marker lines (one per shutdown run).
    markers: usize,
    machine: Machine,
    /// (seconds, state, reason) at every change seen (1 s resolution).
    timeline: Vec<(f64, State, Reason)>,
    transitions: Vec<(State, State, Reason, u64)>,
    persist_failures: u64,
    command_runs: u64,
}

impl NodeOutcome {
    fn state_at(&self, t: f64) -> State {
        self.timeline
            .iter()
            .take_while(|x| x.0 <= t)
            .last()
            .map_or(State::Normal, |x| x.1)
    }

    fn ever(&self, s: State) -> bool {
        self.timeline.iter().any(|x| x.1 == s)
    }
}

#[derive(Debug, Default)]
struct Outcome {
    name: String,
    dry_run: bool,
    nodes: Vec<NodeOutcome>,
}

impl Outcome {
    fn summary(&self) -> String {
        let mut s = format!("scenario {}:\n", self.name);
        for (i, n) in self.nodes.iter().enumerate() {
            let tl: Vec<String> = n
                .timeline
                .iter()
                .map(|(t, st, r)| format!("{t:.0}s {st}/{r}"))
                .collect();
            let _ = writeln!(
                s,
                "  node {i}: shutdown {:?} (attempt {:?}), critical {:?}, markers {}, final {} ({}) [{}]",
                n.shutdown_at,
                n.first_attempt_at,
                n.critical_at,
                n.markers,
                n.machine.state,
                n.machine.detail,
                tl.join(", ")
            );
        }
        s
    }
}

fn secs(m: Millis) -> f64 {
    (m.0 as f64 - T0 as f64) / 1000.0
}

/// One simulated node.
struct Node {
    heat: HeatTracker,
    thermal: ThermalSummary,
    power: Option<PowerReading>,
    power_targets: Vec<TargetObservation>,
    sent_peers: Option<PeerView>,
    peer_id: libp2p::PeerId,
    version: u64,
    /// Records on their way to the others: (visible at, record).
    outbox: VecDeque<(u64, Record)>,
    /// What the others see of this node.
    visible: Option<Record>,
    events: mpsc::Sender<Event>,
    state: watch::Receiver<Machine>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Machine>,
    stats: std::sync::Arc<coolmesh_agent::supervisor::SupervisorStats>,
    exec: std::sync::Arc<ExecStats>,
    marker: PathBuf,
    _dir: tempfile::TempDir,
    out: NodeOutcome,
}

impl Node {
    fn publish(&mut self, t: u64, delay: u64, wall_ms: u64) {
        self.version += 1;
        let local = LocalState {
            node: String::new(),
            thermal: (&self.thermal).into(),
            power: self.power_targets.clone(),
            power_up: self.power.and_then(PowerReading::vote),
            ..LocalState::default()
        };
        let rec = Record::from_local(&local, "safety", self.peer_id, self.version, &[], wall_ms);
        self.outbox.push_back((t + delay, rec));
    }
}

/// The view node `i` has of the others at `t`.
fn view_of(sc: &Scenario, nodes: &[Node], i: usize, t: f64) -> ClusterView {
    let mut v = ClusterView::default();
    for (j, n) in nodes.iter().enumerate() {
        if j == i {
            continue;
        }
        let Some(rec) = &n.visible else { continue };
        let liveness = (sc.liveness)(i, j, t);
        v.peers.insert(
            n.peer_id,
            ClusterPeer {
                record: rec.clone(),
                liveness,
                stale: liveness == Liveness::Dead,
                last_seen: std::time::Instant::now(),
                age: Duration::ZERO,
                connected: liveness == Liveness::Alive,
                // Each simulated node is its own host.
                remote_ip: Some(std::net::Ipv4Addr::new(10, 0, 0, 10 + j as u8).into()),
            },
        );
    }
    v
}

fn marker_lines(p: &PathBuf) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

/// Replay a scenario; returns what happened.
async fn run(sc: &Scenario) -> Outcome {
    let start = Instant::now();
    let cap = (sc.heat.window.as_secs_f64() / sc.sensor_interval as f64).ceil() as usize * 2 + 4;
    let mut nodes = Vec::new();
    for _ in 0..sc.nodes {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("marker");
        let state_dir = if sc.unwritable_state {
            let file = dir.path().join("not-a-dir");
            std::fs::write(&file, b"x").expect("file");
            file.join("state")
        } else {
            dir.path().join("state")
        };
        if let Some(p) = &sc.persisted {
            persist::store(&state_dir, p).expect("pre-store");
        }
        let mut shutdown = sc.shutdown.clone();
        if shutdown.dry_run {
            shutdown.dry_run_marker = Some(marker.clone());
        }
        let exec = Executor::new(shutdown);
        let exec_stats = std::sync::Arc::clone(exec.stats());
        let clock = TokioClock::starting_at(Millis(T0), start);
        let sup = Supervisor::new(sc.fsm.clone(), exec, state_dir, clock)
            .expect("valid config")
            .with_boot_id(Some(sc.boot.clone()));
        let state = sup.subscribe();
        let stats = sup.stats();
        let (tx, rx) = mpsc::channel(64);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sup.run(rx, async move {
            let _ = stopped.await;
        }));
        nodes.push(Node {
            heat: HeatTracker::new(sc.heat.clone(), cap),
            thermal: ThermalSummary::default(),
            power: None,
            power_targets: Vec::new(),
            sent_peers: None,
            peer_id: libp2p::identity::Keypair::generate_ed25519()
                .public()
                .to_peer_id(),
            version: 0,
            outbox: VecDeque::new(),
            visible: None,
            events: tx,
            state,
            stop: Some(stop),
            task,
            stats,
            exec: exec_stats,
            marker,
            _dir: dir,
            out: NodeOutcome::default(),
        });
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let wall =
        |t: f64| -> u64 { (T0 as i64 + (t * 1000.0) as i64 + (sc.wall_offset)(t)).max(0) as u64 };

    for k in 0..=sc.duration + 2 {
        if k > 0 {
            match sc.clock {
                Clock::Sleep => tokio::time::sleep(Duration::from_secs(1)).await,
                Clock::Advance => {
                    tokio::time::advance(Duration::from_secs(1)).await;
                    for _ in 0..5 {
                        tokio::task::yield_now().await;
                    }
                    // Let real child processes and the blocking pool move.
                    std::thread::sleep(Duration::from_millis(3));
                    for _ in 0..5 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        let t = k as f64;
        // What the supervisors did up to now.
        for n in nodes.iter_mut() {
            let m = n.state.borrow().clone();
            if n.out.timeline.last().map(|x| (x.1, x.2)) != Some((m.state, m.reason)) {
                n.out.timeline.push((t, m.state, m.reason));
            }
            if m.state == State::Shutdown && n.out.shutdown_at.is_none() {
                n.out.shutdown_at = Some(secs(m.since));
            }
            if n.out.first_attempt_at.is_none() {
                n.out.first_attempt_at = m.exec.last_attempt_at.map(secs);
            }
        }
        if k > sc.duration {
            continue;
        }
        // Gossip arrives.
        for n in nodes.iter_mut() {
            while n.outbox.front().is_some_and(|(at, _)| *at <= k) {
                n.visible = n.outbox.pop_front().map(|x| x.1);
            }
        }
        // The true sensor values, every second, for the critical time.
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.out.critical_at.is_none() {
                let (rs, _) = (sc.sensors)(i, t);
                if rs.iter().any(Reading::is_critical) {
                    n.out.critical_at = Some(t);
                }
            }
        }
        // Peer view changes (nodes with power targets, like the agent).
        for i in 0..sc.nodes {
            if sc.silent.contains(&i) || sc.targets[i].is_empty() {
                continue;
            }
            let view = view_of(sc, &nodes, i, t);
            let pv = peer_view(&view, &sc.fsm, &nodes[i].power_targets, sc.policy);
            if nodes[i].sent_peers != Some(pv) && nodes[i].power.is_some() {
                nodes[i]
                    .events
                    .send(Event::PeersChanged(pv))
                    .await
                    .expect("supervisor running");
                nodes[i].sent_peers = Some(pv);
            }
        }
        // Sensor and probe rounds.
        for i in 0..sc.nodes {
            if sc.silent.contains(&i) {
                continue;
            }
            let has_targets = !sc.targets[i].is_empty();
            let mut observe = false;
            if k % sc.sensor_interval == (i as u64) % sc.sensor_interval {
                let (mut rs, load) = (sc.sensors)(i, t);
                assign_roles(&[], &mut rs);
                let n = &mut nodes[i];
                let a = n.heat.push(t, &rs, load);
                n.thermal = coolmesh_agent::heating::summary(&rs, &a);
                n.publish(k, sc.gossip_delay, wall(t));
                observe |= !has_targets;
            }
            if has_targets && k % sc.probe_interval == (i as u64 + 1) % sc.probe_interval {
                let results: Vec<Option<bool>> = sc.targets[i]
                    .iter()
                    .map(|tg| (sc.probes)(i, tg, t))
                    .collect();
                let at_ms = wall(t);
                let n = &mut nodes[i];
                n.power_targets = sc.targets[i]
                    .iter()
                    .zip(&results)
                    .filter_map(|(tg, r)| {
                        r.map(|up| TargetObservation {
                            target: tg.clone(),
                            up,
                            at_ms,
                        })
                    })
                    .collect();
                n.power = Some(
                    sc.policy
                        .evaluate_votes(&results)
                        .map_or(PowerReading::Unknown, PowerReading::from),
                );
                n.publish(k, sc.gossip_delay, wall(t));
                observe = true;
            }
            if observe {
                let view = view_of(sc, &nodes, i, t);
                let n = &nodes[i];
                let peers = peer_view(&view, &sc.fsm, &n.power_targets, sc.policy);
                let input = Input {
                    power: if has_targets { n.power } else { None },
                    thermal: n.thermal,
                    peers,
                    battery: None,
                };
                n.events
                    .send(Event::Observe(input))
                    .await
                    .expect("supervisor running");
                let n = &mut nodes[i];
                n.out.first_observe_at.get_or_insert(t);
            }
        }
        for (at, i, ev) in &sc.operator {
            if *at == k {
                nodes[*i]
                    .events
                    .send(ev.clone())
                    .await
                    .expect("supervisor running");
            }
        }
    }

    let mut out = Outcome {
        name: sc.name.clone(),
        dry_run: sc.shutdown.dry_run,
        nodes: Vec::new(),
    };
    for mut n in nodes {
        if let Some(stop) = n.stop.take() {
            let _ = stop.send(());
        }
        let m = (&mut n.task).await.expect("supervisor task");
        n.out.markers = marker_lines(&n.marker);
        n.out.machine = m;
        n.out.transitions = n.stats.all_transitions();
        n.out.persist_failures = n.stats.persist_failures.load(Ordering::Relaxed);
        n.out.command_runs = ExecStats::get(&n.exec.command_runs);
        out.nodes.push(n.out);
    }
    out
}

/// Check one expectation.
fn check_one(o: &Outcome, e: &Expect) -> Result<(), String> {
    let node = |i: usize| &o.nodes[i];
    match e {
        Expect::NoShutdown => {
            for (i, n) in o.nodes.iter().enumerate() {
                if let Some(at) = n.shutdown_at {
                    return Err(format!(
                        "node {i} shut down at {at:.1}s, expected no shutdown"
                    ));
                }
            }
        }
        Expect::NoShutdownOn(list) => {
            for &i in list {
                if let Some(at) = node(i).shutdown_at {
                    return Err(format!("node {i} shut down at {at:.1}s, expected none"));
                }
            }
        }
        Expect::ShutdownBeforeCritical(list) => {
            for &i in list {
                let n = node(i);
                let crit = n.critical_at.ok_or(format!(
                    "node {i} never reached critical: scenario too short"
                ))?;
                let at = n
                    .first_attempt_at
                    .ok_or(format!("node {i} never shut down (critical at {crit:.0}s)"))?;
                if at >= crit {
                    return Err(format!(
                        "node {i}: command at {at:.1}s, not before its first critical reading at {crit:.0}s"
                    ));
                }
            }
        }
        Expect::ShutdownWithin(list, from, to) => {
            for &i in list {
                let at = node(i)
                    .shutdown_at
                    .ok_or(format!("node {i} never shut down (expected {from}..{to}s)"))?;
                if at < *from || at > *to {
                    return Err(format!(
                        "node {i} shut down at {at:.1}s, expected within {from}..{to}s"
                    ));
                }
            }
        }
        Expect::ShutdownAfterCriticalWithin(list, max) => {
            for &i in list {
                let n = node(i);
                let crit = n.critical_at.ok_or(format!("node {i} never critical"))?;
                let at = n.shutdown_at.ok_or(format!("node {i} never shut down"))?;
                if at < crit || at > crit + max {
                    return Err(format!(
                        "node {i} shut down at {at:.1}s, expected within {max}s after critical at {crit:.0}s"
                    ));
                }
            }
        }
        Expect::EverIn(i, s) => {
            if !node(*i).ever(*s) {
                return Err(format!("node {i} never in {s}"));
            }
        }
        Expect::StateAt(list, t, s) => {
            for &i in list {
                let got = node(i).state_at(*t);
                if got != *s {
                    return Err(format!("node {i} in {got} at {t}s, expected {s}"));
                }
            }
        }
        Expect::Check(f) => f(o)?,
    }
    Ok(())
}

/// Run a scenario and assert its outcome; always "never twice".
async fn check(sc: Scenario) -> Outcome {
    let o = run(&sc).await;
    let mut errors = Vec::new();
    for (i, n) in o.nodes.iter().enumerate() {
        if n.markers > 1 {
            errors.push(format!("node {i}: {} shutdown runs", n.markers));
        }
        if o.dry_run {
            if n.command_runs > 1 {
                errors.push(format!("node {i}: {} command runs", n.command_runs));
            }
            if n.shutdown_at.is_some() != (n.markers == 1) {
                errors.push(format!(
                    "node {i}: decision {:?} but {} marker lines",
                    n.shutdown_at, n.markers
                ));
            }
        }
    }
    for e in &sc.expect {
        if let Err(err) = check_one(&o, e) {
            errors.push(err);
        }
    }
    assert!(
        errors.is_empty(),
        "{}: {}\n{}",
        sc.name,
        errors.join("; "),
        o.summary()
    );
    o
}

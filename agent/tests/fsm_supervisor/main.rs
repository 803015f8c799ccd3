//! Scenarios through the supervisor, on a paused tokio clock: no test sleeps
//! in real time, minutes of machine-room time pass in milliseconds.
//!
//! Observations arrive every 5 s with ±10 % jitter (seeded), like the power
//! probe's. Shutdowns are counted through the dry-run marker file or, where
//! the command itself matters, through real `sh -c` commands appending to a
//! file in a temporary directory.
//!
//! # Layout
//!
//! - `main.rs`: the harness (a [`World`], a running [`Agent`], [`drive`]);
//! - `grace.rs`: power flaps and outages, recovery, reloaded timers,
//!   overheat, prediction, cancel and maintenance;
//! - `command.rs`: the shutdown command (failures, retries, pre-command,
//!   dry run);
//! - `restart.rs`: restarts with persisted state and a corrupt state file;
//! - `peers.rs`: peer corroboration, local faults, the cooling quorum.

use coolmesh_agent::fsm::{
    Event, ExecRecord, FsmConfig, Input, Machine, Millis, PeerView, PowerReading, Reason, State,
};
use coolmesh_agent::persist::{self, Persisted};
use coolmesh_agent::shutdown::{ExecStats, Executor, ShutdownConfig};
use coolmesh_agent::supervisor::{Supervisor, SupervisorStats, TokioClock};
use coolmesh_agent::thermal::{time_to_critical, ThermalSummary};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod command;
mod grace;
mod peers;
mod restart;

const T0: u64 = 1_700_000_000_000;
const BOOT: &str = "boot-1";
const PROBE: Duration = Duration::from_secs(5);

fn secs(m: Millis) -> f64 {
    (m.0 as f64 - T0 as f64) / 1000.0
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// One machine room timeline with one agent's state directory.
struct World {
    dir: tempfile::TempDir,
    start: Instant,
    fsm: FsmConfig,
    shutdown: ShutdownConfig,
    boot: String,
}

/// A running agent.
struct Agent {
    events: mpsc::Sender<Event>,
    state: watch::Receiver<Machine>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Machine>,
    stats: Arc<SupervisorStats>,
    exec: Arc<ExecStats>,
    notified: Arc<AtomicU64>,
}

impl World {
    /// Dry-run with a marker file, default state machine.
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("marker");
        World {
            start: Instant::now(),
            fsm: FsmConfig::default(),
            shutdown: ShutdownConfig {
                command: vec!["true".into()],
                dry_run: true,
                dry_run_marker: Some(marker),
                ..ShutdownConfig::default()
            },
            boot: BOOT.into(),
            dir,
        }
    }

    /// Real commands instead of dry-run.
    fn with_command(mut self, command: Vec<String>) -> World {
        self.shutdown.command = command;
        self.shutdown.dry_run = false;
        self.shutdown.dry_run_marker = None;
        self
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.file(name)).map_or(0, |s| s.lines().count())
    }

    fn marker_lines(&self) -> usize {
        self.lines("marker")
    }

    fn elapsed(&self) -> f64 {
        Instant::now().duration_since(self.start).as_secs_f64()
    }

    async fn start(&self) -> Agent {
        self.start_with(None).await
    }

    /// [`start`](Self::start), taking new timers from `updates` (a config
    /// reload).
    async fn start_with(&self, updates: Option<watch::Receiver<FsmConfig>>) -> Agent {
        let clock = TokioClock::starting_at(Millis(T0), self.start);
        let exec = Executor::new(self.shutdown.clone());
        let exec_stats = Arc::clone(exec.stats());
        let notified = Arc::new(AtomicU64::new(0));
        let n = Arc::clone(&notified);
        let sup = Supervisor::new(self.fsm.clone(), exec, self.state_dir(), clock)
            .expect("valid config")
            .with_boot_id(Some(self.boot.clone()))
            .on_notify(move |_| {
                n.fetch_add(1, Ordering::Relaxed);
            });
        let sup = match updates {
            Some(u) => sup.with_config_updates(u),
            None => sup,
        };
        let state = sup.subscribe();
        let stats = sup.stats();
        let (tx, rx) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sup.run(rx, async move {
            let _ = stopped.await;
        }));
        // Let it load its state and publish. Yields, not a sleep: while a
        // real command runs, tokio does not advance paused time.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        Agent {
            events: tx,
            state,
            stop,
            task,
            stats,
            exec: exec_stats,
            notified,
        }
    }
}

impl Agent {
    fn machine(&self) -> Machine {
        self.state.borrow().clone()
    }

    async fn send(&self, ev: Event) {
        self.events.send(ev).await.expect("agent running");
        // Let the supervisor take it at this very instant.
        tokio::task::yield_now().await;
    }

    async fn stop(self) -> Machine {
        let _ = self.stop.send(());
        self.task.await.expect("supervisor task")
    }
}

/// What the agent looked like after each observation.
#[derive(Default)]
struct Trace {
    /// (seconds since the world's start, state, reason)
    samples: Vec<(f64, State, Reason)>,
}

impl Trace {
    fn ever(&self, s: State) -> bool {
        self.samples.iter().any(|x| x.1 == s)
    }

    /// Seconds of the first observation after which the state was `s`.
    fn first(&self, s: State) -> Option<f64> {
        self.samples.iter().find(|x| x.1 == s).map(|x| x.0)
    }
}

/// A world whose command appends a line to `runs` each time it runs.
fn counting_runs(runs: &Path) -> World {
    World::new().with_command(sh(&format!("echo x >> '{}'", runs.display())))
}

/// The lines a command appending to `path` wrote there: one a run.
fn runs_in(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("runs").lines().count()
}

/// Send an observation every 5 s ± 10 % until `end` seconds since the
/// world's start; `f(t)` is the world at `t`.
async fn drive(
    w: &World,
    a: &Agent,
    rng: &mut StdRng,
    end: f64,
    f: impl Fn(f64) -> Input,
) -> Trace {
    let mut trace = Trace::default();
    loop {
        let next = PROBE.mul_f64(rng.random_range(0.9..=1.1));
        // Stop before the probe that would land after `end`, so that the
        // next `drive` continues the same probe cadence.
        if w.elapsed() + next.as_secs_f64() > end {
            return trace;
        }
        tokio::time::sleep(next).await;
        let t = w.elapsed();
        a.send(Event::Observe(f(t))).await;
        let m = a.machine();
        trace.samples.push((t, m.state, m.reason));
    }
}

fn power(up: bool) -> Input {
    Input {
        power: Some(PowerReading::from(up)),
        ..Input::default()
    }
}

/// Time passes with ticks only (no observations).
async fn wait(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

//! The async loop that owns the state machine.
//!
//! It feeds [`fsm::step`] with events (observations and operator commands
//! from a channel, ticks from its own interval and at the exact next
//! deadline), carries out the returned actions in order, and publishes every
//! new [`Machine`] through a `watch` channel for the API, the exporter and
//! the cluster.
//!
//! # Exactly once
//!
//! On entering `shutdown` the decision is persisted and peers are told
//! before anything runs. Before each attempt of the shutdown command,
//! [`ExecRecord::begin_attempt`](crate::fsm::ExecRecord::begin_attempt)
//! marks it in flight and the record is persisted; the outcome is persisted
//! when the attempt ends. A restarted agent (same boot) therefore:
//! - never starts a command whose outcome it did not record (it may have
//!   run: we do not power a machine off twice, or reboot one that an
//!   operator has just powered back on);
//! - keeps retrying a command that is recorded as failed (a failure means it
//!   did not take effect, and the room is still heating);
//! - starts a command that was decided but never started.
//!
//! If writing `fsm.json` fails (full or read-only disk), the failure is
//! logged and counted, and the shutdown still goes ahead: refusing to power
//! off during a cooling loss because of a disk error is the worse outcome.
//!
//! A machine that was powered off and booted again must not stay in
//! `shutdown` forever: the kernel boot id is stored with the record, and a
//! `shutdown` record from another boot means "that shutdown completed", so
//! the agent starts in `normal`. `pre_fail` and `maintenance` keep their
//! deadlines across restarts and reboots alike.
//!
//! # Time
//!
//! Decisions use wall-clock [`Millis`] from a [`Clock`] so deadlines can be
//! persisted; sleeps use tokio's monotonic clock. [`SystemClock`] is the wall
//! clock anchored once at start and advanced by the monotonic clock, so an
//! NTP step while a grace runs neither shortens nor stretches it.
//! [`TokioClock`] derives wall time from tokio's clock, so tests with a
//! paused clock advance it.

use crate::fsm::{
    self, Action, Event, FsmConfig, FsmConfigError, Machine, Millis, Reason, Resume, State,
};
use crate::persist::{self, Loaded, Persisted};
use crate::shutdown::{ExecError, Executor, RunContext};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// Source of wall-clock time for the state machine.
pub trait Clock: Send + Sync + 'static {
    /// Now, as unix milliseconds.
    fn now(&self) -> Millis;
}

/// The system's wall clock, read once at start and advanced by the monotonic
/// clock from then on (immune to clock steps while the agent runs).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    wall: Millis,
    mono: std::time::Instant,
}

impl SystemClock {
    /// Anchor to the current wall-clock time.
    pub fn new() -> Self {
        SystemClock {
            wall: Millis::from_system_time(SystemTime::now()),
            mono: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        self.wall.plus(self.mono.elapsed())
    }
}

/// Wall time derived from tokio's clock: `base` at `start`, advancing with
/// `tokio::time` (and so with `tokio::time::pause`/`advance` in tests).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: Millis,
    start: Instant,
}

impl TokioClock {
    /// `base` now.
    pub fn new(base: Millis) -> Self {
        Self::starting_at(base, Instant::now())
    }

    /// `base` at `start` (clocks built from the same pair agree, which lets
    /// a test "restart" an agent on the same timeline).
    pub fn starting_at(base: Millis, start: Instant) -> Self {
        TokioClock { base, start }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Millis {
        self.base
            .plus(Instant::now().saturating_duration_since(self.start))
    }
}

/// The kernel's boot id, when the platform has one (Linux).
pub fn read_boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Counters of the supervisor (exported as metrics by the agent).
#[derive(Debug)]
pub struct SupervisorStats {
    /// `[from][to][reason]`, flattened.
    transitions: Vec<AtomicU64>,
    /// Failed writes of `fsm.json`.
    pub persist_failures: AtomicU64,
}

impl Default for SupervisorStats {
    fn default() -> Self {
        let n = State::ALL.len() * State::ALL.len() * Reason::ALL.len();
        SupervisorStats {
            transitions: (0..n).map(|_| AtomicU64::new(0)).collect(),
            persist_failures: AtomicU64::new(0),
        }
    }
}

impl SupervisorStats {
    fn index(from: State, to: State, reason: Reason) -> usize {
        let states = State::ALL.len();
        ((from as usize) * states + to as usize) * Reason::ALL.len() + reason as usize
    }

    fn count(&self, from: State, to: State, reason: Reason) {
        if let Some(c) = self.transitions.get(Self::index(from, to, reason)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Transitions seen `from -> to` with `reason`
    /// (`coolmesh_fsm_transitions_total`).
    pub fn transitions(&self, from: State, to: State, reason: Reason) -> u64 {
        self.transitions
            .get(Self::index(from, to, reason))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every non-zero `(from, to, reason, count)`, for the exporter.
    pub fn all_transitions(&self) -> Vec<(State, State, Reason, u64)> {
        let mut out = Vec::new();
        for from in State::ALL {
            for to in State::ALL {
                for reason in Reason::ALL {
                    let n = self.transitions(from, to, reason);
                    if n > 0 {
                        out.push((from, to, reason, n));
                    }
                }
            }
        }
        out
    }
}

type Notify = Box<dyn Fn(&Machine) + Send + Sync>;

/// Owns the state machine and carries out its actions. Build it, keep what
/// you need ([`subscribe`](Self::subscribe), [`stats`](Self::stats)), then
/// [`run`](Self::run) it.
pub struct Supervisor<C: Clock> {
    fsm: FsmConfig,
    executor: Arc<Executor>,
    state_dir: PathBuf,
    clock: C,
    boot_id: Option<String>,
    tick: Duration,
    snapshot: watch::Sender<Machine>,
    notify: Notify,
    stats: Arc<SupervisorStats>,
    /// New timers from a config reload; `None`: fixed for the run.
    updates: Option<watch::Receiver<FsmConfig>>,
}

impl<C: Clock> Supervisor<C> {
    /// A supervisor keeping `fsm.json` in `state_dir`. The boot id is read
    /// from the kernel; the tick interval is 1 s.
    pub fn new(
        fsm: FsmConfig,
        executor: Executor,
        state_dir: impl Into<PathBuf>,
        clock: C,
    ) -> Result<Self, FsmConfigError> {
        fsm.validate()?;
        let now = clock.now();
        Ok(Supervisor {
            fsm,
            executor: Arc::new(executor),
            state_dir: state_dir.into(),
            clock,
            boot_id: read_boot_id(),
            tick: Duration::from_secs(1),
            snapshot: watch::Sender::new(Machine::new(now)),
            notify: Box::new(|_| {}),
            stats: Arc::new(SupervisorStats::default()),
            updates: None,
        })
    }

    /// Override the boot id (tests; platforms without one).
    pub fn with_boot_id(mut self, boot_id: Option<String>) -> Self {
        self.boot_id = boot_id;
        self
    }

    /// How often to tick besides the exact deadlines. Default 1 s.
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick.max(Duration::from_millis(10));
        self
    }

    /// Called on `NotifyPeers` with the new machine. Must not block (use
    /// `try_send` on a channel). The agent sets no hook: it tells peers by
    /// publishing the machine (every step is published on
    /// [`Supervisor::subscribe`]), and the cluster layer pushes its record
    /// to every member when the published state changes. Tests use the hook
    /// to count notifications.
    pub fn on_notify(mut self, f: impl Fn(&Machine) + Send + Sync + 'static) -> Self {
        self.notify = Box::new(f);
        self
    }

    /// Take new timers from `updates` while running (a config reload). The
    /// machine stays pure: each step is given the config in force at that
    /// step. An invalid config (the agent validates before sending) is
    /// refused with an error and the old one kept.
    pub fn with_config_updates(mut self, updates: watch::Receiver<FsmConfig>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// The current machine, updated on every change.
    pub fn subscribe(&self) -> watch::Receiver<Machine> {
        self.snapshot.subscribe()
    }

    /// Transition and persistence counters.
    pub fn stats(&self) -> Arc<SupervisorStats> {
        Arc::clone(&self.stats)
    }

    /// The executor (for its counters).
    pub fn executor(&self) -> Arc<Executor> {
        Arc::clone(&self.executor)
    }

    /// Where `fsm.json` lives.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Run until `stop` completes; returns the final machine. Closing the
    /// event channel does not stop the loop (deadlines still fire).
    pub async fn run(
        self,
        mut events: mpsc::Receiver<Event>,
        stop: impl Future<Output = ()> + Send,
    ) -> Machine {
        let now = self.clock.now();
        let (m, resume) = self.restore(now);
        let mut r = Runner {
            sup: self,
            m,
            exec: None,
            retry_at: None,
        };
        // Always announce the restored machine, even when it equals the
        // initial value: subscribers (the decision journal) take the first
        // notification as "what the agent started with".
        r.sup.snapshot.send_replace(r.m.clone());
        r.resume(resume);

        let mut ticker = tokio::time::interval(r.sup.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut events_open = true;
        let mut updates = r.sup.updates.take();
        tokio::pin!(stop);
        loop {
            let wake_at =
                r.m.next_wake(&r.sup.fsm)
                    .map(|at| Instant::now() + at.since(r.sup.clock.now()));
            tokio::select! {
                biased;
                () = &mut stop => {
                    tracing::info!(state = %r.m.state, "state machine stopping");
                    break;
                }
                done = maybe(&mut r.exec) => r.exec_done(done),
                () = sleep_opt(r.retry_at) => {
                    r.retry_at = None;
                    r.start_attempt();
                }
                ev = events.recv(), if events_open => match ev {
                    Some(ev) => r.apply(&ev),
                    None => events_open = false,
                },
                () = sleep_opt(wake_at) => r.apply(&Event::Tick),
                _ = ticker.tick() => r.apply(&Event::Tick),
                new = next_config(&mut updates) => match new.validate() {
                    Ok(()) => {
                        tracing::info!("state machine: new timers from a config reload");
                        r.sup.fsm = new;
                        // Judged at once by the new timers (a shorter
                        // sustain may now be met).
                        r.apply(&Event::Tick);
                    }
                    Err(e) => tracing::error!(error = %e.0, "state machine: reloaded timers refused; the old ones stay"),
                },
            }
        }
        r.m
    }

    /// Load `fsm.json` and decide where to start.
    fn restore(&self, now: Millis) -> (Machine, Resume) {
        let dir = self.state_dir.display().to_string();
        let m = match persist::load_or_default(&self.state_dir) {
            Loaded::Missing => {
                tracing::info!(dir, "no saved state machine, starting in normal");
                Machine::new(now)
            }
            Loaded::Unusable { error, moved_to } => {
                tracing::error!(
                    %error,
                    moved_to = ?moved_to,
                    "saved state machine is unusable, starting in normal: a pending shutdown, cancel hold or maintenance window was lost"
                );
                Machine::new(now)
            }
            Loaded::Restored(rec) => {
                let same_boot = match (&rec.boot_id, &self.boot_id) {
                    (Some(a), Some(b)) => a == b,
                    // Without boot ids we cannot tell: assume a restart, the
                    // side on which nothing runs twice.
                    _ => true,
                };
                if rec.machine.state == State::Shutdown && !same_boot {
                    let old = &rec.machine;
                    let mut m = Machine::new(now);
                    m.detail = format!(
                        "machine booted again after the shutdown decided at {} ({}: {})",
                        old.since, old.reason, old.detail
                    );
                    tracing::warn!(decided_at = %old.since, reason = %old.reason, command_completed = old.exec.done, "the machine was rebooted after a shutdown, starting in normal");
                    self.store(&m);
                    m
                } else {
                    let mut m = rec.machine.clone();
                    m.forget_observations();
                    if m.state == State::PreFail {
                        self.restore_pre_fail(&mut m, same_boot, rec.written_at, now);
                    } else {
                        tracing::info!(state = %m.state, reason = %m.reason, since = %m.since, "restored state machine");
                    }
                    m
                }
            }
        };
        let resume = if m.state == State::Shutdown {
            m.exec.resume()
        } else {
            Resume::Nothing
        };
        (m, resume)
    }

    /// Restore only what is still true. A `pre_fail` from another boot is
    /// never acted on before a fresh observation shows its trigger still
    /// active (the machine went down mid-grace, e.g. its UPS ran out; mains
    /// may well be back). On the same boot (an agent restart) a deadline
    /// that passed while the agent was down waits one probe round
    /// ([`FsmConfig::restore_wait`]); one still ahead stands.
    fn restore_pre_fail(&self, m: &mut Machine, same_boot: bool, written_at: Millis, now: Millis) {
        let deadline = m.deadline.unwrap_or(now);
        if now < written_at {
            // The clock is behind the time the record was written: it was
            // not set yet at boot, or it stepped back. The deadline is
            // measured on a clock we cannot trust; fresh observations decide.
            tracing::error!(written_at = %written_at, now = %now, "the clock is earlier than the saved state machine: is time synchronised? (the unit waits for time-sync.target)");
        }
        if !same_boot {
            m.unconfirmed = true;
            m.confirm_by = None;
            m.detail = format!(
                "restored after a reboot: pre_fail ({}) from the previous boot, deadline {deadline}, waits for a fresh observation of its trigger",
                m.trigger
            );
            tracing::warn!(reason = %m.reason, trigger = %m.trigger, deadline = %deadline, "restored pre_fail from a previous boot: nothing is done until fresh observations confirm its trigger");
        } else if deadline <= now || now < written_at {
            m.unconfirmed = true;
            m.confirm_by = Some(now.plus(self.fsm.restore_wait));
            m.detail = format!(
                "restored after an agent restart: the deadline {deadline} passed; one probe round decides (at most {:?})",
                self.fsm.restore_wait
            );
            tracing::warn!(reason = %m.reason, deadline = %deadline, wait = ?self.fsm.restore_wait, "restored pre_fail whose deadline passed while the agent was down: one probe round decides");
        } else {
            tracing::warn!(reason = %m.reason, deadline = %deadline, remaining = ?deadline.since(now), "restored pre_fail, keeping its deadline");
        }
    }

    fn store(&self, m: &Machine) -> bool {
        let rec = Persisted::new(m.clone(), self.boot_id.clone(), self.clock.now());
        match persist::store(&self.state_dir, &rec) {
            Ok(()) => true,
            Err(error) => {
                self.stats.persist_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, state = %m.state, "could not persist the state machine");
                false
            }
        }
    }
}

/// What a running command reports back.
enum ExecDone {
    Pre(Result<(), ExecError>),
    Command(Result<(), ExecError>),
}

type ExecFuture = Pin<Box<dyn Future<Output = ExecDone> + Send>>;

/// The loop's mutable state.
struct Runner<C: Clock> {
    sup: Supervisor<C>,
    m: Machine,
    /// The pre-command or command attempt in progress.
    exec: Option<ExecFuture>,
    /// When to retry a failed command.
    retry_at: Option<Instant>,
}

impl<C: Clock> Runner<C> {
    fn apply(&mut self, ev: &Event) {
        let now = self.sup.clock.now();
        let (next, actions) = fsm::step(&self.m, ev, now, &self.sup.fsm);
        self.m = next;
        let mut run_pre = false;
        for action in actions {
            match action {
                Action::Transition {
                    from,
                    to,
                    reason,
                    detail,
                } => self.on_transition(from, to, reason, &detail),
                Action::Persist => {
                    self.sup.store(&self.m);
                }
                Action::NotifyPeers => (self.sup.notify)(&self.m),
                Action::RunPreCommand => run_pre = true,
                Action::RunShutdown => self.start_shutdown(run_pre),
            }
        }
        self.publish();
    }

    fn on_transition(&self, from: State, to: State, reason: Reason, detail: &str) {
        self.sup.stats.count(from, to, reason);
        let deadline = self.m.deadline.map(|d| d.to_string()).unwrap_or_default();
        match to {
            State::Shutdown => {
                tracing::error!(%from, %to, %reason, detail, deadline, "state transition")
            }
            State::PreFail | State::LocalFault => {
                tracing::warn!(%from, %to, %reason, detail, deadline, "state transition")
            }
            _ => tracing::info!(%from, %to, %reason, detail, "state transition"),
        }
    }

    fn publish(&self) {
        self.sup.snapshot.send_if_modified(|cur| {
            if *cur == self.m {
                false
            } else {
                *cur = self.m.clone();
                true
            }
        });
    }

    fn ctx(&self) -> RunContext {
        RunContext {
            reason: self.m.reason,
            detail: self.m.detail.clone(),
            at: self.sup.clock.now(),
        }
    }

    /// What a restarted agent does about a shutdown decided earlier.
    fn resume(&mut self, resume: Resume) {
        let decided = self.m.since;
        match resume {
            Resume::Nothing => {}
            Resume::Run => {
                tracing::warn!(decided_at = %decided, reason = %self.m.reason, "the shutdown decided before the restart never started: starting it now");
                self.start_shutdown(true);
            }
            Resume::Retry { failures } => {
                let delay = self.sup.executor.backoff(failures);
                tracing::warn!(decided_at = %decided, failures, retry_in = ?delay, "the shutdown command failed before the restart: retrying");
                self.retry_at = Some(Instant::now() + delay);
            }
            Resume::OutcomeUnknown => {
                // Same boot (another boot starts in normal): the machine is
                // still up, so that attempt did not power it off. It was
                // most likely killed with the agent (systemd stops the whole
                // control group). Give a surviving attempt its timeout to
                // finish, then retry.
                let timeout = self.sup.executor.config().command_timeout;
                let started = self.m.exec.last_attempt_at.unwrap_or(self.m.since);
                let wait = started.plus(timeout).since(self.sup.clock.now());
                tracing::error!(
                    decided_at = %decided,
                    started_at = %started,
                    retry_in = ?wait,
                    "the agent restarted while the shutdown command was running and the machine is still up: retrying the command once its timeout has passed"
                );
                crate::shutdown::ExecStats::inc(&self.sup.executor.stats().outcome_unknown);
                self.m.exec.finish_attempt(Err(
                    "the agent restarted while this attempt ran; outcome unknown".into(),
                ));
                self.sup.store(&self.m);
                self.retry_at = Some(Instant::now() + wait);
            }
        }
    }

    fn start_shutdown(&mut self, run_pre: bool) {
        if self.exec.is_some() || self.retry_at.is_some() {
            tracing::warn!("shutdown already in progress, not starting it again");
            return;
        }
        let has_pre = self.sup.executor.config().pre_command.is_some();
        if run_pre && has_pre && !self.m.exec.pre_command_done {
            let ex = Arc::clone(&self.sup.executor);
            let ctx = self.ctx();
            self.exec = Some(Box::pin(async move {
                ExecDone::Pre(ex.run_pre_command(&ctx).await)
            }));
        } else {
            self.start_attempt();
        }
    }

    /// One attempt of the command, recorded in flight and persisted first.
    fn start_attempt(&mut self) {
        self.m.exec.begin_attempt(self.sup.clock.now());
        // On failure the attempt goes ahead anyway (see the module docs).
        self.sup.store(&self.m);
        self.publish();
        let ex = Arc::clone(&self.sup.executor);
        let ctx = self.ctx();
        self.exec = Some(Box::pin(async move {
            ExecDone::Command(ex.run_command(&ctx).await)
        }));
    }

    fn exec_done(&mut self, done: ExecDone) {
        self.exec = None;
        match done {
            ExecDone::Pre(result) => {
                match result {
                    Ok(()) => tracing::info!("shutdown pre-command finished"),
                    Err(error) => {
                        tracing::error!(%error, "shutdown pre-command failed, shutting down anyway")
                    }
                }
                self.m.exec.pre_command_done = true;
                self.sup.store(&self.m);
                self.start_attempt();
            }
            ExecDone::Command(Ok(())) => {
                self.m.exec.finish_attempt(Ok(()));
                self.sup.store(&self.m);
                tracing::warn!(
                    attempts = self.m.exec.attempts,
                    "shutdown command completed"
                );
            }
            ExecDone::Command(Err(error)) => {
                self.m.exec.finish_attempt(Err(error.to_string()));
                self.sup.store(&self.m);
                let delay = self.sup.executor.backoff(self.m.exec.failures);
                tracing::error!(%error, attempts = self.m.exec.attempts, retry_in = ?delay, "shutdown command failed, will retry");
                self.retry_at = Some(Instant::now() + delay);
            }
        }
        self.publish();
    }
}

/// Await the future if there is one, else never complete.
async fn maybe(f: &mut Option<ExecFuture>) -> ExecDone {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The next config from `updates`; never completes without a receiver or
/// once its sender is gone (the config then stays as it is).
async fn next_config(updates: &mut Option<watch::Receiver<FsmConfig>>) -> FsmConfig {
    if let Some(rx) = updates {
        if rx.changed().await.is_ok() {
            return rx.borrow_and_update().clone();
        }
        *updates = None;
    }
    std::future::pending().await
}

/// Sleep until `at` if set, else never complete.
async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

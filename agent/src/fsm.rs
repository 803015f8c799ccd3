//! The shutdown state machine: a pure function
//! `step(machine, event, now, config) -> (machine, actions)`.
//!
//! Nothing here does I/O, reads a clock or sleeps. The [`supervisor`] owns
//! the [`Machine`], feeds it [`Event`]s with the current wall-clock time and
//! carries out the [`Action`]s in order. Keeping the decisions pure is what
//! lets the tests walk every transition with a table and lets operators
//! reason about the rules from this file alone.
//!
//! # States
//!
//! - `normal`: everything fine, or a trigger is held off after a cancel.
//! - `pre_fail`: a trigger fired; a shutdown is due at [`Machine::deadline`]
//!   unless the node recovers first.
//! - `shutdown`: terminal. The decision is persisted and the command runs
//!   exactly once (see [`ExecRecord`]).
//! - `local_fault`: this node's power probe fails but a majority of fresh
//!   peers see the power target up: the fault is local (a cable, a switch
//!   port, the probe itself). Also entered when this node's probe round is
//!   *unknown* (every probe failed with a local error such as `EMFILE`, see
//!   [`PowerReading::Unknown`]). Alert only, never a shutdown.
//! - `maintenance`: an operator holds every automatic shutdown until a
//!   deadline.
//!
//! # Triggers (each with its own grace)
//!
//! - **power**: the local probe fails and the failure is corroborated: fresh
//!   peers agree, or no fresh peer reports on the target (then the agent
//!   behaves like the original careful servers and trusts its own probe).
//!   See [`power_verdict`]. An *unknown* round is never a failure: a node
//!   that cannot open a socket knows nothing about mains power, and if that
//!   counted as "down", an fd-exhaustion attack or a bad configuration
//!   pushed to every node would power the whole room off.
//! - **cooling**: a quorum of fresh nodes, this one included, is overheating
//!   or heating fast. See [`cooling_quorum`] and [`FsmConfig::is_heating`].
//! - **overheat**: one of this node's sensors has been at or above critical
//!   for [`FsmConfig::overheat_sustain`].
//!
//! Entering `pre_fail` sets `deadline = now + grace` of the trigger. While in
//! `pre_fail` the deadline only ever moves *earlier* (another trigger with a
//! shorter grace, or the prediction below); it never moves later, so a node
//! cannot be talked out of a due shutdown by noise. Leaving `pre_fail` needs
//! [`FsmConfig::recovery_probes`] consecutive observations with no trigger;
//! in `pre_fail(power)` an unknown round is not such an observation (it
//! breaks the streak: it says nothing about whether mains came back).
//!
//! # Peer view changes
//!
//! [`Event::PeersChanged`] re-evaluates the power corroboration with the new
//! peer view and this node's *last* own probe result
//! ([`Machine::last_power`]) as soon as the cluster view changes, rather
//! than at the next own probe. When mains fails, the first node to probe
//! sees its peers' older "up" votes and goes to `local_fault`; without this
//! it would stay there for a whole probe interval after the peers' "down"
//! votes arrived. It can enter `pre_fail` (from `local_fault` or `normal`;
//! the grace counts from that moment, as for an observation) and reset a
//! recovery streak in `pre_fail` when the loss is corroborated again, but
//! it is not an observation: it never counts toward a recovery, never
//! leaves `pre_fail` or `local_fault` for `normal`, and leaves cooling and
//! overheat to the next observation.
//!
//! # Prediction
//!
//! In `pre_fail` (trigger power or cooling), if the projected time
//! to critical is shorter than the remaining grace plus
//! [`FsmConfig::shutdown_duration`], the deadline moves to
//! `now + max(0, ttc - shutdown_duration)` (never earlier than
//! [`FsmConfig::prediction_floor`] after entering `pre_fail`), reason
//! `prediction`. Dense racks reach their limits about a minute after cooling
//! stops; a fixed five-minute wait is not safe there.
//!
//! Prediction does **not** apply in `normal`: a CPU burst easily projects
//! "critical in 90 s" for a few seconds, and that alone must never power a
//! server off. It only shortens a grace that a corroborated trigger already
//! started. It does not apply in `pre_fail(overheat)` either: that node is at
//! critical already (projection zero), and the overheat grace is the
//! deliberate wait for fans or throttling to bring it back.
//!
//! # Battery
//!
//! A UPS read through NUT says how long its battery lasts
//! ([`Input::battery`]). In `pre_fail` with the **power** trigger active
//! (a corroborated loss, not held by a cancel), the deadline moves to
//! `now + max(0, runtime - shutdown_duration)` when that is earlier: the
//! command must start [`FsmConfig::shutdown_duration`] before the battery
//! runs out. A UPS that says low battery (`OB LB`) or forced shutdown
//! (`FSD OB`) is *urgent*: the deadline moves to now. Either move is never
//! earlier than [`FsmConfig::prediction_floor`] after entering `pre_fail`,
//! so one odd reading at the start of an outage leaves the recovery probes
//! a chance, as for the prediction. The battery only ever brings a running
//! grace forward: it never starts one (a UPS on battery is a power "down"
//! vote and goes through the same corroboration as any other), it means
//! nothing without the power trigger (on mains, `OL`, the runner gives no
//! battery at all), and the grace deadline it sets is the power trigger's
//! own: a cleared power trigger gives it back with the rest, a prediction
//! that releases comes back to it, not past it.
//!
//! # Grace end while recovering
//!
//! When the deadline passes while a recovery is in progress (the last
//! observation was good but fewer than `recovery_probes` in a row), the
//! machine waits for the next observation, up to 1.5 ×
//! [`FsmConfig::observe_interval`] after the last one: a good one continues
//! the recovery, a bad one (or none) shuts down. Without this, an outage that
//! ended just before the grace would still shut down because the second
//! confirming probe came a few seconds too late.
//!
//! # Stages
//!
//! A node of shutdown stage `k > 0` (storage, network) goes down after the
//! lower stages (compute) when the whole room goes down. The cluster layer
//! counts the alive lower-stage nodes still going down for each trigger
//! ([`crate::stage::lower_stages`], given as [`PeerView::stages`]); while
//! some are left for this node's trigger (power or cooling, never
//! overheat, which is this node's own emergency), a passed deadline holds
//! the command, up to [`FsmConfig::stage_timeout`] after the deadline
//! (see [`Machine::stage_hold_until`]). The hold never waits past a limit
//! of the hardware seen during this `pre_fail`: a UPS that says low
//! battery or whose runtime less the shutdown duration runs out, a sensor
//! at critical, or the projected time to critical less the shutdown
//! duration ([`Machine::safety_by`]). A stage order is a preference; a
//! battery that runs out is not. The hold only ever delays a shutdown that
//! is due anyway, by a bounded time: it can never cause one.
//!
//! # Time
//!
//! Time is wall-clock unix milliseconds ([`Millis`]) so that deadlines can be
//! persisted and survive a restart of the agent.
//!
//! [`supervisor`]: crate::supervisor

mod gate;
pub use gate::{Pending, StageGate};

use crate::thermal::ThermalSummary;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time as unix milliseconds.
///
/// Arithmetic saturates: a corrupt or absurd value must never panic the
/// agent that guards the machine room.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The time `t` as unix milliseconds (zero before 1970).
    pub fn from_system_time(t: SystemTime) -> Millis {
        Millis(t.duration_since(UNIX_EPOCH).map_or(0, duration_ms))
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_ms(d)))
    }

    /// `self - d`, saturating at the epoch.
    pub fn minus(self, d: Duration) -> Millis {
        Millis(self.0.saturating_sub(duration_ms(d)))
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Unix seconds, for metrics (`*_timestamp_seconds`).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl fmt::Display for Millis {
    /// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

/// A duration in whole milliseconds, saturating (a `Duration` can hold more).
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Human form of a duration for transition details, e.g. `4m 30s`.
fn human(d: Duration) -> String {
    // Whole seconds are what operators read; sub-second noise is clutter.
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The states of the machine. Names are part of the metric and API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Everything fine (or a trigger is held after an operator cancel).
    #[default]
    Normal,
    /// A trigger fired; shutdown at the deadline unless it recovers.
    PreFail,
    /// Terminal: the shutdown was decided and its command issued.
    Shutdown,
    /// The local probe fails but a majority of fresh peers see power: alert only.
    LocalFault,
    /// An operator holds all automatic shutdowns until a deadline.
    Maintenance,
}

impl State {
    /// Every state, in metric order.
    pub const ALL: [State; 5] = [
        State::Normal,
        State::PreFail,
        State::Shutdown,
        State::LocalFault,
        State::Maintenance,
    ];

    /// The wire and metric label name.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Normal => "normal",
            State::PreFail => "pre_fail",
            State::Shutdown => "shutdown",
            State::LocalFault => "local_fault",
            State::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the machine is in its state (the reason of the last transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Nothing happened yet (fresh start).
    #[default]
    None,
    /// Mains power lost (corroborated), or recovered from that, or a local
    /// probe fault.
    Power,
    /// A quorum of nodes overheating or heating fast.
    Cooling,
    /// This node's own sensor at critical for the sustain period.
    Overheat,
    /// The deadline was moved earlier by the time-to-critical projection.
    Prediction,
    /// An operator cancelled, or entered or left maintenance.
    Operator,
}

impl Reason {
    /// Every reason, in metric order.
    pub const ALL: [Reason; 6] = [
        Reason::None,
        Reason::Power,
        Reason::Cooling,
        Reason::Overheat,
        Reason::Prediction,
        Reason::Operator,
    ];

    /// The wire and metric label name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::Power => "power",
            Reason::Cooling => "cooling",
            Reason::Overheat => "overheat",
            Reason::Prediction => "prediction",
            Reason::Operator => "operator",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tuning of the state machine. Every field is safe at its default; each
/// comment says what moving it away from the default costs.
#[derive(Debug, Clone, PartialEq)]
pub struct FsmConfig {
    /// Grace after a corroborated power loss before shutting down.
    /// Default 5 min (the careful-servers value). Longer rides out longer
    /// outages but leaves less UPS battery and less thermal margin for the
    /// shutdown itself; shorter shuts down on outages that would have ended.
    pub power_grace: Duration,
    /// Grace after a cooling quorum forms. Default 2 min. A room without
    /// cooling heats in minutes, so this is shorter than the power grace;
    /// longer rides out a chiller restart, shorter reacts to false quorums
    /// (a cluster-wide batch job heating every node at once).
    pub cooling_grace: Duration,
    /// How long one sensor must stay at or above critical before the
    /// overheat trigger fires. Default 30 s. Longer tolerates sensor spikes;
    /// shorter reacts faster but a single noisy reading can start a grace.
    pub overheat_sustain: Duration,
    /// Grace after the overheat trigger fires. Default 60 s: time for fans or
    /// throttling to bring the node back. Longer risks running hardware at
    /// critical; shorter powers off on transient hot spots.
    pub overheat_grace: Duration,
    /// How long a shutdown takes from the command to power off. Default 60 s.
    /// Used by the prediction and the battery rule: the command must start
    /// this long before the projected critical time, and before a UPS on
    /// battery runs out (module documentation, "Battery"). Too short and
    /// the node reaches critical or loses power mid-shutdown; too long and
    /// predictions and UPS runtimes shut down earlier than needed.
    pub shutdown_duration: Duration,
    /// Consecutive observations without any trigger needed to leave
    /// `pre_fail` or `local_fault`. Default 2. Higher resists flapping power
    /// (and needs more probe intervals to recover); 1 trusts a single probe.
    pub recovery_probes: u32,
    /// After an operator cancel, how long the node stays out of `pre_fail`.
    /// Default 30 min. Longer means a real, later outage is ignored for
    /// longer; shorter means a cancelled, ongoing outage comes back quickly.
    pub cancel_hold: Duration,
    /// Minimum number of nodes (self included) in a cooling quorum. Default 2,
    /// so a lone node never declares "cooling lost" from its own heating
    /// (it still has the overheat trigger). 1 lets a single node's CPU burst
    /// start the cooling grace.
    pub cooling_quorum_min: u32,
    /// A node whose hottest sensor rises at least this fast (C/min) counts as
    /// "heating fast" for the cooling quorum. Default 3.0. Lower detects a
    /// failed air conditioner sooner; higher ignores more workload bursts.
    pub heating_fast_c_per_min: f64,
    /// Whether the time-to-critical prediction may move a `pre_fail`
    /// deadline earlier. Default true. Off means a fixed grace, which is not
    /// safe in dense racks.
    pub prediction: bool,
    /// A predicted deadline is never earlier than this after entering
    /// `pre_fail`. Default 15 s (three probe intervals), so a single failed
    /// probe during a CPU burst cannot power a server off before the
    /// recovery probes had a chance. Longer costs thermal margin.
    pub prediction_floor: Duration,
    /// The interval at which observations arrive (the power probe interval).
    /// Default 5 s. Only used when the grace ends during a recovery: the
    /// machine waits up to 1.5 intervals for the next probe.
    pub observe_interval: Duration,
    /// After an agent restart on the same boot, how long a restored
    /// `pre_fail` whose deadline passed waits for one fresh observation
    /// before shutting down anyway. Default 3 s; the agent sets the probe
    /// timeout plus 2 s (the first probe round starts at once). Longer
    /// delays a due shutdown after a crash; shorter may act before the
    /// first probe answered. A `pre_fail` restored after a reboot waits for
    /// a confirming observation however long it takes.
    pub restore_wait: Duration,
    /// Staged shutdown: how long past its own deadline a node of stage
    /// `k > 0` holds its command while lower-stage nodes are still going
    /// down for the same trigger (module documentation, "Stages").
    /// Default 2 min: a drain and an OS shutdown of the compute nodes fit
    /// in it on most rooms. Longer gives slow lower stages more time but
    /// spends UPS battery and thermal margin of the last stage (the hold
    /// still ends at the battery or temperature limit); shorter may power
    /// the storage off under a compute node that still writes. Zero turns
    /// the wait off (every stage at its own deadline).
    pub stage_timeout: Duration,
}

impl Default for FsmConfig {
    fn default() -> Self {
        FsmConfig {
            power_grace: Duration::from_secs(300),
            cooling_grace: Duration::from_secs(120),
            overheat_sustain: Duration::from_secs(30),
            overheat_grace: Duration::from_secs(60),
            shutdown_duration: Duration::from_secs(60),
            recovery_probes: 2,
            cancel_hold: Duration::from_secs(30 * 60),
            cooling_quorum_min: 2,
            heating_fast_c_per_min: 3.0,
            prediction: true,
            prediction_floor: Duration::from_secs(15),
            observe_interval: Duration::from_secs(5),
            restore_wait: Duration::from_secs(3),
            stage_timeout: Duration::from_secs(120),
        }
    }
}

/// A configuration the state machine refuses to run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid shutdown state machine setting: {0}")]
pub struct FsmConfigError(pub String);

impl FsmConfig {
    /// Reject settings that would defeat the "never on a blip" rule.
    pub fn validate(&self) -> Result<(), FsmConfigError> {
        let bad = |s: &str| Err(FsmConfigError(s.to_string()));
        if self.power_grace.is_zero()
            || self.cooling_grace.is_zero()
            || self.overheat_grace.is_zero()
        {
            // A zero grace turns one failed probe into a shutdown.
            return bad("graces (power, cooling, overheat) must be longer than zero");
        }
        if self.recovery_probes == 0 {
            return bad("recovery_probes must be at least 1");
        }
        if self.cooling_quorum_min == 0 {
            return bad("cooling_quorum_min must be at least 1");
        }
        if !(self.heating_fast_c_per_min.is_finite() && self.heating_fast_c_per_min > 0.0) {
            return bad("heating_fast_c_per_min must be a positive number");
        }
        if self.observe_interval.is_zero() {
            return bad("observe_interval must be longer than zero");
        }
        Ok(())
    }

    /// Does a node with this summary vote "cooling lost" in the cooling
    /// quorum? A sensor at critical, or the cooling detector's vote (a
    /// sustained rise not explained by the node's workload, see
    /// [`crate::heating`]); a fast trend alone no longer counts.
    pub fn is_heating(&self, t: &ThermalSummary) -> bool {
        t.critical || t.cooling_vote
    }

    /// The grace of a trigger.
    pub fn grace(&self, trigger: Reason) -> Duration {
        match trigger {
            Reason::Cooling => self.cooling_grace,
            Reason::Overheat => self.overheat_grace,
            // Power, and anything else: the longest, most conservative one.
            _ => self.power_grace,
        }
    }
}

/// What fresh peers report, as assembled by the cluster layer.
///
/// `Default` is "no peers": the agent then trusts its own probe and sensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// Peers whose record is fresh (alive, not suspect or dead).
    pub fresh_peers: u32,
    /// Fresh peers whose own power policy says "up".
    pub power_up: u32,
    /// Fresh peers whose own power policy says "down".
    pub power_down: u32,
    /// Fresh peers voting "cooling lost" (critical, or a sustained rise
    /// not explained by their workload; see [`crate::heating`]).
    pub overheating: u32,
    /// Quorum weight of the fresh peers: 2 for a node that votes by inlet
    /// or ambient air sensors, 1 for others. 0 means "not given": then
    /// every peer weighs 1.
    pub weight: u32,
    /// Quorum weight of the peers voting "cooling lost".
    pub overheating_weight: u32,
    /// Staged shutdown: the alive lower-stage nodes still going down, per
    /// trigger (module documentation, "Stages"). Default: none.
    pub stages: StageGate,
}

impl PeerView {
    /// `(total, voting)` quorum weight of the peers.
    pub fn weights(&self) -> (u32, u32) {
        if self.weight == 0 {
            (self.fresh_peers, self.overheating.min(self.fresh_peers))
        } else {
            (self.weight, self.overheating_weight.min(self.weight))
        }
    }
}

/// This node's own power probe round, as the policy read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerReading {
    /// The policy sees mains power.
    Up,
    /// The policy sees mains power lost (the targets, or the path to them,
    /// did not answer).
    Down,
    /// Every probe failed on this node (a local error such as `EMFILE`, a
    /// local firewall, no socket): this node cannot tell. Never a vote,
    /// never a power loss; the machine goes to (or stays in) `local_fault`.
    Unknown,
}

impl From<bool> for PowerReading {
    fn from(up: bool) -> Self {
        if up {
            PowerReading::Up
        } else {
            PowerReading::Down
        }
    }
}

impl PowerReading {
    /// The policy result as peers should see it: `None` for unknown (no
    /// vote, like a node without power targets).
    pub fn vote(self) -> Option<bool> {
        match self {
            PowerReading::Up => Some(true),
            PowerReading::Down => Some(false),
            PowerReading::Unknown => None,
        }
    }
}

/// What the UPSes that say "on battery" report, for a round whose policy
/// result is "down" (see [`Input::battery`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Battery {
    /// A UPS says low battery (`OB LB`) or forced shutdown (`FSD OB`): shut
    /// down as soon as the rules allow.
    pub urgent: bool,
    /// The shortest `battery.runtime` among them, if any reports one.
    pub runtime: Option<Duration>,
}

/// One observation: local power probe, local thermal summary, peers.
///
/// The agent sends one per power probe round (or per sensor read when no
/// probe is configured); the recovery streak counts these.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Input {
    /// The local power policy result; `None` when no probe is configured
    /// (then the power trigger never fires on this node).
    pub power: Option<PowerReading>,
    /// This node's thermal summary.
    pub thermal: ThermalSummary,
    /// What fresh peers report.
    pub peers: PeerView,
    /// The battery of this node's UPS targets that are on battery, when
    /// the round is down; `None` otherwise (and for targets that are not a
    /// UPS). It can only bring the deadline of a running power grace
    /// earlier (module documentation, "Battery").
    pub battery: Option<Battery>,
}

/// Everything the machine reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new observation.
    Observe(Input),
    /// The cluster view changed: re-evaluate the power corroboration with
    /// these peers and the last own probe result (see the module
    /// documentation, "Peer view changes"). Not an observation.
    PeersChanged(PeerView),
    /// Time passed (deadlines, end of maintenance).
    Tick,
    /// Operator: cancel a pending shutdown (`pre_fail` -> `normal`, then
    /// hold off `pre_fail` for [`FsmConfig::cancel_hold`]). A no-op in any
    /// other state.
    Cancel,
    /// Operator: hold every automatic shutdown until `until`.
    Maintenance {
        /// End of the maintenance window.
        until: Millis,
    },
    /// Operator: hold every automatic shutdown for `duration` from the
    /// moment the machine handles the request. The operator API uses this
    /// one, so that the window is measured on the state machine's own clock
    /// (an NTP step between the request and its handling cannot turn it
    /// into a window that already ended).
    MaintenanceFor {
        /// Length of the window (zero is ignored).
        duration: Duration,
    },
    /// Operator: end maintenance now.
    EndMaintenance,
}

/// What the supervisor must do, in this order.
///
/// On entering `shutdown` the list is `[Transition, Persist, NotifyPeers,
/// RunPreCommand, RunShutdown]`: the command runs only after the decision is
/// on disk and peers were told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Log (and count) a transition. `from == to` means the same state with a
    /// new reason or an earlier deadline (e.g. a prediction).
    Transition {
        /// State before.
        from: State,
        /// State after.
        to: State,
        /// Why.
        reason: Reason,
        /// Human explanation with the numbers that led to the decision.
        detail: String,
    },
    /// Write the machine to disk (before anything below).
    Persist,
    /// Push the new state to peers now rather than at the next gossip round.
    NotifyPeers,
    /// Run the optional pre-command (drain), under its timeout.
    RunPreCommand,
    /// Run the shutdown command (exactly once; see [`ExecRecord`]).
    RunShutdown,
}

/// Bookkeeping of the shutdown command, persisted with the machine so that a
/// restarted agent never runs it twice. Written by the supervisor, not by
/// [`step`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecRecord {
    /// The pre-command has run (successfully or not, or timed out).
    pub pre_command_done: bool,
    /// The shutdown command has been started at least once ("executed" in
    /// the metrics; in dry-run, "would have been started").
    pub issued: bool,
    /// An attempt was started and its outcome is not recorded. Persisted
    /// before spawning; if the agent restarts with this set, the command
    /// may have run and is never started again.
    pub in_flight: bool,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts that failed (non-zero exit, could not start, ...).
    pub failures: u32,
    /// The command exited successfully.
    pub done: bool,
    /// When the last attempt started.
    pub last_attempt_at: Option<Millis>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What a restarted agent does about a shutdown decided earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Nothing: no shutdown pending, or the command completed.
    Nothing,
    /// The decision was persisted but the command never started (the agent
    /// died in between): run it (and the pre-command if that did not run).
    Run,
    /// Earlier attempts failed and were recorded: keep retrying.
    Retry {
        /// Failures so far (drives the backoff).
        failures: u32,
    },
    /// An attempt was started and never reported back: it may have run, so
    /// it is not started again. Alert on this.
    OutcomeUnknown,
}

impl ExecRecord {
    /// Mark the start of an attempt. Persist before spawning.
    pub fn begin_attempt(&mut self, now: Millis) {
        self.issued = true;
        self.in_flight = true;
        self.attempts = self.attempts.saturating_add(1);
        self.last_attempt_at = Some(now);
    }

    /// Record the outcome of the attempt started last.
    pub fn finish_attempt(&mut self, outcome: Result<(), String>) {
        self.in_flight = false;
        match outcome {
            Ok(()) => {
                self.done = true;
                self.last_error = None;
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.last_error = Some(e);
            }
        }
    }

    /// What to do after a restart, for a machine in `shutdown`.
    pub fn resume(&self) -> Resume {
        if self.done {
            Resume::Nothing
        } else if self.in_flight {
            Resume::OutcomeUnknown
        } else if self.issued {
            Resume::Retry {
                failures: self.failures,
            }
        } else {
            Resume::Run
        }
    }
}

/// The whole state of the machine; serialisable so that it survives
/// restarts (see `persist`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// Current state.
    pub state: State,
    /// Reason of the last transition.
    pub reason: Reason,
    /// In `pre_fail` and `shutdown`: the trigger whose grace runs (power,
    /// cooling or overheat). Unlike `reason`, a prediction does not change
    /// it, so a recovery reports what recovered. `none` elsewhere.
    pub trigger: Reason,
    /// Detail of the last transition.
    pub detail: String,
    /// When the current state was entered.
    pub since: Millis,
    /// `pre_fail`: when the shutdown fires. Kept in `shutdown` for the record.
    pub deadline: Option<Millis>,
    /// `pre_fail`: the deadline the active triggers' graces set, before any
    /// prediction moved it earlier. A prediction whose projection is gone
    /// for [`PREDICTION_RELEASE`] observations gives the deadline back to
    /// this; a trigger that cleared gives it back to the remaining ones.
    pub grace_deadline: Option<Millis>,
    /// Consecutive observations in `pre_fail` without a projection while
    /// the deadline is a predicted one.
    pub no_projection: u32,
    /// Consecutive observations without any trigger (`pre_fail`), or with the
    /// local probe up (`local_fault`).
    pub good_streak: u32,
    /// Time of the last observation (bounds the wait of a recovery that is
    /// in progress when the grace ends).
    pub last_observed: Option<Millis>,
    /// This node's own probe result in the last observation (`None`: no
    /// observation yet, or no probe configured). [`Event::PeersChanged`]
    /// corroborates it with the new peer view.
    pub last_power: Option<PowerReading>,
    /// First observation of the current corroborated power loss.
    pub power_lost_since: Option<Millis>,
    /// First observation of the current cooling quorum.
    pub cooling_since: Option<Millis>,
    /// First observation of the current run of critical readings.
    pub overheat_since: Option<Millis>,
    /// After a cancel: no `pre_fail` before this time (for the triggers in
    /// [`Machine::hold_triggers`]).
    pub hold_until: Option<Millis>,
    /// The triggers an operator cancel holds: those active when the
    /// operator cancelled. `None` (files written before 0.2) holds all.
    pub hold_triggers: Option<Vec<Reason>>,
    /// A `pre_fail` restored from disk that fresh observations have not
    /// confirmed yet: its deadline is not acted on (see
    /// [`Machine::effective_deadline`]) until an observation shows its
    /// trigger still active, or until [`Machine::confirm_by`].
    pub unconfirmed: bool,
    /// With [`Machine::unconfirmed`]: act on the restored deadline anyway
    /// after this time (a restart on the same boot: one probe round).
    /// `None`: never without a confirming observation (another boot).
    pub confirm_by: Option<Millis>,
    /// In maintenance: its end.
    pub maintenance_until: Option<Millis>,
    /// The shutdown command's bookkeeping.
    pub exec: ExecRecord,
    /// The last [`PeerView::stages`] seen (module documentation,
    /// "Stages"). Forgotten on restart, like the other observations.
    pub stages: StageGate,
    /// `pre_fail`: the earliest hardware limit seen in it (battery,
    /// critical sensor, projected time to critical, each less the shutdown
    /// duration). The stage hold never passes it. Only ever moves earlier.
    pub safety_by: Option<Millis>,
    /// `pre_fail`: the deadline passed and the command is held for lower
    /// stages (announced once by a transition).
    pub stage_waiting: bool,
}

impl Machine {
    /// A fresh machine in `normal` at `now`.
    pub fn new(now: Millis) -> Machine {
        Machine {
            since: now,
            detail: "started".to_string(),
            ..Machine::default()
        }
    }

    /// The shutdown command has been started (or would have been, in dry-run).
    pub fn shutdown_issued(&self) -> bool {
        self.exec.issued
    }

    /// When a `Tick` would shut down: the deadline, or later while a
    /// recovery is in progress (the last observation was good): then the
    /// machine waits up to 1.5 observe intervals for the next observation.
    /// `None` outside `pre_fail`.
    pub fn effective_deadline(&self, cfg: &FsmConfig) -> Option<Millis> {
        if self.state != State::PreFail {
            return None;
        }
        let deadline = self.deadline?;
        if self.unconfirmed {
            // A restored decision waits for fresh observations: from another
            // boot, for one that shows its trigger; on the same boot, for one
            // probe round (then a recovery in progress continues as usual).
            match self.confirm_by {
                None => return None,
                Some(c) if self.good_streak == 0 => {
                    let at = deadline.max(c);
                    return Some(self.stage_hold_until(cfg).map_or(at, |h| at.max(h)));
                }
                Some(_) => {}
            }
        }
        let base = match self.last_observed {
            Some(last) if self.good_streak > 0 => {
                deadline.max(last.plus(cfg.observe_interval.mul_f64(1.5)))
            }
            _ => deadline,
        };
        Some(self.stage_hold_until(cfg).map_or(base, |h| base.max(h)))
    }

    /// Staged shutdown (module documentation, "Stages"): in `pre_fail` for
    /// power or cooling, while lower-stage nodes are still going down for
    /// the same trigger, the time until which the command is held:
    /// `deadline + stage_timeout`, never past [`Machine::safety_by`].
    /// `None`: no hold (nothing to wait for, overheat, a timeout of zero,
    /// or a hardware limit at or before the deadline).
    pub fn stage_hold_until(&self, cfg: &FsmConfig) -> Option<Millis> {
        if self.state != State::PreFail || cfg.stage_timeout.is_zero() {
            return None;
        }
        if self.stages.for_trigger(self.trigger).nodes == 0 {
            return None;
        }
        let deadline = self.deadline?;
        let until = deadline.plus(cfg.stage_timeout);
        let until = self.safety_by.map_or(until, |s| until.min(s));
        (until > deadline).then_some(until)
    }

    /// The next time at which a `Tick` may change the machine, if any: the
    /// effective deadline in `pre_fail`, the end of maintenance.
    pub fn next_wake(&self, cfg: &FsmConfig) -> Option<Millis> {
        match self.state {
            State::PreFail => self.effective_deadline(cfg),
            State::Maintenance => self.maintenance_until,
            _ => None,
        }
    }

    /// Forget what was derived from observations (streaks, "since" of
    /// conditions). Done when a persisted machine is loaded: those facts are
    /// stale after a restart and must be re-established by fresh probes,
    /// while the decisions (state, deadline, hold, maintenance) are kept.
    pub fn forget_observations(&mut self) {
        self.good_streak = 0;
        self.last_observed = None;
        self.last_power = None;
        self.power_lost_since = None;
        self.cooling_since = None;
        self.overheat_since = None;
        self.stages = StageGate::default();
    }
}

/// How the local power probe result reads once peers are taken into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerVerdict {
    /// No probe configured on this node.
    Unknown,
    /// The local probe round is unknown (local errors only): this node
    /// cannot tell, whatever peers say. A local fault, never a loss.
    LocalError,
    /// The local probe sees power.
    Up,
    /// Power lost: the local probe fails and peers agree, or no fresh peer
    /// reports on the target.
    Lost,
    /// The local probe fails but a strict majority of the fresh peers that
    /// report on the target see it up.
    LocalFault,
}

/// Corroborate the local probe with fresh peers' own probe results.
///
/// A failed local probe is a power loss unless a strict majority of the
/// fresh peers that report see the target up. A tie counts as a loss: half
/// the room independently seeing the target down is not a local fault, and
/// missing a real outage costs more than a false one. A local "up" is always
/// trusted: this node reached the target, so it has power. An unknown round
/// is [`PowerVerdict::LocalError`] whatever the peers say: peers that see the
/// target down corroborate nothing this node observed.
pub fn power_verdict(power: Option<PowerReading>, peers: &PeerView) -> PowerVerdict {
    match power {
        None => PowerVerdict::Unknown,
        Some(PowerReading::Unknown) => PowerVerdict::LocalError,
        Some(PowerReading::Up) => PowerVerdict::Up,
        Some(PowerReading::Down) => {
            let up = u64::from(peers.power_up);
            let votes = up + u64::from(peers.power_down);
            if votes > 0 && up * 2 > votes {
                PowerVerdict::LocalFault
            } else {
                PowerVerdict::Lost
            }
        }
    }
}

/// Nodes (self included) needed for a cooling quorum among `fresh_nodes`
/// fresh nodes (self included): a strict majority, at least `min`.
pub fn cooling_quorum(fresh_nodes: u32, min: u32) -> u32 {
    (fresh_nodes / 2 + 1).max(min)
}

/// The weighted cooling quorum: the voting weight is a strict majority of
/// the total weight (nodes voting by inlet or ambient air weigh 2, others
/// 1), and at least `min` nodes vote. Returns `(formed, weight needed)`.
pub fn weighted_quorum(
    total_weight: u32,
    voting_weight: u32,
    voting_nodes: u32,
    min: u32,
) -> (bool, u32) {
    let need = total_weight / 2 + 1;
    (voting_weight >= need && voting_nodes >= min, need)
}

/// Time left until `deadline`; zero once it passed.
pub fn remaining_grace(deadline: Millis, now: Millis) -> Duration {
    deadline.since(now)
}

/// The prediction rule. Given the current `deadline` and the projected
/// seconds to critical, the deadline it should move to, if earlier:
/// `now + max(0, ttc - shutdown_duration)`, not before `floor`. `None` when
/// there is no (finite, non-negative) projection, when the grace already
/// leaves enough time (`ttc >= remaining + shutdown_duration`), or when the
/// move would be less than [`PREDICTION_MIN_STEP`].
pub fn predicted_deadline(
    now: Millis,
    deadline: Millis,
    ttc_seconds: Option<f64>,
    shutdown_duration: Duration,
    floor: Millis,
) -> Option<Millis> {
    let ttc = ttc_seconds.filter(|t| t.is_finite() && *t >= 0.0)?;
    let ttc = Duration::from_secs_f64(ttc.min(1e9));
    if ttc >= remaining_grace(deadline, now) + shutdown_duration {
        return None;
    }
    let at = now.plus(ttc.saturating_sub(shutdown_duration)).max(floor);
    // Only moves that matter: each new reading of a steady trend shortens
    // the projection by a hair, and a transition (log line, disk write,
    // push to peers) per probe for a few milliseconds is noise.
    (at <= deadline.minus(PREDICTION_MIN_STEP)).then_some(at)
}

/// The smallest move of a deadline the prediction makes (see
/// [`predicted_deadline`]).
pub const PREDICTION_MIN_STEP: Duration = Duration::from_secs(1);

/// Observations in a row without a projection after which a predicted
/// deadline goes back to the triggers' grace (see `Step::release`).
pub const PREDICTION_RELEASE: u32 = 3;

/// One trigger that is currently active.
#[derive(Debug, Clone)]
struct Trigger {
    reason: Reason,
    /// When it became active (for overheat: end of the sustain period).
    active_since: Millis,
    detail: String,
}

/// Working state of one step: the machine being built and its actions.
struct Step<'a> {
    m: Machine,
    out: Vec<Action>,
    now: Millis,
    cfg: &'a FsmConfig,
    shutdown: bool,
}

impl Step<'_> {
    fn go(&mut self, to: State, reason: Reason, detail: String) {
        let from = self.m.state;
        if from != to {
            self.m.since = self.now;
            self.m.good_streak = 0;
        }
        if !matches!(to, State::PreFail | State::Shutdown) {
            self.m.deadline = None;
            self.m.grace_deadline = None;
            self.m.no_projection = 0;
            self.m.trigger = Reason::None;
            self.m.safety_by = None;
        }
        if to != State::PreFail {
            self.m.stage_waiting = false;
            self.m.unconfirmed = false;
            self.m.confirm_by = None;
        }
        if to != State::Maintenance {
            self.m.maintenance_until = None;
        }
        if to == State::Shutdown {
            self.shutdown = true;
        }
        self.m.state = to;
        self.m.reason = reason;
        self.m.detail = detail.clone();
        self.out.push(Action::Transition {
            from,
            to,
            reason,
            detail,
        });
    }

    /// Is an operator cancel holding `trigger` off?
    fn held(&self, trigger: Reason) -> bool {
        self.m.hold_until.is_some_and(|h| self.now < h)
            && self
                .m
                .hold_triggers
                .as_ref()
                .is_none_or(|ts| ts.contains(&trigger))
    }

    /// The triggers not held by an operator cancel.
    fn unheld(&self, triggers: &[Trigger]) -> Vec<Trigger> {
        triggers
            .iter()
            .filter(|t| !self.held(t.reason))
            .cloned()
            .collect()
    }

    fn enter_shutdown(&mut self, why: &str) {
        let deadline = self
            .m
            .deadline
            .map_or_else(|| "none".to_string(), |d| d.to_string());
        let reason = self.m.reason;
        let stage = if self.m.stage_waiting {
            let left = self.m.stages.for_trigger(self.m.trigger).nodes;
            let timeout_at = self.m.deadline.map(|d| d.plus(self.cfg.stage_timeout));
            if left == 0 {
                "; the lower stages finished their shutdown".to_string()
            } else if timeout_at.is_some_and(|t| self.now >= t) {
                format!(
                    "; stage timeout {} expired with {left} lower-stage node(s) still going down",
                    human(self.cfg.stage_timeout)
                )
            } else {
                format!(
                    "; a battery or temperature limit ends the wait for {left} lower-stage node(s)"
                )
            }
        } else {
            String::new()
        };
        self.go(
            State::Shutdown,
            reason,
            format!("{why} (deadline {deadline}, reason {reason}){stage}"),
        );
    }

    /// The hardware limits of the stage hold (module documentation,
    /// "Stages"): in `pre_fail`, the earliest of a sensor at critical
    /// (now), the projected time to critical (if the prediction is on) and
    /// a UPS on battery during a power loss (now if low battery, else its
    /// runtime), each less the shutdown duration.
    fn safety(&mut self, input: &Input) {
        if self.m.state != State::PreFail {
            return;
        }
        let now = self.now;
        let sd = self.cfg.shutdown_duration;
        let mut limits = Vec::new();
        if input.thermal.critical {
            limits.push(now);
        }
        if self.cfg.prediction {
            if let Some(ttc) = input
                .thermal
                .time_to_critical_seconds
                .filter(|t| t.is_finite() && *t >= 0.0)
            {
                limits.push(now.plus(Duration::from_secs_f64(ttc.min(1e9)).saturating_sub(sd)));
            }
        }
        if self.m.power_lost_since.is_some() {
            match input.battery {
                Some(Battery { urgent: true, .. }) => limits.push(now),
                Some(Battery {
                    runtime: Some(r), ..
                }) => limits.push(now.plus(r.saturating_sub(sd))),
                _ => {}
            }
        }
        for at in limits {
            self.m.safety_by = Some(self.m.safety_by.map_or(at, |s| s.min(at)));
        }
    }

    /// In `pre_fail`: shut down once the effective deadline (stage hold
    /// included) passed; if only the stage hold keeps the command back,
    /// say so once.
    fn due(&mut self, why: &str) {
        if self.m.state != State::PreFail {
            return;
        }
        if self
            .m
            .effective_deadline(self.cfg)
            .is_some_and(|d| self.now >= d)
        {
            self.enter_shutdown(why);
            return;
        }
        self.announce_hold();
    }

    /// The deadline passed and lower stages are still going down: one
    /// transition (journal, log, peers) that says what this node waits for.
    fn announce_hold(&mut self) {
        if self.m.stage_waiting || self.m.unconfirmed {
            return;
        }
        let (Some(deadline), Some(until)) = (self.m.deadline, self.m.stage_hold_until(self.cfg))
        else {
            return;
        };
        if self.now < deadline {
            return;
        }
        let p = self.m.stages.for_trigger(self.m.trigger);
        self.m.stage_waiting = true;
        let detail = format!(
            "deadline {deadline} reached; holding the shutdown command for {} lower-stage node(s) still going down for {} (lowest stage {}), at most until {until}",
            p.nodes,
            self.m.trigger,
            p.lowest_stage.map_or_else(|| "?".to_string(), |s| s.to_string()),
        );
        let reason = self.m.reason;
        self.go(State::PreFail, reason, detail);
    }

    /// `pre_fail` from another state: deadline = now + the shortest grace
    /// among the active triggers.
    fn enter_pre_fail(&mut self, triggers: &[Trigger], thermal: &ThermalSummary) {
        let Some(first) = triggers.iter().min_by_key(|t| self.cfg.grace(t.reason)) else {
            return;
        };
        let grace = self.cfg.grace(first.reason);
        let deadline = self.now.plus(grace);
        self.m.deadline = Some(deadline);
        self.m.grace_deadline = Some(deadline);
        self.m.no_projection = 0;
        self.m.trigger = first.reason;
        let detail = format!(
            "{}; grace {}, shutdown at {deadline}",
            first.detail,
            human(grace)
        );
        self.go(State::PreFail, first.reason, detail);
        self.predict(thermal);
    }

    /// In `pre_fail`, a trigger that became active later may bring the
    /// deadline forward (never back).
    fn tighten(&mut self, triggers: &[Trigger]) {
        for t in triggers {
            let Some(current) = self.m.deadline else {
                return;
            };
            let candidate = t
                .active_since
                .max(self.m.since)
                .plus(self.cfg.grace(t.reason));
            self.m.grace_deadline = Some(
                self.m
                    .grace_deadline
                    .map_or(candidate, |g| g.min(candidate)),
            );
            if candidate < current {
                self.m.deadline = Some(candidate);
                self.m.trigger = t.reason;
                let detail = format!(
                    "{}; its grace {} ends before the current deadline: shutdown moved from {current} to {candidate}",
                    t.detail,
                    human(self.cfg.grace(t.reason))
                );
                self.go(State::PreFail, t.reason, detail);
            }
        }
    }

    /// In `pre_fail`, give back a deadline whose reason is gone:
    /// - the trigger whose grace set it cleared while others hold `pre_fail`:
    ///   the deadline becomes the remaining triggers' own (possibly later);
    /// - a prediction moved it and there has been no projection for
    ///   [`PREDICTION_RELEASE`] observations in a row (the temperatures
    ///   stopped rising): back to the triggers' grace deadline.
    ///
    /// "A deadline never moves later" protects a due shutdown from noise;
    /// it must not keep a shutdown whose evidence is gone (a chiller restart
    /// that pulled the deadline of a short mains outage in, then stopped).
    fn release(&mut self, before: &Machine, triggers: &[Trigger], thermal: &ThermalSummary) {
        let Some(current) = self.m.deadline else {
            return;
        };
        if !triggers.iter().any(|t| t.reason == before.trigger) {
            let Some(first) = triggers.iter().min_by_key(|t| {
                t.active_since
                    .max(self.m.since)
                    .plus(self.cfg.grace(t.reason))
            }) else {
                return;
            };
            let at = first
                .active_since
                .max(self.m.since)
                .plus(self.cfg.grace(first.reason));
            self.m.deadline = Some(at);
            self.m.grace_deadline = Some(at);
            self.m.no_projection = 0;
            self.m.trigger = first.reason;
            let detail = format!(
                "{} cleared; {} still holds: shutdown at {at} (was {current}); {}",
                before.trigger, first.reason, first.detail
            );
            self.go(State::PreFail, first.reason, detail);
            return;
        }
        let Some(grace_at) = self.m.grace_deadline else {
            return;
        };
        if current >= grace_at {
            self.m.no_projection = 0;
            return;
        }
        if thermal.time_to_critical_seconds.is_some() {
            self.m.no_projection = 0;
            return;
        }
        self.m.no_projection = self.m.no_projection.saturating_add(1);
        if self.m.no_projection >= PREDICTION_RELEASE {
            self.m.deadline = Some(grace_at);
            self.m.no_projection = 0;
            let trigger = self.m.trigger;
            let detail = format!(
                "no projection to critical for {PREDICTION_RELEASE} observations (the temperatures stopped rising): shutdown back at the {trigger} grace, {grace_at} (was {current})"
            );
            self.go(State::PreFail, trigger, detail);
        }
    }

    /// The battery rule (module documentation, "Battery"): with the power
    /// trigger active in `pre_fail`, the UPS's runtime less the shutdown
    /// duration (now, if urgent) bounds the deadline, not before the floor.
    fn battery(&mut self, battery: Option<&Battery>) {
        let Some(b) = battery else {
            return;
        };
        if self.m.state != State::PreFail
            || self.m.power_lost_since.is_none()
            || self.held(Reason::Power)
        {
            return;
        }
        let Some(current) = self.m.deadline else {
            return;
        };
        let (at, why) = if b.urgent {
            (
                self.now,
                "UPS on battery says low battery or forced shutdown".to_string(),
            )
        } else if let Some(runtime) = b.runtime {
            (
                self.now
                    .plus(runtime.saturating_sub(self.cfg.shutdown_duration)),
                format!(
                    "UPS battery runtime {} - shutdown duration {}",
                    human(runtime),
                    human(self.cfg.shutdown_duration)
                ),
            )
        } else {
            return;
        };
        let at = at.max(self.m.since.plus(self.cfg.prediction_floor));
        // The power trigger's own deadline: a prediction that lets go
        // comes back here, not to the longer grace.
        self.m.grace_deadline = Some(self.m.grace_deadline.map_or(at, |g| g.min(at)));
        // As for the prediction: a runtime that ticks down by a second per
        // second is not a new decision each probe.
        if at <= current.minus(PREDICTION_MIN_STEP) {
            self.m.deadline = Some(at);
            let detail = format!("{why}: shutdown moved from {current} to {at}");
            self.go(State::PreFail, Reason::Power, detail);
        }
    }

    fn predict(&mut self, thermal: &ThermalSummary) {
        if !self.cfg.prediction
            || self.m.state != State::PreFail
            || self.m.trigger == Reason::Overheat
        {
            return;
        }
        let Some(current) = self.m.deadline else {
            return;
        };
        let floor = self.m.since.plus(self.cfg.prediction_floor);
        let ttc = thermal.time_to_critical_seconds;
        if let Some(at) =
            predicted_deadline(self.now, current, ttc, self.cfg.shutdown_duration, floor)
        {
            self.m.deadline = Some(at);
            let detail = format!(
                "time to critical {:.0}s < remaining grace {} + shutdown duration {}: shutdown moved from {current} to {at}",
                ttc.unwrap_or_default(),
                human(remaining_grace(current, self.now)),
                human(self.cfg.shutdown_duration),
            );
            self.go(State::PreFail, Reason::Prediction, detail);
        }
    }

    /// A restored `pre_fail` meets its first fresh observation. Its own
    /// trigger still active: confirmed, the restored deadline stands. Only
    /// other triggers active: a new `pre_fail` with their own grace from
    /// now. No trigger: stays unconfirmed while the recovery streak counts.
    fn confirm_restored(&mut self, triggers: &[Trigger], thermal: &ThermalSummary) {
        let restored = self.m.trigger;
        if triggers.iter().any(|t| t.reason == restored) {
            self.m.unconfirmed = false;
            self.m.confirm_by = None;
            let detail = format!(
                "restored pre_fail ({restored}) confirmed by a fresh observation; shutdown at {}",
                self.m
                    .deadline
                    .map_or_else(|| "none".to_string(), |d| d.to_string())
            );
            self.go(State::PreFail, self.m.reason, detail);
        } else if !triggers.is_empty() {
            self.m.unconfirmed = false;
            self.m.confirm_by = None;
            self.m.deadline = None;
            self.enter_pre_fail(triggers, thermal);
        }
    }

    fn end_maintenance_if_due(&mut self) {
        if self.m.state == State::Maintenance
            && self.m.maintenance_until.is_none_or(|u| self.now >= u)
        {
            self.go(
                State::Normal,
                Reason::Operator,
                "maintenance window ended".to_string(),
            );
        }
    }

    fn tick(&mut self) {
        self.end_maintenance_if_due();
        self.due("grace expired without recovery");
    }

    fn observe(&mut self, input: &Input) {
        let now = self.now;
        let cfg = self.cfg;
        let verdict = power_verdict(input.power, &input.peers);
        let peers = &input.peers;
        let nodes = peers.fresh_peers.saturating_add(1);
        let self_hot = cfg.is_heating(&input.thermal);
        let hot = peers
            .overheating
            .min(peers.fresh_peers)
            .saturating_add(u32::from(self_hot));
        let self_weight = if input.thermal.air { 2 } else { 1 };
        let (peer_weight, peer_hot_weight) = peers.weights();
        let (cooling, quorum) = weighted_quorum(
            peer_weight.saturating_add(self_weight),
            peer_hot_weight.saturating_add(if self_hot { self_weight } else { 0 }),
            hot,
            cfg.cooling_quorum_min,
        );

        track(
            &mut self.m.power_lost_since,
            verdict == PowerVerdict::Lost,
            now,
        );
        track(&mut self.m.cooling_since, cooling, now);
        track(&mut self.m.overheat_since, input.thermal.critical, now);
        if self.m.hold_until.is_some_and(|h| now >= h) {
            self.m.hold_until = None;
            self.m.hold_triggers = None;
        }

        self.m.last_power = input.power;
        let mut triggers = Vec::new();
        if let Some(since) = self.m.power_lost_since {
            triggers.push(power_trigger(since, peers, ""));
        }
        if let Some(since) = self.m.cooling_since {
            let detail = format!(
                "cooling lost: {hot} of {nodes} fresh nodes (self {}) overheating or heating steadily, quorum weight {quorum}",
                if self_hot { "included" } else { "not hot" }
            );
            triggers.push(Trigger {
                reason: Reason::Cooling,
                active_since: since,
                detail,
            });
        }
        if let Some(since) = self.m.overheat_since {
            let active = since.plus(cfg.overheat_sustain);
            if now >= active {
                let detail = format!(
                    "overheat: a sensor at or above critical since {since} (sustain {}), hottest {}",
                    human(cfg.overheat_sustain),
                    input.thermal.hottest_celsius.map_or_else(|| "unknown".to_string(), |c| format!("{c:.1} C")),
                );
                triggers.push(Trigger {
                    reason: Reason::Overheat,
                    active_since: active,
                    detail,
                });
            }
        }

        self.end_maintenance_if_due();
        self.m.stages = input.peers.stages;
        if self.m.state == State::PreFail && self.m.unconfirmed {
            self.confirm_restored(&triggers, &input.thermal);
        }
        let before = self.m.clone();
        let unheld = self.unheld(&triggers);
        match self.m.state {
            State::Shutdown | State::Maintenance => {}
            State::Normal => {
                if !unheld.is_empty() {
                    self.enter_pre_fail(&unheld, &input.thermal);
                    self.battery(input.battery.as_ref());
                } else if matches!(verdict, PowerVerdict::LocalFault | PowerVerdict::LocalError) {
                    self.go(
                        State::LocalFault,
                        Reason::Power,
                        local_fault_detail(verdict, peers),
                    );
                }
            }
            State::LocalFault => {
                if !unheld.is_empty() {
                    self.enter_pre_fail(&unheld, &input.thermal);
                    self.battery(input.battery.as_ref());
                } else if matches!(verdict, PowerVerdict::Up | PowerVerdict::Unknown) {
                    self.m.good_streak = self.m.good_streak.saturating_add(1);
                    if self.m.good_streak >= cfg.recovery_probes {
                        let detail = format!(
                            "local probe recovered: {} consecutive good probes",
                            self.m.good_streak
                        );
                        self.go(State::Normal, Reason::Power, detail);
                    }
                } else {
                    self.m.good_streak = 0;
                }
            }
            State::PreFail => {
                // A deadline that passed with no recovery in progress is
                // final: recovery must happen before the grace ends.
                if before.effective_deadline(cfg).is_some_and(|d| now >= d) {
                    self.enter_shutdown("grace expired without recovery");
                } else if triggers.is_empty()
                    && verdict == PowerVerdict::LocalError
                    && before.trigger == Reason::Power
                {
                    // Waiting out a power loss, this node cannot see the
                    // target any more: that is no sign that mains is back.
                    // The streak must be consecutive good probes, so it
                    // restarts (and the deadline stays where it is).
                    self.m.good_streak = 0;
                } else if triggers.is_empty() {
                    self.m.good_streak = self.m.good_streak.saturating_add(1);
                    if self.m.good_streak >= cfg.recovery_probes {
                        let (to, reason, detail) = if matches!(
                            verdict,
                            PowerVerdict::LocalFault | PowerVerdict::LocalError
                        ) {
                            (
                                State::LocalFault,
                                Reason::Power,
                                local_fault_detail(verdict, peers),
                            )
                        } else {
                            let what = before.trigger;
                            let detail = format!(
                                "recovered from {what}: {} consecutive observations without a trigger",
                                self.m.good_streak
                            );
                            (State::Normal, what, detail)
                        };
                        self.go(to, reason, detail);
                    } else {
                        self.predict(&input.thermal);
                    }
                } else {
                    self.m.good_streak = 0;
                    self.release(&before, &triggers, &input.thermal);
                    self.tighten(&triggers);
                    self.battery(input.battery.as_ref());
                    self.predict(&input.thermal);
                }
            }
        }
        self.m.last_observed = Some(now);
        self.safety(input);
        // The prediction can pull the deadline to "now" (the stage hold,
        // if any, is bounded by the same limits through `safety_by`).
        if self.m.state == State::PreFail
            && self.m.good_streak == 0
            && !self.m.unconfirmed
            && self.m.deadline.is_some_and(|d| now >= d)
            && self.m.stage_hold_until(cfg).is_none_or(|h| now >= h)
        {
            self.enter_shutdown(
                "the deadline a prediction or the UPS battery set leaves no time to wait",
            );
        }
        if self.m.state == State::PreFail && self.m.good_streak == 0 {
            self.announce_hold();
        }
    }

    /// [`Event::PeersChanged`]: the same power corroboration as an
    /// observation, with the last own probe result. Only ever moves toward
    /// `pre_fail`; see the module documentation.
    fn peers_changed(&mut self, peers: &PeerView) {
        if matches!(self.m.state, State::Shutdown | State::Maintenance) {
            return;
        }
        // Lower stages that finished release a held command: the new
        // effective deadline is in the past, and the supervisor's next tick
        // (it sleeps until `next_wake`) shuts down at once. As for every
        // peer change, the shutdown itself is left to the tick.
        self.m.stages = peers.stages;
        let Some(power) = self.m.last_power else {
            return;
        };
        let lost = power_verdict(Some(power), peers) == PowerVerdict::Lost;
        track(&mut self.m.power_lost_since, lost, self.now);
        let Some(since) = self.m.power_lost_since else {
            return;
        };
        let trigger = power_trigger(since, peers, " (peer view changed)");
        match self.m.state {
            State::Normal | State::LocalFault if !self.held(Reason::Power) => {
                // No thermal data comes with a peer change: the prediction
                // (if any) applies at the next observation.
                self.enter_pre_fail(&[trigger], &ThermalSummary::default());
            }
            State::PreFail => {
                // A corroborated loss again: a recovery in progress is
                // broken, as it would be by an observation.
                self.m.good_streak = 0;
                self.tighten(&[trigger]);
            }
            _ => {}
        }
    }

    fn cancel(&mut self) {
        if self.m.state != State::PreFail {
            return;
        }
        let hold = self.now.plus(self.cfg.cancel_hold);
        // Hold the trigger that started this pre_fail and those active now;
        // another trigger that fires later starts its own grace.
        let mut held = vec![self.m.trigger];
        for (r, since) in [
            (Reason::Power, self.m.power_lost_since),
            (Reason::Cooling, self.m.cooling_since),
            (Reason::Overheat, self.m.overheat_since),
        ] {
            if since.is_some() && !held.contains(&r) {
                held.push(r);
            }
        }
        let names: Vec<&str> = held.iter().map(|r| r.as_str()).collect();
        let detail = format!(
            "operator cancelled the pending shutdown ({}, due {}); no pre_fail for {} before {hold}",
            self.m.reason,
            self.m
                .deadline
                .map_or_else(|| "none".to_string(), |d| d.to_string()),
            names.join(", "),
        );
        self.m.hold_until = Some(hold);
        self.m.hold_triggers = Some(held);
        self.m.unconfirmed = false;
        self.m.confirm_by = None;
        self.go(State::Normal, Reason::Operator, detail);
    }

    fn maintenance(&mut self, until: Millis) {
        if self.m.state == State::Shutdown || until <= self.now {
            return;
        }
        let detail = match self.m.state {
            State::Maintenance => format!(
                "maintenance changed to end at {until} (was {})",
                self.m
                    .maintenance_until
                    .map_or_else(|| "none".to_string(), |u| u.to_string())
            ),
            State::PreFail => format!(
                "maintenance until {until}; pending shutdown ({}, due {}) held",
                self.m.reason,
                self.m
                    .deadline
                    .map_or_else(|| "none".to_string(), |d| d.to_string())
            ),
            other => format!("maintenance until {until} (was {other})"),
        };
        self.go(State::Maintenance, Reason::Operator, detail);
        self.m.maintenance_until = Some(until);
    }

    fn end_maintenance(&mut self) {
        if self.m.state == State::Maintenance {
            self.go(
                State::Normal,
                Reason::Operator,
                "maintenance ended by operator".to_string(),
            );
        }
    }
}

fn local_fault_detail(verdict: PowerVerdict, peers: &PeerView) -> String {
    if verdict == PowerVerdict::LocalError {
        return "local power probes failed on this node (local error, e.g. no file descriptor left) or the UPS gave no reading (upsd down, stale data, access denied): result unknown, not a vote; local fault, no shutdown".to_string();
    }
    format!(
        "local probe failed but fresh peers see the target up ({} up / {} down): local fault, no shutdown",
        peers.power_up, peers.power_down
    )
}

/// The power trigger, active since `since`, with the peers' numbers.
fn power_trigger(since: Millis, peers: &PeerView, suffix: &str) -> Trigger {
    let detail = if peers.power_up == 0 && peers.power_down == 0 {
        format!("power lost: local probe failed and no fresh peer reports on the target (trusting the local probe){suffix}")
    } else {
        format!(
            "power lost: local probe failed, fresh peers {} down / {} up{suffix}",
            peers.power_down, peers.power_up
        )
    };
    Trigger {
        reason: Reason::Power,
        active_since: since,
        detail,
    }
}

/// Keep the first time a condition was seen; forget it when it clears.
fn track(since: &mut Option<Millis>, active: bool, now: Millis) {
    if active {
        since.get_or_insert(now);
    } else {
        *since = None;
    }
}

/// Apply one event at wall-clock time `now`.
///
/// Returns the new machine and the actions to carry out in order. Any
/// transition is followed by `Persist` and `NotifyPeers`; entering
/// `shutdown` adds `RunPreCommand` and `RunShutdown` last. `shutdown` is
/// terminal: every event is ignored there.
pub fn step(m: &Machine, ev: &Event, now: Millis, cfg: &FsmConfig) -> (Machine, Vec<Action>) {
    if m.state == State::Shutdown {
        return (m.clone(), Vec::new());
    }
    let mut s = Step {
        m: m.clone(),
        out: Vec::new(),
        now,
        cfg,
        shutdown: false,
    };
    match ev {
        Event::Observe(input) => s.observe(input),
        Event::PeersChanged(peers) => s.peers_changed(peers),
        Event::Tick => s.tick(),
        Event::Cancel => s.cancel(),
        Event::Maintenance { until } => s.maintenance(*until),
        Event::MaintenanceFor { duration } => {
            if !duration.is_zero() {
                s.maintenance(now.plus(*duration));
            }
        }
        Event::EndMaintenance => s.end_maintenance(),
    }
    if !s.out.is_empty() {
        s.out.push(Action::Persist);
        s.out.push(Action::NotifyPeers);
    }
    if s.shutdown {
        s.out.push(Action::RunPreCommand);
        s.out.push(Action::RunShutdown);
    }
    (s.m, s.out)
}

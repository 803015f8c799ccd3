//! The snapshot: everything the exporter may show, as plain data.
//!
//! The agent builds a new `Snapshot` whenever something changes and publishes
//! it through a `tokio::sync::watch` channel; the exporter only reads it. No
//! scrape ever touches a sensor, a probe or the network.

use serde::{Deserialize, Serialize};

/// State names of the shutdown state machine, in exposition order.
pub const FSM_STATES: [&str; 5] = [
    "normal",
    "pre_fail",
    "shutdown",
    "local_fault",
    "maintenance",
];
/// Reasons a state can have, in exposition order.
pub const FSM_REASONS: [&str; 6] = [
    "none",
    "power",
    "cooling",
    "overheat",
    "prediction",
    "operator",
];
/// Peer liveness states, in exposition order.
pub const PEER_STATES: [&str; 3] = ["alive", "suspect", "dead"];

/// What a sensor measures, for the cooling detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A chip's own temperature (CPU, DIMM, NVMe, NIC): follows the workload.
    #[default]
    Component,
    /// Air entering the server (BMC "Inlet Temp"): follows the cooling.
    Inlet,
    /// Room or board ambient: follows the cooling.
    Ambient,
    /// Air leaving the server: follows both; counted as a component.
    Exhaust,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Component, Role::Inlet, Role::Ambient, Role::Exhaust];

    /// The config and label name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Component => "component",
            Role::Inlet => "inlet",
            Role::Ambient => "ambient",
            Role::Exhaust => "exhaust",
        }
    }

    /// Does this sensor follow the cooling rather than the workload?
    pub const fn is_air(self) -> bool {
        matches!(self, Role::Inlet | Role::Ambient)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (component, inlet, ambient or exhaust)"))
    }
}

/// Plausible temperatures, in degrees Celsius. Anything outside is a broken
/// sensor or a sentinel (an NVMe "high" of 65261.8, a -273 "no sensor"), and
/// is ignored rather than trusted.
pub const PLAUSIBLE_MIN_C: f64 = -40.0;
/// Upper end of the plausible range, see [`PLAUSIBLE_MIN_C`].
pub const PLAUSIBLE_MAX_C: f64 = 200.0;

/// Is `c` a temperature a real sensor could report?
pub fn plausible(c: f64) -> bool {
    c.is_finite() && (PLAUSIBLE_MIN_C..=PLAUSIBLE_MAX_C).contains(&c)
}

/// One temperature sensor, as read by a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Stable chip id, e.g. `platform_coretemp_0` (hwmon naming follows
    /// node_exporter so that dashboards line up).
    pub chip: String,
    /// Sensor id within the chip, e.g. `temp1`.
    pub sensor: String,
    /// Human label, e.g. `Core 0`, when the hardware provides one.
    pub label: Option<String>,
    /// Current value in degrees Celsius.
    pub celsius: f64,
    /// The chip's "high"/max threshold, if known and plausible.
    pub max_celsius: Option<f64>,
    /// The chip's critical threshold, if known and plausible.
    pub critical_celsius: Option<f64>,
    /// Name of the source that produced it (`hwmon`, `thermal_zone`, ...).
    pub source: String,
    /// What the sensor measures (component, inlet or ambient air), set by
    /// the agent's sampler from `[[sensors.roles]]` and its defaults.
    #[serde(default)]
    pub role: Role,
}

impl Reading {
    /// A reading with only the mandatory fields.
    pub fn new(
        chip: impl Into<String>,
        sensor: impl Into<String>,
        celsius: f64,
        source: &str,
    ) -> Self {
        Reading {
            chip: chip.into(),
            sensor: sensor.into(),
            label: None,
            celsius,
            max_celsius: None,
            critical_celsius: None,
            source: source.to_string(),
            role: Role::default(),
        }
    }

    /// Apply the plausibility rule: an implausible current value drops the
    /// whole reading (`None`); an implausible threshold drops only that
    /// threshold.
    pub fn sanitized(mut self) -> Option<Self> {
        if !plausible(self.celsius) {
            return None;
        }
        self.max_celsius = self.max_celsius.filter(|v| plausible(*v));
        self.critical_celsius = self.critical_celsius.filter(|v| plausible(*v));
        Some(self)
    }

    /// Degrees left before critical, if the critical threshold is known.
    pub fn headroom(&self) -> Option<f64> {
        self.critical_celsius.map(|c| c - self.celsius)
    }

    /// At or above the critical threshold.
    pub fn is_critical(&self) -> bool {
        self.critical_celsius.is_some_and(|c| self.celsius >= c)
    }
}

/// Health of one thermal source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Source name (`hwmon`, ...).
    pub name: String,
    /// Last read succeeded.
    pub up: bool,
    /// Duration of the last read.
    pub duration_seconds: f64,
    /// Readings from the last successful read.
    pub readings: usize,
    /// Error of the last read, if it failed.
    pub error: Option<String>,
    /// Unix ms of the last read.
    pub last_read_ms: u64,
}

/// The thermal summary of one node, as shared with peers and exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ThermalSummary {
    /// Hottest plausible sensor, degrees Celsius.
    pub hottest_celsius: Option<f64>,
    /// Minimum over sensors of (critical - current).
    pub headroom_celsius: Option<f64>,
    /// Slope of the hottest temperature over the trend window, C/min.
    pub trend_celsius_per_minute: Option<f64>,
    /// Projected seconds until the headroom is used up, while rising.
    pub time_to_critical_seconds: Option<f64>,
    /// Some sensor is at or above its critical threshold right now.
    pub critical: bool,
    /// This node votes "cooling lost" in the cooling quorum: a sustained
    /// rise not explained by its workload (the agent's cooling detector).
    #[serde(default)]
    pub cooling_vote: bool,
    /// The node has inlet or ambient sensors and votes by them (double
    /// weight in the quorum).
    #[serde(default)]
    pub air: bool,
    /// The component rise is attributed to a recent CPU load step.
    #[serde(default)]
    pub workload: bool,
    /// CPU load (0..1) in the last round, if known.
    #[serde(default)]
    pub load: Option<f64>,
}

/// The state machine as seen from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsmView {
    /// One of [`FSM_STATES`].
    pub state: String,
    /// One of [`FSM_REASONS`].
    pub reason: String,
    /// Human detail of the last transition.
    pub detail: String,
    /// Unix ms of entering the state.
    pub since_ms: u64,
    /// Unix ms at which a pending shutdown fires.
    pub deadline_ms: Option<u64>,
    /// Unix ms until which maintenance holds shutdowns.
    pub maintenance_until_ms: Option<u64>,
    /// The shutdown command has been run (or logged, in dry-run).
    pub executed: bool,
    /// Dry-run mode: commands are logged, not run.
    pub dry_run: bool,
    /// Staged shutdown: this node's stage and what it waits for.
    #[serde(default)]
    pub stage: StageView,
}

/// Staged shutdown as this node sees it (`shutdown.stage`): a node of a
/// stage above 0 holds a due shutdown command while lower-stage nodes are
/// still going down for the same trigger, up to `shutdown.stage_timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageView {
    /// This node's shutdown stage (0 = first to go down).
    pub stage: u32,
    /// The deadline passed and the command is held for lower stages.
    pub waiting: bool,
    /// In `pre_fail`: alive lower-stage nodes still going down for this
    /// node's trigger.
    pub lower_pending: u32,
    /// The lowest stage among them (the one going down now).
    pub waiting_for_stage: Option<u32>,
    /// Unix ms until which the command is held at most (the stage
    /// timeout after the deadline, or an earlier battery or temperature
    /// limit); `None` when nothing is held.
    pub hold_until_ms: Option<u64>,
}

impl Default for FsmView {
    fn default() -> Self {
        FsmView {
            state: "normal".into(),
            reason: "none".into(),
            detail: String::new(),
            since_ms: 0,
            deadline_ms: None,
            maintenance_until_ms: None,
            executed: false,
            dry_run: false,
            stage: StageView::default(),
        }
    }
}

/// Last probe result of one power target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// The target as configured (`tcp://10.0.0.253:22`).
    pub target: String,
    /// Probe succeeded.
    pub up: bool,
    /// The probe failed on the agent's own host (e.g. no file descriptor
    /// left): the result says nothing about the target and is not a vote.
    #[serde(default)]
    pub unknown: bool,
    /// Probe latency.
    pub duration_seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// Power observation of this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PowerView {
    /// `any`, `all` or `majority`.
    pub policy: String,
    /// Policy result over the known target results; `None` before the first
    /// round, with no targets, or when every result is unknown.
    pub up: Option<bool>,
    /// Per target.
    pub targets: Vec<TargetStatus>,
    /// Unix ms of the last round.
    pub at_ms: u64,
}

/// One peer as this node knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Node name.
    pub node: String,
    /// libp2p PeerId.
    pub peer_id: String,
    /// `alive`, `suspect` or `dead`.
    pub liveness: String,
    /// Unix ms when its record last advanced.
    pub last_seen_ms: u64,
    /// Its record version.
    pub version: u64,
    /// Its thermal summary.
    pub thermal: ThermalSummary,
    /// Its power policy result.
    pub power_up: Option<bool>,
    /// Its state machine state.
    pub state: String,
    /// Its state machine reason.
    pub reason: String,
    /// Its pending shutdown deadline.
    pub deadline_ms: Option<u64>,
    /// Too old to be trusted for decisions.
    pub stale: bool,
    /// Its shutdown stage (record key 13; 0 from older agents).
    #[serde(default)]
    pub stage: u32,
}

/// Votes about one power target: the state machine's voters (alive,
/// directly connected, one per host address; with a roster, every alive
/// member) that probe it, and this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerVote {
    /// Target as configured.
    pub target: String,
    /// Nodes (self included) that see it up.
    pub up: u32,
    /// Nodes (self included) that see it down.
    pub down: u32,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Known peers (not including this node).
    pub peers: Vec<PeerStatus>,
    /// Votes per power target.
    pub power_votes: Vec<PowerVote>,
    /// Nodes voting "cooling lost" (a sensor at critical, or heating
    /// steadily) among the state machine's voters, this node included.
    pub overheating: u32,
    /// Nodes needed for the cooling quorum: the state machine's, a strict
    /// majority of its voters and this node, at least `cooling_quorum_min`.
    pub quorum: u32,
}

/// One CRDT counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterStatus {
    /// Counter name.
    pub name: String,
    /// Cluster-wide value.
    pub value: i64,
    /// This node's slot.
    pub local: i64,
}

/// Everything at one point in time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Node name.
    pub node: String,
    /// This node's PeerId, once the cluster runs.
    pub peer_id: String,
    /// Unix ms this snapshot was built.
    pub updated_ms: u64,
    /// The first sensor round has completed.
    pub ready: bool,
    /// All plausible readings.
    pub readings: Vec<Reading>,
    /// Per-source health.
    pub sources: Vec<SourceStatus>,
    /// Thermal summary.
    pub thermal: ThermalSummary,
    /// State machine.
    pub fsm: FsmView,
    /// Power observation.
    pub power: PowerView,
    /// Cluster view.
    pub cluster: ClusterStatus,
    /// Counters.
    pub counters: Vec<CounterStatus>,
    /// The room roster (`GET /v1/roster`); `None` without
    /// `cluster.operator_key`. Not part of `/v1/state` (it can list
    /// thousands of members).
    #[serde(skip)]
    pub roster: Option<RosterStatus>,
    /// Every member the cluster layer holds, this node first, with the
    /// HTTP address it publishes (`GET /v1/http_sd`). Not part of
    /// `/v1/state`: `/v1/peers` already lists the members.
    #[serde(skip)]
    pub sd_members: Vec<SdMember>,
}

/// One member as `GET /v1/http_sd` lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SdMember {
    /// Node name.
    pub node: String,
    /// libp2p PeerId.
    pub peer_id: String,
    /// The HTTP address it publishes (`host:port`); `None` for agents that
    /// publish none.
    pub http: Option<String>,
}

/// The room roster as this node holds it, and who waits to be added.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RosterStatus {
    /// The cluster (room) name the roster is for.
    pub cluster: String,
    /// The operator's public key this node trusts (`cluster.operator_key`).
    pub operator_key: String,
    /// Roster version; 0 while none is known.
    pub version: u64,
    /// When the operator signed it (unix ms; 0 while none is known).
    pub issued_ms: u64,
    /// Whether this node is a member (false while none is known).
    pub self_member: bool,
    /// Members, with what this node knows of them.
    pub members: Vec<RosterMember>,
    /// Identities outside the roster that contacted this node directly.
    pub pending: Vec<RosterCandidate>,
    /// The signed roster, base64 (what `coolmesh roster add` extends).
    pub signed: String,
}

/// One roster member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RosterMember {
    /// PeerId.
    pub peer_id: String,
    /// Node name from its record, if this node holds one.
    pub node: Option<String>,
    /// `alive`, `suspect`, `dead`, or `unknown` (no record held); `self`
    /// for this node.
    pub liveness: String,
}

/// An identity waiting outside the roster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RosterCandidate {
    /// PeerId.
    pub peer_id: String,
    /// The node name its own signed record claims (unverified by the
    /// operator: check before adding).
    pub node: Option<String>,
    /// The address it connected from, if still connected.
    pub address: Option<String>,
    /// Seconds since its last contact.
    pub last_seen_secs: u64,
}

impl Snapshot {
    /// Live, non-stale peers that are not overheating, best headroom first:
    /// where a scheduler should move work.
    pub fn offload_ranking(&self) -> Vec<&PeerStatus> {
        let mut v: Vec<&PeerStatus> = self
            .cluster
            .peers
            .iter()
            .filter(|p| {
                p.liveness == "alive" && !p.stale && !p.thermal.critical && p.state != "shutdown"
            })
            .collect();
        v.sort_by(|a, b| {
            let ha = a.thermal.headroom_celsius.unwrap_or(f64::NEG_INFINITY);
            let hb = b.thermal.headroom_celsius.unwrap_or(f64::NEG_INFINITY);
            hb.total_cmp(&ha).then_with(|| a.node.cmp(&b.node))
        });
        v
    }
}

//! Tell a workload from a cooling failure.
//!
//! A cooling failure heats a node whatever it runs, and keeps heating: the
//! air entering the server gets warmer, and every component follows it at
//! the same steady rate. A workload step (a batch or MPI job starting on
//! every node at once) raises the *component* temperatures by tens of
//! degrees within seconds, together with the CPU load, and then the curve
//! levels off. The inlet air does not move.
//!
//! The [`HeatTracker`] keeps a bounded history of each node's sensors (by
//! [`Role`]) and of its CPU load, and turns it into an [`Assessment`]:
//!
//! - **current rate**: the least-squares slope over the recent window only
//!   (30 s, or longer for slow rises, see [`rise`]), so a finished step is
//!   forgotten within that window instead of being remembered for minutes;
//! - **sustained rise**: the rise is spread over the window (each third of
//!   it rises at least 30% of the overall rate) rather than one jump, and it
//!   is not levelling off (the last third still rises). A step of tens of
//!   degrees in a few seconds fails this test whatever the sampling rate;
//! - **workload**: a component rise that follows a rise of this node's CPU
//!   load (by at least [`HeatConfig::load_step`]) within
//!   [`HeatConfig::load_settle`] is attributed to the workload and does not
//!   vote. After that it votes again only if it still rises steadily at flat
//!   load;
//! - **roles**: a node with inlet or ambient sensors votes by those alone
//!   (a workload does not heat the air entering the server) and carries a
//!   double weight in the cooling quorum (see [`crate::fsm::PeerView`]);
//! - **projection**: a time to critical is published only while the rise is
//!   sustained and the last [`HeatConfig::stable_projections`] projections
//!   agree on the crossing time, so one transient projection can never
//!   shorten a grace;
//! - **hysteresis**: a vote, once the shape test started it, holds while the
//!   heat still rises at half the rate (or would reach critical within the
//!   horizon), so sensor noise on a steady rise cannot make it flicker and
//!   restart the cooling grace.
//!
//! Everything here is pure and takes the time as an argument; the sampler
//! feeds it, and the safety suite (`agent/tests/safety/`) replays traces
//! through it.

use crate::thermal::{time_to_critical, Reading};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// What a sensor measures, for the cooling detector (shared with the
/// exporter's model, which labels readings with it).
pub use coolmesh_exporter::model::Role;

/// `[[sensors.roles]]`: give matching sensors a role. Patterns use `*` for
/// any run of characters; `label` matches case-insensitively. The first
/// matching rule wins; sensors no rule matches get [`default_role`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRule {
    /// Chip pattern. Default `*`.
    pub chip: String,
    /// Sensor pattern. Default `*`.
    pub sensor: String,
    /// Label pattern. Default `*` (also matches sensors without a label).
    pub label: String,
    /// The role to give.
    pub role: Role,
}

/// `*`-glob match (the same rule as threshold patterns).
pub fn glob(pattern: &str, s: &str) -> bool {
    crate::thermal::glob_match(pattern, s)
}

impl RoleRule {
    fn matches(&self, r: &Reading) -> bool {
        let label = r.label.as_deref().unwrap_or("").to_ascii_lowercase();
        glob(&self.chip, &r.chip)
            && glob(&self.sensor, &r.sensor)
            && glob(&self.label.to_ascii_lowercase(), &label)
    }
}

/// The role of a sensor no rule names: labels (or chip names) containing
/// `inlet`/`intake` are inlet air, `ambient`/`room` ambient,
/// `exhaust`/`outlet` exhaust; an ACPI thermal zone (`acpitz`) is ambient
/// (it sits on the board, away from the CPU, on most servers; give it
/// `role = "component"` where it follows the CPU); everything else is a
/// component.
///
/// A label that also names a part (`PS1 Inlet Temp`, `CPU1 Inlet`,
/// `RISER1_INLET_TMP`, words starting with `ps`+digit, `psu`, `power`, `cpu`,
/// `gpu`, `riser`, `dimm`, `mem`, `pch`, `vr`, `nic`, `pci`, `disk`, `hdd`,
/// `nvme`) is that part's air, inside the chassis and warmed by the
/// workload: a component. Air sensors vote without the workload check, so
/// a wrong air role risks a false vote; a wrong component role only a later
/// one.
pub fn default_role(r: &Reading) -> Role {
    let label = r.label.as_deref().unwrap_or("").to_ascii_lowercase();
    let chip = r.chip.to_ascii_lowercase();
    let has = |w: &str| label.contains(w) || chip.contains(w);
    let part = label.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        const PARTS: &[&str] = &[
            "psu", "power", "cpu", "gpu", "riser", "dimm", "mem", "pch", "vr", "nic", "pci",
            "disk", "hdd", "nvme",
        ];
        PARTS.iter().any(|p| w.starts_with(p))
            || w.strip_prefix("ps")
                .is_some_and(|d| d.starts_with(|c: char| c.is_ascii_digit()))
    });
    if part && (has("inlet") || has("intake") || has("ambient")) {
        Role::Component
    } else if has("inlet") || has("intake") {
        Role::Inlet
    } else if has("ambient") || has("room") {
        Role::Ambient
    } else if has("exhaust") || has("outlet") {
        Role::Exhaust
    } else if label == "acpitz" || chip.starts_with("acpitz") {
        Role::Ambient
    } else {
        Role::Component
    }
}

/// Give every reading its role: the first matching rule, else the default.
pub fn assign_roles(rules: &[RoleRule], readings: &mut [Reading]) {
    for r in readings.iter_mut() {
        r.role = rules
            .iter()
            .find(|rule| rule.matches(r))
            .map_or_else(|| default_role(r), |rule| rule.role);
    }
}

/// Settings of the cooling detector. Every default is safe; each comment
/// says what moving it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatConfig {
    /// A sustained rise at least this fast (C/min) votes "cooling lost".
    /// Default 3. Lower catches slow failures sooner and votes on more
    /// chiller restarts; higher ignores more.
    pub heating_rate: f64,
    /// A sustained rise that would reach critical within this time votes
    /// too, however slow. Default 15 min: a slow (1 C/min) loss of cooling
    /// is caught with about 15 degrees of headroom left. Longer votes on
    /// chiller restarts close to the limits; shorter leaves less margin.
    pub horizon: Duration,
    /// The history kept (the trend window). Default 5 min. The rate itself
    /// uses the recent part only (see [`rise`]); slow rises are judged over
    /// all of it.
    pub window: Duration,
    /// A CPU load rise (fraction of all CPUs, 0..1) this large within
    /// 30 s is a workload step. Default 0.25.
    pub load_step: f64,
    /// For this long after a load step, this node's component heating is
    /// the workload's and does not vote. Default 3 min (three heat-sink
    /// time constants). Longer delays a cooling failure that starts with a
    /// job on nodes without inlet sensors (the overheat trigger remains);
    /// shorter lets a slow heat-sink tail vote.
    pub load_settle: Duration,
    /// Consecutive sustained projections that must agree (their projected
    /// crossing times within a quarter of the time left, at least 15 s)
    /// before a time to critical is published. Default 3. Higher
    /// delays the prediction in dense racks; 1 lets one reading shorten a
    /// grace.
    pub stable_projections: usize,
}

impl Default for HeatConfig {
    fn default() -> Self {
        HeatConfig {
            heating_rate: 3.0,
            horizon: Duration::from_secs(15 * 60),
            window: Duration::from_secs(300),
            load_step: 0.25,
            load_settle: Duration::from_secs(180),
            stable_projections: 3,
        }
    }
}

/// The shortest recent window a rate is taken over (shorter only when the
/// configured trend window is).
pub const RECENT_MIN: Duration = Duration::from_secs(30);
/// The rise a recent window must be long enough to contain at the current
/// rate (two whole-degree sensor steps), so slow rises get longer windows.
pub const RECENT_RISE_C: f64 = 2.0;

/// One sample of a group of sensors: time, hottest value, smallest headroom.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    t: f64,
    value: f64,
    headroom: Option<f64>,
}

/// A bounded history of one group (components, or inlet/ambient air).
#[derive(Debug, Clone, Default)]
struct Series {
    samples: VecDeque<Sample>,
}

impl Series {
    fn push(&mut self, s: Sample, window: f64, cap: usize) {
        // A clock that went back (a restarted source) starts a new history.
        if self.samples.back().is_some_and(|b| b.t >= s.t) {
            self.samples.clear();
        }
        self.samples.push_back(s);
        while self.samples.front().is_some_and(|f| f.t < s.t - window) || self.samples.len() > cap {
            self.samples.pop_front();
        }
    }

    /// The value used for the rate: the rise of heat, i.e. the falling
    /// headroom when every sample has one, else the hottest value.
    fn points(&self, from: f64) -> Vec<(f64, f64)> {
        let all_headroom = self.samples.iter().all(|s| s.headroom.is_some());
        self.samples
            .iter()
            .filter(|s| s.t >= from)
            .map(|s| {
                let v = if all_headroom {
                    -s.headroom.unwrap_or_default()
                } else {
                    s.value
                };
                (s.t, v)
            })
            .collect()
    }
}

/// How a series is rising now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rise {
    /// Least-squares slope over the recent window, C/min.
    pub rate: Option<f64>,
    /// The rise is spread over the recent window and not levelling off.
    pub sustained: bool,
    /// The whole history (the trend window) is one steady ramp: a slow
    /// rise that has lasted.
    pub lasting: bool,
    /// Least-squares slope over the whole history, C/min, when rising.
    pub long_rate: Option<f64>,
}

/// Least-squares slope in C/min of `(seconds, celsius)` points.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    crate::thermal::slope_per_minute(points)
}

/// The fewest samples a recent window holds (it is stretched to hold
/// them at the sampling rate seen), so the shape test has means to compare.
pub const RECENT_SAMPLES: usize = 10;

/// The rise of `points` (time-ordered) ending at the last point.
///
/// The recent window is [`RECENT_MIN`] (30 s), stretched to contain
/// [`RECENT_RISE_C`] at the current pace and [`RECENT_SAMPLES`] samples,
/// at most `window`. The rate is the least-squares slope over it. The rise
/// is *sustained* when the window is covered and its shape is a ramp
/// ([`ramp`]): split into four equal parts, the mean of each part exceeds
/// the previous one by at least a quarter of what the rate predicts (a jump
/// of any size leaves at least one pair of parts level, whatever the
/// sampling), and the last step is at least 0.85 times the larger and at
/// most 1.6 times the smaller of the two before: a curve that
/// is levelling off (a heat sink settling after a job started) fails, and
/// so does the bend from flat to rising, so a rise votes only once a whole
/// window of it is a straight ramp. Means make the test robust to
/// whole-degree sensors and noise. *Lasting* is the same test over the
/// whole history (the trend window), for slow rises.
pub fn rise(points: &[(f64, f64)], window: f64) -> Rise {
    rise_over(points, window, RECENT_MIN.as_secs_f64())
}

/// [`rise`] with another shortest recent window (seconds).
pub fn rise_over(points: &[(f64, f64)], window: f64, recent_min: f64) -> Rise {
    let Some(&(now, _)) = points.last() else {
        return Rise::default();
    };
    let long_rate = slope(points).unwrap_or(0.0);
    let short_rate = {
        let from = now - recent_min;
        let pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= from).collect();
        slope(&pts).unwrap_or(0.0)
    };
    let mut recent = recent_min;
    let pace = long_rate.max(short_rate);
    if pace > 0.0 {
        recent = recent.max(RECENT_RISE_C / pace * 60.0);
    }
    // The sampling interval seen (median gap), so the window holds enough
    // samples for the shape test.
    let mut gaps: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_by(f64::total_cmp);
    if let Some(g) = gaps.get(gaps.len() / 2) {
        recent = recent.max(g * (RECENT_SAMPLES - 1) as f64);
    }
    let recent = recent.min(window);
    let from = now - recent;
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0 >= from - 1e-9)
        .collect();
    let span = pts.last().map_or(0.0, |l| l.0) - pts.first().map_or(0.0, |f| f.0);
    if pts.len() < 4 || span < recent * 0.8 {
        return Rise::default();
    }
    let rate = slope(&pts);
    let Some(r) = rate.filter(|r| *r > 0.0) else {
        return Rise {
            rate,
            ..Rise::default()
        };
    };
    let sustained = ramp(&pts, r);
    // Lasting: the whole history is covered and is a ramp too.
    let first = points.first().map_or(now, |f| f.0);
    let lasting = now - first >= window * 0.8 && ramp_within(points, long_rate, 0.5, f64::INFINITY);
    Rise {
        rate,
        sustained,
        lasting,
        long_rate: (long_rate > 0.0).then_some(long_rate),
    }
}

/// Is `pts` (time-ordered) a steady ramp at about `rate` C/min? Four equal
/// time parts, each with at least one sample; the mean of each exceeds the
/// previous by at least 25% of `rate` over a part; the last step is at
/// least 0.85 times the larger and at most 1.6 times the smaller of the two
/// before (neither levelling off nor bending up from flat).
fn ramp(pts: &[(f64, f64)], rate: f64) -> bool {
    ramp_within(pts, rate, 0.85, 1.6)
}

/// [`ramp`] with other bounds on the last step: at least `lo` times the
/// larger, at most `hi` times the smaller of the two before. The whole
/// history (minutes) uses looser bounds than the recent window: its parts
/// are long, so a levelling-off still shows, and slow rises on whole-degree
/// sensors step unevenly.
fn ramp_within(pts: &[(f64, f64)], rate: f64, lo_bound: f64, hi_bound: f64) -> bool {
    let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
        return false;
    };
    let part = (last.0 - first.0) / 4.0;
    if part <= 0.0 || rate <= 0.0 {
        return false;
    }
    let mut means = [0.0f64; 4];
    for (i, m) in means.iter_mut().enumerate() {
        let a = first.0 + part * i as f64;
        let b = a + part;
        let vs: Vec<f64> = pts
            .iter()
            .filter(|p| p.0 >= a && (p.0 < b || (i == 3 && p.0 <= b)))
            .map(|p| p.1)
            .collect();
        if vs.is_empty() {
            return false;
        }
        *m = vs.iter().sum::<f64>() / vs.len() as f64;
    }
    let expected = rate * part / 60.0;
    let steps = [
        means[1] - means[0],
        means[2] - means[1],
        means[3] - means[2],
    ];
    let (lo, hi) = (steps[0].min(steps[1]), steps[0].max(steps[1]));
    steps.iter().all(|d| *d >= 0.25 * expected)
        && steps[2] >= lo_bound * hi
        && steps[2] <= hi_bound * lo
}

/// What the detector concludes about this node after a round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Current rate of the deciding group (air if the node has air sensors,
    /// else components), C/min.
    pub rate: Option<f64>,
    /// That group rises steadily (see [`rise`]).
    pub sustained: bool,
    /// The component rise is attributed to a recent CPU load step.
    pub workload: bool,
    /// This node votes "cooling lost" in the quorum.
    pub vote: bool,
    /// The node has inlet or ambient sensors (double weight in the quorum).
    pub air: bool,
    /// Stable projected seconds to critical, while the rise is sustained.
    pub time_to_critical: Option<f64>,
    /// The last CPU load (0..1), if known.
    pub load: Option<f64>,
}

/// The detector's history of one node. Memory is bounded by the window.
#[derive(Debug, Clone)]
pub struct HeatTracker {
    cfg: HeatConfig,
    cap: usize,
    components: Series,
    air: Series,
    load: VecDeque<(f64, f64)>,
    last_load_step: Option<f64>,
    /// Projected crossing times (round time + time to critical) of the
    /// last rounds; `None` for a round without a projection.
    projections: VecDeque<Option<f64>>,
    /// A vote in progress: it holds while the rise goes on (hysteresis), so
    /// that sensor noise on a steady rise cannot make it flicker and
    /// restart the cooling grace.
    voting: bool,
}

impl HeatTracker {
    /// A tracker keeping at most `cap` samples per series.
    pub fn new(cfg: HeatConfig, cap: usize) -> Self {
        HeatTracker {
            cfg,
            cap: cap.max(8),
            components: Series::default(),
            air: Series::default(),
            load: VecDeque::new(),
            last_load_step: None,
            projections: VecDeque::new(),
            voting: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HeatConfig {
        &self.cfg
    }

    /// New settings (a config reload), keeping the history: the next
    /// [`push`](Self::push) judges it by them. A vote in progress is
    /// re-judged there too.
    pub fn set_config(&mut self, cfg: HeatConfig) {
        self.cfg = cfg;
    }

    /// Feed one round taken at `t` seconds (any monotonic origin): the
    /// readings (with roles) and the CPU load (0..1) if known. Returns the
    /// assessment after it.
    pub fn push(&mut self, t: f64, readings: &[Reading], load: Option<f64>) -> Assessment {
        let window = self.cfg.window.as_secs_f64().max(1.0);
        let group = |air: bool| {
            let rs = readings.iter().filter(move |r| r.role.is_air() == air);
            let hottest = rs
                .clone()
                .map(|r| r.celsius)
                .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
            let headroom = rs
                .filter_map(Reading::headroom)
                .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v))));
            hottest.map(|value| Sample { t, value, headroom })
        };
        if let Some(s) = group(false) {
            self.components.push(s, window, self.cap);
        }
        match group(true) {
            Some(s) => self.air.push(s, window, self.cap),
            // Air sensors gone (a BMC that stopped answering): the node
            // votes by its components again, with a fresh history.
            None => self.air.samples.clear(),
        }
        if let Some(l) = load.filter(|l| l.is_finite()) {
            let l = l.clamp(0.0, 1.0);
            if self.load.back().is_some_and(|b| b.0 >= t) {
                self.load.clear();
            }
            // A step: the load now exceeds the lowest of the last 30 s by
            // load_step.
            let low = self
                .load
                .iter()
                .filter(|s| s.0 >= t - 30.0)
                .map(|s| s.1)
                .fold(f64::INFINITY, f64::min);
            if low.is_finite() && l - low >= self.cfg.load_step {
                self.last_load_step = Some(t);
            }
            self.load.push_back((t, l));
            while self.load.front().is_some_and(|f| f.0 < t - 60.0) || self.load.len() > self.cap {
                self.load.pop_front();
            }
        }
        self.last_load_step = self
            .last_load_step
            .filter(|s| *s <= t && t - s < self.cfg.load_settle.as_secs_f64());
        self.assess(t, readings, load)
    }

    fn assess(&mut self, t: f64, readings: &[Reading], load: Option<f64>) -> Assessment {
        let window = self.cfg.window.as_secs_f64().max(1.0);
        let air = !self.air.samples.is_empty() && readings.iter().any(|r| r.role.is_air());
        let series = if air { &self.air } else { &self.components };
        let points = series.points(t - window);
        // Without load information a component rise must stay a straight
        // ramp twice as long: a heat sink settling slowly after a job
        // started (time constant over a minute) bends too little within
        // 30 s to be told from a cooling failure by its shape alone.
        let recent_min = if !air && load.is_none() {
            2.0 * RECENT_MIN.as_secs_f64()
        } else {
            RECENT_MIN.as_secs_f64()
        };
        let r = rise_over(&points, window, recent_min);
        let headroom = readings
            .iter()
            .filter_map(Reading::headroom)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v))));
        let workload = !air && self.last_load_step.is_some();
        // The rate a projection uses: the recent one while the recent window
        // is a ramp, else the whole history's while that is one.
        let steady_rate = if r.sustained {
            r.rate
        } else if r.lasting {
            r.long_rate
        } else {
            None
        };
        let horizon = self.cfg.horizon.as_secs_f64();
        let fast = steady_rate.is_some_and(|v| v >= self.cfg.heating_rate);
        // A slow rise votes only once it has lasted the whole window: slow
        // means there is time, and chiller restarts are slow too.
        let near = r.lasting
            && steady_rate
                .and_then(|v| time_to_critical(headroom, Some(v)))
                .is_some_and(|s| s <= horizon);
        let starts = steady_rate.is_some() && (fast || near);
        // Hysteresis: a vote, once started by the shape test, holds while
        // the heat still rises at half the rate that started it (or would
        // still reach critical within the horizon); it ends when the rise
        // stops, and at once on a load step.
        let hold_rate = r.rate.unwrap_or(0.0).max(r.long_rate.unwrap_or(0.0));
        let holds = self.voting
            && hold_rate > 0.0
            && (hold_rate >= 0.5 * self.cfg.heating_rate
                || time_to_critical(headroom, Some(hold_rate)).is_some_and(|s| s <= horizon));
        self.voting = !workload && (starts || holds);
        let rate_for_projection = match steady_rate {
            Some(v) => Some(v),
            None if self.voting => Some(hold_rate),
            None => None,
        };
        let projection = rate_for_projection.and_then(|v| time_to_critical(headroom, Some(v)));
        self.projections.push_back(projection.map(|p| t + p));
        while self.projections.len() > self.cfg.stable_projections.max(1) {
            self.projections.pop_front();
        }
        let stable = self.projections.len() >= self.cfg.stable_projections.max(1)
            && stable(&self.projections, projection.unwrap_or(0.0));
        let ttc = if headroom.is_some_and(|h| h <= 0.0) {
            Some(0.0)
        } else if stable && !workload {
            projection
        } else {
            None
        };
        Assessment {
            rate: r.rate,
            sustained: r.sustained || r.lasting,
            workload,
            vote: self.voting,
            air,
            time_to_critical: ttc,
            load,
        }
    }
}

/// The projected crossing times of the last rounds agree: all present, and
/// spread by at most a quarter of the latest time to critical (at least
/// 15 s). A steady rise projects the same crossing time round after round,
/// whatever the time left; a transient projects a different one each time.
fn stable(crossings: &VecDeque<Option<f64>>, ttc: f64) -> bool {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in crossings {
        let Some(v) = v else { return false };
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    hi - lo <= (0.25 * ttc).max(15.0)
}

/// The summary of the latest readings with the detector's assessment.
pub fn summary(readings: &[Reading], a: &Assessment) -> crate::thermal::ThermalSummary {
    let (hottest, headroom, critical) = crate::thermal::instant_summary(readings);
    crate::thermal::ThermalSummary {
        hottest_celsius: hottest,
        headroom_celsius: headroom,
        trend_celsius_per_minute: a.rate,
        time_to_critical_seconds: a.time_to_critical,
        critical,
        cooling_vote: a.vote,
        air: a.air,
        workload: a.workload,
        load: a.load,
    }
}

#[cfg(test)]
mod tests;

//! The last half hour of every node this agent knows, in memory, for the
//! status page's sparklines and state bands (`GET /v1/history`).
//!
//! # What is kept
//!
//! Per node (this node and every peer in its cluster view), a ring of
//! [`Point`]s: the hottest sensor, the hottest inlet and ambient sensors
//! (this node only: peers' records carry no air readings), the headroom,
//! the trend, the state machine's state and whether the node votes by air
//! sensors. Peers' points are what their records said when sampled.
//!
//! # Sampling
//!
//! The agent offers every node's current values often (every second, and
//! this node's at once on each state-machine change); a node gets a point
//! when it has none yet, when a new sampling slot of
//! [`HistoryConfig::period`] began (slots are aligned on the wall clock,
//! so every node's points fall on the same instants), or when its state
//! differs from its last point's, so that a state shorter than a period is
//! not lost. A peer that is not alive (or whose record is stale) gets no
//! point: a gap, not a flat line of old values.
//!
//! # Bounds
//!
//! - Points older than [`HistoryConfig::window`] are dropped.
//! - A node holds at most [`HistoryConfig::points_per_node`] points (the
//!   ring is allocated once, at that size): a node whose state flaps more
//!   often than that loses its oldest points first.
//! - At most [`HistoryConfig::max_nodes`] nodes are kept. Above that this
//!   node, the nodes not `normal`, the nodes already kept and then the
//!   least headroom win; the others are counted as untracked.
//! - A node that left the view (its record expired) is dropped.
//!
//! A point is [`POINT_BYTES`] bytes, so the default bound is 1,000 nodes x
//! 240 points x 32 bytes = 7.7 MB (about 7.7 KB per node, 310 KB for a
//! 40-node room), plus each node's name and PeerId.
//!
//! Time is always passed in (unix milliseconds), never read here except by
//! the clock given to [`History::with_clock`] for answering requests: the
//! tests inject it.

use crate::model::FSM_STATES;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Size of one [`Point`] in memory.
pub const POINT_BYTES: usize = std::mem::size_of::<Point>();

/// Bounds and sampling of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// How far back points are kept. Default 30 minutes.
    pub window: Duration,
    /// Sampling slot: one point per node per slot, plus one per state
    /// change. Default 10 s.
    pub period: Duration,
    /// Ring size per node. Default 240: the 180 slots of the window and 60
    /// state changes.
    pub points_per_node: usize,
    /// Nodes kept, this one included. Default 1,000.
    pub max_nodes: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            window: Duration::from_secs(30 * 60),
            period: Duration::from_secs(10),
            points_per_node: 240,
            max_nodes: 1000,
        }
    }
}

impl HistoryConfig {
    /// The most memory the points can take, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_nodes
            .saturating_mul(self.points_per_node)
            .saturating_mul(POINT_BYTES)
    }
}

/// One node's values at one instant, as offered for sampling.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Hottest sensor, C.
    pub hottest: Option<f64>,
    /// Hottest sensor with the role `inlet`, C (this node only).
    pub inlet: Option<f64>,
    /// Hottest sensor with the role `ambient`, C (this node only).
    pub ambient: Option<f64>,
    /// Headroom to critical, C.
    pub headroom: Option<f64>,
    /// Trend of the hottest sensor, C/min.
    pub trend: Option<f64>,
    /// State-machine state, as named in [`FSM_STATES`] (`None`: unknown).
    pub state: Option<&'static str>,
    /// Votes by inlet or ambient air sensors.
    pub air: bool,
}

/// A node offered for sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    /// Stable key: the PeerId (base58).
    pub peer_id: String,
    /// Node name.
    pub node: String,
    /// This agent's own node.
    pub is_self: bool,
    /// Alive and fresh: sampled. Otherwise the node keeps its points but
    /// gets no new one.
    pub live: bool,
    /// Its values now.
    pub sample: Sample,
}

/// A state name as one of [`FSM_STATES`] (`None`: not a known state).
pub fn known_state(name: &str) -> Option<&'static str> {
    FSM_STATES.iter().find(|s| **s == name).copied()
}

/// One stored point: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    t_ms: u64,
    /// hottest, inlet, ambient, headroom, trend; NaN: none.
    v: [f32; 5],
    /// Index into [`FSM_STATES`]; [`NO_STATE`]: unknown.
    state: u8,
    /// Bit 0: votes by air sensors.
    flags: u8,
}

const NO_STATE: u8 = u8::MAX;
const SERIES: [&str; 5] = ["hottest", "inlet", "ambient", "headroom", "trend"];

impl Point {
    fn new(t_ms: u64, s: &Sample) -> Point {
        let f = |v: Option<f64>| v.filter(|x| x.is_finite()).map_or(f32::NAN, |x| x as f32);
        Point {
            t_ms,
            v: [
                f(s.hottest),
                f(s.inlet),
                f(s.ambient),
                f(s.headroom),
                f(s.trend),
            ],
            state: s
                .state
                .and_then(|n| FSM_STATES.iter().position(|x| *x == n))
                .and_then(|i| u8::try_from(i).ok())
                .unwrap_or(NO_STATE),
            flags: u8::from(s.air),
        }
    }
}

#[derive(Debug)]
struct Series {
    node: String,
    is_self: bool,
    points: VecDeque<Point>,
}

impl Series {
    fn last(&self) -> Option<&Point> {
        self.points.back()
    }
    fn not_normal(&self) -> bool {
        self.last()
            .is_some_and(|p| p.state != 0 && p.state != NO_STATE)
    }
    fn headroom(&self) -> f32 {
        self.last().map_or(f32::NAN, |p| p.v[3])
    }
    fn hottest(&self) -> f32 {
        self.last().map_or(f32::NAN, |p| p.v[0])
    }
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<String, Series>,
    /// Nodes in the view but not kept (over `max_nodes`), at the last
    /// full sample.
    untracked: usize,
}

/// What to answer (`GET /v1/history?node=&limit=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only this node (by name or PeerId).
    pub node: Option<String>,
    /// At most this many nodes, the most telling first.
    pub limit: Option<usize>,
}

/// The history of every node (cheap to clone; shared by the agent, which
/// samples, and the HTTP server, which answers).
#[derive(Clone)]
pub struct History {
    cfg: HistoryConfig,
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("cfg", &self.cfg).finish()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl History {
    /// An empty history that answers requests at the wall clock.
    pub fn new(cfg: HistoryConfig) -> History {
        History::with_clock(cfg, Arc::new(crate::clock::unix_ms))
    }

    /// An empty history that answers requests at `clock` (unix ms).
    pub fn with_clock(cfg: HistoryConfig, clock: Arc<dyn Fn() -> u64 + Send + Sync>) -> History {
        let cfg = HistoryConfig {
            points_per_node: cfg.points_per_node.max(1),
            max_nodes: cfg.max_nodes.max(1),
            ..cfg
        };
        History {
            cfg,
            inner: Arc::new(Mutex::new(Inner::default())),
            clock,
        }
    }

    /// The bounds.
    pub fn config(&self) -> HistoryConfig {
        self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sample every node the agent knows at `now_ms`: `nodes` is the whole
    /// room (this node and the peers in the view). Nodes not in it are
    /// dropped; above `max_nodes` the least telling are not kept.
    pub fn sample_all(&self, now_ms: u64, nodes: &[NodeSample]) {
        let mut inner = self.lock();
        let keep: Vec<&NodeSample> = {
            if nodes.len() <= self.cfg.max_nodes {
                nodes.iter().collect()
            } else {
                let mut ranked: Vec<&NodeSample> = nodes.iter().collect();
                let key = |n: &NodeSample| {
                    (
                        !n.is_self,
                        n.sample.state.is_none_or(|s| s == FSM_STATES[0]),
                        !inner.nodes.contains_key(&n.peer_id),
                    )
                };
                ranked.sort_by(|a, b| {
                    key(a)
                        .cmp(&key(b))
                        .then_with(|| {
                            let h = |n: &NodeSample| n.sample.headroom.unwrap_or(f64::INFINITY);
                            h(a).total_cmp(&h(b))
                        })
                        .then_with(|| a.peer_id.cmp(&b.peer_id))
                });
                ranked.truncate(self.cfg.max_nodes);
                ranked
            }
        };
        let present: HashSet<&str> = keep.iter().map(|n| n.peer_id.as_str()).collect();
        inner.nodes.retain(|k, _| present.contains(k.as_str()));
        inner.untracked = nodes.len() - keep.len();
        for n in keep {
            self.put(&mut inner, now_ms, n);
        }
        let floor = now_ms.saturating_sub(ms(self.cfg.window));
        for s in inner.nodes.values_mut() {
            while s.points.front().is_some_and(|p| p.t_ms < floor) {
                s.points.pop_front();
            }
        }
    }

    /// Sample one node (this node, on a state change) without touching the
    /// others. A node not kept yet is added only while there is room, or
    /// when it is this node.
    pub fn sample_one(&self, now_ms: u64, node: &NodeSample) {
        let mut inner = self.lock();
        if !inner.nodes.contains_key(&node.peer_id)
            && inner.nodes.len() >= self.cfg.max_nodes
            && !node.is_self
        {
            return;
        }
        if inner.nodes.len() >= self.cfg.max_nodes && !inner.nodes.contains_key(&node.peer_id) {
            // Room for this node: drop the peer with the most headroom.
            let victim = inner
                .nodes
                .iter()
                .filter(|(_, s)| !s.is_self)
                .max_by(|a, b| a.1.headroom().total_cmp(&b.1.headroom()))
                .map(|(k, _)| k.clone());
            if let Some(v) = victim {
                inner.nodes.remove(&v);
                inner.untracked += 1;
            }
        }
        self.put(&mut inner, now_ms, node);
    }

    fn put(&self, inner: &mut Inner, now_ms: u64, n: &NodeSample) {
        let cap = self.cfg.points_per_node;
        let s = inner
            .nodes
            .entry(n.peer_id.clone())
            .or_insert_with(|| Series {
                node: n.node.clone(),
                is_self: n.is_self,
                points: VecDeque::with_capacity(cap),
            });
        s.node.clone_from(&n.node);
        s.is_self = n.is_self;
        // The wall clock went back: what now lies in the future goes, so
        // that the points stay in order.
        while s.points.back().is_some_and(|p| p.t_ms > now_ms) {
            s.points.pop_back();
        }
        if !n.live {
            return;
        }
        let p = Point::new(now_ms, &n.sample);
        let period = ms(self.cfg.period);
        let due = match s.last() {
            None => true,
            Some(last) => last.t_ms / period != now_ms / period || last.state != p.state,
        };
        if !due {
            return;
        }
        while s.points.len() >= cap {
            s.points.pop_front();
        }
        s.points.push_back(p);
    }

    /// Nodes kept, and nodes in the view not kept (over `max_nodes`).
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.nodes.len(), inner.untracked)
    }

    /// Points kept of a node (by PeerId), oldest first: `(t_ms, state)`.
    pub fn points_of(&self, peer_id: &str) -> Vec<(u64, Option<&'static str>)> {
        let inner = self.lock();
        inner
            .nodes
            .get(peer_id)
            .map(|s| {
                s.points
                    .iter()
                    .map(|p| (p.t_ms, FSM_STATES.get(usize::from(p.state)).copied()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `GET /v1/history` at the history's clock; `None` when `q.node`
    /// names no node kept.
    pub fn to_json(&self, q: &Query) -> Option<String> {
        self.to_json_at((self.clock)(), q)
    }

    /// The answer at `now_ms`: one object per node, the most telling first
    /// (this node; nodes not `normal`; the least headroom; the hottest;
    /// the name), each with parallel arrays of numbers, one element per
    /// point, oldest first:
    ///
    /// - `t`: seconds relative to `now_ms` (negative: the past), 0.1 s;
    /// - `hottest`, `inlet`, `ambient`, `headroom` (C), `trend` (C/min):
    ///   numbers, `null` where unknown;
    /// - `state`: index into `states`, `null` where unknown;
    /// - `air`: 1 when the node voted by inlet or ambient air sensors.
    pub fn to_json_at(&self, now_ms: u64, q: &Query) -> Option<String> {
        let inner = self.lock();
        let mut list: Vec<(&String, &Series)> = inner.nodes.iter().collect();
        if let Some(want) = &q.node {
            list.retain(|(k, s)| *k == want || s.node == *want);
            if list.is_empty() {
                return None;
            }
        }
        list.sort_by(|(ka, a), (kb, b)| {
            (!a.is_self, !a.not_normal())
                .cmp(&(!b.is_self, !b.not_normal()))
                .then_with(|| {
                    let h = |s: &Series| {
                        let v = s.headroom();
                        if v.is_nan() {
                            f32::INFINITY
                        } else {
                            v
                        }
                    };
                    h(a).total_cmp(&h(b))
                })
                .then_with(|| {
                    let t = |s: &Series| {
                        let v = s.hottest();
                        if v.is_nan() {
                            f32::NEG_INFINITY
                        } else {
                            v
                        }
                    };
                    t(b).total_cmp(&t(a))
                })
                .then_with(|| a.node.cmp(&b.node))
                .then_with(|| ka.cmp(kb))
        });
        let omitted = q.limit.map_or(0, |l| list.len().saturating_sub(l.max(1)));
        list.truncate(list.len() - omitted);
        let floor = now_ms.saturating_sub(ms(self.cfg.window));
        // Copied out (a memcpy, at most max_bytes) so that the agent's
        // sampling never waits for the JSON of a request.
        let (tracked, untracked) = (inner.nodes.len(), inner.untracked);
        let list: Vec<(String, String, bool, Vec<Point>)> = list
            .into_iter()
            .map(|(k, s)| {
                let pts = s
                    .points
                    .iter()
                    .filter(|p| p.t_ms >= floor && p.t_ms <= now_ms)
                    .copied()
                    .collect();
                (k.clone(), s.node.clone(), s.is_self, pts)
            })
            .collect();
        drop(inner);
        let mut out = String::with_capacity(256 + list.len() * 64);
        let _ = write!(
            out,
            "{{\"now_ms\":{now_ms},\"window_seconds\":{},\"period_seconds\":{},\"points_per_node\":{},\"max_nodes\":{},\"states\":{},\"tracked\":{},\"untracked\":{},\"omitted\":{omitted},\"nodes\":[",
            self.cfg.window.as_secs(),
            self.cfg.period.as_secs_f64(),
            self.cfg.points_per_node,
            self.cfg.max_nodes,
            serde_json::to_string(&FSM_STATES).unwrap_or_else(|_| "[]".into()),
            tracked,
            untracked,
        );
        for (i, (key, node, is_self, pts)) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"node\":{},\"peer_id\":{},\"self\":{},\"t\":[",
                json_str(node),
                json_str(key),
                is_self
            );
            join(&mut out, pts, |o, p| {
                // Tenths of a second, exact in integers.
                let tenths = (now_ms - p.t_ms + 50) / 100;
                if tenths == 0 {
                    o.push('0');
                } else {
                    let _ = write!(o, "-{}.{}", tenths / 10, tenths % 10);
                }
            });
            out.push(']');
            for (j, name) in SERIES.iter().enumerate() {
                let _ = write!(out, ",\"{name}\":[");
                join(&mut out, pts, |o, p| number(o, p.v[j]));
                out.push(']');
            }
            out.push_str(",\"state\":[");
            join(&mut out, pts, |o, p| {
                if p.state == NO_STATE {
                    o.push_str("null");
                } else {
                    let _ = write!(o, "{}", p.state);
                }
            });
            out.push_str("],\"air\":[");
            join(&mut out, pts, |o, p| {
                o.push(if p.flags & 1 == 1 { '1' } else { '0' })
            });
            out.push_str("]}");
        }
        out.push_str("]}");
        Some(out)
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn join(out: &mut String, pts: &[Point], mut f: impl FnMut(&mut String, &Point)) {
    for (i, p) in pts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        f(out, p);
    }
}

/// Hundredths, or `null`.
fn number(out: &mut String, v: f32) {
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    let r = (f64::from(v) * 100.0).round() / 100.0;
    // Display of an f64 is the shortest form that reads back the same,
    // never an exponent: valid JSON.
    let _ = write!(out, "{}", if r == 0.0 { 0.0 } else { r });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn node(id: &str, hottest: f64, state: &'static str) -> NodeSample {
        NodeSample {
            peer_id: id.into(),
            node: format!("node-{id}"),
            is_self: id == "me",
            live: true,
            sample: Sample {
                hottest: Some(hottest),
                headroom: Some(90.0 - hottest),
                state: Some(state),
                ..Sample::default()
            },
        }
    }

    fn small() -> HistoryConfig {
        HistoryConfig {
            window: Duration::from_secs(30 * 60),
            period: Duration::from_secs(10),
            points_per_node: 240,
            max_nodes: 1000,
        }
    }

    #[test]
    fn a_point_is_32_bytes_and_the_default_bound_is_7_7_mb() {
        assert_eq!(POINT_BYTES, 32);
        assert_eq!(HistoryConfig::default().max_bytes(), 7_680_000);
    }

    #[test]
    fn one_point_per_slot_and_one_per_state_change() {
        let h = History::new(small());
        // t = 1,000,000 s: the start of a slot.
        let t0 = 1_000_000_000;
        for s in 0..25u64 {
            // Offered every second for 25 s: slots at 0, 10, 20 s.
            h.sample_all(t0 + s * 1000, &[node("me", 40.0, "normal")]);
        }
        let pts = h.points_of("me");
        assert_eq!(
            pts.iter().map(|p| p.0 - t0).collect::<Vec<_>>(),
            [0, 10_000, 20_000]
        );
        // A pre_fail of 300 ms inside a slot is kept, and so is its end.
        h.sample_one(t0 + 21_100, &node("me", 40.0, "pre_fail"));
        h.sample_one(t0 + 21_400, &node("me", 40.0, "normal"));
        h.sample_all(t0 + 22_000, &[node("me", 40.0, "normal")]);
        let pts = h.points_of("me");
        assert_eq!(
            pts.iter().map(|p| (p.0 - t0, p.1)).collect::<Vec<_>>(),
            [
                (0, Some("normal")),
                (10_000, Some("normal")),
                (20_000, Some("normal")),
                (21_100, Some("pre_fail")),
                (21_400, Some("normal")),
            ]
        );
    }

    #[test]
    fn points_older_than_the_window_go_and_the_ring_is_bounded() {
        let h = History::new(HistoryConfig {
            points_per_node: 10,
            ..small()
        });
        let t0 = 2_000_000_000;
        // One point per slot for 40 minutes: at most 10 are kept.
        for slot in 0..240u64 {
            h.sample_all(t0 + slot * 10_000, &[node("me", 40.0, "normal")]);
        }
        let pts = h.points_of("me");
        assert_eq!(pts.len(), 10);
        assert_eq!(pts[9].0, t0 + 239 * 10_000);
        // A flapping state keeps filling the same ring: still 10.
        for i in 0..100u64 {
            let st = if i % 2 == 0 { "pre_fail" } else { "normal" };
            h.sample_one(t0 + 2_390_000 + i, &node("me", 40.0, st));
        }
        assert_eq!(h.points_of("me").len(), 10);

        // With the default ring, 40 minutes leave the last 30.
        let h = History::new(small());
        for slot in 0..240u64 {
            h.sample_all(t0 + slot * 10_000, &[node("me", 40.0, "normal")]);
        }
        let pts = h.points_of("me");
        assert_eq!(pts.len(), 181, "30 minutes of slots, both ends included");
        assert_eq!(pts[0].0, t0 + 239 * 10_000 - 30 * MIN);
        // Served: nothing older than the window at the time of the answer.
        let later = t0 + 239 * 10_000 + 5 * MIN;
        let v: serde_json::Value =
            serde_json::from_str(&h.to_json_at(later, &Query::default()).expect("json"))
                .expect("valid");
        let t = v["nodes"][0]["t"].as_array().expect("t");
        assert_eq!(t.len(), 151);
        assert_eq!(t[0], -1800.0);
        assert_eq!(t[150], -300.0);
    }

    #[test]
    fn nodes_that_left_drop_out_and_dead_ones_leave_a_gap() {
        let h = History::new(small());
        let t0 = 3_000_000_000;
        h.sample_all(
            t0,
            &[
                node("me", 40.0, "normal"),
                node("a", 50.0, "normal"),
                node("b", 60.0, "normal"),
            ],
        );
        assert_eq!(h.counts(), (3, 0));
        // b is dead: no new point, but its history stays.
        let mut dead = node("b", 60.0, "normal");
        dead.live = false;
        h.sample_all(t0 + 10_000, &[node("me", 40.0, "normal"), dead.clone()]);
        assert_eq!(h.counts(), (2, 0), "a left the view");
        assert!(h.points_of("a").is_empty());
        assert_eq!(h.points_of("b").len(), 1);
        assert_eq!(h.points_of("me").len(), 2);
    }

    #[test]
    fn over_max_nodes_this_node_the_troubled_and_the_hottest_are_kept() {
        let h = History::new(HistoryConfig {
            max_nodes: 3,
            ..small()
        });
        let t0 = 4_000_000_000;
        let room = [
            node("a", 40.0, "normal"),
            node("b", 70.0, "normal"),
            node("c", 50.0, "pre_fail"),
            node("d", 80.0, "normal"),
            node("me", 30.0, "normal"),
        ];
        h.sample_all(t0, &room);
        let mut kept: Vec<String> = ["a", "b", "c", "d", "me"]
            .iter()
            .filter(|k| !h.points_of(k).is_empty())
            .map(|k| k.to_string())
            .collect();
        kept.sort();
        assert_eq!(kept, ["c", "d", "me"]);
        assert_eq!(h.counts(), (3, 2));
        // Kept nodes stay kept over a slightly hotter newcomer.
        let mut room2 = room.to_vec();
        room2.push(node("e", 81.0, "normal"));
        h.sample_all(t0 + 10_000, &room2);
        assert_eq!(h.points_of("d").len(), 2);
        assert!(h.points_of("e").is_empty());
        assert_eq!(h.counts(), (3, 3));
    }

    #[test]
    fn a_clock_step_back_keeps_the_points_in_order() {
        let h = History::new(small());
        let t0 = 5_000_000_000;
        for s in 0..3u64 {
            h.sample_all(t0 + s * 10_000, &[node("me", 40.0, "normal")]);
        }
        // Back to 15 s: the point of 20 s is in the future and goes; the
        // slot of 10-20 s has its point.
        h.sample_all(t0 + 15_000, &[node("me", 40.0, "normal")]);
        let t = || -> Vec<u64> { h.points_of("me").iter().map(|p| p.0 - t0).collect() };
        assert_eq!(t(), [0, 10_000]);
        h.sample_all(t0 + 20_000, &[node("me", 40.0, "normal")]);
        assert_eq!(t(), [0, 10_000, 20_000]);
    }

    #[test]
    fn the_answer_is_compact_arrays_in_exactly_this_shape() {
        let h = History::new(small());
        let t0 = 6_000_000_000;
        let mut me = node("me", 41.234, "normal");
        me.sample.inlet = Some(22.5);
        me.sample.trend = Some(0.5);
        me.sample.air = true;
        let peer = node("p", 55.0, "normal");
        h.sample_all(t0, &[me.clone(), peer.clone()]);
        me.sample.state = Some("pre_fail");
        me.sample.hottest = None;
        h.sample_one(t0 + 4_250, &me);
        let got = h.to_json_at(t0 + 10_000, &Query::default()).expect("json");
        let want = concat!(
            "{\"now_ms\":6000010000,\"window_seconds\":1800,\"period_seconds\":10,",
            "\"points_per_node\":240,\"max_nodes\":1000,",
            "\"states\":[\"normal\",\"pre_fail\",\"shutdown\",\"local_fault\",\"maintenance\"],",
            "\"tracked\":2,\"untracked\":0,\"omitted\":0,\"nodes\":[",
            "{\"node\":\"node-me\",\"peer_id\":\"me\",\"self\":true,\"t\":[-10.0,-5.8],",
            "\"hottest\":[41.23,null],\"inlet\":[22.5,22.5],\"ambient\":[null,null],",
            "\"headroom\":[48.77,48.77],\"trend\":[0.5,0.5],\"state\":[0,1],\"air\":[1,1]},",
            "{\"node\":\"node-p\",\"peer_id\":\"p\",\"self\":false,\"t\":[-10.0],",
            "\"hottest\":[55],\"inlet\":[null],\"ambient\":[null],\"headroom\":[35],",
            "\"trend\":[null],\"state\":[0],\"air\":[0]}]}"
        );
        assert_eq!(got, want);
        serde_json::from_str::<serde_json::Value>(&got).expect("valid JSON");
        // One node, by name or PeerId; an unknown one is None.
        let one = |q: &str| {
            h.to_json_at(
                t0 + 10_000,
                &Query {
                    node: Some(q.into()),
                    limit: None,
                },
            )
        };
        assert!(one("node-p")
            .expect("by name")
            .contains("\"peer_id\":\"p\""));
        assert!(!one("p").expect("by id").contains("node-me"));
        assert_eq!(one("nope"), None);
        // A limit keeps the most telling nodes and counts the rest.
        let lim = h
            .to_json_at(
                t0 + 10_000,
                &Query {
                    node: None,
                    limit: Some(1),
                },
            )
            .expect("json");
        assert!(
            lim.contains("\"omitted\":1,") && !lim.contains("node-p"),
            "{lim}"
        );
    }
}

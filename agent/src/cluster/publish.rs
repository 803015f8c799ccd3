//! When a new version of our own record is worth sending (docs/scale.md
//! step 2, "send changes, not state"): a pure rule, table-tested.
//!
//! A record that changes on every sensor tick (a temperature moving by a
//! tenth of a degree, the time of the last probe) costs every member a
//! record per node per second whatever happens in the room. What a peer's
//! decision or a dashboard reads changes far less often: the state
//! machine, a power vote, the cooling vote, a temperature moving past a
//! dead band, a counter. [`worth_publishing`] says whether `new` differs
//! from what was last published in one of those; the engine publishes
//! other changes only with its next periodic refresh.
//!
//! The rule is only applied where the periodic refresh is slow, that is in
//! a room where every member runs SWIM (liveness then comes from SWIM, not
//! from the record advancing); see `Engine::refresh`.

use super::record::{LocalState, ThermalReport};

/// How far a measured value may move before it is worth a new record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeadBand {
    /// Hottest sensor and headroom, degrees C. Default 1.0: a dashboard
    /// shows whole degrees and every threshold has margins of several.
    pub celsius: f64,
    /// Trend, degrees C per minute. Default 1.0 (the cooling vote itself is
    /// published on every change; the trend only informs agents older than
    /// the vote).
    pub trend: f64,
    /// Projected time to critical: a relative change. Default 0.1 (10%):
    /// peers compare it with minutes-long horizons
    /// (`ClusterView::heating_fast`); appearing and disappearing always count.
    pub time_to_critical: f64,
}

impl Default for DeadBand {
    fn default() -> Self {
        DeadBand {
            celsius: 1.0,
            trend: 1.0,
            time_to_critical: 0.1,
        }
    }
}

/// Whether `new` differs from `published` in anything a peer decides on
/// or shows: every field but the measured values compared through `band`
/// and the time of each power probe (only whether the target is up).
pub fn worth_publishing(published: &LocalState, new: &LocalState, band: &DeadBand) -> bool {
    let power_votes = |s: &LocalState| -> Vec<(String, bool)> {
        s.power.iter().map(|o| (o.target.clone(), o.up)).collect()
    };
    published.node != new.node
        || published.power_up != new.power_up
        || power_votes(published) != power_votes(new)
        || published.fsm != new.fsm
        || published.counters != new.counters
        || published.http != new.http
        || published.stage != new.stage
        || published.mac != new.mac
        || published.waker != new.waker
        || published.swim != new.swim
        || thermal_moved(&published.thermal, &new.thermal, band)
}

fn thermal_moved(a: &ThermalReport, b: &ThermalReport, band: &DeadBand) -> bool {
    let past = |x: Option<f64>, y: Option<f64>, d: f64| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() >= d,
        (None, None) => false,
        _ => true,
    };
    let relative = |x: Option<f64>, y: Option<f64>, r: f64| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() >= r * x.abs().max(y.abs()).max(1.0),
        (None, None) => false,
        _ => true,
    };
    a.critical != b.critical
        || a.vote != b.vote
        || a.air != b.air
        || past(a.hottest, b.hottest, band.celsius)
        || past(a.headroom, b.headroom, band.celsius)
        || past(a.trend, b.trend, band.trend)
        || relative(
            a.time_to_critical,
            b.time_to_critical,
            band.time_to_critical,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::counters::{CounterKind, CounterSlot};
    use crate::cluster::record::TargetObservation;

    fn base() -> LocalState {
        LocalState {
            node: "n1".into(),
            thermal: ThermalReport {
                hottest: Some(60.0),
                headroom: Some(30.0),
                trend: Some(0.2),
                time_to_critical: None,
                critical: false,
                vote: Some(false),
                air: false,
            },
            power: vec![TargetObservation {
                target: "tcp://10.0.0.1:22".into(),
                up: true,
                at_ms: 1_000,
            }],
            power_up: Some(true),
            ..LocalState::default()
        }
    }

    #[test]
    fn what_is_worth_a_new_record() {
        type Edit = fn(&mut LocalState);
        let table: &[(&str, Edit, bool)] = &[
            ("nothing", |_| {}, false),
            // Sensor noise and the probe clock: not worth a record.
            ("hottest +0.9", |s| s.thermal.hottest = Some(60.9), false),
            ("headroom -0.5", |s| s.thermal.headroom = Some(29.5), false),
            ("trend +0.5/min", |s| s.thermal.trend = Some(0.7), false),
            ("probe time", |s| s.power[0].at_ms = 2_000, false),
            // Past the band, or anything a decision reads.
            ("hottest +1.0", |s| s.thermal.hottest = Some(61.0), true),
            ("hottest -1.5", |s| s.thermal.hottest = Some(58.5), true),
            ("headroom -1", |s| s.thermal.headroom = Some(29.0), true),
            ("trend +1/min", |s| s.thermal.trend = Some(1.2), true),
            ("hottest lost", |s| s.thermal.hottest = None, true),
            (
                "ttc appears",
                |s| s.thermal.time_to_critical = Some(900.0),
                true,
            ),
            ("critical", |s| s.thermal.critical = true, true),
            ("cooling vote", |s| s.thermal.vote = Some(true), true),
            ("air", |s| s.thermal.air = true, true),
            ("target down", |s| s.power[0].up = false, true),
            (
                "target added",
                |s| s.power.push(TargetObservation::default()),
                true,
            ),
            ("power policy", |s| s.power_up = Some(false), true),
            ("power unknown", |s| s.power_up = None, true),
            ("fsm state", |s| s.fsm.state = "pre_fail".into(), true),
            ("fsm deadline", |s| s.fsm.deadline_ms = Some(5), true),
            (
                "counter",
                |s| {
                    s.counters.insert(
                        "jobs".into(),
                        CounterSlot {
                            kind: CounterKind::G,
                            p: 1,
                            n: 0,
                        },
                    );
                },
                true,
            ),
            ("http", |s| s.http = Some("10.0.0.1:10027".into()), true),
            ("stage", |s| s.stage = 1, true),
            ("mac", |s| s.mac = Some([2, 0, 0, 0, 0, 1]), true),
            ("waker", |s| s.waker = true, true),
            ("swim", |s| s.swim = true, true),
            ("node name", |s| s.node = "n2".into(), true),
        ];
        let band = DeadBand::default();
        for (what, edit, want) in table {
            let mut new = base();
            edit(&mut new);
            assert_eq!(worth_publishing(&base(), &new, &band), *want, "{what}");
        }
    }

    #[test]
    fn time_to_critical_moves_by_a_tenth() {
        let band = DeadBand::default();
        for (from, to, want) in [
            (Some(600.0), Some(560.0), false),
            (Some(600.0), Some(540.0), true),
            (Some(600.0), Some(700.0), true),
            (Some(30.0), Some(29.5), false),
            (Some(5.0), Some(3.0), true),
            (Some(600.0), None, true),
            (None, None, false),
        ] {
            let (mut a, mut b) = (base(), base());
            a.thermal.time_to_critical = from;
            b.thermal.time_to_critical = to;
            assert_eq!(worth_publishing(&a, &b, &band), want, "{from:?} -> {to:?}");
        }
    }
}

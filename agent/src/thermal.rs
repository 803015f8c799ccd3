//! The thermal model: one reading per sensor, the plausibility rule, and the
//! per-node summary (hottest, headroom, trend, time to critical).
//!
//! Everything here is pure: sources produce `Reading`s, the sampler feeds
//! them in with a timestamp, and the summary is derived on demand.

use std::collections::VecDeque;
use std::time::Duration;

// One model of a reading and of a node's summary, shared with the
// exporter (which serves them): the types live in its model.
pub use coolmesh_exporter::model::{
    plausible, Reading, ThermalSummary, PLAUSIBLE_MAX_C, PLAUSIBLE_MIN_C,
};

/// Hottest value and headroom over a set of readings.
pub fn instant_summary(readings: &[Reading]) -> (Option<f64>, Option<f64>, bool) {
    let hottest = readings
        .iter()
        .map(|r| r.celsius)
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    let headroom = readings
        .iter()
        .filter_map(Reading::headroom)
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.min(v)))
        });
    let critical = readings.iter().any(Reading::is_critical);
    (hottest, headroom, critical)
}

/// Least-squares slope of `(seconds, celsius)` points, in C per minute.
/// Needs at least two points spanning a non-zero time.
pub fn slope_per_minute(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let mut num = 0.0;
    let mut den = 0.0;
    for (t, v) in points {
        num += (t - mean_t) * (v - mean_v);
        den += (t - mean_t) * (t - mean_t);
    }
    if den <= f64::EPSILON {
        return None;
    }
    Some(num / den * 60.0)
}

/// Projected seconds until critical: `headroom / trend` while rising,
/// zero when already at or past critical, `None` when not rising.
pub fn time_to_critical(headroom_c: Option<f64>, trend_c_per_min: Option<f64>) -> Option<f64> {
    let headroom = headroom_c?;
    if headroom <= 0.0 {
        return Some(0.0);
    }
    let trend = trend_c_per_min?;
    // Below this slope the projection is noise (and hours away anyway).
    if trend <= 0.01 {
        return None;
    }
    Some(headroom / trend * 60.0)
}

/// Rolling history of (time, hottest, headroom) used for the trend.
///
/// The trend is taken over the headroom when every sample has one (what
/// matters is how fast the margin to critical shrinks), else over the hottest
/// value. Memory is bounded by `max_samples`.
#[derive(Debug, Clone)]
pub struct TrendWindow {
    window: Duration,
    max_samples: usize,
    samples: VecDeque<(f64, f64, Option<f64>)>,
}

impl TrendWindow {
    /// A window of `window` length keeping at most `max_samples` points.
    pub fn new(window: Duration, max_samples: usize) -> Self {
        TrendWindow {
            window,
            max_samples: max_samples.max(2),
            samples: VecDeque::new(),
        }
    }

    /// Add one sample taken at `t_secs` (any monotonic seconds).
    pub fn push(&mut self, t_secs: f64, hottest: f64, headroom: Option<f64>) {
        self.samples.push_back((t_secs, hottest, headroom));
        let cutoff = t_secs - self.window.as_secs_f64();
        while self.samples.front().is_some_and(|s| s.0 < cutoff)
            || self.samples.len() > self.max_samples
        {
            self.samples.pop_front();
        }
    }

    /// Slope in C/min of the rising temperature (equivalently, the falling
    /// headroom). `None` until the samples span a quarter of the window and
    /// number at least three: a fit over a few seconds of sensor noise
    /// (+-0.2 C, whole-degree steps) reads as several C/min, and two nodes
    /// doing that at once must not look like a cooling failure.
    pub fn trend(&self) -> Option<f64> {
        let span = match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => return None,
        };
        if self.samples.len() < 3 || span < self.window.as_secs_f64() / 4.0 {
            return None;
        }
        let all_headroom = self.samples.iter().all(|s| s.2.is_some());
        let points: Vec<(f64, f64)> = if all_headroom {
            // Headroom shrinks as heat rises; negate so that "rising" is positive.
            self.samples
                .iter()
                .map(|s| (s.0, -s.2.unwrap_or_default()))
                .collect()
        } else {
            self.samples.iter().map(|s| (s.0, s.1)).collect()
        };
        slope_per_minute(&points)
    }

    /// Full summary for the latest readings.
    pub fn summarize(&self, readings: &[Reading]) -> ThermalSummary {
        let (hottest, headroom, critical) = instant_summary(readings);
        let trend = self.trend();
        ThermalSummary {
            hottest_celsius: hottest,
            headroom_celsius: headroom,
            trend_celsius_per_minute: trend,
            time_to_critical_seconds: time_to_critical(headroom, trend),
            critical,
            ..ThermalSummary::default()
        }
    }
}

/// A threshold rule (`[[sensors.thresholds]]` in the config): override or
/// fill in the thresholds of matching sensors, or drop them.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    /// Chip pattern (`*` matches any run of characters).
    pub chip: String,
    /// Sensor pattern.
    pub sensor: String,
    /// Max threshold to set.
    pub max: Option<f64>,
    /// Critical threshold to set.
    pub critical: Option<f64>,
    /// `true`: only fill thresholds the hardware does not report.
    pub fill_only: bool,
    /// Drop matching sensors entirely (a broken probe).
    pub ignore: bool,
}

/// Does a `*` pattern match `s`?
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Apply threshold rules to readings (in place); drops ignored sensors.
pub fn apply_thresholds(rules: &[ThresholdRule], readings: &mut Vec<Reading>) {
    if rules.is_empty() {
        return;
    }
    readings.retain_mut(|r| {
        for rule in rules {
            if !glob_match(&rule.chip, &r.chip) || !glob_match(&rule.sensor, &r.sensor) {
                continue;
            }
            if rule.ignore {
                return false;
            }
            if let Some(m) = rule.max {
                if !rule.fill_only || r.max_celsius.is_none() {
                    r.max_celsius = Some(m);
                }
            }
            if let Some(c) = rule.critical {
                if !rule.fill_only || r.critical_celsius.is_none() {
                    r.critical_celsius = Some(c);
                }
            }
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        for (p, s, want) in [
            ("*", "anything", true),
            ("nvme*", "nvme_0", true),
            ("nvme*", "xnvme", false),
            ("*temp*", "platform_coretemp_0", true),
            ("temp1", "temp1", true),
            ("temp1", "temp10", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob_match(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn plausibility_table() {
        for (v, ok) in [
            (-40.0, true),
            (-40.1, false),
            (200.0, true),
            (200.1, false),
            (65261.8, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
            (45.5, true),
        ] {
            assert_eq!(plausible(v), ok, "{v}");
        }
    }

    #[test]
    fn sanitize_drops_bad_thresholds_and_bad_readings() {
        let mut r = Reading::new("nvme", "temp1", 38.0, "hwmon");
        r.max_celsius = Some(65261.8);
        r.critical_celsius = Some(84.0);
        let s = r.clone().sanitized().expect("plausible");
        assert_eq!(s.max_celsius, None);
        assert_eq!(s.critical_celsius, Some(84.0));
        r.celsius = -273.0;
        assert!(r.sanitized().is_none());
    }

    #[test]
    fn slope_table() {
        // (points, expected C/min)
        type Case<'a> = (&'a [(f64, f64)], Option<f64>);
        let cases: &[Case] = &[
            (&[], None),
            (&[(0.0, 50.0)], None),
            (&[(0.0, 50.0), (0.0, 51.0)], None),
            (&[(0.0, 50.0), (60.0, 60.0)], Some(10.0)),
            (&[(0.0, 50.0), (30.0, 50.0), (60.0, 50.0)], Some(0.0)),
            (&[(0.0, 60.0), (120.0, 50.0)], Some(-5.0)),
        ];
        for (pts, want) in cases {
            let got = slope_per_minute(pts);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{pts:?}: {g} != {w}"),
                _ => panic!("{pts:?}: {got:?} != {want:?}"),
            }
        }
    }

    #[test]
    fn time_to_critical_table() {
        let cases = [
            (Some(30.0), Some(10.0), Some(180.0)),
            (Some(30.0), Some(0.0), None),
            (Some(30.0), Some(-2.0), None),
            (Some(0.0), Some(-2.0), Some(0.0)),
            (Some(-3.0), None, Some(0.0)),
            (None, Some(10.0), None),
            (Some(10.0), None, None),
        ];
        for (h, t, want) in cases {
            assert_eq!(time_to_critical(h, t), want, "headroom {h:?} trend {t:?}");
        }
    }

    #[test]
    fn window_evicts_old_samples_and_tracks_headroom() {
        let mut w = TrendWindow::new(Duration::from_secs(60), 100);
        for i in 0..10 {
            // Rising 5 C/min, headroom falling with it.
            let t = i as f64 * 10.0;
            w.push(t, 50.0 + t / 12.0, Some(50.0 - t / 12.0));
        }
        let trend = w.trend().expect("trend");
        assert!((trend - 5.0).abs() < 1e-9, "{trend}");
        // Only samples within the last 60 s remain (t = 30..=90).
        assert_eq!(w.samples.len(), 7);
        let mut r = Reading::new("c", "t", 57.5, "file");
        r.critical_celsius = Some(100.0);
        let s = w.summarize(&[r]);
        assert_eq!(s.headroom_celsius, Some(42.5));
        let ttc = s.time_to_critical_seconds.expect("rising");
        assert!((ttc - 42.5 / 5.0 * 60.0).abs() < 1e-6);
    }

    #[test]
    fn no_trend_from_a_few_seconds_of_noise() {
        let mut w = TrendWindow::new(Duration::from_secs(120), 100);
        // Five samples 1 s apart with +-0.2 C noise: a naive fit says ~+3 C/min.
        for (i, v) in [50.0, 49.8, 50.1, 50.2, 50.2].iter().enumerate() {
            w.push(i as f64, *v, None);
        }
        assert_eq!(w.trend(), None);
        // Once the samples span a quarter of the window the trend is reported.
        for i in 5..=30 {
            w.push(i as f64, 50.0, None);
        }
        assert!(w.trend().is_some_and(|t| t.abs() < 1.0));
    }

    #[test]
    fn window_is_bounded() {
        let mut w = TrendWindow::new(Duration::from_secs(3600), 5);
        for i in 0..100 {
            w.push(i as f64, 40.0, None);
        }
        assert_eq!(w.samples.len(), 5);
    }
}

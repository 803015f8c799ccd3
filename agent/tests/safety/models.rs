//! Sensor models (readings with noise, whole degrees, true-temperature
//! curves) and room models (a job start, a cooling loss, a mains window).

use super::*;

pub(crate) fn cpu_reading(c: f64) -> Reading {
    let mut r = Reading::new("platform_coretemp_0", "temp1", c, "hwmon");
    r.label = Some("Package id 0".into());
    r.critical_celsius = Some(CPU_CRIT);
    r
}

pub(crate) fn inlet_reading(c: f64) -> Reading {
    let mut r = Reading::new("ipmi", "temp1", c, "exec");
    r.label = Some("Inlet Temp".into());
    r.critical_celsius = Some(INLET_CRIT);
    r
}

/// Deterministic noise in [-0.5, 0.5] for `(node, t)`.
pub(crate) fn noise(node: usize, t: f64, salt: u64) -> f64 {
    let mut x = (node as u64) << 40 ^ (t.to_bits()) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % 10_001) as f64 / 10_000.0 - 0.5
}

/// What a sensor shows: the true value, noise, whole degrees.
pub(crate) fn shown(node: usize, t: f64, salt: u64, c: f64) -> f64 {
    (c + noise(node, t, salt)).round()
}

/// The true temperatures of one node at one time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Temps {
    pub(crate) cpu: f64,
    pub(crate) inlet: Option<f64>,
    pub(crate) load: Option<f64>,
}

/// Readings from a true-temperature model, with noise and quantisation.
pub(crate) fn model(f: impl Fn(usize, f64) -> Temps + 'static) -> SensorFn {
    Box::new(move |node, t| {
        let m = f(node, t);
        let mut rs = vec![cpu_reading(shown(node, t, 1, m.cpu))];
        if let Some(i) = m.inlet {
            rs.push(inlet_reading(shown(node, t, 2, i)));
        }
        (rs, m.load)
    })
}

/// `0` before `at`, rising linearly to `amp` over `secs`, then `amp`.
pub(crate) fn step(t: f64, at: f64, amp: f64, secs: f64) -> f64 {
    amp * ((t - at) / secs).clamp(0.0, 1.0)
}

/// `0` before `at`, then `rate` C/min.
pub(crate) fn ramp(t: f64, at: f64, rate: f64) -> f64 {
    (t - at).max(0.0) * rate / 60.0
}

/// A job starting: CPU +`amp` within 4 s at `at`, load 0.1 -> 0.95.
pub(crate) fn job(t: f64, at: f64, amp: f64, load: bool) -> (f64, Option<f64>) {
    let rise = step(t, at, amp, 4.0);
    let l = load.then_some(if t >= at { 0.95 } else { 0.1 });
    (rise, l)
}

/// A node running a job started at `at` (see [`job`]): CPU 45 C plus the
/// job's rise, no inlet sensor.
pub(crate) fn on_job(t: f64, at: f64, amp: f64, load: bool) -> Temps {
    let (rise, load) = job(t, at, amp, load);
    Temps {
        cpu: 45.0 + rise,
        inlet: None,
        load,
    }
}

/// Node `i` of a room `d` C above its normal: CPU 55 C plus the node's
/// index, inlet 22 C, both up by `d`; load 0.5.
pub(crate) fn room(i: usize, d: f64) -> Temps {
    Temps {
        cpu: 55.0 + i as f64 + d,
        inlet: Some(22.0 + d),
        load: Some(0.5),
    }
}

/// Room-wide cooling loss from `at` at `rate` C/min: inlet and components
/// heat together.
pub(crate) fn cooling_loss(rate: f64, at: f64, inlet: bool) -> impl Fn(usize, f64) -> Temps {
    move |i, t| {
        let d = ramp(t, at, rate);
        Temps {
            inlet: inlet.then_some(22.0 + d),
            ..room(i, d)
        }
    }
}

/// Expected shutdown window of a mains loss at `at`: after the grace, within
/// the grace plus two probe intervals (plus the gossip delay and a second of
/// step resolution).
pub(crate) fn mains_window(at: f64) -> (f64, f64) {
    (at + 300.0, at + 300.0 + 2.0 * 5.0 + 3.0)
}

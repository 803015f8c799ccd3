//! Tests of `heating`.

use super::*;

fn cpu(c: f64) -> Reading {
    let mut r = Reading::new("coretemp", "temp1", c, "file");
    r.critical_celsius = Some(100.0);
    r
}

fn inlet(c: f64) -> Reading {
    let mut r = Reading::new("bmc", "inlet", c, "file");
    r.label = Some("Inlet Temp".into());
    r.critical_celsius = Some(45.0);
    r.role = Role::Inlet;
    r
}

/// Feed `f(t)` every `dt` seconds for `secs`; return the assessments.
fn run(
    dt: f64,
    secs: f64,
    f: impl Fn(f64) -> (Vec<Reading>, Option<f64>),
) -> Vec<(f64, Assessment)> {
    let mut h = HeatTracker::new(HeatConfig::default(), 1000);
    let mut out = Vec::new();
    let mut t = 0.0;
    while t <= secs {
        let (rs, load) = f(t);
        out.push((t, h.push(t, &rs, load)));
        t += dt;
    }
    out
}

#[test]
fn default_roles_table() {
    let case = |chip: &str, label: Option<&str>| {
        let mut r = Reading::new(chip, "temp1", 30.0, "x");
        r.label = label.map(str::to_string);
        default_role(&r)
    };
    assert_eq!(case("ipmi", Some("Inlet Temp")), Role::Inlet);
    assert_eq!(case("ipmi", Some("Exhaust Temp")), Role::Exhaust);
    assert_eq!(case("ipmi", Some("Ambient")), Role::Ambient);
    assert_eq!(case("thermal_zone0", Some("acpitz")), Role::Ambient);
    assert_eq!(case("platform_coretemp_0", Some("Core 0")), Role::Component);
    assert_eq!(case("inlet", None), Role::Inlet);
    assert_eq!(case("nvme_nvme0", Some("Composite")), Role::Component);
    // BMC names (ipmi source): the room's air, and air inside a part.
    assert_eq!(case("ipmi", Some("Inlet Ambient")), Role::Inlet);
    assert_eq!(case("ipmi", Some("01-Inlet Ambient")), Role::Inlet);
    assert_eq!(case("ipmi", Some("Front Ambient")), Role::Ambient);
    assert_eq!(case("ipmi", Some("Ambient Temp")), Role::Ambient);
    assert_eq!(case("ipmi", Some("Intake")), Role::Inlet);
    assert_eq!(case("ipmi", Some("Exhaust")), Role::Exhaust);
    assert_eq!(case("ipmi", Some("Temp")), Role::Component);
    assert_eq!(case("ipmi", Some("DIMMA1 Temp")), Role::Component);
    assert_eq!(case("ipmi", Some("PS1 Inlet Temp")), Role::Component);
    assert_eq!(case("ipmi", Some("PSU2 Inlet")), Role::Component);
    assert_eq!(case("ipmi", Some("RISER1_INLET_TMP")), Role::Component);
    assert_eq!(case("ipmi", Some("CPU1 Inlet")), Role::Component);
    assert_eq!(case("ipmi", Some("Inlet Temps")), Role::Inlet);
}

#[test]
fn rules_win_over_defaults() {
    let rules = vec![RoleRule {
        chip: "thermal_zone*".into(),
        sensor: "*".into(),
        label: "acpi*".into(),
        role: Role::Component,
    }];
    let mut r = Reading::new("thermal_zone0", "temp", 30.0, "x");
    r.label = Some("acpitz".into());
    let mut rs = vec![r, inlet(20.0)];
    assign_roles(&rules, &mut rs);
    assert_eq!(rs[0].role, Role::Component);
    assert_eq!(rs[1].role, Role::Inlet);
}

#[test]
fn a_step_that_levels_off_never_votes() {
    // 45 -> 80 C within 4 s, then flat: a job starting.
    for dt in [1.0, 5.0, 10.0] {
        let out = run(dt, 600.0, |t| {
            let c = if t < 60.0 {
                45.0
            } else if t < 64.0 {
                45.0 + (t - 60.0) * 35.0 / 4.0
            } else {
                80.0
            };
            (vec![cpu(c)], None)
        });
        for (t, a) in &out {
            assert!(!a.vote, "dt {dt}: voted at {t}: {a:?}");
            assert!(
                a.time_to_critical.is_none(),
                "dt {dt}: projection at {t}: {a:?}"
            );
        }
        // And the rate falls back to zero within the recent window
        // (at least RECENT_SAMPLES samples long).
        // (Without load information the window is twice as long.)
        let settled = 64.0 + (2.0 * RECENT_MIN.as_secs_f64()).max(dt * RECENT_SAMPLES as f64) + dt;
        let late = out.iter().find(|(t, _)| *t >= settled).expect("late").1;
        assert!(late.rate.is_some_and(|r| r.abs() < 0.5), "{late:?}");
    }
}

#[test]
fn a_steady_rise_votes_within_about_half_a_minute() {
    // (rate, sampling interval, latest first vote after the start)
    for (rate, dt, within) in [
        (5.0, 2.0, 35.0),
        (5.0, 5.0, 55.0),
        (10.0, 2.0, 30.0),
        (20.0, 1.0, 30.0),
        (20.0, 2.0, 30.0),
        (20.0, 5.0, 55.0),
        // Sparse sampling costs time: ten samples are needed.
        (20.0, 10.0, 100.0),
    ] {
        // The load is known and flat (the default source).
        let out = run(dt, 200.0, |t| {
            let c = if t < 60.0 {
                40.0
            } else {
                40.0 + (t - 60.0) * rate / 60.0
            };
            (vec![cpu(c.min(99.0))], Some(0.3))
        });
        let first = out.iter().find(|(_, a)| a.vote).expect("votes").0;
        assert!(
            (60.0..=60.0 + within).contains(&first),
            "{rate} C/min, dt {dt}: first vote at {first}"
        );
        let ttc = out
            .iter()
            .find(|(_, a)| a.time_to_critical.is_some())
            .expect("projection")
            .0;
        assert!(
            ttc <= first + 3.0 * dt,
            "{rate} C/min, dt {dt}: projection at {ttc}"
        );
    }
}

#[test]
fn slow_rise_votes_only_near_the_limit() {
    // 1 C/min from 50 C, critical 100: votes once the projection is
    // within the 15 min horizon (85 C), not before.
    let out = run(5.0, 3600.0, |t| (vec![cpu(50.0 + t / 60.0)], None));
    let first = out.iter().find(|(_, a)| a.vote).expect("votes").0;
    let at = 50.0 + first / 60.0;
    assert!((84.0..=87.0).contains(&at), "first vote at {at} C");
}

#[test]
fn load_step_explains_component_heating_for_the_settle_time() {
    // Load jumps 0.1 -> 0.9 at 60 s; components then rise steadily at
    // 6 C/min for two minutes (a slow heat sink), then level off.
    let out = run(5.0, 600.0, |t| {
        let load = if t < 60.0 { 0.1 } else { 0.9 };
        let c = 40.0 + ((t - 60.0).clamp(0.0, 120.0)) * 6.0 / 60.0;
        (vec![cpu(c)], Some(load))
    });
    for (t, a) in &out {
        assert!(!a.vote, "voted at {t}: {a:?}");
    }
    assert!(out.iter().any(|(_, a)| a.workload));
}

#[test]
fn heating_at_flat_load_votes_after_the_settle_time() {
    // A job started at 0; cooling fails at 300 s with the load flat.
    let out = run(5.0, 600.0, |t| {
        let load = if t < 5.0 { 0.1 } else { 0.9 };
        let c = if t < 300.0 {
            60.0
        } else {
            60.0 + (t - 300.0) * 5.0 / 60.0
        };
        (vec![cpu(c)], Some(load))
    });
    let first = out.iter().find(|(_, a)| a.vote).expect("votes").0;
    assert!((300.0..=360.0).contains(&first), "first vote at {first}");
}

#[test]
fn inlet_decides_when_present() {
    // Components jump with a job, inlet flat: no vote.
    let out = run(5.0, 400.0, |t| {
        let c = if t < 60.0 {
            40.0
        } else {
            40.0 + ((t - 60.0) * 0.5).min(40.0)
        };
        (vec![cpu(c), inlet(22.0)], None)
    });
    assert!(out.iter().all(|(_, a)| !a.vote && a.air));
    // Inlet rising 5 C/min with a load step at the same time: votes
    // (a workload does not heat the air entering the server).
    let out = run(5.0, 300.0, |t| {
        let load = if t < 60.0 { 0.1 } else { 0.9 };
        let i = if t < 60.0 {
            22.0
        } else {
            22.0 + (t - 60.0) * 5.0 / 60.0
        };
        (vec![cpu(i + 40.0), inlet(i)], Some(load))
    });
    let first = out.iter().find(|(_, a)| a.vote).expect("votes").0;
    assert!(first <= 120.0, "first vote at {first}");
}

#[test]
fn chiller_restart_a_few_degrees_does_not_vote() {
    // Inlet +4 C over 2 min (2 C/min), then back: far from the limit.
    let out = run(5.0, 600.0, |t| {
        let i = 22.0
            + if (60.0..180.0).contains(&t) {
                (t - 60.0) / 30.0
            } else if t >= 180.0 {
                (4.0 - (t - 180.0) / 60.0).max(0.0)
            } else {
                0.0
            };
        (vec![cpu(i + 35.0), inlet(i)], None)
    });
    // It may look like a cooling failure while the inlet climbs, but the
    // vote stops within a minute of the levelling off, well inside the
    // cooling grace (2 min), so the pre_fail it might start recovers.
    let votes: Vec<f64> = out
        .iter()
        .filter(|(_, a)| a.vote)
        .map(|(t, _)| *t)
        .collect();
    if let (Some(a), Some(b)) = (votes.first(), votes.last()) {
        assert!(*b <= 240.0 && b - a < 100.0, "votes from {a} to {b}");
    }
}

#[test]
fn a_heat_sink_settling_after_a_job_never_votes_even_without_load() {
    // A job starts at 60 s; the heat sink brings the CPU to its new level
    // with a time constant of 30-120 s: fast at first (35 C/tau), then
    // levelling off. No load information: the shape alone must tell
    // (up to a minute; slower heat sinks need the load, see the next
    // test).
    for tau in [20.0, 30.0, 45.0] {
        for dt in [1.0, 2.0, 5.0] {
            let out = run(dt, 900.0, |t| {
                let x = ((t - 60.0) / tau).max(0.0);
                (vec![cpu(45.0 + 35.0 * (1.0 - (-x).exp()))], None)
            });
            let v = out.iter().find(|(_, a)| a.vote);
            assert!(v.is_none(), "tau {tau}, dt {dt}: voted {v:?}");
        }
    }
}

#[test]
fn whole_degree_sensors_still_show_a_slow_steady_rise() {
    // 1 C/min on a sensor that reports whole degrees (coretemp, IPMI).
    let out = run(2.0, 3600.0, |t| {
        (vec![cpu((50.0 + t / 60.0).floor())], None)
    });
    let first = out.iter().find(|(_, a)| a.vote).expect("votes").0;
    let at = 50.0 + first / 60.0;
    assert!((83.0..=88.0).contains(&at), "first vote at {at} C");
    // 5 C/min, whole degrees, with +-0.5 C of noise on top.
    let noise = [0.0, 0.5, -0.5, 0.25, -0.25];
    let out = run(2.0, 600.0, |t| {
        let c = if t < 60.0 {
            50.0
        } else {
            50.0 + (t - 60.0) * 5.0 / 60.0
        };
        let n = noise[(t as usize / 2) % noise.len()];
        (vec![cpu((c + n).round())], None)
    });
    let first = out.iter().find(|(_, a)| a.vote).expect("votes").0;
    assert!(first <= 60.0 + 60.0, "first vote at {first}");
}

#[test]
fn noise_is_not_a_rise() {
    let noise = [0.0, 0.3, -0.2, 0.1, -0.3, 0.2, 0.0, -0.1];
    let out = run(1.0, 300.0, |t| {
        (vec![cpu(60.0 + noise[(t as usize) % noise.len()])], None)
    });
    assert!(out
        .iter()
        .all(|(_, a)| !a.vote && a.time_to_critical.is_none()));
}

#[test]
fn memory_is_bounded() {
    let mut h = HeatTracker::new(HeatConfig::default(), 50);
    for i in 0..10_000 {
        h.push(i as f64 * 0.01, &[cpu(50.0), inlet(20.0)], Some(0.5));
    }
    assert!(h.components.samples.len() <= 50);
    assert!(h.air.samples.len() <= 50);
    assert!(h.load.len() <= 50);
}

//! Workloads: no shutdown.

use super::*;

/// A room of 5 nodes with the true temperatures `sensors` for `secs`
/// seconds, mains up: no node shuts down.
async fn no_shutdown(name: &str, secs: u64, sensors: impl Fn(usize, f64) -> Temps + 'static) {
    let sc = Scenario::new(name, 5, secs)
        .sensors(sensors)
        .expect(Expect::NoShutdown);
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s01_job_start_on_all_nodes_with_load() {
    no_shutdown("job start on all nodes, with load", 900, |i, t| {
        on_job(t, 120.0, 30.0 + 2.0 * i as f64, true)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s01b_job_start_on_all_nodes_without_load() {
    no_shutdown(
        "job start on all nodes, no load information",
        900,
        |i, t| on_job(t, 120.0, 30.0 + 2.0 * i as f64, false),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn s01c_job_start_with_slow_heat_sinks() {
    // The CPUs jump 25 C with the job, then creep up another 10 C over
    // 90 s as the heat sinks warm: still a workload, not a cooling loss.
    // The load rose with the job (the agent reads it by default).
    no_shutdown("job start, slow heat-sink tail, with load", 900, |i, t| {
        Temps {
            cpu: 45.0 + step(t, 120.0, 25.0, 4.0) + step(t, 124.0, 10.0 + i as f64, 90.0),
            inlet: None,
            load: Some(if t >= 120.0 { 0.95 } else { 0.1 }),
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s01d_job_start_with_settling_heat_sinks_without_load() {
    // No load information: the jump, then the heat sinks settle the way
    // they do, exponentially (time constant 45 s, +12 C). The curve bends
    // flat, which the shape test sees.
    no_shutdown("job start, heat sinks settling, no load", 900, |i, t| {
        let x = ((t - 124.0) / 45.0).max(0.0);
        Temps {
            cpu: 45.0 + step(t, 120.0, 25.0, 4.0) + (12.0 + i as f64) * (1.0 - (-x).exp()),
            inlet: None,
            load: None,
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
#[ignore = "known limit (docs/safety.md section 5): without load information and inlet sensors, a component ramp that stays straight for 90 s toward critical is a cooling failure by its shape; the agent reads the load by default"]
async fn s01e_job_start_with_a_linear_tail_without_load() {
    no_shutdown("job start, linear 90 s tail, no load", 900, |i, t| Temps {
        cpu: 45.0 + step(t, 120.0, 25.0, 4.0) + step(t, 124.0, 10.0 + i as f64, 90.0),
        inlet: None,
        load: None,
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s02_rolling_job_start() {
    no_shutdown("rolling job start, one node every 20 s", 900, |i, t| {
        on_job(t, 120.0 + 20.0 * i as f64, 35.0, true)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s02b_rolling_job_start_without_load() {
    no_shutdown("rolling job start, no load information", 900, |i, t| {
        on_job(t, 120.0 + 20.0 * i as f64, 35.0, false)
    })
    .await;
}

/// Load and temperatures up and down every 60 s for 20 min.
fn repeated_steps(load: bool) -> impl Fn(usize, f64) -> Temps {
    move |_, t| {
        let phase = (t / 60.0).floor() as i64;
        let since = t - phase as f64 * 60.0;
        let (from, to) = if phase % 2 == 0 {
            (35.0, 0.0)
        } else {
            (0.0, 35.0)
        };
        let rise = if phase == 0 {
            0.0
        } else {
            from + (to - from) * (since / 4.0).clamp(0.0, 1.0)
        };
        let busy = phase % 2 == 1;
        Temps {
            cpu: 45.0 + rise,
            inlet: None,
            load: load.then_some(if busy { 0.95 } else { 0.1 }),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn s03_repeated_steps_for_twenty_minutes() {
    no_shutdown(
        "repeated steps every 60 s, 20 min",
        1260,
        repeated_steps(true),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn s03b_repeated_steps_without_load() {
    no_shutdown(
        "repeated steps every 60 s, no load information",
        1260,
        repeated_steps(false),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn s05_chiller_restart() {
    // Inlet +3.5 C over 150 s, back over 150 s; the CPUs follow.
    no_shutdown("chiller restart", 900, |i, t| {
        room(i, step(t, 120.0, 3.5, 150.0) - step(t, 270.0, 3.5, 150.0))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s05b_chiller_restart_cpu_sensors_only() {
    no_shutdown("chiller restart, CPU sensors only", 900, |i, t| {
        let d = step(t, 120.0, 4.0, 180.0) - step(t, 300.0, 4.0, 180.0);
        Temps {
            cpu: 60.0 + i as f64 + d,
            inlet: None,
            load: None,
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s06_crac_failover() {
    no_shutdown(
        "CRAC failover: inlet +2 C in 1 min, then flat",
        900,
        |i, t| room(i, step(t, 120.0, 2.0, 60.0)),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn s06b_slow_drift_that_stops_far_from_critical() {
    // 0.5 C/min for 12 minutes (inlet 22 -> 28), then flat.
    no_shutdown("slow drift 0.5 C/min for 12 min", 1500, |i, t| {
        room(i, step(t, 120.0, 6.0, 720.0))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s23_overheat_spikes_shorter_than_the_sustain() {
    // Node 1 touches critical for 15 s every 3 minutes.
    no_shutdown("overheat spikes of 15 s", 1200, |i, t| {
        let spike = i == 1 && (t % 180.0) >= 100.0 && (t % 180.0) < 115.0;
        Temps {
            cpu: if spike { 101.0 } else { 70.0 },
            inlet: None,
            load: None,
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn s24_bmc_dropout_during_a_job() {
    // The inlet sensors vanish for two minutes (BMC busy) while a job
    // starts; the nodes judge their components alone meanwhile.
    no_shutdown("BMC dropout during a job start", 900, |_, t| {
        let (rise, load) = job(t, 320.0, 35.0, true);
        Temps {
            cpu: 45.0 + rise,
            inlet: (!(300.0..420.0).contains(&t)).then_some(22.0),
            load,
        }
    })
    .await;
}

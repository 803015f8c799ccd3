//! Cooling failures: shutdown before critical.

use super::*;

#[tokio::test(start_paused = true)]
async fn s04_job_step_during_a_real_cooling_failure() {
    // Inlet +10 C/min from 300 s while a job starts on every node.
    let sc = Scenario::new("job step during a cooling failure (inlet)", 5, 600).sensors(|_, t| {
        let d = ramp(t, 300.0, 10.0);
        let (rise, load) = job(t, 300.0, 35.0, true);
        Temps {
            cpu: 45.0 + rise + d,
            inlet: Some(22.0 + d),
            load,
        }
    });
    let all = sc.all();
    check(sc.expect(Expect::ShutdownBeforeCritical(all))).await;
}

#[tokio::test(start_paused = true)]
async fn s04b_job_step_during_a_cooling_failure_cpu_only() {
    // Without inlet sensors the job step hides the start of the failure for
    // the load-settle time; the overheat trigger remains. Expectation: the
    // shutdown still comes before critical, the room heats 5 C/min.
    let sc =
        Scenario::new("job step during a cooling failure (CPU only)", 5, 1200).sensors(|_, t| {
            let d = ramp(t, 300.0, 5.0);
            let (rise, load) = job(t, 300.0, 20.0, true);
            Temps {
                cpu: 45.0 + rise + d,
                inlet: None,
                load,
            }
        });
    let all = sc.all();
    check(sc.expect(Expect::ShutdownBeforeCritical(all))).await;
}

async fn cooling(rate: f64, inlet: bool) {
    let name = format!(
        "room-wide cooling loss {rate} C/min ({})",
        if inlet {
            "inlet sensors"
        } else {
            "CPU sensors only"
        }
    );
    // Critical: inlet 23 C away, CPUs 41-45 C away.
    let to_crit = if inlet { 23.0 } else { 45.0 } / rate * 60.0;
    let sc = Scenario::new(&name, 5, 300 + to_crit as u64 + 120)
        .sensors(cooling_loss(rate, 300.0, inlet));
    let all = sc.all();
    check(sc.expect(Expect::ShutdownBeforeCritical(all))).await;
}

#[tokio::test(start_paused = true)]
async fn s08a_cooling_loss_1c_per_min_inlet() {
    cooling(1.0, true).await;
}

#[tokio::test(start_paused = true)]
async fn s08b_cooling_loss_1c_per_min_cpu_only() {
    cooling(1.0, false).await;
}

#[tokio::test(start_paused = true)]
async fn s08c_cooling_loss_5c_per_min_inlet() {
    cooling(5.0, true).await;
}

#[tokio::test(start_paused = true)]
async fn s08d_cooling_loss_5c_per_min_cpu_only() {
    cooling(5.0, false).await;
}

#[tokio::test(start_paused = true)]
async fn s08e_cooling_loss_10c_per_min_inlet() {
    cooling(10.0, true).await;
}

#[tokio::test(start_paused = true)]
async fn s08f_cooling_loss_10c_per_min_cpu_only() {
    cooling(10.0, false).await;
}

#[tokio::test(start_paused = true)]
async fn s08g_cooling_loss_20c_per_min_inlet() {
    cooling(20.0, true).await;
}

#[tokio::test(start_paused = true)]
async fn s08h_cooling_loss_20c_per_min_cpu_only() {
    cooling(20.0, false).await;
}

#[tokio::test(start_paused = true)]
async fn s08i_cooling_loss_mixed_room() {
    // Two nodes with inlet sensors, three without; 10 C/min.
    let sc = Scenario::new("cooling loss 10 C/min, mixed room", 5, 700).sensors(|i, t| {
        let d = ramp(t, 300.0, 10.0);
        Temps {
            cpu: 60.0 + d,
            inlet: (i < 2).then_some(22.0 + d),
            load: None,
        }
    });
    let all = sc.all();
    check(sc.expect(Expect::ShutdownBeforeCritical(all))).await;
}

#[tokio::test(start_paused = true)]
async fn s08j_cooling_loss_without_power_targets() {
    // No power probes: every sensor round is the observation.
    let sc = Scenario::new("cooling loss 10 C/min, no power targets", 5, 700)
        .targets(|_| vec![])
        .sensors(cooling_loss(10.0, 300.0, false));
    let all = sc.all();
    check(sc.expect(Expect::ShutdownBeforeCritical(all))).await;
}

async fn dense(rate: f64, headroom: f64, inlet: bool) {
    let name = format!(
        "dense rack {rate} C/min, headroom {headroom} C ({})",
        if inlet { "inlet" } else { "CPU only" }
    );
    let sc = Scenario::new(&name, 5, 600).sensors(move |_, t| {
        let d = ramp(t, 300.0, rate);
        Temps {
            cpu: if inlet { 60.0 } else { CPU_CRIT - headroom } + d,
            inlet: inlet.then_some(INLET_CRIT - headroom + d),
            load: Some(0.9),
        }
    });
    let all = sc.all();
    check(sc.expect(Expect::ShutdownBeforeCritical(all))).await;
}

#[tokio::test(start_paused = true)]
async fn s09a_dense_rack_20c_per_min_one_minute_to_critical() {
    dense(20.0, 20.0, false).await;
}

#[tokio::test(start_paused = true)]
async fn s09b_dense_rack_10c_per_min_headroom_15() {
    dense(10.0, 15.0, false).await;
}

#[tokio::test(start_paused = true)]
async fn s09c_dense_rack_20c_per_min_inlet() {
    dense(20.0, 20.0, true).await;
}

#[tokio::test(start_paused = true)]
async fn s07_hot_spot_on_one_node() {
    // Node 2's CPU rises 2 C/min from 60 C (a failed fan); the room is fine.
    let sc = Scenario::new("hot spot on one node", 5, 1700)
        .sensors(|i, t| Temps {
            cpu: if i == 2 {
                (60.0 + ramp(t, 60.0, 2.0)).min(110.0)
            } else {
                60.0
            },
            inlet: None,
            load: Some(0.5),
        })
        .expect(Expect::NoShutdownOn(vec![0, 1, 3, 4]))
        // Sustain 30 s + grace 60 s + a probe interval, counted from the
        // first (noisy) critical reading: at 2 C/min the +-0.5 C noise band
        // is 30 s wide before every reading is critical.
        .expect(Expect::ShutdownAfterCriticalWithin(
            vec![2],
            30.0 + 60.0 + 5.0 + 30.0,
        ));
    check(sc).await;
}

//! Mains power: blips, flaps, outages, local faults, reboots and restarts,
//! clock steps, a hung command, a full disk, cancel, partitions.

use super::*;

#[tokio::test(start_paused = true)]
async fn s10_ups_self_test_blips() {
    // The target is dark for one probe every 10 minutes.
    let sc = Scenario::new("UPS self-test blips", 5, 2400)
        .probes(|_, _, t| Some(!(t % 600.0 >= 300.0 && t % 600.0 < 305.0)))
        .expect(Expect::NoShutdown);
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s11_mains_flaps() {
    // Down 20 s / up 20 s for 10 minutes, then up.
    let sc = Scenario::new("mains flaps 20 s / 20 s for 10 min", 5, 1200)
        .probes(|_, _, t| Some(!((60.0..660.0).contains(&t) && ((t - 60.0) % 40.0) < 20.0)))
        .expect(Expect::NoShutdown);
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s12_mains_loss_single_circuit() {
    let (from, to) = mains_window(60.0);
    let sc = Scenario::new("mains loss, single circuit", 5, 420).probes(|_, _, t| Some(t < 60.0));
    let all = sc.all();
    check(sc.expect(Expect::ShutdownWithin(all, from, to))).await;
}

#[tokio::test(start_paused = true)]
async fn s13_mains_loss_on_one_of_two_circuits() {
    let (from, to) = mains_window(60.0);
    let sc = Scenario::new("mains loss on circuit A of two", 5, 900)
        .targets(|i| {
            vec![if i < 2 {
                "tcp://10.0.1.1:7"
            } else {
                "tcp://10.0.2.1:7"
            }]
        })
        .probes(|_, tg, t| Some(!(tg == "tcp://10.0.1.1:7" && t >= 60.0)))
        .expect(Expect::ShutdownWithin(vec![0, 1], from, to))
        .expect(Expect::NoShutdownOn(vec![2, 3, 4]));
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s13b_one_of_two_targets_dies_policy_any() {
    // Two targets per node; one device dies (not mains): policy any.
    let sc = Scenario::new("one of two targets dies, policy any", 5, 900)
        .targets(|_| vec!["tcp://10.0.0.200:7", "icmp://10.0.0.201"])
        .probes(|_, tg, t| Some(!(tg == "icmp://10.0.0.201" && t >= 60.0)))
        .expect(Expect::NoShutdown);
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s14_local_probe_fault() {
    let sc = Scenario::new("local probe fault on one node", 5, 900)
        .probes(|i, _, t| Some(!(i == 0 && t >= 60.0)))
        .expect(Expect::NoShutdown)
        .expect(Expect::EverIn(0, State::LocalFault));
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s15_all_probes_unknown_on_one_node() {
    let sc = Scenario::new("every probe unknown on one node", 5, 900)
        .probes(|i, _, t| (i != 0 || t < 60.0).then_some(true))
        .expect(Expect::NoShutdown)
        .expect(Expect::EverIn(0, State::LocalFault));
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s15b_unknown_probes_during_a_real_outage_elsewhere() {
    // Node 0 cannot probe (local errors) while the others lose mains: it
    // never shuts down on its peers' word alone; the others do.
    let (from, to) = mains_window(60.0);
    let sc = Scenario::new("unknown probes on node 0 during an outage", 5, 600)
        .probes(|i, _, t| if i == 0 { None } else { Some(t < 60.0) })
        .expect(Expect::NoShutdownOn(vec![0]))
        .expect(Expect::ShutdownWithin(vec![1, 2, 3, 4], from, to));
    check(sc).await;
}

fn pre_fail_record(boot: &str, deadline_s: i64, written_s: i64) -> Persisted {
    let at = |s: i64| Millis(T0.saturating_add_signed(s * 1000));
    let m = Machine {
        state: State::PreFail,
        reason: Reason::Power,
        trigger: Reason::Power,
        detail: "power lost".into(),
        since: at(deadline_s - 300),
        deadline: Some(at(deadline_s)),
        ..Machine::default()
    };
    Persisted::new(m, Some(boot.to_string()), at(written_s))
}

#[tokio::test(start_paused = true)]
async fn s16a_reboot_after_unfinished_shutdown_mains_back() {
    let mut sc = Scenario::new("reboot mid-grace, mains back", 3, 120)
        .expect(Expect::NoShutdown)
        // Two good probes: the first at 1-3 s, the second 5 s later.
        .expect(Expect::StateAt(vec![0, 1, 2], 10.0, State::Normal));
    sc.persisted = Some(pre_fail_record("old", -60, -61));
    sc.boot = "new".into();
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s16b_reboot_after_unfinished_shutdown_mains_still_down() {
    let mut sc = Scenario::new("reboot mid-grace, mains still down", 3, 120)
        .probes(|_, _, _| Some(false))
        .expect(Expect::Check(Box::new(|o| {
            for (i, n) in o.nodes.iter().enumerate() {
                let first = n.first_observe_at.ok_or("no observation")?;
                let at = n.shutdown_at.ok_or(format!("node {i} never shut down"))?;
                if at < first || at > first + 0.5 {
                    return Err(format!(
                        "node {i} shut down at {at}s, first observation at {first}s"
                    ));
                }
            }
            Ok(())
        })));
    sc.persisted = Some(pre_fail_record("old", -60, -61));
    sc.boot = "new".into();
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s17a_agent_restart_deadline_passed_probe_up() {
    // Same boot; the deadline passed while the agent was down. The first
    // probe round (at 1 s) sees mains up: that round decides.
    let mut sc = Scenario::new("agent restart, deadline passed, probe up", 1, 120)
        .expect(Expect::NoShutdown)
        .expect(Expect::StateAt(vec![0], 60.0, State::Normal));
    sc.persisted = Some(pre_fail_record("boot-1", -10, -20));
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s17b_agent_restart_deadline_passed_no_observation() {
    // Same boot, deadline passed, and no probe round ever answers: the
    // shutdown goes ahead after restore_wait (3 s).
    let mut sc = Scenario::new("agent restart, deadline passed, no observation", 1, 60)
        .expect(Expect::ShutdownWithin(vec![0], 3.0, 3.5));
    sc.persisted = Some(pre_fail_record("boot-1", -10, -20));
    sc.silent = vec![0];
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s18a_ntp_steps_during_pre_fail() {
    // +1 h at 150 s, -1 h (from the true time) at 250 s: every wall-clock
    // derived input (record timestamps, probe times) jumps; the shutdown
    // stays where the supervisor's clock puts it.
    let (from, to) = mains_window(60.0);
    let mut sc = Scenario::new("NTP steps +1 h / -1 h during pre_fail", 5, 420)
        .probes(|_, _, t| Some(t < 60.0));
    sc.wall_offset = Box::new(|t| {
        if t >= 250.0 {
            -3_600_000
        } else if t >= 150.0 {
            3_600_000
        } else {
            0
        }
    });
    let all = sc.all();
    check(sc.expect(Expect::ShutdownWithin(all, from, to))).await;
}

#[tokio::test(start_paused = true)]
async fn s18b_maintenance_requested_after_a_step_back() {
    // Mains lost at 60 s; the wall clock steps back 1 h at 150 s; at 200 s
    // the operator asks for 30 min of maintenance: honoured, no shutdown.
    let mut sc = Scenario::new("maintenance after an NTP step back", 3, 1500)
        .probes(|_, _, t| Some(t < 60.0))
        .expect(Expect::NoShutdown)
        .expect(Expect::StateAt(vec![0, 1, 2], 1400.0, State::Maintenance));
    sc.wall_offset = Box::new(|t| if t >= 150.0 { -3_600_000 } else { 0 });
    for i in 0..3 {
        sc = sc.operator(
            200,
            i,
            Event::MaintenanceFor {
                duration: Duration::from_secs(1800),
            },
        );
    }
    check(sc).await;
}

#[tokio::test(start_paused = true)]
async fn s19_hung_shutdown_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("started");
    let p = dir.path().join("pid");
    let log = dir.path().join("overlap");
    let script = format!(
        "if [ -e '{f}' ]; then if kill -0 \"$(cat '{p}')\" 2>/dev/null; then echo overlap >> '{log}'; fi; exit 0; fi; touch '{f}'; echo $$ > '{p}'; exec sleep 1000",
        f = f.display(),
        p = p.display(),
        log = log.display()
    );
    let mut sc = Scenario::new("hung shutdown command", 1, 420).probes(|_, _, t| Some(t < 10.0));
    sc.clock = Clock::Advance;
    sc.shutdown = ShutdownConfig {
        command: vec!["sh".into(), "-c".into(), script],
        command_timeout: Duration::from_secs(30),
        dry_run: false,
        ..ShutdownConfig::default()
    };
    let o = check(sc.expect(Expect::ShutdownWithin(vec![0], 310.0, 320.0))).await;
    let n = &o.nodes[0];
    let m = &n.machine;
    assert_eq!(
        (
            m.exec.attempts,
            m.exec.failures,
            m.exec.done,
            m.exec.in_flight
        ),
        (2, 1, true, false),
        "{}",
        o.summary()
    );
    assert!(!log.exists(), "the command ran twice at once");
    let first = n.first_attempt_at.expect("attempt");
    let second = secs(m.exec.last_attempt_at.expect("second attempt"));
    assert!(
        second >= first + 30.0 + 5.0 - 1.0,
        "retry at {second}s, first attempt at {first}s"
    );
}

#[tokio::test(start_paused = true)]
async fn s20_disk_full_while_persisting() {
    let (from, to) = mains_window(60.0);
    let mut sc = Scenario::new("state directory unwritable", 3, 420)
        .probes(|_, _, t| Some(t < 60.0))
        .expect(Expect::Check(Box::new(|o| {
            for (i, n) in o.nodes.iter().enumerate() {
                if n.persist_failures == 0 {
                    return Err(format!("node {i}: no persist failure counted"));
                }
            }
            Ok(())
        })));
    sc.unwritable_state = true;
    let all = sc.all();
    check(sc.expect(Expect::ShutdownWithin(all, from, to))).await;
}

#[tokio::test(start_paused = true)]
async fn s21_cancel_power_then_a_cooling_loss() {
    // Mains lost at 60 s for good; the operator cancels at 120 s (power
    // held); at 600 s the cooling fails (inlet +5 C/min): its own grace.
    let mut sc = Scenario::new("cancel power pre_fail, later cooling loss", 5, 1000)
        .probes(|_, _, t| Some(t < 60.0))
        .sensors(cooling_loss(5.0, 600.0, true))
        .expect(Expect::StateAt(vec![0, 1, 2, 3, 4], 500.0, State::Normal));
    for i in 0..5 {
        sc = sc.operator(120, i, Event::Cancel);
    }
    let all = sc.all();
    check(
        sc.expect(Expect::ShutdownBeforeCritical(all.clone()))
            .expect(Expect::Check(Box::new(|o| {
                for (i, n) in o.nodes.iter().enumerate() {
                    if n.shutdown_at.is_some_and(|s| s < 600.0) {
                        return Err(format!("node {i} shut down during the hold"));
                    }
                    if n.machine.reason != Reason::Cooling && n.machine.reason != Reason::Prediction
                    {
                        return Err(format!("node {i} shut down for {}", n.machine.reason));
                    }
                }
                Ok(())
            }))),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn s22_partition_during_mains_loss() {
    // Node 0 loses its peers mid-grace (suspect at 200 s, dead at 260 s).
    let (from, to) = mains_window(60.0);
    let sc = Scenario::new("peer partition during a mains loss", 5, 420)
        .probes(|_, _, t| Some(t < 60.0))
        .liveness(|i, j, t| {
            if (i == 0 || j == 0) && t >= 260.0 {
                Liveness::Dead
            } else if (i == 0 || j == 0) && t >= 200.0 {
                Liveness::Suspect
            } else {
                Liveness::Alive
            }
        });
    let all = sc.all();
    check(sc.expect(Expect::ShutdownWithin(all, from, to))).await;
}

#[tokio::test(start_paused = true)]
async fn s22b_isolated_node_during_mains_loss() {
    // Node 0 has been cut off from its peers all along: it trusts its own
    // probe.
    let (from, to) = mains_window(60.0);
    let sc = Scenario::new("isolated node during a mains loss", 5, 420)
        .probes(|_, _, t| Some(t < 60.0))
        .liveness(|i, j, _| {
            if i == 0 || j == 0 {
                Liveness::Dead
            } else {
                Liveness::Alive
            }
        });
    let all = sc.all();
    check(sc.expect(Expect::ShutdownWithin(all, from, to))).await;
}

#[tokio::test(start_paused = true)]
async fn s25_slow_gossip_during_mains_loss() {
    // Records take 8 s to spread: corroboration is late, the grace is not.
    let (from, to) = mains_window(60.0);
    let mut sc = Scenario::new("slow gossip (8 s) during a mains loss", 5, 420)
        .probes(|_, _, t| Some(t < 60.0));
    sc.gossip_delay = 8;
    let all = sc.all();
    check(sc.expect(Expect::ShutdownWithin(all, from, to + 8.0))).await;
}

#[tokio::test(start_paused = true)]
async fn s26_mains_loss_during_a_job_start() {
    // Both at once: the job must neither hide nor hasten the power grace.
    let (from, to) = mains_window(60.0);
    let sc = Scenario::new("mains loss during a job start", 5, 420)
        .probes(|_, _, t| Some(t < 60.0))
        .sensors(|_, t| on_job(t, 60.0, 35.0, true));
    let all = sc.all();
    check(sc.expect(Expect::ShutdownWithin(all, from, to))).await;
}

//! SWIM between real agents on loopback (`cluster.swim`, docs/scale.md
//! steps 1 and 2): a member killed with -9 is dead on every SWIM member
//! within 10 s although record age alone would take 40 s here, and a
//! member that does not run SWIM (an older agent) is never probed and
//! never declared dead by it. Where every member runs SWIM, records are
//! made only when something worth it changes, a power loss still reaches
//! every member at once, and a crash is still dead within 10 s.

mod common;
use common::*;
use std::time::{Duration, Instant};

const TOKEN: &str = "swim-test-token-0123456789";

/// Record-age liveness set slow on purpose (suspect 20 s, dead 40 s): only
/// SWIM can make a killed member dead within the test's 10 s.
fn config(dir: &std::path::Path, name: &str, power: u16, seed: Option<u16>, swim: bool) -> String {
    config_with(
        dir,
        name,
        power,
        seed,
        swim,
        "suspect_after = \"20s\"\ndead_after = \"40s\"\n",
    )
}

fn config_with(
    dir: &std::path::Path,
    name: &str,
    power: u16,
    seed: Option<u16>,
    swim: bool,
    timeouts: &str,
) -> String {
    let extra = format!("{timeouts}{}", if swim { "swim = true\n" } else { "" });
    let path = write_cluster_config(&ClusterNodeConfig {
        dir,
        name,
        token: TOKEN,
        cluster: "swim-it",
        p2p: 0,
        seed,
        power_port: power,
        extra_cluster: &extra,
    });
    path.to_str().expect("utf-8 path").to_string()
}

fn liveness_of(a: &Agent, node: &str) -> Option<String> {
    get_json(a, "/v1/peers")
        .as_array()?
        .iter()
        .find(|p| p["node"] == node)
        .and_then(|p| p["liveness"].as_str().map(str::to_string))
}

/// Whether every agent (`names[i]` is `agents[i]`) sees every other one
/// as `ok` says, from its `/v1/peers` entry.
fn all_see_all(agents: &[Agent], names: &[&str], ok: impl Fn(&serde_json::Value) -> bool) -> bool {
    agents.iter().enumerate().all(|(i, a)| {
        names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .all(|(_, n)| peer(a, n).is_some_and(|p| ok(&p)))
    })
}

/// Until every agent sees every other alive.
fn wait_full_view(agents: &[Agent], names: &[&str]) {
    wait_for("a full view everywhere", Duration::from_secs(30), || {
        all_see_all(agents, names, |p| p["liveness"] == "alive").then_some(())
    });
}

/// kill -9 `agents[victim]` (named `name`); every agent before it in the
/// list must see it dead within 10 s.
fn kill_and_time_death(agents: &mut [Agent], victim: usize, name: &str) {
    agents[victim].child.kill().expect("kill -9");
    let _ = agents[victim].child.wait();
    let killed = Instant::now();
    wait_for(
        "the killed agent dead everywhere",
        Duration::from_secs(15),
        || {
            agents[..victim]
                .iter()
                .all(|a| liveness_of(a, name).as_deref() == Some("dead"))
                .then_some(())
        },
    );
    let detect = killed.elapsed();
    eprintln!("{name} dead on every SWIM member after {detect:?}");
    assert!(
        detect < Duration::from_secs(10),
        "SWIM declares a crash within 10 s, took {detect:?}"
    );
}

fn metrics(a: &Agent) -> String {
    let (st, body) = http(a.addr, "GET", "/metrics", None);
    assert_eq!(st, 200, "{body}");
    body
}

#[test]
fn a_killed_swim_member_is_dead_everywhere_within_10s_and_others_are_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let power = PowerTarget::new();
    let names = ["s1", "s2", "s3", "old"];
    let dirs: Vec<_> = names.iter().map(|n| tmp.path().join(n)).collect();
    let start = |cfg: &str| start_agent(&["--config", cfg, "--cluster.name", "swim-it"]);

    let mut first = start(&config(&dirs[0], "s1", power.port, None, true));
    let seed = first.p2p_port();
    let mut agents = vec![first];
    for (i, n) in names.iter().enumerate().skip(1) {
        let swim = *n != "old";
        agents.push(start(&config(&dirs[i], n, power.port, Some(seed), swim)));
    }

    wait_full_view(&agents, &names);
    // The SWIM members probe each other and only each other: the agent
    // without SWIM is not in their rotation and receives no datagram.
    wait_for(
        "SWIM rotation of 2 on s1 and s2",
        Duration::from_secs(15),
        || {
            agents[..2]
                .iter()
                .all(|a| metric(&metrics(a), "coolmesh_swim_members ") == Some(2.0))
                .then_some(())
        },
    );
    wait_for("SWIM datagrams reach s1", Duration::from_secs(10), || {
        metric(
            &metrics(&agents[0]),
            "coolmesh_swim_datagrams_total{direction=\"in\"}",
        )
        .filter(|v| *v > 0.0)
    });
    let old = metrics(&agents[3]);
    assert_eq!(
        metric(&old, "coolmesh_swim_datagrams_total{direction=\"in\"}"),
        Some(0.0),
        "the agent without SWIM is never probed"
    );
    assert_eq!(metric(&old, "coolmesh_swim_members "), Some(0.0));

    // Five seconds of SWIM rounds: nobody is declared down, above all not
    // the member that never answers SWIM.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for a in &agents[..3] {
            assert_eq!(liveness_of(a, "old").as_deref(), Some("alive"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for a in &agents[..2] {
        assert_eq!(metric(&metrics(a), "coolmesh_swim_down_total "), Some(0.0));
    }

    // kill -9 s3: dead on s1 and s2 within 10 s (record age: 40 s).
    kill_and_time_death(&mut agents, 2, "s3");
    // The agent without SWIM judges by record age (suspect at 20 s): s3 is
    // not dead there yet, which shows SWIM made the difference.
    assert_ne!(liveness_of(&agents[3], "s3").as_deref(), Some("dead"));
    for a in &agents[..2] {
        let m = metrics(a);
        assert!(
            metric(&m, "coolmesh_swim_down_total ").is_some_and(|v| v >= 1.0),
            "{m}"
        );
        assert_eq!(liveness_of(a, "old").as_deref(), Some("alive"));
    }
    drop(power);
}

fn peer(a: &Agent, node: &str) -> Option<serde_json::Value> {
    get_json(a, "/v1/peers")
        .as_array()?
        .iter()
        .find(|p| p["node"] == node)
        .cloned()
}

#[test]
fn where_every_member_runs_swim_records_change_on_change_and_a_power_loss_spreads_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut power = PowerTarget::new();
    let names = ["a1", "a2", "a3"];
    let dirs: Vec<_> = names.iter().map(|n| tmp.path().join(n)).collect();
    let start = |cfg: &str| start_agent(&["--config", cfg, "--cluster.name", "swim-it"]);
    // The default record-age timeouts (4 s / 8 s): for members that run
    // SWIM they become 90 s / 180 s, so only SWIM can see the crash below.
    let mut first = start(&config_with(&dirs[0], "a1", power.port, None, true, ""));
    let seed = first.p2p_port();
    let mut agents = vec![first];
    for (i, n) in names.iter().enumerate().skip(1) {
        agents.push(start(&config_with(
            &dirs[i],
            n,
            power.port,
            Some(seed),
            true,
            "",
        )));
    }
    wait_full_view(&agents, &names);

    // Constant sensors, a target probed every 500 ms: before, a record a
    // probe; now none for 6 s, and nobody turns suspect for it.
    std::thread::sleep(Duration::from_secs(2));
    let before = peer(&agents[0], "a2").expect("a2")["version"].clone();
    std::thread::sleep(Duration::from_secs(6));
    let after = peer(&agents[0], "a2").expect("a2");
    assert_eq!(
        after["version"], before,
        "no new record without a change: {after}"
    );
    assert_eq!(after["liveness"], "alive", "{after}");

    // The target goes dark: every member sees every other's vote within
    // the probe interval (500 ms) + its timeout (300 ms) + 2 s.
    let dark = Instant::now();
    power.off();
    wait_for(
        "every vote down everywhere",
        Duration::from_secs(15),
        || all_see_all(&agents, &names, |p| p["power_up"] == false).then_some(()),
    );
    let spread = dark.elapsed();
    eprintln!("power loss seen in every member's vote after {spread:?}");
    assert!(
        spread < Duration::from_millis(2800) + Duration::from_secs(1),
        "power-loss corroboration within probe interval + timeout + 2 s (and 1 s of slack), took {spread:?}"
    );

    // kill -9 a3: dead on a1 and a2 within 10 s (record age: 180 s).
    kill_and_time_death(&mut agents, 2, "a3");
}

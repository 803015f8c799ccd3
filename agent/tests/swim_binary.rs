//! SWIM between real agents on loopback (`cluster.swim`, docs/scale.md
//! step 1): a member killed with -9 is dead on every SWIM member within
//! 10 s although record age alone would take 40 s here, and a member that
//! does not run SWIM (an older agent) is never probed and never declared
//! dead by it.

mod common;
use common::*;
use std::time::{Duration, Instant};

const TOKEN: &str = "swim-test-token-0123456789";

/// Record-age liveness set slow on purpose (suspect 20 s, dead 40 s): only
/// SWIM can make a killed member dead within the test's 10 s.
fn config(dir: &std::path::Path, name: &str, power: u16, seed: Option<u16>, swim: bool) -> String {
    let extra = format!(
        "suspect_after = \"20s\"\ndead_after = \"40s\"\n{}",
        if swim { "swim = true\n" } else { "" }
    );
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

    wait_for("a full view everywhere", Duration::from_secs(30), || {
        agents
            .iter()
            .enumerate()
            .all(|(i, a)| {
                names
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .all(|(_, n)| liveness_of(a, n).as_deref() == Some("alive"))
            })
            .then_some(())
    });
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

    // kill -9 s3.
    agents[2].child.kill().expect("kill -9");
    let _ = agents[2].child.wait();
    let killed = Instant::now();
    wait_for("s3 dead on s1 and s2", Duration::from_secs(15), || {
        agents[..2]
            .iter()
            .all(|a| liveness_of(a, "s3").as_deref() == Some("dead"))
            .then_some(())
    });
    let detect = killed.elapsed();
    eprintln!("s3 dead on every SWIM member after {detect:?}");
    assert!(
        detect < Duration::from_secs(10),
        "SWIM declares a crash within 10 s, took {detect:?}"
    );
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

//! Five real agents on loopback: bootstrap and convergence, counters that
//! converge to the exact sum, kill -9 and restart without losing counts,
//! death detection, and corroboration (a node that alone cannot see the
//! power target goes to local_fault, not pre_fail).

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "cluster-test-token-0123456789";

struct Node {
    name: String,
    dir: std::path::PathBuf,
}

/// Every agent listens on an ephemeral libp2p port (`tcp/0`); the others
/// bootstrap from the seed's real port, read from its log.
fn config(node: &Node, target_port: u16, seed: Option<u16>) -> std::path::PathBuf {
    write_cluster_config(&ClusterNodeConfig {
        dir: &node.dir,
        name: &node.name,
        token: TOKEN,
        cluster: "it",
        p2p: 0,
        seed,
        power_port: target_port,
        extra_cluster: "",
    })
}

fn json(a: &Agent, path: &str) -> serde_json::Value {
    get_json(a, path)
}

fn alive_peers(a: &Agent) -> usize {
    json(a, "/v1/peers")
        .as_array()
        .map(|ps| ps.iter().filter(|p| p["liveness"] == "alive").count())
        .unwrap_or(0)
}

fn counter(a: &Agent, name: &str) -> Option<i64> {
    json(a, "/v1/counters")
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?["value"]
        .as_i64()
}

fn start(_node: &Node, cfg: &Path) -> Agent {
    // A --cluster.* flag keeps the helper from overriding the configured ports.
    start_agent(&["--config", cfg.to_str().expect("p"), "--cluster.name", "it"])
}

#[test]
fn five_agents_converge_count_survive_kill9_and_corroborate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut power = PowerTarget::new();
    let power_port = power.port;
    // Node 5 watches its own target, which the test will darken for it alone.
    let mut lonely = PowerTarget::new();
    let lonely_port = lonely.port;

    let nodes: Vec<Node> = (1..=5)
        .map(|i| Node {
            name: format!("n{i}"),
            dir: tmp.path().join(format!("n{i}")),
        })
        .collect();
    let seed_cfg = config(&nodes[0], power_port, None);
    let mut seed_agent = start(&nodes[0], &seed_cfg);
    let seed = seed_agent.p2p_port();
    let mut cfgs = vec![seed_cfg];
    let mut agents = vec![seed_agent];
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let cfg = config(n, if i == 4 { lonely_port } else { power_port }, Some(seed));
        agents.push(start(n, &cfg));
        cfgs.push(cfg);
    }

    // Bootstrap through one seed, then a full view everywhere.
    let started = std::time::Instant::now();
    wait_for("5-node convergence", Duration::from_secs(30), || {
        agents.iter().all(|a| alive_peers(a) == 4).then_some(())
    });
    eprintln!("converged in {:?}", started.elapsed());

    // Concurrent increments on every node converge to the exact sum.
    std::thread::scope(|s| {
        for a in &agents {
            let addr = a.addr;
            s.spawn(move || {
                for _ in 0..20 {
                    let (st, body) =
                        http(addr, "POST", "/v1/counters/jobs/inc?amount=1", Some(TOKEN));
                    assert_eq!(st, 200, "{body}");
                }
            });
        }
    });
    wait_for("sum 100 everywhere", Duration::from_secs(15), || {
        agents
            .iter()
            .all(|a| counter(a, "jobs") == Some(100))
            .then_some(())
    });

    // kill -9 one agent: its peers declare it dead within 10 s (+ slack for
    // a loaded test machine), its record stays visible, marked stale.
    let victim = 2;
    agents[victim].child.kill().expect("kill -9");
    let _ = agents[victim].child.wait();
    let killed = std::time::Instant::now();
    wait_for("dead on every peer", Duration::from_secs(20), || {
        agents
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .all(|(_, a)| {
                json(a, "/v1/peers").as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["node"] == "n3" && p["liveness"] == "dead" && p["stale"] == true)
                })
            })
            .then_some(())
    });
    let detect = killed.elapsed();
    eprintln!("death detected everywhere in {detect:?}");
    // The dead node's counts are still in the totals.
    assert!(agents
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .all(|(_, a)| counter(a, "jobs") == Some(100)));

    // Restart it from the same state directory: nothing lost, and it counts on.
    agents[victim] = start(&nodes[victim], &cfgs[victim]);
    wait_for("restarted node back", Duration::from_secs(20), || {
        (alive_peers(&agents[victim]) == 4).then_some(())
    });
    let local = json(&agents[victim], "/v1/counters")
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"] == "jobs")
                .and_then(|c| c["local"].as_i64())
        });
    assert_eq!(local, Some(20), "the restarted node kept its own slot");
    let (st, _) = http(
        agents[victim].addr,
        "POST",
        "/v1/counters/jobs/inc?amount=5",
        Some(TOKEN),
    );
    assert_eq!(st, 200);
    wait_for("sum 105 everywhere", Duration::from_secs(15), || {
        agents
            .iter()
            .all(|a| counter(a, "jobs") == Some(105))
            .then_some(())
    });

    // Per-target corroboration: node 5 probes a target of its own (another
    // circuit) and loses it, while its four peers see *their* target up.
    // Their "up" is no vote on node 5's mains: it trusts its own probe,
    // enters pre_fail and, after the 2 s grace, shuts down (dry run). The
    // other nodes carry on.
    lonely.off();
    let s = wait_for(
        "node 5 pre_fail or shutdown",
        Duration::from_secs(10),
        || {
            let s = json(&agents[4], "/v1/state");
            (s["fsm"]["state"] == "pre_fail" || s["fsm"]["state"] == "shutdown").then_some(s)
        },
    );
    assert_eq!(s["fsm"]["reason"], "power", "{s}");
    wait_for("node 5 dry-run shutdown", Duration::from_secs(15), || {
        nodes[4].dir.join("marker").exists().then_some(())
    });
    for a in &agents[..4] {
        assert_eq!(json(a, "/v1/state")["fsm"]["state"], "normal");
    }
    for n in &nodes[..4] {
        assert!(!n.dir.join("marker").exists(), "{} shut down", n.name);
    }
    // Cluster-wide votes: four nodes see the shared power node up.
    let m = http(agents[0].addr, "GET", "/metrics", None).1;
    assert_eq!(metric(&m, &format!("coolmesh_cluster_power_votes{{target=\"tcp://127.0.0.1:{power_port}\",vote=\"up\"}}")), Some(4.0), "{m}");
    assert_eq!(
        metric(&m, "coolmesh_cluster_peers{state=\"alive\"}"),
        Some(4.0)
    );

    // Mains loss for everyone: every node agrees and enters pre_fail.
    power.off();
    for a in &agents[..4] {
        wait_for("pre_fail on mains loss", Duration::from_secs(10), || {
            let s = json(a, "/v1/state");
            (s["fsm"]["state"] == "pre_fail" || s["fsm"]["state"] == "shutdown").then_some(())
        });
    }
    drop(agents);
}

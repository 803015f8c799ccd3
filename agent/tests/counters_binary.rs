//! Counters with real agents: a node that loses `counters.json` (its
//! identity survives) gets its slot back from its peers, even though its
//! new record's version is newer than the one peers hold; too many names is
//! a clear 409 with the limit.

mod common;
use common::*;

use std::time::Duration;

const TOKEN: &str = "counters-token-0123456789abcdef";

fn counter(a: &Agent, name: &str) -> Option<(i64, i64)> {
    let v = get_json(a, "/v1/counters");
    let c = v.as_array()?.iter().find(|c| c["name"] == name)?;
    Some((c["value"].as_i64()?, c["local"].as_i64()?))
}

#[test]
fn a_lost_counters_file_is_recovered_from_peers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let power = PowerTarget::new();
    let power_port = power.port;
    let cfg = |name: &str, seed: Option<u16>| {
        write_cluster_config(&ClusterNodeConfig {
            dir: &tmp.path().join(name),
            name,
            token: TOKEN,
            cluster: "counters",
            p2p: 0,
            seed,
            power_port,
            extra_cluster: "",
        })
    };
    let start = |c: &std::path::Path| {
        start_agent(&[
            "--config",
            c.to_str().expect("p"),
            "--cluster.name",
            "counters",
        ])
    };
    let seed_cfg = cfg("seed", None);
    let mut seed = start(&seed_cfg);
    let port = seed.p2p_port();
    let node_cfg = cfg("node", Some(port));
    let mut node = start(&node_cfg);
    for _ in 0..7 {
        let (st, body) = http(node.addr, "POST", "/v1/counters/jobs/inc", Some(TOKEN));
        assert_eq!(st, 200, "{body}");
    }
    wait_for("7 on the seed", Duration::from_secs(15), || {
        (counter(&seed, "jobs") == Some((7, 0))).then_some(())
    });

    // The node dies and loses its counters file; its identity survives.
    node.child.kill().expect("kill");
    let _ = node.child.wait();
    let file = tmp.path().join("node/state/counters.json");
    std::fs::remove_file(&file).expect("counters.json existed");
    assert!(tmp.path().join("node/state/identity.key").exists());
    let node = start(&node_cfg);
    // Its slot comes back from the seed: local 7, total 7 (not 0, not 14).
    wait_for("the slot recovered", Duration::from_secs(15), || {
        (counter(&node, "jobs") == Some((7, 7))).then_some(())
    });
    assert!(file.exists(), "recovered slots are persisted");
    // And increments continue from there, everywhere.
    let (st, body) = http(node.addr, "POST", "/v1/counters/jobs/inc", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    wait_for("8 everywhere", Duration::from_secs(15), || {
        (counter(&seed, "jobs") == Some((8, 0)) && counter(&node, "jobs") == Some((8, 8)))
            .then_some(())
    });
}

#[test]
fn too_many_counter_names_is_a_409_with_the_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("token"), TOKEN).expect("token");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nstate_dir = \"{d}/state\"\n[http]\ntoken_file = \"{d}/token\"\n[sensors]\nsysfs = \"{f}\"\n[cluster]\nenabled = false\n",
            d = tmp.path().display(),
            f = fixtures().join("sysfs").display()
        ),
    )
    .expect("config");
    let a = start_agent(&["--config", cfg.to_str().expect("p"), "--dry-run"]);
    let limit = coolmesh_agent::counter_store::MAX_USER_NAMES;
    for i in 0..limit {
        let (st, body) = http(
            a.addr,
            "POST",
            &format!("/v1/counters/c{i}/inc"),
            Some(TOKEN),
        );
        assert_eq!(st, 200, "{i}: {body}");
    }
    let (st, body) = http(a.addr, "POST", "/v1/counters/one-too-many/inc", Some(TOKEN));
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("at most 256"), "{body}");
    // An existing name still works.
    let (st, body) = http(a.addr, "POST", "/v1/counters/c0/inc", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
}

//! Prometheus HTTP service discovery on real agents: three agents on
//! loopback publish their HTTP addresses in their records (key 12), and
//! every one of them lists the whole room at `GET /v1/http_sd`, exactly in
//! Prometheus' format; a member gone past `cluster.retention` leaves the
//! list.

mod common;
use common::*;
use std::time::Duration;

const TOKEN: &str = "http-sd-test-token-0123456789";

fn alive_peers(a: &Agent) -> usize {
    get_json(a, "/v1/peers")
        .as_array()
        .map(|ps| ps.iter().filter(|p| p["liveness"] == "alive").count())
        .unwrap_or(0)
}

#[test]
fn every_agent_lists_the_room_for_prometheus() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let power = PowerTarget::new();
    let mut agents: Vec<Agent> = Vec::new();
    let mut seed = None;
    for i in 1..=3 {
        let dir = tmp.path().join(format!("n{i}"));
        let cfg = write_cluster_config(&ClusterNodeConfig {
            dir: &dir,
            name: &format!("n{i}"),
            token: TOKEN,
            cluster: "sd",
            p2p: 0,
            seed,
            power_port: power.port,
            // Dead peers are forgotten 2 s after they die (default 1 h).
            extra_cluster: "retention = \"2s\"",
        });
        if i == 3 {
            // n3 is scraped by a name of its own (NAT, another network).
            let text = std::fs::read_to_string(&cfg).expect("read config");
            let text = text.replacen(
                "[http]\n",
                "[http]\nadvertise = \"srv3.room.example:10027\"\n",
                1,
            );
            std::fs::write(&cfg, text).expect("write config");
        }
        let mut a = start_agent(&[
            "--config",
            cfg.to_str().expect("utf8"),
            "--cluster.name",
            "sd",
        ]);
        if seed.is_none() {
            seed = Some(a.p2p_port());
        }
        agents.push(a);
    }
    wait_for("3-node convergence", Duration::from_secs(30), || {
        agents.iter().all(|a| alive_peers(a) == 2).then_some(())
    });

    let peer_id = |a: &Agent| {
        get_json(a, "/v1/state")["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_string()
    };
    let group = |node: &str, target: String, peer: String| {
        serde_json::json!({
            "targets": [target],
            "labels": {
                "__meta_coolmesh_node": node,
                "__meta_coolmesh_cluster": "sd",
                "__meta_coolmesh_peer_id": peer,
            }
        })
    };
    let want = serde_json::Value::Array(vec![
        group("n1", agents[0].addr.to_string(), peer_id(&agents[0])),
        group("n2", agents[1].addr.to_string(), peer_id(&agents[1])),
        group("n3", "srv3.room.example:10027".into(), peer_id(&agents[2])),
    ]);
    for a in &agents {
        // The peers' records carry the addresses once they converged; a
        // record may still be one version behind for a moment.
        wait_for("the whole room in http_sd", Duration::from_secs(10), || {
            (get_json(a, "/v1/http_sd") == want).then_some(())
        });
        let (st, m) = http(a.addr, "GET", "/metrics", None);
        assert_eq!(st, 200);
        assert_eq!(
            metric(&m, "coolmesh_http_sd_members_without_address"),
            Some(0.0)
        );
    }
    let (st, _) = http(agents[0].addr, "POST", "/v1/http_sd", Some(TOKEN));
    assert_eq!(st, 405);

    // n2 stops: dead after `dead_after`, forgotten `retention` later, and
    // then no longer a target.
    let mut n2 = agents.remove(1);
    let _ = n2.child.kill();
    let _ = n2.child.wait();
    let without_n2 = serde_json::Value::Array(vec![want[0].clone(), want[2].clone()]);
    for a in &agents {
        wait_for("n2 gone from http_sd", Duration::from_secs(30), || {
            (get_json(a, "/v1/http_sd") == without_n2).then_some(())
        });
    }
}

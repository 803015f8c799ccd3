//! Staged shutdown with real agents on loopback (dry-run markers): two
//! stage-0 nodes (compute) and one stage-1 node (storage) lose mains
//! together.
//!
//! 1. The storage node's own grace ends first (2 s against 4 s), yet its
//!    marker appears only after both compute markers: it holds its command
//!    while they are still going down, and says so (`/v1/state`).
//! 2. With a compute node that hangs in `pre_fail` (a 10-minute grace: alive,
//!    going down, never done) and `stage_timeout` 3 s, the storage node still
//!    shuts down, at its grace plus the stage timeout, not never.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "stages-test-token-0123456789";

/// A node's config: the helper's cluster config, with its own grace and
/// stage lines in `[shutdown]`.
fn config(
    dir: &Path,
    name: &str,
    power_port: u16,
    seed: Option<u16>,
    grace: &str,
    stage: u32,
    stage_timeout: &str,
) -> PathBuf {
    let path = write_cluster_config(&ClusterNodeConfig {
        dir,
        name,
        token: TOKEN,
        cluster: "stages",
        p2p: 0,
        seed,
        power_port,
        extra_cluster: "",
    });
    let text = shutdown_replaced(
        &path,
        &format!("grace = \"{grace}\"\nstage = {stage}\nstage_timeout = \"{stage_timeout}\"\n"),
    );
    assert!(text.contains(&format!("stage = {stage}")), "{text}");
    std::fs::write(&path, text).expect("config");
    path
}

fn start(cfg: &Path) -> Agent {
    start_agent(&[
        "--config",
        cfg.to_str().expect("utf-8 path"),
        "--cluster.name",
        "stages",
    ])
}

fn alive_peers(a: &Agent) -> usize {
    get_json(a, "/v1/peers")
        .as_array()
        .map(|ps| ps.iter().filter(|p| p["liveness"] == "alive").count())
        .unwrap_or(0)
}

/// Three agents: `(name, grace, stage)`, the first the seed, converged.
fn room(dir: &Path, power_port: u16, nodes: &[(&str, &str, u32)], timeout: &str) -> Vec<Agent> {
    let mut agents: Vec<Agent> = Vec::new();
    let mut seed = None;
    for (name, grace, stage) in nodes {
        let cfg = config(
            &dir.join(name),
            name,
            power_port,
            seed,
            grace,
            *stage,
            timeout,
        );
        let mut a = start(&cfg);
        if seed.is_none() {
            seed = Some(a.p2p_port());
        }
        agents.push(a);
    }
    let n = nodes.len() - 1;
    wait_for("convergence", Duration::from_secs(30), || {
        agents.iter().all(|a| alive_peers(a) == n).then_some(())
    });
    // The stage travels in the record (key 13): the seed sees the storage
    // node's, as `coolmesh state --cluster` shows it.
    wait_for("stage 1 published", Duration::from_secs(15), || {
        get_json(&agents[0], "/v1/state")["cluster"]["peers"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["node"] == "s1" && p["stage"] == 1))
            .then_some(())
    });
    agents
}

#[test]
fn storage_goes_down_after_compute_and_never_waits_forever() {
    // ---- 1: the storage node waits for both compute nodes.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut power = PowerTarget::new();
    let nodes = [("c1", "4s", 0), ("c2", "4s", 0), ("s1", "2s", 1)];
    let agents = room(tmp.path(), power.port, &nodes, "60s");
    let s1 = &agents[2];
    assert_eq!(get_json(s1, "/v1/state")["fsm"]["stage"]["stage"], 1);
    let markers: Vec<PathBuf> = nodes
        .iter()
        .map(|(n, _, _)| tmp.path().join(n).join("marker"))
        .collect();

    power.off();
    let off = Instant::now();
    let mut seen: [Option<Instant>; 3] = [None; 3];
    let mut held = false;
    wait_for("all three markers", Duration::from_secs(40), || {
        for (i, m) in markers.iter().enumerate() {
            if seen[i].is_none() && m.exists() {
                seen[i] = Some(Instant::now());
            }
        }
        if seen[2].is_none() {
            let st = get_json(s1, "/v1/state");
            if st["fsm"]["stage"]["waiting"] == true {
                assert_eq!(st["fsm"]["state"], "pre_fail", "{st}");
                assert!(
                    st["fsm"]["stage"]["lower_pending"].as_u64() >= Some(1),
                    "{st}"
                );
                assert_eq!(st["fsm"]["stage"]["waiting_for_stage"], 0, "{st}");
                held = true;
            }
        }
        seen.iter().all(Option::is_some).then_some(())
    });
    let at = |i: usize| seen[i].expect("seen");
    eprintln!(
        "markers after the outage: c1 {:?}, c2 {:?}, s1 {:?}",
        at(0) - off,
        at(1) - off,
        at(2) - off
    );
    assert!(
        at(2) >= at(0) && at(2) >= at(1),
        "the stage-1 marker came before a stage-0 one"
    );
    assert!(held, "the storage node never said it held its command");
    // Its grace (2 s) ended well before the compute nodes' (4 s): it did
    // wait, and the journal line says why it went.
    let st = get_json(s1, "/v1/state");
    assert_eq!(st["fsm"]["state"], "shutdown", "{st}");
    let detail = st["fsm"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("the lower stages finished their shutdown"),
        "{detail}"
    );
    let m = http(s1.addr, "GET", "/metrics", None).1;
    assert_eq!(metric(&m, "coolmesh_shutdown_stage "), Some(1.0), "{m}");
    drop(agents);
    power.on();

    // ---- 2: a compute node hangs in pre_fail; the wait is bounded.
    let tmp = tempfile::tempdir().expect("tempdir");
    let nodes = [("c1", "2s", 0), ("c2", "10m", 0), ("s1", "2s", 1)];
    let agents = room(tmp.path(), power.port, &nodes, "3s");
    let (c2, s1) = (&agents[1], &agents[2]);
    let marker = |n: &str| tmp.path().join(n).join("marker");
    power.off();
    let off = Instant::now();
    wait_for(
        "the stuck compute node in pre_fail",
        Duration::from_secs(15),
        || (get_json(c2, "/v1/state")["fsm"]["state"] == "pre_fail").then_some(()),
    );
    wait_for("the storage marker", Duration::from_secs(30), || {
        marker("s1").exists().then_some(())
    });
    let took = off.elapsed();
    eprintln!("storage marker {took:?} after the outage, the stuck node still up");
    // Its grace plus the stage timeout (pre_fail starts after the outage).
    assert!(took >= Duration::from_secs(5), "{took:?}: did not wait");
    assert!(!marker("c2").exists(), "the stuck node went down");
    assert!(marker("c1").exists(), "c1 (stage 0, grace 2 s) first");
    let st = get_json(s1, "/v1/state");
    let detail = st["fsm"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("stage timeout 3s expired with 1 lower-stage node(s) still going down"),
        "{detail}"
    );
}

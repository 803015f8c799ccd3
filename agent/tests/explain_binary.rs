//! "Why did it power off?" after a restart, with real agents.
//!
//! Two agents share a power target; it goes dark; both enter
//! `pre_fail(power)` and run their (dry-run) shutdown. One agent is
//! restarted: `coolmesh explain` (through the agent, and from the state
//! directory with the agent stopped) tells the transition with its votes
//! (the peer by name) and readings, and the command. Then the journal's
//! last entry is torn (the file cut mid-line, as a power cut would): only
//! that entry is lost, and it is reported.

mod common;
use common::*;

use std::time::Duration;

use coolmesh_agent::cluster::generate_psk;

const TOKEN: &str = "explain-test-token-0123456789";

#[test]
fn explain_tells_why_after_a_restart_and_reports_a_torn_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("swarm.key"), generate_psk()).expect("psk");
    let psk = format!("psk_file = \"{}/swarm.key\"", tmp.path().display());
    let mut power = PowerTarget::new();
    let mut cfgs = Vec::new();
    let mut agents: Vec<Agent> = Vec::new();
    let mut seed = None;
    for name in ["a", "b"] {
        let cfg = write_cluster_config(&ClusterNodeConfig {
            dir: &tmp.path().join(name),
            name,
            token: TOKEN,
            cluster: "explain",
            p2p: 0,
            seed,
            power_port: power.port,
            extra_cluster: &psk,
        });
        let mut a = start_agent(&["--config", cfg.to_str().expect("p")]);
        if seed.is_none() {
            seed = Some(a.p2p_port());
        }
        cfgs.push(cfg);
        agents.push(a);
    }
    wait_for(
        "both agents see each other",
        Duration::from_secs(30),
        || {
            agents
                .iter()
                .all(|a| {
                    get_json(a, "/v1/peers")
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["liveness"] == "alive"))
                })
                .then_some(())
        },
    );
    power.off();
    let marker = tmp.path().join("a/marker");
    wait_for("a's dry-run shutdown", Duration::from_secs(30), || {
        marker.exists().then_some(())
    });
    // Give the journal writer its moment, then restart a.
    wait_for(
        "the command in a's journal",
        Duration::from_secs(10),
        || {
            let (e, _) = coolmesh_agent::journal::read_dir(&tmp.path().join("a/state")).ok()?;
            e.iter()
                .any(|e| matches!(e.event, coolmesh_agent::journal::Event::Command { .. }))
                .then_some(())
        },
    );
    let first = agents.remove(0);
    drop(first);
    let a = start_agent(&["--config", cfgs[0].to_str().expect("p")]);
    let url = format!("http://{}", a.addr);

    let story = ok(cli(&["explain", "--url", &url]));
    for want in [
        "-> pre_fail (power)",
        "power trigger active",
        "own probe round down",
        &format!("tcp://127.0.0.1:{}: own down; peers down 1 (b)", power.port),
        "thermal: hottest 30.0 C",
        "pre_fail -> shutdown (power)",
        "shutdown command attempt 1 started (dry run",
        "agent started",
    ] {
        assert!(story.contains(want), "missing {want:?} in:\n{story}");
    }
    assert!(!story.contains("WARNING"), "{story}");
    // JSON pages through the same entries.
    let json: serde_json::Value =
        serde_json::from_str(&ok(cli(&["explain", "--url", &url, "--format", "json"])))
            .expect("json");
    let n = json["entries"].as_array().expect("entries").len();
    assert!(n >= 5, "{json}");
    // /v1/events pages: limit 2, walk back with next_before.
    let page = get_json(&a, "/v1/events?limit=2");
    assert_eq!(page["entries"].as_array().expect("e").len(), 2);
    let before = page["next_before"].as_u64().expect("next_before");
    let older = get_json(&a, &format!("/v1/events?limit=2&before={before}"));
    assert!(older["entries"][0]["seq"].as_u64().expect("seq") < before);
    let (code, _) = http(a.addr, "GET", "/v1/events?limit=0", None);
    assert_eq!(code, 400);
    let (code, _) = http(a.addr, "GET", "/v1/events?since=soon", None);
    assert_eq!(code, 400);
    drop(a);

    // The agent is stopped: read the state directory. Then tear the last
    // entry as a power cut would.
    let state = tmp.path().join("a/state");
    let from_disk = ok(cli(&["explain", "--state-dir", state.to_str().expect("p")]));
    assert!(from_disk.contains("-> pre_fail (power)"), "{from_disk}");
    let file = state.join("journal.log");
    let bytes = std::fs::read(&file).expect("journal");
    std::fs::write(&file, &bytes[..bytes.len() - 7]).expect("tear");
    let torn = ok(cli(&["explain", "--state-dir", state.to_str().expect("p")]));
    assert!(torn.contains("WARNING: journal.log line"), "{torn}");
    assert!(torn.contains("torn last entry"), "{torn}");
    assert!(torn.contains("-> pre_fail (power)"), "{torn}");
    let lines = |t: &str| t.lines().filter(|l| l.starts_with("20")).count();
    assert_eq!(
        lines(&torn),
        lines(&from_disk) - 1,
        "only the torn entry is lost:\n{torn}"
    );
    power.on();
}

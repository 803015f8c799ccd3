//! Room commands with real agents and the real CLI.
//!
//! 1. Three agents with the cluster key lose their (shared) power target
//!    and all enter `pre_fail(power)`. One `coolmesh room cancel` to one of
//!    them cancels the pending shutdown on all three within a second, each
//!    logs who asked, and the report lists every node. A second cancel
//!    finds nothing to do; maintenance starts and ends room-wide.
//! 2. Where the servers have `cluster.operator_key`, they take only room
//!    commands signed with the operator key: an unsigned command sent
//!    through a node without the key is applied there and refused by the
//!    others; a node with the key refuses to send one; `--key` makes it
//!    pass everywhere.

mod common;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use coolmesh_agent::cluster::generate_psk;

const TOKEN: &str = "room-test-token-0123456789";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Start agents `names` in one cluster; `extra(name)` is appended to each
/// one's `[cluster]` table. The power grace is 60 s: time for the
/// operator to act.
fn room(
    tmp: &Path,
    cluster: &str,
    power: &PowerTarget,
    names: &[&str],
    extra: impl Fn(&str) -> String,
) -> Vec<Agent> {
    let mut agents: Vec<Agent> = Vec::new();
    let mut seed = None;
    for name in names {
        let dir = tmp.join(name);
        let extra = extra(name);
        let cfg = write_cluster_config(&ClusterNodeConfig {
            dir: &dir,
            name,
            token: TOKEN,
            cluster,
            p2p: 0,
            seed,
            power_port: power.port,
            extra_cluster: &extra,
        });
        let text = std::fs::read_to_string(&cfg).expect("config");
        std::fs::write(&cfg, text.replace("grace = \"2s\"", "grace = \"60s\"")).expect("config");
        let mut a = start_agent(&["--config", cfg.to_str().expect("p")]);
        if seed.is_none() {
            seed = Some(a.p2p_port());
        }
        agents.push(a);
    }
    let n = agents.len() - 1;
    wait_for("a full cluster", Duration::from_secs(30), || {
        agents
            .iter()
            .all(|a| {
                get_json(a, "/v1/peers")
                    .as_array()
                    .is_some_and(|p| p.iter().filter(|p| p["liveness"] == "alive").count() == n)
            })
            .then_some(())
    });
    agents
}

fn state(a: &Agent) -> String {
    get_json(a, "/v1/state")["fsm"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `coolmesh room ACTION... --format json` through `via`; (exit ok, report).
fn room_cmd(
    tmp: &Path,
    via: &Agent,
    action: &[&str],
    more: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let url = format!("http://{}", via.addr);
    let token = tmp.join("a/token");
    let mut args = vec!["room"];
    args.extend_from_slice(action);
    args.extend_from_slice(&[
        "--url",
        &url,
        "--token-file",
        token.to_str().expect("p"),
        "--as",
        "tester@ci",
        "--format",
        "json",
    ]);
    args.extend_from_slice(more);
    let out = cli(&args);
    let v = serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    (out, v)
}

/// The outcome of each node in a report, by node name.
fn outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["answers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["node"].as_str().unwrap_or_default().to_string(),
                        x["outcome"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn room_cancel_reaches_every_member_within_a_second() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("swarm.key"), generate_psk()).expect("psk");
    let mut power = PowerTarget::new();
    let psk = format!("psk_file = \"{}/swarm.key\"", tmp.path().display());
    let mut agents = room(tmp.path(), "room-a", &power, &["a", "b", "c"], |_| {
        psk.clone()
    });

    // Mains lost for the whole room.
    power.off();
    wait_for("pre_fail on every agent", Duration::from_secs(20), || {
        agents.iter().all(|a| state(a) == "pre_fail").then_some(())
    });

    let started = Instant::now();
    let (out, report) = room_cmd(tmp.path(), &agents[1], &["cancel"], &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        outcomes(&report),
        pairs(&[("a", "applied"), ("b", "applied"), ("c", "applied")]),
        "{report}"
    );
    assert_eq!(report["unreached"], serde_json::json!([]));
    assert_eq!(report["requester"], "tester@ci");
    // The node it was sent to answers first.
    assert_eq!(report["answers"][0]["node"], "b", "{report}");
    for a in &report["answers"].as_array().expect("answers")[..] {
        assert_eq!(a["state"], "pre_fail", "{a}");
    }
    wait_for(
        "every agent out of pre_fail",
        Duration::from_secs(5),
        || agents.iter().all(|a| state(a) != "pre_fail").then_some(()),
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the room took {took:?} to cancel"
    );
    for a in &agents {
        let s = get_json(a, "/v1/state");
        assert_eq!(s["fsm"]["state"], "normal", "{s}");
    }
    // Every node logged who asked.
    for a in agents.iter_mut() {
        let f = a.wait_log(&["room command"], Duration::from_secs(5));
        assert_eq!(f["requester"], "tester@ci", "{f}");
        assert_eq!(f["action"], "cancel", "{f}");
    }
    for name in ["a", "b", "c"] {
        assert!(
            !tmp.path().join(name).join("marker").exists(),
            "{name} ran its (dry-run) shutdown"
        );
    }

    // Nothing left to cancel: every node says so, and that is success.
    let (out, report) = room_cmd(tmp.path(), &agents[0], &["cancel"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        outcomes(&report),
        pairs(&[
            ("a", "nothing_to_do"),
            ("b", "nothing_to_do"),
            ("c", "nothing_to_do")
        ])
    );

    // Maintenance for the room, then off again.
    let (out, report) = room_cmd(tmp.path(), &agents[2], &["maintenance", "2h"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        outcomes(&report),
        pairs(&[("a", "applied"), ("b", "applied"), ("c", "applied")])
    );
    wait_for("maintenance everywhere", Duration::from_secs(5), || {
        agents
            .iter()
            .all(|a| state(a) == "maintenance")
            .then_some(())
    });
    let (out, _) = room_cmd(tmp.path(), &agents[2], &["maintenance", "off"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("maintenance over", Duration::from_secs(5), || {
        agents
            .iter()
            .all(|a| state(a) != "maintenance")
            .then_some(())
    });

    // `room state` lists every node.
    let url = format!("http://{}", agents[0].addr);
    let out = cli(&["room", "state", "--url", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("room room-a: 3 nodes as a sees them"),
        "{text}"
    );

    // A wrong token: refused before anything reaches the room.
    std::fs::write(tmp.path().join("wrong"), "nope").expect("w");
    let out = cli(&[
        "room",
        "cancel",
        "--url",
        &url,
        "--token-file",
        tmp.path().join("wrong").to_str().expect("p"),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    power.on();
}

#[test]
fn with_an_operator_key_only_signed_room_commands_are_taken() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("swarm.key"), generate_psk()).expect("psk");
    let key = tmp.path().join("operator.key");
    let out = cli(&["roster", "keygen", "--out", key.to_str().expect("p")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key_line = stdout(&out).trim().to_string();
    let power = PowerTarget::new();
    let psk = format!("psk_file = \"{}/swarm.key\"", tmp.path().display());
    // a has no operator key; b and c have one.
    let agents = room(tmp.path(), "room-b", &power, &["a", "b", "c"], |name| {
        if name == "a" {
            psk.clone()
        } else {
            format!("{psk}\n{key_line}")
        }
    });

    // Unsigned, through a: a applies it, b and c refuse it.
    let (out, report) = room_cmd(tmp.path(), &agents[0], &["maintenance", "1h"], &[]);
    assert!(!out.status.success(), "a refusal must fail the command");
    assert_eq!(
        outcomes(&report),
        pairs(&[("a", "applied"), ("b", "refused"), ("c", "refused")]),
        "{report}"
    );
    for x in report["answers"].as_array().expect("answers") {
        if x["node"] != "a" {
            assert!(
                x["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("must be signed")),
                "{x}"
            );
        }
    }
    assert_eq!(state(&agents[1]), "normal");
    assert_eq!(state(&agents[2]), "normal");

    // Unsigned, through b: b refuses to send it at all.
    let (out, _) = room_cmd(tmp.path(), &agents[1], &["maintenance", "1h"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must be signed"), "{}", stderr(&out));

    // Signed with the operator key: every node takes it.
    let (out, report) = room_cmd(
        tmp.path(),
        &agents[1],
        &["maintenance", "1h"],
        &["--key", key.to_str().expect("p")],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        outcomes(&report),
        pairs(&[("a", "applied"), ("b", "applied"), ("c", "applied")]),
        "{report}"
    );
    wait_for("maintenance everywhere", Duration::from_secs(5), || {
        agents
            .iter()
            .all(|a| state(a) == "maintenance")
            .then_some(())
    });

    // A key that is not the operator's: refused where it is sent.
    let other = tmp.path().join("other.key");
    assert!(
        cli(&["roster", "keygen", "--out", other.to_str().expect("p")])
            .status
            .success()
    );
    let (out, _) = room_cmd(
        tmp.path(),
        &agents[2],
        &["maintenance", "off"],
        &["--key", other.to_str().expect("p")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("signature does not verify"),
        "{}",
        stderr(&out)
    );
    assert_eq!(state(&agents[2]), "maintenance");
}

//! The room roster with real agents and the real CLI.
//!
//! 1. An impostor holding the cluster key connects to an agent on this very
//!    host (loopback: the one-vote-per-address rule does not merge it) and
//!    pushes its own, validly signed record claiming the agent's dark power
//!    target is up. Without a roster its vote holds the agent up (the
//!    agent calls its own failed probe a local fault). The
//!    operator makes a key (`coolmesh roster keygen`) and installs a roster
//!    of the agent alone (`coolmesh roster add`): the impostor's records are
//!    refused from then on, it waits outside (`roster list`), and the agent
//!    enters `pre_fail(power)` and shuts down (dry run) after its grace. The
//!    roster survives a restart (stored in the state directory).
//! 2. A roster installed on one of three agents reaches the other two, and
//!    a removal does too.

mod common;
use common::raw_codec::RawCodec;
use common::*;

use std::path::Path;
use std::time::{Duration, Instant};

use coolmesh_agent::cluster::record::{Record, TargetObservation};
use coolmesh_agent::cluster::swarm::{build_transport, swarm_config};
use coolmesh_agent::cluster::wire::SignedRecord;
use coolmesh_agent::cluster::wire::{varint, RequestKind, SyncRequest, PROTOCOL};
use coolmesh_agent::cluster::{generate_psk, parse_psk, LocalState};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};

const TOKEN: &str = "roster-test-token-0123456789";

/// `coolmesh roster keygen`: the private key file and the config line.
fn operator_key(dir: &Path) -> (String, String) {
    let key = dir.join("operator.key");
    let line = ok(cli(&[
        "roster",
        "keygen",
        "--out",
        key.to_str().expect("p"),
    ]));
    let line = line.trim().to_string();
    assert!(line.starts_with("operator_key = \"ed25519:"), "{line}");
    // Never overwritten.
    let again = cli(&["roster", "keygen", "--out", key.to_str().expect("p")]);
    assert!(!again.status.success());
    (key.to_str().expect("p").to_string(), line)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 10);
    varint(body.len() as u64, &mut b);
    b.extend_from_slice(body);
    b
}

/// The impostor: connects once and pushes its own record ("target up")
/// every 300 ms until `stop`. Returns its PeerId's pushes.
async fn impostor(
    key: Keypair,
    target: Multiaddr,
    psk: libp2p::pnet::PreSharedKey,
    cluster: &'static str,
    power_target: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let me = key.public().to_peer_id();
    let transport = build_transport(&key, Some(psk), Duration::from_secs(5)).expect("transport");
    let rr = request_response::Behaviour::with_codec(
        RawCodec::default(),
        [(PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(2)),
    );
    let mut swarm = Swarm::new(transport, rr, me, swarm_config(Duration::from_secs(60)));
    let _ = swarm.dial(DialOpts::unknown_peer_id().address(target).build());
    let mut peer = None;
    let mut pushes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } = ev {
                    peer = Some(peer_id);
                }
            }
            _ = tick.tick() => {
                if let Some(p) = peer.filter(|p| swarm.is_connected(p)) {
                    pushes += 1;
                    let now = coolmesh_agent::cluster::engine::unix_ms();
                    let local = LocalState {
                        node: "impostor".into(),
                        power: vec![TargetObservation { target: power_target.clone(), up: true, at_ms: now }],
                        power_up: Some(true),
                        ..Default::default()
                    };
                    let rec = Record::from_local(&local, cluster, me, now, &[], now);
                    let signed = SignedRecord::sign(&rec, &key).expect("sign");
                    let req = SyncRequest {
                        kind: RequestKind::Push.code(),
                        cluster: cluster.into(),
                        records: vec![(&signed).into()],
                        ..Default::default()
                    };
                    swarm.behaviour_mut().send_request(&p, framed(&req.to_bytes()));
                }
            }
        }
    }
    pushes
}

fn roster_json(a: &Agent) -> serde_json::Value {
    get_json(a, "/v1/roster")
}

#[test]
fn a_roster_shuts_out_an_impostor_whose_vote_held_the_agent_up() {
    const CLUSTER: &str = "roster-a";
    let tmp = tempfile::tempdir().expect("tempdir");
    let psk_text = generate_psk();
    std::fs::write(tmp.path().join("swarm.key"), &psk_text).expect("psk");
    let psk = parse_psk(&psk_text).expect("psk parses");
    let (key_file, key_line) = operator_key(tmp.path());
    let (dark, dark_port) = reserved_port();
    let dir = tmp.path().join("a");
    let cfg = write_cluster_config(&ClusterNodeConfig {
        dir: &dir,
        name: "a",
        token: TOKEN,
        cluster: CLUSTER,
        p2p: 0,
        seed: None,
        power_port: dark_port,
        extra_cluster: &format!(
            "psk_file = \"{}/swarm.key\"\n{key_line}",
            tmp.path().display()
        ),
    });
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("grace = \"2s\"", "grace = \"4s\"");
    std::fs::write(&cfg, text).expect("config");
    let args = [
        "--config",
        cfg.to_str().expect("p"),
        "--cluster.name",
        CLUSTER,
    ];
    let mut a = start_agent(&args);
    let url = format!("http://{}", a.addr);
    let me = get_json(&a, "/v1/state")["peer_id"]
        .as_str()
        .expect("peer_id")
        .to_string();

    // No roster yet: version 0, the operator key is the configured one.
    let r = roster_json(&a);
    assert_eq!(r["version"], 0, "{r}");
    assert!(
        key_line.contains(r["operator_key"].as_str().expect("key")),
        "{r}"
    );

    let target: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", a.p2p_port())
        .parse()
        .expect("addr");
    let imp_key = Keypair::generate_ed25519();
    let imp_id = imp_key.public().to_peer_id().to_base58();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = {
        let stop = stop.clone();
        let power_target = format!("tcp://127.0.0.1:{dark_port}");
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(impostor(imp_key, target, psk, CLUSTER, power_target, stop))
        })
    };
    // The impostor is in the view and its "up" holds the agent up.
    wait_for(
        "the impostor alive in the view",
        Duration::from_secs(20),
        || {
            let peers = get_json(&a, "/v1/peers");
            peers
                .as_array()?
                .iter()
                .any(|p| p["node"] == "impostor" && p["liveness"] == "alive")
                .then_some(())
        },
    );
    wait_probe_rounds(a.addr, probe_rounds(a.addr), 4, Duration::from_secs(10));
    let s = get_json(&a, "/v1/state");
    assert_eq!(
        s["fsm"]["state"], "local_fault",
        "held up by the impostor's vote before the roster: {s}"
    );

    // A wrong key is refused by the CLI before anything is sent.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    let (other_key, _) = operator_key(&other);
    let token_file = dir.join("token");
    let token_file = token_file.to_str().expect("p");
    let wrong = cli(&[
        "roster",
        "add",
        &me,
        "--url",
        &url,
        "--key",
        &other_key,
        "--token-file",
        token_file,
    ]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("trusts operator key"), "{err}");
    // Without the token the agent refuses.
    let (code, _) = http(a.addr, "POST", "/v1/roster", None);
    assert_eq!(code, 401);

    // The operator installs a roster of the agent alone.
    let started = Instant::now();
    let said = ok(cli(&[
        "roster",
        "add",
        &me,
        "--url",
        &url,
        "--key",
        &key_file,
        "--token-file",
        token_file,
    ]));
    assert!(said.contains("adopted"), "{said}");
    // The agent's status follows the cluster layer's adoption at its next
    // snapshot (milliseconds; longer on a loaded machine).
    let r = wait_for("the roster in /v1/roster", Duration::from_secs(10), || {
        let r = roster_json(&a);
        (r["version"].as_u64().unwrap_or(0) > 0).then_some(r)
    });
    assert_eq!(r["self_member"], true, "{r}");
    assert_eq!(r["members"].as_array().map(Vec::len), Some(1), "{r}");
    // The impostor is gone from the view and waits outside.
    wait_for(
        "the impostor waiting outside",
        Duration::from_secs(10),
        || {
            let r = roster_json(&a);
            let waiting = r["pending"]
                .as_array()?
                .iter()
                .any(|c| c["peer_id"] == imp_id.as_str() && c["node"] == "impostor");
            let peers = get_json(&a, "/v1/peers");
            let gone = !peers.as_array()?.iter().any(|p| p["node"] == "impostor");
            (waiting && gone).then_some(())
        },
    );
    let listed = ok(cli(&["roster", "list", "--url", &url]));
    assert!(
        listed.contains(&imp_id) && listed.contains("impostor"),
        "{listed}"
    );
    assert!(listed.contains(&me), "{listed}");
    // Its vote no longer counts: a power loss, and the shutdown.
    let s = wait_for("pre_fail(power)", Duration::from_secs(10), || {
        let s = get_json(&a, "/v1/state");
        (s["fsm"]["state"] == "pre_fail" || s["fsm"]["state"] == "shutdown").then_some(s)
    });
    assert_eq!(s["fsm"]["reason"], "power", "{s}");
    wait_for("the dry-run shutdown", Duration::from_secs(20), || {
        dir.join("marker").exists().then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(25));
    let m = http(a.addr, "GET", "/metrics", None).1;
    let refused = m
        .lines()
        .find(|l| l.starts_with("coolmesh_gossip_rejected_total{reason=\"not_in_roster\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "not_in_roster rejections: {refused}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(attack.join().expect("impostor") >= 3);
    let version = roster_json(&a)["version"].clone();
    drop(a);

    // The roster survives a restart.
    assert!(dir.join("state/roster.cbor").exists());
    let a = start_agent(&args);
    let r = wait_for("the stored roster loaded", Duration::from_secs(10), || {
        let r = roster_json(&a);
        (r["version"] != 0).then_some(r)
    });
    assert_eq!(r["version"], version, "{r}");
    assert_eq!(r["self_member"], true, "{r}");
    // Removing a non-member is refused by the CLI.
    let out = cli(&[
        "roster",
        "remove",
        &imp_id,
        "--url",
        &format!("http://{}", a.addr),
        "--key",
        &key_file,
        "--token-file",
        token_file,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the roster"));
    drop(dark);
}

#[test]
fn a_roster_installed_on_one_agent_reaches_the_others() {
    const CLUSTER: &str = "roster-b";
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("swarm.key"), generate_psk()).expect("psk");
    let (key_file, key_line) = operator_key(tmp.path());
    let power = PowerTarget::new();
    let extra = format!(
        "psk_file = \"{}/swarm.key\"\n{key_line}",
        tmp.path().display()
    );
    let mut agents: Vec<Agent> = Vec::new();
    let mut seed = None;
    for name in ["a", "b", "c"] {
        let dir = tmp.path().join(name);
        let cfg = write_cluster_config(&ClusterNodeConfig {
            dir: &dir,
            name,
            token: TOKEN,
            cluster: CLUSTER,
            p2p: 0,
            seed,
            power_port: power.port,
            extra_cluster: &extra,
        });
        let mut a = start_agent(&[
            "--config",
            cfg.to_str().expect("p"),
            "--cluster.name",
            CLUSTER,
        ]);
        if seed.is_none() {
            seed = Some(a.p2p_port());
        }
        agents.push(a);
    }
    let ids: Vec<String> = agents
        .iter()
        .map(|a| {
            get_json(a, "/v1/state")["peer_id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    wait_for("a full cluster", Duration::from_secs(20), || {
        agents
            .iter()
            .all(|a| {
                get_json(a, "/v1/peers")
                    .as_array()
                    .is_some_and(|p| p.iter().filter(|p| p["liveness"] == "alive").count() == 2)
            })
            .then_some(())
    });
    let url = format!("http://{}", agents[0].addr);
    let token_file = tmp.path().join("a/token");
    let token_file = token_file.to_str().expect("p");
    let started = Instant::now();
    ok(cli(&[
        "roster",
        "add",
        &ids[0],
        &ids[1],
        &ids[2],
        "--url",
        &url,
        "--key",
        &key_file,
        "--token-file",
        token_file,
    ]));
    let v = wait_for(
        "the roster on the first agent",
        Duration::from_secs(10),
        || {
            roster_json(&agents[0])["version"]
                .as_u64()
                .filter(|v| *v > 0)
        },
    );
    for a in &agents[1..] {
        wait_for("the roster on every agent", Duration::from_secs(10), || {
            let r = roster_json(a);
            (r["version"].as_u64() == Some(v) && r["self_member"] == true).then_some(())
        });
    }
    let spread = started.elapsed();
    // Remove c: a and b drop its record, c learns it is out.
    ok(cli(&[
        "roster",
        "remove",
        &ids[2],
        "--url",
        &url,
        "--key",
        &key_file,
        "--token-file",
        token_file,
    ]));
    wait_for("c out of a's and b's view", Duration::from_secs(10), || {
        agents[..2]
            .iter()
            .all(|a| {
                let r = roster_json(a);
                let peers = get_json(a, "/v1/peers");
                r["version"].as_u64() > Some(v)
                    && !peers
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["node"] == "c"))
            })
            .then_some(())
    });
    wait_for("c knows it is out", Duration::from_secs(10), || {
        let r = roster_json(&agents[2]);
        (r["version"].as_u64() > Some(v) && r["self_member"] == false).then_some(())
    });
    eprintln!("roster reached every agent in {spread:?}");
    drop(power);
}

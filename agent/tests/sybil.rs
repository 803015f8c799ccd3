//! Minted identities buy no votes. A member holding the cluster's key
//! connects to a real agent once and pushes validly signed records of many
//! fresh identities (each signed by its own key), all claiming that the
//! agent's power target is up and that they are at critical temperature.
//! Those records are accepted and shown (they are valid), but they are
//! relayed: only directly connected peers vote, at most one per host
//! address. The agent, whose power target is dark, must still enter
//! `pre_fail(power)` and shut down (dry run) after its grace, and the
//! "critical" claims must never start a cooling grace.

mod common;
use common::raw_codec::RawCodec;
use common::*;

use std::time::{Duration, Instant};

use coolmesh_agent::cluster::record::{Record, TargetObservation, ThermalReport};
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

const TOKEN: &str = "sybil-test-token-0123456789";
const CLUSTER: &str = "sybil";
/// Identities the attacker mints.
const IDENTITIES: usize = 40;

fn framed(body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 10);
    varint(body.len() as u64, &mut b);
    b.extend_from_slice(body);
    b
}

/// One push carrying a fresh version of every minted identity's record.
fn push(keys: &[Keypair], target: &str, version: u64) -> Vec<u8> {
    let now = coolmesh_agent::cluster::engine::unix_ms();
    let records = keys
        .iter()
        .map(|k| {
            let local = LocalState {
                node: "minted".into(),
                thermal: ThermalReport {
                    hottest: Some(99.0),
                    headroom: Some(-1.0),
                    critical: true,
                    vote: Some(true),
                    ..Default::default()
                },
                power: vec![TargetObservation {
                    target: target.to_string(),
                    up: true,
                    at_ms: now,
                }],
                power_up: Some(true),
                ..Default::default()
            };
            let rec =
                Record::from_local(&local, CLUSTER, k.public().to_peer_id(), version, &[], now);
            let signed = SignedRecord::sign(&rec, k).expect("sign");
            (&signed).into()
        })
        .collect();
    framed(
        &SyncRequest {
            kind: RequestKind::Push.code(),
            cluster: CLUSTER.into(),
            digest: vec![],
            records,
            ..Default::default()
        }
        .to_bytes(),
    )
}

/// Push the minted records every 500 ms (fresh versions keep them alive)
/// until `stop`.
async fn attacker(
    target: Multiaddr,
    psk: libp2p::pnet::PreSharedKey,
    power_target: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let key = Keypair::generate_ed25519();
    let transport = build_transport(&key, Some(psk), Duration::from_secs(5)).expect("transport");
    let rr = request_response::Behaviour::with_codec(
        RawCodec::default(),
        [(PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(2)),
    );
    let mut swarm = Swarm::new(
        transport,
        rr,
        key.public().to_peer_id(),
        swarm_config(Duration::from_secs(60)),
    );
    let _ = swarm.dial(DialOpts::unknown_peer_id().address(target).build());
    let keys: Vec<Keypair> = (0..IDENTITIES)
        .map(|_| Keypair::generate_ed25519())
        .collect();
    let mut peer = None;
    let mut pushes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
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
                    swarm.behaviour_mut().send_request(&p, push(&keys, &power_target, pushes));
                }
            }
        }
    }
    pushes
}

#[test]
fn minted_identities_pushed_over_one_connection_change_no_decision() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let psk_text = generate_psk();
    std::fs::write(tmp.path().join("swarm.key"), &psk_text).expect("psk");
    let psk = parse_psk(&psk_text).expect("psk parses");
    // The agent's power target: a port that refuses (bound, never listening).
    let (dark, dark_port) = reserved_port();
    let dir = tmp.path().join("victim");
    let cfg = write_cluster_config(&ClusterNodeConfig {
        dir: &dir,
        name: "victim",
        token: TOKEN,
        cluster: CLUSTER,
        p2p: 0,
        seed: None,
        power_port: dark_port,
        extra_cluster: &format!("psk_file = \"{}/swarm.key\"", tmp.path().display()),
    });
    // A longer grace than the helper's 2 s: the minted records must be in
    // place (and shown) well before it ends.
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("grace = \"2s\"", "grace = \"8s\"");
    std::fs::write(&cfg, text).expect("config");
    let mut a = start_agent(&[
        "--config",
        cfg.to_str().expect("p"),
        "--cluster.name",
        CLUSTER,
    ]);
    let port = a.p2p_port();
    let target: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
    let power_target = format!("tcp://127.0.0.1:{dark_port}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = {
        let stop = stop.clone();
        let power_target = power_target.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(attacker(target, psk, power_target, stop))
        })
    };

    // The minted identities are accepted and visible (valid records)...
    wait_for(
        "minted identities in the view",
        Duration::from_secs(20),
        || {
            let peers = get_json(&a, "/v1/peers");
            let alive = peers
                .as_array()?
                .iter()
                .filter(|p| p["liveness"] == "alive" && p["node"] == "minted")
                .count();
            (alive >= IDENTITIES / 2).then_some(())
        },
    );
    // ...but they vote for nothing: the dark target is a power loss.
    let started = Instant::now();
    let s = wait_for("pre_fail(power)", Duration::from_secs(10), || {
        let s = get_json(&a, "/v1/state");
        (s["fsm"]["state"] == "pre_fail" || s["fsm"]["state"] == "shutdown").then_some(s)
    });
    assert_eq!(s["fsm"]["reason"], "power", "{s}");
    let marker = dir.join("marker");
    wait_for(
        "the dry-run shutdown after the grace",
        Duration::from_secs(20),
        || marker.exists().then_some(()),
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // The state machine runs the command and publishes its state on a
    // watch; the core loop copies that into the served snapshot in its own
    // task, so the marker can exist a moment before /v1/state says so.
    let s = wait_for("/v1/state says shutdown", Duration::from_secs(5), || {
        let s = get_json(&a, "/v1/state");
        (s["fsm"]["state"] == "shutdown").then_some(s)
    });
    assert_ne!(
        s["fsm"]["reason"], "cooling",
        "minted 'critical' records started a cooling grace: {s}"
    );
    let m = http(a.addr, "GET", "/metrics", None).1;
    let transitions: Vec<&str> = m
        .lines()
        .filter(|l| {
            l.starts_with("coolmesh_fsm_transitions_total{") && l.contains("reason=\"cooling\"")
        })
        .collect();
    assert!(
        transitions.is_empty(),
        "a cooling transition: {transitions:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let pushes = attack.join().expect("attacker");
    assert!(pushes >= 3, "the attacker pushed {pushes} times");
    drop(dark);
}

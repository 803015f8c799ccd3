//! In-process clusters over real libp2p on 127.0.0.1 (ephemeral ports,
//! static bootstrap peers, no mDNS). libp2p needs real I/O, so these use
//! bounded real waits. The tests run one at a time (unoptimised Ed25519
//! verification is CPU-heavy and the machine is small).

mod common;
use common::raw_codec::RawCodec;

use std::collections::HashSet;
use std::time::Duration;

use coolmesh_agent::cluster::record::Record;
use coolmesh_agent::cluster::swarm::build_transport;
use coolmesh_agent::cluster::wire::record::SlotW;
use coolmesh_agent::cluster::wire::RecordPayload;
use coolmesh_agent::cluster::wire::SignedRecord;
use coolmesh_agent::cluster::wire::{varint, RequestKind, SyncRequest, SyncResponse, PROTOCOL};
use coolmesh_agent::cluster::{
    generate_psk, parse_psk, ClusterConfig, ClusterHandle, ClusterView, CounterKind, CounterSlot,
    GossipMetrics, Liveness, LocalState, RejectReason, ThermalReport,
};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct TestNode {
    peer_id: PeerId,
    local: LocalState,
    local_tx: watch::Sender<LocalState>,
    _urgent_tx: mpsc::Sender<()>,
    view: watch::Receiver<ClusterView>,
    metrics: GossipMetrics,
    handle: ClusterHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestNode {
    fn counter(&mut self, name: &str, kind: CounterKind, dp: u64, dn: u64) {
        let s = self
            .local
            .counters
            .entry(name.to_string())
            .or_insert(CounterSlot { kind, p: 0, n: 0 });
        s.p += dp;
        s.n += dn;
        self.local_tx.send_replace(self.local.clone());
    }

    async fn addr(&mut self) -> Multiaddr {
        let v = wait_for(&mut self.view, Duration::from_secs(5), |v| {
            !v.listen_addrs.is_empty()
        })
        .await
        .expect("node listens");
        v.listen_addrs[0].clone().with(Protocol::P2p(self.peer_id))
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "clean shutdown: {r:?}");
    }
}

fn config() -> ClusterConfig {
    ClusterConfig {
        name: "test".into(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        redial_min: Duration::from_millis(200),
        redial_max: Duration::from_secs(2),
        ..Default::default()
    }
}

fn spawn(cfg: ClusterConfig, key: Keypair, name: &str) -> TestNode {
    let local = LocalState {
        node: name.to_string(),
        thermal: ThermalReport {
            hottest: Some(50.0),
            headroom: Some(40.0),
            ..Default::default()
        },
        power_up: Some(true),
        ..Default::default()
    };
    let (local_tx, local_rx) = watch::channel(local.clone());
    let (urgent_tx, urgent_rx) = mpsc::channel(4);
    let (view_tx, view) = watch::channel(ClusterView::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let metrics = GossipMetrics::new();
    let cluster = coolmesh_agent::cluster::Cluster::new(cfg, key, metrics.clone());
    let peer_id = cluster.local_peer_id();
    let handle = cluster.handle();
    let task = tokio::spawn(cluster.run(local_rx, urgent_rx, view_tx, async {
        let _ = stop_rx.await;
    }));
    TestNode {
        peer_id,
        local,
        local_tx,
        _urgent_tx: urgent_tx,
        view,
        metrics,
        handle,
        stop: Some(stop),
        task,
    }
}

async fn wait_for(
    rx: &mut watch::Receiver<ClusterView>,
    within: Duration,
    pred: impl Fn(&ClusterView) -> bool,
) -> Option<ClusterView> {
    let r = tokio::time::timeout(within, async {
        loop {
            {
                let v = rx.borrow_and_update();
                if pred(&v) {
                    return v.clone();
                }
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    r.ok()
}

/// Start `n` nodes, all bootstrapping to node 0 (node 1 without the /p2p/
/// suffix, to exercise dialling an unknown PeerId).
async fn cluster_of(n: usize, cfg: ClusterConfig) -> Vec<TestNode> {
    let mut first = spawn(cfg.clone(), Keypair::generate_ed25519(), "node-0");
    let addr = first.addr().await;
    let bare: Multiaddr = addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    let mut nodes = vec![first];
    for i in 1..n {
        let mut c = cfg.clone();
        c.bootstrap = vec![if i == 1 { bare.clone() } else { addr.clone() }];
        nodes.push(spawn(c, Keypair::generate_ed25519(), &format!("node-{i}")));
    }
    nodes
}

fn all_alive(v: &ClusterView, n: usize) -> bool {
    v.peers.len() == n - 1 && v.peers.values().all(|p| p.liveness == Liveness::Alive)
}

async fn converge(
    nodes: &mut [TestNode],
    within: Duration,
    pred: impl Fn(&ClusterView) -> bool + Copy,
) {
    for (i, node) in nodes.iter_mut().enumerate() {
        let ok = wait_for(&mut node.view, within, pred).await;
        let snapshot = node.view.borrow().clone();
        assert!(
            ok.is_some(),
            "node {i} did not converge: peers={} connected={} counters={:?}",
            snapshot.peers.len(),
            snapshot.connected,
            snapshot.counters
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_five_nodes_bootstrap_and_converge() {
    let _serial = SERIAL.lock().await;
    let start = std::time::Instant::now();
    let mut nodes = cluster_of(5, config()).await;
    converge(&mut nodes, Duration::from_secs(15), |v| {
        all_alive(v, 5)
            && v.connected == 4
            && v.peers
                .values()
                .all(|p| p.record.state.node.starts_with("node-"))
    })
    .await;
    let elapsed = start.elapsed();
    println!("5 nodes converged (full mesh, all alive) in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(15));
    // Everybody agrees on the hub; every peer's record is complete.
    let hubs: HashSet<_> = nodes.iter().map(|n| n.view.borrow().relay).collect();
    assert_eq!(hubs.len(), 1, "one hub: {hubs:?}");
    let v = nodes[2].view.borrow().clone();
    let names: HashSet<String> = v
        .peers
        .values()
        .map(|p| p.record.state.node.clone())
        .collect();
    assert_eq!(names.len(), 4);
    assert_eq!(v.power_votes().up, 4);
    assert_eq!(v.ranked_by_headroom().len(), 4);
    assert!(v.peers.values().all(|p| !p.record.addrs.is_empty()));
    // Nothing was rejected in a healthy cluster.
    for n in &nodes {
        for r in RejectReason::ALL {
            assert_eq!(n.metrics.rejected_count(r), 0, "{r}");
        }
    }
    // A state-machine transition reaches every peer quickly (pushed).
    let t = std::time::Instant::now();
    nodes[3].local.fsm.state = "pre_fail".into();
    nodes[3].local.fsm.reason = "power lost".into();
    nodes[3].local_tx.send_replace(nodes[3].local.clone());
    let id = nodes[3].peer_id;
    converge(&mut nodes, Duration::from_secs(3), move |v| {
        v.local_peer_id == Some(id)
            || v.peers
                .get(&id)
                .is_some_and(|p| p.record.state.fsm.state == "pre_fail")
    })
    .await;
    println!(
        "state-machine transition visible everywhere in {:?}",
        t.elapsed()
    );
    assert!(
        nodes[0]
            .metrics
            .messages
            .with_label_values(&["in", "push"])
            .get()
            >= 1
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_concurrent_increments_converge_to_exact_sum() {
    let _serial = SERIAL.lock().await;
    let mut nodes = cluster_of(5, config()).await;
    converge(&mut nodes, Duration::from_secs(15), |v| all_alive(v, 5)).await;
    // Every node increments concurrently: 20 x "jobs" (G) and a PN counter
    // with increments and decrements, spread over about a second.
    for round in 0..20u64 {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.counter("jobs", CounterKind::G, 1, 0);
            n.counter(
                "queue",
                CounterKind::PN,
                (i as u64) + 1,
                u64::from(round % 2 == 0),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want_queue: i128 = (1..=5).map(|i| 20 * i).sum::<i128>() - 5 * 10;
    let t = std::time::Instant::now();
    converge(&mut nodes, Duration::from_secs(5), move |v| {
        v.counters_total("jobs") == Some(100) && v.counters_total("queue") == Some(want_queue)
    })
    .await;
    println!(
        "counters converged {:?} after the last increment",
        t.elapsed()
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_partition_and_heal_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let cfg = ClusterConfig {
        refresh_interval: Duration::from_millis(300),
        suspect_after: Duration::from_millis(1200),
        dead_after: Duration::from_millis(2500),
        ..config()
    };
    let mut nodes = cluster_of(5, cfg).await;
    converge(&mut nodes, Duration::from_secs(15), |v| {
        all_alive(v, 5) && v.connected == 4
    })
    .await;
    for n in nodes.iter_mut() {
        n.counter("events", CounterKind::G, 1, 0);
    }
    converge(&mut nodes, Duration::from_secs(5), |v| {
        v.counters_total("events") == Some(5)
    })
    .await;

    // Partition {0,1,2} | {3,4}: both sides block the other.
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer_id).collect();
    let (a, b) = ([0usize, 1, 2], [3usize, 4]);
    for &i in &a {
        for &j in &b {
            nodes[i].handle.block(ids[j]).await.unwrap();
            nodes[j].handle.block(ids[i]).await.unwrap();
        }
    }
    // Increments on both sides during the partition.
    for &i in &a {
        nodes[i].counter("events", CounterKind::G, 10, 0);
    }
    for &j in &b {
        nodes[j].counter("events", CounterKind::G, 100, 0);
    }
    // Each side converges on its own total and sees the other side dead
    // (stale records kept).
    let (ida, idb) = (ids.clone(), ids.clone());
    for &i in &a {
        let v = wait_for(&mut nodes[i].view, Duration::from_secs(10), |v| {
            v.counters_total("events") == Some(5 + 30)
                && b.iter()
                    .all(|&j| v.peers.get(&idb[j]).is_some_and(|p| p.stale))
        })
        .await;
        assert!(
            v.is_some(),
            "side A node {i}: {:?}",
            nodes[i].view.borrow().counters
        );
    }
    for &j in &b {
        let v = wait_for(&mut nodes[j].view, Duration::from_secs(10), |v| {
            v.counters_total("events") == Some(5 + 200)
                && a.iter().all(|&i| {
                    v.peers
                        .get(&ida[i])
                        .is_some_and(|p| p.liveness == Liveness::Dead)
                })
        })
        .await;
        assert!(
            v.is_some(),
            "side B node {j}: {:?}",
            nodes[j].view.borrow().counters
        );
    }
    // Heal.
    for &i in &a {
        for &j in &b {
            nodes[i].handle.unblock(ids[j]).await.unwrap();
            nodes[j].handle.unblock(ids[i]).await.unwrap();
        }
    }
    let t = std::time::Instant::now();
    converge(&mut nodes, Duration::from_secs(15), |v| {
        v.counters_total("events") == Some(5 + 30 + 200) && all_alive(v, 5)
    })
    .await;
    println!("healed and converged in {:?}", t.elapsed());
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_psk_mismatch_is_rejected() {
    let _serial = SERIAL.lock().await;
    let (k1, k2) = (
        parse_psk(&generate_psk()).unwrap(),
        parse_psk(&generate_psk()).unwrap(),
    );
    let mut a = spawn(
        ClusterConfig {
            psk: Some(k1),
            ..config()
        },
        Keypair::generate_ed25519(),
        "a",
    );
    let addr = a.addr().await;
    let mut good = spawn(
        ClusterConfig {
            psk: Some(k1),
            bootstrap: vec![addr.clone()],
            ..config()
        },
        Keypair::generate_ed25519(),
        "good",
    );
    let mut bad = spawn(
        ClusterConfig {
            psk: Some(k2),
            bootstrap: vec![addr.clone()],
            ..config()
        },
        Keypair::generate_ed25519(),
        "bad",
    );
    let mut open = spawn(
        ClusterConfig {
            psk: None,
            bootstrap: vec![addr],
            ..config()
        },
        Keypair::generate_ed25519(),
        "open",
    );
    // Same key: connects and exchanges records.
    let gid = good.peer_id;
    assert!(wait_for(&mut a.view, Duration::from_secs(10), |v| v
        .peers
        .contains_key(&gid))
    .await
    .is_some());
    assert!(
        wait_for(&mut good.view, Duration::from_secs(10), |v| v.peers.len()
            == 1)
        .await
        .is_some()
    );
    // Another key, or none: never connected, after failed dials. (A wrong
    // key can also stall both ends, garbage read as a long length prefix,
    // until the 5 s handshake timeout, so allow for that.)
    let refused = a.metrics.clone();
    wait_until("two failed handshakes", Duration::from_secs(15), || {
        refused.rejected_count(RejectReason::Handshake) >= 2
    })
    .await;
    for n in [&mut bad, &mut open] {
        let v = n.view.borrow().clone();
        assert_eq!(v.connected, 0, "no connection without the right PSK");
        assert!(v.peers.is_empty());
    }
    let v = a.view.borrow().clone();
    assert_eq!(v.connected, 1);
    assert_eq!(v.peers.len(), 1);
    // The failed handshakes are counted on the node they dialled (the
    // wrong key and no key): seen above.
    assert_eq!(good.metrics.rejected_count(RejectReason::Handshake), 0);
    // ... and so is garbage on the TCP port.
    let port = v.listen_addrs[0]
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("tcp port");
    let before = a.metrics.rejected_count(RejectReason::Handshake);
    {
        use tokio::io::AsyncWriteExt as _;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let _ = s.write_all(&[0x42; 200]).await;
        let _ = s.shutdown().await;
    }
    assert!(eventually(|| a.metrics.rejected_count(RejectReason::Handshake) > before).await);
    for n in [a, good, bad, open] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_allowlist_refuses_strangers() {
    let _serial = SERIAL.lock().await;
    let friend_key = Keypair::generate_ed25519();
    let friend_id = friend_key.public().to_peer_id();
    let mut a = spawn(
        ClusterConfig {
            allowlist: Some(HashSet::from([friend_id])),
            ..config()
        },
        Keypair::generate_ed25519(),
        "a",
    );
    let addr = a.addr().await;
    let boot = ClusterConfig {
        bootstrap: vec![addr],
        ..config()
    };
    let friend = spawn(boot.clone(), friend_key, "friend");
    let mut stranger = spawn(boot, Keypair::generate_ed25519(), "stranger");
    assert!(wait_for(&mut a.view, Duration::from_secs(10), |v| v
        .peers
        .contains_key(&friend_id))
    .await
    .is_some());
    // The stranger dialled and was refused (and is not in the view).
    let refused = a.metrics.clone();
    wait_until("the stranger refused", Duration::from_secs(10), || {
        refused.rejected_count(RejectReason::Unauthorized) >= 1
    })
    .await;
    let sid = stranger.peer_id;
    assert!(!a.view.borrow().peers.contains_key(&sid));
    assert!(stranger.view.borrow_and_update().peers.is_empty());
    for n in [a, friend, stranger] {
        n.stop().await;
    }
}

/// A hand-driven libp2p peer speaking the sync protocol with raw bytes.
struct RawClient {
    key: Keypair,
    swarm: Swarm<request_response::Behaviour<RawCodec>>,
    target: PeerId,
}

impl RawClient {
    async fn connect(addr: Multiaddr, target: PeerId) -> RawClient {
        let key = Keypair::generate_ed25519();
        let transport = build_transport(&key, None, Duration::from_secs(5)).unwrap();
        let rr = request_response::Behaviour::with_codec(
            RawCodec::default(),
            [(PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
        );
        let mut swarm = Swarm::new(
            transport,
            rr,
            key.public().to_peer_id(),
            libp2p::swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(Duration::from_secs(60)),
        );
        swarm.dial(addr).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                    return;
                }
            }
        })
        .await
        .expect("client connects");
        RawClient { key, swarm, target }
    }

    /// Send raw bytes; returns the response, or None if the exchange failed.
    async fn exchange(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let id = self.swarm.behaviour_mut().send_request(&self.target, bytes);
        tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    }) if request_id == id => return Some(response),
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        error,
                        ..
                    }) if request_id == id => {
                        let _ = error;
                        return None;
                    }
                    _ => {}
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        varint(body.len() as u64, &mut b);
        b.extend_from_slice(body);
        b
    }

    fn request(records: Vec<SignedRecord>) -> Vec<u8> {
        let req = SyncRequest {
            kind: RequestKind::Push.code(),
            cluster: "test".into(),
            digest: vec![],
            records: records.iter().map(Into::into).collect(),
            ..Default::default()
        };
        Self::framed(&req.to_bytes())
    }

    fn record(&self, owner: PeerId, version: u64) -> Record {
        let mut local = LocalState {
            node: "client".into(),
            ..Default::default()
        };
        local.counters.insert(
            "x".into(),
            CounterSlot {
                kind: CounterKind::G,
                p: 1000,
                n: 0,
            },
        );
        Record::from_local(
            &local,
            "test",
            owner,
            version,
            &[],
            coolmesh_agent::cluster::engine::unix_ms(),
        )
    }
}

/// Wait up to 3 s for `f` to hold (the node counts a rejection right after
/// the client sees its exchange fail).
async fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..60 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Wait (polling, bounded) until `f` holds; panics naming `what` after
/// `within`.
async fn wait_until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_node() -> (TestNode, Multiaddr) {
    let mut n = spawn(
        ClusterConfig {
            max_frame_bytes: 128 * 1024,
            inbound_rate: 5,
            inbound_burst: 10,
            ..config()
        },
        Keypair::generate_ed25519(),
        "n",
    );
    let addr = n.addr().await;
    (n, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forged_records_are_rejected_and_counted() {
    let _serial = SERIAL.lock().await;
    let (mut node, addr) = one_node().await;
    let mut client = RawClient::connect(addr, node.peer_id).await;
    let me = client.key.public().to_peer_id();

    // 1. A record claiming to be the victim's, signed by the client.
    let victim = Keypair::generate_ed25519().public().to_peer_id();
    let payload = RecordPayload::from_record(&client.record(victim, 5))
        .encode()
        .unwrap();
    let forged = SignedRecord::sign_payload(payload, &client.key).unwrap();
    // 2. The client's own record, validly signed, with a slot of the victim.
    let mut p = RecordPayload::from_record(&client.record(me, 6));
    p.counters.push(SlotW {
        name: "y".into(),
        kind: 0,
        owner: victim.to_bytes(),
        p: 1_000_000,
        n: 0,
    });
    let foreign = SignedRecord::sign_payload(p.encode().unwrap(), &client.key).unwrap();
    let resp = client
        .exchange(RawClient::request(vec![forged, foreign]))
        .await;
    let resp = SyncResponse::from_bytes(&resp.expect("node answers")).unwrap();
    assert!(resp
        .records
        .iter()
        .any(|r| SignedRecord::from(r.clone()).peek().unwrap().0 == node.peer_id));
    assert_eq!(node.metrics.rejected_count(RejectReason::BadSignature), 1);
    assert_eq!(node.metrics.rejected_count(RejectReason::ForeignSlot), 1);
    {
        let v = node.view.borrow_and_update();
        assert!(!v.peers.contains_key(&victim));
        assert!(!v.peers.contains_key(&me));
        assert_eq!(v.counters_total("x"), None);
        assert_eq!(v.counters_total("y"), None);
    }
    // 3. Positive control: the client's own valid record is accepted.
    let valid = SignedRecord::sign(&client.record(me, 7), &client.key).unwrap();
    assert!(client
        .exchange(RawClient::request(vec![valid]))
        .await
        .is_some());
    let v = wait_for(&mut node.view, Duration::from_secs(3), |v| {
        v.peers.contains_key(&me)
    })
    .await;
    assert_eq!(
        v.expect("valid record accepted").counters_total("x"),
        Some(1000)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_garbage_oversized_and_flooding_frames_are_rejected() {
    let _serial = SERIAL.lock().await;
    let (node, addr) = one_node().await;
    let mut client = RawClient::connect(addr, node.peer_id).await;
    let count = |r| node.metrics.rejected_count(r);

    // A well-framed body that is not CBOR of a request.
    assert!(client
        .exchange(RawClient::framed(&[0xff, 0x00, 0x13, 0x37]))
        .await
        .is_none());
    // A broken length prefix (more than 10 varint bytes).
    assert!(client.exchange(vec![0xff; 16]).await.is_none());
    assert!(eventually(|| count(RejectReason::Malformed) == 2).await);
    let malformed = count(RejectReason::Malformed);
    // A frame announcing 200 KiB against the node's 128 KiB limit: refused
    // before the body is read.
    let mut big = Vec::new();
    varint(200 * 1024, &mut big);
    big.extend(std::iter::repeat_n(0u8, 200 * 1024));
    assert!(client.exchange(big).await.is_none());
    assert!(eventually(|| count(RejectReason::Oversized) == 1).await);
    // A record payload above 64 KiB inside a valid frame.
    let huge = SignedRecord {
        payload: vec![0xa0; 70 * 1024],
        signature: vec![0; 64],
    };
    assert!(client
        .exchange(RawClient::request(vec![huge]))
        .await
        .is_some());
    assert!(eventually(|| count(RejectReason::Oversized) == 2).await);
    // Wrong cluster name: refused as unauthorized.
    let other = SyncRequest {
        cluster: "other-room".into(),
        ..Default::default()
    };
    assert!(client
        .exchange(RawClient::framed(&other.to_bytes()))
        .await
        .is_none());
    assert!(eventually(|| count(RejectReason::Unauthorized) == 1).await);
    // Flooding: the node allows a burst of 10 at 5/s; 30 requests in a row
    // are partly refused.
    let mut refused = 0;
    for _ in 0..30 {
        let ok = client.exchange(RawClient::request(vec![])).await.is_some();
        refused += usize::from(!ok);
    }
    assert!(refused > 0);
    assert!(eventually(|| count(RejectReason::RateLimited) == refused as u64).await);
    // Still alive and well.
    assert_eq!(count(RejectReason::Malformed), malformed);
    node.stop().await;
}

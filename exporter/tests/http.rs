//! The HTTP server over real loopback sockets: routes, auth, bad requests,
//! limits and graceful shutdown.

use coolmesh_exporter::auth::Token;
use coolmesh_exporter::model::{PeerStatus, ThermalSummary};
use coolmesh_exporter::{App, BuildInfo, Command, ControlRequest, Limits, Metrics, Snapshot};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Server {
    addr: std::net::SocketAddr,
    snap: watch::Sender<Arc<Snapshot>>,
    commands: mpsc::Receiver<ControlRequest>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(token: Option<&str>, limits: Limits) -> Server {
    start_with(token, limits, None).await
}

async fn start_with(
    token: Option<&str>,
    limits: Limits,
    history: Option<coolmesh_exporter::History>,
) -> Server {
    let (snap, rx) = watch::channel(Arc::new(Snapshot {
        node: "n1".into(),
        ..Default::default()
    }));
    let build = BuildInfo {
        version: "t",
        revision: "t",
        rustc: "t",
    };
    let metrics = Metrics::new(&build, rx.clone(), 2).expect("metrics");
    let (tx, commands) = mpsc::channel(4);
    let app = Arc::new(App {
        metrics,
        events: None,
        history,
        snapshot: rx,
        control: Some(tx),
        token: token
            .map(|t| Token::from_file_content(t).expect("token"))
            .into(),
        limits,
        web: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(coolmesh_exporter::serve(listener, app, async {
        let _ = stop_rx.await;
    }));
    Server {
        addr,
        snap,
        commands,
        stop: Some(stop),
        task,
    }
}

/// Send raw bytes, read the whole response (the request asks to close).
async fn raw(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(req).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

async fn req(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, String) {
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let text = raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n")
            .as_bytes(),
    )
    .await;
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn read_endpoints() {
    let s = start(None, Limits::default()).await;
    let (st, body) = req(s.addr, "GET", "/metrics", None).await;
    assert_eq!(st, 200);
    assert!(
        body.contains("coolmesh_build_info{revision=\"t\",rustc=\"t\",version=\"t\"} 1"),
        "{body}"
    );
    assert_eq!(req(s.addr, "GET", "/-/healthy", None).await.0, 200);
    assert_eq!(req(s.addr, "GET", "/-/ready", None).await.0, 503);
    s.snap.send_modify(|snap| Arc::make_mut(snap).ready = true);
    assert_eq!(req(s.addr, "GET", "/-/ready", None).await.0, 200);
    let (st, body) = req(s.addr, "GET", "/", None).await;
    assert!(st == 200 && body.contains("<title>coolmesh</title>"));
    let (st, body) = req(s.addr, "GET", "/v1/state", None).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["node"], "n1");
    assert_eq!(v["fsm"]["state"], "normal");
    assert_eq!(req(s.addr, "GET", "/nope", None).await.0, 404);
    assert_eq!(req(s.addr, "POST", "/metrics", None).await.0, 405);
    assert_eq!(req(s.addr, "GET", "/v1/shutdown/cancel", None).await.0, 405);
}

#[tokio::test]
async fn offload_ranks_live_peers_by_headroom() {
    let s = start(None, Limits::default()).await;
    let peer = |node: &str, liveness: &str, headroom: f64, critical: bool| PeerStatus {
        node: node.into(),
        peer_id: format!("id-{node}"),
        liveness: liveness.into(),
        last_seen_ms: 0,
        version: 1,
        thermal: ThermalSummary {
            headroom_celsius: Some(headroom),
            critical,
            ..Default::default()
        },
        power_up: Some(true),
        state: "normal".into(),
        reason: "none".into(),
        deadline_ms: None,
        stale: false,
        stage: 0,
    };
    s.snap.send_modify(|snap| {
        Arc::make_mut(snap).cluster.peers = vec![
            peer("a", "alive", 20.0, false),
            peer("b", "alive", 40.0, false),
            peer("c", "dead", 60.0, false),
            peer("d", "alive", 50.0, true),
            peer("e", "suspect", 45.0, false),
        ]
    });
    let (_, body) = req(s.addr, "GET", "/v1/offload", None).await;
    let v: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let names: Vec<&str> = v.iter().filter_map(|p| p["node"].as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    // Per-peer series are capped (2 in this server): the peers that are not
    // alive first (so a lost peer always shows), then by name.
    let (_, metrics) = req(s.addr, "GET", "/metrics", None).await;
    assert_eq!(metrics.matches("coolmesh_peer_up{").count(), 2, "{metrics}");
    assert!(
        metrics.contains("coolmesh_peer_up{peer=\"c\"} 0")
            && metrics.contains("coolmesh_peer_up{peer=\"e\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("coolmesh_cluster_peers{state=\"alive\"} 3"));
    // A peer that leaves vanishes with the next snapshot.
    s.snap
        .send_modify(|snap| Arc::make_mut(snap).cluster.peers.retain(|p| p.node != "c"));
    let (_, metrics) = req(s.addr, "GET", "/metrics", None).await;
    assert!(!metrics.contains("peer=\"c\""), "{metrics}");
}

#[tokio::test]
async fn mutating_endpoints_need_the_token() {
    let mut s = start(Some(TOKEN), Limits::default()).await;
    assert_eq!(
        req(s.addr, "POST", "/v1/shutdown/cancel", None).await.0,
        401
    );
    assert_eq!(
        req(
            s.addr,
            "POST",
            "/v1/shutdown/cancel",
            Some("wrong-token-wrong-token")
        )
        .await
        .0,
        401
    );
    assert!(
        s.commands.try_recv().is_err(),
        "no command may reach the agent without the token"
    );

    // Bad query values: 400 before any command is sent.
    for path in [
        "/v1/maintenance",
        "/v1/maintenance?for=soon",
        "/v1/maintenance?for=9999h",
        "/v1/counters/x/inc?amount=abc",
        "/v1/counters/x/inc?amount=0",
        "/v1/counters/bad%20name/inc",
    ] {
        let (st, body) = req(s.addr, "POST", path, Some(TOKEN)).await;
        assert_eq!(st, 400, "{path}: {body}");
        assert!(body.contains("error"), "{body}");
    }
    assert!(s.commands.try_recv().is_err());

    // A good request reaches the agent and its answer comes back.
    let agent = tokio::spawn(async move {
        let mut seen = Vec::new();
        for answer in [
            Ok("cancelled".to_string()),
            Err("nothing to cancel".to_string()),
            Ok("ok".to_string()),
        ] {
            let r = s.commands.recv().await.expect("command");
            seen.push(r.command.clone());
            let _ = r.reply.send(answer);
        }
        seen
    });
    let (st, body) = req(s.addr, "POST", "/v1/shutdown/cancel", Some(TOKEN)).await;
    assert_eq!((st, body.contains("cancelled")), (200, true), "{body}");
    let (st, body) = req(s.addr, "POST", "/v1/maintenance?for=1h30m", Some(TOKEN)).await;
    assert_eq!(
        (st, body.contains("nothing to cancel")),
        (409, true),
        "{body}"
    );
    assert_eq!(
        req(
            s.addr,
            "POST",
            "/v1/counters/jobs.moved/inc?amount=-3",
            Some(TOKEN)
        )
        .await
        .0,
        200
    );
    let seen = agent.await.expect("agent");
    assert_eq!(
        seen,
        vec![
            Command::CancelShutdown,
            Command::Maintenance {
                duration: Duration::from_secs(5400)
            },
            Command::IncrementCounter {
                name: "jobs.moved".into(),
                amount: -3
            }
        ]
    );
}

#[tokio::test]
async fn without_a_token_file_mutations_are_forbidden() {
    let s = start(None, Limits::default()).await;
    let (st, body) = req(s.addr, "POST", "/v1/shutdown/cancel", Some(TOKEN)).await;
    assert_eq!(st, 403);
    assert!(body.contains("token_file"), "{body}");
}

#[tokio::test]
async fn garbage_and_oversized_requests() {
    let limits = Limits {
        max_header_bytes: 8192,
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let s = start(None, limits).await;
    let r = raw(s.addr, b"\x00\x01\x02 garbage\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let r = raw(s.addr, huge.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431") || r.is_empty(), "{r:?}");
    // Slowloris: a client that never finishes its headers is cut off.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "connection must be closed by the header read timeout"
    );
    // The server is still fine afterwards.
    assert_eq!(req(s.addr, "GET", "/-/healthy", None).await.0, 200);
}

#[tokio::test]
async fn connection_cap_and_graceful_stop() {
    let mut s = start(
        None,
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
    )
    .await;
    // Two idle keep-alive connections take both slots...
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut b = [0u8; 64];
        let n = c.read(&mut b).await.expect("read");
        assert!(n > 0);
        held.push(c);
    }
    // ...so a third evicts the one idle the longest and is served
    // (exporter/tests/http_limits.rs has the whole policy).
    let r = raw(
        s.addr,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
    // The rest of its earlier answer, then the close.
    let mut rest = Vec::new();
    let evicted =
        tokio::time::timeout(Duration::from_secs(2), held[0].read_to_end(&mut rest)).await;
    assert!(evicted.is_ok(), "the oldest idle connection is closed");
    drop(held);
    assert_eq!(req(s.addr, "GET", "/-/healthy", None).await.0, 200);

    let stopped = std::time::Instant::now();
    let _ = s.stop.take().map(|t| t.send(()));
    tokio::time::timeout(Duration::from_secs(3), &mut s.task)
        .await
        .expect("stops")
        .expect("join")
        .expect("ok");
    assert!(stopped.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(s.addr).await.is_err(), "listener closed");
}

/// `POST /v1/room` with a body (Content-Length) and maybe a token.
async fn post_body(
    addr: std::net::SocketAddr,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    let text = raw(addr, &r).await;
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn room_commands_need_the_token_and_a_bounded_body_and_answer_the_agents_report() {
    let mut s = start(Some(TOKEN), Limits::default()).await;
    let (st, _) = post_body(s.addr, "/v1/room", None, b"x").await;
    assert_eq!(st, 401);
    let (st, _) = post_body(s.addr, "/v1/room", Some("wrong-token-wrong-token"), b"x").await;
    assert_eq!(st, 401);
    let (st, body) = post_body(s.addr, "/v1/room", Some(TOKEN), b"").await;
    assert_eq!(st, 400, "{body}");
    let big = vec![0u8; coolmesh_exporter::http::MAX_ROOM_COMMAND_BYTES + 1];
    let (st, body) = post_body(s.addr, "/v1/room", Some(TOKEN), &big).await;
    assert_eq!(st, 413, "{body}");
    assert_eq!(req(s.addr, "GET", "/v1/room", None).await.0, 405);
    assert!(
        s.commands.try_recv().is_err(),
        "no command may reach the agent without the token and a body"
    );
    // The agent's report is passed through as JSON; a refusal is a 409.
    let agent = tokio::spawn(async move {
        let mut seen = Vec::new();
        for answer in [
            Ok(r#"{"id":"00ff","answers":[]}"#.to_string()),
            Err("room commands must be signed".to_string()),
        ] {
            let r = s.commands.recv().await.expect("command");
            seen.push(r.command.clone());
            let _ = r.reply.send(answer);
        }
        seen
    });
    let (st, body) = post_body(s.addr, "/v1/room", Some(TOKEN), b"\xa1\x00\x40").await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["id"], "00ff");
    let (st, body) = post_body(s.addr, "/v1/room", Some(TOKEN), b"abc").await;
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("must be signed"), "{body}");
    assert_eq!(
        agent.await.expect("agent"),
        vec![
            Command::Room {
                command: b"\xa1\x00\x40".to_vec()
            },
            Command::Room {
                command: b"abc".to_vec()
            }
        ]
    );
}

/// `GET /v1/history`: compact arrays per node, exactly this shape; `node`
/// and `limit` select; bad parameters and unknown nodes are said so.
#[tokio::test]
async fn history_is_served_as_compact_arrays() {
    use coolmesh_exporter::history::{HistoryConfig, NodeSample, Sample};
    let t0: u64 = 1_700_000_000_000;
    let history =
        coolmesh_exporter::History::with_clock(HistoryConfig::default(), Arc::new(move || t0));
    let sample = |peer_id: &str, node: &str, hottest: f64, state: &'static str| NodeSample {
        peer_id: peer_id.into(),
        node: node.into(),
        is_self: peer_id == "ME",
        live: true,
        sample: Sample {
            hottest: Some(hottest),
            ambient: (peer_id == "ME").then_some(24.0),
            headroom: Some(90.0 - hottest),
            trend: Some(0.0),
            state: Some(state),
            ..Sample::default()
        },
    };
    history.sample_all(
        t0 - 20_000,
        &[
            sample("ME", "n1", 40.0, "normal"),
            sample("P2", "n2", 50.5, "normal"),
        ],
    );
    history.sample_all(
        t0 - 10_000,
        &[
            sample("ME", "n1", 41.0, "normal"),
            sample("P2", "n2", 51.0, "normal"),
        ],
    );
    // The power goes: this node's state change is a point of its own.
    history.sample_one(t0 - 9_500, &sample("ME", "n1", 41.0, "pre_fail"));
    let s = start_with(None, Limits::default(), Some(history)).await;

    let (st, body) = req(s.addr, "GET", "/v1/history", None).await;
    assert_eq!(st, 200, "{body}");
    let want = concat!(
        "{\"now_ms\":1700000000000,\"window_seconds\":1800,\"period_seconds\":10,",
        "\"points_per_node\":240,\"max_nodes\":1000,",
        "\"states\":[\"normal\",\"pre_fail\",\"shutdown\",\"local_fault\",\"maintenance\"],",
        "\"tracked\":2,\"untracked\":0,\"omitted\":0,\"nodes\":[",
        "{\"node\":\"n1\",\"peer_id\":\"ME\",\"self\":true,\"t\":[-20.0,-10.0,-9.5],",
        "\"hottest\":[40,41,41],\"inlet\":[null,null,null],\"ambient\":[24,24,24],",
        "\"headroom\":[50,49,49],\"trend\":[0,0,0],\"state\":[0,0,1],\"air\":[0,0,0]},",
        "{\"node\":\"n2\",\"peer_id\":\"P2\",\"self\":false,\"t\":[-20.0,-10.0],",
        "\"hottest\":[50.5,51],\"inlet\":[null,null],\"ambient\":[null,null],",
        "\"headroom\":[39.5,39],\"trend\":[0,0],\"state\":[0,0],\"air\":[0,0]}]}"
    );
    assert_eq!(body, want);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["nodes"][0]["t"].as_array().map(Vec::len), Some(3));

    // One node, by name or PeerId.
    let (st, body) = req(s.addr, "GET", "/v1/history?node=n2", None).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["nodes"][0]["peer_id"], "P2");
    // The most telling first, the rest counted.
    let (st, body) = req(s.addr, "GET", "/v1/history?limit=1", None).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["nodes"][0]["node"], "n1");
    assert_eq!(
        (v["omitted"].as_u64(), v["tracked"].as_u64()),
        (Some(1), Some(2))
    );

    let (st, body) = req(s.addr, "GET", "/v1/history?node=nope", None).await;
    assert_eq!(st, 404);
    assert!(body.contains("no history of node \\\"nope\\\""), "{body}");
    for bad in ["/v1/history?limit=0", "/v1/history?limit=x"] {
        let (st, body) = req(s.addr, "GET", bad, None).await;
        assert_eq!(st, 400, "{bad}: {body}");
    }
    assert_eq!(req(s.addr, "POST", "/v1/history", None).await.0, 405);
    // Without a history: 404.
    let plain = start(None, Limits::default()).await;
    assert_eq!(req(plain.addr, "GET", "/v1/history", None).await.0, 404);
}

/// Raw bytes of a response (a gzip body is not UTF-8).
async fn raw_bytes(addr: std::net::SocketAddr, req: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(req).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    (
        String::from_utf8_lossy(&buf[..split]).into_owned(),
        buf[split + 4..].to_vec(),
    )
}

#[tokio::test]
async fn metrics_are_gzipped_when_the_scraper_accepts_it() {
    use std::io::Read;
    let s = start(None, Limits::default()).await;
    let get = |enc: &str| {
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{enc}\r\n").into_bytes()
    };
    let (head, plain) = raw_bytes(s.addr, &get("")).await;
    assert!(!head.to_lowercase().contains("content-encoding"), "{head}");
    assert!(
        head.to_lowercase().contains("vary: accept-encoding"),
        "{head}"
    );
    // What Prometheus sends.
    let (head, zipped) = raw_bytes(s.addr, &get("Accept-Encoding: gzip\r\n")).await;
    assert!(
        head.to_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .expect("gunzip");
    // Same page (the build_info line is first and stable; the rest may
    // differ only in scrape-time counters, so compare the families).
    let families = |b: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| l.starts_with("# TYPE "))
            .map(String::from)
            .collect()
    };
    assert_eq!(families(&unzipped), families(&plain));
    assert!(!families(&plain).is_empty());
    // Refused or absent: plain.
    for enc in [
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: br\r\n",
        "Accept-Encoding: identity\r\n",
    ] {
        let (head, _) = raw_bytes(s.addr, &get(enc)).await;
        assert!(
            !head.to_lowercase().contains("content-encoding"),
            "{enc}: {head}"
        );
    }
    for enc in [
        "Accept-Encoding: br, gzip;q=0.5\r\n",
        "Accept-Encoding: *\r\n",
        "Accept-Encoding: GZIP\r\n",
    ] {
        let (head, _) = raw_bytes(s.addr, &get(enc)).await;
        assert!(
            head.to_lowercase().contains("content-encoding: gzip"),
            "{enc}: {head}"
        );
    }
}

//! Scrapes are always served (issue 14): connection caps, eviction of
//! connections that have not sent a request, the first-byte and
//! request-head deadlines, over real loopback sockets. Flood connections
//! come from other loopback addresses (127.0.0.0/8 is all loopback on
//! Linux), so the per-address cap and the global cap can be told apart.
//!
//! No sleep decides a result: the tests wait for conditions under
//! deadlines. Time bounds are generous (the 100 ms figure is measured by
//! `.ci/http-flood.sh`, see BENCHMARKS.md).

use coolmesh_exporter::auth::Token;
use coolmesh_exporter::http::HttpMetrics;
use coolmesh_exporter::model::CounterStatus;
use coolmesh_exporter::{App, BuildInfo, ControlRequest, Limits, Metrics, Snapshot};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Server {
    addr: SocketAddr,
    http: HttpMetrics,
    commands: mpsc::Receiver<ControlRequest>,
    _snap: watch::Sender<Arc<Snapshot>>,
    _stop: oneshot::Sender<()>,
}

async fn start(limits: Limits) -> Server {
    let (snap, rx) = watch::channel(Arc::new(Snapshot {
        node: "n1".into(),
        ready: true,
        ..Default::default()
    }));
    let build = BuildInfo {
        version: "t",
        revision: "t",
        rustc: "t",
    };
    let metrics = Metrics::new(&build, rx.clone(), 2).expect("metrics");
    let http = metrics.http.clone();
    let (tx, commands) = mpsc::channel(16);
    let app = Arc::new(App {
        metrics,
        events: None,
        history: None,
        snapshot: rx,
        control: Some(tx),
        token: Some(Token::from_file_content(TOKEN).expect("token")).into(),
        limits,
        web: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(coolmesh_exporter::serve(listener, app, async {
        let _ = stop_rx.await;
    }));
    Server {
        addr,
        http,
        commands,
        _snap: snap,
        _stop: stop,
    }
}

/// Connect from `127.0.0.<host>`.
async fn connect_from(host: u8, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from(([127, 0, 0, host], 0)))
        .expect("bind source");
    sock.connect(addr).await.expect("connect")
}

/// Wait until `cond` holds, polling; panic with `what` after `limit`.
async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One GET on a fresh connection from `127.0.0.<host>`: status and body.
async fn get_from(host: u8, addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect_from(host, addr).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Whether the server closes `s` within `limit` (EOF or reset), reading
/// and discarding anything it sends.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn counter(v: &prometheus::IntCounterVec, label: &str) -> u64 {
    v.with_label_values(&[label]).get()
}

/// A request whose handler waits for the agent: busy until answered.
async fn in_flight(host: u8, addr: SocketAddr) -> TcpStream {
    let mut s = connect_from(host, addr).await;
    let req = format!(
        "POST /v1/shutdown/cancel HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    s
}

#[tokio::test]
async fn scrapes_are_served_while_idle_connections_fill_the_cap() {
    let s = start(Limits {
        max_connections: 16,
        ..Limits::default()
    })
    .await;
    // 200 idle connections from 50 addresses (4 each: under the
    // per-address cap of 8), so the global cap is what they hit.
    let mut idle = Vec::new();
    for i in 0..200u32 {
        idle.push(connect_from(10 + (i % 50) as u8, s.addr).await);
    }
    until(Duration::from_secs(10), "the flood to be accepted", || {
        s.http.accepted.get() >= 200
    })
    .await;
    assert!(s.http.open.get() <= 16 + 1, "{}", s.http.open.get());
    for path in ["/metrics", "/-/healthy", "/-/ready"] {
        let t = Instant::now();
        let (st, body) = get_from(1, s.addr, path).await;
        assert_eq!(st, 200, "{path}: {body}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    assert!(counter(&s.http.evicted, "connection_limit") >= 184);
    assert_eq!(counter(&s.http.rejected, "connection_limit"), 0);
    // The page shows it.
    let (_, page) = get_from(1, s.addr, "/metrics").await;
    assert!(
        page.contains("coolmesh_http_connections_evicted_total{reason=\"connection_limit\"}"),
        "{page}"
    );
    // The oldest idle connections were the ones closed.
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)).await);
}

#[tokio::test]
async fn trickling_headers_are_cut_at_the_header_deadline() {
    let s = start(Limits {
        first_byte_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    // One byte every 50 ms: far more than a byte a second, never a full head.
    let mut c = connect_from(2, s.addr).await;
    let t = Instant::now();
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ".repeat(4);
    let mut cut = false;
    for b in head.iter().cycle().take(200) {
        if c.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        let mut one = [0u8; 1];
        // Read with a short timeout: a close shows as EOF or reset.
        match tokio::time::timeout(Duration::from_millis(50), c.read(&mut one)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            _ => {}
        }
    }
    let elapsed = t.elapsed();
    assert!(cut, "the trickle was never cut");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "cut after {elapsed:?}; want the 1 s header deadline"
    );
    assert_eq!(counter(&s.http.timeouts, "request_head"), 1);

    // A client that sends nothing is cut at the first-byte deadline.
    let mut silent = connect_from(2, s.addr).await;
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(counter(&s.http.timeouts, "first_byte"), 1);

    // A kept-alive connection: the next request's head has the same
    // deadline from its first byte, however slowly it trickles.
    let mut ka = connect_from(3, s.addr).await;
    ka.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = ka.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let t = Instant::now();
    let mut cut = false;
    for b in b"GET /-/healthy HTTP/1.1\r\nX: ".iter().cycle().take(200) {
        if ka.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(50), ka.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            _ => {}
        }
    }
    assert!(cut, "the kept-alive trickle was never cut");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(counter(&s.http.timeouts, "request_head"), 2);
    // The server is fine.
    assert_eq!(get_from(1, s.addr, "/-/healthy").await.0, 200);
}

#[tokio::test]
async fn per_address_cap_is_enforced() {
    let mut s = start(Limits {
        max_connections: 64,
        max_connections_per_ip: 3,
        ..Limits::default()
    })
    .await;
    // Three requests in progress from 127.0.0.2 (the agent never answers).
    let mut busy = Vec::new();
    let mut replies = Vec::new();
    for _ in 0..3 {
        busy.push(in_flight(2, s.addr).await);
        replies.push(s.commands.recv().await.expect("command"));
    }
    // A fourth from the same address is refused: nothing to evict.
    let mut fourth = connect_from(2, s.addr).await;
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await);
    assert_eq!(counter(&s.http.rejected, "per_ip_limit"), 1);
    // Other addresses are not affected.
    assert_eq!(get_from(3, s.addr, "/-/healthy").await.0, 200);

    // Idle connections from one address: the fourth evicts the oldest.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from(4, s.addr).await);
    }
    until(Duration::from_secs(5), "three idle admitted", || {
        s.http.accepted.get() >= 3 + 1 + 3
    })
    .await;
    let (st, _) = get_from(4, s.addr, "/-/healthy").await;
    assert_eq!(st, 200);
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)).await);
    assert_eq!(counter(&s.http.evicted, "per_ip_limit"), 1);
    // Never more than three open from 127.0.0.4 at once: the rest of the
    // idle ones are still there.
    for c in &mut idle[1..] {
        assert!(!closed_within(c, Duration::from_millis(50)).await);
    }

    // The requests in progress were never cut: answer them.
    for r in replies {
        let _ = r.reply.send(Ok("cancelled".into()));
    }
    for mut c in busy {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
            .await
            .expect("response")
            .expect("read");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
}

#[tokio::test]
async fn eviction_never_kills_a_response_in_progress() {
    let mut s = start(Limits {
        max_connections: 4,
        max_connections_per_ip: 64,
        ..Limits::default()
    })
    .await;
    // One request in progress, then three idle connections: the cap is full.
    let mut busy = in_flight(2, s.addr).await;
    let reply = s.commands.recv().await.expect("command");
    let mut idle = Vec::new();
    for i in 0..3 {
        idle.push(connect_from(10 + i, s.addr).await);
    }
    until(Duration::from_secs(5), "four admitted", || {
        s.http.accepted.get() >= 4
    })
    .await;
    // Forty new idle connections: each evicts the oldest waiting one,
    // never the busy one; then a scrape is served the same way.
    let mut flood = Vec::new();
    for i in 0..40u8 {
        flood.push(connect_from(20 + i, s.addr).await);
    }
    until(Duration::from_secs(5), "the flood admitted", || {
        s.http.accepted.get() >= 44
    })
    .await;
    assert_eq!(counter(&s.http.evicted, "connection_limit"), 40);
    let (st, body) = get_from(1, s.addr, "/metrics").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(counter(&s.http.evicted, "connection_limit"), 41);
    for c in &mut idle {
        assert!(closed_within(c, Duration::from_secs(2)).await);
    }
    // With every slot busy a new connection is refused, not served by
    // cutting a request in progress.
    let mut more_busy = Vec::new();
    let mut more_replies = Vec::new();
    for i in 0..3u8 {
        more_busy.push(in_flight(100 + i, s.addr).await);
        more_replies.push(s.commands.recv().await.expect("command"));
    }
    let mut refused = connect_from(110, s.addr).await;
    assert!(closed_within(&mut refused, Duration::from_secs(2)).await);
    assert_eq!(counter(&s.http.rejected, "connection_limit"), 1);

    let _ = reply.reply.send(Ok("cancelled".into()));
    for r in more_replies {
        let _ = r.reply.send(Ok("cancelled".into()));
    }
    for c in std::iter::once(&mut busy).chain(more_busy.iter_mut()) {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
            .await
            .expect("response")
            .expect("read");
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("cancelled"),
            "{text}"
        );
    }
    // Back to normal.
    until(Duration::from_secs(5), "slots freed", || {
        s.http.open.get() <= 1
    })
    .await;
    assert_eq!(get_from(1, s.addr, "/metrics").await.0, 200);
}

#[tokio::test]
async fn large_response_to_a_slow_reader_is_not_evicted() {
    // A response far bigger than the socket buffers, not read while new
    // connections keep evicting: it arrives whole.
    let s = start(Limits {
        max_connections: 2,
        max_connections_per_ip: 64,
        ..Limits::default()
    })
    .await;
    s._snap.send_modify(|snap| {
        Arc::make_mut(snap).counters = (0..100_000)
            .map(|i| CounterStatus {
                name: format!("counter-{i:06}-{}", "x".repeat(40)),
                value: i,
                local: i,
            })
            .collect();
    });
    let mut c = connect_from(2, s.addr).await;
    c.write_all(b"GET /v1/counters HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    c.read_exact(&mut first).await.expect("status line");
    assert_eq!(&first, b"HTTP/1.1 200");
    // Its writer is now blocked on a full socket buffer. Idle connections
    // fill the other slot and evict each other; scrapes still get in.
    let mut idle = Vec::new();
    for i in 0..10u8 {
        idle.push(connect_from(20 + i, s.addr).await);
    }
    until(Duration::from_secs(5), "the idle ones admitted", || {
        s.http.accepted.get() >= 11
    })
    .await;
    assert_eq!(counter(&s.http.evicted, "connection_limit"), 9);
    for i in 0..5u8 {
        assert_eq!(get_from(40 + i, s.addr, "/-/healthy").await.0, 200);
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .expect("response")
        .expect("read");
    let text = String::from_utf8_lossy(&rest);
    let (_, body) = text.split_once("\r\n\r\n").expect("head");
    let v: serde_json::Value = serde_json::from_str(body).expect("whole JSON body");
    assert_eq!(v.as_array().map(Vec::len), Some(100_000));
}

//! Helpers for tests that run the real `coolmesh` binary.
#![allow(dead_code)]

pub mod raw_codec;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The user these tests run as (`id -un`), for `preflight --user`: the
/// files a test makes are that user's.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    assert!(out.status.success(), "id -un: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A running agent; killed on drop.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    /// Log lines (JSON) not yet read by the test.
    pub logs: mpsc::Receiver<String>,
    /// Log lines [`start_agent`] read while waiting for the HTTP address.
    pub early_logs: Vec<String>,
    /// The state directory [`start_agent`] made when the test gave none
    /// (never the default /var/lib/coolmesh of the machine running tests).
    pub _state: Option<tempfile::TempDir>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON log line (one flat object: `time`, `level`, `source`, `msg`, then
/// the event's fields) whose `msg` is one of `messages`.
fn log_fields(line: &str, messages: &[&str]) -> Option<serde_json::Value> {
    let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
    let msg = v["msg"].as_str()?;
    messages.contains(&msg).then_some(v)
}

impl Agent {
    /// The first log line (since the start) whose message is
    /// one of `messages`, waiting up to `within` for it.
    pub fn wait_log(&mut self, messages: &[&str], within: Duration) -> serde_json::Value {
        if let Some(f) = self.early_logs.iter().find_map(|l| log_fields(l, messages)) {
            return f;
        }
        let deadline = Instant::now() + within;
        loop {
            let line = self
                .logs
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("no log line {messages:?} within {within:?}: {e}"));
            let found = log_fields(&line, messages);
            self.early_logs.push(line);
            if let Some(f) = found {
                return f;
            }
        }
    }

    /// The TCP port of the agent's cluster (libp2p) listener, from its
    /// "listening" log line (`/ip4/127.0.0.1/tcp/PORT`): start agents with
    /// `tcp/0` and hand this to their peers.
    pub fn p2p_port(&mut self) -> u16 {
        let f = self.wait_log(&["listening"], Duration::from_secs(20));
        let addr = f["address"].as_str().expect("address").to_string();
        addr.strip_prefix("/ip4/127.0.0.1/tcp/")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a loopback TCP multiaddr: {addr}"))
    }
}

/// Start `coolmesh agent <args>` on an ephemeral port with JSON logs, and
/// wait until it says where it listens.
pub fn start_agent(args: &[&str]) -> Agent {
    start_agent_env(args, &[])
}

/// [`start_agent`] with extra environment variables for the child only.
#[allow(clippy::zombie_processes)] // the Agent's Drop kills and waits
pub fn start_agent_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Agent {
    // Tests run in parallel: unless a test sets up its own cluster, each
    // agent gets an ephemeral libp2p port and no mDNS, so unrelated agents
    // never meet.
    let mut cluster_args: Vec<&str> = Vec::new();
    if !args.iter().any(|a| a.starts_with("--cluster.")) {
        cluster_args = vec![
            "--cluster.listen",
            "/ip4/127.0.0.1/tcp/0",
            "--cluster.no-mdns",
            "--cluster.insecure-no-psk",
        ];
    }
    // Without a state directory of its own (flag or config), an agent
    // would write its identity and journal to /var/lib/coolmesh.
    let state = (!args.iter().any(|a| *a == "--state-dir" || *a == "--config"))
        .then(|| tempfile::tempdir().expect("state dir"));
    let state_args: Vec<String> = state
        .iter()
        .flat_map(|d| ["--state-dir".to_string(), d.path().display().to_string()])
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .envs(env.iter().copied())
        .arg("agent")
        .args(cluster_args)
        .args(&state_args)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "json",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coolmesh");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut agent = Agent {
        child,
        // Replaced below; nothing connects to it.
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        logs: rx,
        early_logs: Vec::new(),
        _state: state,
    };
    // The HTTP line, by its message: the cluster's "listening" line has an
    // `address` too (a multiaddr).
    let f = agent.wait_log(&["serving HTTP", "serving HTTPS"], Duration::from_secs(20));
    agent.addr = f["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("HTTP address: {f}"));
    agent
}

/// One HTTP/1.1 exchange on a fresh connection: the whole request in one
/// write, then everything the server sent until it closed (or 10 s of
/// silence). A server that answers early and closes (e.g. a TLS port
/// answering plain HTTP with a 400) may make the write fail (EPIPE,
/// ECONNRESET) or reset the read: what arrived is still the answer.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, Interrupted};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    if let Err(e) = s.write_all(request) {
        assert!(
            matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted),
            "write to {addr}: {e}"
        );
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == Interrupted => continue,
            // Reset after (part of) the answer: keep what arrived.
            Err(e) if matches!(e.kind(), ConnectionReset | ConnectionAborted) => break,
            // Silence past the read timeout: what arrived is the answer.
            Err(_) => break,
        }
    }
    buf
}

/// Minimal HTTP/1.1 request; returns (status, body). Status 0: no answer.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n"
    );
    let buf = String::from_utf8_lossy(&http_raw(addr, req.as_bytes())).into_owned();
    let status = buf.get(9..12).and_then(|x| x.parse().ok()).unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Poll `f` every 50 ms until it returns Some, or panic after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Value of the first series in `metrics` that starts with `prefix`.
pub fn metric(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// Send SIGTERM and return how long the agent took to exit, and its status.
pub fn terminate(agent: &mut Agent) -> (Duration, std::process::ExitStatus) {
    let pid = agent.child.id() as libc_pid;
    let start = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { kill(pid, 15) };
    let deadline = start + Duration::from_secs(10);
    loop {
        if let Some(st) = agent.child.try_wait().expect("wait") {
            return (start.elapsed(), st);
        }
        assert!(
            Instant::now() < deadline,
            "agent did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Send SIGHUP to the agent: `systemctl reload coolmesh` (the unit's
/// `ExecReload=/bin/kill -HUP $MAINPID`).
pub fn hangup(agent: &Agent) {
    let pid = agent.child.id() as libc_pid;
    // SAFETY: plain kill(2) on our own child.
    let r = unsafe { kill(pid, 1) };
    assert_eq!(r, 0, "kill -HUP {pid}");
}

#[allow(non_camel_case_types)]
type libc_pid = i32;
extern "C" {
    fn kill(pid: libc_pid, sig: i32) -> i32;
}

/// One dry-run cluster agent of a binary test: its directory `dir` gets a
/// token file, a sensor file (inlet 30 C, critical 80 C) and
/// `coolmesh.toml` (sensors every 1 s, power probed every 500 ms at
/// `power_port`, grace 2 s, cluster `cluster` on `127.0.0.1:p2p`
/// (0: an ephemeral port, read back with [`Agent::p2p_port`]),
/// bootstrapping from `seed`, no mDNS). `extra_cluster` is appended to the
/// `[cluster]` table (e.g. a `psk_file` line). Returns the config's path.
pub struct ClusterNodeConfig<'a> {
    pub dir: &'a std::path::Path,
    pub name: &'a str,
    pub token: &'a str,
    pub cluster: &'a str,
    pub p2p: u16,
    pub seed: Option<u16>,
    pub power_port: u16,
    pub extra_cluster: &'a str,
}

/// The text of a config written by [`write_cluster_config`], with its
/// `[shutdown]` section's first line (`grace = "2s"`) replaced by `body`
/// (which sets the grace and whatever else the test needs there).
pub fn shutdown_replaced(path: &Path, body: &str) -> String {
    const DEFAULT: &str = "[shutdown]\ngrace = \"2s\"\n";
    let text = std::fs::read_to_string(path).expect("config");
    assert!(text.contains(DEFAULT), "{text}");
    text.replace(DEFAULT, &format!("[shutdown]\n{body}"))
}

pub fn write_cluster_config(c: &ClusterNodeConfig) -> PathBuf {
    let d = c.dir;
    std::fs::create_dir_all(d).expect("mkdir");
    std::fs::write(d.join("token"), c.token).expect("token");
    std::fs::write(
        d.join("t.json"),
        r#"[{"chip":"inlet","sensor":"t","celsius":30,"critical_celsius":80}]"#,
    )
    .expect("readings");
    let peers = c
        .seed
        .map(|p| format!("\"/ip4/127.0.0.1/tcp/{p}\""))
        .unwrap_or_default();
    let cfg = format!(
        r#"[node]
name = "{name}"
state_dir = "{d}/state"
[http]
token_file = "{d}/token"
[sensors]
sources = ["file"]
file = "{d}/t.json"
interval = "1s"
timeout = "500ms"
[power]
targets = ["tcp://127.0.0.1:{power}"]
interval = "500ms"
timeout = "300ms"
[shutdown]
grace = "2s"
dry_run = true
dry_run_marker = "{d}/marker"
[cluster]
name = "{cluster}"
listen = ["/ip4/127.0.0.1/tcp/{p2p}"]
peers = [{peers}]
mdns = false
{insecure}
{extra}
"#,
        name = c.name,
        d = d.display(),
        power = c.power_port,
        cluster = c.cluster,
        p2p = c.p2p,
        extra = c.extra_cluster,
        // Loopback test clusters run without a key unless the test gives one.
        insecure = if c.extra_cluster.contains("psk_file") {
            ""
        } else {
            "insecure_no_psk = true"
        },
    );
    let path = d.join("coolmesh.toml");
    std::fs::write(&path, cfg).expect("config");
    path
}

/// GET `path` from an agent and parse the JSON answer (asserting 200).
pub fn get_json(a: &Agent, path: &str) -> serde_json::Value {
    let (st, body) = http(a.addr, "GET", path, None);
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// A socket bound to a port of 127.0.0.1 that never listens: connecting
/// to it is refused, and, unlike a listener bound and dropped, the port
/// cannot be taken by anyone else (an agent's port 0, an outgoing
/// connection) while the socket lives. Other sockets with SO_REUSEPORT
/// of the same user may still bind it (see [`PowerTarget`]).
pub fn reserved_port() -> (socket2::Socket, u16) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_reuse_port(true).expect("SO_REUSEPORT");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let port = s
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet")
        .port();
    (s, port)
}

/// A power target on 127.0.0.1 that the test switches off (connections
/// refused) and on (accepted) without ever giving up its port: a bound,
/// never listening socket keeps it reserved, and a listener shares it
/// (SO_REUSEPORT) while on. The listener accepts and closes connections,
/// so its backlog never fills however long the test probes it.
pub struct PowerTarget {
    pub port: u16,
    _reserve: socket2::Socket,
    listener: Option<(std::sync::Arc<std::sync::atomic::AtomicBool>, SocketAddr)>,
}

impl PowerTarget {
    /// A target that is on.
    pub fn new() -> Self {
        let (reserve, port) = reserved_port();
        let mut t = PowerTarget {
            port,
            _reserve: reserve,
            listener: None,
        };
        t.on();
        t
    }

    pub fn on(&mut self) {
        use socket2::{Domain, Socket, Type};
        if self.listener.is_some() {
            return;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        s.bind(&addr.into()).expect("bind the target's port");
        s.listen(128).expect("listen");
        let l = std::net::TcpListener::from(s);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break; // closes the listener: refused from now on
                }
                drop(c);
            }
        });
        self.listener = Some((stop, addr));
    }

    /// Refuse connections from now on (returns once the listener is closed).
    pub fn off(&mut self) {
        let Some((stop, addr)) = self.listener.take() else {
            return;
        };
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accepting thread; it closes the listener and exits.
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        wait_for("the target to refuse", Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .is_err()
                .then_some(())
        });
    }
}

impl Default for PowerTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PowerTarget {
    fn drop(&mut self) {
        self.off();
    }
}

/// Power probes the agent has run so far (every target, every outcome),
/// from `/metrics`: a clock in the agent's own rounds.
pub fn probe_rounds(agent: SocketAddr) -> f64 {
    let (_, m) = http(agent, "GET", "/metrics", None);
    m.lines()
        .filter(|l| l.starts_with("coolmesh_power_probe_duration_seconds_count"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Wait until the agent has run `n` more power probes than `since` (a
/// [`probe_rounds`] reading): instead of sleeping, let the agent do the
/// work after which a state must (still) hold.
pub fn wait_probe_rounds(agent: SocketAddr, since: f64, n: u32, within: Duration) {
    wait_for(&format!("{n} more power probes"), within, || {
        (probe_rounds(agent) >= since + f64::from(n)).then_some(())
    });
}

/// Run the `coolmesh` binary with `args` (a command, not the agent).
pub fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args(args)
        .output()
        .expect("run coolmesh")
}

/// The stdout of a command that must have succeeded (else both streams).
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

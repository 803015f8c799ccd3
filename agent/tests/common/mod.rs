//! Helpers for tests that run the real `coolmesh` binary.
#![allow(dead_code)]

pub mod raw_codec;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A running agent; killed on drop.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: mpsc::Receiver<String>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        ];
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .envs(env.iter().copied())
        .arg("agent")
        .args(cluster_args)
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("agent never said where it listens");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(a) = v["fields"]["address"].as_str() {
                let addr = a.parse().expect("address");
                return Agent {
                    child,
                    addr,
                    logs: rx,
                };
            }
        }
    }
}

/// Minimal HTTP/1.1 request; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n").expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
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

#[allow(non_camel_case_types)]
type libc_pid = i32;
extern "C" {
    fn kill(pid: libc_pid, sig: i32) -> i32;
}

/// One dry-run cluster agent of a binary test: its directory `dir` gets a
/// token file, a sensor file (inlet 30 C, critical 80 C) and
/// `coolmesh.toml` (sensors every 1 s, power probed every 500 ms at
/// `power_port`, grace 2 s, cluster `cluster` on `127.0.0.1:p2p`,
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
{extra}
"#,
        name = c.name,
        d = d.display(),
        power = c.power_port,
        cluster = c.cluster,
        p2p = c.p2p,
        extra = c.extra_cluster,
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

/// A TCP port on 127.0.0.1 that was free a moment ago (for an agent's
/// libp2p listener, which must be named in the peers' configs up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

//! `coolmesh demo`: a local cluster on loopback with simulated sensors and a
//! simulated power target, driven from the keyboard.
//!
//! # Layout
//!
//! The demo process starts N real agents (`coolmesh agent`, the same
//! executable) as child processes and owns everything that is simulated:
//!
//! ```text
//!  keyboard (stdin lines) ──► demo ──► readings.json per node (rewritten every second)
//!                              │  └──► power node: a TCP listener (cut = close it)
//!                              ▼
//!          demo-1 .. demo-N: `coolmesh agent --config DIR/demo-i/coolmesh.toml`
//!          (file source, tcp:// power target, libp2p on loopback, dry-run)
//!                              │
//!  status table ◄── GET /v1/state of every agent, every second
//! ```
//!
//! Files, in a new temporary directory (removed on exit) or `--dir` (kept):
//!
//! ```text
//! DIR/.coolmesh-demo           marks DIR as the demo's, so --dir may reuse it
//! DIR/token                    bearer token for the POST endpoints (all nodes)
//! DIR/demo-i/coolmesh.toml     the agent's config (`coolmesh check-config` accepts it)
//! DIR/demo-i/readings.json     simulated sensor, rewritten atomically every second
//! DIR/demo-i/state/            the agent's state directory
//! DIR/demo-i/dry-run-shutdowns one line per shutdown the agent would have run
//! DIR/demo-i/agent.log         the agent's JSON log (stdout and stderr)
//! DIR/demo-i/agent.pid         its process id
//! ```
//!
//! Ports, from `--base-port B` with N nodes, all on 127.0.0.1: HTTP of
//! demo-i on `B+i-1`, its libp2p listener on `B+N+i-1`, the power node on
//! `B+2N`. With the defaults, demo-1 serves on 9876 like a lone agent.
//!
//! Decisions:
//!
//! - **Real processes, not tasks.** The agents are the same binary with the
//!   same config code path an operator runs; one crashing agent does not take
//!   the demo or the others down, and its log says why.
//! - **Never powers anything off**, three times over: `dry_run = true` in
//!   the config, `--dry-run` on the command line, and the shutdown command is
//!   `true` should both ever be ignored.
//! - **Power node**: a TCP listener owned by the demo. "Cut power" closes it
//!   (probes get "connection refused" at once, like a dark air conditioner's
//!   management port), "restore" binds the same port again.
//! - **Sensors**: the `file` source. One sensor per node (max 80 C,
//!   critical 90 C) idles at an ambient of 36-44 C with a slow ±0.3 C
//!   wobble (not random noise: see [`WOBBLE_PERIOD_S`]). Failed
//!   cooling heats every node by [`HEAT_RATE_C_PER_MIN`] (a real room is
//!   slower; this shows the prediction within a minute); a heated node heats
//!   alone. Restored cooling relaxes back to ambient (time constant 20 s).
//! - **Timers**: sensors and probes every second, trend over 15 s (the
//!   agent default, 2 min, would keep a node "heating fast" for a minute
//!   after cooling is back at demo speed), power
//!   and overheat grace `--grace`, cooling grace twice that (so the
//!   time-to-critical prediction visibly pulls the deadline in), overheat
//!   sustain 10 s, operator cancel hold 1 min.
//! - **Children stop with the demo**, however it ends: each runs in its own
//!   process group (a Ctrl-C in the terminal reaches only the demo, which
//!   stops them in order: SIGTERM, SIGKILL after 3 s), has SIGTERM as its
//!   parent-death signal on Linux (covers a SIGKILLed demo), and a guard's
//!   `Drop` stops them on every other way out (an error, a panic).
//! - **Keyboard**: whole lines from stdin, no raw mode, so a script or test
//!   can drive it through a pipe. When piped stdin ends the demo keeps
//!   running until SIGINT/SIGTERM or `--for`; Ctrl-D on a terminal quits.
//! - **Output**: one aligned table of every node; events (state changes,
//!   exits) as single lines. The table is printed every 2 s while something
//!   happens (a simulated fault, a node not `normal`, temperatures not back
//!   at ambient, a change) and on `s`; a calm demo stays quiet. Colour only
//!   when stdout is a terminal and `NO_COLOR` is unset.

use crate::cli::DemoArgs;
use anyhow::Context;
use coolmesh_exporter::Snapshot;
use std::io::{BufRead, IsTerminal, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Heating rate of a node without cooling, C/min. About ten times a real
/// room, so that a demo shows the prediction within a minute.
pub const HEAT_RATE_C_PER_MIN: f64 = 30.0;
/// Critical threshold of the simulated sensor.
pub const CRITICAL_C: f64 = 90.0;
/// Max (high) threshold of the simulated sensor.
pub const MAX_C: f64 = 80.0;
/// Simulated temperatures stop rising here (well inside the plausible range).
const CAP_C: f64 = 110.0;
/// Time constant of cooling back to ambient, seconds.
const COOL_TAU_S: f64 = 20.0;
/// Amplitude of the slow wobble of a reported reading, C.
const WOBBLE_C: f64 = 0.3;
/// Period of the wobble, seconds. Its steepest slope, 2π·0.3/90 C/s =
/// 1.3 C/min, stays below the 3 C/min "heating fast" threshold however few
/// samples the agent's trend has; random noise would not (two noisy samples
/// a second apart can look like 10 C/min, and a cooling quorum).
const WOBBLE_PERIOD_S: f64 = 90.0;
/// Overheat sustain of the demo agents.
const OVERHEAT_SUSTAIN: Duration = Duration::from_secs(10);
/// How long agents get to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long agents get to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// File that marks a directory as the demo's.
const DIR_MARKER: &str = ".coolmesh-demo";

/// A problem with the demo's setup (ports, directory, flags): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

fn setup(msg: impl Into<String>) -> anyhow::Error {
    SetupError(msg.into()).into()
}

/// Entry point of `coolmesh demo`.
pub fn main(args: DemoArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err_line(&format!("coolmesh demo: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(run(args));
    rt.shutdown_timeout(Duration::from_millis(300));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            err_line(&format!("coolmesh demo: {e:#}"));
            if e.downcast_ref::<SetupError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Print a line on stdout; a closed stdout must not panic the demo (its
/// children would still be stopped, but the message would be lost anyway).
fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    if !s.ends_with('\n') {
        let _ = o.write_all(b"\n");
    }
    let _ = o.flush();
}

fn err_line(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

// ---------------------------------------------------------------------------
// Ports, nodes and files
// ---------------------------------------------------------------------------

/// The ports of a demo, all on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// HTTP port of each node.
    pub http: Vec<u16>,
    /// libp2p port of each node.
    pub p2p: Vec<u16>,
    /// The simulated power target.
    pub power: u16,
}

impl Ports {
    /// `nodes` HTTP ports from `base`, then `nodes` libp2p ports, then the
    /// power node.
    pub fn new(base: u16, nodes: u16) -> Result<Ports, String> {
        let last = u32::from(base) + 2 * u32::from(nodes);
        let port = |off: u32| u16::try_from(u32::from(base) + off).ok();
        let Some(power) = port(2 * u32::from(nodes)) else {
            let n = 2 * u32::from(nodes) + 1;
            return Err(format!(
                "--base-port {base} with --nodes {nodes} needs {n} ports, {base} to {last}, past 65535; use a lower --base-port, e.g. --base-port 9876"
            ));
        };
        let n = u32::from(nodes);
        Ok(Ports {
            http: (0..n).filter_map(port).collect(),
            p2p: (n..2 * n).filter_map(port).collect(),
            power,
        })
    }

    /// Every port and what it is for.
    pub fn all(&self) -> Vec<(u16, String)> {
        let mut v = Vec::new();
        for (i, p) in self.http.iter().enumerate() {
            v.push((*p, format!("HTTP of demo-{}", i + 1)));
        }
        for (i, p) in self.p2p.iter().enumerate() {
            v.push((*p, format!("libp2p of demo-{}", i + 1)));
        }
        v.push((self.power, "the simulated power target".to_string()));
        v
    }
}

/// Message for a port that cannot be bound.
fn port_problem(port: u16, what: &str, e: &std::io::Error, base: u16, nodes: u16) -> String {
    let span = 2 * u32::from(nodes);
    let suggestion = if u32::from(base) + 1000 + span <= 65535 {
        base + 1000
    } else {
        20000
    };
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "port {port} on 127.0.0.1 ({what}) is already in use; the demo needs ports {base} to {} free: choose another range with --base-port, e.g. --base-port {suggestion}",
            u32::from(base) + span
        )
    } else {
        format!(
            "cannot listen on 127.0.0.1:{port} ({what}): {e}; choose another range with --base-port, e.g. --base-port {suggestion}"
        )
    }
}

/// Fail with a clear message if any agent port is taken. The power node's
/// port is bound for real later (and kept).
fn check_ports(ports: &Ports, base: u16, nodes: u16) -> anyhow::Result<()> {
    for (port, what) in ports.all() {
        if port == ports.power {
            continue;
        }
        if let Err(e) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return Err(setup(port_problem(port, &what, &e, base, nodes)));
        }
    }
    Ok(())
}

/// One simulated server.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// 1-based.
    pub index: usize,
    /// `demo-<index>`.
    pub name: String,
    /// HTTP port.
    pub http: u16,
    /// libp2p port.
    pub p2p: u16,
    /// `DIR/demo-<index>`.
    pub dir: PathBuf,
}

impl NodeSpec {
    /// Base URL of its HTTP server.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
    /// Its libp2p listen address.
    pub fn multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p)
    }
    /// Its config file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("coolmesh.toml")
    }
    /// Its simulated readings.
    pub fn readings(&self) -> PathBuf {
        self.dir.join("readings.json")
    }
    /// Its state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// Its dry-run marker (one line per would-be shutdown).
    pub fn marker(&self) -> PathBuf {
        self.dir.join("dry-run-shutdowns")
    }
    /// Its log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    /// Its pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }
}

/// The nodes of a demo in `dir`.
pub fn node_specs(dir: &Path, ports: &Ports) -> Vec<NodeSpec> {
    ports
        .http
        .iter()
        .zip(&ports.p2p)
        .enumerate()
        .map(|(i, (&http, &p2p))| {
            let name = format!("demo-{}", i + 1);
            NodeSpec {
                index: i + 1,
                dir: dir.join(&name),
                name,
                http,
                p2p,
            }
        })
        .collect()
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn toml_path(p: &Path) -> anyhow::Result<String> {
    let s = p.to_str().ok_or_else(|| {
        setup(format!(
            "{} is not valid UTF-8 and cannot go into a config file; use --dir with a plain path",
            p.display()
        ))
    })?;
    Ok(toml_str(s))
}

fn toml_duration(d: Duration) -> String {
    toml_str(&humantime::format_duration(d).to_string())
}

/// The config file of `node`. Always dry-run, and the shutdown command is
/// `true` in case dry-run were ever ignored.
pub fn config_text(
    node: &NodeSpec,
    all: &[NodeSpec],
    power_port: u16,
    grace: Duration,
    token_file: &Path,
    psk_file: &Path,
) -> anyhow::Result<String> {
    let peers = all
        .iter()
        .filter(|n| n.index != node.index)
        .map(|n| toml_str(&n.multiaddr()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        r#"# Written by `coolmesh demo`: agent {name} of a local demo cluster.
# It never powers anything off: dry_run, --dry-run, and the command is `true`.

[node]
name = {name_s}
state_dir = {state}

[http]
listen_address = "127.0.0.1:{http}"
token_file = {token}

[sensors]
sources = ["file"]
file = {readings}
interval = "1s"
timeout = "500ms"
trend_window = "15s"
# The simulated sensors do not follow this machine's CPU load.
cpu_load = "none"

[power]
targets = ["tcp://127.0.0.1:{power_port}"]
interval = "1s"
timeout = "500ms"

[shutdown]
grace = {grace_s}
command = ["true"]
dry_run = true
dry_run_marker = {marker}
cancel_hold = "1m"

[overheat]
sustain = {sustain}
grace = {grace_s}

[cooling]
grace = {cooling}

[cluster]
name = "demo"
listen = [{listen}]
peers = [{peers}]
mdns = false
# A fresh key for each demo: the cluster refuses to start without one.
psk_file = {psk}
"#,
        name = node.name,
        name_s = toml_str(&node.name),
        state = toml_path(&node.state_dir())?,
        http = node.http,
        token = toml_path(token_file)?,
        readings = toml_path(&node.readings())?,
        grace_s = toml_duration(grace),
        marker = toml_path(&node.marker())?,
        sustain = toml_duration(OVERHEAT_SUSTAIN),
        cooling = toml_duration(grace.saturating_mul(2)),
        listen = toml_str(&node.multiaddr()),
        psk = toml_path(psk_file)?,
    ))
}

/// The demo's directory; a temporary one is removed on drop.
struct WorkDir {
    path: PathBuf,
    temporary: bool,
}

impl WorkDir {
    fn prepare(dir: Option<&Path>) -> anyhow::Result<WorkDir> {
        let wd = match dir {
            Some(d) => {
                let d = std::path::absolute(d)
                    .map_err(|e| setup(format!("--dir {}: {e}", d.display())))?;
                std::fs::create_dir_all(&d).map_err(|e| {
                    setup(format!(
                        "--dir {}: cannot create it ({e}); pick a directory you can write to",
                        d.display()
                    ))
                })?;
                let used = std::fs::read_dir(&d)
                    .map_err(|e| setup(format!("--dir {}: cannot read it ({e})", d.display())))?
                    .next()
                    .is_some();
                if used && !d.join(DIR_MARKER).exists() {
                    return Err(setup(format!(
                        "--dir {} is not empty and was not made by `coolmesh demo`; pick a new or empty directory",
                        d.display()
                    )));
                }
                WorkDir {
                    path: d,
                    temporary: false,
                }
            }
            None => {
                let mut last = None;
                let mut made = None;
                for _ in 0..16 {
                    let p = std::env::temp_dir().join(format!("coolmesh-demo-{}", random_hex(4)));
                    match std::fs::create_dir(&p) {
                        Ok(()) => {
                            made = Some(p);
                            break;
                        }
                        Err(e) => last = Some((p, e)),
                    }
                }
                match (made, last) {
                    (Some(p), _) => WorkDir {
                        path: p,
                        temporary: true,
                    },
                    (None, Some((p, e))) => {
                        return Err(setup(format!(
                            "cannot create a temporary directory such as {} ({e}); set TMPDIR or pass --dir DIR",
                            p.display()
                        )))
                    }
                    (None, None) => return Err(setup("cannot create a temporary directory; pass --dir DIR")),
                }
            }
        };
        std::fs::write(
            wd.path.join(DIR_MARKER),
            "made by `coolmesh demo`; the demo may rewrite this directory\n",
        )
        .with_context(|| {
            format!(
                "cannot write in {}; pass --dir with a directory you can write to",
                wd.path.display()
            )
        })?;
        Ok(wd)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Write the token file, readable by its owner only.
fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot write the token file {}", path.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write the token file {}", path.display()))?;
    Ok(())
}

/// Make a node's directory ready for a fresh agent: config written, old
/// state and dry-run marker gone.
fn prepare_node(node: &NodeSpec, config: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(&node.dir).with_context(|| {
        format!(
            "cannot create {}; pass --dir with a directory you can write to",
            node.dir.display()
        )
    })?;
    wipe_node(node)?;
    std::fs::write(node.config(), config).with_context(|| {
        format!(
            "cannot write {}; pass --dir with a directory you can write to",
            node.config().display()
        )
    })?;
    Ok(())
}

/// Forget a node's state machine and would-be shutdowns.
fn wipe_node(node: &NodeSpec) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(node.state_dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot remove the old state {} ({e}); remove it by hand",
                node.state_dir().display()
            ))
        }
    }
    match std::fs::remove_file(node.marker()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot remove {} ({e}); remove it by hand",
            node.marker().display()
        )),
    }
}

/// Replace `path` with `bytes` so readers never see half a file. Not
/// fsynced: the readings are simulated and rewritten every second.
fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

// ---------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------

/// Simulated temperatures of every node.
#[derive(Debug, Clone)]
pub struct Sim {
    ambient: Vec<f64>,
    temp: Vec<f64>,
    heated: Vec<bool>,
    cooling_failed: bool,
    /// Simulated seconds since the start.
    t: f64,
}

impl Sim {
    /// `n` nodes at their ambient temperature (35-45 C).
    pub fn new(n: usize) -> Sim {
        let ambient: Vec<f64> = (0..n).map(|i| 36.0 + ((i * 7) % 9) as f64).collect();
        Sim {
            temp: ambient.clone(),
            heated: vec![false; n],
            ambient,
            cooling_failed: false,
            t: 0.0,
        }
    }

    /// Is node `i` (0-based) heating?
    pub fn heating(&self, i: usize) -> bool {
        self.cooling_failed || self.heated.get(i).copied().unwrap_or(false)
    }

    /// Cooling has failed for the whole room.
    pub fn cooling_failed(&self) -> bool {
        self.cooling_failed
    }

    /// Nodes heated on their own (0-based).
    pub fn heated(&self) -> Vec<usize> {
        (0..self.heated.len()).filter(|&i| self.heated[i]).collect()
    }

    /// Fail the room's cooling: every node heats.
    pub fn fail_cooling(&mut self) {
        self.cooling_failed = true;
    }

    /// Restore cooling for every node (also ends single-node heating).
    pub fn restore_cooling(&mut self) {
        self.cooling_failed = false;
        self.heated.iter_mut().for_each(|h| *h = false);
    }

    /// Heat node `i` (0-based) alone.
    pub fn heat(&mut self, i: usize) {
        if let Some(h) = self.heated.get_mut(i) {
            *h = true;
        }
    }

    /// Back to ambient, nothing failed.
    pub fn reset(&mut self) {
        self.restore_cooling();
        self.temp.clone_from(&self.ambient);
    }

    /// Nothing heats and every node is within 2 C of its ambient.
    pub fn settled(&self) -> bool {
        !self.cooling_failed
            && !self.heated.iter().any(|h| *h)
            && self
                .temp
                .iter()
                .zip(&self.ambient)
                .all(|(t, a)| (t - a).abs() < 2.0)
    }

    /// Advance by `dt` seconds.
    pub fn step(&mut self, dt: f64) {
        self.t += dt;
        for i in 0..self.temp.len() {
            if self.heating(i) {
                self.temp[i] = (self.temp[i] + HEAT_RATE_C_PER_MIN / 60.0 * dt).min(CAP_C);
            } else {
                let a = self.ambient[i];
                self.temp[i] += (a - self.temp[i]) * (1.0 - (-dt / COOL_TAU_S).exp());
            }
        }
    }

    /// Seconds until node `i` (0-based) reaches critical at the heating rate.
    pub fn seconds_to_critical(&self, i: usize) -> f64 {
        ((CRITICAL_C - self.temp(i)) / HEAT_RATE_C_PER_MIN * 60.0).max(0.0)
    }

    /// True temperature of node `i` (0-based).
    pub fn temp(&self, i: usize) -> f64 {
        self.temp.get(i).copied().unwrap_or(f64::NAN)
    }

    /// What node `i`'s sensor reports: the temperature plus the wobble.
    pub fn reported(&self, i: usize) -> f64 {
        let phase = std::f64::consts::TAU * self.t / WOBBLE_PERIOD_S + 2.1 * i as f64;
        self.temp(i) + WOBBLE_C * phase.sin()
    }

    /// The readings document of node `i`, in the `file` source's schema.
    pub fn readings_json(&self, i: usize) -> String {
        // Hundredths: rounding to tenths would add steps of 6 C/min between
        // two samples a second apart.
        let c = (self.reported(i) * 100.0).round() / 100.0;
        serde_json::json!([{
            "chip": "demo",
            "sensor": "temp1",
            "label": "CPU",
            "celsius": c,
            "max_celsius": MAX_C,
            "critical_celsius": CRITICAL_C,
        }])
        .to_string()
    }
}

fn lock(sim: &Mutex<Sim>) -> std::sync::MutexGuard<'_, Sim> {
    sim.lock().unwrap_or_else(|e| e.into_inner())
}

/// Write every node's readings once.
fn write_readings(sim: &Mutex<Sim>, nodes: &[NodeSpec]) -> Vec<(PathBuf, std::io::Error)> {
    let docs: Vec<String> = {
        let s = lock(sim);
        (0..nodes.len()).map(|i| s.readings_json(i)).collect()
    };
    let mut errors = Vec::new();
    for (n, d) in nodes.iter().zip(docs) {
        if let Err(e) = write_replace(&n.readings(), d.as_bytes()) {
            errors.push((n.readings(), e));
        }
    }
    errors
}

/// Step the simulation and rewrite the readings every second.
fn spawn_sim(sim: Arc<Mutex<Sim>>, nodes: Vec<NodeSpec>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        let mut reported = false;
        loop {
            tick.tick().await;
            let dt = last.elapsed().as_secs_f64();
            last = Instant::now();
            lock(&sim).step(dt);
            let errors = write_readings(&sim, &nodes);
            if let Some((p, e)) = errors.first() {
                if !reported {
                    out(&format!(
                        "cannot write the simulated readings {} ({e}); that agent will report its file source down. Is the disk full?",
                        p.display()
                    ));
                    reported = true;
                }
            } else {
                reported = false;
            }
        }
    })
}

/// The simulated power target: a TCP listener that accepts and drops
/// connections while power is up.
struct PowerNode {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
    down_since: Option<Instant>,
}

impl PowerNode {
    fn new(port: u16) -> Self {
        PowerNode {
            port,
            task: None,
            down_since: Some(Instant::now()),
        }
    }

    fn target(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) -> std::io::Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).await?;
        self.task = Some(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => drop(s),
                    // Out of descriptors and the like: do not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
        self.down_since = None;
        Ok(())
    }

    async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            // The listener is closed once the task is gone.
            let _ = t.await;
            self.down_since = Some(Instant::now());
        }
    }
}

// ---------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------

/// The agent processes. Dropping this stops them (SIGTERM, then SIGKILL).
struct Agents {
    procs: Vec<Option<Child>>,
    exited: Vec<Option<ExitStatus>>,
}

impl Agents {
    fn none() -> Agents {
        Agents {
            procs: Vec::new(),
            exited: Vec::new(),
        }
    }

    /// Start one agent per node. On error the ones already started are
    /// stopped when `self` is dropped.
    fn spawn(&mut self, exe: &Path, nodes: &[NodeSpec]) -> anyhow::Result<()> {
        self.stop();
        self.procs.clear();
        self.exited = vec![None; nodes.len()];
        for n in nodes {
            let child = spawn_agent(exe, n)?;
            let _ = std::fs::write(n.pid_file(), format!("{}\n", child.id()));
            self.procs.push(Some(child));
        }
        Ok(())
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.procs.get(i).and_then(|c| c.as_ref()).map(Child::id)
    }

    /// Agents that exited since the last call, by index.
    fn reap(&mut self) -> Vec<(usize, ExitStatus)> {
        let mut v = Vec::new();
        for (i, c) in self.procs.iter_mut().enumerate() {
            let Some(child) = c else { continue };
            if let Ok(Some(st)) = child.try_wait() {
                v.push((i, st));
                if let Some(slot) = self.exited.get_mut(i) {
                    *slot = Some(st);
                }
                *c = None;
            }
        }
        v
    }

    fn exit_status(&self, i: usize) -> Option<ExitStatus> {
        self.exited.get(i).copied().flatten()
    }

    /// SIGTERM to every agent, SIGKILL to those still running after
    /// [`STOP_TIMEOUT`]; waits for all of them.
    fn stop(&mut self) {
        let mut running: Vec<Child> = self.procs.iter_mut().filter_map(Option::take).collect();
        for c in &mut running {
            if matches!(c.try_wait(), Ok(None)) {
                terminate(c);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            running.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            if running.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in &mut running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop();
    }
}

fn terminate(c: &Child) {
    #[cfg(unix)]
    {
        let pid = rustix::process::Pid::from_child(c);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    #[cfg(not(unix))]
    {
        let _ = c;
    }
}

fn spawn_agent(exe: &Path, n: &NodeSpec) -> anyhow::Result<Child> {
    let log = std::fs::File::create(n.log())
        .with_context(|| format!("cannot create the log {}", n.log().display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("cannot open the log {}", n.log().display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("agent")
        .arg("--config")
        .arg(n.config())
        .args(["--log.format", "json", "--dry-run"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // The agents are not this service: keep them off a supervisor's
        // notify socket and watchdog.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("COOLMESH_CONFIG");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Own process group: a terminal's Ctrl-C reaches only the demo,
        // which then stops the agents in order.
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = rustix::process::getpid();
            // SAFETY: runs in the forked child before exec; it only makes
            // two system calls (prctl, getppid), which are async-signal-safe,
            // and allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::set_parent_process_death_signal(Some(
                        rustix::process::Signal::TERM,
                    ))?;
                    // The demo died between fork and prctl: do not outlive it.
                    if rustix::process::getppid() != Some(parent) {
                        return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
                    }
                    Ok(())
                });
            }
        }
    }
    cmd.spawn().with_context(|| {
        format!(
            "cannot start {} for {} ({}); is the binary still there?",
            exe.display(),
            n.name,
            n.config().display()
        )
    })
}

/// The last `lines` lines of an agent's JSON log, made readable.
fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| readable_log_line(l))
        .collect()
}

fn readable_log_line(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_string();
    };
    let level = v["level"].as_str().unwrap_or("");
    let mut s = format!("{level} {}", v["fields"]["message"].as_str().unwrap_or(""));
    if let Some(f) = v["fields"].as_object() {
        for (k, val) in f {
            if k != "message" {
                let val = val
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| val.to_string());
                s.push_str(&format!(" {k}={val}"));
            }
        }
    }
    s.trim().to_string()
}

/// What to tell the user about an agent that exited.
fn exit_report(n: &NodeSpec, st: ExitStatus) -> String {
    let tail = log_tail(&n.log(), 5);
    let mut s = format!(
        "{} (pid file {}) exited: {st}.",
        n.name,
        n.pid_file().display()
    );
    if !tail.is_empty() {
        s.push_str(" Last lines of its log:");
        for l in &tail {
            s.push_str("\n    ");
            s.push_str(l);
        }
    }
    let joined = tail.join("\n");
    if joined.contains("in use") || joined.contains("cannot listen") {
        s.push_str("\n  A port is taken: choose another range with --base-port.");
    }
    s.push_str(&format!("\n  Full log: {}", n.log().display()));
    s
}

// ---------------------------------------------------------------------------
// Keyboard
// ---------------------------------------------------------------------------

/// A command typed by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `p`: cut mains power.
    CutPower,
    /// `P`: restore mains power.
    RestorePower,
    /// `c`: fail the room's cooling.
    FailCooling,
    /// `C`: restore cooling.
    RestoreCooling,
    /// `h N`: heat node N (1-based) alone.
    Heat(usize),
    /// `s`: print the status now.
    Status,
    /// `r`: restart every agent with fresh state, power and cooling back.
    Reset,
    /// `q`: quit.
    Quit,
    /// `?`: help.
    Help,
    /// An empty line.
    Nothing,
}

/// Parse one line typed by the user; the error says what to type instead.
pub fn parse_key(line: &str, nodes: usize) -> Result<Key, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (cmd, arg) = match words.as_slice() {
        [] => return Ok(Key::Nothing),
        [c] => (*c, None),
        [c, a] => (*c, Some(*a)),
        _ => {
            return Err(format!(
                "{:?}: one key per line, e.g. `p` or `h 2`; type ? for the list",
                line.trim()
            ))
        }
    };
    // `h2` is `h 2`.
    let (cmd, arg) = match (cmd.strip_prefix('h'), arg) {
        (Some(n), None) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => ("h", Some(n)),
        _ => (cmd, arg),
    };
    let key = match (cmd, arg) {
        ("p", None) => Key::CutPower,
        ("P", None) => Key::RestorePower,
        ("c", None) => Key::FailCooling,
        ("C", None) => Key::RestoreCooling,
        ("s", None) => Key::Status,
        ("r", None) => Key::Reset,
        ("q" | "quit" | "exit", None) => Key::Quit,
        ("?" | "help", None) => Key::Help,
        ("h", None) => {
            return Err(format!(
                "which node? type `h N` with N from 1 to {nodes}, e.g. `h 2`"
            ))
        }
        ("h", Some(a)) => match a.parse::<usize>() {
            Ok(n) if (1..=nodes).contains(&n) => Key::Heat(n),
            _ => {
                return Err(format!(
                    "no node {a:?}: nodes are 1 to {nodes}; e.g. `h {}`",
                    nodes.min(2)
                ))
            }
        },
        _ => {
            return Err(format!(
                "unknown key {:?}; type ? for the list",
                line.trim()
            ))
        }
    };
    Ok(key)
}

/// The key list.
pub fn help_text(nodes: usize) -> String {
    let rows = [
        ["p", "cut mains power (the power target stops answering)"],
        ["P", "restore mains power"],
        ["c", "fail the room's cooling: every node heats"],
        ["C", "restore cooling (also ends `h`)"],
        ["h N", "heat node N alone (1 to N)"],
        ["s", "print the status now"],
        ["r", "reset: restart every agent with fresh state"],
        ["q", "quit (also Ctrl-C); stops every agent"],
        ["?", "this list"],
    ];
    let mut s = format!("keys (type one, then Enter; nodes are 1 to {nodes}):\n");
    for [k, what] in rows {
        s.push_str(&format!("  {k:<4} {what}\n"));
    }
    s
}

/// Lines from stdin, read on a plain thread (no raw mode, nothing that
/// could hold up the exit). The channel closes at end of input.
fn spawn_stdin() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    let _ = std::thread::Builder::new()
        .name("demo-keys".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match stdin.lock().read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.blocking_send(line).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    rx
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// ANSI colour, only on a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Emit colour codes.
    pub colour: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn detect() -> Style {
        Style {
            colour: std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// `s` in colour `code` (an SGR parameter such as `31;1`).
    pub fn paint(self, code: &str, s: &str) -> String {
        if self.colour && !code.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

fn state_colour(state: &str) -> &'static str {
    match state {
        "normal" => "32",
        "pre_fail" => "33;1",
        "shutdown" => "31;1",
        "local_fault" => "35",
        "maintenance" => "36",
        _ => "31",
    }
}

/// Columns of the status table.
pub const COLUMNS: [&str; 9] = [
    "NODE",
    "STATE",
    "REASON",
    "SHUTDOWN IN",
    "HOTTEST C",
    "HEADROOM C",
    "TREND C/MIN",
    "POWER",
    "PEERS ALIVE",
];

fn fmt_left(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// One table row for an agent's snapshot.
pub fn row(name: &str, snap: &Snapshot, now_ms: u64, other_nodes: usize) -> [String; 9] {
    let f = &snap.fsm;
    let num = |v: Option<f64>, plus: bool| match v {
        Some(v) if plus => format!("{v:+.1}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_string(),
    };
    let left = if f.state == "shutdown" {
        if f.executed {
            "done (dry-run)".to_string()
        } else {
            "now".to_string()
        }
    } else {
        f.deadline_ms
            .map(|d| fmt_left(d.saturating_sub(now_ms)))
            .unwrap_or_else(|| "-".to_string())
    };
    let peers = if snap.cluster.name.is_empty() && snap.cluster.peers.is_empty() {
        "-".to_string()
    } else {
        let alive = snap
            .cluster
            .peers
            .iter()
            .filter(|p| p.liveness == "alive" && !p.stale)
            .count();
        format!("{alive}/{other_nodes}")
    };
    [
        name.to_string(),
        f.state.clone(),
        if f.reason == "none" {
            "-".to_string()
        } else {
            f.reason.clone()
        },
        left,
        num(snap.thermal.hottest_celsius, false),
        num(snap.thermal.headroom_celsius, false),
        num(snap.thermal.trend_celsius_per_minute, true),
        match snap.power.up {
            Some(true) => "up".to_string(),
            Some(false) => "DOWN".to_string(),
            None => "?".to_string(),
        },
        peers,
    ]
}

/// A row for an agent that cannot be asked.
pub fn row_unreachable(name: &str, what: &str, why: &str) -> [String; 9] {
    let mut why: String = why.chars().take(60).collect();
    if why.is_empty() {
        why = "-".into();
    }
    [
        name.to_string(),
        what.to_string(),
        why,
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
    ]
}

fn cell_colour(col: usize, text: &str) -> &'static str {
    match col {
        1 => state_colour(text),
        3 if text != "-" => "33;1",
        5 => match text.parse::<f64>() {
            Ok(h) if h < 10.0 => "31;1",
            Ok(h) if h < 20.0 => "33",
            _ => "",
        },
        6 => match text.parse::<f64>() {
            Ok(t) if t >= 3.0 => "33",
            _ => "",
        },
        7 => match text {
            "DOWN" => "31;1",
            "up" => "32",
            _ => "",
        },
        _ => "",
    }
}

/// The status table, aligned on the visible text (colour codes do not
/// count), numbers right-aligned.
pub fn render_table(rows: &[[String; 9]], style: Style) -> String {
    const RIGHT: [usize; 4] = [3, 4, 5, 6];
    let mut w: Vec<usize> = COLUMNS.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<(&str, &str)>| {
        let mut s = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, (text, colour)) in cells.into_iter().enumerate() {
            let pad = " ".repeat(w[i].saturating_sub(text.chars().count()));
            if i > 0 {
                s.push_str("  ");
            }
            let painted = style.paint(colour, text);
            if RIGHT.contains(&i) {
                s.push_str(&pad);
                s.push_str(&painted);
            } else {
                s.push_str(&painted);
                if i < last {
                    s.push_str(&pad);
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(COLUMNS.iter().map(|h| (*h, "1")).collect());
    for r in rows {
        out.push_str(&line(
            r.iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), cell_colour(i, c)))
                .collect(),
        ));
    }
    out
}

fn clock(start: Instant) -> String {
    let s = start.elapsed().as_secs();
    format!("t+{:02}:{:02}", s / 60, s % 60)
}

// ---------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------

/// What the user last saw of each node.
#[derive(Default)]
struct Seen {
    state: Option<(String, String)>,
    unreachable: bool,
}

struct Demo {
    exe: PathBuf,
    nodes: Vec<NodeSpec>,
    grace: Duration,
    style: Style,
    start: Instant,
    sim: Arc<Mutex<Sim>>,
    power: PowerNode,
    seen: Vec<Seen>,
    polls: u64,
    cluster_seen: bool,
    // Declared last: dropped first, before the directory is removed.
    agents: Agents,
}

impl Demo {
    fn event(&self, s: &str) {
        out(&format!(
            "{}  {s}",
            self.style.paint("2", &clock(self.start))
        ));
    }

    /// Wait until every agent answers ready. Fails with the log of an
    /// agent that exits, or the ones that never get ready.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut ready = vec![false; self.nodes.len()];
        loop {
            if let Some((i, st)) = self.agents.reap().first().copied() {
                if let Some(n) = self.nodes.get(i) {
                    anyhow::bail!("{}", exit_report(n, st));
                }
            }
            for (i, n) in self.nodes.iter().enumerate() {
                if ready[i] {
                    continue;
                }
                if let Ok(Ok(s)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    crate::report::fetch_state(&n.url()),
                )
                .await
                {
                    ready[i] = s.ready;
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let late: Vec<String> = self
                    .nodes
                    .iter()
                    .zip(&ready)
                    .filter(|(_, r)| !**r)
                    .map(|(n, _)| format!("{} (log {})", n.name, n.log().display()))
                    .collect();
                anyhow::bail!(
                    "not ready after {}s: {}; their logs say why",
                    READY_TIMEOUT.as_secs(),
                    late.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn banner(&self, dir: &WorkDir, token: &str) {
        let st = self.style;
        let mut s = String::new();
        s.push_str(&format!(
            "\n{} {} agents on 127.0.0.1, simulated sensors, power target {}. {}\n\n",
            st.paint("1", "coolmesh demo:"),
            self.nodes.len(),
            self.power.target(),
            st.paint("1", "Dry-run: nothing is ever powered off.")
        ));
        let rows: Vec<[String; 5]> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                [
                    n.name.clone(),
                    self.agents
                        .pid(i)
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into()),
                    format!("{}/", n.url()),
                    format!("{}/metrics", n.url()),
                    format!("{}/v1/state", n.url()),
                ]
            })
            .collect();
        s.push_str(&crate::report::table(
            &["NODE", "PID", "STATUS PAGE", "METRICS", "STATE (JSON)"],
            &rows,
            &[1],
        ));
        let first = self.nodes.first().map(NodeSpec::url).unwrap_or_default();
        s.push_str(&format!(
            "\nfiles  {}{}\n",
            dir.path.display(),
            if dir.temporary {
                "  (configs, readings, logs; removed on exit, keep them with --dir DIR)"
            } else {
                "  (configs, readings, logs; kept)"
            }
        ));
        s.push_str(&format!(
            "token  {token}\n       e.g. curl -X POST -H 'Authorization: Bearer {token}' {first}/v1/shutdown/cancel\n"
        ));
        s.push_str(&format!(
            "timers power grace {g}; cooling grace {c}; overheat: {o} at {crit} C or more, then grace {g}; heating {rate} C/min\n\n",
            g = humantime::format_duration(self.grace),
            c = humantime::format_duration(self.grace.saturating_mul(2)),
            o = humantime::format_duration(OVERHEAT_SUSTAIN),
            crit = CRITICAL_C,
            rate = HEAT_RATE_C_PER_MIN,
        ));
        s.push_str(&help_text(self.nodes.len()));
        out(&s);
    }

    fn sim_line(&self) -> String {
        let st = self.style;
        let power = match self.power.down_since {
            Some(t) => st.paint(
                "31;1",
                &format!("power DOWN for {}s", t.elapsed().as_secs()),
            ),
            None => st.paint("32", "power up"),
        };
        let (cooling, heated) = {
            let s = lock(&self.sim);
            (s.cooling_failed(), s.heated())
        };
        let cooling = if cooling {
            st.paint("31;1", "cooling FAILED")
        } else {
            st.paint("32", "cooling ok")
        };
        let mut line = format!("simulation: {power}, {cooling}");
        if !heated.is_empty() {
            let names: Vec<String> = heated.iter().map(|i| format!("demo-{}", i + 1)).collect();
            line.push_str(&format!(", heating {}", st.paint("33;1", &names.join(" "))));
        }
        line
    }

    /// Ask every agent for its state; print events, and the table when
    /// `force`d or while something happens.
    async fn poll(&mut self, force: bool) {
        self.polls += 1;
        for (i, st) in self.agents.reap() {
            if let Some(n) = self.nodes.get(i) {
                let report = exit_report(n, st);
                self.event(&self.style.paint("31;1", &report));
            }
        }
        let fetches = self.nodes.iter().map(|n| {
            let url = n.url();
            async move {
                match tokio::time::timeout(
                    Duration::from_millis(1500),
                    crate::report::fetch_state(&url),
                )
                .await
                {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err("no answer within 1.5s".to_string()),
                }
            }
        });
        let results = futures::future::join_all(fetches).await;
        let now = crate::agent::unix_ms();
        let others = self.nodes.len().saturating_sub(1);
        let mut rows = Vec::new();
        let mut changed = false;
        // Something moves: a countdown, a node recovering or not answering.
        let mut moving = false;
        for (i, r) in results.iter().enumerate() {
            let Some(n) = self.nodes.get(i) else { continue };
            match r {
                Ok(snap) => {
                    if !snap.cluster.name.is_empty() || !snap.cluster.peers.is_empty() {
                        self.cluster_seen = true;
                    }
                    moving |= matches!(snap.fsm.state.as_str(), "pre_fail" | "local_fault");
                    let now_state = (snap.fsm.state.clone(), snap.fsm.reason.clone());
                    let seen = &mut self.seen[i];
                    seen.unreachable = false;
                    if let Some(prev) = seen.state.replace(now_state.clone()) {
                        if prev != now_state {
                            changed = true;
                            let st = self.style;
                            let mut msg = format!(
                                "{:<8} {} -> {} ({})",
                                n.name,
                                prev.0,
                                st.paint(state_colour(&now_state.0), &now_state.0),
                                now_state.1
                            );
                            if !snap.fsm.detail.is_empty() {
                                msg.push_str(": ");
                                msg.push_str(&snap.fsm.detail);
                            }
                            self.event(&msg);
                        }
                    }
                    rows.push(row(&n.name, snap, now, others));
                }
                Err(e) => {
                    let exited = self.agents.exit_status(i);
                    moving |= exited.is_none();
                    let what = if exited.is_some() {
                        "exited"
                    } else {
                        "unreachable"
                    };
                    let seen = &mut self.seen[i];
                    if !seen.unreachable && exited.is_none() {
                        changed = true;
                        seen.unreachable = true;
                        self.event(&format!(
                            "{:<8} does not answer at {} ({e}); its log: {}",
                            n.name,
                            n.url(),
                            n.log().display()
                        ));
                    }
                    let why = exited.map(|s| s.to_string()).unwrap_or_else(|| e.clone());
                    rows.push(row_unreachable(&n.name, what, &why));
                }
            }
        }
        let active = moving || self.power.down_since.is_some() || !lock(&self.sim).settled();
        if force || changed || (active && self.polls.is_multiple_of(2)) {
            out(&format!(
                "{}  {}\n{}",
                self.style.paint("2", &clock(self.start)),
                self.sim_line(),
                render_table(&rows, self.style)
            ));
        }
    }

    /// Carry out a key. `Ok(false)` means quit.
    async fn key(&mut self, key: Key) -> anyhow::Result<bool> {
        let g = humantime::format_duration(self.grace);
        match key {
            Key::Nothing => {}
            Key::Quit => return Ok(false),
            Key::Help => out(&help_text(self.nodes.len())),
            Key::Status => self.poll(true).await,
            Key::CutPower => {
                if self.power.task.is_none() {
                    self.event("power is already cut (P restores it)");
                } else {
                    self.power.down().await;
                    self.event(&format!(
                        "power cut: {} stops answering. Expect pre_fail (power) on every node within seconds (the first to notice may show local_fault until its peers agree), shutdown after the grace ({g}) unless you press P",
                        self.power.target()
                    ));
                }
            }
            Key::RestorePower => match self.power.up().await {
                Ok(()) => self.event(
                    "power restored: nodes in pre_fail recover after 2 good probes (a node in shutdown stays there: r resets)",
                ),
                Err(e) => self.event(&format!(
                    "cannot restore power: 127.0.0.1:{} cannot be bound again ({e}); another program took it. Quit and start the demo with another --base-port",
                    self.power.port
                )),
            },
            Key::FailCooling => {
                lock(&self.sim).fail_cooling();
                let mut msg = format!(
                    "cooling failed: every node heats at {HEAT_RATE_C_PER_MIN} C/min. Expect pre_fail (cooling) once a quorum heats steadily (a whole 15 s window of straight ramp), then the prediction pulling the deadline in. C restores cooling"
                );
                if !self.cluster_seen {
                    msg.push_str(&format!(
                        ". Note: these agents report no cluster, and a lone node never declares cooling lost; expect overheat at {CRITICAL_C} C instead"
                    ));
                }
                self.event(&msg);
            }
            Key::RestoreCooling => {
                lock(&self.sim).restore_cooling();
                self.event("cooling restored: nodes cool back to ambient; a node in pre_fail (cooling or prediction) recovers once fewer than a quorum heat steadily, a node in shutdown stays there (r resets)");
            }
            Key::Heat(n) => {
                let eta = {
                    let mut s = lock(&self.sim);
                    s.heat(n - 1);
                    s.seconds_to_critical(n - 1)
                };
                self.event(&format!(
                    "demo-{n} heats alone at {HEAT_RATE_C_PER_MIN} C/min: no cooling quorum, so the others stay normal. It reaches {CRITICAL_C} C in about {}s, enters pre_fail (overheat) {}s later and shuts down after the grace ({g}). C stops it",
                    eta.round(),
                    OVERHEAT_SUSTAIN.as_secs()
                ));
            }
            Key::Reset => {
                self.event("reset: stopping the agents, wiping their state, starting them again");
                self.agents.stop();
                for n in &self.nodes {
                    wipe_node(n)?;
                }
                lock(&self.sim).reset();
                let _ = write_readings(&self.sim, &self.nodes);
                if let Err(e) = self.power.up().await {
                    self.event(&format!(
                        "cannot restore power: 127.0.0.1:{} cannot be bound again ({e}); another program took it",
                        self.power.port
                    ));
                }
                let exe = self.exe.clone();
                self.agents.spawn(&exe, &self.nodes)?;
                self.wait_ready().await?;
                self.seen = self.nodes.iter().map(|_| Seen::default()).collect();
                self.event("reset done: every agent is ready");
                self.poll(true).await;
            }
        }
        Ok(true)
    }
}

/// SIGINT, SIGTERM and SIGHUP.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Run the demo until `q`, a signal, `--for` or an error.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.grace < Duration::from_secs(1) || args.grace > Duration::from_secs(3600) {
        return Err(setup(format!(
            "--grace {} is out of range; use 1s to 1h, e.g. --grace 30s",
            humantime::format_duration(args.grace)
        )));
    }
    let ports = Ports::new(args.base_port, args.nodes).map_err(setup)?;
    // Catch signals from here on, so that every way out runs the guards.
    let mut signals = Signals::new().context("cannot install signal handlers")?;
    check_ports(&ports, args.base_port, args.nodes)?;
    let exe = std::env::current_exe().context(
        "cannot find this executable to start the agents from; run coolmesh by its path",
    )?;
    let dir = WorkDir::prepare(args.dir.as_deref())?;

    let token = random_hex(24);
    let token_file = dir.path.join("token");
    write_token(&token_file, &token)?;
    let psk_file = dir.path.join("swarm.key");
    write_token(&psk_file, crate::cluster::generate_psk().trim_end())?;
    let nodes = node_specs(&dir.path, &ports);
    for n in &nodes {
        let text = config_text(n, &nodes, ports.power, args.grace, &token_file, &psk_file)?;
        prepare_node(n, &text)?;
    }
    let sim = Arc::new(Mutex::new(Sim::new(nodes.len())));
    if let Some((p, e)) = write_readings(&sim, &nodes).into_iter().next() {
        anyhow::bail!(
            "cannot write {} ({e}); pass --dir with a directory you can write to",
            p.display()
        );
    }

    let mut demo = Demo {
        exe,
        seen: nodes.iter().map(|_| Seen::default()).collect(),
        nodes,
        grace: args.grace,
        style: Style::detect(),
        start: Instant::now(),
        sim,
        power: PowerNode::new(ports.power),
        polls: 0,
        cluster_seen: false,
        agents: Agents::none(),
    };
    demo.power.up().await.map_err(|e| {
        setup(port_problem(
            ports.power,
            "the simulated power target",
            &e,
            args.base_port,
            args.nodes,
        ))
    })?;
    out(&format!(
        "starting {} agents in {} ...",
        demo.nodes.len(),
        dir.path.display()
    ));
    let exe = demo.exe.clone();
    demo.agents.spawn(&exe, &demo.nodes)?;
    tokio::select! {
        r = demo.wait_ready() => r?,
        s = signals.recv() => {
            out(&format!("{s} received: stopping the agents"));
            demo.agents.stop();
            return Ok(());
        }
    }
    demo.start = Instant::now();
    demo.banner(&dir, &token);
    let sim_task = spawn_sim(demo.sim.clone(), demo.nodes.clone());
    let mut keys = spawn_stdin();
    let mut keys_open = true;
    let stdin_tty = std::io::stdin().is_terminal();
    let stop_at = args.run_for.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;

    let result = loop {
        tokio::select! {
            s = signals.recv() => {
                out(&format!("{s} received: stopping the agents"));
                break Ok(());
            }
            _ = sleep_until(stop_at) => {
                out("--for elapsed: stopping the agents");
                break Ok(());
            }
            line = keys.recv(), if keys_open => {
                let Some(line) = line else {
                    keys_open = false;
                    if stdin_tty {
                        out("end of input: stopping the agents");
                        break Ok(());
                    }
                    out("stdin closed: keys are off; stop the demo with Ctrl-C or SIGTERM");
                    continue;
                };
                match parse_key(&line, demo.nodes.len()) {
                    Ok(k) => match demo.key(k).await {
                        Ok(true) => {}
                        Ok(false) => {
                            out("quit: stopping the agents");
                            break Ok(());
                        }
                        Err(e) => break Err(e),
                    },
                    Err(msg) => out(&msg),
                }
            }
            _ = tick.tick() => {
                demo.poll(first).await;
                first = false;
            }
        }
    };
    sim_task.abort();
    demo.power.down().await;
    demo.agents.stop();
    if dir.temporary {
        out(&format!(
            "stopped every agent; removed {}",
            dir.path.display()
        ));
    } else {
        out(&format!(
            "stopped every agent; files kept in {}",
            dir.path.display()
        ));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_ansi(s: &str) -> String {
        let mut o = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\x1b' {
                for d in it.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                o.push(c);
            }
        }
        o
    }

    #[test]
    fn port_layout() {
        let p = Ports::new(9876, 3).expect("ports");
        assert_eq!(p.http, vec![9876, 9877, 9878]);
        assert_eq!(p.p2p, vec![9879, 9880, 9881]);
        assert_eq!(p.power, 9882);
        assert_eq!(p.all().len(), 7);
        let e = Ports::new(65530, 3).expect_err("past 65535");
        assert!(e.contains("--base-port"), "{e}");
        assert_eq!(Ports::new(65529, 3).expect("fits").power, 65535);
    }

    #[test]
    fn port_in_use_names_the_port_and_the_flag() {
        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let m = port_problem(9877, "HTTP of demo-2", &e, 9876, 3);
        assert!(
            m.contains("port 9877") && m.contains("HTTP of demo-2"),
            "{m}"
        );
        assert!(m.contains("--base-port 10876"), "{m}");
    }

    #[test]
    fn generated_config_is_valid_and_always_dry_run() {
        let dir = Path::new("/tmp/x \"quoted\" \\dir");
        let ports = Ports::new(20000, 3).expect("ports");
        let nodes = node_specs(dir, &ports);
        let text = config_text(
            &nodes[1],
            &nodes,
            ports.power,
            Duration::from_secs(30),
            &dir.join("token"),
            &dir.join("swarm.key"),
        )
        .expect("text");
        let c = crate::config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.node.name, "demo-2");
        assert_eq!(c.node.state_dir, dir.join("demo-2/state"));
        assert_eq!(c.http.listen_address, "127.0.0.1:20001");
        assert_eq!(c.http.token_file, Some(dir.join("token")));
        assert_eq!(c.sensors.file, Some(dir.join("demo-2/readings.json")));
        assert_eq!(c.power.targets, vec!["tcp://127.0.0.1:20006".to_string()]);
        assert!(c.shutdown.dry_run);
        assert_eq!(c.shutdown.command, vec!["true".to_string()]);
        assert_eq!(
            c.shutdown.dry_run_marker,
            Some(dir.join("demo-2/dry-run-shutdowns"))
        );
        assert_eq!(c.shutdown.grace, Duration::from_secs(30));
        assert_eq!(c.shutdown.cooling_grace, Duration::from_secs(60));
        assert_eq!(c.shutdown.overheat_grace, Duration::from_secs(30));
        assert_eq!(c.cluster.name, "demo");
        assert!(!c.cluster.mdns);
        assert_eq!(c.cluster.psk_file, Some(dir.join("swarm.key")));
        assert_eq!(crate::config::cluster_trust_error(&c), None);
        assert_eq!(
            c.cluster.listen,
            vec!["/ip4/127.0.0.1/tcp/20004".to_string()]
        );
        assert_eq!(
            c.cluster.peers,
            vec![
                "/ip4/127.0.0.1/tcp/20003".to_string(),
                "/ip4/127.0.0.1/tcp/20005".to_string()
            ]
        );
    }

    #[test]
    fn readings_follow_the_file_schema() {
        let sim = Sim::new(3);
        let doc = sim.readings_json(0);
        let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
        assert_eq!(v[0]["chip"], "demo");
        assert_eq!(v[0]["critical_celsius"], CRITICAL_C);
        let c = v[0]["celsius"].as_f64().expect("celsius");
        assert!((35.0..=45.0).contains(&c), "{c}");
        let parsed = crate::sources::json::parse_readings(&doc, "file");
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn a_node_at_rest_never_looks_like_heating_fast() {
        let mut s = Sim::new(5);
        let read = |s: &Sim, i: usize| -> f64 {
            let v: serde_json::Value = serde_json::from_str(&s.readings_json(i)).expect("json");
            v[0]["celsius"].as_f64().expect("celsius")
        };
        let mut last: Vec<f64> = (0..5).map(|i| read(&s, i)).collect();
        for _ in 0..200 {
            s.step(1.0);
            for (i, prev) in last.iter_mut().enumerate() {
                let now = read(&s, i);
                // Two samples a second apart: the steepest trend the agent can see.
                assert!(((now - *prev) * 60.0).abs() < 2.5, "{now} after {prev}");
                *prev = now;
            }
        }
    }

    #[test]
    fn heating_and_cooling() {
        let mut s = Sim::new(3);
        let t0: Vec<f64> = (0..3).map(|i| s.temp(i)).collect();
        assert!(t0.iter().all(|t| (35.0..=45.0).contains(t)), "{t0:?}");
        assert!(s.settled());
        s.heat(1);
        for _ in 0..60 {
            s.step(1.0);
        }
        assert!((s.temp(1) - (t0[1] + HEAT_RATE_C_PER_MIN)).abs() < 1e-6);
        assert!((s.temp(0) - t0[0]).abs() < 1e-6, "only node 2 heats");
        s.restore_cooling();
        s.fail_cooling();
        for _ in 0..600 {
            s.step(1.0);
        }
        assert!((0..3).all(|i| s.temp(i) == CAP_C));
        s.restore_cooling();
        assert!(!s.settled());
        for _ in 0..300 {
            s.step(1.0);
        }
        assert!(s.settled());
        s.fail_cooling();
        s.step(10.0);
        s.reset();
        assert!(s.settled());
    }

    #[test]
    fn keys() {
        assert_eq!(parse_key("p\n", 3), Ok(Key::CutPower));
        assert_eq!(parse_key(" P ", 3), Ok(Key::RestorePower));
        assert_eq!(parse_key("c", 3), Ok(Key::FailCooling));
        assert_eq!(parse_key("C", 3), Ok(Key::RestoreCooling));
        assert_eq!(parse_key("h 2", 3), Ok(Key::Heat(2)));
        assert_eq!(parse_key("h3", 3), Ok(Key::Heat(3)));
        assert_eq!(parse_key("", 3), Ok(Key::Nothing));
        assert_eq!(parse_key("q", 3), Ok(Key::Quit));
        assert_eq!(parse_key("?", 3), Ok(Key::Help));
        assert_eq!(parse_key("r", 3), Ok(Key::Reset));
        assert_eq!(parse_key("s", 3), Ok(Key::Status));
        let e = parse_key("h 4", 3).expect_err("no node 4");
        assert!(e.contains("1 to 3"), "{e}");
        let e = parse_key("h", 3).expect_err("which node");
        assert!(e.contains("h 2"), "{e}");
        let e = parse_key("x", 3).expect_err("unknown");
        assert!(e.contains("?"), "{e}");
        assert!(parse_key("p p p", 3).is_err());
    }

    #[test]
    fn table_aligns_with_and_without_colour() {
        let mut s = Snapshot {
            node: "demo-1".into(),
            ..Default::default()
        };
        s.fsm.state = "pre_fail".into();
        s.fsm.reason = "power".into();
        s.fsm.deadline_ms = Some(1_000 + 27_000);
        s.thermal.hottest_celsius = Some(41.3);
        s.thermal.headroom_celsius = Some(48.75);
        s.thermal.trend_celsius_per_minute = Some(0.1);
        s.power.up = Some(false);
        s.cluster.name = "demo".into();
        let r1 = row("demo-1", &s, 1_000, 2);
        assert_eq!(r1[3], "27s");
        assert_eq!(r1[7], "DOWN");
        assert_eq!(r1[8], "0/2");
        let r2 = row_unreachable("demo-2", "unreachable", "connection refused");
        let plain = render_table(&[r1.clone(), r2.clone()], Style { colour: false });
        let coloured = render_table(&[r1, r2], Style { colour: true });
        assert!(coloured.contains("\x1b["));
        assert!(!plain.contains('\x1b'));
        assert_eq!(strip_ansi(&coloured), plain);
        let widths: Vec<usize> = plain
            .lines()
            .map(|l| l.find("POWER").unwrap_or(0))
            .collect();
        let lines: Vec<&str> = plain.lines().collect();
        // Every column starts at the same offset on every line.
        let col = lines[0].find("HOTTEST").expect("header");
        assert_eq!(&lines[1][col..col + 9], "     41.3");
        assert!(widths[0] > 0);
        assert_eq!(fmt_left(61_000), "1m01s");
        assert_eq!(fmt_left(500), "1s");
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("x\ny"), "\"x\\u000Ay\"");
    }
}

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
//! `B+2N`. With the defaults, demo-1 serves on 10027 like a lone agent.
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
//!   when stdout is a terminal, `NO_COLOR` is unset and `TERM` is not `dumb`.

mod agents;
mod screen;
mod setup;
mod sim;
#[cfg(test)]
mod tests;

use crate::args::DemoArgs;
use agents::*;
use anyhow::Context;
use coolmesh_exporter::Snapshot;
use screen::*;
use setup::*;
use sim::*;
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
                    crate::client::fetch_state(&n.url()),
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
        s.push_str(&crate::render::table(
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
                    crate::client::fetch_state(&url),
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
        let now = coolmesh_agent::clock::unix_ms();
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
    write_token(
        &psk_file,
        coolmesh_agent::cluster::generate_psk().trim_end(),
    )?;
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

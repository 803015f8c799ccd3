//! `coolmesh agent`: wires sources, probes, the state machine, the cluster
//! and the HTTP server together, and stops them all on shutdown.
//!
//! # Layout
//!
//! Every producer runs in its own task and talks to the core loop over a
//! bounded channel or a `watch`:
//!
//! - sampler -> `watch<SensorState>` (a round every `sensors.interval`)
//! - power runner -> `mpsc<PowerObservation>` (a round every `power.interval`)
//! - supervisor (state machine) -> `watch<Machine>`; core -> `mpsc<Event>`
//! - cluster -> `watch<ClusterView>`; core -> `watch<LocalState>` + urgent pushes
//! - HTTP -> `mpsc<ControlRequest>` with a oneshot reply
//!
//! The core loop ([`Core`]) is the only writer of the snapshot the exporter
//! serves, of this node's counter slots and of the record peers see.

use crate::cluster::{self, counters::CounterKind, ClusterView, LocalState};
use crate::config::{normalize_listen, Config, SourceKind};
use crate::counter_store::CounterStore;
use crate::fsm::{Event, FsmConfig, Input, Machine, PeerView, PowerReading, Reason, State};
use crate::power::{self, PowerObservation};
use crate::sampler::{SamplerConfig, SensorState};
use crate::sources::{self, Source};
use crate::supervisor::{Supervisor, SupervisorStats, SystemClock};
use anyhow::Context;
use coolmesh_exporter::auth::Token;
use coolmesh_exporter::Command;
use coolmesh_exporter::{App, BuildInfo, ControlRequest, Limits, Metrics, Snapshot, WebConfig};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Build metadata of this binary.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: env!("COOLMESH_REVISION"),
        rustc: env!("COOLMESH_RUSTC"),
    }
}

pub fn build_sources(cfg: &Config) -> anyhow::Result<Vec<Arc<dyn Source>>> {
    let s = &cfg.sensors;
    let mut out: Vec<Arc<dyn Source>> = Vec::new();
    for kind in &s.sources {
        let src: Arc<dyn Source> = match kind {
            SourceKind::Hwmon => Arc::new(sources::hwmon::Hwmon::new(&s.sysfs)),
            SourceKind::ThermalZone => Arc::new(sources::thermal_zone::ThermalZone::new(&s.sysfs)),
            SourceKind::Sysinfo => Arc::new(sources::sysinfo::SysinfoSource::default()),
            SourceKind::File => {
                let p = s
                    .file
                    .as_ref()
                    .context("the `file` source needs sensors.file")?;
                Arc::new(sources::file::FileSource::new(p))
            }
            SourceKind::Exec => Arc::new(sources::exec::ExecSource::new(s.exec.clone())),
            SourceKind::LmSensors => crate::sources::lm_sensors_from_config(s)?,
        };
        out.push(src);
    }
    Ok(out)
}

/// Load the operator token, if configured. A configured but missing or bad
/// token file is a startup error: silently disabling the cancel endpoint
/// would leave the operator without a brake.
pub fn load_token(cfg: &Config) -> anyhow::Result<Option<Token>> {
    let Some(path) = &cfg.http.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "http.token_file {}: cannot read (create it with `openssl rand -hex 32 > {}`)",
            path.display(),
            path.display()
        )
    })?;
    let token = Token::from_file_content(&text)
        .map_err(|e| anyhow::anyhow!("http.token_file {}: {e}", path.display()))?;
    crate::perms::warn_secret_file("http.token_file", path);
    Ok(Some(token))
}

/// Log an error for each shutdown program that cannot be run: the agent
/// still starts (it watches and alerts), but its shutdown would fail.
/// `coolmesh preflight` reports the same before the agent runs.
fn check_shutdown_programs(cfg: &Config) {
    let s = &cfg.shutdown;
    for (key, argv) in [
        ("shutdown.command", &s.command),
        ("shutdown.pre_command", &s.pre_command),
    ] {
        if let Some(p) = argv.first() {
            if let Err(e) = power::exec::check_program(p) {
                tracing::error!(
                    key,
                    dry_run = s.dry_run,
                    "{e}: the shutdown would fail; `coolmesh preflight` checks the installation"
                );
            }
        }
    }
}

/// Load `http.web_config_file`, if configured: TLS, basic auth, headers.
/// Every certificate it names is read and checked here, so a bad one stops
/// the agent at startup with the file's name.
pub fn load_web_config(cfg: &Config) -> anyhow::Result<Option<Arc<WebConfig>>> {
    let Some(path) = &cfg.http.web_config_file else {
        return Ok(None);
    };
    let w = WebConfig::load(path).map_err(|e| anyhow::anyhow!("http.web_config_file: {e}"))?;
    Ok(Some(Arc::new(w)))
}

/// Run the agent until `shutdown` completes.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let web = load_web_config(&cfg)?;
    run_with_web(cfg, web, shutdown).await
}

/// [`run`] with the web config already loaded (the binary loads it first
/// so that a bad one exits with the config error status).
pub async fn run_with_web(
    cfg: Config,
    web: Option<Arc<WebConfig>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr = normalize_listen(&cfg.http.listen_address)
        .map_err(|e| anyhow::anyhow!("http.listen_address: {e}"))?;
    let sources = build_sources(&cfg)?;
    let token = load_token(&cfg)?;
    check_shutdown_programs(&cfg);
    std::fs::create_dir_all(&cfg.node.state_dir).with_context(|| {
        format!(
            "node.state_dir {}: cannot create (create it writable by the agent's user, or set node.state_dir / --state-dir)",
            cfg.node.state_dir.display()
        )
    })?;
    let cancel = CancellationToken::new();

    // The decision journal: what is on disk comes back (a torn last entry
    // is cut off and reported); the writer appends from here on.
    let (journal, journal_writer, problems) =
        crate::journal::Journal::open(&cfg.node.state_dir, cfg.journal.clone());
    for p in &problems {
        tracing::warn!(file = %p.file, line = p.line, problem = %p.error, "decision journal: an entry could not be read back");
    }
    let journal_task = tokio::spawn(journal_writer.run());

    // Identity first: the PeerId owns this node's counter slots.
    let keypair = cluster::load_or_create_identity(&cfg.node.state_dir).with_context(|| {
        format!(
            "node.state_dir {}: cluster identity",
            cfg.node.state_dir.display()
        )
    })?;
    let peer_id = keypair.public().to_peer_id().to_base58();
    let (counters, problem) = CounterStore::load(&cfg.node.state_dir, &peer_id);
    if let Some(p) = problem {
        tracing::error!(problem = %p, "counter file unusable; this node's slots will be recovered from peers");
    }

    let initial =
        Snapshot {
            node: cfg.node.name.clone(),
            peer_id: peer_id.clone(),
            // `GET /v1/roster` answers from the first request on.
            roster: cfg.cluster.operator_key.as_deref().map(|k| {
                crate::snapshot::roster_status(&ClusterView::default(), &cfg.cluster.name, k)
            }),
            ..Default::default()
        };
    let (snap_tx, snap_rx) = watch::channel(Arc::new(initial));
    let metrics = Metrics::new(
        &build_info(),
        snap_rx.clone(),
        coolmesh_exporter::collector::DEFAULT_MAX_PEER_SERIES,
    )
    .context("registering metrics")?;
    let cluster_name = if cfg.cluster.enabled {
        cfg.cluster.name.as_str()
    } else {
        ""
    };
    metrics.set_identity(&cfg.node.name, cluster_name, &peer_id);
    // process_* (CPU, memory, file descriptors, start time), as every
    // Prometheus exporter has. Registered here, not in `Metrics::new`, so
    // that the golden /metrics stays free of values that change.
    metrics
        .registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .context("registering process metrics")?;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (http.listen_address): another agent or program on that port (`ss -ltnp`)? pick another with --web.listen-address"))?;
    let security = web
        .as_ref()
        .map(|w| w.summary())
        .unwrap_or_else(|| "plain HTTP, no basic auth".into());
    let scheme = if web.as_ref().is_some_and(|w| w.tls().is_some()) {
        "HTTPS"
    } else {
        "HTTP"
    };
    tracing::info!(address = %listener.local_addr().unwrap_or(addr), peer_id = %peer_id, %security, "serving {scheme}");
    let (ctl_tx, ctl_rx) = mpsc::channel::<ControlRequest>(16);
    let limits = Limits {
        max_connections: cfg.http.max_connections,
        max_connections_per_ip: cfg.http.max_connections_per_ip,
        first_byte_timeout: cfg.http.first_byte_timeout,
        header_read_timeout: cfg.http.header_read_timeout,
        ..Limits::default()
    };
    // The last half hour of every node, for the status page (bounded,
    // in memory: coolmesh_exporter::history).
    let history = coolmesh_exporter::History::new(Default::default());
    let app = Arc::new(App {
        metrics: metrics.clone(),
        snapshot: snap_rx.clone(),
        events: Some(Arc::new(journal.clone())),
        history: Some(history.clone()),
        control: Some(ctl_tx),
        token,
        limits,
        web,
    });
    let http = tokio::spawn(coolmesh_exporter::serve(
        listener,
        app,
        cancel.clone().cancelled_owned(),
    ));

    let (sensor_tx, sensor_rx) = watch::channel(SensorState::default());
    let sampler_cfg = SamplerConfig {
        interval: cfg.sensors.interval,
        timeout: cfg.sensors.timeout,
        trend_window: cfg.sensors.trend_window,
        thresholds: cfg.sensors.thresholds.clone(),
        roles: cfg.sensors.roles.clone(),
        heat: heat_config(&cfg),
        load: cfg.sensors.cpu_load.clone(),
    };
    let sampler = tokio::spawn(crate::sampler::run(
        sources,
        sampler_cfg,
        sensor_tx,
        cancel.clone().cancelled_owned(),
    ));

    // Power probes: a target that can never work (bad URL, no ICMP
    // permission, missing exec program) stops the agent at startup with the
    // fix in the message, rather than looking like a permanent outage.
    let (power_tx, power_rx) = mpsc::channel::<PowerObservation>(8);
    let mut power_metrics = None;
    let power_task = if cfg.power.targets.is_empty() {
        drop(power_tx);
        None
    } else {
        let specs = power::parse_targets(&cfg.power.targets)
            .map_err(|e| anyhow::anyhow!("power.targets: {e}"))?;
        let probes = power::build_probes(&specs)?;
        let policy: power::Policy = cfg
            .power
            .policy
            .parse()
            .map_err(|e| anyhow::anyhow!("power.policy: {e}"))?;
        let pm = power::PowerMetrics::new().context("power metrics")?;
        pm.register(&metrics.registry)
            .context("registering power metrics")?;
        power_metrics = Some(pm.clone());
        let run_cfg = power::RunConfig {
            interval: cfg.power.interval,
            jitter_fraction: cfg.power.jitter,
            timeout: cfg.power.timeout,
        };
        run_cfg
            .validate()
            .map_err(|e| anyhow::anyhow!("[power]: {e}"))?;
        Some(tokio::spawn(power::run(
            probes,
            policy,
            run_cfg,
            pm,
            power_tx,
            cancel.clone().cancelled_owned(),
        )))
    };

    // The cluster.
    let (local_tx, local_rx) = watch::channel(LocalState::default());
    // The cluster's "push now" signal is not needed by the agent: a state
    // change in `local` pushes by itself. The sender is dropped at once.
    let (urgent_tx, urgent_rx) = mpsc::channel::<()>(1);
    drop(urgent_tx);
    let (view_tx, view_rx) = watch::channel(ClusterView::default());
    let mut cluster_handle = None;
    // Room commands from the cluster layer to the core loop (bounded: a
    // flood is refused by the cluster layer, never queued).
    let (room_tx, room_rx) = mpsc::channel::<cluster::room::RoomApply>(8);
    let cluster_task = if cfg.cluster.enabled {
        let ccfg = cluster_config(&cfg)?;
        let gm = cluster::GossipMetrics::new();
        gm.register(&metrics.registry)
            .context("registering gossip metrics")?;
        let stop = cancel.clone().cancelled_owned();
        let mut c = cluster::Cluster::new(ccfg, keypair, gm);
        c.set_room_sink(room_tx);
        cluster_handle = Some(c.handle());
        Some(tokio::spawn(c.run(local_rx, urgent_rx, view_tx, stop)))
    } else {
        drop((local_rx, urgent_rx, view_tx, room_tx));
        None
    };

    // The state machine. Its directory holds the deadline and the
    // exactly-once record.
    let fsm_cfg = fsm_config(&cfg);
    let exec_stats = Arc::new(crate::shutdown::ExecStats::default());
    let executor = crate::shutdown::Executor::with_stats(shutdown_config(&cfg), exec_stats.clone());
    let supervisor = Supervisor::new(
        fsm_cfg.clone(),
        executor,
        &cfg.node.state_dir,
        SystemClock::new(),
    )
    .map_err(|e| anyhow::anyhow!("state machine config: {}", e.0))?;
    let machine_rx = supervisor.subscribe();

    let fsm_stats = supervisor.stats();
    let (event_tx, event_rx) = mpsc::channel::<Event>(32);
    let fsm_task = tokio::spawn(supervisor.run(event_rx, cancel.clone().cancelled_owned()));
    if cfg.shutdown.dry_run {
        tracing::warn!("dry-run: shutdown commands are logged, not run");
    }

    // Validated with the probes above when targets are configured.
    let power_policy: power::Policy = cfg.power.policy.parse().unwrap_or_default();
    let core = Core {
        power_configured: power_task.is_some(),
        cfg,
        fsm_cfg,
        snap_tx,
        metrics,
        power_metrics,
        fsm_stats,
        exec_stats,
        event_tx,
        local_tx,
        cluster_handle,
        counters,
        peer_id,
        thermal: Default::default(),
        power: None,
        power_targets: Vec::new(),
        view: ClusterView::default(),
        policy: power_policy,
        sent_peers: None,
        seen_transitions: Default::default(),
        seen_probe_failures: 0,
        recovered: false,
        journal,
        last_machine: None,
        history,
        air: (None, None),
    };
    let result = core
        .run(
            shutdown, sensor_rx, power_rx, machine_rx, view_rx, ctl_rx, room_rx, fsm_task,
        )
        .await;

    tracing::info!("shutting down");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(1500), async {
        let _ = http.await;
        // The last handle went with the HTTP server: the writer drains
        // its queue and ends.
        let _ = journal_task.await;
        let _ = sampler.await;
        if let Some(p) = power_task {
            let _ = p.await;
        }
        if let Some(c) = cluster_task {
            match c.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "cluster stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "cluster task failed"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await;
    result
}

/// The core loop's state.
struct Core {
    cfg: Config,
    fsm_cfg: FsmConfig,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    metrics: Metrics,
    power_metrics: Option<power::PowerMetrics>,
    fsm_stats: Arc<SupervisorStats>,
    exec_stats: Arc<crate::shutdown::ExecStats>,
    event_tx: mpsc::Sender<Event>,
    local_tx: watch::Sender<LocalState>,
    /// Commands to the cluster layer (the roster); `None` without a cluster.
    cluster_handle: Option<cluster::ClusterHandle>,
    counters: CounterStore,
    /// This node's PeerId (base58), the owner of its counter slots.
    peer_id: String,
    power_configured: bool,
    thermal: crate::thermal::ThermalSummary,
    /// The last probe round as the state machine reads it (`None` before
    /// the first round).
    power: Option<PowerReading>,
    /// The last round's known per-target results, as published to peers.
    power_targets: Vec<cluster::record::TargetObservation>,
    view: ClusterView,
    /// This node's power policy (parsed once; applied to peers' votes).
    policy: power::Policy,
    /// The peer view last sent as [`Event::PeersChanged`].
    sent_peers: Option<PeerView>,
    /// Transition counts already turned into built-in counter increments.
    seen_transitions: std::collections::HashMap<(State, State, Reason), u64>,
    seen_probe_failures: u64,
    /// This node's slots were merged back from the cluster once.
    recovered: bool,
    /// The decision journal.
    journal: crate::journal::Journal,
    /// The machine as last journaled (transitions are its differences).
    last_machine: Option<Machine>,
    /// Every node's last half hour (`GET /v1/history`).
    history: coolmesh_exporter::History,
    /// This node's hottest inlet and ambient sensors in the last round.
    air: (Option<f64>, Option<f64>),
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut sensor_rx: watch::Receiver<SensorState>,
        mut power_rx: mpsc::Receiver<PowerObservation>,
        mut machine_rx: watch::Receiver<Machine>,
        mut view_rx: watch::Receiver<ClusterView>,
        mut ctl_rx: mpsc::Receiver<ControlRequest>,
        mut room_rx: mpsc::Receiver<cluster::room::RoomApply>,
        mut fsm_task: tokio::task::JoinHandle<Machine>,
    ) -> anyhow::Result<()> {
        crate::watchdog::ready();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let power_open = self.power_configured;
        let mut view_open = self.cfg.cluster.enabled;
        let mut room_open = self.cfg.cluster.enabled;
        self.publish_local(&machine_rx.borrow().clone());
        // The watchdog is fed only while sensor rounds and probe rounds
        // keep arriving: a hung or dead producer means the state machine
        // sees nothing new, and systemd should restart the agent.
        let started = tokio::time::Instant::now();
        let mut last_sensor = started;
        let mut last_power = started;
        let sensor_limit = watchdog_limit(self.cfg.sensors.interval, self.cfg.sensors.timeout);
        let power_limit = watchdog_limit(
            self.cfg
                .power
                .interval
                .mul_f64(1.0 + self.cfg.power.jitter.max(0.0)),
            self.cfg.power.timeout,
        );
        let mut starved = false;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = sensor_rx.changed() => {
                    if r.is_err() {
                        return Err(anyhow::anyhow!("the sensor sampler stopped unexpectedly"));
                    }
                    last_sensor = tokio::time::Instant::now();
                    let s = sensor_rx.borrow_and_update().clone();
                    self.thermal = s.thermal;
                    self.air = crate::snapshot::air_temperatures(&s.readings);
                    self.update(|snap| crate::snapshot::apply_sensors(snap, &s));
                    // Without power targets the sensor round is the observation;
                    // with them, each probe round is (it carries the latest
                    // thermal summary), so recovery streaks count probes only.
                    if !self.power_configured {
                        self.observe();
                    }
                    self.publish_local(&machine_rx.borrow().clone());
                }
                obs = power_rx.recv(), if power_open => {
                    let Some(obs) = obs else {
                        // Without probe rounds there are no observations
                        // (and no overheat checks): exit, systemd restarts.
                        return Err(anyhow::anyhow!("the power probe task stopped unexpectedly"));
                    };
                    last_power = tokio::time::Instant::now();
                    // An unknown round (local errors only) is neither up nor
                    // down: the machine reads it as a local fault, and peers
                    // get no vote from us.
                    self.power = Some(obs.up.map_or(PowerReading::Unknown, PowerReading::from));
                    let at_ms = obs.at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                    // The record has no "unknown" per target: an unknown
                    // target is left out rather than published as "down",
                    // which peers would count as a vote.
                    self.power_targets = obs
                        .targets
                        .iter()
                        .filter(|t| !t.unknown)
                        .map(|t| cluster::record::TargetObservation { target: t.target.clone(), up: t.up, at_ms })
                        .collect();
                    let policy = self.cfg.power.policy.clone();
                    self.update(|snap| crate::snapshot::apply_power(snap, &policy, &obs));
                    self.observe();
                    self.count_probe_failures();
                    self.publish_local(&machine_rx.borrow().clone());
                }
                r = view_rx.changed(), if view_open => {
                    if r.is_err() { view_open = false; continue; }
                    self.view = view_rx.borrow_and_update().clone();
                    self.peers_changed();
                    // Peers carry our last published slots: after a lost
                    // counters file this brings the counts back (the engine
                    // holds our new record until it heard the old one). A
                    // per-slot max: idempotent, so checked on every change.
                    match self.counters.recover_from(&self.view.counters) {
                        Ok(true) => {
                            self.recovered = true;
                            tracing::warn!("counter slots recovered from peers");
                        }
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "cannot persist recovered counters"),
                    }
                    self.update(|_| {});
                }
                r = machine_rx.changed() => {
                    if r.is_err() { continue; }
                    let m = machine_rx.borrow_and_update().clone();
                    // A state change gets its point at once (before the
                    // snapshot says so), however short the state.
                    self.history.sample_one(unix_ms(), &self.own_history(&m));
                    let fsm_cfg = self.fsm_cfg.clone();
                    let dry_run = self.cfg.shutdown.dry_run;
                    self.update(|snap| crate::snapshot::apply_machine(snap, &m, &fsm_cfg, dry_run));
                    sync_counters(&self.metrics, &self.fsm_stats, &self.exec_stats);
                    self.count_transitions();
                    self.journal_machine(&m);
                    // Peers hear about a transition at once, by one path:
                    // the cluster layer pushes our record to every member
                    // when the published state changes (`Engine::set_local`).
                    self.publish_local(&m);
                }
                apply = room_rx.recv(), if room_open => {
                    let Some(apply) = apply else { room_open = false; continue; };
                    let m = machine_rx.borrow().clone();
                    let ack = self.room_apply(&apply.command, apply.from, &m).await;
                    if ack.outcome == cluster::room::Outcome::Applied {
                        self.publish_local(&m);
                    }
                    let _ = apply.reply.send(ack);
                }
                Some(req) = ctl_rx.recv() => {
                    if let Command::SetRoster { signed } = req.command {
                        // The cluster layer verifies and answers; the core
                        // loop does not wait for it.
                        self.forward_roster(signed, req.reply);
                        continue;
                    }
                    if let Command::Room { command } = req.command {
                        self.forward_room(command, req.reply);
                        continue;
                    }
                    let m = machine_rx.borrow().clone();
                    let answer = match &req.command {
                        Command::IncrementCounter { name, amount } => self.user_increment(name, *amount),
                        cmd => {
                            let a = control(cmd, &m, &self.event_tx, &self.cfg).await;
                            self.journal_operator(cmd, "the node's HTTP API (token)", "this node", &a);
                            a
                        }
                    };
                    if answer.is_ok() {
                        self.publish_local(&m);
                    }
                    let _ = req.reply.send(answer);
                }
                done = &mut fsm_task => {
                    // The state machine must never stop on its own; without it
                    // the agent protects nothing. Exit so systemd restarts us
                    // (the persisted deadline survives).
                    return Err(anyhow::anyhow!("the state machine stopped unexpectedly: {done:?}"));
                }
                _ = tick.tick() => {
                    let m = machine_rx.borrow().clone();
                    self.history.sample_all(
                        unix_ms(),
                        &crate::snapshot::history_samples(self.own_history(&m), &self.view),
                    );
                    // Feed systemd's watchdog only while this loop runs, the
                    // state machine task is alive (checked above) and the
                    // producers deliver.
                    let now = tokio::time::Instant::now();
                    let (sensors_ok, power_ok) = producers_fresh(
                        now.duration_since(last_sensor),
                        power_open.then(|| now.duration_since(last_power)),
                        sensor_limit,
                        power_limit,
                    );
                    if sensors_ok && power_ok {
                        crate::watchdog::ping();
                        if starved {
                            tracing::info!("sensor and probe rounds arrive again; feeding the watchdog");
                            starved = false;
                        }
                    } else if !starved {
                        starved = true;
                        tracing::error!(sensors_ok, power_ok, "no fresh sensor or probe round: not feeding the watchdog (systemd restarts the agent)");
                    }
                }
            }
        }
    }

    /// This node as the history samples it.
    fn own_history(&self, m: &Machine) -> coolmesh_exporter::history::NodeSample {
        crate::snapshot::self_history_sample(
            &self.cfg.node.name,
            &self.peer_id,
            &self.thermal,
            self.air,
            m.state.as_str(),
        )
    }

    /// Rebuild the snapshot: apply `f`, then the cluster-derived parts.
    fn update(&mut self, f: impl FnOnce(&mut Snapshot)) {
        let mut snap = (**self.snap_tx.borrow()).clone();
        f(&mut snap);
        crate::snapshot::apply_cluster(
            &mut snap,
            &self.view,
            &self.cfg.cluster.name,
            &self.fsm_cfg,
            &self.thermal,
        );
        snap.roster = self
            .cfg
            .cluster
            .operator_key
            .as_deref()
            .map(|k| crate::snapshot::roster_status(&self.view, &self.cfg.cluster.name, k));
        snap.counters = self.counter_view();
        snap.updated_ms = unix_ms();
        self.snap_tx.send_replace(Arc::new(snap));
    }

    fn counter_view(&self) -> Vec<coolmesh_exporter::model::CounterStatus> {
        let mut names: std::collections::BTreeSet<String> =
            self.view.counters.map.keys().cloned().collect();
        names.extend(self.counters.names());
        names
            .into_iter()
            .map(|name| {
                let local = self.counters.local(&name);
                // The view may lag our latest increment: combine the
                // cluster's other slots with our own current slot.
                let others: i128 = self
                    .view
                    .counters
                    .map
                    .get(&name)
                    .map(|c| {
                        c.slots
                            .iter()
                            .filter(|(owner, _)| **owner != self.peer_id)
                            .map(|(_, s)| i128::from(s.p) - i128::from(s.n))
                            .sum()
                    })
                    .unwrap_or(0);
                coolmesh_exporter::model::CounterStatus {
                    name,
                    value: clamp(others + local),
                    local: clamp(local),
                }
            })
            .collect()
    }

    /// What fresh peers report, on this node's own targets.
    fn peer_view(&self) -> PeerView {
        peer_view(&self.view, &self.fsm_cfg, &self.power_targets, self.policy)
    }

    /// The state machine's input: our latest probe result and thermal
    /// summary, plus what fresh (alive) peers report.
    fn observe(&self) {
        let peers = self.peer_view();
        let input = Input {
            power: self.power,
            thermal: self.thermal,
            peers,
        };
        // Bounded: if the machine is behind, this observation is dropped
        // (the next one supersedes it) rather than queueing stale data.
        if let Err(e) = self.event_tx.try_send(Event::Observe(input)) {
            tracing::warn!(error = %e, "state machine busy; observation dropped");
        }
    }

    /// Tell the state machine when what fresh peers report changed, so that
    /// a corroboration that arrives between two own probes acts at once
    /// (e.g. `local_fault` -> `pre_fail` as peers' "down" votes come in).
    /// Only real changes are sent; the machine re-evaluates with its last
    /// own probe result and never counts this as a probe.
    fn peers_changed(&mut self) {
        if !self.power_configured {
            return;
        }
        let peers = self.peer_view();
        if self.sent_peers == Some(peers) {
            return;
        }
        // Bounded, like observations: if the machine is behind, the next
        // observation carries the same view anyway.
        match self.event_tx.try_send(Event::PeersChanged(peers)) {
            Ok(()) => self.sent_peers = Some(peers),
            Err(e) => tracing::debug!(error = %e, "state machine busy; peer view change dropped"),
        }
    }

    /// Publish what peers should see of us.
    fn publish_local(&self, m: &Machine) {
        let state = LocalState {
            node: self.cfg.node.name.clone(),
            thermal: (&self.thermal).into(),
            power: self.power_targets.clone(),
            power_up: self.power.and_then(PowerReading::vote),
            fsm: cluster::record::FsmSummary {
                state: m.state.as_str().to_string(),
                reason: m.reason.as_str().to_string(),
                deadline_ms: m.effective_deadline(&self.fsm_cfg).map(|d| d.0),
            },
            counters: self.counters.own_slots(),
        };
        self.local_tx.send_if_modified(|cur| {
            if *cur == state {
                false
            } else {
                *cur = state;
                true
            }
        });
    }

    /// Hand a signed roster to the cluster layer; the answer goes straight
    /// back to the HTTP request.
    /// Journal what changed in the machine since the last call:
    /// triggers that became active or cleared, transitions, deadline moves,
    /// shutdown command attempts. The evidence is what this node knows now,
    /// which is what the observation that caused the change carried.
    fn journal_machine(&mut self, m: &Machine) {
        use crate::journal::Event as J;
        let Some(prev) = self.last_machine.replace(m.clone()) else {
            // The first machine the supervisor publishes is the one it
            // restored from disk.
            self.journal.record(
                unix_ms(),
                J::Started {
                    version: env!("CARGO_PKG_VERSION").into(),
                    state: m.state.to_string(),
                    reason: m.reason.to_string(),
                    detail: m.detail.clone(),
                },
                None,
            );
            return;
        };
        let now = unix_ms();
        let deadline = |x: &Machine| x.effective_deadline(&self.fsm_cfg).map(|d| d.0);
        let mut evidence = None;
        let mut ev = |this: &Self| evidence.get_or_insert_with(|| this.evidence()).clone();
        for (trigger, was, is) in [
            ("power", prev.power_lost_since, m.power_lost_since),
            ("cooling", prev.cooling_since, m.cooling_since),
            ("overheat", prev.overheat_since, m.overheat_since),
        ] {
            if was.is_some() != is.is_some() {
                let e = ev(self);
                self.journal.record(
                    now,
                    J::Trigger {
                        trigger: trigger.into(),
                        active: is.is_some(),
                    },
                    Some(e),
                );
            }
        }
        if prev.state != m.state || prev.since != m.since {
            let e = ev(self);
            self.journal.record(
                now,
                J::Transition {
                    from: prev.state.to_string(),
                    to: m.state.to_string(),
                    reason: m.reason.to_string(),
                    trigger: m.trigger.to_string(),
                    detail: m.detail.clone(),
                    deadline_before_ms: deadline(&prev),
                    deadline_ms: deadline(m),
                },
                Some(e),
            );
        } else if deadline(&prev) != deadline(m) {
            let e = ev(self);
            self.journal.record(
                now,
                J::DeadlineMoved {
                    reason: m.reason.to_string(),
                    detail: m.detail.clone(),
                    before_ms: deadline(&prev),
                    after_ms: deadline(m),
                },
                Some(e),
            );
        }
        let (a, b) = (&prev.exec, &m.exec);
        let dry_run = self.cfg.shutdown.dry_run;
        let command = |outcome: &str, error: Option<String>| J::Command {
            attempt: b.attempts,
            outcome: outcome.into(),
            error,
            dry_run,
        };
        if b.attempts > a.attempts {
            self.journal.record(now, command("started", None), None);
        }
        if b.done && !a.done {
            self.journal.record(now, command("succeeded", None), None);
        }
        if b.failures > a.failures {
            self.journal
                .record(now, command("failed", b.last_error.clone()), None);
        }
    }

    /// Journal an operator command of the node's own API.
    fn journal_operator(
        &self,
        cmd: &Command,
        requester: &str,
        via: &str,
        answer: &Result<String, String>,
    ) {
        let action = match cmd {
            Command::CancelShutdown => "cancel".to_string(),
            Command::Maintenance { duration } if duration.is_zero() => "end maintenance".into(),
            Command::Maintenance { duration } => {
                format!("maintenance for {}", humantime::format_duration(*duration))
            }
            _ => return,
        };
        let (outcome, message) = match answer {
            Ok(m) => ("applied", m.clone()),
            Err(m) => ("refused", m.clone()),
        };
        self.journal.record(
            unix_ms(),
            crate::journal::Event::Operator {
                action,
                requester: requester.into(),
                via: via.into(),
                outcome: outcome.into(),
                message,
            },
            None,
        );
    }

    /// What the decisions use now: this node's probes and readings, the
    /// voters' observations of the same targets (by name), the cooling
    /// quorum as the state machine counts it.
    fn evidence(&self) -> crate::journal::Evidence {
        use crate::journal::{CoolingEvidence, Evidence, TargetEvidence, ThermalEvidence};
        let voters = self.view.voters();
        let name = |p: &cluster::ClusterPeer| {
            if p.record.state.node.is_empty() {
                p.record.peer_id.to_base58()
            } else {
                p.record.state.node.clone()
            }
        };
        let targets = self
            .cfg
            .power
            .targets
            .iter()
            .map(|t| {
                let mut te = TargetEvidence {
                    target: t.clone(),
                    own: self
                        .power_targets
                        .iter()
                        .find(|o| &o.target == t)
                        .map(|o| o.up),
                    ..Default::default()
                };
                for p in &voters {
                    if let Some(o) = p.record.state.power.iter().find(|o| &o.target == t) {
                        if o.up {
                            te.up.push(name(p));
                        } else {
                            te.down.push(name(p));
                        }
                    }
                }
                te.up.sort();
                te.down.sort();
                te
            })
            .collect();
        let th = &self.thermal;
        let thermal = ThermalEvidence {
            node: self.cfg.node.name.clone(),
            hottest: th.hottest_celsius,
            headroom: th.headroom_celsius,
            trend: th.trend_celsius_per_minute,
            time_to_critical: th.time_to_critical_seconds,
            critical: th.critical,
            cooling_vote: self.fsm_cfg.is_heating(th),
            air: th.air,
            load: th.load,
        };
        let pv = self.peer_view();
        let (peer_weight, peer_voting) = pv.weights();
        let own_w = if th.air { 2 } else { 1 };
        let own_vote = thermal.cooling_vote;
        let weight = peer_weight + own_w;
        let voting_weight = peer_voting + if own_vote { own_w } else { 0 };
        let voting_nodes = pv.overheating + u32::from(own_vote);
        let (formed, needed) = crate::fsm::weighted_quorum(
            weight,
            voting_weight,
            voting_nodes,
            self.fsm_cfg.cooling_quorum_min,
        );
        let voting = voters
            .iter()
            .filter(|p| peer_votes_cooling(&p.record.state.thermal, &self.fsm_cfg))
            .map(|p| {
                let t = &p.record.state.thermal;
                ThermalEvidence {
                    node: name(p),
                    hottest: t.hottest,
                    headroom: t.headroom,
                    trend: t.trend,
                    time_to_critical: t.time_to_critical,
                    critical: t.critical,
                    cooling_vote: true,
                    air: t.air,
                    load: None,
                }
            })
            .collect();
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Evidence {
            own_power: match self.power {
                None => String::new(),
                Some(PowerReading::Unknown) => "unknown".into(),
                Some(r) => match r.vote() {
                    Some(true) => "up".into(),
                    Some(false) => "down".into(),
                    None => "unknown".into(),
                },
            },
            targets,
            thermal,
            cooling: CoolingEvidence {
                nodes: n(voters.len()) + 1,
                weight,
                voting_weight,
                needed,
                formed,
                voting,
            },
            voters: n(voters.len()),
            non_voters: n(self.view.peers.len().saturating_sub(voters.len())),
        }
    }

    /// A room command from the operator: the cluster layer checks it,
    /// applies it here (through [`Core::room_apply`]) and on every member,
    /// and answers with the report, which goes back as JSON.
    fn forward_room(
        &self,
        command: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    ) {
        let Some(handle) = self.cluster_handle.clone() else {
            let _ = reply.send(Err(
                "the cluster is disabled on this node; use POST /v1/shutdown/cancel or /v1/maintenance".into(),
            ));
            return;
        };
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let answer = match handle
                .send(cluster::Control::Room { command, reply: tx })
                .await
            {
                Err(_) => Err("the cluster layer has stopped".to_string()),
                // The members have 2 s to answer; the layer always replies.
                Ok(()) => match tokio::time::timeout(Duration::from_secs(6), rx).await {
                    Ok(Ok(Ok(report))) => serde_json::to_string(&report).map_err(|e| e.to_string()),
                    Ok(Ok(Err(e))) => Err(e),
                    _ => Err("the cluster layer did not answer; retry".to_string()),
                },
            };
            let _ = reply.send(answer);
        });
    }

    /// Apply a checked room command to this node's state machine, the same
    /// way as the node's own HTTP command, and say how it went. Every node
    /// logs who asked.
    async fn room_apply(
        &self,
        cmd: &cluster::room::RoomCommand,
        from: Option<libp2p::PeerId>,
        m: &Machine,
    ) -> cluster::room::RoomAck {
        use cluster::room::{Outcome, RoomAck, RoomAction};
        let (local, nothing) = match cmd.action {
            RoomAction::Cancel => (
                Command::CancelShutdown,
                !matches!(m.state, State::PreFail | State::Shutdown),
            ),
            RoomAction::Maintenance { duration } => (
                Command::Maintenance { duration },
                duration.is_zero() && m.state != State::Maintenance,
            ),
        };
        let (outcome, message) = if nothing {
            let what = match cmd.action {
                RoomAction::Cancel => "nothing to cancel",
                RoomAction::Maintenance { .. } => "not in maintenance",
            };
            (
                Outcome::NothingToDo,
                format!("{what}: state is {}", m.state),
            )
        } else {
            match control(&local, m, &self.event_tx, &self.cfg).await {
                Ok(msg) => (Outcome::Applied, msg),
                Err(msg) => (Outcome::Refused, msg),
            }
        };
        let from = from.map_or_else(|| "this node".to_string(), |p| p.to_base58());
        self.journal.record(
            unix_ms(),
            crate::journal::Event::Operator {
                action: format!("room: {}", cmd.action),
                requester: cmd.requester.clone(),
                via: from.clone(),
                outcome: match outcome {
                    Outcome::Applied => "applied",
                    Outcome::NothingToDo => "nothing to do",
                    Outcome::Refused => "refused",
                }
                .into(),
                message: message.clone(),
            },
            None,
        );
        tracing::warn!(
            id = %format!("{:016x}", cmd.id),
            action = %cmd.action,
            requester = %cmd.requester,
            via = %from,
            outcome = ?outcome,
            state = %m.state,
            answer = %message,
            "room command"
        );
        RoomAck {
            outcome,
            node: self.cfg.node.name.clone(),
            message,
            state: m.state.to_string(),
        }
    }

    fn forward_roster(
        &self,
        signed: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    ) {
        let Some(handle) = self.cluster_handle.clone() else {
            let _ = reply.send(Err("the cluster is disabled on this node".into()));
            return;
        };
        if self.cfg.cluster.operator_key.is_none() {
            let _ = reply.send(Err(
                "this node has no cluster.operator_key, so it takes no roster".into(),
            ));
            return;
        }
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let sent = handle
                .send(cluster::Control::Roster { signed, reply: tx })
                .await;
            let answer = match sent {
                Err(_) => Err("the cluster layer has stopped".to_string()),
                Ok(()) => match tokio::time::timeout(Duration::from_secs(3), rx).await {
                    Ok(Ok(a)) => a,
                    _ => Err("the cluster layer did not answer; retry".to_string()),
                },
            };
            let _ = reply.send(answer);
        });
    }

    fn user_increment(&mut self, name: &str, amount: i64) -> Result<String, String> {
        if crate::counter_store::BUILTIN.contains(&name) {
            return Err(format!(
                "{name} is a built-in counter maintained by the agent"
            ));
        }
        if !self.cfg.cluster.enabled {
            tracing::debug!("counters are local only: the cluster is disabled");
        }
        self.counters.add(name, CounterKind::PN, amount)?;
        let r = format!(
            "{name} {amount:+} on this node; local slot now {}",
            self.counters.local(name)
        );
        self.update(|_| {});
        Ok(r)
    }

    fn builtin(&mut self, name: &str, n: u64) {
        if n == 0 {
            return;
        }
        if let Err(e) =
            self.counters
                .add(name, CounterKind::G, i64::try_from(n).unwrap_or(i64::MAX))
        {
            tracing::error!(counter = name, error = %e, "cannot count");
        }
    }

    /// Built-in event counters from the state machine's transitions.
    fn count_transitions(&mut self) {
        let mut changed = false;
        for (from, to, reason, n) in self.fsm_stats.all_transitions() {
            let seen = self.seen_transitions.entry((from, to, reason)).or_insert(0);
            let new = n.saturating_sub(*seen);
            *seen = n;
            if new == 0 {
                continue;
            }
            let name = match (to, reason) {
                (State::Shutdown, _) => "shutdowns",
                (State::PreFail, Reason::Power) => "power_loss_events",
                (State::PreFail, Reason::Overheat | Reason::Cooling) => "overheat_events",
                _ => continue,
            };
            self.builtin(name, new);
            changed = true;
        }
        if changed {
            self.update(|_| {});
        }
    }

    /// The built-in probe failure counter follows the probe metrics.
    fn count_probe_failures(&mut self) {
        let Some(pm) = &self.power_metrics else {
            return;
        };
        let total: u64 = self
            .cfg
            .power
            .targets
            .iter()
            .map(|t| pm.failures_of(t))
            .sum();
        let new = total.saturating_sub(self.seen_probe_failures);
        self.seen_probe_failures = total;
        self.builtin("probe_failures", new);
    }
}

/// Are the producers delivering? `(sensors, power)`: each is fresh when its
/// last round is at most its limit old; no power probes configured
/// (`since_power` is `None`) counts as fresh.
pub fn producers_fresh(
    since_sensor: Duration,
    since_power: Option<Duration>,
    sensor_limit: Duration,
    power_limit: Duration,
) -> (bool, bool) {
    (
        since_sensor <= sensor_limit,
        since_power.is_none_or(|d| d <= power_limit),
    )
}

/// How long without a round of a producer before the watchdog starves:
/// three intervals plus the timeout (a round may take that long).
pub fn watchdog_limit(interval: Duration, timeout: Duration) -> Duration {
    interval.saturating_mul(3).saturating_add(timeout)
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// What alive peers report, in the state machine's terms. Freshness is the
/// cluster's liveness: only `alive` peers (record advanced within
/// `cluster.suspect_after`) vote.
///
/// Only [`ClusterView::voters`] count: alive, directly connected, at most
/// one per host address, so that minting identities buys no votes.
/// Power votes are counted per target ([`ClusterView::votes_on`]): on the
/// targets this node sees down (all of its targets while it sees power),
/// from the peers that probe them. The cooling quorum is weighted: a node
/// that votes by inlet or ambient air sensors weighs 2, others 1.
pub fn peer_view(
    view: &ClusterView,
    cfg: &FsmConfig,
    own: &[cluster::record::TargetObservation],
    policy: power::Policy,
) -> PeerView {
    let down: Vec<String> = own
        .iter()
        .filter(|o| !o.up)
        .map(|o| o.target.clone())
        .collect();
    let targets = if down.is_empty() {
        own.iter().map(|o| o.target.clone()).collect()
    } else {
        down
    };
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    // Only voters count, for the cooling quorum as for power: alive,
    // directly connected, one per host address (ClusterView::voters).
    let voters = view.voters();
    let votes = cluster::view::votes_among(&voters, &targets, policy);
    let mut pv = PeerView {
        fresh_peers: n(voters.len()),
        power_up: n(votes.up),
        power_down: n(votes.down),
        ..PeerView::default()
    };
    for p in voters {
        let w = if p.record.state.thermal.air { 2 } else { 1 };
        pv.weight = pv.weight.saturating_add(w);
        if peer_votes_cooling(&p.record.state.thermal, cfg) {
            pv.overheating = pv.overheating.saturating_add(1);
            pv.overheating_weight = pv.overheating_weight.saturating_add(w);
        }
    }
    pv
}

/// Does a peer's record vote "cooling lost"? Its own verdict when it sent
/// one (format 1.1), else the old rule (critical, or a trend at least
/// `heating_fast_c_per_min`).
pub fn peer_votes_cooling(t: &cluster::record::ThermalReport, cfg: &FsmConfig) -> bool {
    t.critical
        || t.vote
            .unwrap_or_else(|| t.trend.is_some_and(|c| c >= cfg.heating_fast_c_per_min))
}

/// The cluster layer's settings from the config.
pub fn cluster_config(cfg: &Config) -> anyhow::Result<cluster::ClusterConfig> {
    let c = &cfg.cluster;
    let parse = |key: &str, list: &[String]| -> anyhow::Result<Vec<libp2p::Multiaddr>> {
        list.iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| anyhow::anyhow!("cluster.{key}: {a:?}: {e}"))
            })
            .collect()
    };
    if let Some(e) = crate::config::cluster_trust_error(cfg) {
        anyhow::bail!(e);
    }
    let psk = match &c.psk_file {
        Some(p) => Some(
            cluster::load_psk(p).with_context(|| format!("cluster.psk_file {} (create it once with `coolmesh keygen --psk --out FILE` and copy the same file to every server)", p.display()))?,
        ),
        None => None,
    };
    let allowlist = if c.allowlist.is_empty() {
        None
    } else {
        Some(
            c.allowlist
                .iter()
                .map(|p| {
                    p.parse()
                        .map_err(|e| anyhow::anyhow!("cluster.allowlist: {p:?}: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
        )
    };
    let out = cluster::ClusterConfig {
        name: c.name.clone(),
        listen: parse("listen", &c.listen)?,
        bootstrap: parse("peers", &c.peers)?,
        mdns: c.mdns,
        mdns_query_interval: c.mdns_interval,
        psk,
        allowlist,
        operator: match &c.operator_key {
            Some(k) => Some(
                cluster::roster::parse_operator_key(k)
                    .map_err(|e| anyhow::anyhow!("cluster.operator_key: {e}"))?,
            ),
            None => None,
        },
        room_commands: c.room_commands,
        roster_path: c
            .operator_key
            .as_ref()
            .map(|_| cfg.node.state_dir.join(cluster::roster::ROSTER_FILE)),
        sync_interval: c.sync_interval,
        anti_entropy_interval: c.anti_entropy_interval,
        fanout: c.fanout,
        suspect_after: c.suspect_after,
        dead_after: c.dead_after,
        retention: c.retention,
        limits: c.limits,
        ..cluster::ClusterConfig::default()
    };
    out.validate()
        .map_err(|e| anyhow::anyhow!("[cluster]: {e}"))?;
    // libp2p reports a failed bind only later, as an event; check the fixed
    // TCP ports now so that a port in use is a clear startup error.
    for a in &out.listen {
        if let Some(sa) = tcp_socket_addr(a) {
            if sa.port() != 0 {
                std::net::TcpListener::bind(sa).map_err(|e| {
                    anyhow::anyhow!("cluster.listen {a}: cannot listen on {sa}: {e} (another agent running? pick another port)")
                })?;
            }
        }
    }
    Ok(out)
}

/// `/ip4/A/tcp/P` or `/ip6/A/tcp/P` as a socket address.
fn tcp_socket_addr(a: &libp2p::Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut it = a.iter();
    let ip: std::net::IpAddr = match it.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some((ip, port).into()),
        _ => None,
    }
}

/// Bring the registered counters up to the supervisor's and executor's counts.
fn sync_counters(metrics: &Metrics, fsm: &SupervisorStats, exec: &crate::shutdown::ExecStats) {
    for (from, to, reason, n) in fsm.all_transitions() {
        let c = metrics.fsm_transitions.with_label_values(&[
            from.as_str(),
            to.as_str(),
            reason.as_str(),
        ]);
        let have = c.get();
        if n > have {
            c.inc_by(n - have);
        }
    }
    let failures = crate::shutdown::ExecStats::get(&exec.command_failures);
    let have = metrics.shutdown_command_failures.get();
    if failures > have {
        metrics.shutdown_command_failures.inc_by(failures - have);
    }
    let unknown = crate::shutdown::ExecStats::get(&exec.outcome_unknown);
    let have = metrics.shutdown_command_outcome_unknown.get();
    if unknown > have {
        metrics
            .shutdown_command_outcome_unknown
            .inc_by(unknown - have);
    }
}

/// Answer an operator command against the current machine.
async fn control(
    cmd: &Command,
    m: &Machine,
    tx: &mpsc::Sender<Event>,
    cfg: &Config,
) -> Result<String, String> {
    let send = |ev: Event| async move {
        tx.send_timeout(ev, Duration::from_secs(2))
            .await
            .map_err(|_| "state machine busy; retry".to_string())
    };
    match cmd {
        Command::CancelShutdown => match m.state {
            State::PreFail => {
                send(Event::Cancel).await?;
                tracing::warn!(reason = %m.reason, "operator cancelled the pending shutdown");
                Ok(format!(
                    "pending shutdown ({}) cancelled; automatic shutdowns held for {}",
                    m.reason,
                    humantime::format_duration(cfg.shutdown.cancel_hold)
                ))
            }
            State::Shutdown => {
                Err("the shutdown command has already been issued; it cannot be cancelled".into())
            }
            s => Err(format!("nothing to cancel: state is {s}")),
        },
        Command::Maintenance { duration } if duration.is_zero() => {
            if m.state != State::Maintenance {
                return Err(format!("not in maintenance: state is {}", m.state));
            }
            send(Event::EndMaintenance).await?;
            tracing::warn!("operator ended maintenance");
            Ok("maintenance ended".into())
        }
        Command::Maintenance { duration } => {
            if m.state == State::Shutdown {
                return Err("the shutdown command has already been issued".into());
            }
            // The window is measured on the state machine's clock: it
            // computes the end when it handles the request.
            send(Event::MaintenanceFor {
                duration: *duration,
            })
            .await?;
            let d = humantime::format_duration(*duration);
            tracing::warn!(duration = %d, "operator started maintenance: automatic shutdowns held");
            Ok(format!("maintenance for {d}; automatic shutdowns held"))
        }
        Command::IncrementCounter { .. } | Command::SetRoster { .. } | Command::Room { .. } => {
            Err("handled by the core loop".into())
        }
    }
}

/// The state machine's timers from the config.
pub fn fsm_config(cfg: &Config) -> FsmConfig {
    let s = &cfg.shutdown;
    FsmConfig {
        power_grace: s.grace,
        cooling_grace: s.cooling_grace,
        overheat_sustain: s.overheat_sustain,
        overheat_grace: s.overheat_grace,
        shutdown_duration: s.duration,
        recovery_probes: s.recovery_probes,
        cancel_hold: s.cancel_hold,
        heating_fast_c_per_min: s.heating_rate,
        observe_interval: if cfg.power.targets.is_empty() {
            cfg.sensors.interval
        } else {
            cfg.power.interval
        },
        prediction_floor: FsmConfig::default().prediction_floor.min(s.grace),
        // The first probe round starts at once; its answer comes within the
        // probe timeout.
        restore_wait: cfg.power.timeout + Duration::from_secs(2),
        ..FsmConfig::default()
    }
}

/// The cooling detector's settings from the config.
pub fn heat_config(cfg: &Config) -> crate::heating::HeatConfig {
    let s = &cfg.shutdown;
    crate::heating::HeatConfig {
        heating_rate: s.heating_rate,
        horizon: s.cooling_horizon,
        window: cfg.sensors.trend_window,
        load_step: s.load_step,
        load_settle: s.load_settle,
        ..crate::heating::HeatConfig::default()
    }
}

/// The executor's settings from the config.
pub fn shutdown_config(cfg: &Config) -> crate::shutdown::ShutdownConfig {
    let s = &cfg.shutdown;
    crate::shutdown::ShutdownConfig {
        command: s.command.clone(),
        pre_command: (!s.pre_command.is_empty()).then(|| s.pre_command.clone()),
        pre_command_timeout: s.pre_command_timeout,
        command_timeout: s.command_timeout,
        dry_run: s.dry_run,
        dry_run_marker: s.dry_run_marker.clone(),
        ..crate::shutdown::ShutdownConfig::default()
    }
}

/// Wall-clock unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod watchdog_tests {
    use super::*;

    #[test]
    fn the_watchdog_starves_when_a_producer_stops() {
        let s = Duration::from_secs;
        // Limits at the defaults: sensors every 2 s (timeout 1 s), probes
        // every 5 s +10% (timeout 1 s).
        let sl = watchdog_limit(s(2), s(1));
        let pl = watchdog_limit(Duration::from_millis(5500), s(1));
        assert_eq!((sl, pl), (s(7), Duration::from_millis(17_500)));
        // (since sensor, since power, expected (sensors, power))
        let cases = [
            (s(1), Some(s(4)), (true, true)),
            (s(7), Some(s(17)), (true, true)),
            (s(8), Some(s(1)), (false, true)), // the sampler hangs or died
            (s(1), Some(s(18)), (true, false)), // the probe task hangs or died
            (s(1), None, (true, true)),        // no power targets
            (s(60), None, (false, true)),
        ];
        for (since_sensor, since_power, want) in cases {
            assert_eq!(
                producers_fresh(since_sensor, since_power, sl, pl),
                want,
                "{since_sensor:?} {since_power:?}"
            );
        }
    }

    #[test]
    fn the_unit_orders_after_time_sync_and_lets_the_command_survive_a_restart() {
        let unit = include_str!("../../deploy/coolmesh.service");
        let line = |key: &str| {
            unit.lines()
                .filter(|l| l.starts_with(key))
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        };
        assert!(
            line("After=")
                .iter()
                .any(|l| l.contains("time-sync.target")),
            "{unit}"
        );
        assert!(
            line("Wants=")
                .iter()
                .any(|l| l.contains("time-sync.target")),
            "{unit}"
        );
        assert_eq!(line("KillMode="), vec!["KillMode=process".to_string()]);
        assert!(line("WatchdogSec=").len() == 1);
    }
}

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
//! - cluster -> `watch<ClusterView>`; core -> `watch<LocalState>` (the
//!   cluster pushes a changed state to every member: the one path by which
//!   peers hear of a transition)
//! - HTTP -> `mpsc<ControlRequest>` with a oneshot reply
//!
//! Modules:
//!
//! - `mod.rs` (this file): the wiring: builds every part from the config,
//!   starts the tasks, runs until shutdown and stops them in order; the
//!   operator commands the state machine answers (`control`).
//! - `core`: the core loop, the only writer of the snapshot the
//!   exporter serves, of this node's counter slots and of the record peers
//!   see (its own map).
//! - `settings`: the config turned into each part's runtime settings.
//! - `reload`: SIGHUP and `POST /-/reload`: what a new config changes at
//!   runtime, what takes a restart, and delivering it (`watch` channels to
//!   the sampler, the state machine and the core loop).

mod core;
pub mod reload;
mod settings;

pub use reload::{ConfigLoader, LogLevelSetter};
pub use settings::{cluster_config, fsm_config, heat_config, shutdown_config};

use self::core::Core;
use crate::cluster::{self, ClusterView, LocalState};
use crate::config::{normalize_listen, Config, SourceKind};
use crate::counter_store::CounterStore;
use crate::fsm::{Event, Machine, State};
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
            SourceKind::LmSensors => lm_sensors_from_config(s)?,
            SourceKind::Ipmi => {
                let c = s
                    .ipmi
                    .source_config()
                    .map_err(|e| anyhow::anyhow!("sensors.ipmi_host: {e}"))?;
                if let Some(f) = &s.ipmi.password_file {
                    crate::perms::warn_secret_file("sensors.ipmi_password_file", f);
                }
                Arc::new(sources::ipmi::Ipmi::new(c))
            }
        };
        out.push(src);
    }
    Ok(out)
}

/// Build the lm-sensors source from the `[sensors]` config: a saved file
/// when `lm_sensors_file` is set, else the `lm_sensors_command`.
fn lm_sensors_from_config(s: &crate::config::SensorsConfig) -> anyhow::Result<Arc<dyn Source>> {
    let format: sources::lm_sensors::Format = s
        .lm_sensors_format
        .parse()
        .map_err(|e| anyhow::anyhow!("sensors.lm_sensors_format: {e}"))?;
    if let Some(path) = &s.lm_sensors_file {
        return Ok(Arc::new(sources::lm_sensors::LmSensors::file(path, format)));
    }
    let (program, args) = s
        .lm_sensors_command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("sensors.lm_sensors_command is empty"))?;
    Ok(Arc::new(sources::lm_sensors::LmSensors::command_with_args(
        program,
        args.iter().cloned(),
        format,
    )))
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

/// How the running agent reloads its config (SIGHUP, `POST /-/reload`).
pub struct ReloadHooks {
    /// Reads the config file again, with the command line's overrides.
    pub load: ConfigLoader,
    /// Applies a new `log.level`; `None`: the level takes a restart.
    pub log_level: Option<LogLevelSetter>,
}

/// [`run`] with the web config already loaded (the binary loads it first
/// so that a bad one exits with the config error status). Without reload
/// hooks, SIGHUP and `POST /-/reload` answer that there is no file to read.
pub async fn run_with_web(
    cfg: Config,
    web: Option<Arc<WebConfig>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with_reload(cfg, web, None, shutdown).await
}

/// The address this agent publishes for Prometheus (record key 12,
/// `GET /v1/http_sd`): `http.advertise`; else the bound address when it is
/// a specific IP (loopback included: a loopback agent is only scrapable
/// from its own host, and says so); on a wildcard address, the source
/// address the kernel picks toward the first bootstrap peer of
/// `cluster.peers` (the network the room talks over), else toward the
/// default route, with the bound port; else the hostname and the port.
/// No packet is sent: connecting a UDP socket only selects a route.
pub fn advertised_http(cfg: &Config, bound: std::net::SocketAddr) -> Option<String> {
    if let Some(a) = &cfg.http.advertise {
        return Some(a.clone());
    }
    let ip = bound.ip();
    if !ip.is_unspecified() {
        return Some(bound.to_string());
    }
    let via_route = |toward: std::net::SocketAddr| -> Option<std::net::IpAddr> {
        let any: std::net::SocketAddr = if toward.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = std::net::UdpSocket::bind(any).ok()?;
        sock.connect(toward).ok()?;
        let local = sock.local_addr().ok()?.ip();
        (!local.is_unspecified()).then_some(local)
    };
    let peers = cfg
        .cluster
        .peers
        .iter()
        .filter_map(|p| p.parse::<libp2p::Multiaddr>().ok())
        .filter_map(|m| settings::tcp_socket_addr(&m));
    // 192.0.2.1 (TEST-NET-1) stands for "anywhere": only its route counts.
    let default_route = std::net::SocketAddr::from(([192, 0, 2, 1], 9));
    let picked = peers
        .chain(std::iter::once(default_route))
        .filter(|t| t.is_ipv4() == ip.is_ipv4() || ip.is_ipv6())
        .find_map(via_route);
    let addr = match picked {
        Some(local) => std::net::SocketAddr::new(local, bound.port()).to_string(),
        None => format!("{}:{}", cfg.node.name, bound.port()),
    };
    crate::cluster::record::valid_http_address(&addr).then_some(addr)
}

/// [`run_with_web`], reloading the config with `hooks` on SIGHUP and
/// `POST /-/reload`.
pub async fn run_with_reload(
    cfg: Config,
    web: Option<Arc<WebConfig>>,
    hooks: Option<ReloadHooks>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // First of all: from here on a SIGHUP (`systemctl reload` right after
    // start) is caught instead of stopping the agent, its default action;
    // it is served once the reload task runs.
    let hangup = hangup_signal();
    let addr = normalize_listen(&cfg.http.listen_address)
        .map_err(|e| anyhow::anyhow!("http.listen_address: {e}"))?;
    let sources = build_sources(&cfg)?;
    let token = coolmesh_exporter::auth::TokenCell::new(load_token(&cfg)?);
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
    let local_peer = keypair.public().to_peer_id();
    let peer_id = local_peer.to_base58();
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
    let reload_metrics =
        reload::ReloadMetrics::register(&metrics.registry).context("registering reload metrics")?;
    let sd_missing = prometheus::IntGauge::new(
        "coolmesh_http_sd_members_without_address",
        "Members left out of GET /v1/http_sd because their record has no HTTP address (agents older than the field).",
    )
    .context("http_sd metric")?;
    metrics
        .registry
        .register(Box::new(sd_missing.clone()))
        .context("registering http_sd metric")?;

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
    let bound = listener.local_addr().unwrap_or(addr);
    let http_advertise = advertised_http(&cfg, bound);
    tracing::info!(address = %bound, advertise = http_advertise.as_deref().unwrap_or("none"), peer_id = %peer_id, %security, "serving {scheme}");
    if http_advertise.is_none() {
        // Only on a wildcard listen without a route and with a node name
        // that is no DNS name: Prometheus' discovery leaves this node out.
        tracing::warn!(node = %cfg.node.name, "no usable HTTP address to publish for GET /v1/http_sd; set http.advertise");
    }
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
        token: token.clone(),
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
    // Reloads reach the running parts through these (agent::reload).
    let (live_sampler_tx, live_sampler_rx) = watch::channel(reload::sampler_live(&cfg));
    let (live_fsm_tx, live_fsm_rx) = watch::channel(fsm_config(&cfg));
    let (live_cfg_tx, live_cfg_rx) = watch::channel(Arc::new(cfg.clone()));
    let sampler = tokio::spawn(crate::sampler::run_live(
        sources,
        sampler_cfg,
        live_sampler_rx,
        sensor_tx,
        cancel.clone().cancelled_owned(),
    ));

    // Power probes: a target that can never work (bad URL, no ICMP
    // permission, missing exec program) stops the agent at startup with the
    // fix in the message, rather than looking like a permanent outage.
    let (power_tx, power_rx) = mpsc::channel::<PowerObservation>(8);
    let mut power_metrics = None;
    let mut power_setup_tx = None;
    let power_task = if cfg.power.targets.is_empty() {
        drop(power_tx);
        None
    } else {
        let setup = reload::PowerSetup::from_config(&cfg)?;
        let pm = power::PowerMetrics::new().context("power metrics")?;
        pm.register(&metrics.registry)
            .context("registering power metrics")?;
        power_metrics = Some(pm.clone());
        // A reload sends rebuilt probes here (agent::reload).
        let (setup_tx, setup_rx) = watch::channel(setup);
        power_setup_tx = Some(setup_tx);
        Some(tokio::spawn(reload::run_power(
            setup_rx,
            pm,
            power_tx,
            cancel.clone(),
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

    // Ordered power-on: only a node that may wake others runs the
    // controller (it reads the view; the record carries the MAC and the
    // flag whatever this node does).
    if cfg.power_on.enabled && cfg.cluster.enabled {
        let pm = crate::power_on::PowerOnMetrics::register(&metrics.registry)
            .context("registering power-on metrics")?;
        tokio::spawn(crate::power_on::run(
            cfg.power_on.clone(),
            local_peer,
            view_rx.clone(),
            pm,
            cancel.clone().cancelled_owned(),
        ));
    }

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
    .map_err(|e| anyhow::anyhow!("state machine config: {}", e.0))?
    .with_config_updates(live_fsm_rx);
    let machine_rx = supervisor.subscribe();

    let fsm_stats = supervisor.stats();
    let (event_tx, event_rx) = mpsc::channel::<Event>(32);
    let fsm_task = tokio::spawn(supervisor.run(event_rx, cancel.clone().cancelled_owned()));
    if cfg.shutdown.dry_run {
        tracing::warn!("dry-run: shutdown commands are logged, not run");
    }

    // Reloads: one at a time, in order (bounded: one more may wait while one
    // runs; a further `POST /-/reload` is answered "retry", a further SIGHUP
    // joins the waiting reload), from SIGHUP and from the core.
    let (reload_tx, reload_rx) = mpsc::channel::<reload::ReloadRequest>(1);
    let reload_task = match hooks {
        Some(h) => {
            let targets = reload::Targets {
                config: live_cfg_tx,
                fsm: live_fsm_tx,
                sampler: live_sampler_tx,
                token,
                power: power_setup_tx,
                log_level: h.log_level,
                metrics: reload_metrics,
            };
            Some(tokio::spawn(reload::run(
                h.load,
                cfg.clone(),
                reload_rx,
                targets,
                cancel.clone().cancelled_owned(),
            )))
        }
        None => {
            drop((
                live_cfg_tx,
                live_fsm_tx,
                live_sampler_tx,
                reload_metrics,
                power_setup_tx,
            ));
            Some(tokio::spawn(no_reload(reload_rx)))
        }
    };
    watch_hangup(hangup, reload_tx.clone(), cancel.clone());

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
        battery: None,
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
        reload_tx,
        http_advertise,
        sd_missing,
    };
    let result = core
        .run(
            shutdown,
            sensor_rx,
            power_rx,
            machine_rx,
            view_rx,
            ctl_rx,
            room_rx,
            fsm_task,
            live_cfg_rx,
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
        if let Some(r) = reload_task {
            let _ = r.await;
        }
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

/// Answer reload requests of an agent started without a config file.
async fn no_reload(mut rx: mpsc::Receiver<reload::ReloadRequest>) {
    while let Some(req) = rx.recv().await {
        let e = "this agent was started without a config file; there is nothing to reload";
        tracing::warn!("{e}");
        if let Some(reply) = req {
            let _ = reply.send(Err(e.to_string()));
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

/// Catch SIGHUP from now on (the OS handler is installed by this call).
fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; reload with POST /-/reload");
                None
            }
        }
    }
}

/// SIGHUP (`systemctl reload coolmesh`, `kill -HUP`) reloads the config;
/// without a handler its default action would stop the agent. A SIGHUP
/// that finds a reload already waiting joins it (that reload reads the
/// file after this signal anyway).
fn watch_hangup(
    hangup: Hangup,
    reload: mpsc::Sender<reload::ReloadRequest>,
    cancel: CancellationToken,
) {
    #[cfg(unix)]
    if let Some(mut hup) = hangup {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = hup.recv() => {
                        if r.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP received: reloading the config");
                        if reload.try_send(None).is_err() {
                            tracing::info!("a reload is already waiting; this SIGHUP joins it");
                        }
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop((hangup, reload, cancel));
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
        Command::IncrementCounter { .. }
        | Command::SetRoster { .. }
        | Command::Room { .. }
        | Command::Reload => Err("handled by the core loop".into()),
    }
}

#[cfg(test)]
mod advertise_tests {
    use super::*;

    #[test]
    fn the_advertised_address_is_usable_for_prometheus() {
        let sa = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        let mut cfg = Config::default();
        // A specific listen address is published as it is, loopback too
        // (only scrapable from this host, and visibly so).
        assert_eq!(
            advertised_http(&cfg, sa("10.1.2.3:10027")).as_deref(),
            Some("10.1.2.3:10027")
        );
        assert_eq!(
            advertised_http(&cfg, sa("[::1]:4000")).as_deref(),
            Some("[::1]:4000")
        );
        // A wildcard: the address toward the room's bootstrap peer, with
        // the bound port (here the peer is on loopback).
        cfg.cluster.peers = vec!["/ip4/127.0.0.1/tcp/9877".into()];
        assert_eq!(
            advertised_http(&cfg, sa("0.0.0.0:4000")).as_deref(),
            Some("127.0.0.1:4000")
        );
        // No peer: the default route's address or, without one, the
        // hostname; never the wildcard itself.
        cfg.cluster.peers.clear();
        cfg.node.name = "srv12".into();
        let a = advertised_http(&cfg, sa("0.0.0.0:4000")).expect("an address");
        assert!(a.ends_with(":4000") && !a.starts_with("0.0.0.0"), "{a}");
        assert!(crate::cluster::record::valid_http_address(&a), "{a}");
        // http.advertise wins over everything.
        cfg.http.advertise = Some("srv12.room.example:10027".into());
        assert_eq!(
            advertised_http(&cfg, sa("0.0.0.0:4000")).as_deref(),
            Some("srv12.room.example:10027")
        );
    }
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
        let unit = include_str!("../../../deploy/coolmesh.service");
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
        // `systemctl reload coolmesh` sends SIGHUP, which reloads the
        // config (agent::reload) instead of stopping the agent.
        assert_eq!(
            line("ExecReload="),
            vec!["ExecReload=/bin/kill -HUP $MAINPID".to_string()]
        );
    }
}

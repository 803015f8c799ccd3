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
//!   starts the tasks, runs until shutdown and stops them in order.
//! - `parts`: what is built from the config before anything runs (the
//!   thermal sources, the operator token, the web config, the build
//!   metadata, the check of the shutdown programs).
//! - `advertise`: the HTTP address published for Prometheus' discovery.
//! - `control`: the operator commands the state machine answers, and its
//!   counters brought into the metrics.
//! - `liveness`: are the producers still delivering (the watchdog's limit).
//! - `signals`: SIGHUP turned into reloads; the answer of an agent started
//!   without a config file.
//! - `core`: the core loop, the only writer of the snapshot the
//!   exporter serves, of this node's counter slots and of the record peers
//!   see (its own map).
//! - `settings`: the config turned into each part's runtime settings.
//! - `reload`: SIGHUP and `POST /-/reload`: what a new config changes at
//!   runtime, what takes a restart, and delivering it (`watch` channels to
//!   the sampler, the state machine and the core loop).

mod advertise;
mod control;
mod core;
mod liveness;
mod parts;
pub mod reload;
mod settings;
mod signals;

pub use advertise::advertised_http;
pub use liveness::{producers_fresh, watchdog_limit};
pub use parts::{build_info, build_sources, load_token, load_web_config};
pub use reload::{ConfigLoader, LogLevelSetter};
pub use settings::{cluster_config, fsm_config, heat_config, shutdown_config};

use self::control::{control, sync_counters};
use self::core::Core;
use self::parts::check_shutdown_programs;
use self::signals::{hangup_signal, no_reload, watch_hangup};
use crate::cluster::{self, ClusterView, LocalState};
use crate::config::{normalize_listen, Config};
use crate::counter_store::CounterStore;
use crate::fsm::Event;
use crate::power::{self, PowerObservation};
use crate::sampler::{SamplerConfig, SensorState};
use crate::supervisor::{Supervisor, SystemClock};
use anyhow::Context;
use coolmesh_exporter::{App, ControlRequest, Limits, Metrics, Snapshot, WebConfig};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

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

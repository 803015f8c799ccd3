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

mod core;
mod settings;

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
        Command::IncrementCounter { .. } | Command::SetRoster { .. } | Command::Room { .. } => {
            Err("handled by the core loop".into())
        }
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
    }
}

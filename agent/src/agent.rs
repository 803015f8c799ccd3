//! `coolmesh agent`: wires sources, the sampler, the HTTP server and the
//! core loop together, and stops them all on shutdown.
//!
//! The core loop is the only owner of the snapshot: every input (a sensor
//! round, an operator command, a timer tick) arrives on a bounded channel and
//! is folded into a new snapshot in one place.

use crate::config::{normalize_listen, Config, SourceKind};
use crate::fsm::{Event, FsmConfig, Input, Machine, Millis, PeerView, State};
use crate::power::{self, PowerObservation};
use crate::sampler::{SamplerConfig, SensorState};
use crate::sources::{self, Source};
use crate::supervisor::{Supervisor, SystemClock};
use anyhow::Context;
use coolmesh_exporter::auth::Token;
use coolmesh_exporter::Command;
use coolmesh_exporter::{App, BuildInfo, ControlRequest, Limits, Metrics, Snapshot};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Build metadata of this binary.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: option_env!("COOLMESH_REVISION").unwrap_or("unknown"),
        rustc: option_env!("COOLMESH_RUSTC").unwrap_or("unknown"),
    }
}

/// Instantiate the configured sources, in configured order.
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
    Token::from_file_content(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("http.token_file {}: {e}", path.display()))
}

/// Run the agent until `shutdown` completes.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let addr = normalize_listen(&cfg.http.listen_address)
        .map_err(|e| anyhow::anyhow!("http.listen_address: {e}"))?;
    let sources = build_sources(&cfg)?;
    let token = load_token(&cfg)?;
    let cancel = CancellationToken::new();

    let initial = Snapshot {
        node: cfg.node.name.clone(),
        ..Default::default()
    };
    let (snap_tx, snap_rx) = watch::channel(Arc::new(initial));
    let metrics = Metrics::new(
        &build_info(),
        snap_rx.clone(),
        coolmesh_exporter::collector::DEFAULT_MAX_PEER_SERIES,
    )
    .context("registering metrics")?;
    metrics.set_identity(&cfg.node.name, "", "");

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (http.listen_address)"))?;
    tracing::info!(address = %listener.local_addr().unwrap_or(addr), "serving HTTP");
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlRequest>(16);
    let limits = Limits {
        max_connections: cfg.http.max_connections,
        ..Limits::default()
    };
    let app = Arc::new(App {
        metrics: metrics.clone(),
        snapshot: snap_rx.clone(),
        control: Some(ctl_tx),
        token,
        limits,
    });
    let http = tokio::spawn(coolmesh_exporter::serve(
        listener,
        app,
        cancel.clone().cancelled_owned(),
    ));

    let (sensor_tx, mut sensor_rx) = watch::channel(SensorState::default());
    let sampler_cfg = SamplerConfig {
        interval: cfg.sensors.interval,
        timeout: cfg.sensors.timeout,
        trend_window: cfg.sensors.trend_window,
        thresholds: cfg.sensors.thresholds.clone(),
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
    let (power_tx, mut power_rx) = mpsc::channel::<PowerObservation>(8);
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
    let mut power_open = power_task.is_some();

    // The state machine. Its directory must exist and be ours before
    // anything can go wrong: the deadline and the exactly-once record live
    // there.
    std::fs::create_dir_all(&cfg.node.state_dir).with_context(|| {
        format!(
            "node.state_dir {}: cannot create",
            cfg.node.state_dir.display()
        )
    })?;
    let fsm_cfg = fsm_config(&cfg);
    let fsm_cfg_view = fsm_cfg.clone();
    let exec_stats = Arc::new(crate::shutdown::ExecStats::default());
    let executor = crate::shutdown::Executor::with_stats(shutdown_config(&cfg), exec_stats.clone());
    let supervisor = Supervisor::new(fsm_cfg, executor, &cfg.node.state_dir, SystemClock::new())
        .map_err(|e| anyhow::anyhow!("state machine config: {}", e.0))?;
    let mut machine_rx = supervisor.subscribe();
    let fsm_stats = supervisor.stats();
    let (event_tx, event_rx) = mpsc::channel::<Event>(32);
    let mut fsm_task = tokio::spawn(supervisor.run(event_rx, cancel.clone().cancelled_owned()));
    let dry_run = cfg.shutdown.dry_run;
    if dry_run {
        tracing::warn!("dry-run: shutdown commands are logged, not run");
    }

    crate::watchdog::ready();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut thermal = crate::thermal::ThermalSummary::default();
    let power_configured = power_task.is_some();
    let mut result = Ok(());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = sensor_rx.changed() => {
                if r.is_err() { break; }
                let s = sensor_rx.borrow_and_update().clone();
                thermal = s.thermal;
                let heating = fsm_cfg_view.is_heating(&thermal);
                update(&snap_tx, |snap| {
                    crate::snapshot::apply_sensors(snap, &s);
                    crate::snapshot::apply_votes(snap, heating);
                });
                // Without power targets the sensor round is the observation;
                // with them, each probe round is (it carries the latest
                // thermal summary), so recovery streaks count probes only.
                if !power_configured {
                    observe(&event_tx, Input { power: None, thermal, peers: PeerView::default() });
                }
            }
            obs = power_rx.recv(), if power_open => {
                let Some(obs) = obs else { power_open = false; continue };
                let heating = fsm_cfg_view.is_heating(&thermal);
                update(&snap_tx, |snap| {
                    crate::snapshot::apply_power(snap, &cfg.power.policy, &obs);
                    crate::snapshot::apply_votes(snap, heating);
                });
                observe(&event_tx, Input { power: Some(obs.up), thermal, peers: PeerView::default() });
            }
            r = machine_rx.changed() => {
                if r.is_err() { continue; }
                let m = machine_rx.borrow_and_update().clone();
                update(&snap_tx, |snap| crate::snapshot::apply_machine(snap, &m, &fsm_cfg_view, dry_run));
                sync_counters(&metrics, &fsm_stats, &exec_stats);
            }
            Some(req) = ctl_rx.recv() => {
                let m = machine_rx.borrow().clone();
                let answer = control(&req.command, &m, &event_tx, &cfg).await;
                let _ = req.reply.send(answer);
            }
            done = &mut fsm_task => {
                // The state machine must never stop on its own; without it
                // the agent is not protecting anything. Exit so systemd
                // restarts us (the persisted deadline survives).
                result = Err(anyhow::anyhow!("the state machine stopped unexpectedly: {done:?}"));
                break;
            }
            _ = tick.tick() => {
                // Feed systemd's watchdog only while the core loop runs and
                // the state machine task is alive.
                crate::watchdog::ping();
            }
        }
    }
    tracing::info!("shutting down");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(1500), async {
        let _ = http.await;
        let _ = sampler.await;
        if let Some(p) = power_task {
            let _ = p.await;
        }
        if !fsm_task.is_finished() {
            let _ = fsm_task.await;
        }
    })
    .await;
    result
}

/// Replace the snapshot with a modified copy.
fn update(tx: &watch::Sender<Arc<Snapshot>>, f: impl FnOnce(&mut Snapshot)) {
    let mut snap = (**tx.borrow()).clone();
    f(&mut snap);
    snap.updated_ms = unix_ms();
    tx.send_replace(Arc::new(snap));
}

/// Hand an observation to the state machine. The channel is bounded; if the
/// machine is behind, this observation is dropped (the next one supersedes
/// it) rather than queueing stale data.
fn observe(tx: &mpsc::Sender<Event>, input: Input) {
    if let Err(e) = tx.try_send(Event::Observe(input)) {
        tracing::warn!(error = %e, "state machine busy; observation dropped");
    }
}

/// Bring the registered counters up to the supervisor's and executor's counts.
fn sync_counters(
    metrics: &Metrics,
    fsm: &crate::supervisor::SupervisorStats,
    exec: &crate::shutdown::ExecStats,
) {
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
            let until = Millis(unix_ms()).plus(*duration);
            send(Event::Maintenance { until }).await?;
            tracing::warn!(until = %until, "operator started maintenance: automatic shutdowns held");
            Ok(format!(
                "maintenance until {until}; automatic shutdowns held"
            ))
        }
        Command::IncrementCounter { .. } => {
            Err("counters need the cluster layer, which this build does not run yet".into())
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
        ..FsmConfig::default()
    }
}

/// The executor's settings from the config.
pub fn shutdown_config(cfg: &Config) -> crate::shutdown::ShutdownConfig {
    let s = &cfg.shutdown;
    crate::shutdown::ShutdownConfig {
        command: s.command.clone(),
        pre_command: (!s.pre_command.is_empty()).then(|| s.pre_command.clone()),
        pre_command_timeout: s.pre_command_timeout,
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

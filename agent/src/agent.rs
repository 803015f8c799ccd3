//! `coolmesh agent`: wires sources, the sampler, the HTTP server and the
//! core loop together, and stops them all on shutdown.
//!
//! The core loop is the only owner of the snapshot: every input (a sensor
//! round, an operator command, a timer tick) arrives on a bounded channel and
//! is folded into a new snapshot in one place.

use crate::config::{normalize_listen, Config, SourceKind};
use crate::power::{self, PowerObservation};
use crate::sampler::{SamplerConfig, SensorState};
use crate::sources::{self, Source};
use anyhow::Context;
use coolmesh_exporter::auth::Token;
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

    crate::watchdog::ready();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = sensor_rx.changed() => {
                if r.is_err() { break; }
                let s = sensor_rx.borrow_and_update().clone();
                let mut snap = (**snap_tx.borrow()).clone();
                crate::snapshot::apply_sensors(&mut snap, &s);
                snap.updated_ms = unix_ms();
                snap_tx.send_replace(Arc::new(snap));
            }
            obs = power_rx.recv(), if power_open => {
                let Some(obs) = obs else { power_open = false; continue };
                let mut snap = (**snap_tx.borrow()).clone();
                crate::snapshot::apply_power(&mut snap, &cfg.power.policy, &obs);
                snap.updated_ms = unix_ms();
                snap_tx.send_replace(Arc::new(snap));
            }
            Some(req) = ctl_rx.recv() => {
                let _ = req.reply.send(Err("the state machine is not configured in this build".into()));
            }
            _ = tick.tick() => {
                // The loop is alive: keep systemd's watchdog fed.
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
    })
    .await;
    Ok(())
}

/// Wall-clock unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

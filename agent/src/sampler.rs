//! The sampler: reads every thermal source on an interval, each under its
//! own timeout and concurrently, so a slow or hung source is reported down
//! without delaying the others, the state machine or the HTTP server.
//!
//! Each round publishes a [`SensorState`] on a `watch` channel: the merged
//! readings (after threshold rules, de-duplicated by chip and sensor, first
//! configured source wins), per-source status, and the thermal summary with
//! its trend. A failed source contributes no readings that round: stale
//! values are never presented as current; its `source_up` goes to 0 instead.

use crate::clock::unix_ms;
use crate::heating::{HeatConfig, HeatTracker, RoleRule};
use crate::sources::Source;
use crate::thermal::{apply_thresholds, ThresholdRule};
use crate::thermal::{Reading, ThermalSummary};
use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The health of one source in the last round (the exporter's model:
/// one type from the sampler to `/metrics`).
pub use coolmesh_exporter::model::SourceStatus;

/// What one round produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SensorState {
    /// Completed rounds; 0 before the first.
    pub round: u64,
    /// Merged plausible readings.
    pub readings: Vec<Reading>,
    /// Per-source status, in configured order.
    pub sources: Vec<SourceStatus>,
    /// Summary including the trend.
    pub thermal: ThermalSummary,
}

/// Sampler settings.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Per-source timeout.
    pub timeout: Duration,
    /// Trend regression window.
    pub trend_window: Duration,
    /// Threshold rules.
    pub thresholds: Vec<ThresholdRule>,
    /// Sensor role rules (`[[sensors.roles]]`).
    pub roles: Vec<RoleRule>,
    /// The cooling detector's settings (its `window` is the trend window).
    pub heat: HeatConfig,
    /// Where the CPU load comes from.
    pub load: LoadSource,
}

/// The sampler's settings a config reload changes (`agent::reload`): the
/// rest of [`SamplerConfig`] (sources, cadence, window, load source) is
/// fixed for the life of the task.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerLive {
    /// Threshold rules.
    pub thresholds: Vec<ThresholdRule>,
    /// Sensor role rules.
    pub roles: Vec<RoleRule>,
    /// The cooling detector's settings; its `window` is not taken (the
    /// history's size is fixed at start).
    pub heat: HeatConfig,
}

/// Where the sampler reads this node's CPU load, which tells a workload
/// step from a cooling failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LoadSource {
    /// The system's CPU usage (all CPUs) through `sysinfo`.
    #[default]
    System,
    /// A file holding the load as a fraction (`0.85`) or a percentage
    /// (`85%`): simulations, tests and the demo.
    File(PathBuf),
    /// No load information: component heating is judged by its shape alone.
    None,
}

/// Reads the CPU load each round.
struct LoadReader {
    source: LoadSource,
    sys: Option<sysinfo::System>,
}

impl LoadReader {
    fn new(source: LoadSource) -> Self {
        let sys = if matches!(source, LoadSource::System) {
            match sysinfo::System::new() {
                Ok(mut s) => {
                    s.refresh_cpu_usage();
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the CPU load; component heating is judged by its shape alone");
                    None
                }
            }
        } else {
            None
        };
        LoadReader { source, sys }
    }

    /// The load now (0..1), or `None` when unknown. Never fails: an
    /// unreadable load file is "unknown", which only means that component
    /// heating is judged by its shape alone.
    fn read(&mut self) -> Option<f64> {
        match &self.source {
            LoadSource::None => None,
            LoadSource::File(p) => parse_load(&std::fs::read_to_string(p).ok()?),
            LoadSource::System => {
                let s = self.sys.as_mut()?;
                s.refresh_cpu_usage();
                let v = f64::from(s.global_cpu_usage()) / 100.0;
                v.is_finite().then_some(v.clamp(0.0, 1.0))
            }
        }
    }
}

/// `0.85` or `85%` as a fraction in 0..1; `None` for anything else.
pub fn parse_load(text: &str) -> Option<f64> {
    let t = text.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => t.parse::<f64>().ok()?,
    };
    (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
}

/// Read every source once, concurrently, each under `timeout`.
pub async fn read_all(
    sources: &[Arc<dyn Source>],
    timeout: Duration,
    rules: &[ThresholdRule],
) -> (Vec<Reading>, Vec<SourceStatus>) {
    let reads = sources.iter().map(|s| {
        let s = s.clone();
        async move {
            let start = Instant::now();
            let name = s.name().to_string();
            let r = tokio::time::timeout(timeout, s.read()).await;
            let duration = start.elapsed();
            let r = match r {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("timed out after {timeout:?}")),
            };
            (name, duration, r)
        }
    });
    let results = futures::future::join_all(reads).await;
    let mut readings = Vec::new();
    let mut statuses = Vec::new();
    let mut seen = HashSet::new();
    let at_ms = unix_ms();
    for (name, duration, r) in results {
        match r {
            Ok(mut rs) => {
                apply_thresholds(rules, &mut rs);
                let n = rs.len();
                for r in rs {
                    if seen.insert((r.chip.clone(), r.sensor.clone())) {
                        readings.push(r);
                    }
                }
                statuses.push(SourceStatus {
                    name,
                    up: true,
                    duration_seconds: duration.as_secs_f64(),
                    readings: n,
                    error: None,
                    last_read_ms: at_ms,
                });
            }
            Err(e) => {
                statuses.push(SourceStatus {
                    name,
                    up: false,
                    duration_seconds: duration.as_secs_f64(),
                    readings: 0,
                    error: Some(e),
                    last_read_ms: at_ms,
                });
            }
        }
    }
    (readings, statuses)
}

/// Run rounds until `shutdown` completes.
pub async fn run(
    sources: Vec<Arc<dyn Source>>,
    cfg: SamplerConfig,
    tx: watch::Sender<SensorState>,
    shutdown: impl Future<Output = ()>,
) {
    // No reloads: the sender goes at once, and a closed channel never
    // reports a change.
    let (_, live) = watch::channel(SamplerLive {
        thresholds: cfg.thresholds.clone(),
        roles: cfg.roles.clone(),
        heat: cfg.heat.clone(),
    });
    run_live(sources, cfg, live, tx, shutdown).await
}

/// [`run`], taking new thresholds, roles and cooling-detector settings
/// from `live` at the start of each round (a config reload).
pub async fn run_live(
    sources: Vec<Arc<dyn Source>>,
    mut cfg: SamplerConfig,
    mut live: watch::Receiver<SamplerLive>,
    tx: watch::Sender<SensorState>,
    shutdown: impl Future<Output = ()>,
) {
    // ~1 sample per interval over the window, with slack; bounded regardless.
    let max_samples = (cfg.trend_window.as_secs_f64() / cfg.interval.as_secs_f64().max(0.001))
        .ceil() as usize
        * 2
        + 4;
    let mut heat = HeatTracker::new(
        HeatConfig {
            window: cfg.trend_window,
            ..cfg.heat.clone()
        },
        max_samples.min(10_000),
    );
    let mut load = LoadReader::new(cfg.load.clone());
    let origin = Instant::now();
    let mut ticker = tokio::time::interval(cfg.interval);
    // A round that overran must not be followed by a burst of catch-up rounds.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up: Vec<Option<bool>> = vec![None; sources.len()];
    let mut round = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        if live.has_changed().unwrap_or(false) {
            let l = live.borrow_and_update().clone();
            cfg.thresholds = l.thresholds;
            cfg.roles = l.roles;
            // The history is kept: new rates and horizons judge the same
            // samples from the next round on.
            heat.set_config(HeatConfig {
                window: cfg.trend_window,
                ..l.heat
            });
        }
        let (mut readings, statuses) = read_all(&sources, cfg.timeout, &cfg.thresholds).await;
        crate::heating::assign_roles(&cfg.roles, &mut readings);
        // Log state changes of sources, not every failing round.
        for (i, st) in statuses.iter().enumerate() {
            if was_up[i] != Some(st.up) {
                match &st.error {
                    Some(e) => {
                        tracing::warn!(thermal_source = %st.name, error = %e, "thermal source down")
                    }
                    None if was_up[i].is_some() => {
                        tracing::info!(thermal_source = %st.name, readings = st.readings, "thermal source up again")
                    }
                    None => {
                        tracing::info!(thermal_source = %st.name, readings = st.readings, "thermal source up")
                    }
                }
                was_up[i] = Some(st.up);
            }
        }
        let a = heat.push(origin.elapsed().as_secs_f64(), &readings, load.read());
        let thermal = crate::heating::summary(&readings, &a);
        round += 1;
        tx.send_replace(SensorState {
            round,
            readings,
            sources: statuses,
            thermal,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{file::FileSource, SourceError};
    use futures::future::BoxFuture;

    struct Hang;
    impl Source for Hang {
        fn name(&self) -> &str {
            "hang"
        }
        fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
            Box::pin(futures::future::pending())
        }
    }

    struct Fixed(&'static str, Vec<Reading>);
    impl Source for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
            let v = self.1.clone();
            Box::pin(async move { Ok(v) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hung_source_is_cut_off_and_others_still_report() {
        let good: Arc<dyn Source> =
            Arc::new(Fixed("good", vec![Reading::new("c", "t", 40.0, "good")]));
        let (rs, st) = read_all(&[Arc::new(Hang), good], Duration::from_secs(2), &[]).await;
        assert_eq!(rs.len(), 1);
        assert!(
            !st[0].up && st[0].error.as_deref() == Some("timed out after 2s"),
            "{st:?}"
        );
        assert_eq!(st[0].duration_seconds, 2.0);
        assert!(st[1].up);
    }

    #[tokio::test]
    async fn duplicates_first_source_wins() {
        let a: Arc<dyn Source> = Arc::new(Fixed("a", vec![Reading::new("c", "t", 40.0, "a")]));
        let b: Arc<dyn Source> = Arc::new(Fixed(
            "b",
            vec![
                Reading::new("c", "t", 99.0, "b"),
                Reading::new("c", "u", 30.0, "b"),
            ],
        ));
        let (rs, st) = read_all(&[a, b], Duration::from_secs(1), &[]).await;
        assert_eq!(
            rs.iter()
                .map(|r| (r.sensor.as_str(), r.celsius))
                .collect::<Vec<_>>(),
            vec![("t", 40.0), ("u", 30.0)]
        );
        assert_eq!(st[1].readings, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_publish_trend_from_a_heating_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.json");
        let write = |c: f64| {
            std::fs::write(
                &path,
                format!(
                    r#"[{{"chip":"inlet","sensor":"t","celsius":{c},"critical_celsius":100}}]"#
                ),
            )
            .expect("write")
        };
        write(40.0);
        let (tx, mut rx) = watch::channel(SensorState::default());
        let cfg = SamplerConfig {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            trend_window: Duration::from_secs(120),
            thresholds: vec![],
            roles: vec![],
            heat: HeatConfig::default(),
            load: LoadSource::None,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            vec![Arc::new(FileSource::new(&path))],
            cfg,
            tx,
            async {
                let _ = stop_rx.await;
            },
        ));
        // 5 C/min: +1/6 C every 2 s round. The projection needs the rise
        // sustained over the recent window (24 s at this pace) and three
        // agreeing rounds.
        for i in 0..20 {
            rx.changed().await.expect("round");
            let st = rx.borrow_and_update().clone();
            assert_eq!(st.round, i + 1);
            write(40.0 + (i + 1) as f64 * 5.0 / 30.0);
        }
        let st = rx.borrow().clone();
        let trend = st.thermal.trend_celsius_per_minute.expect("trend");
        assert!((trend - 5.0).abs() < 1e-6, "{trend}");
        let headroom = st.thermal.headroom_celsius.expect("headroom");
        let ttc = st.thermal.time_to_critical_seconds.expect("projection");
        assert!((ttc - headroom / 5.0 * 60.0).abs() < 1e-6, "{ttc}");
        // The file's chip is called "inlet": it is inlet air and decides.
        assert!(
            st.thermal.air && st.thermal.cooling_vote,
            "{:?}",
            st.thermal
        );
        let _ = stop_tx.send(());
        task.await.expect("sampler stops");
    }
}

//! Config reload: `SIGHUP` (`systemctl reload coolmesh`) and
//! `POST /-/reload` re-read the config file and apply what can change
//! while the agent runs.
//!
//! What is live and what takes a restart is decided per key, here and
//! nowhere else ([`diff`]):
//!
//! - **Live**: the threshold and role rules (the sampler's next round),
//!   the state machine's timers and the cooling detector's settings (the
//!   next step; a grace already running keeps the deadline it started
//!   with, so a reload never moves a pending shutdown), `log.level`, and
//!   the operator token (the token file is re-read on every reload, so a
//!   rotated token takes effect even when its path is unchanged), and the
//!   power targets, policy, timeout and jitter while the agent has targets
//!   (the probes are rebuilt and restarted; a removed target's series go).
//! - **Restart**: everything that owns a socket, a file, an identity or a
//!   task built once at startup: listen addresses, TLS and limits, the
//!   node name and state directory, the cluster, the sensor sources and
//!   their cadence, the power probe interval (the state machine's
//!   observation cadence and the watchdog follow it) and going from no
//!   power targets to some or back, the shutdown commands, the log
//!   format and the journal. A changed one is reported by name (log line,
//!   reload answer, `coolmesh_config_restart_pending`), never silently
//!   dropped; the running agent keeps its old value until restarted.
//!
//! A new config that does not load, or whose live part does not validate
//! (a zero grace, a token file that cannot be read), changes nothing: the
//! error is logged with the reader's key and line, counted
//! (`coolmesh_config_last_reload_successful` 0) and returned to the caller.

use super::settings::{fsm_config, heat_config};
use crate::config::Config;
use crate::fsm::FsmConfig;
use crate::sampler::SamplerLive;
use coolmesh_exporter::auth::TokenCell;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// Reads the config file again (with the command line's overrides), as at
/// startup. The binary provides it; `None` in [`super::ReloadHooks`]
/// means the agent was started from a config in memory and cannot reload.
pub type ConfigLoader = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// Applies a new `log.level` to the running logger (the binary owns it).
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// One reload request: where its outcome goes (`None`: nobody waits, as
/// for SIGHUP; the outcome is logged either way).
pub type ReloadRequest = Option<oneshot::Sender<Result<Report, String>>>;

/// What one reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Keys applied to the running agent.
    pub applied: Vec<&'static str>,
    /// Keys that differ from the running agent's and take a restart.
    pub needs_restart: Vec<&'static str>,
}

/// The answer of a successful reload (`POST /-/reload`'s body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Keys applied.
    pub applied: Vec<&'static str>,
    /// Keys that changed but take a restart (still at their old value).
    pub needs_restart: Vec<&'static str>,
    /// One line for humans.
    pub message: String,
}

/// Compare the running config with a new one, key by key. A key that
/// changed lands in exactly one of the two lists. Sections no key below
/// names (one added later) still show up, by section name, as needing a
/// restart: a new setting is never ignored silently.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let mut d = Diff::default();
    macro_rules! live {
        ($key:literal, $($f:ident).+) => {
            if old.$($f).+ != new.$($f).+ {
                d.applied.push($key);
            }
        };
    }
    macro_rules! restart {
        ($key:literal, $($f:ident).+) => {
            if old.$($f).+ != new.$($f).+ {
                d.needs_restart.push($key);
            }
        };
    }
    live!("sensors.thresholds", sensors.thresholds);
    live!("sensors.roles", sensors.roles);
    live!("shutdown.grace", shutdown.grace);
    live!("shutdown.duration", shutdown.duration);
    live!("shutdown.recovery_probes", shutdown.recovery_probes);
    live!("shutdown.cancel_hold", shutdown.cancel_hold);
    live!("overheat.sustain", shutdown.overheat_sustain);
    live!("overheat.grace", shutdown.overheat_grace);
    live!("cooling.grace", shutdown.cooling_grace);
    live!("cooling.heating_rate", shutdown.heating_rate);
    live!("cooling.horizon", shutdown.cooling_horizon);
    live!("cooling.load_step", shutdown.load_step);
    live!("cooling.load_settle", shutdown.load_settle);
    live!("log.level", log.level);
    live!("http.token_file", http.token_file);

    restart!("node.name", node.name);
    restart!("node.state_dir", node.state_dir);
    restart!("http.listen_address", http.listen_address);
    restart!("http.advertise", http.advertise);
    restart!("http.max_connections", http.max_connections);
    restart!("http.max_connections_per_ip", http.max_connections_per_ip);
    restart!("http.first_byte_timeout", http.first_byte_timeout);
    restart!("http.header_read_timeout", http.header_read_timeout);
    restart!("http.web_config_file", http.web_config_file);
    restart!("sensors.interval", sensors.interval);
    restart!("sensors.timeout", sensors.timeout);
    restart!("sensors.sources", sensors.sources);
    restart!("sensors.sysfs", sensors.sysfs);
    restart!("sensors.trend_window", sensors.trend_window);
    restart!("sensors.file", sensors.file);
    restart!("sensors.exec", sensors.exec);
    restart!("sensors.lm_sensors_command", sensors.lm_sensors_command);
    restart!("sensors.lm_sensors_file", sensors.lm_sensors_file);
    restart!("sensors.lm_sensors_format", sensors.lm_sensors_format);
    restart!("sensors.ipmi_*", sensors.ipmi);
    restart!("sensors.cpu_load", sensors.cpu_load);
    // The probes are rebuilt on a reload while the agent has some; from
    // none to some (or back) the core loop's mode changes (which rounds are
    // the state machine's observations): a restart.
    if power_is_live(old, new) {
        live!("power.targets", power.targets);
        live!("power.policy", power.policy);
        live!("power.timeout", power.timeout);
        live!("power.jitter", power.jitter);
    } else {
        restart!("power.targets", power.targets);
        restart!("power.policy", power.policy);
        restart!("power.timeout", power.timeout);
        restart!("power.jitter", power.jitter);
    }
    // The state machine's observation interval and the watchdog's limit
    // follow it: fixed for the run.
    restart!("power.interval", power.interval);
    restart!("shutdown.command", shutdown.command);
    restart!("shutdown.pre_command", shutdown.pre_command);
    restart!("shutdown.pre_command_timeout", shutdown.pre_command_timeout);
    restart!("shutdown.command_timeout", shutdown.command_timeout);
    restart!("shutdown.dry_run", shutdown.dry_run);
    restart!("shutdown.dry_run_marker", shutdown.dry_run_marker);
    restart!("cluster.enabled", cluster.enabled);
    restart!("cluster.name", cluster.name);
    restart!("cluster.listen", cluster.listen);
    restart!("cluster.peers", cluster.peers);
    restart!("cluster.mdns", cluster.mdns);
    restart!("cluster.mdns_interval", cluster.mdns_interval);
    restart!("cluster.psk_file", cluster.psk_file);
    restart!("cluster.insecure_no_psk", cluster.insecure_no_psk);
    restart!("cluster.operator_key", cluster.operator_key);
    restart!("cluster.room_commands", cluster.room_commands);
    restart!("cluster.swim", cluster.swim);
    restart!("cluster.allowlist", cluster.allowlist);
    restart!("cluster.sync_interval", cluster.sync_interval);
    restart!(
        "cluster.anti_entropy_interval",
        cluster.anti_entropy_interval
    );
    restart!("cluster.fanout", cluster.fanout);
    restart!("cluster.suspect_after", cluster.suspect_after);
    restart!("cluster.dead_after", cluster.dead_after);
    restart!("cluster.retention", cluster.retention);
    restart!("cluster.limits", cluster.limits);
    restart!("log.format", log.format);
    restart!("journal", journal);

    // The safety net: whatever differs once the live keys are taken over
    // and no key above named it (a field added to a section later).
    let merged = apply_live(old, new);
    let mut section = |name: &'static str, same: bool| {
        let named = d
            .needs_restart
            .iter()
            .any(|k| k.split('.').next() == Some(name));
        if !same && !named {
            d.needs_restart.push(name);
        }
    };
    section("node", merged.node == new.node);
    section("http", merged.http == new.http);
    section("sensors", merged.sensors == new.sensors);
    section("power", merged.power == new.power);
    section("shutdown", merged.shutdown == new.shutdown);
    section("cluster", merged.cluster == new.cluster);
    section("log", merged.log == new.log);
    section("journal", merged.journal == new.journal);
    d
}

/// Can a reload rebuild the power probes: the agent probes before and
/// after (see [`diff`]).
fn power_is_live(old: &Config, new: &Config) -> bool {
    !old.power.targets.is_empty() && !new.power.targets.is_empty()
}

/// The power probes as the config describes them: the targets parsed and
/// their probes built (an ICMP target checks its socket permission here),
/// the policy and the timing, each error naming its key.
#[derive(Clone)]
pub struct PowerSetup {
    /// One probe per target, in config order.
    pub probes: Vec<Arc<dyn crate::power::Probe>>,
    /// `power.policy`.
    pub policy: crate::power::Policy,
    /// `power.interval`, `power.jitter`, `power.timeout`.
    pub run: crate::power::RunConfig,
}

impl PowerSetup {
    /// Build from `cfg` (which has power targets).
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let specs = crate::power::parse_targets(&cfg.power.targets)
            .map_err(|e| anyhow::anyhow!("power.targets: {e}"))?;
        let probes = crate::power::build_probes(&specs)?;
        let policy = cfg
            .power
            .policy
            .parse()
            .map_err(|e| anyhow::anyhow!("power.policy: {e}"))?;
        let run = crate::power::RunConfig {
            interval: cfg.power.interval,
            jitter_fraction: cfg.power.jitter,
            timeout: cfg.power.timeout,
        };
        run.validate()
            .map_err(|e| anyhow::anyhow!("[power]: {e}"))?;
        Ok(PowerSetup {
            probes,
            policy,
            run,
        })
    }

    fn targets(&self) -> Vec<String> {
        self.probes.iter().map(|p| p.target().to_string()).collect()
    }
}

/// Run the power probes of `setup`, and again with each new setup a reload
/// sends (the running round is stopped, the next starts at once), until
/// `stop` is cancelled or the observations' receiver is gone.
pub(super) async fn run_power(
    mut setups: watch::Receiver<PowerSetup>,
    metrics: crate::power::PowerMetrics,
    tx: mpsc::Sender<crate::power::PowerObservation>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut setup = setups.borrow_and_update().clone();
    loop {
        let round = stop.child_token();
        let mut task = tokio::spawn(crate::power::run(
            setup.probes.clone(),
            setup.policy,
            setup.run,
            metrics.clone(),
            tx.clone(),
            round.clone().cancelled_owned(),
        ));
        let next = tokio::select! {
            _ = stop.cancelled() => None,
            // The runner ends only when the core loop is gone.
            _ = &mut task => return,
            r = setups.changed() => r.ok().map(|()| setups.borrow_and_update().clone()),
        };
        round.cancel();
        let _ = task.await;
        let Some(new) = next else { return };
        let kept = new.targets();
        for gone in setup.targets().iter().filter(|t| !kept.contains(t)) {
            metrics.forget_target(gone);
        }
        tracing::info!(targets = %kept.join(","), policy = ?new.policy, "power probes restarted with the reloaded config");
        setup = new;
    }
}

/// The config the agent runs with after a reload: `old`, with the live
/// keys of [`diff`] taken from `new`. The keys that take a restart keep
/// their running value, so the next reload reports them again until the
/// agent restarts.
pub fn apply_live(old: &Config, new: &Config) -> Config {
    let mut c = old.clone();
    c.sensors.thresholds = new.sensors.thresholds.clone();
    c.sensors.roles = new.sensors.roles.clone();
    let (s, n) = (&mut c.shutdown, &new.shutdown);
    s.grace = n.grace;
    s.duration = n.duration;
    s.recovery_probes = n.recovery_probes;
    s.cancel_hold = n.cancel_hold;
    s.overheat_sustain = n.overheat_sustain;
    s.overheat_grace = n.overheat_grace;
    s.cooling_grace = n.cooling_grace;
    s.heating_rate = n.heating_rate;
    s.cooling_horizon = n.cooling_horizon;
    s.load_step = n.load_step;
    s.load_settle = n.load_settle;
    c.log.level = new.log.level.clone();
    c.http.token_file = new.http.token_file.clone();
    if power_is_live(old, new) {
        c.power.targets = new.power.targets.clone();
        c.power.policy = new.power.policy.clone();
        c.power.timeout = new.power.timeout;
        c.power.jitter = new.power.jitter;
    }
    c
}

/// The sampler's live settings from a config.
pub fn sampler_live(cfg: &Config) -> SamplerLive {
    SamplerLive {
        thresholds: cfg.sensors.thresholds.clone(),
        roles: cfg.sensors.roles.clone(),
        heat: heat_config(cfg),
    }
}

/// Where a reload delivers its live settings.
pub(super) struct Targets {
    /// The whole running config (the core loop: snapshot, peer votes).
    pub config: watch::Sender<Arc<Config>>,
    /// The state machine's timers (the supervisor).
    pub fsm: watch::Sender<FsmConfig>,
    /// Thresholds, roles and the cooling detector (the sampler).
    pub sampler: watch::Sender<SamplerLive>,
    /// The operator token (the HTTP server).
    pub token: TokenCell,
    /// The power probes; `None`: the agent probes nothing (then a change
    /// of `power.*` takes a restart, see [`diff`]).
    pub power: Option<watch::Sender<PowerSetup>>,
    /// The running logger.
    pub log_level: Option<LogLevelSetter>,
    /// `coolmesh_config_*`.
    pub metrics: ReloadMetrics,
}

/// `coolmesh_config_last_reload_successful`,
/// `coolmesh_config_last_reload_success_timestamp_seconds` (Prometheus'
/// own names, with the agent's prefix) and
/// `coolmesh_config_restart_pending`.
#[derive(Clone)]
pub struct ReloadMetrics {
    successful: prometheus::IntGauge,
    success_time: prometheus::Gauge,
    restart_pending: prometheus::IntGauge,
}

impl ReloadMetrics {
    /// Register on `registry`; the startup config counts as the first
    /// successful load (Prometheus does the same).
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let m = ReloadMetrics {
            successful: prometheus::IntGauge::new(
                "coolmesh_config_last_reload_successful",
                "Whether the last configuration reload attempt was successful (1) or the old config stays in force (0).",
            )?,
            success_time: prometheus::Gauge::new(
                "coolmesh_config_last_reload_success_timestamp_seconds",
                "Timestamp of the last successful configuration load (startup or reload).",
            )?,
            restart_pending: prometheus::IntGauge::new(
                "coolmesh_config_restart_pending",
                "1 when the config file changed keys that take a restart (see the reload log line), else 0.",
            )?,
        };
        registry.register(Box::new(m.successful.clone()))?;
        registry.register(Box::new(m.success_time.clone()))?;
        registry.register(Box::new(m.restart_pending.clone()))?;
        m.successful.set(1);
        m.success_time.set(now_secs());
        Ok(m)
    }
}

fn now_secs() -> f64 {
    crate::clock::unix_ms() as f64 / 1000.0
}

/// Serve reload requests until every sender is gone or `stop` completes.
/// One reload at a time, in order: the channel is bounded (one waiting),
/// and a request that finds it full is answered "retry" by its sender.
pub(super) async fn run(
    loader: ConfigLoader,
    mut running: Config,
    mut requests: mpsc::Receiver<ReloadRequest>,
    targets: Targets,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let req = tokio::select! {
            _ = &mut stop => return,
            r = requests.recv() => match r {
                Some(r) => r,
                None => return,
            },
        };
        let load = loader.clone();
        // The loader reads files (config, token): off the runtime's threads.
        let loaded = match tokio::task::spawn_blocking(move || load()).await {
            Ok(r) => r.map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("the config reader failed: {e}")),
        };
        let outcome = loaded.and_then(|new| apply(&mut running, &new, &targets));
        match &outcome {
            Ok(r) => {
                targets.metrics.successful.set(1);
                targets.metrics.success_time.set(now_secs());
                targets
                    .metrics
                    .restart_pending
                    .set(i64::from(!r.needs_restart.is_empty()));
                if r.needs_restart.is_empty() {
                    tracing::info!(applied = %r.applied.join(","), "config reloaded");
                } else {
                    tracing::warn!(
                        applied = %r.applied.join(","),
                        needs_restart = %r.needs_restart.join(","),
                        "config reloaded; changed keys that need a restart keep their old value until `systemctl restart coolmesh`"
                    );
                }
            }
            Err(e) => {
                targets.metrics.successful.set(0);
                tracing::error!(error = %e, "config reload failed; the agent keeps running with its current config");
            }
        }
        if let Some(reply) = req {
            let _ = reply.send(outcome);
        }
    }
}

/// Whether a re-read token differs from the running one (set, unset or
/// other contents); compared in constant time.
fn token_rotated(
    running: Option<&coolmesh_exporter::auth::Token>,
    reread: Option<&coolmesh_exporter::auth::Token>,
) -> bool {
    match (running, reread) {
        (Some(a), Some(b)) => !a.same_as(b),
        (None, None) => false,
        _ => true,
    }
}

/// Check the live part of `new` and apply it; `running` becomes the
/// merged config. Nothing is applied unless everything checks out.
fn apply(running: &mut Config, new: &Config, t: &Targets) -> Result<Report, String> {
    let merged = apply_live(running, new);
    let fsm = fsm_config(&merged);
    fsm.validate()
        .map_err(|e| format!("[shutdown]/[overheat]/[cooling]: {}", e.0))?;
    crate::config::check_log_level(&merged.log.level).map_err(|e| format!("log.level: {e}"))?;
    // Re-read even when the path is unchanged: rotating the token is
    // rewriting its file and reloading.
    let token = super::load_token(&merged).map_err(|e| format!("{e:#}"))?;
    let mut d = diff(running, new);
    if token_rotated(t.token.get().as_ref(), token.as_ref())
        && !d.applied.contains(&"http.token_file")
    {
        // Same path, new contents: say so, or a rotation reads "unchanged".
        d.applied.push("http.token_file (contents)");
    }
    let power_changed = running.power != merged.power;
    let power = match (&t.power, power_changed) {
        (Some(_), true) => Some(PowerSetup::from_config(&merged).map_err(|e| format!("{e:#}"))?),
        _ => None,
    };
    if d.applied.contains(&"log.level") {
        if let Some(set) = &t.log_level {
            set(&merged.log.level).map_err(|e| format!("log.level: {e}"))?;
        }
    }
    t.token.set(token);
    if let (Some(tx), Some(p)) = (&t.power, power) {
        tx.send_replace(p);
    }
    t.fsm.send_if_modified(|cur| {
        let changed = *cur != fsm;
        *cur = fsm;
        changed
    });
    let live = sampler_live(&merged);
    t.sampler.send_if_modified(|cur| {
        let changed = *cur != live;
        *cur = live;
        changed
    });
    *running = merged;
    t.config.send_replace(Arc::new(running.clone()));
    let message = match (d.applied.is_empty(), d.needs_restart.is_empty()) {
        (true, true) => "config reloaded: unchanged".to_string(),
        (_, true) => format!("config reloaded: applied {}", d.applied.join(", ")),
        (true, false) => format!(
            "config reloaded: nothing applied; needs restart: {}",
            d.needs_restart.join(", ")
        ),
        (false, false) => format!(
            "config reloaded: applied {}; needs restart: {}",
            d.applied.join(", "),
            d.needs_restart.join(", ")
        ),
    };
    Ok(Report {
        applied: d.applied,
        needs_restart: d.needs_restart,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(src: &str) -> Config {
        crate::config::parse(src).expect("test config parses")
    }

    #[test]
    fn a_token_file_rewritten_in_place_counts_as_a_change() {
        use coolmesh_exporter::auth::Token;
        let a = Token::from_file_content("aaaaaaaaaaaaaaaaaaaa").expect("token");
        let a2 = Token::from_file_content("aaaaaaaaaaaaaaaaaaaa\n").expect("token");
        let b = Token::from_file_content("bbbbbbbbbbbbbbbbbbbb").expect("token");
        assert!(!token_rotated(Some(&a), Some(&a2)), "same contents");
        assert!(token_rotated(Some(&a), Some(&b)), "new contents");
        assert!(
            token_rotated(None, Some(&b)),
            "a token where there was none"
        );
        assert!(token_rotated(Some(&a), None), "no token any more");
        assert!(!token_rotated(None, None));
    }

    #[test]
    fn an_unchanged_config_changes_nothing() {
        let c = Config::default();
        assert_eq!(diff(&c, &c.clone()), Diff::default());
    }

    #[test]
    fn live_keys_are_applied_and_restart_keys_reported() {
        let old = parse("[shutdown]\ngrace = \"5m\"\n");
        let new = parse(
            r#"
[http]
listen_address = "127.0.0.1:10099"
[shutdown]
grace = "2m"
command = ["/sbin/poweroff"]
[[sensors.thresholds]]
chip = "nvme*"
critical = 70.0
[log]
level = "debug"
format = "json"
[cluster]
name = "room-2"
"#,
        );
        let d = diff(&old, &new);
        assert_eq!(
            d.applied,
            vec!["sensors.thresholds", "shutdown.grace", "log.level"]
        );
        assert_eq!(
            d.needs_restart,
            vec![
                "http.listen_address",
                "shutdown.command",
                "cluster.name",
                "log.format"
            ]
        );
        // The running config takes the live keys only.
        let run = apply_live(&old, &new);
        assert_eq!(run.shutdown.grace, Duration::from_secs(120));
        assert_eq!(run.sensors.thresholds, new.sensors.thresholds);
        assert_eq!(run.log.level, "debug");
        assert_eq!(run.http.listen_address, old.http.listen_address);
        assert_eq!(run.shutdown.command, old.shutdown.command);
        assert_eq!(run.cluster.name, old.cluster.name);
        assert_eq!(run.log.format, "logfmt");
        // ... so the restart keys are reported again on the next reload,
        // and the live ones are not.
        let again = diff(&run, &new);
        assert!(again.applied.is_empty(), "{again:?}");
        assert_eq!(again.needs_restart, d.needs_restart);
    }

    #[test]
    fn power_targets_are_live_while_the_agent_has_some() {
        let old = parse("[power]\ntargets = [\"tcp://10.0.0.1:22\"]\n");
        let new = parse(
            "[power]\ntargets = [\"tcp://10.0.0.2:22\", \"tcp://10.0.0.3:22\"]\npolicy = \"all\"\ninterval = \"3s\"\n",
        );
        let d = diff(&old, &new);
        assert_eq!(d.applied, vec!["power.targets", "power.policy"]);
        assert_eq!(d.needs_restart, vec!["power.interval"]);
        let run = apply_live(&old, &new);
        assert_eq!(run.power.targets, new.power.targets);
        assert_eq!(run.power.policy, "all");
        assert_eq!(run.power.interval, old.power.interval);
        // From none to some, or back: the core loop's mode changes.
        let none = Config::default();
        for (a, b) in [(&none, &new), (&new, &none)] {
            let d = diff(a, b);
            assert!(d.applied.is_empty(), "{d:?}");
            assert!(d.needs_restart.contains(&"power.targets"), "{d:?}");
            assert_eq!(apply_live(a, b).power, a.power);
        }
    }

    #[test]
    fn every_key_lands_in_exactly_one_list() {
        // One change per key, each alone: exactly one name, in one list.
        let base = Config::default();
        let mut cases: Vec<(&str, Config)> = Vec::new();
        let mut add = |want: &'static str, f: &dyn Fn(&mut Config)| {
            let mut c = base.clone();
            f(&mut c);
            cases.push((want, c));
        };
        add("shutdown.cancel_hold", &|c| {
            c.shutdown.cancel_hold = Duration::from_secs(1)
        });
        add("cooling.heating_rate", &|c| c.shutdown.heating_rate = 9.0);
        add("http.token_file", &|c| {
            c.http.token_file = Some("/etc/coolmesh/token".into())
        });
        add("node.name", &|c| c.node.name = "other".into());
        add("power.targets", &|c| {
            c.power.targets = vec!["tcp://10.0.0.1:22".into()]
        });
        add("cluster.dead_after", &|c| {
            c.cluster.dead_after = Duration::from_secs(30)
        });
        add("sensors.interval", &|c| {
            c.sensors.interval = Duration::from_secs(9)
        });
        add("journal", &|c| c.journal.max_bytes += 1);
        add("http.advertise", &|c| {
            c.http.advertise = Some("srv1:10027".into())
        });
        for (want, new) in cases {
            let d = diff(&base, &new);
            let all: Vec<_> = d.applied.iter().chain(&d.needs_restart).collect();
            assert_eq!(all, vec![&want], "{want}");
        }
    }
}

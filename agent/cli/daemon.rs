//! `coolmesh agent`: loads and checks the config, sets up logging and the
//! runtime, and runs the daemon (`coolmesh_agent::agent`) until SIGTERM or
//! SIGINT. SIGHUP re-reads the config.

use crate::args::AgentArgs;
use std::process::ExitCode;
use std::time::Duration;

pub fn main(args: Box<AgentArgs>) -> ExitCode {
    let cfg = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            if let Some(p) = &args.src.config {
                eprintln!(
                    "coolmesh: not started; `coolmesh preflight --config {}` lists every problem",
                    p.display()
                );
            }
            return ExitCode::from(2);
        }
    };
    // A web config that does not load (bad YAML, unreadable or
    // mismatched certificate) is a config error: refuse to start
    // rather than fall back to serving plain HTTP.
    let web = match coolmesh_agent::agent::load_web_config(&cfg) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            if let Some(p) = &cfg.http.web_config_file {
                eprintln!(
                    "coolmesh: not started; `coolmesh preflight --config {}` checks the web config file",
                    p.display()
                );
            }
            return ExitCode::from(2);
        }
    };
    // No pre-shared key and no opt-in: refuse before anything listens
    // (the agent would otherwise join whatever room it finds).
    if let Some(e) = coolmesh_agent::config::cluster_trust_error(&cfg) {
        eprintln!("coolmesh: {e}");
        eprintln!("coolmesh: not started");
        return ExitCode::from(2);
    }
    let encoding = if cfg.log.format == "json" {
        crate::logformat::Encoding::Json
    } else {
        crate::logformat::Encoding::Logfmt
    };
    crate::logging::init(&cfg.log.level, encoding);
    // Before any socket exists: a 1024 soft limit is easy to reach
    // with a large room, and running out must not look like an
    // outage (see coolmesh_agent::rlimit).
    match coolmesh_agent::rlimit::raise_nofile() {
        Ok(Some((old, new))) => {
            tracing::debug!(old, new, "raised the soft open-file limit")
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = cfg.clone();
    let r = rt.block_on(async move {
        watch_hangup(*args, running);
        coolmesh_agent::agent::run_with_web(cfg, web, signal()).await
    });
    // A sensor read stuck in the kernel must not hold up the exit.
    rt.shutdown_timeout(Duration::from_millis(300));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The sections of the config that differ (by their TOML names).
fn changed_sections(
    a: &coolmesh_agent::config::Config,
    b: &coolmesh_agent::config::Config,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name, same: bool| {
        if !same {
            out.push(name);
        }
    };
    check("node", a.node == b.node);
    check("http", a.http == b.http);
    check("sensors", a.sensors == b.sensors);
    check("power", a.power == b.power);
    check("shutdown/overheat/cooling", a.shutdown == b.shutdown);
    check("cluster", a.cluster == b.cluster);
    check("log", a.log == b.log);
    check("journal", a.journal == b.journal);
    out
}

/// SIGHUP (`systemctl reload coolmesh`, or a stray `kill -HUP`) must not
/// stop the agent, as its default action would. The agent re-reads and
/// checks its config and says what changed; it applies nothing while
/// running (the state machine's timers and the cluster's identity come
/// from it), so a change takes a restart, which the log line says.
fn watch_hangup(args: AgentArgs, running: coolmesh_agent::config::Config) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match args.load() {
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "SIGHUP: the config does not load; the agent keeps running with the config it started with"
                ),
                Ok(new) => {
                    let changed = changed_sections(&running, &new);
                    if changed.is_empty() {
                        tracing::info!("SIGHUP: the config is unchanged");
                    } else {
                        tracing::warn!(
                            changed = %changed.join(", "),
                            "SIGHUP: the config changed and loads; restart the agent to apply it (systemctl restart coolmesh); nothing is applied while it runs"
                        );
                    }
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop((args, running));
}

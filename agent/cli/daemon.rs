//! `coolmesh agent`: loads and checks the config, sets up logging and the
//! runtime, and runs the daemon (`coolmesh_agent::agent`) until SIGTERM or
//! SIGINT. SIGHUP and `POST /-/reload` re-read the config and apply what can
//! change at runtime (`coolmesh_agent::agent::reload`).

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
    let log_level = crate::logging::init(&cfg.log.level, encoding);
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
    // A reload reads the file as startup did, command-line overrides
    // included (they win over the file at every load).
    let hooks = coolmesh_agent::agent::ReloadHooks {
        load: std::sync::Arc::new(move || args.load()),
        log_level: Some(log_level),
    };
    let r = rt.block_on(async move {
        coolmesh_agent::agent::run_with_reload(cfg, web, Some(hooks), signal()).await
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

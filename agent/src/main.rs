//! The `coolmesh` binary: parses the command line and dispatches.

use clap::Parser;
use coolmesh_agent::cli::{Cli, Cmd, SensorsArgs, StateArgs};
use std::process::ExitCode;
use std::time::Duration;

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("bad log level {level:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Agent(args) => {
            let cfg = match args.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("coolmesh: {e:#}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&cfg.log.level, cfg.log.format == "json");
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("coolmesh: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let r = rt.block_on(coolmesh_agent::agent::run(cfg, signal()));
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
        Cmd::Sensors(args) => sensors(args),
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::State(args) => state(args),
        Cmd::Demo(args) => coolmesh_agent::demo::main(args),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match coolmesh_agent::config::parse(&text) {
        Ok(_) => {
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!("{} problem(s) found", errs.0.len());
            ExitCode::from(2)
        }
    }
}

fn sensors(args: SensorsArgs) -> ExitCode {
    let cfg = match args.src.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = rt.block_on(async {
        let sources = coolmesh_agent::agent::build_sources(&cfg)?;
        let r = coolmesh_agent::sampler::read_all(
            &sources,
            cfg.sensors.timeout,
            &cfg.sensors.thresholds,
        )
        .await;
        anyhow::Ok(r)
    });
    rt.shutdown_timeout(Duration::from_millis(300));
    let (readings, statuses) = match out {
        Ok(x) => x,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    for s in &statuses {
        if let Some(e) = &s.error {
            eprintln!("source {}: {e}", s.name);
        }
    }
    let text = coolmesh_agent::report::render_sensors(&readings, &statuses, args.format);
    print!("{text}");
    if statuses.iter().all(|s| !s.up) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn state(args: StateArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(coolmesh_agent::report::fetch_state(&args.url));
    match r {
        Ok(snap) => {
            if args.json {
                match serde_json::to_string_pretty(&snap) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("coolmesh: {e}"),
                }
            } else {
                print!(
                    "{}",
                    coolmesh_agent::report::render_state(&snap, coolmesh_agent::agent::unix_ms())
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "coolmesh: cannot ask the agent at {}: {e:#} (is it running? is --url right?)",
                args.url
            );
            ExitCode::FAILURE
        }
    }
}

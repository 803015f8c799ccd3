//! The `coolmesh` binary: parses the command line and dispatches.

use clap::Parser;
use coolmesh_agent::cli::{
    CheckConfigArgs, Cli, Cmd, CounterAction, CounterArgs, KeygenArgs, SensorsArgs, StateArgs,
};
use std::process::ExitCode;
use std::time::Duration;

/// Log directives added to every `log.level` that does not mention their
/// target: libp2p's request-response warns once per inbound stream it
/// resets at the per-connection stream cap, i.e. once per frame of a
/// flooding peer (thousands per second).
const QUIET: &[&str] = &["libp2p_request_response::handler=error"];

fn log_filter(level: &str) -> String {
    let mut f = level.to_string();
    for d in QUIET {
        // Any directive for the crate wins (the operator asked for it).
        let krate = d.split([':', '=']).next().unwrap_or(d);
        if !level.contains(krate) {
            f.push(',');
            f.push_str(d);
        }
    }
    f
}

/// Colour in the logs: only on a terminal, never with `NO_COLOR` set to
/// anything (<https://no-color.org>) or `TERM=dumb`, as the other commands.
fn log_colour(
    tty: bool,
    no_color: Option<std::ffi::OsString>,
    term: Option<std::ffi::OsString>,
) -> bool {
    tty && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(level)).unwrap_or_else(|e| {
        eprintln!("bad log level {level:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
            std::env::var_os("TERM"),
        ))
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
fn watch_hangup(args: coolmesh_agent::cli::AgentArgs, running: coolmesh_agent::config::Config) {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Agent(args) => {
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
            init_logging(&cfg.log.level, cfg.log.format == "json");
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
            let rt = match runtime() {
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
        Cmd::Sensors(args) => sensors(args),
        Cmd::CheckConfig(args) => check_config(&args),
        Cmd::State(args) => state(args),
        Cmd::Keygen(args) => keygen(args),
        Cmd::Counter(args) => counter(args),
        Cmd::Roster(args) => coolmesh_agent::roster_cmd::main(args),
        Cmd::Room(args) => coolmesh_agent::room_cmd::main(args),
        Cmd::Explain(args) => coolmesh_agent::explain::main(args),
        Cmd::Demo(args) => coolmesh_agent::demo::main(args),
    }
}

/// `coolmesh check-config` / `coolmesh preflight`: exit 0 when there is
/// no error (warnings are printed), 1 otherwise.
fn check_config(args: &CheckConfigArgs) -> ExitCode {
    let file = args.path();
    let file = file.as_path();
    // A web config file (YAML) can be checked on its own, like
    // `promtool check web-config`.
    if matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    ) {
        return match coolmesh_exporter::WebConfig::load(file) {
            Ok(w) => {
                println!("{}: OK ({})", file.display(), w.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("1 problem found; deploy/web-config.example.yml documents the format");
                ExitCode::FAILURE
            }
        };
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "{}: {e} (is the path right? the Debian package installs /etc/coolmesh/coolmesh.toml)",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let host = if args.syntax_only {
        None
    } else {
        let name = args
            .user
            .as_deref()
            .unwrap_or(coolmesh_agent::perms::DEFAULT_SERVICE_USER);
        let host = coolmesh_agent::preflight::Host::system(name);
        if host.user.is_none() && args.user.is_some() {
            eprintln!("coolmesh: --user {name}: no such user on this host");
            return ExitCode::FAILURE;
        }
        Some(host)
    };
    let out = coolmesh_agent::preflight::check_config(file, &text, host.as_ref());
    for p in &out.problems {
        eprintln!("{}: {p}", file.display());
    }
    let (errors, warnings) = (out.errors(), out.warnings());
    let checked = match &host {
        None => "the file alone (--syntax-only)".to_string(),
        Some(h) => format!(
            "the file and this host for user {}",
            h.user
                .as_ref()
                .map(|u| u.name.as_str())
                .unwrap_or(&h.user_name)
        ),
    };
    if errors > 0 {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s) in {checked}; fix them (deploy/coolmesh.example.toml documents every key, docs/operator-guide.md the install) and run `coolmesh preflight --config {}` again",
            file.display(),
            file.display()
        );
        ExitCode::FAILURE
    } else {
        println!(
            "{}: OK, {warnings} warning(s); checked {checked}",
            file.display()
        );
        ExitCode::SUCCESS
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
    let progress = coolmesh_agent::report::Progress::new(&format!(
        "reading {} source(s), timeout {}",
        cfg.sensors.sources.len(),
        humantime::format_duration(cfg.sensors.timeout)
    ));
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
    drop(progress);
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
    let mut text = coolmesh_agent::report::render_sensors(&readings, &statuses, args.format);
    if args.format == coolmesh_agent::cli::SensorsFormat::Table
        && coolmesh_agent::report::colour_stdout()
    {
        text = coolmesh_agent::report::colour_sensor_rows(&text, &readings);
    }
    print!("{text}");
    if statuses.iter().all(|s| !s.up) {
        eprintln!(
            "coolmesh: no source could be read; pick sources that work here (--sensors.source, [sensors] sources), check --path.sysfs and permissions"
        );
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
    let ep = match coolmesh_agent::report::Endpoint::from_flags(&args.url, &args.client) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    let progress = coolmesh_agent::report::Progress::new(&format!("asking {}", args.url));
    let r = rt.block_on(coolmesh_agent::report::fetch_state_from(&ep));
    drop(progress);
    match r {
        Ok(snap) => {
            use coolmesh_agent::cli::StateFormat;
            use coolmesh_agent::report;
            let format = if args.json {
                StateFormat::Json
            } else {
                args.format
            };
            match format {
                StateFormat::Json => match serde_json::to_string_pretty(&snap) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("coolmesh: {e}"),
                },
                StateFormat::FileSd => {
                    // Every agent of a room serves on the same port as the
                    // one asked, unless --sd-port says otherwise.
                    let port = args.sd_port.unwrap_or_else(|| {
                        args.url
                            .parse::<hyper::Uri>()
                            .ok()
                            .and_then(|u| u.port_u16())
                            .unwrap_or(80)
                    });
                    print!("{}", report::render_file_sd(&snap, args.cluster, port));
                }
                StateFormat::Text => {
                    let now = coolmesh_agent::agent::unix_ms();
                    let text = if args.cluster {
                        report::render_cluster(&snap, now)
                    } else {
                        report::render_state(&snap, now)
                    };
                    if report::colour_stdout() {
                        print!("{}", report::colourize(&text));
                    } else {
                        print!("{text}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(args: KeygenArgs) -> ExitCode {
    if args.psk {
        let key = coolmesh_agent::cluster::generate_psk();
        match &args.out {
            None => print!("{key}"),
            Some(path) => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                // create_new: an existing key is never overwritten (that
                // would split a running room in two).
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path);
                match f.and_then(|mut f| f.write_all(key.as_bytes()).and_then(|_| f.sync_all())) {
                    Ok(()) => eprintln!(
                        "wrote {p} (mode 0600); copy the same file to every server, there {}, and set cluster.psk_file",
                        coolmesh_agent::perms::fix(path, "coolmesh"),
                        p = path.display()
                    ),
                    Err(e) => {
                        eprintln!(
                            "coolmesh: {}: {e} (remove it first if you really want a new key)",
                            path.display()
                        );
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(&args.state_dir) {
        eprintln!(
            "coolmesh: {}: {e} (pass --state-dir)",
            args.state_dir.display()
        );
        return ExitCode::FAILURE;
    }
    match coolmesh_agent::cluster::load_or_create_identity(&args.state_dir) {
        Ok(k) => {
            println!("{}", k.public().to_peer_id());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn counter(args: CounterArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ep = match coolmesh_agent::report::Endpoint::from_flags(&args.url, &args.client) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    let r = rt.block_on(async {
        match &args.action {
            CounterAction::List => {
                let snap = coolmesh_agent::report::fetch_state_from(&ep).await?;
                let rows: Vec<[String; 3]> = snap
                    .counters
                    .iter()
                    .map(|c| [c.name.clone(), c.value.to_string(), c.local.to_string()])
                    .collect();
                anyhow::Ok(coolmesh_agent::report::table(
                    &["NAME", "CLUSTER", "THIS NODE"],
                    &rows,
                    &[1, 2],
                ))
            }
            CounterAction::Inc {
                name,
                amount,
                token_file,
            } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e} (pass --token-file, the agent's http.token_file)",
                        token_file.display()
                    )
                })?;
                let path = format!("/v1/counters/{name}/inc?amount={amount}");
                let body = coolmesh_agent::report::request_to(
                    hyper::Method::POST,
                    &ep,
                    &path,
                    Some(token.trim()),
                )
                .await?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                Ok(format!("{}\n", v["ok"].as_str().unwrap_or("ok")))
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(300));
    match r {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{log_colour, log_filter};

    #[test]
    fn log_colour_follows_the_terminal_no_color_and_term() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        let table = [
            (true, None, os("xterm"), true),
            (false, None, os("xterm"), false),
            (true, os("1"), os("xterm"), false),
            (true, os(""), os("xterm"), true),
            (true, None, os("dumb"), false),
            (true, None, None, true),
        ];
        for (tty, no_color, term, want) in table {
            assert_eq!(
                log_colour(tty, no_color.clone(), term.clone()),
                want,
                "{tty} {no_color:?} {term:?}"
            );
        }
    }

    #[test]
    fn log_filter_quiets_per_stream_warnings_unless_asked_for() {
        let table = [
            ("info", "info,libp2p_request_response::handler=error"),
            (
                "debug,libp2p_swarm=debug",
                "debug,libp2p_swarm=debug,libp2p_request_response::handler=error",
            ),
            (
                "info,libp2p_request_response=debug",
                "info,libp2p_request_response=debug",
            ),
        ];
        for (level, want) in table {
            assert_eq!(log_filter(level), want, "{level}");
            assert!(tracing_subscriber::EnvFilter::try_new(want).is_ok());
        }
    }
}

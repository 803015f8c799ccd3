//! `coolmesh sensors`: read every configured source once and print the readings.

use crate::args::SensorsArgs;
use std::process::ExitCode;
use std::time::Duration;

pub fn main(args: SensorsArgs) -> ExitCode {
    let cfg = match args.src.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The ipmi source's first read waits for the BMC tool's first run,
    // which may take up to its own timeout (longer than a sysfs read's).
    let timeout = if cfg
        .sensors
        .sources
        .contains(&coolmesh_agent::config::SourceKind::Ipmi)
    {
        cfg.sensors.timeout.max(cfg.sensors.ipmi.timeout)
    } else {
        cfg.sensors.timeout
    };
    let progress = crate::render::Progress::new(&format!(
        "reading {} source(s), timeout {}",
        cfg.sensors.sources.len(),
        humantime::format_duration(timeout)
    ));
    let out = rt.block_on(async {
        let sources = coolmesh_agent::agent::build_sources(&cfg)?;
        let r = coolmesh_agent::sampler::read_all(&sources, timeout, &cfg.sensors.thresholds).await;
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
    let mut text = crate::render::render_sensors(&readings, &statuses, args.format);
    if args.format == crate::args::SensorsFormat::Table && crate::render::colour_stdout() {
        text = crate::render::colour_sensor_rows(&text, &readings);
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

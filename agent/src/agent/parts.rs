//! Parts of the agent built from the config before anything runs: the
//! thermal sources, the operator token, the web config, the build metadata,
//! and the check of the shutdown programs.

use crate::config::{Config, SourceKind};
use crate::power;
use crate::sources::{self, Source};
use anyhow::Context;
use coolmesh_exporter::auth::Token;
use coolmesh_exporter::{BuildInfo, WebConfig};
use std::sync::Arc;

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
pub(super) fn check_shutdown_programs(cfg: &Config) {
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

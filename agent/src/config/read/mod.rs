//! coolmesh's keys: each section of the file read into its part of
//! [`Config`], with the checks of single values (ranges, targets) and the
//! checks across sections.
//!
//! # Layout
//!
//! - `mod.rs` (this file): the document walk ([`parse_report`]) with the
//!   small sections read in place (`[node]`, `[http]`, `[power]`,
//!   `[journal]`, `[overheat]`, `[cooling]`, `[log]`), the check of the
//!   power targets and the checks across sections.
//! - `sensors`: `[sensors]`.
//! - `cluster`: `[cluster]` and `[power_on]`.
//! - `shutdown`: `[shutdown]`.

mod cluster;
mod sensors;
mod shutdown;

use self::cluster::{parse_cluster, parse_power_on};
use self::sensors::parse_sensors;
use self::shutdown::parse_shutdown;
use super::walker::Walker;
use super::*;
use crate::thermal::ThresholdRule;
use toml_edit::{Document, Item, Table};

/// Parse a config document and keep going after bad values, so that a
/// preflight can check the rest of the installation too. Only a syntax
/// error (the document is not TOML) is an `Err`.
pub fn parse_report(src: &str) -> Result<Parsed, ConfigErrors> {
    let doc = match Document::parse(src) {
        Ok(d) => d,
        Err(e) => {
            let line = e.span().map(|s| {
                src[..s.start.min(src.len())]
                    .bytes()
                    .filter(|b| *b == b'\n')
                    .count()
                    + 1
            });
            let msg = e.message().to_string();
            return Err(ConfigErrors(vec![ConfigError {
                key: "(syntax)".into(),
                line,
                message: msg,
            }]));
        }
    };
    let mut c = Config::default();
    let mut w = Walker {
        src,
        errors: Vec::new(),
        lines: KeyLines::default(),
    };
    let root = doc.as_table();
    w.table("", root, SECTIONS, |w, section, key, item| {
        let Some(t) = w.sub_table(key, item) else {
            return;
        };
        match section {
            "node" => w.table(
                "node",
                t,
                &["name", "state_dir"],
                |w, k, full, it| match k {
                    "name" => {
                        if let Some(v) = w.nonempty_string(full, it) {
                            if v.len() > 64 || v.chars().any(|ch| ch.is_control()) {
                                w.err(full, it.span(), "must be 1-64 printable characters");
                            } else {
                                c.node.name = v;
                            }
                        }
                    }
                    _ => {
                        if let Some(v) = w.nonempty_string(full, it) {
                            c.node.state_dir = v.into();
                        }
                    }
                },
            ),
            "http" => w.table(
                "http",
                t,
                &[
                    "listen_address",
                    "token_file",
                    "max_connections",
                    "max_connections_per_ip",
                    "first_byte_timeout",
                    "header_read_timeout",
                    "web_config_file",
                    "advertise",
                ],
                |w, k, full, it| match k {
                    "advertise" => {
                        if let Some(v) = w.nonempty_string(full, it) {
                            if crate::cluster::record::valid_http_address(&v) {
                                c.http.advertise = Some(v);
                            } else {
                                w.err(
                                    full,
                                    it.span(),
                                    format!("{v:?} is not host:port (a DNS name or IP address and a port 1-65535, e.g. \"srv12.room.example:10027\" or \"[2001:db8::12]:10027\"; at most {} bytes)", crate::cluster::record::limits::HTTP),
                                );
                            }
                        }
                    }
                    "listen_address" => {
                        if let Some(v) = w.nonempty_string(full, it) {
                            match normalize_listen(&v) {
                                Ok(_) => c.http.listen_address = v,
                                Err(e) => w.err(full, it.span(), e),
                            }
                        }
                    }
                    "token_file" => {
                        c.http.token_file = w.nonempty_string(full, it).map(PathBuf::from)
                    }
                    "web_config_file" => {
                        c.http.web_config_file = w.nonempty_string(full, it).map(PathBuf::from)
                    }
                    "max_connections_per_ip" => {
                        if let Some(v) = w.int(full, it, 1..=65536) {
                            c.http.max_connections_per_ip = v as usize;
                        }
                    }
                    "first_byte_timeout" | "header_read_timeout" => {
                        if let Some(d) = w.duration(
                            full,
                            it,
                            Duration::from_millis(100),
                            Duration::from_secs(300),
                        ) {
                            if k == "first_byte_timeout" {
                                c.http.first_byte_timeout = d;
                            } else {
                                c.http.header_read_timeout = d;
                            }
                        }
                    }
                    _ => {
                        if let Some(v) = w.int(full, it, 1..=65536) {
                            c.http.max_connections = v as usize;
                        }
                    }
                },
            ),
            "sensors" => parse_sensors(w, t, &mut c.sensors),
            "power" => w.table(
                "power",
                t,
                &["targets", "policy", "interval", "timeout", "jitter"],
                |w, k, full, it| match k {
                    "targets" => {
                        if let Some(v) = w.strings(full, it) {
                            check_targets(w, full, it, &v);
                            c.power.targets = v;
                        }
                    }
                    "policy" => {
                        if let Some(v) = w.one_of(full, it, &["any", "all", "majority"]) {
                            c.power.policy = v;
                        }
                    }
                    "interval" => {
                        if let Some(d) = w.duration(
                            full,
                            it,
                            Duration::from_millis(100),
                            Duration::from_secs(3600),
                        ) {
                            c.power.interval = d;
                        }
                    }
                    "timeout" => {
                        if let Some(d) =
                            w.duration(full, it, Duration::from_millis(10), Duration::from_secs(60))
                        {
                            c.power.timeout = d;
                        }
                    }
                    _ => {
                        if let Some(v) = w.float(full, it, 0.0..=0.5) {
                            c.power.jitter = v;
                        }
                    }
                },
            ),
            "shutdown" => parse_shutdown(w, t, &mut c.shutdown),
            "power_on" => parse_power_on(w, t, &mut c.power_on),
            "cluster" => parse_cluster(w, t, &mut c.cluster),
            "journal" => w.table("journal", t, &["max_bytes", "max_age"], |w, k, full, it| {
                if k == "max_bytes" {
                    // At least 64 KiB: a few entries with a room's evidence.
                    if let Some(v) = w.int(full, it, 65_536..=1_073_741_824) {
                        c.journal.max_bytes = v as u64; // in range
                    }
                } else if let Some(d) = w.duration(
                    full,
                    it,
                    Duration::from_secs(3600),
                    Duration::from_secs(10 * 365 * 24 * 3600),
                ) {
                    c.journal.max_age = d;
                }
            }),
            "overheat" => w.table("overheat", t, &["sustain", "grace"], |w, k, full, it| {
                let why = if k == "sustain" {
                    "one reading at critical (a glitching sensor) would start the overheat grace (default 30s)"
                } else {
                    "the server would power off the moment a sensor had been at critical for overheat.sustain, with no time to cancel (default 60s)"
                };
                if let Some(d) = w.nonzero_duration(full, it, Duration::from_secs(3600), why) {
                    if k == "sustain" {
                        c.shutdown.overheat_sustain = d;
                    } else {
                        c.shutdown.overheat_grace = d;
                    }
                }
            }),
            "cooling" => w.table(
                "cooling",
                t,
                &[
                    "grace",
                    "heating_rate",
                    "horizon",
                    "load_step",
                    "load_settle",
                ],
                |w, k, full, it| match k {
                    "grace" => {
                        if let Some(d) = w.nonzero_duration(
                            full,
                            it,
                            Duration::from_secs(24 * 3600),
                            "the room would power off the moment a quorum voted \"cooling lost\", with no time to cancel a false vote (default 2m)",
                        ) {
                            c.shutdown.cooling_grace = d;
                        }
                    }
                    "horizon" => {
                        if let Some(d) =
                            w.duration(full, it, Duration::ZERO, Duration::from_secs(24 * 3600))
                        {
                            c.shutdown.cooling_horizon = d;
                        }
                    }
                    "load_settle" => {
                        if let Some(d) =
                            w.duration(full, it, Duration::ZERO, Duration::from_secs(3600))
                        {
                            c.shutdown.load_settle = d;
                        }
                    }
                    "load_step" => {
                        if let Some(v) = w.float(full, it, 0.05..=1.0) {
                            c.shutdown.load_step = v;
                        }
                    }
                    _ => {
                        if let Some(v) = w.float(full, it, 0.1..=100.0) {
                            c.shutdown.heating_rate = v;
                        }
                    }
                },
            ),
            _ => w.table("log", t, &["level", "format"], |w, k, full, it| {
                if k == "level" {
                    if let Some(v) = w.nonempty_string(full, it) {
                        match check_log_level(&v) {
                            Ok(()) => c.log.level = v,
                            Err(e) => w.err(full, it.span(), e),
                        }
                    }
                } else if let Some(v) = w.one_of(full, it, &["logfmt", "json"]) {
                    c.log.format = v;
                }
            }),
        }
    });
    cross_check(&mut w, &c);
    Ok(Parsed {
        config: c,
        errors: w.errors,
        lines: w.lines,
    })
}

/// Every power target must parse, and none may repeat.
pub(super) fn check_targets(w: &mut Walker<'_>, full: &str, it: &Item, targets: &[String]) {
    let spans: Vec<_> = it
        .as_value()
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|x| x.span()).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let span = spans.get(i).cloned().flatten();
        if let Err(e) = crate::power::parse_target(t) {
            w.err(&format!("{full}[{i}]"), span, e.message);
        } else if !seen.insert(t.as_str()) {
            w.err(
                &format!("{full}[{i}]"),
                span,
                format!("target {t:?} listed twice"),
            );
        }
    }
}

/// Checks that involve several keys. Each names the key it blames, with
/// its line when the key is in the file.
pub(super) fn cross_check(w: &mut Walker<'_>, c: &Config) {
    let err = |w: &mut Walker<'_>, key: &str, msg: String| {
        let e = w.lines.error(key, msg);
        w.errors.push(e);
    };
    let fmt = |d: Duration| humantime::format_duration(d).to_string();
    if c.sensors.timeout > c.sensors.interval {
        err(
            w,
            "sensors.timeout",
            format!(
                "{} must not exceed sensors.interval ({}), or reads would overlap",
                fmt(c.sensors.timeout),
                fmt(c.sensors.interval)
            ),
        );
    }
    if c.power.timeout >= c.power.interval {
        err(
            w,
            "power.timeout",
            format!(
                "{} must be shorter than power.interval ({}): a probe that may take the whole interval overlaps the next round, and a dead target is then seen a round late",
                fmt(c.power.timeout),
                fmt(c.power.interval)
            ),
        );
    }
    if c.cluster.dead_after <= c.cluster.suspect_after {
        err(
            w,
            "cluster.dead_after",
            "must be longer than cluster.suspect_after".into(),
        );
    }
    if c.sensors.sources.contains(&SourceKind::File) && c.sensors.file.is_none() {
        err(
            w,
            "sensors.file",
            "the `file` source is enabled but sensors.file is not set".into(),
        );
    }
    if c.sensors.sources.contains(&SourceKind::Exec) && c.sensors.exec.is_empty() {
        err(
            w,
            "sensors.exec",
            "the `exec` source is enabled but sensors.exec is not set".into(),
        );
    }
    let ipmi = &c.sensors.ipmi;
    if ipmi.host.is_none() && (ipmi.user.is_some() || ipmi.password_file.is_some()) {
        let key = if ipmi.user.is_some() {
            "sensors.ipmi_user"
        } else {
            "sensors.ipmi_password_file"
        };
        err(
            w,
            key,
            "needs sensors.ipmi_host (a BMC over the network)".into(),
        );
    }
    if let Err(e) = crate::sources::ipmi::argv_with_lanplus(&ipmi.command, ipmi.lanplus().as_ref())
    {
        err(w, "sensors.ipmi_host", e);
    }
}

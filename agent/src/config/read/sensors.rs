//! `[sensors]`: the thermal sources, their options and the thresholds.

use super::*;

pub(super) fn parse_sensors(w: &mut Walker<'_>, t: &Table, s: &mut SensorsConfig) {
    const KEYS: &[&str] = &[
        "interval",
        "timeout",
        "sources",
        "sysfs",
        "trend_window",
        "file",
        "exec",
        "lm_sensors_command",
        "lm_sensors_file",
        "lm_sensors_format",
        "ipmi_command",
        "ipmi_host",
        "ipmi_user",
        "ipmi_password_file",
        "ipmi_interval",
        "ipmi_timeout",
        "thresholds",
        "roles",
        "cpu_load",
    ];
    w.table("sensors", t, KEYS, |w, k, full, it| match k {
        "interval" => {
            if let Some(d) = w.duration(full, it, Duration::from_millis(100), Duration::from_secs(3600)) {
                s.interval = d;
            }
        }
        "timeout" => {
            if let Some(d) = w.duration(full, it, Duration::from_millis(10), Duration::from_secs(600)) {
                s.timeout = d;
            }
        }
        "trend_window" => {
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600)) {
                s.trend_window = d;
            }
        }
        "sources" => {
            if let Some(v) = w.strings(full, it) {
                let mut kinds = Vec::new();
                for name in &v {
                    match SourceKind::parse(name) {
                        Some(k) if !kinds.contains(&k) => kinds.push(k),
                        Some(_) => w.err(full, it.span(), format!("source {name:?} listed twice")),
                        None => w.err(
                            full,
                            it.span(),
                            format!("unknown source {name:?}; sources are hwmon, thermal_zone, sysinfo, lm_sensors, file, exec, ipmi"),
                        ),
                    }
                }
                s.sources = kinds;
            }
        }
        "sysfs" => {
            if let Some(v) = w.nonempty_string(full, it) {
                s.sysfs = v.into();
            }
        }
        "file" => s.file = w.nonempty_string(full, it).map(PathBuf::from),
        "lm_sensors_file" => s.lm_sensors_file = w.nonempty_string(full, it).map(PathBuf::from),
        "exec" => {
            if let Some(v) = w.argv(full, it) {
                s.exec = v;
            }
        }
        "lm_sensors_command" => {
            if let Some(v) = w.argv(full, it) {
                s.lm_sensors_command = v;
            }
        }
        "lm_sensors_format" => {
            if let Some(v) = w.one_of(full, it, &["auto", "json", "text"]) {
                s.lm_sensors_format = v;
            }
        }
        "ipmi_command" => {
            if let Some(v) = w.argv(full, it) {
                match crate::sources::ipmi::password_argument(&v) {
                    Some(a) => w.err(
                        full,
                        it.span(),
                        format!("{a:?} puts the BMC password on the command line, where `ps` shows it to every user; use ipmi_password_file (ipmitool -f) or, for ipmi-sensors, --config-file"),
                    ),
                    None => s.ipmi.command = v,
                }
            }
        }
        "ipmi_host" => s.ipmi.host = w.nonempty_string(full, it),
        "ipmi_user" => s.ipmi.user = w.nonempty_string(full, it),
        "ipmi_password_file" => s.ipmi.password_file = w.nonempty_string(full, it).map(PathBuf::from),
        "ipmi_interval" => {
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600)) {
                s.ipmi.interval = d;
            }
        }
        "ipmi_timeout" => {
            if let Some(d) = w.duration(full, it, Duration::from_millis(100), Duration::from_secs(600)) {
                s.ipmi.timeout = d;
            }
        }
        "cpu_load" => {
            if let Some(v) = w.nonempty_string(full, it) {
                match v.as_str() {
                    "system" => s.cpu_load = crate::sampler::LoadSource::System,
                    "none" => s.cpu_load = crate::sampler::LoadSource::None,
                    other => match other.strip_prefix("file:").filter(|p| !p.is_empty()) {
                        Some(p) => s.cpu_load = crate::sampler::LoadSource::File(p.into()),
                        None => w.err(full, it.span(), format!("{other:?}: expected \"system\", \"none\" or \"file:PATH\"")),
                    },
                }
            }
        }
        "roles" => {
            let Some(arr) = it.as_array_of_tables() else {
                w.err(full, it.span(), "expected [[sensors.roles]] tables");
                return;
            };
            for (i, tt) in arr.iter().enumerate() {
                let prefix = format!("sensors.roles[{i}]");
                let mut rule = crate::heating::RoleRule {
                    chip: "*".into(),
                    sensor: "*".into(),
                    label: "*".into(),
                    role: crate::heating::Role::Component,
                };
                let mut has_role = false;
                w.table(&prefix, tt, &["chip", "sensor", "label", "role"], |w, k, full, it| {
                    if k == "role" {
                        if let Some(v) = w.one_of(full, it, &["component", "inlet", "ambient", "exhaust"]) {
                            if let Ok(r) = v.parse() {
                                rule.role = r;
                                has_role = true;
                            }
                        }
                    } else if let Some(v) = w.nonempty_string(full, it) {
                        match k {
                            "chip" => rule.chip = v,
                            "sensor" => rule.sensor = v,
                            _ => rule.label = v,
                        }
                    }
                });
                if !has_role {
                    w.err(&prefix, tt.span(), "a role rule needs role = \"inlet\", \"ambient\", \"exhaust\" or \"component\"");
                }
                s.roles.push(rule);
            }
        }
        _ => {
            let Some(arr) = it.as_array_of_tables() else {
                w.err(full, it.span(), "expected [[sensors.thresholds]] tables");
                return;
            };
            for (i, tt) in arr.iter().enumerate() {
                let prefix = format!("sensors.thresholds[{i}]");
                let mut rule =
                    ThresholdRule { chip: "*".into(), sensor: "*".into(), max: None, critical: None, fill_only: false, ignore: false };
                w.table(&prefix, tt, &["chip", "sensor", "max", "critical", "mode", "ignore"], |w, k, full, it| match k {
                    "chip" | "sensor" => {
                        if let Some(v) = w.nonempty_string(full, it) {
                            if k == "chip" {
                                rule.chip = v;
                            } else {
                                rule.sensor = v;
                            }
                        }
                    }
                    "max" => rule.max = w.float(full, it, -40.0..=200.0),
                    "critical" => rule.critical = w.float(full, it, -40.0..=200.0),
                    "mode" => rule.fill_only = w.one_of(full, it, &["override", "fill"]).as_deref() == Some("fill"),
                    _ => rule.ignore = w.bool(full, it).unwrap_or(false),
                });
                if rule.max.is_none() && rule.critical.is_none() && !rule.ignore {
                    w.err(&prefix, tt.span(), "a threshold rule needs max, critical or ignore = true");
                }
                s.thresholds.push(rule);
            }
        }
    });
}

//! coolmesh's keys: each section of the file read into its part of
//! [`Config`], with the checks of single values (ranges, targets) and the
//! checks across sections.

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

pub(super) fn parse_cluster(w: &mut Walker<'_>, t: &Table, c: &mut ClusterSection) {
    const KEYS: &[&str] = &[
        "enabled",
        "name",
        "listen",
        "peers",
        "mdns",
        "mdns_interval",
        "psk_file",
        "insecure_no_psk",
        "operator_key",
        "room_commands",
        "swim",
        "allowlist",
        "sync_interval",
        "anti_entropy_interval",
        "fanout",
        "suspect_after",
        "dead_after",
        "retention",
        "handshake_timeout",
        "max_pending_incoming",
        "max_incoming",
        "max_connections_per_peer",
        "max_streams_per_connection",
        "max_members",
    ];
    let ms = Duration::from_millis;
    w.table("cluster", t, KEYS, |w, k, full, it| match k {
        "max_pending_incoming" | "max_incoming" => {
            if let Some(v) = w.int(full, it, 1..=65_536) {
                let v = v as u32; // in range
                if k == "max_pending_incoming" {
                    c.limits.max_pending_incoming = v;
                } else {
                    c.limits.max_incoming = v;
                }
            }
        }
        "max_connections_per_peer" => {
            // At least 2: a simultaneous dial from both sides makes two.
            if let Some(v) = w.int(full, it, 2..=16) {
                c.limits.max_connections_per_peer = v as u32;
            }
        }
        "max_members" => {
            // Below 16 a room's own members could be refused.
            if let Some(v) = w.int(full, it, 16..=1_000_000) {
                c.limits.max_members = v as usize;
            }
        }
        "max_streams_per_connection" => {
            // Members use up to three at a time (sync, push, follow-up).
            if let Some(v) = w.int(full, it, 4..=256) {
                c.limits.max_streams_per_connection = v as usize;
            }
        }
        "enabled" | "mdns" | "insecure_no_psk" | "room_commands" | "swim" => {
            if let Some(v) = w.bool(full, it) {
                match k {
                    "enabled" => c.enabled = v,
                    "mdns" => c.mdns = v,
                    "room_commands" => c.room_commands = v,
                    "swim" => c.swim = v,
                    _ => c.insecure_no_psk = v,
                }
            }
        }
        "operator_key" => {
            if let Some(v) = w.nonempty_string(full, it) {
                if let Err(e) = crate::cluster::roster::parse_operator_key(&v) {
                    w.err(full, it.span(), e);
                }
                c.operator_key = Some(v);
            }
        }
        "name" => {
            if let Some(v) = w.nonempty_string(full, it) {
                if v.len() > 64 || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                    w.err(full, it.span(), "must be 1-64 characters of A-Z a-z 0-9 - _ .");
                } else {
                    c.name = v;
                }
            }
        }
        "listen" | "peers" => {
            if let Some(v) = w.strings(full, it) {
                let spans: Vec<_> = it.as_value().and_then(Value::as_array).map(|a| a.iter().map(|x| x.span()).collect()).unwrap_or_default();
                for (i, a) in v.iter().enumerate() {
                    if let Err(e) = a.parse::<libp2p::Multiaddr>() {
                        w.err(&format!("{full}[{i}]"), spans.get(i).cloned().flatten(), format!("{a:?} is not a multiaddr ({e}); e.g. \"/ip4/10.0.0.12/tcp/9877\""));
                    }
                }
                if k == "listen" {
                    if v.is_empty() {
                        w.err(full, it.span(), "needs at least one address (or set cluster.enabled = false)");
                    }
                    c.listen = v;
                } else {
                    c.peers = v;
                }
            }
        }
        "allowlist" => {
            if let Some(v) = w.strings(full, it) {
                for (i, p) in v.iter().enumerate() {
                    if p.parse::<libp2p::PeerId>().is_err() {
                        w.err(&format!("{full}[{i}]"), it.span(), format!("{p:?} is not a PeerId (see `coolmesh keygen` / the node's coolmesh_node_info)"));
                    }
                }
                c.allowlist = v;
            }
        }
        "psk_file" => c.psk_file = w.nonempty_string(full, it).map(PathBuf::from),
        "fanout" => {
            if let Some(v) = w.int(full, it, 1..=16) {
                c.fanout = v as usize;
            }
        }
        _ => {
            let (min, max) = match k {
                "mdns_interval" => (ms(500), Duration::from_secs(600)),
                "sync_interval" => (ms(50), Duration::from_secs(60)),
                "anti_entropy_interval" => (ms(100), Duration::from_secs(600)),
                "suspect_after" | "dead_after" => (ms(500), Duration::from_secs(3600)),
                "handshake_timeout" => (ms(500), Duration::from_secs(60)),
                _ => (Duration::from_secs(1), Duration::from_secs(30 * 24 * 3600)),
            };
            if let Some(d) = w.duration(full, it, min, max) {
                match k {
                    "mdns_interval" => c.mdns_interval = d,
                    "sync_interval" => c.sync_interval = d,
                    "anti_entropy_interval" => c.anti_entropy_interval = d,
                    "suspect_after" => c.suspect_after = d,
                    "dead_after" => c.dead_after = d,
                    "handshake_timeout" => c.limits.handshake_timeout = d,
                    _ => c.retention = d,
                }
            }
        }
    });
}

/// `[power_on]` (see `crate::power_on`).
pub(super) fn parse_power_on(
    w: &mut Walker<'_>,
    t: &Table,
    p: &mut crate::power_on::PowerOnConfig,
) {
    const KEYS: &[&str] = &[
        "enabled",
        "mac",
        "broadcast",
        "settle",
        "give_up",
        "retry",
        "controller",
    ];
    let day = Duration::from_secs(24 * 3600);
    w.table("power_on", t, KEYS, |w, k, full, it| match k {
        "enabled" => {
            if let Some(v) = w.bool(full, it) {
                p.enabled = v;
            }
        }
        "mac" => {
            if let Some(s) = w.nonempty_string(full, it) {
                match crate::power_on::parse_mac(s.trim()) {
                    Some(m) => p.mac = Some(m),
                    None => w.err(
                        full,
                        it.span(),
                        format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
                    ),
                }
            }
        }
        "broadcast" => {
            if let Some(s) = w.nonempty_string(full, it) {
                match s.trim().parse::<std::net::SocketAddr>() {
                    Ok(a) => p.broadcast = a,
                    Err(_) => w.err(
                        full,
                        it.span(),
                        format!("{s:?} is not ADDRESS:PORT (e.g. 255.255.255.255:9)"),
                    ),
                }
            }
        }
        "settle" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, day) {
                p.settle = d;
            }
        }
        "controller" => {
            if let Some(s) = w.nonempty_string(full, it) {
                p.controller = Some(s);
            }
        }
        "give_up" => {
            if let Some(d) = w.nonzero_duration(
                full,
                it,
                day,
                "the controller would give every member up at once (default 15m)",
            ) {
                p.give_up = d;
            }
        }
        _ => {
            // At least a second: a packet a second per sleeper is plenty.
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600))
            {
                p.retry = d;
            }
        }
    });
}

pub(super) fn parse_shutdown(w: &mut Walker<'_>, t: &Table, s: &mut ShutdownSection) {
    const KEYS: &[&str] = &[
        "grace",
        "command",
        "pre_command",
        "pre_command_timeout",
        "command_timeout",
        "duration",
        "recovery_probes",
        "cancel_hold",
        "dry_run",
        "dry_run_marker",
        "stage",
        "stage_timeout",
    ];
    let day = Duration::from_secs(24 * 3600);
    w.table("shutdown", t, KEYS, |w, k, full, it| match k {
        "grace" => {
            if let Some(d) = w.nonzero_duration(full, it, day, "the server would power off on the first corroborated mains blip; the grace rides through short outages and must end with enough battery for the shutdown (default 5m)") {
                s.grace = d;
            }
        }
        "pre_command_timeout" => {
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600))
            {
                s.pre_command_timeout = d;
            }
        }
        "command_timeout" => {
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600))
            {
                s.command_timeout = d;
            }
        }
        "duration" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, Duration::from_secs(3600)) {
                s.duration = d;
            }
        }
        "cancel_hold" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, 7 * day) {
                s.cancel_hold = d;
            }
        }
        "command" => {
            if let Some(v) = w.argv(full, it) {
                s.command = v;
            }
        }
        "pre_command" => {
            if let Some(v) = w.argv(full, it) {
                s.pre_command = v;
            }
        }
        "recovery_probes" => {
            if let Some(v) = w.int(full, it, 1..=100) {
                s.recovery_probes = v as u32;
            }
        }
        "dry_run" => {
            if let Some(v) = w.bool(full, it) {
                s.dry_run = v;
            }
        }
        "stage" => {
            // A handful of stages covers compute, storage and network; a
            // bound keeps a typo (a port number, a year) from reading as a
            // valid, absurd order.
            if let Some(v) = w.int(full, it, 0..=i64::from(crate::stage::MAX_STAGE)) {
                s.stage = v as u32;
            }
        }
        "stage_timeout" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, Duration::from_secs(3600)) {
                s.stage_timeout = d;
            }
        }
        _ => s.dry_run_marker = w.nonempty_string(full, it).map(PathBuf::from),
    });
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

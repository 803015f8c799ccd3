//! Configuration: a TOML file, every key optional, unknown keys rejected.
//!
//! Parsing walks the document with `toml_edit` (which keeps spans) instead of
//! serde, so that *every* problem is reported at once with its key and line,
//! the way an operator fixing forty config files wants it. Defaults live in
//! the `Default` impls below and are documented in
//! `deploy/coolmesh.example.toml`; CLI flags override the file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use toml_edit::{Document, Item, Table, Value};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted key, e.g. `sensors.interval`.
    pub key: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// All problems of a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Which thermal sources to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Linux hwmon sysfs.
    Hwmon,
    /// Linux thermal zones.
    ThermalZone,
    /// The sysinfo crate.
    Sysinfo,
    /// lm-sensors output (command or file).
    LmSensors,
    /// A JSON readings file.
    File,
    /// An external command printing JSON readings.
    Exec,
    /// The BMC's sensors through `ipmitool` or freeipmi.
    Ipmi,
}

impl SourceKind {
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Hwmon => "hwmon",
            SourceKind::ThermalZone => "thermal_zone",
            SourceKind::Sysinfo => "sysinfo",
            SourceKind::LmSensors => "lm_sensors",
            SourceKind::File => "file",
            SourceKind::Exec => "exec",
            SourceKind::Ipmi => "ipmi",
        }
    }

    /// Parse the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hwmon" => SourceKind::Hwmon,
            "thermal_zone" => SourceKind::ThermalZone,
            "sysinfo" => SourceKind::Sysinfo,
            "lm_sensors" => SourceKind::LmSensors,
            "file" => SourceKind::File,
            "exec" => SourceKind::Exec,
            "ipmi" => SourceKind::Ipmi,
            _ => return None,
        })
    }
}

/// `[node]`
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Node name shown to peers and in metrics. Default: the hostname.
    pub name: String,
    /// Where identity, state machine and counters persist. Default `/var/lib/coolmesh`.
    pub state_dir: PathBuf,
}

/// `[http]`
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Listen address. Default `127.0.0.1:9876`: nothing listens on a wide
    /// address unless the operator asks (`:9876` or `0.0.0.0:9876`).
    pub listen_address: String,
    /// File holding the bearer token for POST endpoints. Default none: the
    /// mutating endpoints answer 403.
    pub token_file: Option<PathBuf>,
    /// Concurrent connections. Default 64.
    pub max_connections: usize,
    /// Concurrent connections per client address (IPv6: per /64),
    /// loopback included. Default 8.
    pub max_connections_per_ip: usize,
    /// Time from accept to the client's first byte. Default 2 s.
    pub first_byte_timeout: Duration,
    /// Time from accept to a complete request head, TLS handshake
    /// included; trickling does not extend it. Default 5 s.
    pub header_read_timeout: Duration,
    /// Web config file (Prometheus exporter-toolkit format): TLS, basic
    /// auth, extra headers. Default none: plain HTTP, open reads.
    pub web_config_file: Option<PathBuf>,
}

/// `[[sensors.thresholds]]`: override or fill in thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    /// Chip pattern (`*` matches any run of characters).
    pub chip: String,
    /// Sensor pattern.
    pub sensor: String,
    /// Max threshold to set.
    pub max: Option<f64>,
    /// Critical threshold to set.
    pub critical: Option<f64>,
    /// `true`: only fill thresholds the hardware does not report.
    pub fill_only: bool,
    /// Drop matching sensors entirely (a broken probe).
    pub ignore: bool,
}

/// `[sensors]`
#[derive(Debug, Clone, PartialEq)]
pub struct SensorsConfig {
    /// Read interval. Default 2 s: the cooling detector needs ten samples
    /// over its 30 s window to tell a cooling failure from a workload step
    /// in time for dense racks (critical a minute away); a sysfs read costs
    /// microseconds. Longer saves nothing measurable and delays detection
    /// (ten samples: 100 s at 10 s, the default before 0.2).
    pub interval: Duration,
    /// Per-source timeout. Default 1 s (half the interval): a hung source is
    /// reported down before the next round.
    pub timeout: Duration,
    /// Sources to run. Default `["hwmon", "thermal_zone"]`.
    pub sources: Vec<SourceKind>,
    /// sysfs root. Default `/sys`.
    pub sysfs: PathBuf,
    /// History kept by the cooling detector. Default 5 m: slow rises
    /// (1 C/min) are judged over all of it, fast ones over the recent 30 s.
    /// Shorter misses slow cooling losses on whole-degree sensors; longer
    /// costs a few KiB and delays the first lasting-rise vote.
    pub trend_window: Duration,
    /// JSON readings file for the `file` source.
    pub file: Option<PathBuf>,
    /// Command for the `exec` source.
    pub exec: Vec<String>,
    /// Command for the `lm_sensors` source. Default `["sensors"]`.
    pub lm_sensors_command: Vec<String>,
    /// Read lm-sensors output from this file instead of running the command.
    pub lm_sensors_file: Option<PathBuf>,
    /// `auto`, `json` or `text`. Default `auto`.
    pub lm_sensors_format: String,
    /// `ipmi` source: the IPMI settings (`ipmi_*` keys); see
    /// [`crate::sources::ipmi`].
    pub ipmi: IpmiSettings,
    /// Threshold rules, applied in order.
    pub thresholds: Vec<ThresholdRule>,
    /// `[[sensors.roles]]`: which sensors measure inlet or ambient air
    /// (they decide this node's cooling vote). Default none: labels with
    /// `inlet`/`ambient` and ACPI zones get those roles by themselves
    /// ([`crate::heating::default_role`]).
    pub roles: Vec<crate::heating::RoleRule>,
    /// `cpu_load`: `system` (default), `none`, or `file:PATH` (a file
    /// holding `0.85` or `85%`). The CPU load tells a workload step from a
    /// cooling failure; `none` judges component heating by its shape alone.
    pub cpu_load: crate::sampler::LoadSource,
}

/// The `ipmi_*` keys of `[sensors]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpmiSettings {
    /// `ipmi_command`: the tool and its arguments, run without a shell.
    /// Default `["ipmitool", "sensor"]` (this server's BMC through
    /// `/dev/ipmi0`); freeipmi: `["ipmi-sensors", "--output-sensor-thresholds",
    /// "--comma-separated-output"]`. A password argument (`-P`, freeipmi's
    /// `-p`) is refused: `ps` shows it to every user.
    pub command: Vec<String>,
    /// `ipmi_host`: a BMC over the network (`HOST` or `HOST:PORT`); adds
    /// `-I lanplus -H HOST [-p PORT]` to an ipmitool command. Default none.
    pub host: Option<String>,
    /// `ipmi_user`: the BMC user (`-U`). Default none (ipmitool's own).
    pub user: Option<String>,
    /// `ipmi_password_file`: a file holding the password (`-f`), mode 0600
    /// or 0640. Default none.
    pub password_file: Option<PathBuf>,
    /// `ipmi_interval`: from one run of the tool to the next. Default 5 s:
    /// a BMC answers a full sensor list in one to several seconds and its
    /// own sensors update about that often. Shorter loads a slow BMC for
    /// nothing; longer makes the cooling detector wait for more distinct
    /// samples (it needs a rise over ten of them).
    pub interval: Duration,
    /// `ipmi_timeout`: a run still going after this is killed and the
    /// source is down. Default 10 s. Shorter fails slow BMCs (lanplus with
    /// many sensors); longer leaves a hung BMC unseen longer.
    pub timeout: Duration,
}

impl IpmiSettings {
    /// The network BMC, when `ipmi_host` is set.
    pub fn lanplus(&self) -> Option<crate::sources::ipmi::Lanplus> {
        self.host.as_ref().map(|h| crate::sources::ipmi::Lanplus {
            host: h.clone(),
            user: self.user.clone(),
            password_file: self.password_file.clone(),
        })
    }

    /// The source's settings: the full command and the cadence.
    ///
    /// # Errors
    ///
    /// As [`crate::sources::ipmi::argv_with_lanplus`].
    pub fn source_config(&self) -> Result<crate::sources::ipmi::IpmiConfig, String> {
        Ok(crate::sources::ipmi::IpmiConfig {
            argv: crate::sources::ipmi::argv_with_lanplus(&self.command, self.lanplus().as_ref())?,
            interval: self.interval,
            timeout: self.timeout,
        })
    }
}

impl Default for IpmiSettings {
    fn default() -> Self {
        let d = crate::sources::ipmi::IpmiConfig::default();
        IpmiSettings {
            command: d.argv,
            host: None,
            user: None,
            password_file: None,
            interval: d.interval,
            timeout: d.timeout,
        }
    }
}

/// `[power]`
#[derive(Debug, Clone, PartialEq)]
pub struct PowerConfig {
    /// Targets on raw mains power. Default none (no power watching).
    pub targets: Vec<String>,
    /// `any`, `all` or `majority` of targets up means power is up. Default `any`:
    /// one dark target (a rebooting switch) must not look like an outage.
    pub policy: String,
    /// Probe interval. Default 5 s.
    pub interval: Duration,
    /// Probe timeout. Default 1 s.
    pub timeout: Duration,
    /// Interval jitter, as a fraction. Default 0.1 (±10%), so servers do not probe in lockstep.
    pub jitter: f64,
}

/// `[shutdown]`, `[overheat]` and `[cooling]`: the state machine's timers.
#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownConfig {
    /// Grace after power is lost. Default 5 m (careful servers' value).
    pub grace: Duration,
    /// The command that powers the server off. Default `["systemctl", "poweroff"]`.
    pub command: Vec<String>,
    /// Optional command run first (drain workloads).
    pub pre_command: Vec<String>,
    /// Timeout of `pre_command`. Default 60 s.
    pub pre_command_timeout: Duration,
    /// Timeout of one attempt of `command`. Default 2 m.
    pub command_timeout: Duration,
    /// How long a shutdown takes (command to power off, drain included).
    /// Default 60 s. The prediction starts the command this long before the
    /// projected critical time, and a `nut://` UPS on battery this long
    /// before its `battery.runtime` runs out. Longer keeps more margin on
    /// an optimistic runtime estimate (old batteries) and shuts down
    /// earlier in an outage that ends; shorter risks the battery or the
    /// heat ending the shutdown halfway.
    pub duration: Duration,
    /// Consecutive good probes needed to recover. Default 2.
    pub recovery_probes: u32,
    /// After an operator cancel, stay out of pre_fail this long. Default 30 m.
    pub cancel_hold: Duration,
    /// Log instead of running commands. Default false.
    pub dry_run: bool,
    /// In dry-run, append a line here for each would-be shutdown.
    pub dry_run_marker: Option<PathBuf>,
    /// `[overheat] sustain`: a sensor at critical this long triggers pre_fail. Default 30 s.
    pub overheat_sustain: Duration,
    /// `[overheat] grace`. Default 60 s.
    pub overheat_grace: Duration,
    /// `[cooling] grace`: after a quorum of nodes overheats. Default 2 m.
    pub cooling_grace: Duration,
    /// `[cooling] heating_rate`: C/min above which a node counts as heating fast. Default 3.
    pub heating_rate: f64,
    /// `[cooling] horizon`: a sustained rise reaching critical within this
    /// time votes however slow. Default 15 m.
    pub cooling_horizon: Duration,
    /// `[cooling] load_step`: a CPU load rise (0..1) that marks a workload
    /// step. Default 0.25.
    pub load_step: f64,
    /// `[cooling] load_settle`: component heating after a load step is the
    /// workload's for this long. Default 3 m.
    pub load_settle: Duration,
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSection {
    /// Run the cluster at all. Default true; false makes a lone agent that
    /// trusts only its own probes and sensors (careful servers' behaviour).
    pub enabled: bool,
    /// Cluster name; agents with another name are not members. Default `coolmesh`.
    pub name: String,
    /// libp2p listen multiaddrs. Default `/ip4/127.0.0.1/tcp/9877`: nothing
    /// listens on the network unless the operator asks
    /// (`/ip4/0.0.0.0/tcp/9877` in the example config).
    pub listen: Vec<String>,
    /// Bootstrap multiaddrs for routed networks (`/p2p/<id>` optional). Default none.
    pub peers: Vec<String>,
    /// mDNS discovery on the LAN. Default true.
    pub mdns: bool,
    /// mDNS query interval. Default 3 s (the library default is 5 min).
    pub mdns_interval: Duration,
    /// Private network key file (`swarm.key` format, `coolmesh keygen --psk`). Default none,
    /// and then the cluster refuses to start unless `insecure_no_psk` is set:
    /// without the key anyone on the LAN who runs coolmesh joins by mDNS.
    pub psk_file: Option<PathBuf>,
    /// Start the cluster without `psk_file`. Default false. Only for a lab
    /// or the demo: every host that can reach the port may join, gossip and
    /// (one per address) vote.
    pub insecure_no_psk: bool,
    /// The room operator's public key (`ed25519:<base64>`, printed by
    /// `coolmesh roster keygen`). Default none. When set, a roster signed
    /// with that key (spread by gossip, newest version wins) decides who is
    /// a member: records of identities outside it are refused, never vote
    /// and are never relayed. Until the first roster arrives the host rules
    /// apply (one vote per address, direct peers only).
    pub operator_key: Option<String>,
    /// Take room commands (`coolmesh room cancel|maintenance`, sent by a
    /// member to every member). Default true. With `operator_key` set only
    /// commands signed by the operator key are taken; without it any
    /// member's command is (the token of the agent it was posted to
    /// authorised it). False: this node takes only its own HTTP commands.
    pub room_commands: bool,
    /// Only these PeerIds may join. Default none (anyone with the PSK).
    pub allowlist: Vec<String>,
    /// Relay exchange interval. Default 400 ms.
    pub sync_interval: Duration,
    /// Random anti-entropy interval. Default 2 s.
    pub anti_entropy_interval: Duration,
    /// Peers per anti-entropy round. Default 1.
    pub fanout: usize,
    /// A peer whose record stops advancing is suspect after this. Default 4 s.
    pub suspect_after: Duration,
    /// ... and dead (stale) after this. Default 8 s: death seen within 10 s.
    pub dead_after: Duration,
    /// Dead peers' last records stay visible this long. Default 1 h.
    pub retention: Duration,
    /// Connection caps and the handshake timeout: keys `handshake_timeout`,
    /// `max_pending_incoming`, `max_incoming`, `max_connections_per_peer`,
    /// `max_streams_per_connection`, `max_members` (defaults and trade-offs:
    /// [`crate::cluster::config::ConnLimits`]).
    pub limits: crate::cluster::config::ConnLimits,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `info`, `debug`, ... or a full `tracing` filter. Default `info`.
    pub level: String,
    /// `logfmt` (human) or `json`. Default `logfmt`.
    pub format: String,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[node]`
    pub node: NodeConfig,
    /// `[http]`
    pub http: HttpConfig,
    /// `[sensors]`
    pub sensors: SensorsConfig,
    /// `[power]`
    pub power: PowerConfig,
    /// `[shutdown]`, `[overheat]`, `[cooling]`
    pub shutdown: ShutdownConfig,
    /// `[cluster]`
    pub cluster: ClusterSection,
    /// `[log]`
    pub log: LogConfig,
    /// `[journal]`: the decision journal's bounds (see `crate::journal`).
    pub journal: crate::journal::JournalConfig,
}

fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coolmesh".into())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: NodeConfig {
                name: hostname(),
                state_dir: PathBuf::from("/var/lib/coolmesh"),
            },
            http: HttpConfig {
                listen_address: "127.0.0.1:9876".into(),
                token_file: None,
                max_connections: 64,
                max_connections_per_ip: 8,
                first_byte_timeout: Duration::from_secs(2),
                header_read_timeout: Duration::from_secs(5),
                web_config_file: None,
            },
            sensors: SensorsConfig {
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                sources: vec![SourceKind::Hwmon, SourceKind::ThermalZone],
                sysfs: PathBuf::from("/sys"),
                trend_window: Duration::from_secs(300),
                file: None,
                exec: Vec::new(),
                lm_sensors_command: vec!["sensors".into()],
                lm_sensors_file: None,
                lm_sensors_format: "auto".into(),
                ipmi: IpmiSettings::default(),
                thresholds: Vec::new(),
                roles: Vec::new(),
                cpu_load: crate::sampler::LoadSource::System,
            },
            power: PowerConfig {
                targets: Vec::new(),
                policy: "any".into(),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                jitter: 0.1,
            },
            shutdown: ShutdownConfig {
                grace: Duration::from_secs(300),
                command: vec!["systemctl".into(), "poweroff".into()],
                pre_command: Vec::new(),
                pre_command_timeout: Duration::from_secs(60),
                command_timeout: Duration::from_secs(120),
                duration: Duration::from_secs(60),
                recovery_probes: 2,
                cancel_hold: Duration::from_secs(1800),
                dry_run: false,
                dry_run_marker: None,
                overheat_sustain: Duration::from_secs(30),
                overheat_grace: Duration::from_secs(60),
                cooling_grace: Duration::from_secs(120),
                heating_rate: 3.0,
                cooling_horizon: Duration::from_secs(15 * 60),
                load_step: 0.25,
                load_settle: Duration::from_secs(180),
            },
            log: LogConfig {
                level: "info".into(),
                format: "logfmt".into(),
            },
            journal: crate::journal::JournalConfig::default(),
            cluster: ClusterSection {
                enabled: true,
                name: "coolmesh".into(),
                listen: vec!["/ip4/127.0.0.1/tcp/9877".into()],
                peers: Vec::new(),
                mdns: true,
                mdns_interval: Duration::from_secs(3),
                psk_file: None,
                insecure_no_psk: false,
                operator_key: None,
                room_commands: true,
                allowlist: Vec::new(),
                sync_interval: Duration::from_millis(400),
                anti_entropy_interval: Duration::from_secs(2),
                fanout: 1,
                suspect_after: Duration::from_secs(4),
                dead_after: Duration::from_secs(8),
                retention: Duration::from_secs(3600),
                limits: crate::cluster::config::ConnLimits::default(),
            },
        }
    }
}

/// Walks a document, collecting errors.
struct Walker<'a> {
    src: &'a str,
    errors: Vec<ConfigError>,
    /// The line of every key and array element met.
    lines: KeyLines,
}

impl<'a> Walker<'a> {
    fn line(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        span.map(|s| {
            self.src[..s.start.min(self.src.len())]
                .bytes()
                .filter(|b| *b == b'\n')
                .count()
                + 1
        })
    }

    fn err(&mut self, key: &str, span: Option<std::ops::Range<usize>>, msg: impl Into<String>) {
        let line = self.line(span);
        self.errors.push(ConfigError {
            key: key.to_string(),
            line,
            message: msg.into(),
        });
    }

    /// Visit every key of `table`, calling `f(walker, key, full_key, item)`;
    /// `f` returns false for an unknown key.
    fn table(
        &mut self,
        prefix: &str,
        table: &Table,
        known: &[&str],
        mut f: impl FnMut(&mut Self, &str, &str, &Item),
    ) {
        for (k, item) in table.iter() {
            let full = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            if known.contains(&k) {
                let span = table
                    .key(k)
                    .and_then(|key| key.span())
                    .or_else(|| item.span());
                if let Some(l) = self.line(span) {
                    self.lines.0.insert(full.clone(), l);
                }
                f(self, k, &full, item);
            } else {
                let span = table
                    .key(k)
                    .and_then(|key| key.span())
                    .or_else(|| item.span());
                let hint = suggest(k, known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    &full,
                    span,
                    format!("unknown key{hint}; known keys here: {}", known.join(", ")),
                );
            }
        }
    }

    fn string(&mut self, key: &str, item: &Item) -> Option<String> {
        match item.as_value() {
            Some(Value::String(s)) => Some(s.value().to_string()),
            _ => {
                self.err(
                    key,
                    item.span(),
                    format!("expected a string, found {}", type_name(item)),
                );
                None
            }
        }
    }

    fn nonempty_string(&mut self, key: &str, item: &Item) -> Option<String> {
        let s = self.string(key, item)?;
        if s.trim().is_empty() {
            self.err(key, item.span(), "must not be empty");
            return None;
        }
        Some(s)
    }

    fn bool(&mut self, key: &str, item: &Item) -> Option<bool> {
        match item.as_value().and_then(Value::as_bool) {
            Some(b) => Some(b),
            None => {
                self.err(
                    key,
                    item.span(),
                    format!("expected true or false, found {}", type_name(item)),
                );
                None
            }
        }
    }

    fn float(
        &mut self,
        key: &str,
        item: &Item,
        range: std::ops::RangeInclusive<f64>,
    ) -> Option<f64> {
        let v = match item.as_value() {
            Some(Value::Float(f)) => *f.value(),
            Some(Value::Integer(i)) => *i.value() as f64,
            _ => {
                self.err(
                    key,
                    item.span(),
                    format!("expected a number, found {}", type_name(item)),
                );
                return None;
            }
        };
        if !range.contains(&v) {
            self.err(
                key,
                item.span(),
                format!("{v} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        Some(v)
    }

    fn int(&mut self, key: &str, item: &Item, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let Some(v) = item.as_value().and_then(Value::as_integer) else {
            self.err(
                key,
                item.span(),
                format!("expected an integer, found {}", type_name(item)),
            );
            return None;
        };
        if !range.contains(&v) {
            self.err(
                key,
                item.span(),
                format!("{v} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        Some(v)
    }

    fn duration(
        &mut self,
        key: &str,
        item: &Item,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let s = self.string(key, item)?;
        match humantime::parse_duration(&s) {
            Ok(d) if d < min || d > max => {
                self.err(
                    key,
                    item.span(),
                    format!(
                        "{s:?} is out of range {}..={}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    key,
                    item.span(),
                    format!("{s:?} is not a duration ({e}); write e.g. \"10s\", \"5m\", \"1h30m\""),
                );
                None
            }
        }
    }

    /// A grace or sustain time: zero is refused with `why` (what a zero
    /// would do to the room).
    fn nonzero_duration(
        &mut self,
        key: &str,
        item: &Item,
        max: Duration,
        why: &str,
    ) -> Option<Duration> {
        let d = self.duration(key, item, Duration::ZERO, max)?;
        if d.is_zero() {
            self.err(key, item.span(), format!("must not be zero: {why}"));
            return None;
        }
        Some(d)
    }

    fn strings(&mut self, key: &str, item: &Item) -> Option<Vec<String>> {
        let Some(arr) = item.as_value().and_then(Value::as_array) else {
            self.err(
                key,
                item.span(),
                format!("expected an array of strings, found {}", type_name(item)),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in arr.iter().enumerate() {
            if let Some(l) = self.line(v.span()) {
                self.lines.0.insert(format!("{key}[{i}]"), l);
            }
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    ok = false;
                    self.err(
                        &format!("{key}[{i}]"),
                        v.span(),
                        format!("expected a string, found {}", v.type_name()),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn argv(&mut self, key: &str, item: &Item) -> Option<Vec<String>> {
        let v = self.strings(key, item)?;
        if v.first().is_none_or(|p| p.trim().is_empty()) {
            self.err(
                key,
                item.span(),
                "expected a command as an array, program first, e.g. [\"systemctl\", \"poweroff\"]",
            );
            return None;
        }
        Some(v)
    }

    fn one_of(&mut self, key: &str, item: &Item, allowed: &[&str]) -> Option<String> {
        let s = self.string(key, item)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.err(
                key,
                item.span(),
                format!("{s:?} is not one of {}", allowed.join(", ")),
            );
            None
        }
    }

    fn sub_table<'t>(&mut self, key: &str, item: &'t Item) -> Option<&'t Table> {
        match item.as_table() {
            Some(t) => Some(t),
            None => {
                self.err(
                    key,
                    item.span(),
                    format!("expected a table [{key}], found {}", type_name(item)),
                );
                None
            }
        }
    }
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => v.type_name(),
        Item::Table(_) => "table",
        Item::ArrayOfTables(_) => "array of tables",
    }
}

/// Closest known key by edit distance, for "did you mean".
fn suggest<'k>(k: &str, known: &[&'k str]) -> Option<&'k str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|c| (dist(k, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

const SECTIONS: &[&str] = &[
    "node", "http", "sensors", "power", "shutdown", "overheat", "cooling", "cluster", "log",
    "journal",
];

/// Where each key of a config file is: dotted key (array elements as
/// `key[i]`) to its 1-based line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyLines(pub std::collections::BTreeMap<String, usize>);

impl KeyLines {
    /// The line of `key`, or of the nearest enclosing key or element that
    /// is in the file (`shutdown.command[0]` falls back to
    /// `shutdown.command`, then to `shutdown`). `None`: not in the file
    /// (the default applies).
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.0.get(k) {
                return Some(*l);
            }
            k = match k.rfind(['.', '[']) {
                Some(i) => &k[..i],
                None => return None,
            };
        }
    }

    /// A [`ConfigError`] for `key` with its line.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            line: self.line(key),
            message: message.into(),
        }
    }
}

/// A config document read as far as it goes: the configuration (a key
/// with a bad value keeps its default), every problem, and each key's line.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The configuration, defaults where a value was bad.
    pub config: Config,
    /// Every problem; empty when the file is good.
    pub errors: Vec<ConfigError>,
    /// Where each key is.
    pub lines: KeyLines,
}

/// Parse a config document. Returns every problem found.
pub fn parse(src: &str) -> Result<Config, ConfigErrors> {
    let p = parse_report(src)?;
    if p.errors.is_empty() {
        Ok(p.config)
    } else {
        Err(ConfigErrors(p.errors))
    }
}

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
                ],
                |w, k, full, it| match k {
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

fn parse_sensors(w: &mut Walker<'_>, t: &Table, s: &mut SensorsConfig) {
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

fn parse_cluster(w: &mut Walker<'_>, t: &Table, c: &mut ClusterSection) {
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
        "enabled" | "mdns" | "insecure_no_psk" | "room_commands" => {
            if let Some(v) = w.bool(full, it) {
                match k {
                    "enabled" => c.enabled = v,
                    "mdns" => c.mdns = v,
                    "room_commands" => c.room_commands = v,
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

fn parse_shutdown(w: &mut Walker<'_>, t: &Table, s: &mut ShutdownConfig) {
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
        _ => s.dry_run_marker = w.nonempty_string(full, it).map(PathBuf::from),
    });
}

/// Every power target must parse, and none may repeat.
fn check_targets(w: &mut Walker<'_>, full: &str, it: &Item, targets: &[String]) {
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
fn cross_check(w: &mut Walker<'_>, c: &Config) {
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

/// The log levels `log.level` takes, alone or after `TARGET=`.
pub const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Check `log.level` (also `--log.level`): a level, or a `tracing` filter of
/// comma-separated directives, each a level or `TARGET=LEVEL`. A bare word
/// that is not a level is refused: `tracing` would take `verbose` for a
/// target name and log nothing at all from coolmesh.
pub fn check_log_level(level: &str) -> Result<(), String> {
    let allowed = || {
        format!(
            "allowed: {}, or a filter such as \"coolmesh_agent=debug,info\"",
            LOG_LEVELS.join(", ")
        )
    };
    let is_level = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        LOG_LEVELS.contains(&s.as_str()) || matches!(s.as_str(), "0" | "1" | "2" | "3" | "4" | "5")
    };
    for d in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match d.rsplit_once('=') {
            None if !is_level(d) => return Err(format!("{d:?} is not a log level; {}", allowed())),
            Some((_, l)) if !is_level(l) => {
                return Err(format!("{d:?}: {l:?} is not a log level; {}", allowed()))
            }
            _ => {}
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("{level:?} is not a log filter ({e}); {}", allowed()))
}

/// Turn node_exporter-style `:9876` into `0.0.0.0:9876`, and check the address.
pub fn normalize_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse().map_err(|_| format!("{s:?} is not host:port with an IP address (e.g. \"127.0.0.1:9876\", \":9876\", \"[::1]:9876\")"))
}

/// Does a `*` pattern match `s`?
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Apply threshold rules to readings (in place); drops ignored sensors.
pub fn apply_thresholds(rules: &[ThresholdRule], readings: &mut Vec<crate::thermal::Reading>) {
    if rules.is_empty() {
        return;
    }
    readings.retain_mut(|r| {
        for rule in rules {
            if !glob_match(&rule.chip, &r.chip) || !glob_match(&rule.sensor, &r.sensor) {
                continue;
            }
            if rule.ignore {
                return false;
            }
            if let Some(m) = rule.max {
                if !rule.fill_only || r.max_celsius.is_none() {
                    r.max_celsius = Some(m);
                }
            }
            if let Some(c) = rule.critical {
                if !rule.fill_only || r.critical_celsius.is_none() {
                    r.critical_celsius = Some(c);
                }
            }
        }
        true
    });
}

/// Why the cluster must not start (the agent refuses, `check-config` fails):
/// no pre-shared key and no explicit opt-in. Checked after the command
/// line's overrides (`--cluster.psk-file`, `--cluster.disable`,
/// `--cluster.insecure-no-psk`), so it is not part of [`parse`].
pub fn cluster_trust_error(cfg: &Config) -> Option<String> {
    let c = &cfg.cluster;
    if !c.enabled || c.psk_file.is_some() || c.insecure_no_psk {
        return None;
    }
    Some(
        "cluster.psk_file is not set, and the cluster does not start without a pre-shared key: anyone on the LAN who runs coolmesh would join it (by mDNS) and vote. Create a key once with `coolmesh keygen --psk --out /etc/coolmesh/swarm.key`, copy it to every server (root:coolmesh 0640) and set cluster.psk_file; or set cluster.enabled = false for a lone agent (--cluster.disable), or cluster.insecure_no_psk = true for a lab".to_string(),
    )
}

/// What `check-config` warns about (exit 0): a cluster that anyone on the
/// LAN can join (explicitly allowed), or any holder of the key.
pub fn trust_warnings(cfg: &Config) -> Vec<String> {
    let c = &cfg.cluster;
    let mut out = Vec::new();
    if !c.enabled {
        return out;
    }
    if c.psk_file.is_none() && c.insecure_no_psk {
        out.push(
            "cluster.insecure_no_psk = true and no cluster.psk_file: anyone on the LAN who runs coolmesh joins the cluster (by mDNS) and its records reach the room; create a key once with `coolmesh keygen --psk --out /etc/coolmesh/swarm.key`, copy it to every server (root:coolmesh 0640) and set psk_file".to_string(),
        );
    }
    if c.allowlist.is_empty() && c.operator_key.is_none() {
        out.push(
            "neither cluster.allowlist nor cluster.operator_key is set: any holder of the key joins with as many identities as it likes (votes are limited to one per host address); set operator_key and manage the room with `coolmesh roster`, or list your servers' PeerIds in allowlist (`coolmesh keygen --state-dir DIR` prints each one)".to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_config_warns_about_an_open_cluster() {
        let mut c = Config::default();
        // No key and no opt-in: an error, not a warning.
        let e = cluster_trust_error(&c).expect("refused");
        assert!(e.contains("cluster.psk_file is not set"), "{e}");
        assert!(e.contains("cluster.insecure_no_psk = true"), "{e}");
        c.cluster.insecure_no_psk = true;
        assert_eq!(cluster_trust_error(&c), None);
        let w = trust_warnings(&c);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("cluster.insecure_no_psk = true"), "{w:?}");
        assert!(
            w[1].contains("cluster.allowlist nor cluster.operator_key"),
            "{w:?}"
        );
        c.cluster.insecure_no_psk = false;
        c.cluster.psk_file = Some("/etc/coolmesh/swarm.key".into());
        assert_eq!(cluster_trust_error(&c), None);
        c.cluster.allowlist = vec!["12D3KooWA".into()];
        assert!(trust_warnings(&c).is_empty());
        c.cluster.allowlist.clear();
        c.cluster.operator_key = Some("ed25519:x".into());
        assert!(trust_warnings(&c).is_empty(), "a roster closes the room");
        c.cluster.psk_file = None;
        c.cluster.enabled = false;
        assert_eq!(cluster_trust_error(&c), None, "a lone agent needs no key");
        assert!(
            trust_warnings(&c).is_empty(),
            "a lone agent has nothing to join"
        );
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").expect("empty"), Config::default());
    }

    #[test]
    fn design_example_parses() {
        let src = r#"
[node]
name = "rack3-srv12"
state_dir = "/var/lib/coolmesh"

[http]
token_file = "/etc/coolmesh/token"
web_config_file = "/etc/coolmesh/web-config.yml"

[sensors]
interval = "10s"
sources = ["hwmon", "thermal_zone"]

[power]
targets = ["icmp://10.0.0.254", "tcp://10.0.0.253:22", "http://pdu.local/status"]
policy = "any"
interval = "5s"
timeout = "1s"

[shutdown]
grace = "5m"
command = ["systemctl", "poweroff"]
"#;
        let c = parse(src).expect("valid");
        assert_eq!(c.node.name, "rack3-srv12");
        assert_eq!(c.power.targets.len(), 3);
        assert_eq!(c.shutdown.grace, Duration::from_secs(300));
        assert_eq!(
            c.http.token_file,
            Some(PathBuf::from("/etc/coolmesh/token"))
        );
        assert_eq!(
            c.http.web_config_file,
            Some(PathBuf::from("/etc/coolmesh/web-config.yml"))
        );
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let src = "[sensors]\nintervall = \"10s\"\ninterval = \"ten seconds\"\nsources = [\"hwmon\", \"ipmii\"]\n\n[power]\npolicy = \"most\"\njitter = 2.0\n[bogus]\nx = 1\n[shutdown]\ncommand = []\nrecovery_probes = \"2\"\n";
        let errs = parse(src).expect_err("invalid").0;
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let want = [
            ("sensors.intervall", 2, "did you mean `interval`"),
            ("sensors.interval", 3, "not a duration"),
            ("sensors.sources", 4, "unknown source \"ipmii\""),
            ("power.policy", 7, "not one of any, all, majority"),
            ("power.jitter", 8, "out of range"),
            ("bogus", 9, "unknown key"),
            ("shutdown.command", 12, "expected a command"),
            ("shutdown.recovery_probes", 13, "expected an integer"),
        ];
        for (key, line, needle) in want {
            assert!(
                errs.iter()
                    .any(|e| e.key == key && e.line == Some(line) && e.message.contains(needle)),
                "missing {key} line {line} {needle:?} in {shown:#?}"
            );
        }
        assert_eq!(errs.len(), want.len(), "{shown:#?}");
    }

    #[test]
    fn bad_power_targets_are_named_with_their_line() {
        let src = "[power]\ntargets = [\n  \"icmp://10.0.0.254\",\n  \"tcp://10.0.0.253\",\n  \"https://pdu/status\",\n  \"icmp://10.0.0.254\",\n]\n";
        let errs = parse(src).expect_err("invalid").0;
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 3, "{shown:#?}");
        assert!(
            shown[0].starts_with("line 4: power.targets[1]")
                && shown[0].contains("tcp://10.0.0.253:22"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("line 5: power.targets[2]") && shown[1].contains("exec"),
            "{shown:#?}"
        );
        assert!(
            shown[2].starts_with("line 6: power.targets[3]") && shown[2].contains("twice"),
            "{shown:#?}"
        );
    }

    #[test]
    fn cluster_section() {
        let c = parse("[cluster]\nname = \"room-1\"\nlisten = [\"/ip4/0.0.0.0/tcp/9877\"]\npeers = [\"/ip4/10.0.0.12/tcp/9877\"]\nmdns = false\n").expect("valid");
        assert_eq!(c.cluster.name, "room-1");
        assert!(!c.cluster.mdns);
        let c = parse("[cluster]\nhandshake_timeout = \"3s\"\nmax_pending_incoming = 8\nmax_incoming = 100\nmax_connections_per_peer = 3\nmax_streams_per_connection = 16\nmax_members = 200\n").expect("valid");
        let l = c.cluster.limits;
        assert_eq!(
            (
                l.handshake_timeout,
                l.max_pending_incoming,
                l.max_incoming,
                l.max_connections_per_peer,
                l.max_streams_per_connection,
                l.max_members
            ),
            (Duration::from_secs(3), 8, 100, 3, 16, 200)
        );
        let errs = parse("[cluster]\nmax_connections_per_peer = 1\nmax_incoming = 0\nhandshake_timeout = \"1ms\"\nmax_streams_per_connection = 100000\nmax_members = 3\n").expect_err("bad").to_string();
        for want in [
            "line 2: cluster.max_connections_per_peer",
            "line 3: cluster.max_incoming",
            "line 4: cluster.handshake_timeout",
            "line 5: cluster.max_streams_per_connection",
            "line 6: cluster.max_members",
        ] {
            assert!(errs.contains(want), "{want}: {errs}");
        }
        let errs = parse("[cluster]\nlisten = [\"0.0.0.0:9877\"]\nallowlist = [\"nope\"]\nsuspect_after = \"10s\"\nname = \"bad name\"\n").expect_err("bad").to_string();
        for needle in [
            "line 2: cluster.listen[0]",
            "line 3: cluster.allowlist[0]",
            "line 5: cluster.name",
            "cluster.dead_after: must be longer",
        ] {
            assert!(errs.contains(needle), "{needle} in {errs}");
        }
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("[node]\nname = \"x\"\nstate_dir = \n").expect_err("syntax");
        assert_eq!(e.0[0].line, Some(3), "{e}");
    }

    #[test]
    fn cross_checks() {
        let e = parse("[sensors]\nsources = [\"file\"]\ninterval = \"1s\"\ntimeout = \"2s\"\n")
            .expect_err("bad")
            .to_string();
        assert!(
            e.contains("sensors.file") && e.contains("sensors.timeout"),
            "{e}"
        );
    }

    #[test]
    fn zero_graces_and_overlapping_probes_are_refused_with_their_lines() {
        let src = "[shutdown]\ngrace = \"0s\"\n[overheat]\nsustain = \"0s\"\ngrace = \"0ms\"\n[cooling]\ngrace = \"0s\"\n[power]\ninterval = \"1s\"\ntimeout = \"1s\"\n";
        let errs = parse(src).expect_err("bad").to_string();
        for want in [
            "line 2: shutdown.grace: must not be zero",
            "line 4: overheat.sustain: must not be zero",
            "line 5: overheat.grace: must not be zero",
            "line 7: cooling.grace: must not be zero",
            "line 10: power.timeout: 1s must be shorter than power.interval (1s)",
        ] {
            assert!(errs.contains(want), "{want}\n{errs}");
        }
        assert_eq!(errs.lines().count(), 5, "{errs}");
        // A cross-check on a key not in the file names its section's line.
        let e = parse("[node]\nname = \"x\"\n[sensors]\nsources = [\"file\"]\n")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("line 3: sensors.file: the `file` source"), "{e}");
    }

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "DEBUG",
            "warn",
            "off",
            "coolmesh_agent=debug,info",
            "info,libp2p_swarm=trace",
            "coolmesh_agent::cluster=debug",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
            assert!(parse(&format!("[log]\nlevel = {ok:?}\n")).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("verbose", "\"verbose\" is not a log level"),
            ("warning", "\"warning\" is not a log level"),
            ("info,coolmesh_agent=loud", "\"loud\" is not a log level"),
        ] {
            let e = check_log_level(bad).expect_err(bad);
            assert!(
                e.contains(needle) && e.contains("allowed: trace, debug, info, warn, error, off"),
                "{bad}: {e}"
            );
        }
        let e = parse("[log]\nformat = \"json\"\nlevel = \"verbose\"\n")
            .expect_err("bad")
            .to_string();
        assert!(e.starts_with("line 3: log.level: \"verbose\""), "{e}");
    }

    #[test]
    fn key_lines_fall_back_to_the_enclosing_key() {
        let p = parse_report(
            "[shutdown]\ncommand = [\n  \"systemctl\",\n  \"poweroff\",\n]\n[power]\n",
        )
        .expect("syntax");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.lines.line("shutdown.command[0]"), Some(3));
        assert_eq!(p.lines.line("shutdown.command[1]"), Some(4));
        assert_eq!(p.lines.line("shutdown.command"), Some(2));
        assert_eq!(p.lines.line("shutdown.grace"), Some(1));
        assert_eq!(p.lines.line("power.targets[0]"), Some(6));
        assert_eq!(p.lines.line("log.level"), None);
        // Bad values keep their defaults and every error is there.
        let p =
            parse_report("[shutdown]\ngrace = \"0s\"\n[log]\nlevel = \"loud\"\n").expect("syntax");
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.config.shutdown.grace, Config::default().shutdown.grace);
        assert!(parse_report("[x\n").is_err(), "a syntax error stops it");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            normalize_listen(":9876").expect("ok").to_string(),
            "0.0.0.0:9876"
        );
        assert!(normalize_listen("127.0.0.1:9876").is_ok());
        assert!(normalize_listen("[::1]:9876").is_ok());
        assert!(normalize_listen("localhost").is_err());
        let e = parse("[http]\nlisten_address = \"nonsense\"\n")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("line 2: http.listen_address"), "{e}");
    }

    #[test]
    fn glob_table() {
        for (p, s, want) in [
            ("*", "anything", true),
            ("nvme*", "nvme_0", true),
            ("nvme*", "xnvme", false),
            ("*temp*", "platform_coretemp_0", true),
            ("temp1", "temp1", true),
            ("temp1", "temp10", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob_match(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn threshold_rules_fill_override_ignore() {
        let src = "[[sensors.thresholds]]\nchip = \"thermal_zone*\"\ncritical = 90\nmode = \"fill\"\n[[sensors.thresholds]]\nchip = \"nvme*\"\nmax = 70\n[[sensors.thresholds]]\nchip = \"broken\"\nignore = true\n";
        let c = parse(src).expect("valid");
        let mut rs = vec![
            crate::thermal::Reading::new("thermal_zone0", "cpu", 40.0, "t"),
            crate::thermal::Reading {
                max_celsius: Some(80.0),
                ..crate::thermal::Reading::new("nvme_0", "temp1", 40.0, "t")
            },
            crate::thermal::Reading::new("broken", "temp1", 40.0, "t"),
        ];
        rs[0].critical_celsius = None;
        apply_thresholds(&c.sensors.thresholds, &mut rs);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].critical_celsius, Some(90.0));
        assert_eq!(rs[1].max_celsius, Some(70.0));
        let e = parse("[[sensors.thresholds]]\nchip = \"x\"\n")
            .expect_err("empty rule")
            .to_string();
        assert!(e.contains("line 1: sensors.thresholds[0]"), "{e}");
    }
}

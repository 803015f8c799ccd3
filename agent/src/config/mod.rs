//! Configuration: a TOML file, every key optional, unknown keys rejected.
//!
//! Parsing walks the document with `toml_edit` (which keeps spans) instead of
//! serde, so that *every* problem is reported at once with its key and line,
//! the way an operator fixing forty config files wants it. Defaults live in
//! the `Default` impls below and are documented in
//! `deploy/coolmesh.example.toml`; CLI flags override the file.
//!
//! # Layout
//!
//! - `mod.rs` (this file): the types of every section with their defaults,
//!   [`parse`], and the checks the command line shares (log level, listen
//!   address, cluster trust).
//! - `read/`: each section of the file read into its part (its own map).
//! - `walker`: the generic TOML walker (the line of every key, every problem
//!   with key and line, "did you mean").
//! - `tests`: every key, its errors with key and line, and the defaults.

mod read;
#[cfg(test)]
mod tests;
mod walker;

pub use read::parse_report;
pub use walker::{ConfigError, ConfigErrors, KeyLines};

use crate::thermal::ThresholdRule;
use std::path::PathBuf;
use std::time::Duration;
use toml_edit::Value;

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

/// The default HTTP port: free in the Prometheus wiki's "Default port
/// allocations" next to the last exporters listed there (9876, the old
/// default, is Sachet's); docs/reference.md, "Flags".
pub const DEFAULT_HTTP_PORT: u16 = 10027;

/// `[http]`
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Listen address. Default `127.0.0.1:10027` ([`DEFAULT_HTTP_PORT`]):
    /// nothing listens on a wide address unless the operator asks
    /// (`:10027` or `0.0.0.0:10027`).
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
    /// `advertise`: the `host:port` this agent publishes in its record for
    /// Prometheus to scrape (`GET /v1/http_sd`). Default none: the listen
    /// address when it is a specific IP (loopback included); on a wildcard
    /// listen (`:10027`), the address the kernel routes toward the first
    /// `cluster.peers` bootstrap host (else toward the default route) with
    /// the listen port, else the hostname. Set it when Prometheus reaches
    /// the agents through another network, a DNS name or NAT; a wrong
    /// guess only mislabels discovery, never the cluster.
    pub advertise: Option<String>,
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
pub struct ShutdownSection {
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
    /// Shutdown stage (`crate::stage`). Default 0: the first to go down.
    /// A node of stage `k > 0` (storage, network) holds its command while
    /// alive lower-stage nodes going down for the same trigger have not
    /// finished theirs, up to `stage_timeout`. Higher stages stay up
    /// longer for the nodes that depend on them and spend more of the
    /// UPS battery; every node at 0 is the unstaged behaviour.
    pub stage: u32,
    /// How long past its own deadline a staged node (stage > 0) waits for
    /// the lower stages. Default 2 m (`FsmConfig::stage_timeout`, where
    /// the trade-off is written); 0 turns the wait off.
    pub stage_timeout: Duration,
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
    /// `cluster.swim`: run SWIM membership beside the record exchange
    /// (docs/scale.md step 1); see `ClusterConfig::swim` for the default
    /// and the trade-off.
    pub swim: bool,
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
    pub shutdown: ShutdownSection,
    /// `[cluster]`
    pub cluster: ClusterSection,
    /// `[log]`
    pub log: LogConfig,
    /// `[journal]`: the decision journal's bounds (see `crate::journal`).
    pub journal: crate::journal::JournalConfig,
    /// `[power_on]`: ordered power-on by Wake-on-LAN (see `crate::power_on`).
    pub power_on: crate::power_on::PowerOnConfig,
}

fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coolmesh".into())
}

impl Default for Config {
    /// Every default is defined once, beside its documentation, by the part
    /// it configures (`FsmConfig`, `shutdown::ShutdownConfig`, `HeatConfig`,
    /// `ClusterConfig`); the file's sections start from those.
    fn default() -> Self {
        let fsm = crate::fsm::FsmConfig::default();
        let exec = crate::shutdown::ShutdownConfig::default();
        let heat = crate::heating::HeatConfig::default();
        let cl = crate::cluster::ClusterConfig::default();
        Config {
            node: NodeConfig {
                name: hostname(),
                state_dir: PathBuf::from("/var/lib/coolmesh"),
            },
            http: HttpConfig {
                listen_address: format!("127.0.0.1:{DEFAULT_HTTP_PORT}"),
                token_file: None,
                max_connections: 64,
                max_connections_per_ip: 8,
                first_byte_timeout: Duration::from_secs(2),
                header_read_timeout: Duration::from_secs(5),
                web_config_file: None,
                advertise: None,
            },
            sensors: SensorsConfig {
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                sources: vec![SourceKind::Hwmon, SourceKind::ThermalZone],
                sysfs: PathBuf::from("/sys"),
                trend_window: heat.window,
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
            shutdown: ShutdownSection {
                grace: fsm.power_grace,
                command: exec.command,
                pre_command: exec.pre_command.unwrap_or_default(),
                pre_command_timeout: exec.pre_command_timeout,
                command_timeout: exec.command_timeout,
                duration: fsm.shutdown_duration,
                recovery_probes: fsm.recovery_probes,
                cancel_hold: fsm.cancel_hold,
                dry_run: exec.dry_run,
                dry_run_marker: exec.dry_run_marker,
                stage: crate::stage::DEFAULT_STAGE,
                stage_timeout: fsm.stage_timeout,
                overheat_sustain: fsm.overheat_sustain,
                overheat_grace: fsm.overheat_grace,
                cooling_grace: fsm.cooling_grace,
                heating_rate: heat.heating_rate,
                cooling_horizon: heat.horizon,
                load_step: heat.load_step,
                load_settle: heat.load_settle,
            },
            log: LogConfig {
                level: "info".into(),
                format: "logfmt".into(),
            },
            journal: crate::journal::JournalConfig::default(),
            power_on: crate::power_on::PowerOnConfig::default(),
            cluster: ClusterSection {
                enabled: true,
                name: cl.name,
                listen: cl.listen.iter().map(|a| a.to_string()).collect(),
                peers: Vec::new(),
                mdns: cl.mdns,
                mdns_interval: cl.mdns_query_interval,
                psk_file: None,
                insecure_no_psk: false,
                operator_key: None,
                room_commands: cl.room_commands,
                swim: cl.swim,
                allowlist: Vec::new(),
                sync_interval: cl.sync_interval,
                anti_entropy_interval: cl.anti_entropy_interval,
                fanout: cl.fanout,
                suspect_after: cl.suspect_after,
                dead_after: cl.dead_after,
                retention: cl.retention,
                limits: cl.limits,
            },
        }
    }
}

const SECTIONS: &[&str] = &[
    "node", "http", "sensors", "power", "shutdown", "overheat", "cooling", "cluster", "log",
    "journal", "power_on",
];

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

/// Turn node_exporter-style `:10027` into `0.0.0.0:10027`, and check the address.
pub fn normalize_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse().map_err(|_| format!("{s:?} is not host:port with an IP address (e.g. \"127.0.0.1:10027\", \":10027\", \"[::1]:10027\")"))
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

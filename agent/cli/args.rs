//! Command-line interface (clap derive). Flags follow node_exporter's style
//! where they overlap (`--web.listen-address`, `--path.sysfs`) and override
//! the config file.

use clap::{Args, Parser, Subcommand, ValueEnum};
use coolmesh_agent::config::{Config, SourceKind};
use std::path::PathBuf;

/// `coolmesh --version`, laid out as the Prometheus exporters print it
/// (`-V` prints the short form). Filled in by `build.rs`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (branch: ",
    env!("COOLMESH_BRANCH"),
    ", revision: ",
    env!("COOLMESH_REVISION"),
    ")\n  build date:       ",
    env!("COOLMESH_BUILD_DATE"),
    "\n  rust version:     ",
    env!("COOLMESH_RUSTC"),
    "\n  platform:         ",
    env!("COOLMESH_TARGET"),
);

/// coolmesh: a peer-to-peer thermal and power watchdog for machine rooms.
#[derive(Debug, Parser)]
#[command(name = "coolmesh", version, long_version = LONG_VERSION, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the agent: sensors, probes, state machine, HTTP server.
    Agent(Box<AgentArgs>),
    /// Read the sensors once and print them.
    Sensors(SensorsArgs),
    /// Preflight: check a config file and what this host must provide for
    /// it (token, cluster key, programs, permissions, power-off right);
    /// print every problem, exit 1 on errors, 0 with warnings only.
    #[command(visible_alias = "preflight")]
    CheckConfig(CheckConfigArgs),
    /// Ask a running agent for its state.
    State(StateArgs),
    /// Create keys: the node identity (prints its PeerId) or, with --psk, a private network key.
    Keygen(KeygenArgs),
    /// Read or add to the cluster's CRDT counters through a running agent.
    Counter(CounterArgs),
    /// Manage the room roster (who is a member) with the operator key.
    Roster(RosterArgs),
    /// Act on the whole room at once: cancel, maintenance, state of every member.
    Room(RoomArgs),
    /// Why this server did what it did: the decision journal as a story.
    Explain(ExplainArgs),
    /// Run a local cluster with simulated sensors and power; drive it from the keyboard.
    Demo(DemoArgs),
    /// Write the man pages or a shell's completions, generated from this
    /// command line (for packagers: .ci/package.sh ships them).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// `coolmesh generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[command(subcommand)]
    pub what: GenerateWhat,
}

/// What `coolmesh generate` writes.
#[derive(Debug, Subcommand)]
pub enum GenerateWhat {
    /// Man pages: coolmesh.1, and coolmesh-COMMAND.1 for every command.
    Man {
        /// Directory to write the pages to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The completion script of a shell.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// Write it into DIR under the name the shell looks for (bash:
        /// coolmesh, zsh: _coolmesh, fish: coolmesh.fish) instead of stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Flags shared by `agent` and `sensors`.
#[derive(Debug, Clone, Args)]
pub struct SourceFlags {
    /// Config file (TOML). Every key is optional.
    #[arg(long, short = 'c', env = "COOLMESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// sysfs mount point (config: sensors.sysfs).
    #[arg(long = "path.sysfs", value_name = "PATH")]
    pub path_sysfs: Option<PathBuf>,
    /// Thermal source to run; repeat for several (config: sensors.sources).
    #[arg(long = "sensors.source", value_name = "SOURCE", value_parser = parse_source)]
    pub sources: Vec<SourceKind>,
    /// JSON readings file for the `file` source (config: sensors.file).
    #[arg(long = "sensors.file", value_name = "FILE")]
    pub sensors_file: Option<PathBuf>,
    /// lm-sensors output file for the `lm_sensors` source (config: sensors.lm_sensors_file).
    #[arg(long = "sensors.lm-sensors-file", value_name = "FILE")]
    pub lm_sensors_file: Option<PathBuf>,
}

fn parse_source(s: &str) -> Result<SourceKind, String> {
    SourceKind::parse(s).ok_or_else(|| format!("unknown source {s:?}; sources are hwmon, thermal_zone, sysinfo, lm_sensors, file, exec"))
}

/// `coolmesh agent`
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Config file and source selection.
    #[command(flatten)]
    pub src: SourceFlags,
    /// Address for HTTP (config: http.listen_address; default 127.0.0.1:10027).
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// TLS and basic auth: web config file in the Prometheus exporter-toolkit
    /// format (config: http.web_config_file).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Node name (config: node.name; default: hostname).
    #[arg(long = "node.name", value_name = "NAME")]
    pub node_name: Option<String>,
    /// State directory (config: node.state_dir).
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Sensor read interval (config: sensors.interval), e.g. 2s.
    #[arg(long = "sensors.interval", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub sensors_interval: Option<std::time::Duration>,
    /// Log what the shutdown would run instead of running it (config: shutdown.dry_run).
    #[arg(long)]
    pub dry_run: bool,
    /// Cluster name (config: cluster.name).
    #[arg(long = "cluster.name", value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// libp2p listen multiaddr; repeat for several (config: cluster.listen).
    #[arg(long = "cluster.listen", value_name = "MULTIADDR")]
    pub cluster_listen: Vec<String>,
    /// Bootstrap peer multiaddr; repeat for several (config: cluster.peers).
    #[arg(long = "cluster.peer", value_name = "MULTIADDR")]
    pub cluster_peers: Vec<String>,
    /// Turn mDNS discovery off (config: cluster.mdns = false).
    #[arg(long = "cluster.no-mdns")]
    pub cluster_no_mdns: bool,
    /// Private network key file (config: cluster.psk_file).
    #[arg(long = "cluster.psk-file", value_name = "FILE")]
    pub cluster_psk_file: Option<PathBuf>,
    /// Run without the cluster: trust only this node's probes (config: cluster.enabled = false).
    #[arg(long = "cluster.disable")]
    pub cluster_disable: bool,
    /// Start the cluster without a pre-shared key (config:
    /// cluster.insecure_no_psk = true). A lab only: anyone who can reach the
    /// port joins.
    #[arg(long = "cluster.insecure-no-psk")]
    pub cluster_insecure_no_psk: bool,
    /// Log level or tracing filter (config: log.level).
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format (config: log.format).
    #[arg(long = "log.format", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time=… level=INFO source=file.rs:12 msg="…" key=value`, as Prometheus 3 writes it.
    Logfmt,
    /// One flat JSON object per line: `time`, `level`, `source`, `msg`, then the fields.
    Json,
}

/// Output format of `coolmesh sensors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SensorsFormat {
    /// Aligned table.
    Table,
    /// JSON array of readings.
    Json,
    /// Prometheus text format (node_exporter textfile collector).
    Prom,
}

/// `coolmesh sensors`
#[derive(Debug, Clone, Args)]
pub struct SensorsArgs {
    /// Config file and source selection.
    #[command(flatten)]
    pub src: SourceFlags,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: SensorsFormat,
}

/// How `state` and `counter` reach an agent that serves HTTPS or wants
/// basic auth (`--web.config.file` on the agent). The environment variables
/// let an operator set them once, e.g. in a shell profile.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientFlags {
    /// CA certificate (PEM) that signed the agent's certificate; needed for https:// URLs.
    #[arg(
        long = "tls.ca-file",
        value_name = "FILE",
        env = "COOLMESH_TLS_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for agents that require one (mTLS).
    #[arg(
        long = "tls.cert-file",
        value_name = "FILE",
        env = "COOLMESH_TLS_CERT_FILE",
        requires = "key_file"
    )]
    pub cert_file: Option<PathBuf>,
    /// Key (PEM) of --tls.cert-file.
    #[arg(
        long = "tls.key-file",
        value_name = "FILE",
        env = "COOLMESH_TLS_KEY_FILE",
        requires = "cert_file"
    )]
    pub key_file: Option<PathBuf>,
    /// Name to verify in the agent's certificate (default: the host of --url).
    #[arg(
        long = "tls.server-name",
        value_name = "NAME",
        env = "COOLMESH_TLS_SERVER_NAME"
    )]
    pub server_name: Option<String>,
    /// Basic auth user name (one of the agent's basic_auth_users).
    #[arg(
        long = "basic-auth.username",
        value_name = "USER",
        env = "COOLMESH_BASIC_AUTH_USERNAME",
        requires = "password_file"
    )]
    pub username: Option<String>,
    /// File holding the basic auth password (the password, not its bcrypt hash).
    #[arg(
        long = "basic-auth.password-file",
        value_name = "FILE",
        env = "COOLMESH_BASIC_AUTH_PASSWORD_FILE",
        requires = "username"
    )]
    pub password_file: Option<PathBuf>,
}

/// `coolmesh check-config` / `coolmesh preflight`
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML), or a web config file (`.yml`) alone.
    #[arg(value_name = "FILE", conflicts_with = "config")]
    pub file: Option<PathBuf>,
    /// The config file, as the agent's --config takes it (default
    /// /etc/coolmesh/coolmesh.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The user the agent runs as (default: coolmesh, the unit's User=):
    /// secret files must be readable by it and by no one else, and the
    /// power-off must be allowed for it.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Check the file alone, not this host (files, programs, permissions):
    /// for templates checked on another machine.
    #[arg(long = "syntax-only")]
    pub syntax_only: bool,
}

impl CheckConfigArgs {
    /// The file to check: FILE, --config, or the package's config.
    pub fn path(&self) -> PathBuf {
        self.file
            .clone()
            .or_else(|| self.config.clone())
            .unwrap_or_else(|| PathBuf::from("/etc/coolmesh/coolmesh.toml"))
    }
}

/// `coolmesh state`
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// The agent's address: http://HOST:PORT, or https://HOST:PORT with TLS.
    #[arg(long, default_value = "http://127.0.0.1:10027")]
    pub url: String,
    /// TLS and basic auth towards the agent.
    #[command(flatten)]
    pub client: ClientFlags,
    /// Print JSON instead of text (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// Show the whole room: every peer, ranked by thermal headroom.
    #[arg(long)]
    pub cluster: bool,
    /// Output format; `file_sd` prints Prometheus file_sd targets (each member's published HTTP address, else NODE:PORT), with --cluster for the whole room.
    #[arg(long, value_enum, default_value = "text")]
    pub format: StateFormat,
    /// HTTP port in `file_sd` targets of members that publish no HTTP address (default: the port of --url).
    #[arg(long = "sd-port", value_name = "PORT")]
    pub sd_port: Option<u16>,
}

/// Output format of `coolmesh state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFormat {
    /// Aligned text for people.
    Text,
    /// The agent's /v1/state document.
    Json,
    /// Prometheus file_sd target groups, one per node.
    #[value(name = "file_sd", alias = "file-sd")]
    FileSd,
}

/// `coolmesh keygen`
#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Write a new private network key (swarm.key format) instead.
    #[arg(long)]
    pub psk: bool,
    /// File to write the PSK to (default: standard output). Never overwritten.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// State directory holding (or to hold) the node identity.
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        default_value = "/var/lib/coolmesh"
    )]
    pub state_dir: PathBuf,
}

/// `coolmesh counter`
#[derive(Debug, Clone, Args)]
pub struct CounterArgs {
    /// The agent's address: http://HOST:PORT, or https://HOST:PORT with TLS.
    #[arg(long, default_value = "http://127.0.0.1:10027")]
    pub url: String,
    /// TLS and basic auth towards the agent.
    #[command(flatten)]
    pub client: ClientFlags,
    /// What to do.
    #[command(subcommand)]
    pub action: CounterAction,
}

/// `coolmesh counter` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum CounterAction {
    /// List counters with their cluster total and this node's slot.
    List,
    /// Add to a counter on this node (negative amounts decrement).
    Inc {
        /// Counter name (A-Z a-z 0-9 _ . : -).
        name: String,
        /// Amount to add.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        amount: i64,
        /// File holding the agent's bearer token (http.token_file).
        #[arg(
            long = "token-file",
            value_name = "FILE",
            default_value = "/etc/coolmesh/token"
        )]
        token_file: PathBuf,
    },
}

/// `coolmesh roster`
#[derive(Debug, Clone, Args)]
pub struct RosterArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: RosterAction,
}

/// The agent a roster or room command talks to.
#[derive(Debug, Clone, Args)]
pub struct NodeFlags {
    /// The agent to talk to: http://HOST:PORT, or https://HOST:PORT with
    /// TLS. For roster changes use the same node every time (a change starts
    /// from the roster that node holds); a room command goes from this node
    /// to every member it is connected to.
    #[arg(long, default_value = "http://127.0.0.1:10027")]
    pub url: String,
    /// TLS and basic auth towards the agent.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `coolmesh roster` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum RosterAction {
    /// Make the operator key: the private key goes to --out (mode 0600,
    /// never overwritten; keep it off the servers), the public key is
    /// printed for cluster.operator_key.
    Keygen {
        /// Where to write the private key.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
    /// Show the roster the node holds and the identities waiting outside it.
    List {
        /// The agent.
        #[command(flatten)]
        node: NodeFlags,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Add members and install the new roster on the node (it spreads to
    /// the room by gossip).
    Add {
        /// PeerIds to add (`coolmesh keygen --state-dir DIR` prints a
        /// server's; `roster list` shows those waiting).
        peers: Vec<String>,
        /// Also add every identity waiting outside the roster (check the
        /// list first: anyone with the cluster key can wait there).
        #[arg(long)]
        pending: bool,
        /// The operator's private key (`roster keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The agent.
        #[command(flatten)]
        node: NodeFlags,
        /// File holding the agent's bearer token (http.token_file).
        #[arg(
            long = "token-file",
            value_name = "FILE",
            default_value = "/etc/coolmesh/token"
        )]
        token_file: PathBuf,
    },
    /// Remove members and install the new roster on the node: the rest of
    /// the room stops taking their records and votes.
    Remove {
        /// PeerIds to remove.
        #[arg(required = true)]
        peers: Vec<String>,
        /// The operator's private key (`roster keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The agent.
        #[command(flatten)]
        node: NodeFlags,
        /// File holding the agent's bearer token (http.token_file).
        #[arg(
            long = "token-file",
            value_name = "FILE",
            default_value = "/etc/coolmesh/token"
        )]
        token_file: PathBuf,
    },
}

/// `coolmesh explain`
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// How far back, e.g. 24h, 7d.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ExplainFormat,
    /// Read the journal from this state directory instead of asking the
    /// agent (works while the agent is stopped, e.g. right after a reboot).
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The agent to ask: http://HOST:PORT, or https://HOST:PORT with TLS.
    #[arg(long, default_value = "http://127.0.0.1:10027")]
    pub url: String,
    /// TLS and basic auth towards the agent.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// Output format of `coolmesh explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    /// A story for people.
    Text,
    /// The entries as JSON (oldest first).
    Json,
}

/// `coolmesh room`
#[derive(Debug, Clone, Args)]
pub struct RoomArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: RoomAction,
}

/// How a room command is sent and shown.
#[derive(Debug, Clone, Args)]
pub struct RoomSendFlags {
    /// The agent that sends the command to the room.
    #[command(flatten)]
    pub node: NodeFlags,
    /// The operator's private key (`coolmesh roster keygen`). Required
    /// when the servers have cluster.operator_key: they take only signed
    /// room commands then.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// File holding the agent's bearer token (http.token_file).
    #[arg(
        long = "token-file",
        value_name = "FILE",
        default_value = "/etc/coolmesh/token"
    )]
    pub token_file: PathBuf,
    /// Who is asking, logged by every node (default: $SUDO_USER or $USER, @ this host).
    #[arg(long = "as", value_name = "NAME")]
    pub requester: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
}

/// `coolmesh room` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum RoomAction {
    /// Cancel the pending shutdown on every member; each then holds new
    /// automatic shutdowns off for its shutdown.cancel_hold. Exit 0 when
    /// every member answered and none refused.
    Cancel {
        /// Sending.
        #[command(flatten)]
        send: RoomSendFlags,
    },
    /// Hold automatic shutdowns on every member for DURATION (e.g. 2h);
    /// `off` (or 0s) ends maintenance everywhere.
    Maintenance {
        /// How long, or `off`.
        duration: String,
        /// Sending.
        #[command(flatten)]
        send: RoomSendFlags,
    },
    /// Every member's state as the agent sees it: pending shutdowns first.
    State {
        /// The agent.
        #[command(flatten)]
        node: NodeFlags,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
}

/// Output format of `roster list` and `room`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table.
    Table,
    /// The agent's JSON (`GET /v1/roster`).
    Json,
}

/// `coolmesh demo`
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Agents to start (1-16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// First of 2N+1 consecutive ports on 127.0.0.1: HTTP of the agents,
    /// then their libp2p ports, then the simulated power target.
    #[arg(long = "base-port", value_name = "PORT", default_value_t = 10027, value_parser = clap::value_parser!(u16).range(1..))]
    pub base_port: u16,
    /// Power grace, also the overheat grace; the cooling grace is twice this (1s-1h).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
    /// Directory for configs, readings, state and logs, kept after exit
    /// (default: a new temporary directory, removed on exit).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Stop by itself after this long (for scripts and tests).
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub run_for: Option<std::time::Duration>,
}

impl SourceFlags {
    /// Load the config file (if any) and apply these flags on top.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                coolmesh_agent::config::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}:\n{e}", p.display()))?
            }
            None => Config::default(),
        };
        if let Some(p) = &self.path_sysfs {
            c.sensors.sysfs = p.clone();
        }
        if !self.sources.is_empty() {
            c.sensors.sources = self.sources.clone();
        }
        if let Some(p) = &self.sensors_file {
            c.sensors.file = Some(p.clone());
        }
        if let Some(p) = &self.lm_sensors_file {
            c.sensors.lm_sensors_file = Some(p.clone());
        }
        if c.sensors.sources.contains(&SourceKind::File) && c.sensors.file.is_none() {
            anyhow::bail!("the `file` source needs sensors.file in the config or --sensors.file");
        }
        if c.sensors.sources.contains(&SourceKind::Exec) && c.sensors.exec.is_empty() {
            anyhow::bail!("the `exec` source needs sensors.exec in the config");
        }
        Ok(c)
    }
}

impl AgentArgs {
    /// Config with every agent flag applied.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut c = self.src.load()?;
        if let Some(a) = &self.listen_address {
            coolmesh_agent::config::normalize_listen(a)
                .map_err(|e| anyhow::anyhow!("--web.listen-address: {e}"))?;
            c.http.listen_address = a.clone();
        }
        if let Some(p) = &self.web_config_file {
            c.http.web_config_file = Some(p.clone());
        }
        if let Some(n) = &self.node_name {
            c.node.name = n.clone();
        }
        if let Some(d) = &self.state_dir {
            c.node.state_dir = d.clone();
        }
        if let Some(i) = self.sensors_interval {
            c.sensors.interval = i;
            c.sensors.timeout = c.sensors.timeout.min(i);
        }
        if self.dry_run {
            c.shutdown.dry_run = true;
        }
        if let Some(n) = &self.cluster_name {
            c.cluster.name = n.clone();
        }
        for (flag, list, target) in [
            (
                "--cluster.listen",
                &self.cluster_listen,
                &mut c.cluster.listen,
            ),
            ("--cluster.peer", &self.cluster_peers, &mut c.cluster.peers),
        ] {
            if !list.is_empty() {
                for a in list {
                    a.parse::<libp2p::Multiaddr>().map_err(|e| {
                        anyhow::anyhow!("{flag} {a:?}: {e} (e.g. /ip4/10.0.0.12/tcp/9877)")
                    })?;
                }
                *target = list.clone();
            }
        }
        if self.cluster_no_mdns {
            c.cluster.mdns = false;
        }
        if let Some(p) = &self.cluster_psk_file {
            c.cluster.psk_file = Some(p.clone());
        }
        if self.cluster_disable {
            c.cluster.enabled = false;
        }
        if self.cluster_insecure_no_psk {
            c.cluster.insecure_no_psk = true;
        }
        if let Some(l) = &self.log_level {
            coolmesh_agent::config::check_log_level(l)
                .map_err(|e| anyhow::anyhow!("--log.level: {e}"))?;
            c.log.level = l.clone();
        }
        if let Some(f) = self.log_format {
            c.log.format = match f {
                LogFormat::Logfmt => "logfmt".into(),
                LogFormat::Json => "json".into(),
            };
        }
        Ok(c)
    }
}

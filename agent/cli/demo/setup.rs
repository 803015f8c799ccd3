//! The demo's directory and ports: one config, token and state directory
//! per node, and the port plan.

use super::*;

/// The ports of a demo, all on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// HTTP port of each node.
    pub http: Vec<u16>,
    /// libp2p port of each node.
    pub p2p: Vec<u16>,
    /// The simulated power target.
    pub power: u16,
}

impl Ports {
    /// `nodes` HTTP ports from `base`, then `nodes` libp2p ports, then the
    /// power node.
    pub fn new(base: u16, nodes: u16) -> Result<Ports, String> {
        let last = u32::from(base) + 2 * u32::from(nodes);
        let port = |off: u32| u16::try_from(u32::from(base) + off).ok();
        let Some(power) = port(2 * u32::from(nodes)) else {
            let n = 2 * u32::from(nodes) + 1;
            return Err(format!(
                "--base-port {base} with --nodes {nodes} needs {n} ports, {base} to {last}, past 65535; use a lower --base-port, e.g. --base-port 10027"
            ));
        };
        let n = u32::from(nodes);
        Ok(Ports {
            http: (0..n).filter_map(port).collect(),
            p2p: (n..2 * n).filter_map(port).collect(),
            power,
        })
    }

    /// Every port and what it is for.
    pub fn all(&self) -> Vec<(u16, String)> {
        let mut v = Vec::new();
        for (i, p) in self.http.iter().enumerate() {
            v.push((*p, format!("HTTP of demo-{}", i + 1)));
        }
        for (i, p) in self.p2p.iter().enumerate() {
            v.push((*p, format!("libp2p of demo-{}", i + 1)));
        }
        v.push((self.power, "the simulated power target".to_string()));
        v
    }
}

/// Message for a port that cannot be bound.
pub(super) fn port_problem(
    port: u16,
    what: &str,
    e: &std::io::Error,
    base: u16,
    nodes: u16,
) -> String {
    let span = 2 * u32::from(nodes);
    let suggestion = if u32::from(base) + 1000 + span <= 65535 {
        base + 1000
    } else {
        20000
    };
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "port {port} on 127.0.0.1 ({what}) is already in use; the demo needs ports {base} to {} free: choose another range with --base-port, e.g. --base-port {suggestion}",
            u32::from(base) + span
        )
    } else {
        format!(
            "cannot listen on 127.0.0.1:{port} ({what}): {e}; choose another range with --base-port, e.g. --base-port {suggestion}"
        )
    }
}

/// Fail with a clear message if any agent port is taken. The power node's
/// port is bound for real later (and kept).
pub(super) fn check_ports(ports: &Ports, base: u16, nodes: u16) -> anyhow::Result<()> {
    for (port, what) in ports.all() {
        if port == ports.power {
            continue;
        }
        if let Err(e) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return Err(setup(port_problem(port, &what, &e, base, nodes)));
        }
    }
    Ok(())
}

/// One simulated server.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// 1-based.
    pub index: usize,
    /// `demo-<index>`.
    pub name: String,
    /// HTTP port.
    pub http: u16,
    /// libp2p port.
    pub p2p: u16,
    /// `DIR/demo-<index>`.
    pub dir: PathBuf,
}

impl NodeSpec {
    /// Base URL of its HTTP server.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
    /// Its libp2p listen address.
    pub fn multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p)
    }
    /// Its config file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("coolmesh.toml")
    }
    /// Its simulated readings.
    pub fn readings(&self) -> PathBuf {
        self.dir.join("readings.json")
    }
    /// Its state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// Its dry-run marker (one line per would-be shutdown).
    pub fn marker(&self) -> PathBuf {
        self.dir.join("dry-run-shutdowns")
    }
    /// Its log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    /// Its pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }
}

/// The nodes of a demo in `dir`.
pub fn node_specs(dir: &Path, ports: &Ports) -> Vec<NodeSpec> {
    ports
        .http
        .iter()
        .zip(&ports.p2p)
        .enumerate()
        .map(|(i, (&http, &p2p))| {
            let name = format!("demo-{}", i + 1);
            NodeSpec {
                index: i + 1,
                dir: dir.join(&name),
                name,
                http,
                p2p,
            }
        })
        .collect()
}

/// A TOML basic string.
pub(super) fn toml_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub(super) fn toml_path(p: &Path) -> anyhow::Result<String> {
    let s = p.to_str().ok_or_else(|| {
        setup(format!(
            "{} is not valid UTF-8 and cannot go into a config file; use --dir with a plain path",
            p.display()
        ))
    })?;
    Ok(toml_str(s))
}

pub(super) fn toml_duration(d: Duration) -> String {
    toml_str(&humantime::format_duration(d).to_string())
}

/// The config file of `node`. Always dry-run, and the shutdown command is
/// `true` in case dry-run were ever ignored.
pub fn config_text(
    node: &NodeSpec,
    all: &[NodeSpec],
    power_port: u16,
    grace: Duration,
    token_file: &Path,
    psk_file: &Path,
) -> anyhow::Result<String> {
    let peers = all
        .iter()
        .filter(|n| n.index != node.index)
        .map(|n| toml_str(&n.multiaddr()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        r#"# Written by `coolmesh demo`: agent {name} of a local demo cluster.
# It never powers anything off: dry_run, --dry-run, and the command is `true`.

[node]
name = {name_s}
state_dir = {state}

[http]
listen_address = "127.0.0.1:{http}"
token_file = {token}

[sensors]
sources = ["file"]
file = {readings}
interval = "1s"
timeout = "500ms"
trend_window = "15s"
# The simulated sensors do not follow this machine's CPU load.
cpu_load = "none"

[power]
targets = ["tcp://127.0.0.1:{power_port}"]
interval = "1s"
timeout = "500ms"

[shutdown]
grace = {grace_s}
command = ["true"]
dry_run = true
dry_run_marker = {marker}
cancel_hold = "1m"

[overheat]
sustain = {sustain}
grace = {grace_s}

[cooling]
grace = {cooling}

[cluster]
name = "demo"
listen = [{listen}]
peers = [{peers}]
mdns = false
# A fresh key for each demo: the cluster refuses to start without one.
psk_file = {psk}
"#,
        name = node.name,
        name_s = toml_str(&node.name),
        state = toml_path(&node.state_dir())?,
        http = node.http,
        token = toml_path(token_file)?,
        readings = toml_path(&node.readings())?,
        grace_s = toml_duration(grace),
        marker = toml_path(&node.marker())?,
        sustain = toml_duration(OVERHEAT_SUSTAIN),
        cooling = toml_duration(grace.saturating_mul(2)),
        listen = toml_str(&node.multiaddr()),
        psk = toml_path(psk_file)?,
    ))
}

/// The demo's directory; a temporary one is removed on drop.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    pub(super) temporary: bool,
}

impl WorkDir {
    pub(super) fn prepare(dir: Option<&Path>) -> anyhow::Result<WorkDir> {
        let wd = match dir {
            Some(d) => {
                let d = std::path::absolute(d)
                    .map_err(|e| setup(format!("--dir {}: {e}", d.display())))?;
                std::fs::create_dir_all(&d).map_err(|e| {
                    setup(format!(
                        "--dir {}: cannot create it ({e}); pick a directory you can write to",
                        d.display()
                    ))
                })?;
                let used = std::fs::read_dir(&d)
                    .map_err(|e| setup(format!("--dir {}: cannot read it ({e})", d.display())))?
                    .next()
                    .is_some();
                if used && !d.join(DIR_MARKER).exists() {
                    return Err(setup(format!(
                        "--dir {} is not empty and was not made by `coolmesh demo`; pick a new or empty directory",
                        d.display()
                    )));
                }
                WorkDir {
                    path: d,
                    temporary: false,
                }
            }
            None => {
                let mut last = None;
                let mut made = None;
                for _ in 0..16 {
                    let p = std::env::temp_dir().join(format!("coolmesh-demo-{}", random_hex(4)));
                    match std::fs::create_dir(&p) {
                        Ok(()) => {
                            made = Some(p);
                            break;
                        }
                        Err(e) => last = Some((p, e)),
                    }
                }
                match (made, last) {
                    (Some(p), _) => WorkDir {
                        path: p,
                        temporary: true,
                    },
                    (None, Some((p, e))) => {
                        return Err(setup(format!(
                            "cannot create a temporary directory such as {} ({e}); set TMPDIR or pass --dir DIR",
                            p.display()
                        )))
                    }
                    (None, None) => return Err(setup("cannot create a temporary directory; pass --dir DIR")),
                }
            }
        };
        std::fs::write(
            wd.path.join(DIR_MARKER),
            "made by `coolmesh demo`; the demo may rewrite this directory\n",
        )
        .with_context(|| {
            format!(
                "cannot write in {}; pass --dir with a directory you can write to",
                wd.path.display()
            )
        })?;
        Ok(wd)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(super) fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Write the token file, readable by its owner only.
pub(super) fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot write the token file {}", path.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write the token file {}", path.display()))?;
    Ok(())
}

/// Make a node's directory ready for a fresh agent: config written, old
/// state and dry-run marker gone.
pub(super) fn prepare_node(node: &NodeSpec, config: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(&node.dir).with_context(|| {
        format!(
            "cannot create {}; pass --dir with a directory you can write to",
            node.dir.display()
        )
    })?;
    wipe_node(node)?;
    std::fs::write(node.config(), config).with_context(|| {
        format!(
            "cannot write {}; pass --dir with a directory you can write to",
            node.config().display()
        )
    })?;
    Ok(())
}

/// Forget a node's state machine and would-be shutdowns.
pub(super) fn wipe_node(node: &NodeSpec) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(node.state_dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot remove the old state {} ({e}); remove it by hand",
                node.state_dir().display()
            ))
        }
    }
    match std::fs::remove_file(node.marker()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot remove {} ({e}); remove it by hand",
            node.marker().display()
        )),
    }
}

/// Replace `path` with `bytes` so readers never see half a file. Not
/// fsynced: the readings are simulated and rewritten every second.
pub(super) fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

// ---------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------

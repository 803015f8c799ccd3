//! Human and machine output of the one-shot commands (`sensors`, `state`).

use crate::cli::SensorsFormat;
use crate::sampler::SourceStatus;
use crate::thermal::Reading;
use coolmesh_exporter::Snapshot;
use http_body_util::{BodyExt, Full, Limited};
use std::sync::Arc;

/// Render readings in the chosen format.
pub fn render_sensors(
    readings: &[Reading],
    statuses: &[SourceStatus],
    format: SensorsFormat,
) -> String {
    match format {
        SensorsFormat::Json => serde_json::to_string_pretty(readings)
            .map(|s| s + "\n")
            .unwrap_or_default(),
        SensorsFormat::Prom => {
            let mut snap = Snapshot::default();
            let state = crate::sampler::SensorState {
                round: 1,
                readings: readings.to_vec(),
                sources: statuses.to_vec(),
                thermal: crate::thermal::TrendWindow::new(std::time::Duration::from_secs(60), 2)
                    .summarize(readings),
            };
            crate::snapshot::apply_sensors(&mut snap, &state);
            let fams: Vec<_> = coolmesh_exporter::collector::families(&snap, 0)
                .into_iter()
                .filter(|f| {
                    let n = f.name();
                    n.starts_with("coolmesh_temperature_")
                        || n.starts_with("coolmesh_source_")
                        || n.starts_with("coolmesh_thermal_")
                })
                .collect();
            coolmesh_exporter::metrics::encode_families(&fams)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
        SensorsFormat::Table => {
            let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            let rows: Vec<[String; 7]> = readings
                .iter()
                .map(|r| {
                    [
                        r.chip.clone(),
                        r.sensor.clone(),
                        r.label.clone().unwrap_or_default(),
                        format!("{:.1}", r.celsius),
                        opt(r.max_celsius),
                        opt(r.critical_celsius),
                        r.source.clone(),
                    ]
                })
                .collect();
            table(
                &[
                    "CHIP", "SENSOR", "LABEL", "CELSIUS", "MAX", "CRIT", "SOURCE",
                ],
                &rows,
                &[3, 4, 5],
            )
        }
    }
}

/// Align columns; `right` lists columns to right-align (numbers).
pub fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]], right: &[usize]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if right.contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// How to reach a running agent: its URL plus, for an agent with a web
/// config file, the CA to trust, a client certificate and basic auth.
#[derive(Clone)]
pub struct Endpoint {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub url: String,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    server_name: Option<String>,
    basic: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .field("basic_auth", &self.basic.is_some())
            .finish()
    }
}

fn read_file(what: &str, flag: &str, p: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| anyhow::anyhow!("{flag} {}: cannot read {what}: {e}", p.display()))
}

impl Endpoint {
    /// Plain HTTP, no credentials.
    pub fn plain(url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            tls: None,
            server_name: None,
            basic: None,
        }
    }

    /// From the command line: reads the CA, client certificate and password
    /// files now, so a wrong path is reported before anything is sent.
    pub fn from_flags(url: &str, f: &crate::cli::ClientFlags) -> anyhow::Result<Endpoint> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut ep = Endpoint::plain(url);
        if let Some(ca) = &f.ca_file {
            let pem = read_file("the CA certificate", "--tls.ca-file", ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| anyhow::anyhow!("--tls.ca-file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| anyhow::anyhow!("--tls.ca-file {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("--tls.ca-file {}: no PEM certificate in it", ca.display());
            }
            let b = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
            let cfg = match (&f.cert_file, &f.key_file) {
                (Some(c), Some(k)) => {
                    let pem = read_file("the client certificate", "--tls.cert-file", c)?;
                    let chain = CertificateDer::pem_slice_iter(&pem)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| anyhow::anyhow!("--tls.cert-file {}: {e}", c.display()))?;
                    let pem = read_file("the client key", "--tls.key-file", k)?;
                    let key = PrivateKeyDer::from_pem_slice(&pem)
                        .map_err(|e| anyhow::anyhow!("--tls.key-file {}: {e}", k.display()))?;
                    b.with_client_auth_cert(chain, key)
                        .map_err(|e| anyhow::anyhow!("--tls.cert-file/--tls.key-file: {e}"))?
                }
                _ => b.with_no_client_auth(),
            };
            ep.tls = Some(Arc::new(cfg));
        } else if f.cert_file.is_some() {
            anyhow::bail!(
                "--tls.cert-file needs --tls.ca-file (the CA of the agent's certificate)"
            );
        }
        ep.server_name = f.server_name.clone();
        if let (Some(u), Some(p)) = (&f.username, &f.password_file) {
            use base64::Engine as _;
            let pw = read_file("the password", "--basic-auth.password-file", p)?;
            let pw = String::from_utf8(pw).map_err(|_| {
                anyhow::anyhow!("--basic-auth.password-file {}: not UTF-8", p.display())
            })?;
            // One trailing newline is an artefact of `echo` or an editor.
            let pw = pw.strip_suffix('\n').unwrap_or(&pw);
            let pw = pw.strip_suffix('\r').unwrap_or(pw);
            ep.basic = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
            ));
        }
        Ok(ep)
    }
}

/// One HTTP request to a running agent (bounded size and time). Returns the
/// body of a 2xx answer; anything else is an error carrying the agent's
/// message.
pub async fn request(
    method: hyper::Method,
    url: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<bytes::Bytes> {
    request_to(method, &Endpoint::plain(url), path, token).await
}

/// Send `req` over an established connection.
async fn send_on<I>(
    io: I,
    req: hyper::Request<Full<bytes::Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

/// The innermost cause: hyper's and rustls' outer messages are generic
/// ("Connection refused" is three levels down).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(c) = cause.source() {
        cause = c;
    }
    cause.to_string()
}

/// [`request`] to an [`Endpoint`]: TLS and basic auth when it has them.
/// With basic auth the token goes in `X-Coolmesh-Token` (the agent reads it
/// there because `Authorization` carries the password).
pub async fn request_to(
    method: hyper::Method,
    ep: &Endpoint,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<bytes::Bytes> {
    request_with_body(method, ep, path, token, bytes::Bytes::new()).await
}

/// [`request_to`] with a request body (`POST /v1/roster`).
pub async fn request_with_body(
    method: hyper::Method,
    ep: &Endpoint,
    path: &str,
    token: Option<&str>,
    body: bytes::Bytes,
) -> anyhow::Result<bytes::Bytes> {
    let url = ep.url.as_str();
    let uri: hyper::Uri = format!("{}{path}", url.trim_end_matches('/'))
        .parse()
        .map_err(|e| anyhow::anyhow!("bad --url {url:?}: {e} (e.g. http://127.0.0.1:9876)"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => anyhow::bail!("bad --url {url:?}: use http://HOST:PORT or https://HOST:PORT"),
    };
    let Some(host) = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    else {
        anyhow::bail!("bad --url {url:?}: no host (e.g. http://127.0.0.1:9876)");
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(
            hyper::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        );
    if let Some(b) = &ep.basic {
        req = req.header(hyper::header::AUTHORIZATION, b);
        if let Some(t) = token {
            req = req.header(coolmesh_exporter::http::TOKEN_HEADER, t);
        }
    } else if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(body))?;
    let unreachable =
        "is it running? (`systemctl status coolmesh`) Is --url its http.listen_address?";
    let tls = if https {
        Some(ep.tls.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{url}: https needs --tls.ca-file, the CA certificate that signed the agent's certificate"
            )
        })?)
    } else {
        None
    };
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}; {unreachable}"))?;
        match tls {
            None => send_on(tcp, req).await.map_err(|e| {
                anyhow::anyhow!("cannot reach {url}: {}; {unreachable}", root_cause(&e))
            }),
            Some(cfg) => {
                let name = ep.server_name.clone().unwrap_or_else(|| host.clone());
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| anyhow::anyhow!("bad TLS server name {name:?}: {e}"))?;
                let stream = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "TLS handshake with {url} failed: {}; is --tls.ca-file the CA of the agent's certificate (and does the agent want a client certificate, --tls.cert-file)?",
                            root_cause(&e)
                        )
                    })?;
                send_on(stream, req).await.map_err(|e| {
                    anyhow::anyhow!(
                        "{url}: {}; does the agent want a client certificate (--tls.cert-file/--tls.key-file)?",
                        root_cause(&e)
                    )
                })
            }
        }
    };
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no answer within 5 s; {unreachable}"))??;
    let status = resp.status();
    let wants_basic = resp
        .headers()
        .get(hyper::header::WWW_AUTHENTICATE)
        .is_some_and(|v| v.as_bytes().starts_with(b"Basic"));
    let body = Limited::new(resp.into_body(), 16 * 1024 * 1024)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        let hint = if wants_basic {
            if ep.basic.is_some() {
                " (wrong --basic-auth.username or password)"
            } else {
                " (the agent wants basic auth: pass --basic-auth.username and --basic-auth.password-file)"
            }
        } else if !https && msg.contains("HTTPS server") {
            " (the agent serves TLS: use an https:// --url and --tls.ca-file)"
        } else {
            ""
        };
        anyhow::bail!("{url} answered HTTP {status}: {msg}{hint}");
    }
    Ok(body)
}

/// GET `<url>/v1/state` from a running agent.
pub async fn fetch_state(url: &str) -> anyhow::Result<Snapshot> {
    fetch_state_from(&Endpoint::plain(url)).await
}

/// GET `/v1/state` from an [`Endpoint`].
pub async fn fetch_state_from(ep: &Endpoint) -> anyhow::Result<Snapshot> {
    let url = &ep.url;
    let body = request_to(hyper::Method::GET, ep, "/v1/state", None).await?;
    serde_json::from_slice(&body).map_err(|e| {
        anyhow::anyhow!(
            "{url}/v1/state is not a coolmesh state document ({e}); is --url a coolmesh agent of the same version (`coolmesh --version`)?"
        )
    })
}

/// Text for `coolmesh state --cluster`: this node and its peers, best
/// thermal headroom first.
pub fn render_cluster(s: &Snapshot, now_ms: u64) -> String {
    let o = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    let left = |d: Option<u64>| {
        d.map(|d| secs(d.saturating_sub(now_ms) / 1000))
            .unwrap_or_else(|| "-".into())
    };
    let power = |p: Option<bool>| match p {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "-",
    };
    let mut rows: Vec<(f64, [String; 9])> = vec![(
        s.thermal.headroom_celsius.unwrap_or(f64::NEG_INFINITY),
        [
            s.node.clone(),
            "this node".into(),
            s.fsm.state.clone(),
            s.fsm.reason.clone(),
            left(s.fsm.deadline_ms),
            o(s.thermal.hottest_celsius),
            o(s.thermal.headroom_celsius),
            o(s.thermal.trend_celsius_per_minute),
            power(s.power.up).into(),
        ],
    )];
    for p in &s.cluster.peers {
        rows.push((
            p.thermal.headroom_celsius.unwrap_or(f64::NEG_INFINITY),
            [
                p.node.clone(),
                if p.stale {
                    format!("{} (stale)", p.liveness)
                } else {
                    p.liveness.clone()
                },
                p.state.clone(),
                p.reason.clone(),
                left(p.deadline_ms),
                o(p.thermal.hottest_celsius),
                o(p.thermal.headroom_celsius),
                o(p.thermal.trend_celsius_per_minute),
                power(p.power_up).into(),
            ],
        ));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1[0].cmp(&b.1[0])));
    let rows: Vec<[String; 9]> = rows.into_iter().map(|r| r.1).collect();
    let mut out = table(
        &[
            "NODE",
            "LIVENESS",
            "STATE",
            "REASON",
            "SHUTDOWN IN",
            "HOTTEST",
            "HEADROOM",
            "TREND/MIN",
            "POWER",
        ],
        &rows,
        &[5, 6, 7],
    );
    for v in &s.cluster.power_votes {
        out.push_str(&format!(
            "votes {}: {} up, {} down (quorum {})\n",
            v.target, v.up, v.down, s.cluster.quorum
        ));
    }
    out
}

/// Prometheus file_sd JSON for `coolmesh state --format file_sd`: one target
/// group per node (this one, plus every known peer with `cluster`), sorted by
/// node name so that an unchanged room prints the same bytes.
///
/// The target is `NODE:PORT`: records carry libp2p addresses, not HTTP ones,
/// so the node name (the hostname unless `node.name` says otherwise) must
/// resolve on the Prometheus server, and every agent of the room is assumed to
/// serve HTTP on `port`. Labels are `__meta_coolmesh_{node,cluster,peer_id}`:
/// available to relabelling, dropped afterwards, so they never collide with
/// the `node` and `cluster` labels of `coolmesh_node_info`.
pub fn render_file_sd(s: &Snapshot, cluster: bool, port: u16) -> String {
    let mut nodes: Vec<(&str, &str)> = vec![(s.node.as_str(), s.peer_id.as_str())];
    if cluster {
        nodes.extend(
            s.cluster
                .peers
                .iter()
                .map(|p| (p.node.as_str(), p.peer_id.as_str())),
        );
    }
    nodes.sort();
    nodes.dedup_by(|a, b| a.0 == b.0);
    let groups: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(node, peer_id)| {
            serde_json::json!({
                "targets": [format!("{node}:{port}")],
                "labels": {
                    "__meta_coolmesh_node": node,
                    "__meta_coolmesh_cluster": s.cluster.name,
                    "__meta_coolmesh_peer_id": peer_id,
                },
            })
        })
        .collect();
    serde_json::to_string_pretty(&groups).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// Whether to colour output written to stdout: only on a terminal, and never
/// with `NO_COLOR` set (<https://no-color.org>) or `TERM=dumb`.
pub fn colour_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").as_deref() != Ok("dumb")
}

/// Colour whole words of a rendered table or text with ANSI SGR codes:
/// states and liveness by severity. Applied after alignment, so the columns
/// stay aligned (the codes take no width on a terminal).
pub fn colourize(text: &str) -> String {
    const RED: &str = "\x1b[1;31m";
    const YELLOW: &str = "\x1b[33m";
    const GREEN: &str = "\x1b[32m";
    const BLUE: &str = "\x1b[34m";
    const DIM: &str = "\x1b[2m";
    const BOLD: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";
    let style = |w: &str| -> Option<&str> {
        Some(match w {
            "pre_fail" | "shutdown" | "DOWN" | "dead" | "down:" => RED,
            "local_fault" | "suspect" | "(stale)" | "(dry-run)" => YELLOW,
            "normal" | "up" | "alive" => GREEN,
            "maintenance" => BLUE,
            "-" => DIM,
            _ => return None,
        })
    };
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        // Header rows of tables are upper case: make them bold.
        let is_header = i == 0
            && line.chars().any(|c| c.is_ascii_uppercase())
            && !line.chars().any(|c| c.is_ascii_lowercase());
        if is_header {
            out.push_str(BOLD);
            out.push_str(line.trim_end_matches('\n'));
            out.push_str(RESET);
            if line.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            match style(word) {
                Some(c) => {
                    out.push_str(c);
                    out.push_str(word);
                    out.push_str(RESET);
                }
                None => out.push_str(word),
            }
            word.clear();
        };
        for ch in line.chars() {
            if ch == ' ' || ch == '\n' || ch == ',' {
                flush(&mut word, &mut out);
                out.push(ch);
            } else {
                word.push(ch);
            }
        }
        flush(&mut word, &mut out);
    }
    out
}

/// Colour the rows of a `sensors` table: red at or above critical, yellow
/// at or above max; the header bold. `text` must be the table of `readings`.
pub fn colour_sensor_rows(text: &str, readings: &[Reading]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.lines().enumerate() {
        let code = match i.checked_sub(1).and_then(|r| readings.get(r)) {
            None if i == 0 => Some("\x1b[1m"),
            Some(r) if r.critical_celsius.is_some_and(|c| r.celsius >= c) => Some("\x1b[1;31m"),
            Some(r) if r.max_celsius.is_some_and(|m| r.celsius >= m) => Some("\x1b[33m"),
            _ => None,
        };
        match code {
            Some(c) => out.push_str(&format!("{c}{line}\x1b[0m\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// A one-line "working on it" note on stderr for operations that may take
/// seconds, shown only when stderr is a terminal and erased when dropped, so
/// pipes and logs never see it.
pub struct Progress(bool);

impl Progress {
    /// Show `msg` (e.g. "reading 3 sources (timeout 5s)").
    pub fn new(msg: &str) -> Progress {
        use std::io::{IsTerminal, Write};
        let tty = std::io::stderr().is_terminal();
        if tty {
            let mut e = std::io::stderr();
            let _ = write!(e, "{msg}…");
            let _ = e.flush();
        }
        Progress(tty)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.0 {
            use std::io::Write;
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
        }
    }
}

/// Seconds as `1h02m03s`, `2m05s` or `7s`.
pub fn secs(s: u64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Text for `coolmesh state`.
pub fn render_state(s: &Snapshot, now_ms: u64) -> String {
    let mut out = String::new();
    let f = &s.fsm;
    out.push_str(&format!("node     {}\n", s.node));
    out.push_str(&format!(
        "state    {}{}\n",
        f.state,
        if f.dry_run { " (dry-run)" } else { "" }
    ));
    out.push_str(&format!(
        "reason   {}{}\n",
        f.reason,
        if f.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", f.detail)
        }
    ));
    if let Some(d) = f.deadline_ms {
        out.push_str(&format!(
            "shutdown in {}\n",
            secs(d.saturating_sub(now_ms) / 1000)
        ));
    }
    if let Some(m) = f.maintenance_until_ms {
        out.push_str(&format!(
            "maintenance for {}\n",
            secs(m.saturating_sub(now_ms) / 1000)
        ));
    }
    let t = &s.thermal;
    let o = |v: Option<f64>, u: &str| {
        v.map(|v| format!("{v:.1}{u}"))
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(&format!(
        "thermal  hottest {}  headroom {}  trend {}\n",
        o(t.hottest_celsius, " C"),
        o(t.headroom_celsius, " C"),
        o(t.trend_celsius_per_minute, " C/min")
    ));
    if !s.power.targets.is_empty() {
        out.push_str(&format!(
            "power    {} (policy {})\n",
            match s.power.up {
                Some(true) => "up",
                Some(false) => "DOWN",
                None => "unknown",
            },
            s.power.policy
        ));
        for tg in &s.power.targets {
            out.push_str(&format!(
                "  {:<40} {}\n",
                tg.target,
                if tg.up {
                    "up".to_string()
                } else if tg.unknown {
                    // A local error: nothing is known about the target.
                    format!(
                        "unknown (local error, not a vote): {}",
                        tg.error.clone().unwrap_or_default()
                    )
                } else {
                    format!("down: {}", tg.error.clone().unwrap_or_default())
                }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(
            &["A", "NUM"],
            &[
                ["long name".into(), "1.0".into()],
                ["x".into(), "100.5".into()],
            ],
            &[1],
        );
        assert_eq!(t, "A            NUM\nlong name    1.0\nx          100.5\n");
    }

    #[test]
    fn cluster_table_ranks_by_headroom() {
        use coolmesh_exporter::model::{PeerStatus, Thermal};
        let mut s = Snapshot {
            node: "me".into(),
            ..Default::default()
        };
        s.fsm.state = "normal".into();
        s.thermal.headroom_celsius = Some(30.0);
        let peer = |n: &str, h: f64| PeerStatus {
            node: n.into(),
            peer_id: String::new(),
            liveness: "alive".into(),
            last_seen_ms: 0,
            version: 1,
            thermal: Thermal {
                headroom_celsius: Some(h),
                ..Default::default()
            },
            power_up: Some(true),
            state: "normal".into(),
            reason: "none".into(),
            deadline_ms: None,
            stale: false,
        };
        s.cluster.peers = vec![peer("cool", 50.0), peer("hot", 5.0)];
        let t = render_cluster(&s, 0);
        let order: Vec<&str> = t
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(order, ["cool", "me", "hot"], "{t}");
    }

    #[test]
    fn file_sd_lists_every_node_once_sorted() {
        use coolmesh_exporter::model::PeerStatus;
        let mut s = Snapshot {
            node: "srv2".into(),
            peer_id: "12D3me".into(),
            ..Default::default()
        };
        s.cluster.name = "room-1".into();
        let peer = |n: &str, liveness: &str| PeerStatus {
            node: n.into(),
            peer_id: format!("12D3{n}"),
            liveness: liveness.into(),
            last_seen_ms: 0,
            version: 1,
            thermal: Default::default(),
            power_up: None,
            state: "normal".into(),
            reason: "none".into(),
            deadline_ms: None,
            stale: liveness == "dead",
        };
        s.cluster.peers = vec![peer("srv10", "alive"), peer("srv1", "dead")];
        let v: serde_json::Value =
            serde_json::from_str(&render_file_sd(&s, true, 9876)).expect("json");
        let targets: Vec<&str> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|g| g["targets"][0].as_str().expect("target"))
            .collect();
        // A dead peer stays listed: Prometheus must keep scraping it to alert.
        assert_eq!(targets, ["srv1:9876", "srv10:9876", "srv2:9876"]);
        assert_eq!(v[2]["labels"]["__meta_coolmesh_cluster"], "room-1");
        assert_eq!(v[2]["labels"]["__meta_coolmesh_peer_id"], "12D3me");
        let alone: serde_json::Value =
            serde_json::from_str(&render_file_sd(&s, false, 80)).expect("json");
        assert_eq!(alone.as_array().map(Vec::len), Some(1));
        assert_eq!(alone[0]["targets"][0], "srv2:80");
    }

    #[test]
    fn colour_keeps_words_and_alignment() {
        let plain = table(
            &["NODE", "STATE"],
            &[
                ["a".into(), "pre_fail".into()],
                ["bb".into(), "normal".into()],
            ],
            &[],
        );
        let c = colourize(&plain);
        assert!(c.contains("\x1b[1;31mpre_fail\x1b[0m"), "{c:?}");
        assert!(c.starts_with("\x1b[1mNODE"), "{c:?}");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut esc = false;
            for ch in s.chars() {
                match (esc, ch) {
                    (false, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&c), plain);
    }

    #[test]
    fn state_text_shows_time_left() {
        let mut s = Snapshot {
            node: "n1".into(),
            ..Default::default()
        };
        s.fsm.state = "pre_fail".into();
        s.fsm.reason = "power".into();
        s.fsm.deadline_ms = Some(1_000_000 + 272_000);
        let t = render_state(&s, 1_000_000);
        assert!(
            t.contains("state    pre_fail") && t.contains("shutdown in 4m32s"),
            "{t}"
        );
    }
}

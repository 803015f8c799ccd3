//! The HTTP(S) client of the one-shot commands (`state`, `counter`, `room`,
//! `roster`, `explain`, `demo`): one endpoint type carrying the CA, client
//! certificate and basic auth flags, bounded requests, and errors that name
//! the innermost cause.

use crate::args::ClientFlags;
use coolmesh_exporter::Snapshot;
use http_body_util::{BodyExt, Full, Limited};
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Run one command against the agent that `url` and `flags` name, print
/// what it answers and give the exit status every such command has: 2 when
/// the flags cannot work (a bad URL, an unreadable certificate), 1 when
/// the request fails or `work` says the answer is incomplete, 0 otherwise.
/// `work` returns the text for stdout and whether it is complete.
pub fn run_against<F, Fut>(url: &str, flags: &ClientFlags, work: F) -> ExitCode
where
    F: FnOnce(Endpoint) -> Fut,
    Fut: Future<Output = anyhow::Result<(String, bool)>>,
{
    // One request at a time: a current-thread runtime is enough.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ep = match Endpoint::from_flags(url, flags) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    let r = rt.block_on(work(ep));
    // A request stuck in a dead TCP connection must not hold up the exit.
    rt.shutdown_timeout(Duration::from_millis(300));
    print_outcome(r)
}

/// Print a command's text (stdout) or error (stderr) and give its status.
pub fn print_outcome(r: anyhow::Result<(String, bool)>) -> ExitCode {
    match r {
        Ok((text, complete)) => {
            print!("{text}");
            if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    pub fn from_flags(url: &str, f: &crate::args::ClientFlags) -> anyhow::Result<Endpoint> {
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

/// One bounded HTTP request to an [`Endpoint`]: TLS and basic auth when it has them.
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
        .map_err(|e| anyhow::anyhow!("bad --url {url:?}: {e} (e.g. http://127.0.0.1:10027)"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => anyhow::bail!("bad --url {url:?}: use http://HOST:PORT or https://HOST:PORT"),
    };
    let Some(host) = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    else {
        anyhow::bail!("bad --url {url:?}: no host (e.g. http://127.0.0.1:10027)");
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

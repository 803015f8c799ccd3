//! The server with a web config file, over real loopback sockets and real
//! TLS: certificates are made here with rcgen (a CA, a server certificate
//! for 127.0.0.1, client certificates from that CA and from a stranger's).

use coolmesh_exporter::auth::Token;
use coolmesh_exporter::{App, BuildInfo, ControlRequest, Limits, Metrics, Snapshot, WebConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, SupportedProtocolVersion};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const PASSWORD: &str = "correct horse battery staple";

/// A CA that signs server and client certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).expect("ca");
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM)
    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut p =
            CertificateParams::new(vec![name.to_string(), "localhost".into()]).expect("params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    /// Client certificate from `ca`.
    client: (String, String),
    /// Client certificate from a CA the server does not know.
    stranger: (String, String),
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new("coolmesh test CA");
    let (cert, key) = ca.issue("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(dir.path().join("server.crt"), cert).expect("write");
    std::fs::write(dir.path().join("server.key"), key).expect("write");
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write");
    let client = ca.issue("prometheus", ExtendedKeyUsagePurpose::ClientAuth);
    let other = Ca::new("someone else");
    let stranger = other.issue("prometheus", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        dir,
        ca,
        client,
        stranger,
    }
}

fn users() -> String {
    // Cost 4 keeps the tests fast; real files use 10 or more.
    let h = bcrypt::hash(PASSWORD, 4).expect("hash");
    format!("basic_auth_users:\n  prometheus: {h}\n")
}

struct Server {
    addr: std::net::SocketAddr,
    web: Arc<WebConfig>,
    commands: mpsc::Receiver<ControlRequest>,
    _stop: oneshot::Sender<()>,
}

async fn start(yaml: &str, dir: &Path, limits: Limits) -> Server {
    let web = Arc::new(WebConfig::parse(yaml, dir).unwrap_or_else(|e| panic!("{e}")));
    let (_snap, rx) = watch::channel(Arc::new(Snapshot {
        node: "n1".into(),
        ready: true,
        ..Default::default()
    }));
    // The sender must outlive the server: keep it in a leaked task.
    tokio::spawn(async move {
        let _keep = _snap;
        std::future::pending::<()>().await
    });
    let build = BuildInfo {
        version: "t",
        revision: "t",
        rustc: "t",
    };
    let metrics = Metrics::new(&build, rx.clone(), 2).expect("metrics");
    let (tx, commands) = mpsc::channel(4);
    let app = Arc::new(App {
        metrics,
        events: None,
        history: None,
        snapshot: rx,
        control: Some(tx),
        token: Some(Token::from_file_content(TOKEN).expect("token")).into(),
        limits,
        web: Some(web.clone()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(coolmesh_exporter::serve(listener, app, async {
        let _ = stop_rx.await;
    }));
    Server {
        addr,
        web,
        commands,
        _stop: stop,
    }
}

fn tls_yaml(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
}

struct Client {
    roots: String,
    cert: Option<(String, String)>,
    versions: &'static [&'static SupportedProtocolVersion],
}

impl Client {
    fn trusting(ca: &str) -> Client {
        Client {
            roots: ca.to_string(),
            cert: None,
            versions: rustls::ALL_VERSIONS,
        }
    }

    fn config(&self) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.roots.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let b =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(self.versions)
                .expect("versions")
                .with_root_certificates(roots);
        match &self.cert {
            None => b.with_no_client_auth(),
            Some((c, k)) => {
                let chain = CertificateDer::pem_slice_iter(c.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain");
                let key = PrivateKeyDer::from_pem_slice(k.as_bytes()).expect("key");
                b.with_client_auth_cert(chain, key).expect("client cert")
            }
        }
    }

    /// TLS connection, or the handshake error.
    async fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let c = tokio_rustls::TlsConnector::from(Arc::new(self.config()));
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let mut s = tokio::time::timeout(Duration::from_secs(5), c.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("handshake timed out"))??;
        // TLS 1.3: a refused client certificate is only reported on the
        // first read, so do a round trip before calling it connected.
        let probe = format!(
            "GET /-/healthy HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
            basic("prometheus", PASSWORD)
        );
        s.write_all(probe.as_bytes()).await?;
        let mut b = [0u8; 12];
        s.read_exact(&mut b).await?;
        Ok(s)
    }

    async fn get(
        &self,
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let s = self.connect(addr).await.expect("TLS connection");
        exchange(s, method, path, headers).await
    }
}

/// Send one request (asking to close) and read the whole answer; returns
/// (status, head, body). The connection may have served a request before.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        // A server that answered early and closed (plain HTTP on the TLS
        // port): its answer may still be there to read.
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        assert!(
            matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted),
            "write: {e}"
        );
    }
    let mut buf = Vec::new();
    // A peer that closes without close_notify ends in an error; what was
    // read until then is in `buf`.
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    // Skip the /-/healthy answer of the connect round trip, if any.
    let last = text.rfind("HTTP/1.").unwrap_or(0);
    let text = &text[last..];
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    (status, head.to_string(), body.to_string())
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

#[tokio::test]
async fn https_with_basic_auth_on_every_route() {
    let p = pki();
    let yaml = format!(
        "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n{}",
        tls_yaml(""),
        users()
    );
    let s = start(&yaml, p.dir.path(), Limits::default()).await;
    let c = Client::trusting(&p.ca.pem());
    let good = basic("prometheus", PASSWORD);

    let (st, head, body) = c
        .get(s.addr, "GET", "/metrics", &[("Authorization", &good)])
        .await;
    assert_eq!(st, 200, "{head}");
    assert!(body.contains("coolmesh_build_info{"), "{body}");
    assert!(
        head.to_ascii_lowercase().contains("x-frame-options: deny"),
        "{head}"
    );

    for path in [
        "/",
        "/metrics",
        "/-/healthy",
        "/-/ready",
        "/v1/state",
        "/v1/peers",
        "/v1/offload",
        "/v1/counters",
        "/nope",
    ] {
        let (st, head, _) = c.get(s.addr, "GET", path, &[]).await;
        assert_eq!(st, 401, "{path} without credentials: {head}");
        assert!(
            head.contains("WWW-Authenticate: Basic") || head.contains("www-authenticate: Basic"),
            "{head}"
        );
        // The extra headers are on refusals too.
        assert!(
            head.to_ascii_lowercase().contains("x-frame-options: deny"),
            "{head}"
        );
        let wrong = basic("prometheus", "Tr0ub4dor&3");
        assert_eq!(
            c.get(s.addr, "GET", path, &[("Authorization", &wrong)])
                .await
                .0,
            401,
            "{path} with a wrong password"
        );
        assert_eq!(
            c.get(
                s.addr,
                "GET",
                path,
                &[("Authorization", &basic("root", PASSWORD))]
            )
            .await
            .0,
            401,
            "{path} with an unknown user"
        );
        let (st, _, _) = c
            .get(s.addr, "GET", path, &[("Authorization", &good)])
            .await;
        assert_eq!(st, if path == "/nope" { 404 } else { 200 }, "{path}");
    }
    // Every good request after the first was answered from the cache: one
    // bcrypt run for the good password, one for the wrong one, one for the
    // unknown user.
    assert_eq!(s.web.basic_auth().expect("auth").bcrypt_runs(), 3);
}

#[tokio::test]
async fn mutations_need_basic_auth_and_the_token_header() {
    let p = pki();
    let yaml = format!("{}{}", tls_yaml(""), users());
    let mut s = start(&yaml, p.dir.path(), Limits::default()).await;
    let c = Client::trusting(&p.ca.pem());
    let good = basic("prometheus", PASSWORD);
    let bearer = format!("Bearer {TOKEN}");
    // The bearer token alone does not get past basic auth...
    let (st, _, _) = c
        .get(
            s.addr,
            "POST",
            "/v1/shutdown/cancel",
            &[("Authorization", &bearer)],
        )
        .await;
    assert_eq!(st, 401);
    // ...nor basic auth without the token...
    let (st, _, body) = c
        .get(
            s.addr,
            "POST",
            "/v1/shutdown/cancel",
            &[("Authorization", &good)],
        )
        .await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("X-Coolmesh-Token"), "{body}");
    let (st, _, _) = c
        .get(
            s.addr,
            "POST",
            "/v1/shutdown/cancel",
            &[
                ("Authorization", &good),
                ("X-Coolmesh-Token", "wrong-wrong-wrong-wrong"),
            ],
        )
        .await;
    assert_eq!(st, 401);
    assert!(s.commands.try_recv().is_err());
    // ...both together do.
    let agent = tokio::spawn(async move {
        let r = s.commands.recv().await.expect("command");
        let _ = r.reply.send(Ok("cancelled".into()));
    });
    let (st, _, body) = c
        .get(
            s.addr,
            "POST",
            "/v1/shutdown/cancel",
            &[("Authorization", &good), ("X-Coolmesh-Token", TOKEN)],
        )
        .await;
    assert_eq!((st, body.contains("cancelled")), (200, true), "{body}");
    agent.await.expect("agent");
}

#[tokio::test]
async fn plain_http_and_untrusting_clients_do_not_hurt_the_server() {
    let p = pki();
    let s = start(&tls_yaml(""), p.dir.path(), Limits::default()).await;
    // Plain HTTP on the TLS port: Go's 400, then the server goes on.
    let (st, _, body) = exchange(
        TcpStream::connect(s.addr).await.expect("connect"),
        "GET",
        "/metrics",
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("HTTP request to an HTTPS server"), "{body}");
    // Garbage that is neither: closed.
    let mut g = TcpStream::connect(s.addr).await.expect("connect");
    g.write_all(b"\x00\x01\x02\x03").await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), g.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert!(buf.is_empty());
    // A client that does not trust the server's CA fails its handshake.
    let stranger = Ca::new("stranger");
    let e = Client::trusting(&stranger.pem())
        .connect(s.addr)
        .await
        .expect_err("untrusted server certificate");
    assert!(e.to_string().contains("certificate"), "{e}");
    // Without basic auth configured, everything is open over TLS.
    let (st, _, body) = Client::trusting(&p.ca.pem())
        .get(s.addr, "GET", "/v1/state", &[])
        .await;
    assert_eq!(st, 200);
    assert!(body.contains("\"node\": \"n1\""), "{body}");
}

#[tokio::test]
async fn mtls_require_and_verify_client_cert() {
    let p = pki();
    let yaml =
        tls_yaml("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n");
    let s = start(&yaml, p.dir.path(), Limits::default()).await;
    let mut c = Client::trusting(&p.ca.pem());
    assert!(c.connect(s.addr).await.is_err(), "no client certificate");
    c.cert = Some(p.stranger.clone());
    assert!(
        c.connect(s.addr).await.is_err(),
        "certificate from another CA"
    );
    c.cert = Some(p.client.clone());
    let (st, _, _) = c.get(s.addr, "GET", "/metrics", &[]).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn optional_and_unverified_client_certs() {
    let p = pki();
    // VerifyClientCertIfGiven: none is fine, a bad one is not.
    let yaml = tls_yaml("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n");
    let s = start(&yaml, p.dir.path(), Limits::default()).await;
    let mut c = Client::trusting(&p.ca.pem());
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);
    c.cert = Some(p.stranger.clone());
    assert!(c.connect(s.addr).await.is_err());
    c.cert = Some(p.client.clone());
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);

    // RequireAnyClientCert: some certificate, whoever issued it.
    let s = start(
        &tls_yaml("  client_auth_type: RequireAnyClientCert\n"),
        p.dir.path(),
        Limits::default(),
    )
    .await;
    let mut c = Client::trusting(&p.ca.pem());
    assert!(
        c.connect(s.addr).await.is_err(),
        "a certificate is required"
    );
    c.cert = Some(p.stranger.clone());
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);
}

#[tokio::test]
async fn protocol_versions_are_enforced() {
    let p = pki();
    let s = start(
        &tls_yaml("  max_version: TLS12\n"),
        p.dir.path(),
        Limits::default(),
    )
    .await;
    let mut c = Client::trusting(&p.ca.pem());
    c.versions = TLS13_ONLY;
    assert!(
        c.connect(s.addr).await.is_err(),
        "TLS 1.3 client, TLS 1.2 server"
    );
    c.versions = TLS12_ONLY;
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);

    let s = start(
        &tls_yaml("  min_version: TLS13\n"),
        p.dir.path(),
        Limits::default(),
    )
    .await;
    assert!(
        c.connect(s.addr).await.is_err(),
        "TLS 1.2 client, TLS 1.3 server"
    );
    c.versions = TLS13_ONLY;
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);
}

#[tokio::test]
async fn slow_handshakes_are_cut_or_evicted() {
    let p = pki();
    let limits = Limits {
        max_connections: 1,
        tls_handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let s = start(&tls_yaml(""), p.dir.path(), limits).await;
    // Slowloris on TLS: the first byte of a ClientHello, then nothing. The
    // handshake timeout cuts it.
    let mut slow = TcpStream::connect(s.addr).await.expect("connect");
    slow.write_all(&[0x16]).await.expect("write");
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut buf))
        .await
        .expect("the server closes a stalled handshake");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A stalled handshake holding the only slot is evicted by a new
    // connection, which is served (it has not delivered a request).
    let mut slow = TcpStream::connect(s.addr).await.expect("connect");
    slow.write_all(&[0x16]).await.expect("write");
    let c = Client::trusting(&p.ca.pem());
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(250), slow.read_to_end(&mut buf))
        .await
        .expect("evicted before its handshake timeout");
}

#[tokio::test]
async fn renewed_certificates_are_served_without_restart() {
    let p = pki();
    let s = start(&tls_yaml(""), p.dir.path(), Limits::default()).await;
    let c = Client::trusting(&p.ca.pem());
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);
    // The certificate is renewed under a new CA.
    let ca2 = Ca::new("renewed CA");
    let (cert, key) = ca2.issue("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
    // A half-done renewal (new key, old certificate) keeps the old pair.
    std::fs::write(p.dir.path().join("server.key"), &key).expect("write");
    assert_eq!(c.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);
    std::fs::write(p.dir.path().join("server.crt"), &cert).expect("write");
    assert!(c.connect(s.addr).await.is_err(), "old CA no longer matches");
    let c2 = Client::trusting(&ca2.pem());
    assert_eq!(c2.get(s.addr, "GET", "/-/healthy", &[]).await.0, 200);
}

#[tokio::test]
async fn bad_certificate_files_are_named() {
    let p = pki();
    std::fs::write(
        p.dir.path().join("other.key"),
        KeyPair::generate().expect("k").serialize_pem(),
    )
    .expect("write");
    let e = WebConfig::parse(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
        p.dir.path(),
    )
    .expect_err("key of another certificate");
    let s = e.to_string();
    assert!(
        s.starts_with("line 3: tls_server_config.key_file: key "),
        "{s}"
    );
    assert!(s.contains("other.key") && s.contains("server.crt"), "{s}");
    let e = WebConfig::parse(
        "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
        p.dir.path(),
    )
    .expect_err("a key is no certificate");
    assert!(e.to_string().contains("no certificate in it"), "{e}");
    let e = WebConfig::parse(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n",
        p.dir.path(),
    )
    .expect_err("a certificate is no key");
    assert!(e.to_string().contains("no usable private key"), "{e}");
    let e = WebConfig::parse(
        &tls_yaml("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.key\n"),
        p.dir.path(),
    )
    .expect_err("no CA in it");
    assert!(e.to_string().contains("client_ca_file: client CA"), "{e}");
}

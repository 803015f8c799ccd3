//! The real binary: serves the fixture tree, survives broken sources, and
//! stops cleanly on SIGTERM within 2 s.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn serves_fixture_readings_and_stops_on_sigterm() {
    let sysfs = fixtures().join("sysfs");
    let mut a = start_agent(&[
        "--path.sysfs",
        sysfs.to_str().expect("path"),
        "--sensors.interval",
        "1s",
    ]);
    wait_for("ready", Duration::from_secs(10), || {
        (http(a.addr, "GET", "/-/ready", None).0 == 200).then_some(())
    });
    let (st, body) = http(a.addr, "GET", "/metrics", None);
    assert_eq!(st, 200);
    assert_eq!(
        metric(
            &body,
            "coolmesh_temperature_celsius{chip=\"platform_coretemp_0\",sensor=\"temp2\"}"
        ),
        Some(54.0)
    );
    assert_eq!(
        metric(&body, "coolmesh_source_up{source=\"hwmon\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&body, "coolmesh_thermal_hottest_celsius"),
        Some(57.0)
    );
    assert_eq!(
        metric(&body, "coolmesh_thermal_headroom_celsius"),
        Some(45.0)
    );
    let (elapsed, status) = terminate(&mut a);
    assert!(status.success(), "{status}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn broken_sources_are_reported_and_the_agent_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("readings.json");
    std::fs::write(&file, "this is not json").expect("write");
    let cfg = dir.path().join("coolmesh.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensors]\nsources = [\"file\", \"exec\", \"hwmon\"]\nfile = \"{}\"\nexec = [\"sleep\", \"600\"]\ninterval = \"1s\"\ntimeout = \"300ms\"\nsysfs = \"/nonexistent\"\n",
            file.display()
        ),
    )
    .expect("write");
    let mut a = start_agent(&["--config", cfg.to_str().expect("path")]);
    let body = wait_for("source status", Duration::from_secs(10), || {
        let (_, b) = http(a.addr, "GET", "/metrics", None);
        b.contains("coolmesh_source_up{source=\"exec\"}")
            .then_some(b)
    });
    for s in ["file", "exec", "hwmon"] {
        assert_eq!(
            metric(&body, &format!("coolmesh_source_up{{source=\"{s}\"}}")),
            Some(0.0),
            "{s}\n{body}"
        );
    }
    let (_, state) = http(a.addr, "GET", "/v1/state", None);
    let v: serde_json::Value = serde_json::from_str(&state).expect("json");
    let errors: Vec<String> = v["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["error"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        errors[0].contains("readings.json") && errors[0].contains("not a readings document"),
        "{errors:?}"
    );
    assert!(errors[1].contains("timed out"), "{errors:?}");
    assert!(errors[2].contains("/nonexistent/class/hwmon"), "{errors:?}");

    // The file is fixed while the agent runs: the next round picks it up.
    std::fs::write(
        &file,
        r#"[{"chip":"inlet","sensor":"front","celsius":23.5}]"#,
    )
    .expect("write");
    wait_for("file source up", Duration::from_secs(10), || {
        let (_, b) = http(a.addr, "GET", "/metrics", None);
        (metric(&b, "coolmesh_source_up{source=\"file\"}") == Some(1.0)).then_some(())
    });
    let (elapsed, status) = terminate(&mut a);
    assert!(
        status.success() && elapsed < Duration::from_secs(2),
        "{status} after {elapsed:?}"
    );
}

#[test]
fn check_config_reports_every_problem_with_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[power]\npolicy = \"most\"\n\n[sensors]\nintervall = \"5s\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args(["check-config", bad.to_str().expect("p")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: power.policy"), "{err}");
    assert!(
        err.contains("line 5: sensors.intervall: unknown key (did you mean `interval`?)"),
        "{err}"
    );

    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/coolmesh.example.toml");
    // The example is a template (its key and token are on the servers):
    // the file alone.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args([
            "check-config",
            "--syntax-only",
            example.to_str().expect("p"),
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn agent_refuses_a_bad_config_without_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\ntoken_file = \"/nonexistent/token\"\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args([
            "agent",
            "--config",
            bad.to_str().expect("p"),
            "--web.listen-address",
            "127.0.0.1:0",
            "--cluster.disable",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.token_file /nonexistent/token: cannot read"),
        "{err}"
    );
}

#[test]
fn the_cluster_does_not_start_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args([
            "agent",
            "--state-dir",
            state.to_str().expect("p"),
            "--web.listen-address",
            "127.0.0.1:0",
            "--cluster.no-mdns",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.psk_file is not set") && err.contains("insecure_no_psk"),
        "{err}"
    );
    assert!(
        !state.exists(),
        "refused before touching the state directory"
    );
    // check-config says the same about the file.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[cluster]\nname = \"room-1\"\n").expect("write");
    let out = run_cli(&["check-config", "--syntax-only", cfg.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.psk_file is not set"), "{err}");
    // An explicit opt-in passes, with a warning.
    std::fs::write(
        &cfg,
        "[cluster]\nname = \"room-1\"\ninsecure_no_psk = true\n",
    )
    .expect("write");
    let out = run_cli(&["check-config", "--syntax-only", cfg.to_str().expect("p")]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: line 3: cluster.insecure_no_psk: cluster.insecure_no_psk = true"),
        "{err}"
    );
}

#[test]
fn tells_systemd_ready_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sysfs = fixtures().join("sysfs");
    let state = dir.path().join("state");
    let mut a = start_agent_env(
        &[
            "--path.sysfs",
            sysfs.to_str().expect("p"),
            "--state-dir",
            state.to_str().expect("p"),
        ],
        &[("NOTIFY_SOCKET", sock_path.as_os_str())],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(seen[0].contains("READY=1"), "READY comes first: {seen:?}");
    let _ = terminate(&mut a);
}

fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args(args)
        .output()
        .expect("run coolmesh")
}

#[test]
fn keygen_counter_and_state_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("swarm.key");
    let k = key.to_str().expect("p");
    assert!(run_cli(&["keygen", "--psk", "--out", k]).status.success());
    let text = std::fs::read_to_string(&key).expect("key");
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{text}"
    );
    let again = run_cli(&["keygen", "--psk", "--out", k]);
    assert!(
        !again.status.success(),
        "an existing key must not be overwritten"
    );
    assert_eq!(std::fs::read_to_string(&key).expect("key"), text);

    let state = dir.path().join("state");
    let s = state.to_str().expect("p");
    let id1 = String::from_utf8_lossy(&run_cli(&["keygen", "--state-dir", s]).stdout)
        .trim()
        .to_string();
    let id2 = String::from_utf8_lossy(&run_cli(&["keygen", "--state-dir", s]).stdout)
        .trim()
        .to_string();
    assert!(
        id1.starts_with("12D3KooW") && id1 == id2,
        "stable identity: {id1} {id2}"
    );

    let token = dir.path().join("token");
    std::fs::write(&token, "cli-test-token-0123456789").expect("token");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nstate_dir = \"{s}\"\n[http]\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
    .expect("cfg");
    let sysfs = fixtures().join("sysfs");
    let mut a = start_agent(&[
        "--config",
        cfg.to_str().expect("p"),
        "--path.sysfs",
        sysfs.to_str().expect("p"),
    ]);
    let url = format!("http://{}", a.addr);
    let out = run_cli(&[
        "counter",
        "--url",
        &url,
        "inc",
        "jobs",
        "--amount",
        "3",
        "--token-file",
        token.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(&[
        "counter",
        "--url",
        &url,
        "inc",
        "jobs",
        "--amount",
        "-1",
        "--token-file",
        token.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list =
        String::from_utf8_lossy(&run_cli(&["counter", "--url", &url, "list"]).stdout).into_owned();
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["jobs", "2", "2"]),
        "{list}"
    );
    let bad = run_cli(&[
        "counter",
        "--url",
        &url,
        "inc",
        "shutdowns",
        "--token-file",
        token.to_str().expect("p"),
    ]);
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("built-in"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let st = String::from_utf8_lossy(&run_cli(&["state", "--url", &url, "--cluster"]).stdout)
        .into_owned();
    assert!(st.starts_with("NODE") && st.contains("this node"), "{st}");
    // The agent's identity is the one keygen created in its state dir.
    let m = http(a.addr, "GET", "/metrics", None).1;
    assert!(m.contains(&format!("peer_id=\"{id1}\"")), "{m}");
    let _ = terminate(&mut a);
    let down = run_cli(&["state", "--url", &url]);
    assert!(
        !down.status.success() && String::from_utf8_lossy(&down.stderr).contains("is it running?")
    );
}

/// Certificates for the TLS tests: (CA PEM, server cert PEM, server key PEM).
fn test_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "coolmesh test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = p.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut p =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).expect("params");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca, &ca_key).expect("sign");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// GET over TLS with the std library and rustls' blocking API; returns
/// (status, body).
fn https_get(
    addr: std::net::SocketAddr,
    ca: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).expect("conn");
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    // One write (one TLS record), then whatever came back.
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.flush().expect("flush");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|x| x.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serves_https_with_basic_auth_and_the_cli_follows() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, cert, key) = test_pki();
    std::fs::write(d.join("ca.crt"), &ca).expect("write");
    std::fs::create_dir(d.join("tls")).expect("mkdir");
    std::fs::write(d.join("tls/server.crt"), &cert).expect("write");
    std::fs::write(d.join("tls/server.key"), &key).expect("write");
    let password = "scrape-password-0123";
    std::fs::write(d.join("password"), format!("{password}\n")).expect("write");
    let hash = bcrypt::hash(password, 4).expect("hash");
    // Relative paths: against the web config file's directory.
    std::fs::write(
        d.join("web.yml"),
        format!("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\nbasic_auth_users:\n  prometheus: {hash}\n"),
    )
    .expect("write");
    let token = d.join("token");
    std::fs::write(&token, "tls-test-token-0123456789").expect("token");
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nstate_dir = \"{}\"\n[http]\ntoken_file = \"{}\"\n",
            d.join("state").display(),
            token.display()
        ),
    )
    .expect("cfg");
    let sysfs = fixtures().join("sysfs");
    let mut a = start_agent(&[
        "--config",
        cfg.to_str().expect("p"),
        "--path.sysfs",
        sysfs.to_str().expect("p"),
        "--web.config.file",
        d.join("web.yml").to_str().expect("p"),
    ]);
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{password}"))
    );
    let (st, body) = https_get(a.addr, &ca, "/metrics", Some(&good));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("coolmesh_build_info{"), "{body}");
    assert_eq!(https_get(a.addr, &ca, "/metrics", None).0, 401);
    assert_eq!(https_get(a.addr, &ca, "/-/healthy", None).0, 401);
    // Plain HTTP on the TLS port is refused with a clear answer.
    let (st, body) = http(a.addr, "GET", "/metrics", None);
    assert_eq!(st, 400);
    assert!(body.contains("HTTPS server"), "{body}");

    let url = format!("https://{}", a.addr);
    let ca_file = d.join("ca.crt");
    let pw_file = d.join("password");
    let client = [
        "--tls.ca-file",
        ca_file.to_str().expect("p"),
        "--basic-auth.username",
        "prometheus",
        "--basic-auth.password-file",
        pw_file.to_str().expect("p"),
    ];
    let out = run_cli(&[&["state", "--url", &url, "--json"][..], &client[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["node"].is_string(), "{v}");
    // The token goes in X-Coolmesh-Token next to basic auth.
    let inc = run_cli(
        &[
            &["counter", "--url", &url][..],
            &client[..],
            &[
                "inc",
                "jobs",
                "--amount",
                "2",
                "--token-file",
                token.to_str().expect("p"),
            ][..],
        ]
        .concat(),
    );
    assert!(
        inc.status.success(),
        "{}",
        String::from_utf8_lossy(&inc.stderr)
    );
    let list = run_cli(&[&["counter", "--url", &url][..], &client[..], &["list"][..]].concat());
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["jobs", "2", "2"]),
        "{list}"
    );
    // What goes wrong is said.
    let e = run_cli(&[
        "state",
        "--url",
        &url,
        "--tls.ca-file",
        ca_file.to_str().expect("p"),
    ]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && err.contains("401") && err.contains("--basic-auth.username"),
        "{err}"
    );
    let e = run_cli(&["state", "--url", &url]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && err.contains("--tls.ca-file"),
        "{err}"
    );
    let e = run_cli(&["state", "--url", &format!("http://{}", a.addr)]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("https://"), "{err}");
    let _ = terminate(&mut a);

    // A web config whose key does not match its certificate: exit 2 before
    // serving, naming the files; check-config says the same.
    let (_, other_cert, _) = test_pki();
    std::fs::write(d.join("tls/server.crt"), other_cert).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args([
            "agent",
            "--config",
            cfg.to_str().expect("p"),
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            d.join("web.yml").to_str().expect("p"),
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("web.yml: line 3: tls_server_config.key_file:") && err.contains("server.key"),
        "{err}"
    );
    let out = run_cli(&["check-config", d.join("web.yml").to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::write(
        &cfg,
        format!(
            "[http]\nweb_config_file = \"{}\"\n[node]\nstate_dir = \"{}\"\n[shutdown]\ncommand = [\"true\"]\n[cluster]\nenabled = false\n",
            d.join("web.yml").display(),
            d.join("state").display()
        ),
    )
    .expect("cfg");
    // As the user the agent runs as here (the files are theirs).
    let me = current_user();
    let check = [
        "preflight",
        "--user",
        me.as_str(),
        "--config",
        cfg.to_str().expect("p"),
    ];
    let out = run_cli(&check);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 2: http.web_config_file") && err.contains("does not go with"),
        "{err}"
    );
    std::fs::write(d.join("tls/server.crt"), &cert).expect("write");
    let out = run_cli(&check);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The shipped example loads (with certificates where it expects them)
    // and its password is the documented one.
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/web-config.example.yml");
    let ex = d.join("example");
    std::fs::create_dir_all(ex.join("tls")).expect("mkdir");
    std::fs::copy(&example, ex.join("web-config.yml")).expect("copy");
    std::fs::write(ex.join("tls/coolmesh.crt"), &cert).expect("write");
    std::fs::write(ex.join("tls/coolmesh.key"), &key).expect("write");
    let out = run_cli(&[
        "check-config",
        ex.join("web-config.yml").to_str().expect("p"),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("TLS TLS12-TLS13") && said.contains("basic auth (1 user(s))"),
        "{said}"
    );
    let text = std::fs::read_to_string(&example).expect("example");
    let hash = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("prometheus: "))
        .expect("user");
    assert!(bcrypt::verify("change-me", hash).expect("hash"));
}

/// `coolmesh --version` prints what the Prometheus exporters print
/// (version, branch, revision, build date, toolchain, platform), and
/// `coolmesh_build_info` carries the same revision and toolchain.
#[test]
fn version_and_build_info_agree() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let first = lines[0];
    assert!(
        first.starts_with(&format!("coolmesh {} (branch: ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let revision = first
        .split("revision: ")
        .nth(1)
        .and_then(|r| r.strip_suffix(')'))
        .expect("revision");
    assert!(!revision.is_empty());
    assert!(lines[1].starts_with("  build date:       "), "{text}");
    assert!(lines[2].starts_with("  rust version:     rustc "), "{text}");
    assert!(lines[3].starts_with("  platform:         "), "{text}");
    let rustc = lines[2].trim_start_matches("  rust version:     ");

    let sysfs = fixtures().join("sysfs");
    let a = start_agent(&["--path.sysfs", sysfs.to_str().expect("path")]);
    let (_, metrics) = http(a.addr, "GET", "/metrics", None);
    let info = metrics
        .lines()
        .find(|l| l.starts_with("coolmesh_build_info{"))
        .expect("build_info");
    assert!(info.contains(&format!("revision=\"{revision}\"")), "{info}");
    assert!(info.contains(&format!("rustc=\"{rustc}\"")), "{info}");
    // The process collector, as in every Prometheus exporter.
    for name in [
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_max_fds ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
    ] {
        let v = metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name}missing:\n{metrics}"));
        assert!(v >= 0.0, "{name}{v}");
    }
}

/// SIGHUP does not stop the agent (its default action would): the agent
/// reloads its config, names a changed key that takes a restart, or says
/// the file does not load, and keeps serving (reload_binary.rs tests what
/// a reload applies).
#[test]
fn sighup_rereads_the_config_and_keeps_running() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sysfs = fixtures().join("sysfs");
    let cfg = tmp.path().join("coolmesh.toml");
    let text = format!(
        "[node]\nstate_dir = \"{}\"\n[sensors]\nsysfs = \"{}\"\ninterval = \"1s\"\n[cluster]\nenabled = false\n",
        tmp.path().join("state").display(),
        sysfs.display()
    );
    std::fs::write(&cfg, &text).expect("config");
    let mut a = start_agent(&["--config", cfg.to_str().expect("p")]);
    let hup = |a: &Agent| {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &a.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    };
    hup(&a);
    let f = a.wait_log(&["config reloaded"], Duration::from_secs(10));
    assert_eq!(f["applied"], "", "{f}");
    std::fs::write(&cfg, text.replace("interval = \"1s\"", "interval = \"2s\"")).expect("config");
    hup(&a);
    let f = a.wait_log(
        &["config reloaded; changed keys that need a restart keep their old value until `systemctl restart coolmesh`"],
        Duration::from_secs(10),
    );
    assert_eq!(f["needs_restart"], "sensors.interval", "{f}");
    std::fs::write(&cfg, "[sensors\n").expect("config");
    hup(&a);
    a.wait_log(
        &["config reload failed; the agent keeps running with its current config"],
        Duration::from_secs(10),
    );
    assert!(
        a.child.try_wait().expect("wait").is_none(),
        "the agent exited"
    );
    assert_eq!(http(a.addr, "GET", "/-/healthy", None).0, 200);
}

use super::basic_auth::*;
use super::*;

fn parse(src: &str) -> Result<Parsed, WebConfigError> {
    parse_text(src, Path::new("/etc/coolmesh"))
}

fn error(src: &str) -> WebConfigError {
    match parse(src) {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e,
    }
}

// Hash of "hunter2" at the minimum cost (fast in tests).
fn hash(pw: &str) -> String {
    bcrypt::hash(pw, 4).expect("hash")
}

/// Lines a web config is made of, valid and not, for the property
/// tests below to shuffle into files.
const LINES: &[&str] = &[
    "tls_server_config:",
    "  cert_file: server.crt",
    "  key_file: server.key",
    "  client_auth_type: RequireAndVerifyClientCert",
    "  client_ca_file: ca.crt",
    "  min_version: TLS13",
    "  max_version: TLS10",
    "  cipher_suites: [TLS_AES_128_GCM_SHA256, nope]",
    "  curve_preferences: [X25519, CurveP521]",
    "http_server_config:",
    "  headers:",
    "    X-Frame-Options: deny",
    "    Content-Type: text/plain",
    "basic_auth_users:",
    "  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze",
    "  'bob:x': hash",
    "  - list",
    "rate_limit: {interval: 1s}",
    "unknown_key: 1",
    "&a [*a]",
    "\t\u{0}",
    "---",
    "...",
];

proptest::proptest! {
    /// Whatever the file holds, parsing returns (no panic), and every
    /// error it reports names a line inside the file.
    #[test]
    fn any_file_parses_or_errors_with_a_line(
        picks in proptest::collection::vec(0..LINES.len(), 0..24),
        noise in proptest::collection::vec(proptest::prelude::any::<char>(), 0..8),
    ) {
        let mut src: String = picks.iter().map(|&i| format!("{}\n", LINES[i])).collect();
        src.extend(noise);
        if let Err(e) = parse(&src) {
            proptest::prop_assert!(!e.key.is_empty() && !e.message.is_empty(), "{e}");
            if let Some(l) = e.line {
                proptest::prop_assert!(l >= 1 && l <= src.lines().count() + 1, "{e}");
            }
        }
    }

    /// The Authorization header parser takes any bytes.
    #[test]
    fn basic_header_takes_any_bytes(h in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let _ = parse_basic(&h);
    }
}

#[test]
fn empty_and_comment_only_files_enable_nothing() {
    for src in [
        "",
        "# nothing\n",
        "---\n",
        "tls_server_config:\nbasic_auth_users:\n",
    ] {
        let p = parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert!(p.tls.is_none() && p.users.is_empty() && p.headers.is_empty());
    }
}

#[test]
fn toolkit_documentation_examples() {
    // docs/web-config.yml of the toolkit, in substance.
    let src = "\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
  bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m
";
    let p = parse(src).expect("parse");
    let t = p.tls.expect("tls");
    assert_eq!(t.cert, Pem::File("/etc/coolmesh/server.crt".into()));
    assert_eq!(t.key, Pem::File("/etc/coolmesh/server.key".into()));
    assert_eq!(t.client_auth, ClientAuthType::NoClientCert);
    assert_eq!((t.min, t.max), (TlsVersion::Tls12, TlsVersion::Tls13));
    assert!(t.prefer_server);
    assert_eq!(
        p.users.keys().map(String::as_str).collect::<Vec<_>>(),
        ["alice", "bob"]
    );

    let src = "\
tls_server_config:
  cert_file: /abs/server.crt
  key_file: /abs/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
  max_version: TLS13
  cipher_suites:
    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    - TLS_AES_128_GCM_SHA256
  prefer_server_cipher_suites: false
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: false
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    X-XSS-Protection: \"1; mode=block\"
    Content-Security-Policy: \"\"
";
    let p = parse(src).expect("parse");
    let t = p.tls.expect("tls");
    assert_eq!(t.cert, Pem::File("/abs/server.crt".into()));
    assert_eq!(t.client_ca, Some(Pem::File("/etc/coolmesh/ca.crt".into())));
    assert_eq!(t.client_auth, ClientAuthType::RequireAndVerifyClientCert);
    assert_eq!((t.min, t.max), (TlsVersion::Tls13, TlsVersion::Tls13));
    assert_eq!(
        t.ciphers,
        [
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS13_AES_128_GCM_SHA256
        ]
    );
    assert!(!t.prefer_server);
    assert_eq!(t.curves, [NamedGroup::X25519, NamedGroup::secp256r1]);
    // Blank CSP is unset.
    let names: Vec<&str> = p.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "strict-transport-security",
            "x-frame-options",
            "x-content-type-options",
            "x-xss-protection"
        ]
    );
}

#[test]
fn every_client_auth_type_and_the_old_alias() {
    for (name, want) in [
        ("NoClientCert", ClientAuthType::NoClientCert),
        ("RequestClientCert", ClientAuthType::RequestClientCert),
        ("RequireAnyClientCert", ClientAuthType::RequireAnyClientCert),
        ("RequireClientCert", ClientAuthType::RequireAnyClientCert),
        (
            "VerifyClientCertIfGiven",
            ClientAuthType::VerifyClientCertIfGiven,
        ),
        (
            "RequireAndVerifyClientCert",
            ClientAuthType::RequireAndVerifyClientCert,
        ),
    ] {
        let ca = if want.verifies() {
            "  client_ca_file: ca.pem\n"
        } else {
            ""
        };
        let src = format!(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: {name}\n{ca}"
        );
        let p = parse(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.tls.expect("tls").client_auth, want);
    }
}

#[test]
fn inline_certificates() {
    let p = parse("tls_server_config:\n  cert: |\n    PEM\n  key: KEY\n").expect("parse");
    let t = p.tls.expect("tls");
    assert_eq!(t.cert, Pem::Inline("PEM\n".into()));
    assert_eq!(t.key, Pem::Inline("KEY".into()));
}

/// (document, line, key, words of the message)
const BAD: &[(&str, usize, &str, &str)] = &[
        ("tls_server_confg:\n  cert_file: a\n", 1, "(top level)", "unknown field `tls_server_confg`"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  certfile: c\n", 4, "tls_server_config", "unknown field `certfile`"),
        ("http_server_config:\n  http3: true\n", 2, "http_server_config", "unknown field `http3`"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Mandatory\n", 4, "tls_server_config.client_auth_type", "unknown client_auth_type \"Mandatory\""),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n", 4, "tls_server_config.min_version", "TLS11 is not supported"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: SSL3\n", 4, "tls_server_config.max_version", "unknown TLS version"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n", 4, "tls_server_config.min_version", "above max_version"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites:\n    - TLS_RSA_WITH_AES_128_CBC_SHA\n", 5, "tls_server_config.cipher_suites[0]", "rustls deliberately does not implement"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", 4, "tls_server_config.cipher_suites", "only TLS 1.3 suites"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519, CurveP521]\n", 4, "tls_server_config.curve_preferences[1]", "CurveP521 is not implemented"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.pem\n", 4, "tls_server_config.client_ca_file", "without a client auth policy"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n", 4, "tls_server_config.client_auth_type", "needs client_ca_file"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [a]\n", 5, "tls_server_config.client_allowed_sans", "not supported"),
        ("tls_server_config:\n  key_file: b\n", 1, "tls_server_config", "missing one of cert or cert_file"),
        ("tls_server_config:\n  cert_file: a\n", 1, "tls_server_config", "missing one of key or key_file"),
        ("tls_server_config:\n  cert_file: a\n  cert: b\n  key_file: c\n", 3, "tls_server_config.cert", "not both"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  prefer_server_cipher_suites: maybe\n", 4, "tls_server_config.prefer_server_cipher_suites", "invalid type"),
        ("http_server_config:\n  headers:\n    X-Powered-By: coolmesh\n", 3, "http_server_config.headers", "\"X-Powered-By\" can not be configured"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", 3, "http_server_config.headers.X-Frame-Options", "expected one of [\"deny\", \"sameorigin\"]"),
        ("basic_auth_users:\n  alice: hunter2\n", 2, "basic_auth_users.alice", "not a bcrypt hash"),
        ("basic_auth_users:\n  alice: $2y$99$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n", 2, "basic_auth_users.alice", "cost 99"),
        ("rate_limit:\n  interval: 1s\n  burst: 5\n", 1, "rate_limit", "not supported"),
        ("tls_server_config: [1, 2]\n", 1, "tls_server_config", "invalid type"),
        ("tls_server_config:\n  cert_file: a\n  cert_file: b\n", 2, "tls_server_config", "duplicate"),
        ("basic_auth_users:\n  alice: 'x\n", 3, "(top level)", ""),
    ];

#[test]
fn every_error_names_key_and_line() {
    for (src, line, key, words) in BAD {
        let e = error(src);
        assert_eq!(e.line, Some(*line), "{src:?}: {e}");
        assert_eq!(e.key, *key, "{src:?}: {e}");
        assert!(e.message.contains(words), "{src:?}: {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("line {line}: {key}: ")),
            "{shown}"
        );
    }
}

#[test]
fn user_with_colon_is_rejected() {
    let e = error(&format!("basic_auth_users:\n  \"a:b\": {}\n", hash("x")));
    assert!(e.message.contains("contains ':'"), "{e}");
    assert_eq!(e.line, Some(1));
}

#[test]
fn load_names_the_file_and_missing_certificates() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("web.yml");
    std::fs::write(
        &cfg,
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
    )
    .expect("write");
    let e = WebConfig::load(&cfg).expect_err("missing files");
    let s = e.to_string();
    assert!(
        s.starts_with(&format!(
            "{}: line 2: tls_server_config.cert_file: certificate {}",
            cfg.display(),
            dir.path().join("nope.crt").display()
        )),
        "{s}"
    );
    assert!(s.contains("cannot read"), "{s}");

    std::fs::write(dir.path().join("nope.crt"), "not a certificate").expect("write");
    let s = WebConfig::load(&cfg).expect_err("bad cert").to_string();
    assert!(s.contains("no certificate in it"), "{s}");

    let e = WebConfig::load(&dir.path().join("absent.yml")).expect_err("absent");
    assert!(
        e.to_string().contains("absent.yml: (file): cannot read"),
        "{e}"
    );
}

#[test]
fn basic_header_parsing() {
    // "alice:pa:ss" -> the password keeps its colon.
    assert_eq!(
        parse_basic(b"Basic YWxpY2U6cGE6c3M="),
        Some(("alice".into(), b"pa:ss".to_vec()))
    );
    assert_eq!(
        parse_basic(b"basic   YWxpY2U6cGE6c3M="),
        Some(("alice".into(), b"pa:ss".to_vec()))
    );
    assert_eq!(parse_basic(b"Bearer YWxpY2U6cGE6c3M="), None);
    assert_eq!(parse_basic(b"Basic !!!"), None);
    assert_eq!(parse_basic(b"Basic YWxpY2U="), None, "no colon");
    assert_eq!(parse_basic(b"Basic"), None);
    assert_eq!(parse_basic(&[0xff, 0xfe]), None);
}

fn header(user: &str, pw: &str) -> Vec<u8> {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
    .into_bytes()
}

#[tokio::test]
async fn verdicts_are_cached_so_bcrypt_runs_once_per_credential() {
    let mut users = BTreeMap::new();
    users.insert("alice".to_string(), hash("hunter2"));
    let auth = BasicAuth::new(users);
    let good = header("alice", "hunter2");
    let bad = header("alice", "hunter3");
    assert_eq!(auth.check(Some(&good)).await, AuthResult::Ok);
    assert_eq!(auth.bcrypt_runs(), 1);
    for _ in 0..10 {
        assert_eq!(auth.check(Some(&good)).await, AuthResult::Ok);
    }
    assert_eq!(auth.bcrypt_runs(), 1, "cached success");
    assert_eq!(auth.check(Some(&bad)).await, AuthResult::Denied);
    assert_eq!(auth.check(Some(&bad)).await, AuthResult::Denied);
    assert_eq!(auth.bcrypt_runs(), 2, "cached failure");
    // Unknown users run bcrypt too (timing), and are never let in.
    assert_eq!(
        auth.check(Some(&header("mallory", "hunter2"))).await,
        AuthResult::Denied
    );
    assert_eq!(auth.bcrypt_runs(), 3);
    assert_eq!(auth.check(None).await, AuthResult::Denied);
    assert_eq!(auth.check(Some(b"Basic")).await, AuthResult::Denied);
    assert_eq!(auth.bcrypt_runs(), 3, "malformed headers cost nothing");

    // A flood of wrong passwords fills the failure cache but cannot evict
    // the scraper's success.
    for i in 0..(CACHE_ENTRIES + 20) {
        remember(&auth.bad, cache_key("alice", "x", i.to_string().as_bytes()));
    }
    assert!(auth.bad.lock().expect("lock").len() <= CACHE_ENTRIES);
    assert_eq!(auth.check(Some(&good)).await, AuthResult::Ok);
    assert_eq!(auth.bcrypt_runs(), 3);
}

/// The point of the cache, in numbers: a real cost-10 hash costs tens of
/// milliseconds per check, a cached verdict microseconds. Printed with
/// `--nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_checks_skip_bcrypt() {
    let mut users = BTreeMap::new();
    users.insert(
        "alice".to_string(),
        bcrypt::hash("hunter2", 10).expect("hash"),
    );
    let auth = BasicAuth::new(users);
    let good = header("alice", "hunter2");
    let t = std::time::Instant::now();
    assert_eq!(auth.check(Some(&good)).await, AuthResult::Ok);
    let uncached = t.elapsed();
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        assert_eq!(auth.check(Some(&good)).await, AuthResult::Ok);
    }
    let cached = t.elapsed() / 1000;
    eprintln!("basic auth check, bcrypt cost 10: uncached {uncached:?}, cached {cached:?}");
    assert_eq!(auth.bcrypt_runs(), 1);
    assert!(cached * 100 < uncached, "cached {cached:?} vs {uncached:?}");
}

#[test]
fn cache_keys_do_not_collide_across_field_boundaries() {
    assert_ne!(cache_key("ab", "c", b"d"), cache_key("a", "bc", b"d"));
    assert_ne!(cache_key("a", "b", b"cd"), cache_key("a", "bc", b"d"));
}

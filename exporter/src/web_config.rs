//! `--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit
//! format (<https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md>),
//! so the file an operator already writes for node_exporter works here, and
//! `promtool check web-config` checks it.
//!
//! # What is supported
//!
//! - `tls_server_config`: `cert_file`/`key_file` (or inline `cert`/`key`),
//!   `client_auth_type` (all five Go policies), `client_ca_file` (or inline
//!   `client_ca`), `min_version`/`max_version` (`TLS12`, `TLS13`),
//!   `cipher_suites` (the TLS 1.2 ECDHE AEAD suites by their Go names; TLS 1.3
//!   names are accepted and, as in Go, change nothing), `curve_preferences`
//!   (`X25519`, `CurveP256`, `CurveP384`), `prefer_server_cipher_suites`.
//! - `http_server_config.headers`: the toolkit's five security headers, with
//!   its value checks, added to every response (401s included).
//!   `http2` is accepted and ignored: the server speaks HTTP/1.1 only.
//! - `basic_auth_users`: user -> bcrypt hash, in front of every endpoint.
//!
//! Rejected with a message saying so (rather than silently ignored, which
//! would leave an operator believing a policy is enforced): `TLS10`/`TLS11`,
//! CBC and RSA-key-exchange suites, `CurveP521`, `client_allowed_sans`,
//! `rate_limit`. Unknown keys are errors naming the key and the line.
//!
//! # Differences from the toolkit
//!
//! The toolkit re-reads the whole file on every request. Here the file is
//! read once at startup (a bad edit cannot take a running agent's endpoint
//! down; restart to apply it), except the server certificate and key: they
//! are checked (file size and modification time) on every TLS handshake and
//! reloaded when they change, so a renewed certificate is served without a
//! restart. A renewal that does not load (half-written, key not matching)
//! is logged and the previous certificate stays in use.
//!
//! # Basic auth cost
//!
//! bcrypt is deliberately slow (~50-70 ms at cost 10). As in the toolkit,
//! verdicts are cached, keyed by a SHA-256 of user, stored hash and password
//! (no plaintext password is kept), so a Prometheus scraping every second
//! pays for one bcrypt run, not one per scrape. Successes and failures live
//! in separate bounded caches, so a flood of wrong passwords cannot evict the
//! scraper's entry. bcrypt runs on the blocking pool, one at a time, with a
//! bounded wait: a flood of wrong passwords costs one core at most and never
//! blocks the async workers that serve cached (and unauthenticated) requests.

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{
    ring as ring_provider, CryptoProvider, WebPkiSupportedAlgorithms,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};

/// A problem in a web config file: the key (dotted path), the line when it
/// is known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    /// The file, when the error came from [`WebConfig::load`].
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    /// Dotted key, e.g. `tls_server_config.cert_file`; `(file)` for the
    /// file as a whole.
    pub key: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for WebConfigError {}

// ------------------------------------------------------------------ format

/// Deserialise a string through `check`, inside the YAML scalar's own
/// visitor: errors raised there carry the scalar's line and key path (an
/// error raised after `String::deserialize` returns would only carry the
/// enclosing mapping's).
fn checked_str<'de, D, T>(
    d: D,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F>(F);
    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(check))
}

/// The file as written. Every struct denies unknown keys: a misspelt
/// `basic_auth_user` must not silently leave the endpoint open.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, BcryptHash>>,
    /// Accepted by the parser only to answer with a precise message.
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<ClientAuthType>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<TlsVersion>,
    #[serde(default)]
    max_version: Option<TlsVersion>,
    #[serde(default)]
    cipher_suites: Option<Vec<Cipher>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<Curve>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// HTTP/2 is not served; accepted so toolkit files load unchanged.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<Headers>,
}

/// Go's `tls.ClientAuthType` names, as the toolkit spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthType {
    /// No certificate asked for.
    #[default]
    NoClientCert,
    /// Asked for, not required, not verified (proves nothing; toolkit parity).
    RequestClientCert,
    /// Required, not verified against a CA (proves nothing; toolkit parity).
    RequireAnyClientCert,
    /// Verified against `client_ca_file` when the client sends one.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file`: real mTLS.
    RequireAndVerifyClientCert,
}

impl ClientAuthType {
    const NAMES: &'static str = "NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert";

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "NoClientCert" => Self::NoClientCert,
            "RequestClientCert" => Self::RequestClientCert,
            // The toolkit keeps the old name for compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => Self::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => Self::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => Self::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert
        )
    }
}

impl<'de> Deserialize<'de> for ClientAuthType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            Self::parse(s).ok_or_else(|| {
                format!("unknown client_auth_type {s:?}; use one of {}", Self::NAMES)
            })
        })
    }
}

/// `TLS12` or `TLS13`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    fn name(self) -> &'static str {
        match self {
            Self::Tls12 => "TLS12",
            Self::Tls13 => "TLS13",
        }
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            match s {
            "TLS12" => Ok(Self::Tls12),
            "TLS13" => Ok(Self::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{s} is not supported (TLS 1.0 and 1.1 are obsolete and rustls does not implement them); use TLS12 or TLS13"
            )),
            _ => Err(format!("unknown TLS version {s:?}; use TLS12 or TLS13")),
        }
        })
    }
}

/// A cipher suite by its Go name (`crypto/tls` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cipher(CipherSuite);

/// Go names of the suites the ring provider implements. The TLS 1.2 ones are
/// configurable; the TLS 1.3 ones are always on (as in Go).
const CIPHERS: &[(&str, CipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

impl<'de> Deserialize<'de> for Cipher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            if let Some((_, c)) = CIPHERS.iter().find(|(n, _)| *n == s) {
                return Ok(Cipher(*c));
            }
            let supported: Vec<&str> = CIPHERS
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| {
                    n.starts_with("TLS_ECDHE_") && (n.ends_with("SHA256") || n.ends_with("SHA384"))
                })
                .collect();
            let why = if s.contains("_CBC_") || s.contains("_RC4_") || s.starts_with("TLS_RSA_") {
                "a Go suite that rustls deliberately does not implement (CBC, RC4 or RSA key exchange)"
            } else {
                "unknown"
            };
            Err(format!(
                "cipher suite {s:?} is {why}; TLS 1.2 suites available: {}",
                supported.join(", ")
            ))
        })
    }
}

/// An ECDHE group by its Go name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Curve(NamedGroup);

impl<'de> Deserialize<'de> for Curve {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            match s {
            "X25519" => Ok(Curve(NamedGroup::X25519)),
            "CurveP256" => Ok(Curve(NamedGroup::secp256r1)),
            "CurveP384" => Ok(Curve(NamedGroup::secp384r1)),
            "CurveP521" => Err(
                "CurveP521 is not implemented by the TLS library (rustls with ring); use X25519, CurveP256 or CurveP384".into(),
            ),
            _ => Err(format!(
                "unknown curve {s:?}; use X25519, CurveP256 or CurveP384"
            )),
        }
        })
    }
}

/// Headers the toolkit lets an operator set, with the values it accepts
/// (`None`: any value). Kept to the same list on purpose: one file, same
/// meaning in every exporter.
const EXTRA_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

#[derive(Debug, Clone, Default)]
struct Headers(Vec<(HeaderName, HeaderValue)>);

/// A header name from the allowed list (checked where it is written).
struct AllowedHeader(&'static str, Option<&'static [&'static str]>);

impl<'de> Deserialize<'de> for AllowedHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |k| {
            EXTRA_HEADERS
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(n, v)| AllowedHeader(n, *v))
                .ok_or_else(|| {
                    let names: Vec<&str> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
                    format!(
                        "HTTP header {k:?} can not be configured; allowed: {}",
                        names.join(", ")
                    )
                })
        })
    }
}

/// The value of one header, checked against its allowed values.
struct HeaderSeed<'a>(&'a AllowedHeader);

impl<'de> de::DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Option<HeaderValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let AllowedHeader(name, allowed) = self.0;
        checked_str(d, |v| {
            // Blank means unset (toolkit).
            if v.is_empty() {
                return Ok(None);
            }
            if let Some(values) = allowed {
                if !values.contains(&v) {
                    return Err(format!(
                        "invalid value {v:?} for {name}; expected one of {values:?}"
                    ));
                }
            }
            HeaderValue::from_str(v)
                .map(Some)
                .map_err(|_| format!("{name}: not a valid header value"))
        })
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of header names to values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Headers, A::Error> {
                let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
                while let Some(h) = m.next_key::<AllowedHeader>()? {
                    let v = m.next_value_seed(HeaderSeed(&h))?;
                    if let Some(v) = v {
                        let name =
                            HeaderName::from_bytes(h.0.as_bytes()).map_err(de::Error::custom)?;
                        if out.iter().any(|(n, _)| *n == name) {
                            return Err(de::Error::custom(format!("header {} is set twice", h.0)));
                        }
                        out.push((name, v));
                    }
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A bcrypt hash, checked when the file is read (format and cost), so a
/// mangled hash is a startup error rather than a user who can never log in.
#[derive(Clone, PartialEq, Eq)]
struct BcryptHash(String);

impl fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BcryptHash(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for BcryptHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let parts: bcrypt::HashParts = s.parse().map_err(|e| {
                format!(
                    "not a bcrypt hash ({e}); generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )
            })?;
            let cost = parts.get_cost();
            if !(4..=31).contains(&cost) {
                return Err(format!("bcrypt cost {cost} is outside 4-31"));
            }
            Ok(BcryptHash(s.to_string()))
        })
    }
}

// ------------------------------------------------------------------ parse

/// Line of the first `key:` in `src` (1-based), for errors found after
/// deserialisation. Keys of this format are unique per file, so the first
/// occurrence is the one meant.
fn line_of(src: &str, key: &str) -> Option<usize> {
    src.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

fn yaml_error(e: &serde_yaml_ng::Error) -> WebConfigError {
    let line = e.location().map(|l| l.line());
    let text = e.to_string();
    // The library appends " at line L column C"; the line is reported apart.
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    // "path: message" when the error is below the top level.
    let (key, message) = match text.split_once(": ") {
        Some((k, m)) if !k.contains(' ') => (k.to_string(), m.to_string()),
        _ => ("(top level)".to_string(), text),
    };
    WebConfigError {
        file: None,
        line,
        key,
        message,
    }
}

/// What identifies a version of a file: modification time and size.
type FileStamp = (SystemTime, u64);

/// Where a PEM blob comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pem {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Pem::File(p) => std::fs::read(p),
            Pem::Inline(s) => Ok(s.as_bytes().to_vec()),
        }
    }

    fn describe(&self, key: &str) -> String {
        match self {
            Pem::File(p) => format!("{key} {}", p.display()),
            Pem::Inline(_) => format!("{key} (inline)"),
        }
    }

    fn stamp(&self) -> Option<FileStamp> {
        match self {
            Pem::File(p) => std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())),
            Pem::Inline(_) => None,
        }
    }
}

/// Validated TLS settings, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsSettings {
    cert: Pem,
    key: Pem,
    client_auth: ClientAuthType,
    client_ca: Option<Pem>,
    min: TlsVersion,
    max: TlsVersion,
    ciphers: Vec<CipherSuite>,
    prefer_server: bool,
    curves: Vec<NamedGroup>,
}

/// The parsed file, before certificates are loaded.
#[derive(Debug, Clone)]
struct Parsed {
    tls: Option<TlsSettings>,
    headers: Vec<(HeaderName, HeaderValue)>,
    users: BTreeMap<String, String>,
}

fn parse_text(src: &str, dir: &Path) -> Result<Parsed, WebConfigError> {
    // An empty file (or one with only comments) is valid: nothing enabled.
    let raw: RawConfig = match serde_yaml_ng::from_str::<Option<RawConfig>>(src) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => return Err(yaml_error(&e)),
    };
    let err = |key: &str, message: String| WebConfigError {
        file: None,
        line: line_of(src, key.rsplit('.').next().unwrap_or(key)),
        key: key.to_string(),
        message,
    };
    if raw.rate_limit.is_some() {
        return Err(err(
            "rate_limit",
            "is not supported by coolmesh; the server's connection cap (http.max_connections) bounds the load instead".into(),
        ));
    }
    let path = |p: String| {
        let p = PathBuf::from(p);
        // Relative paths are relative to the config file (toolkit).
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    };
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let tls = match raw.tls_server_config {
        None => None,
        Some(t) => {
            let cert_file = nonempty(t.cert_file);
            let key_file = nonempty(t.key_file);
            let cert = nonempty(t.cert);
            let key = nonempty(t.key);
            let ca_file = nonempty(t.client_ca_file);
            let ca = nonempty(t.client_ca);
            // The toolkit's rule: TLS is on as soon as any of these is set.
            let enabled = cert_file.is_some()
                || key_file.is_some()
                || cert.is_some()
                || key.is_some()
                || ca_file.is_some()
                || ca.is_some()
                || t.client_auth_type.is_some();
            if !enabled {
                None
            } else {
                let tls = "tls_server_config";
                let cert =
                    match (cert_file, cert) {
                        (Some(_), Some(_)) => {
                            return Err(err(
                                &format!("{tls}.cert"),
                                "set either cert or cert_file, not both".into(),
                            ))
                        }
                        (Some(f), None) => Pem::File(path(f)),
                        (None, Some(c)) => Pem::Inline(c),
                        (None, None) => return Err(err(
                            tls,
                            "missing one of cert or cert_file (TLS is on because a TLS key is set)"
                                .into(),
                        )),
                    };
                let key = match (key_file, key) {
                    (Some(_), Some(_)) => {
                        return Err(err(
                            &format!("{tls}.key"),
                            "set either key or key_file, not both".into(),
                        ))
                    }
                    (Some(f), None) => Pem::File(path(f)),
                    (None, Some(k)) => Pem::Inline(k),
                    (None, None) => return Err(err(tls, "missing one of key or key_file".into())),
                };
                let client_ca = match (ca_file, ca) {
                    (Some(_), Some(_)) => {
                        return Err(err(
                            &format!("{tls}.client_ca"),
                            "set either client_ca or client_ca_file, not both".into(),
                        ))
                    }
                    (Some(f), None) => Some(Pem::File(path(f))),
                    (None, Some(c)) => Some(Pem::Inline(c)),
                    (None, None) => None,
                };
                let client_auth = t.client_auth_type.unwrap_or_default();
                if client_ca.is_some() && client_auth == ClientAuthType::NoClientCert {
                    return Err(err(
                        &format!("{tls}.client_ca_file"),
                        "client CAs are configured without a client auth policy; set client_auth_type (RequireAndVerifyClientCert for mTLS)".into(),
                    ));
                }
                if client_auth.verifies() && client_ca.is_none() {
                    return Err(err(
                        &format!("{tls}.client_auth_type"),
                        format!(
                            "{client_auth:?} needs client_ca_file: the CA that signs the clients' certificates"
                        ),
                    ));
                }
                if t.client_allowed_sans.is_some_and(|s| !s.is_empty()) {
                    return Err(err(
                        &format!("{tls}.client_allowed_sans"),
                        "is not supported by coolmesh yet; give the allowed clients their own CA and use RequireAndVerifyClientCert".into(),
                    ));
                }
                let min = t.min_version.unwrap_or(TlsVersion::Tls12);
                let max = t.max_version.unwrap_or(TlsVersion::Tls13);
                if min > max {
                    return Err(err(
                        &format!("{tls}.min_version"),
                        format!(
                            "min_version {} is above max_version {}",
                            min.name(),
                            max.name()
                        ),
                    ));
                }
                let ciphers: Vec<CipherSuite> = t
                    .cipher_suites
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.0)
                    .collect();
                let tls12_ciphers = ciphers.iter().filter(|c| !is_tls13_suite(**c)).count();
                if !ciphers.is_empty() && tls12_ciphers == 0 && min == TlsVersion::Tls12 {
                    return Err(err(
                        &format!("{tls}.cipher_suites"),
                        "lists only TLS 1.3 suites, which leaves TLS 1.2 without any suite; add TLS 1.2 suites or set min_version: TLS13".into(),
                    ));
                }
                Some(TlsSettings {
                    cert,
                    key,
                    client_auth,
                    client_ca,
                    min,
                    max,
                    ciphers,
                    prefer_server: t.prefer_server_cipher_suites.unwrap_or(true),
                    curves: t
                        .curve_preferences
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| c.0)
                        .collect(),
                })
            }
        }
    };
    let headers = raw
        .http_server_config
        .and_then(|h| h.headers)
        .map(|h| h.0)
        .unwrap_or_default();
    let mut users = BTreeMap::new();
    for (u, h) in raw.basic_auth_users.unwrap_or_default() {
        if u.contains(':') {
            return Err(err(
                "basic_auth_users",
                format!("user name {u:?} contains ':', which basic auth cannot carry"),
            ));
        }
        users.insert(u, h.0);
    }
    Ok(Parsed {
        tls,
        headers,
        users,
    })
}

fn is_tls13_suite(c: CipherSuite) -> bool {
    matches!(
        c,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    )
}

// ------------------------------------------------------------------ TLS

fn file_error(key: &str, message: String) -> WebConfigError {
    WebConfigError {
        file: None,
        line: None,
        key: key.to_string(),
        message,
    }
}

fn load_certified_key(
    cert: &Pem,
    key: &Pem,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, WebConfigError> {
    let ck = "tls_server_config.cert_file";
    let kk = "tls_server_config.key_file";
    let cert_bytes = cert.read().map_err(|e| {
        file_error(
            ck,
            format!("{}: cannot read: {e}", cert.describe("certificate")),
        )
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            file_error(
                ck,
                format!("{}: not valid PEM: {e}", cert.describe("certificate")),
            )
        })?;
    if chain.is_empty() {
        return Err(file_error(
            ck,
            format!(
                "{}: no certificate in it (expected PEM \"-----BEGIN CERTIFICATE-----\")",
                cert.describe("certificate")
            ),
        ));
    }
    let key_bytes = key
        .read()
        .map_err(|e| file_error(kk, format!("{}: cannot read: {e}", key.describe("key"))))?;
    let der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        file_error(
            kk,
            format!(
                "{}: no usable private key in it ({e}; expected PEM PKCS#8, PKCS#1 or SEC1)",
                key.describe("key")
            ),
        )
    })?;
    CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        file_error(
            kk,
            format!(
                "{} does not go with {}: {e}",
                key.describe("key"),
                cert.describe("certificate")
            ),
        )
    })
}

/// Serves the certificate, reloading it when its files change (checked on
/// every handshake: two `stat`s, far cheaper than the handshake itself).
#[derive(Debug)]
struct ReloadingCert {
    cert: Pem,
    key: Pem,
    provider: Arc<CryptoProvider>,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    /// Certificate's and key's.
    stamp: (Option<FileStamp>, Option<FileStamp>),
    current: Arc<CertifiedKey>,
}

impl ReloadingCert {
    fn stamp(&self) -> (Option<FileStamp>, Option<FileStamp>) {
        (self.cert.stamp(), self.key.stamp())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamp = self.stamp();
        // A poisoned lock only means another handshake panicked; the state
        // itself is always whole.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if stamp != st.stamp {
            // Remember the stamp even when loading fails: one warning per
            // change, not one per handshake.
            st.stamp = stamp;
            match load_certified_key(&self.cert, &self.key, &self.provider) {
                Ok(k) => {
                    tracing::info!("TLS certificate reloaded");
                    st.current = Arc::new(k);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate changed but does not load; still serving the previous one")
                }
            }
        }
        Some(st.current.clone())
    }
}

/// `RequestClientCert` / `RequireAnyClientCert`: the client proves it holds
/// the key of some certificate, which is not checked against anything. This
/// is what Go does for these policies; the docs warn that it is no access
/// control.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn build_tls(t: &TlsSettings) -> Result<ServerConfig, WebConfigError> {
    let mut provider = ring_provider::default_provider();
    if !t.ciphers.is_empty() {
        // Only TLS 1.2 suites are configurable (as in Go); with
        // prefer_server_cipher_suites the list order is the preference.
        let mut suites: Vec<SupportedCipherSuite> = Vec::new();
        for c in &t.ciphers {
            if is_tls13_suite(*c) {
                continue;
            }
            if let Some(s) = provider.cipher_suites.iter().find(|s| s.suite() == *c) {
                if !suites.iter().any(|x| x.suite() == *c) {
                    suites.push(*s);
                }
            }
        }
        let tls13: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .filter(|s| is_tls13_suite(s.suite()))
            .copied()
            .collect();
        provider.cipher_suites = tls13.into_iter().chain(suites).collect();
    }
    if !t.curves.is_empty() {
        let all = provider.kx_groups.clone();
        provider.kx_groups = t
            .curves
            .iter()
            .filter_map(|g| all.iter().find(|k| k.name() == *g).copied())
            .collect();
    }
    let provider = Arc::new(provider);
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if t.min <= TlsVersion::Tls13 && t.max >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if t.min <= TlsVersion::Tls12 && t.max >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let key = load_certified_key(&t.cert, &t.key, &provider)?;
    let verifier: Arc<dyn ClientCertVerifier> = match t.client_auth {
        ClientAuthType::NoClientCert => rustls::server::WebPkiClientVerifier::no_client_auth(),
        ClientAuthType::RequestClientCert | ClientAuthType::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: t.client_auth == ClientAuthType::RequireAnyClientCert,
                algs: provider.signature_verification_algorithms,
            })
        }
        ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert => {
            let k = "tls_server_config.client_ca_file";
            let Some(ca) = &t.client_ca else {
                return Err(file_error(k, "missing".into()));
            };
            let bytes = ca.read().map_err(|e| {
                file_error(k, format!("{}: cannot read: {e}", ca.describe("client CA")))
            })?;
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&bytes) {
                let c = c.map_err(|e| {
                    file_error(
                        k,
                        format!("{}: not valid PEM: {e}", ca.describe("client CA")),
                    )
                })?;
                roots.add(c).map_err(|e| {
                    file_error(
                        k,
                        format!("{}: bad CA certificate: {e}", ca.describe("client CA")),
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(file_error(
                    k,
                    format!("{}: no certificate in it", ca.describe("client CA")),
                ));
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if t.client_auth == ClientAuthType::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| file_error(k, format!("client certificate verifier: {e}")))?
        }
    };
    let stamp = (t.cert.stamp(), t.key.stamp());
    let resolver = ReloadingCert {
        cert: t.cert.clone(),
        key: t.key.clone(),
        provider: provider.clone(),
        state: Mutex::new(CertState {
            stamp,
            current: Arc::new(key),
        }),
    };
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| file_error("tls_server_config", format!("{e}")))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    // HTTP/1.1 only (http_server_config.http2 is ignored).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ignore_client_order = t.prefer_server;
    Ok(cfg)
}

// ------------------------------------------------------------------ basic auth

/// Most cached verdicts of each kind (the toolkit keeps 100).
const CACHE_ENTRIES: usize = 100;
/// Longest a request waits for its turn at bcrypt before it is refused
/// (503 with Retry-After). With the connection cap and ~60 ms per check
/// this is only reached under a password flood.
const BCRYPT_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Basic auth users and the verdict caches.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Keys of credentials that verified.
    good: Mutex<HashSet<[u8; 32]>>,
    /// Keys of credentials that did not.
    bad: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time.
    slot: Arc<Semaphore>,
    /// Hash checked for unknown users, so the answer takes as long as for a
    /// known one (no user enumeration by timing). Made on first use.
    decoy: Arc<OnceLock<String>>,
    decoy_cost: u32,
    runs: Arc<AtomicU64>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Outcome of a basic auth check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// Known user, right password.
    Ok,
    /// No, wrong or malformed credentials.
    Denied,
    /// Too many checks queued (a password flood): try again later.
    Busy,
}

fn cache_key(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    // Length prefixes: ("ab","c") and ("a","bc") must not collide.
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn remember(set: &Mutex<HashSet<[u8; 32]>>, key: [u8; 32]) {
    let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
    if s.len() >= CACHE_ENTRIES {
        // Evict an arbitrary entry (HashSet order is randomised per process).
        if let Some(k) = s.iter().next().copied() {
            s.remove(&k);
        }
    }
    s.insert(key);
}

/// Split an `Authorization: Basic ...` header into user and password.
pub fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let i = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..i].to_vec()).ok()?;
    Some((user, raw[i + 1..].to_vec()))
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Self {
        let decoy_cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        BasicAuth {
            users,
            good: Mutex::default(),
            bad: Mutex::default(),
            slot: Arc::new(Semaphore::new(1)),
            decoy: Arc::new(OnceLock::new()),
            decoy_cost,
            runs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many bcrypt comparisons ran so far (cache misses).
    pub fn bcrypt_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Check an `Authorization` header value.
    pub async fn check(&self, header: Option<&[u8]>) -> AuthResult {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return AuthResult::Denied;
        };
        let known = self.users.get(&user).cloned();
        let hash_key = known.as_deref().unwrap_or("(unknown user)");
        let key = cache_key(&user, hash_key, &password);
        if known.is_some()
            && self
                .good
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key)
        {
            return AuthResult::Ok;
        }
        if self
            .bad
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return AuthResult::Denied;
        }
        let Ok(Ok(permit)) =
            tokio::time::timeout(BCRYPT_QUEUE_WAIT, self.slot.clone().acquire_owned()).await
        else {
            return AuthResult::Busy;
        };
        let decoy = self.decoy.clone();
        let decoy_cost = self.decoy_cost;
        let runs = self.runs.clone();
        let hash = known.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            runs.fetch_add(1, Ordering::Relaxed);
            match hash {
                Some(h) => bcrypt::verify(&password, &h).unwrap_or(false),
                None => {
                    let d = decoy.get_or_init(|| {
                        bcrypt::hash(b"coolmesh decoy password", decoy_cost).unwrap_or_default()
                    });
                    let _ = bcrypt::verify(&password, d);
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        if verdict {
            remember(&self.good, key);
            AuthResult::Ok
        } else {
            remember(&self.bad, key);
            AuthResult::Denied
        }
    }
}

// ------------------------------------------------------------------ loaded

/// A loaded web config: the TLS server config (certificates read and
/// checked), extra headers and basic auth users.
pub struct WebConfig {
    tls: Option<Arc<ServerConfig>>,
    tls_summary: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    basic_auth: Option<BasicAuth>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl WebConfig {
    /// Read and check `path`, including every certificate and key it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let with_file = |mut e: WebConfigError| {
            e.file = Some(path.to_path_buf());
            e
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            with_file(WebConfigError {
                file: None,
                line: None,
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
            })
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).map_err(with_file)
    }

    /// Parse a document; relative paths in it resolve against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, WebConfigError> {
        let p = parse_text(text, dir)?;
        let (tls, tls_summary) = match &p.tls {
            None => (None, None),
            Some(t) => {
                let cfg = build_tls(t).map_err(|mut e| {
                    e.line = e
                        .line
                        .or_else(|| line_of(text, e.key.rsplit('.').next().unwrap_or("")));
                    e
                })?;
                let summary = format!(
                    "TLS {}{}, client auth {:?}",
                    t.min.name(),
                    if t.min == t.max {
                        String::new()
                    } else {
                        format!("-{}", t.max.name())
                    },
                    t.client_auth
                );
                (Some(Arc::new(cfg)), Some(summary))
            }
        };
        Ok(WebConfig {
            tls,
            tls_summary,
            headers: p.headers,
            basic_auth: (!p.users.is_empty()).then(|| BasicAuth::new(p.users)),
        })
    }

    /// The TLS server config, when TLS is on.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// Headers added to every response.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Basic auth, when users are configured.
    pub fn basic_auth(&self) -> Option<&BasicAuth> {
        self.basic_auth.as_ref()
    }

    /// One line for the startup log.
    pub fn summary(&self) -> String {
        let mut parts = vec![self
            .tls_summary
            .clone()
            .unwrap_or_else(|| "plain HTTP".into())];
        match &self.basic_auth {
            Some(b) => parts.push(format!("basic auth ({} user(s))", b.users())),
            None => parts.push("no basic auth".into()),
        }
        if !self.headers.is_empty() {
            parts.push(format!("{} extra header(s)", self.headers.len()));
        }
        parts.join(", ")
    }
}

/// Body of the plain-HTTP answer on a TLS port (Go's wording).
pub const PLAIN_HTTP_ON_TLS: Bytes =
    Bytes::from_static(b"Client sent an HTTP request to an HTTPS server.\n");

#[cfg(test)]
mod tests {
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
}

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

mod basic_auth;
mod format;
mod parse;
mod tls;

pub use basic_auth::{parse_basic, AuthResult, BasicAuth};
use format::*;
pub use format::{ClientAuthType, TlsVersion};
use parse::*;
use tls::*;

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
mod tests;

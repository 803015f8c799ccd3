//! From text to checked settings: every problem with its key and line.

use super::*;

/// Line of the first `key:` in `src` (1-based), for errors found after
/// deserialisation. Keys of this format are unique per file, so the first
/// occurrence is the one meant.
pub(super) fn line_of(src: &str, key: &str) -> Option<usize> {
    src.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

pub(super) fn yaml_error(e: &serde_yaml_ng::Error) -> WebConfigError {
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
pub(super) type FileStamp = (SystemTime, u64);

/// Where a PEM blob comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pem {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    pub(super) fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Pem::File(p) => std::fs::read(p),
            Pem::Inline(s) => Ok(s.as_bytes().to_vec()),
        }
    }

    pub(super) fn describe(&self, key: &str) -> String {
        match self {
            Pem::File(p) => format!("{key} {}", p.display()),
            Pem::Inline(_) => format!("{key} (inline)"),
        }
    }

    pub(super) fn stamp(&self) -> Option<FileStamp> {
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
pub(super) struct TlsSettings {
    pub(super) cert: Pem,
    pub(super) key: Pem,
    pub(super) client_auth: ClientAuthType,
    pub(super) client_ca: Option<Pem>,
    pub(super) min: TlsVersion,
    pub(super) max: TlsVersion,
    pub(super) ciphers: Vec<CipherSuite>,
    pub(super) prefer_server: bool,
    pub(super) curves: Vec<NamedGroup>,
}

/// The parsed file, before certificates are loaded.
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pub(super) tls: Option<TlsSettings>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) users: BTreeMap<String, String>,
}

pub(super) fn parse_text(src: &str, dir: &Path) -> Result<Parsed, WebConfigError> {
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

pub(super) fn is_tls13_suite(c: CipherSuite) -> bool {
    matches!(
        c,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    )
}

//! The file format: the YAML schema, with the toolkit's value checks.

use super::*;

/// Deserialise a string through `check`, inside the YAML scalar's own
/// visitor: errors raised there carry the scalar's line and key path (an
/// error raised after `String::deserialize` returns would only carry the
/// enclosing mapping's).
pub(super) fn checked_str<'de, D, T>(
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
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) tls_server_config: Option<RawTls>,
    #[serde(default)]
    pub(super) http_server_config: Option<RawHttp>,
    #[serde(default)]
    pub(super) basic_auth_users: Option<BTreeMap<String, BcryptHash>>,
    /// Accepted by the parser only to answer with a precise message.
    #[serde(default)]
    pub(super) rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    #[serde(default)]
    pub(super) cert: Option<String>,
    #[serde(default)]
    pub(super) key: Option<String>,
    #[serde(default)]
    pub(super) client_ca: Option<String>,
    #[serde(default)]
    pub(super) cert_file: Option<String>,
    #[serde(default)]
    pub(super) key_file: Option<String>,
    #[serde(default)]
    pub(super) client_auth_type: Option<ClientAuthType>,
    #[serde(default)]
    pub(super) client_ca_file: Option<String>,
    #[serde(default)]
    pub(super) client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    pub(super) min_version: Option<TlsVersion>,
    #[serde(default)]
    pub(super) max_version: Option<TlsVersion>,
    #[serde(default)]
    pub(super) cipher_suites: Option<Vec<Cipher>>,
    #[serde(default)]
    pub(super) prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    pub(super) curve_preferences: Option<Vec<Curve>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    /// HTTP/2 is not served; accepted so toolkit files load unchanged.
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) http2: Option<bool>,
    #[serde(default)]
    pub(super) headers: Option<Headers>,
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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

    pub(super) fn verifies(self) -> bool {
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
    pub(super) fn name(self) -> &'static str {
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
pub(super) struct Cipher(pub(super) CipherSuite);

/// Go names of the suites the ring provider implements. The TLS 1.2 ones are
/// configurable; the TLS 1.3 ones are always on (as in Go).
pub(super) const CIPHERS: &[(&str, CipherSuite)] = &[
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
pub(super) struct Curve(pub(super) NamedGroup);

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
pub(super) const EXTRA_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

#[derive(Debug, Clone, Default)]
pub(super) struct Headers(pub(super) Vec<(HeaderName, HeaderValue)>);

/// A header name from the allowed list (checked where it is written).
pub(super) struct AllowedHeader(pub(super) &'static str, Option<&'static [&'static str]>);

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
pub(super) struct HeaderSeed<'a>(pub(super) &'a AllowedHeader);

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
pub(super) struct BcryptHash(pub(super) String);

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

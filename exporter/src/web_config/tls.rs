//! TLS: the rustls server config, certificates that reload, client certificates.

use super::*;

pub(super) fn file_error(key: &str, message: String) -> WebConfigError {
    WebConfigError {
        file: None,
        line: None,
        key: key.to_string(),
        message,
    }
}

pub(super) fn load_certified_key(
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
pub(super) struct ReloadingCert {
    pub(super) cert: Pem,
    pub(super) key: Pem,
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) state: Mutex<CertState>,
}

#[derive(Debug)]
pub(super) struct CertState {
    /// Certificate's and key's.
    pub(super) stamp: (Option<FileStamp>, Option<FileStamp>),
    pub(super) current: Arc<CertifiedKey>,
}

impl ReloadingCert {
    pub(super) fn stamp(&self) -> (Option<FileStamp>, Option<FileStamp>) {
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
pub(super) struct AnyClientCert {
    pub(super) mandatory: bool,
    pub(super) algs: WebPkiSupportedAlgorithms,
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

pub(super) fn build_tls(t: &TlsSettings) -> Result<ServerConfig, WebConfigError> {
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

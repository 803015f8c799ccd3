//! `nuts://`: the client configuration of STARTTLS and the name upsd's
//! certificate must carry.

use super::NutProbe;
use crate::power::Host;
use std::sync::Arc;
use tokio_rustls::rustls;

/// TLS for `nuts://`: the client configuration (the target's CA as the only
/// roots) and the name upsd's certificate must carry (the target's host).
pub(super) struct NutTls {
    pub(super) config: Arc<rustls::ClientConfig>,
    pub(super) name: rustls::pki_types::ServerName<'static>,
}

/// The client configuration of `nuts://...?ca=FILE`: TLS 1.2 and 1.3 (ring),
/// with the CA certificates in `pem` as the only roots. Errors name what is
/// wrong with the file's content; the caller adds its path.
pub fn tls_client_config(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        let c = c.map_err(|e| format!("not a PEM certificate: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl NutProbe {
    /// Speak TLS (`nuts://`): `STARTTLS` first, then upsd's certificate must
    /// chain to `config`'s roots and name this probe's host.
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Result<Self, String> {
        use rustls::pki_types::ServerName;
        let name = match &self.endpoint.host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(n) => ServerName::try_from(n.clone())
                .map_err(|e| format!("{n}: not a TLS server name: {e}"))?,
        };
        self.tls = Some(NutTls { config, name });
        Ok(self)
    }
}

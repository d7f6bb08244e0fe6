//! rustls client settings: system roots plus an optional CA file, built once per profile.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("not a valid TLS server name")]
    ServerName,
    #[error("certificate not trusted: {0}")]
    NotTrusted(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
}

/// Every certificate in the PEM file `path`, at least one; errors name the config key `key`.
pub fn pem_certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

#[derive(Clone)]
pub struct TlsContext {
    connector: TlsConnector,
}

impl TlsContext {
    /// Trusts the system's roots and, when given, every certificate in `ca_file` (PEM).
    pub fn new(ca_file: Option<&Path>) -> Result<TlsContext, String> {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: the CA file may be all this appliance needs.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            let certs = pem_certificates("ca_file", path)?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsContext {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    pub async fn connect(
        &self,
        host: &str,
        tcp: super::BufferedTcp,
    ) -> Result<TlsStream<super::BufferedTcp>, TlsError> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName)?;
        self.connector.connect(name, tcp).await.map_err(|e| {
            let rustls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match rustls_error {
                Some(rustls::Error::InvalidCertificate(c)) => TlsError::NotTrusted(describe(c)),
                Some(other) => TlsError::Handshake(other.to_string()),
                None => TlsError::Handshake(e.to_string()),
            }
        })
    }
}

/// Says what is wrong with a certificate in words an admin can act on.
fn describe(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => {
            "it is issued by an authority this appliance does not trust (add it with ca_file)"
                .into()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for this server name".into()
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::Revoked => "it is revoked".into(),
        other => format!("{other:?}"),
    }
}

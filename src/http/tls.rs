//! HTTPS for the status listener. tiny_http's own TLS support is built on rustls 0.20 (a second,
//! outdated TLS stack), so the front (`front.rs`) does TLS with the rustls the rest of sidesync
//! uses and relays the plaintext to tiny_http on a Unix socket in the data folder (mode 0600).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsAcceptor;

/// The server side of TLS, from the PEM certificate chain and key files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = crate::net::pem_certificates("status_tls_cert", cert)?;
    // The key's contents never reach an error message.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        format!(
            "status_tls_key {}: no usable PEM private key",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("status_tls_cert and status_tls_key do not make a pair: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The Unix socket tiny_http listens on behind the front.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("status.sock")
}

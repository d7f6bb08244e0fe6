//! HTTPS for the status listener. tiny_http's own TLS support is built on rustls 0.20 (a second,
//! outdated TLS stack), so this small front does TLS with the rustls the rest of sidesync uses:
//! it accepts on `status_listen`, completes the handshake, and relays the plaintext to tiny_http
//! listening on a Unix socket in the data folder (mode 0600), one tokio task per connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client must finish the TLS handshake within this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, so idle clients cannot hold every slot.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

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

/// The Unix socket tiny_http listens on behind the TLS front.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("status.sock")
}

/// Accepts TLS connections on `listener` and relays each to `socket`, until the runtime ends.
pub async fn front(listener: std::net::TcpListener, acceptor: TlsAcceptor, socket: PathBuf) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the HTTPS listener cannot run");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "accepting an HTTPS connection failed");
                continue;
            }
        };
        let (acceptor, socket) = (acceptor.clone(), socket.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTPS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let Ok(mut inner) = tokio::net::UnixStream::connect(&socket).await else {
                return;
            };
            let relay = tokio::io::copy_bidirectional(&mut tls, &mut inner);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, relay).await;
        });
    }
}

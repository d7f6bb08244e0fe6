//! rustls client settings: system roots plus an optional CA file, built once per profile.
//! Built once, they also hold the profile's TLS session tickets: a connection to a server this
//! appliance has talked to before resumes its session (no certificate exchange or check), which
//! the handshake counters show.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Application protocols offered in the TLS handshake (ALPN, RFC 7301; `imap` and `pop3` are
/// registered): a server for another protocol on the same certificate refuses the handshake
/// instead of being talked to as if it were a mail server (cross-protocol attacks, ALPACA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Imap,
    Pop3,
    /// SMTP has no registered ALPN identifier: nothing is offered.
    None,
}

static FULL_HANDSHAKES: AtomicU64 = AtomicU64::new(0);
static RESUMED_HANDSHAKES: AtomicU64 = AtomicU64::new(0);

/// TLS handshakes completed by this process: (full, resumed).
pub fn handshake_counts() -> (u64, u64) {
    (
        FULL_HANDSHAKES.load(Ordering::Relaxed),
        RESUMED_HANDSHAKES.load(Ordering::Relaxed),
    )
}

#[derive(Clone)]
pub struct TlsContext {
    connector: TlsConnector,
    imap: TlsConnector,
    pop3: TlsConnector,
}

impl TlsContext {
    fn from_config(config: rustls::ClientConfig) -> TlsContext {
        let with = |id: &[u8]| {
            let mut c = config.clone();
            c.alpn_protocols = vec![id.to_vec()];
            TlsConnector::from(Arc::new(c))
        };
        TlsContext {
            imap: with(b"imap"),
            pop3: with(b"pop3"),
            connector: TlsConnector::from(Arc::new(config)),
        }
    }
}

impl TlsContext {
    /// Trusts the system's roots and, when given, every certificate in `ca_file` (PEM).
    pub fn new(ca_file: Option<&Path>) -> Result<TlsContext, String> {
        TlsContext::with_pin(ca_file, None)
    }

    /// As [`TlsContext::new`]; with `pin`, the server must present exactly the certificate whose
    /// SHA-256 (of its DER bytes) that is, and no authority is consulted: the way to trust a
    /// server with a self-signed certificate.
    pub fn with_pin(ca_file: Option<&Path>, pin: Option<[u8; 32]>) -> Result<TlsContext, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        if let Some(pin) = pin {
            return Ok(TlsContext::from_config(pinned_client_config(pin)?));
        }
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
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsContext::from_config(config))
    }

    pub async fn connect(
        &self,
        host: &str,
        tcp: super::BufferedTcp,
        alpn: Alpn,
    ) -> Result<TlsStream<super::BufferedTcp>, TlsError> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName)?;
        let connector = match alpn {
            Alpn::Imap => &self.imap,
            Alpn::Pop3 => &self.pop3,
            Alpn::None => &self.connector,
        };
        let stream = connector.connect(name, tcp).await.map_err(|e| {
            let rustls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match rustls_error {
                Some(rustls::Error::InvalidCertificate(c)) => TlsError::NotTrusted(describe(c)),
                Some(rustls::Error::General(g)) if g.starts_with(NOT_PINNED) => {
                    TlsError::NotTrusted(g.clone())
                }
                Some(other) => TlsError::Handshake(other.to_string()),
                None => TlsError::Handshake(e.to_string()),
            }
        })?;
        let counter = match stream.get_ref().1.handshake_kind() {
            Some(rustls::HandshakeKind::Resumed) => &RESUMED_HANDSHAKES,
            _ => &FULL_HANDSHAKES,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }
}

/// A client config that trusts exactly the certificate whose SHA-256 (of its DER bytes) is
/// `pin`, and no authority (the handshake's signatures are still checked against its key).
pub fn pinned_client_config(pin: [u8; 32]) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCertificate {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
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
        C::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => {
            "it is self-signed (an authority's certificate used as the server's own): pin it \
             with tls_pin_sha256 (openssl x509 -in CERT -outform der | sha256sum gives the \
             value), or give the server a certificate from an authority in ca_file"
                .into()
        }
        other => format!("{other:?}"),
    }
}

/// The start of the words for a certificate that is not the pinned one.
const NOT_PINNED: &str = "it is not the pinned certificate";

/// Trusts exactly one server certificate, by the SHA-256 of its DER bytes (`tls_pin_sha256`).
/// The handshake's signatures are still verified against that certificate's key.
#[derive(Debug)]
struct PinnedCertificate {
    pin: [u8; 32],
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::{Digest, Sha256};
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if seen == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            let hex: String = seen.iter().map(|b| format!("{b:02x}")).collect();
            Err(rustls::Error::General(format!(
                "{NOT_PINNED} (the server presented SHA-256 {hex}; tls_pin_sha256 names another)"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

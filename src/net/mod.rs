//! The one connection layer under every protocol session: TCP with a deadline, then TLS (rustls)
//! either at once (implicit) or after a protocol's STARTTLS, verified against the system roots plus
//! the profile's CA file.

pub mod http;
pub mod line;
pub mod sasl;
mod stream;
mod tls;
pub mod transcript;
pub mod url;

use std::time::Duration;
use zeroize::Zeroizing;

use tokio::net::TcpStream;

use crate::config::{AuthProtocol, TlsMode};
use crate::secret::Secret;

pub use stream::{BufferedTcp, MailStream, buffered};
pub use tls::{
    Alpn, TlsContext, TlsError, handshake_counts, pem_certificates, pinned_client_config,
};
pub use transcript::Recorder;

/// SASL PLAIN (RFC 4616): authzid NUL authcid NUL password, the raw bytes.
pub fn plain_response(login: &Login<'_>) -> Zeroizing<Vec<u8>> {
    let mut raw = Zeroizing::new(Vec::new());
    raw.extend_from_slice(login.authzid.unwrap_or("").as_bytes());
    raw.push(0);
    raw.extend_from_slice(login.username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(login.password.expose().as_bytes());
    raw
}

/// SASL PLAIN as it goes on the wire in SMTP and POP3: base64.
pub fn plain_blob(login: &Login<'_>) -> Zeroizing<String> {
    use base64::Engine;
    Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(plain_response(login).as_slice()),
    )
}

/// Where and how a session (IMAP, POP3, SMTP) connects.
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: TlsMode,
    pub tls_context: &'a TlsContext,
    /// What the TLS handshake offers as the application protocol.
    pub alpn: tls::Alpn,
    pub auth: AuthProtocol,
    pub timeout: Duration,
    /// Records the conversation (Test & Enable); `None` for ordinary syncs.
    pub recorder: Option<Recorder>,
}

/// Who logs in: the mailbox's own identity, or the profile's identity acting for `authzid`.
pub struct Login<'a> {
    pub username: &'a str,
    /// The password, or with `bearer` an OAuth access token.
    pub password: &'a Secret,
    pub authzid: Option<&'a str>,
    /// The secret is a bearer token: XOAUTH2 or OAUTHBEARER instead of a password mechanism.
    pub bearer: bool,
}

/// The SASL initial response for a bearer-token login on `host:port` with `mechanism`.
pub fn bearer_response(
    mechanism: sasl::BearerMechanism,
    login: &Login<'_>,
    host: &str,
    port: u16,
) -> Zeroizing<Vec<u8>> {
    let token = login.password.expose();
    match mechanism {
        sasl::BearerMechanism::XOAuth2 => sasl::xoauth2(login.username, token),
        sasl::BearerMechanism::OAuthBearer => sasl::oauthbearer(login.username, host, port, token),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot find the server {host}: {reason}")]
    UnknownHost { host: String, reason: String },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("no answer from {address} within {seconds} s while {step}")]
    Timeout {
        address: String,
        step: &'static str,
        seconds: u64,
    },
    #[error("TLS with {address}: the server's certificate is not trusted: {reason}")]
    CertificateNotTrusted { address: String, reason: String },
    #[error("TLS handshake with {address} failed: {reason}")]
    Handshake { address: String, reason: String },
    #[error("{address} is not a valid server name for TLS")]
    BadServerName { address: String },
}

/// Runs one network step under the mailbox's connection timeout (P9).
pub async fn step<T, E>(
    address: &str,
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, StepError<E>> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StepError::Failed(e)),
        Err(_) => Err(StepError::TimedOut(NetError::Timeout {
            address: address.to_string(),
            step: what,
            seconds: limit.as_secs().max(1),
        })),
    }
}

/// A step either failed on its own terms or ran out of time.
#[derive(Debug)]
pub enum StepError<E> {
    Failed(E),
    TimedOut(NetError),
}

/// Opens a TCP connection within `limit`.
pub async fn connect_tcp(host: &str, port: u16, limit: Duration) -> Result<BufferedTcp, NetError> {
    let address = format!("{host}:{port}");
    // Name lookup first, so that an unknown host is told apart from a refused connection.
    let addrs: Vec<std::net::SocketAddr> = match step(
        &address,
        "looking up the server",
        limit,
        tokio::net::lookup_host((host, port)),
    )
    .await
    {
        Ok(a) => a.collect(),
        Err(StepError::Failed(e)) => {
            return Err(NetError::UnknownHost {
                host: host.to_string(),
                reason: e.to_string(),
            });
        }
        Err(StepError::TimedOut(e)) => return Err(e),
    };
    let tcp = match step(
        &address,
        "connecting",
        limit,
        TcpStream::connect(&addrs[..]),
    )
    .await
    {
        Ok(t) => t,
        Err(StepError::Failed(source)) => return Err(NetError::Connect { address, source }),
        Err(StepError::TimedOut(e)) => return Err(e),
    };
    // Commands are small and answered one by one: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    Ok(buffered(tcp))
}

/// Connects to `target`, records the conversation when asked, and starts TLS at once for
/// implicit TLS (STARTTLS is the protocol's business, later).
pub async fn open_stream(target: &Target<'_>) -> Result<MailStream, NetError> {
    let mut stream =
        MailStream::plain(connect_tcp(target.host, target.port, target.timeout).await?);
    if let Some(r) = &target.recorder {
        stream.record(r.clone());
    }
    if target.tls == TlsMode::Implicit {
        stream = start_tls(stream, target, target.timeout).await?;
    }
    Ok(stream)
}

/// Wraps an open plain connection in TLS within `limit`, keeping its recorder. Bytes that arrived
/// before the handshake were not protected by TLS: after a STARTTLS, a man-in-the-middle may have
/// injected them (the STARTTLS injection attack), so any such bytes are an error.
/// Upgrades a plaintext stream to TLS after a protocol's STARTTLS, with `target`'s server name,
/// trust and ALPN.
pub async fn start_tls(
    stream: MailStream,
    target: &Target<'_>,
    limit: Duration,
) -> Result<MailStream, NetError> {
    handshake(
        stream,
        target.host,
        target.port,
        target.tls_context,
        target.alpn,
        limit,
    )
    .await
}

async fn handshake(
    stream: MailStream,
    host: &str,
    port: u16,
    tls: &TlsContext,
    alpn: tls::Alpn,
    limit: Duration,
) -> Result<MailStream, NetError> {
    let address = format!("{host}:{port}");
    let MailStream { inner, recorder } = stream;
    let tcp = match inner {
        stream::Inner::Plain(tcp) => tcp,
        stream::Inner::Tls(_) => {
            return Err(NetError::Handshake {
                address,
                reason: "TLS is already on".into(),
            });
        }
    };
    if !tcp.buffer().is_empty() {
        return Err(NetError::Handshake {
            address,
            reason: "the server sent data before the TLS handshake (possible STARTTLS injection)"
                .into(),
        });
    }
    if let Some(r) = &recorder {
        r.note("TLS handshake");
    }
    let fut = tls.connect(host, tcp, alpn);
    let inner = match step(&address, "negotiating TLS", limit, fut).await {
        Ok(s) => stream::Inner::Tls(Box::new(s)),
        Err(StepError::TimedOut(e)) => return Err(e),
        Err(StepError::Failed(TlsError::ServerName)) => {
            return Err(NetError::BadServerName { address });
        }
        Err(StepError::Failed(TlsError::NotTrusted(reason))) => {
            return Err(NetError::CertificateNotTrusted { address, reason });
        }
        Err(StepError::Failed(TlsError::Handshake(reason))) => {
            return Err(NetError::Handshake { address, reason });
        }
    };
    Ok(MailStream { inner, recorder })
}

//! The one connection layer under every protocol session: TCP with a deadline, then TLS (rustls)
//! either at once (implicit) or after a protocol's STARTTLS, verified against the system roots plus
//! the profile's CA file.

mod stream;
mod tls;

use std::time::Duration;

use tokio::net::TcpStream;

pub use stream::{BufferedTcp, MailStream, buffered};
pub use tls::{TlsContext, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
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
    let tcp = match step(
        &address,
        "connecting",
        limit,
        TcpStream::connect((host, port)),
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

/// Wraps an open connection in TLS within `limit`.
pub async fn start_tls(
    tcp: BufferedTcp,
    host: &str,
    port: u16,
    tls: &TlsContext,
    limit: Duration,
) -> Result<MailStream, NetError> {
    let address = format!("{host}:{port}");
    let fut = tls.connect(host, tcp);
    match step(&address, "negotiating TLS", limit, fut).await {
        Ok(s) => Ok(MailStream::Tls(Box::new(s))),
        Err(StepError::TimedOut(e)) => Err(e),
        Err(StepError::Failed(TlsError::ServerName)) => Err(NetError::BadServerName { address }),
        Err(StepError::Failed(TlsError::NotTrusted(reason))) => {
            Err(NetError::CertificateNotTrusted { address, reason })
        }
        Err(StepError::Failed(TlsError::Handshake(reason))) => {
            Err(NetError::Handshake { address, reason })
        }
    }
}

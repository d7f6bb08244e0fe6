//! What systemd's watchdog is told. `WATCHDOG=1` says the whole appliance works, so it is sent
//! only while both halves do: the engine's scheduler loops (its heartbeat is fresh) and the HTTP
//! side answers — a loopback self-probe of `/healthz` through the real listener (the front, TLS
//! when configured, a tiny_http worker) succeeded recently. A dead or wedged HTTP side (workers
//! gone, tiny_http's listener gone, the front gone) stops the pings and systemd restarts the
//! service, as it does for a stalled engine. The decision is [`withheld`], a pure function.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Appliance;

/// Why the watchdog is not told all is well now; None: it is.
///
/// `engine_age`: seconds since the scheduler's last heartbeat (a heartbeat never given counts
/// as very old). `http_age`: time since the last self-probe that got `/healthz`'s answer (from
/// the start, before the first one). `http_stale`: how old that may be.
pub fn withheld(engine_age: i64, http_age: Duration, http_stale: Duration) -> Option<String> {
    if engine_age > crate::http::HEARTBEAT_STALE_SECONDS {
        return Some(format!(
            "the engine's scheduler has not run for {engine_age} s"
        ));
    }
    if http_age > http_stale {
        return Some(format!(
            "the HTTP side has not answered its self-probe of /healthz for {} s",
            http_age.as_secs()
        ));
    }
    None
}

/// A request for `/healthz` the way a client would send it, on loopback.
pub struct Probe {
    addr: SocketAddr,
    /// A Host the allowlist lets through.
    host: String,
    /// With HTTPS: trusting exactly the listener's own certificate.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Probe {
    pub fn new(appliance: &Appliance) -> Result<Probe, String> {
        let listen = appliance.status_listen;
        // A listener on every address answers on loopback too.
        let ip = match listen.ip() {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        };
        let addr = SocketAddr::new(ip, listen.port());
        let tls = match &appliance.status_tls {
            None => None,
            Some(t) => {
                let chain = crate::net::pem_certificates("status_tls_cert", &t.cert)?;
                let first = chain.first().ok_or_else(|| {
                    format!("status_tls_cert {}: no certificate", t.cert.display())
                })?;
                use sha2::{Digest, Sha256};
                let pin: [u8; 32] = Sha256::digest(first.as_ref()).into();
                let config = crate::net::pinned_client_config(pin)?;
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
        };
        Ok(Probe {
            addr,
            host: probe_host(&appliance.status_allowed_hosts, ip),
            tls,
        })
    }

    /// Asks `/healthz` and waits at most `limit`: Ok when a worker answered it (healthy or
    /// not: whether the engine runs is the heartbeat's to say).
    pub async fn healthz(&self, limit: Duration) -> Result<(), String> {
        let work = async {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
            match &self.tls {
                None => self.ask(tcp).await,
                Some(connector) => {
                    let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS with {}: {e}", self.addr))?;
                    self.ask(tls).await
                }
            }
        };
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())))
    }

    async fn ask<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) -> Result<(), String> {
        let request = format!("GET /healthz HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        // /healthz answers a line; more than a few KB is not its answer.
        while answer.len() < 4096 {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                // TLS without close_notify: what came is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
        answered_by_a_worker(&answer)
    }
}

/// The Host the probe sends: the allowlist's first name (any listed name passes; none is looked
/// up), else the address itself.
fn probe_host(allowed: &[String], ip: IpAddr) -> String {
    match allowed.first() {
        Some(name) if name.parse::<Ipv6Addr>().is_ok() => format!("[{name}]"),
        Some(name) => name.clone(),
        None => match ip {
            IpAddr::V6(v) => format!("[{v}]"),
            IpAddr::V4(v) => v.to_string(),
        },
    }
}

/// Whether `answer` is `/healthz`'s own (200 `ok` or 503 `unhealthy: …`, which only a worker
/// writes), not one of the front's refusals.
fn answered_by_a_worker(answer: &[u8]) -> Result<(), String> {
    let (status, body) = crate::net::http::parse_answer(answer).map_err(|e| e.to_string())?;
    match status {
        200 if body.starts_with(b"ok") => Ok(()),
        503 if body.starts_with(b"unhealthy:") => Ok(()),
        other => Err(format!("/healthz answered {other}, not from a worker")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(10);

    #[test]
    fn the_watchdog_is_told_only_while_both_halves_work() {
        let fresh = Duration::from_secs(3);
        // Both fine.
        assert_eq!(withheld(0, fresh, STALE), None);
        assert_eq!(
            withheld(30, STALE, STALE),
            None,
            "at the limits, still fine"
        );
        // A stalled engine, whatever the HTTP side does.
        let stalled = withheld(31, fresh, STALE).expect("withheld");
        assert!(
            stalled.contains("scheduler has not run for 31 s"),
            "{stalled}"
        );
        // A heartbeat never given: the age is the time since 1970.
        assert!(withheld(1_800_000_000, fresh, STALE).is_some());
        // A dead or wedged HTTP side, with a looping engine.
        let dead = withheld(0, Duration::from_secs(11), STALE).expect("withheld");
        assert!(dead.contains("HTTP side has not answered"), "{dead}");
        assert!(dead.contains("11 s"), "{dead}");
    }

    #[test]
    fn only_a_workers_answer_counts() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        assert_eq!(answered_by_a_worker(ok), Ok(()));
        let sick =
            b"HTTP/1.1 503 Service Unavailable\r\n\r\nunhealthy: the store writer has stopped\n";
        assert_eq!(answered_by_a_worker(sick), Ok(()), "a worker answered");
        let front = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\n{\"error\"}";
        assert!(answered_by_a_worker(front).is_err(), "the front's own 503");
        let host = b"HTTP/1.1 421 Misdirected Request\r\n\r\n{}";
        assert!(answered_by_a_worker(host).is_err());
        assert!(answered_by_a_worker(b"").is_err(), "closed without a word");
    }

    #[test]
    fn the_probe_sends_a_host_the_allowlist_takes() {
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let lo6: IpAddr = "::1".parse().expect("ip");
        assert_eq!(probe_host(&[], lo), "127.0.0.1");
        assert_eq!(probe_host(&[], lo6), "[::1]");
        assert_eq!(
            probe_host(&["sidesync.example".into()], lo),
            "sidesync.example"
        );
        assert_eq!(probe_host(&["::1".into()], lo), "[::1]");
    }
}

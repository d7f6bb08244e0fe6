//! The front of the status listener: every connection, HTTP and HTTPS, is accepted here (tokio)
//! and never by tiny_http, which listens only on a Unix socket in the data folder (mode 0600).
//! The front bounds what a client can hold — connections in all and per address, the size and
//! count of header lines, the time to send them, the time a connection lives — checks the Host
//! header against the allowlist (DNS rebinding), tells tiny_http the client's address in a header
//! of its own, and makes every connection one request (`Connection: close`). A failed accept
//! (out of file descriptors) waits a moment and goes on: the listener never dies.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// The header the front adds with the client's address; one a client sends is dropped.
pub const PEER_HEADER: &str = "X-Sidesync-Peer";

/// What one client may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub per_address: usize,
    pub header_bytes: usize,
    pub header_lines: usize,
    pub header_deadline: Duration,
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            per_address: 32,
            header_bytes: 32 * 1024,
            header_lines: 100,
            header_deadline: Duration::from_secs(10),
            lifetime: Duration::from_secs(300),
        }
    }
}

/// What the front needs besides its limits.
pub struct Front {
    pub listener: std::net::TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub socket: PathBuf,
    pub limits: Limits,
    /// Host header values (without port) that may reach the listener; empty: any.
    pub allowed_hosts: Vec<String>,
}

/// Whose connections count together for the per-address cap: an IPv4 address, or an IPv6
/// address's /64 (one host is given a whole /64 and picks any address in it at will, so per
/// address it would have 2^64 caps). An IPv4-mapped IPv6 address is its IPv4 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Connections per client (see [`client_key`]).
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), ip))
    }
}

struct AddressSlot(Arc<PerAddress>, IpAddr);

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = (self.0).0.lock()
            && let Some(n) = m.get_mut(&self.1)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// The slots a connection holds: one of all connections, one of its address's.
struct Held {
    _permit: OwnedSemaphorePermit,
    slot: AddressSlot,
}

/// A connection still completing its TLS handshake or sending its request head: the one that
/// makes room when a cap is reached (oldest first), so an idle or slow client cannot keep a new
/// one — a monitor's `/healthz` — out.
struct Pending {
    ip: IpAddr,
    held: Arc<Mutex<Option<Held>>>,
    done: Arc<AtomicBool>,
    abort: tokio::task::AbortHandle,
}

/// Sets `done` when dropped: the connection left the head phase (or ended).
struct HeadPhase(Arc<AtomicBool>);

impl Drop for HeadPhase {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Takes the slots of the oldest connection still in its head phase (of `ip`, or of anyone), and
/// ends it.
fn evict(pending: &Mutex<VecDeque<Pending>>, ip: Option<IpAddr>) -> Option<Held> {
    let mut p = pending.lock().ok()?;
    p.retain(|c| !c.done.load(Ordering::Acquire));
    let pos = p.iter().position(|c| ip.is_none_or(|ip| c.ip == ip))?;
    let victim = p.remove(pos)?;
    victim.abort.abort();
    victim.held.lock().ok()?.take()
}

/// Accepts until the runtime ends.
pub async fn serve(front: Front) {
    let listener = match tokio::net::TcpListener::from_std(front.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the status listener cannot run");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(front.limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let pending: Arc<Mutex<VecDeque<Pending>>> = Arc::default();
    let shared = Arc::new((front.tls, front.socket, front.limits, front.allowed_hosts));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS…: the connections being served will free descriptors.
                tracing::warn!(error = %e, "accepting a status connection failed; trying again shortly");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let limits = &shared.2;
        let ip = peer.ip();
        let key = client_key(ip);
        // At a cap, the oldest connection still in its head phase (of this address, or of
        // anyone for the global cap) gives its place; with none, the new one is closed at once.
        let held = match (
            slots.clone().try_acquire_owned().ok(),
            per_address.enter(key, limits.per_address),
        ) {
            (Some(permit), Some(slot)) => Some(Held {
                _permit: permit,
                slot,
            }),
            (_, None) => evict(&pending, Some(key)),
            (None, Some(slot)) => evict(&pending, None).map(|old| Held {
                _permit: old._permit,
                slot,
            }),
        };
        let Some(held) = held else {
            continue;
        };
        debug_assert_eq!(held.slot.1, key);
        let held = Arc::new(Mutex::new(Some(held)));
        let done = Arc::new(AtomicBool::new(false));
        let shared = shared.clone();
        let (task_held, phase) = (held.clone(), HeadPhase(done.clone()));
        let task = tokio::spawn(async move {
            let _held = task_held;
            let (tls, socket, limits, hosts) = &*shared;
            let _ = tcp.set_nodelay(true);
            let lifetime = limits.lifetime;
            let served = async {
                match tls {
                    Some(acceptor) => {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(limits.header_deadline, acceptor.accept(tcp))
                                .await
                        else {
                            return;
                        };
                        relay(stream, ip, socket, limits, hosts, phase).await;
                    }
                    None => relay(tcp, ip, socket, limits, hosts, phase).await,
                }
            };
            let _ = tokio::time::timeout(lifetime, served).await;
        });
        if let Ok(mut p) = pending.lock() {
            p.retain(|c| !c.done.load(Ordering::Acquire));
            p.push_back(Pending {
                ip: key,
                held,
                done,
                abort: task.abort_handle(),
            });
        }
    }
}

/// Why a request head is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    TooManyLines,
    Malformed,
    HostNotAllowed(String),
}

impl HeadError {
    fn response(&self) -> String {
        let (code, reason, text) = match self {
            HeadError::TooLarge => (
                431,
                "Request Header Fields Too Large",
                "the request head is too large".to_string(),
            ),
            HeadError::TooManyLines => (
                431,
                "Request Header Fields Too Large",
                "the request has too many header lines".to_string(),
            ),
            HeadError::Malformed => (
                400,
                "Bad Request",
                "the request head is malformed".to_string(),
            ),
            HeadError::HostNotAllowed(h) => (
                421,
                "Misdirected Request",
                format!("Host {h:?} is not one this appliance answers to (status_allowed_hosts)"),
            ),
        };
        let body = serde_json::json!({ "error": text }).to_string();
        format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Checks a request head (up to and including the blank line) and rewrites it for tiny_http:
/// the client's address in [`PEER_HEADER`], `Connection: close`, the client's own versions of
/// both dropped. Pure.
pub fn rewrite_head(
    head: &[u8],
    peer: IpAddr,
    limits: &Limits,
    allowed_hosts: &[String],
) -> Result<Vec<u8>, HeadError> {
    if head.len() > limits.header_bytes {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    let request_line = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(HeadError::Malformed)?;
    // METHOD SP TARGET SP HTTP/x.y: a line shaped otherwise (a header, say) is no request.
    let parts: Vec<&str> = request_line.split(' ').collect();
    let well_formed = parts.len() == 3
        && !parts[0].is_empty()
        && parts[0].bytes().all(|b| b.is_ascii_uppercase())
        && parts[1].starts_with('/')
        && parts[2].starts_with("HTTP/1.");
    if !well_formed {
        return Err(HeadError::Malformed);
    }
    let mut out = format!("{request_line}\r\n");
    let mut count = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        count += 1;
        if count > limits.header_lines {
            return Err(HeadError::TooManyLines);
        }
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        let name_t = name.trim();
        if name_t.is_empty() || name_t.len() != name.len() {
            return Err(HeadError::Malformed);
        }
        if name_t.eq_ignore_ascii_case("host") && !host_allowed(value.trim(), allowed_hosts) {
            return Err(HeadError::HostNotAllowed(value.trim().to_string()));
        }
        if name_t.eq_ignore_ascii_case(PEER_HEADER) || name_t.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "{PEER_HEADER}: {peer}\r\nConnection: close\r\n\r\n"
    ));
    Ok(out.into_bytes())
}

/// The Host header's name (without port, IPv6 brackets kept off) against the allowlist; an
/// empty allowlist allows any.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Reads the head within the deadline and size, then relays the connection to tiny_http. The
/// head phase ends (`phase` dropped) once a whole head is in.
async fn relay<S>(
    mut client: S,
    peer: IpAddr,
    socket: &PathBuf,
    limits: &Limits,
    hosts: &[String],
    phase: HeadPhase,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let read_head = async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                return Some(end + 4);
            }
            if buf.len() > limits.header_bytes {
                return None;
            }
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return Some(0),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let head_end = match tokio::time::timeout(limits.header_deadline, read_head).await {
        Ok(Some(0)) | Err(_) => return,
        Ok(Some(end)) => end,
        Ok(None) => {
            let _ = client
                .write_all(HeadError::TooLarge.response().as_bytes())
                .await;
            return;
        }
    };
    drop(phase);
    let head = match rewrite_head(&buf[..head_end], peer, limits, hosts) {
        Ok(h) => h,
        Err(e) => {
            let _ = client.write_all(e.response().as_bytes()).await;
            let _ = client.shutdown().await;
            return;
        }
    };
    let Ok(mut inner) = tokio::net::UnixStream::connect(socket).await else {
        return;
    };
    if inner.write_all(&head).await.is_err() || inner.write_all(&buf[head_end..]).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut inner).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_per_64_and_ipv4_per_address() {
        let key = |s: &str| client_key(s.parse().expect("address"));
        let a = key("2001:db8:1:2:aaaa::1");
        assert_eq!(a, key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "same /64");
        assert_eq!(a, key("2001:db8:1:2::"), "the /64 itself");
        assert_eq!(a.to_string(), "2001:db8:1:2::");
        assert_ne!(a, key("2001:db8:1:3::1"), "the next /64");
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"), "IPv4: each address");
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"), "IPv4-mapped");
        assert_eq!(key("::1"), key("::2"), "loopback's /64");
    }

    fn ip() -> IpAddr {
        "192.0.2.7".parse().expect("ip")
    }

    #[test]
    fn the_head_gets_the_peer_and_loses_what_a_client_may_not_say() {
        let head = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:8025\r\nX-Sidesync-Peer: 127.0.0.1\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
        let out = rewrite_head(head, ip(), &Limits::default(), &["127.0.0.1".into()]).expect("ok");
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            out,
            "GET /status HTTP/1.1\r\nHost: 127.0.0.1:8025\r\nAccept: */*\r\nX-Sidesync-Peer: 192.0.2.7\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn limits_and_the_host_allowlist() {
        let limits = Limits {
            header_lines: 3,
            header_bytes: 200,
            ..Limits::default()
        };
        let hosts = vec!["localhost".to_string(), "::1".to_string()];
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(
            rewrite_head(many, ip(), &limits, &hosts),
            Err(HeadError::TooManyLines)
        );
        let big = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "x".repeat(300));
        assert_eq!(
            rewrite_head(big.as_bytes(), ip(), &limits, &hosts),
            Err(HeadError::TooLarge)
        );
        let rebinding = b"GET /status HTTP/1.1\r\nHost: evil.example:8025\r\n\r\n";
        assert!(matches!(
            rewrite_head(rebinding, ip(), &limits, &hosts),
            Err(HeadError::HostNotAllowed(_))
        ));
        for ok in ["localhost:8025", "LOCALHOST", "[::1]:8025"] {
            let h = format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n");
            assert!(
                rewrite_head(h.as_bytes(), ip(), &limits, &hosts).is_ok(),
                "{ok}"
            );
        }
        assert!(
            rewrite_head(b"GET / HTTP/1.0\r\n\r\n", ip(), &limits, &hosts).is_ok(),
            "no Host"
        );
        assert_eq!(
            rewrite_head(b"\r\n\r\n", ip(), &limits, &hosts),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            rewrite_head(
                b"GET / HTTP/1.1\r\n Folded: x\r\n\r\n",
                ip(),
                &limits,
                &hosts
            ),
            Err(HeadError::Malformed)
        );
        // Found by the fuzz harness: a header where the request line belongs.
        assert_eq!(
            rewrite_head(b"X-Sidesync-Peer: 1.2.3.4 x\r\n\r\n", ip(), &limits, &hosts),
            Err(HeadError::Malformed)
        );
    }
}

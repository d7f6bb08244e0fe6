//! The front of the status listener: every connection, HTTP and HTTPS, is accepted here (tokio)
//! and never by tiny_http, which listens only on a Unix socket in the data folder (mode 0600).
//! The front bounds what a client can hold — connections in all and per address, the size and
//! count of header lines, the time to send them, the size of a body and the time to send it, the
//! time a connection lives — checks the Host header against the allowlist (DNS rebinding), tells
//! tiny_http the client's address in a header of its own, and makes every connection one request
//! (`Connection: close`). A failed accept (out of file descriptors) waits a moment and goes on:
//! the listener never dies.
//!
//! A request reaches tiny_http only once it is whole, body included (see `body.rs`): a worker
//! never waits on a client's network, so no number of slow or silent clients can hold the few
//! workers, and tiny_http never sees a Content-Length it has not already been given in full.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::body::{BodyError, Dechunk, Framing, framing};

/// The header the front adds with the client's address; one a client sends is dropped.
pub const PEER_HEADER: &str = "X-Sidesync-Peer";

/// Who sent a request, as the front tells tiny_http: a network client's address, or the
/// credentials the kernel gives for a control socket peer ([`super::control`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Address(IpAddr),
    Local(super::control_peer::PeerCred),
}

impl Peer {
    fn header_line(&self) -> String {
        match self {
            Peer::Address(ip) => format!("{PEER_HEADER}: {ip}\r\n"),
            Peer::Local(cred) => format!(
                "{}: {}\r\n",
                super::control_peer::CONTROL_PEER_HEADER,
                cred.header_value()
            ),
        }
    }
}

/// What one client may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub per_address: usize,
    pub header_bytes: usize,
    pub header_lines: usize,
    pub header_deadline: Duration,
    /// The largest body a method and path may carry (the API's own limits, `api::body_limit`).
    pub body_limit: fn(&str, &str) -> u64,
    /// A body must arrive whole within this, counted from the end of the head
    /// (`status_body_timeout`); else 408.
    pub body_deadline: Duration,
    /// Body bytes held by the front at once, all connections together: a flood of large bodies
    /// gets 503 instead of the machine's memory.
    pub body_budget: usize,
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
            body_limit: super::api::body_limit,
            body_deadline: Duration::from_secs(120),
            body_budget: 256 << 20,
            lifetime: Duration::from_secs(300),
        }
    }
}

/// After refusing a request whose body may still be coming, the front reads (and drops) what
/// the client sends for at most this long before closing: closing with unread bytes makes the
/// kernel answer with a reset, which can destroy the refusal before the client reads it.
const LINGER: Duration = Duration::from_secs(2);

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
pub(super) struct HeadPhase(pub(super) Arc<AtomicBool>);

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
    let shared = Arc::new(Shared {
        budget: Arc::new(Semaphore::new(front.limits.body_budget)),
        tls: front.tls,
        socket: front.socket,
        limits: front.limits,
        hosts: front.allowed_hosts,
    });
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
        let limits = &shared.limits;
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
            let _ = tcp.set_nodelay(true);
            let lifetime = shared.limits.lifetime;
            let served = async {
                match &shared.tls {
                    Some(acceptor) => {
                        let Ok(Ok(stream)) = tokio::time::timeout(
                            shared.limits.header_deadline,
                            acceptor.accept(tcp),
                        )
                        .await
                        else {
                            return;
                        };
                        relay(stream, Peer::Address(ip), &shared, phase).await;
                    }
                    None => relay(tcp, Peer::Address(ip), &shared, phase).await,
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
    /// The body's framing or size, refused before a byte of it is read.
    Body(BodyError),
    /// An `Expect` other than `100-continue`.
    Expectation,
}

/// An answer of the front's own, closing the connection.
fn answer(code: u16, reason: &str, text: &str, extra: &str) -> String {
    let body = serde_json::json!({ "error": text }).to_string();
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n{SECURITY_HEADERS}{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// What every answer carries, the front's own included (the worker's answers add the same).
pub const SECURITY_HEADERS: &str = "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";

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
            HeadError::Body(BodyError::TooLarge(limit)) => (
                413,
                "Content Too Large",
                format!("the request body is over {limit} bytes, the most this path accepts"),
            ),
            HeadError::Body(BodyError::Malformed(why)) => (400, "Bad Request", why.to_string()),
            HeadError::Expectation => (
                417,
                "Expectation Failed",
                "the only Expect understood is 100-continue".to_string(),
            ),
        };
        answer(code, reason, &text, "")
    }
}

/// A request head as the front passes it on.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The head for tiny_http, ending with `Connection: close` and the blank line; without the
    /// client's Content-Length, Transfer-Encoding and Expect (the front deals with those).
    pub head: Vec<u8>,
    pub body: Framing,
    /// The most bytes of body the method and path may carry.
    pub limit: u64,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

impl Rewritten {
    /// The head with the length of the body as received (decoded, when it came chunked).
    fn with_length(&self, len: usize) -> Vec<u8> {
        if self.body == Framing::None {
            return self.head.clone();
        }
        let mut out = self.head[..self.head.len() - 2].to_vec();
        out.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
        out
    }
}

/// Checks a request head (up to and including the blank line) and rewrites it for tiny_http:
/// the client's address in [`PEER_HEADER`], `Connection: close`, the client's own versions of
/// both dropped; the body's framing checked against the path's limit and taken out. Pure.
pub fn rewrite_head(
    head: &[u8],
    peer: &Peer,
    limits: &Limits,
    allowed_hosts: &[String],
) -> Result<Rewritten, HeadError> {
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
    let (mut lengths, mut codings, mut expect) = (Vec::new(), Vec::new(), None);
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
        if name_t.eq_ignore_ascii_case(PEER_HEADER)
            || name_t.eq_ignore_ascii_case(super::control_peer::CONTROL_PEER_HEADER)
            || name_t.eq_ignore_ascii_case("connection")
        {
            continue;
        }
        if name_t.eq_ignore_ascii_case("content-length") {
            lengths.push(value);
            continue;
        }
        if name_t.eq_ignore_ascii_case("transfer-encoding") {
            codings.push(value);
            continue;
        }
        if name_t.eq_ignore_ascii_case("expect") {
            if expect.is_some() || !value.trim().eq_ignore_ascii_case("100-continue") {
                return Err(HeadError::Expectation);
            }
            expect = Some(());
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    let path = parts[1].split('?').next().unwrap_or("");
    let limit = (limits.body_limit)(parts[0], path);
    let body =
        framing(&lengths, &codings, parts[2] == "HTTP/1.0", limit).map_err(HeadError::Body)?;
    out.push_str(&peer.header_line());
    out.push_str("Connection: close\r\n\r\n");
    Ok(Rewritten {
        head: out.into_bytes(),
        body,
        limit,
        expect_continue: expect.is_some() && body != Framing::None,
    })
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

/// What every connection's task shares.
pub(super) struct Shared {
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) socket: PathBuf,
    pub(super) limits: Limits,
    pub(super) hosts: Vec<String>,
    /// Permits are bytes of body held by the front ([`Limits::body_budget`]).
    pub(super) budget: Arc<Semaphore>,
}

/// Why a body did not come whole.
enum BodyFailure {
    /// Refused by its framing or size (400, 413).
    Refused(BodyError),
    /// Not whole within the deadline (408).
    Late,
    /// The front holds as many body bytes as it may (503).
    Busy,
    /// The client went away (nothing to answer).
    Gone,
}

/// Reads the head within the deadline and size, then the body within its own deadline and
/// limit, then hands the whole request to tiny_http and relays its answer. The head phase ends
/// (`phase` dropped) once a whole head is in.
pub(super) async fn relay<S>(mut client: S, peer: Peer, shared: &Shared, phase: HeadPhase)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &shared.limits;
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
            refuse(&mut client, &HeadError::TooLarge.response()).await;
            return;
        }
    };
    drop(phase);
    let head = match rewrite_head(&buf[..head_end], &peer, limits, &shared.hosts) {
        Ok(h) => h,
        Err(e) => {
            refuse(&mut client, &e.response()).await;
            return;
        }
    };
    if head.expect_continue
        && client
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return;
    }
    let early = buf.split_off(head_end);
    drop(buf);
    let received = tokio::time::timeout(
        limits.body_deadline,
        read_body(&mut client, &head, early, &shared.budget),
    )
    .await
    .unwrap_or(Err(BodyFailure::Late));
    let (body, _held) = match received {
        Ok(b) => b,
        Err(BodyFailure::Gone) => return,
        Err(BodyFailure::Refused(e)) => {
            refuse(&mut client, &HeadError::Body(e).response()).await;
            return;
        }
        Err(BodyFailure::Late) => {
            let text = format!(
                "the request body did not arrive within {} s (status_body_timeout)",
                limits.body_deadline.as_secs()
            );
            refuse(&mut client, &answer(408, "Request Timeout", &text, "")).await;
            return;
        }
        Err(BodyFailure::Busy) => {
            let text = "too many request bodies are arriving at once; try again shortly";
            let busy = answer(503, "Service Unavailable", text, "Retry-After: 5\r\n");
            refuse(&mut client, &busy).await;
            return;
        }
    };
    let Ok(mut inner) = tokio::net::UnixStream::connect(&shared.socket).await else {
        return;
    };
    if inner
        .write_all(&head.with_length(body.len()))
        .await
        .is_err()
        || inner.write_all(&body).await.is_err()
    {
        return;
    }
    drop(body);
    // One request per connection: from here on only the answer travels, to the client, and
    // says so (`Connection: close`).
    super::answer_head::relay(&mut inner, &mut client).await;
    let _ = client.shutdown().await;
}

/// The whole body as the head frames it (decoded, when chunked), and the budget it holds.
/// `early`: bytes that came with the head.
async fn read_body<S>(
    client: &mut S,
    head: &Rewritten,
    early: Vec<u8>,
    budget: &Arc<Semaphore>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), BodyFailure>
where
    S: AsyncRead + Unpin,
{
    let mut held: Option<OwnedSemaphorePermit> = None;
    // Budget is taken as bytes arrive, not as announced: announcing costs a client nothing.
    let mut hold = |n: usize| -> Result<(), BodyFailure> {
        let n = u32::try_from(n).map_err(|_| BodyFailure::Busy)?;
        let permit = budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyFailure::Busy)?;
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        Ok(())
    };
    let mut chunk = vec![0u8; 64 * 1024];
    match head.body {
        Framing::None => Ok((Vec::new(), None)),
        Framing::Length(n) => {
            // n is within the path's limit (checked with the head), so it fits in memory.
            let n = usize::try_from(n)
                .map_err(|_| BodyFailure::Refused(BodyError::TooLarge(head.limit)))?;
            let mut body = early;
            body.truncate(n);
            hold(body.len())?;
            while body.len() < n {
                let want = (n - body.len()).min(chunk.len());
                match client.read(&mut chunk[..want]).await {
                    Ok(0) | Err(_) => return Err(BodyFailure::Gone),
                    Ok(got) => {
                        hold(got)?;
                        body.extend_from_slice(&chunk[..got]);
                    }
                }
            }
            Ok((body, held))
        }
        Framing::Chunked => {
            let mut decoder = Dechunk::new(head.limit);
            let mut input = early;
            loop {
                let before = decoder.data.len();
                let ended = decoder.feed(&input).map_err(BodyFailure::Refused)?;
                hold(decoder.data.len() - before)?;
                if ended.is_some() {
                    return Ok((decoder.data, held));
                }
                match client.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Err(BodyFailure::Gone),
                    Ok(got) => input = chunk[..got].to_vec(),
                }
            }
        }
    }
}

/// Sends a refusal, then reads (and drops) what the client still sends for a moment, so that
/// closing does not reset the connection before the client has the answer.
async fn refuse<S>(client: &mut S, answer: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if client.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 16 * 1024];
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
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
        let out = rewrite_head(
            head,
            &Peer::Address(ip()),
            &Limits::default(),
            &["127.0.0.1".into()],
        )
        .expect("ok");
        assert_eq!(out.body, Framing::None);
        let out = String::from_utf8(out.head).expect("utf-8");
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
            rewrite_head(many, &Peer::Address(ip()), &limits, &hosts),
            Err(HeadError::TooManyLines)
        );
        let big = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "x".repeat(300));
        assert_eq!(
            rewrite_head(big.as_bytes(), &Peer::Address(ip()), &limits, &hosts),
            Err(HeadError::TooLarge)
        );
        let rebinding = b"GET /status HTTP/1.1\r\nHost: evil.example:8025\r\n\r\n";
        assert!(matches!(
            rewrite_head(rebinding, &Peer::Address(ip()), &limits, &hosts),
            Err(HeadError::HostNotAllowed(_))
        ));
        for ok in ["localhost:8025", "LOCALHOST", "[::1]:8025"] {
            let h = format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n");
            assert!(
                rewrite_head(h.as_bytes(), &Peer::Address(ip()), &limits, &hosts).is_ok(),
                "{ok}"
            );
        }
        assert!(
            rewrite_head(
                b"GET / HTTP/1.0\r\n\r\n",
                &Peer::Address(ip()),
                &limits,
                &hosts
            )
            .is_ok(),
            "no Host"
        );
        assert_eq!(
            rewrite_head(b"\r\n\r\n", &Peer::Address(ip()), &limits, &hosts),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            rewrite_head(
                b"GET / HTTP/1.1\r\n Folded: x\r\n\r\n",
                &Peer::Address(ip()),
                &limits,
                &hosts
            ),
            Err(HeadError::Malformed)
        );
        // Found by the fuzz harness: a header where the request line belongs.
        assert_eq!(
            rewrite_head(
                b"X-Sidesync-Peer: 1.2.3.4 x\r\n\r\n",
                &Peer::Address(ip()),
                &limits,
                &hosts
            ),
            Err(HeadError::Malformed)
        );
    }

    fn small_here(_: &str, path: &str) -> u64 {
        if path == "/big" { 1000 } else { 10 }
    }

    #[test]
    fn the_body_framing_is_taken_out_and_checked_against_the_path() {
        let limits = Limits {
            body_limit: small_here,
            ..Limits::default()
        };
        let rw = |h: &str| rewrite_head(h.as_bytes(), &Peer::Address(ip()), &limits, &[]);
        let out =
            rw("POST /big?x=1 HTTP/1.1\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n")
                .expect("ok");
        assert_eq!(
            (out.body, out.limit, out.expect_continue),
            (Framing::Length(500), 1000, true)
        );
        let head = String::from_utf8(out.with_length(500)).expect("utf-8");
        assert_eq!(
            head,
            "POST /big?x=1 HTTP/1.1\r\nX-Sidesync-Peer: 192.0.2.7\r\nConnection: close\r\nContent-Length: 500\r\n\r\n",
            "tiny_http gets one Content-Length, the front's, and no Expect"
        );
        let out = rw("PUT /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").expect("ok");
        assert_eq!(out.body, Framing::Chunked);
        assert!(
            String::from_utf8(out.with_length(3))
                .expect("utf-8")
                .ends_with("Connection: close\r\nContent-Length: 3\r\n\r\n"),
            "chunked goes on decoded, with its length"
        );
        assert_eq!(
            rw("POST /small HTTP/1.1\r\nContent-Length: 11\r\n\r\n"),
            Err(HeadError::Body(BodyError::TooLarge(10)))
        );
        assert_eq!(
            rw("GET / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            Err(HeadError::Body(BodyError::TooLarge(10)))
        );
        assert!(matches!(
            rw("POST /big HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Body(BodyError::Malformed(_)))
        ));
        assert_eq!(
            rw("POST /big HTTP/1.1\r\nExpect: something-else\r\n\r\n"),
            Err(HeadError::Expectation)
        );
        let refusal = HeadError::Body(BodyError::TooLarge(10)).response();
        assert!(refusal.starts_with("HTTP/1.1 413 "), "{refusal}");
        assert!(
            refusal.contains("X-Content-Type-Options: nosniff\r\n"),
            "{refusal}"
        );
    }

    /// The whole relay over in-memory streams: a tiny_http stand-in on a Unix socket records
    /// what reaches it.
    #[tokio::test]
    async fn only_whole_requests_reach_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let server = tokio::net::UnixListener::bind(&socket).expect("bind");
        let shared = Shared {
            tls: None,
            socket,
            limits: Limits {
                body_limit: small_here,
                body_deadline: Duration::from_millis(200),
                ..Limits::default()
            },
            hosts: Vec::new(),
            budget: Arc::new(Semaphore::new(1 << 20)),
        };
        let exchange = |sent: &'static [u8]| {
            let (mut ours, theirs) = tokio::io::duplex(1 << 16);
            let shared = &shared;
            let server = &server;
            async move {
                let relayed = relay(
                    theirs,
                    Peer::Address(ip()),
                    shared,
                    HeadPhase(Arc::default()),
                );
                let talk = async {
                    ours.write_all(sent).await.expect("send");
                    let mut answer = Vec::new();
                    ours.read_to_end(&mut answer).await.expect("read");
                    answer
                };
                let serve = async {
                    let (mut s, _) = server.accept().await.expect("accept");
                    let mut got = Vec::new();
                    // The request is whole: the server reads it up to what the head says.
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.expect("read");
                        got.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&got).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("Content-Length: "))
                                .map_or(0, |v| v.parse().expect("length"));
                            if body.len() >= len {
                                break;
                            }
                        }
                    }
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .expect("answer");
                    String::from_utf8(got).expect("utf-8")
                };
                let ((), answer, got) = tokio::join!(relayed, talk, serve);
                (String::from_utf8_lossy(&answer).to_string(), got)
            }
        };
        let (answer, got) = exchange(b"PUT /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
        assert!(
            answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
            "{answer}"
        );
        assert!(got.ends_with("Content-Length: 5\r\n\r\nabcde"), "{got}");
        assert!(!got.contains("chunked") && !got.contains("Expect"), "{got}");
    }

    #[tokio::test]
    async fn a_body_that_does_not_come_gets_408_and_none_reaches_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = Shared {
            tls: None,
            socket: dir.path().join("nobody-listens.sock"),
            limits: Limits {
                body_limit: small_here,
                body_deadline: Duration::from_millis(100),
                ..Limits::default()
            },
            hosts: Vec::new(),
            budget: Arc::new(Semaphore::new(1 << 20)),
        };
        for (sent, code) in [
            (
                &b"POST /big HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc"[..],
                "408",
            ),
            (
                b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "408",
            ),
            (
                b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3E9\r\n",
                "413",
            ),
            (
                b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "400",
            ),
        ] {
            let (mut ours, theirs) = tokio::io::duplex(1 << 16);
            let relayed = relay(
                theirs,
                Peer::Address(ip()),
                &shared,
                HeadPhase(Arc::default()),
            );
            let talk = async {
                ours.write_all(sent).await.expect("send");
                let mut answer = [0u8; 12];
                ours.read_exact(&mut answer).await.expect("read");
                // The front lingers until the client is done: this one is.
                drop(ours);
                String::from_utf8_lossy(&answer).to_string()
            };
            let ((), answer) = tokio::join!(relayed, talk);
            assert_eq!(
                answer,
                format!("HTTP/1.1 {code}"),
                "{}",
                String::from_utf8_lossy(sent)
            );
        }
        // The budget: a body needing more than is left is refused, not buffered.
        let tight = Shared {
            budget: Arc::new(Semaphore::new(4)),
            ..shared
        };
        let (mut ours, theirs) = tokio::io::duplex(1 << 16);
        let relayed = relay(
            theirs,
            Peer::Address(ip()),
            &tight,
            HeadPhase(Arc::default()),
        );
        let talk = async {
            ours.write_all(b"POST /big HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678")
                .await
                .expect("send");
            let mut answer = [0u8; 12];
            ours.read_exact(&mut answer).await.expect("read");
            drop(ours);
            String::from_utf8_lossy(&answer).to_string()
        };
        let ((), answer) = tokio::join!(relayed, talk);
        assert_eq!(answer, "HTTP/1.1 503");
    }
}

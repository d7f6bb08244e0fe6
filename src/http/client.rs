//! A minimal HTTP/1.0 client for the CLI to reach a running appliance's API on `status_listen`
//! (redb lets one process open the store, so the CLI talks to the one that has it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// POST `path` with a bearer token; returns (status, body).
pub fn post(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    request(addr, "POST", path, token, body, timeout)
}

/// `method` `path` with a bearer token; returns (status, body).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    // An appliance listening on every address is reached on loopback, by a name it answers to.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let host = match addr.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        std::net::IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the running sidesync at {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or("a malformed HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("a malformed HTTP status line")?;
    Ok((status, body.to_string()))
}

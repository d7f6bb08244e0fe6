//! The CLI's way into a running appliance: HTTP/1.0 over the control socket in the data folder
//! (redb lets one process open the store, so the CLI asks the one that has it). The socket does
//! not care how `status_listen` is set up (HTTPS, another address, API off): its file mode says
//! who may operate the appliance.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why a call did not get an answer. Not running is its own case: the CLI exits 3 for it, so a
/// script can tell "the appliance is down" from "the appliance said no".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No control socket, or nobody listening on it.
    NotRunning(String),
    /// Anything else: permission, a broken answer, a refusal.
    Other(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotRunning(s) | CallError::Other(s) => f.write_str(s),
        }
    }
}

impl From<String> for CallError {
    fn from(s: String) -> Self {
        CallError::Other(s)
    }
}

impl From<&str> for CallError {
    fn from(s: &str) -> Self {
        CallError::Other(s.to_string())
    }
}

impl From<CallError> for String {
    fn from(e: CallError) -> Self {
        e.to_string()
    }
}

/// The answer's status code and body.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON (null when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// The API's own words for a refusal, else the status code.
    pub fn refusal(&self) -> String {
        let v = self.json();
        match v["detail"].as_str() {
            Some(e) => format!("{e} ({})", self.status),
            None => format!("HTTP {}", self.status),
        }
    }
}

/// `method` `target` with a JSON `body` on the control socket at `socket`.
pub fn request(
    socket: &Path,
    method: &str,
    target: &str,
    body: &str,
    timeout: Duration,
) -> Result<Reply, CallError> {
    let (status, body) = exchange(socket, method, target, body, timeout)?;
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// A request whose answer is bytes (an email's raw MIME): the status and the body as sent.
pub fn request_bytes(
    socket: &Path,
    method: &str,
    target: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), CallError> {
    exchange(socket, method, target, "", timeout)
}

fn exchange(
    socket: &Path,
    method: &str,
    target: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), CallError> {
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            CallError::NotRunning(format!(
                "sidesync is not running (no control socket at {}): start it with \
                 `systemctl start sidesync` or `sidesync run`",
                socket.display()
            ))
        }
        std::io::ErrorKind::PermissionDenied => CallError::Other(format!(
            "permission denied on {}: run as the service's user or root, or join its group",
            socket.display()
        )),
        _ => CallError::Other(format!(
            "cannot reach the running sidesync at {}: {e}",
            socket.display()
        )),
    })?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    write!(
        s,
        "{method} {target} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("cannot send to {}: {e}", socket.display()))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("no answer from {}: {e}", socket.display()))?;
    let end = memchr::memmem::find(&answer, b"\r\n\r\n").ok_or("a malformed HTTP answer")?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("a malformed HTTP status line")?;
    Ok((status, answer[end + 4..].to_vec()))
}

//! One HTTPS POST to a token endpoint, on the appliance's own connection layer (tokio + rustls,
//! the system roots plus the profile's CA file): a token refresh is one short request an hour
//! per identity, not worth a second HTTP stack (hyper, ureq) beside the one the mail sessions
//! already use. HTTP/1.1 with `Connection: close`; the answer is read whole, bounded in size
//! and time, with Content-Length, chunked or close-delimited bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{AuthProtocol, TlsMode};
use crate::net::{self, Alpn, TlsContext};
use crate::secret::Secret;

pub use super::url::Endpoint;

/// A token answer is a small JSON object; anything larger is not one.
const MAX_ANSWER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("{0}")]
    Io(String),
    #[error("the token endpoint's answer is not HTTP: {0}")]
    Malformed(String),
}

/// POSTs `body` (form-encoded) to `endpoint`; the status and the body of the answer.
pub async fn post_form(
    endpoint: &Endpoint,
    tls: &TlsContext,
    body: &Secret,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let target = net::Target {
        host: &endpoint.host,
        port: endpoint.port,
        tls: TlsMode::Implicit,
        tls_context: tls,
        alpn: Alpn::None,
        auth: AuthProtocol::Auto,
        timeout,
        recorder: None,
    };
    let exchange = async {
        let mut stream = net::open_stream(&target).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Accept: application/json\r\nUser-Agent: sidesync/{}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            endpoint.path,
            endpoint.host,
            env!("CARGO_PKG_VERSION"),
            body.expose().len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body.expose().as_bytes());
        let io = |e: std::io::Error| HttpError::Io(format!("talking to {}: {e}", endpoint.host));
        stream.write_all(&request).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(n) => n,
                // Servers that close without TLS close_notify: what arrived is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(io(e)),
            };
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.len() > MAX_ANSWER {
                return Err(HttpError::Malformed(format!(
                    "more than {MAX_ANSWER} bytes"
                )));
            }
            if complete(&answer) {
                break;
            }
        }
        parse_answer(&answer)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Io(format!(
            "{} did not answer within {} s",
            endpoint.host,
            timeout.as_secs()
        ))),
    }
}

/// Whether `answer` holds a whole response already (Content-Length reached, or the last chunk).
fn complete(answer: &[u8]) -> bool {
    let Some(end) = memchr::memmem::find(answer, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let body = &answer[end + 4..];
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= len;
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return memchr::memmem::find(body, b"\r\n0\r\n").is_some() || body.starts_with(b"0\r\n");
    }
    false
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// Status and body of a whole HTTP/1.x answer.
pub fn parse_answer(answer: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
    let end = memchr::memmem::find(answer, b"\r\n\r\n")
        .ok_or_else(|| HttpError::Malformed("no end of the header".into()))?;
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed(format!(
            "status line \"{status_line}\""
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!(
            "status line \"{status_line}\""
        )));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| HttpError::Malformed(format!("status line \"{status_line}\"")))?;
    let lower = head.to_ascii_lowercase();
    let body = &answer[end + 4..];
    let body = if header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(body)?
    } else if let Some(len) = header(&lower, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        body.get(..len)
            .ok_or_else(|| HttpError::Malformed("the body is shorter than announced".into()))?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let bad = || HttpError::Malformed("a broken chunked body".into());
    let mut out = Vec::new();
    loop {
        let eol = memchr::memmem::find(body, b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or_else(bad)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_length_chunks_or_close() {
        let a = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra";
        assert!(complete(a));
        assert_eq!(parse_answer(a).expect("ok"), (200, b"{}".to_vec()));
        let c = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert!(complete(c));
        assert_eq!(parse_answer(c).expect("ok"), (400, b"{\"a\":1}".to_vec()));
        let closed = b"HTTP/1.0 503 Unavailable\r\n\r\ndown";
        assert!(!complete(closed));
        assert_eq!(parse_answer(closed).expect("ok"), (503, b"down".to_vec()));
        assert!(parse_answer(b"garbage").is_err());
        assert!(parse_answer(b"SSH-2.0 x\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}").is_err());
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}

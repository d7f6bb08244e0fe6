//! HTTP/1.1 requests on the appliance's own connection layer (tokio + rustls, the system roots
//! plus a CA file): token endpoints (one short request an hour per identity) and webhook
//! deliveries. Not worth a second HTTP stack (hyper, ureq) beside the one the mail sessions
//! already use: the requests are small POSTs with small answers. Answers are read whole,
//! bounded in size and time, with Content-Length, chunked or close-delimited bodies; a
//! connection whose answer allows it is kept for the next request.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{AuthProtocol, TlsMode};
use crate::net::{self, Alpn, MailStream, TlsContext};

pub use super::url::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("{0}")]
    Io(String),
    #[error("the answer is not HTTP: {0}")]
    Malformed(String),
}

/// One request: a method, extra headers (never logged), a body.
pub struct Request<'a> {
    pub method: &'a str,
    pub content_type: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub body: &'a [u8],
}

/// Opens a connection to `endpoint` (TLS for https).
pub async fn connect(
    endpoint: &Endpoint,
    tls: &TlsContext,
    timeout: Duration,
) -> Result<MailStream, HttpError> {
    let target = net::Target {
        host: &endpoint.host,
        port: endpoint.port,
        tls: if endpoint.secure {
            TlsMode::Implicit
        } else {
            TlsMode::None
        },
        tls_context: tls,
        alpn: Alpn::None,
        auth: AuthProtocol::Auto,
        timeout,
        recorder: None,
    };
    Ok(net::open_stream(&target).await?)
}

/// Sends `request` on `stream` and reads its answer: the status, the body, and whether the
/// connection may carry another request. Bounded by `timeout` and `max_answer` bytes.
pub async fn exchange(
    stream: &mut MailStream,
    endpoint: &Endpoint,
    request: &Request<'_>,
    keep_alive: bool,
    max_answer: usize,
    timeout: Duration,
) -> Result<(u16, Vec<u8>, bool), HttpError> {
    let work = async {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nAccept: application/json\r\n\
             User-Agent: sidesync/{}\r\nContent-Length: {}\r\n",
            request.method,
            endpoint.path,
            endpoint.host,
            request.content_type,
            env!("CARGO_PKG_VERSION"),
            request.body.len()
        );
        for (name, value) in request.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        // The request may carry a client secret or a refresh token, the answer an access
        // token: both buffers are overwritten when they go.
        let mut bytes = zeroize::Zeroizing::new(head.into_bytes());
        bytes.extend_from_slice(request.body);
        let io = |e: std::io::Error| HttpError::Io(format!("talking to {}: {e}", endpoint.host));
        stream.write_all(&bytes).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut answer = zeroize::Zeroizing::new(Vec::new());
        let mut buf = zeroize::Zeroizing::new([0u8; 8192]);
        let mut closed = false;
        loop {
            let n = match stream.read(&mut buf[..]).await {
                Ok(n) => n,
                // Servers that close without TLS close_notify: what arrived is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(io(e)),
            };
            if n == 0 {
                closed = true;
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.len() > max_answer {
                return Err(HttpError::Malformed(format!(
                    "more than {max_answer} bytes"
                )));
            }
            if complete(&answer) {
                break;
            }
        }
        if answer.is_empty() {
            return Err(HttpError::Io(format!(
                "{} closed the connection without an answer",
                endpoint.host
            )));
        }
        let (status, body) = parse_answer(&answer)?;
        let reusable = keep_alive && !closed && may_keep(&answer);
        Ok((status, body, reusable))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Io(format!(
            "{} did not answer within {} s",
            endpoint.host,
            timeout.as_secs()
        ))),
    }
}

/// Whether the server lets the connection carry another request (HTTP/1.1 without
/// `Connection: close`, and a body whose end was announced).
fn may_keep(answer: &[u8]) -> bool {
    let Some(end) = memchr::memmem::find(answer, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    head.starts_with("http/1.1")
        && !header(&head, "connection").is_some_and(|v| v.contains("close"))
        && (header(&head, "content-length").is_some()
            || header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")))
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

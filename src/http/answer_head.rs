//! The answer the front relays from tiny_http says `Connection: close`. Every connection is one
//! request (`front.rs`), and tiny_http cannot say so itself (it drops a `Connection` header a
//! handler sets); without it an HTTP/1.1 client keeps the connection for its next request, and
//! that request meets the close (a generated client's second call failed with "server
//! disconnected"). RFC 9112 §9.6: a server that closes after the answer sends `close`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An answer head longer than this is passed on as it is (tiny_http's are a few hundred bytes).
const MAX_ANSWER_HEAD: usize = 64 * 1024;

/// `head` (through its blank line) with `Connection: close` in place of any `Connection` line.
pub fn closing(head: &[u8]) -> Vec<u8> {
    let text = head.strip_suffix(b"\r\n\r\n").unwrap_or(head);
    let mut out = Vec::with_capacity(head.len() + 19);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let name = line.split(|&b| b == b':').next().unwrap_or(b"");
        if i > 0 && name.trim_ascii().eq_ignore_ascii_case(b"connection") {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// Copies tiny_http's answer from `inner` to `client`, its head through [`closing`].
pub async fn relay<R, W>(inner: &mut R, client: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let rest_at = loop {
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            let head = closing(&buf[..end + 4]);
            if client.write_all(&head).await.is_err() {
                return;
            }
            break end + 4;
        }
        if buf.len() > MAX_ANSWER_HEAD {
            break 0;
        }
        match inner.read(&mut chunk).await {
            Ok(0) | Err(_) => break 0,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    if client.write_all(&buf[rest_at..]).await.is_err() {
        return;
    }
    drop(buf);
    let _ = tokio::io::copy(inner, client).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_says_the_connection_closes() {
        let head = b"HTTP/1.1 200 OK\r\nServer: tiny-http (Rust)\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            closing(head),
            b"HTTP/1.1 200 OK\r\nServer: tiny-http (Rust)\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_connection_line_of_its_own_is_replaced() {
        let head = b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            closing(head),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn the_body_follows_the_head_unchanged() {
        let answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope\n".to_vec();
        let mut out = Vec::new();
        relay(&mut answer.as_slice(), &mut out).await;
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n"
        );
    }
}

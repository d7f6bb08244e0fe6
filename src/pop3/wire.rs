//! POP3 replies on the wire (RFC 1939): status lines, multi-line bodies ending in ".", and the
//! "n value" lines of UIDL and LIST. Strict: anything else is a protocol error, never a guess.

use std::time::Duration;

use memchr::memchr;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::engine::error::SyncError;

/// A status line: `+OK text` or `-ERR text`.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Ok(String),
    Err(String),
    /// `+ base64` during SASL.
    Continue(String),
}

pub fn parse_status(line: &[u8]) -> Option<Status> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = |prefix: &str| {
        line.strip_prefix(prefix)
            .map(|r| r.strip_prefix(' ').unwrap_or(r).to_string())
    };
    if line == "+OK" || line.starts_with("+OK ") {
        return rest("+OK").map(Status::Ok);
    }
    if line == "-ERR" || line.starts_with("-ERR ") {
        return rest("-ERR").map(Status::Err);
    }
    if line == "+" || line.starts_with("+ ") {
        return rest("+").map(Status::Continue);
    }
    None
}

/// True for replies that say "try again later" (RFC 2449 / 3206 response codes): the mailbox is
/// in use, or the server has a temporary problem.
pub fn is_temporary(text: &str) -> bool {
    text.starts_with("[IN-USE]") || text.starts_with("[SYS/TEMP]")
}

/// One line of a UIDL or LIST listing: message number and value.
pub fn parse_listing_line(line: &[u8]) -> Option<(u32, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (n, value) = line.split_once(' ')?;
    let n: u32 = n.parse().ok().filter(|n| *n > 0)?;
    let value = value.trim_start_matches(' ');
    (!value.is_empty() && !value.contains(' ')).then_some((n, value))
}

/// RFC 1939 §7: a unique-id is 1 to 70 characters from 0x21 to 0x7E.
pub fn valid_uidl(uidl: &str) -> bool {
    (1..=70).contains(&uidl.len()) && uidl.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

use crate::wire::fill;
pub use crate::wire::read_line;

/// Reads a multi-line body up to its terminating "." line, undoing the dot-stuffing, and appends
/// it to `out`. More than `max_bytes` is a protocol error (a server cannot make us buffer without
/// end).
pub async fn read_multiline<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
    out: &mut Vec<u8>,
    max_bytes: usize,
    address: &str,
    what: &'static str,
    limit: Duration,
) -> Result<(), SyncError> {
    let base = out.len();
    let mut line_start = out.len();
    loop {
        fill(r, address, what, limit).await?;
        let buf = r.buffer();
        let Some(i) = memchr(b'\n', buf) else {
            let n = buf.len();
            out.extend_from_slice(buf);
            r.consume(n);
            if out.len() - base > max_bytes {
                return Err(too_long(address, what, max_bytes));
            }
            continue;
        };
        out.extend_from_slice(&buf[..=i]);
        r.consume(i + 1);
        let line = &out[line_start..];
        if line == b".\r\n" || line == b".\n" {
            out.truncate(line_start);
            return Ok(());
        }
        if line.first() == Some(&b'.') {
            out.remove(line_start);
        }
        line_start = out.len();
        if out.len() - base > max_bytes {
            return Err(too_long(address, what, max_bytes));
        }
    }
}

fn too_long(address: &str, what: &'static str, max_bytes: usize) -> SyncError {
    SyncError::ProtocolViolation {
        address: address.to_string(),
        detail: format!("more than {max_bytes} bytes while {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"+OK Dovecot ready.\r\n"),
            Some(Status::Ok("Dovecot ready.".into()))
        );
        assert_eq!(parse_status(b"+OK\r\n"), Some(Status::Ok(String::new())));
        assert_eq!(
            parse_status(b"-ERR [AUTH] Authentication failed.\r\n"),
            Some(Status::Err("[AUTH] Authentication failed.".into()))
        );
        assert_eq!(
            parse_status(b"+ \r\n"),
            Some(Status::Continue(String::new()))
        );
        assert_eq!(parse_status(b"+OKAY\r\n"), None);
        assert_eq!(parse_status(b"* OK imap\r\n"), None);
        assert_eq!(parse_status(b"\xff\r\n"), None);
        assert!(is_temporary("[IN-USE] locked"));
        assert!(!is_temporary("[AUTH] no"));
    }

    #[test]
    fn listing_lines() {
        assert_eq!(
            parse_listing_line(b"1 00000001abc\r\n"),
            Some((1, "00000001abc"))
        );
        assert_eq!(parse_listing_line(b"12 3456\r\n"), Some((12, "3456")));
        assert_eq!(parse_listing_line(b"0 x\r\n"), None);
        assert_eq!(parse_listing_line(b"x y\r\n"), None);
        assert_eq!(parse_listing_line(b"1\r\n"), None);
        assert_eq!(parse_listing_line(b"1 a b\r\n"), None);
        assert!(valid_uidl("00000001abc"));
        assert!(!valid_uidl(""));
        assert!(!valid_uidl(&"a".repeat(71)));
        assert!(!valid_uidl("a\u{7f}"));
    }

    #[tokio::test]
    async fn multiline_bodies_are_unstuffed_and_end_at_the_dot() {
        let wire: &[u8] = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nnot end\r\n.\r\n+OK next\r\n";
        // A tiny buffer makes lines straddle reads.
        let mut r = BufReader::with_capacity(3, wire);
        let mut out = Vec::new();
        read_multiline(&mut r, &mut out, 1 << 20, "h", "test", T)
            .await
            .expect("body");
        assert_eq!(out, b"Subject: x\r\n\r\n.leading dot\r\n");
        let mut out = Vec::new();
        read_multiline(&mut r, &mut out, 1 << 20, "h", "test", T)
            .await
            .expect("second");
        assert_eq!(out, b"not end\r\n");
        let mut line = Vec::new();
        read_line(&mut r, &mut line, "h", "test", T)
            .await
            .expect("line");
        assert_eq!(line, b"+OK next\r\n");
    }

    #[tokio::test]
    async fn a_cut_body_or_an_endless_one_is_an_error() {
        let mut r = BufReader::new(&b"no end\r\n"[..]);
        let mut out = Vec::new();
        let e = read_multiline(&mut r, &mut out, 1 << 20, "h", "test", T).await;
        assert!(matches!(e, Err(SyncError::ConnectionLost { .. })));
        let endless = vec![b'a'; 4096];
        let mut r = BufReader::new(&endless[..]);
        let e = read_multiline(&mut r, &mut out, 100, "h", "test", T).await;
        assert!(matches!(e, Err(SyncError::ProtocolViolation { .. })));
        let mut r = BufReader::new(&endless[..]);
        let mut line = Vec::new();
        let e = read_line(&mut r, &mut line, "h", "test", T).await;
        assert!(matches!(e, Err(SyncError::ConnectionLost { .. })));
    }
}

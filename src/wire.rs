//! Reading a server's reply lines, shared by the protocol sessions (POP3 throughout; IMAP and SMTP
//! before TLS, where sidesync reads the exchange itself so that no byte a server sends before the
//! handshake reaches a protocol crate, and bytes injected after the go-ahead are seen). Every line
//! is bounded in length, and in time as a whole.

use std::time::Duration;

use memchr::memchr;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::engine::error::SyncError;
use crate::net::NetError;

/// Longest reply line accepted (POP3: RFC 1939 allows 512 octets; servers add response codes;
/// SMTP: 512; an IMAP greeting or capability line is short).
pub const MAX_LINE: usize = 8 * 1024;

fn timed_out(address: &str, what: &'static str, limit: Duration) -> SyncError {
    SyncError::Net(NetError::Timeout {
        address: address.to_string(),
        step: what,
        seconds: limit.as_secs().max(1),
    })
}

/// Makes sure bytes are buffered, waiting at most `left` (of the step's `limit`) for the server.
/// Only an empty buffer waits, so a timer is armed per network read, not per line.
async fn fill_within<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
    address: &str,
    what: &'static str,
    left: Duration,
    limit: Duration,
) -> Result<(), SyncError> {
    if !r.buffer().is_empty() {
        return Ok(());
    }
    if left.is_zero() {
        return Err(timed_out(address, what, limit));
    }
    let read = match tokio::time::timeout(left, r.fill_buf()).await {
        Err(_) => return Err(timed_out(address, what, limit)),
        Ok(Err(_)) => 0,
        Ok(Ok(b)) => b.len(),
    };
    if read == 0 {
        return Err(SyncError::ConnectionLost {
            address: address.to_string(),
        });
    }
    Ok(())
}

pub(crate) async fn fill<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
    address: &str,
    what: &'static str,
    limit: Duration,
) -> Result<(), SyncError> {
    fill_within(r, address, what, limit, limit).await
}

/// Reads one line (up to and including LF) into `line`, replacing what was there. The whole line
/// must come within `limit`: a server dripping a byte at a time cannot stretch one reply forever.
pub async fn read_line<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
    line: &mut Vec<u8>,
    address: &str,
    what: &'static str,
    limit: Duration,
) -> Result<(), SyncError> {
    line.clear();
    let started = tokio::time::Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        fill_within(r, address, what, left, limit).await?;
        let buf = r.buffer();
        let (take, done) = match memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            return Err(SyncError::ProtocolViolation {
                address: address.to_string(),
                detail: format!("a reply line longer than {MAX_LINE} bytes while {what}"),
            });
        }
    }
}

/// True when the server sent bytes that were not read yet — after a STARTTLS/STLS go-ahead they
/// came before the handshake: possibly injected by someone on the path.
pub fn pending_before_tls(r: &BufReader<crate::net::MailStream>) -> bool {
    !r.buffer().is_empty() || r.get_ref().plaintext_pending() > 0
}

/// A reply word fit to show (a status word, a response code): short, and only characters such
/// words use. Text a server sends before TLS may be an attacker's; only such words of it are kept.
pub fn safe_word(word: &str) -> Option<&str> {
    let ok = (1..=24).contains(&word.len())
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"[]/-.+_".contains(&b));
    ok.then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_words_are_kept() {
        assert_eq!(safe_word("[UNAVAILABLE]"), Some("[UNAVAILABLE]"));
        assert_eq!(safe_word("454"), Some("454"));
        assert_eq!(safe_word("-ERR"), Some("-ERR"));
        assert_eq!(safe_word("<script>"), None);
        assert_eq!(safe_word(""), None);
        assert_eq!(safe_word(&"A".repeat(25)), None);
    }
}

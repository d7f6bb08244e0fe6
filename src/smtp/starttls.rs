//! STARTTLS for SMTP (RFC 3207), read by sidesync itself: greeting, EHLO, STARTTLS, each reply
//! line bounded. mail-send reads a reply into a buffer of its own and drops what follows it, so an
//! answer injected after the server's 220 would vanish unseen; here it fails the connection as
//! `tls_injection`. What the server offered before TLS is asked again under TLS.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};

use crate::engine::error::SyncError;
use crate::net::{MailStream, NetError};
use crate::wire::{pending_before_tls, read_line, safe_word};

/// Lines of one reply accepted before TLS.
const MAX_LINES: usize = 64;

/// One reply: its code and the text of each line.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

/// Runs the plaintext part on `stream` and returns it, ready for the TLS handshake.
pub(super) async fn negotiate(
    stream: MailStream,
    address: &str,
    ehlo_name: &str,
    limit: Duration,
) -> Result<MailStream, SyncError> {
    let mut r = BufReader::new(stream);
    let greeting = reply(&mut r, address, "waiting for the greeting", limit).await?;
    if greeting.code != 220 {
        return Err(refused_before_tls(address, "the greeting", greeting.code));
    }
    send(&mut r, &format!("EHLO {ehlo_name}"), address, limit).await?;
    let ehlo = reply(&mut r, address, "saying EHLO", limit).await?;
    if ehlo.code != 250 {
        return Err(refused_before_tls(address, "EHLO", ehlo.code));
    }
    let offered = ehlo.lines.iter().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        return Err(SyncError::TlsNotOffered {
            address: address.to_string(),
            command: "STARTTLS",
        });
    }
    send(&mut r, "STARTTLS", address, limit).await?;
    let go = reply(&mut r, address, "starting TLS", limit).await?;
    if go.code != 220 {
        // 454: TLS not available for a temporary reason (RFC 3207); 5xx: refused for good.
        return Err(SyncError::TlsRefused {
            address: address.to_string(),
            command: "STARTTLS",
            reply: go.code.to_string(),
            transient: (400..500).contains(&go.code),
        });
    }
    if pending_before_tls(&r) {
        return Err(SyncError::TlsInjection {
            address: address.to_string(),
            command: "STARTTLS",
        });
    }
    Ok(r.into_inner())
}

/// A reply other than the expected one before TLS: only its code is shown.
fn refused_before_tls(address: &str, what: &str, code: u16) -> SyncError {
    super::refused(address, code, format!("{code} to {what}"))
}

async fn send(
    r: &mut BufReader<MailStream>,
    line: &str,
    address: &str,
    limit: Duration,
) -> Result<(), SyncError> {
    let write = async {
        let s = r.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes()).await?;
        s.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SyncError::ConnectionLost {
            address: address.to_string(),
        }),
        Err(_) => Err(SyncError::Net(NetError::Timeout {
            address: address.to_string(),
            step: "writing to the SMTP server",
            seconds: limit.as_secs().max(1),
        })),
    }
}

/// Reads one reply: "ddd-text" lines, then "ddd text".
async fn reply(
    r: &mut BufReader<MailStream>,
    address: &str,
    what: &'static str,
    limit: Duration,
) -> Result<Reply, SyncError> {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        read_line(r, &mut buf, address, what, limit).await?;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end();
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(safe_word)
            .and_then(|c| c.parse::<u16>().ok());
        let (Some(code), sep) = (code, text.as_bytes().get(3).copied()) else {
            return Err(SyncError::ProtocolViolation {
                address: address.to_string(),
                detail: format!("a reply line that is not SMTP while {what}"),
            });
        };
        lines.push(text.get(4..).unwrap_or("").to_string());
        match sep {
            Some(b'-') if lines.len() < MAX_LINES => continue,
            Some(b'-') => {
                return Err(SyncError::ProtocolViolation {
                    address: address.to_string(),
                    detail: format!("a reply of more than {MAX_LINES} lines while {what}"),
                });
            }
            Some(b' ') | None => return Ok(Reply { code, lines }),
            Some(_) => {
                return Err(SyncError::ProtocolViolation {
                    address: address.to_string(),
                    detail: format!("a reply line that is not SMTP while {what}"),
                });
            }
        }
    }
}

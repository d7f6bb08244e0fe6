//! STARTTLS for IMAP, read by sidesync itself (RFC 3501 §6.2.1): greeting, CAPABILITY, STARTTLS,
//! each line bounded. Nothing a server sends before TLS reaches async-imap's parser, and a byte
//! after the go-ahead (an injected response, RFC 3501 §11.1's attack) fails the connection as
//! `tls_injection`. The capabilities seen here are thrown away: they are asked again under TLS.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};

use crate::engine::error::SyncError;
use crate::net::{MailStream, NetError};
use crate::wire::{pending_before_tls, read_line, safe_word};

/// Untagged lines accepted before a command completes, before TLS.
const MAX_LINES: usize = 64;

/// Runs the plaintext part on `stream` and returns it, ready for the TLS handshake.
pub(super) async fn negotiate(
    stream: MailStream,
    address: &str,
    limit: Duration,
) -> Result<MailStream, SyncError> {
    let mut r = BufReader::new(stream);
    let mut line = Vec::new();
    read_line(
        &mut r,
        &mut line,
        address,
        "waiting for the greeting",
        limit,
    )
    .await?;
    let greeting = String::from_utf8_lossy(&line).to_string();
    let mut words = greeting.split_whitespace();
    match (
        words.next(),
        words.next().map(str::to_ascii_uppercase).as_deref(),
    ) {
        (Some("*"), Some("OK")) => {}
        (Some("*"), Some("BYE")) => {
            return Err(SyncError::ServerBusy {
                address: address.to_string(),
                reply: "BYE before TLS".into(),
            });
        }
        // Already logged in, in the clear: TLS can no longer protect the login.
        (Some("*"), Some("PREAUTH")) => {
            return Err(SyncError::TlsRefused {
                address: address.to_string(),
                command: "STARTTLS",
                reply: "PREAUTH greeting: logged in before TLS".into(),
                transient: false,
            });
        }
        _ => {
            return Err(SyncError::Protocol {
                address: address.to_string(),
                detail: "the greeting is not an IMAP greeting".into(),
            });
        }
    }
    let mut caps = capabilities_in(&greeting);
    if caps.is_none() {
        let (_, lines) = command(&mut r, "sscap1 CAPABILITY", address, limit).await?;
        caps = Some(
            lines
                .iter()
                .filter_map(|l| capabilities_in(l))
                .flatten()
                .collect(),
        );
    }
    if !caps.is_some_and(|c| c.iter().any(|c| c == "STARTTLS")) {
        return Err(SyncError::TlsNotOffered {
            address: address.to_string(),
            command: "STARTTLS",
        });
    }
    let (status, _) = command(&mut r, "sstls1 STARTTLS", address, limit).await?;
    if status.0 != "OK" {
        let transient = matches!(
            status.1.as_deref(),
            Some("[UNAVAILABLE]" | "[INUSE]" | "[LIMIT]" | "[SERVERBUG]")
        );
        return Err(SyncError::TlsRefused {
            address: address.to_string(),
            command: "STARTTLS",
            reply: [Some(status.0), status.1]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            transient,
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

/// Sends `line` (a tagged command) and reads to its completion: (status word, response code),
/// and the untagged lines before it.
async fn command(
    r: &mut BufReader<MailStream>,
    line: &str,
    address: &str,
    limit: Duration,
) -> Result<((String, Option<String>), Vec<String>), SyncError> {
    let tag = line.split(' ').next().unwrap_or("");
    let what = if line.ends_with("STARTTLS") {
        "starting TLS"
    } else {
        "asking for capabilities"
    };
    let write = async {
        let s = r.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes()).await?;
        s.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            return Err(SyncError::ConnectionLost {
                address: address.to_string(),
            });
        }
        Err(_) => {
            return Err(SyncError::Net(NetError::Timeout {
                address: address.to_string(),
                step: what,
                seconds: limit.as_secs().max(1),
            }));
        }
    }
    let mut untagged = Vec::new();
    let mut buf = Vec::new();
    loop {
        read_line(r, &mut buf, address, what, limit).await?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let mut words = text.split_whitespace();
        if words.next() == Some(tag) {
            let status = words
                .next()
                .and_then(safe_word)
                .unwrap_or("?")
                .to_ascii_uppercase();
            let code = words
                .next()
                .filter(|w| w.starts_with('['))
                .and_then(safe_word)
                .map(str::to_ascii_uppercase);
            return Ok(((status, code), untagged));
        }
        if untagged.len() >= MAX_LINES {
            return Err(SyncError::ProtocolViolation {
                address: address.to_string(),
                detail: format!("more than {MAX_LINES} lines before TLS"),
            });
        }
        untagged.push(text);
    }
}

/// The capabilities a line names: `* CAPABILITY …` or a greeting's `[CAPABILITY …]`, upper case.
fn capabilities_in(line: &str) -> Option<Vec<String>> {
    let upper = line.to_ascii_uppercase();
    let rest = if let Some(i) = upper.find("[CAPABILITY ") {
        let rest = &upper[i + "[CAPABILITY ".len()..];
        &rest[..rest.find(']').unwrap_or(rest.len())]
    } else {
        upper.strip_prefix("* CAPABILITY ")?
    };
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::capabilities_in;

    #[test]
    fn capabilities_from_a_greeting_or_a_reply() {
        assert_eq!(
            capabilities_in("* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] hi\r\n"),
            Some(vec![
                "IMAP4REV1".into(),
                "STARTTLS".into(),
                "AUTH=PLAIN".into()
            ])
        );
        assert_eq!(
            capabilities_in("* CAPABILITY IMAP4rev1 starttls\r\n"),
            Some(vec!["IMAP4REV1".into(), "STARTTLS".into()])
        );
        assert_eq!(capabilities_in("* OK ready\r\n"), None);
    }
}

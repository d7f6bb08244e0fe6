//! A POP3 client session for incoming sync (RFC 1939, CAPA and PIPELINING from RFC 2449, STLS from
//! RFC 2595, AUTH from RFC 5034), over the connection layer.
//!
//! Hand-written: the one maintained crate (async-pop) brings its own TLS stack (native-tls or an
//! older rustls) and cannot upgrade our stream with STLS. POP3 is small; this client is strict:
//! every reply is checked, bodies are bounded, and every network step runs under the mailbox's
//! connection timeout. Messages are only ever deleted by an explicit DELE followed by QUIT.

mod wire;

use std::time::Duration;
use zeroize::Zeroizing;

use tokio::io::{AsyncWriteExt, BufReader};

use crate::config::{AuthProtocol, TlsMode};
use crate::engine::error::SyncError;
use crate::net::{self, Login, MailStream, StepError, Target};
use crate::tracking::maildrop::MaildropEntry;
use wire::Status;

/// A body may exceed the size LIST gave (LF stored, CRLF sent) but not by more than this factor.
const BODY_SLACK: u64 = 2;
/// Smallest bound on a body, for servers that report tiny sizes.
const MIN_BODY_LIMIT: u64 = 64 * 1024;
/// Largest UIDL or LIST answer taken: about 700,000 messages (a UIDL line is about 45 bytes),
/// far beyond any real maildrop, and small enough that 256 syncs cannot exhaust memory with it.
const MAX_LISTING: u64 = 32 << 20;

pub struct Pop3Session {
    r: BufReader<MailStream>,
    address: String,
    timeout: Duration,
    pipelining: bool,
    line: Vec<u8>,
    /// Before the STLS handshake: what the server says may be anyone's on the path, so none of
    /// its text reaches an error (`/status`, alerts, logs), only status words and response codes.
    pre_tls: bool,
}

impl Pop3Session {
    /// Connects, negotiates TLS as configured, and logs in.
    pub async fn open(target: &Target<'_>, login: &Login<'_>) -> Result<Pop3Session, SyncError> {
        let address = format!("{}:{}", target.host, target.port);
        let limit = target.timeout;
        let mut s = Pop3Session {
            r: BufReader::new(net::open_stream(target).await?),
            address,
            timeout: limit,
            pipelining: false,
            line: Vec::new(),
            pre_tls: target.tls == TlsMode::StartTls,
        };
        match s.status("waiting for the greeting").await? {
            Status::Ok(_) => {}
            Status::Err(text) | Status::Continue(text) => {
                let reply = s.shown("-ERR", text);
                return Err(SyncError::ServerBusy {
                    address: s.address,
                    reply,
                });
            }
        }
        let mut caps = s.capabilities().await?;
        if target.tls == TlsMode::StartTls {
            // Without CAPA the server may still know STLS; a refusal ends it either way.
            if caps
                .as_ref()
                .is_some_and(|c| !c.iter().any(|c| c == "STLS"))
            {
                return Err(s.tls_not_offered());
            }
            match s.command("STLS", "starting TLS").await? {
                Status::Ok(_) => {}
                Status::Err(text) | Status::Continue(text) => {
                    return Err(SyncError::TlsRefused {
                        address: s.address.clone(),
                        command: "STLS",
                        reply: pre_tls_reply("-ERR", &text),
                        transient: wire::is_temporary(&text),
                    });
                }
            }
            // Bytes after the STLS reply came before the handshake: possibly injected.
            if crate::wire::pending_before_tls(&s.r) {
                return Err(SyncError::TlsInjection {
                    address: s.address,
                    command: "STLS",
                });
            }
            let stream = net::start_tls(s.r.into_inner(), target, limit).await?;
            s.r = BufReader::new(stream);
            s.pre_tls = false;
            // Capabilities before TLS cannot be trusted (RFC 2595 §4): ask again.
            caps = s.capabilities().await?;
        }
        let caps = caps.unwrap_or_default();
        s.pipelining = caps.iter().any(|c| c == "PIPELINING");
        s.login(&caps, target.auth, login, (target.host, target.port))
            .await?;
        Ok(s)
    }

    /// A reply's text as errors may carry it: whole after TLS (or with no TLS at all), only its
    /// status word and response code before it.
    fn shown(&self, status: &str, text: String) -> String {
        if self.pre_tls {
            pre_tls_reply(status, &text)
        } else {
            text
        }
    }

    fn tls_not_offered(&self) -> SyncError {
        SyncError::TlsNotOffered {
            address: self.address.clone(),
            command: "STLS",
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> SyncError {
        SyncError::Protocol {
            address: self.address.clone(),
            detail: detail.into(),
        }
    }

    async fn send(&mut self, command: &[u8], what: &'static str) -> Result<(), SyncError> {
        let limit = self.timeout;
        let w = self.r.get_mut();
        let write = async {
            w.write_all(command).await?;
            w.flush().await
        };
        match net::step(&self.address, what, limit, write).await {
            Ok(()) => Ok(()),
            Err(StepError::Failed(_)) => Err(SyncError::ConnectionLost {
                address: self.address.clone(),
            }),
            Err(StepError::TimedOut(e)) => Err(SyncError::Net(e)),
        }
    }

    /// Reads one status line.
    async fn status(&mut self, what: &'static str) -> Result<Status, SyncError> {
        wire::read_line(
            &mut self.r,
            &mut self.line,
            &self.address,
            what,
            self.timeout,
        )
        .await?;
        match wire::parse_status(&self.line) {
            Some(s) => Ok(s),
            None if self.pre_tls => Err(self.protocol(format!(
                "a line that is not POP3 while {what} (not shown: it came before TLS)"
            ))),
            None => Err(self.protocol(format!(
                "\"{}\" while {what}",
                String::from_utf8_lossy(&self.line).trim_end()
            ))),
        }
    }

    async fn command(&mut self, command: &str, what: &'static str) -> Result<Status, SyncError> {
        // USER, PASS and AUTH carry the config's and the vault's values: one line, exactly.
        let verb = command.split(' ').next().unwrap_or("");
        crate::net::line::one_line(format!("the POP3 {verb} command's argument"), command)?;
        // The line may hold a password (PASS, AUTH): overwritten when sent.
        let line = Zeroizing::new(format!("{command}\r\n"));
        self.send(line.as_bytes(), what).await?;
        self.status(what).await
    }

    /// A command whose `-ERR` is a protocol failure; returns the `+OK` text.
    async fn expect_ok(&mut self, command: &str, what: &'static str) -> Result<String, SyncError> {
        match self.command(command, what).await? {
            Status::Ok(text) => Ok(text),
            Status::Err(text) | Status::Continue(text) => Err(self.refused(what, text)),
        }
    }

    fn refused(&self, what: &str, text: String) -> SyncError {
        let temporary = wire::is_temporary(&text);
        let text = self.shown("", text);
        if temporary {
            SyncError::ServerBusy {
                address: self.address.clone(),
                reply: text,
            }
        } else {
            self.protocol(format!("-ERR {text} while {what}"))
        }
    }

    /// Reads a multi-line body into `out`.
    async fn body(
        &mut self,
        out: &mut Vec<u8>,
        max: u64,
        what: &'static str,
    ) -> Result<(), SyncError> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        wire::read_multiline(&mut self.r, out, max, &self.address, what, self.timeout).await
    }

    /// CAPA (RFC 2449); `None` when the server does not know it.
    async fn capabilities(&mut self) -> Result<Option<Vec<String>>, SyncError> {
        let what = "asking for capabilities";
        match self.command("CAPA", what).await? {
            Status::Ok(_) => {}
            _ => return Ok(None),
        }
        let mut raw = Vec::new();
        self.body(&mut raw, 64 * 1024, what).await?;
        Ok(Some(
            String::from_utf8_lossy(&raw)
                .lines()
                .map(|l| l.trim().to_ascii_uppercase())
                .filter(|l| !l.is_empty())
                .collect(),
        ))
    }

    async fn login(
        &mut self,
        caps: &[String],
        protocol: AuthProtocol,
        login: &Login<'_>,
        server: (&str, u16),
    ) -> Result<(), SyncError> {
        if login.bearer {
            return self.bearer_login(caps, protocol, login, server).await;
        }
        if matches!(protocol, AuthProtocol::XOAuth2 | AuthProtocol::OAuthBearer) {
            return Err(SyncError::AuthUnsupported {
                address: self.address.clone(),
                detail: "XOAUTH2 and OAUTHBEARER need an OAuth token source in the profile".into(),
            });
        }
        let sasl_plain = caps.iter().any(|c| {
            c.strip_prefix("SASL ")
                .is_some_and(|m| m.split(' ').any(|m| m == "PLAIN"))
        });
        let use_plain = match protocol {
            AuthProtocol::Plain => true,
            AuthProtocol::Login => false,
            // An authorization identity needs SASL; otherwise prefer it when offered.
            AuthProtocol::Auto => sasl_plain || login.authzid.is_some(),
            AuthProtocol::XOAuth2 | AuthProtocol::OAuthBearer => false,
        };
        if use_plain && !sasl_plain && protocol == AuthProtocol::Auto {
            return Err(SyncError::AuthUnsupported {
                address: self.address.clone(),
                detail: "acting for a mailbox with the profile's credentials needs SASL PLAIN"
                    .into(),
            });
        }
        if !use_plain && login.authzid.is_some() {
            return Err(SyncError::AuthUnsupported {
                address: self.address.clone(),
                detail: "USER/PASS cannot act for another mailbox; use authentication protocol \"plain\""
                    .into(),
            });
        }
        let what = "logging in";
        let status = if use_plain {
            let blob = net::plain_blob(login);
            let line = Zeroizing::new(format!("AUTH PLAIN {}", blob.as_str()));
            match self.command(&line, what).await? {
                // A server that wants the response on its own line (no initial response).
                Status::Continue(_) => self.command(&blob, what).await?,
                other => other,
            }
        } else {
            match self
                .command(&format!("USER {}", login.username), what)
                .await?
            {
                Status::Ok(_) => {
                    let line = Zeroizing::new(format!("PASS {}", login.password.expose()));
                    self.command(&line, what).await?
                }
                other => other,
            }
        };
        self.login_outcome(status)
    }

    /// What a login's last answer means: in, busy (try later), or refused.
    fn login_outcome(&self, status: Status) -> Result<(), SyncError> {
        match status {
            Status::Ok(_) => Ok(()),
            Status::Err(text) if wire::is_temporary(&text) => Err(SyncError::ServerBusy {
                address: self.address.clone(),
                reply: text,
            }),
            Status::Err(text) | Status::Continue(text) => Err(SyncError::AuthRejected {
                address: self.address.clone(),
                reply: text,
            }),
        }
    }

    /// AUTH XOAUTH2 / OAUTHBEARER with the initial response (RFC 5034); a failure challenge
    /// (the server's JSON status) is answered with an empty line, as the mechanisms ask.
    async fn bearer_login(
        &mut self,
        caps: &[String],
        protocol: AuthProtocol,
        login: &Login<'_>,
        server: (&str, u16),
    ) -> Result<(), SyncError> {
        use base64::Engine;
        let offered = |m: &str| {
            caps.iter().any(|c| {
                c.strip_prefix("SASL ")
                    .is_some_and(|list| list.split(' ').any(|x| x == m))
            })
        };
        let mechanism = net::sasl::bearer_mechanism(protocol, offered).map_err(|detail| {
            SyncError::AuthUnsupported {
                address: self.address.clone(),
                detail,
            }
        })?;
        let blob = base64::engine::general_purpose::STANDARD
            .encode(net::bearer_response(mechanism, login, server.0, server.1));
        let what = "logging in";
        let mut said = None;
        let status = match self
            .command(&format!("AUTH {} {blob}", mechanism.name()), what)
            .await?
        {
            Status::Continue(challenge) => {
                said = Some(challenge);
                self.command("", what).await?
            }
            other => other,
        };
        self.login_outcome(status)
            .map_err(|e| e.with_sasl_status(said.as_deref().map(str::as_bytes)))
    }

    /// STAT: message count and total size.
    pub async fn stat(&mut self) -> Result<(u32, u64), SyncError> {
        let text = self.expect_ok("STAT", "reading the maildrop size").await?;
        let mut parts = text.split(' ');
        match (
            parts.next().and_then(|n| n.parse().ok()),
            parts.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(self.protocol(format!("STAT answered \"{text}\""))),
        }
    }

    /// Every message with its UIDL and size (UIDL, then LIST). A server without UIDL, or with
    /// UIDLs that are not unique, cannot be synced exactly once: that is a permanent error.
    pub async fn list_messages(&mut self) -> Result<Vec<MaildropEntry>, SyncError> {
        let what = "listing unique ids";
        let uidls = match self.command("UIDL", what).await? {
            Status::Ok(_) => self.listing(what).await?,
            Status::Err(text) | Status::Continue(text) => {
                return Err(if wire::is_temporary(&text) {
                    SyncError::ServerBusy {
                        address: self.address.clone(),
                        reply: text,
                    }
                } else {
                    SyncError::NoUidl {
                        address: self.address.clone(),
                        detail: format!("UIDL answered -ERR {text}"),
                    }
                });
            }
        };
        self.expect_ok("LIST", "listing sizes").await?;
        let sizes = self.listing("listing sizes").await?;
        let sizes: std::collections::HashMap<u32, u64> = sizes
            .into_iter()
            .filter_map(|(n, s)| Some((n, s.parse().ok()?)))
            .collect();
        let mut seen = std::collections::HashSet::with_capacity(uidls.len());
        let mut out = Vec::with_capacity(uidls.len());
        for (msgno, uidl) in uidls {
            if !wire::valid_uidl(&uidl) {
                return Err(
                    self.no_uidl(format!("message {msgno} has the malformed UIDL {uidl:?}"))
                );
            }
            if !seen.insert(uidl.clone()) {
                return Err(self.no_uidl(format!("UIDL {uidl} is given to two messages")));
            }
            let Some(&size) = sizes.get(&msgno) else {
                return Err(self.protocol(format!("LIST does not name message {msgno}")));
            };
            out.push(MaildropEntry { msgno, uidl, size });
        }
        Ok(out)
    }

    fn no_uidl(&self, detail: String) -> SyncError {
        SyncError::NoUidl {
            address: self.address.clone(),
            detail,
        }
    }

    async fn listing(&mut self, what: &'static str) -> Result<Vec<(u32, String)>, SyncError> {
        let mut raw = Vec::new();
        self.body(&mut raw, MAX_LISTING, what).await?;
        raw.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && *l != b"\r")
            .map(|l| {
                wire::parse_listing_line(l)
                    .map(|(n, v)| (n, v.to_string()))
                    .ok_or_else(|| {
                        self.protocol(format!(
                            "\"{}\" while {what}",
                            String::from_utf8_lossy(l).trim_end()
                        ))
                    })
            })
            .collect()
    }

    /// RETR of each message, pipelined when the server offers PIPELINING.
    pub async fn retrieve(
        &mut self,
        messages: &[MaildropEntry],
    ) -> Result<Vec<Vec<u8>>, SyncError> {
        let what = "retrieving messages";
        if self.pipelining && messages.len() > 1 {
            let mut commands = String::with_capacity(messages.len() * 12);
            for m in messages {
                commands.push_str(&format!("RETR {}\r\n", m.msgno));
            }
            self.send(commands.as_bytes(), what).await?;
        }
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let status = if self.pipelining && messages.len() > 1 {
                self.status(what).await?
            } else {
                self.command(&format!("RETR {}", m.msgno), what).await?
            };
            if let Status::Err(text) | Status::Continue(text) = status {
                return Err(self.refused(what, format!("{text} (message {})", m.msgno)));
            }
            // The size is the server's word: reserve by it only up to a sane amount.
            let mut raw = Vec::with_capacity(m.size.min(16 << 20) as usize + 1024);
            let max = m.size.saturating_mul(BODY_SLACK).max(MIN_BODY_LIMIT);
            self.body(&mut raw, max, what).await?;
            out.push(raw);
        }
        Ok(out)
    }

    /// Marks messages deleted; the server removes them only when QUIT succeeds.
    pub async fn delete(&mut self, msgnos: &[u32]) -> Result<(), SyncError> {
        for n in msgnos {
            self.expect_ok(&format!("DELE {n}"), "deleting messages")
                .await?;
        }
        Ok(())
    }

    /// QUIT: ends the session and commits deletions. Its answer matters only after DELE.
    pub async fn quit(mut self) -> Result<(), SyncError> {
        self.expect_ok("QUIT", "closing the session")
            .await
            .map(|_| ())
    }
}

/// What is kept of a reply sent before TLS: its status word and response code (`-ERR
/// [SYS/TEMP]`), never its text, which anyone on the path can write.
fn pre_tls_reply(status: &str, text: &str) -> String {
    let code = text
        .split_whitespace()
        .next()
        .filter(|w| w.starts_with('['))
        .and_then(crate::wire::safe_word);
    let kept: Vec<&str> = [status]
        .into_iter()
        .filter(|s| !s.is_empty())
        .chain(code)
        .collect();
    if kept.is_empty() {
        "a refusal (its text is not shown: it came before TLS)".to_string()
    } else {
        kept.join(" ")
    }
}

#[cfg(test)]
mod pre_tls_tests {
    use super::pre_tls_reply;

    #[test]
    fn only_the_status_word_and_a_safe_code_are_kept() {
        assert_eq!(
            pre_tls_reply("-ERR", "[SYS/TEMP] busy EVIL-TEXT"),
            "-ERR [SYS/TEMP]"
        );
        assert_eq!(pre_tls_reply("-ERR", "go away EVIL-TEXT"), "-ERR");
        assert_eq!(
            pre_tls_reply("-ERR", "[<script>alert(1)</script>] x"),
            "-ERR"
        );
        assert!(!pre_tls_reply("", "EVIL-TEXT").contains("EVIL"));
    }
}

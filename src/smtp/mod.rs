//! An SMTP client session on mail-send's `SmtpClient`, over the connection layer: greeting, EHLO,
//! implicit TLS or STARTTLS, AUTH PLAIN (with an authorization identity) or LOGIN, then the
//! envelope. Every step runs under the mailbox's connection timeout.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_send::SmtpClient;
use smtp_proto::{
    AUTH_LOGIN, AUTH_OAUTHBEARER, AUTH_PLAIN, AUTH_XOAUTH2, EXT_DSN, EXT_PIPELINING, EhloResponse,
    Response,
};
use tokio::io::AsyncWriteExt;

use crate::config::{AuthProtocol, TlsMode};
use crate::engine::error::SyncError;
use crate::net::{self, MailStream, NetError};
use crate::store::RecipientResult;
use dsn::DsnParams;

/// Where and how to connect, and who authenticates (`None` for a server that takes mail without
/// AUTH): the same shapes as the incoming sessions'.
pub mod dsn;
mod starttls;

pub use crate::net::{Login as SmtpLogin, Target as SmtpTarget, plain_blob};

pub struct SmtpSession {
    client: SmtpClient<MailStream>,
    address: String,
    /// The server takes a group of envelope commands at once (RFC 2920).
    pipelining: bool,
    /// The server offers DSN (RFC 3461): envelopes ask for failure and delay reports.
    dsn: bool,
    /// A transaction was left open (refused at MAIL, RCPT or DATA, or cut short): the next one
    /// starts with RSET. One that reached the reply to its data is over (RFC 5321 4.1.1.4), so
    /// the usual next transaction needs none.
    open_transaction: bool,
    /// What the next write sends, kept between transactions so its allocation is reused.
    out: Vec<u8>,
    /// The next email's envelope, sent with the last email's content, and its replies.
    ahead: Option<Ahead>,
}

/// The envelope of the email sent next on a session: sender, recipients, envelope id.
pub type NextEnvelope<'a> = (&'a str, &'a [String], Option<&'a str>);

struct Ahead {
    sender: String,
    recipients: Vec<String>,
    envelope_id: Option<String>,
    replies: Vec<Response<String>>,
}

/// Why one email was not taken: the reply, whether trying later may help, and what each
/// recipient was told.
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub transient: bool,
    pub reply: String,
    pub results: Vec<RecipientResult>,
    /// The connection cannot carry another transaction.
    pub connection_lost: bool,
}

impl SendFailure {
    /// The connection failed or went silent: try later, on a new connection.
    fn lost(reply: String) -> SendFailure {
        SendFailure {
            transient: true,
            reply,
            results: Vec::new(),
            connection_lost: true,
        }
    }
}

/// One exchange of a transaction under the timeout; a failure loses the connection.
async fn within<T>(
    limit: Duration,
    stage: &str,
    fut: impl std::future::Future<Output = mail_send::Result<T>>,
) -> Result<T, SendFailure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SendFailure::lost(format!(
            "the connection failed {stage}: {e}"
        ))),
        Err(_) => Err(SendFailure::lost(format!(
            "no answer {stage} within {} s",
            limit.as_secs()
        ))),
    }
}

fn reply_text(r: &Response<String>) -> String {
    format!("{} {}", r.code, r.message.trim())
}

/// The name sidesync gives itself in EHLO.
fn ehlo_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "sidesync.localdomain".to_string())
}

fn io_error(address: &str, e: mail_send::Error) -> SyncError {
    match e {
        mail_send::Error::Timeout => SyncError::Net(NetError::Timeout {
            address: address.to_string(),
            step: "waiting for the SMTP server",
            seconds: 0,
        }),
        mail_send::Error::UnexpectedReply(r) => reply_error(address, &r),
        mail_send::Error::Io(_) => SyncError::ConnectionLost {
            address: address.to_string(),
        },
        // mail-send says this for a reply smtp-proto refuses (an endless or malformed line) and
        // for a connection closed in the middle of a reply: both break the protocol.
        mail_send::Error::UnparseableReply => SyncError::ProtocolViolation {
            address: address.to_string(),
            detail: "a reply that is not SMTP, or the connection closed in the middle of one"
                .to_string(),
        },
        other => SyncError::Protocol {
            address: address.to_string(),
            detail: other.to_string(),
        },
    }
}

/// A reply that is not what the step needed: 4xx is transient, 5xx permanent.
fn reply_error(address: &str, r: &Response<String>) -> SyncError {
    refused(address, r.code, format!("{} {}", r.code, r.message.trim()))
}

/// A refusal by its code: 4xx is transient (`server_busy`), anything else permanent.
fn refused(address: &str, code: u16, reply: String) -> SyncError {
    if (400..500).contains(&code) {
        SyncError::ServerBusy {
            address: address.to_string(),
            reply,
        }
    } else {
        SyncError::Rejected {
            address: address.to_string(),
            reply,
        }
    }
}

impl SmtpSession {
    pub async fn open(
        target: &SmtpTarget<'_>,
        login: Option<&SmtpLogin<'_>>,
    ) -> Result<SmtpSession, SyncError> {
        let address = format!("{}:{}", target.host, target.port);
        let limit = target.timeout;
        let name = ehlo_name();
        let stream = net::open_stream(target).await?;
        let (client, ehlo) = if target.tls == TlsMode::StartTls {
            // The plaintext part on sidesync's own reader; mail-send only ever sees TLS.
            let plain = starttls::negotiate(stream, &address, &name, limit).await?;
            let stream = net::start_tls(plain, target, limit).await?;
            let mut client = SmtpClient {
                stream,
                timeout: limit,
            };
            // What the server offered before TLS cannot be trusted: ask again.
            let ehlo = timed(&address, limit, client.ehlo(&name)).await?;
            (client, ehlo)
        } else {
            let mut client = SmtpClient {
                stream,
                timeout: limit,
            };
            let greeting = timed(&address, limit, client.read()).await?;
            if greeting.code != 220 {
                return Err(reply_error(&address, &greeting));
            }
            let ehlo = timed(&address, limit, client.ehlo(&name)).await?;
            (client, ehlo)
        };
        let pipelining = ehlo.has_capability(EXT_PIPELINING);
        let mut session = SmtpSession {
            client,
            address,
            pipelining,
            dsn: ehlo.has_capability(EXT_DSN),
            open_transaction: false,
            out: Vec::new(),
            ahead: None,
        };
        if let Some(login) = login {
            session
                .authenticate(&ehlo, target.auth, login, (target.host, target.port), limit)
                .await?;
        }
        Ok(session)
    }

    async fn authenticate(
        &mut self,
        ehlo: &EhloResponse<String>,
        protocol: AuthProtocol,
        login: &SmtpLogin<'_>,
        server: (&str, u16),
        limit: Duration,
    ) -> Result<(), SyncError> {
        let address = self.address.clone();
        if login.bearer {
            let offered = |m: &str| match m {
                "XOAUTH2" => ehlo.auth_mechanisms & AUTH_XOAUTH2 != 0,
                "OAUTHBEARER" => ehlo.auth_mechanisms & AUTH_OAUTHBEARER != 0,
                _ => false,
            };
            let mechanism = net::sasl::bearer_mechanism(protocol, offered).map_err(|detail| {
                SyncError::AuthUnsupported {
                    address: address.clone(),
                    detail,
                }
            })?;
            let blob = STANDARD.encode(net::bearer_response(mechanism, login, server.0, server.1));
            let mut r = timed(
                &address,
                limit,
                self.client
                    .cmd(format!("AUTH {} {blob}\r\n", mechanism.name())),
            )
            .await?;
            let mut said = None;
            if r.code == 334 {
                // The server's error status; an empty line ends the exchange (RFC 7628 §3.2.3).
                said = Some(r.message.clone());
                r = timed(&address, limit, self.client.cmd(b"\r\n")).await?;
            }
            return if r.code == 235 {
                Ok(())
            } else {
                Err(auth_error(&address, &r).with_sasl_status(said.as_deref().map(str::as_bytes)))
            };
        }
        if matches!(protocol, AuthProtocol::XOAuth2 | AuthProtocol::OAuthBearer) {
            return Err(SyncError::AuthUnsupported {
                address,
                detail: "XOAUTH2 and OAUTHBEARER need an OAuth token source in the profile".into(),
            });
        }
        if ehlo.auth_mechanisms == 0 {
            // The server offers no AUTH at all: it takes mail without it (an internal relay).
            // Credentials are not sent to a server that does not ask for them.
            tracing::debug!(address = %address, "the SMTP server offers no AUTH; sending without it");
            return Ok(());
        }
        let has_plain = ehlo.auth_mechanisms & AUTH_PLAIN != 0;
        let has_login = ehlo.auth_mechanisms & AUTH_LOGIN != 0;
        let use_plain = match protocol {
            AuthProtocol::Plain => true,
            AuthProtocol::Login => false,
            AuthProtocol::Auto => has_plain || login.authzid.is_some() || !has_login,
            AuthProtocol::XOAuth2 | AuthProtocol::OAuthBearer => false,
        };
        if use_plain && !has_plain && protocol == AuthProtocol::Auto {
            return Err(SyncError::AuthUnsupported {
                address,
                detail: "the server offers neither AUTH PLAIN nor AUTH LOGIN".into(),
            });
        }
        if !use_plain && login.authzid.is_some() {
            return Err(SyncError::AuthUnsupported {
                address,
                detail: "AUTH LOGIN cannot act for another mailbox; use authentication protocol \"plain\"".into(),
            });
        }
        let last = if use_plain {
            let blob = plain_blob(login);
            let line = zeroize::Zeroizing::new(format!("AUTH PLAIN {}\r\n", blob.as_str()));
            timed(&address, limit, self.client.cmd(line.as_bytes())).await?
        } else {
            let r = timed(&address, limit, self.client.cmd(b"AUTH LOGIN\r\n")).await?;
            if r.code != 334 {
                return Err(auth_error(&address, &r));
            }
            let user = STANDARD.encode(login.username);
            let r = timed(&address, limit, self.client.cmd(format!("{user}\r\n"))).await?;
            if r.code != 334 {
                return Err(auth_error(&address, &r));
            }
            let pass = STANDARD.encode(login.password.expose());
            timed(&address, limit, self.client.cmd(format!("{pass}\r\n"))).await?
        };
        if last.code == 235 {
            Ok(())
        } else {
            Err(auth_error(&address, &last))
        }
    }

    /// NOOP: is an idle pooled connection still good?
    pub async fn alive(&mut self, limit: Duration) -> bool {
        // A server waiting for the content of an envelope sent ahead would take NOOP as content.
        if self.ahead.is_some() {
            return false;
        }
        matches!(tokio::time::timeout(limit, self.client.cmd(b"NOOP\r\n")).await, Ok(Ok(r)) if r.code == 250)
    }

    /// Checks that the server takes mail from `sender`: MAIL FROM, then RSET (nothing is sent).
    pub async fn check_sender(&mut self, sender: &str, limit: Duration) -> Result<(), SyncError> {
        crate::net::line::one_line("MAIL FROM", sender)?;
        let address = self.address.clone();
        let r = timed(
            &address,
            limit,
            self.client.cmd(format!("MAIL FROM:<{sender}>\r\n")),
        )
        .await?;
        if r.code != 250 {
            return Err(reply_error(&address, &r));
        }
        let r = timed(&address, limit, self.client.cmd(b"RSET\r\n")).await?;
        if r.code != 250 {
            return Err(reply_error(&address, &r));
        }
        Ok(())
    }

    /// Sends one message to `recipients` (all must be accepted).
    pub async fn send(
        &mut self,
        sender: &str,
        recipients: &[String],
        raw: &[u8],
        limit: Duration,
    ) -> Result<(), SyncError> {
        match self
            .send_message(sender, recipients, None, raw, limit, None)
            .await
        {
            Ok(results) if results.iter().all(|r| r.accepted) => Ok(()),
            Ok(results) => Err(SyncError::Rejected {
                address: self.address.clone(),
                reply: results
                    .iter()
                    .filter(|r| !r.accepted)
                    .map(|r| format!("{}: {}", r.address, r.reply))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            Err(f) if f.transient => Err(SyncError::ServerBusy {
                address: self.address.clone(),
                reply: f.reply,
            }),
            Err(f) => Err(SyncError::Rejected {
                address: self.address.clone(),
                reply: f.reply,
            }),
        }
    }

    /// One mail transaction: (RSET,) MAIL FROM and every RCPT TO — in one write when the server
    /// pipelines — then DATA. Recipients the server refuses are recorded; the message goes to
    /// the others. The final reply decides.
    ///
    /// `next`: the envelope of the email the caller sends next on this session. Where the server
    /// pipelines, it goes out in the same write as this email's content (RFC 2920 lets the
    /// content open a group), and its replies come with this email's final reply: one round
    /// trip an email instead of two. The caller must then send exactly that email next (or drop
    /// the connection: the server may be waiting for its content).
    ///
    /// `envelope_id`: the ENVID a delivery status report will carry (the outbox id), sent where
    /// the server offers DSN.
    pub async fn send_message(
        &mut self,
        sender: &str,
        recipients: &[String],
        envelope_id: Option<&str>,
        raw: &[u8],
        limit: Duration,
        next: Option<NextEnvelope<'_>>,
    ) -> Result<Vec<RecipientResult>, SendFailure> {
        let (replies, expected, skip) = match self.ahead.take() {
            Some(ahead) => {
                if ahead.sender != sender
                    || ahead.recipients != recipients
                    || ahead.envelope_id.as_deref() != envelope_id
                {
                    return Err(SendFailure::lost(
                        "the envelope sent ahead was for another email".to_string(),
                    ));
                }
                self.open_transaction = true;
                let n = ahead.replies.len();
                (ahead.replies, n, 0)
            }
            None => {
                self.envelope(sender, recipients, envelope_id, limit)
                    .await?
            }
        };
        if replies.len() != expected {
            return Err(SendFailure::lost(
                "the server's replies do not match the commands".to_string(),
            ));
        }
        let mail = &replies[skip];
        let rcpt_replies = &replies[skip + 1..skip + 1 + recipients.len()];
        let pipelined_data = replies.get(skip + 1 + recipients.len());
        if !(200..300).contains(&mail.code) {
            if pipelined_data.is_some_and(|d| d.code == 354) {
                // The server opened DATA anyway: close it empty, it will refuse the transaction.
                let _ = tokio::time::timeout(limit, self.client.cmd(b".\r\n")).await;
            }
            return Err(SendFailure {
                transient: (400..500).contains(&mail.code),
                reply: format!("MAIL FROM: {}", reply_text(mail)),
                results: Vec::new(),
                connection_lost: false,
            });
        }
        let results: Vec<RecipientResult> = recipients
            .iter()
            .zip(rcpt_replies)
            .map(|(a, r)| RecipientResult {
                address: a.clone(),
                accepted: (200..300).contains(&r.code),
                reply: reply_text(r),
            })
            .collect();
        if !results.iter().any(|r| r.accepted) {
            if pipelined_data.is_some_and(|d| d.code == 354) {
                let _ = tokio::time::timeout(limit, self.client.cmd(b".\r\n")).await;
            }
            // No recipient taken: permanent only if every refusal was permanent.
            let transient = rcpt_replies.iter().any(|r| (400..500).contains(&r.code));
            return Err(SendFailure {
                transient,
                reply: "no recipient was accepted".to_string(),
                results,
                connection_lost: false,
            });
        }
        let data = match pipelined_data {
            Some(d) => d.clone(),
            None => within(limit, "at DATA", self.client.cmd(b"DATA\r\n")).await?,
        };
        if data.code != 354 {
            return Err(SendFailure {
                transient: (400..500).contains(&data.code),
                reply: format!("DATA: {}", reply_text(&data)),
                results,
                connection_lost: false,
            });
        }
        self.out.clear();
        dot_stuff(raw, &mut self.out);
        let ahead = match next {
            Some((sender, recipients, envelope_id)) if self.pipelining => {
                let dsn = self.dsn_params(envelope_id)?;
                Some(envelope_commands(
                    &mut self.out,
                    sender,
                    recipients,
                    &dsn,
                    false,
                ))
            }
            _ => None,
        };
        let (client, out) = (&mut self.client, &self.out);
        let mut replies = within(limit, "after the message", async {
            client.stream.write_all(out).await?;
            client.stream.flush().await?;
            // One read for the final reply and the next envelope's: what a reply read leaves
            // over of what the server sent is not kept for the next read.
            client.read_many(1 + ahead.unwrap_or(0)).await
        })
        .await?;
        self.open_transaction = false;
        if replies.len() != 1 + ahead.unwrap_or(0) {
            return Err(SendFailure::lost(
                "the server's replies do not match the commands".to_string(),
            ));
        }
        let done = replies.remove(0);
        if let (Some((sender, recipients, envelope_id)), Some(_)) = (next, ahead) {
            self.ahead = Some(Ahead {
                sender: sender.to_string(),
                recipients: recipients.to_vec(),
                envelope_id: envelope_id.map(str::to_string),
                replies,
            });
        }
        if (200..300).contains(&done.code) {
            let mut results = results;
            for r in results.iter_mut().filter(|r| r.accepted) {
                r.reply = reply_text(&done);
            }
            Ok(results)
        } else {
            Err(SendFailure {
                transient: (400..500).contains(&done.code),
                reply: reply_text(&done),
                results,
                connection_lost: false,
            })
        }
    }

    /// Sends the envelope and reads its replies: (replies, how many were due, how many of them
    /// come before MAIL's — the RSET's).
    async fn envelope(
        &mut self,
        sender: &str,
        recipients: &[String],
        envelope_id: Option<&str>,
        limit: Duration,
    ) -> Result<(Vec<Response<String>>, usize, usize), SendFailure> {
        // The last check before the wire: a line end in an address would end MAIL FROM or RCPT
        // TO early and start a command of its own (the outbox refuses these at queue time).
        unsafe_envelope(sender, recipients)?;
        let dsn = self.dsn_params(envelope_id)?;
        let rset = self.open_transaction;
        self.open_transaction = true;
        let skip = usize::from(rset);
        // With PIPELINING, DATA ends the group (RFC 2920): one write and one round trip for
        // the envelope.
        if self.pipelining {
            self.out.clear();
            let n = envelope_commands(&mut self.out, sender, recipients, &dsn, rset);
            let (client, out) = (&mut self.client, &self.out);
            let replies = within(limit, "during the envelope", async {
                client.stream.write_all(out).await?;
                client.stream.flush().await?;
                client.read_many(n).await
            })
            .await?;
            return Ok((replies, n, skip));
        }
        let mut commands: Vec<String> = Vec::with_capacity(recipients.len() + 2);
        if rset {
            commands.push("RSET\r\n".to_string());
        }
        commands.push(format!("MAIL FROM:<{sender}>{}\r\n", dsn.mail));
        commands.extend(
            recipients
                .iter()
                .map(|r| format!("RCPT TO:<{r}>{}\r\n", dsn.rcpt)),
        );
        let mut r = Vec::with_capacity(commands.len());
        for c in &commands {
            r.push(within(limit, "during the envelope", self.client.cmd(c.as_bytes())).await?);
        }
        Ok((r, commands.len(), skip))
    }

    /// The DSN parameters for an envelope; an envelope id that is not one line is refused
    /// like an address that is not (nothing is sent).
    fn dsn_params(&self, envelope_id: Option<&str>) -> Result<DsnParams, SendFailure> {
        DsnParams::new(self.dsn, envelope_id).map_err(|e| SendFailure {
            transient: false,
            reply: e.to_string(),
            results: Vec::new(),
            connection_lost: false,
        })
    }

    pub async fn quit(self, limit: Duration) {
        // Waiting for the content of an envelope sent ahead, the server would take QUIT as
        // content: closing the connection drops that transaction instead.
        if self.ahead.is_some() {
            return;
        }
        let _ = tokio::time::timeout(limit, self.client.quit()).await;
    }
}

/// A sender or recipient that cannot be sent as one command line: a permanent failure, with
/// nothing sent.
fn unsafe_envelope(sender: &str, recipients: &[String]) -> Result<(), SendFailure> {
    let checked = crate::net::line::one_line("MAIL FROM", sender).and_then(|()| {
        recipients.iter().enumerate().try_for_each(|(i, r)| {
            crate::net::line::one_line(format!("RCPT TO (recipient {})", i + 1), r)
        })
    });
    checked.map_err(|e| SendFailure {
        transient: false,
        reply: e.to_string(),
        results: Vec::new(),
        connection_lost: false,
    })
}

/// A pipelined envelope appended to `out`: (RSET,) MAIL FROM, each RCPT TO, DATA. Returns how
/// many replies it asks for.
fn envelope_commands(
    out: &mut Vec<u8>,
    sender: &str,
    recipients: &[String],
    dsn: &DsnParams,
    rset: bool,
) -> usize {
    use std::io::Write;
    if rset {
        out.extend_from_slice(b"RSET\r\n");
    }
    let _ = write!(out, "MAIL FROM:<{sender}>{}\r\n", dsn.mail);
    for r in recipients {
        let _ = write!(out, "RCPT TO:<{r}>{}\r\n", dsn.rcpt);
    }
    out.extend_from_slice(b"DATA\r\n");
    usize::from(rset) + recipients.len() + 2
}

/// The message as DATA carries it (RFC 5321 4.5.2): a dot that starts a line is doubled, and
/// the message ends with CRLF "." CRLF. A dot after a bare CR or LF is doubled too, so that no
/// server reading bare line ends can see an early end of data. memchr finds the few dots
/// instead of a test per byte (the message is the bulk of what is sent).
fn dot_stuff(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len() + raw.len() / 64 + 5);
    let mut from = 0;
    for at in memchr::memchr_iter(b'.', raw) {
        if at == 0 || matches!(raw[at - 1], b'\r' | b'\n') {
            out.extend_from_slice(&raw[from..at]);
            out.push(b'.');
            from = at;
        }
    }
    out.extend_from_slice(&raw[from..]);
    if !raw.is_empty() && !raw.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

fn auth_error(address: &str, r: &Response<String>) -> SyncError {
    if (400..500).contains(&r.code) {
        reply_error(address, r)
    } else {
        SyncError::AuthRejected {
            address: address.to_string(),
            reply: format!("{} {}", r.code, r.message.trim()),
        }
    }
}

async fn timed<T>(
    address: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = mail_send::Result<T>>,
) -> Result<T, SyncError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(mail_send::Error::Timeout)) | Err(_) => Err(SyncError::Net(NetError::Timeout {
            address: address.to_string(),
            step: "waiting for the SMTP server",
            seconds: limit.as_secs().max(1),
        })),
        Ok(Err(e)) => Err(io_error(address, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::{DsnParams, dot_stuff, envelope_commands, unsafe_envelope};

    #[test]
    fn a_pipelined_envelope_carries_the_dsn_request_on_mail_and_each_rcpt() {
        let dsn = DsnParams::new(true, Some("42")).unwrap_or_default();
        let mut out = Vec::new();
        let to = ["a@example.net".to_string(), "b@example.net".to_string()];
        assert_eq!(
            envelope_commands(&mut out, "s@example.com", &to, &dsn, true),
            5
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "RSET\r\nMAIL FROM:<s@example.com> RET=HDRS ENVID=42\r\n\
             RCPT TO:<a@example.net> NOTIFY=FAILURE,DELAY\r\n\
             RCPT TO:<b@example.net> NOTIFY=FAILURE,DELAY\r\nDATA\r\n"
        );
        out.clear();
        envelope_commands(
            &mut out,
            "s@example.com",
            &to[..1],
            &DsnParams::default(),
            false,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "MAIL FROM:<s@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n",
            "a server without DSN gets plain commands"
        );
    }

    #[test]
    fn an_envelope_with_a_line_end_is_refused_before_it_is_written() {
        let ok = vec!["b@example.com".to_string()];
        assert!(unsafe_envelope("a@example.com", &ok).is_ok());
        let e = unsafe_envelope("a@example.com\r\n", &ok).expect_err("sender");
        assert!(
            !e.transient && e.reply.starts_with("MAIL FROM holds"),
            "{}",
            e.reply
        );
        let bad = vec![
            "b@example.com".to_string(),
            "a@example.com\r\nRCPT TO:<c@example.com>".to_string(),
        ];
        let e = unsafe_envelope("a@example.com", &bad).expect_err("recipient");
        assert!(
            e.reply.starts_with("RCPT TO (recipient 2) holds"),
            "{}",
            e.reply
        );
        assert!(!e.reply.contains("example.com"), "{}", e.reply);
        let nul = vec!["b@exa\0mple.com".to_string()];
        assert!(unsafe_envelope("a@example.com", &nul).is_err());
    }

    fn stuffed(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        dot_stuff(raw, &mut out);
        out
    }

    #[test]
    fn a_dot_starting_a_line_is_doubled() {
        assert_eq!(
            stuffed(b"Subject: x\r\n\r\n.\r\na.b\r\n..two\r\n"),
            b"Subject: x\r\n\r\n..\r\na.b\r\n...two\r\n.\r\n"
        );
    }

    #[test]
    fn dots_after_bare_line_ends_and_at_the_start_are_doubled() {
        assert_eq!(stuffed(b".x\n.y\r.z\r\n"), b"..x\n..y\r..z\r\n.\r\n");
    }

    #[test]
    fn a_message_without_a_final_line_end_gets_one() {
        assert_eq!(stuffed(b"A: b\r\n\r\nend."), b"A: b\r\n\r\nend.\r\n.\r\n");
        assert_eq!(stuffed(b"A: b\r\n\r\nend\r\n"), b"A: b\r\n\r\nend\r\n.\r\n");
    }
}

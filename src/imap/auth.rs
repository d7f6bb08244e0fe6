//! Login: LOGIN or AUTHENTICATE PLAIN (with an authorization identity when the profile's
//! identity acts for the mailbox, as Dovecot master users and Exchange impersonation work).

use std::time::Duration;

use async_imap::{Authenticator, Client, Session};

use crate::config::AuthProtocol;
use crate::engine::error::SyncError;
use crate::net::{self, StepError};

use super::Login;

/// SASL PLAIN: "authzid NUL authcid NUL password" (RFC 4616).
struct Plain {
    response: zeroize::Zeroizing<Vec<u8>>,
}

/// A bearer-token mechanism: the initial response, then (after a failure challenge, which
/// carries the server's JSON status) the empty response that ends the exchange (RFC 7628 §3.2.3).
struct Bearer {
    response: zeroize::Zeroizing<Vec<u8>>,
    sent: bool,
    /// The server's failure status, when it sent one.
    status: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl Authenticator for Bearer {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        if self.sent {
            if let Ok(mut s) = self.status.lock() {
                *s = Some(challenge.to_vec());
            }
            // The server's error status: answer with the dummy response ^A.
            return vec![0x01];
        }
        self.sent = true;
        std::mem::take(&mut self.response)
    }
}

impl Authenticator for Plain {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        std::mem::take(&mut self.response)
    }
}

pub(super) async fn login(
    client: Client<super::ImapStream>,
    caps: &[String],
    protocol: AuthProtocol,
    login: &Login<'_>,
    server: (&str, u16),
    limit: Duration,
) -> Result<Session<super::ImapStream>, SyncError> {
    let address = &format!("{}:{}", server.0, server.1);
    if login.bearer {
        let mechanism = crate::net::sasl::bearer_mechanism(protocol, |m| {
            caps.iter().any(|c| *c == format!("AUTH={m}"))
        })
        .map_err(|detail| SyncError::AuthUnsupported {
            address: address.to_string(),
            detail,
        })?;
        let response = net::bearer_response(mechanism, login, server.0, server.1);
        let status = std::sync::Arc::new(std::sync::Mutex::new(None));
        let result = net::step(address, "logging in", limit, async {
            client
                .authenticate(
                    mechanism.name(),
                    Bearer {
                        response,
                        sent: false,
                        status: status.clone(),
                    },
                )
                .await
                .map_err(|(e, _)| e)
        })
        .await;
        let said = status.lock().ok().and_then(|mut s| s.take());
        return finish(result, address).map_err(|e| e.with_sasl_status(said.as_deref()));
    }
    if matches!(protocol, AuthProtocol::XOAuth2 | AuthProtocol::OAuthBearer) {
        return Err(SyncError::AuthUnsupported {
            address: address.to_string(),
            detail: "XOAUTH2 and OAUTHBEARER need an OAuth token source in the profile".into(),
        });
    }
    let has_plain = caps.iter().any(|c| c == "AUTH=PLAIN");
    let login_disabled = caps.iter().any(|c| c == "LOGINDISABLED");
    let use_plain = match protocol {
        AuthProtocol::Plain => true,
        AuthProtocol::Login => false,
        // An authorization identity needs SASL; otherwise prefer PLAIN when offered.
        AuthProtocol::Auto => has_plain || login.authzid.is_some() || login_disabled,
        AuthProtocol::XOAuth2 | AuthProtocol::OAuthBearer => false,
    };
    if use_plain && !has_plain && protocol == AuthProtocol::Auto {
        return Err(SyncError::AuthUnsupported {
            address: address.to_string(),
            detail: if login.authzid.is_some() {
                "acting for a mailbox with the profile's credentials needs AUTH=PLAIN".into()
            } else {
                "LOGIN is disabled and AUTH=PLAIN is not offered".into()
            },
        });
    }
    if !use_plain && login.authzid.is_some() {
        return Err(SyncError::AuthUnsupported {
            address: address.to_string(),
            detail: "LOGIN cannot act for another mailbox; use authentication protocol \"plain\""
                .into(),
        });
    }
    let result = if use_plain {
        let response = net::plain_response(login);
        net::step(address, "logging in", limit, async {
            client
                .authenticate("PLAIN", Plain { response })
                .await
                .map_err(|(e, _)| e)
        })
        .await
    } else {
        // LOGIN sends both as quoted strings, which cannot hold a line end.
        net::line::one_line("the IMAP login name", login.username)?;
        net::line::one_line("the IMAP password", login.password.expose())?;
        net::step(address, "logging in", limit, async {
            client
                .login(login.username, login.password.expose())
                .await
                .map_err(|(e, _)| e)
        })
        .await
    };
    finish(result, address)
}

/// A login's outcome as the sync sees it.
fn finish(
    result: Result<Session<super::ImapStream>, StepError<async_imap::error::Error>>,
    address: &str,
) -> Result<Session<super::ImapStream>, SyncError> {
    match result {
        Ok(session) => Ok(session),
        Err(StepError::TimedOut(e)) => Err(SyncError::Net(e)),
        Err(StepError::Failed(async_imap::error::Error::No(reply)))
        | Err(StepError::Failed(async_imap::error::Error::Bad(reply))) => {
            let reply = super::server_text(&reply);
            Err(match refusal(&reply) {
                Refusal::TryLater => SyncError::ServerBusy {
                    address: address.to_string(),
                    reply,
                },
                Refusal::Credentials => SyncError::AuthRejected {
                    address: address.to_string(),
                    reply,
                },
            })
        }
        Err(StepError::Failed(e)) => Err(super::lost(address, e)),
    }
}

/// What a NO (or BAD) to a login means.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The server cannot serve now (RFC 5530: UNAVAILABLE, INUSE, LIMIT, SERVERBUG): retry later.
    TryLater,
    /// The credentials (or the account) were refused: an admin has to act.
    Credentials,
}

/// Classifies a login refusal by its RFC 5530 response code. Only codes that say "not now" are
/// transient; a definite failure (AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, ...) and a
/// plain NO without a code, which is how most servers say "wrong password", are permanent.
fn refusal(reply: &str) -> Refusal {
    let code = reply
        .trim_start()
        .strip_prefix('[')
        .and_then(|rest| rest.split([']', ' ']).next())
        .unwrap_or("")
        .to_ascii_uppercase();
    match code.as_str() {
        "UNAVAILABLE" | "INUSE" | "LIMIT" | "SERVERBUG" => Refusal::TryLater,
        _ => Refusal::Credentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_not_now_codes_are_transient() {
        for reply in [
            "[UNAVAILABLE] Temporary authentication failure.",
            "[INUSE] Mailbox is locked",
            "[LIMIT] Too many connections",
            "[unavailable] lower case",
            "[SERVERBUG] Internal error",
        ] {
            assert_eq!(refusal(reply), Refusal::TryLater, "{reply}");
        }
        for reply in [
            "[AUTHENTICATIONFAILED] Authentication failed.",
            "[AUTHORIZATIONFAILED] Not allowed",
            "[EXPIRED] Password expired",
            "[PRIVACYREQUIRED] Use TLS",
            "Authentication failed.",
            "",
        ] {
            assert_eq!(refusal(reply), Refusal::Credentials, "{reply}");
        }
    }
}

//! The P11 alert email: built with mail-builder, sent through the profile's own outgoing server when
//! it has an identity of its own (credentials in the profile), else through `[appliance.alert_smtp]`.

use std::time::Duration;

use mail_builder::MessageBuilder;

use super::JobContext;
use super::error::SyncError;
use crate::config::{CredentialSource, Profile};
use crate::net::TlsContext;
use crate::smtp::{SmtpLogin, SmtpSession, SmtpTarget};

pub fn message(
    from: &str,
    to: &str,
    profile: &str,
    failing: usize,
    total: usize,
    details: &str,
) -> Result<Vec<u8>, SyncError> {
    MessageBuilder::new()
        .from(("sidesync", from))
        .to(to)
        .subject(format!(
            "sidesync: {failing} of {total} mailboxes of profile \"{profile}\" failed to synchronize in the last hour"
        ))
        .text_body(format!(
            "More than half of the mailboxes of the email server profile \"{profile}\" failed to \
             synchronize within the last hour ({failing} of {total}).\r\n\r\n{details}\r\n\
             This email is sent at most once an hour per profile (send_alert_email = true).\r\n"
        ))
        .write_to_vec()
        .map_err(|e| SyncError::Store(format!("building the alert email: {e}")))
}

/// The M8 email: one of the profile's mailboxes was disabled (at most one an hour per profile).
pub fn disabled_message(
    from: &str,
    to: &str,
    profile: &str,
    address: &str,
    direction: &str,
    reason: &str,
) -> Result<Vec<u8>, SyncError> {
    MessageBuilder::new()
        .from(("sidesync", from))
        .to(to)
        .subject(format!(
            "sidesync: mailbox {address} of profile \"{profile}\" has been disabled for {direction} email"
        ))
        .text_body(format!(
            "The mailbox {address} of the email server profile \"{profile}\" has been disabled for \
             {direction} email: {reason}.\r\n\r\nFix the cause, then run Test & Enable. Other \
             mailboxes of this profile disabled within the hour are on the alert wall, not \
             emailed (send_alert_email = true).\r\n"
        ))
        .write_to_vec()
        .map_err(|e| SyncError::Store(format!("building the alert email: {e}")))
}

/// The sender of alert emails: `[appliance.alert_smtp]`'s `from`, else the owner's own address.
pub fn sender<'a>(ctx: &'a JobContext, owner: &'a str) -> &'a str {
    ctx.config
        .appliance
        .alert_smtp
        .as_ref()
        .map_or(owner, |a| a.from.as_str())
}

/// Sends the alert email; returns the way it went out.
pub async fn send(
    ctx: &JobContext,
    profile: &Profile,
    to: &str,
    raw: &[u8],
) -> Result<String, SyncError> {
    if let Some(out) = &profile.outgoing
        && let CredentialSource::Profile { username, password } = &out.credentials
    {
        let limit = profile.timeout_mailbox_connection_after;
        let target = ctx.target(profile, out, None)?;
        let login = SmtpLogin {
            username,
            password,
            authzid: None,
            bearer: false,
        };
        let from = if username.contains('@') {
            username.as_str()
        } else {
            to
        };
        let mut s = SmtpSession::open(&target, Some(&login)).await?;
        let sent = s.send(from, &[to.to_string()], raw, limit).await;
        s.quit(limit).await;
        sent?;
        return Ok(format!(
            "the profile's outgoing server {}:{}",
            out.host, out.port
        ));
    }
    let Some(a) = &ctx.config.appliance.alert_smtp else {
        return Err(SyncError::Unsupported(format!(
            "profile \"{}\" cannot send alert emails (no outgoing credentials of its own) and \
             [appliance.alert_smtp] is not set",
            profile.name
        )));
    };
    let limit = Duration::from_secs(30);
    let tls = TlsContext::new(a.ca_file.as_deref()).map_err(SyncError::Unsupported)?;
    let target = SmtpTarget {
        host: &a.host,
        port: a.port,
        tls: a.tls,
        tls_context: &tls,
        alpn: crate::net::Alpn::None,
        auth: a.auth,
        timeout: limit,
        recorder: None,
    };
    let login = a.login.as_ref().map(|(u, p)| SmtpLogin {
        username: u,
        password: p,
        authzid: None,
        bearer: false,
    });
    let mut s = SmtpSession::open(&target, login.as_ref()).await?;
    let sent = s.send(&a.from, &[to.to_string()], raw, limit).await;
    s.quit(limit).await;
    sent?;
    Ok(format!("alert_smtp {}:{}", a.host, a.port))
}

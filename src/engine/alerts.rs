//! Recording alerts (M7): one place that stamps them and applies the retention.

use chrono::Utc;

use super::JobContext;
use super::owner_notice::{self, OwnerNotice};
use crate::config::{Mailbox, Profile};
use crate::store::{Alert, AlertEmail, AlertLevel, AlertScope, MailboxUpdate};

pub async fn raise(
    ctx: &JobContext,
    level: AlertLevel,
    scope: AlertScope,
    mailbox: Option<&str>,
    profile: Option<&str>,
    code: &str,
    message: String,
) {
    let alert = Alert {
        at: Utc::now(),
        level,
        scope,
        mailbox: mailbox.map(str::to_string),
        profile: profile.map(str::to_string),
        code: code.to_string(),
        message,
        email: None,
    };
    record(ctx, alert).await;
}

/// An Email-scope alert: one email of `mailbox` failed, and only that email is affected.
pub async fn raise_email(
    ctx: &JobContext,
    level: AlertLevel,
    mailbox: &str,
    profile: Option<&str>,
    email: AlertEmail,
    code: &str,
    message: String,
) {
    let alert = Alert {
        at: Utc::now(),
        level,
        scope: AlertScope::Email,
        mailbox: Some(mailbox.to_string()),
        profile: profile.map(str::to_string),
        code: code.to_string(),
        message,
        email: Some(email),
    };
    record(ctx, alert).await;
}

async fn record(ctx: &JobContext, alert: Alert) {
    let keep_after = alert.at
        - chrono::Duration::from_std(ctx.config.appliance.alert_retention).unwrap_or_default();
    let (mailbox, profile, code, message) = (
        alert.mailbox.as_deref(),
        alert.profile.as_deref(),
        alert.code.as_str(),
        alert.message.as_str(),
    );
    let scope = alert.scope.as_str();
    match alert.level {
        AlertLevel::Error => tracing::error!(mailbox, profile, scope, code, message, "alert"),
        AlertLevel::Warning => tracing::warn!(mailbox, profile, scope, code, message, "alert"),
        AlertLevel::Information => {
            tracing::info!(mailbox, profile, scope, code, message, "alert")
        }
    }
    let _ = ctx.writer.alert(alert, keep_after).await;
}

/// M8: turns one direction of a mailbox off until Test & Enable or a config change, and tells the
/// mailbox's and the profile's owners (the Dynamics wording). `more` is said after the reason.
/// The alert says the profile's owner "has been notified" only when the alert email went out: it
/// is recorded once the send has answered.
pub async fn disable(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    incoming: bool,
    code: &str,
    reason: &str,
    more: &str,
) {
    let address = mailbox.email_address.as_str();
    let update = MailboxUpdate::Disabled {
        incoming,
        code: code.to_string(),
        reason: reason.to_string(),
        at: Utc::now(),
        fingerprint: mailbox.fingerprint.clone(),
    };
    let _ = ctx.writer.mailbox(address, update).await;
    let direction = if incoming { "incoming" } else { "outgoing" };
    // A server's or an error's own sentence may end in a period: the texts add theirs.
    let reason = reason.trim_end().trim_end_matches('.');
    let notice = tell_owner(ctx, profile, address, direction, reason).await;
    let message = format!(
        "The mailbox {address} has been disabled for {direction} email: {reason}.{more} {} Fix the \
         cause, then run Test & Enable.",
        owner_notice::sentence(&profile.name, &notice)
    );
    raise(
        ctx,
        AlertLevel::Error,
        AlertScope::Mailbox,
        Some(address),
        Some(&profile.name),
        code,
        message,
    )
    .await;
}

/// One process-wide turn at a time between reading a profile's last disable email and claiming
/// the hour, so that mailboxes disabled together send one email.
static DISABLE_EMAIL_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Emails the profile's owner about the disabled mailbox when the profile sends alert emails.
async fn tell_owner(
    ctx: &JobContext,
    profile: &Profile,
    address: &str,
    direction: &str,
    reason: &str,
) -> OwnerNotice {
    let to = {
        let _turn = DISABLE_EMAIL_TURN.lock().await;
        let now = Utc::now();
        let state = match ctx.store.profile_states() {
            Ok(mut all) => all.remove(&profile.name).unwrap_or_default(),
            // Without the state the hour cannot be claimed: say so, unless nobody is to be
            // emailed anyway.
            Err(e) => {
                return match owner_notice::disable_email_to(profile, &Default::default(), now) {
                    Ok(to) => OwnerNotice::NotSent {
                        to,
                        why: format!("the profile's state could not be read: {e}"),
                    },
                    Err(notice) => notice,
                };
            }
        };
        match owner_notice::disable_email_to(profile, &state, now) {
            Ok(to) => {
                // Claimed before sending: a failed send is not retried within the hour either,
                // so the owner is never sent a burst.
                let _ = ctx.writer.disable_email_sent(&profile.name, now).await;
                let _ = ctx.writer.flush().await;
                to
            }
            Err(notice) => return notice,
        }
    };
    let from = super::alert_email::sender(ctx, &to);
    let sent = match super::alert_email::disabled_message(
        from,
        &to,
        &profile.name,
        address,
        direction,
        reason,
    ) {
        Ok(raw) => super::alert_email::send(ctx, profile, &to, &raw).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(_) => OwnerNotice::Emailed { to },
        Err(e) => OwnerNotice::NotSent {
            to,
            why: e.to_string(),
        },
    }
}

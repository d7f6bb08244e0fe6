//! Recording alerts (M7): one place that stamps them and applies the retention.

use chrono::Utc;

use super::JobContext;
use crate::config::{Mailbox, Profile};
use crate::store::{Alert, AlertLevel, AlertScope, MailboxUpdate};

pub async fn raise(
    ctx: &JobContext,
    level: AlertLevel,
    scope: AlertScope,
    mailbox: Option<&str>,
    profile: Option<&str>,
    code: &str,
    message: String,
) {
    let now = Utc::now();
    let keep_after =
        now - chrono::Duration::from_std(ctx.config.appliance.alert_retention).unwrap_or_default();
    match level {
        AlertLevel::Error => tracing::error!(mailbox, profile, code, %message, "alert"),
        AlertLevel::Warning => tracing::warn!(mailbox, profile, code, %message, "alert"),
        AlertLevel::Information => tracing::info!(mailbox, profile, code, %message, "alert"),
    }
    let alert = Alert {
        at: now,
        level,
        scope,
        mailbox: mailbox.map(str::to_string),
        profile: profile.map(str::to_string),
        code: code.to_string(),
        message,
    };
    let _ = ctx.writer.alert(alert, keep_after).await;
}

/// M8: turns one direction of a mailbox off until Test & Enable or a config change, and tells the
/// mailbox's and the profile's owners (the Dynamics wording). `more` is said after the reason.
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
    let message = format!(
        "The mailbox {address} has been disabled for {direction} email: {reason}.{more} The owner of the \
         email server profile \"{}\" has been notified. Fix the cause, then run Test & Enable.",
        profile.name
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

//! Recording alerts (M7): one place that stamps them and applies the retention.

use chrono::Utc;

use super::JobContext;
use crate::store::{Alert, AlertLevel, AlertScope};

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

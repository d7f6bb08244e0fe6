//! The OAuth expiry watch: a client secret or refresh token with a known end (from the config,
//! or what the token endpoint said of a rotated one) raises one warning alert when it comes
//! within `oauth_expiry_warning_days`, and one error alert once it has passed — mail silently
//! stopping when a token lapses is what helpdesk tools' users report most. Each alert is raised
//! once per credential and end date, also across restarts (the alert table is asked first).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::JobContext;
use crate::config::OAuthGrant;
use crate::lifecycle::expiry::{Expiry, expiry};
use crate::store::{AlertLevel, AlertScope};

const EVERY: Duration = Duration::from_secs(30);

/// One credential with a known end.
struct Ending {
    scope: AlertScope,
    mailbox: Option<String>,
    profile: String,
    what: String,
    expires: DateTime<Utc>,
    warning_days: u32,
}

fn endings(ctx: &JobContext) -> Vec<Ending> {
    let mut out = Vec::new();
    for p in &ctx.config.profiles {
        let Some(o) = &p.oauth else { continue };
        if let Some(expires) = o.client_secret_expires {
            out.push(Ending {
                scope: AlertScope::Profile,
                mailbox: None,
                profile: p.name.clone(),
                what: format!("the OAuth client secret of profile {}", p.name),
                expires,
                warning_days: o.expiry_warning_days,
            });
        }
        if o.grant != OAuthGrant::RefreshToken {
            continue;
        }
        for m in ctx
            .config
            .mailboxes
            .iter()
            .filter(|m| m.profile.as_deref() == Some(&p.name))
        {
            let known = super::credentials::rotated_expiry(ctx, m).or(m.refresh_token_expires);
            if let Some(expires) = known {
                out.push(Ending {
                    scope: AlertScope::Mailbox,
                    mailbox: Some(m.email_address.clone()),
                    profile: p.name.clone(),
                    what: format!("the OAuth refresh token of mailbox {}", m.email_address),
                    expires,
                    warning_days: o.expiry_warning_days,
                });
            }
        }
    }
    out
}

pub async fn run(current: super::Current) {
    let mut said: HashSet<String> = HashSet::new();
    loop {
        let ctx: Arc<JobContext> = current.get();
        if ctx.stopping() {
            return;
        }
        let now = Utc::now();
        let known: Vec<String> = ctx
            .store
            .alerts(usize::MAX)
            .map(|a| {
                a.into_iter()
                    .filter(|a| a.code.starts_with("oauth_credential_"))
                    .map(|a| a.message)
                    .collect()
            })
            .unwrap_or_default();
        for e in endings(&ctx) {
            let (level, code, message) = match expiry(e.expires, e.warning_days, now) {
                Expiry::Fine => continue,
                Expiry::Soon => (
                    AlertLevel::Warning,
                    "oauth_credential_expiring",
                    format!(
                        "{} expires on {}: renew it before then, or mail stops for its mailboxes.",
                        e.what,
                        e.expires.format("%Y-%m-%d %H:%M UTC")
                    ),
                ),
                Expiry::Past => (
                    AlertLevel::Error,
                    "oauth_credential_expired",
                    format!(
                        "{} expired on {}: its mailboxes cannot log in until it is renewed.",
                        e.what,
                        e.expires.format("%Y-%m-%d %H:%M UTC")
                    ),
                ),
            };
            if said.contains(&message) || known.contains(&message) {
                continue;
            }
            super::alerts::raise(
                &ctx,
                level,
                e.scope,
                e.mailbox.as_deref(),
                Some(&e.profile),
                code,
                message.clone(),
            )
            .await;
            said.insert(message);
        }
        tokio::time::sleep(EVERY).await;
    }
}

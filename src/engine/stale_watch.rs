//! The stale watch: every little while, each processed mailbox without a successful sync for
//! `stale_after_polls` polling intervals gets one warning alert (`mailbox_stale`), recorded in
//! its state so that a restart does not raise it again; its next successful sync clears it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::JobContext;
use crate::lifecycle::eligibility::{Decision, incoming_decision};
use crate::lifecycle::stale::stale_at;
use crate::lifecycle::transitions::MailboxUpdate;
use crate::store::{AlertLevel, AlertScope};

/// How often to look: at most every 30 s, and at least as often as the shortest polling interval.
fn every(ctx: &JobContext) -> Duration {
    let shortest = ctx
        .config
        .profiles
        .iter()
        .map(|p| p.min_polling_interval)
        .min()
        .unwrap_or(Duration::from_secs(30));
    shortest.clamp(Duration::from_secs(1), Duration::from_secs(30))
}

pub async fn run(current: super::Current, started_at: DateTime<Utc>) {
    loop {
        // A reload may change the settings: read them each round.
        let ctx: Arc<JobContext> = current.get();
        let polls = ctx.config.appliance.stale_after_polls;
        tokio::time::sleep(every(&ctx)).await;
        if polls == 0 {
            if ctx.stopping() {
                return;
            }
            continue;
        }
        if ctx.stopping() {
            return;
        }
        let Ok(states) = ctx.store.mailbox_states() else {
            continue;
        };
        let now = Utc::now();
        for m in ctx.config.mailboxes.iter() {
            if m.incoming_delivery == crate::config::IncomingDelivery::None {
                continue;
            }
            let state = states.get(&m.email_address).cloned().unwrap_or_default();
            if state.stale_alerted_at.is_some() {
                continue;
            }
            let Decision::Sync(profile) = incoming_decision(&ctx.config, m, &state, &m.fingerprint)
            else {
                continue;
            };
            let Some(since) = stale_at(
                state.last_successful_sync_completed_on,
                started_at,
                profile.min_polling_interval,
                polls,
            )
            .filter(|at| now >= *at) else {
                continue;
            };
            let last = state.last_successful_sync_completed_on.map_or_else(
                || "never since the appliance started".to_string(),
                |t| format!("last at {}", t.to_rfc3339()),
            );
            super::alerts::raise(
                &ctx,
                AlertLevel::Warning,
                AlertScope::Mailbox,
                Some(&m.email_address),
                m.profile.as_deref(),
                "mailbox_stale",
                format!(
                    "The mailbox {} has not synced successfully for {polls} polling intervals \
                     (stale since {}; {last}). Check its latest error and its server.",
                    m.email_address,
                    since.to_rfc3339()
                ),
            )
            .await;
            let _ = ctx
                .writer
                .mailbox(&m.email_address, MailboxUpdate::StaleAlerted { at: now })
                .await;
        }
    }
}

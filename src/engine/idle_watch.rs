//! IMAP IDLE (RFC 2177) for the profiles with `idle = true`: one watcher per processed mailbox
//! holds a connection in IDLE on its INBOX and, when the server tells of a change, wakes the
//! mailbox's sync at once through the scheduler (the sync fetches and commits as any poll does).
//! IDLE is re-issued before the server's 29-minute limit. A watcher whose connection fails or
//! drops waits (with jitter, doubling up to ten minutes) and tries again; polling goes on beside
//! it at `min_polling_interval` all along, so a broken IDLE costs only latency, never email.
//! A supervisor pass every few seconds starts watchers for mailboxes that became processed (a
//! reload, a Test & Enable) and stops those of mailboxes no longer processed.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Command, Current, JobContext};
use crate::lifecycle::eligibility::{Decision, incoming_decision};

/// IDLE is ended and issued again this often (servers drop an IDLE after 30 minutes).
pub const IDLE_RENEW: Duration = Duration::from_secs(28 * 60);
/// How often the supervisor looks at which mailboxes should be watched.
const SUPERVISE_EVERY: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(600);

/// Runs until `current`'s stop signal.
pub async fn run(current: Current, commands: mpsc::Sender<Command>) {
    let mut watchers: HashMap<String, (String, JoinHandle<()>)> = HashMap::new();
    let mut stop = current.get().stop.clone();
    loop {
        let ctx = current.get();
        let wanted = watched(&ctx);
        // Stop watchers no longer wanted, or whose settings changed (a reload).
        watchers.retain(|address, (fingerprint, task)| {
            let keep = wanted.get(address) == Some(fingerprint) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (address, fingerprint) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = watchers.entry(address) {
                let task = tokio::spawn(watch(ctx.clone(), slot.key().clone(), commands.clone()));
                slot.insert((fingerprint, task));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    for (_, (_, task)) in watchers {
        task.abort();
    }
}

/// The mailboxes to watch now (with their config fingerprint): processed for incoming email, of
/// an IMAP profile with `idle = true`.
fn watched(ctx: &JobContext) -> HashMap<String, String> {
    let states = ctx.store.mailbox_states().unwrap_or_default();
    ctx.config
        .mailboxes
        .iter()
        .filter(|m| {
            ctx.config
                .mailbox_profile(m)
                .is_some_and(|p| p.idle && p.server_type == crate::config::ServerType::ImapSmtp)
        })
        .filter(|m| {
            let state = states.get(&m.email_address).cloned().unwrap_or_default();
            matches!(
                incoming_decision(&ctx.config, m, &state, &m.fingerprint),
                Decision::Sync(_)
            )
        })
        .map(|m| (m.email_address.clone(), m.fingerprint.clone()))
        .collect()
}

/// One mailbox's watcher: IDLE, wake, again; after a failure, wait and start over.
async fn watch(ctx: std::sync::Arc<JobContext>, address: String, commands: mpsc::Sender<Command>) {
    let mut wait = FIRST_RETRY;
    loop {
        match idle_session(&ctx, &address, &commands).await {
            Ok(Offered::No) => {
                tracing::info!(mailbox = %address, "the server does not offer IDLE; polling only");
                return;
            }
            Ok(Offered::Yes) => wait = FIRST_RETRY,
            Err(e) => {
                tracing::debug!(mailbox = %address, error = %e, "IDLE connection ended; polling goes on");
            }
        }
        let jitter = wait.mul_f64(f64::from(Utc::now().timestamp_subsec_millis() % 250) / 1000.0);
        tokio::time::sleep(wait + jitter).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
}

enum Offered {
    Yes,
    No,
}

/// One IDLE connection, for as long as it lasts.
async fn idle_session(
    ctx: &JobContext,
    address: &str,
    commands: &mpsc::Sender<Command>,
) -> Result<Offered, crate::engine::error::SyncError> {
    let Some(mailbox) = ctx.config.mailbox(address) else {
        return Ok(Offered::No);
    };
    let Some(profile) = ctx.config.mailbox_profile(mailbox) else {
        return Ok(Offered::No);
    };
    let mut session = super::incoming::open_imap(ctx, profile, mailbox, None).await?;
    if !session.offers("IDLE").await? {
        session.logout().await;
        return Ok(Offered::No);
    }
    session.examine("INBOX").await?;
    tracing::info!(mailbox = %address, "IDLE on INBOX");
    // Anything that arrived before IDLE began is the first sync's or a poll's; from here on
    // every change wakes the sync.
    loop {
        let (next, changed) = session.idle(IDLE_RENEW).await?;
        session = next;
        if changed {
            tracing::debug!(mailbox = %address, "IDLE: the server told of a change");
            if commands
                .send(Command::Wake(address.to_string()))
                .await
                .is_err()
            {
                // The scheduler is gone: the appliance is stopping.
                session.logout().await;
                return Ok(Offered::Yes);
            }
        }
    }
}

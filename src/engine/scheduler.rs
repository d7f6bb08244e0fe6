//! The scheduler: one task with a queue of (due time, mailbox). It starts a job when a mailbox is
//! due and a sync slot is free, and puts the mailbox back in the queue when the job ends: at the
//! polling interval after success, at the retry interval after a failure. No task per mailbox
//! sleeps, so ten thousand mailboxes cost ten thousand queue entries, not ten thousand tasks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::JobContext;
use super::eligibility::incoming_profile;
use super::error::SyncError;
use super::incoming::{SyncSummary, sync_mailbox};
use crate::store::MailboxUpdate;

/// The scheduler wakes at least this often, so the heartbeat stays fresh.
const TICK: Duration = Duration::from_secs(5);
/// Jobs get this long to finish their batch after a stop is requested.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Poll forever (until stopped).
    Forever,
    /// Sync every processed mailbox once, then return.
    Once,
}

#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub syncs: u64,
    pub failures: u64,
    pub created: u64,
}

pub async fn run(ctx: Arc<JobContext>, mode: RunMode) -> RunReport {
    let mut report = RunReport::default();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let now = Instant::now();
    for (i, m) in ctx.config.mailboxes.iter().enumerate() {
        match incoming_profile(&ctx.config, m) {
            Ok(_) => due.push(Reverse((now, i))),
            Err(reason) => {
                tracing::info!(mailbox = %m.email_address, %reason, "mailbox is not processed")
            }
        }
    }
    let mut jobs: JoinSet<(usize, Result<SyncSummary, SyncError>)> = JoinSet::new();
    let mut stop = ctx.stop.clone();
    loop {
        ctx.beat();
        let now = Instant::now();
        while jobs.len() < ctx.config.appliance.max_concurrent_syncs
            && due.peek().is_some_and(|Reverse((t, _))| *t <= now)
        {
            let Some(Reverse((_, i))) = due.pop() else {
                break;
            };
            let ctx = ctx.clone();
            jobs.spawn(async move { (i, job(&ctx, i).await) });
        }
        if mode == RunMode::Once && due.is_empty() && jobs.is_empty() {
            break;
        }
        let wake = due
            .peek()
            .map(|Reverse((t, _))| *t)
            .unwrap_or(now + TICK)
            .min(now + TICK);
        tokio::select! {
            _ = stop.changed() => break,
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                let Ok((i, result)) = done else { continue };
                report.syncs += 1;
                let next = match &result {
                    Ok(s) => {
                        report.created += s.created;
                        ctx.config.mailbox_profile(&ctx.config.mailboxes[i])
                            .map(|p| p.min_polling_interval)
                            .unwrap_or(ctx.config.appliance.retry_interval)
                    }
                    Err(_) => {
                        report.failures += 1;
                        ctx.config.appliance.retry_interval
                    }
                };
                if mode == RunMode::Forever {
                    due.push(Reverse((Instant::now() + next, i)));
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    // Jobs see the stop flag between batches; a batch is committed whole or not at all either way.
    let deadline = Instant::now() + STOP_GRACE;
    while !jobs.is_empty() {
        match tokio::time::timeout_at(deadline, jobs.join_next()).await {
            Ok(Some(Ok((_, Ok(s))))) => report.created += s.created,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    jobs = jobs.len(),
                    "stopping jobs that did not finish in time"
                );
                jobs.abort_all();
                while jobs.join_next().await.is_some() {}
                break;
            }
        }
    }
    report
}

/// One sync of one mailbox, with its outcome recorded in the store and the log.
async fn job(ctx: &JobContext, i: usize) -> Result<SyncSummary, SyncError> {
    let mailbox = &ctx.config.mailboxes[i];
    let profile = match incoming_profile(&ctx.config, mailbox) {
        Ok(p) => p,
        Err(reason) => return Err(SyncError::Unsupported(reason.to_string())),
    };
    let started = std::time::Instant::now();
    let _ = ctx
        .writer
        .mailbox(
            &mailbox.email_address,
            MailboxUpdate::SyncStarted { at: Utc::now() },
        )
        .await;
    let result = sync_mailbox(ctx, profile, mailbox).await;
    let at = Utc::now();
    let duration_ms = started.elapsed().as_millis() as u64;
    let update = match &result {
        Ok(s) => {
            tracing::info!(
                mailbox = %mailbox.email_address,
                created = s.created,
                linked = s.linked,
                duration_ms,
                interrupted = s.interrupted,
                "mailbox synced"
            );
            MailboxUpdate::SyncSucceeded { at, duration_ms }
        }
        Err(e) => {
            tracing::warn!(
                mailbox = %mailbox.email_address,
                profile = %profile.name,
                code = e.code(),
                transient = e.is_transient(),
                error = %e,
                "mailbox sync failed"
            );
            MailboxUpdate::SyncFailed {
                at,
                text: e.to_string(),
                code: e.code().to_string(),
                transient: e.is_transient(),
            }
        }
    };
    let _ = ctx.writer.mailbox(&mailbox.email_address, update).await;
    result
}

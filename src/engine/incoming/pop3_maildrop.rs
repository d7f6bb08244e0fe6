//! POP3 incoming: list the maildrop (UIDL + LIST), retrieve only UIDLs the sync id map does not
//! know, commit each batch with its map entries, and — only when the profile says so — delete
//! messages stored long enough, after their commit, with DELE and QUIT.

use std::time::Instant;

use chrono::Utc;

use super::pipeline::{Fetched, Pipeline, alert_too_large, too_large};
use super::{ProcessFrom, Progress, SyncSummary};
use crate::config::{Mailbox, Profile};
use crate::engine::JobContext;
use crate::engine::error::SyncError;
use crate::pop3::Pop3Session;
use crate::store::{IngestSource, POP3_FOLDER, SyncKey, TrackingPlace, skip_reason};
use crate::tracking::decision::SkipReason;
use crate::tracking::maildrop::{batches, deletable, plan_maildrop};

/// What a POP3 sync leaves to do once the session ends: deleted messages are gone only if QUIT
/// succeeds.
pub(super) struct MaildropOutcome {
    pub summary: SyncSummary,
    pub deleted: usize,
}

pub(super) async fn sync_maildrop(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut Pop3Session,
    progress: &Progress,
    from: ProcessFrom,
) -> Result<MaildropOutcome, SyncError> {
    let address = mailbox.email_address.as_str();
    let store_error = |e: crate::store::StoreError| SyncError::Store(e.to_string());
    let listed = session.list_messages().await?;
    let mut known = ctx.store.pop3_sync_id_map(address).map_err(store_error)?;
    if from.backfill {
        // The date moved earlier: what it passed over is retrieved and judged again.
        let passed: Vec<String> = known
            .iter()
            .filter(|(_, (v, _))| skip_reason(*v) == Some(SkipReason::BeforeProcessDate))
            .map(|(u, _)| u.clone())
            .collect();
        if !passed.is_empty() {
            tracing::info!(
                mailbox = address,
                emails = passed.len(),
                "process date moved earlier; retrieving what it passed over"
            );
            for u in &passed {
                known.remove(u);
            }
            ctx.writer
                .pop3_forget(address, passed)
                .await
                .map_err(store_error)?;
        }
    }
    let plan = plan_maildrop(&listed, &known);
    if !plan.forget.is_empty() {
        ctx.writer
            .pop3_forget(address, plan.forget)
            .await
            .map_err(store_error)?;
    }
    let dated_after = from.from;
    // Larger than the profile allows: not retrieved, recorded (never deleted: not stored).
    let (retrieve, too_big): (Vec<_>, Vec<_>) = plan
        .retrieve
        .into_iter()
        .partition(|m| m.size <= profile.max_message_size);
    ctx.metrics.sync_planned(address, retrieve.len() as u64);
    let failed: Vec<_> = too_big
        .into_iter()
        .map(|m| too_large(profile, POP3_FOLDER, None, None, Some(m.uidl), m.size))
        .collect();
    for f in &failed {
        alert_too_large(ctx, profile, address, f).await;
    }
    // A maildrop is the inbox: the mailbox's filter decides, at commit (POP3 retrieves whole
    // messages; TOP is not used for a header pre-screen).
    let place = TrackingPlace {
        track: mailbox.track,
        skip_automatic: mailbox.skip_automatic,
        tracking_folder: None,
        sent: false,
        forward: mailbox.forward_mailbox,
    };
    let mut pipeline = Pipeline::new(ctx, &profile.name, address, progress, place);
    let mut interrupted = false;
    if !failed.is_empty() {
        pipeline
            .push(
                Vec::new(),
                IngestSource::Maildrop {
                    skipped: Vec::new(),
                },
                None,
                failed,
                None,
            )
            .await?;
    }
    let chunks = batches(
        retrieve,
        ctx.config.appliance.fetch_batch_size as usize,
        ctx.config.appliance.fetch_batch_bytes as u64,
    );
    for chunk in chunks {
        if ctx.stopping() {
            interrupted = true;
            break;
        }
        let started = Instant::now();
        let budget = ctx.fetch_budget(chunk.iter().map(|m| m.size).sum()).await;
        let bodies = session.retrieve(&chunk).await?;
        tracing::debug!(
            mailbox = address,
            messages = bodies.len(),
            fetch_ms = started.elapsed().as_millis() as u64,
            "batch retrieved"
        );
        let fetched = chunk
            .into_iter()
            .zip(bodies)
            .map(|(m, raw)| Fetched {
                key: SyncKey::Uidl(m.uidl),
                raw,
                received: None,
                header_only: None,
                flags: None,
            })
            .collect();
        pipeline
            .push(
                fetched,
                IngestSource::Maildrop {
                    skipped: Vec::new(),
                },
                dated_after,
                Vec::new(),
                budget,
            )
            .await?;
    }
    let mut summary = pipeline.finish().await?;
    summary.interrupted = interrupted;
    let mut deleted = 0;
    // A forward mailbox that processes and deletes drops a forward once what it carried is stored.
    let delete_after = if mailbox.process_and_delete_emails {
        Some(0)
    } else {
        profile.pop3_delete_after_days
    };
    if let (Some(days), false) = (delete_after, interrupted) {
        // Read back from the store: only what is committed may leave the server.
        let committed = ctx.store.pop3_sync_id_map(address).map_err(store_error)?;
        let doomed = deletable(&listed, &committed, days, Utc::now().timestamp());
        session.delete(&doomed).await?;
        deleted = doomed.len();
    }
    Ok(MaildropOutcome { summary, deleted })
}

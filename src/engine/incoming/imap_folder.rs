//! IMAP incoming: for each tracked folder, fetch what the plan says, batch by batch, each batch
//! committed with its folder cursor.

use std::collections::HashMap;
use std::time::Instant;

use super::pipeline::{Fetched, Pipeline, alert_too_large, too_large};
use super::{Progress, SyncSummary};
use crate::config::{Mailbox, Profile};
use crate::engine::error::SyncError;
use crate::engine::{JobContext, alerts};
use crate::imap::ImapSession;
use crate::store::{AlertLevel, AlertScope, IngestSource, SyncKey};
use crate::tracking::plan::{FolderPlan, chunk_listing, plan_folder};

pub(super) async fn sync_folders(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    progress: &Progress,
) -> Result<SyncSummary, SyncError> {
    let mut summary = SyncSummary::default();
    // I1: INBOX, then the mailbox's tracking folders.
    let folders =
        std::iter::once("INBOX").chain(mailbox.tracking_folders.iter().map(String::as_str));
    for folder in folders {
        summary.add(sync_folder(ctx, profile, mailbox, session, folder, progress).await?);
        if summary.interrupted {
            break;
        }
    }
    Ok(summary)
}

async fn sync_folder(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    folder: &str,
    progress: &Progress,
) -> Result<SyncSummary, SyncError> {
    let address = mailbox.email_address.as_str();
    let status = session.examine(folder).await?;
    let stored = ctx
        .store
        .folder_cursor(address, folder)
        .map_err(|e| SyncError::Store(e.to_string()))?;
    let (mut cursor, after_uid) = match plan_folder(stored.as_ref(), &status) {
        FolderPlan::UpToDate => return Ok(SyncSummary::default()),
        FolderPlan::NoUidValidity => {
            return Err(SyncError::NoUidValidity {
                folder: folder.to_string(),
            });
        }
        FolderPlan::Fetch { cursor, after_uid } => (cursor, after_uid),
        FolderPlan::Rescan { cursor, previous } => {
            tracing::warn!(
                mailbox = address,
                folder,
                previous,
                uidvalidity = cursor.uidvalidity,
                changes = cursor.uidvalidity_changes,
                "UIDVALIDITY changed; rescanning the folder (known emails are linked, not duplicated)"
            );
            if cursor.uidvalidity_changes >= ctx.config.appliance.uidvalidity_alert_after_changes {
                alerts::raise(
                    ctx,
                    AlertLevel::Warning,
                    AlertScope::Mailbox,
                    Some(address),
                    Some(&profile.name),
                    "uidvalidity_changed",
                    format!(
                        "The server changed the UIDVALIDITY of folder \"{folder}\" {} times (now {}); \
                         each change forces a full rescan. Check the server's mail storage.",
                        cursor.uidvalidity_changes, cursor.uidvalidity
                    ),
                )
                .await;
            }
            (cursor, 0)
        }
    };
    let listed = session.list_after(after_uid).await?;
    let received: HashMap<u32, i64> = listed
        .iter()
        .filter_map(|m| Some((m.uid, m.received?)))
        .collect();
    let sizes: HashMap<u32, u32> = listed.iter().map(|m| (m.uid, m.size)).collect();
    let chunks = chunk_listing(
        &listed,
        after_uid,
        profile.process_emails_received_after.map(|d| d.timestamp()),
        ctx.config.appliance.fetch_batch_size as usize,
        ctx.config.appliance.fetch_batch_bytes,
        profile.max_message_size,
    );
    let source = |cursor: &crate::tracking::plan::FolderCursor| IngestSource::Folder {
        folder: folder.to_string(),
        cursor: cursor.clone(),
    };
    let mut pipeline = Pipeline::new(ctx, &profile.name, address, progress);
    let mut interrupted = false;
    let last = chunks.len().saturating_sub(1);
    if chunks.is_empty() {
        // Nothing listed: record that every UID below UIDNEXT is handled, so the next poll skips.
        if status.uidnext != cursor.synced_uidnext || stored.as_ref() != Some(&cursor) {
            cursor.synced_uidnext = status.uidnext;
            cursor.highest_modseq = status.highest_modseq;
            pipeline.push_cursor(source(&cursor)).await?;
        }
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        if ctx.stopping() {
            interrupted = true;
            break;
        }
        let started = Instant::now();
        let (largest, bytes) = chunk
            .fetch
            .iter()
            .filter_map(|uid| sizes.get(uid))
            .fold((0u32, 0u64), |(l, b), s| (l.max(*s), b + u64::from(*s)));
        let budget = ctx.fetch_budget(bytes).await;
        let bodies = session
            .fetch_bodies(&chunk.fetch, literal_allowance(largest))
            .await?;
        tracing::debug!(
            mailbox = address,
            folder,
            messages = bodies.len(),
            fetch_ms = started.elapsed().as_millis() as u64,
            "batch fetched"
        );
        cursor.last_uid = chunk.last_uid;
        if i == last {
            cursor.synced_uidnext = status.uidnext;
            cursor.highest_modseq = status.highest_modseq;
        }
        let fetched = bodies
            .into_iter()
            .map(|b| Fetched {
                received: received.get(&b.uid).copied(),
                key: SyncKey::Uid(b.uid),
                raw: b.raw,
            })
            .collect();
        let failed = chunk
            .too_large
            .iter()
            .map(|(uid, size)| {
                too_large(
                    profile,
                    folder,
                    Some(cursor.uidvalidity),
                    Some(*uid),
                    None,
                    u64::from(*size),
                )
            })
            .collect::<Vec<_>>();
        for f in &failed {
            alert_too_large(ctx, profile, address, f).await;
        }
        // The next FETCH goes out while this batch is prepared and committed.
        pipeline
            .push(fetched, source(&cursor), None, failed, budget)
            .await?;
    }
    let mut summary = pipeline.finish().await?;
    summary.interrupted = interrupted;
    Ok(summary)
}

/// The largest body literal accepted for a batch whose largest listed size is `listed`: servers
/// may count line ends differently in RFC822.SIZE, so twice the size plus a little, never more.
fn literal_allowance(listed: u32) -> u64 {
    u64::from(listed).saturating_mul(2) + 64 * 1024
}

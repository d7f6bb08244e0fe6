//! IMAP incoming: for each tracked folder, fetch what the plan says, batch by batch, each batch
//! committed with its folder cursor.

use std::collections::HashMap;
use std::time::Instant;

use super::pipeline::{Fetched, HeaderOnly, Pipeline, alert_too_large, too_large};
use super::server_changes::FolderSeen;
use super::{ProcessFrom, Progress, SyncSummary};
use crate::config::{Mailbox, Profile};
use crate::engine::error::SyncError;
use crate::engine::{JobContext, alerts};
use crate::imap::ImapSession;
use crate::store::{AlertLevel, AlertScope, IngestSource, SyncKey, TrackingPlace, is_activity};
use crate::tracking::decision::{Decision, Place, Track};
use crate::tracking::message::{EmailHeaders, parse_headers};
use crate::tracking::plan::{FolderPlan, chunk_listing, plan_folder};

pub(super) async fn sync_folders(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    progress: &Progress,
    from: ProcessFrom,
) -> Result<SyncSummary, SyncError> {
    let mut summary = SyncSummary::default();
    // I1: INBOX, then the mailbox's tracking folders, then its Sent folder (`track_sent`).
    let mut folders: Vec<(String, bool)> = std::iter::once("INBOX")
        .chain(mailbox.tracking_folders.iter().map(|f| f.folder.as_str()))
        .map(|f| (f.to_string(), false))
        .collect();
    if let Some(sent) = sent_folder(mailbox, session).await?
        && !folders.iter().any(|(f, _)| *f == sent)
    {
        // A Sent folder that is also a tracking folder keeps the tracking folder's rules.
        folders.push((sent, true));
    }
    let mut seen = Vec::with_capacity(folders.len());
    for (folder, sent) in &folders {
        let (one, folder_seen) = sync_folder(
            ctx, profile, mailbox, session, folder, *sent, progress, from,
        )
        .await?;
        summary.add(one);
        seen.push(folder_seen);
        if summary.interrupted {
            break;
        }
    }
    if !summary.interrupted {
        // Once every folder is ingested: a move between two of them reads as a move.
        super::server_changes::follow_folders(ctx, profile, mailbox, session, &seen, &mut summary)
            .await?;
    }
    if !summary.interrupted {
        // After the commits that recorded them as failed: only then may they leave the folder.
        let sent = folders
            .iter()
            .find(|(_, sent)| *sent)
            .map(|(f, _)| f.as_str());
        super::undeliverable::move_failed(ctx, profile, mailbox, session, sent).await?;
    }
    Ok(summary)
}

/// The mailbox's Sent folder when it tracks what it sends (see `tracking::sent_folder`). Listed
/// at every sync: a folder created or renamed since is found. Its sync id map entries are keyed
/// by this name like any folder's, so exactly-once holds as for INBOX.
async fn sent_folder(
    mailbox: &Mailbox,
    session: &mut ImapSession,
) -> Result<Option<String>, SyncError> {
    if !mailbox.track_sent {
        return Ok(None);
    }
    let listed = match &mailbox.sent_folder {
        Some(_) => Vec::new(),
        None => session.list_folders().await?,
    };
    let found = crate::tracking::sent_folder::sent_folder(mailbox.sent_folder.as_deref(), &listed);
    if found.is_none() {
        tracing::debug!(
            mailbox = %mailbox.email_address,
            "track_sent: the server lists no Sent folder yet"
        );
    }
    Ok(found)
}

#[allow(clippy::too_many_arguments)]
async fn sync_folder(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    folder: &str,
    sent: bool,
    progress: &Progress,
    from: ProcessFrom,
) -> Result<(SyncSummary, FolderSeen), SyncError> {
    let address = mailbox.email_address.as_str();
    let status = session.examine(folder).await?;
    let stored = ctx
        .store
        .folder_cursor(address, folder)
        .map_err(|e| SyncError::Store(e.to_string()))?;
    let seen = FolderSeen {
        folder: folder.to_string(),
        status,
        stored: stored.clone(),
    };
    let mut plan = plan_folder(stored.as_ref(), &status);
    // P6 backfill: the date moved earlier, so UIDs the cursor passed may hold emails to take.
    let backfill_floor = match (&plan, &stored) {
        (FolderPlan::UpToDate | FolderPlan::Fetch { .. }, Some(old))
            if from.backfill
                && old.uidvalidity == status.uidvalidity.unwrap_or(0)
                && old.last_uid > 0 =>
        {
            Some(old.last_uid)
        }
        _ => None,
    };
    if let (FolderPlan::UpToDate, Some(old)) = (&plan, &stored)
        && backfill_floor.is_some()
    {
        plan = FolderPlan::Fetch {
            cursor: old.clone(),
            after_uid: old.last_uid,
        };
    }
    let (mut cursor, after_uid) = match plan {
        FolderPlan::UpToDate => return Ok((SyncSummary::default(), seen)),
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
    let (listed, list_from) = match backfill_floor {
        Some(floor) => {
            let mapped: std::collections::HashSet<u32> = ctx
                .store
                .sync_id_map(address)
                .map_err(|e| SyncError::Store(e.to_string()))?
                .into_iter()
                .filter(|((f, v, _), _)| f == folder && *v == cursor.uidvalidity)
                .map(|((_, _, uid), _)| uid)
                .collect();
            let all = session.list_after(0).await?;
            let passed = all
                .iter()
                .filter(|m| m.uid <= floor && !mapped.contains(&m.uid))
                .count();
            tracing::info!(
                mailbox = address,
                folder,
                passed,
                "process date moved earlier; looking again at what it passed over"
            );
            let listed = all
                .into_iter()
                .filter(|m| m.uid > floor || !mapped.contains(&m.uid))
                .collect();
            (listed, 0)
        }
        None => (session.list_after(after_uid).await?, after_uid),
    };
    ctx.metrics.sync_planned(address, listed.len() as u64);
    let floor = backfill_floor.unwrap_or(0);
    let received: HashMap<u32, i64> = listed
        .iter()
        .filter_map(|m| Some((m.uid, m.received?)))
        .collect();
    let sizes: HashMap<u32, u32> = listed.iter().map(|m| (m.uid, m.size)).collect();
    let chunks = chunk_listing(
        &listed,
        list_from,
        from.from,
        ctx.config.appliance.fetch_batch_size as usize,
        ctx.config.appliance.fetch_batch_bytes,
        profile.max_message_size,
    );
    let source = |cursor: &crate::tracking::plan::FolderCursor| IngestSource::Folder {
        folder: folder.to_string(),
        cursor: cursor.clone(),
    };
    // A tracking folder's emails are always tracked, with its regarding record.
    let tracking_folder = (folder != "INBOX" && !sent).then(|| {
        mailbox
            .tracking_folders
            .iter()
            .find(|f| f.folder == folder)
            .and_then(|f| f.regarding.clone())
    });
    let place = TrackingPlace {
        track: mailbox.track,
        skip_automatic: mailbox.skip_automatic,
        tracking_folder,
        forward: mailbox.forward_mailbox,
        sent,
    };
    // Headers first where the decision may skip (an inbox whose filter is not "all", or that
    // skips automatic kinds): a skipped email's body is never fetched. A forward's header says
    // nothing of what it carries.
    let prescreen = place.tracking_folder.is_none()
        && (place.track != Track::All || !place.skip_automatic.is_empty())
        && !place.forward;
    let mut pipeline = Pipeline::new(ctx, &profile.name, address, progress, place.clone());
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
    let mut processed: std::collections::HashSet<u32> = std::collections::HashSet::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if ctx.stopping() {
            interrupted = true;
            break;
        }
        let started = Instant::now();
        processed.extend(chunk.fetch.iter().copied());
        let (header_only, body_uids) = if prescreen {
            prescreened(ctx, session, mailbox, &place, &chunk.fetch, &sizes).await?
        } else {
            (Vec::new(), chunk.fetch.clone())
        };
        let (largest, bytes) = body_uids
            .iter()
            .filter_map(|uid| sizes.get(uid))
            .fold((0u32, 0u64), |(l, b), s| (l.max(*s), b + u64::from(*s)));
        let budget = ctx.fetch_budget(bytes).await;
        let bodies = session
            .fetch_bodies(&body_uids, literal_allowance(largest))
            .await?;
        ctx.metrics.fetched_bytes(
            &profile.name,
            bodies.iter().map(|b| b.raw.len() as u64).sum(),
        );
        tracing::debug!(
            mailbox = address,
            folder,
            messages = bodies.len(),
            fetch_ms = started.elapsed().as_millis() as u64,
            "batch fetched"
        );
        // A backfill never moves the cursor back below what it had passed.
        cursor.last_uid = chunk.last_uid.max(floor);
        if i == last {
            cursor.synced_uidnext = status.uidnext;
            cursor.highest_modseq = status.highest_modseq;
        }
        let mut fetched: Vec<Fetched> = bodies
            .into_iter()
            .map(|b| Fetched {
                received: received.get(&b.uid).copied(),
                key: SyncKey::Uid(b.uid),
                raw: b.raw,
                header_only: None,
                flags: Some(b.flags),
            })
            .chain(header_only)
            .collect();
        fetched.sort_by_key(|f| match f.key {
            SyncKey::Uid(uid) => uid,
            SyncKey::Uidl(_) => 0,
        });
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
    if mailbox.process_and_delete_emails && folder == "INBOX" {
        delete_processed(ctx, mailbox, session, cursor.uidvalidity, &processed).await?;
    }
    Ok((summary, seen))
}

/// A forward mailbox's `process_and_delete_emails`: the forwards of this sync whose every
/// carried email is committed as an activity leave the server (read back from the store).
async fn delete_processed(
    ctx: &JobContext,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    uidvalidity: u32,
    processed: &std::collections::HashSet<u32>,
) -> Result<(), SyncError> {
    let address = mailbox.email_address.as_str();
    let map = ctx
        .store
        .sync_id_map(address)
        .map_err(|e| SyncError::Store(e.to_string()))?;
    let doomed: Vec<u32> = map
        .into_iter()
        .filter(|((f, v, uid), value)| {
            f == "INBOX" && *v == uidvalidity && is_activity(*value) && processed.contains(uid)
        })
        .map(|((_, _, uid), _)| uid)
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    if session
        .delete_messages("INBOX", uidvalidity, &doomed)
        .await?
    {
        tracing::info!(
            mailbox = address,
            deleted = doomed.len(),
            "processed forwards deleted"
        );
    } else {
        tracing::warn!(
            mailbox = address,
            "process_and_delete_emails: the server lacks UIDPLUS (or renumbered the folder); \
             forwards are left on the server"
        );
    }
    Ok(())
}

/// Fetches the headers of `uids` and asks the store which emails will be tracked. Returns the
/// ones that will not (skipped, or duplicates of an activity) as header-only emails carrying their
/// decision, and the UIDs whose bodies must be fetched.
async fn prescreened(
    ctx: &JobContext,
    session: &mut ImapSession,
    mailbox: &Mailbox,
    place: &TrackingPlace,
    uids: &[u32],
    sizes: &HashMap<u32, u32>,
) -> Result<(Vec<Fetched>, Vec<u32>), SyncError> {
    let largest = uids
        .iter()
        .filter_map(|u| sizes.get(u))
        .max()
        .copied()
        .unwrap_or(0);
    let headers = session
        .fetch_headers(uids, literal_allowance(largest))
        .await?;
    ctx.metrics.fetched_bytes(
        mailbox.profile.as_deref().unwrap_or_default(),
        headers.iter().map(|h| h.raw.len() as u64).sum(),
    );
    let parsed: Vec<EmailHeaders> = headers.iter().map(|h| parse_headers(&h.raw)).collect();
    let decisions = ctx
        .store
        .prescreen(
            &parsed,
            &Place {
                mailbox: &mailbox.email_address,
                track: place.track,
                skip_automatic: place.skip_automatic,
                tracking_folder: place.tracking_folder.as_ref().map(|r| r.as_deref()),
                sent: place.sent,
            },
            &ctx.directory,
        )
        .map_err(|e| SyncError::Store(e.to_string()))?;
    let mut header_only = Vec::new();
    let mut bodies = Vec::new();
    for ((h, parsed), decision) in headers.into_iter().zip(parsed).zip(decisions) {
        let skip = match decision {
            // A bounce's report is in its body, and is recorded on the sent email even when
            // the bounce itself is skipped: fetched (bounces are few), never kept.
            Decision::Skip(_)
                if parsed.automatic == Some(crate::tracking::automatic::Automatic::Bounce) =>
            {
                bodies.push(h.uid);
                continue;
            }
            Decision::Skip(reason) => Some(reason),
            Decision::Duplicate { .. } => None,
            Decision::Track(_) | Decision::Undeliverable(_) => {
                bodies.push(h.uid);
                continue;
            }
        };
        header_only.push(Fetched {
            key: SyncKey::Uid(h.uid),
            received: None,
            raw: Vec::new(),
            flags: Some(h.flags),
            header_only: Some(HeaderOnly {
                headers: parsed,
                size: sizes.get(&h.uid).map_or(0, |s| u64::from(*s)),
                skip,
            }),
        });
    }
    Ok((header_only, bodies))
}

/// The largest body literal accepted for a batch whose largest listed size is `listed`: servers
/// may count line ends differently in RFC822.SIZE, so twice the size plus a little, never more.
fn literal_allowance(listed: u32) -> u64 {
    u64::from(listed).saturating_mul(2) + 64 * 1024
}

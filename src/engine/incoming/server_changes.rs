//! After a sync's ingest, each folder's server is asked what happened to the email already
//! tracked (issue 26, point 5): the plan is `tracking::server_state::plan_check`, the questions
//! `imap::changes`, the bookkeeping the store writer's `server_changes`. It runs once every
//! folder is ingested, so an email moved from INBOX into a tracking folder is already linked
//! there and reads as moved, not deleted. Nothing on the server changes.

use std::collections::HashSet;

use super::SyncSummary;
use crate::config::{Mailbox, Profile};
use crate::engine::JobContext;
use crate::engine::error::SyncError;
use crate::imap::ImapSession;
use crate::store::is_activity;
use crate::store::server_changes::ServerChanges;
use crate::tracking::plan::{FolderCursor, FolderStatus};
use crate::tracking::server_state::{
    Check, ExpungeCheck, FlagsCheck, FollowMode, Offers, followed_after, plan_check,
};

/// What a folder's sync saw: its EXAMINE, and the cursor the sync started from.
pub(super) struct FolderSeen {
    pub folder: String,
    pub status: FolderStatus,
    pub stored: Option<FolderCursor>,
}

/// Follows every folder the sync read. A forward mailbox's emails are its users', so it has
/// nothing to follow.
pub(super) async fn follow_folders(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    seen: &[FolderSeen],
    summary: &mut SyncSummary,
) -> Result<(), SyncError> {
    if profile.follow_server_changes == FollowMode::Off || mailbox.forward_mailbox {
        return Ok(());
    }
    let address = mailbox.email_address.as_str();
    // The folder the session has open: the sync's last, until a check opens another.
    let mut selected = seen.last().map(|s| s.folder.clone());
    for s in seen {
        if ctx.stopping() {
            return Ok(());
        }
        // CONDSTORE is on when EXAMINE reports HIGHESTMODSEQ (it was enabled at login).
        let offers = Offers {
            condstore: s.status.highest_modseq.is_some(),
            qresync: session.qresync(),
        };
        let now = chrono::Utc::now().timestamp();
        let check = plan_check(
            s.stored.as_ref(),
            &s.status,
            profile.follow_server_changes,
            offers,
            profile.flags_compare_every,
            now,
        );
        let prev = s
            .stored
            .as_ref()
            .filter(|c| Some(c.uidvalidity) == s.status.uidvalidity)
            .and_then(|c| c.followed.as_ref());
        // The common poll: nothing changed and the record stands; no store read at all.
        if check.is_nothing() && prev.is_some() {
            continue;
        }
        // Read after the ingest: its last UID is what the check compares up to.
        let Some(cursor) = ctx
            .store
            .folder_cursor(address, &s.folder)
            .map_err(|e| SyncError::Store(e.to_string()))?
            .filter(|c| Some(c.uidvalidity) == s.status.uidvalidity)
        else {
            continue;
        };
        if check.is_nothing() {
            // A folder seen for the first time (or renumbered) starts its record here.
            let followed = followed_after(None, &s.status, None, false, now);
            write(
                ctx,
                address,
                s,
                &cursor,
                Vec::new(),
                Vec::new(),
                false,
                followed,
            )
            .await?;
            continue;
        }
        let status = if selected.as_deref() == Some(s.folder.as_str()) {
            s.status
        } else {
            let again = session.examine(&s.folder).await?;
            selected = Some(s.folder.clone());
            if again.uidvalidity != s.status.uidvalidity {
                continue;
            }
            again
        };
        let Some(found) = ask(ctx, address, session, &s.folder, &cursor, check).await? else {
            continue;
        };
        let followed = followed_after(
            prev,
            &status,
            found.anchor,
            check.flags == FlagsCheck::All,
            now,
        );
        let reported = matches!(check.flags, FlagsCheck::ChangedSince(_));
        let n = (found.gone.len() + found.flags.len()) as u64;
        summary.server_changes += n;
        ctx.metrics.server_changes(&profile.name, n);
        write(
            ctx,
            address,
            s,
            &cursor,
            found.gone,
            found.flags,
            reported,
            followed,
        )
        .await?;
    }
    Ok(())
}

/// What the server said.
struct Found {
    gone: Vec<u32>,
    flags: Vec<(u32, Vec<String>)>,
    /// The anchor counted (see `followed_after`).
    anchor: Option<Option<(u32, u32)>>,
}

/// Asks the selected `folder` what `check` says. None: the server refused, nothing is learned.
async fn ask(
    ctx: &JobContext,
    address: &str,
    session: &mut ImapSession,
    folder: &str,
    cursor: &FolderCursor,
    check: Check,
) -> Result<Option<Found>, SyncError> {
    let last = cursor.last_uid;
    let mapped = ctx
        .store
        .folder_uids(address, folder, cursor.uidvalidity)
        .map_err(|e| SyncError::Store(e.to_string()))?;
    // Only the tracked emails' flags matter (the writer looks at no other).
    let tracked: HashSet<u32> = mapped
        .iter()
        .filter(|(_, v)| is_activity(*v))
        .map(|(uid, _)| *uid)
        .collect();
    let mut found = Found {
        gone: Vec::new(),
        flags: Vec::new(),
        anchor: None,
    };
    match check.flags {
        FlagsCheck::None => {}
        FlagsCheck::ChangedSince(modseq) => {
            let vanished = matches!(check.expunges, ExpungeCheck::Vanished(_));
            let Some(changes) = session.changed_since(last, modseq, vanished).await? else {
                return Ok(None);
            };
            if vanished {
                found.gone = mapped
                    .iter()
                    .map(|(uid, _)| *uid)
                    .filter(|uid| changes.is_vanished(*uid))
                    .collect();
            }
            found.flags = changes.flags;
        }
        FlagsCheck::All => {
            if !tracked.is_empty() {
                let Some(flags) = session.flags(last).await? else {
                    return Ok(None);
                };
                found.flags = flags;
            }
        }
    }
    found.flags.retain(|(uid, _)| tracked.contains(uid));
    // Where the UID listing starts, and how many messages at or below that were counted: above
    // an anchor whose sequence number still holds (nothing at or below it went), else the whole
    // folder.
    let listing = match check.expunges {
        ExpungeCheck::None | ExpungeCheck::Vanished(_) => None,
        ExpungeCheck::Full => Some((0, 0)),
        ExpungeCheck::Probe { uid, seq } => {
            let Some(now) = session.sequence_of(uid).await? else {
                return Ok(None);
            };
            Some(if now == Some(seq) { (uid, seq) } else { (0, 0) })
        }
    };
    if let Some((after, counted)) = listing {
        let Some(listed) = session.uids_from(after.saturating_add(1)).await? else {
            return Ok(None);
        };
        let present: HashSet<u32> = listed.iter().copied().collect();
        found.gone = mapped
            .iter()
            .map(|(uid, _)| *uid)
            .filter(|uid| *uid > after && !present.contains(uid))
            .collect();
        found.anchor = match listed.last() {
            Some(max) => Some(Some((*max, counted + listed.len() as u32))),
            // An empty folder counts nothing.
            None if after == 0 => Some(None),
            // Nothing above the anchor: it stands.
            None => None,
        };
    }
    if !found.gone.is_empty() {
        tracing::info!(
            mailbox = address,
            folder,
            gone = found.gone.len(),
            how = match check.expunges {
                ExpungeCheck::Vanished(_) => "vanished",
                _ => "uid comparison",
            },
            "emails gone from the folder since the last check"
        );
    }
    Ok(Some(found))
}

#[allow(clippy::too_many_arguments)]
async fn write(
    ctx: &JobContext,
    address: &str,
    s: &FolderSeen,
    cursor: &FolderCursor,
    gone: Vec<u32>,
    flags: Vec<(u32, Vec<String>)>,
    flags_reported: bool,
    followed: crate::tracking::server_state::Followed,
) -> Result<(), SyncError> {
    ctx.writer
        .server_changes(ServerChanges {
            mailbox: address.to_string(),
            folder: s.folder.clone(),
            uidvalidity: cursor.uidvalidity,
            gone,
            flags,
            flags_reported,
            followed,
        })
        .await
        .map_err(|e| SyncError::Store(e.to_string()))
}

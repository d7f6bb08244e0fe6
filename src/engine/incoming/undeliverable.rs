//! P10 "Move undelivered emails": an email that could not be tracked because of an error (not
//! one skipped by relevance) is moved to the `Undeliverable` folder once its item failure is
//! committed as skipped, with an alert. Only IMAP: a POP3 maildrop has no folders.

use std::collections::BTreeMap;

use crate::config::{Mailbox, Profile};
use crate::engine::error::SyncError;
use crate::engine::{JobContext, alerts};
use crate::imap::{ImapSession, MoveOutcome};
use crate::store::{AlertEmail, AlertLevel, ItemFailure};

pub const UNDELIVERABLE: &str = "Undeliverable";

/// The failures to move: skipped for good, with a UID, not moved yet.
pub fn to_move(failures: &[ItemFailure]) -> BTreeMap<(String, u32), Vec<&ItemFailure>> {
    let mut out: BTreeMap<(String, u32), Vec<&ItemFailure>> = BTreeMap::new();
    for f in failures {
        if let (true, None, Some(v), Some(_), None) =
            (f.skipped, &f.moved_to, f.uidvalidity, f.uid, &f.uidl)
        {
            out.entry((f.folder.clone(), v)).or_default().push(f);
        }
    }
    out
}

/// Moves what [`to_move`] finds. A move the server refuses is logged and tried again on the next
/// sync; it never fails the sync (the emails are recorded and safe where they are). What the
/// user sent stays in `sent_folder` (`track_sent`): a failure there is listed, never moved.
pub(super) async fn move_failed(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    sent_folder: Option<&str>,
) -> Result<(), SyncError> {
    if !profile.move_undelivered_emails {
        return Ok(());
    }
    let address = mailbox.email_address.as_str();
    let failures: Vec<ItemFailure> = ctx
        .store
        .item_failures(Some(address))
        .map_err(|e| SyncError::Store(e.to_string()))?
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    for ((folder, uidvalidity), items) in to_move(&failures) {
        if sent_folder == Some(folder.as_str()) {
            continue;
        }
        let uids: Vec<u32> = items.iter().filter_map(|f| f.uid).collect();
        let outcome = match session
            .move_messages(&folder, uidvalidity, &uids, UNDELIVERABLE)
            .await
        {
            Ok(o) => o,
            Err(e @ (SyncError::Net(_) | SyncError::ConnectionLost { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!(mailbox = address, folder, error = %e, "moving emails to Undeliverable failed; trying again next sync");
                continue;
            }
        };
        let Some(outcome) = outcome else {
            // The folder was renumbered: these UIDs name other emails now.
            continue;
        };
        let keys = items.iter().map(|f| f.item_key()).collect();
        let note = match outcome {
            MoveOutcome::Moved => UNDELIVERABLE.to_string(),
            MoveOutcome::CopiedOnly => format!("{UNDELIVERABLE} (copied; the server cannot move)"),
        };
        ctx.writer
            .items_moved(address, keys, &note)
            .await
            .map_err(|e| SyncError::Store(e.to_string()))?;
        let verb = match outcome {
            MoveOutcome::Moved => "moved",
            MoveOutcome::CopiedOnly => "copied (the server offers neither MOVE nor UIDPLUS)",
        };
        // Email-level: each moved email is its own alert, naming where it was.
        for f in &items {
            alerts::raise_email(
                ctx,
                AlertLevel::Warning,
                address,
                Some(&profile.name),
                AlertEmail::of_failure(f),
                "moved_to_undeliverable",
                format!(
                    "The email UID {} of folder \"{folder}\" could not be tracked ({}: {}) and was \
                     {verb} to \"{UNDELIVERABLE}\".",
                    f.uid.unwrap_or_default(),
                    f.code,
                    f.error
                ),
            )
            .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(uid: Option<u32>, uidl: Option<&str>, skipped: bool, moved: bool) -> ItemFailure {
        let now = chrono::Utc::now();
        ItemFailure {
            folder: "INBOX".into(),
            uidvalidity: uid.map(|_| 7),
            uid,
            uidl: uidl.map(str::to_string),
            size: 1,
            code: "email_not_stored".into(),
            error: "x".into(),
            tries: 3,
            skipped,
            first_at: now,
            last_at: now,
            moved_to: moved.then(|| UNDELIVERABLE.to_string()),
        }
    }

    #[test]
    fn only_skipped_unmoved_imap_emails_move() {
        let f = vec![
            failure(Some(1), None, true, false),
            failure(Some(2), None, false, false),
            failure(Some(3), None, true, true),
            failure(None, Some("u"), true, false),
            failure(Some(5), None, true, false),
        ];
        let m = to_move(&f);
        let uids: Vec<u32> = m[&("INBOX".to_string(), 7)]
            .iter()
            .filter_map(|f| f.uid)
            .collect();
        assert_eq!(uids, vec![1, 5]);
        assert_eq!(m.len(), 1);
    }
}

//! What a check of server changes found in one folder, applied in the writer's transaction
//! (issue 26, point 5): the gone UIDs leave the sync id map (a UID is never reused under its
//! UIDVALIDITY, so nothing can be fetched twice for it), their activities learn whether the
//! mailbox still holds the email in another folder sidesync reads (moved) or not (deleted), the
//! changed flags are recorded, and each change an integrator needs to hear is an
//! `activity.updated` with `changed: ["server_state"]`. No activity is ever removed.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::feed::{ActivityChange, Change, Feed};
use super::{
    ACTIVITIES, Activity, FOLDER_CURSORS, SYNC_ID_MAP, Store, StoreError, decode, encode,
    is_activity,
};
use crate::tracking::plan::FolderCursor;
use crate::tracking::server_state::{Followed, Outcome, Seen, observe};

/// One folder's check.
#[derive(Debug, Clone)]
pub struct ServerChanges {
    pub mailbox: String,
    pub folder: String,
    pub uidvalidity: u32,
    /// UIDs of the folder that are gone (only the mapped ones matter).
    pub gone: Vec<u32>,
    pub flags: Vec<(u32, Vec<String>)>,
    /// The server named these as changed (CONDSTORE), rather than all being compared.
    pub flags_reported: bool,
    /// Kept in the folder's cursor for the next check.
    pub followed: Followed,
}

/// How many activities changed.
pub(super) fn apply_server_changes(
    txn: &WriteTransaction,
    c: &ServerChanges,
    feed: &mut Feed,
) -> Result<u64, StoreError> {
    let mailbox = c.mailbox.as_str();
    let folder = c.folder.as_str();
    let mut map = txn.open_table(SYNC_ID_MAP)?;
    let mut activities = txn.open_table(ACTIVITIES)?;
    let mut gone_ids = Vec::new();
    for uid in &c.gone {
        let value = map
            .remove((mailbox, folder, c.uidvalidity, *uid))?
            .map(|v| v.value());
        if let Some(id) = value.filter(|v| is_activity(*v)) {
            gone_ids.push(id);
        }
    }
    let elsewhere = if gone_ids.is_empty() {
        HashMap::new()
    } else {
        other_copies(txn, &map, mailbox, &gone_ids)?
    };
    let now = Utc::now();
    let mut changed = 0u64;
    let mut apply = |id: u64, seen: Seen<'_>| -> Result<(), StoreError> {
        let Some(mut a) = activities
            .get(id)?
            .map(|v| decode::<Activity>("activity", v.value()))
            .transpose()?
        else {
            return Ok(());
        };
        let outcome = observe(&mut a.server_state, mailbox, folder, seen, now);
        if outcome != Outcome::Unchanged {
            activities.insert(id, encode(&a).as_slice())?;
        }
        if outcome == Outcome::Changed {
            changed += 1;
            feed.push(
                Some(mailbox),
                Change::ActivityUpdated(ActivityChange::of(&a, &["server_state"])),
            );
        }
        Ok(())
    };
    for id in gone_ids {
        match elsewhere.get(&id).map(String::as_str) {
            // Another copy in this very folder: the email is still here.
            Some(f) if f == folder => {}
            other => apply(id, Seen::Gone { elsewhere: other })?,
        }
    }
    for (uid, flags) in &c.flags {
        let id = map
            .get((mailbox, folder, c.uidvalidity, *uid))?
            .map(|v| v.value());
        if let Some(id) = id.filter(|v| is_activity(*v)) {
            let seen = Seen::Flags {
                flags,
                changed: c.flags_reported,
            };
            apply(id, seen)?;
        }
    }
    let mut cursors = txn.open_table(FOLDER_CURSORS)?;
    let cursor = cursors
        .get((mailbox, folder))?
        .map(|v| decode::<FolderCursor>("folder cursor", v.value()))
        .transpose()?;
    if let Some(mut cursor) = cursor.filter(|k| k.uidvalidity == c.uidvalidity) {
        cursor.followed = Some(c.followed.clone());
        cursors.insert((mailbox, folder), encode(&cursor).as_slice())?;
    }
    Ok(changed)
}

/// For each of `ids`, a folder of `mailbox` still holding it under that folder's current
/// UIDVALIDITY (rows of an older numbering name nothing).
fn other_copies(
    txn: &WriteTransaction,
    map: &redb::Table<'_, (&'static str, &'static str, u32, u32), u64>,
    mailbox: &str,
    ids: &[u64],
) -> Result<HashMap<u64, String>, StoreError> {
    let wanted: HashSet<u64> = ids.iter().copied().collect();
    let cursors = txn.open_table(FOLDER_CURSORS)?;
    let mut current: HashMap<String, u32> = HashMap::new();
    for row in cursors.range((mailbox, "")..)? {
        let (k, v) = row?;
        let (m, f) = k.value();
        if m != mailbox {
            break;
        }
        let cursor: FolderCursor = decode("folder cursor", v.value())?;
        current.insert(f.to_string(), cursor.uidvalidity);
    }
    let mut out = HashMap::new();
    for row in map.range((mailbox, "", 0u32, 0u32)..)? {
        let (k, v) = row?;
        let (m, f, uv, _) = k.value();
        if m != mailbox {
            break;
        }
        let id = v.value();
        if wanted.contains(&id) && current.get(f) == Some(&uv) {
            out.entry(id).or_insert_with(|| f.to_string());
        }
    }
    Ok(out)
}

impl Store {
    /// The mapped UIDs of one folder under `uidvalidity`, with what each maps to (an activity
    /// id or a marker), sorted by UID.
    pub fn folder_uids(
        &self,
        mailbox: &str,
        folder: &str,
        uidvalidity: u32,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SYNC_ID_MAP)?;
        let mut out = Vec::new();
        for row in t.range(
            (mailbox, folder, uidvalidity, 0u32)..=(mailbox, folder, uidvalidity, u32::MAX),
        )? {
            let (k, v) = row?;
            out.push((k.value().3, v.value()));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "server_changes_tests.rs"]
mod tests;

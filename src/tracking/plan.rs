//! What to fetch from one folder, decided from the stored cursor and what EXAMINE reported.
//!
//! The cursor only ever advances to UIDs that were fetched and committed; UIDNEXT from the server
//! is used to skip work (nothing new), never to move the cursor.

use serde::{Deserialize, Serialize};

/// A folder's sync state, committed in the same transaction as the activities it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderCursor {
    pub uidvalidity: u32,
    /// Highest UID fetched and committed (or deliberately skipped) under `uidvalidity`.
    pub last_uid: u32,
    /// UIDNEXT seen at the start of the last *complete* folder sync: every UID below it is handled.
    pub synced_uidnext: Option<u32>,
    pub highest_modseq: Option<u64>,
    /// How many times the server changed UIDVALIDITY under us.
    pub uidvalidity_changes: u32,
    /// What the last check of server changes saw (see `tracking::server_state`); written by
    /// that check only, so an ingest's commit carries it unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed: Option<super::server_state::Followed>,
}

/// What EXAMINE said about the folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub exists: u32,
    pub highest_modseq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderPlan {
    /// Nothing can have arrived since the last complete sync.
    UpToDate,
    /// Fetch every message with a UID above `after_uid`, under this cursor.
    Fetch {
        cursor: FolderCursor,
        after_uid: u32,
    },
    /// UIDVALIDITY changed: every stored UID is void. Rescan from UID 1; the duplicate check on
    /// Message-ID (or content hash) links the messages to their existing activities.
    Rescan { cursor: FolderCursor, previous: u32 },
    /// The server names no UIDVALIDITY: UIDs cannot be trusted across sessions.
    NoUidValidity,
}

pub fn plan_folder(stored: Option<&FolderCursor>, status: &FolderStatus) -> FolderPlan {
    let Some(uidvalidity) = status.uidvalidity else {
        return FolderPlan::NoUidValidity;
    };
    match stored {
        // First sight of the folder: everything is new.
        None => FolderPlan::Fetch {
            cursor: FolderCursor {
                uidvalidity,
                highest_modseq: status.highest_modseq,
                ..FolderCursor::default()
            },
            after_uid: 0,
        },
        // The server renumbered the folder.
        Some(c) if c.uidvalidity != uidvalidity => FolderPlan::Rescan {
            cursor: FolderCursor {
                uidvalidity,
                last_uid: 0,
                synced_uidnext: None,
                highest_modseq: status.highest_modseq,
                uidvalidity_changes: c.uidvalidity_changes.saturating_add(1),
                followed: None,
            },
            previous: c.uidvalidity,
        },
        // An empty folder, or one whose UIDNEXT shows no UID above what we handled.
        Some(c)
            if status.exists == 0
                || status
                    .uidnext
                    .is_some_and(|n| n <= c.last_uid.saturating_add(1))
                || (status.uidnext.is_some() && status.uidnext == c.synced_uidnext) =>
        {
            FolderPlan::UpToDate
        }
        Some(c) => FolderPlan::Fetch {
            cursor: c.clone(),
            after_uid: c.last_uid,
        },
    }
}

/// One message the server listed for fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedMessage {
    pub uid: u32,
    pub size: u32,
    /// INTERNALDATE as a Unix timestamp, when the server gave one.
    pub received: Option<i64>,
}

/// A run of UIDs fetched in one FETCH and committed in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// UIDs whose bodies are fetched.
    pub fetch: Vec<u32>,
    /// Listed larger than the profile's `max_message_size`: not fetched, recorded as skipped
    /// items, passed by the cursor. (UID, listed size.)
    pub too_large: Vec<(u32, u32)>,
    /// The cursor after this chunk commits: its highest UID, skipped ones included.
    pub last_uid: u32,
}

/// Splits the listing into chunks of at most `max_count` messages and about `max_bytes` bytes
/// (a single larger message gets a chunk of its own). Messages received before `received_after`
/// are skipped (P6) but still advance the cursor, so they are never listed again. Messages
/// larger than `max_message_size` are not fetched: they go in their chunk's `too_large`.
pub fn chunk_listing(
    listed: &[ListedMessage],
    after_uid: u32,
    received_after: Option<i64>,
    max_count: usize,
    max_bytes: usize,
    max_message_size: u64,
) -> Vec<Chunk> {
    let mut sorted: Vec<ListedMessage> = listed
        .iter()
        .copied()
        .filter(|m| m.uid > after_uid)
        .collect();
    sorted.sort_by_key(|m| m.uid);
    sorted.dedup_by_key(|m| m.uid);
    let mut chunks = Vec::new();
    let mut current = Chunk {
        fetch: Vec::new(),
        too_large: Vec::new(),
        last_uid: after_uid,
    };
    let mut bytes = 0usize;
    let mut touched = false;
    for m in sorted {
        let dated_before =
            matches!((received_after, m.received), (Some(after), Some(r)) if r < after);
        let too_large = !dated_before && u64::from(m.size) > max_message_size;
        let skip = dated_before || too_large;
        if !skip
            && !current.fetch.is_empty()
            && (current.fetch.len() >= max_count
                || bytes.saturating_add(m.size as usize) > max_bytes)
        {
            let next_start = current.last_uid;
            chunks.push(std::mem::replace(
                &mut current,
                Chunk {
                    fetch: Vec::new(),
                    too_large: Vec::new(),
                    last_uid: next_start,
                },
            ));
            bytes = 0;
        }
        if !skip {
            current.fetch.push(m.uid);
            // The sizes are the server's word: summed without wrapping on 32-bit targets.
            bytes = bytes.saturating_add(m.size as usize);
        }
        if too_large {
            current.too_large.push((m.uid, m.size));
        }
        current.last_uid = m.uid;
        touched = true;
    }
    if touched {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uidvalidity: u32, uidnext: u32, exists: u32) -> FolderStatus {
        FolderStatus {
            uidvalidity: Some(uidvalidity),
            uidnext: Some(uidnext),
            exists,
            highest_modseq: None,
        }
    }

    fn cursor(uidvalidity: u32, last_uid: u32) -> FolderCursor {
        FolderCursor {
            uidvalidity,
            last_uid,
            ..FolderCursor::default()
        }
    }

    #[test]
    fn first_sync_fetches_everything() {
        let p = plan_folder(None, &status(7, 11, 10));
        assert_eq!(
            p,
            FolderPlan::Fetch {
                cursor: cursor(7, 0),
                after_uid: 0
            }
        );
    }

    #[test]
    fn same_uidvalidity_fetches_above_the_cursor() {
        let p = plan_folder(Some(&cursor(7, 10)), &status(7, 15, 14));
        assert_eq!(
            p,
            FolderPlan::Fetch {
                cursor: cursor(7, 10),
                after_uid: 10
            }
        );
    }

    #[test]
    fn uidnext_just_above_the_cursor_means_nothing_new() {
        assert_eq!(
            plan_folder(Some(&cursor(7, 10)), &status(7, 11, 10)),
            FolderPlan::UpToDate
        );
    }

    #[test]
    fn unchanged_uidnext_after_a_complete_sync_means_nothing_new() {
        // Messages 11..=19 were skipped by date or expunged; the last complete sync saw UIDNEXT 20.
        let c = FolderCursor {
            synced_uidnext: Some(20),
            ..cursor(7, 10)
        };
        assert_eq!(
            plan_folder(Some(&c), &status(7, 20, 3)),
            FolderPlan::UpToDate
        );
        // A new message raises UIDNEXT: fetch again.
        assert!(matches!(
            plan_folder(Some(&c), &status(7, 21, 4)),
            FolderPlan::Fetch { .. }
        ));
    }

    #[test]
    fn empty_folder_needs_nothing() {
        assert_eq!(
            plan_folder(Some(&cursor(7, 10)), &status(7, 30, 0)),
            FolderPlan::UpToDate
        );
    }

    #[test]
    fn a_new_uidvalidity_rescans_and_counts_the_change() {
        let old = FolderCursor {
            uidvalidity_changes: 1,
            ..cursor(7, 10)
        };
        let p = plan_folder(Some(&old), &status(9, 11, 10));
        let expected = FolderCursor {
            uidvalidity_changes: 2,
            ..cursor(9, 0)
        };
        assert_eq!(
            p,
            FolderPlan::Rescan {
                cursor: expected,
                previous: 7
            }
        );
    }

    #[test]
    fn no_uidvalidity_is_refused() {
        let s = FolderStatus {
            uidvalidity: None,
            ..status(0, 5, 4)
        };
        assert_eq!(plan_folder(None, &s), FolderPlan::NoUidValidity);
    }

    fn listed(uid: u32, size: u32, received: i64) -> ListedMessage {
        ListedMessage {
            uid,
            size,
            received: Some(received),
        }
    }

    #[test]
    fn chunks_by_count_and_bytes() {
        let l: Vec<_> = (1..=5).map(|u| listed(u, 100, 0)).collect();
        let c = chunk_listing(&l, 0, None, 2, 1_000_000, u64::MAX);
        assert_eq!(
            c.iter().map(|c| c.fetch.clone()).collect::<Vec<_>>(),
            vec![vec![1, 2], vec![3, 4], vec![5]]
        );
        assert_eq!(
            c.iter().map(|c| c.last_uid).collect::<Vec<_>>(),
            vec![2, 4, 5]
        );
        let c = chunk_listing(&l, 0, None, 100, 250, u64::MAX);
        assert_eq!(c.len(), 3, "250 bytes hold two 100-byte messages");
    }

    #[test]
    fn a_huge_message_gets_its_own_chunk() {
        let l = vec![listed(1, 10, 0), listed(2, 5_000, 0), listed(3, 10, 0)];
        let c = chunk_listing(&l, 0, None, 100, 100, u64::MAX);
        assert_eq!(
            c.iter().map(|c| c.fetch.clone()).collect::<Vec<_>>(),
            vec![vec![1], vec![2], vec![3]]
        );
    }

    #[test]
    fn old_messages_are_skipped_but_advance_the_cursor() {
        let l = vec![listed(4, 10, 50), listed(5, 10, 200), listed(6, 10, 50)];
        let c = chunk_listing(&l, 3, Some(100), 100, 1000, u64::MAX);
        assert_eq!(
            c,
            vec![Chunk {
                fetch: vec![5],
                too_large: vec![],
                last_uid: 6
            }]
        );
        // Only old messages: nothing fetched, the cursor still moves.
        let c = chunk_listing(&[listed(9, 10, 1)], 3, Some(100), 100, 1000, u64::MAX);
        assert_eq!(
            c,
            vec![Chunk {
                fetch: vec![],
                too_large: vec![],
                last_uid: 9
            }]
        );
    }

    #[test]
    fn uids_at_or_below_the_cursor_are_ignored() {
        // "UID FETCH 11:*" returns the last message even when its UID is below 11.
        let c = chunk_listing(&[listed(10, 10, 0)], 10, None, 100, 1000, u64::MAX);
        assert!(c.is_empty());
    }

    #[test]
    fn too_large_messages_are_not_fetched_but_passed_and_named() {
        let l = vec![
            listed(1, 10, 200),
            listed(2, 5_000, 200),
            listed(3, 10, 200),
        ];
        let c = chunk_listing(&l, 0, Some(100), 100, 1000, 1_000);
        assert_eq!(
            c,
            vec![Chunk {
                fetch: vec![1, 3],
                too_large: vec![(2, 5_000)],
                last_uid: 3
            }]
        );
        // Dated before the profile's date wins: an old large email is simply not tracked.
        let c = chunk_listing(&[listed(4, 5_000, 1)], 3, Some(100), 100, 1000, 1_000);
        assert_eq!(c[0].too_large, vec![]);
        assert_eq!(c[0].last_uid, 4);
    }
}

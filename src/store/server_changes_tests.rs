use super::*;
use crate::store::feed::Page;
use crate::store::{IngestBatch, IngestSource, PreparedMessage, SyncKey, TrackingPlace};
use crate::tracking::message::parse_headers;
use crate::tracking::server_state::CopyState;

const MB: &str = "a@example.com";

fn message(uid: u32, id: &str, flags: &[&str]) -> PreparedMessage {
    let raw = format!("Message-ID: <{id}>\r\nSubject: {id}\r\n\r\nbody\r\n").into_bytes();
    PreparedMessage {
        key: SyncKey::Uid(uid),
        content_key: None,
        headers: parse_headers(&raw),
        raw_encoded: Some(zstd::encode_all(raw.as_slice(), 3).expect("compress")),
        size: raw.len() as u64,
        received_at: None,
        skip: None,
        undeliverable: None,
        attributed_to: None,
        part: 0,
        bounce: None,
        flags: Some(flags.iter().map(|f| f.to_string()).collect()),
    }
}

fn batch(folder: &str, msgs: Vec<PreparedMessage>) -> IngestBatch {
    IngestBatch {
        mailbox: MB.into(),
        source: IngestSource::Folder {
            folder: folder.into(),
            cursor: FolderCursor {
                uidvalidity: 9,
                last_uid: 10,
                ..FolderCursor::default()
            },
        },
        messages: msgs,
        failed: Vec::new(),
        failures_before: chrono::Utc::now(),
        place: TrackingPlace::default(),
        directory: std::sync::Arc::default(),
    }
}

fn changes(folder: &str, gone: &[u32], flags: &[(u32, &[&str])]) -> ServerChanges {
    ServerChanges {
        mailbox: MB.into(),
        folder: folder.into(),
        uidvalidity: 9,
        gone: gone.to_vec(),
        flags: flags
            .iter()
            .map(|(u, f)| (*u, f.iter().map(|s| s.to_string()).collect()))
            .collect(),
        flags_reported: true,
        followed: Followed {
            exists: 1,
            ..Followed::default()
        },
    }
}

fn updated(store: &Store) -> Vec<(u64, Vec<String>)> {
    let Ok(Page::Events(events, _)) = store.events(0, 1000, &|_| true) else {
        panic!("events")
    };
    events
        .into_iter()
        .filter_map(|e| match e.change {
            Change::ActivityUpdated(a) => Some((a.id, a.changed)),
            _ => None,
        })
        .collect()
}

fn copy_of(store: &Store, id: u64) -> crate::tracking::server_state::ServerCopy {
    let a = store.activity(id).expect("read").expect("activity");
    let [c] = a.server_state.as_slice() else {
        panic!("one copy: {:?}", a.server_state)
    };
    c.clone()
}

#[tokio::test]
async fn deleted_moved_and_flagged_emails_update_their_activities_and_are_never_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let inbox = vec![
        message(1, "del@x", &[]),
        message(2, "moved@x", &["\\Recent"]),
        message(3, "flag@x", &["\\Seen"]),
    ];
    writer
        .ingest(batch("INBOX", inbox))
        .await
        .expect("queued")
        .await
        .expect("answered")
        .expect("committed");
    // The moved email, linked in the tracking folder before INBOX is checked.
    writer
        .ingest(batch("Acme", vec![message(7, "moved@x", &[])]))
        .await
        .expect("queued")
        .await
        .expect("answered")
        .expect("committed");
    let ids: Vec<u64> = store
        .activities()
        .expect("activities")
        .iter()
        .map(|a| a.id)
        .collect();
    let [del, moved, flagged] = ids[..] else {
        panic!("three activities: {ids:?}")
    };
    assert_eq!(copy_of(&store, flagged).flags, Some(vec!["\\Seen".into()]));
    assert_eq!(
        copy_of(&store, moved).flags,
        Some(vec![]),
        "\\Recent is not kept"
    );
    assert!(
        updated(&store).is_empty(),
        "a link in a second folder is no change"
    );

    let c = changes("INBOX", &[1, 2], &[(3, &["\\Seen", "\\Flagged"])]);
    writer.server_changes(c.clone()).await.expect("committed");
    assert_eq!(copy_of(&store, del).state, CopyState::Deleted);
    let m = copy_of(&store, moved);
    assert_eq!((m.state, m.folder.as_str()), (CopyState::Moved, "Acme"));
    let f = copy_of(&store, flagged);
    assert_eq!(
        f.flags,
        Some(vec!["\\Flagged".to_string(), "\\Seen".to_string()])
    );
    let server_state = vec!["server_state".to_string()];
    assert_eq!(
        updated(&store),
        vec![
            (del, server_state.clone()),
            (moved, server_state.clone()),
            (flagged, server_state.clone())
        ]
    );
    assert_eq!(store.activities().expect("activities").len(), 3);
    assert!(
        store
            .folder_uids(MB, "INBOX", 9)
            .expect("map")
            .iter()
            .all(|(uid, _)| *uid == 3),
        "the gone UIDs left the sync id map"
    );
    // The same report again changes nothing.
    writer.server_changes(c).await.expect("committed");
    assert_eq!(updated(&store).len(), 3);
    // The moved copy then goes from Acme too: deleted.
    writer
        .server_changes(changes("Acme", &[7], &[]))
        .await
        .expect("committed");
    assert_eq!(copy_of(&store, moved).state, CopyState::Deleted);
    writer.shutdown();
}

#[tokio::test]
async fn a_check_keeps_its_record_in_the_folder_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    writer
        .ingest(batch("INBOX", vec![message(1, "a@x", &[])]))
        .await
        .expect("queued")
        .await
        .expect("answered")
        .expect("committed");
    let mut c = changes("INBOX", &[], &[]);
    c.followed.anchor = Some((1, 1));
    writer.server_changes(c).await.expect("committed");
    let cursor = store
        .folder_cursor(MB, "INBOX")
        .expect("read")
        .expect("cursor");
    assert_eq!(cursor.followed.and_then(|f| f.anchor), Some((1, 1)));
    assert_eq!(cursor.last_uid, 10, "the ingest's part is left alone");
    // Another UIDVALIDITY's check is for a numbering that is gone: not kept.
    let mut stale = changes("INBOX", &[1], &[]);
    stale.uidvalidity = 8;
    stale.followed.anchor = Some((5, 5));
    writer.server_changes(stale).await.expect("committed");
    let cursor = store
        .folder_cursor(MB, "INBOX")
        .expect("read")
        .expect("cursor");
    assert_eq!(cursor.followed.and_then(|f| f.anchor), Some((1, 1)));
    writer.shutdown();
}

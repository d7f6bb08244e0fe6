use super::*;
use crate::tracking::message::{dedup_key, parse_headers};

fn message(uid: u32, raw: &[u8]) -> PreparedMessage {
    let headers = parse_headers(raw);
    PreparedMessage {
        key: SyncKey::Uid(uid),
        dedup_key: dedup_key(&headers, raw),
        headers,
        raw_encoded: zstd::encode_all(raw, 3).expect("compress"),
        size: raw.len() as u64,
        received_at: None,
    }
}

fn batch(uidvalidity: u32, msgs: Vec<PreparedMessage>) -> IngestBatch {
    let last_uid = msgs
        .iter()
        .filter_map(|m| match m.key {
            SyncKey::Uid(uid) => Some(uid),
            SyncKey::Uidl(_) => None,
        })
        .max()
        .unwrap_or(0);
    IngestBatch {
        mailbox: "a@example.com".into(),
        source: IngestSource::Folder {
            folder: "INBOX".into(),
            cursor: FolderCursor {
                uidvalidity,
                last_uid,
                ..FolderCursor::default()
            },
        },
        messages: msgs,
        failed: Vec::new(),
        failures_before: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn a_batch_commits_activities_map_and_cursor_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let raw1 = b"Message-ID: <1@x>\r\nSubject: one\r\n\r\nbody one\r\n".to_vec();
    let raw2 = b"Subject: no id\r\n\r\nbody two\r\n".to_vec();
    let done = writer
        .ingest(batch(5, vec![message(1, &raw1), message(2, &raw2)]))
        .await
        .expect("queued");
    let outcome = done.await.expect("answered").expect("committed");
    assert_eq!(
        outcome,
        IngestOutcome {
            created: 2,
            linked: 0,
            bytes: (raw1.len() + raw2.len()) as u64,
        }
    );
    writer.shutdown();
    drop(store);

    // Reopen: everything is there, raw bytes identical.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let acts = store.activities().expect("activities");
    assert_eq!(acts.len(), 2);
    assert_eq!(acts[0].headers.subject.as_deref(), Some("one"));
    assert_eq!(
        store.activity_raw(acts[0].id).expect("raw"),
        Some(raw1.clone())
    );
    assert_eq!(
        store.activity_raw(acts[1].id).expect("raw"),
        Some(raw2.clone())
    );
    let cursor = store
        .folder_cursor("a@example.com", "INBOX")
        .expect("cursor")
        .expect("some");
    assert_eq!((cursor.uidvalidity, cursor.last_uid), (5, 2));
    assert_eq!(store.sync_id_map("a@example.com").expect("map").len(), 2);
    let states = store.mailbox_states().expect("states");
    assert_eq!(states["a@example.com"].activities_stored, 2);

    // The same messages under a new UIDVALIDITY link to the existing activities.
    let writer = store.start_writer();
    let done = writer
        .ingest(batch(6, vec![message(1, &raw1), message(2, &raw2)]))
        .await
        .expect("queued");
    assert_eq!(
        done.await.expect("answered").expect("ok"),
        IngestOutcome {
            created: 0,
            linked: 2,
            bytes: 0,
        }
    );
    // A replayed batch (same UIDs) changes nothing.
    let done = writer
        .ingest(batch(6, vec![message(1, &raw1)]))
        .await
        .expect("queued");
    assert_eq!(
        done.await.expect("answered").expect("ok"),
        IngestOutcome::default()
    );
    writer.flush().await.expect("flush");
    assert_eq!(store.activity_count().expect("count"), 2);
    assert_eq!(store.sync_id_map("a@example.com").expect("map").len(), 4);
    writer.shutdown();
}

#[tokio::test]
async fn mailbox_state_records_failures_and_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let at = chrono::Utc::now();
    for _ in 0..2 {
        writer
            .mailbox(
                "a@example.com",
                MailboxUpdate::SyncFailed {
                    at,
                    text: "refused".into(),
                    code: "connect".into(),
                    transient: true,
                    retry_at: None,
                },
            )
            .await
            .expect("queued");
    }
    writer.flush().await.expect("flush");
    let s = &store.mailbox_states().expect("states")["a@example.com"];
    assert_eq!(s.incoming_status, RunStatus::Failure);
    assert_eq!(s.transient_failure_count, 2);
    assert_eq!(s.last_error.as_ref().map(|e| e.consecutive), Some(2));
    writer
        .mailbox(
            "a@example.com",
            MailboxUpdate::SyncSucceeded { at, duration_ms: 5 },
        )
        .await
        .expect("queued");
    writer.flush().await.expect("flush");
    let s = &store.mailbox_states().expect("states")["a@example.com"];
    assert_eq!(s.incoming_status, RunStatus::Success);
    assert!(s.last_error.is_none());
    writer.shutdown();
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let txn = store.db().begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("schema_version", SCHEMA_VERSION + 1)
            .expect("insert");
        txn.commit().expect("commit");
    }
    match Store::open(dir.path()) {
        Err(e @ StoreError::NewerSchema { .. }) => {
            assert!(e.to_string().contains("schema version 2"))
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer store was opened"),
    }
}

#[tokio::test]
async fn alerts_older_than_the_retention_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let now = chrono::Utc::now();
    let alert = |age_days: i64, code: &str| Alert {
        at: now - chrono::Duration::days(age_days),
        level: AlertLevel::Warning,
        scope: AlertScope::Mailbox,
        mailbox: Some("a@example.com".into()),
        profile: None,
        code: code.into(),
        message: "m".into(),
    };
    let keep_after = now - chrono::Duration::days(30);
    writer
        .alert(alert(40, "old"), keep_after - chrono::Duration::days(365))
        .await
        .expect("queued");
    writer
        .alert(
            alert(20, "recent"),
            keep_after - chrono::Duration::days(365),
        )
        .await
        .expect("queued");
    writer.flush().await.expect("flush");
    assert_eq!(store.alerts(10).expect("alerts").len(), 2);
    writer
        .alert(alert(0, "new"), keep_after)
        .await
        .expect("queued");
    writer.flush().await.expect("flush");
    let codes: Vec<String> = store
        .alerts(10)
        .expect("alerts")
        .into_iter()
        .map(|a| a.code)
        .collect();
    assert_eq!(
        codes,
        vec!["new", "recent"],
        "newest first, the 40-day-old one dropped"
    );
    writer.shutdown();
}

use super::*;
use crate::tracking::automatic::Automatic;
use crate::tracking::message::{content_key, parse_headers};

fn message(uid: u32, raw: &[u8]) -> PreparedMessage {
    let headers = parse_headers(raw);
    PreparedMessage {
        key: SyncKey::Uid(uid),
        content_key: Some(content_key(raw)),
        headers,
        raw_encoded: Some(zstd::encode_all(raw, 3).expect("compress")),
        size: raw.len() as u64,
        received_at: None,
        skip: None,
        undeliverable: None,
        attributed_to: None,
        part: 0,
        bounce: None,
        flags: None,
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
        place: TrackingPlace::default(),
        directory: std::sync::Arc::default(),
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
            skipped: 0,
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
            skipped: 0,
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
            assert!(e.to_string().contains("schema version 4"))
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer store was opened"),
    }
}

/// An alert as sidesync wrote it before alerts named their email: it reads, with no email; and
/// an Email-scope alert keeps its email through the store.
#[tokio::test]
async fn an_alert_stored_before_alerts_named_their_email_still_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let old = br#"{"at":"2026-11-02T08:15:00Z","level":"warning","scope":"mailbox","mailbox":"a@example.com","profile":"p","code":"message_too_large","message":"The email UID 7 in folder INBOX was skipped."}"#;
    {
        let txn = store.db.begin_write().expect("write");
        {
            let mut t = txn.open_table(ALERTS).expect("alerts");
            t.insert(0u64, old.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let read = store.alerts(10).expect("old alerts decode");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].code, "message_too_large");
    assert_eq!(read[0].scope, AlertScope::Mailbox);
    assert_eq!(read[0].email, None);

    let writer = store.start_writer();
    let email = AlertEmail {
        folder: Some("INBOX".into()),
        uidvalidity: Some(9),
        uid: Some(8),
        ..AlertEmail::default()
    };
    writer
        .alert(
            Alert {
                at: chrono::Utc::now(),
                level: AlertLevel::Warning,
                scope: AlertScope::Email,
                mailbox: Some("a@example.com".into()),
                profile: Some("p".into()),
                code: "message_too_large".into(),
                message: "m".into(),
                email: Some(email.clone()),
            },
            chrono::Utc::now() - chrono::Duration::days(365),
        )
        .await
        .expect("alert");
    writer.flush().await.expect("flush");
    let read = store.alerts(10).expect("alerts");
    assert_eq!(read[0].email, Some(email));
    assert_eq!(read[1].email, None);
    writer.shutdown();
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
        email: None,
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

/// The same email committed by two mailboxes in one group commit is one activity listing both;
/// a skipped email keeps its reason in the sync id map and no body.
#[tokio::test]
async fn one_activity_per_email_across_mailboxes_and_skips_keep_no_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let raw = b"Message-ID: <shared@x>\r\nFrom: c@y\r\nTo: a@example.com, b@example.com\r\nSubject: both\r\n\r\nhi\r\n";
    let mut first = batch(1, vec![message(1, raw)]);
    let mut second = batch(1, vec![message(1, raw)]);
    second.mailbox = "b@example.com".into();
    first.place.track = crate::tracking::decision::Track::All;
    let a = writer.ingest(first).await.expect("queued");
    let b = writer.ingest(second).await.expect("queued");
    assert_eq!(a.await.expect("answer").expect("ok").created, 1);
    assert_eq!(b.await.expect("answer").expect("ok").linked, 1);
    let acts = store.activities().expect("activities");
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].mailboxes, vec!["a@example.com", "b@example.com"]);
    assert_eq!(acts[0].conversation, acts[0].id);
    // An automatic kind the mailbox skips is skipped with its kind as the reason; its body is
    // not kept.
    let noise = b"Message-ID: <ooo@y>\r\nFrom: c@y\r\nAuto-Submitted: auto-replied\r\nSubject: Away\r\n\r\nx\r\n";
    let mut skipping = batch(1, vec![message(2, noise)]);
    skipping.place.skip_automatic = [Automatic::AutoReply].into_iter().collect();
    let done = writer.ingest(skipping).await.expect("queued");
    assert_eq!(done.await.expect("answer").expect("ok").skipped, 1);
    writer.flush().await.expect("flush");
    assert_eq!(store.activity_count().expect("count"), 1);
    let map = store.sync_id_map("a@example.com").expect("map");
    let skipped = map.iter().find(|(k, _)| k.2 == 2).expect("mapped").1;
    assert_eq!(
        skip_reason(skipped),
        Some(crate::tracking::decision::SkipReason::Automatic(
            Automatic::AutoReply
        ))
    );
    assert!(!is_activity(skipped));
    let state = store.mailbox_state("a@example.com").expect("state");
    assert_eq!(state.decisions["tracked_new"], 1);
    assert_eq!(state.decisions["automatic:auto_reply"], 1);
    // Under "all" with nothing skipped, the same kind of email is an activity with its kind.
    let other = b"Message-ID: <ooo2@y>\r\nFrom: c@y\r\nAuto-Submitted: auto-replied\r\nSubject: Away\r\n\r\nx\r\n";
    let mut all = batch(1, vec![message(3, other)]);
    all.place.track = crate::tracking::decision::Track::All;
    let done = writer.ingest(all).await.expect("queued");
    assert_eq!(done.await.expect("answer").expect("ok").created, 1);
    let id = store
        .activity_by_message_id("ooo2@y")
        .expect("index")
        .expect("tracked");
    let a = store.activity(id).expect("read").expect("exists");
    assert_eq!(a.headers.automatic, Some(Automatic::AutoReply));
    writer.shutdown();
}

/// An activity stored before the kinds had names (`noise`, with the old words) reads with its
/// kind; one stored before either reads as a person's email.
#[test]
fn activities_stored_with_noise_read_as_automatic() {
    let row = |extra: &str| {
        format!(
            "{{\"id\":4,\"direction\":\"incoming\",\"mailbox\":\"a@x\",\"folder\":\"INBOX\",\
             \"message_id\":\"m@x\",\"date\":null,\"from\":[],\"to\":[],\"cc\":[],\
             \"subject\":null,\"in_reply_to\":[],\"references\":[],{extra}\"size\":1,\
             \"received_at\":null,\"created_at\":\"2025-09-01T10:00:00Z\"}}"
        )
    };
    for (extra, kind) in [
        ("\"noise\":\"delivery_status\",", Some(Automatic::Bounce)),
        (
            "\"noise\":\"auto_generated\",",
            Some(Automatic::AutoSubmitted),
        ),
        ("\"noise\":\"bulk\",", Some(Automatic::Bulk)),
        ("\"automatic\":\"list\",", Some(Automatic::List)),
        ("", None),
    ] {
        let a: Activity = decode("activity", row(extra).as_bytes()).expect("reads");
        assert_eq!(a.headers.automatic, kind, "{extra}");
    }
}

/// A store written by schema version 1 (tests/fixtures/store-v1) opens as version 3 (through 2)
/// with every activity, its raw MIME, conversations, the global duplicate index and its token.
#[test]
fn a_version_1_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-v1")
        .join(STORE_FILE);
    std::fs::copy(&fixture, dir.path().join(STORE_FILE)).expect("copy the fixture");
    let raws_before: Vec<(u64, Vec<u8>)> = {
        // Read with the version 1 layout still in place: the upgrade runs on open, so read the
        // raw table directly.
        let db = redb::Database::open(dir.path().join(STORE_FILE)).expect("open v1");
        let txn = db.begin_read().expect("read");
        let t = txn.open_table(ACTIVITY_RAW).expect("raw table");
        let meta = txn.open_table(META).expect("meta");
        assert_eq!(
            meta.get("schema_version").expect("get").map(|v| v.value()),
            Some(1)
        );
        t.iter()
            .expect("iter")
            .map(|r| {
                let (k, v) = r.expect("row");
                (k.value(), rawcodec::decode(v.value()).expect("decodes"))
            })
            .collect()
    };
    assert_eq!(raws_before.len(), 16);
    let store = Store::open(dir.path()).expect("upgrade");
    assert_eq!(store.schema_version().expect("version"), 3);
    let acts = store.activities().expect("activities");
    assert_eq!(acts.len(), 16, "every activity survives");
    for (id, raw) in &raws_before {
        assert_eq!(store.activity_raw(*id).expect("raw").as_ref(), Some(raw));
    }
    for a in &acts {
        assert_eq!(a.mailboxes, vec![a.mailbox.clone()]);
        assert!(!a.key.is_empty() && a.conversation != 0 && !a.parties.is_empty());
    }
    // The sample emails reply to each other (n % 5 == 1 answers n - 1): stored conversations.
    let replies: Vec<&Activity> = acts
        .iter()
        .filter(|a| !a.headers.in_reply_to.is_empty())
        .collect();
    assert!(!replies.is_empty());
    for r in replies {
        let parent = store
            .activity_by_message_id(&r.headers.in_reply_to[0])
            .expect("index")
            .expect("the original is indexed");
        let parent = store.activity(parent).expect("read").expect("exists");
        assert_eq!(r.conversation, parent.conversation);
    }
    // The shared email (two activities under version 1) keeps both; the index names the first.
    let shared: Vec<&Activity> = acts
        .iter()
        .filter(|a| a.headers.message_id.as_deref() == Some("shared.1@example.org"))
        .collect();
    assert_eq!(shared.len(), 2);
    assert_eq!(
        store
            .activity_by_message_id("shared.1@example.org")
            .expect("index"),
        Some(shared[0].id)
    );
    // The queued email's token is indexed: a reply carrying only it correlates.
    let out = acts
        .iter()
        .find(|a| a.direction == Direction::Outgoing)
        .expect("outgoing");
    assert_eq!(
        store.activities_by_token("CRM:0001001001").expect("read"),
        vec![out.id]
    );
    // Opening again changes nothing.
    drop(store);
    let again = Store::open(dir.path()).expect("reopen");
    assert_eq!(again.activities().expect("activities"), acts);
}

#[tokio::test]
async fn the_feed_numbers_changes_in_their_commit_and_keeps_what_webhooks_need() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    writer
        .webhooks_configured(vec!["crm".into()])
        .await
        .expect("configured");
    let raw = b"Message-ID: <f1@x>\r\nSubject: one\r\n\r\nbody\r\n".to_vec();
    let done = writer
        .ingest(batch(5, vec![message(1, &raw)]))
        .await
        .expect("queued");
    done.await.expect("answered").expect("committed");
    let all = |store: &Store, after| match store.events(after, 100, &|_| true).expect("read") {
        feed::Page::Events(e, _) => e,
        feed::Page::Expired { oldest } => panic!("expired at {oldest}"),
    };
    let events = all(&store, 0);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, 1);
    assert_eq!(events[0].change.kind(), "activity.created");
    assert_eq!(store.feed().last(), 1, "the clock moved with the commit");
    let id = store.activities().expect("acts")[0].id;
    tokio::task::spawn_blocking({
        let writer = writer.clone();
        move || writer.regarding_blocking(id, Some("account:7".into()))
    })
    .await
    .expect("join")
    .expect("regarding");
    let events = all(&store, 1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, 2);
    match &events[0].change {
        feed::Change::ActivityUpdated(a) => {
            assert_eq!(a.regarding.as_deref(), Some("account:7"));
            assert_eq!(a.changed, vec!["regarding".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    // The JSON a consumer reads: type, data, a UTC time with Z.
    let json = serde_json::to_value(&events[0]).expect("json");
    assert_eq!(json["type"], "activity.updated");
    assert!(json["at"].as_str().expect("at").ends_with('Z'), "{json}");
    let back: feed::Event = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, events[0]);

    // A webhook that has had nothing holds back pruning, however old the events are.
    store
        .feed()
        .set_retention(std::time::Duration::from_millis(1));
    let newest = events[0].at;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while chrono::Utc::now() <= newest + chrono::Duration::milliseconds(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock does not move"
        );
        std::thread::yield_now();
    }
    store.feed().force_prune();
    writer
        .webhook_progress("crm", 0, vec![2], 1)
        .await
        .expect("progress");
    writer.flush().await.expect("flush");
    assert_eq!(all(&store, 0).len(), 2, "the webhook still needs event 1");
    let (state, acked) = store.webhook_progress("crm").expect("progress");
    assert_eq!((state.watermark, acked), (0, vec![2]));
    // Once it had both, they go; a reader behind them is told where the feed starts.
    store.feed().force_prune();
    writer
        .webhook_progress("crm", 2, vec![], 1)
        .await
        .expect("progress");
    writer.flush().await.expect("flush");
    let (state, acked) = store.webhook_progress("crm").expect("progress");
    assert_eq!((state.watermark, acked.len()), (2, 0));
    store.feed().force_prune();
    writer
        .alert(
            Alert {
                at: chrono::Utc::now(),
                level: AlertLevel::Warning,
                scope: AlertScope::Mailbox,
                mailbox: Some("a@example.com".into()),
                profile: None,
                code: "test".into(),
                message: "a test alert".into(),
                email: None,
            },
            chrono::Utc::now() - chrono::Duration::days(1),
        )
        .await
        .expect("alert");
    writer.flush().await.expect("flush");
    match store.events(0, 100, &|_| true).expect("read") {
        feed::Page::Expired { oldest } => assert_eq!(oldest, 3),
        feed::Page::Events(e, _) => panic!("not expired: {e:?}"),
    }
    assert_eq!(all(&store, 2)[0].change.kind(), "alert.raised");
    writer.shutdown();
}

#[tokio::test]
async fn reading_mime_up_to_a_byte_budget_stops_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let raw = |n: u32, size: usize| {
        let mut r = format!("Message-ID: <{n}@x>\r\nSubject: {n}\r\n\r\n").into_bytes();
        r.resize(size, b'a');
        r
    };
    let sizes = [1_000, 600_000, 600_000, 1_000];
    let msgs = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| message(i as u32 + 1, &raw(i as u32 + 1, *s)))
        .collect();
    let done = writer.ingest(batch(5, msgs)).await.expect("queued");
    done.await.expect("answered").expect("committed");
    let mut ids: Vec<u64> = store
        .activities()
        .expect("activities")
        .iter()
        .map(|a| a.id)
        .collect();
    ids.sort_unstable();
    // The first two reach the budget: the rest is not read.
    let read = store.activity_raws_up_to(&ids, 500_000).expect("read");
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].as_ref().map(Vec::len), Some(600_000));
    // At least one, however large.
    assert_eq!(
        store
            .activity_raws_up_to(&ids[1..], 10)
            .expect("read")
            .len(),
        1
    );
    // A budget above everything reads everything.
    assert_eq!(
        store
            .activity_raws_up_to(&ids, 10 << 20)
            .expect("read")
            .len(),
        4
    );
    writer.shutdown();
}

//! A delivery status report at ingest, through the one writer: recorded on the sent email's
//! outbox entry in the report's own transaction, the report joined to the sent activity, the
//! feed told; and the same with the report skipped (a bounce is never lost).

use super::*;
use crate::outbox::bounce_record::DeliveryOutcome;
use crate::tracking::automatic::{Automatic, AutomaticSet};
use crate::tracking::message::{content_key, parse_headers};

const SENT: &str = "Message-ID: <sent-1@example.com>\r\nFrom: a@example.com\r\n\
    To: ghost@example.org\r\nSubject: Offer\r\n\r\nhi\r\n";

/// Postfix's report, as `tests/fixtures/bounces/postfix.eml`, about `SENT` with ENVID `envid`.
fn report_raw(envid: u64) -> Vec<u8> {
    String::from_utf8_lossy(include_bytes!("../../tests/fixtures/bounces/postfix.eml"))
        .replace("ob-000043.sidesync@example.com", "sent-1@example.com")
        .replace("ob-000043", &envid.to_string())
        .replace("ghost@example.com", "ghost@example.org")
        .into_bytes()
}

fn report_message(raw: &[u8]) -> PreparedMessage {
    let headers = parse_headers(raw);
    assert_eq!(headers.automatic, Some(Automatic::Bounce), "a bounce");
    PreparedMessage {
        key: SyncKey::Uid(1),
        content_key: Some(content_key(raw)),
        headers,
        raw_encoded: Some(zstd::encode_all(raw, 3).expect("compress")),
        size: raw.len() as u64,
        received_at: None,
        skip: None,
        undeliverable: None,
        attributed_to: None,
        part: 0,
        bounce: crate::outbox::bounce::parse(raw),
        flags: None,
    }
}

fn batch(msg: PreparedMessage, place: TrackingPlace) -> IngestBatch {
    IngestBatch {
        mailbox: "a@example.com".into(),
        source: IngestSource::Folder {
            folder: "INBOX".into(),
            cursor: FolderCursor {
                uidvalidity: 1,
                last_uid: 1,
                ..FolderCursor::default()
            },
        },
        messages: vec![msg],
        failed: Vec::new(),
        failures_before: chrono::Utc::now(),
        place,
        directory: std::sync::Arc::default(),
    }
}

/// Queues and "sends" `SENT`; its outbox id.
async fn sent(writer: &StoreWriter) -> u64 {
    let q = QueuedEmail {
        mailbox: "a@example.com".into(),
        headers: parse_headers(SENT.as_bytes()),
        raw_encoded: zstd::encode_all(SENT.as_bytes(), 1).expect("compress"),
        size: SENT.len() as u64,
        recipients: vec!["ghost@example.org".into()],
        token: None,
        regarding: Some("account:7".into()),
        directory: std::sync::Arc::default(),
        idempotency: None,
    };
    let w = writer.clone();
    let id = match tokio::task::spawn_blocking(move || w.enqueue_blocking(q))
        .await
        .expect("join")
        .expect("queued")
    {
        Enqueued::Queued { id, .. } => id,
        Enqueued::TokenMoved => panic!("no token"),
    };
    let at = chrono::Utc::now();
    writer
        .outbox(id, OutboxUpdate::Sending { at })
        .await
        .expect("sending");
    let sent = OutboxUpdate::Sent {
        at,
        reply: "250 ok".into(),
        results: Vec::new(),
    };
    writer.outbox(id, sent).await.expect("sent");
    writer.flush().await.expect("flush");
    id
}

fn kinds(store: &Store) -> Vec<&'static str> {
    match store.events(0, 100, &|_| true).expect("read") {
        feed::Page::Events(e, _) => e.iter().map(|e| e.change.kind()).collect(),
        feed::Page::Expired { oldest } => panic!("expired at {oldest}"),
    }
}

#[tokio::test]
async fn a_report_is_recorded_on_the_sent_email_and_joins_its_conversation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    webhook_feed(&writer).await;
    let id = sent(&writer).await;
    let done = writer
        .ingest(batch(
            report_message(&report_raw(id)),
            TrackingPlace::default(),
        ))
        .await
        .expect("queued");
    done.await.expect("answered").expect("committed");
    let entry = store.outbox_entry(id).expect("read").expect("entry");
    let [d] = entry.deliveries.as_slice() else {
        panic!("one delivery: {:?}", entry.deliveries)
    };
    assert_eq!(
        (d.address.as_str(), d.outcome, d.status.as_str()),
        ("ghost@example.org", DeliveryOutcome::Bounced, "5.1.1")
    );
    assert_eq!(
        entry.status,
        OutboxStatus::Sent,
        "the status says how sending went"
    );
    let acts = store.activities().expect("activities");
    let sent_act = acts.iter().find(|a| a.id == id).expect("sent activity");
    let report = acts.iter().find(|a| a.id != id).expect("report activity");
    assert_eq!(d.report, Some(report.id));
    assert_eq!(
        report.conversation, sent_act.conversation,
        "joined, not its own"
    );
    assert_eq!(report.regarding.as_deref(), Some("account:7"));
    assert_eq!(report.headers.automatic, Some(Automatic::Bounce));
    let k = kinds(&store);
    assert!(k.contains(&"outbox.bounced"), "{k:?}");
    assert!(k.contains(&"activity.updated"), "{k:?}");
    writer.shutdown();
}

#[tokio::test]
async fn a_skipped_report_is_still_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_writer();
    let id = sent(&writer).await;
    let place = TrackingPlace {
        skip_automatic: AutomaticSet::from_iter([Automatic::Bounce]),
        ..TrackingPlace::default()
    };
    let mut msg = report_message(&report_raw(id));
    // Without its Message-ID clue the ENVID finds it.
    msg.bounce = msg.bounce.map(|mut r| {
        r.original_message_id = None;
        r
    });
    let done = writer.ingest(batch(msg, place)).await.expect("queued");
    done.await.expect("answered").expect("committed");
    let entry = store.outbox_entry(id).expect("read").expect("entry");
    assert_eq!(entry.deliveries.len(), 1, "{:?}", entry.deliveries);
    assert_eq!(entry.deliveries[0].report, None, "the report was skipped");
    assert_eq!(store.activities().expect("activities").len(), 1);
    writer.shutdown();
}

/// The feed keeps events only while someone reads them.
async fn webhook_feed(writer: &StoreWriter) {
    writer
        .webhooks_configured(vec!["crm".into()])
        .await
        .expect("configured");
}

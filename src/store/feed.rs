//! The change feed: every change a downstream system cares about, numbered.
//!
//! The writer collects a transaction's changes in a [`Feed`] and appends them to the `events`
//! table in the same transaction as the changes themselves, with sequence numbers that only
//! grow. A consumer that keeps the last number it processed therefore never misses or reorders
//! anything, across restarts of either side: the number exists exactly when the change does.
//! Old events go after the configured retention, but never before every webhook has had them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Activity, Alert, OutboxEntry, OutboxStatus, StoreError, decode, encode};
use crate::lifecycle::state::{Enablement, MailboxState};

/// seq → [`Event`] (JSON).
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// The next sequence number, in `meta`.
const NEXT_SEQ: &str = "next_event_seq";
/// At most this many old events are dropped in one commit, so pruning a long backlog never
/// makes one commit long.
const PRUNE_PER_COMMIT: usize = 4096;

/// One change, as the feed and the webhooks deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique across every store, shard and restored backup: `evt_{store}_{seq}_{hash}`, the
    /// hash of the event as stored. A redelivery has the same id; two shards' events, or a
    /// restored store's new event at a number the old one had used, never do — so a receiver
    /// that deduplicates by `Webhook-Id` drops only true repeats. Filled when read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The store it comes from (created once with the store; also in `/status`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store: String,
    pub seq: u64,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    /// The mailbox it belongs to (deliveries to one webhook are ordered per mailbox); None for a
    /// profile's or the appliance's alert.
    pub mailbox: Option<String>,
    #[serde(flatten)]
    pub change: Change,
}

/// What changed. `type` names it; `data` carries what a consumer needs to act without asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Change {
    #[serde(rename = "activity.created")]
    ActivityCreated(ActivityChange),
    /// Its regarding, its conversation or its list of mailboxes changed.
    #[serde(rename = "activity.updated")]
    ActivityUpdated(ActivityChange),
    #[serde(rename = "outbox.status_changed")]
    OutboxStatusChanged(OutboxChange),
    /// A delivery status report said a recipient of a sent email bounced or is delayed.
    #[serde(rename = "outbox.bounced")]
    OutboxBounced(OutboxChange),
    #[serde(rename = "mailbox.state_changed")]
    MailboxStateChanged(MailboxChange),
    #[serde(rename = "alert.raised")]
    AlertRaised(AlertChange),
}

impl Change {
    /// The event type's name, as `type` carries it and webhook filters match it.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::ActivityCreated(_) => "activity.created",
            Change::ActivityUpdated(_) => "activity.updated",
            Change::OutboxStatusChanged(_) => "outbox.status_changed",
            Change::OutboxBounced(_) => "outbox.bounced",
            Change::MailboxStateChanged(_) => "mailbox.state_changed",
            Change::AlertRaised(_) => "alert.raised",
        }
    }
}

/// Every event type, for filters and the API's documentation.
pub const EVENT_TYPES: [&str; 6] = [
    "activity.created",
    "activity.updated",
    "outbox.status_changed",
    "outbox.bounced",
    "mailbox.state_changed",
    "alert.raised",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityChange {
    pub id: u64,
    pub direction: super::Direction,
    pub mailboxes: Vec<String>,
    pub conversation: u64,
    pub regarding: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// Written by a machine, and what kind; null for a person's email (and in events stored
    /// before the kinds existed).
    #[serde(default)]
    pub automatic: Option<crate::tracking::automatic::Automatic>,
    /// For `activity.updated`: which of `regarding`, `conversation`, `mailboxes`,
    /// `deliveries`, `server_state` changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Where each mailbox's copy is on its server (see `Activity::server_state`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_state: Vec<crate::tracking::server_state::ServerCopy>,
}

impl ActivityChange {
    pub fn of(a: &Activity, changed: &[&str]) -> ActivityChange {
        ActivityChange {
            id: a.id,
            direction: a.direction,
            mailboxes: if a.mailboxes.is_empty() {
                vec![a.mailbox.clone()]
            } else {
                a.mailboxes.clone()
            },
            conversation: a.conversation,
            regarding: a.regarding.clone(),
            message_id: a.headers.message_id.clone(),
            subject: a.headers.subject.clone(),
            automatic: a.headers.automatic,
            changed: changed.iter().map(|c| c.to_string()).collect(),
            server_state: a.server_state.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxChange {
    pub id: u64,
    pub status: OutboxStatus,
    pub previous: Option<OutboxStatus>,
    pub tries: u32,
    pub last_reply: Option<String>,
    /// What delivery status reports said, per recipient (`outbox.bounced`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<crate::outbox::bounce_record::Delivery>,
}

impl OutboxChange {
    pub fn of(e: &OutboxEntry, previous: Option<OutboxStatus>) -> OutboxChange {
        OutboxChange {
            id: e.id,
            status: e.status,
            previous,
            tries: e.tries,
            last_reply: e.last_reply.clone(),
            deliveries: e.deliveries.clone(),
        }
    }
}

/// The parts of a mailbox's state a downstream system acts on (not its poll times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxChange {
    pub incoming_status: String,
    pub outgoing_status: String,
    pub incoming_enablement: String,
    pub outgoing_enablement: String,
    /// The approval set through the API or the CLI, if any (else the config's holds).
    pub approval: Option<String>,
    /// The code of the last error, while there is one.
    pub error_code: Option<String>,
    /// Why a direction is disabled (its code and reason), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_disabled: Option<Disabled>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_disabled: Option<Disabled>,
}

/// A disabled direction's code and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub code: String,
    pub reason: String,
}

fn enablement_name(e: &Enablement) -> &'static str {
    match e {
        Enablement::NotTested => "not_tested",
        Enablement::Enabled => "enabled",
        Enablement::Disabled { .. } => "disabled",
    }
}

fn disabled(e: &Enablement) -> Option<Disabled> {
    match e {
        Enablement::Disabled { code, reason, .. } => Some(Disabled {
            code: code.clone(),
            reason: reason.clone(),
        }),
        _ => None,
    }
}

impl MailboxChange {
    pub fn of(s: &MailboxState) -> MailboxChange {
        let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
        MailboxChange {
            incoming_status: name(serde_json::json!(s.incoming_status)),
            outgoing_status: name(serde_json::json!(s.outgoing_status)),
            // An enablement serializes as an object (its reason with it), not a word: named
            // here, or every enablement read as "" and a disable made no event at all.
            incoming_enablement: enablement_name(&s.incoming_enablement).to_string(),
            outgoing_enablement: enablement_name(&s.outgoing_enablement).to_string(),
            incoming_disabled: disabled(&s.incoming_enablement),
            outgoing_disabled: disabled(&s.outgoing_enablement),
            approval: s.approval_override.as_ref().map(|a| a.approval.clone()),
            error_code: s.last_error.as_ref().map(|e| e.code.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    pub id: u64,
    pub level: super::AlertLevel,
    /// Email, mailbox or profile; absent in events stored before the feed carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<super::AlertScope>,
    pub profile: Option<String>,
    pub code: String,
    pub message: String,
    /// The email an email-scope alert is about (activity, sync id or outbox id, subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<super::AlertEmail>,
}

/// The changes of one transaction, in the order they were made.
#[derive(Default)]
pub struct Feed {
    changes: Vec<(Option<String>, Change)>,
}

impl Feed {
    pub fn push(&mut self, mailbox: Option<&str>, change: Change) {
        self.changes.push((mailbox.map(str::to_string), change));
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What the writer knows of the feed between commits: the last committed number (the HTTP
/// long-polls wait on it, the webhook dispatcher is woken by it) and the retention.
pub struct FeedClock {
    last: Mutex<u64>,
    moved: Condvar,
    /// Wakes the webhook dispatcher (an async task) after a commit with events.
    pub notify: tokio::sync::Notify,
    /// Events older than this many milliseconds may go (0: kept for ever).
    retention_ms: AtomicU64,
    /// When the writer last pruned (unix seconds).
    last_prune: AtomicU64,
}

impl Default for FeedClock {
    fn default() -> Self {
        FeedClock {
            last: Mutex::new(0),
            moved: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            retention_ms: AtomicU64::new(7 * 86_400_000),
            last_prune: AtomicU64::new(0),
        }
    }
}

impl FeedClock {
    pub fn set(&self, seq: u64) {
        if let Ok(mut last) = self.last.lock()
            && seq > *last
        {
            *last = seq;
            self.moved.notify_all();
        }
        self.notify.notify_waiters();
    }

    pub fn last(&self) -> u64 {
        self.last.lock().map(|l| *l).unwrap_or(0)
    }

    /// Blocks until an event after `after` is committed or `timeout` passes; the last number.
    pub fn wait_after(&self, after: u64, timeout: std::time::Duration) -> u64 {
        let Ok(guard) = self.last.lock() else {
            return 0;
        };
        match self
            .moved
            .wait_timeout_while(guard, timeout, |last| *last <= after)
        {
            Ok((last, _)) => *last,
            Err(_) => 0,
        }
    }

    /// The next commit prunes, whenever the last prune was (tests).
    pub fn force_prune(&self) {
        self.last_prune.store(0, Ordering::Relaxed);
    }

    pub fn set_retention(&self, retention: std::time::Duration) {
        let ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        self.retention_ms.store(ms, Ordering::Relaxed);
    }
}

/// Appends the transaction's changes; returns the last number given (None: there were none).
/// Every so often it also drops events past the retention that every webhook has had.
/// `lowest_watermark` tells what every webhook has had (None: there are no webhooks).
pub(super) fn append(
    txn: &WriteTransaction,
    feed: Feed,
    clock: &FeedClock,
    lowest_watermark: &dyn Fn(&WriteTransaction) -> Result<Option<u64>, StoreError>,
) -> Result<Option<u64>, StoreError> {
    let now = Utc::now();
    let mut last = None;
    if !feed.is_empty() {
        let mut meta = txn.open_table(super::META)?;
        let mut seq = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(1);
        let mut events = txn.open_table(EVENTS)?;
        for (mailbox, change) in feed.changes {
            let event = Event {
                id: String::new(),
                store: String::new(),
                seq,
                at: now,
                mailbox,
                change,
            };
            events.insert(seq, encode(&event).as_slice())?;
            last = Some(seq);
            seq += 1;
        }
        meta.insert(NEXT_SEQ, seq)?;
    }
    let unix = now.timestamp().max(0) as u64;
    if unix >= clock.last_prune.load(Ordering::Relaxed) + 10 {
        clock.last_prune.store(unix, Ordering::Relaxed);
        let keep_from = lowest_watermark(txn)?.map_or(u64::MAX, |w| w + 1);
        prune(
            txn,
            now,
            clock.retention_ms.load(Ordering::Relaxed),
            keep_from,
        )?;
    }
    Ok(last)
}

/// Drops events older than the retention, up to the lowest webhook watermark (what every
/// webhook has delivered or dead-lettered).
fn prune(
    txn: &WriteTransaction,
    now: DateTime<Utc>,
    retention: u64,
    keep_from: u64,
) -> Result<(), StoreError> {
    if retention == 0 {
        return Ok(());
    }
    let cutoff = now - chrono::Duration::milliseconds(retention.min(i64::MAX as u64 / 4) as i64);
    let mut events = txn.open_table(EVENTS)?;
    for _ in 0..PRUNE_PER_COMMIT {
        let first = match events.first()? {
            Some((k, v)) => (k.value(), decode::<Event>("event", v.value()).ok()),
            None => break,
        };
        match first {
            (seq, Some(e)) if seq < keep_from && e.at < cutoff => {
                events.remove(seq)?;
            }
            (seq, None) if seq < keep_from => {
                events.remove(seq)?;
            }
            _ => break,
        }
    }
    Ok(())
}

/// Events one read looks at most (a filter that keeps few must not scan the whole feed).
const MAX_SCAN: usize = 100_000;

/// What `GET /api/v1/events` reads.
pub enum Page {
    /// Events after the asked number (possibly none), in order, and the last number looked at
    /// (where the next read goes on from).
    Events(Vec<Event>, u64),
    /// The asked number is older than what the feed keeps: the oldest it has.
    Expired { oldest: u64 },
}

/// The events after `after`, at most `limit`, from a read transaction.
pub(super) fn read(
    txn: &redb::ReadTransaction,
    after: u64,
    limit: usize,
    keep: &dyn Fn(&Event) -> bool,
) -> Result<Page, StoreError> {
    let meta = txn.open_table(super::META)?;
    let next = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(1);
    let events = txn.open_table(EVENTS)?;
    let oldest = events.first()?.map_or(next, |(k, _)| k.value());
    if after + 1 < oldest {
        return Ok(Page::Expired { oldest });
    }
    let store = super::store_id_in(&meta)?;
    let mut out = Vec::new();
    let mut seen = after;
    for row in events.range(after.saturating_add(1)..)?.take(MAX_SCAN) {
        let row = row?;
        let raw = row.1.value();
        let mut e: Event = decode("event", raw)?;
        seen = e.seq;
        e.id = event_id(&store, e.seq, raw);
        e.store = store.clone();
        if keep(&e) {
            out.push(e);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(Page::Events(out, seen))
}

/// The number the next event gets.
pub(super) fn next_seq(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(super::META)?;
    Ok(meta.get(NEXT_SEQ)?.map_or(1, |v| v.value()))
}

/// The last number given so far (0: none), for the clock at start.
pub(super) fn last_seq(txn: &redb::ReadTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(super::META)?;
    Ok(meta
        .get(NEXT_SEQ)?
        .map_or(0, |v| v.value().saturating_sub(1)))
}

/// `evt_{store}_{seq}_{first 8 hex digits of the stored event's SHA-256}`.
pub fn event_id(store: &str, seq: u64, stored: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(stored);
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{store}_{seq}_{hash}")
}

/// An alert's change, as the feed carries it.
pub(super) fn alert_change(id: u64, a: &Alert) -> Change {
    Change::AlertRaised(AlertChange {
        id,
        level: a.level,
        scope: Some(a.scope),
        profile: a.profile.clone(),
        code: a.code.clone(),
        message: a.message.clone(),
        email: a.email.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AlertEmail, AlertLevel, AlertScope};

    #[test]
    fn a_mailbox_being_disabled_or_enabled_is_a_change_with_words() {
        let mut s = MailboxState::default();
        let not_tested = MailboxChange::of(&s);
        assert_eq!(not_tested.incoming_enablement, "not_tested");
        s.incoming_enablement = Enablement::Enabled;
        let enabled = MailboxChange::of(&s);
        assert_eq!(enabled.incoming_enablement, "enabled");
        assert_ne!(enabled, not_tested);
        s.incoming_enablement = Enablement::Disabled {
            code: "auth_failed".into(),
            reason: "the server refused the password".into(),
            at: Utc::now(),
        };
        let disabled = MailboxChange::of(&s);
        assert_eq!(disabled.incoming_enablement, "disabled");
        assert_eq!(
            disabled.incoming_disabled.as_ref().map(|d| d.code.as_str()),
            Some("auth_failed")
        );
        assert_ne!(disabled, enabled);
        assert_eq!(disabled.outgoing_enablement, "not_tested");
    }

    #[test]
    fn an_alert_event_carries_its_scope_and_email_and_old_events_still_read() {
        let alert = Alert {
            at: Utc::now(),
            level: AlertLevel::Warning,
            scope: AlertScope::Email,
            mailbox: Some("a@x".into()),
            profile: Some("p".into()),
            code: "message_too_large".into(),
            message: "too large".into(),
            email: Some(AlertEmail {
                folder: Some("INBOX".into()),
                uidvalidity: Some(7),
                uid: Some(3),
                ..AlertEmail::default()
            }),
        };
        let data = serde_json::to_value(alert_change(5, &alert)).expect("json");
        assert_eq!(data["data"]["scope"], "email", "{data}");
        assert_eq!(data["data"]["email"]["uid"], 3, "{data}");
        let old = serde_json::json!({"type": "alert.raised", "data": {"id": 1, "level": "error",
            "profile": null, "code": "c", "message": "m"}});
        let read: Change = serde_json::from_value(old).expect("an event stored before");
        assert!(matches!(
            read,
            Change::AlertRaised(AlertChange {
                scope: None,
                email: None,
                ..
            })
        ));
    }
}

#[cfg(test)]
mod id_tests {
    use crate::store::Store;
    use crate::store::feed::Page;

    fn first_event_id(store: &Store) -> (String, String) {
        let Ok(Page::Events(events, _)) = store.events(0, 10, &|_| true) else {
            panic!("events")
        };
        let e = events.first().expect("an event");
        (e.id.clone(), e.store.clone())
    }

    async fn one_alert(store: &Store, message: &str) {
        let writer = store.start_writer();
        let alert = crate::store::Alert {
            at: chrono::Utc::now(),
            level: crate::store::AlertLevel::Warning,
            scope: crate::store::AlertScope::Profile,
            mailbox: None,
            profile: Some("p".into()),
            code: "c".into(),
            message: message.into(),
            email: None,
        };
        writer
            .alert(alert, chrono::Utc::now() - chrono::Duration::days(1))
            .await
            .expect("alert");
        writer.flush().await.expect("flush");
        writer.shutdown();
    }

    fn store_file(d: &std::path::Path) -> std::path::PathBuf {
        std::fs::read_dir(d)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_file())
            .expect("the store file")
    }

    #[tokio::test]
    async fn event_ids_differ_across_stores_and_restores_and_stay_for_redeliveries() {
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        drop(Store::open(a.path()).expect("a"));
        // A backup of `a` before any event.
        let backup = tempfile::tempdir().expect("dir");
        let a_file = store_file(a.path());
        let name = a_file.file_name().expect("name").to_owned();
        std::fs::copy(&a_file, backup.path().join(&name)).expect("copy");
        let (sa, sb) = (
            Store::open(a.path()).expect("a"),
            Store::open(b.path()).expect("b"),
        );
        one_alert(&sa, "same").await;
        one_alert(&sb, "same").await;
        let (ida, storea) = first_event_id(&sa);
        let (idb, storeb) = first_event_id(&sb);
        assert_ne!(storea, storeb, "each store its own id");
        assert_eq!(storea.len(), 32);
        assert!(ida.starts_with(&format!("evt_{storea}_1_")), "{ida}");
        assert_ne!(ida, idb, "two shards' first events");
        assert_eq!(
            first_event_id(&sa).0,
            ida,
            "read again (a redelivery): the same id"
        );
        assert_eq!(sa.store_id().expect("id"), storea);
        // The backup restored: the same store id, the same number for another event, another id.
        let restored = Store::open(backup.path()).expect("restored");
        one_alert(&restored, "another").await;
        let (idr, storer) = first_event_id(&restored);
        assert_eq!(storer, storea);
        assert!(idr.starts_with(&format!("evt_{storea}_1_")), "{idr}");
        assert_ne!(idr, ida, "a restored store's new event is not the old one");
    }
}

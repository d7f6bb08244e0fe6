//! What the writer does with incoming and queued email: the tracking decision at commit (over its
//! own transaction, so two mailboxes committing the same email in one group still make one
//! activity), the activity and its index rows, links of duplicates, regarding and contacts.

use std::collections::BTreeMap;

use chrono::Utc;
use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::batch::{Enqueued, IngestBatch, IngestOutcome, IngestSource, QueuedEmail, SyncKey};
use super::feed::{ActivityChange, Change, Feed, OutboxChange};
use super::index::TableLookups;
use super::tokens::{Claimed, TOKEN_ACTIVITIES, index_token, record_claim};
use super::{
    ACTIVITIES, ACTIVITY_RAW, Activity, CONTACTS, CONVERSATIONS, Direction, EMAIL_INDEX,
    FOLDER_CURSORS, ITEM_FAILURES, ItemFailure, MAILBOX_STATE, MailboxState, NOT_TRACKED, OUTBOX,
    OUTBOX_COUNTS, OUTBOX_DUE, OutboxCounts, OutboxEntry, OutboxStatus, POP3_SYNC_ID_MAP,
    REGARDING_INDEX, SUBJECT_INDEX, SYNC_ID_MAP, StoreError, decode, due_key, encode, is_activity,
    skip_marker,
};
use super::{load, next_id};
use crate::tracking::decision::{
    Correlation, Decision, Directory, Email, Lookups, Place, SkipReason, correlate, fingerprint,
    message_id_key, resolved_parties,
};
use crate::tracking::server_state;
use crate::tracking::subject::subject_hash;

type IdIndex<'t> = Table<'t, &'static str, u64>;

/// The tables an activity's rows live in.
struct ActivityTables<'t> {
    activities: Table<'t, u64, &'static [u8]>,
    email: IdIndex<'t>,
    tokens: Table<'t, (&'static str, u64), ()>,
    subjects: Table<'t, (u64, u64), ()>,
    conversations: Table<'t, (u64, u64), ()>,
    regarding: Table<'t, (&'static str, u64), ()>,
    contacts: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> ActivityTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(ActivityTables {
            activities: txn.open_table(ACTIVITIES)?,
            email: txn.open_table(EMAIL_INDEX)?,
            tokens: txn.open_table(TOKEN_ACTIVITIES)?,
            subjects: txn.open_table(SUBJECT_INDEX)?,
            conversations: txn.open_table(CONVERSATIONS)?,
            regarding: txn.open_table(REGARDING_INDEX)?,
            contacts: txn.open_table(CONTACTS)?,
        })
    }

    /// Writes a new activity and its index rows. The duplicate-check key keeps its first
    /// activity.
    fn insert(&mut self, a: &Activity) -> Result<(), StoreError> {
        if self.email.get(a.key.as_str())?.is_none() {
            self.email.insert(a.key.as_str(), a.id)?;
        }
        let hash = subject_hash(a.headers.subject.as_deref().unwrap_or_default());
        if hash != 0 {
            self.subjects.insert((hash, a.id), ())?;
        }
        self.conversations.insert((a.conversation, a.id), ())?;
        if let Some(r) = &a.regarding {
            self.regarding.insert((r.as_str(), a.id), ())?;
        }
        self.activities.insert(a.id, encode(a).as_slice())?;
        Ok(())
    }

    /// The tracking look-ups over these very tables (what this transaction has written
    /// included).
    fn lookups<'a>(&'a self, directory: &'a Directory) -> impl Lookups + 'a {
        TableLookups {
            email: &self.email,
            tokens: &self.tokens,
            subjects: &self.subjects,
            activities: &self.activities,
            contacts: &self.contacts,
            directory,
        }
    }

    fn get(&self, id: u64) -> Result<Option<Activity>, StoreError> {
        self.activities
            .get(id)?
            .map(|v| decode("activity", v.value()))
            .transpose()
    }

    /// A duplicate: the mailbox joins the activity's list; a tracking folder's regarding
    /// replaces the activity's (so an email moved into a tracking folder after its ingest is
    /// about that folder's record); `found` (the folder and flags of an IMAP copy) records
    /// where the mailbox's copy is. The change goes to the feed.
    fn link(
        &mut self,
        id: u64,
        mailbox: &str,
        regarding: Option<String>,
        found: Option<(&str, Option<&[String]>)>,
        feed: &mut Feed,
    ) -> Result<(), StoreError> {
        let Some(mut a) = self.get(id)? else {
            return Ok(());
        };
        let mut changed = Vec::new();
        let mut quiet = false;
        if let Some((folder, flags)) = found {
            match server_state::observe(
                &mut a.server_state,
                mailbox,
                folder,
                server_state::Seen::Found { flags },
                Utc::now(),
            ) {
                server_state::Outcome::Changed => changed.push("server_state"),
                server_state::Outcome::Quiet => quiet = true,
                server_state::Outcome::Unchanged => {}
            }
        }
        if a.mailboxes.is_empty() {
            a.mailboxes.push(a.mailbox.clone());
        }
        if !a.mailboxes.iter().any(|m| m == mailbox) {
            a.mailboxes.push(mailbox.to_string());
            changed.push("mailboxes");
        }
        if let Some(r) = regarding
            && a.regarding.as_deref() != Some(r.as_str())
        {
            self.set_regarding(&mut a, Some(r))?;
            changed.push("regarding");
        }
        if !changed.is_empty() || quiet {
            self.activities.insert(id, encode(&a).as_slice())?;
        }
        if !changed.is_empty() {
            feed.push(
                Some(mailbox),
                Change::ActivityUpdated(ActivityChange::of(&a, &changed)),
            );
        }
        Ok(())
    }

    fn set_regarding(
        &mut self,
        a: &mut Activity,
        regarding: Option<String>,
    ) -> Result<(), StoreError> {
        if let Some(old) = &a.regarding {
            self.regarding.remove((old.as_str(), a.id))?;
        }
        if let Some(new) = &regarding {
            self.regarding.insert((new.as_str(), a.id), ())?;
        }
        a.regarding = regarding;
        Ok(())
    }
}

pub(super) fn apply_ingest(
    txn: &WriteTransaction,
    batch: &IngestBatch,
    feed: &mut Feed,
) -> Result<IngestOutcome, StoreError> {
    let mut out = IngestOutcome::default();
    let mut raw_bytes = 0u64;
    let mailbox = batch.mailbox.as_str();
    let folder = batch.source.folder();
    let place = Place {
        mailbox,
        track: batch.place.track,
        skip_automatic: batch.place.skip_automatic,
        tracking_folder: batch.place.tracking_folder.as_ref().map(|r| r.as_deref()),
        sent: batch.place.sent,
    };
    let mut decisions: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failed: Vec<ItemFailure> = Vec::new();
    // Forwards mapped before this batch: every email they carried is stored already.
    let mut replayed: Vec<&SyncKey> = Vec::new();
    let mut noise_seen = 0u64;
    {
        let mut map = txn.open_table(SYNC_ID_MAP)?;
        let mut uidl_map = txn.open_table(POP3_SYNC_ID_MAP)?;
        let mut t = ActivityTables::open(txn)?;
        let mut raw = txn.open_table(ACTIVITY_RAW)?;
        let mut failures = txn.open_table(ITEM_FAILURES)?;
        let mut outbox = txn.open_table(OUTBOX)?;
        let now = Utc::now();
        for m in &batch.messages {
            // Already mapped (a batch replayed after a lost answer): nothing to do.
            let mapped = match (&batch.source, &m.key) {
                (IngestSource::Folder { cursor, .. }, SyncKey::Uid(uid)) => map
                    .get((mailbox, folder, cursor.uidvalidity, *uid))?
                    .is_some(),
                (IngestSource::Maildrop { .. }, SyncKey::Uidl(uidl)) => {
                    uidl_map.get((mailbox, uidl.as_str()))?.is_some()
                }
                _ => {
                    return Err(StoreError::Commit(format!(
                        "a message keyed {:?} does not belong in a batch from {folder}",
                        m.key
                    )));
                }
            };
            if m.part > 0 && replayed.contains(&&m.key) {
                continue;
            }
            if mapped && m.part == 0 {
                replayed.push(&m.key);
                continue;
            }
            // A forwarded email is its user's, judged by the user's filter.
            let owner = m.attributed_to.as_deref().unwrap_or(mailbox);
            let forwarded_place;
            let place = match &m.attributed_to {
                Some(user) => {
                    let info = batch.directory.mailboxes.get(user);
                    forwarded_place = Place {
                        mailbox: user,
                        track: info
                            .map_or(crate::tracking::decision::Track::Responses, |i| i.track),
                        skip_automatic: info.map(|i| i.skip_automatic).unwrap_or_default(),
                        tracking_folder: None,
                        sent: false,
                    };
                    &forwarded_place
                }
                None => &place,
            };
            let mut decision = match (&m.undeliverable, m.skip) {
                (Some(error), _) => Decision::Undeliverable(error.clone()),
                (None, Some(reason)) => Decision::Skip(reason),
                (None, None) => {
                    let look = t.lookups(&batch.directory);
                    crate::tracking::decision::decide(
                        Email {
                            headers: &m.headers,
                            content_key: m.content_key.as_deref(),
                        },
                        place,
                        &batch.directory.correlation,
                        &look,
                    )
                }
            };
            let sent = match &m.bounce {
                Some(report) => {
                    super::bounces::find_sent(&outbox, &t.activities, &t.email, report, owner)?
                }
                None => None,
            };
            if let (Decision::Track(new), Some(s)) = (&mut decision, &sent) {
                // A report joins the email it is about instead of starting a conversation.
                new.conversation = Some(s.activity.conversation);
                if new.regarding.is_none() {
                    new.regarding = s.activity.regarding.clone();
                }
            }
            *decisions.entry(decision.counter()).or_default() += 1;
            // The copy on this mailbox's server an IMAP folder holds (a forward's emails are
            // their users', not this folder's).
            let own_copy = match (&batch.source, &m.attributed_to) {
                (IngestSource::Folder { .. }, None) => Some((folder, m.flags.as_deref())),
                _ => None,
            };
            if m.headers.automatic.is_some() {
                // Machine-written email, whatever became of it (skipped, or joined a thread).
                noise_seen += 1;
            }
            let value = match decision {
                Decision::Track(new) => match &m.raw_encoded {
                    Some(encoded) => {
                        let id = next_id(txn, "next_activity_id")?;
                        let key = new
                            .key
                            .or_else(|| m.content_key.clone())
                            .unwrap_or_else(|| format!("activity:{id}"));
                        let activity = Activity {
                            id,
                            // What the user sent from their own client is outgoing email.
                            direction: if batch.place.sent {
                                Direction::Outgoing
                            } else {
                                Direction::Incoming
                            },
                            mailbox: owner.to_string(),
                            folder: folder.to_string(),
                            mailboxes: vec![owner.to_string()],
                            conversation: new.conversation.unwrap_or(id),
                            regarding: new.regarding,
                            correlation: new.method,
                            parties: new.parties,
                            key,
                            fingerprint: new.fingerprint,
                            reused_message_id: new.reused_message_id,
                            headers: m.headers.clone(),
                            size: m.size,
                            received_at: m.received_at,
                            created_at: now,
                            server_state: own_copy
                                .map(|(folder, flags)| {
                                    let mut copies = Vec::new();
                                    server_state::observe(
                                        &mut copies,
                                        owner,
                                        folder,
                                        server_state::Seen::Found { flags },
                                        now,
                                    );
                                    copies
                                })
                                .unwrap_or_default(),
                        };
                        if activity.reused_message_id {
                            tracing::warn!(
                                mailbox,
                                activity = id,
                                message_id = activity.headers.message_id.as_deref().unwrap_or(""),
                                "an email reuses the Message-ID of another tracked email; kept as its own activity"
                            );
                        }
                        t.insert(&activity)?;
                        raw.insert(id, encoded.as_slice())?;
                        feed.push(
                            Some(owner),
                            Change::ActivityCreated(ActivityChange::of(&activity, &[])),
                        );
                        out.created += 1;
                        raw_bytes += m.size;
                        id
                    }
                    // The pre-screen found it a duplicate, the commit does not: it cannot
                    // happen while index rows are never removed, but if it does the email is
                    // listed to be retried rather than lost.
                    None => {
                        failed.push(item_failure(
                            batch,
                            &m.key,
                            m.size,
                            "email_not_stored",
                            "its body was not fetched; retry it".to_string(),
                        ));
                        NOT_TRACKED
                    }
                },
                Decision::Duplicate {
                    activity,
                    regarding,
                } => {
                    t.link(activity, owner, regarding, own_copy, feed)?;
                    out.linked += 1;
                    activity
                }
                Decision::Skip(reason) => {
                    out.skipped += 1;
                    skip_marker(reason)
                }
                Decision::Undeliverable(error) => {
                    failed.push(item_failure(batch, &m.key, m.size, "undeliverable", error));
                    NOT_TRACKED
                }
            };
            if let (Some(s), Some(report)) = (sent, &m.bounce) {
                // Recorded even when the report itself is skipped: a bounce is never lost.
                let kept = is_activity(value).then_some(value);
                super::bounces::record(&mut outbox, s, report, kept, now, feed)?;
            }
            // The emails of one forward share its entry: it names an activity only when every
            // one of them is one (a forward is deleted only then).
            let keep_first = m.part > 0 && is_activity(value);
            let item = match (&batch.source, &m.key) {
                (IngestSource::Folder { cursor, .. }, SyncKey::Uid(uid)) => {
                    if !keep_first {
                        map.insert((mailbox, folder, cursor.uidvalidity, *uid), value)?;
                    }
                    ItemFailure::imap_key(folder, cursor.uidvalidity, *uid)
                }
                (_, SyncKey::Uidl(uidl)) => {
                    if !keep_first {
                        uidl_map.insert((mailbox, uidl.as_str()), (value, now.timestamp()))?;
                    }
                    ItemFailure::pop3_key(uidl)
                }
                (_, SyncKey::Uid(_)) => String::new(),
            };
            if is_activity(value) {
                // Stored at last: an earlier failure of this email is over.
                failures.remove((mailbox, item.as_str()))?;
            }
        }
        match &batch.source {
            IngestSource::Folder { folder, cursor } => {
                let mut cursors = txn.open_table(FOLDER_CURSORS)?;
                cursors.insert((mailbox, folder.as_str()), encode(cursor).as_slice())?;
            }
            IngestSource::Maildrop { skipped } => {
                let marker = skip_marker(SkipReason::BeforeProcessDate);
                for uidl in skipped {
                    if uidl_map.get((mailbox, uidl.as_str()))?.is_none() {
                        uidl_map.insert((mailbox, uidl.as_str()), (marker, now.timestamp()))?;
                        *decisions
                            .entry(SkipReason::BeforeProcessDate.as_str())
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    let all_failed: Vec<ItemFailure> = batch.failed.iter().cloned().chain(failed).collect();
    record_item_failures(txn, mailbox, &all_failed, batch.failures_before)?;
    let mut states = txn.open_table(MAILBOX_STATE)?;
    let mut state: MailboxState = load(&states, mailbox, "mailbox state")?;
    state.items_failed_last_sync += all_failed.len() as u64;
    state.activities_stored += u64::from(out.created);
    if out.created > 0 {
        state.last_email_at = Some(chrono::Utc::now());
    }
    state.raw_bytes_stored += raw_bytes;
    out.bytes = raw_bytes;
    state.items_processed_last_sync += u64::from(out.created + out.linked + out.skipped);
    for (k, n) in decisions {
        *state.decisions.entry(k.to_string()).or_default() += n;
    }
    state.noise_seen += noise_seen;
    states.insert(mailbox, encode(&state).as_slice())?;
    Ok(out)
}

/// The item failure of an email of this batch.
fn item_failure(
    batch: &IngestBatch,
    key: &SyncKey,
    size: u64,
    code: &str,
    error: String,
) -> ItemFailure {
    let now = Utc::now();
    let (folder, uidvalidity, uid, uidl) = match (&batch.source, key) {
        (IngestSource::Folder { folder, cursor }, SyncKey::Uid(uid)) => {
            (folder.clone(), Some(cursor.uidvalidity), Some(*uid), None)
        }
        (source, SyncKey::Uidl(u)) => (source.folder().to_string(), None, None, Some(u.clone())),
        (source, SyncKey::Uid(uid)) => (source.folder().to_string(), None, Some(*uid), None),
    };
    ItemFailure {
        folder,
        uidvalidity,
        uid,
        uidl,
        size,
        code: code.to_string(),
        error,
        tries: 1,
        skipped: true,
        first_at: now,
        last_at: now,
        moved_to: None,
    }
}

/// Writes item failures (a repeated one keeps its first time and counts a try) and drops the
/// mailbox's failures older than the retention.
fn record_item_failures(
    txn: &WriteTransaction,
    mailbox: &str,
    failed: &[ItemFailure],
    before: chrono::DateTime<Utc>,
) -> Result<(), StoreError> {
    if failed.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(ITEM_FAILURES)?;
    let mut uidl_map = txn.open_table(POP3_SYNC_ID_MAP)?;
    let mut uid_map = txn.open_table(SYNC_ID_MAP)?;
    let mut expired = Vec::new();
    for row in table.range((mailbox, "")..=(mailbox, "\u{10ffff}"))? {
        let (k, v) = row?;
        let f: ItemFailure = decode("item failure", v.value())?;
        if f.last_at < before {
            expired.push(k.value().1.to_string());
        }
    }
    for key in expired {
        table.remove((mailbox, key.as_str()))?;
    }
    for f in failed {
        let key = f.item_key();
        let mut record = f.clone();
        if let Some(old) = table.get((mailbox, key.as_str()))? {
            let old: ItemFailure = decode("item failure", old.value())?;
            record.first_at = old.first_at;
            record.tries = old.tries + f.tries;
        }
        table.insert((mailbox, key.as_str()), encode(&record).as_slice())?;
        // A skipped email's sync id map entry names no activity.
        if let (Some(uidl), true) = (&f.uidl, f.skipped)
            && uidl_map.get((mailbox, uidl.as_str()))?.is_none()
        {
            uidl_map.insert(
                (mailbox, uidl.as_str()),
                (NOT_TRACKED, f.last_at.timestamp()),
            )?;
        }
        if let (Some(v), Some(uid), true) = (f.uidvalidity, f.uid, f.skipped) {
            let key = (mailbox, f.folder.as_str(), v, uid);
            if uid_map.get(key)?.is_none() {
                uid_map.insert(key, NOT_TRACKED)?;
            }
        }
    }
    Ok(())
}

pub(super) fn apply_enqueue(
    txn: &WriteTransaction,
    email: &QueuedEmail,
    feed: &mut Feed,
) -> Result<Enqueued, StoreError> {
    // A retry of a request already queued (two at once included): its email, not a new one.
    if let Some((key, _)) = &email.idempotency
        && let Some(first) = super::outbox_actions::recall(
            &txn.open_table(super::outbox_actions::IDEMPOTENCY)?,
            key,
        )?
    {
        return Ok(Enqueued::Queued {
            id: first.id,
            replayed: true,
        });
    }
    // The token's counter moves in this transaction, with the email: before anything is written,
    // so an email whose token another took first leaves no trace.
    if let Some(token) = &email.token
        && record_claim(txn, &email.mailbox, token)? == Claimed::Moved
    {
        return Ok(Enqueued::TokenMoved);
    }
    let id = next_id(txn, "next_activity_id")?;
    let now = Utc::now();
    let mut t = ActivityTables::open(txn)?;
    // A reply (In-Reply-To, References) joins its conversation; its own token is new.
    let correlation = Correlation {
        in_reply_to: true,
        tracking_token: None,
        smart_matching: false,
    };
    let (joined, parties) = {
        let look = t.lookups(&email.directory);
        (
            correlate(&email.headers, &correlation, &look),
            resolved_parties(&email.headers, &look),
        )
    };
    let key = email
        .headers
        .message_id
        .as_deref()
        .map(message_id_key)
        .unwrap_or_else(|| format!("activity:{id}"));
    let (conversation, inherited, method) = match joined {
        Some((tracked, m)) => (tracked.conversation, tracked.regarding, Some(m)),
        None => (id, None, None),
    };
    let activity = Activity {
        id,
        direction: Direction::Outgoing,
        mailbox: email.mailbox.clone(),
        folder: String::new(),
        mailboxes: vec![email.mailbox.clone()],
        conversation,
        regarding: email.regarding.clone().or(inherited),
        correlation: method,
        parties,
        key,
        fingerprint: fingerprint(&email.headers),
        reused_message_id: false,
        headers: email.headers.clone(),
        size: email.size,
        received_at: None,
        created_at: now,
        // Its copy in the Sent folder, if saved, is recorded when the folder is read.
        server_state: Vec::new(),
    };
    t.insert(&activity)?;
    drop(t);
    if let Some(token) = &email.token {
        index_token(txn, &token.claim.token, id)?;
    }
    txn.open_table(ACTIVITY_RAW)?
        .insert(id, email.raw_encoded.as_slice())?;
    let entry = OutboxEntry {
        id,
        mailbox: email.mailbox.clone(),
        recipients: email.recipients.clone(),
        status: OutboxStatus::PendingSend,
        tries: 0,
        queued_at: now,
        next_attempt_at: now,
        sent_at: None,
        last_reply: None,
        recipient_results: Vec::new(),
        sent_copy: None,
        deliveries: Vec::new(),
    };
    txn.open_table(OUTBOX_DUE)?.insert((due_key(now), id), ())?;
    let mut counts_table = txn.open_table(OUTBOX_COUNTS)?;
    let mut counts: OutboxCounts = load(&counts_table, email.mailbox.as_str(), "outbox counts")?;
    counts.moved(None, OutboxStatus::PendingSend);
    counts_table.insert(email.mailbox.as_str(), encode(&counts).as_slice())?;
    txn.open_table(OUTBOX)?
        .insert(id, encode(&entry).as_slice())?;
    let mailbox = Some(email.mailbox.as_str());
    feed.push(
        mailbox,
        Change::ActivityCreated(ActivityChange::of(&activity, &[])),
    );
    feed.push(
        mailbox,
        Change::OutboxStatusChanged(OutboxChange::of(&entry, None)),
    );
    if let Some((key, record)) = &email.idempotency {
        let record = super::outbox_actions::IdempotencyRecord {
            id,
            ..record.clone()
        };
        super::outbox_actions::remember(txn, key, &record)?;
    }
    Ok(Enqueued::Queued {
        id,
        replayed: false,
    })
}

/// Sets what an activity is about; nothing when there is no such activity (the API checks).
pub(super) fn apply_regarding(
    txn: &WriteTransaction,
    id: u64,
    regarding: Option<String>,
    feed: &mut Feed,
) -> Result<(), StoreError> {
    let mut t = ActivityTables::open(txn)?;
    let Some(mut a) = t.get(id)? else {
        return Ok(());
    };
    if a.regarding == regarding {
        return Ok(());
    }
    t.set_regarding(&mut a, regarding)?;
    t.activities.insert(id, encode(&a).as_slice())?;
    feed.push(
        Some(a.mailbox.as_str()),
        Change::ActivityUpdated(ActivityChange::of(&a, &["regarding"])),
    );
    Ok(())
}

/// A change to the known contacts: addresses (lower case) with their records, and addresses to
/// forget. `replace` first forgets every contact (a full load).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactsUpdate {
    #[serde(default)]
    pub upsert: Vec<(String, Vec<String>)>,
    #[serde(default)]
    pub delete: Vec<String>,
    #[serde(default)]
    pub replace: bool,
}

pub(super) fn apply_contacts(
    txn: &WriteTransaction,
    update: &ContactsUpdate,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(CONTACTS)?;
    if update.replace {
        table.retain(|_, _| false)?;
    }
    for address in &update.delete {
        table.remove(address.as_str())?;
    }
    for (address, records) in &update.upsert {
        table.insert(address.as_str(), encode(records).as_slice())?;
    }
    Ok(())
}

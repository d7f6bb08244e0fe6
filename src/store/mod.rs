//! The store: one redb file in `data_dir`.
//!
//! Tables (see the README's design section):
//! - `meta`: schema version and the next activity id
//! - `activities`: activity id → [`Activity`] (parsed header fields, JSON)
//! - `activity_raw`: activity id → the raw MIME, encoded by [`rawcodec`] (zstd, base64 runs decoded)
//! - `sync_id_map`: (mailbox, folder, UIDVALIDITY, UID) → activity id, 0 for an email not
//!   tracked after an error, or a skip marker naming the reason ([`skip_marker`]) (IMAP)
//! - `pop3_sync_id_map`: (mailbox, UIDL) → (activity id, 0 or a skip marker; committed at)
//! - `email_index`: duplicate-check key (Message-ID, or content hash) → activity id, across all
//!   mailboxes (I4: one activity per email)
//! - `token_activities`: (tracking token, activity id) for every token ever issued;
//!   `token_mailboxes`: mailbox address → its token user number and last counter ([`tokens`])
//! - `subject_index`: (normalised subject hash, activity id), for smart matching
//! - `conversations`: (conversation id, activity id); `regarding_index`: (record, activity id)
//! - `contacts`: lower-case address → its known contact records (JSON list)
//! - `folder_cursors`: (mailbox, folder) → [`FolderCursor`]
//! - `mailbox_state`, `profile_state`: runtime state shown by `/status`
//! - `alerts`: alert id → [`Alert`]
//! - `item_failures`: (mailbox, item key) → [`ItemFailure`] (emails skipped or failing to store)
//! - `outbox`: activity id → [`OutboxEntry`] for outgoing email (status, tries, replies)
//! - `outbox_due`: (due time, activity id) of every email still to send
//! - `outbox_counts`: mailbox → its outbox by status and last send error
//!
//! Invariant (exactly-once ingest, I3): an activity, its sync id map entry and the folder cursor that
//! covers its UID are written in one transaction. After a crash, the cursor names exactly the UIDs
//! whose activities exist, so a restart fetches the rest and nothing twice. A POP3 maildrop has no
//! order to keep a cursor in: its sync id map entries are the cursor, committed with their
//! activities, and only UIDLs without an entry are retrieved.

mod batch;
mod bounces;
pub mod feed;
mod index;
mod ingest;
pub mod outbox_actions;
pub mod rawcodec;
pub mod records;
pub mod server_changes;
mod tokens;
mod upgrade;
pub mod webhook;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

pub use records::*;
pub use tokens::QueuedToken;
pub use writer::{
    ContactsUpdate, Enqueued, IngestBatch, IngestOutcome, IngestSource, MailboxUpdate,
    OutboxUpdate, POP3_FOLDER, PreparedMessage, QueuedEmail, StoreWriter, SyncKey, TrackingPlace,
};

use crate::tracking::decision::SkipReason;
use crate::tracking::plan::FolderCursor;

/// A sync id map row of one mailbox: ((folder, UIDVALIDITY, UID), activity id).
pub type SyncIdRow = ((String, u32, u32), u64);

/// 2: one activity per email across mailboxes, conversations, regarding, parties, contacts and
/// skip reasons (version 1 stores are upgraded in place when opened, see `upgrade.rs`).
pub const SCHEMA_VERSION: u64 = 3;
pub const STORE_FILE: &str = "sidesync.redb";
/// The redb page cache when the config names none (`store_cache_bytes`).
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const ACTIVITIES: TableDefinition<u64, &[u8]> = TableDefinition::new("activities");
pub(crate) const ACTIVITY_RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("activity_raw");
pub(crate) const SYNC_ID_MAP: TableDefinition<(&str, &str, u32, u32), u64> =
    TableDefinition::new("sync_id_map");
/// POP3: (mailbox, UIDL) → (activity id, or [`NOT_TRACKED`]; unix time of the commit). The commit
/// time is what `pop3_delete_after_days` counts from.
pub(crate) const POP3_SYNC_ID_MAP: TableDefinition<(&str, &str), (u64, i64)> =
    TableDefinition::new("pop3_sync_id_map");
/// The activity id a POP3 sync id map entry holds for a message retrieved but not tracked.
pub const NOT_TRACKED: u64 = 0;
/// The skip markers: the sync id map value of an email skipped for a reason, above every
/// activity id.
const SKIP_MARKER_BASE: u64 = u64::MAX - 255;

/// The sync id map value that records an email skipped for `reason`.
pub fn skip_marker(reason: SkipReason) -> u64 {
    SKIP_MARKER_BASE + u64::from(reason.code())
}

/// True when a sync id map value names an activity (not 0, not a skip marker).
pub fn is_activity(value: u64) -> bool {
    value != NOT_TRACKED && value < SKIP_MARKER_BASE
}

/// The skip reason a sync id map value records, if it is a skip marker.
pub fn skip_reason(value: u64) -> Option<SkipReason> {
    let code = value.checked_sub(SKIP_MARKER_BASE)?;
    SkipReason::from_code(u8::try_from(code).ok()?)
}

/// Version 1's per-mailbox duplicate check, dropped by the upgrade.
pub(crate) const MESSAGE_INDEX_V1: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("message_index");
pub(crate) const EMAIL_INDEX: TableDefinition<&str, u64> = TableDefinition::new("email_index");
/// Version 2's token index (the newest activity per token), replaced by `token_activities`.
pub(crate) const TOKEN_INDEX_V2: TableDefinition<&str, u64> = TableDefinition::new("token_index");
pub(crate) const SUBJECT_INDEX: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("subject_index");
pub(crate) const CONVERSATIONS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("conversations");
pub(crate) const REGARDING_INDEX: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("regarding_index");
pub(crate) const CONTACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contacts");
/// A mailbox's rotated OAuth refresh token, sealed with the key file, and which configured token
/// it replaced (see `oauth::tokens`).
pub(crate) const OAUTH_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("oauth_tokens");
pub(crate) const FOLDER_CURSORS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("folder_cursors");
pub(crate) const MAILBOX_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("mailbox_state");
pub(crate) const PROFILE_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("profile_state");
pub(crate) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
pub(crate) const ITEM_FAILURES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("item_failures");
pub(crate) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// (due time in ms since the epoch, id) of every email still to send: the outbox task reads
/// only what is due.
pub(crate) const OUTBOX_DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("outbox_due");
/// mailbox → its outbox by status, kept with every change (so `/status` scans nothing). Apart
/// from `mailbox_state` because it changes with every email sent.
pub(crate) const OUTBOX_COUNTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("outbox_counts");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error(
        "store {path} has schema version {found}; this sidesync reads version {SCHEMA_VERSION} and older"
    )]
    NewerSchema { path: PathBuf, found: u64 },
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    #[error("store: a {what} record does not decode: {source}")]
    Decode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("store: raw MIME of activity {id} does not decode: {source}")]
    Decompress {
        id: u64,
        source: rawcodec::CodecError,
    },
    #[error("store writer has stopped")]
    WriterGone,
    #[error("store: the commit failed: {0}")]
    Commit(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// An outbox due time as the `outbox_due` key.
pub(crate) fn due_key(t: chrono::DateTime<chrono::Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

/// The activities of `ids` (an index's, newest first) that `keep` keeps, at most `limit`.
fn newest_matching(
    txn: &redb::ReadTransaction,
    ids: impl Iterator<Item = Result<u64, redb::StorageError>>,
    limit: usize,
    keep: impl Fn(&Activity) -> bool,
) -> Result<Vec<Activity>, StoreError> {
    let acts = txn.open_table(ACTIVITIES)?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(v) = acts.get(id?)? {
            let a: Activity = decode("activity", v.value())?;
            if keep(&a) {
                out.push(a);
                if out.len() >= limit {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// A state record, or its default when the row does not exist yet.
pub(crate) fn load<T: serde::de::DeserializeOwned + Default>(
    table: &redb::Table<'_, &str, &[u8]>,
    key: &str,
    what: &'static str,
) -> Result<T, StoreError> {
    match table.get(key)? {
        Some(v) => decode(what, v.value()),
        None => Ok(T::default()),
    }
}

pub(crate) fn next_id(txn: &redb::WriteTransaction, key: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = meta.get(key)?.map(|v| v.value()).unwrap_or(1);
    meta.insert(key, id + 1)?;
    Ok(id)
}

/// The store's id halves in `meta`: 128 random bits made once, when a store first opens
/// without them (a new store, or one made before stores had ids).
const STORE_ID_KEYS: [&str; 2] = ["store_id_hi", "store_id_lo"];

fn ensure_store_id(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use ring::rand::SecureRandom;
    let mut meta = txn.open_table(META)?;
    for key in STORE_ID_KEYS {
        if meta.get(key)?.is_none() {
            let mut bytes = [0u8; 8];
            ring::rand::SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| StoreError::Commit("no random numbers for the store id".into()))?;
            meta.insert(key, u64::from_le_bytes(bytes))?;
        }
    }
    Ok(())
}

/// The store's id, 32 hex digits.
pub(crate) fn store_id_in(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<String, StoreError> {
    let mut out = String::with_capacity(32);
    for key in STORE_ID_KEYS {
        let half = meta.get(key)?.map_or(0, |v| v.value());
        out.push_str(&format!("{half:016x}"));
    }
    Ok(out)
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

/// The store, shared by the writer thread and every reader.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    /// The change feed's last committed number, for long-polls and the webhook dispatcher.
    feed: Arc<feed::FeedClock>,
}

impl Store {
    /// Opens (or creates) `data_dir/sidesync.redb` and its tables, with the default page cache.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(data_dir, DEFAULT_CACHE_BYTES)
    }

    /// As [`Store::open`], with a page cache of `cache_bytes` (`store_cache_bytes`).
    pub fn open_with_cache(data_dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(STORE_FILE);
        // A bounded page cache: memory must not grow with the mailbox (redb's default is 1 GiB).
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema { path, found: v });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            drop(meta);
            if found == Some(1) {
                upgrade::from_v1(&txn)?;
            }
            if matches!(found, Some(1 | 2)) {
                upgrade::from_v2(&txn)?;
            }
            txn.open_table(ACTIVITIES)?;
            txn.open_table(ACTIVITY_RAW)?;
            txn.open_table(SYNC_ID_MAP)?;
            txn.open_table(POP3_SYNC_ID_MAP)?;
            txn.open_table(EMAIL_INDEX)?;
            txn.open_table(tokens::TOKEN_ACTIVITIES)?;
            txn.open_table(tokens::TOKEN_MAILBOXES)?;
            txn.open_table(SUBJECT_INDEX)?;
            txn.open_table(CONVERSATIONS)?;
            txn.open_table(REGARDING_INDEX)?;
            txn.open_table(CONTACTS)?;
            txn.open_table(OAUTH_TOKENS)?;
            txn.open_table(FOLDER_CURSORS)?;
            txn.open_table(MAILBOX_STATE)?;
            txn.open_table(PROFILE_STATE)?;
            txn.open_table(ALERTS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(OUTBOX_DUE)?;
            txn.open_table(OUTBOX_COUNTS)?;
            txn.open_table(feed::EVENTS)?;
            txn.open_table(outbox_actions::IDEMPOTENCY)?;
            txn.open_table(outbox_actions::IDEMPOTENCY_BY_TIME)?;
            txn.open_table(webhook::WEBHOOK_STATE)?;
            txn.open_table(webhook::WEBHOOK_ACKED)?;
            txn.open_table(webhook::WEBHOOK_DEAD)?;
        }
        ensure_store_id(&txn)?;
        txn.commit()?;
        let clock = feed::FeedClock::default();
        clock.set(feed::last_seq(&db.begin_read()?)?);
        Ok(Store {
            db: Arc::new(db),
            path,
            feed: Arc::new(clock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// The email an idempotency key (scoped to its caller) queued within 24 hours.
    pub fn idempotency(
        &self,
        key: &str,
    ) -> Result<Option<outbox_actions::IdempotencyRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        outbox_actions::recall(&txn.open_table(outbox_actions::IDEMPOTENCY)?, key)
    }

    /// The change feed's clock: the last committed number, waits for the next.
    /// The store's id (32 hex digits, made once with the store): in every event's id.
    pub fn store_id(&self) -> Result<String, StoreError> {
        let txn = self.db.begin_read()?;
        store_id_in(&txn.open_table(META)?)
    }

    pub fn feed(&self) -> &feed::FeedClock {
        &self.feed
    }

    /// Events after `after` that `keep` keeps, at most `limit`, or that `after` is older than
    /// the feed keeps.
    pub fn events(
        &self,
        after: u64,
        limit: usize,
        keep: &dyn Fn(&feed::Event) -> bool,
    ) -> Result<feed::Page, StoreError> {
        feed::read(&self.db.begin_read()?, after, limit, keep)
    }

    /// A webhook's state and the events delivered above its watermark.
    pub fn webhook_progress(
        &self,
        name: &str,
    ) -> Result<(webhook::WebhookState, Vec<u64>), StoreError> {
        webhook::read_progress(&self.db.begin_read()?, name)
    }

    /// A webhook's dead letters after `after` (all, or only those asked to be redelivered).
    pub fn dead_letters(
        &self,
        name: &str,
        after: u64,
        limit: usize,
        only_redeliver: bool,
    ) -> Result<Vec<webhook::DeadLetter>, StoreError> {
        webhook::read_dead(&self.db.begin_read()?, name, after, limit, only_redeliver)
    }

    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("schema_version")?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn folder_cursor(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Option<FolderCursor>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(FOLDER_CURSORS)?;
        t.get((mailbox, folder))?
            .map(|v| decode("folder cursor", v.value()))
            .transpose()
    }

    pub fn mailbox_states(&self) -> Result<BTreeMap<String, MailboxState>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(MAILBOX_STATE)?;
        let mut out = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_string(), decode("mailbox state", v.value())?);
        }
        Ok(out)
    }

    pub fn mailbox_state(&self, mailbox: &str) -> Result<MailboxState, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(MAILBOX_STATE)?;
        t.get(mailbox)?
            .map(|v| decode("mailbox state", v.value()))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    pub fn outbox_counts(&self) -> Result<BTreeMap<String, OutboxCounts>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OUTBOX_COUNTS)?;
        let mut out = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_string(), decode("outbox counts", v.value())?);
        }
        Ok(out)
    }

    pub fn profile_states(&self) -> Result<BTreeMap<String, ProfileState>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PROFILE_STATE)?;
        let mut out = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_string(), decode("profile state", v.value())?);
        }
        Ok(out)
    }

    pub fn activity_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(ACTIVITIES)?.len()?)
    }

    pub fn activity(&self, id: u64) -> Result<Option<Activity>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ACTIVITIES)?;
        t.get(id)?
            .map(|v| decode("activity", v.value()))
            .transpose()
    }

    /// Every activity, in id order. For tests and small exports; the API pages through them.
    pub fn activities(&self) -> Result<Vec<Activity>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ACTIVITIES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(decode("activity", row?.1.value())?);
        }
        Ok(out)
    }

    /// The original MIME bytes of an activity.
    pub fn activity_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ACTIVITY_RAW)?;
        let Some(v) = t.get(id)? else { return Ok(None) };
        rawcodec::decode(v.value())
            .map(Some)
            .map_err(|source| StoreError::Decompress { id, source })
    }

    /// The original MIME of several activities, in one read transaction.
    pub fn activity_raws(&self, ids: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ACTIVITY_RAW)?;
        ids.iter()
            .map(|&id| match t.get(id)? {
                None => Ok(None),
                Some(v) => rawcodec::decode(v.value())
                    .map(Some)
                    .map_err(|source| StoreError::Decompress { id, source }),
            })
            .collect()
    }

    /// As [`Store::activity_raws`], but stops after the MIME read so far reaches `max_bytes`
    /// (at least one is read): a prefix of `ids`' MIME, so that what is held stays bounded
    /// whatever the emails' sizes. MIME that cannot be decoded comes back as None.
    pub fn activity_raws_up_to(
        &self,
        ids: &[u64],
        max_bytes: usize,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ACTIVITY_RAW)?;
        let mut raws = Vec::new();
        let mut bytes = 0;
        for &id in ids {
            if bytes >= max_bytes {
                break;
            }
            // MIME that does not decode is as good as missing: that email fails, not the rest.
            let raw = match t.get(id)? {
                None => None,
                Some(v) => rawcodec::decode(v.value()).ok(),
            };
            bytes += raw.as_ref().map_or(0, Vec::len);
            raws.push(raw);
        }
        Ok(raws)
    }

    /// Activities matching `keep`, newest first, with ids below `before` (a page cursor), at most
    /// `limit`. Scans ids downwards until the page is full.
    pub fn activities_page(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&Activity) -> bool,
    ) -> Result<Vec<Activity>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ACTIVITIES)?;
        let mut out = Vec::new();
        for row in t.range(..before.unwrap_or(u64::MAX))?.rev() {
            let a: Activity = decode("activity", row?.1.value())?;
            if keep(&a) {
                out.push(a);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The activity an email with this Message-ID became (the duplicate check's index).
    pub fn activity_by_message_id(&self, message_id: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(EMAIL_INDEX)?;
        let key = crate::tracking::decision::message_id_key(message_id);
        Ok(t.get(key.as_str())?.map(|v| v.value()))
    }

    /// The activities of a conversation matching `keep`, newest first, with ids below
    /// `before`, at most `limit`: read through the conversation index.
    pub fn conversation_page(
        &self,
        conversation: u64,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&Activity) -> bool,
    ) -> Result<Vec<Activity>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(CONVERSATIONS)?;
        let rows = index.range((conversation, 0)..(conversation, before.unwrap_or(u64::MAX)))?;
        let ids = rows.rev().map(|r| r.map(|(k, _)| k.value().1));
        newest_matching(&txn, ids, limit, keep)
    }

    /// The activities about a record matching `keep`, newest first, with ids below `before`,
    /// at most `limit`: read through the regarding index.
    pub fn regarding_page(
        &self,
        record: &str,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&Activity) -> bool,
    ) -> Result<Vec<Activity>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(REGARDING_INDEX)?;
        let rows = index.range((record, 0)..(record, before.unwrap_or(u64::MAX)))?;
        let ids = rows.rev().map(|r| r.map(|(k, _)| k.value().1));
        newest_matching(&txn, ids, limit, keep)
    }

    /// The known contact records of a lower-case address.
    /// Rewrites every kept OAuth refresh token record with `f` (mailbox, record) in one
    /// transaction: `sidesync secret rotate` re-seals them under the new key. Only while no
    /// appliance runs (it owns the store then, and its writer is the only other writer).
    pub fn rewrite_oauth_tokens(
        &self,
        f: impl Fn(&str, &[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<usize, String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        let mut n = 0;
        {
            let mut t = txn.open_table(OAUTH_TOKENS).map_err(|e| e.to_string())?;
            let mut rewritten = Vec::new();
            for row in t.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                rewritten.push((k.value().to_string(), f(k.value(), v.value())?));
            }
            for (k, v) in &rewritten {
                t.insert(k.as_str(), v.as_slice())
                    .map_err(|e| e.to_string())?;
                n += 1;
            }
        }
        txn.commit().map_err(|e| e.to_string())?;
        Ok(n)
    }

    /// The mailbox's rotated refresh token record, if one was kept.
    pub fn oauth_token(&self, mailbox: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OAUTH_TOKENS)?;
        Ok(t.get(mailbox)?.map(|v| v.value().to_vec()))
    }

    pub fn contact(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONTACTS)?;
        t.get(address)?
            .map(|v| decode("contact", v.value()))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    pub fn contact_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(CONTACTS)?.len()?)
    }

    /// The header pre-screen of a sync: the decision for each header, from one read
    /// transaction. The writer decides again at commit; this only says which bodies to fetch.
    pub fn prescreen(
        &self,
        emails: &[crate::tracking::message::EmailHeaders],
        place: &crate::tracking::decision::Place<'_>,
        directory: &crate::tracking::decision::Directory,
    ) -> Result<Vec<crate::tracking::decision::Decision>, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = index::ReadTables::open(&txn)?;
        let look = tables.lookups(directory);
        Ok(emails
            .iter()
            .map(|h| {
                crate::tracking::decision::decide(
                    crate::tracking::decision::Email {
                        headers: h,
                        content_key: None,
                    },
                    place,
                    &directory.correlation,
                    &look,
                )
            })
            .collect())
    }

    /// Size of the store file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Compressed bytes of all raw MIME: the store's footprint against the raw bytes.
    pub fn compressed_raw_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ACTIVITY_RAW)?;
        let mut total = 0u64;
        for row in t.iter()? {
            total += row?.1.value().len() as u64;
        }
        Ok(total)
    }

    /// Sync id map rows of one mailbox: ((folder, UIDVALIDITY, UID), activity id).
    pub fn sync_id_map(&self, mailbox: &str) -> Result<Vec<SyncIdRow>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SYNC_ID_MAP)?;
        let mut out = Vec::new();
        for row in t.range((mailbox, "", 0u32, 0u32)..)? {
            let (k, v) = row?;
            let (m, folder, uv, uid) = k.value();
            if m != mailbox {
                break;
            }
            out.push(((folder.to_string(), uv, uid), v.value()));
        }
        Ok(out)
    }

    /// POP3 sync id map entries of one mailbox: UIDL → (activity id or [`NOT_TRACKED`], committed
    /// at, unix time).
    pub fn pop3_sync_id_map(
        &self,
        mailbox: &str,
    ) -> Result<std::collections::HashMap<String, (u64, i64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(POP3_SYNC_ID_MAP)?;
        let mut out = std::collections::HashMap::new();
        for row in t.range((mailbox, "")..)? {
            let (k, v) = row?;
            let (m, uidl) = k.value();
            if m != mailbox {
                break;
            }
            out.insert(uidl.to_string(), v.value());
        }
        Ok(out)
    }

    /// Alerts, newest first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ALERTS)?;
        let mut out = Vec::new();
        for row in t.iter()?.rev().take(limit) {
            out.push(decode("alert", row?.1.value())?);
        }
        Ok(out)
    }

    /// Alerts with their ids, newest first, below id `before`, that `keep` keeps, at most `limit`.
    pub fn alerts_page(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&Alert) -> bool,
    ) -> Result<Vec<(u64, Alert)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ALERTS)?;
        let mut out = Vec::new();
        for row in t.range(..before.unwrap_or(u64::MAX))?.rev() {
            let (k, v) = row?;
            let a: Alert = decode("alert", v.value())?;
            if keep(&a) {
                out.push((k.value(), a));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One item failure of `mailbox`, by its key ([`ItemFailure::item_key`]).
    pub fn item_failure(
        &self,
        mailbox: &str,
        key: &str,
    ) -> Result<Option<ItemFailure>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(ITEM_FAILURES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        t.get((mailbox, key))?
            .map(|v| decode("item failure", v.value()))
            .transpose()
    }

    /// The item failures of `mailbox` (all mailboxes when `None`), with their mailbox.
    pub fn item_failures(
        &self,
        mailbox: Option<&str>,
    ) -> Result<Vec<(String, ItemFailure)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(ITEM_FAILURES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        let rows = match mailbox {
            Some(m) => t.range((m, "")..=(m, "\u{10ffff}"))?,
            None => t.range::<(&str, &str)>(..)?,
        };
        for row in rows {
            let (k, v) = row?;
            out.push((k.value().0.to_string(), decode("item failure", v.value())?));
        }
        Ok(out)
    }

    pub fn outbox_entry(&self, id: u64) -> Result<Option<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        t.get(id)?
            .map(|v| decode("outbox entry", v.value()))
            .transpose()
    }

    /// The statuses of several queued emails, in one read transaction (None: no such email).
    pub fn outbox_statuses(&self, ids: &[u64]) -> Result<Vec<Option<OutboxStatus>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        ids.iter()
            .map(|&id| {
                t.get(id)?
                    .map(|v| decode::<OutboxEntry>("outbox entry", v.value()).map(|e| e.status))
                    .transpose()
            })
            .collect()
    }

    /// Every outbox entry, in queue order. Sent and failed ones included (for counts).
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(decode("outbox entry", row?.1.value())?);
        }
        Ok(out)
    }

    /// The newest outbox entries that `keep` accepts, at most `limit`, newest first.
    pub fn outbox_newest(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&OutboxEntry) -> bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for row in t.range(..before.unwrap_or(u64::MAX))?.rev() {
            let e: OutboxEntry = decode("outbox entry", row?.1.value())?;
            if keep(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// When the oldest email still waiting to be sent (Pending Send or Sending) was queued.
    pub fn outbox_oldest_waiting(
        &self,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let txn = self.db.begin_read()?;
        let due = txn.open_table(OUTBOX_DUE)?;
        let mut oldest: Option<u64> = None;
        for row in due.iter()? {
            let (_, id) = row?.0.value();
            oldest = Some(oldest.map_or(id, |o| o.min(id)));
        }
        let Some(id) = oldest else {
            return Ok(None);
        };
        let entries = txn.open_table(OUTBOX)?;
        Ok(match entries.get(id)? {
            Some(v) => Some(decode::<OutboxEntry>("outbox entry", v.value())?.queued_at),
            None => None,
        })
    }

    /// Emails to send whose time has come (Pending Send or Sending), oldest due first, at most
    /// `limit`; and the due time of the next one that is not due yet.
    pub fn outbox_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<(Vec<OutboxEntry>, Option<chrono::DateTime<chrono::Utc>>), StoreError> {
        let txn = self.db.begin_read()?;
        let due = txn.open_table(OUTBOX_DUE)?;
        let entries = txn.open_table(OUTBOX)?;
        let now_ms = due_key(now);
        let mut out = Vec::new();
        for row in due.range((0u64, 0u64)..=(now_ms, u64::MAX))?.take(limit) {
            let (_, id) = row?.0.value();
            if let Some(v) = entries.get(id)? {
                out.push(decode("outbox entry", v.value())?);
            }
        }
        let next = due
            .range((now_ms + 1, 0u64)..)?
            .next()
            .transpose()?
            .and_then(|(k, _)| chrono::DateTime::from_timestamp_millis(k.value().0 as i64));
        Ok((out, next))
    }

    /// The id the next activity will get (a hint: the writer assigns ids).
    pub fn next_activity_id_hint(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get("next_activity_id")?
            .map(|v| v.value())
            .unwrap_or(1))
    }

    /// The token the next email of `mailbox` (lower case) would get, read outside the writer:
    /// the email is built with it, and the writer records it only if it is still the next one
    /// at commit ([`Enqueued::TokenMoved`] otherwise). None if no token could be found.
    pub fn next_token(
        &self,
        mailbox: &str,
        format: &crate::tracking::token::TokenFormat,
        shard: Option<u32>,
    ) -> Result<Option<crate::tracking::token_alloc::TokenClaim>, StoreError> {
        let txn = self.db.begin_read()?;
        tokens::claim_over(
            &txn.open_table(META)?,
            &txn.open_table(tokens::TOKEN_MAILBOXES)?,
            &txn.open_table(tokens::TOKEN_ACTIVITIES)?,
            mailbox,
            format,
            shard,
        )
    }

    /// The activities that carried `token`, newest first (several only for an old wrapped one).
    pub fn activities_by_token(&self, token: &str) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(tokens::activities_of(
            &txn.open_table(tokens::TOKEN_ACTIVITIES)?,
            token,
        ))
    }

    /// Starts the single writer thread. Every write goes through it.
    pub fn start_writer(&self) -> StoreWriter {
        writer::start(self.clone())
    }
}

#[cfg(test)]
mod bounces_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tokens_tests;

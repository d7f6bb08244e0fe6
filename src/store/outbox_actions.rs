//! What the API does to queued email besides queuing it: cancel one that waits (Pending Send),
//! send a Failed one again; and the idempotency keys of `POST /api/v1/outbox`, kept 24 hours
//! so a client's retry never queues twice:
//! - `outbox_idempotency`: (caller, key) → [`IdempotencyRecord`], written in the transaction that
//!   queues the email;
//! - `outbox_idempotency_by_time`: (ms since the epoch, caller + key), to drop them after 24 h.

use chrono::Utc;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::feed::{Change, Feed, OutboxChange};
pub use super::records::IdempotencyRecord;
use super::{
    OUTBOX, OUTBOX_COUNTS, OUTBOX_DUE, OutboxCounts, OutboxEntry, OutboxStatus, StoreError, decode,
    due_key, encode,
};

pub(crate) const IDEMPOTENCY: TableDefinition<&str, &[u8]> =
    TableDefinition::new("outbox_idempotency");
pub(crate) const IDEMPOTENCY_BY_TIME: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("outbox_idempotency_by_time");

/// How long an idempotency key is kept.
pub const IDEMPOTENCY_HOURS: i64 = 24;

/// The key as stored: the caller's (API token's) name and its key, apart.
pub fn scoped_key(caller: &str, key: &str) -> String {
    format!("{caller}\u{1f}{key}")
}

/// A key's record written with the email it queued (and the expired keys dropped).
pub(super) fn remember(
    txn: &WriteTransaction,
    key: &str,
    record: &IdempotencyRecord,
) -> Result<(), StoreError> {
    let mut keys = txn.open_table(IDEMPOTENCY)?;
    let mut by_time = txn.open_table(IDEMPOTENCY_BY_TIME)?;
    keys.insert(key, encode(record).as_slice())?;
    by_time.insert((due_key(record.at), key), ())?;
    let cutoff = due_key(Utc::now() - chrono::Duration::hours(IDEMPOTENCY_HOURS));
    // A bounded number per commit: a backlog goes over several.
    for _ in 0..256 {
        let first = by_time
            .first()?
            .map(|(k, _)| (k.value().0, k.value().1.to_string()));
        match first {
            Some((at, old)) if at < cutoff => {
                by_time.remove((at, old.as_str()))?;
                keys.remove(old.as_str())?;
            }
            _ => break,
        }
    }
    Ok(())
}

/// A key's record if it is younger than 24 hours.
pub(super) fn recall(
    keys: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let found: Option<IdempotencyRecord> = keys
        .get(key)?
        .map(|v| decode("idempotency record", v.value()))
        .transpose()?;
    Ok(found.filter(|r| r.at > Utc::now() - chrono::Duration::hours(IDEMPOTENCY_HOURS)))
}

/// What the API asks of a queued email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxAction {
    /// Pending Send → Cancelled.
    Cancel,
    /// Failed → Pending Send, tries counted from zero.
    Resend,
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionRefused {
    NoSuchEmail,
    /// The email's status does not allow it.
    Status(OutboxStatus),
}

pub(super) fn apply_action(
    txn: &WriteTransaction,
    id: u64,
    action: OutboxAction,
    feed: &mut Feed,
) -> Result<Result<OutboxEntry, ActionRefused>, StoreError> {
    let mut entries = txn.open_table(OUTBOX)?;
    let found: Option<OutboxEntry> = entries
        .get(id)?
        .map(|v| decode("outbox entry", v.value()))
        .transpose()?;
    let Some(mut e) = found else {
        return Ok(Err(ActionRefused::NoSuchEmail));
    };
    let before = e.status;
    let mut due = txn.open_table(OUTBOX_DUE)?;
    match (action, before) {
        (OutboxAction::Cancel, OutboxStatus::PendingSend) => {
            due.remove((due_key(e.next_attempt_at), id))?;
            e.status = OutboxStatus::Cancelled;
        }
        (OutboxAction::Resend, OutboxStatus::Failed) => {
            let now = Utc::now();
            e.status = OutboxStatus::PendingSend;
            e.tries = 0;
            e.next_attempt_at = now;
            due.insert((due_key(now), id), ())?;
        }
        (_, status) => return Ok(Err(ActionRefused::Status(status))),
    }
    entries.insert(id, encode(&e).as_slice())?;
    let mut counts_table = txn.open_table(OUTBOX_COUNTS)?;
    let mut counts: OutboxCounts = super::load(&counts_table, e.mailbox.as_str(), "outbox counts")?;
    counts.moved(Some(before), e.status);
    counts_table.insert(e.mailbox.as_str(), encode(&counts).as_slice())?;
    feed.push(
        Some(e.mailbox.as_str()),
        Change::OutboxStatusChanged(OutboxChange::of(&e, Some(before))),
    );
    Ok(Ok(e))
}

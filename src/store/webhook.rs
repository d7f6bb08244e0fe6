//! What the store keeps of webhook deliveries, so a crash loses no event and redelivers at most
//! the ones in flight:
//! - `webhook_state`: webhook name → its watermark (every event up to it delivered, dead-lettered
//!   or not for it) and counts;
//! - `webhook_acked`: (webhook, seq) of events delivered above the watermark (deliveries run in
//!   parallel across mailboxes, so they finish out of order);
//! - `webhook_dead`: (webhook, seq) → [`DeadLetter`]: events that ran out of attempts, with their
//!   body, until redelivered (bounded per webhook).

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::feed::Event;
use super::{StoreError, decode, encode};

pub(crate) const WEBHOOK_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("webhook_state");
pub(crate) const WEBHOOK_ACKED: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("webhook_acked");
pub(crate) const WEBHOOK_DEAD: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("webhook_dead");

/// Dead letters kept per webhook; the oldest go beyond this.
const MAX_DEAD: u64 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookState {
    /// Every event up to this number is done for this webhook.
    pub watermark: u64,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub dead: u64,
}

/// An event a webhook could not take within its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event: Event,
    pub attempts: u32,
    pub last_error: String,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    /// Asked to be delivered again (`POST …/redeliver`); the dispatcher takes it.
    #[serde(default)]
    pub redeliver: bool,
}

/// The lowest watermark of all webhooks (None: there are none): events above it stay.
pub(super) fn lowest_watermark(txn: &WriteTransaction) -> Result<Option<u64>, StoreError> {
    let t = txn.open_table(WEBHOOK_STATE)?;
    let mut low: Option<u64> = None;
    for row in t.iter()? {
        let s: WebhookState = decode("webhook state", row?.1.value())?;
        low = Some(low.map_or(s.watermark, |l| l.min(s.watermark)));
    }
    Ok(low)
}

/// A webhook's progress: the new watermark and the events delivered above it.
pub(super) fn apply_progress(
    txn: &WriteTransaction,
    name: &str,
    watermark: u64,
    acked: &[u64],
    delivered: u64,
) -> Result<(), StoreError> {
    let mut states = txn.open_table(WEBHOOK_STATE)?;
    let mut s: WebhookState = super::load(&states, name, "webhook state")?;
    let old = s.watermark;
    s.watermark = s.watermark.max(watermark);
    s.delivered += delivered;
    states.insert(name, encode(&s).as_slice())?;
    let mut acks = txn.open_table(WEBHOOK_ACKED)?;
    if s.watermark > old {
        acks.retain_in((name, 0)..=(name, s.watermark), |_, _| false)?;
    }
    for &seq in acked.iter().filter(|&&q| q > s.watermark) {
        acks.insert((name, seq), ())?;
    }
    Ok(())
}

/// An event moved to the dead-letter list (or back to it after a failed redelivery).
pub(super) fn apply_dead(
    txn: &WriteTransaction,
    name: &str,
    letter: &DeadLetter,
    counted: bool,
) -> Result<(), StoreError> {
    let mut dead = txn.open_table(WEBHOOK_DEAD)?;
    dead.insert((name, letter.event.seq), encode(letter).as_slice())?;
    let mut states = txn.open_table(WEBHOOK_STATE)?;
    let mut s: WebhookState = super::load(&states, name, "webhook state")?;
    if counted {
        s.dead += 1;
    }
    states.insert(name, encode(&s).as_slice())?;
    // Bounded: beyond the cap the oldest letters of this webhook go.
    let count = dead.range((name, 0)..=(name, u64::MAX))?.count() as u64;
    if count > MAX_DEAD {
        let oldest: Vec<u64> = dead
            .range((name, 0)..=(name, u64::MAX))?
            .take((count - MAX_DEAD) as usize)
            .filter_map(|r| r.ok().map(|(k, _)| k.value().1))
            .collect();
        for seq in oldest {
            tracing::warn!(
                webhook = name,
                seq,
                "dead letter dropped: over {MAX_DEAD} kept"
            );
            dead.remove((name, seq))?;
        }
    }
    Ok(())
}

/// Marks a dead letter for redelivery; false when there is no such letter.
pub(super) fn apply_redeliver(
    txn: &WriteTransaction,
    name: &str,
    seq: u64,
) -> Result<bool, StoreError> {
    let mut dead = txn.open_table(WEBHOOK_DEAD)?;
    let found: Option<DeadLetter> = dead
        .get((name, seq))?
        .map(|v| decode("dead letter", v.value()))
        .transpose()?;
    let Some(mut letter) = found else {
        return Ok(false);
    };
    letter.redeliver = true;
    dead.insert((name, seq), encode(&letter).as_slice())?;
    Ok(true)
}

/// A redelivered dead letter arrived: it leaves the list.
pub(super) fn apply_resolved(
    txn: &WriteTransaction,
    name: &str,
    seq: u64,
) -> Result<(), StoreError> {
    txn.open_table(WEBHOOK_DEAD)?.remove((name, seq))?;
    let mut states = txn.open_table(WEBHOOK_STATE)?;
    let mut s: WebhookState = super::load(&states, name, "webhook state")?;
    s.delivered += 1;
    states.insert(name, encode(&s).as_slice())?;
    Ok(())
}

/// The configured webhooks: a new one starts at `start` (the feed's end: it is sent what
/// happens from now on); the rows of webhooks no longer configured go, so they hold back no
/// pruning.
pub(super) fn apply_configured(
    txn: &WriteTransaction,
    names: &[String],
    start: u64,
) -> Result<(), StoreError> {
    let mut states = txn.open_table(WEBHOOK_STATE)?;
    let known: Vec<String> = states
        .iter()?
        .filter_map(|r| r.ok().map(|(k, _)| k.value().to_string()))
        .collect();
    for name in names.iter().filter(|n| !known.contains(n)) {
        let s = WebhookState {
            watermark: start,
            ..WebhookState::default()
        };
        states.insert(name.as_str(), encode(&s).as_slice())?;
    }
    let mut acks = txn.open_table(WEBHOOK_ACKED)?;
    let mut dead = txn.open_table(WEBHOOK_DEAD)?;
    for gone in known.iter().filter(|k| !names.contains(k)) {
        tracing::info!(webhook = %gone, "webhook no longer configured: its delivery state goes");
        states.remove(gone.as_str())?;
        acks.retain_in((gone.as_str(), 0)..=(gone.as_str(), u64::MAX), |_, _| false)?;
        dead.retain_in((gone.as_str(), 0)..=(gone.as_str(), u64::MAX), |_, _| false)?;
    }
    Ok(())
}

/// What a dispatcher resumes from: the state and the events delivered above the watermark.
pub(super) fn read_progress(
    txn: &redb::ReadTransaction,
    name: &str,
) -> Result<(WebhookState, Vec<u64>), StoreError> {
    let states = txn.open_table(WEBHOOK_STATE)?;
    let s: WebhookState = states
        .get(name)?
        .map(|v| decode("webhook state", v.value()))
        .transpose()?
        .unwrap_or_default();
    let acks = txn.open_table(WEBHOOK_ACKED)?;
    let mut acked = Vec::new();
    for row in acks.range((name, s.watermark.saturating_add(1))..=(name, u64::MAX))? {
        acked.push(row?.0.value().1);
    }
    Ok((s, acked))
}

/// A webhook's dead letters after `after`, oldest first, at most `limit`.
pub(super) fn read_dead(
    txn: &redb::ReadTransaction,
    name: &str,
    after: u64,
    limit: usize,
    only_redeliver: bool,
) -> Result<Vec<DeadLetter>, StoreError> {
    let dead = txn.open_table(WEBHOOK_DEAD)?;
    let mut out = Vec::new();
    for row in dead.range((name, after.saturating_add(1))..=(name, u64::MAX))? {
        let letter: DeadLetter = decode("dead letter", row?.1.value())?;
        if only_redeliver && !letter.redeliver {
            continue;
        }
        out.push(letter);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

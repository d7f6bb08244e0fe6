//! A delivery status report at ingest: which sent email it is about (`outbox::bounce_match`),
//! and what it says per recipient on that email's outbox entry (`outbox::bounce_record`), in
//! the transaction that records the report itself — so a report is applied exactly once, with
//! the sync id map row that marks it seen.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, Table};

use super::feed::{ActivityChange, Change, Feed, OutboxChange};
use super::{Activity, OutboxEntry, OutboxStatus, StoreError, decode, encode};
use crate::outbox::bounce::Report;
use crate::outbox::bounce_match::{Matched, Sent, match_report};
use crate::outbox::bounce_record;
use crate::tracking::decision::message_id_key;

/// The sent email a report is about: its outbox entry and activity.
pub(super) struct SentEmail {
    pub entry: OutboxEntry,
    pub activity: Activity,
}

/// The sent email `report`, received in `mailbox`, is about; None when no clue fits one.
///
/// The candidates given to the pure rule: the activity its Message-ID names, the entry its
/// ENVID names, and (only when those fail) every sent entry of `mailbox`. Scanning the outbox
/// is the rare last resort: a report from a server that honours DSN carries both clues.
pub(super) fn find_sent(
    outbox: &impl ReadableTable<u64, &'static [u8]>,
    activities: &impl ReadableTable<u64, &'static [u8]>,
    email_index: &impl ReadableTable<&'static str, u64>,
    report: &Report,
    mailbox: &str,
) -> Result<Option<SentEmail>, StoreError> {
    let entry = |id: u64| -> Result<Option<OutboxEntry>, StoreError> {
        outbox
            .get(id)?
            .map(|v| decode("outbox entry", v.value()))
            .transpose()
    };
    let mut candidates: Vec<(OutboxEntry, Option<String>)> = Vec::new();
    if let Some(mid) = report.original_message_id.as_deref() {
        let by_mid = email_index
            .get(message_id_key(mid).as_str())?
            .map(|v| v.value());
        if let Some(e) = by_mid.map(entry).transpose()?.flatten() {
            candidates.push((e, Some(mid.to_string())));
        }
    }
    if let Some(e) = report
        .envelope_id
        .as_deref()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(entry)
        .transpose()?
        .flatten()
    {
        candidates.push((e, None));
    }
    if candidates.is_empty() {
        for row in outbox.iter()? {
            let e: OutboxEntry = decode("outbox entry", row?.1.value())?;
            if e.mailbox == mailbox && e.status == OutboxStatus::Sent {
                candidates.push((e, None));
            }
        }
    }
    let sent: Vec<Sent<'_>> = candidates
        .iter()
        .map(|(e, mid)| Sent {
            outbox_id: e.id,
            mailbox: &e.mailbox,
            message_id: mid.as_deref(),
            recipients: &e.recipients,
        })
        .collect();
    let matched = match_report(report, mailbox, &sent);
    if let Matched::Ambiguous(ids) = &matched {
        tracing::info!(mailbox, candidates = ?ids, "a delivery status report fits several sent emails; none is marked");
    }
    let Some(id) = matched.outbox_id() else {
        return Ok(None);
    };
    let Some((entry, _)) = candidates.into_iter().find(|(e, _)| e.id == id) else {
        return Ok(None);
    };
    let activity: Option<Activity> = activities
        .get(id)?
        .map(|v| decode("activity", v.value()))
        .transpose()?;
    Ok(activity.map(|activity| SentEmail { entry, activity }))
}

/// Records what `report` (kept as activity `report_id`, if kept) says on the sent email; the
/// feed gets `outbox.bounced` and `activity.updated` when anything changed.
pub(super) fn record(
    outbox: &mut Table<'_, u64, &'static [u8]>,
    mut sent: SentEmail,
    report: &Report,
    report_id: Option<u64>,
    at: DateTime<Utc>,
    feed: &mut Feed,
) -> Result<(), StoreError> {
    if !bounce_record::apply(&mut sent.entry.deliveries, report, report_id, at) {
        return Ok(());
    }
    outbox.insert(sent.entry.id, encode(&sent.entry).as_slice())?;
    let mailbox = sent.entry.mailbox.as_str();
    feed.push(
        Some(mailbox),
        Change::OutboxBounced(OutboxChange::of(&sent.entry, Some(sent.entry.status))),
    );
    feed.push(
        Some(mailbox),
        Change::ActivityUpdated(ActivityChange::of(&sent.activity, &["deliveries"])),
    );
    Ok(())
}

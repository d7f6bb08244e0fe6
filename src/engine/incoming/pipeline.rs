//! Batches between the network and the store, the same for IMAP and POP3: each fetched batch is
//! parsed and compressed on the blocking pool while the next one is fetched, then submitted to the
//! store writer strictly in fetch order, so a cursor only ever moves forward over committed
//! messages.

use std::collections::VecDeque;

use chrono::{TimeZone, Utc};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;

use super::{Progress, SyncSummary};
use crate::engine::JobContext;
use crate::engine::alerts;
use crate::engine::error::SyncError;
use crate::store::{
    AlertEmail, AlertLevel, IngestBatch, IngestOutcome, IngestSource, ItemFailure, POP3_FOLDER,
    PreparedMessage, SyncKey, TrackingPlace, rawcodec,
};
use crate::tracking::decision::Directory;
use crate::tracking::forward;
use crate::tracking::item_failure::{ItemDecision, after_item_failure, imap_stop_at};
use crate::tracking::message::{content_key, dated_before, parse_headers};

/// Batches queued to the writer per mailbox before the job waits for the oldest commit: fetching
/// overlaps with committing, and memory stays bounded.
pub(super) const BATCHES_IN_FLIGHT: usize = 2;

/// One email as it came off the wire.
pub(super) struct Fetched {
    pub key: SyncKey,
    pub raw: Vec<u8>,
    /// When the server received it (IMAP INTERNALDATE), unix time.
    pub received: Option<i64>,
    /// Only its header was fetched: the pre-screen found it skipped or a duplicate.
    pub header_only: Option<HeaderOnly>,
    /// Its flags on the server, when they were fetched with it (IMAP).
    pub flags: Option<Vec<String>>,
}

pub(super) struct HeaderOnly {
    pub headers: crate::tracking::message::EmailHeaders,
    /// As the server listed it.
    pub size: u64,
    pub skip: Option<crate::tracking::decision::SkipReason>,
}

/// A prepared batch: what to store, what was retrieved but falls before the profile's date, and
/// the emails whose preparation failed (poison emails), with the error.
struct Prepared {
    messages: Vec<PreparedMessage>,
    skipped: Vec<SyncKey>,
    poisoned: Vec<(SyncKey, u64, String)>,
}

type PrepareTask = JoinHandle<Result<Prepared, SyncError>>;
type CommitAnswer = oneshot::Receiver<Result<IngestOutcome, String>>;

pub(super) struct Pipeline<'a> {
    ctx: &'a JobContext,
    profile: &'a str,
    mailbox: &'a str,
    preparing: VecDeque<(PrepareTask, IngestSource, Vec<ItemFailure>)>,
    committing: VecDeque<CommitAnswer>,
    progress: &'a Progress,
    place: TrackingPlace,
    pub summary: SyncSummary,
}

impl<'a> Pipeline<'a> {
    pub fn new(
        ctx: &'a JobContext,
        profile: &'a str,
        mailbox: &'a str,
        progress: &'a Progress,
        place: TrackingPlace,
    ) -> Pipeline<'a> {
        Pipeline {
            ctx,
            profile,
            mailbox,
            preparing: VecDeque::new(),
            committing: VecDeque::new(),
            progress,
            place,
            summary: SyncSummary::default(),
        }
    }

    /// Queues a fetched batch; it commits with `source` (its cursor). With `dated_after`, messages
    /// whose Date header is earlier are recorded as seen but not tracked (POP3 has no server date
    /// to filter on before retrieval). Waits while too many batches are ahead of it.
    /// `failed`: emails of the batch not fetched (too large), recorded with its commit.
    pub async fn push(
        &mut self,
        fetched: Vec<Fetched>,
        source: IngestSource,
        dated_after: Option<i64>,
        failed: Vec<ItemFailure>,
        budget: Option<OwnedSemaphorePermit>,
    ) -> Result<(), SyncError> {
        let forwards = self.place.forward.then(|| self.ctx.directory.clone());
        let level = self.ctx.config.appliance.store_compression_level;
        self.preparing.push_back((
            prepare(fetched, dated_after, budget, forwards, level),
            source,
            failed,
        ));
        self.advance(1, BATCHES_IN_FLIGHT).await
    }

    /// Commits `source` with no messages (a cursor that moved over nothing new).
    pub async fn push_cursor(&mut self, source: IngestSource) -> Result<(), SyncError> {
        let rx = submit(
            self.ctx,
            self.mailbox,
            &self.place,
            source,
            Vec::new(),
            Vec::new(),
        )
        .await?;
        self.committing.push_back(rx);
        Ok(())
    }

    /// Waits until every queued batch is committed; returns what they stored.
    pub async fn finish(mut self) -> Result<SyncSummary, SyncError> {
        self.advance(0, 0).await?;
        Ok(self.summary)
    }

    /// Moves batches along until at most `preparing` are being prepared and `committing` are
    /// waiting for their commit.
    async fn advance(&mut self, preparing: usize, committing: usize) -> Result<(), SyncError> {
        while self.preparing.len() > preparing {
            let Some((handle, mut source, failed)) = self.preparing.pop_front() else {
                break;
            };
            let mut prepared = handle
                .await
                .map_err(|e| SyncError::Store(format!("preparing a batch: {e}")))??;
            if let IngestSource::Maildrop { skipped } = &mut source {
                skipped.extend(prepared.skipped.drain(..).filter_map(|k| match k {
                    SyncKey::Uidl(u) => Some(u),
                    SyncKey::Uid(_) => None,
                }));
            }
            let mut failed = failed;
            let stop = self
                .poisoned(&mut source, &mut prepared, &mut failed)
                .await?;
            let rx = submit(
                self.ctx,
                self.mailbox,
                &self.place,
                source,
                prepared.messages,
                failed,
            )
            .await?;
            self.committing.push_back(rx);
            if let Some(stop) = stop {
                // What came before the email to retry is committed; the rest waits for the
                // next sync.
                while !self.committing.is_empty() {
                    self.wait_oldest().await?;
                }
                return Err(stop);
            }
            while self.committing.len() > committing.max(1) {
                self.wait_oldest().await?;
            }
        }
        while self.committing.len() > committing {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    /// Turns the batch's poison emails into item failures (see `tracking::item_failure`). An IMAP
    /// email to be retried cuts the batch below it and stops the sync with `item_failed`; a POP3
    /// one simply gets no sync id map entry and is retrieved again next time.
    async fn poisoned(
        &self,
        source: &mut IngestSource,
        prepared: &mut Prepared,
        failed: &mut Vec<ItemFailure>,
    ) -> Result<Option<SyncError>, SyncError> {
        if prepared.poisoned.is_empty() {
            return Ok(None);
        }
        let max = self.ctx.config.appliance.item_failure_max_tries;
        let now = Utc::now();
        let mut retry: Vec<(u32, ItemDecision, String)> = Vec::new();
        for (key, size, error) in std::mem::take(&mut prepared.poisoned) {
            let (folder, uidvalidity, uid, uidl) = match (&*source, key) {
                (IngestSource::Folder { folder, cursor }, SyncKey::Uid(uid)) => {
                    (folder.clone(), Some(cursor.uidvalidity), Some(uid), None)
                }
                (_, SyncKey::Uidl(uidl)) => (POP3_FOLDER.to_string(), None, None, Some(uidl)),
                (_, SyncKey::Uid(uid)) => (POP3_FOLDER.to_string(), None, Some(uid), None),
            };
            let mut record = ItemFailure {
                folder,
                uidvalidity,
                uid,
                uidl,
                size,
                code: "email_not_stored".to_string(),
                error: error.clone(),
                tries: 1,
                skipped: false,
                first_at: now,
                last_at: now,
                moved_to: None,
            };
            let previous = self
                .ctx
                .store
                .item_failure(self.mailbox, &record.item_key())
                .map_err(|e| SyncError::Store(e.to_string()))?
                .map_or(0, |f| f.tries);
            let decision = after_item_failure(previous, max);
            record.skipped = decision.skipped();
            tracing::warn!(
                mailbox = self.mailbox,
                item = %record.item_key(),
                ?decision,
                error = %error,
                "an email could not be stored"
            );
            match decision {
                ItemDecision::Skip { tries } => {
                    alerts::raise_email(
                        self.ctx,
                        AlertLevel::Warning,
                        self.mailbox,
                        Some(self.profile),
                        AlertEmail::of_failure(&record),
                        "email_not_stored",
                        format!(
                            "The email {} could not be stored after {tries} tries and was skipped: \
                             {error}. It is listed under GET /api/v1/mailboxes/{}/failures and can \
                             be retried there.",
                            record.item_key(),
                            self.mailbox
                        ),
                    )
                    .await;
                }
                ItemDecision::RetryLater { .. } => {
                    if let Some(uid) = record.uid {
                        retry.push((uid, decision, error));
                    }
                }
            }
            failed.push(record);
        }
        let IngestSource::Folder { folder, cursor } = source else {
            return Ok(None);
        };
        let Some(stop) = imap_stop_at(retry.iter().map(|(uid, _, _)| *uid)) else {
            return Ok(None);
        };
        prepared
            .messages
            .retain(|m| matches!(m.key, SyncKey::Uid(u) if u < stop));
        failed.retain(|f| f.uid.is_none_or(|u| u <= stop));
        cursor.last_uid = stop.saturating_sub(1);
        // The folder is not complete: the next sync must look again.
        cursor.synced_uidnext = None;
        let (tries, max, error) = retry
            .into_iter()
            .find(|(uid, _, _)| *uid == stop)
            .map(|(_, d, e)| match d {
                ItemDecision::RetryLater { tries, max } => (tries, max, e),
                ItemDecision::Skip { tries } => (tries, tries, e),
            })
            .unwrap_or((1, max, String::new()));
        Ok(Some(SyncError::ItemFailed {
            folder: folder.clone(),
            uid: stop,
            tries,
            max,
            error,
        }))
    }

    async fn wait_oldest(&mut self) -> Result<(), SyncError> {
        let Some(rx) = self.committing.pop_front() else {
            return Ok(());
        };
        match rx.await {
            Ok(Ok(o)) => {
                self.progress.mark();
                self.ctx
                    .metrics
                    .ingested(self.profile, u64::from(o.created), o.bytes);
                self.ctx.metrics.sync_done(
                    self.mailbox,
                    u64::from(o.created) + u64::from(o.linked) + u64::from(o.skipped),
                );
                self.summary.created += u64::from(o.created);
                self.summary.linked += u64::from(o.linked);
                Ok(())
            }
            Ok(Err(e)) => Err(SyncError::Store(e)),
            Err(_) => Err(SyncError::Store("the store writer stopped".into())),
        }
    }
}

async fn submit(
    ctx: &JobContext,
    mailbox: &str,
    place: &TrackingPlace,
    source: IngestSource,
    messages: Vec<PreparedMessage>,
    failed: Vec<ItemFailure>,
) -> Result<CommitAnswer, SyncError> {
    let retention = chrono::Duration::from_std(ctx.config.appliance.item_failure_retention)
        .unwrap_or_else(|_| chrono::Duration::days(3));
    ctx.writer
        .ingest(IngestBatch {
            mailbox: mailbox.to_string(),
            source,
            messages,
            failed,
            failures_before: Utc::now() - retention,
            place: place.clone(),
            directory: ctx.directory.clone(),
        })
        .await
        .map_err(|e| SyncError::Store(e.to_string()))
}

/// Parses headers and compresses bodies on the blocking pool, off the async workers. The raw
/// bytes' share of the fetch budget is given back when they are compressed. An email whose
/// preparation fails or panics is set aside as poisoned: only that email is affected.
/// `forwards`: the batch is a forward mailbox's; the directory names the forwarding users.
/// `level`: zstd's level for the stored text (`store_compression_level`).
fn prepare(
    fetched: Vec<Fetched>,
    dated_after: Option<i64>,
    budget: Option<OwnedSemaphorePermit>,
    forwards: Option<std::sync::Arc<Directory>>,
    level: i32,
) -> PrepareTask {
    tokio::task::spawn_blocking(move || {
        let _budget = budget;
        // One compression context per batch: creating one per message costs more than small emails.
        let new_compressor = || {
            zstd::bulk::Compressor::new(level)
                .map_err(|e| SyncError::Store(format!("starting the compressor: {e}")))
        };
        let mut compressor = new_compressor()?;
        let mut out = Prepared {
            messages: Vec::with_capacity(fetched.len()),
            skipped: Vec::new(),
            poisoned: Vec::new(),
        };
        for f in fetched {
            let size = f.raw.len() as u64;
            let attempt =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &forwards {
                    Some(directory) => prepare_forward(&f, directory, &mut compressor).map(Some),
                    None => {
                        prepare_one(&f, dated_after, &mut compressor).map(|m| m.map(|m| vec![m]))
                    }
                }));
            match attempt {
                Ok(Ok(Some(m))) => out.messages.extend(m),
                Ok(Ok(None)) => out.skipped.push(f.key),
                Ok(Err(e)) => out.poisoned.push((f.key, size, e)),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_string());
                    out.poisoned
                        .push((f.key, size, format!("preparing it panicked: {what}")));
                    // The context may be mid-frame after a panic.
                    compressor = new_compressor()?;
                }
            }
        }
        Ok(out)
    })
}

/// One email: `None` when it falls before the profile's date, an error when it cannot be stored.
fn prepare_one(
    f: &Fetched,
    dated_after: Option<i64>,
    compressor: &mut zstd::bulk::Compressor<'static>,
) -> Result<Option<PreparedMessage>, String> {
    let received_at = f.received.and_then(|t| Utc.timestamp_opt(t, 0).single());
    if let Some(h) = &f.header_only {
        return Ok(Some(PreparedMessage {
            key: f.key.clone(),
            headers: h.headers.clone(),
            content_key: None,
            raw_encoded: None,
            size: h.size,
            received_at,
            skip: h.skip,
            undeliverable: None,
            attributed_to: None,
            part: 0,
            bounce: None,
            flags: f.flags.clone(),
        }));
    }
    if injected_fault(&f.raw) {
        return Err("an injected fault (SIDESYNC_TEST_POISON)".to_string());
    }
    let headers = parse_headers(&f.raw);
    if dated_after.is_some_and(|cutoff| dated_before(&headers, cutoff)) {
        return Ok(None);
    }
    let raw_encoded =
        rawcodec::encode(&f.raw, compressor).map_err(|e| format!("compressing it: {e}"))?;
    // Only an email without a Message-ID is keyed by its bytes (SHA-256 of every email was a
    // tenth of the ingest's CPU).
    let content_key = headers.message_id.is_none().then(|| content_key(&f.raw));
    let bounce = read_bounce(&headers, &f.raw);
    Ok(Some(PreparedMessage {
        key: f.key.clone(),
        headers,
        // Only an email without a Message-ID is keyed by its bytes (SHA-256 was a tenth of the
        // ingest's CPU when computed for every email).
        content_key,
        raw_encoded: Some(raw_encoded),
        size: f.raw.len() as u64,
        received_at,
        skip: None,
        undeliverable: None,
        attributed_to: None,
        part: 0,
        bounce,
        flags: f.flags.clone(),
    }))
}

/// The delivery status report in an email classified as a bounce, parsed here, off the writer
/// thread; any other email is not parsed twice.
fn read_bounce(
    headers: &crate::tracking::message::EmailHeaders,
    raw: &[u8],
) -> Option<crate::outbox::bounce::Report> {
    match headers.automatic {
        Some(crate::tracking::automatic::Automatic::Bounce) => crate::outbox::bounce::parse(raw),
        _ => None,
    }
}

/// A forward (M6): the emails it carries, each its forwarding user's, all under the forward's
/// sync key; or one undeliverable entry naming what is wrong with it.
fn prepare_forward(
    f: &Fetched,
    directory: &Directory,
    compressor: &mut zstd::bulk::Compressor<'static>,
) -> Result<Vec<PreparedMessage>, String> {
    if injected_fault(&f.raw) {
        return Err("an injected fault (SIDESYNC_TEST_POISON)".to_string());
    }
    let received_at = f.received.and_then(|t| Utc.timestamp_opt(t, 0).single());
    let unpacked = forward::unpack(&f.raw);
    let problem = match &unpacked.forwarded_by {
        None => Some("it has no sender: the forwarding user cannot be told".to_string()),
        Some(by) if !directory.forwarding.contains(by) => Some(format!(
            "it was forwarded by {by}, which is not a mailbox with incoming_delivery = \"forward_mailbox\""
        )),
        Some(_) if unpacked.emails.is_empty() => Some(
            "it carries no forwarded email (forward as an attachment, or inline with the original \
             From line)"
                .to_string(),
        ),
        Some(_) => None,
    };
    if let Some(error) = problem {
        return Ok(vec![PreparedMessage {
            key: f.key.clone(),
            headers: parse_headers(&f.raw),
            content_key: None,
            raw_encoded: None,
            size: f.raw.len() as u64,
            received_at,
            skip: None,
            undeliverable: Some(error),
            attributed_to: None,
            part: 0,
            bounce: None,
            flags: None,
        }]);
    }
    let mut out = Vec::with_capacity(unpacked.emails.len());
    for (part, raw) in unpacked.emails.iter().enumerate() {
        let raw_encoded =
            rawcodec::encode(raw, compressor).map_err(|e| format!("compressing it: {e}"))?;
        let headers = parse_headers(raw);
        let bounce = read_bounce(&headers, raw);
        out.push(PreparedMessage {
            key: f.key.clone(),
            content_key: headers.message_id.is_none().then(|| content_key(raw)),
            headers,
            raw_encoded: Some(raw_encoded),
            size: raw.len() as u64,
            received_at,
            skip: None,
            undeliverable: None,
            attributed_to: unpacked.forwarded_by.clone(),
            part: part as u32,
            bounce,
            // A carried email is its forwarding user's, not this folder's.
            flags: None,
        });
    }
    Ok(out)
}

/// Debug builds only: an email containing the bytes of `SIDESYNC_TEST_POISON` fails to prepare,
/// so the tests can show what a poison email does end to end (no input is known that makes
/// mail-parser or the codec fail, and a release build never looks).
fn injected_fault(raw: &[u8]) -> bool {
    #[cfg(debug_assertions)]
    {
        static MARK: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
        MARK.get_or_init(|| {
            std::env::var_os("SIDESYNC_TEST_POISON")
                .filter(|v| !v.is_empty())
                .map(|v| v.into_encoded_bytes())
        })
        .as_deref()
        .is_some_and(|mark| memchr::memmem::find(raw, mark).is_some())
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = raw;
        false
    }
}

/// The item failure of an email listed larger than the profile's `max_message_size`.
pub(super) fn too_large(
    profile: &crate::config::Profile,
    folder: &str,
    uidvalidity: Option<u32>,
    uid: Option<u32>,
    uidl: Option<String>,
    size: u64,
) -> ItemFailure {
    let now = Utc::now();
    ItemFailure {
        folder: folder.to_string(),
        uidvalidity,
        uid,
        uidl,
        size,
        code: "message_too_large".to_string(),
        error: format!(
            "{size} bytes, over max_message_size ({} bytes) of profile \"{}\"; not fetched, left on the server",
            profile.max_message_size, profile.name
        ),
        tries: 1,
        skipped: true,
        first_at: now,
        last_at: now,
        moved_to: None,
    }
}

/// An Email-scope warning naming the email that was not fetched (its sync id).
pub(super) async fn alert_too_large(
    ctx: &JobContext,
    profile: &crate::config::Profile,
    address: &str,
    f: &ItemFailure,
) {
    let which = match (&f.uidl, f.uid) {
        (Some(uidl), _) => format!("UIDL {uidl}"),
        (None, Some(uid)) => format!("UID {uid} in folder \"{}\"", f.folder),
        (None, None) => "an email".to_string(),
    };
    alerts::raise_email(
        ctx,
        AlertLevel::Warning,
        address,
        Some(&profile.name),
        AlertEmail::of_failure(f),
        "message_too_large",
        format!("The email {which} was skipped: {}.", f.error),
    )
    .await;
}

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
use crate::engine::error::SyncError;
use crate::store::{
    IngestBatch, IngestOutcome, IngestSource, ItemFailure, PreparedMessage, SyncKey, rawcodec,
};
use crate::tracking::message::{dated_before, dedup_key, parse_headers};

/// Batches queued to the writer per mailbox before the job waits for the oldest commit: fetching
/// overlaps with committing, and memory stays bounded.
pub(super) const BATCHES_IN_FLIGHT: usize = 2;

/// One email as it came off the wire.
pub(super) struct Fetched {
    pub key: SyncKey,
    pub raw: Vec<u8>,
    /// When the server received it (IMAP INTERNALDATE), unix time.
    pub received: Option<i64>,
}

/// A prepared batch: what to store, and what was retrieved but falls before the profile's date.
struct Prepared {
    messages: Vec<PreparedMessage>,
    skipped: Vec<SyncKey>,
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
    pub summary: SyncSummary,
}

impl<'a> Pipeline<'a> {
    pub fn new(
        ctx: &'a JobContext,
        profile: &'a str,
        mailbox: &'a str,
        progress: &'a Progress,
    ) -> Pipeline<'a> {
        Pipeline {
            ctx,
            profile,
            mailbox,
            preparing: VecDeque::new(),
            committing: VecDeque::new(),
            progress,
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
        self.preparing
            .push_back((prepare(fetched, dated_after, budget), source, failed));
        self.advance(1, BATCHES_IN_FLIGHT).await
    }

    /// Commits `source` with no messages (a cursor that moved over nothing new).
    pub async fn push_cursor(&mut self, source: IngestSource) -> Result<(), SyncError> {
        let rx = submit(self.ctx, self.mailbox, source, Vec::new(), Vec::new()).await?;
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
            let prepared = handle
                .await
                .map_err(|e| SyncError::Store(format!("preparing a batch: {e}")))??;
            if let IngestSource::Maildrop { skipped } = &mut source {
                skipped.extend(prepared.skipped.into_iter().filter_map(|k| match k {
                    SyncKey::Uidl(u) => Some(u),
                    SyncKey::Uid(_) => None,
                }));
            }
            let rx = submit(self.ctx, self.mailbox, source, prepared.messages, failed).await?;
            self.committing.push_back(rx);
            while self.committing.len() > committing.max(1) {
                self.wait_oldest().await?;
            }
        }
        while self.committing.len() > committing {
            self.wait_oldest().await?;
        }
        Ok(())
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
        })
        .await
        .map_err(|e| SyncError::Store(e.to_string()))
}

/// Parses headers and compresses bodies on the blocking pool, off the async workers. The raw
/// bytes' share of the fetch budget is given back when they are compressed.
fn prepare(
    fetched: Vec<Fetched>,
    dated_after: Option<i64>,
    budget: Option<OwnedSemaphorePermit>,
) -> PrepareTask {
    tokio::task::spawn_blocking(move || {
        let _budget = budget;
        // One compression context per batch: creating one per message costs more than small emails.
        let mut compressor = zstd::bulk::Compressor::new(crate::store::rawcodec::ZSTD_LEVEL)
            .map_err(|e| SyncError::Store(format!("starting the compressor: {e}")))?;
        let mut out = Prepared {
            messages: Vec::with_capacity(fetched.len()),
            skipped: Vec::new(),
        };
        for f in fetched {
            let headers = parse_headers(&f.raw);
            if dated_after.is_some_and(|cutoff| dated_before(&headers, cutoff)) {
                out.skipped.push(f.key);
                continue;
            }
            let dedup_key = dedup_key(&headers, &f.raw);
            let raw_encoded = rawcodec::encode(&f.raw, &mut compressor)
                .map_err(|e| SyncError::Store(format!("compressing {:?}: {e}", f.key)))?;
            out.messages.push(PreparedMessage {
                key: f.key,
                headers,
                dedup_key,
                raw_encoded,
                size: f.raw.len() as u64,
                received_at: f.received.and_then(|t| Utc.timestamp_opt(t, 0).single()),
            });
        }
        Ok(out)
    })
}

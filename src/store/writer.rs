//! The one writer: a thread that owns every redb write transaction.
//!
//! Mailbox jobs send it requests over a bounded channel. It takes whatever is queued (up to a
//! limit) and applies it in one transaction with one fsync: group commit across all mailboxes, so
//! the store costs one fsync per batch of batches, never one per message.

use std::collections::HashMap;
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use redb::{Durability, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

pub use super::batch::{
    Enqueued, IngestBatch, IngestOutcome, IngestSource, POP3_FOLDER, PreparedMessage, QueuedEmail,
    SyncKey, TrackingPlace,
};
use super::feed::{Change, Feed, MailboxChange, OutboxChange};
pub use super::ingest::ContactsUpdate;
use super::ingest::{apply_contacts, apply_enqueue, apply_ingest, apply_regarding};
use super::outbox_actions::{ActionRefused, OutboxAction};
use super::server_changes::{ServerChanges, apply_server_changes};
use super::webhook::DeadLetter;
use super::{
    ALERTS, Alert, FOLDER_CURSORS, ITEM_FAILURES, ItemFailure, LastError, MAILBOX_STATE,
    MailboxState, NOT_TRACKED, POP3_SYNC_ID_MAP, PROFILE_STATE, SYNC_ID_MAP, Store, StoreError,
    decode, encode,
};
use super::{load, next_id};
pub use crate::lifecycle::transitions::MailboxUpdate;
use crate::store::{
    OUTBOX, OUTBOX_COUNTS, OUTBOX_DUE, OutboxCounts, OutboxEntry, OutboxStatus, ProfileState,
    RecipientResult, due_key,
};
use crate::tracking::plan::FolderCursor;

/// Requests queued beyond this wait for the writer: back-pressure on fetching.
const QUEUE_DEPTH: usize = 1024;
/// At most this many requests, or this many bytes, go into one transaction.
const MAX_OPS_PER_COMMIT: usize = 2048;
const MAX_BYTES_PER_COMMIT: usize = 64 << 20;
/// How long a batch of Sent statuses waits for more before its commit, when several sessions
/// are sending. It adds a millisecond to the time between the server's final 250 and the
/// commit of Sent (O6: the window in which a crash sends an email again).
const SENT_LINGER: std::time::Duration = std::time::Duration::from_millis(3);
/// How long a batch of routine bookkeeping waits, once, for more (10,000 mailboxes polled each
/// minute send about 500 such updates a second).
const ROUTINE_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// A change to a queued email.
#[derive(Debug, Clone)]
pub enum OutboxUpdate {
    /// Committed before DATA: a crash after this retries the email (see the README on duplicates).
    Sending {
        at: DateTime<Utc>,
    },
    Sent {
        at: DateTime<Utc>,
        reply: String,
        results: Vec<RecipientResult>,
    },
    /// Back to Pending Send until `next_attempt_at`, with `tries` attempts counted.
    Retry {
        next_attempt_at: DateTime<Utc>,
        reply: String,
        tries: u32,
    },
    Failed {
        reply: String,
        results: Vec<RecipientResult>,
    },
    SentCopy {
        note: String,
    },
}

enum Op {
    /// Answered with the email's id, and whether its idempotency key had queued it already.
    Enqueue(Box<QueuedEmail>, oneshot::Sender<Result<Enqueued, String>>),
    /// Cancel or resend a queued email; answered with the entry after, or why not.
    OutboxAction(
        u64,
        OutboxAction,
        oneshot::Sender<Result<OutboxEntry, ActionRefused>>,
    ),
    /// Status changes of queued emails, applied in order; told when committed, if asked.
    Outbox {
        updates: Vec<(u64, OutboxUpdate)>,
        committed: Option<oneshot::Sender<()>>,
        /// The commit may wait a moment for more (see `SENT_LINGER`).
        linger: bool,
    },
    Ingest(IngestBatch, oneshot::Sender<Result<IngestOutcome, String>>),
    Mailbox(String, MailboxUpdate),
    /// POP3 UIDLs no longer on the server: their sync id map entries go.
    Pop3Forget(String, Vec<String>),
    /// An item failure to try again on the next sync: (mailbox, item key).
    RetryItem(String, String),
    Profile {
        profile: String,
        connected: bool,
        error: Option<(String, String)>,
    },
    /// An alert, and the time before which older alerts are dropped (retention).
    Alert(Alert, DateTime<Utc>),
    AlertEmailSent {
        profile: String,
        at: DateTime<Utc>,
        /// The disable email (M8) rather than the 50% email (P11).
        disabled: bool,
    },
    /// A downstream system sets (or clears) what an activity is about.
    Regarding(u64, Option<String>),
    Contacts(ContactsUpdate),
    /// A mailbox's rotated OAuth refresh token record (sealed).
    OAuthToken(String, Vec<u8>),
    /// Item failures of a mailbox whose emails were moved on the server: (mailbox, keys, where).
    ItemsMoved(String, Vec<String>, String),
    /// What a check of one folder's server changes found.
    ServerChanges(Box<ServerChanges>),
    /// A webhook's progress: (name, watermark, delivered above it, how many delivered).
    WebhookProgress(String, u64, Vec<u64>, u64),
    /// An event out of attempts, to the webhook's dead-letter list (counted when new).
    WebhookDead(String, Box<DeadLetter>, bool),
    /// Mark a dead letter for redelivery; answered whether there was one.
    WebhookRedeliver(String, u64, oneshot::Sender<bool>),
    /// A redelivered dead letter arrived.
    WebhookResolved(String, u64),
    /// The configured webhooks (a new one starts at the feed's end; others' state goes).
    WebhooksConfigured(Vec<String>),
    Flush(oneshot::Sender<()>),
}

impl Op {
    fn may_linger(&self) -> bool {
        matches!(self, Op::Outbox { linger: true, .. })
    }

    /// A routine poll's bookkeeping (a sync began or ended as usual, a connection was counted):
    /// committed without waiting for the disk, and grouped. Losing it in a crash only loses a
    /// timestamp or a counter; a change anyone may have seen (a feed event) is always durable.
    fn is_routine(&self) -> bool {
        matches!(
            self,
            Op::Mailbox(
                _,
                MailboxUpdate::SyncStarted { .. } | MailboxUpdate::SyncSucceeded { .. }
            ) | Op::Profile { .. }
        )
    }

    fn bytes(&self) -> usize {
        match self {
            Op::Ingest(b, _) => b
                .messages
                .iter()
                .map(|m| m.raw_encoded.as_ref().map_or(0, Vec::len))
                .sum(),
            _ => 0,
        }
    }
}

/// The handle every job holds; cheap to clone.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Op>,
    thread: std::sync::Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl StoreWriter {
    /// Requests waiting for the writer thread.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// True once the writer thread is gone: nothing more can be stored.
    pub fn is_stopped(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues a batch; the returned receiver resolves once it is committed (durably) or failed.
    pub async fn ingest(
        &self,
        batch: IngestBatch,
    ) -> Result<oneshot::Receiver<Result<IngestOutcome, String>>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op::Ingest(batch, done))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    pub async fn mailbox(&self, mailbox: &str, update: MailboxUpdate) -> Result<(), StoreError> {
        self.tx
            .send(Op::Mailbox(mailbox.to_string(), update))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Forgets the POP3 sync id map entries of messages the server no longer lists.
    pub async fn pop3_forget(&self, mailbox: &str, uidls: Vec<String>) -> Result<(), StoreError> {
        self.tx
            .send(Op::Pop3Forget(mailbox.to_string(), uidls))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Counts a connection attempt of a profile, and its error if it failed.
    pub async fn profile_connection(
        &self,
        profile: &str,
        error: Option<(String, String)>,
    ) -> Result<(), StoreError> {
        self.tx
            .send(Op::Profile {
                profile: profile.to_string(),
                connected: error.is_none(),
                error,
            })
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Records an alert and drops alerts older than `keep_after`.
    pub async fn alert(&self, alert: Alert, keep_after: DateTime<Utc>) -> Result<(), StoreError> {
        self.tx
            .send(Op::Alert(alert, keep_after))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    pub async fn alert_email_sent(
        &self,
        profile: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.email_sent(profile, at, false).await
    }

    /// Claims the hour of the profile's disable email (M8), before it is sent.
    pub async fn disable_email_sent(
        &self,
        profile: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.email_sent(profile, at, true).await
    }

    async fn email_sent(
        &self,
        profile: &str,
        at: DateTime<Utc>,
        disabled: bool,
    ) -> Result<(), StoreError> {
        self.tx
            .send(Op::AlertEmailSent {
                profile: profile.to_string(),
                at,
                disabled,
            })
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// For threads outside the runtime (the HTTP side): queue a mailbox update, wait for its commit.
    pub fn mailbox_blocking(&self, mailbox: &str, update: MailboxUpdate) -> Result<(), StoreError> {
        self.blocking_then_flush(Op::Mailbox(mailbox.to_string(), update))
    }

    /// Makes an item failure try again on the next sync, and waits for the commit. For the HTTP
    /// threads.
    pub fn retry_item_blocking(&self, mailbox: &str, key: &str) -> Result<(), StoreError> {
        self.blocking_then_flush(Op::RetryItem(mailbox.to_string(), key.to_string()))
    }

    /// Sets what an activity is about (None clears it) and waits for the commit. For the HTTP
    /// threads.
    pub fn regarding_blocking(&self, id: u64, regarding: Option<String>) -> Result<(), StoreError> {
        self.blocking_then_flush(Op::Regarding(id, regarding))
    }

    /// Applies a change to the known contacts and waits for the commit. For the HTTP threads.
    pub fn contacts_blocking(&self, update: ContactsUpdate) -> Result<(), StoreError> {
        self.blocking_then_flush(Op::Contacts(update))
    }

    /// Records that these item failures' emails were moved on the server, and waits for it.
    pub async fn items_moved(
        &self,
        mailbox: &str,
        keys: Vec<String>,
        to: &str,
    ) -> Result<(), StoreError> {
        self.tx
            .send(Op::ItemsMoved(mailbox.to_string(), keys, to.to_string()))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        self.flush().await
    }

    /// Records what a check of a folder's server changes found, and waits for the commit (the
    /// next check starts from what it kept).
    pub async fn server_changes(&self, changes: ServerChanges) -> Result<(), StoreError> {
        self.tx
            .send(Op::ServerChanges(Box::new(changes)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        self.flush().await
    }

    /// Keeps a mailbox's rotated refresh token and waits for the commit: the endpoint may have
    /// invalidated the old one already, so it must be durable before it is relied on.
    pub async fn oauth_token(&self, mailbox: &str, record: Vec<u8>) -> Result<(), StoreError> {
        self.tx
            .send(Op::OAuthToken(mailbox.to_string(), record))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        self.flush().await
    }

    /// Applies a change to the known contacts and waits for the commit.
    pub async fn contacts(&self, update: ContactsUpdate) -> Result<(), StoreError> {
        self.tx
            .send(Op::Contacts(update))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        self.flush().await
    }

    fn blocking_then_flush(&self, op: Op) -> Result<(), StoreError> {
        self.tx
            .blocking_send(op)
            .map_err(|_| StoreError::WriterGone)?;
        let (done, rx) = oneshot::channel();
        self.tx
            .blocking_send(Op::Flush(done))
            .map_err(|_| StoreError::WriterGone)?;
        rx.blocking_recv().map_err(|_| StoreError::WriterGone)
    }

    /// Cancels or resends a queued email and waits for the commit. For the HTTP threads.
    pub fn outbox_action_blocking(
        &self,
        id: u64,
        action: OutboxAction,
    ) -> Result<Result<OutboxEntry, ActionRefused>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .blocking_send(Op::OutboxAction(id, action, done))
            .map_err(|_| StoreError::WriterGone)?;
        rx.blocking_recv().map_err(|_| StoreError::WriterGone)
    }

    /// Queues an email (durably) and returns its activity id, and whether its idempotency key
    /// had queued it already (then nothing new is queued) — or that its token was taken first
    /// and it must be built again. For the HTTP threads.
    pub fn enqueue_blocking(&self, email: QueuedEmail) -> Result<Enqueued, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .blocking_send(Op::Enqueue(Box::new(email), done))
            .map_err(|_| StoreError::WriterGone)?;
        rx.blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Commit)
    }

    pub async fn outbox(&self, id: u64, update: OutboxUpdate) -> Result<(), StoreError> {
        self.tx
            .send(Op::Outbox {
                updates: vec![(id, update)],
                committed: None,
                linger: false,
            })
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Status changes as one request (a send job's claim, an email Sent); the receiver resolves
    /// once they are committed (or is dropped when the commit failed). `linger`: other sessions
    /// are sending too, so the commit may wait a moment for their statuses (with one session
    /// there is nothing to wait for, and an idle writer only delays it).
    pub async fn outbox_committed(
        &self,
        updates: Vec<(u64, OutboxUpdate)>,
        linger: bool,
    ) -> Result<oneshot::Receiver<()>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op::Outbox {
                updates,
                committed: Some(done),
                linger,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// A webhook dispatcher's progress (applied with the next commit; a crash before it
    /// redelivers those events, which the idempotency key lets receivers drop).
    pub async fn webhook_progress(
        &self,
        name: &str,
        watermark: u64,
        acked: Vec<u64>,
        delivered: u64,
    ) -> Result<(), StoreError> {
        self.tx
            .send(Op::WebhookProgress(
                name.to_string(),
                watermark,
                acked,
                delivered,
            ))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    pub async fn webhook_dead(
        &self,
        name: &str,
        letter: DeadLetter,
        new: bool,
    ) -> Result<(), StoreError> {
        self.tx
            .send(Op::WebhookDead(name.to_string(), Box::new(letter), new))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    pub async fn webhook_resolved(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        self.tx
            .send(Op::WebhookResolved(name.to_string(), seq))
            .await
            .map_err(|_| StoreError::WriterGone)
    }

    /// Records the configured webhooks and waits for the commit.
    pub async fn webhooks_configured(&self, names: Vec<String>) -> Result<(), StoreError> {
        self.tx
            .send(Op::WebhooksConfigured(names))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        self.flush().await
    }

    /// Marks a dead letter for redelivery and waits for the commit; false: no such letter. For
    /// the HTTP threads.
    pub fn webhook_redeliver_blocking(&self, name: &str, seq: u64) -> Result<bool, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .blocking_send(Op::WebhookRedeliver(name.to_string(), seq, done))
            .map_err(|_| StoreError::WriterGone)?;
        rx.blocking_recv().map_err(|_| StoreError::WriterGone)
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op::Flush(done))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)
    }

    /// Closes the queue and waits for the writer to commit what is in it. Only the last holder's
    /// call has effect; other clones must be dropped first.
    pub fn shutdown(self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        drop(self.tx);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

pub(super) fn start(store: Store) -> StoreWriter {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let thread = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(store, rx))
        .ok();
    if thread.is_none() {
        tracing::error!("cannot start the store writer thread");
    }
    StoreWriter {
        tx,
        thread: std::sync::Arc::new(std::sync::Mutex::new(thread)),
    }
}

fn run(store: Store, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.bytes();
        let mut ops = vec![first];
        let mut lingered = false;
        while ops.len() < MAX_OPS_PER_COMMIT && bytes < MAX_BYTES_PER_COMMIT {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op.bytes();
                    ops.push(op);
                }
                // Nothing more queued. A batch of Sent statuses only, sent while several
                // sessions are sending (their sessions wait for the commit only when far
                // behind), waits a moment, once, for the others' ones: one commit for many
                // emails instead of one for every two. A sleep, not a wait on the queue, so
                // that senders do not wake this thread for every email.
                Err(mpsc::error::TryRecvError::Empty)
                    if !lingered && ops.iter().all(Op::may_linger) =>
                {
                    lingered = true;
                    std::thread::sleep(SENT_LINGER);
                }
                Err(mpsc::error::TryRecvError::Empty)
                    if !lingered && ops.iter().all(Op::is_routine) =>
                {
                    lingered = true;
                    std::thread::sleep(ROUTINE_LINGER);
                }
                Err(_) => break,
            }
        }
        commit(&store, ops);
    }
}

/// What applying one request produced, for its answer after the commit.
enum Applied {
    Nothing,
    Ingested(IngestOutcome),
    Queued(Enqueued),
    Found(bool),
    Acted(Result<OutboxEntry, ActionRefused>),
}

/// Applies `ops` in one transaction and answers each request after the commit.
fn commit(store: &Store, ops: Vec<Op>) {
    let mut applied: Vec<Applied> = Vec::with_capacity(ops.len());
    let mut last_seq = None;
    let result = (|| -> Result<(), StoreError> {
        // The changes downstream sees, numbered in this same transaction.
        let mut feed = Feed::default();
        let mut txn = store.db().begin_write()?;
        // Durable: the commit reaches the disk before any job is told its batch is stored.
        let _ = txn.set_durability(Durability::Immediate);
        // Consecutive outbox changes (one per email sent) share their open tables and write
        // each mailbox's counts once: per-change table opens were most of the writer's work.
        let mut outbox: Option<OutboxTables> = None;
        for op in &ops {
            match op {
                Op::Outbox { updates, .. } => {
                    if outbox.is_none() {
                        outbox = Some(OutboxTables::open(&txn)?);
                    }
                    if let Some(t) = outbox.as_mut() {
                        for (id, update) in updates {
                            t.apply(*id, update, &mut feed)?;
                        }
                    }
                    applied.push(Applied::Nothing);
                    continue;
                }
                Op::Flush(_) => {
                    applied.push(Applied::Nothing);
                    continue;
                }
                _ => {
                    if let Some(t) = outbox.take() {
                        t.close()?;
                    }
                }
            }
            applied.push(match op {
                Op::Ingest(batch, _) => Applied::Ingested(apply_ingest(&txn, batch, &mut feed)?),
                Op::Enqueue(email, _) => Applied::Queued(apply_enqueue(&txn, email, &mut feed)?),
                Op::Mailbox(mailbox, update) => {
                    apply_mailbox(&txn, mailbox, update, &mut feed)?;
                    Applied::Nothing
                }
                Op::Pop3Forget(mailbox, uidls) => {
                    apply_pop3_forget(&txn, mailbox, uidls)?;
                    Applied::Nothing
                }
                Op::RetryItem(mailbox, key) => {
                    apply_retry_item(&txn, mailbox, key)?;
                    Applied::Nothing
                }
                Op::Regarding(id, regarding) => {
                    apply_regarding(&txn, *id, regarding.clone(), &mut feed)?;
                    Applied::Nothing
                }
                Op::Contacts(update) => {
                    apply_contacts(&txn, update)?;
                    Applied::Nothing
                }
                Op::OAuthToken(mailbox, record) => {
                    let mut t = txn.open_table(super::OAUTH_TOKENS)?;
                    t.insert(mailbox.as_str(), record.as_slice())?;
                    Applied::Nothing
                }
                Op::ItemsMoved(mailbox, keys, to) => {
                    apply_items_moved(&txn, mailbox, keys, to)?;
                    Applied::Nothing
                }
                Op::ServerChanges(changes) => {
                    apply_server_changes(&txn, changes, &mut feed)?;
                    Applied::Nothing
                }
                Op::Profile {
                    profile,
                    connected,
                    error,
                } => {
                    apply_profile(&txn, profile, *connected, error.as_ref())?;
                    Applied::Nothing
                }
                Op::Alert(alert, keep_after) => {
                    apply_alert(&txn, alert, *keep_after, &mut feed)?;
                    Applied::Nothing
                }
                Op::AlertEmailSent {
                    profile,
                    at,
                    disabled,
                } => {
                    let mut states = txn.open_table(PROFILE_STATE)?;
                    let mut p: ProfileState = load(&states, profile.as_str(), "profile state")?;
                    if *disabled {
                        p.last_disable_email_at = Some(*at);
                    } else {
                        p.last_alert_email_at = Some(*at);
                    }
                    states.insert(profile.as_str(), encode(&p).as_slice())?;
                    Applied::Nothing
                }
                Op::WebhookProgress(name, watermark, acked, delivered) => {
                    super::webhook::apply_progress(&txn, name, *watermark, acked, *delivered)?;
                    Applied::Nothing
                }
                Op::WebhookDead(name, letter, new) => {
                    super::webhook::apply_dead(&txn, name, letter, *new)?;
                    Applied::Nothing
                }
                Op::OutboxAction(id, action, _) => Applied::Acted(
                    super::outbox_actions::apply_action(&txn, *id, *action, &mut feed)?,
                ),
                Op::WebhookRedeliver(name, seq, _) => {
                    Applied::Found(super::webhook::apply_redeliver(&txn, name, *seq)?)
                }
                Op::WebhookResolved(name, seq) => {
                    super::webhook::apply_resolved(&txn, name, *seq)?;
                    Applied::Nothing
                }
                Op::WebhooksConfigured(names) => {
                    let start = super::feed::next_seq(&txn)?.saturating_sub(1);
                    super::webhook::apply_configured(&txn, names, start)?;
                    Applied::Nothing
                }
                Op::Outbox { .. } | Op::Flush(_) => Applied::Nothing,
            });
        }
        if let Some(t) = outbox.take() {
            t.close()?;
        }
        drop(outbox);
        if feed.is_empty() && ops.iter().all(Op::is_routine) {
            let _ = txn.set_durability(Durability::None);
        }
        last_seq =
            super::feed::append(&txn, feed, store.feed(), &super::webhook::lowest_watermark)?;
        txn.commit()?;
        Ok(())
    })();
    if let (Ok(()), Some(seq)) = (&result, last_seq) {
        store.feed().set(seq);
    }
    if let Err(e) = &result {
        tracing::error!(error = %e, "store commit failed; the batch will be fetched again");
    }
    let failure = result.as_ref().err().map(|e| e.to_string());
    for (op, applied) in ops.into_iter().zip(
        applied
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat_with(|| None)),
    ) {
        match (op, applied, &failure) {
            (Op::Ingest(_, done), Some(Applied::Ingested(o)), None) => {
                let _ = done.send(Ok(o));
            }
            (Op::Ingest(_, done), _, f) => {
                let _ = done.send(Err(f
                    .clone()
                    .unwrap_or_else(|| "the batch was not stored".into())));
            }
            (Op::Enqueue(_, done), Some(Applied::Queued(id)), None) => {
                let _ = done.send(Ok(id));
            }
            (Op::Enqueue(_, done), _, f) => {
                let _ = done.send(Err(f
                    .clone()
                    .unwrap_or_else(|| "the email was not queued".into())));
            }
            (Op::OutboxAction(_, _, done), Some(Applied::Acted(result)), None) => {
                let _ = done.send(result);
            }
            (Op::WebhookRedeliver(_, _, done), Some(Applied::Found(found)), None) => {
                let _ = done.send(found);
            }
            (Op::Flush(done), _, _)
            | (
                Op::Outbox {
                    committed: Some(done),
                    ..
                },
                _,
                None,
            ) => {
                let _ = done.send(());
            }
            _ => {}
        }
    }
}

/// The outbox tables open in a write transaction, with the counts of the mailboxes touched so
/// far (written back by `close`).
struct OutboxTables<'t> {
    entries: redb::Table<'t, u64, &'static [u8]>,
    due: redb::Table<'t, (u64, u64), ()>,
    counts_table: redb::Table<'t, &'static str, &'static [u8]>,
    counts: HashMap<String, OutboxCounts>,
}

impl<'t> OutboxTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(OutboxTables {
            entries: txn.open_table(OUTBOX)?,
            due: txn.open_table(OUTBOX_DUE)?,
            counts_table: txn.open_table(OUTBOX_COUNTS)?,
            counts: HashMap::new(),
        })
    }

    fn apply(&mut self, id: u64, update: &OutboxUpdate, feed: &mut Feed) -> Result<(), StoreError> {
        let Some(mut e) = self
            .entries
            .get(id)?
            .map(|v| decode::<OutboxEntry>("outbox entry", v.value()))
            .transpose()?
        else {
            return Ok(());
        };
        let (before, due_before) = (e.status, e.next_attempt_at);
        match update {
            // Cancelled (or finished) since the sender read it: it stays so, and the sender,
            // reading it again after its claim, leaves it.
            OutboxUpdate::Sending { .. }
                if !matches!(e.status, OutboxStatus::PendingSend | OutboxStatus::Sending) =>
            {
                return Ok(());
            }
            OutboxUpdate::Sending { at } => {
                e.status = OutboxStatus::Sending;
                e.tries += 1;
                e.next_attempt_at = *at;
            }
            OutboxUpdate::Sent { at, reply, results } => {
                e.status = OutboxStatus::Sent;
                e.sent_at = Some(*at);
                e.last_reply = Some(reply.clone());
                e.recipient_results = results.clone();
            }
            OutboxUpdate::Retry {
                next_attempt_at,
                reply,
                tries,
            } => {
                e.status = OutboxStatus::PendingSend;
                e.tries = e.tries.max(*tries);
                e.next_attempt_at = *next_attempt_at;
                e.last_reply = Some(reply.clone());
            }
            OutboxUpdate::Failed { reply, results } => {
                e.status = OutboxStatus::Failed;
                e.last_reply = Some(reply.clone());
                if !results.is_empty() {
                    e.recipient_results = results.clone();
                }
            }
            OutboxUpdate::SentCopy { note } => e.sent_copy = Some(note.clone()),
        }
        self.entries.insert(id, encode(&e).as_slice())?;
        if before != e.status {
            feed.push(
                Some(e.mailbox.as_str()),
                Change::OutboxStatusChanged(OutboxChange::of(&e, Some(before))),
            );
        }
        // Keep the due index and the mailbox's counts in step with the entry.
        let due_after = matches!(e.status, OutboxStatus::PendingSend | OutboxStatus::Sending)
            .then(|| due_key(e.next_attempt_at));
        if due_after != Some(due_key(due_before)) {
            self.due.remove((due_key(due_before), id))?;
            if let Some(key) = due_after {
                self.due.insert((key, id), ())?;
            }
        }
        if before != e.status || matches!(update, OutboxUpdate::Retry { .. }) {
            if !self.counts.contains_key(&e.mailbox) {
                let c: OutboxCounts = load(&self.counts_table, &e.mailbox, "outbox counts")?;
                self.counts.insert(e.mailbox.clone(), c);
            }
            if let Some(counts) = self.counts.get_mut(&e.mailbox) {
                if before != e.status {
                    counts.moved(Some(before), e.status);
                }
                if matches!(e.status, OutboxStatus::Failed | OutboxStatus::PendingSend) {
                    counts.last_send_error = e.last_reply.clone();
                }
            }
        }
        Ok(())
    }

    /// Writes the touched mailboxes' counts and closes the tables.
    fn close(mut self) -> Result<(), StoreError> {
        for (mailbox, counts) in &self.counts {
            self.counts_table
                .insert(mailbox.as_str(), encode(counts).as_slice())?;
        }
        Ok(())
    }
}

/// Forgets an item failure so the email is tried again: a POP3 one loses its sync id map entry
/// (if it has no activity), an IMAP folder's cursor steps back below its UID (emails above it
/// that are already mapped are not stored twice). Nothing when there is no such failure.
fn apply_retry_item(txn: &WriteTransaction, mailbox: &str, key: &str) -> Result<(), StoreError> {
    let mut table = txn.open_table(ITEM_FAILURES)?;
    let Some(f) = table.remove((mailbox, key))? else {
        return Ok(());
    };
    let f: ItemFailure = decode("item failure", f.value())?;
    if let Some(uidl) = &f.uidl {
        let mut uidl_map = txn.open_table(POP3_SYNC_ID_MAP)?;
        let untracked = uidl_map
            .get((mailbox, uidl.as_str()))?
            .is_some_and(|v| v.value().0 == NOT_TRACKED);
        if untracked {
            uidl_map.remove((mailbox, uidl.as_str()))?;
        }
        return Ok(());
    }
    let (Some(uidvalidity), Some(uid)) = (f.uidvalidity, f.uid) else {
        return Ok(());
    };
    // Its entry without an activity goes, or the next ingest would take it as stored.
    let mut uid_map = txn.open_table(SYNC_ID_MAP)?;
    let key = (mailbox, f.folder.as_str(), uidvalidity, uid);
    if uid_map.get(key)?.is_some_and(|v| v.value() == NOT_TRACKED) {
        uid_map.remove(key)?;
    }
    let mut cursors = txn.open_table(FOLDER_CURSORS)?;
    let stored: Option<FolderCursor> = cursors
        .get((mailbox, f.folder.as_str()))?
        .map(|v| decode("folder cursor", v.value()))
        .transpose()?;
    if let Some(mut cursor) = stored
        && cursor.uidvalidity == uidvalidity
        && cursor.last_uid >= uid
    {
        cursor.last_uid = uid.saturating_sub(1);
        cursor.synced_uidnext = None;
        cursors.insert((mailbox, f.folder.as_str()), encode(&cursor).as_slice())?;
    }
    Ok(())
}

fn apply_items_moved(
    txn: &WriteTransaction,
    mailbox: &str,
    keys: &[String],
    to: &str,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(ITEM_FAILURES)?;
    for key in keys {
        let found: Option<ItemFailure> = table
            .get((mailbox, key.as_str()))?
            .map(|v| decode("item failure", v.value()))
            .transpose()?;
        if let Some(mut f) = found {
            f.moved_to = Some(to.to_string());
            table.insert((mailbox, key.as_str()), encode(&f).as_slice())?;
        }
    }
    Ok(())
}

/// Removes POP3 sync id map entries of messages no longer on the server.
fn apply_pop3_forget(
    txn: &WriteTransaction,
    mailbox: &str,
    uidls: &[String],
) -> Result<(), StoreError> {
    let mut uidl_map = txn.open_table(POP3_SYNC_ID_MAP)?;
    for uidl in uidls {
        uidl_map.remove((mailbox, uidl.as_str()))?;
    }
    Ok(())
}

fn apply_mailbox(
    txn: &WriteTransaction,
    mailbox: &str,
    update: &MailboxUpdate,
    feed: &mut Feed,
) -> Result<(), StoreError> {
    let mut states = txn.open_table(MAILBOX_STATE)?;
    let mut s: MailboxState = load(&states, mailbox, "mailbox state")?;
    let before = MailboxChange::of(&s);
    crate::lifecycle::transitions::apply(&mut s, update);
    let after = MailboxChange::of(&s);
    if after != before {
        feed.push(Some(mailbox), Change::MailboxStateChanged(after));
    }
    // A profile-wide Test & Enable is the profile's last test too (P14).
    if let MailboxUpdate::Tested {
        profile: Some(profile),
        record,
        ..
    } = update
    {
        let mut profiles = txn.open_table(PROFILE_STATE)?;
        let mut p: ProfileState = load(&profiles, profile.as_str(), "profile state")?;
        p.last_test = Some((**record).clone());
        profiles.insert(profile.as_str(), encode(&p).as_slice())?;
    }
    states.insert(mailbox, encode(&s).as_slice())?;
    Ok(())
}

fn apply_profile(
    txn: &WriteTransaction,
    profile: &str,
    connected: bool,
    error: Option<&(String, String)>,
) -> Result<(), StoreError> {
    let mut states = txn.open_table(PROFILE_STATE)?;
    let mut s: ProfileState = load(&states, profile, "profile state")?;
    if connected {
        s.connections_opened += 1;
    } else {
        s.connection_failures += 1;
    }
    if let Some((text, code)) = error {
        let consecutive = match &s.last_error {
            Some(e) if e.code == *code => e.consecutive + 1,
            _ => 1,
        };
        s.last_error = Some(LastError {
            text: text.clone(),
            code: code.clone(),
            transient: true,
            consecutive,
            at: Utc::now(),
        });
    }
    states.insert(profile, encode(&s).as_slice())?;
    Ok(())
}

fn apply_alert(
    txn: &WriteTransaction,
    alert: &Alert,
    keep_after: DateTime<Utc>,
    feed: &mut Feed,
) -> Result<(), StoreError> {
    let id = next_id(txn, "next_alert_id")?;
    let mut alerts = txn.open_table(ALERTS)?;
    alerts.insert(id, encode(alert).as_slice())?;
    feed.push(
        alert.mailbox.as_deref(),
        super::feed::alert_change(id, alert),
    );
    // Ids grow with time: drop from the oldest until one is young enough.
    loop {
        let first = alerts
            .first()?
            .map(|(k, v)| (k.value(), decode::<Alert>("alert", v.value())));
        match first {
            Some((k, Ok(a))) if a.at < keep_after => {
                alerts.remove(k)?;
            }
            Some((k, Err(_))) => {
                alerts.remove(k)?;
            }
            _ => break,
        }
    }
    Ok(())
}

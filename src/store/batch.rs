//! What the jobs hand the writer: prepared emails in batches with what marks them handled, and
//! queued email.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::ItemFailure;
use crate::tracking::automatic::AutomaticSet;
use crate::tracking::decision::{Directory, SkipReason, Track};
use crate::tracking::message::EmailHeaders;
use crate::tracking::plan::FolderCursor;

/// Where a message sits on the server: what its sync id map entry is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncKey {
    /// IMAP: the UID, under the UIDVALIDITY of the batch's folder cursor.
    Uid(u32),
    /// POP3: the UIDL the server gives the message.
    Uidl(String),
}

/// A message ready to store: parsed and compressed by the mailbox job, off the writer thread.
#[derive(Debug)]
pub struct PreparedMessage {
    pub key: SyncKey,
    pub headers: EmailHeaders,
    /// "sha256:…" of the raw bytes; None when only the header was fetched.
    pub content_key: Option<String>,
    /// The raw MIME, encoded; None when only the header was fetched (the header pre-screen found
    /// it skipped or a duplicate: its body is never fetched, never kept).
    pub raw_encoded: Option<Vec<u8>>,
    pub size: u64,
    pub received_at: Option<DateTime<Utc>>,
    /// Skipped before the commit (the header pre-screen's decision).
    pub skip: Option<SkipReason>,
    /// It cannot be tracked (a forward from no forwarding user, or carrying nothing): the error.
    pub undeliverable: Option<String>,
    /// An email carried by a forward: the user it belongs to (M6).
    pub attributed_to: Option<String>,
    /// Its place among the emails one forward carried (0 for every other email): all of them
    /// share the forward's sync id map entry.
    pub part: u32,
    /// A delivery status report (an automatic `bounce` the pipeline could read): recorded on
    /// the sent email it is about, at commit.
    pub bounce: Option<crate::outbox::bounce::Report>,
    /// Its IMAP flags when fetched with it: the baseline of its server copy.
    pub flags: Option<Vec<String>>,
}

/// How a batch's emails are judged: the mailbox's filter, and the tracking folder they are in
/// (with its regarding record), if any.
#[derive(Debug, Clone)]
pub struct TrackingPlace {
    pub track: Track,
    /// The automatic kinds the mailbox skips (`skip_automatic`).
    pub skip_automatic: AutomaticSet,
    pub tracking_folder: Option<Option<String>>,
    /// A forward mailbox: its emails are forwards, judged as the forwarding user's email.
    pub forward: bool,
    /// The mailbox's Sent folder (`track_sent`): its emails are outgoing, sent by the mailbox.
    pub sent: bool,
}

impl Default for TrackingPlace {
    fn default() -> Self {
        TrackingPlace {
            track: Track::All,
            skip_automatic: AutomaticSet::default(),
            tracking_folder: None,
            sent: false,
            forward: false,
        }
    }
}

/// Messages of one mailbox and what marks them as handled: committed together or not at all.
#[derive(Debug)]
pub struct IngestBatch {
    pub mailbox: String,
    pub source: IngestSource,
    pub messages: Vec<PreparedMessage>,
    /// Emails of this batch that were not stored (too large): recorded with the batch, so the
    /// cursor never passes an email without its record. A skipped POP3 one also gets a sync id
    /// map entry without an activity: it is not retrieved again and never deleted.
    pub failed: Vec<ItemFailure>,
    /// Item failures of the mailbox last seen before this are dropped (retention).
    pub failures_before: DateTime<Utc>,
    pub place: TrackingPlace,
    pub directory: Arc<Directory>,
}

/// What a batch came from, and what its commit records besides the activities.
#[derive(Debug)]
pub enum IngestSource {
    /// An IMAP folder: the cursor covers every UID of the batch (fetched or deliberately skipped).
    Folder {
        folder: String,
        cursor: FolderCursor,
    },
    /// A POP3 maildrop: its sync id map entries are its cursor. `skipped` UIDLs were retrieved but
    /// are not tracked (received before the profile's date); they are recorded so that they are
    /// not retrieved again.
    Maildrop { skipped: Vec<String> },
}

impl IngestSource {
    /// The folder activities of this batch are filed under (a POP3 maildrop is the inbox).
    pub fn folder(&self) -> &str {
        match self {
            IngestSource::Folder { folder, .. } => folder,
            IngestSource::Maildrop { .. } => POP3_FOLDER,
        }
    }
}

/// The folder name activities from a POP3 maildrop carry.
pub const POP3_FOLDER: &str = "INBOX";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Activities created.
    pub created: u32,
    /// Messages linked to an activity that already existed (same Message-ID or content).
    pub linked: u32,
    /// Messages skipped by the tracking decision (relevance, noise).
    pub skipped: u32,
    /// Raw bytes of the activities created.
    pub bytes: u64,
}

/// An email to queue: its outgoing activity, raw MIME and outbox entry are written together.
#[derive(Debug)]
pub struct QueuedEmail {
    pub mailbox: String,
    pub headers: EmailHeaders,
    pub raw_encoded: Vec<u8>,
    pub size: u64,
    pub recipients: Vec<String>,
    /// The tracking token its subject carries (a reply with only the token correlates), as
    /// claimed when the email was built; the writer records it or answers `TokenMoved`.
    pub token: Option<super::tokens::QueuedToken>,
    /// The record it is about, when the request named one.
    pub regarding: Option<String>,
    pub directory: Arc<Directory>,
    /// The request's idempotency key (scoped to its caller) and what it was, if it had one.
    pub idempotency: Option<(String, super::IdempotencyRecord)>,
}

/// What became of an email to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued as this activity; `replayed`: its idempotency key had queued it already.
    Queued { id: u64, replayed: bool },
    /// Its token was taken by another email of the mailbox queued first: nothing was written;
    /// build it again with the mailbox's next token.
    TokenMoved,
}

//! One mailbox's incoming sync over IMAP: open a session, and for each tracked folder fetch what
//! the plan says, batch by batch, each batch committed with its cursor by the store writer.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use chrono::{TimeZone, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::SyncError;
use super::test_enable::identity;
use super::{JobContext, alerts};
use crate::config::{Mailbox, Profile};
use crate::imap::{FetchedMessage, ImapSession, Login, Target};
use crate::net::Recorder;
use crate::store::{AlertLevel, AlertScope, IngestBatch, IngestOutcome, PreparedMessage, rawcodec};
use crate::tracking::message::{dedup_key, parse_headers};
use crate::tracking::plan::{FolderCursor, FolderPlan, chunk_listing, plan_folder};

/// Batches queued to the writer per folder before the job waits for the oldest commit: fetching
/// overlaps with committing, and memory stays bounded.
const BATCHES_IN_FLIGHT: usize = 2;
/// Compression level for stored raw MIME: fast, and well under 40% of typical mail.
const ZSTD_LEVEL: i32 = -3;

/// I1: only INBOX for now; tracking folders join this list.
const FOLDERS: &[&str] = &["INBOX"];

#[derive(Debug, Default, Clone, Copy)]
pub struct SyncSummary {
    pub created: u64,
    pub linked: u64,
    /// True when shutdown cut the sync short (what was committed stays committed).
    pub interrupted: bool,
}

pub async fn sync_mailbox(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
) -> Result<SyncSummary, SyncError> {
    let _permit = ctx.acquire(profile, mailbox).await;
    let mut session = open_session(ctx, profile, mailbox, None).await?;
    let mut summary = SyncSummary::default();
    for folder in FOLDERS {
        let s = sync_folder(ctx, profile, mailbox, &mut session, folder).await;
        match s {
            Ok(s) => {
                summary.created += s.created;
                summary.linked += s.linked;
                summary.interrupted |= s.interrupted;
            }
            Err(e) => {
                session.logout().await;
                return Err(e);
            }
        }
        if summary.interrupted {
            break;
        }
    }
    session.logout().await;
    Ok(summary)
}

/// Opens an IMAP session for `mailbox` with the identity its profile says (its own, or the
/// profile's acting for it), and counts the attempt on the profile. The caller holds the
/// connection slot.
pub async fn open_session(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    recorder: Option<Recorder>,
) -> Result<ImapSession, SyncError> {
    let (username, password, authzid) = identity(&profile.incoming, mailbox);
    let Some(password) = password else {
        return Err(SyncError::Unsupported(format!(
            "mailbox {} has no password",
            mailbox.email_address
        )));
    };
    let target = Target {
        host: &profile.incoming.host,
        port: profile.incoming.port,
        tls: profile.incoming.tls,
        tls_context: ctx.tls_context(profile)?,
        auth: profile.incoming.auth,
        timeout: profile.timeout_mailbox_connection_after,
        recorder,
    };
    let login = Login {
        username,
        password,
        authzid,
    };
    let opened = ImapSession::open(&target, &login).await;
    let connect_error = opened
        .as_ref()
        .err()
        .map(|e| (e.to_string(), e.code().to_string()));
    let _ = ctx
        .writer
        .profile_connection(&profile.name, connect_error)
        .await;
    opened
}

async fn sync_folder(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
    folder: &str,
) -> Result<SyncSummary, SyncError> {
    let address = mailbox.email_address.as_str();
    let status = session.examine(folder).await?;
    let stored = ctx
        .store
        .folder_cursor(address, folder)
        .map_err(|e| SyncError::Store(e.to_string()))?;
    let (mut cursor, after_uid) = match plan_folder(stored.as_ref(), &status) {
        FolderPlan::UpToDate => return Ok(SyncSummary::default()),
        FolderPlan::NoUidValidity => {
            return Err(SyncError::NoUidValidity {
                folder: folder.to_string(),
            });
        }
        FolderPlan::Fetch { cursor, after_uid } => (cursor, after_uid),
        FolderPlan::Rescan { cursor, previous } => {
            tracing::warn!(
                mailbox = address,
                folder,
                previous,
                uidvalidity = cursor.uidvalidity,
                changes = cursor.uidvalidity_changes,
                "UIDVALIDITY changed; rescanning the folder (known emails are linked, not duplicated)"
            );
            if cursor.uidvalidity_changes >= ctx.config.appliance.uidvalidity_alert_after_changes {
                alerts::raise(
                    ctx,
                    AlertLevel::Warning,
                    AlertScope::Mailbox,
                    Some(address),
                    Some(&profile.name),
                    "uidvalidity_changed",
                    format!(
                        "The server changed the UIDVALIDITY of folder \"{folder}\" {} times (now {}); \
                         each change forces a full rescan. Check the server's mail storage.",
                        cursor.uidvalidity_changes, cursor.uidvalidity
                    ),
                )
                .await;
            }
            (cursor, 0)
        }
    };
    let listed = session.list_after(after_uid).await?;
    let received: HashMap<u32, i64> = listed
        .iter()
        .filter_map(|m| Some((m.uid, m.received?)))
        .collect();
    let chunks = chunk_listing(
        &listed,
        after_uid,
        profile.process_emails_received_after.map(|d| d.timestamp()),
        ctx.config.appliance.fetch_batch_size as usize,
        ctx.config.appliance.fetch_batch_bytes,
    );
    let mut summary = SyncSummary::default();
    let mut pipeline = Pipeline::default();
    let last = chunks.len().saturating_sub(1);
    if chunks.is_empty() {
        // Nothing listed: record that every UID below UIDNEXT is handled, so the next poll skips.
        if status.uidnext != cursor.synced_uidnext || stored.as_ref() != Some(&cursor) {
            cursor.synced_uidnext = status.uidnext;
            cursor.highest_modseq = status.highest_modseq;
            pipeline
                .committing
                .push_back(submit(ctx, address, folder, &cursor, Vec::new()).await?);
        }
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        if ctx.stopping() {
            summary.interrupted = true;
            break;
        }
        let started = Instant::now();
        let bodies = session.fetch_bodies(&chunk.fetch).await?;
        tracing::debug!(
            mailbox = address,
            folder,
            messages = bodies.len(),
            fetch_ms = started.elapsed().as_millis() as u64,
            "batch fetched"
        );
        cursor.last_uid = chunk.last_uid;
        if i == last {
            cursor.synced_uidnext = status.uidnext;
            cursor.highest_modseq = status.highest_modseq;
        }
        // The next FETCH goes out while this batch is prepared and committed.
        pipeline
            .preparing
            .push_back((prepare(bodies, &received), cursor.clone()));
        pipeline
            .advance(ctx, address, folder, &mut summary, 1, BATCHES_IN_FLIGHT)
            .await?;
    }
    pipeline
        .advance(ctx, address, folder, &mut summary, 0, 0)
        .await?;
    Ok(summary)
}

/// A batch being parsed and compressed on the blocking pool.
type PrepareTask = JoinHandle<Result<Vec<PreparedMessage>, SyncError>>;

/// Batches between the network and the store. Batches are submitted to the writer strictly in
/// fetch order, so a folder's cursor only ever moves forward over committed UIDs.
#[derive(Default)]
struct Pipeline {
    preparing: VecDeque<(PrepareTask, FolderCursor)>,
    committing: VecDeque<oneshot::Receiver<Result<IngestOutcome, String>>>,
}

impl Pipeline {
    /// Moves batches along until at most `preparing` are being prepared and `committing` are
    /// waiting for their commit.
    async fn advance(
        &mut self,
        ctx: &JobContext,
        mailbox: &str,
        folder: &str,
        summary: &mut SyncSummary,
        preparing: usize,
        committing: usize,
    ) -> Result<(), SyncError> {
        while self.preparing.len() > preparing {
            let Some((handle, cursor)) = self.preparing.pop_front() else {
                break;
            };
            let prepared = handle
                .await
                .map_err(|e| SyncError::Store(format!("preparing a batch: {e}")))??;
            self.committing
                .push_back(submit(ctx, mailbox, folder, &cursor, prepared).await?);
            while self.committing.len() > committing.max(1) {
                if let Some(rx) = self.committing.pop_front() {
                    add(summary, rx.await)?;
                }
            }
        }
        while self.committing.len() > committing {
            if let Some(rx) = self.committing.pop_front() {
                add(summary, rx.await)?;
            }
        }
        Ok(())
    }
}

async fn submit(
    ctx: &JobContext,
    mailbox: &str,
    folder: &str,
    cursor: &FolderCursor,
    messages: Vec<PreparedMessage>,
) -> Result<oneshot::Receiver<Result<IngestOutcome, String>>, SyncError> {
    ctx.writer
        .ingest(IngestBatch {
            mailbox: mailbox.to_string(),
            folder: folder.to_string(),
            cursor: cursor.clone(),
            messages,
        })
        .await
        .map_err(|e| SyncError::Store(e.to_string()))
}

fn add(
    summary: &mut SyncSummary,
    answer: Result<Result<IngestOutcome, String>, oneshot::error::RecvError>,
) -> Result<(), SyncError> {
    match answer {
        Ok(Ok(o)) => {
            summary.created += u64::from(o.created);
            summary.linked += u64::from(o.linked);
            Ok(())
        }
        Ok(Err(e)) => Err(SyncError::Store(e)),
        Err(_) => Err(SyncError::Store("the store writer stopped".into())),
    }
}

/// Parses headers and compresses bodies on the blocking pool, off the async workers.
fn prepare(
    bodies: Vec<FetchedMessage>,
    received: &HashMap<u32, i64>,
) -> JoinHandle<Result<Vec<PreparedMessage>, SyncError>> {
    let received: Vec<Option<i64>> = bodies
        .iter()
        .map(|b| received.get(&b.uid).copied())
        .collect();
    tokio::task::spawn_blocking(move || {
        // One compression context per batch: creating one per message costs more than small emails.
        let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map_err(|e| SyncError::Store(format!("starting the compressor: {e}")))?;
        bodies
            .into_iter()
            .zip(received)
            .map(|(b, r)| {
                let headers = parse_headers(&b.raw);
                let dedup_key = dedup_key(&headers, &b.raw);
                let raw_encoded = rawcodec::encode(&b.raw, &mut compressor)
                    .map_err(|e| SyncError::Store(format!("compressing UID {}: {e}", b.uid)))?;
                Ok(PreparedMessage {
                    uid: b.uid,
                    headers,
                    dedup_key,
                    raw_encoded,
                    size: b.raw.len() as u64,
                    received_at: r.and_then(|t| Utc.timestamp_opt(t, 0).single()),
                })
            })
            .collect::<Result<Vec<_>, SyncError>>()
    })
}

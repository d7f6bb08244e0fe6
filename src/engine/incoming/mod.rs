//! One mailbox's incoming sync: open an incoming session (IMAP or POP3) with the mailbox's
//! identity, then let that protocol's sync walk what is new, batch by batch, through the shared
//! [`pipeline`] into the store. Scheduling, connection slots, timeouts, status and error handling
//! are the engine's, the same for both protocols.

mod imap_folder;
mod pipeline;
mod pop3_maildrop;
mod server_changes;
pub mod undeliverable;

use super::JobContext;
use super::error::SyncError;
use super::kept_sessions::KEEP_AT_MOST;
use crate::config::{Mailbox, Profile, ServerType};
use crate::imap::ImapSession;
use crate::net::Recorder;
use crate::pop3::Pop3Session;
use crate::store::MailboxUpdate;

#[derive(Debug, Default, Clone, Copy)]
pub struct SyncSummary {
    pub created: u64,
    pub linked: u64,
    /// True when shutdown cut the sync short (what was committed stays committed).
    pub interrupted: bool,
    /// Emails found gone or with other flags on the server (`server_changes`).
    pub server_changes: u64,
}

impl SyncSummary {
    fn add(&mut self, other: SyncSummary) {
        self.created += other.created;
        self.linked += other.linked;
        self.interrupted |= other.interrupted;
        self.server_changes += other.server_changes;
    }
}

/// A logged-in incoming session, whichever protocol the profile's server type says.
pub enum IncomingSession {
    Imap(ImapSession),
    Pop3(Pop3Session),
}

impl IncomingSession {
    /// Connects and logs in for `mailbox` with the identity its profile says (its own, or the
    /// profile's acting for it), and counts the attempt on the profile. The caller holds the
    /// connection slot.
    pub async fn open(
        ctx: &JobContext,
        profile: &Profile,
        mailbox: &Mailbox,
        recorder: Option<Recorder>,
    ) -> Result<IncomingSession, SyncError> {
        match profile.server_type {
            ServerType::ImapSmtp => open_imap(ctx, profile, mailbox, recorder)
                .await
                .map(IncomingSession::Imap),
            ServerType::Pop3Smtp => open_pop3(ctx, profile, mailbox, recorder)
                .await
                .map(IncomingSession::Pop3),
        }
    }

    /// Test & Enable's check after login: INBOX opens (IMAP), the maildrop answers STAT (POP3).
    pub async fn probe(&mut self) -> Result<(), SyncError> {
        match self {
            IncomingSession::Imap(s) => s.examine("INBOX").await.map(|_| ()),
            IncomingSession::Pop3(s) => s.stat().await.map(|_| ()),
        }
    }

    /// Ends the session, best effort: the sync's outcome does not depend on it.
    pub async fn close(self) {
        match self {
            IncomingSession::Imap(s) => s.logout().await,
            IncomingSession::Pop3(s) => {
                let _ = s.quit().await;
            }
        }
    }
}

/// When a sync last made progress (a committed batch, or its start); the sync deadline counts
/// from it.
pub(super) struct Progress(std::sync::Mutex<tokio::time::Instant>);

impl Progress {
    fn new() -> Progress {
        Progress(std::sync::Mutex::new(tokio::time::Instant::now()))
    }

    pub(super) fn mark(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = tokio::time::Instant::now();
        }
    }

    fn last(&self) -> tokio::time::Instant {
        self.0
            .lock()
            .map_or_else(|_| tokio::time::Instant::now(), |at| *at)
    }

    /// Returns once `deadline` has passed without progress.
    async fn stalled(&self, deadline: std::time::Duration) {
        loop {
            let due = self.last() + deadline;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One incoming sync of `mailbox`: everything new is stored, exactly once. A sync that commits
/// nothing for the profile's `sync_deadline` is dropped (its connection with it) and retried
/// later: each step has the connection timeout, but a server answering just in time, forever,
/// would otherwise hold a connection slot for good.
///
/// An IMAP mailbox on IDLE syncs on its IDLE connection; otherwise on the session kept since its
/// last sync or its Test & Enable (still alive), else on a new one. After a successful sync the
/// session is kept while the idle budget allows.
pub async fn sync_mailbox(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
) -> Result<SyncSummary, SyncError> {
    let address = mailbox.email_address.as_str();
    if profile.server_type == ServerType::Pop3Smtp {
        let _permit = ctx.acquire(profile, mailbox, &profile.incoming).await;
        let progress = Progress::new();
        let _shown = ctx.metrics.sync_progress(address);
        return tokio::select! {
            result = pop3_session(ctx, profile, mailbox, &progress) => result,
            () = progress.stalled(profile.sync_deadline) => Err(SyncError::SyncDeadline {
                seconds: profile.sync_deadline.as_secs(),
            }),
        };
    }
    if let Some(result) = ctx.idle_syncs.run(address).await {
        return result;
    }
    let (kept, stale) = ctx.kept_sessions.take(address, &mailbox.fingerprint);
    if let Some(stale) = stale {
        stale.close().await;
    }
    let (mut session, mut permit) = match kept {
        Some(k) => (Some(k.session), Some(k.permit)),
        None => (None, None),
    };
    if let Some(p) = permit.as_mut() {
        p.busy();
    }
    if let Some(mut s) = session.take()
        && s.alive().await
    {
        session = Some(s);
    }
    if permit.is_none() {
        permit = ctx.acquire(profile, mailbox, &profile.incoming).await;
    }
    let mut session = match session {
        Some(s) => s,
        None => open_imap(ctx, profile, mailbox, None).await?,
    };
    let result = sync_on_imap(ctx, profile, mailbox, &mut session).await;
    match permit {
        Some(permit) if result.is_ok() && profile.keep_sessions_open => {
            keep(ctx, profile, mailbox, session, permit, KEEP_AT_MOST).await;
        }
        _ => session.logout().await,
    }
    result
}

/// Keeps `session` open for the mailbox's next sync if the idle budget allows, else logs out.
pub(crate) async fn keep(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: ImapSession,
    mut permit: super::limits::ConnectionPermit,
    keep_for: std::time::Duration,
) {
    if ctx.stopping() || !ctx.limits.make_idle(profile, mailbox, &mut permit) {
        session.logout().await;
        return;
    }
    let kept = super::kept_sessions::Kept {
        session,
        permit,
        key: super::limits::limit_key(profile, mailbox),
        fingerprint: mailbox.fingerprint.clone(),
        since: tokio::time::Instant::now(),
        until: tokio::time::Instant::now() + keep_for,
    };
    if let Some(replaced) = ctx.kept_sessions.keep(&mailbox.email_address, kept) {
        replaced.close().await;
    }
}

/// One IMAP sync on a logged-in session, under the profile's `sync_deadline`.
pub async fn sync_on_imap(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    session: &mut ImapSession,
) -> Result<SyncSummary, SyncError> {
    let progress = Progress::new();
    // Emails found and committed, for the page, /status and /metrics while it runs.
    let _shown = ctx.metrics.sync_progress(&mailbox.email_address);
    let sync = async {
        let from = process_from(ctx, profile, mailbox).await?;
        let summary =
            imap_folder::sync_folders(ctx, profile, mailbox, session, &progress, from).await?;
        synced_from(ctx, mailbox, &summary, from).await?;
        Ok(summary)
    };
    tokio::select! {
        result = sync => result,
        () = progress.stalled(profile.sync_deadline) => Err(SyncError::SyncDeadline {
            seconds: profile.sync_deadline.as_secs(),
        }),
    }
}

/// After a whole sync: everything received after `from` is now in the store (or was looked at).
async fn synced_from(
    ctx: &JobContext,
    mailbox: &Mailbox,
    summary: &SyncSummary,
    from: ProcessFrom,
) -> Result<(), SyncError> {
    if summary.interrupted || from.recorded {
        return Ok(());
    }
    ctx.writer
        .mailbox(
            &mailbox.email_address,
            MailboxUpdate::SyncedFrom { from: from.from },
        )
        .await
        .map_err(|e| SyncError::Store(e.to_string()))
}

/// P6 for one sync: the date emails are taken from, and whether emails passed over under a later
/// date must be pulled now (see `tracking::process_from`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcessFrom {
    pub from: Option<i64>,
    pub backfill: bool,
    /// The store already says everything after `from` was synced (a routine poll): nothing to
    /// record at the end.
    pub recorded: bool,
}

async fn process_from(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
) -> Result<ProcessFrom, SyncError> {
    use crate::tracking::process_from::{at_first_enable, effective, needs_backfill};
    let address = mailbox.email_address.as_str();
    let state = ctx
        .store
        .mailbox_state(address)
        .map_err(|e| SyncError::Store(e.to_string()))?;
    let profile_from = profile.process_emails_received_after.map(|d| d.timestamp());
    let at_enable = if state.process_from_set {
        state.process_from_at_enable
    } else {
        let relevance_on = mailbox.track != crate::tracking::decision::Track::All;
        let at = at_first_enable(
            profile_from,
            relevance_on,
            profile.first_sync_days,
            chrono::Utc::now().timestamp(),
        );
        ctx.writer
            .mailbox(address, MailboxUpdate::ProcessFromSet { at_enable: at })
            .await
            .map_err(|e| SyncError::Store(e.to_string()))?;
        at
    };
    let from = effective(
        profile_from,
        mailbox.process_emails_received_after.map(|d| d.timestamp()),
        at_enable,
    );
    let synced = state.synced.then_some(state.synced_from);
    Ok(ProcessFrom {
        from,
        backfill: needs_backfill(from, synced),
        recorded: state.synced && state.synced_from == from,
    })
}

async fn pop3_session(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    progress: &Progress,
) -> Result<SyncSummary, SyncError> {
    let from = process_from(ctx, profile, mailbox).await?;
    let mut s = open_pop3(ctx, profile, mailbox, None).await?;
    let outcome = pop3_maildrop::sync_maildrop(ctx, profile, mailbox, &mut s, progress, from).await;
    let summary = match outcome {
        Ok(o) if o.deleted > 0 => {
            // DELE takes effect at QUIT: its answer says whether the messages are gone.
            s.quit().await?;
            tracing::info!(
                mailbox = %mailbox.email_address,
                deleted = o.deleted,
                "stored messages deleted from the POP3 server"
            );
            o.summary
        }
        Ok(o) => {
            let _ = s.quit().await;
            o.summary
        }
        // No QUIT after a failure: the server drops any DELE, nothing is deleted.
        Err(e) => return Err(e),
    };
    synced_from(ctx, mailbox, &summary, from).await?;
    Ok(summary)
}

async fn open_pop3(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    recorder: Option<Recorder>,
) -> Result<Pop3Session, SyncError> {
    use crate::engine::credentials::{credentials, renewed, token_refused};
    let endpoint = &profile.incoming;
    let creds = credentials(ctx, profile, endpoint, mailbox, recorder.as_ref()).await?;
    let target = ctx.target(profile, endpoint, recorder.clone())?;
    let mut opened = Pop3Session::open(&target, &creds.login()).await;
    if creds.is_bearer()
        && matches!(opened, Err(SyncError::AuthRejected { .. }))
        && let Some(fresh) =
            renewed(ctx, profile, endpoint, mailbox, &creds, recorder.as_ref()).await?
    {
        let target = ctx.target(profile, endpoint, recorder)?;
        opened = Pop3Session::open(&target, &fresh.login())
            .await
            .map_err(token_refused);
    }
    count_attempt(ctx, profile, endpoint, &opened).await;
    opened
}

/// Counts a connection attempt on the profile, with its error when it failed.
pub(crate) async fn count_attempt<T>(
    ctx: &JobContext,
    profile: &Profile,
    endpoint: &crate::config::Endpoint,
    opened: &Result<T, SyncError>,
) {
    ctx.metrics.connection(&profile.name, opened.is_ok());
    let refused = opened
        .as_ref()
        .err()
        .is_some_and(|e| e.refuses_connections());
    ctx.limits.server_outcome(endpoint, refused);
    let connect_error = opened
        .as_ref()
        .err()
        .map(|e| (e.to_string(), e.code().to_string()));
    let _ = ctx
        .writer
        .profile_connection(&profile.name, connect_error)
        .await;
}

/// Opens an IMAP session for `mailbox` (syncs, tests, and Sent copies, O5).
pub async fn open_imap(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    recorder: Option<Recorder>,
) -> Result<ImapSession, SyncError> {
    use crate::engine::credentials::{credentials, renewed, token_refused};
    let endpoint = &profile.incoming;
    let creds = credentials(ctx, profile, endpoint, mailbox, recorder.as_ref()).await?;
    let target = ctx.target(profile, endpoint, recorder.clone())?;
    let mut opened = ImapSession::open(&target, &creds.login()).await;
    if creds.is_bearer()
        && matches!(opened, Err(SyncError::AuthRejected { .. }))
        && let Some(fresh) =
            renewed(ctx, profile, endpoint, mailbox, &creds, recorder.as_ref()).await?
    {
        let target = ctx.target(profile, endpoint, recorder)?;
        opened = ImapSession::open(&target, &fresh.login())
            .await
            .map_err(token_refused);
    }
    count_attempt(ctx, profile, endpoint, &opened).await;
    opened
}

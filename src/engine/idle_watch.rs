//! IMAP IDLE (RFC 2177) for the profiles with `idle = true`. A watcher holds a connection in IDLE
//! on its mailbox's INBOX; when the server tells of a change it wakes the mailbox's sync through
//! the scheduler, and that sync runs on the IDLE connection itself ([`IdleSyncs`]): no new
//! connection, no login, no waiting for a tick. IDLE is re-issued every 10 minutes (servers end
//! it at 30; a lost notification shows at DONE). A watcher whose connection fails or drops waits (with jitter, doubling up to ten
//! minutes) and tries again; polling goes on beside it at `min_polling_interval` all along (on
//! the IDLE connection while it lives, on a connection of its own otherwise), so a broken IDLE
//! costs only latency, never email.
//!
//! IDLE connections count against every connection limit and take an idle slot
//! (`max_idle_connections`, see `limits`): when there are more candidates than slots, the
//! mailboxes that received email most recently get them; the rest poll. A supervisor pass every
//! few seconds starts and stops watchers accordingly (a reload, a Test & Enable, new email).
//!
//! Tracking folders: where the server offers NOTIFY (RFC 5465) the INBOX connection asks to be
//! told of their changes too, so a mailbox takes one connection whatever its folders; otherwise
//! each folder gets an IDLE connection of its own, which only wakes the sync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::incoming::SyncSummary;
use super::{Command, Current, JobContext};
use crate::engine::error::SyncError;
use crate::lifecycle::eligibility::{Decision, incoming_decision};

/// IDLE is ended and issued again this often: servers drop an IDLE after 30 minutes, and a
/// notification the server lost (dovecot's imap-hibernate drops one that is pending while it
/// takes the session over) shows as EXISTS at DONE, so this also bounds how late such an email
/// comes.
pub const IDLE_RENEW: Duration = Duration::from_secs(10 * 60);
/// How often the supervisor looks at which mailboxes should be watched.
const SUPERVISE_EVERY: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(600);

type SyncReply = oneshot::Sender<Result<SyncSummary, SyncError>>;

/// The way to a watcher's connection: a sync asks, the watcher leaves IDLE, syncs, answers.
struct Door {
    asks: mpsc::Sender<SyncReply>,
    knock: Arc<Notify>,
    /// The server tells of the tracking folders' changes on this connection too (NOTIFY).
    notify: bool,
}

/// The mailboxes whose IDLE connection is up, and the way to run their syncs on it.
#[derive(Default)]
pub struct IdleSyncs {
    doors: Mutex<HashMap<String, Door>>,
}

impl IdleSyncs {
    /// Runs the mailbox's sync on its IDLE connection; None when it has none (or it broke
    /// before answering): the caller syncs on a connection of its own.
    pub async fn run(&self, address: &str) -> Option<Result<SyncSummary, SyncError>> {
        let (reply, answer) = oneshot::channel();
        {
            let doors = self.doors.lock().ok()?;
            let door = doors.get(address)?;
            door.asks.try_send(reply).ok()?;
            door.knock.notify_one();
        }
        // A watcher that ends drops the ask unanswered.
        answer.await.ok()
    }

    /// How many mailboxes are on IDLE now.
    pub fn len(&self) -> usize {
        self.doors.lock().map_or(0, |d| d.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the mailbox's INBOX watcher is up, and if so whether its NOTIFY covers the
    /// tracking folders.
    fn inbox_watch(&self, address: &str) -> Option<bool> {
        self.doors.lock().ok()?.get(address).map(|d| d.notify)
    }

    fn open(&self, address: &str, notify: bool) -> (mpsc::Receiver<SyncReply>, Arc<Notify>) {
        let (asks, receiver) = mpsc::channel(4);
        let knock = Arc::new(Notify::new());
        if let Ok(mut doors) = self.doors.lock() {
            doors.insert(
                address.to_string(),
                Door {
                    asks,
                    knock: knock.clone(),
                    notify,
                },
            );
        }
        (receiver, knock)
    }

    fn close(&self, address: &str) {
        if let Ok(mut doors) = self.doors.lock() {
            doors.remove(address);
        }
    }
}

/// Runs until `current`'s stop signal.
pub async fn run(current: Current, commands: mpsc::Sender<Command>) {
    let mut watchers: HashMap<Watched, (String, JoinHandle<()>)> = HashMap::new();
    let mut stop = current.get().stop.clone();
    loop {
        let ctx = current.get();
        let wanted = watched(&ctx);
        // Stop watchers no longer wanted, or whose settings changed (a reload).
        watchers.retain(|key, (fingerprint, task)| {
            let keep = wanted.get(key) == Some(fingerprint) && !task.is_finished();
            if !keep {
                task.abort();
                if key.1.is_none() {
                    ctx.idle_syncs.close(&key.0);
                }
            }
            keep
        });
        for (key, fingerprint) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = watchers.entry(key) {
                let (address, folder) = slot.key().clone();
                let task = tokio::spawn(watch(ctx.clone(), address, folder, commands.clone()));
                slot.insert((fingerprint, task));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    for ((address, _), (_, task)) in watchers {
        task.abort();
        current.get().idle_syncs.close(&address);
    }
}

/// What a watcher watches: a mailbox's INBOX (None), or one of its tracking folders.
type Watched = (String, Option<String>);

/// The folders to watch now (with their mailbox's config fingerprint): INBOX and the tracking
/// folders of the mailboxes processed for incoming email, of an IMAP profile with `idle = true`;
/// when there are more than idle slots, those of the mailboxes that received email most recently.
/// A tracking folder gets a connection of its own only once its INBOX watcher is up and its
/// server has no NOTIFY (with NOTIFY the INBOX connection watches every folder).
fn watched(ctx: &JobContext) -> HashMap<Watched, String> {
    // Every mailbox's state is read below: not every few seconds when no profile asks for IDLE.
    if !ctx.config.profiles.iter().any(|p| p.idle) {
        return HashMap::new();
    }
    let states = ctx.store.mailbox_states().unwrap_or_default();
    let mut candidates: Vec<(Option<chrono::DateTime<Utc>>, &crate::config::Mailbox)> = ctx
        .config
        .mailboxes
        .iter()
        .filter(|m| {
            ctx.config
                .mailbox_profile(m)
                .is_some_and(|p| p.idle && p.server_type == crate::config::ServerType::ImapSmtp)
        })
        .filter_map(|m| {
            let state = states.get(&m.email_address).cloned().unwrap_or_default();
            matches!(
                incoming_decision(&ctx.config, m, &state, &m.fingerprint),
                Decision::Sync(_)
            )
            .then_some((state.last_email_at, m))
        })
        .collect();
    let (_, slots) = ctx.limits.budget();
    // Most recent email first; never-received last; the address keeps the order stable.
    candidates.sort_by(|(a, ma), (b, mb)| {
        b.cmp(a)
            .then_with(|| ma.email_address.cmp(&mb.email_address))
    });
    candidates
        .into_iter()
        .flat_map(|(_, m)| {
            let own_watchers = ctx.idle_syncs.inbox_watch(&m.email_address) == Some(false);
            let folders = m
                .tracking_folders
                .iter()
                .filter(move |_| own_watchers)
                .map(|f| Some(f.folder.clone()));
            std::iter::once(None)
                .chain(folders)
                .map(|folder| ((m.email_address.clone(), folder), m.fingerprint.clone()))
        })
        .take(slots)
        .collect()
}

/// One mailbox's watcher: IDLE, wake, sync on request, again; after a failure, wait and start
/// over.
async fn watch(
    ctx: Arc<JobContext>,
    address: String,
    folder: Option<String>,
    commands: mpsc::Sender<Command>,
) {
    let mut wait = FIRST_RETRY;
    loop {
        let outcome = idle_session(&ctx, &address, folder.as_deref(), &commands).await;
        if folder.is_none() {
            ctx.idle_syncs.close(&address);
        }
        match outcome {
            Ok(Ended::NotOffered) => {
                tracing::info!(mailbox = %address, "the server does not offer IDLE; polling only");
                return;
            }
            Ok(Ended::Stopping) => return,
            Ok(Ended::NoSlot) => {
                tracing::debug!(mailbox = %address, "no idle connection slot free; polling meanwhile");
                // Slots free up as others end: look again soon, without backing off.
                wait = FIRST_RETRY / 2;
            }
            Ok(Ended::Restart) => wait = FIRST_RETRY,
            Err(e) => {
                tracing::debug!(mailbox = %address, error = %e, "IDLE connection ended; polling goes on");
            }
        }
        let jitter = wait.mul_f64(f64::from(Utc::now().timestamp_subsec_millis() % 250) / 1000.0);
        tokio::time::sleep(wait + jitter).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
}

enum Ended {
    NotOffered,
    NoSlot,
    Stopping,
    Restart,
}

/// One IDLE connection, for as long as it lasts. On INBOX (`folder` None) the mailbox's syncs
/// run on it; on a tracking folder a change only wakes the sync (which runs on the INBOX
/// watcher's connection, or its own).
async fn idle_session(
    ctx: &JobContext,
    address: &str,
    folder: Option<&str>,
    commands: &mpsc::Sender<Command>,
) -> Result<Ended, SyncError> {
    let Some(mailbox) = ctx.config.mailbox(address) else {
        return Ok(Ended::NotOffered);
    };
    let Some(profile) = ctx.config.mailbox_profile(mailbox) else {
        return Ok(Ended::NotOffered);
    };
    let endpoint = &profile.incoming;
    // The mailbox's own kept session gives way: its syncs will run on the IDLE connection.
    if folder.is_none()
        && let Some(kept) = ctx.kept_sessions.forget(address)
    {
        kept.close().await;
    }
    let mut permit = ctx.limits.try_acquire_idle(profile, mailbox, endpoint);
    if permit.is_none() {
        // A session kept between polls yields its idle slot to IDLE.
        if let Some(kept) = ctx.kept_sessions.reap_oldest() {
            kept.close().await;
            permit = ctx.limits.try_acquire_idle(profile, mailbox, endpoint);
        }
    }
    let Some(_permit) = permit else {
        return Ok(Ended::NoSlot);
    };
    let opened = super::incoming::open_imap(ctx, profile, mailbox, None).await;
    let mut session = opened?;
    if !session.offers("IDLE").await? {
        session.logout().await;
        return Ok(Ended::NotOffered);
    }
    if let Some(folder) = folder {
        session.examine(folder).await?;
        tracing::info!(mailbox = %address, folder, "IDLE on a tracking folder");
        loop {
            let (next, changed) = session.idle(IDLE_RENEW, std::future::pending()).await?;
            session = next;
            if changed
                && commands
                    .send(Command::Wake(address.to_string()))
                    .await
                    .is_err()
            {
                session.logout().await;
                return Ok(Ended::Stopping);
            }
        }
    }
    session.examine("INBOX").await?;
    let folders: Vec<String> = mailbox
        .tracking_folders
        .iter()
        .map(|f| f.folder.clone())
        .collect();
    let notify = session.notify_folders(&folders).await?;
    let (mut asks, knock) = ctx.idle_syncs.open(address, notify);
    if notify {
        tracing::info!(mailbox = %address, tracking_folders = folders.len(), "IDLE on INBOX, with NOTIFY for the tracking folders");
    } else {
        tracing::info!(mailbox = %address, "IDLE on INBOX");
    }
    // Anything that arrived before IDLE began is the first sync's or a poll's; from here on
    // every change wakes the sync.
    loop {
        let (next, changed) = session.idle(IDLE_RENEW, knock.notified()).await?;
        session = next;
        // Syncs asked for meanwhile run here, one after the other, then IDLE goes on.
        while let Ok(reply) = asks.try_recv() {
            let result = super::incoming::sync_on_imap(ctx, profile, mailbox, &mut session).await;
            let broken = result.is_err();
            let _ = reply.send(result);
            if broken {
                // The sync's error is its own to record; this connection starts over.
                ctx.idle_syncs.close(address);
                session.logout().await;
                return Ok(Ended::Restart);
            }
            // Back on INBOX for the IDLE (the sync may have ended on a tracking folder).
            session.examine("INBOX").await?;
        }
        if changed {
            tracing::debug!(mailbox = %address, "IDLE: the server told of a change");
            if commands
                .send(Command::Wake(address.to_string()))
                .await
                .is_err()
            {
                // The scheduler is gone: the appliance is stopping.
                session.logout().await;
                return Ok(Ended::Stopping);
            }
        }
    }
}

//! Sending queued email (O1–O6): one task watches the outbox. For each mailbox with email due and
//! outgoing enabled, it starts a send job; the job opens up to `max_concurrent_connections` SMTP
//! sessions (the same slots incoming uses) and each session takes emails from the mailbox's queue
//! until it is empty, reusing the connection (RSET between, the envelope pipelined).
//!
//! Crash safety: an email is marked Sending in a committed transaction before DATA. On restart,
//! Sending emails are sent again. A crash between the server's final 250 and the commit of Sent
//! therefore sends that email twice (at most `SENT_UNCOMMITTED` per connection); nothing else can.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::error::SyncError;
use super::{JobContext, alerts, scheduler};
use crate::config::{Mailbox, Profile};
use crate::lifecycle::eligibility::outgoing_profile;
use crate::outbox::retry::{Attempt, NextStep, next_step};
use crate::smtp::SmtpSession;

pub use pool::{Pooled, SmtpPool};

mod pool {
    //! Open SMTP connections between send jobs, per mailbox (they are authenticated as it), each
    //! with the connection slot it holds, closed after `smtp_idle_timeout`.

    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use crate::smtp::SmtpSession;

    pub struct Pooled {
        /// The connection-limit key its slot counts against.
        pub key: String,
        pub session: SmtpSession,
        pub permit: Option<crate::engine::limits::ConnectionPermit>,
        pub since: Instant,
    }

    #[derive(Default)]
    pub struct SmtpPool {
        idle: Mutex<HashMap<String, Vec<Pooled>>>,
    }

    impl SmtpPool {
        pub fn take(&self, mailbox: &str) -> Option<Pooled> {
            self.idle.lock().ok()?.get_mut(mailbox)?.pop()
        }

        pub fn give(&self, mailbox: &str, p: Pooled) {
            if let Ok(mut idle) = self.idle.lock() {
                idle.entry(mailbox.to_string()).or_default().push(p);
            }
        }

        /// Takes out a mailbox's idle connections (its settings changed, or it is gone).
        pub fn forget(&self, mailbox: &str) -> Vec<Pooled> {
            self.idle
                .lock()
                .ok()
                .and_then(|mut idle| idle.remove(mailbox))
                .unwrap_or_default()
        }

        /// Takes out the idle connections holding slots of `key`.
        pub fn reap_key(&self, key: &str) -> Vec<Pooled> {
            let Ok(mut idle) = self.idle.lock() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for list in idle.values_mut() {
                let (matching, keep): (Vec<Pooled>, Vec<Pooled>) =
                    list.drain(..).partition(|p| p.key == key);
                *list = keep;
                out.extend(matching);
            }
            idle.retain(|_, l| !l.is_empty());
            out
        }

        /// Takes out the connections idle for longer than `limit` (all of them when `limit` is zero).
        pub fn reap(&self, limit: Duration) -> Vec<Pooled> {
            let Ok(mut idle) = self.idle.lock() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for list in idle.values_mut() {
                let (old, keep): (Vec<Pooled>, Vec<Pooled>) = list
                    .drain(..)
                    .partition(|p| limit.is_zero() || p.since.elapsed() >= limit);
                *list = keep;
                out.extend(old);
            }
            idle.retain(|_, l| !l.is_empty());
            out
        }
    }
}

use crate::store::{AlertEmail, AlertLevel, Enablement, OutboxEntry, OutboxUpdate};

/// The outbox task looks again at least this often.
const TICK: Duration = Duration::from_secs(5);
/// The least time between two looks at the outbox after a wake-up.
const SCAN_GAP: Duration = Duration::from_millis(100);
/// Due emails read per look; the rest are read on the next one.
const DUE_BATCH: usize = 50_000;

/// Whether `mailbox` may send now; `Err` says why not (the email stays Pending Send).
fn may_send<'c>(ctx: &'c JobContext, mailbox: &Mailbox) -> Result<&'c Profile, String> {
    let state = ctx
        .store
        .mailbox_state(&mailbox.email_address)
        .map_err(|e| e.to_string())?;
    outgoing_profile(&ctx.config, mailbox, &state).map_err(|e| e.to_string())
}

/// The outbox task: runs until the engine stops.
pub async fn run(current: super::Current, wake: Arc<Notify>) {
    let mut running: HashSet<String> = HashSet::new();
    let mut jobs: JoinSet<String> = JoinSet::new();
    let mut ctx = current.get();
    let mut stop = ctx.stop.clone();
    loop {
        // A reload takes effect at the next look; send jobs under way finish under the old one.
        ctx = current.get();
        let last_scan = tokio::time::Instant::now();
        let now = Utc::now();
        let mut next_due: Option<DateTime<Utc>> = None;
        // Only what is due is read (the due index); emails of a mailbox being sent wait for
        // its job to end.
        match ctx.store.outbox_due(now, DUE_BATCH) {
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
            Ok((entries, next)) => {
                next_due = next;
                let mut due: HashMap<String, Vec<OutboxEntry>> = HashMap::new();
                for e in entries {
                    if !running.contains(&e.mailbox) {
                        due.entry(e.mailbox.clone()).or_default().push(e);
                    }
                }
                for (address, mut entries) in due {
                    let Some(mailbox) = ctx.config.mailbox(&address) else {
                        continue;
                    };
                    if let Err(why) = may_send(&ctx, mailbox) {
                        tracing::debug!(mailbox = %address, %why, "email waits in the outbox");
                        continue;
                    }
                    entries.sort_by_key(|e| e.id);
                    running.insert(address.clone());
                    let ctx = ctx.clone();
                    jobs.spawn(async move {
                        send_job(&ctx, address.clone(), entries).await;
                        address
                    });
                }
            }
        }
        for idle in ctx.smtp_pool.reap(ctx.config.appliance.smtp_idle_timeout) {
            tokio::spawn(idle.session.quit(Duration::from_secs(5)));
        }
        let wait = next_due
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or(TICK)
            .min(TICK);
        tokio::select! {
            _ = stop.changed() => break,
            _ = wake.notified() => {
                // Many emails queued in a row ring many times: look at most every SCAN_GAP, but
                // at once when the last look is older than that (an approval, a lone email).
                tokio::time::sleep_until(last_scan + SCAN_GAP).await;
            }
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                if let Ok(address) = done {
                    running.remove(&address);
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Sends in progress finish their current email (its Sending mark is committed already).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    jobs.abort_all();
    for idle in ctx.smtp_pool.reap(Duration::ZERO) {
        idle.session.quit(Duration::from_secs(2)).await;
    }
}

/// Sends one mailbox's due emails over up to `max_concurrent_connections` sessions.
async fn send_job(ctx: &Arc<JobContext>, address: String, entries: Vec<OutboxEntry>) {
    let Some(mailbox) = ctx.config.mailbox(&address) else {
        return;
    };
    let Some(profile) = ctx.config.mailbox_profile(mailbox) else {
        return;
    };
    // Outgoing must be tested and enabled first (M4), under this config.
    let state = ctx.store.mailbox_state(&address).unwrap_or_default();
    let fp = mailbox.fingerprint.clone();
    let enabled = state.config_fingerprint.as_deref() == Some(fp.as_str())
        && state.outgoing_enablement == Enablement::Enabled;
    if !enabled {
        if matches!(state.outgoing_enablement, Enablement::Disabled { .. })
            && state.config_fingerprint.as_deref() == Some(fp.as_str())
        {
            return;
        }
        let record = scheduler::test_and_record(ctx, profile, mailbox).await;
        if record.outgoing.status != crate::store::RunStatus::Success {
            return;
        }
    }
    let workers = (profile.max_concurrent_connections as usize)
        .min(entries.len())
        .max(1);
    let queue = Arc::new(JobQueue::new(entries, workers));
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (ctx, queue, address) = (ctx.clone(), queue.clone(), address.clone());
        set.spawn(async move { worker(&ctx, &address, &queue).await });
    }
    while set.join_next().await.is_some() {}
}

/// Emails claimed at once: marked Sending in one commit, then sent one after the other.
const CLAIM: usize = 512;
/// A send job's first claim (small: the first email leaves after a small commit, and nothing
/// is known yet of the emails' sizes).
const FIRST_CLAIM: usize = 4;
/// The MIME a send job holds claimed and read at most, about: claims shrink to fit it by the
/// sizes of the emails claimed so far (a queue of 30 MB emails claims them one or two at a
/// time; one of 10 KB emails, hundreds).
const CLAIMED_BYTES: usize = 32 << 20;
/// Emails a session may have sent (final 250) whose Sent status is not yet committed; it waits
/// for the oldest commit before the next DATA. This bounds what a crash can send twice (O6):
/// at most this many per connection. The writer commits Sent statuses within about a
/// millisecond, so a session rarely waits.
const SENT_UNCOMMITTED: usize = 16;

/// A send job's emails, shared by its sessions: those claimed (marked Sending, their MIME read)
/// and those still to claim. Sessions take claimed emails one at a time, so the emails in flight
/// have neighbouring ids and each commit of their Sent status rewrites few store pages; one
/// session claims the next block while the others keep sending.
struct JobQueue {
    state: Mutex<QueueState>,
    /// Bumped when a claim ends: sessions waiting for claimed emails look again.
    claims: tokio::sync::watch::Sender<u64>,
    /// Claim again when no more than this many claimed emails are left.
    low_water: usize,
}

struct QueueState {
    claimed: VecDeque<(OutboxEntry, Option<Vec<u8>>)>,
    unclaimed: VecDeque<OutboxEntry>,
    claiming: bool,
    next_claim: usize,
    /// MIME bytes of the claimed emails not yet taken by a session.
    claimed_bytes: usize,
    /// The average size of the emails claimed so far (none yet: 0).
    average_bytes: usize,
}

impl QueueState {
    /// The next block to claim, if the claimed emails run low (in count or bytes) and no claim
    /// is under way. Claims grow fourfold from the first up to `CLAIM`, within `CLAIMED_BYTES`.
    fn block_to_claim(&mut self, low_water: usize) -> Option<Vec<OutboxEntry>> {
        if self.claimed.len() > low_water
            || self.claimed_bytes > CLAIMED_BYTES / 2
            || self.claiming
            || self.unclaimed.is_empty()
        {
            return None;
        }
        let fits = CLAIMED_BYTES / 2 / self.average_bytes.max(1);
        let n = self.next_claim.min(fits).clamp(1, self.unclaimed.len());
        self.next_claim = (self.next_claim * 4).min(CLAIM);
        self.claiming = true;
        Some(self.unclaimed.drain(..n).collect())
    }

    fn pop(&mut self) -> Option<(OutboxEntry, Option<Vec<u8>>)> {
        let taken = self.claimed.pop_front()?;
        let size = taken.1.as_ref().map_or(0, Vec::len);
        self.claimed_bytes = self.claimed_bytes.saturating_sub(size);
        Some(taken)
    }
}

/// A claimed email with its MIME, ready to send.
type Ready = (OutboxEntry, Vec<u8>);

enum Next {
    Send(OutboxEntry, Option<Vec<u8>>),
    Claim(Vec<OutboxEntry>),
    /// Another session is claiming and nothing claimed is left.
    Wait,
    Done,
}

impl JobQueue {
    fn new(entries: Vec<OutboxEntry>, sessions: usize) -> JobQueue {
        JobQueue {
            state: Mutex::new(QueueState {
                claimed: VecDeque::new(),
                unclaimed: entries.into(),
                claiming: false,
                next_claim: FIRST_CLAIM,
                claimed_bytes: 0,
                average_bytes: 0,
            }),
            claims: tokio::sync::watch::channel(0).0,
            // A claim (a durable commit, then reading the block) takes a few milliseconds:
            // started while the sessions still have that long's worth of emails to send.
            low_water: (sessions * 2).max(CLAIM / 2),
        }
    }

    fn next(&self) -> Next {
        let Ok(mut q) = self.state.lock() else {
            return Next::Done;
        };
        if let Some(block) = q.block_to_claim(self.low_water) {
            return Next::Claim(block);
        }
        match q.pop() {
            Some((entry, raw)) => Next::Send(entry, raw),
            None if q.claiming => Next::Wait,
            None => Next::Done,
        }
    }

    /// The next claimed email, if one is ready now (its MIME read), to go out right after the
    /// one being sent; and a block to claim, when the claimed ones run low.
    fn ready(&self) -> (Option<Ready>, Option<Vec<OutboxEntry>>) {
        let Ok(mut q) = self.state.lock() else {
            return (None, None);
        };
        let next = match q.claimed.front() {
            Some((_, Some(_))) => match q.pop() {
                Some((entry, Some(raw))) => Some((entry, raw)),
                _ => None,
            },
            _ => None,
        };
        let claim = q.block_to_claim(self.low_water);
        (next, claim)
    }

    /// A claim's outcome: the emails read (`block`, with `raws`), and those not read for the
    /// byte budget, which go back to the front of the queue.
    fn claimed(
        &self,
        block: Vec<OutboxEntry>,
        raws: Vec<Option<Vec<u8>>>,
        unread: Vec<OutboxEntry>,
    ) {
        if let Ok(mut q) = self.state.lock() {
            for e in unread.into_iter().rev() {
                q.unclaimed.push_front(e);
            }
            let bytes: usize = raws.iter().flatten().map(Vec::len).sum();
            let read = raws.iter().flatten().count();
            if let Some(latest) = bytes.checked_div(read) {
                // A running average over the claims, the latest weighing as much as all before.
                q.average_bytes = if q.average_bytes == 0 {
                    latest
                } else {
                    (q.average_bytes + latest) / 2
                };
            }
            q.claimed_bytes += bytes;
            let raws = raws.into_iter().chain(std::iter::repeat_with(|| None));
            q.claimed.extend(block.into_iter().zip(raws));
            q.claiming = false;
        }
        self.claims.send_modify(|n| *n += 1);
    }

    /// Everything not yet sent, claimed or not (when no session can be opened).
    fn take_all(&self) -> (Vec<OutboxEntry>, Vec<OutboxEntry>) {
        match self.state.lock() {
            Ok(mut q) => (
                q.claimed.drain(..).map(|(e, _)| e).collect(),
                q.unclaimed.drain(..).collect(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        }
    }
}

/// Marks `block` Sending in a committed transaction (before any of its DATA: a crash from here
/// on sends these emails again on restart; only an email whose final 250 came before the crash
/// but whose Sent was not yet committed goes out twice, O6), then reads their MIME in one read
/// transaction.
async fn claim(ctx: &JobContext, queue: &JobQueue, block: Vec<OutboxEntry>) {
    let at = Utc::now();
    let marks = block
        .iter()
        .map(|e| (e.id, OutboxUpdate::Sending { at }))
        .collect();
    if let Ok(committed) = ctx.writer.outbox_committed(marks, false).await {
        let _ = committed.await;
    }
    // Reading and decompressing a block's MIME takes milliseconds: off the runtime's threads,
    // so the other sessions on this thread keep sending meanwhile.
    let store = ctx.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        // An email cancelled between the read and the claim stayed cancelled: it is not sent.
        let ids: Vec<u64> = block.iter().map(|e| e.id).collect();
        let now = store.outbox_statuses(&ids).unwrap_or_default();
        let block: Vec<OutboxEntry> = block
            .into_iter()
            .enumerate()
            .filter(|(i, _)| {
                now.get(*i)
                    .is_none_or(|s| s.is_none_or(|s| s == crate::store::OutboxStatus::Sending))
            })
            .map(|(_, e)| e)
            .collect();
        let ids: Vec<u64> = block.iter().map(|e| e.id).collect();
        // Read up to the job's byte budget; the rest goes back to be claimed again later
        // (marked Sending already, which a restart also takes as not sent).
        let mut block = block;
        // A store that cannot be read leaves every email of the block without its MIME: each
        // is settled as missing.
        let raws = store
            .activity_raws_up_to(&ids, CLAIMED_BYTES / 2)
            .unwrap_or_else(|_| vec![None; ids.len()]);
        let unread = block.split_off(raws.len().min(block.len()));
        (block, raws, unread)
    })
    .await;
    match read {
        Ok((block, raws, unread)) => queue.claimed(block, raws, unread),
        // The read panicked: the block stays Sending, sent again after a restart.
        Err(_) => queue.claimed(Vec::new(), Vec::new(), Vec::new()),
    }
}

/// Counts a sending session for as long as it lives.
struct Sending<'c>(&'c AtomicUsize);

impl<'c> Sending<'c> {
    fn start(count: &'c AtomicUsize) -> Sending<'c> {
        count.fetch_add(1, Ordering::Relaxed);
        Sending(count)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Claims `block` on a task of its own: the session that noticed the claimed emails running low
/// keeps sending meanwhile.
fn claim_aside(ctx: &Arc<JobContext>, queue: &Arc<JobQueue>, block: Vec<OutboxEntry>) {
    let (ctx, queue) = (ctx.clone(), queue.clone());
    tokio::spawn(async move { claim(&ctx, &queue, block).await });
}

/// One SMTP session taking emails from the send job's queue until it is empty. Where the server
/// pipelines, each email's content goes out with the next email's envelope (see
/// `SmtpSession::send_message`), unless Sent copies are appended between emails.
async fn worker(ctx: &Arc<JobContext>, address: &str, queue: &Arc<JobQueue>) {
    let _sending = Sending::start(&ctx.sending_sessions);
    let Some(mailbox) = ctx.config.mailbox(address) else {
        return;
    };
    let Some(profile) = ctx.config.mailbox_profile(mailbox) else {
        return;
    };
    let limit = profile.timeout_mailbox_connection_after;
    let mut uncommitted: VecDeque<tokio::sync::oneshot::Receiver<()>> = VecDeque::new();
    // A pooled connection keeps the slot it holds; a new one takes a slot first.
    let mut slot: Option<Pooled> = ctx.smtp_pool.take(address);
    if let Some(p) = slot.as_mut()
        && !p.session.alive(limit).await
    {
        slot = None;
    }
    let (mut session, permit) = match slot {
        Some(p) => (Some(p.session), p.permit),
        None => {
            // Counted against the SMTP server (the incoming one only if, oddly, none is set).
            let endpoint = profile.outgoing.as_ref().unwrap_or(&profile.incoming);
            (None, ctx.acquire(profile, mailbox, endpoint).await)
        }
    };
    let mut copies = SentCopies::default();
    // The email whose envelope went out with the last one's content: it is sent next.
    let mut carried: Option<Ready> = None;
    loop {
        if ctx.stopping() {
            break;
        }
        // Subscribed before looking, so a claim ending in between is not missed.
        let mut claims = queue.claims.subscribe();
        let (entry, raw) = match carried.take() {
            Some((entry, raw)) => (entry, Some(raw)),
            None => match queue.next() {
                Next::Done => break,
                Next::Wait => {
                    let _ = claims.changed().await;
                    continue;
                }
                Next::Claim(block) => {
                    claim_aside(ctx, queue, block);
                    continue;
                }
                Next::Send(entry, raw) => (entry, raw),
            },
        };
        let tries = entry.tries + 1;
        if session.is_none() {
            match open(ctx, profile, mailbox).await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    no_session(ctx, profile, mailbox, queue, entry, &e).await;
                    break;
                }
            }
        }
        let Some(s) = session.as_mut() else {
            break;
        };
        let Some(raw) = raw else {
            let missing = Attempt::Permanent("the queued message is missing from the store".into());
            settle(ctx, &entry, tries, missing, Vec::new()).await;
            continue;
        };
        while uncommitted
            .front_mut()
            .is_some_and(|r| r.try_recv().is_ok())
        {
            uncommitted.pop_front();
        }
        while uncommitted.len() >= SENT_UNCOMMITTED {
            if let Some(oldest) = uncommitted.pop_front() {
                let _ = oldest.await;
            }
        }
        if !profile.save_sent_copy {
            let (next, block) = queue.ready();
            carried = next;
            if let Some(block) = block {
                claim_aside(ctx, queue, block);
            }
        }
        // The outbox id is the ENVID: a delivery status report names the email it is about.
        let next_id = carried.as_ref().map(|(e, _)| e.id.to_string());
        let next = carried.as_ref().map(|(e, _)| {
            (
                mailbox.email_address.as_str(),
                e.recipients.as_slice(),
                next_id.as_deref(),
            )
        });
        let envelope_id = entry.id.to_string();
        match s
            .send_message(
                &mailbox.email_address,
                &entry.recipients,
                Some(&envelope_id),
                &raw,
                limit,
                next,
            )
            .await
        {
            Ok(results) => {
                ctx.metrics.sent(&profile.name, raw.len() as u64);
                let reply = results
                    .iter()
                    .find(|r| r.accepted)
                    .map(|r| r.reply.clone())
                    .unwrap_or_default();
                let sent = OutboxUpdate::Sent {
                    at: Utc::now(),
                    reply,
                    results,
                };
                let others = ctx.sending_sessions.load(Ordering::Relaxed) > 1;
                if let Ok(committed) = ctx
                    .writer
                    .outbox_committed(vec![(entry.id, sent)], others)
                    .await
                {
                    uncommitted.push_back(committed);
                }
                if profile.save_sent_copy && copies.add(entry.id, raw) {
                    copies.append(ctx, profile, mailbox, &mut session).await;
                }
            }
            Err(f) => {
                let attempt = if f.transient {
                    Attempt::Transient(f.reply.clone())
                } else {
                    Attempt::Permanent(f.reply.clone())
                };
                settle(ctx, &entry, tries, attempt, f.results).await;
                if f.connection_lost {
                    session = None;
                }
            }
        }
    }
    if carried.is_some() {
        // Stopping with the next envelope sent ahead: the server waits for its content, so
        // the connection cannot be reused; closing it drops that transaction. The email stays
        // Sending and goes out after the restart.
        session = None;
    }
    let _ = ctx.writer.flush().await;
    if !copies.is_empty() {
        copies.append(ctx, profile, mailbox, &mut session).await;
    }
    // Idle connections stay open a while for the next emails (closed by the outbox task).
    if let Some(session) = session {
        let since = std::time::Instant::now();
        let key = super::limits::limit_key(profile, mailbox);
        ctx.smtp_pool.give(
            address,
            Pooled {
                key,
                session,
                permit,
                since,
            },
        );
    }
}

/// No session could be opened: `entry` and the rest of the job wait. A transient failure counts
/// as a try for each claimed email; a disabled mailbox's email just waits.
async fn no_session(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    queue: &JobQueue,
    entry: OutboxEntry,
    e: &SyncError,
) {
    let auth = matches!(
        e,
        SyncError::AuthRejected { .. } | SyncError::AuthUnsupported { .. }
    );
    if auth || !e.is_transient() {
        disable_outgoing(ctx, profile, mailbox, e).await;
    }
    let reply = e.to_string();
    let (claimed, rest) = queue.take_all();
    let claimed = std::iter::once(entry).chain(claimed).map(|e| (e, true));
    for (waiting, was_claimed) in claimed.chain(rest.into_iter().map(|e| (e, false))) {
        let counted = waiting.tries + u32::from(was_claimed);
        if e.is_transient() && !auth {
            let attempt = Attempt::Transient(reply.clone());
            settle(ctx, &waiting, counted.max(1), attempt, Vec::new()).await;
        } else {
            let update = OutboxUpdate::Retry {
                next_attempt_at: later(ctx, 1),
                reply: reply.clone(),
                tries: waiting.tries,
            };
            let _ = ctx.writer.outbox(waiting.id, update).await;
        }
    }
}

fn later(ctx: &JobContext, tries: u32) -> DateTime<Utc> {
    let a = &ctx.config.appliance;
    let wait = crate::outbox::retry::backoff(
        a.outbox_retry_interval,
        tries,
        a.outbox_max_retry_interval,
        jitter(),
    );
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
}

/// 0..=1000 from the clock's nanoseconds: enough to spread retries.
fn jitter() -> u32 {
    Utc::now().timestamp_subsec_nanos() % 1001
}

/// Records what an attempt means for the email: retry later, or Failed.
async fn settle(
    ctx: &JobContext,
    entry: &OutboxEntry,
    tries: u32,
    attempt: Attempt,
    results: Vec<crate::store::RecipientResult>,
) {
    let a = &ctx.config.appliance;
    let update = match next_step(
        &attempt,
        tries,
        a.outbox_max_tries,
        a.outbox_retry_interval,
        a.outbox_max_retry_interval,
        jitter(),
    ) {
        NextStep::Sent => return,
        NextStep::RetryAfter(wait) => OutboxUpdate::Retry {
            next_attempt_at: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
            reply: match &attempt {
                Attempt::Transient(r) | Attempt::Permanent(r) => r.clone(),
                Attempt::Accepted => String::new(),
            },
            tries,
        },
        NextStep::Failed(reply) => {
            tracing::warn!(mailbox = %entry.mailbox, id = entry.id, %reply, "email failed");
            let profile = ctx
                .config
                .mailbox(&entry.mailbox)
                .and_then(|m| m.profile.as_deref());
            if let Some(p) = profile {
                ctx.metrics.send_failed(p);
            }
            // Email-level: only this email failed; the mailbox keeps sending.
            let subject = ctx
                .store
                .activity(entry.id)
                .ok()
                .flatten()
                .and_then(|a| a.headers.subject);
            alerts::raise_email(
                ctx,
                AlertLevel::Error,
                &entry.mailbox,
                profile,
                AlertEmail::of_outbox(entry.id, subject),
                "email_not_sent",
                format!(
                    "The queued email {} could not be sent after {tries} attempt(s) and is Failed: \
                     {reply}. It can be resent with POST /api/v1/outbox/{}/resend.",
                    entry.id, entry.id
                ),
            )
            .await;
            OutboxUpdate::Failed { reply, results }
        }
    };
    let _ = ctx.writer.outbox(entry.id, update).await;
}

async fn open(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
) -> Result<SmtpSession, SyncError> {
    let Some(endpoint) = &profile.outgoing else {
        return Err(SyncError::Unsupported(
            "the profile has no outgoing server".into(),
        ));
    };
    use super::credentials::{credentials, renewed, token_refused};
    let creds = credentials(ctx, profile, endpoint, mailbox, None).await?;
    let target = ctx.target(profile, endpoint, None)?;
    let mut opened = SmtpSession::open(&target, Some(&creds.login())).await;
    if creds.is_bearer()
        && matches!(opened, Err(SyncError::AuthRejected { .. }))
        && let Some(fresh) = renewed(ctx, profile, endpoint, mailbox, &creds, None).await?
    {
        opened = SmtpSession::open(&target, Some(&fresh.login()))
            .await
            .map_err(token_refused);
    }
    super::incoming::count_attempt(ctx, profile, endpoint, &opened).await;
    opened
}

/// An authentication failure (or another permanent one) stops this mailbox's sending until it
/// is tested again; its email waits in the outbox.
async fn disable_outgoing(ctx: &JobContext, profile: &Profile, mailbox: &Mailbox, e: &SyncError) {
    let reason = e.to_string();
    alerts::disable(
        ctx,
        profile,
        mailbox,
        false,
        e.code(),
        &reason,
        " Its queued email waits.",
    )
    .await;
}

/// O5: copies of sent emails for the mailbox's Sent folder, appended in batches on one IMAP
/// session that uses the sending session's own connection slot (the SMTP session is closed
/// first). Taking a second slot while holding one deadlocks once every slot is sending.
/// Sent email is not tracked as incoming (only INBOX and tracking folders are), and its
/// Message-ID already names this activity.
#[derive(Default)]
struct SentCopies {
    pending: Vec<(u64, Vec<u8>)>,
    bytes: usize,
}

/// Copies held before a session stops sending to append them: bounds memory and how long a
/// copy waits.
const SENT_COPIES_BATCH: usize = 64;
const SENT_COPIES_BYTES: usize = 16 * 1024 * 1024;

impl SentCopies {
    /// Holds a copy; true when the batch is full and should be appended now.
    fn add(&mut self, id: u64, raw: Vec<u8>) -> bool {
        self.bytes += raw.len();
        self.pending.push((id, raw));
        self.pending.len() >= SENT_COPIES_BATCH || self.bytes >= SENT_COPIES_BYTES
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Appends every held copy on one IMAP session and notes each outcome on its outbox entry.
    /// The caller's connection slot carries it: the caller's SMTP session is closed first, so
    /// the slot never holds two connections.
    async fn append(
        &mut self,
        ctx: &JobContext,
        profile: &Profile,
        mailbox: &Mailbox,
        smtp: &mut Option<SmtpSession>,
    ) {
        if let Some(s) = smtp.take() {
            s.quit(profile.timeout_mailbox_connection_after).await;
        }
        let pending = std::mem::take(&mut self.pending);
        self.bytes = 0;
        let mut session = match super::incoming::open_imap(ctx, profile, mailbox, None).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(mailbox = %mailbox.email_address, error = %e, "copies to the Sent folder failed");
                let note = format!("failed: {e}");
                for (id, _) in &pending {
                    let _ = ctx
                        .writer
                        .outbox(*id, OutboxUpdate::SentCopy { note: note.clone() })
                        .await;
                }
                None
            }
        };
        let Some(s) = session.as_mut() else {
            return;
        };
        for (id, raw) in &pending {
            let note = match s.append(&profile.sent_folder, raw).await {
                Ok(()) => format!("appended to {}", profile.sent_folder),
                Err(e) => {
                    tracing::warn!(mailbox = %mailbox.email_address, id, error = %e, "copy to the Sent folder failed");
                    format!("failed: {e}")
                }
            };
            let _ = ctx
                .writer
                .outbox(*id, OutboxUpdate::SentCopy { note })
                .await;
        }
        if let Some(s) = session {
            s.logout().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u64) -> Vec<OutboxEntry> {
        (0..n)
            .map(|id| OutboxEntry {
                id,
                mailbox: "a@example.com".into(),
                recipients: vec!["b@example.net".into()],
                status: crate::store::OutboxStatus::PendingSend,
                tries: 0,
                queued_at: Utc::now(),
                next_attempt_at: Utc::now(),
                sent_at: None,
                last_reply: None,
                recipient_results: Vec::new(),
                sent_copy: None,
                deliveries: Vec::new(),
            })
            .collect()
    }

    /// Claims a block and "reads" it with emails of `size` bytes; returns its length.
    fn claim_sized(q: &JobQueue, size: usize) -> usize {
        let block = q
            .state
            .lock()
            .expect("lock")
            .block_to_claim(q.low_water)
            .expect("a block to claim");
        let n = block.len();
        q.claimed(
            block,
            (0..n).map(|_| Some(vec![0; size])).collect(),
            Vec::new(),
        );
        n
    }

    fn drain(q: &JobQueue) {
        let mut s = q.state.lock().expect("lock");
        while s.pop().is_some() {}
        assert_eq!(s.claimed_bytes, 0);
    }

    #[test]
    fn small_emails_are_claimed_in_growing_blocks() {
        let q = JobQueue::new(entries(2_000), 10);
        assert_eq!(claim_sized(&q, 10_000), FIRST_CLAIM);
        drain(&q);
        assert_eq!(claim_sized(&q, 10_000), FIRST_CLAIM * 4);
        drain(&q);
        assert_eq!(claim_sized(&q, 10_000), FIRST_CLAIM * 16);
        drain(&q);
        assert_eq!(claim_sized(&q, 10_000), CLAIM.min(FIRST_CLAIM * 64));
    }

    #[test]
    fn large_emails_are_claimed_within_the_byte_budget() {
        let q = JobQueue::new(entries(200), 10);
        let size = 20 << 20;
        assert_eq!(claim_sized(&q, size), FIRST_CLAIM);
        // 80 MB claimed: more than half the budget, so no claim until the sessions take some.
        assert!(
            q.state
                .lock()
                .expect("lock")
                .block_to_claim(q.low_water)
                .is_none()
        );
        drain(&q);
        // Sized by what was seen: 16 MB of room holds no whole 20 MB email, so one at a time.
        assert_eq!(claim_sized(&q, size), 1);
        drain(&q);
        assert_eq!(claim_sized(&q, size), 1);
    }
}

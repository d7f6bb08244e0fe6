//! The scheduler: one task with a queue of (due time, mailbox). It starts a job when a mailbox is
//! due and a sync slot is free, and puts the mailbox back in the queue when the job ends: at the
//! polling interval after success, at the retry interval after a transient failure. A mailbox that
//! is not processed (unapproved, disabled, …) is parked until a command wakes it (approval, Test &
//! Enable). No task per mailbox sleeps, so ten thousand mailboxes cost ten thousand queue entries.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::caught::caught;
use super::error::SyncError;
use super::incoming::sync_mailbox;
use super::{JobContext, alert_email, alerts, profile_alert, test_enable};
use crate::config::{Mailbox, Profile};
use crate::lifecycle::after_failure::{AfterFailure, after_failure};
use crate::lifecycle::eligibility::{Decision, incoming_decision};
use crate::store::{AlertLevel, AlertScope, Enablement, MailboxUpdate, RunStatus, TestRecord};

/// The scheduler wakes at least this often, so the heartbeat stays fresh.
const TICK: Duration = Duration::from_secs(5);
/// Jobs get this long to finish their batch after a stop is requested.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Poll forever (until stopped).
    Forever,
    /// Sync every processed mailbox once, then return.
    Once,
}

#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub syncs: u64,
    pub failures: u64,
    pub created: u64,
}

/// What the rest of the appliance asks of the engine.
pub enum Command {
    /// Look at this mailbox again now (approved, config fixed, …).
    Wake(String),
    /// Test & Enable these mailboxes and answer with the records.
    Test {
        addresses: Vec<String>,
        reply: oneshot::Sender<Vec<TestRecord>>,
    },
    /// A new config was loaded: run under `ctx` from now on. Unchanged mailboxes keep their
    /// place in the queue and their running jobs; changed ones restart; removed ones stop.
    Reload {
        ctx: Arc<JobContext>,
        diff: crate::config::diff::ConfigDiff,
    },
}

/// What a job says should happen next to its mailbox.
#[derive(Debug)]
enum Next {
    At(Duration),
    Park,
}

struct JobResult {
    next: Next,
    created: u64,
    failed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Queued(Instant),
    Running,
    Parked,
}

pub async fn run(
    ctx: Arc<JobContext>,
    mode: RunMode,
    mut commands: mpsc::Receiver<Command>,
) -> RunReport {
    let mut ctx = ctx;
    let mut report = RunReport::default();
    let mut slots: Vec<Slot> = Vec::with_capacity(ctx.config.mailboxes.len());
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut index = address_index(&ctx);
    let now = Instant::now();
    let states = ctx.store.mailbox_states().unwrap_or_default();
    let count = ctx.config.mailboxes.len();
    for (i, m) in ctx.config.mailboxes.iter().enumerate() {
        let state = states.get(&m.email_address);
        let interval = ctx
            .config
            .mailbox_profile(m)
            .map_or(Duration::ZERO, |p| p.min_polling_interval);
        let at = match mode {
            RunMode::Once => now,
            RunMode::Forever => first_due(state, now, Utc::now(), interval, i, count),
        };
        slots.push(Slot::Queued(at));
        due.push(Reverse((at, i)));
    }
    // Jobs answer with their mailbox's address: a reload may renumber the mailboxes meanwhile.
    let mut jobs: JoinSet<(String, JobResult, Instant)> = JoinSet::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    type TestDone = (Vec<TestRecord>, oneshot::Sender<Vec<TestRecord>>);
    let mut tests: JoinSet<TestDone> = JoinSet::new();
    let mut stop = ctx.stop.clone();
    let mut commands_open = true;
    // Woken (IDLE told of new email) while their sync ran: they sync again at once after it.
    let mut woken_while_running: std::collections::HashSet<String> = Default::default();
    loop {
        ctx.beat();
        let now = Instant::now();
        while jobs.len() < ctx.config.appliance.max_concurrent_syncs
            && due.peek().is_some_and(|Reverse((t, _))| *t <= now)
        {
            let Some(Reverse((t, i))) = due.pop() else {
                break;
            };
            // Entries left behind by a wake or a re-queue are stale.
            if slots[i] != Slot::Queued(t) {
                continue;
            }
            slots[i] = Slot::Running;
            let job_ctx = ctx.clone();
            let address = ctx.config.mailboxes[i].email_address.clone();
            let handle = jobs.spawn({
                let address = address.clone();
                async move {
                    let started = Instant::now();
                    let r = match caught(job(&job_ctx, i, mode)).await {
                        Ok(r) => r,
                        Err(e) => panicked(&job_ctx, i, mode, e).await,
                    };
                    (address, r, started)
                }
            });
            running.insert(address, handle);
        }
        if mode == RunMode::Once
            && jobs.is_empty()
            && !slots.iter().any(|s| matches!(s, Slot::Queued(_)))
        {
            break;
        }
        // With every sync slot taken, a due mailbox waits for a job to end (join_next below),
        // not for its due time: waking for a time already past would spin the loop.
        let full = jobs.len() >= ctx.config.appliance.max_concurrent_syncs;
        let wake = due
            .peek()
            .map(|Reverse((t, _))| *t)
            .filter(|_| !full)
            .unwrap_or(now + TICK)
            .min(now + TICK);
        tokio::select! {
            _ = stop.changed() => break,
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                let (address, r, started) = match done {
                    Ok(done) => done,
                    // A job aborted by a reload has been requeued already.
                    Err(e) if e.is_cancelled() => continue,
                    // A panic past the job's own catch (in recording its failure): the mailbox
                    // is retried all the same, never left "running" for good.
                    Err(e) => {
                        let Some(address) = running
                            .iter()
                            .find(|(_, h)| h.id() == e.id())
                            .map(|(a, _)| a.clone())
                        else {
                            continue;
                        };
                        tracing::error!(mailbox = %address, "a sync job panicked; it is retried");
                        let r = JobResult {
                            next: Next::At(ctx.config.appliance.retry_interval),
                            created: 0,
                            failed: true,
                        };
                        (address, r, Instant::now())
                    }
                };
                running.remove(&address);
                report.syncs += 1;
                report.created += r.created;
                report.failures += u64::from(r.failed);
                // Removed by a reload while it ran: nothing to requeue.
                let Some(&i) = index.get(&address) else { continue };
                let again = woken_while_running.remove(&address) && !r.failed;
                slots[i] = match (mode, r.next) {
                    (RunMode::Forever, Next::At(wait)) => {
                        let now = Instant::now();
                        let at = if again {
                            now
                        } else {
                            next_due(started, now, wait, r.failed, jitter())
                        };
                        let wait = at.saturating_duration_since(now);
                        due.push(Reverse((at, i)));
                        ctx.metrics.set_next_poll(
                            &address,
                            chrono::Duration::from_std(wait).ok().map(|w| Utc::now() + w),
                        );
                        Slot::Queued(at)
                    }
                    _ => {
                        ctx.metrics.set_next_poll(&address, None);
                        Slot::Parked
                    }
                };
                // Only a failure can tip a profile over half failing (the check reads every
                // mailbox's state: after each poll of 10,000 mailboxes it would cost O(N²)).
                if r.failed {
                    check_profile_alert(&ctx, &ctx.config.mailboxes[i]).await;
                }
            }
            command = commands.recv(), if commands_open => match command {
                None => commands_open = false,
                Some(Command::Wake(address)) => {
                    if let Some(&i) = index.get(&address) {
                        if slots[i] == Slot::Running {
                            woken_while_running.insert(address);
                        } else {
                            let at = Instant::now();
                            slots[i] = Slot::Queued(at);
                            due.push(Reverse((at, i)));
                        }
                    }
                }
                Some(Command::Test { addresses, reply }) => {
                    let ctx = ctx.clone();
                    // Tests run beside the syncs; the connection limits still hold.
                    tests.spawn(async move { (test_many(&ctx, &addresses).await, reply) });
                }
                Some(Command::Reload { ctx: next, diff }) => {
                    let (new_slots, new_due) =
                        reloaded_queue(&ctx, &next, &diff, &slots, &mut running);
                    for gone in &diff.removed {
                        ctx.metrics.set_next_poll(gone, None);
                    }
                    for address in diff.changed.iter().chain(&diff.removed) {
                        for idle in ctx.smtp_pool.forget(address) {
                            tokio::spawn(idle.session.quit(Duration::from_secs(5)));
                        }
                        if let Some(kept) = ctx.kept_sessions.forget(address) {
                            tokio::spawn(kept.close());
                        }
                    }
                    slots = new_slots;
                    due = new_due;
                    ctx = next;
                    index = address_index(&ctx);
                }
            },
            Some(done) = tests.join_next(), if !tests.is_empty() => {
                let Ok((records, reply)) = done else { continue };
                // A mailbox that passed its test syncs now, not at its next poll.
                for r in records.iter().filter(|r| r.incoming.status == RunStatus::Success) {
                    if let Some(&i) = index.get(&r.mailbox)
                        && slots[i] != Slot::Running
                    {
                        let at = Instant::now();
                        slots[i] = Slot::Queued(at);
                        due.push(Reverse((at, i)));
                    }
                }
                let _ = reply.send(records);
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    // Jobs see the stop flag between batches; a batch is committed whole or not at all either way.
    let deadline = Instant::now() + STOP_GRACE;
    while !jobs.is_empty() {
        match tokio::time::timeout_at(deadline, jobs.join_next()).await {
            Ok(Some(Ok((_, r, _)))) => report.created += r.created,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    jobs = jobs.len(),
                    "stopping jobs that did not finish in time"
                );
                jobs.abort_all();
                while jobs.join_next().await.is_some() {}
                break;
            }
        }
    }
    // Sessions kept open end with a LOGOUT, not a dropped connection.
    for kept in ctx.kept_sessions.expired(true) {
        kept.close().await;
    }
    report
}

/// When a mailbox polls next after its turn started at `started`: one `wait` after that start,
/// so that the polling rhythm does not drift by the sync's own duration, less up to 5% so that
/// mailboxes that polled together drift apart (and every mailbox is polled within its interval).
/// After a failure, `wait` (the retry interval) plus up to 25%: mailboxes that failed together
/// (a server outage) do not all come back at once. `jitter` is in 0..1.
fn next_due(started: Instant, now: Instant, wait: Duration, failed: bool, jitter: f64) -> Instant {
    let jitter = jitter.clamp(0.0, 1.0);
    if failed {
        now + wait + wait.mul_f64(jitter / 4.0)
    } else {
        (started + wait - wait.mul_f64(jitter / 20.0)).max(now)
    }
}

/// When a mailbox first polls after a start: a retry backoff under way resumes; a mailbox never
/// synced starts now (first syncs queue for `max_concurrent_syncs`); one synced before keeps its
/// rhythm (one interval after its last successful sync); one overdue (the appliance was down)
/// gets a place spread over one interval by its index, instead of all polling at once.
fn first_due(
    state: Option<&crate::lifecycle::state::MailboxState>,
    now: Instant,
    wall: chrono::DateTime<Utc>,
    interval: Duration,
    index: usize,
    count: usize,
) -> Instant {
    let after = |t: chrono::DateTime<Utc>| (t - wall).to_std().ok().map(|d| now + d);
    let Some(state) = state else { return now };
    if let Some(at) = state.postponed_until.and_then(after) {
        return at;
    }
    let Some(last) = state.last_successful_sync_completed_on else {
        return now;
    };
    let interval_chrono = chrono::Duration::from_std(interval).unwrap_or_default();
    match after(last + interval_chrono) {
        Some(at) => at.min(now + interval),
        None => now + interval.mul_f64(index as f64 / count.max(1) as f64),
    }
}

fn jitter() -> f64 {
    let nanos = u64::from(Utc::now().timestamp_subsec_nanos());
    ((nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64) / ((1u64 << 53) as f64)
}

fn address_index(ctx: &JobContext) -> HashMap<String, usize> {
    ctx.config
        .mailboxes
        .iter()
        .enumerate()
        .map(|(i, m)| (m.email_address.clone(), i))
        .collect()
}

type Queue = (Vec<Slot>, BinaryHeap<Reverse<(Instant, usize)>>);

/// The queue under a reloaded config: an unchanged mailbox keeps its slot (its due time, its
/// running job, or parked); a changed one has its running job stopped and is due now, as is
/// an added one; a removed one's job is stopped.
fn reloaded_queue(
    old: &JobContext,
    new: &JobContext,
    diff: &crate::config::diff::ConfigDiff,
    slots: &[Slot],
    running: &mut HashMap<String, tokio::task::AbortHandle>,
) -> Queue {
    let old_index = address_index(old);
    let now = Instant::now();
    let mut new_slots = Vec::with_capacity(new.config.mailboxes.len());
    let mut due = BinaryHeap::new();
    for address in diff.changed.iter().chain(&diff.removed) {
        if let Some(handle) = running.remove(address) {
            // Like a crash between commits: what was committed stays, the rest is fetched again.
            handle.abort();
        }
    }
    for (i, m) in new.config.mailboxes.iter().enumerate() {
        let kept = old_index
            .get(&m.email_address)
            .filter(|_| !diff.changed.contains(&m.email_address))
            .map(|&j| slots[j]);
        let slot = match kept {
            // Its job ended while aborted or never ran under the old index: due now.
            Some(Slot::Running) if !running.contains_key(&m.email_address) => Slot::Queued(now),
            Some(slot) => slot,
            None => Slot::Queued(now),
        };
        if let Slot::Queued(at) = slot {
            due.push(Reverse((at, i)));
        }
        new_slots.push(slot);
    }
    (new_slots, due)
}

/// Test & Enable the named mailboxes (all, when none is named), record the results, wake them.
pub async fn test_many(ctx: &Arc<JobContext>, addresses: &[String]) -> Vec<TestRecord> {
    let mut set = JoinSet::new();
    for m in ctx
        .config
        .mailboxes
        .iter()
        .filter(|m| addresses.is_empty() || addresses.contains(&m.email_address))
    {
        let ctx = ctx.clone();
        let address = m.email_address.clone();
        set.spawn(async move {
            let m = ctx.config.mailbox(&address)?;
            let profile = ctx.config.mailbox_profile(m)?;
            Some(test_and_record(&ctx, profile, m).await)
        });
    }
    let mut records: Vec<TestRecord> = set.join_all().await.into_iter().flatten().collect();
    records.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
    records
}

/// Runs Test & Enable and records it: each direction enabled on success, disabled with the reason
/// on failure. Alerts tell the mailbox's and the profile's owners.
pub async fn test_and_record(ctx: &JobContext, profile: &Profile, mailbox: &Mailbox) -> TestRecord {
    let record = test_enable::run(ctx, profile, mailbox).await;
    let previous = ctx
        .store
        .mailbox_state(&mailbox.email_address)
        .unwrap_or_default();
    let fp = mailbox.fingerprint.clone();
    // Enablements from another config do not carry over.
    let (prev_in, prev_out) = if previous.config_fingerprint.as_deref() == Some(fp.as_str()) {
        (previous.incoming_enablement, previous.outgoing_enablement)
    } else {
        (Enablement::NotTested, Enablement::NotTested)
    };
    let incoming = test_enable::enablement(&record.incoming, &prev_in);
    let outgoing = test_enable::enablement(&record.outgoing, &prev_out);
    for (operation, t) in [
        ("test_incoming", &record.incoming),
        ("test_outgoing", &record.outgoing),
    ] {
        if t.status == crate::store::RunStatus::Failure {
            let code = t.code.as_deref().unwrap_or("unknown");
            ctx.metrics.failure(&profile.name, operation, code);
        }
    }
    let _ = ctx
        .writer
        .mailbox(
            &mailbox.email_address,
            MailboxUpdate::Tested {
                profile: Some(profile.name.clone()),
                record: Box::new(record.clone()),
                fingerprint: fp,
                incoming: incoming.clone(),
                outgoing: outgoing.clone(),
            },
        )
        .await;
    // Whoever acts on the result next (the scheduler waking the mailbox) reads the store.
    let _ = ctx.writer.flush().await;
    // An outgoing direction just enabled: its queued email may go now.
    if outgoing == Enablement::Enabled {
        ctx.outbox_wake.notify_one();
    }
    let address = mailbox.email_address.as_str();
    for (direction, t) in [
        ("incoming", &record.incoming),
        ("outgoing", &record.outgoing),
    ] {
        if t.status == RunStatus::Failure {
            tracing::warn!(
                mailbox = address,
                profile = %profile.name,
                direction,
                code = t.code.as_deref().unwrap_or(""),
                transient = t.transient,
                error = t.reason.as_deref().unwrap_or(""),
                "Test & Enable failed"
            );
        }
    }
    if record.failed() {
        let reasons: Vec<String> = [
            ("incoming", &record.incoming),
            ("outgoing", &record.outgoing),
        ]
        .iter()
        .filter_map(|(d, t)| {
            t.reason
                .as_ref()
                .filter(|_| t.status == crate::store::RunStatus::Failure)
                .map(|r| format!("{d}: {r}"))
        })
        .collect();
        alerts::raise(
            ctx,
            AlertLevel::Error,
            AlertScope::Mailbox,
            Some(address),
            Some(&profile.name),
            "test_failed",
            format!(
                "Test & Enable failed for mailbox {address}: {}",
                reasons.join("; ")
            ),
        )
        .await;
    } else {
        alerts::raise(
            ctx,
            AlertLevel::Information,
            AlertScope::Mailbox,
            Some(address),
            Some(&profile.name),
            "test_succeeded",
            format!("Test & Enable succeeded for mailbox {address}; it is enabled."),
        )
        .await;
    }
    record
}

/// One turn of one mailbox: decide, test first if needed, sync, and record the outcome.
async fn job(ctx: &JobContext, i: usize, mode: RunMode) -> JobResult {
    let mailbox = &ctx.config.mailboxes[i];
    let park = |failed| JobResult {
        next: Next::Park,
        created: 0,
        failed,
    };
    let state = match ctx.store.mailbox_state(&mailbox.email_address) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(mailbox = %mailbox.email_address, error = %e, "cannot read the mailbox state");
            return JobResult {
                next: Next::At(ctx.config.appliance.retry_interval),
                created: 0,
                failed: true,
            };
        }
    };
    let fp = mailbox.fingerprint.clone();
    let profile = match incoming_decision(&ctx.config, mailbox, &state, &fp) {
        Decision::NotProcessed(reason) => {
            tracing::info!(mailbox = %mailbox.email_address, code = reason.code(), %reason, "mailbox is not processed");
            return park(false);
        }
        Decision::TestFirst(profile) => {
            tracing::info!(mailbox = %mailbox.email_address, "testing the mailbox before its first sync (Test & Enable)");
            let record = test_and_record(ctx, profile, mailbox).await;
            match record.incoming.status {
                RunStatus::Success => profile,
                // The server may be back in a while: retry with backoff like a failed sync.
                RunStatus::Failure if record.incoming.transient => {
                    let code = record.incoming.code.clone().unwrap_or_default();
                    let text = record.incoming.reason.clone().unwrap_or_default();
                    return failed(
                        ctx,
                        profile,
                        mailbox,
                        state.transient_failure_count,
                        &code,
                        &text,
                        true,
                        mode,
                    )
                    .await
                    .into_result();
                }
                _ => return park(true),
            }
        }
        Decision::Sync(profile) => profile,
    };
    let started = std::time::Instant::now();
    let _ = ctx
        .writer
        .mailbox(
            &mailbox.email_address,
            MailboxUpdate::SyncStarted { at: Utc::now() },
        )
        .await;
    let result = sync_mailbox(ctx, profile, mailbox).await;
    let at = Utc::now();
    let duration_ms = started.elapsed().as_millis() as u64;
    ctx.metrics.sync_finished(
        &profile.name,
        started.elapsed(),
        result.as_ref().err().map(|e| e.code()),
    );
    match result {
        Ok(s) => {
            // One info line per sync that stored something; a routine empty poll is debug (at
            // 10,000 mailboxes it would be millions of lines a day).
            if s.created > 0 || s.linked > 0 || s.server_changes > 0 || s.interrupted {
                tracing::info!(
                    mailbox = %mailbox.email_address,
                    created = s.created,
                    linked = s.linked,
                    server_changes = s.server_changes,
                    duration_ms,
                    interrupted = s.interrupted,
                    "mailbox synced"
                );
            } else {
                tracing::debug!(mailbox = %mailbox.email_address, duration_ms, "mailbox synced, nothing new");
            }
            let _ = ctx
                .writer
                .mailbox(
                    &mailbox.email_address,
                    MailboxUpdate::SyncSucceeded { at, duration_ms },
                )
                .await;
            JobResult {
                next: Next::At(profile.min_polling_interval),
                created: s.created,
                failed: false,
            }
        }
        Err(e) => {
            let text = e.to_string();
            failed(
                ctx,
                profile,
                mailbox,
                state.transient_failure_count,
                e.code(),
                &text,
                e.is_transient(),
                mode,
            )
            .await
            .into_result()
        }
    }
}

/// A job that panicked: recorded as the mailbox's transient `internal_error` (a warning alert,
/// retried after `retry_interval` like any transient failure, disabled only when those run out).
async fn panicked(ctx: &JobContext, i: usize, mode: RunMode, e: SyncError) -> JobResult {
    let mailbox = &ctx.config.mailboxes[i];
    tracing::error!(mailbox = %mailbox.email_address, error = %e, "a sync job panicked");
    let Some(profile) = ctx.config.mailbox_profile(mailbox) else {
        return JobResult {
            next: Next::At(ctx.config.appliance.retry_interval),
            created: 0,
            failed: true,
        };
    };
    ctx.metrics
        .sync_finished(&profile.name, Duration::ZERO, Some(e.code()));
    let failures = ctx
        .store
        .mailbox_state(&mailbox.email_address)
        .map(|s| s.transient_failure_count)
        .unwrap_or_default();
    let text = e.to_string();
    failed(
        ctx,
        profile,
        mailbox,
        failures,
        e.code(),
        &text,
        e.is_transient(),
        mode,
    )
    .await
    .into_result()
}

struct Failed(Next);

impl Failed {
    fn into_result(self) -> JobResult {
        JobResult {
            next: self.0,
            created: 0,
            failed: true,
        }
    }
}

/// Records a failed sync and does what [`after_failure`] decides: retry after `retry_interval`
/// (a warning), or disable incoming with an alert to the owners.
#[allow(clippy::too_many_arguments)]
async fn failed(
    ctx: &JobContext,
    profile: &Profile,
    mailbox: &Mailbox,
    failures_before: u32,
    code: &str,
    text: &str,
    transient: bool,
    mode: RunMode,
) -> Failed {
    let address = mailbox.email_address.as_str();
    let at = Utc::now();
    let decision = after_failure(
        failures_before,
        ctx.config.appliance.transient_failure_retries,
        transient,
        text,
    );
    tracing::warn!(
        mailbox = address,
        profile = %profile.name,
        code,
        transient,
        failures = failures_before + 1,
        error = %text,
        "mailbox sync failed"
    );
    let retry = ctx.config.appliance.retry_interval;
    let retry_at = (matches!(decision, AfterFailure::Retry { .. }) && mode == RunMode::Forever)
        .then(|| at + chrono::Duration::from_std(retry).unwrap_or_default());
    let _ = ctx
        .writer
        .mailbox(
            address,
            MailboxUpdate::SyncFailed {
                at,
                text: text.to_string(),
                code: code.to_string(),
                transient,
                retry_at,
            },
        )
        .await;
    match decision {
        AfterFailure::Retry { attempt, allowed } => {
            alerts::raise(
                ctx,
                AlertLevel::Warning,
                AlertScope::Mailbox,
                Some(address),
                Some(&profile.name),
                code,
                format!(
                    "Synchronization of mailbox {address} failed ({attempt} of {allowed} attempts); it will be retried. {text}"
                ),
            )
            .await;
            Failed(Next::At(retry))
        }
        AfterFailure::Disable { why } => {
            alerts::disable(ctx, profile, mailbox, true, code, &why, "").await;
            Failed(Next::Park)
        }
    }
}

/// P11: after a mailbox's turn, see whether its profile now has more than half of its mailboxes
/// failing within the hour, and if so tell the owner once.
async fn check_profile_alert(ctx: &Arc<JobContext>, mailbox: &Mailbox) {
    let Some(profile) = ctx.config.mailbox_profile(mailbox) else {
        return;
    };
    if !profile.send_alert_email {
        return;
    }
    let (Ok(states), Ok(profiles)) = (ctx.store.mailbox_states(), ctx.store.profile_states())
    else {
        return;
    };
    let now = Utc::now();
    let (failing, total) =
        profile_alert::failing_share(&ctx.config, profile, |a| states.get(a), now);
    let pstate = profiles.get(&profile.name).cloned().unwrap_or_default();
    if !profile_alert::should_send(profile, failing, total, &pstate, now) {
        return;
    }
    let Some(owner) = profile.owner_email.clone() else {
        return;
    };
    // Claim the hour before sending, so that concurrent job endings send one email, not several.
    let _ = ctx.writer.alert_email_sent(&profile.name, now).await;
    let _ = ctx.writer.flush().await;
    let details: String = ctx
        .config
        .mailboxes
        .iter()
        .filter(|m| m.profile.as_deref() == Some(profile.name.as_str()))
        .filter_map(|m| {
            let e = states.get(&m.email_address)?.last_error.as_ref()?;
            Some(format!("- {}: {}\r\n", m.email_address, e.text))
        })
        .collect();
    let ctx = ctx.clone();
    let profile_name = profile.name.clone();
    tokio::spawn(async move {
        let Some(profile) = ctx.config.profile(&profile_name) else {
            return;
        };
        let result = match alert_email::message(
            alert_email::sender(&ctx, &owner),
            &owner,
            &profile.name,
            failing,
            total,
            &details,
        ) {
            Ok(raw) => alert_email::send(&ctx, profile, &owner, &raw).await,
            Err(e) => Err(e),
        };
        let (level, code, message) = match result {
            Ok(via) => (
                AlertLevel::Information,
                "alert_email_sent",
                format!(
                    "{failing} of {total} mailboxes failed within an hour; alert email sent to {owner} through {via}."
                ),
            ),
            Err(e) => (
                AlertLevel::Error,
                "alert_email_failed",
                format!(
                    "{failing} of {total} mailboxes failed within an hour; the alert email to {owner} could not be sent: {e}"
                ),
            ),
        };
        alerts::raise(
            &ctx,
            level,
            AlertScope::Profile,
            None,
            Some(&profile.name),
            code,
            message,
        )
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::state::MailboxState;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn polls_keep_their_rhythm_and_drift_apart() {
        let start = Instant::now();
        let now = start + Duration::from_secs(2);
        assert_eq!(next_due(start, now, MINUTE, false, 0.0), start + MINUTE);
        // Up to 5% earlier, never before now.
        assert_eq!(
            next_due(start, now, MINUTE, false, 1.0),
            start + MINUTE - Duration::from_secs(3)
        );
        let late = start + Duration::from_secs(90);
        assert_eq!(next_due(start, late, MINUTE, false, 0.5), late);
        // A failure waits the retry interval from now, plus up to 25%.
        assert_eq!(next_due(start, now, MINUTE, true, 0.0), now + MINUTE);
        assert_eq!(
            next_due(start, now, MINUTE, true, 1.0),
            now + MINUTE + Duration::from_secs(15)
        );
    }

    #[test]
    fn a_restart_spreads_overdue_mailboxes_and_keeps_the_others_rhythm() {
        let now = Instant::now();
        let wall = Utc::now();
        assert_eq!(
            first_due(None, now, wall, MINUTE, 3, 10),
            now,
            "never synced"
        );
        let synced = |ago: i64| MailboxState {
            last_successful_sync_completed_on: Some(wall - chrono::Duration::seconds(ago)),
            ..MailboxState::default()
        };
        assert_eq!(
            first_due(Some(&synced(20)), now, wall, MINUTE, 3, 10),
            now + Duration::from_secs(40),
            "its next poll comes when it would have"
        );
        assert_eq!(
            first_due(Some(&synced(3600)), now, wall, MINUTE, 3, 10),
            now + Duration::from_secs(18),
            "overdue: the fourth of ten waits three tenths of an interval"
        );
        let postponed = MailboxState {
            postponed_until: Some(wall + chrono::Duration::seconds(30)),
            ..synced(3600)
        };
        assert_eq!(
            first_due(Some(&postponed), now, wall, MINUTE, 3, 10),
            now + Duration::from_secs(30),
            "a retry backoff resumes"
        );
    }
}

//! Webhooks: the change feed pushed to HTTP(S) receivers, at least once and in order per mailbox.
//!
//! One dispatcher task per `[[webhook]]` reads the feed from its watermark (kept in the store
//! with the events delivered above it), puts each event it wants in the lane of its mailbox, and
//! delivers the head of up to `max_in_flight` lanes at once: a failing delivery holds back only
//! the rest of its lane (and only this webhook). Failures retry with exponential backoff and
//! jitter; once the event is older than `event_retention` (or after `max_attempts`, when set)
//! it goes to the dead-letter list and the lane moves on.
//! Progress is committed through the writer in batches, and deliveries running plus deliveries
//! not yet committed never exceed `max_in_flight`: a crash redelivers at most that many events,
//! which the idempotency key (the event's number) lets the receiver drop. Memory is bounded: at
//! most [`WINDOW`] events are held per webhook.

pub mod sign;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Webhook;
use crate::net::http::{self, Endpoint};
use crate::net::{MailStream, TlsContext};
use crate::store::feed::{Event, Page};
use crate::store::webhook::DeadLetter;
use crate::store::{Store, StoreWriter};

/// Events a dispatcher holds at most (read but not yet delivered or dropped).
pub const WINDOW: usize = 2048;
/// Events read from the store at once.
const READ_BATCH: usize = 256;
/// A receiver's answer is read up to this size (it is not used beyond its status).
const MAX_ANSWER: usize = 64 * 1024;
/// Progress is committed at least this often while deliveries finish.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// Dead letters asked to be redelivered are looked for this often.
const REDELIVER_CHECK: Duration = Duration::from_secs(1);

/// Runs one dispatcher per webhook until `stop`.
pub async fn run(
    store: Store,
    writer: StoreWriter,
    webhooks: Vec<Webhook>,
    stop: watch::Receiver<bool>,
) {
    let names = webhooks.iter().map(|w| w.name.clone()).collect();
    if let Err(e) = writer.webhooks_configured(names).await {
        tracing::error!(error = %e, "cannot record the configured webhooks; none run");
        return;
    }
    let mut tasks = JoinSet::new();
    for hook in webhooks {
        if let Some(why) = &hook.secret_error {
            // Still configured (its cursor holds its events), but nothing goes out unsigned.
            tracing::error!(webhook = %hook.name, "webhook held, its events kept for it: {why}; seal its secret again (sidesync secret encrypt --webhook) or restore the key file");
            continue;
        }
        let tls = match TlsContext::new(hook.ca_file.as_deref()) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::error!(webhook = %hook.name, error = %e, "webhook not started: its TLS settings do not load");
                continue;
            }
        };
        let d = Dispatcher::resume(hook, store.clone(), writer.clone(), tls);
        match d {
            Ok(d) => {
                tasks.spawn(d.run(stop.clone()));
            }
            Err(e) => tracing::error!(error = %e, "webhook not started"),
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Where an event stands in a dispatcher.
struct Pending {
    event: Arc<Event>,
    attempts: u32,
    last_error: String,
}

/// What a delivery attempt came to.
struct Outcome {
    seq: u64,
    lane: String,
    result: Result<(), String>,
    /// A dead letter's redelivery (not in a lane).
    redelivery: Option<DeadLetter>,
}

struct Dispatcher {
    hook: Arc<Webhook>,
    key: Arc<Vec<u8>>,
    store: Store,
    writer: StoreWriter,
    tls: Arc<TlsContext>,
    pool: Arc<Mutex<Vec<MailStream>>>,
    /// Everything up to here is done (committed or about to be).
    watermark: u64,
    /// The last event read from the store.
    read_to: u64,
    /// Done above the watermark: delivered, dead-lettered, or not wanted.
    done: BTreeSet<u64>,
    /// Delivered since the last progress commit.
    newly_acked: Vec<u64>,
    delivered_since: u64,
    committed_watermark: u64,
    /// Events read and not done, by number.
    pending: BTreeMap<u64, Pending>,
    /// Each mailbox's events in order (the empty name: events of no mailbox).
    lanes: HashMap<String, VecDeque<u64>>,
    /// Lanes with a delivery running or a retry waiting.
    busy: BTreeSet<String>,
    /// Retries due: (when, lane).
    retries: BTreeMap<(Instant, u64), String>,
    /// Dead letters being redelivered.
    redelivering: BTreeSet<u64>,
}

impl Dispatcher {
    fn resume(
        hook: Webhook,
        store: Store,
        writer: StoreWriter,
        tls: Arc<TlsContext>,
    ) -> Result<Dispatcher, String> {
        let (state, acked) = store
            .webhook_progress(&hook.name)
            .map_err(|e| format!("webhook \"{}\": {e}", hook.name))?;
        let key = Arc::new(sign::key_of(hook.secret.expose()));
        Ok(Dispatcher {
            hook: Arc::new(hook),
            key,
            store,
            writer,
            tls,
            pool: Arc::default(),
            watermark: state.watermark,
            read_to: state.watermark,
            done: acked.into_iter().collect(),
            newly_acked: Vec::new(),
            delivered_since: 0,
            committed_watermark: state.watermark,
            pending: BTreeMap::new(),
            lanes: HashMap::new(),
            busy: BTreeSet::new(),
            retries: BTreeMap::new(),
            redelivering: BTreeSet::new(),
        })
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.hook.name.clone();
        tracing::info!(webhook = %name, from = self.watermark, "webhook dispatcher started");
        let mut running: JoinSet<Outcome> = JoinSet::new();
        let mut last_progress = Instant::now();
        let mut last_redeliver_check = Instant::now() - REDELIVER_CHECK;
        loop {
            if *stop.borrow() {
                break;
            }
            // Wake-ups after a commit are not missed: ask for one before reading.
            let clock = self.store.clone();
            let woken = clock.feed().notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Err(e) = self.fill() {
                tracing::warn!(webhook = %name, error = %e, "cannot read the change feed");
            }
            self.advance();
            let now = Instant::now();
            while let Some((&(at, n), _)) = self.retries.first_key_value() {
                if at > now {
                    break;
                }
                if let Some(lane) = self.retries.remove(&(at, n)) {
                    self.busy.remove(&lane);
                }
            }
            if now >= last_redeliver_check + REDELIVER_CHECK {
                last_redeliver_check = now;
                self.start_redeliveries(&mut running);
            }
            // Delivered but not committed counts as in flight: a crash redelivers those.
            // Committed when the bound is reached, every PROGRESS_EVERY, and when idle.
            if self.newly_acked.len() + running.len() >= self.hook.max_in_flight
                || now >= last_progress + PROGRESS_EVERY
                || (running.is_empty() && self.pending.is_empty())
            {
                last_progress = now;
                self.commit_progress().await;
            }
            self.start_deliveries(&mut running);
            let next_retry = self.retries.keys().next().map(|(at, _)| *at);
            let tick = next_retry
                .unwrap_or(now + REDELIVER_CHECK)
                .min(now + REDELIVER_CHECK);
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(outcome) = done {
                        self.finished(outcome).await;
                    }
                }
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(tick) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        // Deliveries under way are abandoned; what they delivered is redelivered after the
        // restart (at least once).
        running.abort_all();
        self.commit_progress().await;
        tracing::info!(webhook = %name, watermark = self.watermark, "webhook dispatcher stopped");
    }

    /// Reads events after `read_to` into the lanes while the window has room.
    fn fill(&mut self) -> Result<(), crate::store::StoreError> {
        while self.pending.len() < WINDOW {
            let room = (WINDOW - self.pending.len()).min(READ_BATCH);
            let events = match self.store.events(self.read_to, room, &|_| true)? {
                Page::Events(e, _) => e,
                Page::Expired { oldest } => {
                    // Only when events were dropped under it (a store restored from an old
                    // backup): say so and go on from what there is.
                    tracing::error!(
                        webhook = %self.hook.name,
                        from = self.read_to,
                        oldest,
                        "events this webhook had not had are gone; going on from the oldest kept"
                    );
                    for seq in self.read_to + 1..oldest {
                        self.done.insert(seq);
                    }
                    self.read_to = oldest - 1;
                    continue;
                }
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for e in events {
                let seq = e.seq;
                if self.done.contains(&seq) {
                    continue;
                }
                if !self.hook.wants(e.change.kind()) {
                    self.done.insert(seq);
                    continue;
                }
                let lane = e.mailbox.clone().unwrap_or_default();
                self.lanes.entry(lane).or_default().push_back(seq);
                self.pending.insert(
                    seq,
                    Pending {
                        event: Arc::new(e),
                        attempts: 0,
                        last_error: String::new(),
                    },
                );
            }
            self.read_to = last;
        }
        Ok(())
    }

    /// Moves the watermark over every done event right above it.
    fn advance(&mut self) {
        while self.done.first() == Some(&(self.watermark + 1)) {
            self.done.pop_first();
            self.watermark += 1;
        }
        // Numbers are given without gaps, but a reader must not stall on one: with nothing
        // pending or done, everything read is done.
        if self.done.is_empty() && self.pending.is_empty() {
            self.watermark = self.watermark.max(self.read_to);
        }
    }

    fn start_deliveries(&mut self, running: &mut JoinSet<Outcome>) {
        let in_flight = |running: &JoinSet<Outcome>, acked: usize| running.len() + acked;
        let idle: Vec<String> = self
            .lanes
            .iter()
            .filter(|(lane, q)| !q.is_empty() && !self.busy.contains(*lane))
            .map(|(lane, _)| lane.clone())
            .collect();
        for lane in idle {
            if in_flight(running, self.newly_acked.len()) >= self.hook.max_in_flight {
                break;
            }
            let Some(&seq) = self.lanes.get(&lane).and_then(|q| q.front()) else {
                continue;
            };
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            p.attempts += 1;
            let event = p.event.clone();
            self.busy.insert(lane.clone());
            let delivery = self.delivery(event);
            running.spawn(async move {
                Outcome {
                    seq,
                    lane,
                    result: delivery.await,
                    redelivery: None,
                }
            });
        }
    }

    fn start_redeliveries(&mut self, running: &mut JoinSet<Outcome>) {
        let letters = match self.store.dead_letters(
            &self.hook.name,
            0,
            self.hook.max_in_flight,
            true,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(webhook = %self.hook.name, error = %e, "cannot read the dead letters");
                return;
            }
        };
        for letter in letters {
            let seq = letter.event.seq;
            if running.len() >= self.hook.max_in_flight || !self.redelivering.insert(seq) {
                continue;
            }
            let delivery = self.delivery(Arc::new(letter.event.clone()));
            running.spawn(async move {
                Outcome {
                    seq,
                    lane: String::new(),
                    result: delivery.await,
                    redelivery: Some(letter),
                }
            });
        }
    }

    /// One delivery attempt of `event`, ready to run on its own.
    fn delivery(
        &self,
        event: Arc<Event>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let (hook, key, tls, pool) = (
            self.hook.clone(),
            self.key.clone(),
            self.tls.clone(),
            self.pool.clone(),
        );
        async move { deliver(&hook, &key, &tls, &pool, &event).await }
    }

    async fn finished(&mut self, o: Outcome) {
        let name = self.hook.name.clone();
        if let Some(mut letter) = o.redelivery {
            self.redelivering.remove(&o.seq);
            let stored = match o.result {
                Ok(()) => {
                    tracing::info!(webhook = %name, seq = o.seq, "dead letter redelivered");
                    self.writer.webhook_resolved(&name, o.seq).await
                }
                Err(e) => {
                    tracing::warn!(webhook = %name, seq = o.seq, error = %e, "dead letter redelivery failed");
                    letter.attempts += 1;
                    letter.last_error = e;
                    letter.at = Utc::now();
                    letter.redeliver = false;
                    self.writer.webhook_dead(&name, letter, false).await
                }
            };
            if let Err(e) = stored {
                tracing::error!(webhook = %name, error = %e, "cannot record a redelivery");
            }
            return;
        }
        match o.result {
            Ok(()) => {
                self.pending.remove(&o.seq);
                self.done_in_lane(&o.lane, o.seq);
                self.newly_acked.push(o.seq);
                self.delivered_since += 1;
            }
            Err(error) => {
                let Some(p) = self.pending.get_mut(&o.seq) else {
                    return;
                };
                p.last_error = error.clone();
                let age = (Utc::now() - p.event.at).to_std().unwrap_or_default();
                if self.hook.gives_up(p.attempts, age) {
                    tracing::warn!(
                        webhook = %name,
                        seq = o.seq,
                        attempts = p.attempts,
                        error = %error,
                        "webhook delivery gave up: the event goes to the dead-letter list"
                    );
                    let letter = DeadLetter {
                        event: (*p.event).clone(),
                        attempts: p.attempts,
                        last_error: p.last_error.clone(),
                        at: Utc::now(),
                        redeliver: false,
                    };
                    // Committed before the watermark can pass it.
                    if let Err(e) = self.writer.webhook_dead(&name, letter, true).await {
                        tracing::error!(webhook = %name, error = %e, "cannot record a dead letter");
                        return;
                    }
                    self.pending.remove(&o.seq);
                    self.done_in_lane(&o.lane, o.seq);
                } else {
                    let wait = crate::outbox::retry::backoff(
                        self.hook.retry_interval,
                        p.attempts,
                        self.hook.max_retry_interval,
                        jitter(o.seq, p.attempts),
                    );
                    // The first failure of an event is a warning an admin sees; its retries
                    // (hundreds during a long outage) are debug.
                    if p.attempts <= 1 {
                        tracing::warn!(webhook = %name, seq = o.seq, lane = %o.lane, error = %error, ?wait, "webhook delivery failed; retrying until the event is delivered or too old");
                    } else {
                        tracing::debug!(webhook = %name, seq = o.seq, attempt = p.attempts, error = %error, ?wait, "webhook delivery failed; retrying");
                    }
                    self.retries.insert((Instant::now() + wait, o.seq), o.lane);
                }
            }
        }
    }

    fn done_in_lane(&mut self, lane: &str, seq: u64) {
        if let Some(q) = self.lanes.get_mut(lane) {
            if q.front() == Some(&seq) {
                q.pop_front();
            }
            if q.is_empty() {
                self.lanes.remove(lane);
            }
        }
        self.busy.remove(lane);
        self.done.insert(seq);
    }

    async fn commit_progress(&mut self) {
        self.advance();
        if self.newly_acked.is_empty() && self.watermark == self.committed_watermark {
            return;
        }
        let acked: Vec<u64> = std::mem::take(&mut self.newly_acked)
            .into_iter()
            .filter(|&s| s > self.watermark)
            .collect();
        let delivered = std::mem::take(&mut self.delivered_since);
        let written = match self
            .writer
            .webhook_progress(&self.hook.name, self.watermark, acked, delivered)
            .await
        {
            Ok(()) => self.writer.flush().await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => self.committed_watermark = self.watermark,
            Err(e) => {
                tracing::error!(webhook = %self.hook.name, error = %e, "cannot record webhook progress")
            }
        }
    }
}

/// Spreads retries of many events apart (0..=1000), without a random number generator.
fn jitter(seq: u64, attempt: u32) -> u32 {
    let nanos = Utc::now().timestamp_subsec_nanos() as u64;
    let mixed = (seq ^ (u64::from(attempt) << 32) ^ nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 33) % 1001) as u32
}

/// The headers and body of one delivery (pure: the tests' receiver checks what it gets).
pub fn request_parts(
    key: &[u8],
    event: &Event,
    timestamp: i64,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let body = serde_json::to_vec(event).unwrap_or_default();
    // The feed fills in the id; a dead letter kept before events had one keeps its number.
    let id = if event.id.is_empty() {
        event.seq.to_string()
    } else {
        event.id.clone()
    };
    let headers = vec![
        ("Webhook-Id", id.clone()),
        ("Webhook-Timestamp", timestamp.to_string()),
        (
            "Webhook-Signature",
            sign::signature(key, &id, timestamp, &body),
        ),
        ("Idempotency-Key", id),
        ("Sidesync-Event", event.change.kind().to_string()),
    ];
    (headers, body)
}

/// POSTs one event; Ok on a 2xx answer. A kept-alive connection from the pool is used when
/// there is one; a delivery that fails on it before any answer is tried once on a new one.
async fn deliver(
    hook: &Webhook,
    key: &[u8],
    tls: &TlsContext,
    pool: &Mutex<Vec<MailStream>>,
    event: &Event,
) -> Result<(), String> {
    let (headers, body) = request_parts(key, event, Utc::now().timestamp());
    let headers: Vec<(&str, String)> = headers.into_iter().collect();
    let request = http::Request {
        method: "POST",
        content_type: "application/json",
        headers: &headers,
        body: &body,
    };
    let endpoint: &Endpoint = &hook.endpoint;
    let reused = pool.lock().ok().and_then(|mut p| p.pop());
    let mut fresh = reused.is_none();
    let mut stream = match reused {
        Some(s) => s,
        None => connect(hook, tls).await?,
    };
    let answer = loop {
        let answer = http::exchange(
            &mut stream,
            endpoint,
            &request,
            true,
            MAX_ANSWER,
            hook.timeout,
        )
        .await;
        if answer.is_ok() || fresh {
            break answer;
        }
        // The receiver closed the idle connection: once more on a fresh one.
        stream = connect(hook, tls).await?;
        fresh = true;
    };
    let (status, _, keep) = answer.map_err(|e| e.to_string())?;
    if keep
        && let Ok(mut p) = pool.lock()
        && p.len() < hook.max_in_flight
    {
        p.push(stream);
    }
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {status}"))
    }
}

async fn connect(hook: &Webhook, tls: &TlsContext) -> Result<MailStream, String> {
    match tokio::time::timeout(
        hook.timeout,
        http::connect(&hook.endpoint, tls, hook.timeout),
    )
    .await
    {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "{} did not accept a connection within {} s",
            hook.endpoint.host,
            hook.timeout.as_secs()
        )),
    }
}

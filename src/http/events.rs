//! The change feed and the webhooks over the API:
//! - `GET /api/v1/events?after=SEQ&limit=N&wait=30s&types=activity.*`: events after SEQ in
//!   order; with `wait`, an empty answer waits (long-poll) until one is committed;
//! - `GET /api/v1/webhooks`: each webhook's progress;
//! - `GET /api/v1/webhooks/NAME/dead?after=SEQ&limit=N`: its dead letters;
//! - `POST /api/v1/webhooks/NAME/dead/SEQ/redeliver`: deliver one again.
//!
//! A long-poll holds a thread of its own (at most [`MAX_WAITERS`] at once; beyond that a request
//! answers at once), never one of the few HTTP workers.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::StatusContext;
use super::error::{ApiError, err, percent_decode, problem};
use crate::store::feed::{Event, Page};
use crate::store::webhook::DeadLetter;

/// Long-polls waiting at once.
pub const MAX_WAITERS: usize = 64;
/// The longest `wait` a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_LIMIT: usize = 100;

static WAITERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread is a long-poll's own: it may wait.
    static MAY_WAIT: Cell<bool> = const { Cell::new(false) };
}

/// Whether a request is a long-poll to move to a thread of its own.
pub fn is_long_poll(path: &str, url: &str) -> bool {
    path == "/api/v1/events"
        && url
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("wait=")))
}

/// Takes a long-poll place; false when all are taken (the request then answers at once).
pub fn reserve_waiter() -> bool {
    if WAITERS.fetch_add(1, Ordering::SeqCst) >= MAX_WAITERS {
        WAITERS.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    true
}

/// Runs `work` as the holder of a reserved place (it may wait), then frees the place.
pub fn run_as_waiter(work: impl FnOnce()) {
    MAY_WAIT.with(|w| w.set(true));
    work();
    MAY_WAIT.with(|w| w.set(false));
    WAITERS.fetch_sub(1, Ordering::SeqCst);
}

#[derive(Serialize)]
pub struct EventsView {
    pub events: Vec<Event>,
    /// The number to ask after next time (the last event given, or the last one looked at).
    pub last_seq: u64,
    /// The next page: `after` set to `last_seq`, the same filters.
    pub next: String,
}

struct EventsQuery {
    after: u64,
    limit: usize,
    wait: Duration,
    types: Vec<String>,
}

fn events_query(url: &str) -> Result<EventsQuery, ApiError> {
    let mut q = EventsQuery {
        after: 0,
        limit: DEFAULT_LIMIT,
        wait: Duration::ZERO,
        types: Vec::new(),
    };
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "after" => {
                q.after = v
                    .parse()
                    .map_err(|_| err(400, format!("after = \"{v}\" is not an event number")))?
            }
            "limit" => q.limit = super::activities::limit(&v)?,
            "wait" => {
                let d = crate::config::parse_duration(&v)
                    .or_else(|_| v.parse::<u64>().map(Duration::from_secs).map_err(|_| ()))
                    .map_err(|_| err(400, format!("wait = \"{v}\" is not a duration (30s)")))?;
                if d > MAX_WAIT {
                    return Err(err(
                        400,
                        format!("wait = \"{v}\" is over {} s", MAX_WAIT.as_secs()),
                    ));
                }
                q.wait = d;
            }
            "types" => {
                q.types = v
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                for t in &q.types {
                    if !crate::store::feed::EVENT_TYPES
                        .iter()
                        .any(|e| crate::config::webhook::type_matches(t, e))
                    {
                        return Err(err(
                            400,
                            format!(
                                "types: \"{t}\" matches no event type ({})",
                                crate::store::feed::EVENT_TYPES.join(", ")
                            ),
                        ));
                    }
                }
            }
            other => {
                return Err(err(
                    400,
                    format!("unknown query parameter \"{other}\" (use after, limit, wait, types)"),
                ));
            }
        }
    }
    Ok(q)
}

/// `GET /api/v1/events`.
pub fn list(ctx: &StatusContext, url: &str) -> Result<EventsView, ApiError> {
    let q = events_query(url)?;
    let wants = |e: &Event| {
        q.types.is_empty()
            || q.types
                .iter()
                .any(|t| crate::config::webhook::type_matches(t, e.change.kind()))
    };
    let may_wait = MAY_WAIT.with(Cell::get);
    let deadline = Instant::now() + if may_wait { q.wait } else { Duration::ZERO };
    let mut after = q.after;
    loop {
        let page = ctx
            .store
            .events(after, q.limit, &wants)
            .map_err(|e| err(503, e.to_string()))?;
        let (events, seen) = match page {
            Page::Events(events, seen) => (events, seen),
            Page::Expired { oldest } => {
                return Err(problem(
                    410,
                    "events-expired",
                    format!(
                        "events after {} are no longer kept (event_retention); the oldest kept is {oldest}: \
                         read the current state again, then follow the feed from {}",
                        q.after,
                        oldest - 1
                    ),
                )
                .with("oldest_seq", serde_json::json!(oldest)));
            }
        };
        let now = Instant::now();
        if !events.is_empty() || now >= deadline {
            let last_seq = events.last().map_or(seen, |e| e.seq);
            let mut next = format!("/api/v1/events?after={last_seq}&limit={}", q.limit);
            if !q.types.is_empty() {
                next.push_str(&format!("&types={}", q.types.join(",")));
            }
            return Ok(EventsView {
                events,
                last_seq,
                next,
            });
        }
        after = seen;
        ctx.store.feed().wait_after(seen, deadline - now);
    }
}

#[derive(Serialize)]
pub struct WebhookView {
    pub name: String,
    /// Scheme, host and path (a query may carry a receiver's key: never shown).
    pub url: String,
    pub events: Vec<String>,
    /// Every event up to this number is delivered, dead-lettered or not wanted.
    pub watermark: u64,
    /// Events committed after the watermark (not all of them are for this webhook).
    pub behind: u64,
    pub delivered: u64,
    pub dead_letters: u64,
}

/// `GET /api/v1/webhooks`.
pub fn webhooks(ctx: &StatusContext) -> Result<Vec<WebhookView>, ApiError> {
    let last = ctx.store.feed().last();
    ctx.config()
        .webhooks
        .iter()
        .map(|w| {
            let (state, _) = ctx
                .store
                .webhook_progress(&w.name)
                .map_err(|e| err(503, e.to_string()))?;
            let path = w.endpoint.path.split('?').next().unwrap_or("");
            Ok(WebhookView {
                name: w.name.clone(),
                url: format!(
                    "{}://{}:{}{path}",
                    if w.endpoint.secure { "https" } else { "http" },
                    w.endpoint.host,
                    w.endpoint.port
                ),
                events: w.events.clone(),
                watermark: state.watermark,
                behind: last.saturating_sub(state.watermark),
                delivered: state.delivered,
                dead_letters: ctx
                    .store
                    .dead_letters(&w.name, 0, usize::MAX, false)
                    .map_err(|e| err(503, e.to_string()))?
                    .len() as u64,
            })
        })
        .collect()
}

fn webhook_known(ctx: &StatusContext, name: &str) -> Result<String, ApiError> {
    let name = percent_decode(name);
    if ctx.config().webhooks.iter().any(|w| w.name == name) {
        Ok(name)
    } else {
        Err(err(404, format!("no webhook \"{name}\" in the config")))
    }
}

#[derive(Serialize)]
pub struct DeadLettersView {
    pub webhook: String,
    pub dead_letters: Vec<DeadLetter>,
    #[serde(flatten)]
    pub next: super::cursor::Next,
}

/// `GET /api/v1/webhooks/NAME/dead?cursor=&limit=`: oldest first.
pub fn dead(ctx: &StatusContext, name: &str, url: &str) -> Result<DeadLettersView, ApiError> {
    let name = webhook_known(ctx, name)?;
    let (mut after, mut limit) = (0u64, DEFAULT_LIMIT);
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "cursor" => after = super::cursor::decode("dead", &v)?,
            "limit" => limit = super::activities::limit(&v)?,
            other => {
                return Err(err(
                    400,
                    format!("unknown query parameter \"{other}\" (use cursor, limit)"),
                ));
            }
        }
    }
    let letters = ctx
        .store
        .dead_letters(&name, after, limit, false)
        .map_err(|e| err(503, e.to_string()))?;
    let next = super::cursor::Next::of(
        url,
        "dead",
        letters.len() == limit,
        letters.last().map(|l| l.event.seq),
    );
    Ok(DeadLettersView {
        webhook: name,
        dead_letters: letters,
        next,
    })
}

#[derive(Serialize)]
pub struct RedeliverView {
    pub webhook: String,
    pub seq: u64,
    pub status: &'static str,
}

/// `POST /api/v1/webhooks/NAME/dead/SEQ/redeliver`: 202; the dispatcher takes it within a second.
pub fn redeliver(ctx: &StatusContext, name: &str, seq: &str) -> Result<RedeliverView, ApiError> {
    let name = webhook_known(ctx, name)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| err(400, format!("\"{seq}\" is not an event number")))?;
    let writer = ctx
        .writer
        .as_ref()
        .ok_or_else(|| err(503, "the store writer is not running"))?;
    let found = writer
        .webhook_redeliver_blocking(&name, seq)
        .map_err(|e| err(503, e.to_string()))?;
    if !found {
        return Err(err(
            404,
            format!("webhook \"{name}\" has no dead letter {seq}"),
        ));
    }
    tracing::info!(webhook = %name, seq, "dead letter redelivery asked through the API");
    Ok(RedeliverView {
        webhook: name,
        seq,
        status: "queued",
    })
}

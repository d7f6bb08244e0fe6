//! `POST /api/v1/outbox`: an email request validated, built into MIME with the mailbox's next
//! tracking token, and queued durably through the store writer — answered 202 with its id, or
//! with its first answer when its idempotency key was seen in the last 24 hours.

use chrono::Utc;
use serde_json::Value;
use tiny_http::Request;

use super::StatusContext;
use super::api::{not_here, to_value};
use super::error::{ApiError, err};

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
pub(super) fn idempotency_key(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(h) = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Idempotency-Key"))
    else {
        return Ok(None);
    };
    let key = h.value.as_str().trim().trim_matches('"').to_string();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            400,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(key))
}

/// The answer to a queued email, the first time and on every replay of its idempotency key.
#[derive(serde::Serialize)]
struct QueuedView<'a> {
    id: u64,
    status: &'static str,
    message_id: Option<&'a str>,
    subject: Option<&'a str>,
}

fn queued_answer(record: &crate::store::outbox_actions::IdempotencyRecord) -> (u16, Value) {
    (
        202,
        to_value(QueuedView {
            id: record.id,
            status: crate::store::OutboxStatus::PendingSend.as_str(),
            message_id: record.message_id.as_deref(),
            subject: record.subject.as_deref(),
        }),
    )
}

/// `POST /api/v1/outbox`: validate, build, queue durably; 202 with the activity id. With an
/// idempotency key (scoped to the caller), a request seen in the last 24 hours gets its first
/// answer and queues nothing; the same key with another request is refused.
pub(super) fn queue(
    ctx: &StatusContext,
    body: &[u8],
    key: Option<(&str, String)>,
) -> Result<(u16, Value), ApiError> {
    use crate::outbox::request;
    use crate::store::outbox_actions::{IdempotencyRecord, scoped_key};
    let idempotency = match key {
        None => None,
        Some((caller, key)) => {
            use sha2::{Digest, Sha256};
            let scoped = scoped_key(caller, &key);
            let hash = format!("{:x}", Sha256::digest(body));
            if let Some(first) = ctx
                .store
                .idempotency(&scoped)
                .map_err(|e| err(503, e.to_string()))?
            {
                if first.request_hash != hash {
                    return Err(super::error::problem(
                        422,
                        "idempotency-key-reused",
                        format!(
                            "Idempotency-Key \"{key}\" was used in the last 24 hours for another \
                             request (queued email {}); use a new key for a new email",
                            first.id
                        ),
                    ));
                }
                tracing::info!(id = first.id, "idempotent replay of a queued email");
                return Ok(queued_answer(&first));
            }
            Some((scoped, hash))
        }
    };
    let bad = |e: request::RequestError| err(400, e.to_string());
    let req = request::parse(body).map_err(bad)?;
    let from = req.from.trim().to_ascii_lowercase();
    let config = ctx.config();
    // The mailbox by its address: its place in the config says nothing about its tokens.
    let mailbox = config
        .mailboxes
        .iter()
        .find(|m| m.email_address == from)
        .ok_or_else(|| {
            let why = not_here(ctx, &from);
            err(400, format!("from: {}", why.message))
        })?;
    if mailbox.outgoing_delivery == crate::config::OutgoingDelivery::None {
        return Err(err(
            400,
            format!("from: mailbox {from} has outgoing delivery none"),
        ));
    }
    let in_reply_to = match req.in_reply_to {
        None => None,
        Some(id) => Some(
            ctx.store
                .activity(id)
                .map_err(|e| err(500, e.to_string()))?
                .and_then(|a| a.headers.message_id)
                .ok_or_else(|| {
                    err(
                        400,
                        format!("in_reply_to: no activity {id} with a Message-ID"),
                    )
                })?,
        ),
    };
    let regarding = match &req.regarding {
        None => None,
        Some(r) => {
            crate::tracking::parties::check_record(r)
                .map_err(|e| err(400, format!("regarding: {e}")))?;
            Some(r.trim().to_string())
        }
    };
    let format = config.appliance.tracking_token.clone();
    // Only a shard of several writes its index into tokens (see `tracking::token`).
    let shard = config
        .appliance
        .shard
        .filter(|s| s.count > 1)
        .map(|s| s.index);
    let writer = ctx
        .writer
        .as_ref()
        .ok_or_else(|| err(503, "the store writer is not running"))?;
    let mut admitted = false;
    // The token is the mailbox's next one as read here; the writer records it only if it still
    // is at commit. Another email of the same mailbox queued in between takes it, and this one
    // is built again with the next: a handful of rounds even under a burst of parallel calls.
    for _ in 0..TOKEN_ROUNDS {
        let claim = match &format {
            None => None,
            Some(f) => Some(
                ctx.store
                    .next_token(&from, f, shard)
                    .map_err(|e| err(503, e.to_string()))?
                    .ok_or_else(|| err(503, "no free tracking token for this mailbox"))?,
            ),
        };
        let counter = ctx
            .store
            .next_activity_id_hint()
            .map_err(|e| err(500, e.to_string()))?;
        let message_id = new_message_id(&from, counter);
        let email = request::build(
            &req,
            &message_id,
            in_reply_to.as_deref(),
            claim.as_ref().map(|c| c.token.as_str()),
        )
        .map_err(bad)?;
        let cap = config.appliance.outbox_max_recipients as usize;
        if email.recipients.len() > cap {
            return Err(err(
                400,
                format!(
                    "to: {} recipients in one email; at most {cap} (outbox_max_recipients)",
                    email.recipients.len()
                ),
            ));
        }
        let headers = crate::tracking::message::parse_headers(&email.raw);
        // The token is recorded only when the subject carries it (a subject too long for it
        // carries none, and then the counter does not move).
        let token = claim
            .zip(format.clone())
            .filter(|(c, _)| email.subject.ends_with(&format!("[{}]", c.token)))
            .map(|(claim, format)| crate::store::QueuedToken {
                claim,
                format,
                shard,
            });
        let level = config.appliance.store_compression_level;
        let mut compressor =
            zstd::bulk::Compressor::new(level).map_err(|e| err(500, e.to_string()))?;
        let raw_encoded = crate::store::rawcodec::encode(&email.raw, &mut compressor)
            .map_err(|e| err(500, e.to_string()))?;
        if !admitted {
            let limit = config.appliance.outbox_max_per_minute;
            let admit = ctx
                .send_rate
                .lock()
                .map_err(|_| err(500, "the send rate is unavailable"))?
                .admit(&from, Utc::now().timestamp(), limit);
            if let Err(wait) = admit {
                return Err(err(
                    429,
                    format!(
                        "mailbox {from} queued {limit} emails this minute (outbox_max_per_minute); \
                         try again in {wait} s"
                    ),
                ));
            }
            admitted = true;
        }
        let outcome = writer
            .enqueue_blocking(crate::store::QueuedEmail {
                mailbox: from.clone(),
                headers,
                raw_encoded,
                size: email.raw.len() as u64,
                recipients: email.recipients.clone(),
                token,
                regarding: regarding.clone(),
                directory: ctx.directory.get(),
                idempotency: idempotency.as_ref().map(|(scoped, hash)| {
                    (
                        scoped.clone(),
                        IdempotencyRecord {
                            id: 0,
                            request_hash: hash.clone(),
                            at: Utc::now(),
                            message_id: Some(email.message_id.clone()),
                            subject: Some(email.subject.clone()),
                        },
                    )
                }),
            })
            .map_err(|e| err(503, e.to_string()))?;
        let crate::store::Enqueued::Queued { id, replayed } = outcome else {
            continue;
        };
        return queued(ctx, &idempotency, &from, &email, id, replayed);
    }
    Err(err(
        503,
        format!("mailbox {from} is queueing too many emails at once; try again"),
    ))
}

/// How many times an email is built again when its token was taken at commit.
const TOKEN_ROUNDS: usize = 16;

/// The answer once the writer has queued the email (or recalled it by its idempotency key).
fn queued(
    ctx: &StatusContext,
    idempotency: &Option<(String, String)>,
    from: &str,
    email: &crate::outbox::request::NewEmail,
    id: u64,
    replayed: bool,
) -> Result<(u16, Value), ApiError> {
    use crate::store::outbox_actions::IdempotencyRecord;
    if replayed && let Some((scoped, _)) = idempotency {
        // The same key, at the same moment: the first one's answer.
        if let Some(first) = ctx
            .store
            .idempotency(scoped)
            .map_err(|e| err(503, e.to_string()))?
        {
            return Ok(queued_answer(&first));
        }
    }
    ctx.outbox_wake.notify_one();
    tracing::info!(mailbox = %from, id, recipients = email.recipients.len(), "email queued");
    Ok(queued_answer(&IdempotencyRecord {
        id,
        request_hash: String::new(),
        at: Utc::now(),
        message_id: Some(email.message_id.clone()),
        subject: Some(email.subject.clone()),
    }))
}

/// A Message-ID of our own: time, a counter and a hash, at the sender's domain.
fn new_message_id(from: &str, counter: u64) -> String {
    use sha2::{Digest, Sha256};
    let now = Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    let digest =
        Sha256::digest(format!("{from}|{counter}|{nanos}|{}", std::process::id()).as_bytes());
    let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let domain = from
        .split_once('@')
        .map_or("sidesync.localdomain", |(_, d)| d);
    // Without angle brackets: mail-builder adds them.
    format!("{}.{counter}.{tag}@{domain}", now.format("%Y%m%d%H%M%S"))
}

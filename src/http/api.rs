//! `/api/v1/...` behind the bearer token (A2): activities (list, one, raw MIME), mailboxes,
//! alerts, approve, test & enable, the outbox.
//!
//! No token configured = the API is off. Tokens are compared in constant time, and are refused
//! over plaintext HTTP from anywhere but loopback (Dynamics likewise refuses credentials over
//! non-secure channels).

use std::io::Read;

use chrono::Utc;
use serde_json::{Value, json};
use tiny_http::{Method, Request};

use super::StatusContext;
pub use super::error::ApiError;
pub(super) use super::error::{err, percent_decode};
use crate::config::Approval;
use crate::engine::Command;
use crate::store::MailboxUpdate;

/// Request bodies larger than this are refused.
/// (Outbox requests carry attachments in base64: 32 MB, Dynamics' largest recommended.)
const MAX_BODY: u64 = 48 * 1024 * 1024;
/// Every other request body is a small JSON object.
const MAX_SMALL_BODY: u64 = 64 * 1024;

/// The largest body the front lets through to `method` `path` (the path as routed below,
/// without the query): the limits the handlers apply, so a body too large is refused before a
/// byte of it is read, and a request a handler would refuse anyway is not buffered whole.
pub fn body_limit(method: &str, path: &str) -> u64 {
    match (method, path) {
        ("POST", "/api/v1/outbox") => MAX_BODY,
        ("PUT", "/api/v1/contacts") => super::tracking::MAX_CONTACTS_BODY,
        _ => MAX_SMALL_BODY,
    }
}

/// Equal-length comparison that takes the same time wherever the first difference is.
/// Compares a given token with the configured one in time that depends on neither: both are
/// hashed first, so the comparison runs over 32 bytes whatever their lengths (a plain length
/// check would tell a caller how long the token is).
fn token_matches(given: &[u8], token: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given), Sha256::digest(token));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Behind the HTTPS front every request came over TLS; over plain HTTP only a loopback client is
/// safe to send a token.
pub fn token_may_travel(secure: bool, client: Option<std::net::IpAddr>) -> bool {
    secure || client.is_some_and(|ip| ip.is_loopback())
}

/// Who made a call, and what they may do.
pub(super) struct Caller {
    pub name: String,
    pub scope: crate::config::TokenScope,
}

/// The caller of a request: on the control socket, the local operator (the socket's file
/// permissions decided who that may be); otherwise the token it carries.
pub(super) fn caller(
    ctx: &StatusContext,
    request: &Request,
    origin: super::Origin,
) -> Result<Caller, ApiError> {
    match origin {
        // Only the control front reaches this server, and it always says who connected.
        super::Origin::Control => {
            let groups = &ctx.config().appliance.control_groups;
            let (name, scope) = super::control_peer::caller_of(request, groups)
                .ok_or_else(|| err(403, "the control socket's front did not say who is asking"))?;
            Ok(Caller { name, scope })
        }
        super::Origin::Front => authorize(ctx, request),
    }
}

/// The token a request carries, among the configured ones (each compared over digests).
pub(super) fn authorize(ctx: &StatusContext, request: &Request) -> Result<Caller, ApiError> {
    let config = ctx.config();
    if config.appliance.api_tokens.is_empty() {
        return Err(err(
            404,
            "the API is off: set api_token_file in [appliance]",
        ));
    };
    let secure = ctx.config().appliance.status_tls.is_some();
    if !token_may_travel(secure, super::peer(request)) {
        return Err(err(
            403,
            "the API does not accept tokens over plaintext HTTP from other hosts",
        ));
    }
    let given = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let Some(given) = given else {
        return Err(err(401, "missing Authorization: Bearer token"));
    };
    let given = super::guard::presented_token(&given).map_err(|e| err(401, e))?;
    // Every token is compared, whichever matches: the time says nothing about which.
    let mut found = None;
    for t in &config.appliance.api_tokens {
        if token_matches(given.trim().as_bytes(), t.token.expose().as_bytes()) && found.is_none() {
            found = Some(t);
        }
    }
    found
        .map(|t| Caller {
            name: t.name.clone(),
            scope: t.scope,
        })
        .ok_or_else(|| super::error::problem(401, "invalid-token", "wrong token"))
}

/// The scope a call needs: reading is `read`; queuing email is `send`; everything else that
/// changes something (approval, Test & Enable, retries, contacts, regarding) is `admin`.
pub fn scope_needed(method: &Method, parts: &[&str]) -> crate::config::TokenScope {
    use crate::config::TokenScope;
    match (method, parts) {
        (Method::Get, _) => TokenScope::Read,
        (Method::Post, ["outbox"])
        | (Method::Delete, ["outbox", _])
        | (Method::Post, ["outbox", _, "resend"]) => TokenScope::Send,
        _ => TokenScope::Admin,
    }
}

fn body_bytes(request: &mut Request, max: u64) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(max + 1)
        .read_to_end(&mut body)
        .map_err(|e| err(400, format!("cannot read the request body: {e}")))?;
    if body.len() as u64 > max {
        return Err(err(413, format!("the request body is over {max} bytes")));
    }
    Ok(body)
}

fn body_json(request: &mut Request) -> Result<Option<Value>, ApiError> {
    let body = body_bytes(request, MAX_SMALL_BODY)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| err(400, format!("the request body is not JSON: {e}")))
}

/// What an API request gets: JSON, or an email's raw MIME.
pub enum Answer {
    Json(u16, Value),
    Mime(Vec<u8>),
}

/// Answers an `/api/v1/...` request.
pub fn handle(
    ctx: &StatusContext,
    request: &mut Request,
    path: &str,
    origin: super::Origin,
) -> Result<Answer, ApiError> {
    let changing = *request.method() != Method::Get;
    let peer = match origin {
        super::Origin::Control => Some(super::control_peer::peer_label(request)),
        super::Origin::Front => super::peer(request).map(|p| p.to_string()),
    };
    let method = request.method().to_string();
    let mut who = "refused".to_string();
    let answer = route(ctx, request, path, origin, &mut who);
    // The audit trail: every call that may change something, with who (the API token; tokens are
    // not named yet), what and from where, and how it ended. Never a body, never a token.
    if changing {
        let status = match &answer {
            Ok(Answer::Json(code, _)) => *code,
            Ok(Answer::Mime(_)) => 200,
            Err(e) => e.status,
        };
        tracing::info!(
            target: "sidesync::audit",
            peer = %peer.unwrap_or_else(|| "unknown".to_string()),
            who = %who,
            method,
            path,
            status,
            "audit: api call"
        );
    }
    answer
}

fn route(
    ctx: &StatusContext,
    request: &mut Request,
    path: &str,
    origin: super::Origin,
    who: &mut String,
) -> Result<Answer, ApiError> {
    let token = caller(ctx, request, origin)?;
    *who = token.name.clone();
    let parts: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    let needed = scope_needed(request.method(), &parts);
    if token.scope < needed {
        return Err(err(
            403,
            format!(
                "the token \"{}\" has scope {}; this call needs {}",
                token.name,
                token.scope.as_str(),
                needed.as_str()
            ),
        ));
    }
    let url = request.url().to_string();
    match (request.method().clone(), parts.as_slice()) {
        (Method::Get, ["activities"]) => super::activities::list(ctx, &url).map(json_ok),
        (Method::Get, ["activities", id]) => super::activities::one(ctx, id).map(json_ok),
        (Method::Get, ["activities", id, "raw"]) => {
            super::activities::raw(ctx, id).map(Answer::Mime)
        }
        (Method::Get, ["mailboxes"]) => super::activities::mailboxes(ctx, &url).map(json_ok),
        (Method::Get, ["events"]) => super::events::list(ctx, &url).map(view),
        (Method::Get, ["webhooks"]) => {
            super::events::webhooks(ctx).map(|w| view(serde_json::json!({ "webhooks": w })))
        }
        (Method::Get, ["webhooks", name, "dead"]) => super::events::dead(ctx, name, &url).map(view),
        (Method::Post, ["webhooks", name, "dead", seq, "redeliver"]) => {
            super::events::redeliver(ctx, name, seq).map(|v| Answer::Json(202, to_value(v)))
        }
        (
            _,
            ["events"]
            | ["webhooks"]
            | ["webhooks", _, "dead"]
            | ["webhooks", _, "dead", _, "redeliver"],
        ) => Err(err(405, "method not allowed")),
        (_, ["activities"] | ["activities", _] | ["activities", _, "raw"] | ["mailboxes"]) => {
            Err(err(405, "method not allowed"))
        }
        _ => handle_actions(ctx, request, path, &parts, &token.name)
            .map(|(code, v)| Answer::Json(code, v)),
    }
}

fn json_ok(v: Value) -> Answer {
    Answer::Json(200, v)
}

/// A typed view as a 200 answer.
fn view(v: impl serde::Serialize) -> Answer {
    Answer::Json(200, to_value(v))
}

pub(super) fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn handle_actions(
    ctx: &StatusContext,
    request: &mut Request,
    path: &str,
    parts: &[&str],
    caller: &str,
) -> Result<(u16, Value), ApiError> {
    match (request.method().clone(), parts) {
        (Method::Get, ["alerts"]) => alerts(ctx, request.url()),
        (Method::Post, ["mailboxes", address, "approve"]) => {
            let body = body_json(request)?;
            approve(ctx, address, body)
        }
        (Method::Post, ["mailboxes", address, "test"]) => test(ctx, address),
        (Method::Get, ["mailboxes", address, "test"]) => test_result(ctx, address),
        (Method::Get, ["mailboxes", address, "failures"]) => failures(ctx, address),
        (Method::Post, ["mailboxes", address, "failures", key, "retry"]) => {
            retry_failure(ctx, address, key)
        }
        (Method::Post, ["outbox"]) => {
            let key = super::outbox_queue::idempotency_key(request)?;
            let body = body_bytes(request, MAX_BODY)?;
            super::outbox_queue::queue(ctx, &body, key.map(|k| (caller, k)))
        }
        (Method::Delete, ["outbox", id]) => {
            outbox_action(ctx, id, crate::store::outbox_actions::OutboxAction::Cancel)
        }
        (Method::Post, ["outbox", id, "resend"]) => {
            outbox_action(ctx, id, crate::store::outbox_actions::OutboxAction::Resend)
        }
        (_, ["outbox", _, "resend"]) => Err(err(405, "method not allowed")),
        (Method::Get, ["outbox"]) => outbox_list(ctx, request.url()),
        (Method::Get, ["outbox", id]) => outbox_status(ctx, id),
        (Method::Put, ["contacts"]) => {
            let body = body_bytes(request, super::tracking::MAX_CONTACTS_BODY)?;
            super::tracking::put_contacts(ctx, &body)
        }
        (Method::Put, ["activities", id, "regarding"]) => {
            let body = body_json(request)?;
            super::tracking::put_regarding(ctx, id, body)
        }
        (_, ["contacts"]) | (_, ["activities", _, "regarding"]) => {
            Err(err(405, "method not allowed"))
        }
        (_, ["outbox"]) | (_, ["outbox", _]) => Err(err(405, "method not allowed")),
        (_, ["alerts"])
        | (_, ["mailboxes", _, "approve" | "test" | "failures"])
        | (_, ["mailboxes", _, "failures", _, "retry"]) => Err(err(405, "method not allowed")),
        _ => Err(err(404, format!("no such API endpoint: {path}"))),
    }
}

fn mailbox_known(ctx: &StatusContext, address: &str) -> Result<String, ApiError> {
    let address = percent_decode(address).to_ascii_lowercase();
    if ctx
        .config()
        .mailboxes
        .iter()
        .any(|m| m.email_address == address)
    {
        Ok(address)
    } else {
        Err(not_here(ctx, &address))
    }
}

/// A mailbox this appliance does not process: not in the config, or another shard's.
pub(super) fn not_here(ctx: &StatusContext, address: &str) -> ApiError {
    match ctx.config().owner_elsewhere(address) {
        Some(s) => err(
            404,
            format!("mailbox {address} is processed by shard {s}, not by this one"),
        ),
        None => err(404, format!("no mailbox {address} in the config")),
    }
}

pub(super) fn approve(
    ctx: &StatusContext,
    address: &str,
    body: Option<Value>,
) -> Result<(u16, Value), ApiError> {
    let address = mailbox_known(ctx, address)?;
    let approval = match body.as_ref().and_then(|b| b.get("approval")) {
        None => Approval::Approved,
        Some(Value::String(s)) => Approval::parse(s).ok_or_else(|| {
            err(400, format!("approval = \"{s}\" is not one of \"approved\", \"rejected\", \"pending_approval\", \"empty\""))
        })?,
        Some(_) => return Err(err(400, "approval must be a string")),
    };
    let configured = ctx
        .config()
        .mailbox(&address)
        .map(|m| m.approval)
        .unwrap_or(Approval::Empty);
    let writer = ctx
        .writer
        .as_ref()
        .ok_or_else(|| err(503, "the store writer is not running"))?;
    writer
        .mailbox_blocking(
            &address,
            MailboxUpdate::Approved {
                approval: approval.as_str().to_string(),
                config_approval: configured.as_str().to_string(),
                at: Utc::now(),
            },
        )
        .map_err(|e| err(503, e.to_string()))?;
    if let Some(c) = &ctx.commands {
        let _ = c.blocking_send(Command::Wake(address.clone()));
    }
    // Its queued email may go now.
    ctx.outbox_wake.notify_one();
    tracing::info!(mailbox = %address, approval = approval.as_str(), "approval set through the API");
    Ok((
        200,
        json!({ "email_address": address, "approval": approval.as_str() }),
    ))
}

/// The mailbox's item failures: emails skipped (too large, or failing to be stored after the
/// configured tries) or failing now, each with the key its retry action takes.
fn failures(ctx: &StatusContext, address: &str) -> Result<(u16, Value), ApiError> {
    let address = mailbox_known(ctx, address)?;
    let rows = ctx
        .store
        .item_failures(Some(&address))
        .map_err(|e| err(503, e.to_string()))?;
    #[derive(serde::Serialize)]
    struct FailureView<'a> {
        /// What `…/failures/KEY/retry` takes.
        key: String,
        #[serde(flatten)]
        failure: &'a crate::store::ItemFailure,
    }
    #[derive(serde::Serialize)]
    struct Failures<'a> {
        email_address: &'a str,
        failures: Vec<FailureView<'a>>,
    }
    Ok((
        200,
        to_value(Failures {
            email_address: &address,
            failures: rows
                .iter()
                .map(|(_, f)| FailureView {
                    key: f.item_key(),
                    failure: f,
                })
                .collect(),
        }),
    ))
}

/// Forgets an item failure so that its email is fetched and tried again on the next sync.
fn retry_failure(ctx: &StatusContext, address: &str, key: &str) -> Result<(u16, Value), ApiError> {
    let address = mailbox_known(ctx, address)?;
    let key = percent_decode(key);
    let known = ctx
        .store
        .item_failure(&address, &key)
        .map_err(|e| err(503, e.to_string()))?;
    if known.is_none() {
        return Err(err(
            404,
            format!("mailbox {address} has no item failure \"{key}\""),
        ));
    }
    let writer = ctx
        .writer
        .as_ref()
        .ok_or_else(|| err(503, "the store writer is not running"))?;
    writer
        .retry_item_blocking(&address, &key)
        .map_err(|e| err(503, e.to_string()))?;
    if let Some(c) = &ctx.commands {
        let _ = c.blocking_send(Command::Wake(address.clone()));
    }
    tracing::info!(mailbox = %address, item = %key, "item failure retried through the API");
    Ok((
        200,
        json!({ "email_address": address, "key": key, "retry": true }),
    ))
}

/// `POST …/test`: starts Test & Enable and answers 202 at once with where to poll, so no HTTP
/// worker waits on a mail server; a test already running is not started twice.
pub(super) fn test(ctx: &StatusContext, address: &str) -> Result<(u16, Value), ApiError> {
    let address = mailbox_known(ctx, address)?;
    let poll = format!("/api/v1/mailboxes/{address}/test");
    let started = ctx
        .tests_running
        .lock()
        .map(|mut running| running.insert(address.clone()))
        .unwrap_or(false);
    if started {
        let commands = ctx
            .commands
            .as_ref()
            .ok_or_else(|| err(503, "the engine is not running"))?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = commands.blocking_send(Command::Test {
            addresses: vec![address.clone()],
            reply,
        });
        if sent.is_err() {
            if let Ok(mut running) = ctx.tests_running.lock() {
                running.remove(&address);
            }
            return Err(err(503, "the engine is not running"));
        }
        // Every step of the test is bounded by the connection timeout, so this wait ends; the
        // record is in the store by then.
        let running = ctx.tests_running.clone();
        let waiting = address.clone();
        let _ = std::thread::Builder::new()
            .name("api-test-wait".into())
            .spawn(move || {
                let _ = answer.blocking_recv();
                if let Ok(mut r) = running.lock() {
                    r.remove(&waiting);
                }
            });
    }
    Ok((
        202,
        json!({ "email_address": address, "status": "running", "poll": poll }),
    ))
}

/// `GET …/test`: 202 while a test runs; then 200 with the latest record, transcripts included.
fn test_result(ctx: &StatusContext, address: &str) -> Result<(u16, Value), ApiError> {
    let address = mailbox_known(ctx, address)?;
    let running = ctx
        .tests_running
        .lock()
        .map(|r| r.contains(&address))
        .unwrap_or(false);
    if running {
        return Ok((
            202,
            json!({ "email_address": address, "status": "running" }),
        ));
    }
    let state = ctx
        .store
        .mailbox_state(&address)
        .map_err(|e| err(503, e.to_string()))?;
    let record = state
        .last_test
        .ok_or_else(|| err(404, format!("mailbox {address} has not been tested")))?;
    #[derive(serde::Serialize)]
    struct Done<'a> {
        status: &'static str,
        #[serde(flatten)]
        test: super::views::TestView<'a>,
    }
    Ok((
        200,
        to_value(Done {
            status: "done",
            test: super::views::TestView::of(&record, true),
        }),
    ))
}

/// `GET /api/v1/alerts?mailbox=&profile=&scope=&level=&limit=&cursor=`: newest first, each with
/// its id. `mailbox` is that mailbox's wall (its profile's Profile-scope alerts included).
pub(super) fn alerts(ctx: &StatusContext, url: &str) -> Result<(u16, Value), ApiError> {
    use super::alert_filter::{self, AlertFilter};
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let (mut filter, mut limit, mut before) = (AlertFilter::default(), 100usize, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "mailbox" => {
                let address = percent_decode(v).to_ascii_lowercase();
                let config = ctx.config();
                let profile = config
                    .mailbox(&address)
                    .and_then(|m| config.mailbox_profile(m))
                    .map(|p| p.name.clone());
                filter.wall = Some((address, profile));
            }
            "profile" => filter.profile = Some(percent_decode(v)),
            "scope" => filter.scope = Some(alert_filter::scope(&percent_decode(v))?),
            "level" => filter.level = Some(alert_filter::level(&percent_decode(v))?),
            "limit" => limit = list_limit(v)?,
            "cursor" => before = Some(super::cursor::decode("alerts", &percent_decode(v))?),
            other => {
                return Err(err(
                    400,
                    format!(
                        "unknown query parameter \"{other}\" (use mailbox, profile, scope, level, \
                         limit, cursor)"
                    ),
                ));
            }
        }
    }
    let page = ctx
        .store
        .alerts_page(before, limit, |a| filter.keeps(a))
        .map_err(|e| err(500, e.to_string()))?;
    #[derive(serde::Serialize)]
    struct Alerts<'a> {
        alerts: Vec<super::views::AlertView<'a>>,
        #[serde(flatten)]
        next: super::cursor::Next,
    }
    let next = super::cursor::Next::of(
        url,
        "alerts",
        page.len() == limit,
        page.last().map(|(id, _)| *id),
    );
    Ok((
        200,
        to_value(Alerts {
            alerts: page
                .iter()
                .map(|(id, a)| super::views::AlertView::of(*id, a))
                .collect(),
            next,
        }),
    ))
}

/// A list's `limit` query value: 1 to 10,000.
fn list_limit(v: &str) -> Result<usize, ApiError> {
    v.parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            err(
                400,
                format!("limit = \"{v}\" is not a number from 1 to 10000"),
            )
        })
}

/// `DELETE /api/v1/outbox/ID` (cancel while Pending Send) and `POST …/ID/resend` (a Failed one).
fn outbox_action(
    ctx: &StatusContext,
    id: &str,
    action: crate::store::outbox_actions::OutboxAction,
) -> Result<(u16, Value), ApiError> {
    use crate::store::outbox_actions::{ActionRefused, OutboxAction};
    let id: u64 = id
        .parse()
        .map_err(|_| err(400, format!("\"{id}\" is not an outbox id")))?;
    let writer = ctx
        .writer
        .as_ref()
        .ok_or_else(|| err(503, "the store writer is not running"))?;
    let (verb, allowed) = match action {
        OutboxAction::Cancel => ("cancelled", "pending_send"),
        OutboxAction::Resend => ("sent again", "failed"),
    };
    match writer
        .outbox_action_blocking(id, action)
        .map_err(|e| err(503, e.to_string()))?
    {
        Ok(e) => {
            if action == OutboxAction::Resend {
                ctx.outbox_wake.notify_one();
            }
            tracing::info!(id, mailbox = %e.mailbox, "queued email {verb} through the API");
            Ok((200, outbox_json(&e)))
        }
        Err(ActionRefused::NoSuchEmail) => Err(err(404, format!("no queued email {id}"))),
        Err(ActionRefused::Status(s)) => Err(super::error::problem(
            409,
            "outbox-status",
            format!(
                "queued email {id} is {}; only a {allowed} email can be {verb}",
                s.as_str()
            ),
        )
        .with("outbox_status", Value::from(s.as_str()))),
    }
}

/// `GET /api/v1/outbox/ID`.
/// `GET /api/v1/outbox?status=&mailbox=&limit=`: the newest queued emails, newest first.
fn outbox_list(ctx: &StatusContext, url: &str) -> Result<(u16, Value), ApiError> {
    use crate::store::OutboxStatus;
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let (mut status, mut mailbox, mut limit, mut before) = (None, None, 100usize, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "status" => {
                let all = [
                    OutboxStatus::PendingSend,
                    OutboxStatus::Sending,
                    OutboxStatus::Sent,
                    OutboxStatus::Failed,
                    OutboxStatus::Cancelled,
                ];
                status = Some(all.into_iter().find(|s| s.as_str() == v).ok_or_else(|| {
                    err(
                        400,
                        format!(
                            "status = \"{v}\" is not one of pending_send, sending, sent, failed, cancelled"
                        ),
                    )
                })?)
            }
            "mailbox" => mailbox = Some(percent_decode(v).to_ascii_lowercase()),
            "limit" => limit = list_limit(v)?,
            "cursor" => before = Some(super::cursor::decode("outbox", &percent_decode(v))?),
            other => {
                return Err(err(
                    400,
                    format!(
                        "unknown query parameter \"{other}\" (use status, mailbox, limit, cursor)"
                    ),
                ));
            }
        }
    }
    let list = ctx
        .store
        .outbox_newest(before, limit, |e| {
            status.is_none_or(|s| e.status == s) && mailbox.as_ref().is_none_or(|m| &e.mailbox == m)
        })
        .map_err(|e| err(500, e.to_string()))?;
    #[derive(serde::Serialize)]
    struct Outbox<'a> {
        outbox: Vec<super::views::OutboxView<'a>>,
        #[serde(flatten)]
        next: super::cursor::Next,
    }
    let next = super::cursor::Next::of(
        url,
        "outbox",
        list.len() == limit,
        list.last().map(|e| e.id),
    );
    Ok((
        200,
        to_value(Outbox {
            outbox: list.iter().map(super::views::OutboxView::of).collect(),
            next,
        }),
    ))
}

fn outbox_status(ctx: &StatusContext, id: &str) -> Result<(u16, Value), ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| err(400, format!("\"{id}\" is not an outbox id")))?;
    let e = ctx
        .store
        .outbox_entry(id)
        .map_err(|e| err(500, e.to_string()))?
        .ok_or_else(|| err(404, format!("no queued email {id}")))?;
    Ok((200, outbox_json(&e)))
}

pub fn outbox_json(e: &crate::store::OutboxEntry) -> Value {
    to_value(super::views::OutboxView::of(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_travel_over_tls_or_loopback_only() {
        let lan: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
        let v6: std::net::IpAddr = "::1".parse().expect("ip");
        assert!(token_may_travel(
            false,
            Some("127.0.0.1".parse().expect("ip"))
        ));
        assert!(token_may_travel(false, Some(v6)));
        assert!(!token_may_travel(false, Some(lan)));
        assert!(!token_may_travel(false, None));
        assert!(token_may_travel(true, Some(lan)));
        assert!(token_may_travel(true, None));
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abc", b"abd"));
        assert!(!token_matches(b"abc", b"abcd"));
    }
}

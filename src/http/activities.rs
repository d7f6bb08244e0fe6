//! The read side of the API: activities (filtered, paginated), one activity with its parties and
//! correlation, its raw MIME, and the mailboxes. Everything comes from read transactions.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::StatusContext;
use super::cursor::{self, Next};
use super::error::{ApiError, err, percent_decode};
use crate::store::{Activity, Direction};
use crate::tracking::automatic::Automatic;
use serde::Serialize;

/// Page size when the request names none, and the largest allowed.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1_000;

/// A query string's parameters; any name not in `allowed` is a 400 naming it.
fn query(url: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&k) {
            return Err(err(
                400,
                format!(
                    "unknown query parameter \"{k}\" (use {})",
                    allowed.join(", ")
                ),
            ));
        }
        out.push((k.to_string(), percent_decode(&v.replace('+', " "))));
    }
    Ok(out)
}

/// A page size: 1 to 1,000 (every list of the read API but the outbox's and the alerts').
pub(super) fn limit(v: &str) -> Result<usize, ApiError> {
    v.parse()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            err(
                400,
                format!("limit = \"{v}\" is not a number from 1 to {MAX_LIMIT}"),
            )
        })
}

/// What `GET /api/v1/activities` filters on besides the conversation and regarding indexes.
#[derive(Debug, Default)]
pub struct Filter {
    pub mailbox: Option<String>,
    pub direction: Option<Direction>,
    pub since: Option<DateTime<Utc>>,
    /// `automatic=none` (a person's email) or a kind: Some(None) and Some(Some(kind)).
    pub automatic: Option<Option<Automatic>>,
}

impl Filter {
    pub fn keeps(&self, a: &Activity) -> bool {
        self.mailbox
            .as_ref()
            .is_none_or(|m| &a.mailbox == m || a.mailboxes.contains(m))
            && self.direction.is_none_or(|d| a.direction == d)
            && self.since.is_none_or(|t| a.created_at >= t)
            && self.automatic.is_none_or(|k| a.headers.automatic == k)
    }
}

/// Which index a listing reads.
enum Index {
    All,
    Conversation(u64),
    Regarding(String),
}

fn bare_id(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Incoming => "incoming",
        Direction::Outgoing => "outgoing",
    }
}

/// An activity in a list.
#[derive(Debug, Serialize)]
pub struct ActivitySummary<'a> {
    pub id: u64,
    pub direction: &'static str,
    pub mailbox: &'a str,
    pub folder: &'a str,
    pub message_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub from: &'a [String],
    /// The email's Date header in UTC (when it parses; the raw MIME keeps it as written).
    #[serde(with = "crate::timefmt::option")]
    pub date: Option<DateTime<Utc>>,
    pub size: u64,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    /// When the server received it (its INTERNALDATE), when known.
    #[serde(with = "crate::timefmt::option")]
    pub received_at: Option<DateTime<Utc>>,
    pub conversation: u64,
    pub regarding: Option<&'a str>,
    pub mailboxes: Vec<String>,
    pub correlation_method: Option<crate::tracking::decision::Method>,
    /// Written by a machine, and what kind; null for a person's email.
    pub automatic: Option<Automatic>,
    /// Where each mailbox's copy is on its server: present, moved or deleted, with its flags.
    pub server_state: &'a [crate::tracking::server_state::ServerCopy],
}

fn summary(a: &Activity) -> ActivitySummary<'_> {
    ActivitySummary {
        id: a.id,
        direction: direction_name(a.direction),
        mailbox: &a.mailbox,
        folder: &a.folder,
        message_id: a.headers.message_id.as_deref(),
        subject: a.headers.subject.as_deref(),
        from: &a.headers.from,
        date: a
            .headers
            .date
            .as_deref()
            .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.with_timezone(&Utc)),
        size: a.size,
        created_at: a.created_at,
        received_at: a.received_at,
        conversation: conversation_of(a),
        regarding: a.regarding.as_deref(),
        mailboxes: mailboxes_of(a),
        correlation_method: a.correlation,
        automatic: a.headers.automatic,
        server_state: &a.server_state,
    }
}

/// One activity with its parties and correlation.
#[derive(Debug, Serialize)]
pub struct ActivityDetail<'a> {
    #[serde(flatten)]
    pub summary: ActivitySummary<'a>,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub parties: &'a [crate::tracking::parties::Party],
    pub correlation: Correlation<'a>,
    pub reused_message_id: bool,
    /// An outgoing email's per-recipient word from delivery status reports (its outbox
    /// entry's); empty for incoming email and until a report arrives.
    pub deliveries: Vec<crate::outbox::bounce_record::Delivery>,
}

#[derive(Debug, Serialize)]
pub struct Correlation<'a> {
    pub method: Option<crate::tracking::decision::Method>,
    pub conversation: u64,
    pub in_reply_to: &'a [String],
    pub references: &'a [String],
    pub related_activities: Vec<Related>,
}

#[derive(Debug, Serialize)]
pub struct Related {
    pub id: u64,
    pub message_id: String,
}

/// A page of activities.
#[derive(Debug, Serialize)]
pub struct ActivityPage<'a> {
    pub activities: Vec<ActivitySummary<'a>>,
    #[serde(flatten)]
    pub next: Next,
}

fn conversation_of(a: &Activity) -> u64 {
    if a.conversation == 0 {
        a.id
    } else {
        a.conversation
    }
}

fn mailboxes_of(a: &Activity) -> Vec<String> {
    if a.mailboxes.is_empty() {
        vec![a.mailbox.clone()]
    } else {
        a.mailboxes.clone()
    }
}

/// `GET /api/v1/activities?mailbox=&direction=&since=&automatic=&conversation=&regarding=&cursor=&limit=`,
/// newest first. `conversation` is a conversation id (or a Message-ID of one of its emails);
/// it and `regarding` read their indexes. `next` continues with the next page.
pub fn list(ctx: &StatusContext, url: &str) -> Result<Value, ApiError> {
    let mut f = Filter::default();
    let mut index = Index::All;
    let (mut before, mut n) = (None, DEFAULT_LIMIT);
    for (k, v) in query(
        url,
        &[
            "mailbox",
            "direction",
            "since",
            "automatic",
            "conversation",
            "regarding",
            "cursor",
            "limit",
        ],
    )? {
        match k.as_str() {
            "mailbox" => f.mailbox = Some(v.to_ascii_lowercase()),
            "direction" => {
                f.direction = Some(match v.as_str() {
                    "incoming" => Direction::Incoming,
                    "outgoing" => Direction::Outgoing,
                    _ => {
                        return Err(err(
                            400,
                            format!("direction = \"{v}\" is not \"incoming\" or \"outgoing\""),
                        ));
                    }
                })
            }
            "since" => {
                let t = DateTime::parse_from_rfc3339(&v).map_err(|_| {
                    err(
                        400,
                        format!("since = \"{v}\" is not an RFC 3339 time (2025-01-31T08:00:00Z)"),
                    )
                })?;
                f.since = Some(t.with_timezone(&Utc));
            }
            "automatic" => f.automatic = Some(automatic(&v)?),
            "conversation" => {
                let id = match v.parse::<u64>() {
                    Ok(id) => id,
                    // A Message-ID: the conversation of the activity it became.
                    Err(_) => ctx
                        .store
                        .activity_by_message_id(&bare_id(&v))
                        .map_err(|e| err(500, e.to_string()))?
                        .and_then(|id| ctx.store.activity(id).ok().flatten())
                        .map_or(0, |a| conversation_of(&a)),
                };
                index = Index::Conversation(id);
            }
            "regarding" => index = Index::Regarding(v.trim().to_string()),
            "cursor" => before = Some(cursor::decode("activities", &v)?),
            _ => n = limit(&v)?,
        }
    }
    let keep = |a: &Activity| f.keeps(a);
    let page = match &index {
        Index::All => ctx.store.activities_page(before, n, keep),
        Index::Conversation(c) => ctx.store.conversation_page(*c, before, n, keep),
        Index::Regarding(r) => ctx.store.regarding_page(r, before, n, keep),
    }
    .map_err(|e| err(500, e.to_string()))?;
    let next = Next::of(
        url,
        "activities",
        page.len() == n,
        page.last().map(|a| a.id),
    );
    Ok(json!(ActivityPage {
        activities: page.iter().map(summary).collect(),
        next,
    }))
}

/// `automatic=none` or one kind.
fn automatic(v: &str) -> Result<Option<Automatic>, ApiError> {
    if v == "none" {
        return Ok(None);
    }
    Automatic::parse(v).map(Some).ok_or_else(|| {
        let kinds: Vec<&str> = Automatic::ALL.iter().map(|k| k.as_str()).collect();
        err(
            400,
            format!(
                "automatic = \"{v}\" is not \"none\" or one of {}",
                kinds.join(", ")
            ),
        )
    })
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| err(400, format!("\"{id}\" is not an activity id")))
}

fn load(ctx: &StatusContext, id: &str) -> Result<Activity, ApiError> {
    let id = parse_id(id)?;
    ctx.store
        .activity(id)
        .map_err(|e| err(500, e.to_string()))?
        .ok_or_else(|| err(404, format!("no activity {id}")))
}

/// `GET /api/v1/activities/{id}`: its fields, its parties, what it is regarding, and the
/// activities it answers or references (correlation, I6).
pub fn one(ctx: &StatusContext, id: &str) -> Result<Value, ApiError> {
    let a = load(ctx, id)?;
    let mut related: Vec<Related> = Vec::new();
    for mid in a.headers.in_reply_to.iter().chain(&a.headers.references) {
        if let Some(rid) = ctx
            .store
            .activity_by_message_id(mid)
            .map_err(|e| err(500, e.to_string()))?
            && rid != a.id
            && !related.iter().any(|r| r.id == rid)
        {
            related.push(Related {
                id: rid,
                message_id: mid.clone(),
            });
        }
    }
    let deliveries = match a.direction {
        crate::store::Direction::Outgoing => ctx
            .store
            .outbox_entry(a.id)
            .map_err(|e| err(500, e.to_string()))?
            .map(|e| e.deliveries)
            .unwrap_or_default(),
        crate::store::Direction::Incoming => Vec::new(),
    };
    Ok(json!(ActivityDetail {
        summary: summary(&a),
        to: &a.headers.to,
        cc: &a.headers.cc,
        parties: &a.parties,
        correlation: Correlation {
            method: a.correlation,
            conversation: conversation_of(&a),
            in_reply_to: &a.headers.in_reply_to,
            references: &a.headers.references,
            related_activities: related,
        },
        reused_message_id: a.reused_message_id,
        deliveries,
    }))
}

/// `GET /api/v1/activities/{id}/raw`: the original MIME, byte for byte.
pub fn raw(ctx: &StatusContext, id: &str) -> Result<Vec<u8>, ApiError> {
    let id = parse_id(id)?;
    ctx.store
        .activity_raw(id)
        .map_err(|e| err(500, e.to_string()))?
        .ok_or_else(|| err(404, format!("no activity {id}")))
}

/// `GET /api/v1/mailboxes?state=failing&cursor=&limit=`: the mailboxes as `/status` shows them,
/// in config order.
pub fn mailboxes(ctx: &StatusContext, url: &str) -> Result<Value, ApiError> {
    let (mut offset, mut n, mut failing_only) = (0usize, DEFAULT_LIMIT, false);
    for (k, v) in query(url, &["state", "cursor", "limit"])? {
        match k.as_str() {
            "state" if v == "failing" => failing_only = true,
            "state" if v == "all" => failing_only = false,
            "state" => {
                return Err(err(
                    400,
                    format!("state = \"{v}\" is not \"failing\" or \"all\""),
                ));
            }
            "cursor" => offset = cursor::decode("mailboxes", &v)? as usize,
            _ => n = limit(&v)?,
        }
    }
    let config = ctx.config();
    let data = super::status::collect(ctx, &config).map_err(|e| err(500, e))?;
    let chosen: Vec<&super::status::MailboxRow<'_>> = data
        .rows
        .iter()
        .filter(|r| !failing_only || r.failing())
        .collect();
    #[derive(Serialize)]
    struct Mailboxes<'a> {
        total: usize,
        mailboxes: Vec<super::status::MailboxView<'a>>,
        #[serde(flatten)]
        next: Next,
    }
    let end = (offset + n).min(chosen.len());
    let next = Next::of(url, "mailboxes", end < chosen.len(), Some(end as u64));
    Ok(json!(Mailboxes {
        total: chosen.len(),
        mailboxes: chosen
            .iter()
            .skip(offset)
            .take(n)
            .map(|r| r.view())
            .collect(),
        next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_checked() {
        let q = query("/x?mailbox=a%40b.c&limit=5", &["mailbox", "limit"]).expect("ok");
        assert_eq!(q[0], ("mailbox".into(), "a@b.c".into()));
        let e = query("/x?bogus=1", &["mailbox"]).expect_err("unknown");
        assert_eq!(e.status, 400);
        assert!(e.message.contains("\"bogus\""));
        assert!(limit("0").is_err() && limit("1001").is_err() && limit("10").is_ok());
    }

    /// An incoming activity first seen by the first of `mailboxes`.
    fn incoming(mailboxes: &[&str]) -> Activity {
        Activity {
            id: 1,
            direction: Direction::Incoming,
            mailbox: mailboxes[0].into(),
            folder: "INBOX".into(),
            mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
            conversation: 1,
            regarding: None,
            correlation: None,
            parties: Vec::new(),
            key: String::new(),
            fingerprint: 0,
            reused_message_id: false,
            headers: Default::default(),
            size: 1,
            received_at: None,
            created_at: Utc::now(),
            server_state: Vec::new(),
        }
    }

    #[test]
    fn a_mailbox_filter_matches_every_mailbox_that_saw_it() {
        let a = incoming(&["m@x", "n@x"]);
        let by = |m: &str| Filter {
            mailbox: Some(m.into()),
            ..Filter::default()
        };
        assert!(by("m@x").keeps(&a) && by("n@x").keeps(&a));
        assert!(!by("o@x").keeps(&a));
        let out = Filter {
            direction: Some(Direction::Outgoing),
            ..Filter::default()
        };
        assert!(!out.keeps(&a));
    }

    #[test]
    fn the_automatic_filter_tells_kinds_and_a_persons_email_apart() {
        let mut a = incoming(&["m@x"]);
        let by = |v: &str| Filter {
            automatic: Some(automatic(v).expect("a word")),
            ..Filter::default()
        };
        assert!(by("none").keeps(&a) && !by("list").keeps(&a));
        a.headers.automatic = Some(Automatic::List);
        assert!(!by("none").keeps(&a) && by("list").keeps(&a) && !by("bulk").keeps(&a));
        assert!(Filter::default().keeps(&a));
        let e = automatic("noise").expect_err("no kind");
        assert_eq!(e.status, 400);
        assert!(e.message.contains("auto_submitted"), "{}", e.message);
    }
}

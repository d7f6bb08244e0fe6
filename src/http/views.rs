//! The API's and the status endpoints' answers as typed views: what `/status`, the page,
//! `/api/v1/mailboxes`, the alerts and the outbox show is built here once, serialized by serde,
//! with every time in the one format of [`crate::timefmt`] (RFC 3339, UTC, `Z`). The OpenAPI
//! document (`docs/openapi.json`) describes these shapes; a test checks real answers against it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{CredentialSource, Endpoint, TlsMode};
use crate::store::{
    Alert, AlertEmail, AlertLevel, AlertScope, DirectionTest, Enablement, LastError, OutboxEntry,
    RecipientResult, RunStatus, TestRecord,
};

pub fn run_status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::NotRun => "not_run",
        RunStatus::Success => "success",
        RunStatus::Failure => "failure",
    }
}

#[derive(Debug, Serialize)]
pub struct EnablementView<'a> {
    /// `not_tested`, `enabled` or `disabled`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "crate::timefmt::option"
    )]
    pub at: Option<DateTime<Utc>>,
}

impl<'a> EnablementView<'a> {
    pub fn of(e: &'a Enablement) -> EnablementView<'a> {
        match e {
            Enablement::NotTested => EnablementView {
                state: "not_tested",
                code: None,
                reason: None,
                at: None,
            },
            Enablement::Enabled => EnablementView {
                state: "enabled",
                code: None,
                reason: None,
                at: None,
            },
            Enablement::Disabled { code, reason, at } => EnablementView {
                state: "disabled",
                code: Some(code),
                reason: Some(reason),
                at: Some(*at),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DirectionView<'a> {
    pub status: &'static str,
    pub code: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Only in a whole test record (`GET …/test`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<&'a str>,
}

impl<'a> DirectionView<'a> {
    fn of(t: &'a DirectionTest, transcript: bool) -> DirectionView<'a> {
        DirectionView {
            status: run_status(t.status),
            code: t.code.as_deref(),
            reason: t.reason.as_deref(),
            transcript: transcript.then_some(t.transcript.as_str()),
        }
    }
}

/// A Test & Enable record, with or without its transcripts.
#[derive(Debug, Serialize)]
pub struct TestView<'a> {
    pub mailbox: &'a str,
    #[serde(with = "crate::timefmt")]
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub incoming: DirectionView<'a>,
    pub outgoing: DirectionView<'a>,
}

impl<'a> TestView<'a> {
    pub fn of(t: &'a TestRecord, transcripts: bool) -> TestView<'a> {
        TestView {
            mailbox: &t.mailbox,
            started_at: t.started_at,
            duration_ms: t.duration_ms,
            incoming: DirectionView::of(&t.incoming, transcripts),
            outgoing: DirectionView::of(&t.outgoing, transcripts),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LastErrorView<'a> {
    pub text: &'a str,
    pub code: &'a str,
    pub transient: bool,
    pub consecutive: u32,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
}

impl<'a> LastErrorView<'a> {
    pub fn of(e: &'a Option<LastError>) -> Option<LastErrorView<'a>> {
        e.as_ref().map(|e| LastErrorView {
            text: &e.text,
            code: &e.code,
            transient: e.transient,
            consecutive: e.consecutive,
            at: e.at,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct EndpointView<'a> {
    pub server: &'a str,
    pub port: u16,
    pub tls: &'static str,
    pub credentials: &'static str,
}

impl<'a> EndpointView<'a> {
    pub fn of(e: &'a Endpoint) -> EndpointView<'a> {
        EndpointView {
            server: &e.host,
            port: e.port,
            tls: match e.tls {
                TlsMode::Implicit => "implicit",
                TlsMode::StartTls => "starttls",
                TlsMode::None => "none",
            },
            credentials: match e.credentials {
                CredentialSource::Mailbox => "mailbox",
                CredentialSource::Profile { .. } => "profile",
            },
        }
    }
}

/// A sync under way: emails on the server and stored, rate, time left.
#[derive(Debug, Serialize)]
pub struct ProgressView {
    pub first_sync: bool,
    pub on_server: u64,
    pub stored: u64,
    pub rate_per_second: f64,
    pub eta_seconds: Option<u64>,
    #[serde(with = "crate::timefmt")]
    pub started_at: DateTime<Utc>,
}

impl ProgressView {
    pub fn of(p: &crate::metrics::SyncProgress, first_sync: bool) -> ProgressView {
        let now = Utc::now();
        ProgressView {
            first_sync,
            on_server: p.on_server,
            stored: p.done,
            rate_per_second: (p.rate(now) * 10.0).round() / 10.0,
            eta_seconds: p.eta_seconds(now),
            started_at: p.started,
        }
    }
}

/// An alert with its id.
#[derive(Debug, Serialize)]
pub struct AlertView<'a> {
    pub id: u64,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub level: AlertLevel,
    pub scope: AlertScope,
    pub mailbox: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub code: &'a str,
    pub message: &'a str,
    /// The email an Email-scope alert is about (null otherwise).
    pub email: Option<&'a AlertEmail>,
}

impl<'a> AlertView<'a> {
    pub fn of(id: u64, a: &'a Alert) -> AlertView<'a> {
        AlertView {
            id,
            at: a.at,
            level: a.level,
            scope: a.scope,
            mailbox: a.mailbox.as_deref(),
            profile: a.profile.as_deref(),
            code: &a.code,
            message: &a.message,
            email: a.email.as_ref(),
        }
    }
}

/// A queued email.
#[derive(Debug, Serialize)]
pub struct OutboxView<'a> {
    pub id: u64,
    pub mailbox: &'a str,
    /// `pending_send`, `sending`, `sent`, `failed` or `cancelled`.
    pub status: &'static str,
    pub tries: u32,
    #[serde(with = "crate::timefmt")]
    pub queued_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    pub next_attempt_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt::option")]
    pub sent_at: Option<DateTime<Utc>>,
    pub last_reply: Option<&'a str>,
    pub recipients: &'a [String],
    pub recipient_results: &'a [RecipientResult],
    pub sent_copy: Option<&'a str>,
    /// What delivery status reports said, per recipient: `bounced` or `delayed`.
    pub deliveries: &'a [crate::outbox::bounce_record::Delivery],
}

impl<'a> OutboxView<'a> {
    pub fn of(e: &'a OutboxEntry) -> OutboxView<'a> {
        OutboxView {
            id: e.id,
            mailbox: &e.mailbox,
            status: e.status.as_str(),
            tries: e.tries,
            queued_at: e.queued_at,
            next_attempt_at: e.next_attempt_at,
            sent_at: e.sent_at,
            last_reply: e.last_reply.as_deref(),
            recipients: &e.recipients,
            recipient_results: &e.recipient_results,
            sent_copy: e.sent_copy.as_deref(),
            deliveries: &e.deliveries,
        }
    }
}

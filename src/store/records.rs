//! The records kept in the store's tables, serialized as JSON so that fields can be added without
//! rewriting old rows (new fields carry `#[serde(default)]`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::lifecycle::state::{
    ApprovalOverride, DirectionTest, Enablement, LastError, MailboxState, RunStatus, TestRecord,
};
use crate::tracking::decision::Method;
use crate::tracking::message::EmailHeaders;
use crate::tracking::parties::Party;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// One tracked email (I4: one per email, however many tracked mailboxes saw it). Its raw MIME
/// lives in the `activity_raw` table under the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: u64,
    pub direction: Direction,
    /// The mailbox that tracked it first.
    pub mailbox: String,
    pub folder: String,
    /// Every tracked mailbox that saw it, the first one first.
    #[serde(default)]
    pub mailboxes: Vec<String>,
    /// The conversation: the id of its first activity.
    #[serde(default)]
    pub conversation: u64,
    /// The record it is about (`opportunity:7`): from a tracking folder, inherited through
    /// correlation, or set through the API.
    #[serde(default)]
    pub regarding: Option<String>,
    /// How it was linked to its conversation; None when it started it.
    #[serde(default)]
    pub correlation: Option<Method>,
    /// Sender and recipients, resolved to records when it was tracked.
    #[serde(default)]
    pub parties: Vec<Party>,
    /// Its duplicate-check key (`mid:…`, `sha256:…`, or `mid:…#fingerprint` for a reused
    /// Message-ID).
    #[serde(default)]
    pub key: String,
    /// See [`crate::tracking::decision::fingerprint`].
    #[serde(default)]
    pub fingerprint: u64,
    /// Its Message-ID was already tracked for another email.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused_message_id: bool,
    #[serde(flatten)]
    pub headers: EmailHeaders,
    /// Size of the raw MIME in bytes.
    pub size: u64,
    /// The server's INTERNALDATE, when it gave one.
    pub received_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Where each tracking mailbox's copy is on its server, as last seen: present, moved or
    /// deleted, and its flags (`tracking::server_state`). Empty for email the outbox sent, for
    /// POP3 and forwarded email, and for activities stored before sidesync followed changes
    /// until their first change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_state: Vec<crate::tracking::server_state::ServerCopy>,
}

/// A profile's runtime state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileState {
    /// The latest Test & Enable of one of the profile's mailboxes (P14).
    pub last_test: Option<TestRecord>,
    /// When the "more than half of the mailboxes failing" email was last sent (P11).
    pub last_alert_email_at: Option<DateTime<Utc>>,
    /// When the owner was last emailed about one of the profile's mailboxes being disabled (M8).
    #[serde(default)]
    pub last_disable_email_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub connections_opened: u64,
    #[serde(default)]
    pub connection_failures: u64,
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Error,
    Warning,
    Information,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertScope {
    /// One email failed (too large, not stored, moved to Undeliverable, not sent): only that
    /// email is affected; the alert names it in `email`.
    Email,
    Mailbox,
    /// The profile's owner has to fix it; its mailboxes' walls show it too.
    Profile,
}

impl AlertScope {
    pub const ALL: [AlertScope; 3] = [AlertScope::Email, AlertScope::Mailbox, AlertScope::Profile];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertScope::Email => "email",
            AlertScope::Mailbox => "mailbox",
            AlertScope::Profile => "profile",
        }
    }
}

impl AlertLevel {
    pub const ALL: [AlertLevel; 3] = [
        AlertLevel::Error,
        AlertLevel::Warning,
        AlertLevel::Information,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Error => "error",
            AlertLevel::Warning => "warning",
            AlertLevel::Information => "information",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub at: DateTime<Utc>,
    pub level: AlertLevel,
    pub scope: AlertScope,
    pub mailbox: Option<String>,
    pub profile: Option<String>,
    pub code: String,
    pub message: String,
    /// The email an Email-scope alert is about. Absent in alerts stored before alerts named
    /// their email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<AlertEmail>,
}

/// Which email an alert is about: its activity when it became one, else where it is on the
/// server (the sync id: folder, UIDVALIDITY and UID, or the POP3 UIDL), or its outbox id for
/// email being sent; and its subject when known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEmail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uidvalidity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uidl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl AlertEmail {
    /// The email of an item failure: where it is on the server.
    pub fn of_failure(f: &ItemFailure) -> AlertEmail {
        AlertEmail {
            folder: Some(f.folder.clone()),
            uidvalidity: f.uidvalidity,
            uid: f.uid,
            uidl: f.uidl.clone(),
            ..AlertEmail::default()
        }
    }

    /// A queued email: its outbox entry and its outgoing activity share the id.
    pub fn of_outbox(id: u64, subject: Option<String>) -> AlertEmail {
        AlertEmail {
            activity_id: Some(id),
            outbox_id: Some(id),
            subject,
            ..AlertEmail::default()
        }
    }
}

/// An email that could not be stored (too large, or failing to be stored): item-level, it
/// affects only that email. Kept for the appliance's item failure retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// Where it is: the folder (INBOX for POP3) and its UID or UIDL.
    pub folder: String,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
    pub uidl: Option<String>,
    /// Size as the server listed it.
    pub size: u64,
    /// A stable short code (`message_too_large`, ...).
    pub code: String,
    pub error: String,
    pub tries: u32,
    /// True when the sync passed over it: it is not fetched again unless retried.
    pub skipped: bool,
    #[serde(with = "crate::timefmt")]
    pub first_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    pub last_at: DateTime<Utc>,
    /// Where it was moved on the server (`move_undelivered_emails`), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

impl ItemFailure {
    /// The key of its row under the mailbox: folder, UIDVALIDITY and UID, or the UIDL.
    pub fn item_key(&self) -> String {
        match (&self.uidl, self.uidvalidity, self.uid) {
            (Some(uidl), _, _) => ItemFailure::pop3_key(uidl),
            (None, v, u) => {
                ItemFailure::imap_key(&self.folder, v.unwrap_or_default(), u.unwrap_or_default())
            }
        }
    }

    pub fn imap_key(folder: &str, uidvalidity: u32, uid: u32) -> String {
        format!("{folder}:{uidvalidity}:{uid}")
    }

    pub fn pop3_key(uidl: &str) -> String {
        format!("uidl:{uidl}")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxCounts {
    /// Pending Send (one name per status: `pending_send`; `queued` is how version 1 wrote it).
    #[serde(rename = "pending_send", alias = "queued")]
    pub queued: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    #[serde(default)]
    pub cancelled: u64,
    pub last_send_error: Option<String>,
}

impl OutboxCounts {
    fn slot(&mut self, s: OutboxStatus) -> &mut u64 {
        match s {
            OutboxStatus::PendingSend => &mut self.queued,
            OutboxStatus::Sending => &mut self.sending,
            OutboxStatus::Sent => &mut self.sent,
            OutboxStatus::Failed => &mut self.failed,
            OutboxStatus::Cancelled => &mut self.cancelled,
        }
    }

    /// An email moved from `from` (None: newly queued) to `to`.
    pub fn moved(&mut self, from: Option<OutboxStatus>, to: OutboxStatus) {
        if let Some(f) = from {
            let c = self.slot(f);
            *c = c.saturating_sub(1);
        }
        *self.slot(to) += 1;
    }
}

/// Where a queued email is (Dynamics: Pending Send → Sending → Sent / Failed; Cancelled while
/// Pending Send through the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    PendingSend,
    Sending,
    Sent,
    Failed,
    Cancelled,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::PendingSend => "pending_send",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Cancelled => "cancelled",
        }
    }
}

/// What the server said to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientResult {
    pub address: String,
    pub accepted: bool,
    pub reply: String,
}

/// A queued outgoing email. Its MIME is the activity's raw MIME (same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: u64,
    pub mailbox: String,
    pub recipients: Vec<String>,
    pub status: OutboxStatus,
    /// Attempts so far (a delivery attempts counter, as in Dynamics).
    pub tries: u32,
    // Milliseconds, not RFC 3339 text: the entry is read and written with every attempt.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub queued_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub next_attempt_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds_option")]
    pub sent_at: Option<DateTime<Utc>>,
    pub last_reply: Option<String>,
    #[serde(default)]
    pub recipient_results: Vec<RecipientResult>,
    /// The IMAP APPEND of the copy to the Sent folder: None = not asked for.
    pub sent_copy: Option<String>,
    /// What delivery status reports said, per recipient (`outbox::bounce_record`). Absent in
    /// entries stored before bounces were read: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<crate::outbox::bounce_record::Delivery>,
}

/// The email a key queued, and what the request was (the same key with another request is
/// refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub id: u64,
    /// SHA-256 of the request body, hex.
    pub request_hash: String,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
}

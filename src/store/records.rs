//! The records kept in the store's tables, serialized as JSON so that fields can be added without
//! rewriting old rows (new fields carry `#[serde(default)]`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::tracking::message::EmailHeaders;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// One tracked email. Its raw MIME lives in the `activity_raw` table under the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: u64,
    pub direction: Direction,
    pub mailbox: String,
    pub folder: String,
    #[serde(flatten)]
    pub headers: EmailHeaders,
    /// Size of the raw MIME in bytes.
    pub size: u64,
    /// The server's INTERNALDATE, when it gave one.
    pub received_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    NotRun,
    Success,
    Failure,
}

/// The last error of a mailbox or profile, Dynamics-style: text, code, how many times in a row, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub text: String,
    pub code: String,
    pub transient: bool,
    pub consecutive: u32,
    pub at: DateTime<Utc>,
}

/// A mailbox's runtime state: what `/status` shows and the scheduler resumes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxState {
    #[serde(default)]
    pub incoming_status: RunStatus,
    pub processing_last_attempted_on: Option<DateTime<Utc>>,
    pub last_sync_started_on: Option<DateTime<Utc>>,
    pub last_successful_sync_completed_on: Option<DateTime<Utc>>,
    /// Messages committed during the current or last sync.
    #[serde(default)]
    pub items_processed_last_sync: u64,
    #[serde(default)]
    pub items_failed_last_sync: u64,
    #[serde(default)]
    pub activities_stored: u64,
    #[serde(default)]
    pub raw_bytes_stored: u64,
    #[serde(default)]
    pub transient_failure_count: u32,
    pub last_error: Option<LastError>,
    /// Duration of the last completed sync, milliseconds.
    pub last_sync_duration_ms: Option<u64>,
}

/// A profile's runtime state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileState {
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
    Email,
    Mailbox,
    Profile,
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
}

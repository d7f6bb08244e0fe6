//! A mailbox's lifecycle state: what `/status` shows and the scheduler resumes from. The store
//! keeps it (table `mailbox_state`, JSON: new fields carry `#[serde(default)]`); the rules that
//! change it are in [`super::transitions`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// Whether one direction of a mailbox may run. Test & Enable turns it on; a permanent error (or
/// too many transient ones in a row) turns it off until the next successful test or a config change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Enablement {
    #[default]
    NotTested,
    Enabled,
    Disabled {
        code: String,
        reason: String,
        at: DateTime<Utc>,
    },
}

/// The outcome of testing one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionTest {
    pub status: RunStatus,
    pub code: Option<String>,
    pub reason: Option<String>,
    /// A failure that may pass by itself (network, timeout, busy server).
    #[serde(default)]
    pub transient: bool,
    /// What was said on the wire, credentials masked.
    pub transcript: String,
}

/// A Test & Enable run (P14, M4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRecord {
    pub mailbox: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub incoming: DirectionTest,
    pub outgoing: DirectionTest,
}

impl TestRecord {
    pub fn failed(&self) -> bool {
        self.incoming.status == RunStatus::Failure || self.outgoing.status == RunStatus::Failure
    }
}

/// An approval set through the API. It wins while the config still says what it said when the
/// override was made; a changed config value takes over again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalOverride {
    pub approval: String,
    pub config_approval: String,
    pub at: DateTime<Utc>,
}

/// A mailbox's runtime state: what `/status` shows and the scheduler resumes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxState {
    #[serde(default)]
    pub incoming_status: RunStatus,
    #[serde(default)]
    pub outgoing_status: RunStatus,
    #[serde(default)]
    pub incoming_enablement: Enablement,
    #[serde(default)]
    pub outgoing_enablement: Enablement,
    /// The config fingerprint the enablements belong to; another one means "test again".
    pub config_fingerprint: Option<String>,
    pub approval_override: Option<ApprovalOverride>,
    pub last_test: Option<TestRecord>,
    /// Not polled before this time (retry backoff).
    pub postponed_until: Option<DateTime<Utc>>,
    pub processing_last_attempted_on: Option<DateTime<Utc>>,
    pub last_sync_started_on: Option<DateTime<Utc>>,
    pub last_successful_sync_completed_on: Option<DateTime<Utc>>,
    /// Messages committed during the current or last sync.
    #[serde(default)]
    pub items_processed_last_sync: u64,
    /// The "process email received after" date the mailbox took at its first enable (unix
    /// time; None: everything), once `process_from_set`.
    #[serde(default)]
    pub process_from_at_enable: Option<i64>,
    #[serde(default)]
    pub process_from_set: bool,
    /// The date its folders were last synced with completely (`synced`; None: everything).
    #[serde(default)]
    pub synced_from: Option<i64>,
    #[serde(default)]
    pub synced: bool,
    /// Emails by tracking decision since the store was made: `tracked_new`,
    /// `tracked_correlated`, `duplicate`, `undeliverable`, and each skip reason.
    #[serde(default)]
    pub decisions: std::collections::BTreeMap<String, u64>,
    /// Machine-written emails seen (auto-submitted, reports, out-of-office, bulk), whatever their
    /// decision.
    #[serde(default)]
    pub noise_seen: u64,
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
    /// When its stale alert was raised; a successful sync clears it (one alert per episode).
    #[serde(default)]
    pub stale_alerted_at: Option<DateTime<Utc>>,
    /// When an email last became an activity here: IDLE goes to the mailboxes that received
    /// email most recently.
    #[serde(default)]
    pub last_email_at: Option<DateTime<Utc>>,
}

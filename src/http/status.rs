//! What `/status`, the page and `/metrics` show: each profile and mailbox with its configured and
//! runtime state, read once per request from read transactions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::StatusContext;
use super::views::{
    AlertView, EnablementView, EndpointView, LastErrorView, ProgressView, TestView, run_status,
};
use crate::config::Config;
use crate::config::{OwnerType, ServerType};
use std::collections::HashMap;

use crate::lifecycle::eligibility::{Decision, effective_approval, incoming_decision};
use crate::store::{Alert, MailboxState, TestRecord};

/// A test record without its transcripts (the API shows those).
pub fn test_summary(t: &TestRecord) -> Value {
    json!(TestView::of(t, false))
}

/// A whole test record, transcripts included.
pub fn test_full(t: &TestRecord) -> Value {
    json!(TestView::of(t, true))
}

/// One mailbox as the status endpoints see it: typed, so that a page of 100 out of 10,000 is
/// sorted and cut before anything is turned into JSON.
pub struct MailboxRow<'c> {
    pub mailbox: &'c crate::config::Mailbox,
    pub state: MailboxState,
    processing: Result<&'static str, crate::lifecycle::eligibility::NotProcessed>,
    latest_alert: Option<(u64, Alert)>,
    outbox: crate::store::OutboxCounts,
    /// When the scheduler polls it next (only a running engine knows).
    next_poll: Option<chrono::DateTime<Utc>>,
    /// Whether each direction is configured at all (delivery not "none", a server to use).
    incoming_configured: bool,
    outgoing_configured: bool,
    /// Processed, yet no successful sync for `stale_after_polls` polling intervals.
    stale: bool,
    /// The sync under way, if one is.
    progress: Option<crate::metrics::SyncProgress>,
}

impl MailboxRow<'_> {
    /// A direction's last run failed, or a direction is disabled.
    pub fn failing(&self) -> bool {
        crate::lifecycle::failing::failing(&self.state)
    }

    pub fn stale(&self) -> bool {
        self.stale
    }

    /// The first sync under way (the mailbox has never completed one), with its progress.
    pub fn first_sync(&self) -> Option<crate::metrics::SyncProgress> {
        self.progress.filter(|_| !self.state.synced)
    }

    pub fn not_processed(&self) -> bool {
        self.processing.is_err()
    }

    pub fn waiting_for_test(&self) -> bool {
        self.processing == Ok("waiting for Test & Enable")
    }

    pub fn outbox(&self) -> &crate::store::OutboxCounts {
        &self.outbox
    }

    /// When it last failed (the page's order).
    pub fn error_at(&self) -> Option<chrono::DateTime<Utc>> {
        crate::lifecycle::failing::failed_at(&self.state)
    }

    pub fn failing_within_hour(&self, now: chrono::DateTime<Utc>) -> bool {
        crate::lifecycle::failing::failing_within(&self.state, now, chrono::Duration::hours(1))
    }

    /// The row as `/status`, `/api/v1/mailboxes` and the page show it.
    pub fn view(&self) -> MailboxView<'_> {
        let (m, st) = (self.mailbox, &self.state);
        let processing = &self.processing;
        MailboxView {
            email_address: &m.email_address,
            name: m.name.as_deref(),
            owner: match m.owner {
                OwnerType::User => "user",
                OwnerType::Queue => "queue",
            },
            profile: m.profile.as_deref(),
            approval: effective_approval(m.approval, st).as_str(),
            approval_configured: m.approval.as_str(),
            active: m.active,
            enabled: processing == &Ok("enabled"),
            processing: processing.as_ref().map_or("not processed", |s| s),
            not_processed_reason: processing.as_ref().err().map(|r| r.to_string()),
            not_processed_code: processing.as_ref().err().map(|r| r.code()),
            // A direction that is not configured says so, not "not_run".
            incoming_status: if self.incoming_configured {
                run_status(st.incoming_status)
            } else {
                "not_configured"
            },
            outgoing_status: if self.outgoing_configured {
                run_status(st.outgoing_status)
            } else {
                "not_configured"
            },
            outbox: &self.outbox,
            incoming_enablement: EnablementView::of(&st.incoming_enablement),
            outgoing_enablement: EnablementView::of(&st.outgoing_enablement),
            postponed_until: st.postponed_until,
            last_test: st.last_test.as_ref().map(|t| TestView::of(t, false)),
            latest_alert: self
                .latest_alert
                .as_ref()
                .map(|(id, a)| AlertView::of(*id, a)),
            processing_last_attempted_on: st.processing_last_attempted_on,
            last_sync_started_on: st.last_sync_started_on,
            last_successful_sync_completed_on: st.last_successful_sync_completed_on,
            last_sync_duration_ms: st.last_sync_duration_ms,
            items_processed_last_sync: st.items_processed_last_sync,
            items_failed_last_sync: st.items_failed_last_sync,
            activities_stored: st.activities_stored,
            raw_bytes_stored: st.raw_bytes_stored,
            track: m.track.as_str(),
            skip_automatic: m.skip_automatic.kinds().map(|k| k.as_str()).collect(),
            track_sent: m.track_sent,
            decisions: &st.decisions,
            emails_skipped: skipped(&st.decisions),
            noise_seen: st.noise_seen,
            transient_failure_count: st.transient_failure_count,
            last_error: LastErrorView::of(&st.last_error),
            next_poll: self.next_poll,
            stale: self.stale,
            sync_progress: self.progress.map(|p| ProgressView::of(&p, !st.synced)),
            stale_alerted_at: st.stale_alerted_at,
        }
    }

    pub fn json(&self) -> Value {
        json!(self.view())
    }
}

/// One mailbox in `/status`, `/api/v1/mailboxes` and on the page.
#[derive(Debug, Serialize)]
pub struct MailboxView<'a> {
    pub email_address: &'a str,
    pub name: Option<&'a str>,
    pub owner: &'static str,
    pub profile: Option<&'a str>,
    pub approval: &'static str,
    pub approval_configured: &'static str,
    pub active: bool,
    pub enabled: bool,
    pub processing: &'a str,
    pub not_processed_reason: Option<String>,
    pub not_processed_code: Option<&'static str>,
    pub incoming_status: &'static str,
    pub outgoing_status: &'static str,
    pub outbox: &'a crate::store::OutboxCounts,
    pub incoming_enablement: EnablementView<'a>,
    pub outgoing_enablement: EnablementView<'a>,
    #[serde(with = "crate::timefmt::option")]
    pub postponed_until: Option<DateTime<Utc>>,
    pub last_test: Option<TestView<'a>>,
    pub latest_alert: Option<AlertView<'a>>,
    #[serde(with = "crate::timefmt::option")]
    pub processing_last_attempted_on: Option<DateTime<Utc>>,
    #[serde(with = "crate::timefmt::option")]
    pub last_sync_started_on: Option<DateTime<Utc>>,
    #[serde(with = "crate::timefmt::option")]
    pub last_successful_sync_completed_on: Option<DateTime<Utc>>,
    pub last_sync_duration_ms: Option<u64>,
    pub items_processed_last_sync: u64,
    pub items_failed_last_sync: u64,
    pub activities_stored: u64,
    pub raw_bytes_stored: u64,
    pub track: &'static str,
    /// The automatic kinds it skips whatever `track` says.
    pub skip_automatic: Vec<&'static str>,
    /// Its Sent folder is read too (`track_sent`).
    pub track_sent: bool,
    pub decisions: &'a std::collections::BTreeMap<String, u64>,
    pub emails_skipped: u64,
    pub noise_seen: u64,
    pub transient_failure_count: u32,
    pub last_error: Option<LastErrorView<'a>>,
    #[serde(with = "crate::timefmt::option")]
    pub next_poll: Option<DateTime<Utc>>,
    pub stale: bool,
    pub sync_progress: Option<ProgressView>,
    #[serde(with = "crate::timefmt::option")]
    pub stale_alerted_at: Option<DateTime<Utc>>,
}

/// A profile in `/status`.
#[derive(Debug, Serialize)]
pub struct ProfileView<'a> {
    pub name: &'a str,
    pub server_type: &'static str,
    pub active: bool,
    pub is_default: bool,
    pub incoming: EndpointView<'a>,
    pub outgoing: Option<EndpointView<'a>>,
    pub min_polling_interval_seconds: u64,
    pub max_concurrent_connections: u32,
    pub connections_opened: u64,
    pub connection_failures: u64,
    pub last_test: Option<TestView<'a>>,
    #[serde(with = "crate::timefmt::option")]
    pub last_alert_email_at: Option<DateTime<Utc>>,
    pub send_alert_email: bool,
    pub last_error: Option<LastErrorView<'a>>,
}

/// Everything the status endpoints show, read in one pass over the store.
pub struct StatusData<'c> {
    pub rows: Vec<MailboxRow<'c>>,
    pub profiles: Vec<Value>,
    pub activities_stored: u64,
    /// Emails by tracking decision, all mailboxes together.
    pub decisions: std::collections::BTreeMap<String, u64>,
}

/// Emails skipped by the tracking decision (every reason together).
pub fn skipped(decisions: &std::collections::BTreeMap<String, u64>) -> u64 {
    decisions
        .iter()
        .filter(|(k, _)| {
            crate::tracking::decision::SkipReason::ALL
                .iter()
                .any(|r| r.as_str() == k.as_str())
        })
        .map(|(_, n)| n)
        .sum()
}

/// Whether a processed mailbox is stale now (see [`crate::lifecycle::stale`]).
fn stale_now(
    ctx: &StatusContext,
    m: &crate::config::Mailbox,
    state: &MailboxState,
    now: chrono::DateTime<Utc>,
) -> bool {
    let config = ctx.config();
    let Some(p) = config.mailbox_profile(m) else {
        return false;
    };
    crate::lifecycle::stale::is_stale(
        state.last_successful_sync_completed_on,
        ctx.started_at,
        p.min_polling_interval,
        ctx.config().appliance.stale_after_polls,
        now,
    )
}

/// Reads the state of every mailbox of `config` (the caller holds the config it took, so that
/// a reload meanwhile does not mix two).
pub fn collect<'c>(ctx: &StatusContext, config: &'c Config) -> Result<StatusData<'c>, String> {
    let now = Utc::now();
    let states = ctx.store.mailbox_states().map_err(|e| e.to_string())?;
    let profile_states = ctx.store.profile_states().map_err(|e| e.to_string())?;
    let mut outbox_counts = ctx.store.outbox_counts().map_err(|e| e.to_string())?;
    // The newest alert of each mailbox (the table is bounded by the retention).
    let mut latest_alerts: HashMap<String, (u64, Alert)> = HashMap::new();
    for (id, a) in ctx
        .store
        .alerts_page(None, usize::MAX, |a| a.mailbox.is_some())
        .map_err(|e| e.to_string())?
    {
        if let Some(m) = a.mailbox.clone() {
            latest_alerts.entry(m).or_insert((id, a));
        }
    }
    let profiles: Vec<Value> = config
        .profiles
        .iter()
        .map(|p| {
            let st = profile_states.get(&p.name).cloned().unwrap_or_default();
            json!(ProfileView {
                name: &p.name,
                server_type: match p.server_type {
                    ServerType::ImapSmtp => "imap_smtp",
                    ServerType::Pop3Smtp => "pop3_smtp",
                },
                active: p.active,
                is_default: p.is_default,
                incoming: EndpointView::of(&p.incoming),
                outgoing: p.outgoing.as_ref().map(EndpointView::of),
                min_polling_interval_seconds: p.min_polling_interval.as_secs(),
                max_concurrent_connections: p.max_concurrent_connections,
                connections_opened: st.connections_opened,
                connection_failures: st.connection_failures,
                last_test: st.last_test.as_ref().map(|t| TestView::of(t, false)),
                last_alert_email_at: st.last_alert_email_at,
                send_alert_email: p.send_alert_email,
                last_error: LastErrorView::of(&st.last_error),
            })
        })
        .collect();
    let mut total = 0u64;
    let mut decisions = std::collections::BTreeMap::new();
    let rows = config
        .mailboxes
        .iter()
        .map(|m| {
            let state: MailboxState = states.get(&m.email_address).cloned().unwrap_or_default();
            total += state.activities_stored;
            for (k, n) in &state.decisions {
                *decisions.entry(k.clone()).or_default() += n;
            }
            let processing = match incoming_decision(config, m, &state, &m.fingerprint) {
                Decision::NotProcessed(r) => Err(r),
                Decision::Sync(_) => Ok("enabled"),
                Decision::TestFirst(_) => Ok("waiting for Test & Enable"),
            };
            let incoming_configured = m.incoming_delivery != crate::config::IncomingDelivery::None;
            let stale = incoming_configured
                && processing == Ok("enabled")
                && stale_now(ctx, m, &state, now);
            MailboxRow {
                mailbox: m,
                state,
                processing,
                stale,
                progress: ctx.metrics.progress(&m.email_address),
                latest_alert: latest_alerts.remove(&m.email_address),
                outbox: outbox_counts.remove(&m.email_address).unwrap_or_default(),
                next_poll: ctx.metrics.next_poll(&m.email_address),
                incoming_configured,
                outgoing_configured: m.outgoing_delivery
                    == crate::config::OutgoingDelivery::ServerSideSync
                    && config
                        .mailbox_profile(m)
                        .is_some_and(|p| p.outgoing.is_some()),
            }
        })
        .collect();
    Ok(StatusData {
        rows,
        profiles,
        activities_stored: total,
        decisions,
    })
}

/// The appliance part of `/status` and the page.
#[derive(Debug, Serialize)]
pub struct ApplianceView {
    pub version: &'static str,
    #[serde(with = "crate::timefmt")]
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: i64,
    pub store: String,
    /// The store's id, made once with it: the middle of every event's `Webhook-Id`.
    pub store_id: String,
    pub activities_stored: u64,
    pub decisions: std::collections::BTreeMap<String, u64>,
    pub config: String,
    /// The last reload (SIGHUP): applied, or refused with the errors (the running config stays
    /// in force until they are fixed).
    pub last_reload: Option<super::ReloadOutcome>,
    pub data_bytes: u64,
    /// Requests waiting for the store writer plus emails waiting to be sent.
    pub queue_depth: u64,
    /// With `shard`: which shard this is and the mailboxes it leaves to the others.
    pub shard: Option<ShardView>,
    /// The connection budget and what is open now.
    pub connections: crate::metrics::ConnectionFigures,
}

#[derive(Debug, Serialize)]
pub struct ShardView {
    pub index: u32,
    pub count: u32,
    pub mailboxes_owned: usize,
    /// Every mailbox of the config another shard processes, with that shard's index.
    pub skipped: Vec<SkippedMailbox>,
}

#[derive(Debug, Serialize)]
pub struct SkippedMailbox {
    pub email_address: String,
    pub shard: u32,
}

fn shard_view(config: &Config) -> Option<ShardView> {
    let s = config.appliance.shard?;
    Some(ShardView {
        index: s.index,
        count: s.count,
        mailboxes_owned: config.mailboxes.len(),
        skipped: config
            .skipped
            .iter()
            .map(|m| SkippedMailbox {
                email_address: m.email_address.clone(),
                shard: crate::config::shard::owner(&m.email_address, s.count),
            })
            .collect(),
    })
}

pub fn appliance_view(
    ctx: &StatusContext,
    data: &StatusData<'_>,
    queue_depth: u64,
) -> ApplianceView {
    let now = Utc::now();
    ApplianceView {
        version: env!("CARGO_PKG_VERSION"),
        started_at: ctx.started_at,
        uptime_seconds: (now - ctx.started_at).num_seconds(),
        store: ctx.store.path().display().to_string(),
        store_id: ctx.store.store_id().unwrap_or_default(),
        activities_stored: data.activities_stored,
        decisions: data.decisions.clone(),
        config: ctx.config().path.display().to_string(),
        last_reload: ctx.reload.lock().ok().and_then(|r| r.clone()),
        data_bytes: ctx.store.file_size(),
        queue_depth,
        shard: shard_view(&ctx.config()),
        connections: ctx.metrics.connections(),
    }
}

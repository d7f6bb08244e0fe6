//! The engine: one scheduler deciding which mailbox is due, per-mailbox sync jobs as async tasks,
//! connection limits, and the store writer they all feed.

pub mod alert_email;
pub mod alerts;
pub mod caught;
pub mod credentials;
pub mod error;
pub mod idle_watch;
pub mod incoming;
pub mod kept_sessions;
pub mod limits;
pub mod oauth_watch;
pub mod outgoing;
pub mod owner_notice;
pub mod profile_alert;
mod scheduler;
pub mod stale_watch;
pub mod test_enable;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::watch;

use crate::config::Config;
use crate::net::TlsContext;
use crate::store::{Store, StoreWriter};

pub use scheduler::{Command, RunMode, RunReport, run, test_many};

/// The engine's context now; a reload replaces it. Long-lived tasks (the outbox) read it each
/// round; jobs keep the one they started with.
pub type Current = crate::live::Live<JobContext>;

/// What every job shares.
pub struct JobContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub writer: StoreWriter,
    pub limits: limits::ConnectionLimits,
    /// TLS settings per profile, built once; an unusable CA file is that profile's error.
    pub tls: HashMap<String, Result<TlsContext, String>>,
    pub stop: watch::Receiver<bool>,
    /// Unix time of the scheduler's last loop: `/healthz` reports a stalled engine.
    pub heartbeat: Arc<AtomicI64>,
    /// Rung when email is queued, so the outbox task looks at once.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    pub smtp_pool: Arc<outgoing::SmtpPool>,
    /// Runtime counters for `/metrics` and the status page.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// SMTP sessions sending now, across all mailboxes (the writer batches their Sent
    /// statuses when there is more than one).
    pub sending_sessions: std::sync::atomic::AtomicUsize,
    /// `max_bytes_in_flight`, in KiB: raw email being fetched across all mailboxes.
    pub bytes_in_flight: Arc<tokio::sync::Semaphore>,
    /// The mailboxes and correlation steps the tracking decision knows (from the config).
    pub directory: Arc<crate::tracking::decision::Directory>,
    /// OAuth access tokens per identity (profile or mailbox), kept across reloads.
    pub tokens: Arc<crate::oauth::cache::TokenCache>,
    /// IMAP sessions kept open between polls (cheap polls), kept across reloads.
    pub kept_sessions: Arc<kept_sessions::KeptSessions>,
    /// The mailboxes on IDLE: their syncs run on the IDLE connection.
    pub idle_syncs: Arc<idle_watch::IdleSyncs>,
}

impl JobContext {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        writer: StoreWriter,
        stop: watch::Receiver<bool>,
        heartbeat: Arc<AtomicI64>,
    ) -> JobContext {
        let tls = config
            .profiles
            .iter()
            .map(|p| {
                let tls = TlsContext::with_pin(p.ca_file.as_deref(), p.tls_pin_sha256);
                (p.name.clone(), tls)
            })
            .collect();
        let metrics = Arc::new(crate::metrics::Metrics::new(
            config.profiles.iter().map(|p| p.name.as_str()),
        ));
        JobContext {
            limits: limits::ConnectionLimits::new(&config),
            store,
            writer,
            tls,
            stop,
            heartbeat,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            smtp_pool: Arc::default(),
            metrics,
            sending_sessions: std::sync::atomic::AtomicUsize::new(0),
            bytes_in_flight: Arc::new(tokio::sync::Semaphore::new(
                (config.appliance.max_bytes_in_flight / 1024) as usize,
            )),
            directory: Arc::new(config.directory()),
            tokens: Arc::default(),
            kept_sessions: Arc::default(),
            idle_syncs: Arc::default(),
            config,
        }
    }

    /// The context after a reload: the new config's limits, TLS settings and directory; the
    /// store, writer, stop flag, heartbeat, pools and counters are the running ones. Jobs that
    /// started before keep the context they started with.
    pub fn reloaded(&self, config: Arc<Config>) -> JobContext {
        self.metrics
            .add_profiles(config.profiles.iter().map(|p| p.name.as_str()));
        JobContext {
            limits: limits::ConnectionLimits::reloaded(Some(&self.limits), &config),
            store: self.store.clone(),
            writer: self.writer.clone(),
            tls: config
                .profiles
                .iter()
                .map(|p| {
                    let tls = TlsContext::with_pin(p.ca_file.as_deref(), p.tls_pin_sha256);
                    (p.name.clone(), tls)
                })
                .collect(),
            stop: self.stop.clone(),
            heartbeat: self.heartbeat.clone(),
            outbox_wake: self.outbox_wake.clone(),
            smtp_pool: self.smtp_pool.clone(),
            metrics: self.metrics.clone(),
            sending_sessions: std::sync::atomic::AtomicUsize::new(0),
            bytes_in_flight: self.bytes_in_flight.clone(),
            directory: Arc::new(config.directory()),
            tokens: self.tokens.clone(),
            kept_sessions: self.kept_sessions.clone(),
            idle_syncs: self.idle_syncs.clone(),
            config,
        }
    }

    /// Lets `/status` and `/metrics` read this context's connection figures.
    pub fn publish_connections(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.metrics.set_connection_probe(Arc::new(move || {
            let Some(ctx) = weak.upgrade() else {
                return crate::metrics::ConnectionFigures::default();
            };
            let (max, idle_max) = ctx.limits.budget();
            let (open, idle_open) = ctx.limits.in_use();
            crate::metrics::ConnectionFigures {
                max,
                idle_max,
                open,
                idle_open,
                on_idle: ctx.idle_syncs.len(),
                kept: ctx.kept_sessions.len(),
            }
        }));
    }

    /// Room for a batch of `bytes` raw bytes in the appliance's fetch budget; the batch waits
    /// while other mailboxes' batches fill it. A batch larger than the whole budget takes all of
    /// it (it fetches alone).
    pub async fn fetch_budget(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let whole = self.config.appliance.max_bytes_in_flight / 1024;
        let kib = (bytes / 1024).clamp(1, whole.max(1));
        let kib = u32::try_from(kib).unwrap_or(u32::MAX);
        self.bytes_in_flight
            .clone()
            .acquire_many_owned(kib)
            .await
            .ok()
    }

    /// The profile's TLS settings, or the reason they are unusable (a bad CA file).
    pub fn tls_context(
        &self,
        profile: &crate::config::Profile,
    ) -> Result<&TlsContext, error::SyncError> {
        match self.tls.get(&profile.name) {
            Some(Ok(t)) => Ok(t),
            Some(Err(e)) => Err(error::SyncError::Unsupported(e.clone())),
            None => Err(error::SyncError::Unsupported(
                "no TLS settings for the profile".into(),
            )),
        }
    }

    /// A connection slot for this mailbox on `endpoint` (P8, the server's cap, the appliance's
    /// budget). Idle pooled SMTP connections and kept IMAP sessions give theirs up when the slots
    /// run out, so that an open but idle connection never starves a sync.
    pub async fn acquire(
        &self,
        profile: &crate::config::Profile,
        mailbox: &crate::config::Mailbox,
        endpoint: &crate::config::Endpoint,
    ) -> Option<limits::ConnectionPermit> {
        if self.limits.available(profile, mailbox, endpoint) == 0 {
            let key = limits::limit_key(profile, mailbox);
            for idle in self.smtp_pool.reap_key(&key) {
                // Closed before its slot is given back: the limit holds on the wire too.
                idle.session.quit(std::time::Duration::from_secs(5)).await;
                drop(idle.permit);
            }
            if let Some(kept) = self.kept_sessions.reap_key(&key) {
                kept.close().await;
            }
            if self.limits.available(profile, mailbox, endpoint) == 0
                && let Some(kept) = self.kept_sessions.reap_oldest()
            {
                kept.close().await;
            }
        }
        self.limits.acquire(profile, mailbox, endpoint).await
    }

    /// Where a session of `profile` on `endpoint` connects, under the profile's TLS settings
    /// and connection timeout.
    pub fn target<'a>(
        &'a self,
        profile: &'a crate::config::Profile,
        endpoint: &'a crate::config::Endpoint,
        recorder: Option<crate::net::Recorder>,
    ) -> Result<crate::net::Target<'a>, error::SyncError> {
        Ok(crate::net::Target {
            host: &endpoint.host,
            port: endpoint.port,
            tls: endpoint.tls,
            tls_context: self.tls_context(profile)?,
            // The incoming endpoint speaks IMAP or POP3; the outgoing one SMTP.
            alpn: match (
                std::ptr::eq(endpoint, &profile.incoming),
                profile.server_type,
            ) {
                (true, crate::config::ServerType::ImapSmtp) => crate::net::Alpn::Imap,
                (true, crate::config::ServerType::Pop3Smtp) => crate::net::Alpn::Pop3,
                (false, _) => crate::net::Alpn::None,
            },
            auth: endpoint.auth,
            timeout: profile.timeout_mailbox_connection_after,
            recorder,
        })
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn beat(&self) {
        self.heartbeat
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
    }
}

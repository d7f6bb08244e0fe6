//! `sidesync run`: the store, the writer, the engine and the status listener, until a signal.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::engine::{self, JobContext, RunMode, RunReport};
use crate::http::{StatusContext, StatusServer};
use crate::store::Store;

pub fn run(config: Config, mode: RunMode) -> Result<RunReport, String> {
    let started_at = Utc::now();
    let mut config = config;
    let cache = usize::try_from(config.appliance.store_cache_bytes).unwrap_or(usize::MAX);
    let store =
        Store::open_with_cache(&config.appliance.data_dir, cache).map_err(|e| e.to_string())?;
    crate::config::seal::key_fingerprints(&mut config)?;
    let config = Arc::new(config);
    let heartbeat = Arc::new(AtomicI64::new(0));
    let writer = store.start_writer();
    if let Some(path) = &config.appliance.contacts_file {
        // The file seeds the known contacts at every start (its entries win over the same
        // addresses set through the API; addresses only the API knows stay).
        let loaded = crate::tracking::contacts::parse_file(path).and_then(|upsert| {
            let n = upsert.len();
            writer
                .contacts_blocking(crate::store::ContactsUpdate {
                    upsert,
                    ..Default::default()
                })
                .map(|()| n)
                .map_err(|e| e.to_string())
        });
        match loaded {
            Ok(n) => tracing::info!(contacts = n, file = %path.display(), "known contacts loaded"),
            Err(e) => {
                writer.shutdown();
                return Err(e);
            }
        }
    }
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let metrics = Arc::new(crate::metrics::Metrics::new(
        config.profiles.iter().map(|p| p.name.as_str()),
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sidesync")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            writer.shutdown();
            return Err(format!("cannot start the runtime: {e}"));
        }
    };
    let live_config = crate::live::Live::new(config.clone());
    let live_directory = crate::live::Live::new(Arc::new(config.directory()));
    let reload_outcome = Arc::default();
    let reload_commands = commands_tx.clone();
    let idle_commands = commands_tx.clone();
    let http = match mode {
        RunMode::Forever => match StatusServer::start(
            StatusContext {
                live_config: live_config.clone(),
                reload: Arc::clone(&reload_outcome),
                store: store.clone(),
                heartbeat: heartbeat.clone(),
                started_at,
                writer: Some(writer.clone()),
                commands: Some(commands_tx),
                outbox_wake: outbox_wake.clone(),
                metrics: metrics.clone(),
                directory: live_directory.clone(),
                tests_running: Arc::default(),
                send_rate: Arc::default(),
            },
            runtime.handle(),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                writer.shutdown();
                return Err(e);
            }
        },
        RunMode::Once => None,
    };
    tracing::info!(
        config = %config.path.display(),
        store = %store.path().display(),
        status_listen = %config.appliance.status_listen,
        profiles = config.profiles.len(),
        mailboxes = config.mailboxes.len(),
        "sidesync starting"
    );
    store.feed().set_retention(config.appliance.event_retention);
    let report = runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut ctx = JobContext::new(
            config.clone(),
            store.clone(),
            writer.clone(),
            stop_rx.clone(),
            heartbeat,
        );
        ctx.outbox_wake = outbox_wake.clone();
        ctx.metrics = metrics;
        let ctx = Arc::new(ctx);
        ctx.publish_connections();
        // A sealed password that does not open stops only what it belongs to: say so on its
        // alert wall. A profile's is one Profile-scope alert (its mailboxes' walls show it), a
        // mailbox's its own.
        for p in ctx.config.profiles.iter() {
            if let Some(why) = &p.secret_error {
                crate::engine::alerts::raise(
                    &ctx,
                    crate::store::AlertLevel::Error,
                    crate::store::AlertScope::Profile,
                    None,
                    Some(&p.name),
                    "secret_unreadable",
                    format!(
                        "The mailboxes of profile \"{}\" are not processed: {why}. Seal its \
                         password again (sidesync secret encrypt) or restore the key file.",
                        p.name
                    ),
                )
                .await;
            }
        }
        for m in ctx.config.mailboxes.iter() {
            if let Some(why) = &m.secret_error {
                crate::engine::alerts::raise(
                    &ctx,
                    crate::store::AlertLevel::Error,
                    crate::store::AlertScope::Mailbox,
                    Some(&m.email_address),
                    m.profile.as_deref(),
                    "secret_unreadable",
                    format!(
                        "The mailbox {} is not processed: {why}. Seal its password again \
                         (sidesync secret encrypt) or restore the key file.",
                        m.email_address
                    ),
                )
                .await;
            }
        }
        let current = engine::Current::new(ctx.clone());
        let outbox = (mode == RunMode::Forever)
            .then(|| tokio::spawn(engine::outgoing::run(current.clone(), outbox_wake)));
        if mode == RunMode::Forever {
            // The store is open and the listener bound: systemd may call the service started.
            crate::notify::notify(&format!("READY=1\nSTATUS={}", status_line(&ctx)));
            tokio::spawn(tell_systemd(current.clone()));
            tokio::spawn(engine::stale_watch::run(current.clone(), started_at));
            tokio::spawn(engine::oauth_watch::run(current.clone()));
            tokio::spawn(engine::idle_watch::run(current.clone(), idle_commands));
            tokio::spawn(engine::kept_sessions::sweep(current.clone()));
            tokio::spawn(crate::webhook::run(
                store.clone(),
                writer.clone(),
                config.webhooks.clone(),
                stop_rx.clone(),
            ));
        }
        let engine = tokio::spawn(engine::run(ctx, mode, commands_rx));
        let reloadable = crate::reload::Reloadable {
            path: config.path.clone(),
            engine: current,
            config: live_config,
            directory: live_directory,
            outcome: reload_outcome,
            commands: reload_commands,
        };
        tokio::spawn(async move {
            wait_for_signal(mode, &reloadable).await;
            tracing::info!("stop requested; finishing the current batches");
            let _ = stop_tx.send(true);
        });
        let report = match engine.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "the engine stopped unexpectedly");
                RunReport::default()
            }
        };
        if let Some(outbox) = outbox {
            let _ = outbox.await;
        }
        report
    });
    crate::notify::notify("STOPPING=1");
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // The HTTP threads hold writer clones: stop them first, then the writer commits what is
    // queued and its thread ends.
    if let Some(http) = http {
        http.stop();
    }
    writer.shutdown();
    tracing::info!(
        syncs = report.syncs,
        failures = report.failures,
        created = report.created,
        "sidesync stopped"
    );
    Ok(report)
}

/// Waits for SIGTERM or SIGINT; each SIGHUP meanwhile reloads the config (`--once` ignores it).
async fn wait_for_signal(mode: RunMode, reloadable: &crate::reload::Reloadable) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        // Without signal handlers the process still stops on SIGTERM, only less gracefully.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                if mode == RunMode::Forever {
                    tracing::info!("SIGHUP: reloading the config");
                    crate::reload::reload(reloadable).await;
                }
            }
        }
    }
}

/// Which mailboxes `sidesync test` means: the named ones, those of `--profile`, or all.
fn test_selection(
    config: &Config,
    addresses: &[String],
    profile: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if let Some(p) = profile {
        if config.profile(p).is_none() {
            return Err(format!(
                "no profile named \"{p}\" in {}",
                config.path.display()
            ));
        }
        out.extend(
            config
                .mailboxes
                .iter()
                .filter(|m| m.profile.as_deref() == Some(p))
                .map(|m| m.email_address.clone()),
        );
    }
    for a in addresses {
        let a = a.to_ascii_lowercase();
        if !config.mailboxes.iter().any(|m| m.email_address == a) {
            return Err(format!("no mailbox {a} in {}", config.path.display()));
        }
        out.push(a);
    }
    if out.is_empty() && addresses.is_empty() && profile.is_none() {
        out.extend(config.mailboxes.iter().map(|m| m.email_address.clone()));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One line for `systemctl status`.
fn status_line(ctx: &JobContext) -> String {
    let activities = ctx.store.activity_count().unwrap_or(0);
    format!(
        "{} mailboxes, {activities} activities, store writer queue {}",
        ctx.config.mailboxes.len(),
        ctx.writer.queue_depth()
    )
}

/// Keeps systemd told: WATCHDOG=1 while the scheduler's heartbeat is fresh and the HTTP side
/// answers its self-probe (either one stalled stops it, and systemd restarts the service; see
/// `watchdog.rs`), and STATUS= every half minute (saying why when the watchdog is not told).
async fn tell_systemd(current: engine::Current) {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let watchdog = crate::notify::watchdog_interval();
    let every = watchdog
        .unwrap_or(Duration::from_secs(30))
        .min(Duration::from_secs(30));
    // Only under the watchdog is the HTTP side probed: nothing else acts on the result.
    let probe = match watchdog.map(|_| crate::watchdog::Probe::new(&current.get().config.appliance))
    {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            tracing::error!(error = %e, "the watchdog cannot probe the HTTP side; it follows the engine alone");
            None
        }
        None => None,
    };
    // A probe may take half the interval, so a ping is never later than 1.5 intervals; two
    // intervals (systemd's WatchdogSec) without an answer stop the pings.
    let (probe_limit, http_stale) = (every / 2, every * 2);
    let mut http_ok = Instant::now();
    let mut was_withheld = false;
    loop {
        tokio::time::sleep(every).await;
        let ctx = current.get();
        if ctx.stopping() {
            return;
        }
        if let Some(probe) = &probe {
            match probe.healthz(probe_limit).await {
                Ok(()) => http_ok = Instant::now(),
                Err(e) => tracing::debug!(error = %e, "the HTTP self-probe failed"),
            }
        }
        let engine_age = Utc::now().timestamp() - ctx.heartbeat.load(Ordering::Relaxed);
        let http_age = if probe.is_some() {
            http_ok.elapsed()
        } else {
            Duration::ZERO
        };
        let why = crate::watchdog::withheld(engine_age, http_age, http_stale);
        let mut status = status_line(&ctx);
        match (&why, watchdog) {
            (None, Some(_)) => crate::notify::notify("WATCHDOG=1"),
            (Some(why), Some(_)) => {
                if !was_withheld {
                    tracing::error!(reason = %why, "not telling systemd's watchdog that all is well; it will restart the service");
                }
                status.push_str(&format!("; watchdog withheld: {why}"));
            }
            (_, None) => {}
        }
        was_withheld = why.is_some() && watchdog.is_some();
        crate::notify::notify(&format!("STATUS={status}"));
    }
}

/// `sidesync test`: Test & Enable, here if the store is free, else through the running appliance.
pub fn test(
    config: Config,
    addresses: &[String],
    profile: Option<&str>,
) -> Result<Vec<crate::operate::TestRow>, String> {
    let selected = test_selection(&config, addresses, profile)?;
    let store = match Store::open(&config.appliance.data_dir) {
        Ok(s) => s,
        Err(crate::store::StoreError::Open {
            source: redb::DatabaseError::DatabaseAlreadyOpen,
            ..
        }) => {
            return crate::operate::test(
                &crate::http::control_socket_path(&config.appliance.data_dir),
                &selected,
            );
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut config = config;
    crate::config::seal::key_fingerprints(&mut config)?;
    let config = Arc::new(config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let writer = store.start_writer();
    let records = runtime.block_on(async {
        let (_stop_tx, stop_rx) = watch::channel(false);
        let ctx = Arc::new(JobContext::new(
            config.clone(),
            store.clone(),
            writer.clone(),
            stop_rx,
            Arc::new(AtomicI64::new(0)),
        ));
        let records = engine::test_many(&ctx, &selected).await;
        let _ = writer.flush().await;
        records
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    writer.shutdown();
    Ok(records
        .iter()
        .map(|r| crate::operate::TestRow::from_json(&crate::http::test_summary(r)))
        .collect())
}

//! `sidesync run`: the store, the writer, the engine and the status listener, until a signal.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use chrono::Utc;
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::{self, JobContext, RunMode, RunReport};
use crate::http::{StatusContext, StatusServer};
use crate::store::Store;

pub fn run(config: Config, mode: RunMode) -> Result<RunReport, String> {
    let config = Arc::new(config);
    let store = Store::open(&config.appliance.data_dir).map_err(|e| e.to_string())?;
    let heartbeat = Arc::new(AtomicI64::new(0));
    let http = match mode {
        RunMode::Forever => Some(StatusServer::start(StatusContext {
            config: config.clone(),
            store: store.clone(),
            heartbeat: heartbeat.clone(),
            started_at: Utc::now(),
        })?),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sidesync")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let writer = store.start_writer();
    let report = runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = Arc::new(JobContext::new(
            config.clone(),
            store.clone(),
            writer.clone(),
            stop_rx,
            heartbeat,
        ));
        let engine = tokio::spawn(engine::run(ctx, mode));
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stop requested; finishing the current batches");
            let _ = stop_tx.send(true);
        });
        match engine.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "the engine stopped unexpectedly");
                RunReport::default()
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // Every clone of the writer is gone with the jobs: this commits what is queued and joins.
    writer.shutdown();
    if let Some(http) = http {
        http.stop();
    }
    tracing::info!(
        syncs = report.syncs,
        failures = report.failures,
        created = report.created,
        "sidesync stopped"
    );
    Ok(report)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on SIGTERM, only less gracefully.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

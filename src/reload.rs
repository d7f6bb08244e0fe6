//! Reloading the config of a running appliance (SIGHUP, `systemctl reload`): the file is read
//! and checked again; a config with errors is refused (each error logged, the running config
//! kept, `/status` says so); a good one replaces the running one, and only the mailboxes it
//! changes restart (see [`crate::config::diff`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::config::diff::diff;
use crate::engine::{Command, Current, JobContext};
use crate::http::ReloadOutcome;
use crate::live::Live;
use crate::tracking::decision::Directory;

/// What a reload replaces.
#[derive(Clone)]
pub struct Reloadable {
    pub path: std::path::PathBuf,
    pub engine: Current,
    pub config: Live<Config>,
    pub directory: Live<Directory>,
    pub outcome: Arc<Mutex<Option<ReloadOutcome>>>,
    pub commands: mpsc::Sender<Command>,
}

fn refused(errors: Vec<String>) -> ReloadOutcome {
    ReloadOutcome {
        at: crate::timefmt::format(&Utc::now()),
        result: "refused",
        errors,
        added: 0,
        removed: 0,
        changed: 0,
        unchanged: 0,
        at_restart: Vec::new(),
    }
}

/// Reads `path` into a config the running appliance can take, or every reason it cannot.
fn load(
    path: &Path,
    running: &Config,
) -> Result<(Config, crate::config::diff::ConfigDiff), Vec<String>> {
    let mut config = Config::load(path).map_err(|errors| {
        errors
            .to_string()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    })?;
    crate::config::seal::key_fingerprints(&mut config).map_err(|e| vec![e])?;
    let d = diff(running, &config).map_err(|e| vec![e.to_string()])?;
    Ok((config, d))
}

/// One reload: applied, or refused with its errors; either way `/status` shows the outcome.
pub async fn reload(r: &Reloadable) {
    crate::notify::notify("RELOADING=1");
    let running = r.engine.get();
    let outcome = match load(&r.path, &running.config) {
        Err(errors) => {
            for e in &errors {
                tracing::error!(config = %r.path.display(), "reload refused: {e}");
            }
            tracing::error!(
                errors = errors.len(),
                "the config has errors; the running config stays in force"
            );
            refused(errors)
        }
        Ok((config, d)) => {
            // Tokens fetched under settings that changed are not used again.
            for address in d.changed.iter().chain(&d.removed) {
                running.tokens.forget(&format!("mailbox:{address}"));
            }
            for p in &running.config.profiles {
                let now = config.profile(&p.name).map(|n| format!("{n:?}"));
                if now.as_deref() != Some(format!("{p:?}").as_str()) {
                    running.tokens.forget(&format!("profile:{}", p.name));
                }
            }
            let config = Arc::new(config);
            let next: Arc<JobContext> = Arc::new(running.reloaded(config.clone()));
            next.publish_connections();
            r.engine.set(next.clone());
            r.config.set(config.clone());
            r.directory.set(next.directory.clone());
            let outcome = ReloadOutcome {
                at: crate::timefmt::format(&Utc::now()),
                result: "applied",
                errors: Vec::new(),
                added: d.added.len(),
                removed: d.removed.len(),
                changed: d.changed.len(),
                unchanged: d.unchanged,
                at_restart: d.at_restart.clone(),
            };
            for setting in &d.at_restart {
                tracing::warn!(
                    setting,
                    "changed in the config; takes effect at the next restart"
                );
            }
            tracing::info!(
                added = d.added.len(),
                removed = d.removed.len(),
                changed = d.changed.len(),
                unchanged = d.unchanged,
                "config reloaded"
            );
            if r.commands
                .send(Command::Reload { ctx: next, diff: d })
                .await
                .is_err()
            {
                tracing::warn!("the scheduler has stopped; the reload applies to nothing");
            }
            r.outbox_wake();
            outcome
        }
    };
    if let Ok(mut o) = r.outcome.lock() {
        *o = Some(outcome);
    }
    crate::notify::notify("READY=1");
}

impl Reloadable {
    /// The outbox looks again under the new config (a mailbox may send now).
    fn outbox_wake(&self) {
        self.engine.get().outbox_wake.notify_one();
    }
}

//! Cheap polls: with `keep_sessions_open`, a mailbox's authenticated IMAP session is kept open
//! after its sync while the idle budget allows, and its next poll runs on it: no TCP and TLS
//! handshake, no login. The session a passed Test & Enable opened is kept the same way (for two
//! minutes, whatever the setting) for the first sync that follows at once. A kept session holds its connection slots and an idle slot;
//! it gives them up when a sync elsewhere finds no free slot, when it has been kept longer than
//! servers keep an idle session (their autologout is at least 30 minutes), and when its mailbox's
//! settings change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::limits::ConnectionPermit;
use crate::imap::ImapSession;

/// Sessions kept between polls (`keep_sessions_open`) unused this long are closed (servers log
/// out idle sessions after 30 minutes).
pub const KEEP_AT_MOST: Duration = Duration::from_secs(25 * 60);
/// A session Test & Enable opened waits this long for the first sync (woken right after).
pub const HANDOFF: Duration = Duration::from_secs(120);

pub struct Kept {
    pub session: ImapSession,
    pub permit: ConnectionPermit,
    /// The P8 key its slot counts against.
    pub key: String,
    /// The mailbox's config fingerprint when the session logged in.
    pub fingerprint: String,
    pub since: Instant,
    /// Closed if not used by then.
    pub until: Instant,
}

impl Kept {
    /// Logs out, best effort, then frees the slots.
    pub async fn close(self) {
        self.session.logout().await;
        drop(self.permit);
    }
}

#[derive(Default)]
pub struct KeptSessions {
    kept: Mutex<HashMap<String, Kept>>,
}

impl KeptSessions {
    /// The mailbox's kept session, if it logged in under the same settings.
    pub fn take(&self, address: &str, fingerprint: &str) -> (Option<Kept>, Option<Kept>) {
        let Some(k) = self.kept.lock().ok().and_then(|mut m| m.remove(address)) else {
            return (None, None);
        };
        if k.fingerprint == fingerprint {
            (Some(k), None)
        } else {
            (None, Some(k))
        }
    }

    /// Keeps a session; returns the one it replaces (to close).
    pub fn keep(&self, address: &str, kept: Kept) -> Option<Kept> {
        self.kept.lock().ok()?.insert(address.to_string(), kept)
    }

    /// The session kept longest, to free its slots for a connection that needs them.
    pub fn reap_oldest(&self) -> Option<Kept> {
        let mut m = self.kept.lock().ok()?;
        let oldest = m.iter().min_by_key(|(_, k)| k.since)?.0.clone();
        m.remove(&oldest)
    }

    /// A kept session holding a slot of `key`.
    pub fn reap_key(&self, key: &str) -> Option<Kept> {
        let mut m = self.kept.lock().ok()?;
        let found = m.iter().find(|(_, k)| k.key == key)?.0.clone();
        m.remove(&found)
    }

    /// A mailbox's kept session (it changed or is gone).
    pub fn forget(&self, address: &str) -> Option<Kept> {
        self.kept.lock().ok()?.remove(address)
    }

    /// Sessions past their time, or all of them when stopping.
    pub fn expired(&self, all: bool) -> Vec<Kept> {
        let Ok(mut m) = self.kept.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let old: Vec<String> = m
            .iter()
            .filter(|(_, k)| all || now >= k.until)
            .map(|(a, _)| a.clone())
            .collect();
        old.iter().filter_map(|a| m.remove(a)).collect()
    }

    pub fn len(&self) -> usize {
        self.kept.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Closes expired kept sessions every 30 s, and all of them when the appliance stops.
pub async fn sweep(current: super::Current) {
    let mut stop = current.get().stop.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = stop.changed() => {}
        }
        let stopping = *stop.borrow();
        let ctx = current.get();
        for k in ctx.kept_sessions.expired(stopping) {
            k.close().await;
        }
        if stopping {
            return;
        }
    }
}

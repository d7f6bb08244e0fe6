//! P8: at most `max_concurrent_connections` connections, counted per mailbox when credentials come
//! from the mailbox and per profile when they come from the profile.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Config, CredentialSource, Mailbox, Profile};

pub struct ConnectionLimits {
    semaphores: HashMap<String, Arc<Semaphore>>,
}

/// The key a connection counts against.
pub fn limit_key(profile: &Profile, mailbox: &Mailbox) -> String {
    match profile.incoming.credentials {
        CredentialSource::Profile { .. } => format!("profile:{}", profile.name),
        CredentialSource::Mailbox => format!("mailbox:{}", mailbox.email_address),
    }
}

impl ConnectionLimits {
    pub fn new(config: &Config) -> ConnectionLimits {
        let mut semaphores = HashMap::new();
        for m in &config.mailboxes {
            if let Some(p) = config.mailbox_profile(m) {
                semaphores.entry(limit_key(p, m)).or_insert_with(|| {
                    Arc::new(Semaphore::new(p.max_concurrent_connections as usize))
                });
            }
        }
        ConnectionLimits { semaphores }
    }

    /// Waits for a free connection slot. The slot is freed when the permit drops.
    pub async fn acquire(
        &self,
        profile: &Profile,
        mailbox: &Mailbox,
    ) -> Option<OwnedSemaphorePermit> {
        let sem = self.semaphores.get(&limit_key(profile, mailbox))?.clone();
        sem.acquire_owned().await.ok()
    }
}

//! P8: at most `max_concurrent_connections` connections, counted per mailbox when credentials come
//! from the mailbox and per profile when they come from the profile.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Config, CredentialSource, Mailbox, Profile};

pub struct ConnectionLimits {
    semaphores: HashMap<String, Arc<Semaphore>>,
    /// Each key's limit (a reload keeps a semaphore whose limit did not change).
    max: HashMap<String, usize>,
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
        ConnectionLimits::reloaded(None, config)
    }

    /// The limits of `config`; a key whose limit is what it was in `previous` keeps its semaphore,
    /// so connections that jobs from before a reload still hold keep counting.
    pub fn reloaded(previous: Option<&ConnectionLimits>, config: &Config) -> ConnectionLimits {
        let mut semaphores = HashMap::new();
        let mut max = HashMap::new();
        for m in &config.mailboxes {
            if let Some(p) = config.mailbox_profile(m) {
                let key = limit_key(p, m);
                let n = p.max_concurrent_connections as usize;
                let kept = previous
                    .filter(|prev| prev.max.get(&key) == Some(&n))
                    .and_then(|prev| prev.semaphores.get(&key).cloned());
                semaphores
                    .entry(key.clone())
                    .or_insert_with(|| kept.unwrap_or_else(|| Arc::new(Semaphore::new(n))));
                max.entry(key).or_insert(n);
            }
        }
        ConnectionLimits { semaphores, max }
    }

    /// Free slots for this mailbox's connections now.
    pub fn available(&self, profile: &Profile, mailbox: &Mailbox) -> usize {
        self.semaphores
            .get(&limit_key(profile, mailbox))
            .map_or(usize::MAX, |s| s.available_permits())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn config(retrieval: &str) -> Config {
        let text = format!(
            "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"h\"\n\
             max_concurrent_connections = 2\n{retrieval}\n\
             [[mailbox]]\nemail_address = \"a@x\"\npassword = \"pw\"\n\
             [[mailbox]]\nemail_address = \"b@x\"\npassword = \"pw\"\n"
        );
        Config::parse_allowing_plaintext(Path::new("t.toml"), &text).expect("valid")
    }

    async fn blocked(limits: &ConnectionLimits, c: &Config, m: usize) -> bool {
        let p = c.mailbox_profile(&c.mailboxes[m]).expect("profile");
        tokio::time::timeout(
            Duration::from_millis(50),
            limits.acquire(p, &c.mailboxes[m]),
        )
        .await
        .is_err()
    }

    #[tokio::test]
    async fn mailbox_credentials_count_per_mailbox() {
        let c = config("");
        let limits = ConnectionLimits::new(&c);
        let p = c.mailbox_profile(&c.mailboxes[0]).expect("profile");
        let _a1 = limits.acquire(p, &c.mailboxes[0]).await;
        let _a2 = limits.acquire(p, &c.mailboxes[0]).await;
        assert!(
            blocked(&limits, &c, 0).await,
            "a third connection for a@x must wait"
        );
        assert!(!blocked(&limits, &c, 1).await, "b@x has its own two");
    }

    #[tokio::test]
    async fn profile_credentials_count_per_profile() {
        let c = config(
            "incoming_credential_retrieval = \"profile\"\nincoming_username = \"m\"\nincoming_password = \"pw\"",
        );
        let limits = ConnectionLimits::new(&c);
        let p = c.mailbox_profile(&c.mailboxes[0]).expect("profile");
        let _a = limits.acquire(p, &c.mailboxes[0]).await;
        let _b = limits.acquire(p, &c.mailboxes[1]).await;
        assert!(blocked(&limits, &c, 0).await);
        assert!(
            blocked(&limits, &c, 1).await,
            "the profile's two slots are shared"
        );
    }
}

//! Access tokens kept in memory until shortly before they expire, one fetch per identity at a
//! time: when a hundred mailboxes acting through one app identity need a token at the same
//! moment, one asks the endpoint and the others wait for its answer. An identity is a profile
//! (client credentials) or a mailbox (its refresh token); their number is the config's, so the
//! cache is bounded by it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::secret::Secret;

/// A token is renewed this long before it expires (or at half its life if that is shorter), so
/// that a sync never starts with one about to lapse.
const MARGIN: Duration = Duration::from_secs(300);
/// A token is renewed at least this often, whatever lifetime the endpoint states: `expires_in`
/// is the server's number (u64::MAX seconds has been seen), and past the clock's range adding it
/// to now would panic.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

struct Cached {
    token: Secret,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<String, Slot>>,
}

/// Whether the token came from the cache or was just fetched (for the transcript).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cached,
    Fetched,
}

impl TokenCache {
    fn slot(&self, identity: &str) -> Slot {
        match self.slots.lock() {
            Ok(mut m) => m.entry(identity.to_string()).or_default().clone(),
            Err(poisoned) => poisoned
                .into_inner()
                .entry(identity.to_string())
                .or_default()
                .clone(),
        }
    }

    /// The identity's access token: the cached one while fresh, else what `fetch` returns (the
    /// token and how long it lives), fetched by one caller while the others wait for it.
    pub async fn get<F, Fut, E>(&self, identity: &str, fetch: F) -> Result<(Secret, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), E>>,
    {
        let slot = self.slot(identity);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok((c.token.clone(), Source::Cached));
        }
        let (token, lifetime) = fetch().await?;
        let lifetime = lifetime.min(MAX_LIFETIME);
        let early = MARGIN.min(lifetime / 2);
        let now = Instant::now();
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: now.checked_add(lifetime - early).unwrap_or(now),
        });
        Ok((token, Source::Fetched))
    }

    /// A server refused `token` as invalid (expired early, revoked): the next `get` fetches a
    /// new one — unless another caller already replaced it.
    pub async fn invalidate(&self, identity: &str, token: &Secret) {
        let slot = self.slot(identity);
        let mut cached = slot.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.expose() == token.expose())
        {
            *cached = None;
        }
    }

    /// Forgets an identity whose settings changed (a reload).
    pub fn forget(&self, identity: &str) {
        if let Ok(mut m) = self.slots.lock() {
            m.remove(identity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn fetch_counted(
        n: &AtomicUsize,
        lifetime: Duration,
    ) -> Result<(Secret, Duration), String> {
        let i = n.fetch_add(1, Ordering::SeqCst);
        // The endpoint takes a moment: every other caller arrives meanwhile.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok((Secret::new(format!("token-{i}")), lifetime))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_callers_one_fetch() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            set.spawn(async move {
                cache
                    .get("profile:m365", || {
                        fetch_counted(&fetches, Duration::from_secs(3600))
                    })
                    .await
                    .map(|(t, _)| t.expose().to_string())
            });
        }
        let tokens: Vec<String> = set
            .join_all()
            .await
            .into_iter()
            .map(|r| r.expect("token"))
            .collect();
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "one fetch for all");
        assert!(tokens.iter().all(|t| t == "token-0"));
    }

    #[tokio::test(start_paused = true)]
    async fn renewed_before_expiry_and_after_an_invalid_token() {
        let cache = TokenCache::default();
        let n = AtomicUsize::new(0);
        let life = Duration::from_secs(3600);
        let (t0, s) = cache.get("m", || fetch_counted(&n, life)).await.expect("t");
        assert_eq!(s, Source::Fetched);
        let (_, s) = cache.get("m", || fetch_counted(&n, life)).await.expect("t");
        assert_eq!(s, Source::Cached);
        // Five minutes before expiry it is renewed.
        tokio::time::advance(Duration::from_secs(3600 - 299)).await;
        let (t1, s) = cache.get("m", || fetch_counted(&n, life)).await.expect("t");
        assert_eq!(s, Source::Fetched);
        assert_ne!(t0.expose(), t1.expose());
        // An invalidated old token does not throw away the new one.
        cache.invalidate("m", &t0).await;
        let (_, s) = cache.get("m", || fetch_counted(&n, life)).await.expect("t");
        assert_eq!(s, Source::Cached);
        cache.invalidate("m", &t1).await;
        let (_, s) = cache.get("m", || fetch_counted(&n, life)).await.expect("t");
        assert_eq!(s, Source::Fetched);
        // A short-lived token is renewed at half its life.
        let (_, _) = cache
            .get("short", || fetch_counted(&n, Duration::from_secs(60)))
            .await
            .expect("t");
        tokio::time::advance(Duration::from_secs(31)).await;
        let (_, s) = cache
            .get("short", || fetch_counted(&n, Duration::from_secs(60)))
            .await
            .expect("t");
        assert_eq!(s, Source::Fetched);
        // A failed fetch leaves nothing cached and says why.
        let e = cache
            .get("bad", || async { Err::<(Secret, Duration), _>("refused") })
            .await
            .expect_err("error");
        assert_eq!(e, "refused");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lifetime_of_u64_max_seconds_is_kept_a_day() {
        let cache = TokenCache::default();
        let n = AtomicUsize::new(0);
        let forever = Duration::from_secs(u64::MAX);
        let (_, s) = cache
            .get("m", || fetch_counted(&n, forever))
            .await
            .expect("t");
        assert_eq!(s, Source::Fetched);
        let (_, s) = cache
            .get("m", || fetch_counted(&n, forever))
            .await
            .expect("t");
        assert_eq!(s, Source::Cached);
        tokio::time::advance(MAX_LIFETIME).await;
        let (_, s) = cache
            .get("m", || fetch_counted(&n, forever))
            .await
            .expect("t");
        assert_eq!(s, Source::Fetched, "renewed within a day");
    }
}

//! Connection budgets. Every open connection counts against three limits at once:
//! 1. P8, its mailbox's or profile's `max_concurrent_connections` (per mailbox when credentials
//!    come from the mailbox, per profile when they come from the profile);
//! 2. its server's `max_connections_per_server` (providers throttle per server: Gmail allows 15
//!    connections per account, Exchange Online 20);
//! 3. the appliance's `max_connections` (sized from the file limit and memory by default).
//!
//! Connections held open while nothing moves (IDLE, a session kept between polls) also take a
//! slot of `max_idle_connections`, and never the last free slot of their mailbox key nor more than
//! half of their server's cap: a sync, a test or a Sent copy always finds room.
//!
//! A server that refuses or throttles connections is held back for all its mailboxes at once,
//! with jittered backoff that doubles per failed round, instead of every mailbox retrying alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{Config, CredentialSource, Endpoint, Mailbox, Profile};

/// What one open connection holds; its slots are freed when it drops.
#[derive(Debug)]
pub struct ConnectionPermit {
    _key: Option<OwnedSemaphorePermit>,
    _server: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
    idle: Option<IdlePermit>,
}

/// An idle slot: the appliance's budget and the server's share.
#[derive(Debug)]
struct IdlePermit {
    _budget: OwnedSemaphorePermit,
    _server: Option<OwnedSemaphorePermit>,
}

impl ConnectionPermit {
    /// Whether the connection also holds an idle slot (IDLE, or kept between polls).
    pub fn is_idle(&self) -> bool {
        self.idle.is_some()
    }

    /// Gives back the idle slot: the connection is busy again (a sync runs on it).
    pub fn busy(&mut self) {
        self.idle = None;
    }
}

/// The key a connection counts against for P8.
pub fn limit_key(profile: &Profile, mailbox: &Mailbox) -> String {
    match profile.incoming.credentials {
        CredentialSource::Profile { .. } => format!("profile:{}", profile.name),
        CredentialSource::Mailbox => format!("mailbox:{}", mailbox.email_address),
    }
}

/// The key a connection counts against for its server's cap.
pub fn server_key(endpoint: &Endpoint) -> String {
    format!("{}:{}", endpoint.host.to_ascii_lowercase(), endpoint.port)
}

/// The default `max_connections`: what the file limit leaves after the appliance's own files
/// (store, listeners, logs), and no more than memory carries at 256 KiB a connection on both
/// sides of TLS, with room to spare. Never below 16.
pub fn default_max_connections(open_files: Option<u64>, memory_bytes: Option<u64>) -> usize {
    let by_files = open_files.map_or(u64::MAX, |n| n.saturating_sub(256));
    let by_memory = memory_bytes.map_or(u64::MAX, |m| m / (256 * 1024));
    let n = by_files.min(by_memory);
    let n = if n == u64::MAX { 1024 } else { n };
    usize::try_from(n.clamp(16, 1_000_000)).unwrap_or(16)
}

/// The default `max_idle_connections`: half the connection budget, at most 1,000 (each one is a
/// process or a thread on most servers).
pub fn default_max_idle(max_connections: usize) -> usize {
    (max_connections / 2).clamp(1, 1_000)
}

/// The machine's soft limit of open files and its memory, for the defaults.
pub fn machine() -> (Option<u64>, Option<u64>) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024);
    (files, memory)
}

/// A limit and its semaphore; a reload keeps the semaphore when the limit did not change, so
/// connections opened before the reload keep counting.
#[derive(Clone)]
struct Limit {
    max: usize,
    semaphore: Arc<Semaphore>,
}

impl Limit {
    fn new(max: usize) -> Limit {
        Limit {
            max,
            semaphore: Arc::new(Semaphore::new(max)),
        }
    }

    fn kept(previous: Option<&Limit>, max: usize) -> Limit {
        previous
            .filter(|p| p.max == max)
            .cloned()
            .unwrap_or_else(|| Limit::new(max))
    }
}

/// A server held back after refusing or throttling connections.
#[derive(Debug, Default, Clone, Copy)]
struct Hold {
    rounds: u32,
    until: Option<Instant>,
}

const HOLD_FIRST: Duration = Duration::from_secs(5);
const HOLD_MAX: Duration = Duration::from_secs(300);

pub struct ConnectionLimits {
    keys: HashMap<String, Limit>,
    servers: HashMap<String, Limit>,
    global: Limit,
    idle: Limit,
    /// Idle slots per server: half its cap.
    idle_servers: HashMap<String, Limit>,
    /// Shared across reloads: a server's trouble outlives a config change.
    holds: Arc<Mutex<HashMap<String, Hold>>>,
}

impl ConnectionLimits {
    pub fn new(config: &Config) -> ConnectionLimits {
        ConnectionLimits::reloaded(None, config)
    }

    /// The limits of `config`; a limit that is what it was in `previous` keeps its semaphore.
    pub fn reloaded(previous: Option<&ConnectionLimits>, config: &Config) -> ConnectionLimits {
        let mut keys = HashMap::new();
        let mut server_caps: HashMap<String, usize> = HashMap::new();
        for m in &config.mailboxes {
            let Some(p) = config.mailbox_profile(m) else {
                continue;
            };
            let key = limit_key(p, m);
            let n = p.max_concurrent_connections as usize;
            keys.entry(key.clone())
                .or_insert_with(|| Limit::kept(previous.and_then(|prev| prev.keys.get(&key)), n));
            if let Some(cap) = p.max_connections_per_server {
                for endpoint in std::iter::once(&p.incoming).chain(p.outgoing.as_ref()) {
                    let cap = cap as usize;
                    server_caps
                        .entry(server_key(endpoint))
                        .and_modify(|c| *c = (*c).min(cap))
                        .or_insert(cap);
                }
            }
        }
        let kept = |which: fn(&ConnectionLimits) -> &HashMap<String, Limit>, k: &str, n: usize| {
            Limit::kept(previous.and_then(|p| which(p).get(k)), n)
        };
        let servers = server_caps
            .iter()
            .map(|(k, &n)| (k.clone(), kept(|l| &l.servers, k, n)))
            .collect();
        let idle_servers = server_caps
            .iter()
            .map(|(k, &n)| (k.clone(), kept(|l| &l.idle_servers, k, n / 2)))
            .collect();
        let a = &config.appliance;
        let (files, memory) = machine();
        let global_max = a
            .max_connections
            .unwrap_or_else(|| default_max_connections(files, memory));
        let idle_max = a
            .max_idle_connections
            .unwrap_or_else(|| default_max_idle(global_max))
            .min(global_max);
        ConnectionLimits {
            keys,
            servers,
            global: Limit::kept(previous.map(|p| &p.global), global_max),
            idle: Limit::kept(previous.map(|p| &p.idle), idle_max),
            idle_servers,
            holds: previous.map_or_else(Arc::default, |p| p.holds.clone()),
        }
    }

    /// The appliance's budgets: (max_connections, max_idle_connections).
    pub fn budget(&self) -> (usize, usize) {
        (self.global.max, self.idle.max)
    }

    /// Connections open now, and of them held idle.
    pub fn in_use(&self) -> (usize, usize) {
        (
            self.global.max - self.global.semaphore.available_permits(),
            self.idle.max - self.idle.semaphore.available_permits(),
        )
    }

    /// Free slots for this mailbox's connections now (its key, its server, the appliance).
    pub fn available(&self, profile: &Profile, mailbox: &Mailbox, endpoint: &Endpoint) -> usize {
        let key = self
            .keys
            .get(&limit_key(profile, mailbox))
            .map_or(usize::MAX, |l| l.semaphore.available_permits());
        let server = self
            .servers
            .get(&server_key(endpoint))
            .map_or(usize::MAX, |l| l.semaphore.available_permits());
        key.min(server)
            .min(self.global.semaphore.available_permits())
    }

    /// Waits for a connection slot: the server's hold first, then the mailbox key, the server
    /// and the appliance, always in that order (no two waiters can block each other).
    pub async fn acquire(
        &self,
        profile: &Profile,
        mailbox: &Mailbox,
        endpoint: &Endpoint,
    ) -> Option<ConnectionPermit> {
        self.wait_for_server(endpoint).await;
        let key = match self.keys.get(&limit_key(profile, mailbox)) {
            Some(l) => Some(l.semaphore.clone().acquire_owned().await.ok()?),
            None => None,
        };
        let server = match self.servers.get(&server_key(endpoint)) {
            Some(l) => Some(l.semaphore.clone().acquire_owned().await.ok()?),
            None => None,
        };
        let global = Some(self.global.semaphore.clone().acquire_owned().await.ok()?);
        Some(ConnectionPermit {
            _key: key,
            _server: server,
            _global: global,
            idle: None,
        })
    }

    /// A slot for a connection held idle (IDLE, or kept between polls), without waiting: none
    /// when the idle budget is spent, when it would take the last free slot of the mailbox's
    /// key, or more than half of its server's cap, or when the server is held back.
    pub fn try_acquire_idle(
        &self,
        profile: &Profile,
        mailbox: &Mailbox,
        endpoint: &Endpoint,
    ) -> Option<ConnectionPermit> {
        if self.held_until(endpoint).is_some() {
            return None;
        }
        let idle = self.idle.semaphore.clone().try_acquire_owned().ok()?;
        let server_idle = match self.idle_servers.get(&server_key(endpoint)) {
            Some(l) => Some(l.semaphore.clone().try_acquire_owned().ok()?),
            None => None,
        };
        let key = match self.keys.get(&limit_key(profile, mailbox)) {
            Some(l) if l.semaphore.available_permits() < 2 => return None,
            Some(l) => Some(l.semaphore.clone().try_acquire_owned().ok()?),
            None => None,
        };
        let server = match self.servers.get(&server_key(endpoint)) {
            Some(l) => Some(l.semaphore.clone().try_acquire_owned().ok()?),
            None => None,
        };
        if self.global.semaphore.available_permits() < 2 {
            return None;
        }
        let global = Some(self.global.semaphore.clone().try_acquire_owned().ok()?);
        Some(ConnectionPermit {
            _key: key,
            _server: server,
            _global: global,
            idle: Some(IdlePermit {
                _budget: idle,
                _server: server_idle,
            }),
        })
    }

    /// Marks a connection already held as idle (a sync ended on it and it is kept open), when
    /// the idle budget allows and a slot of its mailbox key stays free beside it; false leaves
    /// it busy (the caller closes it).
    pub fn make_idle(
        &self,
        profile: &Profile,
        mailbox: &Mailbox,
        permit: &mut ConnectionPermit,
    ) -> bool {
        if permit.idle.is_some() {
            return true;
        }
        if self
            .keys
            .get(&limit_key(profile, mailbox))
            .is_some_and(|l| l.semaphore.available_permits() == 0)
        {
            return false;
        }
        let endpoint = &profile.incoming;
        let Ok(idle) = self.idle.semaphore.clone().try_acquire_owned() else {
            return false;
        };
        let server_idle = match self.idle_servers.get(&server_key(endpoint)) {
            Some(l) => match l.semaphore.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => return false,
            },
            None => None,
        };
        permit.idle = Some(IdlePermit {
            _budget: idle,
            _server: server_idle,
        });
        true
    }

    /// When the server's hold ends, if it is held back now.
    pub fn held_until(&self, endpoint: &Endpoint) -> Option<Instant> {
        let holds = self.holds.lock().ok()?;
        holds
            .get(&server_key(endpoint))
            .and_then(|h| h.until)
            .filter(|t| *t > Instant::now())
    }

    async fn wait_for_server(&self, endpoint: &Endpoint) {
        while let Some(until) = self.held_until(endpoint) {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Records how a connection to the server went: refused or throttled (`true`) holds the
    /// server back for all its mailboxes, doubling per failed round with jitter; a success
    /// ends the hold. Failures during a hold (connections already under way) do not escalate.
    pub fn server_outcome(&self, endpoint: &Endpoint, throttled: bool) {
        let Ok(mut holds) = self.holds.lock() else {
            return;
        };
        let key = server_key(endpoint);
        if !throttled {
            holds.remove(&key);
            return;
        }
        let now = Instant::now();
        let hold = holds.entry(key).or_default();
        if hold.until.is_some_and(|t| t > now) {
            return;
        }
        hold.rounds = hold.rounds.saturating_add(1);
        let wait = hold_duration(hold.rounds, jitter_fraction());
        hold.until = Some(now + wait);
        tracing::warn!(
            server = %server_key(endpoint),
            seconds = wait.as_secs(),
            rounds = hold.rounds,
            "the server refuses or throttles connections; all its mailboxes wait before connecting again"
        );
    }
}

/// The hold after `rounds` failed rounds: 5 s doubling to 5 minutes, plus up to half again
/// (`jitter` in 0..1) so that appliances and mailboxes do not come back in step.
pub fn hold_duration(rounds: u32, jitter: f64) -> Duration {
    let base = HOLD_FIRST
        .saturating_mul(1u32 << rounds.saturating_sub(1).min(16))
        .min(HOLD_MAX);
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

fn jitter_fraction() -> f64 {
    let nanos = u64::from(chrono::Utc::now().timestamp_subsec_nanos());
    let mixed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(appliance: &str, profile: &str) -> Config {
        let text = format!(
            "[appliance]\n{appliance}\n[[profile]]\nname = \"p\"\nis_default = true\n\
             incoming_server_location = \"h\"\nmax_concurrent_connections = 2\n{profile}\n\
             [[mailbox]]\nemail_address = \"a@x\"\npassword = \"pw\"\n\
             [[mailbox]]\nemail_address = \"b@x\"\npassword = \"pw\"\n"
        );
        Config::parse_allowing_plaintext(Path::new("t.toml"), &text).expect("valid")
    }

    async fn blocked(limits: &ConnectionLimits, c: &Config, m: usize) -> bool {
        let p = c.mailbox_profile(&c.mailboxes[m]).expect("profile");
        tokio::time::timeout(
            Duration::from_millis(50),
            limits.acquire(p, &c.mailboxes[m], &p.incoming),
        )
        .await
        .is_err()
    }

    fn idle(limits: &ConnectionLimits, c: &Config, m: usize) -> Option<ConnectionPermit> {
        let p = c.mailbox_profile(&c.mailboxes[m]).expect("profile");
        limits.try_acquire_idle(p, &c.mailboxes[m], &p.incoming)
    }

    async fn slot(limits: &ConnectionLimits, c: &Config, m: usize) -> ConnectionPermit {
        let p = c.mailbox_profile(&c.mailboxes[m]).expect("profile");
        limits
            .acquire(p, &c.mailboxes[m], &p.incoming)
            .await
            .expect("slot")
    }

    #[tokio::test]
    async fn mailbox_credentials_count_per_mailbox() {
        let c = config("", "");
        let limits = ConnectionLimits::new(&c);
        let _a1 = slot(&limits, &c, 0).await;
        let _a2 = slot(&limits, &c, 0).await;
        assert!(
            blocked(&limits, &c, 0).await,
            "a third connection for a@x must wait"
        );
        assert!(!blocked(&limits, &c, 1).await, "b@x has its own two");
    }

    #[tokio::test]
    async fn profile_credentials_count_per_profile() {
        let c = config(
            "",
            "incoming_credential_retrieval = \"profile\"\nincoming_username = \"m\"\nincoming_password = \"pw\"",
        );
        let limits = ConnectionLimits::new(&c);
        let _a = slot(&limits, &c, 0).await;
        let _b = slot(&limits, &c, 1).await;
        assert!(blocked(&limits, &c, 0).await);
        assert!(
            blocked(&limits, &c, 1).await,
            "the profile's two slots are shared"
        );
    }

    #[tokio::test]
    async fn the_appliance_budget_holds_across_mailboxes() {
        let c = config("max_connections = 3", "");
        let limits = ConnectionLimits::new(&c);
        let _a1 = slot(&limits, &c, 0).await;
        let _a2 = slot(&limits, &c, 0).await;
        let _b1 = slot(&limits, &c, 1).await;
        assert!(
            blocked(&limits, &c, 1).await,
            "b@x has a slot, the appliance none"
        );
        assert_eq!(limits.in_use(), (3, 0));
    }

    #[tokio::test]
    async fn the_server_cap_holds_across_mailboxes() {
        let c = config("", "max_connections_per_server = 3");
        let limits = ConnectionLimits::new(&c);
        let _a1 = slot(&limits, &c, 0).await;
        let _a2 = slot(&limits, &c, 0).await;
        let _b1 = slot(&limits, &c, 1).await;
        assert!(
            blocked(&limits, &c, 1).await,
            "the server's three are taken"
        );
    }

    #[tokio::test]
    async fn idle_never_takes_the_last_slot() {
        let c = config("max_connections = 10\nmax_idle_connections = 5", "");
        let limits = ConnectionLimits::new(&c);
        let i1 = idle(&limits, &c, 0).expect("a@x: 2 free, one may idle");
        assert!(i1.is_idle());
        assert!(
            idle(&limits, &c, 0).is_none(),
            "a@x's last slot stays for syncs"
        );
        assert!(
            !blocked(&limits, &c, 0).await,
            "a sync of a@x still gets a slot"
        );
        assert_eq!(limits.in_use(), (1, 1));
        // The idle budget: 2 for the appliance.
        let c = config("max_connections = 10\nmax_idle_connections = 1", "");
        let limits = ConnectionLimits::new(&c);
        let held = idle(&limits, &c, 0).expect("the one idle slot");
        assert!(idle(&limits, &c, 1).is_none(), "the idle budget is spent");
        let mut busy = slot(&limits, &c, 1).await;
        let p = &c.profiles[0];
        assert!(!limits.make_idle(p, &c.mailboxes[1], &mut busy));
        // With a slot to spare and the idle budget free again, a busy connection may idle.
        drop(held);
        assert!(limits.make_idle(p, &c.mailboxes[1], &mut busy));
        let _other = slot(&limits, &c, 1).await;
        let mut last = slot(&limits, &c, 0).await;
        let _second = slot(&limits, &c, 0).await;
        drop(busy);
        assert!(
            !limits.make_idle(p, &c.mailboxes[0], &mut last),
            "a@x has no slot free beside it"
        );
    }

    #[tokio::test]
    async fn idle_takes_at_most_half_a_server() {
        let c = config("", "max_connections_per_server = 4");
        let limits = ConnectionLimits::new(&c);
        let _a = idle(&limits, &c, 0).expect("first");
        let _b = idle(&limits, &c, 1).expect("second");
        assert!(idle(&limits, &c, 1).is_none(), "half of 4 is 2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusing_server_is_held_back_for_all_its_mailboxes() {
        let c = config("", "");
        let limits = ConnectionLimits::new(&c);
        let server = &c.profiles[0].incoming;
        limits.server_outcome(server, true);
        let until = limits.held_until(server).expect("held");
        assert!(until - Instant::now() >= HOLD_FIRST);
        // Failures of connections already under way do not make it longer.
        limits.server_outcome(server, true);
        assert_eq!(limits.held_until(server), Some(until));
        assert!(blocked(&limits, &c, 1).await, "b@x waits for the hold too");
        assert!(idle(&limits, &c, 0).is_none());
        tokio::time::sleep_until(until).await;
        assert!(!blocked(&limits, &c, 1).await);
        // A second failed round doubles the hold; a success ends it.
        limits.server_outcome(server, true);
        let second = limits.held_until(server).expect("held again") - Instant::now();
        assert!(second >= HOLD_FIRST * 2, "{second:?}");
        limits.server_outcome(server, false);
        assert_eq!(limits.held_until(server), None);
    }

    #[test]
    fn holds_double_with_jitter_up_to_five_minutes() {
        assert_eq!(hold_duration(1, 0.0), Duration::from_secs(5));
        assert_eq!(hold_duration(2, 0.0), Duration::from_secs(10));
        assert_eq!(hold_duration(1, 1.0), Duration::from_millis(7_500));
        assert_eq!(hold_duration(30, 0.0), HOLD_MAX);
        assert_eq!(hold_duration(30, 1.0), HOLD_MAX + HOLD_MAX / 2);
    }

    #[test]
    fn the_default_budget_follows_the_machine() {
        assert_eq!(default_max_connections(Some(1024), Some(24 << 30)), 768);
        assert_eq!(default_max_connections(Some(1 << 20), Some(1 << 30)), 4096);
        assert_eq!(default_max_connections(Some(100), None), 16);
        assert_eq!(default_max_connections(None, None), 1024);
        assert_eq!(default_max_idle(768), 384);
        assert_eq!(default_max_idle(65_000), 1_000);
    }
}

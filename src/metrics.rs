//! Runtime counters of the running appliance, kept in memory and read by `/metrics` and the status
//! page: per profile, emails ingested and sent, failures, bytes, connection attempts and sync
//! durations; emails per minute over the last hour; each mailbox's next poll. What must survive a
//! restart (activities stored, outbox counts, connection totals) lives in the store instead.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Upper bounds (seconds) of the sync duration histogram's buckets.
pub const SYNC_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Minutes the per-minute series covers.
pub const SERIES_MINUTES: usize = 60;

#[derive(Default)]
pub struct Histogram {
    /// Cumulative is computed when read; each bucket counts the observations that fall in it.
    buckets: [AtomicU64; SYNC_BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A histogram as Prometheus shows it: cumulative counts per upper bound, sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub cumulative: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = SYNC_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = SYNC_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, c)| {
                running += c.load(Ordering::Relaxed);
                (*b, running)
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// One profile's counters since the appliance started.
#[derive(Default)]
pub struct ProfileCounters {
    pub emails_ingested: AtomicU64,
    pub bytes_ingested: AtomicU64,
    /// Header and body bytes fetched from the server (relevance saves on these).
    pub bytes_fetched: AtomicU64,
    /// Emails a check of server changes found gone or with their flags reported.
    pub server_changes: AtomicU64,
    pub emails_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub emails_failed: AtomicU64,
    pub syncs: AtomicU64,
    pub syncs_failed: AtomicU64,
    pub connection_attempts: AtomicU64,
    pub connection_failures: AtomicU64,
    pub sync_duration: Histogram,
    /// Failures by (operation, error code): `sync`, `test_incoming`, `test_outgoing`; the codes
    /// are `SyncError`'s fixed set.
    pub failures_by_code: Mutex<std::collections::BTreeMap<(&'static str, String), u64>>,
}

/// Emails ingested and sent during one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Unix time / 60.
    pub minute: i64,
    pub ingested: u64,
    pub sent: u64,
}

/// A sync under way: emails it found to fetch on the server, and how many it has committed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncProgress {
    pub on_server: u64,
    pub done: u64,
    pub started: DateTime<Utc>,
}

impl SyncProgress {
    /// Emails committed per second since the sync started.
    pub fn rate(&self, now: DateTime<Utc>) -> f64 {
        let secs = (now - self.started).num_milliseconds() as f64 / 1000.0;
        if secs <= 0.0 {
            0.0
        } else {
            self.done as f64 / secs
        }
    }

    /// Seconds left at the rate so far (None before anything is committed).
    pub fn eta_seconds(&self, now: DateTime<Utc>) -> Option<u64> {
        let rate = self.rate(now);
        (rate > 0.0).then(|| (self.on_server.saturating_sub(self.done) as f64 / rate).ceil() as u64)
    }
}

/// Removes a sync's progress when the sync ends, however it ends.
pub struct ProgressGuard {
    metrics: Arc<Metrics>,
    mailbox: String,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.metrics.progress.lock() {
            m.remove(&self.mailbox);
        }
    }
}

pub struct Metrics {
    /// Syncs under way (as many entries as syncs run at once).
    progress: Mutex<HashMap<String, SyncProgress>>,
    /// A reload may add profiles; counters of a removed one stay until the restart.
    profiles: std::sync::RwLock<HashMap<String, Arc<ProfileCounters>>>,
    minutes: Mutex<VecDeque<Minute>>,
    next_poll: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Reads the engine's connection figures now (set by the engine; a reload replaces it).
    connections: Mutex<Option<ConnectionProbe>>,
    /// Requests whose answering panicked (caught; the worker went on).
    pub http_handler_panics: AtomicU64,
    /// HTTP workers whose loop ended by a panic and was started again.
    pub http_worker_restarts: AtomicU64,
}

/// The engine's connections at a glance, for `/status` and `/metrics`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ConnectionFigures {
    /// `max_connections` in force (configured or sized from the machine).
    pub max: usize,
    /// `max_idle_connections` in force.
    pub idle_max: usize,
    /// Connections open now (syncs, tests, IDLE, kept sessions, SMTP).
    pub open: usize,
    /// Of them, held idle (IDLE, kept between polls).
    pub idle_open: usize,
    /// Mailboxes on IDLE now.
    pub on_idle: usize,
    /// Sessions kept open between polls now.
    pub kept: usize,
}

pub type ConnectionProbe = Arc<dyn Fn() -> ConnectionFigures + Send + Sync>;

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn new<'a>(profiles: impl IntoIterator<Item = &'a str>) -> Metrics {
        Metrics {
            profiles: std::sync::RwLock::new(
                profiles
                    .into_iter()
                    .map(|p| (p.to_string(), Arc::default()))
                    .collect(),
            ),
            minutes: Mutex::new(VecDeque::new()),
            progress: Mutex::new(HashMap::new()),
            next_poll: Mutex::new(HashMap::new()),
            connections: Mutex::new(None),
            http_handler_panics: AtomicU64::new(0),
            http_worker_restarts: AtomicU64::new(0),
        }
    }

    pub fn set_connection_probe(&self, probe: ConnectionProbe) {
        if let Ok(mut p) = self.connections.lock() {
            *p = Some(probe);
        }
    }

    /// The engine's connection figures (zeros before the engine runs).
    pub fn connections(&self) -> ConnectionFigures {
        let probe = self.connections.lock().ok().and_then(|p| p.clone());
        probe.map(|p| p()).unwrap_or_default()
    }

    pub fn profile(&self, name: &str) -> Option<Arc<ProfileCounters>> {
        self.profiles.read().ok()?.get(name).cloned()
    }

    /// A sync of `mailbox` starts; its progress is kept until the guard drops.
    pub fn sync_progress(self: &Arc<Self>, mailbox: &str) -> ProgressGuard {
        if let Ok(mut m) = self.progress.lock() {
            m.insert(
                mailbox.to_string(),
                SyncProgress {
                    on_server: 0,
                    done: 0,
                    started: Utc::now(),
                },
            );
        }
        ProgressGuard {
            metrics: self.clone(),
            mailbox: mailbox.to_string(),
        }
    }

    /// The sync found `n` more emails to fetch (a folder listed, a maildrop planned).
    pub fn sync_planned(&self, mailbox: &str, n: u64) {
        if let Ok(mut m) = self.progress.lock()
            && let Some(p) = m.get_mut(mailbox)
        {
            p.on_server += n;
        }
    }

    /// The sync committed `n` emails (stored, linked or skipped).
    pub fn sync_done(&self, mailbox: &str, n: u64) {
        if let Ok(mut m) = self.progress.lock()
            && let Some(p) = m.get_mut(mailbox)
        {
            p.done += n;
        }
    }

    pub fn progress(&self, mailbox: &str) -> Option<SyncProgress> {
        self.progress.lock().ok()?.get(mailbox).copied()
    }

    /// Counters for profiles a reload added.
    pub fn add_profiles<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut m) = self.profiles.write() {
            for n in names {
                m.entry(n.to_string()).or_default();
            }
        }
    }

    /// Profile names, sorted (for stable output).
    pub fn profile_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .profiles
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn count_minute(&self, at: DateTime<Utc>, ingested: u64, sent: u64) {
        let minute = at.timestamp().div_euclid(60);
        let Ok(mut m) = self.minutes.lock() else {
            return;
        };
        match m.back_mut() {
            Some(last) if last.minute == minute => {
                last.ingested += ingested;
                last.sent += sent;
            }
            _ => m.push_back(Minute {
                minute,
                ingested,
                sent,
            }),
        }
        while m
            .front()
            .is_some_and(|f| f.minute <= minute - SERIES_MINUTES as i64)
        {
            m.pop_front();
        }
    }

    pub fn ingested(&self, profile: &str, emails: u64, bytes: u64) {
        if let Some(p) = self.profile(profile) {
            add(&p.emails_ingested, emails);
            add(&p.bytes_ingested, bytes);
        }
        self.count_minute(Utc::now(), emails, 0);
    }

    pub fn fetched_bytes(&self, profile: &str, bytes: u64) {
        if let Some(p) = self.profile(profile) {
            add(&p.bytes_fetched, bytes);
        }
    }

    pub fn server_changes(&self, profile: &str, n: u64) {
        if let Some(p) = self.profile(profile) {
            add(&p.server_changes, n);
        }
    }

    pub fn sent(&self, profile: &str, bytes: u64) {
        if let Some(p) = self.profile(profile) {
            add(&p.emails_sent, 1);
            add(&p.bytes_sent, bytes);
        }
        self.count_minute(Utc::now(), 0, 1);
    }

    pub fn send_failed(&self, profile: &str) {
        if let Some(p) = self.profile(profile) {
            add(&p.emails_failed, 1);
        }
    }

    /// A sync ended: `failure` is its error code when it failed.
    pub fn sync_finished(&self, profile: &str, took: Duration, failure: Option<&'static str>) {
        if let Some(p) = self.profile(profile) {
            add(&p.syncs, 1);
            if failure.is_some() {
                add(&p.syncs_failed, 1);
            }
            p.sync_duration.observe(took);
        }
        if let Some(code) = failure {
            self.failure(profile, "sync", code);
        }
    }

    /// Something failed with `code` during `operation` (sync, test_incoming, test_outgoing).
    pub fn failure(&self, profile: &str, operation: &'static str, code: &str) {
        if let Some(p) = self.profile(profile)
            && let Ok(mut m) = p.failures_by_code.lock()
        {
            *m.entry((operation, code.to_string())).or_default() += 1;
        }
    }

    pub fn connection(&self, profile: &str, ok: bool) {
        if let Some(p) = self.profile(profile) {
            add(&p.connection_attempts, 1);
            if !ok {
                add(&p.connection_failures, 1);
            }
        }
    }

    pub fn set_next_poll(&self, mailbox: &str, at: Option<DateTime<Utc>>) {
        if let Ok(mut m) = self.next_poll.lock() {
            match at {
                Some(t) => {
                    m.insert(mailbox.to_string(), t);
                }
                None => {
                    m.remove(mailbox);
                }
            }
        }
    }

    pub fn next_poll(&self, mailbox: &str) -> Option<DateTime<Utc>> {
        self.next_poll.lock().ok()?.get(mailbox).copied()
    }

    /// The last [`SERIES_MINUTES`] minutes up to `now`, oldest first, zeros where nothing happened.
    pub fn series(&self, now: DateTime<Utc>) -> Vec<Minute> {
        let current = now.timestamp().div_euclid(60);
        let recorded: HashMap<i64, Minute> = self
            .minutes
            .lock()
            .map(|m| m.iter().map(|x| (x.minute, *x)).collect())
            .unwrap_or_default();
        (0..SERIES_MINUTES as i64)
            .rev()
            .map(|back| {
                let minute = current - back;
                recorded.get(&minute).copied().unwrap_or(Minute {
                    minute,
                    ..Minute::default()
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rate_and_time_left() {
        let start = Utc::now();
        let p = SyncProgress {
            on_server: 1_000,
            done: 250,
            started: start,
        };
        let later = start + chrono::Duration::seconds(5);
        assert_eq!(p.rate(later), 50.0);
        assert_eq!(p.eta_seconds(later), Some(15));
        assert_eq!(p.eta_seconds(start), None, "no rate yet");
        let none = SyncProgress { done: 0, ..p };
        assert_eq!(none.eta_seconds(later), None);
        let m = Arc::new(Metrics::new(["p"]));
        {
            let _guard = m.sync_progress("a@x");
            m.sync_planned("a@x", 10);
            m.sync_done("a@x", 4);
            let p = m.progress("a@x").expect("progress");
            assert_eq!((p.on_server, p.done), (10, 4));
        }
        assert!(m.progress("a@x").is_none(), "gone with the sync");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_millis(700));
        h.observe(Duration::from_secs(1_000));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], (0.05, 1));
        assert_eq!(s.cumulative[4], (1.0, 2));
        assert_eq!(
            s.cumulative.last(),
            Some(&(300.0, 2)),
            "over the top bucket: only +Inf"
        );
        assert!((s.sum_seconds - 1_000.73).abs() < 1e-6);
    }

    #[test]
    fn counters_go_to_their_profile_and_the_minute_series() {
        let m = Metrics::new(["a", "b"]);
        m.ingested("a", 3, 300);
        m.sent("b", 10);
        m.sent("unknown", 10);
        m.connection("a", false);
        let a = m.profile("a").expect("a");
        assert_eq!(a.emails_ingested.load(Ordering::Relaxed), 3);
        assert_eq!(a.connection_failures.load(Ordering::Relaxed), 1);
        assert_eq!(
            m.profile("b")
                .expect("b")
                .bytes_sent
                .load(Ordering::Relaxed),
            10
        );
        let s = m.series(Utc::now());
        assert_eq!(s.len(), SERIES_MINUTES);
        let last = s.last().expect("minute");
        assert_eq!((last.ingested, last.sent), (3, 2));
        assert!(s[..SERIES_MINUTES - 1].iter().all(|x| x.ingested == 0));
        let later = Utc::now() + chrono::Duration::minutes(61);
        assert!(
            m.series(later)
                .iter()
                .all(|x| x.ingested == 0 && x.sent == 0)
        );
    }

    #[test]
    fn old_minutes_are_dropped() {
        let m = Metrics::new(["a"]);
        let t0 = Utc::now();
        m.count_minute(t0 - chrono::Duration::minutes(90), 5, 0);
        m.count_minute(t0, 1, 0);
        assert_eq!(m.minutes.lock().map(|x| x.len()).unwrap_or(0), 1);
    }
}

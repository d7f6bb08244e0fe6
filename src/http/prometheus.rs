//! `GET /metrics` in the Prometheus text format (version 0.0.4), as its users write queries: one
//! family per metric with a `profile` label (`sum(rate(sidesync_emails_ingested_total[5m]))` for
//! all profiles), sync durations as histograms, failures by error code, mailboxes by state, queue
//! depths and ages, build info, and the process's own figures (start time, RSS, open files).

use std::fmt::Write;

use crate::metrics::{HistogramSnapshot, Metrics};

/// Gauges read from the store and the engine at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// (state, count) of mailboxes: ok, failing, not_processed, waiting.
    pub mailboxes: Vec<(&'static str, u64)>,
    /// (status, count) of the outbox: pending_send, sending, sent, failed.
    pub outbox: Vec<(&'static str, u64)>,
    pub writer_queue: u64,
    pub activities_stored: u64,
    /// Emails by tracking decision since the store was made.
    pub decisions: std::collections::BTreeMap<String, u64>,
    pub uptime_seconds: i64,
    /// Processed mailboxes without a successful sync for `stale_after_polls` intervals.
    pub stale_mailboxes: u64,
    pub store_bytes: u64,
    /// (profile, unix time of its mailboxes' latest successful sync).
    pub last_success: Vec<(String, i64)>,
    /// Seconds the oldest email waiting to be sent has waited (0: none waits).
    pub oldest_queued_age_seconds: i64,
    /// Unix time the process started.
    pub started_at: i64,
    /// First syncs under way, all mailboxes together.
    pub first_syncs: FirstSyncs,
}

/// First syncs under way: how many, their emails on the server and stored, their combined rate,
/// and the longest time left.
#[derive(Debug, Default, Clone)]
pub struct FirstSyncs {
    pub running: u64,
    pub on_server: u64,
    pub stored: u64,
    pub per_second: f64,
    pub seconds_left: u64,
}

/// The process's own figures, from /proc/self (None where it cannot be read).
#[derive(Debug, Default, Clone)]
pub struct ProcessFigures {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
}

impl ProcessFigures {
    pub fn read() -> ProcessFigures {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = |key: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        ProcessFigures {
            resident_bytes: kb("VmRSS:").map(|k| k * 1024),
            virtual_bytes: kb("VmSize:").map(|k| k * 1024),
            threads: kb("Threads:"),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok()),
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A gauge with one sample per value of `key`.
fn labelled_gauge(out: &mut String, name: &str, help: &str, key: &str, values: &[(&str, u64)]) {
    family(out, name, "gauge", help);
    for (v, n) in values {
        let _ = writeln!(out, "{name}{{{key}=\"{v}\"}} {n}");
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in &h.cumulative {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

pub fn render(m: &Metrics, g: &Gauges) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::with_capacity(8 * 1024);
    let profiles = m.profile_names();
    type Pick = fn(&crate::metrics::ProfileCounters) -> u64;
    let counters: [(&str, &str, Pick); 11] = [
        (
            "emails_ingested_total",
            "Emails stored as new activities.",
            |p| p.emails_ingested.load(Relaxed),
        ),
        (
            "ingested_bytes_total",
            "Raw bytes of the emails ingested.",
            |p| p.bytes_ingested.load(Relaxed),
        ),
        (
            "fetched_bytes_total",
            "Header and body bytes fetched from IMAP servers.",
            |p| p.bytes_fetched.load(Relaxed),
        ),
        (
            "server_changes_total",
            "Tracked emails a check found gone from a folder or with their flags reported (follow_server_changes).",
            |p| p.server_changes.load(Relaxed),
        ),
        (
            "emails_sent_total",
            "Emails accepted by the SMTP server.",
            |p| p.emails_sent.load(Relaxed),
        ),
        ("sent_bytes_total", "Raw bytes of the emails sent.", |p| {
            p.bytes_sent.load(Relaxed)
        }),
        (
            "emails_failed_total",
            "Outgoing emails that failed for good.",
            |p| p.emails_failed.load(Relaxed),
        ),
        ("syncs_total", "Incoming syncs run.", |p| {
            p.syncs.load(Relaxed)
        }),
        ("sync_failures_total", "Incoming syncs that failed.", |p| {
            p.syncs_failed.load(Relaxed)
        }),
        (
            "connection_attempts_total",
            "Connections opened to mail servers (IMAP, POP3, SMTP).",
            |p| p.connection_attempts.load(Relaxed),
        ),
        (
            "connection_failures_total",
            "Connections to mail servers that failed.",
            |p| p.connection_failures.load(Relaxed),
        ),
    ];
    for (name, help, pick) in counters {
        let name = format!("sidesync_{name}");
        family(&mut out, &name, "counter", help);
        for p in &profiles {
            let v = m.profile(p).map_or(0, |c| pick(&c));
            let _ = writeln!(out, "{name}{{profile=\"{}\"}} {v}", label(p));
        }
    }
    let name = "sidesync_failures_by_code_total";
    family(
        &mut out,
        name,
        "counter",
        "Failures by operation (sync, test_incoming, test_outgoing) and error code (the code /status shows).",
    );
    for p in &profiles {
        let Some(c) = m.profile(p) else { continue };
        let Ok(codes) = c.failures_by_code.lock() else {
            continue;
        };
        for ((operation, code), n) in codes.iter() {
            let _ = writeln!(
                out,
                "{name}{{profile=\"{}\",operation=\"{operation}\",code=\"{}\"}} {n}",
                label(p),
                label(code)
            );
        }
    }
    let name = "sidesync_sync_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Duration of incoming syncs, per profile.",
    );
    for p in &profiles {
        if let Some(c) = m.profile(p) {
            histogram(
                &mut out,
                name,
                &format!("profile=\"{}\"", label(p)),
                &c.sync_duration.snapshot(),
            );
        }
    }
    labelled_gauge(
        &mut out,
        "sidesync_mailboxes",
        "Mailboxes by state.",
        "state",
        &g.mailboxes,
    );
    let c = m.connections();
    labelled_gauge(
        &mut out,
        "sidesync_connections",
        "Connections: open now, of them held idle (IDLE or kept between polls), and the budgets in force (max_connections, max_idle_connections).",
        "kind",
        &[
            ("open", c.open as u64),
            ("idle", c.idle_open as u64),
            ("max", c.max as u64),
            ("idle_max", c.idle_max as u64),
        ],
    );
    for (name, help, value) in [
        (
            "sidesync_http_handler_panics_total",
            "HTTP requests whose answering panicked (caught: the client got 500, the worker went on).",
            &m.http_handler_panics,
        ),
        (
            "sidesync_http_worker_restarts_total",
            "HTTP workers whose loop ended by a panic and was started again.",
            &m.http_worker_restarts,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", value.load(Relaxed));
    }
    let (full, resumed) = crate::net::handshake_counts();
    let name = "sidesync_tls_handshakes_total";
    family(
        &mut out,
        name,
        "counter",
        "TLS handshakes with mail servers: full, or resuming an earlier session (a ticket).",
    );
    let _ = writeln!(out, "{name}{{kind=\"full\"}} {full}");
    let _ = writeln!(out, "{name}{{kind=\"resumed\"}} {resumed}");
    labelled_gauge(
        &mut out,
        "sidesync_sessions_held",
        "Mailboxes on IDLE, and sessions kept open between polls.",
        "kind",
        &[("idle", c.on_idle as u64), ("kept", c.kept as u64)],
    );
    labelled_gauge(
        &mut out,
        "sidesync_outbox_emails",
        "Outgoing emails by status.",
        "status",
        &g.outbox,
    );
    let decisions: Vec<(&str, u64)> = g.decisions.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    labelled_gauge(
        &mut out,
        "sidesync_emails_by_decision",
        "Emails by tracking decision since the store was made (tracked_new, tracked_correlated, duplicate, undeliverable, or the skip reason).",
        "decision",
        &decisions,
    );
    let name = "sidesync_last_successful_sync_timestamp_seconds";
    family(
        &mut out,
        name,
        "gauge",
        "Unix time of the latest successful sync of any mailbox of the profile (0: none yet).",
    );
    for (p, t) in &g.last_success {
        let _ = writeln!(out, "{name}{{profile=\"{}\"}} {t}", label(p));
    }
    let name = "sidesync_build_info";
    family(
        &mut out,
        name,
        "gauge",
        "Always 1; the labels say which build runs.",
    );
    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    let process = ProcessFigures::read();
    for (name, help, value) in [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            process.virtual_bytes,
        ),
        (
            "process_open_fds",
            "Open file descriptors (connections included).",
            process.open_fds,
        ),
        (
            "process_max_fds",
            "The limit on open file descriptors.",
            process.max_fds,
        ),
        ("process_threads", "OS threads.", process.threads),
    ] {
        if let Some(v) = value {
            family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    let name = "sidesync_first_sync_emails_per_second";
    family(
        &mut out,
        name,
        "gauge",
        "Emails committed per second by the first syncs under way, together.",
    );
    let _ = writeln!(out, "{name} {:.1}", g.first_syncs.per_second);
    for (name, help, value) in [
        (
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            g.started_at,
        ),
        (
            "sidesync_first_syncs_running",
            "Mailboxes in their first sync now.",
            g.first_syncs.running as i64,
        ),
        (
            "sidesync_first_sync_emails_on_server",
            "Emails the first syncs under way found to fetch.",
            g.first_syncs.on_server as i64,
        ),
        (
            "sidesync_first_sync_emails_stored",
            "Emails the first syncs under way have committed.",
            g.first_syncs.stored as i64,
        ),
        (
            "sidesync_first_sync_seconds_left",
            "The longest estimated time left among the first syncs under way.",
            g.first_syncs.seconds_left as i64,
        ),
        (
            "sidesync_mailboxes_stale",
            "Processed mailboxes without a successful sync for stale_after_polls polling intervals.",
            g.stale_mailboxes as i64,
        ),
        (
            "sidesync_store_size_bytes",
            "Size of the store file.",
            g.store_bytes as i64,
        ),
        (
            "sidesync_outbox_oldest_queued_age_seconds",
            "How long the oldest email waiting to be sent has waited (0: none waits).",
            g.oldest_queued_age_seconds,
        ),
        (
            "sidesync_store_writer_queue_depth",
            "Requests waiting for the store writer.",
            g.writer_queue as i64,
        ),
        (
            "sidesync_activities_stored",
            "Activities in the store.",
            g.activities_stored as i64,
        ),
        (
            "sidesync_uptime_seconds",
            "Seconds since the appliance started.",
            g.uptime_seconds,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counters_histograms_and_gauges() {
        let m = Metrics::new(["corp", "we\"ird"]);
        m.ingested("corp", 5, 500);
        m.sync_finished("corp", Duration::from_millis(300), None);
        m.sync_finished(
            "corp",
            Duration::from_millis(30),
            Some("authentication_rejected"),
        );
        let g = Gauges {
            mailboxes: vec![("ok", 3), ("failing", 1)],
            outbox: vec![("pending_send", 2)],
            writer_queue: 0,
            activities_stored: 5,
            decisions: [
                ("tracked_new".to_string(), 4),
                ("no_correlation_match".to_string(), 7),
            ]
            .into(),
            uptime_seconds: 9,
            stale_mailboxes: 1,
            store_bytes: 4096,
            last_success: vec![("corp".into(), 1_800_000_000)],
            oldest_queued_age_seconds: 42,
            started_at: 1_799_999_000,
            first_syncs: FirstSyncs {
                running: 1,
                on_server: 10_000,
                stored: 2_500,
                per_second: 250.0,
                seconds_left: 30,
            },
        };
        let text = render(&m, &g);
        assert!(text.contains("sidesync_emails_ingested_total{profile=\"corp\"} 5\n"));
        assert!(text.contains("sidesync_emails_ingested_total{profile=\"we\\\"ird\"} 0\n"));
        assert!(
            !text.contains("sidesync_profile_"),
            "one family per metric, with a profile label"
        );
        assert!(text.contains(
            "sidesync_failures_by_code_total{profile=\"corp\",operation=\"sync\",code=\"authentication_rejected\"} 1\n"
        ));
        assert!(text.contains("sidesync_sync_failures_total{profile=\"corp\"} 1\n"));
        assert!(text.contains("sidesync_mailboxes_stale 1\n"));
        assert!(text.contains("sidesync_first_sync_emails_on_server 10000\n"));
        assert!(text.contains("sidesync_first_sync_emails_per_second 250.0\n"));
        assert!(text.contains("sidesync_outbox_oldest_queued_age_seconds 42\n"));
        assert!(text.contains(
            "sidesync_last_successful_sync_timestamp_seconds{profile=\"corp\"} 1800000000\n"
        ));
        assert!(text.contains("process_start_time_seconds 1799999000\n"));
        assert!(text.contains(&format!(
            "sidesync_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.contains("process_open_fds "));
        assert!(
            text.contains("sidesync_sync_duration_seconds_bucket{profile=\"corp\",le=\"0.5\"} 2\n")
        );
        assert!(text.contains("sidesync_sync_duration_seconds_count{profile=\"corp\"} 2\n"));
        assert!(text.contains("sidesync_mailboxes{state=\"failing\"} 1\n"));
        assert!(
            text.contains("sidesync_emails_by_decision{decision=\"no_correlation_match\"} 7\n")
        );
        assert!(text.ends_with("sidesync_uptime_seconds 9\n"));
    }
}

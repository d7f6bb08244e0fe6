//! `GET /metrics` in the Prometheus text format (version 0.0.4): per-profile and total counters of
//! the running appliance, sync durations as histograms, mailboxes by state, queue depths.

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
    let counters: [(&str, &str, Pick); 10] = [
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
        let per = format!("sidesync_profile_{name}");
        family(&mut out, &per, "counter", &format!("{help} Per profile."));
        let mut total = 0;
        for p in &profiles {
            let v = m.profile(p).map_or(0, pick);
            total += v;
            let _ = writeln!(out, "{per}{{profile=\"{}\"}} {v}", label(p));
        }
        let all = format!("sidesync_{name}");
        family(&mut out, &all, "counter", &format!("{help} All profiles."));
        let _ = writeln!(out, "{all} {total}");
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
    for (name, help, value) in [
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
        m.sync_finished("corp", Duration::from_millis(300), true);
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
        };
        let text = render(&m, &g);
        assert!(text.contains("sidesync_profile_emails_ingested_total{profile=\"corp\"} 5\n"));
        assert!(text.contains("sidesync_profile_emails_ingested_total{profile=\"we\\\"ird\"} 0\n"));
        assert!(text.contains("sidesync_emails_ingested_total 5\n"));
        assert!(
            text.contains("sidesync_sync_duration_seconds_bucket{profile=\"corp\",le=\"0.5\"} 1\n")
        );
        assert!(text.contains("sidesync_sync_duration_seconds_count{profile=\"corp\"} 1\n"));
        assert!(text.contains("sidesync_mailboxes{state=\"failing\"} 1\n"));
        assert!(
            text.contains("sidesync_emails_by_decision{decision=\"no_correlation_match\"} 7\n")
        );
        assert!(text.ends_with("sidesync_uptime_seconds 9\n"));
    }
}

//! Logs. Under systemd (JOURNAL_STREAM set) events go to journald natively: a PRIORITY per
//! level (error 3, warning 4, info 6, debug 7 — so `journalctl -p warning` shows what needs attention),
//! the event's fields as journal fields (`F_MAILBOX`, `F_CODE`, …), SYSLOG_IDENTIFIER=sidesync.
//! Elsewhere, one plain line per event on stderr, or one JSON object per line with
//! `--log-format json` for log shippers. Credentials never reach a log line: they are `Secret`s.
//!
//! `SIDESYNC_LOG` sets the level of sidesync's own lines. Other crates log at warning and error
//! only, whatever it says: at debug and trace, async-imap logs every command it encodes (the SASL
//! PLAIN blob, LOGIN's password) and every response it decodes (whole emails), and other protocol
//! crates may do the same. Their detail is not worth a credential in a journal.

use tracing::Level;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, fmt};

/// Whether an event may be logged at all: sidesync's own at any level, anyone else's only at
/// warning and above.
fn permitted(target: &str, level: &Level) -> bool {
    target == "sidesync" || target.starts_with("sidesync::") || *level <= Level::WARN
}

/// How log events are written (`sidesync run --log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journald under systemd, else plain.
    Auto,
    /// One line per event on stderr.
    Plain,
    /// One JSON object per line on stderr (timestamp, level, fields, target).
    Json,
    /// journald's native protocol (fails over to plain when there is no journal).
    Journald,
}

type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The layer for `format`, and what was chosen.
fn layer(format: LogFormat) -> (Boxed, &'static str) {
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    if matches!(format, LogFormat::Journald) || (format == LogFormat::Auto && under_systemd) {
        // No journal socket (a container without journald): plain lines go to stderr.
        if let Ok(j) = tracing_journald::layer() {
            use tracing_journald::{Priority, PriorityMappings};
            // syslog's own meaning: info is 6, debug 7 (the crate's default shifts them up one).
            let priorities = PriorityMappings {
                info: Priority::Informational,
                debug: Priority::Debug,
                ..PriorityMappings::new()
            };
            return (
                j.with_syslog_identifier("sidesync".into())
                    .with_priority_mappings(priorities)
                    .boxed(),
                "journald",
            );
        }
    }
    let plain = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    match format {
        LogFormat::Json => (
            fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_current_span(false)
                .boxed(),
            "json",
        ),
        // The journal stamps stderr lines itself.
        _ if under_systemd => (plain.without_time().boxed(), "plain"),
        _ => (plain.boxed(), "plain"),
    }
}

/// Starts logging; returns which writer was chosen (journald, plain or json).
pub fn init(format: LogFormat) -> &'static str {
    let filter = EnvFilter::try_from_env("SIDESYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (layer, chosen) = layer(format);
    let own = filter_fn(|meta| permitted(meta.target(), meta.level()));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter.and(own)))
        .try_init();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_log_warnings_and_errors_only() {
        assert!(permitted("sidesync", &Level::TRACE));
        assert!(permitted("sidesync::engine::scheduler", &Level::TRACE));
        assert!(!permitted("async_imap::imap_stream", &Level::TRACE));
        assert!(!permitted("async_imap::imap_stream", &Level::DEBUG));
        assert!(!permitted("rustls::client", &Level::INFO));
        assert!(
            !permitted("sidesyncer", &Level::DEBUG),
            "a look-alike name is not ours"
        );
        assert!(permitted("async_imap::imap_stream", &Level::WARN));
        assert!(permitted("tiny_http", &Level::ERROR));
    }
}

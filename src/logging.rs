//! Logs: one line per event on stderr. Under systemd (JOURNAL_STREAM set) the journal adds the
//! time itself, so lines carry none. Credentials never reach a log line: they are `Secret`s.
//!
//! `SIDESYNC_LOG` sets the level of sidesync's own lines. Other crates log at warning and error
//! only, whatever it says: at debug and trace, async-imap logs every command it encodes (the SASL
//! PLAIN blob, LOGIN's password) and every response it decodes (whole emails), and other protocol
//! crates may do the same. Their detail is not worth a credential in a journal.

use tracing::Level;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

/// Whether an event may be logged at all: sidesync's own at any level, anyone else's only at
/// warning and above.
fn permitted(target: &str, level: &Level) -> bool {
    target == "sidesync" || target.starts_with("sidesync::") || *level <= Level::WARN
}

pub fn init() {
    let filter = EnvFilter::try_from_env("SIDESYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let layer = if journald {
        layer.without_time().boxed()
    } else {
        layer.boxed()
    };
    let own = filter_fn(|meta| permitted(meta.target(), meta.level()));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter.and(own)))
        .try_init();
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

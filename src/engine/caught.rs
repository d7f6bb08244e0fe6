//! A panic inside one mailbox's job (a bug, set off by whatever a server sent: a token that
//! "lives" u64::MAX seconds, a size no one expected) must cost that mailbox one turn, not its
//! scheduling for good: the job's future is run under `catch_unwind` and a panic comes back as
//! [`SyncError::Internal`], which the scheduler records, alerts on and retries like any transient
//! failure.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use super::error::SyncError;

/// The panic message kept in the error (it reaches `/status` and alerts): bounded, one line.
const MAX_DETAIL: usize = 200;

/// Runs `job`; a panic inside it becomes [`SyncError::Internal`].
///
/// `AssertUnwindSafe` holds because a job's state is its own: what it shares (the store writer,
/// the limits) is behind channels and semaphores whose guards release on unwind.
pub async fn caught<T>(job: impl Future<Output = T>) -> Result<T, SyncError> {
    AssertUnwindSafe(job)
        .catch_unwind()
        .await
        .map_err(|payload| SyncError::Internal {
            detail: panic_text(payload.as_ref()),
        })
}

/// What a panic said, as a bounded single line.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL)
        .collect();
    format!("panic: {line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_becomes_a_transient_internal_error() {
        let e = caught(async {
            let lifetime = std::time::Duration::from_secs(u64::MAX);
            // What the token cache did with an `expires_in` of u64::MAX.
            let _ = std::time::Instant::now() + lifetime;
        })
        .await
        .expect_err("the panic is an error");
        assert_eq!(e.code(), "internal_error");
        assert!(e.is_transient(), "retried with the usual backoff");
        assert!(e.to_string().contains("overflow"), "{e}");
    }

    #[tokio::test]
    async fn a_job_that_does_not_panic_gives_its_result() {
        assert_eq!(caught(async { 7 }).await.ok(), Some(7));
    }

    #[test]
    fn the_panic_text_is_one_bounded_line() {
        let long = format!("first\r\nsecond {}", "x".repeat(1000));
        let text = panic_text(&long);
        assert!(!text.contains('\n') && !text.contains('\r'));
        assert!(text.chars().count() <= MAX_DETAIL + "panic: ".len());
        assert_eq!(panic_text(&42u8), "panic: a panic without a message");
    }
}

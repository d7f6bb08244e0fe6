//! What to do with an email that failed to be stored (a poison email: its preparation panicked
//! or failed, while the rest of its batch is fine). Only that email is affected: it is retried on
//! the next syncs and skipped once it has failed `max_tries` times, so the mailbox goes on.
//!
//! Invariant: an IMAP folder cursor never passes an email that is neither stored nor recorded as
//! skipped; a POP3 email gets no sync id map entry until it is stored or skipped (and a skipped
//! one is never deleted).

/// The decision for one failed email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemDecision {
    /// Try again on a later sync; this was try `tries` of `max`.
    RetryLater { tries: u32, max: u32 },
    /// Tried `tries` times: pass over it (recorded, listed, retryable through the API).
    Skip { tries: u32 },
}

impl ItemDecision {
    pub fn skipped(&self) -> bool {
        matches!(self, ItemDecision::Skip { .. })
    }
}

/// `previous_tries`: the failures recorded for this email before this one.
pub fn after_item_failure(previous_tries: u32, max_tries: u32) -> ItemDecision {
    let tries = previous_tries.saturating_add(1);
    if tries >= max_tries.max(1) {
        ItemDecision::Skip { tries }
    } else {
        ItemDecision::RetryLater {
            tries,
            max: max_tries,
        }
    }
}

/// IMAP: where a batch must stop when an email of it is to be retried later. Messages below the
/// first such UID commit, the cursor stops just below it (the rest is fetched again next time).
/// `None`: nothing to retry, the batch commits whole.
pub fn imap_stop_at(retry_uids: impl IntoIterator<Item = u32>) -> Option<u32> {
    retry_uids.into_iter().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_until_the_last_try_then_skipped() {
        assert_eq!(
            after_item_failure(0, 3),
            ItemDecision::RetryLater { tries: 1, max: 3 }
        );
        assert_eq!(
            after_item_failure(1, 3),
            ItemDecision::RetryLater { tries: 2, max: 3 }
        );
        assert_eq!(after_item_failure(2, 3), ItemDecision::Skip { tries: 3 });
        // A record that somehow went past the limit is still skipped, never retried forever.
        assert_eq!(after_item_failure(7, 3), ItemDecision::Skip { tries: 8 });
    }

    #[test]
    fn one_try_means_skip_at_once() {
        assert!(after_item_failure(0, 1).skipped());
        assert!(after_item_failure(0, 0).skipped(), "0 is treated as 1");
    }

    #[test]
    fn the_batch_stops_at_the_lowest_uid_to_retry() {
        assert_eq!(imap_stop_at([9, 4, 12]), Some(4));
        assert_eq!(imap_stop_at(Vec::<u32>::new()), None);
    }
}

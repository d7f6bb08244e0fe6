//! Stale mailboxes: processed, yet without a successful sync for `stale_after_polls` of their
//! polling intervals — a mailbox that silently stopped, which helpdesk tools' users most often
//! learn of too late. Pure; the page, `/status`, `/metrics` and the alert watch share it.

use chrono::{DateTime, Utc};

/// When a processed mailbox became (or becomes) stale: `polls` polling intervals after its last
/// successful sync, counted from no earlier than `watching_since` (the appliance's start: time
/// it was not running does not count). None when staleness is off (`polls` = 0).
pub fn stale_at(
    last_success: Option<DateTime<Utc>>,
    watching_since: DateTime<Utc>,
    polling_interval: std::time::Duration,
    polls: u32,
) -> Option<DateTime<Utc>> {
    if polls == 0 {
        return None;
    }
    let from = last_success.map_or(watching_since, |t| t.max(watching_since));
    let span = chrono::Duration::from_std(polling_interval.saturating_mul(polls)).ok()?;
    from.checked_add_signed(span)
}

/// Whether it is stale at `now`.
pub fn is_stale(
    last_success: Option<DateTime<Utc>>,
    watching_since: DateTime<Utc>,
    polling_interval: std::time::Duration,
    polls: u32,
    now: DateTime<Utc>,
) -> bool {
    stale_at(last_success, watching_since, polling_interval, polls).is_some_and(|at| now >= at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn t(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + minute * 60, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn stale_after_the_number_of_polls_since_the_last_success() {
        let minute = Duration::from_secs(60);
        assert!(!is_stale(Some(t(0)), t(0), minute, 10, t(9)));
        assert!(is_stale(Some(t(0)), t(0), minute, 10, t(10)));
        assert!(is_stale(Some(t(5)), t(0), minute, 10, t(15)));
        assert!(!is_stale(Some(t(5)), t(0), minute, 10, t(14)));
    }

    #[test]
    fn downtime_and_never_synced_count_from_the_start() {
        let minute = Duration::from_secs(60);
        // Synced a day ago, the appliance started a minute ago: not stale yet.
        assert!(!is_stale(Some(t(-1440)), t(0), minute, 10, t(1)));
        assert!(is_stale(Some(t(-1440)), t(0), minute, 10, t(10)));
        // Never synced: from the start.
        assert!(!is_stale(None, t(0), minute, 3, t(2)));
        assert!(is_stale(None, t(0), minute, 3, t(3)));
    }

    #[test]
    fn zero_polls_turns_it_off_and_huge_values_do_not_overflow() {
        assert!(!is_stale(
            None,
            t(0),
            Duration::from_secs(60),
            0,
            t(100_000)
        ));
        assert!(!is_stale(None, t(0), Duration::MAX, 100_000, t(100_000)));
    }
}

//! "Process email received after", per mailbox (P6), as Dynamics has it: a mailbox takes the
//! profile's date at its first enable; after that the later of the profile's and the mailbox's
//! dates applies. A mailbox whose filter is not "all" and that has no date gets one at its first
//! enable, `first_sync_days` back, so turning relevance on never pulls years of history. Moving the
//! date earlier than what a mailbox was synced with pulls the emails in between (a backfill).

/// The date a mailbox takes at its first enable (unix time): the profile's, or `window_days` back
/// from `now` when relevance is on and a window is set, or none (everything).
pub fn at_first_enable(
    profile: Option<i64>,
    relevance_on: bool,
    window_days: u32,
    now: i64,
) -> Option<i64> {
    profile.or_else(|| {
        (relevance_on && window_days > 0).then(|| now - i64::from(window_days) * 86_400)
    })
}

/// The date in force: the later of the profile's and the mailbox's (its own config value, else
/// the one it took at first enable).
pub fn effective(
    profile: Option<i64>,
    mailbox_config: Option<i64>,
    at_enable: Option<i64>,
) -> Option<i64> {
    match (profile, mailbox_config.or(at_enable)) {
        (Some(p), Some(m)) => Some(p.max(m)),
        (p, m) => p.or(m),
    }
}

/// True when the mailbox was synced from a later date than `effective` now says: the emails in
/// between were passed over and must be fetched. `synced`: whether it was synced at all, and
/// from what date (None: everything).
pub fn needs_backfill(effective: Option<i64>, synced: Option<Option<i64>>) -> bool {
    match (synced, effective) {
        (None, _) | (Some(None), _) => false,
        (Some(Some(_)), None) => true,
        (Some(Some(was)), Some(now)) => now < was,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn first_enable_takes_the_profile_date_or_a_window_when_relevance_is_on() {
        let now = 1000 * DAY;
        assert_eq!(at_first_enable(Some(5 * DAY), true, 30, now), Some(5 * DAY));
        assert_eq!(at_first_enable(None, true, 30, now), Some(970 * DAY));
        assert_eq!(
            at_first_enable(None, false, 30, now),
            None,
            "track = all: everything"
        );
        assert_eq!(at_first_enable(None, true, 0, now), None, "no window");
    }

    #[test]
    fn the_later_date_applies() {
        assert_eq!(effective(Some(10), Some(20), None), Some(20));
        assert_eq!(effective(Some(30), Some(20), None), Some(30));
        assert_eq!(
            effective(Some(10), None, Some(20)),
            Some(20),
            "the date taken at first enable"
        );
        assert_eq!(
            effective(Some(10), Some(5), Some(20)),
            Some(10),
            "the mailbox's own date wins over its first"
        );
        assert_eq!(effective(None, None, None), None);
    }

    #[test]
    fn moving_the_date_earlier_backfills() {
        assert!(needs_backfill(Some(10), Some(Some(20))));
        assert!(
            needs_backfill(None, Some(Some(20))),
            "the date removed: everything"
        );
        assert!(
            !needs_backfill(Some(20), Some(Some(10))),
            "later: nothing to pull"
        );
        assert!(!needs_backfill(Some(10), Some(Some(10))));
        assert!(
            !needs_backfill(Some(10), Some(None)),
            "synced everything already"
        );
        assert!(
            !needs_backfill(Some(10), None),
            "never synced: the first sync takes it"
        );
    }
}

//! The one rule for "failing", shared by the status page (order and counts), `/metrics`, the
//! profile line's "failing in the last hour" and the 50% alert email (P11).

use chrono::{DateTime, Duration, Utc};

use super::state::{Enablement, MailboxState, RunStatus};

/// A direction's last run failed, or a direction is disabled.
pub fn failing(s: &MailboxState) -> bool {
    let disabled = |e: &Enablement| matches!(e, Enablement::Disabled { .. });
    s.incoming_status == RunStatus::Failure
        || s.outgoing_status == RunStatus::Failure
        || disabled(&s.incoming_enablement)
        || disabled(&s.outgoing_enablement)
}

/// When it last failed: its latest error, or the time a direction was disabled, whichever is later.
pub fn failed_at(s: &MailboxState) -> Option<DateTime<Utc>> {
    let disabled_at = |e: &Enablement| match e {
        Enablement::Disabled { at, .. } => Some(*at),
        _ => None,
    };
    [
        s.last_error.as_ref().map(|e| e.at),
        disabled_at(&s.incoming_enablement),
        disabled_at(&s.outgoing_enablement),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// Failing, with its failure less than `window` before `now`.
pub fn failing_within(s: &MailboxState, now: DateTime<Utc>, window: Duration) -> bool {
    failing(s) && failed_at(s).is_some_and(|t| now - t < window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::state::LastError;

    fn error(at: DateTime<Utc>) -> Option<LastError> {
        Some(LastError {
            text: "x".into(),
            code: "timeout".into(),
            transient: true,
            consecutive: 1,
            at,
        })
    }

    #[test]
    fn each_way_of_failing() {
        let now = Utc::now();
        assert!(
            !failing(&MailboxState::default()),
            "never run is not failing"
        );
        let incoming = MailboxState {
            incoming_status: RunStatus::Failure,
            last_error: error(now),
            ..MailboxState::default()
        };
        assert!(failing(&incoming));
        let outgoing = MailboxState {
            outgoing_status: RunStatus::Failure,
            ..MailboxState::default()
        };
        assert!(failing(&outgoing));
        let disabled = MailboxState {
            outgoing_enablement: Enablement::Disabled {
                code: "c".into(),
                reason: "r".into(),
                at: now,
            },
            ..MailboxState::default()
        };
        assert!(failing(&disabled));
        let recovered = MailboxState {
            incoming_status: RunStatus::Success,
            last_error: error(now),
            ..MailboxState::default()
        };
        assert!(
            !failing(&recovered),
            "an old error after a success is not failing"
        );
    }

    #[test]
    fn within_the_window_counts_from_the_latest_failure() {
        let now = Utc::now();
        let s = |error_at: DateTime<Utc>, disabled_at: Option<DateTime<Utc>>| MailboxState {
            incoming_status: RunStatus::Failure,
            last_error: error(error_at),
            incoming_enablement: disabled_at.map_or(Enablement::Enabled, |at| {
                Enablement::Disabled {
                    code: "c".into(),
                    reason: "r".into(),
                    at,
                }
            }),
            ..MailboxState::default()
        };
        let hour = Duration::hours(1);
        assert!(failing_within(
            &s(now - Duration::minutes(59), None),
            now,
            hour
        ));
        assert!(!failing_within(
            &s(now - Duration::minutes(61), None),
            now,
            hour
        ));
        assert!(
            failing_within(
                &s(now - Duration::hours(3), Some(now - Duration::minutes(5))),
                now,
                hour
            ),
            "disabled five minutes ago counts, whatever the error's age"
        );
        assert_eq!(failed_at(&MailboxState::default()), None);
    }
}

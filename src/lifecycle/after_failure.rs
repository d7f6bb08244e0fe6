//! M8: what follows a failed sync. A transient error is retried after `retry_interval`, up to
//! `transient_failure_retries` times in a row (Dynamics: 10); then, or at once for a permanent
//! error, incoming is disabled until Test & Enable succeeds or the config changes.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after the retry interval: this was failure `attempt` of `allowed` in a row.
    Retry { attempt: u32, allowed: u32 },
    /// Turn incoming off; `why` is the reason the alert and `/status` give.
    Disable { why: String },
}

/// `failures_before`: transient failures in a row before this one; `text`: this failure.
pub fn after_failure(
    failures_before: u32,
    retries: u32,
    transient: bool,
    text: &str,
) -> AfterFailure {
    let attempt = failures_before.saturating_add(1);
    match (transient, attempt <= retries) {
        (true, true) => AfterFailure::Retry {
            attempt,
            allowed: retries.saturating_add(1),
        },
        (true, false) => AfterFailure::Disable {
            why: format!("{text} (failed {attempt} times in a row)"),
        },
        (false, _) => AfterFailure::Disable {
            why: text.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_failure_is_retried_while_retries_last() {
        assert_eq!(
            after_failure(0, 10, true, "timeout"),
            AfterFailure::Retry {
                attempt: 1,
                allowed: 11
            }
        );
        assert_eq!(
            after_failure(9, 10, true, "timeout"),
            AfterFailure::Retry {
                attempt: 10,
                allowed: 11
            }
        );
    }

    #[test]
    fn one_transient_failure_too_many_disables_and_says_how_many() {
        assert_eq!(
            after_failure(10, 10, true, "timeout"),
            AfterFailure::Disable {
                why: "timeout (failed 11 times in a row)".into()
            }
        );
        assert_eq!(
            after_failure(0, 0, true, "busy"),
            AfterFailure::Disable {
                why: "busy (failed 1 times in a row)".into()
            },
            "no retries configured: the first failure disables"
        );
    }

    #[test]
    fn a_permanent_failure_disables_at_once() {
        assert_eq!(
            after_failure(0, 10, false, "authentication rejected"),
            AfterFailure::Disable {
                why: "authentication rejected".into()
            }
        );
    }
}

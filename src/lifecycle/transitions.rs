//! How a mailbox's state changes with each lifecycle event (a sync started, succeeded or failed,
//! a Test & Enable ran, a direction was disabled, an approval was set). Pure: the store writer
//! loads the state, calls [`apply`] and saves it in the same transaction.

use chrono::{DateTime, Utc};

use super::state::{ApprovalOverride, Enablement, LastError, MailboxState, RunStatus, TestRecord};

/// A lifecycle event of one mailbox.
#[derive(Debug, Clone)]
pub enum MailboxUpdate {
    SyncStarted {
        at: DateTime<Utc>,
    },
    SyncSucceeded {
        at: DateTime<Utc>,
        duration_ms: u64,
    },
    SyncFailed {
        at: DateTime<Utc>,
        text: String,
        code: String,
        transient: bool,
        retry_at: Option<DateTime<Utc>>,
    },
    /// A Test & Enable ran: record it, and set each direction's enablement.
    Tested {
        profile: Option<String>,
        record: Box<TestRecord>,
        fingerprint: String,
        incoming: Enablement,
        outgoing: Enablement,
    },
    /// A permanent error turned one direction off.
    Disabled {
        incoming: bool,
        code: String,
        reason: String,
        at: DateTime<Utc>,
        fingerprint: String,
    },
    /// The date taken at first enable (P6).
    ProcessFromSet {
        at_enable: Option<i64>,
    },
    /// A sync completed under this date: the folders hold everything received after it.
    SyncedFrom {
        from: Option<i64>,
    },
    /// Its stale alert was raised.
    StaleAlerted {
        at: DateTime<Utc>,
    },
    /// Approval set through the API.
    Approved {
        approval: String,
        config_approval: String,
        at: DateTime<Utc>,
    },
}

/// Applies `update` to `s`.
pub fn apply(s: &mut MailboxState, update: &MailboxUpdate) {
    match update {
        MailboxUpdate::SyncStarted { at } => {
            s.processing_last_attempted_on = Some(*at);
            s.last_sync_started_on = Some(*at);
            s.items_processed_last_sync = 0;
            s.items_failed_last_sync = 0;
        }
        MailboxUpdate::SyncSucceeded { at, duration_ms } => {
            s.incoming_status = RunStatus::Success;
            s.postponed_until = None;
            s.last_successful_sync_completed_on = Some(*at);
            s.last_sync_duration_ms = Some(*duration_ms);
            s.transient_failure_count = 0;
            s.last_error = None;
            s.stale_alerted_at = None;
        }
        MailboxUpdate::StaleAlerted { at } => {
            s.stale_alerted_at = Some(*at);
        }
        MailboxUpdate::SyncFailed {
            at,
            text,
            code,
            transient,
            retry_at,
        } => {
            s.incoming_status = RunStatus::Failure;
            s.postponed_until = *retry_at;
            if *transient {
                s.transient_failure_count += 1;
            }
            record_error(s, text.clone(), code.clone(), *transient, *at);
        }
        MailboxUpdate::Tested {
            profile: _,
            record,
            fingerprint,
            incoming,
            outgoing,
        } => {
            s.incoming_status = record.incoming.status;
            s.outgoing_status = record.outgoing.status;
            s.incoming_enablement = incoming.clone();
            s.outgoing_enablement = outgoing.clone();
            s.config_fingerprint = Some(fingerprint.clone());
            s.last_test = Some((**record).clone());
            // A failed test is the mailbox's latest error too.
            let failed = [&record.incoming, &record.outgoing]
                .into_iter()
                .find(|t| t.status == RunStatus::Failure);
            if let Some(t) = failed {
                record_error(
                    s,
                    t.reason.clone().unwrap_or_default(),
                    t.code.clone().unwrap_or_default(),
                    t.transient,
                    record.started_at,
                );
            }
            if *incoming == Enablement::Enabled {
                // A successful test starts the mailbox afresh (Dynamics resets the failure count).
                s.transient_failure_count = 0;
                s.postponed_until = None;
                s.last_error = None;
            }
        }
        MailboxUpdate::Disabled {
            incoming,
            code,
            reason,
            at,
            fingerprint,
        } => {
            let off = Enablement::Disabled {
                code: code.clone(),
                reason: reason.clone(),
                at: *at,
            };
            if *incoming {
                s.incoming_enablement = off;
                s.incoming_status = RunStatus::Failure;
            } else {
                s.outgoing_enablement = off;
                s.outgoing_status = RunStatus::Failure;
            }
            s.config_fingerprint = Some(fingerprint.clone());
            s.postponed_until = None;
        }
        MailboxUpdate::ProcessFromSet { at_enable } => {
            s.process_from_at_enable = *at_enable;
            s.process_from_set = true;
        }
        MailboxUpdate::SyncedFrom { from } => {
            s.synced_from = *from;
            s.synced = true;
        }
        MailboxUpdate::Approved {
            approval,
            config_approval,
            at,
        } => {
            s.approval_override = Some(ApprovalOverride {
                approval: approval.clone(),
                config_approval: config_approval.clone(),
                at: *at,
            });
        }
    }
}

/// The mailbox's latest error; the same code again counts as one more in a row.
fn record_error(
    s: &mut MailboxState,
    text: String,
    code: String,
    transient: bool,
    at: DateTime<Utc>,
) {
    let consecutive = match &s.last_error {
        Some(e) if e.code == code => e.consecutive + 1,
        _ => 1,
    };
    s.last_error = Some(LastError {
        text,
        code,
        transient,
        consecutive,
        at,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::state::DirectionTest;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_760_000_000 + minute * 60, 0).unwrap_or_default()
    }

    fn failed(code: &str, transient: bool, minute: i64) -> MailboxUpdate {
        MailboxUpdate::SyncFailed {
            at: at(minute),
            text: format!("{code} happened"),
            code: code.into(),
            transient,
            retry_at: Some(at(minute + 5)),
        }
    }

    fn tested(incoming: RunStatus, enablement: Enablement) -> MailboxUpdate {
        MailboxUpdate::Tested {
            profile: None,
            record: Box::new(TestRecord {
                mailbox: "a@x".into(),
                started_at: at(30),
                duration_ms: 5,
                incoming: DirectionTest {
                    status: incoming,
                    code: (incoming == RunStatus::Failure)
                        .then(|| "authentication_rejected".into()),
                    reason: (incoming == RunStatus::Failure).then(|| "wrong password".into()),
                    transient: false,
                    transcript: String::new(),
                },
                outgoing: DirectionTest::default(),
            }),
            fingerprint: "f1".into(),
            incoming: enablement.clone(),
            outgoing: Enablement::NotTested,
        }
    }

    #[test]
    fn a_sync_start_clears_the_last_sync_counts() {
        let mut s = MailboxState {
            items_processed_last_sync: 7,
            items_failed_last_sync: 2,
            ..MailboxState::default()
        };
        apply(&mut s, &MailboxUpdate::SyncStarted { at: at(0) });
        assert_eq!(
            (s.items_processed_last_sync, s.items_failed_last_sync),
            (0, 0)
        );
        assert_eq!(s.last_sync_started_on, Some(at(0)));
        assert_eq!(s.processing_last_attempted_on, Some(at(0)));
    }

    #[test]
    fn failures_count_in_a_row_and_a_success_resets_them() {
        let mut s = MailboxState::default();
        apply(&mut s, &failed("timeout", true, 0));
        apply(&mut s, &failed("timeout", true, 5));
        let e = s.last_error.clone().expect("error");
        assert_eq!(
            (e.code.as_str(), e.consecutive, e.at),
            ("timeout", 2, at(5))
        );
        assert_eq!(s.transient_failure_count, 2);
        assert_eq!(s.incoming_status, RunStatus::Failure);
        assert_eq!(s.postponed_until, Some(at(10)));
        // Another code starts a new run of consecutive errors; a permanent one is not transient.
        apply(&mut s, &failed("folder_missing", false, 6));
        assert_eq!(s.last_error.as_ref().map(|e| e.consecutive), Some(1));
        assert_eq!(s.transient_failure_count, 2);
        apply(
            &mut s,
            &MailboxUpdate::SyncSucceeded {
                at: at(7),
                duration_ms: 12,
            },
        );
        assert_eq!(s.incoming_status, RunStatus::Success);
        assert_eq!(
            (s.transient_failure_count, s.last_error.is_none()),
            (0, true)
        );
        assert_eq!(s.postponed_until, None);
        assert_eq!(s.last_sync_duration_ms, Some(12));
    }

    #[test]
    fn a_passed_test_enables_and_starts_afresh() {
        let mut s = MailboxState::default();
        apply(&mut s, &failed("timeout", true, 0));
        apply(&mut s, &tested(RunStatus::Success, Enablement::Enabled));
        assert_eq!(s.incoming_enablement, Enablement::Enabled);
        assert_eq!(s.config_fingerprint.as_deref(), Some("f1"));
        assert_eq!(
            (s.transient_failure_count, s.last_error.is_none()),
            (0, true)
        );
        assert!(s.last_test.is_some());
    }

    #[test]
    fn a_failed_test_is_the_latest_error() {
        let mut s = MailboxState::default();
        let off = Enablement::Disabled {
            code: "authentication_rejected".into(),
            reason: "wrong password".into(),
            at: at(30),
        };
        apply(&mut s, &tested(RunStatus::Failure, off.clone()));
        assert_eq!(s.incoming_enablement, off);
        let e = s.last_error.expect("error");
        assert_eq!(
            (e.code.as_str(), e.text.as_str()),
            ("authentication_rejected", "wrong password")
        );
    }

    #[test]
    fn disabling_one_direction_leaves_the_other() {
        let mut s = MailboxState {
            incoming_enablement: Enablement::Enabled,
            outgoing_enablement: Enablement::Enabled,
            postponed_until: Some(at(9)),
            ..MailboxState::default()
        };
        apply(
            &mut s,
            &MailboxUpdate::Disabled {
                incoming: false,
                code: "authentication_rejected".into(),
                reason: "r".into(),
                at: at(1),
                fingerprint: "f2".into(),
            },
        );
        assert_eq!(s.incoming_enablement, Enablement::Enabled);
        assert!(matches!(s.outgoing_enablement, Enablement::Disabled { .. }));
        assert_eq!(s.outgoing_status, RunStatus::Failure);
        assert_eq!(s.postponed_until, None);
        assert_eq!(s.config_fingerprint.as_deref(), Some("f2"));
    }

    #[test]
    fn an_approval_is_kept_with_the_config_value_it_overrides() {
        let mut s = MailboxState::default();
        apply(
            &mut s,
            &MailboxUpdate::Approved {
                approval: "approved".into(),
                config_approval: "pending_approval".into(),
                at: at(2),
            },
        );
        let o = s.approval_override.expect("override");
        assert_eq!(
            (o.approval.as_str(), o.config_approval.as_str()),
            ("approved", "pending_approval")
        );
    }
}

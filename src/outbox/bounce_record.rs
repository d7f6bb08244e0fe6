//! What the outbox keeps of delivery status reports: per recipient, the latest word on whether
//! the email will arrive. A pure rule over the entry's recorded reports and a new one, so that
//! the store writer applies it in the transaction that ingests the report.
//!
//! Invariants:
//! - one record per recipient (compared case-insensitively);
//! - `bounced` is final: a later `delayed` for the same recipient does not undo it (a server
//!   that has given up does not try again; a late delay report was only slow to arrive);
//! - the same report ingested twice (two mailboxes see it) changes nothing the second time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::bounce::{Outcome, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Permanent (5.x.x): the email will not reach this recipient.
    Bounced,
    /// Transient (4.x.x): a server still tries.
    Delayed,
}

/// One recipient's delivery as a report told it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub address: String,
    pub outcome: DeliveryOutcome,
    /// The enhanced status code, `5.1.1`.
    pub status: String,
    pub diagnostic: Option<String>,
    /// The activity of the report itself; None when the mailbox does not keep bounces as
    /// activities (`skip_automatic`).
    pub report: Option<u64>,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Bounced => "bounced",
            DeliveryOutcome::Delayed => "delayed",
        }
    }
}

/// Folds `report` (ingested as activity `report_id`, if kept, at `at`) into `deliveries`; true when
/// anything changed (then the writer emits `outbox.bounced` and `activity.updated`).
pub fn apply(
    deliveries: &mut Vec<Delivery>,
    report: &Report,
    report_id: Option<u64>,
    at: DateTime<Utc>,
) -> bool {
    let mut changed = false;
    for r in &report.recipients {
        let outcome = match r.outcome() {
            Some(Outcome::Bounced) => DeliveryOutcome::Bounced,
            Some(Outcome::Delayed) => DeliveryOutcome::Delayed,
            // Delivered, relayed, expanded: nothing went wrong for this recipient.
            None => continue,
        };
        let new = Delivery {
            address: r.original.clone().unwrap_or_else(|| r.address.clone()),
            outcome,
            status: r.status.to_string(),
            diagnostic: r.diagnostic.clone(),
            report: report_id,
            at,
        };
        let same = |d: &Delivery| {
            d.address.eq_ignore_ascii_case(&r.address)
                || r.original
                    .as_deref()
                    .is_some_and(|o| d.address.eq_ignore_ascii_case(o))
        };
        match deliveries.iter_mut().find(|d| same(d)) {
            None => {
                deliveries.push(new);
                changed = true;
            }
            // The same report again (or one reporting the same thing): nothing new.
            Some(old)
                if (report_id.is_some() && old.report == report_id)
                    || old.outcome == DeliveryOutcome::Bounced
                    || (old.outcome == new.outcome && old.status == new.status) => {}
            Some(old) => {
                *old = new;
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::bounce::{Action, Format, Recipient, Status};

    fn report(address: &str, status: &str) -> Report {
        let status = Status::parse(status).unwrap_or(Status::PERMANENT);
        Report {
            format: Format::Rfc3464,
            envelope_id: None,
            original_message_id: None,
            recipients: vec![Recipient {
                address: address.into(),
                original: None,
                action: if status.class == 4 {
                    Action::Delayed
                } else {
                    Action::Failed
                },
                status,
                diagnostic: Some("550 no such user".into()),
            }],
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_765_015_200, 0).unwrap_or_default()
    }

    #[test]
    fn a_bounce_is_recorded_with_its_code_and_diagnostic() {
        let mut d = Vec::new();
        assert!(apply(
            &mut d,
            &report("x@example.net", "5.1.1"),
            Some(9),
            at()
        ));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].outcome, DeliveryOutcome::Bounced);
        assert_eq!(d[0].status, "5.1.1");
        assert_eq!(d[0].diagnostic.as_deref(), Some("550 no such user"));
        assert_eq!(d[0].report, Some(9));
    }

    #[test]
    fn the_same_report_twice_changes_nothing() {
        let mut d = Vec::new();
        let r = report("x@example.net", "4.4.1");
        assert!(apply(&mut d, &r, Some(9), at()));
        assert!(!apply(&mut d, &r, Some(9), at()));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_delay_then_a_bounce_ends_bounced_and_a_late_delay_does_not_undo_it() {
        let mut d = Vec::new();
        assert!(apply(
            &mut d,
            &report("x@example.net", "4.4.1"),
            Some(9),
            at()
        ));
        assert!(apply(
            &mut d,
            &report("X@example.net", "5.4.7"),
            Some(10),
            at()
        ));
        assert_eq!(
            (d[0].outcome, d[0].status.as_str()),
            (DeliveryOutcome::Bounced, "5.4.7")
        );
        assert!(!apply(
            &mut d,
            &report("x@example.net", "4.4.1"),
            Some(11),
            at()
        ));
        assert_eq!(d[0].outcome, DeliveryOutcome::Bounced);
    }

    #[test]
    fn a_delivered_recipient_is_not_recorded() {
        let mut d = Vec::new();
        assert!(!apply(
            &mut d,
            &report("x@example.net", "2.0.0"),
            Some(9),
            at()
        ));
        assert!(d.is_empty());
    }

    #[test]
    fn a_stored_delivery_reads_back() {
        let mut d = Vec::new();
        apply(&mut d, &report("x@example.net", "5.1.1"), Some(9), at());
        let json = serde_json::to_string(&d[0]).unwrap_or_default();
        assert!(json.contains("\"outcome\":\"bounced\""), "{json}");
        let back: Delivery = serde_json::from_str(&json).unwrap_or_else(|_| d[0].clone());
        assert_eq!(back, d[0]);
    }
}

//! Which sent email a delivery status report is about. A pure rule over the report and the
//! mailbox's sent outbox entries, tried in order of how sure each clue is:
//! 1. the returned message's Message-ID: sidesync wrote it, it names one email anywhere;
//! 2. the ENVID (`Original-Envelope-Id`), which the outbox sets to the outbox id; numbers are
//!    easy to collide with, so only an entry of the mailbox that received the report counts;
//! 3. the envelope sender (the report came back to this mailbox) and a failed recipient: only
//!    when exactly one sent entry fits. Two candidates are left unmatched rather than guessed,
//!    because recording a bounce on the wrong email is worse than recording none.

use super::bounce::Report;

/// A sent outbox entry, as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent<'a> {
    pub outbox_id: u64,
    pub mailbox: &'a str,
    /// The Message-ID it was sent with, without angle brackets.
    pub message_id: Option<&'a str>,
    pub recipients: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    MessageId(u64),
    EnvelopeId(u64),
    SenderAndRecipient(u64),
    /// Several entries fit the weakest clue; none is chosen.
    Ambiguous(Vec<u64>),
    Unmatched,
}

impl Matched {
    /// The outbox id the report is recorded on.
    pub fn outbox_id(&self) -> Option<u64> {
        match self {
            Matched::MessageId(id) | Matched::EnvelopeId(id) | Matched::SenderAndRecipient(id) => {
                Some(*id)
            }
            Matched::Ambiguous(_) | Matched::Unmatched => None,
        }
    }
}

/// The sent entry `report` is about, received in `mailbox`.
pub fn match_report(report: &Report, mailbox: &str, sent: &[Sent<'_>]) -> Matched {
    if let Some(id) = report.original_message_id.as_deref() {
        let id = id.trim_matches(['<', '>']);
        if let Some(s) = sent.iter().find(|s| {
            s.message_id
                .is_some_and(|m| m.trim_matches(['<', '>']) == id)
        }) {
            return Matched::MessageId(s.outbox_id);
        }
    }
    if let Some(envid) = report
        .envelope_id
        .as_deref()
        .and_then(|e| e.trim().parse::<u64>().ok())
        && let Some(s) = sent
            .iter()
            .find(|s| s.outbox_id == envid && s.mailbox == mailbox)
    {
        return Matched::EnvelopeId(s.outbox_id);
    }
    let failed = |s: &&Sent<'_>| {
        s.mailbox == mailbox
            && report.recipients.iter().any(|r| {
                r.outcome().is_some()
                    && s.recipients.iter().any(|to| {
                        to.eq_ignore_ascii_case(&r.address)
                            || r.original
                                .as_deref()
                                .is_some_and(|o| to.eq_ignore_ascii_case(o))
                    })
            })
    };
    let fits: Vec<u64> = sent.iter().filter(failed).map(|s| s.outbox_id).collect();
    match fits.as_slice() {
        [] => Matched::Unmatched,
        [one] => Matched::SenderAndRecipient(*one),
        _ => Matched::Ambiguous(fits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::bounce::{Action, Format, Recipient, Status};

    fn report(message_id: Option<&str>, envid: Option<&str>, to: &str) -> Report {
        Report {
            format: Format::Rfc3464,
            envelope_id: envid.map(str::to_string),
            original_message_id: message_id.map(str::to_string),
            recipients: vec![Recipient {
                address: to.into(),
                original: None,
                action: Action::Failed,
                status: Status::PERMANENT,
                diagnostic: None,
            }],
        }
    }

    fn rcpts(a: &str) -> Vec<String> {
        vec![a.to_string()]
    }

    #[test]
    fn message_id_wins_over_every_other_clue_and_any_mailbox() {
        let (a, b) = (rcpts("x@example.net"), rcpts("y@example.net"));
        let sent = [
            Sent {
                outbox_id: 7,
                mailbox: "sales",
                message_id: Some("m7@ex"),
                recipients: &a,
            },
            Sent {
                outbox_id: 8,
                mailbox: "other",
                message_id: Some("m8@ex"),
                recipients: &b,
            },
        ];
        let r = report(Some("<m8@ex>"), Some("7"), "x@example.net");
        assert_eq!(match_report(&r, "sales", &sent), Matched::MessageId(8));
    }

    #[test]
    fn envelope_id_when_the_message_id_is_unknown_in_the_same_mailbox_only() {
        let a = rcpts("x@example.net");
        let sent = [Sent {
            outbox_id: 7,
            mailbox: "sales",
            message_id: Some("m7@ex"),
            recipients: &a,
        }];
        let r = report(Some("stranger@ex"), Some(" 7 "), "nobody@example.org");
        assert_eq!(match_report(&r, "sales", &sent), Matched::EnvelopeId(7));
        assert_eq!(
            match_report(&r, "support", &sent),
            Matched::Unmatched,
            "another mailbox's ENVID 7 is someone else's"
        );
    }

    #[test]
    fn sender_and_recipient_when_exactly_one_entry_fits() {
        let (a, b) = (rcpts("X@Example.net"), rcpts("y@example.net"));
        let sent = [
            Sent {
                outbox_id: 7,
                mailbox: "sales",
                message_id: None,
                recipients: &a,
            },
            Sent {
                outbox_id: 8,
                mailbox: "sales",
                message_id: None,
                recipients: &b,
            },
        ];
        let r = report(None, Some("ob-x"), "x@example.net");
        assert_eq!(
            match_report(&r, "sales", &sent),
            Matched::SenderAndRecipient(7)
        );
        assert_eq!(match_report(&r, "support", &sent), Matched::Unmatched);
    }

    #[test]
    fn original_recipient_counts_when_the_final_one_was_rewritten() {
        let a = rcpts("alias@example.net");
        let sent = [Sent {
            outbox_id: 3,
            mailbox: "sales",
            message_id: None,
            recipients: &a,
        }];
        let mut r = report(None, None, "real.person@mx.example.net");
        r.recipients[0].original = Some("alias@example.net".into());
        assert_eq!(
            match_report(&r, "sales", &sent),
            Matched::SenderAndRecipient(3)
        );
    }

    #[test]
    fn two_fitting_entries_are_ambiguous_and_not_guessed() {
        let a = rcpts("x@example.net");
        let sent = [
            Sent {
                outbox_id: 7,
                mailbox: "sales",
                message_id: None,
                recipients: &a,
            },
            Sent {
                outbox_id: 9,
                mailbox: "sales",
                message_id: None,
                recipients: &a,
            },
        ];
        let m = match_report(&report(None, None, "x@example.net"), "sales", &sent);
        assert_eq!(m, Matched::Ambiguous(vec![7, 9]));
        assert_eq!(m.outbox_id(), None);
    }

    #[test]
    fn a_delivered_recipient_is_no_clue() {
        let a = rcpts("x@example.net");
        let sent = [Sent {
            outbox_id: 7,
            mailbox: "sales",
            message_id: None,
            recipients: &a,
        }];
        let mut r = report(None, None, "x@example.net");
        r.recipients[0].status = Status {
            class: 2,
            subject: 0,
            detail: 0,
        };
        r.recipients[0].action = Action::Delivered;
        assert_eq!(match_report(&r, "sales", &sent), Matched::Unmatched);
    }
}

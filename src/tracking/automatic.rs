//! Automatic email: email written by machines — mailing lists, bulk mail, automatic replies,
//! bounces, and other RFC 3834 auto-submitted mail. The kind is a property of the activity, not a
//! reason to skip it: `track = "all"` tracks every email, an admin skips kinds with
//! `skip_automatic`, and `responses` / `known_contacts` keep their rule that automatic email
//! never starts a conversation (it may join one it correlates with: a bounce of a tracked email
//! belongs beside it).

use mail_parser::{Message, MimeHeaders};
use serde::{Deserialize, Serialize};

/// The kind of an automatic email. The aliases read activities stored before the kinds had
/// these names (`noise`: `delivery_status`, `auto_generated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Automatic {
    /// Mailing-list mail: `List-Id`, `Precedence: list`, or `List-Unsubscribe` without a bulk
    /// precedence.
    List,
    /// Bulk mail: `Precedence: bulk` or `junk` (newsletters, marketing).
    Bulk,
    /// An out-of-office or other automatic reply.
    AutoReply,
    /// A delivery status notification (RFC 3464) or a bounce from a mailer daemon.
    #[serde(alias = "delivery_status")]
    Bounce,
    /// `Auto-Submitted` other than `no` (RFC 3834) that is not a reply: notifications, cron.
    #[serde(alias = "auto_generated")]
    AutoSubmitted,
}

impl Automatic {
    pub const ALL: [Automatic; 5] = [
        Automatic::List,
        Automatic::Bulk,
        Automatic::AutoReply,
        Automatic::Bounce,
        Automatic::AutoSubmitted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Automatic::List => "list",
            Automatic::Bulk => "bulk",
            Automatic::AutoReply => "auto_reply",
            Automatic::Bounce => "bounce",
            Automatic::AutoSubmitted => "auto_submitted",
        }
    }

    pub fn parse(word: &str) -> Option<Automatic> {
        Automatic::ALL.into_iter().find(|k| k.as_str() == word)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of kinds (`skip_automatic`): a bit each, so that a mailbox's filter stays `Copy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AutomaticSet(u8);

impl AutomaticSet {
    pub fn insert(&mut self, kind: Automatic) {
        self.0 |= kind.bit();
    }

    pub fn contains(self, kind: Automatic) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`Automatic::ALL`] order.
    pub fn kinds(self) -> impl Iterator<Item = Automatic> {
        Automatic::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl FromIterator<Automatic> for AutomaticSet {
    fn from_iter<I: IntoIterator<Item = Automatic>>(iter: I) -> Self {
        let mut set = AutomaticSet::default();
        for k in iter {
            set.insert(k);
        }
        set
    }
}

/// Subject starts that out-of-office replies use when their headers say nothing (Exchange,
/// Gmail, and the German, French and Spanish Outlook texts).
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "automatic reply:",
    "auto:",
    "autoreply:",
    "out of office",
    "abwesenheitsnotiz",
    "automatische antwort:",
    "réponse automatique",
    "respuesta automática",
];

const DAEMON_SENDERS: &[&str] = &["mailer-daemon@", "postmaster@"];

/// Which kind of automatic email a parsed header is, or None for a person's email. The most
/// telling signal wins: a bounce also carries `Auto-Submitted: auto-replied`, an automatic reply
/// `Auto-Submitted`, and a list that names itself with `List-Id` may still say `Precedence: bulk`.
pub fn classify(msg: &Message<'_>) -> Option<Automatic> {
    let raw = |name: &str| msg.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    if let Some(ct) = msg.content_type() {
        let report = ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"));
        let dsn = ct
            .attribute("report-type")
            .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"));
        if report && dsn {
            return Some(Automatic::Bounce);
        }
    }
    let from_daemon = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_ascii_lowercase)
        .is_some_and(|a| DAEMON_SENDERS.iter().any(|d| a.starts_with(d)));
    if from_daemon {
        return Some(Automatic::Bounce);
    }
    let auto_submitted = raw("Auto-Submitted").filter(|v| !v.is_empty() && !v.starts_with("no"));
    let subject = msg.subject().unwrap_or_default().trim().to_lowercase();
    let auto_reply_header = raw("X-Autoreply").is_some()
        || raw("X-Autorespond").is_some()
        || auto_submitted
            .as_deref()
            .is_some_and(|v| v.starts_with("auto-replied"));
    if auto_reply_header || AUTO_REPLY_SUBJECTS.iter().any(|s| subject.starts_with(s)) {
        return Some(Automatic::AutoReply);
    }
    if auto_submitted.is_some() {
        return Some(Automatic::AutoSubmitted);
    }
    let precedence = raw("Precedence");
    if raw("List-Id").is_some() || precedence.as_deref() == Some("list") {
        return Some(Automatic::List);
    }
    if matches!(precedence.as_deref(), Some("bulk" | "junk")) {
        return Some(Automatic::Bulk);
    }
    // Bulk senders must offer List-Unsubscribe too (Gmail, Yahoo): alone it says "a list".
    if raw("List-Unsubscribe").is_some() {
        return Some(Automatic::List);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn kind(raw: &str) -> Option<Automatic> {
        let msg = MessageParser::default()
            .parse_headers(raw.as_bytes())
            .expect("parses");
        classify(&msg)
    }

    #[test]
    fn a_persons_email_is_not_automatic() {
        assert_eq!(kind("From: a@x\r\nSubject: hi\r\n\r\n"), None);
        assert_eq!(kind("Auto-Submitted: no\r\nSubject: hi\r\n\r\n"), None);
        assert_eq!(kind("Precedence: first-class\r\n\r\n"), None);
        assert_eq!(kind("Subject: Re: out of stock?\r\n\r\n"), None);
    }

    #[test]
    fn list_id_is_a_list() {
        assert_eq!(
            kind("List-Id: <dev.lists.example.org>\r\n\r\n"),
            Some(Automatic::List)
        );
    }

    #[test]
    fn precedence_list_is_a_list() {
        assert_eq!(kind("Precedence: list\r\n\r\n"), Some(Automatic::List));
    }

    #[test]
    fn list_unsubscribe_alone_is_a_list() {
        assert_eq!(
            kind("List-Unsubscribe: <mailto:leave@lists.example.org>\r\n\r\n"),
            Some(Automatic::List)
        );
    }

    #[test]
    fn a_list_naming_itself_stays_a_list_whatever_its_precedence() {
        assert_eq!(
            kind("List-Id: <dev.lists.example.org>\r\nPrecedence: bulk\r\n\r\n"),
            Some(Automatic::List)
        );
    }

    #[test]
    fn precedence_bulk_or_junk_is_bulk() {
        assert_eq!(kind("Precedence: bulk\r\n\r\n"), Some(Automatic::Bulk));
        assert_eq!(kind("Precedence: Junk\r\n\r\n"), Some(Automatic::Bulk));
    }

    #[test]
    fn a_newsletter_with_unsubscribe_and_bulk_precedence_is_bulk() {
        assert_eq!(
            kind("List-Unsubscribe: <https://news.example.com/u>\r\nPrecedence: bulk\r\n\r\n"),
            Some(Automatic::Bulk)
        );
    }

    #[test]
    fn auto_submitted_auto_replied_is_an_auto_reply() {
        assert_eq!(
            kind("Auto-Submitted: auto-replied\r\nSubject: Re: x\r\n\r\n"),
            Some(Automatic::AutoReply)
        );
    }

    #[test]
    fn x_autoreply_and_x_autorespond_are_auto_replies() {
        assert_eq!(
            kind("X-Autoreply: yes\r\nSubject: Re: x\r\n\r\n"),
            Some(Automatic::AutoReply)
        );
        assert_eq!(
            kind("X-Autorespond: Away\r\nSubject: Re: x\r\n\r\n"),
            Some(Automatic::AutoReply)
        );
    }

    #[test]
    fn out_of_office_subjects_are_auto_replies() {
        for s in [
            "Automatic reply: Quote",
            "Out of Office: Quote",
            "Abwesenheitsnotiz: Angebot",
            "Réponse automatique : Devis",
        ] {
            assert_eq!(
                kind(&format!("Subject: {s}\r\n\r\n")),
                Some(Automatic::AutoReply),
                "{s}"
            );
        }
    }

    #[test]
    fn an_auto_reply_from_a_list_member_is_an_auto_reply() {
        assert_eq!(
            kind("Auto-Submitted: auto-replied\r\nList-Id: <dev.lists.example.org>\r\n\r\n"),
            Some(Automatic::AutoReply)
        );
    }

    #[test]
    fn a_delivery_status_report_is_a_bounce() {
        assert_eq!(
            kind(
                "From: mail@x\r\nContent-Type: multipart/report; report-type=delivery-status; \
                 boundary=\"b\"\r\n\r\n"
            ),
            Some(Automatic::Bounce)
        );
    }

    #[test]
    fn a_read_receipt_report_is_not_a_bounce() {
        assert_eq!(
            kind(
                "From: carol@x\r\nContent-Type: multipart/report; \
                 report-type=disposition-notification; boundary=\"b\"\r\n\r\n"
            ),
            None
        );
    }

    #[test]
    fn mailer_daemon_and_postmaster_senders_are_bounces() {
        assert_eq!(
            kind(
                "From: MAILER-DAEMON@mx.example.com\r\nAuto-Submitted: auto-replied\r\n\
                 Subject: Undelivered Mail Returned to Sender\r\n\r\n"
            ),
            Some(Automatic::Bounce)
        );
        assert_eq!(
            kind("From: Postmaster <postmaster@example.com>\r\nSubject: Delivery failure\r\n\r\n"),
            Some(Automatic::Bounce)
        );
    }

    #[test]
    fn auto_submitted_auto_generated_or_other_is_auto_submitted() {
        assert_eq!(
            kind("Auto-Submitted: auto-generated\r\n\r\n"),
            Some(Automatic::AutoSubmitted)
        );
        assert_eq!(
            kind("Auto-Submitted: auto-notified\r\n\r\n"),
            Some(Automatic::AutoSubmitted)
        );
        assert_eq!(
            kind("Auto-Submitted: auto-generated\r\nPrecedence: bulk\r\n\r\n"),
            Some(Automatic::AutoSubmitted),
            "a machine's notification, even sent in bulk"
        );
    }

    #[test]
    fn kinds_read_their_old_names_and_round_trip() {
        for (old, k) in [
            ("\"delivery_status\"", Automatic::Bounce),
            ("\"auto_generated\"", Automatic::AutoSubmitted),
            ("\"bulk\"", Automatic::Bulk),
            ("\"auto_reply\"", Automatic::AutoReply),
        ] {
            assert_eq!(serde_json::from_str::<Automatic>(old).ok(), Some(k));
        }
        for k in Automatic::ALL {
            assert_eq!(Automatic::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).ok(), Some(k.as_str().into()));
        }
        let set: AutomaticSet = [Automatic::List, Automatic::Bounce].into_iter().collect();
        assert!(set.contains(Automatic::List) && !set.contains(Automatic::Bulk));
        assert_eq!(
            set.kinds().collect::<Vec<_>>(),
            vec![Automatic::List, Automatic::Bounce]
        );
        assert!(AutomaticSet::default().is_empty());
    }
}

//! Every decision and reason code of [`super::decision`], on real-looking emails: threads,
//! forwards, bounces, out-of-office replies, mailing lists, missing headers, reused Message-IDs.

use std::collections::HashMap;

use super::automatic::{Automatic, AutomaticSet};
use super::decision::*;
use super::message::{EmailHeaders, parse_headers};
use super::parties::Role;
use super::subject::subject_hash;
use super::token_match::TokenCandidate;

#[derive(Default)]
struct Fake {
    keys: HashMap<String, Tracked>,
    tokens: HashMap<String, Vec<TokenCandidate>>,
    subjects: HashMap<u64, Vec<(Tracked, Vec<String>)>>,
    contacts: HashMap<String, Vec<String>>,
    mailboxes: HashMap<String, MailboxInfo>,
}

impl Lookups for Fake {
    fn tracked(&self, key: &str) -> Option<Tracked> {
        self.keys.get(key).cloned()
    }
    fn by_token(&self, token: &str) -> Vec<TokenCandidate> {
        self.tokens.get(token).cloned().unwrap_or_default()
    }
    fn by_subject(&self, hash: u64) -> Vec<(Tracked, Vec<String>)> {
        self.subjects.get(&hash).cloned().unwrap_or_default()
    }
    fn contact_records(&self, address: &str) -> Vec<String> {
        self.contacts.get(address).cloned().unwrap_or_default()
    }
    fn mailbox(&self, address: &str) -> Option<MailboxInfo> {
        self.mailboxes.get(address).copied()
    }
}

fn tracked(activity: u64, conversation: u64, regarding: Option<&str>, h: &EmailHeaders) -> Tracked {
    Tracked {
        activity,
        conversation,
        regarding: regarding.map(str::to_string),
        fingerprint: fingerprint(h),
    }
}

/// A world with two tracked users (a@, b@, both `responses`), a queue (sales@, `all`), a tracked
/// quote (Message-ID q1, token CRM:0001001001, regarding opportunity:7) and two known contacts.
fn world() -> (Fake, EmailHeaders) {
    let quote = parse_headers(QUOTE.as_bytes());
    let mut f = Fake::default();
    let t = tracked(10, 10, Some("opportunity:7"), &quote);
    f.keys.insert("mid:q1@crm.example.com".into(), t.clone());
    f.tokens.insert(
        "CRM:0001001001".into(),
        vec![TokenCandidate {
            tracked: t.clone(),
            subject_hash: subject_hash("Quote for Contoso"),
        }],
    );
    f.subjects.insert(
        super::subject::subject_hash("Quote for Contoso"),
        vec![(
            t,
            vec![
                "a@example.com".into(),
                "carol@contoso.com".into(),
                "dan@contoso.com".into(),
            ],
        )],
    );
    f.contacts.insert(
        "carol@contoso.com".into(),
        vec!["lead:3".into(), "contact:42".into()],
    );
    f.contacts
        .insert("erin@fabrikam.com".into(), vec!["account:fabrikam".into()]);
    for (a, queue, track) in [
        ("a@example.com", false, Track::Responses),
        ("b@example.com", false, Track::Responses),
        ("sales@example.com", true, Track::All),
    ] {
        f.mailboxes.insert(
            a.into(),
            MailboxInfo {
                queue,
                track,
                skip_automatic: AutomaticSet::default(),
            },
        );
    }
    (f, quote)
}

const QUOTE: &str = "Message-ID: <q1@crm.example.com>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\n\
    From: A <a@example.com>\r\nTo: Carol <carol@contoso.com>\r\nCc: dan@contoso.com\r\n\
    Subject: Quote for Contoso [CRM:0001001001]\r\n\r\nOur quote.\r\n";

fn inbox<'a>(mailbox: &'a str, track: Track) -> Place<'a> {
    Place {
        mailbox,
        track,
        skip_automatic: AutomaticSet::default(),
        tracking_folder: None,
        sent: false,
    }
}

fn skipping<'a>(mailbox: &'a str, track: Track, kinds: &[Automatic]) -> Place<'a> {
    Place {
        skip_automatic: kinds.iter().copied().collect(),
        ..inbox(mailbox, track)
    }
}

fn decide_raw(raw: &str, place: &Place<'_>, c: &Correlation, f: &Fake) -> Decision {
    let h = parse_headers(raw.as_bytes());
    decide(
        Email {
            headers: &h,
            content_key: None,
        },
        place,
        c,
        f,
    )
}

fn joined(d: &Decision) -> (Option<u64>, Option<&str>, Option<Method>) {
    match d {
        Decision::Track(a) => (a.conversation, a.regarding.as_deref(), a.method),
        other => panic!("not tracked: {other:?}"),
    }
}

const UNRELATED: &str = "Message-ID: <u1@gmail.com>\r\nDate: Tue, 2 Sep 2025 09:00:00 +0000\r\n\
    From: Mum <mum@gmail.com>\r\nTo: a@example.com\r\nSubject: Sunday lunch\r\n\r\nCome over.\r\n";

#[test]
fn responses_skips_an_unrelated_email_and_all_tracks_it() {
    let (f, _) = world();
    let c = Correlation::default();
    let d = decide_raw(UNRELATED, &inbox("a@example.com", Track::Responses), &c, &f);
    assert_eq!(d, Decision::Skip(SkipReason::NoCorrelationMatch));
    assert_eq!(d.counter(), "no_correlation_match");
    let d = decide_raw(UNRELATED, &inbox("a@example.com", Track::All), &c, &f);
    assert_eq!(joined(&d), (None, None, None));
    assert_eq!(d.counter(), "tracked_new");
    let d = decide_raw(UNRELATED, &inbox("a@example.com", Track::None), &c, &f);
    assert_eq!(d, Decision::Skip(SkipReason::TrackingOff));
}

#[test]
fn a_reply_joins_by_in_reply_to_then_references() {
    let (f, _) = world();
    let c = Correlation::default();
    let reply = "Message-ID: <r1@contoso.com>\r\nFrom: carol@contoso.com\r\nTo: a@example.com\r\n\
        In-Reply-To: <q1@crm.example.com>\r\nSubject: Re: Quote for Contoso\r\n\r\nOK\r\n";
    let d = decide_raw(reply, &inbox("a@example.com", Track::Responses), &c, &f);
    assert_eq!(
        joined(&d),
        (Some(10), Some("opportunity:7"), Some(Method::InReplyTo))
    );
    assert_eq!(d.counter(), "tracked_correlated");
    let deeper = "Message-ID: <r2@contoso.com>\r\nFrom: carol@contoso.com\r\nTo: a@example.com\r\n\
        In-Reply-To: <unknown@contoso.com>\r\nReferences: <q1@crm.example.com> <unknown@contoso.com>\r\n\
        Subject: Re: Re: Quote\r\n\r\nOK\r\n";
    let d = decide_raw(deeper, &inbox("a@example.com", Track::Responses), &c, &f);
    assert_eq!(joined(&d).2, Some(Method::References));
    let off = Correlation {
        in_reply_to: false,
        tracking_token: None,
        ..Correlation::default()
    };
    let d = decide_raw(reply, &inbox("a@example.com", Track::Responses), &off, &f);
    assert_eq!(
        d,
        Decision::Skip(SkipReason::NoCorrelationMatch),
        "switched off"
    );
}

#[test]
fn a_reply_with_only_the_token_correlates_in_any_spelling() {
    let (f, _) = world();
    let c = Correlation::default();
    for subject in [
        "RE: Quote for Contoso [CRM:0001001001]",
        "AW: Quote for Contoso [crm: 0001001001]",
        "Quote CRM:0001001001",
    ] {
        let raw = format!(
            "Message-ID: <t@contoso.com>\r\nFrom: carol@contoso.com\r\nTo: a@example.com\r\n\
             Subject: {subject}\r\n\r\nOK\r\n"
        );
        let d = decide_raw(&raw, &inbox("a@example.com", Track::Responses), &c, &f);
        assert_eq!(
            joined(&d),
            (Some(10), Some("opportunity:7"), Some(Method::TrackingToken)),
            "{subject}"
        );
    }
}

fn token_reply(subject: &str) -> String {
    format!(
        "Message-ID: <t@contoso.com>\r\nFrom: carol@contoso.com\r\nTo: a@example.com\r\n\
         Subject: {subject}\r\n\r\nOK\r\n"
    )
}

#[test]
fn a_grown_token_resolves_exactly() {
    // The 1,100th email of mailbox 1: four counter digits, no wrap onto the 100th's token.
    let (mut f, quote) = world();
    let t1100 = tracked(1100, 1100, Some("case:1100"), &quote);
    let t100 = tracked(100, 100, Some("case:100"), &quote);
    for (token, t) in [("CRM:00010011100", &t1100), ("CRM:0001001100", &t100)] {
        f.tokens.insert(
            token.into(),
            vec![TokenCandidate {
                tracked: t.clone(),
                subject_hash: subject_hash("Invoice"),
            }],
        );
    }
    let c = Correlation::default();
    let place = inbox("a@example.com", Track::Responses);
    let d = decide_raw(
        &token_reply("RE: Invoice [CRM:00010011100]"),
        &place,
        &c,
        &f,
    );
    assert_eq!(
        joined(&d),
        (Some(1100), Some("case:1100"), Some(Method::TrackingToken))
    );
    let d = decide_raw(&token_reply("RE: Invoice [CRM:0001001100]"), &place, &c, &f);
    assert_eq!(joined(&d).0, Some(100));
}

#[test]
fn an_old_wrapped_token_takes_the_activity_with_the_reply_subject() {
    // Before issue 26 the 100th and the 1,100th email could carry one token; the upgrade keeps
    // both, and the reply's subject says which it answers.
    let (mut f, quote) = world();
    f.tokens.insert(
        "CRM:0001001100".into(),
        vec![
            TokenCandidate {
                tracked: tracked(1100, 1100, Some("case:new"), &quote),
                subject_hash: subject_hash("Renewal"),
            },
            TokenCandidate {
                tracked: tracked(100, 100, Some("case:old"), &quote),
                subject_hash: subject_hash("Invoice"),
            },
        ],
    );
    let c = Correlation::default();
    let place = inbox("a@example.com", Track::Responses);
    let d = decide_raw(&token_reply("Re: Invoice [CRM:0001001100]"), &place, &c, &f);
    assert_eq!(joined(&d).1, Some("case:old"));
    let d = decide_raw(&token_reply("Re: Renewal [CRM:0001001100]"), &place, &c, &f);
    assert_eq!(joined(&d).1, Some("case:new"));
}

#[test]
fn a_token_never_issued_does_not_correlate() {
    let (f, _) = world();
    let d = decide_raw(
        &token_reply("Re: Quote for Contoso [CRM:0001999999]"),
        &inbox("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(d, Decision::Skip(SkipReason::NoCorrelationMatch));
}

#[test]
fn smart_matching_needs_the_switch_and_two_recipients_in_common() {
    let (f, _) = world();
    let on = Correlation {
        smart_matching: true,
        ..Correlation::default()
    };
    let raw = "Message-ID: <s@contoso.com>\r\nFrom: carol@contoso.com\r\nTo: a@example.com\r\n\
        Subject: SV: Quote for Contoso\r\n\r\nOK\r\n";
    let d = decide_raw(raw, &inbox("a@example.com", Track::Responses), &on, &f);
    assert_eq!(joined(&d).2, Some(Method::SmartMatching));
    let d = decide_raw(
        raw,
        &inbox("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(
        d,
        Decision::Skip(SkipReason::NoCorrelationMatch),
        "off by default"
    );
    let one_in_common = "Message-ID: <s2@x.com>\r\nFrom: someone@x.com\r\nTo: a@example.com\r\n\
        Subject: Re: Quote for Contoso\r\n\r\nOK\r\n";
    let d = decide_raw(
        one_in_common,
        &inbox("a@example.com", Track::Responses),
        &on,
        &f,
    );
    assert_eq!(d, Decision::Skip(SkipReason::NoCorrelationMatch));
}

#[test]
fn known_contacts_tracks_their_email_and_ours_to_them() {
    let (f, _) = world();
    let c = Correlation::default();
    let p = inbox("a@example.com", Track::KnownContacts);
    let from_erin = "Message-ID: <e@fabrikam.com>\r\nFrom: Erin <Erin@Fabrikam.com>\r\nTo: a@example.com\r\n\
        Subject: Order\r\n\r\nx\r\n";
    let d = decide_raw(from_erin, &p, &c, &f);
    let Decision::Track(a) = &d else {
        panic!("{d:?}")
    };
    assert_eq!(a.parties[0].record.as_deref(), Some("account:fabrikam"));
    assert_eq!(a.parties[1].record.as_deref(), Some("user:a@example.com"));
    assert_eq!(
        decide_raw(UNRELATED, &p, &c, &f),
        Decision::Skip(SkipReason::SenderNotKnownContact)
    );
    let ours_to_carol = "Message-ID: <o@example.com>\r\nFrom: b@example.com\r\nTo: carol@contoso.com, a@example.com\r\n\
        Subject: Hello\r\n\r\nx\r\n";
    assert!(matches!(
        decide_raw(ours_to_carol, &p, &c, &f),
        Decision::Track(_)
    ));
    let ours_internal = "Message-ID: <i@example.com>\r\nFrom: b@example.com\r\nTo: a@example.com\r\n\
        Subject: Lunch?\r\n\r\nx\r\n";
    assert_eq!(
        decide_raw(ours_internal, &p, &c, &f),
        Decision::Skip(SkipReason::NoRecipientMatch)
    );
    let no_sender = "Message-ID: <n@x>\r\nTo: a@example.com\r\nSubject: ?\r\n\r\nx\r\n";
    assert_eq!(
        decide_raw(no_sender, &p, &c, &f),
        Decision::Skip(SkipReason::SenderNotKnownContact)
    );
}

#[test]
fn another_recipients_filter_can_take_the_email() {
    let (f, _) = world();
    // a@ (responses) would skip it; the sales queue (all) among the recipients takes it.
    let raw = "Message-ID: <cc@gmail.com>\r\nFrom: someone@gmail.com\r\nTo: a@example.com\r\n\
        Cc: Sales <sales@example.com>\r\nSubject: Question\r\n\r\nx\r\n";
    let d = decide_raw(
        raw,
        &inbox("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    let Decision::Track(a) = &d else {
        panic!("{d:?}")
    };
    assert_eq!(
        a.parties
            .iter()
            .map(|p| (p.role, p.record.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            (Role::From, None),
            (Role::To, Some("user:a@example.com")),
            (Role::Cc, Some("queue:sales@example.com"))
        ]
    );
}

const OUT_OF_OFFICE: &str = "Message-ID: <ooo@gmail.com>\r\nFrom: mum@gmail.com\r\nTo: sales@example.com\r\n\
    Auto-Submitted: auto-replied\r\nSubject: Automatic reply: Sunday\r\n\r\nAway.\r\n";
const BOUNCE: &str = "Message-ID: <b@mx>\r\nFrom: MAILER-DAEMON@mx.example.com\r\nTo: sales@example.com\r\n\
    Subject: Undelivered Mail Returned to Sender\r\nContent-Type: multipart/report; \
    report-type=delivery-status; boundary=x\r\n\r\n--x--\r\n";
const LIST: &str = "Message-ID: <l@lists>\r\nFrom: dev@lists.example.org\r\nTo: sales@example.com\r\n\
    List-Id: <dev.lists.example.org>\r\nSubject: [dev] release\r\n\r\nx\r\n";
const NEWSLETTER: &str = "Message-ID: <n@news>\r\nFrom: news@shop.example\r\nTo: sales@example.com\r\n\
    Precedence: bulk\r\nList-Unsubscribe: <https://shop.example/u>\r\nSubject: Offers\r\n\r\nx\r\n";
const ROBOT: &str = "Message-ID: <cron@host>\r\nFrom: root@host\r\nTo: sales@example.com\r\n\
    Auto-Submitted: auto-generated\r\nSubject: cron\r\n\r\nx\r\n";

/// Every kind, with an email of that kind to the sales queue.
const KINDS: [(Automatic, &str); 5] = [
    (Automatic::List, LIST),
    (Automatic::Bulk, NEWSLETTER),
    (Automatic::AutoReply, OUT_OF_OFFICE),
    (Automatic::Bounce, BOUNCE),
    (Automatic::AutoSubmitted, ROBOT),
];

#[test]
fn all_tracks_every_automatic_email_as_a_conversation_of_its_own() {
    let (f, _) = world();
    let queue = inbox("sales@example.com", Track::All);
    for (kind, raw) in KINDS {
        assert_eq!(
            super::message::parse_headers(raw.as_bytes()).automatic,
            Some(kind),
            "{raw}"
        );
        let d = decide_raw(raw, &queue, &Correlation::default(), &f);
        assert_eq!(joined(&d), (None, None, None), "{kind:?}");
        assert_eq!(d.counter(), "tracked_new");
    }
}

#[test]
fn skip_automatic_skips_exactly_its_kinds_naming_the_kind() {
    let (f, _) = world();
    let queue = skipping(
        "sales@example.com",
        Track::All,
        &[Automatic::List, Automatic::AutoReply],
    );
    for (kind, raw) in KINDS {
        let d = decide_raw(raw, &queue, &Correlation::default(), &f);
        match kind {
            Automatic::List | Automatic::AutoReply => {
                assert_eq!(d, Decision::Skip(SkipReason::Automatic(kind)));
            }
            _ => assert!(matches!(d, Decision::Track(_)), "{kind:?}: {d:?}"),
        }
    }
    let d = decide_raw(LIST, &queue, &Correlation::default(), &f);
    assert_eq!(d.counter(), "automatic:list");
    let d = decide_raw(UNRELATED, &queue, &Correlation::default(), &f);
    assert!(
        matches!(d, Decision::Track(_)),
        "a person's email is never skipped as automatic"
    );
}

#[test]
fn a_skipped_kind_is_skipped_even_when_it_answers_a_tracked_email() {
    let (f, _) = world();
    let bounce_of_quote = "Message-ID: <b2@mx>\r\nFrom: MAILER-DAEMON@mx.example.com\r\nTo: a@example.com\r\n\
        References: <q1@crm.example.com>\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nx\r\n";
    let p = skipping("a@example.com", Track::Responses, &[Automatic::Bounce]);
    assert_eq!(
        decide_raw(bounce_of_quote, &p, &Correlation::default(), &f),
        Decision::Skip(SkipReason::Automatic(Automatic::Bounce))
    );
}

#[test]
fn responses_never_starts_a_conversation_with_automatic_email() {
    let (f, _) = world();
    let p = inbox("a@example.com", Track::Responses);
    for (kind, raw) in KINDS {
        let raw = raw.replace("sales@example.com", "a@example.com");
        assert_eq!(
            decide_raw(&raw, &p, &Correlation::default(), &f),
            Decision::Skip(SkipReason::Automatic(kind)),
            "{kind:?}"
        );
    }
}

#[test]
fn automatic_email_joins_the_conversation_it_answers() {
    let (f, _) = world();
    let bounce_of_quote = "Message-ID: <b2@mx>\r\nFrom: MAILER-DAEMON@mx.example.com\r\nTo: a@example.com\r\n\
        References: <q1@crm.example.com>\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nx\r\n";
    let d = decide_raw(
        bounce_of_quote,
        &inbox("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(
        joined(&d),
        (Some(10), Some("opportunity:7"), Some(Method::References)),
        "a bounce of a tracked email joins its conversation"
    );
}

#[test]
fn known_contacts_skips_an_automatic_email_from_a_known_contact() {
    let (f, _) = world();
    let away = "Message-ID: <away@contoso.com>\r\nFrom: Carol <carol@contoso.com>\r\nTo: a@example.com\r\n\
        X-Autoreply: yes\r\nSubject: Out of Office: Friday\r\n\r\nAway.\r\n";
    assert_eq!(
        decide_raw(
            away,
            &inbox("a@example.com", Track::KnownContacts),
            &Correlation::default(),
            &f
        ),
        Decision::Skip(SkipReason::Automatic(Automatic::AutoReply))
    );
    // Her automatic answer to the tracked quote joins it (she is a known contact).
    let answer = away.replace("Subject:", "In-Reply-To: <q1@crm.example.com>\r\nSubject:");
    let d = decide_raw(
        &answer,
        &inbox("a@example.com", Track::KnownContacts),
        &Correlation::default(),
        &f,
    );
    assert_eq!(joined(&d).0, Some(10));
}

#[test]
fn a_queue_tracking_all_takes_automatic_email_its_user_would_skip() {
    let (mut f, _) = world();
    let list_to_both = LIST.replace(
        "To: sales@example.com",
        "To: a@example.com\r\nCc: sales@example.com",
    );
    let p = inbox("a@example.com", Track::Responses);
    let d = decide_raw(&list_to_both, &p, &Correlation::default(), &f);
    assert!(matches!(d, Decision::Track(_)), "{d:?}");
    // The queue skips lists: nobody takes it, and the reason is the mailbox's own.
    if let Some(m) = f.mailboxes.get_mut("sales@example.com") {
        m.skip_automatic = [Automatic::List].into_iter().collect();
    }
    assert_eq!(
        decide_raw(&list_to_both, &p, &Correlation::default(), &f),
        Decision::Skip(SkipReason::Automatic(Automatic::List))
    );
}

#[test]
fn a_tracking_folder_tracks_automatic_email_whatever_is_skipped() {
    let (f, _) = world();
    let folder = Place {
        tracking_folder: Some(Some("account:contoso")),
        ..skipping("sales@example.com", Track::All, &Automatic::ALL)
    };
    for (kind, raw) in KINDS {
        let d = decide_raw(raw, &folder, &Correlation::default(), &f);
        assert_eq!(joined(&d).1, Some("account:contoso"), "{kind:?}");
    }
}

#[test]
fn tracking_off_is_the_reason_for_automatic_email_too() {
    let (f, _) = world();
    let p = skipping("b@example.com", Track::None, &[Automatic::List]);
    let list = LIST.replace("sales@example.com", "b@example.com");
    assert_eq!(
        decide_raw(&list, &p, &Correlation::default(), &f),
        Decision::Skip(SkipReason::TrackingOff)
    );
}

#[test]
fn the_same_email_twice_is_a_duplicate_and_a_reused_message_id_is_kept() {
    let (f, quote) = world();
    let c = Correlation::default();
    // The quote itself, seen in b@'s inbox (it was sent to a tracked mailbox as well).
    let d = decide_raw(QUOTE, &inbox("b@example.com", Track::Responses), &c, &f);
    assert_eq!(
        d,
        Decision::Duplicate {
            activity: 10,
            regarding: None
        }
    );
    assert_eq!(d.counter(), "duplicate");
    // A different email under the same Message-ID (a broken mailer): not silently merged.
    let reuse = QUOTE.replace("Subject: Quote for Contoso", "Subject: Newsletter");
    let d = decide_raw(&reuse, &inbox("sales@example.com", Track::All), &c, &f);
    let Decision::Track(a) = &d else {
        panic!("{d:?}")
    };
    assert!(a.reused_message_id);
    let key = a.key.clone().expect("key");
    assert!(key.starts_with("mid:q1@crm.example.com#"), "{key}");
    // Its second copy is a duplicate of it, not of the quote.
    let mut f2 = f;
    let h = parse_headers(reuse.as_bytes());
    f2.keys.insert(key, tracked(11, 11, None, &h));
    let d = decide_raw(&reuse, &inbox("a@example.com", Track::Responses), &c, &f2);
    assert_eq!(
        d,
        Decision::Duplicate {
            activity: 11,
            regarding: None
        }
    );
    assert_ne!(fingerprint(&h), fingerprint(&quote));
}

#[test]
fn without_message_id_the_content_decides() {
    let (mut f, _) = world();
    let raw = "From: x@y\r\nTo: sales@example.com\r\nSubject: no id\r\n\r\nx\r\n";
    let h = parse_headers(raw.as_bytes());
    let place = inbox("sales@example.com", Track::All);
    let d = decide(
        Email {
            headers: &h,
            content_key: None,
        },
        &place,
        &Correlation::default(),
        &f,
    );
    let Decision::Track(a) = &d else {
        panic!("{d:?}")
    };
    assert_eq!(
        a.key, None,
        "the pre-screen cannot key it without the bytes"
    );
    f.keys
        .insert("sha256:abc".into(), tracked(12, 12, None, &h));
    let d = decide(
        Email {
            headers: &h,
            content_key: Some("sha256:abc"),
        },
        &place,
        &Correlation::default(),
        &f,
    );
    assert_eq!(
        d,
        Decision::Duplicate {
            activity: 12,
            regarding: None
        }
    );
}

#[test]
fn a_tracking_folder_always_tracks_and_sets_regarding() {
    let (f, _) = world();
    let c = Correlation::default();
    let folder = Place {
        mailbox: "a@example.com",
        track: Track::None,
        skip_automatic: AutomaticSet::default(),
        tracking_folder: Some(Some("account:contoso")),
        sent: false,
    };
    let d = decide_raw(UNRELATED, &folder, &c, &f);
    assert_eq!(joined(&d), (None, Some("account:contoso"), None));
    // Even noise, and a correlated email takes the folder's regarding over the inherited one.
    let reply = "Message-ID: <r9@contoso.com>\r\nFrom: carol@contoso.com\r\nTo: a@example.com\r\n\
        In-Reply-To: <q1@crm.example.com>\r\nAuto-Submitted: auto-replied\r\nSubject: Re: Quote\r\n\r\nx\r\n";
    assert_eq!(
        joined(&decide_raw(reply, &folder, &c, &f)),
        (Some(10), Some("account:contoso"), Some(Method::InReplyTo))
    );
    // Moved from the inbox into the folder: the same activity, the folder's regarding.
    assert_eq!(
        decide_raw(QUOTE, &folder, &c, &f),
        Decision::Duplicate {
            activity: 10,
            regarding: Some("account:contoso".into())
        }
    );
    let plain = Place {
        tracking_folder: Some(None),
        ..folder
    };
    assert_eq!(
        joined(&decide_raw(reply, &plain, &c, &f)).1,
        Some("opportunity:7")
    );
}

#[test]
fn an_unreadable_email_is_undeliverable() {
    let (f, _) = world();
    let h = EmailHeaders {
        unreadable: true,
        ..EmailHeaders::default()
    };
    let d = decide(
        Email {
            headers: &h,
            content_key: Some("sha256:0"),
        },
        &inbox("a@example.com", Track::All),
        &Correlation::default(),
        &f,
    );
    assert!(matches!(d, Decision::Undeliverable(_)));
    assert_eq!(d.counter(), "undeliverable");
}

#[test]
fn reason_codes_round_trip() {
    for r in SkipReason::ALL {
        assert_eq!(SkipReason::from_code(r.code()), Some(r));
    }
    // Stored in sync id maps: the first release's numbers never move.
    assert_eq!(SkipReason::AutoGenerated.code(), 5);
    assert_eq!(SkipReason::BeforeProcessDate.code(), 6);
    let mut names: Vec<&str> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), SkipReason::ALL.len());
    assert_eq!(SkipReason::from_code(0), None);
    assert_eq!(SkipReason::from_code(200), None);
    for t in ["all", "responses", "known_contacts", "none"] {
        assert_eq!(Track::parse(t).map(Track::as_str), Some(t));
    }
}

// --- The Sent folder (`track_sent`): what a user sent from their own client. ---

fn sent<'a>(mailbox: &'a str, track: Track) -> Place<'a> {
    Place {
        sent: true,
        ..inbox(mailbox, track)
    }
}

/// a@ answers Carol's question about the tracked quote from their own client.
const SENT_REPLY: &str = "Message-ID: <s1@mail.example.com>\r\nDate: Wed, 3 Sep 2025 08:00:00 +0000\r\n\
    From: A <a@example.com>\r\nTo: carol@contoso.com\r\nIn-Reply-To: <q1@crm.example.com>\r\n\
    Subject: Re: Quote for Contoso\r\n\r\nYes, net 30.\r\n";

/// a@ writes to a friend: nothing a CRM should see.
const SENT_PRIVATE: &str = "Message-ID: <s2@mail.example.com>\r\nDate: Wed, 3 Sep 2025 09:00:00 +0000\r\n\
    From: A <a@example.com>\r\nTo: mum@gmail.com\r\nSubject: Sunday lunch\r\n\r\nSee you.\r\n";

/// a@ writes to Erin (a known contact) from an alias, about something new.
const SENT_TO_CONTACT: &str = "Message-ID: <s3@mail.example.com>\r\nDate: Wed, 3 Sep 2025 10:00:00 +0000\r\n\
    From: Sales desk <desk@alias.example.net>\r\nTo: mum@gmail.com\r\nCc: Erin <erin@fabrikam.com>\r\n\
    Subject: Samples\r\n\r\nThey are on their way.\r\n";

#[test]
fn sent_a_reply_to_tracked_email_is_tracked_and_correlated() {
    let (f, _) = world();
    let d = decide_raw(
        SENT_REPLY,
        &sent("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(
        joined(&d),
        (Some(10), Some("opportunity:7"), Some(Method::InReplyTo))
    );
}

#[test]
fn sent_a_reply_found_by_its_token_is_correlated() {
    let (f, _) = world();
    let raw = SENT_PRIVATE.replace(
        "Subject: Sunday lunch",
        "Subject: Re: Quote for Contoso [CRM:0001001001]",
    );
    let d = decide_raw(
        &raw,
        &sent("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(joined(&d).2, Some(Method::TrackingToken));
}

#[test]
fn sent_under_responses_an_email_answering_nothing_is_skipped() {
    let (f, _) = world();
    let d = decide_raw(
        SENT_PRIVATE,
        &sent("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(d, Decision::Skip(SkipReason::NoCorrelationMatch));
}

#[test]
fn sent_under_known_contacts_email_to_a_contact_is_tracked_whatever_from_says() {
    let (f, _) = world();
    let d = decide_raw(
        SENT_TO_CONTACT,
        &sent("a@example.com", Track::KnownContacts),
        &Correlation::default(),
        &f,
    );
    assert_eq!(joined(&d), (None, None, None), "a new conversation");
}

#[test]
fn sent_under_known_contacts_email_to_no_contact_is_skipped() {
    let (f, _) = world();
    let d = decide_raw(
        SENT_PRIVATE,
        &sent("a@example.com", Track::KnownContacts),
        &Correlation::default(),
        &f,
    );
    assert_eq!(d, Decision::Skip(SkipReason::NoRecipientMatch));
}

#[test]
fn sent_under_all_everything_is_tracked() {
    let (f, _) = world();
    let d = decide_raw(
        SENT_PRIVATE,
        &sent("a@example.com", Track::All),
        &Correlation::default(),
        &f,
    );
    assert!(matches!(d, Decision::Track(_)), "{d:?}");
}

#[test]
fn sent_under_none_nothing_new_even_a_reply_or_mail_to_a_queue() {
    let (f, _) = world();
    let to_queue = SENT_PRIVATE.replace("To: mum@gmail.com", "To: sales@example.com");
    for raw in [SENT_REPLY, to_queue.as_str()] {
        let d = decide_raw(
            raw,
            &sent("a@example.com", Track::None),
            &Correlation::default(),
            &f,
        );
        assert_eq!(d, Decision::Skip(SkipReason::TrackingOff), "{raw}");
    }
}

#[test]
fn sent_other_mailboxes_filters_do_not_judge_a_sent_copy() {
    // In the inbox, sales@ (`all`) on To takes what a@ would skip; in a@'s Sent it does not:
    // sales@ judges its own copy when it syncs.
    let (f, _) = world();
    let to_queue = SENT_PRIVATE.replace("To: mum@gmail.com", "To: sales@example.com");
    let d = decide_raw(
        &to_queue,
        &sent("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(d, Decision::Skip(SkipReason::NoCorrelationMatch));
}

#[test]
fn sent_the_copy_of_an_email_sidesync_sent_joins_its_outgoing_activity() {
    // The outbox tracked the quote under its Message-ID when it was queued; the copy appended to
    // Sent (or saved by the server) is the same email: no second activity, whatever the filter.
    let (f, _) = world();
    for track in [
        Track::All,
        Track::Responses,
        Track::KnownContacts,
        Track::None,
    ] {
        let d = decide_raw(
            QUOTE,
            &sent("a@example.com", track),
            &Correlation::default(),
            &f,
        );
        assert_eq!(
            d,
            Decision::Duplicate {
                activity: 10,
                regarding: None
            },
            "{track:?}"
        );
    }
}

#[test]
fn sent_a_tracking_folder_rule_is_unchanged() {
    let (f, _) = world();
    let place = Place {
        tracking_folder: Some(Some("account:contoso")),
        ..sent("a@example.com", Track::None)
    };
    let d = decide_raw(SENT_PRIVATE, &place, &Correlation::default(), &f);
    assert_eq!(joined(&d).1, Some("account:contoso"));
}

#[test]
fn sent_automatic_email_still_starts_no_conversation_under_responses() {
    let (f, _) = world();
    let raw = SENT_PRIVATE.replace(
        "Subject: Sunday lunch",
        "Auto-Submitted: auto-replied\r\nSubject: Out of office",
    );
    let d = decide_raw(
        &raw,
        &sent("a@example.com", Track::Responses),
        &Correlation::default(),
        &f,
    );
    assert_eq!(
        d,
        Decision::Skip(SkipReason::Automatic(Automatic::AutoReply))
    );
}

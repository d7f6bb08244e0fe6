//! Every decision and reason code of [`super::decision`], on real-looking emails: threads,
//! forwards, bounces, out-of-office replies, mailing lists, missing headers, reused Message-IDs.

use std::collections::HashMap;

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
        f.mailboxes.insert(a.into(), MailboxInfo { queue, track });
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
        tracking_folder: None,
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

#[test]
fn noise_never_starts_a_conversation_but_may_join_one() {
    let (f, _) = world();
    let c = Correlation::default();
    let queue = inbox("sales@example.com", Track::All);
    let out_of_office = "Message-ID: <ooo@gmail.com>\r\nFrom: mum@gmail.com\r\nTo: sales@example.com\r\n\
        Auto-Submitted: auto-replied\r\nSubject: Automatic reply: Sunday\r\n\r\nAway.\r\n";
    let bounce = "Message-ID: <b@mx>\r\nFrom: MAILER-DAEMON@mx.example.com\r\nTo: sales@example.com\r\n\
        Subject: Undelivered Mail Returned to Sender\r\nContent-Type: multipart/report; \
        report-type=delivery-status; boundary=x\r\n\r\n--x--\r\n";
    let list = "Message-ID: <l@lists>\r\nFrom: dev@lists.example.org\r\nTo: sales@example.com\r\n\
        List-Id: <dev.lists.example.org>\r\nSubject: [dev] release\r\n\r\nx\r\n";
    let robot = "Message-ID: <cron@host>\r\nFrom: root@host\r\nTo: sales@example.com\r\n\
        Auto-Submitted: auto-generated\r\nSubject: cron\r\n\r\nx\r\n";
    for raw in [out_of_office, bounce, list, robot] {
        assert_eq!(
            decide_raw(raw, &queue, &c, &f),
            Decision::Skip(SkipReason::AutoGenerated),
            "{raw}"
        );
    }
    let bounce_of_quote = "Message-ID: <b2@mx>\r\nFrom: MAILER-DAEMON@mx.example.com\r\nTo: a@example.com\r\n\
        References: <q1@crm.example.com>\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nx\r\n";
    let d = decide_raw(
        bounce_of_quote,
        &inbox("a@example.com", Track::Responses),
        &c,
        &f,
    );
    assert_eq!(
        joined(&d).0,
        Some(10),
        "a bounce of a tracked email joins its conversation"
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
        tracking_folder: Some(Some("account:contoso")),
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
    assert_eq!(SkipReason::from_code(0), None);
    assert_eq!(SkipReason::from_code(200), None);
    for t in ["all", "responses", "known_contacts", "none"] {
        assert_eq!(Track::parse(t).map(Track::as_str), Some(t));
    }
}

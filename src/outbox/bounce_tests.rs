//! One test per report format, on the samples in `tests/fixtures/bounces/`.

use super::bounce::{Action, Format, Outcome, Status, parse};
use super::bounce_text::{address_lines, status_in};

macro_rules! sample {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/fixtures/bounces/", $name))
    };
}

fn code(s: &str) -> Status {
    Status::parse(s).unwrap_or(Status::PERMANENT)
}

#[test]
fn rfc3464_reads_each_recipient_the_envelope_id_and_the_returned_headers() {
    let r = parse(sample!("rfc3464.eml")).expect("a report");
    assert_eq!(r.format, Format::Rfc3464);
    assert_eq!(r.envelope_id.as_deref(), Some("ob-000042"));
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("ob-000042.sidesync@example.com")
    );
    assert_eq!(r.recipients.len(), 3);
    let failed = &r.recipients[0];
    assert_eq!(failed.address, "nobody@example.net");
    assert_eq!(failed.original.as_deref(), Some("Nobody@Example.net"));
    assert_eq!(failed.action, Action::Failed);
    assert_eq!(failed.status, code("5.1.1"));
    assert_eq!(
        failed.diagnostic.as_deref(),
        Some("550 5.1.1 <nobody@example.net>... User unknown"),
        "a folded Diagnostic-Code is unfolded"
    );
    assert_eq!(failed.outcome(), Some(Outcome::Bounced));
    let delayed = &r.recipients[1];
    assert_eq!(delayed.status, code("4.4.1"));
    assert_eq!(delayed.outcome(), Some(Outcome::Delayed));
    assert_eq!(r.recipients[2].action, Action::Delivered);
    assert_eq!(r.recipients[2].outcome(), None, "delivered changes nothing");
}

#[test]
fn postfix_without_diagnostic_code_takes_the_reason_from_its_text_part() {
    let r = parse(sample!("postfix.eml")).expect("a report");
    assert_eq!(r.format, Format::Rfc3464);
    assert_eq!(r.envelope_id.as_deref(), Some("ob-000043"));
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("ob-000043.sidesync@example.com")
    );
    let [ghost] = r.recipients.as_slice() else {
        panic!("one recipient: {:?}", r.recipients)
    };
    assert_eq!(ghost.address, "ghost@example.com");
    assert_eq!(ghost.status, code("5.1.1"));
    assert_eq!(ghost.diagnostic.as_deref(), Some("unknown user: \"ghost\""));
}

#[test]
fn qmail_reads_address_lines_and_the_copy_below_the_line() {
    let r = parse(sample!("qmail.eml")).expect("a report");
    assert_eq!(r.format, Format::Qmail);
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("ob-000044.sidesync@example.com")
    );
    assert_eq!(r.recipients.len(), 2, "{:?}", r.recipients);
    assert_eq!(r.recipients[0].address, "absent@example.org");
    assert_eq!(r.recipients[0].status, code("5.1.1"));
    assert_eq!(r.recipients[1].address, "full@example.org");
    assert_eq!(r.recipients[1].status, code("5.2.2"), "not the IP address");
    let diag = r.recipients[1].diagnostic.as_deref().unwrap_or("");
    assert!(diag.contains("552 5.2.2 Mailbox full"), "{diag}");
    assert!(
        r.recipients
            .iter()
            .all(|x| x.outcome() == Some(Outcome::Bounced)),
        "qmail-send only bounces"
    );
}

#[test]
fn exchange_ndr_reads_the_diagnostic_for_administrators() {
    let r = parse(sample!("exchange.eml")).expect("a report");
    assert_eq!(r.format, Format::Exchange);
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("ob-000045.sidesync@example.com")
    );
    let [jane] = r.recipients.as_slice() else {
        panic!("one recipient: {:?}", r.recipients)
    };
    assert_eq!(jane.address, "jane.doe@contoso.example");
    assert_eq!(jane.status, code("5.1.1"));
    assert!(
        jane.diagnostic
            .as_deref()
            .is_some_and(|d| d.contains("RESOLVER.ADR.RecipNotFound")),
        "{jane:?}"
    );
}

#[test]
fn gmail_failure_reads_x_failed_recipients_and_the_response() {
    let r = parse(sample!("gmail.eml")).expect("a report");
    assert_eq!(r.format, Format::Gmail);
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("ob-000046.sidesync@example.com")
    );
    let [missing] = r.recipients.as_slice() else {
        panic!("one recipient: {:?}", r.recipients)
    };
    assert_eq!(missing.address, "missing.person@gmail.com");
    assert_eq!(missing.status, code("5.1.1"));
    assert_eq!(missing.outcome(), Some(Outcome::Bounced));
}

#[test]
fn gmail_delay_is_delayed_and_falls_back_to_in_reply_to() {
    let r = parse(sample!("gmail_delay.eml")).expect("a report");
    assert_eq!(r.format, Format::Gmail);
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("ob-000047.sidesync@example.com"),
        "no returned message: the report's In-Reply-To"
    );
    let [busy] = r.recipients.as_slice() else {
        panic!("one recipient: {:?}", r.recipients)
    };
    assert_eq!(busy.status, code("4.7.0"));
    assert_eq!(busy.action, Action::Delayed);
    assert_eq!(busy.outcome(), Some(Outcome::Delayed));
}

#[test]
fn a_malformed_report_yields_no_recipient_and_no_panic() {
    let r = parse(sample!("malformed.eml")).expect("still a report");
    assert!(r.recipients.is_empty(), "{:?}", r.recipients);
    assert_eq!(r.envelope_id, None);
    for cut in [0, 1, 40, 200, 300] {
        let raw = sample!("rfc3464.eml");
        let _ = parse(&raw[..cut.min(raw.len())]);
    }
}

#[test]
fn an_ordinary_email_is_no_report() {
    let plain =
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello <x@y.z>: there\r\n";
    assert_eq!(parse(plain), None);
}

#[test]
fn status_codes_are_three_numbers_of_class_2_4_or_5() {
    assert_eq!(
        Status::parse("5.1.1").map(|s| s.to_string()).as_deref(),
        Some("5.1.1")
    );
    assert_eq!(Status::parse("4.7.100").map(|s| s.subject), Some(7));
    for bad in ["5.1", "192.0.2.7", "3.1.1", "5.1.1000", "x.1.1", ""] {
        assert_eq!(Status::parse(bad), None, "{bad}");
    }
    assert_eq!(status_in("Giving up on 192.0.2.7."), None);
    assert_eq!(status_in("(#5.1.1)"), Status::parse("5.1.1"));
    assert_eq!(status_in("250 2.0.0 Ok"), None, "success is no failure");
}

#[test]
fn address_lines_follow_postfix_and_qmail_layouts() {
    let postfix = "<a@example.com>: host mx said: 550 no\n\n<b@example.com>: unknown user\n";
    assert_eq!(address_lines(postfix).len(), 2);
    let qmail = "<c@example.org>:\nfirst line\nsecond line\n\nunrelated\n";
    assert_eq!(
        address_lines(qmail),
        vec![("c@example.org".into(), "first line second line".into())]
    );
}

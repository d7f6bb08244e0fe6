//! Bounces end to end: an email sent through dovecot's submission service, then a Postfix
//! delivery status report about it delivered into the sending mailbox's INBOX in dovecot. The
//! real binary ingests it: the outbox item shows the recipient `bounced` with its code, the
//! report joins the sent email's conversation, and the feed has `outbox.bounced`.
//!
//! And the whole way: sent through a private postfix to an unknown recipient, postfix itself
//! writes the report into the sender's maildir, which dovecot serves (skipped where no private
//! postfix can run: not root).

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::postfix::Postfix;
use support::sidesync::http;
use support::wait_for;

fn get(setup: &Setup, path: &str) -> Value {
    let (code, answer) = http(setup.port, "GET", path, Some(TOKEN), "");
    assert_eq!(code, 200, "{path}: {answer}");
    serde_json::from_str(&answer).expect("json")
}

/// Postfix's report (`tests/fixtures/bounces/postfix.eml`) about `message_id`, sent with
/// ENVID `envid` from `from` to `to`.
fn postfix_report(from: &str, to: &str, message_id: &str, envid: u64) -> Vec<u8> {
    String::from_utf8_lossy(include_bytes!("fixtures/bounces/postfix.eml"))
        .replace("ob-000043.sidesync@example.com", message_id)
        .replace("ob-000043", &envid.to_string())
        .replace("ghost@example.com", to)
        .replace("sales@example.com", from)
        .replace('\n', "\r\n")
        .into_bytes()
}

/// The appliance's config: a profile with `smtp_port` (`smtp_tls`) and the mailbox `from`.
fn config(d: &Dovecot, from: &str, smtp_port: u16, smtp_tls: &str) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\noutgoing_server_location = \"127.0.0.1\"\n\
         outgoing_port_number = {smtp_port}\noutgoing_tls = \"{smtp_tls}\"\nallow_plaintext_login = true\n\n\
         [[mailbox]]\nemail_address = \"{from}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
        d.imaps_port,
        d.ca_file.display(),
    )
}

#[test]
fn a_mailbox_that_skips_bounces_still_records_them() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let from = "skipper@example.com";
    d.add_user(from);
    let cfg = setup.write(
        "outbox_retry_interval = \"1s\"\noutbox_max_retry_interval = \"2s\"",
        &config(&d, from, d.submission_port, "starttls").replace(
            "approval = \"approved\"\n",
            "approval = \"approved\"\nskip_automatic = [\"bounce\"]\n",
        ),
    );
    let _s = setup.start(&cfg);
    let (id, message_id) = queue(&setup, from, "nobody@example.net");
    let report = postfix_report(from, "nobody@example.net", &message_id, id);
    d.deliver(from, &report, "", SystemTime::now());
    let item = wait_for("the bounce to be recorded", Duration::from_secs(60), || {
        let v = get(&setup, &format!("/api/v1/outbox/{id}"));
        v["deliveries"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
            .then_some(v)
    });
    assert_eq!(item["deliveries"][0]["outcome"], "bounced", "{item}");
    assert_eq!(
        item["deliveries"][0]["report"],
        Value::Null,
        "not kept: {item}"
    );
}

/// Queues an email from `from` to `to`; its id and Message-ID (without brackets).
fn queue(setup: &Setup, from: &str, to: &str) -> (u64, String) {
    let email = json!({"from": from, "to": [to], "subject": "Offer", "text": "t"});
    let (code, answer) = http(
        setup.port,
        "POST",
        "/api/v1/outbox",
        Some(TOKEN),
        &email.to_string(),
    );
    assert_eq!(code, 202, "{answer}");
    let queued: Value = serde_json::from_str(&answer).expect("json");
    let id = queued["id"].as_u64().expect("id");
    let message_id = queued["message_id"]
        .as_str()
        .expect("message_id")
        .trim_matches(['<', '>'])
        .to_string();
    wait_for("the email to be sent", Duration::from_secs(60), || {
        (get(setup, &format!("/api/v1/outbox/{id}"))["status"] == "sent").then_some(())
    });
    (id, message_id)
}

/// Waits for the bounce of `id` and checks the outbox item, the report activity and the feed.
fn assert_bounced(setup: &Setup, id: u64) -> u64 {
    let item = wait_for("the bounce to be recorded", Duration::from_secs(60), || {
        let v = get(setup, &format!("/api/v1/outbox/{id}"));
        v["deliveries"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
            .then_some(v)
    });
    assert_eq!(item["status"], "sent", "sending went fine: {item}");
    let delivery = &item["deliveries"][0];
    assert_eq!(delivery["address"], "nobody@example.net", "{item}");
    assert_eq!(delivery["outcome"], "bounced", "{item}");
    assert_eq!(delivery["status"], "5.1.1", "{item}");
    let report_id = delivery["report"]
        .as_u64()
        .expect("the report is an activity");
    let sent = get(setup, &format!("/api/v1/activities/{id}"));
    assert_eq!(
        sent["deliveries"], item["deliveries"],
        "the activity shows it too"
    );
    let bounce = get(setup, &format!("/api/v1/activities/{report_id}"));
    assert_eq!(bounce["conversation"], sent["conversation"], "{bounce}");
    assert_eq!(bounce["automatic"], "bounce", "{bounce}");
    let events = get(setup, "/api/v1/events?after=0&limit=1000");
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(kinds.contains(&"outbox.bounced"), "{kinds:?}");
    report_id
}

#[test]
fn a_postfix_report_in_the_inbox_marks_the_sent_email_bounced() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let from = "bouncer@example.com";
    d.add_user(from);
    let cfg = setup.write(
        "outbox_retry_interval = \"1s\"\noutbox_max_retry_interval = \"2s\"",
        &config(&d, from, d.submission_port, "starttls"),
    );
    let _s = setup.start(&cfg);
    let (id, message_id) = queue(&setup, from, "nobody@example.net");
    let report = postfix_report(from, "nobody@example.net", &message_id, id);
    d.deliver(from, &report, "", SystemTime::now());
    let _ = assert_bounced(&setup, id);
}

#[test]
fn postfix_bounces_an_unknown_recipient_into_the_senders_inbox_and_it_is_recorded() {
    let d = Dovecot::start();
    let from = "sender@example.com";
    let Some(pf) = Postfix::start(&d, &["example.com", "example.net"], &[from]) else {
        eprintln!("skipped: no private postfix here (needs root and /usr/sbin/postfix)");
        return;
    };
    let setup = Setup::new();
    let cfg = setup.write(
        "outbox_retry_interval = \"1s\"\noutbox_max_retry_interval = \"2s\"",
        &config(&d, from, pf.port, "none"),
    );
    let _s = setup.start(&cfg);
    let (id, _) = queue(&setup, from, "nobody@example.net");
    let report_id = assert_bounced(&setup, id);
    // The DSN request reached postfix: its report names the outbox id and returns headers only.
    let (code, raw) = http(
        setup.port,
        "GET",
        &format!("/api/v1/activities/{report_id}/raw"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{raw}");
    assert!(
        raw.contains(&format!("Original-Envelope-Id: {id}")),
        "{raw}"
    );
    assert!(raw.contains("text/rfc822-headers"), "RET=HDRS: {raw}");
    let log = pf.log();
    assert!(log.contains("status=bounced"), "{log}");
    assert!(log.contains("sender non-delivery notification"), "{log}");
}

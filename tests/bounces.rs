//! Bounces end to end: an email sent through dovecot's submission service, then a Postfix
//! delivery status report about it delivered into the sending mailbox's INBOX in dovecot. The
//! real binary ingests it: the outbox item shows the recipient `bounced` with its code, the
//! report joins the sent email's conversation, and the feed has `outbox.bounced`.
//!
//! Not yet here: postfix writing that report itself (a private postfix instance that bounces
//! to dovecot over LMTP); the report is Postfix's format, delivered by the test.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
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

#[test]
fn a_postfix_report_in_the_inbox_marks_the_sent_email_bounced() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let from = "bouncer@example.com";
    d.add_user(from);
    let profile = format!(
        "[[profile]]\ntrack = \"all\"\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\noutgoing_server_location = \"127.0.0.1\"\n\
         outgoing_port_number = {}\noutgoing_tls = \"starttls\"\nallow_plaintext_login = true\n\n\
         [[mailbox]]\nemail_address = \"{from}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
        d.imaps_port,
        d.ca_file.display(),
        d.submission_port,
    );
    let cfg = setup.write(
        "outbox_retry_interval = \"1s\"\noutbox_max_retry_interval = \"2s\"",
        &profile,
    );
    let _s = setup.start(&cfg);
    let email =
        json!({"from": from, "to": ["nobody@example.net"], "subject": "Offer", "text": "t"});
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
        (get(&setup, &format!("/api/v1/outbox/{id}"))["status"] == "sent").then_some(())
    });
    let report = postfix_report(from, "nobody@example.net", &message_id, id);
    d.deliver(from, &report, "", SystemTime::now());
    let item = wait_for("the bounce to be recorded", Duration::from_secs(60), || {
        let v = get(&setup, &format!("/api/v1/outbox/{id}"));
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
    let sent = get(&setup, &format!("/api/v1/activities/{id}"));
    let bounce = get(&setup, &format!("/api/v1/activities/{report_id}"));
    assert_eq!(bounce["conversation"], sent["conversation"], "{bounce}");
    assert_eq!(bounce["automatic"], "bounce", "{bounce}");
    let events = get(&setup, "/api/v1/events?after=0&limit=1000");
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(kinds.contains(&"outbox.bounced"), "{kinds:?}");
}

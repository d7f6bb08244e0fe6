//! Issue 26, point 3, against the real binary, dovecot and an SMTP server: tracking tokens do not
//! drift. Before, the counter was the appliance-wide activity id wrapped at three digits and the
//! user number the mailbox's place in the config, so the 1,100th email carried the 100th's token,
//! and inserting a mailbox at the top of the config renumbered every other one.

mod support;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::http;
use support::smtp_server::SmtpServer;
use support::wait_for;

const ALICE: &str = "alice@example.com";
const ZOE: &str = "zoe@example.com";

fn api(setup: &Setup, method: &str, path: &str, body: &Value) -> Value {
    let (code, answer) = http(setup.port, method, path, Some(TOKEN), &body.to_string());
    assert!(
        (200..300).contains(&code),
        "{method} {path}: {code} {answer}"
    );
    serde_json::from_str(&answer).expect("json")
}

fn config(setup: &Setup, d: &Dovecot, smtp_port: u16, mailboxes: &[&str]) -> std::path::PathBuf {
    // Users keep Dynamics' default filter (responses): the reply is tracked only if it correlates.
    let profile = format!(
        "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\noutgoing_server_location = \"127.0.0.1\"\n\
         outgoing_port_number = {smtp_port}\noutgoing_tls = \"none\"\nallow_plaintext_login = true\n\n",
        d.imaps_port,
        d.ca_file.display()
    );
    let boxes: String = mailboxes
        .iter()
        .map(|m| {
            format!(
                "[[mailbox]]\nemail_address = \"{m}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\n"
            )
        })
        .collect();
    setup.write("", &(profile + &boxes))
}

/// The token at the end of a subject the API answered ("Invoice [CRM:…]").
fn token_of(subject: &str) -> String {
    let start = subject.rfind('[').expect("a token") + 1;
    subject[start..subject.len() - 1].to_string()
}

/// "The 1,100th email's token reply lands on the right activity after a mailbox is inserted at
/// the top of the config and the appliance restarted." The 1,100 emails are real: queued one by
/// one through the API (each a durable commit, about 10 ms in a debug build), all with the same
/// subject so that only the token can tell them apart, and sent to the SMTP server.
#[test]
fn the_1100th_emails_token_reply_lands_on_its_activity_after_a_config_insert_and_restart() {
    let d = Dovecot::start();
    d.add_user(ALICE);
    d.add_user(ZOE);
    let server = SmtpServer::start();
    let setup = Setup::new();
    let cfg = config(&setup, &d, server.port, &[ALICE]);
    let s = setup.start(&cfg);
    let mut queued = Vec::new();
    for n in 1..=1100 {
        let v = api(
            &setup,
            "POST",
            "/api/v1/outbox",
            &json!({"from": ALICE, "to": ["carol@contoso.com"], "subject": "Invoice",
                    "text": format!("invoice {n}"), "regarding": format!("case:{n}")}),
        );
        let id = v["id"].as_u64().expect("id");
        queued.push((id, token_of(v["subject"].as_str().expect("subject"))));
    }
    let tokens: HashSet<&String> = queued.iter().map(|(_, t)| t).collect();
    assert_eq!(tokens.len(), 1100, "every email has its own token");
    let (id_100, token_100) = queued[99].clone();
    let (id_1100, token_1100) = queued[1099].clone();
    // Alice is the first mailbox to send: user 001; the counter grew to four digits.
    assert_eq!(token_100, "CRM:0001001100");
    assert_eq!(token_1100, "CRM:00010011100");
    wait_for(
        "the 1,100 emails to be sent",
        Duration::from_secs(120),
        || {
            let m = s.mailbox(ALICE);
            (m["outbox"]["sent"].as_u64()? == 1100).then_some(())
        },
    );
    assert!(
        server
            .messages()
            .iter()
            .any(|m| m.data.contains(&format!("Subject: Invoice [{token_1100}]"))),
        "the 1,100th email went out with its token"
    );
    assert!(s.terminate().success());

    // A mailbox inserted above alice: in the old scheme alice became user 2.
    let cfg = config(&setup, &d, server.port, &[ZOE, ALICE]);
    let s = setup.start(&cfg);
    let after = api(
        &setup,
        "POST",
        "/api/v1/outbox",
        &json!({"from": ALICE, "to": ["carol@contoso.com"], "subject": "Invoice", "text": "1101"}),
    );
    assert_eq!(
        token_of(after["subject"].as_str().expect("subject")),
        "CRM:00010011101",
        "alice keeps her user number and counter across the insert and the restart"
    );
    // A reply carrying only the token (no In-Reply-To, no References), in another spelling.
    let reply = format!(
        "Message-ID: <reply-1100@contoso.com>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\n\
         From: carol@contoso.com\r\nTo: {ALICE}\r\nSubject: RE: Invoice [{}]\r\n\r\nPaid.\r\n",
        token_1100.to_lowercase()
    );
    d.deliver(ALICE, reply.as_bytes(), "", SystemTime::now());
    let thread = wait_for(
        "the reply to join the 1,100th email",
        Duration::from_secs(60),
        || {
            let v = api(
                &setup,
                "GET",
                &format!("/api/v1/activities?conversation={id_1100}"),
                &Value::Null,
            );
            let acts = v["activities"].as_array()?.clone();
            (acts.len() == 2).then_some(acts)
        },
    );
    let r = thread
        .iter()
        .find(|a| a["message_id"] == "reply-1100@contoso.com")
        .expect("the reply is in the 1,100th email's conversation");
    assert_eq!(r["correlation_method"], "tracking_token");
    assert_eq!(r["regarding"], "case:1100");
    // And not in the 100th's, which the wrapped token would have named.
    let v = api(
        &setup,
        "GET",
        &format!("/api/v1/activities?conversation={id_100}"),
        &Value::Null,
    );
    assert_eq!(v["activities"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(s.terminate().success());
}

/// Two shards on one config, each its own store: both mailboxes are the first to send on their
/// shard, so both get user number 1 and counter 1 — the shard digits alone keep the tokens apart.
/// A reply carrying shard 0's token that reaches shard 1's mailbox is not filed under shard 1's
/// email (without the shard digits the two tokens would be the same text).
#[test]
fn two_shards_never_issue_the_same_token() {
    use sidesync::config::shard::owner;
    let d = Dovecot::start();
    // One mailbox owned by each of two shards.
    let pick = |shard: u32| {
        (0..100)
            .map(|i| format!("token-shard{i}@example.com"))
            .find(|a| owner(a, 2) == shard)
            .expect("an address for the shard")
    };
    let (a, b) = (pick(0), pick(1));
    d.add_user(&a);
    d.add_user(&b);
    let server = SmtpServer::start();
    let mut tokens = Vec::new();
    let mut running = Vec::new();
    for (index, from) in [(0u32, &a), (1, &b)] {
        let setup = Setup::new();
        let cfg = config(&setup, &d, server.port, &[a.as_str(), b.as_str()]);
        let s = support::sidesync::Sidesync::start_with_env(
            &cfg,
            &setup.dir.path().join("sidesync.log"),
            setup.port,
            &[("SIDESYNC_SHARD", &format!("{index}/2"))],
        );
        let v = api(
            &setup,
            "POST",
            "/api/v1/outbox",
            &json!({"from": from, "to": ["carol@contoso.com"], "subject": "Offer", "text": "x"}),
        );
        tokens.push(token_of(v["subject"].as_str().expect("subject")));
        running.push((setup, s));
    }
    assert_eq!(
        tokens[0], "CRM:00010000001001",
        "shard 0, user 1, counter 1"
    );
    assert_eq!(
        tokens[1], "CRM:00010001001001",
        "shard 1, user 1, counter 1"
    );
    // Shard 0's token in a reply to b, whom shard 1 syncs: no email of shard 1 carries it.
    let reply = format!(
        "Message-ID: <cross-shard@contoso.com>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\n\
         From: carol@contoso.com\r\nTo: {b}\r\nSubject: Re: Offer [{}]\r\n\r\nYes.\r\n",
        tokens[0]
    );
    d.deliver(&b, reply.as_bytes(), "", SystemTime::now());
    let (_, shard1) = &running[1];
    wait_for(
        "shard 1 to judge the reply",
        Duration::from_secs(60),
        || (shard1.mailbox(&b)["decisions"]["no_correlation_match"] == 1).then_some(()),
    );
    for (_, s) in running {
        assert!(s.terminate().success());
    }
}

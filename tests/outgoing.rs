//! Outgoing email through real SMTP servers: dovecot's submission service (AUTH, STARTTLS)
//! relaying to postfix's smtp-sink, which keeps every message it takes; a small SMTP server for
//! per-recipient refusals; a proxy for an SMTP server that is down.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sidesync::store::{OutboxStatus, Store};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::proxy::{Mode, Proxy};
use support::sidesync::{Sidesync, http};
use support::smtp_server::SmtpServer;
use support::{mail, wait_for};

/// Fast retries of queued email, for the tests that wait for them.
const FAST_RETRIES: &str = "outbox_retry_interval = \"1s\"\noutbox_max_retry_interval = \"2s\"";

fn queue(setup: &Setup, body: &Value) -> u64 {
    let (code, answer) = http(
        setup.port,
        "POST",
        "/api/v1/outbox",
        Some(TOKEN),
        &body.to_string(),
    );
    assert_eq!(code, 202, "{answer}");
    serde_json::from_str::<Value>(&answer).expect("json")["id"]
        .as_u64()
        .expect("id")
}

fn outbox(setup: &Setup, id: u64) -> Value {
    let (code, answer) = http(
        setup.port,
        "GET",
        &format!("/api/v1/outbox/{id}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{answer}");
    serde_json::from_str(&answer).expect("json")
}

fn wait_status(setup: &Setup, id: u64, status: &str) -> Value {
    wait_for(
        &format!("email {id} to be {status}"),
        Duration::from_secs(60),
        || {
            let v = outbox(setup, id);
            (v["status"] == status).then_some(v)
        },
    )
}

/// A profile whose outgoing server is `host:port` with `tls`.
fn profile(d: &Dovecot, smtp_port: u16, smtp_tls: &str, extra: &str) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\noutgoing_server_location = \"127.0.0.1\"\n\
         outgoing_port_number = {smtp_port}\noutgoing_tls = \"{smtp_tls}\"\nallow_plaintext_login = true\n{extra}\n",
        d.imaps_port,
        d.ca_file.display()
    )
}

fn mailbox(address: &str, password: &str) -> String {
    format!(
        "[[mailbox]]\nemail_address = \"{address}\"\npassword = \"{password}\"\napproval = \"approved\"\n\n"
    )
}

/// The messages smtp-sink took, parsed: (envelope recipients line, raw message).
fn sunk(d: &Dovecot) -> Vec<String> {
    d.sunk()
}

#[test]
fn a_queued_email_arrives_once_with_its_parts_and_token_and_no_bcc() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let from = "sender@example.com";
    d.add_user(from);
    let cfg = setup.write(
        &format!("{FAST_RETRIES}\noutbox_max_recipients = 3"),
        &[
            profile(&d, d.submission_port, "starttls", ""),
            mailbox(from, PASSWORD),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    // The API refuses without a token, with a wrong one, and malformed bodies — queuing nothing.
    let email = json!({
        "from": from, "to": ["to@example.net"], "cc": ["cc@example.net"], "bcc": ["hidden@example.net"],
        "subject": "Quarterly report", "text": "Numbers attached.\n.\n..dots start these lines", "html": "<p>Numbers attached.</p>",
        "attachments": [{"filename": "q3.csv", "content_type": "text/csv", "content_base64": "YSxiCjEsMgo="}]
    });
    assert_eq!(
        http(
            setup.port,
            "POST",
            "/api/v1/outbox",
            None,
            &email.to_string()
        )
        .0,
        401
    );
    assert_eq!(
        http(
            setup.port,
            "POST",
            "/api/v1/outbox",
            Some("not-the-token-at-all"),
            &email.to_string()
        )
        .0,
        401
    );
    for (body, field) in [
        (json!({"from": from, "to": ["x@y.z"]}), "text"),
        (
            json!({"from": "stranger@example.com", "to": ["x@y.z"], "text": "t"}),
            "from",
        ),
        (
            json!({"from": from, "to": ["not an address"], "text": "t"}),
            "to[0]",
        ),
        (
            json!({"from": from, "to": ["x@y.z"], "text": "t", "priority": 1}),
            "priority",
        ),
        (
            json!({"from": from, "to": ["a@y.z", "b@y.z"], "cc": ["c@y.z"], "bcc": ["d@y.z"], "text": "t"}),
            "outbox_max_recipients",
        ),
    ] {
        let (code, answer) = http(
            setup.port,
            "POST",
            "/api/v1/outbox",
            Some(TOKEN),
            &body.to_string(),
        );
        assert_eq!(code, 400, "{answer}");
        assert!(answer.contains(field), "the error names {field}: {answer}");
    }
    let (code, _) = http(
        setup.port,
        "POST",
        "/api/v1/outbox",
        Some(TOKEN),
        "{not json",
    );
    assert_eq!(code, 400);
    assert!(
        s.status()["mailboxes"][0]["outbox"]["pending_send"] == 0,
        "nothing was queued by bad requests"
    );

    let id = queue(&setup, &email);
    let v = wait_status(&setup, id, "sent");
    assert_eq!(v["tries"], 1);
    assert!(
        v["last_reply"].as_str().unwrap_or("").starts_with("250"),
        "{v}"
    );
    let got = wait_for("the message at the server", Duration::from_secs(30), || {
        let all = sunk(&d);
        (!all.is_empty()).then_some(all)
    });
    assert_eq!(got.len(), 1, "exactly one delivery");
    let raw = &got[0];
    for rcpt in ["to@example.net", "cc@example.net", "hidden@example.net"] {
        assert!(
            raw.contains(&format!("<{rcpt}>")),
            "{rcpt} is in the envelope: {raw}"
        );
    }
    // smtp-sink's envelope lines (X-Rcpt-Args, …) come first; the message starts at From.
    let message = &raw[raw.find("\nFrom: ").map_or(0, |i| i + 1)..];
    let parsed = mail_parser::MessageParser::default()
        .parse(message.as_bytes())
        .expect("parses");
    let subject = parsed.subject().expect("subject").to_string();
    assert!(
        parsed.message_id().is_some_and(|id| !id.contains('<')),
        "{message}"
    );
    assert!(
        subject.starts_with("Quarterly report [CRM:0001001"),
        "{subject}"
    );
    assert!(
        !message.to_ascii_lowercase().contains("\nbcc:") && !message.contains("hidden@example.net"),
        "{message}"
    );
    assert_eq!(
        // Lines starting with dots survive the SMTP transparency procedure unchanged.
        parsed
            .body_text(0)
            .map(|t| t.trim().replace("\r\n", "\n"))
            .as_deref(),
        Some("Numbers attached.\n.\n..dots start these lines")
    );
    assert_eq!(
        parsed.attachment(0).map(|a| a.contents().to_vec()),
        Some(b"a,b\n1,2\n".to_vec())
    );
    let m = s.mailbox(from);
    assert_eq!(m["outbox"]["sent"], 1, "{m}");
    assert!(s.terminate().success());
    let store = Store::open(&setup.dir.path().join("data")).expect("store");
    let act = store.activity(id).expect("read").expect("activity");
    assert_eq!(act.direction, sidesync::store::Direction::Outgoing);
    assert_eq!(act.headers.subject.as_deref(), Some(subject.as_str()));
}

#[test]
fn an_email_waits_while_the_server_is_down_and_goes_when_it_is_back() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let from = "patient@example.com";
    d.add_user(from);
    let proxy = Proxy::start(d.submission_port, Mode::Forward);
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, proxy.port, "starttls", ""),
            mailbox(from, PASSWORD),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    wait_for("the mailbox to be tested", Duration::from_secs(30), || {
        (s.mailbox(from)["outgoing_enablement"]["state"] == "enabled").then_some(())
    });
    proxy.set_mode(Mode::Drop);
    let id = queue(
        &setup,
        &json!({"from": from, "to": ["x@example.net"], "subject": "later", "text": "t"}),
    );
    let v = wait_for("a failed try", Duration::from_secs(30), || {
        let v = outbox(&setup, id);
        (v["tries"].as_u64()? >= 2 && v["status"] == "pending_send").then_some(v)
    });
    assert!(v["last_reply"].as_str().is_some(), "{v}");
    assert!(sunk(&d).is_empty());
    proxy.set_mode(Mode::Forward);
    wait_status(&setup, id, "sent");
    wait_for("one delivery", Duration::from_secs(30), || {
        (sunk(&d).len() == 1).then_some(())
    });
    assert!(s.terminate().success());
}

#[test]
fn refusals_are_recorded_per_recipient_and_a_total_refusal_fails() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let server = SmtpServer::start();
    let from = "mixed@example.com";
    d.add_user(from);
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, server.port, "none", ""),
            mailbox(from, PASSWORD),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let partly = queue(
        &setup,
        &json!({"from": from, "to": ["ok@example.net", "reject-me@example.net"], "subject": "s", "text": "t"}),
    );
    let v = wait_status(&setup, partly, "sent");
    // Test & Enable's own connection (MAIL FROM, RSET) and the sending one are behind us.
    let (connections, rsets) = (server.connections(), server.rsets());
    let results = v["recipient_results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 2, "{v}");
    assert_eq!(
        (
            results[0]["accepted"].clone(),
            results[1]["accepted"].clone()
        ),
        (json!(true), json!(false))
    );
    assert!(
        results[1]["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("550"),
        "{v}"
    );
    let all = queue(
        &setup,
        &json!({"from": from, "to": ["reject-a@example.net", "reject-b@example.net"], "subject": "s", "text": "t"}),
    );
    let v = wait_status(&setup, all, "failed");
    assert_eq!(v["tries"], 1, "a 5xx is not retried");
    assert!(
        v["last_reply"]
            .as_str()
            .unwrap_or("")
            .contains("no recipient was accepted"),
        "{v}"
    );
    assert!(
        v["recipient_results"][0]["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("550")
    );
    // The refused transaction was left open at the server: the next one starts with RSET (the
    // server says 503 to a MAIL FROM otherwise). A completed one needs none.
    let after = queue(
        &setup,
        &json!({"from": from, "to": ["after@example.net"], "subject": "s", "text": "t"}),
    );
    wait_status(&setup, after, "sent");
    let msgs = server.messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].recipients, vec!["ok@example.net"]);
    assert_eq!(msgs[1].recipients, vec!["after@example.net"]);
    assert_eq!(
        server.connections(),
        connections,
        "the pooled connection carried all three"
    );
    assert_eq!(
        server.rsets(),
        rsets + 1,
        "one RSET: after the refused transaction only"
    );
    let m = s.mailbox(from);
    assert_eq!(
        (m["outbox"]["sent"].clone(), m["outbox"]["failed"].clone()),
        (json!(2), json!(1)),
        "{m}"
    );
    assert!(s.terminate().success());
}

#[test]
fn a_wrong_smtp_password_stops_only_that_mailbox() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let (good, bad) = ("fine@example.com", "locked@example.com");
    d.add_user(good);
    d.set_password(bad, "the-real-password");
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, d.submission_port, "starttls", ""),
            mailbox(good, PASSWORD),
            mailbox(bad, "a-wrong-password"),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let stuck = queue(
        &setup,
        &json!({"from": bad, "to": ["x@example.net"], "subject": "s", "text": "t"}),
    );
    let sent = queue(
        &setup,
        &json!({"from": good, "to": ["x@example.net"], "subject": "s", "text": "t"}),
    );
    wait_status(&setup, sent, "sent");
    let m = wait_for(
        "the locked mailbox's outgoing to be disabled",
        Duration::from_secs(30),
        || {
            let m = s.mailbox(bad);
            (m["outgoing_enablement"]["state"] == "disabled" && m["latest_alert"].is_object())
                .then_some(m)
        },
    );
    assert_eq!(
        m["outgoing_enablement"]["code"], "authentication_rejected",
        "{m}"
    );
    assert_eq!(m["latest_alert"]["level"], "error", "{m}");
    let v = outbox(&setup, stuck);
    assert_eq!(
        v["status"], "pending_send",
        "the email waits, it is not lost: {v}"
    );
    assert!(s.terminate().success());
}

#[test]
fn sigkill_while_sending_200_emails_loses_none() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let server = SmtpServer::start();
    let from = "bulk-sender@example.com";
    d.add_user(from);
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, server.port, "none", "max_concurrent_connections = 2"),
            mailbox(from, PASSWORD),
        ]
        .concat(),
    );
    // After 60 messages the server takes the next ones without answering: at the kill, sessions
    // are provably in the middle of sending.
    server.hold_after(60);
    let s = setup.start(&cfg);
    let big = "x".repeat(20_000);
    let ids: Vec<u64> = (0..200)
        .map(|n| queue(&setup, &json!({"from": from, "to": [format!("r{n}@example.net")], "subject": format!("n{n}"), "text": big})))
        .collect();
    wait_for(
        "a send to be held in flight",
        Duration::from_secs(60),
        || (server.held() >= 1).then_some(()),
    );
    s.kill9();
    let held = server.held();
    let sent_at_kill = {
        let store = Store::open(&setup.dir.path().join("data")).expect("store");
        ids.iter()
            .filter(|id| {
                store.outbox_entry(**id).ok().flatten().map(|e| e.status)
                    == Some(OutboxStatus::Sent)
            })
            .count()
    };
    assert!(
        sent_at_kill <= 60 && held >= 1,
        "the kill landed with {sent_at_kill} of 200 sent and {held} held in flight"
    );
    server.release();
    let s = setup.start(&cfg);
    wait_for("every email to be sent", Duration::from_secs(120), || {
        let m = s.mailbox(from);
        (m["outbox"]["sent"].as_u64()? == 200).then_some(())
    });
    assert!(s.terminate().success());
    let got = server.messages();
    let mut per_subject = std::collections::HashMap::new();
    for m in &got {
        let subject = m
            .data
            .lines()
            .find(|l| l.starts_with("Subject: "))
            .unwrap_or("")
            .to_string();
        *per_subject.entry(subject).or_insert(0) += 1;
    }
    assert_eq!(per_subject.len(), 200, "every email was delivered");
    let duplicates = got.len() - 200;
    // A session waits for its Sent statuses once 16 are uncommitted: at most 16 per connection
    // can go twice (two connections here). Every duplicate is one of the last emails accepted.
    eprintln!("{duplicates} duplicates after SIGKILL ({held} held in flight)");
    assert!(
        duplicates >= held,
        "each message taken but never answered is sent again: {duplicates} < {held}"
    );
    assert!(
        duplicates <= 2 * 16,
        "at most 16 duplicates per connection in flight at the kill: {duplicates}"
    );
    assert!(
        per_subject.values().all(|&n| n <= 2),
        "no email went out three times"
    );
    let store = Store::open(&setup.dir.path().join("data")).expect("store");
    for id in ids {
        assert_eq!(
            store.outbox_entry(id).expect("read").expect("entry").status,
            OutboxStatus::Sent
        );
    }
}

#[test]
fn the_sent_copy_is_appended_and_not_ingested() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let from = "keeper@example.com";
    d.create_folder(from, "Sent");
    d.deliver(from, &mail::sample(from, 1, 1_000), "", SystemTime::now());
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, d.submission_port, "starttls", "save_sent_copy = true"),
            // Sent is tracked: the copy is synced, and must join its outgoing activity.
            mailbox(from, PASSWORD).replace(
                "approval = \"approved\"",
                "approval = \"approved\"\ntracking_folders = [\"Sent\"]",
            ),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let id = queue(
        &setup,
        &json!({"from": from, "to": ["x@example.net"], "subject": "keep a copy", "text": "t"}),
    );
    wait_status(&setup, id, "sent");
    let v = wait_for("the copy to be appended", Duration::from_secs(30), || {
        let v = outbox(&setup, id);
        v["sent_copy"].is_string().then_some(v)
    });
    assert_eq!(v["sent_copy"], "appended to Sent", "{v}");
    let copies = d.folder_messages(from, "Sent");
    assert_eq!(copies.len(), 1);
    assert!(copies[0].contains("keep a copy [CRM:"), "{}", copies[0]);
    // More polls of INBOX: the one incoming email stays the only incoming activity.
    let seen = |s: &Sidesync| {
        s.mailbox(from)["last_successful_sync_completed_on"]
            .as_str()
            .map(str::to_string)
    };
    for _ in 0..2 {
        let prev = seen(&s);
        wait_for("another poll", Duration::from_secs(30), || {
            (seen(&s) != prev).then_some(())
        });
    }
    assert_eq!(s.mailbox(from)["activities_stored"], 1);
    assert!(s.terminate().success());
    let store = Store::open(&setup.dir.path().join("data")).expect("store");
    // The Sent folder was synced: its copy has a sync id map entry, naming the outgoing activity.
    let sent_rows: Vec<_> = store
        .sync_id_map(from)
        .expect("map")
        .into_iter()
        .filter(|((folder, _, _), _)| folder == "Sent")
        .collect();
    assert_eq!(sent_rows.len(), 1, "{sent_rows:?}");
    assert_eq!(sent_rows[0].1, id, "the copy is the outgoing activity");
    assert_eq!(
        store.activity_count().expect("count"),
        2,
        "one incoming, one outgoing"
    );
}

/// One connection slot and 50 emails due: the copies share the sending session's slot (SMTP
/// closes before IMAP opens), so every email is sent and every copy lands; taking a second slot
/// for the copy deadlocked here.
#[test]
fn fifty_sent_copies_at_one_connection() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let from = "single-slot@example.com";
    d.create_folder(from, "Sent");
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(
                &d,
                d.submission_port,
                "starttls",
                "save_sent_copy = true\nmax_concurrent_connections = 1",
            ),
            mailbox(from, PASSWORD),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let ids: Vec<u64> = (0..50)
        .map(|n| {
            queue(
                &setup,
                &json!({"from": from, "to": ["x@example.net"], "subject": format!("copy {n}"), "text": "t"}),
            )
        })
        .collect();
    for id in &ids {
        wait_status(&setup, *id, "sent");
        let v = wait_for("the copy to be noted", Duration::from_secs(60), || {
            let v = outbox(&setup, *id);
            v["sent_copy"].is_string().then_some(v)
        });
        assert_eq!(v["sent_copy"], "appended to Sent", "{v}");
    }
    let copies = d.folder_messages(from, "Sent");
    assert_eq!(copies.len(), 50);
    for n in 0..50 {
        let subject = format!("Subject: copy {n} [CRM:");
        assert_eq!(
            copies.iter().filter(|c| c.contains(&subject)).count(),
            1,
            "copy {n}"
        );
    }
    assert!(s.terminate().success());
}

/// `outbox_max_per_minute`: a mailbox queues at most that many emails a minute; the next is 429
/// with the key named and when to try again; another mailbox has its own count.
#[test]
fn a_mailbox_queues_at_most_its_rate() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let senders: Vec<String> = (0..4).map(|i| format!("rate{i}@example.com")).collect();
    let mut body = profile(&d, d.submission_port, "starttls", "");
    for s in &senders {
        d.add_user(s);
        body.push_str(&mailbox(s, PASSWORD));
    }
    let cfg = setup.write("outbox_max_per_minute = 2", &body);
    let s = setup.start(&cfg);
    let queue_one = |from: &str| {
        let email = json!({"from": from, "to": ["to@example.net"], "subject": "s", "text": "t"});
        http(
            setup.port,
            "POST",
            "/api/v1/outbox",
            Some(TOKEN),
            &email.to_string(),
        )
    };
    let minute = || chrono::Utc::now().timestamp().div_euclid(60);
    // Within one minute (a pair that straddles a minute's end is tried again with the next
    // mailbox: the window is per minute).
    let mut shown = false;
    for pair in senders.chunks(2) {
        let started = minute();
        let codes: Vec<u16> = (0..3).map(|_| queue_one(&pair[0]).0).collect();
        let (other, _) = queue_one(&pair[1]);
        let (code, answer) = queue_one(&pair[0]);
        if minute() != started {
            continue;
        }
        assert_eq!(codes, vec![202, 202, 429]);
        assert_eq!(other, 202, "another mailbox has its own count");
        assert_eq!(code, 429);
        assert!(
            answer.contains("outbox_max_per_minute") && answer.contains("try again in"),
            "{answer}"
        );
        shown = true;
        break;
    }
    assert!(shown, "two minute boundaries in a row");
    assert!(s.terminate().success());
}

/// A POST to the outbox with an `Idempotency-Key`: (status, answer).
fn post_with_key(port: u16, key: &str, body: &Value) -> (u16, Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST /api/v1/outbox HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let (head, answer) = buf.split_once("\r\n\r\n").expect("answer");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("code");
    (code, serde_json::from_str(answer).expect("json"))
}

#[test]
fn idempotency_keys_cancel_and_resend() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let server = SmtpServer::start();
    let (from, waiting) = ("keys@example.com", "waiting@example.com");
    d.add_user(from);
    d.add_user(waiting);
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, server.port, "none", ""),
            mailbox(from, PASSWORD),
            format!(
                "[[mailbox]]\nemail_address = \"{waiting}\"\npassword = \"{PASSWORD}\"\n\
                 approval = \"pending_approval\"\n"
            ),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let email = json!({"from": from, "to": ["a@example.net"], "subject": "once", "text": "t"});
    // A retry with the same key gets the first answer and queues nothing.
    let (code, first) = post_with_key(setup.port, "order-17", &email);
    assert_eq!(code, 202, "{first}");
    let (code, again) = post_with_key(setup.port, "order-17", &email);
    assert_eq!((code, &again), (202, &first));
    // The same key for another email is refused, naming the first.
    let other = json!({"from": from, "to": ["b@example.net"], "subject": "other", "text": "t"});
    let (code, refused) = post_with_key(setup.port, "order-17", &other);
    assert_eq!(code, 422, "{refused}");
    assert_eq!(
        refused["type"],
        "urn:sidesync:problem:idempotency-key-reused"
    );
    // Two retries at the same moment: one email.
    let racing: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| post_with_key(setup.port, "order-18", &other)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    assert!(
        racing
            .iter()
            .all(|(c, v)| *c == 202 && v["id"] == racing[0].1["id"]),
        "{racing:?}"
    );
    wait_status(&setup, first["id"].as_u64().expect("id"), "sent");
    wait_status(&setup, racing[0].1["id"].as_u64().expect("id"), "sent");
    let (code, list) = http(
        setup.port,
        "GET",
        &format!("/api/v1/outbox?mailbox={from}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&list).expect("json");
    assert_eq!(list["outbox"].as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(server.messages().len(), 2, "each email went once");

    // Cancel: only while Pending Send (a mailbox waiting for approval keeps it there).
    let held = queue(
        &setup,
        &json!({"from": waiting, "to": ["c@example.net"], "subject": "held", "text": "t"}),
    );
    let (code, v) = http(
        setup.port,
        "DELETE",
        &format!("/api/v1/outbox/{held}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        serde_json::from_str::<Value>(&v).expect("json")["status"],
        "cancelled"
    );
    let (code, v) = http(
        setup.port,
        "DELETE",
        &format!("/api/v1/outbox/{held}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 409, "{v}");
    assert!(v.contains("cancelled") && v.contains("pending_send"), "{v}");
    let sent = first["id"].as_u64().expect("id");
    let (code, v) = http(
        setup.port,
        "DELETE",
        &format!("/api/v1/outbox/{sent}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 409, "a sent email cannot be cancelled: {v}");
    // Approved now: the cancelled email never goes.
    let (code, _) = http(
        setup.port,
        "POST",
        &format!("/api/v1/mailboxes/{waiting}/approve"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200);
    let after = queue(
        &setup,
        &json!({"from": waiting, "to": ["d@example.net"], "subject": "after", "text": "t"}),
    );
    wait_status(&setup, after, "sent");
    assert_eq!(outbox(&setup, held)["status"], "cancelled");
    assert!(
        server
            .messages()
            .iter()
            .all(|m| !m.recipients.contains(&"c@example.net".to_string())),
        "the cancelled email was sent"
    );

    // Resend: a Failed email goes back to Pending Send and is tried again.
    let failing = queue(
        &setup,
        &json!({"from": from, "to": ["reject-x@example.net"], "subject": "f", "text": "t"}),
    );
    wait_status(&setup, failing, "failed");
    let (code, v) = http(
        setup.port,
        "POST",
        &format!("/api/v1/outbox/{failing}/resend"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{v}");
    wait_for("the second try", Duration::from_secs(30), || {
        let v = outbox(&setup, failing);
        (v["status"] == "failed" && v["tries"] == 1).then_some(())
    });
    let (code, v) = http(
        setup.port,
        "POST",
        &format!("/api/v1/outbox/{sent}/resend"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 409, "a sent email is not sent again: {v}");
    // The feed told every status change of the failing email, in order.
    let (code, feed) = http(
        setup.port,
        "GET",
        "/api/v1/events?limit=1000",
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200);
    let feed: Value = serde_json::from_str(&feed).expect("json");
    let statuses: Vec<String> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "outbox.status_changed" && e["data"]["id"] == failing)
        .map(|e| e["data"]["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        statuses,
        [
            "pending_send",
            "sending",
            "failed",
            "pending_send",
            "sending",
            "failed"
        ],
        "{statuses:?}"
    );
    assert!(s.terminate().success());
}

#[test]
fn each_email_goes_out_with_the_next_ones_envelope() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let server = SmtpServer::start();
    let from = "batch@example.com";
    d.add_user(from);
    // One session, so that every email follows another on the same connection.
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, server.port, "none", "max_concurrent_connections = 1"),
            format!(
                "[[mailbox]]\nemail_address = \"{from}\"\npassword = \"{PASSWORD}\"\n\
                 approval = \"pending_approval\"\n"
            ),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    // Queued while the mailbox waits for approval: they go out as one batch.
    let ids: Vec<u64> = (0..20)
        .map(|n| {
            queue(
                &setup,
                &json!({"from": from, "to": [format!("r{n}@example.net")], "subject": format!("n{n}"), "text": "t"}),
            )
        })
        .collect();
    server.watch_envelopes_ahead();
    let (code, answer) = http(
        setup.port,
        "POST",
        &format!("/api/v1/mailboxes/{from}/approve"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{answer}");
    for id in &ids {
        wait_status(&setup, *id, "sent");
    }
    let msgs = server.messages();
    assert_eq!(msgs.len(), 20, "each email once");
    for (n, m) in msgs.iter().enumerate() {
        assert_eq!(m.recipients, vec![format!("r{n}@example.net")], "in order");
    }
    // Every email but the last of each claimed block carried the next one's envelope (RFC
    // 2920): one round trip an email instead of two.
    let ahead = server.envelopes_ahead();
    assert!(
        ahead >= 10,
        "only {ahead} of 20 emails carried the next envelope"
    );
    assert!(s.terminate().success());
}

#[test]
fn a_recipient_with_a_line_end_is_refused_at_queue_time_and_never_sent() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let server = SmtpServer::start();
    let from = "crlf@example.com";
    d.add_user(from);
    let cfg = setup.write(
        FAST_RETRIES,
        &[
            profile(&d, server.port, "none", ""),
            mailbox(from, PASSWORD),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let raw = |id: &str| {
        format!(
            "From: {from}\r\nTo: a@example.com\r\nMessage-ID: <{id}@example.com>\r\n\
             Subject: s\r\n\r\nbody\r\n"
        )
    };
    // Validated trimmed, sent untrimmed: each of these once reached RCPT TO as written.
    let injected = [
        "a@example.com\r\nRCPT TO:<b@example.com>",
        "a@example.com\r\n",
        "a@example.com\n",
        "a@example.com\r",
        "a@example.com \r\n",
        "a@example.com\t",
    ];
    for (i, bad) in injected.iter().enumerate() {
        for field in ["to", "cc", "bcc"] {
            let body = json!({"from": from, "raw": raw(&format!("r{i}{field}")), field: [bad]});
            let (code, answer) = http(
                setup.port,
                "POST",
                "/api/v1/outbox",
                Some(TOKEN),
                &body.to_string(),
            );
            assert!(
                code == 400 || code == 422,
                "{bad:?} in {field}: {code} {answer}"
            );
            assert!(answer.contains(&format!("{field}[0]")), "{answer}");
        }
        let body = json!({"from": from, "to": [bad], "subject": "s", "text": "t"});
        let (code, answer) = http(
            setup.port,
            "POST",
            "/api/v1/outbox",
            Some(TOKEN),
            &body.to_string(),
        );
        assert!(code == 400 || code == 422, "{bad:?}: {code} {answer}");
    }
    // A good one after them goes, alone: nothing of the refused ones was queued.
    let good = queue(
        &setup,
        &json!({"from": from, "raw": raw("good"), "to": ["good@example.net"]}),
    );
    wait_status(&setup, good, "sent");
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].recipients, vec!["good@example.net"]);
    let (_, list) = http(
        setup.port,
        "GET",
        &format!("/api/v1/outbox?mailbox={from}"),
        Some(TOKEN),
        "",
    );
    assert!(!list.contains("b@example.com"), "{list}");
    assert!(s.terminate().success());
}

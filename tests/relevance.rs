//! Which emails matter, against a real dovecot: one activity per email across tracked mailboxes,
//! conversations and regarding across mailboxes, a token-only reply, `responses` fetching no body
//! of what it skips, `all` tracking automatic email with its kind, `known_contacts` following the API while running, and an email moved into a
//! tracking folder taking its regarding without a second activity.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::{Sidesync, http, http_get};
use support::wait_for;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const SALES: &str = "sales@example.com";
const DAVE: &str = "dave@example.com";

fn config(setup: &Setup, d: &Dovecot) -> std::path::PathBuf {
    // Users keep Dynamics' default (responses); the queue tracks all; dave only known contacts.
    let profile = format!(
        "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\n",
        d.imaps_port,
        d.ca_file.display()
    );
    let mailbox = |address: &str, extra: &str| {
        format!(
            "[[mailbox]]\nemail_address = \"{address}\"\npassword = \"{PASSWORD}\"\n\
             approval = \"approved\"\n{extra}\n"
        )
    };
    setup.write(
        "",
        &[
            profile,
            mailbox(
                ALICE,
                "[[mailbox.tracking_folder]]\nfolder = \"Contoso\"\nregarding = \"account:contoso\"",
            ),
            mailbox(BOB, ""),
            mailbox(SALES, "owner = \"queue\""),
            mailbox(DAVE, "track = \"known_contacts\""),
        ]
        .concat(),
    )
}

fn email(id: &str, from: &str, to: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\nFrom: {from}\r\nTo: {to}\r\n\
         Subject: {subject}\r\n{extra}\r\n{body}\r\n"
    )
    .into_bytes()
}

fn api(setup: &Setup, method: &str, path: &str, body: &Value) -> Value {
    let (code, answer) = http(setup.port, method, path, Some(TOKEN), &body.to_string());
    assert!(
        (200..300).contains(&code),
        "{method} {path}: {code} {answer}"
    );
    serde_json::from_str(&answer).expect("json")
}

fn activities(setup: &Setup, query: &str) -> Vec<Value> {
    api(
        setup,
        "GET",
        &format!("/api/v1/activities?{query}"),
        &Value::Null,
    )["activities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn by_message_id(setup: &Setup, id: &str) -> Vec<Value> {
    activities(setup, "limit=1000")
        .into_iter()
        .filter(|a| a["message_id"] == id)
        .collect()
}

/// Waits until `mailbox` has finished a sync that began after now.
fn synced_after(s: &Sidesync, mailbox: &str, after: chrono::DateTime<chrono::Utc>) {
    wait_for(
        &format!("{mailbox} to sync"),
        Duration::from_secs(60),
        || {
            let m = s.mailbox(mailbox);
            let started = m["last_sync_started_on"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?;
            let done = m["last_successful_sync_completed_on"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?;
            (started > after && done >= started).then_some(())
        },
    );
}

fn fetched_bytes(port: u16) -> u64 {
    let (_, text) = http_get(port, "/metrics").expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("sidesync_fetched_bytes_total{profile=\"p\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn which_emails_matter_across_mailboxes() {
    let d = Dovecot::start();
    let setup = Setup::new();
    for user in [ALICE, BOB, SALES, DAVE] {
        d.add_user(user);
    }
    d.create_folder(ALICE, "Contoso");
    let now = SystemTime::now();
    // A customer's email filed by alice in her Contoso folder; carol's reply reaches bob and
    // alice (one email, two tracked inboxes); an unrelated private email with a large body.
    d.deliver_to_folder(
        ALICE,
        "Contoso",
        &email(
            "m1@contoso.com",
            "Carol <carol@contoso.com>",
            ALICE,
            "Renewal",
            "",
            "Let us talk.",
        ),
    );
    let reply = email(
        "m2@contoso.com",
        "Carol <carol@contoso.com>",
        &format!("{BOB}, {ALICE}"),
        "Re: Renewal",
        "In-Reply-To: <m1@contoso.com>\r\nReferences: <m1@contoso.com>\r\n",
        "Bob, please join.",
    );
    let private_body = "x".repeat(200_000);
    let private = email(
        "u1@gmail.com",
        "Mum <mum@gmail.com>",
        ALICE,
        "Sunday lunch",
        "",
        &private_body,
    );
    d.deliver(ALICE, &private, "", now);
    // The queue takes an unrelated email from a stranger; bob is on Cc.
    let question = email(
        "q1@gmail.com",
        "Someone <someone@gmail.com>",
        SALES,
        "Question",
        &format!("Cc: {BOB}\r\n"),
        "How much?",
    );
    d.deliver(SALES, &question, "", now);
    d.deliver(BOB, &question, "", now);
    // An automatic reply to the queue: "all" tracks it, flagged with its kind.
    d.deliver(
        SALES,
        &email(
            "ooo@gmail.com",
            "mum@gmail.com",
            SALES,
            "Automatic reply: Question",
            "Auto-Submitted: auto-replied\r\n",
            "Away.",
        ),
        "",
        now,
    );
    // The reply arrives after its original is tracked (as in real life).
    let cfg = config(&setup, &d);
    let s = setup.start(&cfg);
    wait_for("the Contoso email", Duration::from_secs(60), || {
        (by_message_id(&setup, "m1@contoso.com").len() == 1).then_some(())
    });
    let t = chrono::Utc::now();
    d.deliver(BOB, &reply, "", SystemTime::now());
    d.deliver(ALICE, &reply, "", SystemTime::now());
    synced_after(&s, BOB, t);
    synced_after(&s, ALICE, t);
    synced_after(&s, SALES, t);

    // The thread across two mailboxes: one conversation, the folder's regarding inherited.
    let m1 = &by_message_id(&setup, "m1@contoso.com")[0];
    assert_eq!(m1["regarding"], "account:contoso", "{m1}");
    let m2 = by_message_id(&setup, "m2@contoso.com");
    assert_eq!(m2.len(), 1, "one activity for one email: {m2:?}");
    assert_eq!(m2[0]["conversation"], m1["conversation"]);
    assert_eq!(m2[0]["regarding"], "account:contoso");
    assert_eq!(m2[0]["correlation_method"], "in_reply_to");
    let mut seen_by: Vec<String> = m2[0]["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|m| m.as_str().unwrap_or_default().to_string())
        .collect();
    seen_by.sort();
    assert_eq!(seen_by, vec![ALICE.to_string(), BOB.to_string()]);
    let conv = activities(&setup, &format!("conversation={}", m1["conversation"]));
    assert_eq!(conv.len(), 2, "{conv:?}");
    assert_eq!(activities(&setup, "regarding=account:contoso").len(), 2);

    // The queue's email with bob on Cc: one activity listing both, parties with records.
    let q = by_message_id(&setup, "q1@gmail.com");
    assert_eq!(q.len(), 1, "{q:?}");
    let one = api(
        &setup,
        "GET",
        &format!("/api/v1/activities/{}", q[0]["id"]),
        &Value::Null,
    );
    let parties: Vec<(String, Value)> = one["parties"]
        .as_array()
        .expect("parties")
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap_or_default().to_string(),
                p["record"].clone(),
            )
        })
        .collect();
    assert!(
        parties.contains(&(SALES.to_string(), json!("queue:sales@example.com"))),
        "{parties:?}"
    );
    assert!(
        parties.contains(&(BOB.to_string(), json!("user:bob@example.com"))),
        "{parties:?}"
    );

    // `responses` skipped the private email: no activity, and its body was never fetched.
    assert!(by_message_id(&setup, "u1@gmail.com").is_empty());
    let ooo = by_message_id(&setup, "ooo@gmail.com");
    assert_eq!(ooo.len(), 1, "{ooo:?}");
    assert_eq!(ooo[0]["automatic"], "auto_reply");
    assert_eq!(
        ooo[0]["conversation"], ooo[0]["id"],
        "a conversation of its own"
    );
    assert_eq!(q[0]["automatic"], Value::Null, "a person's email");
    let alice = s.mailbox(ALICE);
    assert_eq!(alice["decisions"]["no_correlation_match"], 1, "{alice}");
    // The question reaches the queue and bob: whichever mailbox syncs it first records it (for
    // the queue, which tracks all), and the other's copy joins it; the auto-reply is the queue's.
    let sales = s.mailbox(SALES);
    let count = |k: &str| sales["decisions"][k].as_u64().unwrap_or(0);
    assert_eq!(count("tracked_new") + count("duplicate"), 2, "{sales}");
    assert!(count("tracked_new") >= 1, "{sales}");
    assert_eq!(s.mailbox(SALES)["noise_seen"], 1);
    assert!(
        fetched_bytes(setup.port) < private_body.len() as u64,
        "the skipped email's body was fetched: {} bytes",
        fetched_bytes(setup.port)
    );
    let status = s.status();
    assert!(
        status["appliance"]["decisions"]["tracked_new"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{status}"
    );

    // A reply carrying only the tracking token of a queued email correlates with it.
    let queued = api(
        &setup,
        "POST",
        "/api/v1/outbox",
        &json!({"from": ALICE, "to": ["carol@contoso.com"], "subject": "Quote", "text": "Our quote.",
                "regarding": "opportunity:7"}),
    );
    let subject = queued["subject"].as_str().expect("subject").to_string();
    assert!(subject.contains("[CRM:"), "{subject}");
    let token = &subject[subject.find("[CRM:").expect("token") + 1..subject.len() - 1];
    let t = chrono::Utc::now();
    let answer = email(
        "r7@contoso.com",
        "carol@contoso.com",
        ALICE,
        &format!("AW: Quote [{}]", token.to_lowercase()),
        "",
        "Accepted.",
    );
    d.deliver(ALICE, &answer, "", SystemTime::now());
    synced_after(&s, ALICE, t);
    let r7 = by_message_id(&setup, "r7@contoso.com");
    assert_eq!(
        r7.len(),
        1,
        "the token-only reply is tracked: {:?}",
        s.mailbox(ALICE)
    );
    assert_eq!(r7[0]["correlation_method"], "tracking_token");
    assert_eq!(r7[0]["conversation"], json!(queued["id"]));
    assert_eq!(r7[0]["regarding"], "opportunity:7");

    // Moved from INBOX into the tracking folder: the same activity, the folder's regarding.
    let t = chrono::Utc::now();
    d.deliver_to_folder(ALICE, "Contoso", &answer);
    synced_after(&s, ALICE, t);
    let r7 = by_message_id(&setup, "r7@contoso.com");
    assert_eq!(r7.len(), 1, "no second activity: {r7:?}");
    assert_eq!(r7[0]["regarding"], "account:contoso");
    assert!(
        activities(&setup, "regarding=opportunity:7")
            .iter()
            .all(|a| a["message_id"] != "r7@contoso.com")
    );

    // The downstream system sets a regarding; idempotent.
    for _ in 0..2 {
        let v = api(
            &setup,
            "PUT",
            &format!("/api/v1/activities/{}/regarding", m1["id"]),
            &json!({"regarding": "opportunity:9"}),
        );
        assert_eq!(v["regarding"], "opportunity:9");
    }
    assert_eq!(activities(&setup, "regarding=opportunity:9").len(), 1);
    let (code, answer) = http(
        setup.port,
        "PUT",
        &format!("/api/v1/activities/{}/regarding", m1["id"]),
        Some(TOKEN),
        "{\"regarding\": \"Opportunity 9\"}",
    );
    assert_eq!(code, 400, "{answer}");

    // known_contacts follows a PUT /api/v1/contacts made while running.
    let t = chrono::Utc::now();
    d.deliver(
        DAVE,
        &email(
            "e1@fabrikam.com",
            "Erin <erin@fabrikam.com>",
            DAVE,
            "Order",
            "",
            "1",
        ),
        "",
        SystemTime::now(),
    );
    synced_after(&s, DAVE, t);
    assert!(by_message_id(&setup, "e1@fabrikam.com").is_empty());
    assert_eq!(s.mailbox(DAVE)["decisions"]["sender_not_known_contact"], 1);
    for _ in 0..2 {
        let v = api(
            &setup,
            "PUT",
            "/api/v1/contacts",
            &json!({"upsert": {"Erin@Fabrikam.com": ["lead:3", "account:fabrikam"]}}),
        );
        assert_eq!(v["contacts"], 1, "{v}");
    }
    let t = chrono::Utc::now();
    d.deliver(
        DAVE,
        &email(
            "e2@fabrikam.com",
            "Erin <erin@fabrikam.com>",
            DAVE,
            "Order 2",
            "",
            "2",
        ),
        "",
        SystemTime::now(),
    );
    synced_after(&s, DAVE, t);
    let e2 = by_message_id(&setup, "e2@fabrikam.com");
    assert_eq!(e2.len(), 1, "{:?}", s.mailbox(DAVE));
    let one = api(
        &setup,
        "GET",
        &format!("/api/v1/activities/{}", e2[0]["id"]),
        &Value::Null,
    );
    assert_eq!(one["parties"][0]["record"], "account:fabrikam", "{one}");
    let (code, answer) = http(
        setup.port,
        "PUT",
        "/api/v1/contacts",
        Some(TOKEN),
        "{\"upsert\": {\"nobody\": \"contact:1\"}}",
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("not an email address"), "{answer}");
    assert!(s.terminate().success());
}

/// M6: a forward mailbox attributes each forwarded email (attached, or inline) to the user who
/// forwarded it, by that user's filter; a forward from anyone else is undeliverable and stays;
/// processed forwards are deleted once stored.
#[test]
fn a_forward_mailbox_attributes_forwarded_emails_to_their_users() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let forward = "forward@example.com";
    for user in [ALICE, BOB, forward] {
        d.add_user(user);
    }
    let original = |id: &str, from: &str, to: &str| {
        String::from_utf8(email(id, from, to, "Renewal", "", "Let us talk.")).expect("utf-8")
    };
    let attached = |by: &str, inner: &str| {
        format!(
            "Message-ID: <fw.{}>\r\nFrom: {by}\r\nTo: {forward}\r\nSubject: FW: Renewal\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             forwarded\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--b--\r\n",
            by.replace('@', ".")
        )
        .into_bytes()
    };
    let now = SystemTime::now();
    d.deliver(
        forward,
        &attached(
            ALICE,
            &original("o1@contoso.com", "carol@contoso.com", ALICE),
        ),
        "",
        now,
    );
    let inline = format!(
        "Message-ID: <fw.inline@example.com>\r\nFrom: {BOB}\r\nTo: {forward}\r\nSubject: Fwd: Order\r\n\r\n\
         FYI\r\n\r\n---------- Forwarded message ---------\r\nFrom: Dan <dan@fabrikam.com>\r\n\
         Date: Mon, 1 Sep 2025 at 10:00\r\nSubject: Order\r\nTo: {BOB}\r\n\r\nTen more, please.\r\n"
    );
    d.deliver(forward, inline.as_bytes(), "", now);
    d.deliver(
        forward,
        &attached(
            "mallory@evil.example",
            &original("o3@evil.example", "x@evil.example", ALICE),
        ),
        "",
        now,
    );
    let profile = format!(
        "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\n",
        d.imaps_port,
        d.ca_file.display()
    );
    let cfg = setup.write(
        "",
        &format!(
            "{profile}\
             [[mailbox]]\nemail_address = \"{forward}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\
             forward_mailbox = true\nprocess_and_delete_emails = true\n\
             [[mailbox]]\nemail_address = \"{ALICE}\"\napproval = \"approved\"\nincoming_delivery = \"forward_mailbox\"\n\
             track = \"all\"\npassword = \"{PASSWORD}\"\n\
             [[mailbox]]\nemail_address = \"{BOB}\"\napproval = \"approved\"\nincoming_delivery = \"forward_mailbox\"\n\
             track = \"all\"\npassword = \"{PASSWORD}\"\n"
        ),
    );
    let s = setup.start(&cfg);
    wait_for(
        "the forwards to be processed",
        Duration::from_secs(60),
        || {
            let f = s.mailbox(forward);
            (f["items_failed_last_sync"].as_u64().unwrap_or(0) >= 1
                || f["decisions"]["undeliverable"] == 1)
                .then_some(())
        },
    );
    let o1 = by_message_id(&setup, "o1@contoso.com");
    assert_eq!(o1.len(), 1, "{o1:?}");
    assert_eq!(
        o1[0]["mailbox"], ALICE,
        "attributed to the user who forwarded it"
    );
    assert_eq!(
        o1[0]["from"][0], "carol@contoso.com",
        "with the original header"
    );
    let bobs = activities(&setup, &format!("mailbox={BOB}"));
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0]["subject"], "Order");
    assert_eq!(bobs[0]["from"][0], "Dan <dan@fabrikam.com>");
    assert!(by_message_id(&setup, "o3@evil.example").is_empty());
    let (code, body) = http(
        setup.port,
        "GET",
        &format!("/api/v1/mailboxes/{forward}/failures"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("undeliverable") && body.contains("mallory@evil.example"),
        "{body}"
    );
    // The two processed forwards left the server; the undeliverable one stayed.
    wait_for(
        "processed forwards to be deleted",
        Duration::from_secs(30),
        || (d.inbox_files(forward).len() == 1).then_some(()),
    );
    let alice = s.mailbox(ALICE);
    assert_eq!(
        alice["not_processed_code"], "through_forward_mailbox",
        "{alice}"
    );
    assert!(s.terminate().success());
}

/// P6 per mailbox: relevance on and no date means a first sync takes only `first_sync_days`
/// back; moving a date earlier (the mailbox's own, or the profile's) pulls what was passed over,
/// once, with nothing twice. IMAP by INTERNALDATE and POP3 by the Date header.
#[test]
fn moving_the_process_date_earlier_pulls_the_earlier_emails() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let contacts = setup.dir.path().join("contacts.csv");
    std::fs::write(&contacts, "address,record\ncarol@contoso.com,contact:42\n").expect("contacts");
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let dated = |days_ago: u64| {
        let t: chrono::DateTime<chrono::Utc> = (now - day * days_ago as u32).into();
        t.to_rfc2822()
    };
    for (n, days_ago) in [(1, 40u64), (2, 10), (3, 0)] {
        let raw = format!(
            "Message-ID: <p{n}@contoso.com>\r\nDate: {}\r\nFrom: carol@contoso.com\r\nTo: {ALICE}\r\n\
             Subject: Note {n}\r\n\r\nText {n}\r\n",
            dated(days_ago)
        );
        d.deliver(ALICE, raw.as_bytes(), "", now - day * days_ago as u32);
        d.deliver(
            BOB,
            raw.replace(ALICE, BOB)
                .replace("@contoso.com>", "@pop.contoso.com>")
                .as_bytes(),
            "",
            now,
        );
    }
    let write = |alice_extra: &str, profile_extra: &str| {
        setup.write(
            &format!("contacts_file = \"{}\"", contacts.display()),
            &format!(
                "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
                 incoming_port_number = {}\nca_file = \"{ca}\"\nfirst_sync_days = 20\n{profile_extra}\n\
                 [[profile]]\nname = \"pop\"\nserver_type = \"pop3_smtp\"\nincoming_server_location = \"127.0.0.1\"\n\
                 incoming_port_number = {}\nca_file = \"{ca}\"\nfirst_sync_days = 20\n\
                 [[mailbox]]\nemail_address = \"{ALICE}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n\
                 track = \"known_contacts\"\n{alice_extra}\n\
                 [[mailbox]]\nemail_address = \"{BOB}\"\nprofile = \"pop\"\npassword = \"{PASSWORD}\"\n\
                 approval = \"approved\"\ntrack = \"known_contacts\"\n{alice_extra}\n",
                d.imaps_port,
                d.pop3s_port,
                ca = d.ca_file.display()
            ),
        )
    };
    let notes = |who: &str| -> Vec<String> {
        let store = setup.store();
        let mut s: Vec<String> = store
            .activities()
            .expect("activities")
            .into_iter()
            .filter(|a| a.mailbox == who)
            .filter_map(|a| a.headers.subject)
            .collect();
        s.sort();
        s
    };
    // First sync: relevance on, no date: 20 days back.
    let (st, out) = support::sidesync::run_once(&write("", ""));
    assert!(st.success(), "{out}");
    assert_eq!(notes(ALICE), vec!["Note 2", "Note 3"], "IMAP: 20 days back");
    assert_eq!(notes(BOB), vec!["Note 2", "Note 3"], "POP3: 20 days back");
    // The mailboxes' own date moves earlier than what they took: the passed-over email comes.
    let (st, out) =
        support::sidesync::run_once(&write("process_emails_received_after = 2020-01-01", ""));
    assert!(st.success(), "{out}");
    assert_eq!(notes(ALICE), vec!["Note 1", "Note 2", "Note 3"], "{out}");
    assert_eq!(notes(BOB), vec!["Note 1", "Note 2", "Note 3"], "{out}");
    // Again: nothing twice.
    let (st, out) =
        support::sidesync::run_once(&write("process_emails_received_after = 2020-01-01", ""));
    assert!(st.success(), "{out}");
    assert_eq!(notes(ALICE).len(), 3);
    assert_eq!(notes(BOB).len(), 3);
    let store = setup.store();
    assert_eq!(store.activity_count().expect("count"), 6);
}

//! `track_sent` against a real dovecot: a Sent folder with 200 emails, 50 of them replies to
//! tracked mail, holds exactly those 50 as outgoing activities under `responses`, each joining the
//! conversation it answers; the copies sidesync appended for email it sent itself stay one
//! activity each; a SIGKILL and restart read nothing twice. A Sent folder by another name is
//! found by its SPECIAL-USE `\Sent` mark, before a folder merely called "Sent".

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::{Sidesync, http};
use support::wait_for;

const ALICE: &str = "alice@example.com";
const CUSTOMERS: &str = "Customers";
const SENT_BY_SIDESYNC: usize = 5;

fn config(setup: &Setup, d: &Dovecot) -> std::path::PathBuf {
    config_with(setup, d, "save_sent_copy = true\n")
}

fn config_with(setup: &Setup, d: &Dovecot, profile_extra: &str) -> std::path::PathBuf {
    // Alice keeps Dynamics' default filter (responses); her Customers folder is a tracking
    // folder, so what she received there is tracked mail to answer.
    let profile = format!(
        "[[profile]]\nname = \"p\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\noutgoing_server_location = \"127.0.0.1\"\n\
         outgoing_port_number = {}\noutgoing_tls = \"starttls\"\nallow_plaintext_login = true\n\
         {profile_extra}",
        d.imaps_port,
        d.ca_file.display(),
        d.submission_port,
    );
    let mailbox = format!(
        "[[mailbox]]\nemail_address = \"{ALICE}\"\npassword = \"{PASSWORD}\"\n\
         approval = \"approved\"\ntrack_sent = true\n\
         [[mailbox.tracking_folder]]\nfolder = \"{CUSTOMERS}\"\nregarding = \"account:contoso\"\n"
    );
    setup.write(
        "outbox_retry_interval = \"1s\"\noutbox_max_retry_interval = \"2s\"",
        &[profile, mailbox].concat(),
    )
}

fn email(id: &str, from: &str, to: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\nFrom: {from}\r\nTo: {to}\r\n\
         Subject: {subject}\r\n{extra}\r\nHello.\r\n"
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

fn activities(setup: &Setup) -> Vec<Value> {
    api(setup, "GET", "/api/v1/activities?limit=1000", &Value::Null)["activities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the mailbox has finished a sync that began after now.
fn another_sync(s: &Sidesync) {
    let after = chrono::Utc::now();
    wait_for("another sync", Duration::from_secs(60), || {
        let m = s.mailbox(ALICE);
        let started = m["last_sync_started_on"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?;
        let done = m["last_successful_sync_completed_on"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?;
        (started > after && done >= started).then_some(())
    });
}

#[test]
fn a_sent_folder_tracks_exactly_the_replies_and_never_twice() {
    let d = Dovecot::start();
    let setup = Setup::new();
    d.add_user(ALICE);
    // 50 tracked incoming emails, from customers.
    for i in 0..50 {
        let from = format!("customer{i}@contoso.com");
        d.deliver_to_folder(
            ALICE,
            CUSTOMERS,
            &email(
                &format!("in{i}@contoso.com"),
                &from,
                ALICE,
                &format!("Order {i}"),
                "",
            ),
        );
    }
    // Sent: 50 replies to them (half by In-Reply-To, half by References only), 150 others.
    for i in 0..200u32 {
        let raw = if i < 50 {
            let how = if i.is_multiple_of(2) {
                format!("In-Reply-To: <in{i}@contoso.com>\r\n")
            } else {
                format!("References: <older@contoso.com> <in{i}@contoso.com>\r\n")
            };
            email(
                &format!("reply{i}@example.com"),
                ALICE,
                &format!("customer{i}@contoso.com"),
                &format!("Re: Order {i}"),
                &how,
            )
        } else {
            email(
                &format!("other{i}@example.com"),
                ALICE,
                &format!("friend{i}@gmail.com"),
                &format!("Note {i}"),
                "",
            )
        };
        d.deliver_to_folder(ALICE, "Sent", &raw);
    }
    let cfg = config(&setup, &d);
    let s = setup.start(&cfg);
    // Email sidesync sends itself, its copy appended to the same Sent folder.
    let mut queued = Vec::new();
    for i in 0..SENT_BY_SIDESYNC {
        let v = api(
            &setup,
            "POST",
            "/api/v1/outbox",
            &json!({"from": ALICE, "to": [format!("prospect{i}@fabrikam.com")],
                    "subject": format!("Offer {i}"), "text": "t"}),
        );
        queued.push(v["id"].as_u64().expect("id"));
    }
    for id in &queued {
        wait_for("the Sent copy", Duration::from_secs(60), || {
            let v = api(&setup, "GET", &format!("/api/v1/outbox/{id}"), &Value::Null);
            (v["sent_copy"] == "appended to Sent").then_some(())
        });
    }
    let sent_folder_rows = |store: &sidesync::store::Store| {
        store
            .sync_id_map(ALICE)
            .expect("map")
            .into_iter()
            .filter(|((folder, _, _), _)| folder == "Sent")
            .collect::<Vec<_>>()
    };
    // Every email of Sent (its 200 and the copies) has been looked at once the page says so.
    wait_for("Sent to be read", Duration::from_secs(120), || {
        let outgoing = activities(&setup)
            .into_iter()
            .filter(|a| a["folder"] == "Sent")
            .count();
        (outgoing == 50).then_some(())
    });
    another_sync(&s);
    assert_eq!(s.mailbox(ALICE)["track_sent"], true, "/status shows it");
    let check = |setup: &Setup| {
        let all = activities(setup);
        let incoming: HashMap<String, u64> = all
            .iter()
            .filter(|a| a["direction"] == "incoming")
            .filter_map(|a| {
                Some((
                    a["message_id"].as_str()?.to_string(),
                    a["conversation"].as_u64()?,
                ))
            })
            .collect();
        assert_eq!(incoming.len(), 50, "the tracked incoming mail");
        let from_sent: Vec<&Value> = all.iter().filter(|a| a["folder"] == "Sent").collect();
        assert_eq!(from_sent.len(), 50, "exactly the replies");
        let mut seen = HashSet::new();
        for a in &from_sent {
            assert_eq!(a["direction"], "outgoing", "{a}");
            let mid = a["message_id"].as_str().expect("message id");
            assert!(seen.insert(mid.to_string()), "{mid} twice");
            let i: usize = mid
                .trim_start_matches("<reply")
                .trim_start_matches("reply")
                .split('@')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a reply: {mid}"));
            let answered = incoming
                .iter()
                .find(|(m, _)| m.contains(&format!("in{i}@")))
                .map(|(_, c)| *c);
            assert_eq!(a["conversation"].as_u64(), answered, "{a}");
            assert_eq!(a["regarding"], "account:contoso", "inherited: {a}");
            let method = if i.is_multiple_of(2) {
                "in_reply_to"
            } else {
                "references"
            };
            assert_eq!(a["correlation_method"], method, "{a}");
        }
        // What sidesync sent is one activity each: the outgoing one, listed once.
        for id in &queued {
            let same: Vec<&Value> = all.iter().filter(|a| a["id"] == *id).collect();
            assert_eq!(same.len(), 1);
            assert_eq!(same[0]["direction"], "outgoing");
            assert_eq!(same[0]["folder"], "");
        }
        assert_eq!(all.len(), 50 + 50 + SENT_BY_SIDESYNC, "nothing else");
    };
    check(&setup);
    // SIGKILL and restart: Sent is not read again, nothing is stored twice.
    s.kill9();
    let s = setup.start(&cfg);
    another_sync(&s);
    another_sync(&s);
    check(&setup);
    assert!(s.terminate().success());
    let store = setup.store();
    let rows = sent_folder_rows(&store);
    assert_eq!(
        rows.len(),
        200 + SENT_BY_SIDESYNC,
        "one entry per UID of Sent"
    );
    let uids: HashSet<u32> = rows.iter().map(|((_, _, uid), _)| *uid).collect();
    assert_eq!(uids.len(), rows.len());
    for id in &queued {
        assert_eq!(
            rows.iter().filter(|(_, activity)| activity == id).count(),
            1,
            "the copy of {id} names its outgoing activity"
        );
    }
}

/// dovecot marks "Gesendet" `\Sent` (a name no list of common names holds).
const SPECIAL_USE: &str = "namespace inbox {\n  inbox = yes\n  separator = .\n  \
    mailbox Gesendet {\n    special_use = \\Sent\n  }\n}\n";

#[test]
fn the_folder_marked_sent_is_read_not_one_merely_called_sent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("extra.conf"), SPECIAL_USE).expect("extra.conf");
    let d = Dovecot::start_in(tmp.path());
    let setup = Setup::new();
    d.add_user(ALICE);
    d.deliver_to_folder(
        ALICE,
        CUSTOMERS,
        &email(
            "in0@contoso.com",
            "customer0@contoso.com",
            ALICE,
            "Order 0",
            "",
        ),
    );
    let reply = |id: &str| {
        email(
            id,
            ALICE,
            "customer0@contoso.com",
            "Re: Order 0",
            "In-Reply-To: <in0@contoso.com>\r\n",
        )
    };
    d.deliver_to_folder(ALICE, "Gesendet", &reply("marked@example.com"));
    d.deliver_to_folder(ALICE, "Sent", &reply("merely-named@example.com"));
    let cfg = config_with(&setup, &d, "");
    let s = setup.start(&cfg);
    let from_sent = wait_for(
        "the marked folder to be read",
        Duration::from_secs(60),
        || {
            let found: Vec<Value> = activities(&setup)
                .into_iter()
                .filter(|a| a["direction"] == "outgoing")
                .collect();
            (!found.is_empty()).then_some(found)
        },
    );
    another_sync(&s);
    let outgoing: Vec<Value> = activities(&setup)
        .into_iter()
        .filter(|a| a["direction"] == "outgoing")
        .collect();
    assert_eq!(outgoing.len(), 1, "{outgoing:?}");
    assert_eq!(outgoing[0]["folder"], "Gesendet", "{from_sent:?}");
    assert_eq!(outgoing[0]["message_id"], from_sent[0]["message_id"]);
    assert!(
        outgoing[0]["message_id"]
            .as_str()
            .is_some_and(|m| m.contains("marked@")),
        "{outgoing:?}"
    );
    assert!(s.terminate().success());
}

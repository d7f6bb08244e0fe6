//! Poison emails: one email that fails to be stored (here through the debug-build hook
//! `SIDESYNC_TEST_POISON`, which fails the preparation of any email containing its bytes) is an
//! item failure of that email only. It is tried `item_failure_max_tries` times, then skipped and
//! listed in the API, while the mailbox's other emails are stored; POP3 with deletion on leaves it
//! on the server. The API's retry action brings it back once it can be stored.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::sidesync::{Sidesync, http};
use support::{mail, wait_for};

const MARK: &str = "POISON-MARK-7f3a9c";

/// Its own Message-ID per mailbox: one email seen by two mailboxes would be one activity.
fn poisoned(user: &str) -> Vec<u8> {
    let id = user.replace('@', ".");
    format!(
        "Message-ID: <poison.{id}@sample.test>\r\nFrom: a@example.com\r\nTo: {user}\r\n\
         Subject: poison\r\nDate: Mon, 1 Sep 2025 10:00:00 +0000\r\n\r\n{MARK}\r\n"
    )
    .into_bytes()
}

fn failures(setup: &Setup, address: &str) -> Vec<Value> {
    let (code, body) = http(
        setup.port,
        "GET",
        &format!("/api/v1/mailboxes/{address}/failures"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).expect("json")["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn stored(s: &Sidesync, address: &str) -> u64 {
    s.mailbox(address)["activities_stored"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_poison_email_is_tried_then_skipped_listed_and_retried() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let (imap_user, pop_user) = ("poison-imap@example.com", "poison-pop@example.com");
    for user in [imap_user, pop_user] {
        for n in 0..2 {
            d.deliver(user, &mail::sample(user, n, 1_500), "", SystemTime::now());
        }
        d.deliver(user, &poisoned(user), "", SystemTime::now());
        for n in 2..5 {
            d.deliver(user, &mail::sample(user, n, 1_500), "", SystemTime::now());
        }
    }
    let body = format!(
        "[[profile]]\ntrack = \"all\"\nname = \"imap\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{ca}\"\nmin_polling_interval = \"1s\"\n\
         [[profile]]\ntrack = \"all\"\nname = \"pop\"\nserver_type = \"pop3_smtp\"\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\nca_file = \"{ca}\"\n\
         min_polling_interval = \"1s\"\npop3_delete_after_days = 0\n\
         [[mailbox]]\nemail_address = \"{imap_user}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\n\
         approval = \"approved\"\n\
         [[mailbox]]\nemail_address = \"{pop_user}\"\nprofile = \"pop\"\npassword = \"{PASSWORD}\"\n\
         approval = \"approved\"\n",
        d.imaps_port,
        d.pop3s_port,
        ca = d.ca_file.display()
    );
    let cfg = setup.write("item_failure_max_tries = 3", &body);
    let log = setup.dir.path().join("sidesync.log");
    let s = Sidesync::start_with_env(&cfg, &log, setup.port, &[("SIDESYNC_TEST_POISON", MARK)]);
    for user in [imap_user, pop_user] {
        let f = wait_for(
            &format!("{user}'s poison email to be skipped"),
            Duration::from_secs(90),
            || {
                failures(&setup, user)
                    .into_iter()
                    .find(|f| f["skipped"] == true)
            },
        );
        assert_eq!(f["code"], "email_not_stored", "{f}");
        assert_eq!(f["tries"], 3, "tried three times, then skipped: {f}");
        assert!(
            f["error"].as_str().unwrap_or("").contains("injected fault"),
            "{f}"
        );
        // Every other email is stored; the mailbox went on.
        wait_for(
            &format!("{user}'s other emails"),
            Duration::from_secs(60),
            || (stored(&s, user) == 5).then_some(()),
        );
        let m = s.mailbox(user);
        assert_eq!(m["latest_alert"]["code"], "email_not_stored", "{m}");
    }
    // POP3 with deletion on: the five stored emails left the server, the poison one did not.
    wait_for(
        "the stored POP3 emails to be deleted",
        Duration::from_secs(60),
        || (d.inbox_files(pop_user).len() == 1).then_some(()),
    );
    // The retry action: unknown keys are 404, GET is 405.
    let (code, _) = http(
        setup.port,
        "POST",
        &format!("/api/v1/mailboxes/{imap_user}/failures/INBOX:1:999/retry"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 404);
    let key = failures(&setup, imap_user)[0]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let path = format!("/api/v1/mailboxes/{imap_user}/failures/{key}/retry");
    assert_eq!(http(setup.port, "GET", &path, Some(TOKEN), "").0, 405);
    assert_eq!(http(setup.port, "POST", &path, None, "").0, 401);
    assert!(s.terminate().success());

    // Restarted without the fault: a retried email is fetched and stored, nothing twice.
    let s = Sidesync::start(&cfg, &log, setup.port);
    for user in [imap_user, pop_user] {
        let key = failures(&setup, user)[0]["key"]
            .as_str()
            .expect("key")
            .to_string();
        let (code, answer) = http(
            setup.port,
            "POST",
            &format!("/api/v1/mailboxes/{user}/failures/{key}/retry"),
            Some(TOKEN),
            "",
        );
        assert_eq!(code, 200, "{answer}");
        wait_for(
            &format!("{user}'s retried email"),
            Duration::from_secs(60),
            || (stored(&s, user) == 6).then_some(()),
        );
        assert!(failures(&setup, user).is_empty());
    }
    wait_for(
        "the retried POP3 email to be deleted",
        Duration::from_secs(60),
        || d.inbox_files(pop_user).is_empty().then_some(()),
    );
    assert!(s.terminate().success());
    let store = setup.store();
    let acts = store.activities().expect("activities");
    assert_eq!(acts.len(), 12, "six per mailbox, none twice");
}

/// P10: with `move_undelivered_emails`, an email that fails to be tracked (a poison email, skipped
/// after its tries) leaves INBOX for "Undeliverable" (created by sidesync) once its failure is
/// committed, with an alert; the others are stored; nothing is lost.
#[test]
fn a_failing_email_lands_in_undeliverable_with_an_alert() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "undeliverable@example.com";
    d.deliver(user, &mail::sample(user, 0, 1_500), "", SystemTime::now());
    d.deliver(user, &poisoned(user), "", SystemTime::now());
    d.deliver(user, &mail::sample(user, 1, 1_500), "", SystemTime::now());
    let body = format!(
        "[[profile]]\ntrack = \"all\"\nname = \"imap\"\nis_default = true\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\nca_file = \"{}\"\n\
         min_polling_interval = \"1s\"\nmove_undelivered_emails = true\n\
         [[mailbox]]\nemail_address = \"{user}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
        d.imaps_port,
        d.ca_file.display()
    );
    let cfg = setup.write("item_failure_max_tries = 2", &body);
    let log = setup.dir.path().join("sidesync.log");
    let s = Sidesync::start_with_env(&cfg, &log, setup.port, &[("SIDESYNC_TEST_POISON", MARK)]);
    let moved = wait_for(
        "the poison email in Undeliverable",
        Duration::from_secs(90),
        || {
            let there = d.folder_messages(user, "Undeliverable");
            (!there.is_empty()).then_some(there)
        },
    );
    assert_eq!(moved.len(), 1);
    assert!(
        moved[0].contains(MARK),
        "the failing email itself was moved"
    );
    // The move removes it from INBOX (the server may finish that a moment after the copy).
    wait_for(
        "the poison email to leave INBOX",
        Duration::from_secs(30),
        || (d.inbox_files(user).len() == 2).then_some(()),
    );
    let m = wait_for("the alert", Duration::from_secs(30), || {
        let m = s.mailbox(user);
        (m["latest_alert"]["code"] == "moved_to_undeliverable").then_some(m)
    });
    let text = m["latest_alert"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("moved to \"Undeliverable\"") && text.contains("injected fault"),
        "{text}"
    );
    assert_eq!(m["latest_alert"]["level"], "warning");
    assert_eq!(stored(&s, user), 2);
    let f = failures(&setup, user);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["moved_to"], "Undeliverable", "{f:?}");
    // Later syncs move nothing more and fail nothing.
    d.deliver(user, &mail::sample(user, 2, 1_500), "", SystemTime::now());
    wait_for("the next email", Duration::from_secs(60), || {
        (stored(&s, user) == 3).then_some(())
    });
    let m = s.mailbox(user);
    assert!(m["last_error"].is_null(), "{m}");
    assert_eq!(d.folder_messages(user, "Undeliverable").len(), 1);
    assert!(s.terminate().success());
}

/// An email larger than the profile's `max_message_size` is an email-level alert: scope `email`
/// with its sync id (folder, UIDVALIDITY, UID), listed by `?scope=email`; a scope that does not
/// exist is a 400 problem naming the parameter and the allowed values.
#[test]
fn a_too_large_email_is_an_email_scope_alert_with_its_sync_id() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "too-large@example.com";
    d.deliver(user, &mail::sample(user, 0, 1_000), "", SystemTime::now());
    d.deliver(user, &mail::sample(user, 1, 20_000), "", SystemTime::now());
    let body = format!(
        "[[profile]]\ntrack = \"all\"\nname = \"imap\"\nis_default = true\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\nca_file = \"{}\"\n\
         min_polling_interval = \"1s\"\nmax_message_size = 4096\n\
         [[mailbox]]\nemail_address = \"{user}\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
        d.imaps_port,
        d.ca_file.display()
    );
    let cfg = setup.write("", &body);
    let s = setup.start(&cfg);
    let list = |query: &str| -> Vec<Value> {
        let (code, body) = http(
            setup.port,
            "GET",
            &format!("/api/v1/alerts?{query}"),
            Some(TOKEN),
            "",
        );
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("json")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let alerts = wait_for(
        "the too-large email's alert",
        Duration::from_secs(60),
        || {
            let a = list("scope=email");
            (!a.is_empty()).then_some(a)
        },
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["code"], "message_too_large", "{a}");
    assert_eq!(a["scope"], "email", "{a}");
    assert_eq!(a["mailbox"], user, "{a}");
    assert_eq!(a["email"]["folder"], "INBOX", "{a}");
    assert_eq!(a["email"]["uid"], 2, "{a}");
    assert!(a["email"]["uidvalidity"].as_u64().is_some(), "{a}");
    // The same sync id as the item failure (committed with the batch that passes it, which
    // may come a moment after the alert).
    let f = wait_for("the item failure", Duration::from_secs(30), || {
        let f = failures(&setup, user);
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["uid"], a["email"]["uid"]);
    assert_eq!(f[0]["uidvalidity"], a["email"]["uidvalidity"]);
    // Other filters: the profile's, the mailbox's wall; none of them mailbox-scope.
    assert!(list("profile=imap").iter().any(|x| x["id"] == a["id"]));
    assert!(
        list(&format!("mailbox={user}"))
            .iter()
            .any(|x| x["id"] == a["id"])
    );
    assert!(list("profile=another").is_empty());
    assert!(
        list("scope=mailbox")
            .iter()
            .all(|x| x["code"] != "message_too_large")
    );
    let (code, body) = http(
        setup.port,
        "GET",
        "/api/v1/alerts?scope=emails",
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 400, "{body}");
    let problem: Value = serde_json::from_str(&body).expect("problem json");
    assert_eq!(
        problem["type"], "urn:sidesync:problem:bad-request",
        "{problem}"
    );
    assert_eq!(problem["parameter"], "scope", "{problem}");
    assert_eq!(
        problem["allowed"],
        serde_json::json!(["email", "mailbox", "profile"]),
        "{problem}"
    );
    assert!(s.terminate().success());
}

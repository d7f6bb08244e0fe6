//! The mailbox lifecycle against real servers: approval through the API, Test & Enable (CLI and
//! API), profile credentials with a Dovecot master user, the connection limit, a password changed
//! on the server, stalls and transient faults through a misbehaving proxy, and the 50% alert email.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sidesync::store::{Enablement, RunStatus};
use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::proxy::{Mode, Proxy};
use support::sidesync::{Sidesync, cli, http};
use support::{mail, wait_for};

fn profile(name: &str, host: &str, port: u16, ca: &Path, extra: &str) -> String {
    let timeout = if extra.contains("timeout_mailbox_connection_after") {
        ""
    } else {
        "timeout_mailbox_connection_after = \"10s\"\n"
    };
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"{name}\"\nincoming_server_location = \"{host}\"\nincoming_port_number = {port}\n\
         ca_file = \"{}\"\nmin_polling_interval = \"1s\"\n{timeout}{extra}\n",
        ca.display()
    )
}

fn outgoing(d: &Dovecot) -> String {
    format!(
        "outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {}\noutgoing_tls = \"starttls\"\n",
        d.submission_port
    )
}

fn mailbox(address: &str, profile: &str, password: &str, extra: &str) -> String {
    format!(
        "[[mailbox]]\nemail_address = \"{address}\"\nprofile = \"{profile}\"\npassword = \"{password}\"\n{extra}\n"
    )
}

fn fill(d: &Dovecot, user: &str, count: usize, size: usize) {
    for n in 0..count {
        d.deliver(user, &mail::sample(user, n, size), "", SystemTime::now());
    }
}

fn stored(s: &Sidesync, address: &str) -> Option<u64> {
    s.mailbox(address)["activities_stored"].as_u64()
}

#[test]
fn an_unapproved_mailbox_waits_until_approved_through_the_api() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "pending@example.com";
    fill(&d, user, 12, 2_000);
    let cfg = setup.write(
        "",
        &[
            profile("p", "127.0.0.1", d.imaps_port, &d.ca_file, ""),
            mailbox(user, "p", PASSWORD, "approval = \"pending_approval\""),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let m = wait_for("the mailbox to be parked", Duration::from_secs(30), || {
        let m = s.mailbox(user);
        (m["not_processed_code"] == "not_approved").then_some(m)
    });
    assert_eq!(m["activities_stored"], 0);
    assert!(
        m["not_processed_reason"]
            .as_str()
            .unwrap_or("")
            .contains("not approved"),
        "{m}"
    );
    let path = format!("/api/v1/mailboxes/{user}/approve");
    assert_eq!(http(setup.port, "POST", &path, None, "").0, 401, "no token");
    assert_eq!(
        http(
            setup.port,
            "POST",
            &path,
            Some("wrong-token-wrong-token"),
            ""
        )
        .0,
        401,
        "wrong token"
    );
    let (code, body) = http(
        setup.port,
        "POST",
        &path,
        Some(TOKEN),
        "{\"approval\": \"maybe\"}",
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        http(
            setup.port,
            "POST",
            "/api/v1/mailboxes/nobody@example.com/approve",
            Some(TOKEN),
            ""
        )
        .0,
        404
    );
    assert_eq!(http(setup.port, "GET", &path, Some(TOKEN), "").0, 405);
    let (code, body) = http(setup.port, "POST", &path, Some(TOKEN), "");
    assert_eq!(code, 200, "{body}");
    wait_for(
        "the approved mailbox to sync",
        Duration::from_secs(60),
        || (stored(&s, user)? == 12).then_some(()),
    );
    let m = s.mailbox(user);
    assert_eq!(m["approval"], "approved");
    assert_eq!(m["approval_configured"], "pending_approval");
    assert_eq!(
        m["incoming_enablement"]["state"], "enabled",
        "tested automatically before the first sync: {m}"
    );
    let synced_before = m["last_successful_sync_completed_on"].clone();
    assert!(s.terminate().success());
    // The approval is in the store: it survives a restart, and the mailbox syncs again.
    let s = setup.start(&cfg);
    wait_for(
        "the mailbox to sync after a restart",
        Duration::from_secs(30),
        || {
            let m = s.mailbox(user);
            (m["enabled"] == true && m["last_successful_sync_completed_on"] != synced_before)
                .then_some(())
        },
    );
    assert!(s.terminate().success());
}

#[test]
fn test_and_enable_records_success_and_each_failure_with_its_reason() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let users = [
        "good@example.com",
        "wrongpw@example.com",
        "nohost@example.com",
        "closed@example.com",
        "untrusted@example.com",
    ];
    for u in users {
        d.add_user(u);
    }
    let wrong = "wrong-password-Z9";
    let cfg = setup.write(
        "",
        &[
            profile("good", "127.0.0.1", d.imaps_port, &d.ca_file, &outgoing(&d)),
            profile("nohost", "no-such-host.invalid", 993, &d.ca_file, ""),
            profile("closed", "127.0.0.1", closed, &d.ca_file, ""),
            profile("untrusted", "127.0.0.1", d.imaps_port, &d.other_ca_file, ""),
            mailbox(users[0], "good", PASSWORD, "approval = \"approved\""),
            mailbox(users[1], "good", wrong, "approval = \"approved\""),
            mailbox(users[2], "nohost", PASSWORD, "approval = \"approved\""),
            mailbox(users[3], "closed", PASSWORD, "approval = \"approved\""),
            mailbox(users[4], "untrusted", PASSWORD, "approval = \"approved\""),
        ]
        .concat(),
    );
    let (status, out) = cli(&["test", "--config", cfg.to_str().expect("utf-8")]);
    assert_eq!(status.code(), Some(1), "{out}");
    let row = |u: &str| {
        out.lines()
            .find(|l| l.starts_with(u))
            .unwrap_or_else(|| panic!("no row for {u}:\n{out}"))
            .to_string()
    };
    assert!(row(users[0]).contains("success   success"), "{out}");
    assert!(
        row(users[1]).contains("failure") && row(users[1]).contains("authentication rejected"),
        "{out}"
    );
    assert!(
        row(users[2]).contains("cannot find the server no-such-host.invalid"),
        "{out}"
    );
    assert!(
        row(users[3]).contains(&format!("cannot connect to 127.0.0.1:{closed}")),
        "{out}"
    );
    assert!(row(users[4]).contains("not trusted"), "{out}");
    assert!(
        !out.contains(wrong) && !out.contains(PASSWORD),
        "a password reached the output"
    );

    let store = setup.store();
    let state = |u: &str| store.mailbox_state(u).expect("state");
    let good = state(users[0]);
    let test = good.last_test.clone().expect("recorded");
    assert_eq!(
        (test.incoming.status, test.outgoing.status),
        (RunStatus::Success, RunStatus::Success)
    );
    assert_eq!(good.incoming_enablement, Enablement::Enabled);
    assert!(
        test.incoming.transcript.contains("EXAMINE \"INBOX\""),
        "{}",
        test.incoming.transcript
    );
    assert!(
        test.outgoing
            .transcript
            .contains("MAIL FROM:<good@example.com>")
            && test.outgoing.transcript.contains("RSET")
    );
    assert!(
        test.outgoing.transcript.contains("AUTH PLAIN ********"),
        "{}",
        test.outgoing.transcript
    );
    let bad = state(users[1]).last_test.expect("recorded");
    assert_eq!(
        bad.incoming.code.as_deref(),
        Some("authentication_rejected")
    );
    assert!(
        bad.incoming.transcript.contains("********") && !bad.incoming.transcript.contains(wrong),
        "{}",
        bad.incoming.transcript
    );
    assert!(matches!(
        state(users[1]).incoming_enablement,
        Enablement::Disabled { .. }
    ));
    assert_eq!(
        state(users[2])
            .last_test
            .expect("t")
            .incoming
            .code
            .as_deref(),
        Some("unknown_host")
    );
    assert_eq!(
        state(users[3])
            .last_test
            .expect("t")
            .incoming
            .code
            .as_deref(),
        Some("connect_failed")
    );
    assert_eq!(
        state(users[4])
            .last_test
            .expect("t")
            .incoming
            .code
            .as_deref(),
        Some("certificate_not_trusted")
    );
    let profile_test = store.profile_states().expect("profiles")["good"]
        .last_test
        .clone();
    let profile_test = profile_test.expect("the profile keeps its last test (P14)");
    assert!(
        users[..2].contains(&profile_test.mailbox.as_str()),
        "{}",
        profile_test.mailbox
    );
    drop(store);

    // While the appliance runs, `sidesync test` goes through its API.
    let s = setup.start(&cfg);
    let (status, out) = cli(&[
        "test",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--profile",
        "good",
    ]);
    assert_eq!(status.code(), Some(1), "wrongpw is in profile good: {out}");
    assert!(
        out.contains(users[0]) && out.contains(users[1]) && !out.contains(users[2]),
        "{out}"
    );
    let v = support::sidesync::test_through_api(setup.port, users[0], TOKEN);
    assert_eq!(v["incoming"]["status"], "success");
    assert!(
        v["incoming"]["transcript"]
            .as_str()
            .unwrap_or("")
            .contains("EXAMINE")
    );
    assert!(s.terminate().success());
}

#[test]
fn profile_credentials_through_a_master_user_and_the_connection_limit() {
    let d = Dovecot::start();
    let setup = Setup::new();
    d.add_master("sidesync-master", "master-secret-77");
    let users: Vec<String> = (1..=6).map(|i| format!("member{i}@example.com")).collect();
    for u in &users {
        fill(&d, u, 60, 20_000);
    }
    // The server side counts connections: a proxy in front of dovecot. Plaintext IMAP here, so
    // that the proxy sees LOGOUT: a connection ends for the count when its client says goodbye.
    let proxy = Proxy::start(d.imap_port, Mode::Forward);
    let mut body = profile(
        "shared",
        "127.0.0.1",
        proxy.port,
        &d.ca_file,
        "incoming_tls = \"none\"\nallow_plaintext_login = true\nincoming_credential_retrieval = \"profile\"\n\
         incoming_username = \"sidesync-master\"\nincoming_password = \"master-secret-77\"\n\
         max_concurrent_connections = 2",
    );
    for u in &users {
        body.push_str(&format!(
            "[[mailbox]]\nemail_address = \"{u}\"\nprofile = \"shared\"\napproval = \"approved\"\n"
        ));
    }
    let cfg = setup.write("fetch_batch_size = 10", &body);
    let s = setup.start(&cfg);
    wait_for(
        "every member mailbox to sync through the master user",
        Duration::from_secs(120),
        || {
            users
                .iter()
                .all(|u| stored(&s, u) == Some(60))
                .then_some(())
        },
    );
    assert!(s.terminate().success());
    assert!(
        proxy.total() >= 12,
        "each mailbox was tested and synced: {} connections",
        proxy.total()
    );
    assert!(
        proxy.max() <= 2,
        "at most 2 connections at once for the profile, saw {}",
        proxy.max()
    );
    assert!(proxy.max() >= 1);
    let logs = std::fs::read_to_string(setup.dir.path().join("sidesync.log")).expect("log");
    assert!(!logs.contains("master-secret-77"));
}

#[test]
fn a_password_changed_on_the_server_disables_that_mailbox_until_fixed_and_tested() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let users = [
        "stays1@example.com",
        "changed@example.com",
        "stays2@example.com",
    ];
    for u in users {
        fill(&d, u, 5, 1_500);
    }
    let config_with = |pw: &str| {
        let mut body = profile("p", "127.0.0.1", d.imaps_port, &d.ca_file, "");
        for u in users {
            let p = if u == users[1] { pw } else { PASSWORD };
            body.push_str(&mailbox(u, "p", p, "approval = \"approved\""));
        }
        setup.write("", &body)
    };
    let cfg = config_with(PASSWORD);
    let s = setup.start(&cfg);
    wait_for("all three to sync", Duration::from_secs(60), || {
        users.iter().all(|u| stored(&s, u) == Some(5)).then_some(())
    });
    d.set_password(users[1], "new-server-password-1");
    let m = wait_for(
        "the changed mailbox to be disabled",
        Duration::from_secs(60),
        || {
            let m = s.mailbox(users[1]);
            // The alert is committed just after the state: wait for both.
            (m["incoming_enablement"]["state"] == "disabled"
                && m["latest_alert"]["level"] == "error")
                .then_some(m)
        },
    );
    assert_eq!(
        m["incoming_enablement"]["code"], "authentication_rejected",
        "{m}"
    );
    assert_eq!(m["not_processed_code"], "disabled");
    // New email only once it is disabled: a session still logged in from before the change may
    // otherwise fetch it, which is the server's choice, not a sync of a disabled mailbox.
    for u in users {
        d.deliver(u, &mail::sample(u, 100, 1_000), "", SystemTime::now());
    }
    wait_for(
        "the others to keep syncing",
        Duration::from_secs(60),
        || (stored(&s, users[0]) == Some(6) && stored(&s, users[2]) == Some(6)).then_some(()),
    );
    let (code, body) = http(
        setup.port,
        "GET",
        &format!("/api/v1/alerts?mailbox={}", users[1]),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{body}");
    let alerts: Value = serde_json::from_str(&body).expect("json");
    let texts: Vec<&str> = alerts["alerts"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["message"].as_str())
        .collect();
    let disabled = texts
        .iter()
        .find(|t| t.contains("has been disabled"))
        .unwrap_or_else(|| panic!("no disable alert: {texts:?}"));
    // The profile sends no alert emails: the alert must not claim its owner was notified.
    assert!(!disabled.contains("has been notified"), "{disabled}");
    assert!(
        disabled.contains("Alert email is off for the email server profile \"p\"")
            && disabled.contains("nobody has been emailed"),
        "{disabled}"
    );
    assert_eq!(s.mailbox(users[1])["latest_alert"]["level"], "error");
    assert_eq!(
        stored(&s, users[1]),
        Some(5),
        "nothing more came in while disabled"
    );
    // The feed (and so every webhook) tells a CRM the mailbox stopped, and why.
    let states = |s: &support::sidesync::Sidesync| -> Vec<Value> {
        let (code, body) = http(
            s.status_port,
            "GET",
            "/api/v1/events?after=0&limit=1000&types=mailbox.state_changed",
            Some(TOKEN),
            "",
        );
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        v["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["mailbox"] == users[1])
            .map(|e| e["data"].clone())
            .collect()
    };
    let seen = states(&s);
    let stopped = seen
        .iter()
        .find(|d| d["incoming_enablement"] == "disabled")
        .unwrap_or_else(|| panic!("no mailbox.state_changed saying disabled: {seen:?}"));
    assert_eq!(
        stopped["incoming_disabled"]["code"], "authentication_rejected",
        "{stopped}"
    );
    assert!(
        seen.iter().any(|d| d["incoming_enablement"] == "enabled"),
        "the first Test & Enable enabled it: {seen:?}"
    );
    assert!(s.terminate().success());

    // The admin fixes the config; on restart the mailbox is tested and comes back.
    let cfg = config_with("new-server-password-1");
    let s = setup.start(&cfg);
    wait_for(
        "the fixed mailbox to come back",
        Duration::from_secs(60),
        || (stored(&s, users[1]) == Some(6)).then_some(()),
    );
    assert_eq!(
        s.mailbox(users[1])["incoming_enablement"]["state"],
        "enabled"
    );
    let last = states(&s).last().cloned().expect("events");
    assert_eq!(
        last["incoming_enablement"], "enabled",
        "enabled again: {last}"
    );
    assert!(s.terminate().success());
}

#[test]
fn stalls_time_out_count_as_transient_and_become_permanent_after_the_retries() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "behind-proxy@example.com";
    fill(&d, user, 3, 1_000);
    let proxy = Proxy::start(d.imaps_port, Mode::Stall);
    let cfg = setup.write(
        "transient_failure_retries = 2",
        &[
            profile(
                "p",
                "127.0.0.1",
                proxy.port,
                &d.ca_file,
                "timeout_mailbox_connection_after = \"1s\"",
            ),
            mailbox(user, "p", PASSWORD, "approval = \"approved\""),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    let first = wait_for("a first transient failure", Duration::from_secs(30), || {
        let m = s.mailbox(user);
        (m["transient_failure_count"].as_u64()? >= 1).then_some(m)
    });
    assert_eq!(first["last_error"]["code"], "timeout", "{first}");
    assert_eq!(first["last_error"]["transient"], true);
    // The timed-out connection does not hold its slot: the proxy sees it closed.
    wait_for(
        "the stalled connection to be closed by sidesync",
        Duration::from_secs(10),
        || (proxy.current() == 0).then_some(()),
    );
    // Dropped connections are transient too; after 2 retries (3 failures) the mailbox is disabled.
    proxy.set_mode(Mode::Drop);
    let m = wait_for(
        "the mailbox to be disabled after the retries",
        Duration::from_secs(60),
        || {
            let m = s.mailbox(user);
            (m["incoming_enablement"]["state"] == "disabled"
                && m["latest_alert"]["level"] == "error")
                .then_some(m)
        },
    );
    assert!(
        m["incoming_enablement"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("failed 3 times in a row"),
        "{m}"
    );
    let total = proxy.total();
    assert!(
        (3..=4).contains(&total),
        "one connection per attempt, no more: {total}"
    );
    let (_, body) = http(
        setup.port,
        "GET",
        &format!("/api/v1/alerts?mailbox={user}"),
        Some(TOKEN),
        "",
    );
    let alerts: Value = serde_json::from_str(&body).expect("json");
    let levels: Vec<&str> = alerts["alerts"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["level"].as_str())
        .collect();
    assert!(
        levels.contains(&"warning") && levels.contains(&"error"),
        "transient = warning, permanent = error: {levels:?}"
    );
    // Fixed network, Test & Enable through the API: back in business.
    proxy.set_mode(Mode::Forward);
    let v = support::sidesync::test_through_api(setup.port, user, TOKEN);
    assert_eq!(v["incoming"]["status"], "success", "{v}");
    wait_for(
        "the mailbox to sync after the test",
        Duration::from_secs(30),
        || (stored(&s, user) == Some(3)).then_some(()),
    );
    assert!(s.terminate().success());
}

#[test]
fn more_than_half_failing_sends_one_alert_email_to_the_owner() {
    let d = Dovecot::start();
    let setup = Setup::new();
    d.add_user("alerts@example.com");
    let users = ["ok@example.com", "bad1@example.com", "bad2@example.com"];
    for u in users {
        fill(&d, u, 2, 1_000);
    }
    let alert_smtp = format!(
        "[appliance.alert_smtp]\nserver_location = \"127.0.0.1\"\nport_number = {}\ntls = \"starttls\"\nca_file = \"{}\"\n\
         from = \"alerts@example.com\"\nusername = \"alerts@example.com\"\npassword = \"{PASSWORD}\"\n",
        d.submission_port,
        d.ca_file.display()
    );
    let body = [
        profile(
            "p",
            "127.0.0.1",
            d.imaps_port,
            &d.ca_file,
            "send_alert_email = true\nowner_email = \"owner@example.com\"",
        ),
        mailbox(users[0], "p", PASSWORD, "approval = \"approved\""),
        mailbox(users[1], "p", "wrong-1", "approval = \"approved\""),
        mailbox(users[2], "p", "wrong-2", "approval = \"approved\""),
    ]
    .concat();
    // alert_smtp is a table of [appliance]: it goes right after the appliance keys.
    let cfg = setup.write(&alert_smtp, &body);
    let s = setup.start(&cfg);
    let alert_emails = |d: &Dovecot| -> Vec<(String, String, String)> {
        d.sunk()
            .iter()
            .filter_map(|raw| {
                let m = mail_parser::MessageParser::default().parse(raw.as_bytes())?;
                let subject = m.subject()?.to_string();
                subject.contains("failed to synchronize").then(|| {
                    (
                        subject,
                        m.body_text(0).map(|b| b.to_string()).unwrap_or_default(),
                        raw.clone(),
                    )
                })
            })
            .collect()
    };
    let (subject, text, raw) =
        wait_for("the alert email to arrive", Duration::from_secs(60), || {
            alert_emails(&d).into_iter().next()
        });
    assert!(raw.contains("owner@example.com"), "{raw}");
    assert!(
        subject.contains("2 of 3 mailboxes of profile \"p\""),
        "{subject}"
    );
    assert!(
        text.contains("bad1@example.com") && text.contains("bad2@example.com"),
        "{text}"
    );
    // More sync rounds of the healthy mailbox re-check the rule; still one email this hour.
    let seen = |s: &Sidesync| {
        s.mailbox(users[0])["last_successful_sync_completed_on"]
            .as_str()
            .map(str::to_string)
    };
    let before = seen(&s);
    for _ in 0..3 {
        let prev = seen(&s);
        wait_for("another sync round", Duration::from_secs(30), || {
            (seen(&s) != prev).then_some(())
        });
    }
    assert_ne!(before, seen(&s));
    let count = alert_emails(&d).len();
    assert_eq!(count, 1, "one alert email per hour per profile");
    let profile = s.status()["profiles"][0].clone();
    assert!(profile["last_alert_email_at"].is_string(), "{profile}");
    assert!(s.terminate().success());
}

/// M8 with `send_alert_email`: a mailbox disabled by a password changed on the server emails the
/// profile's owner, and only then does its alert say the owner "has been notified". One of two
/// mailboxes failing is not the 50% rule, so the email is the disable's own.
#[test]
fn a_disable_emails_the_owner_when_the_profile_sends_alert_emails() {
    let d = Dovecot::start();
    let setup = Setup::new();
    d.add_user("alerts@example.com");
    let users = ["fine@example.com", "rotated@example.com"];
    for u in users {
        fill(&d, u, 2, 1_000);
    }
    let alert_smtp = format!(
        "[appliance.alert_smtp]\nserver_location = \"127.0.0.1\"\nport_number = {}\ntls = \"starttls\"\nca_file = \"{}\"\n\
         from = \"alerts@example.com\"\nusername = \"alerts@example.com\"\npassword = \"{PASSWORD}\"\n",
        d.submission_port,
        d.ca_file.display()
    );
    let body = [
        profile(
            "p",
            "127.0.0.1",
            d.imaps_port,
            &d.ca_file,
            "send_alert_email = true\nowner_email = \"owner@example.com\"",
        ),
        mailbox(users[0], "p", PASSWORD, "approval = \"approved\""),
        mailbox(users[1], "p", PASSWORD, "approval = \"approved\""),
    ]
    .concat();
    let cfg = setup.write(&alert_smtp, &body);
    let s = setup.start(&cfg);
    wait_for("both to sync", Duration::from_secs(60), || {
        users.iter().all(|u| stored(&s, u) == Some(2)).then_some(())
    });
    d.set_password(users[1], "rotated-on-the-server-1");
    let m = wait_for(
        "the mailbox to be disabled",
        Duration::from_secs(60),
        || {
            let m = s.mailbox(users[1]);
            (m["incoming_enablement"]["state"] == "disabled"
                && m["latest_alert"]["code"] == "authentication_rejected")
                .then_some(m)
        },
    );
    let text = m["latest_alert"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains(
            "The owner of the email server profile \"p\" has been notified (alert email to \
             owner@example.com)."
        ),
        "{text}"
    );
    let emailed = wait_for("the disable email", Duration::from_secs(30), || {
        d.sunk().into_iter().find(|raw| {
            mail_parser::MessageParser::default()
                .parse(raw.as_bytes())
                .and_then(|m| m.subject().map(str::to_string))
                .is_some_and(|s| {
                    s.contains("mailbox rotated@example.com of profile \"p\" has been disabled")
                })
        })
    });
    assert!(emailed.contains("owner@example.com"), "{emailed}");
    assert!(!emailed.contains(PASSWORD), "no password in the email");
    assert!(s.terminate().success());
}

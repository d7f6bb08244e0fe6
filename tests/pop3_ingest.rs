//! Incoming email over POP3 against dovecot's POP3 service: POP3S and STLS, exactly once through
//! the UIDL sync id map, restart, new mail, SIGKILL mid-ingest, messages left on the server or
//! deleted after commit, the Date filter, and the clear errors (wrong password, untrusted
//! certificate, no STLS, no UIDL).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use sidesync::store::skip_reason;
use sidesync::tracking::decision::SkipReason;
use support::appliance::Setup;
use support::dovecot::{Dovecot, PASSWORD};
use support::ingest::{
    assert_exactly_once, fill, kill_mid_ingest_and_restart, sha, wait_all_synced,
};
use support::pop3_server::{Behaviour, Pop3Server};
use support::proxy::{Mode, Proxy};
use support::sidesync::{Sidesync, run_once};
use support::{mail, wait_for};

fn profile(name: &str, port: u16, ca: &Path, extra: &str) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"{name}\"\nserver_type = \"pop3_smtp\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {port}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"20s\"\n{extra}\n",
        ca.display()
    )
}

fn mailbox(address: &str, profile: &str, password: &str) -> String {
    format!(
        "[[mailbox]]\nemail_address = \"{address}\"\nprofile = \"{profile}\"\npassword = \"{password}\"\n\
         approval = \"approved\"\n"
    )
}

/// The maildir base names (before ":2,"): what is on the server, whatever its flags.
fn on_server(d: &Dovecot, user: &str) -> Vec<String> {
    d.inbox_files(user)
        .into_iter()
        .map(|f| f.split(':').next().unwrap_or("").to_string())
        .collect()
}

/// An email whose lines start with dots: POP3 must stuff and unstuff them byte for byte.
fn dotted(user: &str) -> Vec<u8> {
    format!(
        "Message-ID: <dots@sample.sidesync.test>\r\nFrom: a@example.com\r\nTo: {user}\r\n\
         Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nlast line\r\n.\r\n"
    )
    .into_bytes()
}

#[test]
fn pop3s_and_stls_ingest_exactly_once_and_leave_messages() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let (tls_user, stls_user) = ("pop-tls@example.com", "pop-stls@example.com");
    let mut expected: HashMap<&str, HashMap<String, Vec<u8>>> = HashMap::new();
    let big = |n| {
        if n == 5 {
            3 << 20
        } else {
            2_000 + (n * 997) % 50_000
        }
    };
    expected.insert(tls_user, fill(&d, tls_user, 160, big, |n| n % 4 == 0));
    expected.insert(
        stls_user,
        fill(&d, stls_user, 90, |n| 1_000 + n * 40, |_| false),
    );
    let dots = dotted(tls_user);
    d.deliver(tls_user, &dots, "", SystemTime::now());
    expected
        .get_mut(tls_user)
        .expect("user")
        .insert(sha(&dots), dots);
    let before: HashMap<&str, Vec<String>> = [tls_user, stls_user]
        .into_iter()
        .map(|u| (u, on_server(&d, u)))
        .collect();
    let port = setup.port;
    let body = [
        profile("pop3s", d.pop3s_port, &d.ca_file, ""),
        profile(
            "stls",
            d.pop3_port,
            &d.ca_file,
            "incoming_tls = \"starttls\"\nincoming_authentication_protocol = \"login\"",
        ),
        mailbox(tls_user, "pop3s", PASSWORD),
        mailbox(stls_user, "stls", PASSWORD),
    ]
    .concat();
    let cfg = setup.write("fetch_batch_size = 25", &body);
    let log = setup.dir.path().join("sidesync.log");
    let s = Sidesync::start(&cfg, &log, port);
    let total: usize = expected.values().map(HashMap::len).sum();
    wait_all_synced(&s, total);
    // New mail is picked up by the next poll.
    let late = mail::sample(stls_user, 5_000, 4_000);
    d.deliver(stls_user, &late, "", SystemTime::now());
    expected
        .get_mut(stls_user)
        .expect("user")
        .insert(sha(&late), late);
    wait_for("the new POP3 email", Duration::from_secs(30), || {
        (s.mailbox(stls_user)["activities_stored"].as_u64()? as usize == expected[stls_user].len())
            .then_some(())
    });
    assert!(s.terminate().success());
    // Messages stay on the server (I8).
    for u in [tls_user, stls_user] {
        let now = on_server(&d, u);
        assert!(
            before[u].iter().all(|f| now.contains(f)),
            "{u}: a message left the server"
        );
    }
    let store = setup.store();
    for u in [tls_user, stls_user] {
        assert_exactly_once(&store, u, &expected[u]);
        assert_eq!(
            store.pop3_sync_id_map(u).expect("map").len(),
            expected[u].len(),
            "{u}: one sync id map entry per message"
        );
    }
    let logs = std::fs::read_to_string(&log).expect("log");
    assert!(!logs.contains(PASSWORD), "a password reached the log");
    drop(store);
    // A restart retrieves nothing: every UIDL is known.
    let (status, out) = run_once(&cfg);
    assert!(status.success(), "{out}");
    let store = setup.store();
    assert_eq!(store.activity_count().expect("count") as usize, total + 1);
    // Dovecot's own account of the restart's sessions: nothing retrieved, nothing deleted.
    for u in [tls_user, stls_user] {
        assert_eq!(
            last_logout(&d, u)
                .as_deref()
                .map(|l| l.contains("retr=0/0, del=0/")),
            Some(true),
            "{u}"
        );
    }
}

/// Dovecot's logout line of the user's latest POP3 session ("top=…, retr=…, del=…, size=…").
fn last_logout(d: &Dovecot, user: &str) -> Option<String> {
    d.log()
        .lines()
        .rev()
        .find(|l| l.contains(&format!("pop3({user})")) && l.contains("retr="))
        .map(str::to_string)
}

#[test]
fn sigkill_mid_pop3_ingest_then_restart_gives_one_activity_per_email() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "pop-bulk@example.com";
    let expected = fill(&d, user, 2_000, |n| 8_000 + (n * 131) % 30_000, |_| false);
    let port = setup.port;
    let body = [
        profile("pop3s", d.pop3s_port, &d.ca_file, ""),
        mailbox(user, "pop3s", PASSWORD),
    ]
    .concat();
    let cfg = setup.write("fetch_batch_size = 20", &body);
    let log = setup.dir.path().join("sidesync.log");
    let s = Sidesync::start(&cfg, &log, port);
    let s = kill_mid_ingest_and_restart(s, &cfg, &log, port, user, expected.len());
    assert!(s.interrupt().success());
    let store = setup.store();
    assert_exactly_once(&store, user, &expected);
    assert_eq!(
        store.pop3_sync_id_map(user).expect("map").len(),
        expected.len()
    );
}

#[test]
fn deletion_by_age_and_never_of_an_email_the_date_filter_skipped() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let (now_user, later_user, dated_user, both_user) = (
        "pop-delete-now@example.com",
        "pop-delete-later@example.com",
        "pop-dated@example.com",
        "pop-dated-deleting@example.com",
    );
    let now_expected = fill(&d, now_user, 40, |n| 1_500 + n * 10, |_| false);
    let later_expected = fill(&d, later_user, 30, |n| 1_500 + n * 10, |_| false);
    // Samples are dated 1–28 September 2025 (day = 1 + n % 28).
    let all_dated = fill(&d, dated_user, 28, |_| 1_200, |_| false);
    let recent: HashMap<String, Vec<u8>> = (0..28)
        .filter(|n| 1 + n % 28 >= 15)
        .map(|n| mail::sample(dated_user, n, 1_200))
        .map(|raw| (sha(&raw), raw))
        .collect();
    assert_eq!(all_dated.len(), 28);
    // Both settings together: only the stored (recent) emails may leave the server.
    fill(&d, both_user, 28, |_| 1_200, |_| false);
    let both_recent: HashMap<String, Vec<u8>> = (0..28)
        .filter(|n| 1 + n % 28 >= 15)
        .map(|n| mail::sample(both_user, n, 1_200))
        .map(|raw| (sha(&raw), raw))
        .collect();
    let body = [
        profile(
            "now",
            d.pop3s_port,
            &d.ca_file,
            "pop3_delete_after_days = 0",
        ),
        profile(
            "later",
            d.pop3s_port,
            &d.ca_file,
            "pop3_delete_after_days = 1",
        ),
        profile(
            "dated",
            d.pop3s_port,
            &d.ca_file,
            "process_emails_received_after = 2025-09-15",
        ),
        profile(
            "dated-deleting",
            d.pop3s_port,
            &d.ca_file,
            "process_emails_received_after = 2025-09-15\npop3_delete_after_days = 0",
        ),
        mailbox(both_user, "dated-deleting", PASSWORD),
        mailbox(now_user, "now", PASSWORD),
        mailbox(later_user, "later", PASSWORD),
        mailbox(dated_user, "dated", PASSWORD),
    ]
    .concat();
    let cfg = setup.write("fetch_batch_size = 15", &body);
    let (status, out) = run_once(&cfg);
    assert!(status.success(), "{out}");
    let store = setup.store();
    assert_exactly_once(&store, now_user, &now_expected);
    assert_exactly_once(&store, later_user, &later_expected);
    assert_exactly_once(&store, dated_user, &recent);
    // Age 0: stored, then deleted in the same session; age 1 day: still there.
    assert!(on_server(&d, now_user).is_empty(), "{out}");
    assert_eq!(on_server(&d, later_user).len(), 30);
    // Skipped by the date is not stored, so it is not deleted: 14 stored and gone, 14 left.
    assert_exactly_once(&store, both_user, &both_recent);
    assert_eq!(both_recent.len(), 14);
    assert_eq!(
        on_server(&d, both_user).len(),
        28 - both_recent.len(),
        "{out}"
    );
    // Emails dated before the profile's date are remembered as not tracked, not retrieved again.
    let map = store.pop3_sync_id_map(dated_user).expect("map");
    assert_eq!(map.len(), 28);
    assert_eq!(
        map.values()
            .filter(|(id, _)| skip_reason(*id) == Some(SkipReason::BeforeProcessDate))
            .count(),
        28 - recent.len()
    );
    drop(store);
    let (status, out) = run_once(&cfg);
    assert!(status.success(), "{out}");
    assert!(
        last_logout(&d, dated_user).is_some_and(|l| l.contains("retr=0/0")),
        "{:?}",
        last_logout(&d, dated_user)
    );
    // The deleted messages' map entries are forgotten once the server no longer lists them.
    let store = setup.store();
    assert!(store.pop3_sync_id_map(now_user).expect("map").is_empty());
    assert_exactly_once(&store, now_user, &now_expected);
}

#[test]
fn wrong_password_untrusted_certificate_and_master_user() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let users = [
        "pop-good@example.com",
        "pop-wrongpw@example.com",
        "pop-untrusted@example.com",
        "pop-acted@example.com",
    ];
    for u in users {
        fill(&d, u, 3, |_| 1_000, |_| false);
    }
    d.add_master("popmaster", "master-secret-77");
    let wrong = "wrong-pop-password-0xB2";
    let body = [
        profile("good", d.pop3s_port, &d.ca_file, ""),
        profile("untrusted", d.pop3s_port, &d.other_ca_file, ""),
        profile(
            "acting",
            d.pop3_port,
            &d.ca_file,
            "incoming_tls = \"starttls\"\nincoming_credential_retrieval = \"profile\"\n\
             incoming_username = \"popmaster\"\nincoming_password = \"master-secret-77\"",
        ),
        mailbox(users[0], "good", PASSWORD),
        mailbox(users[1], "good", wrong),
        mailbox(users[2], "untrusted", PASSWORD),
        format!(
            "[[mailbox]]\nemail_address = \"{}\"\nprofile = \"acting\"\napproval = \"approved\"\n",
            users[3]
        ),
    ]
    .concat();
    let cfg = setup.write("", &body);
    let (status, out) = run_once(&cfg);
    assert!(!status.success(), "two mailboxes fail: {out}");
    let store = setup.store();
    let states = store.mailbox_states().expect("states");
    assert_eq!(states[users[0]].activities_stored, 3, "{out}");
    assert_eq!(
        states[users[3]].activities_stored, 3,
        "master user acting for the mailbox: {out}"
    );
    let e = states[users[1]].last_error.as_ref().expect("an error");
    assert_eq!(e.code, "authentication_rejected");
    assert!(
        e.text.starts_with(&format!(
            "authentication rejected by 127.0.0.1:{}",
            d.pop3s_port
        )),
        "{}",
        e.text
    );
    assert!(!e.transient);
    let e = states[users[2]].last_error.as_ref().expect("an error");
    assert_eq!(e.code, "certificate_not_trusted");
    assert!(e.text.contains("not trusted"), "{}", e.text);
    for secret in [wrong, PASSWORD, "master-secret-77"] {
        assert!(!out.contains(secret), "a password reached the output");
    }
}

#[test]
fn a_server_without_stls_is_refused_and_one_without_uidl_is_a_permanent_error() {
    let no_stls = Pop3Server::start(Behaviour {
        capa: Some(vec!["USER", "UIDL", "PIPELINING"]),
        uidl: true,
        messages: vec![mail::sample("x@example.com", 1, 500)],
    });
    let no_uidl = Pop3Server::start(Behaviour {
        capa: None,
        uidl: false,
        messages: vec![mail::sample("y@example.com", 1, 500)],
    });
    let setup = Setup::new();
    let ca = setup.dir.path().join("none.pem");
    let body = [
        profile("no-stls", no_stls.port, &ca, "incoming_tls = \"starttls\"")
            .replace(&format!("ca_file = \"{}\"\n", ca.display()), ""),
        profile(
            "no-uidl",
            no_uidl.port,
            &ca,
            "incoming_tls = \"none\"\nallow_plaintext_login = true",
        )
        .replace(&format!("ca_file = \"{}\"\n", ca.display()), ""),
        mailbox("x@example.com", "no-stls", "stls-secret-never-sent"),
        mailbox("y@example.com", "no-uidl", "pw"),
    ]
    .concat();
    let cfg = setup.write("", &body);
    let (status, out) = run_once(&cfg);
    assert!(!status.success(), "{out}");
    let store = setup.store();
    let states = store.mailbox_states().expect("states");
    let e = states["x@example.com"].last_error.as_ref().expect("error");
    assert_eq!(e.code, "tls_not_offered");
    assert!(
        e.text.contains("does not offer STLS")
            && e.text.contains("refusing to continue in plaintext"),
        "{}",
        e.text
    );
    assert!(
        no_stls
            .commands()
            .iter()
            .all(|c| !c.contains("stls-secret-never-sent") && !c.starts_with("USER")),
        "{:?}",
        no_stls.commands()
    );
    let e = states["y@example.com"].last_error.as_ref().expect("error");
    assert_eq!(e.code, "no_uidl");
    assert!(!e.transient, "no UIDL is permanent");
    assert!(
        e.text.contains("exactly-once sync over POP3 is impossible"),
        "{}",
        e.text
    );
    assert!(
        !no_uidl.commands().iter().any(|c| c.starts_with("RETR")),
        "nothing is retrieved without UIDL: {:?}",
        no_uidl.commands()
    );
    assert_eq!(store.activity_count().expect("count"), 0);
}

/// Each TLS mode and login method against dovecot's POP3, checked on the wire (a proxy keeps what
/// the client sent in the clear) and in dovecot's login line (TLS or not), not only by the count.
#[test]
fn pop3_tls_modes_and_login_methods_do_what_they_say_on_the_wire() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let cases = [
        (
            "wire-stls@example.com",
            d.pop3_port,
            "incoming_tls = \"starttls\"\nincoming_authentication_protocol = \"login\"",
        ),
        ("wire-pop3s@example.com", d.pop3s_port, ""),
        (
            "wire-plain@example.com",
            d.pop3_port,
            "incoming_tls = \"none\"\nallow_plaintext_login = true\nincoming_authentication_protocol = \"plain\"",
        ),
        (
            "wire-user@example.com",
            d.pop3_port,
            "incoming_tls = \"none\"\nallow_plaintext_login = true\nincoming_authentication_protocol = \"login\"",
        ),
    ];
    let proxies: Vec<Proxy> = cases
        .iter()
        .map(|(_, port, _)| Proxy::start(*port, Mode::Forward))
        .collect();
    let mut body = Vec::new();
    for (i, ((user, _, extra), proxy)) in cases.iter().zip(&proxies).enumerate() {
        fill(&d, user, 3, |_| 1_200, |_| false);
        body.push(profile(&format!("p{i}"), proxy.port, &d.ca_file, extra));
        body.push(mailbox(user, &format!("p{i}"), PASSWORD));
    }
    let cfg = setup.write("", &body.concat());
    let (status, out) = run_once(&cfg);
    assert!(status.success(), "{out}");
    let states = setup.store().mailbox_states().expect("states");
    let log = d.log();
    for ((user, _, _), proxy) in cases.iter().zip(&proxies) {
        assert_eq!(states[*user].activities_stored, 3, "{user}: {out}");
        let wire = String::from_utf8_lossy(&proxy.client_bytes()).to_string();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("pop3-login") && l.contains(&format!("user=<{user}>")))
            .unwrap_or_else(|| panic!("no login of {user}:\n{log}"))
            .to_string();
        let encrypted = line.contains(", TLS");
        match *user {
            "wire-stls@example.com" => {
                assert!(wire.contains("STLS\r\n"), "{wire:?}");
                assert!(
                    !wire.contains("USER ") && !wire.contains("AUTH PLAIN"),
                    "{wire:?}"
                );
                assert!(encrypted, "{line}");
            }
            "wire-pop3s@example.com" => {
                assert_eq!(
                    proxy.client_bytes().first(),
                    Some(&0x16),
                    "a TLS ClientHello first"
                );
                assert!(!wire.contains("CAPA"), "{wire:?}");
                assert!(encrypted, "{line}");
            }
            "wire-plain@example.com" => {
                assert!(wire.contains("AUTH PLAIN"), "{wire:?}");
                assert!(!wire.contains("USER "), "{wire:?}");
                assert!(!encrypted, "{line}");
            }
            _ => {
                assert!(wire.contains("USER ") && wire.contains("PASS "), "{wire:?}");
                assert!(!wire.contains("AUTH PLAIN"), "{wire:?}");
                assert!(!encrypted, "{line}");
            }
        }
    }
}

/// The order, not just the end state: a proxy holds the session the moment sidesync sends its
/// first DELE. By then every email must already be committed (the running appliance's /status
/// says so); killed right there, the server still has every email (no QUIT, so no deletion), and
/// a restart deletes them with each stored once.
#[test]
fn deletion_is_sent_only_after_the_commit() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "pop-order@example.com";
    let expected = fill(&d, user, 40, |n| 1_500 + n * 10, |_| false);
    let proxy = Proxy::start(d.pop3_port, Mode::HoldAt("DELE "));
    let body = [
        profile(
            "order",
            proxy.port,
            &d.ca_file,
            "incoming_tls = \"none\"\nallow_plaintext_login = true\npop3_delete_after_days = 0",
        ),
        mailbox(user, "order", PASSWORD),
    ]
    .concat();
    let cfg = setup.write("fetch_batch_size = 15", &body);
    let s = setup.start(&cfg);
    wait_for("the first DELE", Duration::from_secs(60), || {
        proxy.holding().then_some(())
    });
    let stored = s.mailbox(user)["activities_stored"].as_u64();
    s.kill9();
    assert_eq!(
        stored,
        Some(40),
        "every email is committed before any DELE is sent"
    );
    assert_eq!(
        on_server(&d, user).len(),
        40,
        "killed before QUIT: nothing deleted"
    );
    proxy.set_mode(Mode::Forward);
    let (status, out) = run_once(&cfg);
    assert!(status.success(), "{out}");
    assert!(on_server(&d, user).is_empty(), "{out}");
    assert_exactly_once(&setup.store(), user, &expected);

    // Killed between RETR and the commit: the emails stay on the server, and a restart stores
    // each once and only then deletes them.
    let later: HashMap<String, Vec<u8>> = (100..110)
        .map(|n| {
            let raw = mail::sample(user, n, 2_000);
            d.deliver(user, &raw, "", SystemTime::now());
            (sha(&raw), raw)
        })
        .collect();
    let proxy = Proxy::start(d.pop3_port, Mode::HoldAt("RETR "));
    let cfg = setup.write(
        "fetch_batch_size = 15",
        &[
            profile(
                "order",
                proxy.port,
                &d.ca_file,
                "incoming_tls = \"none\"\nallow_plaintext_login = true\npop3_delete_after_days = 0",
            ),
            mailbox(user, "order", PASSWORD),
        ]
        .concat(),
    );
    let s = setup.start(&cfg);
    wait_for("the first RETR", Duration::from_secs(60), || {
        proxy.holding().then_some(())
    });
    s.kill9();
    assert_eq!(on_server(&d, user).len(), 10, "nothing left the server");
    proxy.set_mode(Mode::Forward);
    let (status, out) = run_once(&cfg);
    assert!(status.success(), "{out}");
    assert!(on_server(&d, user).is_empty(), "{out}");
    let all: HashMap<String, Vec<u8>> = expected.into_iter().chain(later).collect();
    assert_exactly_once(&setup.store(), user, &all);
}

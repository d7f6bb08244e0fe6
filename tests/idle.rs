//! IMAP IDLE: a new email becomes an activity without waiting for a poll, and when IDLE does not
//! work (here a proxy holds every IDLE command) polling still picks up email.

mod support;

use std::time::{Duration, Instant, SystemTime};

use support::appliance::Setup;
use support::dovecot::{Dovecot, PASSWORD};
use support::proxy::{Mode, Proxy};
use support::{mail, wait_for};

fn config(setup: &Setup, port: u16, user: &str, polling: &str) -> std::path::PathBuf {
    config_with(setup, port, user, polling, "")
}

fn config_with(
    setup: &Setup,
    port: u16,
    user: &str,
    polling: &str,
    mailbox_extra: &str,
) -> std::path::PathBuf {
    setup.write(
        "",
        &format!(
            "[[profile]]\nname = \"imap\"\ntrack = \"all\"\nidle = true\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {port}\n\
             incoming_tls = \"none\"\nallow_plaintext_login = true\nmin_polling_interval = \"{polling}\"\n\
             [[mailbox]]\nemail_address = \"{user}\"\nprofile = \"imap\"\npassword = \"{PASSWORD}\"\n\
             approval = \"approved\"\n{mailbox_extra}",
        ),
    )
}

#[test]
fn idle_picks_up_an_email_without_a_poll() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "idle@example.com";
    d.deliver(user, &mail::sample(user, 0, 800), "", SystemTime::now());
    // Polling once a day: only IDLE can bring the next emails in time.
    let cfg = config(&setup, d.imap_port, user, "1440m");
    let s = setup.start(&cfg);
    wait_for("the first sync", Duration::from_secs(60), || {
        (s.mailbox(user)["activities_stored"] == 1).then_some(())
    });
    wait_for("IDLE on INBOX", Duration::from_secs(60), || {
        s.log_text().contains("IDLE on INBOX").then_some(())
    });
    // The syncs IDLE wakes run on the IDLE connection: no login after the watcher's own.
    let logins = || {
        d.log()
            .lines()
            .filter(|l| l.contains("Login: user=<idle@example.com>"))
            .count()
    };
    let before = logins();
    for n in 1..=3 {
        let delivered = Instant::now();
        d.append_over_imap(user, "INBOX", &mail::sample(user, n, 800));
        wait_for(
            &format!("email {n} through IDLE"),
            Duration::from_secs(30),
            || (s.mailbox(user)["activities_stored"] == n as u64 + 1).then_some(()),
        );
        eprintln!("email {n}: stored {:?} after delivery", delivered.elapsed());
    }
    assert!(before >= 2, "the first sync and the watcher logged in");
    assert_eq!(
        logins(),
        before + 3,
        "beside the three deliveries' own, the woken syncs logged in again instead of running \
         on the IDLE connection"
    );
    let next_poll = s.mailbox(user)["next_poll"].clone();
    let at =
        chrono::DateTime::parse_from_rfc3339(next_poll.as_str().expect("next poll")).expect("time");
    assert!(
        at > chrono::Utc::now() + chrono::Duration::hours(1),
        "no poll brought them: the next poll is still a day away ({next_poll})"
    );
    assert!(s.terminate().success());
}

#[test]
fn without_a_working_idle_polling_goes_on() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "noidle@example.com";
    d.add_user(user);
    // Every IDLE connection is dropped at the proxy as it starts IDLE; the syncs pass.
    let proxy = Proxy::start(d.imap_port, Mode::DropAt(" IDLE\r\n"));
    let cfg = config(&setup, proxy.port, user, "2s");
    let s = setup.start(&cfg);
    wait_for(
        "an IDLE connection dropped",
        Duration::from_secs(60),
        || (proxy.dropped.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(()),
    );
    for n in 0..3 {
        d.deliver(user, &mail::sample(user, n, 800), "", SystemTime::now());
        wait_for(
            &format!("email {n} by polling"),
            Duration::from_secs(60),
            || (s.mailbox(user)["activities_stored"] == n as u64 + 1).then_some(()),
        );
    }
    let m = s.mailbox(user);
    assert_eq!(m["incoming_status"], "success", "{m}");
    // The watcher tried again after the drop (with its backoff), and syncs never failed.
    wait_for("IDLE tried again", Duration::from_secs(60), || {
        (proxy.dropped.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
    });
    assert_eq!(s.mailbox(user)["last_error"], serde_json::Value::Null);
    assert!(s.terminate().success());
}

/// dovecot's capabilities after login without NOTIFY, as a server that lacks it announces them.
const NO_NOTIFY: &str = "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE \
    CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED CONDSTORE QRESYNC ESEARCH LIST-STATUS BINARY MOVE \
    SPECIAL-USE LITERAL+\n";

#[test]
fn without_notify_a_tracking_folder_gets_an_idle_connection_of_its_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path()).expect("dir");
    std::fs::write(tmp.path().join("extra.conf"), NO_NOTIFY).expect("extra.conf");
    let d = Dovecot::start_in(tmp.path());
    let setup = Setup::new();
    let user = "dragger@example.com";
    d.deliver_to_folder(user, "Projects", &mail::sample(user, 0, 800));
    // Polling once a day: only IDLE on the folder can bring the next one in time.
    let cfg = config_with(
        &setup,
        d.imap_port,
        user,
        "1440m",
        "tracking_folders = [\"Projects\"]\n",
    );
    let s = setup.start(&cfg);
    wait_for("the first sync", Duration::from_secs(60), || {
        (s.mailbox(user)["activities_stored"] == 1).then_some(())
    });
    wait_for(
        "IDLE on the tracking folder",
        Duration::from_secs(60),
        || {
            s.log_text()
                .contains("IDLE on a tracking folder")
                .then_some(())
        },
    );
    d.append_over_imap(user, "Projects", &mail::sample(user, 1, 800));
    wait_for(
        "the email dragged into the folder, through IDLE",
        Duration::from_secs(30),
        || (s.mailbox(user)["activities_stored"] == 2).then_some(()),
    );
    let connections = &s.status()["appliance"]["connections"];
    assert_eq!(connections["on_idle"], 1, "INBOX's door: {connections}");
    assert_eq!(
        connections["idle_open"], 2,
        "INBOX and Projects: {connections}"
    );
    assert!(!s.log_text().contains("with NOTIFY"));
    assert!(s.terminate().success());
}

#[test]
fn with_notify_one_connection_watches_inbox_and_the_tracking_folders() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let user = "notified@example.com";
    d.deliver_to_folder(user, "Projects", &mail::sample(user, 0, 800));
    d.create_folder(user, "Clients");
    let cfg = config_with(
        &setup,
        d.imap_port,
        user,
        "1440m",
        "tracking_folders = [\"Projects\", \"Clients\"]\n",
    );
    let s = setup.start(&cfg);
    wait_for("the first sync", Duration::from_secs(60), || {
        (s.mailbox(user)["activities_stored"] == 1).then_some(())
    });
    wait_for("IDLE with NOTIFY", Duration::from_secs(60), || {
        s.log_text()
            .contains("IDLE on INBOX, with NOTIFY for the tracking folders")
            .then_some(())
    });
    // A mail client drags an email into each folder (through dovecot, which tells at once).
    for (n, folder) in [(1, "Projects"), (2, "Clients")] {
        d.append_over_imap(user, folder, &mail::sample(user, n, 800));
        wait_for(
            &format!("the email dragged into {folder}, through NOTIFY"),
            Duration::from_secs(30),
            || (s.mailbox(user)["activities_stored"] == n as u64 + 1).then_some(()),
        );
    }
    let connections = &s.status()["appliance"]["connections"];
    assert_eq!(connections["on_idle"], 1, "{connections}");
    assert_eq!(
        connections["idle_open"], 1,
        "one connection for INBOX and both folders: {connections}"
    );
    assert!(!s.log_text().contains("IDLE on a tracking folder"));
    assert!(s.terminate().success());
}

//! The connection budget, counted at the server side (a TCP proxy in front of dovecot): with
//! IDLE on (4 mailboxes), sessions kept between polls (8 mailboxes), first syncs, polls and new
//! email all at once, the connections open at the same time never pass `max_connections` or
//! `max_connections_per_server`, and everything still arrives. IDLE and kept sessions share the
//! idle slots (`max_idle_connections`, half a server's cap); the others poll.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use support::appliance::Setup;
use support::dovecot::{Dovecot, PASSWORD};
use support::proxy::{Mode, Proxy};
use support::{mail, wait_for};

const MAILBOXES: usize = 12;
const ON_IDLE: usize = 4;

fn user(i: usize) -> String {
    format!("budget{i}@example.com")
}

/// Runs the scenario with `appliance` and `profile` settings; returns the most connections the
/// server saw open at once.
fn scenario(appliance: &str, profile: &str, idle_slots: usize, kept: bool) -> usize {
    let d = Dovecot::start();
    let setup = Setup::new();
    for i in 0..MAILBOXES {
        for n in 0..2 {
            d.deliver(
                &user(i),
                &mail::sample(&user(i), n, 800),
                "",
                SystemTime::now(),
            );
        }
    }
    let proxy = Proxy::start(d.imap_port, Mode::Forward);
    // The first four on IDLE, the others polling on sessions kept open between polls.
    let mut mailboxes = String::new();
    for i in 0..MAILBOXES {
        mailboxes.push_str(&format!(
            "[[mailbox]]\nemail_address = \"{}\"\nprofile = \"{}\"\npassword = \"{PASSWORD}\"\n\
             approval = \"approved\"\n",
            user(i),
            if i < ON_IDLE { "idle" } else { "kept" }
        ));
    }
    let profile_text = |name: &str, mode: &str| {
        format!(
            "[[profile]]\nname = \"{name}\"\ntrack = \"all\"\n{mode}\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\n\
             incoming_tls = \"none\"\nallow_plaintext_login = true\nmin_polling_interval = \"2s\"\n\
             max_concurrent_connections = 2\n{profile}\n",
            proxy.port
        )
    };
    let cfg = setup.write(
        appliance,
        &format!(
            "{}{}{mailboxes}",
            profile_text("idle", "idle = true"),
            profile_text("kept", "keep_sessions_open = true")
        ),
    );
    let s = setup.start(&cfg);
    let stored = |s: &support::sidesync::Sidesync| -> Vec<u64> {
        (0..MAILBOXES)
            .map(|i| {
                s.mailbox(&user(i))["activities_stored"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect()
    };
    wait_for("every first sync", Duration::from_secs(120), || {
        stored(&s).iter().all(|&n| n == 2).then_some(())
    });
    wait_for(
        "IDLE on its share of mailboxes",
        Duration::from_secs(60),
        || {
            let c = &s.status()["appliance"]["connections"];
            (c["on_idle"].as_u64() == Some(idle_slots as u64)).then_some(())
        },
    );
    if kept {
        wait_for(
            "a session kept between polls",
            Duration::from_secs(60),
            || {
                let c = &s.status()["appliance"]["connections"];
                (c["kept"].as_u64() >= Some(1)).then_some(())
            },
        );
    }
    // New email everywhere: IDLE brings some, polls (on kept sessions or new ones) the rest.
    for i in 0..MAILBOXES {
        d.deliver(
            &user(i),
            &mail::sample(&user(i), 2, 800),
            "",
            SystemTime::now(),
        );
    }
    wait_for("the new emails", Duration::from_secs(120), || {
        stored(&s).iter().all(|&n| n == 3).then_some(())
    });
    let c = s.status()["appliance"]["connections"].clone();
    eprintln!("connections at the end: {c}");
    assert!(
        c["open"].as_u64() <= c["max"].as_u64(),
        "the appliance counts more open connections than its budget: {c}"
    );
    for i in 0..MAILBOXES {
        assert_eq!(s.mailbox(&user(i))["last_error"], serde_json::Value::Null);
    }
    assert!(s.terminate().success());
    proxy.counts.max.load(Ordering::SeqCst)
}

#[test]
fn the_appliance_budget_is_never_exceeded() {
    // IDLE on its four, one idle slot left for a kept session.
    let most = scenario(
        "max_connections = 6\nmax_idle_connections = 5\n",
        "",
        4,
        true,
    );
    assert!(
        most <= 6,
        "the server saw {most} connections at once; max_connections is 6"
    );
    // The budget was in use, not merely unreached (IDLE, kept sessions and polls together).
    assert!(
        most >= 5,
        "only {most} at once: the scenario did not press on the budget"
    );
}

#[test]
fn the_server_cap_is_never_exceeded() {
    // No appliance budget to speak of; the server's cap of 4 holds, and IDLE takes at most
    // half of it.
    let most = scenario("", "max_connections_per_server = 4\n", 2, false);
    assert!(
        most <= 4,
        "the server saw {most} connections at once; max_connections_per_server is 4"
    );
    assert!(
        most >= 3,
        "only {most} at once: the scenario did not press on the cap"
    );
}

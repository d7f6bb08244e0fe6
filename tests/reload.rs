//! Reloading the config of a running appliance with SIGHUP (what `systemctl reload` sends):
//! an unchanged mailbox keeps its connection (counted on the server side, through a proxy), a
//! changed one restarts, an added one starts, a removed one stops; a config with errors is
//! refused, each error logged and shown in `/status` and on the page, and the running one stays.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::appliance::Setup;
use support::dovecot::{Dovecot, PASSWORD};
use support::proxy::{Mode, Proxy};
use support::{mail, wait_for};

const KEPT: &str = "reload-kept@example.com";
const CHANGED: &str = "reload-changed@example.com";
const ADDED: &str = "reload-added@example.com";

fn profile(name: &str, port: u16, polling: &str) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"{name}\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {port}\nincoming_tls = \"none\"\nallow_plaintext_login = true\n\
         min_polling_interval = \"{polling}\"\ntimeout_mailbox_connection_after = \"100s\"\n\n"
    )
}

fn mailbox(address: &str, profile: &str) -> String {
    format!(
        "[[mailbox]]\nemail_address = \"{address}\"\npassword = \"{PASSWORD}\"\n\
         approval = \"approved\"\nprofile = \"{profile}\"\n\n"
    )
}

#[test]
fn sighup_reloads_keeping_unchanged_mailboxes_and_refuses_a_broken_config() {
    let d = Dovecot::start();
    let setup = Setup::new();
    for user in [KEPT, CHANGED, ADDED] {
        for n in 0..5 {
            d.deliver(user, &mail::sample(user, n, 2_000), "", SystemTime::now());
        }
    }
    // Each profile reaches dovecot through its own proxy, which holds a sync's connection open
    // once it asks for email: the connections the server sees can be counted per mailbox.
    let kept_proxy = Proxy::start(d.imap_port, Mode::HoldAt("FETCH"));
    let changed_proxy = Proxy::start(d.imap_port, Mode::HoldAt("FETCH"));
    let added_proxy = Proxy::start(d.imap_port, Mode::Forward);
    let body = |changed_polling: &str, with_added: bool| {
        let mut b = profile("kept", kept_proxy.port, "1s")
            + &profile("changed", changed_proxy.port, changed_polling)
            + &profile("added", added_proxy.port, "1s")
            + &mailbox(KEPT, "kept")
            + &mailbox(CHANGED, "changed");
        if with_added {
            b += &mailbox(ADDED, "added");
        }
        b
    };
    let cfg = setup.write("", &body("1s", false));
    let mut s = setup.start(&cfg);
    wait_for("both syncs held mid-FETCH", Duration::from_secs(60), || {
        (kept_proxy.holding()
            && changed_proxy.holding()
            && kept_proxy.current() == 1
            && changed_proxy.current() == 1)
            .then_some(())
    });
    let kept_total = kept_proxy.total();
    let changed_total = changed_proxy.total();

    // The new config: CHANGED's profile polls at another interval, ADDED is new, KEPT is as it was.
    changed_proxy.set_mode(Mode::Forward);
    setup.write("", &body("2s", true));
    s.hangup();
    let status = wait_for("the reload applied", Duration::from_secs(30), || {
        let v = s.status();
        (v["appliance"]["last_reload"]["result"] == "applied").then_some(v)
    });
    let r = &status["appliance"]["last_reload"];
    assert_eq!(
        (&r["added"], &r["changed"], &r["removed"], &r["unchanged"]),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(0),
            &Value::from(1)
        ),
        "{r}"
    );
    // The changed mailbox restarted under its new settings and synced; the added one too.
    for address in [CHANGED, ADDED] {
        wait_for(
            &format!("{address} synced"),
            Duration::from_secs(60),
            || (s.mailbox(address)["activities_stored"] == 5).then_some(()),
        );
    }
    assert!(
        changed_proxy.total() > changed_total,
        "CHANGED connected again"
    );
    // The unchanged mailbox's connection was never closed nor opened again.
    assert_eq!(kept_proxy.current(), 1, "KEPT's connection stays open");
    assert_eq!(kept_proxy.total(), kept_total, "KEPT did not reconnect");
    assert!(s.running(), "SIGHUP does not stop the process");

    // A config with errors: refused, each error logged, the running config stays.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .expect("config")
            .replace("[appliance]\n", "[appliance]\nmax_concurrent_syncs = 0\n")
            + "[[mailbox]]\nemail_address = \"not an address\"\n",
    )
    .expect("write");
    s.hangup();
    let status = wait_for("the reload refused", Duration::from_secs(30), || {
        let v = s.status();
        (v["appliance"]["last_reload"]["result"] == "refused").then_some(v)
    });
    let errors = status["appliance"]["last_reload"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(errors.len() >= 2, "every error: {errors:?}");
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.contains("max_concurrent_syncs"))),
        "{errors:?}"
    );
    assert!(
        errors.iter().all(|e| e
            .as_str()
            .is_some_and(|e| e.starts_with(&cfg.display().to_string()))),
        "FILE:LINE:COL: {errors:?}"
    );
    let log = s.log_text();
    assert!(
        log.contains("reload refused") && log.contains("max_concurrent_syncs"),
        "{log}"
    );
    assert_eq!(
        status["mailboxes"].as_array().map(Vec::len),
        Some(3),
        "the running config stays: {status}"
    );
    let (_, page) = support::sidesync::http_get(setup.port, "/").expect("page");
    assert!(page.contains("id=\"reload\""), "the page says so");
    assert!(page.contains("max_concurrent_syncs"), "with the errors");
    assert_eq!(kept_proxy.current(), 1, "KEPT's connection is untouched");
    assert!(s.running());
    assert!(support::sidesync::http_get(setup.port, "/healthz").is_some_and(|(c, _)| c == 200));

    // Fixed again: a reload that removes a mailbox stops it.
    setup.write("", &body("2s", false));
    s.hangup();
    let status = wait_for("the reload applied again", Duration::from_secs(30), || {
        let v = s.status();
        (v["appliance"]["last_reload"]["result"] == "applied").then_some(v)
    });
    assert_eq!(status["appliance"]["last_reload"]["removed"], 1, "{status}");
    assert_eq!(status["mailboxes"].as_array().map(Vec::len), Some(2));
    assert!(s.terminate().success());
}

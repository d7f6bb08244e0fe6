//! Hostile and broken servers (tests/support/hostile.rs) for IMAP, POP3 and SMTP, each beside a
//! healthy mailbox on dovecot: the appliance keeps running and keeps syncing the healthy one,
//! each bad mailbox shows its own error code, and the process's peak memory stays bounded.

mod support;

use std::time::{Duration, SystemTime};

use support::appliance::{Setup, TOKEN};
use support::dovecot::{Dovecot, PASSWORD};
use support::hostile::{Attack, HostileServer, Protocol};
use support::sidesync::{Sidesync, http};
use support::{mail, wait_for};

/// Peak resident memory the appliance may reach while under attack. Without the bounds an
/// endless line or a 4 GB literal grows a buffer toward 512 MiB per connection.
const PEAK_RSS_CEILING_KB: u64 = 200 * 1024;

/// `tls`: the profile's incoming_tls ("" for plaintext, said explicitly).
fn hostile_profile(name: &str, server_type: &str, port: u16, tls: &str) -> String {
    let tls = if tls.is_empty() { "none" } else { tls };
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"{name}\"\nserver_type = \"{server_type}\"\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {port}\n\
         incoming_tls = \"{tls}\"\nallow_plaintext_login = true\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"3s\"\nsync_deadline = \"5s\"\n"
    )
}

fn mailbox(address: &str, profile: &str, password: &str) -> String {
    format!(
        "[[mailbox]]\nemail_address = \"{address}\"\nprofile = \"{profile}\"\npassword = \"{password}\"\n\
         approval = \"approved\"\n"
    )
}

fn healthy_profile(d: &Dovecot) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"healthy\"\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\nmin_polling_interval = \"1s\"\n\
         timeout_mailbox_connection_after = \"10s\"\n",
        d.imaps_port,
        d.ca_file.display()
    )
}

/// VmHWM of the running appliance, in kB.
fn peak_rss_kb(s: &Sidesync) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn error_code(s: &Sidesync, address: &str) -> Option<String> {
    s.mailbox(address)["last_error"]["code"]
        .as_str()
        .map(str::to_string)
}

/// Runs the appliance with one healthy IMAP mailbox and one mailbox per `(attack, incoming_tls,
/// expected code)`; checks each code, that the healthy mailbox keeps syncing, the peak memory,
/// and that the process is still alive.
fn under_attack(protocol: Protocol, server_type: &str, cases: &[(Attack, &str, &str)]) {
    let d = Dovecot::start();
    let setup = Setup::new();
    let healthy = "healthy@example.com";
    for n in 0..3 {
        d.deliver(
            healthy,
            &mail::sample(healthy, n, 2_000),
            "",
            SystemTime::now(),
        );
    }
    let servers: Vec<HostileServer> = cases
        .iter()
        .map(|(attack, _, _)| HostileServer::start(protocol, *attack))
        .collect();
    let mut body = vec![healthy_profile(&d), mailbox(healthy, "healthy", PASSWORD)];
    for (i, ((_, extra, _), server)) in cases.iter().zip(&servers).enumerate() {
        body.push(hostile_profile(
            &format!("bad{i}"),
            server_type,
            server.port,
            extra,
        ));
        body.push(mailbox(
            &format!("bad{i}@example.com"),
            &format!("bad{i}"),
            "pw",
        ));
    }
    let cfg = setup.write("", &body.concat());
    let mut s = setup.start(&cfg);
    for (i, (attack, _, code)) in cases.iter().enumerate() {
        let address = format!("bad{i}@example.com");
        let seen = wait_for(
            &format!("{attack:?} to be reported on {address}"),
            Duration::from_secs(90),
            || error_code(&s, &address).filter(|c| c == code),
        );
        assert_eq!(&seen, code, "{attack:?}");
    }
    wait_for(
        "the healthy mailbox to sync",
        Duration::from_secs(60),
        || (s.mailbox(healthy)["activities_stored"].as_u64()? == 3).then_some(()),
    );
    d.deliver(
        healthy,
        &mail::sample(healthy, 9, 1_000),
        "",
        SystemTime::now(),
    );
    wait_for(
        "the healthy mailbox to keep syncing",
        Duration::from_secs(60),
        || (s.mailbox(healthy)["activities_stored"].as_u64()? == 4).then_some(()),
    );
    assert!(
        s.child.try_wait().expect("wait").is_none(),
        "the appliance must still run"
    );
    let peak = peak_rss_kb(&s);
    assert!(
        peak < PEAK_RSS_CEILING_KB,
        "peak RSS {peak} kB over {PEAK_RSS_CEILING_KB} kB"
    );
    assert!(s.terminate().success());
}

#[test]
fn hostile_imap_servers_stay_their_mailboxes_trouble() {
    under_attack(
        Protocol::Imap,
        "imap_smtp",
        &[
            // Before TLS: anyone on the path can send these bytes.
            (Attack::NestedGreeting, "starttls", "protocol_violation"),
            (Attack::NestedGreeting, "", "protocol_violation"),
            (Attack::NestedUntagged, "", "protocol_violation"),
            (Attack::NestedFetch, "", "protocol_violation"),
            (Attack::EndlessLine, "", "protocol_violation"),
            (Attack::HugeLiteral, "", "protocol_violation"),
            (Attack::Drip, "", "timeout"),
            (Attack::DripListing, "", "sync_deadline"),
            // Bytes hidden from an earlier guard as "literals" imap-proto never saw as such:
            // the first aborted the process (stack overflow), the second held 400 MB.
            (Attack::LiteralInStatusText, "", "protocol_violation"),
            (Attack::HiddenHugeLiteral, "", "protocol_violation"),
            (Attack::UnknownItemHides, "", "protocol_violation"),
            (Attack::UnknownTokenHides, "", "protocol_violation"),
        ],
    );
}

#[test]
fn hostile_pop3_servers_stay_their_mailboxes_trouble() {
    under_attack(
        Protocol::Pop3,
        "pop3_smtp",
        &[
            (Attack::NestedGreeting, "starttls", "protocol_violation"),
            (Attack::NestedUntagged, "", "protocol_violation"),
            // An email nested 100,000 deep, far longer than LIST said.
            (Attack::NestedFetch, "", "protocol_violation"),
            (Attack::EndlessLine, "", "protocol_violation"),
            (Attack::HugeLiteral, "", "protocol_violation"),
            (Attack::EndlessListing, "", "protocol_violation"),
            (Attack::Drip, "", "timeout"),
            (Attack::DripListing, "", "sync_deadline"),
        ],
    );
}

/// SMTP: each mailbox syncs its INBOX from dovecot and sends through a hostile server. Test &
/// Enable's outgoing step meets the attack; its code is recorded, and incoming goes on.
#[test]
fn hostile_smtp_servers_stay_their_mailboxes_trouble() {
    let d = Dovecot::start();
    let setup = Setup::new();
    let cases = [
        (Attack::NestedGreeting, None),
        (Attack::NestedUntagged, None),
        (Attack::EndlessLine, Some("protocol_violation")),
        (Attack::Drip, Some("protocol_violation")),
        (Attack::EndlessListing, Some("protocol_violation")),
    ];
    let mut body = Vec::new();
    for (i, (attack, _)) in cases.iter().enumerate() {
        let server = HostileServer::start(Protocol::Smtp, *attack);
        let user = format!("smtp-bad{i}@example.com");
        d.deliver(&user, &mail::sample(&user, 1, 1_000), "", SystemTime::now());
        body.push(format!(
            "{}outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {}\n\
             outgoing_tls = \"none\"\nallow_plaintext_login = true\n",
            healthy_profile(&d).replace("name = \"healthy\"", &format!("name = \"bad{i}\"")),
            server.port
        ));
        body.push(mailbox(&user, &format!("bad{i}"), PASSWORD));
        std::mem::forget(server);
    }
    let cfg = setup.write("", &body.concat());
    let mut s = setup.start(&cfg);
    for (i, (attack, code)) in cases.iter().enumerate() {
        let user = format!("smtp-bad{i}@example.com");
        let outgoing = wait_for(
            &format!("{attack:?}: the outgoing test to finish"),
            Duration::from_secs(90),
            || {
                let t = s.mailbox(&user)["last_test"]["outgoing"].clone();
                (t["status"] != "not_run" && !t.is_null()).then_some(t)
            },
        );
        if let Some(code) = code {
            assert_eq!(outgoing["code"], *code, "{attack:?}: {outgoing}");
        }
        // Incoming is that mailbox's own business, and goes on.
        wait_for(&format!("{user} to sync"), Duration::from_secs(60), || {
            (s.mailbox(&user)["activities_stored"].as_u64()? == 1).then_some(())
        });
    }
    assert!(s.child.try_wait().expect("wait").is_none());
    let peak = peak_rss_kb(&s);
    assert!(
        peak < PEAK_RSS_CEILING_KB,
        "peak RSS {peak} kB over {PEAK_RSS_CEILING_KB} kB"
    );
    assert!(s.terminate().success());
}

/// An email listed larger than `max_message_size` is not fetched: a skipped item failure with
/// its reason, a warning alert naming it, `items_failed_last_sync`; a smaller one on the same
/// kind of server is stored. IMAP and POP3 (with deletion on: the skipped one is never deleted).
#[test]
fn emails_over_max_message_size_are_skipped_recorded_and_alerted() {
    let setup = Setup::new();
    let cases = [
        (Protocol::Imap, "imap_smtp", 3_000, false),
        (Protocol::Imap, "imap_smtp", 1_500, true),
        (Protocol::Pop3, "pop3_smtp", 3_000, false),
        (Protocol::Pop3, "pop3_smtp", 1_500, true),
    ];
    let mut body = Vec::new();
    for (i, (protocol, server_type, size, _)) in cases.iter().enumerate() {
        let server = HostileServer::start(*protocol, Attack::Large { size: *size });
        let delete = if *server_type == "pop3_smtp" {
            "pop3_delete_after_days = 0\n"
        } else {
            ""
        };
        body.push(format!(
            "{}max_message_size = 2048\n{delete}",
            // One sync only: the next one has nothing new and counts no failure.
            hostile_profile(&format!("p{i}"), server_type, server.port, "").replace(
                "min_polling_interval = \"1s\"",
                "min_polling_interval = \"1h\""
            )
        ));
        body.push(mailbox(
            &format!("size{i}@example.com"),
            &format!("p{i}"),
            "pw",
        ));
        std::mem::forget(server);
    }
    let cfg = setup.write("", &body.concat());
    let s = setup.start(&cfg);
    for (i, (protocol, _, _, stored)) in cases.iter().enumerate() {
        let address = format!("size{i}@example.com");
        let m = wait_for(
            &format!("{address} to complete a sync"),
            Duration::from_secs(60),
            || {
                let m = s.mailbox(&address);
                m["last_successful_sync_completed_on"]
                    .is_string()
                    .then_some(m)
            },
        );
        if *stored {
            assert_eq!(m["activities_stored"], 1, "{m}");
            continue;
        }
        assert_eq!(m["activities_stored"], 0, "{m}");
        assert_eq!(m["latest_alert"]["code"], "message_too_large", "{m}");
        assert_eq!(m["latest_alert"]["level"], "warning", "{m}");
        let text = m["latest_alert"]["message"].as_str().unwrap_or("");
        let which = match protocol {
            Protocol::Pop3 => "UIDL uidl-1".to_string(),
            _ => "UID 1 in folder \"INBOX\"".to_string(),
        };
        assert!(
            text.contains(&which) && text.contains("over max_message_size (2048 bytes)"),
            "{text}"
        );
    }
    assert!(s.terminate().success());
    let store = setup.store();
    for (i, (_, _, _, stored)) in cases.iter().enumerate() {
        let address = format!("size{i}@example.com");
        let failures = store.item_failures(Some(&address)).expect("failures");
        if *stored {
            assert!(failures.is_empty());
            continue;
        }
        assert_eq!(failures.len(), 1, "{failures:?}");
        let f = &failures[0].1;
        assert!(f.skipped);
        assert_eq!(f.code, "message_too_large");
        let state = &store.mailbox_states().expect("states")[address.as_str()];
        assert_eq!(state.items_failed_last_sync, 1);
    }
    // IMAP: the skipped email's sync id map entry names no activity.
    let map = store.sync_id_map("size0@example.com").expect("map");
    assert_eq!(map.len(), 1);
    assert_eq!(map[0].1, sidesync::store::NOT_TRACKED);
    // POP3 with deletion on: the skipped email has no activity, so it is never deleted.
    let map = store.pop3_sync_id_map("size2@example.com").expect("map");
    assert_eq!(
        map.get("uidl-1").map(|e| e.0),
        Some(sidesync::store::NOT_TRACKED)
    );
}

/// M8 against a server's own words: a login refused with `[UNAVAILABLE]`, `[INUSE]` or `[LIMIT]`,
/// or a BYE during login, is transient (retried, the mailbox stays on); only a definite refusal
/// (`[AUTHENTICATIONFAILED]`, or a plain NO) is permanent and disables it.
#[test]
fn login_refusals_are_classed_by_what_the_server_says() {
    let setup = Setup::new();
    let cases: [(&'static str, &str, bool); 6] = [
        (
            "NO [UNAVAILABLE] Temporary authentication failure",
            "server_busy",
            true,
        ),
        ("NO [INUSE] Mailbox in use", "server_busy", true),
        ("NO [LIMIT] Too many connections", "server_busy", true),
        ("* BYE Server shutting down", "connection_lost", true),
        (
            "NO [AUTHENTICATIONFAILED] Authentication failed.",
            "authentication_rejected",
            false,
        ),
        ("NO Login failed", "authentication_rejected", false),
    ];
    let mut body = Vec::new();
    for (i, (reply, _, _)) in cases.iter().enumerate() {
        let server = HostileServer::start(Protocol::Imap, Attack::LoginRefused(reply));
        body.push(hostile_profile(
            &format!("p{i}"),
            "imap_smtp",
            server.port,
            "",
        ));
        body.push(mailbox(
            &format!("login{i}@example.com"),
            &format!("p{i}"),
            "pw",
        ));
        std::mem::forget(server);
    }
    let cfg = setup.write("transient_failure_retries = 100", &body.concat());
    let s = setup.start(&cfg);
    for (i, (reply, code, transient)) in cases.iter().enumerate() {
        let address = format!("login{i}@example.com");
        let e = wait_for(
            &format!("{reply:?} to be recorded"),
            Duration::from_secs(60),
            || {
                let e = s.mailbox(&address)["last_error"].clone();
                e["code"].is_string().then_some(e)
            },
        );
        assert_eq!(e["code"], *code, "{reply}: {e}");
        assert_eq!(e["transient"], *transient, "{reply}: {e}");
        let m = s.mailbox(&address);
        let disabled = m["incoming_enablement"]["state"] == "disabled";
        assert_eq!(disabled, !transient, "{reply}: {m}");
        if *transient {
            // Retried: it fails again, and is still not disabled.
            wait_for(
                &format!("{reply:?} to be retried"),
                Duration::from_secs(60),
                || (s.mailbox(&address)["transient_failure_count"].as_u64()? >= 2).then_some(()),
            );
            assert_ne!(
                s.mailbox(&address)["incoming_enablement"]["state"],
                "disabled"
            );
        }
    }
    assert!(s.terminate().success());
}

/// STARTTLS alarms in every protocol: an answer injected right after the go-ahead is
/// `tls_injection` (permanent); a refused STARTTLS/STLS is `tls_refused`, transient only when the
/// server says "not now"; a server without IMAP4rev1 is named as such. None of the server's
/// pre-TLS text reaches `/status`.
#[test]
fn starttls_injection_and_refusals_are_named_in_every_protocol() {
    let setup = Setup::new();
    // (protocol, attack, expected code, transient)
    let incoming: [(Protocol, &str, Attack, &str, bool); 7] = [
        (
            Protocol::Imap,
            "imap_smtp",
            Attack::StartTlsInjection,
            "tls_injection",
            false,
        ),
        (
            Protocol::Imap,
            "imap_smtp",
            Attack::StartTlsRefused("NO [UNAVAILABLE] come back later, EVIL-TEXT"),
            "tls_refused",
            true,
        ),
        (
            Protocol::Imap,
            "imap_smtp",
            Attack::StartTlsRefused("BAD not here, EVIL-TEXT"),
            "tls_refused",
            false,
        ),
        (
            Protocol::Pop3,
            "pop3_smtp",
            Attack::StartTlsInjection,
            "tls_injection",
            false,
        ),
        (
            Protocol::Pop3,
            "pop3_smtp",
            Attack::StartTlsRefused("-ERR [SYS/TEMP] later, EVIL-TEXT"),
            "tls_refused",
            true,
        ),
        (
            Protocol::Pop3,
            "pop3_smtp",
            Attack::StartTlsRefused("-ERR never, EVIL-TEXT"),
            "tls_refused",
            false,
        ),
        (
            Protocol::Imap,
            "imap_smtp",
            Attack::NoImap4rev1,
            "unsupported",
            false,
        ),
    ];
    let mut body = Vec::new();
    for (i, (protocol, server_type, attack, _, _)) in incoming.iter().enumerate() {
        let server = HostileServer::start(*protocol, *attack);
        let tls = if *attack == Attack::NoImap4rev1 {
            ""
        } else {
            "starttls"
        };
        body.push(hostile_profile(
            &format!("in{i}"),
            server_type,
            server.port,
            tls,
        ));
        body.push(mailbox(
            &format!("in{i}@example.com"),
            &format!("in{i}"),
            "pw",
        ));
        std::mem::forget(server);
    }
    // SMTP: incoming on a server that never answers (not the point here), outgoing under attack.
    let smtp = [
        (Attack::StartTlsInjection, "tls_injection"),
        (
            Attack::StartTlsRefused("454 4.7.0 TLS not available now EVIL-TEXT"),
            "tls_refused",
        ),
    ];
    for (i, (attack, _)) in smtp.iter().enumerate() {
        let server = HostileServer::start(Protocol::Smtp, *attack);
        let incoming = HostileServer::start(Protocol::Imap, Attack::Drip);
        body.push(format!(
            "{}outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {}\n\
             outgoing_tls = \"starttls\"\n",
            hostile_profile(&format!("out{i}"), "imap_smtp", incoming.port, ""),
            server.port
        ));
        body.push(mailbox(
            &format!("out{i}@example.com"),
            &format!("out{i}"),
            "pw",
        ));
        std::mem::forget(server);
        std::mem::forget(incoming);
    }
    let cfg = setup.write("transient_failure_retries = 100", &body.concat());
    let s = setup.start(&cfg);
    for (i, (_, _, attack, code, transient)) in incoming.iter().enumerate() {
        let address = format!("in{i}@example.com");
        let e = wait_for(
            &format!("{attack:?} to be named"),
            Duration::from_secs(60),
            || {
                let e = s.mailbox(&address)["last_error"].clone();
                e["code"].is_string().then_some(e)
            },
        );
        assert_eq!(e["code"], *code, "{attack:?}: {e}");
        assert_eq!(e["transient"], *transient, "{attack:?}: {e}");
    }
    for (i, (attack, code)) in smtp.iter().enumerate() {
        let address = format!("out{i}@example.com");
        let t = wait_for(
            &format!("{attack:?} to be named"),
            Duration::from_secs(60),
            || {
                let t = s.mailbox(&address)["last_test"]["outgoing"].clone();
                t["code"].is_string().then_some(t)
            },
        );
        assert_eq!(t["code"], *code, "{attack:?}: {t}");
    }
    let status = s.status().to_string();
    assert!(
        !status.contains("EVIL-TEXT"),
        "pre-TLS server text reached /status"
    );
    assert!(
        !status.contains("injected"),
        "an injected answer reached /status"
    );
    assert!(s.terminate().success());
}

#[test]
fn pop3_text_before_tls_reaches_neither_status_nor_alerts_nor_the_log() {
    let setup = Setup::new();
    // (greeting or STLS refusal, expected code); each line carries text an attacker chose.
    let cases: [(Attack, &str); 3] = [
        (
            Attack::Greeting("-ERR [SYS/TEMP] EVIL-GREETING call +1-555-0100"),
            "server_busy",
        ),
        (
            Attack::Greeting("EVIL-LINE this is not POP3"),
            "protocol_error",
        ),
        (
            Attack::StartTlsRefused("-ERR [SYS/PERM] EVIL-REFUSAL see evil.example"),
            "tls_refused",
        ),
    ];
    let mut body = Vec::new();
    for (i, (attack, _)) in cases.iter().enumerate() {
        let server = HostileServer::start(Protocol::Pop3, *attack);
        body.push(hostile_profile(
            &format!("pre{i}"),
            "pop3_smtp",
            server.port,
            "starttls",
        ));
        body.push(mailbox(
            &format!("pre{i}@example.com"),
            &format!("pre{i}"),
            "pw",
        ));
        std::mem::forget(server);
    }
    let cfg = setup.write("transient_failure_retries = 100", &body.concat());
    let s = setup.start(&cfg);
    for (i, (attack, code)) in cases.iter().enumerate() {
        let address = format!("pre{i}@example.com");
        let e = wait_for(
            &format!("{attack:?} to be named"),
            Duration::from_secs(60),
            || {
                let m = s.mailbox(&address);
                (m["last_error"]["code"].is_string() && m["latest_alert"].is_object())
                    .then(|| m["last_error"].clone())
            },
        );
        assert_eq!(e["code"], *code, "{attack:?}: {e}");
    }
    let status = s.status().to_string();
    let (_, alerts) = http(s.status_port, "GET", "/api/v1/alerts", Some(TOKEN), "");
    let log = s.log_text();
    for (what, text) in [("/status", &status), ("alerts", &alerts), ("the log", &log)] {
        assert!(
            !text.contains("EVIL-"),
            "pre-TLS server text reached {what}: {text}"
        );
    }
    assert!(s.terminate().success());
}

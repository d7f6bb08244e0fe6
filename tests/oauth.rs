//! OAuth 2.0 logins against real servers: dovecot's oauth2 passdb checks every token at the
//! tests' HTTPS token server (RFC 7662 introspection); sidesync gets its tokens from the same
//! server (RFC 6749). IMAP, POP3 and SMTP submission, over XOAUTH2 and OAUTHBEARER.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::appliance::{Setup, TOKEN};
use support::dovecot::Dovecot;
use support::sidesync::{http, test_through_api};
use support::token_server::{CLIENT_ID, CLIENT_SECRET, TokenServer};
use support::{mail, wait_for};

/// A self-signed RSA certificate and its key in `dir` (an app registration's credential).
fn app_certificate(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

/// Waits until `user`'s incoming direction is disabled; its state then.
fn disabled(s: &support::sidesync::Sidesync, user: &str) -> Value {
    wait_for(&format!("{user} disabled"), Duration::from_secs(60), || {
        let m = s.mailbox(user);
        (m["incoming_enablement"]["state"] == "disabled").then_some(m)
    })
}

fn oauth_dovecot() -> (Dovecot, TokenServer) {
    let mut server = None;
    let d = Dovecot::start_with_oauth(|dir| {
        let s = TokenServer::start(&dir.join("server.pem"), &dir.join("server.key"));
        let url = s.introspection_url();
        server = Some(s);
        url
    });
    (d, server.expect("token server"))
}

fn oauth_keys(ts: &TokenServer, d: &Dovecot) -> String {
    format!(
        "oauth_token_endpoint = \"{}\"\noauth_client_id = \"{CLIENT_ID}\"\n\
         oauth_client_secret = \"{CLIENT_SECRET}\"\noauth_scope = \"mail\"\noauth_ca_file = \"{}\"\n",
        ts.url(),
        d.ca_file.display()
    )
}

/// A profile on `server_type` at `port` with `incoming` and `outgoing` mechanisms, and its mailbox.
fn profile_and_mailbox(
    d: &Dovecot,
    keys: &str,
    name: &str,
    pop3: bool,
    incoming: &str,
    outgoing: &str,
    user: &str,
) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"{name}\"\nserver_type = \"{}\"\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\n\
         incoming_authentication_protocol = \"{incoming}\"\n\
         outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {}\n\
         outgoing_tls = \"starttls\"\noutgoing_authentication_protocol = \"{outgoing}\"\n\
         ca_file = \"{}\"\nmin_polling_interval = \"1s\"\n{keys}\n\
         [[mailbox]]\nemail_address = \"{user}\"\napproval = \"approved\"\nprofile = \"{name}\"\n\n",
        if pop3 { "pop3_smtp" } else { "imap_smtp" },
        if pop3 { d.pop3s_port } else { d.imaps_port },
        d.submission_port,
        d.ca_file.display(),
    )
}

#[test]
fn imap_pop3_and_smtp_log_in_with_xoauth2_and_oauthbearer() {
    let (d, ts) = oauth_dovecot();
    let setup = Setup::new();
    let keys = oauth_keys(&ts, &d);
    // Every protocol with every mechanism; "auto" takes OAUTHBEARER, which dovecot offers.
    let cases = [
        (
            "imap-xo",
            false,
            "xoauth2",
            "oauthbearer",
            "o-imap-xo@example.com",
        ),
        (
            "imap-ob",
            false,
            "oauthbearer",
            "xoauth2",
            "o-imap-ob@example.com",
        ),
        ("pop-xo", true, "xoauth2", "auto", "o-pop-xo@example.com"),
        (
            "pop-ob",
            true,
            "oauthbearer",
            "oauthbearer",
            "o-pop-ob@example.com",
        ),
    ];
    let mut body = String::new();
    for (name, pop3, incoming, outgoing, user) in cases {
        for n in 0..5 {
            d.deliver(user, &mail::sample(user, n, 1_200), "", SystemTime::now());
        }
        body.push_str(&profile_and_mailbox(
            &d, &keys, name, pop3, incoming, outgoing, user,
        ));
    }
    let cfg = setup.write("", &body);
    let s = setup.start(&cfg);
    for (_, _, incoming, outgoing, user) in cases {
        let m = wait_for(&format!("{user} synced"), Duration::from_secs(60), || {
            let m = s.mailbox(user);
            (m["activities_stored"] == 5 || m["incoming_status"] == "failure").then_some(m)
        });
        assert_eq!(m["activities_stored"], 5, "{m}\ndovecot: {}", d.log());
        assert_eq!(m["outgoing_enablement"]["state"], "enabled", "{m}");
        // The transcript names the token step and the mechanisms, and shows no token.
        let t = test_through_api(setup.port, user, TOKEN);
        let inc = t["incoming"]["transcript"].as_str().unwrap_or("");
        assert!(
            inc.contains("OAuth client credentials: access token") && inc.contains(&ts.url()),
            "{inc}"
        );
        assert!(
            inc.to_ascii_uppercase()
                .contains(&format!(" {}", incoming.to_ascii_uppercase())),
            "{incoming} in {inc}"
        );
        assert!(!inc.contains("at-"), "no token in the transcript: {inc}");
        let out = t["outgoing"]["transcript"].as_str().unwrap_or("");
        let expected = if outgoing == "auto" {
            "oauthbearer"
        } else {
            outgoing
        };
        assert!(
            out.contains(&format!("AUTH {}", expected.to_ascii_uppercase())),
            "{outgoing} in {out}"
        );
        assert!(!out.contains("at-"), "{out}");
        assert_eq!(t["outgoing"]["status"], "success", "{t}");
    }
    // Sending over SMTP with a token.
    let (code, body) = http(
        setup.port,
        "POST",
        "/api/v1/outbox",
        Some(TOKEN),
        &serde_json::json!({"from": cases[0].4, "to": ["someone@example.net"], "subject": "oauth", "text": "hi"})
            .to_string(),
    );
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).expect("json")["id"].clone();
    wait_for(
        "sent over SMTP with a token",
        Duration::from_secs(60),
        || {
            let (_, b) = http(
                setup.port,
                "GET",
                &format!("/api/v1/outbox/{id}"),
                Some(TOKEN),
                "",
            );
            (serde_json::from_str::<Value>(&b).ok()?["status"] == "sent").then_some(())
        },
    );
    // One token per identity (four profiles), not one per login.
    assert!(
        ts.requests.load(Ordering::SeqCst) <= 4,
        "{}",
        ts.requests.load(Ordering::SeqCst)
    );
    assert!(!s.log_text().contains("at-"), "no token in the log");
    assert!(s.terminate().success());
}

fn delegated_profile(d: &Dovecot, ts: &TokenServer) -> String {
    format!(
        "[[profile]]\ntrack = \"all\"\nname = \"delegated\"\nis_default = true\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\nca_file = \"{}\"\n\
         min_polling_interval = \"1s\"\noauth_token_endpoint = \"{}\"\noauth_grant = \"refresh_token\"\n\
         oauth_client_id = \"{CLIENT_ID}\"\noauth_scope = \"mail\"\noauth_ca_file = \"{}\"\n\n",
        d.imaps_port,
        d.ca_file.display(),
        ts.url(),
        d.ca_file.display()
    )
}

fn stored(s: &support::sidesync::Sidesync, user: &str) -> Value {
    s.mailbox(user)["activities_stored"].clone()
}

#[test]
fn refresh_tokens_rotate_survive_restarts_expire_and_get_revoked() {
    let (d, ts) = oauth_dovecot();
    ts.rotate.store(true, Ordering::SeqCst);
    let setup = Setup::new();
    let (alice, bob) = ("rt-alice@example.com", "rt-bob@example.com");
    ts.grant_refresh_token("rt-alice");
    ts.grant_refresh_token("rt-bob");
    let mut n = 0;
    let mut deliver = |user: &str, count: usize| {
        for _ in 0..count {
            d.deliver(user, &mail::sample(user, n, 900), "", SystemTime::now());
            n += 1;
        }
    };
    deliver(alice, 3);
    deliver(bob, 3);
    let soon = (chrono::Utc::now() + chrono::Duration::days(3)).format("%Y-%m-%d");
    let cfg = setup.write(
        "",
        &format!(
            "{}[[mailbox]]\nemail_address = \"{alice}\"\napproval = \"approved\"\n\
             refresh_token = \"rt-alice\"\nrefresh_token_expires = {soon}\n\n\
             [[mailbox]]\nemail_address = \"{bob}\"\napproval = \"approved\"\nrefresh_token = \"rt-bob\"\n",
            delegated_profile(&d, &ts)
        ),
    );
    let mut s = setup.start(&cfg);
    for u in [alice, bob] {
        wait_for(&format!("{u} synced"), Duration::from_secs(60), || {
            (stored(&s, u) == 3).then_some(())
        });
    }
    // The endpoint rotated both refresh tokens: the first ones no longer work there.
    let rotated = ts.current_refresh_of("rt-alice").expect("alice's token");
    assert_ne!(rotated, "rt-alice", "rotated");
    // Access tokens lapse early: the next syncs fetch new ones with the rotated refresh tokens.
    ts.expire_access_tokens();
    deliver(alice, 2);
    deliver(bob, 2);
    for u in [alice, bob] {
        wait_for(
            &format!("{u} after expiry"),
            Duration::from_secs(60),
            || (stored(&s, u) == 5).then_some(()),
        );
    }
    // Across a restart the rotated token comes from the store (the configured one is dead).
    assert!(s.terminate().success());
    s = setup.start(&cfg);
    ts.expire_access_tokens();
    deliver(alice, 1);
    wait_for("alice after a restart", Duration::from_secs(60), || {
        (stored(&s, alice) == 6).then_some(())
    });
    assert!(
        !s.log_text().contains("rt-rotated"),
        "no refresh token in the log"
    );
    // `secret rotate` moves the store's sealed refresh tokens to the new key too: refused while
    // the appliance owns the store, done when it is stopped, and the token still opens after.
    let cfg_arg = cfg.to_str().expect("utf-8");
    let (status, out) = support::sidesync::cli(&["secret", "rotate", "--config", cfg_arg]);
    assert!(!status.success(), "{out}");
    assert!(out.contains("the store is in use"), "{out}");
    assert!(s.terminate().success());
    let (status, out) = support::sidesync::cli(&["secret", "rotate", "--config", cfg_arg]);
    assert!(status.success(), "{out}");
    s = setup.start(&cfg);
    ts.expire_access_tokens();
    deliver(alice, 1);
    deliver(bob, 1);
    wait_for(
        "alice after a key rotation",
        Duration::from_secs(60),
        || (stored(&s, alice) == 7).then_some(()),
    );
    // Bob's first refresh in this process (it rotates his token) is done before his current
    // token is read and revoked below: a refresh racing the revocation would get a new one.
    wait_for("bob after a key rotation", Duration::from_secs(60), || {
        (stored(&s, bob) == 6).then_some(())
    });
    // A known expiry within the warning window: one warning.
    let alerts = |who: &str| -> Vec<Value> {
        let (_, b) = http(
            setup.port,
            "GET",
            &format!("/api/v1/alerts?mailbox={who}"),
            Some(TOKEN),
            "",
        );
        serde_json::from_str::<Value>(&b).expect("json")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let expiring = wait_for("the expiry warning", Duration::from_secs(60), || {
        let a: Vec<Value> = alerts(alice)
            .into_iter()
            .filter(|a| a["code"] == "oauth_credential_expiring")
            .collect();
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(
        expiring.len(),
        1,
        "once, across the restart too: {expiring:?}"
    );
    assert_eq!(expiring[0]["level"], "warning");
    // Bob withdraws consent: his mailbox stops with the endpoint's words; alice goes on.
    let bobs = ts.current_refresh_of("rt-bob").expect("bob's token");
    ts.revoke_refresh_token(&bobs);
    ts.expire_access_tokens();
    deliver(bob, 1);
    deliver(alice, 1);
    let m = disabled(&s, bob);
    assert_eq!(
        m["incoming_enablement"]["code"], "oauth_token_refused",
        "{m}"
    );
    assert!(
        m["incoming_enablement"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid_grant")),
        "{m}"
    );
    assert!(
        alerts(bob).iter().any(|a| a["message"]
            .as_str()
            .is_some_and(|t| t.contains("invalid_grant"))),
        "an alert names it"
    );
    wait_for("alice still syncs", Duration::from_secs(60), || {
        (stored(&s, alice) == 8).then_some(())
    });
    assert_eq!(stored(&s, bob), 6, "nothing lost or duplicated for bob");
    assert!(s.terminate().success());
}

#[test]
fn a_hundred_mailboxes_sharing_an_app_identity_fetch_one_token() {
    let (d, ts) = oauth_dovecot();
    let setup = Setup::new();
    let mut body = format!(
        "[[profile]]\ntrack = \"all\"\nname = \"app\"\nis_default = true\n\
         incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {}\nca_file = \"{}\"\n\
         min_polling_interval = \"1m\"\n{}\n",
        d.imaps_port,
        d.ca_file.display(),
        oauth_keys(&ts, &d)
    );
    for i in 0..100 {
        body.push_str(&format!(
            "[[mailbox]]\nemail_address = \"app{i:03}@example.com\"\napproval = \"approved\"\n\n"
        ));
    }
    let cfg = setup.write("max_concurrent_syncs = 100\n", &body);
    let s = setup.start(&cfg);
    wait_for("all 100 synced once", Duration::from_secs(120), || {
        let v = s.status();
        let ms = v["mailboxes"].as_array()?;
        (ms.len() == 100
            && ms
                .iter()
                .all(|m| m["last_successful_sync_completed_on"].is_string()))
        .then_some(())
    });
    assert_eq!(
        ts.requests.load(Ordering::SeqCst),
        1,
        "one token request for the whole identity"
    );
    assert!(s.terminate().success());
}

#[test]
fn client_credentials_with_a_certificate_sign_an_assertion() {
    let (d, ts) = oauth_dovecot();
    let setup = Setup::new();
    let (cert, key) = app_certificate(setup.dir.path(), "app");
    ts.trust_app_certificate(&cert);
    let user = "o-cert@example.com";
    for n in 0..3 {
        d.deliver(user, &mail::sample(user, n, 900), "", SystemTime::now());
    }
    let keys = format!(
        "oauth_token_endpoint = \"{}\"\noauth_client_id = \"{CLIENT_ID}\"\n\
         oauth_client_certificate = \"{}\"\noauth_client_key_file = \"{}\"\n\
         oauth_scope = \"mail\"\noauth_ca_file = \"{}\"\n",
        ts.url(),
        cert.display(),
        key.display(),
        d.ca_file.display()
    );
    let cfg = setup.write(
        "",
        &profile_and_mailbox(&d, &keys, "cert", false, "auto", "auto", user),
    );
    let s = setup.start(&cfg);
    let m = wait_for("synced with a certificate", Duration::from_secs(60), || {
        let m = s.mailbox(user);
        (m["activities_stored"] == 3 || m["incoming_status"] == "failure").then_some(m)
    });
    assert_eq!(m["activities_stored"], 3, "{m}");
    assert!(s.terminate().success());

    // Another key than the certificate's: the endpoint refuses, and the mailbox says why.
    let (_, other_key) = (
        setup.dir.path().join("other.pem"),
        setup.dir.path().join("other.key"),
    );
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&other_key)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    std::fs::copy(&other_key, &key).expect("swap the key");
    let setup2 = Setup::new();
    let user2 = "o-cert2@example.com";
    let cfg = setup2.write(
        "",
        &profile_and_mailbox(&d, &keys, "cert", false, "auto", "auto", user2),
    );
    let s = setup2.start(&cfg);
    let m = disabled(&s, user2);
    assert_eq!(
        m["incoming_enablement"]["code"], "oauth_token_refused",
        "{m}"
    );
    assert!(
        m["incoming_enablement"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid_client")),
        "{m}"
    );
    assert!(s.terminate().success());
}

#[test]
fn a_refused_token_is_renewed_once_then_the_server_status_is_shown() {
    let (d, ts) = oauth_dovecot();
    ts.refuse_all.store(true, Ordering::SeqCst);
    let setup = Setup::new();
    let keys = oauth_keys(&ts, &d);
    let (imap, pop) = ("o-refused-imap@example.com", "o-refused-pop@example.com");
    let cfg = setup.write(
        "",
        &(profile_and_mailbox(&d, &keys, "i", false, "xoauth2", "xoauth2", imap)
            + &profile_and_mailbox(&d, &keys, "p", true, "oauthbearer", "oauthbearer", pop)),
    );
    let s = setup.start(&cfg);
    for user in [imap, pop] {
        let m = disabled(&s, user);
        let reason = m["incoming_enablement"]["reason"].as_str().unwrap_or("");
        assert_eq!(
            m["incoming_enablement"]["code"], "authentication_rejected",
            "{m}"
        );
        assert!(
            reason.contains("the OAuth access token was refused"),
            "{reason}"
        );
        assert!(
            reason.contains("(status {"),
            "the server's JSON status: {reason}"
        );
    }
    // Each mailbox: the first token, then one fresh one after the refusal; no more.
    assert!(
        ts.requests.load(Ordering::SeqCst) <= 4,
        "{}",
        ts.requests.load(Ordering::SeqCst)
    );
    assert!(s.terminate().success());
}

#[test]
fn a_service_account_acts_as_each_mailbox() {
    let (d, ts) = oauth_dovecot();
    let setup = Setup::new();
    let (cert, key) = app_certificate(setup.dir.path(), "sa");
    ts.trust_app_certificate(&cert);
    let users = ["sa-one@example.com", "sa-two@example.com"];
    for u in users {
        d.deliver(u, &mail::sample(u, 0, 900), "", SystemTime::now());
    }
    let keys = format!(
        "oauth_token_endpoint = \"{}\"\noauth_grant = \"service_account\"\n\
         oauth_client_id = \"{CLIENT_ID}\"\noauth_client_key_file = \"{}\"\n\
         oauth_scope = \"https://mail.google.com/\"\noauth_ca_file = \"{}\"\n",
        ts.url(),
        key.display(),
        d.ca_file.display()
    );
    let mut body = profile_and_mailbox(&d, &keys, "sa", false, "auto", "auto", users[0]);
    body.push_str(&format!(
        "[[mailbox]]\nemail_address = \"{}\"\napproval = \"approved\"\nprofile = \"sa\"\n",
        users[1]
    ));
    let cfg = setup.write("", &body);
    let s = setup.start(&cfg);
    for u in users {
        let m = wait_for(&format!("{u} synced"), Duration::from_secs(60), || {
            let m = s.mailbox(u);
            (m["activities_stored"] == 1 || m["incoming_status"] == "failure").then_some(m)
        });
        assert_eq!(m["activities_stored"], 1, "{m}");
    }
    // One token per mailbox: the grant names each one as its subject.
    assert_eq!(ts.requests.load(Ordering::SeqCst), 2);
    assert!(s.terminate().success());
}

#[test]
fn short_lived_tokens_lapse_between_and_during_syncs_and_nothing_is_lost() {
    let (d, ts) = oauth_dovecot();
    // Tokens live two seconds: the cache renews them after one, and the server forgets them too.
    ts.expires_in.store(2, Ordering::SeqCst);
    let setup = Setup::new();
    let user = "o-short@example.com";
    let keys = oauth_keys(&ts, &d);
    let cfg = setup.write(
        "fetch_batch_size = 10\n",
        &profile_and_mailbox(&d, &keys, "short", false, "xoauth2", "xoauth2", user),
    );
    let mut n = 0;
    for _ in 0..60 {
        d.deliver(user, &mail::sample(user, n, 2_000), "", SystemTime::now());
        n += 1;
    }
    let s = setup.start(&cfg);
    for wave in 1..=3 {
        let before = ts.requests.load(Ordering::SeqCst);
        // Access tokens stop working at the server while syncs go on.
        ts.expire_access_tokens();
        for _ in 0..20 {
            d.deliver(user, &mail::sample(user, n, 2_000), "", SystemTime::now());
            n += 1;
        }
        wait_for(&format!("wave {wave}"), Duration::from_secs(60), || {
            (s.mailbox(user)["activities_stored"] == n as u64
                && ts.requests.load(Ordering::SeqCst) > before)
                .then_some(())
        });
    }
    let store_count = s.mailbox(user)["activities_stored"].clone();
    assert_eq!(store_count, n as u64, "every email once");
    assert!(s.terminate().success());
    let store = setup.store();
    let map = store.sync_id_map(user).expect("map");
    assert_eq!(map.len(), n, "one sync id map entry per email, none twice");
}

#[test]
fn a_token_that_lives_u64_max_seconds_neither_panics_nor_stops_the_mailbox() {
    let (d, ts) = oauth_dovecot();
    // 18446744073709551615 seconds: added to the clock it overflowed, and the job's panic left the
    // mailbox "running" for good, with nothing in /status.
    ts.expires_in.store(
        usize::try_from(u64::MAX).expect("a 64-bit test host"),
        Ordering::SeqCst,
    );
    let setup = Setup::new();
    let user = "o-forever@example.com";
    let keys = oauth_keys(&ts, &d);
    let cfg = setup.write(
        "",
        &profile_and_mailbox(&d, &keys, "forever", false, "xoauth2", "xoauth2", user),
    );
    for n in 0..3 {
        d.deliver(user, &mail::sample(user, n, 1_200), "", SystemTime::now());
    }
    let s = setup.start(&cfg);
    wait_for("the first sync", Duration::from_secs(60), || {
        (s.mailbox(user)["activities_stored"] == 3).then_some(())
    });
    // Scheduled again: what arrives next is synced by a later turn.
    for n in 3..5 {
        d.deliver(user, &mail::sample(user, n, 1_200), "", SystemTime::now());
    }
    wait_for("a later sync", Duration::from_secs(60), || {
        (s.mailbox(user)["activities_stored"] == 5).then_some(())
    });
    let m = s.mailbox(user);
    assert!(m["last_error"].is_null(), "{m}");
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(s.terminate().success());
}

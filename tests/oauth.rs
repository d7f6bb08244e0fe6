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

#[test]
fn imap_pop3_and_smtp_log_in_with_xoauth2_and_oauthbearer() {
    let (d, ts) = oauth_dovecot();
    let setup = Setup::new();
    let (imap_user, pop_user) = ("oauth-imap@example.com", "oauth-pop@example.com");
    for user in [imap_user, pop_user] {
        for n in 0..5 {
            d.deliver(user, &mail::sample(user, n, 1_200), "", SystemTime::now());
        }
    }
    let keys = oauth_keys(&ts, &d);
    let cfg = setup.write(
        "",
        &format!(
            "[[profile]]\ntrack = \"all\"\nname = \"imap-xoauth2\"\nis_default = true\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {imaps}\n\
             incoming_authentication_protocol = \"xoauth2\"\n\
             outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {submission}\n\
             outgoing_tls = \"starttls\"\noutgoing_authentication_protocol = \"oauthbearer\"\n\
             ca_file = \"{ca}\"\nmin_polling_interval = \"1s\"\n{keys}\n\
             [[profile]]\ntrack = \"all\"\nname = \"pop3-oauthbearer\"\nserver_type = \"pop3_smtp\"\n\
             incoming_server_location = \"127.0.0.1\"\nincoming_port_number = {pop3s}\n\
             incoming_authentication_protocol = \"oauthbearer\"\n\
             outgoing_server_location = \"127.0.0.1\"\noutgoing_port_number = {submission}\n\
             outgoing_tls = \"starttls\"\noutgoing_authentication_protocol = \"xoauth2\"\n\
             ca_file = \"{ca}\"\nmin_polling_interval = \"1s\"\n{keys}\n\
             [[mailbox]]\nemail_address = \"{imap_user}\"\napproval = \"approved\"\nprofile = \"imap-xoauth2\"\n\n\
             [[mailbox]]\nemail_address = \"{pop_user}\"\napproval = \"approved\"\nprofile = \"pop3-oauthbearer\"\n",
            imaps = d.imaps_port,
            pop3s = d.pop3s_port,
            submission = d.submission_port,
            ca = d.ca_file.display(),
        ),
    );
    let s = setup.start(&cfg);
    for user in [imap_user, pop_user] {
        let m = wait_for(&format!("{user} synced"), Duration::from_secs(60), || {
            let m = s.mailbox(user);
            (m["activities_stored"] == 5 || m["incoming_status"] == "failure").then_some(m)
        });
        assert_eq!(m["activities_stored"], 5, "{m}\ndovecot: {}", d.log());
        assert_eq!(m["outgoing_enablement"]["state"], "enabled", "{m}");
    }
    // The transcript names the token step and shows no token.
    let t = test_through_api(setup.port, imap_user, TOKEN);
    let incoming = t["incoming"]["transcript"].as_str().unwrap_or("");
    assert!(
        incoming.contains("OAuth client credentials: access token") && incoming.contains(&ts.url()),
        "{incoming}"
    );
    assert!(incoming.contains("AUTHENTICATE XOAUTH2"), "{incoming}");
    assert!(
        !incoming.contains("at-"),
        "no token in the transcript: {incoming}"
    );
    let outgoing = t["outgoing"]["transcript"].as_str().unwrap_or("");
    assert!(outgoing.contains("AUTH OAUTHBEARER"), "{outgoing}");
    assert!(!outgoing.contains("at-"), "{outgoing}");
    assert_eq!(t["outgoing"]["status"], "success", "{t}");
    // Sending over SMTP with the token.
    let (code, body) = http(
        setup.port,
        "POST",
        "/api/v1/outbox",
        Some(TOKEN),
        &serde_json::json!({"from": imap_user, "to": ["someone@example.net"], "subject": "oauth", "text": "hi"})
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
    // One token per identity (two profiles), not one per login.
    assert!(
        ts.requests.load(Ordering::SeqCst) <= 2,
        "{}",
        ts.requests.load(Ordering::SeqCst)
    );
    assert!(!s.log_text().contains("at-"), "no token in the log");
    assert!(s.terminate().success());
}
